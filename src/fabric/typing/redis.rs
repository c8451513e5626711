use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::TypingStore;
use crate::fabric::{FabricResult, RedisConn, now_ms, ttl_ms};

pub(crate) struct RedisTyping(pub RedisConn);

#[async_trait]
impl TypingStore for RedisTyping {
    async fn start(&self, conversation: Uuid, user: Uuid, ttl: Duration) -> FabricResult<bool> {
        let now = now_ms();
        let ttl_ms = ttl_ms(ttl);
        let added: i64 = self
            .0
            .invoke(
                self.0
                    .scripts
                    .typing_start
                    .key(self.0.keys.typing(conversation))
                    .arg(now)
                    .arg(now + ttl_ms)
                    .arg(user.to_string())
                    .arg(ttl_ms),
            )
            .await?;
        Ok(added == 1)
    }

    async fn stop(&self, conversation: Uuid, user: Uuid) -> FabricResult<bool> {
        let key = self.0.keys.typing(conversation);
        let mut pipe = redis::pipe();
        pipe.cmd("ZSCORE")
            .arg(&key)
            .arg(user.to_string())
            .cmd("ZREM")
            .arg(&key)
            .arg(user.to_string())
            .ignore();
        let (score,): (Option<f64>,) = self.0.query(&pipe).await?;
        Ok(score.is_some_and(|s| s > now_ms() as f64))
    }

    async fn list(&self, conversation: Uuid) -> FabricResult<Vec<Uuid>> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGEBYSCORE")
            .arg(self.0.keys.typing(conversation))
            .arg(now_ms())
            .arg("+inf");
        let (users,): (Vec<String>,) = self.0.query(&pipe).await?;
        Ok(users.iter().filter_map(|u| u.parse().ok()).collect())
    }
}
