//! One TLS connection over TCP, made with the process's libssl: the handshake within a
//! deadline, the server's certificate verified, then `Read` and `Write` whose every call is
//! bounded by the socket's timeouts.
//!
//! These calls run on the server's own threads (a lookup runs inside a handshake of the
//! server's), where OpenSSL's per-thread error queue is the server's too: every call here
//! marks the queue first and drops, when it returns, exactly what it added
//! ([`ErrorQueueMark`]), so a server never finds our errors in its queue.

use super::context::Context;
use super::errors::{queued_reasons, ErrorQueueMark};
use super::gate;
use crate::ossl::{SSL_set_fd, X509_VERIFY_PARAM_set1_ip_asc};
use openssl_sys as sys;
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

/// A TLS connection: the `SSL` and the socket under it (closed after the `SSL` is freed).
pub(crate) struct TlsStream {
    ssl: *mut sys::SSL,
    sock: TcpStream,
}

// SAFETY: an `SSL` may be used from any thread, one at a time; `&mut self` gives that.
unsafe impl Send for TlsStream {}

impl Drop for TlsStream {
    fn drop(&mut self) {
        gate::remove_socket(self.sock.as_raw_fd());
        // An exiting process leaves the `SSL` to the exit (OpenSSL may be cleaning up).
        let Some(_pass) = gate::enter() else {
            return;
        };
        let _mark = ErrorQueueMark::new();
        // SAFETY: ssl is ours, live, and used by nothing else. No close_notify is sent: it
        // could wait on a stalled server; Redis takes the socket's close as the end.
        unsafe { sys::SSL_free(self.ssl) };
    }
}

fn exiting() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "TLS: the process is exiting")
}

/// Why a connection could not be made; `Display` says it for people.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The TCP connection, the name lookup, or a socket call failed.
    Io(io::Error),
    /// The deadline passed first.
    TimedOut,
    /// The server's certificate was refused: OpenSSL's verification result.
    Refused { reason: String, code: i64 },
    /// The handshake failed otherwise (not a TLS port, the server refused our certificate,
    /// no protocol in common, …).
    Handshake(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::TimedOut => f.write_str("the TLS handshake timed out"),
            ConnectError::Refused { reason, code } => {
                let hint = match *code {
                    HOSTNAME_MISMATCH | IP_ADDRESS_MISMATCH => " (check tls_name)",
                    CERT_HAS_EXPIRED | CERT_NOT_YET_VALID => {
                        " (check the server's certificate dates and this machine's clock)"
                    }
                    UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                    | SELF_SIGNED_CERT_IN_CHAIN
                    | DEPTH_ZERO_SELF_SIGNED_CERT => " (check tls_ca_file)",
                    _ => "",
                };
                write!(f, "the server's certificate was refused: {reason}{hint}")
            }
            ConnectError::Handshake(reason) => {
                write!(f, "the TLS handshake failed: {reason}")?;
                if reason.contains("wrong version number") || reason.contains("packet length") {
                    f.write_str(" (is this the server's TLS port?)")?;
                }
                Ok(())
            }
        }
    }
}

// X509_V_ERR_* codes (the same from 1.1.1 to 4.0) that get a hint.
const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i64 = 20;
const DEPTH_ZERO_SELF_SIGNED_CERT: i64 = 18;
const SELF_SIGNED_CERT_IN_CHAIN: i64 = 19;
const CERT_NOT_YET_VALID: i64 = 9;
const CERT_HAS_EXPIRED: i64 = 10;
const HOSTNAME_MISMATCH: i64 = 62;
const IP_ADDRESS_MISMATCH: i64 = 64;

/// Time left before `deadline`, or `TimedOut`.
fn left(deadline: Instant) -> Result<Duration, ConnectError> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d < Duration::from_micros(100) {
        return Err(ConnectError::TimedOut);
    }
    Ok(d)
}

