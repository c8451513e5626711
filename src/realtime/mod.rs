//! Socket.IO on `/` (chat) and `/notifications`, served by socketioxide in the same axum
//! app. Sockets authenticate by token on connect; what they receive comes from the cluster
//! event bus, which each node delivers to its own sockets.

mod chat_events;
mod handlers;
mod order;
pub mod presence;

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use socketioxide::{
    ParserConfig, SocketIo,
    extract::{SocketRef, State, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{BusMessage, Emit, Namespace, room},
    http::extract::AuthUser,
    state::AppState,
};

/// Engine.io keeps each session's handshake request (URI, headers, extensions) for the
/// session's lifetime. hyper parses the URI and header values as slices of its connection
/// read buffer (16 KB once a request arrives in two reads), and axum's `OriginalUri`
/// extension is one more slice, so keeping them keeps that buffer alive after the
/// WebSocket upgrade. Owned copies of the few hundred bytes let it go. Requests of an
/// existing session (`sid=`) are not kept and pass as they are.
pub async fn detach_handshake(mut req: axum::extract::Request) -> axum::extract::Request {
    use axum::{extract::OriginalUri, http::Uri};
    let uri = req.uri();
    if !uri.path().starts_with(SOCKET_IO_PATH) || uri.query().is_some_and(|q| q.contains("sid=")) {
        return req;
    }
    if let Ok(owned) = Uri::try_from(uri.to_string()) {
        *req.uri_mut() = owned;
    }
    let original = req
        .extensions()
        .get::<OriginalUri>()
        .map(|o| o.0.to_string());
    if let Some(Ok(owned)) = original.map(Uri::try_from) {
        req.extensions_mut().insert(OriginalUri(owned));
    }
    let headers = std::mem::take(req.headers_mut());
    let mut owned = axum::http::HeaderMap::with_capacity(headers.len());
    let mut last = None;
    for (name, value) in headers {
        // `None` repeats the previous name (a header sent several times).
        let name = match name {
            Some(n) => {
                last = Some(n.clone());
                n
            }
            None => match &last {
                Some(n) => n.clone(),
                None => continue,
            },
        };
        let sensitive = value.is_sensitive();
        let copy = axum::http::HeaderValue::from_bytes(value.as_bytes()).map_or(value, |mut c| {
            c.set_sensitive(sensitive);
            c
        });
        owned.append(name, copy);
    }
    *req.headers_mut() = owned;
    req
}

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
        handlers::on_chat_connect
            .with(handlers::prepare_chat)
            .with(authenticate),
    );
    io.ns(
        "/notifications",
        handlers::on_notifications_connect
            .with(handlers::prepare_notifications)
            .with(authenticate),
    );
    (layer, io)
}

