//! OpenSSL's six session-callback accessors, defined here with OpenSSL 3's exact
//! prototypes so that ours are found first when the library is linked before `-lssl` or
//! preloaded. On a context with no cache attached each forwards to OpenSSL unchanged; on an
//! attached context the application's callbacks are kept in our record (they still run,
//! chained before the cache's) and the getters return them.
//!
//! `SSL_set_SSL_CTX` is interposed too, to remember a connection's original context before
//! an SNI switch: OpenSSL keeps running that context's callbacks but has no getter for it.
//! So are `SSL_CTX_new` and `SSL_CTX_new_ex`, for preload mode (`SESSCACHE_URL`), and
//! `SSL_set_accept_state`, `SSL_free` and `SSL_clear`, where a server connection of an
//! attached context gets its settings and its unclean close is forgiven (see
//! `interpose::connection`). Each forwards unchanged when no cache is attached.
//!
//! `SSL_CTX_ctrl`, `SSL_CTX_callback_ctrl` and `SSL_CTX_set_tlsext_ticket_key_evp_cb` are
//! interposed to see a program set its own ticket keys or ticket callback, which then win
//! over shared ticket keys (`tickets=shared`, see `interpose::tickets`).

use crate::boundary::guard;
use crate::interpose::connection;
use crate::interpose::preload::on_new_ctx;
use crate::interpose::real::{real, GetCb, Real, SetCb};
use crate::interpose::record::{record, remember_session_ctx, CtxRecord};
use crate::interpose::tickets::{self, ProgramSets};
use crate::ossl::{
    evp_cipher_ctx_st, evp_mac_ctx_st, ossl_lib_ctx_st, ssl_ctx_st, ssl_method_st, ssl_session_st,
    ssl_st, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB,
};
use crate::suspend::mode;
use std::ffi::c_void;
use std::os::raw::{c_char, c_int, c_long, c_uchar};

/// OpenSSL's `SSL_CTX_sess_set_new_cb`. Sets the callback OpenSSL calls for every new
/// session (see SSL_CTX_sess_set_new_cb(3)). Without a cache attached to `ctx` this is
/// OpenSSL's own function; with one, the callback runs before the cache stores the
/// session, and its return value is what OpenSSL sees. NULL `ctx` is ignored. Not
/// synchronised with connections using `ctx`: call it while configuring.
///
/// # Safety
/// `ctx` is NULL or a live `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_sess_set_new_cb(
    ctx: *mut ssl_ctx_st,
    new_session_cb: Option<
        unsafe extern "C" fn(ssl: *mut ssl_st, sess: *mut ssl_session_st) -> c_int,
    >,
) {
    // SAFETY: forwarded under the caller's contract.
    unsafe {
        set_cb(
            ctx,
            new_session_cb,
            CtxRecord::set_app_new_cb,
            Real::set_new_cb,
        )
    }
}

/// OpenSSL's `SSL_CTX_sess_get_new_cb`: the new-session callback the application set on
/// `ctx`, or NULL (also for a NULL `ctx`).
///
/// # Safety
/// `ctx` is NULL or a live `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_sess_get_new_cb(
    ctx: *mut ssl_ctx_st,
) -> Option<unsafe extern "C" fn(ssl: *mut ssl_st, sess: *mut ssl_session_st) -> c_int> {
    guard(None, || {
        if ctx.is_null() {
            return None;
        }
        // SAFETY: ctx is a live context (caller's contract).
        unsafe {
            match record(ctx) {
                Some(rec) => rec.app_new_cb(),
                None => real().get_new_cb().and_then(|f| f(ctx)),
            }
        }
    })
}

/// OpenSSL's `SSL_CTX_sess_set_remove_cb`. Without a cache attached to `ctx` this is
/// OpenSSL's own function (note that OpenSSL 3 caches TLS 1.3 sessions internally only when
/// a remove callback is set); with one, the callback runs before the cache forgets the
/// session. NULL `ctx` is ignored. Call it while configuring.
///
/// # Safety
/// `ctx` is NULL or a live `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_sess_set_remove_cb(
    ctx: *mut ssl_ctx_st,
    remove_session_cb: Option<
        unsafe extern "C" fn(ctx: *mut ssl_ctx_st, sess: *mut ssl_session_st),
    >,
) {
    // SAFETY: forwarded under the caller's contract.
    unsafe {
        set_cb(
            ctx,
            remove_session_cb,
            CtxRecord::set_app_remove_cb,
            Real::set_remove_cb,
        )
    }
}

