//! Figures of a run in which many sockets lose their node at once or in waves: how fast they
//! come back (a reconnect storm after a node is killed, the waves of a rolling restart), and
//! what the users who kept their socket saw meanwhile.
//!
//! Times are epoch seconds, not the process's monotonic clock: a storm of 30,000 sockets is
//! driven by several load processes (one cannot hold that many descriptors), and
//! `loadtest/bench_report.py` merges their raw samples on the wall clock.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::device::{DeviceStats, Outage};

/// Drops that start this long after the kill (or the first drop) still belong to the storm:
/// the launcher takes a moment to send the SIGKILL, the kernel then resets the node's
/// sockets at once, and a client notices in its own time.
pub const DROP_WINDOW_SECS: f64 = 2.0;

/// Reconnects completed per second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconnectRate {
    /// Epoch second the first bucket starts at (the second of the first drop).
    pub start_epoch: f64,
    /// Reconnects completed in each 1 s bucket from `start_epoch`.
    pub per_sec: Vec<u64>,
    pub peak_per_sec: u64,
    pub reconnects: u64,
    /// When each reconnect completed, epoch seconds to the millisecond, for merging.
    pub back_at: Vec<f64>,
}

/// Counts `times` into 1 s buckets from `start`; times before it fall in the first.
pub fn buckets(times: &[f64], start: f64) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for t in times {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (t - start).max(0.0).floor() as usize;
        if out.len() <= i {
            out.resize(i + 1, 0);
        }
        out[i] += 1;
    }
    out
}

fn ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

impl ReconnectRate {
    /// Over every outage of the run; None when no socket dropped.
    pub fn of(outages: &[Outage]) -> Option<Self> {
        let first = outages.iter().map(|o| o.dropped).reduce(f64::min)?;
        let start = first.floor();
        let back_at: Vec<f64> = outages.iter().filter_map(|o| o.back).map(ms).collect();
        let per_sec = buckets(&back_at, start);
        Some(Self {
            start_epoch: start,
            peak_per_sec: per_sec.iter().copied().max().unwrap_or(0),
            reconnects: back_at.len() as u64,
            per_sec,
            back_at,
        })
    }
}

/// Seconds from `from` until `fraction` of `n` things had happened, given when each that
/// did happen happened (those missing never did); None when fewer than that happened.
pub fn time_to_fraction(times: &[f64], n: usize, fraction: f64, from: f64) -> Option<f64> {
    if n == 0 {
        return Some(0.0);
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let needed = ((fraction * n as f64).ceil() as usize).clamp(1, n);
    if times.len() < needed {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(ms((sorted[needed - 1] - from).max(0.0)))
}

/// The `q` quantile (nearest rank) of `values`, and their maximum.
pub fn quantile_and_max(values: &[f64], q: f64) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((sorted[rank - 1], sorted[sorted.len() - 1]))
}

/// One send of the run, as the sender issued it.
#[derive(Debug, Clone, Copy)]
pub struct SendRecord {
    /// Send number (also in the content).
    pub send: u64,
    pub user: usize,
    pub issued: f64,
    /// Send to acknowledgement, retries included; None: never acknowledged.
    pub ack_ms: Option<f64>,
}

/// p99 and maximum of a latency sample, in ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tail {
    pub count: usize,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The sample itself, for merging the processes of one run.
    pub samples_ms: Vec<f64>,
}

impl Tail {
    fn of(samples_ms: Vec<f64>) -> Self {
        let tail = quantile_and_max(&samples_ms, 0.99);
        Self {
            count: samples_ms.len(),
            p99_ms: tail.map(|t| t.0),
            max_ms: tail.map(|t| t.1),
            samples_ms,
        }
    }
}

/// One node's sockets lost at once and coming back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Storm {
    /// When the storm began, epoch seconds: the kill (this process's own `kill-node`, or
    /// the time `--storm-at` plans it for), else the first socket drop this process saw.
    pub started_at: f64,
    /// Sockets that dropped within DROP_WINDOW_SECS from then.
    pub dropped: usize,
    /// Seconds from the first drop until 99% and 100% of them were connected again; None:
    /// not within the run.
    pub back_99_secs: Option<f64>,
    pub back_all_secs: Option<f64>,
    /// The same until their first `sync` was answered on the new socket.
    pub resumed_99_secs: Option<f64>,
    pub resumed_all_secs: Option<f64>,
    pub not_back: usize,
    /// Sockets lost before the storm began (missed heartbeats on an overloaded machine).
    pub dropped_before: usize,
    /// Connect attempts that failed during the run (the storm is its only failure).
    pub failed_attempts: u64,
    /// Sends and deliveries measured: those issued from `started_at` for this long.
    pub window_secs: f64,
    /// Users none of whose sockets dropped: the others, whose experience is measured.
    pub unaffected_users: usize,
    /// Their sends in the window: send to acknowledgement.
    pub others_ack: Tail,
    /// Never acknowledged (each send is retried for 30 s).
    pub others_unacked: usize,
    /// Their sends in the window: send to live delivery at every device that got it live.
    pub others_delivery: Tail,
    /// When each dropped socket was back and resumed, epoch seconds, for merging.
    pub dropped_at: Vec<f64>,
    pub back_at: Vec<f64>,
    pub resumed_at: Vec<f64>,
}

