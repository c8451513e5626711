//! Device sessions: one per login, each with a rotating refresh token.
//!
//! PostgreSQL (`device_sessions`) is the truth for everything that changes a session:
//! create, refresh rotation, list, revoke. The per-request check (`touch`) and the socket
//! checks (`live`) read a cache instead, so they stay off PostgreSQL: Redis for a cluster
//! (also the revocation broadcast: every node reads the same cache), the node's memory for
//! a single node. The cache may lose anything at any time (Redis restarted empty, a
//! failover that lost the last writes): a miss reads the row and caches it again.
//!
//! Revocation first drops the cached copy and leaves a revocation mark that outlives every
//! access token of the session, in one atomic step in the cache, then deletes the row. A
//! refill does nothing while the mark exists, so a node that read the row just before it
//! was deleted cannot put the session back; and a request carrying a revoked session is
//! refused by the mark without asking PostgreSQL. A miss whose row is gone leaves the same
//! mark, so a flood of tokens of a dead session costs PostgreSQL one query per node.
//!
//! Last seen: `touch` moves it in the cache only; the row gets it at sign-in and at each
//! refresh (about once per access-token lifetime for an active device), and
//! `list` shows the later of the two. So the hot path never writes to PostgreSQL, and a
//! lost cache loses at most one access-token lifetime of last-seen precision.

mod durable;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use self::durable::DurableSessions;
pub use self::memory::MemorySessions;
pub(crate) use self::redis::RedisSessions;
use super::FabricResult;

/// One device's login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Session {
    pub session_id: Uuid,
    pub user_id: Uuid,
    /// The name the client gave at login, else its User-Agent.
    pub device: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A refresh token presented for rotation.
#[derive(Debug, Clone, Copy)]
pub struct Rotate<'a> {
    /// The hash of the token presented.
    pub presented: &'a str,
    /// The hash of its successor.
    pub next: &'a str,
    /// How long the session lives from now on.
    pub lifetime: Duration,
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

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session for `session.expires_at - now`, with the hash of its first
    /// refresh token.
    async fn create(&self, session: &Session, refresh_hash: &str) -> FabricResult<()>;

    /// Replaces the session's refresh token by the next one and starts the session's
    /// lifetime again, atomically: of two concurrent uses of one token, one rotates and the
    /// other finds it already rotated.
    async fn rotate_refresh(&self, session_id: Uuid, r: Rotate<'_>) -> FabricResult<Rotation>;

    /// Whether the user's session is live, refreshing its last-seen time; false once
    /// revoked or expired, and for a session of another user.
    async fn touch(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool>;

    /// Which of the `(user, session)` pairs are live sessions, in one round trip when the
    /// cache knows them all.
    async fn live(&self, sessions: &[(Uuid, Uuid)]) -> FabricResult<Vec<Uuid>>;

    /// The user's live sessions, oldest first.
    async fn list(&self, user_id: Uuid) -> FabricResult<Vec<Session>>;

    /// Revokes one of the user's sessions; false when the user has no such session.
    async fn revoke(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool>;

    /// Revokes every session of the user and returns their ids.
    async fn revoke_all(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>>;
}

/// What the cache knows of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    Live,
    /// Marked revoked (or found missing in PostgreSQL) a moment ago.
    Revoked,
    /// Not cached: ask PostgreSQL.
    Unknown,
}

/// A session as builds before durable sessions kept it, in Redis alone.
#[derive(Debug, Clone)]
pub struct LegacySession {
    pub session: Session,
    pub refresh_hash: String,
    /// Hashes of its rotated refresh tokens.
    pub rotated: Vec<String>,
}

/// The cluster-wide cache of live sessions under [`DurableSessions`]. Every key of one
/// user's sessions lives in one Redis Cluster slot (the user is the hash tag), so each
/// method's atomic step touches one slot.
#[async_trait]
pub trait SessionCache: Send + Sync + 'static {
    /// What the cache knows of the user's session; a live one's last-seen time becomes now.
    async fn touch(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<Cached>;

    /// What the cache knows of each `(user, session)`, without touching them.
    async fn probe(&self, sessions: &[(Uuid, Uuid)]) -> FabricResult<Vec<Cached>>;

    /// Caches a live session read from PostgreSQL, unless it was marked revoked since;
    /// false when it was. A cached last-seen time later than the session's is kept.
    async fn fill(&self, session: &Session) -> FabricResult<bool>;

    /// Drops the user's cached sessions and marks them revoked for `mark`, each in one
    /// atomic step; how many were cached.
    async fn forget(&self, user_id: Uuid, sessions: &[Uuid], mark: Duration)
    -> FabricResult<usize>;

    /// The cached last-seen times of the user's sessions, in order.
    async fn last_seen(
        &self,
        user_id: Uuid,
        sessions: &[Uuid],
    ) -> FabricResult<Vec<Option<DateTime<Utc>>>>;

    /// A live session as a build before durable sessions left it in this backend, so that
    /// upgrading signs no device out. Such a session is read when PostgreSQL does not know
    /// it, stored there, then dropped here with [`Self::drop_legacy`].
    async fn legacy(&self, _session_id: Uuid) -> FabricResult<Option<LegacySession>> {
        Ok(None)
    }

    /// Deletes a legacy session once PostgreSQL holds it.
    async fn drop_legacy(&self, _user_id: Uuid, _session_id: Uuid) -> FabricResult<()> {
        Ok(())
    }
}
