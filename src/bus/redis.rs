use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use async_trait::async_trait;
use redis::{
    AsyncConnectionConfig, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
    aio::MultiplexedConnection,
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo},
};
use tokio::{
    sync::{broadcast, mpsc, watch},
    task::JoinHandle,
};

use super::{
    Bus, BusError, BusMessage, LOCAL_CHANNEL_CAPACITY, Member,
    interest::{Change, Interest},
    room, wire,
};
use crate::{
    fabric::{ClusterHandle, RedisKeys, RedisTarget, scatter_cluster},
    metrics::names,
};

/// Cluster bus on Redis sharded pub/sub, one channel per room. Chatty owns the subscriber
/// (rather than using socketioxide-redis) so that it can subscribe per room as local
/// sockets come and go, resubscribe by itself after Redis restarts, report its state in
/// `/readyz` and metrics, and publish each event once per addressee in one round trip.
pub struct RedisBus {
    /// Publishing connection: one multiplexed, self-reconnecting socket, so concurrent
    /// publishes pipeline and keep this node's publish order, without the pool's
    /// recycle round trip per checkout.
    conn: Publisher,
    kind: &'static str,
    shared: Arc<Shared>,
    /// Local fan-out of everything received from Redis.
    tx: broadcast::Sender<Arc<BusMessage>>,
    /// The subscriber; aborted when the bus is dropped.
    task: JoinHandle<()>,
}

/// What the bus and its subscriber task share.
struct Shared {
    keys: RedisKeys,
    connected: AtomicBool,
    interest: Mutex<Interest>,
    /// Membership changes for the subscriber, sent while `interest` is locked so that they
    /// arrive in the order they were numbered.
    orders: mpsc::UnboundedSender<Change>,
    /// The last change Redis confirmed.
    confirmed: watch::Sender<u64>,
}

impl Shared {
    fn interest(&self) -> MutexGuard<'_, Interest> {
        // Every update leaves the bookkeeping whole; a panic elsewhere cannot corrupt it.
        self.interest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a change to the subscriber; `interest` is the held lock it came from.
    fn order(&self, interest: &Interest, change: Change) {
        if change.is_empty() {
            return;
        }
        metrics::gauge!(names::BUS_CHANNELS).set(interest.room_count() as f64);
        // Fails only once the subscriber is gone, i.e. the bus is being dropped.
        let _ = self.orders.send(change);
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The publishing half: one multiplexed, self-reconnecting socket to a single Redis, or
/// the cluster connection (a multiplexed socket per master).
enum Publisher {
    Single(redis::aio::ConnectionManager),
    Cluster(ClusterHandle),
}

/// The subscribing half, rebuilt whole whenever it loses a connection.
enum Subscriber {
    Single(MultiplexedConnection),
    /// Subscriptions go to the master of each channel's hash slot.
    Cluster(ClusterConnection),
}

impl Subscriber {
    async fn open(
        target: &RedisTarget,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> anyhow::Result<Self> {
        Ok(match target {
            RedisTarget::Single(url) => {
                // Sharded subscriptions need RESP3: subscribing is then an ordinary command
                // on a multiplexed connection, and messages arrive as pushes.
                let info = url
                    .as_str()
                    .into_connection_info()
                    .context("REDIS_URL is not a valid Redis URL")?;
                let resp3 = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(resp3))
                    .context("REDIS_URL is not a valid Redis URL")?;
                let config = AsyncConnectionConfig::new()
                    .set_push_sender(pushes)
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(5)));
                Self::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            RedisTarget::Cluster(seeds) => Self::Cluster(
                RedisTarget::cluster_client(seeds, Some(pushes))?
                    .get_async_connection()
                    .await?,
            ),
        })
    }

    /// Sends `cmds`, each naming one channel: one pipeline on a single Redis, one per hash
    /// slot on a cluster.
    async fn send(&mut self, cmds: Vec<redis::Cmd>) -> redis::RedisResult<()> {
        match self {
            Self::Single(conn) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async::<Value>(conn).await.map(drop)
            }
            Self::Cluster(conn) => scatter_cluster(conn, cmds).await.map(drop),
        }
    }

