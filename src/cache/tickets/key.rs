//! One ticket key: what OpenSSL needs to encrypt and authenticate a ticket (a 16-byte name
//! sent in clear at the ticket's start, an AES-256 key, an HMAC-SHA256 key), with the
//! windows in which it encrypts and decrypts. Its bytes are wiped when it is dropped.

use crate::secret::{wipe, SecretBytes};
use std::os::raw::c_int;

/// The length of a key name (`TLSEXT_KEYNAME_LENGTH`).
pub(crate) const NAME_LEN: usize = 16;
/// The lengths of the AES-256 and HMAC-SHA256 keys.
pub(crate) const SECRET_LEN: usize = 32;
/// The sequence number of the process-local key (shared keys start at 1).
pub(crate) const LOCAL_SEQ: u64 = 0;

/// The version of [`TicketKey::encode`]'s layout.
const VERSION: u8 = 1;
const FLAG_REVOKES: u8 = 1;
/// version, flags, five u64 times and numbers, name, two secrets.
pub(crate) const ENCODED_LEN: usize = 2 + 5 * 8 + NAME_LEN + 2 * SECRET_LEN;

pub struct TicketKey {
    /// The generation: 1, 2, … in the order keys were made; [`LOCAL_SEQ`] for the
    /// process's own key.
    pub seq: u64,
    /// Made by `sesscache tickets revoke`: every key of a lower `seq` is dropped.
    pub revokes: bool,
    /// Unix seconds: when it was made.
    pub created: u64,
    /// Unix seconds: it encrypts from `enc_from` until `enc_until` (or until a newer key
    /// is held), and decrypts until `decrypt_until`.
    pub enc_from: u64,
    pub enc_until: u64,
    pub decrypt_until: u64,
    pub name: [u8; NAME_LEN],
    pub aes: [u8; SECRET_LEN],
    pub hmac: [u8; SECRET_LEN],
}

impl Drop for TicketKey {
    fn drop(&mut self) {
        wipe(&mut self.aes);
        wipe(&mut self.hmac);
        wipe(&mut self.name);
    }
}

impl std::fmt::Debug for TicketKey {
    // Never the secrets; the name is sent in clear in every ticket, but not needed here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TicketKey(seq={}, enc={}..{}, dec..{}{})",
            self.seq,
            self.enc_from,
            self.enc_until,
            self.decrypt_until,
            if self.revokes { ", revokes" } else { "" }
        )
    }
}

/// Fills `buf` from OpenSSL's random generator.
fn random(buf: &mut [u8]) -> bool {
    let Ok(len) = c_int::try_from(buf.len()) else {
        return false;
    };
    // SAFETY: buf is `len` writable bytes.
    unsafe { openssl_sys::RAND_bytes(buf.as_mut_ptr(), len) == 1 }
}

/// What a new key's windows and number are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub seq: u64,
    pub created: u64,
    pub enc_from: u64,
    pub enc_until: u64,
    pub decrypt_until: u64,
    pub revokes: bool,
}

impl TicketKey {
    /// A new key with random secrets and name; None if the random generator failed.
    pub fn generate(s: Schedule) -> Option<TicketKey> {
        let mut key = TicketKey {
            seq: s.seq,
            revokes: s.revokes,
            created: s.created,
            enc_from: s.enc_from,
            enc_until: s.enc_until,
            decrypt_until: s.decrypt_until,
            name: [0; NAME_LEN],
            aes: [0; SECRET_LEN],
            hmac: [0; SECRET_LEN],
        };
        (random(&mut key.name) && random(&mut key.aes) && random(&mut key.hmac)).then_some(key)
    }

    /// The process's own key: what OpenSSL would have made for each context, used when no
    /// shared key is held (the backend was never reached). It never expires, like
    /// OpenSSL's.
    pub fn local(now: u64) -> Option<TicketKey> {
        TicketKey::generate(Schedule {
            seq: LOCAL_SEQ,
            created: now,
            enc_from: 0,
            enc_until: u64::MAX,
            decrypt_until: u64::MAX,
            revokes: false,
        })
    }

    pub fn is_local(&self) -> bool {
        self.seq == LOCAL_SEQ
    }

    /// Until when it may still encrypt when no newer key is held: halfway through its
    /// decryption window, so that its tickets keep at least half their lifetime.
    pub fn encrypts_at_most_until(&self) -> u64 {
        let lifetime = self.decrypt_until.saturating_sub(self.enc_until);
        self.enc_until.saturating_add(lifetime / 2)
    }

