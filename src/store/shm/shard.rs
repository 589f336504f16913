//! One shard of the shared segment: a process-shared robust mutex, an open-addressing index
//! and a ring of variable-size entries.
//!
//! Ring: entries are appended at `head` and reclaimed at `tail` (both byte counters that
//! only grow; the position is the counter modulo `ring_cap`). An entry never wraps: when it
//! does not fit before the end, a PAD byte sends the reader back to 0. Sessions of any size
//! up to half a shard share the ring: no size classes, no fragmentation that outlives one
//! turn of the ring.
//!
//! Entry (4-byte aligned):
//! ```text
//! 0 state u8 (LIVE/DEAD/PAD)  1 key_len u8  2 flags u8  3 reserved
//! 4 der_len u32  8 expires u32 (seconds after the segment's epoch)  12 tag u32 (ID hash)
//! 16 checksum u32 (over everything but state and flags)  20 key  20+key_len der
//! ```
//!
//! Index: linear probing over `u64` slots, `(tag << 32) | (offset + 1)`, 0 = empty, with
//! backward-shift deletion (no tombstones).
//!
//! Eviction when the ring or the index is full works at the tail: dead entries are skipped,
//! expired ones dropped; a live entry that was hit since it was written gets a second chance
//! (moved to the head with its flag cleared), others are evicted — CLOCK on a ring. Because
//! entries are written in time order and most share one lifetime, the tail is also where
//! entries expire first.
//!
//! Crash safety: a writer writes an entry completely, then advances `head`, then indexes it;
//! removal marks the entry DEAD before wiping it. A process that dies holding the mutex
//! leaves it EOWNERDEAD: the next locker rebuilds the index from the ring, checking every
//! live entry's checksum (a torn entry is dropped), then marks the mutex consistent.

use crate::log::Level;
use crate::store::{Counters, SecretBytes};
use std::cell::RefCell;

pub const ENTRY_HEADER: usize = 20;
const LIVE: u8 = 0xA5;
const DEAD: u8 = 0x5A;
const PAD: u8 = 0xF0;
const FLAG_SINGLE_USE: u8 = 1;
const FLAG_REFERENCED: u8 = 2;
/// Second chances given while making room for one entry, at most.
const MAX_MOVES: usize = 16;

#[repr(C)]
pub struct ShardHeader {
    pub mutex: libc::pthread_mutex_t,
    pub head: u64,
    pub tail: u64,
    pub live: u32,
    pub index_used: u32,
    pub live_bytes: u64,
}

const _: () = assert!(std::mem::size_of::<ShardHeader>() <= super::segment::SHARD_HEADER_BYTES);

/// The size of an entry in the ring.
pub fn entry_len(key_len: usize, der_len: usize) -> usize {
    (ENTRY_HEADER + key_len + der_len + 3) & !3
}

/// Pointers into one shard of the mapping.
pub struct Shard {
    pub hdr: *mut ShardHeader,
    pub index: *mut u64,
    pub ring: *mut u8,
    pub index_cap: usize,
    pub ring_cap: usize,
}

// SAFETY: the pointers lead into a shared mapping that outlives the Shard (the ShmStore owns
// both); the memory behind them is only touched while holding the shard's process-shared
// mutex, which serialises threads as well as processes.
unsafe impl Send for Shard {}
// SAFETY: as above.
unsafe impl Sync for Shard {}

/// What a lookup found.
pub enum Found<T> {
    /// The caller's front already held an object decoded from this entry.
    Front(T),
    /// The entry's DER; `consumed` if the lookup removed it.
    Der {
        der: SecretBytes,
        stamp: u64,
        consumed: bool,
    },
}

/// What a caller learns from one locked operation, for the shared counters.
#[derive(Default)]
pub struct Events {
    pub evictions: u64,
    pub expirations: u64,
    pub errors: u64,
}

