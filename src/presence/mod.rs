//! Presence: who is online, across the cluster.
//!
//! Each socket holds a lease in the [`PresenceStore`] that its node renews in one batched
//! heartbeat (`local.rs`); a user is online while any lease is live. The first lease and
//! the last one to go are the transitions, which [`announce`] records in PostgreSQL and
//! tells the user's friends and conversation partners. A crashed node's leases run out
//! by themselves, and the reaper announces its users offline. The store has a Redis
//! implementation (`redis.rs`) and an in-process one (`memory.rs`).

mod local;
mod memory;
mod redis;

use std::time::Duration;

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::Serialize;
use uuid::Uuid;

pub use self::local::{LocalConnections, heartbeat_loop};
pub use self::memory::MemoryPresence;
pub(crate) use self::redis::RedisPresence;
use crate::{
    bus::{self, Namespace, room},
    fabric::FabricResult,
    state::AppState,
};

/// The leases behind presence, shared by every node.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Registers a live connection with a lease of `ttl`; true when the user had no other
    /// live connection anywhere (the user just came online).
    async fn connect(&self, user: Uuid, conn: &str, ttl: Duration) -> FabricResult<bool>;

    /// Removes a connection; true when it was the user's last live one (the user just went
    /// offline). A connection removed twice reports the transition once.
    async fn disconnect(&self, user: Uuid, conn: &str) -> FabricResult<bool>;

    /// Renews the leases of all of this node's connections in one round trip. Also
    /// re-registers them after the backing store lost its data (Redis restart).
    async fn heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()>;

    /// Users whose every lease ran out (their node died); each is reported once, to
    /// whichever node asks first.
    async fn reap(&self) -> FabricResult<Vec<Uuid>>;

    /// How many users hold a live connection lease anywhere in the cluster (approximate:
    /// dead nodes' users count until reaped).
    async fn online_count(&self) -> FabricResult<u64>;

    /// Which of `users` have a live connection.
    async fn online(&self, users: &[Uuid]) -> FabricResult<Vec<Uuid>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
}

