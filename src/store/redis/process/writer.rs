//! The writer thread of one process ("sesscache-redis", started by the first write or by
//! the breaker opening): it applies the queued writes in order on a connection of its own,
//! as pipelines when they come faster than round trips, drops them while the breaker is
//! open, probes Redis while it is, reports the process's counters (`tally`) and, through
//! Sentinels, watches where the primary is.
//!
//! [`writer_main`] is the thread: it waits on the queue and gathers the writes that go
//! together ([`gather`]). What it does with them is [`Writer`]'s, which gets its
//! connections through a [`Link`] (the store's connector, or a scripted one in tests) and
//! reads the time from the `Core`'s clock, so that its logic is tested without a server and
//! without waiting. Every write goes by one path, [`Writer::send`]: a lone write as one
//! command, several as one pipeline.

use super::super::conn::{describe, is_demoted, is_server_reply, is_stale, Connector};
use super::super::tally;
use super::super::transport::{eval, pack, Transport};
use super::pending::Claim;
use super::shared::Shared;
use super::state::Core;
use crate::log::Level;
use crate::secret::SecretBytes;
use crate::store::Counters;
use redis::{RedisResult, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the idle writer sleeps between checks of the breaker.
const WRITER_IDLE: Duration = Duration::from_secs(1);
/// The most queued writes the writer sends as one pipeline (one system call each way and
/// one wake-up of Redis, instead of one round trip each, when stores come faster than
/// round trips).
pub(crate) const MAX_BATCH: usize = 64;

/// A write taken off the queue: its packed command, whether it is a removal, and its
/// pending value's key and number (`Job::Write`).
pub(crate) type QueuedWrite = (SecretBytes, bool, Option<(Vec<u8>, u64)>);

/// A queued write, or a message for the writer.
pub(crate) enum Job {
    /// A packed SET or DEL; a SET names its entry in `Core::pending` (Redis key, sequence
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

/// Where the writer's connections come from.
pub(crate) trait Link {
    type Conn: Transport;

    /// A new connection, made within `timeout`.
    fn connect(&self, timeout: Duration) -> RedisResult<Self::Conn>;

    /// Whether commands go to one server (so they may be pipelined).
    fn pipelines(&self) -> bool;

    /// Gives the connection of a probe that closed the breaker to the lookups.
    fn lend(&self, core: &Core, c: Self::Conn);
}

/// The store's: its connector, and the lookups' pool.
impl Link for Arc<Shared> {
    type Conn = super::super::conn::Conn;

    fn connect(&self, timeout: Duration) -> RedisResult<Self::Conn> {
        self.connector.connect(timeout)
    }

    fn pipelines(&self) -> bool {
        self.connector.is_single()
    }

    fn lend(&self, core: &Core, c: Self::Conn) {
        core.pool.checkin(c);
    }
}

/// The writer thread. Ends when the store is closed (its queue's sender dropped) once the
/// queue is drained, after a last report. A panic in one step is caught: the step's write
/// is lost, the connection dropped, the thread carries on.
pub(crate) fn writer_main(core: Arc<Core>, rx: Receiver<Job>) {
    let mut w = Writer::new(core.clone(), core.shared.clone());
    // When the last pipeline was sent, unless it was full: then more are waiting already,
    // and waiting for the batch would only cap the writes at MAX_BATCH per batch_ms.
    let mut last_sent: Option<Instant> = None;
    loop {
        let wait = w
            .core
            .breaker
            .probe_wait(w.core.now_ms())
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
        let (mut batch, job) = gather(job, &rx);
        let step = catch_unwind(AssertUnwindSafe(|| {
            if !batch.is_empty() {
                let full = batch.len() >= MAX_BATCH;
                w.write_batch(std::mem::take(&mut batch));
                last_sent = (!full).then(Instant::now);
            }
            w.tend(job);
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

/// The writes that go with `job` (if it is one): it and those queued behind it, in order,
/// up to [`MAX_BATCH`]; and the first job that is not a write, which waits for its turn
/// after them.
pub(crate) fn gather(job: Option<Job>, rx: &Receiver<Job>) -> (Vec<QueuedWrite>, Option<Job>) {
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
    (batch, job)
}

/// The writer's state, between steps.
pub(crate) struct Writer<L: Link> {
    core: Arc<Core>,
    link: L,
    conn: Option<L::Conn>,
    /// The counters as last reported.
    sent: tally::Figures,
    /// When the next report may be made.
    report_due_ms: u64,
    /// Through Sentinels: where the primary is, asked about once a second.
    watch: super::super::sentinel::Watch,
}

impl<L: Link> Writer<L> {
    pub fn new(core: Arc<Core>, link: L) -> Writer<L> {
        Writer {
            core,
            link,
            conn: None,
            sent: [0; 14],
            report_due_ms: 0,
            watch: super::super::sentinel::Watch::default(),
        }
    }

    /// The rest of the thread's turn, after the writes: handles `job`, probes if the
    /// breaker wants it, reports if a report is due, and looks where the primary is.
    pub fn tend(&mut self, job: Option<Job>) {
        if let Some(job) = job {
            self.run(job);
        }
        self.probe_if_due();
        if self.core.now_ms() >= self.report_due_ms {
            self.report();
        }
        self.watch_primary();
    }

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

    /// The writer's connection: the one it kept, if still open (true), else a new one.
    fn conn(&mut self) -> RedisResult<(L::Conn, bool)> {
        match self.conn.take() {
            Some(c) if c.is_open() => Ok((c, true)),
            _ => Ok((
                self.link.connect(self.core.shared.background_timeout)?,
                false,
            )),
        }
    }

    /// Sends queued writes: one at a time to a cluster (its connection routes command by
    /// command) or when there is one, else as one pipeline ([`Writer::send`]).
    ///
    /// A SET is sent only if its value is still pending (`Pending::claim`): a value this
    /// process took (a single-use ticket) or removed meanwhile, or stored again since,
    /// never reaches Redis from this write. A single-use value stops being pending before
    /// it is sent, so a ticket taken from the pending map is never in Redis to be taken a
    /// second time; a reusable one stays readable here until it has been sent.
    pub fn write_batch(&mut self, batch: Vec<QueuedWrite>) {
        let mut after = Vec::new();
        let batch: Vec<QueuedWrite> = batch
            .into_iter()
            .filter(|(_, _, pending)| match pending {
                None => true,
                Some((rkey, seq)) => match self.core.pending.claim(rkey, *seq) {
                    Claim::Skip => false,
                    Claim::Claimed => true,
                    Claim::Readable => {
                        after.push((rkey.clone(), *seq));
                        true
                    }
                },
            })
            .collect();
        if batch.len() > 1 && self.link.pipelines() {
            self.send(&batch);
        } else {
            for w in &batch {
                self.send(std::slice::from_ref(w));
            }
        }
        // Sent (or lost): from now on this process's lookups ask Redis for them too.
        for (rkey, seq) in after {
            self.core.pending.forget(&rkey, seq);
        }
    }

    /// Sends writes: a lone one as one command, several as one pipeline. Dropped (each
    /// counted in `queue_drops`) while the breaker is open. Each that Redis applied is
    /// counted (a store; a removal that removed something); one it refused is counted as a
    /// failure, which does not trip the breaker. A failure of the whole call (no
    /// connection, a network error, a timeout) loses them all, counted once, as one failed
    /// call, and told to the breaker, the connection dropped; except that a connection
    /// that was kept from before and turns out dead (or leads to a node that is no longer
    /// the primary) is replaced once and the writes sent again (SET and DEL may be: the
    /// same values, in the same order).
    ///
    /// A lone command's error reply is the call's failure (`Transport::request`): an
    /// answer that the node is not a primary (`is_demoted`) drops the connection, is tried
    /// once more on a new one, and trips the breaker; any other keeps the connection. In a
    /// pipeline each error reply is its write's, the connection kept, except that a
    /// pipeline with such an answer is treated as a lone command's: the connection dropped,
    /// the batch sent once more on a new one if it was kept from before, the breaker told
    /// once.
    fn send(&mut self, batch: &[QueuedWrite]) {
        let core = self.core.clone();
        if core.breaker.is_open() {
            for _ in batch {
                core.count_drop();
            }
            return;
        }
        let (what, connecting) = match batch {
            [(_, true, _)] => ("a removal", "connecting for a write"),
            [(_, false, _)] => ("a store", "connecting for a write"),
            _ => ("a batch of writes", "connecting for writes"),
        };
        let joined;
        let packed = match batch {
            [(p, _, _)] => p.as_slice(),
            _ => {
                joined = join(batch);
                joined.as_slice()
            }
        };
        let budget = core.shared.background_timeout;
        for attempt in 0..2 {
            let (mut c, reused) = match self.conn() {
                Ok(c) => c,
                Err(e) => {
                    core.failed(&e, connecting, true);
                    return;
                }
            };
            let sent = if batch.len() == 1 {
                c.request(packed, budget).map(|reply| vec![reply])
            } else {
                match c.request_many(packed, batch.len(), budget) {
                    Some(sent) => sent,
                    None => {
                        // A connection that routes one command at a time (write_batch
                        // asks the link first).
                        self.conn = Some(c);
                        for w in batch {
                            self.send(std::slice::from_ref(w));
                        }
                        return;
                    }
                }
            };
            match sent {
                Ok(replies) => {
                    let replies: Vec<_> = replies.into_iter().map(Value::extract_error).collect();
                    // A node that is no longer the primary refuses every write: as for a
                    // lone write, its connection goes, and a kept one is replaced once.
                    let demoted = replies.iter().any(|r| matches!(r, Err(e) if is_demoted(e)));
                    if demoted && reused && attempt == 0 {
                        continue;
                    }
                    if demoted {
                        drop(c);
                    } else {
                        core.breaker.success();
                        self.conn = Some(c);
                    }
                    let mut trip = demoted;
                    for (reply, (_, remove, _)) in replies.into_iter().zip(batch) {
                        match reply {
                            Ok(_) if !remove => Counters::bump(&core.counters.stores),
                            Ok(Value::Int(n)) if n > 0 => Counters::bump(&core.counters.removes),
                            Ok(_) => {}
                            Err(e) => {
                                let what = if *remove { "a removal" } else { "a store" };
                                let tell = trip && is_demoted(&e);
                                trip &= !tell;
                                core.failed(&e, what, tell);
                            }
                        }
                    }
                    return;
                }
                Err(e) if reused && attempt == 0 && is_stale(&e) => continue,
                Err(e) => {
                    let reply = is_server_reply(&e);
                    if reply {
                        self.conn = Some(c);
                    }
                    core.failed(&e, what, !reply);
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
        let core = self.core.clone();
        let shared = &core.shared;
        self.report_due_ms = core.now_ms() + tally::REPORT_INTERVAL_MS;
        if core.breaker.is_open() {
            return;
        }
        let now = tally::figures(&core.counters, &core.net);
        let increments = tally::increments(&now, &self.sent);
        if increments.is_empty() {
            return;
        }
        let budget = shared.background_timeout;
        let mut c = match self.conn() {
            Ok((c, _)) => c,
            Err(e) => {
                crate::log!(
                    Level::Debug,
                    "redis: reporting the counters: {}",
                    describe(&e, shared.secret())
                );
                return;
            }
        };
        let mut keys_and_args: Vec<&[u8]> = vec![b"1", &shared.tally_key];
        keys_and_args.extend(increments.iter().map(Vec::as_slice));
        let reply = eval(
            &mut c,
            &shared.tally_sha,
            tally::REPORT_SCRIPT,
            &keys_and_args,
            || Ok(budget),
        );
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
            .primary_moved(s, core.now_ms(), core.shared.background_timeout)
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
    /// breaker on an answer (the connection goes to the lookups), else back off further.
    fn probe_if_due(&mut self) {
        let core = self.core.clone();
        let shared = &core.shared;
        if core.breaker.probe_wait(core.now_ms()) != Some(Duration::ZERO) {
            return;
        }
        self.conn = None;
        let answered = self
            .link
            .connect(shared.background_timeout)
            .and_then(|mut c| {
                c.request(pack(&[b"PING"]).as_slice(), shared.timeout)?;
                Ok(c)
            });
        match answered {
            Ok(c) => {
                core.breaker.close(core.now_ms());
                self.link.lend(&core, c);
                crate::log_limited!(Level::Warn, "redis: reachable again; lookups resume");
            }
            Err(e) => {
                core.breaker.probe_failed(core.now_ms());
                crate::log!(
                    Level::Debug,
                    "redis: probe failed: {}",
                    describe(&e, shared.secret())
                );
            }
        }
    }
}

/// The packed commands of `batch`, one after the other: a pipeline.
fn join(batch: &[QueuedWrite]) -> SecretBytes {
    let mut all = SecretBytes::zeroed(batch.iter().map(|(p, _, _)| p.len()).sum());
    let mut at = 0;
    for (p, _, _) in batch {
        all.as_mut_slice()[at..at + p.len()].copy_from_slice(p.as_slice());
        at += p.len();
    }
    all
}

#[cfg(test)]
mod tests;
