//! Every metric a node exports. Call sites, the load tool and the ops tests name a metric
//! through its constant, and [`ALL`] gives each one its type and HELP text, so a rename is
//! one edit here plus the dashboard and alerts (which `tests/api/ops.rs` checks against
//! this table).
//!
//! Chatty's own metrics carry the `chatty_` prefix. The process metrics keep the standard
//! unprefixed names that generic process dashboards query; `metrics-process` exports and
//! describes them.

use metrics::Unit;

/// How a metric is exposed (its `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word of the Prometheus `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One row of [`ALL`].
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

pub const HTTP_REQUESTS: &str = "chatty_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "chatty_http_request_duration_seconds";
pub const AUTH_LOGINS: &str = "chatty_auth_logins_total";
pub const AUTH_REFRESHES: &str = "chatty_auth_refreshes_total";
pub const AUTH_SESSIONS_REVOKED: &str = "chatty_auth_sessions_revoked_total";
pub const SESSION_CACHE_MISSES: &str = "chatty_session_cache_misses_total";
pub const LIMIT_REFUSALS: &str = "chatty_limit_refusals_total";
pub const MESSAGES_STORED: &str = "chatty_messages_stored_total";
pub const SOCKET_CONNECTIONS: &str = "chatty_socket_connections";
pub const SOCKET_AUTH_REFUSED: &str = "chatty_socket_auth_refused_total";
pub const SOCKET_EVENTS_IN: &str = "chatty_socket_events_in_total";
pub const SOCKET_EVENTS_OUT: &str = "chatty_socket_events_out_total";
pub const SOCKET_EVENT_ERRORS: &str = "chatty_socket_event_errors_total";
pub const FANOUT_LATENCY: &str = "chatty_fanout_latency_seconds";
pub const BUS_CONNECTED: &str = "chatty_bus_connected";
pub const BUS_PUBLISHED: &str = "chatty_bus_published_total";
pub const BUS_PUBLISH_ERRORS: &str = "chatty_bus_publish_errors_total";
pub const BUS_RECONNECTS: &str = "chatty_bus_reconnects_total";
pub const REDIS_RECONNECTS: &str = "chatty_redis_cluster_reconnects_total";
pub const BUS_DECODE_ERRORS: &str = "chatty_bus_decode_errors_total";
pub const BUS_LAGGED_EVENTS: &str = "chatty_bus_lagged_events_total";
pub const BUS_REPLAYED_MESSAGES: &str = "chatty_bus_replayed_messages_total";
pub const BUS_REPLAYED_CHANGES: &str = "chatty_bus_replayed_changes_total";
pub const BUS_REORDER_HELD: &str = "chatty_bus_reorder_held_total";
pub const BUS_REORDER_GAPS: &str = "chatty_bus_reorder_gaps_total";
pub const BUS_RECEIVED: &str = "chatty_bus_received_total";
pub const BUS_CHANNELS: &str = "chatty_bus_channels";
pub const BUS_PUBLISH_BATCH: &str = "chatty_bus_publish_batch_size";
pub const BUS_SUBSCRIBE_LATENCY: &str = "chatty_bus_subscribe_seconds";
pub const PRESENCE_TRANSITIONS: &str = "chatty_presence_transitions_total";
pub const PRESENCE_ONLINE_USERS: &str = "chatty_presence_online_users";
pub const PRESENCE_HEARTBEAT_ERRORS: &str = "chatty_presence_heartbeat_errors_total";
pub const DB_POOL_CONNECTIONS: &str = "chatty_db_pool_connections";
pub const DB_PING_DURATION: &str = "chatty_db_ping_duration_seconds";
pub const DB_ERRORS: &str = "chatty_db_errors_total";
pub const REDIS_PING_DURATION: &str = "chatty_redis_ping_duration_seconds";
pub const REDIS_ERRORS: &str = "chatty_redis_errors_total";
pub const EVENT_LOOP_LAG: &str = "chatty_event_loop_lag_seconds";
pub const NODE_DRAINING: &str = "chatty_node_draining";

