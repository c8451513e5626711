//! Device sessions are durable: PostgreSQL holds them, so a Redis that lost its data logs
//! no one out, and a revocation still reaches every node at once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{
        TestApp, body, flush_prefix, name, redis_url, spawn_app_memory, spawn_configured, two_nodes,
    },
    realtime::PrivateRedis,
};

/// A new user's first device: its tokens, session id and user.
async fn sign_up(app: &TestApp, name: &str) -> Value {
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

/// Another device of the user `first` signed up.
async fn sign_in_again(app: &TestApp, first: &Value, device: &str) -> Value {
    let name = text(&first["user"], "username");
    let resp = app
        .post_login(json!({
            "username": name,
            "password": format!("password-{name}"),
            "device": device,
        }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    body(resp).await
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        "/auth/refresh",
        None,
        Some(json!({ "refresh_token": token })),
    )
    .await
}

fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_owned()
}

/// The status of `GET /users/me` with `token`.
async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.get("/users/me", token).await.status()
}

/// The session ids `GET /auth/sessions` lists for `token`.
async fn listed(app: &TestApp, token: &str) -> Vec<String> {
    let list = app.get_body("/auth/sessions", token).await;
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|s| text(s, "session_id"))
        .collect()
}

/// Waits until the node answers `/readyz` again after its Redis came back.
async fn ready_again(node: &TestApp) {
    for _ in 0..100 {
        let r = node.request(Method::GET, "/readyz", None, None).await;
        if r.status() == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node never became ready again after the Redis restart");
}

#[tokio::test]
async fn a_device_stays_signed_in_on_every_node_after_redis_restarts_empty() {
    // Arrange: two nodes on a private Redis; a device signed in on A with a socket on B.
    // Short presence leases make the heartbeat check B's sessions every 300 ms.
    let mut redis = PrivateRedis::start(crate::helpers::free_port());
    redis.wait_up().await;
    let url = redis.url();
    let tweak = |s: &mut chatty::config::Settings| {
        s.redis_url = Some(url.clone());
        s.presence_ttl_ms = 900;
    };
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let signed = sign_up(&a, &name("alice")).await;
    let access = text(&signed, "access_token");
    let mut sock = b.socket(&access).await;

    // Act: Redis comes back with nothing, sessions included
    redis.restart_empty().await;
    for node in [&a, &b] {
        ready_again(node).await;
    }

    // Assert: the access token works on both nodes, the session is listed, its refresh
    // token rotates, and the socket outlived several session checks
    for node in [&a, &b] {
        assert_eq!(me(node, &access).await, StatusCode::OK);
    }
    assert_eq!(listed(&b, &access).await, vec![text(&signed, "session_id")]);
    let rotated = refresh(&b, &text(&signed, "refresh_token")).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated = body(rotated).await;
    assert_eq!(rotated["session_id"], signed["session_id"]);
    assert_eq!(
        me(&a, &text(&rotated, "access_token")).await,
        StatusCode::OK
    );
    assert!(
        !sock.wait_disconnected(Duration::from_millis(1200)).await,
        "the socket was dropped as if its session had ended"
    );
}

#[tokio::test]
async fn a_device_revoked_after_redis_lost_its_keys_is_refused_on_every_node_at_once() {
    // Arrange: alice's laptop and phone; the laptop has a socket on B
    let (a, b) = two_nodes().await;
    let laptop = sign_up(&a, &name("alice")).await;
    let phone = sign_in_again(&a, &laptop, "phone").await;
    let laptop_token = text(&laptop, "access_token");
    let phone_token = text(&phone, "access_token");
    let mut sock = b.socket(&laptop_token).await;
    flush_prefix(&redis_url(), &a.prefix).await;

    // Act: the phone ends the laptop's session, on B
    let sid = text(&laptop, "session_id");
    let resp = b
        .delete(&format!("/auth/sessions/{sid}"), &phone_token)
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Assert: refused on both nodes at once, socket gone; still refused once the cache
    // lost the revocation too; the phone is untouched
    for node in [&a, &b] {
        assert_eq!(me(node, &laptop_token).await, StatusCode::UNAUTHORIZED);
    }
    assert!(
        sock.wait_disconnected(Duration::from_secs(1)).await,
        "the socket outlived its session"
    );
    flush_prefix(&redis_url(), &a.prefix).await;
    for node in [&a, &b] {
        assert_eq!(me(node, &laptop_token).await, StatusCode::UNAUTHORIZED);
        assert_eq!(me(node, &phone_token).await, StatusCode::OK);
    }
    let spent = refresh(&a, &text(&laptop, "refresh_token")).await;
    assert_eq!(spent.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        listed(&a, &phone_token).await,
        vec![text(&phone, "session_id")]
    );
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_on_two_nodes_let_exactly_one_through() {
    // Arrange
    let (a, b) = two_nodes().await;
    let signed = sign_up(&a, &name("alice")).await;
    let token = text(&signed, "refresh_token");

    // Act: the same refresh token, six times at once, on both nodes
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let uses: Vec<_> = (0..6)
        .map(|i| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            let token = token.clone();
            tokio::spawn(async move { refresh(&node, &token).await.status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for u in uses {
        statuses.push(u.await.unwrap());
    }

    // Assert: one new pair; the others are refused (as reuse)
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_single_node_without_redis_keeps_its_devices_signed_in_across_a_restart() {
    // Arrange: a node with no Redis signs a device in, then stops
    let mut before = spawn_app_memory().await;
    let signed = sign_up(&before, &name("solo")).await;
    let access = text(&signed, "access_token");
    before.stop().await;

    // Act: the node starts again, its memory empty
    let after = before.spawn_peer().await;

    // Assert
    assert_eq!(me(&after, &access).await, StatusCode::OK);
    assert_eq!(
        listed(&after, &access).await,
        vec![text(&signed, "session_id")]
    );
    let rotated = refresh(&after, &text(&signed, "refresh_token")).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let resp = after.post_empty("/auth/logout", &access).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(me(&after, &access).await, StatusCode::UNAUTHORIZED);
}
