//! Delivery: what the cluster event bus carries, handed to this node's own sockets. The
//! receiving half of every event: a node publishes through `bus`, every node with a
//! socket in one of its rooms receives it in [`run`], which spreads the rooms over one
//! lane per core; each lane puts its conversations' messages back in `seq` order
//! ([`order`]) and emits to its rooms. After a resubscription it also replays, from
//! PostgreSQL, the messages published while it was not listening.

pub mod order;

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use socketioxide::SocketIo;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    bus::{BusMessage, Emit, Member, Namespace, room},
    state::AppState,
};

/// How long an event ahead of its conversation's next seq waits for the ones before it:
/// the first event this node sees of a conversation briefly (its predecessor most likely
/// went out before the node listened), a gap in a conversation it has been delivering
/// longer, since publishes of an overloaded cluster run hundreds of milliseconds late
/// (100 ms let a few events out of order at saturation). A gap that outlasts it is a lost
/// publish, which clients fill with `sync`.
const REORDER_FIRST_HOLD: Duration = Duration::from_millis(100);
const REORDER_GAP_HOLD: Duration = Duration::from_millis(1000);

/// Events a delivery lane may have queued before the dispatcher waits for it; the
/// dispatcher falling behind the bus in turn is counted as lag.
const LANE_CAPACITY: usize = 4096;

/// How often members whose socket closed without saying so are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Delivers what the bus carries to this node's sockets until `stop`, on one lane per
/// core. A room always goes to the same lane, so everything addressed to one socket keeps
/// its bus order, and each lane puts its conversations' messages back in seq order.
pub async fn run(io: SocketIo, state: AppState, stop: CancellationToken) {
    let lanes = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let tasks = tokio_util::task::TaskTracker::new();
    let senders: Vec<_> = (0..lanes)
        .map(|_| {
            let (tx, rx) = mpsc::channel(LANE_CAPACITY);
            tasks.spawn(lane(io.clone(), state.clone(), rx, stop.clone()));
            tx
        })
        .collect();
    tasks.spawn(sweep(io.clone(), state.clone(), stop.clone()));
    tasks.close();
    let mut rx = state.bus.subscribe();
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = rx.recv() => msg,
        };
        match msg {
            Ok(msg) => {
                if let BusMessage::Resubscribed { missed_ms } = *msg {
                    // Inline: what the bus carries from now on waits in its channel until
                    // the lanes have what the gap held, so nothing that followed the gap
                    // overtakes it (a device would see it out of order).
                    for missed in replay_missed(&state, missed_ms).await {
                        for (lane, msg) in split(Arc::new(missed), lanes) {
                            if senders[lane].send(msg).await.is_err() {
                                break;
                            }
                        }
                    }
                    continue;
                }
                for (lane, msg) in split(msg, lanes) {
                    if senders[lane].send(msg).await.is_err() {
                        break;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                metrics::counter!(crate::metrics::names::BUS_LAGGED_EVENTS).increment(n);
                tracing::warn!(
                    missed = n,
                    "event delivery fell behind; clients catch up through sync"
                );
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    drop(senders);
    tasks.wait().await;
}

/// The lane a room's events go to.
fn lane_of(room: &str, lanes: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    room.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// One message per lane that has rooms of it. An event arrives with every room this node
/// heard it on; when they fall on several lanes each lane gets its share of the rooms.
fn split(msg: Arc<BusMessage>, lanes: usize) -> Vec<(usize, Arc<BusMessage>)> {
    let first_room = match msg.as_ref() {
        BusMessage::Emit(e) => e.rooms.first().cloned(),
        BusMessage::EmitMany(list) => list.first().and_then(|e| e.rooms.first().cloned()),
        BusMessage::DisconnectSessions { sessions } => sessions.first().map(|s| room::session(*s)),
        BusMessage::Rooms { users, .. } => users.first().map(|u| room::user(*u)),
        BusMessage::Resubscribed { .. } => None,
    };
    let first = first_room.map_or(0, |r| lane_of(&r, lanes));
    let BusMessage::Emit(e) = msg.as_ref() else {
        return vec![(first, msg)];
    };
    if lanes == 1 || e.rooms.iter().all(|r| lane_of(r, lanes) == first) {
        return vec![(first, msg)];
    }
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); lanes];
    for r in &e.rooms {
        shares[lane_of(r, lanes)].push(r.clone());
    }
    shares
        .into_iter()
        .enumerate()
        .filter(|(_, rooms)| !rooms.is_empty())
        .map(|(lane, rooms)| {
            let share = Emit {
                rooms,
                ..e.clone_without_rooms()
            };
            (lane, Arc::new(BusMessage::Emit(share)))
        })
        .collect()
}

/// One delivery lane: its rooms' events; each conversation's messages in seq order in
/// each room.
async fn lane(
    io: SocketIo,
    state: AppState,
    mut rx: mpsc::Receiver<Arc<BusMessage>>,
    stop: CancellationToken,
) {
    let mut reorder = order::Reorder::new(REORDER_FIRST_HOLD, REORDER_GAP_HOLD);
    let mut ready = Vec::new();
    loop {
        let deadline = reorder.deadline();
        let msg = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(deadline.unwrap_or_else(std::time::Instant::now).into()), if deadline.is_some() => {
                let due = reorder.expire(std::time::Instant::now());
                deliver_in_order(&io, due).await;
                continue;
            }
            msg = rx.recv() => msg,
        };
        let Some(msg) = msg else { return };
        let BusMessage::Emit(Emit {
            order: Some(p),
            rooms,
            ..
        }) = msg.as_ref()
        else {
            deliver(&io, &state, &msg).await;
            continue;
        };
        // Every room waits for its own predecessors; the rooms released together go out
        // as one emit.
        let now = std::time::Instant::now();
        for (i, room) in rooms.iter().enumerate() {
            let event = (msg.clone(), i);
            reorder.push_into(p.stream, room.clone(), p.seq, event, now, &mut ready);
        }
        deliver_in_order(&io, std::mem::take(&mut ready)).await;
    }
}

/// Delivers events released in order, each to the one room (by index) it waited in; runs
/// of the same event go out as one emit to all their rooms.
async fn deliver_in_order(io: &SocketIo, released: Vec<(Arc<BusMessage>, usize)>) {
    let mut released = released.into_iter().peekable();
    while let Some((msg, first)) = released.next() {
        let BusMessage::Emit(e) = msg.as_ref() else {
            continue;
        };
        let mut rooms = vec![e.rooms[first].clone()];
        while let Some((_, i)) = released.next_if(|(next, _)| Arc::ptr_eq(next, &msg)) {
            rooms.push(e.rooms[i].clone());
        }
        deliver_emit(io, e, rooms).await;
    }
}

/// Members whose socket is gone but who never left (a socket that closed while it was
/// being admitted runs no disconnect handler) would keep their rooms' channels
/// subscribed for good; this forgets them. A member is forgotten only when two sweeps in a
/// row found no socket of it: a socket still in its connect middleware has joined but is
/// not in its namespace yet.
async fn sweep(io: SocketIo, state: AppState, stop: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.tick().await;
    let mut suspects = std::collections::HashSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let missing: std::collections::HashSet<Member> = state
            .bus
            .members()
            .into_iter()
            .filter(|m| {
                io.of(m.ns.path())
                    .is_none_or(|op| op.get_socket(m.sid).is_none())
            })
            .collect();
        for member in missing.intersection(&suspects) {
            state.bus.forget(*member);
        }
        suspects = missing.difference(&suspects).copied().collect();
    }
}

