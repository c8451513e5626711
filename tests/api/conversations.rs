use std::{sync::Arc, time::Duration};

use chatty::bus::{BusMessage, Emit, Namespace, room};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestUser, assert_error, assert_invalid, assert_invalid_gets, assert_refused,
    assert_unauthorized, body, created_and_ids, field_where, message_path, numbers, spawn_app,
};

// ---- helpers shared with messages.rs ----

/// `POST /conversations` of `payload` as `from`.
async fn post_conversation(app: &TestApp, from: &TestUser, payload: Value) -> reqwest::Response {
    app.post("/conversations", &from.token, payload).await
}

/// Asserts how many conversations and participant rows are stored.
async fn assert_stored(app: &TestApp, conversations: i64, participants: i64) {
    assert_eq!(app.count("conversations").await, conversations);
    assert_eq!(app.count("conversation_participants").await, participants);
}

/// The conversation ids of a list, in its order.
fn conversation_ids(list: &Value) -> Vec<Uuid> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|c| id_of(c, "conversation_id"))
        .collect()
}

pub async fn create_direct(app: &TestApp, a: &TestUser, b: &TestUser) -> Uuid {
    let resp = post_conversation(app, a, json!({ "participant_ids": [b.id] })).await;
    assert!(
        resp.status().is_success(),
        "create direct: {}",
        resp.status()
    );
    id_of(&body(resp).await, "conversation_id")
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
    field_where(&conv["participants"], "user_id", user.id, "role").unwrap_or_default()
}

// ---- tests ----

#[tokio::test]
async fn every_conversation_route_requires_authentication() {
    assert_unauthorized(
        &[
            "GET /conversations",
            "POST /conversations",
            "GET /conversations/{id}",
            "POST /conversations/{id}/participants",
            "POST /conversations/{id}/participants/{id}/remove",
        ],
        Some(json!({})),
    )
    .await;
}

#[tokio::test]
async fn a_direct_chat_is_created_once_and_returned_to_either_user_afterwards() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let mut bus = app.hear(&[alice.id, bob.id]).await;

    // Act
    let first = post_conversation(
        &app,
        &alice,
        json!({ "participant_ids": [bob.id, alice.id] }),
    )
    .await;
    let again = post_conversation(&app, &alice, json!({ "participant_ids": [bob.id] })).await;
    let reverse = post_conversation(
        &app,
        &bob,
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
    assert_stored(&app, 1, 2).await;
    let (emit, data) = next_emit(&mut bus, "conversationCreated").await;
    assert_eq!(emit.ns, Namespace::Chat);
    assert_eq!(rooms_of(&emit), user_rooms(&[&alice, &bob]));
    assert_eq!(data["conversation_id"], first["conversation_id"]);
}

#[tokio::test]
async fn concurrent_requests_for_the_same_direct_chat_create_one_conversation() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;

    // Act: both users, ten requests at once.
    let requests = (0..10).map(|i| {
        let (me, other) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        post_conversation(&app, me, json!({ "participant_ids": [other.id] }))
    });
    let responses = join_all(requests).await;

    // Assert
    let (created, mut ids) = created_and_ids(responses, "conversation_id").await;
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_stored(&app, 1, 2).await;
}

#[tokio::test]
async fn invalid_conversation_requests_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
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
    assert_stored(&app, 0, 0).await;
}

#[tokio::test]
async fn a_group_makes_its_creator_owner_and_collapses_repeated_members() {
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let resp = post_conversation(&app, &alice, json!({ "name": "  Weekend plans ", "is_group": true, "participant_ids": [bob.id, carol.id, bob.id] }))
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
    app.group(&alice, &[&bob, &carol]).await;
    assert_eq!(app.count("conversations").await, 2);
}

