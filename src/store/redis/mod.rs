//! `redis://`, `redis+unix://`, `redis+cluster://`, `redis+sentinel://`: one session cache
//! for a fleet of machines, in Redis (7.0 or later), a single server, a cluster, or a
//! primary found through its Sentinels (`sentinel.rs`: found again for every connection,
//! and watched by the writer about once a second).
//!
//! # What is stored
//! A session ID `id` is stored under the key `prefix` + lowercase hex of `id`, as one byte
//! of flags (bit 0: single-use) followed by the entry's bytes (sealed by the cache core
//! unless the user accepted plaintext). Redis expires entries itself: `SET key value PX ms`
//! with the entry's remaining lifetime, at least one second.
//!
//! # What waits, and what never does
//! A server calls the cache in the middle of a handshake, so:
//! - `put` and `remove` never wait on the network. They put the command in a bounded
//!   queue (`queue=` entries) that one background thread per process, the writer
//!   ("sesscache-redis"), applies in order on its own connection; a removal after a store
//!   of the same key from the same process is applied after it. Queued writes go as one
//!   pipeline; under load a write waits until `batch_ms=` after the previous pipeline so
//!   that the writes of the meantime join it (`process::Shared::batch`). When the queue is full or
//!   the breaker is open the write is dropped and counted in `NetStats::queue_drops`
//!   (`put` then fails with `Unavailable` unless the l1 tier took the entry; `remove` fails
//!   with `Unavailable`). `remove` answers whether the l1 tier held the entry: Redis's
//!   answer is not waited for. `counters().stores` and `removes` count what the writer
//!   applied; a write that fails there is counted like a failed lookup, and lost. At
//!   exit a process waits, at most 250 ms for all its caches, until its queued writes are
//!   sent (`process::exit`), so that a server stopping gracefully keeps the sessions of
//!   its last handshakes for the other hosts. Until the writer has sent a SET, the value
//!   stays in the process's pending map, where its own `get` and `take` find it (read your
//!   writes: a client that reconnects at once to the same host resumes). The writer
//!   sends a SET only if its value is still pending: a pending single-use value that a
//!   lookup takes, or a value that `remove` forgets, never reaches Redis; a single-use
//!   value stops being pending as its SET is sent (then it is looked up in Redis), so a
//!   ticket cannot be taken twice.
//!   `put` still returns a stamp at once: a keyed hash (SipHash, a random key per store) of
//!   the flags and bytes with the top bit set, which `get` computes again over what it
//!   fetches, so the cache core's front recognises a value it already decoded. Two
//!   different values under one key get the same stamp with probability 2^-63.
//! - `get` and `take` are one round trip (a Lua script run by EVALSHA, or EVAL when the
//!   server does not have it cached yet; declared as one that may write, so a replica
//!   refuses it and a lookup never reads from a demoted primary): GET, and DEL when the value is single-use (or
//!   taken), atomically, so a TLS 1.3 ticket resumes once across the whole fleet however
//!   many lookups race. They wait at most `timeout=` ms in all, the connection included:
//!   then `Err(Timeout)` (counted in `NetStats::timeouts` and `counters().errors`); network
//!   and server errors are `Err(Unavailable)` (`NetStats::net_errors`, `errors`). Socket
//!   timeouts are set to what is left of the budget before each command, so no call can
//!   hang; a connection whose call timed out or failed on the network is dropped, never
//!   reused (a late reply would be read as the answer to the next command). One that got
//!   an error reply from the server is in step with it and stays in use, unless the reply
//!   says the node is not a primary that takes writes (`READONLY`, `MASTERDOWN`,
//!   `LOADING`: a primary demoted by a failover): then it is dropped like a failed one,
//!   and the next connection finds the primary (through the Sentinels, again).
//! - Connections: a small pool per process, so that many threads can look up at once. A
//!   lookup takes an idle connection or, when none is idle, waits (within its budget) for
//!   one that a connecting thread opens; at most 8 connects are in flight. A connect that
//!   outlasts the lookup that asked for it (a slow name lookup, a distant server) is not
//!   wasted: its connection joins the pool. A lookup whose pooled connection turns out to
//!   be dead (the server restarted) closes the idle ones and tries once more on a new one.
//! - For a cluster the crate's cluster connection routes each command by key; it follows
//!   one redirection (MOVED/ASK) within a call, and each of its socket operations and
//!   connects is bounded by the lookup budget, but a call that is redirected can take a few
//!   of them: a lookup during a resharding or a failover may exceed `timeout=`.
//!
//! # Circuit breaker
//! After 3 failures in a row (timeouts, network errors, failed connects; of lookups or
//! writes) the breaker opens. Errors the server answers with (out of memory, no
//! permission, …) are counted in `net_errors` but do not open it: the server is there, and
//! the connection stays in use. While open, lookups fail with `Unavailable` at once,
//! without touching the network (counted in `errors` only), and writes are dropped
//! (`queue_drops`), so a dead Redis costs handshakes nothing. The writer thread probes (connect, PING within the lookup budget)
//! once the back-off has passed: 100 ms, doubling while probes fail, up to 10 s (and it
//! keeps growing when the breaker opens again within 10 s of closing). An answer closes the
//! breaker, and resumption comes back by itself. `NetStats::breaker_opens` counts openings.
//!
//! # Processes
//! Prefork servers open the cache in a master that then forks workers, so nothing that is
//! bound to a process is made at open (no connection, no thread) and none is shared across
//! `fork()`: the pool, the breaker, the queue, the writer and the l1 tier live in a
//! per-process state that names its process ID. A forked child that uses the store finds a
//! state of another process, makes its own and leaves the parent's untouched (leaked: its
//! locks may be held by threads that do not exist in the child, and its sockets are the
//! parent's). The process ID comes from `crate::pid` (cached, forgotten in a child by a
//! `pthread_atfork` handler); a child made without `fork()` (a raw `clone`) would not be
//! noticed.
//!
//! The store's threads (the writer, and the short-lived "sesscache-redis-connect" ones)
//! block the signals a server waits for, so that the kernel never hands one of the
//! server's signals to them; they do not keep the process alive at exit. A panic in the
//! writer is caught there: it loses the write at hand, and the thread carries on.
//!
//! # l1
//! With `l1=N`, each process keeps up to N reusable entries (not single-use ones) in an
//! in-process [`MemoryStore`](crate::store::memory::MemoryStore) (N × 4 KiB of bytes) in front of Redis: `put` writes to both,
//! `get` tries l1 first and fills it from Redis hits, `remove` removes from both. The
//! caveat: a session removed (or replaced) by another host stays resumable in this process
//! until it expires or is evicted from l1. Single-use entries always go to Redis, so that
//! they are consumed once fleet-wide.
//!
//! # Ticket-key records
//! `tickets=shared` keeps its records in one hash, `prefix` + `tickets`, which is never an
//! entry's key (`flush` leaves it alone); added by a script (first add wins, the hash
//! expires at the latest `keep_until` it was given), on a connection of the process's own,
//! off the handshake path and outside the breaker: see `tickets.rs`.
//!
//! # Statistics
//! `occupancy()` is what this process holds: l1's entries and bytes, or (0, 0) without
//! l1; Redis is never asked on the statistics path. `counters()` and `net_stats()` are
//! this process's, since it first used the store (they live in its per-process state: a
//! forked child counts from zero). The writer thread adds what they gained to a hash in
//! Redis about once a second (`tally`), where `survey()` (`admin`: for the tool) reads the
//! fleet's sums, with the entries under the prefix counted by SCAN on every primary.
//!
//! # Passwords
//! From the URL, `password_file=` (its first line; the file must be this user's or root's,
//! with no permissions for group or others) or `password_env=`, read at open. No message
//! or log line carries it. (The crate's connection settings keep a copy, which is not
//! wiped.)

