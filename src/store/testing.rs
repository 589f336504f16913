//! Helpers shared by the backends' tests: every backend must behave like the same model.

use super::{Hit, SecretBytes, SessionKey, Store, Value};
use proptest::prelude::*;
use std::collections::HashMap;

pub fn key(n: u32) -> SessionKey {
    let mut id = [0x5au8; 32];
    id[..4].copy_from_slice(&n.to_le_bytes());
    SessionKey::new(&id).unwrap()
}

pub fn value(der: &[u8], expires_at: u64, single_use: bool) -> Value {
    Value {
        der: SecretBytes::from(der.to_vec()),
        expires_at,
        single_use,
        object: None,
    }
}

/// The DER of a hit (these tests store no decoded objects).
pub fn der(hit: Option<Hit>) -> Option<Vec<u8>> {
    match hit? {
        Hit::Der(d) => Some(d.as_slice().to_vec()),
        Hit::Object(_) => panic!("the tests store DER only"),
    }
}

/// Operations for the model: (op, key, value byte).
pub fn ops() -> impl Strategy<Value = Vec<(u8, u32, u8)>> {
    proptest::collection::vec((0u8..4, 0u32..12, proptest::num::u8::ANY), 1..200)
}

/// Without eviction pressure a store is exactly a map whose single-use entries vanish on
/// their first lookup; its occupancy follows the model (bytes: the DER held).
pub fn behaves_like_a_map(s: &dyn Store, ops: &[(u8, u32, u8)]) -> Result<(), TestCaseError> {
    behaves_like_a_charged_map(s, ops, 0)
}

/// The same, for a store that charges each entry `overhead` bytes on top of its DER.
pub fn behaves_like_a_charged_map(
    s: &dyn Store,
    ops: &[(u8, u32, u8)],
    overhead: usize,
) -> Result<(), TestCaseError> {
    let mut model: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
    for &(op, k, v) in ops {
        let now = crate::clock::now();
        match op {
            0 => {
                let single = v % 3 == 0;
                let d = vec![v; 1 + v as usize % 50];
                s.put(&key(k), value(&d, now + 100, single), now).unwrap();
                model.insert(k, (d, single));
            }
            1 => {
                let want = model.get(&k).cloned();
                if want.as_ref().is_some_and(|w| w.1) {
                    model.remove(&k);
                }
                prop_assert_eq!(der(s.get(&key(k), now)), want.map(|w| w.0));
            }
            2 => prop_assert_eq!(der(s.take(&key(k), now)), model.remove(&k).map(|w| w.0)),
            _ => prop_assert_eq!(s.remove(&key(k)), model.remove(&k).is_some()),
        }
        let bytes: usize = model.values().map(|w| w.0.len() + overhead).sum();
        prop_assert_eq!(s.occupancy(), (model.len() as u64, bytes as u64));
    }
    Ok(())
}

/// The DER of a real (decodable) TLS 1.2 server session with this ID and master key, and
/// no peer certificate.
pub use crate::test_sessions::tls12_der as real_der;

/// The first byte of a session's master key (the tests' way of telling sessions apart).
pub fn master_key(obj: &crate::session::SessionObject) -> u8 {
    let mut key = [0u8; 48];
    // SAFETY: obj is a live session; key has room for 48 bytes.
    let n = unsafe { openssl_sys::SSL_SESSION_get_master_key(obj.as_ptr(), key.as_mut_ptr(), 48) };
    assert_eq!(n, 48);
    key[0]
}
