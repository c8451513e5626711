#![allow(dead_code)] // shared by test modules; not every helper is used by every module yet
use std::{sync::Once, time::Duration};

use chatty::{config::Settings, startup::Application, state::AppState};
use chatty_testkit::{Api, SioClient};
use clap::Parser;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long a socket test waits for an answer or an event that must come.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a socket test listens for an event that must not come.
pub const QUIET: Duration = Duration::from_millis(400);

pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

pub fn pg_base() -> String {
    std::env::var("CHATTY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("CHATTY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The seed nodes of the Redis Cluster that the cluster variants of the fabric and bus
/// suites run on; `deploy/local/test.sh` starts one and sets it.
pub fn redis_cluster_urls() -> String {
    std::env::var("CHATTY_TEST_REDIS_CLUSTER").unwrap_or_else(|_| {
        panic!(
            "CHATTY_TEST_REDIS_CLUSTER is not set: run the tests with deploy/local/test.sh, or \
             start a Redis Cluster (deploy/local/redis-cluster.sh start) and set it to the \
             output of deploy/local/redis-cluster.sh urls"
        )
    })
}

/// What a test node keeps its fabric and bus in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
    RedisCluster,
}

impl Backend {
    fn of(redis: bool) -> Self {
        if redis { Self::Redis } else { Self::Memory }
    }

    /// The Redis of the backend, as the node's settings name it.
    pub fn target(self) -> Option<chatty::fabric::RedisTarget> {
        use chatty::fabric::RedisTarget;
        match self {
            Self::Memory => None,
            Self::Redis => Some(RedisTarget::Single(redis_url())),
            Self::RedisCluster => Some(RedisTarget::Cluster(
                redis_cluster_urls().split(',').map(str::to_owned).collect(),
            )),
        }
    }
}

/// Deletes every key under `prefix` from the backend's Redis.
pub async fn delete_keys(backend: Backend, prefix: &str) {
    let pattern = format!("{prefix}*");
    match backend {
        Backend::Memory => {}
        Backend::Redis => {
            if let Ok(client) = redis::Client::open(redis_url())
                && let Ok(mut c) = client.get_multiplexed_async_connection().await
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut c).await;
                }
            }
        }
        Backend::RedisCluster => {
            let seeds: Vec<String> = redis_cluster_urls().split(',').map(str::to_owned).collect();
            let Ok(client) = redis::cluster::ClusterClient::new(seeds) else {
                return;
            };
            let Ok(mut c) = client.get_async_connection().await else {
                return;
            };
            // KEYS goes to every master; each key is deleted on its own master.
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            for key in keys {
                let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut c).await;
            }
        }
    }
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
    settings_on(db_name, prefix, Backend::of(redis))
}

