//! The social layer wired into chat: blocks over REST and sockets, group invitations,
//! message notifications fed by real sends and cleared by reading.

use std::time::Duration;

use chatty_testkit::SioClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    QUIET, SocketExt, TestApp, TestUser, WAIT, assert_error, body, name, spawn_app, two_nodes,
};

async fn block(app: &TestApp, blocker: &TestUser, blocked: &TestUser) {
    let resp = app.friendship("block", blocker, blocked.id).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn unblock(app: &TestApp, blocker: &TestUser, blocked: &TestUser) {
    let path = format!("/friendships/unblock/{}", blocked.id);
    assert_eq!(
        app.delete(&path, &blocker.token).await.status(),
        StatusCode::OK
    );
}

async fn direct(app: &TestApp, from: &TestUser, to: &TestUser) -> reqwest::Response {
    app.post(
        "/conversations",
        &from.token,
        json!({ "participant_ids": [to.id] }),
    )
    .await
}

async fn group(app: &TestApp, creator: &TestUser, others: &[&TestUser]) -> reqwest::Response {
    let ids: Vec<Uuid> = others.iter().map(|u| u.id).collect();
    app.post(
        "/conversations",
        &creator.token,
        json!({ "name": "Hikers", "is_group": true, "participant_ids": ids }),
    )
    .await
}

async fn id_of(resp: reqwest::Response) -> Uuid {
    assert!(resp.status().is_success(), "{}", resp.status());
    body(resp).await["conversation_id"]
        .as_str()
        .expect("conversation_id")
        .parse()
        .expect("uuid")
}

async fn send(app: &TestApp, from: &TestUser, conv: Uuid, text: &str) -> reqwest::Response {
    app.post_message(from, conv, text).await
}

async fn notifications(app: &TestApp, user: &TestUser, query: &str) -> Vec<Value> {
    let resp = app
        .get(&format!("/notifications{query}"), &user.token)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    body(resp).await.as_array().expect("array").clone()
}

/// The next `notification` event on a `/notifications` socket.
async fn next_notification(sock: &mut SioClient) -> Value {
    sock.event("notification").await
}

#[tokio::test]
async fn a_block_freezes_direct_chats_both_ways_over_rest_and_sockets() {
    // Arrange: a direct chat with one message, and a group both are in
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let chat = id_of(direct(&app, &alice, &bob).await).await;
    let crew = id_of(group(&app, &carol, &[&alice, &bob]).await).await;
    assert_eq!(
        send(&app, &bob, chat, "hi").await.status(),
        StatusCode::CREATED
    );
    let mut alice_sock = app.socket(&alice.token).await;
    let bob_sock = app.socket(&bob.token).await;

    // Act
    block(&app, &alice, &bob).await;

    // Assert: neither may start or use the direct chat, over REST or a socket
    for (from, to) in [(&bob, &alice), (&alice, &bob)] {
        assert_error(direct(&app, from, to).await, StatusCode::FORBIDDEN).await;
        let refused = assert_error(
            send(&app, from, chat, "still there?").await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert!(
            refused["message"].as_str().unwrap().contains("blocked"),
            "{refused}"
        );
    }
    let ack = bob_sock
        .ack("sendMessage", &json!({ "content": "over the socket", "conversation_id": chat, "client_msg_id": Uuid::new_v4() })).await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["statusCode"], 403, "{ack}");
    assert_eq!(
        app.count("messages").await,
        1,
        "a refused send stored nothing"
    );
    alice_sock
        .assert_silent("newMessage", "a refused send was announced")
        .await;
    // A group is not a direct chat: both still talk there.
    assert_eq!(
        send(&app, &bob, crew, "in the group").await.status(),
        StatusCode::CREATED
    );
    let got = alice_sock.event("newMessage").await;
    assert_eq!(got["content"], "in the group");
    // Strangers still get 404, not a hint about blocks.
    let eve = app.register(&name("eve")).await;
    assert_error(
        send(&app, &eve, chat, "hello?").await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Act: unblocking thaws the chat
    unblock(&app, &alice, &bob).await;

    // Assert
    assert_eq!(direct(&app, &bob, &alice).await.status(), StatusCode::OK);
    let ack = bob_sock
        .ack("sendMessage", &json!({ "content": "friends again", "conversation_id": chat, "client_msg_id": Uuid::new_v4() })).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["data"]["seq"], 2, "seqs stay gap-free across refusals");
}

#[tokio::test]
async fn users_who_blocked_you_cannot_be_put_into_your_groups() {
    // Arrange: dave blocked alice
    let app = spawn_app().await;
    let [alice, bob, dave] = app.users(["alice", "bob", "dave"]).await;
    block(&app, &dave, &alice).await;

    // Act + Assert: creating a group with dave, or adding him, is refused and changes nothing
    let refused = assert_error(
        group(&app, &alice, &[&bob, &dave]).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&dave.id.to_string()),
        "{refused}"
    );
    assert_eq!(app.count("conversations").await, 0);
    let crew = id_of(group(&app, &alice, &[&bob]).await).await;
    let add = app.add_participants(&alice, crew, &[dave.id]).await;
    assert_error(add, StatusCode::FORBIDDEN).await;
    assert_eq!(app.count("conversation_participants").await, 2);

    // The blocker may still add the user they blocked: that is their choice.
    let own = group(&app, &dave, &[&alice]).await;
    assert_eq!(own.status(), StatusCode::CREATED);

    // Someone already in the group who blocks you later is no obstacle to a no-op add.
    block(&app, &bob, &alice).await;
    let again = app.add_participants(&alice, crew, &[bob.id]).await;
    assert!(again.status().is_success(), "{}", again.status());
}

