use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::PresenceStore;
use redis::FromRedisValue;

use crate::fabric::{
    FabricResult, RedisConn,
    keys::{PRESENCE_SHARDS, presence_shard},
    now_ms, ttl_ms,
};

pub(crate) struct RedisPresence(pub RedisConn);

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn connect(&self, user: Uuid, conn: &str, ttl: Duration) -> FabricResult<bool> {
        let now = now_ms();
        let ttl_ms = ttl_ms(ttl);
        let keys = &self.0.keys;
        let first: i64 = self
            .0
            .invoke(
                self.0
                    .scripts
                    .presence_connect
                    .key(keys.presence(user))
                    .key(keys.presence_index(presence_shard(user)))
                    .arg(now)
                    .arg(now + ttl_ms)
                    .arg(conn)
                    .arg(user.to_string())
                    .arg(ttl_ms),
            )
            .await?;
        Ok(first == 1)
    }

    async fn disconnect(&self, user: Uuid, conn: &str) -> FabricResult<bool> {
        let keys = &self.0.keys;
        let last: i64 = self
            .0
            .invoke(
                self.0
                    .scripts
                    .presence_disconnect
                    .key(keys.presence(user))
                    .key(keys.presence_index(presence_shard(user)))
                    .arg(now_ms())
                    .arg(conn)
                    .arg(user.to_string()),
            )
            .await?;
        Ok(last == 1)
    }

    async fn heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()> {
        let keys = &self.0.keys;
        let index = |user| keys.presence_index(presence_shard(user));
        self.0
            .renew_leases(conns, ttl, |user| keys.presence(user), Some(&index))
            .await
    }

    async fn reap(&self) -> FabricResult<Vec<Uuid>> {
        let keys = &self.0.keys;
        let shards = (0..PRESENCE_SHARDS).map(|shard| async move {
            let gone: Vec<String> = self
                .0
                .invoke(
                    self.0
                        .scripts
                        .presence_reap
                        .key(keys.presence_index(shard))
                        .arg(now_ms())
                        .arg(keys.presence_prefix(shard)),
                )
                .await?;
            FabricResult::Ok(gone)
        });
        let gone = futures_util::future::try_join_all(shards).await?;
        Ok(gone
            .iter()
            .flatten()
            .filter_map(|u| u.parse().ok())
            .collect())
    }

    async fn online_count(&self) -> FabricResult<u64> {
        let counts = self
            .0
            .scatter(
                (0..PRESENCE_SHARDS)
                    .map(|shard| {
                        let mut c = redis::cmd("ZCARD");
                        c.arg(self.0.keys.presence_index(shard));
                        c
                    })
                    .collect(),
            )
            .await?;
        let mut total = 0;
        for v in counts {
            total += u64::from_redis_value(v)?;
        }
        Ok(total)
    }

    async fn online(&self, users: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let counts = self
            .0
            .scatter(
                users
                    .iter()
                    .map(|user| {
                        let mut c = redis::cmd("ZCOUNT");
                        c.arg(self.0.keys.presence(*user)).arg(now).arg("+inf");
                        c
                    })
                    .collect(),
            )
            .await?;
        let counts = counts
            .into_iter()
            .map(i64::from_redis_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(users
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(u, _)| *u)
            .collect())
    }
}
