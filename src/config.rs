use std::{fmt, net::SocketAddr, time::Duration};

use clap::Args;

use crate::fabric::{Rate, RedisTarget};

/// Secrets shorter than this are rejected outside dev mode: HS256 keys should carry at
/// least as many bytes as the hash output.
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// A dev-mode key, so that several dev nodes accept each other's tokens.
const DEV_JWT_SECRET: &str = "chatty-dev-secret-do-not-use-in-production-0123456789";

/// Every setting of a node. Read once in `main` from the environment, flags overriding.
#[derive(Clone, Args)]
pub struct Settings {
    /// PostgreSQL URL; the only durable store. The database is created when missing.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Redis URL (Redis >= 7). Without it the node runs alone with in-process fan-out,
    /// presence and sessions.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Seed nodes of a Redis Cluster (>= 7), comma-separated, instead of `REDIS_URL`:
    /// `redis://10.0.0.1:6379,redis://10.0.0.2:6379`. The rest of the cluster is found
    /// from them.
    #[arg(long, env = "REDIS_CLUSTER_URLS", hide_env_values = true)]
    pub redis_cluster_urls: Option<String>,

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

    /// Lifetime of a device session and its refresh token, in seconds; each refresh starts
    /// it again, so a device in use stays signed in.
    #[arg(long, env = "CHATTY_TOKEN_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub token_ttl_secs: u64,

    /// Lifetime of an access token, in seconds; clients renew it with their refresh token.
    #[arg(long, env = "CHATTY_ACCESS_TOKEN_TTL_SECS", default_value_t = 15 * 60)]
    pub access_token_ttl_secs: u64,

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

    /// Failed logins per account (however it is addressed: username, email, any case),
    /// as `N/period` (`10/5m`: ten at once, then one more every 30 s).
    #[arg(long, env = "CHATTY_LIMIT_LOGIN_FAILURES", default_value = "10/5m", value_parser = parse_rate)]
    pub limit_login_failures: Rate,

    /// Failed logins per client address, whatever the account (password spraying).
    #[arg(long, env = "CHATTY_LIMIT_ADDRESS_LOGIN_FAILURES", default_value = "30/5m", value_parser = parse_rate)]
    pub limit_address_login_failures: Rate,

    /// Sign-ups per client address.
    #[arg(long, env = "CHATTY_LIMIT_ADDRESS_SIGNUPS", default_value = "20/1h", value_parser = parse_rate)]
    pub limit_address_signups: Rate,

    /// Messages per user, over REST and sockets and all of the user's devices together.
    #[arg(long, env = "CHATTY_LIMIT_SENDS", default_value = "30/10s", value_parser = parse_rate)]
    pub limit_sends: Rate,

    /// Client events per socket (any event, refused or not).
    #[arg(long, env = "CHATTY_LIMIT_SOCKET_EVENTS", default_value = "200/10s", value_parser = parse_rate)]
    pub limit_socket_events: Rate,

    /// Client events one socket may have in flight at once; more are refused with 429
    /// ("slow down") instead of queueing for the database.
    #[arg(long, env = "CHATTY_SOCKET_MAX_IN_FLIGHT", default_value_t = 32)]
    pub socket_max_in_flight: u32,

    /// Packets that may wait to be written to one socket; a socket whose acknowledgements
    /// do not fit is told so and disconnected.
    #[arg(long, env = "CHATTY_SOCKET_BUFFER_PACKETS", default_value_t = 128)]
    pub socket_buffer_packets: usize,

    /// Largest Socket.IO frame or Engine.IO payload accepted, in bytes; a larger one
    /// closes the connection before it is parsed.
    #[arg(long, env = "CHATTY_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Sockets one user may hold across the cluster, each namespace counted.
    #[arg(long, env = "CHATTY_MAX_SOCKETS_PER_USER", default_value_t = 20)]
    pub max_sockets_per_user: usize,

    /// Password hashes computed at once (argon2id takes 19 MiB each); 0: one per core.
    #[arg(long, env = "CHATTY_HASH_CONCURRENCY", default_value_t = 0)]
    pub hash_concurrency: usize,

    /// How long a login or sign-up waits for a hashing slot before 503, in milliseconds.
    #[arg(long, env = "CHATTY_HASH_WAIT_MS", default_value_t = 2000)]
    pub hash_wait_ms: u64,

    /// Shortest time between two re-announcements of one message by retried sends, in
    /// milliseconds.
    #[arg(long, env = "CHATTY_REANNOUNCE_WINDOW_MS", default_value_t = 5000)]
    pub reannounce_window_ms: u64,

