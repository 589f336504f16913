//! Cache URLs.
//!
//! ```text
//! URL   = "memory:" [ "?" QUERY ]
//!       | "shm:" NAME [ "?" QUERY ]
//! QUERY = PARAM *( "&" PARAM )          empty PARAMs ("a=1&&b=2", a trailing '&') are skipped
//! PARAM = KEY "=" VALUE
//! ```
//!
//! Parameters (each at most once; any other KEY is an error):
//!
//! | KEY | VALUE | default | scheme |
//! |-----|-------|---------|--------|
//! | `capacity` | NUMBER: most entries | 20000 | `memory:` |
//! | `max_bytes` | SIZE: most bytes of sessions | 64M | `memory:` |
//! | `size` | SIZE of the segment, 64K to 64G | an existing segment's size, else the store's default | `shm:` |
//! | `mode` | `0600` or `0660`, see below | `0600` | `shm:` |
//! | `ttl` | NUMBER: longest lifetime of an entry, in seconds | the session's own timeout | both |
//! | `single_use` | `0` or `1` (also `false`/`true`, `no`/`yes`): TLS 1.3 tickets resume once | `1` | both |
//! | `max_session_bytes` | SIZE: larger encoded sessions are not stored; at most 1M | 16K | both |
//! | `tickets` | `auto`, `keep` or `stateful` (preload mode), see below | `auto` | both |
//! | `force` | `0` or `1` (preload mode), see below | `0` | both |
//!
//! - NAME (of a `shm:` segment): the first character an ASCII letter or digit, then ASCII
//!   letters, digits, '.', '_' and '-'; at most 200 bytes.
//! - NUMBER: ASCII digits only (no sign, spaces, underscores or other characters), at least 1.
//! - SIZE: a NUMBER of bytes, optionally followed by `K`, `M` or `G` (either case; powers
//!   of 1024), e.g. `4096`, `64K`, `16M`, `1G`.
//! - `mode`: who may use the segment. `0600`: only the server's own user. `0660`: members of
//!   the segment's group may share it too, that is read and plant sessions; give it only to a
//!   group trusted with the sessions' secrets.
//! - `tickets` (preload mode): `stateful` turns stateless tickets off on every server
//!   connection the cache serves (`SSL_OP_NO_TICKET`), so that sessions go through the cache;
//!   `keep` leaves the program's setting alone; `auto` is `stateful` where the cache is
//!   shared by every process that could see the client again (`shm:`, or `memory:` in the
//!   process that opened it) and `keep` elsewhere (`memory:` in a forked child, whose copy of
//!   the cache no other process sees): never fewer resumptions than without the library.
//! - `force` (preload mode): `1` makes the cache serve every server context, even one whose
//!   program turned its own session cache off (`SSL_SESS_CACHE_OFF`), with stateful tickets
//!   unless `tickets=keep` is given; `0` leaves such contexts exactly as without the library.
//! - Limits: a URL is at most 4096 bytes with at most 32 parameters (counting repeats and
//!   unknown ones); longer URLs are refused before anything else is looked at. Parsing is one
//!   pass over the URL.
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
    /// `shm:NAME?size=SIZE&mode=MODE`: `size` is None when the URL gives none (then an
    /// existing segment is used at its size, and a new one gets the default).
    Shm {
        name: String,
        size: Option<usize>,
        /// Permission bits for the segment: 0o600 (only the server's own user may use it,
        /// the default) or 0o660 (members of the segment's group may share it: read and
        /// plant sessions).
        mode: u32,
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
    /// Preload mode: whether server connections get stateful tickets.
    pub tickets: Tickets,
    /// Preload mode: serve contexts whose program turned its session cache off.
    pub force: bool,
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
/// The longest cache URL, in bytes.
pub(crate) const MAX_URL_BYTES: usize = 4096;
/// The most parameters a cache URL may have (counting repeats and unknown ones).
pub(crate) const MAX_PARAMS: usize = 32;
/// The longest `shm:` name, in bytes.
pub(crate) const MAX_SHM_NAME_BYTES: usize = 200;
/// `shm:` segment modes: the default, and the one sharing the segment with its group.
pub(crate) const SHM_MODE_OWNER: u32 = 0o600;
pub(crate) const SHM_MODE_GROUP: u32 = 0o660;

impl Default for Common {
    fn default() -> Self {
        Common {
            ttl: None,
            single_use: true,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            tickets: Tickets::Auto,
            force: false,
        }
    }
}

/// `tickets=`: what preload mode does to the tickets of the server connections it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tickets {
    /// `stateful` where the cache is shared by every process that may resume the session,
    /// else `keep`; `stateful` with `force=1`.
    Auto,
    /// Leave the program's ticket setting alone.
    Keep,
    /// `SSL_OP_NO_TICKET` on the connection: sessions go through the cache.
    Stateful,
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
    // Absurd URLs are refused before any other work (and before being quoted in a message).
    if url.len() > MAX_URL_BYTES {
        return err(format!(
            "cache URL is {} bytes long; at most {MAX_URL_BYTES}",
            url.len()
        ));
    }
    let Some((scheme, rest)) = url.split_once(':') else {
        return err(format!(
            "cache URL '{url}' has no scheme: expected 'memory:' or 'shm:NAME' (e.g. 'memory:?capacity=10000')"
        ));
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, q),
        None => (rest, ""),
    };
    let n_params = query.split('&').filter(|p| !p.is_empty()).count();
    if n_params > MAX_PARAMS {
        return err(format!(
            "cache URL has {n_params} parameters; at most {MAX_PARAMS}"
        ));
    }
    match scheme {
        "shm" => parse_shm(path, query),
        "memory" => {
            if !path.is_empty() {
                return err(format!(
                    "memory: takes no name or path, but the URL has '{path}' after 'memory:'"
                ));
            }
            parse_memory(query)
        }
        other => err(format!(
            "unknown scheme '{other}' in cache URL: the supported schemes are 'memory' and 'shm'"
        )),
    }
}

