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

use super::super::conn::{describe, is_server_reply, is_stale, Connector};
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
    /// pipeline each error reply is its write's, the connection kept.
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
                    core.breaker.success();
                    self.conn = Some(c);
                    for (reply, (_, remove, _)) in replies.into_iter().zip(batch) {
                        match reply.extract_error() {
                            Ok(_) if !remove => Counters::bump(&core.counters.stores),
                            Ok(Value::Int(n)) if n > 0 => Counters::bump(&core.counters.removes),
                            Ok(_) => {}
                            Err(e) => {
                                let what = if *remove { "a removal" } else { "a store" };
                                core.failed(&e, what, false);
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

/// The writer's logic over a scripted transport and a clock moved by hand: no server, no
/// waiting.
#[cfg(test)]
mod tests {
    use super::super::super::conn::{timed_out, Connector};
    use super::super::super::transport::fake::{
        error_reply, ok, reset, server_error, Answer, FakeConn, Script,
    };
    use super::super::breaker::{BACKOFF_MIN_MS, FAILURES_TO_OPEN};
    use super::*;
    use crate::clock::Manual;
    use crate::store::NetStats;
    use std::sync::Mutex;

    /// Connections from a script; a probe's connection is kept here (by number).
    struct FakeLink {
        script: Script,
        pipelines: bool,
        lent: Mutex<Vec<u32>>,
    }

    impl Link for FakeLink {
        type Conn = FakeConn;

        fn connect(&self, _timeout: Duration) -> RedisResult<FakeConn> {
            self.script.connect()
        }

        fn pipelines(&self) -> bool {
            self.pipelines
        }

        fn lend(&self, _core: &Core, c: FakeConn) {
            self.lent.lock().unwrap().push(c.id);
        }
    }

    struct Rig {
        w: Writer<FakeLink>,
        script: Script,
        clock: Arc<Manual>,
    }

    /// A writer to one server (pipelining), or (`pipelines` false) to a cluster.
    fn rig(pipelines: bool) -> Rig {
        let shared = Shared {
            // Never used: the writer connects through the fake link.
            connector: Connector::Single(redis::Client::open("redis://127.0.0.1:1/").unwrap()),
            secret: None,
            prefix: b"t:".to_vec(),
            timeout: Duration::from_millis(100),
            background_timeout: Duration::from_secs(1),
            queue: 16,
            batch: Duration::ZERO,
            l1: None,
            sha: "lookup-sha".into(),
            tally_key: b"t:stats".to_vec(),
            tally_sha: "tally-sha".into(),
            tickets_key: b"t:tickets".to_vec(),
            tickets_sha: "tickets-sha".into(),
        };
        let clock = Arc::new(Manual::at(1_000_000));
        let core = Arc::new(Core::new(Arc::new(shared), clock.clone()));
        let script = Script::default();
        let link = FakeLink {
            script: script.clone(),
            pipelines,
            lent: Mutex::default(),
        };
        let mut w = Writer::new(core, link);
        // No report unless a test asks for one.
        w.report_due_ms = u64::MAX;
        Rig { w, script, clock }
    }

    impl Rig {
        fn net(&self) -> NetStats {
            self.w.core.net.snapshot()
        }

        fn count(&self, c: impl Fn(&Counters) -> &std::sync::atomic::AtomicU64) -> u64 {
            c(&self.w.core.counters).load(std::sync::atomic::Ordering::Relaxed)
        }

        /// The calls sent so far: (connection, packed, pipeline count).
        fn sent(&self) -> Vec<(u32, Vec<u8>, Option<usize>)> {
            self.script
                .sent()
                .into_iter()
                .map(|s| (s.conn, s.packed, s.count))
                .collect()
        }

        fn kept(&self) -> Option<u32> {
            self.w.conn.as_ref().map(|c| c.id)
        }

        /// A successful store on a new connection, which the writer then keeps.
        fn warm(&mut self) -> u32 {
            self.script.answer(Answer::One(Ok(ok())));
            self.w.write_batch(vec![set("warm")]);
            self.kept().unwrap()
        }
    }

    fn set_cmd(k: &str) -> SecretBytes {
        pack(&[b"SET", k.as_bytes(), b"v"])
    }

    fn del_cmd(k: &str) -> SecretBytes {
        pack(&[b"DEL", k.as_bytes()])
    }

    fn set(k: &str) -> QueuedWrite {
        (set_cmd(k), false, None)
    }

    fn del(k: &str) -> QueuedWrite {
        (del_cmd(k), true, None)
    }

    fn bytes(cmds: &[SecretBytes]) -> Vec<u8> {
        cmds.iter().flat_map(|c| c.as_slice().to_vec()).collect()
    }

    /// Writes queued together go as one pipeline, counted one by one.
    #[test]
    fn a_batch_goes_as_one_pipeline() {
        let mut r = rig(true);
        r.script.answer(Answer::Many(Some(Ok(vec![
            ok(),
            ok(),
            Value::Int(1),
            Value::Int(0),
        ]))));
        r.w.write_batch(vec![set("a"), set("b"), del("c"), del("d")]);
        let all = bytes(&[set_cmd("a"), set_cmd("b"), del_cmd("c"), del_cmd("d")]);
        assert_eq!(r.sent(), [(1, all, Some(4))]);
        assert_eq!(r.count(|c| &c.stores), 2);
        // A removal counts only if it removed something.
        assert_eq!(r.count(|c| &c.removes), 1);
        assert_eq!(r.net(), NetStats::default());
        // The connection is kept for the next writes.
        assert_eq!(r.kept(), Some(1));
        r.script.answer(Answer::One(Ok(Value::Int(1))));
        r.w.write_batch(vec![del("e")]);
        assert_eq!(r.sent()[1], (1, del_cmd("e").as_slice().to_vec(), None));
        assert_eq!(r.count(|c| &c.removes), 2);
        assert_eq!(r.script.made(), 1);
    }

    /// A cluster's connection routes command by command: each write alone.
    #[test]
    fn a_cluster_gets_one_command_a_write() {
        let mut r = rig(false);
        r.script
            .answer(Answer::One(Ok(ok())))
            .answer(Answer::One(Ok(ok())));
        r.w.write_batch(vec![set("a"), set("b")]);
        assert_eq!(
            r.sent(),
            [
                (1, set_cmd("a").as_slice().to_vec(), None),
                (1, set_cmd("b").as_slice().to_vec(), None)
            ]
        );
        assert_eq!(r.count(|c| &c.stores), 2);
    }

    /// A connection that turns out not to pipeline (a cluster's) sends them one at a time.
    #[test]
    fn a_connection_that_cannot_pipeline_sends_one_at_a_time() {
        let mut r = rig(true);
        r.script
            .answer(Answer::Many(None))
            .answer(Answer::One(Ok(ok())))
            .answer(Answer::One(Ok(Value::Int(1))));
        r.w.write_batch(vec![set("a"), del("b")]);
        let sent = r.sent();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].2, Some(2));
        assert_eq!(sent[1], (1, set_cmd("a").as_slice().to_vec(), None));
        assert_eq!(sent[2], (1, del_cmd("b").as_slice().to_vec(), None));
        assert_eq!((r.count(|c| &c.stores), r.count(|c| &c.removes)), (1, 1));
        assert_eq!(r.script.made(), 1);
    }

    /// In a pipeline, each error reply is its write's: counted, not told to the breaker,
    /// the connection kept (a `READONLY` among them too, as today).
    #[test]
    fn error_replies_in_a_pipeline_are_the_writes_own() {
        let mut r = rig(true);
        r.script.answer(Answer::Many(Some(Ok(vec![
            ok(),
            server_error("OOM command not allowed when used memory > 'maxmemory'."),
            server_error("READONLY You can't write against a read only replica."),
        ]))));
        r.w.write_batch(vec![set("a"), set("b"), del("c")]);
        assert_eq!(r.count(|c| &c.stores), 1);
        assert_eq!(r.count(|c| &c.removes), 0);
        assert_eq!(r.count(|c| &c.errors), 2);
        assert_eq!(r.net().net_errors, 2);
        assert_eq!(r.net().breaker_opens, 0);
        assert_eq!(r.kept(), Some(1));
        assert!(r.script.dropped().is_empty());
    }

    /// A lone write's error reply is the call's: the connection stays, the breaker is not
    /// told, the write is lost.
    #[test]
    fn a_refused_write_keeps_the_connection() {
        let mut r = rig(true);
        let first = r.warm();
        for _ in 0..FAILURES_TO_OPEN + 1 {
            r.script
                .answer(Answer::One(Err(error_reply("OOM command not allowed"))));
            r.w.write_batch(vec![set("a")]);
        }
        assert_eq!(r.kept(), Some(first));
        assert_eq!(r.count(|c| &c.stores), 1);
        assert_eq!(r.net().net_errors, u64::from(FAILURES_TO_OPEN) + 1);
        assert_eq!(r.count(|c| &c.errors), u64::from(FAILURES_TO_OPEN) + 1);
        assert!(!r.w.core.breaker.is_open());
        assert_eq!(r.script.made(), 1);
    }

    /// `READONLY` (a demoted primary) on a kept connection: dropped, and the write sent
    /// once more on a new one; nobody sees an error.
    #[test]
    fn readonly_drops_the_connection_and_tries_a_new_one() {
        for code in [
            "READONLY You can't write",
            "MASTERDOWN Link with MASTER is down",
            "LOADING Redis is loading",
        ] {
            let mut r = rig(true);
            let first = r.warm();
            r.script
                .answer(Answer::One(Err(error_reply(code))))
                .answer(Answer::One(Ok(ok())));
            r.w.write_batch(vec![set("a")]);
            assert_eq!(r.script.dropped(), [first], "{code}");
            let sent = r.sent();
            assert_eq!((sent[1].0, sent[2].0), (first, first + 1), "{code}");
            assert_eq!(sent[1].1, sent[2].1);
            assert_eq!(r.kept(), Some(first + 1));
            assert_eq!(r.count(|c| &c.stores), 2);
            assert_eq!(r.net(), NetStats::default(), "{code}");
        }
    }

    /// `READONLY` on a new connection: the write is lost, the connection dropped, the
    /// breaker told; in a row, they open it.
    #[test]
    fn readonly_on_new_connections_opens_the_breaker() {
        let mut r = rig(true);
        for n in 1..=FAILURES_TO_OPEN {
            r.script
                .answer(Answer::One(Err(error_reply("READONLY You can't write"))));
            r.w.write_batch(vec![set("a")]);
            assert_eq!(r.kept(), None);
            assert_eq!(r.script.dropped().len(), n as usize);
        }
        assert_eq!(r.script.made(), FAILURES_TO_OPEN);
        assert!(r.w.core.breaker.is_open());
        assert_eq!(r.net().net_errors, u64::from(FAILURES_TO_OPEN));
        assert_eq!(r.net().breaker_opens, 1);
        assert_eq!(r.count(|c| &c.stores), 0);
    }

    /// A kept connection found dead is replaced once; a second failure loses the writes,
    /// counted once, and nothing is sent again (no requeue).
    #[test]
    fn a_dead_connection_is_replaced_once() {
        let mut r = rig(true);
        let first = r.warm();
        r.script
            .answer(Answer::Many(Some(Err(reset()))))
            .answer(Answer::Many(Some(Err(reset()))));
        r.w.write_batch(vec![set("a"), set("b")]);
        let sent = r.sent();
        assert_eq!(sent.len(), 3);
        assert_eq!((sent[1].0, sent[2].0), (first, first + 1));
        assert_eq!(sent[1].1, sent[2].1);
        assert_eq!(r.kept(), None);
        assert_eq!(r.script.dropped(), [first, first + 1]);
        assert_eq!(r.net().net_errors, 1);
        assert_eq!(r.count(|c| &c.errors), 1);
        assert_eq!(r.count(|c| &c.stores), 1);
        assert_eq!(r.script.left(), 0);
    }

    /// A timeout is never sent again (a late reply): counted as one, the connection
    /// dropped.
    #[test]
    fn a_timeout_is_not_sent_again() {
        let mut r = rig(true);
        let first = r.warm();
        r.script.answer(Answer::One(Err(timed_out())));
        r.w.write_batch(vec![set("a")]);
        assert_eq!(r.sent().len(), 2);
        assert_eq!(r.script.dropped(), [first]);
        assert_eq!(r.net().timeouts, 1);
        assert_eq!(r.net().net_errors, 0);
        assert_eq!(r.count(|c| &c.errors), 1);
    }

    /// Failed connects count and trip the breaker; while it is open, writes are dropped
    /// (each counted in `queue_drops`) without touching the network.
    #[test]
    fn failures_open_the_breaker_and_then_writes_are_dropped() {
        let mut r = rig(true);
        for _ in 0..FAILURES_TO_OPEN {
            r.script.connect_result(Err(reset()));
            r.w.write_batch(vec![set("a"), set("b")]);
        }
        assert!(r.w.core.breaker.is_open());
        assert_eq!(r.net().net_errors, u64::from(FAILURES_TO_OPEN));
        assert_eq!(r.net().breaker_opens, 1);
        assert_eq!(r.script.made(), 0);
        r.w.write_batch(vec![set("c"), set("d"), del("e")]);
        r.w.write_batch(vec![del("f")]);
        assert_eq!(r.net().queue_drops, 4);
        assert!(r.sent().is_empty());
        assert_eq!(r.script.made(), 0);
    }

    /// Opens the breaker with failed connects; when.
    fn open_breaker(r: &mut Rig) -> u64 {
        for _ in 0..FAILURES_TO_OPEN {
            r.script.connect_result(Err(reset()));
            r.w.write_batch(vec![set("a")]);
        }
        assert!(r.w.core.breaker.is_open());
        r.w.core.now_ms()
    }

    /// The probe waits for the back-off; an answered PING closes the breaker and its
    /// connection goes to the lookups; writes go again.
    #[test]
    fn an_answered_probe_closes_the_breaker() {
        let mut r = rig(true);
        open_breaker(&mut r);
        r.w.tend(None);
        r.clock.advance(BACKOFF_MIN_MS - 1);
        r.w.tend(Some(Job::Wake));
        assert_eq!(r.script.made(), 0);
        r.clock.advance(1);
        r.script
            .answer(Answer::One(Ok(Value::SimpleString("PONG".into()))));
        r.w.tend(None);
        assert_eq!(r.sent(), [(1, pack(&[b"PING"]).as_slice().to_vec(), None)]);
        assert!(!r.w.core.breaker.is_open());
        assert_eq!(*r.w.link.lent.lock().unwrap(), [1]);
        r.script.answer(Answer::One(Ok(ok())));
        r.w.write_batch(vec![set("b")]);
        assert_eq!(r.count(|c| &c.stores), 1);
        assert_eq!(r.net().queue_drops, 0);
    }

    /// A probe that finds no answer doubles the back-off, and the next waits for it.
    #[test]
    fn a_failed_probe_backs_off() {
        let mut r = rig(true);
        open_breaker(&mut r);
        r.clock.advance(BACKOFF_MIN_MS);
        r.script.connect_result(Err(reset()));
        r.w.tend(None);
        assert!(r.w.core.breaker.is_open());
        assert_eq!(
            r.w.core.breaker.probe_wait(r.w.core.now_ms()),
            Some(Duration::from_millis(2 * BACKOFF_MIN_MS))
        );
        // Connected, but no PONG: as failed.
        r.clock.advance(2 * BACKOFF_MIN_MS);
        r.script.answer(Answer::One(Err(timed_out())));
        r.w.tend(None);
        assert!(r.w.core.breaker.is_open());
        assert_eq!(r.script.made(), 1);
        assert_eq!(r.script.dropped(), [1]);
        r.clock.advance(4 * BACKOFF_MIN_MS - 1);
        r.w.tend(None);
        assert_eq!(r.sent().len(), 1);
        // Probes are not counted as failures.
        assert_eq!(r.net().net_errors, u64::from(FAILURES_TO_OPEN));
        assert!(r.w.link.lent.lock().unwrap().is_empty());
    }

    fn is_evalsha(packed: &[u8]) -> bool {
        packed.starts_with(b"*") && packed.windows(9).any(|w| w == b"\r\nEVALSHA")
    }

    fn is_eval(packed: &[u8]) -> bool {
        packed.windows(10).any(|w| w == b"$4\r\nEVAL\r\n")
    }

    /// The counters' report: EVALSHA; NOSCRIPT, EVAL once (it caches the script); then
    /// EVALSHA again. Nothing changed, nothing sent; a report at most once per interval.
    #[test]
    fn the_report_falls_back_to_eval_once() {
        let mut r = rig(true);
        r.w.report_due_ms = 0;
        Counters::bump(&r.w.core.counters.stores);
        r.script
            .answer(Answer::One(Err(error_reply(
                "NOSCRIPT No matching script.",
            ))))
            .answer(Answer::One(Ok(ok())));
        r.w.tend(None);
        let sent = r.sent();
        assert_eq!(sent.len(), 2);
        assert!(is_evalsha(&sent[0].1) && !is_eval(&sent[0].1));
        assert!(is_eval(&sent[1].1));
        assert!(sent[1]
            .1
            .windows(tally::REPORT_SCRIPT.len())
            .any(|w| w == tally::REPORT_SCRIPT.as_bytes()));
        // Not due again for an interval; then nothing changed: nothing to send.
        r.w.tend(None);
        r.clock.advance(tally::REPORT_INTERVAL_MS);
        r.w.tend(None);
        assert_eq!(r.sent().len(), 2);
        Counters::bump(&r.w.core.counters.stores);
        r.clock.advance(tally::REPORT_INTERVAL_MS);
        r.script.answer(Answer::One(Ok(ok())));
        r.w.tend(None);
        let sent = r.sent();
        assert_eq!(sent.len(), 3);
        assert!(is_evalsha(&sent[2].1));
        // On the same connection, kept.
        assert_eq!(sent.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(r.net(), NetStats::default());
    }

    /// A refused report keeps the connection, counts nothing, trips nothing, and what it
    /// carried goes with the next one; a flush reports and answers.
    #[test]
    fn a_refused_report_is_sent_again_later() {
        let mut r = rig(true);
        Counters::bump(&r.w.core.counters.stores);
        r.script
            .answer(Answer::One(Err(error_reply("NOPERM no permission"))))
            .answer(Answer::One(Ok(ok())));
        let (ack, done) = mpsc::channel();
        r.w.tend(Some(Job::Flush(ack)));
        assert!(done.try_recv().is_ok());
        assert_eq!(r.kept(), Some(1));
        let (ack, done) = mpsc::channel();
        r.w.tend(Some(Job::Flush(ack)));
        assert!(done.try_recv().is_ok());
        let sent = r.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].1, sent[1].1);
        assert_eq!(r.net(), NetStats::default());
        assert_eq!(r.count(|c| &c.errors), 0);
        // Reported: nothing left to send.
        let (ack, _done) = mpsc::channel();
        r.w.tend(Some(Job::Flush(ack)));
        assert_eq!(r.sent().len(), 2);
    }

    /// A SET goes only while its value is pending: a taken one is not sent; a reusable one
    /// stays readable until sent, a single-use one stops being pending as it goes.
    #[test]
    fn only_pending_values_are_sent() {
        let mut r = rig(true);
        let pending = &r.w.core.pending;
        let taken = pending.insert(b"t:a".to_vec(), SecretBytes::from(vec![0, 1]));
        let reusable = pending.insert(b"t:b".to_vec(), SecretBytes::from(vec![0, 2]));
        let single = pending.insert(
            b"t:c".to_vec(),
            SecretBytes::from(vec![super::super::super::conn::SINGLE_USE, 3]),
        );
        assert!(pending.get(b"t:a", true).is_some());
        r.script.answer(Answer::Many(Some(Ok(vec![ok(), ok()]))));
        r.w.write_batch(vec![
            (set_cmd("t:a"), false, Some((b"t:a".to_vec(), taken))),
            (set_cmd("t:b"), false, Some((b"t:b".to_vec(), reusable))),
            (set_cmd("t:c"), false, Some((b"t:c".to_vec(), single))),
        ]);
        assert_eq!(
            r.sent(),
            [(1, bytes(&[set_cmd("t:b"), set_cmd("t:c")]), Some(2))]
        );
        let pending = &r.w.core.pending;
        assert!(pending.get(b"t:b", false).is_none());
        assert!(pending.get(b"t:c", false).is_none());
        assert_eq!(r.count(|c| &c.stores), 2);
    }

    fn write(k: &str) -> Job {
        Job::Write {
            packed: set_cmd(k),
            remove: false,
            pending: None,
        }
    }

    /// The writes queued behind the first go with it, up to MAX_BATCH, in order; the first
    /// job that is not a write ends the batch and comes next.
    #[test]
    fn queued_writes_are_gathered_into_one_batch() {
        let (tx, rx) = mpsc::sync_channel(2 * MAX_BATCH);
        for n in 1..MAX_BATCH + 10 {
            tx.send(write(&n.to_string())).unwrap();
        }
        let (batch, job) = gather(Some(write("0")), &rx);
        assert_eq!(batch.len(), MAX_BATCH);
        assert!(job.is_none());
        for (n, (packed, remove, _)) in batch.iter().enumerate() {
            assert_eq!(packed.as_slice(), set_cmd(&n.to_string()).as_slice());
            assert!(!remove);
        }
        tx.send(Job::Wake).unwrap();
        tx.send(write("after")).unwrap();
        let first = rx.try_recv().ok();
        let (batch, job) = gather(first, &rx);
        // What the first batch left: writes MAX_BATCH to MAX_BATCH + 9.
        assert_eq!(batch.len(), 10);
        assert_eq!(
            batch[0].0.as_slice(),
            set_cmd(&MAX_BATCH.to_string()).as_slice()
        );
        assert!(matches!(job, Some(Job::Wake)));
        let (batch, job) = gather(rx.try_recv().ok(), &rx);
        assert_eq!(batch.len(), 1);
        assert!(job.is_none());
        let (batch, job) = gather(Some(Job::Wake), &rx);
        assert!(batch.is_empty() && matches!(job, Some(Job::Wake)));
    }
}
