//! OpenSSL's opaque types, named by their struct tags, and the few functions openssl-sys
//! does not declare.
//!
//! The public prototypes use these tag types so that the generated header spells them as
//! `struct ssl_ctx_st *` etc.; a C file that includes both `<openssl/ssl.h>` and
//! `sesscache.h` then compiles only while our prototypes are exactly OpenSSL's.

#![allow(non_camel_case_types)]

use std::os::raw::c_int;

/// OpenSSL's `SSL_CTX`.
/// cbindgen:no-export
#[repr(C)]
pub struct ssl_ctx_st {
    _opaque: [u8; 0],
}

/// OpenSSL's `SSL`.
/// cbindgen:no-export
#[repr(C)]
pub struct ssl_st {
    _opaque: [u8; 0],
}

/// OpenSSL's `SSL_SESSION`.
/// cbindgen:no-export
#[repr(C)]
pub struct ssl_session_st {
    _opaque: [u8; 0],
}

/// OpenSSL's `SSL_METHOD`.
/// cbindgen:no-export
#[repr(C)]
pub struct ssl_method_st {
    _opaque: [u8; 0],
}

/// OpenSSL's `OSSL_LIB_CTX`.
/// cbindgen:no-export
#[repr(C)]
pub struct ossl_lib_ctx_st {
    _opaque: [u8; 0],
}

/// OpenSSL's `EVP_CIPHER_CTX`.
/// cbindgen:no-export
#[repr(C)]
pub struct evp_cipher_ctx_st {
    _opaque: [u8; 0],
}

/// OpenSSL 3's `EVP_MAC_CTX`.
/// cbindgen:no-export
#[repr(C)]
pub struct evp_mac_ctx_st {
    _opaque: [u8; 0],
}

/// OpenSSL 1.1.1's `HMAC_CTX`.
/// cbindgen:no-export
#[repr(C)]
pub struct hmac_ctx_st {
    _opaque: [u8; 0],
}

/// `SSL_CTX_set_tlsext_ticket_keys` and `SSL_CTX_set_tlsext_ticket_key_cb` are macros over
/// these control codes (the same from 1.1.1 to 4.0).
// Used by the interposed `SSL_CTX_ctrl` only (the `interpose` feature).
#[cfg_attr(not(feature = "interpose"), allow(dead_code))]
pub(crate) const SSL_CTRL_SET_TLSEXT_TICKET_KEYS: c_int = 59;
pub(crate) const SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB: c_int = 72;

/// `int (*)(SSL *, unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *, EVP_MAC_CTX *,
/// int enc)` (OpenSSL 3.0+).
pub type TicketKeyEvpCb = unsafe extern "C" fn(
    *mut ssl_st,
    *mut std::os::raw::c_uchar,
    *mut std::os::raw::c_uchar,
    *mut evp_cipher_ctx_st,
    *mut evp_mac_ctx_st,
    c_int,
) -> c_int;
/// The same with an `HMAC_CTX *` (the callback of `SSL_CTX_set_tlsext_ticket_key_cb`, the
/// only one OpenSSL 1.1.1 has).
pub type TicketKeyLegacyCb = unsafe extern "C" fn(
    *mut ssl_st,
    *mut std::os::raw::c_uchar,
    *mut std::os::raw::c_uchar,
    *mut evp_cipher_ctx_st,
    *mut hmac_ctx_st,
    c_int,
) -> c_int;

/// `SSL_CTX_get_session_cache_mode` is a macro over this control code.
pub(crate) const SSL_CTRL_GET_SESS_CACHE_MODE: c_int = 45;

/// `int (*new_session_cb)(SSL *, SSL_SESSION *)`
pub type NewSessionCb = unsafe extern "C" fn(*mut ssl_st, *mut ssl_session_st) -> c_int;
/// `SSL_SESSION *(*get_session_cb)(SSL *, const unsigned char *, int, int *)`
pub type GetSessionCb = unsafe extern "C" fn(
    *mut ssl_st,
    *const std::os::raw::c_uchar,
    c_int,
    *mut c_int,
) -> *mut ssl_session_st;
/// `void (*remove_session_cb)(SSL_CTX *, SSL_SESSION *)`
pub type RemoveSessionCb = unsafe extern "C" fn(*mut ssl_ctx_st, *mut ssl_session_st);

