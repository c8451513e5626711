use std::{sync::Arc, time::Duration};

use chatty::bus::{BusMessage, Emit, Namespace, room};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, assert_error, assert_invalid, body, name, spawn_app};

// ---- helpers shared with messages.rs ----

/// Registers users concurrently (each costs an argon2 hash).
pub async fn users(app: &TestApp, bases: &[&str]) -> Vec<TestUser> {
    let names: Vec<String> = bases.iter().map(|b| name(b)).collect();
    join_all(names.iter().map(|n| app.register(n))).await
}

pub async fn create_direct(app: &TestApp, a: &TestUser, b: &TestUser) -> Uuid {
    let resp = app
        .post(
            "/conversations",
            &a.token,
            json!({ "participant_ids": [b.id] }),
        )
        .await;
    assert!(
        resp.status().is_success(),
        "create direct: {}",
        resp.status()
    );
    id_of(&body(resp).await, "conversation_id")
}

pub async fn create_group(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> Uuid {
    let ids: Vec<Uuid> = members.iter().map(|m| m.id).collect();
    let resp = app
        .post(
            "/conversations",
            &owner.token,
            json!({ "name": "Team", "is_group": true, "participant_ids": ids }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    id_of(&body(resp).await, "conversation_id")
}

/// Sends a message and returns the stored message.
pub async fn send(app: &TestApp, user: &TestUser, conversation: Uuid, content: &str) -> Value {
    let resp = app
        .post(
            "/messages",
            &user.token,
            json!({ "content": content, "conversation_id": conversation }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED, "send as {}", user.name);
    body(resp).await
}

pub fn id_of(v: &Value, field: &str) -> Uuid {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .parse()
        .expect("uuid")
}

/// The next `event` on the bus, skipping other traffic; fails after a few seconds.
pub async fn next_emit(
    rx: &mut broadcast::Receiver<Arc<BusMessage>>,
    event: &str,
) -> (Emit, Value) {
    let wait = async {
        loop {
            let msg = rx.recv().await.expect("bus closed");
            if let BusMessage::Emit(e) = msg.as_ref() {
                if e.event == event {
                    let data: Value = serde_json::from_str(e.data.get()).expect("event JSON");
                    return (e.clone(), data);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("no {event} published"))
}

/// The next room change on the bus.
pub async fn next_rooms(
    rx: &mut broadcast::Receiver<Arc<BusMessage>>,
) -> (Vec<Uuid>, Vec<String>, Vec<String>) {
    let wait = async {
        loop {
            if let BusMessage::Rooms { users, join, leave } =
                rx.recv().await.expect("bus closed").as_ref()
            {
                return (users.clone(), join.clone(), leave.clone());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("no Rooms message published")
}

/// Rooms of an emit, sorted, for comparison.
pub fn rooms_of(e: &Emit) -> Vec<String> {
    let mut r = e.rooms.clone();
    r.sort();
    r
}

pub fn user_rooms(users: &[&TestUser]) -> Vec<String> {
    let mut r: Vec<String> = users.iter().map(|u| room::user(u.id)).collect();
    r.sort();
    r
}

fn participant_ids(conv: &Value) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = conv["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| id_of(p, "user_id"))
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

fn role_of(conv: &Value, user: &TestUser) -> String {
    conv["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["user_id"] == user.id.to_string())
        .map(|p| p["role"].as_str().expect("role").to_owned())
        .unwrap_or_default()
}

// ---- tests ----

#[tokio::test]
async fn every_conversation_route_requires_authentication() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let routes = [
        (Method::GET, "/conversations".to_owned()),
        (Method::POST, "/conversations".to_owned()),
        (Method::GET, format!("/conversations/{id}")),
        (Method::POST, format!("/conversations/{id}/participants")),
        (
            Method::POST,
            format!("/conversations/{id}/participants/{}/remove", Uuid::new_v4()),
        ),
    ];
    for (method, path) in routes {
        let resp = app.request(method, &path, None, Some(json!({}))).await;
        assert_error(resp, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn a_direct_chat_is_created_once_and_returned_to_either_user_afterwards() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob] = <[TestUser; 2]>::try_from(users(&app, &["alice", "bob"]).await).unwrap();
    let mut bus = app.state.bus.subscribe();

    // Act
    let first = app
        .post(
            "/conversations",
            &alice.token,
            json!({ "participant_ids": [bob.id, alice.id] }),
        )
        .await;
    let again = app
        .post(
            "/conversations",
            &alice.token,
            json!({ "participant_ids": [bob.id] }),
        )
        .await;
    let reverse = app
        .post(
            "/conversations",
            &bob.token,
            json!({ "participant_ids": [alice.id], "is_group": false }),
        )
        .await;

    // Assert
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(reverse.status(), StatusCode::OK);
    let (first, again, reverse) = (body(first).await, body(again).await, body(reverse).await);
    assert_eq!(first["conversation_id"], again["conversation_id"]);
    assert_eq!(first["conversation_id"], reverse["conversation_id"]);
    assert_eq!(first["is_group"], false);
    assert!(first["name"].is_null());
    assert_eq!(first["last_seq"], 0);
    assert_eq!(first["unread_count"], 0);
    assert!(first["last_message"].is_null());
    assert_eq!(participant_ids(&first), sorted(vec![alice.id, bob.id]));
    assert_eq!(app.count("conversations").await, 1);
    assert_eq!(app.count("conversation_participants").await, 2);
    let (emit, data) = next_emit(&mut bus, "conversationCreated").await;
    assert_eq!(emit.ns, Namespace::Chat);
    assert_eq!(rooms_of(&emit), user_rooms(&[&alice, &bob]));
    assert_eq!(data["conversation_id"], first["conversation_id"]);
}

#[tokio::test]
async fn concurrent_requests_for_the_same_direct_chat_create_one_conversation() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob] = <[TestUser; 2]>::try_from(users(&app, &["alice", "bob"]).await).unwrap();

    // Act: both users, ten requests at once.
    let requests = (0..10).map(|i| {
        let (me, other) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        app.post(
            "/conversations",
            &me.token,
            json!({ "participant_ids": [other.id] }),
        )
    });
    let responses = join_all(requests).await;

    // Assert
    let mut created = 0;
    let mut ids = Vec::new();
    for resp in responses {
        match resp.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
        ids.push(id_of(&body(resp).await, "conversation_id"));
    }
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.count("conversations").await, 1);
    assert_eq!(app.count("conversation_participants").await, 2);
}

#[tokio::test]
async fn invalid_conversation_requests_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let [alice, bob, carol] =
        <[TestUser; 3]>::try_from(users(&app, &["alice", "bob", "carol"]).await).unwrap();
    let unknown = Uuid::new_v4();
    let cases = [
        (json!({ "participant_ids": [] }), "participant_ids"),
        (json!({}), "participant_ids"),
        (json!({ "participant_ids": [alice.id] }), "participant_ids"),
        (
            json!({ "participant_ids": [bob.id, carol.id] }),
            "participant_ids",
        ),
        (
            json!({ "participant_ids": ["not-a-uuid"] }),
            "participant_ids",
        ),
        (json!({ "participant_ids": [unknown] }), "participant_ids"),
        (
            json!({ "is_group": true, "participant_ids": [bob.id] }),
            "name",
        ),
        (
            json!({ "is_group": true, "name": "   ", "participant_ids": [bob.id] }),
            "name",
        ),
        (
            json!({ "is_group": true, "name": "x".repeat(101), "participant_ids": [bob.id] }),
            "name",
        ),
        (
            json!({ "is_group": true, "name": "Team", "participant_ids": [bob.id, unknown] }),
            "participant_ids",
        ),
        (
            json!({ "is_group": "yes", "participant_ids": [bob.id] }),
            "is_group",
        ),
    ];
    for (payload, field) in cases {
        let b = assert_invalid(
            app.post("/conversations", &alice.token, payload.clone())
                .await,
            field,
        )
        .await;
        if payload["participant_ids"][0] == json!(unknown)
            || payload["participant_ids"][1] == json!(unknown)
        {
            assert!(
                b.to_string().contains(&unknown.to_string()),
                "unknown id not named: {b}"
            );
        }
    }
    assert_eq!(app.count("conversations").await, 0);
    assert_eq!(app.count("conversation_participants").await, 0);
}

#[tokio::test]
async fn a_group_makes_its_creator_owner_and_collapses_repeated_members() {
    let app = spawn_app().await;
    let [alice, bob, carol] =
        <[TestUser; 3]>::try_from(users(&app, &["alice", "bob", "carol"]).await).unwrap();
    let resp = app
        .post(
            "/conversations",
            &alice.token,
            json!({ "name": "  Weekend plans ", "is_group": true, "participant_ids": [bob.id, carol.id, bob.id] }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let group = body(resp).await;
    assert_eq!(group["name"], "Weekend plans");
    assert_eq!(group["is_group"], true);
    assert_eq!(group["created_by"], alice.id.to_string());
    assert_eq!(
        participant_ids(&group),
        sorted(vec![alice.id, bob.id, carol.id])
    );
    assert_eq!(role_of(&group, &alice), "owner");
    assert_eq!(role_of(&group, &bob), "member");
    let p = &group["participants"][0];
    for field in [
        "user_id",
        "username",
        "status",
        "role",
        "joined_at",
        "last_read_seq",
        "last_delivered_seq",
    ] {
        assert!(!p[field].is_null(), "participant lacks {field}: {p}");
    }
    assert!(p.get("email").is_none() && p.get("password_hash").is_none());
    // A group of the same people is a new group, unlike a direct chat.
    create_group(&app, &alice, &[&bob, &carol]).await;
    assert_eq!(app.count("conversations").await, 2);
}

#[tokio::test]
async fn the_list_is_ordered_by_activity_with_latest_message_and_unread_count() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol] =
        <[TestUser; 3]>::try_from(users(&app, &["alice", "bob", "carol"]).await).unwrap();
    let with_bob = create_direct(&app, &alice, &bob).await;
    let with_carol = create_direct(&app, &alice, &carol).await;
    let group = create_group(&app, &alice, &[&bob, &carol]).await;
    send(&app, &bob, with_bob, "one").await;
    send(&app, &bob, with_bob, "two").await;
    send(&app, &alice, with_bob, "mine").await;
    let deleted = send(&app, &bob, with_bob, "oops").await;
    let resp = app
        .delete(
            &format!("/messages/{}", deleted["message_id"].as_str().unwrap()),
            &bob.token,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Act
    let list = body(app.get("/conversations", &alice.token).await).await;

    // Assert: with_bob has the newest message; the others fall back to creation time.
    let order: Vec<Uuid> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| id_of(c, "conversation_id"))
        .collect();
    assert_eq!(order, vec![with_bob, group, with_carol]);
    let first = &list[0];
    assert_eq!(first["last_seq"], 4);
    assert_eq!(
        first["last_message"]["content"], "mine",
        "deleted messages are not the latest: {first}"
    );
    assert_eq!(first["last_message"]["seq"], 3);
    assert_eq!(
        first["unread_count"], 2,
        "own and deleted messages are not unread"
    );
    assert_eq!(list[1]["unread_count"], 0);
    assert!(list[1]["last_message"].is_null());
    let bobs = body(app.get("/conversations", &bob.token).await).await;
    assert_eq!(bobs.as_array().unwrap().len(), 2);
    assert_eq!(bobs[0]["unread_count"], 1);

    // Reading moves the count; activity in another conversation moves it to the top.
    let msg_id = first["last_message"]["message_id"].as_str().unwrap();
    let resp = app
        .put(
            &format!("/messages/{msg_id}/status"),
            &bob.token,
            json!({ "status": "read" }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let bobs = body(app.get("/conversations", &bob.token).await).await;
    assert_eq!(bobs[0]["unread_count"], 0);
    send(&app, &carol, with_carol, "hi").await;
    let list = body(app.get("/conversations", &alice.token).await).await;
    assert_eq!(id_of(&list[0], "conversation_id"), with_carol);
    assert_eq!(list[0]["unread_count"], 1);

    // Paging.
    let page = body(
        app.get("/conversations?limit=2&offset=1", &alice.token)
            .await,
    )
    .await;
    let order: Vec<Uuid> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|c| id_of(c, "conversation_id"))
        .collect();
    assert_eq!(order, vec![with_bob, group]);
    assert_invalid(
        app.get("/conversations?limit=0", &alice.token).await,
        "limit",
    )
    .await;
    assert_invalid(
        app.get("/conversations?limit=101", &alice.token).await,
        "limit",
    )
    .await;
    assert_invalid(
        app.get("/conversations?limit=ten", &alice.token).await,
        "limit",
    )
    .await;
    assert_invalid(
        app.get("/conversations?offset=-1", &alice.token).await,
        "offset",
    )
    .await;
}

#[tokio::test]
async fn details_carry_the_newest_messages_and_are_hidden_from_non_participants() {
    let app = spawn_app().await;
    let [alice, bob, eve] =
        <[TestUser; 3]>::try_from(users(&app, &["alice", "bob", "eve"]).await).unwrap();
    let conv = create_direct(&app, &alice, &bob).await;
    for i in 1..=55 {
        send(
            &app,
            if i % 2 == 0 { &alice } else { &bob },
            conv,
            &format!("m{i}"),
        )
        .await;
    }
    let resp = app
        .get(&format!("/conversations/{conv}"), &alice.token)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let details = body(resp).await;
    let seqs: Vec<i64> = details["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (6..=55).collect::<Vec<_>>());
    assert_eq!(details["last_seq"], 55);
    assert_eq!(details["unread_count"], 28);
    assert_eq!(participant_ids(&details), sorted(vec![alice.id, bob.id]));

    assert_error(
        app.get(&format!("/conversations/{conv}"), &eve.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.get(&format!("/conversations/{}", Uuid::new_v4()), &eve.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.get("/conversations/nope", &eve.token).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let listed = body(app.get("/conversations", &eve.token).await).await;
    assert!(listed.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn adding_participants_works_for_groups_only_and_new_members_start_caught_up() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol, dave, eve] =
        <[TestUser; 5]>::try_from(users(&app, &["alice", "bob", "carol", "dave", "eve"]).await)
            .unwrap();
    let group = create_group(&app, &alice, &[&bob]).await;
    let direct = create_direct(&app, &alice, &bob).await;
    let old = send(&app, &alice, group, "before you joined").await;
    let resp = app
        .put(
            &format!("/messages/{}/status", old["message_id"].as_str().unwrap()),
            &bob.token,
            json!({ "status": "read" }),
        )
        .await;
    assert_eq!(body(resp).await["status"], "read");
    let mut bus = app.state.bus.subscribe();

    // Act: a member (not the owner) adds carol, bob again, and carol twice.
    let resp = app
        .post(
            &format!("/conversations/{group}/participants"),
            &bob.token,
            json!({ "userIds": [carol.id, bob.id, carol.id] }),
        )
        .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let conv = body(resp).await;
    assert_eq!(
        participant_ids(&conv),
        sorted(vec![alice.id, bob.id, carol.id])
    );
    let (emit, data) = next_emit(&mut bus, "participantsAdded").await;
    assert_eq!(rooms_of(&emit), user_rooms(&[&alice, &bob, &carol]));
    assert_eq!(data["conversationId"], group.to_string());
    assert_eq!(data["userIds"], json!([carol.id]));
    assert_eq!(
        participant_ids(&data["conversation"]),
        sorted(vec![alice.id, bob.id, carol.id])
    );
    let (users, join, leave) = next_rooms(&mut bus).await;
    assert_eq!(
        (users, join, leave),
        (vec![carol.id], vec![room::conversation(group)], vec![])
    );
    // Carol is caught up: nothing unread, and the old message stays read.
    let carols = body(app.get("/conversations", &carol.token).await).await;
    assert_eq!(carols[0]["unread_count"], 0);
    assert_eq!(carols[0]["last_message"]["status"], "read");

    // Adding only existing members changes nothing and publishes nothing.
    let resp = app
        .post(
            &format!("/conversations/{group}/participants"),
            &alice.token,
            json!({ "userIds": [bob.id] }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(app.count("conversation_participants").await, 5);
    app.post(
        &format!("/conversations/{group}/participants"),
        &alice.token,
        json!({ "userIds": [dave.id] }),
    )
    .await;
    let (_, data) = next_emit(&mut bus, "participantsAdded").await;
    assert_eq!(
        data["userIds"],
        json!([dave.id]),
        "the no-op published an event"
    );

    // Refusals.
    let path = format!("/conversations/{group}/participants");
    assert_error(
        app.post(&path, &eve.token, json!({ "userIds": [eve.id] }))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let unknown = Uuid::new_v4();
    let b = assert_invalid(
        app.post(&path, &alice.token, json!({ "userIds": [unknown] }))
            .await,
        "userIds",
    )
    .await;
    assert!(b.to_string().contains(&unknown.to_string()));
    assert_invalid(
        app.post(&path, &alice.token, json!({ "userIds": [] }))
            .await,
        "userIds",
    )
    .await;
    assert_invalid(
        app.post(&path, &alice.token, json!({ "userIds": ["x"] }))
            .await,
        "userIds",
    )
    .await;
    let to_direct = format!("/conversations/{direct}/participants");
    assert_error(
        app.post(&to_direct, &alice.token, json!({ "userIds": [carol.id] }))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let missing = format!("/conversations/{}/participants", Uuid::new_v4());
    assert_error(
        app.post(&missing, &alice.token, json!({ "userIds": [carol.id] }))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.count("conversation_participants").await, 6);
}

#[tokio::test]
async fn removing_participants_follows_roles_and_removed_users_lose_access_at_once() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol, eve] =
        <[TestUser; 4]>::try_from(users(&app, &["alice", "bob", "carol", "eve"]).await).unwrap();
    let group = create_group(&app, &alice, &[&bob, &carol]).await;
    let direct = create_direct(&app, &alice, &bob).await;
    let msg = send(&app, &carol, group, "hello").await;
    let remove = |who: &TestUser| format!("/conversations/{group}/participants/{}/remove", who.id);
    let mut bus = app.state.bus.subscribe();

    // A member cannot remove others; strangers do not see the group.
    assert_error(
        app.post(&remove(&carol), &bob.token, json!({})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_error(
        app.post(&remove(&carol), &eve.token, json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.post(&remove(&eve), &alice.token, json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let from_direct = format!("/conversations/{direct}/participants/{}/remove", bob.id);
    assert_error(
        app.post(&from_direct, &alice.token, json!({})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Act: the owner removes carol.
    let resp = app.post(&remove(&carol), &alice.token, json!({})).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        participant_ids(&body(resp).await),
        sorted(vec![alice.id, bob.id])
    );
    let (emit, data) = next_emit(&mut bus, "participantRemoved").await;
    assert_eq!(rooms_of(&emit), user_rooms(&[&alice, &bob, &carol]));
    assert_eq!(data, json!({ "conversationId": group, "userId": carol.id }));
    let (users, join, leave) = next_rooms(&mut bus).await;
    assert_eq!(
        (users, join, leave),
        (vec![carol.id], vec![], vec![room::conversation(group)])
    );
    // Carol lost access to everything in it.
    let msg_id = msg["message_id"].as_str().unwrap();
    assert_error(
        app.get(&format!("/conversations/{group}"), &carol.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.get(&format!("/messages/conversation/{group}"), &carol.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let resp = app
        .post(
            "/messages",
            &carol.token,
            json!({ "content": "still here?", "conversation_id": group }),
        )
        .await;
    assert_error(resp, StatusCode::NOT_FOUND).await;
    assert_error(
        app.put(
            &format!("/messages/{msg_id}"),
            &carol.token,
            json!({ "content": "x" }),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.delete(&format!("/messages/{msg_id}"), &carol.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.get(&format!("/messages/{msg_id}/receipts"), &carol.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        body(app.get("/conversations", &carol.token).await)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Removed members cannot change membership either.
    assert_error(
        app.post(&remove(&bob), &carol.token, json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // The owner leaves: ownership passes on; the last participant cannot leave.
    let resp = app.post(&remove(&alice), &alice.token, json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let conv = body(resp).await;
    assert_eq!(participant_ids(&conv), vec![bob.id]);
    assert_eq!(role_of(&conv, &bob), "owner");
    assert_error(
        app.post(&remove(&bob), &bob.token, json!({})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        body(
            app.get(&format!("/conversations/{group}"), &bob.token)
                .await
        )
        .await["participants"][0]["role"],
        "owner"
    );
}

#[tokio::test]
async fn concurrent_removals_never_empty_a_group() {
    let app = spawn_app().await;
    let [alice, bob] = <[TestUser; 2]>::try_from(users(&app, &["alice", "bob"]).await).unwrap();
    let group = create_group(&app, &alice, &[&bob]).await;
    // Both leave at once: exactly one may go.
    let (alice_leaves, bob_leaves) = (
        format!("/conversations/{group}/participants/{}/remove", alice.id),
        format!("/conversations/{group}/participants/{}/remove", bob.id),
    );
    let (a, b) = tokio::join!(
        app.post(&alice_leaves, &alice.token, json!({})),
        app.post(&bob_leaves, &bob.token, json!({})),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    assert_eq!(app.count("conversation_participants").await, 1);
}
