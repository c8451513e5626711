//! Failures injected while the load runs, through the local launcher
//! (`deploy/local/cluster.sh`, or any program taking the same commands): crash a random
//! node every N seconds and bring it back, crash and restart Redis once (with its data, or
//! empty as a Redis without persistence), or fail over one Redis Cluster master once; kill
//! one node for good (a reconnect storm), or restart every node in turn (a rolling restart).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// What to break, and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The launcher, and the nodes it knows, numbered from 1.
    pub ctl: PathBuf,
    pub nodes: u32,
    pub kill_every: Option<Duration>,
    /// How long a killed node stays down before it is started again.
    pub down: Duration,
    pub redis_at: Option<Duration>,
    /// Whether Redis comes back with no data (`restart-redis --empty`).
    pub redis_empty: bool,
    pub redis_failover_at: Option<Duration>,
    /// The shard whose master the failover kills, 1-based; None: one at random.
    pub redis_master: Option<u32>,
    /// Kill one node (1-based; None: one at random) once, and leave it down.
    pub kill_node_at: Option<(Duration, Option<u32>)>,
    /// Where to write the epoch second of that kill as soon as it is done, for the other
    /// load processes of the run (their clocks of the storm start there).
    pub kill_mark: Option<PathBuf>,
    /// Run the launcher's `rolling-restart` once: each node drained with SIGTERM, started
    /// again and ready before the next.
    pub rolling_at: Option<Duration>,
}

/// Shards of the local Redis Cluster (`deploy/local/redis-cluster.sh`).
pub const REDIS_CLUSTER_MASTERS: u32 = 3;

/// What the launcher is asked to do to Redis, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedisBlow {
    Restart,
    RestartEmpty,
    Failover(u32),
}

impl RedisBlow {
    /// How the event is named in reports, and the launcher's command line.
    fn action(self) -> (&'static str, Vec<String>) {
        match self {
            Self::Restart => ("restart-redis", vec!["restart-redis".into()]),
            Self::RestartEmpty => (
                "restart-redis-empty",
                vec!["restart-redis".into(), "--empty".into()],
            ),
            Self::Failover(k) => (
                "kill-redis-master",
                vec!["kill-redis-master".into(), k.to_string()],
            ),
        }
    }
}

impl Plan {
    /// The Redis failure of the plan and when, if any.
    fn redis_blow(&self) -> Option<(Duration, RedisBlow)> {
        if let Some(at) = self.redis_failover_at {
            let k = self
                .redis_master
                .unwrap_or_else(|| 1 + random_below(REDIS_CLUSTER_MASTERS));
            return Some((at, RedisBlow::Failover(k)));
        }
        let blow = if self.redis_empty {
            RedisBlow::RestartEmpty
        } else {
            RedisBlow::Restart
        };
        self.redis_at.map(|at| (at, blow))
    }
}

/// One thing done to the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since sending started.
    pub at_secs: f64,
    /// Epoch seconds of `at_secs`, to line the events of several load processes up.
    pub at_epoch: f64,
    /// `kill-node`, `restart-node`, `restart-redis`, `restart-redis-empty`,
    /// `kill-redis-master` or `rolling-restart`.
    pub action: &'static str,
    /// The node (kill-node, restart-node) or Redis Cluster shard (kill-redis-master) acted on.
    pub node: Option<u32>,
    /// How long the launcher took (a restart includes waiting until the node is ready).
    pub took_secs: f64,
    pub ok: bool,
}

