//! `memory:` — the in-process backend, shared by every thread of one process.
//!
//! Sharded: a key's hash picks one of up to 64 shards, each behind its own mutex, so
//! threads contend only when they touch the same shard. A lookup hashes the key once
//! (SipHash with a per-process random key, since session IDs come from clients) and
//! reuses that hash inside the shard's table.
//!
//! Each entry is charged its bytes plus [`ENTRY_OVERHEAD`] for its own bookkeeping against
//! `max_bytes`, so that `max_bytes` bounds the memory the store holds: the encoded
//! sessions and the tables that find them. (Decoded sessions are the cache core's, in its
//! front, with their own share of a `memory:` cache's `max_bytes`.)
//!
//! Eviction, when a shard is full (entries or bytes):
//! 1. expired entries first, soonest-expired first (a min-heap on expiry time, with lazy
//!    deletion of stale heap items);
//! 2. then CLOCK (second chance). A hit only sets a `referenced` flag — no list to relink
//!    under the lock, unlike LRU — and the sweeping hand evicts the first entry it meets
//!    whose flag is clear, clearing flags as it passes. It approximates LRU for a workload
//!    where a session is resumed a few times soon after it is made and then goes cold,
//!    which is what TLS session caches see, at O(1) amortised cost and one bit per entry.
//!
//! Expired entries also go without pressure: every store first drops up to two expired
//! entries from the top of its shard's heap, so that secrets do not outlive their session
//! long in a cache that is not full.
//!
//! Bytes are [`SecretBytes`], wiped when removed, evicted, expired or replaced.

use super::hashed::{HashedKey, HashedMap};
use super::ticket_table::TicketTable;
use super::{Counters, Entry as Value, Found, SessionKey, Stamp, Store, StoreError, TicketRecord};
use crate::log::Level;
use crate::secret::SecretBytes;
use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

/// Size limits of a memory store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries held.
    pub capacity: usize,
    /// Most bytes charged: the stored bytes and their bookkeeping.
    pub max_bytes: usize,
    /// Largest single value accepted.
    pub max_value_bytes: usize,
}

const MAX_SHARDS: usize = 64;
/// A shard holds at least this many entries, so that small caches stay exact enough.
const MIN_ENTRIES_PER_SHARD: usize = 64;
/// Expired entries a store drops from the top of its shard's expiry heap, full or not.
const EXPIRE_PER_PUT: usize = 2;

/// What one entry's bookkeeping costs, charged on top of what it holds: its slot, its
/// index entry (a hash table keeps up to half of its buckets free after growing), up to
/// four expiry-heap items (the heap is rebuilt past two per entry, and vectors grow by
/// doubling) and the allocator's header on the bytes.
pub(crate) const ENTRY_OVERHEAD: usize = std::mem::size_of::<Slot>()
    + 2 * (std::mem::size_of::<(HashedKey, u32)>() + 1)
    + 4 * std::mem::size_of::<Reverse<(u64, u32, u32)>>()
    + 16;

pub struct MemoryStore {
    shards: Box<[Padded<Mutex<Shard>>]>,
    shard_bits: u32,
    hasher: RandomState,
    counters: Counters,
    max_value_bytes: usize,
    /// The smallest shard's byte limit: no single charge may exceed it.
    shard_bytes: usize,
    /// Ticket-key records: this process's own (`tickets=shared` on `memory:`).
    tickets: TicketTable,
}

#[repr(align(64))]
struct Padded<T>(T);

impl MemoryStore {
    pub fn new(limits: Limits) -> Self {
        let capacity = limits.capacity.max(1);
        let max_bytes = limits.max_bytes.max(1);
        let mut n = 1usize;
        while n < MAX_SHARDS
            && capacity / (n * 2) >= MIN_ENTRIES_PER_SHARD
            && max_bytes / (n * 2) >= limits.max_value_bytes.saturating_mul(4)
        {
            n *= 2;
        }
        let shards = (0..n)
            .map(|i| {
                // Spread the remainder so the shards add up to exactly the limits.
                let entries = capacity / n + usize::from(i < capacity % n);
                let bytes = max_bytes / n + usize::from(i < max_bytes % n);
                Padded(Mutex::new(Shard::new(entries, bytes)))
            })
            .collect();
        MemoryStore {
            shards,
            shard_bits: n.trailing_zeros(),
            hasher: RandomState::new(),
            counters: Counters::default(),
            max_value_bytes: limits.max_value_bytes.min(max_bytes / n),
            shard_bytes: max_bytes / n,
            tickets: TicketTable::default(),
        }
    }

