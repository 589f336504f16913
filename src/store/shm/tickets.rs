//! The ticket-key records of an `shm:` segment (`tickets=shared`): a small table inside the
//! segment's header page, shared by every process that opens the segment.
//!
//! Layout (offsets from the start of the mapping; the shards start at
//! `HEADER_BYTES` as before):
//!
//! ```text
//! TABLE_OFFSET (512): lock u64 (owner and generation) | reserved to 64 bytes
//! TABLE_OFFSET + 64:  16 slots of 208 bytes:
//!     0 seq u64  8 keep_until u64 (Unix seconds)  16 len u32  20 state u32  24 bytes [u8; 184]
//! ```
//!
//! A slot holds a record when its `state` is `USED`; any other value is an empty slot
//! (zero, as a new segment has it, or garbage). So every sequence number, 0 included, can
//! be stored: emptiness is never read from `seq`. An all-zero table is an unlocked, empty
//! one, which is what a new segment holds: nothing has to be written at creation.
//!
//! The table has a lock of its own ([`ShardLock`], with the shards' [`Timing`]), so a
//! process that dies or stalls holding it costs others a bounded wait, never a hang; a
//! holder whose lock was taken over writes nothing more (each slot's wipe and write checks
//! the lock's token first) and its operation fails with `Timeout`. As in
//! the shards, nothing read from the table is trusted: after every acquisition each slot is
//! checked (a used slot whose length is over [`MAX_TICKET_RECORD_BYTES`], or whose `seq` a
//! slot before it already holds, is wiped and counted as an error), every length is checked
//! again before bytes are copied, and no byte value can make an operation read or write
//! outside the table. Bytes that are garbage but well-formed come out as a record; the cache
//! core, which sealed what it stored, refuses them when it opens them.
//!
//! Removal and replacement wipe a slot's bytes. `flush` (of sessions) and the expiry sweep
//! leave the table alone: records go when the caller drops them, or when a full table needs
//! room (the records past their `keep_until` first, then the lowest sequence numbers).

use super::lock::{Acquired, ShardLock, Stuck, Timing, Token};
use super::segment::{Header, Segment, HEADER_BYTES};
use crate::log::Level;
use crate::secret::SecretBytes;
use crate::store::{Counters, StoreError, TicketRecord, MAX_TICKET_RECORD_BYTES};
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the table starts in the header page.
pub(crate) const TABLE_OFFSET: usize = 512;
/// The lock word, its acquisition count, and room reserved after them.
const LOCK_AREA: usize = 64;
/// How many records the table holds.
pub(crate) const SLOTS: usize = 16;
/// The `state` of a slot that holds a record ("TKEY").
const USED: u32 = u32::from_le_bytes(*b"TKEY");

/// The lock at the start of the table.
#[repr(C)]
struct TableLock {
    lock: AtomicU64,
}

/// One record's place.
#[repr(C)]
struct Slot {
    seq: u64,
    /// Unix seconds: the record may be dropped to make room from this time on.
    keep_until: u64,
    len: u32,
    /// [`USED`], or anything else for an empty slot.
    state: u32,
    bytes: [u8; MAX_TICKET_RECORD_BYTES],
}

const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
/// The whole table: its lock area and its slots.
pub(crate) const TABLE_BYTES: usize = LOCK_AREA + SLOTS * SLOT_BYTES;

const _: () = assert!(SLOT_BYTES == 208);
const _: () = assert!(std::mem::size_of::<TableLock>() <= LOCK_AREA);
const _: () = assert!(std::mem::size_of::<Header>() <= TABLE_OFFSET);
const _: () = assert!(TABLE_OFFSET + TABLE_BYTES <= HEADER_BYTES);
const _: () = assert!(TABLE_OFFSET % 8 == 0 && LOCK_AREA % 8 == 0 && SLOT_BYTES % 8 == 0);

/// What this process saw of the table's lock when it could not get it (see
/// [`Stuck`]): process-local, like the shards'.
#[derive(Default)]
pub struct Tickets {
    stuck: Stuck,
}

