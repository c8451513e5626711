//! One integration binary: every test drives real nodes against real PostgreSQL and Redis.

mod auth;
mod fabric;
mod friendships;
mod health;
mod helpers;
mod notifications;
mod users;
