//! `redis://`, `redis+unix://`, `redis+cluster://`: one session cache for a fleet of
//! machines. (Being written.)

use super::{Counters, Entry, Found, SessionKey, Stamp, Store, StoreError};
use crate::config::RedisConfig;
use crate::error::{Error, ErrorKind};
use crate::secret::SecretBytes;

pub struct RedisStore {
    counters: Counters,
}

impl RedisStore {
    pub fn open(cfg: &RedisConfig, max_value_bytes: usize) -> Result<RedisStore, Error> {
        let _ = (cfg, max_value_bytes);
        Err(Error::new(
            ErrorKind::Unavailable,
            "the redis backend is not built yet",
        ))
    }
}

impl Store for RedisStore {
    fn put(&self, _key: &SessionKey, _entry: Entry, _now: u64) -> Result<Stamp, StoreError> {
        Err(StoreError::Unavailable)
    }
    fn get(
        &self,
        _key: &SessionKey,
        _now: u64,
        _known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError> {
        Err(StoreError::Unavailable)
    }
    fn take(&self, _key: &SessionKey, _now: u64) -> Result<Option<SecretBytes>, StoreError> {
        Err(StoreError::Unavailable)
    }
    fn remove(&self, _key: &SessionKey) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable)
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
    fn occupancy(&self) -> (u64, u64) {
        (0, 0)
    }
}
