//! The cache core: turns OpenSSL's session events into store operations, whatever the
//! backend, and keeps the counters.
//!
//! Between a session and the store sit two things the core owns:
//! - the [`codec`]: `SSL_SESSION` → DER → the stored bytes, and back; the seam where
//!   sealing (AEAD) goes, so that no backend ever sees a session in clear;
//! - the [`front`]: decoded sessions of this process, filed under the stamp of the stored
//!   entry they came from, so that a hit costs a reference count instead of a
//!   `d2i_SSL_SESSION`, for every backend. The store asks the front, under its own lock,
//!   whether it holds the entry it found (`Store::get`'s `known`): a front object is only
//!   ever handed out for the exact entry the backend still holds.

pub mod codec;
pub mod front;
pub mod seal;
pub mod tickets;

use crate::clock::now;
use crate::config::{self, Backend, Common, Config};
use crate::error::Error;
use crate::log::Level;
use crate::session::{self, object_cost, SessionObject};
use crate::store::backends::Budget;
use crate::store::{self, Counters, Entry, SessionKey, Stats, Store, StoreError, Survey};
use codec::Codec;
use front::{Front, Located};
use openssl_sys::SSL_SESSION;
use std::sync::Arc;
use tickets::record::RecordSeal;
use tickets::Tickets;

/// What a lookup found, for [`Cache::deliver`] to count.
pub enum Lookup {
    /// The ID was empty or longer than 32 bytes: nothing was looked up.
    Invalid,
    /// The lookup ran: a session, or None (a miss, or a backend that failed).
    Done(Option<SessionObject>),
}

pub struct Cache {
    store: Arc<dyn Store>,
    front: Front,
    codec: Codec,
    common: Common,
    /// The front's bytes count in `stats().bytes` (`memory:`, where they share `max_bytes`).
    front_in_stats: bool,
    /// How ticket-key records are sealed (or checksummed) in this cache's backend.
    ticket_seal: Arc<RecordSeal>,
    /// `tickets=shared`: the shared ticket keys, refreshed in the background.
    tickets: Option<Tickets>,
}

/// What a configuration seals with: `key_file`'s keys, if any, and what names the cache (a
/// `redis` prefix, a `shm:` segment's name) as context.
fn sealing_for(cfg: &Config) -> Result<(Option<Arc<seal::Keys>>, Vec<u8>), Error> {
    let context: Vec<u8> = match &cfg.backend {
        Backend::Redis(r) => format!("redis:{}", r.prefix).into_bytes(),
        Backend::Shm { name, .. } => format!("shm:{name}").into_bytes(),
        Backend::Memory { .. } => b"memory:".to_vec(),
    };
    let keys = match &cfg.sealing.key_file {
        Some(path) => Some(Arc::new(seal::Keys::from_file(path)?)),
        None => None,
    };
    Ok((keys, context))
}

impl Cache {
    /// Opens the cache a URL describes.
    pub fn open(url: &str) -> Result<Cache, Error> {
        Cache::with_config(&config::parse(url)?)
    }

    /// Opens the cache a URL describes without creating anything: an existing `shm:`
    /// segment only (`Unavailable`, "no such segment", when there is none), with the same
    /// checks as [`Cache::open`]; `redis` as `open` does; `memory:` is refused (`State`):
    /// such a cache lives inside the process that made it. For tools that look at a cache
    /// from outside the servers using it.
    pub fn open_existing(url: &str) -> Result<Cache, Error> {
        Cache::build(&config::parse(url)?, true)
    }

