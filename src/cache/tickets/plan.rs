//! The rotation rules, as pure functions of the keys held and the time: which key encrypts,
//! which key to make next, which records to drop. Every process applies the same rules to
//! the same records, so they agree without a leader.
//!
//! - A key encrypts from its `enc_from`; of the keys that may encrypt now, the one that
//!   started last (then the highest number) does. A key past its `enc_until` still encrypts
//!   while no newer key is held, at most halfway through its decryption window
//!   ([`TicketKey::encrypts_at_most_until`]).
//! - The successor of the key that encrypts is made as soon as that key starts, to start
//!   when it ends (and never sooner than `lead` from now): so it is in the backend, and in
//!   every process that refreshes, about a whole period before anybody encrypts with it.
//! - Only when no key may encrypt (the first start, or every key expired) is a key made
//!   that starts at once: no process holds any key another could lack.

use super::key::{Schedule, TicketKey};
use std::borrow::Borrow;

/// The timing every process of a cache uses (from its URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Seconds a key encrypts (`ticket_rotate`).
    pub period: u64,
    /// Seconds a key still decrypts after it stops encrypting (`ttl`, else 7200).
    pub lifetime: u64,
    /// Seconds from now that a key made ahead starts at the soonest: two refresh
    /// intervals, so that every process holds it before it is used.
    pub lead: u64,
    /// Milliseconds between two refreshes of a process's keys.
    pub refresh_ms: u64,
}

/// OpenSSL's default session timeout (`SSL_CTX_set_timeout`), the lifetime of tickets when
/// the URL gives no `ttl`.
pub(crate) const DEFAULT_LIFETIME_S: u64 = 7200;

impl Timing {
    /// The timing of a `ticket_rotate` period and a `ttl`.
    pub fn new(period: u64, ttl: Option<u64>) -> Timing {
        let period = period.max(1);
        let lifetime = ttl.unwrap_or(DEFAULT_LIFETIME_S).max(1);
        // A tenth of the period, from 200 ms to a minute.
        let refresh_ms = period.saturating_mul(100).clamp(200, 60_000);
        let lead = (2 * refresh_ms)
            .div_ceil(1000)
            .clamp(1, (lifetime / 4).max(1));
        Timing {
            period,
            lifetime,
            lead,
            refresh_ms,
        }
    }

    /// How far apart hosts' clocks may be without a ticket issued on one that another
    /// cannot open: a key made ahead is held everywhere about a period minus a lead and a
    /// refresh before anybody, whatever its clock, starts encrypting with it.
    pub fn skew_tolerated_s(&self) -> u64 {
        self.period
            .saturating_sub(self.lead)
            .saturating_sub(self.refresh_ms.div_ceil(1000))
    }
}

/// The key that encrypts at `now`, of `keys`.
pub fn encryptor<K: Borrow<TicketKey>>(keys: &[K], now: u64) -> Option<&TicketKey> {
    keys.iter()
        .map(Borrow::borrow)
        .filter(|k| k.enc_from <= now && now < k.encrypts_at_most_until())
        .max_by_key(|k| (k.enc_from, k.seq))
}

/// The key whose name is `name`, if it still decrypts at `now`.
pub fn decryptor<'a>(keys: &'a [TicketKey], name: &[u8], now: u64) -> Option<&'a TicketKey> {
    keys.iter()
        .find(|k| k.name[..] == *name && now < k.decrypt_until)
}

/// Drops the keys a revoking key revoked (every lower number); returns their numbers.
pub fn apply_revocations(keys: &mut Vec<TicketKey>) -> Vec<u64> {
    let Some(r) = keys.iter().filter(|k| k.revokes).map(|k| k.seq).max() else {
        return Vec::new();
    };
    let revoked = keys.iter().filter(|k| k.seq < r).map(|k| k.seq).collect();
    keys.retain(|k| k.seq >= r);
    revoked
}

/// What a refresh should change in the backend.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// A key to make, if one is due.
    pub create: Option<Schedule>,
    /// Records to drop: expired.
    pub drop: Vec<u64>,
}

