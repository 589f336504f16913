//! What the cache does in each of OpenSSL's three session callbacks, shared by the
//! trampolines installed on attached contexts and by the ready-made callbacks.

use crate::cache::{Cache, Lookup};
use crate::interpose::quic;
use crate::interpose::sni::{self, Hello, Verdict};
use crate::log::{self, Level};
use crate::ossl::{
    ssl_session_st, ssl_st, sys_sess, sys_ssl, SSL_get_options, SSL_OP_NO_ANTI_REPLAY,
};
use crate::session::{self, SessionObject};
use crate::store::SessionKey;
use crate::suspend;
use openssl_sys::{SSL_get_max_early_data, SSL_is_server, SSL_OP_NO_TICKET};
use std::os::raw::{c_int, c_uchar};
use std::sync::Arc;

/// Whether a TLS 1.3 ticket this server issues is stateful, i.e. its ID can come back
/// through a get-session callback. OpenSSL 3 issues stateful tickets with
/// `SSL_OP_NO_TICKET`, or when early data is on with anti-replay; otherwise the ticket is
/// stateless (the client carries the session) and the callback still fires for it, with an
/// ID no client will ever present: storing it would only waste room.
///
/// # Safety
/// `ssl` is a live server connection.
pub(crate) unsafe fn tls13_tickets_are_stateful(ssl: *mut ssl_st) -> bool {
    // SAFETY: ssl is live (caller).
    let (options, max_early_data) = unsafe {
        (
            SSL_get_options(sys_ssl(ssl)),
            SSL_get_max_early_data(sys_ssl(ssl)),
        )
    };
    options & SSL_OP_NO_TICKET != 0 || (max_early_data > 0 && options & SSL_OP_NO_ANTI_REPLAY == 0)
}

/// New-session callback: stores server sessions. The caller (OpenSSL) keeps its reference;
/// the cache takes its own if it keeps the object.
///
/// # Safety
/// `ssl` and `sess` are the live objects OpenSSL passes to a new-session callback.
pub unsafe fn on_new(cache: &Cache, ssl: *mut ssl_st, sess: *mut ssl_session_st) {
    crate::fault::inject("new");
    // SAFETY: ssl is live (caller). A QUIC connection is left to OpenSSL (see `quic`).
    if sess.is_null() || unsafe { quic::is_quic(ssl) || SSL_is_server(sys_ssl(ssl)) != 1 } {
        return;
    }
    // SAFETY: ssl and sess are live (caller).
    if unsafe { session::info(sys_sess(sess)).tls13 && !tls13_tickets_are_stateful(ssl) } {
        crate::log!(Level::Debug, "skip: stateless TLS 1.3 ticket");
        return;
    }
    // SAFETY: ssl is live (caller).
    let chain = unsafe { session::peer_chain_cost(sys_ssl(ssl)) };
    // SAFETY: sess is live (caller).
    let stored = unsafe { cache.store_session(sys_sess(sess), chain) };
    if log::enabled(Level::Debug) {
        // SAFETY: sess is live (caller).
        let id = unsafe { session::info(sys_sess(sess)) }.id;
        log::write(
            Level::Debug,
            format_args!(
                "{}: session id#{:08x} ({} bytes)",
                if stored { "store" } else { "store refused" },
                log::fingerprint(id),
                id.len()
            ),
        );
    }
}

/// Get-session callback: a session for OpenSSL to own (`*copy = 0`), or NULL. With
/// `sni_check` (the default), a session made for another server name than the ClientHello
/// being processed asks for is refused ([`sni`]): NULL, its reference dropped, counted in
/// `sni_refused`.
///
/// # Safety
/// `ssl` is live; `data` points at `len` bytes when `len > 0`; `copy` is NULL or writable.
pub unsafe fn on_get(
    cache: &Arc<Cache>,
    ssl: *mut ssl_st,
    data: *const c_uchar,
    len: c_int,
    copy: *mut c_int,
) -> *mut ssl_session_st {
    crate::fault::inject("get");
    // SAFETY: ssl is live (caller). A QUIC connection is left to OpenSSL (see `quic`).
    if unsafe { quic::is_quic(ssl) || SSL_is_server(sys_ssl(ssl)) != 1 } {
        return std::ptr::null_mut();
    }
    let id: &[u8] = match usize::try_from(len) {
        // SAFETY: OpenSSL passes `len` readable bytes at `data`.
        Ok(n) if n > 0 && !data.is_null() => unsafe { std::slice::from_raw_parts(data, n) },
        // Empty or negative: the cache counts it as rejected.
        _ => &[],
    };
    // SAFETY: ssl is live (caller).
    let found = unsafe { lookup(cache, ssl, id) };
    let found = if cache.settings().sni_check {
        cache.deliver(found, |obj| {
            // SAFETY: ssl is live (caller); the ClientHello it holds outlives this call.
            let asked = unsafe { sni::hello(sys_ssl(ssl)) };
            // SAFETY: obj holds a reference to the session for the whole closure.
            let made_for = unsafe { sni::session_name(obj.as_ptr()) };
            let refused = sni::verdict(made_for, asked) == Verdict::Refuse;
            if refused && log::enabled(Level::Debug) {
                let name = |n: Option<&[u8]>| match n {
                    Some(n) => format!("name#{:08x}", sni::name_fingerprint(n)),
                    None => "no name".to_string(),
                };
                let asked = match asked {
                    Hello::Name(n) => name(Some(n)),
                    Hello::Malformed => "a malformed server_name".to_string(),
                    Hello::NoName | Hello::Unreadable => name(None),
                };
                log::write(
                    Level::Debug,
                    format_args!(
                        "sni refused: session id#{:08x} was made for {}, the connection asks for {asked}",
                        log::fingerprint(id),
                        name(made_for)
                    ),
                );
            }
            refused
        })
    } else {
        cache.deliver(found, |_| false)
    };
    crate::log!(
        Level::Debug,
        "{}: session id#{:08x} ({} bytes)",
        if found.is_some() { "hit" } else { "miss" },
        log::fingerprint(id),
        len
    );
    match found {
        Some(obj) => {
            if !copy.is_null() {
                // SAFETY: copy is writable (caller). 0: OpenSSL takes over our reference.
                unsafe { *copy = 0 };
            }
            obj.into_raw().cast()
        }
        None => std::ptr::null_mut(),
    }
}

