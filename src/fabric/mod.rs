//! The cluster fabric: everything that is shared between nodes but is not durable. With
//! Redis it spans the cluster; the in-process twin serves a single node with no Redis.
//! Both implementations pass the same behaviour tests (`tests/api/fabric.rs`).

mod keys;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use self::keys::RedisKeys;
pub use self::memory::MemoryFabric;
pub use self::redis::RedisFabric;

/// One device's login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub session_id: Uuid,
    pub user_id: Uuid,
    /// The name the client gave at login, else its User-Agent.
    pub device: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// It was the session's current token; the session has a new one now.
    Rotated { user: Uuid },
    /// It was rotated before: someone else holds (or held) the session's token.
    Reused { user: Uuid },
    /// No live session has or had it.
    Unknown,
}

/// A failure of the fabric's backing store (Redis down, protocol error).
#[derive(Debug, thiserror::Error)]
#[error("fabric: {0}")]
pub struct FabricError(#[from] pub anyhow::Error);

impl From<::redis::RedisError> for FabricError {
    fn from(e: ::redis::RedisError) -> Self {
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

/// A limit: `burst` hits at once, refilled evenly so that `burst` more fit in each `per`
/// (a generic cell rate algorithm, so there is no window edge to burst across).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per: Duration,
}

impl Rate {
    pub fn new(burst: u32, per: Duration) -> Self {
        Self {
            burst: burst.max(1),
            per,
        }
    }

    /// Time between two refills; at least a millisecond, the limiters' resolution.
    pub fn interval(&self) -> Duration {
        (self.per / self.burst.max(1)).max(Duration::from_millis(1))
    }
}

/// Whether a limited action may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; the next hit is allowed after `retry_after`.
    Refused {
        retry_after: Duration,
    },
}

#[async_trait]
pub trait Fabric: Send + Sync + 'static {
    /// "redis" or "memory", for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Whether the backing store answers.
    async fn ping(&self) -> FabricResult<()>;

    /// Stores a new session for `session.expires_at - now`, with the hash of its first
    /// refresh token.
    async fn create_session(&self, session: &Session, refresh_hash: &str) -> FabricResult<()>;

    /// Replaces the session's refresh token `presented` (a hash) by `next` and starts the
    /// session's `lifetime` again, atomically: of two concurrent uses of one token, one
    /// rotates and the other finds it already rotated.
    async fn rotate_refresh(
        &self,
        session_id: Uuid,
        presented: &str,
        next: &str,
        lifetime: Duration,
    ) -> FabricResult<Rotation>;

    /// The owner of a live session, refreshing its last-seen time; `None` once revoked or expired.
    async fn touch_session(&self, session_id: Uuid) -> FabricResult<Option<Uuid>>;

    /// Which of `sessions` still exist, in one round trip.
    async fn live_sessions(&self, sessions: &[Uuid]) -> FabricResult<Vec<Uuid>>;

    /// The user's live sessions, oldest first.
    async fn list_sessions(&self, user_id: Uuid) -> FabricResult<Vec<Session>>;

    /// Revokes one of the user's sessions; false when the user has no such session.
    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool>;

    /// Revokes every session of the user and returns their ids.
    async fn revoke_all_sessions(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>>;

    /// Takes one hit from the limiter `key` under `rate`, atomically across the cluster:
    /// of many concurrent callers, exactly as many as the limit allows go ahead.
    async fn limit_take(&self, key: &str, rate: Rate) -> FabricResult<Verdict>;

    /// Gives one hit back (the action it paid for turned out not to count).
    async fn limit_give_back(&self, key: &str, rate: Rate) -> FabricResult<()>;

    /// Forgets a limiter: its next caller finds the whole burst.
    async fn limit_reset(&self, key: &str) -> FabricResult<()>;

    /// Counts a new socket of `user` with a lease of `ttl`, unless the user already holds
    /// `cap` live sockets anywhere in the cluster (then false, and nothing changes).
    async fn sockets_admit(
        &self,
        user: Uuid,
        conn: &str,
        ttl: Duration,
        cap: usize,
    ) -> FabricResult<bool>;

    /// Stops counting a socket.
    async fn sockets_release(&self, user: Uuid, conn: &str) -> FabricResult<()>;

    /// Renews the leases of this node's sockets in one round trip (and re-registers them
    /// after the backing store lost its data).
    async fn sockets_heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()>;

    /// Registers a live connection with a lease of `ttl`; true when the user had no other
    /// live connection anywhere (the user just came online).
    async fn presence_connect(&self, user: Uuid, conn: &str, ttl: Duration) -> FabricResult<bool>;

    /// Removes a connection; true when it was the user's last live one (the user just went
    /// offline). A connection removed twice reports the transition once.
    async fn presence_disconnect(&self, user: Uuid, conn: &str) -> FabricResult<bool>;

    /// Renews the leases of all of this node's connections in one round trip. Also
    /// re-registers them after the backing store lost its data (Redis restart).
    async fn presence_heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration)
    -> FabricResult<()>;

    /// Users whose every lease ran out (their node died); each is reported once, to
    /// whichever node asks first.
    async fn presence_reap(&self) -> FabricResult<Vec<Uuid>>;

    /// How many users hold a live connection lease anywhere in the cluster (approximate:
    /// dead nodes' users count until reaped).
    async fn online_count(&self) -> FabricResult<u64>;

    /// Which of `users` have a live connection.
    async fn online(&self, users: &[Uuid]) -> FabricResult<Vec<Uuid>>;

    /// Marks `user` as typing in `conversation` for `ttl`; true when they were not already.
    async fn typing_start(
        &self,
        conversation: Uuid,
        user: Uuid,
        ttl: Duration,
    ) -> FabricResult<bool>;

    /// Clears the typing mark; true when there was one.
    async fn typing_stop(&self, conversation: Uuid, user: Uuid) -> FabricResult<bool>;

    /// Who is typing in `conversation` now.
    async fn typing_list(&self, conversation: Uuid) -> FabricResult<Vec<Uuid>>;
}
