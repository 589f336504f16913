//! The C boundary: every exported function, the panic guard and the thread-local error.

pub mod api;
pub mod callbacks;
#[cfg(feature = "interpose")]
pub mod interposed;

use crate::error::ErrorKind;
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_ERROR_CODE: Cell<i32> = const { Cell::new(0) };
}

/// Categories of failure, as `sesscache_last_error_code()` reports them. The numbers are part
/// of the API: they never change, and new categories get new numbers.
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sesscache_error {
    /// The last call that reports errors succeeded.
    SESSCACHE_OK = 0,
    /// A NULL pointer, a bad size or another argument the caller got wrong.
    SESSCACHE_ERR_ARGUMENT = 1,
    /// The cache URL is invalid; the message names the bad part.
    SESSCACHE_ERR_URL = 2,
    /// The backend refused: e.g. a `shm:` segment that another user owns or could reach.
    SESSCACHE_ERR_PERMISSION = 3,
    /// The backend could not be reached or made: no room, no such service, a system limit.
    SESSCACHE_ERR_UNAVAILABLE = 4,
    /// The backend exists but this library cannot use it: another layout version, another
    /// size than asked for, damaged.
    SESSCACHE_ERR_INCOMPATIBLE = 5,
    /// The call does not fit the current state: e.g. another cache is already attached.
    SESSCACHE_ERR_STATE = 6,
    /// A bug or an OpenSSL failure inside the library.
    SESSCACHE_ERR_INTERNAL = 7,
}

impl From<ErrorKind> for sesscache_error {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Argument => sesscache_error::SESSCACHE_ERR_ARGUMENT,
            ErrorKind::Url => sesscache_error::SESSCACHE_ERR_URL,
            ErrorKind::Permission => sesscache_error::SESSCACHE_ERR_PERMISSION,
            ErrorKind::Unavailable => sesscache_error::SESSCACHE_ERR_UNAVAILABLE,
            ErrorKind::Incompatible => sesscache_error::SESSCACHE_ERR_INCOMPATIBLE,
            ErrorKind::State => sesscache_error::SESSCACHE_ERR_STATE,
            ErrorKind::Internal => sesscache_error::SESSCACHE_ERR_INTERNAL,
        }
    }
}

/// Records the category and the message `sesscache_last_error_code()` and
/// `sesscache_last_error()` return on this thread.
pub(crate) fn set_error(kind: ErrorKind, msg: impl Into<String>) {
    let msg = msg.into().replace('\0', " ");
    let c = CString::new(msg).unwrap_or_default();
    // try_with: the thread may be exiting, in which case there is nobody left to ask.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
    let _ = LAST_ERROR_CODE.try_with(|e| e.set(sesscache_error::from(kind) as i32));
}

pub(crate) fn clear_error() {
    let _ = LAST_ERROR.try_with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
    let _ = LAST_ERROR_CODE.try_with(|e| e.set(0));
}

pub(crate) fn last_error_code() -> i32 {
    LAST_ERROR_CODE.try_with(|e| e.get()).unwrap_or(0)
}

pub(crate) fn last_error_ptr() -> *const std::os::raw::c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs `f`, turning a panic into `fallback` and an error message: a panic never unwinds
/// into C.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
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
