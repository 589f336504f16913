//! The lookups' connection pool of one process: idle connections, and the lookups waiting
//! for one. A lookup takes an idle connection or, when none is, waits (within its budget)
//! for one that a connecting thread opens ("sesscache-redis-connect", at most
//! [`MAX_CONNECTING`] at once), so that a lookup waits for a connection no longer than its
//! budget even when the connect itself (a name to resolve, a slow handshake) takes longer:
//! the connection is kept for the next lookups. The writer gives it the connection of a
//! probe that closed the breaker, and closes the idle ones when the primary moved.

use super::super::conn::{classify, describe, Conn};
use super::super::transport::Transport;
use super::shared::Shared;
use crate::log::Level;
use crate::store::StoreError;
use crate::threads::lock;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Idle connections kept per process; more are closed when returned.
pub(crate) const MAX_IDLE: usize = 16;
/// Connections being opened at once per process.
pub(crate) const MAX_CONNECTING: usize = 8;

#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<PoolState>,
    ready: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    connecting: usize,
    waiting: usize,
    /// Connects that failed so far, and how the last one did.
    failures: u64,
    last_failure: StoreError,
}

impl Default for PoolState {
    fn default() -> Self {
        PoolState {
            idle: Vec::new(),
            connecting: 0,
            waiting: 0,
            failures: 0,
            last_failure: StoreError::Unavailable,
        }
    }
}

impl Pool {
    /// An idle connection (true: it was used before), or a new one made within `deadline`
    /// by a connecting thread (with `shared`'s connector).
    pub fn checkout(
        self: &Arc<Pool>,
        shared: &Arc<Shared>,
        deadline: Instant,
    ) -> Result<(Conn, bool), StoreError> {
        let mut st = lock(&self.state);
        while let Some(c) = st.idle.pop() {
            if c.is_open() {
                return Ok((c, true));
            }
        }
        let failures_seen = st.failures;
        st.waiting += 1;
        let out = loop {
            if let Some(c) = st.idle.pop() {
                break Ok((c, false));
            }
            if st.failures != failures_seen {
                // A connect failed while we waited: so would ours.
                break Err(st.last_failure);
            }
            if st.connecting < st.waiting.min(MAX_CONNECTING) {
                st.connecting += 1;
                drop(st);
                let started = self.spawn_connect(shared);
                st = lock(&self.state);
                if !started {
                    st.connecting -= 1;
                    break Err(StoreError::Unavailable);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(StoreError::Timeout);
            }
            st = self
                .ready
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        st.waiting -= 1;
        out
    }

    /// Takes back a connection that is in step with its server.
    pub fn checkin(&self, c: Conn) {
        let mut st = lock(&self.state);
        if st.idle.len() < MAX_IDLE {
            st.idle.push(c);
            drop(st);
            self.ready.notify_one();
        }
    }

    /// Closes the idle connections.
    pub fn clear(&self) {
        let idle = std::mem::take(&mut lock(&self.state).idle);
        drop(idle);
    }

    #[cfg(test)]
    pub fn idle(&self) -> usize {
        lock(&self.state).idle.len()
    }

    /// Opens a connection on a thread of its own and gives it to the pool.
    fn spawn_connect(self: &Arc<Pool>, shared: &Arc<Shared>) -> bool {
        let pool = self.clone();
        let shared = shared.clone();
        crate::threads::spawn_quiet("sesscache-redis-connect", move || {
            let made = catch_unwind(AssertUnwindSafe(|| {
                shared.connector.connect(shared.background_timeout)
            }));
            let made = match made {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => {
                    crate::log_limited!(
                        Level::Warn,
                        "redis: cannot connect: {}",
                        describe(&e, shared.secret())
                    );
                    Err(classify(&e))
                }
                Err(_) => Err(StoreError::Unavailable),
            };
            pool.connected(made);
        })
        .is_ok()
    }

    /// A connecting thread's result.
    fn connected(&self, made: Result<Conn, StoreError>) {
        let mut st = lock(&self.state);
        st.connecting -= 1;
        match made {
            Ok(c) => {
                if st.idle.len() < MAX_IDLE {
                    st.idle.push(c);
                }
                drop(st);
                self.ready.notify_one();
            }
            Err(e) => {
                st.failures += 1;
                st.last_failure = e;
                drop(st);
                self.ready.notify_all();
            }
        }
    }
}
