//! The web client (`web/`), built into the binary so that every node serves it without
//! network access: `GET /` is the page, `/app/{version}/{path}` its files.
//!
//! `{version}` is a digest of every file, so a file's URL changes whenever any file does and
//! browsers may keep the files for a year; the page itself is revalidated on every load (it
//! is small, and answers 304 while unchanged). The page loads nothing but these files: the
//! Content-Security-Policy allows scripts, styles and images from this origin only, and
//! connections to it (REST, and Socket.IO over polling or WebSocket).

use std::{collections::HashMap, io::Write, sync::LazyLock};

use axum::{
    Router,
    body::Bytes,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};

use crate::{error::ApiError, state::AppState};

/// Where the page's files are served, under their version.
const ASSETS_ROOT: &str = "/app";

/// Stands in `web/index.html` for `/app/{version}`, which only exists once every file is
/// known.
const ASSETS_PLACEHOLDER: &str = "{{assets}}";

/// Sent with every file. `connect-src` names `ws:` and `wss:` besides `'self'` because
/// browsers that predate CSP level 3 do not count a WebSocket to the page's own host as
/// `'self'`. No `'unsafe-inline'` anywhere: the page has no inline script, style or handler,
/// and trusted types make any use of an HTML-parsing sink (`innerHTML`) throw.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self' ws: wss:; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
    require-trusted-types-for 'script'; trusted-types 'none'";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// One file of `web/`, as the binary holds it.
struct Asset {
    /// Path under `web/`, and under `/app/{version}/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The table of the client's files, each included from `web/` at build time (so cargo
/// rebuilds when one changes). `tests/api/web.rs` fails when a file of `web/` is missing
/// here.
macro_rules! assets {
    ($($path:literal => $content_type:expr),+ $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)),
        }),+]
    };
}

const ASSETS: &[Asset] = assets![
    "app.css" => "text/css; charset=utf-8",
    "icon.svg" => "image/svg+xml",
    "js/api.js" => JAVASCRIPT,
    "js/bell.js" => JAVASCRIPT,
    "js/chats.js" => JAVASCRIPT,
    "js/dom.js" => JAVASCRIPT,
    "js/live.js" => JAVASCRIPT,
    "js/main.js" => JAVASCRIPT,
    "js/people.js" => JAVASCRIPT,
    "js/session.js" => JAVASCRIPT,
    "js/sidebar.js" => JAVASCRIPT,
    "js/signin.js" => JAVASCRIPT,
    "js/thread.js" => JAVASCRIPT,
    "vendor/socket.io.min.js" => JAVASCRIPT,
    "vendor/socket.io-client.LICENSE" => "text/plain; charset=utf-8",
];

const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/index.html"));

/// Prepared on the first request a node gets for the client: the version, and each file
/// with its digest and gzip-compressed copy. Never changes afterwards.
static BUNDLE: LazyLock<Bundle> = LazyLock::new(Bundle::build);

struct Bundle {
    version: String,
    index: Served,
    files: HashMap<&'static str, Served>,
}

/// A file ready to be answered.
struct Served {
    content_type: &'static str,
    body: Bytes,
    /// Only when compressing saved something worth a header.
    gzip: Option<Bytes>,
    /// Strong validator of the uncompressed body; the compressed one appends `-gz`, since
    /// the two are different representations.
    etag: String,
}

impl Bundle {
    fn build() -> Self {
        let mut digest = Sha256::new();
        for asset in ASSETS {
            digest.update(asset.path.as_bytes());
            digest.update((asset.body.len() as u64).to_le_bytes());
            digest.update(asset.body);
        }
        digest.update(INDEX.as_bytes());
        let version = hex(&digest.finalize()[..8]);
        let index = INDEX.replace(ASSETS_PLACEHOLDER, &format!("{ASSETS_ROOT}/{version}"));
        Self {
            index: Served::new("text/html; charset=utf-8", Bytes::from(index)),
            files: ASSETS
                .iter()
                .map(|a| {
                    (
                        a.path,
                        Served::new(a.content_type, Bytes::from_static(a.body)),
                    )
                })
                .collect(),
            version,
        }
    }
}

impl Served {
    fn new(content_type: &'static str, body: Bytes) -> Self {
        let etag = format!("\"{}\"", hex(&Sha256::digest(&body)[..12]));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip = encoder
            .write_all(&body)
            .and_then(|()| encoder.finish())
            .ok()
            .filter(|gz| gz.len() + 64 < body.len())
            .map(Bytes::from);
        Self {
            content_type,
            body,
            gzip,
            etag,
        }
    }

    fn gzip_etag(&self) -> String {
        format!("{}-gz\"", self.etag.trim_end_matches('"'))
    }

    /// 304 when the client holds either representation, else the body (compressed when the
    /// client accepts gzip).
    fn respond(&self, request: &HeaderMap, cache_control: &'static str) -> Response {
        let gzip = self.gzip.as_ref().filter(|_| accepts_gzip(request));
        let etag = if gzip.is_some() {
            self.gzip_etag()
        } else {
            self.etag.clone()
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if let Ok(value) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, value);
        }
        security_headers(&mut headers);
        if holds(request, &[&self.etag, &self.gzip_etag()]) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        match gzip {
            Some(gz) => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                (headers, gz.clone()).into_response()
            }
            None => (headers, self.body.clone()).into_response(),
        }
    }
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // For browsers without CSP `frame-ancestors`: the page must not be framed (clickjacking).
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Whether `If-None-Match` names one of `etags` (weak comparison, as RFC 9110 asks for it).
fn holds(request: &HeaderMap, etags: &[&str]) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || etags.contains(&tag))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/app/{version}/{*path}", get(file))
}

async fn page(headers: HeaderMap) -> Response {
    BUNDLE.index.respond(&headers, "no-cache")
}

async fn file(
    Path((version, path)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let bundle = &*BUNDLE;
    let Some(file) = bundle.files.get(path.as_str()) else {
        return ApiError::NotFound(format!("Cannot GET {}", uri.path()).into()).into_response();
    };
    // Another version is a page served by another build (a rolling deploy): it gets this
    // build's file, but must not keep it under a URL that promises other contents.
    let cache_control = if version == bundle.version {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    file.respond(&headers, cache_control)
}
