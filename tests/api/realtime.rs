//! Socket.IO: authentication, rooms, typing, presence and revocation across nodes.

use std::time::{Duration, Instant};

use chatty_testkit::{ConnectError, Incoming, SioClient};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, QUIET, SocketExt, WAIT, name, settings_on, sockets, spawn_app, spawn_app_memory,
    spawn_configured, two_nodes,
};

/// The next `userStatus` about `user`, skipping others (a socket hears its own user's too).
async fn status_of(sock: &mut SioClient, user: uuid::Uuid, timeout: Duration) -> serde_json::Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ev = sock
            .next_event("userStatus", left)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if ev["userId"] == user.to_string() {
            return ev;
        }
    }
}

/// `userStatus` events about `user` within `window`.
async fn statuses_of(
    sock: &mut SioClient,
    user: uuid::Uuid,
    window: Duration,
) -> Vec<serde_json::Value> {
    sock.collect("userStatus", window)
        .await
        .into_iter()
        .filter(|e| e["userId"] == user.to_string())
        .collect()
}

async fn refused(base: &str, ns: &str, auth: serde_json::Value) -> String {
    match SioClient::connect(base, ns, auth).await {
        Err(ConnectError::Refused(msg)) => msg,
        Err(other) => panic!("expected connect_error, got {other}"),
        Ok(_) => panic!("connection was accepted"),
    }
}

