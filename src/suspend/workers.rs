//! The threads that run asynchronous lookups: the handshake's thread hands a lookup over
//! and goes on; a worker runs it (blocking, within the backend's own time budget) and
//! reports to the lookup's [`Pending`].
//!
//! A worker takes the lookup at the head of the queue together with the others of the same
//! cache queued behind it (up to [`MAX_BATCH`]) and asks the backend for all of them at once
//! ([`Cache::resolve_many`]: one round trip to Redis, a pipeline): under load, the lookups
//! that arrive while the workers wait for Redis share the next round trip, so a busy
//! server pays far fewer system calls and thread switches than lookups. A lookup whose
//! connection was freed while it waited is dropped without being asked.
//!
//! One pool per process, started on first use with one thread and grown to
//! [`MAX_THREADS`] while lookups wait and no thread is idle; a thread idle for
//! [`IDLE_EXIT`] ends (the last one stays). A forked child never uses its parent's pool
//! (whose threads it does not have, and whose lock another thread may have held at the
//! fork): it makes its own, as the redis state does.
//!
//! Bounds: a lookup waits for a worker only while [`MAX_THREADS`] batches are running,
//! which happens when the server stalls; each then costs its timeout, the breaker opens
//! after a few, and from then on queued lookups fail at once. So a suspended handshake
//! waits at most about twice the backend's `timeout_ms`.

use super::pending::{Notify, Pending};
use crate::cache::Cache;
use crate::store::SessionKey;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The most threads one process runs lookups on.
pub(crate) const MAX_THREADS: usize = 8;
/// The most lookups one round trip asks for.
pub(crate) const MAX_BATCH: usize = 32;
/// How long an idle thread (not the last) waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// One piece of work.
pub enum Job {
    /// A lookup for a suspended handshake.
    Lookup(Lookup),
    /// Anything else (tests).
    #[cfg(test)]
    Run(Box<dyn FnOnce() + Send>),
}

/// A lookup of `key` in `cache`, reported to `pending` (and `notify`).
pub struct Lookup {
    pub cache: Arc<Cache>,
    pub key: SessionKey,
    pub pending: Arc<Pending>,
    pub notify: Option<Notify>,
}

impl Lookup {
    /// Runs these lookups (all of one cache) in one batch and reports each.
    fn run(batch: Vec<Lookup>) {
        // Connections freed while their lookups waited: not asked for.
        let (batch, gone): (Vec<Lookup>, Vec<Lookup>) =
            batch.into_iter().partition(|l| l.pending.is_running());
        drop(gone);
        let Some(first) = batch.first() else {
            return;
        };
        let keys: Vec<SessionKey> = batch.iter().map(|l| l.key).collect();
        // A panic is said in the log, as at the C boundary, and every lookup of the batch
        // is then a miss.
        let found = crate::boundary::guard(Vec::new(), || {
            crate::fault::inject("lookup");
            first.cache.resolve_many(&keys)
        });
        let mut found = found.into_iter();
        for l in batch {
            l.pending.finish(found.next().flatten(), l.notify);
        }
    }
}

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
    let wake = q.idle > 0;
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
    if wake {
        // (A wake-up is a system call: none when no thread waits.)
        pool.ready.notify_one();
    }
    Ok(())
}

