//! A connection to one Redis node, plain or TLS as the URL says: what the operator's
//! commands (`admin`) and the Sentinel discovery (`sentinel`) use, and what a Sentinel
//! connector's connections are.

use super::tls::{Tls, TlsConnection};
use redis::{
    ConnectionAddr, ConnectionInfo, ConnectionLike, RedisConnectionInfo, RedisResult, Value,
};
use std::time::Duration;

pub(crate) enum NodeConn {
    Plain(redis::Connection),
    Tls(TlsConnection),
}

impl NodeConn {
    /// Sets the socket's read and write timeouts.
    pub(crate) fn set_timeouts(&self, d: Duration) -> RedisResult<()> {
        match self {
            NodeConn::Plain(c) => {
                c.set_read_timeout(Some(d))?;
                c.set_write_timeout(Some(d))
            }
            NodeConn::Tls(c) => {
                c.set_read_timeout(Some(d))?;
                c.set_write_timeout(Some(d))
            }
        }
    }
}

/// Connects to `info` (over TLS when `tls` is given) and logs in as it says, giving up
/// after `timeout`; the connection's socket operations then wait at most `timeout`.
pub(crate) fn connect(
    info: &ConnectionInfo,
    tls: Option<&Tls>,
    timeout: Duration,
) -> RedisResult<NodeConn> {
    let c = match tls {
        None => NodeConn::Plain(
            redis::Client::open(info.clone())?.get_connection_with_timeout(timeout)?,
        ),
        Some(tls) => NodeConn::Tls(TlsConnection::connect(tls, info, timeout)?),
    };
    c.set_timeouts(timeout)?;
    Ok(c)
}

/// [`connect`] to `host:port` with `login` (password, database).
pub(crate) fn open(
    host: &str,
    port: u16,
    login: &RedisConnectionInfo,
    tls: Option<&Tls>,
    timeout: Duration,
) -> RedisResult<NodeConn> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host.to_string(), port),
        redis: login.clone(),
    };
    connect(&info, tls, timeout)
}

impl ConnectionLike for NodeConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            NodeConn::Plain(c) => c.req_packed_command(cmd),
            NodeConn::Tls(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            NodeConn::Plain(c) => c.req_packed_commands(cmd, offset, count),
            NodeConn::Tls(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            NodeConn::Plain(c) => c.get_db(),
            NodeConn::Tls(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            NodeConn::Plain(c) => c.check_connection(),
            NodeConn::Tls(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            NodeConn::Plain(c) => c.is_open(),
            NodeConn::Tls(c) => c.is_open(),
        }
    }
}
