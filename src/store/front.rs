//! A process-local front of decoded sessions for backends that keep only DER (shared memory,
//! and later Redis), so that a hit on a reusable session costs a reference count instead of
//! a `d2i_SSL_SESSION` (~1.3 µs, about 3 % of a resumed TLS 1.2 handshake).
//!
//! Each decoded object is filed under its session ID with a *stamp* that identifies the
//! exact stored entry it was decoded from (for `shm:`, the entry's ring position and
//! checksum). The backend hands out a front object only when the entry it found under its
//! own lock carries the same stamp, so the front can never resurrect a session the backend
//! removed, replaced or let expire: stale front objects are simply never matched again, and
//! make room as the front turns over.
//!
//! Bounded per process, in objects and in bytes: at most [`MAX_OBJECTS`] objects and
//! [`MAX_BYTES`] of memory as [`object_cost`](crate::session::object_cost) estimates it (a
//! session with a client certificate can cost hundreds of times what one without does). The
//! budget is split evenly over the front's shards; an object costing more than a shard's
//! share is not kept, and a full shard drops arbitrary objects to make room.

use super::SessionKey;
use crate::session::SessionObject;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
/// Most objects held by one process's front.
pub(crate) const MAX_OBJECTS: usize = 2048;
const PER_SHARD: usize = MAX_OBJECTS / SHARDS;
/// Most bytes (estimated) held by one process's front: 4 MiB.
pub(crate) const MAX_BYTES: usize = 4 << 20;
const SHARD_BYTES: usize = MAX_BYTES / SHARDS;

struct Held {
    stamp: u64,
    obj: SessionObject,
    cost: usize,
}

#[derive(Default)]
struct Shard {
    held: HashMap<SessionKey, Held>,
    bytes: usize,
}

impl Shard {
    fn take(&mut self, key: &SessionKey) -> Option<Held> {
        let h = self.held.remove(key)?;
        self.bytes -= h.cost;
        Some(h)
    }
}

pub struct Front {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl Default for Front {
    fn default() -> Self {
        Front {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Front {
    fn slot(&self, key: &SessionKey) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new reference to the object decoded from the entry stamped `stamp`, if held.
    pub fn get(&self, key: &SessionKey, stamp: u64) -> Option<SessionObject> {
        match self.slot(key).held.get(key) {
            Some(h) if h.stamp == stamp && h.obj.is_resumable() => Some(h.obj.clone()),
            _ => None,
        }
    }

    /// Files `obj` (decoded from the entry stamped `stamp`) under `key`, if its cost fits.
    pub fn insert(&self, key: &SessionKey, stamp: u64, obj: SessionObject) {
        // Estimated outside the lock (it encodes the session once).
        let cost = obj.cost().filter(|&c| c <= SHARD_BYTES);
        // Objects dropped here are released after the lock is.
        let mut gone = Vec::new();
        let mut shard = self.slot(key);
        gone.extend(shard.take(key));
        let Some(cost) = cost else {
            drop(shard);
            return;
        };
        while !shard.held.is_empty()
            && (shard.held.len() >= PER_SHARD || shard.bytes + cost > SHARD_BYTES)
        {
            // Drop an arbitrary entry (the map's iteration order is randomised per process).
            let victim = *shard.held.keys().next().expect("not empty");
            gone.extend(shard.take(&victim));
        }
        shard.bytes += cost;
        shard.held.insert(*key, Held { stamp, obj, cost });
        drop(shard);
        drop(gone);
    }

    pub fn remove(&self, key: &SessionKey) {
        let gone = self.slot(key).take(key);
        drop(gone);
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            let s = s.lock().unwrap();
            assert_eq!(s.bytes, s.held.values().map(|h| h.cost).sum::<usize>());
            (n + s.held.len(), b + s.bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cost::tests::with_client_cert;
    use crate::session::{decode, object_cost};
    use crate::store::testing::real_der;

    fn session(id: u32) -> SessionObject {
        decode(&real_der(&id.to_le_bytes(), id as u8)).unwrap()
    }

    fn key(id: u32) -> SessionKey {
        SessionKey::new(&id.to_le_bytes()).unwrap()
    }

    #[test]
    fn only_the_same_stamp_matches() {
        let f = Front::default();
        f.insert(&key(1), 7, session(1));
        assert!(f.get(&key(1), 7).is_some());
        assert!(
            f.get(&key(1), 8).is_none(),
            "another entry under the same ID"
        );
        assert!(f.get(&key(2), 7).is_none());
        f.remove(&key(1));
        assert!(f.get(&key(1), 7).is_none());
        assert_eq!(f.held(), (0, 0));
    }

    #[test]
    fn bounded_in_objects() {
        let f = Front::default();
        for i in 0..10_000 {
            f.insert(&key(i), 1, session(i));
        }
        assert!(f.held().0 <= MAX_OBJECTS);
        assert!(f.get(&key(9_999), 1).is_some(), "the newest is kept");
    }

    /// Objects are charged their estimated cost: a front of sessions with big client
    /// certificates holds few of them.
    #[test]
    fn bounded_in_bytes() {
        let f = Front::default();
        let one = object_cost(&real_der(&1u32.to_le_bytes(), 1));
        f.insert(&key(1), 1, session(1));
        f.insert(&key(1), 2, session(1));
        assert_eq!(f.held(), (1, one), "replacing keeps the accounting");
        f.remove(&key(1));
        let heavy = |i: u32| {
            let der = with_client_cert(&real_der(&i.to_le_bytes(), i as u8), 150);
            decode(&der).unwrap()
        };
        let cost = heavy(0).cost().unwrap();
        assert!(cost > SHARD_BYTES / 4 && cost < SHARD_BYTES / 2, "{cost}");
        for i in 0..200 {
            f.insert(&key(i), 1, heavy(i));
            let (n, bytes) = f.held();
            assert!(bytes <= MAX_BYTES);
            assert!(n <= SHARDS * 3, "{n} objects of {cost} bytes");
        }
        assert!(f.get(&key(199), 1).is_some(), "the newest is kept");
        // An object that does not fit a shard is not kept, and drops an older one filed
        // under the same ID.
        let huge = decode(&with_client_cert(&real_der(&199u32.to_le_bytes(), 9), 1000)).unwrap();
        assert!(huge.cost().unwrap() > SHARD_BYTES);
        f.insert(&key(199), 2, huge);
        assert!(f.get(&key(199), 1).is_none());
        assert!(f.get(&key(199), 2).is_none());
    }
}
