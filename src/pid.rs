//! This process's ID and the calling thread's without a system call: cached, and forgotten
//! in a forked child (a `pthread_atfork` handler), so that code on the handshake path (shm
//! lock owners, the per-process state of redis caches, preload mode's policy) can compare
//! them freely.

use std::cell::Cell;
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

thread_local! {
    /// (process ID, thread ID) as this thread last read them: a forked child's only thread
    /// inherits its parent's copy, which the process ID tells apart.
    static THREAD: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// The calling thread's ID (`gettid`), cached per thread and renewed after `fork`.
#[inline]
pub fn thread_id() -> u32 {
    let pid = current();
    // A thread-local without a destructor: readable at any point of the thread's life.
    THREAD
        .try_with(|t| {
            let (p, tid) = t.get();
            if p == pid {
                return tid;
            }
            let tid = gettid();
            t.set((pid, tid));
            tid
        })
        .unwrap_or_else(|_| gettid())
}

#[cold]
fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
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

    #[test]
    fn thread_ids_are_per_thread_and_renewed_after_fork() {
        let mine = super::thread_id();
        assert_eq!(mine, super::gettid());
        let other = std::thread::spawn(super::thread_id).join().unwrap();
        assert_ne!(other, mine);
        let mut fds = [0; 2];
        // SAFETY: a pipe for the child's answer.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fork in a test; the child writes its view of thread_id() and exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let t = super::thread_id().to_le_bytes();
            // SAFETY: writing 4 bytes to the pipe, then exiting.
            unsafe {
                libc::write(fds[1], t.as_ptr().cast(), 4);
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
        assert_eq!(
            u32::from_le_bytes(buf),
            child as u32,
            "the child's only thread"
        );
        assert_eq!(super::thread_id(), mine);
    }
}