fn worker(pool: &'static Pool) {
    let mut q = crate::threads::lock(&pool.queue);
    loop {
        if let Some(job) = q.jobs.pop_front() {
            let work: Box<dyn FnOnce()> = match job {
                Job::Lookup(first) => {
                    let batch = take_batch(&mut q.jobs, first);
                    Box::new(move || Lookup::run(batch))
                }
                #[cfg(test)]
                Job::Run(f) => f,
            };
            drop(q);
            // A panic must not end the thread: `Lookup::run` reports its lookups itself.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
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

/// `first` and the lookups of the same cache queued behind it, up to [`MAX_BATCH`], taken
/// from the queue (the others keep their order).
fn take_batch(jobs: &mut VecDeque<Job>, first: Lookup) -> Vec<Lookup> {
    let mut batch = vec![first];
    let mut i = 0;
    while i < jobs.len() && batch.len() < MAX_BATCH {
        match &jobs[i] {
            Job::Lookup(l) if Arc::ptr_eq(&l.cache, &batch[0].cache) => {
                if let Some(Job::Lookup(l)) = jobs.remove(i) {
                    batch.push(l);
                }
            }
            _ => i += 1,
        }
    }
    batch
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
    use std::sync::Barrier;

    fn lookup(cache: &Arc<Cache>, b: u8) -> Lookup {
        let key = SessionKey::new(&[b; 32]).unwrap();
        Lookup {
            cache: cache.clone(),
            key,
            pending: Pending::running(key),
            notify: None,
        }
    }

    fn keys(batch: &[Lookup]) -> Vec<u8> {
        batch.iter().map(|l| l.key.as_bytes()[0]).collect()
    }

    /// A batch is the head lookup and those of the same cache behind it, in order, up to
    /// MAX_BATCH; the rest of the queue keeps its order.
    #[test]
    fn a_batch_takes_the_same_cache_in_order() {
        let (a, b) = (
            Arc::new(Cache::open("memory:").unwrap()),
            Arc::new(Cache::open("memory:").unwrap()),
        );
        let mut q: VecDeque<Job> = VecDeque::new();
        q.push_back(Job::Lookup(lookup(&a, 1)));
        q.push_back(Job::Lookup(lookup(&b, 2)));
        q.push_back(Job::Run(Box::new(|| {})));
        q.push_back(Job::Lookup(lookup(&a, 3)));
        let batch = take_batch(&mut q, lookup(&a, 0));
        assert_eq!(keys(&batch), [0, 1, 3]);
        assert_eq!(q.len(), 2);
        assert!(matches!(&q[0], Job::Lookup(l) if l.key.as_bytes()[0] == 2));
        assert!(matches!(&q[1], Job::Run(_)));
        let mut q: VecDeque<Job> = (1..=40).map(|i| Job::Lookup(lookup(&a, i))).collect();
        let batch = take_batch(&mut q, lookup(&a, 0));
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(keys(&batch), (0..MAX_BATCH as u8).collect::<Vec<_>>());
        assert_eq!(q.len(), 41 - MAX_BATCH);
    }

    /// A batch reports each lookup's own result; a lookup whose connection was freed is not
    /// asked for: its single-use entry is still there afterwards.
    #[test]
    fn a_batch_reports_each_lookup_and_skips_the_cancelled() {
        use crate::test_sessions::tls12_der;
        let cache = Arc::new(Cache::open("memory:").unwrap());
        let t = crate::clock::now();
        assert!(cache.store_der(&[1; 32], &tls12_der(&[1; 32], 1), t + 100, false));
        assert!(cache.store_der(&[3; 32], &tls12_der(&[3; 32], 3), t + 100, true));
        let batch = vec![lookup(&cache, 1), lookup(&cache, 2), lookup(&cache, 3)];
        let pendings: Vec<Arc<Pending>> = batch.iter().map(|l| l.pending.clone()).collect();
        pendings[2].cancel();
        Lookup::run(batch);
        assert!(pendings[0].claim(&[1; 32]).unwrap().is_some(), "found");
        assert!(pendings[1].claim(&[2; 32]).unwrap().is_none(), "a miss");
        assert!(
            pendings[2].claim(&[3; 32]).is_none(),
            "cancelled: no result"
        );
        let again = lookup(&cache, 3);
        let p = again.pending.clone();
        Lookup::run(vec![again]);
        assert!(
            p.claim(&[3; 32]).unwrap().is_some(),
            "the single-use entry was not taken"
        );
    }

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
            submit(Job::Run(Box::new(move || {
                running.fetch_add(1, Ordering::SeqCst);
                if i < MAX_THREADS {
                    release.wait();
                }
                done.fetch_add(1, Ordering::SeqCst);
            })))
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
