//! One connection's asynchronous lookup: started by the handshake's thread, finished by a
//! worker, claimed by the connection's get-session callback.
//!
//! A connection holds its `Pending` in its ex_data ([`set`], [`of`]); the worker holds
//! another reference while it runs. Freeing the connection cancels it ([`Pending::cancel`],
//! from the ex_data free callback): a lookup that finishes after that is dropped (its
//! session reference released on the worker), and the program's completion callback is
//! never called once `SSL_free` has returned.

use super::eventfd::EventFd;
use crate::ossl::{ssl_st, sys_ssl};
use crate::session::SessionObject;
use crate::store::SessionKey;
use crate::threads::lock;
use openssl_sys::{
    CRYPTO_get_ex_new_index, SSL_get_ex_data, SSL_set_ex_data, CRYPTO_EX_DATA, CRYPTO_EX_INDEX_SSL,
};
use std::ffi::c_void;
use std::os::raw::{c_int, c_long};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The program's completion callback (`sesscache_lookup_done`).
pub type DoneCb = unsafe extern "C" fn(ssl: *mut ssl_st, arg: *mut c_void);

/// Whom to tell when the lookup finishes.
#[derive(Clone, Copy)]
pub struct Notify {
    pub cb: DoneCb,
    pub ssl: *mut ssl_st,
    pub arg: *mut c_void,
}

// SAFETY: the pointers are only passed back to the program's callback, which the program
// declared callable from any thread (`sesscache_attach_async`); the library never
// dereferences them.
unsafe impl Send for Notify {}

enum Phase {
    /// A worker is looking the key up.
    Running,
    /// Finished; the get-session callback has not taken the result yet.
    Done(Option<SessionObject>),
    /// The result was taken, or dropped.
    Over,
    /// A single-use session this connection's handshake was given: given again if the same
    /// handshake asks for it again (after a HelloRetryRequest, the second ClientHello
    /// offers the same ticket, which the first lookup consumed).
    Delivered(SessionObject),
}

struct State {
    key: SessionKey,
    phase: Phase,
    /// The handshake was suspended for this lookup and has not been resumed past it.
    suspended: bool,
    /// What the program (or OpenSSL's async job) waits on: made on request.
    fd: Option<Arc<EventFd>>,
    /// A thread waits in [`Pending::wait`] (rare: a job that could not pause).
    waiting: bool,
}

pub struct Pending {
    state: Mutex<State>,
    finished: Condvar,
    /// Taken while the program's completion callback runs; true once the connection is
    /// being freed (no callback after that).
    notify: Mutex<bool>,
}

impl Pending {
    /// A lookup of `key` about to be handed to a worker (the handshake suspends for it).
    pub fn running(key: SessionKey) -> Arc<Pending> {
        Pending::with(key, Phase::Running, true)
    }

    /// A lookup that was answered at once (`resolve_now`), waiting for the get callback.
    pub fn done(key: SessionKey, found: Option<SessionObject>) -> Arc<Pending> {
        Pending::with(key, Phase::Done(found), false)
    }

    /// A single-use session `key` resolved to for this connection's handshake.
    pub fn delivered(key: SessionKey, obj: SessionObject) -> Arc<Pending> {
        Pending::with(key, Phase::Delivered(obj), false)
    }

    /// The single-use session this connection's handshake was given for `id`, again.
    pub fn again(&self, id: &[u8]) -> Option<SessionObject> {
        let s = lock(&self.state);
        match &s.phase {
            Phase::Delivered(obj) if s.key.as_bytes() == id => Some(obj.clone()),
            _ => None,
        }
    }

    fn with(key: SessionKey, phase: Phase, suspended: bool) -> Arc<Pending> {
        Arc::new(Pending {
            state: Mutex::new(State {
                key,
                phase,
                suspended,
                fd: None,
                waiting: false,
            }),
            finished: Condvar::new(),
            notify: Mutex::new(false),
        })
    }