/// OpenSSL's `SSL_CTX_sess_get_remove_cb`: the remove-session callback the application set
/// on `ctx`, or NULL (also for a NULL `ctx`).
///
/// # Safety
/// `ctx` is NULL or a live `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_sess_get_remove_cb(
    ctx: *mut ssl_ctx_st,
) -> Option<unsafe extern "C" fn(ctx: *mut ssl_ctx_st, sess: *mut ssl_session_st)> {
    guard(None, || {
        if ctx.is_null() {
            return None;
        }
        // SAFETY: ctx is a live context (caller's contract).
        unsafe {
            match record(ctx) {
                Some(rec) => rec.app_remove_cb(),
                None => real().get_remove_cb().and_then(|f| f(ctx)),
            }
        }
    })
}

/// OpenSSL's `SSL_CTX_sess_set_get_cb`. Without a cache attached to `ctx` this is OpenSSL's
/// own function; with one, the callback is asked first and the cache answers when it
/// returns NULL (its `*copy` is passed through when it answers). NULL `ctx` is ignored.
/// Call it while configuring.
///
/// # Safety
/// `ctx` is NULL or a live `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_sess_set_get_cb(
    ctx: *mut ssl_ctx_st,
    get_session_cb: Option<
        unsafe extern "C" fn(
            ssl: *mut ssl_st,
            data: *const c_uchar,
            len: c_int,
            copy: *mut c_int,
        ) -> *mut ssl_session_st,
    >,
) {
    // SAFETY: forwarded under the caller's contract.
    unsafe {
        set_cb(
            ctx,
            get_session_cb,
            CtxRecord::set_app_get_cb,
            Real::set_get_cb,
        )
    }
}

/// OpenSSL's `SSL_CTX_sess_get_get_cb`: the get-session callback the application set on
/// `ctx`, or NULL (also for a NULL `ctx`).
///
/// # Safety
/// `ctx` is NULL or a live `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_sess_get_get_cb(
    ctx: *mut ssl_ctx_st,
) -> Option<
    unsafe extern "C" fn(
        ssl: *mut ssl_st,
        data: *const c_uchar,
        len: c_int,
        copy: *mut c_int,
    ) -> *mut ssl_session_st,
> {
    // SAFETY: forwarded under the caller's contract.
    unsafe { get_cb(ctx, CtxRecord::app_get_cb, Real::get_get_cb) }
}

/// The body of the three setters: record the callback for an attached context, else let
/// OpenSSL set it.
///
/// # Safety
/// `ctx` is NULL or a live context.
unsafe fn set_cb<T: Copy>(
    ctx: *mut ssl_ctx_st,
    cb: Option<T>,
    in_record: fn(&CtxRecord, Option<T>),
    in_openssl: fn(&Real) -> Option<SetCb<T>>,
) {
    guard((), || {
        if ctx.is_null() {
            return;
        }
        // SAFETY: ctx is a live context (caller's contract).
        match unsafe { record(ctx) } {
            Some(rec) => in_record(rec, cb),
            None => {
                if let Some(set) = in_openssl(real()) {
                    // SAFETY: OpenSSL's setter, with the caller's arguments.
                    unsafe { set(ctx, cb) }
                }
            }
        }
    })
}

/// The body of the three getters: the application's callback, from our record for an
/// attached context, else from OpenSSL.
///
/// # Safety
/// `ctx` is NULL or a live context.
unsafe fn get_cb<T: Copy>(
    ctx: *mut ssl_ctx_st,
    in_record: fn(&CtxRecord) -> Option<T>,
    in_openssl: fn(&Real) -> Option<GetCb<T>>,
) -> Option<T> {
    guard(None, || {
        if ctx.is_null() {
            return None;
        }
        // SAFETY: ctx is a live context (caller's contract).
        match unsafe { record(ctx) } {
            Some(rec) => in_record(rec),
            // SAFETY: OpenSSL's getter, with the caller's argument.
            None => in_openssl(real()).and_then(|get| unsafe { get(ctx) }),
        }
    })
}

