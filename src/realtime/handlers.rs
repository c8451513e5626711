use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    SendError, SocketError,
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
    handler::FromMessageParts,
    socket::{DisconnectReason, Socket},
};
use tracing::Instrument;
use uuid::Uuid;

use super::presence::{self, Status};
use crate::{
    auth::AuthUser,
    bus::room,
    domain::field_with_nul,
    error::{ApiError, ApiResult},
    limits::{Limit, SocketBudget},
    state::AppState,
};

/// Whether the client asked for an acknowledgement; without one, errors go out as an
/// `error` event instead.
struct AckRequested(bool);

impl<A: Adapter> FromMessageParts<A> for AckRequested {
    type Error = Infallible;

    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Self(ack_id.is_some()))
    }
}

/// Answers an event: `{ ok: true, data }` or `{ ok: false, error }` through the ack, or an
/// `error` event when no ack was asked for. The socket lives on either way, unless it
/// cannot take the answer (see [`slow_consumer`]): no answer is dropped silently.
fn reply(
    s: &SocketRef,
    budget: &SocketBudget,
    ack: AckSender,
    asked: bool,
    event: &'static str,
    result: ApiResult<Value>,
) {
    let sent = match result {
        Ok(data) => {
            tracing::debug!(ok = true, "socket event");
            ack.send(&json!({ "ok": true, "data": data }))
        }
        Err(e) => {
            tracing::debug!(ok = false, status = e.status().as_u16(), "socket event");
            metrics::counter!(crate::metrics::names::SOCKET_EVENT_ERRORS, "event" => event, "code" => e.code())
                .increment(1);
            if asked {
                ack.send(&e.to_ack())
            } else {
                s.emit("error", &json!({ "event": event, "error": e.body() }))
            }
        }
    };
    if let Err(SendError::Socket(SocketError::InternalChannelFull)) = sent {
        slow_consumer(s, budget);
    }
}

/// How long a socket that could not take an answer gets to read enough of its backlog for
/// the reason and the disconnect to fit. One that reads nothing meanwhile is closed by its
/// next heartbeat, which fails on the same full buffer.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(2);

/// A socket whose outgoing buffer is full cannot take its acknowledgements: it is told why
/// (an `error` event with code `slow_consumer`) and disconnected, and counted, rather than
/// left with answers silently missing. Its later events are not handled.
fn slow_consumer(s: &SocketRef, budget: &SocketBudget) {
    if !budget.overflow() {
        return;
    }
    Limit::AckOverflow.refused();
    tracing::info!("socket cannot take its acknowledgements; disconnecting it");
    let s = s.clone();
    tokio::spawn(async move {
        let mut error = ApiError::rate_limited(Limit::AckOverflow.message(), Duration::ZERO).body();
        error["code"] = "slow_consumer".into();
        let notice = json!({ "event": Value::Null, "error": error });
        let deadline = tokio::time::Instant::now() + SLOW_CONSUMER_GRACE;
        let mut told = false;
        while s.connected() && tokio::time::Instant::now() < deadline {
            told = told || s.emit("error", &notice).is_ok();
            if told && s.clone().disconnect().is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
}

/// Registers `f` for `event` with the shared envelope: authenticated caller, the socket's
/// bounds (events per period, events in flight), payload decoding, metrics, and the reply.
fn on<F, Fut>(s: &SocketRef, event: &'static str, f: F)
where
    F: Fn(AppState, AuthUser, SocketRef, Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ApiResult<Value>> + Send + 'static,
{
    s.on(
        event,
        move |s: SocketRef,
              TryData(data): TryData<Value>,
              ack: AckSender,
              AckRequested(asked): AckRequested,
              State(state): State<AppState>| {
            let f = f.clone();
            // A socket being disconnected for not reading its answers may still have
            // thousands of events queued behind this one: each costs as little as possible.
            let budget = s.extensions.get::<Arc<SocketBudget>>();
            let dropped = budget.as_ref().is_none_or(|b| b.overflowed());
            let span = if dropped {
                tracing::Span::none()
            } else {
                socket_span(&s, Some(event))
            };
            async move {
                let (Some(user), Some(budget), false) =
                    (s.extensions.get::<AuthUser>(), budget, dropped)
                else {
                    return;
                };
                metrics::counter!(crate::metrics::names::SOCKET_EVENTS_IN, "event" => event)
                    .increment(1);
                // Refusals are answered at once, without touching Redis or PostgreSQL; an
                // admitted event holds its in-flight slot until it is answered.
                let slot = match budget.admit() {
                    Ok(slot) => slot,
                    Err(refused) => return reply(&s, &budget, ack, asked, event, Err(refused)),
                };
                let result = match data {
                    Ok(v) => match field_with_nul(&v) {
                        Some(field) => {
                            Err(ApiError::invalid(field, "must not contain NUL characters"))
                        }
                        // Boxed: handler futures are kilobytes, and a burst spawns one
                        // task per event; refused events then stay small.
                        None => Box::pin(f(state, user, s.clone(), v)).await,
                    },
                    Err(e) => Err(ApiError::BadRequest(
                        format!("malformed {event} payload: {e}").into(),
                    )),
                };
                reply(&s, &budget, ack, asked, event, result);
                drop(slot);
            }
            .instrument(span)
        },
    );
}

/// The span of everything done for one socket: its user and socket id (and the event being
/// handled, if any) on every log line, as `request_id` and `user_id` are for REST.
fn socket_span(s: &SocketRef, event: Option<&'static str>) -> tracing::Span {
    let user = s.extensions.get::<AuthUser>().map(|u| u.user_id);
    tracing::info_span!(
        "socket",
        ns = s.ns(),
        socket_id = %s.id,
        user_id = user.map(tracing::field::display),
        event,
    )
}

/// Parses an event payload into `T`, naming what is wrong.
pub(super) fn payload<T: for<'de> Deserialize<'de>>(event: &str, v: Value) -> ApiResult<T> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::BadRequest(format!("invalid {event} payload: {e}").into()))
}

/// A conversation id given as a bare string or as `{ conversationId }` / `{ conversation_id }`.
fn conversation_id(v: &Value) -> ApiResult<Uuid> {
    let raw = match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(m) => m
            .get("conversationId")
            .or_else(|| m.get("conversation_id"))
            .and_then(Value::as_str),
        _ => None,
    };
    let raw = raw.ok_or_else(|| ApiError::invalid("conversationId", "is required"))?;
    raw.parse()
        .map_err(|_| ApiError::invalid("conversationId", "must be a UUID"))
}

async fn require_participant(state: &AppState, conversation: Uuid, user: Uuid) -> ApiResult<()> {
    if crate::chat::is_participant(&state.db, conversation, user).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("conversation"))
    }
}

