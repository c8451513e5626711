use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: sub-millisecond fan-out up to slow password hashing.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder is installed once; every app in the process (tests start
/// several) renders from the same handle.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("latency buckets are a non-empty constant")
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
        "bus_publish_errors_total",
        "bus_reconnects_total",
        "bus_lagged_events_total",
        "bus_replayed_messages_total",
        "db_errors_total",
        "redis_errors_total",
        "auth_sessions_revoked_total",
        "messages_stored_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    for status in ["online", "offline"] {
        metrics::counter!("presence_transitions_total", "status" => status).absolute(0);
    }
    for ns in ["/", "/notifications"] {
        metrics::gauge!("socket_connections", "namespace" => ns).increment(0.0);
    }
    for outcome in ["ok", "invalid", "rate_limited"] {
        metrics::counter!("auth_logins_total", "outcome" => outcome).absolute(0);
    }
    for outcome in ["ok", "reused", "invalid"] {
        metrics::counter!("auth_refreshes_total", "outcome" => outcome).absolute(0);
    }
    for limit in crate::limits::Limit::ALL {
        metrics::counter!("limit_refusals_total", "reason" => limit.reason()).absolute(0);
    }
}

fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route template and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    metrics::describe_counter!("auth_logins_total", "Login attempts by outcome");
    metrics::describe_counter!(
        "auth_refreshes_total",
        "Refresh token presentations by outcome (reused: the session was revoked)"
    );
    metrics::describe_counter!(
        "limit_refusals_total",
        "Requests, events and connections refused by a limit, by reason"
    );
    metrics::describe_gauge!(
        "socket_connections",
        "Open Socket.IO connections on this node by namespace"
    );
    metrics::describe_counter!(
        "socket_events_in_total",
        "Socket.IO events received by name"
    );
    metrics::describe_counter!(
        "socket_events_out_total",
        "Socket.IO events delivered by this node by name"
    );
    metrics::describe_counter!(
        "socket_event_errors_total",
        "Socket.IO events answered with an error"
    );
    metrics::describe_histogram!(
        "fanout_latency_seconds",
        metrics::Unit::Seconds,
        "Time from publish on any node to delivery on this node"
    );
    metrics::describe_gauge!(
        "bus_connected",
        "1 while the event bus is subscribed to Redis"
    );
    metrics::describe_counter!(
        "bus_publish_errors_total",
        "Events that could not be published to Redis"
    );
    metrics::describe_counter!(
        "bus_reconnects_total",
        "Event bus resubscriptions after losing Redis"
    );
    metrics::describe_counter!(
        "bus_replayed_messages_total",
        "Messages handed to this node's sockets from PostgreSQL after a resubscription"
    );
    metrics::describe_counter!(
        "presence_transitions_total",
        "Users going online or offline, announced by this node"
    );
    metrics::describe_gauge!(
        "presence_online_users",
        "Users with a live connection anywhere in the cluster"
    );
    metrics::describe_gauge!(
        "db_pool_connections",
        "PostgreSQL pool connections by state"
    );
    metrics::describe_histogram!(
        "db_ping_duration_seconds",
        metrics::Unit::Seconds,
        "PostgreSQL round trip"
    );
    metrics::describe_counter!("db_errors_total", "PostgreSQL probe failures");
    metrics::describe_histogram!(
        "redis_ping_duration_seconds",
        metrics::Unit::Seconds,
        "Redis round trip"
    );
    metrics::describe_counter!("redis_errors_total", "Redis probe failures");
    metrics::describe_gauge!(
        "event_loop_lag_seconds",
        metrics::Unit::Seconds,
        "How late a 100 ms timer fires"
    );
    metrics::describe_gauge!(
        "process_resident_memory_bytes",
        metrics::Unit::Bytes,
        "Resident memory"
    );
    metrics::describe_gauge!(
        "process_cpu_seconds_total",
        metrics::Unit::Seconds,
        "CPU time used by the process, user and system"
    );
    metrics::describe_gauge!("node_draining", "1 once the node is draining");
    metrics::describe_counter!("auth_sessions_revoked_total", "Device sessions revoked");
    metrics::describe_counter!(
        "messages_stored_total",
        "Messages stored (idempotent retries excluded)"
    );
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn render() -> impl IntoResponse {
    let handle = install();
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    // Read at each scrape, so load tests can divide CPU by the work done in between.
    if let Some(cpu) = cpu_seconds() {
        metrics::gauge!("process_cpu_seconds_total").set(cpu);
    }
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
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
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
        metrics::gauge!("event_loop_lag_seconds").set(lag.as_secs_f64());

        let size = state.db.size();
        let idle = state.db.num_idle() as u32;
        metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(idle));
        metrics::gauge!("db_pool_connections", "state" => "used")
            .set(f64::from(size.saturating_sub(idle)));
        metrics::gauge!("db_pool_connections", "state" => "max")
            .set(f64::from(state.settings.db_max_connections));

        let t = Instant::now();
        match sqlx::query_scalar::<_, i32>("select 1")
            .fetch_one(&state.db)
            .await
        {
            Ok(_) => {
                metrics::histogram!("db_ping_duration_seconds").record(t.elapsed().as_secs_f64())
            }
            Err(_) => metrics::counter!("db_errors_total").increment(1),
        }
        let t = Instant::now();
        match state.fabric.ping().await {
            Ok(()) => {
                metrics::histogram!("redis_ping_duration_seconds").record(t.elapsed().as_secs_f64())
            }
            Err(_) => metrics::counter!("redis_errors_total").increment(1),
        }
        if let Ok(n) = state.fabric.presence.online_count().await {
            metrics::gauge!("presence_online_users").set(n as f64);
        }
        if let Some(rss) = resident_memory_bytes() {
            metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
        }
        metrics::gauge!("node_draining").set(if state.draining.is_draining() {
            1.0
        } else {
            0.0
        });
    }
}

/// User plus system CPU time from /proc (Linux); None elsewhere.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    // utime and stime are fields 14 and 15, counted in USER_HZ ticks (100 per second on
    // every Linux build this runs on).
    let mut fields = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Resident set size from /proc (Linux); None elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
