use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use uuid::Uuid;

use super::PresenceStore;
use crate::fabric::{FabricResult, Leases, lock};

/// Presence of a single node: user → connection → lease end.
#[derive(Default)]
pub struct MemoryPresence(Mutex<Leases<String>>);

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn connect(&self, user: Uuid, conn: &str, ttl: Duration) -> FabricResult<bool> {
        let mut leases = lock(&self.0);
        let live = leases.live(user);
        let first = live.is_empty();
        live.insert(conn.to_owned(), Instant::now() + ttl);
        Ok(first)
    }

    async fn disconnect(&self, user: Uuid, conn: &str) -> FabricResult<bool> {
        // The lease counts even when expired but not yet reaped: the user is then forgotten
        // here, so this is the one report of the transition.
        let (lease, none_left) = lock(&self.0).remove(user, conn);
        Ok(lease.is_some() && none_left)
    }

    async fn heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()> {
        let mut leases = lock(&self.0);
        let until = Instant::now() + ttl;
        for (user, conn) in conns {
            leases.renew(*user, conn.clone(), until);
        }
        Ok(())
    }

    async fn reap(&self) -> FabricResult<Vec<Uuid>> {
        Ok(lock(&self.0).reap())
    }

    async fn online_count(&self) -> FabricResult<u64> {
        Ok(lock(&self.0).live_owners() as u64)
    }

    async fn online(&self, users: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        let leases = lock(&self.0);
        Ok(users
            .iter()
            .filter(|u| leases.any_live(u))
            .copied()
            .collect())
    }
}
