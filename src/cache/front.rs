//! The process-local front of decoded sessions, for every backend (stores hold bytes only),
//! so that a hit costs a reference count instead of a `d2i_SSL_SESSION` (~1.3 µs, about 3 %
//! of a resumed TLS 1.2 handshake).
//!
//! Each decoded object is filed under its session ID with a *stamp* that identifies the
//! exact stored entry it was decoded from (the store's [`Stamp`]: for `memory:` a counter,
//! for `shm:` the entry's ring position and checksum). The cache hands out a front object
//! only when the entry the backend found under its own lock carries the same stamp, so the front can never resurrect a session the backend
//! removed, replaced or let expire: stale front objects are simply never matched again, and
//! make room as the front turns over.
//!
//! Bounded per process, in objects and in bytes as
//! [`object_cost`](crate::session::object_cost) estimates them (a session with a client
//! certificate can cost hundreds of times what one without does): by default (a cache kept
//! elsewhere) [`MAX_OBJECTS`] objects and [`MAX_BYTES`]; a `memory:` cache gives it its
//! capacity and half its `max_bytes`. The budget is split evenly over the front's shards;
//! an object costing more than a shard's share is not kept, and a full shard drops
//! arbitrary objects to make room.

use crate::session::SessionObject;
use crate::store::hashed::{HashedKey, HashedMap};
use crate::store::{SessionKey, Stamp};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
/// Most objects held by the default front.
pub(crate) const MAX_OBJECTS: usize = 2048;
/// Most bytes (estimated) held by the default front: 4 MiB.
pub(crate) const MAX_BYTES: usize = 4 << 20;

struct Held {
    stamp: Stamp,
    obj: SessionObject,
    cost: usize,
}

#[derive(Default)]
struct Shard {
    held: HashedMap<Held>,
    bytes: usize,
}

/// A key with its hash, computed once per operation ([`Front::locate`]), outside any lock.
pub type Located = HashedKey;

impl Shard {
    fn take(&mut self, key: &Located) -> Option<Held> {
        let h = self.held.remove(key)?;
        self.bytes -= h.cost;
        Some(h)
    }
}

pub struct Front {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Most objects, and most bytes, per shard.
    per_shard: usize,
    shard_bytes: usize,
}

impl Default for Front {
    fn default() -> Self {
        Front::new(MAX_OBJECTS, MAX_BYTES)
    }
}

impl Front {
    /// A front of at most about `max_objects` objects and at most `max_bytes` bytes.
    pub fn new(max_objects: usize, max_bytes: usize) -> Front {
        Front {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            per_shard: max_objects.div_ceil(SHARDS).max(1),
            shard_bytes: max_bytes / SHARDS,
        }
    }

    /// Hashes `key` once for the operations that follow (SipHash with a per-process random
    /// key: session IDs come from clients).
    #[inline]
    pub fn locate(&self, key: &SessionKey) -> Located {
        Located {
            hash: self.hasher.hash_one(key),
            key: *key,
        }
    }

    fn slot(&self, key: &Located) -> MutexGuard<'_, Shard> {
        // The top bits pick the shard; the map uses all of them.
        let i = (key.hash >> 60) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new reference to the object decoded from the entry stamped `stamp`, if held.
    pub fn get(&self, key: &Located, stamp: Stamp) -> Option<SessionObject> {
        match self.slot(key).held.get(key) {
            Some(h) if h.stamp == stamp => Some(h.obj.clone()),
            _ => None,
        }
    }

