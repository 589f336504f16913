//! Talking to Redis: connections to one server or to a cluster (the [`Transport`] commands
//! go over), the lookup script, replies read and errors sorted into [`StoreError`]s.

pub(crate) use super::node::NodeConn;
use super::tls::{with_cluster_tls, Tls, TlsConnection};
use super::transport::{eval, pack, Transport};
use crate::secret::SecretBytes;
use crate::store::StoreError;
use redis::{
    ConnectionInfo, ConnectionLike, ErrorKind as RedisErrorKind, RedisError, RedisResult, Value,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes connections. Shareable across `fork()`: nothing in it is tied to a process, a
/// thread or a socket (a TLS context is immutable and may be used by forked children).
pub(crate) enum Connector {
    Single(redis::Client),
    /// One server over TLS (`rediss://`, `tls=1`).
    SingleTls {
        info: ConnectionInfo,
        tls: Arc<Tls>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        /// The nodes the URL names, with the credentials: where the operator's commands
        /// (`admin`) find the cluster's primaries.
        seeds: Vec<redis::ConnectionInfo>,
        /// Every node over TLS, when set.
        tls: Option<Arc<Tls>>,
    },
    /// A primary found through its Sentinels, again for every connection (`sentinel`).
    Sentinel(super::sentinel::Sentinels),
}

/// One connection: to a server, or the crate's cluster connection (one socket per node,
/// commands routed by key).
pub(crate) enum Conn {
    /// With the socket timeout last set on it (read and write alike).
    Single(redis::Connection, Option<Duration>),
    Tls(TlsConnection, Option<Duration>),
    Cluster(Box<redis::cluster::ClusterConnection>),
    ClusterTls(
        Box<redis::cluster::ClusterConnection<TlsConnection>>,
        Arc<Tls>,
    ),
}

/// How far a socket timeout may be from a command's budget before it is set again: each
/// setting is two system calls, on a lookup's path, while the budgets of consecutive
/// commands differ by the microseconds between them. A call may so wait up to this much
/// longer, or give up this much sooner, than its budget says.
const TIMEOUT_SLACK: Duration = Duration::from_millis(1);

impl Connector {
    /// Connects, authenticates and selects the database, giving up after `timeout` (for
    /// a cluster: per connection it opens, as the crate applies it; through Sentinels: the
    /// Sentinels asked and the primary's connection, all of it).
    pub fn connect(&self, timeout: Duration) -> RedisResult<Conn> {
        match self {
            Connector::Single(c) => c
                .get_connection_with_timeout(timeout)
                .map(|c| Conn::Single(c, None)),
            Connector::SingleTls { info, tls } => {
                TlsConnection::connect(tls, info, timeout).map(|c| Conn::Tls(c, None))
            }
            Connector::Cluster {
                client, tls: None, ..
            } => {
                let conn = client.get_connection()?;
                // A reconnection inside a call would wait for a connection timeout in the
                // middle of a lookup: a connection that fails is dropped and made again,
                // in the background, instead.
                conn.set_auto_reconnect(false);
                Ok(Conn::Cluster(Box::new(conn)))
            }
            Connector::Cluster {
                client,
                tls: Some(tls),
                ..
            } => {
                let conn =
                    with_cluster_tls(tls, || client.get_generic_connection::<TlsConnection>())?;
                conn.set_auto_reconnect(false);
                Ok(Conn::ClusterTls(Box::new(conn), tls.clone()))
            }
            Connector::Sentinel(s) => s.connect(timeout).map(|c| match c {
                NodeConn::Plain(c) => Conn::Single(c, None),
                NodeConn::Tls(c) => Conn::Tls(c, None),
            }),
        }
    }

    /// Whether commands go to one server (so they may be pipelined).
    pub fn is_single(&self) -> bool {
        matches!(
            self,
            Connector::Single(_) | Connector::SingleTls { .. } | Connector::Sentinel(_)
        )
    }

    /// A connection to one node, `info` (the server's, or a cluster node's), with the
    /// URL's transport, each socket operation bounded by `budget`.
    pub fn connect_node(&self, info: ConnectionInfo, budget: Duration) -> RedisResult<NodeConn> {
        super::node::connect(&info, self.tls(), budget)
    }

    /// The TLS settings every connection uses; None for plain TCP.
    fn tls(&self) -> Option<&Tls> {
        match self {
            Connector::Single(_) | Connector::Cluster { tls: None, .. } => None,
            Connector::SingleTls { tls, .. } | Connector::Cluster { tls: Some(tls), .. } => {
                Some(tls)
            }
            Connector::Sentinel(s) => s.tls(),
        }
    }

    /// The single server's address and credentials (None for a cluster).
    pub fn single_info(&self) -> Option<&ConnectionInfo> {
        match self {
            Connector::Single(c) => Some(c.get_connection_info()),
            Connector::SingleTls { info, .. } => Some(info),
            Connector::Cluster { .. } | Connector::Sentinel(_) => None,
        }
    }
}

/// A connection whose socket timeouts can be set (read and write alike).
trait Timeouts: ConnectionLike {
    fn set_timeouts(&self, d: Duration) -> RedisResult<()>;
}

impl Timeouts for redis::Connection {
    fn set_timeouts(&self, d: Duration) -> RedisResult<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Timeouts for TlsConnection {
    fn set_timeouts(&self, d: Duration) -> RedisResult<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Transport for Conn {
    fn request(&mut self, packed: &[u8], budget: Duration) -> RedisResult<Value> {
        let value = match self {
            Conn::Single(c, set) => {
                set_budget(c, set, budget)?;
                c.req_packed_command(packed)?
            }
            Conn::Tls(c, set) => {
                set_budget(c, set, budget)?;
                c.req_packed_command(packed)?
            }
            Conn::Cluster(c) => {
                c.set_read_timeout(Some(budget))?;
                c.set_write_timeout(Some(budget))?;
                c.req_packed_command(packed)?
            }
            Conn::ClusterTls(c, tls) => with_cluster_tls(tls, || {
                c.set_read_timeout(Some(budget))?;
                c.set_write_timeout(Some(budget))?;
                c.req_packed_command(packed)
            })?,
        };
        value.extract_error()
    }

    /// None for a cluster connection, which routes one command at a time.
    fn request_many(
        &mut self,
        packed: &[u8],
        count: usize,
        budget: Duration,
    ) -> Option<RedisResult<Vec<Value>>> {
        match self {
            Conn::Single(c, set) => Some(
                set_budget(c, set, budget).and_then(|()| c.req_packed_commands(packed, 0, count)),
            ),
            Conn::Tls(c, set) => Some(
                set_budget(c, set, budget).and_then(|()| c.req_packed_commands(packed, 0, count)),
            ),
            Conn::Cluster(_) | Conn::ClusterTls(..) => None,
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c, _) => c.is_open(),
            Conn::Tls(c, _) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
            Conn::ClusterTls(c, _) => c.is_open(),
        }
    }
}

/// Sets a connection's socket timeouts to `budget` unless they are within
/// [`TIMEOUT_SLACK`] of it already (`set`: what they were last set to).
fn set_budget(
    c: &mut impl Timeouts,
    set: &mut Option<Duration>,
    budget: Duration,
) -> RedisResult<()> {
    let stale = set.map_or(true, |t| {
        let gap = if t > budget { t - budget } else { budget - t };
        gap > TIMEOUT_SLACK
    });
    if stale {
        // Forgotten first: a failure half-way leaves it unknown.
        *set = None;
        c.set_timeouts(budget)?;
        *set = Some(budget);
    }
    Ok(())
}

/// The flags byte of a stored value: bit 0, the entry is consumed by its first lookup (the
/// lookup script tests it).
pub(crate) const SINGLE_USE: u8 = 1;

/// The lookup, one atomic round trip: GET, and DEL when the value is single-use (bit 0 of
/// its first byte) or the caller takes it (`ARGV[1] == "1"`). Returns nil, or
/// `{value, consumed (0/1), PTTL in ms}`. One key per call, so it runs in a cluster.
/// Declared (the shebang, Redis 7) as a script that may write, run even when Redis is out
/// of memory (it only reads and deletes): a replica refuses it with `READONLY`, so a lookup
/// never reads from a primary demoted under its connection (`is_demoted`).
pub(crate) const LOOKUP_SCRIPT: &str = r"#!lua flags=allow-oom
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ttl = redis.call('PTTL', KEYS[1])
local consumed = 0
if ARGV[1] == '1' or (string.len(v) > 0 and string.byte(v, 1) % 2 == 1) then
  redis.call('DEL', KEYS[1])
  consumed = 1
end
return {v, consumed, ttl}
";

/// What a lookup found: the stored value (flags byte first), whether the lookup deleted it,
/// and its remaining lifetime.
pub(crate) struct Fetched {
    pub value: SecretBytes,
    pub consumed: bool,
    /// Milliseconds left before Redis expires it (negative: no expiry, or unknown).
    pub pttl_ms: i64,
}

/// Remaining time before `deadline`, or a timeout error if none is left.
pub(crate) fn remaining(deadline: Instant) -> RedisResult<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_micros(100) {
        return Err(timed_out());
    }
    Ok(left)
}

/// The error for a budget spent before the reply came.
pub(crate) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "time budget spent",
    ))
}

