//! What a cache URL says, once parsed, and the limits that apply to it.

use std::fmt;

/// Which backend a URL selects, with its own settings. (Made once per cache: the size of
/// the `redis` variant does not matter.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
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
    /// `redis://…`, `redis+unix://…`, `redis+cluster://…`, `redis+sentinel://…`.
    Redis(RedisConfig),
}

/// Where a `redis` cache lives and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// The database number (`/db` in the URL; always 0 for a cluster).
    pub db: u32,
    /// The ACL user, from the URL's userinfo (percent-decoded).
    pub user: Option<String>,
    /// Where the password comes from.
    pub password: Password,
    /// Prepended to every key (`prefix=`; default `sesscache:`).
    pub prefix: String,
    /// The most a lookup (or a connection attempt on its behalf) may wait, in milliseconds.
    pub timeout_ms: u32,
    /// Entries of the in-process tier in front of Redis for reusable sessions; 0: none.
    pub l1: usize,
    /// Most writes (stores and removals) waiting for the background writer; more are dropped
    /// and counted.
    pub queue: usize,
    /// Under load, how long after the previous pipeline a write waits so that the writes of
    /// the meantime go with it (`batch_ms=`; 0: each at once).
    pub batch_ms: u32,
    /// TLS on every connection (`rediss:`, `tls=1`); None: plain TCP.
    pub tls: Option<RedisTls>,
}

/// How connections to Redis use TLS. The server's certificate is always verified: against
/// `ca_file`'s CAs (else the system's CA store) and for `name` (else the host connected to).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisTls {
    /// A PEM file of the only CAs trusted to sign the server's certificate.
    pub ca_file: Option<String>,
    /// A PEM certificate (chain) presented to the server, with its key (mutual TLS).
    pub client_cert: Option<(String, String)>,
    /// The name (or IP address) the certificate must be for, and the SNI sent.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://host[:port]`: one server (port 6379 by default).
    Tcp { host: String, port: u16 },
    /// `redis+unix:///path`: one server on a Unix socket.
    Unix { path: String },
    /// `redis+cluster://host:port[,host:port…]`: the seed nodes of a Redis Cluster.
    Cluster { nodes: Vec<(String, u16)> },
    /// `redis+sentinel://host:port[,host:port…]/master`: Sentinels, asked for the address
    /// of the primary they know as `master`.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        /// The Sentinels' own password (`sentinel_password_file=`, `sentinel_password_env=`).
        password: Password,
    },
}

/// Where a Redis password comes from. Never printed: `Debug` says only which source.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Password {
    #[default]
    None,
    /// In the URL's userinfo (visible in `ps` where the URL is on a command line).
    Inline(String),
    /// `password_file=PATH`: the file's first line, read when the cache is opened.
    File(String),
    /// `password_env=NAME`: the environment variable, read when the cache is opened.
    Env(String),
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::None => f.write_str("None"),
            Password::Inline(_) => f.write_str("Inline(<hidden>)"),
            Password::File(p) => write!(f, "File({p:?})"),
            Password::Env(n) => write!(f, "Env({n:?})"),
        }
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        if let Password::Inline(p) = self {
            // SAFETY: zero bytes are valid UTF-8.
            crate::secret::wipe(unsafe { p.as_bytes_mut() });
        }
    }
}

/// How stored sessions are protected (`key_file=`, `insecure_plaintext=`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sealing {
    /// Keys to seal with (AES-256-GCM); None: stored as they are.
    pub key_file: Option<String>,
    /// The user accepted sessions in clear on a backend off this process (`redis`).
    pub insecure_plaintext: bool,
}

/// Settings every backend shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Common {
    /// Upper bound on an entry's lifetime in seconds; `None` keeps the session's own timeout.
    pub ttl: Option<u64>,
    /// TLS 1.3 tickets resume once.
    pub single_use: bool,
    /// A session that names a server (SNI) resumes only on a connection asking for that
    /// name (see `interpose::sni`).
    pub sni_check: bool,
    /// Larger encoded sessions are refused.
    pub max_session_bytes: usize,
    /// Preload mode: whether server connections get stateful tickets.
    pub tickets: Tickets,
    /// Preload mode: serve contexts whose program turned its session cache off; with
    /// `tickets=shared`, also the contexts whose program set its own ticket keys.
    pub force: bool,
    /// `tickets=shared`: how long each ticket key encrypts, in seconds.
    pub ticket_rotate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub backend: Backend,
    pub common: Common,
    pub sealing: Sealing,
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
/// The smallest and largest `shm:` segments.
pub(crate) const SHM_MIN_SIZE: usize = 64 << 10;
pub(crate) const SHM_MAX_SIZE: usize = 64 << 30;
/// `redis`: the default key prefix, lookup budget, and write queue.
pub(crate) const REDIS_DEFAULT_PREFIX: &str = "sesscache:";
pub(crate) const REDIS_DEFAULT_TIMEOUT_MS: u32 = 10;
pub(crate) const REDIS_DEFAULT_QUEUE: usize = 4096;
pub(crate) const REDIS_DEFAULT_BATCH_MS: u32 = 2;
pub(crate) const REDIS_DEFAULT_PORT: u16 = 6379;
/// `ticket_rotate=`: one hour. Each key then protects at most an hour of new tickets plus
/// their lifetime (see SECURITY.md); the rotation costs one backend write an hour.
pub(crate) const DEFAULT_TICKET_ROTATE_S: u64 = 3600;
/// The shortest and longest rotation periods.
pub(crate) const MIN_TICKET_ROTATE_S: usize = 2;
pub(crate) const MAX_TICKET_ROTATE_S: usize = 7 * 24 * 3600;

impl Default for Common {
    fn default() -> Self {
        Common {
            ttl: None,
            single_use: true,
            sni_check: true,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            tickets: Tickets::Auto,
            force: false,
            ticket_rotate: DEFAULT_TICKET_ROTATE_S,
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
    /// Stateless tickets under keys kept in the backend and rotated through it, shared by
    /// every process (and host) using the cache (`cache::tickets`).
    Shared,
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

pub(crate) fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> crate::error::Error {
        crate::error::Error::new(crate::error::ErrorKind::Url, e.0)
    }
}
