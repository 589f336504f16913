//! OpenSSL's per-thread error queue, kept as the server left it.
//!
//! The library's TLS calls run on the server's own threads too (a lookup runs inside one of
//! the server's handshakes), where OpenSSL's per-thread error queue is the server's: every
//! call marks the queue first and drops, when it returns, exactly what it added, so a
//! server never finds our errors in its queue (`SSL_get_error` reads it).

use crate::ossl::{ERR_pop_to_mark, ERR_set_mark};
use openssl_sys as sys;
use std::ffi::CStr;
use std::os::raw::c_ulong;

/// Drops, when dropped, the errors OpenSSL queued on this thread since it was made.
pub(super) struct ErrorQueueMark {
    /// The newest entry when the mark was made (0: the queue was empty, and everything in
    /// it later is ours).
    before: c_ulong,
}

impl ErrorQueueMark {
    pub(super) fn new() -> ErrorQueueMark {
        // SAFETY: no preconditions; both look at this thread's queue only. On an empty
        // queue ERR_set_mark sets nothing, and ERR_pop_to_mark later empties the queue,
        // which then holds only our entries.
        let before = unsafe {
            ERR_set_mark();
            sys::ERR_peek_last_error()
        };
        ErrorQueueMark { before }
    }
}

impl Drop for ErrorQueueMark {
    fn drop(&mut self) {
        // SAFETY: no preconditions; drops the entries after our mark (and the mark).
        unsafe { ERR_pop_to_mark() };
    }
}

/// The reasons OpenSSL queued on this thread since `mark` was made, oldest first, joined:
/// "certificate verify failed", "wrong version number", … (empty if none). Entries from
/// before the mark are the server's and are left alone: then only our newest is named.
pub(super) fn queued_reasons(mark: &ErrorQueueMark) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut push = |e: c_ulong| {
        // SAFETY: a static string or NULL, for any code.
        let r = unsafe { sys::ERR_reason_error_string(e) };
        let text = if r.is_null() {
            format!("error {e:#x}")
        } else {
            // SAFETY: NUL-terminated static string from OpenSSL.
            unsafe { CStr::from_ptr(r) }.to_string_lossy().into_owned()
        };
        if !out.contains(&text) {
            out.push(text);
        }
    };
    if mark.before == 0 {
        loop {
            // SAFETY: no preconditions; takes the oldest entry, ours (the queue was empty).
            let e = unsafe { sys::ERR_get_error() };
            if e == 0 {
                break;
            }
            push(e);
        }
    } else {
        // SAFETY: no preconditions; only looks.
        let newest = unsafe { sys::ERR_peek_last_error() };
        if newest != mark.before {
            push(newest);
        }
    }
    out.join(": ")
}
