//! Shared ticket keys in OpenSSL (`tickets=shared`): the ticket key callback we install on
//! attached server contexts, and the rule that a program's own ticket keys win.
//!
//! - Installed when the cache is attached (preload mode: when the context is made; the C
//!   API: `sesscache_attach`): `SSL_CTX_set_tlsext_ticket_key_evp_cb` where libssl has it
//!   (3.0+), else the older callback (`SSL_CTX_set_tlsext_ticket_key_cb`, 1.1.1). OpenSSL
//!   calls it only for server connections that use stateless tickets, so client
//!   connections and programs that turned tickets off see no change.
//! - A program that sets its own keys (`SSL_CTX_set_tlsext_ticket_keys`) or its own ticket
//!   callback (nginx `ssl_session_ticket_key`, HAProxy `tls-ticket-keys`, Apache
//!   `SSLSessionTicketKeyFile`) wins: ours is taken off that context (said once in the
//!   log). With `force=1` the shared keys win instead: the program's callback is not
//!   installed and its keys are not used. A program that did so before attaching is
//!   remembered by context address until the attach.
//! - The callback itself reads the keys from memory ([`crate::cache::tickets`]): no I/O,
//!   no allocation, no lock a background task holds for more than a swap.

use crate::boundary::guard;
use crate::cache::tickets::key::{TicketKey, NAME_LEN};
use crate::interpose::real::{real, VoidFn};
use crate::interpose::record::{record, session_ctx, CtxRecord};
use crate::log::Level;
use crate::ossl::{
    evp_cipher_ctx_st, evp_mac_ctx_st, hmac_ctx_st, ssl_ctx_st, ssl_st, TicketKeyEvpCb,
    TicketKeyLegacyCb, SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB,
};
use std::ffi::c_void;
use std::os::raw::{c_char, c_int, c_uchar, c_uint};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// What a context's tickets are (`CtxRecord::tickets`).
pub(crate) const NOT_SERVED: u8 = 0;
/// Our callback, the 3.0+ one.
pub(crate) const OURS_EVP: u8 = 1;
/// Our callback, the 1.1.1 one.
pub(crate) const OURS_LEGACY: u8 = 2;
/// The program's own keys or callback.
pub(crate) const PROGRAM: u8 = 3;

/// Log lines said once per context (`CtxRecord::say_once` bits).
const SAID_PROGRAM_WINS: u8 = 1 << 4;
const SAID_FORCED: u8 = 1 << 5;

/// The IV length of AES-256-CBC, the cipher OpenSSL's own tickets use.
const IV_LEN: usize = 16;

/// What a program set on a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramSets {
    /// Its own keys (`SSL_CTX_set_tlsext_ticket_keys`).
    Keys,
    /// Its own callback of OpenSSL 1.1.1's kind (`SSL_CTX_set_tlsext_ticket_key_cb`).
    LegacyCallback,
    /// Its own callback of OpenSSL 3's kind (`SSL_CTX_set_tlsext_ticket_key_evp_cb`).
    EvpCallback,
}

/// Contexts with no record yet whose program set its own ticket keys or callback.
static EARLY: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static ANY_EARLY: AtomicBool = AtomicBool::new(false);
const MAX_EARLY: usize = 4096;

/// A context was just made: a context earlier at the same address is gone.
pub fn forget_address(ctx: *mut ssl_ctx_st) {
    if ANY_EARLY.load(Ordering::Relaxed) {
        let mut early = EARLY.lock().unwrap_or_else(|p| p.into_inner());
        early.retain(|&a| a != ctx as usize);
    }
}

fn set_before_attach(ctx: *mut ssl_ctx_st) -> bool {
    ANY_EARLY.load(Ordering::Relaxed)
        && EARLY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(ctx as usize))
}

