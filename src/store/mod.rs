//! The cache core's storage abstraction and its backends.
//!
//! A [`Store`] maps session IDs ([`SessionKey`]) to the DER encoding of a session
//! (`i2d_SSL_SESSION`). Backends that live in this process may also keep a decoded
//! [`SessionObject`] (given with the DER, or offered after a lookup decoded the DER:
//! [`Store::keep_decoded`]) so that a hit needs no `d2i_SSL_SESSION`, and must then count
//! what it holds ([`crate::session::object_cost`]); backends that live elsewhere (shared
//! memory, Redis) ignore it and return DER.
//!
//! Every backend implements the same contract:
//! - `put` replaces any entry with the same key and may evict others to make room;
//! - `get` returns a live entry and consumes it when it was stored as single-use (TLS 1.3
//!   tickets), atomically, so that one ticket resumes once however many lookups race;
//! - `take` consumes any live entry; `remove` deletes without returning;
//! - expired entries are never returned; removed, evicted and expired values are wiped.

pub mod front;
pub mod memory;
pub mod shm;
#[cfg(test)]
pub mod testing;

use crate::session::SessionObject;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest session ID OpenSSL uses (`SSL_MAX_SSL_SESSION_ID_LENGTH`).
pub(crate) const MAX_KEY_LEN: usize = 32;

/// A session ID of 1 to 32 bytes, held inline (no allocation on the lookup path).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
}

impl SessionKey {
    /// Returns `None` for an empty ID or one longer than 32 bytes.
    pub fn new(id: &[u8]) -> Option<Self> {
        if id.is_empty() || id.len() > MAX_KEY_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes[..id.len()].copy_from_slice(id);
        Some(SessionKey {
            len: id.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for SessionKey {
    // Session IDs are not secret, but a short form keeps logs readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey(len={}, ", self.len)?;
        for b in self.as_bytes().iter().take(4) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// What `put` stores.
pub struct Value {
    /// `i2d_SSL_SESSION` output. Holds the master secret: wiped when dropped.
    pub der: SecretBytes,
    /// Unix time (seconds) from which the entry is expired.
    pub expires_at: u64,
    /// Consumed by the first `get` (TLS 1.3 tickets under `single_use=1`).
    pub single_use: bool,
    /// The decoded session, for backends that keep objects in this process. It must hold
    /// nothing that `der` does not encode (no peer chain: see `Cache::store_session`), since
    /// that is what its memory is estimated from.
    pub object: Option<SessionObject>,
}

/// What a lookup returns.
pub enum Hit {
    /// A decoded session this caller owns one reference to.
    Object(SessionObject),
    /// The DER, for the caller to decode.
    Der(SecretBytes),
}

/// Why a `put` did not store anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutError {
    /// The value is larger than the backend accepts.
    TooLarge,
    /// The entry had already expired.
    Expired,
}

/// A storage backend. Implementations are shared by every thread of the process.
pub trait Store: Send + Sync {
    /// Stores `value` under `key`, replacing an older entry and evicting others if needed.
    fn put(&self, key: &SessionKey, value: Value, now: u64) -> Result<(), PutError>;
    /// Returns the live entry for `key`; consumes it if it was stored single-use.
    fn get(&self, key: &SessionKey, now: u64) -> Option<Hit>;
    /// Removes and returns the live entry for `key`.
    fn take(&self, key: &SessionKey, now: u64) -> Option<Hit>;
    /// Removes the entry for `key`; true if there was one.
    fn remove(&self, key: &SessionKey) -> bool;
    /// Offers `obj`, just decoded from `der`, the value a lookup found under `key`. A
    /// backend that keeps objects in this process may keep it for later hits, as long as the
    /// entry still holds that DER. The default keeps nothing.
    fn keep_decoded(&self, key: &SessionKey, der: &[u8], obj: &SessionObject, now: u64) {
        let _ = (key, der, obj, now);
    }
    /// The counters of events, which the cache core also updates.
    fn counters(&self) -> &Counters;
    /// Current occupancy: (entries, bytes counted against the backend's size limit: for
    /// `memory:` what `max_bytes` bounds, for `shm:` the DER in the segment).
    fn occupancy(&self) -> (u64, u64);
}

/// Event counters. `#[repr(C)]` atomics so that a shared-memory backend can place them in
/// its segment and every process sees the same figures.
#[repr(C)]
#[derive(Default)]
pub struct Counters {
    pub lookups: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stores: AtomicU64,
    pub removes: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    pub rejected: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of a store's counters and occupancy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub lookups: u64,
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    pub removes: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub rejected: u64,
    pub errors: u64,
    pub entries: u64,
    pub bytes: u64,
}

impl Stats {
    pub fn of(store: &dyn Store) -> Stats {
        let c = store.counters();
        let (entries, bytes) = store.occupancy();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            lookups: get(&c.lookups),
            hits: get(&c.hits),
            misses: get(&c.misses),
            stores: get(&c.stores),
            removes: get(&c.removes),
            evictions: get(&c.evictions),
            expirations: get(&c.expirations),
            rejected: get(&c.rejected),
            errors: get(&c.errors),
            entries,
            bytes,
        }
    }
}

/// Bytes that hold key material: overwritten with zeros before the memory is released.
pub struct SecretBytes(Box<[u8]>);

impl SecretBytes {
    pub fn new(bytes: Box<[u8]>) -> Self {
        SecretBytes(bytes)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// `len` zero bytes, to be filled in place.
    pub fn zeroed(len: usize) -> Self {
        SecretBytes(vec![0u8; len].into_boxed_slice())
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(v: &[u8]) -> Self {
        SecretBytes(v.into())
    }
}

impl From<Vec<u8>> for SecretBytes {
    /// Takes the vector's bytes. A vector with spare capacity would be reallocated by
    /// `into_boxed_slice`, leaving its old buffer unwiped: copy and wipe it instead.
    fn from(mut v: Vec<u8>) -> Self {
        if v.capacity() == v.len() {
            return SecretBytes(v.into_boxed_slice());
        }
        let out = SecretBytes::from(v.as_slice());
        v.resize(v.capacity(), 0);
        wipe(&mut v);
        out
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        SecretBytes(self.0.clone())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `buf` with zeros in a way the compiler may not elide.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to one byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lengths() {
        assert!(SessionKey::new(&[]).is_none());
        assert!(SessionKey::new(&[1u8; 33]).is_none());
        let k = SessionKey::new(&[7u8; 32]).unwrap();
        assert_eq!(k.as_bytes(), &[7u8; 32]);
        let short = SessionKey::new(&[7u8]).unwrap();
        assert_ne!(k, short);
        assert_eq!(short.as_bytes(), &[7u8]);
    }

    #[test]
    fn wipe_zeroes() {
        let mut v = vec![0xAAu8; 100];
        wipe(&mut v);
        assert!(v.iter().all(|&b| b == 0));
    }
}
