//! Threads the library starts inside its host process.

/// Starts a thread that takes none of the process's signals. A server waits for its
/// signals (SIGHUP, SIGTERM, SIGCHLD, …) in its own threads, often by being interrupted in
/// its event loop; the kernel hands a process-directed signal to any thread that does not
/// block it, and one handled on our thread would not interrupt the server's wait. The
/// mask is set around the spawn (a new thread inherits it), so no signal can reach the
/// thread before it is in place; signals raised by a fault stay unblocked.
pub fn spawn_quiet(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    struct Restore(libc::sigset_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores this thread's mask as it was, from a set pthread_sigmask
            // filled in.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        }
    }
    // SAFETY: sigset_t is plain data, initialised by sigfillset / pthread_sigmask before it
    // is read; pthread_sigmask changes only this thread's mask, which `Restore` puts back.
    let _restore = unsafe {
        let mut quiet: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut quiet);
        for fault in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGABRT,
        ] {
            libc::sigdelset(&mut quiet, fault);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, &quiet, &mut old);
        Restore(old)
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
}

/// Locks a mutex whose critical sections leave its data consistent at each step, so that
/// a panic in one (which poisons it) does not keep the others out.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
