//! The cluster's event bus. Every state change that clients must hear about becomes one
//! `BusMessage`, published once. It travels on one channel per addressee room (`user:`,
//! `session:`, `conv:`), and a node subscribes to a room's channel only while one of its
//! own sockets is in that room ([`Bus::join`]), so what a node receives follows its own
//! sockets' traffic rather than the whole cluster's. REST and socket paths publish the
//! same messages, so a client cannot tell which transport caused a change.

mod interest;
mod memory;
mod redis;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::socket::Sid;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use self::memory::MemoryBus;
pub use self::redis::RedisBus;

/// Socket.IO namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Namespace {
    /// `/`: chat events.
    #[serde(rename = "/")]
    Chat,
    /// `/notifications`: the notification centre.
    #[serde(rename = "/notifications")]
    Notifications,
}

impl Namespace {
    pub fn path(self) -> &'static str {
        match self {
            Self::Chat => "/",
            Self::Notifications => "/notifications",
        }
    }
}

/// Room names; the only place they are spelled.
pub mod room {
    use uuid::Uuid;

    /// Every socket of a user, on every device.
    pub fn user(id: Uuid) -> String {
        format!("user:{id}")
    }

    /// The sockets of one device session.
    pub fn session(id: Uuid) -> String {
        format!("session:{id}")
    }

    /// Sockets that joined a conversation (typing, status).
    pub fn conversation(id: Uuid) -> String {
        format!("conv:{id}")
    }

    /// The user a `user:` room is for.
    pub fn user_of(room: &str) -> Option<Uuid> {
        room.strip_prefix("user:")?.parse().ok()
    }

    /// The device session a `session:` room is for.
    pub fn session_of(room: &str) -> Option<Uuid> {
        room.strip_prefix("session:")?.parse().ok()
    }

    /// Rooms of `/notifications` travel on channels of their own, so a node with only chat
    /// sockets of a user hears none of the user's notifications, and the other way round.
    const NOTIFICATIONS: &str = "notifications/";

    /// The bus's name for `room` of `ns`: what its channel is named after.
    pub fn on_bus(ns: super::Namespace, room: &str) -> std::borrow::Cow<'_, str> {
        match ns {
            super::Namespace::Chat => room.into(),
            super::Namespace::Notifications => format!("{NOTIFICATIONS}{room}").into(),
        }
    }

    /// The room a bus name stands for (in whichever namespace).
    pub fn off_bus(name: &str) -> &str {
        name.strip_prefix(NOTIFICATIONS).unwrap_or(name)
    }
}

/// One local socket as a member of rooms: what keeps a room's channel subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Member {
    pub ns: Namespace,
    pub sid: Sid,
}

impl Member {
    pub fn new(ns: Namespace, sid: Sid) -> Self {
        Self { ns, sid }
    }

    /// A listener that is no socket (tests): it hears the rooms of `ns` it joins through
    /// [`Bus::subscribe`].
    pub fn detached(ns: Namespace) -> Self {
        Self::new(ns, Sid::new())
    }
}

/// One Socket.IO event for a set of rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Emit {
    pub ns: Namespace,
    pub event: String,
    /// The addressees. On the wire each room's channel carries the event without them;
    /// the receiving node puts back the rooms it heard it on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Sockets in these rooms are skipped (e.g. the typist's own devices).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    /// Serialized once by the publisher; every node forwards the same bytes.
    pub data: Box<RawValue>,
    /// Publisher's clock, for the fan-out latency histogram.
    pub sent_at_ms: i64,
    /// Position in a stream whose events must reach clients in order (a conversation's
    /// `newMessage`s by seq); receiving nodes restore that order before delivering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<StreamPosition>,
}

/// Where an event sits in an ordered stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub stream: Uuid,
    pub seq: i64,
}

