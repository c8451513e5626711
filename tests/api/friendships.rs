use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, assert_error, assert_invalid, body, name, spawn_app};

/// Makes `a` and `b` friends directly in the database (for tests about what friendships do,
/// not how they are made).
pub async fn befriend(app: &TestApp, a: &TestUser, b: &TestUser) {
    sqlx::query(
        "insert into friendships (requester_id, addressee_id, status, accepted_at) values ($1, $2, 'accepted', now())",
    )
    .bind(a.id)
    .bind(b.id)
    .execute(&app.db)
    .await
    .expect("befriend");
}

async fn request(app: &TestApp, from: &TestUser, to: &TestUser) -> reqwest::Response {
    app.post(
        "/friendships/request",
        &from.token,
        json!({ "friendId": to.id }),
    )
    .await
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
    let page = body(
        app.get(
            &format!("/friendships/search?search={}", other.name),
            &viewer.token,
        )
        .await,
    )
    .await;
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|u| u["user_id"] == other.id.to_string())
        .map(|u| u["relationship"].as_str().expect("relationship").to_owned())
}

#[tokio::test]
async fn friendship_routes_require_authentication() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let routes = [
        (Method::GET, "/friendships".to_owned()),
        (Method::POST, "/friendships/request".to_owned()),
        (Method::DELETE, format!("/friendships/request/{id}")),
        (Method::GET, "/friendships/requests".to_owned()),
        (Method::POST, format!("/friendships/accept/{id}")),
        (Method::POST, format!("/friendships/decline/{id}")),
        (Method::POST, format!("/friendships/block/{id}")),
        (Method::DELETE, format!("/friendships/unblock/{id}")),
        (Method::GET, "/friendships/blocked".to_owned()),
        (Method::GET, "/friendships/search".to_owned()),
        (Method::GET, "/friendships/suggestions".to_owned()),
        (Method::DELETE, format!("/friendships/{id}")),
    ];
    for (method, path) in routes {
        let resp = app
            .request(method.clone(), &path, None, Some(json!({ "friendId": id })))
            .await;
        assert_error(resp, StatusCode::UNAUTHORIZED).await;
        let resp = app.request(method, &path, Some("not-a-token"), None).await;
        assert_error(resp, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn a_request_is_pending_for_both_sides_until_the_addressee_accepts_it() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;

    // Act
    let resp = request(&app, &alice, &bob).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let sent = body(resp).await;
    assert_eq!(sent["status"], "pending");
    assert_eq!(sent["direction"], "outgoing");
    assert_eq!(sent["requester_id"], alice.id.to_string());
    assert_eq!(sent["addressee_id"], bob.id.to_string());
    assert_eq!(sent["user"]["user_id"], bob.id.to_string());
    assert!(sent["user"].get("email").is_none() && sent["user"].get("password_hash").is_none());

    let incoming = body(app.get("/friendships/requests", &bob.token).await).await;
    assert_eq!(user_ids(&incoming), [alice.id.to_string()]);
    assert_eq!(incoming[0]["direction"], "incoming");
    let incoming_explicit = body(
        app.get("/friendships/requests?direction=incoming", &bob.token)
            .await,
    )
    .await;
    assert_eq!(incoming_explicit, incoming);
    let outgoing = body(
        app.get("/friendships/requests?direction=outgoing", &alice.token)
            .await,
    )
    .await;
    assert_eq!(user_ids(&outgoing), [bob.id.to_string()]);
    assert!(
        body(
            app.get("/friendships/requests?direction=outgoing", &bob.token)
                .await
        )
        .await
            == json!([])
    );
    assert!(body(app.get("/friendships", &alice.token).await).await == json!([]));
    assert_eq!(
        relationship(&app, &alice, &bob).await.as_deref(),
        Some("pending_outgoing")
    );
    assert_eq!(
        relationship(&app, &bob, &alice).await.as_deref(),
        Some("pending_incoming")
    );

    // Act: bob accepts
    let resp = app
        .post(
            &format!("/friendships/accept/{}", alice.id),
            &bob.token,
            json!({}),
        )
        .await;

    // Assert: symmetric friendship
    assert_eq!(resp.status(), StatusCode::OK);
    let accepted = body(resp).await;
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["direction"], "incoming");
    assert!(accepted["accepted_at"].is_string());
    assert_eq!(accepted["user"]["user_id"], alice.id.to_string());
    for (me, other) in [(&alice, &bob), (&bob, &alice)] {
        let friends = body(app.get("/friendships", &me.token).await).await;
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
    assert!(body(app.get("/friendships/requests", &bob.token).await).await == json!([]));
    assert_eq!(
        pair_rows(&app, &alice, &bob).await,
        [("accepted".to_owned(), alice.id)]
    );
}

#[tokio::test]
async fn a_request_can_name_the_user_by_username() {
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;

    let resp = app
        .post(
            "/friendships/request",
            &alice.token,
            json!({ "username": bob.name.to_uppercase() }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(body(resp).await["user"]["user_id"], bob.id.to_string());

    let resp = app
        .post(
            "/friendships/request",
            &alice.token,
            json!({ "username": "nobody_by_that_name" }),
        )
        .await;
    assert_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app
        .post(
            "/friendships/request",
            &alice.token,
            json!({ "username": alice.name }),
        )
        .await;
    assert_invalid(resp, "username").await;
    let resp = app
        .post(
            "/friendships/request",
            &alice.token,
            json!({ "username": "  " }),
        )
        .await;
    assert_invalid(resp, "username").await;
}

#[tokio::test]
async fn invalid_requests_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;

    assert_invalid(request(&app, &alice, &alice).await, "friendId").await;
    assert_invalid(
        app.post("/friendships/request", &alice.token, json!({}))
            .await,
        "friendId",
    )
    .await;
    assert_invalid(
        app.post(
            "/friendships/request",
            &alice.token,
            json!({ "friendId": "12345" }),
        )
        .await,
        "friendId",
    )
    .await;
    assert_invalid(
        app.post(
            "/friendships/request",
            &alice.token,
            json!({ "friendId": 7 }),
        )
        .await,
        "friendId",
    )
    .await;
    let both = json!({ "friendId": bob.id, "username": bob.name });
    assert_invalid(
        app.post("/friendships/request", &alice.token, both).await,
        "friendId",
    )
    .await;
    let unknown = json!({ "friendId": Uuid::new_v4() });
    assert_error(
        app.post("/friendships/request", &alice.token, unknown)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
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
        request(&app, &alice, &bob).await.status(),
        StatusCode::CREATED
    );
    let b = assert_error(request(&app, &alice, &bob).await, StatusCode::CONFLICT).await;
    assert!(
        b["message"].as_str().unwrap().contains("already sent"),
        "{b}"
    );
    app.post(
        &format!("/friendships/accept/{}", alice.id),
        &bob.token,
        json!({}),
    )
    .await;
    let b = assert_error(request(&app, &alice, &bob).await, StatusCode::CONFLICT).await;
    assert!(
        b["message"].as_str().unwrap().contains("already friends"),
        "{b}"
    );
    assert_error(request(&app, &bob, &alice).await, StatusCode::CONFLICT).await;
    assert_eq!(app.count("friendships").await, 1);
}

#[tokio::test]
async fn a_request_while_the_other_side_is_pending_accepts_it() {
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;

    assert_eq!(
        request(&app, &alice, &bob).await.status(),
        StatusCode::CREATED
    );
    let resp = request(&app, &bob, &alice).await;

    assert_eq!(resp.status(), StatusCode::OK);
    let b = body(resp).await;
    assert_eq!(b["status"], "accepted");
    assert_eq!(b["requester_id"], alice.id.to_string());
    assert_eq!(
        pair_rows(&app, &alice, &bob).await,
        [("accepted".to_owned(), alice.id)]
    );
    // Alice hears that bob accepted; bob's request notification no longer asks for attention.
    let alices = body(app.get("/notifications", &alice.token).await).await;
    assert_eq!(
        alices[0]["metadata"]["sender_id"],
        bob.id.to_string(),
        "{alices}"
    );
    assert_eq!(alices[0]["metadata"]["action"], "accepted");
    let bobs = body(app.get("/notifications", &bob.token).await).await;
    assert_eq!(bobs[0]["metadata"]["action"], "request");
    assert_eq!(bobs[0]["is_read"], true);
}

#[tokio::test]
async fn concurrent_mutual_requests_end_in_one_accepted_friendship() {
    let app = spawn_app().await;
    let users = [
        app.register(&name("u0")).await,
        app.register(&name("u1")).await,
        app.register(&name("u2")).await,
        app.register(&name("u3")).await,
    ];
    let pairs = [(0, 1), (2, 3), (0, 2), (1, 3)];
    let app = &app;
    for round in 0..5 {
        // Every pair asks both ways at the same instant, all pairs at once.
        let attempts = pairs.iter().map(|&(a, b)| {
            let (a, b) = (&users[a], &users[b]);
            async move {
                let (x, y) = tokio::join!(request(app, a, b), request(app, b, a));
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
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;
    let accept = |who: &TestUser, of: &TestUser| {
        let (path, token) = (format!("/friendships/accept/{}", of.id), who.token.clone());
        let app = &app;
        async move { app.post(&path, &token, json!({})).await }
    };

    // Nothing to act on yet.
    assert_error(accept(&bob, &alice).await, StatusCode::NOT_FOUND).await;
    let decline = app
        .post(
            &format!("/friendships/decline/{}", alice.id),
            &bob.token,
            json!({}),
        )
        .await;
    assert_error(decline, StatusCode::NOT_FOUND).await;
    let cancel = app
        .delete(&format!("/friendships/request/{}", bob.id), &alice.token)
        .await;
    assert_error(cancel, StatusCode::NOT_FOUND).await;
    assert_error(
        accept(
            &bob,
            &TestUser {
                id: Uuid::new_v4(),
                ..alice.clone()
            },
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Malformed and self ids.
    for path in [
        "/friendships/accept/nope",
        "/friendships/decline/nope",
        "/friendships/block/nope",
    ] {
        assert_invalid(app.post(path, &bob.token, json!({})).await, "friendId").await;
    }
    for path in [
        "/friendships/request/nope",
        "/friendships/unblock/nope",
        "/friendships/nope",
    ] {
        assert_invalid(app.delete(path, &bob.token).await, "friendId").await;
    }
    assert_invalid(accept(&bob, &bob).await, "friendId").await;
    assert_invalid(
        app.delete(&format!("/friendships/{}", bob.id), &bob.token)
            .await,
        "friendId",
    )
    .await;

    // The requester cannot accept or decline their own request.
    request(&app, &alice, &bob).await;
    assert_error(accept(&alice, &bob).await, StatusCode::NOT_FOUND).await;
    let decline = app
        .post(
            &format!("/friendships/decline/{}", bob.id),
            &alice.token,
            json!({}),
        )
        .await;
    assert_error(decline, StatusCode::NOT_FOUND).await;
    // ... nor can the addressee cancel it.
    let cancel = app
        .delete(&format!("/friendships/request/{}", alice.id), &bob.token)
        .await;
    assert_error(cancel, StatusCode::NOT_FOUND).await;

    // Decline removes it for both sides, and its notification with it.
    assert_eq!(
        body(app.get("/notifications", &bob.token).await)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let decline = app
        .post(
            &format!("/friendships/decline/{}", alice.id),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(decline.status(), StatusCode::NO_CONTENT);
    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(
        body(
            app.get("/friendships/requests?direction=outgoing", &alice.token)
                .await
        )
        .await
            == json!([])
    );
    assert!(body(app.get("/notifications", &bob.token).await).await == json!([]));

    // Cancel withdraws an outgoing request, and its notification with it.
    request(&app, &alice, &bob).await;
    assert_eq!(
        body(app.get("/notifications/unread-count", &bob.token).await).await["count"],
        1
    );
    let cancel = app
        .delete(&format!("/friendships/request/{}", bob.id), &alice.token)
        .await;
    assert_eq!(cancel.status(), StatusCode::NO_CONTENT);
    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(body(app.get("/friendships/requests", &bob.token).await).await == json!([]));
    assert!(body(app.get("/notifications", &bob.token).await).await == json!([]));

    // Accepting an accepted friendship is a conflict.
    request(&app, &alice, &bob).await;
    assert_eq!(accept(&bob, &alice).await.status(), StatusCode::OK);
    assert_error(accept(&bob, &alice).await, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn unfriending_ends_the_friendship_for_both_whoever_asked() {
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;
    befriend(&app, &alice, &bob).await;

    // The addressee may end it too.
    let resp = app
        .delete(&format!("/friendships/{}", alice.id), &bob.token)
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(body(app.get("/friendships", &alice.token).await).await == json!([]));
    assert!(body(app.get("/friendships", &bob.token).await).await == json!([]));
    assert_error(
        app.delete(&format!("/friendships/{}", alice.id), &bob.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // A pending request is not a friendship: unfriend leaves it alone.
    request(&app, &alice, &bob).await;
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
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;
    befriend(&app, &alice, &bob).await;

    // Act
    let resp = app
        .post(
            &format!("/friendships/block/{}", bob.id),
            &alice.token,
            json!({}),
        )
        .await;

    // Assert: 200 with the block, as the original answered.
    assert_eq!(resp.status(), StatusCode::OK);
    let blocked = body(resp).await;
    assert_eq!(blocked["user_id"], bob.id.to_string());
    assert!(blocked["blocked_at"].is_string());
    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(body(app.get("/friendships", &bob.token).await).await == json!([]));
    let b = assert_error(request(&app, &bob, &alice).await, StatusCode::FORBIDDEN).await;
    assert!(
        !b["message"].as_str().unwrap().contains("you have blocked"),
        "the blocked side is not told who: {b}"
    );
    let b = assert_error(request(&app, &alice, &bob).await, StatusCode::FORBIDDEN).await;
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
    let again = app
        .post(
            &format!("/friendships/block/{}", bob.id),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(app.count("user_blocks").await, 1);
    let list = body(app.get("/friendships/blocked", &alice.token).await).await;
    assert_eq!(ids(&list, "user_id"), [bob.id.to_string()]);
    assert!(body(app.get("/friendships/blocked", &bob.token).await).await == json!([]));

    // Neither finds the other in search; the blocker may ask to see whom they blocked.
    assert_eq!(relationship(&app, &alice, &bob).await, None);
    assert_eq!(relationship(&app, &bob, &alice).await, None);
    let page = body(
        app.get(
            &format!(
                "/friendships/search?search={}&include_blocked=true",
                bob.name
            ),
            &alice.token,
        )
        .await,
    )
    .await;
    assert_eq!(page["data"][0]["relationship"], "blocked", "{page}");
    assert_eq!(page["meta"]["total"], 1);

    // Bad targets.
    let unknown = app
        .post(
            &format!("/friendships/block/{}", Uuid::new_v4()),
            &alice.token,
            json!({}),
        )
        .await;
    assert_error(unknown, StatusCode::NOT_FOUND).await;
    let own = app
        .post(
            &format!("/friendships/block/{}", alice.id),
            &alice.token,
            json!({}),
        )
        .await;
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
    assert!(body(app.get("/friendships", &alice.token).await).await == json!([]));
    assert_eq!(
        request(&app, &bob, &alice).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn blocking_a_requester_withdraws_their_pending_request_and_its_notification() {
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;
    request(&app, &bob, &alice).await;
    assert_eq!(
        body(app.get("/notifications/unread-count", &alice.token).await).await["count"],
        1
    );

    app.post(
        &format!("/friendships/block/{}", bob.id),
        &alice.token,
        json!({}),
    )
    .await;

    assert!(pair_rows(&app, &alice, &bob).await.is_empty());
    assert!(body(app.get("/friendships/requests", &alice.token).await).await == json!([]));
    assert!(body(app.get("/notifications", &alice.token).await).await == json!([]));
    assert_eq!(
        body(app.get("/notifications/unread-count", &alice.token).await).await["count"],
        0
    );
}

#[tokio::test]
async fn suggestions_are_friends_of_friends_ranked_by_mutual_friends() {
    // Arrange: me with friends f1..f3; candidates with 3, 2 and 1 mutual friends; people
    // who must not be suggested although they are friends of my friends.
    let app = spawn_app().await;
    let tag = &Uuid::new_v4().simple().to_string()[..6];
    let mut u = Vec::new();
    for n in [
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
    ] {
        u.push(app.register(&format!("{n}_{tag}")).await);
    }
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
    ] = &u[..]
    else {
        unreachable!()
    };
    for f in [f1, f2, f3] {
        befriend(&app, me, f).await;
        befriend(&app, f, three).await;
    }
    befriend(&app, two, f1).await;
    befriend(&app, f2, two).await;
    befriend(&app, f1, one).await;
    befriend(&app, f1, f2).await; // already my friend: not a suggestion
    for x in [pending, iblocked, blockedme] {
        befriend(&app, f1, x).await;
        befriend(&app, f2, x).await;
        befriend(&app, f3, x).await;
    }
    request(&app, pending, me).await;
    app.post(
        &format!("/friendships/block/{}", iblocked.id),
        &me.token,
        json!({}),
    )
    .await;
    app.post(
        &format!("/friendships/block/{}", me.id),
        &blockedme.token,
        json!({}),
    )
    .await;

    // Act
    let list = body(app.get("/friendships/suggestions", &me.token).await).await;

    // Assert
    assert_eq!(
        ids(&list, "user_id"),
        [three.id.to_string(), two.id.to_string(), one.id.to_string()],
        "{list}"
    );
    let counts: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mutual_friends"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [3, 2, 1]);
    let first = body(
        app.get("/friendships/suggestions?limit=1&offset=1", &me.token)
            .await,
    )
    .await;
    assert_eq!(ids(&first, "user_id"), [two.id.to_string()]);
    // Somebody without friends gets no suggestions.
    assert!(body(app.get("/friendships/suggestions", &stranger.token).await).await == json!([]));
    assert_invalid(
        app.get("/friendships/suggestions?limit=0", &me.token).await,
        "limit",
    )
    .await;
    assert_invalid(
        app.get("/friendships/suggestions?offset=-1", &me.token)
            .await,
        "offset",
    )
    .await;
}

#[tokio::test]
async fn search_pages_users_with_their_relationship_to_the_caller() {
    let app = spawn_app().await;
    let tag = &Uuid::new_v4().simple().to_string()[..6];
    let me = app.register(&format!("me_{tag}")).await;
    let friend = app.register(&format!("p1_friend_{tag}")).await;
    let asked_me = app.register(&format!("p2_asked_me_{tag}")).await;
    let i_asked = app.register(&format!("p3_i_asked_{tag}")).await;
    let nobody = app.register(&format!("p4_nobody_{tag}")).await;
    befriend(&app, &me, &friend).await;
    request(&app, &asked_me, &me).await;
    request(&app, &me, &i_asked).await;

    let page = body(
        app.get("/friendships/search?search=p&limit=100", &me.token)
            .await,
    )
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
    let paged = body(
        app.get(
            &format!("/friendships/search?search=_{tag}&page=2&limit=3"),
            &me.token,
        )
        .await,
    )
    .await;
    assert_eq!(
        paged["meta"],
        json!({ "total": 4, "page": 2, "limit": 3, "totalPages": 2 }),
        "the caller is left out"
    );
    assert_eq!(paged["data"].as_array().unwrap().len(), 1);
    let past = body(
        app.get(
            &format!("/friendships/search?search=_{tag}&page=9&limit=3"),
            &me.token,
        )
        .await,
    )
    .await;
    assert_eq!(past["meta"]["total"], 4);
    assert!(past["data"].as_array().unwrap().is_empty());
    assert_invalid(
        app.get("/friendships/search?page=0", &me.token).await,
        "page",
    )
    .await;
    assert_invalid(
        app.get("/friendships/search?limit=101", &me.token).await,
        "limit",
    )
    .await;
    assert_error(
        app.get("/friendships/search?include_blocked=maybe", &me.token)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn friends_list_shows_presence_online_first_and_pages() {
    let app = spawn_app().await;
    let tag = &Uuid::new_v4().simple().to_string()[..6];
    let me = app.register(&format!("me_{tag}")).await;
    let a = app.register(&format!("a_{tag}")).await;
    let b = app.register(&format!("b_{tag}")).await;
    let c = app.register(&format!("c_{tag}")).await;
    for f in [&a, &b, &c] {
        befriend(&app, f, &me).await;
    }
    sqlx::query("update users set status = 'online', last_seen_at = now() where user_id = $1")
        .bind(c.id)
        .execute(&app.db)
        .await
        .unwrap();

    let list = body(app.get("/friendships", &me.token).await).await;
    assert_eq!(user_ids(&list), [c.id, a.id, b.id].map(|i| i.to_string()));
    assert_eq!(list[0]["user"]["status"], "online");
    assert!(list[0]["user"]["last_seen_at"].is_string());
    assert_eq!(list[1]["user"]["status"], "offline");
    assert_eq!(list[0]["status"], "accepted");

    let page = body(app.get("/friendships?limit=1&offset=1", &me.token).await).await;
    assert_eq!(user_ids(&page), [a.id.to_string()]);
    let found = body(
        app.get(&format!("/friendships?search=B_{tag}"), &me.token)
            .await,
    )
    .await;
    assert_eq!(user_ids(&found), [b.id.to_string()]);
    assert_invalid(app.get("/friendships?limit=0", &me.token).await, "limit").await;
    assert_invalid(app.get("/friendships?offset=-1", &me.token).await, "offset").await;
    assert_invalid(
        app.get("/friendships/requests?direction=sideways", &me.token)
            .await,
        "direction",
    )
    .await;
    assert_invalid(
        app.get("/friendships/requests?limit=500", &me.token).await,
        "limit",
    )
    .await;
    assert_invalid(
        app.get("/friendships/blocked?offset=-5", &me.token).await,
        "offset",
    )
    .await;
}

#[tokio::test]
async fn a_block_is_seen_from_both_sides_and_ends_only_that_friendship() {
    // Arrange
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;
    let carol = app.register(&name("carol")).await;
    befriend(&app, &alice, &bob).await;
    befriend(&app, &carol, &alice).await;
    assert!(
        !chatty::social::is_blocked_between(&app.db, alice.id, bob.id)
            .await
            .unwrap()
    );

    // Act
    app.post(
        &format!("/friendships/block/{}", alice.id),
        &bob.token,
        json!({}),
    )
    .await;

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
    let friends = body(app.get("/friendships", &alice.token).await).await;
    let ids: Vec<&str> = friends
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["user"]["user_id"].as_str())
        .collect();
    assert_eq!(ids, [carol.id.to_string()]);
}
