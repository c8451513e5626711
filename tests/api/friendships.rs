use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestUser, assert_bad_get, assert_error, assert_invalid, assert_invalid_gets,
    assert_past_the_end, assert_unauthorized, body, field_where, numbers, spawn_app,
};

/// `POST /friendships/request` of `payload` as `from`.
async fn ask(app: &TestApp, from: &TestUser, payload: Value) -> reqwest::Response {
    app.post("/friendships/request", &from.token, payload).await
}

/// `DELETE /friendships/request/<to>` as `from`: withdraws a request.
async fn cancel(app: &TestApp, from: &TestUser, to: &TestUser) -> reqwest::Response {
    let path = format!("/friendships/request/{}", to.id);
    app.delete(&path, &from.token).await
}

async fn pair_rows(app: &TestApp, a: &TestUser, b: &TestUser) -> Vec<(String, Uuid)> {
    sqlx::query_as::<_, (String, Uuid)>(
        "select status, requester_id from friendships \
         where (requester_id = $1 and addressee_id = $2) or (requester_id = $2 and addressee_id = $1)",
    )
    .bind(a.id)
    .bind(b.id)
    .fetch_all(&app.db)
    .await
    .expect("pair rows")
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|x| x[key].as_str().expect("id").to_owned())
        .collect()
}

fn user_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|x| x["user"]["user_id"].as_str().expect("id").to_owned())
        .collect()
}

async fn relationship(app: &TestApp, viewer: &TestUser, other: &TestUser) -> Option<String> {
    let page = app
        .get_body(
            &format!("/friendships/search?search={}", other.name),
            &viewer.token,
        )
        .await;
    field_where(&page["data"], "user_id", other.id, "relationship")
}

#[tokio::test]
async fn friendship_routes_require_authentication() {
    assert_unauthorized(
        &[
            "GET /friendships",
            "POST /friendships/request",
            "DELETE /friendships/request/{id}",
            "GET /friendships/requests",
            "POST /friendships/accept/{id}",
            "POST /friendships/decline/{id}",
            "POST /friendships/block/{id}",
            "DELETE /friendships/unblock/{id}",
            "GET /friendships/blocked",
            "GET /friendships/search",
            "GET /friendships/suggestions",
            "DELETE /friendships/{id}",
        ],
        Some(json!({ "friendId": Uuid::new_v4() })),
    )
    .await;
}

#[tokio::test]
async fn a_request_is_pending_for_both_sides_until_the_addressee_accepts_it() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;

    // Act
    let resp = app.request_friendship(&alice, &bob).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let sent = body(resp).await;
    assert_eq!(sent["status"], "pending");
    assert_eq!(sent["direction"], "outgoing");
    assert_eq!(sent["requester_id"], alice.id.to_string());
    assert_eq!(sent["addressee_id"], bob.id.to_string());
    assert_eq!(sent["user"]["user_id"], bob.id.to_string());
    assert!(sent["user"].get("email").is_none() && sent["user"].get("password_hash").is_none());

    let incoming = app.get_body("/friendships/requests", &bob.token).await;
    assert_eq!(user_ids(&incoming), [alice.id.to_string()]);
    assert_eq!(incoming[0]["direction"], "incoming");
    let incoming_explicit = app
        .get_body("/friendships/requests?direction=incoming", &bob.token)
        .await;
    assert_eq!(incoming_explicit, incoming);
    let outgoing = app
        .get_body("/friendships/requests?direction=outgoing", &alice.token)
        .await;
    assert_eq!(user_ids(&outgoing), [bob.id.to_string()]);
    assert!(
        app.get_body("/friendships/requests?direction=outgoing", &bob.token)
            .await
            == json!([])
    );
    assert!(app.get_body("/friendships", &alice.token).await == json!([]));
    assert_eq!(
        relationship(&app, &alice, &bob).await.as_deref(),
        Some("pending_outgoing")
    );
    assert_eq!(
        relationship(&app, &bob, &alice).await.as_deref(),
        Some("pending_incoming")
    );

    // Act: bob accepts
    let resp = app.friendship("accept", &bob, alice.id).await;

    // Assert: symmetric friendship
    assert_eq!(resp.status(), StatusCode::OK);
    let accepted = body(resp).await;
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["direction"], "incoming");
    assert!(accepted["accepted_at"].is_string());
    assert_eq!(accepted["user"]["user_id"], alice.id.to_string());
    for (me, other) in [(&alice, &bob), (&bob, &alice)] {
        let friends = app.get_body("/friendships", &me.token).await;
        assert_eq!(user_ids(&friends), [other.id.to_string()]);
        assert_eq!(friends[0]["user"]["status"], "offline");
        assert!(
            friends[0]["user"].get("last_seen_at").is_some(),
            "{friends}"
        );
        assert_eq!(
            relationship(&app, me, other).await.as_deref(),
            Some("friends")
        );
    }
    assert!(app.get_body("/friendships/requests", &bob.token).await == json!([]));
    assert_eq!(
        pair_rows(&app, &alice, &bob).await,
        [("accepted".to_owned(), alice.id)]
    );
}