    /// Whether this is the lookup of `key`.
    pub fn is_for(&self, key: &SessionKey) -> bool {
        lock(&self.state).key == *key
    }

    /// Whether the handshake waits for this lookup (it was handed to a worker and the
    /// handshake was not resumed past it yet).
    pub fn suspends(&self) -> bool {
        lock(&self.state).suspended
    }

    pub fn is_running(&self) -> bool {
        matches!(lock(&self.state).phase, Phase::Running)
    }

    /// True once, for the ClientHello callback called again after it suspended the
    /// handshake, when the lookup has finished: the handshake goes on. Closes the fd (the
    /// program removed it from its poll set before resuming).
    pub fn resume(&self) -> bool {
        let mut s = lock(&self.state);
        if s.suspended && matches!(s.phase, Phase::Done(_)) {
            s.suspended = false;
            let fd = s.fd.take();
            drop(s);
            drop(fd);
            return true;
        }
        false
    }

    /// The worker's report: stores the result, wakes whoever waits, then calls `notify`
    /// unless the connection is being freed.
    pub fn finish(&self, found: Option<SessionObject>, notify: Option<Notify>) {
        let mut s = lock(&self.state);
        if !matches!(s.phase, Phase::Running) {
            // Cancelled: the connection is gone. Dropped here, after the lock.
            drop(s);
            drop(found);
            return;
        }
        s.phase = Phase::Done(found);
        let fd = s.fd.clone();
        let waiting = s.waiting;
        drop(s);
        if waiting {
            self.finished.notify_all();
        }
        if let Some(fd) = fd {
            fd.signal();
        }
        if let Some(n) = notify {
            let gone = lock(&self.notify);
            if !*gone {
                // SAFETY: the program's callback, with the pointers it gave; the connection
                // is not freed while `gone` is held false (see `cancel`).
                let _ = std::panic::catch_unwind(|| unsafe { (n.cb)(n.ssl, n.arg) });
            }
        }
    }

    /// The result, if the lookup finished for exactly `id` and nobody took it yet.
    pub fn claim(&self, id: &[u8]) -> Option<Option<SessionObject>> {
        let mut s = lock(&self.state);
        if s.key.as_bytes() != id || !matches!(s.phase, Phase::Done(_)) {
            return None;
        }
        match std::mem::replace(&mut s.phase, Phase::Over) {
            Phase::Done(found) => Some(found),
            _ => None,
        }
    }

    /// Waits until the lookup has finished (where the handshake cannot be suspended after
    /// all). The worker's lookup is bounded by the backend's budget.
    pub fn wait(&self) {
        let mut s = lock(&self.state);
        while matches!(s.phase, Phase::Running) {
            s.waiting = true;
            s = self.finished.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The descriptor to wait on while suspended: made on first request, readable at once
    /// if the lookup already finished. None when the handshake is not suspended by this
    /// lookup, or no descriptor can be made.
    pub fn fd(&self) -> Option<c_int> {
        let mut s = lock(&self.state);
        if !s.suspended {
            return None;
        }
        if let Some(fd) = &s.fd {
            return Some(fd.fd());
        }
        let fd = Arc::new(EventFd::new()?);
        if !matches!(s.phase, Phase::Running) {
            fd.signal();
        }
        let raw = fd.fd();
        s.fd = Some(fd);
        Some(raw)
    }

    /// Uses `fd` (an OpenSSL async job's wait descriptor) as this lookup's descriptor.
    pub fn use_fd(&self, fd: Arc<EventFd>) {
        lock(&self.state).fd = Some(fd);
    }

    /// The connection is being freed: no completion callback after this returns (one
    /// running now is waited for), and a result is dropped.
    pub fn cancel(&self) {
        *lock(&self.notify) = true;
        let mut s = lock(&self.state);
        let phase = std::mem::replace(&mut s.phase, Phase::Over);
        let fd = s.fd.take();
        drop(s);
        drop((phase, fd));
    }
}

/// -1 until [`ensure_index`] allocates it (at the first attach, with the other indices).
static INDEX: AtomicI32 = AtomicI32::new(-1);

/// Cancels and releases a connection's `Pending` when OpenSSL frees the connection.
unsafe extern "C" fn free_pending(
    _parent: *mut c_void,
    ptr: *mut c_void,
    _ad: *mut CRYPTO_EX_DATA,
    _idx: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    if ptr.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: non-NULL values in our slot come from Arc::into_raw in `set`; OpenSSL
        // calls this once per connection.
        let p = unsafe { Arc::from_raw(ptr.cast_const().cast::<Pending>()) };
        p.cancel();
    });
}

