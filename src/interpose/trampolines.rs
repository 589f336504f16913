//! The callbacks installed in OpenSSL on attached contexts. Each runs the application's own
//! callback first (with OpenSSL's semantics, its result passed through), then the cache.

use crate::ffi::callbacks::{
    sesscache_get_session_cb, sesscache_new_session_cb, sesscache_remove_session_cb,
};
use crate::ffi::guard;
use crate::hooks;
use crate::interpose::record::{record, server_caching_on, session_ctx};
use crate::ossl::{
    ssl_ctx_st, ssl_session_st, ssl_st, GetSessionCb, NewSessionCb, RemoveSessionCb,
};
use std::os::raw::{c_int, c_uchar};

// The application may install our ready-made callbacks on an attached context; the
// trampoline already does their work, so running them too would count and store twice.
fn is_ours_new(cb: NewSessionCb) -> bool {
    cb as usize == sesscache_new_session_cb as *const () as usize
}
fn is_ours_get(cb: GetSessionCb) -> bool {
    cb as usize == sesscache_get_session_cb as *const () as usize
}
fn is_ours_remove(cb: RemoveSessionCb) -> bool {
    cb as usize == sesscache_remove_session_cb as *const () as usize
}

/// # Safety
/// Called by OpenSSL as a new-session callback.
pub unsafe extern "C" fn new_session(ssl: *mut ssl_st, sess: *mut ssl_session_st) -> c_int {
    if ssl.is_null() {
        return 0;
    }
    // SAFETY: OpenSSL passes a live connection; its session context is live with it.
    let Some(rec) = (unsafe { record(session_ctx(ssl)) }) else {
        return 0;
    };
    // The application's verdict (1: it kept OpenSSL's extra reference) is passed through
    // untouched; the cache takes a reference of its own.
    let kept = match rec.app_new_cb().filter(|&cb| !is_ours_new(cb)) {
        // SAFETY: calling the application's callback as OpenSSL would.
        Some(app) => unsafe { app(ssl, sess) },
        None => 0,
    };
    // SAFETY: ssl and sess are live for the callback's duration.
    guard((), || unsafe { hooks::on_new(&rec.cache, ssl, sess) });
    kept
}

/// # Safety
/// Called by OpenSSL as a get-session callback.
pub unsafe extern "C" fn get_session(
    ssl: *mut ssl_st,
    data: *const c_uchar,
    len: c_int,
    copy: *mut c_int,
) -> *mut ssl_session_st {
    if ssl.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: OpenSSL passes a live connection; its session context is live with it.
    let ctx = unsafe { session_ctx(ssl) };
    // SAFETY: as above.
    let Some(rec) = (unsafe { record(ctx) }) else {
        return std::ptr::null_mut();
    };
    if let Some(app) = rec.app_get_cb().filter(|&cb| !is_ours_get(cb)) {
        // SAFETY: calling the application's callback as OpenSSL would.
        let found = unsafe { app(ssl, data, len, copy) };
        if !found.is_null() {
            return found;
        }
    }
    // The program may have turned server caching off after attaching (its later settings
    // win): OpenSSL still calls get callbacks then, but the cache stays silent.
    // SAFETY: the session context is live with the connection.
    if !unsafe { server_caching_on(ctx) } {
        return std::ptr::null_mut();
    }
    // SAFETY: arguments as OpenSSL passed them.
    guard(std::ptr::null_mut(), || unsafe {
        hooks::on_get(&rec.cache, ssl, data, len, copy)
    })
}

/// # Safety
/// Called by OpenSSL as a remove-session callback.
pub unsafe extern "C" fn remove_session(ctx: *mut ssl_ctx_st, sess: *mut ssl_session_st) {
    // SAFETY: OpenSSL passes the live context whose callback this is.
    let Some(rec) = (unsafe { record(ctx) }) else {
        return;
    };
    if let Some(app) = rec.app_remove_cb().filter(|&cb| !is_ours_remove(cb)) {
        // SAFETY: calling the application's callback as OpenSSL would.
        unsafe { app(ctx, sess) };
    }
    // SAFETY: sess is live for the callback's duration.
    guard((), || unsafe { hooks::on_remove(&rec.cache, sess) });
}
