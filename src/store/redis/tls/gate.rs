//! Keeps the library's TLS calls out of OpenSSL's exit-time cleanup.
//!
//! OpenSSL frees its global state in an `atexit` handler (`OPENSSL_cleanup`), while the
//! store's threads (the writer, a connecting thread) or a server's other threads may be in
//! the middle of a TLS call: one that goes on into freed state crashes the exiting process.
//! So every call into OpenSSL on a connection goes through the gate ([`enter`]), and an
//! `atexit` handler of ours, registered after OpenSSL's (so run before it), closes the
//! gate: new calls fail at once without touching OpenSSL, the sockets of open connections
//! are shut down so that calls blocked on them return, and it waits (briefly) for the
//! calls in flight to leave. The store's own exit handler (queued writes sent) is
//! registered later still, so it runs first, with the gate open.
//!
//! A thread that used OpenSSL through the gate frees its OpenSSL state itself when it ends
//! (`OPENSSL_thread_stop`, from a thread-local destructor, which runs before OpenSSL's own
//! thread-exit destructor), inside the gate: OpenSSL's destructor racing with its exit-time
//! cleanup frees the same memory twice. Once the gate is closed, such a thread never ends
//! (it waits for the exit to end it).

use std::os::fd::RawFd;
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// The most an exiting process waits for TLS calls in flight, after shutting down their
/// sockets (which makes the calls blocked on them return at once).
const EXIT_WAIT: Duration = Duration::from_millis(200);

struct State {
    /// The process the counts are of: a forked child starts afresh (the threads counted
    /// are its parent's).
    pid: u32,
    closed: bool,
    in_flight: usize,
    /// The sockets of this process's open TLS connections.
    fds: Vec<RawFd>,
}

static STATE: Mutex<State> = Mutex::new(State {
    pid: 0,
    closed: false,
    in_flight: 0,
    fds: Vec::new(),
});
static LEFT: Condvar = Condvar::new();
static REGISTER: Once = Once::new();

fn state() -> MutexGuard<'static, State> {
    let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let pid = crate::pid::current();
    if s.pid != pid {
        s.pid = pid;
        s.in_flight = 0;
        s.fds.clear();
    }
    s
}

/// A call into OpenSSL in progress; leaving is dropping it.
pub(super) struct Pass(());

impl Drop for Pass {
    fn drop(&mut self) {
        let mut s = state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.closed && s.in_flight == 0 {
            LEFT.notify_all();
        }
    }
}

/// Ends, with its thread, the thread's OpenSSL state (see the module docs).
struct ThreadEnd;

impl Drop for ThreadEnd {
    fn drop(&mut self) {
        match enter() {
            // SAFETY: no preconditions; frees this thread's OpenSSL state, inside the gate.
            Some(_pass) => unsafe { crate::ossl::OPENSSL_thread_stop() },
            // Exiting: OpenSSL's cleanup may run now; its thread-exit destructor must not
            // run with it.
            None => loop {
                std::thread::park();
            },
        }
    }
}

thread_local! {
    static THREAD_END: ThreadEnd = const { ThreadEnd };
}

/// Enters the gate before a call into OpenSSL; None once the process is exiting (then
/// OpenSSL must not be called).
pub(super) fn enter() -> Option<Pass> {
    // Registers this thread's ThreadEnd (nothing once the thread is ending).
    let _ = THREAD_END.try_with(|_| ());
    let mut s = state();
    if s.closed {
        return None;
    }
    s.in_flight += 1;
    Some(Pass(()))
}

/// Registers the exit handler; call right after OpenSSL is initialised (after the first
/// `SSL_CTX_new`), so that ours runs before OpenSSL's cleanup.
pub(super) fn register_exit_handler() {
    // SAFETY: registering a plain extern "C" function without arguments, once per program
    // (a forked child inherits it).
    REGISTER.call_once(|| unsafe {
        libc::atexit(close_at_exit);
    });
}

/// A socket of an open connection, shut down if the process exits.
pub(super) fn add_socket(fd: RawFd) {
    state().fds.push(fd);
}

pub(super) fn remove_socket(fd: RawFd) {
    state().fds.retain(|&f| f != fd);
}

extern "C" fn close_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        // try_lock: a thread may have held it when the process began to exit (it only
        // holds it for a few instructions: retry briefly).
        let deadline = Instant::now() + EXIT_WAIT;
        let mut s = loop {
            match STATE.try_lock() {
                Ok(s) => break s,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(_) if Instant::now() < deadline => std::thread::yield_now(),
                Err(_) => return,
            }
        };
        if s.pid != crate::pid::current() {
            // Nothing of this process's is in flight.
            s.closed = true;
            return;
        }
        s.closed = true;
        for &fd in &s.fds {
            // SAFETY: shutting down a socket of ours: the calls blocked on it return.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        while s.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = match LEFT.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_counted_and_the_closed_gate_refuses() {
        // The gate is process-wide: this test only checks counting while it is open.
        let before = state().in_flight;
        let a = enter().expect("open");
        let b = enter().expect("open");
        assert_eq!(state().in_flight, before + 2);
        drop(a);
        drop(b);
        assert_eq!(state().in_flight, before);
    }
}
