//! Between a session's DER and the bytes a store holds.
//!
//! Every byte a backend receives goes through [`Codec::seal`], and every byte it returns
//! through [`Codec::open`] before it is decoded: the one place where sealing (an AEAD keyed
//! per cache, with the session ID as associated data) fits, so that a backend off this
//! process (shared memory another user could read, a Redis server) never holds a session in
//! clear, and bytes planted or swapped under another ID fail to open. Today the only codec
//! is [`Codec::plain`]: the stored bytes are the DER, and `session::decode_matching` still
//! refuses a session filed under another ID.

use crate::secret::SecretBytes;
use crate::store::SessionKey;

/// How sessions are turned into stored bytes and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// The stored bytes are the DER (`i2d_SSL_SESSION`) as it is.
    Plain,
}

impl Codec {
    pub fn plain() -> Codec {
        Codec::Plain
    }

    /// The bytes to store for `der`, the encoding of the session filed under `key`.
    #[inline]
    pub fn seal(&self, key: &SessionKey, der: SecretBytes) -> SecretBytes {
        let _ = key;
        match self {
            Codec::Plain => der,
        }
    }

    /// The DER in `stored`, the bytes found under `key`; None if they are not authentic.
    #[inline]
    pub fn open(&self, key: &SessionKey, stored: SecretBytes) -> Option<SecretBytes> {
        let _ = key;
        match self {
            Codec::Plain => Some(stored),
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
        let stored = c.seal(&key, SecretBytes::from(&b"der"[..]));
        assert_eq!(stored.as_slice(), b"der");
        assert_eq!(c.open(&key, stored).unwrap().as_slice(), b"der");
    }
}