/// Allocates the connections' ex_data index for pending lookups. Called with the other
/// indices, at the first attach.
pub fn ensure_index() -> bool {
    if INDEX.load(Ordering::Acquire) >= 0 {
        return true;
    }
    // SAFETY: plain OpenSSL call; free_pending has the CRYPTO_EX_free signature.
    let idx = unsafe {
        CRYPTO_get_ex_new_index(
            CRYPTO_EX_INDEX_SSL,
            0,
            std::ptr::null_mut(),
            None,
            None,
            Some(free_pending),
        )
    };
    if idx < 0 {
        return false;
    }
    INDEX.store(idx, Ordering::Release);
    true
}

/// Forgets the connection's lookup (a new handshake starts on it: `SSL_clear`, which
/// OpenSSL also calls before each handshake; or it is freed): cancelled, and a single-use
/// session it was given is not given again.
///
/// # Safety
/// As [`of`].
pub unsafe fn forget(ssl: *mut ssl_st) {
    let idx = INDEX.load(Ordering::Acquire);
    if idx < 0 {
        return;
    }
    // SAFETY: ssl is live; the slot holds NULL or an Arc<Pending> pointer from `set`.
    unsafe {
        let old = SSL_get_ex_data(sys_ssl(ssl), idx).cast::<Pending>();
        if !old.is_null() && SSL_set_ex_data(sys_ssl(ssl), idx, std::ptr::null_mut()) == 1 {
            Arc::from_raw(old).cancel();
        }
    }
}

