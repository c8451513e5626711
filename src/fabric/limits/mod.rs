//! Cluster-wide limiters: generic cell-rate limiters, and per-user socket leases counted
//! against a cap.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

pub use self::memory::MemoryLimits;
pub(crate) use self::redis::RedisLimits;
use super::FabricResult;

/// A limit: `burst` hits at once, refilled evenly so that `burst` more fit in each `per`
/// (a generic cell rate algorithm, so there is no window edge to burst across).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per: Duration,
}

impl Rate {
    pub fn new(burst: u32, per: Duration) -> Self {
        Self {
            burst: burst.max(1),
            per,
        }
    }

    /// Time between two refills; at least a millisecond, the limiters' resolution.
    pub fn interval(&self) -> Duration {
        (self.per / self.burst.max(1)).max(Duration::from_millis(1))
    }
}

/// Whether a limited action may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; the next hit is allowed after `retry_after`.
    Refused {
        retry_after: Duration,
    },
}

/// How many sockets a user may hold, and how long a socket's lease lasts unless renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketCap {
    pub max: usize,
    pub lease: Duration,
}

#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Takes one hit from the limiter `key` under `rate`, atomically across the cluster:
    /// of many concurrent callers, exactly as many as the limit allows go ahead.
    async fn take(&self, key: &str, rate: Rate) -> FabricResult<Verdict>;

    /// Gives one hit back (the action it paid for turned out not to count).
    async fn give_back(&self, key: &str, rate: Rate) -> FabricResult<()>;

    /// Forgets a limiter: its next caller finds the whole burst.
    async fn reset(&self, key: &str) -> FabricResult<()>;

    /// Counts a new socket of `user` with a lease, unless the user already holds the cap's
    /// `max` live sockets anywhere in the cluster (then false, and nothing changes).
    async fn admit_socket(&self, user: Uuid, conn: &str, cap: SocketCap) -> FabricResult<bool>;

    /// Stops counting a socket.
    async fn release_socket(&self, user: Uuid, conn: &str) -> FabricResult<()>;

    /// Renews the leases of this node's sockets in one round trip (and re-registers them
    /// after the backing store lost its data).
    async fn renew_sockets(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()>;
}
