//! Which rooms this node's sockets are in, counted, so the node subscribes to a room's
//! channel while at least one local socket is in the room and to no other.

use std::collections::{HashMap, HashSet};

use super::Member;

/// What a change to the memberships asks of the subscription.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Rooms whose first local member just arrived.
    pub subscribe: Vec<String>,
    /// Rooms whose last local member just left.
    pub unsubscribe: Vec<String>,
    /// Changes are numbered from 1 in the order they were made; 0 for no change.
    pub order: u64,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

/// Room memberships of this node's sockets. Pure bookkeeping: the caller turns each
/// [`Change`] into (un)subscriptions, in the order the changes were made, and reports the
/// last one Redis confirmed; a member's rooms are heard once that reaches
/// [`Interest::order_of`] them.
#[derive(Debug, Default)]
pub struct Interest {
    members: HashMap<Member, HashSet<String>>,
    rooms: HashMap<String, Room>,
    issued: u64,
}

#[derive(Debug)]
struct Room {
    members: usize,
    /// The change that subscribed it.
    order: u64,
}

impl Interest {
    /// `member` is in `rooms` from now on; joining a room twice counts once.
    pub fn join(&mut self, member: Member, rooms: &[String]) -> Change {
        let mut change = Change::default();
        let joined = self.members.entry(member).or_default();
        for room in rooms {
            if !joined.insert(room.clone()) {
                continue;
            }
            let r = self.rooms.entry(room.clone()).or_insert(Room {
                members: 0,
                order: 0,
            });
            r.members += 1;
            if r.members == 1 {
                change.subscribe.push(room.clone());
            }
        }
        self.number(change)
    }

    fn number(&mut self, mut change: Change) -> Change {
        if !change.is_empty() {
            self.issued += 1;
            change.order = self.issued;
            for room in &change.subscribe {
                if let Some(r) = self.rooms.get_mut(room) {
                    r.order = self.issued;
                }
            }
        }
        change
    }

    /// The change after whose confirmation every one of `rooms` is heard.
    pub fn order_of(&self, rooms: &[String]) -> u64 {
        rooms
            .iter()
            .filter_map(|r| self.rooms.get(r))
            .map(|r| r.order)
            .max()
            .unwrap_or(0)
    }

    /// The last change made.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// `member` is no longer in `rooms`.
    pub fn leave(&mut self, member: Member, rooms: &[String]) -> Change {
        let mut change = Change::default();
        let Some(joined) = self.members.get_mut(&member) else {
            return change;
        };
        for room in rooms {
            if joined.remove(room) {
                release(&mut self.rooms, room, &mut change);
            }
        }
        if joined.is_empty() {
            self.members.remove(&member);
        }
        self.number(change)
    }

    /// `member` is gone (its socket closed): it leaves every room it was in.
    pub fn forget(&mut self, member: Member) -> Change {
        let mut change = Change::default();
        for room in self.members.remove(&member).unwrap_or_default() {
            release(&mut self.rooms, &room, &mut change);
        }
        self.number(change)
    }

    /// Every room with a local member: what a new subscription must cover.
    pub fn rooms(&self) -> impl Iterator<Item = &String> {
        self.rooms.keys()
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.keys()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

fn release(rooms: &mut HashMap<String, Room>, room: &str, change: &mut Change) {
    if let Some(r) = rooms.get_mut(room) {
        r.members -= 1;
        if r.members == 0 {
            rooms.remove(room);
            change.unsubscribe.push(room.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use socketioxide::socket::Sid;

    use super::*;
    use crate::bus::Namespace;

    fn member() -> Member {
        Member::new(Namespace::Chat, Sid::new())
    }

    fn rooms(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_room_is_subscribed_with_its_first_member_and_dropped_with_its_last() {
        let (mut i, a, b) = (Interest::default(), member(), member());
        assert_eq!(
            i.join(a, &rooms(&["user:1", "s:1"])).subscribe,
            rooms(&["user:1", "s:1"])
        );
        assert!(i.join(b, &rooms(&["user:1"])).subscribe.is_empty());
        assert_eq!(i.order_of(&rooms(&["user:1", "s:1"])), 1);
        assert_eq!(i.forget(a).unsubscribe, rooms(&["s:1"]));
        assert_eq!(
            i.leave(b, &rooms(&["user:1"])).unsubscribe,
            rooms(&["user:1"])
        );
        assert_eq!(i.room_count(), 0);
        assert_eq!(i.members().count(), 0);
        // Two real changes after the first: numbered 2 and 3.
        assert_eq!(i.issued(), 3);
    }

    #[test]
    fn joining_twice_counts_once_and_leaving_a_room_never_joined_changes_nothing() {
        let (mut i, a, b) = (Interest::default(), member(), member());
        i.join(a, &rooms(&["conv:1"]));
        assert_eq!(i.join(a, &rooms(&["conv:1"])), Change::default());
        assert_eq!(i.issued(), 1);
        assert_eq!(i.leave(b, &rooms(&["conv:1"])), Change::default());
        assert_eq!(i.leave(a, &rooms(&["conv:2"])), Change::default());
        assert_eq!(
            i.leave(a, &rooms(&["conv:1"])).unsubscribe,
            rooms(&["conv:1"])
        );
        assert_eq!(i.forget(a), Change::default());
    }
}