/// `SSL_client_hello_cb_fn`.
pub type ClientHelloCb =
    unsafe extern "C" fn(ssl: *mut ssl_st, al: *mut c_int, arg: *mut std::ffi::c_void) -> c_int;

/// `ASYNC_WAIT_CTX_set_wait_fd`'s cleanup: (context, key, fd, custom data).
pub type AsyncFdCleanup = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    *const std::ffi::c_void,
    c_int,
    *mut std::ffi::c_void,
);

// libcrypto's async jobs (1.1.0 to 4.0), with ASYNC_JOB and ASYNC_WAIT_CTX as opaque pointers.
extern "C" {
    pub fn ASYNC_get_current_job() -> *mut std::ffi::c_void;
    pub fn ASYNC_get_wait_ctx(job: *mut std::ffi::c_void) -> *mut std::ffi::c_void;
    pub fn ASYNC_pause_job() -> c_int;
    pub fn ASYNC_WAIT_CTX_get_fd(
        ctx: *mut std::ffi::c_void,
        key: *const std::ffi::c_void,
        fd: *mut c_int,
        custom: *mut *mut std::ffi::c_void,
    ) -> c_int;
    pub fn ASYNC_WAIT_CTX_set_wait_fd(
        ctx: *mut std::ffi::c_void,
        key: *const std::ffi::c_void,
        fd: c_int,
        custom: *mut std::ffi::c_void,
        cleanup: Option<AsyncFdCleanup>,
    ) -> c_int;
}

extern "C" {
    pub fn SSL_SESSION_is_resumable(s: *const openssl_sys::SSL_SESSION) -> c_int;
    /// The peer's certificate held by the session (no new reference), or NULL.
    pub fn SSL_SESSION_get0_peer(s: *mut openssl_sys::SSL_SESSION) -> *mut openssl_sys::X509;
    pub fn SSL_get_options(s: *const openssl_sys::SSL) -> u64;
    pub fn SSL_set_options(s: *mut openssl_sys::SSL, op: u64) -> u64;
    pub fn SSL_in_init(s: *const openssl_sys::SSL) -> c_int;
    /// The server name a session was made for (a server's: the name its full handshake
    /// accepted), or NULL; owned by the session (OpenSSL 1.1.1+).
    pub fn SSL_SESSION_get0_hostname(
        s: *const openssl_sys::SSL_SESSION,
    ) -> *const std::os::raw::c_char;
    pub fn SSL_in_before(s: *const openssl_sys::SSL) -> c_int;
    pub fn SSL_CTX_get_ssl_method(
        ctx: *const openssl_sys::SSL_CTX,
    ) -> *const openssl_sys::SSL_METHOD;
    pub fn SSL_set_fd(s: *mut openssl_sys::SSL, fd: c_int) -> c_int;
    /// Marks the thread's error queue, so that `ERR_pop_to_mark` drops only what came after.
    pub fn ERR_set_mark() -> c_int;
    pub fn ERR_pop_to_mark() -> c_int;
    /// Frees this thread's OpenSSL state now (1.1.0+), rather than in OpenSSL's thread-exit
    /// destructor.
    pub fn OPENSSL_thread_stop();
    pub fn X509_VERIFY_PARAM_set1_ip_asc(
        param: *mut openssl_sys::X509_VERIFY_PARAM,
        ipasc: *const std::os::raw::c_char,
    ) -> c_int;
}

/// `SSL_OP_NO_ANTI_REPLAY` (OpenSSL 1.1.1+).
pub(crate) const SSL_OP_NO_ANTI_REPLAY: u64 = 1 << 24;

/// Casts between our tag types and openssl-sys's, which name the same C structs.
pub fn sys_ctx(ctx: *mut ssl_ctx_st) -> *mut openssl_sys::SSL_CTX {
    ctx.cast()
}
pub fn sys_ssl(ssl: *mut ssl_st) -> *mut openssl_sys::SSL {
    ssl.cast()
}
pub fn sys_sess(sess: *mut ssl_session_st) -> *mut openssl_sys::SSL_SESSION {
    sess.cast()
}
