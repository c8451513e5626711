//! One integration binary: every test drives real nodes against real PostgreSQL and Redis.

mod auth;
mod fabric;
mod health;
mod helpers;
mod ops;
mod realtime;
mod users;