impl Events {
    pub fn add_to(&self, c: &Counters) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.evictions > 0 {
            c.evictions.fetch_add(self.evictions, Relaxed);
        }
        if self.expirations > 0 {
            c.expirations.fetch_add(self.expirations, Relaxed);
        }
        if self.errors > 0 {
            c.errors.fetch_add(self.errors, Relaxed);
        }
    }
}

thread_local! {
    /// Scratch space for moving an entry to the head.
    static MOVE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn checksum(key: &[u8], der: &[u8], der_len: u32, expires: u32, tag: u32, single_use: bool) -> u32 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15
        ^ (u64::from(der_len) << 32 | u64::from(expires))
        ^ (u64::from(tag) << 8 | (key.len() as u64) << 1 | u64::from(single_use));
    let mut mix = |w: u64| h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29);
    for part in [key, der] {
        let mut chunks = part.chunks_exact(8);
        for c in &mut chunks {
            mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        mix(u64::from_le_bytes(last) ^ (rest.len() as u64) << 59);
    }
    (h ^ (h >> 32)) as u32
}

impl Shard {
    /// Initialises a zero-filled shard in a new segment.
    ///
    /// # Safety
    /// The shard's memory is mapped, writable and not yet used by anyone.
    pub unsafe fn init(&self) -> Result<(), String> {
        // SAFETY: hdr points at this shard's header in the new mapping; attr is local.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            let ok = libc::pthread_mutexattr_init(&mut attr) == 0
                && libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED) == 0
                && libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST) == 0
                && libc::pthread_mutex_init(&mut (*self.hdr).mutex, &attr) == 0;
            libc::pthread_mutexattr_destroy(&mut attr);
            if !ok {
                return Err("cannot make a process-shared robust mutex".into());
            }
            (*self.hdr).head = 0;
            (*self.hdr).tail = 0;
        }
        Ok(())
    }

    /// Locks the shard, repairing it if the last owner died holding the lock. None if the
    /// mutex is unusable (counted by the caller as an error).
    pub fn lock(&self, now: u32, ev: &mut Events) -> Option<Locked<'_>> {
        // SAFETY: the mutex was initialised process-shared and robust by the creator.
        let r = unsafe { libc::pthread_mutex_lock(&mut (*self.hdr).mutex) };
        let mut locked = Locked { s: self };
        match r {
            0 => Some(locked),
            libc::EOWNERDEAD => {
                let (kept, dropped) = locked.rebuild(now);
                ev.errors += dropped;
                crate::log!(
                    Level::Warn,
                    "shm: a process died holding a shard lock; shard rebuilt ({kept} sessions kept, {dropped} dropped)"
                );
                // SAFETY: we hold the lock in the EOWNERDEAD state.
                unsafe { libc::pthread_mutex_consistent(&mut (*self.hdr).mutex) };
                Some(locked)
            }
            e => {
                std::mem::forget(locked);
                crate::log!(Level::Error, "shm: cannot lock a shard (error {e})");
                None
            }
        }
    }
}

/// A locked shard; unlocks when dropped.
pub struct Locked<'a> {
    s: &'a Shard,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: we hold the lock.
        unsafe { libc::pthread_mutex_unlock(&mut (*self.s.hdr).mutex) };
    }
}

