//! The per-conversation change log: what a node missed while its bus subscription was down
//! reaches its sockets afterwards, and `sync` (and the changes route) hand a client every
//! edit, delete, receipt and membership change after its cursor.

use std::time::Duration;

use chatty::{
    chat,
    domain::{MessageBody, ReceiptStatus},
    presence::{self, Status},
};
use chatty_testkit::{Incoming, SioClient};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{
        SocketExt, TestApp, TestUser, WAIT, assert_invalid_get, free_port, spawn_app,
        spawn_configured,
    },
    realtime::PrivateRedis,
};

/// How long a node may take to notice Redis is back, resubscribe and replay.
const RECOVERY: Duration = Duration::from_secs(10);

/// The message's id, as stored.
fn id_of(message: &Value) -> Uuid {
    message["message_id"].as_str().unwrap().parse().unwrap()
}

/// The next `name` event that `pick` accepts, skipping others (the replay window reaches a
/// little before the gap, so events from just before it may come again).
async fn next_matching(
    sock: &mut SioClient,
    name: &str,
    timeout: Duration,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ev = sock
            .next_event(name, left)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if pick(&ev) {
            return ev;
        }
    }
}

/// An event name and a test of its payload.
type Wanted<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);

/// Listens until every one of `wanted` was heard; each one's payload, in the order of
/// `wanted`.
async fn hear_all(sock: &mut SioClient, timeout: Duration, wanted: &[Wanted<'_>]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut found: Vec<Option<Value>> = vec![None; wanted.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(incoming) = sock.next(left).await else {
            let missing: Vec<&str> = wanted
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|((name, _), _)| *name)
                .collect();
            panic!("not heard within {timeout:?}: {missing:?}");
        };
        let Incoming::Event { name, data } = incoming else {
            continue;
        };
        for (slot, (want, pick)) in found.iter_mut().zip(wanted) {
            if slot.is_none() && name == *want && pick(&data) {
                *slot = Some(data.clone());
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Waits until `node`'s bus has noticed that Redis is gone.
async fn wait_disconnected(node: &TestApp) {
    for _ in 0..100 {
        if !node.state.bus.connected() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the bus never noticed Redis was gone");
}

/// `sync` over `sock`; the answer for `conv`, asserting it succeeded.
async fn sync_one(sock: &SioClient, conv: Uuid, from: Value) -> Value {
    let ack = sock
        .ack(
            "sync",
            &json!({ "conversations": { conv.to_string(): from } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack["data"]["conversations"][conv.to_string()].clone()
}

/// The events of a page of changes, in order.
fn events_of(changes: &Value) -> Vec<String> {
    changes
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["event"].as_str().unwrap().to_owned())
        .collect()
}

/// The change_seqs of a page of changes, in order.
fn seqs_of(changes: &Value) -> Vec<i64> {
    changes
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["change_seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn edits_deletes_receipts_and_members_added_during_a_bus_gap_reach_the_other_nodes_clients() {
    // Arrange: two nodes on a private Redis; alice works on A, bob and carol listen on B,
    // dave (on B) is not in the group yet
    let mut redis = PrivateRedis::start(free_port());
    redis.wait_up().await;
    let url = redis.url();
    let tweak = |s: &mut chatty::config::Settings| s.redis_url = Some(url.clone());
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let [alice, bob, carol, dave] = a.users(["alice", "bob", "carol", "dave"]).await;
    let conv = a.group(&alice, &[&bob, &carol]).await;
    let first = a.send(&alice, conv, "first").await;
    let second = a.send(&alice, conv, "second").await;
    let third = a.send(&alice, conv, "third").await;
    let alice_sock = a.socket(&alice.token).await;
    let mut bob_sock = b.socket(&bob.token).await;
    let mut carol_sock = b.socket(&carol.token).await;
    let mut dave_sock = b.socket(&dave.token).await;
    for s in [&bob_sock, &carol_sock] {
        let ack = s.ack("joinConversation", &json!(conv.to_string())).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = alice_sock
        .ack("joinConversation", &json!(conv.to_string()))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    // Act: Redis dies; while B hears nothing, A edits, deletes, takes a receipt and adds
    // dave (its publishes fail), then Redis comes back
    redis.kill();
    wait_disconnected(&b).await;
    // Each publish waits for Redis until it gives up: the four run side by side.
    let edited = MessageBody::parse("first, edited in the gap", 4000).unwrap();
    let newcomers = [dave.id];
    let (edit, delete, mark, add) = tokio::join!(
        chat::edit_message(&a.state, alice.id, id_of(&first), edited),
        chat::delete_message(&a.state, alice.id, id_of(&second)),
        chat::mark_status(&a.state, bob.id, id_of(&third), ReceiptStatus::Read),
        chat::add_participants(&a.state, alice.id, conv, &newcomers),
    );
    edit.unwrap();
    delete.unwrap();
    mark.unwrap();
    add.unwrap();
    redis.start_again().await;

    // Assert: every client on B hears each change
    let is = |key: &'static str, want: Value| move |e: &Value| e[key] == want;
    let updated = is("message_id", first["message_id"].clone());
    let deleted = is("message_id", second["message_id"].clone());
    let status = is("messageId", third["message_id"].clone());
    let added = is("conversationId", json!(conv));
    let wanted: [Wanted<'_>; 4] = [
        ("messageUpdated", &updated),
        ("messageDeleted", &deleted),
        ("messageStatus", &status),
        ("participantsAdded", &added),
    ];
    for (who, sock) in [("bob", &mut bob_sock), ("carol", &mut carol_sock)] {
        let heard = hear_all(sock, RECOVERY, &wanted).await;
        let [updated, deleted, status, added] = &heard[..] else {
            unreachable!()
        };
        assert_eq!(updated["content"], "first, edited in the gap", "{who}");
        assert_eq!(updated["is_edited"], true, "{who}");
        assert_eq!(deleted["seq"], 2, "{who}");
        assert_eq!(deleted["conversation_id"], conv.to_string(), "{who}");
        assert_eq!(status["userId"], bob.id.to_string(), "{who}");
        assert_eq!(status["status"], "read", "{who}");
        assert_eq!(status["seq"], 3, "{who}");
        // Carol has not read it: the aggregate alice sees is not `read` yet.
        assert_eq!(status["aggregate"], "sent", "{who}");
        assert_eq!(added["userIds"], json!([dave.id]), "{who}");
    }
    let added = next_matching(&mut dave_sock, "participantsAdded", WAIT, |_| true).await;
    assert_eq!(added["conversationId"], conv.to_string());
    assert_eq!(
        added["conversation"]["participants"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // dave's socket on B was moved into the conversation's room: he hears its typing.
    let mut heard = false;
    for _ in 0..20 {
        let ack = alice_sock.typing(conv, true).await;
        if ack["ok"] == true
            && !dave_sock
                .collect("userTyping", Duration::from_millis(250))
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
        "dave's socket was not moved into the conversation's room"
    );
    redis.kill();
}

#[tokio::test]
async fn a_member_removed_during_a_bus_gap_hears_it_and_leaves_the_room_on_the_other_node() {
    // Arrange: alice on A, bob and carol on B, all in the conversation's room
    let mut redis = PrivateRedis::start(free_port());
    redis.wait_up().await;
    let url = redis.url();
    let tweak = |s: &mut chatty::config::Settings| s.redis_url = Some(url.clone());
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let [alice, bob, carol] = a.users(["alice", "bob", "carol"]).await;
    let conv = a.group(&alice, &[&bob, &carol]).await;
    let alice_sock = a.socket(&alice.token).await;
    let mut bob_sock = b.socket(&bob.token).await;
    let mut carol_sock = b.socket(&carol.token).await;
    for s in [&alice_sock, &bob_sock, &carol_sock] {
        let ack = s.ack("joinConversation", &json!(conv.to_string())).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }

    // Act: alice removes carol while B hears nothing
    redis.kill();
    wait_disconnected(&b).await;
    chat::remove_participant(&a.state, alice.id, conv, carol.id)
        .await
        .unwrap();
    redis.start_again().await;

    // Assert: both hear it; bob's socket stays in the room, carol's left it
    for sock in [&mut bob_sock, &mut carol_sock] {
        let removed = next_matching(sock, "participantRemoved", RECOVERY, |e| {
            e["conversationId"] == conv.to_string()
        })
        .await;
        assert_eq!(removed["userId"], carol.id.to_string());
    }
    let mut heard = false;
    for _ in 0..20 {
        let ack = alice_sock.typing(conv, true).await;
        if ack["ok"] == true
            && !bob_sock
                .collect("userTyping", Duration::from_millis(250))
                .await
                .is_empty()
        {
            heard = true;
            break;
        }
        alice_sock.typing(conv, false).await;
    }
    assert!(heard, "the room's typing did not reach bob after the gap");
    carol_sock
        .assert_silent("userTyping", "a removed member's socket stayed in the room")
        .await;
    redis.kill();
}

#[tokio::test]
async fn presence_that_changed_during_a_bus_gap_is_announced_to_the_other_nodes_clients() {
    // Arrange: bob listens on B; erin, his conversation partner, has no socket
    let mut redis = PrivateRedis::start(free_port());
    redis.wait_up().await;
    let url = redis.url();
    let tweak = |s: &mut chatty::config::Settings| s.redis_url = Some(url.clone());
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let [bob, erin] = a.users(["bob", "erin"]).await;
    a.group(&bob, &[&erin]).await;
    let mut bob_sock = b.socket(&bob.token).await;

    // Act: erin's presence changes on A while B hears nothing
    redis.kill();
    wait_disconnected(&b).await;
    presence::announce(&a.state, erin.id, Status::Online).await;
    assert_eq!(a.status_of(erin.id).await, "online");
    redis.start_again().await;

    // Assert
    let status = next_matching(&mut bob_sock, "userStatus", RECOVERY, |e| {
        e["userId"] == erin.id.to_string()
    })
    .await;
    assert_eq!(status["status"], "online");
    assert!(status["lastSeenAt"].is_string(), "{status}");
    redis.kill();
}

/// A group of alice, bob and carol with a history of every kind of change: created (1),
/// an edit (2), a delete (3), a read receipt (4), dave added (5), dave removed (6).
async fn group_with_every_kind_of_change(
    app: &TestApp,
) -> (TestUser, TestUser, TestUser, Uuid, Value, Value) {
    let [alice, bob, carol, dave] = app.users(["alice", "bob", "carol", "dave"]).await;
    let conv = app.group(&alice, &[&bob, &carol]).await;
    let first = app.send(&alice, conv, "first").await;
    let second = app.send(&alice, conv, "second").await;
    let path = format!("/messages/{}", first["message_id"].as_str().unwrap());
    let resp = app
        .put(&path, &alice.token, json!({ "content": "first!" }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let path = format!("/messages/{}", second["message_id"].as_str().unwrap());
    assert_eq!(
        app.delete(&path, &alice.token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.mark(&bob, &first, "read").await.status(),
        StatusCode::OK
    );
    let resp = app.add_participants(&alice, conv, &[dave.id]).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let path = format!("/conversations/{conv}/participants/{}/remove", dave.id);
    let resp = app.post_empty(&path, &alice.token).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    (alice, bob, carol, conv, first, second)
}

#[tokio::test]
async fn sync_returns_every_edit_delete_receipt_and_membership_change_after_the_cursor() {
    // Arrange
    let app = spawn_app().await;
    let (_alice, bob, _carol, conv, first, second) = group_with_every_kind_of_change(&app).await;
    let sock = app.socket(&bob.token).await;

    // Act
    let synced = sync_one(&sock, conv, json!({ "seq": 0, "changes": 1 })).await;

    // Assert
    assert_eq!(synced["last_change_seq"], 6, "{synced}");
    assert_eq!(synced["changes_truncated"], false);
    assert_eq!(synced["changes_has_more"], false);
    let changes = &synced["changes"];
    assert_eq!(seqs_of(changes), vec![2, 3, 4, 5, 6]);
    assert_eq!(
        events_of(changes),
        [
            "messageUpdated",
            "messageDeleted",
            "messageStatus",
            "participantsAdded",
            "participantRemoved"
        ]
    );
    let data = |i: usize| changes[i]["data"].clone();
    assert_eq!(data(0)["message_id"], first["message_id"]);
    assert_eq!(data(0)["content"], "first!");
    assert_eq!(data(0)["is_edited"], true);
    assert_eq!(
        data(1),
        json!({ "message_id": second["message_id"], "conversation_id": conv, "seq": 2 })
    );
    assert_eq!(data(2)["messageId"], first["message_id"]);
    assert_eq!(data(2)["userId"], bob.id.to_string());
    assert_eq!(data(2)["status"], "read");
    assert_eq!(data(2)["seq"], 1);
    // Carol has not read it yet.
    assert_eq!(data(2)["aggregate"], "sent");
    assert_eq!(data(3)["userIds"].as_array().unwrap().len(), 1);
    assert_eq!(data(3)["conversation"]["conversation_id"], conv.to_string());
    let dave = data(3)["userIds"][0].clone();
    assert_eq!(data(4), json!({ "conversationId": conv, "userId": dave }));
    // Messages still come as before: the deleted one is left out.
    let contents: Vec<&str> = synced["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first!"]);

    // The original form still works and tells where the change log stands.
    let bare = sync_one(&sock, conv, json!(0)).await;
    assert_eq!(bare["last_change_seq"], 6);
    assert_eq!(bare["last_seq"], 2);
    assert!(bare.get("changes").is_none(), "{bare}");
    // From the start, the conversation's creation comes first.
    let all = sync_one(&sock, conv, json!({ "seq": 2, "changes": 0 })).await;
    assert_eq!(events_of(&all["changes"])[0], "conversationCreated");
    assert_eq!(
        all["changes"][0]["data"]["conversation_id"],
        conv.to_string()
    );
    assert_eq!(all["messages"], json!([]));
}

#[tokio::test]
async fn the_changes_route_pages_the_log_after_a_cursor() {
    let app = spawn_app().await;
    let (_alice, bob, _carol, conv, _first, _second) = group_with_every_kind_of_change(&app).await;
    let path = format!("/messages/conversation/{conv}/changes");

    let page = app
        .get_body(&format!("{path}?after=1&limit=2"), &bob.token)
        .await;
    assert_eq!(seqs_of(&page["changes"]), vec![2, 3]);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["last_change_seq"], 6);
    assert_eq!(page["truncated"], false);
    let rest = app.get_body(&format!("{path}?after=3"), &bob.token).await;
    assert_eq!(seqs_of(&rest["changes"]), vec![4, 5, 6]);
    assert_eq!(rest["has_more"], false);
    let none = app.get_body(&format!("{path}?after=6"), &bob.token).await;
    assert_eq!(none["changes"], json!([]));
    assert_eq!(none["truncated"], false);

    // Strangers do not learn the conversation exists.
    let eve = app.register(&crate::helpers::name("eve")).await;
    let resp = app.get(&path, &eve.token).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_cursor_older_than_the_retained_log_is_told_to_reload() {
    // Arrange: every change so far is past its retention and pruned
    let app = spawn_app().await;
    let (alice, bob, _carol, conv, first, _second) = group_with_every_kind_of_change(&app).await;
    let pruned = chat::prune(&app.db, Duration::ZERO).await.unwrap();
    assert_eq!(pruned, 6);
    // One more change after the prune: 7.
    let path = format!("/messages/{}", first["message_id"].as_str().unwrap());
    let resp = app
        .put(&path, &alice.token, json!({ "content": "again" }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let sock = app.socket(&bob.token).await;

    // Act + Assert: a cursor before the pruned changes cannot be continued
    let old = sync_one(&sock, conv, json!({ "seq": 0, "changes": 2 })).await;
    assert_eq!(old["changes_truncated"], true, "{old}");
    assert_eq!(old["changes"], json!([]));
    assert_eq!(old["last_change_seq"], 7);
    // One at the edge of what is kept can.
    let edge = sync_one(&sock, conv, json!({ "seq": 0, "changes": 6 })).await;
    assert_eq!(edge["changes_truncated"], false, "{edge}");
    assert_eq!(seqs_of(&edge["changes"]), vec![7]);
    assert_eq!(edge["changes"][0]["data"]["content"], "again");
    // A cursor ahead of the log (a restored database) cannot be continued either.
    let ahead = sync_one(&sock, conv, json!({ "seq": 0, "changes": 99 })).await;
    assert_eq!(ahead["changes_truncated"], true, "{ahead}");
    let rest = app
        .get_body(
            &format!("/messages/conversation/{conv}/changes?after=0"),
            &bob.token,
        )
        .await;
    assert_eq!(rest["truncated"], true, "{rest}");
}

#[tokio::test]
async fn bad_change_cursors_are_a_400_naming_the_field() {
    let app = spawn_app().await;
    let [alice] = app.users(["alice"]).await;
    let conv = app.group(&alice, &[]).await;
    let sock = app.socket(&alice.token).await;
    let id = conv.to_string();
    let cases = [
        (
            json!({ "seq": 0, "changes": "x" }),
            format!("conversations.{id}.changes"),
        ),
        (
            json!({ "seq": 0, "changes": -1 }),
            format!("conversations.{id}.changes"),
        ),
        (
            json!({ "seq": -1, "changes": 0 }),
            format!("conversations.{id}.seq"),
        ),
        (json!(-1), format!("conversations.{id}.seq")),
        (json!({ "changes": 0 }), format!("conversations.{id}")),
        (
            json!({ "seq": 0, "change": 0 }),
            format!("conversations.{id}"),
        ),
        (json!("one"), format!("conversations.{id}")),
    ];
    for (from, field) in cases {
        let ack = sock
            .ack(
                "sync",
                &json!({ "conversations": { id.clone(): from.clone() } }),
            )
            .await;
        assert_eq!(ack["ok"], false, "{from}: {ack}");
        assert_eq!(ack["error"]["statusCode"], 400, "{from}: {ack}");
        assert_eq!(ack["error"]["code"], "validation_failed", "{from}: {ack}");
        let named = ack["error"]["fields"][0].as_str().unwrap_or_default();
        assert!(named.starts_with(&field), "{from}: {ack}");
    }
    let path = format!("/messages/conversation/{conv}/changes");
    assert_invalid_get(&app, &alice.token, &format!("{path}?after=-1"), "after").await;
    assert_invalid_get(&app, &alice.token, &format!("{path}?after=x"), "after").await;
    assert_invalid_get(&app, &alice.token, &format!("{path}?limit=0"), "limit").await;
    assert_invalid_get(&app, &alice.token, &format!("{path}?limit=201"), "limit").await;
}

#[tokio::test]
async fn change_pages_are_bounded_and_continue_where_they_stopped() {
    // Arrange: 210 edits after the creation, 211 changes
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let conv = app.group(&alice, &[&bob]).await;
    let message = app.send(&alice, conv, "v0").await;
    let path = format!("/messages/{}", message["message_id"].as_str().unwrap());
    for i in 1..=210 {
        let resp = app
            .put(&path, &alice.token, json!({ "content": format!("v{i}") }))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let sock = app.socket(&bob.token).await;

    // Act + Assert: sync pages by 200
    let page = sync_one(&sock, conv, json!({ "seq": 1, "changes": 0 })).await;
    assert_eq!(seqs_of(&page["changes"]), (1..=200).collect::<Vec<_>>());
    assert_eq!(page["changes_has_more"], true);
    assert_eq!(page["last_change_seq"], 211);
    let rest = sync_one(&sock, conv, json!({ "seq": 1, "changes": 200 })).await;
    assert_eq!(seqs_of(&rest["changes"]), (201..=211).collect::<Vec<_>>());
    assert_eq!(rest["changes_has_more"], false);
    assert_eq!(rest["changes"][10]["data"]["content"], "v210");
    // The route pages by 50 unless told otherwise, and by at most 200.
    let route = format!("/messages/conversation/{conv}/changes");
    let default = app.get_body(&route, &bob.token).await;
    assert_eq!(default["changes"].as_array().unwrap().len(), 50);
    assert_eq!(default["has_more"], true);
    let most = app
        .get_body(&format!("{route}?limit=200"), &bob.token)
        .await;
    assert_eq!(most["changes"].as_array().unwrap().len(), 200);
}

#[tokio::test]
async fn each_change_is_numbered_once_even_when_changes_race() {
    // Arrange: two readers, the sender and members being added change one conversation at
    // once; one addition names a reader whose receipts are in flight
    let app = spawn_app().await;
    let [alice, bob, carol, dave, erin] =
        app.users(["alice", "bob", "carol", "dave", "erin"]).await;
    let conv = app.group(&alice, &[&bob, &carol]).await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(app.send(&alice, conv, &format!("m{i}")).await);
    }

    // Act
    let mut work = Vec::new();
    for m in &sent {
        work.push(app.mark(&bob, m, "read"));
        work.push(app.mark(&carol, m, "delivered"));
    }
    let marks = futures_util::future::join_all(work);
    let path = format!("/messages/{}", sent[0]["message_id"].as_str().unwrap());
    let edit = app.put(&path, &alice.token, json!({ "content": "m0!" }));
    let (one, other) = ([bob.id, dave.id], [erin.id, carol.id]);
    let add_one = app.add_participants(&alice, conv, &one);
    let add_other = app.add_participants(&alice, conv, &other);
    let (marks, edit, add_one, add_other) = tokio::join!(marks, edit, add_one, add_other);
    assert_eq!(edit.status(), StatusCode::OK);
    assert_eq!(add_one.status(), StatusCode::OK);
    assert_eq!(add_other.status(), StatusCode::OK);
    for r in marks {
        assert_eq!(r.status(), StatusCode::OK);
    }

    // Assert: the log is 1..=N without holes or repeats, and the head agrees
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "select change_seq, event from conversation_changes where conversation_id = $1 \
         order by change_seq",
    )
    .bind(conv)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let head: i64 =
        sqlx::query_scalar("select last_change_seq from conversations where conversation_id = $1")
            .bind(conv)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
    let count = |event: &str| rows.iter().filter(|(_, e)| e == event).count();
    assert_eq!(count("conversationCreated"), 1);
    assert_eq!(count("messageUpdated"), 1);
    assert_eq!(count("participantsAdded"), 2);
    // At least one receipt per reader; fewer than one per mark when a later one overtook.
    assert!((2..=20).contains(&count("messageStatus")), "{rows:?}");
}
