//! Socket.IO on `/` (chat) and `/notifications`, served by socketioxide in the same axum
//! app. Sockets authenticate by token on connect, and their events call the core (`chat`);
//! what they receive comes from the cluster event bus through `delivery`.

mod chat_events;
mod handlers;
pub mod presence;

use std::time::Duration;

use serde_json::Value;
use socketioxide::{
    ParserConfig, SocketIo,
    extract::{SocketRef, State, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};

use crate::{auth::AuthUser, state::AppState};

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
        metrics::counter!(crate::metrics::names::SOCKET_AUTH_REFUSED, "reason" => "missing")
            .increment(1);
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
            metrics::counter!(crate::metrics::names::SOCKET_AUTH_REFUSED, "reason" => "invalid")
                .increment(1);
            Err(e.to_string())
        }
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
