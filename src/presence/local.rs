use std::{collections::HashMap, sync::Mutex, time::Duration};

use uuid::Uuid;

use crate::{
    bus::{Namespace, room},
    fabric::lock,
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

    /// The `(user, device session)` pairs behind this node's sockets, each once.
    pub fn sessions(&self) -> Vec<(Uuid, Uuid)> {
        let mut s: Vec<(Uuid, Uuid)> = self.lock().values().copied().collect();
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
        lock(&self.conns)
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
        if let Err(e) = state.fabric.presence.heartbeat(&conns, ttl).await {
            metrics::counter!(crate::metrics::names::PRESENCE_HEARTBEAT_ERRORS).increment(1);
            tracing::warn!(error = %e, connections = conns.len(), "presence heartbeat failed");
            continue;
        }
        let mut sockets = conns;
        sockets.extend(state.local_notifications.snapshot());
        if let Err(e) = state.fabric.limits.renew_sockets(&sockets, ttl).await {
            metrics::counter!(crate::metrics::names::PRESENCE_HEARTBEAT_ERRORS).increment(1);
            tracing::warn!(error = %e, "socket lease heartbeat failed");
        }
        let mut sessions = state.local.sessions();
        sessions.extend(state.local_notifications.sessions());
        sessions.sort_unstable();
        sessions.dedup();
        let Ok(live) = state.fabric.sessions.live(&sessions).await else {
            continue;
        };
        let dead: Vec<String> = sessions
            .into_iter()
            .filter(|(_, s)| !live.contains(s))
            .map(|(_, s)| room::session(s))
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
