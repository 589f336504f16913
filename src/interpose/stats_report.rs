//! What `SESSCACHE_STATS` writes: the process cache's counters, one line per process at
//! exit (`sesscache stats pid=N ...`), and while the process runs, every
//! `SESSCACHE_STATS_INTERVAL` seconds (`sesscache stats-running pid=N ...`): a server stopped
//! by a signal (HAProxy, `openssl s_server`) never reaches exit, and its counters would
//! otherwise be lost.
//!
//! The interval defaults to 60 s: a process killed by a signal loses at most a minute of
//! counters, a monitoring system that reads the file once a minute sees every process, and
//! a line a minute per process (about 1,440 a day, ~300 bytes each) is nothing beside a
//! server's access log. `SESSCACHE_STATS_INTERVAL=0` writes at exit only. The periodic
//! writer is a thread of each process, started by the process's first server connection
//! (so in every worker of a prefork server, none in a master that only forks), taking none
//! of the host's signals.
//!
//! Workers often cannot write where their master could (Apache's run as `www-data`): that
//! is said once for the server, not once per worker: the flag lives in a page of memory
//! shared by every process forked after the cache was opened.

use crate::log::Level;
use crate::store::Stats;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The interval when `SESSCACHE_STATS_INTERVAL` is not set.
const DEFAULT_INTERVAL_S: u64 = 60;

struct Report {
    /// `stderr` or a file path; read when the cache is opened, because some servers (nginx)
    /// clear the environment of the worker processes they fork.
    dest: std::ffi::OsString,
    /// Seconds between periodic lines; 0: at exit only.
    interval_s: u64,
    /// The process cache's counters, if it has a cache.
    stats: fn() -> Option<Stats>,
    /// Set once a process of this server said the destination cannot be written: shared
    /// with every process forked later (a MAP_SHARED page), or this process's own.
    said_unwritable: &'static AtomicU32,
}

static REPORT: OnceLock<Report> = OnceLock::new();
/// The process whose periodic writer runs (0: none yet).
static PERIODIC_PID: AtomicU32 = AtomicU32::new(0);

/// Reads `SESSCACHE_STATS` and `SESSCACHE_STATS_INTERVAL` and registers the line written at
/// exit. Does nothing when `SESSCACHE_STATS` is unset or empty.
pub fn register(stats: fn() -> Option<Stats>) {
    if crate::env::ignored("SESSCACHE_STATS") {
        crate::log::write(
            Level::Warn,
            format_args!(
                "SESSCACHE_STATS is ignored: this program runs with privileges its user does not have (setuid, setgid or file capabilities)"
            ),
        );
    }
    let Some(dest) = crate::env::var_os("SESSCACHE_STATS").filter(|d| !d.is_empty()) else {
        return;
    };
    let interval = crate::env::var("SESSCACHE_STATS_INTERVAL")
        .map(|v| v.unwrap_or_else(|raw| raw.to_string_lossy().into_owned()));
    let interval_s = match interval {
        None => DEFAULT_INTERVAL_S,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= 86_400 => n,
            _ => {
                crate::log::write(
                    Level::Error,
                    format_args!(
                        "SESSCACHE_STATS_INTERVAL='{v}' is not a number of seconds from 0 to 86400; using {DEFAULT_INTERVAL_S}"
                    ),
                );
                DEFAULT_INTERVAL_S
            }
        },
    };
    let report = Report {
        dest,
        interval_s,
        stats,
        said_unwritable: shared_flag(),
    };
    if REPORT.set(report).is_err() {
        return;
    }
    extern "C" fn at_exit() {
        let _ = std::panic::catch_unwind(|| write_line("stats"));
    }
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe { libc::atexit(at_exit) };
}

/// A flag in a page shared with the processes this one forks later; this process's own if
/// the page cannot be had.
fn shared_flag() -> &'static AtomicU32 {
    // SAFETY: a fresh anonymous shared mapping of one page, never unmapped; an AtomicU32 at
    // its (page-aligned, zeroed) start is valid for the program's life, in this process
    // and in every process forked from it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Box::leak(Box::new(AtomicU32::new(0)));
        }
        &*p.cast::<AtomicU32>()
    }
}

/// Starts this process's periodic writer if it has none (called for every server
/// connection: a load and a compare when it runs).
pub fn ensure_periodic() {
    let Some(report) = REPORT.get() else {
        return;
    };
    if report.interval_s == 0 {
        return;
    }
    let pid = crate::pid::current();
    let running = PERIODIC_PID.load(Ordering::Relaxed);
    if running == pid
        || PERIODIC_PID
            .compare_exchange(running, pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let interval = Duration::from_secs(report.interval_s);
    let started = crate::threads::spawn_quiet("sesscache-stats", move || loop {
        std::thread::sleep(interval);
        // A forked child has its own writer: this one belonged to the parent.
        if PERIODIC_PID.load(Ordering::Relaxed) != crate::pid::current() {
            return;
        }
        let _ = std::panic::catch_unwind(|| write_line("stats-running"));
    });
    if started.is_err() {
        crate::log_limited!(
            Level::Warn,
            "SESSCACHE_STATS: could not start the periodic writer"
        );
    }
}

/// Appends one line, `sesscache KIND pid=N name=value...`, to the destination.
fn write_line(kind: &str) {
    let Some(report) = REPORT.get() else {
        return;
    };
    let Some(s) = (report.stats)() else {
        return;
    };
    let line = format!(
        "sesscache {kind} pid={} lookups={} hits={} misses={} stores={} removes={} evictions={} expirations={} rejected={} errors={} entries={} bytes={} net_errors={} timeouts={} breaker_opens={} queue_drops={} sni_refused={}\n",
        std::process::id(), s.lookups, s.hits, s.misses, s.stores, s.removes, s.evictions,
        s.expirations, s.rejected, s.errors, s.entries, s.bytes, s.net.net_errors,
        s.net.timeouts, s.net.breaker_opens, s.net.queue_drops, s.sni_refused
    );
    if report.dest == "stderr" {
        // SAFETY: writing an initialised buffer to file descriptor 2.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
        return;
    }
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&report.dest)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        if report.said_unwritable.swap(1, Ordering::AcqRel) == 0 {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            crate::log::write(
                Level::Error,
                format_args!(
                    "SESSCACHE_STATS: cannot write {} as uid {uid}: {e} (said once for this server's processes)",
                    report.dest.to_string_lossy()
                ),
            );
        }
    }
}
