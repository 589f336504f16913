//! The parameter table of cache URLs, and the one-pass walk over a query that it drives.
//!
//! [`PARAMS`] is the one description of the parameters: the walk finds a parameter there,
//! parses its value by its [`Kind`] and stores it with its `set`; the per-scheme lists of
//! known names and every error about a parameter come from its entry; and `docs.rs` renders
//! the documentation (README.md, the module doc of `config`, the `sesscache_open` doc
//! comment, the manual page `man/man5/sesscache-url.5`) from it.

use super::types::{
    err, Common, ConfigError, Sealing, Tickets, DEFAULT_CAPACITY, DEFAULT_MAX_BYTES,
    LIMIT_MAX_SESSION_BYTES, MAX_SHM_NAME_BYTES, MAX_TICKET_ROTATE_S, MIN_TICKET_ROTATE_S,
    REDIS_DEFAULT_BATCH_MS, REDIS_DEFAULT_PORT, REDIS_DEFAULT_PREFIX, REDIS_DEFAULT_QUEUE,
    REDIS_DEFAULT_TIMEOUT_MS, SHM_MAX_SIZE, SHM_MIN_SIZE, SHM_MODE_GROUP, SHM_MODE_OWNER,
};

/// A URL scheme. A new backend is one more variant here (its name and path below, one more
/// entry in [`Scheme::ALL`]), its own parameters in [`PARAMS`] with `Schemes::of(&[it])`,
/// and one more arm where `parse` builds the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Memory,
    Shm,
    Redis,
    Rediss,
    RedisUnix,
    RedisCluster,
    RedisSentinel,
}

impl Scheme {
    /// Every scheme, in the order the documentation and the messages give them.
    pub(crate) const ALL: [Scheme; 7] = [
        Scheme::Memory,
        Scheme::Shm,
        Scheme::Redis,
        Scheme::Rediss,
        Scheme::RedisUnix,
        Scheme::RedisCluster,
        Scheme::RedisSentinel,
    ];

