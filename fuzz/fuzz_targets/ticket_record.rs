//! Fuzz target `ticket_record`: arbitrary bytes as a ticket-key record read from a backend
//! (`tickets=shared`). The first byte picks what is fuzzed: 0, the plain record layout
//! (`TicketKey::decode`, reached in production only after a record opened); 1, a record
//! opened with its checksum (`shm:` and `memory:` without a key file); 2, a record opened
//! with a key file (AES-256-GCM). The next 8 bytes are the record's number.
//!
//! What a backend returns is untrusted (anyone who can write to Redis, a damaged segment):
//! beyond "never panics", it asserts that whatever decodes has its windows in order and is
//! not the process-local number, and that what opens names the number it was stored under.
//! Forging a checksum or a seal is not expected of the fuzzer: those paths check that
//! nothing but a genuine record opens.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesscache::cache::seal::Keys;
use sesscache::cache::tickets::key::TicketKey;
use sesscache::cache::tickets::record::RecordSeal;
use std::sync::{Arc, OnceLock};

const KEY_FILE: &[u8] = b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

fn seals() -> &'static (RecordSeal, RecordSeal) {
    static SEALS: OnceLock<(RecordSeal, RecordSeal)> = OnceLock::new();
    SEALS.get_or_init(|| {
        let keys = Keys::parse(KEY_FILE).expect("one key");
        (
            RecordSeal::new(None, b"shm:fuzz"),
            RecordSeal::new(Some(Arc::new(keys)), b"redis:sesscache:"),
        )
    })
}

fn check(key: &TicketKey, seq: Option<u64>) {
    assert!(key.enc_from < key.enc_until && key.enc_until <= key.decrypt_until);
    assert!(!key.is_local());
    if let Some(seq) = seq {
        assert_eq!(key.seq, seq);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 3 == 0 {
        if let Some(key) = TicketKey::decode(rest) {
            check(&key, None);
            // What decodes encodes back to the same bytes.
            assert_eq!(key.encode().as_slice(), rest);
        }
        return;
    }
    if rest.len() < 8 {
        return;
    }
    let (seq, record) = rest.split_at(8);
    let seq = u64::from_be_bytes(seq.try_into().expect("8 bytes"));
    let (checksummed, sealed) = seals();
    let seal = if mode % 3 == 1 { checksummed } else { sealed };
    if let Ok(key) = seal.open(seq, record) {
        check(&key, Some(seq));
    }
});
