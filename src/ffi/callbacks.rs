//! Ready-made callbacks, for applications that install callbacks themselves with
//! `SSL_CTX_sess_set_new_cb` / `_get_cb` / `_remove_cb`.
//!
//! Each uses the cache attached to the connection's session context; if none is attached,
//! a process-wide default cache opened on first use from the environment variable
//! `SESSCACHE_URL` (or `memory:` when it is unset or empty); see `preload`.

use crate::boundary::guard;
use crate::cache::Cache;
use crate::interpose::hooks;
use crate::interpose::preload::process_cache;
use crate::interpose::record::{record, session_ctx};
use crate::interpose::trampolines::in_app_callback;
use crate::ossl::{ssl_ctx_st, ssl_session_st, ssl_st};
use std::os::raw::{c_int, c_uchar};
use std::sync::Arc;

/// The cache serving `ctx`: None inside an application callback that a trampoline runs
/// (the trampoline does this callback's work: see `trampolines::in_app_callback`).
///
/// # Safety
/// `ctx` is a live context.
unsafe fn cache_of<'a>(ctx: *mut ssl_ctx_st) -> Option<&'a Arc<Cache>> {
    if in_app_callback() {
        return None;
    }
    // SAFETY: ctx is live (caller).
    match unsafe { record(ctx) } {
        Some(rec) => Some(&rec.cache),
        None => process_cache(),
    }
}

/// A new-session callback with OpenSSL's signature (`SSL_CTX_sess_set_new_cb`). Stores
/// server sessions in the cache; client connections are ignored. Always returns 0: the
/// cache takes its own reference when it keeps OpenSSL's object, and
/// OpenSSL keeps and releases its own as usual.
/// Thread-safe.
///
/// # Safety
/// Called by OpenSSL (or as OpenSSL would): `ssl` and `sess` are NULL or live.
#[no_mangle]
pub unsafe extern "C" fn sesscache_new_session_cb(
    ssl: *mut ssl_st,
    sess: *mut ssl_session_st,
) -> c_int {
    guard(0, || {
        if ssl.is_null() || sess.is_null() {
            return 0;
        }
        // SAFETY: OpenSSL passes a live connection and session.
        unsafe {
            if let Some(cache) = cache_of(session_ctx(ssl)) {
                hooks::on_new(cache, ssl, sess);
            }
        }
        0
    })
}

/// A get-session callback with OpenSSL's signature (`SSL_CTX_sess_set_get_cb`). Returns
/// a session from the cache with `*copy` set to 0 (OpenSSL owns the returned reference),
/// or NULL on a miss, for client connections, and for IDs that are empty, negative in
/// length or longer than 32 bytes (counted as `rejected`). Single-use TLS 1.3 tickets are
/// consumed. Thread-safe.
///
/// # Safety
/// Called by OpenSSL (or as OpenSSL would): `ssl` is NULL or live, `data` points at `len` readable bytes when `len > 0`, `copy` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sesscache_get_session_cb(
    ssl: *mut ssl_st,
    data: *const c_uchar,
    len: c_int,
    copy: *mut c_int,
) -> *mut ssl_session_st {
    guard(std::ptr::null_mut(), || {
        if ssl.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: OpenSSL passes a live connection and `len` bytes at `data`.
        unsafe {
            match cache_of(session_ctx(ssl)) {
                Some(cache) => hooks::on_get(cache, ssl, data, len, copy),
                None => std::ptr::null_mut(),
            }
        }
    })
}

/// A remove-session callback with OpenSSL's signature (`SSL_CTX_sess_set_remove_cb`).
/// Forgets the session's ID in the cache of `ctx`. Thread-safe; does not block.
///
/// # Safety
/// Called by OpenSSL (or as OpenSSL would): `ctx` and `sess` are NULL or live.
#[no_mangle]
pub unsafe extern "C" fn sesscache_remove_session_cb(
    ctx: *mut ssl_ctx_st,
    sess: *mut ssl_session_st,
) {
    guard((), || {
        if ctx.is_null() || sess.is_null() {
            return;
        }
        // SAFETY: OpenSSL passes a live context and session.
        unsafe {
            if let Some(cache) = cache_of(ctx) {
                hooks::on_remove(cache, sess);
            }
        }
    })
}
