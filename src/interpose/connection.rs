//! What the library does to a server connection of an attached context, at the two moments
//! that matter: when it becomes a server (`SSL_set_accept_state`, which `SSL_accept` also
//! calls) and when it is freed or cleared.
//!
//! Deciding per connection, not per context, keeps client connections made from
//! server-capable contexts (`TLS_method`) exactly as they were: same ClientHello, same
//! session handling.

use crate::interpose::record::{record, server_caching_on, session_ctx};
use crate::ossl::{ssl_st, sys_ssl, SSL_in_before, SSL_in_init};
use openssl_sys::{SSL_get_shutdown, SSL_is_server, SSL_set_shutdown, SSL_SENT_SHUTDOWN};

/// A connection just became a server: preload mode applies its policy (tickets, `force`).
///
/// # Safety
/// `ssl` is a live connection.
pub unsafe fn on_accept(ssl: *mut ssl_st) {
    crate::fault::inject("accept");
    // SAFETY: ssl is live (caller); its session context lives as long as it does.
    let ctx = unsafe { session_ctx(ssl) };
    // SAFETY: as above.
    if let Some(rec) = unsafe { record(ctx) } {
        if rec.preload {
            // SAFETY: ssl and ctx are live.
            unsafe { crate::interpose::preload::on_accept(ssl, ctx, rec) };
        }
    }
}

/// A server connection was switched to context `to` (SNI). OpenSSL decides whether a new
/// TLS 1.2 session gets an ID from the *current* context's cache mode, while it stores and
/// looks up through the original one: where `force=1` made the cache serve the original
/// context, the context switched to must not veto the session ID either.
///
/// # Safety
/// `ssl` is a live connection; `to` is NULL or a live context.
pub unsafe fn on_switch(ssl: *mut ssl_st, to: *mut crate::ossl::ssl_ctx_st) {
    if to.is_null() {
        return;
    }
    // SAFETY: ssl is live (caller); its session context lives as long as it does.
    let ctx = unsafe { session_ctx(ssl) };
    // SAFETY: as above; `to` is live (caller).
    unsafe {
        if let Some(rec) = record(ctx) {
            if rec.preload
                && rec.cache.settings().force
                && SSL_is_server(sys_ssl(ssl)) == 1
                && !server_caching_on(to)
            {
                crate::interpose::record::make_server_cache(to);
            }
        }
    }
}

/// A connection is being freed or cleared. OpenSSL would remove its session from the cache
/// (and mark it not resumable) if the handshake finished but no close_notify was sent: a rule
/// from before TLS 1.1 (RFC 5246 lets such sessions be resumed). Many servers never send
/// close_notify (Python's `ssl`, plain socket closes), so on a context whose cache the
/// library serves, such a connection is marked as having sent it, and its session stays
/// resumable. A session ended by a fatal alert was already removed when the alert was sent or
/// received; `SSL_CTX_remove_session` and expiry remove as before.
///
/// # Safety
/// `ssl` is a live connection.
pub unsafe fn on_free(ssl: *mut ssl_st) {
    crate::fault::inject("free");
    // SAFETY: ssl is live (caller). A new handshake (or none) follows: what the last one
    // looked up is not for it.
    unsafe { crate::suspend::pending::forget(ssl) };
    // SAFETY: ssl is live (caller); its session context lives as long as it does.
    let ctx = unsafe { session_ctx(ssl) };
    // SAFETY: as above.
    if unsafe { record(ctx) }.is_none() || !unsafe { server_caching_on(ctx) } {
        return;
    }
    let s = sys_ssl(ssl);
    // SAFETY: s is live; these only read and set its handshake and shutdown state.
    unsafe {
        if SSL_is_server(s) == 1 && SSL_in_init(s) == 0 && SSL_in_before(s) == 0 {
            let shutdown = SSL_get_shutdown(s);
            if shutdown & SSL_SENT_SHUTDOWN == 0 {
                SSL_set_shutdown(s, shutdown | SSL_SENT_SHUTDOWN);
            }
        }
    }
}
