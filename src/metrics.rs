use std::{
    sync::{LazyLock, OnceLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_process::Collector;

pub mod names;

/// Latency buckets in seconds: sub-millisecond fan-out up to slow password hashing.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Count buckets: a 1:1 event up to a group of the largest allowed size.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

/// The process-wide recorder is installed once; every app in the process (tests start
/// several) renders from the same handle.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// CPU, memory and file descriptors of this process, under the standard unprefixed names.
static PROCESS: LazyLock<Collector> = LazyLock::new(Collector::default);

pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("latency buckets are a non-empty constant")
                .set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)
                .expect("size buckets are a non-empty constant")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first, which this crate never does.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            zero();
            handle
        })
        .clone()
}

/// Series that exist before their first event, so dashboards and alerts see 0, not "no data".
fn zero() {
    for name in [
        names::BUS_RECEIVED,
        names::BUS_PUBLISH_ERRORS,
        names::BUS_RECONNECTS,
        names::BUS_LAGGED_EVENTS,
        names::BUS_REPLAYED_MESSAGES,
        names::DB_ERRORS,
        names::REDIS_ERRORS,
        names::AUTH_SESSIONS_REVOKED,
        names::MESSAGES_STORED,
    ] {
        metrics::counter!(name).absolute(0);
    }
    for status in ["online", "offline"] {
        metrics::counter!(names::PRESENCE_TRANSITIONS, "status" => status).absolute(0);
    }
    for ns in ["/", "/notifications"] {
        metrics::gauge!(names::SOCKET_CONNECTIONS, "namespace" => ns).increment(0.0);
    }
    metrics::gauge!(names::BUS_CHANNELS).increment(0.0);
    for outcome in ["ok", "invalid", "rate_limited"] {
        metrics::counter!(names::AUTH_LOGINS, "outcome" => outcome).absolute(0);
    }
    for outcome in ["ok", "reused", "invalid"] {
        metrics::counter!(names::AUTH_REFRESHES, "outcome" => outcome).absolute(0);
    }
    for limit in crate::limits::Limit::ALL {
        metrics::counter!(names::LIMIT_REFUSALS, "reason" => limit.reason()).absolute(0);
    }
}

fn describe() {
    metrics::with_recorder(|r| {
        for m in names::ALL {
            let (name, help) = (m.name.into(), m.help.into());
            match m.kind {
                names::Kind::Counter => r.describe_counter(name, m.unit, help),
                names::Kind::Gauge => r.describe_gauge(name, m.unit, help),
                names::Kind::Histogram => r.describe_histogram(name, m.unit, help),
            }
        }
    });
    PROCESS.describe();
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn render() -> impl IntoResponse {
    let handle = install();
    // Read at each scrape, so load tests can divide CPU by the work done in between.
    PROCESS.collect();
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// Counts and times every request by its route template (never the raw URI, which would
/// explode label cardinality with ids). No label holds client input: a method outside
/// the standard ones is `OTHER`, a path no route matches is `unmatched`, and a status is
/// one the server chose.
pub async fn track_http(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// The method as a label: one of the standard methods, else `OTHER`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Samples what no request path measures: pool usage, dependency round trips, event-loop
/// lag, memory, cluster presence. Runs until `stop`.
pub async fn sampler(state: crate::state::AppState, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let lag_start = Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let lag = lag_start
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(100));
        metrics::gauge!(names::EVENT_LOOP_LAG).set(lag.as_secs_f64());

        let size = state.db.size();
        let idle = state.db.num_idle() as u32;
        metrics::gauge!(names::DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
        metrics::gauge!(names::DB_POOL_CONNECTIONS, "state" => "used")
            .set(f64::from(size.saturating_sub(idle)));
        metrics::gauge!(names::DB_POOL_CONNECTIONS, "state" => "max")
            .set(f64::from(state.settings.db_max_connections));

        let t = Instant::now();
        match sqlx::query_scalar::<_, i32>("select 1")
            .fetch_one(&state.db)
            .await
        {
            Ok(_) => metrics::histogram!(names::DB_PING_DURATION).record(t.elapsed().as_secs_f64()),
            Err(_) => metrics::counter!(names::DB_ERRORS).increment(1),
        }
        let t = Instant::now();
        match state.fabric.ping().await {
            Ok(()) => {
                metrics::histogram!(names::REDIS_PING_DURATION).record(t.elapsed().as_secs_f64())
            }
            Err(_) => metrics::counter!(names::REDIS_ERRORS).increment(1),
        }
        if let Ok(n) = state.fabric.presence.online_count().await {
            metrics::gauge!(names::PRESENCE_ONLINE_USERS).set(n as f64);
        }
        PROCESS.collect();
        metrics::gauge!(names::NODE_DRAINING).set(if state.draining.is_draining() {
            1.0
        } else {
            0.0
        });
    }
}
