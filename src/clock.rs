//! Clocks: wall time in the unit OpenSSL uses for sessions, and a cheap monotonic clock for
//! bounds on waiting and for rate limits.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, the unit of `SSL_SESSION_get_time`.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds on the coarse monotonic clock (a vDSO read, no system call; a few ms of
/// resolution).
pub fn monotonic_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: t is a valid timespec to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// A monotonic clock in milliseconds, for what decides by time and is tested without
/// waiting (the Redis store's circuit breaker and writer): [`Monotonic`] in production, a
/// clock a test sets by hand ([`Manual`]) in tests.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// [`monotonic_ms`], as a [`Clock`].
pub struct Monotonic;

impl Clock for Monotonic {
    fn now_ms(&self) -> u64 {
        monotonic_ms()
    }
}

/// A clock that moves only when told to.
#[cfg(test)]
#[derive(Default)]
pub struct Manual(std::sync::atomic::AtomicU64);

#[cfg(test)]
impl Manual {
    pub fn at(ms: u64) -> Manual {
        Manual(std::sync::atomic::AtomicU64::new(ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
impl Clock for Manual {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
