//! The OpenAPI document is generated from annotations, so nothing forces a new route to be
//! annotated: these tests compare it against the routers' source, file by file.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

async fn document() -> Value {
    let app = spawn_app().await;
    let resp = app.request(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("openapi.json is not JSON")
}

#[tokio::test]
async fn openapi_json_is_an_openapi_3_document() {
    let doc = document().await;
    let version = doc["openapi"].as_str().expect("no openapi field");
    assert!(version.starts_with("3."), "openapi is {version}");
    assert_eq!(doc["info"]["title"], "Chatty");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// Every `(method, path)` routed by `.route("PATH", get(h).post(h2)...)` in `src/http/*.rs`.
/// Files are listed, not named, so a router file added later is checked too.
fn routed() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src/http") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("read router source");
        for (method, route) in routes_in(&src) {
            found.insert((method, route));
        }
    }
    found
}

/// Parses `.route(` calls: the string literal, then the method router expression up to the
/// call's closing parenthesis, in which every `get(`/`post(`/... names one method.
fn routes_in(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let Some(open) = rest.find('"') else { break };
        // Only a literal first argument is a route; anything else is not ours to parse.
        if !rest[..open].trim().is_empty() {
            continue;
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        let route = after[..close].to_owned();
        // The method router runs to the parenthesis that closes `.route(`.
        let mut depth = 1usize;
        let mut end = after.len();
        for (i, c) in after[close + 1..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = close + 1 + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let expr = &after[close + 1..end];
        for method in METHODS {
            let bytes = expr.as_bytes();
            let mut from = 0;
            while let Some(i) = expr[from..].find(&format!("{method}(")) {
                let pos = from + i;
                // A whole word: `get(`, `.get(`, `routing::get(`, not `forget(`.
                let prev = pos.checked_sub(1).map(|p| bytes[p]);
                if !matches!(prev, Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
                    out.push((method.to_owned(), route.clone()));
                }
                from = pos + method.len();
            }
        }
        rest = &after[end..];
    }
    out
}

#[test]
fn the_route_parser_reads_chained_and_multiline_routes() {
    let src = r#"Router::new()
        .route("/a/{id}", get(one).put(edit).delete(remove))
        .route(
            "/b",
            post(make),
        )
        .route("/c", routing::patch(forget))"#;
    let got: BTreeSet<_> = routes_in(src).into_iter().collect();
    let want: BTreeSet<_> = [
        ("get", "/a/{id}"),
        ("put", "/a/{id}"),
        ("delete", "/a/{id}"),
        ("post", "/b"),
        ("patch", "/c"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn openapi_documents_exactly_the_routed_operations() {
    let doc = document().await;
    let routes = routed();
    assert!(
        routes.contains(&("get".to_owned(), "/healthz".to_owned())),
        "the router parser found nothing sensible: {routes:?}"
    );
    let missing: Vec<_> = routes
        .iter()
        .filter(|(m, p)| doc["paths"][p.as_str()][m.as_str()].is_null())
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );

    let paths = doc["paths"].as_object().expect("paths");
    let mut extra = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if !item[method].is_null() && !routes.contains(&(method.to_owned(), path.clone())) {
                extra.push((method, path.clone()));
            }
        }
    }
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
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