#[tokio::test]
async fn groups_send_an_invitation_to_each_member_they_add_live_on_any_node() {
    // Arrange: dave listens on node B
    let (a, b) = two_nodes().await;
    let [alice, bob, carol, dave] = a.users(["alice", "bob", "carol", "dave"]).await;
    let mut dave_notes = b.notifications_socket(&dave.token).await;
    dave_notes.event("notifications:connected").await;

    // Act: a group with bob and carol, then dave added
    let crew = id_of(group(&a, &alice, &[&bob, &carol]).await).await;
    let add = a.add_participants(&alice, crew, &[dave.id, bob.id]).await;
    assert_eq!(add.status(), StatusCode::OK);

    // Assert: one invitation per new member, none for the creator, none twice
    let expected = json!({
        "conversation_id": crew, "group_name": "Hikers",
        "sender_id": alice.id, "sender_name": alice.name,
    });
    for u in [&bob, &carol, &dave] {
        let list = notifications(&a, u, "").await;
        assert_eq!(list.len(), 1, "{}: {list:?}", u.name);
        assert_eq!(list[0]["type"], "group_invite");
        assert_eq!(list[0]["metadata"], expected);
    }
    assert!(notifications(&a, &alice, "").await.is_empty());
    let live = next_notification(&mut dave_notes).await;
    assert_eq!(live["type"], "group_invite");
    assert_eq!(live, notifications(&b, &dave, "").await[0]);
}

