//! Sessions as OpenSSL objects and as DER: reference counting, encoding, decoding, and
//! what a decoded session costs in memory ([`cost`]).

pub mod cost;

pub use cost::object_cost;

use crate::ossl::{SSL_SESSION_get0_peer, SSL_SESSION_is_resumable};
use crate::secret::SecretBytes;
use openssl_sys::{
    d2i_SSL_SESSION, i2d_SSL_SESSION, SSL_SESSION_free, SSL_SESSION_get_id,
    SSL_SESSION_get_protocol_version, SSL_SESSION_get_time, SSL_SESSION_get_timeout,
    SSL_SESSION_up_ref, SSL_SESSION,
};
use std::os::raw::{c_long, c_uint};
use std::ptr::NonNull;

/// One counted reference to an `SSL_SESSION`; dropping it calls `SSL_SESSION_free`,
/// cloning it calls `SSL_SESSION_up_ref`.
pub struct SessionObject(NonNull<SSL_SESSION>);

// SAFETY: OpenSSL's SSL_SESSION reference count is atomic, and OpenSSL's own session cache
// hands one object to connections on many threads; we only read it and count references.
unsafe impl Send for SessionObject {}
// SAFETY: as above; `&SessionObject` only permits reads and reference counting.
unsafe impl Sync for SessionObject {}

impl SessionObject {
    /// Takes over one reference the caller owns.
    ///
    /// # Safety
    /// `ptr` is a valid `SSL_SESSION` and the caller gives up one reference to it.
    pub unsafe fn from_owned(ptr: *mut SSL_SESSION) -> Option<Self> {
        NonNull::new(ptr).map(SessionObject)
    }

    /// Takes a new reference to a session the caller does not own.
    ///
    /// # Safety
    /// `ptr` is a valid `SSL_SESSION` for the duration of the call.
    pub unsafe fn retain(ptr: *mut SSL_SESSION) -> Option<Self> {
        let ptr = NonNull::new(ptr)?;
        // SAFETY: the caller guarantees ptr is a live session.
        (unsafe { SSL_SESSION_up_ref(ptr.as_ptr()) } == 1).then_some(SessionObject(ptr))
    }

    /// Gives the reference to the caller (for OpenSSL's `*copy = 0`).
    pub fn into_raw(self) -> *mut SSL_SESSION {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    pub fn as_ptr(&self) -> *mut SSL_SESSION {
        self.0.as_ptr()
    }

    /// Whether the session holds the peer's certificate (a server session after client
    /// authentication). A live one then also holds the chain the client sent, which its DER
    /// does not carry.
    pub fn has_peer(&self) -> bool {
        // SAFETY: we hold a reference, so the object is live.
        unsafe { has_peer(self.0.as_ptr()) }
    }

    /// An upper bound of the memory this object holds ([`object_cost`] of its DER), or
    /// None if it does not encode. Costs an `i2d_SSL_SESSION`; the DER is wiped.
    pub fn cost(&self) -> Option<usize> {
        // SAFETY: we hold a reference, so the object is live.
        unsafe { encode(self.0.as_ptr()) }.map(|der| object_cost(der.as_slice()))
    }

    /// False once OpenSSL has removed the session (`remove_session_lock` marks it), after
    /// which OpenSSL 3 refuses to resume it.
    pub fn is_resumable(&self) -> bool {
        // SAFETY: we hold a reference, so the object is live.
        unsafe { SSL_SESSION_is_resumable(self.0.as_ptr()) == 1 }
    }
}

impl Clone for SessionObject {
    fn clone(&self) -> Self {
        // SAFETY: we hold a reference, so the object is live; up_ref cannot fail on a live
        // object in OpenSSL 3 (it is an atomic increment).
        unsafe { SSL_SESSION_up_ref(self.0.as_ptr()) };
        SessionObject(self.0)
    }
}

impl Drop for SessionObject {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference, released here once.
        unsafe { SSL_SESSION_free(self.0.as_ptr()) }
    }
}

/// The facts about a session the cache needs.
pub struct SessionInfo<'a> {
    pub id: &'a [u8],
    /// `SSL_SESSION_get_time` + `SSL_SESSION_get_timeout`, in Unix seconds.
    pub expires_at: u64,
    pub tls13: bool,
}

/// Reads a session's ID, expiry and protocol.
///
/// # Safety
/// `sess` is a live session that outlives the returned borrow.
pub unsafe fn info<'a>(sess: *const SSL_SESSION) -> SessionInfo<'a> {
    let mut len: c_uint = 0;
    // SAFETY: sess is live; OpenSSL returns a pointer into the session and its length.
    let id = unsafe { SSL_SESSION_get_id(sess, &mut len) };
    let id: &[u8] = if id.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: OpenSSL guarantees `len` readable bytes at `id` while sess lives.
        unsafe { std::slice::from_raw_parts(id, len as usize) }
    };
    // SAFETY: sess is live.
    let (time, timeout, version) = unsafe {
        (
            SSL_SESSION_get_time(sess),
            SSL_SESSION_get_timeout(sess),
            SSL_SESSION_get_protocol_version(sess),
        )
    };
    let nonneg = |v: c_long| u64::try_from(v).unwrap_or(0);
    SessionInfo {
        id,
        expires_at: nonneg(time).saturating_add(nonneg(timeout)),
        tls13: version == openssl_sys::TLS1_3_VERSION,
    }
}

