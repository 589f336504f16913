//! The shard lock: a futex word in the shared segment, owned by a process ID, that a
//! crashed owner, a stray write or a stalled process cannot turn into a hang or a crash.
//!
//! Why not a `pthread_mutex_t` in shared memory: glibc keeps its robust-mutex list pointers
//! and its type flags inside the mutex, so one bad byte in the segment can make every
//! process hang in the lock, fail with `EINVAL` forever, abort on an assertion or die of
//! SIGSEGV inside `pthread_mutex_unlock` (all seen in a review). This lock keeps nothing in
//! the segment but a 32-bit word, and every value of that word is handled:
//!
//! - `0` is free; otherwise the low 30 bits are the owner's process ID and bit 31 says that
//!   somebody may be asleep on the word (the unlocker then wakes one).
//! - An owner that no longer exists (it crashed holding the lock, or the word is garbage) is
//!   detected with `kill(pid, 0)` while waiting; the waiter takes the lock over and the
//!   caller repairs the shard ([`Acquired::Recovered`]).
//! - A lock that cannot be had within [`Timing::budget`] is a miss for that one operation,
//!   not a hang ([`Busy`]). If the word and the acquisition counter beside it stay the same
//!   for [`Timing::steal_after`] (an owner that is alive but stuck — stopped, or a garbage
//!   word that happens to name a live process), the next waiter takes the lock over too.
//!   Critical sections last microseconds, so both bounds are far above any honest holder.
//!
//! Process IDs are read in the caller's PID namespace: processes sharing a segment must run
//! in one PID namespace (they do whenever they can see each other in `ps`).

use crate::clock::monotonic_ms;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

const WAITERS: u32 = 1 << 31;
const OWNER: u32 = (1 << 30) - 1;
/// How long one sleep on the word lasts at most, between liveness checks.
const NAP: Duration = Duration::from_millis(2);

/// The lock's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long one operation waits for the lock before it gives up (a miss).
    pub budget: Duration,
    /// How long a lock may stay held by the same acquisition before a waiter takes it over.
    pub steal_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            budget: Duration::from_millis(100),
            steal_after: Duration::from_secs(1),
        }
    }
}

/// How the lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// From its last owner, who released it.
    Clean,
    /// Taken over from an owner that died or stalled, or from a garbage word: what the lock
    /// protects may be half-changed and must be checked or rebuilt.
    Recovered,
}

/// The lock could not be had within the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What this process last saw of a lock it could not get: (word, acquisition count) and
/// since when (milliseconds on the monotonic clock). Process-local, one per shard.
#[derive(Default)]
pub struct Stuck {
    seen: AtomicU64,
    since_ms: AtomicU64,
}

/// A lock word and its acquisition counter, both in shared memory.
pub struct ShardLock<'a> {
    pub word: &'a AtomicU32,
    pub count: &'a AtomicU32,
}

impl ShardLock<'_> {
    /// Acquires the lock, or says why not within `timing.budget`.
    pub fn lock(&self, timing: &Timing, stuck: &Stuck) -> Result<Acquired, Busy> {
        let me = pid();
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.count.fetch_add(1, Ordering::Relaxed);
            return Ok(Acquired::Clean);
        }
        self.lock_slow(me, timing, stuck)
    }

    #[cold]
    fn lock_slow(&self, me: u32, timing: &Timing, stuck: &Stuck) -> Result<Acquired, Busy> {
        let start = monotonic_ms();
        let deadline = start + timing.budget.as_millis() as u64;
        // After sleeping once, take the lock marked contended: there may be others asleep.
        let mut mine = me;
        for spin in 0u32.. {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                if self
                    .word
                    .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.count.fetch_add(1, Ordering::Relaxed);
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            if spin < 64 {
                std::hint::spin_loop();
                continue;
            }
            let owner = w & OWNER;
            if owner == 0 || w & !(OWNER | WAITERS) != 0 || !alive(owner) {
                if self.take_over(w, mine) {
                    return Ok(Acquired::Recovered);
                }
                continue;
            }
            let now = monotonic_ms();
            if now >= deadline {
                // Has this very acquisition held the lock for too long?
                let seen = u64::from(w) << 32 | u64::from(self.count.load(Ordering::Relaxed));
                if stuck.seen.swap(seen, Ordering::Relaxed) != seen {
                    stuck.since_ms.store(now, Ordering::Relaxed);
                } else if now.saturating_sub(stuck.since_ms.load(Ordering::Relaxed))
                    >= timing.steal_after.as_millis() as u64
                    && self.take_over(w, mine)
                {
                    return Ok(Acquired::Recovered);
                }
                return Err(Busy);
            }
            if w & WAITERS == 0
                && self
                    .word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            mine = me | WAITERS;
            let nap = NAP.min(Duration::from_millis(deadline - now));
            futex_wait(self.word, w | WAITERS, nap);
        }
        unreachable!("the loop only ends by returning")
    }

    /// Replaces the word `w` of a dead or stuck owner with ours.
    fn take_over(&self, w: u32, mine: u32) -> bool {
        let taken = self
            .word
            .compare_exchange(w, mine | WAITERS, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Releases the lock, waking one sleeper if there may be one. A lock that was taken
    /// over from this process while it stalled is no longer ours and is left alone.
    pub fn unlock(&self) {
        let me = pid();
        let mut w = self.word.load(Ordering::Relaxed);
        while w & OWNER == me {
            match self
                .word
                .compare_exchange_weak(w, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if w & WAITERS != 0 {
                        futex_wake(self.word);
                    }
                    return;
                }
                Err(now) => w = now,
            }
        }
    }
}