/// Runs the lookup script for `key` (`transport::eval`: EVALSHA, or EVAL on NOSCRIPT),
/// all of it before `deadline`.
pub(crate) fn lookup(
    conn: &mut impl Transport,
    sha: &str,
    key: &[u8],
    take: bool,
    deadline: Instant,
) -> RedisResult<Option<Fetched>> {
    let flag: &[u8] = if take { b"1" } else { b"0" };
    let reply = eval(conn, sha, LOOKUP_SCRIPT, &[b"1", key, flag], || {
        remaining(deadline)
    })?;
    parse_lookup(reply)
}

/// Runs the lookup script (not taking) for each of `keys` in one pipeline (one write,
/// the replies in order), all of it before `deadline`: a result per key, where a server's
/// error reply to one key is that key's error. A key answered NOSCRIPT (the server lost its
/// script cache) is looked up again alone ([`lookup`] loads the script). None for a
/// connection that routes one command at a time (a cluster's): look the keys up one by one.
pub(crate) fn lookup_many(
    conn: &mut impl Transport,
    sha: &str,
    keys: &[&[u8]],
    deadline: Instant,
) -> Option<RedisResult<Vec<RedisResult<Option<Fetched>>>>> {
    let mut packed = Vec::new();
    for key in keys {
        packed.extend_from_slice(pack(&[b"EVALSHA", sha.as_bytes(), b"1", key, b"0"]).as_slice());
    }
    let budget = match remaining(deadline) {
        Ok(b) => b,
        Err(e) => return Some(Err(e)),
    };
    let replies = match conn.request_many(&packed, keys.len(), budget)? {
        Ok(replies) if replies.len() == keys.len() => replies,
        Ok(_) => {
            return Some(Err(RedisError::from((
                RedisErrorKind::TypeError,
                "a pipeline answered with another number of replies",
            ))))
        }
        Err(e) => return Some(Err(e)),
    };
    let mut out = Vec::with_capacity(keys.len());
    for (reply, key) in replies.into_iter().zip(keys) {
        out.push(match reply.extract_error() {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                match lookup(conn, sha, key, false, deadline) {
                    // Out of step: a late reply would be read as the next key's.
                    Err(e) if !is_server_reply(&e) => return Some(Err(e)),
                    r => r,
                }
            }
            Err(e) => Err(e),
            Ok(v) => parse_lookup(v),
        });
    }
    Some(Ok(out))
}

