use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    Args, World,
    aftermath::Aftermath,
    chaos::Event,
    device::DeviceStats,
    notifications::NotificationStats,
    resources::{NodeSample, Usage},
    storm::{ReconnectRate, Storm},
};

/// First receipts counted by every device, for the progress line and the drain wait.
pub static DELIVERED: AtomicU64 = AtomicU64::new(0);
/// Seqs a device received again (resume on).
pub static REDELIVERED: AtomicU64 = AtomicU64::new(0);
/// First receipts that came through `sync`.
pub static RECOVERED: AtomicU64 = AtomicU64::new(0);
pub static RECONNECTS: AtomicU64 = AtomicU64::new(0);
pub static RECONNECT_FAILURES: AtomicU64 = AtomicU64::new(0);
pub static RELOGINS: AtomicU64 = AtomicU64::new(0);
/// Reconnects refused because the device's session was gone: a device logged out.
pub static SESSION_REFUSALS: AtomicU64 = AtomicU64::new(0);
/// Sends refused with 401: the sending device's session was gone.
pub static SEND_UNAUTHORIZED: AtomicU64 = AtomicU64::new(0);
pub static SYNCS: AtomicU64 = AtomicU64::new(0);
pub static SYNC_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Send attempts after the first (resume on: ack lost or refused with a 5xx).
pub static SEND_RETRIES: AtomicU64 = AtomicU64::new(0);
/// Message notifications with a send time, counted by every `/notifications` socket.
pub static NOTIFIED: AtomicU64 = AtomicU64::new(0);
/// When a device last lost its socket while the run was on, epoch ms (0: never).
pub static LAST_DROP_EPOCH_MS: AtomicU64 = AtomicU64::new(0);

/// The last socket drop of the run on this process's clock: a storm another load process
/// caused is this one's last failure.
pub fn last_drop() -> Option<Instant> {
    let ms = LAST_DROP_EPOCH_MS.load(Ordering::Relaxed);
    if ms == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let ago = (crate::device::epoch_secs() - ms as f64 / 1000.0).max(0.0);
    Instant::now().checked_sub(Duration::from_secs_f64(ago))
}

/// Microsecond histogram up to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
}

/// Every acked message must reach every connected device of its conversation.
pub fn expected_deliveries(
    acked: &HashMap<Uuid, Vec<u64>>,
    world: &World,
    devices: &[bool],
) -> u64 {
    let mut devices_per_group = vec![0u64; world.groups.len()];
    for (d, connected) in world.devices.iter().zip(devices) {
        if *connected {
            devices_per_group[world.group_of[d.user]] += 1;
        }
    }
    world
        .groups
        .iter()
        .enumerate()
        .map(|(g, id)| acked.get(id).map_or(0, |v| v.len() as u64) * devices_per_group[g])
        .sum()
}

/// One line per second on stderr while sending.
pub async fn progress(
    sent: Arc<AtomicU64>,
    ok: Arc<AtomicU64>,
    err: Arc<AtomicU64>,
    quiet: bool,
    resume: bool,
) {
    let started = Instant::now();
    let mut last = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (s, d) = (
            sent.load(Ordering::Relaxed),
            DELIVERED.load(Ordering::Relaxed),
        );
        if !quiet || std::env::var_os("CHATTY_LOAD_PROGRESS").is_some() {
            let notified = NOTIFIED.load(Ordering::Relaxed);
            let notified = if notified > 0 {
                format!("  notifications {notified}")
            } else {
                String::new()
            };
            let extra = if resume {
                format!(
                    "  reconnects {}  syncs {}  recovered {}  redelivered {}  retries {}",
                    RECONNECTS.load(Ordering::Relaxed),
                    SYNCS.load(Ordering::Relaxed),
                    RECOVERED.load(Ordering::Relaxed),
                    REDELIVERED.load(Ordering::Relaxed),
                    SEND_RETRIES.load(Ordering::Relaxed),
                )
            } else {
                String::new()
            };
            eprintln!(
                "[{:>4}s] sent {:>8} ({:>6}/s)  acked {:>8}  errors {:>5}  delivered {:>9} ({:>7}/s){notified}{extra}",
                started.elapsed().as_secs(),
                s,
                s - last.0,
                ok.load(Ordering::Relaxed),
                err.load(Ordering::Relaxed),
                d,
                d - last.1
            );
        }
        last = (s, d);
    }
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        #[allow(clippy::cast_precision_loss)]
        let max_ms = h.max() as f64 / 1000.0;
        Self {
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms,
        }
    }
}

