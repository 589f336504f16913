//! sesscache: a shared TLS session cache for OpenSSL servers, with a C ABI.
//!
//! Layers, each importing only its own and those below it (checked by
//! `scripts/layers.py`, run by `make check`):
//! 5. [`ffi`]: the C boundary (explicit API, ready-made callbacks and, with the `interpose`
//!    feature, the interposed OpenSSL functions); nothing else is exported;
//! 4. [`interpose`]: everything that knows `SSL_CTX` and `SSL`: the real OpenSSL functions,
//!    per-context records, attaching, the callbacks installed on attached contexts, what
//!    the cache does in each, server connections, the process-wide cache and preload mode;
//! 3. [`cache`]: the backend-independent core (policy, counters, the codec between
//!    sessions and stored bytes, the front of decoded sessions); [`session`]:
//!    `SSL_SESSION` references and DER;
//! 2. [`store`]: bytes under session IDs, the backends and the one factory naming them;
//! 1. [`config`]: cache URLs;
//! 0. [`boundary`] (the panic boundary and the thread-local error), [`secret`] (wiped
//!    bytes), [`error`], [`log`] (diagnostics, rate limited where an event can repeat),
//!    [`clock`], [`ossl`] (OpenSSL declarations openssl-sys lacks), [`pid`] (the process ID without a system call), [`threads`] (threads
//!    that take none of the host's signals).

pub mod boundary;
pub mod cache;
pub mod clock;
pub mod config;
pub mod env;
pub mod error;
pub mod fault;
pub mod ffi;
pub mod interpose;
pub mod log;
pub mod ossl;
pub mod pid;
pub mod secret;
pub mod session;
pub mod store;
pub mod suspend;
#[cfg(test)]
mod test_sessions;
pub mod threads;
#[cfg(test)]
mod wipe_tests;
