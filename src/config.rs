//! Cache URLs: `memory:?capacity=N&max_bytes=SIZE&ttl=SECONDS&single_use=0|1&max_session_bytes=SIZE&tickets=keep|stateful`.
//!
//! Every error names the part of the URL that is wrong, so that `sesscache_last_error()`
//! (and the preload diagnostics) can tell the user what to fix.

use std::fmt;

/// Which backend a URL selects, with its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Memory {
        capacity: usize,
        max_bytes: usize,
    },
    /// `shm:NAME?size=SIZE`: `size` is None when the URL gives none (then an existing
    /// segment is used at its size, and a new one gets the default).
    Shm {
        name: String,
        size: Option<usize>,
    },
}

/// Settings every backend shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Common {
    /// Upper bound on an entry's lifetime in seconds; `None` keeps the session's own timeout.
    pub ttl: Option<u64>,
    /// TLS 1.3 tickets resume once.
    pub single_use: bool,
    /// Larger encoded sessions are refused.
    pub max_session_bytes: usize,
    /// Preload mode: leave the program's ticket settings alone (`tickets=keep`) instead of
    /// switching attached contexts to stateful tickets (`SSL_OP_NO_TICKET`), the default.
    pub keep_tickets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub backend: Backend,
    pub common: Common,
}

pub(crate) const DEFAULT_CAPACITY: usize = 20_000;
pub(crate) const DEFAULT_MAX_BYTES: usize = 64 << 20;
pub(crate) const DEFAULT_MAX_SESSION_BYTES: usize = 16 << 10;
/// No session we could decode is larger than this; it bounds `max_session_bytes`.
pub(crate) const LIMIT_MAX_SESSION_BYTES: usize = 1 << 20;

impl Default for Common {
    fn default() -> Self {
        Common {
            ttl: None,
            single_use: true,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            keep_tickets: false,
        }
    }
}

/// A URL that cannot be used, with a message naming the bad part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

/// Parses a cache URL.
pub fn parse(url: &str) -> Result<Config, ConfigError> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return err(format!(
            "cache URL '{url}' has no scheme: expected 'memory:' or 'shm:NAME' (e.g. 'memory:?capacity=10000')"
        ));
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    match scheme {
        "shm" => parse_shm(path, query.unwrap_or("")),
        "memory" => {
            if !path.is_empty() {
                return err(format!(
                    "memory: takes no name or path, but the URL has '{path}' after 'memory:'"
                ));
            }
            parse_memory(query.unwrap_or(""))
        }
        other => err(format!(
            "unknown scheme '{other}' in cache URL: the supported schemes are 'memory' and 'shm'"
        )),
    }
}

/// Splits a query into (name, value) pairs, refusing pairs without '=' and repeats.
fn pairs(query: &str) -> Result<Vec<(&str, &str)>, ConfigError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return err(format!(
                "parameter '{pair}' has no value: write '{pair}=VALUE'"
            ));
        };
        if out.iter().any(|(n, _)| *n == name) {
            return err(format!("parameter '{name}' is given twice"));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The smallest and largest `shm:` segments.
pub(crate) const SHM_MIN_SIZE: usize = 64 << 10;
pub(crate) const SHM_MAX_SIZE: usize = 64 << 30;

fn parse_shm(name: &str, query: &str) -> Result<Config, ConfigError> {
    if name.is_empty() {
        return err("shm: needs a name: 'shm:NAME' (letters, digits, '.', '_', '-')".into());
    }
    if name.len() > 200
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        || name.starts_with('.')
    {
        return err(format!(
            "bad shm name '{name}': use letters, digits, '.', '_' and '-' (not first), at most 200"
        ));
    }
    let mut seg_size = None;
    let mut common = Common::default();
    for (pname, value) in pairs(query)? {
        match pname {
            "size" => {
                let v = size(pname, value)?;
                if !(SHM_MIN_SIZE..=SHM_MAX_SIZE).contains(&v) {
                    return err(format!(
                        "bad value '{value}' for size: a shm segment takes from 64K to 64G"
                    ));
                }
                seg_size = Some(v);
            }
            _ => parse_common(&mut common, pname, value, "shm")?,
        }
    }
    Ok(Config {
        backend: Backend::Shm {
            name: name.to_string(),
            size: seg_size,
        },
        common,
    })
}

fn parse_memory(query: &str) -> Result<Config, ConfigError> {
    let mut capacity = DEFAULT_CAPACITY;
    let mut max_bytes = DEFAULT_MAX_BYTES;
    let mut common = Common::default();
    for (name, value) in pairs(query)? {
        match name {
            "capacity" => capacity = positive(name, value)?,
            "max_bytes" => max_bytes = size(name, value)?,
            _ => parse_common(&mut common, name, value, "memory")?,
        }
    }
    if common.max_session_bytes > max_bytes {
        return err(format!(
            "max_session_bytes ({}) is larger than max_bytes ({max_bytes}): no session could be stored",
            common.max_session_bytes
        ));
    }
    Ok(Config {
        backend: Backend::Memory {
            capacity,
            max_bytes,
        },
        common,
    })
}

fn parse_common(c: &mut Common, name: &str, value: &str, scheme: &str) -> Result<(), ConfigError> {
    match name {
        "ttl" => c.ttl = Some(positive(name, value)? as u64),
        "single_use" => {
            c.single_use = match value {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => {
                    return err(format!(
                        "bad value '{value}' for single_use: expected 0 or 1"
                    ))
                }
            }
        }
        "max_session_bytes" => {
            let v = size(name, value)?;
            if v > LIMIT_MAX_SESSION_BYTES {
                return err(format!(
                    "bad value '{value}' for max_session_bytes: at most {LIMIT_MAX_SESSION_BYTES} (1M)"
                ));
            }
            c.max_session_bytes = v;
        }
        "tickets" => {
            c.keep_tickets = match value {
                "keep" => true,
                "stateful" => false,
                _ => {
                    return err(format!(
                        "bad value '{value}' for tickets: expected 'keep' or 'stateful'"
                    ))
                }
            }
        }
        _ => {
            return err(format!(
                "unknown parameter '{name}' for {scheme}: (known: {})",
                if scheme == "shm" {
                    "size, ttl, single_use, max_session_bytes, tickets"
                } else {
                    "capacity, max_bytes, ttl, single_use, max_session_bytes, tickets"
                }
            ))
        }
    }
    Ok(())
}

/// A whole number of at least 1.
fn positive(name: &str, value: &str) -> Result<usize, ConfigError> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => err(format!(
            "bad value '{value}' for {name}: expected a whole number of at least 1"
        )),
    }
}

