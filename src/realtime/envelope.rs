//! What every client event goes through before and after its handler: the socket's
//! bounds, payload decoding into the event's type, metrics, and the answer.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use socketioxide::{
    SendError, SocketError,
    adapter::Adapter,
    extract::{AckSender, Event, SocketRef, State, TryData},
    handler::FromMessageParts,
    socket::Socket,
};
use tracing::Instrument;

use crate::{
    auth::AuthUser,
    domain::field_with_nul,
    error::{ApiError, ApiResult},
    limits::{Limit, SocketBudget},
    state::AppState,
};

/// Whether the client asked for an acknowledgement; without one, errors go out as an
/// `error` event instead.
pub(super) struct AckRequested(bool);

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

/// The acknowledgement of a handled event, serialized straight from the handler's answer.
#[derive(Serialize)]
struct Answer<'a, R> {
    ok: bool,
    data: &'a R,
}

/// An event as it arrived: what [`Call::run`] needs to handle it.
pub(super) struct Call {
    s: SocketRef,
    data: Result<Value, socketioxide::ParserError>,
    ack: AckSender,
    asked: bool,
    state: AppState,
}

/// The catch-all handler of a socket: one per socket instead of one map entry and boxed
/// handler per event name, which every idle socket would hold. `route` runs the event's
/// handler through [`Call::run`]; events without one are ignored.
pub(super) async fn dispatch(
    s: SocketRef,
    Event(event): Event,
    TryData(data): TryData<Value>,
    ack: AckSender,
    AckRequested(asked): AckRequested,
    State(state): State<AppState>,
) {
    let call = Call {
        s,
        data,
        ack,
        asked,
        state,
    };
    super::events::route(&event, call).await;
}

impl Call {
    /// Runs `f` for `event`: the handler gets the authenticated caller and the payload
    /// decoded into `P`; what it returns (or the error, in the REST error shape) is the
    /// answer. Around it: the socket's bounds (events per period, events in flight),
    /// payload checks, metrics.
    pub(super) async fn run<P, R, F, Fut>(self, event: &'static str, f: F)
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: FnOnce(AppState, AuthUser, SocketRef, P) -> Fut + Send + 'static,
        Fut: Future<Output = ApiResult<R>> + Send + 'static,
    {
        let Self {
            s,
            data,
            ack,
            asked,
            state,
        } = self;
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
                Err(refused) => {
                    return reply::<R>(&s, &budget, ack, asked, event, Err(refused));
                }
            };
            let result = match data.map(|v| decode::<P>(event, v)) {
                // Boxed: handler futures are kilobytes, and a burst spawns one task
                // per event; refused events then stay small.
                Ok(Ok(payload)) => Box::pin(f(state, user, s.clone(), payload)).await,
                Ok(Err(e)) => Err(e),
                Err(e) => Err(ApiError::BadRequest(
                    format!("malformed {event} payload: {e}").into(),
                )),
            };
            reply(&s, &budget, ack, asked, event, result);
            drop(slot);
        }
        .instrument(span)
        .await;
    }
}

/// The payload as the event's type. A NUL in any string, or a field of the wrong type, is
/// a 400 naming the field, as REST answers; anything else wrong is a 400 saying what.
fn decode<P: DeserializeOwned>(event: &str, v: Value) -> ApiResult<P> {
    if let Some(field) = field_with_nul(&v) {
        return Err(ApiError::invalid(field, "must not contain NUL characters"));
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        if field == "." {
            ApiError::BadRequest(format!("invalid {event} payload: {}", e.inner()).into())
        } else {
            ApiError::invalid(field, e.inner().to_string())
        }
    })
}

/// Answers an event: `{ ok: true, data }` or `{ ok: false, error }` through the ack, or an
/// `error` event when no ack was asked for. The socket lives on either way, unless it
/// cannot take the answer (see [`slow_consumer`]): no answer is dropped silently.
fn reply<R: Serialize>(
    s: &SocketRef,
    budget: &SocketBudget,
    ack: AckSender,
    asked: bool,
    event: &'static str,
    result: ApiResult<R>,
) {
    let sent = match result {
        Ok(data) => {
            tracing::debug!(ok = true, "socket event");
            ack.send(&Answer {
                ok: true,
                data: &data,
            })
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

/// The span of everything done for one socket: its user and socket id (and the event being
/// handled, if any) on every log line, as `request_id` and `user_id` are for REST.
pub(super) fn socket_span(s: &SocketRef, event: Option<&'static str>) -> tracing::Span {
    let user = s.extensions.get::<AuthUser>().map(|u| u.user_id);
    tracing::info_span!(
        "socket",
        ns = s.ns(),
        socket_id = %s.id,
        user_id = user.map(tracing::field::display),
        event,
    )
}