#[tokio::test]
async fn a_request_can_name_the_user_by_username() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;

    let resp = ask(&app, &alice, json!({ "username": bob.name.to_uppercase() })).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(body(resp).await["user"]["user_id"], bob.id.to_string());

    let unknown = json!({ "username": "nobody_by_that_name" });
    assert_error(ask(&app, &alice, unknown).await, StatusCode::NOT_FOUND).await;
    for own_or_blank in [json!(alice.name), json!("  ")] {
        let resp = ask(&app, &alice, json!({ "username": own_or_blank })).await;
        assert_invalid(resp, "username").await;
    }
}

#[tokio::test]
async fn invalid_requests_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;

    let invalid = [
        json!({ "friendId": alice.id }),
        json!({}),
        json!({ "friendId": "12345" }),
        json!({ "friendId": 7 }),
        json!({ "friendId": bob.id, "username": bob.name }),
    ];
    for payload in invalid {
        assert_invalid(ask(&app, &alice, payload).await, "friendId").await;
    }
    let unknown = json!({ "friendId": Uuid::new_v4() });
    assert_error(ask(&app, &alice, unknown).await, StatusCode::NOT_FOUND).await;
    // Not JSON at all.
    let resp = app
        .client
        .post(app.url("/friendships/request"))
        .bearer_auth(&alice.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(app.count("friendships").await, 0);

    // One pending request per pair; a repeat is a conflict, not a second row.
    assert_eq!(
        app.request_friendship(&alice, &bob).await.status(),
        StatusCode::CREATED
    );
    let conflict = async |from: &TestUser, to: &TestUser, says: &str| {
        let resp = app.request_friendship(from, to).await;
        let b = assert_error(resp, StatusCode::CONFLICT).await;
        assert!(b["message"].as_str().unwrap().contains(says), "{b}");
    };
    conflict(&alice, &bob, "already sent").await;
    app.friendship("accept", &bob, alice.id).await;
    conflict(&alice, &bob, "already friends").await;
    conflict(&bob, &alice, "").await;
    assert_eq!(app.count("friendships").await, 1);
}

#[tokio::test]
async fn a_request_while_the_other_side_is_pending_accepts_it() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;

    assert_eq!(
        app.request_friendship(&alice, &bob).await.status(),
        StatusCode::CREATED
    );
    let resp = app.request_friendship(&bob, &alice).await;

    assert_eq!(resp.status(), StatusCode::OK);
    let b = body(resp).await;
    assert_eq!(b["status"], "accepted");
    assert_eq!(b["requester_id"], alice.id.to_string());
    assert_eq!(
        pair_rows(&app, &alice, &bob).await,
        [("accepted".to_owned(), alice.id)]
    );
    // Alice hears that bob accepted; bob's request notification no longer asks for attention.
    let alices = app.get_body("/notifications", &alice.token).await;
    assert_eq!(
        alices[0]["metadata"]["sender_id"],
        bob.id.to_string(),
        "{alices}"
    );
    assert_eq!(alices[0]["metadata"]["action"], "accepted");
    let bobs = app.get_body("/notifications", &bob.token).await;
    assert_eq!(bobs[0]["metadata"]["action"], "request");
    assert_eq!(bobs[0]["is_read"], true);
}

