//! Between a session's DER and the bytes a store holds.
//!
//! Every byte a backend receives goes through [`Codec::seal`], and every byte it returns
//! through [`Codec::open`] before it is decoded: the one place where sealing fits, so that
//! a backend off this process never holds a session in clear, and bytes planted or swapped
//! under another ID fail to open. [`Codec::Plain`] stores the DER as it is (and
//! `session::decode_matching` still refuses a session filed under another ID);
//! [`Codec::Sealed`] seals it with AES-256-GCM ([`seal`](super::seal)).

use super::seal::Keys;
use crate::secret::SecretBytes;
use crate::store::SessionKey;
use std::sync::Arc;

/// How sessions are turned into stored bytes and back.
#[derive(Debug, Clone)]
pub enum Codec {
    /// The stored bytes are the DER (`i2d_SSL_SESSION`) as it is.
    Plain,
    /// The stored bytes are the DER sealed under the first of `keys`, with `context` (what
    /// names the cache, e.g. a Redis key prefix) and the session ID as associated data.
    Sealed { keys: Arc<Keys>, context: Box<[u8]> },
}

impl Codec {
    pub fn plain() -> Codec {
        Codec::Plain
    }

    /// What sealing adds to a value's length.
    pub fn overhead(&self) -> usize {
        match self {
            Codec::Plain => 0,
            Codec::Sealed { .. } => super::seal::OVERHEAD,
        }
    }

    /// The bytes to store for `der`, the encoding of the session filed under `key`; None if
    /// sealing failed (no randomness, an OpenSSL error).
    #[inline]
    pub fn seal(&self, key: &SessionKey, der: SecretBytes) -> Option<SecretBytes> {
        match self {
            Codec::Plain => Some(der),
            Codec::Sealed { keys, context } => keys.seal(context, key.as_bytes(), der.as_slice()),
        }
    }

    /// The DER in `stored`, the bytes found under `key`; None if they are not authentic.
    #[inline]
    pub fn open(&self, key: &SessionKey, stored: SecretBytes) -> Option<SecretBytes> {
        match self {
            Codec::Plain => Some(stored),
            Codec::Sealed { keys, context } => {
                keys.open(context, key.as_bytes(), stored.as_slice())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trips() {
        let key = SessionKey::new(b"id").unwrap();
        let c = Codec::plain();
        let stored = c.seal(&key, SecretBytes::from(&b"der"[..])).unwrap();
        assert_eq!(stored.as_slice(), b"der");
        assert_eq!(c.open(&key, stored).unwrap().as_slice(), b"der");
    }

    #[test]
    fn sealed_round_trips_under_its_id_only() {
        let keys = Keys::parse(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .unwrap();
        let c = Codec::Sealed {
            keys: Arc::new(keys),
            context: b"sesscache:".to_vec().into(),
        };
        let key = SessionKey::new(b"id").unwrap();
        let stored = c.seal(&key, SecretBytes::from(&b"der"[..])).unwrap();
        assert_eq!(stored.len(), 3 + c.overhead());
        assert_ne!(&stored.as_slice()[..3], b"der");
        let other = SessionKey::new(b"di").unwrap();
        assert!(c.open(&other, stored.clone()).is_none());
        assert_eq!(c.open(&key, stored).unwrap().as_slice(), b"der");
    }
}