/// Whether a session holds the peer's certificate.
///
/// # Safety
/// `sess` is a live session.
pub unsafe fn has_peer(sess: *mut SSL_SESSION) -> bool {
    // SAFETY: sess is live (caller); get0 takes no reference.
    !unsafe { SSL_SESSION_get0_peer(sess) }.is_null()
}

/// An upper bound of the heap memory that the certificate chain the client sent adds to the
/// live session of server connection `ssl` (OpenSSL keeps it beside the session's peer
/// certificate; the session's DER does not carry it): the
/// [`certificate_cost`](cost::certificate_cost) of each certificate of
/// `SSL_get_peer_cert_chain`. 0 without a chain; None if a certificate does not encode.
/// Costs an `i2d_X509` per certificate (a copy of its cached encoding).
///
/// # Safety
/// `ssl` is a live connection.
pub unsafe fn peer_chain_cost(ssl: *const openssl_sys::SSL) -> Option<usize> {
    // SAFETY: ssl is live (caller); the chain is borrowed, not ours to free.
    let chain = unsafe { openssl_sys::SSL_get_peer_cert_chain(ssl) };
    if chain.is_null() {
        return Some(0);
    }
    let stack = chain.cast::<openssl_sys::OPENSSL_STACK>();
    // SAFETY: a live stack of certificates owned by the connection's session.
    let n = unsafe { openssl_sys::OPENSSL_sk_num(stack) };
    let mut total = 0usize;
    for i in 0..n {
        // SAFETY: 0 <= i < n: an element of the stack, a live X509.
        let x = unsafe { openssl_sys::OPENSSL_sk_value(stack, i) }.cast::<openssl_sys::X509>();
        // SAFETY: with a NULL output pointer i2d only computes the length.
        let len = unsafe { openssl_sys::i2d_X509(x, std::ptr::null_mut()) };
        let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
        let mut der = vec![0u8; len];
        let mut out = der.as_mut_ptr();
        // SAFETY: der has exactly the `len` bytes i2d said it writes.
        let written = unsafe { openssl_sys::i2d_X509(x, &mut out) };
        if usize::try_from(written).ok() != Some(len) {
            return None;
        }
        total = total.saturating_add(cost::certificate_cost(&der));
    }
    Some(total)
}

/// `i2d_SSL_SESSION`, into an exactly sized buffer that is wiped when dropped (it holds the
/// master secret), whatever the caller then does with it.
///
/// # Safety
/// `sess` is a live session.
pub unsafe fn encode(sess: *mut SSL_SESSION) -> Option<SecretBytes> {
    // SAFETY: with a NULL output pointer i2d only computes the length.
    let len = unsafe { i2d_SSL_SESSION(sess, std::ptr::null_mut()) };
    let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
    let mut buf = SecretBytes::zeroed(len);
    let mut out = buf.as_mut_slice().as_mut_ptr();
    // SAFETY: buf has exactly the `len` bytes i2d said it writes.
    let written = unsafe { i2d_SSL_SESSION(sess, &mut out) };
    (usize::try_from(written).ok() == Some(len)).then_some(buf)
}

/// Decodes stored bytes that were filed under session ID `id`: None if they do not decode,
/// or if the session inside has another ID (OpenSSL does not compare the two: a value filed
/// under the wrong key would resume the wrong session).
pub fn decode_matching(id: &[u8], der: &[u8]) -> Option<SessionObject> {
    let obj = decode(der)?;
    // SAFETY: obj holds a reference, so the session is live during the call.
    (unsafe { info(obj.as_ptr()) }.id == id).then_some(obj)
}

/// `d2i_SSL_SESSION`: a fresh object the caller owns, or None if `der` does not decode.
pub fn decode(der: &[u8]) -> Option<SessionObject> {
    let len = c_long::try_from(der.len()).ok()?;
    let mut p = der.as_ptr();
    // SAFETY: p points at `len` readable bytes; a NULL first argument asks for a new object.
    let obj = unsafe { d2i_SSL_SESSION(std::ptr::null_mut(), &mut p, len) };
    if obj.is_null() {
        // d2i leaves its reason on the thread's OpenSSL error queue; a corrupt entry is a
        // miss for us, not an error the application should see later.
        // SAFETY: plain call clearing this thread's error queue.
        unsafe { openssl_sys::ERR_clear_error() };
    }
    // SAFETY: a non-NULL d2i result is a new object with one reference, now ours.
    unsafe { SessionObject::from_owned(obj) }
}