fn parse_lookup(reply: Value) -> RedisResult<Option<Fetched>> {
    let bad = || RedisError::from((RedisErrorKind::TypeError, "unexpected reply to the lookup"));
    let items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) if items.len() == 3 => items,
        _ => return Err(bad()),
    };
    let mut items = items.into_iter();
    let (Some(Value::BulkString(value)), Some(Value::Int(consumed)), Some(Value::Int(pttl_ms))) =
        (items.next(), items.next(), items.next())
    else {
        return Err(bad());
    };
    Ok(Some(Fetched {
        value: SecretBytes::from(value),
        consumed: consumed != 0,
        pttl_ms,
    }))
}

/// What a failed operation says to its caller.
pub(crate) fn classify(e: &RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Unavailable
    }
}

/// Whether a call failed because the connection it used had died since it was last used
/// (the server restarted, an idle connection was closed), or leads to a node that is no
/// longer the primary ([`is_demoted`]): worth one more try on a new one.
pub(crate) fn is_stale(e: &RedisError) -> bool {
    (e.is_io_error() && !e.is_timeout()) || is_demoted(e)
}

/// Whether the server answered that it is not a primary that takes writes now: `READONLY`
/// (a replica, such as a primary demoted by a failover), `MASTERDOWN` (a replica that lost
/// its primary), `LOADING` (a restarted node reading its data). A connection to it is of
/// no use until a new one finds the primary (through the Sentinels, again), so it is
/// dropped like a failed one.
pub(crate) fn is_demoted(e: &RedisError) -> bool {
    matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

/// Whether the server answered with an error (out of memory, no permission, a wrong
/// type, …) or with a reply we did not expect: the connection is still in step with the
/// server, and the server is there: no reason to skip it. Anything else (a timeout, a
/// socket error, a reply that could not be parsed, an answer that the node is not a
/// primary, [`is_demoted`]) leaves the connection unusable.
pub(crate) fn is_server_reply(e: &RedisError) -> bool {
    (e.code().is_some() && !is_demoted(e)) || e.kind() == RedisErrorKind::TypeError
}

/// An error for a log line. Never the password: the crate's messages do not carry it, and
/// should one ever quote it, it is cut out here.
pub(crate) fn describe(e: &RedisError, secret: Option<&str>) -> String {
    let auth = e.kind() == RedisErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    // The TLS layer's and the Sentinel discovery's errors carry their whole message as the
    // detail (also inside the cluster client's messages, which quote each node's).
    let text = redact(e.to_string(), secret)
        .replace("TLS - ClientError: ", "")
        .replace("redis+sentinel - ClientError: ", "");
    if auth {
        format!(
            "authentication failed: check the user and password (password_file, \
             password_env or the URL) ({text})"
        )
    } else {
        text
    }
}

pub(crate) fn redact(text: String, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, "<hidden>"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_replies() {
        assert!(parse_lookup(Value::Nil).unwrap().is_none());
        let f = parse_lookup(Value::Array(vec![
            Value::BulkString(vec![1, 2, 3]),
            Value::Int(1),
            Value::Int(5000),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (f.value.as_slice(), f.consumed, f.pttl_ms),
            (&[1u8, 2, 3][..], true, 5000)
        );
        assert!(parse_lookup(Value::Int(3)).is_err());
        assert!(parse_lookup(Value::Array(vec![Value::Nil])).is_err());
    }

    /// The lookup over a scripted transport: EVALSHA; on NOSCRIPT the script itself
    /// (EVAL), within the deadline; the reply parsed.
    #[test]
    fn the_lookup_sends_the_script_when_the_server_lacks_it() {
        use super::super::transport::fake::{error_reply, Answer, Script};
        use super::super::transport::pack;
        let script = Script::default();
        script
            .answer(Answer::One(Err(error_reply(
                "NOSCRIPT No matching script.",
            ))))
            .answer(Answer::One(Ok(Value::Array(vec![
                Value::BulkString(vec![1, 9]),
                Value::Int(1),
                Value::Int(700),
            ]))));
        let mut c = script.connect().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let f = lookup(&mut c, "sha", b"k", true, deadline)
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.value.as_slice(), f.consumed, f.pttl_ms),
            (&[1u8, 9][..], true, 700)
        );
        let sent: Vec<Vec<u8>> = script.sent().into_iter().map(|s| s.packed).collect();
        assert_eq!(
            sent,
            [
                pack(&[b"EVALSHA", b"sha", b"1", b"k", b"1"]).as_slice(),
                pack(&[b"EVAL", LOOKUP_SCRIPT.as_bytes(), b"1", b"k", b"1"]).as_slice()
            ]
        );
        // No time left: nothing is sent.
        let spent = lookup(&mut c, "sha", b"k", false, Instant::now());
        assert!(matches!(spent, Err(e) if e.is_timeout()));
        assert_eq!(script.sent().len(), 2);
    }

    #[test]
    fn errors_are_sorted_and_redacted() {
        let t = timed_out();
        assert_eq!(classify(&t), StoreError::Timeout);
        assert!(!is_stale(&t));
        assert!(!is_server_reply(&t));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&reset), StoreError::Unavailable);
        assert!(is_stale(&reset) && !is_server_reply(&reset));
        let oom = redis::parse_redis_value(b"-OOM command not allowed when used memory\r\n")
            .unwrap()
            .extract_error()
            .unwrap_err();
        assert!(is_server_reply(&oom) && !is_stale(&oom), "{oom:?}");
        assert_eq!(classify(&oom), StoreError::Unavailable);
        for reply in [
            &b"-READONLY You can't write against a read only replica.\r\n"[..],
            b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
            b"-LOADING Redis is loading the dataset in memory\r\n",
        ] {
            let e = redis::parse_redis_value(reply)
                .unwrap()
                .extract_error()
                .unwrap_err();
            assert!(is_demoted(&e), "{e:?}");
            assert!(is_stale(&e) && !is_server_reply(&e), "{e:?}");
            assert_eq!(classify(&e), StoreError::Unavailable);
        }
        assert!(!is_demoted(&oom) && !is_demoted(&reset));
        let e = RedisError::from((
            RedisErrorKind::AuthenticationFailed,
            "auth",
            "said hunter2 loudly".to_string(),
        ));
        let text = describe(&e, Some("hunter2"));
        assert!(
            !text.contains("hunter2") && text.contains("<hidden>"),
            "{text}"
        );
    }
}
