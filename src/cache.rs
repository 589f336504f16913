//! The cache core: turns OpenSSL's session events into store operations, whatever the
//! backend, and keeps the counters.

use crate::clock::now;
use crate::config::{self, Backend, Common, Config};
use crate::error::Error;
use crate::log::Level;
use crate::session::{self, SessionObject};
use crate::store::memory::{Limits, MemoryStore};
use crate::store::shm::ShmStore;
use crate::store::{Counters, Hit, PutError, SessionKey, Stats, Store, Value};
use openssl_sys::SSL_SESSION;

pub struct Cache {
    store: Box<dyn Store>,
    common: Common,
}

impl Cache {
    /// Opens the cache a URL describes.
    pub fn open(url: &str) -> Result<Cache, Error> {
        Cache::with_config(&config::parse(url)?)
    }

    pub fn with_config(cfg: &Config) -> Result<Cache, Error> {
        let store: Box<dyn Store> = match &cfg.backend {
            Backend::Memory {
                capacity,
                max_bytes,
            } => Box::new(MemoryStore::new(Limits {
                capacity: *capacity,
                max_bytes: *max_bytes,
                max_value_bytes: cfg.common.max_session_bytes,
            })),
            Backend::Shm { name, size, mode } => Box::new(ShmStore::open(
                name,
                *size,
                *mode,
                cfg.common.max_session_bytes,
            )?),
        };
        Ok(Cache {
            store,
            common: cfg.common,
        })
    }

