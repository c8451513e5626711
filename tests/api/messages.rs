use std::collections::BTreeSet;

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    conversations::{create_direct, id_of, next_emit, rooms_of, user_rooms},
    helpers::{
        TestApp, TestUser, assert_error, assert_get_error, assert_invalid, assert_invalid_get,
        assert_refused, assert_unauthorized, assert_unknown_id, body, created_and_ids,
        message_path, numbers, spawn_app,
    },
};

/// A node, alice and bob, and their direct chat.
async fn direct_chat() -> (TestApp, TestUser, TestUser, Uuid) {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let conv = create_direct(&app, &alice, &bob).await;
    (app, alice, bob, conv)
}

/// A node, alice, bob and carol, and a group alice made of them.
async fn group_of_three() -> (TestApp, [TestUser; 3], Uuid) {
    let app = spawn_app().await;
    let users = app.users(["alice", "bob", "carol"]).await;
    let group = app.group(&users[0], &[&users[1], &users[2]]).await;
    (app, users, group)
}

fn seqs(list: &Value) -> Vec<i64> {
    numbers(list, "seq")
}

async fn history(app: &TestApp, user: &TestUser, conversation: Uuid, query: &str) -> Value {
    let resp = app
        .get(
            &format!("/messages/conversation/{conversation}{query}"),
            &user.token,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "history {query}");
    body(resp).await
}

async fn mark(app: &TestApp, user: &TestUser, message: &Value, status: &str) -> Value {
    let resp = app.mark(user, message, status).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "mark {status} as {}",
        user.name
    );
    body(resp).await
}