/// Installs our ticket key callback on a context just attached, unless its program set
/// its own keys or callback first (and `force=1` is not given). Does nothing unless the
/// cache has shared tickets.
///
/// # Safety
/// `ctx` is a live context with record `rec`.
pub unsafe fn install(ctx: *mut ssl_ctx_st, rec: &CtxRecord) {
    if rec.cache.tickets().is_none() {
        return;
    }
    if set_before_attach(ctx) && !rec.cache.settings().force {
        rec.set_tickets(PROGRAM);
        say_program_wins(ctx, rec);
        return;
    }
    let r = real();
    let state = if let Some(set_evp) = r.set_ticket_evp_cb {
        // SAFETY: ctx is live (caller); OpenSSL's setter with a callback of its type.
        unsafe { set_evp(ctx, Some(evp_key_cb)) };
        OURS_EVP
    } else if let Some(callback_ctrl) = r.ctx_callback_ctrl() {
        // SAFETY: ctx is live (caller); OpenSSL's control takes every callback as
        // `void (*)(void)` and calls it back with the type of this control code.
        unsafe {
            callback_ctrl(
                ctx,
                SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB,
                Some(std::mem::transmute::<TicketKeyLegacyCb, VoidFn>(
                    legacy_key_cb,
                )),
            )
        };
        OURS_LEGACY
    } else {
        return;
    };
    rec.set_tickets(state);
}

/// Takes our callback off `ctx` (it was `state`).
///
/// # Safety
/// `ctx` is a live context.
unsafe fn uninstall(ctx: *mut ssl_ctx_st, state: u8) {
    let r = real();
    match state {
        OURS_EVP => {
            if let Some(set_evp) = r.set_ticket_evp_cb {
                // SAFETY: ctx is live (caller).
                unsafe { set_evp(ctx, None) };
            }
        }
        OURS_LEGACY => {
            if let Some(callback_ctrl) = r.ctx_callback_ctrl() {
                // SAFETY: ctx is live (caller); NULL clears the callback.
                unsafe { callback_ctrl(ctx, SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB, None) };
            }
        }
        _ => {}
    }
}

fn say_program_wins(ctx: *mut ssl_ctx_st, rec: &CtxRecord) {
    if rec.say_once(SAID_PROGRAM_WINS) {
        crate::log!(
            Level::Info,
            "SSL_CTX {ctx:p}: the program set its own ticket keys or ticket callback: its tickets use them, not the shared keys (force=1 in the URL makes the shared keys win)"
        );
    }
}

/// Whether the program's call that sets `what` on `ctx` goes to OpenSSL: false where
/// `force=1` makes the shared keys win over a program's callback (its keys can go through:
/// our callback takes precedence over keys).
///
/// # Safety
/// `ctx` is NULL or a live context.
pub unsafe fn program_may_set(ctx: *mut ssl_ctx_st, what: ProgramSets) -> bool {
    if ctx.is_null() || what == ProgramSets::Keys {
        return true;
    }
    // SAFETY: ctx is live (caller).
    let Some(rec) = (unsafe { record(ctx) }) else {
        return true;
    };
    let ours = matches!(rec.tickets(), OURS_EVP | OURS_LEGACY);
    if ours && rec.cache.settings().force {
        if rec.say_once(SAID_FORCED) {
            crate::log!(
                Level::Info,
                "SSL_CTX {ctx:p}: the program set its own ticket callback; force=1: the shared keys serve instead"
            );
        }
        return false;
    }
    true
}

/// The program set `what` on `ctx` (and OpenSSL took it): from now on its tickets are the
/// program's, unless `force=1` keeps ours.
///
/// # Safety
/// `ctx` is NULL or a live context.
pub unsafe fn program_set(ctx: *mut ssl_ctx_st, what: ProgramSets) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: ctx is live (caller).
    let Some(rec) = (unsafe { record(ctx) }) else {
        let mut early = EARLY.lock().unwrap_or_else(|p| p.into_inner());
        if !early.contains(&(ctx as usize)) {
            // Bounded: a program that makes contexts without end (and frees them) must not
            // grow this; the oldest addresses are the likeliest to be gone.
            if early.len() >= MAX_EARLY {
                early.remove(0);
            }
            early.push(ctx as usize);
        }
        ANY_EARLY.store(true, Ordering::Relaxed);
        return;
    };
    let state = rec.tickets();
    if !matches!(state, OURS_EVP | OURS_LEGACY) {
        if state == NOT_SERVED && rec.cache.tickets().is_some() {
            rec.set_tickets(PROGRAM);
        }
        return;
    }
    if rec.cache.settings().force {
        // Keys under our callback are never used; a callback was not passed on.
        let _ = program_may_set(ctx, ProgramSets::EvpCallback);
        return;
    }
    // The program's callback replaced ours if it is of the same kind; otherwise (keys, or
    // a 1.1.1-style callback under our 3.0 one, which OpenSSL would prefer) ours goes.
    let replaced = matches!(
        (state, what),
        (OURS_EVP, ProgramSets::EvpCallback) | (OURS_LEGACY, ProgramSets::LegacyCallback)
    );
    if !replaced {
        // SAFETY: ctx is live (caller).
        unsafe { uninstall(ctx, state) };
    }
    rec.set_tickets(PROGRAM);
    say_program_wins(ctx, rec);
}

