use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::{LimitStore, Rate, SocketCap, Verdict};
use crate::fabric::{FabricResult, RedisConn, now_ms, ttl_ms};

pub(crate) struct RedisLimits(pub RedisConn);

impl RedisLimits {
    /// One call of the limiter script: (allowed, ms until the next hit fits). Runs on the
    /// hot connection: a limit is checked on every send, and the pool's checkout would add
    /// a round trip to each. A retry after Redis went away takes one hit twice at worst,
    /// which errs on the side of the limit.
    async fn run(&self, key: &str, rate: Rate, cost: i64) -> FabricResult<(i64, i64)> {
        let interval = u64::try_from(rate.interval().as_millis()).unwrap_or(u64::MAX / 4);
        self.0
            .invoke_hot(
                self.0
                    .scripts
                    .rate_limit
                    .key(self.0.keys.ratelimit(key))
                    .arg(interval)
                    .arg(rate.burst)
                    .arg(cost),
            )
            .await
    }
}

#[async_trait]
impl LimitStore for RedisLimits {
    async fn take(&self, key: &str, rate: Rate) -> FabricResult<Verdict> {
        let (allowed, wait_ms) = self.run(key, rate, 1).await?;
        Ok(if allowed == 1 {
            Verdict::Allowed
        } else {
            Verdict::Refused {
                retry_after: Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
            }
        })
    }

    async fn give_back(&self, key: &str, rate: Rate) -> FabricResult<()> {
        self.run(key, rate, -1).await.map(drop)
    }

    async fn reset(&self, key: &str) -> FabricResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.0.keys.ratelimit(key)).ignore();
        self.0.query(&pipe).await
    }

    async fn admit_socket(&self, user: Uuid, conn: &str, cap: SocketCap) -> FabricResult<bool> {
        let now = now_ms();
        let ttl_ms = ttl_ms(cap.lease);
        let admitted: i64 = self
            .0
            .invoke(
                self.0
                    .scripts
                    .sockets_admit
                    .key(self.0.keys.sockets(user))
                    .arg(now)
                    .arg(now + ttl_ms)
                    .arg(conn)
                    .arg(cap.max)
                    .arg(ttl_ms),
            )
            .await?;
        Ok(admitted == 1)
    }

    async fn release_socket(&self, user: Uuid, conn: &str) -> FabricResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(self.0.keys.sockets(user))
            .arg(conn)
            .ignore();
        self.0.query(&pipe).await
    }

    async fn renew_sockets(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()> {
        let keys = &self.0.keys;
        self.0
            .renew_leases(conns, ttl, |user| keys.sockets(user), None)
            .await
    }
}