    /// The name before the ':'.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Scheme::Memory => "memory",
            Scheme::Shm => "shm",
            Scheme::Redis => "redis",
            Scheme::Rediss => "rediss",
            Scheme::RedisUnix => "redis+unix",
            Scheme::RedisCluster => "redis+cluster",
            Scheme::RedisSentinel => "redis+sentinel",
        }
    }

    /// What comes between the ':' and the '?', in the grammar; None when nothing may.
    #[cfg(test)]
    pub(crate) const fn path(self) -> Option<&'static str> {
        match self {
            Scheme::Memory => None,
            Scheme::Shm => Some("NAME"),
            Scheme::Redis | Scheme::Rediss => Some("//[USER[:PASSWORD]@]HOST[:PORT][/DB]"),
            Scheme::RedisUnix => Some("//[USER[:PASSWORD]@]PATH"),
            Scheme::RedisCluster => Some("//[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]"),
            Scheme::RedisSentinel => Some("//[USER[:PASSWORD]@]SENTINELS/MASTERNAME[/DB]"),
        }
    }

    /// What the path must be, for errors and the documentation; None when there is none.
    pub(crate) fn path_rule(self) -> Option<String> {
        match self {
            Scheme::Memory => None,
            Scheme::Shm => Some(shm_name_rule()),
            Scheme::Redis => Some(format!(
                "HOST is a host name, an IPv4 address or an IPv6 address in brackets; PORT \
                 defaults to {REDIS_DEFAULT_PORT}; DB is a database number (default 0); USER \
                 and PASSWORD are percent-encoded where they hold ':', '@', '/', '?', '&' or \
                 '%' (a password is better given with password_file or password_env, since a \
                 URL may show in `ps`)"
            )),
            Scheme::Rediss => Some(
                "as redis:, over TLS: the server's certificate is verified against the \
                 system's CAs (or tls_ca_file) and HOST (or tls_name)"
                    .to_string(),
            ),
            Scheme::RedisUnix => {
                Some("PATH is the absolute path of the server's Unix socket".to_string())
            }
            Scheme::RedisCluster => Some(
                "one or more seed nodes of a Redis Cluster, each HOST:PORT; the cluster's \
                 other nodes are found from them"
                    .to_string(),
            ),
            Scheme::RedisSentinel => Some(
                "SENTINELS is one or more Redis Sentinels, HOST:PORT[,HOST:PORT...], asked in turn for the address \
                 of the primary they watch under MASTERNAME (letters, digits, '.', '_', '-'; \
                 at most 128), again for every new connection, so that the cache follows a \
                 failover; DB is a database number (default 0); USER and PASSWORD are the \
                 Redis servers' (the Sentinels' own password is sentinel_password_file or \
                 sentinel_password_env)"
                    .to_string(),
            ),
        }
    }

    /// The scheme a URL names, if it is one of ours.
    pub(crate) fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The URL's start as the documentation writes it: `memory:`, `shm:NAME`.
    #[cfg(test)]
    pub(crate) fn form(self) -> String {
        format!("{}:{}", self.name(), self.path().unwrap_or(""))
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The schemes that accept a parameter: one bit per [`Scheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schemes(u8);

impl Schemes {
    /// Every scheme (the settings all backends share).
    pub(crate) const ALL: Schemes = Schemes::of(&Scheme::ALL);
    pub(crate) const MEMORY: Schemes = Schemes::of(&[Scheme::Memory]);
    pub(crate) const SHM: Schemes = Schemes::of(&[Scheme::Shm]);
    pub(crate) const REDIS: Schemes = Schemes::of(&[
        Scheme::Redis,
        Scheme::Rediss,
        Scheme::RedisUnix,
        Scheme::RedisCluster,
        Scheme::RedisSentinel,
    ]);
    pub(crate) const SENTINEL: Schemes = Schemes::of(&[Scheme::RedisSentinel]);
    /// The `redis` schemes whose connections may be TLS.
    pub(crate) const REDIS_TLS: Schemes = Schemes::of(&[
        Scheme::Redis,
        Scheme::Rediss,
        Scheme::RedisCluster,
        Scheme::RedisSentinel,
    ]);
    /// The `redis` schemes that choose TLS with `tls=` (`rediss:` always uses it).
    pub(crate) const REDIS_TLS_CHOICE: Schemes =
        Schemes::of(&[Scheme::Redis, Scheme::RedisCluster, Scheme::RedisSentinel]);
    /// The backends off this process, whose sessions may be sealed.
    pub(crate) const SEALABLE: Schemes = Schemes::of(&[
        Scheme::Shm,
        Scheme::Redis,
        Scheme::Rediss,
        Scheme::RedisUnix,
        Scheme::RedisCluster,
        Scheme::RedisSentinel,
    ]);

    pub(crate) const fn of(schemes: &[Scheme]) -> Schemes {
        let mut bits = 0;
        let mut i = 0;
        while i < schemes.len() {
            bits |= schemes[i].bit();
            i += 1;
        }
        Schemes(bits)
    }

    pub(crate) const fn contains(self, scheme: Scheme) -> bool {
        self.0 & scheme.bit() != 0
    }

    /// The schemes of the set, in [`Scheme::ALL`]'s order.
    #[cfg(test)]
    pub(crate) fn iter(self) -> impl Iterator<Item = Scheme> {
        Scheme::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

/// What a parameter's value may be. [`Kind::parse`] turns the text into a number for the
/// entry's `set`: the number itself, a byte count, 0 or 1, the index of a word, mode bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// NUMBER: ASCII digits, at least 1.
    Number,
    /// SIZE: a NUMBER of bytes with an optional K, M or G suffix, from `min` (at least 1) to
    /// `max`.
    Size { min: usize, max: usize },
    /// A flag: one of [`FLAG_WORDS`].
    Flag,
    /// One of these words; the value is its index.
    Word(&'static [&'static str]),
    /// File permission bits, written as four octal digits (`0600`): one of these.
    Mode(&'static [u32]),
    /// NUMBER from `min` to `max`.
    Count { min: usize, max: usize },
    /// TEXT: an absolute file path (percent-encoded where it holds '&', '%' or a space).
    Path,
    /// TEXT: printable ASCII without spaces, at most 128 bytes (percent-encoded as a path).
    Prefix,
    /// TEXT: the name of an environment variable: letters, digits and '_', not starting
    /// with a digit.
    EnvName,
}

/// How a parameter's value is stored: as the number [`Kind::parse`] makes of it, or as the
/// text [`Kind::parse_text`] makes of it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Set {
    Num(fn(&mut Settings, usize)),
    Text(fn(&mut Settings, String)),
}

/// The words a flag takes, in pairs (off, on); the first pair is the one the messages and
/// the documentation name.
pub(crate) const FLAG_WORDS: [(&str, &str); 3] = [("0", "1"), ("false", "true"), ("no", "yes")];

/// Size suffixes, with the shift each stands for (powers of 1024).
pub(crate) const SIZE_SUFFIXES: [(u8, u32); 3] = [(b'K', 10), (b'M', 20), (b'G', 30)];

impl Kind {
    /// Any size of at least one byte.
    pub(crate) const SIZE: Kind = Kind::Size {
        min: 1,
        max: usize::MAX,
    };

    /// The value `text` stands for, or None when this kind does not take it.
    pub(crate) fn parse(self, text: &str) -> Option<usize> {
        match self {
            Kind::Number => number(text).filter(|&n| n >= 1),
            Kind::Size { min, max } => size(text).filter(|n| (min..=max).contains(n)),
            Kind::Flag => FLAG_WORDS.iter().find_map(|&(off, on)| match text {
                t if t == off => Some(0),
                t if t == on => Some(1),
                _ => None,
            }),
            Kind::Word(words) => words.iter().position(|w| *w == text),
            Kind::Mode(modes) => modes
                .iter()
                .find(|&&m| octal_mode(m) == text)
                .map(|&m| m as usize),
            Kind::Count { min, max } => number(text).filter(|n| (min..=max).contains(n)),
            Kind::Path | Kind::Prefix | Kind::EnvName => None,
        }
    }

    /// The text `text` stands for (percent-decoded), or None when this kind does not take
    /// it.
    pub(crate) fn parse_text(self, text: &str) -> Option<String> {
        let decoded = percent_decode(text)?;
        let ok = match self {
            Kind::Path => {
                decoded.starts_with('/')
                    && decoded.len() <= 4096
                    && !decoded.bytes().any(|b| b.is_ascii_control())
            }
            Kind::Prefix => decoded.len() <= 128 && decoded.bytes().all(|b| b.is_ascii_graphic()),
            Kind::EnvName => {
                !decoded.is_empty()
                    && decoded.len() <= 128
                    && !decoded.as_bytes()[0].is_ascii_digit()
                    && decoded
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }
            _ => false,
        };
        ok.then_some(decoded)
    }

    /// What a value of this kind must be, for error messages: "expected {this}".
    pub(crate) fn expected(self) -> String {
        match self {
            Kind::Number => "a whole number of at least 1 (digits only)".to_string(),
            Kind::Size { .. } if self == Kind::SIZE => {
                "a size such as 4096, 64K, 16M or 1G".to_string()
            }
            Kind::Size { .. } => {
                let range = self.range().unwrap_or_default();
                let of = if range.starts_with("from") { "" } else { "of " };
                format!("a size {of}{range} (digits with an optional K, M or G suffix)")
            }
            Kind::Flag => format!(
                "0 or 1 (or {})",
                FLAG_WORDS[1..]
                    .iter()
                    .map(|(off, on)| format!("{off}/{on}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Word(words) => join_or(words.iter().map(|w| format!("'{w}'"))),
            Kind::Mode(modes) => join_or(modes.iter().map(|&m| octal_mode(m))),
            Kind::Count { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Path => "an absolute file path".to_string(),
            Kind::Prefix => "printable ASCII without spaces, at most 128 bytes".to_string(),
            Kind::EnvName => "an environment variable's name (letters, digits and '_')".to_string(),
        }
    }

    /// The bounds of a size other than [`Kind::SIZE`]: "from 64K to 64G", "at most 1M".
    pub(crate) fn range(self) -> Option<String> {
        match self {
            Kind::Size { .. } if self == Kind::SIZE => None,
            Kind::Size { min, max } if min <= 1 => Some(format!("at most {}", size_text(max))),
            Kind::Size { min, max } if max == usize::MAX => {
                Some(format!("at least {}", size_text(min)))
            }
            Kind::Size { min, max } => {
                Some(format!("from {} to {}", size_text(min), size_text(max)))
            }
            Kind::Count { min, max } => Some(format!("from {min} to {max}")),
            _ => None,
        }
    }
}

/// A parameter's default, as the documentation gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultText {
    /// The value used when the URL gives none, written as a URL would give it (a test checks
    /// that giving it changes nothing).
    Value(&'static str),
    /// No value: what happens instead.
    Otherwise(&'static str),
}

/// What a URL sets, before it becomes a [`super::Config`]; every field starts at its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) capacity: usize,
    pub(crate) max_bytes: usize,
    pub(crate) size: Option<usize>,
    pub(crate) mode: u32,
    pub(crate) common: Common,
    pub(crate) sealing: Sealing,
    pub(crate) prefix: String,
    pub(crate) timeout_ms: u32,
    pub(crate) l1: usize,
    pub(crate) queue: usize,
    pub(crate) batch_ms: u32,
    pub(crate) password_file: Option<String>,
    pub(crate) password_env: Option<String>,
    pub(crate) sentinel_password_file: Option<String>,
    pub(crate) sentinel_password_env: Option<String>,
    pub(crate) tls: TlsSettings,
}

/// The `tls` parameters as a URL gives them (checked against each other and the scheme by
/// `redis_url::parse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TlsSettings {
    pub(crate) on: bool,
    pub(crate) ca_file: Option<String>,
    pub(crate) cert_file: Option<String>,
    pub(crate) key_file: Option<String>,
    pub(crate) name: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            capacity: DEFAULT_CAPACITY,
            max_bytes: DEFAULT_MAX_BYTES,
            size: None,
            mode: SHM_MODE_OWNER,
            common: Common::default(),
            sealing: Sealing::default(),
            prefix: REDIS_DEFAULT_PREFIX.to_string(),
            timeout_ms: REDIS_DEFAULT_TIMEOUT_MS,
            l1: 0,
            queue: REDIS_DEFAULT_QUEUE,
            batch_ms: REDIS_DEFAULT_BATCH_MS,
            password_file: None,
            password_env: None,
            tls: TlsSettings::default(),
            sentinel_password_file: None,
            sentinel_password_env: None,
        }
    }
}