impl Storm {
    /// From `kill_at` when known, else from the first drop; None when no socket dropped.
    /// Drops before the kill (an overloaded machine's missed heartbeats) are not the
    /// storm's.
    pub fn of(
        devices: &[DeviceStats],
        sends: &[SendRecord],
        window_secs: f64,
        failed_attempts: u64,
        kill_at: Option<f64>,
    ) -> Option<Self> {
        let first_drop = devices
            .iter()
            .flat_map(|d| d.outages.first())
            .map(|o| o.dropped)
            .reduce(f64::min)?;
        let started_at = kill_at.unwrap_or(first_drop);
        let in_storm =
            |o: &&Outage| o.dropped >= started_at && o.dropped <= started_at + DROP_WINDOW_SECS;
        let mut affected = HashSet::new();
        let (mut dropped_at, mut back_at, mut resumed_at) = (Vec::new(), Vec::new(), Vec::new());
        for d in devices {
            if let Some(o) = d.outages.iter().find(in_storm) {
                affected.insert(d.user);
                dropped_at.push(ms(o.dropped));
                back_at.extend(o.back.map(ms));
                resumed_at.extend(o.resumed.map(ms));
            }
        }
        let n = dropped_at.len();
        let window = started_at..=started_at + window_secs;
        let others: HashMap<u64, &SendRecord> = sends
            .iter()
            .filter(|s| window.contains(&s.issued) && !affected.contains(&s.user))
            .map(|s| (s.send, s))
            .collect();
        let acks: Vec<f64> = others.values().filter_map(|s| s.ack_ms).collect();
        #[allow(clippy::cast_precision_loss)]
        let deliveries: Vec<f64> = devices
            .iter()
            .flat_map(|d| &d.receipts)
            .filter(|r| r.live && others.contains_key(&r.send))
            .map(|r| r.latency_us as f64 / 1000.0)
            .collect();
        let users: HashSet<usize> = devices.iter().map(|d| d.user).collect();
        Some(Self {
            started_at: ms(started_at),
            dropped: n,
            back_99_secs: time_to_fraction(&back_at, n, 0.99, started_at),
            back_all_secs: time_to_fraction(&back_at, n, 1.0, started_at),
            resumed_99_secs: time_to_fraction(&resumed_at, n, 0.99, started_at),
            resumed_all_secs: time_to_fraction(&resumed_at, n, 1.0, started_at),
            not_back: n - back_at.len(),
            dropped_before: devices
                .iter()
                .flat_map(|d| &d.outages)
                .filter(|o| o.dropped < started_at)
                .count(),
            failed_attempts,
            window_secs,
            unaffected_users: users.difference(&affected).count(),
            others_unacked: others.len() - acks.len(),
            others_ack: Tail::of(acks),
            others_delivery: Tail::of(deliveries),
            dropped_at,
            back_at,
            resumed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::device::Receipt;

    fn outage(dropped: f64, back: Option<f64>) -> Outage {
        Outage {
            dropped,
            back,
            resumed: back.map(|b| b + 0.5),
        }
    }

    fn device(user: usize, outages: Vec<Outage>, receipts: Vec<Receipt>) -> DeviceStats {
        let mut d = DeviceStats::new(Uuid::new_v4());
        d.user = user;
        d.outages = outages;
        d.receipts = receipts;
        d
    }

    #[test]
    fn reconnects_are_counted_per_second_from_the_second_of_the_first_drop() {
        assert_eq!(buckets(&[], 10.0), Vec::<u64>::new());
        assert_eq!(buckets(&[10.2, 10.9, 12.0, 12.5, 9.0], 10.0), [3, 0, 2]);
        let rate = ReconnectRate::of(&[
            outage(100.7, Some(101.1)),
            outage(100.9, Some(101.95)),
            outage(101.0, Some(103.2)),
            outage(101.5, None),
        ])
        .expect("drops");
        assert_eq!(rate.start_epoch, 100.0);
        assert_eq!(rate.per_sec, [0, 2, 0, 1]);
        assert_eq!((rate.peak_per_sec, rate.reconnects), (2, 3));
        assert_eq!(ReconnectRate::of(&[]), None);
    }

    #[test]
    fn the_time_to_a_fraction_counts_those_that_never_came_back() {
        let back = [3.0, 1.0, 2.0];
        assert_eq!(time_to_fraction(&back, 3, 1.0, 0.5), Some(2.5));
        assert_eq!(time_to_fraction(&back, 3, 0.99, 0.5), Some(2.5));
        assert_eq!(time_to_fraction(&back, 3, 0.5, 0.0), Some(2.0));
        // One of four never came back: 99% were never back, 75% were.
        assert_eq!(time_to_fraction(&back, 4, 0.99, 0.0), None);
        assert_eq!(time_to_fraction(&back, 4, 0.75, 0.0), Some(3.0));
        let many: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(time_to_fraction(&many, 1000, 0.99, 0.0), Some(990.0));
        assert_eq!(time_to_fraction(&[], 0, 0.99, 0.0), Some(0.0));
    }

    #[test]
    fn the_p99_is_the_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(quantile_and_max(&v, 0.99), Some((198.0, 200.0)));
        assert_eq!(quantile_and_max(&[5.0], 0.99), Some((5.0, 5.0)));
        assert_eq!(quantile_and_max(&[], 0.99), None);
    }

    #[test]
    fn a_storm_measures_the_dropped_sockets_and_only_the_others_sends_in_its_window() {
        let live = |send, ms: u64| Receipt {
            send,
            latency_us: ms * 1000,
            live: true,
        };
        let devices = [
            // Users 0 and 1 were on the killed node; 1 never came back.
            device(0, vec![outage(100.0, Some(101.0))], vec![live(3, 900)]),
            device(1, vec![outage(100.5, None)], vec![]),
            // User 2 dropped much later, in another failure: not the storm's.
            device(2, vec![outage(150.0, Some(151.0))], vec![live(1, 40)]),
            // User 3 kept its socket.
            device(3, vec![], vec![live(1, 20), live(2, 30), live(4, 10)]),
        ];
        let send = |send, user, issued, ack_ms| SendRecord {
            send,
            user,
            issued,
            ack_ms,
        };
        let sends = [
            send(1, 3, 101.0, Some(15.0)),
            send(2, 2, 102.0, None),
            send(3, 0, 101.0, Some(800.0)),
            send(4, 3, 99.0, Some(5.0)),
        ];
        let s = Storm::of(&devices, &sends, 10.0, 7, None).expect("a storm");
        assert_eq!((s.started_at, s.dropped, s.not_back), (100.0, 2, 1));
        assert_eq!((s.back_99_secs, s.back_all_secs), (None, None));
        assert_eq!(s.unaffected_users, 2);
        assert_eq!(s.failed_attempts, 7);
        // Sends 1 and 2 are the others' in the window; 3 is an affected user's, 4 too early.
        assert_eq!(s.others_ack.samples_ms, [15.0]);
        assert_eq!(s.others_unacked, 1);
        let mut d = s.others_delivery.samples_ms.clone();
        d.sort_by(f64::total_cmp);
        assert_eq!(d, [20.0, 30.0, 40.0]);
        assert_eq!(s.others_delivery.max_ms, Some(40.0));
        let one = [device(0, vec![outage(100.0, Some(100.25))], vec![])];
        let s = Storm::of(&one, &[], 10.0, 0, None).expect("a storm");
        assert_eq!(
            (s.back_all_secs, s.resumed_all_secs),
            (Some(0.25), Some(0.75))
        );
        assert_eq!(
            Storm::of(&[device(0, vec![], vec![])], &[], 10.0, 0, None),
            None
        );
    }

    #[test]
    fn drops_before_the_kill_are_not_the_storms() {
        let devices = [
            // Dropped (missed heartbeats) before the kill at 100, and back.
            device(0, vec![outage(90.0, Some(91.0))], vec![]),
            // Dropped twice: before the kill, then by it.
            device(
                1,
                vec![outage(95.0, Some(96.0)), outage(100.2, Some(101.2))],
                vec![],
            ),
            device(2, vec![outage(100.1, Some(102.1))], vec![]),
        ];
        let s = Storm::of(&devices, &[], 10.0, 0, Some(100.0)).expect("a storm");
        assert_eq!((s.started_at, s.dropped, s.unaffected_users), (100.0, 2, 1));
        assert_eq!(s.back_all_secs, Some(2.1));
        assert_eq!(s.dropped_before, 2);
    }
}
