//! Attaching a cache to a context: a record in its ex_data, our callbacks in OpenSSL.

use crate::cache::Cache;
use crate::error::{Error, ErrorKind};
use crate::interpose::quic;
use crate::interpose::real::real;
use crate::interpose::record::{ensure_indices, make_server_cache, record, CtxRecord};
use crate::interpose::tickets;
use crate::interpose::trampolines;
use crate::ossl::{ssl_ctx_st, sys_ctx};
use crate::suspend::hello;
use crate::suspend::mode::{self, AsyncMode};
use crate::suspend::pending::DoneCb;
use openssl_sys::SSL_CTX_set_ex_data;
use std::sync::{Arc, Mutex};

/// Serialises attaches (rare, configuration-time); lookups never take it.
static ATTACH: Mutex<()> = Mutex::new(());

/// Attaches `cache` to `ctx`: installs our callbacks in OpenSSL (the application's own
/// callbacks are kept in the record and still run), and makes the cache the context's
/// session store (`SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL`). Attaching the same
/// cache again does nothing and returns `Ok(false)`; attaching another cache to an attached
/// context is an error. `Ok(true)`: newly attached. `preload`: attached by preload mode.
///
/// # Safety
/// `ctx` is a live context.
pub unsafe fn attach(
    ctx: *mut ssl_ctx_st,
    cache: &Arc<Cache>,
    preload: bool,
) -> Result<bool, Error> {
    // SAFETY: ctx is live (caller).
    if unsafe { quic::is_quic_ctx(ctx) } {
        return Err(Error::new(
            ErrorKind::Argument,
            "this SSL_CTX is a QUIC context: sesscache does not serve QUIC connections (they resume through OpenSSL's own tickets)",
        ));
    }
    let real = real();
    let (
        Some(get_new),
        Some(get_get),
        Some(get_remove),
        Some(set_new),
        Some(set_get),
        Some(set_remove),
    ) = (
        real.get_new_cb(),
        real.get_get_cb(),
        real.get_remove_cb(),
        real.set_new_cb(),
        real.set_get_cb(),
        real.set_remove_cb(),
    )
    else {
        return Err(Error::new(
            ErrorKind::Internal,
            "the real OpenSSL session-callback functions were not found",
        ));
    };
    let _guard = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
    let idx = ensure_indices()?;
    // SAFETY: ctx is live (caller).
    if let Some(rec) = unsafe { record(ctx) } {
        return if Arc::ptr_eq(&rec.cache, cache) {
            Ok(false)
        } else {
            Err(Error::new(
                ErrorKind::State,
                "this SSL_CTX already has another sesscache attached",
            ))
        };
    }
    let rec = Box::new(CtxRecord::new(cache.clone(), preload));
    // SAFETY: ctx is live; the real getters/setters are OpenSSL's.
    unsafe {
        rec.set_app_new_cb(get_new(ctx));
        rec.set_app_get_cb(get_get(ctx));
        rec.set_app_remove_cb(get_remove(ctx));
        let raw = Box::into_raw(rec);
        if SSL_CTX_set_ex_data(sys_ctx(ctx), idx, raw.cast()) != 1 {
            drop(Box::from_raw(raw));
            return Err(Error::new(
                ErrorKind::Internal,
                "OpenSSL could not store the cache in the SSL_CTX",
            ));
        }
        set_new(ctx, Some(trampolines::new_session));
        set_get(ctx, Some(trampolines::get_session));
        set_remove(ctx, Some(trampolines::remove_session));
        make_server_cache(ctx);
        if let Some(rec) = record(ctx) {
            tickets::install(ctx, rec);
        }
    }
    Ok(true)
}

/// Attaches `cache` to `ctx` as [`attach`] does, in asynchronous mode: the cache's
/// ClientHello callback may suspend handshakes while a lookup runs (`crate::suspend`), and
/// tells `done` (with `done_arg`) when a lookup finishes. The program's own ClientHello
/// callback, set before or after, runs first. Attaching again with the same callback does
/// nothing; with another one it is an error.
///
/// # Safety
/// `ctx` is a live context; `done`, if given, may be called from any thread with `done_arg`.
pub unsafe fn attach_async(
    ctx: *mut ssl_ctx_st,
    cache: &Arc<Cache>,
    done: Option<DoneCb>,
    done_arg: *mut std::ffi::c_void,
) -> Result<(), Error> {
    let Some(set_hello) = real().set_client_hello_cb() else {
        return Err(Error::new(
            ErrorKind::Internal,
            "the loaded libssl has no SSL_CTX_set_client_hello_cb (OpenSSL 1.1.1 or later is needed)",
        ));
    };
    // SAFETY: ctx is live (caller).
    unsafe { attach(ctx, cache, false) }?;
    let _guard = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: ctx is live and has a record now.
    let Some(rec) = (unsafe { record(ctx) }) else {
        return Err(Error::new(
            ErrorKind::Internal,
            "the context lost its record",
        ));
    };
    if let Some(mode) = rec.hello.get() {
        return if mode.same(done, done_arg) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::State,
                "this SSL_CTX is already attached asynchronously with another callback",
            ))
        };
    }
    let app = mode::take_remembered(ctx);
    let _ = rec.hello.set(AsyncMode::new(done, done_arg, app));
    // SAFETY: OpenSSL's setter on a live context, with a callback of its type.
    unsafe { set_hello(ctx, Some(hello::client_hello), std::ptr::null_mut()) };
    Ok(())
}
