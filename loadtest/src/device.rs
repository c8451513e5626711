//! One task per device: it owns the device's socket, checks every `newMessage` it gets and,
//! with resume on (any chaos option, or `--resume`), reconnects after its socket dies and
//! fills gaps with `sync` from the last seq it holds, as a real client does.
//!
//! What counts as what:
//! - a seq received for the first time is a delivery, live or recovered by `sync`;
//! - the same seq again is a transport-level redelivery when resuming (a live event racing
//!   the `sync` that also returned it, a publish retried after a Redis reconnect); without
//!   resume nothing may ever arrive twice, so it is a duplicate;
//! - one send stored under two seqs (a retried `client_msg_id` not deduplicated) is a
//!   duplicate at the application level, resume or not;
//! - a live event seen for the first time with a lower seq than an earlier live event on the
//!   same socket is out of order; a late live copy of a seq `sync` already brought is only a
//!   redelivery.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use chatty_testkit::{ConnectError, Incoming, SioClient, SioSender, Transport};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::stats::{self, DELIVERED};

/// How long a device waits after seeing a gap before asking `sync` for it: live events of
/// one conversation published by different nodes may arrive slightly out of seq order.
const GAP_GRACE: Duration = Duration::from_millis(1000);
/// Time limit of one `sync` call.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// After the run, how long a device may still try to reconnect and run its final `sync`.
const FINISH_WINDOW: Duration = Duration::from_secs(20);

/// What every device shares: where to reconnect and how.
pub struct Link {
    pub nodes: Vec<String>,
    pub transport: Transport,
    /// Bounds how many sockets connect at once, for reconnect storms as for the first one.
    pub gate: Arc<Semaphore>,
    /// The one clock every send stamp and delivery is measured with.
    pub clock: Instant,
    pub resume: bool,
    /// Logs a device in again when its session is gone (a Redis that kept nothing).
    pub relogin: Option<Relogin>,
    /// Whether devices keep every first receipt's send number and latency, for the storm
    /// figures (which sends were whose is only known once the storm is over).
    pub keep_deliveries: bool,
}

/// Login through the API, for devices whose session no longer exists.
pub struct Relogin {
    pub http: reqwest::Client,
    pub url: String,
    pub password: &'static str,
}

impl Relogin {
    async fn token(&self, username: &str) -> anyhow::Result<String> {
        let body: Value = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&json!({ "username": username, "password": self.password, "device": "load-relogin" }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("login answer without a token"))
    }
}

/// Who a device is.
#[derive(Clone)]
pub struct Spec {
    /// Index of the node in `Link::nodes` it is (or was last) connected to; reconnects walk
    /// on from there.
    pub home: usize,
    /// Spreads the reconnects of the devices of one failed node evenly over the others:
    /// the first attempt skips `salt % (nodes - 1)` nodes past the failed one. Without it
    /// every socket of a killed node lands on the next node, which then holds twice its
    /// share (beyond one process's descriptor limit at 10,000 sockets a node).
    pub salt: usize,
    /// Local address its sockets are opened from (`--source-addrs`), or the kernel's choice.
    pub source: Option<IpAddr>,
    /// Index of its user in the run's `World`.
    pub user: usize,
    pub username: String,
    pub token: String,
    pub conversation: Uuid,
}

/// Seconds since the Unix epoch: times that several load processes of one run (each with
/// its own monotonic clock) are merged on.
pub fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One loss of a device's socket while the run was on, in epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub dropped: f64,
    /// When a new socket was connected (None: never within the run).
    pub back: Option<f64>,
    /// When the first `sync` on the new socket was answered: the device holds everything
    /// stored while it was away (or is paging through it).
    pub resumed: Option<f64>,
}

/// One first receipt, for the storm figures.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    /// Send number from the content.
    pub send: u64,
    pub latency_us: u64,
    /// Came as a live event, not through `sync`.
    pub live: bool,
}

/// What one device saw.
pub struct DeviceStats {
    pub conversation: Uuid,
    pub user: usize,
    /// Every time its socket went away while the run was on.
    pub outages: Vec<Outage>,
    /// First receipts (only when `Link::keep_deliveries`).
    pub receipts: Vec<Receipt>,
    /// Every seq received, however it came.
    pub received: HashSet<u64>,
    pub duplicated: u64,
    pub redelivered: u64,
    pub out_of_order: u64,
    /// First receipts that came through `sync` rather than live.
    pub recovered: u64,
    pub latency_us: Histogram<u64>,
    /// Ended without a socket (resume off and its socket died, or it never came back).
    pub disconnected: bool,
    pub reconnects: u64,
    pub syncs: u64,
    pub sync_errors: u64,
    /// The conversation's `last_seq` as the latest `sync` reported it.
    pub last_seq: u64,
    /// Send number (from the content) → the seq it was stored under.
    seq_of_send: HashMap<u64, u64>,
    /// Lowest seq not received yet; everything below it has been.
    next: u64,
    highest: u64,
}

