//! Delivery: what the cluster event bus carries, handed to this node's own sockets. The
//! receiving half of every event: a node publishes through `bus`, every node's
//! [`run`] receives it, puts each conversation's messages back in `seq` order
//! ([`order`]), and emits it to the rooms it names on this node. After a resubscription it
//! also replays, from PostgreSQL, the messages published while it was not listening.

pub mod order;

use std::{sync::Arc, time::Duration};

use socketioxide::SocketIo;
use tokio_util::sync::CancellationToken;

use crate::{
    bus::{BusMessage, Emit, Namespace, room},
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

/// Delivers what the bus carries to this node's sockets until `stop`, each conversation's
/// messages in seq order.
pub async fn run(io: SocketIo, state: AppState, stop: CancellationToken) {
    let mut rx = state.bus.subscribe();
    let mut reorder = order::Reorder::new(REORDER_FIRST_HOLD, REORDER_GAP_HOLD);
    loop {
        let deadline = reorder.deadline();
        let msg = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(deadline.unwrap_or_else(std::time::Instant::now).into()), if deadline.is_some() => {
                for m in reorder.expire(std::time::Instant::now()) {
                    deliver(&io, &m).await;
                }
                continue;
            }
            msg = rx.recv() => msg,
        };
        match msg {
            Ok(msg) if matches!(msg.as_ref(), BusMessage::Resubscribed { .. }) => {
                let BusMessage::Resubscribed { missed_ms } = *msg else {
                    continue;
                };
                tokio::spawn(replay_missed(state.clone(), missed_ms));
            }
            Ok(msg) => {
                let position = match msg.as_ref() {
                    BusMessage::Emit(e) => e.order,
                    _ => None,
                };
                match position {
                    Some(p) => {
                        for m in reorder.push(p.stream, p.seq, msg, std::time::Instant::now()) {
                            deliver(&io, &m).await;
                        }
                    }
                    None => deliver(&io, &msg).await,
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                metrics::counter!(crate::metrics::names::BUS_LAGGED_EVENTS).increment(n);
                tracing::warn!(
                    missed = n,
                    "event delivery fell behind; clients catch up through sync"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn deliver_emit(io: &SocketIo, e: &Emit) {
    let Some(ns) = io.of(e.ns.path()) else { return };
    let ops = ns.to(e.rooms.clone()).except(e.except.clone());
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

/// After the bus subscription came back: hands this node's sockets the messages published
/// while it was away, from PostgreSQL, so nothing waits for the client's next `sync`.
async fn replay_missed(state: AppState, missed_ms: u64) {
    let window = Duration::from_millis(missed_ms) + REPLAY_MARGIN;
    match crate::chat::replay_recent(&state, window).await {
        Ok(n) => {
            metrics::counter!(crate::metrics::names::BUS_REPLAYED_MESSAGES).increment(n as u64);
            tracing::info!(
                messages = n,
                window_ms = window.as_millis(),
                "replayed messages the bus missed"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "replay after resubscribing failed; clients catch up through sync")
        }
    }
}

async fn deliver(io: &SocketIo, msg: &Arc<BusMessage>) {
    match msg.as_ref() {
        BusMessage::Emit(e) => deliver_emit(io, e).await,
        BusMessage::EmitMany(list) => {
            for e in list {
                deliver_emit(io, e).await;
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
            if !join.is_empty() {
                let _ = op.clone().to(targets.clone()).join(join.clone()).await;
            }
            if !leave.is_empty() {
                let _ = op.to(targets).leave(leave.clone()).await;
            }
        }
        BusMessage::Resubscribed { .. } => {}
    }
}
