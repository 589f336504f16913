//! What each process has of its own: the connection pool, the circuit breaker, the write
//! queue with its writer thread, and the l1 tier. A forked child must not use any of its
//! parent's (a lock held by a thread that does not exist in the child would never be
//! released; a socket would be shared by two processes), so the store keeps them in a
//! [`Proc`] that names its process and makes a new one in a child (see `RedisStore::proc`).
//!
//! Threads: the writer ("sesscache-redis", one per process, started by the first write or
//! by the breaker opening) applies queued writes in order and probes Redis while the breaker
//! is open; short-lived connecting threads ("sesscache-redis-connect", at most
//! [`MAX_CONNECTING`] at once) open connections for the pool, so that a lookup waits for a
//! connection no longer than its budget even when the connect itself (a name to resolve, a
//! slow handshake) takes longer: the connection is kept for the next lookups.

use super::conn::{
    self, classify, describe, is_server_reply, is_stale, pack, Conn, Connector, Fetched,
};
use super::setup::Secret;
use super::tally::{self, Net};
use crate::clock::monotonic_ms;
use crate::log::Level;
use crate::secret::SecretBytes;
use crate::store::memory::{Limits, MemoryStore};
use crate::store::{Counters, Stamp, StoreError};
use redis::{RedisError, Value};
use std::hash::BuildHasher;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Set in every stamp made from a Redis value, clear in every l1 stamp.
pub(crate) const REDIS_STAMP: Stamp = 1 << 63;
/// Idle connections kept per process; more are closed when returned.
pub(crate) const MAX_IDLE: usize = 16;
/// Connections being opened at once per process.
pub(crate) const MAX_CONNECTING: usize = 8;
/// Consecutive failures (timeouts, network or server errors) that open the breaker.
pub(crate) const FAILURES_TO_OPEN: u32 = 3;
/// The breaker's first back-off; it doubles while probes fail, up to the most.
pub(crate) const BACKOFF_MIN_MS: u64 = 100;
pub(crate) const BACKOFF_MAX_MS: u64 = 10_000;
/// A breaker that opens again within this time of closing keeps doubling its back-off
/// instead of starting over (a server that answers probes but not lookups).
const CALM_MS: u64 = 10_000;
/// How long the idle writer sleeps between checks of the breaker.
const WRITER_IDLE: Duration = Duration::from_secs(1);
/// The most queued writes the writer sends as one pipeline (one system call each way and
/// one wake-up of Redis, instead of one round trip each, when stores come faster than
/// round trips).
const MAX_BATCH: usize = 64;

/// What every process of a store shares: its settings. Plain data: nothing here is tied to
/// a process, so a forked child may use its copy.
pub(crate) struct Shared {
    pub connector: Connector,
    /// For cutting the password out of log lines, should the crate ever quote it.
    pub secret: Option<Secret>,
    pub prefix: Vec<u8>,
    /// A lookup's budget, connection included.
    pub timeout: Duration,
    /// What background connects and writes may take.
    pub background_timeout: Duration,
    pub queue: usize,
    /// Under load, a write waits until this long after the previous pipeline was sent
    /// (`batch_ms=`), so that the writes of the meantime go with it: on a busy server each
    /// pipeline then carries several, and the writer and Redis wake once for them instead of
    /// once each. A write that finds the writer idle for longer goes at once, so a lone store
    /// is never delayed; the process itself finds its writes at once, in its pending map.
    pub batch: Duration,
    pub l1: Option<Limits>,
    /// SHA-1 of [`conn::LOOKUP_SCRIPT`], for EVALSHA.
    pub sha: String,
    /// The counters' hash (`tally`), and the SHA-1 of its report script.
    pub tally_key: Vec<u8>,
    pub tally_sha: String,
    /// The ticket-key records' hash (`tickets`), and the SHA-1 of its add script.
    pub tickets_key: Vec<u8>,
    pub tickets_sha: String,
}

impl Shared {
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_ref().map(Secret::as_str)
    }
}

