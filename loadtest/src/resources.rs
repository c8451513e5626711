//! What the run cost: each node's CPU (from /proc when it runs on this machine, else its
//! `/metrics`), memory and bus traffic (messages received from Redis, channels subscribed,
//! from its `/metrics`), Redis CPU and commands, PostgreSQL commits and (on this machine)
//! the CPU of its processes, the whole machine's CPU and load average. Sampled when
//! sending starts and when it ends; the differences are what `docs/scaling.md` does its
//! arithmetic with.

use chatty::metrics::names;
use serde::Serialize;

/// One node's figures from its `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSample {
    pub node: String,
    pub rss_bytes: u64,
    pub chat_connections: u64,
    /// User plus system CPU time: from /proc for a node on this machine, else the node's
    /// `process_cpu_seconds_total` (absent from servers that do not export it).
    pub cpu_seconds: Option<f64>,
    /// Granularity of `cpu_seconds`: Chatty's exported counter holds whole seconds
    /// (`metrics-process`), which over a 12 s step at 10% of a core is all noise; /proc
    /// counts 10 ms ticks.
    pub cpu_resolution_secs: Option<f64>,
    /// `chatty_bus_received_total`: None from a server that does not count what its bus
    /// receives (the single-channel bus did not), so reports can say "n/a" instead of 0.
    pub bus_received_total: Option<f64>,
    /// `chatty_bus_channels`, likewise.
    pub bus_channels: Option<f64>,
}

/// Every figure at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub nodes: Vec<NodeSample>,
    /// used_cpu_user + used_cpu_sys, total_commands_processed.
    redis: Option<(f64, u64)>,
    pg_commits: Option<i64>,
    pg_cpu_seconds: Option<f64>,
    /// Busy and total jiffies of the whole machine.
    machine: Option<(u64, u64)>,
    pub loadavg: Option<[f64; 3]>,
}

/// Where the figures come from.
pub struct Probes {
    http: reqwest::Client,
    nodes: Vec<String>,
    /// One client per Redis process: the one Redis, or every node of a Redis Cluster, whose
    /// figures add up.
    redis: Vec<redis::Client>,
    pg: Option<sqlx::PgPool>,
}

impl Probes {
    pub async fn new(
        http: reqwest::Client,
        nodes: Vec<String>,
        redis_urls: &[String],
        database_url: Option<&str>,
    ) -> Self {
        let redis = redis_urls
            .iter()
            .filter_map(|u| redis::Client::open(u.as_str()).ok())
            .collect();
        let pg = match database_url {
            Some(u) => sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(u)
                .await
                .ok(),
            None => None,
        };
        Self {
            http,
            nodes,
            redis,
            pg,
        }
    }

    pub async fn sample(&self) -> Sample {
        Sample {
            nodes: node_samples(&self.http, &self.nodes).await,
            redis: self.redis_info().await,
            pg_commits: self.pg_commits().await,
            pg_cpu_seconds: processes_cpu_seconds("postgres"),
            machine: machine_jiffies(),
            loadavg: loadavg(),
        }
    }

    /// Summed over every Redis process that answers (a killed cluster node does not).
    async fn redis_info(&self) -> Option<(f64, u64)> {
        let mut total: Option<(f64, u64)> = None;
        for client in &self.redis {
            if let Some((cpu, commands)) = Self::redis_info_of(client).await {
                let (c, n) = total.unwrap_or_default();
                total = Some((c + cpu, n + commands));
            }
        }
        total
    }

    async fn redis_info_of(client: &redis::Client) -> Option<(f64, u64)> {
        // Bounded: a cluster node mid-failover may accept and not answer.
        let info = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let mut c = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("INFO").query_async::<String>(&mut c).await.ok()
        });
        let info = info.await.ok()??;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let cpu = field("used_cpu_user")?.parse::<f64>().ok()?
            + field("used_cpu_sys")?.parse::<f64>().ok()?;
        let commands = field("total_commands_processed")?.parse().ok()?;
        Some((cpu, commands))
    }

    async fn pg_commits(&self) -> Option<i64> {
        let pool = self.pg.as_ref()?;
        // Statistics are flushed by each backend at most once a second: fine over a run.
        sqlx::query_scalar(
            "select xact_commit from pg_stat_database where datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .ok()
    }
}

