//! The pending writes of one process: values it queued for Redis that the writer has not yet
//! sent, by Redis key. What this process stored, its own lookups find at once (read your
//! writes), even when the client comes back before the SET reaches Redis. At most one per
//! queued write, so bounded by the queue.
//!
//! Shared by the process's threads: `put` adds (`insert`), lookups read or take, `remove`
//! forgets, and the writer claims each value as it sends its SET ([`Pending::claim`]) and
//! forgets it once sent ([`Pending::forget`]).

use super::super::conn::SINGLE_USE;
use crate::secret::SecretBytes;
use crate::threads::lock;
use std::collections::HashMap;
use std::sync::Mutex;

/// [`Pending::claim`]'s answer: what the writer may do with a SET.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Not send it: its value was taken, removed or stored again since.
    Skip,
    /// Send it; the value is no longer pending (a single-use value, so that no lookup takes
    /// it here while Redis gets it).
    Claimed,
    /// Send it; the value stays readable here until it is sent (a reusable one, then
    /// [`Pending::forget`]).
    Readable,
}

#[derive(Default)]
pub(crate) struct Pending(Mutex<Values>);

/// The values, and the last sequence number given (a SET forgets only its own value, not
/// a newer one stored under the same key since).
#[derive(Default)]
struct Values {
    values: HashMap<Vec<u8>, (u64, SecretBytes)>,
    last: u64,
}

impl Pending {
    /// Keeps `value` as `rkey`'s pending value; its sequence number, for the writer.
    pub fn insert(&self, rkey: Vec<u8>, value: SecretBytes) -> u64 {
        let mut p = lock(&self.0);
        p.last += 1;
        let seq = p.last;
        p.values.insert(rkey, (seq, value));
        seq
    }

    /// `rkey`'s pending value: a copy, or (`take`) the value itself, which is then no
    /// longer pending, so that its SET is not sent at all.
    pub fn get(&self, rkey: &[u8], take: bool) -> Option<SecretBytes> {
        let mut p = lock(&self.0);
        if p.values.is_empty() {
            return None;
        }
        if take {
            p.values.remove(rkey).map(|(_, v)| v)
        } else {
            p.values.get(rkey).map(|(_, v)| v.clone())
        }
    }

    /// Forgets `rkey`'s pending value, whichever it is (the key is being removed).
    pub fn remove(&self, rkey: &[u8]) {
        let mut p = lock(&self.0);
        if !p.values.is_empty() {
            p.values.remove(rkey);
        }
    }

    /// What the writer may do with the SET of `rkey`'s value numbered `seq` ([`Claim`]).
    pub fn claim(&self, rkey: &[u8], seq: u64) -> Claim {
        let mut p = lock(&self.0);
        match p.values.get(rkey) {
            Some((s, v)) if *s == seq => {
                if v.as_slice().first().is_some_and(|f| f & SINGLE_USE != 0) {
                    p.values.remove(rkey);
                    Claim::Claimed
                } else {
                    Claim::Readable
                }
            }
            _ => Claim::Skip,
        }
    }

    /// Forgets the pending value of `rkey` if it is still the one numbered `seq`.
    pub fn forget(&self, rkey: &[u8], seq: u64) {
        let mut p = lock(&self.0);
        if p.values.get(rkey).is_some_and(|(s, _)| *s == seq) {
            p.values.remove(rkey);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(bytes: &[u8]) -> SecretBytes {
        SecretBytes::from(bytes.to_vec())
    }

    fn read(p: &Pending, rkey: &[u8]) -> Option<Vec<u8>> {
        p.get(rkey, false).map(|v| v.as_slice().to_vec())
    }

    #[test]
    fn a_reusable_value_stays_readable_until_sent() {
        let p = Pending::default();
        let seq = p.insert(b"k".to_vec(), v(&[0, 1]));
        assert_eq!(p.claim(b"k", seq), Claim::Readable);
        assert_eq!(read(&p, b"k"), Some(vec![0, 1]));
        p.forget(b"k", seq);
        assert_eq!(read(&p, b"k"), None);
    }

    #[test]
    fn a_single_use_value_stops_being_pending_when_claimed() {
        let p = Pending::default();
        let seq = p.insert(b"k".to_vec(), v(&[SINGLE_USE, 1]));
        assert_eq!(p.claim(b"k", seq), Claim::Claimed);
        assert_eq!(read(&p, b"k"), None);
        assert_eq!(p.claim(b"k", seq), Claim::Skip);
    }

    #[test]
    fn taken_removed_or_replaced_values_are_not_sent() {
        let p = Pending::default();
        let taken = p.insert(b"a".to_vec(), v(&[0]));
        assert_eq!(p.get(b"a", true).unwrap().as_slice(), &[0]);
        assert_eq!(p.claim(b"a", taken), Claim::Skip);
        let removed = p.insert(b"b".to_vec(), v(&[0]));
        p.remove(b"b");
        assert_eq!(p.claim(b"b", removed), Claim::Skip);
        let old = p.insert(b"c".to_vec(), v(&[0, 1]));
        let new = p.insert(b"c".to_vec(), v(&[0, 2]));
        assert_eq!(p.claim(b"c", old), Claim::Skip);
        // The old SET forgets only its own value.
        p.forget(b"c", old);
        assert_eq!(read(&p, b"c"), Some(vec![0, 2]));
        assert_eq!(p.claim(b"c", new), Claim::Readable);
    }
}