/// The lookup of `id` for `ssl`, by the first path that applies: the single-use session
/// this handshake was already given for `id` ([`remember_single_use`]), the result of the
/// lookup its ClientHello callback started (asynchronous mode), a lookup that pauses the
/// OpenSSL async job the handshake runs in, an answer the backend has at once, or a lookup
/// on this thread (which may wait for the backend, within its budget).
///
/// # Safety
/// `ssl` is live, inside its get-session callback.
unsafe fn lookup(cache: &Arc<Cache>, ssl: *mut ssl_st, id: &[u8]) -> Lookup {
    let Some(key) = SessionKey::new(id) else {
        return Lookup::Invalid;
    };
    // SAFETY: ssl is live (caller).
    let found = unsafe {
        match suspend::pending::of(ssl) {
            Some(p) => match p.again(id) {
                Some(obj) => return Lookup::Done(Some(obj)),
                None => p.claim(id),
            },
            None => None,
        }
    };
    // SAFETY: ssl is live (caller).
    let found = match found {
        Some(found) => found,
        None => match unsafe { suspend::job::lookup(cache, ssl, key) } {
            Some(found) => found,
            None => match cache.resolve_now(&key) {
                Some(found) => found,
                None => {
                    said_blocking();
                    cache.resolve(&key)
                }
            },
        },
    };
    if let Some(obj) = &found {
        // SAFETY: ssl is live (caller); obj holds a reference.
        unsafe { remember_single_use(cache, ssl, key, obj) };
    }
    Lookup::Done(found)
}

/// Keeps a single-use (TLS 1.3) session the lookup consumed with the connection, for the
/// rest of its handshake: after a HelloRetryRequest the client offers the same ticket in
/// its second ClientHello, and OpenSSL asks for it again, which the store, having handed
/// it out once, would answer with a miss (a full handshake where OpenSSL's own cache
/// resumes). Forgotten when the connection starts another handshake (`SSL_clear`) or is
/// freed, so the ticket still resumes one handshake only.
///
/// # Safety
/// `ssl` is live, inside its get-session callback.
unsafe fn remember_single_use(
    cache: &Cache,
    ssl: *mut ssl_st,
    key: SessionKey,
    obj: &SessionObject,
) {
    // SAFETY: obj holds a reference to a live session.
    if cache.settings().single_use && unsafe { session::info(obj.as_ptr()) }.tls13 {
        // SAFETY: ssl is live (caller).
        unsafe {
            suspend::pending::set(ssl, suspend::pending::Pending::delivered(key, obj.clone()))
        };
    }
}

/// Says once per process, at `info`, that a lookup waited for the network on the
/// handshake's thread (bounded by the backend's `timeout_ms`): the program neither attached
/// the cache with `sesscache_attach_async` nor ran the handshake in an OpenSSL async job.
fn said_blocking() {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if log::enabled(Level::Info) && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log::write(
            Level::Info,
            format_args!(
                "a lookup that needed the network blocked the handshake's thread (at most \
                 timeout_ms); handshakes do not wait on contexts attached with \
                 sesscache_attach_async, nor in OpenSSL async jobs (SSL_MODE_ASYNC)"
            ),
        );
    }
}

