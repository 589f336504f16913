//! Session IDs hashed once per operation: the key of the in-process tables (the
//! `memory:` store's index, the cache core's front), which reuse that one hash.

use super::SessionKey;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A key with its hash, computed once (a keyed SipHash: session IDs come from clients).
#[derive(Clone, Copy)]
pub struct HashedKey {
    pub hash: u64,
    pub key: SessionKey,
}

impl PartialEq for HashedKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for HashedKey {}

impl Hash for HashedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a [`HashedKey`]'s hash through.
#[derive(Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("HashedKey only writes its precomputed u64")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by [`HashedKey`] that hashes nothing again.
pub type HashedMap<V> = HashMap<HashedKey, V, BuildHasherDefault<Prehashed>>;