impl DeviceStats {
    pub(crate) fn new(conversation: Uuid) -> Self {
        Self {
            conversation,
            user: 0,
            outages: Vec::new(),
            receipts: Vec::new(),
            received: HashSet::new(),
            duplicated: 0,
            redelivered: 0,
            out_of_order: 0,
            recovered: 0,
            latency_us: stats::histogram(),
            disconnected: false,
            reconnects: 0,
            syncs: 0,
            sync_errors: 0,
            last_seq: 0,
            seq_of_send: HashMap::new(),
            next: 1,
            highest: 0,
        }
    }

    /// Some seq above the contiguous prefix arrived while one below it did not.
    fn has_gap(&self) -> bool {
        self.highest >= self.next
    }

    #[cfg(test)]
    fn receive(&mut self, data: &Value, live: Option<&mut u64>, resume: bool, clock: Instant) {
        self.receive_keeping(data, live, resume, clock, false);
    }

    /// Counts one `newMessage` (live, with the highest live seq of this socket so far) or
    /// one message of a `sync` answer (`live` = None); with `keep`, a first receipt is also
    /// kept for the storm figures.
    fn receive_keeping(
        &mut self,
        data: &Value,
        live: Option<&mut u64>,
        resume: bool,
        clock: Instant,
        keep: bool,
    ) {
        let Some(m) = crate::parse_new_message(data) else {
            return;
        };
        if m.conversation != self.conversation {
            return;
        }
        let is_live = live.is_some();
        let first = self.received.insert(m.seq);
        if let Some(highest_live) = live {
            // Only a first receipt can be out of order: a seq the device already holds (from a
            // `sync` that raced the live event) changes nothing the user would see.
            if first && m.seq < *highest_live {
                self.out_of_order += 1;
            }
            *highest_live = (*highest_live).max(m.seq);
        }
        if !first {
            if resume {
                self.redelivered += 1;
                stats::REDELIVERED.fetch_add(1, Ordering::Relaxed);
            } else {
                self.duplicated += 1;
            }
            return;
        }
        if let Some(send) = m.send {
            if self
                .seq_of_send
                .insert(send, m.seq)
                .is_some_and(|s| s != m.seq)
            {
                self.duplicated += 1;
            }
        }
        if !is_live {
            self.recovered += 1;
            stats::RECOVERED.fetch_add(1, Ordering::Relaxed);
        }
        DELIVERED.fetch_add(1, Ordering::Relaxed);
        let now = clock.elapsed().as_nanos();
        #[allow(clippy::cast_possible_truncation)]
        let us = (now.saturating_sub(m.stamp) / 1000) as u64;
        let _ = self.latency_us.record(us.max(1));
        if keep {
            if let Some(send) = m.send {
                self.receipts.push(Receipt {
                    send,
                    latency_us: us,
                    live: is_live,
                });
            }
        }
        self.highest = self.highest.max(m.seq);
        while self.received.contains(&self.next) {
            self.next += 1;
        }
    }

    #[cfg(test)]
    fn take_sync(&mut self, ack: &Value, resume: bool, clock: Instant) -> Option<bool> {
        self.take_sync_keeping(ack, resume, clock, false)
    }

    /// Takes in a `sync` answer; Some(has_more) when it was usable.
    fn take_sync_keeping(
        &mut self,
        ack: &Value,
        resume: bool,
        clock: Instant,
        keep: bool,
    ) -> Option<bool> {
        if ack["ok"] != true {
            return None;
        }
        let c = &ack["data"]["conversations"][self.conversation.to_string()];
        let messages = c["messages"].as_array()?;
        for m in messages {
            self.receive_keeping(m, None, resume, clock, keep);
        }
        if let Some(last) = c["last_seq"].as_u64() {
            self.last_seq = self.last_seq.max(last);
        }
        Some(c["has_more"].as_bool().unwrap_or(false))
    }
}