/// Chatty's own metrics: what `describe` registers and the ops tests check the exposition,
/// the dashboard and the alerts against.
pub const ALL: &[Metric] = &[
    counter(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status",
    ),
    seconds(
        HTTP_REQUEST_DURATION,
        Kind::Histogram,
        "HTTP request latency by method and route template",
    ),
    counter(AUTH_LOGINS, "Login attempts by outcome"),
    counter(
        AUTH_REFRESHES,
        "Refresh token presentations by outcome (reused: the session was revoked)",
    ),
    counter(AUTH_SESSIONS_REVOKED, "Device sessions revoked"),
    counter(
        SESSION_CACHE_MISSES,
        "Session checks the cache could not answer, read from PostgreSQL, by outcome (live: cached again; gone: marked revoked)",
    ),
    counter(
        LIMIT_REFUSALS,
        "Requests, events and connections refused by a limit, by reason",
    ),
    counter(
        MESSAGES_STORED,
        "Messages stored (idempotent retries excluded)",
    ),
    gauge(
        SOCKET_CONNECTIONS,
        "Open Socket.IO connections on this node by namespace",
    ),
    counter(
        SOCKET_AUTH_REFUSED,
        "Socket.IO connections refused at the handshake, by reason (missing or invalid token)",
    ),
    counter(SOCKET_EVENTS_IN, "Socket.IO events received by name"),
    counter(
        SOCKET_EVENTS_OUT,
        "Socket.IO events delivered by this node by name",
    ),
    counter(
        SOCKET_EVENT_ERRORS,
        "Socket.IO events answered with an error, by name and error code",
    ),
    seconds(
        FANOUT_LATENCY,
        Kind::Histogram,
        "Time from publish on any node to delivery on this node",
    ),
    gauge(
        BUS_CONNECTED,
        "1 while the event bus is subscribed to Redis",
    ),
    counter(BUS_PUBLISHED, "Events this node published to Redis"),
    counter(
        BUS_PUBLISH_ERRORS,
        "Events that could not be published to Redis",
    ),
    counter(
        BUS_RECONNECTS,
        "Event bus resubscriptions after losing Redis",
    ),
    counter(
        REDIS_RECONNECTS,
        "Redis Cluster command connections replaced after they stopped answering",
    ),
    counter(
        BUS_DECODE_ERRORS,
        "Bus messages dropped because this node could not decode them",
    ),
    counter(
        BUS_LAGGED_EVENTS,
        "Bus events dropped because socket delivery fell behind",
    ),
    counter(
        BUS_REPLAYED_MESSAGES,
        "Messages handed to this node's sockets from PostgreSQL after a resubscription",
    ),
    counter(
        BUS_REPLAYED_CHANGES,
        "Change-log entries (edits, deletes, receipts, membership) handed to this node's sockets from PostgreSQL after a resubscription",
    ),
    counter(
        BUS_REORDER_HELD,
        "Bus events held back because an earlier seq of their conversation had not arrived",
    ),
    counter(
        BUS_REORDER_GAPS,
        "Seq gaps given up on: held events released without the missing ones",
    ),
    counter(
        BUS_RECEIVED,
        "Bus messages this node received from Redis, one per channel it is subscribed to",
    ),
    gauge(
        BUS_CHANNELS,
        "Bus channels this node is subscribed to (rooms with a local socket)",
    ),
    histogram(
        BUS_PUBLISH_BATCH,
        "Channel publishes per pipelined batch (one event for many addressees is one batch)",
    ),
    seconds(
        BUS_SUBSCRIBE_LATENCY,
        Kind::Histogram,
        "Time to subscribe a room's channel, from the first local socket joining to Redis confirming",
    ),
    counter(
        PRESENCE_TRANSITIONS,
        "Users going online or offline, announced by this node",
    ),
    gauge(
        PRESENCE_ONLINE_USERS,
        "Users with a live connection anywhere in the cluster",
    ),
    counter(
        PRESENCE_HEARTBEAT_ERRORS,
        "Presence and socket lease renewals that failed",
    ),
    gauge(DB_POOL_CONNECTIONS, "PostgreSQL pool connections by state"),
    seconds(DB_PING_DURATION, Kind::Histogram, "PostgreSQL round trip"),
    counter(DB_ERRORS, "PostgreSQL probe failures"),
    seconds(REDIS_PING_DURATION, Kind::Histogram, "Redis round trip"),
    counter(REDIS_ERRORS, "Redis probe failures"),
    seconds(EVENT_LOOP_LAG, Kind::Gauge, "How late a 100 ms timer fires"),
    gauge(NODE_DRAINING, "1 once the node is draining"),
];

/// The standard process metrics, as `metrics-process` names them.
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";

/// What `metrics-process` exports on Linux, which describes them itself.
pub const PROCESS: &[&str] = &[
    PROCESS_CPU_SECONDS,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_start_time_seconds",
    "process_threads",
];

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        unit: None,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        unit: None,
        help,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram,
        unit: None,
        help,
    }
}

const fn seconds(name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        unit: Some(Unit::Seconds),
        help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_unique_and_suffixed_by_kind() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(m.name.starts_with("chatty_"), "{}", m.name);
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(!m.help.is_empty(), "{} has no help", m.name);
            // Prometheus conventions: only counters end in _total; seconds say so.
            assert_eq!(
                m.name.ends_with("_total"),
                m.kind == Kind::Counter,
                "{}",
                m.name
            );
            assert_eq!(
                m.name.ends_with("_seconds"),
                m.unit == Some(Unit::Seconds),
                "{}",
                m.name
            );
        }
    }
}
