//! The counters of every process, added up in Redis, so that `sesscache stats redis://…`
//! answers for the whole fleet while it runs.
//!
//! Each process counts in memory (its `Core`'s counters, its own since it began: a forked
//! child starts from zero) and its writer thread reports what changed since its last
//! report, at most once per [`REPORT_INTERVAL_MS`] and only when something changed, with
//! one script (HINCRBY for each changed counter, and the server's time) on the hash
//! `prefix` + [`KEY_SUFFIX`]. It also reports when its queued writes are flushed: when the
//! process exits normally (within the 250 ms it waits at exit) and when the store is
//! closed. A process killed by a signal loses at most its last interval's figures.
//!
//! Why one second: an operator watching `sesscache stats --watch 1` sees figures at most a
//! second or two old, and the cost is one small round trip per second per busy process,
//! on the writer's connection, never on a handshake's path (a thousand busy processes are
//! a thousand HINCRBY scripts a second, a few percent of one Redis core). An idle process
//! sends nothing.
//!
//! The hash's name ends in `stats`, which is not lowercase hex, so no entry's key is ever
//! it; `flush` leaves it alone. A user whose ACL does not allow HINCRBY, HSET and TIME on
//! the prefix gets one warning per process, and the tool counts nothing for that process.

use crate::store::{Counters, NetStats, Stats};
use redis::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters' hash is `prefix` followed by this.
pub(crate) const KEY_SUFFIX: &[u8] = b"stats";
/// The shortest time between two reports of a process.
pub(crate) const REPORT_INTERVAL_MS: u64 = 1000;
/// The hash field holding the server's time (Unix seconds) of the latest report.
const REPORTED_AT: &str = "reported_at";

/// The counters' names in the hash: the fields of `struct sesscache_stats` (without
/// `entries` and `bytes`, which are not events).
pub(crate) const FIELDS: [&str; 14] = Stats::EVENT_NAMES;

/// A process's counters, in the order of [`FIELDS`].
pub(crate) type Figures = [u64; 14];

/// Adds the (field, increment) pairs it is given, and stamps the hash with the server's
/// time. One key: it runs in a cluster.
pub(crate) const REPORT_SCRIPT: &str = r"for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'reported_at', redis.call('TIME')[1])
return 1
";

/// [`NetStats`] as atomics.
#[derive(Default)]
pub(crate) struct Net {
    pub net_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub breaker_opens: AtomicU64,
    pub queue_drops: AtomicU64,
}

impl Net {
    pub fn snapshot(&self) -> NetStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            net_errors: get(&self.net_errors),
            timeouts: get(&self.timeouts),
            breaker_opens: get(&self.breaker_opens),
            queue_drops: get(&self.queue_drops),
        }
    }
}

/// What `c` and `n` count now.
pub(crate) fn figures(c: &Counters, n: &Net) -> Figures {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    [
        get(&c.lookups),
        get(&c.hits),
        get(&c.misses),
        get(&c.stores),
        get(&c.removes),
        get(&c.evictions),
        get(&c.expirations),
        get(&c.rejected),
        get(&c.errors),
        get(&n.net_errors),
        get(&n.timeouts),
        get(&n.breaker_opens),
        get(&n.queue_drops),
        get(&c.sni_refused),
    ]
}

/// The script's arguments for what changed from `sent` to `now` (field, increment, ...);
/// empty when nothing did.
pub(crate) fn increments(now: &Figures, sent: &Figures) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    for ((name, now), sent) in FIELDS.iter().zip(now).zip(sent) {
        // Counters only grow; an increment beyond i64 (never, in practice) is sent in
        // pieces by later reports.
        let d = now.wrapping_sub(*sent).min(i64::MAX as u64);
        if d > 0 {
            args.push(name.as_bytes().to_vec());
            args.push(d.to_string().into_bytes());
        }
    }
    args
}

/// `sent` moved forward by what `increments(now, sent)` reported.
pub(crate) fn advance(now: &Figures, sent: &mut Figures) {
    for (s, n) in sent.iter_mut().zip(now) {
        *s = s.wrapping_add(n.wrapping_sub(*s).min(i64::MAX as u64));
    }
}

/// The hash as HGETALL returns it: the summed counters in a [`Stats`] (entries and bytes
/// zero) and the Unix time of the latest report. Fields it does not know, and values that
/// are not counts, are skipped: whoever can write the hash can make the figures lie, not
/// make the reader fail.
pub(crate) fn parse(reply: &Value) -> (Stats, Option<u64>) {
    let mut f: Figures = [0; 14];
    let mut at = None;
    let pairs: Vec<&Value> = match reply {
        Value::Array(items) => items.iter().collect(),
        _ => Vec::new(),
    };
    for pair in pairs.chunks_exact(2) {
        let (Value::BulkString(name), Value::BulkString(value)) = (pair[0], pair[1]) else {
            continue;
        };
        let Some(value) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|v| u64::try_from(v).ok())
        else {
            continue;
        };
        if name.as_slice() == REPORTED_AT.as_bytes() {
            at = Some(value);
        } else if let Some(i) = FIELDS.iter().position(|n| n.as_bytes() == name.as_slice()) {
            f[i] = value;
        }
    }
    (Stats::from_events(f), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn increments_name_what_changed_only() {
        let mut sent: Figures = [0; 14];
        let mut now: Figures = [0; 14];
        assert!(increments(&now, &sent).is_empty());
        now[0] = 5;
        now[12] = 2;
        let args = increments(&now, &sent);
        let text: Vec<&str> = args
            .iter()
            .map(|a| std::str::from_utf8(a).unwrap())
            .collect();
        assert_eq!(text, ["lookups", "5", "queue_drops", "2"]);
        advance(&now, &mut sent);
        assert_eq!(sent, now);
        assert!(increments(&now, &sent).is_empty());
        now[1] = u64::MAX;
        let args = increments(&now, &sent);
        assert_eq!(args[1], i64::MAX.to_string().into_bytes());
        advance(&now, &mut sent);
        assert_eq!(sent[1], i64::MAX as u64);
        advance(&now, &mut sent);
        assert_eq!(sent[1], u64::MAX - 1);
    }

    #[test]
    fn parsing_skips_what_it_does_not_know() {
        let reply = Value::Array(vec![
            bulk("lookups"),
            bulk("10"),
            bulk("hits"),
            bulk("7"),
            bulk("queue_drops"),
            bulk("3"),
            bulk("bogus"),
            bulk("99"),
            bulk("misses"),
            bulk("-4"),
            bulk("errors"),
            bulk("many"),
            bulk("reported_at"),
            bulk("1790000000"),
            bulk("dangling"),
        ]);
        let (s, at) = parse(&reply);
        assert_eq!((s.lookups, s.hits, s.misses, s.errors), (10, 7, 0, 0));
        assert_eq!(s.net.queue_drops, 3);
        assert_eq!(at, Some(1_790_000_000));
        assert_eq!(parse(&Value::Nil), (Stats::default(), None));
        assert_eq!(parse(&Value::Array(vec![])), (Stats::default(), None));
    }
}
