//! Chatty: a real-time chat backend that runs as a horizontally scaled cluster.

/// Password hashing, token issuing and the request authenticator.
pub mod auth;
/// The cluster event bus: Redis pub/sub, or in-process for a single node.
pub mod broker;
/// Conversation and message operations shared by REST and Socket.IO.
pub mod chat;
/// Settings read from the environment and flags.
pub mod config;
/// PostgreSQL pool creation and migrations.
pub mod db;
/// The receiving half of the bus: ordering and delivering events to this node's sockets.
pub mod delivery;
/// Newtypes that parse client input at the edge.
pub mod domain;
/// The error type every route and socket handler answers with.
pub mod error;
/// Everything Redis does for the cluster, behind one interface with an in-process twin.
pub mod fabric;
/// REST routes, one router per feature.
pub mod http;
/// Limits on client-driven costs: limiter names, refusals, per-socket bounds.
pub mod limits;
/// Prometheus recorder and HTTP metrics middleware.
pub mod metrics;
/// Socket.IO namespaces, event handlers, presence and delivery from the bus.
pub mod realtime;
/// SIGTERM / ctrl-c handling.
pub mod shutdown;
/// Friendships, blocks and notifications.
pub mod social;
/// Building and running one node.
pub mod startup;
/// Shared application state.
pub mod state;
/// The tracing subscriber.
pub mod telemetry;
