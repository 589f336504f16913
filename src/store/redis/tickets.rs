//! The ticket-key records of a Redis cache (`tickets=shared`): one hash per cache.
//!
//! The hash is `prefix` + [`KEY_SUFFIX`] (`sesscache:tickets`); its fields are the records'
//! sequence numbers in decimal, its values the records' bytes. `tickets` is not lowercase hex
//! of an even length, so the hash is never an entry's key (`admin::is_entry_key`): `flush`
//! and the survey leave it alone.
//!
//! - add: one script ([`ADD_SCRIPT`]), atomic: `HSETNX` (so of several processes adding the
//!   same sequence number the first wins, and the others are told so), then the hash's
//!   expiry is moved to the record's `keep_until` if that is later than the expiry it has
//!   (`EXPIRETIME`, Redis 7.0). So the hash expires at the latest `keep_until` of what was
//!   added to it, never sooner, and nobody has to remove it. A `keep_until` already past
//!   gives a new hash a second of life, not an immediate deletion.
//! - records: `HGETALL`. A field that is not a sequence number in canonical decimal, or a
//!   value over [`MAX_TICKET_RECORD_BYTES`], is skipped and counted as an error (whoever can
//!   write the hash can hide records, not make the reader fail). Values are never logged.
//! - drop: `HDEL` of the given fields.
//!
//! These calls come from the background key refresher and from the tool, never from a
//! handshake: they wait up to the background budget (`timeout=`, at least a second) for
//! the connection and for each command, and neither look at nor feed the circuit breaker
//! (which guards the lookups). Each process keeps one connection for them in its own
//! [`Proc`] (a forked child makes its own), dropped after a timeout or a network error;
//! one that turns out dead when reused (a Redis restart) is replaced once within the call.
//! That retry may run an add a second time: it then says `Ok(false)` for a record it did
//! add, which is harmless, since the caller reads the records back either way. Failures are
//! counted as lookups' are (`errors`, and `net_errors` or `timeouts`) and logged at a
//! limited rate.
//!
//! The user needs, on the prefix, `EVALSHA`/`EVAL` with `HSETNX`, `TIME`, `EXPIRETIME`,
//! `EXPIREAT` inside the script, and `HGETALL`, `HDEL`.

use super::conn::{is_server_reply, is_stale, Conn};
use super::process::Proc;
use super::transport::{eval, pack, Transport};
use crate::log::Level;
use crate::secret::SecretBytes;
use crate::store::{Counters, StoreError, TicketRecord, MAX_TICKET_RECORD_BYTES};
use redis::{RedisResult, Value};
use std::time::Duration;

/// The records' hash is `prefix` followed by this.
pub(crate) const KEY_SUFFIX: &[u8] = b"tickets";

/// Adds record `ARGV[1]` (bytes `ARGV[2]`) unless the hash has it, and makes the hash live
/// until at least `ARGV[3]` (Unix seconds; one second from now if that is past). Returns
/// 1 if it added the record, 0 if the hash had one under that number. One key: it runs in
/// a cluster.
pub(crate) const ADD_SCRIPT: &str = r"local added = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local want = tonumber(ARGV[3])
local now = tonumber(redis.call('TIME')[1])
if want <= now then want = now + 1 end
if redis.call('EXPIRETIME', KEYS[1]) < want then
  redis.call('EXPIREAT', KEYS[1], want)
end
return added
";

/// The latest `keep_until` given to Redis (about the year 36800): later ones are cut to it,
/// so that the script's arithmetic (in doubles) and `EXPIREAT` (in milliseconds) stay exact.
const MAX_KEEP_UNTIL: u64 = 1 << 40;

/// Every record in the hash ([`crate::store::Store::ticket_records`]).
pub(crate) fn records(p: &Proc) -> Result<Vec<TicketRecord>, StoreError> {
    let shared = &p.core.shared;
    let reply = run(p, "reading the ticket-key records", |c, budget| {
        c.request(pack(&[b"HGETALL", &shared.tickets_key]).as_slice(), budget)
    })?;
    let (records, bad) = parse(reply);
    if bad > 0 {
        p.core
            .counters
            .errors
            .fetch_add(bad, std::sync::atomic::Ordering::Relaxed);
        crate::log_limited!(
            Level::Warn,
            "redis: {bad} fields of the ticket-key hash are not records (a sequence number \
             in decimal, at most {MAX_TICKET_RECORD_BYTES} bytes); skipped"
        );
    }
    Ok(records)
}

/// Adds record `seq` unless the hash has it ([`crate::store::Store::add_ticket_record`]).
pub(crate) fn add(p: &Proc, seq: u64, bytes: &[u8], keep_until: u64) -> Result<bool, StoreError> {
    if bytes.len() > MAX_TICKET_RECORD_BYTES {
        return Err(StoreError::TooLarge);
    }
    let shared = &p.core.shared;
    let field = seq.to_string();
    let until = keep_until.min(MAX_KEEP_UNTIL).to_string();
    let reply = run(p, "adding a ticket-key record", |c, budget| {
        let keys_and_args: [&[u8]; 5] = [
            b"1",
            &shared.tickets_key,
            field.as_bytes(),
            bytes,
            until.as_bytes(),
        ];
        eval(c, &shared.tickets_sha, ADD_SCRIPT, &keys_and_args, || {
            Ok(budget)
        })
    })?;
    match reply {
        Value::Int(1) => Ok(true),
        Value::Int(0) => Ok(false),
        _ => {
            Counters::bump(&p.core.counters.errors);
            Counters::bump(&p.core.net.net_errors);
            crate::log_limited!(
                Level::Warn,
                "redis: adding a ticket-key record: unexpected reply from the server"
            );
            Err(StoreError::Unavailable)
        }
    }
}

