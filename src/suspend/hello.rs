//! Asynchronous mode for programs that link the library (`sesscache_attach_async`): the
//! cache's ClientHello callback looks ahead at what the get-session callback will ask
//! for, starts that lookup, and suspends the handshake with `SSL_CLIENT_HELLO_RETRY` when
//! the backend needs a round trip. See the module above for the whole protocol.
//!
//! A ClientHello callback the program sets on the context, before or after attaching (our
//! `SSL_CTX_set_client_hello_cb` sees it), runs first; its RETRY or failure is passed on
//! as it is. After the cache suspended a handshake, the program's callback is not called
//! again for that ClientHello: it has already said yes to it.

use super::mode::AsyncMode;
use super::pending::{self, Pending};
use crate::cache::Cache;
use crate::interpose::record::{record, server_caching_on, session_ctx};
use crate::ossl::{ssl_st, sys_ssl, SSL_get_options};
use crate::store::SessionKey;
use openssl_sys::{
    SSL_OP_NO_TLSv1_3, SSL_client_hello_get0_ext, SSL_client_hello_get0_session_id,
    SSL_client_hello_isv2, SSL_ctrl, SSL_OP_NO_TICKET,
};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::sync::Arc;

/// `SSL_CLIENT_HELLO_SUCCESS`, `_RETRY`.
pub(crate) const HELLO_SUCCESS: c_int = 1;
pub(crate) const HELLO_RETRY: c_int = -1;

const TLS1_3_VERSION: u16 = 0x0304;
const EXT_SESSION_TICKET: u32 = 35;
const EXT_PRE_SHARED_KEY: u32 = 41;
const EXT_SUPPORTED_VERSIONS: u32 = 43;
const SSL_CTRL_GET_MIN_PROTO_VERSION: c_int = 130;
const SSL_CTRL_GET_MAX_PROTO_VERSION: c_int = 131;

/// The ClientHello callback of asynchronous contexts.
///
/// # Safety
/// Called by OpenSSL as a ClientHello callback: `ssl` is live, `al` writable.
pub unsafe extern "C" fn client_hello(
    ssl: *mut ssl_st,
    al: *mut c_int,
    _arg: *mut c_void,
) -> c_int {
    crate::boundary::guard(HELLO_SUCCESS, || {
        if ssl.is_null() {
            return HELLO_SUCCESS;
        }
        // SAFETY: OpenSSL passes a live connection; its session context is live with it.
        let ctx = unsafe { session_ctx(ssl) };
        // SAFETY: as above.
        let Some(rec) = (unsafe { record(ctx) }) else {
            return HELLO_SUCCESS;
        };
        let Some(mode) = rec.hello.get() else {
            return HELLO_SUCCESS;
        };
        // SAFETY: ssl is live (OpenSSL's call).
        let pending = unsafe { pending::of(ssl) };
        // SAFETY: ssl is live, inside its ClientHello callback.
        if let Some(p) = pending.filter(|p| unsafe { lookahead(ssl) }.is_some_and(|k| p.is_for(&k)))
        {
            // The same ClientHello again (a connection reused with SSL_clear makes another
            // one, which starts afresh).
            if p.is_running() {
                // Called again before the lookup finished: still waiting.
                return HELLO_RETRY;
            }
            if p.resume() {
                // The retry after our suspension: the program's callback already said yes.
                return HELLO_SUCCESS;
            }
        }
        if let Some((app, arg)) = mode.app() {
            // SAFETY: the program's callback, called as OpenSSL would.
            let r = unsafe { app(ssl, al, arg as *mut c_void) };
            if r != HELLO_SUCCESS {
                return r;
            }
        }
        // SAFETY: ctx is live; ssl is live inside its ClientHello callback.
        unsafe {
            if !server_caching_on(ctx) {
                return HELLO_SUCCESS;
            }
            match lookahead(ssl) {
                // The second ClientHello after a HelloRetryRequest, offering the ticket the
                // first one was given: answered from the connection (see `hooks`).
                Some(key)
                    if pending::of(ssl).is_some_and(|p| p.again(key.as_bytes()).is_some()) =>
                {
                    HELLO_SUCCESS
                }
                Some(key) => begin(&rec.cache, ssl, key, mode),
                None => HELLO_SUCCESS,
            }
        }
    })
}

/// Starts the lookup of `key` for `ssl`: answered at once where the backend can, else on a
/// worker, the handshake suspended.
///
/// # Safety
/// `ssl` is live, inside its ClientHello callback.
unsafe fn begin(cache: &Arc<Cache>, ssl: *mut ssl_st, key: SessionKey, mode: &AsyncMode) -> c_int {
    if let Some(found) = cache.resolve_now(&key) {
        // SAFETY: ssl is live (caller). If OpenSSL could not keep it, the get callback
        // looks up again (blocking), which only costs time.
        unsafe { pending::set(ssl, Pending::done(key, found)) };
        return HELLO_SUCCESS;
    }
    let p = super::start(cache, key, mode.notify(ssl));
    // SAFETY: ssl is live (caller).
    if !unsafe { pending::set(ssl, p.clone()) } {
        // Nowhere to keep it: the get callback will look up again; this one is dropped.
        p.cancel();
        return HELLO_SUCCESS;
    }
    if !p.suspends() {
        // Looked up on this thread (no worker could be started): the get callback takes it.
        return HELLO_SUCCESS;
    }
    crate::log!(
        crate::log::Level::Debug,
        "suspend: session id#{:08x}: the handshake waits for the lookup",
        crate::log::fingerprint(key.as_bytes())
    );
    HELLO_RETRY
}