pub struct RunFigures {
    /// First receipts counted while sending was still on: what kept pace with the offer.
    pub delivered_in_window: u64,
    pub connected: usize,
    pub connect_errors: u64,
    pub connect_secs: f64,
    pub seed_secs: f64,
    pub send_secs: f64,
    pub sent: u64,
    pub ack_ok: u64,
    pub ack_err: u64,
}

/// Message notifications on the devices' `/notifications` sockets (present with
/// `--notifications`). They collapse per recipient and conversation, so fewer events than
/// message deliveries is expected, not a loss; only the latency of those that arrive is
/// measured.
#[derive(Debug, Serialize)]
pub struct Notifications {
    /// `/notifications` sockets connected at the start.
    pub sockets: usize,
    pub connect_errors: u64,
    /// Unread `message` notifications whose preview gave the send time: the latency sample.
    pub events: u64,
    /// Unread `message` notifications whose preview carried no send time: not measured,
    /// not a failure.
    pub unparsed: u64,
    /// Other `notification` events (other types, message notifications marked read).
    pub other: u64,
    pub reconnects: u64,
    /// Sockets that ended the run without a connection.
    pub sockets_lost: u64,
    /// From the send of the message a notification's preview shows to the event's arrival.
    pub latency: Option<Percentiles>,
}

impl Notifications {
    pub fn of(sockets: usize, connect_errors: u64, seen: &[NotificationStats]) -> Self {
        let mut latency = histogram();
        for n in seen {
            let _ = latency.add(&n.latency_us);
        }
        Self {
            sockets,
            connect_errors,
            events: seen.iter().map(|n| n.events).sum(),
            unparsed: seen.iter().map(|n| n.unparsed).sum(),
            other: seen.iter().map(|n| n.other).sum(),
            reconnects: seen.iter().map(|n| n.reconnects).sum(),
            sockets_lost: seen.iter().filter(|n| n.disconnected).count() as u64,
            latency: (!latency.is_empty()).then(|| Percentiles::of(&latency)),
        }
    }
}

/// How resuming went (present when resume was on).
#[derive(Debug, Serialize)]
pub struct Resume {
    pub reconnects: u64,
    pub reconnect_failures: u64,
    pub relogins: u64,
    pub syncs: u64,
    pub sync_errors: u64,
    /// First receipts that came through `sync` instead of live.
    pub recovered_by_sync: u64,
    /// Seqs received again (transport level); never surfaced twice.
    pub redelivered: u64,
    pub send_retries: u64,
    /// Devices that ended the run without a socket.
    pub devices_without_socket: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub users: u32,
    pub devices_per_user: u32,
    pub group_size: u32,
    pub connected: usize,
    pub connect_errors: u64,
    pub connect_secs: f64,
    /// Sockets connected per second during the first connect storm.
    pub connect_per_sec: f64,
    pub seed_secs: f64,
    pub target_rate: f64,
    pub sent: u64,
    pub acked: u64,
    pub send_errors: u64,
    pub sent_per_sec: f64,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub delivered_per_sec: f64,
    /// Deliveries that happened while sending was on, per second: falls behind the offered
    /// rate (sent x group size) once the server saturates, even if the backlog drains later.
    pub delivered_in_window_per_sec: f64,
    pub lost: u64,
    pub duplicated: u64,
    /// Live first receipts below an earlier live seq. A failure unless resuming: a resuming
    /// device orders by seq, and a late live event then fills a gap as `sync` would.
    pub out_of_order: u64,
    #[serde(skip)]
    pub resuming: bool,
    pub latency: Option<Percentiles>,
    pub ack_latency: Option<Percentiles>,
    pub resume: Option<Resume>,
    pub notifications: Option<Notifications>,
    pub chaos: Vec<Event>,
    /// Sessions and presence after the failures (chaos runs).
    pub aftermath: Option<Aftermath>,
    /// Where the sockets went (`--nodes`); the `--metrics` nodes not among them held none,
    /// and what they spent is the cost of events that were not for them.
    pub socket_nodes: Vec<String>,
    pub nodes_before: Vec<NodeSample>,
    pub nodes_after: Vec<NodeSample>,
    pub kb_per_connection: Option<f64>,
    pub usage: Option<Usage>,
    /// Reconnects completed per second (resume on and some socket dropped).
    pub reconnect_rate: Option<ReconnectRate>,
    /// The reconnect storm (`--storm`, `--chaos-kill-node-at`).
    pub storm: Option<Storm>,
}

