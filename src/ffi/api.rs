//! The explicit C API: open a cache, attach it to contexts, read its statistics.

use crate::boundary::{clear_error, guard, last_error_kind, last_error_ptr, set_error};
use crate::cache::Cache;
use crate::error::ErrorKind;
use crate::interpose::attach;
use crate::ossl::ssl_ctx_st;
use crate::store::Stats;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;

/// A session cache. Opaque; created by `sesscache_open`, released by `sesscache_free`.
/// One cache may serve many `SSL_CTX`s and every thread at once.
#[allow(non_camel_case_types)]
pub struct sesscache {
    _opaque: [u8; 0],
}

/// Counters and occupancy of a cache, filled in by `sesscache_get_stats`.
/// `lookups` = `hits` + `misses`; `entries` and `bytes` are current values, the rest count
/// events since the cache was opened. `shm:`: the segment's, shared by every process.
/// `redis`: this process's since it first used the cache (a forked child counts from
/// zero); each process also adds them to a hash in Redis about once a second, where
/// `sesscache stats URL` reads the whole fleet's.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sesscache_stats {
    /// Get-session callbacks answered by the cache.
    pub lookups: u64,
    /// Lookups that returned a session.
    pub hits: u64,
    /// Lookups that returned nothing.
    pub misses: u64,
    /// Sessions stored.
    pub stores: u64,
    /// Sessions removed on OpenSSL's request.
    pub removes: u64,
    /// Live sessions evicted to make room.
    pub evictions: u64,
    /// Expired sessions dropped.
    pub expirations: u64,
    /// Session IDs of invalid length, and sessions larger than `max_session_bytes`.
    pub rejected: u64,
    /// Stored data that did not decode or open (corrupt, tampered with, sealed under an
    /// unknown key), backend failures (timeouts and network errors included) and internal
    /// errors.
    pub errors: u64,
    /// Sessions held now (`redis`: those of this process's `l1` tier).
    pub entries: u64,
    /// Bytes held now, as counted against the size limit. `memory:`: what `max_bytes`
    /// bounds, i.e. the encoded sessions with each entry's bookkeeping, plus the decoded
    /// sessions this process keeps for fast hits (each charged an upper bound of the memory
    /// OpenSSL allocates for it, peer certificate included). `shm:`: the encoded sessions
    /// in the segment. `redis`: those of this process's `l1` tier.
    pub bytes: u64,
    /// `redis`: operations of this process that failed on the network or with a server
    /// error (since version 0.2; 0 for other backends).
    pub net_errors: u64,
    /// `redis`: lookups (and connection attempts) of this process that gave up after
    /// `timeout_ms` (since 0.2).
    pub timeouts: u64,
    /// `redis`: times this process's circuit breaker opened, skipping Redis after repeated
    /// failures (since 0.2).
    pub breaker_opens: u64,
    /// `redis`: stores and removals this process dropped because its write queue was full or
    /// the breaker was open (since 0.2).
    pub queue_drops: u64,
    /// Lookups that found a session but did not resume it because it was made for another
    /// server name (SNI) than the connection asks for, or for a name when the connection
    /// asks for none (`sni_check`, on by default); each is also counted in `misses` (since
    /// 0.3).
    pub sni_refused: u64,
}

impl From<Stats> for sesscache_stats {
    fn from(s: Stats) -> Self {
        sesscache_stats {
            lookups: s.lookups,
            hits: s.hits,
            misses: s.misses,
            stores: s.stores,
            removes: s.removes,
            evictions: s.evictions,
            expirations: s.expirations,
            rejected: s.rejected,
            errors: s.errors,
            net_errors: s.net.net_errors,
            timeouts: s.net.timeouts,
            breaker_opens: s.net.breaker_opens,
            queue_drops: s.net.queue_drops,
            sni_refused: s.sni_refused,
            entries: s.entries,
            bytes: s.bytes,
        }
    }
}

/// Borrows the cache behind a handle without touching its reference count.
///
/// # Safety
/// `cache` is NULL or a live handle from `sesscache_open`.
pub(crate) unsafe fn borrow<'a>(cache: *const sesscache) -> Option<&'a Cache> {
    // SAFETY: handles are Arc<Cache> pointers (see sesscache_open) kept alive by the caller.
    unsafe { cache.cast::<Cache>().as_ref() }
}

