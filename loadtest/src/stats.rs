use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chatty::sio_client::{Incoming, SioSender};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{Args, World, parse_new_message};

/// Deliveries counted by every receiver, for the progress line and the drain wait.
pub static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// Microsecond histogram up to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
}

/// What one device saw.
pub struct DeviceStats {
    pub conversation: Uuid,
    pub seen: HashSet<u64>,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub latency_us: Histogram<u64>,
    pub disconnected: bool,
}

/// Reads one device's events until `stop`: checks exactly-once and order by `seq`, records
/// send → delivery latency from the timestamp in the content.
pub async fn receive(
    mut events: mpsc::UnboundedReceiver<Incoming>,
    _keepalive: SioSender,
    conversation: Uuid,
    clock: Instant,
    stop: tokio_util::sync::CancellationToken,
) -> DeviceStats {
    let mut st = DeviceStats {
        conversation,
        seen: HashSet::new(),
        duplicated: 0,
        out_of_order: 0,
        latency_us: histogram(),
        disconnected: false,
    };
    let mut highest = 0u64;
    loop {
        let ev = tokio::select! {
            () = stop.cancelled() => break,
            ev = events.recv() => ev,
        };
        match ev {
            Some(Incoming::Event { name, data }) if name == "newMessage" => {
                let Some((conv, seq, stamp)) = parse_new_message(&data) else {
                    continue;
                };
                if conv != conversation {
                    continue;
                }
                if !st.seen.insert(seq) {
                    st.duplicated += 1;
                    continue;
                }
                if seq < highest {
                    st.out_of_order += 1;
                }
                highest = highest.max(seq);
                DELIVERED.fetch_add(1, Ordering::Relaxed);
                let now = clock.elapsed().as_nanos();
                #[allow(clippy::cast_possible_truncation)]
                let us = (now.saturating_sub(stamp) / 1000) as u64;
                let _ = st.latency_us.record(us.max(1));
            }
            Some(Incoming::Event { .. }) => {}
            Some(Incoming::Disconnected | Incoming::Closed) | None => {
                st.disconnected = true;
                break;
            }
        }
    }
    st
}

/// Every acked message must reach every connected device of its conversation.
pub fn expected_deliveries(acked: &Arc<Mutex<HashMap<Uuid, Vec<u64>>>>, world: &World) -> u64 {
    let acked = acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut devices_per_group = vec![0u64; world.groups.len()];
    for d in &world.devices {
        devices_per_group[world.group_of[d.user]] += 1;
    }
    world
        .groups
        .iter()
        .enumerate()
        .map(|(g, id)| acked.get(id).map_or(0, |v| v.len() as u64) * devices_per_group[g])
        .sum()
}