    /// Whether every Redis this subscriber listens to still answers.
    async fn ping(&mut self) -> redis::RedisResult<Value> {
        match self {
            Self::Single(conn) => redis::cmd("PING").query_async(conn).await,
            Self::Cluster(conn) => {
                conn.route_command(
                    redis::cmd("PING"),
                    RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::AllSucceeded),
                    )),
                )
                .await
            }
        }
    }
}

/// One SSUBSCRIBE or SUNSUBSCRIBE per channel: each is answered by exactly one
/// confirmation, which is what the connection counts replies by.
fn subscription(command: &str, channel: String) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(channel);
    cmd
}

impl RedisBus {
    /// Connects the subscriber and waits (up to a few seconds) until it is live, so that a
    /// node reports ready only once it hears the cluster.
    pub async fn start(target: &RedisTarget, keys: RedisKeys) -> anyhow::Result<Self> {
        let tx = broadcast::channel(LOCAL_CHANNEL_CAPACITY).0;
        let (orders, orders_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            keys,
            connected: AtomicBool::new(false),
            interest: Mutex::new(Interest::default()),
            orders,
            confirmed: watch::channel(0).0,
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(subscriber(
            target.clone(),
            shared.clone(),
            orders_rx,
            tx.clone(),
            ready_tx,
        ));
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .context("timed out subscribing to the Redis event bus")?
            .context("subscriber stopped")?;
        let conn = match target {
            RedisTarget::Single(url) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_max_delay(Duration::from_secs(2));
                Publisher::Single(
                    redis::Client::open(url.as_str())
                        .context("REDIS_URL is not a valid Redis URL")?
                        .get_connection_manager_with_config(config)
                        .await
                        .context("cannot open the Redis publishing connection")?,
                )
            }
            RedisTarget::Cluster(seeds) => Publisher::Cluster(
                ClusterHandle::connect(seeds)
                    .await
                    .context("cannot open the Redis Cluster publishing connection")?,
            ),
        };
        Ok(Self {
            conn,
            kind: target.kind(),
            shared,
            tx,
            task,
        })
    }
}

