//! Friend requests, friendships and blocks.
//!
//! A pair of users has at most one `friendships` row (unique on the unordered pair),
//! pending or accepted, whoever asked. Every change to a pair runs in one transaction that
//! first takes the pair's advisory lock: two users asking each other at the same instant,
//! or a request racing a block, happen one after the other, so the pair always ends in one
//! consistent state (one accepted friendship; no request surviving a block).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::notifications::{self, FriendNote, Notification};
use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
    users::PublicUser,
};

/// How a user stands with the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    None,
    Friends,
    /// They asked the caller.
    PendingIncoming,
    /// The caller asked them.
    PendingOutgoing,
    /// The caller blocked them.
    Blocked,
}

impl Relationship {
    pub fn parse(s: &str) -> Self {
        match s {
            "friends" => Self::Friends,
            "pending_incoming" => Self::PendingIncoming,
            "pending_outgoing" => Self::PendingOutgoing,
            "blocked" => Self::Blocked,
            _ => Self::None,
        }
    }
}

/// Who asked, from the viewer's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The other user asked the viewer.
    Incoming,
    /// The viewer asked the other user.
    Outgoing,
}

/// A friendship (pending or accepted) as one of its two users sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FriendshipView {
    pub friendship_id: Uuid,
    /// `pending` or `accepted`.
    pub status: String,
    pub direction: Direction,
    pub requester_id: Uuid,
    pub addressee_id: Uuid,
    pub accepted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The other user, with their presence.
    pub user: PublicUser,
}

/// The columns `FriendshipRow` reads; `$1` is the viewer, the joined user the other side.
macro_rules! view_select {
    () => {
        "select f.friendship_id, f.requester_id, f.addressee_id, f.status as friendship_status, \
                f.accepted_at, f.created_at as requested_at, f.updated_at as friendship_updated_at, \
                u.user_id, u.username, u.status, u.last_seen_at, u.created_at, u.updated_at \
         from friendships f \
         join users u on u.user_id = (case when f.requester_id = $1 then f.addressee_id else f.requester_id end) "
    };
}
pub(crate) use view_select;

/// One row of `view_select!`.
#[derive(Debug, sqlx::FromRow)]
pub struct FriendshipRow {
    friendship_id: Uuid,
    requester_id: Uuid,
    addressee_id: Uuid,
    friendship_status: String,
    accepted_at: Option<DateTime<Utc>>,
    requested_at: DateTime<Utc>,
    friendship_updated_at: DateTime<Utc>,
    #[sqlx(flatten)]
    user: PublicUser,
}

impl FriendshipRow {
    pub fn view(self, viewer: Uuid) -> FriendshipView {
        FriendshipView {
            friendship_id: self.friendship_id,
            status: self.friendship_status,
            direction: if self.requester_id == viewer {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            requester_id: self.requester_id,
            addressee_id: self.addressee_id,
            accepted_at: self.accepted_at,
            created_at: self.requested_at,
            updated_at: self.friendship_updated_at,
            user: self.user,
        }
    }
}

/// A user the caller blocked.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BlockedUser {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub user: PublicUser,
    pub blocked_at: DateTime<Utc>,
}

/// What a friend request did.
#[derive(Debug)]
pub enum RequestOutcome {
    /// A new pending request.
    Requested(FriendshipView),
    /// The other user had already asked: the two are now friends.
    Accepted(FriendshipView),
}

/// The bare pair row, read under the pair lock.
#[derive(Debug, sqlx::FromRow)]
struct Pair {
    friendship_id: Uuid,
    requester_id: Uuid,
    status: String,
}

fn not_self(me: Uuid, other: Uuid) -> ApiResult<()> {
    if me == other {
        return Err(ApiError::invalid("friendId", "must not be your own id"));
    }
    Ok(())
}

/// Serialises every change to the pair {a, b} until the transaction ends. The key is a
/// 64-bit hash of the ordered pair; a collision only makes two unrelated pairs wait for
/// each other.
async fn lock_pair(conn: &mut PgConnection, a: Uuid, b: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "select pg_advisory_xact_lock(hashtextextended( \
             least($1::uuid, $2::uuid)::text || greatest($1::uuid, $2::uuid)::text, 7157))",
    )
    .bind(a)
    .bind(b)
    .execute(conn)
    .await?;
    Ok(())
}

async fn pair(conn: &mut PgConnection, a: Uuid, b: Uuid) -> Result<Option<Pair>, sqlx::Error> {
    sqlx::query_as::<_, Pair>(
        "select friendship_id, requester_id, status from friendships \
         where least(requester_id, addressee_id) = least($1::uuid, $2::uuid) \
           and greatest(requester_id, addressee_id) = greatest($1::uuid, $2::uuid) \
         for update",
    )
    .bind(a)
    .bind(b)
    .fetch_optional(conn)
    .await
}