/// Connect middleware of `/`, after `authenticate`: joins the user's rooms, registers
/// every handler and counts the socket against the user's limit. socketioxide sends the
/// connect answer before it spawns the connect handler, and a client emits the moment it
/// sees that answer (socket.io-client flushes its buffer, a reconnecting client asks
/// `sync`): an event that found no handler yet would be dropped without an answer.
/// Middlewares run before the answer goes out.
pub async fn prepare_chat(s: SocketRef, State(state): State<AppState>) -> Result<(), String> {
    let Some(user) = s.extensions.get::<AuthUser>() else {
        return Ok(());
    };
    s.extensions.insert(SocketBudget::new(
        state.settings.limit_socket_events,
        state.settings.socket_max_in_flight,
    ));
    s.join([room::user(user.user_id), room::session(user.session_id)]);
    on(&s, "joinConversation", |state, user, s, v| async move {
        let id = conversation_id(&v)?;
        require_participant(&state, id, user.user_id).await?;
        s.join(room::conversation(id));
        Ok(json!({ "conversationId": id }))
    });
    on(&s, "leaveConversation", |_state, _user, s, v| async move {
        let id = conversation_id(&v)?;
        s.leave(room::conversation(id));
        Ok(json!({ "conversationId": id }))
    });
    on(&s, "typing", typing);
    on(&s, "sendMessage", super::chat_events::send_message);
    on(&s, "updateMessageStatus", super::chat_events::update_status);
    on(&s, "editMessage", super::chat_events::edit_message);
    on(&s, "deleteMessage", super::chat_events::delete_message);
    on(&s, "sync", super::chat_events::sync);

    s.on_disconnect(
        move |s: SocketRef, reason: DisconnectReason, State(state): State<AppState>| {
            let span = socket_span(&s, None);
            let working = state.socket_work.token();
            async move {
                let _working = working;
                tracing::debug!(%reason, "socket disconnected");
                // A draining node leaves its leases to expire: its clients reconnect
                // elsewhere within the TTL, so their users never flap offline.
                let keep_lease = state.draining.is_draining();
                release(&state, &s, keep_lease).await;
            }
            .instrument(span)
        },
    );
    admit(&state, user, &chat_conn(&state, &s)).await
}

/// This socket's connection id in the fabric (presence and socket leases).
fn chat_conn(state: &AppState, s: &SocketRef) -> String {
    format!("{}:{}", state.node_id, s.id)
}

/// The connection id of a `/notifications` socket, apart from the chat ones.
fn notifications_conn(state: &AppState, s: &SocketRef) -> String {
    format!("{}:n:{}", state.node_id, s.id)
}

/// The last step of a connect middleware: counts the socket against the user's limit, then
/// checks the device session once more. A logout that raced this connect either revoked
/// the session before this check (refused here) or publishes its disconnect after it, when
/// the socket is already in its `session:` room; the check after the socket is in the
/// namespace ([`still_live`]) closes the gap between the two.
async fn admit(state: &AppState, user: AuthUser, conn: &str) -> Result<(), String> {
    let admitted = state
        .fabric
        .sockets_admit(
            user.user_id,
            conn,
            state.settings.presence_ttl(),
            state.settings.max_sockets_per_user,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "socket limit not readable");
            "service unavailable: retry".to_owned()
        })?;
    if !admitted {
        Limit::SocketsPerUser.refused();
        return Err(format!(
            "{} (at most {})",
            Limit::SocketsPerUser.message(),
            state.settings.max_sockets_per_user
        ));
    }
    if matches!(state.fabric.live_sessions(&[user.session_id]).await, Ok(live) if live.is_empty()) {
        let _ = state.fabric.sockets_release(user.user_id, conn).await;
        return Err("session has been revoked or has expired".to_owned());
    }
    Ok(())
}

