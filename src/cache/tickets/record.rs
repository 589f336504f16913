//! Ticket-key records as the backend holds them: a key [`encode`](TicketKey::encode)d, then
//! sealed with the cache's `key_file` (AES-256-GCM; the cache's context and the record's
//! number as associated data), or, where no key file is given (`shm:`, `memory:`, never
//! `redis`), followed by a SHA-256 checksum over the same. A record that was altered,
//! moved to another number, planted by someone without the key file, or sealed under
//! another key file does not open: it is refused, never used.

use super::key::TicketKey;
use crate::cache::seal::Keys;
use crate::secret::SecretBytes;
use std::sync::Arc;

/// How much of the SHA-256 checksum a record without a key file carries.
const CHECKSUM_LEN: usize = 16;
/// Appended to the cache's context: ticket records are never confused with sessions.
const TICKETS_CONTEXT: &[u8] = b"|ticket-keys";

/// How records are protected: the cache's sealing keys, or a checksum.
pub enum RecordSeal {
    Sealed { keys: Arc<Keys>, context: Vec<u8> },
    Checksummed { context: Vec<u8> },
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It does not open: altered, planted, or sealed under another key file.
    DoesNotOpen,
    /// It opened but is not a key record of this version, or names another number.
    Malformed,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::DoesNotOpen => {
                "does not open (altered, planted, or sealed under another key file)"
            }
            Refused::Malformed => "is not a ticket key record of this version",
        })
    }
}

fn checksum(context: &[u8], seq: u64, plain: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(context.len() + 8 + plain.len());
    input.extend_from_slice(context);
    input.extend_from_slice(&seq.to_be_bytes());
    input.extend_from_slice(plain);
    let mut md = [0u8; 32];
    // SAFETY: input is readable for its length; md has room for a SHA-256 digest.
    unsafe { openssl_sys::SHA256(input.as_ptr(), input.len(), md.as_mut_ptr()) };
    crate::secret::wipe(&mut input);
    md
}

impl RecordSeal {
    /// Sealed under `keys`, or checksummed; `cache_context` names the cache (as for
    /// sessions).
    pub fn new(keys: Option<Arc<Keys>>, cache_context: &[u8]) -> RecordSeal {
        let context = [cache_context, TICKETS_CONTEXT].concat();
        match keys {
            Some(keys) => RecordSeal::Sealed { keys, context },
            None => RecordSeal::Checksummed { context },
        }
    }

    /// The record to store for `key`; None if sealing failed.
    pub fn seal(&self, key: &TicketKey) -> Option<SecretBytes> {
        let plain = key.encode();
        match self {
            RecordSeal::Sealed { keys, context } => {
                keys.seal(context, &key.seq.to_be_bytes(), plain.as_slice())
            }
            RecordSeal::Checksummed { context } => {
                let sum = checksum(context, key.seq, plain.as_slice());
                let mut out = SecretBytes::zeroed(plain.len() + CHECKSUM_LEN);
                let b = out.as_mut_slice();
                b[..plain.len()].copy_from_slice(plain.as_slice());
                b[plain.len()..].copy_from_slice(&sum[..CHECKSUM_LEN]);
                Some(out)
            }
        }
    }

    /// The key in record `seq`, or why it is refused.
    pub fn open(&self, seq: u64, bytes: &[u8]) -> Result<TicketKey, Refused> {
        let plain = match self {
            RecordSeal::Sealed { keys, context } => keys
                .open(context, &seq.to_be_bytes(), bytes)
                .ok_or(Refused::DoesNotOpen)?,
            RecordSeal::Checksummed { context } => {
                let Some(split) = bytes.len().checked_sub(CHECKSUM_LEN) else {
                    return Err(Refused::DoesNotOpen);
                };
                let (plain, sum) = bytes.split_at(split);
                let expected = checksum(context, seq, plain);
                // Not secret (anyone who can read the record can compute it): no need for
                // a constant-time comparison.
                if expected[..CHECKSUM_LEN] != *sum {
                    return Err(Refused::DoesNotOpen);
                }
                SecretBytes::from(plain)
            }
        };
        let key = TicketKey::decode(plain.as_slice()).ok_or(Refused::Malformed)?;
        if key.seq != seq {
            return Err(Refused::Malformed);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::key::Schedule;
    use super::*;
    use crate::store::MAX_TICKET_RECORD_BYTES;

    fn key(seq: u64) -> TicketKey {
        TicketKey::generate(Schedule {
            seq,
            created: 1,
            enc_from: 10,
            enc_until: 20,
            decrypt_until: 30,
            revokes: false,
        })
        .unwrap()
    }

    fn seals() -> Vec<RecordSeal> {
        let keys = Keys::parse(&[b'a'; 64]).unwrap();
        vec![
            RecordSeal::new(Some(Arc::new(keys)), b"shm:x"),
            RecordSeal::new(None, b"shm:x"),
        ]
    }

    #[test]
    fn records_round_trip_and_fit_every_backend() {
        for seal in seals() {
            let k = key(3);
            let rec = seal.seal(&k).unwrap();
            assert!(rec.len() <= MAX_TICKET_RECORD_BYTES, "{}", rec.len());
            let back = seal.open(3, rec.as_slice()).unwrap();
            assert_eq!((back.aes, back.hmac, back.name), (k.aes, k.hmac, k.name));
        }
    }

    #[test]
    fn altered_moved_or_foreign_records_are_refused() {
        for seal in seals() {
            let rec = seal.seal(&key(3)).unwrap();
            // Every single-bit change anywhere.
            for i in 0..rec.len() {
                let mut bad = rec.as_slice().to_vec();
                bad[i] ^= 0x10;
                assert!(seal.open(3, &bad).is_err(), "byte {i}");
            }
            // Moved to another number.
            assert_eq!(
                seal.open(4, rec.as_slice()).err(),
                Some(Refused::DoesNotOpen)
            );
            // Truncated, empty.
            assert!(seal.open(3, &rec.as_slice()[..10]).is_err());
            assert!(seal.open(3, &[]).is_err());
        }
        // Another cache, another key file.
        let other = RecordSeal::new(None, b"shm:y");
        let rec = seals()[1].seal(&key(3)).unwrap();
        assert!(other.open(3, rec.as_slice()).is_err());
        let other_keys =
            RecordSeal::new(Some(Arc::new(Keys::parse(&[b'b'; 64]).unwrap())), b"shm:x");
        let rec = seals()[0].seal(&key(3)).unwrap();
        assert_eq!(
            other_keys.open(3, rec.as_slice()).err(),
            Some(Refused::DoesNotOpen)
        );
    }
}
