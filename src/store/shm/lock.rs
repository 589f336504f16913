//! The shard lock: a futex word in the shared segment, owned by one thread and fenced by a
//! generation, that a crashed owner, a stray write or a stalled holder cannot turn into a
//! hang, a crash or a second writer.
//!
//! Why not a `pthread_mutex_t` in shared memory: glibc keeps its robust-mutex list pointers
//! and its type flags inside the mutex, so one bad byte in the segment can make every
//! process hang in the lock, fail with `EINVAL` forever, abort on an assertion or die of
//! SIGSEGV inside `pthread_mutex_unlock` (all seen in a review). This lock keeps nothing in
//! the segment but one 64-bit word, and every value of that word is handled.
//!
//! # The word
//! ```text
//! bits 0..30   owner: the holding thread's ID (gettid), 0 when free
//! bit  30      never set by this code: a word with it set is garbage
//! bit  31      WAITERS: somebody may be asleep on the word (the unlocker wakes one)
//! bits 32..64  generation: advanced by every acquisition, clean or take-over
//! ```
//! The low half is the futex word (the kernel compares and wakes on 32 bits); every change
//! of the word is one 64-bit compare-and-swap, so owner and generation change together.
//!
//! # Acquire, wait, take over
//! - Free (owner 0): swap in (generation + 1, me). The value installed, without WAITERS, is
//!   the holder's [`Token`].
//! - Held: spin briefly, then mark WAITERS and sleep on the word for at most [`NAP`], and
//!   look again. Whoever slept takes the lock with WAITERS kept, so that its release wakes
//!   the next sleeper (no lost wake-up: a sleeper sleeps only while the word still says
//!   WAITERS, and every release of such a word wakes one).
//! - An owner that no longer exists (`kill(tid, 0)` fails with ESRCH: its process died, or
//!   the thread ended), a garbage word, or a word naming the waiting thread itself (a thread
//!   never waits for a lock it holds, so that is a dead thread whose ID was reused) is taken
//!   over at once: [`Acquired::Recovered`], and the caller checks or rebuilds what the lock
//!   protects.
//! - A lock that cannot be had within [`Timing::budget`] is a miss for that one operation,
//!   not a hang ([`Busy`]). If the word (owner and generation) stays the same for
//!   [`Timing::steal_after`] (an owner that is alive but stuck: stopped, throttled, in a
//!   debugger, or a garbage word that happens to name a live thread), the next waiter takes
//!   the lock over too. Critical sections last microseconds, so both bounds are far above
//!   any honest holder.
//!
//! # Fencing
//! A take-over advances the generation, so a holder that stalled and lost the lock can tell:
//! its token no longer matches the word. The holder checks its token ([`ShardLock::holds`])
//! before every write that publishes anything (the callers' write helpers do it) and stops
//! writing for good at the first failed check. [`ShardLock::unlock`] releases only the
//! holder's own acquisition (two threads of one process have different owners, so neither
//! can release the other's lock) and says whether the holder kept the lock to the end: the
//! callers use an operation's outcome (a session found, a ticket's single use consumed) only
//! then. The release is a compare-and-swap with Release ordering, so the next holder, whose
//! acquisition reads the released word, sees every write of the operation.
//!
//! What no lock in shared memory can stop is the one store a holder had already checked for
//! when it stalled: at most one such store per lost acquisition lands after the take-over.
//! The shard is built for it (see `shard.rs`): entries are checksummed, published only by
//! several stores and found only below the head, so such a store costs at most a miss or a
//! repair, never a session delivered twice or under the wrong key.
//!
//! # The model
//! `model/shm_lock.pml` is this protocol in Promela, checked exhaustively by spin
//! (`make model`, part of `make check`): threads of two processes (two in one, one in the
//! other) run acquire (fast path, WAITERS and sleep, take-over of a dead, garbage or stuck
//! owner, giving up), a critical section (fenced writes; taking or moving a single-use
//! entry) and release with a wake-up; any holder may stall at any step and be taken over
//! from, and any one process may die at any step. Properties: (1) a holder makes at most one
//! write after it lost the lock, and a release never ends another acquisition; (2) no lost
//! wake-up: a sleep ends by a wake-up, or by the nap only where a process died; (3) a
//! single-use entry is delivered at most once; (4) a waiter gives up only while the owner
//! is alive, and every thread ends. Five mutants (no fence checks, an outcome used without a
//! successful release, a process as the owner as before, WAITERS forgotten after a sleep,
//! no take-over of a dead owner) must each be caught, and are. Abstracted away: time (the
//! budget and `steal_after` become "may give up" and "may take over a live owner" at any
//! moment, harsher than the code), memory ordering (sequentially consistent steps; the
//! code's Acquire/Release pairs on the word give that for what a holder writes), the ring
//! and the index (two entry slots), reused thread IDs, and generations wrapping (2^32
//! acquisitions while one holder is stalled).
//!
//! Thread IDs are read in the caller's PID namespace: processes sharing a segment must run
//! in one PID namespace (they do whenever they can see each other in `ps`).

