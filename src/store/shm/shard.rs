//! One shard of the shared segment: a lock word, an open-addressing index and a ring of
//! variable-size, checksummed entries.
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
//! 16 checksum u64 (over everything but state and the REFERENCED flag)  24 key  24+key_len der
//! ```
//!
//! Index: linear probing over `u64` slots, `(tag << 32) | (offset + 1)`, 0 = empty, with
//! backward-shift deletion (no tombstones).
//!
//! Eviction when the ring or the index is full works at the tail: dead entries are skipped,
//! expired ones dropped; a live entry that was hit since it was written gets a second chance
//! (verified, then moved to the head with its flag cleared and its checksum unchanged),
//! others are evicted — CLOCK on a ring.
//!
//! Nothing read from the segment is trusted: another process may have crashed half-way, a
//! stray write may have hit any byte. So:
//! - every loop is bounded by the shard's capacity;
//! - every position and length is checked against the ring before use, and every entry is
//!   read once into local memory (header, key) before it is looked at;
//! - an entry's bytes are copied out and the *copy* is verified against the checksum before
//!   it is returned or moved: a damaged entry is a miss plus an error, never a session;
//! - the shard header's invariants are checked after every lock, and a shard that fails them
//!   (or whose lock was taken over from a dead or stuck owner) is rebuilt from its ring,
//!   keeping only entries that verify. Removal marks an entry DEAD and wipes it.
//!
//! Expired entries are wiped when met, and a sweep (every [`SWEEP_PERIOD`] seconds per shard,
//! a bounded number of entries per operation) wipes those nobody meets.
//!
//! Fencing (see [`super::lock`]): every write goes through [`Locked`]'s write helpers, which
//! check the lock's token first; once the check fails (the lock was taken over while this
//! holder stalled) they write nothing more. An operation's outcome is used only if its
//! release succeeds ([`Locked::release`]): the release is a compare-and-swap that fails if
//! the lock was taken over at any point, so what a holder found or consumed (the single use
//! of a TLS 1.3 ticket) counts only if it held the lock from start to end, and the swap
//! makes all its writes visible to the next holder first. A holder that lost the lock can
//! still land the one store it had checked for when it stalled; entries are checksummed,
//! published only by several stores and found only below the head, so such a store costs
//! at most a miss, never a session delivered twice or to the wrong key.

use super::lock::{Acquired, ShardLock, Stuck, Timing, Token};
use super::segment::ENTRY_ALIGN;
use crate::log::Level;
use crate::secret::SecretBytes;
use crate::store::{Counters, Found, Stamp, StoreError, MAX_KEY_LEN};
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::AtomicU64;

pub(crate) const ENTRY_HEADER: usize = 24;
const LIVE: u8 = 0xA5;
const DEAD: u8 = 0x5A;
const PAD: u8 = 0xF0;
const FLAG_SINGLE_USE: u8 = 1;
const FLAG_REFERENCED: u8 = 2;
/// Second chances given while making room for one entry, at most.
const MAX_MOVES: usize = 16;
/// Copies of one key that a store or a removal looks for in the index, at most (one, unless
/// the index was damaged).
const MAX_COPIES: usize = 8;
/// Seconds between two sweeps of a shard for expired entries.
pub(crate) const SWEEP_PERIOD: u32 = 30;
/// Entries one operation looks at while a sweep is under way.
const SWEEP_STEPS: usize = 64;
/// The largest head a checked shard has. The ring counters only grow by the bytes stored
/// (2^62 of them would take a century at a gigabyte a second) and a rebuild brings them back
/// near 0, so one above this is damage; below it, adding a ring's worth never overflows.
const MAX_COUNTER: u64 = 1 << 62;

#[repr(C)]
pub struct ShardHeader {
    /// The lock word: owner and generation (see [`super::lock`]).
    pub lock: AtomicU64,
    pub head: u64,
    pub tail: u64,
    pub live: u32,
    pub index_used: u32,
    pub live_bytes: u64,
    /// Where the expiry sweep goes on (a ring counter between tail and head).
    pub sweep_at: u64,
    /// When the next sweep starts (seconds after the epoch).
    pub next_sweep: u32,
}

const _: () = assert!(std::mem::size_of::<ShardHeader>() <= super::segment::SHARD_HEADER_BYTES);

/// The size of an entry in the ring.
pub fn entry_len(key_len: usize, der_len: usize) -> usize {
    (ENTRY_HEADER + key_len + der_len + ENTRY_ALIGN - 1) & !(ENTRY_ALIGN - 1)
}

