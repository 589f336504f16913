//! Test support: real OpenSSL sessions made without a handshake, for tests that need
//! something `i2d_SSL_SESSION` encodes and `d2i_SSL_SESSION` decodes.

use openssl_sys::{SSL_CIPHER, SSL_SESSION};
use std::os::raw::c_long;

extern "C" {
    fn SSL_SESSION_new() -> *mut SSL_SESSION;
    fn SSL_SESSION_set1_id(s: *mut SSL_SESSION, id: *const u8, len: u32) -> i32;
    fn SSL_SESSION_set1_master_key(s: *mut SSL_SESSION, k: *const u8, len: usize) -> i32;
    fn SSL_SESSION_set_protocol_version(s: *mut SSL_SESSION, v: i32) -> i32;
    fn SSL_SESSION_set_cipher(s: *mut SSL_SESSION, c: *const SSL_CIPHER) -> i32;
    fn SSL_SESSION_set_time(s: *mut SSL_SESSION, t: c_long) -> c_long;
    fn SSL_SESSION_set_timeout(s: *mut SSL_SESSION, t: c_long) -> c_long;
    fn SSL_CIPHER_find(ssl: *mut openssl_sys::SSL, bytes: *const u8) -> *const SSL_CIPHER;
}

/// A TLS 1.2 session (ECDHE-ECDSA-AES128-GCM-SHA256) with this ID and master key, made now
/// with a 300 s timeout. The caller owns the one reference (`SSL_SESSION_free`).
pub fn tls12(id: &[u8], master_key: &[u8]) -> *mut SSL_SESSION {
    // SAFETY: test-only OpenSSL calls on objects made and freed here; the session is
    // returned with its one reference.
    unsafe {
        let ctx = openssl_sys::SSL_CTX_new(openssl_sys::TLS_method());
        let ssl = openssl_sys::SSL_new(ctx);
        let cipher = SSL_CIPHER_find(ssl, [0xC0u8, 0x2B].as_ptr());
        assert!(!cipher.is_null());
        let s = SSL_SESSION_new();
        assert!(!s.is_null());
        assert_eq!(SSL_SESSION_set1_id(s, id.as_ptr(), id.len() as u32), 1);
        assert_eq!(
            SSL_SESSION_set1_master_key(s, master_key.as_ptr(), master_key.len()),
            1
        );
        assert_eq!(
            SSL_SESSION_set_protocol_version(s, openssl_sys::TLS1_2_VERSION),
            1
        );
        assert_eq!(SSL_SESSION_set_cipher(s, cipher), 1);
        SSL_SESSION_set_time(s, crate::clock::now() as c_long);
        SSL_SESSION_set_timeout(s, 300);
        openssl_sys::SSL_free(ssl);
        openssl_sys::SSL_CTX_free(ctx);
        s
    }
}

/// The DER of [`tls12`]`(id, [master_key; 48])`.
pub fn tls12_der(id: &[u8], master_key: u8) -> Vec<u8> {
    let s = tls12(id, &[master_key; 48]);
    // SAFETY: s is live until freed below.
    let der = unsafe { crate::session::encode(s) }.expect("encodes");
    // SAFETY: s was made by tls12 and is freed once.
    unsafe { openssl_sys::SSL_SESSION_free(s) };
    der.as_slice().to_vec()
}

/// The first byte of a session's master key (the tests' way of telling sessions apart).
pub fn master_key(obj: &crate::session::SessionObject) -> u8 {
    let mut key = [0u8; 48];
    // SAFETY: obj is a live session; key has room for 48 bytes.
    let n = unsafe { openssl_sys::SSL_SESSION_get_master_key(obj.as_ptr(), key.as_mut_ptr(), 48) };
    assert_eq!(n, 48);
    key[0]
}
