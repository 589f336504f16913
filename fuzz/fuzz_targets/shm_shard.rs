//! Fuzz target `shm_shard`: arbitrary bytes written over a real `shm:` segment's shard
//! (its header, index or ring: what a crashed or hostile process sharing the segment could
//! leave there), then every operation of the store on it.
//!
//! One small segment (64 KiB: one shard) is created once under a name of its own in
//! /dev/shm and unlinked at once (the mapping stays), then emptied before each input.
//!
//! Input: byte 0: how many entries to store first (0 to 15; key `k` holds `value(k)`, of
//! `40 + 61 k` bytes, every other one single-use); byte 1: where to write (0 the shard
//! header after its lock word, 1 the index, 2 the ring, other values anywhere after the
//! lock word); bytes 2-3: the offset there (little-endian, modulo the region's length);
//! the rest: the bytes written.
//!
//! Then: lookups of every key (and two never stored), a store, a take, removals, an
//! occupancy count, a sweep and a flush. Beyond "never panics" (no index or ring position
//! read from the segment may be used unchecked), it asserts that a hit returns exactly the
//! value stored under that key: damage is a miss, never damaged bytes or another key's
//! value (the checksum and the keyed tag make an entry impossible to forge blind).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesscache::secret::SecretBytes;
use sesscache::store::shm::lock::Timing;
use sesscache::store::shm::segment::Segment;
use sesscache::store::shm::ShmStore;
use sesscache::store::{Entry, SessionKey, Store};
use std::sync::OnceLock;
use std::time::Duration;

/// The segment every input reuses (unlinked: only this process has it).
fn store() -> &'static ShmStore {
    static STORE: OnceLock<ShmStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let name = format!("fuzz-{}", std::process::id());
        let mut s = ShmStore::open(&name, Some(64 << 10), 0o600, 2048).expect("a test segment");
        // The mapping stays; the name goes at once, so that no run leaves a segment behind.
        let _ = std::fs::remove_file(Segment::path(&name));
        // The lock word is never written by this target; short bounds all the same.
        s.set_timing(Timing {
            budget: Duration::from_millis(2),
            steal_after: Duration::from_millis(10),
        });
        s
    })
}

fn key(k: u8) -> SessionKey {
    let mut id = [0xC3u8; 32];
    id[0] = k;
    SessionKey::new(&id).expect("a 32-byte ID")
}

/// The value stored under key `k`: its length and every byte depend on `k`.
fn value(k: u8) -> Vec<u8> {
    (0..40 + 61 * usize::from(k))
        .map(|i| (i as u8).wrapping_mul(31) ^ k)
        .collect()
}

fn entry(bytes: &[u8], now: u64, single_use: bool) -> Entry {
    Entry {
        bytes: SecretBytes::from(bytes),
        expires_at: now + 300,
        single_use,
    }
}

/// A hit must be `value(k)`, exactly.
fn check(k: u8, got: Option<&[u8]>) {
    if let Some(got) = got {
        assert_eq!(got, &value(k)[..], "a wrong value for key {k}");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let s = store();
    s.fuzz_clear();
    let now = sesscache::clock::now();
    let stored = data[0] % 16;
    for k in 0..stored {
        let _ = s.put(&key(k), entry(&value(k), now, k % 2 == 1), now);
    }
    let offset = usize::from(u16::from_le_bytes([data[2], data[3]]));
    s.fuzz_overwrite(data[1], offset, &data[4..]);

    for k in 0..stored + 2 {
        let got = s.get(&key(k), now, &mut |_| false);
        check(
            k,
            got.ok()
                .flatten()
                .and_then(|f| f.bytes)
                .as_ref()
                .map(|b| b.as_slice()),
        );
    }
    let _ = s.put(&key(20), entry(&value(20), now, false), now);
    let got = s.take(&key(20), now);
    check(20, got.ok().flatten().as_ref().map(|b| b.as_slice()));
    let _ = s.remove(&key(0));
    let _ = s.remove(&key(stored / 2));
    let got = s.get(&key(1), now, &mut |_| false);
    check(
        1,
        got.ok()
            .flatten()
            .and_then(|f| f.bytes)
            .as_ref()
            .map(|b| b.as_slice()),
    );
    let _ = s.occupancy();
    s.sweep_all();
    let _ = s.flush();
});
