//! Who is typing: expiring marks per conversation.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

pub use self::memory::MemoryTyping;
pub(crate) use self::redis::RedisTyping;
use super::FabricResult;

#[async_trait]
pub trait TypingStore: Send + Sync + 'static {
    /// Marks `user` as typing in `conversation` for `ttl`; true when they were not already.
    async fn start(&self, conversation: Uuid, user: Uuid, ttl: Duration) -> FabricResult<bool>;

    /// Clears the typing mark; true when there was a live one.
    async fn stop(&self, conversation: Uuid, user: Uuid) -> FabricResult<bool>;

    /// Who is typing in `conversation` now.
    async fn list(&self, conversation: Uuid) -> FabricResult<Vec<Uuid>>;
}
