//! The social graph (friendships, blocks) and the notification centre.
//!
//! The queries here are the ones other features ask: whether two users may talk, whose
//! presence a user hears about, who gets told about what.

pub mod friendships;
pub mod notifications;

use sqlx::PgExecutor;
use uuid::Uuid;

/// Whether either user has blocked the other. Direct messages, friend requests and group
/// invitations between such a pair are refused.
pub async fn is_blocked_between<'c>(
    db: impl PgExecutor<'c>,
    a: Uuid,
    b: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from user_blocks \
         where (blocker_id = $1 and blocked_id = $2) or (blocker_id = $2 and blocked_id = $1))",
    )
    .bind(a)
    .bind(b)
    .fetch_one(db)
    .await
}
