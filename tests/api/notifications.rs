use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chatty::{
    bus::{BusMessage, Namespace, room},
    social::notifications::{self, PREVIEW_CHARS},
};
use chatty_testkit::{Incoming, SioClient, SioSender};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast::{Receiver, error::RecvError};
use uuid::Uuid;

use crate::helpers::{
    SocketExt, TestApp, TestUser, assert_bad_get, assert_error, assert_get_error, assert_invalid,
    assert_invalid_get, assert_invalid_gets, assert_unauthorized, assert_unknown_id, body, name,
    pg_base, redis_url, spawn_app, spawn_app_memory, two_nodes,
};

/// The next `notification` event for `user` on the bus, as the client will receive it.
async fn next_notification(rx: &mut Receiver<Arc<BusMessage>>, user: Uuid) -> Value {
    let room = room::user(user);
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(msg) => {
                    if let BusMessage::Emit(e) = &*msg {
                        if e.ns == Namespace::Notifications
                            && e.event == "notification"
                            && e.rooms == [room.clone()]
                        {
                            return serde_json::from_str::<Value>(e.data.get())
                                .expect("payload is JSON");
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("bus closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("no notification event on the bus")
}

/// A conversation made with plain SQL (the conversations API lives on another branch).
async fn conversation(app: &TestApp, group: Option<&str>, members: &[&TestUser]) -> Uuid {
    let id = sqlx::query_scalar::<_, Uuid>(
        "insert into conversations (name, is_group, created_by) values ($1, $2, $3) returning conversation_id",
    )
    .bind(group)
    .bind(group.is_some())
    .bind(members[0].id)
    .fetch_one(&app.db)
    .await
    .expect("conversation");
    let ids: Vec<Uuid> = members.iter().map(|m| m.id).collect();
    sqlx::query("insert into conversation_participants (conversation_id, user_id) select $1, unnest($2::uuid[])")
        .bind(id)
        .bind(&ids)
        .execute(&app.db)
        .await
        .expect("participants");
    id
}

async fn list(app: &TestApp, user: &TestUser, query: &str) -> Vec<Value> {
    let resp = app
        .get(&format!("/notifications{query}"), &user.token)
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "GET /notifications{query}");
    body(resp).await.as_array().expect("array").clone()
}

/// `POST /notifications/read-all` as `user`, asserting a 200; its body.
async fn read_all(app: &TestApp, user: &TestUser) -> Value {
    let resp = app.post_empty("/notifications/read-all", &user.token).await;
    assert_eq!(resp.status(), StatusCode::OK, "read-all as {}", user.name);
    body(resp).await
}

/// `POST /notifications/<id>/read` as `user`.
async fn mark_read(app: &TestApp, user: &TestUser, id: &str) -> reqwest::Response {
    app.post_empty(&format!("/notifications/{id}/read"), &user.token)
        .await
}

/// A friend request between two new users on `app`: the users and the `notification` the
/// addressee is sent on the bus, after asserting that it is a friend request.
async fn friend_request_event(app: &TestApp) -> (TestUser, TestUser, Value) {
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let mut rx = app.hear(&[alice.id, bob.id]).await;
    app.request_friendship(&alice, &bob).await;
    let event = next_notification(&mut rx, bob.id).await;
    assert_eq!(event["type"], "friend_request");
    (alice, bob, event)
}

/// `notify_message` of `text` from `sender` in `conversation` to `recipients`; the rows.
async fn notify(
    app: &TestApp,
    conversation: Uuid,
    sender: &TestUser,
    text: &str,
    recipients: &[Uuid],
) -> Vec<notifications::Notification> {
    notifications::notify_message(
        &app.db,
        conversation,
        sender.id,
        &sender.name,
        text,
        recipients,
    )
    .await
    .expect("notify_message")
}

async fn unread_count(app: &TestApp, user: &TestUser) -> i64 {
    app.get_body("/notifications/unread-count", &user.token)
        .await["count"]
        .as_i64()
        .expect("count")
}

async fn system(app: &TestApp, user: &TestUser, title: &str) {
    let n = notifications::notify_system(&app.state, Some(user.id), title, "text")
        .await
        .expect("notify");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn notification_routes_require_authentication() {
    assert_unauthorized(
        &[
            "GET /notifications",
            "GET /notifications/unread",
            "GET /notifications/unread-count",
            "POST /notifications/read-all",
            "GET /notifications/{id}",
            "POST /notifications/{id}/read",
            "DELETE /notifications/{id}",
        ],
        None,
    )
    .await;
}

#[tokio::test]
async fn a_friend_request_is_stored_and_published_to_the_addressee_in_the_seed_shape() {
    // Arrange
    let app = spawn_app().await;
    let mut rx = app.state.bus.subscribe();

    // Act
    let (alice, bob, event) = friend_request_event(&app).await;

    // Assert: the event and the stored row are the same object
    assert_eq!(event["metadata"]["sender_id"], alice.id.to_string());
    assert_eq!(event["metadata"]["sender_name"], alice.name.as_str());
    assert_eq!(event["is_read"], false);
    assert_eq!(event["count"], 1);
    assert!(event["deleted_at"].is_null());
    assert!(event["title"].is_string() && event["content"].as_str().unwrap().contains(&alice.name));
    for key in ["notification_id", "created_at", "updated_at"] {
        assert!(event[key].is_string(), "{key} in {event}");
    }
    assert!(event.get("user_id").is_none());
    assert_eq!(list(&app, &bob, "").await, std::slice::from_ref(&event));
    assert!(list(&app, &alice, "").await.is_empty());

    // Act: bob accepts; alice hears of it, bob's request notification is settled
    app.friendship("accept", &bob, alice.id).await;

    let accepted = next_notification(&mut rx, alice.id).await;
    assert_eq!(accepted["type"], "friend_request");
    assert_eq!(accepted["metadata"]["sender_id"], bob.id.to_string());
    assert_eq!(accepted["metadata"]["sender_name"], bob.name.as_str());
    assert_eq!(unread_count(&app, &bob).await, 0);
    let settled = list(&app, &bob, "").await;
    assert_eq!(settled[0]["notification_id"], event["notification_id"]);
    assert_eq!(settled[0]["is_read"], true);
}

#[tokio::test]
async fn a_notification_stored_on_one_node_is_published_to_the_other() {
    // Arrange
    let (a, b) = two_nodes().await;
    let [alice, bob] = a.users(["alice", "bob"]).await;
    let mut rx = b.hear(&[alice.id, bob.id]).await;

    // Act
    a.request_friendship(&alice, &bob).await;
    notifications::notify_system(&a.state, Some(bob.id), "Maintenance", "Tonight at 2")
        .await
        .unwrap();

    // Assert
    let first = next_notification(&mut rx, bob.id).await;
    assert_eq!(first["type"], "friend_request");
    let second = next_notification(&mut rx, bob.id).await;
    assert_eq!(second["type"], "system");
    assert_eq!(second["title"], "Maintenance");
    assert_eq!(second["content"], "Tonight at 2");
    // Both nodes serve the same rows.
    assert_eq!(list(&b, &bob, "").await.len(), 2);
}

#[tokio::test]
async fn a_single_node_without_redis_publishes_notifications_on_its_in_process_bus() {
    let app = spawn_app_memory().await;
    let (_, bob, event) = friend_request_event(&app).await;
    assert_eq!(list(&app, &bob, "").await, std::slice::from_ref(&event));
}

#[tokio::test]
async fn message_notifications_collapse_to_one_unread_per_user_and_conversation() {
    // Arrange: three senders and two readers in one group
    let app = spawn_app().await;
    let senders = app.users(["s0", "s1", "s2"]).await;
    let readers = app.users(["r0", "r1"]).await;
    let members: Vec<&TestUser> = senders.iter().chain(readers.iter()).collect();
    let everyone: Vec<Uuid> = members.iter().map(|m| m.id).collect();
    let conv = conversation(&app, Some("Climbing"), &members).await;

    // Act: 100 messages
    for i in 0..100 {
        let s = &senders[i % 3];
        let rows = notifications::notify_message(
            &app.db,
            conv,
            s.id,
            &s.name,
            &format!("message {i}"),
            &everyone,
        )
        .await
        .expect("notify_message");
        assert_eq!(rows.len(), 4, "everyone but the sender");
        assert!(rows.iter().all(|n| n.user_id != s.id));
    }

    // Assert: one unread notification each, counting every message the user did not send
    assert_eq!(app.count("notifications").await, 5);
    for r in &readers {
        let unread = list(&app, r, "/unread").await;
        assert_eq!(unread.len(), 1);
        let n = &unread[0];
        assert_eq!(n["type"], "message");
        assert_eq!(n["count"], 100);
        assert_eq!(n["title"], "Climbing");
        assert_eq!(n["content"], format!("{}: message 99", senders[0].name));
        assert_eq!(n["metadata"]["conversation_id"], conv.to_string());
        assert_eq!(n["metadata"]["sender_id"], senders[0].id.to_string());
        assert_eq!(n["metadata"]["sender_name"], senders[0].name.as_str());
        assert_eq!(n["metadata"]["message_preview"], "message 99");
    }
    let own = list(&app, &senders[0], "").await;
    assert_eq!(own[0]["count"], 66, "s0 sent 34 of the 100");

    // Act: r0 reads theirs; r1 reads the conversation (the read cursor reached the end)
    let first = list(&app, &readers[0], "").await[0]["notification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = mark_read(&app, &readers[0], &first).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let marked = notifications::mark_conversation_read(&app.db, readers[1].id, conv)
        .await
        .unwrap();
    assert_eq!(marked.len(), 1);
    assert!(marked[0].is_read);
    assert!(
        notifications::mark_conversation_read(&app.db, readers[1].id, conv)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(unread_count(&app, &readers[1]).await, 0);
    let s = &senders[1];
    let mut rx = app.hear(&everyone).await;
    let rows = notify(&app, conv, s, "after", &everyone).await;
    notifications::publish_all(app.state.bus.as_ref(), &rows).await;

    // Assert: the next message starts a fresh notification; the read one stays as it was
    let r0 = list(&app, &readers[0], "").await;
    assert_eq!(r0.len(), 2);
    assert_eq!(
        (r0[0]["count"].as_i64(), r0[0]["is_read"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(r0[0]["metadata"]["message_preview"], "after");
    assert_eq!(
        (r0[1]["count"].as_i64(), r0[1]["is_read"].as_bool()),
        (Some(100), Some(true))
    );
    assert_eq!(list(&app, &readers[1], "/unread").await[0]["count"], 1);
    let published = next_notification(&mut rx, readers[0].id).await;
    assert_eq!(published, r0[0]);

    // Deleting the unread one also ends the collapse.
    let id = r0[0]["notification_id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/notifications/{id}"), &readers[0].token)
            .await
            .status(),
        StatusCode::OK
    );
    notify(&app, conv, s, "again", &everyone).await;
    let r0 = list(&app, &readers[0], "/unread").await;
    assert_eq!((r0.len(), r0[0]["count"].as_i64()), (1, Some(1)));
}

#[tokio::test]
async fn concurrent_message_notifications_count_every_message() {
    let app = spawn_app().await;
    let users = app.users(["u0", "u1", "u2", "u3"]).await;
    let members: Vec<&TestUser> = users.iter().collect();
    let conv = conversation(&app, Some("Busy"), &members).await;
    // Recipients in different orders: the upsert must lock rows in one order regardless.
    let forward: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let backward: Vec<Uuid> = forward.iter().rev().copied().collect();

    let sends = (0..40).map(|i| {
        let sender = &users[i % 4];
        let recipients = if i % 2 == 0 {
            forward.clone()
        } else {
            backward.clone()
        };
        let db = app.db.clone();
        async move {
            notifications::notify_message(&db, conv, sender.id, &sender.name, "hi", &recipients)
                .await
        }
    });
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.expect("no deadlock, no error").len(), 3);
    }

    for u in &users {
        let unread = list(&app, u, "/unread").await;
        assert_eq!(unread.len(), 1);
        assert_eq!(
            unread[0]["count"], 30,
            "40 messages, 10 of them the user's own"
        );
    }
}

#[tokio::test]
async fn a_batch_of_messages_collapses_per_recipient_counting_only_others_messages() {
    // Arrange: carol blocked bob; a group of three and a direct chat alice-bob
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let group = conversation(&app, Some("Trio"), &[&alice, &bob, &carol]).await;
    let direct = conversation(&app, None, &[&alice, &bob]).await;
    app.friendship("block", &carol, bob.id).await;
    let trio = [alice.id, bob.id, carol.id];
    let sent = |conversation_id, sender_id, seq, preview: &str, recipients: &[Uuid]| {
        notifications::SentMessage {
            conversation_id,
            sender_id,
            seq,
            preview: preview.to_owned(),
            recipients: recipients.to_vec(),
        }
    };

    // Act: one batch, out of seq order as nodes may queue them
    let rows = notifications::notify_messages(
        &app.db,
        &[
            sent(group, alice.id, 2, "a2", &trio),
            sent(group, bob.id, 3, "b3", &trio),
            sent(group, alice.id, 1, "a1", &trio),
            sent(direct, bob.id, 1, "direct", &[alice.id, bob.id]),
        ],
    )
    .await
    .expect("notify_messages");

    // Assert: one row per recipient and conversation, counting what others sent
    assert_eq!(rows.len(), 4, "{rows:?}");
    let alice_list = list(&app, &alice, "").await;
    let in_group = alice_list
        .iter()
        .find(|n| n["metadata"]["conversation_id"] == group.to_string())
        .expect("alice's group notification");
    assert_eq!(in_group["count"], 1);
    assert_eq!(in_group["title"], "Trio");
    assert_eq!(in_group["content"], format!("{}: b3", bob.name));
    let in_direct = alice_list
        .iter()
        .find(|n| n["metadata"]["conversation_id"] == direct.to_string())
        .expect("alice's direct notification");
    assert_eq!(
        (&in_direct["title"], &in_direct["content"]),
        (&json!(bob.name), &json!("direct"))
    );
    let bobs = list(&app, &bob, "").await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["count"], 2);
    assert_eq!(
        bobs[0]["metadata"]["message_preview"], "a2",
        "latest by seq"
    );
    let carols = list(&app, &carol, "").await;
    assert_eq!(carols[0]["count"], 2, "bob's message is blocked for carol");
    assert_eq!(carols[0]["metadata"]["sender_name"], alice.name.as_str());

    // Act: a second batch adds to the same unread rows
    notifications::notify_messages(&app.db, &[sent(group, alice.id, 4, "a4", &trio)])
        .await
        .unwrap();

    // Assert
    let bobs = list(&app, &bob, "").await;
    assert_eq!((bobs.len(), bobs[0]["count"].as_i64()), (1, Some(3)));
    assert_eq!(list(&app, &carol, "").await[0]["count"], 3);
    assert!(
        notifications::notify_messages(&app.db, &[sent(group, bob.id, 5, "x", &[bob.id])])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn message_notifications_spare_the_sender_and_those_who_blocked_them() {
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let direct = conversation(&app, None, &[&alice, &bob]).await;
    let group = conversation(&app, Some("Trio"), &[&alice, &bob, &carol]).await;
    app.friendship("block", &carol, alice.id).await;

    // A direct chat's notification is titled with the sender; the preview is one short line.
    let long = format!("{}\n\nend", "word ".repeat(60));
    let rows = notify(&app, direct, &alice, &long, &[alice.id, bob.id, bob.id]).await;
    assert_eq!(rows.len(), 1);
    let n = &list(&app, &bob, "").await[0];
    assert_eq!(n["title"], alice.name.as_str());
    let preview = n["metadata"]["message_preview"].as_str().unwrap();
    assert!(
        preview.chars().count() <= PREVIEW_CHARS
            && preview.ends_with('…')
            && !preview.contains('\n'),
        "{preview}"
    );
    assert_eq!(n["content"], preview);

    // Carol blocked alice: alice's group messages do not notify her; bob's do.
    let rows = notify(&app, group, &alice, "hi", &[alice.id, bob.id, carol.id]).await;
    assert_eq!(rows.iter().map(|n| n.user_id).collect::<Vec<_>>(), [bob.id]);
    assert!(list(&app, &carol, "").await.is_empty());
    notify(&app, group, &bob, "yo", &[alice.id, bob.id, carol.id]).await;
    assert_eq!(list(&app, &carol, "").await.len(), 1);
    assert!(notify(&app, group, &bob, "x", &[bob.id]).await.is_empty());
}

#[tokio::test]
async fn only_the_owner_reads_or_deletes_a_notification_and_deleted_ones_are_never_listed() {
    // Arrange
    let app = spawn_app().await;
    let [alice, mallory] = app.users(["alice", "mallory"]).await;
    system(&app, &alice, "one").await;
    system(&app, &alice, "two").await;
    let listed = list(&app, &alice, "").await;
    let (newest, oldest) = (
        listed[0]["notification_id"].as_str().unwrap(),
        listed[1]["notification_id"].as_str().unwrap(),
    );
    assert_eq!(listed[0]["title"], "two");

    // Someone else's notification does not exist for them.
    for path in [
        format!("/notifications/{newest}"),
        format!("/notifications/{newest}/read"),
    ] {
        let method = if path.ends_with("read") {
            Method::POST
        } else {
            Method::GET
        };
        assert_error(
            app.request(method, &path, Some(&mallory.token), None).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    assert_error(
        app.delete(&format!("/notifications/{newest}"), &mallory.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_unknown_id(&app, &alice.token, "/notifications").await;
    // Malformed ids.
    assert_invalid_get(&app, &alice.token, "/notifications/xyz", "id").await;
    assert_invalid(
        app.post_empty("/notifications/xyz/read", &alice.token)
            .await,
        "id",
    )
    .await;
    assert_invalid(app.delete("/notifications/xyz", &alice.token).await, "id").await;

    // Act: read one
    let resp = mark_read(&app, &alice, newest).await;

    // Assert: the updated notification comes back; reading again changes nothing
    assert_eq!(resp.status(), StatusCode::OK);
    let read = body(resp).await;
    assert_eq!(
        (read["notification_id"].as_str(), read["is_read"].as_bool()),
        (Some(newest), Some(true))
    );
    let again = body(mark_read(&app, &alice, newest).await).await;
    assert_eq!(again, read);
    assert_eq!(
        app.get_body(&format!("/notifications/{newest}"), &alice.token)
            .await,
        read
    );
    let unread = list(&app, &alice, "/unread").await;
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0]["notification_id"], oldest);

    // Act: delete one
    let resp = app
        .delete(&format!("/notifications/{newest}"), &alice.token)
        .await;

    // Assert: answered with the deleted notification (the original's 200 with a body),
    // gone from every listing and route, still in the table
    assert_eq!(resp.status(), StatusCode::OK);
    let deleted = body(resp).await;
    assert_eq!(deleted["notification_id"], newest);
    let all = list(&app, &alice, "").await;
    assert_eq!(all.len(), 1);
    assert!(all.iter().all(|n| n["deleted_at"].is_null()));
    assert_get_error(
        &app,
        &alice.token,
        &format!("/notifications/{newest}"),
        StatusCode::NOT_FOUND,
    )
    .await;
    let read_deleted = mark_read(&app, &alice, newest).await;
    assert_error(read_deleted, StatusCode::NOT_FOUND).await;
    assert_error(
        app.delete(&format!("/notifications/{newest}"), &alice.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.count("notifications where deleted_at is not null")
            .await,
        1
    );

    // A deleted unread notification is not counted.
    app.delete(&format!("/notifications/{oldest}"), &alice.token)
        .await;
    assert_eq!(unread_count(&app, &alice).await, 0);
    assert!(list(&app, &alice, "/unread").await.is_empty());
}

#[tokio::test]
async fn read_all_marks_every_unread_notification_of_the_caller_only() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    for t in ["a", "b", "c"] {
        system(&app, &alice, t).await;
    }
    system(&app, &bob, "b").await;
    assert_eq!(unread_count(&app, &alice).await, 3);

    let updated = read_all(&app, &alice).await;

    assert_eq!(updated, json!({ "updated": 3 }));
    assert_eq!(unread_count(&app, &alice).await, 0);
    assert!(list(&app, &alice, "/unread").await.is_empty());
    assert!(
        list(&app, &alice, "")
            .await
            .iter()
            .all(|n| n["is_read"] == true)
    );
    assert_eq!(unread_count(&app, &bob).await, 1);
    assert_eq!(read_all(&app, &alice).await, json!({ "updated": 0 }));
}

#[tokio::test]
async fn notifications_page_newest_first_by_limit_offset_and_before() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    for i in 0..25 {
        system(&app, &alice, &format!("n{i:02}")).await;
    }
    system(&app, &bob, "bob's").await;
    let titles = |page: &[Value]| {
        page.iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let first = list(&app, &alice, "").await;
    assert_eq!(first.len(), 20, "default page");
    assert_eq!(first[0]["title"], "n24");
    assert_eq!(
        titles(&list(&app, &alice, "?limit=3&offset=2").await),
        ["n22", "n21", "n20"]
    );
    let cursor = first[19]["notification_id"].as_str().unwrap();
    assert_eq!(
        titles(&list(&app, &alice, &format!("?before={cursor}")).await),
        ["n04", "n03", "n02", "n01", "n00"]
    );
    assert_eq!(
        titles(&list(&app, &alice, &format!("?before={cursor}&limit=2&offset=1")).await),
        ["n03", "n02"]
    );
    assert_eq!(list(&app, &alice, "?limit=100").await.len(), 25);
    // The unread list pages the same way.
    assert_eq!(
        titles(&list(&app, &alice, &format!("/unread?before={cursor}&limit=1")).await),
        ["n04"]
    );

    assert_invalid_gets(
        &app,
        &alice.token,
        &[
            "/notifications?limit=0",
            "/notifications?limit=101",
            "/notifications/unread?offset=-1",
            "/notifications?before=yesterday",
        ],
    )
    .await;
    let bobs = list(&app, &bob, "").await[0]["notification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_invalid_get(
        &app,
        &alice.token,
        &format!("/notifications?before={bobs}"),
        "before",
    )
    .await;
    assert_bad_get(&app, &alice.token, "/notifications?limit=ten").await;
}

#[tokio::test]
async fn group_invites_notify_each_invitee_once_but_never_the_inviter() {
    let app = spawn_app().await;
    let [alice, bob, carol, dave] = app.users(["alice", "bob", "carol", "dave"]).await;
    let conv = conversation(&app, Some("Hikers"), &[&alice, &bob, &carol, &dave]).await;
    app.friendship("block", &dave, alice.id).await;
    let mut rx = app.hear(&[alice.id, bob.id, carol.id, dave.id]).await;

    let rows = notifications::notify_group_invite(
        &app.state,
        conv,
        "Hikers",
        alice.id,
        &[bob.id, alice.id, carol.id, bob.id, dave.id],
    )
    .await
    .unwrap();

    assert_eq!(
        rows.len(),
        2,
        "bob and carol; not alice, not twice, not dave who blocked her"
    );
    for u in [&bob, &carol] {
        let event = next_notification(&mut rx, u.id).await;
        assert_eq!(event["type"], "group_invite");
        assert_eq!(
            event["metadata"],
            json!({ "conversation_id": conv, "group_name": "Hikers", "sender_id": alice.id, "sender_name": alice.name })
        );
        assert_eq!(list(&app, u, "").await, [event]);
    }
    assert!(list(&app, &alice, "").await.is_empty());
    assert!(list(&app, &dave, "").await.is_empty());
}

#[tokio::test]
async fn system_notifications_reach_one_user_or_everyone() {
    let app = spawn_app().await;
    let users = app.users(["u0", "u1", "u2"]).await;
    let mut rx = app
        .hear(&users.iter().map(|u| u.id).collect::<Vec<_>>())
        .await;

    let created = notifications::notify_system(&app.state, None, "Hello", "Welcome to Chatty")
        .await
        .unwrap();

    assert_eq!(created, 3);
    let mut heard = Vec::new();
    for _ in 0..3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let BusMessage::Emit(e) = &*msg else {
            panic!("not an emit")
        };
        assert_eq!(
            (e.ns, e.event.as_str()),
            (Namespace::Notifications, "notification")
        );
        heard.push(e.rooms[0].clone());
    }
    heard.sort();
    let mut expected: Vec<String> = users.iter().map(|u| room::user(u.id)).collect();
    expected.sort();
    assert_eq!(heard, expected);
    for u in &users {
        let n = &list(&app, u, "").await[0];
        assert_eq!(
            (
                n["type"].as_str(),
                n["title"].as_str(),
                n["content"].as_str()
            ),
            (Some("system"), Some("Hello"), Some("Welcome to Chatty"))
        );
    }
    assert_eq!(
        notifications::notify_system(&app.state, Some(Uuid::new_v4()), "t", "x")
            .await
            .unwrap(),
        0
    );
}

async fn run_notify(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chatty"))
        .arg("notify")
        .args(args)
        .env("DATABASE_URL", format!("{}/{}", pg_base(), app.db_name))
        .env("REDIS_URL", redis_url())
        .env("CHATTY_REDIS_PREFIX", &app.prefix)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run chatty notify")
}

#[tokio::test]
async fn the_notify_command_stores_and_publishes_system_notifications() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;
    let mut rx = app.hear(&[alice.id, bob.id]).await;

    // Act: one user
    let out = run_notify(
        &app,
        &[
            "--user",
            &alice.id.to_string(),
            "Maintenance",
            "Back in 5 minutes",
        ],
    )
    .await;

    // Assert: stored, and heard live by the running node through Redis
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created 1 notification"));
    let event = next_notification(&mut rx, alice.id).await;
    assert_eq!(
        (event["type"].as_str(), event["title"].as_str()),
        (Some("system"), Some("Maintenance"))
    );
    assert_eq!(list(&app, &alice, "").await, [event]);
    assert!(list(&app, &bob, "").await.is_empty());

    // Act: everyone
    let out = run_notify(&app, &["--all", "News", "Chatty has notifications"]).await;

    // Assert
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created 2 notifications"));
    assert_eq!(app.count("notifications where type = 'system'").await, 3);
    assert_eq!(next_notification(&mut rx, bob.id).await["title"], "News");
    assert_eq!(
        list(&app, &alice, "").await[0]["content"],
        "Chatty has notifications"
    );
}

#[tokio::test]
async fn the_notify_command_refuses_bad_arguments_with_one_line() {
    let app = spawn_app().await;
    let cases: [(&[&str], i32, &str); 6] = [
        (&["Title", "Text"], 2, "--user"),
        (
            &["--user", "not-a-uuid", "Title", "Text"],
            2,
            "expected a user id",
        ),
        (
            &["--all", "--user", &Uuid::new_v4().to_string(), "T", "X"],
            2,
            "cannot be used with",
        ),
        (&["--all", "Title"], 2, "TEXT"),
        (&["--all", "  ", "Text"], 2, "title must not be empty"),
        (
            &["--user", &Uuid::new_v4().to_string(), "Title", "Text"],
            1,
            "no user with id",
        ),
    ];
    for (args, code, says) in cases {
        let out = run_notify(&app, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(app.count("notifications").await, 0);
}

/// Tries of each read race: a message, then about 100 ms later a read.
const RACE_TRIES: usize = 100;
/// Sender-reader pairs the tries are spread over, so they run concurrently.
const RACE_PAIRS: usize = 10;
/// Longer than any batching the notifier may do.
const PAST_BATCHING: Duration = Duration::from_millis(1000);

/// A sender and a reader in a direct chat; the reader's `/notifications` socket records
/// every `notification` event with the moment it arrived.
struct Pair {
    sender: TestUser,
    reader: TestUser,
    conversation: Uuid,
    events: Arc<std::sync::Mutex<Vec<(Instant, Value)>>>,
    _socket: SioSender,
}

impl Pair {
    /// Unread message notifications whose preview is `preview`, with their arrival.
    fn unread_events(&self, preview: &str) -> Vec<Instant> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| {
                e["type"] == "message"
                    && e["is_read"] == false
                    && e["metadata"]["message_preview"] == preview
            })
            .map(|(at, _)| *at)
            .collect()
    }
}

async fn pair(app: &TestApp) -> Pair {
    let [sender, reader] = app.users(["sender", "reader"]).await;
    let conversation = conversation(app, None, &[&sender, &reader]).await;
    let mut socket = app.notifications_socket(&reader.token).await;
    socket.event("notifications:connected").await;
    let (socket, mut rx) = socket.split();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = events.clone();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if let Incoming::Event { name, data } = m {
                if name == "notification" {
                    record.lock().unwrap().push((Instant::now(), data));
                }
            }
        }
    });
    Pair {
        sender,
        reader,
        conversation,
        events,
        _socket: socket,
    }
}

/// A node with `RACE_PAIRS` pairs on it, for the read races.
async fn race_pairs() -> (TestApp, Vec<Pair>) {
    let app = spawn_app().await;
    let pairs = futures_util::future::join_all((0..RACE_PAIRS).map(|_| pair(&app))).await;
    (app, pairs)
}

/// Runs `tries` of (send `try {k}`, wait ~100 ms, `read`) on every pair at once, then waits
/// past any batching. Returns, per pair, when each read was answered.
async fn race<'a, F, Fut>(app: &'a TestApp, pairs: &'a [Pair], read: F) -> Vec<Vec<Instant>>
where
    F: Fn(&'a Pair, Value) -> Fut + Copy,
    Fut: std::future::Future<Output = ()>,
{
    let runs = pairs.iter().map(|p| async move {
        let mut answered = Vec::new();
        for k in 0..RACE_TRIES / pairs.len() {
            let sent = app
                .send(&p.sender, p.conversation, &format!("try {k}"))
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            read(p, sent).await;
            answered.push(Instant::now());
        }
        answered
    });
    let answered = futures_util::future::join_all(runs).await;
    tokio::time::sleep(PAST_BATCHING).await;
    answered
}

/// Asserts that no try was spoiled: none after which the reader still had something unread
/// or heard an unread notification for the try's message after the read had answered.
async fn assert_none_spoiled(app: &TestApp, pairs: &[Pair], answered: &[Vec<Instant>]) {
    let mut spoiled = Vec::new();
    for (i, (p, answered)) in pairs.iter().zip(answered).enumerate() {
        for (k, read_at) in answered.iter().enumerate() {
            let late = p
                .unread_events(&format!("try {k}"))
                .iter()
                .filter(|at| *at > read_at)
                .count();
            if late > 0 {
                spoiled.push(format!("pair {i} try {k}: pushed unread after the read"));
            }
        }
        let unread = list(app, &p.reader, "/unread").await;
        if !unread.is_empty() {
            spoiled.push(format!("pair {i}: left unread {unread:?}"));
        }
    }
    assert!(
        spoiled.is_empty(),
        "{} of {RACE_TRIES} tries spoiled: {spoiled:#?}",
        spoiled.len()
    );
}

#[tokio::test]
async fn a_read_all_covers_every_message_sent_before_it_in_a_hundred_tries_of_a_hundred() {
    // Arrange
    let (app, pairs) = &race_pairs().await;

    // Act: a message, ~100 ms later read-all; 100 times over ten pairs
    let answered = race(app, pairs, |p, _| async move {
        read_all(app, &p.reader).await;
    })
    .await;

    // Assert: nothing unread, and nothing unread pushed after a read-all answered
    assert_none_spoiled(app, pairs, &answered).await;
}

#[tokio::test]
async fn a_read_cursor_reaching_the_end_covers_every_message_sent_before_it_in_a_hundred_tries_of_a_hundred()
 {
    // Arrange
    let (app, pairs) = &race_pairs().await;

    // Act: a message, ~100 ms later the reader reads it (the conversation's last)
    let answered = race(app, pairs, |p, sent| async move {
        let resp = app.mark(&p.reader, &sent, "read").await;
        assert_eq!(resp.status(), StatusCode::OK);
    })
    .await;

    // Assert
    assert_none_spoiled(app, pairs, &answered).await;
}

#[tokio::test]
async fn reading_the_collapsed_notification_covers_every_message_sent_before_it_in_a_hundred_tries_of_a_hundred()
 {
    // Arrange: each reader has an unread message notification to collapse into
    let (app, pairs) = &race_pairs().await;
    for p in pairs {
        app.send(&p.sender, p.conversation, "first").await;
    }
    tokio::time::sleep(PAST_BATCHING).await;

    // Act: a message, ~100 ms later the reader reads the conversation's notification,
    // then the next message starts a fresh one for the next try
    let answered = race(app, pairs, |p, _| async move {
        let unread = list(app, &p.reader, "/unread").await;
        let Some(n) = unread.iter().find(|n| n["type"] == "message") else {
            return; // nothing to read yet: the try is judged by what is left unread
        };
        let id = n["notification_id"].as_str().unwrap();
        let resp = mark_read(app, &p.reader, id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        // The next try needs an unread notification to read: one from before the race.
        app.send(&p.sender, p.conversation, "between").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    })
    .await;
    // The "between" messages were sent after the last read: one unread notification each.
    for p in pairs {
        read_all(app, &p.reader).await;
    }

    // Assert
    assert_none_spoiled(app, pairs, &answered).await;
}

#[tokio::test]
async fn a_message_sent_after_a_read_all_notifies_and_counts_alone() {
    // Arrange
    let app = spawn_app().await;
    let p = pair(&app).await;
    app.send(&p.sender, p.conversation, "before").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    read_all(&app, &p.reader).await;

    // Act
    app.send(&p.sender, p.conversation, "after").await;
    tokio::time::sleep(PAST_BATCHING).await;

    // Assert: one unread notification, for "after" only, and it was pushed
    let unread = list(&app, &p.reader, "/unread").await;
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert_eq!(unread[0]["metadata"]["message_preview"], "after");
    assert_eq!(unread[0]["count"], 1, "the message read before counts too");
    assert_eq!(p.unread_events("after").len(), 1);
}

/// Alice, her direct chat with bob, and bob's connected `/notifications` socket.
async fn listening(app: &TestApp) -> (TestUser, Uuid, SioClient) {
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let conv = conversation(app, None, &[&alice, &bob]).await;
    let mut notes = app.notifications_socket(&bob.token).await;
    notes.event("notifications:connected").await;
    (alice, conv, notes)
}

/// Holds `user`'s participant row of `conversation` locked until dropped, which stalls
/// the notifier's write of any batch with a message to that user there.
async fn stall_notifier(
    app: &TestApp,
    conversation: Uuid,
    user: Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = app.db.begin().await.expect("begin");
    sqlx::query(
        "select 1 from conversation_participants where conversation_id = $1 and user_id = $2 for update",
    )
    .bind(conversation)
    .bind(user)
    .execute(&mut *tx)
    .await
    .expect("lock");
    tx
}

/// Stalls the notifier on a batch for `dave` (see `stall_notifier`), then sends `text` to
/// the reader of `p`, whose notification thus waits behind dave's.
async fn stall_then_send(
    app: &TestApp,
    p: &Pair,
    dave: &TestUser,
    text: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let other = conversation(app, None, &[&p.sender, dave]).await;
    let stall = stall_notifier(app, other, dave.id).await;
    app.send(&p.sender, other, "to dave").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.send(&p.sender, p.conversation, text).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stall
}

/// Lets the notifier go on, then asserts that dave was notified and the reader of `p` has
/// nothing unread.
async fn release(
    app: &TestApp,
    stall: sqlx::Transaction<'static, sqlx::Postgres>,
    p: &Pair,
    dave: &TestUser,
) {
    stall.rollback().await.expect("rollback");
    tokio::time::sleep(PAST_BATCHING).await;
    assert_eq!(unread_count(app, dave).await, 1);
    assert!(list(app, &p.reader, "/unread").await.is_empty());
}

#[tokio::test]
async fn a_read_all_covers_a_message_whose_notification_is_written_after_it() {
    // Arrange: the notifier is stuck writing a batch for dave, so bob's message waits
    let app = spawn_app().await;
    let p = pair(&app).await;
    let dave = app.register(&name("dave")).await;
    let stall = stall_then_send(&app, &p, &dave, "to the reader").await;

    // Act: the reader reads everything, then the notifier gets going again
    let resp = app
        .post_empty("/notifications/read-all", &p.reader.token)
        .await;
    let answered = Instant::now();
    assert_eq!(resp.status(), StatusCode::OK);

    // Assert: dave is notified; the reader has nothing unread and heard nothing after
    release(&app, stall, &p, &dave).await;
    let late: Vec<_> = p
        .unread_events("to the reader")
        .into_iter()
        .filter(|at| *at > answered)
        .collect();
    assert!(late.is_empty(), "pushed after the read-all: {late:?}");
}

#[tokio::test]
async fn reading_the_collapsed_notification_covers_a_message_whose_notification_is_written_after_it()
 {
    // Arrange: the reader has an unread notification; the notifier is then stuck on dave's
    let app = spawn_app().await;
    let p = pair(&app).await;
    let dave = app.register(&name("dave")).await;
    app.send(&p.sender, p.conversation, "first").await;
    tokio::time::sleep(PAST_BATCHING).await;
    let collapsed = list(&app, &p.reader, "/unread").await[0]["notification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stall = stall_then_send(&app, &p, &dave, "second").await;

    // Act
    let resp = mark_read(&app, &p.reader, &collapsed).await;
    let answered = Instant::now();
    assert_eq!(resp.status(), StatusCode::OK);

    // Assert
    release(&app, stall, &p, &dave).await;
    assert!(
        p.unread_events("second")
            .into_iter()
            .all(|at| at < answered),
        "pushed after the read"
    );
}

#[tokio::test]
async fn on_an_idle_node_a_message_notification_arrives_within_fifty_milliseconds() {
    // Arrange
    let app = spawn_app().await;
    let (alice, conv, mut notes) = listening(&app).await;

    // Act: five messages, one at a time, each timed from the send's answer to the event
    let mut took = Vec::new();
    for i in 0..5 {
        app.send(&alice, conv, &format!("m{i}")).await;
        let answered = Instant::now();
        let event = notes.event("notification").await;
        took.push(answered.elapsed());
        assert_eq!(event["metadata"]["message_preview"], format!("m{i}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Assert: the median within 50 ms, and none near the old 500 ms window. Not every one
    // within 50 ms: on a shared 2-core machine about one delivery in 300 takes 50-110 ms
    // (measured with `notification_latency_on_an_idle_node_is_measured`), which would fail
    // ~2% of runs.
    let mut sorted = took.clone();
    sorted.sort();
    assert!(sorted[2] < Duration::from_millis(50), "median of {took:?}");
    assert!(
        took.iter().all(|t| *t < Duration::from_millis(250)),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_batch_written_after_a_read_brings_back_nothing_the_read_covered() {
    // Arrange: a message bob has read by read-all
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let conv = conversation(&app, None, &[&alice, &bob]).await;
    // Writes the batch of `m` again and asserts that it brings nothing back for bob.
    let late = async |m: &Value| {
        let again = notifications::SentMessage {
            conversation_id: conv,
            sender_id: alice.id,
            seq: m["seq"].as_i64().unwrap(),
            preview: m["content"].as_str().unwrap().to_owned(),
            recipients: vec![alice.id, bob.id],
        };
        let rows = notifications::notify_messages(&app.db, &[again])
            .await
            .unwrap();
        assert!(rows.is_empty(), "{rows:?}");
        assert_eq!(unread_count(&app, &bob).await, 0);
    };
    let first = app.send(&alice, conv, "first").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    read_all(&app, &bob).await;

    // Act: its batch written again, late (as by a slow or second notifier)
    late(&first).await;

    // Act: a message read through its collapsed notification, then its batch again
    let second = app.send(&alice, conv, "second").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let unread = list(&app, &bob, "/unread").await;
    assert_eq!(unread.len(), 1, "a message after a read-all notifies");
    let id = unread[0]["notification_id"].as_str().unwrap();
    mark_read(&app, &bob, id).await;
    late(&second).await;

    // Act: a message read by the read cursor, then its batch again
    let third = app.send(&alice, conv, "third").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.mark(&bob, &third, "read").await;
    late(&third).await;
}

/// Message → `notification` latency on an idle node; prints p50, p99 and max. Run with
/// `cargo test -p chatty --test api notification_latency -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn notification_latency_on_an_idle_node_is_measured() {
    let app = spawn_app().await;
    let (alice, conv, mut notes) = listening(&app).await;
    let mut took = Vec::new();
    for i in 0..200 {
        let sent = Instant::now();
        app.send(&alice, conv, &format!("m{i}")).await;
        let answered = sent.elapsed();
        notes.event("notification").await;
        took.push((sent.elapsed(), sent.elapsed().saturating_sub(answered)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1)]
    };
    let mut from_send: Vec<Duration> = took.iter().map(|t| t.0).collect();
    let mut from_answer: Vec<Duration> = took.iter().map(|t| t.1).collect();
    println!(
        "send → notification: p50 {:?} p99 {:?} max {:?}; answer → notification: p50 {:?} p99 {:?} max {:?} (n = {})",
        pct(&mut from_send, 0.5),
        pct(&mut from_send, 0.99),
        from_send.last().unwrap(),
        pct(&mut from_answer, 0.5),
        pct(&mut from_answer, 0.99),
        from_answer.last().unwrap(),
        took.len()
    );
}
