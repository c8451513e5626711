use chatty::metrics::names;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, body, spawn_app, spawn_app_memory};

/// `GET path` without a token, asserting `status`; the body.
async fn probe(app: &TestApp, path: &str, status: StatusCode) -> Value {
    let resp = app.request(Method::GET, path, None, None).await;
    assert_eq!(resp.status(), status, "{path}");
    body(resp).await
}

#[tokio::test]
async fn healthz_answers_ok_with_the_node_id() {
    let app = spawn_app().await;
    let b = probe(&app, "/healthz", StatusCode::OK).await;
    assert_eq!(b["status"], "ok");
    assert_eq!(b["node"], app.state.node_id.as_ref());
}

#[tokio::test]
async fn readyz_reports_postgres_and_redis_reachable() {
    let app = spawn_app().await;
    let b = probe(&app, "/readyz", StatusCode::OK).await;
    assert_eq!(b["postgres"], "ok");
    assert_eq!(b["fabric"]["kind"], "redis");
    assert_eq!(b["fabric"]["status"], "ok");
}

#[tokio::test]
async fn readyz_fails_once_the_node_is_draining() {
    let app = spawn_app_memory().await;
    app.state.draining.start();
    let b = probe(&app, "/readyz", StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(b["draining"], true);
}

#[tokio::test]
async fn metrics_exports_http_counters_by_route_template() {
    let app = spawn_app_memory().await;
    let user = app.register(&crate::helpers::name("metric")).await;
    let _ = app.get(&format!("/users/{}", user.id), &user.token).await;
    let resp = app.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(&format!("{}{{", names::HTTP_REQUESTS)),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/users/{id}""#),
        "route template missing: {text}"
    );
    assert!(
        !text.contains(&user.id.to_string()),
        "raw ids must not become labels"
    );
    assert!(
        text.contains(&format!("{}_bucket", names::HTTP_REQUEST_DURATION)),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_exports_the_process_cpu_time_and_resident_memory() {
    // Arrange
    let app = spawn_app_memory().await;

    // Act
    let resp = app.request(Method::GET, "/metrics", None, None).await;

    // Assert: what load tests divide by the work done between two scrapes
    let text = resp.text().await.unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse::<f64>().ok())
    };
    // Whole seconds (metrics-process truncates), so a young process may show 0.
    let cpu = value(names::PROCESS_CPU_SECONDS).expect(names::PROCESS_CPU_SECONDS);
    assert!(cpu >= 0.0, "{cpu}");
    assert!(text.contains(&format!("# TYPE {} counter", names::PROCESS_CPU_SECONDS)));
    let rss = value(names::PROCESS_RESIDENT_MEMORY).expect(names::PROCESS_RESIDENT_MEMORY);
    assert!(rss > 1_000_000.0, "{rss}");
}

#[tokio::test]
async fn unknown_routes_answer_404_in_the_error_shape() {
    let app = spawn_app_memory().await;
    let resp = app.request(Method::GET, "/no/such/route", None, None).await;
    let b = assert_error(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(b["message"], "Cannot GET /no/such/route");
}

#[tokio::test]
async fn wrong_method_answers_405_in_the_error_shape() {
    let app = spawn_app_memory().await;
    let resp = app
        .request(Method::DELETE, "/auth/register", None, None)
        .await;
    assert_error(resp, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversized_bodies_are_refused_cleanly() {
    let app = spawn_app_memory().await;
    let url = app.url("/auth/register");

    let post = async |content_type: &str, payload: String| {
        let req = app.client.post(&url).header("content-type", content_type);
        req.body(payload).send().await.expect("request")
    };

    let resp = post("application/json", "{not json".to_owned()).await;
    assert_error(resp, StatusCode::BAD_REQUEST).await;

    let resp = post("text/plain", "{}".to_owned()).await;
    assert_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    let huge = format!(r#"{{"username":"{}"}}"#, "x".repeat(200 * 1024));
    let resp = post("application/json", huge).await;
    let b: Value = assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(b["code"], "payload_too_large");

    assert_eq!(app.count("users").await, 0, "nothing stored");
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = spawn_app_memory().await;
    let resp = app.request(Method::GET, "/healthz", None, None).await;
    assert!(resp.headers().get("x-request-id").is_some());
}
