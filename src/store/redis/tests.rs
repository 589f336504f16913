//! Tests against real Redis servers (`redis-server`, started here on a Unix socket or a
//! free TCP port in a directory of the test's own, killed when the test ends). A machine
//! without `redis-server` fails these tests: install it.

use super::*;
use crate::config::{Password, RedisConfig, RedisTarget};
use crate::error::ErrorKind;
use crate::store::testing::{bytes, key, value};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::Barrier;
use std::time::Instant;

mod failover;
mod ticket_records;

const SERVER: &str = "redis-server";

fn now() -> u64 {
    crate::clock::now()
}

/// A directory of this test's own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sc-redis-{}-{}-{what}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port nobody listens on now (and, for cluster nodes, its bus port + 10000 too).
fn free_port(with_bus: bool) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A `redis-server` of this test's own.
struct Server {
    /// Removed when the server is dropped (after it is killed).
    _dir: TempDir,
    socket: PathBuf,
    port: u16,
    args: Vec<String>,
    password: Option<String>,
    child: Option<Child>,
}

impl Server {
    /// On a Unix socket (no TCP).
    fn unix(extra: &[&str]) -> Server {
        Server::start(0, extra)
    }

    /// On a free TCP port of 127.0.0.1 (and a Unix socket).
    fn tcp(extra: &[&str]) -> Server {
        Server::start(free_port(false), extra)
    }

    fn start(port: u16, extra: &[&str]) -> Server {
        let dir = TempDir::new("server");
        let socket = dir.0.join("redis.sock");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            socket.to_str().unwrap(),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.0.to_str().unwrap(),
            "--loglevel",
            "warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .map(|i| extra[i + 1].to_string());
        let mut s = Server {
            _dir: dir,
            socket,
            port,
            args,
            password,
            child: None,
        };
        s.run();
        s
    }

