use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{Broker, BrokerError, BusMessage, LOCAL_CHANNEL_CAPACITY};

/// The bus of a single node.
pub struct MemoryBroker {
    tx: broadcast::Sender<Arc<BusMessage>>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(LOCAL_CHANNEL_CAPACITY).0,
        }
    }
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, msg: BusMessage) -> Result<(), BrokerError> {
        // No receiver yet is not an error: nobody is connected to hear it.
        let _ = self.tx.send(Arc::new(msg));
        Ok(())
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