/// A new reference to the cache behind a handle, for a context to keep (the caller's
/// reference is not consumed).
///
/// # Safety
/// `cache` is a live, non-NULL handle from `sesscache_open`.
pub(crate) unsafe fn new_reference(cache: *mut sesscache) -> Arc<Cache> {
    let p = cache.cast_const().cast::<Cache>();
    // SAFETY: handles are Arc<Cache> pointers (see sesscache_open) kept alive by the caller;
    // the count is incremented before the new Arc takes it over.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// Opens a session cache described by `url`:
/// - `memory:` — in this process, shared by its threads;
/// - `shm:NAME` — in POSIX shared memory, shared by every process that opens NAME (created
///   with `mode` and `size` if it does not exist, its memory reserved at once; an existing
///   segment that another user owns or could reach is refused).
///
/// <!-- BEGIN generated: url-params, from src/config/params.rs: edit the table there -->
///
/// URL = SCHEME [ "?" KEY "=" VALUE *( "&" KEY "=" VALUE ) ], where SCHEME is `memory:`,
/// `shm:NAME`, `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]`,
/// `rediss://[USER[:PASSWORD]@]HOST[:PORT][/DB]`, `redis+unix://[USER[:PASSWORD]@]PATH`,
/// `redis+cluster://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]` or
/// `redis+sentinel://[USER[:PASSWORD]@]SENTINELS/MASTERNAME[/DB]`; every parameter is optional
/// and may be given once.
///
/// Parameters of `memory:`:
/// - `capacity=NUMBER` (default 20000): the most sessions held
/// - `max_bytes=SIZE` (default 64M): the most bytes held for sessions, encoded or decoded
///   (estimated from above), with their bookkeeping
///
/// Parameters of `shm:`:
/// - `size=SIZE` (from 64K to 64G; default: an existing segment's size, else 32M): the size a
///   new segment is created with, reserved at once; an existing segment of another size is
///   refused
/// - `mode=0600|0660` (default 0600): who may use the segment: `0600` only the server's own
///   user, `0660` the members of its group too
///
/// Parameters of every scheme:
/// - `ttl=NUMBER` (default: the session's own timeout): the longest lifetime of an entry, in
///   seconds
/// - `single_use=0|1` (default 1): TLS 1.3 tickets resume once
/// - `sni_check=0|1` (default 1): a session made for one server name (SNI) is not resumed on a
///   connection that asks for another name or for none (a miss, counted as `sni_refused`; see
///   SECURITY.md)
/// - `max_session_bytes=SIZE` (at most 1M; default 16K): larger encoded sessions are not stored
///   (counted as `rejected`)
/// - `tickets=auto|keep|stateful|shared` (default auto): stateful tickets on preloaded server
///   connections where the cache is shared by every process that may resume (`auto`), always
///   (`stateful`) or never (`keep`); or stateless tickets under keys kept in the cache and
///   rotated through it, shared by every process and host using it (`shared`, preloaded and
///   attached contexts; `redis` needs `key_file`)
/// - `ticket_rotate=NUMBER` (from 2 to 604800; default 3600): with shared tickets (`tickets`
///   `shared`): seconds each ticket key encrypts; it then still decrypts for `ttl` seconds
///   (default 7200); every server of a cache must give the same
/// - `force=0|1` (default 0): preload mode: serve also the contexts whose program turned its
///   session cache off; with shared tickets, also those whose program set its own ticket keys
///   or ticket callback (the shared keys then win)
///
/// Parameters of `shm:` and every `redis` scheme:
/// - `key_file=PATH` (default: none: sessions are stored as they are): seal every stored
///   session with AES-256-GCM under the keys in this file (one key a line, 64 hex digits; the
///   first seals, every one opens), the session ID as associated data; the file must be private
///   to its owner
///
/// Parameters of every `redis` scheme:
/// - `insecure_plaintext=0|1` (default 0): `1` lets a `redis` cache store sessions, master
///   secrets included, in clear (without it, `key_file` is required)
/// - `prefix=TEXT` (default sesscache:): put before every key (and sealed into every value, so
///   that values do not move between caches)
/// - `timeout_ms=NUMBER` (from 1 to 60000; default 10): the most a lookup waits for Redis,
///   connecting included, before it is a miss
/// - `l1=NUMBER` (from 1 to 10000000; default: none): keep up to this many reusable sessions in
///   this process too, tried before Redis
/// - `queue=NUMBER` (from 1 to 1000000; default 4096): the most stores and removals waiting to
///   be sent; more are dropped and counted
/// - `batch_ms=NUMBER` (from 0 to 100; default 2): under load, a store waits until this long
///   after the previous batch was sent, so that one round trip carries the stores of the
///   meantime (less CPU for this process and Redis); other hosts see a session up to this much
///   later; 0: send each at once
/// - `password_file=PATH` (default: none): read the password from this file's first line
///   (private to its owner)
/// - `password_env=NAME` (default: none): read the password from this environment variable
///   (refused in setuid, setgid and file-capability programs)
///
/// Parameters of `redis:`, `redis+cluster:` and `redis+sentinel:`:
/// - `tls=0|1` (default 0): connect over TLS, the server's certificate verified as with
///   `rediss:` (for `redis+cluster:`, every node's; for `redis+sentinel:`, the Sentinels' and
///   the primary's)
///
/// Parameters of `redis:`, `rediss:`, `redis+cluster:` and `redis+sentinel:`:
/// - `tls_ca_file=PATH` (default: the system's CA store): trust only the CA certificates in
///   this PEM file to sign the server's certificate
/// - `tls_cert_file=PATH` (default: none): present this PEM certificate (chain) to the server
///   (mutual TLS; needs tls_key_file)
/// - `tls_key_file=PATH` (default: none): the private key of tls_cert_file, in PEM (private to
///   its owner)
/// - `tls_name=TEXT` (default: the host the URL names): the name (or IP address) the server's
///   certificate must be for, also sent as SNI; for a cluster, every node's
///
/// Parameters of `redis+sentinel:`:
/// - `sentinel_password_file=PATH` (default: none: the Sentinels are asked without a password):
///   the Sentinels' own password (their requirepass), from this file's first line (private to
///   its owner)
/// - `sentinel_password_env=NAME` (default: none): the Sentinels' own password, from this
///   environment variable (refused in setuid, setgid and file-capability programs)
///
/// NAME: the first character must be an ASCII letter or digit, the rest letters, digits, '.',
/// '_' or '-', at most 200 bytes. //[USER[:PASSWORD]@]HOST[:PORT][/DB]: HOST is a host name, an
/// IPv4 address or an IPv6 address in brackets; PORT defaults to 6379; DB is a database number
/// (default 0); USER and PASSWORD are percent-encoded where they hold ':', '@', '/', '?', '&'
/// or '%' (a password is better given with password_file or password_env, since a URL may show
/// in `ps`). //[USER[:PASSWORD]@]HOST[:PORT][/DB]: as redis:, over TLS: the server's
/// certificate is verified against the system's CAs (or tls_ca_file) and HOST (or tls_name).
/// //[USER[:PASSWORD]@]PATH: PATH is the absolute path of the server's Unix socket.
/// //[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]: one or more seed nodes of a Redis Cluster,
/// each HOST:PORT; the cluster's other nodes are found from them.
/// //[USER[:PASSWORD]@]SENTINELS/MASTERNAME[/DB]: SENTINELS is one or more Redis Sentinels,
/// HOST:PORT[,HOST:PORT...], asked in turn for the address of the primary they watch under
/// MASTERNAME (letters, digits, '.', '_', '-'; at most 128), again for every new connection, so
/// that the cache follows a failover; DB is a database number (default 0); USER and PASSWORD
/// are the Redis servers' (the Sentinels' own password is sentinel_password_file or
/// sentinel_password_env). NUMBER: ASCII digits only, at least 1. SIZE: a NUMBER of bytes with
/// an optional K, M or G suffix (powers of 1024). 0|1 also takes false or no for 0, true or yes
/// for 1. PATH, TEXT and NAME are percent-decoded. A URL is at most 4096 bytes with at most 32
/// parameters.
///
/// <!-- END generated: url-params -->
///
/// Returns a new handle that the caller owns and releases with `sesscache_free`, or NULL
/// when `url` is NULL or invalid; `sesscache_last_error()` then names the bad part.
/// Thread-safe; the cache may be used from every thread.
///
/// # Safety
/// `url` is NULL or points at a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sesscache_open(url: *const c_char) -> *mut sesscache {
    guard(std::ptr::null_mut(), || {
        if url.is_null() {
            set_error(ErrorKind::Argument, "sesscache_open: url is NULL");
            return std::ptr::null_mut();
        }
        // SAFETY: url is a NUL-terminated string (caller's contract), checked non-NULL.
        let Ok(url) = unsafe { CStr::from_ptr(url) }.to_str() else {
            set_error(ErrorKind::Url, "sesscache_open: url is not valid UTF-8");
            return std::ptr::null_mut();
        };
        crate::fault::inject("open");
        match Cache::open(url) {
            Ok(cache) => {
                clear_error();
                Arc::into_raw(Arc::new(cache)) as *mut sesscache
            }
            Err(e) => {
                set_error(e.kind, e.message);
                std::ptr::null_mut()
            }
        }
    })
}

