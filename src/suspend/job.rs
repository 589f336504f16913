//! Asynchronous lookups inside OpenSSL async jobs (`SSL_MODE_ASYNC`): for programs that
//! already run their handshakes in jobs (HAProxy's `ssl-mode-async`), preloaded or linked.
//!
//! Inside a job the get-session callback runs on the job's own small stack, with no libssl
//! lock held. Where the backend needs a round trip, it hands the lookup to a worker,
//! registers the connection's descriptor with the job's wait context, and pauses the job
//! (`ASYNC_pause_job`): the program's `SSL_do_handshake` returns with
//! `SSL_ERROR_WANT_ASYNC`, it polls the descriptors `SSL_get_all_async_fds` gives (or only
//! the changes, `SSL_get_changed_async_fds`), and calls the handshake again, which resumes
//! the callback here. A program that resumes early finds the job paused again.
//!
//! The descriptor is one eventfd per connection, made at its first suspension and kept in
//! the wait context under this module's key for the connection's life: later suspensions
//! reuse it (no add/remove churn in the program's poller), it is drained on each resume,
//! and OpenSSL's cleanup of the wait context (at `SSL_free`) releases it. The worker holds
//! its own reference while it runs, so a connection freed mid-lookup never has its
//! descriptor number closed under a late signal.

use super::eventfd::EventFd;
use super::pending::{self, Pending};
use crate::cache::Cache;
use crate::ossl::sys_ssl;
use crate::ossl::{
    ssl_st, ASYNC_WAIT_CTX_get_fd, ASYNC_WAIT_CTX_set_wait_fd, ASYNC_get_current_job,
    ASYNC_get_wait_ctx, ASYNC_pause_job,
};
use crate::session::SessionObject;
use crate::store::SessionKey;
use openssl_sys::{SSL_ctrl, SSL_CTRL_MODE};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::sync::Arc;

/// `SSL_MODE_ASYNC` (the same in every version from 1.1.0).
const SSL_MODE_ASYNC: std::os::raw::c_long = 0x100;

/// What names our descriptor in a wait context: this static's address.
static KEY: u8 = 0;

fn key() -> *const c_void {
    (&KEY as *const u8).cast()
}

/// Releases the wait context's reference to the descriptor (OpenSSL's cleanup, when it
/// frees the context or clears the descriptor at its owner's request).
unsafe extern "C" fn release(
    _ctx: *mut c_void,
    _key: *const c_void,
    _fd: c_int,
    custom: *mut c_void,
) {
    if custom.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `custom` is the Arc<EventFd> pointer `wait_fd` registered, released once.
        drop(unsafe { Arc::from_raw(custom.cast_const().cast::<EventFd>()) });
    });
}

/// The connection's descriptor in wait context `wctx`: the one registered before, or a
/// new one registered now. None if none can be made or registered.
///
/// # Safety
/// `wctx` is the current job's live wait context.
unsafe fn wait_fd(wctx: *mut c_void) -> Option<Arc<EventFd>> {
    let mut fd: c_int = -1;
    let mut custom: *mut c_void = std::ptr::null_mut();
    // SAFETY: wctx is live (caller); out-pointers are to locals.
    if unsafe { ASYNC_WAIT_CTX_get_fd(wctx, key(), &mut fd, &mut custom) } == 1 && !custom.is_null()
    {
        let p = custom.cast_const().cast::<EventFd>();
        // SAFETY: what we registered: an Arc<EventFd> pointer the context still holds.
        return Some(unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        });
    }
    let efd = Arc::new(EventFd::new()?);
    let raw = Arc::into_raw(efd.clone());
    // SAFETY: wctx is live; `release` has the cleanup signature and takes back `raw`.
    let ok = unsafe {
        ASYNC_WAIT_CTX_set_wait_fd(wctx, key(), efd.fd(), raw.cast_mut().cast(), Some(release))
    };
    if ok != 1 {
        // SAFETY: not registered: the reference is ours again.
        drop(unsafe { Arc::from_raw(raw) });
        return None;
    }
    Some(efd)
}

/// Looks `key` up for `ssl` without blocking its thread, if the get-session callback runs
/// inside an OpenSSL async job: answered at once where the backend can, else the job is
/// paused until a worker has the answer. None outside a job (the caller blocks as before).
///
/// # Safety
/// `ssl` is live, inside its get-session callback.
pub unsafe fn lookup(
    cache: &Arc<Cache>,
    ssl: *mut ssl_st,
    key: SessionKey,
) -> Option<Option<SessionObject>> {
    // SAFETY: ssl is live (caller); plain OpenSSL calls; the job and its wait context are
    // the running job's.
    let wctx = unsafe {
        // Only a connection in async mode runs its handshake in a job (checked first: it
        // costs less than asking for the current job).
        if SSL_ctrl(sys_ssl(ssl), SSL_CTRL_MODE, 0, std::ptr::null_mut()) & SSL_MODE_ASYNC == 0 {
            return None;
        }
        let job = ASYNC_get_current_job();
        if job.is_null() {
            return None;
        }
        ASYNC_get_wait_ctx(job)
    };
    if let Some(found) = cache.resolve_now(&key) {
        return Some(found);
    }
    if wctx.is_null() {
        return None;
    }
    let p: Arc<Pending> = super::start(cache, key, None);
    // Kept with the connection, so that freeing it cancels the lookup and lets the
    // descriptor go. A job that is never resumed again keeps its stack forever (HAProxy
    // frees a connection whose job is paused without resuming it, once the descriptor
    // fires): across pauses this stack holds only a weak reference to the descriptor, or
    // every connection closed during a lookup would leak one.
    // SAFETY: ssl is live (caller).
    unsafe { pending::set(ssl, p.clone()) };
    if p.is_running() {
        // Registered only now that the job will pause, and always shown by a pause: the
        // program learns of a descriptor only from one (SSL_ERROR_WANT_ASYNC, then
        // SSL_get_changed_async_fds) but may unregister every descriptor of the wait
        // context when it closes the connection, and HAProxy 2.6 aborts on one it never
        // added (BUG_ON in fd_delete).
        // SAFETY: wctx is the running job's.
        match unsafe { wait_fd(wctx) } {
            Some(fd) => {
                fd.drain();
                p.use_fd(fd.clone());
                if !p.is_running() {
                    // Finished before the lookup knew the descriptor: nobody signalled it.
                    fd.signal();
                }
                let weak = Arc::downgrade(&fd);
                drop(fd);
                crate::log!(
                    crate::log::Level::Debug,
                    "suspend: session id#{:08x}: the async job pauses for the lookup",
                    crate::log::fingerprint(key.as_bytes())
                );
                loop {
                    // SAFETY: inside a job (checked above); returns when the program
                    // resumes it.
                    if unsafe { ASYNC_pause_job() } == 0 {
                        p.wait();
                        break;
                    }
                    // A program may resume a job early: pause again until it finished.
                    if !p.is_running() {
                        break;
                    }
                }
                if let Some(fd) = weak.upgrade() {
                    fd.drain();
                }
            }
            // No descriptor to offer: the lookup is waited for here, within its budget.
            None => p.wait(),
        }
    }
    let found = p.claim(key.as_bytes()).unwrap_or(None);
    Some(found)
}