/// After the socket entered its namespace: whether its session is still live. A revoked
/// one is disconnected here (its logout's broadcast may have passed while the socket was
/// not yet in the namespace).
async fn still_live(state: &AppState, s: &SocketRef, user: AuthUser) -> bool {
    match state.fabric.live_sessions(&[user.session_id]).await {
        Ok(live) if live.is_empty() => {
            tracing::info!("session revoked while connecting; disconnecting");
            let _ = s.clone().disconnect();
            false
        }
        _ => true,
    }
}

/// Forgets a socket of this node and, unless `keep_lease`, its presence lease, announcing
/// the user offline when it was their last connection anywhere.
async fn release(state: &AppState, s: &SocketRef, keep_lease: bool) {
    let conn = chat_conn(state, s);
    state.local.remove(&conn);
    if keep_lease {
        return;
    }
    if let Some(user) = s.extensions.get::<AuthUser>() {
        if let Err(e) = state.fabric.sockets_release(user.user_id, &conn).await {
            tracing::debug!(error = %e, "socket lease not released; it expires by itself");
        }
        match state.fabric.presence_disconnect(user.user_id, &conn).await {
            Ok(true) => presence::announce(state, user.user_id, Status::Offline).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "presence not cleared; the lease expires by itself");
            }
        }
    }
}

/// Counts the socket in this node's connections and the user's presence. Runs after the
/// connect answer: announcing takes a round trip no client should wait for.
pub async fn on_chat_connect(s: SocketRef, State(state): State<AppState>) {
    let Some(user) = s.extensions.get::<AuthUser>() else {
        let _ = s.disconnect();
        return;
    };
    let working = state.socket_work.token();
    async {
        let _working = working;
        tracing::debug!("socket connected");
        if !still_live(&state, &s, user).await {
            return;
        }
        let conn = chat_conn(&state, &s);
        state
            .local
            .insert(conn.clone(), user.user_id, user.session_id);
        match state
            .fabric
            .presence_connect(user.user_id, &conn, state.settings.presence_ttl())
            .await
        {
            Ok(true) => presence::announce(&state, user.user_id, Status::Online).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "presence not recorded; the next heartbeat retries");
            }
        }
        // A socket that closed meanwhile ran its disconnect handler before it was counted;
        // left counted, heartbeats would renew its lease for ever.
        if !s.connected() {
            release(&state, &s, state.draining.is_draining()).await;
        }
    }
    .instrument(socket_span(&s, None))
    .await;
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingPayload {
    #[serde(alias = "conversation_id")]
    conversation_id: Uuid,
    #[serde(alias = "is_typing")]
    is_typing: bool,
}

/// `typing` `{ conversationId, isTyping }`: see [`crate::chat::set_typing`].
async fn typing(state: AppState, user: AuthUser, _s: SocketRef, v: Value) -> ApiResult<Value> {
    let p: TypingPayload = payload("typing", v)?;
    crate::chat::set_typing(&state, user.user_id, p.conversation_id, p.is_typing).await?;
    Ok(json!({ "conversationId": p.conversation_id, "isTyping": p.is_typing }))
}

/// Connect middleware of `/notifications`, after `authenticate`: rooms, the disconnect
/// handler and the socket's count against the user's limit, all before the connect
/// answer, as for `/` (see [`prepare_chat`]).
pub async fn prepare_notifications(
    s: SocketRef,
    State(state): State<AppState>,
) -> Result<(), String> {
    let Some(user) = s.extensions.get::<AuthUser>() else {
        return Ok(());
    };
    s.join([room::user(user.user_id), room::session(user.session_id)]);
    s.on_disconnect(|s: SocketRef, State(state): State<AppState>| async move {
        let conn = notifications_conn(&state, &s);
        if state.local_notifications.remove(&conn).is_some() {
            if let Some(user) = s.extensions.get::<AuthUser>() {
                let _ = state.fabric.sockets_release(user.user_id, &conn).await;
            }
        }
    });
    admit(&state, user, &notifications_conn(&state, &s)).await
}

pub async fn on_notifications_connect(s: SocketRef, State(state): State<AppState>) {
    let Some(user) = s.extensions.get::<AuthUser>() else {
        let _ = s.disconnect();
        return;
    };
    let conn = notifications_conn(&state, &s);
    state
        .local_notifications
        .insert(conn.clone(), user.user_id, user.session_id);
    if !s.connected() {
        // Closed before it was counted: its disconnect handler found nothing to remove.
        state.local_notifications.remove(&conn);
        let _ = state.fabric.sockets_release(user.user_id, &conn).await;
        return;
    }
    if !still_live(&state, &s, user).await {
        return;
    }
    let _ = s.emit("notifications:connected", &json!({ "status": "connected" }));
}