    /// Files `obj` (decoded from the entry stamped `stamp`, or what was encoded into it;
    /// `cost` is [`object_cost`](crate::session::object_cost) of its DER) under `key`, if
    /// its cost fits.
    pub fn insert(&self, key: &Located, stamp: Stamp, obj: SessionObject, cost: usize) {
        let cost = Some(cost).filter(|&c| c <= self.shard_bytes);
        // Objects dropped here are released after the lock is.
        let mut gone = Vec::new();
        let mut shard = self.slot(key);
        gone.extend(shard.take(key));
        let Some(cost) = cost else {
            drop(shard);
            return;
        };
        while !shard.held.is_empty()
            && (shard.held.len() >= self.per_shard || shard.bytes + cost > self.shard_bytes)
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

    pub fn remove(&self, key: &Located) {
        let gone = self.slot(key).take(key);
        drop(gone);
    }

    /// The bytes (estimated) the front holds now.
    pub fn held_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
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
    use crate::test_sessions::tls12_der as real_der;

    fn session(id: u32) -> SessionObject {
        decode(&real_der(&id.to_le_bytes(), id as u8)).unwrap()
    }

    /// Files `obj` with its estimated cost, as the cache does.
    fn insert(f: &Front, k: &SessionKey, stamp: Stamp, obj: SessionObject) {
        let cost = obj.cost().unwrap();
        f.insert(&f.locate(k), stamp, obj, cost);
    }

    fn key(id: u32) -> SessionKey {
        SessionKey::new(&id.to_le_bytes()).unwrap()
    }

    /// The front's operations on plain keys.
    impl Front {
        fn get_(&self, k: &SessionKey, stamp: Stamp) -> Option<SessionObject> {
            self.get(&self.locate(k), stamp)
        }
        fn remove_(&self, k: &SessionKey) {
            self.remove(&self.locate(k))
        }
    }

    #[test]
    fn only_the_same_stamp_matches() {
        let f = Front::default();
        insert(&f, &key(1), 7, session(1));
        assert!(f.get_(&key(1), 7).is_some());
        assert!(
            f.get_(&key(1), 8).is_none(),
            "another entry under the same ID"
        );
        assert!(f.get_(&key(2), 7).is_none());
        f.remove_(&key(1));
        assert!(f.get_(&key(1), 7).is_none());
        assert_eq!(f.held(), (0, 0));
    }

    #[test]
    fn bounded_in_objects() {
        let f = Front::default();
        for i in 0..10_000 {
            insert(&f, &key(i), 1, session(i));
        }
        assert!(f.held().0 <= MAX_OBJECTS);
        assert!(f.get_(&key(9_999), 1).is_some(), "the newest is kept");
    }

    /// Objects are charged their estimated cost: a front of sessions with big client
    /// certificates holds few of them.
    #[test]
    fn bounded_in_bytes() {
        let f = Front::default();
        let one = object_cost(&real_der(&1u32.to_le_bytes(), 1));
        insert(&f, &key(1), 1, session(1));
        insert(&f, &key(1), 2, session(1));
        assert_eq!(f.held(), (1, one), "replacing keeps the accounting");
        f.remove_(&key(1));
        let heavy = |i: u32| {
            let der = with_client_cert(&real_der(&i.to_le_bytes(), i as u8), 150);
            decode(&der).unwrap()
        };
        let cost = heavy(0).cost().unwrap();
        assert!(
            cost > (MAX_BYTES / SHARDS) / 4 && cost < (MAX_BYTES / SHARDS) / 2,
            "{cost}"
        );
        for i in 0..200 {
            insert(&f, &key(i), 1, heavy(i));
            let (n, bytes) = f.held();
            assert!(bytes <= MAX_BYTES);
            assert!(n <= SHARDS * 3, "{n} objects of {cost} bytes");
        }
        assert!(f.get_(&key(199), 1).is_some(), "the newest is kept");
        // An object that does not fit a shard is not kept, and drops an older one filed
        // under the same ID.
        let huge = decode(&with_client_cert(&real_der(&199u32.to_le_bytes(), 9), 1000)).unwrap();
        assert!(huge.cost().unwrap() > (MAX_BYTES / SHARDS));
        insert(&f, &key(199), 2, huge);
        assert!(f.get_(&key(199), 1).is_none());
        assert!(f.get_(&key(199), 2).is_none());
    }
}
