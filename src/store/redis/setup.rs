//! Opening a `redis` cache: the settings checked, the password read, the connector built.
//! Nothing here connects.

use super::conn::Connector;
use super::tls::Tls;
use crate::config::{Password, RedisConfig, RedisTarget};
use crate::error::{Error, ErrorKind};
use crate::secret::wipe;
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisConnectionInfo};
use std::sync::Arc;
use std::time::Duration;

/// A password, wiped when dropped and never printed.
pub(crate) struct Secret(String);

impl Secret {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub fn for_test(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // SAFETY: zero bytes are valid UTF-8.
        wipe(unsafe { self.0.as_bytes_mut() });
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

fn url_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Url, msg)
}

/// The password a configuration points to, read now: the URL's, the first line of
/// `password_file` (which must be a regular file of this user's or root's, with no
/// permissions for group or others, like an ssh key), or the variable `password_env`.
/// Messages name the source, never the password.
pub(crate) fn read_password(p: &Password) -> Result<Option<Secret>, Error> {
    let secret = match p {
        Password::None => return Ok(None),
        Password::Inline(s) => {
            if s.is_empty() {
                return Err(url_error("the password in the URL is empty"));
            }
            Secret(s.clone())
        }
        Password::Env(name) => {
            if crate::env::privileged() {
                return Err(url_error(format!(
                    "password_env: refused in a program running with privileges its user does \
                     not have (setuid, setgid or file capabilities), whose environment that user \
                     controls: use password_file (the variable was '{name}')"
                )));
            }
            let Some(v) = crate::env::var_os(name) else {
                return Err(url_error(format!(
                    "password_env: the environment variable '{name}' is not set"
                )));
            };
            let v = v.into_string().map_err(|raw| {
                wipe(&mut std::os::unix::ffi::OsStringExt::into_vec(raw));
                url_error(format!(
                    "password_env: the environment variable '{name}' is not UTF-8 text"
                ))
            })?;
            let v = Secret(v);
            if v.0.is_empty() {
                return Err(url_error(format!(
                    "password_env: the environment variable '{name}' is empty"
                )));
            }
            v
        }
        Password::File(path) => read_password_file(path)?,
    };
    Ok(Some(secret))
}

fn read_password_file(path: &str) -> Result<Secret, Error> {
    let what = |e: &dyn std::fmt::Display| url_error(format!("password_file '{path}': {e}"));
    let text = crate::secret::read_private_file(path, "password_file")?;
    let bytes = text.as_slice();
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(what(&"the first line is empty"));
    }
    let line = std::str::from_utf8(line).map_err(|_| what(&"not UTF-8 text"))?;
    Ok(Secret(line.to_string()))
}

/// How long the background connects and writes may take: longer than a lookup's budget
/// (nobody waits for them), but bounded.
pub(crate) fn background_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}