impl TlsStream {
    /// Connects to `host:port` and makes a TLS handshake with `ctx`, verifying that the
    /// server's certificate is for `name` (a host name: also sent as SNI; an IP address:
    /// matched against the certificate's IP addresses), all before `deadline`.
    pub(crate) fn connect(
        ctx: &Context,
        host: &str,
        port: u16,
        name: &str,
        deadline: Instant,
    ) -> Result<TlsStream, ConnectError> {
        let sock = tcp_connect(host, port, deadline)?;
        let _ = sock.set_nodelay(true);
        let _pass = gate::enter().ok_or_else(|| ConnectError::Io(exiting()))?;
        let mark = ErrorQueueMark::new();
        // SAFETY: ctx is a live context (Context's invariant).
        let ssl = unsafe { sys::SSL_new(ctx.as_ptr()) };
        if ssl.is_null() {
            return Err(ConnectError::Handshake(format!(
                "SSL_new failed: {}",
                queued_reasons(&mark)
            )));
        }
        // Owned from here: freed by Drop on every path.
        gate::add_socket(sock.as_raw_fd());
        let stream = TlsStream { ssl, sock };
        stream
            .verify_name(name)
            .map_err(|e| ConnectError::Handshake(format!("{e}: {}", queued_reasons(&mark))))?;
        // SAFETY: ssl is live; the socket outlives it (dropped after SSL_free).
        if unsafe { SSL_set_fd(stream.ssl, stream.sock.as_raw_fd()) } != 1 {
            return Err(ConnectError::Handshake(format!(
                "SSL_set_fd failed: {}",
                queued_reasons(&mark)
            )));
        }
        loop {
            let d = left(deadline)?;
            stream.set_timeouts(d).map_err(ConnectError::Io)?;
            // SAFETY: ssl is live, with its socket set.
            let r = unsafe { sys::SSL_connect(stream.ssl) };
            if r == 1 {
                break;
            }
            // SAFETY: ssl is live; r is what SSL_connect returned.
            let code = unsafe { sys::SSL_get_error(stream.ssl, r) };
            // SAFETY: ssl is live.
            let verify = unsafe { sys::SSL_get_verify_result(stream.ssl) } as i64;
            if verify != 0 {
                // SAFETY: a static string for any code.
                let reason =
                    unsafe { CStr::from_ptr(sys::X509_verify_cert_error_string(verify as _)) }
                        .to_string_lossy()
                        .into_owned();
                return Err(ConnectError::Refused {
                    reason,
                    code: verify,
                });
            }
            match code {
                // The socket timed out: the deadline passed (or nearly).
                sys::SSL_ERROR_WANT_READ | sys::SSL_ERROR_WANT_WRITE => {
                    if left(deadline).is_err() {
                        return Err(ConnectError::TimedOut);
                    }
                }
                sys::SSL_ERROR_SYSCALL => {
                    let os = io::Error::last_os_error();
                    let reasons = queued_reasons(&mark);
                    return Err(
                        if matches!(
                            os.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) {
                            ConnectError::TimedOut
                        } else if !reasons.is_empty() {
                            ConnectError::Handshake(reasons)
                        } else if os.raw_os_error().unwrap_or(0) == 0 {
                            ConnectError::Handshake(
                                "the server closed the connection during the handshake".into(),
                            )
                        } else {
                            ConnectError::Io(os)
                        },
                    );
                }
                _ => {
                    let reasons = queued_reasons(&mark);
                    return Err(ConnectError::Handshake(if reasons.is_empty() {
                        format!("SSL_connect error {code}")
                    } else {
                        reasons
                    }));
                }
            }
        }
        Ok(stream)
    }

