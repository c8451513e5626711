//! One integration binary: every test drives real nodes against real PostgreSQL and Redis.

mod auth;
mod changes;
mod compat;
mod conversations;
mod fabric;
mod friendships;
mod health;
mod helpers;
mod limits;
mod logs;
mod messages;
mod notifications;
mod openapi;
mod ops;
mod realtime;
mod realtime_messages;
mod refresh;
mod routing;
mod sessions;
mod social_rules;
mod users;
mod web;
