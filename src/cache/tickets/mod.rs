//! Shared ticket keys (`tickets=shared`): stateless session tickets encrypted under keys
//! that live in the cache's backend, so that every process (`shm:`) or host (`redis`)
//! using the cache opens every other's tickets, across restarts, and the keys rotate
//! without a leader (the rules are in [`plan`]).
//!
//! - The keys a process holds are in memory, in a [`Ring`] behind a read-write lock that
//!   the background refresher takes only to swap in what it read (nanoseconds): OpenSSL's
//!   ticket callback reads them with no I/O and no allocation.
//! - A refresher thread per process re-reads the records every [`Timing::refresh_ms`],
//!   makes the key that is due (add-if-absent: of several processes, one wins and every one
//!   takes the winner's), drops expired records, and applies revocations. A forked child
//!   starts its own on its first ticket.
//! - Failures: a backend that cannot be read keeps the keys held for as long as they are
//!   valid; with none held (never reached), the process's own key serves, as OpenSSL's
//!   would, and shared keys take over when the backend answers. Said once each way in the
//!   log. A record that does not open is refused, counted and never used.
//! - `memory:`: the records are the process's own, so keys rotate but are not shared.

pub mod key;
pub mod plan;
pub mod record;

use crate::clock::now;
use crate::log::Level;
use crate::store::{Counters, Store, StoreError};
use key::{TicketKey, NAME_LEN};
use plan::Timing;
use record::{RecordSeal, Refused};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock, Weak};

/// The keys a process holds: shared ones from the backend, and its own.
pub struct Ring {
    shared: Vec<TicketKey>,
    local: Option<TicketKey>,
}

impl Ring {
    /// The key to encrypt a new ticket with at `now`: the shared one due, else the
    /// process's own.
    pub fn encryptor(&self, now: u64) -> Option<&TicketKey> {
        plan::encryptor(&self.shared, now).or(self.local.as_ref())
    }

    /// The key named `name` if it still decrypts at `now`, and whether a ticket it opened
    /// should be renewed (it is not the key that encrypts now).
    pub fn decryptor(&self, name: &[u8], now: u64) -> Option<(&TicketKey, bool)> {
        let key = plan::decryptor(&self.shared, name, now)
            .or_else(|| self.local.as_ref().filter(|k| k.name[..] == *name))?;
        let current = self.encryptor(now).is_some_and(|e| std::ptr::eq(e, key));
        Some((key, !current))
    }

    /// The shared keys held (for tests and the tool).
    pub fn shared(&self) -> &[TicketKey] {
        &self.shared
    }
}

/// What a process counted about its tickets (this process only).
#[derive(Default)]
pub struct TicketCounters {
    /// Tickets encrypted under a shared key, and under the process's own.
    pub encrypted_shared: AtomicU64,
    pub encrypted_local: AtomicU64,
    /// Tickets opened; of those, renewed (opened under a key that no longer encrypts).
    pub decrypted: AtomicU64,
    pub renewed: AtomicU64,
    /// Tickets whose key name is not held (or expired): a full handshake.
    pub unknown: AtomicU64,
    /// Records refused (do not open, malformed): never used.
    pub refused_records: AtomicU64,
    /// Keys this process made and added to the backend.
    pub created: AtomicU64,
    /// Refreshes that could not read the backend.
    pub refresh_errors: AtomicU64,
}

/// What the log was last told about the backend: nothing yet, reachable, or not.
const SAID_NOTHING: u8 = 0;
const SAID_REACHABLE: u8 = 1;
const SAID_UNREACHABLE: u8 = 2;

struct Inner {
    store: Arc<dyn Store>,
    seal: Arc<RecordSeal>,
    timing: Timing,
    /// The backend is read without a network round trip (`memory:`, `shm:`).
    local_backend: bool,
    ring: RwLock<Ring>,
    /// The process whose refresher thread runs (0: none yet).
    refresher_pid: AtomicU32,
    said: AtomicU8,
    counters: TicketCounters,
    /// The records already refused (counted and logged once each).
    refused_seen: Mutex<Vec<u64>>,
    /// Dropped with the keys: the refresher, waiting on the other end, then ends at once.
    stop_refresher: Mutex<Option<mpsc::Sender<()>>>,
}

/// A cache's shared ticket keys, for one process (and its forked children).
pub struct Tickets {
    inner: Arc<Inner>,
}

/// One record of the backend, as the tool shows it.
#[derive(Debug)]
pub struct Generation {
    pub seq: u64,
    /// The key's windows, or why the record was refused.
    pub key: Result<GenerationInfo, Refused>,
}

/// A key's public facts (never its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationInfo {
    /// The key's name: sent in clear at the start of every ticket it encrypts (what
    /// `openssl sess_id -text` shows first under "TLS session ticket"), so not secret.
    pub name: [u8; NAME_LEN],
    pub created: u64,
    pub enc_from: u64,
    pub enc_until: u64,
    pub decrypt_until: u64,
    pub revokes: bool,
}

