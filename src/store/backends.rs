//! The one place that names every backend: a URL's scheme to its store.

use super::{memory, redis, shm, Store};
use crate::config::{Backend, Config};
use crate::error::{Error, ErrorKind};

/// What the cache core grants a backend beyond its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The part of a `memory:` cache's `max_bytes` the store may use (the cache core keeps
    /// the rest for decoded sessions).
    pub memory_bytes: usize,
    /// The largest value the core will store: `max_session_bytes` plus what sealing adds.
    pub max_value_bytes: usize,
}

/// Opens the backend a configuration names.
pub fn open(cfg: &Config, budget: Budget) -> Result<Box<dyn Store>, Error> {
    let Budget {
        memory_bytes,
        max_value_bytes,
    } = budget;
    Ok(match &cfg.backend {
        Backend::Memory { capacity, .. } => Box::new(memory::MemoryStore::new(memory::Limits {
            capacity: *capacity,
            max_bytes: memory_bytes,
            max_value_bytes,
        })),
        Backend::Redis(r) => Box::new(redis::RedisStore::open(r, max_value_bytes)?),
        Backend::Shm { name, size, mode } => {
            Box::new(shm::ShmStore::open(name, *size, *mode, max_value_bytes)?)
        }
    })
}

/// Opens the backend a configuration names without creating it: an existing `shm:`
/// segment only ("no such segment" otherwise, `Unavailable`); `redis` as [`open`] does
/// (opening it creates nothing; a `redis` cache's counters are this process's); `memory:`
/// is refused (`State`): it lives inside the process that opened it, so there is none to
/// find from outside.
pub fn open_existing(cfg: &Config, budget: Budget) -> Result<Box<dyn Store>, Error> {
    match &cfg.backend {
        Backend::Memory { .. } => Err(Error::new(
            ErrorKind::State,
            "a memory: cache lives inside the process that opened it: there is no existing one to open from outside",
        )),
        Backend::Redis(_) => open(cfg, budget),
        Backend::Shm { name, size, mode } => Ok(Box::new(shm::ShmStore::open_existing(
            name,
            *size,
            *mode,
            budget.max_value_bytes,
        )?)),
    }
}
