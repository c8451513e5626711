//! What the run cost: each node's CPU and memory (from its `/metrics`), Redis CPU and
//! commands, PostgreSQL commits and (on this machine) the CPU of its processes, the whole
//! machine's CPU and load average. Sampled when sending starts and when it ends; the
//! differences are what `docs/scaling.md` does its arithmetic with.

use serde::Serialize;

/// One node's figures from its `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSample {
    pub node: String,
    pub rss_bytes: u64,
    pub chat_connections: u64,
    /// `process_cpu_seconds_total`; absent from servers that do not export it.
    pub cpu_seconds: Option<f64>,
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
    redis: Option<redis::Client>,
    pg: Option<sqlx::PgPool>,
}

impl Probes {
    pub async fn new(
        http: reqwest::Client,
        nodes: Vec<String>,
        redis_url: Option<&str>,
        database_url: Option<&str>,
    ) -> Self {
        let redis = redis_url.and_then(|u| redis::Client::open(u).ok());
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

    async fn redis_info(&self) -> Option<(f64, u64)> {
        let client = self.redis.as_ref()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO").query_async(&mut c).await.ok()?;
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
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        out.push(NodeSample {
            node: n.clone(),
            rss_bytes: value("process_resident_memory_bytes ").unwrap_or(0.0) as u64,
            chat_connections: value("socket_connections{namespace=\"/\"}").unwrap_or(0.0) as u64,
            cpu_seconds: value("process_cpu_seconds_total "),
        });
    }
    out
}

/// Jiffies per second of /proc times (USER_HZ; 100 on every Linux this runs on).
const USER_HZ: f64 = 100.0;

/// CPU seconds of every process of this machine named `comm` (Linux); what PostgreSQL's
/// backends and helpers have used, when it runs here.
fn processes_cpu_seconds(comm: &str) -> Option<f64> {
    let mut jiffies = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != comm {
            continue;
        }
        // After "(comm) ": state is field 3; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) else {
            continue;
        };
        jiffies += u.parse::<u64>().unwrap_or(0) + s.parse::<u64>().unwrap_or(0);
        found = true;
    }
    #[allow(clippy::cast_precision_loss)]
    found.then(|| jiffies as f64 / USER_HZ)
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
    /// Share of one core, in percent.
    pub cpu_pct: Option<f64>,
    pub rss_bytes: u64,
}

impl Usage {
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
                NodeUsage {
                    node: a.node.clone(),
                    cpu_secs: cpu,
                    cpu_pct: cpu.map(|c| 100.0 * c / secs),
                    rss_bytes: a.rss_bytes,
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