#[tokio::test]
async fn concurrent_mutual_requests_end_in_one_accepted_friendship() {
    let app = spawn_app().await;
    let users = app.users(["u0", "u1", "u2", "u3"]).await;
    let pairs = [(0, 1), (2, 3), (0, 2), (1, 3)];
    let app = &app;
    for round in 0..5 {
        // Every pair asks both ways at the same instant, all pairs at once.
        let attempts = pairs.iter().map(|&(a, b)| {
            let (a, b) = (&users[a], &users[b]);
            async move {
                let (x, y) =
                    tokio::join!(app.request_friendship(a, b), app.request_friendship(b, a));
                let mut statuses = [x.status(), y.status()];
                statuses.sort();
                (a, b, statuses)
            }
        });
        for (a, b, statuses) in futures_util::future::join_all(attempts).await {
            assert_eq!(
                statuses,
                [StatusCode::OK, StatusCode::CREATED],
                "round {round}"
            );
            let rows = pair_rows(app, a, b).await;
            assert_eq!(rows.len(), 1, "round {round}: {rows:?}");
            assert_eq!(rows[0].0, "accepted", "round {round}");
            // Start the next round from strangers again.
            assert_eq!(
                app.delete(&format!("/friendships/{}", b.id), &a.token)
                    .await
                    .status(),
                StatusCode::NO_CONTENT
            );
        }
    }
    assert_eq!(app.count("friendships").await, 0);
}

