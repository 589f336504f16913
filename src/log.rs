//! Diagnostics on stderr, chosen with `SESSCACHE_LOG=error|warn|info|debug` (default
//! `warn`). One line per event, written with a single `write(2)` so that lines from several
//! threads or processes do not interleave. Never a byte of session data or key material:
//! sessions are named by the length of their ID and a fingerprint (a keyed hash with a
//! per-process random key, which reveals nothing about the ID).

use std::fmt::Arguments;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
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
    let (level, complaint) = match std::env::var("SESSCACHE_LOG") {
        Err(_) => (Level::Warn, None),
        Ok(v) => match Level::parse(&v) {
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

/// `log!(Level::Debug, "format {}", args)`: formats only when the level is enabled.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::parse("DEBUG"), Some(Level::Debug));
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Error < Level::Debug);
        assert_eq!(fingerprint(b"abc"), fingerprint(b"abc"));
    }
}
