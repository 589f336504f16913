//! What each process has of its own: the connection pool, the circuit breaker, the write
//! queue with its writer thread, the pending writes and the l1 tier. A forked child must
//! not use any of its parent's (a lock held by a thread that does not exist in the child
//! would never be released; a socket would be shared by two processes), so the store keeps
//! them in a [`Proc`] that names its process and makes a new one in a child (see
//! `RedisStore::proc`).
//!
//! One concept a module:
//! - `shared`: [`Shared`], the store's settings, which every process shares (plain data).
//! - `state`: `Core`, what this process's threads share behind an `Arc`, and how failures
//!   are counted and told to the breaker.
//! - `pool`: the lookups' idle connections, and the threads that open new ones.
//! - `breaker`: the circuit breaker; it reads no clock (times are passed in).
//! - `pending`: values queued for Redis and not yet sent, which this process's lookups
//!   find (read your writes).
//! - `writer`: the writer thread and its one send path, over a `Transport`.
//! - `exit`: the flush of the queued writes when the process exits.
//!
//! Threads: the writer ("sesscache-redis", one per process, started by the first write or
//! by the breaker opening) applies queued writes in order and probes Redis while the breaker
//! is open; short-lived connecting threads ("sesscache-redis-connect", at most
//! `pool::MAX_CONNECTING` at once) open connections for the pool, so that a lookup waits
//! for a connection no longer than its budget even when the connect itself (a name to
//! resolve, a slow handshake) takes longer: the connection is kept for the next lookups.
//! The callers' threads look up here ([`Proc::fetch`]) and queue writes ([`Proc::submit`]).
//! All of them share the process's `Core`; the `Proc` owns the writer's queue.

mod breaker;
mod exit;
mod pending;
mod pool;
mod shared;
mod state;
mod writer;

use super::conn::{self, is_server_reply, is_stale, Conn, Fetched};
use crate::clock::Monotonic;
use crate::log::Level;
use crate::secret::SecretBytes;
use crate::store::memory::MemoryStore;
use crate::store::{Counters, Stamp, StoreError};
use crate::threads::lock;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

#[cfg(test)]
pub(crate) use breaker::FAILURES_TO_OPEN;
pub(crate) use shared::Shared;
use state::Core;
use writer::{writer_main, Job};

/// Set in every stamp made from a Redis value, clear in every l1 stamp.
pub(crate) const REDIS_STAMP: Stamp = 1 << 63;

/// This process's state, as `RedisStore::proc` hands it out.
pub(crate) struct Proc {
    pub pid: u32,
    pub core: Arc<Core>,
    /// Reusable entries this process stored or found, in front of Redis.
    pub l1: Option<MemoryStore>,
    /// Added to l1 stamps: another process's l1 (a parent's, whose decoded sessions a
    /// forked child inherits in the cache's front) numbers its entries from the same start.
    stamp_base: u64,
    writer: OnceLock<Arc<SyncSender<Job>>>,
    writer_start: Mutex<()>,
    /// When the writer thread may be tried again after it could not be started.
    writer_retry_ms: AtomicU64,
    /// The connection for ticket-key records (`tickets`), this process's own: made on
    /// first use, kept while it works.
    pub tickets_conn: Mutex<Option<Conn>>,
}

impl Proc {
    pub fn new(shared: Arc<Shared>, pid: u32) -> Proc {
        let l1 = shared.l1.map(MemoryStore::new);
        Proc {
            pid,
            core: Arc::new(Core::new(shared, Arc::new(Monotonic))),
            l1,
            stamp_base: std::collections::hash_map::RandomState::new().hash_one(pid),
            writer: OnceLock::new(),
            writer_start: Mutex::new(()),
            writer_retry_ms: AtomicU64::new(0),
            tickets_conn: Mutex::new(None),
        }
    }

    fn shared(&self) -> &Shared {
        &self.core.shared
    }

