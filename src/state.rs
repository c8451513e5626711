use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::{
    auth::{Hasher, Tokens},
    bus::Bus,
    config::Settings,
    fabric::Fabric,
    presence::LocalConnections,
    social::notifications::MessageNotifier,
};

/// Everything a handler may need; cheap to clone (every field is shared).
#[derive(Clone, FromRef)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// This node's name in logs and metrics.
    pub node_id: Arc<str>,
    pub db: PgPool,
    pub fabric: Fabric,
    /// Cluster event bus; every state change clients must hear about is published here.
    pub bus: Arc<dyn Bus>,
    pub tokens: Tokens,
    /// Bounded password hashing, shared by login and sign-up.
    pub hasher: Hasher,
    /// This node's chat sockets, renewed in Redis by one batched heartbeat.
    pub local: Arc<LocalConnections>,
    /// This node's `/notifications` sockets, likewise (they count against the per-user
    /// socket limit but not for presence).
    #[from_ref(skip)]
    pub local_notifications: Arc<LocalConnections>,
    /// Set once on SIGTERM: `/readyz` fails from then on so balancers stop routing here.
    pub draining: Arc<Draining>,
    /// Queues sent messages for the notification centre; the node's notifier task writes
    /// them in batches and flushes what is queued when the node stops.
    pub notifier: MessageNotifier,
    /// Socket connect and disconnect work still under way (presence writes), which a
    /// stopping node waits for before it closes its database pool.
    pub socket_work: tokio_util::task::TaskTracker,
    /// Presence transitions this node could not record yet (see `presence::announce`).
    #[from_ref(skip)]
    pub presence_backlog: Arc<crate::presence::Backlog>,
}

#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