impl Status {
    fn parse(s: &str) -> Self {
        if s == "online" {
            Self::Online
        } else {
            Self::Offline
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserStatus {
    user_id: Uuid,
    status: Status,
    last_seen_at: chrono::DateTime<chrono::Utc>,
}

/// The event a presence transition is announced as.
const USER_STATUS: &str = "userStatus";

/// Who hears `$user`'s presence, as a query's select list and tail: the user's
/// conversation partners and friends, except users `$user` has blocked.
macro_rules! audience_of {
    ($user:literal) => {
        concat!(
            "p.user_id from conversation_participants me \
               join conversation_participants p on p.conversation_id = me.conversation_id \
              where me.user_id = ",
            $user,
            " and p.user_id <> ",
            $user,
            " union select case when requester_id = ",
            $user,
            " then addressee_id else requester_id end from friendships \
              where (requester_id = ",
            $user,
            " or addressee_id = ",
            $user,
            ") and status = 'accepted' \
             except select blocked_id from user_blocks where blocker_id = ",
            $user
        )
    };
}

/// Records a presence transition in PostgreSQL and tells the user's friends, conversation
/// partners and own devices, in one publish. Users the subject has blocked are not told.
///
/// Transitions of one user can run at once on different nodes (one device leaving a node
/// while another joins elsewhere), and their writes and publishes could land in either
/// order, leaving the opposite of the truth. So announces of one user take turns under a
/// cluster-wide lock, and each reads the fabric's current state and writes and publishes
/// that: the last one tells what is true after every transition before it. The event
/// goes out after the write is committed, so a client that reads the user back agrees.
/// `transition` is used only when the fabric cannot be read.
///
/// A transition that cannot be recorded (in a connect storm: the pool timing out) goes to
/// the node's [`Backlog`], which [`repair_loop`] records later at a pace the database can
/// take: dropped, the user would show the wrong status until their next transition, and
/// tried again at once, it would add to the load that made it fail.
pub async fn announce(state: &AppState, user: Uuid, transition: Status) {
    match record(state, user, transition).await {
        Ok(status) => {
            metrics::counter!(crate::metrics::names::PRESENCE_TRANSITIONS, "status" => status.as_str())
                .increment(1);
        }
        Err(e) => {
            tracing::debug!(error = %e, %user, ?transition, "presence transition deferred");
            state.presence_backlog.push(user, transition);
        }
    }
}

/// Users whose last transition is yet to be recorded, with that transition (used only if
/// the fabric cannot be read when it is).
#[derive(Debug, Default)]
pub struct Backlog(std::sync::Mutex<HashMap<Uuid, Status>>);

impl Backlog {
    fn push(&self, user: Uuid, transition: Status) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user, transition);
    }

    /// Up to `max` of the waiting users, taken out.
    fn take(&self, max: usize) -> Vec<(Uuid, Status)> {
        let mut waiting = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let taken: Vec<(Uuid, Status)> = waiting.iter().take(max).map(|(u, s)| (*u, *s)).collect();
        for (user, _) in &taken {
            waiting.remove(user);
        }
        taken
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Offline announcements of reaped users in flight at once.
const REAPED_AT_ONCE: usize = 16;

/// Transitions recorded per round of [`repair_loop`], one after another: one database
/// connection at a time, whatever the backlog.
const REPAIRED_PER_ROUND: usize = 200;

/// Records the backlog's transitions, a round every `every`, one at a time; one that fails
/// again waits for the next round.
pub async fn repair_loop(
    state: AppState,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    crate::shutdown::every(every, &stop, || repair_round(&state)).await;
}

async fn repair_round(state: &AppState) {
    let round = state.presence_backlog.take(REPAIRED_PER_ROUND);
    if round.is_empty() {
        return;
    }
    let (mut recorded, mut failed) = (0, 0);
    for (user, transition) in round {
        match record(state, user, transition).await {
            Ok(status) => {
                recorded += 1;
                metrics::counter!(crate::metrics::names::PRESENCE_TRANSITIONS, "status" => status.as_str())
                    .increment(1);
            }
            Err(_) => {
                failed += 1;
                state.presence_backlog.push(user, transition);
            }
        }
    }
    tracing::info!(
        recorded,
        failed,
        waiting = state.presence_backlog.len(),
        "deferred presence transitions recorded"
    );
}

/// One attempt of [`announce`]: the status recorded and told.
async fn record(state: &AppState, user: Uuid, transition: Status) -> Result<Status, sqlx::Error> {
    let mut lock = UserLock::acquire(&state.db, user).await?;
    let status = match state.fabric.presence.online(&[user]).await {
        Ok(online) if online.contains(&user) => Status::Online,
        Ok(_) => Status::Offline,
        Err(e) => {
            tracing::warn!(error = %e, %user, "presence not readable; announcing the transition");
            transition
        }
    };
    let conn = lock.conn();
    let Some(last_seen) = sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
        "update users set status = $2, last_seen_at = now() where user_id = $1 returning last_seen_at",
    )
    .bind(user)
    .bind(status.as_str())
    .fetch_optional(&mut *conn)
    .await?
    else {
        lock.release().await;
        return Ok(status);
    };
    let audience: Vec<Uuid> = sqlx::query_scalar(concat!("select ", audience_of!("$1")))
        .bind(user)
        .fetch_all(&mut *conn)
        .await?;
    let mut rooms: Vec<String> = audience.into_iter().map(room::user).collect();
    rooms.push(room::user(user));
    let payload = UserStatus {
        user_id: user,
        status,
        last_seen_at: last_seen,
    };
    bus::announce(
        state.bus.as_ref(),
        Namespace::Chat,
        USER_STATUS,
        rooms,
        &payload,
        None,
    )
    .await;
    lock.release().await;
    Ok(status)
}

#[derive(sqlx::FromRow)]
struct Transitioned {
    user_id: Uuid,
    status: String,
    last_seen_at: chrono::DateTime<chrono::Utc>,
    audience: Vec<Uuid>,
}

/// Most users one replay re-announces; beyond it clients learn presence when they next
/// load their conversations or friends.
const REPLAY_MAX: i64 = 2_000;

/// After this node's bus subscription was down: hands its own sockets, as if from the bus,
/// the current `userStatus` of every user whose presence changed within `window` before
/// now (every transition writes `last_seen_at`), to the audience the live announce uses.
/// What it says is the user's state now, which is what the last announce of the window
/// said. Returns how many users were re-announced.
pub async fn replay_recent(
    state: &AppState,
    window: Duration,
    out: &mut Vec<bus::BusMessage>,
) -> Result<usize, sqlx::Error> {
    let from =
        chrono::Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let rows: Vec<Transitioned> = sqlx::query_as(concat!(
        "select u.user_id, u.status, u.last_seen_at, array(select ",
        audience_of!("u.user_id"),
        ") as audience from users u where u.last_seen_at >= $1 \
         order by u.last_seen_at limit $2"
    ))
    .bind(from)
    .bind(REPLAY_MAX)
    .fetch_all(&state.db)
    .await?;
    if rows.len() as i64 >= REPLAY_MAX {
        tracing::warn!(users = rows.len(), "presence replay capped");
    }
    for r in &rows {
        let mut rooms: Vec<String> = r.audience.iter().copied().map(room::user).collect();
        rooms.push(room::user(r.user_id));
        let payload = UserStatus {
            user_id: r.user_id,
            status: Status::parse(&r.status),
            last_seen_at: r.last_seen_at,
        };
        match bus::Emit::new(Namespace::Chat, USER_STATUS, rooms, &payload) {
            Ok(emit) => out.push(bus::BusMessage::Emit(emit)),
            Err(e) => tracing::error!(error = %e, "event payload cannot be encoded"),
        }
    }
    Ok(rows.len())
}

/// A PostgreSQL session advisory lock on one user, held on one pooled connection. A
/// connection that could not be unlocked (an error, or the holder dropped mid-way) is
/// closed rather than pooled, which releases the lock on the server.
struct UserLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    key: i64,
}

impl UserLock {
    async fn acquire(db: &sqlx::PgPool, user: Uuid) -> Result<Self, sqlx::Error> {
        let (high, _) = user.as_u64_pair();
        // The lock key space is 64 bits; a collision only makes two users take turns.
        let key = high as i64;
        let mut conn = db.acquire().await?;
        sqlx::query("select pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(Self {
            conn: Some(conn),
            key,
        })
    }