    fn run(&mut self) {
        let child = Command::new(SERVER)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {SERVER} ({e}): the redis backend's tests need a Redis \
                     server: install redis-server (e.g. `apt-get install redis-server`)"
                )
            });
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if let Ok(mut c) = self.try_admin() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{SERVER} exited at start: {status}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{SERVER} did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: the socket file stays, connects are refused.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.run();
    }

    fn try_admin(&self) -> redis::RedisResult<redis::Connection> {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Unix(self.socket.clone()),
            redis: redis::RedisConnectionInfo {
                password: self.password.clone(),
                ..Default::default()
            },
        };
        redis::Client::open(info)?.get_connection_with_timeout(Duration::from_secs(5))
    }

    /// A connection for the test itself.
    fn admin(&self) -> redis::Connection {
        self.try_admin().unwrap()
    }

    fn unix_target(&self) -> RedisTarget {
        RedisTarget::Unix {
            path: self.socket.to_str().unwrap().to_string(),
        }
    }

    fn tcp_target(&self) -> RedisTarget {
        assert_ne!(self.port, 0);
        RedisTarget::Tcp {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    /// Settings for this server's socket, with a lookup budget generous enough for a busy
    /// machine.
    fn cfg(&self) -> RedisConfig {
        RedisConfig {
            target: self.unix_target(),
            db: 0,
            user: None,
            password: Password::None,
            prefix: "sesscache:".into(),
            timeout_ms: 500,
            l1: 0,
            queue: 1024,
            batch_ms: 2,
            tls: None,
        }
    }

    fn pause(&self, ms: u64) {
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .exec(&mut self.admin())
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn open(cfg: &RedisConfig) -> RedisStore {
    RedisStore::open(cfg, 16 << 10).unwrap()
}

fn get(s: &RedisStore, k: &SessionKey) -> Option<Vec<u8>> {
    bytes(s.get(k, now(), &mut |_| false).unwrap())
}

fn net(s: &RedisStore) -> NetStats {
    s.net_stats()
}

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn put_get_remove_take() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let t = now();
    let stamp = s.put(&key(1), value(b"one", t + 100, false), t).unwrap();
    assert_ne!(stamp & REDIS_STAMP, 0);
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"one");
    assert_eq!(get(&s, &key(1)).unwrap(), b"one", "reusable");
    // The stamp names the value: a caller that knows it gets no copy.
    let f = s.get(&key(1), t, &mut |st| st == stamp).unwrap().unwrap();
    assert_eq!(
        (f.stamp, f.bytes.is_none(), f.consumed),
        (stamp, true, false)
    );
    // What Redis holds: prefix + hex ID, flags byte first, an expiry.
    let mut admin = srv.admin();
    let rkey = format!("sesscache:{}", hex(key(1).as_bytes()));
    let raw: Vec<u8> = redis::cmd("GET").arg(&rkey).query(&mut admin).unwrap();
    assert_eq!(raw, b"\0one");
    let pttl: i64 = redis::cmd("PTTL").arg(&rkey).query(&mut admin).unwrap();
    assert!((90_000..=100_000).contains(&pttl), "{pttl}");

    assert!(!s.remove(&key(1)).unwrap(), "no l1: nothing known locally");
    s.flush();
    assert!(get(&s, &key(1)).is_none());

    s.put(&key(2), value(b"two", t + 100, true), t).unwrap();
    s.flush();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(format!("sesscache:{}", hex(key(2).as_bytes())))
        .query(&mut admin)
        .unwrap();
    assert_eq!(raw, b"\x01two");
    let f = s.get(&key(2), t, &mut |_| false).unwrap().unwrap();
    assert!(f.consumed);
    assert_eq!(f.bytes.unwrap().as_slice(), b"two");
    assert!(get(&s, &key(2)).is_none(), "single use");

    s.put(&key(3), value(b"three", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(s.take(&key(3), t).unwrap().unwrap().as_slice(), b"three");
    assert!(get(&s, &key(3)).is_none());
    assert!(s.take(&key(3), t).unwrap().is_none());

    // Refused before anything is queued.
    assert_eq!(
        s.put(&key(4), value(&[0; 16 << 10 | 1], t + 100, false), t),
        Err(StoreError::TooLarge)
    );
    assert_eq!(
        s.put(&key(4), value(b"x", t, false), t),
        Err(StoreError::Expired)
    );
    let c = s.counters();
    assert_eq!((count(&c.stores), count(&c.removes)), (3, 1));
    assert_eq!(count(&c.errors), 0);
    assert_eq!(net(&s), NetStats::default());
    assert_eq!(s.occupancy(), (0, 0));
}

/// TCP, another database (SELECT through the connection's settings).
#[test]
fn tcp_and_database() {
    let srv = Server::tcp(&[]);
    let mut cfg = srv.cfg();
    cfg.target = srv.tcp_target();
    cfg.db = 3;
    cfg.prefix = "other:".into();
    let s = open(&cfg);
    let t = now();
    s.put(&key(1), value(b"one", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"one");
    let mut admin = srv.admin();
    let rkey = format!("other:{}", hex(key(1).as_bytes()));
    let in_0: bool = redis::cmd("EXISTS").arg(&rkey).query(&mut admin).unwrap();
    redis::cmd("SELECT").arg(3).exec(&mut admin).unwrap();
    let in_3: bool = redis::cmd("EXISTS").arg(&rkey).query(&mut admin).unwrap();
    assert!(!in_0 && in_3);
}

/// Nothing is connected at open; a server that is not there makes lookups fail, not open.
#[test]
fn open_connects_to_nothing() {
    let dir = TempDir::new("nothing");
    let mut cfg = Server::cfg_for(&dir.0.join("none.sock"));
    cfg.timeout_ms = 200;
    let s = open(&cfg);
    let e = s.get(&key(1), now(), &mut |_| false).err().unwrap();
    assert_eq!(e, StoreError::Unavailable);
    assert_eq!(count(&s.counters().errors), 1);
    assert_eq!(net(&s).net_errors, 1);
}

impl Server {
    fn cfg_for(socket: &Path) -> RedisConfig {
        RedisConfig {
            target: RedisTarget::Unix {
                path: socket.to_str().unwrap().to_string(),
            },
            db: 0,
            user: None,
            password: Password::None,
            prefix: "sesscache:".into(),
            timeout_ms: 500,
            l1: 0,
            queue: 1024,
            batch_ms: 2,
            tls: None,
        }
    }
}

/// Two stores stand for two processes (or hosts); many lookups race for each single-use
/// entry: exactly one gets it.
#[test]
fn single_use_is_consumed_once_across_stores() {
    let srv = Server::unix(&[]);
    let a = Arc::new(open(&srv.cfg()));
    let b = Arc::new(open(&srv.cfg()));
    let t = now();
    const THREADS: usize = 8;
    for round in 0..20u32 {
        a.put(&key(round), value(b"ticket", t + 100, true), t)
            .unwrap();
        a.flush();
        let barrier = Arc::new(Barrier::new(THREADS));
        let winners = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (barrier, winners) = (barrier.clone(), winners.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let f = s.get(&key(round), now(), &mut |_| false).unwrap();
                    if let Some(f) = f {
                        assert!(f.consumed);
                        assert_eq!(f.bytes.unwrap().as_slice(), b"ticket");
                        winners.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(winners.load(Ordering::Relaxed), 1, "round {round}");
    }
}

/// Redis expires entries itself (PX, at least one second).
#[test]
fn entries_expire() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let t = now();
    s.put(&key(1), value(b"short", t + 1, false), t).unwrap();
    s.flush();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("sesscache:{}", hex(key(1).as_bytes())))
        .query(&mut srv.admin())
        .unwrap();
    assert!((1..=1000).contains(&pttl), "{pttl}");
    std::thread::sleep(Duration::from_millis(1300));
    assert!(get(&s, &key(1)).is_none());
}

/// The store behaves like the backends' model (a map whose single-use entries vanish on
/// their first lookup), once its queued writes are applied. `remove`'s answer and the
/// occupancy are this backend's own (see the module documentation) and not compared.
fn behaves_like_a_map(s: &RedisStore, ops: &[(u8, u32, u8)]) -> Result<(), String> {
    let mut model: std::collections::HashMap<u32, (Vec<u8>, bool)> = Default::default();
    for &(op, k, v) in ops {
        let t = now();
        match op {
            0 => {
                let single = v % 3 == 0;
                let d = vec![v; 1 + v as usize % 50];
                s.put(&key(k), value(&d, t + 100, single), t).unwrap();
                s.flush();
                model.insert(k, (d, single));
            }
            1 => {
                let want = model.get(&k).cloned();
                if want.as_ref().is_some_and(|w| w.1) {
                    model.remove(&k);
                }
                let got = get(s, &key(k));
                if got != want.map(|w| w.0) {
                    return Err(format!("get {k}: {got:?}"));
                }
            }
            2 => {
                let got = s.take(&key(k), t).unwrap().map(|b| b.as_slice().to_vec());
                if got != model.remove(&k).map(|w| w.0) {
                    return Err(format!("take {k}: {got:?}"));
                }
            }
            _ => {
                s.remove(&key(k)).unwrap();
                s.flush();
                model.remove(&k);
            }
        }
    }
    Ok(())
}

#[test]
fn model() {
    use proptest::test_runner::{Config, TestRunner};
    let srv = Server::unix(&[]);
    for l1 in [0, 64] {
        let mut cfg = srv.cfg();
        cfg.l1 = l1;
        let mut runner = TestRunner::new(Config {
            cases: 24,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&crate::store::testing::ops(), |ops| {
                // A new prefix per case: a fresh map.
                static CASE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let mut cfg = cfg.clone();
                cfg.prefix = format!("case{}:", CASE.fetch_add(1, Ordering::Relaxed));
                let s = open(&cfg);
                behaves_like_a_map(&s, &ops).map_err(proptest::test_runner::TestCaseError::fail)
            })
            .unwrap();
    }
}

/// A server that does not answer: the lookup gives up after its budget, with a pooled
/// connection and with none.
#[test]
fn lookups_time_out() {
    let srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.timeout_ms = 50;
    let warm = open(&cfg);
    assert!(get(&warm, &key(1)).is_none());
    assert_eq!(warm.proc().idle_connections(), 1);
    let cold = open(&cfg);
    srv.pause(2000);
    for (what, s) in [("pooled connection", &warm), ("new connection", &cold)] {
        let t0 = Instant::now();
        let r = s.get(&key(1), now(), &mut |_| false);
        let took = t0.elapsed();
        println!("redis timeout (50 ms budget, {what}): {took:?}");
        assert_eq!(r.err(), Some(StoreError::Timeout), "{what}");
        assert!(took >= Duration::from_millis(45), "{what}: {took:?}");
        assert!(took < Duration::from_millis(250), "{what}: {took:?}");
        assert_eq!(net(s).timeouts, 1);
        assert_eq!(count(&s.counters().errors), 1);
    }
    // The connection that timed out was dropped, not pooled again.
    assert_eq!(warm.proc().idle_connections(), 0);
}

/// Redis dies: lookups fail, the breaker opens, lookups then fail at once, writes are
/// dropped; Redis comes back: lookups succeed again without anyone resetting anything.
#[test]
fn breaker_opens_and_recovers() {
    let mut srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.timeout_ms = 100;
    let s = open(&cfg);
    let t = now();
    s.put(&key(1), value(b"kept", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"kept");
    srv.kill();
    let mut failures = 0;
    while net(&s).breaker_opens == 0 {
        let t0 = Instant::now();
        let r = s.get(&key(1), now(), &mut |_| false);
        assert_eq!(r.err(), Some(StoreError::Unavailable));
        println!("redis down: failed lookup in {:?}", t0.elapsed());
        failures += 1;
        assert!(
            failures <= process::FAILURES_TO_OPEN,
            "the breaker did not open"
        );
    }
    assert_eq!(net(&s).net_errors, u64::from(process::FAILURES_TO_OPEN));
    let mut took: Vec<Duration> = (0..100)
        .map(|_| {
            let t0 = Instant::now();
            let r = s.get(&key(1), now(), &mut |_| false);
            let took = t0.elapsed();
            assert_eq!(r.err(), Some(StoreError::Unavailable));
            took
        })
        .collect();
    took.sort();
    let (median, worst) = (took[50], took[99]);
    println!("redis breaker open: 100 lookups failed in {median:?} (median), {worst:?} (worst)");
    // Far below the 100 ms budget (the worst allows for a busy machine's scheduling).
    assert!(median < Duration::from_millis(1), "{median:?}");
    assert!(worst < Duration::from_millis(30), "{worst:?}");
    assert_eq!(
        net(&s).net_errors,
        u64::from(process::FAILURES_TO_OPEN),
        "no network while open"
    );
    let drops = net(&s).queue_drops;
    assert_eq!(
        s.put(&key(2), value(b"x", t + 100, false), t),
        Err(StoreError::Unavailable)
    );
    assert_eq!(s.remove(&key(2)), Err(StoreError::Unavailable));
    assert_eq!(net(&s).queue_drops, drops + 2);

    // Down long enough for a few probes to fail.
    std::thread::sleep(Duration::from_millis(400));
    srv.run();
    let back = Instant::now();
    loop {
        if let Ok(found) = s.get(&key(1), now(), &mut |_| false) {
            // A fresh server: nothing stored.
            assert!(found.is_none());
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "no recovery after {:?}",
            back.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "redis back: lookups succeed again after {:?}",
        back.elapsed()
    );
    s.put(&key(3), value(b"new", now() + 100, false), now())
        .unwrap();
    s.flush();
    assert_eq!(get(&s, &key(3)).unwrap(), b"new");
}

/// A restarted server: the pooled connections are dead; the lookup that finds out tries
/// once more on a new one, and nobody sees an error.
#[test]
fn a_restart_costs_no_lookup() {
    let mut srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    assert!(get(&s, &key(1)).is_none());
    let t = now();
    s.put(&key(1), value(b"v", t + 100, false), t).unwrap();
    s.flush();
    srv.restart();
    assert!(get(&s, &key(1)).is_none());
    s.put(&key(1), value(b"v", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"v");
    assert_eq!(count(&s.counters().errors), 0);
    assert_eq!(net(&s), NetStats::default());
}

/// Writes beyond the queue's room are dropped and counted, never waited for.
#[test]
fn a_full_queue_drops_writes() {
    let srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.queue = 4;
    let s = open(&cfg);
    let t = now();
    s.put(&key(0), value(b"v", t + 100, false), t).unwrap();
    s.flush();
    srv.pause(1500);
    let t0 = Instant::now();
    let mut refused = 0;
    for n in 1..=100 {
        if s.put(&key(n), value(b"v", t + 100, false), t).is_err() {
            refused += 1;
        }
    }
    let took = t0.elapsed();
    println!("redis paused: 100 puts took {took:?}, {refused} dropped");
    // The writer waits up to a second for the paused server: none of that here.
    assert!(took < Duration::from_millis(300), "{took:?}");
    assert!(refused >= 90, "{refused}");
    assert_eq!(net(&s).queue_drops, refused);
    assert_eq!(count(&s.counters().errors), refused);
}

fn password_cfg(srv: &Server, password: Password) -> RedisConfig {
    let mut cfg = srv.cfg();
    cfg.password = password;
    cfg.timeout_ms = 300;
    cfg
}

fn works(cfg: &RedisConfig) -> bool {
    let s = open(cfg);
    let t = now();
    s.put(&key(7), value(b"pw", t + 100, false), t).is_ok() && {
        s.flush();
        let found = s.get(&key(7), now(), &mut |_| false).ok().flatten();
        bytes(found).as_deref() == Some(&b"pw"[..])
    }
}

#[test]
fn passwords() {
    const PW: &str = "Pw-7f3c-very-secret";
    let srv = Server::unix(&["--requirepass", PW]);
    assert!(works(&password_cfg(&srv, Password::Inline(PW.into()))));

    let dir = TempDir::new("pw");
    let file = dir.0.join("pw");
    std::fs::write(&file, format!("{PW}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let from_file = Password::File(file.to_str().unwrap().into());
    assert!(works(&password_cfg(&srv, from_file.clone())));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = RedisStore::open(&password_cfg(&srv, from_file), 1024)
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Permission);
    assert!(!e.message.contains(PW), "{}", e.message);

    let var = format!("SESSCACHE_TEST_REDIS_PW_{}", std::process::id());
    std::env::set_var(&var, PW);
    assert!(works(&password_cfg(&srv, Password::Env(var.clone()))));
    std::env::remove_var(&var);
    let e = RedisStore::open(&password_cfg(&srv, Password::Env(var)), 1024)
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Url);

    // A wrong password, or none: every lookup fails, and nothing says the password.
    for wrong in [Password::Inline("not-it".into()), Password::None] {
        let cfg = password_cfg(&srv, wrong);
        let s = open(&cfg);
        assert_eq!(
            s.get(&key(1), now(), &mut |_| false).err(),
            Some(StoreError::Unavailable)
        );
        assert_eq!(count(&s.counters().errors), 1);
        assert!(!format!("{cfg:?}").contains("not-it"));
    }
    let wrong = setup::Secret::for_test("not-it");
    let cfg = password_cfg(&srv, Password::Inline("not-it".into()));
    let e = match setup::connector(&cfg, Some(&wrong))
        .unwrap()
        .connect(Duration::from_secs(5))
    {
        Err(e) => e,
        Ok(_) => panic!("a wrong password was accepted"),
    };
    let said = conn::describe(&e, Some(wrong.as_str()));
    println!("redis: a wrong password says: {said}");
    assert!(!said.contains("not-it") && !said.contains(PW), "{said}");
}

/// An ACL user with its own password (AUTH user password).
#[test]
fn acl_user() {
    let srv = Server::unix(&[]);
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "alice",
            "on",
            ">alice-Pw-1",
            "~sesscache:*",
            "+@all",
        ])
        .exec(&mut srv.admin())
        .unwrap();
    let mut cfg = srv.cfg();
    cfg.user = Some("alice".into());
    cfg.password = Password::Inline("alice-Pw-1".into());
    assert!(works(&cfg));
    cfg.password = Password::Inline("alice-Pw-2".into());
    assert!(!works(&cfg));
    // Keys outside alice's pattern: the server refuses, the store says so.
    cfg.password = Password::Inline("alice-Pw-1".into());
    cfg.prefix = "elsewhere:".into();
    let s = open(&cfg);
    for _ in 0..5 {
        assert_eq!(
            s.get(&key(1), now(), &mut |_| false).err(),
            Some(StoreError::Unavailable)
        );
    }
    // An answer, not an outage: the breaker stays closed, the connection in use.
    assert_eq!(net(&s).breaker_opens, 0);
    assert_eq!(net(&s).net_errors, 5);
    assert_eq!(s.proc().idle_connections(), 1);
}

/// A process that only looks sessions up (no writer thread yet) still probes and
/// recovers once the breaker has opened.
#[test]
fn the_breaker_recovers_without_writes() {
    let mut srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.timeout_ms = 100;
    srv.kill();
    let s = open(&cfg);
    for _ in 0..process::FAILURES_TO_OPEN {
        assert_eq!(
            s.get(&key(1), now(), &mut |_| false).err(),
            Some(StoreError::Unavailable)
        );
    }
    assert_eq!(net(&s).breaker_opens, 1);
    srv.run();
    let back = Instant::now();
    while s.get(&key(1), now(), &mut |_| false).is_err() {
        assert!(back.elapsed() < Duration::from_secs(15), "no recovery");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "redis back (lookups only): lookups succeed again after {:?}",
        back.elapsed()
    );
}

/// l1: reusable entries are served from this process; single-use ones never are.
#[test]
fn l1_tier() {
    let srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.l1 = 100;
    let a = open(&cfg);
    let b = open(&srv.cfg());
    let t = now();
    let stamp = a.put(&key(1), value(b"one", t + 100, false), t).unwrap();
    assert_eq!(stamp & REDIS_STAMP, 0, "an l1 stamp");
    assert_eq!(a.occupancy().0, 1);
    let f = a.get(&key(1), t, &mut |s| s == stamp).unwrap().unwrap();
    assert_eq!((f.stamp, f.bytes.is_none()), (stamp, true));
    a.flush();
    assert_eq!(get(&b, &key(1)).unwrap(), b"one", "in Redis too");

    // The caveat: another host's removal is not seen while l1 holds the entry.
    b.remove(&key(1)).unwrap();
    b.flush();
    assert!(get(&b, &key(1)).is_none());
    assert_eq!(get(&a, &key(1)).unwrap(), b"one");
    assert!(a.remove(&key(1)).unwrap(), "l1 held it");
    assert!(get(&a, &key(1)).is_none());

    // Single-use: Redis only, consumed once for everyone.
    a.put(&key(2), value(b"t", t + 100, true), t).unwrap();
    a.flush();
    assert_eq!(a.occupancy().0, 0);
    assert_eq!(get(&b, &key(2)).unwrap(), b"t");
    assert!(get(&a, &key(2)).is_none());

    // A hit from Redis fills l1; the next lookup is answered there, with the same stamp.
    b.put(&key(3), value(b"three", t + 100, false), t).unwrap();
    b.flush();
    let first = a.get(&key(3), t, &mut |_| false).unwrap().unwrap();
    assert_eq!(first.stamp & REDIS_STAMP, 0);
    assert_eq!(first.bytes.unwrap().as_slice(), b"three");
    let again = a.get(&key(3), t, &mut |_| false).unwrap().unwrap();
    assert_eq!(again.stamp, first.stamp);
    assert_eq!(a.occupancy().0, 1);
}

/// A prefork server: opened in the parent, used in a forked child (which makes its own
/// connections and writer), and in the parent still.
#[test]
fn fork() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let t = now();
    s.put(&key(1), value(b"parent", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"parent");
    // SAFETY: fork in a test; the child uses the store, then leaves with _exit (no
    // destructor, no test harness).
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let t = now();
            let mine = s.proc().pid == std::process::id();
            let put = s.put(&key(2), value(b"child", t + 100, false), t).is_ok();
            s.flush();
            let sees = get(&s, &key(1)).as_deref() == Some(&b"parent"[..])
                && get(&s, &key(2)).as_deref() == Some(&b"child"[..]);
            // Its own counters, from zero: the parent's store is not counted again.
            let own = count(&s.counters().stores) == 1;
            s.flush();
            mine && put && sees && own
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
    assert_eq!(get(&s, &key(2)).unwrap(), b"child");
    s.put(&key(3), value(b"after", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(3)).unwrap(), b"after");
    assert_eq!(count(&s.counters().errors), 0);
    assert_eq!(count(&s.counters().stores), 2);
    // Redis adds up both processes' reports: 3 stores, none counted twice.
    let fleet = s.survey().unwrap().unwrap();
    assert_eq!(fleet.stats.stores, 3, "{fleet:?}");
}

/// A process that exits right after storing still sends what it queued (a bounded wait at
/// exit): a child stores 50 entries and calls exit(3) at once; every one is in Redis.
#[test]
fn queued_stores_are_sent_at_exit() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    // SAFETY: fork in a test; the child stores, then leaves with exit(3), which runs the
    // atexit handlers (ours among them) but no destructor of the parent's.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let t = now();
        for i in 0..50 {
            let _ = s.put(&key(100 + i), value(b"last words", t + 100, false), t);
        }
        // SAFETY: ends the child; atexit handlers run.
        unsafe { libc::exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
    let found = (0..50)
        .filter(|i| get(&s, &key(100 + i)).as_deref() == Some(&b"last words"[..]))
        .count();
    assert_eq!(found, 50, "stores queued before exit reached Redis");
}

/// Three masters, keys spread over their slots.
#[test]
fn cluster() {
    let nodes: Vec<Server> = (0..3)
        .map(|_| {
            let port = free_port(true);
            Server::start(
                port,
                &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"],
            )
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli (comes with redis-server) is needed");
    assert!(
        out.status.success(),
        "cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let t0 = Instant::now();
    for n in &nodes {
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut n.admin())
                .unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "cluster not ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut cfg = nodes[0].cfg();
    cfg.target = RedisTarget::Cluster {
        nodes: nodes.iter().map(|n| ("127.0.0.1".into(), n.port)).collect(),
    };
    let a = Arc::new(open(&cfg));
    let b = Arc::new(open(&cfg));
    let t = now();
    for n in 0..30 {
        a.put(&key(n), value(&n.to_le_bytes(), t + 100, n % 2 == 0), t)
            .unwrap();
    }
    a.flush();
    // Keys landed on every node.
    for node in &nodes {
        let size: u64 = redis::cmd("DBSIZE").query(&mut node.admin()).unwrap();
        assert!(size > 0, "node {} holds no key", node.port);
    }
    for n in 0..30u32 {
        let want = n.to_le_bytes().to_vec();
        if n % 2 == 0 {
            // Single use: one of two racing stores gets it.
            let (a2, b2) = (a.clone(), b.clone());
            let ha = std::thread::spawn(move || get(&a2, &key(n)));
            let hb = std::thread::spawn(move || get(&b2, &key(n)));
            let got: Vec<_> = [ha.join().unwrap(), hb.join().unwrap()]
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(got, vec![want], "key {n}");
        } else {
            assert_eq!(get(&b, &key(n)).unwrap(), want);
            assert_eq!(b.take(&key(n), t).unwrap().unwrap().as_slice(), want);
            assert!(get(&a, &key(n)).is_none());
        }
    }
    // Ticket-key records: one hash, the add script routed to its node.
    assert_eq!(a.add_ticket_record(1, b"one", t + 100), Ok(true));
    assert_eq!(b.add_ticket_record(1, b"two", t + 100), Ok(false));
    assert_eq!(b.ticket_records().unwrap()[0].bytes.as_slice(), b"one");
    assert_eq!(count(&a.counters().errors) + count(&b.counters().errors), 0);
    // The operator's view visits every primary.
    let c = open(&cfg);
    a.flush();
    b.flush();
    let fleet = c.survey().unwrap().unwrap();
    assert_eq!(fleet.stats.entries, 0, "every entry was consumed or taken");
    assert_eq!(fleet.stats.stores, 30);
    assert!(
        fleet.server.contains(&("redis_primaries", "3".into())),
        "{fleet:?}"
    );
    for n in 0..30 {
        a.put(&key(n), value(b"again", t + 100, false), t).unwrap();
    }
    a.flush();
    let fleet = c.survey().unwrap().unwrap();
    assert_eq!((fleet.stats.entries, fleet.stats.bytes), (30, 30 * 6));
    assert_eq!(Store::flush(&c), Ok(30));
    for node in &nodes {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut node.admin())
            .unwrap();
        assert!(
            keys.iter()
                .all(|k| k == "sesscache:stats" || k == "sesscache:tickets"),
            "{keys:?}"
        );
    }
    // The records stay.
    assert_eq!(c.ticket_records().unwrap().len(), 1);
}

/// `survey`: the counters of every process (here, two stores of this process, each with
/// its own), the entries under the prefix and their bytes, and what Redis says of itself.
#[test]
fn counters_add_up_in_redis() {
    let srv = Server::unix(&[]);
    let a = open(&srv.cfg());
    let b = open(&srv.cfg());
    let t = now();
    for i in 0..10 {
        a.put(&key(i), value(b"0123456789", t + 100, false), t)
            .unwrap();
    }
    a.flush();
    for i in 0..4 {
        Counters::bump(&b.counters().lookups);
        assert!(get(&b, &key(i)).is_some());
        Counters::bump(&b.counters().hits);
    }
    b.put(&key(99), value(b"x", t + 100, true), t).unwrap();
    b.flush();
    let mut admin = srv.admin();
    for k in ["sesscache:zz", "sesscache:0", "elsewhere:00"] {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg("xyz")
            .query(&mut admin)
            .unwrap();
    }
    let fleet = a.survey().unwrap().unwrap();
    let st = fleet.stats;
    assert_eq!((st.stores, st.lookups, st.hits, st.errors), (11, 4, 4, 0));
    // 10 + 1 entries: the flags byte and the value each.
    assert_eq!((st.entries, st.bytes), (11, 10 * 11 + 2), "{fleet:?}");
    assert!(fleet.complete);
    assert!(fleet.reported_ago_s.is_some_and(|s| s < 5), "{fleet:?}");
    assert!(fleet.server.contains(&("redis_primaries", "1".into())));
    assert!(fleet.server.iter().any(|(k, _)| *k == "redis_used_memory"));
    // Nothing changed: the next report sends nothing; more lookups are added.
    a.flush();
    assert_eq!(a.survey().unwrap().unwrap().stats.lookups, 4);
    Counters::bump(&a.counters().lookups);
    a.flush();
    assert_eq!(a.survey().unwrap().unwrap().stats.lookups, 5);
    // A closed store reports what it had left.
    Counters::bump(&b.counters().lookups);
    drop(b);
    let t0 = Instant::now();
    while a.survey().unwrap().unwrap().stats.lookups != 6 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the last report");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A hash someone tampered with: figures may lie, nothing fails.
    let _: () = redis::cmd("HSET")
        .arg("sesscache:stats")
        .arg("lookups")
        .arg("lots")
        .query(&mut admin)
        .unwrap();
    assert_eq!(a.survey().unwrap().unwrap().stats.lookups, 0);
    // A server that is not there: Unavailable, at once.
    drop(srv);
    assert_eq!(a.survey().err(), Some(StoreError::Unavailable));
}

/// A user whose ACL does not allow the counters' report still caches; the tool just does
/// not see its figures.
#[test]
fn a_refused_report_costs_nothing_else() {
    let srv = Server::unix(&[]);
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "bob",
            "on",
            ">bob-Pw-1",
            "~sesscache:*",
            "+@all",
            "-hincrby",
        ])
        .exec(&mut srv.admin())
        .unwrap();
    let mut cfg = srv.cfg();
    cfg.user = Some("bob".into());
    cfg.password = Password::Inline("bob-Pw-1".into());
    let s = open(&cfg);
    let t = now();
    s.put(&key(1), value(b"v", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"v");
    s.flush();
    assert_eq!(count(&s.counters().errors), 0);
    assert_eq!(net(&s), NetStats::default());
    let fleet = s.survey().unwrap().unwrap();
    assert_eq!((fleet.stats.stores, fleet.stats.entries), (0, 1));
}

/// The store's threads take none of the server's signals; the spawning thread's mask is
/// as it was.
#[test]
fn threads_take_no_signals() {
    fn blocked(sig: libc::c_int) -> bool {
        // SAFETY: reads this thread's mask into a set of our own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            libc::sigismember(&set, sig) == 1
        }
    }
    let before = (blocked(libc::SIGTERM), blocked(libc::SIGHUP));
    let (tx, rx) = std::sync::mpsc::channel();
    crate::threads::spawn_quiet("sesscache-test", move || {
        let name = std::thread::current().name().map(str::to_string);
        tx.send((
            name,
            blocked(libc::SIGTERM),
            blocked(libc::SIGHUP),
            blocked(libc::SIGCHLD),
            blocked(libc::SIGSEGV),
        ))
        .unwrap();
    })
    .unwrap();
    let (name, term, hup, chld, segv) = rx.recv().unwrap();
    assert_eq!(name.as_deref(), Some("sesscache-test"));
    assert!(term && hup && chld && !segv);
    assert_eq!((blocked(libc::SIGTERM), blocked(libc::SIGHUP)), before);
}

/// A panic in the writer thread is caught there: the thread carries on with the next write.
#[test]
fn the_writer_survives_a_panic() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let t = now();
    s.put(&key(1), value(b"before", t + 100, false), t).unwrap();
    s.proc().panic_writer();
    s.put(&key(2), value(b"after", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"before");
    assert_eq!(get(&s, &key(2)).unwrap(), b"after");
    assert_eq!(count(&s.counters().stores), 2);
}

/// `Store::flush` deletes the keys under the prefix, and only those.
#[test]
fn flush_deletes_the_prefixed_keys_only() {
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let t = now();
    // More than one SCAN's worth, queued a few at a time (the write queue is bounded).
    for i in 0..2500 {
        s.put(&key(i), value(b"v", t + 100, false), t).unwrap();
        if i % 100 == 99 {
            s.flush();
        }
    }
    s.flush();
    let mut admin = srv.admin();
    for k in ["other:keep", "sesscache:not-an-entry", "sesscache:0"] {
        let _: () = redis::cmd("SET").arg(k).arg("x").query(&mut admin).unwrap();
    }
    assert_eq!(Store::flush(&s), Ok(2500));
    let mut left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut admin).unwrap();
    left.sort();
    // The counters' hash stays too.
    assert_eq!(
        left,
        [
            "other:keep",
            "sesscache:0",
            "sesscache:not-an-entry",
            "sesscache:stats"
        ]
    );
    assert!(get(&s, &key(1)).is_none());
    assert_eq!(Store::flush(&s), Ok(0));
}

/// The ACL SECURITY.md recommends is enough for everything a server does (store, look up,
/// take, remove, report its counters) and for the tool's survey and flush: no error is
/// counted, the report arrives.
#[test]
fn the_documented_acl_is_enough() {
    let srv = Server::unix(&[]);
    let mut rule = vec!["SETUSER", "tls", "on", ">tls-Pw-1", "~sesscache:*"];
    // As in SECURITY.md ("Redis").
    rule.extend([
        "+get",
        "+set",
        "+del",
        "+pttl",
        "+eval",
        "+evalsha",
        "+ping",
        "+hincrby",
        "+hset",
        "+time",
        "+hsetnx",
        "+expiretime",
        "+expireat",
        "+hdel",
        "+hgetall",
        "+scan",
        "+strlen",
        "+info",
    ]);
    redis::cmd("ACL").arg(&rule).exec(&mut srv.admin()).unwrap();
    let mut cfg = srv.cfg();
    cfg.user = Some("tls".into());
    cfg.password = Password::Inline("tls-Pw-1".into());
    let s = open(&cfg);
    let t = now();
    s.put(&key(1), value(b"reusable", t + 100, false), t)
        .unwrap();
    s.put(&key(2), value(b"once", t + 100, true), t).unwrap();
    s.flush();
    Counters::bump(&s.counters().lookups);
    assert_eq!(get(&s, &key(1)).unwrap(), b"reusable");
    assert_eq!(get(&s, &key(2)).unwrap(), b"once");
    assert!(get(&s, &key(2)).is_none());
    assert_eq!(s.take(&key(1), t).unwrap().unwrap().as_slice(), b"reusable");
    s.put(&key(3), value(b"x", t + 100, false), t).unwrap();
    s.remove(&key(3)).unwrap();
    s.put(&key(4), value(b"y", t + 100, false), t).unwrap();
    s.flush();
    // tickets=shared: the ticket-key records.
    assert_eq!(s.add_ticket_record(1, b"key", t + 100), Ok(true));
    assert_eq!(s.add_ticket_record(1, b"other", t + 100), Ok(false));
    assert_eq!(s.ticket_records().unwrap().len(), 1);
    s.drop_ticket_records(&[1]).unwrap();
    assert_eq!(count(&s.counters().errors), 0);
    assert_eq!(net(&s), NetStats::default());
    let fleet = s.survey().unwrap().unwrap();
    // key(3)'s store is not sent at all when its removal comes before the writer does.
    assert!((3..=4).contains(&fleet.stats.stores), "{fleet:?}");
    assert_eq!((fleet.stats.lookups, fleet.stats.entries), (1, 1));
    assert!(fleet.server.iter().any(|(k, _)| *k == "redis_used_memory"));
    assert_eq!(Store::flush(&s), Ok(1));
}

/// Read your writes: what this process stored is found by its own lookups before the writer
/// has sent it (a client that comes straight back to the host that served it); a
/// single-use entry taken that way, or an entry removed, is never sent; another process sees
/// only what Redis got.
#[test]
fn a_process_finds_what_it_stored_before_redis_has_it() {
    let srv = Server::unix(&[]);
    let a = open(&srv.cfg());
    let b = open(&srv.cfg());
    let t = now();
    // Redis does not answer for a while (less than a write's budget of a second), and the
    // writer is stuck sending a first store: the next writes wait in the queue, pending.
    srv.pause(700);
    a.put(&key(100), value(b"first", t + 100, false), t)
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    a.put(&key(1), value(b"reusable", t + 100, false), t)
        .unwrap();
    a.put(&key(2), value(b"ticket", t + 100, true), t).unwrap();
    a.put(&key(3), value(b"gone", t + 100, false), t).unwrap();
    let pending = |k: u32| a.proc().pending(&a.redis_key(&key(k)), false).is_some();
    assert!(pending(1) && pending(2) && pending(3));
    assert_eq!(get(&a, &key(1)).unwrap(), b"reusable");
    assert_eq!(get(&a, &key(1)).unwrap(), b"reusable", "still there");
    let found = a.get(&key(2), t, &mut |_| false).unwrap().unwrap();
    assert!(found.consumed);
    assert_eq!(found.bytes.unwrap().as_slice(), b"ticket");
    assert!(!pending(2), "taken");
    assert!(a.remove(&key(3)).is_ok());
    assert!(!pending(3), "removed before it was sent");
    a.flush();
    // Redis got the two reusable entries only: the taken ticket's SET and the removed
    // entry's were never sent.
    let mut admin = srv.admin();
    let mut held: Vec<String> = redis::cmd("KEYS")
        .arg("sesscache:*")
        .query(&mut admin)
        .unwrap();
    held.retain(|k| !k.ends_with("stats"));
    held.sort();
    let mut want = vec![
        format!("sesscache:{}", hex(key(1).as_bytes())),
        format!("sesscache:{}", hex(key(100).as_bytes())),
    ];
    want.sort();
    assert_eq!(held, want);
    assert_eq!(get(&b, &key(1)).unwrap(), b"reusable");
    assert!(get(&b, &key(2)).is_none());
    assert!(get(&a, &key(3)).is_none());
    assert_eq!(count(&a.counters().errors) + count(&b.counters().errors), 0);
}

/// Under load a store waits until `batch_ms` after the previous pipeline and goes with the
/// stores of the meantime; a store that finds the writer idle goes at once, and so does
/// every store with `batch_ms=0`.
#[test]
fn busy_stores_wait_for_the_batch_a_lone_one_does_not() {
    let srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.batch_ms = 100;
    let a = open(&cfg);
    cfg.batch_ms = 0;
    let unbatched = open(&cfg);
    let mut admin = srv.admin();
    let t = now();
    let held = |admin: &mut redis::Connection, k: u32| -> bool {
        let n: i64 = redis::cmd("EXISTS")
            .arg(format!("sesscache:{}", hex(key(k).as_bytes())))
            .query(admin)
            .unwrap();
        n == 1
    };
    // How long until Redis holds key k (polled every millisecond, for at most 5 s).
    let seen_after = |admin: &mut redis::Connection, k: u32, since: Instant| -> Duration {
        while !held(admin, k) {
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "key {k} never reached Redis"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        since.elapsed()
    };
    let put = |s: &RedisStore, k: u32| {
        let t0 = Instant::now();
        s.put(&key(k), value(b"v", t + 100, false), t).unwrap();
        t0
    };

    // The writer is idle: the store goes at once.
    let t0 = put(&a, 1);
    let lone = seen_after(&mut admin, 1, t0);
    // Right behind it: these wait for the batch (100 ms after the first was sent), then go
    // together.
    let t0 = put(&a, 2);
    put(&a, 3);
    assert!(
        !held(&mut admin, 2) && !held(&mut admin, 3),
        "sent before the batch was due"
    );
    let busy = seen_after(&mut admin, 2, t0);
    assert!(held(&mut admin, 3), "key 3 did not go with key 2");
    // Idle again for longer than the batch: at once.
    std::thread::sleep(Duration::from_millis(150));
    let t0 = put(&a, 4);
    let after_idle = seen_after(&mut admin, 4, t0);
    // batch_ms=0: every store at once, even right behind another.
    let t0 = put(&unbatched, 5);
    seen_after(&mut admin, 5, t0);
    let t0 = put(&unbatched, 6);
    let unbatched_busy = seen_after(&mut admin, 6, t0);

    let ms = |d: Duration| d.as_millis();
    assert!(
        lone < Duration::from_millis(50)
            && after_idle < Duration::from_millis(50)
            && unbatched_busy < Duration::from_millis(50),
        "a store that should have gone at once took {} / {} / {} ms",
        ms(lone),
        ms(after_idle),
        ms(unbatched_busy)
    );
    assert!(
        busy >= Duration::from_millis(50),
        "a store behind another went after {} ms, not with the batch",
        ms(busy)
    );
    assert_eq!(count(&a.counters().errors), 0);
}

/// A backlog is not held to one pipeline per `batch_ms`: after a full pipeline the writer
/// sends the next at once.
#[test]
fn a_backlog_goes_without_waiting_for_the_batch() {
    let srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.batch_ms = 100;
    let a = open(&cfg);
    let t = now();
    // One store first, so that the backlog finds a pipeline just sent.
    a.put(&key(0), value(b"v", t + 100, false), t).unwrap();
    a.flush();
    let t0 = Instant::now();
    for k in 1..=640 {
        a.put(&key(k), value(b"v", t + 100, false), t).unwrap();
    }
    a.flush();
    let took = t0.elapsed();
    // Ten full pipelines: held to one per batch_ms, that is ~1 s.
    assert!(
        took < Duration::from_millis(600),
        "640 queued stores took {} ms",
        took.as_millis()
    );
    let mut admin = srv.admin();
    let n: i64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
    assert!(n >= 641, "{n} keys");
    assert_eq!(a.net_stats().queue_drops, 0);
}

/// `get_now` answers only what needs no round trip: l1, this process's unsent writes (a
/// single-use one taken), an open breaker (at once, an error); a value only Redis holds is
/// None, with nothing done and `known` not asked. The value is still there for `get`.
#[test]
fn get_now_answers_only_without_a_round_trip() {
    let srv = Server::unix(&[]);
    let mut cfg = srv.cfg();
    cfg.l1 = 64;
    let s = open(&cfg);
    let other = open(&srv.cfg());
    let t = now();
    let mut asked = false;
    let mut known = |_| {
        asked = true;
        false
    };
    // Unsent writes of this process: found (queued, or just sent: then in l1).
    s.put(&key(1), value(b"mine", t + 100, false), t).unwrap();
    let found = s.get_now(&key(1), t, &mut known).expect("answered at once");
    assert_eq!(bytes(found.unwrap()).unwrap(), b"mine");
    // Stored by another process (another store): only Redis has it.
    other
        .put(&key(2), value(b"theirs", t + 100, false), t)
        .unwrap();
    other.flush();
    asked = false;
    let mut known = |_| {
        asked = true;
        false
    };
    assert!(s.get_now(&key(2), t, &mut known).is_none());
    assert!(!asked, "known is not asked when nothing is done");
    assert_eq!(get(&s, &key(2)).unwrap(), b"theirs");
    // Found in Redis once: now in l1, answered at once.
    assert_eq!(
        bytes(s.get_now(&key(2), t, &mut |_| false).unwrap().unwrap()).unwrap(),
        b"theirs"
    );
    // A single-use value only Redis holds: None, and not consumed.
    other
        .put(&key(3), value(b"once", t + 100, true), t)
        .unwrap();
    other.flush();
    assert!(s.get_now(&key(3), t, &mut |_| false).is_none());
    assert_eq!(get(&s, &key(3)).unwrap(), b"once");
    assert!(get(&s, &key(3)).is_none(), "taken by get");
    // A missing key is not known to be missing without Redis.
    assert!(s.get_now(&key(4), t, &mut |_| false).is_none());
}

/// With the breaker open, `get_now` fails at once, counted as `get` would.
#[test]
fn get_now_fails_at_once_while_the_breaker_is_open() {
    let mut srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    srv.kill();
    let t = now();
    for _ in 0..=process::FAILURES_TO_OPEN {
        let _ = s.get(&key(9), t, &mut |_| false);
        if net(&s).breaker_opens > 0 {
            break;
        }
    }
    assert_eq!(net(&s).breaker_opens, 1);
    let errors = count(&s.counters().errors);
    let started = std::time::Instant::now();
    assert_eq!(
        s.get_now(&key(9), t, &mut |_| false).map(|r| r.err()),
        Some(Some(StoreError::Unavailable))
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
    assert_eq!(count(&s.counters().errors), errors + 1);
}

/// `get_many` answers as `get` would for each key, in one round trip: local values (this
/// process's unsent writes), values only Redis has, missing keys, a single-use value
/// (taken once), a value that is not a session entry (that key's error, the others
/// stand); and again after Redis lost its script cache (NOSCRIPT: each such key alone).
#[test]
fn get_many_answers_each_key_as_get_would() {
    crate::log::silence();
    let srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    let other = open(&srv.cfg());
    let t = now();
    other
        .put(&key(1), value(b"one", t + 100, false), t)
        .unwrap();
    other.put(&key(2), value(b"two", t + 100, true), t).unwrap();
    other.flush();
    let mut admin = srv.admin();
    redis::cmd("SET")
        .arg(format!("sesscache:{}", hex(key(4).as_bytes())))
        .arg("")
        .exec(&mut admin)
        .unwrap();
    s.put(&key(5), value(b"mine", t + 100, false), t).unwrap();
    let keys = [key(1), key(2), key(3), key(4), key(5)];
    let all = |s: &RedisStore| -> Vec<Result<Option<Vec<u8>>, StoreError>> {
        s.get_many(&keys, t, &mut |_, _| false)
            .into_iter()
            .map(|r| r.map(bytes))
            .collect()
    };
    let got = all(&s);
    assert_eq!(got[0], Ok(Some(b"one".to_vec())));
    assert_eq!(got[1], Ok(Some(b"two".to_vec())));
    assert_eq!(got[2], Ok(None));
    assert_eq!(got[3], Err(StoreError::Corrupt), "that key's error only");
    assert_eq!(got[4], Ok(Some(b"mine".to_vec())));
    s.flush(); // the corrupt value's removal
    let again = all(&s);
    assert_eq!(again[0], Ok(Some(b"one".to_vec())));
    assert_eq!(again[1], Ok(None), "single-use: taken by the first batch");
    assert_eq!(again[3], Ok(None), "the corrupt value was removed");
    redis::cmd("SCRIPT").arg("FLUSH").exec(&mut admin).unwrap();
    let after_flush = all(&s);
    assert_eq!(
        after_flush[0],
        Ok(Some(b"one".to_vec())),
        "NOSCRIPT: looked up again"
    );
    assert_eq!(after_flush[2], Ok(None));
    assert_eq!(
        count(&s.counters().errors),
        1,
        "the corrupt answer, nothing else"
    );
    // `known`: asked with each key's index; a known stamp copies no bytes.
    let mut asked = Vec::new();
    let r = s.get_many(&keys[..1], t, &mut |i, _| {
        asked.push(i);
        true
    });
    assert_eq!(asked, [0]);
    assert!(r[0].as_ref().unwrap().as_ref().unwrap().bytes.is_none());
}

/// Redis down: every key of a batch fails, at most the budget, the failure counted once.
#[test]
fn get_many_with_redis_down_fails_every_key_once() {
    crate::log::silence();
    let mut srv = Server::unix(&[]);
    let s = open(&srv.cfg());
    srv.kill();
    let t = now();
    let keys = [key(1), key(2), key(3)];
    let r = s.get_many(&keys, t, &mut |_, _| false);
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|r| r.is_err()));
    assert_eq!(count(&s.counters().errors), 1);
}
