//! The storage layer: bytes under session IDs, in a backend.
//!
//! A [`Store`] maps a session ID ([`SessionKey`]) to opaque bytes (what the cache core's
//! codec made of a session) with an expiry time and a single-use flag. It knows nothing of
//! OpenSSL: decoded sessions live in the cache core. Every backend implements the same
//! contract, which the model tests in `store::testing` check for each:
//! - `put` replaces any entry with the same key and may evict others to make room; it
//!   returns the new entry's [`Stamp`];
//! - `get` returns a live entry and consumes it when it was stored single-use (TLS 1.3
//!   tickets), atomically, so that one ticket resumes once however many lookups race;
//!   the caller's `known` says whether it already holds what the entry with a given stamp
//!   decodes to, in which case no bytes are copied;
//! - `take` consumes any live entry; `remove` deletes without returning;
//! - expired entries are never returned; removed, evicted and expired bytes are wiped;
//! - every operation can fail with a [`StoreError`]: a backend that cannot answer in time
//!   says [`StoreError::Timeout`] (never a silent miss), and counts each error it returns
//!   in its `errors` counter.
//!
//! Adding a backend: a module here and one arm in [`backends::open`]. Nothing above this
//! layer names a backend.

pub mod backends;
pub mod hashed;
pub mod memory;
pub mod redis;
pub mod shm;
#[cfg(test)]
pub mod testing;
pub mod ticket_table;

use crate::secret::SecretBytes;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest session ID OpenSSL uses (`SSL_MAX_SSL_SESSION_ID_LENGTH`).
pub(crate) const MAX_KEY_LEN: usize = 32;

/// A session ID of 1 to 32 bytes, held inline (no allocation on the lookup path).
#[derive(Clone, Copy, PartialEq, Eq)]
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

impl std::hash::Hash for SessionKey {
    /// The ID's bytes in one write (hashing the padded array and its length would cost
    /// hashers like SipHash a third more on every lookup).
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
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
pub struct Entry {
    /// The encoded session. Holds the master secret: wiped when dropped.
    pub bytes: SecretBytes,
    /// Unix time (seconds) from which the entry is expired.
    pub expires_at: u64,
    /// Consumed by the first `get` (TLS 1.3 tickets under `single_use=1`).
    pub single_use: bool,
}

/// Names one stored version of an entry: two lookups that see the same key and stamp saw
/// the same bytes. A backend makes stamps that are not reused for other bytes under the
/// same key while an entry could still be held by a caller (e.g. a counter, or a ring
/// position with the entry's checksum).
pub type Stamp = u64;

/// What a `get` found.
pub struct Found {
    /// The entry's bytes; None when the caller's `known(stamp)` said it already holds what
    /// they decode to.
    pub bytes: Option<SecretBytes>,
    pub stamp: Stamp,
    /// The entry was single-use and this lookup consumed it.
    pub consumed: bool,
}

/// Why a store operation failed. Each is counted in the backend's `errors` (except
/// `TooLarge` and `Expired`, which are the caller's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The backend cannot be used now: down, refused, out of room for its own bookkeeping.
    Unavailable,
    /// The backend did not answer within its time budget (a lock held too long, a slow
    /// server). The operation may or may not have happened.
    Timeout,
    /// What the backend held for the key failed its integrity check; it was dropped.
    Corrupt,
    /// The value is larger than the backend accepts.
    TooLarge,
    /// The entry had already expired when it was to be stored.
    Expired,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Unavailable => "the backend is unavailable",
            StoreError::Timeout => "the backend did not answer in time",
            StoreError::Corrupt => "the stored entry was corrupt",
            StoreError::TooLarge => "the value is too large for the backend",
            StoreError::Expired => "the entry had already expired",
        })
    }
}

