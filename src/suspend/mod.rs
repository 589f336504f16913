//! Lookups that do not block the handshake's thread.
//!
//! A `redis` lookup is a network round trip inside `SSL_do_handshake`: in an event-loop
//! server it stalls every other connection of the thread. OpenSSL has no way for a
//! get-session callback to answer "later" (BoringSSL's `SSL_magic_pending_session_ptr`),
//! but two of its mechanisms can suspend a handshake before or inside that callback:
//!
//! - [`hello`]: for programs that link the library and attach a cache with
//!   `sesscache_attach_async`. The cache's ClientHello callback, which runs before the
//!   session lookup, reads the session ID (TLS 1.2) or PSK identity (TLS 1.3) the lookup
//!   will ask for, starts the lookup on a worker and returns `SSL_CLIENT_HELLO_RETRY`:
//!   `SSL_do_handshake` returns with `SSL_ERROR_WANT_CLIENT_HELLO_CB`. The program waits on
//!   a descriptor (`sesscache_lookup_fd`) or a completion callback, calls the handshake
//!   again, and the get-session callback answers from the finished lookup without I/O.
//! - [`job`]: for programs whose handshakes run in OpenSSL async jobs (`SSL_MODE_ASYNC`,
//!   HAProxy's `ssl-mode-async`), preloaded or linked. The get-session callback hands the
//!   lookup to a worker, registers a descriptor with the job's wait context and pauses the
//!   job; the program sees `SSL_ERROR_WANT_ASYNC`, polls the descriptor, and resumes.
//!
//! Elsewhere the lookup blocks as before, within the backend's `timeout_ms`. Backends that
//! answer in microseconds (`memory:`, `shm:`, a redis `l1` hit, a write of this process not
//! yet sent, an open breaker) answer at once on either path and never suspend
//! ([`Cache::resolve_now`]). The worker runs the same lookup as the blocking path
//! ([`Cache::resolve`]): the timeout, the circuit breaker and every counter apply alike,
//! and a single-use TLS 1.3 ticket is taken once, by whichever lookup reaches the backend.

pub mod eventfd;
pub mod hello;
pub mod job;
pub mod mode;
pub mod pending;
pub mod workers;

use crate::cache::Cache;
use crate::store::SessionKey;
use pending::{Notify, Pending};
use std::sync::Arc;

/// Starts looking `key` up on a worker; `notify` is told when it finishes. If no worker can
/// be started, the lookup runs on this thread, and what is returned is finished and does
/// not suspend the handshake ([`Pending::suspends`]), with nobody notified.
pub fn start(cache: &Arc<Cache>, key: SessionKey, notify: Option<Notify>) -> Arc<Pending> {
    let pending = Pending::running(key);
    let lookup = workers::Lookup {
        cache: cache.clone(),
        key,
        pending: pending.clone(),
        notify,
    };
    if let Err(workers::Job::Lookup(lookup)) = workers::submit(workers::Job::Lookup(lookup)) {
        // No thread: on this one. (The cache may be dropped on a worker, when its last
        // user let it go while the lookup ran: a cache freed while a handshake waited.)
        let found = crate::boundary::guard(None, || lookup.cache.resolve(&lookup.key));
        return Pending::done(key, found);
    }
    pending
}
