//! Failures injected while the load runs, through the local launcher
//! (`deploy/local/cluster.sh`, or any program taking the same commands): crash a random
//! node every N seconds and bring it back, crash and restart Redis once.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
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
}

/// One thing done to the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since sending started.
    pub at_secs: f64,
    /// `kill-node`, `restart-node` or `restart-redis`.
    pub action: &'static str,
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

async fn act(
    plan: &Plan,
    started: Instant,
    log: &Mutex<Vec<Event>>,
    action: &'static str,
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
    let mut c = command(&plan.ctl);
    c.arg(action);
    if let Some(k) = node {
        c.arg(k.to_string());
    }
    let out = c.output().await;
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
            action,
            node,
            took_secs: t.elapsed().as_secs_f64(),
            ok,
        });
    ok
}

/// Runs the plan from `started` until `until`: kills stop being scheduled then, but a node
/// already down is always brought back before this returns.
pub async fn run(
    plan: Plan,
    started: Instant,
    until: Duration,
    stop: CancellationToken,
    quiet: bool,
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
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until((started + due).into()) => {}
                }
                let node = 1 + random_below(plan.nodes);
                act(&plan, started, &log, "kill-node", Some(node), quiet).await;
                tokio::time::sleep(plan.down).await;
                act(&plan, started, &log, "restart-node", Some(node), quiet).await;
                k += 1;
            }
        }
    };
    let redis = {
        let (plan, log, stop) = (plan.clone(), log.clone(), stop.clone());
        async move {
            let Some(at) = plan.redis_at else { return };
            if at >= until {
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until((started + at).into()) => {}
            }
            act(&plan, started, &log, "restart-redis", None, quiet).await;
        }
    };
    tokio::join!(kills, redis);
    let mut events = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    events.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    events
}

fn random_below(n: u32) -> u32 {
    #[allow(clippy::cast_possible_truncation)]
    let r = uuid::Uuid::new_v4().as_u128() as u32;
    r % n.max(1)
}