/// Every parameter any scheme knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Capacity,
    MaxBytes,
    Size,
    Mode,
    Ttl,
    SingleUse,
    MaxSessionBytes,
    Tickets,
    Force,
}

/// The parameters of each scheme, in the order the "known:" list of an error gives them.
const MEMORY_PARAMS: &[(&str, Param)] = &[
    ("capacity", Param::Capacity),
    ("max_bytes", Param::MaxBytes),
    ("ttl", Param::Ttl),
    ("single_use", Param::SingleUse),
    ("max_session_bytes", Param::MaxSessionBytes),
    ("tickets", Param::Tickets),
    ("force", Param::Force),
];
const SHM_PARAMS: &[(&str, Param)] = &[
    ("size", Param::Size),
    ("mode", Param::Mode),
    ("ttl", Param::Ttl),
    ("single_use", Param::SingleUse),
    ("max_session_bytes", Param::MaxSessionBytes),
    ("tickets", Param::Tickets),
    ("force", Param::Force),
];

/// Walks a query once, handing each parameter to `set` with its name and value. Refuses at
/// once a pair without '=', a name not in `known` (the scheme's parameters) and a repeat;
/// repeats are tracked in a bitset over `known`, so the walk is linear in the query.
fn walk<'q>(
    query: &'q str,
    scheme: &str,
    known: &[(&'static str, Param)],
    mut set: impl FnMut(Param, &'static str, &'q str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    debug_assert!(known.len() <= 32);
    let mut seen: u32 = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return err(format!(
                "parameter '{pair}' has no value: write '{pair}=VALUE'"
            ));
        };
        let Some(i) = known.iter().position(|(n, _)| *n == name) else {
            let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
            return err(format!(
                "unknown parameter '{name}' for {scheme}: (known: {})",
                names.join(", ")
            ));
        };
        if seen & (1 << i) != 0 {
            return err(format!("parameter '{name}' is given twice"));
        }
        seen |= 1 << i;
        let (name, param) = known[i];
        set(param, name, value)?;
    }
    Ok(())
}

/// The smallest and largest `shm:` segments.
pub(crate) const SHM_MIN_SIZE: usize = 64 << 10;
pub(crate) const SHM_MAX_SIZE: usize = 64 << 30;