/// What a refresh read from the backend.
struct Read {
    valid: Vec<TicketKey>,
    max_seq: u64,
}

/// Reads and opens the backend's records; `refused` hears of each one that does not open.
fn read_records(
    store: &dyn Store,
    seal: &RecordSeal,
    mut refused: impl FnMut(u64, Refused),
) -> Result<Read, StoreError> {
    let records = store.ticket_records()?;
    let mut valid = Vec::with_capacity(records.len());
    let mut max_seq = 0;
    for r in records {
        max_seq = max_seq.max(r.seq);
        match seal.open(r.seq, r.bytes.as_slice()) {
            Ok(k) => valid.push(k),
            Err(why) => refused(r.seq, why),
        }
    }
    valid.sort_by_key(|k| k.seq);
    Ok(Read { valid, max_seq })
}

impl Inner {
    /// Counts and logs a refused record, once per record and process.
    fn refused(&self, seq: u64, why: Refused) {
        // Only refreshers take it; a forked child's first may find its parent's held.
        let Ok(mut seen) = self.refused_seen.try_lock() else {
            Counters::bump(&self.counters.refused_records);
            return;
        };
        if seen.contains(&seq) {
            return;
        }
        if seen.len() >= 64 {
            seen.remove(0);
        }
        seen.push(seq);
        Counters::bump(&self.counters.refused_records);
        Counters::bump(&self.store.counters().errors);
        crate::log_limited!(
            Level::Warn,
            "tickets: key record {seq} refused: it {why}; it is never used"
        );
    }

    fn read(&self) -> Result<Read, StoreError> {
        read_records(&*self.store, &self.seal, |seq, why| self.refused(seq, why))
    }
}

/// How many times a ticket operation tries the ring's lock before it gives up. The writer
/// holds it only to swap a vector (nanoseconds); a lock that stays held is one a forked
/// child inherited from a thread of its parent that was swapping at the fork (that thread
/// is not in the child): then the ticket operation goes without a key (no ticket, or a full
/// handshake) instead of hanging the process.
const LOCK_TRIES: u32 = 10_000;

fn read_ring(ring: &RwLock<Ring>) -> Option<std::sync::RwLockReadGuard<'_, Ring>> {
    for i in 0..LOCK_TRIES {
        match ring.try_read() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                if i % 64 == 63 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
    stuck_lock();
    None
}

fn write_ring(ring: &RwLock<Ring>) -> Option<std::sync::RwLockWriteGuard<'_, Ring>> {
    for _ in 0..LOCK_TRIES {
        match ring.try_write() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    stuck_lock();
    None
}

#[cold]
fn stuck_lock() {
    crate::log_limited!(
        Level::Error,
        "tickets: the ticket keys stay locked (this process was forked while they were being swapped?): tickets go without them here"
    );
}

impl Tickets {
    /// Starts shared ticket keys on `store`: reads (or makes) the keys once now, bounded by
    /// the backend's own timeouts, and starts the refresher.
    /// `local_backend`: the backend is read without a network round trip (`memory:`,
    /// `shm:`).
    pub fn start(
        store: Arc<dyn Store>,
        seal: Arc<RecordSeal>,
        timing: Timing,
        local_backend: bool,
    ) -> Tickets {
        let tickets = Tickets::new(store, seal, timing, local_backend);
        tickets.refresh_at(now());
        tickets.ensure_refresher();
        tickets
    }