async fn ensure_user(conn: &mut PgConnection, id: Uuid) -> ApiResult<()> {
    let exists =
        sqlx::query_scalar::<_, bool>("select exists (select 1 from users where user_id = $1)")
            .bind(id)
            .fetch_one(conn)
            .await?;
    if exists {
        Ok(())
    } else {
        Err(ApiError::not_found("user"))
    }
}

async fn load_view(
    conn: &mut PgConnection,
    viewer: Uuid,
    friendship_id: Uuid,
) -> ApiResult<FriendshipView> {
    let row =
        sqlx::query_as::<_, FriendshipRow>(concat!(view_select!(), "where f.friendship_id = $2"))
            .bind(viewer)
            .bind(friendship_id)
            .fetch_one(conn)
            .await?;
    Ok(row.view(viewer))
}

/// Refuses with 403 when either user blocked the other.
async fn ensure_not_blocked(conn: &mut PgConnection, me: Uuid, other: Uuid) -> ApiResult<()> {
    let blockers = sqlx::query_scalar::<_, Uuid>(
        "select blocker_id from user_blocks \
         where (blocker_id = $1 and blocked_id = $2) or (blocker_id = $2 and blocked_id = $1)",
    )
    .bind(me)
    .bind(other)
    .fetch_all(conn)
    .await?;
    if blockers.contains(&me) {
        Err(ApiError::Forbidden(
            "you have blocked this user; unblock them first".into(),
        ))
    } else if blockers.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "you cannot send a friend request to this user".into(),
        ))
    }
}

/// The user id behind a username (case-insensitive), or 404.
pub async fn user_id_by_name(state: &AppState, username: &str) -> ApiResult<Uuid> {
    sqlx::query_scalar::<_, Uuid>("select user_id from users where lower(username) = lower($1)")
        .bind(username.trim())
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// `me` asks `other` to be friends. When `other` already asked `me`, this accepts their
/// request instead of making a second one.
pub async fn send_request(state: &AppState, me: Uuid, other: Uuid) -> ApiResult<RequestOutcome> {
    not_self(me, other)?;
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    ensure_user(&mut tx, other).await?;
    ensure_not_blocked(&mut tx, me, other).await?;
    let (outcome, note) = match pair(&mut tx, me, other).await? {
        None => {
            // The lock makes a conflict impossible here; `do nothing` keeps a writer that
            // bypasses it from turning into a 500.
            let id = sqlx::query_scalar::<_, Uuid>(
                "insert into friendships (requester_id, addressee_id) values ($1, $2) \
                 on conflict ((least(requester_id, addressee_id)), (greatest(requester_id, addressee_id))) \
                 do nothing returning friendship_id",
            )
            .bind(me)
            .bind(other)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::Conflict("a friend request between you already exists".into()))?;
            let note =
                notifications::store_friend_note(&mut *tx, FriendNote::Request, me, other).await?;
            (
                RequestOutcome::Requested(load_view(&mut tx, me, id).await?),
                note,
            )
        }
        Some(p) if p.status == "accepted" => {
            return Err(ApiError::Conflict("you are already friends".into()));
        }
        Some(p) if p.requester_id == me => {
            return Err(ApiError::Conflict(
                "you have already sent a friend request to this user".into(),
            ));
        }
        Some(p) => {
            let note = accept_pending(&mut tx, me, other, p.friendship_id).await?;
            (
                RequestOutcome::Accepted(load_view(&mut tx, me, p.friendship_id).await?),
                note,
            )
        }
    };
    tx.commit().await?;
    notifications::publish(state.bus.as_ref(), &note).await;
    Ok(outcome)
}

/// Turns `requester`'s pending request to `me` into a friendship; returns the notification
/// for `requester`, to publish after the commit.
async fn accept_pending(
    conn: &mut PgConnection,
    me: Uuid,
    requester: Uuid,
    friendship_id: Uuid,
) -> ApiResult<Notification> {
    sqlx::query(
        "update friendships set status = 'accepted', accepted_at = now() where friendship_id = $1",
    )
    .bind(friendship_id)
    .execute(&mut *conn)
    .await?;
    notifications::mark_friend_request_read(&mut *conn, me, requester).await?;
    Ok(notifications::store_friend_note(&mut *conn, FriendNote::Accepted, me, requester).await?)
}

