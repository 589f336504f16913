//! Helpers shared by the backends' tests: every backend must behave like the same model.

use super::{Entry, Found, SessionKey, Store};
use crate::secret::SecretBytes;
use proptest::prelude::*;
use std::collections::HashMap;

pub fn key(n: u32) -> SessionKey {
    let mut id = [0x5au8; 32];
    id[..4].copy_from_slice(&n.to_le_bytes());
    SessionKey::new(&id).unwrap()
}

pub fn value(bytes: &[u8], expires_at: u64, single_use: bool) -> Entry {
    Entry {
        bytes: SecretBytes::from(bytes.to_vec()),
        expires_at,
        single_use,
    }
}

/// The bytes a lookup that knows nothing returns; an error counts as a miss here (tests
/// that care about errors call `Store::get` themselves).
pub fn get(s: &dyn Store, k: &SessionKey, now: u64) -> Option<Vec<u8>> {
    bytes(s.get(k, now, &mut |_| false).ok().flatten())
}

/// The bytes of a lookup's result.
pub fn bytes(found: Option<Found>) -> Option<Vec<u8>> {
    Some(found?.bytes.expect("nothing is known").as_slice().to_vec())
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
                prop_assert_eq!(get(s, &key(k), now), want.map(|w| w.0));
            }
            2 => prop_assert_eq!(
                s.take(&key(k), now).unwrap().map(|b| b.as_slice().to_vec()),
                model.remove(&k).map(|w| w.0)
            ),
            _ => prop_assert_eq!(s.remove(&key(k)).unwrap(), model.remove(&k).is_some()),
        }
        let bytes: usize = model.values().map(|w| w.0.len() + overhead).sum();
        prop_assert_eq!(s.occupancy(), (model.len() as u64, bytes as u64));
    }
    Ok(())
}
