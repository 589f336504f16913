//! The one place that names every backend: a URL's scheme to its store.

use super::{memory, redis, shm, Store};
use crate::config::{Backend, Config};
use crate::error::Error;

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