async fn status_of(app: &TestApp, user: &TestUser, message: &Value) -> String {
    let resp = app.get(&message_path(message), &user.token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    body(resp).await["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_message_route_requires_authentication() {
    assert_unauthorized(
        &[
            "POST /messages",
            "GET /messages/conversation/{id}",
            "GET /messages/{id}",
            "PUT /messages/{id}",
            "DELETE /messages/{id}",
            "PUT /messages/{id}/status",
            "GET /messages/{id}/receipts",
        ],
        Some(json!({})),
    )
    .await;
}

#[tokio::test]
async fn a_sent_message_gets_the_next_seq_and_is_published_to_every_participant() {
    // Arrange
    let (app, [alice, bob, carol], group) = group_of_three().await;
    let mut bus = app.hear(&[alice.id, bob.id, carol.id]).await;

    // Act
    let first = app.send(&alice, group, "  hello  ").await;
    let second = app.send(&bob, group, "hi").await;

    // Assert
    for field in [
        "message_id",
        "conversation_id",
        "sender_id",
        "seq",
        "content",
        "status",
        "is_edited",
        "created_at",
        "updated_at",
    ] {
        assert!(!first[field].is_null(), "message lacks {field}: {first}");
    }
    assert!(first.as_object().unwrap().contains_key("client_msg_id"));
    assert!(first.get("deleted_at").is_none());
    assert_eq!(first["content"], "hello");
    assert_eq!(first["seq"], 1);
    assert_eq!(second["seq"], 2);
    assert_eq!(first["status"], "sent");
    assert_eq!(first["is_edited"], false);
    assert_eq!(first["sender_id"], alice.id.to_string());
    let (emit, data) = next_emit(&mut bus, "newMessage").await;
    assert_eq!(
        rooms_of(&emit),
        user_rooms(&[&alice, &bob, &carol]),
        "the sender's devices hear it too"
    );
    assert_eq!(data, first);
    assert_eq!(
        emit.order,
        Some(chatty::bus::StreamPosition {
            stream: group,
            seq: 1
        }),
        "nodes restore the conversation's seq order from it"
    );
    let (_, data) = next_emit(&mut bus, "newMessage").await;
    assert_eq!(data["seq"], 2);
    let conv = app
        .get_body(&format!("/conversations/{group}"), &carol.token)
        .await;
    assert_eq!(conv["last_seq"], 2);
}

#[tokio::test]
async fn invalid_messages_are_refused_and_store_nothing() {
    let (app, alice, _, conv) = direct_chat().await;
    let max = app.state.settings.max_message_chars;
    let cases = [
        (json!({ "content": "", "conversation_id": conv }), "content"),
        (
            json!({ "content": " \n\t ", "conversation_id": conv }),
            "content",
        ),
        (
            json!({ "content": "x".repeat(max + 1), "conversation_id": conv }),
            "content",
        ),
        (
            json!({ "content": "a\u{0}b", "conversation_id": conv }),
            "content",
        ),
        (json!({ "conversation_id": conv }), "content"),
        (json!({ "content": 5, "conversation_id": conv }), "content"),
        (json!({ "content": "hi" }), "conversation_id"),
        (
            json!({ "content": "hi", "conversation_id": "nope" }),
            "conversation_id",
        ),
        (
            json!({ "content": "hi", "conversation_id": conv, "client_msg_id": "nope" }),
            "client_msg_id",
        ),
    ];
    for (payload, field) in cases {
        assert_invalid(app.post("/messages", &alice.token, payload).await, field).await;
    }
    // Exactly the limit is fine.
    let resp = app.post_message(&alice, conv, &"é".repeat(max)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(app.count("messages").await, 1);
    let conv_row = app
        .get_body(&format!("/conversations/{conv}"), &alice.token)
        .await;
    assert_eq!(conv_row["last_seq"], 1, "refused messages consumed a seq");
}

#[tokio::test]
async fn strangers_removed_members_and_non_senders_are_refused_on_every_route() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol, eve] = app.users(["alice", "bob", "carol", "eve"]).await;
    let group = app.group(&alice, &[&bob, &carol]).await;
    let msg = app.send(&alice, group, "hello").await;
    let id = msg["message_id"].as_str().unwrap().to_owned();
    let remove_carol = format!("/conversations/{group}/participants/{}/remove", carol.id);
    let resp = app.post_empty(&remove_carol, &alice.token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (history, message, status, receipts) = (
        format!("/messages/conversation/{group}"),
        format!("/messages/{id}"),
        format!("/messages/{id}/status"),
        format!("/messages/{id}/receipts"),
    );
    let (edit, read) = (json!({ "content": "x" }), json!({ "status": "read" }));

    // Strangers and removed members: 404 everywhere, so they learn nothing.
    let gone = StatusCode::NOT_FOUND;
    let everything = [
        (
            Method::POST,
            "/messages",
            Some(json!({ "content": "hi", "conversation_id": group })),
            gone,
        ),
        (Method::GET, history.as_str(), None, gone),
        (Method::GET, message.as_str(), None, gone),
        (Method::PUT, message.as_str(), Some(edit.clone()), gone),
        (Method::DELETE, message.as_str(), None, gone),
        (Method::PUT, status.as_str(), Some(read.clone()), gone),
        (Method::GET, receipts.as_str(), None, gone),
    ];
    for outsider in [&eve, &carol] {
        assert_refused(&app, &outsider.token, &everything).await;
    }
    // Unknown conversation and unknown message: 404 too; malformed ids: 400.
    let nowhere = json!({ "content": "hi", "conversation_id": Uuid::new_v4() });
    let bad = StatusCode::BAD_REQUEST;
    let unknown_or_malformed = [
        (Method::POST, "/messages", Some(nowhere), gone),
        (Method::GET, "/messages/conversation/nope", None, bad),
        (Method::PUT, "/messages/nope", Some(edit), bad),
    ];
    assert_refused(&app, &alice.token, &unknown_or_malformed).await;
    assert_unknown_id(&app, &alice.token, "/messages").await;

    // A participant who did not send it: may read it, may not change it.
    let not_theirs = [
        (
            Method::PUT,
            message.as_str(),
            Some(json!({ "content": "mine now" })),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::DELETE,
            message.as_str(),
            None,
            StatusCode::FORBIDDEN,
        ),
    ];
    assert_refused(&app, &bob.token, &not_theirs).await;
    // The sender does not send receipts for their own message.
    let own = [(Method::PUT, status.as_str(), Some(read), bad)];
    assert_refused(&app, &alice.token, &own).await;
    for payload in [json!({ "status": "sent" }), json!({})] {
        assert_invalid(app.put(&status, &bob.token, payload).await, "status").await;
    }

    let unchanged = app.get_body(&format!("/messages/{id}"), &bob.token).await;
    assert_eq!(unchanged["content"], "hello");
    assert_eq!(unchanged["is_edited"], false);
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn concurrent_sends_to_one_conversation_get_gap_free_unique_seqs() {
    // Arrange
    let (app, alice, bob, conv) = direct_chat().await;

    // Act: 20 tasks x 50 messages.
    let tasks = (0..20).map(|t| {
        let (client, url) = (app.client.clone(), app.url("/messages"));
        let token = if t % 2 == 0 {
            alice.token.clone()
        } else {
            bob.token.clone()
        };
        tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(50);
            for i in 0..50 {
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "content": format!("t{t} m{i}"), "conversation_id": conv }))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(resp.status(), StatusCode::CREATED);
                let m: Value = resp.json().await.expect("json");
                seqs.push(m["seq"].as_i64().expect("seq"));
            }
            seqs
        })
    });
    let per_task: Vec<Vec<i64>> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();

    // Assert: each task saw increasing seqs; all together are exactly 1..=1000.
    for s in &per_task {
        assert!(
            s.windows(2).all(|w| w[0] < w[1]),
            "a sender's seqs went backwards: {s:?}"
        );
    }
    let all: BTreeSet<i64> = per_task.iter().flatten().copied().collect();
    assert_eq!(all.len(), 1000, "duplicate seqs");
    assert_eq!(all, (1..=1000).collect::<BTreeSet<_>>());
    let stored: Vec<i64> =
        sqlx::query_scalar("select seq from messages where conversation_id = $1 order by seq")
            .bind(conv)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, (1..=1000).collect::<Vec<_>>());
    let last: i64 =
        sqlx::query_scalar("select last_seq from conversations where conversation_id = $1")
            .bind(conv)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(last, 1000);
}