/// Remove-session callback: forgets the session's ID, unless OpenSSL removes it only because
/// the peer closed the connection without close_notify ([`removed_for_unexpected_eof`]).
///
/// # Safety
/// `sess` is NULL or a live session.
pub unsafe fn on_remove(cache: &Cache, sess: *mut ssl_session_st) {
    crate::fault::inject("remove");
    if sess.is_null() {
        return;
    }
    // SAFETY: sess is live (caller); the ID borrow ends before we return.
    let info = unsafe { session::info(sys_sess(sess)) };
    if removed_for_unexpected_eof() {
        // OpenSSL has marked this very object not resumable: the front lets it go, and the
        // next lookup decodes the stored bytes.
        cache.release_object(info.id);
        crate::log!(
            Level::Debug,
            "remove skipped: session id#{:08x}: the peer closed without close_notify (it stays resumable)",
            log::fingerprint(info.id)
        );
        return;
    }
    cache.remove(info.id);
}

/// `SSL_R_UNEXPECTED_EOF_WHILE_READING`, the same in every OpenSSL from 3.0 to 4.0 (whose
/// error.h calls it part of the API, for programs to decide on).
const SSL_R_UNEXPECTED_EOF_WHILE_READING: c_int = 294;
/// `ERR_LIB_SSL`.
const ERR_LIB_SSL: c_int = 20;

/// Whether the removal under way is OpenSSL 3's answer to a read that met the end of the
/// connection without close_notify. OpenSSL 3 treats that as a fatal error: it raises
/// `SSL_R_UNEXPECTED_EOF_WHILE_READING` on this thread's error queue, then sends a fatal
/// alert, and sending it removes the session. That rule predates TLS 1.1 (RFC 5246 lets such
/// sessions be resumed), and most HTTP clients hang up this way; without the library a
/// stateless ticket resumes anyway, so keeping the session is what keeps the cache never
/// worse. Real fatal alerts (a forged record, bad_record_mac, a decode error) raise their own
/// reason right before their removal, so they still remove. The program's own setting
/// (`SSL_OP_IGNORE_UNEXPECTED_EOF`) is never touched: it still sees the truncation.
///
/// The error queue is read, not changed. A removal that raises no error of its own (the
/// program's `SSL_CTX_remove_session`, expiry) on a thread whose queue still holds an old EOF
/// error the program never cleared would be skipped too; the entry then only lives to its
/// expiry.
fn removed_for_unexpected_eof() -> bool {
    // SAFETY: plain OpenSSL calls; peeking does not change the thread's error queue.
    let (version, err) = unsafe {
        (
            openssl_sys::OpenSSL_version_num(),
            openssl_sys::ERR_peek_last_error(),
        )
    };
    version >= 0x3000_0000
        && openssl_sys::ERR_GET_LIB(err) == ERR_LIB_SSL
        && openssl_sys::ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sessions::tls12;
    use std::os::raw::c_char;

    extern "C" {
        // OpenSSL 3's way to raise an error (the tests run against the system's 3.0).
        fn ERR_new();
        fn ERR_set_error(lib: c_int, reason: c_int, fmt: *const c_char, ...);
    }

    fn raise(lib: c_int, reason: c_int) {
        // SAFETY: plain OpenSSL calls on this thread's error queue; no format arguments.
        unsafe {
            ERR_new();
            ERR_set_error(lib, reason, std::ptr::null());
        }
    }

    /// Only OpenSSL 3's unexpected end of file keeps a session; the error queue is read,
    /// not changed; other reasons (a bad record MAC, an alert received) still remove it.
    #[test]
    fn only_an_unexpected_eof_keeps_the_session() {
        // SAFETY: as above.
        unsafe { openssl_sys::ERR_clear_error() };
        let cache = Cache::open("memory:").unwrap();
        let id = [0x66u8; 32];
        let sess = tls12(&id, &[9; 48]);
        // SAFETY: sess holds a reference until freed below.
        assert!(unsafe { cache.store_session(sess, None) });

        raise(ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING);
        assert!(removed_for_unexpected_eof());
        // SAFETY: sess is live.
        unsafe { on_remove(&cache, sess.cast()) };
        assert!(cache.lookup(&id).is_some(), "kept");
        // SAFETY: as above.
        let left = unsafe { openssl_sys::ERR_peek_last_error() };
        assert_eq!(
            openssl_sys::ERR_GET_REASON(left),
            SSL_R_UNEXPECTED_EOF_WHILE_READING
        );

        // SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC (281) raised after it: removed.
        raise(ERR_LIB_SSL, 281);
        assert!(!removed_for_unexpected_eof());
        // The same reason from another library is not OpenSSL's EOF either.
        raise(openssl_sys::ERR_LIB_SYS, SSL_R_UNEXPECTED_EOF_WHILE_READING);
        assert!(!removed_for_unexpected_eof());
        // SAFETY: sess is live.
        unsafe { on_remove(&cache, sess.cast()) };
        assert!(cache.lookup(&id).is_none(), "removed");
        // SAFETY: clean up this thread's queue; sess was made by tls12, freed once.
        unsafe {
            openssl_sys::ERR_clear_error();
            openssl_sys::SSL_SESSION_free(sess);
        }
        assert!(!removed_for_unexpected_eof(), "an empty queue");
    }
}
