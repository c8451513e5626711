//! The OpenAPI document and the router are built from the same `#[utoipa::path]` attributes
//! (`utoipa_axum::routes!`), so a route cannot be served undocumented or documented at another
//! path. These tests check the result from the outside: every documented operation is routed
//! on a live node, and its request and success bodies are typed.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, name, spawn_app};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

async fn document_of(app: &TestApp) -> Value {
    let resp = app.request(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("openapi.json is not JSON")
}

async fn document() -> Value {
    document_of(&spawn_app().await).await
}

#[tokio::test]
async fn openapi_json_is_an_openapi_3_document() {
    let doc = document().await;
    let version = doc["openapi"].as_str().expect("no openapi field");
    assert!(version.starts_with("3."), "openapi is {version}");
    assert_eq!(doc["info"]["title"], "Chatty");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

/// Every `(method, path template)` that `doc` documents.
fn operations(doc: &Value) -> Vec<(Method, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if !item[method].is_null() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                ops.push((method, path.clone()));
            }
        }
    }
    ops
}

/// `template` with every `{param}` replaced by a fresh UUID.
fn fill(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Uuid::new_v4().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Calls `method path` and returns the status and, when the router's fallback answered
/// (no route for the path, or none for the method), its "Cannot METHOD path" message.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>) {
    let body =
        matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| serde_json::json!({}));
    let resp = app.request(method.clone(), path, token, body).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let fallback = matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) && body["message"] == format!("Cannot {method} {path}");
    (status, fallback.then(|| body["message"].to_string()))
}

#[tokio::test]
async fn the_fallback_check_recognises_the_fallbacks() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/no-such-route"),
        (Method::POST, "/users/no/such/route"),
        (Method::DELETE, "/healthz"),
        (Method::PUT, "/conversations"),
    ] {
        let (status, fallback) = call(&app, method.clone(), path, None).await;
        assert_eq!(
            fallback,
            Some(format!("\"Cannot {method} {path}\"")),
            "{method} {path}: {status} not seen as the fallback"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc = document_of(&app).await;
    let mut ops = operations(&doc);
    assert!(ops.len() > 40, "only {} operations documented", ops.len());
    // Signing out would spoil the token for the operations after it: those go last.
    ops.sort_by_key(|(_, path)| path.starts_with("/auth/"));
    let user = app.register(&name("openapi")).await;

    let mut unrouted = Vec::new();
    for token in [None, Some(user.token.as_str())] {
        for (method, template) in &ops {
            let path = fill(template);
            let (status, fallback) = call(&app, method.clone(), &path, token).await;
            if let Some(message) = fallback {
                let auth = if token.is_some() { "with" } else { "without" };
                unrouted.push(format!(
                    "{method} {template} ({auth} a token): {status} {message}"
                ));
            }
        }
    }
    assert!(
        unrouted.is_empty(),
        "documented but answered by the router's fallback: {unrouted:#?}"
    );
}

#[tokio::test]
async fn known_operations_are_documented() {
    let doc = document().await;
    for (method, path) in [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("post", "/auth/register"),
        ("post", "/auth/login"),
        ("delete", "/auth/sessions/{sid}"),
        ("get", "/users/me"),
        ("get", "/conversations"),
        ("post", "/conversations"),
        ("get", "/conversations/{id}/typing"),
        ("post", "/messages"),
        ("get", "/messages/{id}"),
        ("put", "/messages/{id}"),
        ("delete", "/messages/{id}"),
        ("put", "/messages/{id}/status"),
        ("delete", "/friendships/{friendId}"),
        ("get", "/notifications/{id}"),
        ("delete", "/notifications/{id}"),
        ("post", "/notifications/{id}/read"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path} has no tag"
        );
    }
}

