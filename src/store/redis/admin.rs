//! The operator's commands on the whole cache, for `sesscache stats` and `sesscache flush`:
//! every entry under the prefix, on the server or on each primary of a cluster. They SCAN
//! (bounded), so they are for tools, never for a handshake's path; each command waits at
//! most the store's background budget (its `timeout`, at least a second).
//!
//! An entry's key is the prefix followed by the lowercase hex of a session ID (2 to 64
//! digits); keys under the prefix that are not (the counters' hash, anything else a user
//! put there) are neither counted nor deleted. Values are never read: a survey asks their
//! lengths (STRLEN), a flush deletes them one key per command (pipelined), so that a
//! cluster node never sees keys of several slots in one command.

use super::conn::{classify, describe, Connector, NodeConn};
use super::process::Shared;
use super::tally;
use super::transport::{pack, Transport};
use crate::log::Level;
use crate::store::{StoreError, Survey};
use redis::{ConnectionAddr, ConnectionInfo, RedisError, RedisResult};

/// The most SCAN calls (of up to ~1000 keys each) a survey makes per node.
const MAX_SURVEY_SCANS: usize = 1000;
/// The most SCAN calls a flush makes per node.
const MAX_FLUSH_SCANS: usize = 100_000;

/// The counters every process reported, and the entries (and their bytes) the server
/// holds, with what it says of its memory.
pub(crate) fn survey(shared: &Shared) -> Result<Survey, StoreError> {
    let failed = |e: RedisError| failure(shared, "survey", e);
    let budget = shared.background_timeout;
    let mut nodes = primaries(shared).map_err(failed)?;
    let mut tally_conn = shared.connector.connect(budget).map_err(failed)?;
    let reply = tally_conn
        .request(pack(&[b"HGETALL", &shared.tally_key]).as_slice(), budget)
        .map_err(failed)?;
    let (mut stats, reported_at) = tally::parse(&reply);
    let mut complete = true;
    for node in &mut nodes {
        complete &= scan_entries(node, shared, MAX_SURVEY_SCANS, |c, keys| {
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("STRLEN").arg(k);
            }
            let lengths: Vec<u64> = pipe.query(c)?;
            stats.entries += keys.len() as u64;
            stats.bytes += lengths.iter().sum::<u64>();
            Ok(())
        })
        .map_err(failed)?;
    }
    let server_now = redis::cmd("TIME")
        .query::<(u64, u64)>(&mut nodes[0])
        .ok()
        .map(|t| t.0);
    let reported_ago_s = match (server_now, reported_at) {
        (Some(now), Some(at)) => Some(now.saturating_sub(at)),
        _ => None,
    };
    Ok(Survey {
        stats,
        complete,
        reported_ago_s,
        server: server_facts(&mut nodes),
    })
}

/// Deletes every entry under the prefix, on every primary: how many were deleted. The
/// counters' hash stays.
pub(crate) fn delete_entries(shared: &Shared) -> Result<u64, StoreError> {
    let failed = |e: RedisError| failure(shared, "flush", e);
    let mut deleted = 0u64;
    for node in &mut primaries(shared).map_err(failed)? {
        let complete = scan_entries(node, shared, MAX_FLUSH_SCANS, |c, keys| {
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("DEL").arg(k);
            }
            let gone: Vec<u64> = pipe.query(c)?;
            deleted += gone.iter().sum::<u64>();
            Ok(())
        })
        .map_err(failed)?;
        if !complete {
            crate::log!(
                Level::Warn,
                "redis: flush: gave up after {MAX_FLUSH_SCANS} SCAN calls on a node \
                 ({deleted} entries deleted)"
            );
            return Err(StoreError::Timeout);
        }
    }
    Ok(deleted)
}

fn failure(shared: &Shared, what: &str, e: RedisError) -> StoreError {
    crate::log!(
        Level::Warn,
        "redis: {what}: {}",
        describe(&e, shared.secret())
    );
    classify(&e)
}