/// A `shm:` name: an ASCII letter or digit, then letters, digits, '.', '_' and '-'; at most
/// 200 bytes.
fn valid_shm_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SHM_NAME_BYTES
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
}

fn parse_shm(name: &str, query: &str) -> Result<Config, ConfigError> {
    if name.is_empty() {
        return err(format!(
            "shm: needs a name: 'shm:NAME', where NAME starts with an ASCII letter or digit, \
             then has letters, digits, '.', '_' or '-', at most {MAX_SHM_NAME_BYTES} bytes"
        ));
    }
    if !valid_shm_name(name) {
        return err(format!(
            "bad shm name '{name}': the first character must be an ASCII letter or digit, \
             the rest letters, digits, '.', '_' or '-', at most {MAX_SHM_NAME_BYTES} bytes"
        ));
    }
    let mut seg_size = None;
    let mut mode = SHM_MODE_OWNER;
    let mut common = Common::default();
    walk(query, "shm", SHM_PARAMS, |param, pname, value| {
        match param {
            Param::Size => {
                let v = size(pname, value)?;
                if !(SHM_MIN_SIZE..=SHM_MAX_SIZE).contains(&v) {
                    return err(format!(
                        "bad value '{value}' for size: a shm segment takes from 64K to 64G"
                    ));
                }
                seg_size = Some(v);
            }
            Param::Mode => {
                mode = match value {
                    "0600" => SHM_MODE_OWNER,
                    "0660" => SHM_MODE_GROUP,
                    _ => {
                        return err(format!(
                            "bad value '{value}' for mode: expected 0600 or 0660"
                        ))
                    }
                }
            }
            _ => parse_common(&mut common, param, pname, value)?,
        }
        Ok(())
    })?;
    Ok(Config {
        backend: Backend::Shm {
            name: name.to_string(),
            size: seg_size,
            mode,
        },
        common,
    })
}

fn parse_memory(query: &str) -> Result<Config, ConfigError> {
    let mut capacity = DEFAULT_CAPACITY;
    let mut max_bytes = DEFAULT_MAX_BYTES;
    let mut common = Common::default();
    walk(query, "memory", MEMORY_PARAMS, |param, name, value| {
        match param {
            Param::Capacity => capacity = positive(name, value)?,
            Param::MaxBytes => max_bytes = size(name, value)?,
            _ => parse_common(&mut common, param, name, value)?,
        }
        Ok(())
    })?;
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

/// The parameters every scheme shares; `walk` only hands over parameters of the scheme.
fn parse_common(c: &mut Common, param: Param, name: &str, value: &str) -> Result<(), ConfigError> {
    match param {
        Param::Ttl => c.ttl = Some(positive(name, value)? as u64),
        Param::SingleUse => c.single_use = flag(name, value)?,
        Param::MaxSessionBytes => {
            let v = size(name, value)?;
            if v > LIMIT_MAX_SESSION_BYTES {
                return err(format!(
                    "bad value '{value}' for max_session_bytes: at most {LIMIT_MAX_SESSION_BYTES} (1M)"
                ));
            }
            c.max_session_bytes = v;
        }
        Param::Tickets => {
            c.tickets = match value {
                "auto" => Tickets::Auto,
                "keep" => Tickets::Keep,
                "stateful" => Tickets::Stateful,
                _ => {
                    return err(format!(
                        "bad value '{value}' for tickets: expected 'auto', 'keep' or 'stateful'"
                    ))
                }
            }
        }
        Param::Force => c.force = flag(name, value)?,
        Param::Capacity | Param::MaxBytes | Param::Size | Param::Mode => {
            unreachable!("'{name}' is not a common parameter")
        }
    }
    Ok(())
}

/// `1`/`true`/`yes` or `0`/`false`/`no`.
fn flag(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => err(format!("bad value '{value}' for {name}: expected 0 or 1")),
    }
}

/// A number: one or more ASCII digits, nothing else (no sign, spaces or underscores).
fn number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<usize>().ok()
}