/// A byte count with an optional K, M or G suffix (powers of 1024).
fn size(name: &str, value: &str) -> Result<usize, ConfigError> {
    let bad = || {
        err(format!(
            "bad value '{value}' for {name}: expected a size such as 4096, 64K, 16M or 1G"
        ))
    };
    let (digits, shift) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 20),
        Some(b'g' | b'G') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return bad();
    }
    match digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
    {
        Some(n) if n >= 1 => Ok(n),
        _ => bad(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(url: &str) -> String {
        parse(url).unwrap_err().0
    }

    #[test]
    fn defaults() {
        let c = parse("memory:").unwrap();
        assert_eq!(
            c.backend,
            Backend::Memory {
                capacity: DEFAULT_CAPACITY,
                max_bytes: DEFAULT_MAX_BYTES
            }
        );
        assert_eq!(c.common, Common::default());
        assert_eq!(parse("memory:?").unwrap(), c);
    }

    #[test]
    fn every_parameter() {
        let c = parse("memory:?capacity=5&max_bytes=2M&ttl=60&single_use=0&max_session_bytes=4k")
            .unwrap();
        assert_eq!(
            c.backend,
            Backend::Memory {
                capacity: 5,
                max_bytes: 2 << 20
            }
        );
        assert_eq!(
            c.common,
            Common {
                ttl: Some(60),
                single_use: false,
                max_session_bytes: 4096,
                keep_tickets: false,
            }
        );
        assert_eq!(
            parse("memory:?max_bytes=1G").unwrap().backend,
            Backend::Memory {
                capacity: DEFAULT_CAPACITY,
                max_bytes: 1 << 30
            }
        );
    }

    #[test]
    fn errors_name_the_bad_part() {
        assert!(msg("memory:?capacity=banana").contains("capacity"));
        assert!(msg("memory:?capacity=banana").contains("banana"));
        assert!(msg("memory:?capacity=0").contains("capacity"));
        assert!(msg("memory:?colour=red").contains("colour"));
        assert!(msg("redis2://x").contains("redis2"));
        assert!(msg("nonsense").contains("nonsense"));
        assert!(msg("memory:foo").contains("foo"));
        assert!(msg("memory:?ttl").contains("ttl"));
        assert!(msg("memory:?ttl=1&ttl=2").contains("twice"));
        assert!(msg("memory:?single_use=maybe").contains("single_use"));
        assert!(msg("memory:?tickets=sometimes").contains("tickets"));
        assert!(parse("memory:?tickets=keep").unwrap().common.keep_tickets);
        assert!(msg("memory:?max_bytes=12Q").contains("max_bytes"));
        assert!(msg("memory:?max_bytes=K").contains("max_bytes"));
        assert!(msg("memory:?max_bytes=99999999999999999999G").contains("max_bytes"));
        assert!(msg("memory:?max_session_bytes=2M").contains("max_session_bytes"));
        assert!(msg("memory:?max_bytes=1K").contains("max_session_bytes"));
        assert!(msg("shm:").contains("name"));
        assert!(msg("shm:a/b").contains("a/b"));
        assert!(msg("shm:.hidden").contains(".hidden"));
        assert!(msg("shm:x?size=1K").contains("size"));
        assert!(msg("shm:x?capacity=5").contains("capacity"));
    }

    #[test]
    fn shm_urls() {
        let c = parse("shm:web-1.cache_A?size=1M&ttl=30").unwrap();
        assert_eq!(
            c.backend,
            Backend::Shm {
                name: "web-1.cache_A".into(),
                size: Some(1 << 20)
            }
        );
        assert_eq!(c.common.ttl, Some(30));
        assert_eq!(
            parse("shm:x").unwrap().backend,
            Backend::Shm {
                name: "x".into(),
                size: None
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = parse(&s);
        }

        #[test]
        fn sizes_round_trip(n in 1usize..1_000_000, suffix in 0usize..3) {
            let (text, mult) = match suffix { 0 => (format!("{n}"), 1), 1 => (format!("{n}K"), 1024), _ => (format!("{n}M"), 1 << 20) };
            proptest::prop_assert_eq!(size("x", &text).unwrap(), n * mult);
        }
    }
}