/// [`Core::claim_pending`]'s answer.
enum Claim {
    Skip,
    Claimed,
    Readable,
}

/// A write taken off the queue: its packed command, whether it is a removal, and its
/// pending value's key and number (`Job::Write`).
type QueuedWrite = (SecretBytes, bool, Option<(Vec<u8>, u64)>);

/// A queued write, or a message for the writer.
pub(crate) enum Job {
    /// A packed SET or DEL; a SET names its entry in [`Core::pending`] (Redis key, sequence
    /// number), which the writer forgets once the SET is done.
    Write {
        packed: SecretBytes,
        remove: bool,
        pending: Option<(Vec<u8>, u64)>,
    },
    /// The breaker opened: time to plan a probe.
    Wake,
    /// Answered once every job queued before it is done.
    Flush(mpsc::Sender<()>),
    /// A bug in the writer, simulated.
    #[cfg(test)]
    Panic,
}

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

/// What this process's threads share with it.
pub(crate) struct Core {
    pub shared: Arc<Shared>,
    pool: Pool,
    pub breaker: Breaker,
    /// This process's counters (a forked child starts from zero): the writer reports them
    /// to Redis (`tally`), where the whole fleet's add up.
    pub counters: Counters,
    pub net: Net,
    /// Values this process queued for Redis that the writer has not yet sent, by Redis key:
    /// what this process stored, its own lookups find at once (read your writes), even
    /// when the client comes back before the SET reaches Redis. At most one per queued
    /// write, so bounded by the queue.
    pending: Mutex<Pending>,
}