mod admin;
mod conn;
mod node;
mod process;
mod sentinel;
mod setup;
mod tally;
#[cfg(test)]
mod tests;
mod tickets;
mod tls;
mod transport;

use super::{Counters, Entry, Found, NetStats, SessionKey, Stamp, Store, StoreError, Survey};
use crate::config::RedisConfig;
use crate::error::Error;
use crate::log::Level;
use crate::secret::SecretBytes;
use crate::store::memory::Limits;
use conn::SINGLE_USE;
use process::{Proc, Shared, REDIS_STAMP};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// l1's byte budget per entry.
const L1_BYTES_PER_ENTRY: usize = 4 << 10;
/// The most writes a queue holds, whatever the URL says (each slot is reserved when the
/// queue is made).
const MAX_QUEUE: usize = 1 << 20;
/// The shortest lifetime given to Redis.
const MIN_PX_MS: u64 = 1000;

pub struct RedisStore {
    shared: Arc<Shared>,
    /// The state of the process that last used the store (see [`RedisStore::proc`]): owned
    /// by the store (from `Box::into_raw`) while it is this process's; never freed once it
    /// is another's.
    current: AtomicPtr<Proc>,
    max_value_bytes: usize,
    /// Stamps of Redis values.
    hasher: RandomState,
}

