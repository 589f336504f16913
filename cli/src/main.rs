//! `sesscache`, the command-line tool: the cache core without the C library's interposed
//! OpenSSL functions (the `interpose` feature is off), for operators.
//!
//! ```text
//! sesscache --version     the library's version
//! sesscache stats URL     the counters of the cache URL names, one "name value" a line
//! ```
//!
//! Exit status: 0 on success, 1 when the cache cannot be opened (the message, which names
//! what is wrong, goes to stderr), 2 for a command line it does not understand.

use sesscache::cache::Cache;
use sesscache::store::{NetStats, Stats};
use std::ffi::CStr;
use std::io::{self, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: sesscache --version
       sesscache stats URL     (URL: 'memory:...' or 'shm:NAME...', as SESSCACHE_URL)
";

fn main() -> ExitCode {
    // Not env::args(), which panics on an argument that is not UTF-8: here such an argument
    // becomes U+FFFD, a command that is not known or a URL that is refused.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().unwrap_or("\u{fffd}"))
        .collect();
    match args.as_slice() {
        ["--version" | "-V"] => {
            println!("sesscache {}", version());
            ExitCode::SUCCESS
        }
        ["--help" | "-h"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["stats", url] => stats(url),
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The version of the library this program was built with, as `sesscache_version()` gives
/// it to C programs.
fn version() -> &'static str {
    let p = sesscache::ffi::api::sesscache_version();
    // SAFETY: sesscache_version returns a static NUL-terminated string, never NULL.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("unknown")
}

fn stats(url: &str) -> ExitCode {
    let cache = match Cache::open(url) {
        Ok(cache) => cache,
        Err(e) => {
            eprintln!("sesscache: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = io::stdout().lock();
    let written = counters(&cache.stats())
        .iter()
        .try_for_each(|(name, value)| writeln!(out, "{name} {value}"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesscache: writing the statistics: {e}");
            ExitCode::from(1)
        }
    }
}

/// The counters, named as the fields of `struct sesscache_stats` in the C header. No `..`:
/// a counter added to `Stats` does not compile until it is listed here.
fn counters(s: &Stats) -> [(&'static str, u64); 15] {
    let Stats {
        lookups,
        hits,
        misses,
        stores,
        removes,
        evictions,
        expirations,
        rejected,
        errors,
        entries,
        bytes,
        net:
            NetStats {
                net_errors,
                timeouts,
                breaker_opens,
                queue_drops,
            },
    } = *s;
    [
        ("lookups", lookups),
        ("hits", hits),
        ("misses", misses),
        ("stores", stores),
        ("removes", removes),
        ("evictions", evictions),
        ("expirations", expirations),
        ("rejected", rejected),
        ("errors", errors),
        ("entries", entries),
        ("bytes", bytes),
        ("net_errors", net_errors),
        ("timeouts", timeouts),
        ("breaker_opens", breaker_opens),
        ("queue_drops", queue_drops),
    ]
}
