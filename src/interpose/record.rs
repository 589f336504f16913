//! Per-`SSL_CTX` records: the cache attached to a context and the callbacks the
//! application set on it, kept in the context's ex_data so that they live and die with it.
//!
//! No ex_data index is allocated until the first attach: allocating one earlier would
//! shift the indices the application gets, which it could notice.

use crate::cache::Cache;
use crate::error::{Error, ErrorKind};
use crate::ossl::{
    ssl_ctx_st, ssl_st, sys_ctx, sys_ssl, GetSessionCb, NewSessionCb, RemoveSessionCb,
};
use crate::suspend::mode::AsyncMode;
use openssl_sys::{
    CRYPTO_get_ex_new_index, SSL_CTX_ctrl, SSL_CTX_get_ex_data, SSL_get_SSL_CTX, SSL_get_ex_data,
    SSL_set_ex_data, CRYPTO_EX_DATA, CRYPTO_EX_INDEX_SSL, CRYPTO_EX_INDEX_SSL_CTX,
    SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_NO_INTERNAL, SSL_SESS_CACHE_SERVER,
};
use std::ffi::c_void;
use std::os::raw::{c_int, c_long};
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// What we keep for an attached context.
pub struct CtxRecord {
    pub cache: Arc<Cache>,
    /// Attached by preload mode (not by the program through `sesscache_attach`): the
    /// process-wide cache's policy decides its connections' tickets.
    pub preload: bool,
    /// Things said about this context in the log, once each ([`CtxRecord::say_once`]).
    said: AtomicU8,
    /// Whose ticket keys serve this context (`interpose::tickets`: not served, ours, the
    /// program's).
    tickets: AtomicU8,
    app_new: AtomicUsize,
    app_get: AtomicUsize,
    app_remove: AtomicUsize,
    /// Asynchronous mode (`sesscache_attach_async`): set once, never unset.
    pub hello: OnceLock<AsyncMode>,
}

/// -1 until the first attach allocates them.
static CTX_INDEX: AtomicI32 = AtomicI32::new(-1);
static SSL_INDEX: AtomicI32 = AtomicI32::new(-1);

macro_rules! fn_slot {
    ($load:ident, $store:ident, $field:ident, $ty:ty) => {
        pub fn $load(&self) -> Option<$ty> {
            let v = self.$field.load(Ordering::Acquire);
            // SAFETY: the slot holds 0 or a value stored by `$store` from an `$ty`.
            (v != 0).then(|| unsafe { std::mem::transmute::<usize, $ty>(v) })
        }
        pub fn $store(&self, cb: Option<$ty>) {
            self.$field
                .store(cb.map_or(0, |f| f as usize), Ordering::Release);
        }
    };
}

impl CtxRecord {
    /// A record with no application callbacks yet.
    pub fn new(cache: Arc<Cache>, preload: bool) -> Self {
        CtxRecord {
            cache,
            preload,
            said: AtomicU8::new(0),
            tickets: AtomicU8::new(0),
            app_new: AtomicUsize::new(0),
            app_get: AtomicUsize::new(0),
            app_remove: AtomicUsize::new(0),
            hello: OnceLock::new(),
        }
    }

    /// True the first time it is called with `what` (a bit) for this context.
    pub fn say_once(&self, what: u8) -> bool {
        self.said.fetch_or(what, Ordering::Relaxed) & what == 0
    }

    /// Whose ticket keys serve this context (see `interpose::tickets`).
    pub fn tickets(&self) -> u8 {
        self.tickets.load(Ordering::Acquire)
    }

    pub fn set_tickets(&self, state: u8) {
        self.tickets.store(state, Ordering::Release);
    }

    fn_slot!(app_new_cb, set_app_new_cb, app_new, NewSessionCb);
    fn_slot!(app_get_cb, set_app_get_cb, app_get, GetSessionCb);
    fn_slot!(
        app_remove_cb,
        set_app_remove_cb,
        app_remove,
        RemoveSessionCb
    );
}

/// The record of `ctx`, if a cache is attached to it.
///
/// # Safety
/// `ctx` is a live context; the reference is valid until the context is freed.
pub unsafe fn record<'a>(ctx: *mut ssl_ctx_st) -> Option<&'a CtxRecord> {
    let idx = CTX_INDEX.load(Ordering::Acquire);
    if idx < 0 || ctx.is_null() {
        return None;
    }
    // SAFETY: ctx is live; the slot holds NULL or a Box<CtxRecord> pointer set by `attach`
    // and freed only by `free_record` when the context is freed.
    unsafe {
        SSL_CTX_get_ex_data(sys_ctx(ctx), idx)
            .cast::<CtxRecord>()
            .as_ref()
    }
}

