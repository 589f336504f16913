//! The circuit breaker of one process: open after [`FAILURES_TO_OPEN`] failures in a row;
//! while open, nothing touches the network; the writer probes when the back-off has passed
//! and closes it when Redis answers. It reads no clock: the times it decides by are passed
//! in (`Core`'s clock in production), so its logic is tested without waiting.
//!
//! Shared by every thread of the process: the lookups read `is_open` and report successes
//! and failures, the writer probes and closes it.

use crate::threads::lock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Consecutive failures (timeouts, network or server errors) that open the breaker.
pub(crate) const FAILURES_TO_OPEN: u32 = 3;
/// The breaker's first back-off; it doubles while probes fail, up to the most.
pub(crate) const BACKOFF_MIN_MS: u64 = 100;
pub(crate) const BACKOFF_MAX_MS: u64 = 10_000;
/// A breaker that opens again within this time of closing keeps doubling its back-off
/// instead of starting over (a server that answers probes but not lookups).
pub(crate) const CALM_MS: u64 = 10_000;

#[derive(Default)]
pub(crate) struct Breaker {
    open: AtomicBool,
    failures: AtomicU32,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    backoff_ms: u64,
    probe_at_ms: u64,
    closed_at_ms: Option<u64>,
}

impl Breaker {
    #[inline]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    #[inline]
    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A failure at `now_ms`: Some(back-off in ms) if it opened the breaker.
    pub fn failure(&self, now_ms: u64) -> Option<u64> {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < FAILURES_TO_OPEN || self.is_open() {
            return None;
        }
        let mut st = lock(&self.state);
        if self.is_open() {
            return None;
        }
        let calm = match st.closed_at_ms {
            None => true,
            Some(t) => now_ms.saturating_sub(t) >= CALM_MS,
        };
        st.backoff_ms = if calm {
            BACKOFF_MIN_MS
        } else {
            doubled(st.backoff_ms)
        };
        st.probe_at_ms = now_ms + st.backoff_ms;
        self.open.store(true, Ordering::Release);
        Some(st.backoff_ms)
    }

    /// While open: how long from `now_ms` until the next probe (zero: due).
    pub fn probe_wait(&self, now_ms: u64) -> Option<Duration> {
        if !self.is_open() {
            return None;
        }
        let st = lock(&self.state);
        Some(Duration::from_millis(st.probe_at_ms.saturating_sub(now_ms)))
    }

    /// A probe at `now_ms` found no answer: the back-off doubles.
    pub fn probe_failed(&self, now_ms: u64) {
        let mut st = lock(&self.state);
        st.backoff_ms = doubled(st.backoff_ms);
        st.probe_at_ms = now_ms + st.backoff_ms;
    }

    /// A probe at `now_ms` was answered.
    pub fn close(&self, now_ms: u64) {
        let mut st = lock(&self.state);
        st.closed_at_ms = Some(now_ms);
        self.failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }
}

fn doubled(backoff_ms: u64) -> u64 {
    backoff_ms
        .saturating_mul(2)
        .clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Option<Duration>) -> Option<u64> {
        d.map(|d| d.as_millis() as u64)
    }

    /// Fails until the breaker opens at `now`; its back-off.
    fn open(b: &Breaker, now: u64) -> u64 {
        for _ in 1..FAILURES_TO_OPEN {
            assert_eq!(b.failure(now), None);
            assert!(!b.is_open());
        }
        let backoff = b.failure(now).expect("opened");
        assert!(b.is_open());
        backoff
    }

    #[test]
    fn opens_after_failures_in_a_row() {
        let b = Breaker::default();
        assert_eq!(b.probe_wait(0), None);
        assert_eq!(open(&b, 1000), BACKOFF_MIN_MS);
        // Once open, more failures change nothing.
        assert_eq!(b.failure(1000), None);
        assert_eq!(ms(b.probe_wait(1000)), Some(BACKOFF_MIN_MS));
    }

    #[test]
    fn a_success_starts_the_count_again() {
        let b = Breaker::default();
        for _ in 0..10 {
            for _ in 1..FAILURES_TO_OPEN {
                assert_eq!(b.failure(5), None);
            }
            b.success();
        }
        assert!(!b.is_open());
        assert_eq!(open(&b, 5), BACKOFF_MIN_MS);
    }

    #[test]
    fn probes_are_due_when_the_backoff_has_passed() {
        let b = Breaker::default();
        open(&b, 1000);
        assert_eq!(ms(b.probe_wait(1000)), Some(100));
        assert_eq!(ms(b.probe_wait(1060)), Some(40));
        assert_eq!(ms(b.probe_wait(1100)), Some(0));
        assert_eq!(ms(b.probe_wait(5000)), Some(0));
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_the_most() {
        let b = Breaker::default();
        let mut now = 0;
        open(&b, now);
        let mut expected = BACKOFF_MIN_MS;
        let mut seen = Vec::new();
        for _ in 0..12 {
            now += expected;
            assert_eq!(ms(b.probe_wait(now)), Some(0));
            b.probe_failed(now);
            expected = (expected * 2).min(BACKOFF_MAX_MS);
            assert_eq!(ms(b.probe_wait(now)), Some(expected));
            seen.push(expected);
        }
        assert_eq!(
            seen,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000]
        );
        assert!(b.is_open());
    }

    #[test]
    fn an_answered_probe_closes_it() {
        let b = Breaker::default();
        open(&b, 0);
        b.close(100);
        assert!(!b.is_open());
        assert_eq!(b.probe_wait(100), None);
        // The failures were forgotten: it takes as many again to open it.
        assert_eq!(open(&b, 100 + CALM_MS), BACKOFF_MIN_MS);
    }

    /// Opening again within CALM_MS of closing keeps doubling the back-off; after a calm
    /// period it starts over.
    #[test]
    fn the_backoff_starts_over_only_after_a_calm_period() {
        let b = Breaker::default();
        open(&b, 0);
        b.probe_failed(100); // 200
        b.close(300);
        assert_eq!(open(&b, 300 + CALM_MS - 1), 400);
        assert_eq!(ms(b.probe_wait(300 + CALM_MS - 1)), Some(400));
        let closed = 300 + CALM_MS + 399;
        b.close(closed);
        assert_eq!(open(&b, closed + 1), 800);
        b.close(closed + 1);
        // Up to the most, never beyond.
        let mut now = closed + 1;
        for _ in 0..10 {
            let backoff = open(&b, now);
            assert!(backoff <= BACKOFF_MAX_MS, "{backoff}");
            b.close(now);
        }
        assert_eq!(open(&b, now), BACKOFF_MAX_MS);
        b.close(now);
        now += CALM_MS;
        assert_eq!(open(&b, now), BACKOFF_MIN_MS);
    }
}
