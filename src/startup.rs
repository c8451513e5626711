use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, serve::ListenerExt};
use tokio::net::TcpListener;

use crate::{
    auth::{Hasher, Tokens},
    bus::{Bus, MemoryBus, Namespace, RedisBus},
    config::Settings,
    db,
    fabric::{Fabric, RedisKeys},
    http,
    presence::{self, LocalConnections},
    realtime,
    social::notifications::{MessageNotifier, MessageNotifierInbox, run_message_notifier},
    state::{AppState, Draining},
};
use socketioxide::SocketIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a stopping node waits for socket disconnect work before closing its pool.
const SOCKET_WORK_GRACE: Duration = Duration::from_secs(5);

/// How often deferred presence transitions are recorded (`presence::repair_loop`).
const PRESENCE_REPAIR_EVERY: Duration = Duration::from_secs(2);

/// How often each node prunes the change log. Nodes pruning at once share the work, and
/// a prune with nothing old enough costs one index probe.
const CHANGE_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One node, bound and wired, not yet serving.
pub struct Application {
    port: u16,
    /// Owned until `run_until_stopped` hands it to the server.
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// Socket.IO handle: the bus delivers through it; closed on drain.
    io: SocketIo,
    /// The notifier task's end of `state.notifier`; moved into the task by
    /// `run_until_stopped`.
    notifier_inbox: MessageNotifierInbox,
    /// `/metrics` on its own address (`CHATTY_METRICS_ADDR`), served until the node stops.
    metrics_listener: Option<TcpListener>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let jwt_key = settings.jwt_key().map_err(anyhow::Error::msg)?;
        settings.drain_spread().map_err(anyhow::Error::msg)?;
        let node_id: Arc<str> = settings.node_id().into();
        crate::metrics::install();

        db::ensure_database(&settings.database_url).await?;
        let pool = db::connect(&settings.database_url, settings.db_max_connections).await?;
        if settings.no_migrate {
            tracing::info!("migrations skipped (--no-migrate)");
        } else {
            db::migrate(&pool).await?;
        }

        let (fabric, bus): (Fabric, Arc<dyn Bus>) = match settings
            .redis()
            .map_err(anyhow::Error::msg)?
        {
            Some(target) => {
                let fabric = Fabric::redis(&target, &settings.redis_prefix).await?;
                let bus = RedisBus::start(&target, RedisKeys::new(&settings.redis_prefix)).await?;
                (fabric, Arc::new(bus))
            }
            None => {
                tracing::warn!(
                    "neither REDIS_URL nor REDIS_CLUSTER_URLS is set: running as a single node with in-process sessions, presence and fan-out"
                );
                (Fabric::memory(), Arc::new(MemoryBus::new()))
            }
        };

        // Sessions outlive the cache: PostgreSQL holds them, whichever backend caches them.
        let fabric = fabric.with_durable_sessions(pool.clone(), settings.access_token_ttl());

        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("cannot bind CHATTY_ADDR {}", settings.addr))?;
        let port = listener.local_addr()?.port();
        let metrics_listener = match settings.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind CHATTY_METRICS_ADDR {addr}"))?,
            ),
            None => None,
        };

        let (notifier, notifier_inbox) = MessageNotifier::new();
        let state = AppState {
            tokens: Tokens::new(&jwt_key, settings.access_token_ttl()),
            hasher: Hasher::new(
                settings.hash_slots(),
                Duration::from_millis(settings.hash_wait_ms),
            ),
            settings: Arc::new(settings),
            node_id,
            db: pool,
            fabric,
            bus,
            local: Arc::new(LocalConnections::new(Namespace::Chat)),
            local_notifications: Arc::new(LocalConnections::new(Namespace::Notifications)),
            draining: Arc::new(Draining::default()),
            notifier,
            socket_work: TaskTracker::new(),
            presence_backlog: Arc::default(),
        };
        let (sio_layer, io) = realtime::build(&state);
        // Outermost, so Socket.IO traffic (long-polling GETs stay open ~25 s) bypasses the
        // REST timeout and body limit.
        let router = http::api_router(state.clone())
            .layer(sio_layer)
            .layer(axum::middleware::map_request(realtime::detach_handshake));
        Ok(Self {
            port,
            listener,
            router,
            state,
            io,
            notifier_inbox,
            metrics_listener,
        })
    }

    /// The port of the separate metrics listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: readiness fails at once, the listener
    /// stops accepting, in-flight requests finish within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            state,
            port,
            io,
            notifier_inbox,
            metrics_listener,
        } = self;
        let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
        let spread = state.settings.drain_spread().map_err(anyhow::Error::msg)?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(crate::delivery::run(
            io.clone(),
            state.clone(),
            stop.clone(),
        ));
        let ttl = state.settings.presence_ttl();
        tasks.spawn(presence::heartbeat_loop(
            state.clone(),
            io.clone(),
            ttl,
            stop.clone(),
        ));
        tasks.spawn(presence::reaper_loop(
            state.clone(),
            (ttl / 6).max(Duration::from_millis(100)),
            stop.clone(),
        ));
        tasks.spawn(presence::repair_loop(
            state.clone(),
            PRESENCE_REPAIR_EVERY,
            stop.clone(),
        ));
        tasks.spawn(crate::metrics::sampler(state.clone(), stop.clone()));
        tasks.spawn(crate::chat::prune_loop(
            state.db.clone(),
            Duration::from_secs(state.settings.change_retention_secs),
            CHANGE_PRUNE_EVERY,
            stop.clone(),
        ));
        if let Some(listener) = metrics_listener {
            // Scrapes go on while the node drains; the listener closes when it stops.
            let router =
                Router::new().route("/metrics", axum::routing::get(crate::metrics::render));
            let stopped = stop.clone();
            tasks.spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        // Stopped after the server, so it writes the notifications of the last requests.
        tasks.spawn(run_message_notifier(
            notifier_inbox,
            state.db.clone(),
            state.bus.clone(),
            stop.clone(),
        ));
        tasks.close();

        let draining = state.draining.clone();
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            draining.start();
            // Sockets are sent away, spread over `spread`; their clients reconnect through
            // the balancer to a node that still accepts. Until its turn a socket is served
            // as before.
            tokio::spawn(async move {
                crate::realtime::drain(&io, spread).await;
                let _ = drained_tx.send(());
            });
            let _ = signalled_tx.send(());
        };
        // Without TCP_NODELAY small frames wait for ACKs and delivery p99 grows by ~40 ms.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        tracing::info!(node = %state.node_id, port, fabric = state.fabric.kind(), "listening");
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        // WebSocket connections are no longer the server's once upgraded: the node stays up
        // until the drain has closed them.
        let served = async move {
            server.await?;
            let _ = drained_rx.await;
            Ok::<_, std::io::Error>(())
        };
        let deadline = async {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            res = served => res.context("server error")?,
            () = deadline => tracing::warn!(?grace, "grace period over; closing remaining connections"),
        }
        stop.cancel();
        tasks.wait().await;
        // Sockets that closed just before the signal are still recording their users
        // offline; a closed pool would leave those users online in PostgreSQL.
        state.socket_work.close();
        if tokio::time::timeout(SOCKET_WORK_GRACE, state.socket_work.wait())
            .await
            .is_err()
        {
            tracing::warn!("socket disconnect work still running at shutdown");
        }
        state.db.close().await;
        tracing::info!(node = %state.node_id, "stopped");
        Ok(())
    }
}