/// A storage backend. Implementations are shared by every thread of the process.
pub trait Store: Send + Sync {
    /// Stores `entry` under `key`, replacing an older entry and evicting others if needed.
    fn put(&self, key: &SessionKey, entry: Entry, now: u64) -> Result<Stamp, StoreError>;
    /// Returns the live entry for `key`; consumes it if it was stored single-use. `known` is
    /// asked at most once, with the entry's stamp, before its bytes are copied.
    fn get(
        &self,
        key: &SessionKey,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError>;
    /// `get` of several keys at once, a result for each in order; `known(i, stamp)` is
    /// `get`'s `known` for key `i`. Asynchronous lookups batch what waits for a server: a
    /// networked backend answers them in one round trip. The default asks `get` for each.
    fn get_many(
        &self,
        keys: &[SessionKey],
        now: u64,
        known: &mut dyn FnMut(usize, Stamp) -> bool,
    ) -> Vec<Result<Option<Found>, StoreError>> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| self.get(k, now, &mut |s| known(i, s)))
            .collect()
    }
    /// `get`, if it can answer without waiting for a server: None when it would need a
    /// network round trip (then nothing was done, and `known` was not asked). What answers
    /// in microseconds answers here: `memory:`, `shm:` (the default: `get` itself), a redis
    /// cache's `l1` tier and its own writes not yet sent, and its open circuit breaker (an
    /// error at once). The caller of an asynchronous lookup asks this first, on its own
    /// thread, and suspends a handshake only on None.
    fn get_now(
        &self,
        key: &SessionKey,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Option<Result<Option<Found>, StoreError>> {
        Some(self.get(key, now, known))
    }
    /// Removes and returns the live entry for `key`.
    fn take(&self, key: &SessionKey, now: u64) -> Result<Option<SecretBytes>, StoreError>;
    /// Removes the entry for `key`; true if there was one.
    fn remove(&self, key: &SessionKey) -> Result<bool, StoreError>;
    /// The counters of events, which the cache core also updates.
    fn counters(&self) -> &Counters;
    /// Current occupancy: (entries, bytes counted against the backend's size limit: for
    /// `memory:` what `max_bytes` bounds, for `shm:` the bytes in the segment). A backend
    /// that cannot tell cheaply (a server elsewhere) says what this process holds.
    fn occupancy(&self) -> (u64, u64);
    /// Removes every entry (wiping what it held): how many were removed, where the backend
    /// can tell. A backend that cannot be emptied from here says `Unavailable` (the
    /// default).
    fn flush(&self) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable)
    }
    /// The counters of a backend that talks to a server; zero for the others.
    fn net_stats(&self) -> NetStats {
        NetStats::default()
    }
    /// The whole cache as its server sees it, for operators: what every process reported
    /// and what the server holds. None for a backend whose [`Stats::of`] is already the
    /// whole cache's (`memory:` in its process, `shm:` from its segment). Asks the server:
    /// never on a handshake's path.
    fn survey(&self) -> Result<Option<Survey>, StoreError> {
        Ok(None)
    }
    /// Every ticket-key record the backend holds (`tickets=shared`), in no particular
    /// order. The bytes are opaque here: the cache core seals them and checks them when it
    /// opens them. Called by the background refresher and the tool, never on a handshake's
    /// path.
    fn ticket_records(&self) -> Result<Vec<TicketRecord>, StoreError>;
    /// Stores `bytes` (at most [`MAX_TICKET_RECORD_BYTES`]) as record `seq` unless a record
    /// `seq` exists: atomically, so that of several processes adding the same `seq` one wins
    /// and every one then reads the winner's. `Ok(true)`: this call added it. The backend
    /// keeps it until at least `keep_until` (Unix seconds) unless it is dropped; a backend
    /// with a fixed number of places makes room by dropping records past their
    /// `keep_until`, then the lowest `seq`s.
    fn add_ticket_record(
        &self,
        seq: u64,
        bytes: &[u8],
        keep_until: u64,
    ) -> Result<bool, StoreError>;
    /// Drops the records with these sequence numbers (wiping them where the backend can);
    /// absent ones are ignored.
    fn drop_ticket_records(&self, seqs: &[u64]) -> Result<(), StoreError>;
}