/// The ID the get-session callback will ask for, read from the ClientHello: the first
/// 32-byte PSK identity when TLS 1.3 will be used with stateful tickets, or the session ID
/// when TLS 1.2 or older will be and no ticket is offered. None when no lookup will come
/// (a full handshake, a stateless ticket, an SSLv2 hello). A wrong guess costs a lookup
/// the handshake does not use, or a lookup that blocks: never a wrong session, since the
/// get callback takes only a result for the exact ID it asks for.
///
/// # Safety
/// `ssl` is live, inside its ClientHello callback.
pub unsafe fn lookahead(ssl: *mut ssl_st) -> Option<SessionKey> {
    let s = sys_ssl(ssl);
    // SAFETY: s is live inside its ClientHello callback; the extension bytes OpenSSL
    // returns live as long as the ClientHello, i.e. beyond this call.
    unsafe {
        if SSL_client_hello_isv2(s) == 1 {
            return None;
        }
        let ext = |t: u32| -> Option<&[u8]> {
            let mut out: *const u8 = std::ptr::null();
            let mut len = 0usize;
            (SSL_client_hello_get0_ext(s, t, &mut out, &mut len) == 1 && !out.is_null())
                .then(|| std::slice::from_raw_parts(out, len))
        };
        let options = SSL_get_options(s);
        let max = SSL_ctrl(s, SSL_CTRL_GET_MAX_PROTO_VERSION, 0, std::ptr::null_mut());
        let min = SSL_ctrl(s, SSL_CTRL_GET_MIN_PROTO_VERSION, 0, std::ptr::null_mut());
        let server_13 = options & SSL_OP_NO_TLSv1_3 == 0
            && (max == 0 || max >= TLS1_3_VERSION as _)
            && min <= TLS1_3_VERSION as _;
        let client_13 = ext(EXT_SUPPORTED_VERSIONS).is_some_and(offers_tls13);
        if server_13 && client_13 {
            if !crate::interpose::hooks::tls13_tickets_are_stateful(ssl) {
                return None;
            }
            return ext(EXT_PRE_SHARED_KEY).and_then(first_stateful_identity);
        }
        if options & SSL_OP_NO_TICKET == 0 && ext(EXT_SESSION_TICKET).is_some_and(|t| !t.is_empty())
        {
            return None;
        }
        let mut id: *const u8 = std::ptr::null();
        let n = SSL_client_hello_get0_session_id(s, &mut id);
        if id.is_null() || n == 0 {
            return None;
        }
        SessionKey::new(std::slice::from_raw_parts(id, n))
    }
}

/// Whether a ClientHello's supported_versions extension lists TLS 1.3.
fn offers_tls13(ext: &[u8]) -> bool {
    let Some((&n, list)) = ext.split_first() else {
        return false;
    };
    list.get(..n as usize).is_some_and(|l| {
        l.chunks_exact(2)
            .any(|v| u16::from_be_bytes([v[0], v[1]]) == TLS1_3_VERSION)
    })
}

/// The first identity of exactly 32 bytes in a pre_shared_key extension: the one OpenSSL's
/// stateful-ticket lookup asks the get callback for first.
fn first_stateful_identity(ext: &[u8]) -> Option<SessionKey> {
    let n = u16::from_be_bytes([*ext.first()?, *ext.get(1)?]) as usize;
    let mut ids = ext.get(2..2 + n)?;
    while ids.len() >= 2 {
        let len = u16::from_be_bytes([ids[0], ids[1]]) as usize;
        let id = ids.get(2..2 + len)?;
        if len == crate::store::MAX_KEY_LEN {
            return SessionKey::new(id);
        }
        // The identity, then its 4-byte obfuscated age.
        ids = ids.get(2 + len + 4..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_versions_are_read_with_their_length() {
        assert!(offers_tls13(&[4, 0x03, 0x04, 0x03, 0x03]));
        assert!(!offers_tls13(&[2, 0x03, 0x03]));
        // The length byte bounds the list: a 1.3 past it does not count.
        assert!(!offers_tls13(&[2, 0x03, 0x03, 0x03, 0x04]));
        assert!(!offers_tls13(&[]));
        assert!(!offers_tls13(&[9, 0x03]));
    }

    fn psk(ids: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for id in ids {
            list.extend_from_slice(&(id.len() as u16).to_be_bytes());
            list.extend_from_slice(id);
            list.extend_from_slice(&[0, 0, 0, 1]);
        }
        let mut ext = (list.len() as u16).to_be_bytes().to_vec();
        ext.extend_from_slice(&list);
        ext.extend_from_slice(&[0, 33, 32]); // binders, not read
        ext
    }

    #[test]
    fn the_first_32_byte_identity_is_the_one_looked_up() {
        let id = [7u8; 32];
        assert_eq!(
            first_stateful_identity(&psk(&[&id])).unwrap().as_bytes(),
            &id
        );
        // A stateless ticket (longer) first: the next 32-byte identity.
        let long = [1u8; 120];
        assert_eq!(
            first_stateful_identity(&psk(&[&long, &id]))
                .unwrap()
                .as_bytes(),
            &id
        );
        assert!(first_stateful_identity(&psk(&[&long])).is_none());
        // Truncated or lying lengths: nothing, never a panic.
        let full = psk(&[&id]);
        for cut in 0..full.len() {
            let _ = first_stateful_identity(&full[..cut]);
        }
        assert!(first_stateful_identity(&[0xff, 0xff, 0, 32]).is_none());
    }
}
