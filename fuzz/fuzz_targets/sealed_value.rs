//! Fuzz target `sealed_value`: arbitrary bytes as a value fetched from Redis, split into
//! its flags byte and entry bytes (`store::redis::fuzz_split`, the backend's own split) and
//! opened by the cache core's codec (`Codec::Sealed::open`: version, key ID, AES-256-GCM
//! under the cache's prefix and the session ID) with a fixed key file of two keys.
//!
//! What a Redis server (or anyone who can write to it) returns is untrusted: beyond "never
//! panics", it asserts that only the one genuine sealed value, [`GENUINE`], opens, only
//! under the ID it was sealed for, and to its own plaintext. The seed corpus holds it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesscache::cache::codec::Codec;
use sesscache::cache::seal::Keys;
use sesscache::store::SessionKey;
use std::sync::{Arc, OnceLock};

/// The second key of the file: [`GENUINE`] was sealed under it (the first seals new values,
/// every key opens).
const KEY_FILE: &[u8] = b"ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n\
                          000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
/// A Redis value (flags 0, then the sealed bytes) of [`PLAIN`] sealed under the second key
/// of [`KEY_FILE`], the prefix `sesscache:` and the ID [`ID`]; also
/// `fuzz/corpus/sealed_value/genuine`.
const GENUINE: &str = "0001630dcd290ce5608f783ad0d8b7a8c232574fc78ffde97ce4c6ca58d6cbdc94b173e8\
                       8528e0620373f8e4d8af7d7fda81986267587656e3793630ce9644940d81c22de9f9ee93\
                       116f712b417b3fac051cc0704f6c89";
const PLAIN: &[u8] = b"a session's DER would be here: sealed-value fuzz seed";
const ID: [u8; 32] = [0x42; 32];

struct Fixed {
    codec: Codec,
    genuine: Vec<u8>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let keys = Keys::parse(KEY_FILE).expect("two keys");
        let genuine = (0..GENUINE.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GENUINE[i..i + 2], 16).expect("hex"))
            .collect();
        Fixed {
            codec: Codec::Sealed {
                keys: Arc::new(keys),
                context: b"sesscache:".to_vec().into(),
            },
            genuine,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let Some((_flags, bytes)) = sesscache::store::redis::fuzz_split(data) else {
        assert!(data.is_empty(), "only an empty value has no flags byte");
        return;
    };
    let id = SessionKey::new(&ID).expect("a 32-byte ID");
    let mut other = ID;
    other[31] ^= 1;
    let other = SessionKey::new(&other).expect("a 32-byte ID");
    let genuine = data[1..] == f.genuine[1..];
    match f.codec.open(&id, bytes.clone()) {
        Some(plain) => {
            assert!(genuine, "a value that is not the genuine one opened");
            assert_eq!(plain.as_slice(), PLAIN);
        }
        None => assert!(!genuine, "the genuine value did not open"),
    }
    assert!(
        f.codec.open(&other, bytes).is_none(),
        "a value opened under another ID"
    );
});