/// Pointers into one shard of the mapping.
pub struct Shard {
    pub hdr: *mut ShardHeader,
    pub index: *mut u64,
    pub ring: *mut u8,
    pub index_cap: usize,
    pub ring_cap: usize,
    /// This process's view of a lock it could not get (see [`super::lock::Stuck`]).
    pub stuck: Stuck,
}

// SAFETY: the pointers lead into a shared mapping that outlives the Shard (the ShmStore owns
// both); the memory behind them is only written while holding the shard's lock, and only
// read through checked, copying accessors.
unsafe impl Send for Shard {}
// SAFETY: as above.
unsafe impl Sync for Shard {}

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

/// An entry's header, read once from the ring.
#[derive(Clone, Copy, Debug)]
struct Head {
    state: u8,
    key_len: usize,
    flags: u8,
    der_len: usize,
    expires: u32,
    tag: u32,
    sum: u64,
}

impl Head {
    fn parse(b: &[u8; ENTRY_HEADER]) -> Head {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Head {
            state: b[0],
            key_len: b[1] as usize,
            flags: b[2],
            der_len: u32_at(4) as usize,
            expires: u32_at(8),
            tag: u32_at(12),
            sum: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
        }
    }

    fn bytes(&self) -> [u8; ENTRY_HEADER] {
        let mut b = [0u8; ENTRY_HEADER];
        b[0] = self.state;
        b[1] = self.key_len as u8;
        b[2] = self.flags;
        b[4..8].copy_from_slice(&(self.der_len as u32).to_le_bytes());
        b[8..12].copy_from_slice(&self.expires.to_le_bytes());
        b[12..16].copy_from_slice(&self.tag.to_le_bytes());
        b[16..24].copy_from_slice(&self.sum.to_le_bytes());
        b
    }

    fn len(&self) -> usize {
        entry_len(self.key_len, self.der_len)
    }

    /// Whether the lengths describe an entry that fits the ring at `pos`.
    fn fits(&self, pos: usize, ring_cap: usize) -> bool {
        (1..=MAX_KEY_LEN).contains(&self.key_len)
            && self.der_len >= 1
            && self.der_len < ring_cap
            && pos + self.len() <= ring_cap
    }

    fn single_use(&self) -> bool {
        self.flags & FLAG_SINGLE_USE != 0
    }
}

/// The checksum of an entry: its lengths, expiry, tag, single-use flag, ID and DER.
fn checksum(h: &Head, key: &[u8], der: &[u8]) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15
        ^ ((h.der_len as u64) << 32 | u64::from(h.expires))
        ^ (u64::from(h.tag) << 9 | (h.key_len as u64) << 1 | u64::from(h.single_use())) << 3;
    let mut mix = |w: u64| {
        x = (x ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 32;
    };
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
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 29)
}

/// Identifies one stored entry (the store's [`Stamp`]): its checksum and position.
fn stamp(h: &Head, pos: usize) -> Stamp {
    h.sum ^ (pos as u64).rotate_left(40)
}

/// What a walk over the ring finds at a position.
enum Step {
    /// Padding: the walk goes on at this counter.
    Pad(u64),
    /// A live or dead entry at this ring position.
    Entry(usize, Head),
    /// Bytes that are not an entry: damage, or a torn write.
    Garbage,
}

/// What a walk over the ring meets next, padding skipped ([`Locked::walk`]).
enum Met {
    /// A live or dead entry at ring counter `at` and position `pos`.
    Entry { at: u64, pos: usize, h: Head },
    /// Bytes that are not an entry at ring counter `at`: damage, or a torn write.
    Garbage(u64),
    /// The head.
    End,
}

/// Why a shard needs rebuilding.
struct Damage(&'static str);

/// An entry to store ([`Locked::put`]).
pub struct NewEntry<'a> {
    /// The key's hash (the index's tag).
    pub tag: u32,
    pub key: &'a [u8],
    pub der: &'a [u8],
    /// Seconds after the segment's epoch.
    pub expires: u32,
    /// Consumed by its first lookup (a TLS 1.3 ticket).
    pub single_use: bool,
}

