//! The web client: the page at `/` and its files under `/app/{version}/`, built into the
//! binary, with a strict Content-Security-Policy and nothing referenced from elsewhere.

use std::{io::Read, path::Path};

use reqwest::{Response, StatusCode, header};

use crate::helpers::{TestApp, spawn_app_memory};

/// `GET path` with extra request headers.
async fn get(app: &TestApp, path: &str, headers: &[(header::HeaderName, &str)]) -> Response {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    request.send().await.expect("request")
}

fn header_of(resp: &Response, name: header::HeaderName) -> &str {
    resp.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} on {}", resp.url()))
        .to_str()
        .expect("ASCII header")
}

/// The value of every `src="..."` and `href="..."` in `html`.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').expect("closing quote");
            found.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    found
}

/// Every opening tag of `html`, from its name to its `>`.
fn tags(html: &str) -> Vec<&str> {
    html.split('<')
        .skip(1)
        .filter(|t| t.starts_with(|c: char| c.is_ascii_alphabetic()))
        .map(|t| &t[..t.find('>').expect("tag end")])
        .collect()
}

fn assert_strict_headers(resp: &Response) {
    let csp = header_of(resp, header::CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{}: CSP lacks {directive}: {csp}",
            resp.url()
        );
    }
    assert!(!csp.contains("unsafe"), "{}: {csp}", resp.url());
    assert_eq!(header_of(resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
}

/// The page, and the `/app/{version}` its files are under.
async fn page(app: &TestApp) -> (String, String) {
    let html = get(app, "/", &[]).await.text().await.expect("page");
    let css = references(&html)
        .into_iter()
        .find(|r| r.ends_with("/app.css"))
        .expect("the page links app.css");
    let root = css.trim_end_matches("/app.css").to_owned();
    (html, root)
}

#[tokio::test]
async fn the_page_is_served_at_the_root_with_a_strict_content_security_policy() {
    // Arrange
    let app = spawn_app_memory().await;

    // Act
    let resp = get(&app, "/", &[]).await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_of(&resp, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_eq!(header_of(&resp, header::CACHE_CONTROL), "no-cache");
    assert!(resp.headers().contains_key(header::ETAG));
    assert_strict_headers(&resp);
    let html = resp.text().await.unwrap();
    assert!(!html.contains("{{"), "a placeholder was left in the page");
    // Nothing inline for the policy to refuse: every script is a file, no handler
    // attributes, no style attributes or elements.
    for tag in tags(&html) {
        if tag.starts_with("script") {
            assert!(tag.contains(" src=\""), "inline script: <{tag}>");
        }
        assert!(!tag.starts_with("style"), "inline style element");
        for word in tag.split_whitespace().skip(1) {
            let name = word.split('=').next().unwrap_or_default();
            assert!(
                !(name.starts_with("on") || name == "style"),
                "inline {name} in <{tag}>"
            );
        }
    }
}

#[tokio::test]
async fn the_page_references_only_files_of_its_own_origin_that_the_node_serves() {
    // Arrange
    let app = spawn_app_memory().await;
    let (html, root) = page(&app).await;
    let referenced = references(&html);
    assert!(referenced.len() >= 4, "{referenced:?}");

    for path in referenced {
        // Act
        assert!(
            path.starts_with('/') && !path.starts_with("//"),
            "{path} is not a path on this origin"
        );
        let resp = get(&app, &path, &[]).await;

        // Assert
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(path.starts_with(&format!("{root}/")), "{path}");
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected kind of file {other:?}: {path}"),
        };
        assert_eq!(header_of(&resp, header::CONTENT_TYPE), expected, "{path}");
        assert_eq!(
            header_of(&resp, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_strict_headers(&resp);
    }
}

#[tokio::test]
async fn every_file_of_the_web_client_is_built_into_the_binary() {
    // Arrange: the files of web/, but its notes and the page (served at `/`)
    let app = spawn_app_memory().await;
    let (_, root) = page(&app).await;
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut files = Vec::new();
    let mut dirs = vec![web.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("web/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.retain(|p| !p.ends_with("README.md") && !p.ends_with("index.html"));
    assert!(files.len() > 10, "{files:?}");

    for file in files {
        let relative = file.strip_prefix(&web).unwrap().to_str().unwrap();

        // Act
        let resp = get(&app, &format!("{root}/{relative}"), &[]).await;

        // Assert
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "web/{relative} is not in the table of src/http/web.rs"
        );
        let served = resp.bytes().await.unwrap();
        assert_eq!(
            served.as_ref(),
            std::fs::read(&file).unwrap(),
            "web/{relative}"
        );
    }
}

#[tokio::test]
async fn a_client_that_accepts_gzip_gets_the_files_compressed() {
    // Arrange
    let app = spawn_app_memory().await;
    let (_, root) = page(&app).await;
    let path = format!("{root}/vendor/socket.io.min.js");
    let plain = get(&app, &path, &[]).await.bytes().await.unwrap();

    // Act
    let resp = get(
        &app,
        &path,
        &[(header::ACCEPT_ENCODING, "br, gzip, deflate")],
    )
    .await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_of(&resp, header::CONTENT_ENCODING), "gzip");
    assert_eq!(header_of(&resp, header::VARY), "accept-encoding");
    let compressed = resp.bytes().await.unwrap();
    assert!(compressed.len() < plain.len() / 2, "{}", compressed.len());
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_ref())
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated, plain.as_ref());
    let refused = get(&app, &path, &[(header::ACCEPT_ENCODING, "gzip;q=0")]).await;
    assert!(!refused.headers().contains_key(header::CONTENT_ENCODING));
}

#[tokio::test]
async fn a_page_the_browser_holds_already_answers_not_modified() {
    // Arrange
    let app = spawn_app_memory().await;
    let first = get(&app, "/", &[(header::ACCEPT_ENCODING, "gzip")]).await;
    let etag = header_of(&first, header::ETAG).to_owned();

    // Act: the compressed copy's tag, asked for without compression, names the same page
    let again = get(&app, "/", &[(header::IF_NONE_MATCH, &etag)]).await;

    // Assert
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header_of(&again, header::CACHE_CONTROL), "no-cache");
    assert!(again.bytes().await.unwrap().is_empty());
    let other = get(&app, "/", &[(header::IF_NONE_MATCH, "\"something-else\"")]).await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_file_asked_for_under_another_version_is_served_but_not_kept() {
    // A page from another build (during a rolling deploy) asking this node.
    let app = spawn_app_memory().await;

    let resp = get(&app, "/app/0123456789abcdef/app.css", &[]).await;

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_of(&resp, header::CACHE_CONTROL), "no-cache");
}

#[tokio::test]
async fn an_unknown_file_is_the_usual_json_not_found() {
    let app = spawn_app_memory().await;
    let (_, root) = page(&app).await;
    let path = format!("{root}/js/nope.js");

    let resp = get(&app, &path, &[]).await;

    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], format!("Cannot GET {path}"));
}
