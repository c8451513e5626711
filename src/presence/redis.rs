use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::PresenceStore;
use crate::fabric::{FabricResult, RedisConn, now_ms, ttl_ms};

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
                    .key(keys.presence_index())
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
                    .key(keys.presence_index())
                    .arg(now_ms())
                    .arg(conn)
                    .arg(user.to_string()),
            )
            .await?;
        Ok(last == 1)
    }

    async fn heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()> {
        let keys = &self.0.keys;
        let index = keys.presence_index();
        self.0
            .renew_leases(conns, ttl, |user| keys.presence(user), Some(&index))
            .await
    }

    async fn reap(&self) -> FabricResult<Vec<Uuid>> {
        let keys = &self.0.keys;
        let gone: Vec<String> = self
            .0
            .invoke(
                self.0
                    .scripts
                    .presence_reap
                    .key(keys.presence_index())
                    .arg(now_ms())
                    .arg(keys.presence_prefix()),
            )
            .await?;
        Ok(gone.iter().filter_map(|u| u.parse().ok()).collect())
    }

    async fn online_count(&self) -> FabricResult<u64> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(self.0.keys.presence_index());
        let (n,): (u64,) = self.0.query(&pipe).await?;
        Ok(n)
    }

    async fn online(&self, users: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("ZCOUNT")
                .arg(self.0.keys.presence(*user))
                .arg(now)
                .arg("+inf");
        }
        let counts: Vec<i64> = self.0.query(&pipe).await?;
        Ok(users
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(u, _)| *u)
            .collect())
    }
}