    /// An l1 stamp as this store hands it out: top bit clear (Redis stamps have it set).
    pub fn l1_stamp(&self, s: Stamp) -> Stamp {
        s.wrapping_add(self.stamp_base) & !REDIS_STAMP
    }

    /// The lookup script's round trip for `rkey`, within the lookup budget; counts what
    /// fails. Never touches the network while the breaker is open.
    pub fn fetch(&self, rkey: &[u8], take: bool) -> Result<Option<Fetched>, StoreError> {
        let sha = &self.shared().sha;
        self.round_trip(|c, deadline| conn::lookup(c, sha, rkey, take, deadline))
    }

    /// [`Proc::fetch`] for several keys in one round trip (a pipeline), within one lookup
    /// budget: a result per key, a server's error reply to one key being that key's error
    /// (counted). A cluster's connection, which routes one command at a time, looks them up
    /// one after the other. A failure of the round trip is every key's, counted once.
    pub fn fetch_many(&self, rkeys: &[&[u8]]) -> Vec<Result<Option<Fetched>, StoreError>> {
        let sha = &self.shared().sha;
        match self.round_trip(
            |c, deadline| match conn::lookup_many(c, sha, rkeys, deadline) {
                Some(replies) => replies,
                None => {
                    let mut out = Vec::with_capacity(rkeys.len());
                    for k in rkeys {
                        match conn::lookup(c, sha, k, false, deadline) {
                            // Out of step: a late reply would be read as the next key's.
                            Err(e) if !is_server_reply(&e) => return Err(e),
                            r => out.push(r),
                        }
                    }
                    Ok(out)
                }
            },
        ) {
            Ok(replies) => replies
                .into_iter()
                .map(|r| r.map_err(|e| self.core.failed(&e, "lookup", false).0))
                .collect(),
            Err(e) => (0..rkeys.len()).map(|_| Err(e)).collect(),
        }
    }

    /// One round trip `op` on a pooled connection, within the lookup budget: the breaker
    /// asked first (no network while it is open), a connection that died since it was last
    /// used replaced once, failures counted and told to the breaker. What `op` returns may
    /// hold a server's error replies (the connection is in step then); any other failure
    /// inside it is its `Err`, which drops the connection (a late reply would be read as the
    /// next command's).
    fn round_trip<T>(
        &self,
        mut op: impl FnMut(&mut Conn, Instant) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let core = &self.core;
        let shared = self.shared();
        if self.writer.get().is_none() {
            // A process that only looks sessions up still reports its counters, and its
            // writer's probes close the breaker.
            self.wake();
        }
        if core.breaker.is_open() {
            Counters::bump(&core.counters.errors);
            return Err(StoreError::Unavailable);
        }
        let deadline = Instant::now() + shared.timeout;
        let mut retried = false;
        loop {
            let (mut c, reused) = match core.pool.checkout(&core.shared, deadline) {
                Ok(c) => c,
                Err(e) => {
                    core.count_failure(e);
                    if e == StoreError::Timeout {
                        crate::log_limited!(
                            Level::Warn,
                            "redis: a lookup found no connection within {} ms",
                            shared.timeout.as_millis()
                        );
                    }
                    // (A connect that failed said why.)
                    if core.trip() {
                        self.wake();
                    }
                    return Err(e);
                }
            };
            let e = match op(&mut c, deadline) {
                Ok(done) => {
                    core.pool.checkin(c);
                    core.breaker.success();
                    return Ok(done);
                }
                Err(e) => e,
            };
            if is_server_reply(&e) {
                // An answer: the connection is in step, the server is there.
                core.pool.checkin(c);
                return Err(core.failed(&e, "lookup", false).0);
            }
            // Dropped: after a timeout a late reply would be read as the next command's.
            drop(c);
            if reused && !retried && is_stale(&e) {
                // The server went away since the connection was last used (a restart): the
                // other idle ones are as dead. One more try.
                core.pool.clear();
                retried = true;
                continue;
            }
            let (err, opened) = core.failed(&e, "lookup", true);
            if opened {
                self.wake();
            }
            return Err(err);
        }
    }