#[tokio::test]
async fn a_repeated_client_msg_id_returns_and_announces_the_original_without_a_duplicate() {
    // Arrange
    let (app, alice, bob, conv) = direct_chat().await;
    let other = app.group(&alice, &[&bob]).await;
    let client_msg_id = Uuid::new_v4();
    let payload =
        json!({ "content": "once", "conversation_id": conv, "client_msg_id": client_msg_id });
    let mut bus = app.hear(&[alice.id, bob.id]).await;

    // Act
    let first = app.post("/messages", &alice.token, payload.clone()).await;
    let retry = app.post("/messages", &alice.token, payload.clone()).await;

    // Assert
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(retry.status(), StatusCode::OK);
    let (first, retry) = (body(first).await, body(retry).await);
    assert_eq!(first["message_id"], retry["message_id"]);
    assert_eq!(retry["seq"], 1);
    assert_eq!(retry["client_msg_id"], client_msg_id.to_string());
    assert_eq!(app.count("messages").await, 1);
    // The retry announced the original again (same id, same seq) and burnt no seq.
    for _ in 0..2 {
        let (_, data) = next_emit(&mut bus, "newMessage").await;
        assert_eq!(data["message_id"], first["message_id"]);
        assert_eq!(data["seq"], 1);
    }
    let next = app.send(&alice, conv, "next").await;
    assert_eq!(next["seq"], 2);
    let (_, data) = next_emit(&mut bus, "newMessage").await;
    assert_eq!(data["seq"], 2);

    // The same id from another sender is another message; in another conversation it is a conflict.
    let bobs = app.post("/messages", &bob.token, payload.clone()).await;
    assert_eq!(bobs.status(), StatusCode::CREATED);
    let elsewhere =
        json!({ "content": "once", "conversation_id": other, "client_msg_id": client_msg_id });
    assert_error(
        app.post("/messages", &alice.token, elsewhere).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(app.count("messages").await, 3);
}

#[tokio::test]
async fn concurrent_retries_store_one_message() {
    let (app, alice, bob, conv) = direct_chat().await;
    let payload = json!({ "content": "flaky network", "conversation_id": conv, "client_msg_id": Uuid::new_v4() });

    let responses =
        join_all((0..10).map(|_| app.post("/messages", &alice.token, payload.clone()))).await;

    let (created, ids) = created_and_ids(responses, "message_id").await;
    assert_eq!(created, 1);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 1, "{ids:?}");
    assert_eq!(app.count("messages").await, 1);
    assert_eq!(
        app.send(&bob, conv, "after").await["seq"],
        2,
        "a failed retry left a gap"
    );
}