impl Shard {
    pub(crate) fn lock_word(&self) -> ShardLock<'_> {
        // SAFETY: hdr points at this shard's header (64-aligned) in the live mapping; the
        // atomic there is valid for the mapping's lifetime.
        unsafe {
            ShardLock {
                word: &*addr_of!((*self.hdr).lock),
            }
        }
    }

    /// Locks the shard, repairing it if the last owner died or stalled holding the lock or
    /// its header is inconsistent. None if the lock could not be had within the budget
    /// (counted by the caller as an error; the operation is a miss).
    pub fn lock(&self, now: u32, timing: &Timing, ev: &mut Events) -> Option<Locked<'_>> {
        let (token, acquired) = match self.lock_word().lock(timing, &self.stuck) {
            Ok(a) => a,
            Err(_) => {
                crate::log_limited!(
                    Level::Warn,
                    "shm: a shard lock could not be had within {} ms; the operation is a miss",
                    timing.budget.as_millis()
                );
                return None;
            }
        };
        let mut locked = Locked {
            s: self,
            token,
            lost: false,
            released: false,
        };
        let why = match acquired {
            Acquired::Recovered => Some("a process died or stalled holding its lock"),
            Acquired::Clean => locked.check_header().err().map(|d| d.0),
        };
        if let Some(why) = why {
            locked.repair(why, now, ev);
        }
        locked.maintain(now, ev);
        Some(locked)
    }
}

/// A locked shard; unlocks when dropped, or by [`Locked::release`].
pub struct Locked<'a> {
    s: &'a Shard,
    token: Token,
    /// The lock was taken over from this holder: it writes nothing more.
    lost: bool,
    released: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.unlock();
    }
}

/// Reads and writes one field of the shard header (exactly once: another process may be
/// scribbling on it, so a value is read into a local and checked there). A write is fenced.
macro_rules! hdr {
    ($self:ident . $field:ident) => {
        // SAFETY: the header lies inside our mapping; a volatile read of a plain field.
        unsafe { addr_of!((*$self.s.hdr).$field).read_volatile() }
    };
    ($self:ident . $field:ident = $v:expr) => {{
        let v = $v;
        if $self.fenced() {
            // SAFETY: as above; we hold the lock (just checked), so we are the shard's only
            // writer.
            unsafe { addr_of_mut!((*$self.s.hdr).$field).write_volatile(v) }
        }
    }};
}

