//! A socket's life: authentication, admission against the user's socket limit, rooms,
//! presence, and the leases released when it goes.

use serde_json::{Value, json};
use socketioxide::{
    extract::{SocketRef, State, TryData},
    socket::DisconnectReason,
};
use tracing::Instrument;

use super::envelope::socket_span;
use crate::{
    auth::AuthUser,
    bus::{Member, Namespace, room},
    fabric::SocketCap,
    limits::{Limit, SocketBudget},
    presence::{self, Status},
    state::AppState,
};

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
pub(super) async fn authenticate(
    s: SocketRef,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    let auth = auth.unwrap_or(Value::Null);
    let Some(token) = token_of(&s, &auth) else {
        metrics::counter!(crate::metrics::names::SOCKET_AUTH_REFUSED, "reason" => "missing")
            .increment(1);
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
            metrics::counter!(crate::metrics::names::SOCKET_AUTH_REFUSED, "reason" => "invalid")
                .increment(1);
            Err(e.to_string())
        }
    }
}

/// Connect middleware of `/`, after `authenticate`: joins the user's rooms, registers
/// every handler, counts the socket against the user's limit and, once admitted, has
/// this node hear the socket's rooms. socketioxide sends the connect answer before it
/// spawns the connect handler, and a client emits the moment it sees that answer
/// (socket.io-client flushes its buffer, a reconnecting client asks `sync`): an event that
/// found no handler yet would be dropped without an answer, and one published to a room
/// this node does not hear yet would never arrive. Middlewares run before the answer goes
/// out.
pub async fn prepare_chat(s: SocketRef, State(state): State<AppState>) -> Result<(), String> {
    let Some(user) = s.extensions.get::<AuthUser>() else {
        return Ok(());
    };
    s.extensions.insert(SocketBudget::new(
        state.settings.limit_socket_events,
        state.settings.socket_max_in_flight,
    ));
    let rooms = [room::user(user.user_id), room::session(user.session_id)];
    s.join(rooms.clone());
    super::events::register(&s);

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
    let member = Member::new(Namespace::Chat, s.id);
    admit(&state, user, &chat_conn(&state, &s), member, &rooms).await
}

/// This socket's connection id in the fabric (presence and socket leases).
fn chat_conn(state: &AppState, s: &SocketRef) -> String {
    format!("{}:{}", state.node_id, s.id)
}

/// The connection id of a `/notifications` socket, apart from the chat ones.
fn notifications_conn(state: &AppState, s: &SocketRef) -> String {
    format!("{}:n:{}", state.node_id, s.id)
}

/// The last step of a connect middleware: counts the socket against the user's limit,
/// checks the device session once more, then has this node hear the socket's `rooms`. A
/// logout that raced this connect either revoked the session before this check (refused
/// here) or after it; the check once the socket is in the namespace ([`still_live`]) comes
/// after the node hears the socket's `session:` room, so such a logout is either seen by
/// that check or its disconnect reaches the socket.
async fn admit(
    state: &AppState,
    user: AuthUser,
    conn: &str,
    member: Member,
    rooms: &[String],
) -> Result<(), String> {
    let admitted = state
        .fabric
        .limits
        .admit_socket(
            user.user_id,
            conn,
            SocketCap {
                max: state.settings.max_sockets_per_user,
                lease: state.settings.presence_ttl(),
            },
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
    let session = [(user.user_id, user.session_id)];
    if matches!(state.fabric.sessions.live(&session).await, Ok(live) if live.is_empty()) {
        let _ = state.fabric.limits.release_socket(user.user_id, conn).await;
        return Err("session has been revoked or has expired".to_owned());
    }
    state.bus.join(member, rooms).await;
    Ok(())
}

/// After the socket entered its namespace: whether its session is still live. A revoked
/// one is disconnected here (its logout's broadcast may have passed while the socket was
/// not yet in the namespace).
async fn still_live(state: &AppState, s: &SocketRef, user: AuthUser) -> bool {
    match state
        .fabric
        .sessions
        .live(&[(user.user_id, user.session_id)])
        .await
    {
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
    state.bus.forget(Member::new(Namespace::Chat, s.id));
    let conn = chat_conn(state, s);
    state.local.remove(&conn);
    if keep_lease {
        return;
    }
    if let Some(user) = s.extensions.get::<AuthUser>() {
        if let Err(e) = state
            .fabric
            .limits
            .release_socket(user.user_id, &conn)
            .await
        {
            tracing::debug!(error = %e, "socket lease not released; it expires by itself");
        }
        match state.fabric.presence.disconnect(user.user_id, &conn).await {
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
        let came_online = match state
            .fabric
            .presence
            .connect(user.user_id, &conn, state.settings.presence_ttl())
            .await
        {
            Ok(online) => online,
            Err(e) => {
                tracing::warn!(error = %e, "presence not recorded; the next heartbeat retries");
                false
            }
        };
        // A socket that closed meanwhile ran its disconnect handler before it was counted;
        // left counted, heartbeats would renew its lease for ever. Released before the
        // announce, which may take its time in a connect storm: the announce records what
        // is true by then either way.
        if !s.connected() {
            release(&state, &s, state.draining.is_draining()).await;
        }
        if came_online {
            presence::announce(&state, user.user_id, Status::Online).await;
        }
    }
    .instrument(socket_span(&s, None))
    .await;
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
    let rooms = [room::user(user.user_id), room::session(user.session_id)];
    s.join(rooms.clone());
    s.on_disconnect(|s: SocketRef, State(state): State<AppState>| async move {
        state
            .bus
            .forget(Member::new(Namespace::Notifications, s.id));
        let conn = notifications_conn(&state, &s);
        if state.local_notifications.remove(&conn).is_some() {
            if let Some(user) = s.extensions.get::<AuthUser>() {
                let _ = state
                    .fabric
                    .limits
                    .release_socket(user.user_id, &conn)
                    .await;
            }
        }
    });
    let member = Member::new(Namespace::Notifications, s.id);
    admit(
        &state,
        user,
        &notifications_conn(&state, &s),
        member,
        &rooms,
    )
    .await
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
        state
            .bus
            .forget(Member::new(Namespace::Notifications, s.id));
        let _ = state
            .fabric
            .limits
            .release_socket(user.user_id, &conn)
            .await;
        return;
    }
    if !still_live(&state, &s, user).await {
        return;
    }
    let _ = s.emit("notifications:connected", &json!({ "status": "connected" }));
}