/// Checks the settings and builds the connector (no connection is made).
pub(crate) fn connector(cfg: &RedisConfig, password: Option<&Secret>) -> Result<Connector, Error> {
    if cfg.timeout_ms == 0 {
        return Err(url_error("redis: timeout must be at least 1 ms"));
    }
    if cfg.queue == 0 {
        return Err(url_error("redis: queue must hold at least 1 write"));
    }
    if cfg.user.is_some() && password.is_none() {
        return Err(url_error(
            "redis: a user needs a password (in the URL, password_file= or password_env=)",
        ));
    }
    let timeout = Duration::from_millis(u64::from(cfg.timeout_ms));
    let redis_info = |db: u32| RedisConnectionInfo {
        db: i64::from(db),
        username: cfg.user.clone(),
        password: password.map(|p| p.as_str().to_string()),
        protocol: ProtocolVersion::RESP2,
    };
    let host_of = |host: &str| -> Result<String, Error> {
        let h = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if h.is_empty() {
            return Err(url_error("redis: the host is empty"));
        }
        Ok(h.to_string())
    };
    let bad =
        |e: redis::RedisError| url_error(super::conn::describe(&e, password.map(Secret::as_str)));
    // The TLS context is made now, its files read now: a bad one is an error at open.
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(Tls::new(t)?)),
        None => None,
    };
    match &cfg.target {
        RedisTarget::Tcp { host, port } => {
            if *port == 0 {
                return Err(url_error("redis: port 0 is not a port"));
            }
            let info = ConnectionInfo {
                addr: ConnectionAddr::Tcp(host_of(host)?, *port),
                redis: redis_info(cfg.db),
            };
            match tls {
                Some(tls) => Ok(Connector::SingleTls { info, tls }),
                None => Ok(Connector::Single(redis::Client::open(info).map_err(bad)?)),
            }
        }
        RedisTarget::Unix { path } => {
            if tls.is_some() {
                return Err(url_error("redis+unix: TLS is for TCP connections"));
            }
            if path.is_empty() {
                return Err(url_error("redis+unix: the socket path is empty"));
            }
            let info = ConnectionInfo {
                addr: ConnectionAddr::Unix(path.into()),
                redis: redis_info(cfg.db),
            };
            Ok(Connector::Single(redis::Client::open(info).map_err(bad)?))
        }
        RedisTarget::Cluster { nodes } => {
            if cfg.db != 0 {
                return Err(url_error(format!(
                    "redis+cluster: a cluster has only database 0, not {}",
                    cfg.db
                )));
            }
            if nodes.is_empty() {
                return Err(url_error("redis+cluster: no nodes given"));
            }
            let mut infos = Vec::with_capacity(nodes.len());
            for (host, port) in nodes {
                if *port == 0 {
                    return Err(url_error("redis+cluster: port 0 is not a port"));
                }
                infos.push(ConnectionInfo {
                    addr: ConnectionAddr::Tcp(host_of(host)?, *port),
                    redis: redis_info(0),
                });
            }
            // Every connection the cluster client opens, also in the middle of a lookup
            // (after a redirection), waits at most a lookup's budget; one redirection is
            // followed, not more.
            let client = redis::cluster::ClusterClientBuilder::new(infos.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .min_retry_wait(1)
                .max_retry_wait((u64::from(cfg.timeout_ms) / 2).max(1))
                .build()
                .map_err(bad)?;
            Ok(Connector::Cluster {
                client,
                seeds: infos,
                tls,
            })
        }
        RedisTarget::Sentinel {
            sentinels,
            master,
            password: sentinel_password,
        } => {
            if sentinels.is_empty() {
                return Err(url_error("redis+sentinel: no Sentinels given"));
            }
            if master.is_empty() {
                return Err(url_error("redis+sentinel: no master name given"));
            }
            let mut nodes = Vec::with_capacity(sentinels.len());
            for (host, port) in sentinels {
                if *port == 0 {
                    return Err(url_error("redis+sentinel: port 0 is not a port"));
                }
                nodes.push((host_of(host)?, *port));
            }
            let sentinel_secret = read_password(sentinel_password).map_err(|e| {
                Error::new(e.kind, format!("the Sentinels' password: {}", e.message))
            })?;
            let sentinel_login = RedisConnectionInfo {
                db: 0,
                username: None,
                password: sentinel_secret.as_ref().map(|p| p.as_str().to_string()),
                protocol: ProtocolVersion::RESP2,
            };
            Ok(Connector::Sentinel(super::sentinel::Sentinels::new(
                nodes,
                master.clone(),
                sentinel_login,
                redis_info(cfg.db),
                tls,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cfg(target: RedisTarget) -> RedisConfig {
        RedisConfig {
            target,
            db: 0,
            user: None,
            password: Password::None,
            prefix: "p:".into(),
            timeout_ms: 10,
            l1: 0,
            queue: 16,
            batch_ms: 2,
            tls: None,
        }
    }

    fn tcp() -> RedisTarget {
        RedisTarget::Tcp {
            host: "127.0.0.1".into(),
            port: 6379,
        }
    }

    #[test]
    fn bad_settings_are_url_errors() {
        let mut c = cfg(tcp());
        c.timeout_ms = 0;
        assert_eq!(connector(&c, None).err().unwrap().kind, ErrorKind::Url);
        let mut c = cfg(tcp());
        c.queue = 0;
        assert_eq!(connector(&c, None).err().unwrap().kind, ErrorKind::Url);
        let mut c = cfg(tcp());
        c.user = Some("alice".into());
        assert_eq!(connector(&c, None).err().unwrap().kind, ErrorKind::Url);
        let mut c = cfg(RedisTarget::Cluster {
            nodes: vec![("127.0.0.1".into(), 7000)],
        });
        c.db = 2;
        let e = connector(&c, None).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Url);
        assert!(e.message.contains("database 0"), "{}", e.message);
        let c = cfg(RedisTarget::Cluster { nodes: vec![] });
        assert_eq!(connector(&c, None).err().unwrap().kind, ErrorKind::Url);
        let c = cfg(RedisTarget::Unix {
            path: String::new(),
        });
        assert_eq!(connector(&c, None).err().unwrap().kind, ErrorKind::Url);
        let c = cfg(RedisTarget::Tcp {
            host: "[::1]".into(),
            port: 6379,
        });
        assert!(connector(&c, None).is_ok());
        let sentinel = |password: Password| {
            cfg(RedisTarget::Sentinel {
                sentinels: vec![("127.0.0.1".into(), 26379), ("[::1]".into(), 26380)],
                master: "m".into(),
                password,
            })
        };
        assert!(connector(&sentinel(Password::None), None).is_ok());
        let name = format!("SESSCACHE_TEST_SENTINEL_PW_UNSET_{}", std::process::id());
        let e = connector(&sentinel(Password::Env(name.clone())), None)
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Url);
        assert!(
            e.message.contains("the Sentinels' password") && e.message.contains(&name),
            "{}",
            e.message
        );
    }

    /// A file in a directory of this test's own, removed at the end.
    struct TempFile(std::path::PathBuf);
    impl TempFile {
        fn new(name: &str, text: &[u8], mode: u32) -> TempFile {
            let dir =
                std::env::temp_dir().join(format!("sesscache-pw-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("pw");
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            TempFile(path)
        }
        fn path(&self) -> String {
            self.0.to_str().unwrap().to_string()
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    #[test]
    fn password_files() {
        let f = TempFile::new("ok", b"s3cret-Pw\r\nsecond line\n", 0o600);
        let p = read_password(&Password::File(f.path())).unwrap().unwrap();
        assert_eq!(p.as_str(), "s3cret-Pw");
        assert_eq!(format!("{p:?}"), "Secret(<hidden>)");

        let f = TempFile::new("open", b"s3cret-Pw\n", 0o640);
        let e = read_password(&Password::File(f.path())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permission);
        assert!(e.message.contains("0640"), "{}", e.message);
        assert!(!e.message.contains("s3cret"), "{}", e.message);

        let f = TempFile::new("empty", b"\nnot the first line\n", 0o600);
        let e = read_password(&Password::File(f.path())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Url);
        assert!(!e.message.contains("not the first"), "{}", e.message);

        let e = read_password(&Password::File("/nonexistent/sesscache/pw".into())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Url);
        assert!(
            e.message.contains("/nonexistent/sesscache/pw"),
            "{}",
            e.message
        );
    }

    #[test]
    fn password_sources() {
        assert!(read_password(&Password::None).unwrap().is_none());
        let p = read_password(&Password::Inline("in-url".into()))
            .unwrap()
            .unwrap();
        assert_eq!(p.as_str(), "in-url");
        assert_eq!(
            read_password(&Password::Inline(String::new()))
                .unwrap_err()
                .kind,
            ErrorKind::Url
        );
        let name = format!("SESSCACHE_TEST_PW_UNSET_{}", std::process::id());
        let e = read_password(&Password::Env(name.clone())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Url);
        assert!(e.message.contains(&name), "{}", e.message);
    }
}
