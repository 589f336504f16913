//! Fault injection for the panic-safety tests (`c-tests/panic_check.sh`): with the
//! `fault-injection` feature (never in the library `make` builds or installs), a site named
//! in the environment variable `SESSCACHE_FAULT` (comma-separated) panics when it is
//! reached, so the tests can show that each path turns a panic into a miss, a failure code
//! or nothing, logs it, and never lets it unwind into C. Without the feature, [`inject`] is
//! an empty inline function.
//!
//! Sites: `open`, `attach`, `stats` (the explicit API), `new`, `get`, `remove` (the cache
//! behind OpenSSL's session callbacks), `ctx_new` (preload's attach in `SSL_CTX_new`),
//! `accept` (`SSL_set_accept_state`), `free` (`SSL_free` and `SSL_clear`).

/// Panics if `site` is named in `SESSCACHE_FAULT` (fault-injection builds only).
#[cfg(feature = "fault-injection")]
pub fn inject(site: &'static str) {
    static SITES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let sites = SITES.get_or_init(|| {
        std::env::var("SESSCACHE_FAULT")
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect()
    });
    if sites.iter().any(|s| s == site) {
        panic!("injected fault at '{site}'");
    }
}

/// Does nothing: this build has no fault injection.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn inject(_site: &'static str) {}
