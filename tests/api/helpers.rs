#![allow(dead_code)] // shared by test modules; not every helper is used by every module yet
use std::sync::Once;

use chatty::{config::Settings, startup::Application, state::AppState};
use chatty_testkit::{Api, SioClient};
use clap::Parser;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

pub fn pg_base() -> String {
    std::env::var("CHATTY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("CHATTY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Limits raised for every test node (as `limit-sends` flags and `CHATTY_LIMIT_SENDS`
/// variables): every test client comes from 127.0.0.1, and most tests send faster than a
/// person. The limits are tested with their own settings in `tests/api/limits.rs`.
const GENEROUS_LIMITS: &[(&str, &str)] = &[
    ("LIMIT_ADDRESS_SIGNUPS", "100000/1h"),
    ("LIMIT_ADDRESS_LOGIN_FAILURES", "100000/1h"),
    ("LIMIT_SENDS", "100000/1s"),
];

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    settings: Settings,
}

/// Settings as `chatty serve` would parse them, pointed at a fresh database and key prefix.
pub fn test_settings(db_name: &str, prefix: &str, redis: bool) -> Settings {
    let db_url = format!("{}/{db_name}", pg_base());
    let mut args = vec![
        "chatty".to_owned(),
        "--database-url".to_owned(),
        db_url,
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    if redis {
        args.extend(["--redis-url".to_owned(), redis_url()]);
    }
    args.extend([
        "--redis-prefix".to_owned(),
        prefix.to_owned(),
        "--jwt-secret".to_owned(),
        JWT_SECRET.to_owned(),
    ]);
    args.extend(["--db-max-connections".to_owned(), "5".to_owned()]);
    for (name, value) in GENEROUS_LIMITS {
        args.extend([
            format!("--{}", name.to_lowercase().replace('_', "-")),
            (*value).to_owned(),
        ]);
    }
    Wrapper::try_parse_from(args)
        .expect("test settings parse")
        .settings
}

static LOG: Once = Once::new();

fn init_logs() {
    LOG.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            chatty::telemetry::init(false, None);
        }
    });
}