/// Releases the caller's reference to `cache` (NULL is allowed and ignored). Contexts the
/// cache is attached to keep their own references, so it stays usable by them until they
/// are freed. Do not use the handle after this call.
///
/// # Safety
/// `cache` is NULL or a handle from `sesscache_open` that the caller still owns.
#[no_mangle]
pub unsafe extern "C" fn sesscache_free(cache: *mut sesscache) {
    guard((), || {
        if !cache.is_null() {
            // SAFETY: the handle came from Arc::into_raw in sesscache_open and the caller
            // gives up its reference.
            drop(unsafe { Arc::from_raw(cache.cast_const().cast::<Cache>()) });
        }
    })
}

/// Makes `cache` the session store of the server context `ctx`: installs the cache's
/// callbacks in OpenSSL and sets the session cache mode to
/// `SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL`. Callbacks the application set, or
/// sets later through `SSL_CTX_sess_set_*_cb`, still run: its get callback is asked first
/// and the cache answers its misses; new and remove events go to both. With
/// `tickets=shared` in the cache's URL, the context also gets the ticket key callback of
/// shared ticket keys, unless the program set its own ticket keys or ticket callback on it
/// (before or after; `force=1` makes the shared keys win).
///
/// The context takes its own reference to the cache, released when the context is freed.
/// Attaching the same cache twice is harmless; attaching a second cache to a context is an
/// error, and so is attaching one to a QUIC context (OpenSSL 3.5+: its connections resume
/// through OpenSSL's own tickets). Returns 1 on success, 0 on error (see
/// `sesscache_last_error()`). Call it while configuring the context, before it serves
/// connections.
///
/// # Safety
/// `cache` is NULL or a live handle; `ctx` is NULL or a live `SSL_CTX`.
#[no_mangle]
pub unsafe extern "C" fn sesscache_attach(cache: *mut sesscache, ctx: *mut ssl_ctx_st) -> c_int {
    guard(0, || {
        if cache.is_null() || ctx.is_null() {
            set_error(
                ErrorKind::Argument,
                "sesscache_attach: cache and ctx must not be NULL",
            );
            return 0;
        }
        crate::fault::inject("attach");
        // SAFETY: cache is a live handle (caller's contract), checked non-NULL.
        let arc = unsafe { new_reference(cache) };
        // SAFETY: ctx is a live SSL_CTX (caller's contract).
        match unsafe { attach::attach(ctx, &arc, false) } {
            Ok(_) => {
                clear_error();
                1
            }
            Err(e) => {
                set_error(e.kind, format!("sesscache_attach: {}", e.message));
                0
            }
        }
    })
}