/// OpenSSL 3's `OSSL_PARAM`.
#[repr(C)]
struct OsslParam {
    key: *const c_char,
    data_type: c_uint,
    data: *mut c_void,
    data_size: usize,
    return_size: usize,
}
const OSSL_PARAM_UTF8_STRING: c_uint = 4;
const OSSL_PARAM_OCTET_STRING: c_uint = 5;
const OSSL_PARAM_UNMODIFIED: usize = usize::MAX;

type MacSetParams = unsafe extern "C" fn(*mut evp_mac_ctx_st, *const OsslParam) -> c_int;

/// `EVP_MAC_CTX_set_params` (3.0+; found by name, the library also runs on 1.1.1).
fn mac_set_params() -> Option<MacSetParams> {
    static F: OnceLock<Option<MacSetParams>> = OnceLock::new();
    *F.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"EVP_MAC_CTX_set_params".as_ptr()) };
        // SAFETY: libcrypto's function of that name has this prototype.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, MacSetParams>(p) })
    })
}

/// The MAC context OpenSSL hands the callback.
enum Mac {
    Evp(*mut evp_mac_ctx_st),
    Hmac(*mut hmac_ctx_st),
}

impl Mac {
    /// Keys it with HMAC-SHA256 under `key`.
    ///
    /// # Safety
    /// The context is the live one OpenSSL passed to the callback.
    unsafe fn init(&self, key: &[u8; 32]) -> bool {
        match *self {
            Mac::Evp(ctx) => {
                let Some(set_params) = mac_set_params() else {
                    return false;
                };
                let digest = c"SHA256";
                let params = [
                    OsslParam {
                        key: c"key".as_ptr(),
                        data_type: OSSL_PARAM_OCTET_STRING,
                        data: key.as_ptr() as *mut c_void,
                        data_size: key.len(),
                        return_size: OSSL_PARAM_UNMODIFIED,
                    },
                    OsslParam {
                        key: c"digest".as_ptr(),
                        data_type: OSSL_PARAM_UTF8_STRING,
                        data: digest.as_ptr() as *mut c_void,
                        data_size: digest.count_bytes(),
                        return_size: OSSL_PARAM_UNMODIFIED,
                    },
                    OsslParam {
                        key: std::ptr::null(),
                        data_type: 0,
                        data: std::ptr::null_mut(),
                        data_size: 0,
                        return_size: 0,
                    },
                ];
                // SAFETY: ctx is live (caller); the array ends with the end marker and its
                // data outlives the call (OpenSSL copies the key).
                unsafe { set_params(ctx, params.as_ptr()) == 1 }
            }
            // SAFETY: ctx is live (caller); the key is 32 bytes.
            Mac::Hmac(ctx) => unsafe {
                openssl_sys::HMAC_Init_ex(
                    ctx.cast(),
                    key.as_ptr().cast(),
                    key.len() as c_int,
                    openssl_sys::EVP_sha256(),
                    std::ptr::null_mut(),
                ) == 1
            },
        }
    }
}

/// Sets the cipher context up with `key` and `iv`, to encrypt or decrypt.
///
/// # Safety
/// `cctx` is the live context OpenSSL passed; `iv` is 16 readable bytes.
unsafe fn cipher_init(
    cctx: *mut evp_cipher_ctx_st,
    key: &TicketKey,
    iv: *const c_uchar,
    enc: bool,
) -> bool {
    // SAFETY: as the caller says; the key is 32 bytes (AES-256).
    unsafe {
        let cipher = openssl_sys::EVP_aes_256_cbc();
        if enc {
            openssl_sys::EVP_EncryptInit_ex(
                cctx.cast(),
                cipher,
                std::ptr::null_mut(),
                key.aes.as_ptr(),
                iv,
            ) == 1
        } else {
            openssl_sys::EVP_DecryptInit_ex(
                cctx.cast(),
                cipher,
                std::ptr::null_mut(),
                key.aes.as_ptr(),
                iv,
            ) == 1
        }
    }
}

