use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{assert_error, assert_invalid, body, name, spawn_app};

#[tokio::test]
async fn me_includes_the_email_and_others_do_not_see_it() {
    let app = spawn_app().await;
    let alice = app.register(&name("alice")).await;
    let bob = app.register(&name("bob")).await;
    let me = body(app.get("/users/me", &alice.token).await).await;
    assert_eq!(me["user_id"], alice.id.to_string());
    assert!(me["email"].is_string());
    let seen = body(app.get(&format!("/users/{}", alice.id), &bob.token).await).await;
    assert_eq!(seen["username"], alice.name.as_str());
    assert!(seen.get("email").is_none(), "{seen}");
    assert!(seen.get("password_hash").is_none());
}

#[tokio::test]
async fn unknown_user_is_404_and_malformed_id_is_400() {
    let app = spawn_app().await;
    let u = app.register(&name("u")).await;
    assert_error(app.get(&format!("/users/{}", Uuid::new_v4()), &u.token).await, StatusCode::NOT_FOUND).await;
    assert_error(app.get("/users/12345", &u.token).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn users_require_authentication() {
    let app = spawn_app().await;
    for path in ["/users", "/users/me", "/users/search", &format!("/users/{}", Uuid::new_v4())] {
        let resp = app.request(reqwest::Method::GET, path, None, None).await;
        assert_error(resp, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn list_users_filters_by_search_and_pages_with_limit_and_offset() {
    let app = spawn_app().await;
    let tag = &Uuid::new_v4().simple().to_string()[..6];
    let me = app.register(&format!("viewer_{tag}")).await;
    for i in 0..5 {
        app.register(&format!("zed{i}_{tag}")).await;
    }
    let all = body(app.get("/users?search=zed&limit=100", &me.token).await).await;
    assert_eq!(all.as_array().unwrap().len(), 5);
    let page = body(app.get("/users?search=ZED&limit=2&offset=2", &me.token).await).await;
    let names: Vec<&str> = page.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, [format!("zed2_{tag}"), format!("zed3_{tag}")]);
    // Wildcards in the search are literal.
    let none = body(app.get("/users?search=%25", &me.token).await).await;
    assert_eq!(none.as_array().unwrap().len(), 0);
    assert_invalid(app.get("/users?limit=0", &me.token).await, "limit").await;
    assert_invalid(app.get("/users?limit=101", &me.token).await, "limit").await;
    assert_invalid(app.get("/users?offset=-1", &me.token).await, "offset").await;
    assert_error(app.get("/users?limit=abc", &me.token).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn search_returns_the_originals_paged_shape_without_the_caller() {
    let app = spawn_app().await;
    let tag = &Uuid::new_v4().simple().to_string()[..6];
    let me = app.register(&format!("finder_{tag}")).await;
    for i in 0..5 {
        app.register(&format!("found{i}_{tag}")).await;
    }
    let resp = app.get(&format!("/users/search?search={tag}&page=2&limit=2"), &me.token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let b = body(resp).await;
    assert_eq!(b["meta"]["total"], 5, "{b}");
    assert_eq!(b["meta"]["page"], 2);
    assert_eq!(b["meta"]["limit"], 2);
    assert_eq!(b["meta"]["totalPages"], 3);
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    assert_eq!(b["data"][0]["username"], format!("found2_{tag}"));
    let past = body(app.get(&format!("/users/search?search={tag}&page=9&limit=2"), &me.token).await).await;
    assert_eq!(past["meta"]["total"], 5);
    assert!(past["data"].as_array().unwrap().is_empty());
    assert_invalid(app.get("/users/search?page=0", &me.token).await, "page").await;
}
