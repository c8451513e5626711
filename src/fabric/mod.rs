//! The cluster fabric: what nodes share but need not keep (sessions, limiters, presence
//! leases, typing marks). Each concern is one small trait with two implementations: Redis
//! for a cluster, in process for a single node with no Redis. Both pass the same behaviour
//! tests (`tests/api/fabric.rs`).
//!
//! | concern | trait | Redis | in process |
//! |---|---|---|---|
//! | device sessions, refresh tokens | [`SessionStore`] | PostgreSQL, cached in `sessions/redis.rs` | PostgreSQL, cached in `sessions/memory.rs` |
//! | rate limiters, socket leases | [`LimitStore`] | `limits/redis.rs` | `limits/memory.rs` |
//! | who is typing | [`TypingStore`] | `typing/redis.rs` | `typing/memory.rs` |
//! | who is online | [`PresenceStore`] | `presence/redis.rs` | `presence/memory.rs` |
//!
//! Presence keeps its store next to the rest of presence, in [`crate::presence`].

pub(crate) mod keys;
mod leases;
pub mod limits;
mod redis;
pub mod sessions;
pub mod typing;

use std::{sync::Arc, time::Duration};

pub use self::keys::RedisKeys;
pub use self::limits::{LimitStore, Rate, SocketCap, Verdict};
pub use self::redis::RedisTarget;
pub(crate) use self::redis::{ClusterHandle, RedisConn, now_ms, scatter_cluster, ttl_ms};
pub use self::sessions::{
    Cached, LegacySession, Rotate, Rotation, Session, SessionCache, SessionStore,
};
pub use self::typing::TypingStore;
pub(crate) use self::{leases::Leases, leases::lock};
use crate::presence::PresenceStore;

/// A failure of the fabric's backing store (Redis down, protocol error).
#[derive(Debug, thiserror::Error)]
#[error("fabric: {0}")]
pub struct FabricError(#[from] pub anyhow::Error);

impl From<::redis::RedisError> for FabricError {
    fn from(e: ::redis::RedisError) -> Self {
        Self(e.into())
    }
}

impl From<::redis::ParsingError> for FabricError {
    fn from(e: ::redis::ParsingError) -> Self {
        Self(e.into())
    }
}

impl From<sqlx::Error> for FabricError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.into())
    }
}

impl From<deadpool_redis::PoolError> for FabricError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        Self(e.into())
    }
}

impl From<FabricError> for crate::error::ApiError {
    fn from(e: FabricError) -> Self {
        Self::Internal(e.0)
    }
}

pub type FabricResult<T> = Result<T, FabricError>;

/// Outlasts the leeway with which access tokens are checked, and clock skew between nodes.
const REVOCATION_MARK_MARGIN: Duration = Duration::from_secs(60);

/// Sessions in the cache alone, until [`Fabric::with_durable_sessions`] gives them a
/// database: the mark lasts as long as the default access token.
fn cache_only(cache: &Arc<dyn SessionCache>) -> Arc<dyn SessionStore> {
    Arc::new(sessions::DurableSessions::new(
        cache.clone(),
        None,
        Duration::from_secs(15 * 60) + REVOCATION_MARK_MARGIN,
    ))
}

/// One node's view of the fabric: a store per concern, all on the same backend.
#[derive(Clone)]
pub struct Fabric {
    pub sessions: Arc<dyn SessionStore>,
    /// The cache under `sessions`, on this fabric's backend.
    pub session_cache: Arc<dyn SessionCache>,
    pub limits: Arc<dyn LimitStore>,
    pub presence: Arc<dyn PresenceStore>,
    pub typing: Arc<dyn TypingStore>,
    /// `None` in process.
    redis: Option<RedisConn>,
    kind: &'static str,
}

impl Fabric {
    /// The fabric of a cluster: every node of one cluster names the same Redis (or Redis
    /// Cluster) and prefix.
    pub async fn redis(target: &RedisTarget, prefix: &str) -> anyhow::Result<Self> {
        let conn = RedisConn::connect(target, prefix).await?;
        let session_cache: Arc<dyn SessionCache> = Arc::new(sessions::RedisSessions(conn.clone()));
        Ok(Self {
            sessions: cache_only(&session_cache),
            session_cache,
            limits: Arc::new(limits::RedisLimits(conn.clone())),
            presence: Arc::new(crate::presence::RedisPresence(conn.clone())),
            typing: Arc::new(typing::RedisTyping(conn.clone())),
            redis: Some(conn),
            kind: target.kind(),
        })
    }

    /// The fabric of a single node with no Redis.
    pub fn memory() -> Self {
        let session_cache: Arc<dyn SessionCache> = Arc::new(sessions::MemorySessions::default());
        Self {
            sessions: cache_only(&session_cache),
            session_cache,
            limits: Arc::new(limits::MemoryLimits::default()),
            presence: Arc::new(crate::presence::MemoryPresence::default()),
            typing: Arc::new(typing::MemoryTyping::default()),
            redis: None,
            kind: "memory",
        }
    }

    /// Keeps device sessions in PostgreSQL, with this fabric's backend as their cache (see
    /// [`sessions`]). `access_token_ttl` is how long an access token lives: a revoked
    /// session stays marked revoked in the cache that long (plus the tokens' leeway).
    pub fn with_durable_sessions(mut self, db: sqlx::PgPool, access_token_ttl: Duration) -> Self {
        self.sessions = Arc::new(sessions::DurableSessions::new(
            self.session_cache.clone(),
            Some(db),
            access_token_ttl + REVOCATION_MARK_MARGIN,
        ));
        self
    }

    /// "redis", "redis-cluster" or "memory", for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether the backing store answers.
    pub async fn ping(&self) -> FabricResult<()> {
        match &self.redis {
            Some(conn) => conn.ping().await,
            None => Ok(()),
        }
    }
}