    /// Header that the trusted balancer in front sets to the client's address
    /// (`X-Real-IP`, or `X-Forwarded-For`, whose last entry is taken). Unset: the peer
    /// address of the connection. Never set it when clients reach the node directly: they
    /// could then name any address.
    #[arg(long, env = "CHATTY_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,

    /// A separate listen address for `/metrics`; when set, the public port does not serve it.
    #[arg(long, env = "CHATTY_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// How long a draining node may take to finish in-flight work after SIGTERM, in seconds.
    #[arg(long, env = "CHATTY_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,

    /// Over how many seconds a draining node closes its sockets, evenly, so that its clients
    /// reconnect elsewhere in a trickle rather than all at once. 0 closes them all at once.
    /// Must be below `CHATTY_SHUTDOWN_GRACE_SECS`.
    #[arg(long, env = "CHATTY_DRAIN_SPREAD_SECS", default_value_t = 20)]
    pub drain_spread_secs: u64,

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

    /// How long the per-conversation change log keeps a change, in seconds: a client that
    /// was away longer is told to reload (`changes_truncated`) instead of catching up.
    #[arg(long, env = "CHATTY_CHANGE_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub change_retention_secs: u64,
}

// Hand-written so the JWT secret and URLs with passwords never reach a log line.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("addr", &self.addr)
            .field("node_id", &self.node_id)
            .field("redis", &self.redis_url.is_some())
            .field("redis_cluster", &self.redis_cluster_urls.is_some())
            .field("redis_prefix", &self.redis_prefix)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

/// `N/period`: `30/10s`, `10/5m`, `20/1h`, `5/500ms`; N from 1.
pub fn parse_rate(raw: &str) -> Result<Rate, String> {
    let bad = || format!("{raw:?} is not a rate: expected N/period, e.g. 30/10s, 10/5m or 20/1h");
    let (n, period) = raw.trim().split_once('/').ok_or_else(bad)?;
    let burst: u32 = n.trim().parse().map_err(|_| bad())?;
    let period = period.trim();
    let split = period.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (amount, unit) = period.split_at(split);
    let amount: u64 = if amount.is_empty() {
        1
    } else {
        amount.parse().map_err(|_| bad())?
    };
    let per = match unit {
        "ms" => Duration::from_millis(amount),
        "s" => Duration::from_secs(amount),
        "m" => Duration::from_secs(amount * 60),
        "h" => Duration::from_secs(amount * 3600),
        _ => return Err(bad()),
    };
    if burst == 0 || per.is_zero() {
        return Err(bad());
    }
    Ok(Rate::new(burst, per))
}

impl Settings {
    /// The Redis the node uses, if any, or the one-line reason the settings are wrong.
    pub fn redis(&self) -> Result<Option<RedisTarget>, String> {
        if self.redis_prefix.contains(['{', '}']) {
            return Err(
                "CHATTY_REDIS_PREFIX must not contain '{' or '}': they would change every key's hash slot"
                    .to_owned(),
            );
        }
        RedisTarget::from_settings(
            self.redis_url.as_deref(),
            self.redis_cluster_urls.as_deref(),
        )
    }

    /// How long a draining node spreads its socket closes over, or the one-line reason the
    /// setting is wrong.
    pub fn drain_spread(&self) -> Result<Duration, String> {
        if self.drain_spread_secs > 0 && self.drain_spread_secs >= self.shutdown_grace_secs {
            return Err(format!(
                "CHATTY_DRAIN_SPREAD_SECS ({}) must be below CHATTY_SHUTDOWN_GRACE_SECS ({}): the last sockets need time to close",
                self.drain_spread_secs, self.shutdown_grace_secs
            ));
        }
        Ok(Duration::from_secs(self.drain_spread_secs))
    }

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

    /// Lifetime of a device session (and of its refresh token).
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }

    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs.max(1))
    }

    pub fn presence_ttl(&self) -> Duration {
        Duration::from_millis(self.presence_ttl_ms.max(300))
    }

    /// Password hashes computed at once.
    pub fn hash_slots(&self) -> usize {
        if self.hash_concurrency > 0 {
            self.hash_concurrency
        } else {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_count_per_period() {
        for (raw, burst, per) in [
            ("30/10s", 30, Duration::from_secs(10)),
            (" 10 / 5m ", 10, Duration::from_secs(300)),
            ("20/h", 20, Duration::from_secs(3600)),
            ("5/500ms", 5, Duration::from_millis(500)),
        ] {
            assert_eq!(parse_rate(raw), Ok(Rate::new(burst, per)), "{raw}");
        }
        for bad in ["", "10", "0/1s", "10/0s", "10/5d", "x/1s", "10/s5", "-1/1s"] {
            assert!(parse_rate(bad).is_err(), "{bad} accepted");
        }
    }
}
