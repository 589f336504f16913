//! This process's ID without a system call: cached, and forgotten in a forked child (a
//! `pthread_atfork` handler), so that code on the handshake path (shm lock owners, the
//! per-process state of redis caches, preload mode's policy) can compare it freely.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn forget() {
    // boundary: one atomic store, which cannot panic.
    PID.store(0, Ordering::Relaxed);
}

/// This process's ID (`getpid`), cached.
#[inline]
pub fn current() -> u32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    slow()
}

#[cold]
fn slow() -> u32 {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a child handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(forget)) };
    });
    let p = std::process::id();
    PID.store(p, Ordering::Relaxed);
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn cached_and_renewed_after_fork() {
        assert_eq!(super::current(), std::process::id());
        // SAFETY: fork in a test; the child only compares two numbers and _exits.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            let same = super::current() == std::process::id();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if same { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(super::current(), std::process::id());
    }
}
