//! Socket.IO on `/` (chat) and `/notifications`, served by socketioxide in the same axum
//! app. Sockets authenticate by token on connect, and their events call the core (`chat`);
//! what they receive comes from the cluster event bus through `delivery`.

mod connect;
mod envelope;
mod events;
mod handshake;

pub use self::handshake::detach_handshake;

use std::time::Duration;

use socketioxide::{ParserConfig, SocketIo, handler::ConnectHandler, layer::SocketIoLayer};

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
        // Client frames are small (sends, receipts, typing); the 4 KB default is resident in
        // every idle socket, and a larger frame still grows the buffer when it comes.
        .ws_read_buffer_size(1024)
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
