//! The callbacks installed in OpenSSL on attached contexts. Each runs the application's own
//! callback first (with OpenSSL's semantics, its result passed through), then the cache.

use crate::boundary::guard;
use crate::interpose::hooks;
use crate::interpose::record::{record, server_caching_on, session_ctx};
use crate::ossl::{ssl_ctx_st, ssl_session_st, ssl_st};
use std::cell::Cell;
use std::os::raw::{c_int, c_uchar};

thread_local! {
    /// Set while a trampoline runs the application's own callback.
    static IN_APP_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside the application's callback, called by a trampoline. The
/// application may install our ready-made callbacks (`sesscache_*_session_cb`) on an
/// attached context, or call them from its own: the trampoline does their work already, so
/// they must do nothing then, or a session would be counted and stored twice.
pub fn in_app_callback() -> bool {
    IN_APP_CALLBACK.try_with(Cell::get).unwrap_or(false)
}

/// Runs `f` (the application's callback) with [`in_app_callback`] true.
fn as_app<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = IN_APP_CALLBACK.try_with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(
        IN_APP_CALLBACK
            .try_with(|c| c.replace(true))
            .unwrap_or(false),
    );
    f()
}

/// # Safety
/// Called by OpenSSL as a new-session callback.
pub unsafe extern "C" fn new_session(ssl: *mut ssl_st, sess: *mut ssl_session_st) -> c_int {
    // All of it inside the panic boundary; the cache's part in a boundary of its own, so
    // that a panic there keeps the application's verdict.
    guard(0, || {
        if ssl.is_null() {
            return 0;
        }
        // SAFETY: OpenSSL passes a live connection; its session context is live with it.
        let Some(rec) = (unsafe { record(session_ctx(ssl)) }) else {
            return 0;
        };
        // The application's verdict (1: it kept OpenSSL's extra reference) is passed
        // through untouched; the cache takes a reference of its own.
        let kept = match rec.app_new_cb() {
            // SAFETY: calling the application's callback as OpenSSL would.
            Some(app) => as_app(|| unsafe { app(ssl, sess) }),
            None => 0,
        };
        // SAFETY: ssl and sess are live for the callback's duration.
        guard((), || unsafe { hooks::on_new(&rec.cache, ssl, sess) });
        kept
    })
}

/// # Safety
/// Called by OpenSSL as a get-session callback.
pub unsafe extern "C" fn get_session(
    ssl: *mut ssl_st,
    data: *const c_uchar,
    len: c_int,
    copy: *mut c_int,
) -> *mut ssl_session_st {
    guard(std::ptr::null_mut(), || {
        if ssl.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: OpenSSL passes a live connection; its session context is live with it.
        let ctx = unsafe { session_ctx(ssl) };
        // SAFETY: as above.
        let Some(rec) = (unsafe { record(ctx) }) else {
            return std::ptr::null_mut();
        };
        if let Some(app) = rec.app_get_cb() {
            // SAFETY: calling the application's callback as OpenSSL would.
            let found = as_app(|| unsafe { app(ssl, data, len, copy) });
            if !found.is_null() {
                return found;
            }
        }
        // The program may have turned server caching off after attaching (its later
        // settings win): OpenSSL still calls get callbacks then, but the cache stays silent.
        // SAFETY: the session context is live with the connection.
        if !unsafe { server_caching_on(ctx) } {
            return std::ptr::null_mut();
        }
        // SAFETY: arguments as OpenSSL passed them.
        guard(std::ptr::null_mut(), || unsafe {
            hooks::on_get(&rec.cache, ssl, data, len, copy)
        })
    })
}

/// # Safety
/// Called by OpenSSL as a remove-session callback.
pub unsafe extern "C" fn remove_session(ctx: *mut ssl_ctx_st, sess: *mut ssl_session_st) {
    guard((), || {
        // SAFETY: OpenSSL passes the live context whose callback this is.
        let Some(rec) = (unsafe { record(ctx) }) else {
            return;
        };
        if let Some(app) = rec.app_remove_cb() {
            // SAFETY: calling the application's callback as OpenSSL would.
            as_app(|| unsafe { app(ctx, sess) });
        }
        // SAFETY: sess is live for the callback's duration.
        guard((), || unsafe { hooks::on_remove(&rec.cache, sess) });
    })
}