/// Random jitter up to `max`, so thousands of devices do not act in lockstep.
pub fn jitter(max: Duration) -> Duration {
    #[allow(clippy::cast_possible_truncation)]
    let r = (Uuid::new_v4().as_u128() as u64) % (max.as_micros().max(1) as u64);
    Duration::from_micros(r)
}

fn start_sync(
    sender: &SioSender,
    results: &mpsc::UnboundedSender<anyhow::Result<Value>>,
    conversation: Uuid,
    after: u64,
    st: &mut DeviceStats,
) {
    st.syncs += 1;
    stats::SYNCS.fetch_add(1, Ordering::Relaxed);
    let (sender, results) = (sender.clone(), results.clone());
    tokio::spawn(async move {
        let payload = json!({ "conversations": { conversation.to_string(): after } });
        let r = sender.emit_with_ack("sync", &payload, SYNC_TIMEOUT).await;
        let _ = results.send(r);
    });
}

/// Runs one device until `finish` (then, resuming, one last `sync` so that nothing missed
/// at the very end goes uncounted) and reports what it saw. `current` always holds the
/// device's live socket, for the sender that uses it.
pub async fn run(
    link: Arc<Link>,
    mut spec: Spec,
    first: SioClient,
    current: watch::Sender<Option<SioSender>>,
    finish: CancellationToken,
) -> DeviceStats {
    let mut st = DeviceStats::new(spec.conversation);
    st.user = spec.user;
    let keep = link.keep_deliveries;
    let mut client = Some(first);
    let mut finish_by: Option<tokio::time::Instant> = None;
    let mut connections = 0u64;
    'connections: while let Some(c) = client.take() {
        connections += 1;
        let (sender, mut events) = c.split();
        let _ = current.send(Some(sender.clone()));
        let (sync_tx, mut sync_rx) = mpsc::unbounded_channel();
        let mut syncing = false;
        // Whether the sync that ends the run is under way: one started after `finish`, so it
        // sees every message stored before the run ended.
        let mut final_sync = false;
        let mut highest_live = 0u64;
        // Back after a drop (or connected during the finish): everything after what it holds.
        if connections > 1 || finish_by.is_some() {
            start_sync(&sender, &sync_tx, spec.conversation, st.next - 1, &mut st);
            syncing = true;
            final_sync = finish_by.is_some();
        }
        let gap = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(gap);
        let mut gap_armed = false;
        let finish_deadline = tokio::time::sleep_until(
            finish_by.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400)),
        );
        tokio::pin!(finish_deadline);
        loop {
            tokio::select! {
                () = finish.cancelled(), if finish_by.is_none() => {
                    if !link.resume {
                        break 'connections;
                    }
                    let by = tokio::time::Instant::now() + FINISH_WINDOW;
                    finish_by = Some(by);
                    finish_deadline.as_mut().reset(by);
                    if !syncing {
                        start_sync(&sender, &sync_tx, spec.conversation, st.next - 1, &mut st);
                        syncing = true;
                        final_sync = true;
                    }
                }
                () = &mut finish_deadline, if finish_by.is_some() => break 'connections,
                ev = events.recv() => match ev {
                    Some(Incoming::Event { name, data }) if name == "newMessage" => {
                        st.receive_keeping(&data, Some(&mut highest_live), link.resume, link.clock, keep);
                        if link.resume && !gap_armed && !syncing && st.has_gap() {
                            gap.as_mut().reset(tokio::time::Instant::now() + GAP_GRACE + jitter(GAP_GRACE));
                            gap_armed = true;
                        }
                    }
                    Some(Incoming::Event { .. }) => {}
                    Some(Incoming::Disconnected | Incoming::Closed) | None => break,
                },
                Some(result) = sync_rx.recv() => {
                    syncing = false;
                    let more = match result {
                        Ok(ack) => st.take_sync_keeping(&ack, link.resume, link.clock, keep),
                        Err(_) => None,
                    };
                    if more.is_some() {
                        if let Some(o) = st.outages.last_mut().filter(|o| o.resumed.is_none()) {
                            o.resumed = Some(epoch_secs());
                        }
                    }
                    if more.is_none() {
                        st.sync_errors += 1;
                        stats::SYNC_ERRORS.fetch_add(1, Ordering::Relaxed);
                    }
                    let finishing = finish_by.is_some();
                    match more {
                        Some(true) => {}
                        // The last page of the final sync: done.
                        Some(false) if finishing && final_sync => break 'connections,
                        // A sync from before the finish ended: one more, from now.
                        Some(false) if finishing => final_sync = true,
                        None if finishing => break 'connections,
                        Some(false) | None => {
                            if st.has_gap() || more.is_none() {
                                gap.as_mut().reset(tokio::time::Instant::now() + GAP_GRACE + jitter(GAP_GRACE));
                                gap_armed = true;
                            }
                            continue;
                        }
                    }
                    start_sync(&sender, &sync_tx, spec.conversation, st.next - 1, &mut st);
                    syncing = true;
                }
                () = &mut gap, if gap_armed => {
                    gap_armed = false;
                    if !syncing && st.has_gap() {
                        start_sync(&sender, &sync_tx, spec.conversation, st.next - 1, &mut st);
                        syncing = true;
                    }
                }
            }
        }
        let _ = current.send(None);
        if !link.resume {
            st.disconnected = true;
            break;
        }
        if finish_by.is_none() {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            stats::LAST_DROP_EPOCH_MS.fetch_max((epoch_secs() * 1000.0) as u64, Ordering::Relaxed);
            st.outages.push(Outage {
                dropped: epoch_secs(),
                back: None,
                resumed: None,
            });
        }
        client = reconnect(&link, &mut spec, "/", &finish, &mut finish_by).await;
        if client.is_some() {
            if let Some(o) = st.outages.last_mut().filter(|o| o.back.is_none()) {
                o.back = Some(epoch_secs());
            }
            st.reconnects += 1;
            stats::RECONNECTS.fetch_add(1, Ordering::Relaxed);
        } else {
            st.disconnected = true;
        }
    }
    let _ = current.send(None);
    st
}