/// Fills `*out` with the cache's counters. `out_size` is `sizeof *out` as the caller's
/// header declares it, so that `sesscache_stats` can grow: the library fills the first
/// `min(out_size, sizeof(its sesscache_stats))` bytes and zeroes the rest of `out_size`
/// (fields of a newer header that this library does not keep read 0). A program built
/// against an older header, with fewer fields, keeps working with a newer library.
///
/// Returns the number of leading bytes filled with figures (at least 8), or 0 if a pointer
/// is NULL or `out_size` is not a positive multiple of 8; `sesscache_last_error()` then
/// says which. Thread-safe; the figures are read without stopping other threads, so they
/// may be momentarily inconsistent with each other.
///
/// # Safety
/// `cache` is NULL or a live handle; `out` is NULL or points at `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sesscache_get_stats(
    cache: *const sesscache,
    out: *mut sesscache_stats,
    out_size: usize,
) -> usize {
    guard(0, || {
        // SAFETY: cache is NULL or a live handle (caller's contract).
        let Some(c) = (unsafe { borrow(cache) }) else {
            set_error(ErrorKind::Argument, "sesscache_get_stats: cache is NULL");
            return 0;
        };
        if out.is_null() {
            set_error(ErrorKind::Argument, "sesscache_get_stats: out is NULL");
            return 0;
        }
        if out_size == 0 || out_size % 8 != 0 {
            set_error(ErrorKind::Argument, format!(
                "sesscache_get_stats: out_size {out_size} is not sizeof(sesscache_stats) (a positive multiple of 8)"
            ));
            return 0;
        }
        crate::fault::inject("stats");
        let stats: sesscache_stats = c.stats().into();
        let filled = out_size.min(std::mem::size_of::<sesscache_stats>());
        // SAFETY: out points at out_size writable bytes (caller's contract), checked
        // non-NULL; we copy at most that many bytes of a plain #[repr(C)] struct of u64s
        // and zero the rest of them.
        unsafe {
            let dst = out.cast::<u8>();
            std::ptr::copy_nonoverlapping(
                (&stats as *const sesscache_stats).cast::<u8>(),
                dst,
                filled,
            );
            std::ptr::write_bytes(dst.add(filled), 0, out_size - filled);
        }
        filled
    })
}

