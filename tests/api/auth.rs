use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    TestApp, assert_error, assert_invalid, body, name, spawn_app, spawn_app_memory, two_nodes,
};

#[tokio::test]
async fn register_answers_201_with_a_token_and_the_user_without_its_hash() {
    // Arrange
    let app = spawn_app().await;
    let username = name("alice");
    // Act
    let resp = app
        .post_register(json!({ "username": username, "email": format!("{username}@Example.com"), "password": "correct horse" }))
        .await;
    // Assert
    assert_eq!(resp.status(), StatusCode::CREATED);
    let b = body(resp).await;
    assert!(b["access_token"].as_str().unwrap().split('.').count() == 3);
    assert_eq!(b["user"]["username"], username.as_str());
    assert_eq!(b["user"]["email"], format!("{username}@example.com"));
    assert_eq!(b["user"]["status"], "offline");
    for key in ["user_id", "created_at", "updated_at"] {
        assert!(!b["user"][key].is_null(), "missing {key}");
    }
    assert!(!b.to_string().contains("argon2"), "hash leaked: {b}");
    assert!(b["user"].get("password_hash").is_none());
    let stored: String = sqlx::query_scalar("select password_hash from users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}

#[tokio::test]
async fn register_rejects_each_invalid_field_by_name_and_stores_nothing() {
    let app = spawn_app_memory().await;
    // Each case is a valid sign-up with one field changed (or left out, `None`).
    let valid = json!({ "username": "carol", "email": "a@b.co", "password": "password1" });
    let cases = [
        ("username", None),
        ("username", Some(json!("ab"))),
        ("username", Some(json!("a".repeat(33)))),
        ("username", Some(json!("bad name!"))),
        ("email", None),
        ("email", Some(json!("not-an-email"))),
        ("email", Some(json!("a@b"))),
        ("password", None),
        ("password", Some(json!("short"))),
        ("password", Some(json!("x".repeat(129)))),
        ("password", Some(json!(12345678))),
    ];
    for (field, value) in cases {
        let mut payload = valid.clone();
        match value {
            Some(v) => payload[field] = v,
            None => {
                payload.as_object_mut().expect("object").remove(field);
            }
        }
        let resp = app.post_register(payload.clone()).await;
        assert_invalid(resp, field).await;
    }
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn register_reports_every_invalid_field_at_once() {
    let app = spawn_app_memory().await;
    let resp = app
        .post_register(json!({ "username": "x", "email": "nope", "password": "1" }))
        .await;
    let b = assert_invalid(resp, "username").await;
    let fields = b["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 3, "{b}");
    assert!(b["message"].is_array());
}

#[tokio::test]
async fn duplicate_username_or_email_is_a_409_regardless_of_case() {
    let app = spawn_app().await;
    let u = name("dup");
    app.register(&u).await;
    let resp = app
        .post_register(json!({ "username": u.to_uppercase(), "email": "other@example.com", "password": "password1" }))
        .await;
    let b = assert_error(resp, StatusCode::CONFLICT).await;
    assert!(b["message"].as_str().unwrap().contains("username"));
    let resp = app
        .post_register(json!({ "username": name("other"), "email": format!("{}@EXAMPLE.com", u), "password": "password1" }))
        .await;
    let b = assert_error(resp, StatusCode::CONFLICT).await;
    assert!(b["message"].as_str().unwrap().contains("email"));
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn login_by_username_or_email_answers_200_with_a_new_session() {
    let app = spawn_app().await;
    let user = app.register(&name("bob")).await;
    let pw = format!("password-{}", user.name);

    let resp = app
        .post_login(json!({ "username": user.name, "password": pw }))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let b = body(resp).await;
    assert_eq!(b["user"]["user_id"], user.id.to_string());
    let by_email = app
        .post_login(json!({ "email": format!("{}@example.com", user.name), "password": pw }))
        .await;
    assert_eq!(by_email.status(), StatusCode::OK);
    let email_as_username = app
        .post_login(json!({ "username": format!("{}@example.com", user.name), "password": pw }))
        .await;
    assert_eq!(email_as_username.status(), StatusCode::OK);

    let sessions = app.get_body("/auth/sessions", &user.token).await;
    assert_eq!(
        sessions.as_array().unwrap().len(),
        4,
        "register + 3 logins: {sessions}"
    );
}

#[tokio::test]
async fn login_with_a_wrong_password_or_unknown_user_is_401() {
    let app = spawn_app().await;
    let user = app.register(&name("eve")).await;
    let resp = app
        .post_login(json!({ "username": user.name, "password": "wrong password" }))
        .await;
    let wrong = assert_error(resp, StatusCode::UNAUTHORIZED).await;
    let resp = app
        .post_login(json!({ "username": "nobody_here", "password": "wrong password" }))
        .await;
    let unknown = assert_error(resp, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        wrong["message"], unknown["message"],
        "must not reveal which usernames exist"
    );
}

#[tokio::test]
async fn login_validation_names_the_missing_field() {
    let app = spawn_app_memory().await;
    assert_invalid(
        app.post_login(json!({ "password": "password1" })).await,
        "username",
    )
    .await;
    assert_invalid(
        app.post_login(json!({ "username": "someone" })).await,
        "password",
    )
    .await;
}

#[tokio::test]
async fn repeated_failed_logins_are_rate_limited_with_429_across_nodes() {
    let (a, b) = two_nodes().await;
    let user = a.register(&name("target")).await;
    let max = a.state.settings.limit_login_failures.burst;
    for i in 0..max {
        let node = if i % 2 == 0 { &a } else { &b };
        let resp = node
            .post_login(json!({ "username": user.name, "password": "bad guess!" }))
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Even the right password is refused while the window lasts: the limit is per username.
    let resp = b
        .post_login(json!({ "username": user.name, "password": format!("password-{}", user.name) }))
        .await;
    assert!(resp.headers().get("retry-after").is_some());
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS).await;
}

async fn assert_401(app: &TestApp, token: Option<&str>) {
    let resp = app.request(Method::GET, "/users/me", token, None).await;
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn protected_routes_refuse_missing_malformed_forged_and_expired_tokens() {
    let app = spawn_app().await;
    let user = app.register(&name("tok")).await;
    assert_401(&app, None).await;
    assert_401(&app, Some("not-a-jwt")).await;
    let forged = {
        let tokens = chatty::auth::Tokens::new(
            "another-secret-that-is-long-enough-0123456789",
            std::time::Duration::from_secs(60),
        );
        tokens.issue(user.id, Uuid::new_v4()).unwrap().0
    };
    assert_401(&app, Some(&forged)).await;
    let expired = {
        let claims = chatty::auth::Claims {
            sub: user.id,
            sid: Uuid::new_v4(),
            iat: 0,
            exp: 1000,
            jti: None,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(crate::helpers::JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    assert_401(&app, Some(&expired)).await;
    // A valid signature for a session that was never created.
    let orphan = app.state.tokens.issue(user.id, Uuid::new_v4()).unwrap().0;
    assert_401(&app, Some(&orphan)).await;
    let resp = app
        .client
        .get(app.url("/users/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
}

async fn logout_revokes_only_that_device(app: &TestApp) {
    let (user, phone) = app.two_devices("multi", "phone").await;
    let resp = app.post_empty("/auth/logout", &user.token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_401(app, Some(&user.token)).await;
    assert_eq!(app.get("/users/me", &phone).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_revokes_only_that_device_with_redis() {
    logout_revokes_only_that_device(&spawn_app().await).await;
}

#[tokio::test]
async fn logout_revokes_only_that_device_in_memory() {
    logout_revokes_only_that_device(&spawn_app_memory().await).await;
}

#[tokio::test]
async fn logout_on_one_node_is_rejected_at_once_on_another() {
    // Arrange: two nodes of one cluster
    let (a, b) = two_nodes().await;
    let user = a.register(&name("xnode")).await;
    assert_eq!(
        b.get("/users/me", &user.token).await.status(),
        StatusCode::OK
    );
    // Act
    assert_eq!(
        a.post_empty("/auth/logout", &user.token).await.status(),
        StatusCode::OK
    );
    // Assert
    assert_401(&b, Some(&user.token)).await;
}

#[tokio::test]
async fn sessions_are_listed_and_one_device_can_be_revoked_from_another() {
    let app = spawn_app().await;
    let (user, laptop) = app.two_devices("devices", "laptop").await;
    let list = app.get_body("/auth/sessions", &laptop).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let current: Vec<_> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["device"], "laptop");
    let other = list.iter().find(|s| s["current"] == false).unwrap();
    let sid = other["session_id"].as_str().unwrap();

    let resp = app.delete(&format!("/auth/sessions/{sid}"), &laptop).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_401(&app, Some(&user.token)).await;
    assert_eq!(app.get("/users/me", &laptop).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_user_cannot_revoke_someone_elses_session() {
    let app = spawn_app().await;
    let [alice, mallory] = app.users(["alice", "mallory"]).await;
    let alice_sessions = app.get_body("/auth/sessions", &alice.token).await;
    let sid = alice_sessions[0]["session_id"].as_str().unwrap().to_owned();
    let resp = app
        .delete(&format!("/auth/sessions/{sid}"), &mallory.token)
        .await;
    assert_error(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(
        app.get("/users/me", &alice.token).await.status(),
        StatusCode::OK
    );
    assert_error(
        app.delete("/auth/sessions/not-a-uuid", &mallory.token)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn logout_all_revokes_every_device() {
    let app = spawn_app().await;
    let (user, phone) = app.two_devices("all", "phone").await;
    let resp = app.post_empty("/auth/logout-all", &phone).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await["revoked"], 2);
    assert_401(&app, Some(&phone)).await;
    assert_401(&app, Some(&user.token)).await;
}
