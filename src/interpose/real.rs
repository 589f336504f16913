//! The real OpenSSL functions behind the ones we export, found with `dlsym(RTLD_NEXT, …)`.
//!
//! RTLD_NEXT finds the next definition after ours in the lookup order: libssl's, whether
//! we were linked before `-lssl` or preloaded. If that fails (an unusual link order) we
//! look the names up in the already loaded `libssl.so.3`.

use crate::ossl::{
    ossl_lib_ctx_st, ssl_ctx_st, ssl_method_st, ssl_st, GetSessionCb, NewSessionCb, RemoveSessionCb,
};
use std::ffi::{c_void, CStr};
use std::os::raw::c_char;
use std::sync::OnceLock;

// Instantiated only with the callback fn-pointer types, for which Option is FFI-safe
// (the null-pointer optimisation), which the lint cannot see through the generic.
#[allow(improper_ctypes_definitions)]
pub type SetCb<T> = unsafe extern "C" fn(*mut ssl_ctx_st, Option<T>);
#[allow(improper_ctypes_definitions)]
pub type GetCb<T> = unsafe extern "C" fn(*mut ssl_ctx_st) -> Option<T>;
type SetSslCtx = unsafe extern "C" fn(*mut ssl_st, *mut ssl_ctx_st) -> *mut ssl_ctx_st;
type CtxNew = unsafe extern "C" fn(*const ssl_method_st) -> *mut ssl_ctx_st;
type SslVoid = unsafe extern "C" fn(*mut ssl_st);
type SslClear = unsafe extern "C" fn(*mut ssl_st) -> std::os::raw::c_int;
type CtxNewEx = unsafe extern "C" fn(
    *mut ossl_lib_ctx_st,
    *const c_char,
    *const ssl_method_st,
) -> *mut ssl_ctx_st;

pub struct Real {
    pub set_new_cb: SetCb<NewSessionCb>,
    pub get_new_cb: GetCb<NewSessionCb>,
    pub set_get_cb: SetCb<GetSessionCb>,
    pub get_get_cb: GetCb<GetSessionCb>,
    pub set_remove_cb: SetCb<RemoveSessionCb>,
    pub get_remove_cb: GetCb<RemoveSessionCb>,
    pub set_ssl_ctx: SetSslCtx,
    pub ctx_new: CtxNew,
    pub ctx_new_ex: CtxNewEx,
    pub set_accept_state: SslVoid,
    pub free: SslVoid,
    pub clear: SslClear,
}

static REAL: OnceLock<Option<Real>> = OnceLock::new();

/// The real functions, or None if libssl's could not be found (then nothing we export can
/// do its job; the caller reports it).
pub fn real() -> Option<&'static Real> {
    REAL.get_or_init(resolve).as_ref()
}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always safe to call.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if !p.is_null() {
        return p;
    }
    // SAFETY: RTLD_NOLOAD only returns a handle to an already loaded object.
    let handle =
        unsafe { libc::dlopen(c"libssl.so.3".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return p;
    }
    // SAFETY: handle is a valid handle from dlopen; dlsym on it only searches libssl and
    // its dependencies, never our own definitions.
    unsafe { libc::dlsym(handle, name.as_ptr()) }
}

fn resolve() -> Option<Real> {
    macro_rules! sym {
        ($name:literal, $ty:ty) => {{
            let p = lookup($name);
            if p.is_null() {
                return None;
            }
            // SAFETY: the symbol is libssl's function of that name, whose prototype in
            // <openssl/ssl.h> is the field's type; fn pointers and data pointers have the
            // same size on every platform OpenSSL supports.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }};
    }
    Some(Real {
        set_new_cb: sym!(c"SSL_CTX_sess_set_new_cb", SetCb<NewSessionCb>),
        get_new_cb: sym!(c"SSL_CTX_sess_get_new_cb", GetCb<NewSessionCb>),
        set_get_cb: sym!(c"SSL_CTX_sess_set_get_cb", SetCb<GetSessionCb>),
        get_get_cb: sym!(c"SSL_CTX_sess_get_get_cb", GetCb<GetSessionCb>),
        set_remove_cb: sym!(c"SSL_CTX_sess_set_remove_cb", SetCb<RemoveSessionCb>),
        get_remove_cb: sym!(c"SSL_CTX_sess_get_remove_cb", GetCb<RemoveSessionCb>),
        set_ssl_ctx: sym!(c"SSL_set_SSL_CTX", SetSslCtx),
        ctx_new: sym!(c"SSL_CTX_new", CtxNew),
        ctx_new_ex: sym!(c"SSL_CTX_new_ex", CtxNewEx),
        set_accept_state: sym!(c"SSL_set_accept_state", SslVoid),
        free: sym!(c"SSL_free", SslVoid),
        clear: sym!(c"SSL_clear", SslClear),
    })
}