impl Locked<'_> {
    // ---- the fence ------------------------------------------------------------------------
    /// Whether this holder still holds the lock. Checked before every write; once false,
    /// false for good.
    #[inline]
    fn fenced(&mut self) -> bool {
        if self.lost {
            return false;
        }
        if self.s.lock_word().holds(self.token) {
            return true;
        }
        self.note_lost();
        false
    }

    fn note_lost(&mut self) {
        if !self.lost {
            self.lost = true;
            crate::log_limited!(
                Level::Warn,
                "shm: this thread stalled holding a shard lock and another took it over; \
                 it wrote nothing more and its operation is a miss"
            );
        }
    }

    /// Whether the lock was taken over from this holder so far (then part of the operation
    /// was not written). Tests use it; operations decide by [`Locked::release`].
    pub fn lost(&mut self) -> bool {
        !self.fenced()
    }

    fn unlock(&mut self) -> bool {
        if self.released {
            return !self.lost;
        }
        self.released = true;
        if !self.s.lock_word().unlock(self.token) {
            self.note_lost();
        }
        !self.lost
    }

    /// Releases the lock: true if this holder held it from the start to now, so the
    /// operation's outcome may be used (what it found was not changed by another holder,
    /// and everything it wrote was written); false if it was taken over meanwhile.
    pub fn release(mut self) -> bool {
        self.unlock()
    }

    // ---- raw access: every position is checked, every read copies -------------------------
    fn cap(&self) -> usize {
        self.s.ring_cap
    }

    fn slot(&self, i: usize) -> u64 {
        assert!(i < self.s.index_cap);
        // SAFETY: i < index_cap, inside this shard's index (8-aligned).
        unsafe { self.s.index.add(i).read_volatile() }
    }

    fn set_slot(&mut self, i: usize, v: u64) {
        assert!(i < self.s.index_cap);
        if self.fenced() {
            // SAFETY: as above; we hold the lock (just checked).
            unsafe { self.s.index.add(i).write_volatile(v) }
        }
    }

    /// Copies ring bytes [pos, pos + out.len()) into `out`; false if that is outside.
    fn read(&self, pos: usize, out: &mut [u8]) -> bool {
        if pos > self.cap() || out.len() > self.cap() - pos {
            return false;
        }
        // SAFETY: the range is inside the ring (checked); out is ours.
        unsafe { std::ptr::copy_nonoverlapping(self.s.ring.add(pos), out.as_mut_ptr(), out.len()) };
        true
    }

    fn write(&mut self, pos: usize, bytes: &[u8]) {
        assert!(pos <= self.cap() && bytes.len() <= self.cap() - pos);
        if self.fenced() {
            // SAFETY: the range is inside the ring (checked); we hold the lock (just checked).
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.s.ring.add(pos), bytes.len())
            };
        }
    }

    /// The header of the entry at `pos`, if it fits the ring there.
    /// A PAD (which may stand in the last bytes of the ring) has only its state.
    fn head_at(&self, pos: usize) -> Option<Head> {
        if pos % ENTRY_ALIGN != 0 {
            return None;
        }
        let mut b = [0u8; ENTRY_HEADER];
        let n = ENTRY_HEADER.min(self.cap().saturating_sub(pos));
        if n == 0 || !self.read(pos, &mut b[..n]) {
            return None;
        }
        let h = Head::parse(&b);
        (h.state == PAD || (n == ENTRY_HEADER && h.fits(pos, self.cap()))).then_some(h)
    }

    /// What a walk over the ring from counter `at` meets next before `head`, padding
    /// skipped. Bounded: each pad moves to the next turn of the ring, and the callers walk
    /// at most from the tail to the head (at most one turn, checked at lock).
    fn walk(&self, mut at: u64, head: u64) -> Met {
        while at < head {
            match self.step(at, head) {
                Step::Pad(next) => at = next,
                Step::Entry(pos, h) => return Met::Entry { at, pos, h },
                Step::Garbage => return Met::Garbage(at),
            }
        }
        Met::End
    }

    /// One step of a walk over the ring from the tail: what is at counter `at` (< `head`).
    fn step(&self, at: u64, head: u64) -> Step {
        let cap = self.cap() as u64;
        let pos = (at % cap) as usize;
        match self.head_at(pos) {
            Some(h) if h.state == PAD => Step::Pad(at + cap - pos as u64),
            Some(h) if (h.state == LIVE || h.state == DEAD) && at + h.len() as u64 <= head => {
                Step::Entry(pos, h)
            }
            _ => Step::Garbage,
        }
    }

    fn key_at(&self, pos: usize, h: &Head) -> [u8; MAX_KEY_LEN] {
        let mut key = [0u8; MAX_KEY_LEN];
        self.read(pos + ENTRY_HEADER, &mut key[..h.key_len]);
        key
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

    /// The most index slots in use before the shard counts as full.
    fn max_fill(&self) -> usize {
        self.s.index_cap - self.s.index_cap / 8
    }

    // ---- the header's invariants ----------------------------------------------------------
    fn check_header(&mut self) -> Result<(), Damage> {
        let (head, tail) = (hdr!(self.head), hdr!(self.tail));
        if tail > head || head - tail > self.cap() as u64 || (head | tail) % ENTRY_ALIGN as u64 != 0
        {
            return Err(Damage("its head and tail are inconsistent"));
        }
        if head > MAX_COUNTER {
            return Err(Damage("its head and tail are out of range"));
        }
        let (live, used) = (hdr!(self.live), hdr!(self.index_used));
        if live != used || used as usize > self.max_fill() {
            return Err(Damage("its entry counts are inconsistent"));
        }
        if hdr!(self.live_bytes) > self.cap() as u64 {
            return Err(Damage("its byte count is inconsistent"));
        }
        Ok(())
    }

    // ---- the index ----------------------------------------------------------------------
    /// Finds `key`: (index slot, ring position, header of a LIVE entry with that key).
    fn find(&self, tag: u32, key: &[u8]) -> Option<(usize, usize, Head)> {
        let mut i = self.home(tag);
        for _ in 0..self.s.index_cap {
            let v = self.slot(i);
            if v == 0 {
                return None;
            }
            if (v >> 32) as u32 == tag {
                let pos = (v as u32).wrapping_sub(1) as usize;
                if let Some(h) = self.head_at(pos) {
                    if h.state == LIVE
                        && h.tag == tag
                        && h.key_len == key.len()
                        && self.key_at(pos, &h)[..h.key_len] == *key
                    {
                        return Some((i, pos, h));
                    }
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

    fn index_insert(&mut self, tag: u32, pos: usize) -> Result<(), Damage> {
        let mut i = self.home(tag);
        for _ in 0..self.s.index_cap {
            if self.slot(i) == 0 {
                self.set_slot(i, (u64::from(tag) << 32) | (pos as u64 + 1));
                hdr!(self.index_used = hdr!(self.index_used).wrapping_add(1));
                return Ok(());
            }
            i = self.next(i);
        }
        Err(Damage("its index has no free slot"))
    }

    /// Backward-shift deletion: later entries of the probe run move up into the hole.
    fn index_delete(&mut self, slot: usize) {
        let mut hole = slot;
        let mut j = slot;
        for _ in 0..self.s.index_cap {
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
        hdr!(self.index_used = hdr!(self.index_used).saturating_sub(1));
    }

    // ---- entries ------------------------------------------------------------------------
    /// Marks the entry at `pos` dead and wipes everything in it but its lengths (which the
    /// ring walk needs).
    fn kill(&mut self, pos: usize, h: &Head) {
        self.write(pos, &[DEAD]);
        let wipe_len = h.len() - 8;
        let zeros = [0u8; 256];
        let mut at = pos + 8;
        let end = at + wipe_len;
        while at < end {
            let n = (end - at).min(zeros.len());
            self.write(at, &zeros[..n]);
            at += n;
        }
        hdr!(self.live = hdr!(self.live).saturating_sub(1));
        hdr!(self.live_bytes = hdr!(self.live_bytes).saturating_sub(h.der_len as u64));
    }

    fn remove_at(&mut self, slot: usize, pos: usize, h: &Head) {
        self.index_delete(slot);
        self.kill(pos, h);
    }

    /// Copies the entry's ID and DER out and verifies the copy: Some(der) if it is intact.
    fn copy_verified(&self, pos: usize, h: &Head) -> Option<SecretBytes> {
        let key = self.key_at(pos, h);
        let mut der = SecretBytes::zeroed(h.der_len);
        if !self.read(pos + ENTRY_HEADER + h.key_len, der.as_mut_slice()) {
            return None;
        }
        (checksum(h, &key[..h.key_len], der.as_slice()) == h.sum).then_some(der)
    }

    fn corrupt_entry(&mut self, slot: usize, pos: usize, h: &Head, ev: &mut Events) {
        ev.errors += 1;
        crate::log_limited!(
            Level::Warn,
            "shm: a stored session failed its checksum; dropped"
        );
        self.remove_at(slot, pos, h);
    }

    /// Looks `key` up. A live entry is consumed if `take` or stored single-use; otherwise it
    /// is marked used. `known` is asked, with the entry's stamp, whether the caller holds
    /// what it decodes to already (then no bytes are copied). An entry that fails its
    /// checksum is dropped: `Corrupt`.
    pub fn get(
        &mut self,
        tag: u32,
        key: &[u8],
        now: u32,
        take: bool,
        known: &mut dyn FnMut(Stamp) -> bool,
        ev: &mut Events,
    ) -> Result<Option<Found>, StoreError> {
        let Some((slot, pos, h)) = self.find(tag, key) else {
            return Ok(None);
        };
        if h.expires <= now {
            ev.expirations += 1;
            self.remove_at(slot, pos, &h);
            return Ok(None);
        }
        let stamp = stamp(&h, pos);
        let consumed = take || h.single_use();
        if !consumed {
            self.write(pos + 2, &[h.flags | FLAG_REFERENCED]);
        }
        // The caller's copy was decoded from a verified copy of this very entry.
        if !take && known(stamp) {
            if consumed {
                self.remove_at(slot, pos, &h);
            }
            return Ok(Some(Found {
                bytes: None,
                stamp,
                consumed,
            }));
        }
        let Some(bytes) = self.copy_verified(pos, &h) else {
            self.corrupt_entry(slot, pos, &h, ev);
            return Err(StoreError::Corrupt);
        };
        if consumed {
            self.remove_at(slot, pos, &h);
        }
        Ok(Some(Found {
            bytes: Some(bytes),
            stamp,
            consumed,
        }))
    }

    /// Removes every indexed copy of `key` the probe reaches (a damaged index can hide one
    /// copy behind another); true if there was one.
    fn remove_indexed(&mut self, tag: u32, key: &[u8]) -> bool {
        let mut removed = false;
        for _ in 0..MAX_COPIES {
            let Some((slot, pos, h)) = self.find(tag, key) else {
                break;
            };
            self.remove_at(slot, pos, &h);
            removed = true;
        }
        removed
    }

    /// Removes `key`: its indexed copies, then any live copy left in the ring that a damaged
    /// index no longer leads to (one that a later repair would otherwise bring back after
    /// OpenSSL asked for its removal, e.g. after a fatal alert). The ring walk costs about as
    /// much as a sweep of the shard; removals are rare (lookups and stores never walk).
    pub fn remove(&mut self, tag: u32, key: &[u8]) -> bool {
        let mut removed = self.remove_indexed(tag, key);
        let (head, tail) = (hdr!(self.head), hdr!(self.tail));
        let mut next = tail;
        // Bytes that are not an entry end the walk: the repair path sorts them out.
        while let Met::Entry { at, pos, h } = self.walk(next, head) {
            next = at + h.len() as u64;
            if h.state == LIVE
                && h.tag == tag
                && h.key_len == key.len()
                && self.key_at(pos, &h)[..h.key_len] == *key
            {
                self.remove_anywhere(pos, &h);
                removed = true;
            }
        }
        removed
    }

    /// Removes the live entry at `pos`, with its index slot if it has one.
    fn remove_anywhere(&mut self, pos: usize, h: &Head) {
        match self.slot_of(h.tag, pos) {
            Some(slot) => self.remove_at(slot, pos, h),
            None => self.kill(pos, h),
        }
    }

    /// Bytes needed at the head for an entry of `len`: the entry plus any padding.
    fn need(&self, head: u64, len: usize) -> usize {
        let pos = (head % self.cap() as u64) as usize;
        if pos + len > self.cap() {
            self.cap() - pos + len
        } else {
            len
        }
    }

    /// Whether an entry of `len` fits at the head now (the header was checked at lock).
    fn room_for(&self, len: usize) -> bool {
        let (head, tail) = (hdr!(self.head), hdr!(self.tail));
        let used = head.saturating_sub(tail) as usize;
        used <= self.cap()
            && self.cap() - used >= self.need(head, len)
            && (hdr!(self.index_used) as usize) < self.max_fill()
    }

    /// Stores an entry, replacing one with the same key; its stamp, or why it could not be
    /// stored.
    pub fn put(&mut self, e: NewEntry<'_>, now: u32, ev: &mut Events) -> Result<Stamp, StoreError> {
        let NewEntry {
            tag,
            key,
            der,
            expires,
            single_use,
        } = e;
        self.remove_indexed(tag, key);
        let mut h = Head {
            state: LIVE,
            key_len: key.len(),
            flags: if single_use { FLAG_SINGLE_USE } else { 0 },
            der_len: der.len(),
            expires,
            tag,
            sum: 0,
        };
        if !(1..=MAX_KEY_LEN).contains(&key.len()) || h.len() > self.cap() / 2 {
            return Err(StoreError::TooLarge);
        }
        h.sum = checksum(&h, key, der);
        if !self.make_room(h.len(), now, ev) {
            ev.errors += 1;
            return Err(StoreError::Unavailable);
        }
        self.append(&h, key, der, now, ev)
    }

    /// Reclaims at the tail until `len` bytes and an index slot are free. Bounded: each step
    /// frees at least 4 bytes or an entry; a damaged shard is rebuilt (at most twice), then
    /// emptied.
    fn make_room(&mut self, len: usize, now: u32, ev: &mut Events) -> bool {
        let mut moves = MAX_MOVES;
        let mut rebuilds = 0;
        let limit = self.cap() / 4 + self.s.index_cap + MAX_MOVES + 8;
        for _ in 0..limit {
            if self.room_for(len) {
                return true;
            }
            if let Err(Damage(why)) = self.reclaim_tail(now, &mut moves, ev) {
                rebuilds += 1;
                if rebuilds > 2 {
                    self.reset(why, ev);
                } else {
                    self.repair(why, now, ev);
                }
            }
        }
        if !self.room_for(len) {
            self.reset("no room could be made", ev);
        }
        self.room_for(len)
    }

    /// Writes an entry at the head (there is room), then publishes and indexes it.
    fn append(
        &mut self,
        h: &Head,
        key: &[u8],
        der: &[u8],
        now: u32,
        ev: &mut Events,
    ) -> Result<Stamp, StoreError> {
        let len = h.len();
        let mut head = hdr!(self.head);
        let mut pos = (head % self.cap() as u64) as usize;
        if pos + len > self.cap() {
            self.write(pos, &[PAD]);
            head += (self.cap() - pos) as u64;
            pos = 0;
        }
        self.write(pos, &h.bytes());
        self.write(pos + ENTRY_HEADER, key);
        self.write(pos + ENTRY_HEADER + key.len(), der);
        let tail_bytes = len - ENTRY_HEADER - key.len() - der.len();
        self.write(pos + len - tail_bytes, &[0u8; 3][..tail_bytes]);
        hdr!(self.head = head + len as u64);
        hdr!(self.live = hdr!(self.live).wrapping_add(1));
        hdr!(self.live_bytes = hdr!(self.live_bytes).wrapping_add(h.der_len as u64));
        if let Err(Damage(why)) = self.index_insert(h.tag, pos) {
            // The index holds more than its count says: rebuilding indexes this entry too.
            self.repair(why, now, ev);
            return match self.find(h.tag, key) {
                Some((_, pos, h)) => Ok(stamp(&h, pos)),
                None => Err(StoreError::Unavailable),
            };
        }
        Ok(stamp(h, pos))
    }

    /// Frees the entry at the tail, or says what is damaged.
    fn reclaim_tail(&mut self, now: u32, moves: &mut usize, ev: &mut Events) -> Result<(), Damage> {
        let (head, tail) = (hdr!(self.head), hdr!(self.tail));
        if tail >= head {
            return Err(Damage("it is full but holds nothing"));
        }
        let pos = (tail % self.cap() as u64) as usize;
        let Some(h) = self.head_at(pos) else {
            return Err(Damage("an entry at the tail has a bad length"));
        };
        if h.state == PAD {
            hdr!(self.tail = tail + (self.cap() - pos) as u64);
            return Ok(());
        }
        if tail + h.len() as u64 > head {
            return Err(Damage("an entry at the tail runs past the head"));
        }
        match h.state {
            DEAD => {}
            LIVE => match self.slot_of(h.tag, pos) {
                None => {
                    // Not indexed (a torn update): nobody can find it; wipe it.
                    ev.errors += 1;
                    self.kill(pos, &h);
                }
                Some(slot) if h.expires <= now => {
                    ev.expirations += 1;
                    self.remove_at(slot, pos, &h);
                }
                Some(slot) if h.flags & FLAG_REFERENCED != 0 && *moves > 0 => {
                    *moves -= 1;
                    return self.second_chance(slot, pos, &h, tail, now, ev);
                }
                Some(slot) => {
                    ev.evictions += 1;
                    crate::log!(
                        Level::Debug,
                        "evict: shm session ({} bytes of ID)",
                        h.key_len
                    );
                    self.remove_at(slot, pos, &h);
                }
            },
            _ => return Err(Damage("an entry at the tail has an unknown state")),
        }
        hdr!(self.tail = tail + h.len() as u64);
        Ok(())
    }

    /// Moves a recently used entry from the tail to the head, clearing its flag. The entry
    /// is verified first: a damaged one is dropped, never given a new checksum.
    fn second_chance(
        &mut self,
        slot: usize,
        pos: usize,
        h: &Head,
        tail: u64,
        now: u32,
        ev: &mut Events,
    ) -> Result<(), Damage> {
        let Some(der) = self.copy_verified(pos, h) else {
            self.corrupt_entry(slot, pos, h, ev);
            hdr!(self.tail = tail + h.len() as u64);
            return Ok(());
        };
        let key = self.key_at(pos, h);
        // The old copy goes first (it may overlap where the new one lands).
        self.remove_at(slot, pos, h);
        hdr!(self.tail = tail + h.len() as u64);
        let moved = Head {
            flags: h.flags & !FLAG_REFERENCED,
            ..*h
        };
        if self.room_for(h.len()) {
            // A failed append (the shard was rebuilt without it) is counted there.
            let _ = self.append(&moved, &key[..h.key_len], der.as_slice(), now, ev);
        } else {
            ev.evictions += 1;
        }
        Ok(())
    }

    /// Rebuilds a damaged shard (`why`) from its ring, counting what was dropped as errors.
    fn repair(&mut self, why: &str, now: u32, ev: &mut Events) {
        let (kept, dropped) = self.rebuild(now);
        ev.errors += dropped.max(1);
        crate::log_limited!(
            Level::Warn,
            "shm: {why}; shard rebuilt ({kept} sessions kept, {dropped} dropped)"
        );
    }

    /// Empties a damaged shard (its sessions are lost, counted as errors), wiping the ring.
    fn reset(&mut self, why: &str, ev: &mut Events) {
        let lost = u64::from(hdr!(self.live)).min(self.s.index_cap as u64);
        crate::log_limited!(
            Level::Error,
            "shm: shard damaged ({why}); emptied, {lost} sessions lost"
        );
        ev.errors += lost.max(1);
        self.clear();
    }

    /// Empties the shard, wiping its index and its ring: the number of live entries it had.
    pub fn clear(&mut self) -> u64 {
        let live = u64::from(hdr!(self.live)).min(self.s.index_cap as u64);
        for i in 0..self.s.index_cap {
            self.set_slot(i, 0);
        }
        let zeros = [0u8; 4096];
        let mut at = 0;
        while at < self.cap() {
            let n = (self.cap() - at).min(zeros.len());
            self.write(at, &zeros[..n]);
            at += n;
        }
        hdr!(self.head = 0);
        hdr!(self.tail = 0);
        hdr!(self.live = 0);
        hdr!(self.live_bytes = 0);
        hdr!(self.index_used = 0);
        hdr!(self.sweep_at = 0);
        live
    }

    /// Wipes ring bytes between counters `from` and `to` (at most one turn).
    fn wipe_span(&mut self, from: u64, to: u64) {
        let cap = self.cap() as u64;
        let zeros = [0u8; 4096];
        let mut at = from;
        let end = to.min(from + cap);
        while at < end {
            let pos = (at % cap) as usize;
            let n = ((end - at) as usize).min(self.cap() - pos).min(zeros.len());
            self.write(pos, &zeros[..n]);
            at += n as u64;
        }
    }

    /// Rebuilds the index and the counts from the ring, keeping only entries that verify and
    /// have not expired: returns (sessions kept, entries dropped). Bounded by one turn of
    /// the ring. Where the walk meets bytes that are not an entry, the ring is cut there
    /// and the rest wiped.
    pub fn rebuild(&mut self, now: u32) -> (u64, u64) {
        let cap = self.cap() as u64;
        let (mut head, mut tail) = (hdr!(self.head), hdr!(self.tail));
        let mut dropped = 0u64;
        if tail > head || head - tail > cap || (head | tail) % ENTRY_ALIGN as u64 != 0 {
            let mut ev = Events::default();
            self.reset("bad head and tail", &mut ev);
            return (0, ev.errors);
        }
        for i in 0..self.s.index_cap {
            self.set_slot(i, 0);
        }
        hdr!(self.index_used = 0);
        hdr!(self.live = 0);
        hdr!(self.live_bytes = 0);
        // Counters far from 0 gain nothing; keep them small so they never overflow.
        if tail >= cap {
            let shift = (tail / cap) * cap;
            head -= shift;
            tail -= shift;
            hdr!(self.tail = tail);
        }
        let mut kept = 0u64;
        let mut next = tail;
        loop {
            let (pos, h) = match self.walk(next, head) {
                Met::Entry { at, pos, h } => {
                    next = at + h.len() as u64;
                    (pos, h)
                }
                Met::Garbage(at) => {
                    // Not an entry (a torn write, or damage): cut the ring here.
                    self.wipe_span(at, head);
                    head = at;
                    dropped += 1;
                    break;
                }
                Met::End => break,
            };
            if h.state == LIVE {
                // Count it live for a moment so that `kill` can uncount it.
                hdr!(self.live = hdr!(self.live) + 1);
                hdr!(self.live_bytes = hdr!(self.live_bytes) + h.der_len as u64);
                let key = self.key_at(pos, &h);
                let fresh = h.expires > now && self.copy_verified(pos, &h).is_some();
                let indexed = fresh && (hdr!(self.index_used) as usize) < self.max_fill() && {
                    // A later copy of the same ID wins.
                    if let Some((slot, old, oh)) = self.find(h.tag, &key[..h.key_len]) {
                        self.remove_at(slot, old, &oh);
                        kept -= 1;
                    }
                    self.index_insert(h.tag, pos).is_ok()
                };
                if indexed {
                    kept += 1;
                } else {
                    self.kill(pos, &h);
                    dropped += 1;
                }
            }
        }
        hdr!(self.head = head);
        hdr!(self.sweep_at = tail);
        (kept, dropped)
    }

    // ---- the expiry sweep -----------------------------------------------------------------
    /// Goes on with the sweep if one is due: at most [`SWEEP_STEPS`] entries.
    fn maintain(&mut self, now: u32, ev: &mut Events) {
        if now >= hdr!(self.next_sweep) {
            self.sweep(now, SWEEP_STEPS, ev);
        }
    }

    /// Wipes expired entries from the sweep position on, looking at `steps` entries at most.
    /// When the sweep reaches the head, the next one is due in [`SWEEP_PERIOD`] seconds.
    pub fn sweep(&mut self, now: u32, steps: usize, ev: &mut Events) {
        let (head, tail) = (hdr!(self.head), hdr!(self.tail));
        let mut at = hdr!(self.sweep_at);
        if at < tail || at > head {
            at = tail;
        }
        for _ in 0..steps {
            match self.walk(at, head) {
                Met::Entry { at: here, pos, h } => {
                    if h.state == LIVE && h.expires <= now {
                        ev.expirations += 1;
                        self.remove_anywhere(pos, &h);
                    }
                    at = here + h.len() as u64;
                }
                // The head, or not an entry boundary (damage): start over from the tail next
                // time (the reclaim path repairs a damaged shard when it gets there).
                Met::End | Met::Garbage(_) => {
                    hdr!(self.sweep_at = tail);
                    hdr!(self.next_sweep = now.saturating_add(SWEEP_PERIOD));
                    return;
                }
            }
        }
        hdr!(self.sweep_at = at);
    }

    /// (live entries, bytes of DER).
    pub fn occupancy(&mut self) -> (u64, u64) {
        (u64::from(hdr!(self.live)), hdr!(self.live_bytes))
    }
}
