//! `redis+sentinel://` against real servers and Sentinels of the test's own making: stand-ins
//! that answer `SENTINEL get-master-addr-by-name` with whatever address the test sets, so
//! that a primary can be demoted without a real Sentinel's `CLIENT KILL` (the hosts'
//! connections to it stay open, and its replies say `READONLY`) and a Sentinel can have a
//! stale view. The real thing, Sentinels and all, is `c-tests/redis_failover.sh`.

use super::*;
use redis::Value;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;

/// A stand-in Sentinel on a free port of 127.0.0.1: answers `SENTINEL …` with the address
/// it is given, and `+OK` to anything else (the crate's connection setup). Its threads end
/// with the test process.
struct FakeSentinel {
    port: u16,
    primary: Arc<Mutex<(String, u16)>>,
}

impl FakeSentinel {
    fn new(primary: u16) -> FakeSentinel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let primary = Arc::new(Mutex::new(("127.0.0.1".to_string(), primary)));
        let shared = primary.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        FakeSentinel { port, primary }
    }

    fn point_at(&self, port: u16) {
        self.primary.lock().unwrap().1 = port;
    }
}

fn serve(stream: TcpStream, primary: &Mutex<(String, u16)>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut parser = redis::Parser::new();
    while let Ok(Value::Array(args)) = parser.parse_value(&mut reader) {
        let first = match args.first() {
            Some(Value::BulkString(b)) => b.to_ascii_uppercase(),
            _ => Vec::new(),
        };
        let reply = if first == b"SENTINEL" {
            let (host, port) = primary.lock().unwrap().clone();
            let port = port.to_string();
            format!(
                "*2\r\n${}\r\n{host}\r\n${}\r\n{port}\r\n",
                host.len(),
                port.len()
            )
        } else {
            "+OK\r\n".to_string()
        };
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn replicaof(srv: &Server, primary: Option<u16>) {
    let mut cmd = redis::cmd("REPLICAOF");
    match primary {
        Some(p) => cmd.arg("127.0.0.1").arg(p),
        None => cmd.arg("NO").arg("ONE"),
    };
    cmd.exec(&mut srv.admin()).unwrap();
}

fn role(srv: &Server) -> String {
    let v: Vec<Value> = redis::cmd("ROLE").query(&mut srv.admin()).unwrap();
    match v.first() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Whether `srv` holds `k`'s entry (under the default prefix).
fn holds(srv: &Server, k: &SessionKey) -> bool {
    let rkey = format!("sesscache:{}", hex(k.as_bytes()));
    redis::cmd("EXISTS")
        .arg(rkey)
        .query::<i64>(&mut srv.admin())
        .unwrap()
        == 1
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A primary demoted under the store's open connections: its replies say READONLY; the
/// store drops those connections, asks the Sentinels again, skips the one whose view is
/// stale (the node it names answers ROLE as a replica) and carries on with the new primary,
/// with no write lost and a single-use entry still taken once.
#[test]
fn a_demoted_primary_is_left_for_the_new_one() {
    let x = Server::tcp(&[]);
    let y = Server::tcp(&["--replicaof", "127.0.0.1", &x.port.to_string()]);
    let stale = FakeSentinel::new(x.port);
    let fresh = FakeSentinel::new(x.port);
    let mut cfg = x.cfg();
    cfg.target = RedisTarget::Sentinel {
        sentinels: vec![
            ("127.0.0.1".into(), stale.port),
            ("127.0.0.1".into(), fresh.port),
        ],
        master: "m".into(),
        password: Password::None,
    };
    let s = open(&cfg);
    let t = now();
    s.put(&key(1), value(b"one", t + 100, false), t).unwrap();
    s.flush();
    assert_eq!(get(&s, &key(1)).unwrap(), b"one");
    assert!(holds(&x, &key(1)), "the first write went to the primary");

    // A switchover without a Sentinel: y promoted, x its replica; the store's connections
    // to x (the writer's, the pool's) stay open. The first Sentinel still names x.
    replicaof(&y, None);
    replicaof(&x, Some(y.port));
    fresh.point_at(y.port);
    assert_eq!(role(&x), "slave");

    s.put(&key(2), value(b"two", t + 100, false), t).unwrap();
    s.flush();
    eventually(
        "the write after the switchover reaches the new primary",
        || holds(&y, &key(2)),
    );
    assert_eq!(get(&s, &key(2)).unwrap(), b"two");

    // A single-use entry: its lookup deletes it, which x refuses (READONLY) while a
    // pooled connection still leads there; taken once, from y.
    s.put(&key(3), value(b"three", t + 100, true), t).unwrap();
    s.flush();
    eventually("the single-use entry reaches the new primary", || {
        holds(&y, &key(3))
    });
    assert_eq!(get(&s, &key(3)).unwrap(), b"three");
    assert!(get(&s, &key(3)).is_none(), "taken once");
    assert!(!holds(&y, &key(3)));
    assert_eq!(net(&s).breaker_opens, 0, "{:?}", net(&s));
}

/// No Sentinel knows the name, or none answers: a lookup fails within its budget and
/// says why; nothing is stored anywhere.
#[test]
fn sentinels_that_do_not_help_cost_a_bounded_miss() {
    let x = Server::tcp(&[]);
    let dead = free_port(false);
    let mut cfg = x.cfg();
    cfg.timeout_ms = 200;
    cfg.target = RedisTarget::Sentinel {
        sentinels: vec![("127.0.0.1".into(), dead)],
        master: "m".into(),
        password: Password::None,
    };
    let s = open(&cfg);
    let t0 = Instant::now();
    assert!(s.get(&key(1), now(), &mut |_| false).is_err());
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
}

/// A Sentinel that accepts connections and never answers gets its share of the budget,
/// not all of it: the next one still names the primary in time, and is asked first from
/// then on.
#[test]
fn a_silent_sentinel_costs_only_its_share() {
    let x = Server::tcp(&[]);
    // Accepted by the kernel (the backlog), never read.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let fresh = FakeSentinel::new(x.port);
    let mut cfg = x.cfg();
    cfg.timeout_ms = 400;
    cfg.target = RedisTarget::Sentinel {
        sentinels: vec![
            ("127.0.0.1".into(), silent.local_addr().unwrap().port()),
            ("127.0.0.1".into(), fresh.port),
        ],
        master: "m".into(),
        password: Password::None,
    };
    let s = open(&cfg);
    let budget = Duration::from_millis(400);
    let t0 = Instant::now();
    let first = s.shared.connector.connect(budget);
    let took = t0.elapsed();
    assert!(
        first.is_ok(),
        "the second Sentinel named the primary: {:?}",
        first.err()
    );
    assert!(
        took >= Duration::from_millis(150) && took < budget,
        "{took:?}: the silent Sentinel's share (half of 400 ms), then the answer"
    );
    // The one that answered is asked first from then on: no wait.
    let t0 = Instant::now();
    assert!(s.shared.connector.connect(budget).is_ok());
    assert!(
        t0.elapsed() < Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    assert!(get(&s, &key(1)).is_none(), "a miss, from the primary");
    assert_eq!(count(&s.counters().errors), 0);
    drop(silent);
}