/// OpenSSL's `SSL_set_SSL_CTX`, unchanged, except that once a cache has been attached
/// anywhere in the process it first remembers the connection's original context, whose
/// session callbacks OpenSSL keeps using after the switch; and that under preload mode's
/// `force=1` the context switched to gets server caching on too (see `SSL_CTX_new`).
/// Returns what OpenSSL returns; NULL for a NULL `ssl`.
///
/// # Safety
/// `ssl` is NULL or a live `SSL`; `ctx` is as OpenSSL requires.
#[no_mangle]
pub unsafe extern "C" fn SSL_set_SSL_CTX(
    ssl: *mut ssl_st,
    ctx: *mut ssl_ctx_st,
) -> *mut ssl_ctx_st {
    if ssl.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: ssl is a live connection (caller's contract).
    guard((), || unsafe { remember_session_ctx(ssl) });
    let Some(set_ssl_ctx) = real().set_ssl_ctx() else {
        return std::ptr::null_mut();
    };
    // SAFETY: OpenSSL's function, with the caller's arguments.
    let switched = unsafe { set_ssl_ctx(ssl, ctx) };
    // SAFETY: ssl is live; ctx is NULL or live (caller's contract).
    guard((), || unsafe { connection::on_switch(ssl, ctx) });
    switched
}

/// OpenSSL's `SSL_CTX_new`, unchanged unless the environment variable `SESSCACHE_URL` is
/// set (preload mode): then a context made with a server-capable method gets the
/// process-wide cache attached, as `sesscache_attach` would; its server connections get
/// their settings when they start (see `SSL_set_accept_state`). Contexts made with
/// client-only methods are never touched. Returns what OpenSSL returns; the caller owns the context.
///
/// # Safety
/// As OpenSSL's: `meth` is a method from OpenSSL.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_new(meth: *const ssl_method_st) -> *mut ssl_ctx_st {
    let Some(ctx_new) = real().ctx_new() else {
        return std::ptr::null_mut();
    };
    // SAFETY: OpenSSL's function, with the caller's argument.
    let ctx = unsafe { ctx_new(meth) };
    tickets::forget_address(ctx);
    mode::forget_address(ctx);
    // SAFETY: ctx is NULL or the live context just made with meth.
    guard((), || unsafe { on_new_ctx(ctx, meth.cast()) });
    ctx
}

/// OpenSSL's `SSL_CTX_new_ex`, with the same preload behaviour as `SSL_CTX_new`. With an
/// OpenSSL before 3.0, which has no such function (and so no program that calls it), it
/// returns NULL and says so once in the log.
///
/// # Safety
/// As OpenSSL's: `libctx` is NULL or a library context, `propq` NULL or a string, `meth` a
/// method from OpenSSL.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_new_ex(
    libctx: *mut ossl_lib_ctx_st,
    propq: *const c_char,
    meth: *const ssl_method_st,
) -> *mut ssl_ctx_st {
    let Some(ctx_new_ex) = real().ctx_new_ex() else {
        return std::ptr::null_mut();
    };
    // SAFETY: OpenSSL's function, with the caller's arguments.
    let ctx = unsafe { ctx_new_ex(libctx, propq, meth) };
    tickets::forget_address(ctx);
    mode::forget_address(ctx);
    // SAFETY: ctx is NULL or the live context just made with meth.
    guard((), || unsafe { on_new_ctx(ctx, meth.cast()) });
    ctx
}

