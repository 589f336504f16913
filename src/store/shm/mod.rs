//! `shm:NAME` — one session cache shared by every process of a machine that opens NAME (and
//! by processes forked after opening it), in POSIX shared memory.
//!
//! See [`segment`] for the layout, how a segment is created race-free and who may open it,
//! [`shard`] for the entries, the index, eviction, verification and repair, [`lock`]
//! for the shard lock that neither a crash nor a stray write can wedge, and [`tickets`] for
//! the ticket-key records (`tickets=shared`), kept in the segment's header page. Every
//! session operation locks exactly one shard; there is no global lock (the ticket-key
//! table has a lock of its own, taken only off the handshake path). The counters live in
//! the segment, so statistics from any process describe the whole cache.

#[cfg(test)]
mod hostile;
pub mod lock;
pub mod segment;
pub mod shard;
pub mod tickets;

use super::{Counters, Entry, Found, SessionKey, Stamp, Store, StoreError};
use crate::error::{Error, ErrorKind};
use crate::secret::SecretBytes;
use lock::Timing;
use segment::{
    Header, Layout, Segment, HEADER_BYTES, LAYOUT_VERSION, MAGIC, MAX_SHARDS, SHARD_HEADER_BYTES,
};
use shard::{entry_len, Events, Shard, ShardHeader, ENTRY_HEADER};
use std::hash::Hasher;

/// The segment size when the URL gives none and the segment is new.
pub(crate) const DEFAULT_SIZE: usize = 32 << 20;

pub struct ShmStore {
    segment: Segment,
    shards: Vec<Shard>,
    k0: u64,
    k1: u64,
    epoch: u64,
    max_value_bytes: usize,
    timing: Timing,
    pending: Pending,
    /// This process's view of the ticket-key table's lock (see [`tickets`]).
    tickets: tickets::Tickets,
}

/// Whether an operation changes what a key maps to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Change,
}

/// Removals this process owes the segment: keys it was asked to remove or replace while their
/// shard's lock could not be had. They are carried out, under that lock, before the next
/// operation this process does on the shard. Bounded: past [`Pending::MAX`] keys the oldest
/// debts are dropped (and counted as errors by the failed operations already).
#[derive(Default)]
struct Pending {
    any: std::sync::atomic::AtomicBool,
    keys: std::sync::Mutex<std::collections::VecDeque<(usize, SessionKey)>>,
}

impl Pending {
    const MAX: usize = 4096;