    /// Without a first refresh or a refresher (tests drive time themselves).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        seal: Arc<RecordSeal>,
        timing: Timing,
        local_backend: bool,
    ) -> Tickets {
        Tickets {
            inner: Arc::new(Inner {
                store,
                seal,
                timing,
                local_backend,
                ring: RwLock::new(Ring {
                    shared: Vec::new(),
                    local: TicketKey::local(now()),
                }),
                refresher_pid: AtomicU32::new(0),
                said: AtomicU8::new(SAID_NOTHING),
                counters: TicketCounters::default(),
                refused_seen: Mutex::new(Vec::new()),
                stop_refresher: Mutex::new(None),
            }),
        }
    }

    pub fn timing(&self) -> &Timing {
        &self.inner.timing
    }

    pub fn counters(&self) -> &TicketCounters {
        &self.inner.counters
    }

    /// Runs `f` with the key that encrypts at `now` (and whether it is the process's own):
    /// no I/O, no allocation. None only if no key at all is held (the random generator
    /// failed when the process's own was made).
    #[inline]
    pub fn with_encryptor<R>(&self, now: u64, f: impl FnOnce(&TicketKey) -> R) -> Option<R> {
        self.ensure_refresher();
        let ring = read_ring(&self.inner.ring)?;
        let key = ring.encryptor(now)?;
        let c = &self.inner.counters;
        Counters::bump(if key.is_local() {
            &c.encrypted_local
        } else {
            &c.encrypted_shared
        });
        Some(f(key))
    }

    /// Runs `f` with the key named `name` if it still decrypts at `now`, and whether the
    /// ticket should be renewed. None (counted): unknown or expired, a full handshake.
    #[inline]
    pub fn with_decryptor<R>(
        &self,
        name: &[u8; NAME_LEN],
        now: u64,
        f: impl FnOnce(&TicketKey, bool) -> R,
    ) -> Option<R> {
        self.ensure_refresher();
        let c = &self.inner.counters;
        let Some(ring) = read_ring(&self.inner.ring) else {
            Counters::bump(&c.unknown);
            return None;
        };
        match ring.decryptor(name, now) {
            Some((key, renew)) => {
                Counters::bump(&c.decrypted);
                if renew {
                    Counters::bump(&c.renewed);
                }
                Some(f(key, renew))
            }
            None => {
                Counters::bump(&c.unknown);
                None
            }
        }
    }

    /// Runs `f` on the keys held (tests, the tool).
    pub fn with_ring<R>(&self, f: impl FnOnce(&Ring) -> R) -> Option<R> {
        read_ring(&self.inner.ring).map(|r| f(&r))
    }

    /// Starts this process's refresher if it has none (the first call, and the first in a
    /// forked child, whose parent's thread did not come along).
    #[inline]
    fn ensure_refresher(&self) {
        let pid = crate::pid::current();
        let had = self.inner.refresher_pid.load(Ordering::Relaxed);
        if had != pid {
            self.spawn_refresher(had, pid);
        }
    }

    #[cold]
    fn spawn_refresher(&self, had: u32, pid: u32) {
        if self
            .inner
            .refresher_pid
            .compare_exchange(had, pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // A forked child holds the keys its parent held when it forked, which may be long
        // out of date (a parent that itself made no ticket since, like a daemonized master
        // forking workers at a reload): they are read again before they are used, here
        // when that is cheap (a segment, this process's memory), first thing on the new
        // thread otherwise (a server elsewhere: no network on a handshake's path).
        let forked = had != 0;
        let read_first = forked && !self.inner.local_backend;
        if forked && self.inner.local_backend {
            self.refresh_at(now());
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let pause = std::time::Duration::from_millis(self.inner.timing.refresh_ms);
        let (stop, stopped) = mpsc::channel::<()>();
        // A parent's sender (we are its forked child) is replaced: its thread is not here.
        // (A lock its parent held at the fork stays held here: the sender is then kept
        // forever, and the thread ends when the keys are gone, at its next wake-up.) The
        // parent's sender is left as it is, never dropped: dropping the last sender locks
        // the channel's waker, which the parent's thread may have held at the fork (it
        // does while it starts or ends a wait), and which nobody would ever unlock here.
        // Seen: an nginx worker forked while its master's refresher was starting hung in
        // its first ticket callback.
        let replace = |slot: &mut Option<mpsc::Sender<()>>, stop| {
            if let Some(parents) = slot.replace(stop) {
                std::mem::forget(parents);
            }
        };
        match self.inner.stop_refresher.try_lock() {
            Ok(mut slot) => replace(&mut slot, stop),
            Err(std::sync::TryLockError::Poisoned(p)) => replace(&mut p.into_inner(), stop),
            Err(std::sync::TryLockError::WouldBlock) => std::mem::forget(stop),
        }
        let spawned = crate::threads::spawn_quiet("sesscache-tickets", move || {
            let mut wait = !read_first;
            loop {
                // Ends as soon as the keys are dropped (the sender with them).
                if wait && stopped.recv_timeout(pause) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
                wait = true;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.refresher_pid.load(Ordering::Relaxed) != crate::pid::current() {
                    return;
                }
                Tickets { inner }.refresh_at(now());
            }
        });
        if let Err(e) = spawned {
            crate::log!(
                Level::Error,
                "tickets: cannot start the key refresher ({e}): the keys held now are used until they expire"
            );
        }
    }

    /// Reads the backend's records, makes the key that is due, drops expired records, and
    /// swaps what is valid into the ring. On a backend error the keys held stay (expired
    /// ones go).
    pub(crate) fn refresh_at(&self, now: u64) {
        let inner = &*self.inner;
        let t = &inner.timing;
        let mut outcome = self.sync_backend(now, t);
        if let Ok(read) = &mut outcome {
            plan::apply_revocations(&mut read.valid);
        }
        match outcome {
            Ok(read) => {
                let mut fresh = read.valid;
                fresh.retain(|k| now < k.decrypt_until);
                if inner.said.swap(SAID_REACHABLE, Ordering::Relaxed) == SAID_UNREACHABLE {
                    crate::log!(
                        Level::Warn,
                        "tickets: the backend answers again: shared ticket keys in use"
                    );
                }
                // The old keys are wiped after the lock is released: it is held for a swap.
                let _old =
                    write_ring(&inner.ring).map(|mut r| std::mem::replace(&mut r.shared, fresh));
            }
            Err(e) => {
                Counters::bump(&inner.counters.refresh_errors);
                if inner.said.swap(SAID_UNREACHABLE, Ordering::Relaxed) != SAID_UNREACHABLE {
                    let held = self.with_ring(|r| r.shared.len()).unwrap_or(0);
                    crate::log!(
                        Level::Warn,
                        "tickets: cannot read the shared ticket keys ({e}); {}",
                        if held > 0 {
                            "the keys held are used while they are valid"
                        } else {
                            "tickets use this process's own key until the backend answers"
                        }
                    );
                }
                if let Some(mut ring) = write_ring(&inner.ring) {
                    ring.shared.retain(|k| now < k.decrypt_until);
                }
            }
        }
    }

    /// One exchange with the backend: read, make what is due (re-reading after a lost
    /// race), drop what expired or was revoked.
    fn sync_backend(&self, now: u64, t: &Timing) -> Result<Read, StoreError> {
        let inner = &*self.inner;
        let store = &*inner.store;
        let mut read = inner.read()?;
        for _ in 0..3 {
            let mut valid_now: Vec<&TicketKey> = read.valid.iter().collect();
            if let Some(r) = valid_now.iter().filter(|k| k.revokes).map(|k| k.seq).max() {
                valid_now.retain(|k| k.seq >= r);
            }
            let plan = plan::plan(&valid_now, read.max_seq, now, t);
            let mut drop = plan.drop;
            if let Some(r) = read.valid.iter().filter(|k| k.revokes).map(|k| k.seq).max() {
                drop.extend(read.valid.iter().filter(|k| k.seq < r).map(|k| k.seq));
            }
            if !drop.is_empty() {
                // Best effort: whoever refreshes next drops them otherwise.
                let _ = store.drop_ticket_records(&drop);
            }
            let Some(schedule) = plan.create else {
                return Ok(read);
            };
            let key = TicketKey::generate(schedule).ok_or(StoreError::Unavailable)?;
            let record = inner.seal.seal(&key).ok_or(StoreError::Unavailable)?;
            if store.add_ticket_record(key.seq, record.as_slice(), key.decrypt_until)? {
                Counters::bump(&inner.counters.created);
                crate::log!(
                    Level::Info,
                    "tickets: made key generation {} ({key:?})",
                    key.seq
                );
            }
            read = inner.read()?;
        }
        Ok(read)
    }
}

/// The records of `store`, for `sesscache tickets`: each key's windows, or why it is
/// refused.
pub fn generations(store: &dyn Store, seal: &RecordSeal) -> Result<Vec<Generation>, StoreError> {
    let mut out: Vec<Generation> = store
        .ticket_records()?
        .into_iter()
        .map(|r| Generation {
            seq: r.seq,
            key: seal
                .open(r.seq, r.bytes.as_slice())
                .map(|k| GenerationInfo {
                    name: k.name,
                    created: k.created,
                    enc_from: k.enc_from,
                    enc_until: k.enc_until,
                    decrypt_until: k.decrypt_until,
                    revokes: k.revokes,
                }),
        })
        .collect();
    out.sort_by_key(|g| g.seq);
    Ok(out)
}

/// Makes a new key generation now (`sesscache tickets rotate`), starting after the lead;
/// with `revoke`, starting at once and dropping every older record (processes drop the
/// older keys they hold at their next refresh). Returns the new generation's number.
pub fn rotate(
    store: &dyn Store,
    seal: &RecordSeal,
    t: &Timing,
    now: u64,
    revoke: bool,
) -> Result<u64, StoreError> {
    for _ in 0..3 {
        let read = read_records(store, seal, |_, _| {})?;
        let schedule =
            plan::rotation(read.max_seq, now, t, revoke).ok_or(StoreError::Unavailable)?;
        let key = TicketKey::generate(schedule).ok_or(StoreError::Unavailable)?;
        let record = seal.seal(&key).ok_or(StoreError::Unavailable)?;
        if store.add_ticket_record(key.seq, record.as_slice(), key.decrypt_until)? {
            if revoke {
                let older: Vec<u64> = store
                    .ticket_records()?
                    .iter()
                    .map(|r| r.seq)
                    .filter(|&s| s < key.seq)
                    .collect();
                store.drop_ticket_records(&older)?;
            }
            return Ok(key.seq);
        }
    }
    Err(StoreError::Timeout)
}

#[cfg(test)]
mod tests;
