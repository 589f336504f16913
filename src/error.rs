//! What went wrong, in categories a program (and the command-line tool) can act on, with a
//! message for people. The categories are part of the C API (`sesscache_last_error_code`)
//! and keep their numbers across versions.

use std::fmt;

/// The category of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A NULL pointer, a bad size or another argument the caller got wrong.
    Argument,
    /// The cache URL is invalid; the message names the bad part.
    Url,
    /// The backend refused us: a segment owned by another user or reachable by others.
    Permission,
    /// The backend could not be reached or made: no room, no such service, a system limit.
    Unavailable,
    /// The backend exists but cannot be used by this library: another layout version, another
    /// size than asked for, damaged.
    Incompatible,
    /// The call does not fit the current state: e.g. another cache is already attached.
    State,
    /// A bug or an OpenSSL failure inside the library.
    Internal,
}

/// A failure: its category and a message naming what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