impl Emit {
    pub fn new(
        ns: Namespace,
        event: &str,
        rooms: Vec<String>,
        data: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            ns,
            event: event.to_owned(),
            rooms,
            except: Vec::new(),
            data: serde_json::value::to_raw_value(data)?,
            sent_at_ms: chrono::Utc::now().timestamp_millis(),
            order: None,
        })
    }

    /// Marks the event as `seq` of `stream`, to be delivered in seq order.
    #[must_use]
    pub fn ordered(mut self, stream: Uuid, seq: i64) -> Self {
        self.order = Some(StreamPosition { stream, seq });
        self
    }

    /// The same event for rooms still to be given.
    pub fn clone_without_rooms(&self) -> Self {
        Self {
            ns: self.ns,
            event: self.event.clone(),
            rooms: Vec::new(),
            except: self.except.clone(),
            data: self.data.clone(),
            sent_at_ms: self.sent_at_ms,
            order: self.order,
        }
    }

    #[must_use]
    pub fn except(mut self, rooms: Vec<String>) -> Self {
        self.except = rooms;
        self
    }
}

/// What travels on the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusMessage {
    /// Deliver an event to rooms.
    Emit(Emit),
    /// Deliver several events, in order: one bus message where a change has many
    /// differently addressed payloads (e.g. the notifications of a batch of messages).
    EmitMany(Vec<Emit>),
    /// Disconnect every socket of these device sessions (logout, revoked device).
    DisconnectSessions {
        #[serde(default)]
        sessions: Vec<Uuid>,
    },
    /// Make these users' sockets join (or leave) a room, e.g. when added to a group.
    Rooms {
        #[serde(default)]
        users: Vec<Uuid>,
        join: Vec<String>,
        leave: Vec<String>,
    },
    /// Never published: a node's own note that its subscription was down and is back.
    /// Whatever was published in that window never reached this node; `missed_ms` is
    /// how long, from noticing the loss to hearing the bus again.
    Resubscribed { missed_ms: u64 },
}

/// A failure to publish. Callers that stored data already log it and carry on: clients
/// recover missed events through `sync`.
#[derive(Debug, thiserror::Error)]
#[error("bus: {0}")]
pub struct BusError(#[from] pub anyhow::Error);

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// "redis" or "memory".
    fn kind(&self) -> &'static str;

    /// Sends to every node with a socket in one of the message's rooms, this one included.
    async fn publish(&self, msg: BusMessage) -> Result<(), BusError>;

    /// `member` is in `rooms` from now on, and this node hears their channels. Returns once
    /// every new subscription is confirmed, so that anything published after it reaches
    /// the member; at once while the bus is down (its resubscription covers these rooms,
    /// and the replay after it what was missed meanwhile).
    async fn join(&self, member: Member, rooms: &[String]);

    /// `member` is no longer in `rooms`; a room's channel is dropped with its last member.
    fn leave(&self, member: Member, rooms: &[String]);

    /// `member` is gone: it leaves every room it was in.
    fn forget(&self, member: Member);

    /// Every member with a room, to find the ones whose socket closed unnoticed.
    fn members(&self) -> Vec<Member>;

    /// Room channels this node is subscribed to.
    fn channels(&self) -> usize;

    /// What this node receives, in publish order per publisher.
    fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>>;

    /// Hands `msg` to this node's subscribers only, as if it came from the bus.
    fn deliver_local(&self, msg: BusMessage);

    /// Whether the subscription to other nodes is live right now.
    fn connected(&self) -> bool;
}

/// Publishes and logs a failure instead of failing the caller, whose state change is
/// already durable.
pub async fn publish_or_log(bus: &dyn Bus, msg: BusMessage) {
    if let Err(e) = bus.publish(msg).await {
        tracing::warn!(error = %e, "event not published; clients will catch up through sync");
    }
}

/// Publishes `event` to `rooms` of `ns`, at `order` in its stream if given. The change it
/// announces is already durable, so a failure is logged, not returned: an unencodable
/// payload is a bug, and clients catch up on anything unpublished through `sync`.
pub async fn announce(
    bus: &dyn Bus,
    ns: Namespace,
    event: &'static str,
    rooms: Vec<String>,
    data: &impl Serialize,
    order: Option<StreamPosition>,
) {
    match Emit::new(ns, event, rooms, data) {
        Ok(mut emit) => {
            emit.order = order;
            publish_or_log(bus, BusMessage::Emit(emit)).await;
        }
        Err(e) => tracing::error!(error = %e, event, "event payload cannot be encoded"),
    }
}

/// Capacity of the in-process fan-out channel; a subscriber lagging this far behind loses
/// events (counted) and its clients resume through `sync`.
pub const LOCAL_CHANNEL_CAPACITY: usize = 16 * 1024;