    /// How many shards the store was split into.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn locate(&self, key: &SessionKey) -> (MutexGuard<'_, Shard>, HashedKey) {
        let hash = self.hasher.hash_one(key);
        let shard = if self.shard_bits == 0 {
            0
        } else {
            (hash >> (64 - self.shard_bits)) as usize
        };
        // A panic while a shard was locked leaves it consistent at every await-free step we
        // take, so a poisoned lock is still usable.
        let guard = self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard, HashedKey { hash, key: *key })
    }
}

impl Store for MemoryStore {
    fn put(&self, key: &SessionKey, value: Value, now: u64) -> Result<Stamp, StoreError> {
        let charge = value.bytes.len().saturating_add(ENTRY_OVERHEAD);
        if value.bytes.len() > self.max_value_bytes || charge > self.shard_bytes {
            return Err(StoreError::TooLarge);
        }
        if value.expires_at <= now {
            return Err(StoreError::Expired);
        }
        let entry = NewEntry {
            bytes: value.bytes,
            charge,
            expires_at: value.expires_at,
            single_use: value.single_use,
        };
        let (mut shard, hk) = self.locate(key);
        Ok(shard.put(hk, entry, now, &self.counters))
    }

    fn get(
        &self,
        key: &SessionKey,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError> {
        let (mut shard, hk) = self.locate(key);
        Ok(shard.get(&hk, now, false, known, &self.counters))
    }

    fn take(&self, key: &SessionKey, now: u64) -> Result<Option<SecretBytes>, StoreError> {
        let (mut shard, hk) = self.locate(key);
        Ok(shard
            .get(&hk, now, true, &mut |_| false, &self.counters)
            .and_then(|f| f.bytes))
    }

    fn remove(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let (mut shard, hk) = self.locate(key);
        let removed = shard.find(&hk).map(|slot| shard.unlink(slot)).is_some();
        if removed {
            Counters::bump(&self.counters.removes);
        }
        Ok(removed)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn occupancy(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(e, b), s| {
            let s = s.0.lock().unwrap_or_else(|p| p.into_inner());
            (e + s.index.len() as u64, b + s.bytes as u64)
        })
    }

    fn ticket_records(&self) -> Result<Vec<TicketRecord>, StoreError> {
        Ok(self.tickets.records())
    }

    fn add_ticket_record(
        &self,
        seq: u64,
        bytes: &[u8],
        keep_until: u64,
    ) -> Result<bool, StoreError> {
        self.tickets
            .add(seq, bytes, keep_until, crate::clock::now())
    }

    fn drop_ticket_records(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.tickets.drop_records(seqs);
        Ok(())
    }
}

struct Entry {
    key: HashedKey,
    bytes: SecretBytes,
    /// What the entry counts against the shard's `max_bytes`.
    charge: usize,
    expires_at: u64,
    stamp: Stamp,
    single_use: bool,
    referenced: bool,
}

/// An entry before it is filed.
struct NewEntry {
    bytes: SecretBytes,
    charge: usize,
    expires_at: u64,
    single_use: bool,
}

fn log_dropped(what: &str, e: &Entry) {
    let id = e.key.key.as_bytes();
    crate::log!(
        Level::Debug,
        "{what}: session id#{:08x} ({} bytes)",
        crate::log::fingerprint(id),
        id.len()
    );
}

#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

struct Shard {
    index: HashedMap<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The CLOCK hand: the next slot the sweep looks at.
    hand: usize,
    /// (expiry, slot, generation), soonest first. Items whose slot has since been reused or
    /// whose entry's expiry changed are stale and skipped.
    expiry: BinaryHeap<Reverse<(u64, u32, u32)>>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// The next entry's stamp: every entry this shard files gets a new one.
    next_stamp: Stamp,
}

impl Shard {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Shard {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            expiry: BinaryHeap::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            next_stamp: 1,
        }
    }