/// One parameter of cache URLs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamSpec {
    /// The KEY in `KEY=VALUE`.
    pub(crate) name: &'static str,
    /// The schemes that accept it; for every other scheme it is unknown.
    pub(crate) schemes: Schemes,
    /// What its value may be.
    pub(crate) kind: Kind,
    // `default` and `about` are read by the renderers (docs.rs), built with the tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) default: DefaultText,
    /// One line for the documentation.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) about: &'static str,
    /// Stores a value that [`Kind::parse`] (or [`Kind::parse_text`]) accepted.
    pub(crate) set: Set,
}

impl ParamSpec {
    /// The error for a value this parameter does not take.
    pub(crate) fn bad_value(&self, value: &str) -> ConfigError {
        ConfigError(format!(
            "bad value '{value}' for {}: expected {}",
            self.name,
            self.kind.expected()
        ))
    }
}

/// The words of `tickets=`, with what each selects.
const TICKETS: [(&str, Tickets); 4] = [
    ("auto", Tickets::Auto),
    ("keep", Tickets::Keep),
    ("stateful", Tickets::Stateful),
    ("shared", Tickets::Shared),
];
const TICKET_WORDS: [&str; 4] = [TICKETS[0].0, TICKETS[1].0, TICKETS[2].0, TICKETS[3].0];