#[tokio::test]
async fn history_pages_by_seq_in_both_directions_without_deleted_messages() {
    // Arrange: 60 messages, seq 10 deleted.
    let (app, alice, bob, conv) = direct_chat().await;
    let mut ten = Value::Null;
    for i in 1..=60 {
        let m = app
            .send(
                if i % 3 == 0 { &bob } else { &alice },
                conv,
                &format!("m{i}"),
            )
            .await;
        if i == 10 {
            ten = m;
        }
    }
    let resp = app
        .delete(
            &format!("/messages/{}", ten["message_id"].as_str().unwrap()),
            &alice.token,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Act + Assert
    let range = |a: i64, b: i64| (a..=b).filter(|s| *s != 10).collect::<Vec<_>>();
    // The default page is the newest 50.
    let pages = [
        ("", range(11, 60)),
        ("?limit=5", range(56, 60)),
        ("?limit=200", range(1, 60)),
        ("?before_seq=12&limit=3", vec![8, 9, 11]),
        ("?before_seq=1", Vec::<i64>::new()),
        ("?after_seq=55", range(56, 60)),
        ("?after_seq=8&limit=3", vec![9, 11, 12]),
        ("?after_seq=0&limit=2", vec![1, 2]),
        ("?after_seq=60", Vec::<i64>::new()),
        ("?after_seq=5&before_seq=13", vec![6, 7, 8, 9, 11, 12]),
        ("?after_seq=5&before_seq=13&limit=2", vec![6, 7]),
    ];
    for (query, expected) in pages {
        assert_eq!(
            seqs(&history(&app, &bob, conv, query).await),
            expected,
            "{query}"
        );
    }
    let page = history(&app, &bob, conv, "?after_seq=8&limit=1").await;
    assert_eq!(page[0]["content"], "m9");
    assert!(page.to_string().find("m10").is_none());

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=x", "limit"),
        ("?before_seq=abc", "before_seq"),
        ("?before_seq=0", "before_seq"),
        ("?after_seq=-1", "after_seq"),
        ("?after_seq=1.5", "after_seq"),
    ] {
        assert_invalid_get(
            &app,
            &bob.token,
            &format!("/messages/conversation/{conv}{query}"),
            field,
        )
        .await;
    }
}