/// The launcher's node count, from `status` (one `node-K ...` line per node).
pub async fn count_nodes(ctl: &Path) -> anyhow::Result<u32> {
    let out = command(ctl)
        .arg("status")
        .output()
        .await
        .with_context(|| format!("running {} status", ctl.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text.lines().filter(|l| l.starts_with("node-")).count();
    if n == 0 {
        bail!(
            "{} status lists no nodes: is the cluster running?\n{}{}",
            ctl.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(u32::try_from(n)?)
}

/// A launcher that is not executable (a script checked out without its mode) runs with bash.
fn command(ctl: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let executable = std::fs::metadata(ctl).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    if executable {
        Command::new(ctl)
    } else {
        let mut c = Command::new("bash");
        c.arg(ctl);
        c
    }
}

impl Event {
    /// Seconds since sending started when the launcher was done with it.
    pub fn done_at_secs(&self) -> f64 {
        self.at_secs + self.took_secs
    }
}

/// When the last event was over, in seconds since sending started: presence must be right
/// again within its lease from then on.
pub fn settled_at_secs(events: &[Event]) -> Option<f64> {
    events.iter().map(Event::done_at_secs).reduce(f64::max)
}

async fn act(
    plan: &Plan,
    started: Instant,
    log: &Mutex<Vec<Event>>,
    (action, argv): (&'static str, Vec<String>),
    node: Option<u32>,
    quiet: bool,
) -> bool {
    let at = started.elapsed();
    if !quiet {
        eprintln!(
            "[{:>4}s] chaos: {action}{}",
            at.as_secs(),
            node.map(|k| format!(" {k}")).unwrap_or_default()
        );
    }
    let t = Instant::now();
    let at_epoch = crate::device::epoch_secs();
    let out = command(&plan.ctl).args(&argv).output().await;
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    if !ok {
        let why = match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        eprintln!("chaos: {action} failed: {}", why.trim());
    }
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Event {
            at_secs: at.as_secs_f64(),
            at_epoch,
            action,
            node,
            took_secs: t.elapsed().as_secs_f64(),
            ok,
        });
    ok
}

/// Runs the plan from `started` until `until`: kills stop being scheduled then, but a node
/// already down is always brought back before this returns (except the one
/// `kill_node_at` leaves down). A rolling restart, once begun, runs to its end; `busy` is
/// true until it is over, and the sender keeps sending while it is.
pub async fn run(
    plan: Plan,
    started: Instant,
    until: Duration,
    stop: CancellationToken,
    quiet: bool,
    busy: Arc<AtomicBool>,
) -> Vec<Event> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let kills = {
        let (plan, log, stop) = (plan.clone(), log.clone(), stop.clone());
        async move {
            let Some(every) = plan.kill_every else { return };
            let mut k = 1u32;
            loop {
                let due = every * k;
                if due >= until {
                    return;
                }
                if !reached(&stop, started, due).await {
                    return;
                }
                let node = 1 + random_below(plan.nodes);
                act_on_node(&plan, started, &log, "kill-node", node, quiet).await;
                tokio::time::sleep(plan.down).await;
                act_on_node(&plan, started, &log, "restart-node", node, quiet).await;
                k += 1;
            }
        }
    };
    let redis = {
        let (plan, log, stop) = (plan.clone(), log.clone(), stop.clone());
        async move {
            let Some((at, blow)) = plan.redis_blow() else {
                return;
            };
            if at >= until || !reached(&stop, started, at).await {
                return;
            }
            let shard = match blow {
                RedisBlow::Failover(k) => Some(k),
                RedisBlow::Restart | RedisBlow::RestartEmpty => None,
            };
            act(&plan, started, &log, blow.action(), shard, quiet).await;
        }
    };
    let kill_once = {
        let (plan, log, stop) = (plan.clone(), log.clone(), stop.clone());
        async move {
            let Some((at, node)) = plan.kill_node_at else {
                return;
            };
            if at >= until || !reached(&stop, started, at).await {
                return;
            }
            let node = node.unwrap_or_else(|| 1 + random_below(plan.nodes));
            act_on_node(&plan, started, &log, "kill-node", node, quiet).await;
            let at_epoch = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .last()
                .map(|e| e.at_epoch);
            if let (Some(mark), Some(at)) = (&plan.kill_mark, at_epoch) {
                if let Err(e) = write_mark(mark, at) {
                    eprintln!("chaos: could not write {}: {e}", mark.display());
                }
            }
        }
    };
    let rolling = {
        let (plan, log, stop) = (plan.clone(), log.clone(), stop.clone());
        async move {
            if let Some(at) = plan.rolling_at {
                if reached(&stop, started, at).await {
                    let argv = vec!["rolling-restart".to_owned()];
                    act(&plan, started, &log, ("rolling-restart", argv), None, quiet).await;
                }
            }
            busy.store(false, Ordering::Relaxed);
        }
    };
    tokio::join!(kills, redis, kill_once, rolling);
    let mut events = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    events.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    events
}

/// Written whole under another name first, so that a reader never sees half of it.
fn write_mark(mark: &Path, at_epoch: f64) -> std::io::Result<()> {
    let tmp = mark.with_extension("tmp");
    std::fs::write(&tmp, format!("{at_epoch:.6}\n"))?;
    std::fs::rename(&tmp, mark)
}

/// The kill time another load process wrote with `kill_mark`, if any.
pub fn read_mark(mark: &Path) -> Option<f64> {
    std::fs::read_to_string(mark).ok()?.trim().parse().ok()
}

/// Has the launcher do `action` (`kill-node`, `restart-node`) to `node`.
async fn act_on_node(
    plan: &Plan,
    started: Instant,
    log: &Mutex<Vec<Event>>,
    action: &'static str,
    node: u32,
    quiet: bool,
) -> bool {
    let argv = vec![action.to_owned(), node.to_string()];
    act(plan, started, log, (action, argv), Some(node), quiet).await
}

/// Waits until `at` into the run: false when the run is stopped first.
async fn reached(stop: &CancellationToken, started: Instant, at: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep_until((started + at).into()) => true,
    }
}

fn random_below(n: u32) -> u32 {
    #[allow(clippy::cast_possible_truncation)]
    let r = uuid::Uuid::new_v4().as_u128() as u32;
    r % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            ctl: PathBuf::from("deploy/local/cluster.sh"),
            nodes: 3,
            kill_every: None,
            down: Duration::from_secs(1),
            redis_at: None,
            redis_empty: false,
            redis_failover_at: None,
            redis_master: None,
            kill_node_at: None,
            kill_mark: None,
            rolling_at: None,
        }
    }

    #[test]
    fn the_kill_mark_carries_the_kill_time_to_the_other_processes() {
        let dir = std::env::temp_dir().join(format!("chatty-load-mark-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mark = dir.join("kill.epoch");
        assert_eq!(read_mark(&mark), None);
        write_mark(&mark, 1_796_664_273.166_5).expect("written");
        assert_eq!(read_mark(&mark), Some(1_796_664_273.166_5));
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }

    fn event(action: &'static str, at_secs: f64, took_secs: f64) -> Event {
        Event {
            at_secs,
            at_epoch: 0.0,
            action,
            node: None,
            took_secs,
            ok: true,
        }
    }

    #[test]
    fn a_redis_restart_asks_the_launcher_for_restart_redis_and_empty_adds_its_flag() {
        let mut p = plan();
        assert_eq!(p.redis_blow(), None);
        p.redis_at = Some(Duration::from_secs(10));
        let (at, blow) = p.redis_blow().expect("planned");
        assert_eq!(at, Duration::from_secs(10));
        assert_eq!(
            blow.action(),
            ("restart-redis", vec!["restart-redis".to_owned()])
        );
        p.redis_empty = true;
        let (_, blow) = p.redis_blow().expect("planned");
        assert_eq!(
            blow.action(),
            (
                "restart-redis-empty",
                vec!["restart-redis".to_owned(), "--empty".to_owned()]
            )
        );
    }

    #[test]
    fn a_failover_kills_the_chosen_master_or_one_of_the_three_at_random() {
        let mut p = plan();
        p.redis_failover_at = Some(Duration::from_secs(8));
        p.redis_master = Some(2);
        let (at, blow) = p.redis_blow().expect("planned");
        assert_eq!((at, blow), (Duration::from_secs(8), RedisBlow::Failover(2)));
        assert_eq!(
            blow.action(),
            (
                "kill-redis-master",
                vec!["kill-redis-master".to_owned(), "2".to_owned()]
            )
        );
        p.redis_master = None;
        for _ in 0..50 {
            let Some((_, RedisBlow::Failover(k))) = p.redis_blow() else {
                panic!("a failover is planned");
            };
            assert!((1..=REDIS_CLUSTER_MASTERS).contains(&k));
        }
    }

    #[test]
    fn the_run_settles_when_the_last_event_is_done() {
        assert_eq!(settled_at_secs(&[]), None);
        let events = [
            event("kill-node", 3.0, 0.1),
            event("kill-redis-master", 5.0, 11.5),
            event("restart-node", 4.0, 2.0),
        ];
        assert_eq!(settled_at_secs(&events), Some(16.5));
    }
}
