//! What the cache does in each of OpenSSL's three session callbacks, shared by the
//! trampolines installed on attached contexts and by the ready-made callbacks.

use crate::cache::Cache;
use crate::ossl::{ssl_session_st, ssl_st, sys_sess, sys_ssl};
use crate::session;
use openssl_sys::SSL_is_server;
use std::os::raw::{c_int, c_uchar};

/// New-session callback: stores server sessions. The caller (OpenSSL) keeps its reference;
/// the cache takes its own.
///
/// # Safety
/// `ssl` and `sess` are the live objects OpenSSL passes to a new-session callback.
pub unsafe fn on_new(cache: &Cache, ssl: *mut ssl_st, sess: *mut ssl_session_st) {
    // SAFETY: ssl is live (caller).
    if sess.is_null() || unsafe { SSL_is_server(sys_ssl(ssl)) } != 1 {
        return;
    }
    // SAFETY: sess is live (caller).
    unsafe { cache.store_session(sys_sess(sess)) };
}

/// Get-session callback: a session for OpenSSL to own (`*copy = 0`), or NULL.
///
/// # Safety
/// `ssl` is live; `data` points at `len` bytes when `len > 0`; `copy` is NULL or writable.
pub unsafe fn on_get(
    cache: &Cache,
    ssl: *mut ssl_st,
    data: *const c_uchar,
    len: c_int,
    copy: *mut c_int,
) -> *mut ssl_session_st {
    // SAFETY: ssl is live (caller).
    if unsafe { SSL_is_server(sys_ssl(ssl)) } != 1 {
        return std::ptr::null_mut();
    }
    let id: &[u8] = match usize::try_from(len) {
        // SAFETY: OpenSSL passes `len` readable bytes at `data`.
        Ok(n) if n > 0 && !data.is_null() => unsafe { std::slice::from_raw_parts(data, n) },
        // Empty or negative: the cache counts it as rejected.
        _ => &[],
    };
    match cache.lookup(id) {
        Some(obj) => {
            if !copy.is_null() {
                // SAFETY: copy is writable (caller). 0: OpenSSL takes over our reference.
                unsafe { *copy = 0 };
            }
            obj.into_raw().cast()
        }
        None => std::ptr::null_mut(),
    }
}

/// Remove-session callback: forgets the session's ID.
///
/// # Safety
/// `sess` is NULL or a live session.
pub unsafe fn on_remove(cache: &Cache, sess: *mut ssl_session_st) {
    if sess.is_null() {
        return;
    }
    // SAFETY: sess is live (caller); the ID borrow ends before we return.
    let info = unsafe { session::info(sys_sess(sess)) };
    cache.remove(info.id);
}