/// `me` accepts the pending request `other` sent.
pub async fn accept(state: &AppState, me: Uuid, other: Uuid) -> ApiResult<FriendshipView> {
    not_self(me, other)?;
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    let (id, note) = match pair(&mut tx, me, other).await? {
        Some(p) if p.status == "accepted" => {
            return Err(ApiError::Conflict("you are already friends".into()));
        }
        Some(p) if p.requester_id == other => (
            p.friendship_id,
            accept_pending(&mut tx, me, other, p.friendship_id).await?,
        ),
        _ => {
            return Err(ApiError::NotFound(
                "no pending friend request from this user".into(),
            ));
        }
    };
    let view = load_view(&mut tx, me, id).await?;
    tx.commit().await?;
    notifications::publish(state.bus.as_ref(), &note).await;
    Ok(view)
}

/// `me` turns down the pending request `other` sent; its notification disappears. The
/// requester is not told.
pub async fn decline(state: &AppState, me: Uuid, other: Uuid) -> ApiResult<()> {
    drop_pending(
        state,
        (other, me),
        "no pending friend request from this user",
    )
    .await
}

/// `me` withdraws the request they sent to `other`; its notification disappears.
pub async fn cancel(state: &AppState, me: Uuid, other: Uuid) -> ApiResult<()> {
    drop_pending(state, (me, other), "no pending friend request to this user").await
}

/// Deletes the pending request from `requester` to `addressee` and its notification, or
/// answers 404 with `missing`.
async fn drop_pending(
    state: &AppState,
    (requester, addressee): (Uuid, Uuid),
    missing: &'static str,
) -> ApiResult<()> {
    not_self(requester, addressee)?;
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, requester, addressee).await?;
    let gone = sqlx::query(
        "delete from friendships where requester_id = $1 and addressee_id = $2 and status = 'pending'",
    )
    .bind(requester)
    .bind(addressee)
    .execute(&mut *tx)
    .await?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::NotFound(missing.into()));
    }
    notifications::withdraw_friend_requests(&mut *tx, requester, addressee).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends the friendship between `me` and `other`, whoever asked.
pub async fn unfriend(state: &AppState, me: Uuid, other: Uuid) -> ApiResult<()> {
    not_self(me, other)?;
    let gone = sqlx::query(
        "delete from friendships \
         where least(requester_id, addressee_id) = least($1::uuid, $2::uuid) \
           and greatest(requester_id, addressee_id) = greatest($1::uuid, $2::uuid) \
           and status = 'accepted'",
    )
    .bind(me)
    .bind(other)
    .execute(&state.db)
    .await?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::NotFound(
            "you are not friends with this user".into(),
        ));
    }
    Ok(())
}

/// `me` blocks `other`: any friendship or request between them is removed. Returns whether
/// the block is new (false when it already existed) and the blocked user.
pub async fn block(state: &AppState, me: Uuid, other: Uuid) -> ApiResult<(bool, BlockedUser)> {
    not_self(me, other)?;
    let mut tx = state.db.begin().await?;
    lock_pair(&mut tx, me, other).await?;
    ensure_user(&mut tx, other).await?;
    let created = sqlx::query(
        "insert into user_blocks (blocker_id, blocked_id) values ($1, $2) \
         on conflict on constraint user_blocks_pkey do nothing",
    )
    .bind(me)
    .bind(other)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    sqlx::query(
        "delete from friendships \
         where least(requester_id, addressee_id) = least($1::uuid, $2::uuid) \
           and greatest(requester_id, addressee_id) = greatest($1::uuid, $2::uuid)",
    )
    .bind(me)
    .bind(other)
    .execute(&mut *tx)
    .await?;
    notifications::withdraw_friend_requests(&mut *tx, me, other).await?;
    let blocked = sqlx::query_as::<_, BlockedUser>(
        "select u.user_id, u.username, u.status, u.last_seen_at, u.created_at, u.updated_at, \
                b.created_at as blocked_at \
         from user_blocks b join users u on u.user_id = b.blocked_id \
         where b.blocker_id = $1 and b.blocked_id = $2",
    )
    .bind(me)
    .bind(other)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((created, blocked))
}

/// `me` lifts their block on `other`. The friendship the block removed is not restored.
pub async fn unblock(state: &AppState, me: Uuid, other: Uuid) -> ApiResult<()> {
    not_self(me, other)?;
    let gone = sqlx::query("delete from user_blocks where blocker_id = $1 and blocked_id = $2")
        .bind(me)
        .bind(other)
        .execute(&state.db)
        .await?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::NotFound("you have not blocked this user".into()));
    }
    Ok(())
}
