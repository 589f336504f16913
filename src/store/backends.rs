//! The one place that names every backend: a URL's scheme to its store.

use super::{memory, redis, shm, Store};
use crate::config::{Backend, Config};
use crate::error::Error;

/// Opens the backend a configuration names. `memory_bytes`: the part of a `memory:`
/// cache's `max_bytes` the store may use (the cache core keeps the rest for decoded
/// sessions).
pub fn open(cfg: &Config, memory_bytes: usize) -> Result<Box<dyn Store>, Error> {
    let max_value_bytes = cfg.common.max_session_bytes;
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
