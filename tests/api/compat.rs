//! The original's clients, unchanged: every route the original had answers with the
//! original's success status and a JSON body (docs/compatibility.md).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, name, spawn_app};

/// Calls a route and checks the status and that the body is JSON (not empty, not null).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    status: StatusCode,
) -> Value {
    let resp = app.request(method.clone(), path, token, body).await;
    assert_eq!(resp.status(), status, "{method} {path}");
    let text = resp.text().await.unwrap();
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path} answered no JSON: {text:?}"));
    assert!(!json.is_null(), "{method} {path} answered null");
    json
}

#[tokio::test]
async fn every_route_of_the_original_answers_with_its_status_and_a_json_body() {
    use Method as M;
    use StatusCode as S;
    let app = spawn_app().await;
    let (alice, bob, carol) = (name("alice"), name("bob"), name("carol"));

    // Auth
    let mut signed = Vec::new();
    for n in [&alice, &bob, &carol] {
        let b = call(
            &app,
            M::POST,
            "/auth/register",
            None,
            Some(json!({ "username": n, "email": format!("{n}@example.com"), "password": format!("password-{n}") })),
            S::CREATED,
        )
        .await;
        assert!(b["access_token"].is_string() && b["refresh_token"].is_string());
        signed.push(b);
    }
    let login = call(
        &app,
        M::POST,
        "/auth/login",
        None,
        Some(json!({ "username": alice, "password": format!("password-{alice}") })),
        S::OK,
    )
    .await;
    let a = login["access_token"].as_str().unwrap().to_owned();
    let b_token = signed[1]["access_token"].as_str().unwrap().to_owned();
    let bob_id = signed[1]["user"]["user_id"].as_str().unwrap().to_owned();
    let carol_id = signed[2]["user"]["user_id"].as_str().unwrap().to_owned();
    let t = Some(a.as_str());

    // Users
    call(&app, M::GET, "/users", t, None, S::OK).await;
    call(&app, M::GET, &format!("/users/{bob_id}"), t, None, S::OK).await;
    call(
        &app,
        M::GET,
        "/users/search?search=bo&page=1&limit=10",
        t,
        None,
        S::OK,
    )
    .await;

    // Conversations and messages
    let conv = call(
        &app,
        M::POST,
        "/conversations",
        t,
        Some(json!({ "name": "crew", "is_group": true, "participant_ids": [bob_id] })),
        S::CREATED,
    )
    .await;
    let conv = conv["conversation_id"].as_str().unwrap().to_owned();
    call(&app, M::GET, "/conversations", t, None, S::OK).await;
    call(
        &app,
        M::GET,
        &format!("/conversations/{conv}"),
        t,
        None,
        S::OK,
    )
    .await;
    call(
        &app,
        M::POST,
        &format!("/conversations/{conv}/participants"),
        t,
        Some(json!({ "userIds": [carol_id] })),
        S::OK,
    )
    .await;
    call(
        &app,
        M::POST,
        &format!("/conversations/{conv}/participants/{carol_id}/remove"),
        t,
        None,
        S::OK,
    )
    .await;
    let msg = call(
        &app,
        M::POST,
        "/messages",
        t,
        Some(json!({ "content": "hi", "conversation_id": conv })),
        S::CREATED,
    )
    .await;
    let msg = msg["message_id"].as_str().unwrap().to_owned();
    call(
        &app,
        M::GET,
        &format!("/messages/conversation/{conv}"),
        t,
        None,
        S::OK,
    )
    .await;
    call(
        &app,
        M::PUT,
        &format!("/messages/{msg}"),
        t,
        Some(json!({ "content": "hi again" })),
        S::OK,
    )
    .await;
    call(
        &app,
        M::PUT,
        &format!("/messages/{msg}/status"),
        Some(&b_token),
        Some(json!({ "status": "read" })),
        S::OK,
    )
    .await;
    call(&app, M::DELETE, &format!("/messages/{msg}"), t, None, S::OK).await;

    // Friendships
    call(
        &app,
        M::POST,
        "/friendships/request",
        Some(&b_token),
        Some(json!({ "friendId": login["user"]["user_id"] })),
        S::CREATED,
    )
    .await;
    call(
        &app,
        M::POST,
        &format!("/friendships/accept/{bob_id}"),
        t,
        None,
        S::OK,
    )
    .await;
    call(
        &app,
        M::GET,
        "/friendships/search?search=ca",
        t,
        None,
        S::OK,
    )
    .await;
    call(&app, M::GET, "/friendships/suggestions", t, None, S::OK).await;
    call(
        &app,
        M::POST,
        &format!("/friendships/block/{carol_id}"),
        t,
        Some(json!({})),
        S::OK,
    )
    .await;
    call(
        &app,
        M::DELETE,
        &format!("/friendships/unblock/{carol_id}"),
        t,
        None,
        S::OK,
    )
    .await;

    // Notifications: bob's friend request left alice one.
    let list = call(&app, M::GET, "/notifications", t, None, S::OK).await;
    let id = list[0]["notification_id"]
        .as_str()
        .expect("a notification")
        .to_owned();
    call(&app, M::GET, "/notifications/unread", t, None, S::OK).await;
    call(
        &app,
        M::POST,
        &format!("/notifications/{id}/read"),
        t,
        None,
        S::OK,
    )
    .await;
    call(&app, M::POST, "/notifications/read-all", t, None, S::OK).await;
    let deleted = call(
        &app,
        M::DELETE,
        &format!("/notifications/{id}"),
        t,
        None,
        S::OK,
    )
    .await;
    assert_eq!(deleted["notification_id"], id.as_str());

    // Logout, with the original's words.
    let out = call(&app, M::POST, "/auth/logout", t, None, S::OK).await;
    assert_eq!(out["message"], "Successfully logged out");
}
