//! Puts each conversation's `newMessage` events back into `seq` order before this node
//! delivers them, room by room.
//!
//! Seqs are handed out in commit order, but each node publishes after its own commit, so
//! two sends to one conversation committed a millisecond apart on two nodes (or on two
//! tasks of one node) can reach the bus in the opposite order. Each room's channel carries
//! its copies in the order Redis took the publishes, and two publishers' copies for
//! different rooms interleave, so the order is repaired per conversation *and room*: an
//! event whose seq is ahead of the room's next expected one waits for the ones before it.
//! If they never come (their publish failed, their node died between commit and publish)
//! the waiting events go out anyway and clients fill the gap with `sync`, as after any
//! loss.
//!
//! Two waits: a gap inside a conversation this node has been delivering is a publish
//! running late, and an overloaded cluster can run hundreds of milliseconds late, so it
//! waits `gap_hold`; the first event this node sees of a conversation in a room past its
//! start most likely has its predecessor delivered before the node was listening, so it
//! waits only `first_hold`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::Hash,
    time::{Duration, Instant},
};

/// Streams idle this long are forgotten; the next event of one waits `first_hold` at most.
const IDLE: Duration = Duration::from_secs(600);

/// Seqs up to this are a conversation's first messages: seen for the first time, they wait
/// for every seq from 1, since a new group's first messages are the likeliest to race.
const YOUNG: i64 = 16;

/// Order repair for events of type `T` in streams `S` (conversations), each as every room
/// `R` hears it.
pub struct Reorder<S, R, T> {
    first_hold: Duration,
    gap_hold: Duration,
    streams: HashMap<(S, R), Stream<T>>,
    /// Each stream's next seq as the rooms that settled it know it: a room hearing a stream
    /// for the first time (a device that just connected here) starts from it instead of
    /// guessing, so it waits for a late predecessor as long as the others do.
    known: HashMap<S, Known>,
    /// Streams holding events, so deadlines are found without scanning every stream.
    waiting: HashSet<(S, R)>,
    last_sweep: Instant,
}

struct Known {
    next: i64,
    last_seen: Instant,
}

struct Stream<T> {
    /// The seq that may go out now; anything above waits for it.
    next: i64,
    /// Waiting events by seq, with when each arrived.
    held: BTreeMap<i64, (Instant, T)>,
    last_seen: Instant,
    /// Something of it went out after its predecessor: `next` is known, not guessed.
    settled: bool,
}

impl<T> Stream<T> {
    /// When its held events must go out even if their predecessors never come.
    fn deadline(&self, first_hold: Duration, gap_hold: Duration) -> Option<Instant> {
        let oldest = self.held.values().map(|(at, _)| *at).min()?;
        Some(oldest + if self.settled { gap_hold } else { first_hold })
    }

    /// Moves every held event that is now in order to `out`.
    fn release_ready(&mut self, out: &mut Vec<T>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            out.push(entry.remove().1);
            self.next += 1;
        }
    }
}

impl<S: Hash + Eq + Clone, R: Hash + Eq + Clone, T> Reorder<S, R, T> {
    pub fn new(first_hold: Duration, gap_hold: Duration) -> Self {
        Self {
            first_hold,
            gap_hold,
            streams: HashMap::new(),
            known: HashMap::new(),
            waiting: HashSet::new(),
            last_sweep: Instant::now(),
        }
    }

    /// Takes one event at `seq` of `stream` for `room`; returns what may be delivered now
    /// to that room, in order.
    pub fn push(&mut self, stream: S, room: R, seq: i64, event: T, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        self.push_into(stream, room, seq, event, now, &mut out);
        out
    }

