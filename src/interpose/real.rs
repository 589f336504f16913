//! The real OpenSSL functions behind the ones we export, found with `dlsym(RTLD_NEXT, …)`.
//!
//! RTLD_NEXT finds the next definition after ours in the lookup order: libssl's, whether
//! we were linked before `-lssl` or preloaded. If that fails (an unusual link order) we
//! look the name up in whichever libssl is already loaded (`libssl.so.3`, `.so.4`,
//! `.so.1.1`).
//!
//! Each function is found on its own: one that this libssl lacks (`SSL_CTX_new_ex` before
//! OpenSSL 3.0) costs only the call that needs it, never the others, and is said once in
//! the log when something does need it ([`missing`]). A program cannot call a function its
//! libssl does not have, so in practice that call never comes.

use crate::log::Level;
use crate::ossl::{
    ossl_lib_ctx_st, ssl_ctx_st, ssl_method_st, ssl_st, ClientHelloCb, GetSessionCb, NewSessionCb,
    RemoveSessionCb, TicketKeyEvpCb,
};
use std::ffi::{c_void, CStr};
use std::os::raw::c_char;
use std::sync::atomic::{AtomicU32, Ordering};
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
type CtxCtrl = unsafe extern "C" fn(
    *mut ssl_ctx_st,
    std::os::raw::c_int,
    std::os::raw::c_long,
    *mut c_void,
) -> std::os::raw::c_long;
/// `void (*)(void)`, the type `SSL_CTX_callback_ctrl` takes every callback as.
pub type VoidFn = unsafe extern "C" fn();
type CtxCallbackCtrl = unsafe extern "C" fn(
    *mut ssl_ctx_st,
    std::os::raw::c_int,
    Option<VoidFn>,
) -> std::os::raw::c_long;
type SetTicketEvpCb =
    unsafe extern "C" fn(*mut ssl_ctx_st, Option<TicketKeyEvpCb>) -> std::os::raw::c_int;
type SetClientHelloCb = unsafe extern "C" fn(*mut ssl_ctx_st, Option<ClientHelloCb>, *mut c_void);
type CtxNewEx = unsafe extern "C" fn(
    *mut ossl_lib_ctx_st,
    *const c_char,
    *const ssl_method_st,
) -> *mut ssl_ctx_st;

/// Declares the functions we forward to: one `Option` field each (None: this libssl has
/// no such function), and the name it is looked up by.
macro_rules! real_functions {
    ($($field:ident: $ty:ty = $name:literal,)*) => {
        pub struct Real {
            $(pub $field: Option<$ty>,)*
        }

        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        #[repr(u32)]
        enum Which { $($field,)* }

        /// The names, in the order of [`Which`].
        const NAMES: &[&CStr] = &[$($name,)*];

        fn resolve() -> Real {
            Real {
                $($field: {
                    let p = lookup($name);
                    // SAFETY: a non-NULL result is libssl's function of that name, whose
                    // prototype in <openssl/ssl.h> is the field's type; fn pointers and data
                    // pointers have the same size on every platform OpenSSL supports.
                    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, $ty>(p) })
                },)*
            }
        }

        impl Real {
            $(
                /// The real function, or None (said once in the log) if libssl lacks it.
                pub fn $field(&self) -> Option<$ty> {
                    if self.$field.is_none() {
                        missing(Which::$field);
                    }
                    self.$field
                }
            )*
        }
    };
}

