//! sesscache: a shared TLS session cache for OpenSSL servers, with a C ABI.
//!
//! Layout:
//! - [`ffi`]: the C boundary (explicit API, ready-made callbacks, the interposed OpenSSL
//!   functions); nothing else is exported;
//! - [`interpose`]: reaching the real OpenSSL functions, per-`SSL_CTX` records, the
//!   callbacks installed on attached contexts;
//! - [`hooks`]: what the cache does in each OpenSSL session callback;
//! - [`cache`]: the backend-independent core; [`store`]: the storage trait and backends;
//! - [`config`]: cache URLs; [`session`]: `SSL_SESSION` references and DER;
//! - [`preload`]: the process-wide cache and preload mode; [`log`]: diagnostics (rate
//!   limited where an event can repeat); [`clock`]: wall and monotonic time.

pub mod boundary;
pub mod cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod ffi;
pub mod interpose;
pub mod log;
pub mod ossl;
pub mod secret;
pub mod session;
pub mod store;
#[cfg(test)]
mod test_sessions;
#[cfg(test)]
mod wipe_tests;