fn per_sec_of(n: usize, secs: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn kb_per_connection(
    before: &[NodeSample],
    after: &[NodeSample],
    connections: usize,
) -> Option<f64> {
    if connections == 0 || after.is_empty() {
        return None;
    }
    let grown: i64 = after
        .iter()
        .map(|a| {
            let b = before
                .iter()
                .find(|b| b.node == a.node)
                .map_or(0, |b| b.rss_bytes);
            i64::try_from(a.rss_bytes).unwrap_or(0) - i64::try_from(b).unwrap_or(0)
        })
        .sum();
    #[allow(clippy::cast_precision_loss)]
    Some(grown as f64 / 1024.0 / connections as f64)
}

/// Seqs a device should have and did not get. Resuming, every seq up to the newest the
/// run knows of (acked, received, or the conversation's last seq from the final `sync`) is
/// a stored message the device must end up with; without resume, every acked seq.
fn missing(d: &DeviceStats, acked: Option<&Vec<u64>>, resume: bool) -> (u64, u64) {
    if resume {
        let top = acked
            .and_then(|a| a.iter().max().copied())
            .unwrap_or(0)
            .max(d.last_seq)
            .max(d.received.iter().max().copied().unwrap_or(0));
        let lost = (1..=top).filter(|s| !d.received.contains(s)).count() as u64;
        (top, lost)
    } else {
        let Some(seqs) = acked else { return (0, 0) };
        let lost = seqs.iter().filter(|s| !d.received.contains(s)).count() as u64;
        (seqs.len() as u64, lost)
    }
}

impl Report {
    pub fn idle(
        args: &Args,
        connected: usize,
        connect_errors: u64,
        connect_secs: f64,
        before: &[NodeSample],
        after: &[NodeSample],
    ) -> Self {
        Self {
            scenario: "idle",
            users: args.users,
            devices_per_user: args.devices,
            group_size: args.group_size,
            connected,
            connect_errors,
            connect_secs,
            connect_per_sec: per_sec_of(connected, connect_secs),
            seed_secs: 0.0,
            target_rate: 0.0,
            sent: 0,
            acked: 0,
            send_errors: 0,
            sent_per_sec: 0.0,
            delivered: 0,
            expected_deliveries: 0,
            delivered_per_sec: 0.0,
            delivered_in_window_per_sec: 0.0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            resuming: false,
            latency: None,
            ack_latency: None,
            resume: None,
            notifications: None,
            chaos: Vec::new(),
            aftermath: None,
            kb_per_connection: kb_per_connection(before, after, connected),
            socket_nodes: args.socket_nodes(),
            nodes_before: before.to_vec(),
            nodes_after: after.to_vec(),
            usage: None,
            reconnect_rate: None,
            storm: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        args: &Args,
        f: RunFigures,
        acked: &HashMap<Uuid, Vec<u64>>,
        devices: &[DeviceStats],
        ack_hist: &Histogram<u64>,
        (before, after): (&[NodeSample], &[NodeSample]),
        chaos: Vec<Event>,
        usage: Option<Usage>,
        notifications: Option<Notifications>,
    ) -> Self {
        let resume = args.resume_on();
        let mut latency = histogram();
        let (mut delivered, mut expected, mut lost, mut dup, mut ooo) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for d in devices {
            let _ = latency.add(&d.latency_us);
            delivered += d.received.len() as u64;
            dup += d.duplicated;
            ooo += d.out_of_order;
            let (e, l) = missing(d, acked.get(&d.conversation), resume);
            expected += e;
            lost += l;
        }
        #[allow(clippy::cast_precision_loss)]
        let per_sec = |n: u64| {
            if f.send_secs > 0.0 {
                n as f64 / f.send_secs
            } else {
                0.0
            }
        };
        let resume = resume.then(|| Resume {
            reconnects: RECONNECTS.load(Ordering::Relaxed),
            reconnect_failures: RECONNECT_FAILURES.load(Ordering::Relaxed),
            relogins: RELOGINS.load(Ordering::Relaxed),
            syncs: SYNCS.load(Ordering::Relaxed),
            sync_errors: SYNC_ERRORS.load(Ordering::Relaxed),
            recovered_by_sync: devices.iter().map(|d| d.recovered).sum(),
            redelivered: devices.iter().map(|d| d.redelivered).sum(),
            send_retries: SEND_RETRIES.load(Ordering::Relaxed),
            devices_without_socket: devices.iter().filter(|d| d.disconnected).count() as u64,
        });
        // Every socket counts for memory, the `/notifications` ones too.
        let sockets = f.connected + notifications.as_ref().map_or(0, |n| n.sockets);
        Self {
            scenario: if chaos.is_empty() { "send" } else { "chaos" },
            users: args.users,
            devices_per_user: args.devices,
            group_size: args.group_size,
            connected: f.connected,
            connect_errors: f.connect_errors,
            connect_secs: f.connect_secs,
            connect_per_sec: per_sec_of(f.connected, f.connect_secs),
            seed_secs: f.seed_secs,
            target_rate: args.total_rate(),
            sent: f.sent,
            acked: f.ack_ok,
            send_errors: f.ack_err,
            sent_per_sec: per_sec(f.ack_ok),
            delivered,
            expected_deliveries: expected,
            delivered_per_sec: per_sec(delivered),
            delivered_in_window_per_sec: per_sec(f.delivered_in_window),
            lost,
            duplicated: dup,
            out_of_order: ooo,
            resuming: resume.is_some(),
            latency: (!latency.is_empty()).then(|| Percentiles::of(&latency)),
            ack_latency: (!ack_hist.is_empty()).then(|| Percentiles::of(ack_hist)),
            resume,
            notifications,
            chaos,
            aftermath: None,
            kb_per_connection: kb_per_connection(before, after, sockets),
            socket_nodes: args.socket_nodes(),
            nodes_before: before.to_vec(),
            nodes_after: after.to_vec(),
            usage,
            reconnect_rate: None,
            storm: None,
        }
    }

    pub fn failed(&self) -> bool {
        self.lost > 0
            || self.duplicated > 0
            || (self.out_of_order > 0 && !self.resuming)
            || self.aftermath.as_ref().is_some_and(Aftermath::failed)
            || self.storm.as_ref().is_some_and(|s| s.not_back > 0)
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string_pretty(self).unwrap_or_default());
            return;
        }
        println!("== chatty-load: {} scenario", self.scenario);
        println!(
            "users {} x {} devices, groups of {}; connected {} ({} errors) in {:.1}s ({:.0}/s)",
            self.users,
            self.devices_per_user,
            self.group_size,
            self.connected,
            self.connect_errors,
            self.connect_secs,
            self.connect_per_sec
        );
        if self.scenario != "idle" {
            println!(
                "sent {} (acked {}, errors {}) at {:.0}/s (target {:.0}/s)",
                self.sent, self.acked, self.send_errors, self.sent_per_sec, self.target_rate
            );
            println!(
                "delivered {} of {} expected at {:.0}/s ({:.0}/s while sending); lost {}, duplicated {}, out of order {}{}",
                self.delivered,
                self.expected_deliveries,
                self.delivered_per_sec,
                self.delivered_in_window_per_sec,
                self.lost,
                self.duplicated,
                self.out_of_order,
                if self.resuming {
                    " (live, late gap fills: not failures when resuming)"
                } else {
                    ""
                }
            );
            if let Some(l) = &self.latency {
                println!(
                    "end-to-end latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
                );
            }
            if let Some(l) = &self.ack_latency {
                println!(
                    "send ack latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
                    l.p50_ms, l.p99_ms, l.max_ms
                );
            }
            if let Some(n) = &self.notifications {
                n.print(self.delivered);
            }
        }
        if let Some(r) = &self.resume {
            println!(
                "resume: {} reconnects ({} failed attempts, {} re-logins), {} syncs ({} failed), \
                 {} recovered by sync, {} redelivered (transport level), {} send retries, \
                 {} devices ended without a socket",
                r.reconnects,
                r.reconnect_failures,
                r.relogins,
                r.syncs,
                r.sync_errors,
                r.recovered_by_sync,
                r.redelivered,
                r.send_retries,
                r.devices_without_socket
            );
        }
        for e in &self.chaos {
            println!(
                "chaos at {:>5.1}s: {}{} ({:.1}s{})",
                e.at_secs,
                e.action,
                e.node.map(|k| format!(" {k}")).unwrap_or_default(),
                e.took_secs,
                if e.ok { "" } else { ", FAILED" }
            );
        }
        if let Some(a) = &self.aftermath {
            a.print();
        }
        if let Some(r) = &self.reconnect_rate {
            println!(
                "reconnects: {} completed, peak {}/s; per second from the first drop: {:?}",
                r.reconnects, r.peak_per_sec, r.per_sec
            );
        }
        if let Some(s) = &self.storm {
            let secs = |v: Option<f64>| v.map_or("never".to_owned(), |v| format!("{v:.2}s"));
            let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
            println!(
                "storm: {} sockets dropped; back 99% {} all {} ({} not back); resumed 99% {} all {}; {} failed attempts",
                s.dropped,
                secs(s.back_99_secs),
                secs(s.back_all_secs),
                s.not_back,
                secs(s.resumed_99_secs),
                secs(s.resumed_all_secs),
                s.failed_attempts
            );
            println!(
                "storm: the other {} users' sends in the first {:.0}s: ack p99 {} max {} ms ({} sends, {} unacked); delivery p99 {} max {} ms ({} deliveries)",
                s.unaffected_users,
                s.window_secs,
                ms(s.others_ack.p99_ms),
                ms(s.others_ack.max_ms),
                s.others_ack.count,
                s.others_unacked,
                ms(s.others_delivery.p99_ms),
                ms(s.others_delivery.max_ms),
                s.others_delivery.count
            );
        }
        for n in &self.nodes_after {
            #[allow(clippy::cast_precision_loss)]
            let mib = n.rss_bytes as f64 / 1_048_576.0;
            println!(
                "node {}: RSS {mib:.1} MiB, {} chat connections",
                n.node, n.chat_connections
            );
        }
        if let Some(kb) = self.kb_per_connection {
            println!("memory per connection: {kb:.1} KB (RSS growth / connections)");
        }
        if let Some(u) = &self.usage {
            let cpu = u.node_cpu_pcts();
            if !cpu.is_empty() {
                println!(
                    "node CPU (of one core): {}; {} CPU-ms per 1,000 deliveries{}",
                    cpu.join(" "),
                    u.nodes_cpu_ms_per_1k_deliveries
                        .map_or("-".to_owned(), |v| format!("{v:.1}")),
                    u.cpu_resolution_note()
                );
            }
            if u.nodes.iter().any(|n| n.bus_received.is_some()) {
                let each: Vec<String> = u
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{} ({} channels)",
                            n.bus_received_per_sec
                                .map_or("n/a".to_owned(), |r| format!("{r:.0}/s")),
                            n.bus_channels.map_or("n/a".to_owned(), |c| c.to_string())
                        )
                    })
                    .collect();
                println!("bus messages received per node: {}", each.join(", "));
            } else {
                println!("bus messages received per node: n/a (not exported by this server)");
            }
            let opt =
                |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1}{unit}"));
            println!(
                "PostgreSQL {} commits/s, {} CPU; Redis {} commands/s, {} CPU; machine {} busy; load {}",
                opt(u.pg_commits_per_sec, ""),
                opt(u.pg_cpu_secs, " s"),
                opt(u.redis_commands_per_sec, ""),
                opt(u.redis_cpu_secs, " s"),
                opt(u.machine_busy_pct, "%"),
                u.loadavg_before.map_or("-".to_owned(), |l| format!(
                    "{:.2} {:.2} {:.2}",
                    l[0], l[1], l[2]
                ))
            );
        }
    }
}