    fn find(&self, key: &HashedKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    fn entry(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize]
            .entry
            .as_mut()
            .expect("indexed slot holds an entry")
    }

    /// Removes the entry in `slot` from every structure and returns it.
    fn unlink(&mut self, slot: u32) -> Entry {
        let s = &mut self.slots[slot as usize];
        let entry = s.entry.take().expect("indexed slot holds an entry");
        s.generation = s.generation.wrapping_add(1);
        self.index.remove(&entry.key);
        self.free.push(slot);
        self.bytes -= entry.charge;
        entry
    }

    fn get(
        &mut self,
        key: &HashedKey,
        now: u64,
        take: bool,
        known: &mut dyn FnMut(Stamp) -> bool,
        c: &Counters,
    ) -> Option<Found> {
        let slot = self.find(key)?;
        let entry = self.entry(slot);
        if entry.expires_at <= now {
            drop(self.unlink(slot));
            Counters::bump(&c.expirations);
            return None;
        }
        let stamp = entry.stamp;
        if take || entry.single_use {
            let gone = self.unlink(slot);
            let bytes = (take || !known(stamp)).then_some(gone.bytes);
            return Some(Found {
                bytes,
                stamp,
                consumed: true,
            });
        }
        entry.referenced = true;
        let bytes = (!known(stamp)).then(|| entry.bytes.clone());
        Some(Found {
            bytes,
            stamp,
            consumed: false,
        })
    }

    fn put(&mut self, key: HashedKey, new: NewEntry, now: u64, c: &Counters) -> Stamp {
        if let Some(old) = self.find(&key) {
            drop(self.unlink(old));
        }
        let stamp = self.file(key, new, now, c);
        Counters::bump(&c.stores);
        stamp
    }

    /// Files a new entry, after dropping a few expired ones and making room.
    fn file(&mut self, key: HashedKey, new: NewEntry, now: u64, c: &Counters) -> Stamp {
        self.expire_some(now, EXPIRE_PER_PUT, c);
        while !self.index.is_empty()
            && (self.index.len() >= self.max_entries || self.bytes + new.charge > self.max_bytes)
        {
            self.evict_one(now, c);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.slots[slot as usize].generation;
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.slots[slot as usize].entry = Some(Entry {
            key,
            bytes: new.bytes,
            charge: new.charge,
            expires_at: new.expires_at,
            stamp,
            single_use: new.single_use,
            referenced: false,
        });
        self.index.insert(key, slot);
        self.bytes += new.charge;
        self.expiry
            .push(Reverse((new.expires_at, slot, generation)));
        if self.expiry.len() > 2 * self.index.len() + 64 {
            self.rebuild_expiry();
        }
        stamp
    }

    /// Drops up to `n` expired entries from the top of the expiry heap (and the stale heap
    /// items above them).
    fn expire_some(&mut self, now: u64, n: usize, c: &Counters) {
        let mut dropped = 0;
        while dropped < n {
            let Some(&Reverse((expires_at, slot, generation))) = self.expiry.peek() else {
                return;
            };
            if !self.is_current(slot, generation, expires_at) {
                self.expiry.pop();
                continue;
            }
            if expires_at > now {
                return;
            }
            self.expiry.pop();
            let gone = self.unlink(slot);
            log_dropped("expire", &gone);
            Counters::bump(&c.expirations);
            dropped += 1;
        }
    }

    fn is_current(&self, slot: u32, generation: u32, expires_at: u64) -> bool {
        let s = &self.slots[slot as usize];
        s.generation == generation && s.entry.as_ref().is_some_and(|e| e.expires_at == expires_at)
    }

    /// Frees one entry: the soonest-expired one if it has expired, else the CLOCK victim.
    fn evict_one(&mut self, now: u64, c: &Counters) {
        let before = self.index.len();
        self.expire_some(now, 1, c);
        if self.index.len() < before {
            return;
        }
        // Two turns of the hand always find a victim: the first clears every flag.
        let n = self.slots.len();
        for _ in 0..2 * n {
            let slot = self.hand;
            self.hand = (self.hand + 1) % n;
            if let Some(e) = self.slots[slot].entry.as_mut() {
                if e.referenced {
                    e.referenced = false;
                } else {
                    let gone = self.unlink(slot as u32);
                    log_dropped("evict", &gone);
                    Counters::bump(&c.evictions);
                    return;
                }
            }
        }
        unreachable!("evict_one called on an empty shard");
    }

    fn rebuild_expiry(&mut self) {
        self.expiry = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.entry
                    .as_ref()
                    .map(|e| Reverse((e.expires_at, i as u32, s.generation)))
            })
            .collect();
    }
}