/// The token a client presents: `auth.token` (with or without `Bearer `), else an
/// `Authorization: Bearer` header.
fn token_of(s: &SocketRef, auth: &Value) -> Option<String> {
    let from_auth = auth
        .get("token")
        .and_then(Value::as_str)
        .map(|t| t.strip_prefix("Bearer ").unwrap_or(t).trim());
    let from_header = || {
        let h = s
            .req_parts()
            .headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    };
    from_auth
        .or_else(from_header)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Connect middleware: a live session or a `connect_error` saying why not.
async fn authenticate(
    s: SocketRef,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    let auth = auth.unwrap_or(Value::Null);
    let Some(token) = token_of(&s, &auth) else {
        metrics::counter!("socket_auth_refused_total", "reason" => "missing").increment(1);
        return Err(if auth.get("userId").is_some() {
            "authentication token required: auth.userId is not accepted, send auth.token".to_owned()
        } else {
            "authentication token required: send { auth: { token } } or an Authorization: Bearer header".to_owned()
        });
    };
    if state.draining.is_draining() {
        return Err("node is draining: reconnect".to_owned());
    }
    match AuthUser::from_token(&state, &token).await {
        Ok(user) => {
            s.extensions.insert(user);
            Ok(())
        }
        Err(e) => {
            metrics::counter!("socket_auth_refused_total", "reason" => "invalid").increment(1);
            Err(e.to_string())
        }
    }
}

/// How long an event ahead of its conversation's next seq waits for the ones before it:
/// the first event this node sees of a conversation briefly (its predecessor most likely
/// went out before the node listened), a gap in a conversation it has been delivering
/// longer, since publishes of an overloaded cluster run hundreds of milliseconds late
/// (100 ms let a few events out of order at saturation). A gap that outlasts it is a lost
/// publish, which clients fill with `sync`.
const REORDER_FIRST_HOLD: Duration = Duration::from_millis(100);
const REORDER_GAP_HOLD: Duration = Duration::from_millis(1000);

/// Delivers what the bus carries to this node's sockets until `stop`, each conversation's
/// messages in seq order.
pub async fn bus_loop(io: SocketIo, state: AppState, stop: CancellationToken) {
    let mut rx = state.broker.subscribe();
    let mut reorder = order::Reorder::new(REORDER_FIRST_HOLD, REORDER_GAP_HOLD);
    loop {
        let deadline = reorder.deadline();
        let msg = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(deadline.unwrap_or_else(std::time::Instant::now).into()), if deadline.is_some() => {
                for m in reorder.expire(std::time::Instant::now()) {
                    deliver(&io, &m).await;
                }
                continue;
            }
            msg = rx.recv() => msg,
        };
        match msg {
            Ok(msg) if matches!(msg.as_ref(), BusMessage::Resubscribed { .. }) => {
                let BusMessage::Resubscribed { missed_ms } = *msg else {
                    continue;
                };
                tokio::spawn(replay_missed(state.clone(), missed_ms));
            }
            Ok(msg) => {
                let position = match msg.as_ref() {
                    BusMessage::Emit(e) => e.order,
                    _ => None,
                };
                match position {
                    Some(p) => {
                        for m in reorder.push(p.stream, p.seq, msg, std::time::Instant::now()) {
                            deliver(&io, &m).await;
                        }
                    }
                    None => deliver(&io, &msg).await,
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                metrics::counter!("bus_lagged_events_total").increment(n);
                tracing::warn!(
                    missed = n,
                    "event delivery fell behind; clients catch up through sync"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn deliver_emit(io: &SocketIo, e: &Emit) {
    let Some(ns) = io.of(e.ns.path()) else { return };
    let ops = ns.to(e.rooms.clone()).except(e.except.clone());
    if let Err(err) = ops.emit(&e.event, &e.data).await {
        tracing::debug!(error = %err, event = %e.event, "emit failed");
    }
    metrics::counter!("socket_events_out_total", "event" => e.event.clone()).increment(1);
    let lag_ms = chrono::Utc::now().timestamp_millis() - e.sent_at_ms;
    metrics::histogram!("fanout_latency_seconds").record(lag_ms.max(0) as f64 / 1000.0);
}

/// How long before the loss was noticed a publish may have gone unheard: a Redis that died
/// took what it had not forwarded yet, and ids come from the senders' clocks.
const REPLAY_MARGIN: Duration = Duration::from_secs(2);

/// After the bus subscription came back: hands this node's sockets the messages published
/// while it was away, from PostgreSQL, so nothing waits for the client's next `sync`.
async fn replay_missed(state: AppState, missed_ms: u64) {
    let window = Duration::from_millis(missed_ms) + REPLAY_MARGIN;
    match crate::chat::replay_recent(&state, window).await {
        Ok(n) => {
            metrics::counter!("bus_replayed_messages_total").increment(n as u64);
            tracing::info!(
                messages = n,
                window_ms = window.as_millis(),
                "replayed messages the bus missed"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "replay after resubscribing failed; clients catch up through sync")
        }
    }
}

async fn deliver(io: &SocketIo, msg: &Arc<BusMessage>) {
    match msg.as_ref() {
        BusMessage::Emit(e) => deliver_emit(io, e).await,
        BusMessage::EmitMany(list) => {
            for e in list {
                deliver_emit(io, e).await;
            }
        }
        BusMessage::DisconnectSessions { sessions } => {
            let rooms: Vec<String> = sessions.iter().copied().map(room::session).collect();
            for ns in [Namespace::Chat, Namespace::Notifications] {
                if let Some(op) = io.of(ns.path()) {
                    let _ = op.to(rooms.clone()).disconnect().await;
                }
            }
        }
        BusMessage::Rooms { users, join, leave } => {
            let Some(op) = io.of(Namespace::Chat.path()) else {
                return;
            };
            let targets: Vec<String> = users.iter().copied().map(room::user).collect();
            if !join.is_empty() {
                let _ = op.clone().to(targets.clone()).join(join.clone()).await;
            }
            if !leave.is_empty() {
                let _ = op.to(targets).leave(leave.clone()).await;
            }
        }
        BusMessage::Resubscribed { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use axum::{
        body::{Body, Bytes},
        extract::{OriginalUri, Request},
        http::{HeaderValue, Uri, header},
    };

    use super::detach_handshake;

    /// A request whose URI, header values and `OriginalUri` are slices of one buffer, as
    /// hyper and axum build them.
    fn shared_request(path_and_query: &str) -> (Bytes, Request) {
        let buf = Bytes::from(format!("{path_and_query} Bearer abc text/plain text/html"));
        let uri = Uri::from_maybe_shared(buf.slice(..path_and_query.len())).unwrap();
        let at = |s: &str| {
            let i = path_and_query.len()
                + 1
                + buf[path_and_query.len() + 1..]
                    .windows(s.len())
                    .position(|w| w == s.as_bytes())
                    .unwrap();
            HeaderValue::from_maybe_shared(buf.slice(i..i + s.len())).unwrap()
        };
        let mut auth = at("Bearer abc");
        auth.set_sensitive(true);
        let mut req = Request::builder()
            .uri(uri.clone())
            .body(Body::empty())
            .unwrap();
        req.headers_mut().insert(header::AUTHORIZATION, auth);
        req.headers_mut().append(header::ACCEPT, at("text/plain"));
        req.headers_mut().append(header::ACCEPT, at("text/html"));
        req.extensions_mut().insert(OriginalUri(uri));
        (buf, req)
    }

    fn inside(buf: &Bytes, bytes: &[u8]) -> bool {
        buf.as_ptr_range().contains(&bytes.as_ptr())
    }

    #[tokio::test]
    async fn a_handshake_keeps_nothing_of_the_connection_buffer() {
        let (buf, req) = shared_request("/socket.io/?EIO=4&transport=websocket");
        let req = detach_handshake(req).await;
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert!(!inside(&buf, req.uri().path().as_bytes()));
        let original = &req.extensions().get::<OriginalUri>().unwrap().0;
        assert_eq!(original, req.uri());
        assert!(!inside(&buf, original.path().as_bytes()));
        let auth = &req.headers()[header::AUTHORIZATION];
        assert_eq!(auth, "Bearer abc");
        assert!(auth.is_sensitive());
        let accept: Vec<_> = req.headers().get_all(header::ACCEPT).iter().collect();
        assert_eq!(accept, ["text/plain", "text/html"]);
        for v in req.headers().values() {
            assert!(!inside(&buf, v.as_bytes()));
        }
    }

    #[tokio::test]
    async fn requests_of_an_existing_session_and_rest_calls_pass_untouched() {
        for path in ["/socket.io/?EIO=4&transport=polling&sid=abc", "/users/me"] {
            let (buf, req) = shared_request(path);
            let req = detach_handshake(req).await;
            assert!(inside(&buf, req.uri().path().as_bytes()), "{path}");
            assert!(inside(
                &buf,
                req.headers()[header::AUTHORIZATION].as_bytes()
            ));
        }
    }
}