/// Drops the test's database and Redis keys when the test ends, even when it panics.
pub struct Cleanup {
    db_name: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let db_name = std::mem::take(&mut self.db_name);
        let prefix = std::mem::take(&mut self.prefix);
        // A fresh runtime on a fresh thread: Drop may run inside (or after) the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
                    "{}/postgres",
                    pg_base()
                ))
                .await
                {
                    let sql = format!("drop database if exists \"{db_name}\" with (force)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
                if let Ok(client) = redis::Client::open(redis_url()) {
                    if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{prefix}*"))
                            .query_async(&mut c)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _: Result<(), _> =
                                redis::cmd("DEL").arg(keys).query_async(&mut c).await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// One running node plus a client for it.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// The typed REST client of this node; `client` is its HTTP client.
    pub api: Api,
    pub client: reqwest::Client,
    pub db_name: String,
    pub prefix: String,
    pub redis: bool,
    pub state: AppState,
    pub db: sqlx::PgPool,
    /// The port of `/metrics` when it has a listener of its own (`CHATTY_METRICS_ADDR`).
    pub metrics_port: Option<u16>,
    /// Stops this node when dropped (or sent to).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Only the first node of a test owns the cleanup.
    _cleanup: Option<Cleanup>,
}

/// A node with Redis as its fabric, on a fresh database and key prefix.
pub async fn spawn_app() -> TestApp {
    spawn_with(true).await
}

/// A single node with the in-process fabric (no Redis).
pub async fn spawn_app_memory() -> TestApp {
    spawn_with(false).await
}

async fn spawn_with(redis: bool) -> TestApp {
    spawn_configured(redis, |_| {}).await
}

/// A node whose settings `tweak` adjusts (short presence leases, say).
pub async fn spawn_configured(redis: bool, tweak: impl Fn(&mut Settings)) -> TestApp {
    init_logs();
    let id = Uuid::new_v4().simple().to_string();
    let db_name = format!("chatty_test_{id}");
    let prefix = format!("test:{id}:");
    let cleanup = Cleanup {
        db_name: db_name.clone(),
        prefix: prefix.clone(),
    };
    let mut settings = test_settings(&db_name, &prefix, redis);
    tweak(&mut settings);
    let mut app = start(settings).await;
    app._cleanup = Some(cleanup);
    app
}

impl TestApp {
    /// Another node of the same cluster: same database, same Redis prefix.
    pub async fn spawn_peer(&self) -> TestApp {
        start(test_settings(&self.db_name, &self.prefix, self.redis)).await
    }

    /// A peer whose settings `tweak` adjusts; same database and prefix.
    pub async fn spawn_peer_configured(&self, tweak: impl Fn(&mut Settings)) -> TestApp {
        let mut settings = test_settings(&self.db_name, &self.prefix, self.redis);
        tweak(&mut settings);
        start(settings).await
    }

    /// A chat (`/`) socket authenticated with `token`.
    pub async fn socket(&self, token: &str) -> SioClient {
        SioClient::connect(&self.address, "/", json!({ "token": token }))
            .await
            .expect("socket connects")
    }

    /// A `/notifications` socket authenticated with `token`.
    pub async fn notifications_socket(&self, token: &str) -> SioClient {
        SioClient::connect(&self.address, "/notifications", json!({ "token": token }))
            .await
            .expect("notifications socket connects")
    }

    /// A conversation made directly in the database, for tests of layers above it.
    pub async fn conversation_of(&self, members: &[&TestUser]) -> Uuid {
        let id: Uuid = sqlx::query_scalar(
            "insert into conversations (name, is_group) values ('test group', true) returning conversation_id",
        )
        .fetch_one(&self.db)
        .await
        .expect("conversation");
        for m in members {
            sqlx::query(
                "insert into conversation_participants (conversation_id, user_id) values ($1, $2)",
            )
            .bind(id)
            .bind(m.id)
            .execute(&self.db)
            .await
            .expect("participant");
        }
        id
    }

    /// A group of `creator` and `others`, created through the API.
    pub async fn group(&self, creator: &TestUser, others: &[&TestUser]) -> Uuid {
        let ids: Vec<Uuid> = others.iter().map(|u| u.id).collect();
        let resp = self
            .post(
                "/conversations",
                &creator.token,
                json!({ "name": "crew", "is_group": true, "participant_ids": ids }),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "group");
        let b: Value = resp.json().await.expect("group body");
        b["conversation_id"]
            .as_str()
            .expect("conversation id")
            .parse()
            .expect("uuid")
    }

    /// The user's status column.
    pub async fn status_of(&self, user: Uuid) -> String {
        sqlx::query_scalar("select status from users where user_id = $1")
            .bind(user)
            .fetch_one(&self.db)
            .await
            .expect("status")
    }

    /// Starts `chatty serve` as a separate process in this cluster, for tests that kill a node.
    pub fn spawn_process(&self, extra_env: &[(&str, &str)]) -> ProcessNode {
        let port = free_port();
        let mut cmd = self.process_command(port);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn chatty");
        ProcessNode {
            child,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `chatty serve` on `port` in this cluster (database, Redis prefix, JWT secret), with
    /// output discarded unless `TEST_LOG` is set; callers may adjust it before spawning.
    pub fn process_command(&self, port: u16) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatty"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", format!("{}/{}", pg_base(), self.db_name))
            .env("JWT_SECRET", JWT_SECRET)
            .env("CHATTY_ADDR", format!("127.0.0.1:{port}"))
            .env("CHATTY_REDIS_PREFIX", &self.prefix)
            .env("CHATTY_NO_MIGRATE", "true")
            .env("RUST_LOG", "warn")
            .envs(
                GENEROUS_LIMITS
                    .iter()
                    .map(|(name, value)| (format!("CHATTY_{name}"), *value)),
            )
            .stdout(std::process::Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            });
        if self.redis {
            cmd.env("REDIS_URL", redis_url());
        }
        cmd
    }

    /// Stops this node as SIGTERM would, and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request failed")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    pub async fn post_register(&self, body: Value) -> Response {
        self.request(Method::POST, "/auth/register", None, Some(body))
            .await
    }

    pub async fn post_login(&self, body: Value) -> Response {
        self.request(Method::POST, "/auth/login", None, Some(body))
            .await
    }

    /// Registers `name` (password `password-<name>`) and returns the token and user.
    pub async fn register(&self, name: &str) -> TestUser {
        let signed = self
            .api
            .sign_up(name, "example.com", &format!("password-{name}"), None)
            .await
            .unwrap_or_else(|e| panic!("register {name}: {e:#}"));
        TestUser {
            token: signed.access_token,
            id: signed.user_id,
            name: name.to_owned(),
        }
    }

    /// Logs `user` in again as another device.
    pub async fn login(&self, user: &TestUser, device: &str) -> String {
        self.api
            .sign_in(&user.name, &format!("password-{}", user.name), Some(device))
            .await
            .unwrap_or_else(|e| panic!("login {}: {e:#}", user.name))
            .access_token
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&self.db)
            .await
            .expect("count")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

/// A node running as its own process; killed when dropped.
pub struct ProcessNode {
    pub child: std::process::Child,
    pub address: String,
}

impl ProcessNode {
    /// Waits until the node answers `/readyz`.
    pub async fn ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/readyz", self.address)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("process node at {} never became ready", self.address);
    }

    /// SIGKILL: no drain, no cleanup, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub token: String,
    pub id: Uuid,
    pub name: String,
}

async fn start(settings: Settings) -> TestApp {
    let redis = settings.redis_url.is_some();
    let db_name = settings
        .database_url
        .rsplit('/')
        .next()
        .expect("db name")
        .to_owned();
    let prefix = settings.redis_prefix.clone();
    let app = Application::build(settings).await.expect("build app");
    let port = app.port();
    let metrics_port = app.metrics_port();
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: api.http().clone(),
        api,
        db_name,
        prefix,
        redis,
        db: state.db.clone(),
        metrics_port,
        state,
        stop: Some(tx),
        server: Some(server),
        _cleanup: None,
    }
}

/// A unique, valid username for this test.
pub fn name(base: &str) -> String {
    format!("{base}_{}", &Uuid::new_v4().simple().to_string()[..8])
}

pub async fn body(resp: Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// Asserts the NestJS-shaped error body and returns it.
pub async fn assert_error(resp: Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    let b = body(resp).await;
    assert_eq!(b["statusCode"], status.as_u16(), "{b}");
    assert!(b["error"].is_string(), "{b}");
    assert!(b["message"].is_string() || b["message"].is_array(), "{b}");
    b
}

/// Asserts a 400 whose body names `field`.
pub async fn assert_invalid(resp: Response, field: &str) -> Value {
    let b = assert_error(resp, StatusCode::BAD_REQUEST).await;
    let named = b["fields"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == field))
        || b["message"].to_string().contains(field);
    assert!(named, "400 body does not name {field}: {b}");
    b
}
