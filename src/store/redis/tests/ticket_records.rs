//! Ticket-key records in Redis (`tickets`), against a server of the test's own: first add
//! wins between stores, the hash's expiry follows the latest `keep_until`, fields that are
//! not records are skipped, and `flush` leaves the hash alone.

use super::*;
use crate::store::MAX_TICKET_RECORD_BYTES;

const HASH: &str = "sesscache:tickets";

/// (seq, bytes) of every record, by seq.
fn records(s: &RedisStore) -> Vec<(u64, Vec<u8>)> {
    let mut r: Vec<(u64, Vec<u8>)> = s
        .ticket_records()
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.bytes.as_slice().to_vec()))
        .collect();
    r.sort();
    r
}

/// The hash's expiry (Unix seconds), as the server says: -1 none, -2 no hash.
fn expire_time(srv: &Server) -> i64 {
    redis::cmd("EXPIRETIME")
        .arg(HASH)
        .query(&mut srv.admin())
        .unwrap()
}

#[test]
fn first_add_wins_between_two_stores() {
    let srv = Server::unix(&[]);
    let a = open(&srv.cfg());
    let b = open(&srv.cfg());
    let until = now() + 3600;
    assert_eq!(a.add_ticket_record(1, b"first", until), Ok(true));
    assert_eq!(b.add_ticket_record(1, b"second", until), Ok(false));
    assert_eq!(a.add_ticket_record(1, b"third", until), Ok(false));
    assert_eq!(records(&b), [(1, b"first".to_vec())]);
    assert_eq!(records(&a), records(&b));
    // Racing adders of one number: one wins, every one reads its record.
    let barrier = Barrier::new(8);
    let wins = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..8u8 {
            let (cfg, barrier, wins) = (srv.cfg(), &barrier, &wins);
            scope.spawn(move || {
                let s = open(&cfg);
                barrier.wait();
                if s.add_ticket_record(2, &[t; 32], until).unwrap() {
                    wins.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::Relaxed), 1);
    assert_eq!(records(&a).len(), 2);
    assert_eq!(count(&a.counters().errors) + count(&b.counters().errors), 0);
    // One connection per process, kept.
    let mut admin = srv.admin();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert_eq!(
        clients.lines().count(),
        3,
        "a, b and the test's own:\n{clients}"
    );
}

#[test]
fn records_round_trip_and_drop() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let until = now() + 3600;
    let binary: Vec<u8> = (0..MAX_TICKET_RECORD_BYTES).map(|i| i as u8).collect();
    assert_eq!(s.add_ticket_record(0, b"", until), Ok(true));
    assert_eq!(s.add_ticket_record(7, b"\r\n$3\r\n*", until), Ok(true));
    assert_eq!(s.add_ticket_record(u64::MAX, &binary, until), Ok(true));
    assert_eq!(
        s.add_ticket_record(8, &[0; MAX_TICKET_RECORD_BYTES + 1], until),
        Err(StoreError::TooLarge)
    );
    assert_eq!(
        records(&s),
        [
            (0, Vec::new()),
            (7, b"\r\n$3\r\n*".to_vec()),
            (u64::MAX, binary.clone())
        ]
    );
    // Stored under their numbers in decimal.
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(HASH)
        .query(&mut srv.admin())
        .unwrap();
    assert!(fields.contains(&u64::MAX.to_string()), "{fields:?}");
    s.drop_ticket_records(&[7, 99]).unwrap();
    s.drop_ticket_records(&[]).unwrap();
    assert_eq!(records(&s), [(0, Vec::new()), (u64::MAX, binary)]);
    s.drop_ticket_records(&[0, u64::MAX]).unwrap();
    assert!(records(&s).is_empty());
    assert_eq!(expire_time(&srv), -2, "an emptied hash is gone");
    assert_eq!(count(&s.counters().errors), 0);
    assert_eq!(net(&s), NetStats::default());
}

#[test]
fn the_hash_expires_at_the_latest_keep_until() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let t = now();
    assert_eq!(s.add_ticket_record(1, b"one", t + 100), Ok(true));
    assert_eq!(expire_time(&srv), (t + 100) as i64);
    // A later record moves it, an earlier one does not.
    assert_eq!(s.add_ticket_record(2, b"two", t + 500), Ok(true));
    assert_eq!(expire_time(&srv), (t + 500) as i64);
    assert_eq!(s.add_ticket_record(3, b"three", t + 200), Ok(true));
    assert_eq!(expire_time(&srv), (t + 500) as i64);
    // One already past changes nothing and is kept meanwhile.
    assert_eq!(s.add_ticket_record(4, b"four", t - 10), Ok(true));
    assert_eq!(expire_time(&srv), (t + 500) as i64);
    assert_eq!(records(&s).len(), 4);
    // A losing add with a later keep_until still extends: the record is wanted that long.
    assert_eq!(s.add_ticket_record(1, b"late", t + 900), Ok(false));
    assert_eq!(expire_time(&srv), (t + 900) as i64);
    // Absurd times are cut, not refused.
    assert_eq!(s.add_ticket_record(5, b"five", u64::MAX), Ok(true));
    assert_eq!(expire_time(&srv), 1 << 40);
    // A new hash given a time already past lives a second, not zero.
    let mut admin = srv.admin();
    let _: () = redis::cmd("DEL").arg(HASH).query(&mut admin).unwrap();
    assert_eq!(s.add_ticket_record(6, b"six", t - 10), Ok(true));
    assert_eq!(records(&s), [(6, b"six".to_vec())]);
    let at = expire_time(&srv);
    assert!(at > t as i64 && at <= now() as i64 + 1, "{at} vs {t}");
    // A hash someone left without an expiry gets one.
    let _: () = redis::cmd("PERSIST").arg(HASH).query(&mut admin).unwrap();
    assert_eq!(expire_time(&srv), -1);
    assert_eq!(s.add_ticket_record(7, b"seven", t + 300), Ok(true));
    assert_eq!(expire_time(&srv), (t + 300) as i64);
}

