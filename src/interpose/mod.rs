//! Interposition: how our definitions of OpenSSL's session-callback functions reach the
//! real ones, what we remember about each `SSL_CTX` a cache is attached to, and what we do
//! to its server connections.
//!
//! Contexts with no cache attached have no record and no state of ours: every call is
//! forwarded unchanged, so the library cannot be seen through OpenSSL's API.

pub mod attach;
pub mod connection;
pub mod hooks;
pub mod preload;
pub mod quic;
pub mod real;
pub mod record;
pub mod sni;
pub mod stats_report;
pub mod tickets;
pub mod trampolines;
