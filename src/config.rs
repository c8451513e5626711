use std::{fmt, net::SocketAddr, time::Duration};

use clap::Args;

/// Secrets shorter than this are rejected outside dev mode: HS256 keys should carry at
/// least as many bytes as the hash output.
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// A dev-mode key, so that several dev nodes accept each other's tokens.
const DEV_JWT_SECRET: &str = "chatty-dev-secret-do-not-use-in-production-0123456789";

/// Every setting of a node. Read once in `main` from the environment, flags overriding.
#[derive(Clone, Args)]
pub struct Settings {
    /// PostgreSQL URL; the only durable store. The database is created when missing.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Redis URL (Redis >= 7). Without it the node runs alone with in-process fan-out,
    /// presence and sessions.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// HS256 key for access tokens; at least 32 bytes. Required unless `--dev`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Address the HTTP and Socket.IO listener binds.
    #[arg(long = "addr", env = "CHATTY_ADDR", default_value = "0.0.0.0:3000")]
    pub addr: SocketAddr,

    /// This node's name in logs and metrics; random when unset.
    #[arg(long, env = "CHATTY_NODE_ID")]
    pub node_id: Option<String>,

    /// Prefix of every Redis key and channel, so several clusters (or tests) share a Redis.
    #[arg(long, env = "CHATTY_REDIS_PREFIX", default_value = "chatty:")]
    pub redis_prefix: String,

    /// Lifetime of an access token and of the device session behind it, in seconds.
    #[arg(long, env = "CHATTY_TOKEN_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub token_ttl_secs: u64,

    /// Dev mode: allows a missing JWT secret (a fixed, public one is used).
    #[arg(long, env = "CHATTY_DEV", default_value_t = false)]
    pub dev: bool,

    /// Do not apply pending migrations at start (run `chatty migrate` instead).
    #[arg(long, env = "CHATTY_NO_MIGRATE", default_value_t = false)]
    pub no_migrate: bool,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "CHATTY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Longest message content, in characters after trimming.
    #[arg(long, env = "CHATTY_MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub max_message_chars: usize,

    /// Upper bound of the PostgreSQL pool of this node.
    #[arg(long, env = "CHATTY_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,

    /// Failed logins allowed per username within `login_window_secs` before 429.
    #[arg(long, env = "CHATTY_LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: u64,

    /// Window of the failed-login limit, in seconds.
    #[arg(long, env = "CHATTY_LOGIN_WINDOW_SECS", default_value_t = 300)]
    pub login_window_secs: u64,

    /// How long a draining node may take to finish in-flight work after SIGTERM, in seconds.
    #[arg(long, env = "CHATTY_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,

    /// Lease of a socket's presence, in milliseconds: a node renews its leases every third
    /// of it, and a dead node's users go offline within it.
    #[arg(long, env = "CHATTY_PRESENCE_TTL_MS", default_value_t = 30_000)]
    pub presence_ttl_ms: u64,

    /// How long a typing mark lasts without renewal, in milliseconds.
    #[arg(long, env = "CHATTY_TYPING_TTL_MS", default_value_t = 6_000)]
    pub typing_ttl_ms: u64,

    /// Per-request time limit for REST routes, in seconds (not applied to Socket.IO).
    #[arg(long, env = "CHATTY_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
}

// Hand-written so the JWT secret and URLs with passwords never reach a log line.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("node_id", &self.node_id)
            .field("redis", &self.redis_url.is_some())
            .field("redis_prefix", &self.redis_prefix)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The key tokens are signed with, or the one-line reason there is none.
    pub fn jwt_key(&self) -> Result<String, String> {
        match &self.jwt_secret {
            Some(s) if s.len() >= MIN_JWT_SECRET_LEN => Ok(s.clone()),
            Some(_) if self.dev => Ok(DEV_JWT_SECRET.to_owned()),
            None if self.dev => Ok(DEV_JWT_SECRET.to_owned()),
            Some(_) => Err(format!(
                "JWT_SECRET is too short: use at least {MIN_JWT_SECRET_LEN} random bytes (e.g. `openssl rand -hex 32`)"
            )),
            None => Err(
                "JWT_SECRET is not set: set it to at least 32 random bytes (e.g. `openssl rand -hex 32`), or pass --dev"
                    .to_owned(),
            ),
        }
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    pub fn presence_ttl(&self) -> Duration {
        Duration::from_millis(self.presence_ttl_ms.max(300))
    }

    pub fn typing_ttl(&self) -> Duration {
        Duration::from_millis(self.typing_ttl_ms.max(100))
    }

    /// Settles the node id (generating one when unset), so later calls agree.
    pub fn fix_node_id(&mut self) -> String {
        let id = self.node_id();
        self.node_id = Some(id.clone());
        id
    }

    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
    }
}