    /// [`Reorder::push`], adding what may go out to `out`.
    pub fn push_into(
        &mut self,
        stream: S,
        room: R,
        seq: i64,
        event: T,
        now: Instant,
        out: &mut Vec<T>,
    ) {
        let key = (stream, room);
        // A stream this room hears for the first time: its predecessors may be a moment
        // behind, so it waits for them like any other event ahead of its turn. All of them
        // in a young conversation (this room was there from its start), else the one
        // before it (what came earlier may have reached the device before this room was
        // listening); from where this node's other rooms are while they wait too.
        let known = self.known.get(&key.0).map(|k| k.next);
        let s = self
            .streams
            .entry(key.clone())
            .or_insert_with(|| match known {
                // A young conversation's room was there from its start: whatever the other
                // rooms have had, its own copies of every earlier seq are on their way (on
                // a Redis Cluster the rooms' copies travel through different shards, so
                // this room's first copy can be ahead of where the others are).
                _ if seq <= YOUNG => Stream {
                    next: 1,
                    held: BTreeMap::new(),
                    last_seen: now,
                    settled: false,
                },
                // Ahead of where the others are: its predecessors from there on are on
                // their way to every room here, so it waits for them as long as the others
                // do (a device that just reconnected here included). Otherwise its copy of
                // the one before may still trail theirs (copies for different rooms cross)
                // or may have reached the device elsewhere: the short wait, as below.
                Some(next) if next < seq => Stream {
                    next,
                    held: BTreeMap::new(),
                    last_seen: now,
                    settled: true,
                },
                _ => Stream {
                    next: seq - 1,
                    held: BTreeMap::new(),
                    last_seen: now,
                    settled: false,
                },
            });
        s.last_seen = now;
        if seq < s.next {
            // Late (its wait expired) or published twice: the client sorts it out by seq.
            out.push(event);
        } else if seq == s.next {
            out.push(event);
            s.next += 1;
            s.settled = true;
            s.release_ready(out);
        } else {
            metrics::counter!(crate::metrics::names::BUS_REORDER_HELD).increment(1);
            // A seq already waiting is the same event published twice: the first copy
            // stays, so nothing goes out twice.
            s.held.entry(seq).or_insert((now, event));
        }
        if s.settled {
            let k = self.known.entry(key.0.clone()).or_insert(Known {
                next: s.next,
                last_seen: now,
            });
            k.next = k.next.max(s.next);
            k.last_seen = now;
        }
        if s.held.is_empty() {
            self.waiting.remove(&key);
        } else {
            self.waiting.insert(key);
        }
        self.sweep(now);
    }