    /// The plain record: [`ENCODED_LEN`] bytes, sealed or checksummed by `record`.
    pub fn encode(&self) -> SecretBytes {
        let mut out = SecretBytes::zeroed(ENCODED_LEN);
        let b = out.as_mut_slice();
        b[0] = VERSION;
        b[1] = if self.revokes { FLAG_REVOKES } else { 0 };
        let mut at = 2;
        for n in [
            self.seq,
            self.created,
            self.enc_from,
            self.enc_until,
            self.decrypt_until,
        ] {
            b[at..at + 8].copy_from_slice(&n.to_be_bytes());
            at += 8;
        }
        for part in [&self.name[..], &self.aes[..], &self.hmac[..]] {
            b[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        out
    }

    /// The key an [`encode`](TicketKey::encode)d record holds; None if it is not one
    /// (length, version, flags, windows out of order, the local number).
    pub fn decode(b: &[u8]) -> Option<TicketKey> {
        if b.len() != ENCODED_LEN || b[0] != VERSION || b[1] & !FLAG_REVOKES != 0 {
            return None;
        }
        let n = |i: usize| {
            let at = 2 + 8 * i;
            u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or_default())
        };
        let mut key = TicketKey {
            seq: n(0),
            revokes: b[1] & FLAG_REVOKES != 0,
            created: n(1),
            enc_from: n(2),
            enc_until: n(3),
            decrypt_until: n(4),
            name: [0; NAME_LEN],
            aes: [0; SECRET_LEN],
            hmac: [0; SECRET_LEN],
        };
        let at = 2 + 5 * 8;
        key.name.copy_from_slice(&b[at..at + NAME_LEN]);
        key.aes
            .copy_from_slice(&b[at + NAME_LEN..at + NAME_LEN + SECRET_LEN]);
        key.hmac.copy_from_slice(&b[at + NAME_LEN + SECRET_LEN..]);
        let ordered = key.enc_from < key.enc_until && key.enc_until <= key.decrypt_until;
        (key.seq != LOCAL_SEQ && ordered).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(seq: u64) -> Schedule {
        Schedule {
            seq,
            created: 10,
            enc_from: 100,
            enc_until: 200,
            decrypt_until: 400,
            revokes: seq == 9,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for seq in [1, 9] {
            let k = TicketKey::generate(schedule(seq)).unwrap();
            let d = TicketKey::decode(k.encode().as_slice()).unwrap();
            assert_eq!(
                (
                    d.seq,
                    d.revokes,
                    d.created,
                    d.enc_from,
                    d.enc_until,
                    d.decrypt_until
                ),
                (seq, seq == 9, 10, 100, 200, 400)
            );
            assert_eq!((d.name, d.aes, d.hmac), (k.name, k.aes, k.hmac));
        }
    }

    #[test]
    fn keys_are_random_and_never_printed() {
        let a = TicketKey::generate(schedule(1)).unwrap();
        let b = TicketKey::generate(schedule(1)).unwrap();
        assert_ne!(a.aes, b.aes);
        assert_ne!(a.name, b.name);
        let shown = format!("{a:?}");
        assert!(!shown.contains(&format!("{:?}", &a.aes[0..4])));
        assert_eq!(shown, "TicketKey(seq=1, enc=100..200, dec..400)");
    }

    #[test]
    fn malformed_records_do_not_decode() {
        let good = TicketKey::generate(schedule(1)).unwrap().encode();
        assert!(TicketKey::decode(&good.as_slice()[1..]).is_none());
        for (at, value) in [(0, 2u8), (1, 2u8)] {
            let mut bad = good.as_slice().to_vec();
            bad[at] = value;
            assert!(TicketKey::decode(&bad).is_none(), "byte {at}");
        }
        // Windows out of order.
        let mut s = schedule(1);
        s.enc_until = 50;
        assert!(TicketKey::decode(TicketKey::generate(s).unwrap().encode().as_slice()).is_none());
        // The local number is never a stored record.
        let local = TicketKey::local(5).unwrap();
        assert!(local.is_local());
        let mut s = schedule(LOCAL_SEQ);
        s.revokes = false;
        assert!(TicketKey::decode(TicketKey::generate(s).unwrap().encode().as_slice()).is_none());
    }

    #[test]
    fn encrypts_at_most_halfway_through_its_decryption_window() {
        let k = TicketKey::generate(schedule(1)).unwrap();
        assert_eq!(k.encrypts_at_most_until(), 300);
        assert_eq!(
            TicketKey::local(1).unwrap().encrypts_at_most_until(),
            u64::MAX
        );
    }
}