/// Every parameter of every scheme, in the order the documentation and the "known:" lists of
/// errors give them.
pub(crate) const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "capacity",
        schemes: Schemes::MEMORY,
        kind: Kind::Number,
        default: DefaultText::Value("20000"),
        about: "the most sessions held",
        set: Set::Num(|s, v| s.capacity = v),
    },
    ParamSpec {
        name: "max_bytes",
        schemes: Schemes::MEMORY,
        kind: Kind::SIZE,
        default: DefaultText::Value("64M"),
        about: "the most bytes held for sessions, encoded or decoded (estimated from above), \
                with their bookkeeping",
        set: Set::Num(|s, v| s.max_bytes = v),
    },
    ParamSpec {
        name: "size",
        schemes: Schemes::SHM,
        kind: Kind::Size {
            min: SHM_MIN_SIZE,
            max: SHM_MAX_SIZE,
        },
        default: DefaultText::Otherwise("an existing segment's size, else 32M"),
        about: "the size a new segment is created with, reserved at once; an existing \
                segment of another size is refused",
        set: Set::Num(|s, v| s.size = Some(v)),
    },
    ParamSpec {
        name: "mode",
        schemes: Schemes::SHM,
        kind: Kind::Mode(&[SHM_MODE_OWNER, SHM_MODE_GROUP]),
        default: DefaultText::Value("0600"),
        about: "who may use the segment: `0600` only the server's own user, `0660` the \
                members of its group too",
        set: Set::Num(|s, v| s.mode = v as u32),
    },
    ParamSpec {
        name: "ttl",
        schemes: Schemes::ALL,
        kind: Kind::Number,
        default: DefaultText::Otherwise("the session's own timeout"),
        about: "the longest lifetime of an entry, in seconds",
        set: Set::Num(|s, v| s.common.ttl = Some(v as u64)),
    },
    ParamSpec {
        name: "single_use",
        schemes: Schemes::ALL,
        kind: Kind::Flag,
        default: DefaultText::Value("1"),
        about: "TLS 1.3 tickets resume once",
        set: Set::Num(|s, v| s.common.single_use = v != 0),
    },
    ParamSpec {
        name: "sni_check",
        schemes: Schemes::ALL,
        kind: Kind::Flag,
        default: DefaultText::Value("1"),
        about: "a session made for one server name (SNI) is not resumed on a connection that \
                asks for another name or for none (a miss, counted as `sni_refused`; see \
                SECURITY.md)",
        set: Set::Num(|s, v| s.common.sni_check = v != 0),
    },
    ParamSpec {
        name: "max_session_bytes",
        schemes: Schemes::ALL,
        kind: Kind::Size {
            min: 1,
            max: LIMIT_MAX_SESSION_BYTES,
        },
        default: DefaultText::Value("16K"),
        about: "larger encoded sessions are not stored (counted as `rejected`)",
        set: Set::Num(|s, v| s.common.max_session_bytes = v),
    },
    ParamSpec {
        name: "tickets",
        schemes: Schemes::ALL,
        kind: Kind::Word(&TICKET_WORDS),
        default: DefaultText::Value("auto"),
        about: "stateful tickets on preloaded server connections where the cache is \
                shared by every process that may resume (`auto`), always (`stateful`) or \
                never (`keep`); or stateless tickets under keys kept in the cache and \
                rotated through it, shared by every process and host using it (`shared`, \
                preloaded and attached contexts; `redis` needs `key_file`)",
        set: Set::Num(|s, v| s.common.tickets = TICKETS[v].1),
    },
    ParamSpec {
        name: "ticket_rotate",
        schemes: Schemes::ALL,
        kind: Kind::Count {
            min: MIN_TICKET_ROTATE_S,
            max: MAX_TICKET_ROTATE_S,
        },
        default: DefaultText::Value("3600"),
        about: "with shared tickets (`tickets` `shared`): seconds each ticket key encrypts; it then still decrypts \
                for `ttl` seconds (default 7200); every server of a cache must give the same",
        set: Set::Num(|s, v| s.common.ticket_rotate = v as u64),
    },
    ParamSpec {
        name: "force",
        schemes: Schemes::ALL,
        kind: Kind::Flag,
        default: DefaultText::Value("0"),
        about: "preload mode: serve also the contexts whose program turned its session \
                cache off; with shared tickets, also those whose program set its own \
                ticket keys or ticket callback (the shared keys then win)",
        set: Set::Num(|s, v| s.common.force = v != 0),
    },
    ParamSpec {
        name: "key_file",
        schemes: Schemes::SEALABLE,
        kind: Kind::Path,
        default: DefaultText::Otherwise("none: sessions are stored as they are"),
        about: "seal every stored session with AES-256-GCM under the keys in this file \
                (one key a line, 64 hex digits; the first seals, every one opens), the \
                session ID as associated data; the file must be private to its owner",
        set: Set::Text(|s, v| s.sealing.key_file = Some(v)),
    },
    ParamSpec {
        name: "insecure_plaintext",
        schemes: Schemes::REDIS,
        kind: Kind::Flag,
        default: DefaultText::Value("0"),
        about: "`1` lets a `redis` cache store sessions, master secrets included, in clear \
                (without it, `key_file` is required)",
        set: Set::Num(|s, v| s.sealing.insecure_plaintext = v != 0),
    },
    ParamSpec {
        name: "prefix",
        schemes: Schemes::REDIS,
        kind: Kind::Prefix,
        default: DefaultText::Value("sesscache:"),
        about: "put before every key (and sealed into every value, so that values do not \
                move between caches)",
        set: Set::Text(|s, v| s.prefix = v),
    },
    ParamSpec {
        name: "timeout_ms",
        schemes: Schemes::REDIS,
        kind: Kind::Count {
            min: 1,
            max: 60_000,
        },
        default: DefaultText::Value("10"),
        about: "the most a lookup waits for Redis, connecting included, before it is a miss",
        set: Set::Num(|s, v| s.timeout_ms = v as u32),
    },
    ParamSpec {
        name: "l1",
        schemes: Schemes::REDIS,
        kind: Kind::Count {
            min: 1,
            max: 10_000_000,
        },
        default: DefaultText::Otherwise("none"),
        about: "keep up to this many reusable sessions in this process too, tried before \
                Redis",
        set: Set::Num(|s, v| s.l1 = v),
    },
    ParamSpec {
        name: "queue",
        schemes: Schemes::REDIS,
        kind: Kind::Count {
            min: 1,
            max: 1_000_000,
        },
        default: DefaultText::Value("4096"),
        about: "the most stores and removals waiting to be sent; more are dropped and counted",
        set: Set::Num(|s, v| s.queue = v),
    },
    ParamSpec {
        name: "batch_ms",
        schemes: Schemes::REDIS,
        kind: Kind::Count { min: 0, max: 100 },
        default: DefaultText::Value("2"),
        about: "under load, a store waits until this long after the previous batch was sent, \
                so that one round trip carries the stores of the meantime (less CPU for this \
                process and Redis); other hosts see a session up to this much later; 0: send \
                each at once",
        set: Set::Num(|s, v| s.batch_ms = v as u32),
    },
    ParamSpec {
        name: "password_file",
        schemes: Schemes::REDIS,
        kind: Kind::Path,
        default: DefaultText::Otherwise("none"),
        about: "read the password from this file's first line (private to its owner)",
        set: Set::Text(|s, v| s.password_file = Some(v)),
    },
    ParamSpec {
        name: "password_env",
        schemes: Schemes::REDIS,
        kind: Kind::EnvName,
        default: DefaultText::Otherwise("none"),
        about: "read the password from this environment variable (refused in setuid, setgid and file-capability programs)",
        set: Set::Text(|s, v| s.password_env = Some(v)),
    },
    ParamSpec {
        name: "tls",
        schemes: Schemes::REDIS_TLS_CHOICE,
        kind: Kind::Flag,
        default: DefaultText::Value("0"),
        about: "connect over TLS, the server's certificate verified as with `rediss:` \
                (for `redis+cluster:`, every node's; for `redis+sentinel:`, the Sentinels' \
                and the primary's)",
        set: Set::Num(|s, v| s.tls.on = v != 0),
    },
    ParamSpec {
        name: "tls_ca_file",
        schemes: Schemes::REDIS_TLS,
        kind: Kind::Path,
        default: DefaultText::Otherwise("the system's CA store"),
        about: "trust only the CA certificates in this PEM file to sign the server's \
                certificate",
        set: Set::Text(|s, v| s.tls.ca_file = Some(v)),
    },
    ParamSpec {
        name: "tls_cert_file",
        schemes: Schemes::REDIS_TLS,
        kind: Kind::Path,
        default: DefaultText::Otherwise("none"),
        about: "present this PEM certificate (chain) to the server (mutual TLS; needs \
                tls_key_file)",
        set: Set::Text(|s, v| s.tls.cert_file = Some(v)),
    },
    ParamSpec {
        name: "tls_key_file",
        schemes: Schemes::REDIS_TLS,
        kind: Kind::Path,
        default: DefaultText::Otherwise("none"),
        about: "the private key of tls_cert_file, in PEM (private to its owner)",
        set: Set::Text(|s, v| s.tls.key_file = Some(v)),
    },
    ParamSpec {
        name: "tls_name",
        schemes: Schemes::REDIS_TLS,
        kind: Kind::Prefix,
        default: DefaultText::Otherwise("the host the URL names"),
        about: "the name (or IP address) the server's certificate must be for, also sent \
                as SNI; for a cluster, every node's",
        set: Set::Text(|s, v| s.tls.name = Some(v)),
    },
    ParamSpec {
        name: "sentinel_password_file",
        schemes: Schemes::SENTINEL,
        kind: Kind::Path,
        default: DefaultText::Otherwise("none: the Sentinels are asked without a password"),
        about: "the Sentinels' own password (their requirepass), from this file's first line \
                (private to its owner)",
        set: Set::Text(|s, v| s.sentinel_password_file = Some(v)),
    },
    ParamSpec {
        name: "sentinel_password_env",
        schemes: Schemes::SENTINEL,
        kind: Kind::EnvName,
        default: DefaultText::Otherwise("none"),
        about: "the Sentinels' own password, from this environment variable (refused in \
                setuid, setgid and file-capability programs)",
        set: Set::Text(|s, v| s.sentinel_password_env = Some(v)),
    },
];

