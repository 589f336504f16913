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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// The most an exiting process waits for TLS calls in flight, after shutting down their
/// sockets (which makes the calls blocked on them return at once).
const EXIT_WAIT: Duration = Duration::from_millis(200);

/// The calls in flight (low 32 bits) and the process that counts them (high 32 bits): a
/// forked child starts afresh, the calls counted being its parent's threads'. Atomic, so
/// that a read or write on a lookup's path takes no lock.
static FLIGHT: AtomicU64 = AtomicU64::new(0);
/// Set by the exit handler: no call into OpenSSL from then on.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// The sockets of this process's open TLS connections (the process that added them, and
/// them), shut down if it exits. Locked only to make and to drop a connection.
static SOCKETS: Mutex<(u32, Vec<RawFd>)> = Mutex::new((0, Vec::new()));
static REGISTER: Once = Once::new();

const COUNT: u64 = 0xffff_ffff;

fn sockets() -> MutexGuard<'static, (u32, Vec<RawFd>)> {
    let mut s = SOCKETS.lock().unwrap_or_else(|p| p.into_inner());
    let pid = crate::pid::current();
    if s.0 != pid {
        *s = (pid, Vec::new());
    }
    s
}

/// This process's calls in flight.
fn in_flight() -> u64 {
    let v = FLIGHT.load(Ordering::SeqCst);
    if v >> 32 == u64::from(crate::pid::current()) {
        v & COUNT
    } else {
        0
    }
}

/// A call into OpenSSL in progress; leaving is dropping it.
pub(super) struct Pass(());

impl Drop for Pass {
    fn drop(&mut self) {
        let pid = u64::from(crate::pid::current());
        let _ = FLIGHT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            (v >> 32 == pid && v & COUNT > 0).then(|| v - 1)
        });
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
    let pid = u64::from(crate::pid::current());
    let _ = FLIGHT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(if v >> 32 == pid { v + 1 } else { pid << 32 | 1 })
    });
    // Counted first, then checked: the exit handler sets CLOSED first, then reads the
    // count, so either this call sees it closed or the handler sees this call.
    let pass = Pass(());
    if CLOSED.load(Ordering::SeqCst) {
        return None;
    }
    Some(pass)
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
    sockets().1.push(fd);
}

pub(super) fn remove_socket(fd: RawFd) {
    sockets().1.retain(|&f| f != fd);
}

extern "C" fn close_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        CLOSED.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + EXIT_WAIT;
        if in_flight() == 0 {
            return;
        }
        // try_lock: a thread may have held it when the process began to exit (it only
        // holds it for a few instructions).
        let held = match SOCKETS.try_lock() {
            Ok(s) => Some(s),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(_) => None,
        };
        if let Some(s) = held {
            if s.0 == crate::pid::current() {
                for &fd in &s.1 {
                    // SAFETY: shutting down a socket of ours: the calls blocked on it return.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            }
        }
        while in_flight() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_counted_and_the_closed_gate_refuses() {
        // The gate is process-wide (other tests' connections count too): this test only
        // checks counting while it is open.
        let a = enter().expect("open");
        let b = enter().expect("open");
        assert!(in_flight() >= 2);
        drop(a);
        drop(b);
    }
}
