use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::{sync::broadcast, task::JoinHandle};

use super::{Bus, BusError, BusMessage, LOCAL_CHANNEL_CAPACITY};

/// Cluster bus on Redis pub/sub. Chatty owns the subscriber loop (rather than using
/// socketioxide-redis) so that it can reconnect by itself after Redis restarts, report
/// its state in `/readyz` and metrics, and publish each event once with its recipients.
pub struct RedisBus {
    /// Publishing connection: one multiplexed, self-reconnecting socket, so concurrent
    /// publishes pipeline and keep this node's publish order, without the pool's
    /// recycle round trip per checkout.
    conn: redis::aio::ConnectionManager,
    channel: String,
    /// Local fan-out of everything received from Redis.
    tx: broadcast::Sender<Arc<BusMessage>>,
    connected: Arc<AtomicBool>,
    /// The subscriber loop; aborted when the bus is dropped.
    task: JoinHandle<()>,
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisBus {
    /// Subscribes to `channel` and waits (up to a few seconds) until the subscription is
    /// live, so that a node reports ready only once it hears the cluster.
    pub async fn start(url: &str, channel: String) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        let tx = broadcast::channel(LOCAL_CHANNEL_CAPACITY).0;
        let connected = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(subscriber(
            client.clone(),
            channel.clone(),
            tx.clone(),
            connected.clone(),
            ready_tx,
        ));
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .context("timed out subscribing to the Redis event channel")?
            .context("subscriber stopped")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .context("cannot open the Redis publishing connection")?;
        Ok(Self {
            conn,
            channel,
            tx,
            connected,
            task,
        })
    }
}

async fn subscriber(
    client: redis::Client,
    channel: String,
    tx: broadcast::Sender<Arc<BusMessage>>,
    connected: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = RESUBSCRIBE_MIN;
    let mut lost_at: Option<Instant> = None;
    loop {
        match subscribe(&client, &channel).await {
            Ok(mut pubsub) => {
                connected.store(true, Ordering::SeqCst);
                metrics::gauge!(crate::metrics::names::BUS_CONNECTED).set(1.0);
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                } else {
                    tracing::info!(channel, "event bus reconnected to Redis");
                    metrics::counter!(crate::metrics::names::BUS_RECONNECTS).increment(1);
                }
                if let Some(at) = lost_at.take() {
                    let missed_ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let _ = tx.send(Arc::new(BusMessage::Resubscribed { missed_ms }));
                }
                backoff = RESUBSCRIBE_MIN;
                let mut stream = pubsub.on_message();
                while let Some(msg) = stream.next().await {
                    match serde_json::from_slice::<BusMessage>(msg.get_payload_bytes()) {
                        Ok(BusMessage::Resubscribed { .. }) => {
                            metrics::counter!(crate::metrics::names::BUS_DECODE_ERRORS)
                                .increment(1);
                        }
                        Ok(m) => {
                            let _ = tx.send(Arc::new(m));
                        }
                        Err(e) => {
                            metrics::counter!(crate::metrics::names::BUS_DECODE_ERRORS)
                                .increment(1);
                            tracing::warn!(error = %e, "undecodable event on the bus");
                        }
                    }
                }
                lost_at = Some(Instant::now());
                connected.store(false, Ordering::SeqCst);
                metrics::gauge!(crate::metrics::names::BUS_CONNECTED).set(0.0);
                tracing::warn!(
                    channel,
                    "event bus lost its Redis subscription; reconnecting"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "event bus cannot subscribe to Redis");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
    }
}

/// Resubscribe backoff. Short at most: publishes that reach Redis while this node is not
/// subscribed never reach it, so every moment between Redis's return and the resubscription
/// is replayed from PostgreSQL afterwards; one connection attempt costs next to nothing.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX: Duration = Duration::from_millis(250);

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

#[async_trait]
impl Bus for RedisBus {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, msg: BusMessage) -> Result<(), BusError> {
        let payload = serde_json::to_vec(&msg).context("encoding an event")?;
        let sent = async {
            let mut conn = self.conn.clone();
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(&self.channel).arg(&payload);
            match publish.query_async::<i64>(&mut conn).await {
                // The first command after Redis went away is the one that notices; the
                // manager reconnects and the event is sent once more (a rare duplicate is
                // harmless: clients deduplicate by message id and seq, a lost event is not).
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    publish.query_async::<i64>(&mut conn).await?;
                }
                other => {
                    other?;
                }
            }
            anyhow::Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                metrics::counter!(crate::metrics::names::BUS_PUBLISHED).increment(1);
                Ok(())
            }
            Err(e) => {
                // This node's own clients still hear it; other nodes' clients resume by sync.
                metrics::counter!(crate::metrics::names::BUS_PUBLISH_ERRORS).increment(1);
                let _ = self.tx.send(Arc::new(msg));
                Err(BusError(e.context("publishing to Redis")))
            }
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.tx.subscribe()
    }

    fn deliver_local(&self, msg: BusMessage) {
        let _ = self.tx.send(Arc::new(msg));
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}
