//! Chatty: a real-time chat backend that runs as a horizontally scaled cluster.
//!
//! # Layout
//!
//! Transports at the edge (`http`, `realtime`) translate requests and socket events into
//! calls on the core (`chat`, `social`, `auth`, `limits`); the core stores in PostgreSQL and
//! announces on the cluster bus (`bus`); every node's `delivery` hands what the bus
//! carries to its own sockets. Shared, non-durable state (sessions, limiters, typing marks,
//! presence leases) lives in Redis for a cluster and in process for a single node.
//!
//! One `sendMessage`, from a socket on node A to a socket on node B:
//!
//! 1. `realtime/events.rs` `send_message` takes the event's payload (`chat::SendBody`),
//!    already decoded by the envelope every event goes through (`realtime/envelope.rs`
//!    `on`: the socket's limits, the payload's type, the acknowledgement), and calls
//! 2. `chat/messages.rs` `send_message`: the sender's message limit, then one statement
//!    that checks membership, takes the next `seq` and stores the message; its
//!    `announce_new` addresses `newMessage` to every participant's `user:` room through
//! 3. `bus/mod.rs` `announce` (the bus's types are there too), which hands it to
//! 4. `bus/redis.rs` `publish`: `bus/wire.rs` encodes it once without its rooms, and one
//!    pipeline `SPUBLISH`es it on each room's channel. Node B subscribed to the channel of
//!    every room its sockets are in (`Bus::join`, counted in `bus/interest.rs`); its
//!    subscriber in `bus/redis.rs` decodes the copies for its rooms once and passes them to
//! 5. `delivery/mod.rs` `run`, which spreads the rooms over one lane per core; each lane
//!    puts its conversations back in `seq` order (`delivery/order.rs`) and emits to its
//!    rooms: the socket on B has it.
//!
//! Shared state beside the path: `fabric/` (sessions, limiters, typing marks: one trait per
//! concern, a Redis and an in-process implementation each) and `presence/` (who is
//! online, with its own store).
//!
//! `startup.rs` wires a node together; `main.rs` only parses the command line.

/// Password hashing, token issuing and the request authenticator.
pub mod auth;
/// The cluster event bus: Redis sharded pub/sub routed by room, or in-process for a single
/// node.
pub mod bus;
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
/// Shared, non-durable state: sessions, limiters and typing marks, one trait per concern
/// with a Redis and an in-process implementation.
pub mod fabric;
/// REST routes, one router per feature, and the web client's files.
pub mod http;
/// Limits on client-driven costs: limiter names, refusals, per-socket bounds.
pub mod limits;
/// Prometheus recorder and HTTP metrics middleware.
pub mod metrics;
/// Who is online: connection leases, transitions and their announcements.
pub mod presence;
/// Socket.IO namespaces: connections, the event envelope and the chat events.
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
/// User views: a user as others see them, and as they see themselves.
pub mod users;