real_functions! {
    set_new_cb: SetCb<NewSessionCb> = c"SSL_CTX_sess_set_new_cb",
    get_new_cb: GetCb<NewSessionCb> = c"SSL_CTX_sess_get_new_cb",
    set_get_cb: SetCb<GetSessionCb> = c"SSL_CTX_sess_set_get_cb",
    get_get_cb: GetCb<GetSessionCb> = c"SSL_CTX_sess_get_get_cb",
    set_remove_cb: SetCb<RemoveSessionCb> = c"SSL_CTX_sess_set_remove_cb",
    get_remove_cb: GetCb<RemoveSessionCb> = c"SSL_CTX_sess_get_remove_cb",
    set_ssl_ctx: SetSslCtx = c"SSL_set_SSL_CTX",
    ctx_new: CtxNew = c"SSL_CTX_new",
    ctx_new_ex: CtxNewEx = c"SSL_CTX_new_ex",
    set_accept_state: SslVoid = c"SSL_set_accept_state",
    free: SslVoid = c"SSL_free",
    clear: SslClear = c"SSL_clear",
    ctx_ctrl: CtxCtrl = c"SSL_CTX_ctrl",
    ctx_callback_ctrl: CtxCallbackCtrl = c"SSL_CTX_callback_ctrl",
    set_ticket_evp_cb: SetTicketEvpCb = c"SSL_CTX_set_tlsext_ticket_key_evp_cb",
    set_client_hello_cb: SetClientHelloCb = c"SSL_CTX_set_client_hello_cb",
}

static REAL: OnceLock<Real> = OnceLock::new();

/// The real functions, each found or not (see [`Real`]'s accessors).
pub fn real() -> &'static Real {
    REAL.get_or_init(resolve)
}

/// Which missing functions were already said in the log, a bit each.
static SAID: AtomicU32 = AtomicU32::new(0);

/// Says once per function that a call needed it and libssl has none.
#[cold]
fn missing(which: Which) {
    let bit = 1u32 << (which as u32);
    if SAID.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
        crate::log::write(
            Level::Error,
            format_args!(
                "{}: the loaded libssl has no such function; this call does nothing (sesscache was built for another OpenSSL?)",
                NAMES[which as usize].to_string_lossy()
            ),
        );
    }
}

/// The addresses of the `SSL_METHOD` tables that libssl's functions of these names return
/// (`const SSL_METHOD *NAME(void)`); names this libssl lacks are left out.
pub fn method_tables(names: &[&CStr]) -> Vec<usize> {
    names
        .iter()
        .filter_map(|name| {
            // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the process.
            let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!f.is_null()).then(|| {
                // SAFETY: each name is a `const SSL_METHOD *(void)` in <openssl/ssl.h>.
                let f: unsafe extern "C" fn() -> *const c_void = unsafe { std::mem::transmute(f) };
                // SAFETY: calling it only returns a pointer to a static method table.
                unsafe { f() as usize }
            })
        })
        .collect()
}

/// The sonames of the libssl versions the library runs with, newest first.
const LIBSSL_SONAMES: &[&CStr] = &[c"libssl.so.4", c"libssl.so.3", c"libssl.so.1.1"];

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always safe to call.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if !p.is_null() {
        return p;
    }
    for soname in LIBSSL_SONAMES {
        // SAFETY: RTLD_NOLOAD only returns a handle to an already loaded object.
        let handle = unsafe { libc::dlopen(soname.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            continue;
        }
        // SAFETY: handle is a valid handle from dlopen; dlsym on it only searches libssl
        // and its dependencies, never our own definitions.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        // SAFETY: drops the reference our dlopen took; the object stays loaded (it was
        // before, RTLD_NOLOAD), so `p` stays valid.
        unsafe { libc::dlclose(handle) };
        if !p.is_null() {
            return p;
        }
    }
    std::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_of_this_libssl_is_found() {
        // The test binary links libssl (openssl-sys); every name we forward exists in the
        // OpenSSL it was built against, SSL_CTX_new_ex from 3.0 on.
        let r = real();
        assert!(r.set_new_cb.is_some() && r.get_remove_cb.is_some() && r.clear.is_some());
        assert!(r.ctx_new.is_some() && r.free.is_some() && r.set_accept_state.is_some());
        // SAFETY: OpenSSL_version_num has no preconditions.
        let v = unsafe { openssl_sys::OpenSSL_version_num() };
        assert_eq!(r.ctx_new_ex.is_some(), v >= 0x3000_0000);
    }

    #[test]
    fn a_name_libssl_lacks_is_none_not_a_failure() {
        assert!(lookup(c"SSL_no_such_function_in_any_version").is_null());
        // Still found: the others.
        assert!(!lookup(c"SSL_CTX_new").is_null());
    }
}