/// The connection's pending lookup, if any.
///
/// # Safety
/// `ssl` is a live connection, used by the calling thread only (as OpenSSL requires).
pub unsafe fn of(ssl: *mut ssl_st) -> Option<Arc<Pending>> {
    let idx = INDEX.load(Ordering::Acquire);
    if idx < 0 {
        return None;
    }
    // SAFETY: ssl is live; the slot holds NULL or an Arc<Pending> pointer from `set`.
    unsafe {
        let p = SSL_get_ex_data(sys_ssl(ssl), idx).cast::<Pending>();
        if p.is_null() {
            return None;
        }
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// Makes `p` the connection's pending lookup, releasing the one before (cancelled: its
/// result, if it comes, is dropped). False if OpenSSL could not store it.
///
/// # Safety
/// As [`of`].
pub unsafe fn set(ssl: *mut ssl_st, p: Arc<Pending>) -> bool {
    let idx = INDEX.load(Ordering::Acquire);
    if idx < 0 {
        return false;
    }
    // SAFETY: ssl is live; the slot holds NULL or an Arc<Pending> pointer from here.
    unsafe {
        let old = SSL_get_ex_data(sys_ssl(ssl), idx).cast::<Pending>();
        let raw = Arc::into_raw(p);
        if SSL_set_ex_data(sys_ssl(ssl), idx, raw.cast_mut().cast()) != 1 {
            drop(Arc::from_raw(raw));
            return false;
        }
        if !old.is_null() {
            let old = Arc::from_raw(old);
            old.cancel();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_sessions::tls12;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Duration;

    fn key(b: u8) -> SessionKey {
        SessionKey::new(&[b; 32]).unwrap()
    }

    fn session(b: u8) -> SessionObject {
        // SAFETY: tls12 returns a session we own one reference to.
        unsafe { SessionObject::from_owned(tls12(&[b; 32], &[b; 48])) }.unwrap()
    }

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn count(ssl: *mut ssl_st, arg: *mut c_void) {
        crate::boundary::guard((), || {
            assert_eq!(ssl as usize, 0x10);
            assert_eq!(arg as usize, 0x20);
            CALLS.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn notify(cb: DoneCb) -> Option<Notify> {
        Some(Notify {
            cb,
            ssl: 0x10 as *mut ssl_st,
            arg: 0x20 as *mut c_void,
        })
    }

    /// A finished lookup hands its result to the get callback asking for its exact key,
    /// once; the descriptor was readable from the finish on, and the ClientHello's retry
    /// resumes once.
    #[test]
    fn a_result_is_claimed_once_for_its_key() {
        let p = Pending::running(key(1));
        let fd = p.fd().expect("a descriptor while suspended");
        assert_eq!(p.fd(), Some(fd), "the same one");
        assert!(!p.resume(), "not before it finished");
        let s = session(1);
        p.finish(Some(s.clone()), None);
        assert!(lock(&p.state).fd.as_ref().unwrap().is_signalled());
        assert!(p.claim(&[2; 32]).is_none(), "another key");
        assert!(p.resume());
        assert!(!p.resume(), "once");
        assert!(lock(&p.state).fd.is_none(), "closed on resume");
        assert_eq!(p.fd(), None, "no longer suspended");
        let got = p.claim(&[1; 32]).expect("finished").expect("found");
        assert_eq!(got.as_ptr(), s.as_ptr());
        assert!(p.claim(&[1; 32]).is_none(), "taken");
    }

    /// A descriptor asked for after the lookup finished is readable at once; a lookup
    /// answered without suspending has none.
    #[test]
    fn a_late_descriptor_is_readable_at_once() {
        let p = Pending::running(key(3));
        p.finish(None, None);
        p.fd().unwrap();
        assert!(lock(&p.state).fd.as_ref().unwrap().is_signalled());
        assert_eq!(Pending::done(key(3), None).fd(), None);
    }

    /// Cancelled (the connection freed): a late result is dropped and nobody is told.
    #[test]
    fn a_cancelled_lookup_drops_its_result_and_tells_nobody() {
        let before = CALLS.load(Ordering::SeqCst);
        let p = Pending::running(key(4));
        p.cancel();
        let s = session(4);
        p.finish(Some(s.clone()), notify(count));
        assert_eq!(CALLS.load(Ordering::SeqCst), before);
        assert!(p.claim(&[4; 32]).is_none());
        let q = Pending::running(key(5));
        q.finish(None, notify(count));
        assert_eq!(CALLS.load(Ordering::SeqCst), before + 1, "told once");
    }

    static ENTERED: AtomicBool = AtomicBool::new(false);
    static LEFT: AtomicBool = AtomicBool::new(false);
    unsafe extern "C" fn slow(_ssl: *mut ssl_st, _arg: *mut c_void) {
        crate::boundary::guard((), || {
            ENTERED.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
            LEFT.store(true, Ordering::SeqCst);
        })
    }

    /// Freeing a connection while its completion callback runs waits for the callback: it
    /// never runs once SSL_free has returned.
    #[test]
    fn cancel_waits_for_a_running_callback() {
        let p = Pending::running(key(6));
        let q = p.clone();
        let t = std::thread::spawn(move || q.finish(None, notify(slow)));
        while !ENTERED.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        p.cancel();
        assert!(
            LEFT.load(Ordering::SeqCst),
            "cancel returned during the callback"
        );
        t.join().unwrap();
    }

    /// `wait` returns once a worker finished.
    #[test]
    fn wait_returns_when_finished() {
        let p = Pending::running(key(7));
        let q = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            q.finish(None, None);
        });
        p.wait();
        assert!(!p.is_running());
        t.join().unwrap();
    }
}
