//! Socket.IO on `/` (chat) and `/notifications`, served by socketioxide in the same axum
//! app. Sockets authenticate by token on connect; what they receive comes from the cluster
//! event bus, which each node delivers to its own sockets.

mod chat_events;
mod handlers;
mod order;
pub mod presence;

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use socketioxide::{
    SocketIo,
    extract::{SocketRef, State, TryData},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{BusMessage, Emit, Namespace, room},
    http::extract::AuthUser,
    state::AppState,
};

/// Builds the Socket.IO layer and its handle.
pub fn build(state: &AppState) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder()
        .with_state(state.clone())
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .max_payload(state.settings.max_body_bytes as u64)
        .build_layer();
    io.ns("/", handlers::on_chat_connect.with(authenticate));
    io.ns(
        "/notifications",
        handlers::on_notifications_connect.with(authenticate),
    );
    (layer, io)
}

/// The token a client presents: `auth.token` (with or without `Bearer `), else an
/// `Authorization: Bearer` header.
fn token_of(s: &SocketRef, auth: &Value) -> Option<String> {
    let from_auth = auth
        .get("token")
        .and_then(Value::as_str)
        .map(|t| t.strip_prefix("Bearer ").unwrap_or(t).trim());
    let from_header = || {
        let h = s
            .req_parts()
            .headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    };
    from_auth
        .or_else(from_header)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Connect middleware: a live session or a `connect_error` saying why not.
async fn authenticate(
    s: SocketRef,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    let auth = auth.unwrap_or(Value::Null);
    let Some(token) = token_of(&s, &auth) else {
        metrics::counter!("socket_auth_refused_total", "reason" => "missing").increment(1);
        return Err(if auth.get("userId").is_some() {
            "authentication token required: auth.userId is not accepted, send auth.token".to_owned()
        } else {
            "authentication token required: send { auth: { token } } or an Authorization: Bearer header".to_owned()
        });
    };
    if state.draining.is_draining() {
        return Err("node is draining: reconnect".to_owned());
    }
    match AuthUser::from_token(&state, &token).await {
        Ok(user) => {
            s.extensions.insert(user);
            Ok(())
        }
        Err(e) => {
            metrics::counter!("socket_auth_refused_total", "reason" => "invalid").increment(1);
            Err(e.to_string())
        }
    }
}

/// How long an event ahead of its conversation's next seq waits for the ones before it.
/// Publishes race by a few milliseconds at most; a longer gap is a lost publish, which
/// clients fill with `sync`.
const REORDER_HOLD: Duration = Duration::from_millis(100);

/// Delivers what the bus carries to this node's sockets until `stop`, each conversation's
/// messages in seq order.
pub async fn bus_loop(io: SocketIo, state: AppState, stop: CancellationToken) {
    let mut rx = state.broker.subscribe();
    let mut reorder = order::Reorder::new(REORDER_HOLD);
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
                metrics::counter!("bus_lagged_events_total").increment(n);
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
    metrics::counter!("socket_events_out_total", "event" => e.event.clone()).increment(1);
    let lag_ms = chrono::Utc::now().timestamp_millis() - e.sent_at_ms;
    #[allow(clippy::cast_precision_loss)] // a latency in ms is far below 2^52
    metrics::histogram!("fanout_latency_seconds").record(lag_ms.max(0) as f64 / 1000.0);
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
    }
}