/// A number of at least 1.
fn positive(name: &str, value: &str) -> Result<usize, ConfigError> {
    match number(value) {
        Some(n) if n >= 1 => Ok(n),
        _ => err(format!(
            "bad value '{value}' for {name}: expected a whole number of at least 1 (digits only)"
        )),
    }
}

/// A byte count: a number with an optional K, M or G suffix (powers of 1024).
fn size(name: &str, value: &str) -> Result<usize, ConfigError> {
    let (digits, shift) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 20),
        Some(b'g' | b'G') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    match number(digits).and_then(|n| n.checked_mul(1 << shift)) {
        Some(n) if n >= 1 => Ok(n),
        _ => err(format!(
            "bad value '{value}' for {name}: expected a size such as 4096, 64K, 16M or 1G"
        )),
    }
}

impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> crate::error::Error {
        crate::error::Error::new(crate::error::ErrorKind::Url, e.0)
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
                tickets: Tickets::Auto,
                force: false,
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
        assert_eq!(
            parse("memory:?tickets=keep").unwrap().common.tickets,
            Tickets::Keep
        );
        assert_eq!(
            parse("shm:x?tickets=stateful&force=1").unwrap().common,
            Common {
                tickets: Tickets::Stateful,
                force: true,
                ..Common::default()
            }
        );
        assert!(msg("memory:?force=2").contains("force"));
        assert!(msg("memory:?max_bytes=12Q").contains("max_bytes"));
        assert!(msg("memory:?max_bytes=K").contains("max_bytes"));
        assert!(msg("memory:?max_bytes=99999999999999999999G").contains("max_bytes"));
        assert!(msg("memory:?max_session_bytes=2M").contains("max_session_bytes"));
        assert!(msg("memory:?max_bytes=1K").contains("max_session_bytes"));
        assert!(msg("shm:").contains("name"));
        assert!(msg("shm:a/b").contains("a/b"));
        assert!(msg("shm:.hidden").contains(".hidden"));
        assert!(msg("shm:-x").contains("-x"));
        assert!(msg("shm:_x").contains("_x"));
        assert!(msg("shm:x?mode=0777").contains("mode"));
        assert!(msg("memory:?capacity=+5").contains("+5"));
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
                size: Some(1 << 20),
                mode: 0o600,
            }
        );
        assert_eq!(c.common.ttl, Some(30));
        assert_eq!(
            parse("shm:x").unwrap().backend,
            Backend::Shm {
                name: "x".into(),
                size: None,
                mode: 0o600,
            }
        );
        assert!(parse(&format!("shm:{}", "a".repeat(200))).is_ok());
        assert!(parse("shm:0").is_ok());
    }

    /// A URL of `n` distinct parameters `p0=1&p1=1&...`.
    fn many_params(n: usize) -> String {
        let mut url = String::from("memory:?");
        for i in 0..n {
            url.push_str(&format!("p{i}=1&"));
        }
        url
    }

    #[test]
    fn huge_url_is_refused_naming_its_length() {
        let url = many_params(160_000);
        assert!(url.len() > MAX_URL_BYTES);
        assert_eq!(
            msg(&url),
            format!("cache URL is {} bytes long; at most 4096", url.len())
        );
        // At the limit a URL is parsed; one byte more is refused.
        let mut url = String::from("memory:?ttl=1");
        url.push_str(&"&".repeat(MAX_URL_BYTES - url.len()));
        assert_eq!(url.len(), MAX_URL_BYTES);
        assert_eq!(parse(&url).unwrap().common.ttl, Some(1));
        url.push('&');
        assert_eq!(msg(&url), "cache URL is 4097 bytes long; at most 4096");
    }

    #[test]
    fn too_many_parameters_are_refused_naming_the_count() {
        let m = msg(&many_params(33));
        assert_eq!(m, "cache URL has 33 parameters; at most 32");
        assert!(msg(&format!("shm:x?{}", "ttl=1&".repeat(40))).contains("40 parameters"));
        // 32 are allowed: then the first unknown one is the error.
        assert!(msg(&many_params(32)).contains("unknown parameter 'p0'"));
        // Empty pieces are not parameters.
        let url = format!("memory:?ttl=5{}", "&".repeat(100));
        assert_eq!(parse(&url).unwrap().common.ttl, Some(5));
    }

    #[test]
    fn repeats_within_the_limit_are_given_twice() {
        let url = format!("memory:?{}", ["ttl=1"; 32].join("&"));
        assert_eq!(msg(&url), "parameter 'ttl' is given twice");
        let url = format!("shm:x?{}", ["mode=0660"; 32].join("&"));
        assert_eq!(msg(&url), "parameter 'mode' is given twice");
    }

    #[test]
    fn unknown_parameters_list_the_known_ones() {
        assert_eq!(
            msg("memory:?colour=red"),
            "unknown parameter 'colour' for memory: (known: capacity, max_bytes, ttl, \
             single_use, max_session_bytes, tickets, force)"
        );
        assert_eq!(
            msg("shm:x?capacity=5"),
            "unknown parameter 'capacity' for shm: (known: size, mode, ttl, \
             single_use, max_session_bytes, tickets, force)"
        );
        // A parameter of the other scheme is unknown, not silently taken.
        assert!(msg("memory:?mode=0600").contains("unknown parameter 'mode'"));
        assert!(msg("memory:?size=1M").contains("unknown parameter 'size'"));
    }

    #[test]
    fn numbers_are_ascii_digits_only() {
        for bad in ["+5", " 5", "5 ", "-1", "5_0", "0x10", "", "\u{0665}"] {
            let quoted = format!("'{bad}'");
            let m = msg(&format!("memory:?capacity={bad}"));
            assert!(m.contains("capacity") && m.contains(&quoted), "{m}");
            let m = msg(&format!("memory:?ttl={bad}"));
            assert!(m.contains("ttl") && m.contains(&quoted), "{m}");
            let m = msg(&format!("memory:?max_bytes={bad}"));
            assert!(m.contains("max_bytes") && m.contains(&quoted), "{m}");
            let m = msg(&format!("memory:?max_session_bytes={bad}"));
            assert!(
                m.contains("max_session_bytes") && m.contains(&quoted),
                "{m}"
            );
            let m = msg(&format!("shm:x?size={bad}"));
            assert!(m.contains("size") && m.contains(&quoted), "{m}");
        }
        for bad in ["+5K", " 5M", "5 K", "-1G", "1_0M", "+64K"] {
            assert!(size("n", bad).is_err(), "{bad}");
            assert!(msg(&format!("shm:x?size={bad}")).contains("size"));
        }
        assert_eq!(positive("n", "007"), Ok(7));
        assert!(positive("n", "99999999999999999999999").is_err());
        assert_eq!(size("n", "64k"), Ok(64 << 10));
    }

    #[test]
    fn shm_names() {
        let long = "a".repeat(201);
        for bad in ["-x", "_x", ".x", "-", "x/y", "x y", "é", &long] {
            let m = msg(&format!("shm:{bad}"));
            assert!(m.contains(&format!("'{bad}'")), "{m}");
            assert!(
                m.contains("the first character must be an ASCII letter or digit"),
                "{m}"
            );
            assert!(m.contains("'.', '_' or '-', at most 200 bytes"), "{m}");
        }
        for good in ["x", "0", "A-b_c.d", "9-", "a..", "x_"] {
            assert!(parse(&format!("shm:{good}")).is_ok(), "{good}");
        }
    }

    #[test]
    fn shm_mode() {
        let mode = |url: &str| match parse(url).unwrap().backend {
            Backend::Shm { mode, .. } => mode,
            other => panic!("{other:?}"),
        };
        assert_eq!(mode("shm:x"), 0o600);
        assert_eq!(mode("shm:x?mode=0600"), 0o600);
        assert_eq!(mode("shm:x?mode=0660"), 0o660);
        assert_eq!(mode("shm:x?size=1M&mode=0660&ttl=5"), 0o660);
        for bad in ["0777", "0666", "600", "660", "0644", "", "0o660", " 0660"] {
            assert_eq!(
                msg(&format!("shm:x?mode={bad}")),
                format!("bad value '{bad}' for mode: expected 0600 or 0660")
            );
        }
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
