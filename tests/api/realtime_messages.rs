//! Messages over Socket.IO across nodes: send, fan-out to every device, receipts, edits,
//! deletes, resume.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{SocketExt, WAIT, numbers, sockets, spawn_app, two_nodes};

#[tokio::test]
async fn send_message_reaches_every_device_of_every_participant_on_every_node_once() {
    // Arrange: alice on A with a second device on B; bob on B; eve (stranger) on A
    let (a, b) = two_nodes().await;
    let (alice, bob, eve, conv) = a.group_and_a_stranger().await;
    let alice_phone = a.login(&alice, "phone").await;
    let alice_sock = a.socket(&alice.token).await;
    let mut alice_phone_sock = b.socket(&alice_phone).await;
    let mut bob_sock = b.socket(&bob.token).await;
    let mut eve_sock = a.socket(&eve.token).await;
    let client_msg_id = Uuid::new_v4();

    // Act
    let ack = alice_sock
        .ack("sendMessage", &json!({ "content": " hi bob ", "conversation_id": conv, "client_msg_id": client_msg_id })).await;

    // Assert
    assert_eq!(ack["ok"], true, "{ack}");
    let sent = &ack["data"];
    assert_eq!(sent["seq"], 1);
    assert_eq!(sent["content"], "hi bob");
    assert_eq!(sent["sender_id"], alice.id.to_string());
    for sock in [&mut bob_sock, &mut alice_phone_sock] {
        let got = sock.event("newMessage").await;
        assert_eq!(got["message_id"], sent["message_id"]);
        assert_eq!(got["seq"], 1);
        sock.assert_silent("newMessage", "delivered twice").await;
    }
    eve_sock
        .assert_silent("newMessage", "a stranger received the message")
        .await;

    // A retry with the same client_msg_id stores nothing and returns the original, which
    // is announced again (the first publish may have died with its node), same id and seq.
    let retry = alice_sock
        .ack("sendMessage", &json!({ "content": "hi bob", "conversation_id": conv, "client_msg_id": client_msg_id })).await;
    assert_eq!(retry["data"]["message_id"], sent["message_id"]);
    let again = bob_sock.event("newMessage").await;
    assert_eq!(again["message_id"], sent["message_id"]);
    assert_eq!(again["seq"], 1);
    assert_eq!(a.count("messages").await, 1);
}