impl RedisStore {
    /// Checks the configuration and reads the password; connects to nothing (each process
    /// connects when it first uses the store).
    pub fn open(cfg: &RedisConfig, max_value_bytes: usize) -> Result<RedisStore, Error> {
        let secret = setup::read_password(&cfg.password)?;
        let connector = setup::connector(cfg, secret.as_ref())?;
        let timeout = Duration::from_millis(u64::from(cfg.timeout_ms));
        let l1 = (cfg.l1 > 0).then(|| Limits {
            capacity: cfg.l1,
            max_bytes: cfg.l1.saturating_mul(L1_BYTES_PER_ENTRY),
            max_value_bytes,
        });
        let shared = Shared {
            connector,
            secret,
            prefix: cfg.prefix.as_bytes().to_vec(),
            timeout,
            background_timeout: setup::background_timeout(timeout),
            queue: cfg.queue.min(MAX_QUEUE),
            batch: Duration::from_millis(u64::from(cfg.batch_ms)),
            l1,
            sha: redis::Script::new(conn::LOOKUP_SCRIPT)
                .get_hash()
                .to_string(),
            tally_key: [cfg.prefix.as_bytes(), tally::KEY_SUFFIX].concat(),
            tally_sha: redis::Script::new(tally::REPORT_SCRIPT)
                .get_hash()
                .to_string(),
            tickets_key: [cfg.prefix.as_bytes(), tickets::KEY_SUFFIX].concat(),
            tickets_sha: redis::Script::new(tickets::ADD_SCRIPT)
                .get_hash()
                .to_string(),
        };
        Ok(RedisStore {
            shared: Arc::new(shared),
            current: AtomicPtr::new(std::ptr::null_mut()),
            max_value_bytes,
            hasher: RandomState::new(),
        })
    }

    /// This process's state, made on its first use in each process.
    #[inline]
    fn proc(&self) -> &Proc {
        let pid = crate::pid::current();
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here came from `Box::into_raw` in `new_proc` and is
        // freed only by `drop`, which cannot run while `&self` is borrowed; a state that
        // another process made (we are its forked child) is never freed. So it is valid for
        // as long as `&self` is.
        if let Some(state) = unsafe { p.as_ref() } {
            if state.pid == pid {
                return state;
            }
        }
        self.new_proc(p, pid)
    }