#[tokio::test]
async fn receipts_in_a_group_aggregate_over_every_other_participant_and_never_go_back() {
    // Arrange
    let (app, [alice, bob, carol], group) = group_of_three().await;
    let m1 = app.send(&alice, group, "one").await;
    let m2 = app.send(&alice, group, "two").await;
    let mut bus = app.hear(&[alice.id, bob.id, carol.id]).await;

    // Bob has both on his phone; carol has nothing yet.
    let seen = mark(&app, &bob, &m2, "delivered").await;
    assert_eq!(seen["status"], "sent");
    let (emit, data) = next_emit(&mut bus, "messageStatus").await;
    assert_eq!(rooms_of(&emit), user_rooms(&[&alice, &bob, &carol]));
    assert_eq!(data["messageId"], m2["message_id"]);
    assert_eq!(data["conversationId"], group.to_string());
    assert_eq!(data["userId"], bob.id.to_string());
    assert_eq!(data["status"], "delivered");
    assert_eq!(data["seq"], 2);
    assert_eq!(data["aggregate"], "sent");

    // Carol gets the first: it is delivered to everyone, the second is not.
    assert_eq!(
        mark(&app, &carol, &m1, "delivered").await["status"],
        "delivered"
    );
    assert_eq!(status_of(&app, &alice, &m1).await, "delivered");
    assert_eq!(status_of(&app, &alice, &m2).await, "sent");

    // Carol reads the second (read implies delivered): delivered to all, read by one.
    assert_eq!(mark(&app, &carol, &m2, "read").await["status"], "delivered");
    let receipts = app
        .get_body(
            &format!("/messages/{}/receipts", m2["message_id"].as_str().unwrap()),
            &bob.token,
        )
        .await;
    let mut flags: Vec<(String, bool, bool)> = receipts
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().unwrap().to_owned(),
                r["delivered"].as_bool().unwrap(),
                r["read"].as_bool().unwrap(),
            )
        })
        .collect();
    flags.sort();
    let mut expected = vec![
        (bob.id.to_string(), true, false),
        (carol.id.to_string(), true, true),
    ];
    expected.sort();
    assert_eq!(flags, expected, "{receipts}");
    assert!(
        receipts
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["username"].is_string())
    );

    // Bob reads the second: both messages are read by everyone.
    assert_eq!(mark(&app, &bob, &m2, "read").await["status"], "read");
    assert_eq!(status_of(&app, &alice, &m1).await, "read");
    let (_, data) = next_emit(&mut bus, "messageStatus").await; // carol delivered m1
    assert_eq!(data["userId"], carol.id.to_string());
    let (_, data) = next_emit(&mut bus, "messageStatus").await; // carol read m2
    assert_eq!(
        (data["status"].as_str(), data["aggregate"].as_str()),
        (Some("read"), Some("delivered"))
    );
    let (_, data) = next_emit(&mut bus, "messageStatus").await; // bob read m2
    assert_eq!(
        (data["status"].as_str(), data["aggregate"].as_str()),
        (Some("read"), Some("read"))
    );

    // Older receipts do not move cursors back, and publish nothing.
    assert_eq!(mark(&app, &bob, &m1, "delivered").await["status"], "read");
    assert_eq!(mark(&app, &bob, &m2, "read").await["status"], "read");
    let conv = app
        .get_body(&format!("/conversations/{group}"), &alice.token)
        .await;
    let bobs = conv["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user_id"] == bob.id.to_string())
        .unwrap();
    assert_eq!(
        (
            bobs["last_delivered_seq"].as_i64(),
            bobs["last_read_seq"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let m3 = app.send(&alice, group, "three").await;
    mark(&app, &carol, &m3, "delivered").await;
    let (_, data) = next_emit(&mut bus, "messageStatus").await;
    assert_eq!(
        data["messageId"], m3["message_id"],
        "a receipt that moved nothing was published"
    );

    // The sender's own view of the list shows the aggregate too.
    let list = app.get_body("/conversations", &alice.token).await;
    assert_eq!(list[0]["last_message"]["status"], "sent");
}

#[tokio::test]
async fn a_message_alone_in_a_group_stays_sent() {
    let app = spawn_app().await;
    let [alice] = app.users(["alice"]).await;
    let resp = app
        .post(
            "/conversations",
            &alice.token,
            json!({ "name": "Notes", "is_group": true, "participant_ids": [] }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let conv = id_of(&body(resp).await, "conversation_id");
    let m = app.send(&alice, conv, "to self").await;
    assert_eq!(status_of(&app, &alice, &m).await, "sent");
    let receipts = app
        .get_body(
            &format!("/messages/{}/receipts", m["message_id"].as_str().unwrap()),
            &alice.token,
        )
        .await;
    assert_eq!(receipts, json!([]));
}

#[tokio::test]
async fn the_sender_edits_a_message_and_everyone_is_told() {
    // Arrange
    let (app, alice, bob, conv) = direct_chat().await;
    let msg = app.send(&alice, conv, "helo").await;
    let path = format!("/messages/{}", msg["message_id"].as_str().unwrap());
    let mut bus = app.hear(&[alice.id, bob.id]).await;

    // Act
    let resp = app
        .put(&path, &alice.token, json!({ "content": " hello " }))
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let edited = body(resp).await;
    assert_eq!(edited["content"], "hello");
    assert_eq!(edited["is_edited"], true);
    assert_eq!(edited["seq"], msg["seq"]);
    assert_eq!(edited["created_at"], msg["created_at"]);
    assert_ne!(edited["updated_at"], msg["updated_at"]);
    let (emit, data) = next_emit(&mut bus, "messageUpdated").await;
    assert_eq!(rooms_of(&emit), user_rooms(&[&alice, &bob]));
    assert_eq!(data, edited);
    assert_eq!(history(&app, &bob, conv, "").await[0]["content"], "hello");

    // The same text again changes nothing and publishes nothing.
    let again = body(
        app.put(&path, &alice.token, json!({ "content": "hello" }))
            .await,
    )
    .await;
    assert_eq!(again["updated_at"], edited["updated_at"]);
    app.put(&path, &alice.token, json!({ "content": "hello!" }))
        .await;
    let (_, data) = next_emit(&mut bus, "messageUpdated").await;
    assert_eq!(data["content"], "hello!");

    // Invalid edits change nothing.
    assert_invalid(
        app.put(&path, &alice.token, json!({ "content": "   " }))
            .await,
        "content",
    )
    .await;
    assert_invalid(app.put(&path, &alice.token, json!({})).await, "content").await;
    assert_eq!(app.get_body(&path, &bob.token).await["content"], "hello!");
}

#[tokio::test]
async fn a_deleted_message_is_no_longer_served_anywhere() {
    // Arrange
    let (app, alice, bob, conv) = direct_chat().await;
    let keep = app.send(&alice, conv, "keep").await;
    let gone = app.send(&alice, conv, "secret").await;
    let path = message_path(&gone);
    let mut bus = app.hear(&[alice.id, bob.id]).await;

    // Act
    let resp = app.delete(&path, &alice.token).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        body(resp).await,
        json!({ "message_id": gone["message_id"], "conversation_id": conv, "seq": 2 })
    );
    let (emit, data) = next_emit(&mut bus, "messageDeleted").await;
    assert_eq!(rooms_of(&emit), user_rooms(&[&alice, &bob]));
    assert_eq!(data["seq"], 2);
    assert_eq!(seqs(&history(&app, &bob, conv, "").await), vec![1]);
    assert_get_error(&app, &bob.token, &path, StatusCode::NOT_FOUND).await;
    assert_error(app.delete(&path, &alice.token).await, StatusCode::NOT_FOUND).await;
    assert_error(
        app.put(&path, &alice.token, json!({ "content": "back" }))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(app.mark(&bob, &gone, "read").await, StatusCode::NOT_FOUND).await;
    let details = app
        .get_body(&format!("/conversations/{conv}"), &bob.token)
        .await;
    assert!(!details.to_string().contains("secret"), "{details}");
    assert_eq!(details["last_message"]["message_id"], keep["message_id"]);
    assert_eq!(details["unread_count"], 1);
    // The row stays (soft delete).
    assert_eq!(app.count("messages").await, 2);
}