// `walk` tracks repeats in a u64 bitset over PARAMS.
const _: () = assert!(PARAMS.len() <= 64);

/// The parameters `scheme` accepts.
pub(crate) fn params_of(scheme: Scheme) -> impl Iterator<Item = &'static ParamSpec> {
    PARAMS.iter().filter(move |p| p.schemes.contains(scheme))
}

/// Walks a query once, storing each parameter into the settings it returns. Refuses at once
/// a pair without '=', a name `scheme` does not accept, a repeat and a bad value, each naming
/// the parameter; repeats are tracked in a bitset over [`PARAMS`], so the walk is linear in
/// the query.
pub(crate) fn walk(query: &str, scheme: Scheme) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    let mut seen: u64 = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return err(format!(
                "parameter '{pair}' has no value: write '{pair}=VALUE'"
            ));
        };
        let Some(i) = PARAMS
            .iter()
            .position(|p| p.name == name && p.schemes.contains(scheme))
        else {
            let known: Vec<&str> = params_of(scheme).map(|p| p.name).collect();
            return err(format!(
                "unknown parameter '{name}' for {}: (known: {})",
                scheme.name(),
                known.join(", ")
            ));
        };
        if seen & (1 << i) != 0 {
            return err(format!("parameter '{name}' is given twice"));
        }
        seen |= 1 << i;
        let param = &PARAMS[i];
        match param.set {
            Set::Num(set) => {
                let v = param
                    .kind
                    .parse(value)
                    .ok_or_else(|| param.bad_value(value))?;
                set(&mut settings, v);
            }
            Set::Text(set) => {
                let v = param
                    .kind
                    .parse_text(value)
                    .ok_or_else(|| param.bad_value(value))?;
                set(&mut settings, v);
            }
        }
    }
    Ok(settings)
}