/// [`Core::pending`]: the values, and the next sequence number (a SET forgets only its
/// own value, not a newer one stored under the same key since).
#[derive(Default)]
struct Pending {
    values: std::collections::HashMap<Vec<u8>, (u64, SecretBytes)>,
    next: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent at each step.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proc {
    pub fn new(shared: Arc<Shared>, pid: u32) -> Proc {
        let l1 = shared.l1.map(MemoryStore::new);
        Proc {
            pid,
            core: Arc::new(Core {
                shared,
                pool: Pool::default(),
                breaker: Breaker::default(),
                counters: Counters::default(),
                net: Net::default(),
                pending: Mutex::new(Pending::default()),
            }),
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
            let (mut c, reused) = match Core::checkout(core, deadline) {
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
            match conn::lookup(&mut c, &shared.sha, rkey, take, deadline) {
                Ok(found) => {
                    core.pool.checkin(c);
                    core.breaker.success();
                    return Ok(found);
                }
                Err(e) if is_server_reply(&e) => {
                    // An answer: the connection is in step, the server is there.
                    core.pool.checkin(c);
                    return Err(core.failed(&e, "lookup", false).0);
                }
                Err(e) => {
                    // Dropped: after a timeout a late reply would be read as the next
                    // command's.
                    drop(c);
                    if reused && !retried && is_stale(&e) {
                        // The server went away since the connection was last used (a
                        // restart): the other idle ones are as dead. One more try.
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
        let seq = {
            let mut p = lock(&self.core.pending);
            p.next += 1;
            let seq = p.next;
            p.values.insert(rkey.clone(), (seq, value));
            seq
        };
        let queued = self.submit_job(packed, false, Some((rkey.clone(), seq)));
        if !queued {
            self.core.forget_pending(&rkey, seq);
        }
        queued
    }

    /// A value this process queued under `rkey` and has not begun to send: a copy, or
    /// (`take`) the value itself, which is then no longer pending, so that its SET is not
    /// sent at all.
    pub fn pending(&self, rkey: &[u8], take: bool) -> Option<SecretBytes> {
        let mut p = lock(&self.core.pending);
        if p.values.is_empty() {
            return None;
        }
        if take {
            p.values.remove(rkey).map(|(_, v)| v)
        } else {
            p.values.get(rkey).map(|(_, v)| v.clone())
        }
    }

    /// Forgets what this process queued under `rkey` (it is being removed).
    pub fn drop_pending(&self, rkey: &[u8]) {
        let mut p = lock(&self.core.pending);
        if !p.values.is_empty() {
            p.values.remove(rkey);
        }
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
        let now = monotonic_ms();
        if now < self.writer_retry_ms.load(Ordering::Relaxed) {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(self.shared().queue);
        let core = self.core.clone();
        match crate::threads::spawn_quiet("sesscache-redis", move || writer_main(core, rx)) {
            Ok(_) => {
                let tx = Arc::new(tx);
                at_exit::register(self.pid, &tx);
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
            flush_queue(tx, Duration::from_secs(30));
        }
    }

    /// Has the writer thread panic in its next step.
    #[cfg(test)]
    pub fn panic_writer(&self) {
        self.writer().unwrap().send(Job::Panic).unwrap();
    }

    #[cfg(test)]
    pub fn idle_connections(&self) -> usize {
        lock(&self.core.pool.state).idle.len()
    }
}

impl Core {
    /// What the writer may do with the SET of `rkey`'s value numbered `seq`: skip it (the
    /// value was taken, removed or stored again since); send it, the value claimed (a
    /// single-use value stops being pending before it is sent, so that no lookup takes it
    /// here while Redis gets it); or send it, the value left readable here until it is
    /// sent (a reusable one, then [`Core::forget_pending`]).
    fn claim_pending(&self, rkey: &[u8], seq: u64) -> Claim {
        let mut p = lock(&self.pending);
        match p.values.get(rkey) {
            Some((s, v)) if *s == seq => {
                if v.as_slice()
                    .first()
                    .is_some_and(|f| f & conn::SINGLE_USE != 0)
                {
                    p.values.remove(rkey);
                    Claim::Claimed
                } else {
                    Claim::Readable
                }
            }
            _ => Claim::Skip,
        }
    }

    /// Forgets the pending value of `rkey` if it is still the one numbered `seq`.
    fn forget_pending(&self, rkey: &[u8], seq: u64) {
        let mut p = lock(&self.pending);
        if p.values.get(rkey).is_some_and(|(s, _)| *s == seq) {
            p.values.remove(rkey);
        }
    }

    /// Counts an operation that failed on the network or timed out.
    pub fn count_failure(&self, e: StoreError) {
        Counters::bump(&self.counters.errors);
        Counters::bump(match e {
            StoreError::Timeout => &self.net.timeouts,
            _ => &self.net.net_errors,
        });
    }

    pub fn count_drop(&self) {
        Counters::bump(&self.net.queue_drops);
    }

    /// Counts a failed call and, if `trips` (not an error the server answered with), tells
    /// the breaker; (the caller's error, whether the breaker opened).
    pub(crate) fn failed(&self, e: &RedisError, what: &str, trips: bool) -> (StoreError, bool) {
        let err = classify(e);
        self.count_failure(err);
        if err == StoreError::Timeout {
            // The system's words for it ("Resource temporarily unavailable") say less.
            crate::log_limited!(
                Level::Warn,
                "redis: {what} timed out: no answer within its time budget"
            );
        } else {
            crate::log_limited!(
                Level::Warn,
                "redis: {what} failed: {}",
                describe(e, self.shared.secret())
            );
        }
        (err, trips && self.trip())
    }

    /// Tells the breaker of a failure; true if that opened it.
    fn trip(&self) -> bool {
        let Some(backoff) = self.breaker.failure() else {
            return false;
        };
        Counters::bump(&self.net.breaker_opens);
        crate::log_limited!(
            Level::Warn,
            "redis: {FAILURES_TO_OPEN} failures in a row; Redis is skipped for {backoff} ms \
             (lookups miss, writes are dropped), then probed"
        );
        true
    }

    /// An idle connection (true: it was used before), or a new one made within `deadline`.
    fn checkout(core: &Arc<Core>, deadline: Instant) -> Result<(Conn, bool), StoreError> {
        let pool = &core.pool;
        let mut st = lock(&pool.state);
        while let Some(c) = st.idle.pop() {
            if c.is_open() {
                return Ok((c, true));
            }
        }
        let failures_seen = st.failures;
        st.waiting += 1;
        let out = loop {
            if let Some(c) = st.idle.pop() {
                break Ok((c, false));
            }
            if st.failures != failures_seen {
                // A connect failed while we waited: so would ours.
                break Err(st.last_failure);
            }
            if st.connecting < st.waiting.min(MAX_CONNECTING) {
                st.connecting += 1;
                drop(st);
                let started = spawn_connect(core);
                st = lock(&pool.state);
                if !started {
                    st.connecting -= 1;
                    break Err(StoreError::Unavailable);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(StoreError::Timeout);
            }
            st = pool
                .ready
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        st.waiting -= 1;
        out
    }
}

/// Opens a connection on a thread of its own and gives it to the pool.
fn spawn_connect(core: &Arc<Core>) -> bool {
    let core = core.clone();
    crate::threads::spawn_quiet("sesscache-redis-connect", move || {
        let shared = &core.shared;
        let made = catch_unwind(AssertUnwindSafe(|| {
            shared.connector.connect(shared.background_timeout)
        }));
        let made = match made {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                crate::log_limited!(
                    Level::Warn,
                    "redis: cannot connect: {}",
                    describe(&e, shared.secret())
                );
                Err(classify(&e))
            }
            Err(_) => Err(StoreError::Unavailable),
        };
        core.pool.connected(made);
    })
    .is_ok()
}

/// Idle connections, and the lookups waiting for one.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    ready: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    connecting: usize,
    waiting: usize,
    /// Connects that failed so far, and how the last one did.
    failures: u64,
    last_failure: StoreError,
}

impl Default for PoolState {
    fn default() -> Self {
        PoolState {
            idle: Vec::new(),
            connecting: 0,
            waiting: 0,
            failures: 0,
            last_failure: StoreError::Unavailable,
        }
    }
}

impl Pool {
    /// Takes back a connection that is in step with its server.
    fn checkin(&self, c: Conn) {
        let mut st = lock(&self.state);
        if st.idle.len() < MAX_IDLE {
            st.idle.push(c);
            drop(st);
            self.ready.notify_one();
        }
    }

    /// Closes the idle connections.
    fn clear(&self) {
        let idle = std::mem::take(&mut lock(&self.state).idle);
        drop(idle);
    }

    /// A connecting thread's result.
    fn connected(&self, made: Result<Conn, StoreError>) {
        let mut st = lock(&self.state);
        st.connecting -= 1;
        match made {
            Ok(c) => {
                if st.idle.len() < MAX_IDLE {
                    st.idle.push(c);
                }
                drop(st);
                self.ready.notify_one();
            }
            Err(e) => {
                st.failures += 1;
                st.last_failure = e;
                drop(st);
                self.ready.notify_all();
            }
        }
    }
}

/// The circuit breaker: open after [`FAILURES_TO_OPEN`] failures in a row; while open,
/// nothing touches the network; the writer probes when the back-off has passed and closes
/// it when Redis answers.
#[derive(Default)]
pub(crate) struct Breaker {
    open: AtomicBool,
    failures: AtomicU32,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    backoff_ms: u64,
    probe_at_ms: u64,
    closed_at_ms: Option<u64>,
}

impl Breaker {
    #[inline]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    #[inline]
    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Some(back-off in ms) if this failure opened the breaker.
    fn failure(&self) -> Option<u64> {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < FAILURES_TO_OPEN || self.is_open() {
            return None;
        }
        let mut st = lock(&self.state);
        if self.is_open() {
            return None;
        }
        let now = monotonic_ms();
        let calm = match st.closed_at_ms {
            None => true,
            Some(t) => now.saturating_sub(t) >= CALM_MS,
        };
        st.backoff_ms = if calm {
            BACKOFF_MIN_MS
        } else {
            st.backoff_ms
                .saturating_mul(2)
                .clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS)
        };
        st.probe_at_ms = now + st.backoff_ms;
        self.open.store(true, Ordering::Release);
        Some(st.backoff_ms)
    }

    /// While open: how long until the next probe (zero: due).
    fn probe_wait(&self, now: u64) -> Option<Duration> {
        if !self.is_open() {
            return None;
        }
        let st = lock(&self.state);
        Some(Duration::from_millis(st.probe_at_ms.saturating_sub(now)))
    }

    fn probe_failed(&self, now: u64) {
        let mut st = lock(&self.state);
        st.backoff_ms = st
            .backoff_ms
            .saturating_mul(2)
            .clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
        st.probe_at_ms = now + st.backoff_ms;
    }

    fn close(&self, now: u64) {
        let mut st = lock(&self.state);
        st.closed_at_ms = Some(now);
        self.failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }
}

/// The writer thread: applies queued writes in order on a connection of its own, drops
/// them while the breaker is open, probes, and reports the process's counters (`tally`).
/// Ends when the store is closed (its queue's sender dropped) once the queue is drained,
/// after a last report. A panic in one step is caught: the step's write is lost, the
/// connection dropped, the thread carries on.
fn writer_main(core: Arc<Core>, rx: Receiver<Job>) {
    let mut w = Writer {
        core,
        conn: None,
        sent: [0; 14],
        report_due_ms: 0,
        watch: super::sentinel::Watch::default(),
    };
    // When the last pipeline was sent, unless it was full: then more are waiting already,
    // and waiting for the batch would only cap the writes at MAX_BATCH per batch_ms.
    let mut last_sent: Option<Instant> = None;
    loop {
        let wait = w
            .core
            .breaker
            .probe_wait(monotonic_ms())
            .unwrap_or(WRITER_IDLE)
            .max(Duration::from_millis(1));
        let job = match rx.recv_timeout(wait) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let _ = catch_unwind(AssertUnwindSafe(|| w.report()));
                return;
            }
        };
        if let (Some(Job::Write { .. }), Some(sent)) = (&job, last_sent) {
            let since = sent.elapsed();
            if since < w.core.shared.batch {
                std::thread::sleep(w.core.shared.batch - since);
            }
        }
        // Writes queued behind this one go with it, in order, as one pipeline; the first
        // job that is not a write waits for its turn after them.
        let mut batch = Vec::new();
        let mut job = job;
        while let Some(Job::Write {
            packed,
            remove,
            pending,
        }) = job
        {
            batch.push((packed, remove, pending));
            job = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
            if !matches!(job, Some(Job::Write { .. }) | None) {
                break;
            }
        }
        let step = catch_unwind(AssertUnwindSafe(|| {
            if !batch.is_empty() {
                let full = batch.len() >= MAX_BATCH;
                w.write_batch(std::mem::take(&mut batch));
                last_sent = (!full).then(Instant::now);
            }
            if let Some(job) = job {
                w.run(job);
            }
            w.probe_if_due();
            if monotonic_ms() >= w.report_due_ms {
                w.report();
            }
            w.watch_primary();
        }));
        if step.is_err() {
            w.conn = None;
            crate::log_limited!(
                Level::Error,
                "redis: internal error (a panic) in the writer thread; it carries on"
            );
        }
    }
}

struct Writer {
    core: Arc<Core>,
    conn: Option<Conn>,
    /// The counters as last reported.
    sent: tally::Figures,
    /// When the next report may be made.
    report_due_ms: u64,
    /// Through Sentinels: where the primary is, asked about once a second.
    watch: super::sentinel::Watch,
}

impl Writer {
    fn run(&mut self, job: Job) {
        match job {
            Job::Write {
                packed,
                remove,
                pending,
            } => self.write_batch(vec![(packed, remove, pending)]),
            Job::Wake => {}
            Job::Flush(ack) => {
                self.report();
                let _ = ack.send(());
            }
            #[cfg(test)]
            Job::Panic => panic!("a simulated bug in the writer"),
        }
    }

    /// The writer's connection: the one it kept, if still open (true), else a new one;
    /// None when none can be made (counted and said, as `what`, and told to the breaker).
    fn take_conn(&mut self, what: &str) -> Option<(Conn, bool)> {
        match self.conn.take() {
            Some(c) if c.is_open() => Some((c, true)),
            _ => {
                let shared = &self.core.shared;
                match shared.connector.connect(shared.background_timeout) {
                    Ok(c) => Some((c, false)),
                    Err(e) => {
                        self.core.failed(&e, what, true);
                        None
                    }
                }
            }
        }
    }

    fn write(&mut self, packed: &[u8], remove: bool) {
        let core = self.core.clone();
        let shared = &core.shared;
        if core.breaker.is_open() {
            core.count_drop();
            return;
        }
        let budget = shared.background_timeout;
        for attempt in 0..2 {
            let Some((mut c, reused)) = self.take_conn("connecting for a write") else {
                return;
            };
            match c.request(packed, budget) {
                Ok(reply) => {
                    core.breaker.success();
                    self.conn = Some(c);
                    if !remove {
                        Counters::bump(&core.counters.stores);
                    } else if matches!(reply, Value::Int(n) if n > 0) {
                        Counters::bump(&core.counters.removes);
                    }
                    return;
                }
                Err(e) if reused && attempt == 0 && is_stale(&e) => continue,
                Err(e) => {
                    let reply = is_server_reply(&e);
                    if reply {
                        self.conn = Some(c);
                    }
                    core.failed(&e, if remove { "a removal" } else { "a store" }, !reply);
                    return;
                }
            }
        }
    }

    /// Sends queued writes: one at a time to a cluster (its connection routes command by
    /// command) or when there is one, else as one pipeline. What each did is counted as
    /// `write` counts it; a network failure loses them all (counted once, as one failed
    /// call).
    ///
    /// A SET is sent only if its value is still pending (`Core::claim_pending`): a value
    /// this process took (a single-use ticket) or removed meanwhile, or stored again since,
    /// never reaches Redis from this write. A single-use value stops being pending before
    /// it is sent, so a ticket taken from the pending map is never in Redis to be taken a
    /// second time; a reusable one stays readable here until it has been sent.
    fn write_batch(&mut self, batch: Vec<QueuedWrite>) {
        let mut after = Vec::new();
        let batch: Vec<QueuedWrite> = batch
            .into_iter()
            .filter(|(_, _, pending)| match pending {
                None => true,
                Some((rkey, seq)) => match self.core.claim_pending(rkey, *seq) {
                    Claim::Skip => false,
                    Claim::Claimed => true,
                    Claim::Readable => {
                        after.push((rkey.clone(), *seq));
                        true
                    }
                },
            })
            .collect();
        let single = self.core.shared.connector.is_single();
        if batch.len() == 1 || !single {
            for (packed, remove, _) in &batch {
                self.write(packed.as_slice(), *remove);
            }
        } else if !batch.is_empty() {
            self.write_pipeline(&batch);
        }
        // Sent (or lost): from now on this process's lookups ask Redis for them too.
        for (rkey, seq) in after {
            self.core.forget_pending(&rkey, seq);
        }
    }

    fn write_pipeline(&mut self, batch: &[QueuedWrite]) {
        let core = self.core.clone();
        let shared = &core.shared;
        if core.breaker.is_open() {
            for _ in batch {
                core.count_drop();
            }
            return;
        }
        let mut all = SecretBytes::zeroed(batch.iter().map(|(p, _, _)| p.len()).sum());
        let mut at = 0;
        for (p, _, _) in batch {
            all.as_mut_slice()[at..at + p.len()].copy_from_slice(p.as_slice());
            at += p.len();
        }
        let budget = shared.background_timeout;
        for attempt in 0..2 {
            let Some((mut c, reused)) = self.take_conn("connecting for writes") else {
                return;
            };
            match c.request_many(all.as_slice(), batch.len(), budget) {
                Some(Ok(replies)) => {
                    core.breaker.success();
                    self.conn = Some(c);
                    for (reply, (_, remove, _)) in replies.into_iter().zip(batch) {
                        match reply.extract_error() {
                            Ok(_) if !remove => Counters::bump(&core.counters.stores),
                            Ok(Value::Int(n)) if n > 0 => Counters::bump(&core.counters.removes),
                            Ok(_) => {}
                            Err(e) => {
                                core.failed(
                                    &e,
                                    if *remove { "a removal" } else { "a store" },
                                    false,
                                );
                            }
                        }
                    }
                    return;
                }
                // SET and DEL may be sent again: the same values, in the same order.
                Some(Err(e)) if reused && attempt == 0 && is_stale(&e) => continue,
                Some(Err(e)) => {
                    let reply = is_server_reply(&e);
                    if reply {
                        self.conn = Some(c);
                    }
                    core.failed(&e, "a batch of writes", !reply);
                    return;
                }
                None => {
                    // A cluster connection: not batched (write_batch checks first).
                    self.conn = Some(c);
                    for (packed, remove, _) in batch {
                        self.write(packed.as_slice(), *remove);
                    }
                    return;
                }
            }
        }
    }

    /// Reports what the counters gained since the last report (nothing if they did not
    /// change), unless the breaker is open. A report that fails is not counted and does
    /// not trip the breaker (writes and lookups notice an outage): what it carried goes
    /// with the next one.
    fn report(&mut self) {
        let core = &self.core;
        let shared = &core.shared;
        self.report_due_ms = monotonic_ms() + tally::REPORT_INTERVAL_MS;
        if core.breaker.is_open() {
            return;
        }
        let now = tally::figures(&core.counters, &core.net);
        let increments = tally::increments(&now, &self.sent);
        if increments.is_empty() {
            return;
        }
        let budget = shared.background_timeout;
        let mut c = match self.conn.take() {
            Some(c) if c.is_open() => c,
            _ => match shared.connector.connect(budget) {
                Ok(c) => c,
                Err(e) => {
                    crate::log!(
                        Level::Debug,
                        "redis: reporting the counters: {}",
                        describe(&e, shared.secret())
                    );
                    return;
                }
            },
        };
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", shared.tally_sha.as_bytes(), b"1"];
        args.push(&shared.tally_key);
        args.extend(increments.iter().map(Vec::as_slice));
        let mut reply = c.request(pack(&args).as_slice(), budget);
        if matches!(&reply, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
            args[0] = b"EVAL";
            args[1] = tally::REPORT_SCRIPT.as_bytes();
            reply = c.request(pack(&args).as_slice(), budget);
        }
        match reply {
            Ok(_) => {
                tally::advance(&now, &mut self.sent);
                self.conn = Some(c);
            }
            Err(e) if is_server_reply(&e) => {
                // Refused (an ACL, a read-only replica): said, and tried again later.
                self.conn = Some(c);
                crate::log_limited!(
                    Level::Warn,
                    "redis: cannot report this process's counters ({}); `sesscache stats` \
                     does not count them (the user needs EVAL, HINCRBY, HSET and TIME on \
                     the prefix)",
                    describe(&e, shared.secret())
                );
            }
            Err(e) => crate::log!(
                Level::Debug,
                "redis: reporting the counters: {}",
                describe(&e, shared.secret())
            ),
        }
    }

    /// Through Sentinels, while the breaker is closed: when a Sentinel names a new
    /// primary (`sentinel::Watch`), the connections to the old one (the writer's and the
    /// idle ones of the pool) are closed, so that the next ones ask the Sentinels again.
    fn watch_primary(&mut self) {
        let core = &self.core;
        let Connector::Sentinel(s) = &core.shared.connector else {
            return;
        };
        if core.breaker.is_open() {
            return;
        }
        if self
            .watch
            .primary_moved(s, monotonic_ms(), core.shared.background_timeout)
        {
            self.conn = None;
            core.pool.clear();
            crate::log_limited!(
                Level::Warn,
                "redis+sentinel: the Sentinels name a new primary; connections to the old one closed"
            );
        }
    }

    /// While the breaker is open and its back-off has passed: connect and PING; close the
    /// breaker on an answer (the connection goes to the pool), else back off further.
    fn probe_if_due(&mut self) {
        let core = &self.core;
        let shared = &core.shared;
        if core.breaker.probe_wait(monotonic_ms()) != Some(Duration::ZERO) {
            return;
        }
        self.conn = None;
        let answered = shared
            .connector
            .connect(shared.background_timeout)
            .and_then(|mut c| {
                c.request(pack(&[b"PING"]).as_slice(), shared.timeout)?;
                Ok(c)
            });
        match answered {
            Ok(c) => {
                core.breaker.close(monotonic_ms());
                core.pool.checkin(c);
                crate::log_limited!(Level::Warn, "redis: reachable again; lookups resume");
            }
            Err(e) => {
                core.breaker.probe_failed(monotonic_ms());
                crate::log!(
                    Level::Debug,
                    "redis: probe failed: {}",
                    describe(&e, shared.secret())
                );
            }
        }
    }
}

// `RedisStore` shares one `Proc` between threads through a raw pointer.
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Proc>();
};

/// Waits, at most `limit`, until the writes queued on `tx` before now are done (or
/// dropped). False if they were not in time.
fn flush_queue(tx: &SyncSender<Job>, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let (ack, done) = mpsc::channel();
    let mut job = Job::Flush(ack);
    loop {
        match tx.try_send(job) {
            Ok(()) => break,
            Err(mpsc::TrySendError::Full(back)) => {
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                job = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return true,
        }
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    done.recv_timeout(left).is_ok()
}

/// Stores still queued when the process exits are sent first, for a bounded time: a
/// server that stops gracefully (nginx's workers on a reload, `openssl s_server -naccept`)
/// would otherwise lose the sessions of its last handshakes, which other hosts could have
/// resumed.
mod at_exit {
    use super::{flush_queue, Job};
    use std::sync::mpsc::SyncSender;
    use std::sync::{Arc, Mutex, Once, Weak};
    use std::time::Duration;

    /// The most a process's exit waits for its queued writes, all caches together.
    pub(super) const LIMIT: Duration = Duration::from_millis(250);

    /// This process's writers' queues (weak: a cache that is freed stops its writer).
    static QUEUES: Mutex<(u32, Vec<Weak<SyncSender<Job>>>)> = Mutex::new((0, Vec::new()));
    static REGISTER: Once = Once::new();

    pub(super) fn register(pid: u32, tx: &Arc<SyncSender<Job>>) {
        let mut q = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
        if q.0 != pid {
            // Inherited from the process we were forked from: its writers are not ours.
            *q = (pid, Vec::new());
        }
        q.1.retain(|w| w.strong_count() > 0);
        q.1.push(Arc::downgrade(tx));
        drop(q);
        // SAFETY: registering a plain extern "C" function with no arguments (once per
        // program: a forked child inherits the registration).
        REGISTER.call_once(|| unsafe {
            libc::atexit(flush_all);
        });
    }

    extern "C" fn flush_all() {
        let _ = std::panic::catch_unwind(|| {
            // try_lock: a thread may have held it when the process began to exit.
            let Ok(q) = QUEUES.try_lock() else {
                return;
            };
            if q.0 != crate::pid::current() {
                return;
            }
            let queues: Vec<_> = q.1.iter().filter_map(Weak::upgrade).collect();
            drop(q);
            let deadline = std::time::Instant::now() + LIMIT;
            for tx in queues {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || !flush_queue(&tx, left) {
                    return;
                }
            }
        });
    }
}
