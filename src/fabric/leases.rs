//! The in-process stores' shared shape: owners holding members until a deadline (a user's
//! sockets, a conversation's typists). Expiry is checked on read, as Redis does.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use uuid::Uuid;

/// A std Mutex never held across an await; a panic while holding it leaves plain maps
/// behind, still consistent, so poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// owner → member → lease end.
#[derive(Debug)]
pub(crate) struct Leases<M>(HashMap<Uuid, HashMap<M, Instant>>);

impl<M> Default for Leases<M> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<M: Hash + Eq + Clone> Leases<M> {
    /// The owner's live members, expired ones dropped; creates the owner if missing.
    pub fn live(&mut self, owner: Uuid) -> &mut HashMap<M, Instant> {
        let now = Instant::now();
        let members = self.0.entry(owner).or_default();
        members.retain(|_, until| *until > now);
        members
    }

    /// Sets the member's lease end, adding it if missing.
    pub fn renew(&mut self, owner: Uuid, member: M, until: Instant) {
        self.0.entry(owner).or_default().insert(member, until);
    }

    /// Removes the member. Returns the lease end it had, if it was there (live or not),
    /// and whether the owner has no live member left (then the owner is forgotten).
    pub fn remove<Q>(&mut self, owner: Uuid, member: &Q) -> (Option<Instant>, bool)
    where
        M: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        let Some(members) = self.0.get_mut(&owner) else {
            return (None, true);
        };
        let removed = members.remove(member);
        members.retain(|_, until| *until > now);
        let empty = members.is_empty();
        if empty {
            self.0.remove(&owner);
        }
        (removed, empty)
    }

    /// Whether the owner holds a live lease.
    pub fn any_live(&self, owner: &Uuid) -> bool {
        let now = Instant::now();
        self.0
            .get(owner)
            .is_some_and(|m| m.values().any(|until| *until > now))
    }

    /// The owner's live members.
    pub fn members(&self, owner: &Uuid) -> Vec<M> {
        let now = Instant::now();
        self.0
            .get(owner)
            .map(|m| {
                m.iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(member, _)| member.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets owners whose every lease ran out, and returns them.
    pub fn reap(&mut self) -> Vec<Uuid> {
        let now = Instant::now();
        let mut gone = Vec::new();
        self.0.retain(|owner, members| {
            members.retain(|_, until| *until > now);
            if members.is_empty() {
                gone.push(*owner);
            }
            !members.is_empty()
        });
        gone
    }

    /// Owners with a live lease.
    pub fn live_owners(&self) -> usize {
        self.0.keys().filter(|o| self.any_live(o)).count()
    }
}