/// The context whose callbacks OpenSSL runs for `ssl`: the one it was created with, even
/// after `SSL_set_SSL_CTX` switched it (OpenSSL keeps that one as the session context but
/// offers no getter; our `SSL_set_SSL_CTX` remembers it).
///
/// # Safety
/// `ssl` is a live connection.
pub unsafe fn session_ctx(ssl: *mut ssl_st) -> *mut ssl_ctx_st {
    let idx = SSL_INDEX.load(Ordering::Acquire);
    if idx >= 0 {
        // SAFETY: ssl is live; the slot holds NULL or a context pointer that the connection
        // itself keeps a reference to (its session context).
        let orig = unsafe { SSL_get_ex_data(sys_ssl(ssl), idx) };
        if !orig.is_null() {
            return orig.cast();
        }
    }
    // SAFETY: ssl is live.
    unsafe { SSL_get_SSL_CTX(sys_ssl(ssl)).cast() }
}

/// Called by our `SSL_set_SSL_CTX` before the switch: remembers the connection's original
/// context the first time it is switched. Does nothing before any cache is attached.
///
/// # Safety
/// `ssl` is a live connection.
pub unsafe fn remember_session_ctx(ssl: *mut ssl_st) {
    let idx = SSL_INDEX.load(Ordering::Acquire);
    if idx < 0 {
        return;
    }
    // SAFETY: ssl is live.
    unsafe {
        if SSL_get_ex_data(sys_ssl(ssl), idx).is_null() {
            let current = SSL_get_SSL_CTX(sys_ssl(ssl));
            SSL_set_ex_data(sys_ssl(ssl), idx, current.cast());
        }
    }
}

/// Frees a context's record when OpenSSL frees the context (after its final flush, whose
/// remove callbacks still find the record).
unsafe extern "C" fn free_record(
    _parent: *mut c_void,
    ptr: *mut c_void,
    _ad: *mut CRYPTO_EX_DATA,
    _idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    if ptr.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: non-NULL values in our slot are Box<CtxRecord> pointers from `attach`;
        // OpenSSL calls this once per context.
        drop(unsafe { Box::from_raw(ptr.cast::<CtxRecord>()) });
    });
}

pub(crate) fn ensure_indices() -> Result<c_int, Error> {
    if CTX_INDEX.load(Ordering::Acquire) < 0 {
        // SAFETY: plain OpenSSL calls; free_record has the CRYPTO_EX_free signature.
        let (ctx_idx, ssl_idx) = unsafe {
            (
                CRYPTO_get_ex_new_index(
                    CRYPTO_EX_INDEX_SSL_CTX,
                    0,
                    std::ptr::null_mut(),
                    None,
                    None,
                    Some(free_record),
                ),
                CRYPTO_get_ex_new_index(
                    CRYPTO_EX_INDEX_SSL,
                    0,
                    std::ptr::null_mut(),
                    None,
                    None,
                    None,
                ),
            )
        };
        if ctx_idx < 0 || ssl_idx < 0 || !crate::suspend::pending::ensure_index() {
            return Err(Error::new(
                ErrorKind::Internal,
                "OpenSSL could not allocate an ex_data index",
            ));
        }
        SSL_INDEX.store(ssl_idx, Ordering::Release);
        CTX_INDEX.store(ctx_idx, Ordering::Release);
    }
    Ok(CTX_INDEX.load(Ordering::Acquire))
}

/// Whether the program has server session caching on for `ctx`
/// (`SSL_CTX_get_session_cache_mode(ctx) & SSL_SESS_CACHE_SERVER`).
///
/// # Safety
/// `ctx` is a live context.
pub unsafe fn server_caching_on(ctx: *mut ssl_ctx_st) -> bool {
    // SAFETY: ctx is live; this control only reads the mode.
    let mode = unsafe {
        SSL_CTX_ctrl(
            sys_ctx(ctx),
            crate::ossl::SSL_CTRL_GET_SESS_CACHE_MODE,
            0,
            std::ptr::null_mut(),
        )
    };
    mode & SSL_SESS_CACHE_SERVER != 0
}

/// Makes the cache `ctx`'s session store: `SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL`.
///
/// # Safety
/// `ctx` is a live context.
pub unsafe fn make_server_cache(ctx: *mut ssl_ctx_st) {
    // SAFETY: ctx is live; this control sets the mode.
    unsafe {
        SSL_CTX_ctrl(
            sys_ctx(ctx),
            SSL_CTRL_SET_SESS_CACHE_MODE,
            SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL,
            std::ptr::null_mut(),
        )
    };
}