/// What is due, given the valid keys the backend holds (revocations applied), the highest
/// number any record has (refused ones included: numbers are never reused), and the time.
pub fn plan<K: Borrow<TicketKey>>(keys: &[K], max_seq: u64, now: u64, t: &Timing) -> Plan {
    let drop = keys
        .iter()
        .map(Borrow::borrow)
        .filter(|k| k.decrypt_until <= now)
        .map(|k| k.seq)
        .collect();
    // A record numbered u64::MAX (only someone who can write the backend makes one) leaves
    // no number to make a key under: none is made, and the keys held go on serving.
    let Some(seq) = max_seq.checked_add(1) else {
        return Plan { create: None, drop };
    };
    let create = match encryptor(keys, now) {
        None => Some(schedule(seq, now, now, t, false)),
        Some(cur) if !keys.iter().any(|k| k.borrow().enc_from > cur.enc_from) => {
            let enc_from = cur.enc_until.max(now.saturating_add(t.lead));
            Some(schedule(seq, now, enc_from, t, false))
        }
        Some(_) => None,
    };
    Plan { create, drop }
}

/// The key `sesscache tickets rotate` makes: starting after a lead (every process holds it
/// by then), or at once when it revokes every older key (after a suspected compromise:
/// processes that have not refreshed yet cannot open its tickets for up to a refresh
/// interval, a price worth paying then).
pub fn rotation(max_seq: u64, now: u64, t: &Timing, revoke: bool) -> Option<Schedule> {
    let enc_from = if revoke {
        now
    } else {
        now.saturating_add(t.lead)
    };
    Some(schedule(max_seq.checked_add(1)?, now, enc_from, t, revoke))
}