    /// Queues a write for the writer thread. False (and counted in `queue_drops`) when it
    /// was dropped: the queue is full, the breaker is open, or no writer could be started.
    pub fn submit(&self, packed: SecretBytes, remove: bool) -> bool {
        self.submit_job(packed, remove, None)
    }

    /// Queues a SET of `value` under Redis key `rkey` (packed in `packed`), and keeps the
    /// value where this process's lookups find it until the writer has sent it.
    pub fn submit_set(&self, rkey: Vec<u8>, value: SecretBytes, packed: SecretBytes) -> bool {
        let seq = self.core.pending.insert(rkey.clone(), value);
        let queued = self.submit_job(packed, false, Some((rkey.clone(), seq)));
        if !queued {
            self.core.pending.forget(&rkey, seq);
        }
        queued
    }

    /// A value this process queued under `rkey` and has not begun to send: a copy, or
    /// (`take`) the value itself, which is then no longer pending, so that its SET is not
    /// sent at all.
    pub fn pending(&self, rkey: &[u8], take: bool) -> Option<SecretBytes> {
        self.core.pending.get(rkey, take)
    }

    /// Forgets what this process queued under `rkey` (it is being removed).
    pub fn drop_pending(&self, rkey: &[u8]) {
        self.core.pending.remove(rkey);
    }

    fn submit_job(
        &self,
        packed: SecretBytes,
        remove: bool,
        pending: Option<(Vec<u8>, u64)>,
    ) -> bool {
        let core = &self.core;
        if core.breaker.is_open() {
            core.count_drop();
            return false;
        }
        let queued = match self.writer() {
            Some(tx) => tx
                .try_send(Job::Write {
                    packed,
                    remove,
                    pending,
                })
                .is_ok(),
            None => false,
        };
        if !queued {
            core.count_drop();
        }
        queued
    }

    /// Has the writer look at the breaker (which just opened) now.
    fn wake(&self) {
        if let Some(tx) = self.writer() {
            // A full queue wakes it anyway.
            let _ = tx.try_send(Job::Wake);
        }
    }

    /// The writer's queue, the thread started on first use.
    fn writer(&self) -> Option<&SyncSender<Job>> {
        if let Some(tx) = self.writer.get() {
            return Some(tx);
        }
        let _one = lock(&self.writer_start);
        if let Some(tx) = self.writer.get() {
            return Some(tx);
        }
        let now = self.core.now_ms();
        if now < self.writer_retry_ms.load(Ordering::Relaxed) {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(self.shared().queue);
        let core = self.core.clone();
        match crate::threads::spawn_quiet("sesscache-redis", move || writer_main(core, rx)) {
            Ok(_) => {
                let tx = Arc::new(tx);
                exit::register(self.pid, &tx);
                let _ = self.writer.set(tx);
                self.writer.get().map(|tx| &**tx)
            }
            Err(e) => {
                self.writer_retry_ms.store(now + 1000, Ordering::Relaxed);
                crate::log_limited!(
                    Level::Error,
                    "redis: cannot start the writer thread ({e}); writes are dropped"
                );
                None
            }
        }
    }

    /// Waits until every write queued so far is done (or dropped).
    #[cfg(test)]
    pub fn flush(&self) {
        if let Some(tx) = self.writer.get() {
            exit::flush_queue(tx, std::time::Duration::from_secs(30));
        }
    }

    /// Has the writer thread panic in its next step.
    #[cfg(test)]
    pub fn panic_writer(&self) {
        self.writer().unwrap().send(Job::Panic).unwrap();
    }

    #[cfg(test)]
    pub fn idle_connections(&self) -> usize {
        self.core.pool.idle()
    }
}

// `RedisStore` shares one `Proc` between threads through a raw pointer.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Proc>();
};