    /// Empties the cache's store, wiping what it held: how many entries were removed. A
    /// backend that cannot be emptied from here is `Unavailable`.
    pub fn flush(&self) -> Result<u64, Error> {
        self.store.flush().map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Unavailable,
                format!("cannot empty the cache: {e}"),
            )
        })
    }

    /// The whole cache as a networked backend's server sees it (see [`Store::survey`]);
    /// None for a backend whose [`Cache::stats`] already covers the whole cache. Asks the
    /// server: for tools, never on a handshake's path.
    pub fn survey(&self) -> Result<Option<Survey>, Error> {
        self.store.survey().map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Unavailable,
                format!("cannot survey the cache: {e}"),
            )
        })
    }

    /// Opens the cache a configuration describes. A `memory:` cache's `max_bytes` is split
    /// evenly between the stored sessions and the front of decoded ones, so that it bounds
    /// both; the front of a cache kept elsewhere (`shm:`) has a fixed per-process budget.
    pub fn with_config(cfg: &Config) -> Result<Cache, Error> {
        Cache::build(cfg, false)
    }

    fn build(cfg: &Config, existing: bool) -> Result<Cache, Error> {
        let open = if existing {
            store::backends::open_existing
        } else {
            store::backends::open
        };
        let (keys, context) = sealing_for(cfg)?;
        let ticket_seal = Arc::new(RecordSeal::new(keys.clone(), &context));
        let codec = match keys {
            Some(keys) => Codec::Sealed {
                keys,
                context: context.into(),
            },
            None => Codec::plain(),
        };
        let max_value_bytes = cfg.common.max_session_bytes + codec.overhead();
        let (store, front, front_in_stats) = match &cfg.backend {
            Backend::Memory {
                capacity,
                max_bytes,
            } => {
                let front_bytes = max_bytes / 2;
                let budget = Budget {
                    memory_bytes: max_bytes - front_bytes,
                    max_value_bytes,
                };
                (open(cfg, budget)?, Front::new(*capacity, front_bytes), true)
            }
            _ => {
                let budget = Budget {
                    memory_bytes: 0,
                    max_value_bytes,
                };
                (open(cfg, budget)?, Front::default(), false)
            }
        };
        let store: Arc<dyn Store> = Arc::from(store);
        let tickets = (cfg.common.tickets == config::Tickets::Shared && !existing).then(|| {
            Tickets::start(
                store.clone(),
                ticket_seal.clone(),
                tickets::plan::Timing::new(cfg.common.ticket_rotate, cfg.common.ttl),
                !matches!(cfg.backend, Backend::Redis(_)),
            )
        });
        Ok(Cache {
            store,
            front,
            codec,
            common: cfg.common,
            front_in_stats,
            ticket_seal,
            tickets,
        })
    }

    /// The shared ticket keys (`tickets=shared`); None otherwise, and for a cache opened
    /// from outside its servers ([`Cache::open_existing`]).
    pub fn tickets(&self) -> Option<&Tickets> {
        self.tickets.as_ref()
    }

    /// The ticket-key generations the backend holds, for operators (`sesscache tickets`):
    /// never the keys.
    pub fn ticket_generations(&self) -> Result<Vec<tickets::Generation>, Error> {
        tickets::generations(&*self.store, &self.ticket_seal).map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Unavailable,
                format!("cannot read the ticket keys: {e}"),
            )
        })
    }

    /// Makes a new ticket-key generation (`sesscache tickets rotate`); with `revoke`, one
    /// that starts at once and revokes every older key. Returns its number.
    pub fn rotate_tickets(&self, revoke: bool) -> Result<u64, Error> {
        let t = tickets::plan::Timing::new(self.common.ticket_rotate, self.common.ttl);
        tickets::rotate(&*self.store, &self.ticket_seal, &t, now(), revoke).map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Unavailable,
                format!("cannot make a ticket key: {e}"),
            )
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
        let mut stats = Stats::of(&*self.store);
        if self.front_in_stats {
            stats.bytes += self.front.held_bytes() as u64;
        }
        stats
    }

    /// Stores a server session handed to a new-session callback. The caller keeps its own
    /// reference; the cache may take one more, for its front, so that when the session (a
    /// TLS 1.2 ID, a TLS 1.3 ticket) comes back to this process it is not decoded again.
    ///
    /// The front charges OpenSSL's live object an upper bound of what it holds: what its DER
    /// encodes ([`object_cost`], the same ~1 KiB that decoding the DER allocates without a
    /// client certificate) plus, after client authentication, the chain the client sent,
    /// which the live session keeps beside its peer certificate while `i2d_SSL_SESSION` does
    /// not encode it and `max_session_bytes` does not limit it (~170 KB of heap per session
    /// for the 77 KB chains of `c-tests/test_memory_bound.c`, against ~8 KB of DER):
    /// `peer_chain_cost` ([`session::peer_chain_cost`] of the connection). A session with a
    /// peer certificate whose chain cost is unknown (None) is stored as bytes only, and its
    /// first lookup decodes it (~0.3 ms for a P-256 client certificate here: the cost that
    /// made resumed TLS 1.3 with client certificates run at 0.34x to 0.66x OpenSSL's own
    /// cache when every ticket was decoded).
    ///
    /// # Safety
    /// `sess` is a live session for the duration of the call.
    // Never inlined, as `lookup_unless`: `make bench` counts its instructions by symbol.
    #[inline(never)]
    pub unsafe fn store_session(
        &self,
        sess: *mut SSL_SESSION,
        peer_chain_cost: Option<usize>,
    ) -> bool {
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
        let extra = if unsafe { session::has_peer(sess) } {
            peer_chain_cost
        } else {
            Some(0)
        };
        let object = extra.and_then(|extra| {
            // SAFETY: sess is live; we take our own reference.
            unsafe { SessionObject::retain(sess) }
                .map(|obj| (obj, object_cost(der.as_slice()).saturating_add(extra)))
        });
        let Some(bytes) = self.codec.seal(&key, der) else {
            Counters::bump(&self.counters().errors);
            return false;
        };
        let entry = Entry {
            bytes,
            expires_at,
            single_use: info.tls13 && self.common.single_use,
        };
        self.put(&key, entry, now, object)
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
        let Some(bytes) = self.codec.seal(&key, der.into()) else {
            Counters::bump(&self.counters().errors);
            return false;
        };
        let entry = Entry {
            bytes,
            expires_at,
            single_use,
        };
        self.put(&key, entry, now(), None)
    }

    /// Puts `entry` in the store and, once it is there, `object` (decoded or OpenSSL's own,
    /// with its cost) in the front under the new entry's stamp.
    fn put(
        &self,
        key: &SessionKey,
        entry: Entry,
        now: u64,
        object: Option<(SessionObject, usize)>,
    ) -> bool {
        let at = self.front.locate(key);
        match self.store.put(key, entry, now) {
            Ok(stamp) => {
                match object {
                    Some((obj, cost)) => self.front.insert(&at, stamp, obj, cost),
                    None => self.front.remove(&at),
                }
                true
            }
            Err(StoreError::TooLarge) => {
                Counters::bump(&self.counters().rejected);
                self.front.remove(&at);
                false
            }
            Err(StoreError::Expired) => false,
            Err(e) => {
                // Counted by the backend. What the store holds for the key is unknown now:
                // the front must not vouch for an older entry.
                self.front.remove(&at);
                crate::log!(Level::Debug, "store failed: {e}");
                false
            }
        }
    }

    /// Looks a session ID up for a get-session callback: a session the caller owns one
    /// reference to, or None. TLS 1.3 tickets stored single-use are consumed. A backend
    /// that fails (down, timed out, corrupt) is a miss; it counts the error.
    pub fn lookup(&self, id: &[u8]) -> Option<SessionObject> {
        self.lookup_unless(id, |_| false)
    }

    /// [`Cache::lookup`], with a session found refused when `wrong_name` says it was made
    /// for another server name than the connection asks for: then a miss, also counted in
    /// `sni_refused`, and the reference dropped. What the lookup did to the store stands (a
    /// single-use TLS 1.3 ticket is consumed: a client presents a ticket in one handshake
    /// only; the get callback keeps what it consumed for a second ClientHello of that
    /// handshake, after a HelloRetryRequest).
    // Never inlined: `make bench` counts the instructions of a lookup by this symbol
    // (callgrind); one call per handshake costs nothing measurable.
    #[inline(never)]
    pub fn lookup_unless(
        &self,
        id: &[u8],
        wrong_name: impl FnOnce(&SessionObject) -> bool,
    ) -> Option<SessionObject> {
        let found = match SessionKey::new(id) {
            Some(key) => Lookup::Done(self.resolve(&key)),
            None => Lookup::Invalid,
        };
        self.deliver(found, wrong_name)
    }

    /// Counts a lookup's outcome and hands its session over unless `wrong_name` refuses it
    /// (see [`Cache::lookup_unless`]), whichever path found it: the caller's thread, or an
    /// asynchronous lookup that finished before the handshake asked (`crate::suspend`).
    pub fn deliver(
        &self,
        found: Lookup,
        wrong_name: impl FnOnce(&SessionObject) -> bool,
    ) -> Option<SessionObject> {
        let c = self.counters();
        Counters::bump(&c.lookups);
        let found = match found {
            Lookup::Done(found) => found,
            Lookup::Invalid => {
                Counters::bump(&c.rejected);
                None
            }
        };
        let found = match found {
            Some(obj) if wrong_name(&obj) => {
                Counters::bump(&c.sni_refused);
                None
            }
            other => other,
        };
        Counters::bump(if found.is_some() { &c.hits } else { &c.misses });
        found
    }

    /// Looks `key` up and decodes what it finds, without counting the lookup (see
    /// [`Cache::deliver`]): a session the caller owns one reference to, or None. May wait
    /// for a server, within the backend's time budget.
    pub fn resolve(&self, key: &SessionKey) -> Option<SessionObject> {
        self.resolve_with(key, false).flatten()
    }

    /// [`Cache::resolve`] if the backend can answer without a server round trip
    /// ([`Store::get_now`]); None (nothing done) when it cannot.
    pub fn resolve_now(&self, key: &SessionKey) -> Option<Option<SessionObject>> {
        self.resolve_with(key, true)
    }

    fn resolve_with(&self, key: &SessionKey, now_only: bool) -> Option<Option<SessionObject>> {
        let now = now();
        let at = self.front.locate(key);
        let mut held = None;
        let mut known = |stamp| {
            held = self.front.get(&at, stamp);
            held.is_some()
        };
        let found = if now_only {
            self.store.get_now(key, now, &mut known)?
        } else {
            self.store.get(key, now, &mut known)
        };
        Some(self.open_found(key, &at, found, held))
    }

    /// [`Cache::resolve`] of several keys at once, a result for each in order: what waits
    /// for a server is asked in one round trip ([`Store::get_many`]). For the workers of
    /// asynchronous lookups, which batch the lookups queued while they were busy.
    pub fn resolve_many(&self, keys: &[SessionKey]) -> Vec<Option<SessionObject>> {
        let now = now();
        let at: Vec<Located> = keys.iter().map(|k| self.front.locate(k)).collect();
        let mut held: Vec<Option<SessionObject>> = keys.iter().map(|_| None).collect();
        let found = self.store.get_many(keys, now, &mut |i, stamp| {
            held[i] = self.front.get(&at[i], stamp);
            held[i].is_some()
        });
        found
            .into_iter()
            .zip(held)
            .enumerate()
            .map(|(i, (found, held))| self.open_found(&keys[i], &at[i], found, held))
            .collect()
    }

    /// What the store found for `key`, as a session: the front's object when `held` (the
    /// store's `known` said so), else the bytes opened and decoded (and filed in the front
    /// unless the entry was consumed). A failure, or bytes that do not decode to `key`, are
    /// a miss.
    fn open_found(
        &self,
        key: &SessionKey,
        at: &Located,
        found: Result<Option<store::Found>, StoreError>,
        held: Option<SessionObject>,
    ) -> Option<SessionObject> {
        let found = match found {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                crate::log!(Level::Debug, "lookup failed: {e}");
                return None;
            }
        };
        let obj = match found.bytes {
            None => held?,
            Some(bytes) => match self.codec.open(key, bytes) {
                Some(der) => match session::decode_matching(key.as_bytes(), der.as_slice()) {
                    Some(obj) => {
                        if !found.consumed {
                            let cost = object_cost(der.as_slice());
                            self.front.insert(at, found.stamp, obj.clone(), cost);
                        }
                        obj
                    }
                    None => return self.drop_corrupt(key),
                },
                None => return self.drop_corrupt(key),
            },
        };
        if found.consumed {
            self.front.remove(at);
        }
        if !obj.is_resumable() {
            // OpenSSL removed this session (and marked it) but our remove callback has not
            // run yet, or ran on another context: it would be refused anyway.
            self.remove(key.as_bytes());
            return None;
        }
        Some(obj)
    }

    /// Stored bytes that do not open or decode to the ID they were filed under: counted,
    /// said, removed.
    fn drop_corrupt(&self, key: &SessionKey) -> Option<SessionObject> {
        Counters::bump(&self.counters().errors);
        crate::log!(
            Level::Warn,
            "error: stored session id#{:08x} does not decode to that ID; dropped",
            crate::log::fingerprint(key.as_bytes())
        );
        self.remove(key.as_bytes());
        None
    }

    /// Forgets a session ID (remove-session callback). Invalid IDs are ignored.
    pub fn remove(&self, id: &[u8]) {
        if let Some(key) = SessionKey::new(id) {
            self.front.remove(&self.front.locate(&key));
            if let Err(e) = self.store.remove(&key) {
                crate::log!(Level::Debug, "remove failed: {e}");
            }
        }
    }

    /// Lets go of the live object the front holds for `id`, keeping the stored entry: for a
    /// session OpenSSL marked not resumable (its remove path marks the object itself) that
    /// the cache keeps all the same. The next lookup decodes the stored bytes into a fresh
    /// object, which the mark is not part of.
    pub fn release_object(&self, id: &[u8]) {
        if let Some(key) = SessionKey::new(id) {
            self.front.remove(&self.front.locate(&key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sessions::{master_key, tls12_der as real_der};

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

    /// A session without a peer certificate goes into the front as OpenSSL's own object; so
    /// does one with a peer certificate when the cost of the client's chain is known, else
    /// it is stored as bytes, decoded by the first lookup and kept decoded after it.
    /// `memory:` counts the front's bytes in its statistics.
    #[test]
    fn objects_kept_for_sessions_with_and_without_a_peer() {
        use crate::session::cost::tests::with_client_cert;
        let cache = Cache::open("memory:").unwrap();
        let id = [0x11u8; 32];
        let live = session::decode(&real_der(&id, 1)).unwrap();
        assert!(!live.has_peer());
        // SAFETY: live holds a reference.
        assert!(unsafe { cache.store_session(live.as_ptr(), None) });
        let hit = cache.lookup(&id).unwrap();
        assert_eq!(hit.as_ptr(), live.as_ptr(), "the object itself");

        let id = [0x22u8; 32];
        let with_peer = session::decode(&with_client_cert(&real_der(&id, 2), 3)).unwrap();
        assert!(with_peer.has_peer());
        // SAFETY: with_peer holds a reference.
        assert!(unsafe { cache.store_session(with_peer.as_ptr(), None) });
        let first = cache.lookup(&id).unwrap();
        assert_ne!(first.as_ptr(), with_peer.as_ptr(), "decoded from the bytes");
        assert!(first.has_peer());
        assert_eq!(master_key(&first), 2);
        let second = cache.lookup(&id).unwrap();
        assert_eq!(second.as_ptr(), first.as_ptr(), "kept decoded");
        let s = cache.stats();
        assert_eq!((s.stores, s.hits, s.entries), (2, 3, 2));
        let stored = |obj: &SessionObject| {
            // SAFETY: obj holds a reference.
            unsafe { session::encode(obj.as_ptr()) }.unwrap().len()
                + crate::store::memory::ENTRY_OVERHEAD
        };
        let front = |obj: &SessionObject| obj.cost().unwrap();
        assert_eq!(
            s.bytes as usize,
            stored(&live) + stored(&first) + front(&live) + front(&first)
        );

        // With the cost of the client's chain known (what the new-session callback measures
        // on the connection), the live object goes into the front at once, charged that too.
        let id = [0x33u8; 32];
        let issued = session::decode(&with_client_cert(&real_der(&id, 4), 5)).unwrap();
        // SAFETY: issued holds a reference.
        assert!(unsafe { cache.store_session(issued.as_ptr(), Some(5000)) });
        let hit = cache.lookup(&id).unwrap();
        assert_eq!(
            hit.as_ptr(),
            issued.as_ptr(),
            "the issuing process's own object"
        );
        assert_eq!(
            cache.stats().bytes as usize,
            s.bytes as usize + stored(&issued) + front(&issued) + 5000
        );
    }

    /// A shm segment name unique to this test, removed at the end.
    struct ShmName(String);
    impl ShmName {
        fn new(what: &str) -> ShmName {
            ShmName(format!("cache-test-{what}-{}", std::process::id()))
        }
    }
    impl Drop for ShmName {
        fn drop(&mut self) {
            crate::store::shm::segment::unlink(&self.0);
        }
    }

    #[test]
    fn open_existing_creates_nothing_and_refuses_memory() {
        let err = Cache::open_existing("memory:").err().unwrap();
        assert_eq!(err.kind, crate::error::ErrorKind::State);
        let n = ShmName::new("existing");
        let url = format!("shm:{}?size=256K", n.0);
        let err = Cache::open_existing(&url).err().unwrap();
        assert_eq!(err.kind, crate::error::ErrorKind::Unavailable);
        assert!(!std::path::Path::new(&format!("/dev/shm/sesscache-{}", n.0)).exists());
        let a = Cache::open(&url).unwrap();
        let id = [3u8; 32];
        assert!(a.store_der(&id, &real_der(&id, 1), now() + 100, false));
        let b = Cache::open_existing(&format!("shm:{}", n.0)).unwrap();
        assert_eq!(b.stats().entries, 1);
        assert_eq!(b.flush().unwrap(), 1);
        assert!(a.lookup(&id).is_none());
        assert!(Cache::open("memory:").unwrap().flush().is_err());
    }

    /// OpenSSL marks the object of a session it removes not resumable; a session the cache
    /// keeps all the same (a peer that hung up) resumes from its stored bytes once the front
    /// lets the marked object go.
    /// A session refused for its name is a miss counted in `sni_refused`; a TLS 1.2 entry
    /// stays for the connections that ask for its name.
    #[test]
    fn a_session_refused_for_its_name_is_a_miss() {
        let cache = Cache::open("memory:").unwrap();
        let id = [0x46u8; 32];
        let live = session::decode(&real_der(&id, 3)).unwrap();
        // SAFETY: live holds a reference.
        assert!(unsafe { cache.store_session(live.as_ptr(), None) });
        let mut seen = None;
        let refused = cache.lookup_unless(&id, |obj| {
            seen = Some(obj.as_ptr());
            true
        });
        assert!(refused.is_none());
        assert_eq!(
            seen,
            Some(live.as_ptr()),
            "the check sees the session found"
        );
        let s = cache.stats();
        assert_eq!((s.lookups, s.hits, s.misses, s.sni_refused), (1, 0, 1, 1));
        let hit = cache.lookup_unless(&id, |_| false).expect("kept");
        assert_eq!(hit.as_ptr(), live.as_ptr());
        // Nothing found: the check is not asked.
        assert!(cache
            .lookup_unless(&[0x47; 32], |_| panic!("asked"))
            .is_none());
        let s = cache.stats();
        assert_eq!((s.lookups, s.hits, s.misses, s.sni_refused), (3, 1, 2, 1));
        assert_eq!(s.events()[13], 1, "sni_refused is the last event");
        assert_eq!(Stats::EVENT_NAMES[13], "sni_refused");
    }

    #[test]
    fn a_released_object_resumes_from_the_stored_bytes() {
        let cache = Cache::open("memory:").unwrap();
        let id = [0x44u8; 32];
        let live = session::decode(&real_der(&id, 6)).unwrap();
        // SAFETY: live holds a reference.
        assert!(unsafe { cache.store_session(live.as_ptr(), None) });
        assert_eq!(cache.lookup(&id).unwrap().as_ptr(), live.as_ptr());
        // What OpenSSL's remove path does to the object: SSL_CTX_remove_session marks it
        // not resumable even when no internal cache holds it.
        // SAFETY: test-only OpenSSL calls on a context made and freed here; live is live.
        unsafe {
            let ctx = openssl_sys::SSL_CTX_new(openssl_sys::TLS_method());
            openssl_sys::SSL_CTX_remove_session(ctx, live.as_ptr());
            openssl_sys::SSL_CTX_free(ctx);
        }
        assert!(!live.is_resumable());
        cache.release_object(&id);
        let hit = cache.lookup(&id).expect("decoded from the stored bytes");
        assert_ne!(hit.as_ptr(), live.as_ptr());
        assert!(hit.is_resumable());
        assert_eq!(master_key(&hit), 6);
        // Without the release, the marked object would answer and be refused: a miss.
        let id = [0x55u8; 32];
        let live = session::decode(&real_der(&id, 7)).unwrap();
        // SAFETY: as above.
        unsafe {
            assert!(cache.store_session(live.as_ptr(), None));
            let ctx = openssl_sys::SSL_CTX_new(openssl_sys::TLS_method());
            openssl_sys::SSL_CTX_remove_session(ctx, live.as_ptr());
            openssl_sys::SSL_CTX_free(ctx);
        }
        assert!(cache.lookup(&id).is_none());
    }

    /// Two caches on one segment stand for two processes, each with its front of decoded
    /// sessions: when one replaces a session, the other must see the new one, not the
    /// object it decoded before; when one removes it, the other misses.
    #[test]
    fn the_front_follows_the_store() {
        let n = ShmName::new("front");
        let url = format!("shm:{}?size=256K", n.0);
        let a = Cache::open(&url).unwrap();
        let b = Cache::open(&url).unwrap();
        let id = [9u8; 32];
        assert!(a.store_der(&id, &real_der(&id, 1), now() + 100, false));
        let first = b.lookup(&id).unwrap();
        assert_eq!(master_key(&first), 1);
        let again = b.lookup(&id).unwrap();
        assert_eq!(again.as_ptr(), first.as_ptr(), "from b's front");
        assert!(a.store_der(&id, &real_der(&id, 2), now() + 100, false));
        assert_eq!(master_key(&b.lookup(&id).unwrap()), 2);
        a.remove(&id);
        assert!(b.lookup(&id).is_none());
    }

    /// Sessions are only ever handed out for the ID they were stored under, even if bytes
    /// land under another key (the ID inside the DER is checked), whatever the backend.
    #[test]
    fn a_session_filed_under_another_id_is_a_miss() {
        crate::log::silence();
        let n = ShmName::new("misfiled");
        for url in ["memory:".to_string(), format!("shm:{}?size=256K", n.0)] {
            let cache = Cache::open(&url).unwrap();
            let real = real_der(&[7u8; 32], 3);
            assert!(cache.store_der(&[8u8; 32], &real, now() + 100, false));
            assert!(cache.lookup(&[8u8; 32]).is_none(), "{url}");
            assert_eq!(cache.stats().errors, 1, "{url}");
            assert!(cache.store_der(&[7u8; 32], &real, now() + 100, false));
            assert_eq!(master_key(&cache.lookup(&[7u8; 32]).unwrap()), 3, "{url}");
        }
    }

    /// A private key file for the sealing tests, removed when dropped.
    struct KeyFile(std::path::PathBuf);
    impl KeyFile {
        fn new(what: &str, keys: &[&str]) -> KeyFile {
            use std::os::unix::fs::OpenOptionsExt;
            let path = std::env::temp_dir()
                .join(format!("sesscache-test-keys-{what}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, keys.join("\n").as_bytes()).unwrap();
            KeyFile(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for KeyFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const KEY_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    /// With `key_file`, the shared segment holds no session in clear; another cache on the
    /// same segment without the key finds only misses (counted), and rotation keeps old
    /// sessions resuming.
    #[test]
    fn sealed_segments_hold_no_session_in_clear() {
        crate::log::silence();
        let n = ShmName::new("sealed");
        let a_keys = KeyFile::new("a", &[KEY_A]);
        let b_keys = KeyFile::new("b", &[KEY_B]);
        let rotated = KeyFile::new("rot", &[KEY_B, KEY_A]);
        let url = |k: &KeyFile| format!("shm:{}?size=256K&key_file={}", n.0, k.path());
        let sealed = Cache::open(&url(&a_keys)).unwrap();
        let id = [0x44u8; 32];
        let der = real_der(&id, 7);
        assert!(sealed.store_der(&id, &der, now() + 100, false));
        // The master key is 48 bytes of 7: not a run of 16 of them anywhere in the segment
        // (the session ID is not secret, and is in the index in clear).
        let master = [7u8; 16];
        let holds_master = |segment: &str| {
            let bytes = std::fs::read(format!("/dev/shm/sesscache-{segment}")).unwrap();
            bytes.windows(master.len()).any(|w| w == master)
        };
        assert!(
            !holds_master(&n.0),
            "the master key is in the segment in clear"
        );
        // (Where the check would see it: the same session in a segment without key_file.)
        let clear = ShmName::new("clear");
        let plain_cache = Cache::open(&format!("shm:{}?size=256K", clear.0)).unwrap();
        assert!(plain_cache.store_der(&id, &der, now() + 100, false));
        assert!(holds_master(&clear.0));
        assert_eq!(master_key(&sealed.lookup(&id).unwrap()), 7);
        // Another key: a miss and an error, never a session.
        let other = Cache::open(&url(&b_keys)).unwrap();
        assert!(other.lookup(&id).is_none());
        assert!(other.stats().errors >= 1);
        // Plain: the sealed bytes do not decode either.
        let plain = Cache::open(&format!("shm:{}", n.0)).unwrap();
        let id2 = [0x45u8; 32];
        assert!(sealed.store_der(&id2, &real_der(&id2, 8), now() + 100, false));
        assert!(plain.lookup(&id2).is_none());
        // Rotation: the new key first, the old one still opens.
        let id3 = [0x46u8; 32];
        assert!(sealed.store_der(&id3, &real_der(&id3, 9), now() + 100, false));
        let after = Cache::open(&url(&rotated)).unwrap();
        assert_eq!(master_key(&after.lookup(&id3).unwrap()), 9);
        // A key file others may read is refused.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&a_keys.0, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Cache::open(&url(&a_keys)).err().unwrap();
        assert_eq!(err.kind, crate::error::ErrorKind::Permission);
    }

    /// A single-use entry resumes once, from the front or not.
    #[test]
    fn single_use_sessions_resume_once() {
        let cache = Cache::open("memory:").unwrap();
        let id = [0x33u8; 32];
        let live = session::decode(&real_der(&id, 4)).unwrap();
        // Filed single-use, with OpenSSL's object in the front.
        let entry = Entry {
            bytes: real_der(&id, 4).into(),
            expires_at: now() + 100,
            single_use: true,
        };
        let key = SessionKey::new(&id).unwrap();
        let cost = object_cost(&real_der(&id, 4));
        assert!(cache.put(&key, entry, now(), Some((live.clone(), cost))));
        assert_eq!(cache.lookup(&id).unwrap().as_ptr(), live.as_ptr());
        assert!(cache.lookup(&id).is_none(), "consumed");
        assert_eq!(cache.front.held_bytes(), 0, "and gone from the front");
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
