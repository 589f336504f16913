//! [`Shared`]: a store's settings, which all its processes share.

use super::super::conn::Connector;
use super::super::setup::Secret;
use crate::store::memory::Limits;
use std::time::Duration;

/// What every process of a store shares: its settings. Plain data: nothing here is tied to
/// a process, so a forked child may use its copy.
pub(crate) struct Shared {
    pub connector: Connector,
    /// For cutting the password out of log lines, should the crate ever quote it.
    pub secret: Option<Secret>,
    pub prefix: Vec<u8>,
    /// A lookup's budget, connection included.
    pub timeout: Duration,
    /// What background connects and writes may take.
    pub background_timeout: Duration,
    pub queue: usize,
    /// Under load, a write waits until this long after the previous pipeline was sent
    /// (`batch_ms=`), so that the writes of the meantime go with it: on a busy server each
    /// pipeline then carries several, and the writer and Redis wake once for them instead of
    /// once each. A write that finds the writer idle for longer goes at once, so a lone store
    /// is never delayed; the process itself finds its writes at once, in its pending map.
    pub batch: Duration,
    pub l1: Option<Limits>,
    /// SHA-1 of `conn::LOOKUP_SCRIPT`, for EVALSHA.
    pub sha: String,
    /// The counters' hash (`tally`), and the SHA-1 of its report script.
    pub tally_key: Vec<u8>,
    pub tally_sha: String,
    /// The ticket-key records' hash (`tickets`), and the SHA-1 of its add script.
    pub tickets_key: Vec<u8>,
    pub tickets_sha: String,
}

impl Shared {
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_ref().map(Secret::as_str)
    }
}
