use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{Bus, BusError, BusMessage, LOCAL_CHANNEL_CAPACITY, Member};

/// The bus of a single node.
pub struct MemoryBus {
    tx: broadcast::Sender<Arc<BusMessage>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(LOCAL_CHANNEL_CAPACITY).0,
        }
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, msg: BusMessage) -> Result<(), BusError> {
        // No receiver yet is not an error: nobody is connected to hear it.
        let _ = self.tx.send(Arc::new(msg));
        Ok(())
    }

    // One node hears everything it publishes: there are no channels to follow.
    async fn join(&self, _member: Member, _rooms: &[String]) {}

    fn leave(&self, _member: Member, _rooms: &[String]) {}

    fn forget(&self, _member: Member) {}

    fn members(&self) -> Vec<Member> {
        Vec::new()
    }

    fn channels(&self) -> usize {
        0
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.tx.subscribe()
    }

    fn deliver_local(&self, msg: BusMessage) {
        let _ = self.tx.send(Arc::new(msg));
    }

    fn connected(&self) -> bool {
        true
    }
}
