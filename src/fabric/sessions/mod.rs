//! Device sessions: one per login, each with a rotating refresh token.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use self::memory::MemorySessions;
pub(crate) use self::redis::RedisSessions;
use super::FabricResult;

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

    /// The owner of a live session, refreshing its last-seen time; `None` once revoked or
    /// expired.
    async fn touch(&self, session_id: Uuid) -> FabricResult<Option<Uuid>>;

    /// Which of `sessions` still exist, in one round trip.
    async fn live(&self, sessions: &[Uuid]) -> FabricResult<Vec<Uuid>>;

    /// The user's live sessions, oldest first.
    async fn list(&self, user_id: Uuid) -> FabricResult<Vec<Session>>;

    /// Revokes one of the user's sessions; false when the user has no such session.
    async fn revoke(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool>;

    /// Revokes every session of the user and returns their ids.
    async fn revoke_all(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>>;
}
