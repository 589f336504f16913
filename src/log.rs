//! Diagnostics on stderr, chosen with `SESSCACHE_LOG=error|warn|info|debug` (default
//! `warn`). One line per event, written with a single `write(2)` so that lines from several
//! threads or processes do not interleave. Never a byte of session data or key material:
//! sessions are named by the length of their ID and a fingerprint (a keyed hash with a
//! per-process random key, which reveals nothing about the ID).

use std::fmt::Arguments;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

const UNSET: u8 = u8::MAX;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }
}

fn init() -> u8 {
    let (level, complaint) = match crate::env::var("SESSCACHE_LOG") {
        None => (Level::Warn, None),
        Some(Err(raw)) => (Level::Warn, Some(raw.to_string_lossy().into_owned())),
        Some(Ok(v)) => match Level::parse(&v) {
            Some(l) => (l, None),
            None => (Level::Warn, Some(v)),
        },
    };
    LEVEL.store(level as u8, Ordering::Relaxed);
    if let Some(v) = complaint {
        write(
            Level::Warn,
            format_args!(
                "SESSCACHE_LOG='{v}' is not a level (error, warn, info, debug); using warn"
            ),
        );
    }
    level as u8
}

/// Whether events of `level` are logged; one relaxed load once initialised.
#[inline]
pub fn enabled(level: Level) -> bool {
    let mut current = LEVEL.load(Ordering::Relaxed);
    if current == UNSET {
        current = init();
    }
    level as u8 <= current
}

/// Silences logging (tests that store corrupt data on purpose).
#[cfg(test)]
pub fn silence() {
    LEVEL.store(Level::Off as u8, Ordering::Relaxed);
}

/// Writes one line; use the `log!` macro, which checks the level first.
pub fn write(level: Level, args: Arguments<'_>) {
    let mut line = Vec::with_capacity(128);
    let _ = writeln!(
        line,
        "sesscache[{}]: {}: {}",
        std::process::id(),
        level.name(),
        args
    );
    // SAFETY: writing an initialised buffer to file descriptor 2; a short or failed write
    // only loses a diagnostic line.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// A fingerprint of a session ID for log lines.
pub fn fingerprint(id: &[u8]) -> u32 {
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    (KEY.get_or_init(Default::default).hash_one(id) >> 32) as u32
}

/// Lets one line through at once, then at most one every [`Limiter::PERIOD_MS`], counting
/// the lines it held back: an event that repeats on every operation (a damaged segment, a
/// lock that cannot be had) must not flood the host's log.
pub struct Limiter {
    next_ms: AtomicU64,
    held: AtomicU64,
}

impl Limiter {
    pub(crate) const PERIOD_MS: u64 = 10_000;

    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Limiter {
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Some(lines held back since the last one let through) if this line may be written.
    pub fn allow(&self) -> Option<u64> {
        let now = crate::clock::monotonic_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + Self::PERIOD_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// " (N similar lines held back)" when N > 0.
pub struct Held(pub u64);

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} similar lines held back)"),
        }
    }
}

/// `log!(Level::Debug, "format {}", args)`: formats only when the level is enabled.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*));
        }
    };
}

/// `log_limited!(Level::Warn, "format {}", args)`: like `log!`, through a [`Limiter`] of
/// its own at each place it is written.
#[macro_export]
macro_rules! log_limited {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            static LIMITER: $crate::log::Limiter = $crate::log::Limiter::new();
            if let Some(held) = LIMITER.allow() {
                $crate::log::write(
                    $level,
                    format_args!("{}{}", format_args!($($arg)*), $crate::log::Held(held)),
                );
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_lets_one_line_through_per_period() {
        let l = Limiter::new();
        assert_eq!(l.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.allow(), None);
        }
        // The next period starts: the first line through reports what was held back.
        l.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(l.allow(), Some(1000));
        assert_eq!(Held(0).to_string(), "");
        assert_eq!(Held(3).to_string(), " (3 similar lines held back)");
    }

    #[test]
    fn levels() {
        assert_eq!(Level::parse("DEBUG"), Some(Level::Debug));
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Error < Level::Debug);
        assert_eq!(fingerprint(b"abc"), fingerprint(b"abc"));
    }
}
