//! The writer's logic over a scripted transport and a clock moved by hand: no server, no
//! waiting.

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
/// the connection kept.
#[test]
fn error_replies_in_a_pipeline_are_the_writes_own() {
    let mut r = rig(true);
    r.script.answer(Answer::Many(Some(Ok(vec![
        ok(),
        server_error("OOM command not allowed when used memory > 'maxmemory'."),
        server_error("NOPERM this user has no permissions to run the 'del' command"),
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

/// A pipeline answered `READONLY` (a primary demoted by a failover) on a kept connection:
/// dropped, and the batch sent once more on a new one, as a lone write is. (Before, the
/// connection was kept, and every later batch went to the demoted node until a Sentinel
/// watch closed it.)
#[test]
fn readonly_in_a_pipeline_drops_the_connection_and_tries_a_new_one() {
    let mut r = rig(true);
    let first = r.warm();
    let readonly = || server_error("READONLY You can't write against a read only replica.");
    r.script
        .answer(Answer::Many(Some(Ok(vec![readonly(), readonly()]))))
        .answer(Answer::Many(Some(Ok(vec![ok(), Value::Int(1)]))));
    r.w.write_batch(vec![set("a"), del("b")]);
    assert_eq!(r.script.dropped(), [first]);
    let sent = r.sent();
    assert_eq!((sent[1].0, sent[2].0), (first, first + 1));
    assert_eq!(sent[1].1, sent[2].1, "the same batch again");
    assert_eq!(r.kept(), Some(first + 1));
    assert_eq!((r.count(|c| &c.stores), r.count(|c| &c.removes)), (2, 1));
    assert_eq!(r.count(|c| &c.errors), 0);
    assert_eq!(r.net(), NetStats::default());
}

/// `READONLY` in a pipeline on a new connection: the writes are lost and counted, the
/// connection dropped, the breaker told once per batch.
#[test]
fn readonly_in_a_pipeline_on_a_new_connection_tells_the_breaker_once() {
    let mut r = rig(true);
    let readonly = || server_error("READONLY You can't write against a read only replica.");
    for n in 1..=FAILURES_TO_OPEN {
        r.script
            .answer(Answer::Many(Some(Ok(vec![readonly(), readonly()]))));
        r.w.write_batch(vec![set("a"), set("b")]);
        assert_eq!(r.kept(), None);
        assert_eq!(r.script.dropped().len(), n as usize);
    }
    assert!(r.w.core.breaker.is_open());
    assert_eq!(r.net().breaker_opens, 1);
    assert_eq!(r.count(|c| &c.errors), 2 * u64::from(FAILURES_TO_OPEN));
    assert_eq!(r.count(|c| &c.stores), 0);
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
