//! `redis+sentinel://`: the primary of a Redis replication group, found through its
//! Sentinels, again for every new connection, so that the cache follows a failover.
//!
//! # Discovery
//! A new connection asks the Sentinels in turn, starting with the one that answered last,
//! `SENTINEL get-master-addr-by-name MASTER`; each gets a share of what is left of the
//! connection's budget (the rest divided among the Sentinels not yet asked, at least
//! [`MIN_ASK`] while that much is left), so that a Sentinel that does not answer cannot
//! spend the whole budget when others are there. The address it gives is connected to
//! (with the URL's user, password and database) and asked `ROLE`: a Sentinel with a stale
//! view (partitioned, or not yet told of a failover) may name a node that is a replica
//! now, and then the next Sentinel is asked. Everything, the Sentinels included, fits in
//! the budget the caller gives.
//!
//! # After a failover
//! Connections to the old primary die with it (a network error: the pool is cleared and
//! the next connection asks the Sentinels), or, when it comes back demoted, answer writes
//! with `-READONLY` (or `-LOADING`, `-MASTERDOWN` while it resynchronises): `conn` sorts
//! these replies as a connection to the wrong node, dropped, never reused
//! (`conn::is_server_reply`, `conn::is_stale`), so the next connection is to the primary
//! the Sentinels name.
//!
//! # Credentials
//! The URL's user and password are the Redis servers'. The Sentinels are asked with their
//! own password (`sentinel_password_file=`, `sentinel_password_env=`; Sentinel's
//! `requirepass`), or none. Sentinels decide where the fleet's sessions go: whoever can
//! command them (`SENTINEL SET`, `SENTINEL MONITOR`, a forged failover) can point the cache
//! at a server of theirs, so they need a password and a network that only the operator's
//! hosts reach; sealing (`key_file=`) keeps the sessions unreadable and unforgeable there.
//!
//! Every connection this module opens goes through `node::open`: over TLS when the URL
//! says (`tls=1`), to the Sentinels and to the primary alike, each certificate verified
//! for `tls_name` or the address connected to.