    fn conn(&mut self) -> &mut sqlx::PgConnection {
        self.conn.as_mut().expect("connection held until release")
    }

    async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlocked = sqlx::query_scalar::<_, bool>("select pg_advisory_unlock($1)")
            .bind(self.key)
            .fetch_one(&mut *conn)
            .await;
        if !matches!(unlocked, Ok(true)) {
            drop(conn.detach());
        }
    }
}

impl Drop for UserLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// Finds users whose node died (every lease expired) and announces them offline. Every
/// node runs it; the fabric hands each expired user to one node only.
pub async fn reaper_loop(
    state: AppState,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    crate::shutdown::every(every, &stop, || reap_round(&state)).await;
}

async fn reap_round(state: &AppState) {
    match state.fabric.presence.reap().await {
        Ok(gone) => {
            // Side by side: one waiting for a database connection holds up no other.
            futures_util::stream::iter(gone)
                .for_each_concurrent(REAPED_AT_ONCE, |user| {
                    announce(state, user, Status::Offline)
                })
                .await;
        }
        Err(e) => tracing::warn!(error = %e, "presence reaper failed"),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::{Backlog, Status};

    #[test]
    fn a_backlog_keeps_a_users_latest_transition_once_and_gives_out_at_most_a_round() {
        let backlog = Backlog::default();
        let users: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for u in &users {
            backlog.push(*u, Status::Online);
        }
        backlog.push(users[0], Status::Offline);
        assert_eq!(backlog.len(), 5);

        let first = backlog.take(3);
        let rest = backlog.take(3);
        assert_eq!((first.len(), rest.len()), (3, 2));
        assert!(backlog.is_empty());
        let all: Vec<(Uuid, Status)> = first.into_iter().chain(rest).collect();
        assert!(all.contains(&(users[0], Status::Offline)));
        for u in &users[1..] {
            assert!(all.contains(&(*u, Status::Online)));
        }
    }
}
