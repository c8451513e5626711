use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
    handler::FromMessageParts,
    socket::{DisconnectReason, Socket},
};
use tracing::Instrument;
use uuid::Uuid;

use super::presence::{self, Status};
use crate::{
    broker::{self, BusMessage, Emit, Namespace, room},
    error::{ApiError, ApiResult},
    http::extract::AuthUser,
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
/// `error` event when no ack was asked for. The socket lives on either way.
fn reply(
    s: &SocketRef,
    ack: AckSender,
    asked: bool,
    event: &'static str,
    result: ApiResult<Value>,
) {
    match result {
        Ok(data) => {
            tracing::debug!(ok = true, "socket event");
            let _ = ack.send(&json!({ "ok": true, "data": data }));
        }
        Err(e) => {
            tracing::debug!(ok = false, status = e.status().as_u16(), "socket event");
            metrics::counter!("socket_event_errors_total", "event" => event, "code" => e.code())
                .increment(1);
            if asked {
                let _ = ack.send(&e.to_ack());
            } else {
                let _ = s.emit("error", &json!({ "event": event, "error": e.body() }));
            }
        }
    }
}

/// Registers `f` for `event` with the shared envelope: authenticated caller, payload
/// decoding, metrics, and the reply.
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
            let span = socket_span(&s, Some(event));
            async move {
                metrics::counter!("socket_events_in_total", "event" => event).increment(1);
                let Some(user) = s.extensions.get::<AuthUser>() else {
                    return;
                };
                let result = match data {
                    Ok(v) => f(state, user, s.clone(), v).await,
                    Err(e) => Err(ApiError::BadRequest(
                        format!("malformed {event} payload: {e}").into(),
                    )),
                };
                reply(&s, ack, asked, event, result);
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

/// Connect middleware of `/`, after `authenticate`: joins the user's rooms and registers
/// every handler. socketioxide sends the connect answer before it spawns the connect
/// handler, and a client emits the moment it sees that answer (socket.io-client flushes
/// its buffer, a reconnecting client asks `sync`): an event that found no handler yet
/// would be dropped without an answer. Middlewares run before the answer goes out.
pub async fn prepare_chat(s: SocketRef) -> Result<(), Infallible> {
    let Some(user) = s.extensions.get::<AuthUser>() else {
        return Ok(());
    };
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
    Ok(())
}

/// Forgets a socket of this node and, unless `keep_lease`, its presence lease, announcing
/// the user offline when it was their last connection anywhere.
async fn release(state: &AppState, s: &SocketRef, keep_lease: bool) {
    let conn = format!("{}:{}", state.node_id, s.id);
    state.local.remove(&conn);
    if keep_lease {
        return;
    }
    if let Some(user) = s.extensions.get::<AuthUser>() {
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
        let conn = format!("{}:{}", state.node_id, s.id);
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

/// Typing marks live in the fabric with a short TTL; `userTyping` goes to the conversation
/// room except the typist's own devices, and only when the state changes.
async fn typing(state: AppState, user: AuthUser, _s: SocketRef, v: Value) -> ApiResult<Value> {
    let p: TypingPayload = payload("typing", v)?;
    let window = state
        .fabric
        .hit_counter(
            &format!("typing:{}:{}", user.user_id, p.conversation_id),
            Duration::from_secs(1),
        )
        .await?;
    if window.count > TYPING_EVENTS_PER_SECOND {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: 1,
        });
    }
    require_participant(&state, p.conversation_id, user.user_id).await?;
    let changed = if p.is_typing {
        state
            .fabric
            .typing_start(p.conversation_id, user.user_id, state.settings.typing_ttl())
            .await?
    } else {
        state
            .fabric
            .typing_stop(p.conversation_id, user.user_id)
            .await?
    };
    if changed {
        let data = json!({ "userId": user.user_id, "conversationId": p.conversation_id, "isTyping": p.is_typing });
        let emit = Emit::new(
            Namespace::Chat,
            "userTyping",
            vec![room::conversation(p.conversation_id)],
            &data,
        )
        .map_err(anyhow::Error::from)?
        .except(vec![room::user(user.user_id)]);
        broker::publish_or_log(state.broker.as_ref(), BusMessage::Emit(emit)).await;
    }
    Ok(json!({ "conversationId": p.conversation_id, "isTyping": p.is_typing }))
}

/// Typing events a user may send per conversation per second before 429.
const TYPING_EVENTS_PER_SECOND: u64 = 10;

/// Connect middleware of `/notifications`, after `authenticate`: rooms and the disconnect
/// handler in place before the connect answer, as for `/` (see [`prepare_chat`]).
pub async fn prepare_notifications(s: SocketRef) -> Result<(), Infallible> {
    let Some(user) = s.extensions.get::<AuthUser>() else {
        return Ok(());
    };
    s.join([room::user(user.user_id), room::session(user.session_id)]);
    metrics::gauge!("socket_connections", "namespace" => "/notifications").increment(1.0);
    s.on_disconnect(|| async {
        metrics::gauge!("socket_connections", "namespace" => "/notifications").decrement(1.0);
    });
    Ok(())
}

pub async fn on_notifications_connect(s: SocketRef) {
    if s.extensions.get::<AuthUser>().is_none() {
        let _ = s.disconnect();
        return;
    }
    let _ = s.emit("notifications:connected", &json!({ "status": "connected" }));
}