/// OpenSSL's `SSL_set_accept_state` (which `SSL_accept` calls too): makes `ssl` a server.
/// If its context has a cache attached by preload mode, the connection then gets preload
/// mode's settings (stateful tickets where they cannot lose a resumption; nothing at all
/// where the program turned its session cache off, unless `force=1`). NULL is ignored.
/// Thread-safe for distinct connections, as OpenSSL's.
///
/// # Safety
/// `ssl` is NULL or a live `SSL`.
#[no_mangle]
pub unsafe extern "C" fn SSL_set_accept_state(ssl: *mut ssl_st) {
    if ssl.is_null() {
        return;
    }
    if let Some(set_accept_state) = real().set_accept_state() {
        // SAFETY: OpenSSL's function, with the caller's argument.
        unsafe { set_accept_state(ssl) };
    }
    // SAFETY: ssl is a live connection (caller's contract).
    guard((), || unsafe { connection::on_accept(ssl) });
}

/// OpenSSL's `SSL_free`. Before freeing a server connection of a context whose cache the
/// library serves, a finished handshake closed without close_notify is treated as closed
/// cleanly, so that OpenSSL does not remove its session (RFC 5246 allows resuming it;
/// fatal alerts still remove it). The caller gives up `ssl`. NULL is ignored, as by OpenSSL.
///
/// # Safety
/// `ssl` is NULL or a live `SSL` that nothing uses afterwards.
#[no_mangle]
pub unsafe extern "C" fn SSL_free(ssl: *mut ssl_st) {
    if ssl.is_null() {
        return;
    }
    // SAFETY: ssl is a live connection (caller's contract).
    guard((), || unsafe { connection::on_free(ssl) });
    if let Some(free) = real().free() {
        // SAFETY: OpenSSL's function, with the caller's argument.
        unsafe { free(ssl) };
    }
}

/// OpenSSL's `SSL_clear`, with `SSL_free`'s treatment of an unclean close first. Returns
/// what OpenSSL returns; 0 for NULL.
///
/// # Safety
/// `ssl` is NULL or a live `SSL`.
#[no_mangle]
pub unsafe extern "C" fn SSL_clear(ssl: *mut ssl_st) -> c_int {
    if ssl.is_null() {
        return 0;
    }
    // SAFETY: ssl is a live connection (caller's contract).
    guard((), || unsafe { connection::on_free(ssl) });
    match real().clear() {
        // SAFETY: OpenSSL's function, with the caller's argument.
        Some(clear) => unsafe { clear(ssl) },
        None => 0,
    }
}

/// OpenSSL's `SSL_CTX_ctrl`, unchanged: every control goes to OpenSSL as given and its
/// result is returned. Interposed for one control: when a program sets its own ticket keys
/// (`SSL_CTX_set_tlsext_ticket_keys`, control 59) on a context whose cache has shared
/// ticket keys (`tickets=shared`), the program's keys serve that context from then on
/// (unless the URL says `force=1`). Thread-safety as OpenSSL's.
///
/// # Safety
/// As OpenSSL's: `ctx` is a live `SSL_CTX` (or NULL where OpenSSL takes it) and `parg` what
/// `cmd` requires.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_ctrl(
    ctx: *mut ssl_ctx_st,
    cmd: c_int,
    larg: c_long,
    parg: *mut c_void,
) -> c_long {
    let Some(ctrl) = real().ctx_ctrl() else {
        return 0;
    };
    // SAFETY: OpenSSL's function, with the caller's arguments (OpenSSL itself takes a NULL
    // `ctx` for a few controls that check lists).
    let result = unsafe { ctrl(ctx, cmd, larg, parg) };
    if cmd == SSL_CTRL_SET_TLSEXT_TICKET_KEYS && result == 1 && !ctx.is_null() {
        // SAFETY: ctx is live (caller's contract).
        guard((), || unsafe {
            tickets::program_set(ctx, ProgramSets::Keys)
        });
    }
    result
}