    /// When the oldest waiting event must go out even if its predecessors never come.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|id| {
                self.streams
                    .get(id)?
                    .deadline(self.first_hold, self.gap_hold)
            })
            .min()
    }

    /// Releases, in seq order, the events of every stream whose wait is over; the gap
    /// before them is given up on.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        let due: Vec<(S, R)> = self
            .waiting
            .iter()
            .filter(|id| {
                self.streams
                    .get(id)
                    .and_then(|s| s.deadline(self.first_hold, self.gap_hold))
                    .is_some_and(|at| at <= now)
            })
            .cloned()
            .collect();
        for id in due {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            metrics::counter!(crate::metrics::names::BUS_REORDER_GAPS).increment(1);
            while let Some((seq, (_, event))) = s.held.pop_first() {
                out.push(event);
                s.next = seq + 1;
            }
            s.settled = true;
            if let Some(k) = self.known.get_mut(&id.0) {
                k.next = k.next.max(s.next);
            }
            self.waiting.remove(&id);
        }
        out
    }

    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < IDLE {
            return;
        }
        self.last_sweep = now;
        self.streams
            .retain(|_, s| !s.held.is_empty() || now.duration_since(s.last_seen) < IDLE);
        self.known
            .retain(|_, k| now.duration_since(k.last_seen) < IDLE);
    }

    #[cfg(test)]
    fn streams(&self) -> usize {
        self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const FIRST: Duration = Duration::from_millis(100);
    const HOLD: Duration = Duration::from_millis(1000);

    fn reorder<T>() -> Reorder<Uuid, (), T> {
        Reorder::new(FIRST, HOLD)
    }

    #[test]
    fn events_in_order_go_out_at_once() {
        let (mut r, c, t) = (reorder(), Uuid::new_v4(), Instant::now());
        assert_eq!(r.push(c, (), 1, 1, t), [1]);
        assert_eq!(r.push(c, (), 2, 2, t), [2]);
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn the_first_event_seen_past_a_conversations_start_waits_for_its_predecessor() {
        let (mut r, t) = (reorder(), Instant::now());
        let (young, racing, quiet) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(r.push(young, (), 4, 4, t).is_empty());
        assert!(r.push(young, (), 2, 2, t).is_empty());
        assert_eq!(r.push(young, (), 1, 1, t), [1, 2]);
        assert_eq!(r.push(young, (), 3, 3, t), [3, 4]);
        assert!(r.push(racing, (), 80, 80, t).is_empty());
        assert_eq!(r.push(racing, (), 79, 79, t), [79, 80]);
        // A conversation whose previous message went out long ago waits the short hold
        // once; from then on its gaps wait the long one.
        assert!(r.push(quiet, (), 40, 40, t).is_empty());
        assert_eq!(r.deadline(), Some(t + FIRST));
        assert_eq!(r.expire(t + FIRST), [40]);
        assert_eq!(r.push(quiet, (), 41, 41, t + FIRST), [41]);
        assert!(r.push(quiet, (), 43, 43, t + FIRST).is_empty());
        assert!(r.expire(t + FIRST * 2).is_empty());
        assert_eq!(r.deadline(), Some(t + FIRST + HOLD));
    }

    #[test]
    fn an_event_ahead_of_its_predecessor_waits_for_it() {
        let (mut r, c, t) = (reorder(), Uuid::new_v4(), Instant::now());
        assert_eq!(r.push(c, (), 1, 1, t), [1]);
        assert!(r.push(c, (), 3, 3, t).is_empty());
        assert!(r.push(c, (), 4, 4, t).is_empty());
        assert_eq!(r.deadline(), Some(t + HOLD));
        assert_eq!(r.push(c, (), 2, 2, t), [2, 3, 4]);
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up_after_the_hold() {
        let (mut r, c, t) = (reorder(), Uuid::new_v4(), Instant::now());
        r.push(c, (), 1, 1, t);
        assert!(r.push(c, (), 3, 3, t).is_empty());
        assert!(r.push(c, (), 5, 5, t + HOLD / 2).is_empty());
        assert!(r.expire(t + HOLD / 2).is_empty());
        assert_eq!(r.expire(t + HOLD), [3, 5]);
        // The stream goes on after the last released event; the missing one, if it ever
        // comes, goes out as it is.
        assert_eq!(r.push(c, (), 6, 6, t + HOLD), [6]);
        assert_eq!(r.push(c, (), 2, 2, t + HOLD), [2]);
    }

    #[test]
    fn an_event_published_twice_while_it_waits_goes_out_once() {
        let (mut r, c, t) = (reorder(), Uuid::new_v4(), Instant::now());
        r.push(c, (), 1, "1", t);
        assert!(r.push(c, (), 3, "3", t).is_empty());
        assert!(r.push(c, (), 3, "3 again", t).is_empty());
        assert_eq!(r.push(c, (), 2, "2", t), ["2", "3"]);
    }

    #[test]
    fn a_room_new_to_a_stream_starts_where_the_other_rooms_are() {
        let (mut r, c, t) = (Reorder::new(FIRST, HOLD), Uuid::new_v4(), Instant::now());
        for seq in 1..=20 {
            r.push(c, "alice", seq, seq, t);
        }
        // Bob's device connects: 22 overtook 21, and 21 is a long moment late. Bob waits
        // for it as alice would, not the short wait of a stream nobody here knew.
        assert!(r.push(c, "bob", 22, 22, t).is_empty());
        assert_eq!(r.deadline(), Some(t + HOLD));
        assert_eq!(r.push(c, "bob", 21, 21, t + FIRST * 3), [21, 22]);
        // Bob's copy of 20 trails his copy of 21, which alice has had already: he waits
        // the short while for it.
        let e = Uuid::new_v4();
        for seq in 1..=21 {
            r.push(e, "alice", seq, seq, t);
        }
        assert!(r.push(e, "bob", 21, 21, t).is_empty());
        assert_eq!(r.push(e, "bob", 20, 20, t), [20, 21]);
        // A young conversation's first copies for a room wait for every seq from 1 when
        // the other rooms are past them: this room was there from its start.
        let y = Uuid::new_v4();
        r.push(y, "alice", 1, 1, t);
        r.push(y, "alice", 2, 2, t);
        assert!(r.push(y, "bob", 2, 2, t).is_empty());
        assert_eq!(r.push(y, "bob", 1, 1, t), [1, 2]);
        // ...and when its first copy is past where the others are (rooms on different
        // Redis Cluster shards): it still waits from 1.
        let z = Uuid::new_v4();
        for seq in 1..=4 {
            r.push(z, "alice", seq, seq, t);
        }
        assert!(r.push(z, "bob", 6, 6, t).is_empty());
        for seq in 1..=4 {
            assert_eq!(r.push(z, "bob", seq, seq, t), [seq]);
        }
        assert_eq!(r.push(z, "bob", 5, 5, t), [5, 6]);
        // A stream no room knew still starts with the short wait.
        let d = Uuid::new_v4();
        assert!(r.push(d, "bob", 40, 40, t).is_empty());
        assert_eq!(r.deadline(), Some(t + FIRST));
    }

    #[test]
    fn conversations_do_not_wait_for_each_other() {
        let (mut r, t) = (reorder(), Instant::now());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        r.push(a, (), 1, "a1", t);
        assert!(r.push(a, (), 3, "a3", t).is_empty());
        assert_eq!(r.push(b, (), 1, "b1", t), ["b1"]);
        assert_eq!(r.push(b, (), 2, "b2", t), ["b2"]);
    }

    #[test]
    fn idle_streams_are_forgotten() {
        let (mut r, t) = (reorder(), Instant::now());
        r.push(Uuid::new_v4(), (), 1, 1, t);
        r.push(Uuid::new_v4(), (), 1, 1, t + IDLE + Duration::from_secs(1));
        assert_eq!(r.streams(), 1);
    }
}
