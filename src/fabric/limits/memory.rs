use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use uuid::Uuid;

use super::{LimitStore, Rate, SocketCap, Verdict};
use crate::fabric::{FabricResult, Leases, lock};

/// Limiters of a single node.
#[derive(Default)]
pub struct MemoryLimits {
    limiters: Mutex<Limiters>,
    /// user → socket → lease end.
    sockets: Mutex<Leases<String>>,
}

#[derive(Default)]
struct Limiters {
    /// limiter key → theoretical arrival time; entries in the past are spent and pruned.
    tat: HashMap<String, Instant>,
    /// Size of `tat` at which spent entries are next pruned, so a flood of distinct keys
    /// (login names, addresses) cannot grow the map without bound.
    prune_at: usize,
}

impl Limiters {
    /// One GCRA step; `take` false gives a hit back.
    fn step(&mut self, key: &str, rate: Rate, take: bool) -> Verdict {
        let now = Instant::now();
        let interval = rate.interval();
        let tat = self
            .tat
            .get(key)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        let new_tat = if take {
            let new_tat = tat + interval;
            let ahead = new_tat - now;
            let allowance = interval * rate.burst;
            if ahead > allowance {
                return Verdict::Refused {
                    retry_after: ahead - allowance,
                };
            }
            new_tat
        } else {
            tat.checked_sub(interval).unwrap_or(now)
        };
        if new_tat > now {
            self.tat.insert(key.to_owned(), new_tat);
        } else {
            self.tat.remove(key);
        }
        if self.tat.len() >= self.prune_at.max(1024) {
            self.tat.retain(|_, t| *t > now);
            self.prune_at = self.tat.len() * 2;
        }
        Verdict::Allowed
    }
}

#[async_trait]
impl LimitStore for MemoryLimits {
    async fn take(&self, key: &str, rate: Rate) -> FabricResult<Verdict> {
        Ok(lock(&self.limiters).step(key, rate, true))
    }

    async fn give_back(&self, key: &str, rate: Rate) -> FabricResult<()> {
        lock(&self.limiters).step(key, rate, false);
        Ok(())
    }

    async fn reset(&self, key: &str) -> FabricResult<()> {
        lock(&self.limiters).tat.remove(key);
        Ok(())
    }

    async fn admit_socket(&self, user: Uuid, conn: &str, cap: SocketCap) -> FabricResult<bool> {
        let mut sockets = lock(&self.sockets);
        let live = sockets.live(user);
        if !live.contains_key(conn) && live.len() >= cap.max {
            return Ok(false);
        }
        live.insert(conn.to_owned(), Instant::now() + cap.lease);
        Ok(true)
    }

    async fn release_socket(&self, user: Uuid, conn: &str) -> FabricResult<()> {
        lock(&self.sockets).remove(user, conn);
        Ok(())
    }

    async fn renew_sockets(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()> {
        let mut sockets = lock(&self.sockets);
        let until = Instant::now() + ttl;
        for (user, conn) in conns {
            sockets.renew(*user, conn.clone(), until);
        }
        Ok(())
    }
}