/// What both callbacks do. Returns what OpenSSL expects: encrypting, 1 (done) or 0 (no
/// ticket); decrypting, 1 (opened), 2 (opened, renew the ticket: TLS 1.3 always, as
/// OpenSSL's own keys do, TLS 1.2 under an older key), 0 (unknown key: a full handshake);
/// -1 on an OpenSSL failure.
///
/// # Safety
/// The arguments are those OpenSSL passes to a ticket key callback.
unsafe fn ticket_key(
    ssl: *mut ssl_st,
    key_name: *mut c_uchar,
    iv: *mut c_uchar,
    cctx: *mut evp_cipher_ctx_st,
    mac: Mac,
    enc: c_int,
) -> c_int {
    if ssl.is_null() || key_name.is_null() || iv.is_null() || cctx.is_null() {
        return -1;
    }
    // SAFETY: ssl is live (OpenSSL); its session context is the one we installed on.
    let ctx = unsafe { session_ctx(ssl) };
    // SAFETY: as above.
    let Some(tickets) = (unsafe { record(ctx) }).and_then(|r| r.cache.tickets()) else {
        return 0;
    };
    let now = crate::clock::now();
    if enc == 1 {
        tickets
            .with_encryptor(now, |key| {
                // SAFETY: OpenSSL passes a 16-byte name buffer and an IV buffer of
                // EVP_MAX_IV_LENGTH (16) bytes, and live contexts.
                unsafe {
                    std::ptr::copy_nonoverlapping(key.name.as_ptr(), key_name, NAME_LEN);
                    if openssl_sys::RAND_bytes(iv, IV_LEN as c_int) != 1
                        || !cipher_init(cctx, key, iv, true)
                        || !mac.init(&key.hmac)
                    {
                        return -1;
                    }
                }
                1
            })
            .unwrap_or(0)
    } else {
        // SAFETY: OpenSSL passes the ticket's 16-byte key name.
        let name = unsafe { &*(key_name as *const [u8; NAME_LEN]) };
        // OpenSSL's own keys renew every TLS 1.3 ticket they open (a resumed TLS 1.3
        // handshake then sends a new one, for clients that use each ticket once, as RFC 8446
        // C.4 advises); so do the shared keys. TLS 1.2: only tickets under an older key.
        // SAFETY: ssl is live; the version is negotiated before tickets are opened.
        let tls13 = unsafe { openssl_sys::SSL_version(ssl.cast()) } == openssl_sys::TLS1_3_VERSION;
        tickets
            .with_decryptor(name, now, |key, renew| {
                // SAFETY: iv holds the ticket's 16-byte IV; the contexts are live.
                unsafe {
                    if !mac.init(&key.hmac) || !cipher_init(cctx, key, iv, false) {
                        return -1;
                    }
                }
                if renew || tls13 {
                    2
                } else {
                    1
                }
            })
            .unwrap_or(0)
    }
}

/// The ticket key callback of OpenSSL 3 (`SSL_CTX_set_tlsext_ticket_key_evp_cb`).
unsafe extern "C" fn evp_key_cb(
    ssl: *mut ssl_st,
    key_name: *mut c_uchar,
    iv: *mut c_uchar,
    cctx: *mut evp_cipher_ctx_st,
    hctx: *mut evp_mac_ctx_st,
    enc: c_int,
) -> c_int {
    if hctx.is_null() {
        return -1;
    }
    // SAFETY: OpenSSL's arguments, as it passes them to this callback.
    guard(-1, || unsafe {
        ticket_key(ssl, key_name, iv, cctx, Mac::Evp(hctx), enc)
    })
}

/// The ticket key callback of OpenSSL 1.1.1 (`SSL_CTX_set_tlsext_ticket_key_cb`).
unsafe extern "C" fn legacy_key_cb(
    ssl: *mut ssl_st,
    key_name: *mut c_uchar,
    iv: *mut c_uchar,
    cctx: *mut evp_cipher_ctx_st,
    hctx: *mut hmac_ctx_st,
    enc: c_int,
) -> c_int {
    if hctx.is_null() {
        return -1;
    }
    // SAFETY: OpenSSL's arguments, as it passes them to this callback.
    guard(-1, || unsafe {
        ticket_key(ssl, key_name, iv, cctx, Mac::Hmac(hctx), enc)
    })
}

const _: TicketKeyEvpCb = evp_key_cb;