use super::node::{open, NodeConn};
use super::tls::Tls;
use redis::{ErrorKind, RedisConnectionInfo, RedisError, RedisResult, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time a Sentinel is given, when that much of the budget is left.
const MIN_ASK: Duration = Duration::from_millis(50);

/// The Sentinels of one primary, and how to log in to them and to it. Plain data and an
/// atomic index: nothing tied to a process, a thread or a socket (shared across `fork()`).
pub(crate) struct Sentinels {
    /// HOST, PORT of each Sentinel, in the URL's order.
    nodes: Vec<(String, u16)>,
    /// The name the Sentinels know the primary by.
    master: String,
    /// How to log in to a Sentinel: its password or none, database 0.
    sentinel_login: RedisConnectionInfo,
    /// How to log in to the primary: the URL's user, password and database.
    login: RedisConnectionInfo,
    /// The index of the Sentinel that answered last: asked first next time.
    first: AtomicUsize,
    /// TLS to the Sentinels and to the primary, when set.
    tls: Option<Arc<Tls>>,
}

impl Sentinels {
    /// `nodes` must not be empty (the URL parser refuses an empty list).
    pub fn new(
        nodes: Vec<(String, u16)>,
        master: String,
        sentinel_login: RedisConnectionInfo,
        login: RedisConnectionInfo,
        tls: Option<Arc<Tls>>,
    ) -> Sentinels {
        debug_assert!(!nodes.is_empty());
        Sentinels {
            nodes,
            master,
            sentinel_login,
            login,
            first: AtomicUsize::new(0),
            tls,
        }
    }

    /// The TLS settings of every connection (to a Sentinel, to the primary); None: plain.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_deref()
    }

    /// Sentinel `i`'s connection, logged in, within `budget`.
    fn open_sentinel(&self, i: usize, budget: Duration) -> RedisResult<NodeConn> {
        let (host, port) = &self.nodes[i];
        open(host, *port, &self.sentinel_login, self.tls(), budget).map_err(|e| {
            if e.kind() == ErrorKind::AuthenticationFailed
                || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
            {
                client_error(format!(
                    "Sentinel {host}:{port} refused the login: check sentinel_password_file or \
                     sentinel_password_env ({e})"
                ))
            } else {
                e
            }
        })
    }

    /// `SENTINEL get-master-addr-by-name` on a Sentinel's connection (`i`: which, for the
    /// message).
    fn query_addr(&self, i: usize, c: &mut NodeConn) -> RedisResult<(String, u16)> {
        let reply: Value = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query(c)?;
        parse_addr(reply).ok_or_else(|| {
            let (host, port) = &self.nodes[i];
            client_error(format!(
                "Sentinel {host}:{port} knows no primary named '{}'",
                self.master
            ))
        })
    }

    /// A connection to the primary the Sentinels name, confirmed with `ROLE`, logged in,
    /// all within `timeout`. The error is the last Sentinel's (or the primary's) failure.
    pub fn connect(&self, timeout: Duration) -> RedisResult<NodeConn> {
        let deadline = Instant::now() + timeout;
        let n = self.nodes.len();
        let start = self.first.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let left = match remaining(deadline) {
                Ok(left) => left,
                Err(e) => return Err(last.unwrap_or(e)),
            };
            let share = (left / (n - k) as u32).max(left.min(MIN_ASK));
            let found = self
                .ask(i, share)
                .and_then(|(host, port)| self.confirm(&host, port, deadline));
            match found {
                Ok(c) => {
                    if i != start {
                        self.first.store(i, Ordering::Relaxed);
                    }
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(timed_out))
    }

    /// The primary's address as Sentinel `i` sees it, within `budget`.
    fn ask(&self, i: usize, budget: Duration) -> RedisResult<(String, u16)> {
        let until = Instant::now() + budget;
        let mut c = self.open_sentinel(i, budget)?;
        // The question gets what the connection left of the share, not a share of its own.
        c.set_timeouts(remaining(until)?)?;
        self.query_addr(i, &mut c)
    }

    /// Connects to `host:port` with the URL's login, before `deadline`, and checks that it
    /// is a primary.
    fn confirm(&self, host: &str, port: u16, deadline: Instant) -> RedisResult<NodeConn> {
        let mut c = open(host, port, &self.login, self.tls(), remaining(deadline)?)?;
        c.set_timeouts(remaining(deadline)?)?;
        let role: Value = redis::cmd("ROLE").query(&mut c)?;
        match role_name(&role) {
            Some(r) if r.eq_ignore_ascii_case(b"master") => Ok(c),
            r => Err(client_error(format!(
                "{host}:{port}, named by a Sentinel as the primary '{}', is a {} (the \
                 Sentinel's view is stale)",
                self.master,
                r.map_or_else(
                    || "node that did not say its role".to_string(),
                    |r| String::from_utf8_lossy(r).into_owned()
                )
            ))),
        }
    }
}

/// How often a process's writer asks a Sentinel where the primary is ([`Watch`]).
const WATCH_INTERVAL_MS: u64 = 1000;
/// The most a writer waits for a Sentinel's answer: writes wait meanwhile.
const WATCH_BUDGET: Duration = Duration::from_millis(250);

/// A process's watch on the primary's address, kept by its writer thread: about once a
/// second it asks a Sentinel (on a connection it keeps) where the primary is, and says
/// when the answer changed. Pooled connections outlive a failover in which the old primary
/// stays up (a forced or coordinated failover, a partition): until Sentinel demotes it and
/// closes its clients (about 10 s later), it takes writes that its resynchronisation then
/// discards. The watch cuts that to about a second.
#[derive(Default)]
pub(crate) struct Watch {
    /// The Sentinel asked, and its connection.
    conn: Option<(usize, NodeConn)>,
    /// The address last seen.
    seen: Option<(String, u16)>,
    due_ms: u64,
}

impl Watch {
    /// True when, asked now (at most every [`WATCH_INTERVAL_MS`], `now_ms` on a monotonic
    /// clock), a Sentinel names another primary than at the previous check. A failure to
    /// ask is no change (the connection to the Sentinel is dropped; the next check asks the
    /// next Sentinel).
    pub fn primary_moved(&mut self, s: &Sentinels, now_ms: u64, budget: Duration) -> bool {
        if now_ms < self.due_ms {
            return false;
        }
        self.due_ms = now_ms + WATCH_INTERVAL_MS;
        let budget = budget.min(WATCH_BUDGET);
        let asked = match self.conn.take() {
            Some((i, c)) => Ok((i, c)),
            None => {
                let i = s.first.load(Ordering::Relaxed) % s.nodes.len();
                s.open_sentinel(i, budget).map(|c| (i, c))
            }
        }
        .and_then(|(i, mut c)| {
            c.set_timeouts(budget)?;
            let addr = s.query_addr(i, &mut c)?;
            self.conn = Some((i, c));
            Ok((i, addr))
        });
        match asked {
            Ok((_, addr)) => {
                let moved = self.seen.as_ref().is_some_and(|old| *old != addr);
                self.seen = Some(addr);
                moved
            }
            Err(_) => {
                // The next check tries the next Sentinel.
                let n = s.nodes.len();
                let _ = s
                    .first
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| Some((f + 1) % n));
                false
            }
        }
    }
}

