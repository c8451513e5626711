use std::{collections::HashMap, sync::Mutex, time::Duration};

use serde::Serialize;
use uuid::Uuid;

use crate::{
    bus::{self, BusMessage, Emit, Namespace, room},
    state::AppState,
};

/// This node's connections of one namespace, for the batched heartbeat. Entries are added
/// on connect and removed by the socket's disconnect handler; a crashed node's entries
/// vanish with it and its Redis leases expire by themselves.
#[derive(Debug)]
pub struct LocalConnections {
    /// The namespace, as the `socket_connections` gauge labels it.
    ns: &'static str,
    /// connection id → (user, device session); std Mutex, never held across an await.
    conns: Mutex<HashMap<String, (Uuid, Uuid)>>,
}

impl LocalConnections {
    pub fn new(ns: Namespace) -> Self {
        Self {
            ns: ns.path(),
            conns: Mutex::default(),
        }
    }

    pub fn insert(&self, conn: String, user: Uuid, session: Uuid) {
        self.lock().insert(conn, (user, session));
        metrics::gauge!(crate::metrics::names::SOCKET_CONNECTIONS, "namespace" => self.ns)
            .increment(1.0);
    }

    pub fn remove(&self, conn: &str) -> Option<Uuid> {
        let removed = self.lock().remove(conn).map(|(user, _)| user);
        if removed.is_some() {
            metrics::gauge!(crate::metrics::names::SOCKET_CONNECTIONS, "namespace" => self.ns)
                .decrement(1.0);
        }
        removed
    }

    pub fn snapshot(&self) -> Vec<(Uuid, String)> {
        self.lock()
            .iter()
            .map(|(c, (u, _))| (*u, c.clone()))
            .collect()
    }

    /// The device sessions behind this node's sockets, each once.
    pub fn sessions(&self) -> Vec<Uuid> {
        let mut s: Vec<Uuid> = self.lock().values().map(|(_, s)| *s).collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Uuid, Uuid)>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
}

impl Status {
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
pub async fn announce(state: &AppState, user: Uuid, transition: Status) {
    let result: Result<Status, sqlx::Error> = async {
        let mut lock = UserLock::acquire(&state.db, user).await?;
        let status = match state.fabric.online(&[user]).await {
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
        let audience: Vec<Uuid> = sqlx::query_scalar(
            "select p.user_id from conversation_participants me \
               join conversation_participants p on p.conversation_id = me.conversation_id \
              where me.user_id = $1 and p.user_id <> $1 \
             union \
             select case when requester_id = $1 then addressee_id else requester_id end \
               from friendships where (requester_id = $1 or addressee_id = $1) and status = 'accepted' \
             except \
             select blocked_id from user_blocks where blocker_id = $1",
        )
        .bind(user)
        .fetch_all(&mut *conn)
        .await?;
        let mut rooms: Vec<String> = audience.into_iter().map(room::user).collect();
        rooms.push(room::user(user));
        let payload = UserStatus { user_id: user, status, last_seen_at: last_seen };
        match Emit::new(Namespace::Chat, "userStatus", rooms, &payload) {
            Ok(emit) => bus::publish_or_log(state.bus.as_ref(), BusMessage::Emit(emit)).await,
            Err(e) => tracing::error!(error = %e, "cannot encode userStatus"),
        }
        lock.release().await;
        Ok(status)
    }
    .await;
    match result {
        Ok(status) => {
            metrics::counter!(crate::metrics::names::PRESENCE_TRANSITIONS, "status" => status.as_str())
                .increment(1);
        }
        Err(e) => {
            tracing::warn!(error = %e, %user, ?transition, "presence transition not recorded")
        }
    }
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

/// Renews this node's leases every third of the TTL, in one round trip, and re-registers
/// them after Redis lost its data. Also drops sockets whose device session is gone: the
/// backstop for a logout whose bus message was lost while Redis was away.
pub async fn heartbeat_loop(
    state: AppState,
    io: socketioxide::SocketIo,
    ttl: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let conns = state.local.snapshot();
        if let Err(e) = state.fabric.presence_heartbeat(&conns, ttl).await {
            metrics::counter!(crate::metrics::names::PRESENCE_HEARTBEAT_ERRORS).increment(1);
            tracing::warn!(error = %e, connections = conns.len(), "presence heartbeat failed");
            continue;
        }
        let mut sockets = conns;
        sockets.extend(state.local_notifications.snapshot());
        if let Err(e) = state.fabric.sockets_heartbeat(&sockets, ttl).await {
            metrics::counter!(crate::metrics::names::PRESENCE_HEARTBEAT_ERRORS).increment(1);
            tracing::warn!(error = %e, "socket lease heartbeat failed");
        }
        let mut sessions = state.local.sessions();
        sessions.extend(state.local_notifications.sessions());
        sessions.sort_unstable();
        sessions.dedup();
        let Ok(live) = state.fabric.live_sessions(&sessions).await else {
            continue;
        };
        let dead: Vec<String> = sessions
            .into_iter()
            .filter(|s| !live.contains(s))
            .map(room::session)
            .collect();
        if !dead.is_empty() {
            tracing::info!(
                sessions = dead.len(),
                "disconnecting sockets of ended sessions"
            );
            for ns in [Namespace::Chat, Namespace::Notifications] {
                if let Some(op) = io.of(ns.path()) {
                    let _ = op.to(dead.clone()).disconnect().await;
                }
            }
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
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match state.fabric.presence_reap().await {
            Ok(gone) => {
                for user in gone {
                    announce(&state, user, Status::Offline).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence reaper failed"),
        }
    }
}