#[tokio::test]
async fn docs_serves_swagger_ui_html() {
    let app = spawn_app().await;
    // As a browser would: follow whatever redirect `/docs` answers with.
    for path in ["/docs", "/docs/"] {
        let resp = app.request(Method::GET, path, None, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("swagger-ui"), "{path}: not Swagger UI");
    }
    let resp = app
        .request(Method::GET, "/docs/swagger-initializer.js", None, None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("/openapi.json"));
}

/// Follows `$ref`s to the schema they name in `doc`.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema["$ref"].as_str() {
        let path = r
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        schema = path.split('/').fold(doc, |v, key| &v[key]);
        assert!(!schema.is_null(), "dangling $ref {r}");
    }
    schema
}

/// Whether a schema says what the JSON holds: objects name their properties, arrays type
/// their items, compositions (`allOf`/`oneOf`/`anyOf`) type every member. `{}` and a bare
/// `{"type": "object"}` say nothing.
fn typed(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(parts) = schema[key].as_array() {
            return !parts.is_empty() && parts.iter().all(|p| typed(doc, p));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"array") {
        return typed(doc, &schema["items"]);
    }
    let has_properties = schema["properties"]
        .as_object()
        .is_some_and(|p| !p.is_empty());
    if types.is_empty() {
        return has_properties || schema["enum"].is_array();
    }
    !types.contains(&"object") || has_properties
}

/// Every JSON request body and 2xx JSON response of `doc` whose schema is untyped, as
/// "METHOD path: what".
fn untyped_bodies(doc: &Value) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in METHODS {
            let op = &item[method];
            if op.is_null() {
                continue;
            }
            let mut bodies = vec![("request body".to_owned(), &op["requestBody"]["content"])];
            if let Some(responses) = op["responses"].as_object() {
                for (status, resp) in responses {
                    if status.starts_with('2') {
                        bodies.push((format!("{status} response"), &resp["content"]));
                    }
                }
            }
            for (what, content) in bodies {
                let Some(content) = content.as_object() else {
                    continue;
                };
                for (media, body) in content {
                    if !media.contains("json") {
                        continue;
                    }
                    checked += 1;
                    if !typed(doc, &body["schema"]) {
                        bad.push(format!(
                            "{} {path}: {what} ({media})",
                            method.to_uppercase()
                        ));
                    }
                }
            }
        }
    }
    (checked, bad)
}

#[test]
fn the_schema_check_sees_through_refs_arrays_and_compositions() {
    let doc = serde_json::json!({
        "components": { "schemas": {
            "Bare": { "type": "object" },
            "Named": { "type": "object", "properties": { "id": { "type": "string" } } },
            "Both": { "allOf": [{ "$ref": "#/components/schemas/Named" }, { "$ref": "#/components/schemas/Bare" }] },
        } },
        "paths": { "/x": {
            "get": { "responses": {
                "200": { "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Named" } } } } },
                "201": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bare" } } } },
                "404": { "content": { "application/json": { "schema": {} } } },
            } },
            "post": {
                "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Both" } } } },
                "responses": { "204": { "description": "none" }, "200": { "content": { "text/plain": { "schema": { "type": "string" } } } } },
            },
            "put": {
                "requestBody": { "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": { "200": { "content": { "application/json": { "schema": { "type": "string", "enum": ["a"] } } } } },
            },
        } },
    });
    let (checked, bad) = untyped_bodies(&doc);
    assert_eq!(checked, 5);
    assert_eq!(
        bad,
        vec![
            "GET /x: 201 response (application/json)",
            "POST /x: request body (application/json)",
            "PUT /x: request body (application/json)",
        ]
    );
}

#[tokio::test]
async fn every_json_request_and_success_body_has_a_typed_schema() {
    let doc = document().await;
    let (checked, bad) = untyped_bodies(&doc);
    assert!(
        checked > 40,
        "only {checked} JSON bodies found: the walk is broken"
    );
    assert!(
        bad.is_empty(),
        "JSON bodies documented as an untyped object: {bad:#?}"
    );
}