/// True when a refusal means the device's login is gone, not that the node is unwell.
fn needs_login(message: &str) -> bool {
    message.contains("session") || message.contains("token expired")
}

/// The node a device tries at reconnect attempt `attempt` (from 1) after losing node
/// `home`: every other node in turn, then `home` itself (it just failed, but may be back),
/// and round again. `salt` picks which of the others comes first, so that the devices of
/// a failed node spread evenly over the rest.
pub fn walk(home: usize, salt: usize, attempt: usize, nodes: usize) -> usize {
    let nodes = nodes.max(1);
    let k = attempt.saturating_sub(1) % nodes;
    if k == nodes - 1 {
        return home % nodes;
    }
    (home + 1 + (salt + k) % (nodes - 1)) % nodes
}

/// Reconnect backoff bounds (with random jitter on top).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Reconnects namespace `ns` with jittered exponential backoff, walking over the nodes
/// from the device's own; logs in again when the session is gone. None once the finish
/// window is over.
pub async fn reconnect(
    link: &Link,
    spec: &mut Spec,
    ns: &str,
    finish: &CancellationToken,
    finish_by: &mut Option<tokio::time::Instant>,
) -> Option<SioClient> {
    let mut delay = BACKOFF_MIN;
    for attempt in 1usize.. {
        if finish.is_cancelled() && finish_by.is_none() {
            *finish_by = Some(tokio::time::Instant::now() + FINISH_WINDOW);
        }
        let pause = delay + jitter(delay);
        match *finish_by {
            Some(by) if tokio::time::Instant::now() + pause >= by => return None,
            _ => {}
        }
        tokio::time::sleep(pause).await;
        delay = (delay * 2).min(BACKOFF_MAX);
        let at = walk(spec.home, spec.salt, attempt, link.nodes.len());
        let node = &link.nodes[at];
        let Ok(_permit) = link.gate.acquire().await else {
            return None;
        };
        match SioClient::connect_from(
            node,
            ns,
            json!({ "token": spec.token }),
            &[],
            link.transport,
            spec.source,
        )
        .await
        {
            Ok(c) => {
                spec.home = at;
                return Some(c);
            }
            Err(ConnectError::Refused(message)) if needs_login(&message) => {
                stats::RECONNECT_FAILURES.fetch_add(1, Ordering::Relaxed);
                stats::SESSION_REFUSALS.fetch_add(1, Ordering::Relaxed);
                if let Some(r) = &link.relogin {
                    if let Ok(t) = r.token(&spec.username).await {
                        spec.token = t;
                        stats::RELOGINS.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                stats::RECONNECT_FAILURES.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: Uuid, seq: u64, send: u64) -> Value {
        json!({ "conversation_id": conv, "seq": seq, "content": format!("1|{send}|xx") })
    }

    /// A device that has received `(seq, send)` live on one socket, in that order, with that
    /// socket's highest live seq so far: later live receipts must carry it on.
    fn fed(
        conv: Uuid,
        received: &[(u64, u64)],
        resume: bool,
        clock: Instant,
    ) -> (DeviceStats, u64) {
        let mut st = DeviceStats::new(conv);
        let mut live = 0;
        for &(seq, send) in received {
            st.receive(&msg(conv, seq, send), Some(&mut live), resume, clock);
        }
        (st, live)
    }

    /// A resuming device of a new conversation that has seqs 1 and 3 but not 2.
    fn missing_seq_two(clock: Instant) -> (Uuid, DeviceStats, u64) {
        let conv = Uuid::new_v4();
        let (st, live) = fed(conv, &[(1, 1), (3, 3)], true, clock);
        (conv, st, live)
    }

    fn sync_ack(conv: Uuid, messages: Vec<Value>, last_seq: u64) -> Value {
        json!({ "ok": true, "data": { "conversations": { conv.to_string(): {
            "messages": messages, "has_more": false, "last_seq": last_seq } } } })
    }

    #[test]
    fn a_repeated_seq_is_a_duplicate_without_resume_and_a_redelivery_with_it() {
        let conv = Uuid::new_v4();
        for resume in [false, true] {
            let (st, _) = fed(conv, &[(1, 7), (1, 7)], resume, Instant::now());
            assert_eq!(st.received.len(), 1);
            assert_eq!(
                (st.duplicated, st.redelivered),
                if resume { (0, 1) } else { (1, 0) }
            );
        }
    }

    #[test]
    fn a_lower_seq_after_a_higher_one_on_the_same_socket_is_out_of_order() {
        let (st, _) = fed(Uuid::new_v4(), &[(2, 2), (1, 1)], false, Instant::now());
        assert_eq!(st.out_of_order, 1);
    }

    #[test]
    fn one_send_stored_under_two_seqs_is_a_duplicate_even_when_resuming() {
        let (st, _) = fed(Uuid::new_v4(), &[(1, 7), (2, 7)], true, Instant::now());
        assert_eq!(st.duplicated, 1);
    }

    #[test]
    fn gaps_are_found_and_filled_by_sync_answers() {
        let clock = Instant::now();
        let (conv, mut st, _) = missing_seq_two(clock);
        assert!(st.has_gap());
        assert_eq!(st.next, 2);
        let ack = sync_ack(conv, vec![msg(conv, 2, 2), msg(conv, 3, 3)], 3);
        assert_eq!(st.take_sync(&ack, true, clock), Some(false));
        assert!(!st.has_gap());
        assert_eq!(
            (st.next, st.recovered, st.redelivered, st.last_seq),
            (4, 1, 1, 3)
        );
        assert_eq!(st.out_of_order, 0);
    }

    #[test]
    fn a_late_live_copy_of_a_synced_seq_is_a_redelivery_not_disorder() {
        let clock = Instant::now();
        let (conv, mut st, mut live) = missing_seq_two(clock);
        st.take_sync(&sync_ack(conv, vec![msg(conv, 2, 2)], 3), true, clock);
        st.receive(&msg(conv, 2, 2), Some(&mut live), true, clock);
        assert_eq!((st.out_of_order, st.redelivered, st.duplicated), (0, 1, 0));
    }

    #[test]
    fn the_devices_of_a_failed_node_reconnect_spread_over_the_others() {
        let mut first_tries = [0usize; 3];
        for salt in 0..3000 {
            let at = walk(1, salt, 1, 3);
            assert_ne!(at, 1, "the failed node is not tried first");
            first_tries[at] += 1;
        }
        assert_eq!(first_tries, [1500, 0, 1500]);
        // Walking on, every node comes round, the failed one last.
        assert_eq!(
            (1..=3).map(|a| walk(1, 1, a, 3)).collect::<Vec<_>>(),
            [0, 2, 1]
        );
        assert_eq!(
            (1..=4).map(|a| walk(1, 0, a, 3)).collect::<Vec<_>>(),
            [2, 0, 1, 2]
        );
        assert_eq!(walk(0, 7, 1, 1), 0);
        assert_eq!(walk(0, 7, 1, 2), 1);
    }

    #[test]
    fn an_error_answer_to_sync_is_not_usable() {
        let conv = Uuid::new_v4();
        let mut st = DeviceStats::new(conv);
        let ack = json!({ "ok": false, "error": { "statusCode": 500 } });
        assert_eq!(st.take_sync(&ack, true, Instant::now()), None);
    }
}
