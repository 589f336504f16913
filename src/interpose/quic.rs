//! QUIC (OpenSSL 3.2+ clients, 3.5+ servers): the library leaves QUIC connections to OpenSSL.
//!
//! A QUIC server makes its connections inside libssl: the session callbacks receive the
//! user-facing QUIC connection, while the handshake runs on an inner TLS object that no
//! public function returns (it is the one `SSL_set_accept_state` sees). OpenSSL runs the
//! callbacks with the connection's QUIC lock held, and reading a QUIC connection's options
//! (`SSL_get_options`) takes that lock: from a callback it would wait for itself. QUIC's
//! options also live apart from the inner object's, so a stateful ticket set on one is not
//! seen on the other. So:
//! - preload mode attaches no cache to a context made with a QUIC method;
//! - `sesscache_attach` refuses a QUIC context, saying why;
//! - the ready-made callbacks do nothing for a QUIC connection (a program may install them
//!   on a QUIC context itself).
//!
//! QUIC connections therefore resume exactly as without the library: through OpenSSL's own
//! stateless tickets.

use crate::interpose::real::method_tables;
use crate::ossl::{ssl_ctx_st, ssl_method_st, ssl_st, sys_ctx, SSL_CTX_get_ssl_method};
use std::sync::OnceLock;

/// Whether `method` is one of libssl's QUIC methods (none before OpenSSL 3.2).
pub fn is_quic_method(method: *const ssl_method_st) -> bool {
    static QUIC_METHODS: OnceLock<Vec<usize>> = OnceLock::new();
    QUIC_METHODS
        .get_or_init(|| {
            method_tables(&[
                c"OSSL_QUIC_client_method",
                c"OSSL_QUIC_client_thread_method",
                c"OSSL_QUIC_server_method",
            ])
        })
        .contains(&(method as usize))
}

/// Whether `ctx` was made with a QUIC method.
///
/// # Safety
/// `ctx` is a live context.
pub unsafe fn is_quic_ctx(ctx: *mut ssl_ctx_st) -> bool {
    // SAFETY: ctx is live (caller); this only reads its method.
    is_quic_method(unsafe { SSL_CTX_get_ssl_method(sys_ctx(ctx)) }.cast())
}

/// Whether `ssl` is a QUIC object (`SSL_is_quic`, OpenSSL 3.2+; never before). Takes no lock.
///
/// # Safety
/// `ssl` is a live connection.
pub unsafe fn is_quic(ssl: *mut ssl_st) -> bool {
    type IsQuic = unsafe extern "C" fn(*const ssl_st) -> std::os::raw::c_int;
    static SSL_IS_QUIC: OnceLock<Option<IsQuic>> = OnceLock::new();
    let f = SSL_IS_QUIC.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the process.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"SSL_is_quic".as_ptr()) };
        // SAFETY: a non-NULL result is libssl's `int SSL_is_quic(const SSL *)`.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, IsQuic>(p) })
    });
    // SAFETY: ssl is live (caller); SSL_is_quic only reads its type.
    f.is_some_and(|f| unsafe { f(ssl) } == 1)
}
