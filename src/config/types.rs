//! What a cache URL says, once parsed, and the limits that apply to it.

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
/// The smallest and largest `shm:` segments.
pub(crate) const SHM_MIN_SIZE: usize = 64 << 10;
pub(crate) const SHM_MAX_SIZE: usize = 64 << 30;

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

pub(crate) fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> crate::error::Error {
        crate::error::Error::new(crate::error::ErrorKind::Url, e.0)
    }
}
