//! Refresh tokens: short-lived access tokens, rotation, reuse detection, and sockets that
//! outlive an access token only while its device session lives.

use std::time::Duration;

use chatty_testkit::{ConnectError, SioClient};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    SocketExt, TestApp, assert_error, assert_invalid, body, name, spawn_app, spawn_configured,
    two_nodes,
};

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        "/auth/refresh",
        None,
        Some(json!({ "refresh_token": token })),
    )
    .await
}

async fn sign_in(app: &TestApp, name: &str) -> Value {
    let resp = app
        .post_register(json!({
            "username": name,
            "email": format!("{name}@example.com"),
            "password": format!("password-{name}"),
        }))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    body(resp).await
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_owned()
}

#[tokio::test]
async fn sign_in_returns_a_refresh_token_that_trades_for_a_new_pair_once() {
    // Arrange
    let app = spawn_app().await;
    let first = sign_in(&app, &name("alice")).await;
    let access = chrono::DateTime::parse_from_rfc3339(&text(&first, "expires_at")).unwrap();
    let session =
        chrono::DateTime::parse_from_rfc3339(&text(&first, "refresh_expires_at")).unwrap();
    let now = chrono::Utc::now();
    assert!(
        access < now + chrono::Duration::minutes(16),
        "access token lives 15 minutes"
    );
    assert!(
        session > now + chrono::Duration::days(6),
        "the session lives a week"
    );

    // Act
    let resp = refresh(&app, &text(&first, "refresh_token")).await;

    // Assert: a new pair for the same session and user; both tokens work.
    assert_eq!(resp.status(), StatusCode::OK);
    let second = body(resp).await;
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(second["user"]["user_id"], first["user"]["user_id"]);
    let me = app.get("/users/me", &text(&second, "access_token")).await;
    assert_eq!(me.status(), StatusCode::OK);
    let third = refresh(&app, &text(&second, "refresh_token")).await;
    assert_eq!(third.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_session_on_every_node() {
    // Arrange: a device signed in on A, with a socket on B, refreshes once on A.
    let (a, b) = two_nodes().await;
    let signed = sign_in(&a, &name("alice")).await;
    let mut sock = b.socket(&text(&signed, "access_token")).await;
    let other_device = a
        .post_login(json!({ "username": signed["user"]["username"], "password": format!("password-{}", text(&signed["user"], "username")) }))
        .await;
    let other_device = body(other_device).await;
    let rotated = body(refresh(&a, &text(&signed, "refresh_token")).await).await;

    // Act: the spent token is presented again, on B.
    let reuse = refresh(&b, &text(&signed, "refresh_token")).await;

    // Assert: refused, and the session is gone everywhere: its new tokens, its socket.
    let err = assert_error(reuse, StatusCode::UNAUTHORIZED).await;
    assert!(
        err["message"].as_str().unwrap().contains("already used"),
        "{err}"
    );
    for node in [&a, &b] {
        let me = node.get("/users/me", &text(&rotated, "access_token")).await;
        assert_error(me, StatusCode::UNAUTHORIZED).await;
    }
    assert_error(
        refresh(&a, &text(&rotated, "refresh_token")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(
        sock.wait_disconnected(Duration::from_secs(1)).await,
        "the socket outlived its session"
    );
    // The user's other device is untouched.
    let me = b
        .get("/users/me", &text(&other_device, "access_token"))
        .await;
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_expired_access_token_is_refused_while_its_socket_lives_on_with_the_session() {
    // Arrange: access tokens of one second. Validation allows 5 s of clock skew and
    // compares whole seconds, so a token signed at N.0 s is refused from N+7 s on.
    let app = spawn_configured(true, |s| s.access_token_ttl_secs = 1).await;
    let signed = sign_in(&app, &name("alice")).await;
    let access = text(&signed, "access_token");
    let mut sock = app.socket(&access).await;
    tokio::time::sleep(Duration::from_millis(7_200)).await;

    // Act + Assert: REST and new sockets refuse the expired token.
    let me = app.get("/users/me", &access).await;
    let err = assert_error(me, StatusCode::UNAUTHORIZED).await;
    assert!(
        err["message"].as_str().unwrap().contains("expired"),
        "{err}"
    );
    match SioClient::connect(&app.address, "/", json!({ "token": access })).await {
        Err(ConnectError::Refused(why)) => assert!(why.contains("expired"), "{why}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a socket connected with an expired token"),
    }
    // The open socket still works: its session is live.
    let ack = sock
        .ack(
            "joinConversation",
            &json!({ "conversationId": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(ack["error"]["statusCode"], 404, "{ack}");
    // A refreshed token reconnects.
    let fresh = body(refresh(&app, &text(&signed, "refresh_token")).await).await;
    let fresh_access = text(&fresh, "access_token");
    let _again = app.socket(&fresh_access).await;
    // Revocation still drops the old socket at once.
    let logout = app
        .request(Method::POST, "/auth/logout", Some(&fresh_access), None)
        .await;
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(body(logout).await["message"], "Successfully logged out");
    assert!(sock.wait_disconnected(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn refresh_refuses_missing_malformed_and_unknown_tokens() {
    let app = spawn_app().await;
    let signed = sign_in(&app, &name("alice")).await;
    let resp = app
        .request(Method::POST, "/auth/refresh", None, Some(json!({})))
        .await;
    assert_invalid(resp, "refresh_token").await;
    assert_invalid(refresh(&app, &"x".repeat(500)).await, "refresh_token").await;
    assert_error(refresh(&app, "not-a-token").await, StatusCode::UNAUTHORIZED).await;
    // Well formed, for the right session, but never issued: refused, and not a reuse.
    let sid = text(&signed, "session_id").replace('-', "");
    let forged = format!("{sid}.{}", "ab".repeat(32));
    assert_error(refresh(&app, &forged).await, StatusCode::UNAUTHORIZED).await;
    let still = refresh(&app, &text(&signed, "refresh_token")).await;
    assert_eq!(
        still.status(),
        StatusCode::OK,
        "a forged token ended the session"
    );
}
