//! Stores still queued when the process exits are sent first, for a bounded time: a
//! server that stops gracefully (nginx's workers on a reload, `openssl s_server -naccept`)
//! would otherwise lose the sessions of its last handshakes, which other hosts could have
//! resumed. Each process's writers register their queues here ([`register`]); an `atexit`
//! handler, registered once per program, flushes this process's ([`flush_queue`]).

use super::writer::Job;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

/// The most a process's exit waits for its queued writes, all caches together.
const LIMIT: Duration = Duration::from_millis(250);

/// This process's writers' queues (weak: a cache that is freed stops its writer).
static QUEUES: Mutex<(u32, Vec<Weak<SyncSender<Job>>>)> = Mutex::new((0, Vec::new()));
static REGISTER: Once = Once::new();

/// Waits, at most `limit`, until the writes queued on `tx` before now are done (or
/// dropped). False if they were not in time.
pub(crate) fn flush_queue(tx: &SyncSender<Job>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let (ack, done) = mpsc::channel();
    let mut job = Job::Flush(ack);
    loop {
        match tx.try_send(job) {
            Ok(()) => break,
            Err(mpsc::TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return false;
                }
                job = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return true,
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    done.recv_timeout(left).is_ok()
}

/// Has process `pid`'s exit flush `tx`, a writer's queue.
pub(crate) fn register(pid: u32, tx: &Arc<SyncSender<Job>>) {
    let mut q = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    if q.0 != pid {
        // Inherited from the process we were forked from: its writers are not ours.
        *q = (pid, Vec::new());
    }
    q.1.retain(|w| w.strong_count() > 0);
    q.1.push(Arc::downgrade(tx));
    drop(q);
    // SAFETY: registering a plain extern "C" function with no arguments (once per
    // program: a forked child inherits the registration).
    REGISTER.call_once(|| unsafe {
        libc::atexit(flush_all);
    });
}

extern "C" fn flush_all() {
    let _ = std::panic::catch_unwind(|| {
        // try_lock: a thread may have held it when the process began to exit.
        let Ok(q) = QUEUES.try_lock() else {
            return;
        };
        if q.0 != crate::pid::current() {
            return;
        }
        let queues: Vec<_> = q.1.iter().filter_map(Weak::upgrade).collect();
        drop(q);
        let deadline = Instant::now() + LIMIT;
        for tx in queues {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !flush_queue(&tx, left) {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue nobody reads: the flush gives up at its limit.
    #[test]
    fn a_flush_waits_no_longer_than_its_limit() {
        let (tx, rx) = mpsc::sync_channel(1);
        let t0 = Instant::now();
        assert!(!flush_queue(&tx, Duration::from_millis(20)));
        assert!(t0.elapsed() < Duration::from_secs(5));
        // The queue was free: the flush was queued, and waited for.
        assert!(matches!(rx.try_recv(), Ok(Job::Flush(_))));
    }

    /// A writer that has ended: nothing to wait for.
    #[test]
    fn a_closed_queue_is_flushed() {
        let (tx, rx) = mpsc::sync_channel(1);
        drop(rx);
        assert!(flush_queue(&tx, Duration::from_secs(30)));
    }

    /// The writer answers: done.
    #[test]
    fn an_answered_flush_is_done() {
        let (tx, rx) = mpsc::sync_channel::<Job>(1);
        let writer = std::thread::spawn(move || {
            if let Ok(Job::Flush(ack)) = rx.recv() {
                ack.send(()).unwrap();
            }
        });
        assert!(flush_queue(&tx, Duration::from_secs(30)));
        writer.join().unwrap();
    }
}