/// What a `shm:` NAME must be, as errors and the documentation say it.
pub fn shm_name_rule() -> String {
    format!(
        "the first character must be an ASCII letter or digit, the rest letters, digits, \
         '.', '_' or '-', at most {MAX_SHM_NAME_BYTES} bytes"
    )
}

/// A `shm:` name: see [`shm_name_rule`].
pub fn valid_shm_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SHM_NAME_BYTES
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
}

/// A number: one or more ASCII digits, nothing else (no sign, spaces or underscores).
pub(crate) fn number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<usize>().ok()
}

/// A byte count of at least 1: a number with an optional K, M or G suffix (either case;
/// powers of 1024).
pub(crate) fn size(text: &str) -> Option<usize> {
    let (digits, shift) = match text.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(last) => match SIZE_SUFFIXES.iter().find(|(s, _)| *s == last) {
            Some(&(_, shift)) => (&text[..text.len() - 1], shift),
            None => (text, 0),
        },
        None => (text, 0),
    };
    number(digits)
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&n| n >= 1)
}

/// A byte count as a SIZE: with the largest suffix that divides it (`65536` is `64K`).
pub(crate) fn size_text(n: usize) -> String {
    for &(suffix, shift) in SIZE_SUFFIXES.iter().rev() {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{}", n >> shift, suffix as char);
        }
    }
    n.to_string()
}

/// Permission bits as a `mode=` value: four octal digits.
pub(crate) fn octal_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// `text` with every `%XX` replaced by the byte it stands for; None for a bad escape or
/// a result that is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// "a", "a or b", "a, b or c".
pub(crate) fn join_or(items: impl IntoIterator<Item = String>) -> String {
    join_last(items, "or")
}

/// "a", "a and b", "a, b and c".
pub(crate) fn join_and(items: impl IntoIterator<Item = String>) -> String {
    join_last(items, "and")
}

fn join_last(items: impl IntoIterator<Item = String>, word: &str) -> String {
    let items: Vec<String> = items.into_iter().collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {word} {last}", rest.join(", ")),
    }
}
