//! The REST calls every client of the tests, the benchmark and the load tool makes, typed
//! once: sign-up (waiting out the per-address limit), sign-in and group creation.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// A REST client of one base URL (a node or a balancer). Cheap to clone.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// A signed-in device, as `/auth/register`, `/auth/login` or `/auth/refresh` answer.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
    pub session_id: Uuid,
    /// The whole answer, for checks of fields this type does not name.
    pub body: Value,
}

impl SignedIn {
    fn from_body(body: Value) -> anyhow::Result<Self> {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Ok(Self {
            user_id: text(&body["user"]["user_id"]).context("user id")?.parse()?,
            username: text(&body["user"]["username"]).context("username")?,
            access_token: text(&body["access_token"]).context("access token")?,
            refresh_token: text(&body["refresh_token"]).unwrap_or_default(),
            session_id: text(&body["session_id"])
                .and_then(|s| s.parse().ok())
                .unwrap_or_default(),
            body,
        })
    }
}

/// How often a sign-up refused by the per-address limit (429), or by password hashing at
/// capacity (503, a loaded machine), is tried again.
const SIGN_UP_ATTEMPTS: u32 = 6;
/// The longest `Retry-After` a sign-up waits out.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

impl Api {
    /// A client of `base` (`http://127.0.0.1:3000`), with TCP_NODELAY (small requests
    /// otherwise wait ~40 ms for ACKs) and no proxy.
    pub fn new(base: impl Into<String>) -> Self {
        Self::with_pool(base, usize::MAX)
    }

    /// The same, keeping at most `idle` idle connections per host.
    pub fn with_pool(base: impl Into<String>, idle: usize) -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(idle)
            .no_proxy()
            .build()
            .expect("a client with static settings builds");
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// A client of `base` over an existing HTTP client (its pool and settings).
    pub fn from_client(base: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One call: `token` as a bearer, `body` as JSON.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Result<Response> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await
    }

    /// Signs `username` up (email `<username>@<domain>`), waiting out 429s and 503s for
    /// their `Retry-After`, a few times at most.
    pub async fn sign_up(
        &self,
        username: &str,
        domain: &str,
        password: &str,
        device: Option<&str>,
    ) -> anyhow::Result<SignedIn> {
        let mut body = json!({
            "username": username,
            "email": format!("{username}@{domain}"),
            "password": password,
        });
        if let Some(d) = device {
            body["device"] = d.into();
        }
        for attempt in 1..=SIGN_UP_ATTEMPTS {
            let resp = self
                .request(Method::POST, "/auth/register", None, Some(&body))
                .await?;
            let status = resp.status();
            let retry = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            );
            if retry && attempt < SIGN_UP_ATTEMPTS {
                let header = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok());
                tokio::time::sleep(retry_after(header)).await;
                continue;
            }
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            if status != StatusCode::CREATED {
                bail!("register {username}: {status} {answer}");
            }
            return SignedIn::from_body(answer);
        }
        bail!("register {username}: still refused after {SIGN_UP_ATTEMPTS} attempts")
    }

    /// Signs `username` in as another device.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        device: Option<&str>,
    ) -> anyhow::Result<SignedIn> {
        let mut body = json!({ "username": username, "password": password });
        if let Some(d) = device {
            body["device"] = d.into();
        }
        let resp = self
            .request(Method::POST, "/auth/login", None, Some(&body))
            .await?;
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if status != StatusCode::OK {
            bail!("login {username}: {status} {answer}");
        }
        SignedIn::from_body(answer)
    }

    /// A group conversation of `token`'s user with `members`; its id.
    pub async fn create_group(
        &self,
        token: &str,
        name: &str,
        members: &[Uuid],
    ) -> anyhow::Result<Uuid> {
        let body = json!({ "name": name, "is_group": true, "participant_ids": members });
        let resp = self
            .request(Method::POST, "/conversations", Some(token), Some(&body))
            .await?;
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if status != StatusCode::CREATED {
            bail!("create group {name}: {status} {answer}");
        }
        Ok(answer["conversation_id"]
            .as_str()
            .context("conversation id")?
            .parse()?)
    }
}

/// How long a 429 asks to wait: its `Retry-After` in seconds (the form Chatty sends), else
/// a second; at least a second, at most `MAX_RETRY_AFTER`.
fn retry_after(header: Option<&str>) -> Duration {
    header
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        assert_eq!(retry_after(Some("3")), Duration::from_secs(3));
        assert_eq!(retry_after(Some(" 0 ")), Duration::from_secs(1));
        assert_eq!(retry_after(Some("3600")), MAX_RETRY_AFTER);
        // An HTTP date or nothing at all: wait a second.
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Duration::from_secs(1)
        );
        assert_eq!(retry_after(None), Duration::from_secs(1));
    }
}
