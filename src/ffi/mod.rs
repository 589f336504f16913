//! The C boundary: every exported function (each runs its body through
//! [`crate::boundary::guard`]) and the error categories C sees.

pub mod api;
pub mod callbacks;
#[cfg(feature = "interpose")]
pub mod interposed;
pub mod suspend;

use crate::error::ErrorKind;

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
