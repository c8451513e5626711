//! Clients of a Chatty node for its tests, benchmarks and load tool, kept out of the
//! server: the server binary speaks to no other server over HTTP or WebSocket.

/// A typed REST client: sign-up, sign-in, groups, and raw requests.
pub mod api;
/// A small Socket.IO v4 client (WebSocket or long-polling).
pub mod sio;

pub use api::{Api, SignedIn};
pub use sio::{ConnectError, Incoming, SioClient, SioSender, Transport};