/// Asserts that `sock` is connected and answering: leaving a conversation it is not in is
/// acknowledged as done.
async fn assert_answers(sock: &SioClient) {
    let ack = sock
        .ack(
            "leaveConversation",
            &json!(uuid::Uuid::new_v4().to_string()),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn sockets_without_a_valid_live_token_are_refused_with_a_reason() {
    let app = spawn_app().await;
    let user = app.register(&name("sock")).await;
    for ns in ["/", "/notifications"] {
        let msg = refused(&app.address, ns, json!({})).await;
        assert!(msg.contains("token required"), "{msg}");
        let msg = refused(&app.address, ns, json!({ "userId": user.id })).await;
        assert!(msg.contains("userId is not accepted"), "{msg}");
        let msg = refused(&app.address, ns, json!({ "token": "garbage" })).await;
        assert!(msg.contains("malformed"), "{msg}");
    }
    let expired = app
        .state
        .tokens
        .issue(user.id, uuid::Uuid::new_v4())
        .unwrap()
        .0;
    let msg = refused(&app.address, "/", json!({ "token": expired })).await;
    assert!(msg.contains("revoked"), "{msg}");
    app.post_empty("/auth/logout", &user.token).await;
    let msg = refused(&app.address, "/", json!({ "token": user.token })).await;
    assert!(msg.contains("revoked"), "{msg}");
}

#[tokio::test]
async fn a_token_in_the_authorization_header_is_accepted() {
    let app = spawn_app_memory().await;
    let user = app.register(&name("hdr")).await;
    let header = format!("Bearer {}", user.token);
    let sock = SioClient::connect_with_headers(
        &app.address,
        "/",
        json!({}),
        &[("authorization", &header)],
    )
    .await;
    assert!(sock.is_ok(), "{:?}", sock.err());
}

#[tokio::test]
async fn the_notifications_namespace_greets_with_connected() {
    let app = spawn_app().await;
    let user = app.register(&name("notif")).await;
    let mut sock = app.notifications_socket(&user.token).await;
    let hello = sock.event("notifications:connected").await;
    assert_eq!(hello, json!({ "status": "connected" }));
}

#[tokio::test]
async fn typing_reaches_other_members_on_another_node_but_not_the_typist() {
    // Arrange: alice on node A, bob on node B, both in one conversation room
    let (a, b) = two_nodes().await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_conversation().await;
    let [mut alice_sock, mut bob_sock] = sockets([(&a, &alice), (&b, &bob)]).await;
    for s in [&alice_sock, &bob_sock] {
        let ack = s.ack("joinConversation", &json!(conv.to_string())).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    // Act
    let ack = alice_sock.typing(conv, true).await;
    // Assert
    assert_eq!(ack["ok"], true, "{ack}");
    let got = bob_sock.event("userTyping").await;
    assert_eq!(
        got,
        json!({ "userId": alice.id, "conversationId": conv, "isTyping": true })
    );
    alice_sock
        .assert_silent("userTyping", "typist heard their own typing")
        .await;
    let typing = a
        .get(&format!("/conversations/{conv}/typing"), &bob.token)
        .await;
    if typing.status() == StatusCode::OK {
        let list = typing.json::<serde_json::Value>().await.unwrap();
        assert!(list.to_string().contains(&alice.id.to_string()), "{list}");
    }
    alice_sock
        .emit(
            "typing",
            &json!({ "conversationId": conv, "isTyping": false }),
        )
        .unwrap();
    let stopped = bob_sock.event("userTyping").await;
    assert_eq!(stopped["isTyping"], false);
}

#[tokio::test]
async fn strangers_cannot_join_or_type_in_a_conversation_and_hear_nothing() {
    let app = spawn_app().await;
    let [alice, bob, eve] = app.users(["alice", "bob", "eve"]).await;
    let conv = app.conversation_of(&[&alice, &bob]).await;
    let mut eve_sock = app.socket(&eve.token).await;
    let bob_sock = app.socket(&bob.token).await;
    bob_sock
        .ack("joinConversation", &json!({ "conversationId": conv }))
        .await;

    let join = eve_sock
        .ack("joinConversation", &json!(conv.to_string()))
        .await;
    assert_eq!(join["ok"], false);
    assert_eq!(join["error"]["statusCode"], 404, "{join}");
    let typing = eve_sock.typing(conv, true).await;
    assert_eq!(typing["ok"], false);

    bob_sock.typing(conv, true).await;
    eve_sock
        .assert_silent("userTyping", "a stranger heard typing")
        .await;
}

#[tokio::test]
async fn malformed_payloads_get_an_error_and_the_socket_lives() {
    let app = spawn_app_memory().await;
    let user = app.register(&name("bad")).await;
    let mut sock = app.socket(&user.token).await;
    let ack = sock
        .ack("typing", &json!({ "conversationId": "nope" }))
        .await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["statusCode"], 400, "{ack}");
    let ack = sock.ack("joinConversation", &json!(42)).await;
    assert_eq!(ack["error"]["statusCode"], 400, "{ack}");
    // Without an ack the error comes back as an `error` event.
    sock.emit("joinConversation", &json!({})).unwrap();
    let err = sock.event("error").await;
    assert_eq!(err["event"], "joinConversation");
    assert_eq!(err["error"]["statusCode"], 400);
    // Still connected and answering.
    assert_answers(&sock).await;
}

#[tokio::test]
async fn logout_on_one_node_drops_exactly_that_devices_sockets_on_another() {
    let (a, b) = two_nodes().await;
    let (user, laptop) = a.two_devices("dev", "laptop").await;
    let mut phone_chat = b.socket(&user.token).await;
    let mut phone_notes = b.notifications_socket(&user.token).await;
    let mut laptop_chat = b.socket(&laptop).await;

    let resp = a.post_empty("/auth/logout", &user.token).await;
    assert_eq!(resp.status(), StatusCode::OK);

    assert!(
        phone_chat.wait_disconnected(Duration::from_secs(1)).await,
        "phone chat socket survived logout"
    );
    assert!(
        phone_notes.wait_disconnected(Duration::from_secs(1)).await,
        "phone notifications socket survived"
    );
    assert!(
        !laptop_chat.wait_disconnected(QUIET).await,
        "the other device was dropped too"
    );
    assert_answers(&laptop_chat).await;
}

#[tokio::test]
async fn presence_goes_online_and_offline_once_across_devices_and_nodes() {
    // Arrange: bob watches from node B; alice has two devices on nodes A and B
    let (a, b) = two_nodes().await;
    let [alice, bob] = a.users(["alice", "bob"]).await;
    a.conversation_of(&[&alice, &bob]).await;
    let mut bob_sock = b.socket(&bob.token).await;
    let alice_phone = a.login(&alice, "phone").await;

    // Act + Assert: first device → online, announced once
    let first = a.socket(&alice.token).await;
    let online = status_of(&mut bob_sock, alice.id, WAIT).await;
    assert_eq!(online["status"], "online");
    assert_eq!(a.status_of(alice.id).await, "online");
    let second = b.socket(&alice_phone).await;
    assert!(
        statuses_of(&mut bob_sock, alice.id, QUIET).await.is_empty(),
        "second device re-announced"
    );

    // One device leaves: still online
    drop(first);
    assert!(
        statuses_of(&mut bob_sock, alice.id, QUIET).await.is_empty(),
        "went offline with a device left"
    );
    // The last leaves: offline, once
    drop(second);
    let offline = status_of(&mut bob_sock, alice.id, WAIT).await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["lastSeenAt"].is_string());
    assert_eq!(a.status_of(alice.id).await, "offline");
}

#[tokio::test]
async fn strangers_do_not_hear_a_users_presence() {
    let app = spawn_app().await;
    let [alice, eve] = app.users(["alice", "eve"]).await;
    let mut eve_sock = app.socket(&eve.token).await;
    let _alice_sock = app.socket(&alice.token).await;
    assert!(statuses_of(&mut eve_sock, alice.id, QUIET).await.is_empty());
}

#[tokio::test]
async fn a_killed_nodes_users_go_offline_within_the_lease_announced_by_survivors() {
    // Arrange: short leases so the test takes seconds, not the production 30 s
    let lease_ms = 1500;
    let a = spawn_configured(true, |s| s.presence_ttl_ms = lease_ms).await;
    let [alice, bob] = a.users(["alice", "bob"]).await;
    a.conversation_of(&[&alice, &bob]).await;
    let mut bob_sock = a.socket(&bob.token).await;
    let mut doomed = a.spawn_process(&[("CHATTY_PRESENCE_TTL_MS", &lease_ms.to_string())]);
    doomed.ready().await;
    let _alice_sock = SioClient::connect(&doomed.address, "/", json!({ "token": alice.token }))
        .await
        .unwrap();
    let online = status_of(&mut bob_sock, alice.id, WAIT).await;
    assert_eq!(online["status"], "online");

    // Act: SIGKILL, no drain
    let killed_at = std::time::Instant::now();
    doomed.kill();

    // Assert
    let offline = status_of(&mut bob_sock, alice.id, Duration::from_millis(lease_ms * 3)).await;
    assert_eq!(offline["status"], "offline");
    assert!(
        killed_at.elapsed() <= Duration::from_millis(lease_ms * 2),
        "took {:?}",
        killed_at.elapsed()
    );
    assert_eq!(a.status_of(alice.id).await, "offline");
}

/// A Redis of this test's own, so it can be restarted without disturbing other tests. It
/// persists with an append-only file, as a production Redis holding sessions must.
pub(crate) struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl PrivateRedis {
    pub(crate) fn start(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("chatty-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = Self::spawn(port, &dir);
        Self { port, dir, child }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> std::process::Child {
        std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args(["--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH")
    }

    /// Kills the server and starts it again on the same port and data directory.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.start_again().await;
    }

    /// Starts the killed server again on the same port and data directory.
    pub(crate) async fn start_again(&mut self) {
        self.child = Self::spawn(self.port, &self.dir);
        self.wait_up().await;
    }

    /// Kills the server and starts it again on the same port with no data, as a Redis
    /// without persistence, or a replica promoted before it caught up, comes back.
    pub(crate) async fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("redis dir");
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.child = Self::spawn(self.port, &self.dir);
        self.wait_up().await;
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) async fn wait_up(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn fan_out_and_presence_recover_by_themselves_after_redis_restarts() {
    // Arrange: two nodes on a private Redis, alice on A, bob on B, both in the room
    let mut redis = PrivateRedis::start(crate::helpers::free_port());
    redis.wait_up().await;
    let url = redis.url();
    let tweak = |s: &mut chatty::config::Settings| {
        s.redis_url = Some(url.clone());
        s.presence_ttl_ms = 1500;
    };
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_conversation().await;
    let alice_sock = a.socket(&alice.token).await;
    let mut bob_sock = b.socket(&bob.token).await;
    for s in [&alice_sock, &bob_sock] {
        s.ack("joinConversation", &json!(conv.to_string())).await;
    }

    // Act: Redis dies and comes back on the same port; presence leases are lost with it
    redis.restart().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}presence:*", a.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .unwrap();
    }

    // Assert: both buses resubscribe, REST stayed up, fan-out and presence are back
    for node in [&a, &b] {
        let mut ready = false;
        for _ in 0..100 {
            let r = node
                .request(reqwest::Method::GET, "/readyz", None, None)
                .await;
            if r.status() == StatusCode::OK {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            ready,
            "node never became ready again after the Redis restart"
        );
    }
    let mut heard = false;
    for _ in 0..10 {
        let ack = alice_sock.typing(conv, true).await;
        if ack["ok"] == true
            && !bob_sock
                .collect("userTyping", Duration::from_millis(300))
                .await
                .is_empty()
        {
            heard = true;
            break;
        }
        alice_sock.typing(conv, false).await;
    }
    assert!(
        heard,
        "cross-node fan-out did not resume after the Redis restart"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let online = a
        .state
        .fabric
        .presence
        .online(&[alice.id, bob.id])
        .await
        .unwrap();
    assert_eq!(
        online.len(),
        2,
        "presence leases were not re-registered: {online:?}"
    );
    redis.kill();
}

#[tokio::test]
async fn a_draining_node_sends_its_sockets_away_without_flapping_presence() {
    // Arrange: alice on A, bob watching from B
    let mut a = spawn_app().await;
    let b = a.spawn_peer().await;
    let [alice, bob] = a.users(["alice", "bob"]).await;
    a.conversation_of(&[&alice, &bob]).await;
    let mut bob_sock = b.socket(&bob.token).await;
    let mut alice_sock = a.socket(&alice.token).await;
    assert_eq!(
        status_of(&mut bob_sock, alice.id, WAIT).await["status"],
        "online"
    );

    // Act: SIGTERM-equivalent on A
    let stopped = tokio::time::timeout(Duration::from_secs(10), a.stop()).await;

    // Assert: A exits promptly, alice's socket is closed, and reconnecting to B does not
    // make her flap offline/online for bob
    assert!(stopped.is_ok(), "node did not finish draining in time");
    assert!(
        alice_sock.wait_disconnected(WAIT).await,
        "socket stayed open on a drained node"
    );
    let _again = b.socket(&alice.token).await;
    assert!(
        statuses_of(&mut bob_sock, alice.id, Duration::from_millis(800))
            .await
            .is_empty(),
        "presence flapped"
    );
    assert_eq!(b.status_of(alice.id).await, "online");
}

/// How a socket ended, and when.
async fn ending(mut sock: SioClient, within: Duration) -> Option<(Incoming, Instant)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sock.next(within)).await {
            Err(_) => return None,
            Ok(None) => return Some((Incoming::Closed, Instant::now())),
            Ok(Some(end @ (Incoming::Disconnected | Incoming::Closed))) => {
                return Some((end, Instant::now()));
            }
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_draining_node_closes_its_sockets_transports_one_by_one_over_the_spread() {
    // Arrange: six sockets on a node that drains over 2 s
    let mut app = spawn_configured(true, |s| {
        s.drain_spread_secs = 2;
        s.shutdown_grace_secs = 5;
    })
    .await;
    let mut sockets = Vec::new();
    for i in 0..6 {
        let user = app.register(&name(&format!("drained{i}"))).await;
        sockets.push(app.socket(&user.token).await);
    }

    // Act: SIGTERM-equivalent, while watching every socket end
    let started = Instant::now();
    let ends = futures_util::future::join_all(
        sockets
            .into_iter()
            .map(|s| ending(s, Duration::from_secs(6))),
    );
    let (ends, ()) = tokio::join!(ends, async {
        let stopped = tokio::time::timeout(Duration::from_secs(8), app.stop()).await;
        assert!(stopped.is_ok(), "node did not finish draining in time");
    });

    // Assert: each transport closed (a Socket.IO disconnect would tell clients not to
    // reconnect), one after another over the spread rather than together
    let mut at = Vec::new();
    for end in ends {
        let (how, when) = end.expect("socket stayed open on a drained node");
        assert!(
            matches!(how, Incoming::Closed),
            "the server disconnected the namespace instead of closing the transport"
        );
        at.push(when.duration_since(started));
    }
    at.sort();
    assert!(
        at[5] - at[0] >= Duration::from_millis(1200),
        "sockets closed together: {at:?}"
    );
    assert!(at[5] <= Duration::from_millis(3500), "too slow: {at:?}");
}

#[tokio::test]
async fn a_drain_spread_as_long_as_the_grace_period_is_refused() {
    let mut settings = settings_on(&name("spread"), "spread:", Backend::Memory);
    settings.drain_spread_secs = 25;
    settings.shutdown_grace_secs = 25;
    let err = chatty::startup::Application::build(settings)
        .await
        .err()
        .expect("a spread that leaves no time to close was accepted");
    assert!(
        err.to_string().contains("CHATTY_DRAIN_SPREAD_SECS"),
        "{err}"
    );
}

#[tokio::test]
async fn sockets_are_dropped_when_their_session_ends_even_without_a_logout_event() {
    let app = spawn_configured(true, |s| {
        s.token_ttl_secs = 2;
        s.presence_ttl_ms = 900;
    })
    .await;
    let user = app.register(&name("brief")).await;
    let mut sock = app.socket(&user.token).await;
    assert!(
        !sock.wait_disconnected(Duration::from_millis(1000)).await,
        "dropped before the session ended"
    );
    assert!(
        sock.wait_disconnected(Duration::from_secs(4)).await,
        "socket outlived its session"
    );
}

#[tokio::test]
async fn long_polling_clients_and_websocket_clients_hear_each_other_across_nodes() {
    use chatty_testkit::Transport;
    let (a, b) = two_nodes().await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_conversation().await;
    let mut polling = SioClient::connect_with(
        &a.address,
        "/",
        json!({ "token": alice.token }),
        &[],
        Transport::Polling,
    )
    .await
    .expect("polling connect");
    let ws = b.socket(&bob.token).await;
    for s in [&polling, &ws] {
        let ack = s.ack("joinConversation", &json!(conv.to_string())).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    ws.typing(conv, true).await;
    let heard = polling.event("userTyping").await;
    assert_eq!(heard["userId"], bob.id.to_string());
    let refused =
        SioClient::connect_with(&a.address, "/", json!({}), &[], Transport::Polling).await;
    assert!(matches!(refused, Err(ConnectError::Refused(_))));
}

/// A socket that closes while its connect is still being counted must not stay counted:
/// heartbeats would renew its presence lease for ever and the user would never go offline.
#[tokio::test]
async fn sockets_closed_right_after_connecting_leave_no_presence_behind() {
    let a = spawn_app().await;
    let alice = a.register(&name("alice")).await;
    let mut node = a.spawn_process(&[("CHATTY_MAX_SOCKETS_PER_USER", "1000")]);
    node.ready().await;

    let attempts = (0..100).map(|_| {
        let (address, token) = (node.address.clone(), alice.token.clone());
        tokio::spawn(async move {
            let sock = SioClient::connect(&address, "/", json!({ "token": token }))
                .await
                .unwrap();
            drop(sock);
        })
    });
    for t in futures_util::future::join_all(attempts).await {
        t.unwrap();
    }

    // Long enough for every connect to be counted and every close to be handled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.status_of(alice.id).await, "offline");
    node.kill();
}

/// Presence transitions of one user race when devices come and go on different nodes at
/// once; the announce that runs last must write and tell the current truth, whatever the
/// transition that triggered it believed.
#[tokio::test]
async fn a_late_presence_transition_announces_the_current_truth() {
    use chatty::presence::{Status, announce};
    let a = spawn_app().await;
    let [alice, bob] = a.users(["alice", "bob"]).await;
    a.conversation_of(&[&alice, &bob]).await;
    let mut bob_sock = a.socket(&bob.token).await;

    // A late "online" for a user without a live connection.
    announce(&a.state, alice.id, Status::Online).await;
    assert_eq!(
        status_of(&mut bob_sock, alice.id, WAIT).await["status"],
        "offline"
    );
    assert_eq!(a.status_of(alice.id).await, "offline");

    // A late "offline" for a user with one.
    let _alice_sock = a.socket(&alice.token).await;
    assert_eq!(
        status_of(&mut bob_sock, alice.id, WAIT).await["status"],
        "online"
    );
    announce(&a.state, alice.id, Status::Offline).await;
    assert_eq!(
        status_of(&mut bob_sock, alice.id, WAIT).await["status"],
        "online"
    );
    assert_eq!(a.status_of(alice.id).await, "online");
}

/// A message whose publish never reached a node (its sender's node died between commit and
/// publish, or it was published while this node was resubscribing) reaches that node's
/// sockets once the node hears the bus again, without the client asking `sync`.
#[tokio::test]
async fn messages_the_bus_missed_are_replayed_once_the_node_resubscribes() {
    // Arrange: bob's socket on a node of a private Redis
    let mut redis = PrivateRedis::start(crate::helpers::free_port());
    redis.wait_up().await;
    let url = redis.url();
    let a = spawn_configured(true, |s: &mut chatty::config::Settings| {
        s.redis_url = Some(url.clone());
    })
    .await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_conversation().await;
    let mut bob_sock = a.socket(&bob.token).await;
    // Stored by a node that died before it published: the row, and no event.
    let message_id = uuid::Uuid::now_v7();
    sqlx::query(
        "with c as (update conversations set last_seq = last_seq + 1 where conversation_id = $1 \
           returning last_seq) \
         insert into messages (message_id, conversation_id, sender_id, seq, content) \
         select $2, $1, $3, c.last_seq, 'unheard' from c",
    )
    .bind(conv)
    .bind(message_id)
    .bind(alice.id)
    .execute(&a.db)
    .await
    .unwrap();
    assert!(bob_sock.collect("newMessage", QUIET).await.is_empty());

    // Act: Redis restarts, so the node loses its subscription and takes it up again
    redis.restart().await;

    // Assert
    let got = bob_sock
        .next_event("newMessage", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got["message_id"], message_id.to_string());
    assert_eq!(got["content"], "unheard");
    assert_eq!(got["seq"], 1);
}

#[tokio::test]
async fn a_payload_field_of_the_wrong_type_is_a_400_naming_it_as_rest_does() {
    let app = spawn_app_memory().await;
    let alice = app.register(&name("typed")).await;
    let conv = app.group(&alice, &[]).await;
    let sock = app.socket(&alice.token).await;
    let cases = [
        (
            "sendMessage",
            json!({ "content": 5, "conversation_id": conv }),
            "content",
        ),
        (
            "typing",
            json!({ "conversationId": conv, "isTyping": "yes" }),
            "isTyping",
        ),
        (
            "editMessage",
            json!({ "messageId": 7, "content": "x" }),
            "messageId",
        ),
        (
            "updateMessageStatus",
            json!({ "messageId": uuid::Uuid::new_v4(), "status": 1 }),
            "status",
        ),
        (
            "sync",
            json!({ "conversations": { conv.to_string(): "one" } }),
            "conversations",
        ),
    ];
    for (event, payload, field) in cases {
        let ack = sock.emit_with_ack(event, &payload, WAIT).await.unwrap();
        assert_eq!(ack["ok"], false, "{event}: {ack}");
        assert_eq!(ack["error"]["statusCode"], 400, "{event}: {ack}");
        assert_eq!(ack["error"]["code"], "validation_failed", "{event}: {ack}");
        let named = ack["error"]["fields"][0].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{event}: {ack}");
    }
    // Nothing was stored by the refused send.
    assert_eq!(app.count("messages").await, 0);
}