use crate::clock::monotonic_ms;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const WAITERS: u64 = 1 << 31;
const OWNER: u64 = (1 << 30) - 1;
/// The low half's bit that this code never sets.
const UNUSED: u64 = 1 << 30;
const LOW: u64 = u32::MAX as u64;
const GENERATION: u64 = !LOW;
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

/// One acquisition of the lock: the word's value (generation and owner) its holder
/// installed. The holder still owns the lock while the word says so, WAITERS aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(u64);

/// The lock could not be had within the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// What this process last saw of a lock it could not get (the word, WAITERS aside) and
/// since when (milliseconds on the monotonic clock). Process-local, one per lock.
#[derive(Default)]
pub struct Stuck {
    seen: AtomicU64,
    since_ms: AtomicU64,
}

/// A lock word in shared memory (8-aligned).
pub struct ShardLock<'a> {
    pub word: &'a AtomicU64,
}

/// The word of a new acquisition of `w` by `owner`: the next generation.
fn next(w: u64, owner: u64) -> u64 {
    (w & GENERATION).wrapping_add(1 << 32) | owner
}

impl ShardLock<'_> {
    /// Acquires the lock, or says why not within `timing.budget`.
    #[inline]
    pub fn lock(&self, timing: &Timing, stuck: &Stuck) -> Result<(Token, Acquired), Busy> {
        let me = owner_id();
        let w = self.word.load(Ordering::Relaxed);
        if w & LOW == 0 {
            let new = next(w, me);
            if self
                .word
                .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok((Token(new), Acquired::Clean));
            }
        }
        self.lock_slow(me, timing, stuck)
    }

    #[cold]
    fn lock_slow(
        &self,
        me: u64,
        timing: &Timing,
        stuck: &Stuck,
    ) -> Result<(Token, Acquired), Busy> {
        let deadline = monotonic_ms() + timing.budget.as_millis() as u64;
        // After sleeping once, take the lock marked contended: there may be others asleep.
        let mut sleeper = 0;
        for spin in 0u32.. {
            let w = self.word.load(Ordering::Relaxed);
            if w & LOW == 0 {
                let new = next(w, me | sleeper);
                if self
                    .word
                    .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok((Token(new & !WAITERS), Acquired::Clean));
                }
                continue;
            }
            if spin < 64 {
                std::hint::spin_loop();
                continue;
            }
            let owner = w & OWNER;
            if owner == 0 || w & UNUSED != 0 || owner == me || !alive(owner as u32) {
                match self.take_over(w, me) {
                    Some(t) => return Ok((t, Acquired::Recovered)),
                    None => continue,
                }
            }
            let now = monotonic_ms();
            if now >= deadline {
                // Has this very acquisition held the lock for too long?
                let seen = w & !WAITERS;
                if stuck.seen.swap(seen, Ordering::Relaxed) != seen {
                    stuck.since_ms.store(now, Ordering::Relaxed);
                } else if now.saturating_sub(stuck.since_ms.load(Ordering::Relaxed))
                    >= timing.steal_after.as_millis() as u64
                {
                    if let Some(t) = self.take_over(w, me) {
                        return Ok((t, Acquired::Recovered));
                    }
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
            sleeper = WAITERS;
            let nap = NAP.min(Duration::from_millis(deadline - now));
            futex_wait(self.futex_word(), (w | WAITERS) as u32, nap);
        }
        unreachable!("the loop only ends by returning")
    }

    /// Replaces the word `w` of a dead, stuck or garbage owner with a new acquisition of
    /// ours (marked WAITERS: the owner we replace may have had sleepers).
    fn take_over(&self, w: u64, me: u64) -> Option<Token> {
        let new = next(w, me | WAITERS);
        self.word
            .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Token(new & !WAITERS))
    }

    /// Whether `t` still holds the lock: false once another thread took it over. Called
    /// before every write that publishes; a false answer is final.
    #[inline]
    pub fn holds(&self, t: Token) -> bool {
        self.word.load(Ordering::Acquire) & !WAITERS == t.0
    }

    /// Releases acquisition `t`, waking one sleeper if there may be one. A lock that was
    /// taken over from `t` while its holder stalled is no longer its own and is left alone:
    /// false.
    pub fn unlock(&self, t: Token) -> bool {
        let mut w = self.word.load(Ordering::Relaxed);
        while w & !WAITERS == t.0 {
            match self.word.compare_exchange_weak(
                w,
                w & GENERATION,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if w & WAITERS != 0 {
                        futex_wake(self.futex_word());
                    }
                    return true;
                }
                Err(now) => w = now,
            }
        }
        false
    }

    /// The word's low half, which the futex calls compare and wake on.
    fn futex_word(&self) -> *const u32 {
        let p = self.word.as_ptr().cast::<u32>();
        if cfg!(target_endian = "big") {
            // SAFETY: the second half of the 8-byte word.
            unsafe { p.add(1) }
        } else {
            p
        }
    }
}

