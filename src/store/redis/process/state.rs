//! [`Core`]: what a process's threads (the callers' lookups, the writer, the connecting
//! threads) share, behind an `Arc`: the settings, the pool, the breaker, the counters, the
//! pending writes and the clock; and how a failure is counted, said and told to the
//! breaker ([`Core::failed`]), the same for lookups and writes.

use super::super::conn::{classify, describe};
use super::super::tally::Net;
use super::breaker::{Breaker, FAILURES_TO_OPEN};
use super::pending::Pending;
use super::pool::Pool;
use super::shared::Shared;
use crate::clock::Clock;
use crate::log::Level;
use crate::store::{Counters, StoreError};
use redis::RedisError;
use std::sync::Arc;

pub(crate) struct Core {
    pub shared: Arc<Shared>,
    pub pool: Arc<Pool>,
    pub breaker: Breaker,
    /// This process's counters (a forked child starts from zero): the writer reports them
    /// to Redis (`tally`), where the whole fleet's add up.
    pub counters: Counters,
    pub net: Net,
    /// Values this process queued for Redis that the writer has not yet sent.
    pub pending: Pending,
    /// What the breaker's and the writer's times are read from (`clock::Monotonic`; tests
    /// pass one they move by hand).
    clock: Arc<dyn Clock>,
}

impl Core {
    pub fn new(shared: Arc<Shared>, clock: Arc<dyn Clock>) -> Core {
        Core {
            shared,
            pool: Arc::default(),
            breaker: Breaker::default(),
            counters: Counters::default(),
            net: Net::default(),
            pending: Pending::default(),
            clock,
        }
    }

    /// Now, in milliseconds on this process's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Counts an operation that failed on the network or timed out.
    pub fn count_failure(&self, e: StoreError) {
        Counters::bump(&self.counters.errors);
        Counters::bump(match e {
            StoreError::Timeout => &self.net.timeouts,
            _ => &self.net.net_errors,
        });
    }

    pub fn count_drop(&self) {
        Counters::bump(&self.net.queue_drops);
    }

    /// Counts a failed call and, if `trips` (not an error the server answered with), tells
    /// the breaker; (the caller's error, whether the breaker opened).
    pub(crate) fn failed(&self, e: &RedisError, what: &str, trips: bool) -> (StoreError, bool) {
        let err = classify(e);
        self.count_failure(err);
        if err == StoreError::Timeout {
            // The system's words for it ("Resource temporarily unavailable") say less.
            crate::log_limited!(
                Level::Warn,
                "redis: {what} timed out: no answer within its time budget"
            );
        } else {
            crate::log_limited!(
                Level::Warn,
                "redis: {what} failed: {}",
                describe(e, self.shared.secret())
            );
        }
        (err, trips && self.trip())
    }

    /// Tells the breaker of a failure; true if that opened it.
    pub fn trip(&self) -> bool {
        let Some(backoff) = self.breaker.failure(self.now_ms()) else {
            return false;
        };
        Counters::bump(&self.net.breaker_opens);
        crate::log_limited!(
            Level::Warn,
            "redis: {FAILURES_TO_OPEN} failures in a row; Redis is skipped for {backoff} ms \
             (lookups miss, writes are dropped), then probed"
        );
        true
    }
}
