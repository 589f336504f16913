//! TLS to Redis (`rediss://`, `tls=1`), over the libssl the process already runs with: no
//! second TLS stack in the servers' processes, and the system's OpenSSL configuration and
//! CA store apply.
//!
//! [`TlsConnection`] is a Redis connection over [`stream::TlsStream`]: commands are sent
//! as packed, replies read with the `redis` crate's parser, so the rest of the store uses
//! it as it uses the crate's own connections (as a single server's connection, and as the
//! crate's cluster connection's node connection, through `redis::cluster::Connect`).
//!
//! Verification is never off: a certificate that does not verify is an error naming the
//! reason (wrong CA, wrong name, expired), never a fallback to plain TCP.

mod context;
mod errors;
mod gate;
mod stream;

pub(crate) use context::Context;
use redis::{ConnectionInfo, ConnectionLike, ErrorKind, RedisError, RedisResult, Value};
use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream::{ConnectError, TlsStream};

/// How connections are made: the context, and the name certificates must be for (None: the
/// host each connection goes to).
pub(crate) struct Tls {
    context: Context,
    name: Option<String>,
}

impl Tls {
    pub(crate) fn new(cfg: &crate::config::RedisTls) -> Result<Tls, crate::error::Error> {
        Ok(Tls {
            context: Context::new(cfg)?,
            name: cfg.name.clone(),
        })
    }
}

/// A Redis connection over TLS.
pub(crate) struct TlsConnection {
    stream: TlsStream,
    parser: redis::Parser,
    db: i64,
    /// False once a read or write failed: the connection is out of step, never reused.
    open: bool,
}

fn connect_error(host: &str, port: u16, e: ConnectError) -> RedisError {
    let text = format!("TLS to {host}:{port}: {e}");
    match e {
        ConnectError::TimedOut => {
            RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, text))
        }
        ConnectError::Io(io) => RedisError::from(std::io::Error::new(io.kind(), text)),
        // Not an io error: the breaker counts it, and a call does not try again at once.
        ConnectError::Refused { .. } | ConnectError::Handshake(_) => {
            RedisError::from((ErrorKind::ClientError, "TLS", text))
        }
    }
}

impl TlsConnection {
    /// Connects to `info`'s host with `tls`, then authenticates and selects the database
    /// as `info` says, all within `timeout`.
    pub(crate) fn connect(
        tls: &Tls,
        info: &ConnectionInfo,
        timeout: Duration,
    ) -> RedisResult<TlsConnection> {
        let deadline = Instant::now() + timeout;
        let (host, port) = match &info.addr {
            redis::ConnectionAddr::Tcp(h, p) => (h.as_str(), *p),
            _ => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "TLS is over TCP only",
                )))
            }
        };
        let name = tls.name.as_deref().unwrap_or(host);
        let stream = TlsStream::connect(&tls.context, host, port, name, deadline)
            .map_err(|e| connect_error(host, port, e))?;
        let mut conn = TlsConnection {
            stream,
            parser: redis::Parser::new(),
            db: info.redis.db,
            open: true,
        };
        let left = || {
            let d = deadline.saturating_duration_since(Instant::now());
            if d < Duration::from_micros(100) {
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "time budget spent",
                )))
            } else {
                Ok(d)
            }
        };
        if let Some(pass) = &info.redis.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &info.redis.username {
                auth.arg(user);
            }
            auth.arg(pass);
            conn.stream.set_timeouts(left()?)?;
            conn.req_packed_command(&auth.get_packed_command())?
                .extract_error()
                .map_err(|e| {
                    if matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "ERR")) {
                        RedisError::from((
                            ErrorKind::AuthenticationFailed,
                            "Password authentication failed",
                            e.code().unwrap_or_default().to_string(),
                        ))
                    } else {
                        e
                    }
                })?;
        }
        if info.redis.db != 0 {
            conn.stream.set_timeouts(left()?)?;
            conn.req_packed_command(&redis::cmd("SELECT").arg(info.redis.db).get_packed_command())?
                .extract_error()?;
        }
        Ok(conn)
    }

    pub(crate) fn set_read_timeout(&self, d: Option<Duration>) -> RedisResult<()> {
        Ok(self.stream.set_read_timeout(d)?)
    }

    pub(crate) fn set_write_timeout(&self, d: Option<Duration>) -> RedisResult<()> {
        Ok(self.stream.set_write_timeout(d)?)
    }

    fn send(&mut self, cmd: &[u8]) -> RedisResult<()> {
        if !self.open {
            return Err(closed());
        }
        self.stream.write_all(cmd).map_err(|e| {
            self.open = false;
            RedisError::from(e)
        })
    }

    fn receive(&mut self) -> RedisResult<Value> {
        if !self.open {
            return Err(closed());
        }
        self.parser.parse_value(&mut self.stream).inspect_err(|_| {
            self.open = false;
        })
    }
}

fn closed() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the connection failed earlier",
    ))
}

impl ConnectionLike for TlsConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        self.receive()
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.send(cmd)?;
        let mut out = Vec::with_capacity(count);
        for i in 0..offset + count {
            let v = self.receive()?;
            if i >= offset {
                out.push(v);
            }
        }
        Ok(out)
    }

    fn get_db(&self) -> i64 {
        self.db
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.open
    }
}

thread_local! {
    /// The TLS settings of the cluster connection this thread is calling into (see
    /// [`with_cluster_tls`]): the crate makes node connections through
    /// `redis::cluster::Connect::connect`, which is given only the node's address.
    static CLUSTER_TLS: RefCell<Option<Arc<Tls>>> = const { RefCell::new(None) };
}

/// Runs `f` (a call into a cluster connection over TLS) with `tls` as the settings of the
/// node connections it makes. The crate's cluster connection is synchronous: it connects
/// to a node on the thread that called it, inside the call.
pub(crate) fn with_cluster_tls<R>(tls: &Arc<Tls>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Tls>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CLUSTER_TLS.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CLUSTER_TLS.with(|c| c.borrow_mut().replace(tls.clone()));
    let _restore = Restore(prev);
    f()
}

impl redis::cluster::Connect for TlsConnection {
    fn connect<T>(info: T, timeout: Option<Duration>) -> RedisResult<Self>
    where
        T: redis::IntoConnectionInfo,
    {
        let info = info.into_connection_info()?;
        let Some(tls) = CLUSTER_TLS.with(|c| c.borrow().clone()) else {
            return Err(RedisError::from((
                ErrorKind::ClientError,
                "a TLS cluster connection was used outside with_cluster_tls",
            )));
        };
        TlsConnection::connect(&tls, &info, timeout.unwrap_or(Duration::from_secs(1)))
    }

    fn send_packed_command(&mut self, cmd: &[u8]) -> RedisResult<()> {
        self.send(cmd)
    }

    fn set_write_timeout(&self, dur: Option<Duration>) -> RedisResult<()> {
        TlsConnection::set_write_timeout(self, dur)
    }

    fn set_read_timeout(&self, dur: Option<Duration>) -> RedisResult<()> {
        TlsConnection::set_read_timeout(self, dur)
    }

    fn recv_response(&mut self) -> RedisResult<Value> {
        self.receive()
    }
}

#[cfg(test)]
mod tests;