    /// Tells OpenSSL which name the certificate must be for, and sends it as SNI when it
    /// is a host name (RFC 6066 forbids addresses there).
    fn verify_name(&self, name: &str) -> Result<(), &'static str> {
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let c = CString::new(bare).map_err(|_| "a NUL byte in the name")?;
        // SAFETY: ssl is live; the parameters belong to it.
        let param = unsafe { sys::SSL_get0_param(self.ssl) };
        if bare.parse::<IpAddr>().is_ok() {
            // SAFETY: param is live, c a NUL-terminated string (copied by OpenSSL).
            if unsafe { X509_VERIFY_PARAM_set1_ip_asc(param, c.as_ptr()) } != 1 {
                return Err("X509_VERIFY_PARAM_set1_ip_asc failed");
            }
        } else {
            // SAFETY: as above; 0 length means "NUL-terminated".
            if unsafe { sys::X509_VERIFY_PARAM_set1_host(param, c.as_ptr(), 0) } != 1 {
                return Err("X509_VERIFY_PARAM_set1_host failed");
            }
            // SAFETY: ssl is live; OpenSSL copies the name.
            if unsafe { sys::SSL_set_tlsext_host_name(self.ssl, c.as_ptr() as *mut _) } != 1 {
                return Err("SSL_set_tlsext_host_name failed");
            }
        }
        Ok(())
    }

    /// Sets the socket's read and write timeouts (each socket operation of a later read or
    /// write gives up after `d`).
    pub(crate) fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        self.sock.set_read_timeout(Some(d))?;
        self.sock.set_write_timeout(Some(d))
    }

    pub(crate) fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(d)
    }

    pub(crate) fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(d)
    }

    /// The io::Error for an SSL_read or SSL_write that returned `r` <= 0.
    fn failure(&self, r: c_int, mark: &ErrorQueueMark) -> io::Error {
        // SAFETY: ssl is live; r is what the call returned.
        let code = unsafe { sys::SSL_get_error(self.ssl, r) };
        match code {
            sys::SSL_ERROR_WANT_READ | sys::SSL_ERROR_WANT_WRITE => {
                io::Error::new(io::ErrorKind::TimedOut, "TLS: the socket timed out")
            }
            sys::SSL_ERROR_ZERO_RETURN => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "TLS: the server closed the connection",
            ),
            sys::SSL_ERROR_SYSCALL => {
                let os = io::Error::last_os_error();
                match os.raw_os_error() {
                    Some(0) | None => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS: the server closed the connection",
                    ),
                    Some(libc::EAGAIN) => {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS: the socket timed out")
                    }
                    _ => os,
                }
            }
            _ => io::Error::other(format!("TLS: {}", queued_reasons(mark))),
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let _pass = gate::enter().ok_or_else(exiting)?;
        let mark = ErrorQueueMark::new();
        let n = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: ssl is live; buf has at least n writable bytes.
        let r = unsafe { sys::SSL_read(self.ssl, buf.as_mut_ptr().cast::<c_void>(), n) };
        if r > 0 {
            return Ok(r as usize);
        }
        Err(self.failure(r, &mark))
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let _pass = gate::enter().ok_or_else(exiting)?;
        let mark = ErrorQueueMark::new();
        let n = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: ssl is live; buf has at least n readable bytes.
        let r = unsafe { sys::SSL_write(self.ssl, buf.as_ptr().cast::<c_void>(), n) };
        if r > 0 {
            return Ok(r as usize);
        }
        Err(self.failure(r, &mark))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TCP connection to `host:port` (each address the name resolves to, in turn) before
/// `deadline`. The name lookup itself is the system's and is not bounded by the deadline,
/// as with plain connections.
fn tcp_connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, ConnectError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs = (bare, port).to_socket_addrs().map_err(ConnectError::Io)?;
    let mut last = None;
    for addr in addrs {
        let d = left(deadline)?;
        match TcpStream::connect_timeout(&addr, d) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(ConnectError::TimedOut),
            Err(e) => last = Some(e),
        }
    }
    Err(ConnectError::Io(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no address found for '{bare}'"),
        )
    })))
}