/// Whether process `pid` exists (in this PID namespace). EPERM: it exists, as another user.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; nothing is sent.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process's ID, as a lock word's owner.
pub fn pid() -> u32 {
    crate::pid::current() & OWNER
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos().max(100_000) as libc::c_long,
    };
    // SAFETY: a shared (not PRIVATE) futex wait on a word in our mapping, with a relative
    // timeout; it returns at once if the word no longer holds `expected`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: wakes at most one waiter on a word in our mapping.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn quick() -> Timing {
        Timing {
            budget: Duration::from_millis(20),
            steal_after: Duration::from_millis(60),
        }
    }

    #[test]
    fn excludes_threads() {
        let word = Arc::new((AtomicU32::new(0), AtomicU32::new(0), AtomicU64::new(0)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let w = word.clone();
                std::thread::spawn(move || {
                    let stuck = Stuck::default();
                    let l = ShardLock {
                        word: &w.0,
                        count: &w.1,
                    };
                    for _ in 0..20_000 {
                        // Generous budget: this test is about exclusion, not timeouts.
                        let t = Timing {
                            budget: Duration::from_secs(10),
                            steal_after: Duration::from_secs(60),
                        };
                        assert_eq!(l.lock(&t, &stuck), Ok(Acquired::Clean));
                        // A non-atomic read-modify-write made of two atomic steps.
                        let v = w.2.load(Ordering::Relaxed);
                        w.2.store(v + 1, Ordering::Relaxed);
                        l.unlock();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(word.2.load(Ordering::Relaxed), 80_000);
        assert_eq!(word.0.load(Ordering::Relaxed), 0);
        assert_eq!(word.1.load(Ordering::Relaxed), 80_000);
    }

    #[test]
    fn a_dead_owner_is_taken_over() {
        // SAFETY: fork in a test; the child only exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: child exits at once.
            unsafe { libc::_exit(0) };
        }
        let mut st = 0;
        // SAFETY: reaping our own child, so that its PID no longer exists.
        unsafe { libc::waitpid(child, &mut st, 0) };
        let (word, count) = (AtomicU32::new(child as u32), AtomicU32::new(5));
        let l = ShardLock {
            word: &word,
            count: &count,
        };
        assert_eq!(l.lock(&quick(), &Stuck::default()), Ok(Acquired::Recovered));
        assert_eq!(word.load(Ordering::Relaxed) & OWNER, pid());
        l.unlock();
        assert_eq!(l.lock(&quick(), &Stuck::default()), Ok(Acquired::Clean));
    }

    #[test]
    fn garbage_words_are_taken_over() {
        for garbage in [WAITERS, 1 << 30, u32::MAX, OWNER] {
            let (word, count) = (AtomicU32::new(garbage), AtomicU32::new(0));
            let l = ShardLock {
                word: &word,
                count: &count,
            };
            assert_eq!(
                l.lock(&quick(), &Stuck::default()),
                Ok(Acquired::Recovered),
                "{garbage:#x}"
            );
            l.unlock();
            assert_eq!(word.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn a_live_stuck_owner_costs_a_bounded_wait_then_is_taken_over() {
        // The word names a process that exists (this one) and never unlocks.
        let (word, count) = (AtomicU32::new(pid()), AtomicU32::new(9));
        let l = ShardLock {
            word: &word,
            count: &count,
        };
        let stuck = Stuck::default();
        let t0 = monotonic_ms();
        assert_eq!(l.lock(&quick(), &stuck), Err(Busy));
        let waited = monotonic_ms() - t0;
        assert!(waited < 1000, "one attempt waited {waited} ms");
        let mut outcome = Err(Busy);
        for _ in 0..100 {
            outcome = l.lock(&quick(), &stuck);
            if outcome.is_ok() {
                break;
            }
        }
        assert_eq!(outcome, Ok(Acquired::Recovered));
    }

    #[test]
    fn the_cached_pid_follows_fork() {
        let parent = pid();
        let mut fds = [0; 2];
        // SAFETY: a pipe for the child's answer.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fork in a test; the child writes its view of pid() and exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let p = pid().to_le_bytes();
            // SAFETY: writing 4 bytes to the pipe, then exiting.
            unsafe {
                libc::write(fds[1], p.as_ptr().cast(), 4);
                libc::_exit(0);
            }
        }
        let mut buf = [0u8; 4];
        // SAFETY: reading the child's 4 bytes; reaping it.
        unsafe {
            libc::read(fds[0], buf.as_mut_ptr().cast(), 4);
            libc::waitpid(child, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(u32::from_le_bytes(buf), child as u32);
        assert_eq!(pid(), parent);
    }
}