async fn deliver_emit(io: &SocketIo, e: &Emit, rooms: Vec<String>) {
    let Some(ns) = io.of(e.ns.path()) else { return };
    let ops = ns.to(rooms).except(e.except.clone());
    if let Err(err) = ops.emit(&e.event, &e.data).await {
        tracing::debug!(error = %err, event = %e.event, "emit failed");
    }
    metrics::counter!(crate::metrics::names::SOCKET_EVENTS_OUT, "event" => e.event.clone())
        .increment(1);
    let lag_ms = chrono::Utc::now().timestamp_millis() - e.sent_at_ms;
    metrics::histogram!(crate::metrics::names::FANOUT_LATENCY)
        .record(lag_ms.max(0) as f64 / 1000.0);
}

/// How long before the loss was noticed a publish may have gone unheard: a Redis that died
/// took what it had not forwarded yet, and ids come from the senders' clocks.
const REPLAY_MARGIN: Duration = Duration::from_secs(2);

/// After the bus subscription came back: hands this node's sockets what was published
/// while it was away, from PostgreSQL (messages, then the change log: edits, deletes,
/// receipts, membership and its room moves), and re-announces the presence of users whose
/// status changed meanwhile, so nothing waits for the client's next `sync`.
async fn replay_missed(state: &AppState, missed_ms: u64) -> Vec<BusMessage> {
    let window = Duration::from_millis(missed_ms) + REPLAY_MARGIN;
    let mut missed = Vec::new();
    match crate::chat::replay_recent(state, window, &mut missed).await {
        Ok(n) => {
            metrics::counter!(crate::metrics::names::BUS_REPLAYED_MESSAGES)
                .increment(n.messages as u64);
            metrics::counter!(crate::metrics::names::BUS_REPLAYED_CHANGES)
                .increment(n.changes as u64);
            tracing::info!(
                messages = n.messages,
                changes = n.changes,
                window_ms = window.as_millis(),
                "replaying messages and changes the bus missed"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "replay after resubscribing failed; clients catch up through sync")
        }
    }
    if let Err(e) = crate::presence::replay_recent(state, window, &mut missed).await {
        tracing::warn!(error = %e, "presence replay after resubscribing failed");
    }
    missed
}

async fn deliver(io: &SocketIo, state: &AppState, msg: &Arc<BusMessage>) {
    match msg.as_ref() {
        BusMessage::Emit(e) => deliver_emit(io, e, e.rooms.clone()).await,
        BusMessage::EmitMany(list) => {
            for e in list {
                deliver_emit(io, e, e.rooms.clone()).await;
            }
        }
        BusMessage::DisconnectSessions { sessions } => {
            let rooms: Vec<String> = sessions.iter().copied().map(room::session).collect();
            for ns in [Namespace::Chat, Namespace::Notifications] {
                if let Some(op) = io.of(ns.path()) {
                    let _ = op.to(rooms.clone()).disconnect().await;
                }
            }
        }
        BusMessage::Rooms { users, join, leave } => {
            let Some(op) = io.of(Namespace::Chat.path()) else {
                return;
            };
            let targets: Vec<String> = users.iter().copied().map(room::user).collect();
            for s in op.to(targets).sockets() {
                let member = Member::new(Namespace::Chat, s.id);
                if !join.is_empty() {
                    s.join(join.clone());
                    state.bus.join(member, join).await;
                }
                if !leave.is_empty() {
                    s.leave(leave.clone());
                    state.bus.leave(member, leave);
                }
            }
        }
        BusMessage::Resubscribed { .. } => {}
    }
}