/// The table of a segment, as one store uses it: the segment, the lock's bounds, the
/// counters that errors go to, and this process's view of the lock.
pub struct Table<'a> {
    pub seg: &'a Segment,
    pub timing: &'a Timing,
    pub counters: &'a Counters,
    pub tickets: &'a Tickets,
}

/// The table, locked; unlocks when dropped.
struct Locked<'a> {
    base: *mut u8,
    seg: &'a Segment,
    token: Token,
    /// The lock was taken over from this holder: it writes nothing more.
    lost: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        lock_of(self.seg).unlock(self.token);
    }
}

/// What a slot's fixed fields say, read once.
#[derive(Clone, Copy)]
struct Meta {
    seq: u64,
    keep_until: u64,
    len: usize,
    used: bool,
}

/// The table's lock in `seg`.
fn lock_of(seg: &Segment) -> ShardLock<'_> {
    // SAFETY: every mapping is at least HEADER_BYTES long (checked when it is opened) and
    // TABLE_OFFSET + TABLE_BYTES <= HEADER_BYTES; the offset is 8-aligned in a page-aligned
    // mapping, so the atomic is aligned, and it lives as long as `seg`.
    unsafe {
        let t = seg.base.add(TABLE_OFFSET).cast::<TableLock>();
        ShardLock {
            word: &*addr_of!((*t).lock),
        }
    }
}

impl<'a> Table<'a> {
    /// Locks the table within the store's lock budget and checks its slots; counts what
    /// it finds wrong, and a lock it could not have, in `errors`.
    fn lock(&self) -> Result<Locked<'a>, StoreError> {
        let (counters, timing, seg) = (self.counters, self.timing, self.seg);
        let (token, acquired) = match lock_of(seg).lock(timing, &self.tickets.stuck) {
            Ok(a) => a,
            Err(_) => {
                Counters::bump(&counters.errors);
                crate::log_limited!(
                    Level::Warn,
                    "shm: the ticket-key table's lock could not be had within {} ms",
                    timing.budget.as_millis()
                );
                return Err(StoreError::Timeout);
            }
        };
        // SAFETY: inside the mapping, as in `lock_of`.
        let base = unsafe { seg.base.add(TABLE_OFFSET + LOCK_AREA) };
        let mut locked = Locked {
            base,
            seg,
            token,
            lost: false,
        };
        let dropped = locked.check();
        let errors = match acquired {
            Acquired::Recovered => {
                crate::log_limited!(
                    Level::Warn,
                    "shm: a process died or stalled holding the ticket-key table's lock; \
                     table checked ({dropped} damaged records dropped)"
                );
                dropped.max(1)
            }
            Acquired::Clean => {
                if dropped > 0 {
                    crate::log_limited!(
                        Level::Warn,
                        "shm: {dropped} damaged ticket-key records dropped"
                    );
                }
                dropped
            }
        };
        if errors > 0 {
            counters.errors.fetch_add(errors, Ordering::Relaxed);
        }
        Ok(locked)
    }

    /// Every record, copied out ([`Store::ticket_records`](crate::store::Store::ticket_records)).
    pub fn records(&self) -> Result<Vec<TicketRecord>, StoreError> {
        let t = self.lock()?;
        let mut out = Vec::new();
        for i in 0..SLOTS {
            let m = t.meta(i);
            if !m.used {
                continue;
            }
            match t.copy_bytes(i, m.len) {
                Some(bytes) => out.push(TicketRecord { seq: m.seq, bytes }),
                // (`check` wiped such slots; only a process that stole the lock from us
                // could have written one since.)
                None => Counters::bump(&self.counters.errors),
            }
        }
        Ok(out)
    }

    /// Adds record `seq` unless the table holds it
    /// ([`Store::add_ticket_record`](crate::store::Store::add_ticket_record)); `now` (Unix
    /// seconds) tells which records are past their `keep_until`.
    pub fn add(
        &self,
        seq: u64,
        bytes: &[u8],
        keep_until: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        if bytes.len() > MAX_TICKET_RECORD_BYTES {
            return Err(StoreError::TooLarge);
        }
        let mut t = self.lock()?;
        let metas: Vec<Meta> = (0..SLOTS).map(|i| t.meta(i)).collect();
        if metas.iter().any(|m| m.used && m.seq == seq) {
            return Ok(false);
        }
        let slot = place_for(&metas, now);
        t.wipe(slot);
        t.write(slot, seq, bytes, keep_until);
        t.outcome(self.counters, true)
    }

    /// Drops (wipes) the records with these sequence numbers
    /// ([`Store::drop_ticket_records`](crate::store::Store::drop_ticket_records)).
    pub fn drop_records(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut t = self.lock()?;
        for i in 0..SLOTS {
            let m = t.meta(i);
            if m.used && seqs.contains(&m.seq) {
                t.wipe(i);
            }
        }
        t.outcome(self.counters, ())
    }
}