    /// The settings every backend shares (from the URL).
    pub fn settings(&self) -> &Common {
        &self.common
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn counters(&self) -> &Counters {
        self.store.counters()
    }

    pub fn stats(&self) -> Stats {
        Stats::of(&*self.store)
    }

    /// Stores a server session handed to a new-session callback. The caller keeps its own
    /// reference; the cache may take one more, for the object a `memory:` store keeps.
    ///
    /// Only a session without a peer certificate is kept as OpenSSL's live object: it then
    /// holds what its DER encodes and no more (measured: the same ~1 KiB that decoding the
    /// DER allocates), which is what the store charges it. A server session after client
    /// authentication also holds the whole chain the client sent, which `i2d_SSL_SESSION`
    /// does not encode and `max_session_bytes` does not limit (~170 KB of heap per session
    /// for the 77 KB chains of `c-tests/test_memory_bound.c`, against ~8 KB of DER): for it
    /// only the DER is stored, and the first lookup decodes it and offers the
    /// decoded object, which holds just the peer certificate, back to the store
    /// (`Store::keep_decoded`). Decoding it here instead would cost every full handshake
    /// with a client certificate a `d2i_SSL_SESSION` (~0.3 ms for a P-256 certificate on
    /// the test machine; two per TLS 1.3 handshake, one per ticket), resumed or not.
    ///
    /// # Safety
    /// `sess` is a live session for the duration of the call.
    pub unsafe fn store_session(&self, sess: *mut SSL_SESSION) -> bool {
        // SAFETY: the caller guarantees sess is live.
        let info = unsafe { session::info(sess) };
        let Some(key) = SessionKey::new(info.id) else {
            Counters::bump(&self.counters().rejected);
            return false;
        };
        let now = now();
        let expires_at = match self.common.ttl {
            Some(ttl) => info.expires_at.min(now.saturating_add(ttl)),
            None => info.expires_at,
        };
        // SAFETY: sess is live.
        let Some(der) = (unsafe { session::encode(sess) }) else {
            Counters::bump(&self.counters().errors);
            return false;
        };
        if der.len() > self.common.max_session_bytes {
            Counters::bump(&self.counters().rejected);
            return false;
        }
        // SAFETY: sess is live.
        let object = if unsafe { session::has_peer(sess) } {
            None
        } else {
            // SAFETY: sess is live; we take our own reference.
            unsafe { SessionObject::retain(sess) }
        };
        let value = Value {
            der,
            expires_at,
            single_use: info.tls13 && self.common.single_use,
            object,
        };
        match self.store.put(&key, value, now) {
            Ok(()) => true,
            Err(PutError::TooLarge) => {
                Counters::bump(&self.counters().rejected);
                false
            }
            Err(PutError::Expired) => false,
        }
    }

    /// Stores already encoded session bytes (for tools and tests; also how a corrupt
    /// entry can reach a backend that is shared with other programs).
    pub fn store_der(&self, id: &[u8], der: &[u8], expires_at: u64, single_use: bool) -> bool {
        let Some(key) = SessionKey::new(id) else {
            Counters::bump(&self.counters().rejected);
            return false;
        };
        if der.len() > self.common.max_session_bytes {
            Counters::bump(&self.counters().rejected);
            return false;
        }
        let value = Value {
            der: der.into(),
            expires_at,
            single_use,
            object: None,
        };
        self.store.put(&key, value, now()).is_ok()
    }

    /// Looks a session ID up for a get-session callback: a session the caller owns one
    /// reference to, or None. TLS 1.3 tickets stored single-use are consumed.
    pub fn lookup(&self, id: &[u8]) -> Option<SessionObject> {
        let c = self.counters();
        Counters::bump(&c.lookups);
        let found = match SessionKey::new(id) {
            Some(key) => self.resolve(&key),
            None => {
                Counters::bump(&c.rejected);
                None
            }
        };
        Counters::bump(if found.is_some() { &c.hits } else { &c.misses });
        found
    }

    fn resolve(&self, key: &SessionKey) -> Option<SessionObject> {
        let now = now();
        match self.store.get(key, now)? {
            Hit::Object(obj) if obj.is_resumable() => Some(obj),
            Hit::Object(_) => {
                // OpenSSL removed this session (and marked it) but our remove callback has
                // not run yet, or ran on another context: it would be refused anyway.
                self.store.remove(key);
                None
            }
            Hit::Der(der) => match session::decode_matching(key.as_bytes(), der.as_slice()) {
                Some(obj) => {
                    self.store.keep_decoded(key, der.as_slice(), &obj, now);
                    Some(obj)
                }
                None => {
                    Counters::bump(&self.counters().errors);
                    crate::log!(
                        Level::Warn,
                        "error: stored session id#{:08x} does not decode to that ID; dropped",
                        crate::log::fingerprint(key.as_bytes())
                    );
                    self.store.remove(key);
                    None
                }
            },
        }
    }

    /// Forgets a session ID (remove-session callback). Invalid IDs are ignored.
    pub fn remove(&self, id: &[u8]) {
        if let Some(key) = SessionKey::new(id) {
            self.store.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_der_is_a_miss_and_an_error() {
        crate::log::silence();
        let cache = Cache::open("memory:").unwrap();
        assert!(cache.store_der(b"id-1", b"not a session", now() + 100, false));
        assert!(cache.lookup(b"id-1").is_none());
        let s = cache.stats();
        assert_eq!((s.lookups, s.hits, s.misses, s.errors), (1, 0, 1, 1));
        assert_eq!(s.entries, 0, "a corrupt entry is dropped");
        // Truncated real-looking DER (a SEQUENCE header claiming more bytes).
        assert!(cache.store_der(b"id-2", &[0x30, 0x82, 0x01, 0x00, 0x02], now() + 100, false));
        assert!(cache.lookup(b"id-2").is_none());
        assert_eq!(cache.stats().errors, 2);
    }

    #[test]
    fn bad_ids_are_rejected() {
        let cache = Cache::open("memory:").unwrap();
        assert!(cache.lookup(b"").is_none());
        assert!(cache.lookup(&[0u8; 33]).is_none());
        assert!(!cache.store_der(&[0u8; 33], b"x", now() + 100, false));
        let s = cache.stats();
        assert_eq!((s.lookups, s.misses, s.rejected), (2, 2, 3));
    }

    #[test]
    fn oversized_der_is_rejected() {
        let cache = Cache::open("memory:?max_session_bytes=16").unwrap();
        assert!(!cache.store_der(b"id", &[0u8; 17], now() + 100, false));
        assert_eq!(cache.stats().rejected, 1);
        assert_eq!(cache.stats().entries, 0);
    }

    /// A session without a peer certificate is kept as OpenSSL's own object; one with a
    /// peer certificate as DER, decoded by the first lookup and kept decoded after it.
    #[test]
    fn objects_kept_for_sessions_with_and_without_a_peer() {
        use crate::session::cost::tests::with_client_cert;
        use crate::store::testing::{master_key, real_der};
        let cache = Cache::open("memory:").unwrap();
        let id = [0x11u8; 32];
        let live = session::decode(&real_der(&id, 1)).unwrap();
        assert!(!live.has_peer());
        // SAFETY: live holds a reference.
        assert!(unsafe { cache.store_session(live.as_ptr()) });
        let hit = cache.lookup(&id).unwrap();
        assert_eq!(hit.as_ptr(), live.as_ptr(), "the object itself");

        let id = [0x22u8; 32];
        let with_peer = session::decode(&with_client_cert(&real_der(&id, 2), 3)).unwrap();
        assert!(with_peer.has_peer());
        // SAFETY: with_peer holds a reference.
        assert!(unsafe { cache.store_session(with_peer.as_ptr()) });
        let first = cache.lookup(&id).unwrap();
        assert_ne!(first.as_ptr(), with_peer.as_ptr(), "decoded from the DER");
        assert!(first.has_peer());
        assert_eq!(master_key(&first), 2);
        let second = cache.lookup(&id).unwrap();
        assert_eq!(second.as_ptr(), first.as_ptr(), "kept decoded");
        let s = cache.stats();
        assert_eq!((s.stores, s.hits, s.entries), (2, 3, 2));
        let charged =
            |obj: &SessionObject| obj.cost().unwrap() + crate::store::memory::ENTRY_OVERHEAD;
        assert_eq!(s.bytes as usize, charged(&live) + charged(&first));
    }

    proptest::proptest! {
        /// Whatever bytes sit in the store, a lookup never panics or returns a session
        /// that did not decode.
        #[test]
        fn arbitrary_stored_bytes_never_crash(der in proptest::collection::vec(proptest::num::u8::ANY, 1..300)) {
            crate::log::silence();
            let cache = Cache::open("memory:").unwrap();
            cache.store_der(b"k", &der, now() + 100, false);
            if let Some(obj) = cache.lookup(b"k") {
                proptest::prop_assert!(!obj.as_ptr().is_null());
            }
        }
    }
}