#[tokio::test]
async fn invalid_or_foreign_sends_are_refused_through_the_ack_and_store_nothing() {
    let app = spawn_app().await;
    let (alice, _, eve, conv) = app.group_and_a_stranger().await;
    let alice_sock = app.socket(&alice.token).await;
    let eve_sock = app.socket(&eve.token).await;

    let empty = alice_sock.send_message(conv, "   ").await;
    assert_eq!(empty["ok"], false);
    assert_eq!(empty["error"]["statusCode"], 400);
    assert!(
        empty["error"]["fields"].to_string().contains("content"),
        "{empty}"
    );
    let no_conv = alice_sock
        .ack("sendMessage", &json!({ "content": "x" }))
        .await;
    assert!(
        no_conv["error"]["fields"]
            .to_string()
            .contains("conversation_id"),
        "{no_conv}"
    );
    let too_long = "x".repeat(app.state.settings.max_message_chars + 1);
    let long = alice_sock.send_message(conv, &too_long).await;
    assert_eq!(long["error"]["statusCode"], 400);
    let foreign = eve_sock.send_message(conv, "let me in").await;
    assert_eq!(foreign["error"]["statusCode"], 404);
    let garbage = alice_sock.ack("sendMessage", &json!("not an object")).await;
    assert_eq!(garbage["error"]["statusCode"], 400);
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn read_receipts_edits_and_deletes_are_pushed_across_nodes() {
    let (a, b) = two_nodes().await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_group().await;
    let [mut alice_sock, mut bob_sock] = sockets([(&a, &alice), (&b, &bob)]).await;
    let ack = alice_sock.send_message(conv, "read me").await;
    let id = ack["data"]["message_id"].as_str().unwrap().to_owned();
    bob_sock.event("newMessage").await;

    // Bob reads it on node B; alice hears the receipt on node A.
    let read = bob_sock
        .ack(
            "updateMessageStatus",
            &json!({ "messageId": id, "status": "read" }),
        )
        .await;
    assert_eq!(read["ok"], true, "{read}");
    let status = alice_sock.event("messageStatus").await;
    assert_eq!(status["messageId"], id);
    assert_eq!(status["userId"], bob.id.to_string());
    assert_eq!(status["status"], "read");
    let bad = bob_sock
        .ack(
            "updateMessageStatus",
            &json!({ "messageId": id, "status": "seen" }),
        )
        .await;
    assert_eq!(bad["error"]["statusCode"], 400);

    // Edits and deletes reach the other node too.
    let edit = alice_sock
        .ack(
            "editMessage",
            &json!({ "messageId": id, "content": "edited" }),
        )
        .await;
    assert_eq!(edit["data"]["is_edited"], true, "{edit}");
    let updated = bob_sock.event("messageUpdated").await;
    assert_eq!(updated["content"], "edited");
    let not_yours = bob_sock
        .ack("deleteMessage", &json!({ "messageId": id }))
        .await;
    assert_eq!(not_yours["ok"], false);
    alice_sock
        .ack("deleteMessage", &json!({ "messageId": id }))
        .await;
    let deleted = bob_sock.event("messageDeleted").await;
    assert_eq!(deleted["message_id"], id);
}

#[tokio::test]
async fn sync_returns_what_a_reconnecting_client_missed_with_cursors() {
    let a = spawn_app().await;
    let (alice, bob, eve, conv) = a.group_and_a_stranger().await;
    let alice_sock = a.socket(&alice.token).await;
    for i in 1..=5 {
        alice_sock.send_message(conv, &format!("m{i}")).await;
    }
    // Bob was offline and has seen up to seq 2.
    let bob_sock = a.socket(&bob.token).await;
    let stranger = Uuid::new_v4();
    let ack = bob_sock
        .ack(
            "sync",
            &json!({ "conversations": { conv.to_string(): 2, stranger.to_string(): 0 } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let c = &ack["data"]["conversations"][conv.to_string()];
    assert_eq!(numbers(&c["messages"], "seq"), [3, 4, 5]);
    assert_eq!(c["last_seq"], 5);
    assert_eq!(c["has_more"], false);
    assert_eq!(c["cursors"].as_array().unwrap().len(), 2);
    assert_eq!(
        ack["data"]["conversations"][stranger.to_string()]["error"]["statusCode"],
        404
    );
    // Eve cannot sync a conversation she is not in.
    let eve_sock = a.socket(&eve.token).await;
    let ack = eve_sock
        .ack("sync", &json!({ "conversations": { conv.to_string(): 0 } }))
        .await;
    assert!(
        ack["data"]["conversations"][conv.to_string()]["messages"].is_null(),
        "{ack}"
    );
    let bad = eve_sock
        .ack(
            "sync",
            &json!({ "conversations": { conv.to_string(): -1 } }),
        )
        .await;
    assert_eq!(bad["error"]["statusCode"], 400);
}

#[tokio::test]
async fn a_removed_member_stops_hearing_the_conversation_at_once() {
    let (a, b) = two_nodes().await;
    let [alice, bob, carol] = a.users(["alice", "bob", "carol"]).await;
    let conv = a.group(&alice, &[&bob, &carol]).await;
    let alice_sock = a.socket(&alice.token).await;
    let mut carol_sock = b.socket(&carol.token).await;
    carol_sock
        .ack("joinConversation", &json!(conv.to_string()))
        .await;
    let resp = a
        .post_empty(
            &format!("/conversations/{conv}/participants/{}/remove", carol.id),
            &alice.token,
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let removed = carol_sock.event("participantRemoved").await;
    assert_eq!(
        removed["userId"].as_str().or(removed["user_id"].as_str()),
        Some(carol.id.to_string().as_str()),
        "{removed}"
    );
    alice_sock.send_message(conv, "after carol left").await;
    alice_sock.typing(conv, true).await;
    carol_sock
        .assert_silent("newMessage", "removed member got a message")
        .await;
    carol_sock
        .assert_silent("userTyping", "removed member still in the room")
        .await;
}

#[tokio::test]
async fn sent_messages_collapse_into_one_live_notification_per_recipient_and_conversation() {
    // Arrange: bob listens on /notifications of node B
    let (a, b) = two_nodes().await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_group().await;
    let mut notes = b.notifications_socket(&bob.token).await;
    notes.event("notifications:connected").await;

    // Act: three messages from alice
    for i in 1..=3 {
        let resp = a.post_message(&alice, conv, &format!("m{i}")).await;
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    }

    // Assert: bob hears them live and ends with one unread notification counting 3
    let first = notes.event("notification").await;
    assert_eq!(first["type"], "message", "{first}");
    let mut count = 0;
    for _ in 0..50 {
        let unread = a.get_body("/notifications/unread", &bob.token).await;
        let list = unread
            .as_array()
            .cloned()
            .or_else(|| unread["data"].as_array().cloned())
            .unwrap_or_default();
        let mine: Vec<&Value> = list.iter().filter(|n| n["type"] == "message").collect();
        assert!(mine.len() <= 1, "not collapsed: {unread}");
        count = mine.first().and_then(|n| n["count"].as_i64()).unwrap_or(0);
        if count == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 3);
    let alice_unread = a
        .get_body("/notifications/unread-count", &alice.token)
        .await;
    assert_eq!(alice_unread["count"], 0, "the sender notified itself");
}

/// Clients emit the moment they see the connect answer (socket.io-client flushes its
/// buffer then, and a reconnecting client asks `sync` at once). Every such event must be
/// answered: the handlers have to be in place before the answer goes out. Many sockets
/// connecting at once on a node process of its own make a late registration show.
#[tokio::test]
async fn an_event_sent_the_moment_the_connect_answer_arrives_is_answered() {
    let a = spawn_app().await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_group().await;
    let mut node = a.spawn_process(&[("CHATTY_MAX_SOCKETS_PER_USER", "1000")]);
    node.ready().await;

    let attempts = (0..200).map(|i| {
        let (address, token) = (
            node.address.clone(),
            if i % 2 == 0 { &alice.token } else { &bob.token }.clone(),
        );
        tokio::spawn(async move {
            let sock = chatty_testkit::SioClient::connect(&address, "/", json!({ "token": token }))
                .await
                .unwrap();
            let ack = sock
                .emit_with_ack(
                    "sync",
                    &json!({ "conversations": { conv.to_string(): 0 } }),
                    WAIT,
                )
                .await;
            ack.map(|v| v["ok"] == true)
        })
    });
    let mut unanswered = 0;
    for t in futures_util::future::join_all(attempts).await {
        match t.unwrap() {
            Ok(true) => {}
            Ok(false) => panic!("sync refused"),
            Err(_) => unanswered += 1,
        }
    }
    assert_eq!(
        unanswered, 0,
        "events sent right after connect went unanswered"
    );
    node.kill();
}