#[test]
fn fields_that_are_not_records_are_skipped_and_counted() {
    crate::log::silence();
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    assert_eq!(s.add_ticket_record(6, b"good", now() + 100), Ok(true));
    let mut admin = srv.admin();
    let big = vec![1u8; MAX_TICKET_RECORD_BYTES + 1];
    let bad: [(&str, &[u8]); 5] = [
        ("abc", b"x"),
        ("007", b"x"),
        ("-1", b"x"),
        ("18446744073709551616", b"x"),
        ("5", &big),
    ];
    for (f, v) in bad {
        let _: () = redis::cmd("HSET")
            .arg(HASH)
            .arg(f)
            .arg(v)
            .query(&mut admin)
            .unwrap();
    }
    assert_eq!(records(&s), [(6, b"good".to_vec())]);
    assert_eq!(count(&s.counters().errors), 5);
    // Not a hash at all: an error the server answers with, counted; the store goes on.
    let _: () = redis::cmd("SET")
        .arg(HASH)
        .arg("x")
        .query(&mut admin)
        .unwrap();
    assert_eq!(s.ticket_records().err(), Some(StoreError::Unavailable));
    assert_eq!(
        s.add_ticket_record(1, b"x", now() + 100),
        Err(StoreError::Unavailable)
    );
    assert_eq!(count(&s.counters().errors), 7);
    assert_eq!(net(&s).net_errors, 2);
    let _: () = redis::cmd("DEL").arg(HASH).query(&mut admin).unwrap();
    assert_eq!(s.add_ticket_record(1, b"x", now() + 100), Ok(true));
}