/// Key `seq`, made at `now`, encrypting for a period from `enc_from`, then decrypting for a
/// lifetime (saturating: a `ttl` of centuries is not an overflow).
fn schedule(seq: u64, now: u64, enc_from: u64, t: &Timing, revokes: bool) -> Schedule {
    let enc_until = enc_from.saturating_add(t.period);
    Schedule {
        seq,
        created: now,
        enc_from,
        enc_until,
        decrypt_until: enc_until.saturating_add(t.lifetime),
        revokes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        period: 100,
        lifetime: 300,
        lead: 10,
        refresh_ms: 5000,
    };

    fn make(s: Schedule) -> TicketKey {
        TicketKey::generate(s).unwrap()
    }

    /// Runs the rules the way the refresher does, from `start` to `end` in `step`s:
    /// returns every key made.
    fn simulate(start: u64, end: u64, step: u64) -> Vec<TicketKey> {
        let mut keys: Vec<TicketKey> = Vec::new();
        let mut now = start;
        while now <= end {
            let max = keys.iter().map(|k| k.seq).max().unwrap_or(0);
            let p = plan(&keys, max, now, &T);
            if let Some(s) = p.create {
                keys.push(make(s));
            }
            now += step;
        }
        keys
    }

    #[test]
    fn timing_defaults() {
        let t = Timing::new(3600, None);
        assert_eq!((t.refresh_ms, t.lead, t.lifetime), (60_000, 120, 7200));
        assert_eq!(t.skew_tolerated_s(), 3600 - 120 - 60);
        let short = Timing::new(4, Some(20));
        assert_eq!((short.refresh_ms, short.lead), (400, 1));
        // The lead never exceeds a quarter of the lifetime.
        assert_eq!(Timing::new(3600, Some(8)).lead, 2);
    }

    #[test]
    fn the_first_key_starts_at_once_and_its_successor_is_made_ahead() {
        let p = plan::<TicketKey>(&[], 0, 1000, &T);
        let first = p.create.unwrap();
        assert_eq!(
            (first.seq, first.enc_from, first.enc_until),
            (1, 1000, 1100)
        );
        assert_eq!(first.decrypt_until, 1400);
        let keys = vec![make(first)];
        let next = plan(&keys, 1, 1001, &T).create.unwrap();
        assert_eq!((next.seq, next.enc_from, next.enc_until), (2, 1100, 1200));
        // With the successor held, nothing is due.
        let keys = vec![make(first), make(next)];
        assert_eq!(plan(&keys, 2, 1050, &T), Plan::default());
    }

    #[test]
    fn steady_rotation_has_a_key_ahead_always() {
        let keys = simulate(1000, 3000, 7);
        for now in 1000..3000 {
            let cur = encryptor(&keys, now).expect("a key encrypts at every moment");
            // The key that encrypts was made at least a period ago, but for the first.
            if cur.seq > 1 {
                assert!(
                    cur.created + T.period - T.lead - 7 <= now,
                    "{cur:?} at {now}"
                );
            }
            assert!(now < cur.enc_until || cur.seq == keys.len() as u64);
            // Every ticket encrypted now decrypts for its whole lifetime, under the rules.
            assert!(cur.decrypt_until >= now + T.lifetime);
        }
        // No two keys encrypt the same second.
        let seqs: Vec<u64> = keys.iter().map(|k| k.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_process_that_stops_refreshing_keeps_encrypting_with_a_key_the_others_hold() {
        // It holds keys 1 and 2 (made at 1000); the others go on.
        let all = simulate(1000, 2000, 5);
        let stale: Vec<&TicketKey> = all.iter().filter(|k| k.seq <= 2).collect();
        for now in 1000..1350 {
            let held: Vec<TicketKey> = stale
                .iter()
                .map(|k| TicketKey::decode(k.encode().as_slice()).unwrap())
                .collect();
            if let Some(k) = encryptor(&held, now) {
                // What it encrypts with, the others can still open now.
                assert!(decryptor(&all, &k.name, now).is_some(), "at {now}");
                assert!(k.decrypt_until >= now + T.lifetime / 2);
            }
        }
    }

    #[test]
    fn expired_keys_are_dropped_and_late_successors_start_after_a_lead() {
        let first = make(plan::<TicketKey>(&[], 0, 1000, &T).create.unwrap());
        // Nobody refreshed until just before the first key's end.
        let late = plan(std::slice::from_ref(&first), 1, 1095, &T)
            .create
            .unwrap();
        assert_eq!(late.enc_from, 1105);
        // Long after everything expired: a new key at once, the old one dropped.
        let p = plan(std::slice::from_ref(&first), 1, 5000, &T);
        assert_eq!(p.drop, vec![1]);
        assert_eq!(p.create.unwrap().enc_from, 5000);
    }

    #[test]
    fn numbers_are_never_reused_even_over_refused_records() {
        let p = plan::<TicketKey>(&[], 41, 1000, &T);
        assert_eq!(p.create.unwrap().seq, 42);
        // A planted record numbered u64::MAX: no number is left, nothing overflows.
        assert_eq!(plan::<TicketKey>(&[], u64::MAX, 1000, &T).create, None);
        assert_eq!(rotation(u64::MAX, 1000, &T, true), None);
        // Nor does a lifetime of centuries.
        let long = Timing::new(3600, Some(u64::MAX));
        let s = plan::<TicketKey>(&[], 1, u64::MAX - 10, &long)
            .create
            .unwrap();
        assert_eq!(s.decrypt_until, u64::MAX);
    }

    #[test]
    fn rotation_and_revocation() {
        let mut keys = simulate(1000, 1010, 1);
        assert_eq!(keys.len(), 2);
        let r = rotation(2, 1020, &T, false).unwrap();
        assert_eq!((r.seq, r.enc_from, r.revokes), (3, 1030, false));
        keys.push(make(r));
        assert_eq!(encryptor(&keys, 1029).unwrap().seq, 1);
        assert_eq!(encryptor(&keys, 1030).unwrap().seq, 3);
        // The scheduled key 2 takes over at its time.
        assert_eq!(encryptor(&keys, 1100).unwrap().seq, 2);
        let v = rotation(3, 1040, &T, true).unwrap();
        assert_eq!((v.seq, v.enc_from), (4, 1040));
        keys.push(make(v));
        assert_eq!(apply_revocations(&mut keys), vec![1, 2, 3]);
        assert_eq!(encryptor(&keys, 1040).unwrap().seq, 4);
        assert_eq!(keys.len(), 1);
    }
}