    #[cold]
    fn new_proc(&self, old: *mut Proc, pid: u32) -> &Proc {
        let new = Box::into_raw(Box::new(Proc::new(self.shared.clone(), pid)));
        match self
            .current
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
        {
            // The old state, if any, belongs to the process we were forked from: left as it
            // is, on purpose.
            // SAFETY: as in `proc`: installed, so valid while `&self` is.
            Ok(_) => unsafe { &*new },
            Err(_) => {
                // Another thread of this process installed its state first.
                // SAFETY: `new` came from `Box::into_raw` above and was never shared.
                drop(unsafe { Box::from_raw(new) });
                self.proc()
            }
        }
    }

    fn redis_key(&self, key: &SessionKey) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let prefix = &self.shared.prefix;
        let mut k = Vec::with_capacity(prefix.len() + 2 * key.as_bytes().len());
        k.extend_from_slice(prefix);
        for b in key.as_bytes() {
            k.push(HEX[usize::from(b >> 4)]);
            k.push(HEX[usize::from(b & 15)]);
        }
        k
    }

    fn stamp(&self, value: &[u8]) -> Stamp {
        self.hasher.hash_one(value) | REDIS_STAMP
    }

    /// A stored value that is not one of ours (empty): counted, removed, an error.
    /// What this process can answer for `key` without Redis: its l1 tier, then its own
    /// writes not yet sent (read your writes). A single-use entry found pending is taken.
    fn local(
        &self,
        p: &Proc,
        key: &SessionKey,
        rkey: &[u8],
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Option<Found> {
        if let Some(l1) = &p.l1 {
            if let Ok(Some(found)) = l1.get(key, now, &mut |s| known(p.l1_stamp(s))) {
                return Some(Found {
                    stamp: p.l1_stamp(found.stamp),
                    ..found
                });
            }
        }
        // Stored by this process and not yet sent: found here, as Redis will hold it.
        let value = p.pending(rkey, false)?;
        let (flags, bytes) = split(&value)?;
        let stamp = self.stamp(value.as_slice());
        let consumed = flags & SINGLE_USE != 0;
        // A single-use entry is taken only if still pending (the writer may have begun to
        // send it: then Redis's copy is the one to take); taken, it is never sent.
        if consumed && p.pending(rkey, true).is_none() {
            return None;
        }
        let bytes = (!known(stamp)).then_some(bytes);
        Some(Found {
            bytes,
            stamp,
            consumed,
        })
    }

    /// What Redis answered for `key` (`fetched`), as `get` returns it: checked, filled into
    /// l1 when reusable, its bytes copied unless `known` holds them.
    fn found(
        &self,
        p: &Proc,
        key: &SessionKey,
        fetched: Option<conn::Fetched>,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError> {
        let Some(fetched) = fetched else {
            return Ok(None);
        };
        let Some((flags, bytes)) = split(&fetched.value) else {
            return Err(self.corrupt(p, key));
        };
        let mut stamp = self.stamp(fetched.value.as_slice());
        drop(fetched.value);
        if flags & SINGLE_USE == 0 && fetched.pttl_ms >= 1000 {
            if let Some(l1) = &p.l1 {
                let filled = Entry {
                    bytes: bytes.clone(),
                    expires_at: now + fetched.pttl_ms as u64 / 1000,
                    single_use: false,
                };
                if let Ok(s) = l1.put(key, filled, now) {
                    stamp = p.l1_stamp(s);
                }
            }
        }
        let bytes = (!known(stamp)).then_some(bytes);
        Ok(Some(Found {
            bytes,
            stamp,
            consumed: fetched.consumed,
        }))
    }

    fn corrupt(&self, p: &Proc, key: &SessionKey) -> StoreError {
        Counters::bump(&p.core.counters.errors);
        crate::log_limited!(
            Level::Warn,
            "redis: the value stored for session id#{:08x} is not a session entry; removed",
            crate::log::fingerprint(key.as_bytes())
        );
        p.submit(transport::pack(&[b"DEL", &self.redis_key(key)]), true);
        StoreError::Corrupt
    }

    /// Waits until the writes queued so far are done.
    #[cfg(test)]
    pub(crate) fn flush(&self) {
        self.proc().flush();
    }
}

/// [`split`], for the fuzz target `fuzz/fuzz_targets/sealed_value.rs` only (the `fuzzing`
/// feature): a value as Redis hands it back, before the cache core opens its bytes.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_split(value: &[u8]) -> Option<(u8, SecretBytes)> {
    split(&SecretBytes::from(value))
}