impl RedisBus {
    /// [`Bus::publish`] on a Redis Cluster: one pipeline per hash slot, all at once. When
    /// some fail, this node's own sockets of just those rooms hear the event from here: the
    /// copies that did reach their shards come back through the bus, and a second copy of
    /// those would be a duplicate.
    async fn publish_cluster(
        &self,
        conn: &ClusterConnection,
        routed: &[wire::Routed<'_>],
        msg: &BusMessage,
    ) -> Result<(), BusError> {
        use std::collections::HashMap;

        use redis::cluster_routing::Slot;

        let mut by_slot: HashMap<Slot, (Vec<(usize, usize)>, redis::Pipeline)> = HashMap::new();
        for (i, r) in routed.iter().enumerate() {
            for (j, room) in r.rooms.iter().enumerate() {
                let channel = self.shared.keys.bus_channel(room);
                let (at, pipe) = by_slot
                    .entry(Slot::for_key(channel.as_bytes()))
                    .or_insert_with(|| (Vec::new(), redis::pipe()));
                at.push((i, j));
                pipe.cmd("SPUBLISH").arg(channel).arg(&r.payload).ignore();
            }
        }
        let results =
            futures_util::future::join_all(by_slot.into_values().map(|(at, pipe)| async move {
                // The cluster connection retries by itself, through a failover too.
                let sent = pipe.query_async::<()>(&mut conn.clone()).await;
                (at, sent)
            }))
            .await;
        let mut failed: Vec<Vec<String>> = vec![Vec::new(); routed.len()];
        let mut error = None;
        for (at, sent) in results {
            if let Err(e) = sent {
                for (i, j) in at {
                    failed[i].push(room::off_bus(&routed[i].rooms[j]).to_owned());
                }
                error = Some(e);
            }
        }
        let Some(error) = error else {
            metrics::counter!(names::BUS_PUBLISHED).increment(1);
            return Ok(());
        };
        metrics::counter!(names::BUS_PUBLISH_ERRORS).increment(1);
        for (r, rooms) in routed.iter().zip(failed) {
            if rooms.is_empty() {
                continue;
            }
            match wire::addressed(&r.payload, rooms) {
                Ok(Some(part)) => {
                    let _ = self.tx.send(Arc::new(part));
                }
                // Only what cannot be taken apart goes out whole here.
                _ => {
                    let _ = self.tx.send(Arc::new(msg.clone()));
                    break;
                }
            }
        }
        Err(BusError(
            anyhow::Error::from(error).context("publishing to Redis Cluster"),
        ))
    }
}

/// Resubscribe backoff. Short at most: publishes that reach Redis while this node is not
/// subscribed never reach it, so every moment between Redis's return and the resubscription
/// is replayed from PostgreSQL afterwards; one connection attempt costs next to nothing.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX: Duration = Duration::from_millis(250);

/// A subscriber that stops hearing Redis without its socket closing (a network
/// partition) is noticed by a ping this often.
const PING_EVERY: Duration = Duration::from_secs(2);

/// Channels per resubscription pipeline: thousands of rooms resubscribe in a few round
/// trips without one enormous request.
const RESUBSCRIBE_CHUNK: usize = 1000;

/// How long a join waits for Redis to confirm its subscription before it lets the socket
/// in anyway (the resubscription after an outage covers it).
const JOIN_WAIT: Duration = Duration::from_secs(2);

async fn subscriber(
    target: RedisTarget,
    shared: Arc<Shared>,
    mut orders: mpsc::UnboundedReceiver<Change>,
    tx: broadcast::Sender<Arc<BusMessage>>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = RESUBSCRIBE_MIN;
    let mut lost_at: Option<Instant> = None;
    loop {
        let (push_tx, mut pushes) = mpsc::unbounded_channel();
        match open(&target, push_tx, &shared, &mut orders).await {
            Ok(mut conn) => {
                shared.connected.store(true, Ordering::SeqCst);
                metrics::gauge!(names::BUS_CONNECTED).set(1.0);
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                } else {
                    tracing::info!("event bus reconnected to Redis");
                    metrics::counter!(names::BUS_RECONNECTS).increment(1);
                }
                if let Some(at) = lost_at.take() {
                    let missed_ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let _ = tx.send(Arc::new(BusMessage::Resubscribed { missed_ms }));
                }
                backoff = RESUBSCRIBE_MIN;
                listen(&mut conn, &mut pushes, &mut orders, &shared, &tx).await;
                lost_at = Some(Instant::now());
                shared.connected.store(false, Ordering::SeqCst);
                metrics::gauge!(names::BUS_CONNECTED).set(0.0);
                tracing::warn!("event bus lost its Redis subscription; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "event bus cannot subscribe to Redis");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
    }
}

/// Connects and subscribes to the channel of every room this node has a socket in.
async fn open(
    target: &RedisTarget,
    pushes: mpsc::UnboundedSender<PushInfo>,
    shared: &Shared,
    orders: &mut mpsc::UnboundedReceiver<Change>,
) -> anyhow::Result<Subscriber> {
    let mut conn = Subscriber::open(target, pushes).await?;
    // The snapshot covers every change made so far, so the ones queued are dropped; later
    // ones are applied by `listen` on top of it.
    let (channels, covered) = {
        let interest = shared.interest();
        while orders.try_recv().is_ok() {}
        let channels: Vec<String> = interest
            .rooms()
            .map(|room| shared.keys.bus_channel(room))
            .collect();
        (channels, interest.issued())
    };
    for chunk in channels.chunks(RESUBSCRIBE_CHUNK) {
        conn.send(
            chunk
                .iter()
                .map(|channel| subscription("SSUBSCRIBE", channel.clone()))
                .collect(),
        )
        .await?;
    }
    shared.confirmed.send_if_modified(|c| {
        let newer = covered > *c;
        *c = (*c).max(covered);
        newer
    });
    Ok(conn)
}

/// Hears the bus and applies membership changes until the connection is lost.
async fn listen(
    conn: &mut Subscriber,
    pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    orders: &mut mpsc::UnboundedReceiver<Change>,
    shared: &Shared,
    tx: &broadcast::Sender<Arc<BusMessage>>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut batch, mut changes) = (Vec::with_capacity(256), Vec::new());
    loop {
        tokio::select! {
            n = pushes.recv_many(&mut batch, 1024) => {
                if n == 0 || !hear(&shared.keys, tx, &mut batch) {
                    return;
                }
            }
            n = orders.recv_many(&mut changes, 1024) => {
                if n == 0 {
                    return;
                }
                if let Err(e) = apply(conn, &shared.keys, &mut changes, &shared.confirmed).await {
                    tracing::warn!(error = %e, "bus subscription change failed");
                    return;
                }
            }
            _ = ping.tick() => {
                match conn.ping().await {
                    // An error reply (a restarted Redis still loading its data) is an
                    // answer: the subscriptions on this connection stand.
                    Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                        tracing::warn!(error = %e, "event bus connection stopped answering");
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Subscribes and unsubscribes as the changes say, in their order, in one round trip.
async fn apply(
    conn: &mut Subscriber,
    keys: &RedisKeys,
    changes: &mut Vec<Change>,
    confirmed: &watch::Sender<u64>,
) -> redis::RedisResult<()> {
    let mut cmds = Vec::new();
    let mut last = 0;
    for change in changes.drain(..) {
        for room in &change.subscribe {
            cmds.push(subscription("SSUBSCRIBE", keys.bus_channel(room)));
        }
        for room in &change.unsubscribe {
            cmds.push(subscription("SUNSUBSCRIBE", keys.bus_channel(room)));
        }
        last = change.order;
    }
    conn.send(cmds).await?;
    confirmed.send_if_modified(|c| {
        let newer = last > *c;
        *c = (*c).max(last);
        newer
    });
    Ok(())
}

/// Hands what arrived to this node's delivery; false once the connection is gone. An event
/// for several of this node's rooms arrives once per room, back to back (its publisher
/// sent it in one pipeline): each run of the same payload is decoded once, as one message
/// for all those rooms.
fn hear(
    keys: &RedisKeys,
    tx: &broadcast::Sender<Arc<BusMessage>>,
    batch: &mut Vec<PushInfo>,
) -> bool {
    let mut alive = true;
    let mut received = 0u64;
    let mut run: Option<(Vec<u8>, Vec<String>)> = None;
    for push in batch.drain(..) {
        match push.kind {
            PushKind::SMessage => {
                let mut data = push.data.into_iter();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                else {
                    continue;
                };
                let Some(room) = keys.bus_room(&channel).map(room::off_bus) else {
                    continue;
                };
                received += 1;
                match &mut run {
                    Some((same, rooms)) if *same == payload => rooms.push(room.to_owned()),
                    _ => {
                        if let Some((payload, rooms)) = run.take() {
                            decode(tx, &payload, rooms);
                        }
                        run = Some((payload, vec![room.to_owned()]));
                    }
                }
            }
            PushKind::Disconnection => alive = false,
            _ => {}
        }
    }
    if let Some((payload, rooms)) = run {
        decode(tx, &payload, rooms);
    }
    metrics::counter!(names::BUS_RECEIVED).increment(received);
    alive
}

fn decode(tx: &broadcast::Sender<Arc<BusMessage>>, payload: &[u8], rooms: Vec<String>) {
    match wire::addressed(payload, rooms) {
        Ok(Some(msg)) => {
            let _ = tx.send(Arc::new(msg));
        }
        Ok(None) => {
            metrics::counter!(names::BUS_DECODE_ERRORS).increment(1);
        }
        Err(e) => {
            metrics::counter!(names::BUS_DECODE_ERRORS).increment(1);
            tracing::warn!(error = %e, "undecodable event on the bus");
        }
    }
}

/// The bus names of a member's rooms (see [`room::on_bus`]).
fn on_bus(member: Member, rooms: &[String]) -> Vec<String> {
    rooms
        .iter()
        .map(|r| room::on_bus(member.ns, r).into_owned())
        .collect()
}

#[async_trait]
impl Bus for RedisBus {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn publish(&self, msg: BusMessage) -> Result<(), BusError> {
        let routed = wire::route(&msg).context("encoding an event")?;
        let channels: usize = routed.iter().map(|r| r.rooms.len()).sum();
        if channels == 0 {
            return Ok(());
        }
        metrics::histogram!(names::BUS_PUBLISH_BATCH).record(channels as f64);
        let conn = match &self.conn {
            Publisher::Single(conn) => conn,
            Publisher::Cluster(conn) => {
                return self.publish_cluster(&conn.get(), &routed, &msg).await;
            }
        };
        let mut pipe = redis::pipe();
        for r in &routed {
            for room in &r.rooms {
                pipe.cmd("SPUBLISH")
                    .arg(self.shared.keys.bus_channel(room))
                    .arg(&r.payload)
                    .ignore();
            }
        }
        let mut conn = conn.clone();
        let sent = match pipe.query_async::<()>(&mut conn).await {
            // The first command after Redis went away is the one that notices; the manager
            // reconnects and the event is sent once more (a rare duplicate is harmless:
            // clients deduplicate by message id and seq, a lost event is not).
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                pipe.query_async::<()>(&mut conn).await
            }
            other => other,
        };
        match sent {
            Ok(()) => {
                metrics::counter!(names::BUS_PUBLISHED).increment(1);
                Ok(())
            }
            Err(e) => {
                // This node's own clients still hear it; other nodes' clients resume by sync.
                metrics::counter!(names::BUS_PUBLISH_ERRORS).increment(1);
                let _ = self.tx.send(Arc::new(msg));
                Err(BusError(
                    anyhow::Error::from(e).context("publishing to Redis"),
                ))
            }
        }
    }

    async fn join(&self, member: Member, rooms: &[String]) {
        let rooms = on_bus(member, rooms);
        let needed = {
            let mut interest = self.shared.interest();
            let change = interest.join(member, &rooms);
            self.shared.order(&interest, change);
            interest.order_of(&rooms)
        };
        let mut confirmed = self.shared.confirmed.subscribe();
        if *confirmed.borrow() >= needed || !self.connected() {
            return;
        }
        let started = Instant::now();
        match tokio::time::timeout(JOIN_WAIT, confirmed.wait_for(|c| *c >= needed)).await {
            Ok(Ok(_)) => metrics::histogram!(names::BUS_SUBSCRIBE_LATENCY)
                .record(started.elapsed().as_secs_f64()),
            _ => tracing::warn!(
                "bus subscription not confirmed in time; the resubscription covers it"
            ),
        }
    }

    fn leave(&self, member: Member, rooms: &[String]) {
        let rooms = on_bus(member, rooms);
        let mut interest = self.shared.interest();
        let change = interest.leave(member, &rooms);
        self.shared.order(&interest, change);
    }

    fn forget(&self, member: Member) {
        let mut interest = self.shared.interest();
        let change = interest.forget(member);
        self.shared.order(&interest, change);
    }

    fn members(&self) -> Vec<Member> {
        self.shared.interest().members().copied().collect()
    }

    fn channels(&self) -> usize {
        self.shared.interest().room_count()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.tx.subscribe()
    }

    fn deliver_local(&self, msg: BusMessage) {
        let _ = self.tx.send(Arc::new(msg));
    }

    fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }
}