#[tokio::test]
async fn the_list_is_ordered_by_activity_with_latest_message_and_unread_count() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    let with_bob = create_direct(&app, &alice, &bob).await;
    let with_carol = create_direct(&app, &alice, &carol).await;
    let group = app.group(&alice, &[&bob, &carol]).await;
    app.send(&bob, with_bob, "one").await;
    app.send(&bob, with_bob, "two").await;
    app.send(&alice, with_bob, "mine").await;
    let deleted = app.send(&bob, with_bob, "oops").await;
    let resp = app.delete(&message_path(&deleted), &bob.token).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Act
    let list = app.get_body("/conversations", &alice.token).await;

    // Assert: with_bob has the newest message; the others fall back to creation time.
    let order = conversation_ids(&list);
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
    let bobs = app.get_body("/conversations", &bob.token).await;
    assert_eq!(bobs.as_array().unwrap().len(), 2);
    assert_eq!(bobs[0]["unread_count"], 1);

    // Reading moves the count; activity in another conversation moves it to the top.
    let resp = app.mark(&bob, &first["last_message"], "read").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let bobs = app.get_body("/conversations", &bob.token).await;
    assert_eq!(bobs[0]["unread_count"], 0);
    app.send(&carol, with_carol, "hi").await;
    let list = app.get_body("/conversations", &alice.token).await;
    assert_eq!(id_of(&list[0], "conversation_id"), with_carol);
    assert_eq!(list[0]["unread_count"], 1);

    // Paging.
    let page = app
        .get_body("/conversations?limit=2&offset=1", &alice.token)
        .await;
    let order = conversation_ids(&page);
    assert_eq!(order, vec![with_bob, group]);
    assert_invalid_gets(
        &app,
        &alice.token,
        &[
            "/conversations?limit=0",
            "/conversations?limit=101",
            "/conversations?limit=ten",
            "/conversations?offset=-1",
        ],
    )
    .await;
}