/// Splits a stored value into its flags and the entry's bytes; None if it has no flags.
fn split(value: &SecretBytes) -> Option<(u8, SecretBytes)> {
    let (&flags, bytes) = value.as_slice().split_first()?;
    Some((flags, SecretBytes::from(bytes)))
}

impl Store for RedisStore {
    fn put(&self, key: &SessionKey, entry: Entry, now: u64) -> Result<Stamp, StoreError> {
        if entry.bytes.len() > self.max_value_bytes {
            return Err(StoreError::TooLarge);
        }
        if entry.expires_at <= now {
            return Err(StoreError::Expired);
        }
        let p = self.proc();
        let mut value = SecretBytes::zeroed(entry.bytes.len() + 1);
        value.as_mut_slice()[0] = if entry.single_use { SINGLE_USE } else { 0 };
        value.as_mut_slice()[1..].copy_from_slice(entry.bytes.as_slice());
        let stamp = self.stamp(value.as_slice());
        let px = (entry.expires_at - now).saturating_mul(1000).max(MIN_PX_MS);
        let rkey = self.redis_key(key);
        let packed = transport::pack(&[
            b"SET",
            &rkey,
            value.as_slice(),
            b"PX",
            px.to_string().as_bytes(),
        ]);
        let local = match &p.l1 {
            Some(l1) if !entry.single_use => match l1.put(key, entry, now) {
                Ok(s) => Some(p.l1_stamp(s)),
                Err(_) => {
                    // l1 must not keep an older version of what Redis will hold.
                    let _ = l1.remove(key);
                    None
                }
            },
            Some(l1) => {
                let _ = l1.remove(key);
                None
            }
            None => None,
        };
        let queued = p.submit_set(rkey, value, packed);
        match local {
            Some(stamp) => Ok(stamp),
            None if queued => Ok(stamp),
            None => {
                Counters::bump(&p.core.counters.errors);
                Err(StoreError::Unavailable)
            }
        }
    }

    fn get(
        &self,
        key: &SessionKey,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError> {
        let p = self.proc();
        let rkey = self.redis_key(key);
        if let Some(found) = self.local(p, key, &rkey, now, known) {
            return Ok(Some(found));
        }
        let fetched = p.fetch(&rkey, false)?;
        self.found(p, key, fetched, now, known)
    }

    fn get_many(
        &self,
        keys: &[SessionKey],
        now: u64,
        known: &mut dyn FnMut(usize, Stamp) -> bool,
    ) -> Vec<Result<Option<Found>, StoreError>> {
        let p = self.proc();
        let rkeys: Vec<Vec<u8>> = keys.iter().map(|k| self.redis_key(k)).collect();
        let mut out: Vec<Option<Result<Option<Found>, StoreError>>> =
            keys.iter().map(|_| None).collect();
        let mut remote = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.local(p, key, &rkeys[i], now, &mut |s| known(i, s)) {
                Some(found) => out[i] = Some(Ok(Some(found))),
                None => remote.push(i),
            }
        }
        if !remote.is_empty() {
            let asked: Vec<&[u8]> = remote.iter().map(|&i| rkeys[i].as_slice()).collect();
            for (&i, fetched) in remote.iter().zip(p.fetch_many(&asked)) {
                out[i] = Some(
                    fetched.and_then(|f| self.found(p, &keys[i], f, now, &mut |s| known(i, s))),
                );
            }
        }
        out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect()
    }

