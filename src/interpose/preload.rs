//! The process-wide cache and preload mode.
//!
//! `SESSCACHE_URL` names one cache for the whole process, opened on first use. The
//! ready-made callbacks use it for contexts with no cache attached. When the variable is
//! set, our `SSL_CTX_new`/`SSL_CTX_new_ex` also attach it to every server-capable context
//! the program creates (preload mode): unmodified programs get an external session cache.
//!
//! Never worse than without the library: what preload mode does to a connection is decided
//! when it becomes a server ([`on_accept`]), so client connections are untouched.
//! - A context whose program turned its server session cache off is left exactly as without
//!   the library (said once in the log), unless the URL says `force=1`: then the cache
//!   serves it too. With `tickets=shared` its stateless tickets still use the shared keys
//!   (turning the session cache off does not turn tickets off; `SSL_OP_NO_TICKET` does).
//! - Stateless tickets are turned off (`SSL_OP_NO_TICKET`, so that sessions go through the
//!   cache) only where that cannot lose a resumption: `tickets=auto` does it where the
//!   cache is shared by every process that could see the client again (`shm:`, or
//!   `memory:` in the process that opened it, not in a forked child holding a private copy).
//!
//! `SESSCACHE_STATS=stderr` (or a file path, appended to) writes the cache's counters at
//! exit, one line per process, and while it runs (see [`stats_report`]).

use crate::cache::Cache;
use crate::config::{Backend, Tickets};
use crate::interpose::attach;
use crate::interpose::quic;
use crate::interpose::real::method_tables;
use crate::interpose::record::{self, CtxRecord};
use crate::interpose::stats_report;
use crate::log::Level;
use crate::ossl::{ssl_ctx_st, ssl_st, sys_ssl, SSL_set_options};
use openssl_sys::{SSL_METHOD, SSL_OP_NO_TICKET};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

struct ProcessCache {
    cache: Option<Arc<Cache>>,
    /// SESSCACHE_URL was set (and usable): attach to every server context.
    preload: bool,
    /// Every process that opens the URL sees the same cache (`shm:`).
    shared: bool,
    /// The process that opened it (a forked child holds a private copy of a `memory:` cache).
    opened_by: u32,
}

static PROCESS_CACHE: OnceLock<ProcessCache> = OnceLock::new();

fn open_process_cache() -> ProcessCache {
    let url = crate::env::var("SESSCACHE_URL")
        .and_then(Result::ok)
        .filter(|u| !u.is_empty());
    let preload = url.is_some();
    let url = url.unwrap_or_else(|| "memory:".into());
    let opened = crate::config::parse(&url)
        .map_err(crate::error::Error::from)
        .and_then(|cfg| Ok((Cache::with_config(&cfg)?, cfg)));
    match opened {
        Ok((cache, cfg)) => {
            crate::log!(
                Level::Info,
                "opened cache '{}'",
                crate::config::redacted(&url)
            );
            stats_report::register(|| {
                PROCESS_CACHE
                    .get()
                    .and_then(|p| p.cache.as_ref())
                    .map(|c| c.stats())
            });
            ProcessCache {
                cache: Some(Arc::new(cache)),
                preload,
                shared: matches!(cfg.backend, Backend::Shm { .. } | Backend::Redis(_)),
                opened_by: std::process::id(),
            }
        }
        Err(e) => {
            // Said whatever SESSCACHE_LOG is: the user asked for a cache and gets none.
            crate::log::write(
                Level::Error,
                format_args!("SESSCACHE_URL is not usable: {e}; continuing without a cache"),
            );
            ProcessCache {
                cache: None,
                preload: false,
                shared: false,
                opened_by: 0,
            }
        }
    }
}

/// The process-wide cache: from `SESSCACHE_URL`, else `memory:`; None if the URL is bad.
pub fn process_cache() -> Option<&'static Arc<Cache>> {
    PROCESS_CACHE.get_or_init(open_process_cache).cache.as_ref()
}

/// Whether `SESSCACHE_URL` is set, checked without opening anything (so that a program
/// that never sets it pays nothing in `SSL_CTX_new`).
fn preload_requested() -> bool {
    static REQUESTED: OnceLock<bool> = OnceLock::new();
    *REQUESTED.get_or_init(|| {
        if crate::env::ignored("SESSCACHE_URL") {
            crate::log!(
                Level::Warn,
                "SESSCACHE_URL is ignored: this program runs with privileges its user does not have (setuid, setgid or file capabilities)"
            );
        }
        crate::env::var_os("SESSCACHE_URL").is_some_and(|v| !v.is_empty())
    })
}