#[tokio::test]
async fn details_carry_the_newest_messages_and_are_hidden_from_non_participants() {
    let app = spawn_app().await;
    let [alice, bob, eve] = app.users(["alice", "bob", "eve"]).await;
    let conv = create_direct(&app, &alice, &bob).await;
    for i in 1..=55 {
        app.send(
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
    assert_eq!(
        numbers(&details["messages"], "seq"),
        (6..=55).collect::<Vec<_>>()
    );
    assert_eq!(details["last_seq"], 55);
    assert_eq!(details["unread_count"], 28);
    assert_eq!(participant_ids(&details), sorted(vec![alice.id, bob.id]));

    let (others, unknown) = (
        format!("/conversations/{conv}"),
        format!("/conversations/{}", Uuid::new_v4()),
    );
    let refused = [
        (Method::GET, others.as_str(), None, StatusCode::NOT_FOUND),
        (Method::GET, unknown.as_str(), None, StatusCode::NOT_FOUND),
        (
            Method::GET,
            "/conversations/nope",
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    assert_refused(&app, &eve.token, &refused).await;
    let listed = app.get_body("/conversations", &eve.token).await;
    assert!(listed.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn adding_participants_works_for_groups_only_and_new_members_start_caught_up() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol, dave, eve] = app.users(["alice", "bob", "carol", "dave", "eve"]).await;
    let group = app.group(&alice, &[&bob]).await;
    let direct = create_direct(&app, &alice, &bob).await;
    let old = app.send(&alice, group, "before you joined").await;
    let resp = app.mark(&bob, &old, "read").await;
    assert_eq!(body(resp).await["status"], "read");
    let mut bus = app
        .hear(&[alice.id, bob.id, carol.id, dave.id, eve.id])
        .await;

    // Act: a member (not the owner) adds carol, bob again, and carol twice.
    let resp = app
        .add_participants(&bob, group, &[carol.id, bob.id, carol.id])
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
    let carols = app.get_body("/conversations", &carol.token).await;
    assert_eq!(carols[0]["unread_count"], 0);
    assert_eq!(carols[0]["last_message"]["status"], "read");

    // Adding only existing members changes nothing and publishes nothing.
    let resp = app.add_participants(&alice, group, &[bob.id]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(app.count("conversation_participants").await, 5);
    app.add_participants(&alice, group, &[dave.id]).await;
    let (_, data) = next_emit(&mut bus, "participantsAdded").await;
    assert_eq!(
        data["userIds"],
        json!([dave.id]),
        "the no-op published an event"
    );

    // Refusals.
    let path = format!("/conversations/{group}/participants");
    let strangers = [(
        Method::POST,
        path.as_str(),
        Some(json!({ "userIds": [eve.id] })),
        StatusCode::NOT_FOUND,
    )];
    assert_refused(&app, &eve.token, &strangers).await;
    let unknown = Uuid::new_v4();
    let b = assert_invalid(
        app.post(&path, &alice.token, json!({ "userIds": [unknown] }))
            .await,
        "userIds",
    )
    .await;
    assert!(b.to_string().contains(&unknown.to_string()));
    for ids in [json!([]), json!(["x"])] {
        let resp = app
            .post(&path, &alice.token, json!({ "userIds": ids }))
            .await;
        assert_invalid(resp, "userIds").await;
    }
    let (to_direct, missing) = (
        format!("/conversations/{direct}/participants"),
        format!("/conversations/{}/participants", Uuid::new_v4()),
    );
    let carol_in = Some(json!({ "userIds": [carol.id] }));
    let refused = [
        (
            Method::POST,
            to_direct.as_str(),
            carol_in.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            missing.as_str(),
            carol_in,
            StatusCode::NOT_FOUND,
        ),
    ];
    assert_refused(&app, &alice.token, &refused).await;
    assert_eq!(app.count("conversation_participants").await, 6);
}

#[tokio::test]
async fn removing_participants_follows_roles_and_removed_users_lose_access_at_once() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol, eve] = app.users(["alice", "bob", "carol", "eve"]).await;
    let group = app.group(&alice, &[&bob, &carol]).await;
    let direct = create_direct(&app, &alice, &bob).await;
    let msg = app.send(&carol, group, "hello").await;
    let remove = |who: &TestUser| format!("/conversations/{group}/participants/{}/remove", who.id);
    let mut bus = app.hear(&[alice.id, bob.id, carol.id, eve.id]).await;

    // A member cannot remove others; strangers do not see the group.
    let from_direct = format!("/conversations/{direct}/participants/{}/remove", bob.id);
    for (path, who, status) in [
        (remove(&carol), &bob, StatusCode::FORBIDDEN),
        (remove(&carol), &eve, StatusCode::NOT_FOUND),
        (remove(&eve), &alice, StatusCode::NOT_FOUND),
        (from_direct, &alice, StatusCode::BAD_REQUEST),
    ] {
        assert_error(app.post_empty(&path, &who.token).await, status).await;
    }

    // Act: the owner removes carol.
    let resp = app.post_empty(&remove(&carol), &alice.token).await;

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
    let (details, history, message, receipts) = (
        format!("/conversations/{group}"),
        format!("/messages/conversation/{group}"),
        format!("/messages/{msg_id}"),
        format!("/messages/{msg_id}/receipts"),
    );
    let send = json!({ "content": "still here?", "conversation_id": group });
    let gone = StatusCode::NOT_FOUND;
    let refused = [
        (Method::GET, details.as_str(), None, gone),
        (Method::GET, history.as_str(), None, gone),
        (Method::POST, "/messages", Some(send), gone),
        (
            Method::PUT,
            message.as_str(),
            Some(json!({ "content": "x" })),
            gone,
        ),
        (Method::DELETE, message.as_str(), None, gone),
        (Method::GET, receipts.as_str(), None, gone),
    ];
    assert_refused(&app, &carol.token, &refused).await;
    assert!(
        app.get_body("/conversations", &carol.token)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Removed members cannot change membership either.
    let resp = app.post_empty(&remove(&bob), &carol.token).await;
    assert_error(resp, StatusCode::NOT_FOUND).await;

    // The owner leaves: ownership passes on; the last participant cannot leave.
    let resp = app.post_empty(&remove(&alice), &alice.token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let conv = body(resp).await;
    assert_eq!(participant_ids(&conv), vec![bob.id]);
    assert_eq!(role_of(&conv, &bob), "owner");
    let resp = app.post_empty(&remove(&bob), &bob.token).await;
    assert_error(resp, StatusCode::BAD_REQUEST).await;
    let conv = app
        .get_body(&format!("/conversations/{group}"), &bob.token)
        .await;
    assert_eq!(conv["participants"][0]["role"], "owner");
}

#[tokio::test]
async fn concurrent_removals_never_empty_a_group() {
    let app = spawn_app().await;
    let (alice, bob, group) = app.alice_and_bob_in_a_group().await;
    // Both leave at once: exactly one may go.
    let (alice_leaves, bob_leaves) = (
        format!("/conversations/{group}/participants/{}/remove", alice.id),
        format!("/conversations/{group}/participants/{}/remove", bob.id),
    );
    let (a, b) = tokio::join!(
        app.post_empty(&alice_leaves, &alice.token),
        app.post_empty(&bob_leaves, &bob.token),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    assert_eq!(app.count("conversation_participants").await, 1);
}