/// Resident memory, chat connections and CPU time of each node, from its `/metrics`.
pub async fn node_samples(http: &reqwest::Client, nodes: &[String]) -> Vec<NodeSample> {
    let mut out = Vec::new();
    for n in nodes {
        let Ok(resp) = http.get(format!("{n}/metrics")).send().await else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        let Ok(text) = resp.text().await else {
            continue;
        };
        let value = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        let (cpu_seconds, cpu_resolution_secs) = match local_cpu_seconds(n) {
            Some(cpu) => (Some(cpu), Some(1.0 / USER_HZ)),
            None => {
                let cpu = value(&format!("{} ", names::PROCESS_CPU_SECONDS));
                // A whole number is all Chatty's counter has; the reference exports fractions.
                let resolution = cpu.map(|c| if c.fract() == 0.0 { 1.0 } else { 1e-6 });
                (cpu, resolution)
            }
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        out.push(NodeSample {
            node: n.clone(),
            rss_bytes: value(&format!("{} ", names::PROCESS_RESIDENT_MEMORY)).unwrap_or(0.0) as u64,
            chat_connections: value(&format!("{}{{namespace=\"/\"}}", names::SOCKET_CONNECTIONS))
                .unwrap_or(0.0) as u64,
            cpu_seconds,
            cpu_resolution_secs,
            bus_received_total: metric_sum(&text, names::BUS_RECEIVED),
            bus_channels: metric_sum(&text, names::BUS_CHANNELS),
        });
    }
    // The exporter shows a series only once it has been recorded, so a node that has not
    // received anything yet (a node without sockets, on a routed bus) exports no counter
    // at all. Every node of a cluster runs one build: if any node exports a bus figure,
    // the build has it, and its absence elsewhere means zero, not "not measured".
    if out.iter().any(|s| s.bus_received_total.is_some()) {
        for s in &mut out {
            s.bus_received_total.get_or_insert(0.0);
        }
    }
    if out.iter().any(|s| s.bus_channels.is_some()) {
        for s in &mut out {
            s.bus_channels.get_or_insert(0.0);
        }
    }
    out
}

/// The sum of every series of metric `name` in a Prometheus text exposition (labelled or
/// not), or None when it has none.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name` exactly: not `name_bucket`, nor another metric `name` is a prefix of.
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// Jiffies per second of /proc times (USER_HZ; 100 on every Linux this runs on).
const USER_HZ: f64 = 100.0;

/// CPU seconds of every process of this machine named `comm` (Linux); what PostgreSQL's
/// backends and helpers have used, when it runs here.
fn processes_cpu_seconds(comm: &str) -> Option<f64> {
    let mut jiffies = 0u64;
    let mut found = false;
    for (_, stat) in processes()? {
        let Some((name, used)) = comm_and_jiffies(&stat) else {
            continue;
        };
        if name == comm {
            jiffies += used;
            found = true;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    found.then(|| jiffies as f64 / USER_HZ)
}

/// Every process of this machine: its /proc directory and the text of its `stat`.
fn processes() -> Option<impl Iterator<Item = (std::path::PathBuf, String)>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(entries.flatten().filter_map(|entry| {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        Some((entry.path(), stat))
    }))
}

/// The command name and user plus system jiffies of a /proc `stat` line.
fn comm_and_jiffies(stat: &str) -> Option<(&str, u64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    // After "(comm) ": state is field 3; utime and stime are fields 14 and 15.
    let mut fields = stat.get(close + 2..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((stat.get(open + 1..close)?, utime + stime))
}

/// CPU seconds of the process listening on `node`'s port, when `node` is a loopback
/// address (Linux, a process of a user whose file descriptors this one may list).
fn local_cpu_seconds(node: &str) -> Option<f64> {
    let url = reqwest::Url::parse(node).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    if !loopback {
        return None;
    }
    let sockets = listening_sockets(url.port_or_known_default()?);
    if sockets.is_empty() {
        return None;
    }
    let (_, stat) = processes()?.find(|(dir, _)| {
        std::fs::read_dir(dir.join("fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| sockets.contains(&target.to_string_lossy().into_owned()))
            })
        })
    })?;
    let (_, jiffies) = comm_and_jiffies(&stat)?;
    #[allow(clippy::cast_precision_loss)]
    Some(jiffies as f64 / USER_HZ)
}

/// The `socket:[inode]` links of the TCP sockets listening on `port`, any address.
fn listening_sockets(port: u16) -> Vec<String> {
    const LISTEN: &str = "0A";
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if state == LISTEN && local_port == Some(port) {
                out.push(format!("socket:[{inode}]"));
            }
        }
    }
    out
}

fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The cost of a measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub secs: f64,
    pub nodes: Vec<NodeUsage>,
    /// CPU seconds of all nodes per 1,000 deliveries.
    pub nodes_cpu_ms_per_1k_deliveries: Option<f64>,
    pub redis_cpu_secs: Option<f64>,
    pub redis_commands_per_sec: Option<f64>,
    pub pg_commits_per_sec: Option<f64>,
    /// Every `postgres` process of this machine, other users' included.
    pub pg_cpu_secs: Option<f64>,
    /// Share of the whole machine's CPU (all cores) busy during the window, in percent.
    pub machine_busy_pct: Option<f64>,
    pub loadavg_before: Option<[f64; 3]>,
    pub loadavg_after: Option<[f64; 3]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeUsage {
    pub node: String,
    pub cpu_secs: Option<f64>,
    /// How coarse `cpu_secs` is (see [`NodeSample::cpu_resolution_secs`]).
    pub cpu_resolution_secs: Option<f64>,
    /// Share of one core, in percent.
    pub cpu_pct: Option<f64>,
    pub rss_bytes: u64,
    /// Bus messages the node received from Redis over the window: every event of the
    /// cluster on a single-channel bus, only its sockets' rooms' on a routed one. None
    /// from a server that does not count them, or when the node restarted meanwhile.
    pub bus_received: Option<u64>,
    pub bus_received_per_sec: Option<f64>,
    /// Bus channels the node was subscribed to at the end of the window.
    pub bus_channels: Option<u64>,
}

impl Usage {
    /// Said next to node CPU figures when a node's came in whole seconds, where a short
    /// window's figure may be off by a second per node.
    pub fn cpu_resolution_note(&self) -> &'static str {
        if self
            .nodes
            .iter()
            .any(|n| n.cpu_resolution_secs.is_some_and(|r| r >= 1.0))
        {
            " (whole CPU seconds from /metrics: up to 1 s off per node)"
        } else {
            ""
        }
    }

    /// Each node's share of one core, as the reports print it; nodes without a CPU figure
    /// are left out.
    pub fn node_cpu_pcts(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.cpu_pct.map(|p| format!("{p:.0}%")))
            .collect()
    }

    pub fn between(before: &Sample, after: &Sample, secs: f64, deliveries: u64) -> Self {
        let secs = secs.max(1e-9);
        let nodes: Vec<NodeUsage> = after
            .nodes
            .iter()
            .map(|a| {
                let b = before.nodes.iter().find(|b| b.node == a.node);
                let cpu = match (b.and_then(|b| b.cpu_seconds), a.cpu_seconds) {
                    (Some(b), Some(a)) => Some((a - b).max(0.0)),
                    _ => None,
                };
                let received =
                    b.and_then(|b| counter_delta(b.bus_received_total, a.bus_received_total));
                NodeUsage {
                    node: a.node.clone(),
                    cpu_secs: cpu,
                    cpu_resolution_secs: b
                        .and_then(|b| b.cpu_resolution_secs)
                        .zip(a.cpu_resolution_secs)
                        .map(|(b, a)| b.max(a)),
                    cpu_pct: cpu.map(|c| 100.0 * c / secs),
                    rss_bytes: a.rss_bytes,
                    bus_received: received,
                    #[allow(clippy::cast_precision_loss)]
                    bus_received_per_sec: received.map(|r| r as f64 / secs),
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    bus_channels: a.bus_channels.map(|c| c.max(0.0) as u64),
                }
            })
            .collect();
        let total_cpu: Option<f64> = nodes.iter().map(|n| n.cpu_secs).sum();
        #[allow(clippy::cast_precision_loss)]
        let per_1k = total_cpu
            .filter(|_| deliveries > 0)
            .map(|c| 1000.0 * c * 1000.0 / deliveries as f64);
        // A Redis restarted during the window starts its counters again from zero.
        let redis = before
            .redis
            .zip(after.redis)
            .filter(|(b, a)| a.1 >= b.1 && a.0 >= b.0);
        #[allow(clippy::cast_precision_loss)]
        Self {
            secs,
            nodes,
            nodes_cpu_ms_per_1k_deliveries: per_1k,
            redis_cpu_secs: redis.map(|(b, a)| a.0 - b.0),
            redis_commands_per_sec: redis.map(|(b, a)| a.1.saturating_sub(b.1) as f64 / secs),
            pg_commits_per_sec: before
                .pg_commits
                .zip(after.pg_commits)
                .map(|(b, a)| (a - b) as f64 / secs),
            pg_cpu_secs: before
                .pg_cpu_seconds
                .zip(after.pg_cpu_seconds)
                .map(|(b, a)| a - b),
            machine_busy_pct: before.machine.zip(after.machine).and_then(|(b, a)| {
                let total = a.1.checked_sub(b.1)?;
                (total > 0).then(|| 100.0 * a.0.saturating_sub(b.0) as f64 / total as f64)
            }),
            loadavg_before: before.loadavg,
            loadavg_after: after.loadavg,
        }
    }
}