/// Time left before `deadline`, or a timeout error. (Like `conn::remaining`: `conn` uses
/// this module, which so does not use `conn`.)
fn remaining(deadline: Instant) -> RedisResult<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_micros(100) {
        return Err(timed_out());
    }
    Ok(left)
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "time budget spent",
    ))
}

fn client_error(detail: String) -> RedisError {
    RedisError::from((ErrorKind::ClientError, "redis+sentinel", detail))
}

/// `SENTINEL get-master-addr-by-name`'s reply: `[host, port]`, or nil for a name the
/// Sentinel does not know.
fn parse_addr(reply: Value) -> Option<(String, u16)> {
    let Value::Array(items) = reply else {
        return None;
    };
    let [Value::BulkString(host), Value::BulkString(port)] = items.as_slice() else {
        return None;
    };
    let host = std::str::from_utf8(host).ok()?;
    let port: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

/// The first element of a `ROLE` reply: "master", "slave" or "sentinel".
fn role_name(reply: &Value) -> Option<&[u8]> {
    match reply {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(r)) => Some(r),
            Some(Value::SimpleString(r)) => Some(r.as_bytes()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn sentinel_replies() {
        assert_eq!(
            parse_addr(Value::Array(vec![bulk("10.0.0.5"), bulk("6380")])),
            Some(("10.0.0.5".to_string(), 6380))
        );
        assert_eq!(parse_addr(Value::Nil), None);
        assert_eq!(
            parse_addr(Value::Array(vec![bulk("h"), bulk("0")])),
            None,
            "port 0"
        );
        assert_eq!(parse_addr(Value::Array(vec![bulk("h"), bulk("x")])), None);
        assert_eq!(parse_addr(Value::Array(vec![bulk("h")])), None);
        let master = Value::Array(vec![bulk("master"), Value::Int(0), Value::Array(vec![])]);
        assert_eq!(role_name(&master), Some(&b"master"[..]));
        let replica = Value::Array(vec![bulk("slave"), bulk("h"), Value::Int(6379)]);
        assert_eq!(role_name(&replica), Some(&b"slave"[..]));
        assert_eq!(role_name(&Value::Nil), None);
    }

    /// Nothing listens on these ports: every Sentinel is refused at once, and the error is
    /// the last one's, well within the budget.
    #[test]
    fn no_sentinel_answers_within_the_budget() {
        let login = RedisConnectionInfo::default();
        let s = Sentinels::new(
            vec![("127.0.0.1".into(), 1), ("127.0.0.1".into(), 2)],
            "m".into(),
            login.clone(),
            login,
            None,
        );
        let t = Instant::now();
        let Err(e) = s.connect(Duration::from_millis(500)) else {
            panic!("connected to nothing");
        };
        assert!(e.is_io_error(), "{e:?}");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        // Unroutable (TEST-NET-1): each Sentinel gets its share, the whole stays in budget.
        let s = Sentinels::new(
            vec![("192.0.2.1".into(), 26379), ("192.0.2.2".into(), 26379)],
            "m".into(),
            RedisConnectionInfo::default(),
            RedisConnectionInfo::default(),
            None,
        );
        let t = Instant::now();
        assert!(s.connect(Duration::from_millis(200)).is_err());
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
    }
}