#[cfg(test)]
impl MemoryStore {
    /// Checks every shard's accounting against its entries.
    fn check(&self) {
        for s in self.shards.iter() {
            let s = s.0.lock().unwrap();
            let live: Vec<&Entry> = s.slots.iter().filter_map(|x| x.entry.as_ref()).collect();
            assert_eq!(live.len(), s.index.len());
            assert_eq!(s.bytes, live.iter().map(|e| e.charge).sum::<usize>());
            assert!(s.bytes <= s.max_bytes, "{} > {}", s.bytes, s.max_bytes);
            for e in live {
                assert_eq!(e.charge, e.bytes.len() + ENTRY_OVERHEAD);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    const O: usize = ENTRY_OVERHEAD;

    fn limits(capacity: usize, max_bytes: usize) -> Limits {
        Limits {
            capacity,
            max_bytes,
            max_value_bytes: 16 * 1024,
        }
    }

    fn value(bytes: &[u8], expires_at: u64, single_use: bool) -> Value {
        Value {
            bytes: SecretBytes::from(bytes.to_vec()),
            expires_at,
            single_use,
        }
    }

    fn key(n: u32) -> SessionKey {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_le_bytes());
        SessionKey::new(&id).unwrap()
    }

    /// The bytes a plain lookup returns.
    fn get(s: &MemoryStore, k: &SessionKey, now: u64) -> Option<Vec<u8>> {
        let found = s.get(k, now, &mut |_| false).unwrap()?;
        Some(found.bytes.expect("nothing is known").as_slice().to_vec())
    }

    #[test]
    fn put_get_remove() {
        let s = MemoryStore::new(limits(100, 1 << 20));
        s.put(&key(1), value(b"one", 100, false), 10).unwrap();
        assert_eq!(get(&s, &key(1), 10).unwrap(), b"one");
        assert_eq!(get(&s, &key(1), 10).unwrap(), b"one", "reusable");
        assert_eq!(s.occupancy(), (1, 3 + O as u64));
        assert!(s.remove(&key(1)).unwrap());
        assert!(!s.remove(&key(1)).unwrap());
        assert!(get(&s, &key(1), 10).is_none());
        assert_eq!(s.occupancy(), (0, 0));
    }

    #[test]
    fn single_use_is_consumed_once() {
        let s = MemoryStore::new(limits(100, 1 << 20));
        s.put(&key(1), value(b"t", 100, true), 10).unwrap();
        assert!(get(&s, &key(1), 10).is_some());
        assert!(get(&s, &key(1), 10).is_none());
    }

    #[test]
    fn take_consumes_reusable_entries() {
        let s = MemoryStore::new(limits(100, 1 << 20));
        s.put(&key(1), value(b"t", 100, false), 10).unwrap();
        assert!(s.take(&key(1), 10).unwrap().is_some());
        assert!(get(&s, &key(1), 10).is_none());
    }

    #[test]
    fn expired_entries_are_misses() {
        let s = MemoryStore::new(limits(100, 1 << 20));
        s.put(&key(1), value(b"t", 20, false), 10).unwrap();
        assert!(get(&s, &key(1), 19).is_some());
        assert!(get(&s, &key(1), 20).is_none());
        assert_eq!(s.counters().expirations.load(Ordering::Relaxed), 1);
        assert_eq!(
            s.put(&key(2), value(b"t", 5, false), 10),
            Err(StoreError::Expired)
        );
    }

    /// Expired entries go on later stores, two at a time, with no shortage of room.
    #[test]
    fn stores_drop_expired_entries() {
        let s = MemoryStore::new(limits(100, 1 << 20));
        assert_eq!(s.shard_count(), 1);
        for n in 0..5 {
            s.put(&key(n), value(b"old", 20, false), 10).unwrap();
        }
        s.put(&key(100), value(b"x", 1000, false), 19).unwrap();
        assert_eq!(s.occupancy().0, 6, "nothing has expired yet");
        s.put(&key(101), value(b"x", 1000, false), 20).unwrap();
        assert_eq!(s.occupancy().0, 5, "two expired entries dropped, one added");
        s.put(&key(102), value(b"x", 1000, false), 21).unwrap();
        s.put(&key(103), value(b"x", 1000, false), 21).unwrap();
        assert_eq!(s.occupancy(), (4, 4 * (1 + O as u64)));
        assert_eq!(s.counters().expirations.load(Ordering::Relaxed), 5);
        assert_eq!(s.counters().evictions.load(Ordering::Relaxed), 0);
        s.check();
    }

    #[test]
    fn too_large_is_refused() {
        let s = MemoryStore::new(Limits {
            capacity: 10,
            max_bytes: 1000,
            max_value_bytes: 8,
        });
        assert_eq!(
            s.put(&key(1), value(&[0; 9], 99, false), 1),
            Err(StoreError::TooLarge)
        );
        assert!(s.put(&key(1), value(&[0; 8], 99, false), 1).is_ok());
        // A value whose DER fits max_value_bytes but not a shard with its bookkeeping.
        let tiny = MemoryStore::new(Limits {
            capacity: 10,
            max_bytes: O + 4,
            max_value_bytes: 8,
        });
        assert!(tiny.put(&key(1), value(&[0; 4], 99, false), 1).is_ok());
        assert_eq!(
            tiny.put(&key(2), value(&[0; 5], 99, false), 1),
            Err(StoreError::TooLarge)
        );
    }

    #[test]
    fn capacity_evicts_expired_first() {
        let s = MemoryStore::new(limits(4, 1 << 20));
        assert_eq!(s.shard_count(), 1);
        for n in 0..4 {
            // Entry 2 expires at 15, the others much later.
            let exp = if n == 2 { 15 } else { 1000 };
            s.put(&key(n), value(b"x", exp, false), 10).unwrap();
        }
        s.put(&key(9), value(b"x", 1000, false), 16).unwrap();
        assert!(get(&s, &key(2), 16).is_none());
        for n in [0, 1, 3, 9] {
            assert!(get(&s, &key(n), 16).is_some(), "entry {n} kept");
        }
        assert_eq!(s.counters().expirations.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters().evictions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn clock_spares_recently_used_entries() {
        let s = MemoryStore::new(limits(4, 1 << 20));
        for n in 0..4 {
            s.put(&key(n), value(b"x", 1000, false), 10).unwrap();
        }
        // Entries 0 and 1 are used; the next two inserts must evict 2 and 3.
        get(&s, &key(0), 10);
        get(&s, &key(1), 10);
        s.put(&key(10), value(b"x", 1000, false), 10).unwrap();
        s.put(&key(11), value(b"x", 1000, false), 10).unwrap();
        assert!(get(&s, &key(0), 10).is_some());
        assert!(get(&s, &key(1), 10).is_some());
        assert!(get(&s, &key(2), 10).is_none());
        assert!(get(&s, &key(3), 10).is_none());
        assert_eq!(s.counters().evictions.load(Ordering::Relaxed), 2);
        assert_eq!(s.occupancy().0, 4);
    }

    #[test]
    fn byte_limit_evicts() {
        let s = MemoryStore::new(Limits {
            capacity: 100,
            max_bytes: 3 * (100 + O),
            max_value_bytes: 100,
        });
        for n in 0..10 {
            s.put(&key(n), value(&[1; 100], 1000, false), 10).unwrap();
            assert!(s.occupancy().1 as usize <= 3 * (100 + O));
        }
        assert_eq!(s.occupancy(), (3, 3 * (100 + O as u64)));
    }

    #[test]
    fn replacing_keeps_accounting() {
        let s = MemoryStore::new(limits(10, 1 << 20));
        s.put(&key(1), value(&[1; 10], 1000, false), 10).unwrap();
        s.put(&key(1), value(&[2; 20], 1000, false), 10).unwrap();
        assert_eq!(s.occupancy(), (1, 20 + O as u64));
        assert_eq!(get(&s, &key(1), 10).unwrap(), vec![2; 20]);
    }

    /// Every stored version gets a new stamp; a caller that knows the stamp gets no copy.
    #[test]
    fn stamps_name_stored_versions() {
        let s = MemoryStore::new(limits(10, 1 << 20));
        let first = s.put(&key(1), value(b"one", 100, false), 10).unwrap();
        let mut asked = Vec::new();
        let f = s
            .get(&key(1), 10, &mut |st| {
                asked.push(st);
                true
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.stamp, f.bytes.is_none(), f.consumed),
            (first, true, false)
        );
        assert_eq!(asked, vec![first]);
        let second = s.put(&key(1), value(b"two", 100, false), 10).unwrap();
        assert_ne!(first, second, "a replacement is another version");
        let f = s.get(&key(1), 10, &mut |st| st == first).unwrap().unwrap();
        assert_eq!(f.bytes.unwrap().as_slice(), b"two");
        // A known single-use entry is still consumed.
        let t = s.put(&key(2), value(b"t", 100, true), 10).unwrap();
        let f = s.get(&key(2), 10, &mut |st| st == t).unwrap().unwrap();
        assert!(f.consumed && f.bytes.is_none());
        assert!(get(&s, &key(2), 10).is_none());
        s.check();
    }

    #[test]
    fn many_threads() {
        let s = std::sync::Arc::new(MemoryStore::new(limits(100_000, 1 << 26)));
        let handles: Vec<_> = (0..8u32)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        let k = key(t * 100_000 + i);
                        s.put(&k, value(&i.to_le_bytes(), 1000, false), 10).unwrap();
                        assert_eq!(get(&s, &k, 10).unwrap(), i.to_le_bytes());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.occupancy().0, 16_000);
    }

    /// Operations for the model-based property tests: (op, key, value byte).
    fn ops() -> impl proptest::strategy::Strategy<Value = Vec<(u8, u32, u8)>> {
        proptest::collection::vec((0u8..5, 0u32..12, proptest::num::u8::ANY), 1..300)
    }

    proptest::proptest! {
        /// Without eviction pressure the store is exactly a map with single-use entries.
        #[test]
        fn behaves_like_a_map(ops in crate::store::testing::ops()) {
            let s = MemoryStore::new(limits(10_000, 1 << 20));
            crate::store::testing::behaves_like_a_charged_map(&s, &ops, O)?;
        }

        /// Under eviction pressure, with values of different sizes, the limits hold, every
        /// entry is charged what it holds, and a hit is always the last value stored under
        /// that key.
        #[test]
        fn bounded_and_never_stale(
            ops in ops(),
            capacity in 1usize..6,
            max_bytes in 300usize..6000,
        ) {
            let s = MemoryStore::new(Limits { capacity, max_bytes, max_value_bytes: 256 });
            let mut last: HashMap<u32, u8> = HashMap::new();
            for (step, (op, k, v)) in ops.into_iter().enumerate() {
                let now = 10 + step as u64 / 8;
                let expires = now + u64::from(v % 4);
                match op {
                    0 | 1 => {
                        let len = 1 + (usize::from(v) * 7 + usize::from(op) * 100) % 256;
                        match s.put(&key(k), value(&vec![v; len], expires, false), now) {
                            Ok(_) => { last.insert(k, v); }
                            // A refused put leaves the older entry as it was.
                            Err(StoreError::Expired) => {}
                            Err(StoreError::TooLarge) => {
                                proptest::prop_assert!(max_bytes < 256 + O);
                            }
                            Err(e) => proptest::prop_assert!(false, "{e}"),
                        }
                    }
                    2 | 3 => {
                        if let Some(got) = get(&s, &key(k), now) {
                            proptest::prop_assert_eq!(Some(&got[0]), last.get(&k));
                        }
                    }
                    _ => { s.remove(&key(k)).unwrap(); last.remove(&k); }
                }
                let (entries, bytes) = s.occupancy();
                proptest::prop_assert!(entries as usize <= capacity);
                proptest::prop_assert!(bytes as usize <= max_bytes);
            }
            s.check();
        }
    }
}