/// Whether thread `tid` exists (in this PID namespace). EPERM: it exists, as another user.
/// A thread that ended is gone at once (threads other than a process's first are reaped
/// when they end); a whole process that died is gone once its parent reaped it.
fn alive(tid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; nothing is sent. A thread
    // ID names that thread's task to kill(2).
    let r = unsafe { libc::kill(tid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The calling thread's owner ID in a lock word: its thread ID.
pub fn owner_id() -> u64 {
    u64::from(crate::pid::thread_id()) & OWNER
}

fn futex_wait(word: *const u32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos().max(100_000) as libc::c_long,
    };
    // SAFETY: a shared (not PRIVATE) futex wait on a word in our mapping, with a relative
    // timeout; it returns at once if the word no longer holds `expected`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

fn futex_wake(word: *const u32) {
    // SAFETY: wakes at most one waiter on a word in our mapping.
    unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, 1) };
}

/// The owner ID of a thread that lives until the returned sender is dropped (for tests
/// that need a lock held by a live thread other than the caller).
#[cfg(test)]
pub(crate) fn live_thread() -> (u64, std::sync::mpsc::Sender<()>) {
    let (id_tx, id_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        id_tx.send(owner_id()).unwrap();
        let _ = stop_rx.recv();
    });
    (id_rx.recv().unwrap(), stop_tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc;
    use std::sync::Arc;

    fn quick() -> Timing {
        Timing {
            budget: Duration::from_millis(20),
            steal_after: Duration::from_millis(60),
        }
    }

    fn patient() -> Timing {
        Timing {
            budget: Duration::from_secs(10),
            steal_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn excludes_threads() {
        let shared = Arc::new((AtomicU64::new(0), AtomicU32::new(0)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || {
                    let stuck = Stuck::default();
                    let l = ShardLock { word: &s.0 };
                    for _ in 0..20_000 {
                        let (t, how) = l.lock(&patient(), &stuck).unwrap();
                        assert_eq!(how, Acquired::Clean);
                        // A non-atomic read-modify-write made of two atomic steps.
                        let v = s.1.load(Ordering::Relaxed);
                        s.1.store(v + 1, Ordering::Relaxed);
                        assert!(l.unlock(t));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(shared.1.load(Ordering::Relaxed), 80_000);
        let w = shared.0.load(Ordering::Relaxed);
        assert_eq!(w & LOW, 0, "left free");
        assert_eq!(w >> 32, 80_000, "one generation per acquisition");
    }

    #[test]
    fn every_acquisition_is_a_new_generation() {
        let word = AtomicU64::new(7 << 32);
        let l = ShardLock { word: &word };
        let (a, _) = l.lock(&quick(), &Stuck::default()).unwrap();
        assert_eq!(word.load(Ordering::Relaxed), 8 << 32 | owner_id());
        assert!(l.holds(a));
        assert!(l.unlock(a));
        assert_eq!(word.load(Ordering::Relaxed), 8 << 32);
        assert!(!l.holds(a), "a released token holds nothing");
        let (b, _) = l.lock(&quick(), &Stuck::default()).unwrap();
        assert_ne!(a, b);
        assert!(!l.unlock(a), "an old token releases nothing");
        assert!(l.holds(b));
        assert!(l.unlock(b));
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
        let word = AtomicU64::new(5 << 32 | child as u64);
        let l = ShardLock { word: &word };
        let (t, how) = l.lock(&quick(), &Stuck::default()).unwrap();
        assert_eq!(how, Acquired::Recovered);
        assert_eq!(
            word.load(Ordering::Relaxed) & !WAITERS,
            6 << 32 | owner_id()
        );
        assert!(l.unlock(t));
        assert_eq!(
            l.lock(&quick(), &Stuck::default()).unwrap().1,
            Acquired::Clean
        );
    }

    #[test]
    fn a_thread_that_ended_holding_it_is_taken_over() {
        let (tid, stop) = live_thread();
        assert!(alive(tid as u32), "a live thread's ID answers kill(tid, 0)");
        drop(stop);
        let t0 = monotonic_ms();
        while alive(tid as u32) {
            assert!(monotonic_ms() - t0 < 10_000, "the thread never ended");
            std::thread::yield_now();
        }
        let word = AtomicU64::new(tid);
        let l = ShardLock { word: &word };
        let t0 = monotonic_ms();
        assert_eq!(
            l.lock(&quick(), &Stuck::default()).unwrap().1,
            Acquired::Recovered
        );
        assert!(monotonic_ms() - t0 < 1000);
    }

    #[test]
    fn garbage_words_are_taken_over() {
        for garbage in [
            WAITERS,
            UNUSED_AND_GEN,
            LOW,
            OWNER,
            owner_id(),
            owner_id() | WAITERS,
        ] {
            let word = AtomicU64::new(garbage);
            let l = ShardLock { word: &word };
            let (t, how) = l.lock(&quick(), &Stuck::default()).unwrap();
            assert_eq!(how, Acquired::Recovered, "{garbage:#x}");
            assert!(l.unlock(t));
            assert_eq!(word.load(Ordering::Relaxed) & LOW, 0);
        }
    }
    const UNUSED_AND_GEN: u64 = UNUSED | 3 << 32;

    #[test]
    fn a_live_stuck_owner_costs_a_bounded_wait_then_is_taken_over() {
        // The word names a thread that exists and never unlocks.
        let (tid, _stop) = live_thread();
        let word = AtomicU64::new(9 << 32 | tid);
        let l = ShardLock { word: &word };
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
        assert_eq!(outcome.map(|o| o.1), Ok(Acquired::Recovered));
    }

    /// The finding of issue 22: threads of one process shared an owner, so a thread that
    /// stalled past `steal_after` and woke up released the lock of the thread that took it
    /// over. Now it releases nothing and its fence check fails.
    #[test]
    fn a_stalled_thread_loses_the_lock_and_releases_nothing_of_the_next_holder() {
        let word = Arc::new(AtomicU64::new(0));
        let (held_tx, held_rx) = mpsc::channel();
        let (wake_tx, wake_rx) = mpsc::channel::<()>();
        let w = word.clone();
        let stalled = std::thread::spawn(move || {
            let l = ShardLock { word: &w };
            let (t, _) = l.lock(&quick(), &Stuck::default()).unwrap();
            held_tx.send(()).unwrap();
            wake_rx.recv().unwrap(); // parked inside the critical section
            (l.holds(t), l.unlock(t))
        });
        held_rx.recv().unwrap();
        let l = ShardLock { word: &word };
        let stuck = Stuck::default();
        let mut got = None;
        for _ in 0..200 {
            if let Ok(g) = l.lock(&quick(), &stuck) {
                got = Some(g);
                break;
            }
        }
        let (mine, how) = got.expect("taken over within the bounds");
        assert_eq!(how, Acquired::Recovered);
        wake_tx.send(()).unwrap();
        let (held, released) = stalled.join().unwrap();
        assert!(!held, "the stalled thread's fence check fails");
        assert!(!released, "and it released nothing");
        assert!(l.holds(mine), "the new holder still holds the lock");
        assert!(l.unlock(mine));
    }
}