/// The message of the last failed sesscache call on this thread, or "" if the last call
/// that reports errors succeeded. Never NULL. The string belongs to the library and stays
/// valid until the next sesscache call on the same thread. Thread-safe: each thread has
/// its own message.
#[no_mangle]
pub extern "C" fn sesscache_last_error() -> *const c_char {
    guard(c"".as_ptr(), last_error_ptr)
}

/// The major version of this header: an incompatible change of the C API increments it.
pub const SESSCACHE_VERSION_MAJOR: u32 = 0;
/// The minor version of this header: additions that keep programs built before working.
pub const SESSCACHE_VERSION_MINOR: u32 = 4;
/// The patch version of this header.
pub const SESSCACHE_VERSION_PATCH: u32 = 0;
/// The version as one number to compare, `MAJOR * 1000000 + MINOR * 1000 + PATCH`, e.g.
/// `#if SESSCACHE_VERSION_NUMBER >= 1002000` for 1.2.0 and later.
pub const SESSCACHE_VERSION_NUMBER: u32 = 4000;

/// The category of the last failed sesscache call on this thread, as a `sesscache_error`
/// value (`SESSCACHE_OK`, 0, if the last call that reports errors succeeded), to act on
/// where `sesscache_last_error()` is for people: e.g. `SESSCACHE_ERR_URL` is the
/// configuration's fault, `SESSCACHE_ERR_UNAVAILABLE` may pass. Thread-safe: each thread
/// has its own.
#[no_mangle]
pub extern "C" fn sesscache_last_error_code() -> c_int {
    guard(
        super::sesscache_error::SESSCACHE_ERR_INTERNAL as c_int,
        || last_error_kind().map_or(0, |k| super::sesscache_error::from(k) as c_int),
    )
}

/// The library's version, e.g. "0.1.0": the version of the library actually loaded, which
/// may be newer than the header a program was built with (`SESSCACHE_VERSION_*`). A static
/// string owned by the library (do not free it); never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn sesscache_version() -> *const c_char {
    guard(c"".as_ptr(), version_ptr)
}

fn version_ptr() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("version has no interior NUL"),
        };
    VERSION.as_ptr()
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn the_header_macros_are_the_crate_version() {
        let n = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(SESSCACHE_VERSION_MAJOR, n(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(SESSCACHE_VERSION_MINOR, n(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(SESSCACHE_VERSION_PATCH, n(env!("CARGO_PKG_VERSION_PATCH")));
        assert_eq!(
            SESSCACHE_VERSION_NUMBER,
            SESSCACHE_VERSION_MAJOR * 1_000_000
                + SESSCACHE_VERSION_MINOR * 1000
                + SESSCACHE_VERSION_PATCH
        );
    }
}
