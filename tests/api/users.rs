use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestUser, assert_bad_get, assert_error, assert_invalid_get, assert_invalid_gets,
    assert_past_the_end, assert_unknown_id, body, name, spawn_app, tag,
};

/// A node with `<me>_<tag>` and then five users `<others><i>_<tag>` (i from 0) on it; the
/// node, the tag and the first user.
async fn one_and_five(me: &str, others: &str) -> (TestApp, String, TestUser) {
    let app = spawn_app().await;
    let tag = tag();
    let me = app.register(&format!("{me}_{tag}")).await;
    for i in 0..5 {
        app.register(&format!("{others}{i}_{tag}")).await;
    }
    (app, tag, me)
}

#[tokio::test]
async fn me_includes_the_email_and_others_do_not_see_it() {
    let app = spawn_app().await;
    let [alice, bob] = app.users(["alice", "bob"]).await;
    let me = app.get_body("/users/me", &alice.token).await;
    assert_eq!(me["user_id"], alice.id.to_string());
    assert!(me["email"].is_string());
    let seen = app
        .get_body(&format!("/users/{}", alice.id), &bob.token)
        .await;
    assert_eq!(seen["username"], alice.name.as_str());
    assert!(seen.get("email").is_none(), "{seen}");
    assert!(seen.get("password_hash").is_none());
}

#[tokio::test]
async fn unknown_user_is_404_and_malformed_id_is_400() {
    let app = spawn_app().await;
    let u = app.register(&name("u")).await;
    assert_unknown_id(&app, &u.token, "/users").await;
    assert_bad_get(&app, &u.token, "/users/12345").await;
}

#[tokio::test]
async fn users_require_authentication() {
    let app = spawn_app().await;
    for path in [
        "/users",
        "/users/me",
        "/users/search",
        &format!("/users/{}", Uuid::new_v4()),
    ] {
        let resp = app.request(reqwest::Method::GET, path, None, None).await;
        assert_error(resp, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn list_users_filters_by_search_and_pages_with_limit_and_offset() {
    let (app, tag, me) = one_and_five("viewer", "zed").await;
    let tag = &tag;
    let all = app.get_body("/users?search=zed&limit=100", &me.token).await;
    assert_eq!(all.as_array().unwrap().len(), 5);
    let page = app
        .get_body("/users?search=ZED&limit=2&offset=2", &me.token)
        .await;
    let names: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("zed2_{tag}"), format!("zed3_{tag}")]);
    // Wildcards in the search are literal.
    let none = app.get_body("/users?search=%25", &me.token).await;
    assert_eq!(none.as_array().unwrap().len(), 0);
    assert_invalid_gets(
        &app,
        &me.token,
        &["/users?limit=0", "/users?limit=101", "/users?offset=-1"],
    )
    .await;
    assert_bad_get(&app, &me.token, "/users?limit=abc").await;
}

#[tokio::test]
async fn search_returns_the_originals_paged_shape_without_the_caller() {
    let (app, tag, me) = one_and_five("finder", "found").await;
    let tag = &tag;
    let resp = app
        .get(
            &format!("/users/search?search={tag}&page=2&limit=2"),
            &me.token,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let b = body(resp).await;
    assert_eq!(b["meta"]["total"], 5, "{b}");
    assert_eq!(b["meta"]["page"], 2);
    assert_eq!(b["meta"]["limit"], 2);
    assert_eq!(b["meta"]["totalPages"], 3);
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    assert_eq!(b["data"][0]["username"], format!("found2_{tag}"));
    assert_past_the_end(
        &app,
        &me.token,
        &format!("/users/search?search={tag}&page=9&limit=2"),
        5,
    )
    .await;
    assert_invalid_get(&app, &me.token, "/users/search?page=0", "page").await;
}
