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

/// The user's accepted friends, whoever asked whom.
pub async fn friend_ids<'c>(db: impl PgExecutor<'c>, user: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    // Two index scans (requester side, addressee side) instead of one `or` the planner cannot index.
    sqlx::query_scalar::<_, Uuid>(
        "select addressee_id from friendships where requester_id = $1 and status = 'accepted' \
         union all \
         select requester_id from friendships where addressee_id = $1 and status = 'accepted'",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// Users who must not hear about `user`'s presence (online, offline, last seen): everyone
/// `user` has blocked. Presence fan-out subtracts these from the friends and conversation
/// partners it would otherwise tell.
pub async fn presence_hidden_from<'c>(
    db: impl PgExecutor<'c>,
    user: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar::<_, Uuid>("select blocked_id from user_blocks where blocker_id = $1")
        .bind(user)
        .fetch_all(db)
        .await
}