#[tokio::test]
async fn a_hundred_sends_from_three_members_collapse_and_reading_to_the_end_clears_them() {
    // Arrange: three senders and two readers; r1 listens on node B
    let (a, b) = two_nodes().await;
    let senders = a.users(["s0", "s1", "s2"]).await;
    let readers = [a.register(&name("r0")).await, a.register(&name("r1")).await];
    let others: Vec<&TestUser> = senders[1..].iter().chain(readers.iter()).collect();
    let crew = id_of(group(&a, &senders[0], &others).await).await;

    // Act: 100 messages through the API, round robin
    let mut last = Value::Null;
    let mut early = Value::Null;
    for i in 0..100 {
        let resp = send(&a, &senders[i % 3], crew, &format!("message {i}")).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        last = body(resp).await;
        if i == 50 {
            early = last.clone();
        }
    }

    // Assert: each reader ends with one unread message notification counting all 100
    // (notifications are written off the send path, so wait for the last of them)
    for r in &readers {
        let deadline = tokio::time::Instant::now() + WAIT;
        let unread = loop {
            let unread = notifications(&a, r, "/unread").await;
            let messages: Vec<&Value> = unread.iter().filter(|n| n["type"] == "message").collect();
            if messages.len() == 1 && messages[0]["count"] == 100 {
                break unread;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: {unread:?}",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let n = unread.iter().find(|n| n["type"] == "message").unwrap();
        assert_eq!(n["title"], "Hikers");
        assert_eq!(n["metadata"]["message_preview"], "message 99");
        assert_eq!(n["metadata"]["sender_id"], senders[0].id.to_string());
    }
    let s0 = notifications(&a, &senders[0], "/unread").await;
    let s0 = s0.iter().find(|n| n["type"] == "message").unwrap();
    assert_eq!(
        s0["count"], 66,
        "s0 sent 34 of the 100 and is not told of its own"
    );

    // Act: r0 reads halfway; r1 reads to the end, with a device listening on node B
    let mut r1_notes = b.notifications_socket(&readers[1].token).await;
    r1_notes.event("notifications:connected").await;
    for (reader, message) in [(&readers[0], &early), (&readers[1], &last)] {
        let resp = a.mark(reader, message, "read").await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    // Assert: only r1's notification is read, and r1's device hears so at once
    let unread_count = |u: &TestUser| {
        let a = &a;
        let token = u.token.clone();
        async move {
            a.get_body("/notifications/unread-count", &token).await["count"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(
        unread_count(&readers[0]).await,
        2,
        "an invite and the messages"
    );
    let cleared = next_notification(&mut r1_notes).await;
    assert_eq!(
        (cleared["type"].as_str(), cleared["is_read"].as_bool()),
        (Some("message"), Some(true)),
        "{cleared}"
    );
    assert_eq!(cleared["count"], 100);
    assert_eq!(
        unread_count(&readers[1]).await,
        1,
        "the invite is still unread"
    );
    let r1 = notifications(&a, &readers[1], "/unread").await;
    assert!(r1.iter().all(|n| n["type"] != "message"), "{r1:?}");

    // The next message starts a fresh notification for r1.
    assert_eq!(
        send(&a, &senders[1], crew, "one more").await.status(),
        StatusCode::CREATED
    );
    let fresh = next_notification(&mut r1_notes).await;
    assert_eq!(
        (fresh["count"].as_i64(), fresh["is_read"].as_bool()),
        (Some(1), Some(false))
    );
}

#[tokio::test]
async fn a_blocked_user_neither_hears_nor_sees_the_blockers_presence() {
    // Arrange: alice and bob share a group and carol is alice's friend; alice blocked bob
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    app.befriend(&alice, &carol).await;
    let crew = id_of(group(&app, &carol, &[&alice, &bob]).await).await;
    block(&app, &alice, &bob).await;
    let mut bob_sock = app.socket(&bob.token).await;
    let mut carol_sock = app.socket(&carol.token).await;

    // Act: alice comes online
    let _alice_sock = app.socket(&alice.token).await;

    // Assert: carol hears it, bob does not; REST agrees for each viewer
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = carol_sock
            .next_event(
                "userStatus",
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            )
            .await
            .expect("carol hears alice");
        if ev["userId"] == alice.id.to_string() {
            assert_eq!(ev["status"], "online");
            break;
        }
    }
    let heard: Vec<Value> = bob_sock
        .collect("userStatus", QUIET)
        .await
        .into_iter()
        .filter(|e| e["userId"] == alice.id.to_string())
        .collect();
    assert!(heard.is_empty(), "bob heard alice: {heard:?}");
    let path = format!("/users/{}", alice.id);
    let seen_by_carol = app.get_body(&path, &carol.token).await;
    assert_eq!(seen_by_carol["status"], "online");
    assert!(seen_by_carol["last_seen_at"].is_string());
    let seen_by_bob = app.get_body(&path, &bob.token).await;
    assert_eq!(seen_by_bob["status"], "offline");
    assert!(seen_by_bob["last_seen_at"].is_null());
    let listed = app
        .get_body(&format!("/users?search={}", alice.name), &bob.token)
        .await;
    assert_eq!(listed[0]["user_id"], alice.id.to_string());
    assert_eq!(listed[0]["status"], "offline");
    let alice_in_crew = |details: Value| {
        details["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["user_id"] == alice.id.to_string())
            .unwrap()["status"]
            .clone()
    };
    let path = format!("/conversations/{crew}");
    assert_eq!(
        alice_in_crew(app.get_body(&path, &carol.token).await),
        "online"
    );
    assert_eq!(
        alice_in_crew(app.get_body(&path, &bob.token).await),
        "offline"
    );
    let listed = app.get_body("/conversations", &bob.token).await;
    assert_eq!(alice_in_crew(listed[0].clone()), "offline");
}

#[tokio::test]
async fn a_message_read_before_its_notification_is_written_never_shows_as_unread() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let crew = id_of(group(&app, &alice, &[&bob, &carol]).await).await;

    // Act: bob reads the message at once, before the node writes notifications
    let sent = body(send(&app, &alice, crew, "quick one").await).await;
    let resp = app.mark(&bob, &sent, "read").await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Assert: carol, who did not read, gets the notification; bob never does (both are
    // written by the same batch, so once carol's is there bob's would be too)
    let deadline = tokio::time::Instant::now() + WAIT;
    while !notifications(&app, &carol, "/unread")
        .await
        .iter()
        .any(|n| n["type"] == "message")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol was never notified"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bob_unread = notifications(&app, &bob, "/unread").await;
    assert!(
        bob_unread.iter().all(|n| n["type"] != "message"),
        "{bob_unread:?}"
    );
}