impl Notifications {
    fn print(&self, delivered: u64) {
        println!(
            "notifications: {} message notifications beside {} message deliveries (collapsed \
             per conversation: fewer is not loss), {} unparsed, {} other; {} sockets ({} connect \
             errors, {} reconnects, {} ended without a socket)",
            self.events,
            delivered,
            self.unparsed,
            self.other,
            self.sockets,
            self.connect_errors,
            self.reconnects,
            self.sockets_lost
        );
        if let Some(l) = &self.latency {
            println!(
                "notification latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} events)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, self.events
            );
        } else {
            println!("notification latency ms: -  (0 events)");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn disorder_fails_a_run_unless_its_devices_resume() {
        let args = crate::Args::parse_from(["chatty-load"]);
        let mut r = Report::idle(&args, 0, 0, 0.0, &[], &[]);
        assert!(!r.failed());
        r.out_of_order = 1;
        assert!(r.failed());
        r.resuming = true;
        assert!(!r.failed());
        r.lost = 1;
        assert!(r.failed());
    }

    #[test]
    fn a_device_logged_out_by_a_failure_fails_the_run() {
        let args = crate::Args::parse_from(["chatty-load"]);
        let mut r = Report::idle(&args, 0, 0, 0.0, &[], &[]);
        r.aftermath = Some(Aftermath::default());
        assert!(!r.failed());
        r.aftermath = Some(Aftermath {
            logged_out: 1,
            ..Aftermath::default()
        });
        assert!(r.failed());
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["aftermath"]["logged_out"], 1);
    }

    #[test]
    fn notifications_of_every_socket_add_up_and_never_fail_a_run() {
        let note = |preview: &str| {
            serde_json::json!({ "type": "message", "is_read": false, "content": preview,
                                "metadata": { "message_preview": preview } })
        };
        let mut a = NotificationStats::new();
        a.receive(&note("1000|1|x"), 2_001_000);
        a.receive(&note("no stamp"), 2_001_000);
        let mut b = NotificationStats::new();
        b.receive(&note("1000|2|x"), 5_001_000);
        b.disconnected = true;
        let n = Notifications::of(2, 1, &[a, b]);
        assert_eq!(
            (n.events, n.unparsed, n.other, n.sockets_lost),
            (2, 1, 0, 1)
        );
        let l = n.latency.as_ref().expect("latency");
        assert!((l.p50_ms - 2.0).abs() < 0.01 && (l.max_ms - 5.0).abs() < 0.01);

        let args = crate::Args::parse_from(["chatty-load", "--notifications"]);
        let mut r = Report::idle(&args, 0, 0, 0.0, &[], &[]);
        r.notifications = Some(n);
        assert!(!r.failed());
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["notifications"]["events"], 2);
        assert!(json["notifications"]["latency"]["p99_ms"].is_number());
    }
}