#[test]
fn flush_and_survey_leave_the_hash_alone() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let t = now();
    assert_eq!(s.add_ticket_record(1, b"kept", t + 100), Ok(true));
    for i in 0..5 {
        s.put(&key(i), value(b"v", t + 100, false), t).unwrap();
    }
    s.flush();
    let fleet = s.survey().unwrap().unwrap();
    assert_eq!(fleet.stats.entries, 5, "{fleet:?}");
    assert_eq!(Store::flush(&s), Ok(5));
    assert_eq!(records(&s), [(1, b"kept".to_vec())]);
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut srv.admin()).unwrap();
    assert!(left.contains(&HASH.to_string()), "{left:?}");
}

/// Redis goes away: the calls fail (counted, within the background budget), the breaker
/// is not touched; it comes back: the next call works on a new connection.
#[test]
fn an_outage_is_an_error_then_a_restart_is_survived() {
    crate::log::silence();
    let mut srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    assert_eq!(s.add_ticket_record(1, b"one", now() + 100), Ok(true));
    srv.kill();
    let t0 = Instant::now();
    assert_eq!(s.ticket_records().err(), Some(StoreError::Unavailable));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(count(&s.counters().errors), 1);
    assert_eq!(net(&s).breaker_opens, 0);
    srv.run();
    // (The server's data went with it: no persistence in tests.)
    assert_eq!(s.add_ticket_record(2, b"two", now() + 100), Ok(true));
    // A restart under a kept connection: replaced within the call.
    srv.restart();
    assert_eq!(s.add_ticket_record(3, b"three", now() + 100), Ok(true));
    assert_eq!(records(&s), [(3, b"three".to_vec())]);
    assert_eq!(count(&s.counters().errors), 1);
}

/// A server that does not answer in time: `Timeout` after the background budget, counted.
#[test]
fn a_silent_server_is_a_timeout() {
    crate::log::silence();
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    assert_eq!(s.add_ticket_record(1, b"one", now() + 100), Ok(true));
    srv.pause(2500);
    let t0 = Instant::now();
    assert_eq!(s.ticket_records().err(), Some(StoreError::Timeout));
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert_eq!(net(&s).timeouts, 1);
    assert_eq!(count(&s.counters().errors), 1);
}

/// A forked child uses a connection of its own, and the parent's still works.
#[test]
fn a_forked_child_has_its_own_connection() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    assert_eq!(s.add_ticket_record(1, b"parent", now() + 100), Ok(true));
    // SAFETY: fork in a test; the child uses the store, then leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| {
            s.add_ticket_record(2, b"child", now() + 100) == Ok(true)
                && s.add_ticket_record(1, b"again", now() + 100) == Ok(false)
                && s.ticket_records().map(|r| r.len()) == Ok(2)
        }));
        // SAFETY: leaving the child without running anything of the parent's.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
    assert_eq!(
        records(&s),
        [(1, b"parent".to_vec()), (2, b"child".to_vec())]
    );
    assert_eq!(count(&s.counters().errors), 0);
}

/// The commands the module docs list are enough for a restricted user.
#[test]
fn the_listed_commands_are_enough() {
    let srv = Server::unix(&[]);
    let rule = [
        "SETUSER",
        "keys",
        "on",
        ">keys-Pw-1",
        "~sesscache:*",
        "+eval",
        "+evalsha",
        "+hsetnx",
        "+time",
        "+expiretime",
        "+expireat",
        "+hgetall",
        "+hdel",
    ];
    redis::cmd("ACL").arg(&rule).exec(&mut srv.admin()).unwrap();
    let mut cfg = srv.cfg();
    cfg.user = Some("keys".into());
    cfg.password = Password::Inline("keys-Pw-1".into());
    let s = open(&cfg);
    assert_eq!(s.add_ticket_record(1, b"one", now() + 100), Ok(true));
    assert_eq!(s.add_ticket_record(1, b"two", now() + 200), Ok(false));
    assert_eq!(records(&s), [(1, b"one".to_vec())]);
    s.drop_ticket_records(&[1]).unwrap();
    assert!(records(&s).is_empty());
    assert_eq!(count(&s.counters().errors), 0);
}