    fn get_now(
        &self,
        key: &SessionKey,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Option<Result<Option<Found>, StoreError>> {
        let p = self.proc();
        let rkey = self.redis_key(key);
        if let Some(found) = self.local(p, key, &rkey, now, known) {
            return Some(Ok(Some(found)));
        }
        if p.core.breaker.is_open() {
            // What `fetch` would answer at once.
            Counters::bump(&p.core.counters.errors);
            return Some(Err(StoreError::Unavailable));
        }
        None
    }

    fn take(&self, key: &SessionKey, now: u64) -> Result<Option<SecretBytes>, StoreError> {
        let p = self.proc();
        let local =
            p.l1.as_ref()
                .and_then(|l1| l1.take(key, now).ok().flatten());
        let rkey = self.redis_key(key);
        if let Some(value) = p.pending(&rkey, true) {
            // Not sent yet, and now it never will be.
            if let Some((_, bytes)) = split(&value) {
                return Ok(Some(bytes));
            }
        }
        match p.fetch(&rkey, true) {
            Ok(Some(fetched)) => match split(&fetched.value) {
                Some((_, bytes)) => Ok(Some(bytes)),
                None => Err(self.corrupt(p, key)),
            },
            Ok(None) => Ok(local),
            Err(e) => match local {
                // Counted already; what this process held is still the caller's, and Redis
                // is asked to forget it when it can.
                Some(bytes) => {
                    p.submit(transport::pack(&[b"DEL", &self.redis_key(key)]), true);
                    Ok(Some(bytes))
                }
                None => Err(e),
            },
        }
    }

    /// True if the l1 tier held the entry: Redis's answer is not waited for.
    fn remove(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let p = self.proc();
        let local =
            p.l1.as_ref()
                .is_some_and(|l1| l1.remove(key).unwrap_or(false));
        let rkey = self.redis_key(key);
        p.drop_pending(&rkey);
        if p.submit(transport::pack(&[b"DEL", &rkey]), true) {
            Ok(local)
        } else {
            Counters::bump(&p.core.counters.errors);
            Err(StoreError::Unavailable)
        }
    }

    fn flush(&self) -> Result<u64, StoreError> {
        let deleted = admin::delete_entries(&self.shared)?;
        self.proc()
            .core
            .counters
            .removes
            .fetch_add(deleted, Ordering::Relaxed);
        Ok(deleted)
    }

    /// This process's.
    fn counters(&self) -> &Counters {
        &self.proc().core.counters
    }

    /// What this process holds in l1; (0, 0) without l1 (Redis is not asked).
    fn occupancy(&self) -> (u64, u64) {
        match &self.proc().l1 {
            Some(l1) => l1.occupancy(),
            None => (0, 0),
        }
    }

    fn net_stats(&self) -> NetStats {
        self.proc().core.net.snapshot()
    }

    fn survey(&self) -> Result<Option<Survey>, StoreError> {
        admin::survey(&self.shared).map(Some)
    }

    /// The hash `prefix` + `tickets` (see `tickets.rs`).
    fn ticket_records(&self) -> Result<Vec<crate::store::TicketRecord>, StoreError> {
        tickets::records(self.proc())
    }

    fn add_ticket_record(
        &self,
        seq: u64,
        bytes: &[u8],
        keep_until: u64,
    ) -> Result<bool, StoreError> {
        tickets::add(self.proc(), seq, bytes, keep_until)
    }

    fn drop_ticket_records(&self, seqs: &[u64]) -> Result<(), StoreError> {
        tickets::drop_records(self.proc(), seqs)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let p = *self.current.get_mut();
        // SAFETY: as in `proc` (`&mut self`: nothing else borrows it now).
        let Some(state) = (unsafe { p.as_ref() }) else {
            return;
        };
        if state.pid == crate::pid::current() {
            // Its writer finishes the queued writes, then ends.
            // SAFETY: this process's state, from `Box::into_raw`, owned by the store and
            // no longer borrowed.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}
