//! Abuse resistance: what one hostile or buggy client could do to a node or to other users,
//! each refused by a limit that holds across the cluster (docs/security.md).

use std::time::Duration;

use chatty_testkit::{ConnectError, SioClient};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::{
    SocketExt, TestApp, WAIT, assert_error, assert_invalid, assert_invalid_get, name, spawn_app,
    spawn_configured, two_nodes,
};

fn rate(raw: &str) -> chatty::fabric::Rate {
    chatty::config::parse_rate(raw).expect("rate")
}

async fn metrics_text(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A refusal counter's value, summed over every test node of this process.
fn refusals(metrics: &str, reason: &str) -> f64 {
    let series = format!(
        "{}{{reason=\"{reason}\"}}",
        chatty::metrics::names::LIMIT_REFUSALS
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_user_is_limited_across_rest_sockets_devices_and_nodes() {
    // Arrange: five messages per hour, a device on each node.
    let tweak = |s: &mut chatty::config::Settings| s.limit_sends = rate("5/1h");
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_group().await;
    let second_device = b.login(&alice, "tablet").await;
    let sock_b = b.socket(&second_device).await;
    let send = json!({ "content": "hi", "conversation_id": conv });

    // Act: three over REST on A, two over the socket on B, then one more of each.
    for _ in 0..3 {
        let resp = a.post("/messages", &alice.token, send.clone()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    for _ in 0..2 {
        let ack = sock_b.ack("sendMessage", &send).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let resp = b.post("/messages", &alice.token, send.clone()).await;
    let ack = sock_b.ack("sendMessage", &send).await;

    // Assert
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let err = assert_error(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(err["code"], "rate_limited");
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["statusCode"], 429, "{ack}");
    assert!(ack["error"]["retryAfter"].as_u64().is_some_and(|s| s >= 1));
    assert_eq!(a.count("messages").await, 5);
    // Someone else's budget is their own.
    let resp = a.post_message(&bob, conv, "yo").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(refusals(&metrics_text(&a).await, "sends") >= 2.0);
}

#[tokio::test]
async fn a_burst_of_events_from_one_socket_is_refused_past_its_bounds_without_server_errors() {
    // Arrange: room for every answer in the socket's buffer, so only the event bounds
    // refuse (a client that cannot keep up with its answers is another test).
    let a = spawn_configured(true, |s| s.socket_buffer_packets = 8192).await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_group().await;
    let attacker = a.socket(&alice.token).await;
    let burst = 2_000;
    let (max_in_flight, events) = (
        a.state.settings.socket_max_in_flight as usize,
        a.state.settings.limit_socket_events.burst as usize,
    );

    // Act: every event at once, each asking for an ack.
    let sync = json!({ "conversations": { conv.to_string(): 0 } });
    let acks = futures_util::future::join_all(
        (0..burst).map(|_| attacker.emit_with_ack("sync", &sync, Duration::from_secs(20))),
    )
    .await;
    let me = a.get("/users/me", &bob.token).await;

    // Assert: every event answered; at most the socket's budget ran, the rest were told to
    // slow down; no server error (the pool was never exhausted); others are served.
    let (mut ok, mut limited) = (0, 0);
    for ack in acks {
        let ack = ack.expect("every event is answered");
        if ack["ok"] == true {
            ok += 1;
        } else {
            assert_eq!(ack["error"]["statusCode"], 429, "{ack}");
            limited += 1;
        }
    }
    assert_eq!(ok + limited, burst);
    assert!(ok <= events.max(max_in_flight), "{ok} events ran");
    assert!(ok >= 1);
    assert_eq!(me.status(), StatusCode::OK);
}

/// A raw Engine.IO WebSocket session on `/`, for clients that misbehave in ways the test
/// client will not: reading nothing, sending oversized frames.
async fn raw_socket(
    app: &TestApp,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
        app.port
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
    ws.send(Message::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    loop {
        let m = ws.next().await.unwrap().unwrap();
        let text = m.to_text().unwrap_or_default();
        if text.starts_with("40") {
            return ws;
        }
        assert!(!text.starts_with("44"), "refused: {text}");
    }
}

#[tokio::test]
async fn a_socket_that_cannot_take_its_acks_is_told_and_disconnected_never_left_short() {
    // Arrange: a conversation whose sync answer is large (200 messages of 4,000
    // characters), a tiny outgoing buffer, and a client that reads nothing for a while.
    let a = spawn_configured(true, |s| s.socket_buffer_packets = 4).await;
    let (alice, _, conv) = a.alice_and_bob_in_a_group().await;
    sqlx::query(
        "insert into messages (conversation_id, sender_id, seq, content) \
         select $1, $2, g, repeat('x', 4000) from generate_series(1, 200) g",
    )
    .bind(conv)
    .bind(alice.id)
    .execute(&a.db)
    .await
    .unwrap();
    sqlx::query("update conversations set last_seq = 200 where conversation_id = $1")
        .bind(conv)
        .execute(&a.db)
        .await
        .unwrap();
    let mut ws = raw_socket(&a, &alice.token).await;
    let sent = 120;
    let sync = json!(["sync", { "conversations": { conv.to_string(): 0 } }]);
    for id in 0..sent {
        ws.feed(Message::text(format!("42{id}{sync}")))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();

    // Act: read nothing while the answers pile up, then everything.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (mut acks, mut told, mut disconnected) = (0, false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Ok(Message::Text(text)) = frame else {
            disconnected = true;
            break;
        };
        if text.starts_with("43") {
            acks += 1;
        } else if text.starts_with("42") && text.contains("slow_consumer") {
            told = true;
        } else if text.starts_with("41") {
            disconnected = true;
            break;
        } else if text.as_str() == "2" {
            ws.send(Message::text("3")).await.unwrap();
        }
    }

    // Assert: answers did not fit, and the client was told so and disconnected.
    assert!(
        acks < sent,
        "every answer fit ({acks}); the test did not overflow"
    );
    assert!(
        told,
        "{acks} of {sent} answered and no slow_consumer notice"
    );
    assert!(disconnected, "the socket stayed connected");
    assert!(refusals(&metrics_text(&a).await, "ack_overflow") >= 1.0);
}

#[tokio::test]
async fn an_oversized_websocket_frame_closes_the_connection_unread() {
    // Arrange
    let a = spawn_configured(true, |s| s.max_frame_bytes = 16 * 1024).await;
    let alice = a.register(&name("alice")).await;
    let mut ws = raw_socket(&a, &alice.token).await;

    // Act: a 1 MB event, then a binary frame of the same size on a second connection.
    let big = json!(["sendMessage", { "content": "x".repeat(1 << 20) }]);
    ws.send(Message::text(format!("42{big}"))).await.unwrap();
    let mut ws_bin = raw_socket(&a, &alice.token).await;
    let _ = ws_bin.send(Message::binary(vec![0u8; 1 << 20])).await;

    // Assert: both connections end; nothing was answered.
    for ws in [&mut ws, &mut ws_bin] {
        let mut closed = false;
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Ok(frame) = tokio::time::timeout_at(deadline, ws.next()).await {
            match frame {
                None | Some(Err(_) | Ok(Message::Close(_))) => {
                    closed = true;
                    break;
                }
                Some(Ok(Message::Text(t))) => assert!(!t.starts_with("43"), "answered: {t}"),
                Some(Ok(_)) => {}
            }
        }
        assert!(closed, "the connection stayed open");
    }
    // A frame under the limit is still read.
    let sock = a.socket(&alice.token).await;
    let ack = sock
        .ack(
            "joinConversation",
            &json!({ "conversationId": Uuid::new_v4() }),
        )
        .await;
    assert_eq!(ack["error"]["statusCode"], 404, "{ack}");
}

#[tokio::test]
async fn logins_past_the_hashing_slots_wait_briefly_then_get_503() {
    // Arrange: one hashing slot, a short wait (and room for sixteen attempts at once on
    // one account, whose failed-login limit takes each attempt's place up front).
    let a = spawn_configured(true, |s| {
        s.hash_concurrency = 1;
        s.hash_wait_ms = 20;
        s.limit_login_failures = rate("100/1h");
    })
    .await;
    let alice = a.register(&name("alice")).await;
    let login = json!({ "username": alice.name, "password": format!("password-{}", alice.name) });

    // Act: sixteen logins at once.
    let answers =
        futures_util::future::join_all((0..16).map(|_| a.post_login(login.clone()))).await;

    // Assert: some were signed in, the rest told to come back, none queued for long.
    let (mut ok, mut busy) = (0, 0);
    for resp in answers {
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(resp.headers().get("retry-after").is_some());
                let b = assert_error(resp, StatusCode::SERVICE_UNAVAILABLE).await;
                assert_eq!(b["code"], "busy");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} ok, {busy} busy");
    assert_eq!(a.post_login(login).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn requests_with_made_up_methods_and_paths_add_no_metric_series() {
    // Arrange
    let a = spawn_app().await;
    let before = metrics_text(&a).await;

    // Act
    for i in 0..40 {
        let method = Method::from_bytes(format!("HACK{i}X").as_bytes()).unwrap();
        let _ = a
            .client
            .request(method, a.url(&format!("/nowhere/{i}/{}", Uuid::new_v4())))
            .send()
            .await
            .unwrap();
    }
    let after = metrics_text(&a).await;

    // Assert
    assert!(!after.contains("HACK"), "a client's method became a label");
    assert!(
        !after.contains("/nowhere"),
        "a client's path became a label"
    );
    assert!(after.contains("method=\"OTHER\""));
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{}{{", chatty::metrics::names::HTTP_REQUESTS)))
            .count()
    };
    assert!(
        series(&after) <= series(&before) + 4,
        "{} series before, {} after",
        series(&before),
        series(&after)
    );
}

#[tokio::test]
async fn metrics_can_leave_the_public_port_for_a_listener_of_their_own() {
    let a = spawn_configured(true, |s| {
        s.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let public = a.client.get(a.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let port = a.metrics_port.expect("a metrics listener");
    let own = a
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert!(
        own.text()
            .await
            .unwrap()
            .contains(chatty::metrics::names::LIMIT_REFUSALS)
    );
}

#[tokio::test]
async fn retried_sends_reannounce_a_message_at_most_once_per_window() {
    // Arrange
    let a = spawn_app().await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_group().await;
    let mut bob_sock = a.socket(&bob.token).await;
    let send =
        json!({ "content": "once", "conversation_id": conv, "client_msg_id": Uuid::new_v4() });

    // Act: the send, then thirty retries of it.
    assert_eq!(
        a.post("/messages", &alice.token, send.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    for _ in 0..30 {
        assert_eq!(
            a.post("/messages", &alice.token, send.clone())
                .await
                .status(),
            StatusCode::OK
        );
    }

    // Assert: the first announcement and at most one repeat.
    let heard = bob_sock.collect("newMessage", Duration::from_secs(1)).await;
    assert!(
        (1..=2).contains(&heard.len()),
        "{} announcements",
        heard.len()
    );
    assert_eq!(a.count("messages").await, 1);
}

#[tokio::test]
async fn a_logout_racing_a_socket_connect_on_another_node_always_ends_the_socket() {
    // Arrange
    let (a, b) = two_nodes().await;
    let (alice, _, conv) = a.alice_and_bob_in_a_group().await;

    for round in 0..30 {
        let token = a.login(&alice, &format!("phone {round}")).await;

        // Act: connect on B and log that device out on A at once.
        let connect = {
            let (address, token) = (b.address.clone(), token.clone());
            tokio::spawn(async move {
                SioClient::connect(&address, "/", json!({ "token": token })).await
            })
        };
        let logout = a
            .request(Method::POST, "/auth/logout", Some(&token), None)
            .await;
        assert_eq!(logout.status(), StatusCode::OK);

        // Assert: the socket was refused, or is gone within a second and stored nothing.
        match connect.await.unwrap() {
            Err(ConnectError::Refused(_)) => {}
            Err(other) => panic!("round {round}: {other}"),
            Ok(mut sock) => {
                let _ = sock.emit(
                    "sendMessage",
                    &json!({ "content": "after logout", "conversation_id": conv }),
                );
                assert!(
                    sock.wait_disconnected(Duration::from_secs(1)).await,
                    "round {round}: the socket outlived its logout"
                );
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.count("messages").await, 0);
}

#[tokio::test]
async fn failed_logins_count_against_the_account_whatever_its_spelling() {
    // Arrange
    let a = spawn_configured(true, |s| s.limit_login_failures = rate("3/1h")).await;
    let alice = a.register(&name("alice")).await;
    let email = format!("{}@example.com", alice.name);
    for _ in 0..3 {
        let resp = a
            .post_login(json!({ "username": alice.name, "password": "wrong guess" }))
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }

    // Act + Assert: the email, in any case, in either field, is the same account.
    for body in [
        json!({ "email": email, "password": "wrong guess" }),
        json!({ "email": email.to_uppercase(), "password": "wrong guess" }),
        json!({ "username": email, "password": "wrong guess" }),
        json!({ "username": alice.name.to_uppercase(), "password": format!("password-{}", alice.name) }),
    ] {
        let resp = a.post_login(body.clone()).await;
        assert!(resp.headers().get("retry-after").is_some(), "{body}");
        assert_error(resp, StatusCode::TOO_MANY_REQUESTS).await;
    }
}

#[tokio::test]
async fn parallel_wrong_passwords_are_evaluated_no_more_than_the_limit_allows() {
    // Arrange
    let a = spawn_configured(true, |s| s.limit_login_failures = rate("5/1h")).await;
    let alice = a.register(&name("alice")).await;
    let wrong = json!({ "username": alice.name, "password": "wrong guess" });

    // Act
    let answers =
        futures_util::future::join_all((0..40).map(|_| a.post_login(wrong.clone()))).await;

    // Assert: exactly five were evaluated (401); every other one was refused first.
    let statuses: Vec<StatusCode> = answers.iter().map(reqwest::Response::status).collect();
    let evaluated = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((evaluated, refused), (5, 35), "{statuses:?}");
}

#[tokio::test]
async fn one_address_spraying_passwords_over_many_accounts_is_throttled() {
    // Arrange: the balancer names the client in X-Real-IP.
    let a = spawn_configured(true, |s| {
        s.limit_address_login_failures = rate("5/1h");
        s.client_ip_header = Some("X-Real-IP".into());
    })
    .await;
    let login_from = |ip: &'static str, user: String| {
        a.client
            .post(a.url("/auth/login"))
            .header("X-Real-IP", ip)
            .json(&json!({ "username": user, "password": "Summer2026!" }))
            .send()
    };

    // Act: eight usernames from one address, then one from another.
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(
            login_from("198.51.100.7", format!("victim{i}"))
                .await
                .unwrap()
                .status(),
        );
    }
    let elsewhere = login_from("198.51.100.8", "victim0".into()).await.unwrap();

    // Assert
    assert_eq!(
        statuses,
        [
            vec![StatusCode::UNAUTHORIZED; 5],
            vec![StatusCode::TOO_MANY_REQUESTS; 3]
        ]
        .concat()
    );
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_trusted_header_a_client_cannot_pick_its_address() {
    let a = spawn_configured(true, |s| s.limit_address_login_failures = rate("2/1h")).await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let resp = a
            .client
            .post(a.url("/auth/login"))
            .header("X-Real-IP", format!("203.0.113.{i}"))
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .json(&json!({ "username": format!("nobody{i}"), "password": "guess guess" }))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
    }
    assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
}

#[tokio::test]
async fn sign_ups_from_one_address_are_limited() {
    // Arrange
    let a = spawn_configured(true, |s| s.limit_address_signups = rate("3/1h")).await;

    // Act
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let n = name("new");
        let resp = a
            .post_register(json!({ "username": n, "email": format!("{n}@example.com"), "password": "long enough" }))
            .await;
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(resp.headers().get("retry-after").is_some());
        }
    }

    // Assert
    assert_eq!(
        statuses,
        [
            vec![StatusCode::CREATED; 3],
            vec![StatusCode::TOO_MANY_REQUESTS; 2]
        ]
        .concat()
    );
    assert_eq!(a.count("users").await, 3);
}

#[tokio::test]
async fn an_oversized_login_name_is_refused_before_any_work() {
    // Arrange
    let a = spawn_app().await;
    let huge = "a".repeat(60 * 1024 / 2);

    // Act
    let resp = a
        .post_login(json!({ "username": huge, "password": "whatever it is" }))
        .await;

    // Assert: a 400 naming the field, and no limiter key holding the name.
    assert_invalid(resp, "username").await;
    let mut redis = redis::Client::open(crate::helpers::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", a.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.iter().all(|k| k.len() < 400), "{keys:?}");
}

#[tokio::test]
async fn nul_bytes_in_searches_logins_and_bodies_are_400_naming_the_field() {
    // Arrange
    let a = spawn_app().await;
    let alice = a.register(&name("alice")).await;

    // Act + Assert
    for path in [
        "/users?search=a%00b",
        "/users/search?search=%00",
        "/friendships?search=x%00",
        "/friendships/search?search=%00y",
    ] {
        assert_invalid_get(&a, &alice.token, path, "search").await;
    }
    let resp = a
        .post_login(json!({ "username": "al\u{0}ice", "password": "whatever it is" }))
        .await;
    assert_invalid(resp, "username").await;
    let resp = a
        .post(
            "/friendships/request",
            &alice.token,
            json!({ "friendId": "\u{0}" }),
        )
        .await;
    assert_invalid(resp, "friendId").await;
    let sock = a.socket(&alice.token).await;
    let ack = sock
        .ack(
            "sendMessage",
            &json!({ "content": "a\u{0}b", "conversation_id": Uuid::new_v4() }),
        )
        .await;
    assert_eq!(ack["error"]["statusCode"], 400, "{ack}");
    assert!(
        ack["error"]["fields"].to_string().contains("content"),
        "{ack}"
    );
}

#[tokio::test]
async fn a_user_holds_at_most_the_socket_limit_across_nodes_and_namespaces() {
    // Arrange: three sockets per user.
    let tweak = |s: &mut chatty::config::Settings| s.max_sockets_per_user = 3;
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let [alice, bob] = a.users(["alice", "bob"]).await;
    let first = a.socket(&alice.token).await;
    let _second = b.socket(&alice.token).await;
    let _third = b.notifications_socket(&alice.token).await;

    // Act
    let refused_chat = SioClient::connect(&a.address, "/", json!({ "token": alice.token })).await;
    let refused_notes = SioClient::connect(
        &b.address,
        "/notifications",
        json!({ "token": alice.token }),
    )
    .await;
    let bobs = SioClient::connect(&a.address, "/", json!({ "token": bob.token })).await;

    // Assert
    for refused in [refused_chat, refused_notes] {
        match refused {
            Err(ConnectError::Refused(why)) => assert!(why.contains("too many"), "{why}"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a fourth socket was admitted"),
        }
    }
    assert!(bobs.is_ok(), "another user's limit is their own");
    // A closed socket frees its place.
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        if SioClient::connect(&b.address, "/", json!({ "token": alice.token }))
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the closed socket's place was never freed");
}

#[tokio::test]
async fn help_and_startup_errors_never_print_the_database_or_redis_password() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chatty"))
            .args(args)
            .env_clear()
            .env(
                "DATABASE_URL",
                "postgres://chatty:db-s3cret-pw@127.0.0.1:1/chatty",
            )
            .env("REDIS_URL", "redis://:redis-s3cret-pw@127.0.0.1:1")
            .env("JWT_SECRET", "jwt-s3cret-jwt-s3cret-jwt-s3cret-jwt-s3cret")
            .output()
            .expect("run chatty")
    };
    for args in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["notify", "--help"],
        &["serve", "--addr", "127.0.0.1:0"],
        &["migrate"],
    ] {
        let out = run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.is_empty(), "{args:?} printed nothing");
        for secret in ["db-s3cret-pw", "redis-s3cret-pw", "jwt-s3cret"] {
            assert!(!text.contains(secret), "{args:?} printed {secret}: {text}");
        }
    }
}
