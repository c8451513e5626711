//! Socket.IO on `/` (chat) and `/notifications`, served by socketioxide in the same axum
//! app. Sockets authenticate by token on connect, and their events call the core (`chat`);
//! what they receive comes from the cluster event bus through `delivery`.

mod connect;
mod envelope;
mod events;
mod handshake;

pub use self::handshake::detach_handshake;

use std::time::Duration;

use socketioxide::{
    ParserConfig, SocketIo, extract::SocketRef, handler::ConnectHandler, layer::SocketIoLayer,
};

use crate::state::AppState;

/// Chatty's events carry no binary attachments; a few are tolerated, thousands are not.
const MAX_BINARY_ATTACHMENTS: usize = 8;

/// Where socketioxide serves Engine.io (its default).
const SOCKET_IO_PATH: &str = "/socket.io";

/// Builds the Socket.IO layer and its handle.
pub fn build(state: &AppState) -> (SocketIoLayer, SocketIo) {
    let max_frame = state.settings.max_frame_bytes;
    let (layer, io) = SocketIo::builder()
        .with_state(state.clone())
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        // Every way in is bounded before it is parsed: a polling POST body, a WebSocket
        // message or frame, and the binary attachments one event may gather.
        .max_payload(max_frame as u64)
        .ws_max_message_size(max_frame)
        .ws_max_frame_size(max_frame)
        .with_parser(
            ParserConfig::common()
                .max_incoming_binary_buf_size(max_frame)
                .max_incoming_binaries(MAX_BINARY_ATTACHMENTS)
                .packet_completion_timeout(Duration::from_secs(10)),
        )
        .max_buffer_size(state.settings.socket_buffer_packets)
        // Client frames are small (sends, receipts, typing) and an idle socket's are pongs of
        // one byte; the 4 KB default is resident in every idle socket, and a larger frame
        // still grows the buffer when it comes.
        .ws_read_buffer_size(256)
        .build_layer();
    // Middlewares run last-added first: authenticate, then register handlers, all before
    // the connect answer.
    io.ns(
        "/",
        connect::on_chat_connect
            .with(connect::prepare_chat)
            .with(connect::authenticate),
    );
    io.ns(
        "/notifications",
        connect::on_notifications_connect
            .with(connect::prepare_notifications)
            .with(connect::authenticate),
    );
    (layer, io)
}

/// How often a paced drain closes its next share of sockets.
const DRAIN_TICK: Duration = Duration::from_millis(100);

/// Closes every socket of this node, spread evenly over `spread` (all at once when zero).
/// A closed transport, unlike a Socket.IO disconnect, has clients reconnect (through the
/// balancer, to a node that still accepts) and resume. A node's sockets closing at once
/// would have all of their clients reconnect, authenticate and `sync` in the same second.
pub async fn drain(io: &SocketIo, spread: Duration) {
    let mut sockets: Vec<SocketRef> = io.sockets();
    // A client's `/notifications` socket shares its connection with its chat socket when it
    // multiplexes; closing either closes both.
    if let Some(ns) = io.of("/notifications") {
        sockets.extend(ns.sockets());
    }
    let total = sockets.len();
    if !spread.is_zero() && total > 0 {
        tracing::info!(
            sockets = total,
            ?spread,
            "closing sockets, spread over the drain"
        );
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(DRAIN_TICK);
        let mut closed = 0;
        while closed < total {
            ticks.tick().await;
            let due = due_by(total, started.elapsed(), spread);
            for s in sockets.drain(..due - closed) {
                // Closing waits for the connection's task to end: the tick goes on meanwhile.
                tokio::spawn(async move { s.close_transport().await });
            }
            closed = due;
        }
    }
    // Every socket left, also those that connected while draining through a connection
    // the listener had already accepted.
    io.close().await;
    tracing::info!(sockets = total, "sockets closed");
}

/// How many of `total` sockets are to be closed `elapsed` into a drain spread over `spread`.
fn due_by(total: usize, elapsed: Duration, spread: Duration) -> usize {
    if elapsed >= spread {
        return total;
    }
    let share = elapsed.as_secs_f64() / spread.as_secs_f64();
    ((total as f64 * share).ceil() as usize).min(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_closes_its_sockets_evenly_and_all_by_the_end() {
        let spread = Duration::from_secs(20);
        assert_eq!(due_by(1000, Duration::ZERO, spread), 0);
        assert_eq!(due_by(1000, Duration::from_secs(5), spread), 250);
        assert_eq!(due_by(1000, Duration::from_secs(10), spread), 500);
        assert_eq!(due_by(1000, Duration::from_secs(20), spread), 1000);
        assert_eq!(due_by(1000, Duration::from_secs(30), spread), 1000);
        // A few sockets still go one by one, not all in the first tick.
        assert_eq!(due_by(3, Duration::from_millis(100), spread), 1);
        assert_eq!(due_by(3, Duration::from_secs(7), spread), 2);
    }
}