/// How much a counter grew between two samples of one node. A counter that appears during
/// the window started from zero (the exporter hides it until its first increment); one
/// that went down belongs to a restarted process, and what it counted before is lost.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn counter_delta(before: Option<f64>, after: Option<f64>) -> Option<u64> {
    let after = after?;
    let before = before.unwrap_or(0.0);
    (after >= before).then(|| (after - before).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_sums_its_series_and_nothing_named_like_it() {
        let text = "# HELP chatty_bus_received_total Bus messages\n\
                    # TYPE chatty_bus_received_total counter\n\
                    chatty_bus_received_total{kind=\"room\"} 40\n\
                    chatty_bus_received_total{kind=\"user\"} 2\n\
                    chatty_bus_received_total_other 1000\n\
                    chatty_bus_channels 7\n";

        assert_eq!(metric_sum(text, names::BUS_RECEIVED), Some(42.0));
        assert_eq!(metric_sum(text, names::BUS_CHANNELS), Some(7.0));
        assert_eq!(metric_sum(text, names::BUS_PUBLISH_BATCH), None);
    }

    /// Serves `body` to every request on a loopback port, as a node's `/metrics` would.
    async fn metrics_server(body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = s.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn a_node_without_bus_figures_reads_zero_only_beside_one_that_has_them() {
        // Arrange: one node has received bus messages, one has not yet
        let busy = metrics_server("chatty_bus_received_total 12\nchatty_bus_channels 3\n").await;
        let quiet = metrics_server("process_resident_memory_bytes 1000\n").await;
        let http = reqwest::Client::builder().no_proxy().build().unwrap();

        // Act
        let cluster = node_samples(&http, &[busy, quiet.clone()]).await;
        let alone = node_samples(&http, &[quiet]).await;

        // Assert: the build counts, so the quiet node's nothing is 0; alone, it is unknown
        let figures = |s: &NodeSample| (s.bus_received_total, s.bus_channels);
        assert_eq!(figures(&cluster[0]), (Some(12.0), Some(3.0)));
        assert_eq!(figures(&cluster[1]), (Some(0.0), Some(0.0)));
        assert_eq!(figures(&alone[0]), (None, None));
    }

    #[test]
    fn a_counter_born_in_the_window_counts_from_zero_and_a_reset_one_not_at_all() {
        assert_eq!(counter_delta(Some(10.0), Some(25.0)), Some(15));
        assert_eq!(counter_delta(None, Some(25.0)), Some(25));
        assert_eq!(counter_delta(Some(25.0), Some(3.0)), None);
        assert_eq!(counter_delta(Some(25.0), None), None);
        assert_eq!(counter_delta(None, None), None);
    }

    #[test]
    fn stat_lines_give_their_command_and_cpu_ticks() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 70 0 0 20 0";
        assert_eq!(comm_and_jiffies(stat), Some(("a (weird) name", 320)));
    }

    #[test]
    fn a_node_on_this_machine_is_found_by_its_port() {
        // Arrange: this test process stands in for a node
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let own = comm_and_jiffies(&std::fs::read_to_string("/proc/self/stat").unwrap())
            .unwrap()
            .1;

        // Act
        let cpu = local_cpu_seconds(&format!("http://127.0.0.1:{port}"));
        let remote = local_cpu_seconds(&format!("http://192.0.2.1:{port}"));

        // Assert: 10 ms ticks, not whole seconds
        #[allow(clippy::cast_precision_loss)]
        let own = own as f64 / USER_HZ;
        let cpu = cpu.expect("the listening process");
        assert!(cpu >= own && cpu < own + 1.0, "{cpu} vs {own}");
        assert_eq!(remote, None);
    }
}