/// Whether `key` is an entry's: the prefix, then 2 to 64 lowercase hex digits, evenly many.
pub(crate) fn is_entry_key(prefix: &[u8], key: &[u8]) -> bool {
    key.strip_prefix(prefix).is_some_and(|hex| {
        (2..=64).contains(&hex.len())
            && hex.len() % 2 == 0
            && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// SCAN MATCH prefix* over one node, handing each page's entry keys to `each`, at most
/// `max_calls` SCAN calls: true if the scan went through every key.
fn scan_entries(
    c: &mut NodeConn,
    shared: &Shared,
    max_calls: usize,
    mut each: impl FnMut(&mut NodeConn, &[Vec<u8>]) -> RedisResult<()>,
) -> RedisResult<bool> {
    let mut pattern = Vec::with_capacity(shared.prefix.len() + 1);
    for &b in &shared.prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern.push(b'*');
    let mut cursor = 0u64;
    for _ in 0..max_calls {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| is_entry_key(&shared.prefix, k))
            .collect();
        if !keys.is_empty() {
            each(c, &keys)?;
        }
        if next == 0 {
            return Ok(true);
        }
        cursor = next;
    }
    Ok(false)
}

/// A connection to each server that holds entries: the one server, or each primary of the
/// cluster (found with CLUSTER NODES from the first seed that answers), each with the
/// URL's credentials and its socket operations bounded by the background budget.
fn primaries(shared: &Shared) -> RedisResult<Vec<NodeConn>> {
    let budget = shared.background_timeout;
    let connect = |info: ConnectionInfo| shared.connector.connect_node(info, budget);
    let seeds = match &shared.connector {
        Connector::Cluster { seeds, .. } => seeds,
        Connector::Sentinel(s) => {
            let c = s.connect(budget)?;
            c.set_timeouts(budget)?;
            return Ok(vec![c]);
        }
        single => {
            let info = single.single_info().cloned().ok_or_else(|| {
                RedisError::from((redis::ErrorKind::ClientError, "no server address"))
            })?;
            return Ok(vec![connect(info)?]);
        }
    };
    let mut last = None;
    for seed in seeds {
        let nodes = connect(seed.clone())
            .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c));
        match nodes {
            Ok(text) => {
                let seed_host = match &seed.addr {
                    ConnectionAddr::Tcp(h, _) => h.clone(),
                    _ => String::new(),
                };
                return cluster_primaries(&text, &seed_host)
                    .into_iter()
                    .map(|(host, port)| {
                        connect(ConnectionInfo {
                            addr: ConnectionAddr::Tcp(host, port),
                            redis: seed.redis.clone(),
                        })
                    })
                    .collect();
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::ClientError, "no seed nodes"))))
}

/// The (host, port) of each primary that is up in CLUSTER NODES output; a primary listed
/// without an address (the node answering, before it learnt its own) is `seed_host`'s.
fn cluster_primaries(text: &str, seed_host: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, addr, flags, ..] = fields[..] else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master")
            || flags
                .iter()
                .any(|f| matches!(*f, "fail" | "fail?" | "noaddr" | "handshake"))
        {
            continue;
        }
        let host_port = addr.split(['@', ',']).next().unwrap_or("");
        let Some((host, port)) = host_port.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if port == 0 {
            continue;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { seed_host } else { host };
        out.push((host.to_string(), port));
    }
    out
}

/// What the servers say of their memory: summed over a cluster's primaries, the policy of
/// the first. Nothing for what a server will not tell (INFO refused by an ACL).
fn server_facts(nodes: &mut [NodeConn]) -> Vec<(&'static str, String)> {
    let mut sums = [0u64; 4];
    let names = [
        "redis_used_memory",
        "redis_maxmemory",
        "redis_evicted_keys",
        "redis_expired_keys",
    ];
    let fields = ["used_memory", "maxmemory", "evicted_keys", "expired_keys"];
    let mut policy = None;
    let mut answered = 0;
    for c in nodes.iter_mut() {
        let Ok(info) = redis::cmd("INFO")
            .arg("memory")
            .arg("stats")
            .query::<String>(c)
        else {
            continue;
        };
        answered += 1;
        for line in info.lines() {
            let Some((k, v)) = line.trim_end().split_once(':') else {
                continue;
            };
            if let Some(i) = fields.iter().position(|f| *f == k) {
                sums[i] += v.parse::<u64>().unwrap_or(0);
            } else if k == "maxmemory_policy" && policy.is_none() {
                policy = Some(v.to_string());
            }
        }
    }
    let mut out = vec![("redis_primaries", nodes.len().to_string())];
    if answered > 0 {
        out.extend(names.iter().zip(sums).map(|(n, v)| (*n, v.to_string())));
        if let Some(p) = policy {
            out.push(("redis_maxmemory_policy", p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys() {
        assert!(is_entry_key(b"p:", b"p:00"));
        assert!(is_entry_key(
            b"p:",
            &[b"p:".as_slice(), &[b'a'; 64]].concat()
        ));
        assert!(!is_entry_key(
            b"p:",
            &[b"p:".as_slice(), &[b'a'; 66]].concat()
        ));
        assert!(!is_entry_key(b"p:", b"p:stats"));
        assert!(!is_entry_key(b"p:", b"p:0"));
        assert!(!is_entry_key(b"p:", b"p:AB"));
        assert!(!is_entry_key(b"p:", b"p:"));
        assert!(!is_entry_key(b"p:", b"q:00"));
        assert!(is_entry_key(b"", b"0a"));
    }

    #[test]
    fn primaries_from_cluster_nodes() {
        let text = "\
07c3 127.0.0.1:30004@31004,host4 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f :30001@31001 myself,master - 0 0 1 connected 0-5460
6ec2 127.0.0.1:30005@31005 master,fail - 0 0 5 disconnected
e7d1 ::1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d2 [::2]:30006@31006 master - 0 1426238318243 3 connected
garbage
";
        assert_eq!(
            cluster_primaries(text, "seed"),
            [
                ("127.0.0.1".to_string(), 30002),
                ("seed".to_string(), 30001),
                ("::1".to_string(), 30003),
                ("::2".to_string(), 30006),
            ]
        );
    }
}