/// The largest ticket-key record a backend must accept.
pub(crate) const MAX_TICKET_RECORD_BYTES: usize = 184;

/// One ticket-key record as a backend holds it ([`Store::ticket_records`]).
pub struct TicketRecord {
    /// The record's sequence number: what it is stored under.
    pub seq: u64,
    /// What [`Store::add_ticket_record`] stored, unopened.
    pub bytes: SecretBytes,
}

/// A networked backend's view of the whole cache ([`Store::survey`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Survey {
    /// The counters summed over every process that reported them, and the entries and
    /// bytes (of stored values) the server holds.
    pub stats: Stats,
    /// False when the server held more keys than one survey visits: `entries` and `bytes`
    /// are then lower bounds.
    pub complete: bool,
    /// Seconds since a process last reported its counters; None if none ever did.
    pub reported_ago_s: Option<u64>,
    /// What the server says of itself (memory used, its limit, evictions, ...): a name
    /// and a value, summed over a cluster's primaries where that is a sum.
    pub server: Vec<(&'static str, String)>,
}

/// What went wrong between this process and a backend's server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Operations that failed on the network or with a server error (not timeouts).
    pub net_errors: u64,
    /// Operations that gave up after their time budget.
    pub timeouts: u64,
    /// Times the circuit breaker opened (the backend skipped after repeated failures).
    pub breaker_opens: u64,
    /// Writes (stores, removals) dropped because the write queue was full or the breaker
    /// was open.
    pub queue_drops: u64,
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
    /// Sessions found but not resumed: made for another server name (SNI). Last, so that
    /// a `shm:` segment keeps its layout: the field takes header bytes that were zero and
    /// unused before it, and a process of an older version simply never bumps it.
    pub sni_refused: AtomicU64,
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
    pub net: NetStats,
    /// Lookups that found a session made for another server name (counted in `misses`).
    pub sni_refused: u64,
}

impl Stats {
    /// The names of the event counters (every field but `entries` and `bytes`), as the
    /// fields of `struct sesscache_stats` are named, in [`Stats::events`]' order.
    pub const EVENT_NAMES: [&'static str; 14] = [
        "lookups",
        "hits",
        "misses",
        "stores",
        "removes",
        "evictions",
        "expirations",
        "rejected",
        "errors",
        "net_errors",
        "timeouts",
        "breaker_opens",
        "queue_drops",
        "sni_refused",
    ];

    /// The event counters, in [`Stats::EVENT_NAMES`]' order. No `..`: a counter added to
    /// `Stats` does not compile until it is listed here.
    pub fn events(&self) -> [u64; 14] {
        let Stats {
            lookups,
            hits,
            misses,
            stores,
            removes,
            evictions,
            expirations,
            rejected,
            errors,
            entries: _,
            bytes: _,
            net:
                NetStats {
                    net_errors,
                    timeouts,
                    breaker_opens,
                    queue_drops,
                },
            sni_refused,
        } = *self;
        [
            lookups,
            hits,
            misses,
            stores,
            removes,
            evictions,
            expirations,
            rejected,
            errors,
            net_errors,
            timeouts,
            breaker_opens,
            queue_drops,
            sni_refused,
        ]
    }

    /// Stats with these event counters ([`Stats::events`]' order), no entries or bytes.
    pub fn from_events(e: [u64; 14]) -> Stats {
        let [lookups, hits, misses, stores, removes, evictions, expirations, rejected, errors, net_errors, timeouts, breaker_opens, queue_drops, sni_refused] =
            e;
        Stats {
            lookups,
            hits,
            misses,
            stores,
            removes,
            evictions,
            expirations,
            rejected,
            errors,
            entries: 0,
            bytes: 0,
            net: NetStats {
                net_errors,
                timeouts,
                breaker_opens,
                queue_drops,
            },
            sni_refused,
        }
    }

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
            net: store.net_stats(),
            sni_refused: get(&c.sni_refused),
        }
    }
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
}
