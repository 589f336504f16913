//! A process-local front of decoded sessions for backends that keep only DER (shared memory,
//! and later Redis), so that a hit on a reusable session costs a reference count instead of
//! a `d2i_SSL_SESSION` (~1.3 µs, about 3 % of a resumed TLS 1.2 handshake).
//!
//! Each decoded object is filed under its session ID with a *stamp* that identifies the
//! exact stored entry it was decoded from (for `shm:`, the entry's ring position and
//! checksum). The backend hands out a front object only when the entry it found under its
//! own lock carries the same stamp, so the front can never resurrect a session the backend
//! removed, replaced or let expire: stale front objects are simply never matched again, and
//! make room as the front turns over. Bounded: a few thousand objects per process.

use super::SessionKey;
use crate::session::SessionObject;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 16;
const PER_SHARD: usize = 128;

type Slot = Mutex<HashMap<SessionKey, (u64, SessionObject)>>;

pub struct Front {
    shards: Box<[Slot]>,
    hasher: RandomState,
}

impl Default for Front {
    fn default() -> Self {
        Front {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Front {
    fn slot(
        &self,
        key: &SessionKey,
    ) -> std::sync::MutexGuard<'_, HashMap<SessionKey, (u64, SessionObject)>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new reference to the object decoded from the entry stamped `stamp`, if held.
    pub fn get(&self, key: &SessionKey, stamp: u64) -> Option<SessionObject> {
        match self.slot(key).get(key) {
            Some((s, obj)) if *s == stamp && obj.is_resumable() => Some(obj.clone()),
            _ => None,
        }
    }

    /// Files `obj` (decoded from the entry stamped `stamp`) under `key`.
    pub fn insert(&self, key: &SessionKey, stamp: u64, obj: SessionObject) {
        let mut slot = self.slot(key);
        if slot.len() >= PER_SHARD && !slot.contains_key(key) {
            // Drop an arbitrary entry (the map's iteration order is randomised per process).
            if let Some(victim) = slot.keys().next().copied() {
                slot.remove(&victim);
            }
        }
        slot.insert(*key, (stamp, obj));
    }

    pub fn remove(&self, key: &SessionKey) {
        self.slot(key).remove(key);
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" {
        fn SSL_SESSION_new() -> *mut openssl_sys::SSL_SESSION;
        fn SSL_SESSION_set1_id(
            s: *mut openssl_sys::SSL_SESSION,
            id: *const u8,
            len: std::os::raw::c_uint,
        ) -> std::os::raw::c_int;
    }

    fn session(id: u32) -> SessionObject {
        // SAFETY: a new empty session with an ID (so that it counts as resumable), owned here.
        unsafe {
            let s = SSL_SESSION_new();
            let bytes = id.to_le_bytes();
            assert_eq!(SSL_SESSION_set1_id(s, bytes.as_ptr(), 4), 1);
            SessionObject::from_owned(s).unwrap()
        }
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
    }

    #[test]
    fn bounded() {
        let f = Front::default();
        for i in 0..10_000 {
            f.insert(&key(i), 1, session(i));
        }
        assert!(f.held() <= SHARDS * PER_SHARD);
        assert!(f.get(&key(9_999), 1).is_some(), "the newest is kept");
    }
}
