//! The cluster fabric: what nodes share but need not keep (sessions, limiters, presence
//! leases, typing marks). Each concern is one small trait with two implementations: Redis
//! for a cluster, in process for a single node with no Redis. Both pass the same behaviour
//! tests (`tests/api/fabric.rs`).
//!
//! | concern | trait | Redis | in process |
//! |---|---|---|---|
//! | device sessions, refresh tokens | [`SessionStore`] | `sessions/redis.rs` | `sessions/memory.rs` |
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

use std::sync::Arc;

pub use self::keys::RedisKeys;
pub use self::limits::{LimitStore, Rate, SocketCap, Verdict};
pub use self::redis::RedisTarget;
pub(crate) use self::redis::{RedisConn, now_ms, scatter_cluster, ttl_ms};
pub use self::sessions::{Rotate, Rotation, Session, SessionStore};
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

/// One node's view of the fabric: a store per concern, all on the same backend.
#[derive(Clone)]
pub struct Fabric {
    pub sessions: Arc<dyn SessionStore>,
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
        Ok(Self {
            sessions: Arc::new(sessions::RedisSessions(conn.clone())),
            limits: Arc::new(limits::RedisLimits(conn.clone())),
            presence: Arc::new(crate::presence::RedisPresence(conn.clone())),
            typing: Arc::new(typing::RedisTyping(conn.clone())),
            redis: Some(conn),
            kind: target.kind(),
        })
    }

    /// The fabric of a single node with no Redis.
    pub fn memory() -> Self {
        Self {
            sessions: Arc::new(sessions::MemorySessions::default()),
            limits: Arc::new(limits::MemoryLimits::default()),
            presence: Arc::new(crate::presence::MemoryPresence::default()),
            typing: Arc::new(typing::MemoryTyping::default()),
            redis: None,
            kind: "memory",
        }
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