/// Settings as `chatty serve` would parse them on `backend`.
pub fn settings_on(db_name: &str, prefix: &str, backend: Backend) -> Settings {
    let db_url = format!("{}/{db_name}", pg_base());
    let mut args = vec![
        "chatty".to_owned(),
        "--database-url".to_owned(),
        db_url,
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    match backend {
        Backend::Memory => {}
        Backend::Redis => args.extend(["--redis-url".to_owned(), redis_url()]),
        Backend::RedisCluster => {
            args.extend(["--redis-cluster-urls".to_owned(), redis_cluster_urls()]);
        }
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
    let mut settings = Wrapper::try_parse_from(args)
        .expect("test settings parse")
        .settings;
    // The flags above name the backend; variables of the environment must not add another.
    if backend != Backend::Redis {
        settings.redis_url = None;
    }
    if backend != Backend::RedisCluster {
        settings.redis_cluster_urls = None;
    }
    // Nodes that stop close their few sockets at once; the paced drain has its own test.
    settings.drain_spread_secs = 0;
    settings
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
    backend: Backend,
}

impl Cleanup {
    /// Drops `db_name` and the keys under `prefix` when dropped.
    pub fn new(db_name: &str, prefix: &str) -> Self {
        Self {
            db_name: db_name.to_owned(),
            prefix: prefix.to_owned(),
            backend: Backend::Redis,
        }
    }
}

/// A fresh, migrated database and a fresh key prefix, both dropped with the `Cleanup`.
pub async fn fresh_database() -> (sqlx::PgPool, String, Cleanup) {
    let id = Uuid::new_v4().simple().to_string();
    let db_name = format!("chatty_test_{id}");
    let prefix = format!("test:{id}:");
    let cleanup = Cleanup::new(&db_name, &prefix);
    let url = format!("{}/{db_name}", pg_base());
    chatty::db::ensure_database(&url).await.expect("database");
    let pool = chatty::db::connect(&url, 5).await.expect("pool");
    chatty::db::migrate(&pool).await.expect("migrations");
    (pool, prefix, cleanup)
}

/// Deletes every Redis key of one test's prefix, as a Redis restarted without persistence
/// would have lost them; other tests' keys are left alone.
pub async fn flush_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("redis url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .expect("del");
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let db_name = std::mem::take(&mut self.db_name);
        let prefix = std::mem::take(&mut self.prefix);
        let backend = self.backend;
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
                delete_keys(backend, &prefix).await;
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
    pub backend: Backend,
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

/// Two nodes of one cluster (Redis as the fabric).
pub async fn two_nodes() -> (TestApp, TestApp) {
    two_nodes_on(Backend::Redis).await
}

/// Two nodes of one cluster on `backend`.
pub async fn two_nodes_on(backend: Backend) -> (TestApp, TestApp) {
    let a = spawn_on(backend, |_| {}).await;
    let b = a.spawn_peer().await;
    (a, b)
}

/// The chat socket of each user, connected to the node paired with it.
pub async fn sockets<const N: usize>(of: [(&TestApp, &TestUser); N]) -> [SioClient; N] {
    let mut socks = Vec::with_capacity(N);
    for (node, user) in of {
        socks.push(node.socket(&user.token).await);
    }
    socks
        .try_into()
        .unwrap_or_else(|_| panic!("one socket per user"))
}

async fn spawn_with(redis: bool) -> TestApp {
    spawn_configured(redis, |_| {}).await
}

/// A node whose settings `tweak` adjusts (short presence leases, say).
pub async fn spawn_configured(redis: bool, tweak: impl Fn(&mut Settings)) -> TestApp {
    spawn_on(Backend::of(redis), tweak).await
}

/// A node on `backend` whose settings `tweak` adjusts.
pub async fn spawn_on(backend: Backend, tweak: impl Fn(&mut Settings)) -> TestApp {
    init_logs();
    let id = Uuid::new_v4().simple().to_string();
    let db_name = format!("chatty_test_{id}");
    let prefix = format!("test:{id}:");
    let cleanup = Cleanup {
        db_name: db_name.clone(),
        prefix: prefix.clone(),
        backend,
    };
    let mut settings = settings_on(&db_name, &prefix, backend);
    tweak(&mut settings);
    let mut app = start(settings).await;
    app._cleanup = Some(cleanup);
    app
}

impl TestApp {
    /// What this node receives from now on for the rooms of `users`, as it would with a
    /// socket of each namespace of each of them connected: nodes hear only their sockets'
    /// rooms.
    pub async fn hear(
        &self,
        users: &[Uuid],
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<chatty::bus::BusMessage>> {
        use chatty::bus::{Member, Namespace, room};
        let rooms: Vec<String> = users.iter().copied().map(room::user).collect();
        for ns in [Namespace::Chat, Namespace::Notifications] {
            self.state.bus.join(Member::detached(ns), &rooms).await;
        }
        self.state.bus.subscribe()
    }

    /// Another node of the same cluster: same database, same Redis prefix.
    pub async fn spawn_peer(&self) -> TestApp {
        start(settings_on(&self.db_name, &self.prefix, self.backend)).await
    }

    /// A peer whose settings `tweak` adjusts; same database and prefix.
    pub async fn spawn_peer_configured(&self, tweak: impl Fn(&mut Settings)) -> TestApp {
        let mut settings = settings_on(&self.db_name, &self.prefix, self.backend);
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

    /// Alice and bob, and a group of theirs made through the API.
    pub async fn alice_and_bob_in_a_group(&self) -> (TestUser, TestUser, Uuid) {
        let [alice, bob] = self.users(["alice", "bob"]).await;
        let conv = self.group(&alice, &[&bob]).await;
        (alice, bob, conv)
    }

    /// Alice and bob with a group of theirs made through the API, and eve, a stranger to it.
    pub async fn group_and_a_stranger(&self) -> (TestUser, TestUser, TestUser, Uuid) {
        let (alice, bob, conv) = self.alice_and_bob_in_a_group().await;
        let eve = self.register(&name("eve")).await;
        (alice, bob, eve, conv)
    }

    /// Alice and bob, and a conversation of theirs made in the database.
    pub async fn alice_and_bob_in_a_conversation(&self) -> (TestUser, TestUser, Uuid) {
        let [alice, bob] = self.users(["alice", "bob"]).await;
        let conv = self.conversation_of(&[&alice, &bob]).await;
        (alice, bob, conv)
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
        match self.backend {
            Backend::Memory => {}
            Backend::Redis => {
                cmd.env("REDIS_URL", redis_url());
            }
            Backend::RedisCluster => {
                cmd.env("REDIS_CLUSTER_URLS", redis_cluster_urls());
            }
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
        self.api.url(path)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        self.api
            .request(method, path, token, body.as_ref())
            .await
            .expect("request failed")
    }

    /// The JSON body of `GET path`, whatever its status.
    pub async fn get_body(&self, path: &str, token: &str) -> Value {
        body(self.get(path, token).await).await
    }

    /// `POST path` with `{}`: the actions whose target is all in the path.
    pub async fn post_empty(&self, path: &str, token: &str) -> Response {
        self.post(path, token, json!({})).await
    }

    /// `POST /friendships/request` from `from` to `to`.
    pub async fn request_friendship(&self, from: &TestUser, to: &TestUser) -> Response {
        let payload = json!({ "friendId": to.id });
        self.post("/friendships/request", &from.token, payload)
            .await
    }

    /// `POST /friendships/<action>/<of>` as `by`: accept, decline or block.
    pub async fn friendship(&self, action: &str, by: &TestUser, of: Uuid) -> Response {
        self.post_empty(&format!("/friendships/{action}/{of}"), &by.token)
            .await
    }

    /// Makes `a` and `b` friends directly in the database (for tests about what friendships
    /// do, not how they are made).
    pub async fn befriend(&self, a: &TestUser, b: &TestUser) {
        sqlx::query(
            "insert into friendships (requester_id, addressee_id, status, accepted_at) values ($1, $2, 'accepted', now())",
        )
        .bind(a.id)
        .bind(b.id)
        .execute(&self.db)
        .await
        .expect("befriend");
    }

    /// Users named after `bases` (see `name`), registered one after another so that their
    /// order of creation is the order given.
    pub async fn users<const N: usize>(&self, bases: [&str; N]) -> [TestUser; N] {
        let mut users = Vec::with_capacity(N);
        for base in bases {
            users.push(self.register(&name(base)).await);
        }
        users.try_into().expect("one user per name")
    }

    /// `POST /messages` of `content` to `conversation` as `sender`, whatever the answer.
    pub async fn post_message(
        &self,
        sender: &TestUser,
        conversation: Uuid,
        content: &str,
    ) -> Response {
        let message = json!({ "content": content, "conversation_id": conversation });
        self.post("/messages", &sender.token, message).await
    }

    /// Sends `content` through `POST /messages` as `sender`; the stored message.
    pub async fn send(&self, sender: &TestUser, conversation: Uuid, content: &str) -> Value {
        let resp = self.post_message(sender, conversation, content).await;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "send as {}",
            sender.name
        );
        body(resp).await
    }

    /// `PUT /messages/<id>/status` of `message` (as stored) to `status` as `user`.
    pub async fn mark(&self, user: &TestUser, message: &Value, status: &str) -> Response {
        let path = format!("{}/status", message_path(message));
        self.put(&path, &user.token, json!({ "status": status }))
            .await
    }

    /// `POST /conversations/<conversation>/participants` of `users` as `by`.
    pub async fn add_participants(
        &self,
        by: &TestUser,
        conversation: Uuid,
        users: &[Uuid],
    ) -> Response {
        let path = format!("/conversations/{conversation}/participants");
        self.post(&path, &by.token, json!({ "userIds": users }))
            .await
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

    /// Users named `<base>_<tag>` for each of `bases`, registered in that order, with a tag
    /// of their own (see `tag`); the tag and the users.
    pub async fn tagged<const N: usize>(&self, bases: [&str; N]) -> (String, [TestUser; N]) {
        let tag = tag();
        let mut users = Vec::with_capacity(N);
        for base in bases {
            users.push(self.register(&format!("{base}_{tag}")).await);
        }
        (tag, users.try_into().expect("one user per name"))
    }

    /// A user named after `base`, signed in on a second `device`: the user (with the first
    /// device's token) and the second device's token.
    pub async fn two_devices(&self, base: &str, device: &str) -> (TestUser, String) {
        let user = self.register(&name(base)).await;
        let second = self.login(&user, device).await;
        (user, second)
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
    let backend = match (&settings.redis_url, &settings.redis_cluster_urls) {
        (_, Some(_)) => Backend::RedisCluster,
        (Some(_), None) => Backend::Redis,
        (None, None) => Backend::Memory,
    };
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
        redis: backend != Backend::Memory,
        backend,
        db: state.db.clone(),
        metrics_port,
        state,
        stop: Some(tx),
        server: Some(server),
        _cleanup: None,
    }
}

/// A short tag unique to this test, for names that must sort or match together.
pub fn tag() -> String {
    Uuid::new_v4().simple().to_string()[..6].to_owned()
}

/// Asserts that a page past the last of `path` is empty and still counts `total`.
pub async fn assert_past_the_end(app: &TestApp, token: &str, path: &str, total: u64) {
    let past = app.get_body(path, token).await;
    assert_eq!(past["meta"]["total"], total, "{past}");
    assert!(past["data"].as_array().expect("data").is_empty(), "{past}");
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

/// Asserts that each `GET` path of `paths` is a 400 naming the parameter its query ends with
/// (`limit` of `/users?limit=0`).
pub async fn assert_invalid_gets(app: &TestApp, token: &str, paths: &[&str]) {
    for path in paths {
        let (_, param) = path.rsplit_once(['?', '&']).expect("a query");
        let (field, _) = param.split_once('=').expect("name=value");
        assert_invalid_get(app, token, path, field).await;
    }
}

/// Asserts that `GET path` is a 400 naming `field`.
pub async fn assert_invalid_get(app: &TestApp, token: &str, path: &str, field: &str) -> Value {
    assert_invalid(app.get(path, token).await, field).await
}

/// Asserts that `GET path` is refused with `status` and the error body.
pub async fn assert_get_error(app: &TestApp, token: &str, path: &str, status: StatusCode) -> Value {
    assert_error(app.get(path, token).await, status).await
}

/// Asserts that `GET path` is a 400 with the error body, for a value of the wrong type,
/// whose error need not name the parameter (see [`assert_invalid_gets`] for those that do).
pub async fn assert_bad_get(app: &TestApp, token: &str, path: &str) -> Value {
    assert_get_error(app, token, path, StatusCode::BAD_REQUEST).await
}

/// Asserts that each `(method, path, body)` as `token` is refused with its status and the
/// error body.
pub async fn assert_refused(
    app: &TestApp,
    token: &str,
    cases: &[(Method, &str, Option<Value>, StatusCode)],
) {
    for (method, path, payload, status) in cases {
        let resp = app
            .request(method.clone(), path, Some(token), payload.clone())
            .await;
        assert_eq!(resp.status(), *status, "{method} {path}");
        assert_error(resp, *status).await;
    }
}

/// Asserts on a fresh node that each route (`"GET /path/{id}"`, `{id}` standing for an
/// unknown id) answers 401 to a request without a token and to one with a malformed token,
/// `payload` as the body of both, so that only the token can be the reason.
pub async fn assert_unauthorized(routes: &[&str], payload: Option<Value>) {
    let app = spawn_app().await;
    let id = Uuid::new_v4().to_string();
    for route in routes {
        let (method, path) = route.split_once(' ').expect("a route is METHOD PATH");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let path = path.replace("{id}", &id);
        for token in [None, Some("not-a-token")] {
            let resp = app
                .request(method.clone(), &path, token, payload.clone())
                .await;
            assert_error(resp, StatusCode::UNAUTHORIZED).await;
        }
    }
}

/// Asserts that `GET <collection>/<an id nobody has>` is a 404.
pub async fn assert_unknown_id(app: &TestApp, token: &str, collection: &str) -> Value {
    let path = format!("{collection}/{}", Uuid::new_v4());
    assert_get_error(app, token, &path, StatusCode::NOT_FOUND).await
}

/// `field` (a string) of the element of the array `list` whose `key` is `id`.
pub fn field_where(list: &Value, key: &str, id: Uuid, field: &str) -> Option<String> {
    list.as_array()
        .expect("array")
        .iter()
        .find(|x| x[key] == id.to_string())
        .map(|x| x[field].as_str().expect("a string").to_owned())
}

/// `/messages/<id>` of `message` (as stored).
pub fn message_path(message: &Value) -> String {
    let id = message["message_id"].as_str().expect("message id");
    format!("/messages/{id}")
}

/// Of concurrent answers that may each create the same thing: how many created it (201),
/// failing on anything but 201 and 200, and the `field` id of each answer, in order.
pub async fn created_and_ids(responses: Vec<Response>, field: &str) -> (usize, Vec<Uuid>) {
    let mut created = 0;
    let mut ids = Vec::new();
    for resp in responses {
        match resp.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
        let answer = body(resp).await;
        let id = answer[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {answer}"));
        ids.push(id.parse().expect("uuid"));
    }
    (created, ids)
}

/// `field` of every element of the array `list`, as numbers.
pub fn numbers(list: &Value, field: &str) -> Vec<i64> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|x| {
            x[field]
                .as_i64()
                .unwrap_or_else(|| panic!("no {field} in {x}"))
        })
        .collect()
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

/// Socket calls of the tests: an answer or event that does not come within `WAIT` fails
/// the test where it was awaited.
pub trait SocketExt {
    /// Emits `event` with `data`; its acknowledgement.
    async fn ack(&self, event: &str, data: &Value) -> Value;
    /// The next `name` event.
    async fn event(&mut self, name: &str) -> Value;
    /// Sends `typing` on or off in `conversation`; its acknowledgement.
    async fn typing(&self, conversation: Uuid, on: bool) -> Value {
        let data = json!({ "conversationId": conversation, "isTyping": on });
        self.ack("typing", &data).await
    }
    /// Asserts that no `name` event comes within `QUIET`; `why` says what one would mean.
    async fn assert_silent(&mut self, name: &str, why: &str);
    /// Sends `content` to `conversation` over the socket; its acknowledgement.
    async fn send_message(&self, conversation: Uuid, content: &str) -> Value {
        let data = json!({ "content": content, "conversation_id": conversation });
        self.ack("sendMessage", &data).await
    }
}

impl SocketExt for SioClient {
    async fn assert_silent(&mut self, name: &str, why: &str) {
        let heard = self.collect(name, QUIET).await;
        assert!(heard.is_empty(), "{why}: {heard:?}");
    }

    async fn ack(&self, event: &str, data: &Value) -> Value {
        self.emit_with_ack(event, data, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{event}: {e:#}"))
    }

    async fn event(&mut self, name: &str) -> Value {
        self.next_event(name, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"))
    }
}
