//! The C API of asynchronous lookups: attach a cache so that handshakes never wait for a
//! backend's round trip, and the descriptor a suspended handshake waits on.

use crate::boundary::{clear_error, guard, set_error};
use crate::error::ErrorKind;
use crate::ffi::api::{new_reference, sesscache};
use crate::interpose::attach;
use crate::ossl::{ssl_ctx_st, ssl_st};
use crate::suspend::pending;
use std::ffi::c_void;
use std::os::raw::c_int;

/// Called when the lookup that suspended `ssl`'s handshake has finished (found, missed,
/// failed or timed out): the program may call the handshake again. Called on a library
/// thread, at most once per suspension, with the `arg` given to `sesscache_attach_async`.
/// `ssl` is live during the call (`SSL_free` waits for a call in progress, so the
/// callback must not free `ssl` nor wait for a thread that does), but another thread may
/// be using it: call no OpenSSL function on it other than reading ex_data the program set
/// before the handshake (`SSL_get_app_data`). It must not block: hand the connection to
/// the program's own thread (a queue, a pipe, an eventfd).
#[allow(non_camel_case_types)]
pub type sesscache_lookup_done = Option<unsafe extern "C" fn(ssl: *mut ssl_st, arg: *mut c_void)>;

/// `sesscache_attach`, in asynchronous mode: the handshakes of `ctx` never wait for a
/// backend that needs a network round trip (`redis`). When a ClientHello offers a session
/// (a TLS 1.2 session ID, a TLS 1.3 stateful ticket) that is not at hand, the cache's
/// ClientHello callback starts its lookup on a library thread and returns
/// `SSL_CLIENT_HELLO_RETRY`: `SSL_do_handshake` (or `SSL_accept`, `SSL_read`, ...) returns
/// -1 with `SSL_get_error() == SSL_ERROR_WANT_CLIENT_HELLO_CB`. Wait until
/// `sesscache_lookup_fd(ssl)` is readable, or for `done`, then call the handshake again:
/// the session is resumed from the finished lookup without I/O. Lookups that `memory:` and
/// `shm:` caches, a redis `l1` tier or the circuit breaker answer never suspend. Up to 8
/// library threads per process run the lookups, each taking those queued for the same
/// cache in one round trip (up to 32); a lookup takes at most the backend's `timeout_ms`
/// once a thread runs it. The timeout, the breaker and every counter apply as to blocking
/// lookups.
///
/// A ClientHello callback the program sets on `ctx` (before or after this call) runs
/// first; if it returns `SSL_CLIENT_HELLO_RETRY` itself, `sesscache_lookup_fd` returns -1.
/// After the cache suspended a handshake, the program's callback is not called again for
/// that ClientHello. `done` may be NULL (use the descriptor); `arg` is passed to it.
/// Attaching again with the same `done` and `arg` is harmless; otherwise as
/// `sesscache_attach` (the context takes its own reference to the cache). Returns 1 on
/// success, 0 on error (see `sesscache_last_error()`). Call it while configuring `ctx`.
///
/// Freeing a connection whose lookup is in flight, or freeing the cache and its
/// contexts, is safe: the finished lookup is then dropped, and `done` is not called for
/// a connection after `SSL_free(ssl)` has returned. Since version 0.4.
///
/// # Safety
/// `cache` is NULL or a live handle; `ctx` is NULL or a live `SSL_CTX`; `done`, if not
/// NULL, may be called from any thread with `arg`.
#[no_mangle]
pub unsafe extern "C" fn sesscache_attach_async(
    cache: *mut sesscache,
    ctx: *mut ssl_ctx_st,
    done: sesscache_lookup_done,
    arg: *mut c_void,
) -> c_int {
    guard(0, || {
        if cache.is_null() || ctx.is_null() {
            set_error(
                ErrorKind::Argument,
                "sesscache_attach_async: cache and ctx must not be NULL",
            );
            return 0;
        }
        crate::fault::inject("attach");
        // SAFETY: cache is a live handle (caller's contract), checked non-NULL.
        let arc = unsafe { new_reference(cache) };
        // SAFETY: ctx is a live SSL_CTX (caller's contract); done may be called with arg.
        match unsafe { attach::attach_async(ctx, &arc, done, arg) } {
            Ok(()) => {
                clear_error();
                1
            }
            Err(e) => {
                set_error(e.kind, format!("sesscache_attach_async: {}", e.message));
                0
            }
        }
    })
}

/// After a handshake call on `ssl` returned with `SSL_ERROR_WANT_CLIENT_HELLO_CB`: the
/// descriptor to wait on, readable once the cache's lookup has finished (at once if it
/// already has). Returns -1 if the handshake is not suspended by the cache (the program's
/// own ClientHello callback returned RETRY; the handshake was resumed already), or if no
/// descriptor can be made (the process is out of them: then wait for the
/// `sesscache_attach_async` callback, or retry the handshake later).
///
/// The descriptor belongs to the library: do not read, write or close it. It stays valid
/// until the handshake is called again after the lookup finished, or `ssl` is freed;
/// remove it from your poll set before calling the handshake again. Calling the handshake
/// before it is readable is harmless: it returns `SSL_ERROR_WANT_CLIENT_HELLO_CB` again,
/// with the same descriptor. Call it on the thread that runs `ssl`'s handshake. Since
/// version 0.4.
///
/// # Safety
/// `ssl` is NULL or a live `SSL`.
#[no_mangle]
pub unsafe extern "C" fn sesscache_lookup_fd(ssl: *const ssl_st) -> c_int {
    guard(-1, || {
        if ssl.is_null() {
            return -1;
        }
        // SAFETY: ssl is live (caller's contract); only its ex_data is read.
        match unsafe { pending::of(ssl.cast_mut()) } {
            Some(p) => p.fd().unwrap_or(-1),
            None => -1,
        }
    })
}
