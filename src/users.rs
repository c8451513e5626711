//! Users as others and as they themselves see them: the views every feature returns.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A user as the user themselves sees it (the only view with the email). Never the hash.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub status: String,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user as everybody else sees them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PublicUser {
    pub user_id: Uuid,
    pub username: String,
    pub status: String,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
