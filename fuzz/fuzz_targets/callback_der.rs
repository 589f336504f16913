//! Fuzz target `callback_der`: what the session callbacks do with an arbitrary session ID
//! (0 to 40 bytes: OpenSSL's IDs are 1 to 32, anything else is refused) and arbitrary bytes
//! stored as its DER: `Cache::store_der` into a `memory:` cache, then `Cache::lookup` of
//! that ID and of another one, as the get-session callback would, so the stored bytes go
//! through `session::decode_matching` (OpenSSL's `d2i_SSL_SESSION`) and the cache core's
//! front of decoded sessions.
//!
//! Input: byte 0: the ID's length (modulo 41) and, in its top bit, whether the entry is
//! single-use; then the ID; the rest is the DER. Beyond "never panics", it asserts
//! `decode_matching`'s contract: a session returned for an ID has that ID (bytes filed
//! under one ID never resume another session), for the stored ID and for the other one
//! (never stored: bytes under one ID must not come back under another). The seed corpus
//! holds real session DER (`openssl s_client -sess_out` against `openssl s_server`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesscache::cache::Cache;
use sesscache::session::{info, SessionObject};
use std::sync::OnceLock;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache::open("memory:?capacity=64&max_bytes=4M").expect("a memory: cache"))
}

/// The ID of a session the cache returned.
fn id_of(obj: &SessionObject) -> Vec<u8> {
    // SAFETY: `obj` holds a reference, so the session lives while its ID is copied.
    unsafe { info(obj.as_ptr()) }.id.to_vec()
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let id_len = usize::from(head & 0x7f) % 41;
    if rest.len() < id_len {
        return;
    }
    let (id, der) = rest.split_at(id_len);
    let c = cache();
    let expires = sesscache::clock::now() + 300;
    c.store_der(id, der, expires, head & 0x80 != 0);
    if let Some(obj) = c.lookup(id) {
        assert_eq!(id_of(&obj), id, "a lookup returned a session of another ID");
    }
    let mut other = id.to_vec();
    match other.last_mut() {
        Some(b) => *b ^= 0x5a,
        None => other.push(0x5a),
    }
    if let Some(obj) = c.lookup(&other) {
        assert_eq!(
            id_of(&obj),
            other,
            "a lookup returned a session of another ID"
        );
    }
    c.remove(id);
});
