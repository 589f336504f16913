//! The OpenSSL client context every TLS connection to Redis is made from: TLS 1.2 or
//! later, the server's certificate always verified (against `tls_ca_file`'s CAs, else the
//! system's store), and the client certificate for mutual TLS. Made once, when the cache
//! is opened, so that a bad file is an error then (naming it) and the files are read with
//! the privileges of that moment (a server that opens the cache before dropping them can
//! keep its key readable by root only).
//!
//! The context is made with `TLS_client_method()`: the library's own `SSL_CTX_new` (in
//! the C library, which interposes it) leaves client-only contexts as OpenSSL makes them,
//! so the cache never attaches to its own connections.

use super::errors::{queued_reasons, ErrorQueueMark};
use super::gate;
use crate::config::RedisTls;
use crate::error::{Error, ErrorKind};
use openssl_sys as sys;
use std::ffi::CString;
use std::os::raw::c_int;

/// A client `SSL_CTX`, freed when dropped. Immutable once made: `SSL_new` may be called on
/// it from any thread, and in processes forked after it was made.
pub(crate) struct Context(*mut sys::SSL_CTX);

// SAFETY: the context is never changed after `Context::new`; OpenSSL allows concurrent
// SSL_new on one context (its reference count is atomic).
unsafe impl Send for Context {}
// SAFETY: as above.
unsafe impl Sync for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // An exiting process leaves it to the exit (OpenSSL may be cleaning up).
        let Some(_pass) = gate::enter() else {
            return;
        };
        // SAFETY: ours; connections made from it hold their own references.
        unsafe { sys::SSL_CTX_free(self.0) };
    }
}

fn bad(kind: ErrorKind, msg: String) -> Error {
    Error::new(kind, msg)
}

fn c_path(param: &str, path: &str) -> Result<CString, Error> {
    CString::new(path).map_err(|_| bad(ErrorKind::Url, format!("{param} '{path}': a NUL byte")))
}

/// The reason a file could not be used, for `param`: an unreadable file's own error
/// (missing, no permission) else what OpenSSL said.
fn file_error(param: &str, path: &str, mark: &ErrorQueueMark) -> Error {
    if let Err(e) = std::fs::File::open(path) {
        let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
            ErrorKind::Permission
        } else {
            ErrorKind::Url
        };
        return bad(kind, format!("{param} '{path}': {e}"));
    }
    let why = queued_reasons(mark);
    let why = if why.is_empty() {
        "not usable".to_string()
    } else {
        why
    };
    bad(ErrorKind::Url, format!("{param} '{path}': {why}"))
}

impl Context {
    /// Makes the context of `cfg`, reading its files now.
    pub(crate) fn new(cfg: &RedisTls) -> Result<Context, Error> {
        let Some(_pass) = gate::enter() else {
            return Err(bad(
                ErrorKind::State,
                "redis TLS: the process is exiting".into(),
            ));
        };
        let mark = ErrorQueueMark::new();
        // SAFETY: a static method table.
        let ctx = unsafe { sys::SSL_CTX_new(sys::TLS_client_method()) };
        // OpenSSL is initialised now (its exit handler registered): ours comes after, so
        // it runs before OpenSSL's cleanup.
        gate::register_exit_handler();
        if ctx.is_null() {
            return Err(bad(
                ErrorKind::Internal,
                format!("redis TLS: SSL_CTX_new failed: {}", queued_reasons(&mark)),
            ));
        }
        // Owned from here: freed on every path.
        let ctx = Context(ctx);
        // SAFETY: ctx is live and ours; every call below only configures it.
        unsafe {
            if sys::SSL_CTX_set_min_proto_version(ctx.0, sys::TLS1_2_VERSION as _) != 1 {
                return Err(bad(
                    ErrorKind::Internal,
                    format!("redis TLS: no TLS 1.2: {}", queued_reasons(&mark)),
                ));
            }
            sys::SSL_CTX_set_verify(ctx.0, sys::SSL_VERIFY_PEER, None);
            match &cfg.ca_file {
                Some(path) => {
                    let p = c_path("tls_ca_file", path)?;
                    if sys::SSL_CTX_load_verify_locations(ctx.0, p.as_ptr(), std::ptr::null()) != 1
                    {
                        return Err(file_error("tls_ca_file", path, &mark));
                    }
                }
                None => {
                    if sys::SSL_CTX_set_default_verify_paths(ctx.0) != 1 {
                        return Err(bad(
                            ErrorKind::Unavailable,
                            format!(
                                "redis TLS: the system's CA store cannot be used ({}): give \
                                 tls_ca_file",
                                queued_reasons(&mark)
                            ),
                        ));
                    }
                }
            }
        }
        if let Some((cert, key)) = &cfg.client_cert {
            ctx.use_client_cert(cert, key, &mark)?;
        }
        Ok(ctx)
    }

    /// Loads the certificate chain at `cert` and the private key at `key` (a private file,
    /// as `key_file` must be; its bytes are wiped once OpenSSL holds the key).
    fn use_client_cert(&self, cert: &str, key: &str, mark: &ErrorQueueMark) -> Result<(), Error> {
        let p = c_path("tls_cert_file", cert)?;
        // SAFETY: ctx is live and ours; p is NUL-terminated.
        if unsafe { sys::SSL_CTX_use_certificate_chain_file(self.0, p.as_ptr()) } != 1 {
            return Err(file_error("tls_cert_file", cert, mark));
        }
        let pem = crate::secret::read_private_file(key, "tls_key_file")?;
        let len = c_int::try_from(pem.len())
            .map_err(|_| bad(ErrorKind::Url, format!("tls_key_file '{key}': too large")))?;
        // SAFETY: a read-only memory BIO over pem, which outlives it (freed below).
        let bio = unsafe { sys::BIO_new_mem_buf(pem.as_slice().as_ptr().cast(), len) };
        if bio.is_null() {
            return Err(bad(
                ErrorKind::Internal,
                format!("tls_key_file '{key}': {}", queued_reasons(mark)),
            ));
        }
        // SAFETY: bio is live; no password callback (an encrypted key fails).
        let pkey = unsafe {
            sys::PEM_read_bio_PrivateKey(bio, std::ptr::null_mut(), None, std::ptr::null_mut())
        };
        // SAFETY: bio is ours, done with.
        unsafe { sys::BIO_free_all(bio) };
        if pkey.is_null() {
            return Err(bad(
                ErrorKind::Url,
                format!(
                    "tls_key_file '{key}': not a PEM private key without a passphrase ({})",
                    queued_reasons(mark)
                ),
            ));
        }
        // SAFETY: ctx and pkey are live; the context takes its own reference.
        let used = unsafe { sys::SSL_CTX_use_PrivateKey(self.0, pkey) };
        // SAFETY: our reference, done with.
        unsafe { sys::EVP_PKEY_free(pkey) };
        // SAFETY: ctx is live.
        if used != 1 || unsafe { sys::SSL_CTX_check_private_key(self.0) } != 1 {
            return Err(bad(
                ErrorKind::Url,
                format!(
                    "tls_key_file '{key}' is not the key of tls_cert_file '{cert}' ({})",
                    queued_reasons(mark)
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::SSL_CTX {
        self.0
    }
}
