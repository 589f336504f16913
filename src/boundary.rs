//! The panic boundary and the thread-local error: every function C can call runs its body
//! through [`guard`], and a failure leaves a category and a message here for
//! `sesscache_last_error_code()` / `sesscache_last_error()` to return.

use crate::error::ErrorKind;
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_ERROR_KIND: Cell<Option<ErrorKind>> = const { Cell::new(None) };
}

/// Records the category and the message `sesscache_last_error_code()` and
/// `sesscache_last_error()` return on this thread.
pub(crate) fn set_error(kind: ErrorKind, msg: impl Into<String>) {
    let msg = msg.into().replace('\0', " ");
    let c = CString::new(msg).unwrap_or_default();
    // try_with: the thread may be exiting, in which case there is nobody left to ask.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
    let _ = LAST_ERROR_KIND.try_with(|e| e.set(Some(kind)));
}

pub(crate) fn clear_error() {
    let _ = LAST_ERROR.try_with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
    let _ = LAST_ERROR_KIND.try_with(|e| e.set(None));
}

/// The category of this thread's last error; None after a success.
pub(crate) fn last_error_kind() -> Option<ErrorKind> {
    LAST_ERROR_KIND.try_with(|e| e.get()).unwrap_or(None)
}

pub(crate) fn last_error_ptr() -> *const std::os::raw::c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs `f`, turning a panic into `fallback`, an error message for
/// `sesscache_last_error()` and a log line (at most one a minute, with a count of those held
/// back): a panic never unwinds into C, and the program carries on as if the library had
/// not been there for that call (a lookup misses, a store is skipped, an API call fails).
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            crate::log_limited!(
                crate::log::Level::Error,
                "internal error (a panic, caught): {what}; the call was skipped and the program carries on"
            );
            set_error(
                ErrorKind::Internal,
                format!("sesscache internal error: {what}"),
            );
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: last_error_ptr always returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn guard_catches_panics() {
        clear_error();
        let v = guard(7, || -> i32 { panic!("boom") });
        assert_eq!(v, 7);
        assert!(last().contains("boom"));
        clear_error();
        assert_eq!(last(), "");
        assert_eq!(guard(0, || 3), 3);
    }
}
