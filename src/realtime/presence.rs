use std::{collections::HashMap, sync::Mutex, time::Duration};

use serde::Serialize;
use uuid::Uuid;

use crate::{
    broker::{self, BusMessage, Emit, Namespace, room},
    state::AppState,
};

/// This node's chat connections, for the batched heartbeat. Entries are added on connect
/// and removed by the socket's disconnect handler; a crashed node's entries vanish with it
/// and its Redis leases expire by themselves.
#[derive(Debug, Default)]
pub struct LocalConnections {
    /// connection id → (user, device session); std Mutex, never held across an await.
    conns: Mutex<HashMap<String, (Uuid, Uuid)>>,
}

impl LocalConnections {
    pub fn insert(&self, conn: String, user: Uuid, session: Uuid) {
        self.lock().insert(conn, (user, session));
        metrics::gauge!("socket_connections", "namespace" => "/").increment(1.0);
    }

    pub fn remove(&self, conn: &str) -> Option<Uuid> {
        let removed = self.lock().remove(conn).map(|(user, _)| user);
        if removed.is_some() {
            metrics::gauge!("socket_connections", "namespace" => "/").decrement(1.0);
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
pub async fn announce(state: &AppState, user: Uuid, status: Status) {
    let result: Result<(), sqlx::Error> = async {
        let last_seen: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
            "update users set status = $2, last_seen_at = now() where user_id = $1 returning last_seen_at",
        )
        .bind(user)
        .bind(status.as_str())
        .fetch_optional(&state.db)
        .await?
        .unwrap_or_else(chrono::Utc::now);
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
        .fetch_all(&state.db)
        .await?;
        let mut rooms: Vec<String> = audience.into_iter().map(room::user).collect();
        rooms.push(room::user(user));
        let payload = UserStatus { user_id: user, status, last_seen_at: last_seen };
        match Emit::new(Namespace::Chat, "userStatus", rooms, &payload) {
            Ok(emit) => broker::publish_or_log(state.broker.as_ref(), BusMessage::Emit(emit)).await,
            Err(e) => tracing::error!(error = %e, "cannot encode userStatus"),
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, %user, ?status, "presence transition not recorded");
    }
    metrics::counter!("presence_transitions_total", "status" => status.as_str()).increment(1);
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
            metrics::counter!("presence_heartbeat_errors_total").increment(1);
            tracing::warn!(error = %e, connections = conns.len(), "presence heartbeat failed");
            continue;
        }
        let sessions = state.local.sessions();
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
