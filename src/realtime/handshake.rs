//! The HTTP side of a Socket.IO handshake.

use super::SOCKET_IO_PATH;

/// Engine.io keeps each session's handshake request (URI, headers, extensions) for the
/// session's lifetime. hyper parses the URI and header values as slices of its connection
/// read buffer (16 KB once a request arrives in two reads), and axum's `OriginalUri`
/// extension is one more slice, so keeping them keeps that buffer alive after the
/// WebSocket upgrade. Owned copies of what is read later let it go, and nothing else is
/// kept: of the headers those in [`KEPT_HEADERS`] (a browser sends a kilobyte or two of
/// others: cookies, user agent, `Accept-*`, `Sec-Fetch-*`), of the extensions hyper's
/// upgrade handle (axum's and tower's, each boxed, are for REST routes). Requests of an
/// existing session (`sid=`) are not kept and pass as they are.
pub async fn detach_handshake(mut req: axum::extract::Request) -> axum::extract::Request {
    use axum::http::Uri;
    let uri = req.uri();
    if !uri.path().starts_with(SOCKET_IO_PATH) || uri.query().is_some_and(|q| q.contains("sid=")) {
        return req;
    }
    if let Ok(owned) = Uri::try_from(uri.to_string()) {
        *req.uri_mut() = owned;
    }
    let upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    *req.extensions_mut() = axum::http::Extensions::new();
    if let Some(upgrade) = upgrade {
        req.extensions_mut().insert(upgrade);
    }
    let headers = std::mem::take(req.headers_mut());
    let mut owned = axum::http::HeaderMap::new();
    for name in KEPT_HEADERS {
        for value in headers.get_all(&name) {
            let sensitive = value.is_sensitive();
            let copy = axum::http::HeaderValue::from_bytes(value.as_bytes()).map_or_else(
                |_| value.clone(),
                |mut c| {
                    c.set_sensitive(sensitive);
                    c
                },
            );
            owned.append(name.clone(), copy);
        }
    }
    *req.headers_mut() = owned;
    req
}

/// The handshake headers read once the request is past this middleware: the token a
/// socket may present as a header (`realtime::connect`), and the key engine.io answers a
/// WebSocket upgrade with.
const KEPT_HEADERS: [axum::http::HeaderName; 2] = [
    axum::http::header::AUTHORIZATION,
    axum::http::header::SEC_WEBSOCKET_KEY,
];

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
        req.headers_mut()
            .insert(header::SEC_WEBSOCKET_KEY, at("abc"));
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
        assert!(req.extensions().get::<OriginalUri>().is_none());
        let auth = &req.headers()[header::AUTHORIZATION];
        assert_eq!(auth, "Bearer abc");
        assert!(auth.is_sensitive());
        assert!(!inside(&buf, auth.as_bytes()));
        // Nothing reads the others once engine.io has the request.
        assert!(req.headers().get(header::ACCEPT).is_none());
        assert_eq!(req.headers()[header::SEC_WEBSOCKET_KEY], "abc");
        assert_eq!(req.headers().len(), 2);
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