    fn add(&self, shard: usize, key: &SessionKey) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= Self::MAX {
            keys.pop_front();
        }
        keys.push_back((shard, *key));
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Hands every pending key of `shard` to `remove` and forgets it. One atomic load when
    /// nothing is pending (the usual case).
    fn apply(&self, shard: usize, mut remove: impl FnMut(&SessionKey)) {
        if !self.any.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.retain(|(s, k)| {
            if *s == shard {
                remove(k);
            }
            *s != shard
        });
        if keys.is_empty() {
            self.any.store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

impl ShmStore {
    /// Opens (or creates) the segment NAME. `size`: the whole segment, required to match an
    /// existing one when given. `mode`: 0o600 (this user only) or 0o660 (shared with a
    /// group). `max_value_bytes`: the largest session this process stores.
    pub fn open(
        name: &str,
        size: Option<usize>,
        mode: u32,
        max_value_bytes: usize,
    ) -> Result<ShmStore, Error> {
        let max_entry = entry_len(super::MAX_KEY_LEN, max_value_bytes);
        let init = |seg: &Segment| {
            let layout = Layout::for_size(seg.size, max_entry);
            // SAFETY: we created the mapping; nobody can open it before it is named. The
            // shards and the ticket-key table need nothing else: zero is an unlocked, empty
            // shard and an unlocked, empty table.
            unsafe {
                let h = seg.base.cast::<Header>();
                (*h).magic = MAGIC;
                (*h).version = LAYOUT_VERSION;
                (*h).size = seg.size as u64;
                (*h).epoch = crate::clock::now().saturating_sub(1);
                (*h).hash_k0 = segment::random_u64();
                (*h).hash_k1 = segment::random_u64();
                (*h).n_shards = layout.n_shards as u32;
                (*h).index_cap = layout.index_cap as u32;
                (*h).ring_cap = layout.ring_cap as u32;
                (*h).shard_bytes = layout.shard_bytes as u32;
            }
            Ok(())
        };
        let segment = Segment::open(name, size, DEFAULT_SIZE, mode, init)?;
        let store = ShmStore::on(name, segment, max_value_bytes)?;
        // Sessions that expired while nobody had the segment open are wiped now.
        store.sweep_all();
        Ok(store)
    }

    /// Opens the existing segment NAME, never creating one: a missing segment is
    /// `Unavailable` ("no such segment"); every check [`ShmStore::open`] makes on an
    /// existing segment is made (owner and `mode`, layout version, `size` when given, a
    /// consistent layout). Nothing is swept at open: a tool looking at the cache changes
    /// nothing by opening it.
    pub fn open_existing(
        name: &str,
        size: Option<usize>,
        mode: u32,
        max_value_bytes: usize,
    ) -> Result<ShmStore, Error> {
        let segment = Segment::open_existing(name, size, mode)?;
        ShmStore::on(name, segment, max_value_bytes)
    }

    /// The store on a mapped segment, once its layout is checked.
    fn on(name: &str, segment: Segment, max_value_bytes: usize) -> Result<ShmStore, Error> {
        let h = segment.header();
        let layout = Layout {
            n_shards: h.n_shards as usize,
            shard_bytes: h.shard_bytes as usize,
            index_cap: h.index_cap as usize,
            ring_cap: h.ring_cap as usize,
        };
        if !(1..=MAX_SHARDS).contains(&layout.n_shards)
            || layout.index_cap < 8
            || layout.ring_cap < 4 * (ENTRY_HEADER + super::MAX_KEY_LEN + 64)
            || layout.ring_cap % segment::ENTRY_ALIGN != 0
            || layout.shard_bytes % 8 != 0
            || HEADER_BYTES + layout.n_shards * layout.shard_bytes > segment.size
            || SHARD_HEADER_BYTES + layout.index_cap * 8 + layout.ring_cap > layout.shard_bytes
        {
            return Err(Error::new(
                ErrorKind::Incompatible,
                format!(
                    "shared memory {} has an inconsistent layout: remove it",
                    Segment::path(name)
                ),
            ));
        }
        let shards = shards_of(&segment, &layout);
        let (k0, k1, epoch) = (h.hash_k0, h.hash_k1, h.epoch);
        let max_value_bytes =
            max_value_bytes.min(layout.ring_cap / 2 - ENTRY_HEADER - super::MAX_KEY_LEN);
        let store = ShmStore {
            segment,
            shards,
            k0,
            k1,
            epoch,
            max_value_bytes,
            timing: Timing::default(),
            pending: Pending::default(),
            tickets: tickets::Tickets::default(),
        };
        Ok(store)
    }

    /// Removes every entry of every shard, each under its shard's lock, wiping the bytes:
    /// the number of entries removed (counted in `removes`). `Timeout` if a shard's lock
    /// could not be had (the other shards are emptied all the same).
    pub fn flush(&self) -> Result<u64, StoreError> {
        let now = self.rel(crate::clock::now());
        let mut removed = 0;
        let mut stuck = false;
        for s in &self.shards {
            let mut ev = Events::default();
            match s.lock(now, &self.timing, &mut ev) {
                Some(mut l) => {
                    let n = l.clear();
                    if l.release() {
                        removed += n;
                    } else {
                        ev.errors += 1;
                        stuck = true;
                    }
                }
                None => {
                    ev.errors += 1;
                    stuck = true;
                }
            }
            ev.add_to(self.counters());
        }
        self.counters()
            .removes
            .fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
        if stuck {
            Err(StoreError::Timeout)
        } else {
            Ok(removed)
        }
    }

    /// Wipes every expired entry of every shard.
    pub fn sweep_all(&self) {
        let now = self.rel(crate::clock::now());
        for s in &self.shards {
            let mut ev = Events::default();
            if let Some(mut l) = s.lock(now, &self.timing, &mut ev) {
                l.sweep(now, usize::MAX, &mut ev);
            }
            ev.add_to(self.counters());
        }
    }

    /// Sets the lock's bounds (tests use short ones).
    pub fn set_timing(&mut self, timing: Timing) {
        self.timing = timing;
    }

    fn lookup(
        &self,
        key: &SessionKey,
        now: u64,
        take: bool,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError> {
        self.with_shard(key, now, Op::Read, |s, tag, now, ev| {
            s.get(tag, key.as_bytes(), now, take, known, ev)
        })?
    }

    /// (shard, tag) for a key.
    fn place(&self, key: &SessionKey) -> (usize, u32) {
        #[allow(deprecated)] // SipHash-2-4 with our keys: stable across processes and builds
        let mut h = std::hash::SipHasher::new_with_keys(self.k0, self.k1);
        h.write(key.as_bytes());
        let v = h.finish();
        let shard = (((v >> 32) * self.shards.len() as u64) >> 32) as usize;
        (shard, v as u32)
    }

    fn rel(&self, t: u64) -> u32 {
        t.saturating_sub(self.epoch).min(u64::from(u32::MAX)) as u32
    }

    /// Runs `f` on the key's shard, locked. `Timeout` if the lock could not be had in time, or
    /// was taken over from this thread while `f` ran (then `f` wrote nothing after that, and
    /// its outcome is not used): then a `Change` is remembered as a pending removal of the key
    /// (see [`Pending`]), so that an older entry under it cannot outlive a removal or a
    /// replacement that was asked for.
    fn with_shard<T>(
        &self,
        key: &SessionKey,
        now: u64,
        kind: Op,
        f: impl FnOnce(&mut shard::Locked<'_>, u32, u32, &mut Events) -> T,
    ) -> Result<T, StoreError> {
        let (index, tag) = self.place(key);
        let now = self.rel(now);
        let mut ev = Events::default();
        let out = self.shards[index]
            .lock(now, &self.timing, &mut ev)
            .and_then(|mut l| {
                #[cfg(test)]
                hostile::hook::in_critical_section();
                self.pending.apply(index, |k| {
                    let (_, t) = self.place(k);
                    l.remove(t, k.as_bytes());
                });
                let out = f(&mut l, tag, now, &mut ev);
                l.release().then_some(out)
            });
        if out.is_none() {
            ev.errors += 1;
            if kind == Op::Change {
                self.pending.add(index, key);
            }
        }
        ev.add_to(self.counters());
        out.ok_or(StoreError::Timeout)
    }

    /// How many shards the segment has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The segment's ticket-key table, with this store's lock bounds and counters.
    fn ticket_table(&self) -> tickets::Table<'_> {
        tickets::Table {
            seg: &self.segment,
            timing: &self.timing,
            counters: self.counters(),
            tickets: &self.tickets,
        }
    }
}

/// Writes into the ticket-key table for the hostile tests and the fuzz targets only (the
/// `fuzzing` feature, never in what `make` builds).
#[cfg(any(test, feature = "fuzzing"))]
impl ShmStore {
    /// Copies `bytes` over the ticket-key table's slots (not its lock word) from `offset`
    /// (taken modulo the slots' length), cut at their end. Only while no other process or
    /// thread uses the segment.
    #[doc(hidden)]
    pub fn fuzz_overwrite_tickets(&self, offset: usize, bytes: &[u8]) {
        tickets::overwrite_slots(&self.segment, offset, bytes);
    }

    /// The offset of slot `i`'s length field among the slots, for
    /// [`ShmStore::fuzz_overwrite_tickets`].
    #[doc(hidden)]
    pub fn fuzz_ticket_len_offset(i: usize) -> usize {
        tickets::len_offset(i)
    }
}

/// Entry points for the fuzz targets only (`fuzz/fuzz_targets/shm_shard.rs`; the `fuzzing`
/// feature, never in what `make` builds): they let arbitrary bytes reach the shard reader
/// the way a crashed or hostile process would leave them, without making the lock's slow
/// paths (tested in `hostile.rs`) the cost of every fuzz iteration.
#[cfg(feature = "fuzzing")]
impl ShmStore {
    /// Empties every shard by zeroing it (an all-zero shard is an unlocked, empty one).
    /// Only while no other process or thread uses the segment.
    #[doc(hidden)]
    pub fn fuzz_clear(&self) {
        for s in &self.shards {
            let len = SHARD_HEADER_BYTES + s.index_cap * 8 + s.ring_cap;
            // SAFETY: the shard's header, index and ring are `len` contiguous bytes inside
            // the mapping (checked by `on`); nobody else uses the segment meanwhile.
            unsafe { std::ptr::write_bytes(s.hdr.cast::<u8>(), 0, len) };
        }
    }

    /// Copies `bytes` over part of shard 0: `region` 0 is its header (after the 8-byte
    /// lock word, which this leaves alone), 1 its index, 2 its ring (and any other value
    /// the whole shard after the lock word), from `offset` (taken modulo the region's
    /// length), cut at the region's end. Only while no other process or thread uses the
    /// segment.
    #[doc(hidden)]
    pub fn fuzz_overwrite(&self, region: u8, offset: usize, bytes: &[u8]) {
        let s = &self.shards[0];
        let lock = std::mem::size_of::<std::sync::atomic::AtomicU64>();
        let (start, len) = match region {
            0 => (lock, SHARD_HEADER_BYTES - lock),
            1 => (SHARD_HEADER_BYTES, s.index_cap * 8),
            2 => (SHARD_HEADER_BYTES + s.index_cap * 8, s.ring_cap),
            _ => (
                lock,
                SHARD_HEADER_BYTES + s.index_cap * 8 + s.ring_cap - lock,
            ),
        };
        let at = offset % len;
        let n = bytes.len().min(len - at);
        // SAFETY: [start + at, start + at + n) lies inside the shard (start + len is at most
        // its end, checked by `on`), and past the lock word; `bytes` is another allocation;
        // nobody else uses the segment meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.hdr.cast::<u8>().add(start + at), n)
        };
    }
}

/// Pointers to the shards of a segment whose layout has been checked against its size.
fn shards_of(segment: &Segment, layout: &Layout) -> Vec<Shard> {
    (0..layout.n_shards)
        .map(|i| {
            // SAFETY: HEADER_BYTES + n_shards * shard_bytes <= size, and each shard's header,
            // index and ring fit in shard_bytes (checked by the caller or made by Layout).
            unsafe {
                let base = segment.base.add(HEADER_BYTES + i * layout.shard_bytes);
                Shard {
                    hdr: base.cast::<ShardHeader>(),
                    index: base.add(SHARD_HEADER_BYTES).cast::<u64>(),
                    ring: base.add(SHARD_HEADER_BYTES + layout.index_cap * 8),
                    index_cap: layout.index_cap,
                    ring_cap: layout.ring_cap,
                    stuck: Default::default(),
                }
            }
        })
        .collect()
}

impl Store for ShmStore {
    fn put(&self, key: &SessionKey, entry: Entry, now: u64) -> Result<Stamp, StoreError> {
        if entry.bytes.len() > self.max_value_bytes {
            return Err(StoreError::TooLarge);
        }
        if entry.expires_at <= now {
            return Err(StoreError::Expired);
        }
        let expires = self.rel(entry.expires_at);
        let stamp = self.with_shard(key, now, Op::Change, |s, tag, now, ev| {
            let e = shard::NewEntry {
                tag,
                key: key.as_bytes(),
                der: entry.bytes.as_slice(),
                expires,
                single_use: entry.single_use,
            };
            s.put(e, now, ev)
        })??;
        Counters::bump(&self.counters().stores);
        Ok(stamp)
    }

    fn get(
        &self,
        key: &SessionKey,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError> {
        self.lookup(key, now, false, known)
    }

    fn take(&self, key: &SessionKey, now: u64) -> Result<Option<SecretBytes>, StoreError> {
        Ok(self
            .lookup(key, now, true, &mut |_| false)?
            .and_then(|f| f.bytes))
    }

    fn remove(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let removed = self.with_shard(key, crate::clock::now(), Op::Change, |s, tag, _, _| {
            s.remove(tag, key.as_bytes())
        })?;
        if removed {
            Counters::bump(&self.counters().removes);
        }
        Ok(removed)
    }

    fn counters(&self) -> &Counters {
        &self.segment.header().counters
    }

    fn flush(&self) -> Result<u64, StoreError> {
        ShmStore::flush(self)
    }

    fn occupancy(&self) -> (u64, u64) {
        let now = self.rel(crate::clock::now());
        let mut total = (0, 0);
        for s in &self.shards {
            // The lock's own repairs and the expired entries it wipes count as in any
            // operation; a lock it cannot have is an error, and that shard is left out.
            let mut ev = Events::default();
            match s.lock(now, &self.timing, &mut ev) {
                Some(mut l) => {
                    let (e, b) = l.occupancy();
                    total = (total.0 + e, total.1 + b);
                }
                None => ev.errors += 1,
            }
            ev.add_to(self.counters());
        }
        total
    }

    fn ticket_records(&self) -> Result<Vec<crate::store::TicketRecord>, StoreError> {
        self.ticket_table().records()
    }

    fn add_ticket_record(
        &self,
        seq: u64,
        bytes: &[u8],
        keep_until: u64,
    ) -> Result<bool, StoreError> {
        self.ticket_table()
            .add(seq, bytes, keep_until, crate::clock::now())
    }

    fn drop_ticket_records(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.ticket_table().drop_records(seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;
    use crate::store::{Entry, StoreError};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A segment name unique to this test run, removed when dropped.
    pub(super) struct Name(pub String);
    impl Name {
        pub(super) fn new() -> Name {
            static N: AtomicU32 = AtomicU32::new(0);
            Name(format!(
                "test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ))
        }
    }
    impl Drop for Name {
        fn drop(&mut self) {
            segment::unlink(&self.0);
        }
    }

    const NOW: u64 = 1_000_000;

    fn value(der: &[u8], ttl: u64, single_use: bool) -> Entry {
        Entry {
            bytes: SecretBytes::from(der.to_vec()),
            expires_at: crate::clock::now() + ttl,
            single_use,
        }
    }

    use crate::store::testing::{get, key};

    fn now() -> u64 {
        crate::clock::now()
    }

    #[test]
    fn put_get_take_remove() {
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(1 << 20), 0o600, 16 << 10).unwrap();
        s.put(&key(1), value(b"one", 100, false), now()).unwrap();
        assert_eq!(get(&s, &key(1), now()).unwrap(), b"one");
        assert_eq!(get(&s, &key(1), now()).unwrap(), b"one");
        assert!(s.remove(&key(1)).unwrap());
        assert!(get(&s, &key(1), now()).is_none());
        s.put(&key(2), value(b"two", 100, true), now()).unwrap();
        assert!(get(&s, &key(2), now()).is_some());
        assert!(get(&s, &key(2), now()).is_none(), "single use");
        s.put(&key(3), value(b"three", 100, false), now()).unwrap();
        assert!(s.take(&key(3), now()).unwrap().is_some());
        assert!(get(&s, &key(3), now()).is_none());
        assert_eq!(s.occupancy(), (0, 0));
        assert!(get(&s, &key(4), NOW + 10 * 365 * 86400).is_none());
    }

    #[test]
    fn open_existing_never_creates() {
        let n = Name::new();
        let path = Segment::path(&n.0);
        let err = ShmStore::open_existing(&n.0, None, 0o600, 1024)
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(err.message.contains("no such segment"), "{err}");
        assert!(!std::path::Path::new(&path).exists(), "{path} was created");
        let a = ShmStore::open(&n.0, Some(256 << 10), 0o600, 1024).unwrap();
        a.put(&key(1), value(b"one", 100, false), now()).unwrap();
        let b = ShmStore::open_existing(&n.0, None, 0o600, 1024).unwrap();
        assert_eq!(get(&b, &key(1), now()).unwrap(), b"one");
        assert_eq!(b.occupancy(), (1, 3));
        // The same checks as open: another size, damage.
        let err = ShmStore::open_existing(&n.0, Some(512 << 10), 0o600, 1024)
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Incompatible);
        // SAFETY: test-only write to the magic number in our own mapping.
        unsafe { *a.segment.base ^= 0xff };
        let err = ShmStore::open_existing(&n.0, None, 0o600, 1024)
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Incompatible);
        assert!(err.message.contains("not a sesscache segment"), "{err}");
    }

    #[test]
    fn flush_empties_and_wipes() {
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(1 << 20), 0o600, 16 << 10).unwrap();
        assert!(s.shard_count() > 1);
        let secret = [0x5cu8; 100];
        for i in 0..50 {
            s.put(&key(i), value(&secret, 100, false), now()).unwrap();
        }
        assert_eq!(s.occupancy().0, 50);
        let other = ShmStore::open_existing(&n.0, None, 0o600, 16 << 10).unwrap();
        assert_eq!(other.flush(), Ok(50));
        assert_eq!(s.occupancy(), (0, 0));
        assert_eq!(s.counters().removes.load(Ordering::Relaxed), 50);
        for i in 0..50 {
            assert!(get(&s, &key(i), now()).is_none());
        }
        let bytes = std::fs::read(Segment::path(&n.0)).unwrap();
        assert!(
            !bytes.windows(16).any(|w| w == [0x5cu8; 16]),
            "flushed bytes are still in the segment"
        );
        // Still usable.
        s.put(&key(1), value(b"again", 100, false), now()).unwrap();
        assert_eq!(get(&other, &key(1), now()).unwrap(), b"again");
        assert_eq!(other.flush(), Ok(1));
    }

    #[test]
    fn expired_entries_are_misses() {
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(1 << 20), 0o600, 16 << 10).unwrap();
        s.put(&key(1), value(b"x", 5, false), now()).unwrap();
        assert!(get(&s, &key(1), now() + 10).is_none());
        assert_eq!(s.counters().expirations.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn two_openers_share_one_cache() {
        let n = Name::new();
        let a = ShmStore::open(&n.0, Some(256 << 10), 0o600, 16 << 10).unwrap();
        let b = ShmStore::open(&n.0, None, 0o600, 16 << 10).unwrap();
        a.put(&key(7), value(b"shared", 100, false), now()).unwrap();
        assert_eq!(get(&b, &key(7), now()).unwrap(), b"shared");
        assert_eq!(a.counters().stores.load(Ordering::Relaxed), 1);
        assert_eq!(
            b.counters().stores.load(Ordering::Relaxed),
            1,
            "counters live in the segment"
        );
        let err = ShmStore::open(&n.0, Some(512 << 10), 0o600, 16 << 10)
            .err()
            .unwrap();
        assert_eq!(err.kind, crate::error::ErrorKind::Incompatible);
        assert!(err.message.contains("size"), "{err}");
    }

    #[test]
    fn another_layout_version_is_refused() {
        let n = Name::new();
        let a = ShmStore::open(&n.0, Some(256 << 10), 0o600, 16 << 10).unwrap();
        // SAFETY: test-only write to our own mapping's header.
        unsafe { (*(a.segment.base as *mut Header)).version = LAYOUT_VERSION + 1 };
        let err = ShmStore::open(&n.0, None, 0o600, 16 << 10).err().unwrap();
        assert_eq!(err.kind, crate::error::ErrorKind::Incompatible);
        assert!(err.message.contains("layout version"), "{err}");
    }

    #[test]
    fn one_mib_holds_at_least_5000_typical_sessions() {
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(1 << 20), 0o600, 16 << 10).unwrap();
        let der = [0x30u8; 140];
        for i in 0..20_000 {
            s.put(&key(i), value(&der, 1000, false), now()).unwrap();
        }
        let (entries, bytes) = s.occupancy();
        eprintln!("1 MiB segment holds {entries} sessions of 140 bytes");
        assert!(entries >= 5000, "held {entries}");
        assert_eq!(bytes, entries * 140);
        // The most recent ones are there.
        assert!(get(&s, &key(19_999), now()).is_some());
        assert_eq!(
            s.counters().evictions.load(Ordering::Relaxed),
            20_000 - entries
        );
    }

    #[test]
    fn sessions_of_every_size_share_the_segment() {
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(1 << 20), 0o600, 16 << 10).unwrap();
        for (i, len) in [100usize, 16 << 10, 140, 5000, 131, 16 << 10]
            .iter()
            .enumerate()
        {
            s.put(
                &key(i as u32),
                value(&vec![i as u8; *len], 1000, false),
                now(),
            )
            .unwrap();
        }
        for (i, len) in [100usize, 16 << 10, 140, 5000, 131, 16 << 10]
            .iter()
            .enumerate()
        {
            assert_eq!(get(&s, &key(i as u32), now()).unwrap(), vec![i as u8; *len]);
        }
        assert_eq!(
            s.put(
                &key(99),
                value(&vec![0; (16 << 10) + 1], 1000, false),
                now()
            ),
            Err(StoreError::TooLarge)
        );
    }

    #[test]
    fn recently_used_entries_get_a_second_chance() {
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
        assert_eq!(s.shard_count(), 1);
        let der = [1u8; 140];
        for i in 0..100 {
            s.put(&key(i), value(&der, 1000, false), now()).unwrap();
        }
        assert!(get(&s, &key(0), now()).is_some()); // used: survives the next turn
        for i in 100..400 {
            s.put(&key(i), value(&der, 1000, false), now()).unwrap();
            if i % 50 == 0 {
                assert!(get(&s, &key(0), now()).is_some(), "kept at {i}");
            }
        }
        assert!(
            get(&s, &key(1), now()).is_none(),
            "unused old entry evicted"
        );
    }

    #[test]
    fn a_corrupt_entry_is_a_miss_and_an_error() {
        crate::log::silence();
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
        s.put(&key(1), value(&[7u8; 100], 1000, false), now())
            .unwrap();
        // Flip a byte of the stored DER (the first entry sits at ring offset 0).
        let shard = &s.shards[0];
        // SAFETY: test-only write inside the ring of our own mapping.
        unsafe { *shard.ring.add(ENTRY_HEADER + 32 + 10) ^= 0xff };
        assert!(get(&s, &key(1), now()).is_none());
        assert_eq!(s.counters().errors.load(Ordering::Relaxed), 1);
        assert_eq!(s.occupancy(), (0, 0));
        s.put(&key(2), value(b"fine", 1000, false), now()).unwrap();
        assert!(get(&s, &key(2), now()).is_some());
    }

    #[test]
    fn a_process_dying_with_the_lock_held_does_not_wedge_the_cache() {
        crate::log::silence();
        let n = Name::new();
        let s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
        s.put(&key(1), value(b"kept", 1000, false), now()).unwrap();
        // SAFETY: fork in a test; the child only locks the shard and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut ev = Events::default();
            std::mem::forget(s.shards[0].lock(0, &Timing::default(), &mut ev));
            // SAFETY: child: die holding the lock.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        // The next locker finds the owner gone, rebuilds, and goes on.
        assert_eq!(get(&s, &key(1), now()).unwrap(), b"kept");
        s.put(&key(2), value(b"new", 1000, false), now()).unwrap();
        assert_eq!(s.occupancy().0, 2);
    }

    #[test]
    fn many_threads() {
        let n = Name::new();
        let s = std::sync::Arc::new(ShmStore::open(&n.0, Some(8 << 20), 0o600, 16 << 10).unwrap());
        let handles: Vec<_> = (0..8u32)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        let k = key(t * 100_000 + i);
                        s.put(&k, value(&i.to_le_bytes(), 1000, false), now())
                            .unwrap();
                        if let Some(d) = get(&*s, &k, now()) {
                            assert_eq!(d, i.to_le_bytes());
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.counters().stores.load(Ordering::Relaxed), 16_000);
    }

    proptest::proptest! {
        /// Without eviction pressure the segment is exactly a map with single-use entries.
        #[test]
        fn behaves_like_a_map(ops in crate::store::testing::ops()) {
            let n = Name::new();
            let s = ShmStore::open(&n.0, Some(256 << 10), 0o600, 1024).unwrap();
            crate::store::testing::behaves_like_a_map(&s, &ops)?;
        }

        /// Under pressure: a hit is always the last value stored under its key.
        #[test]
        fn never_stale_under_pressure(ops in proptest::collection::vec((0u8..3, 0u32..300, proptest::num::u8::ANY), 1..600)) {
            let n = Name::new();
            let s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
            let mut last: HashMap<u32, Vec<u8>> = HashMap::new();
            for (op, k, v) in ops {
                let t = now();
                match op {
                    0 | 1 => {
                        let d = vec![v; 1 + (v as usize * 7) % 1000];
                        s.put(&key(k), value(&d, 100, false), t).unwrap();
                        last.insert(k, d);
                    }
                    _ => {
                        if let Some(got) = get(&s, &key(k), t) {
                            proptest::prop_assert_eq!(Some(&got), last.get(&k));
                        }
                    }
                }
            }
            proptest::prop_assert_eq!(s.counters().errors.load(Ordering::Relaxed), 0);
        }
    }
}