/// The methods that can only make clients: contexts made with them are left untouched.
fn is_client_only(method: *const SSL_METHOD) -> bool {
    static CLIENT_METHODS: OnceLock<Vec<usize>> = OnceLock::new();
    let methods = CLIENT_METHODS.get_or_init(|| {
        // Looked up by name: the version-specific ones are deprecated and may be absent.
        method_tables(&[
            c"TLS_client_method",
            c"DTLS_client_method",
            c"TLSv1_client_method",
            c"TLSv1_1_client_method",
            c"TLSv1_2_client_method",
            c"DTLSv1_client_method",
            c"DTLSv1_2_client_method",
            c"SSLv3_client_method",
        ])
    });
    methods.contains(&(method as usize))
}

/// Called by our `SSL_CTX_new`/`SSL_CTX_new_ex` with the new context: in preload mode,
/// attaches the process-wide cache to server-capable contexts.
///
/// # Safety
/// `ctx` is a live context just made with `method`.
pub unsafe fn on_new_ctx(ctx: *mut ssl_ctx_st, method: *const SSL_METHOD) {
    crate::fault::inject("ctx_new");
    if ctx.is_null() || !preload_requested() || is_client_only(method) {
        return;
    }
    if quic::is_quic_method(method.cast()) {
        // Said once per context: OpenSSL's SSL_CTX_new calls our SSL_CTX_new_ex too.
        static LAST_SAID: AtomicUsize = AtomicUsize::new(0);
        if LAST_SAID.swap(ctx as usize, Ordering::Relaxed) != ctx as usize {
            crate::log!(
                Level::Info,
                "SSL_CTX {ctx:p}: a QUIC context: left to OpenSSL (its connections resume through OpenSSL's tickets)"
            );
        }
        return;
    }
    let Some(cache) = process_cache() else {
        return;
    };
    if !PROCESS_CACHE.get().is_some_and(|p| p.preload) {
        return;
    }
    // SAFETY: ctx is live (caller).
    // OpenSSL's SSL_CTX_new calls SSL_CTX_new_ex through the PLT, so both of ours run for
    // one context: the inner one attaches, the outer one finds it done.
    match unsafe { attach::attach(ctx, cache, true) } {
        Ok(false) => {}
        Ok(true) => crate::log!(Level::Debug, "attach: SSL_CTX {ctx:p}"),
        Err(e) => crate::log!(Level::Error, "attach failed: {e}"),
    }
}

const SAID_OFF: u8 = 1;
const SAID_FORCED: u8 = 2;

/// Whether server connections get stateful tickets (see the module docs).
fn stateful_tickets(cache: &Cache) -> bool {
    let settings = cache.settings();
    match settings.tickets {
        Tickets::Keep | Tickets::Shared => false,
        Tickets::Stateful => true,
        Tickets::Auto => {
            settings.force
                || PROCESS_CACHE
                    .get()
                    .is_some_and(|p| p.shared || p.opened_by == crate::pid::current())
        }
    }
}

/// A connection of a preload-attached context `ctx` just became a server.
///
/// # Safety
/// `ssl` is a live connection whose session context is `ctx`, with record `rec`.
pub unsafe fn on_accept(ssl: *mut ssl_st, ctx: *mut ssl_ctx_st, rec: &CtxRecord) {
    // SAFETY: ctx is live (caller).
    if !unsafe { record::server_caching_on(ctx) } {
        if !rec.cache.settings().force {
            if rec.say_once(SAID_OFF) {
                if rec.cache.tickets().is_some() {
                    crate::log!(
                        Level::Info,
                        "SSL_CTX {ctx:p}: the program turned its session cache off; sesscache stores no session for it (force=1 in SESSCACHE_URL makes the cache serve it), its tickets use the shared ticket keys"
                    );
                } else {
                    crate::log!(
                        Level::Info,
                        "SSL_CTX {ctx:p}: the program turned its session cache off; sesscache leaves its connections alone (force=1 in SESSCACHE_URL makes the cache serve them)"
                    );
                }
            }
            return;
        }
        // SAFETY: ctx is live (caller).
        unsafe { record::make_server_cache(ctx) };
        if rec.say_once(SAID_FORCED) {
            crate::log!(
                Level::Info,
                "SSL_CTX {ctx:p}: the program turned its session cache off; force=1: the cache serves it"
            );
        }
    }
    stats_report::ensure_periodic();
    if stateful_tickets(&rec.cache) {
        // SAFETY: ssl is live (caller). Stateless tickets never reach a session cache.
        unsafe { SSL_set_options(sys_ssl(ssl), SSL_OP_NO_TICKET) };
    }
}