/// Where a new record goes: an empty slot, else the one past its `keep_until` with the
/// lowest sequence number, else the lowest sequence number.
fn place_for(metas: &[Meta], now: u64) -> usize {
    if let Some(i) = metas.iter().position(|m| !m.used) {
        return i;
    }
    let lowest = |expired: bool| {
        metas
            .iter()
            .enumerate()
            .filter(|(_, m)| !expired || m.keep_until < now)
            .min_by_key(|(_, m)| m.seq)
            .map(|(i, _)| i)
    };
    lowest(true).or_else(|| lowest(false)).unwrap_or(0)
}

impl Locked<'_> {
    /// Whether this holder still holds the lock (checked before every slot is written);
    /// once false, false for good.
    fn fenced(&mut self) -> bool {
        if !self.lost && !lock_of(self.seg).holds(self.token) {
            self.lost = true;
            crate::log_limited!(
                Level::Warn,
                "shm: this thread stalled holding the ticket-key table's lock and another \
                 took it over; it wrote nothing more"
            );
        }
        !self.lost
    }

    /// `out`, unless the lock was taken over during the operation (then part of it was not
    /// written: `Timeout`, counted as an error).
    fn outcome<T>(&mut self, counters: &Counters, out: T) -> Result<T, StoreError> {
        if self.fenced() {
            Ok(out)
        } else {
            Counters::bump(&counters.errors);
            Err(StoreError::Timeout)
        }
    }

    fn slot(&self, i: usize) -> *mut Slot {
        assert!(i < SLOTS);
        // SAFETY: slot i < SLOTS lies inside the table (TABLE_BYTES from TABLE_OFFSET, all
        // inside the header page of the mapping), 8-aligned.
        unsafe { self.base.add(i * SLOT_BYTES).cast::<Slot>() }
    }

    /// Slot `i`'s fixed fields, each read once (another process may have left anything
    /// there).
    fn meta(&self, i: usize) -> Meta {
        let s = self.slot(i);
        // SAFETY: `s` is a slot inside the mapping (see `slot`); volatile reads of plain
        // integers, valid for any bit pattern.
        unsafe {
            Meta {
                seq: addr_of!((*s).seq).read_volatile(),
                keep_until: addr_of!((*s).keep_until).read_volatile(),
                len: addr_of!((*s).len).read_volatile() as usize,
                used: addr_of!((*s).state).read_volatile() == USED,
            }
        }
    }

    /// A copy of slot `i`'s first `len` bytes; None if `len` is more than a slot holds.
    fn copy_bytes(&self, i: usize, len: usize) -> Option<SecretBytes> {
        if len > MAX_TICKET_RECORD_BYTES {
            return None;
        }
        let s = self.slot(i);
        let mut out = SecretBytes::zeroed(len);
        // SAFETY: `len` <= the slot's byte array (checked above), inside the mapping; the
        // destination is a fresh allocation of `len` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr_of!((*s).bytes).cast::<u8>(),
                out.as_mut_slice().as_mut_ptr(),
                len,
            )
        };
        Some(out)
    }

    /// Empties slot `i`, overwriting all of it with zeros (the state first: a process that
    /// dies half-way leaves an empty slot).
    fn wipe(&mut self, i: usize) {
        if !self.fenced() {
            return;
        }
        let s = self.slot(i);
        // SAFETY: we hold the lock; every write stays inside slot `i` (see `slot`); volatile,
        // so that the zeros over the old bytes are not elided.
        unsafe {
            addr_of_mut!((*s).state).write_volatile(0);
            addr_of_mut!((*s).seq).write_volatile(0);
            addr_of_mut!((*s).keep_until).write_volatile(0);
            addr_of_mut!((*s).len).write_volatile(0);
            let bytes = addr_of_mut!((*s).bytes).cast::<u8>();
            for j in 0..MAX_TICKET_RECORD_BYTES {
                bytes.add(j).write_volatile(0);
            }
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Fills the empty (wiped) slot `i` with a record; the state last, so that a process
    /// that dies half-way leaves an empty slot.
    fn write(&mut self, i: usize, seq: u64, bytes: &[u8], keep_until: u64) {
        if !self.fenced() {
            return;
        }
        let len = bytes.len().min(MAX_TICKET_RECORD_BYTES);
        let s = self.slot(i);
        // SAFETY: we hold the lock; `len` fits the slot's byte array; every write stays inside
        // slot `i`; `bytes` is the caller's memory, not the mapping's.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                addr_of_mut!((*s).bytes).cast::<u8>(),
                len,
            );
            addr_of_mut!((*s).seq).write_volatile(seq);
            addr_of_mut!((*s).keep_until).write_volatile(keep_until);
            addr_of_mut!((*s).len).write_volatile(len as u32);
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        }
        // The write that publishes the record is fenced on its own.
        if self.fenced() {
            // SAFETY: as above.
            unsafe { addr_of_mut!((*s).state).write_volatile(USED) };
        }
    }

    /// Wipes the slots that cannot be right: used with a length over a slot's, or holding a
    /// sequence number that a slot before them holds; also zeroes empty slots that are not
    /// all zero (whatever was left there). The number of records dropped.
    fn check(&mut self) -> u64 {
        let mut dropped = 0;
        let mut seen: Vec<u64> = Vec::with_capacity(SLOTS);
        for i in 0..SLOTS {
            let m = self.meta(i);
            if !m.used {
                if m.seq != 0 || m.keep_until != 0 || m.len != 0 || self.state(i) != 0 {
                    self.wipe(i);
                }
                continue;
            }
            if m.len > MAX_TICKET_RECORD_BYTES || seen.contains(&m.seq) {
                self.wipe(i);
                dropped += 1;
                continue;
            }
            seen.push(m.seq);
        }
        dropped
    }

    fn state(&self, i: usize) -> u32 {
        let s = self.slot(i);
        // SAFETY: as in `meta`.
        unsafe { addr_of!((*s).state).read_volatile() }
    }
}

/// Copies `bytes` over the table's slots (not its lock word) in the mapping at `base`,
/// from `offset` (taken modulo the slots' length), cut at their end: bytes as a crashed or
/// hostile process could leave them, for tests and the fuzz targets (`ShmStore::
/// fuzz_overwrite_tickets`). Only while no other process or thread uses the table.
#[cfg(any(test, feature = "fuzzing"))]
pub fn overwrite_slots(seg: &Segment, offset: usize, bytes: &[u8]) {
    let len = SLOTS * SLOT_BYTES;
    let at = offset % len;
    let n = bytes.len().min(len - at);
    // SAFETY: [at, at + n) lies inside the slots, which lie inside the header page of the
    // mapping; `bytes` is another allocation; nobody else uses the table meanwhile.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            seg.base.add(TABLE_OFFSET + LOCK_AREA + at),
            n,
        )
    };
}

/// The offset of slot `i`'s `len` field among the slots (for [`overwrite_slots`]).
#[cfg(any(test, feature = "fuzzing"))]
pub fn len_offset(i: usize) -> usize {
    i * SLOT_BYTES + std::mem::offset_of!(Slot, len)
}

#[cfg(test)]
mod tests;
