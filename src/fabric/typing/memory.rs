use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use uuid::Uuid;

use super::TypingStore;
use crate::fabric::{FabricResult, Leases, lock};

/// Typing marks of a single node: conversation → user → mark end.
#[derive(Default)]
pub struct MemoryTyping(Mutex<Leases<Uuid>>);

#[async_trait]
impl TypingStore for MemoryTyping {
    async fn start(&self, conversation: Uuid, user: Uuid, ttl: Duration) -> FabricResult<bool> {
        let mut marks = lock(&self.0);
        Ok(marks
            .live(conversation)
            .insert(user, Instant::now() + ttl)
            .is_none())
    }

    async fn stop(&self, conversation: Uuid, user: Uuid) -> FabricResult<bool> {
        let (mark, _) = lock(&self.0).remove(conversation, &user);
        Ok(mark.is_some_and(|until| until > Instant::now()))
    }

    async fn list(&self, conversation: Uuid) -> FabricResult<Vec<Uuid>> {
        Ok(lock(&self.0).members(&conversation))
    }
}
