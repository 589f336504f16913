//! The threads that run asynchronous lookups: the handshake's thread hands a lookup over
//! and goes on; a worker runs it (blocking, within the backend's own time budget) and
//! reports to the lookup's [`Pending`](super::pending::Pending).
//!
//! One pool per process, started on first use with one thread and grown to
//! [`MAX_THREADS`] while lookups wait and no thread is idle; a thread idle for
//! [`IDLE_EXIT`] ends (the last one stays). A forked child never uses its parent's pool
//! (whose threads it does not have, and whose lock another thread may have held at the
//! fork): it makes its own, as the redis state does.
//!
//! Bounds: a lookup waits for a worker only while more than [`MAX_THREADS`] lookups are
//! running, which happens when the server stalls; each then costs its timeout, the
//! breaker opens after a few, and from then on queued lookups fail at once. So a
//! suspended handshake waits at most about twice the backend's `timeout_ms`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The most threads one process runs lookups on.
pub(crate) const MAX_THREADS: usize = 16;
/// How long an idle thread (not the last) waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(30);

pub type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

struct Pool {
    pid: u32,
    queue: Mutex<Queue>,
    ready: Condvar,
}

static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

/// This process's pool, made on first use (and again in a forked child).
fn pool() -> &'static Pool {
    let pid = crate::pid::current();
    loop {
        let p = POOL.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here came from Box::leak below and is never freed.
        if let Some(pool) = unsafe { p.as_ref() } {
            if pool.pid == pid {
                return pool;
            }
        }
        let fresh: &'static mut Pool = Box::leak(Box::new(Pool {
            pid,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                threads: 0,
                idle: 0,
            }),
            ready: Condvar::new(),
        }));
        // A parent's pool, which a forked child inherits, is left as it is (leaked): its
        // lock may have been held by a thread that does not exist here.
        if POOL
            .compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread made one first.
            // SAFETY: `fresh` was never shared.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
}

/// Hands `job` to a worker. Err(job) if no thread runs lookups and none can be started:
/// the caller then runs it on its own thread.
pub fn submit(job: Job) -> Result<(), Job> {
    let pool = pool();
    let mut q = crate::threads::lock(&pool.queue);
    let start = q.idle == 0 && q.threads < MAX_THREADS;
    if start {
        let started = crate::threads::spawn_quiet("sesscache-lookup", move || worker(pool));
        match started {
            Ok(()) => q.threads += 1,
            Err(e) if q.threads == 0 => {
                crate::log_limited!(
                    crate::log::Level::Warn,
                    "cannot start a lookup thread ({e}): lookups block"
                );
                return Err(job);
            }
            Err(_) => {}
        }
    }
    q.jobs.push_back(job);
    drop(q);
    if !start {
        pool.ready.notify_one();
    }
    Ok(())
}

fn worker(pool: &'static Pool) {
    let mut q = crate::threads::lock(&pool.queue);
    loop {
        if let Some(job) = q.jobs.pop_front() {
            drop(q);
            // A panic in a lookup must not end the thread uncounted: the job's own guard
            // (see `pending`) reports the lookup as a miss.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            q = crate::threads::lock(&pool.queue);
            continue;
        }
        q.idle += 1;
        let (back, waited) = pool
            .ready
            .wait_timeout(q, IDLE_EXIT)
            .unwrap_or_else(|p| p.into_inner());
        q = back;
        q.idle -= 1;
        if waited.timed_out() && q.jobs.is_empty() && q.threads > 1 {
            q.threads -= 1;
            return;
        }
    }
}

/// Threads running now (for tests).
#[cfg(test)]
pub fn threads() -> usize {
    crate::threads::lock(&pool().queue).threads
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    /// Lookups that block run side by side, on up to MAX_THREADS threads; more wait for a
    /// thread and still run.
    #[test]
    fn blocked_lookups_get_threads_up_to_the_limit() {
        let n = MAX_THREADS + 4;
        let release = Arc::new(Barrier::new(MAX_THREADS + 1));
        let running = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..n {
            let (release, running, done) = (release.clone(), running.clone(), done.clone());
            submit(Box::new(move || {
                running.fetch_add(1, Ordering::SeqCst);
                if i < MAX_THREADS {
                    release.wait();
                }
                done.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap_or_else(|_| panic!("no thread"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while running.load(Ordering::SeqCst) < MAX_THREADS {
            assert!(std::time::Instant::now() < deadline, "not side by side");
            std::thread::yield_now();
        }
        // Every thread is blocked: the others wait.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(running.load(Ordering::SeqCst), MAX_THREADS);
        assert!(threads() <= MAX_THREADS);
        release.wait();
        while done.load(Ordering::SeqCst) < n {
            assert!(std::time::Instant::now() < deadline, "not all ran");
            std::thread::yield_now();
        }
    }
}