/// OpenSSL's `SSL_CTX_callback_ctrl`, unchanged but for one control: a program's own
/// ticket key callback (`SSL_CTX_set_tlsext_ticket_key_cb`, control 72) on a context whose
/// cache has shared ticket keys serves that context from then on; with `force=1` in the
/// URL it is not installed (1 is returned, the shared keys serve). Thread-safety as
/// OpenSSL's.
///
/// # Safety
/// As OpenSSL's: `ctx` is a live `SSL_CTX` (NULL is returned 0 here) and `fp` a callback of
/// the type `cmd` requires, or NULL.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_callback_ctrl(
    ctx: *mut ssl_ctx_st,
    cmd: c_int,
    fp: Option<unsafe extern "C" fn()>,
) -> c_long {
    let Some(callback_ctrl) = real().ctx_callback_ctrl() else {
        return 0;
    };
    if ctx.is_null() {
        return 0;
    }
    let ticket_cb = cmd == SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB;
    // SAFETY: ctx is live (caller's contract).
    if ticket_cb
        && !guard(true, || unsafe {
            tickets::program_may_set(ctx, ProgramSets::LegacyCallback)
        })
    {
        return 1;
    }
    // SAFETY: OpenSSL's function, with the caller's arguments.
    let result = unsafe { callback_ctrl(ctx, cmd, fp) };
    if ticket_cb && result == 1 {
        // SAFETY: ctx is live (caller's contract).
        guard((), || unsafe {
            tickets::program_set(ctx, ProgramSets::LegacyCallback)
        });
    }
    result
}

/// OpenSSL's `SSL_CTX_set_tlsext_ticket_key_evp_cb` (3.0+): a program's own ticket key
/// callback. On a context whose cache has shared ticket keys it serves that context from
/// then on; with `force=1` in the URL it is not installed (1 is returned, the shared keys
/// serve). Returns what OpenSSL returns; 0 for a NULL `ctx`, and with an OpenSSL before
/// 3.0, which has no such function (said once in the log). Thread-safety as OpenSSL's.
///
/// # Safety
/// `ctx` is NULL or a live `SSL_CTX`; `fp` NULL or a callback of OpenSSL's type.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_set_tlsext_ticket_key_evp_cb(
    ctx: *mut ssl_ctx_st,
    fp: Option<
        unsafe extern "C" fn(
            ssl: *mut ssl_st,
            key_name: *mut c_uchar,
            iv: *mut c_uchar,
            cipher_ctx: *mut evp_cipher_ctx_st,
            mac_ctx: *mut evp_mac_ctx_st,
            enc: c_int,
        ) -> c_int,
    >,
) -> c_int {
    let Some(set_evp) = real().set_ticket_evp_cb() else {
        return 0;
    };
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: ctx is live (caller's contract).
    if !guard(true, || unsafe {
        tickets::program_may_set(ctx, ProgramSets::EvpCallback)
    }) {
        return 1;
    }
    // SAFETY: OpenSSL's function, with the caller's arguments.
    let result = unsafe { set_evp(ctx, fp) };
    if result == 1 {
        // SAFETY: ctx is live (caller's contract).
        guard((), || unsafe {
            tickets::program_set(ctx, ProgramSets::EvpCallback)
        });
    }
    result
}

/// OpenSSL's `SSL_CTX_set_client_hello_cb`. On a context attached with
/// `sesscache_attach_async`, the callback is kept and runs before the cache's own
/// ClientHello callback (its RETRY or failure passed on as it is); elsewhere this is
/// OpenSSL's own function, and the callback is remembered for a later
/// `sesscache_attach_async`. NULL `c` is ignored. Not synchronised with connections using
/// `c`: call it while configuring.
///
/// # Safety
/// `c` is NULL or a live `SSL_CTX`; `cb` is NULL or a ClientHello callback that may be
/// called with `arg`.
#[no_mangle]
pub unsafe extern "C" fn SSL_CTX_set_client_hello_cb(
    c: *mut ssl_ctx_st,
    cb: Option<unsafe extern "C" fn(s: *mut ssl_st, al: *mut c_int, arg: *mut c_void) -> c_int>,
    arg: *mut c_void,
) {
    if c.is_null() {
        return;
    }
    let kept = guard(false, || {
        // SAFETY: c is a live context (caller's contract).
        match unsafe { record(c) }.and_then(|rec| rec.hello.get()) {
            Some(mode) => {
                mode.set_app(cb, arg);
                true
            }
            None => {
                mode::remember(c, cb, arg);
                false
            }
        }
    });
    if !kept {
        if let Some(set) = real().set_client_hello_cb() {
            // SAFETY: OpenSSL's function, with the caller's arguments.
            unsafe { set(c, cb, arg) };
        }
    }
}