#[tokio::test]
async fn accept_decline_and_cancel_act_only_on_a_pending_request_of_the_right_direction() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;

    // Accepting or declining a request of `of` as `by`, and `of` withdrawing one to `by`:
    // each a 404 where there is no such pending request.
    let nothing_pending = async |by: &TestUser, of: &TestUser| {
        for action in ["accept", "decline"] {
            let resp = app.friendship(action, by, of.id).await;
            assert_error(resp, StatusCode::NOT_FOUND).await;
        }
        let withdrawn = cancel(&app, of, by).await;
        assert_error(withdrawn, StatusCode::NOT_FOUND).await;
    };

    // Nothing to act on yet.
    nothing_pending(&bob, &alice).await;
    let unknown = app.friendship("accept", &bob, Uuid::new_v4()).await;
    assert_error(unknown, StatusCode::NOT_FOUND).await;

    // Malformed and self ids.
    for path in [
        "/friendships/accept/nope",
        "/friendships/decline/nope",
        "/friendships/block/nope",
    ] {
        assert_invalid(app.post_empty(path, &bob.token).await, "friendId").await;
    }
    for path in [
        "/friendships/request/nope",
        "/friendships/unblock/nope",
        "/friendships/nope",
    ] {
        assert_invalid(app.delete(path, &bob.token).await, "friendId").await;
    }
    assert_invalid(app.friendship("accept", &bob, bob.id).await, "friendId").await;
    assert_invalid(
        app.delete(&format!("/friendships/{}", bob.id), &bob.token)
            .await,
        "friendId",
    )
    .await;

    // The requester cannot accept or decline their own request, nor can the addressee
    // withdraw it.
    app.request_friendship(&alice, &bob).await;
    nothing_pending(&alice, &bob).await;

    // Decline removes it for both sides, and its notification with it.
    assert_eq!(
        app.get_body("/notifications", &bob.token)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let decline = app.friendship("decline", &bob, alice.id).await;
    assert_eq!(decline.status(), StatusCode::NO_CONTENT);
    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(
        app.get_body("/friendships/requests?direction=outgoing", &alice.token)
            .await
            == json!([])
    );
    assert!(app.get_body("/notifications", &bob.token).await == json!([]));

    // Cancel withdraws an outgoing request, and its notification with it.
    app.request_friendship(&alice, &bob).await;
    assert_eq!(
        app.get_body("/notifications/unread-count", &bob.token)
            .await["count"],
        1
    );
    let withdrawn = cancel(&app, &alice, &bob).await;
    assert_eq!(withdrawn.status(), StatusCode::NO_CONTENT);
    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(app.get_body("/friendships/requests", &bob.token).await == json!([]));
    assert!(app.get_body("/notifications", &bob.token).await == json!([]));

    // Accepting an accepted friendship is a conflict.
    app.request_friendship(&alice, &bob).await;
    assert_eq!(
        app.friendship("accept", &bob, alice.id).await.status(),
        StatusCode::OK
    );
    assert_error(
        app.friendship("accept", &bob, alice.id).await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn unfriending_ends_the_friendship_for_both_whoever_asked() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;

    // The addressee may end it too.
    let resp = app
        .delete(&format!("/friendships/{}", alice.id), &bob.token)
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(app.get_body("/friendships", &alice.token).await == json!([]));
    assert!(app.get_body("/friendships", &bob.token).await == json!([]));
    assert_error(
        app.delete(&format!("/friendships/{}", alice.id), &bob.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // A pending request is not a friendship: unfriend leaves it alone.
    app.request_friendship(&alice, &bob).await;
    assert_error(
        app.delete(&format!("/friendships/{}", alice.id), &bob.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(pair_rows(&app, &alice, &bob).await.len(), 1);
}

#[tokio::test]
async fn blocking_removes_the_friendship_and_stops_requests_both_ways() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.befriend(&alice, &bob).await;

    // Act
    let resp = app.friendship("block", &alice, bob.id).await;

    // Assert: 200 with the block, as the original answered.
    assert_eq!(resp.status(), StatusCode::OK);
    let blocked = body(resp).await;
    assert_eq!(blocked["user_id"], bob.id.to_string());
    assert!(blocked["blocked_at"].is_string());
    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(app.get_body("/friendships", &bob.token).await == json!([]));
    let b = assert_error(
        app.request_friendship(&bob, &alice).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        !b["message"].as_str().unwrap().contains("you have blocked"),
        "the blocked side is not told who: {b}"
    );
    let b = assert_error(
        app.request_friendship(&alice, &bob).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(b["message"].as_str().unwrap().contains("unblock"), "{b}");
    let by_name = app
        .post(
            "/friendships/request",
            &bob.token,
            json!({ "username": alice.name }),
        )
        .await;
    assert_error(by_name, StatusCode::FORBIDDEN).await;
    assert!(pair_rows(&app, &alice, &bob).await.is_empty());

    // Blocking again is harmless.
    let again = app.friendship("block", &alice, bob.id).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(app.count("user_blocks").await, 1);
    let list = app.get_body("/friendships/blocked", &alice.token).await;
    assert_eq!(ids(&list, "user_id"), [bob.id.to_string()]);
    assert!(app.get_body("/friendships/blocked", &bob.token).await == json!([]));

    // Neither finds the other in search; the blocker may ask to see whom they blocked.
    assert_eq!(relationship(&app, &alice, &bob).await, None);
    assert_eq!(relationship(&app, &bob, &alice).await, None);
    let page = app
        .get_body(
            &format!(
                "/friendships/search?search={}&include_blocked=true",
                bob.name
            ),
            &alice.token,
        )
        .await;
    assert_eq!(page["data"][0]["relationship"], "blocked", "{page}");
    assert_eq!(page["meta"]["total"], 1);

    // Bad targets.
    let unknown = app.friendship("block", &alice, Uuid::new_v4()).await;
    assert_error(unknown, StatusCode::NOT_FOUND).await;
    let own = app.friendship("block", &alice, alice.id).await;
    assert_invalid(own, "friendId").await;

    // Only the blocker can lift it; then requests work again, the old friendship is not back.
    let resp = app
        .delete(&format!("/friendships/unblock/{}", alice.id), &bob.token)
        .await;
    assert_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app
        .delete(&format!("/friendships/unblock/{}", bob.id), &alice.token)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let unblocked = body(resp).await;
    assert_eq!(unblocked["user_id"], bob.id.to_string());
    assert!(unblocked["message"].is_string(), "{unblocked}");
    assert_error(
        app.delete(&format!("/friendships/unblock/{}", bob.id), &alice.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(app.get_body("/friendships", &alice.token).await == json!([]));
    assert_eq!(
        app.request_friendship(&bob, &alice).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn blocking_a_requester_withdraws_their_pending_request_and_its_notification() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    app.request_friendship(&bob, &alice).await;
    assert_eq!(
        app.get_body("/notifications/unread-count", &alice.token)
            .await["count"],
        1
    );

    app.friendship("block", &alice, bob.id).await;

    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(app.get_body("/friendships/requests", &alice.token).await == json!([]));
    assert!(app.get_body("/notifications", &alice.token).await == json!([]));
    assert_eq!(
        app.get_body("/notifications/unread-count", &alice.token)
            .await["count"],
        0
    );
}

#[tokio::test]
async fn suggestions_are_friends_of_friends_ranked_by_mutual_friends() {
    // Arrange: me with friends f1..f3; candidates with 3, 2 and 1 mutual friends; people
    // who must not be suggested although they are friends of my friends.
    let app = spawn_app().await;
    let (_, users) = app
        .tagged([
            "me",
            "f1",
            "f2",
            "f3",
            "three",
            "two",
            "one",
            "pending",
            "iblocked",
            "blockedme",
            "stranger",
        ])
        .await;
    let [
        me,
        f1,
        f2,
        f3,
        three,
        two,
        one,
        pending,
        iblocked,
        blockedme,
        stranger,
    ] = &users;
    for f in [f1, f2, f3] {
        app.befriend(me, f).await;
        app.befriend(f, three).await;
    }
    app.befriend(two, f1).await;
    app.befriend(f2, two).await;
    app.befriend(f1, one).await;
    app.befriend(f1, f2).await; // already my friend: not a suggestion
    for x in [pending, iblocked, blockedme] {
        app.befriend(f1, x).await;
        app.befriend(f2, x).await;
        app.befriend(f3, x).await;
    }
    app.request_friendship(pending, me).await;
    app.friendship("block", me, iblocked.id).await;
    app.friendship("block", blockedme, me.id).await;

    // Act
    let list = app.get_body("/friendships/suggestions", &me.token).await;

    // Assert
    assert_eq!(
        ids(&list, "user_id"),
        [three.id.to_string(), two.id.to_string(), one.id.to_string()],
        "{list}"
    );
    assert_eq!(numbers(&list, "mutual_friends"), [3, 2, 1]);
    let first = app
        .get_body("/friendships/suggestions?limit=1&offset=1", &me.token)
        .await;
    assert_eq!(ids(&first, "user_id"), [two.id.to_string()]);
    // Somebody without friends gets no suggestions.
    assert!(
        app.get_body("/friendships/suggestions", &stranger.token)
            .await
            == json!([])
    );
    assert_invalid_gets(
        &app,
        &me.token,
        &[
            "/friendships/suggestions?limit=0",
            "/friendships/suggestions?offset=-1",
        ],
    )
    .await;
}

#[tokio::test]
async fn search_pages_users_with_their_relationship_to_the_caller() {
    let app = spawn_app().await;
    let (tag, [me, friend, asked_me, i_asked, nobody]) = app
        .tagged(["me", "p1_friend", "p2_asked_me", "p3_i_asked", "p4_nobody"])
        .await;
    let tag = &tag;
    app.befriend(&me, &friend).await;
    app.request_friendship(&asked_me, &me).await;
    app.request_friendship(&me, &i_asked).await;

    let page = app
        .get_body("/friendships/search?search=p&limit=100", &me.token)
        .await;
    let rels: Vec<(String, String)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["username"].as_str().unwrap().ends_with(tag))
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().to_owned(),
                u["relationship"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rels,
        [
            (friend.id.to_string(), "friends".to_owned()),
            (asked_me.id.to_string(), "pending_incoming".to_owned()),
            (i_asked.id.to_string(), "pending_outgoing".to_owned()),
            (nobody.id.to_string(), "none".to_owned()),
        ]
    );
    let paged = app
        .get_body(
            &format!("/friendships/search?search=_{tag}&page=2&limit=3"),
            &me.token,
        )
        .await;
    assert_eq!(
        paged["meta"],
        json!({ "total": 4, "page": 2, "limit": 3, "totalPages": 2 }),
        "the caller is left out"
    );
    assert_eq!(paged["data"].as_array().unwrap().len(), 1);
    assert_past_the_end(
        &app,
        &me.token,
        &format!("/friendships/search?search=_{tag}&page=9&limit=3"),
        4,
    )
    .await;
    assert_invalid_gets(
        &app,
        &me.token,
        &[
            "/friendships/search?page=0",
            "/friendships/search?limit=101",
        ],
    )
    .await;
    assert_bad_get(&app, &me.token, "/friendships/search?include_blocked=maybe").await;
}

#[tokio::test]
async fn friends_list_shows_presence_online_first_and_pages() {
    let app = spawn_app().await;
    let (tag, [me, a, b, c]) = app.tagged(["me", "a", "b", "c"]).await;
    let tag = &tag;
    for f in [&a, &b, &c] {
        app.befriend(f, &me).await;
    }
    sqlx::query("update users set status = 'online', last_seen_at = now() where user_id = $1")
        .bind(c.id)
        .execute(&app.db)
        .await
        .unwrap();

    let list = app.get_body("/friendships", &me.token).await;
    assert_eq!(user_ids(&list), [c.id, a.id, b.id].map(|i| i.to_string()));
    assert_eq!(list[0]["user"]["status"], "online");
    assert!(list[0]["user"]["last_seen_at"].is_string());
    assert_eq!(list[1]["user"]["status"], "offline");
    assert_eq!(list[0]["status"], "accepted");

    let page = app
        .get_body("/friendships?limit=1&offset=1", &me.token)
        .await;
    assert_eq!(user_ids(&page), [a.id.to_string()]);
    let found = app
        .get_body(&format!("/friendships?search=B_{tag}"), &me.token)
        .await;
    assert_eq!(user_ids(&found), [b.id.to_string()]);
    assert_invalid_gets(
        &app,
        &me.token,
        &[
            "/friendships?limit=0",
            "/friendships?offset=-1",
            "/friendships/requests?direction=sideways",
            "/friendships/requests?limit=500",
            "/friendships/blocked?offset=-5",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_block_is_seen_from_both_sides_and_ends_only_that_friendship() {
    // Arrange
    let app = spawn_app().await;
    let [alice, bob, carol] = app.users(["alice", "bob", "carol"]).await;
    app.befriend(&alice, &bob).await;
    app.befriend(&carol, &alice).await;
    assert!(
        !chatty::social::is_blocked_between(&app.db, alice.id, bob.id)
            .await
            .unwrap()
    );

    // Act
    app.friendship("block", &bob, alice.id).await;

    // Assert
    for (a, b) in [(alice.id, bob.id), (bob.id, alice.id)] {
        assert!(
            chatty::social::is_blocked_between(&app.db, a, b)
                .await
                .unwrap()
        );
    }
    assert!(
        !chatty::social::is_blocked_between(&app.db, alice.id, carol.id)
            .await
            .unwrap()
    );
    let friends = app.get_body("/friendships", &alice.token).await;
    let ids: Vec<&str> = friends
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["user"]["user_id"].as_str())
        .collect();
    assert_eq!(ids, [carol.id.to_string()]);
}