/// One line per second on stderr while sending.
pub async fn progress(sent: Arc<AtomicU64>, ok: Arc<AtomicU64>, err: Arc<AtomicU64>, quiet: bool) {
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
            eprintln!(
                "[{:>4}s] sent {:>8} ({:>6}/s)  acked {:>8}  errors {:>5}  delivered {:>9} ({:>7}/s)",
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

/// Resident memory and chat connections of each node, from its `/metrics`.
pub async fn node_memory(http: &reqwest::Client, nodes: &[String]) -> Vec<NodeMemory> {
    let mut out = Vec::new();
    for n in nodes {
        let Ok(resp) = http.get(format!("{n}/metrics")).send().await else {
            continue;
        };
        let Ok(text) = resp.text().await else {
            continue;
        };
        let value = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        out.push(NodeMemory {
            node: n.clone(),
            rss_bytes: value("process_resident_memory_bytes").unwrap_or(0.0) as u64,
            chat_connections: value("socket_connections{namespace=\"/\"}").unwrap_or(0.0) as u64,
        });
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeMemory {
    pub node: String,
    pub rss_bytes: u64,
    pub chat_connections: u64,
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
    pub connected: usize,
    pub connect_errors: u64,
    pub connect_secs: f64,
    pub seed_secs: f64,
    pub send_secs: f64,
    pub sent: u64,
    pub ack_ok: u64,
    pub ack_err: u64,
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
    pub seed_secs: f64,
    pub target_rate: f64,
    pub sent: u64,
    pub acked: u64,
    pub send_errors: u64,
    pub sent_per_sec: f64,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub delivered_per_sec: f64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub latency: Option<Percentiles>,
    pub ack_latency: Option<Percentiles>,
    pub nodes_before: Vec<NodeMemory>,
    pub nodes_after: Vec<NodeMemory>,
    pub kb_per_connection: Option<f64>,
}

fn kb_per_connection(
    before: &[NodeMemory],
    after: &[NodeMemory],
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

impl Report {
    pub fn idle(
        args: &Args,
        connected: usize,
        connect_errors: u64,
        connect_secs: f64,
        before: &[NodeMemory],
        after: &[NodeMemory],
    ) -> Self {
        Self {
            scenario: "idle",
            users: args.users,
            devices_per_user: args.devices,
            group_size: args.group_size,
            connected,
            connect_errors,
            connect_secs,
            seed_secs: 0.0,
            target_rate: 0.0,
            sent: 0,
            acked: 0,
            send_errors: 0,
            sent_per_sec: 0.0,
            delivered: 0,
            expected_deliveries: 0,
            delivered_per_sec: 0.0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            latency: None,
            ack_latency: None,
            kb_per_connection: kb_per_connection(before, after, connected),
            nodes_before: before.to_vec(),
            nodes_after: after.to_vec(),
        }
    }

    pub fn run(
        args: &Args,
        f: RunFigures,
        acked: &HashMap<Uuid, Vec<u64>>,
        devices: &[DeviceStats],
        ack_hist: &Histogram<u64>,
        (before, after): (&[NodeMemory], &[NodeMemory]),
    ) -> Self {
        let mut latency = histogram();
        let (mut delivered, mut expected, mut lost, mut dup, mut ooo) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for d in devices {
            let _ = latency.add(&d.latency_us);
            delivered += d.seen.len() as u64;
            dup += d.duplicated;
            ooo += d.out_of_order;
            if let Some(seqs) = acked.get(&d.conversation) {
                expected += seqs.len() as u64;
                lost += seqs.iter().filter(|s| !d.seen.contains(s)).count() as u64;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let per_sec = |n: u64| {
            if f.send_secs > 0.0 {
                n as f64 / f.send_secs
            } else {
                0.0
            }
        };
        Self {
            scenario: "send",
            users: args.users,
            devices_per_user: args.devices,
            group_size: args.group_size,
            connected: f.connected,
            connect_errors: f.connect_errors,
            connect_secs: f.connect_secs,
            seed_secs: f.seed_secs,
            target_rate: args.total_rate(),
            sent: f.sent,
            acked: f.ack_ok,
            send_errors: f.ack_err,
            sent_per_sec: per_sec(f.ack_ok),
            delivered,
            expected_deliveries: expected,
            delivered_per_sec: per_sec(delivered),
            lost,
            duplicated: dup,
            out_of_order: ooo,
            latency: (!latency.is_empty()).then(|| Percentiles::of(&latency)),
            ack_latency: (!ack_hist.is_empty()).then(|| Percentiles::of(ack_hist)),
            kb_per_connection: kb_per_connection(before, after, f.connected),
            nodes_before: before.to_vec(),
            nodes_after: after.to_vec(),
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string_pretty(self).unwrap_or_default());
            return;
        }
        println!("== chatty-load: {} scenario", self.scenario);
        println!(
            "users {} x {} devices, groups of {}; connected {} ({} errors) in {:.1}s",
            self.users,
            self.devices_per_user,
            self.group_size,
            self.connected,
            self.connect_errors,
            self.connect_secs
        );
        if self.scenario == "send" {
            println!(
                "sent {} (acked {}, errors {}) at {:.0}/s (target {:.0}/s)",
                self.sent, self.acked, self.send_errors, self.sent_per_sec, self.target_rate
            );
            println!(
                "delivered {} of {} expected at {:.0}/s; lost {}, duplicated {}, out of order {}",
                self.delivered,
                self.expected_deliveries,
                self.delivered_per_sec,
                self.lost,
                self.duplicated,
                self.out_of_order
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
        }
        for n in &self.nodes_after {
            println!(
                "node {}: RSS {:.1} MiB, {} chat connections",
                n.node,
                n.rss_bytes as f64 / 1_048_576.0,
                n.chat_connections
            );
        }
        if let Some(kb) = self.kb_per_connection {
            println!("memory per connection: {kb:.1} KB (RSS growth / connections)");
        }
    }
}