/// Drops the records with these sequence numbers ([`crate::store::Store::drop_ticket_records`]).
pub(crate) fn drop_records(p: &Proc, seqs: &[u64]) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let shared = &p.core.shared;
    let fields: Vec<String> = seqs.iter().map(u64::to_string).collect();
    let mut args: Vec<&[u8]> = vec![b"HDEL", &shared.tickets_key];
    args.extend(fields.iter().map(String::as_bytes));
    run(p, "dropping ticket-key records", |c, budget| {
        c.request(pack(&args).as_slice(), budget)
    })?;
    Ok(())
}

/// Runs `call` on this process's records connection (made if there is none, or if it
/// closed), with the background budget; once more on a new connection if a reused one
/// turns out dead. A failure is counted and logged (`what`), never told to the breaker.
fn run(
    p: &Proc,
    what: &str,
    mut call: impl FnMut(&mut Conn, Duration) -> RedisResult<Value>,
) -> Result<Value, StoreError> {
    let core = &p.core;
    let budget = core.shared.background_timeout;
    let mut kept = p.tickets_conn.lock().unwrap_or_else(|e| e.into_inner());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut c, reused) = match kept.take() {
            Some(c) if c.is_open() => (c, true),
            _ => match core.shared.connector.connect(budget) {
                Ok(c) => (c, false),
                Err(e) => return Err(core.failed(&e, what, false).0),
            },
        };
        match call(&mut c, budget) {
            Ok(v) => {
                *kept = Some(c);
                return Ok(v);
            }
            Err(e) if reused && attempt == 1 && is_stale(&e) => continue,
            Err(e) => {
                // After a server's answer the connection is in step and stays; after a
                // timeout a late reply would be read as the next command's: dropped.
                if is_server_reply(&e) {
                    *kept = Some(c);
                }
                return Err(core.failed(&e, what, false).0);
            }
        }
    }
}

/// The records in an `HGETALL` reply, and how many fields were not records.
fn parse(reply: Value) -> (Vec<TicketRecord>, u64) {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    let mut records = Vec::with_capacity(pairs.len());
    let mut bad = 0;
    for (field, value) in pairs {
        let seq = match &field {
            Value::BulkString(f) => parse_seq(f),
            _ => None,
        };
        match (seq, value) {
            (Some(seq), Value::BulkString(v)) if v.len() <= MAX_TICKET_RECORD_BYTES => {
                records.push(TicketRecord {
                    seq,
                    bytes: SecretBytes::from(v),
                });
            }
            (_, Value::BulkString(mut v)) => {
                crate::secret::wipe(&mut v);
                bad += 1;
            }
            _ => bad += 1,
        }
    }
    (records, bad)
}

/// A sequence number in canonical decimal ("0", "17"; not "017", "+1", " 1" or beyond
/// `u64::MAX`).
fn parse_seq(field: &[u8]) -> Option<u64> {
    let canonical = !field.is_empty()
        && field.len() <= 20
        && field.iter().all(u8::is_ascii_digit)
        && (field.len() == 1 || field[0] != b'0');
    if !canonical {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::admin::is_entry_key;

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    #[test]
    fn the_hash_is_never_an_entry() {
        for prefix in [&b"sesscache:"[..], b"", b"p", b"ab", b"0"] {
            let key = [prefix, KEY_SUFFIX].concat();
            assert!(!is_entry_key(prefix, &key), "{prefix:?}");
        }
    }

    #[test]
    fn sequence_numbers_are_canonical_decimal() {
        assert_eq!(parse_seq(b"0"), Some(0));
        assert_eq!(parse_seq(b"17"), Some(17));
        assert_eq!(parse_seq(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"017",
            b"+1",
            b"-1",
            b" 1",
            b"1 ",
            b"1.0",
            b"0x10",
            b"18446744073709551616",
            b"999999999999999999999",
        ] {
            assert_eq!(parse_seq(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replies_keep_records_and_count_the_rest() {
        let big = vec![1u8; MAX_TICKET_RECORD_BYTES + 1];
        let reply = Value::Array(vec![
            bulk(b"1"),
            bulk(b"one"),
            bulk(b"x"),
            bulk(b"bad field"),
            bulk(b"2"),
            bulk(&big),
            bulk(b"3"),
            Value::Int(3),
            bulk(b"4"),
            bulk(&[7u8; MAX_TICKET_RECORD_BYTES]),
            bulk(b"dangling"),
        ]);
        let (records, bad) = parse(reply);
        let got: Vec<(u64, usize)> = records.iter().map(|r| (r.seq, r.bytes.len())).collect();
        assert_eq!(got, [(1, 3), (4, MAX_TICKET_RECORD_BYTES)]);
        assert_eq!(bad, 3);
        let (records, bad) = parse(Value::Map(vec![(bulk(b"9"), bulk(b"nine"))]));
        assert_eq!((records.len(), records[0].seq, bad), (1, 9, 0));
        assert_eq!(parse(Value::Nil).0.len(), 0);
    }
}