impl Locked<'_> {
    // ---- raw access (everything below runs under the lock) ------------------------------
    fn hdr(&mut self) -> &mut ShardHeader {
        // SAFETY: the header is ours while we hold the lock.
        unsafe { &mut *self.s.hdr }
    }
    fn slot(&self, i: usize) -> u64 {
        debug_assert!(i < self.s.index_cap);
        // SAFETY: i < index_cap, inside this shard's index.
        unsafe { *self.s.index.add(i) }
    }
    fn set_slot(&mut self, i: usize, v: u64) {
        debug_assert!(i < self.s.index_cap);
        // SAFETY: as above.
        unsafe { *self.s.index.add(i) = v }
    }
    fn ring(&self, pos: usize, len: usize) -> &[u8] {
        assert!(pos + len <= self.s.ring_cap);
        // SAFETY: the range is inside the ring (checked).
        unsafe { std::slice::from_raw_parts(self.s.ring.add(pos), len) }
    }
    fn ring_mut(&mut self, pos: usize, len: usize) -> &mut [u8] {
        assert!(pos + len <= self.s.ring_cap);
        // SAFETY: as above; exclusive under the lock.
        unsafe { std::slice::from_raw_parts_mut(self.s.ring.add(pos), len) }
    }
    fn u32_at(&self, pos: usize) -> u32 {
        u32::from_le_bytes(self.ring(pos, 4).try_into().expect("4 bytes"))
    }

    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.s.index_cap as u64) >> 32) as usize
    }
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.s.index_cap {
            0
        } else {
            i + 1
        }
    }

    /// Length of the entry at `pos`, if its length fields fit the ring.
    fn len_at(&self, pos: usize) -> Option<usize> {
        if pos + ENTRY_HEADER > self.s.ring_cap {
            return None;
        }
        let key_len = self.ring(pos + 1, 1)[0] as usize;
        let der_len = self.u32_at(pos + 4) as usize;
        let len = entry_len(key_len, der_len);
        (key_len <= crate::store::MAX_KEY_LEN && pos + len <= self.s.ring_cap).then_some(len)
    }

    fn entry_valid(&self, pos: usize) -> bool {
        let Some(_) = self.len_at(pos) else {
            return false;
        };
        let key_len = self.ring(pos + 1, 1)[0] as usize;
        let flags = self.ring(pos + 2, 1)[0];
        let der_len = self.u32_at(pos + 4);
        let key = self.ring(pos + ENTRY_HEADER, key_len);
        let der = self.ring(pos + ENTRY_HEADER + key_len, der_len as usize);
        let sum = checksum(
            key,
            der,
            der_len,
            self.u32_at(pos + 8),
            self.u32_at(pos + 12),
            flags & FLAG_SINGLE_USE != 0,
        );
        sum == self.u32_at(pos + 16)
    }

    // ---- the index ----------------------------------------------------------------------
    /// Finds `key`: (index slot, ring position).
    pub fn find(&self, tag: u32, key: &[u8]) -> Option<(usize, usize)> {
        let mut i = self.home(tag);
        for _ in 0..self.s.index_cap {
            let v = self.slot(i);
            if v == 0 {
                return None;
            }
            if (v >> 32) as u32 == tag {
                let pos = (v as u32 - 1) as usize;
                let key_len = self.ring(pos + 1, 1)[0] as usize;
                if key_len == key.len() && self.ring(pos + ENTRY_HEADER, key_len) == key {
                    return Some((i, pos));
                }
            }
            i = self.next(i);
        }
        None
    }

    fn slot_of(&self, tag: u32, pos: usize) -> Option<usize> {
        let want = (u64::from(tag) << 32) | (pos as u64 + 1);
        let mut i = self.home(tag);
        for _ in 0..self.s.index_cap {
            match self.slot(i) {
                0 => return None,
                v if v == want => return Some(i),
                _ => i = self.next(i),
            }
        }
        None
    }

    fn index_insert(&mut self, tag: u32, pos: usize) {
        let mut i = self.home(tag);
        while self.slot(i) != 0 {
            i = self.next(i);
        }
        self.set_slot(i, (u64::from(tag) << 32) | (pos as u64 + 1));
        self.hdr().index_used += 1;
    }

    /// Backward-shift deletion: later entries of the probe run move up into the hole.
    fn index_delete(&mut self, slot: usize) {
        let mut hole = slot;
        let mut j = slot;
        loop {
            j = self.next(j);
            let v = self.slot(j);
            if v == 0 {
                break;
            }
            let home = self.home((v >> 32) as u32);
            // Entry j may move to the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.set_slot(hole, v);
                hole = j;
            }
        }
        self.set_slot(hole, 0);
        self.hdr().index_used -= 1;
    }

    // ---- entries ------------------------------------------------------------------------
    /// Marks the entry at `pos` dead and wipes its ID and session bytes.
    fn kill(&mut self, pos: usize) {
        let len = self.len_at(pos).expect("live entry has a valid length");
        let der_len = u64::from(self.u32_at(pos + 4));
        self.ring_mut(pos, 1)[0] = DEAD;
        crate::store::wipe(self.ring_mut(pos + 16, len - 16));
        let h = self.hdr();
        h.live -= 1;
        h.live_bytes -= der_len;
    }

    fn remove_at(&mut self, slot: usize, pos: usize) {
        self.index_delete(slot);
        self.kill(pos);
    }

    /// Looks `key` up. A live entry is consumed if `take` or stored single-use; otherwise it
    /// is marked used and `front` is asked, with the entry's stamp, for an object decoded
    /// from it before (then no DER is copied).
    pub fn get<T>(
        &mut self,
        tag: u32,
        key: &[u8],
        now: u32,
        take: bool,
        front: impl FnOnce(u64) -> Option<T>,
        ev: &mut Events,
    ) -> Option<Found<T>> {
        let (slot, pos) = self.find(tag, key)?;
        if !self.entry_valid(pos) {
            ev.errors += 1;
            crate::log!(
                Level::Warn,
                "shm: a stored session failed its checksum; dropped"
            );
            self.remove_at(slot, pos);
            return None;
        }
        if self.u32_at(pos + 8) <= now {
            ev.expirations += 1;
            self.remove_at(slot, pos);
            return None;
        }
        // The checksum covers the ID, the DER, the expiry and the flags that matter: with
        // the position it names this very entry.
        let stamp = (pos as u64) << 32 | u64::from(self.u32_at(pos + 16));
        let flags = self.ring(pos + 2, 1)[0];
        let consumed = take || flags & FLAG_SINGLE_USE != 0;
        if !consumed {
            self.ring_mut(pos + 2, 1)[0] = flags | FLAG_REFERENCED;
            if let Some(obj) = front(stamp) {
                return Some(Found::Front(obj));
            }
        }
        let der_len = self.u32_at(pos + 4) as usize;
        let der = SecretBytes::from(self.ring(pos + ENTRY_HEADER + key.len(), der_len).to_vec());
        if consumed {
            self.remove_at(slot, pos);
        }
        Some(Found::Der {
            der,
            stamp,
            consumed,
        })
    }

    pub fn remove(&mut self, tag: u32, key: &[u8]) -> bool {
        match self.find(tag, key) {
            Some((slot, pos)) => {
                self.remove_at(slot, pos);
                true
            }
            None => false,
        }
    }

    /// The most an entry may take: half the ring, so that one always fits after reclaiming.
    pub fn max_entry(&self) -> usize {
        self.s.ring_cap / 2
    }

    fn index_full(&self) -> bool {
        // SAFETY: reading the header under the lock.
        let used = unsafe { (*self.s.hdr).index_used } as usize;
        used + 1 > self.s.index_cap - self.s.index_cap / 8
    }

    /// Bytes needed at the head for an entry of `len`: the entry plus any padding.
    fn need(&self, head: u64, len: usize) -> usize {
        let pos = (head % self.s.ring_cap as u64) as usize;
        if pos + len > self.s.ring_cap {
            self.s.ring_cap - pos + len
        } else {
            len
        }
    }

    fn free_bytes(&self) -> usize {
        // SAFETY: reading the header under the lock.
        let (head, tail) = unsafe { ((*self.s.hdr).head, (*self.s.hdr).tail) };
        self.s.ring_cap - (head - tail) as usize
    }

    /// Stores an entry, replacing one with the same key; the caller checked the size.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        tag: u32,
        key: &[u8],
        der: &[u8],
        expires: u32,
        single_use: bool,
        now: u32,
        ev: &mut Events,
    ) {
        if let Some((slot, pos)) = self.find(tag, key) {
            self.remove_at(slot, pos);
        }
        let len = entry_len(key.len(), der.len());
        let mut moves = MAX_MOVES;
        loop {
            let head = self.hdr().head;
            if self.free_bytes() >= self.need(head, len) && !self.index_full() {
                break;
            }
            if !self.reclaim_tail(now, &mut moves, ev) {
                return;
            }
        }
        self.append(
            tag,
            key,
            der,
            expires,
            if single_use { FLAG_SINGLE_USE } else { 0 },
        );
    }

    /// Writes an entry at the head (there is room), then publishes and indexes it.
    fn append(&mut self, tag: u32, key: &[u8], der: &[u8], expires: u32, flags: u8) {
        let len = entry_len(key.len(), der.len());
        let mut head = self.hdr().head;
        let mut pos = (head % self.s.ring_cap as u64) as usize;
        if pos + len > self.s.ring_cap {
            self.ring_mut(pos, 1)[0] = PAD;
            head += (self.s.ring_cap - pos) as u64;
            pos = 0;
        }
        let sum = checksum(
            key,
            der,
            der.len() as u32,
            expires,
            tag,
            flags & FLAG_SINGLE_USE != 0,
        );
        {
            let e = self.ring_mut(pos, len);
            e[0] = LIVE;
            e[1] = key.len() as u8;
            e[2] = flags;
            e[3] = 0;
            e[4..8].copy_from_slice(&(der.len() as u32).to_le_bytes());
            e[8..12].copy_from_slice(&expires.to_le_bytes());
            e[12..16].copy_from_slice(&tag.to_le_bytes());
            e[16..20].copy_from_slice(&sum.to_le_bytes());
            e[ENTRY_HEADER..ENTRY_HEADER + key.len()].copy_from_slice(key);
            e[ENTRY_HEADER + key.len()..ENTRY_HEADER + key.len() + der.len()].copy_from_slice(der);
        }
        let h = self.hdr();
        h.head = head + len as u64;
        h.live += 1;
        h.live_bytes += der.len() as u64;
        self.index_insert(tag, pos);
    }

    /// Frees the entry at the tail. False if the shard had to be reset (it was damaged).
    fn reclaim_tail(&mut self, now: u32, moves: &mut usize, ev: &mut Events) -> bool {
        let (head, tail) = (self.hdr().head, self.hdr().tail);
        if tail >= head {
            return self.reset("nothing to reclaim in a full shard", ev);
        }
        let pos = (tail % self.s.ring_cap as u64) as usize;
        match self.ring(pos, 1)[0] {
            PAD => {
                self.hdr().tail = tail + (self.s.ring_cap - pos) as u64;
                true
            }
            DEAD => match self.len_at(pos) {
                Some(len) => {
                    self.hdr().tail = tail + len as u64;
                    true
                }
                None => self.reset("a dead entry with a bad length", ev),
            },
            LIVE => {
                let Some(len) = self.len_at(pos) else {
                    return self.reset("a live entry with a bad length", ev);
                };
                let tag = self.u32_at(pos + 12);
                let Some(slot) = self.slot_of(tag, pos) else {
                    return self.reset("a live entry missing from the index", ev);
                };
                let expires = self.u32_at(pos + 8);
                let flags = self.ring(pos + 2, 1)[0];
                if expires > now && flags & FLAG_REFERENCED != 0 && *moves > 0 {
                    *moves -= 1;
                    if !self.second_chance(slot, pos, len, tail, flags) {
                        ev.evictions += 1;
                    }
                } else {
                    if expires <= now {
                        ev.expirations += 1;
                    } else {
                        ev.evictions += 1;
                        crate::log!(
                            Level::Debug,
                            "evict: shm session ({} bytes of ID)",
                            self.ring(pos + 1, 1)[0]
                        );
                    }
                    self.remove_at(slot, pos);
                    self.hdr().tail = tail + len as u64;
                }
                true
            }
            _ => self.reset("an unknown entry state", ev),
        }
    }

    /// Moves a recently used entry from the tail to the head, clearing its flag. False if
    /// there was no room at the head after all (the entry is then gone).
    fn second_chance(&mut self, slot: usize, pos: usize, len: usize, tail: u64, flags: u8) -> bool {
        MOVE_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            buf.extend_from_slice(self.ring(pos, len));
            buf[2] = flags & !FLAG_REFERENCED;
            // The old copy goes first (it may overlap where the new one lands).
            self.index_delete(slot);
            self.kill(pos);
            self.hdr().tail = tail + len as u64;
            let key_len = buf[1] as usize;
            let der_len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
            let head = self.hdr().head;
            let moved = self.free_bytes() >= self.need(head, len) && !self.index_full();
            if moved {
                let tag = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
                let expires = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
                let (key, der) =
                    buf[ENTRY_HEADER..ENTRY_HEADER + key_len + der_len].split_at(key_len);
                self.append(tag, key, der, expires, buf[2]);
            }
            crate::store::wipe(&mut buf);
            moved
        })
    }

    /// Empties a damaged shard (its sessions are lost, counted as errors).
    fn reset(&mut self, why: &str, ev: &mut Events) -> bool {
        let lost = u64::from(self.hdr().live);
        crate::log!(
            Level::Error,
            "shm: shard damaged ({why}); emptied, {lost} sessions lost"
        );
        ev.errors += lost.max(1);
        for i in 0..self.s.index_cap {
            self.set_slot(i, 0);
        }
        let cap = self.s.ring_cap;
        crate::store::wipe(self.ring_mut(0, cap));
        let h = self.hdr();
        h.head = 0;
        h.tail = 0;
        h.live = 0;
        h.live_bytes = 0;
        h.index_used = 0;
        false
    }

    /// Rebuilds the index and the counts from the ring after a crash: returns (sessions
    /// kept, entries dropped).
    pub fn rebuild(&mut self, now: u32) -> (u64, u64) {
        let cap = self.s.ring_cap as u64;
        let (mut head, tail) = (self.hdr().head, self.hdr().tail);
        if tail > head || head - tail > cap {
            let mut ev = Events::default();
            self.reset("bad head and tail", &mut ev);
            return (0, ev.errors);
        }
        for i in 0..self.s.index_cap {
            self.set_slot(i, 0);
        }
        {
            let h = self.hdr();
            h.index_used = 0;
            h.live = 0;
            h.live_bytes = 0;
        }
        let (mut kept, mut dropped) = (0u64, 0u64);
        let mut at = tail;
        while at < head {
            let pos = (at % cap) as usize;
            let state = self.ring(pos, 1)[0];
            if state == PAD {
                at += cap - pos as u64;
                continue;
            }
            let len = match self.len_at(pos) {
                Some(len) if (state == LIVE || state == DEAD) && at + len as u64 <= head => len,
                _ => {
                    // A torn write at the end: cut the ring there.
                    head = at;
                    dropped += 1;
                    break;
                }
            };
            if state == LIVE {
                // Count it live for a moment so that `kill` can uncount it.
                let der_len = u64::from(self.u32_at(pos + 4));
                let h = self.hdr();
                h.live += 1;
                h.live_bytes += der_len;
                let key_len = self.ring(pos + 1, 1)[0] as usize;
                let key = self.ring(pos + ENTRY_HEADER, key_len).to_vec();
                let tag = self.u32_at(pos + 12);
                if !self.entry_valid(pos) || self.u32_at(pos + 8) <= now {
                    self.kill(pos);
                    dropped += 1;
                } else {
                    // A later copy of the same ID wins.
                    if let Some((slot, old)) = self.find(tag, &key) {
                        self.remove_at(slot, old);
                        kept -= 1;
                    }
                    self.index_insert(tag, pos);
                    kept += 1;
                }
            }
            at += len as u64;
        }
        self.hdr().head = head;
        (kept, dropped)
    }

    /// (live entries, bytes of DER).
    pub fn occupancy(&mut self) -> (u64, u64) {
        let h = self.hdr();
        (u64::from(h.live), h.live_bytes)
    }
}
