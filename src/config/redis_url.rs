//! The part of a `redis` URL between the scheme and the query: who to log in as and where the
//! server (or the cluster, or the Sentinels) is. Nothing here quotes a password: errors name the part that is
//! wrong and, at most, the host.

use super::params::{percent_decode, Scheme, Settings};
use super::types::{
    err, Backend, Common, Config, ConfigError, Password, RedisConfig, RedisTarget, RedisTls,
    Tickets, REDIS_DEFAULT_PORT,
};

/// Builds the configuration of a `redis`, `redis+unix` or `redis+cluster` URL from the text
/// between the ':' and the '?' and the parameters already read from the query.
pub(crate) fn parse(scheme: Scheme, path: &str, s: Settings) -> Result<Config, ConfigError> {
    let name = scheme.name();
    let Some(rest) = path.strip_prefix("//") else {
        return err(format!(
            "a {name} URL starts with '{name}://' (e.g. '{}')",
            example(scheme)
        ));
    };
    let (userinfo, place) = match rest.rsplit_once('@') {
        Some((u, p)) => (Some(u), p),
        None => (None, rest),
    };
    let (user, inline) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = percent_decode(user).ok_or_else(|| {
                ConfigError(format!(
                    "the user name of the {name} URL has a bad %-escape (write '%' as %25)"
                ))
            })?;
            let pass = match pass {
                Some(p) => Some(percent_decode(p).ok_or_else(|| {
                    ConfigError(format!(
                        "the password in the {name} URL has a bad %-escape (write '%' as %25)"
                    ))
                })?),
                None => None,
            };
            ((!user.is_empty()).then_some(user), pass)
        }
    };
    let password = password(name, inline, &s)?;
    let (target, db) = match scheme {
        Scheme::Redis | Scheme::Rediss => {
            let (hostport, db) = match place.split_once('/') {
                Some((h, "")) => (h, 0),
                Some((h, d)) => (h, database(name, d)?),
                None => (place, 0),
            };
            let (host, port) = host_port(name, hostport, Some(REDIS_DEFAULT_PORT))?;
            (RedisTarget::Tcp { host, port }, db)
        }
        Scheme::RedisUnix => {
            let path = percent_decode(place).filter(|p| p.starts_with('/') && p.len() > 1);
            let Some(path) = path else {
                return err(format!(
                    "a {name} URL needs the socket's absolute path: '{}'",
                    example(scheme)
                ));
            };
            (RedisTarget::Unix { path }, 0)
        }
        Scheme::RedisCluster => {
            if place.contains('/') {
                return err(format!(
                    "a {name} URL takes no database: a Redis Cluster has only database 0"
                ));
            }
            let mut nodes = Vec::new();
            for node in place.split(',') {
                nodes.push(host_port(name, node, None)?);
            }
            if nodes.len() > 64 {
                return err(format!("a {name} URL may name at most 64 seed nodes"));
            }
            (RedisTarget::Cluster { nodes }, 0)
        }
        Scheme::RedisSentinel => {
            let Some((list, rest)) = place.split_once('/') else {
                return err(format!(
                    "a {name} URL needs the master's name after the Sentinels: '{}'",
                    example(scheme)
                ));
            };
            let (master, db) = match rest.split_once('/') {
                Some((m, "")) => (m, 0),
                Some((m, d)) => (m, database(name, d)?),
                None => (rest, 0),
            };
            if master.is_empty() {
                return err(format!(
                    "a {name} URL needs the master's name after the Sentinels: '{}'",
                    example(scheme)
                ));
            }
            if master.len() > MAX_MASTER_NAME
                || !master
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
            {
                return err(format!(
                    "bad master name '{}' in the {name} URL: expected letters, digits, '.', \
                     '_' and '-', at most {MAX_MASTER_NAME}",
                    master.escape_debug()
                ));
            }
            let mut sentinels = Vec::new();
            for node in list.split(',') {
                sentinels.push(host_port(name, node, None)?);
            }
            if sentinels.len() > 64 {
                return err(format!("a {name} URL may name at most 64 Sentinels"));
            }
            let password = sentinel_password(&s)?;
            let master = master.to_string();
            (
                RedisTarget::Sentinel {
                    sentinels,
                    master,
                    password,
                },
                db,
            )
        }
        _ => unreachable!("only redis schemes come here"),
    };
    match (&s.sealing.key_file, s.sealing.insecure_plaintext) {
        (None, false) => {
            return err(format!(
                "a {name} cache keeps sessions, master secrets included, off this machine: give \
                 key_file=PATH (a private file of 64-hex-digit keys, one a line) to seal them, or \
                 insecure_plaintext=1 to store them in clear"
            ))
        }
        (Some(_), true) => {
            return err(
                "key_file and insecure_plaintext=1 contradict each other: give one".to_string(),
            )
        }
        _ => {}
    }
    if s.common.tickets == Tickets::Shared && s.sealing.key_file.is_none() {
        return err(format!(
            "tickets=shared keeps the ticket keys in Redis, where they must never be in clear: \
             a {name} cache with shared tickets needs key_file=PATH (insecure_plaintext does \
             not cover ticket keys)"
        ));
    }
    let tls = tls(scheme, &s)?;
    let common: Common = s.common;
    Ok(Config {
        backend: Backend::Redis(RedisConfig {
            target,
            db,
            user,
            password,
            prefix: s.prefix,
            timeout_ms: s.timeout_ms,
            l1: s.l1,
            queue: s.queue,
            batch_ms: s.batch_ms,
            tls,
        }),
        common,
        sealing: s.sealing,
    })
}

/// The TLS settings of a URL, checked against each other: None for plain TCP.
fn tls(scheme: Scheme, s: &Settings) -> Result<Option<RedisTls>, ConfigError> {
    let name = scheme.name();
    let t = &s.tls;
    let on = scheme == Scheme::Rediss || t.on;
    if !on {
        let given = [
            ("tls_ca_file", t.ca_file.is_some()),
            ("tls_cert_file", t.cert_file.is_some()),
            ("tls_key_file", t.key_file.is_some()),
            ("tls_name", t.name.is_some()),
        ];
        if let Some((param, _)) = given.iter().find(|(_, g)| *g) {
            return err(format!(
                "{param} is a TLS setting, but this {name} URL connects without TLS: use \
                 rediss:// (or tls=1 with {name}://)"
            ));
        }
        return Ok(None);
    }
    let client_cert = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => {
            return err("tls_cert_file needs tls_key_file (the certificate's private key)".into())
        }
        (None, Some(_)) => {
            return err(
                "tls_key_file needs tls_cert_file (the certificate it is the key of)".into(),
            )
        }
    };
    if let Some(n) = &t.name {
        if !valid_tls_name(n) {
            return err(format!(
                "bad value '{}' for tls_name: expected a host name (letters, digits, '-', '.') \
                 or an IP address",
                n.escape_debug()
            ));
        }
    }
    Ok(Some(RedisTls {
        ca_file: t.ca_file.clone(),
        client_cert,
        name: t.name.clone(),
    }))
}

/// A name a certificate can be for: a DNS name (a leading `*.` is not: that is a
/// certificate's pattern, not a name), an IPv4 address, or an IPv6 address (with or without
/// brackets).
fn valid_tls_name(n: &str) -> bool {
    let bare = n
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(n);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The longest master name a `redis+sentinel` URL takes.
const MAX_MASTER_NAME: usize = 128;

/// The Sentinels' password: `sentinel_password_file` or `sentinel_password_env`, not both.
fn sentinel_password(s: &Settings) -> Result<Password, ConfigError> {
    Ok(
        match (&s.sentinel_password_file, &s.sentinel_password_env) {
            (Some(_), Some(_)) => {
                return err(
                    "sentinel_password_file and sentinel_password_env both give the Sentinels' \
                     password: give one"
                        .to_string(),
                )
            }
            (Some(f), None) => Password::File(f.clone()),
            (None, Some(e)) => Password::Env(e.clone()),
            (None, None) => Password::None,
        },
    )
}

fn example(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Rediss => "rediss://redis.example.net:6380/0",
        Scheme::RedisSentinel => "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster",
        Scheme::RedisUnix => "redis+unix:///run/redis/redis.sock",
        Scheme::RedisCluster => "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        _ => "redis://127.0.0.1:6379/0",
    }
}

/// The one source of the password: the URL, `password_file` or `password_env`.
fn password(name: &str, inline: Option<String>, s: &Settings) -> Result<Password, ConfigError> {
    let given = [
        inline.is_some(),
        s.password_file.is_some(),
        s.password_env.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return err(format!(
            "the {name} URL gives its password more than once (in the URL, password_file, \
             password_env): give one"
        ));
    }
    Ok(match (inline, &s.password_file, &s.password_env) {
        (Some(p), _, _) => Password::Inline(p),
        (_, Some(f), _) => Password::File(f.clone()),
        (_, _, Some(e)) => Password::Env(e.clone()),
        _ => Password::None,
    })
}

fn database(name: &str, text: &str) -> Result<u32, ConfigError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 9 {
        return err(format!(
            "bad database '{text}' in the {name} URL: expected a number such as 0"
        ));
    }
    Ok(text.parse().unwrap_or(0))
}

/// `HOST[:PORT]`: a name, an IPv4 address or `[IPv6]`; the port is required when `default`
/// is None.
fn host_port(name: &str, text: &str, default: Option<u16>) -> Result<(String, u16), ConfigError> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return err(format!(
                "bad host '{text}' in the {name} URL: an IPv6 address ends with ']'"
            ));
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return err(format!("bad IPv6 address '{addr}' in the {name} URL"));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => {
                    return err(format!(
                        "bad host '{text}' in the {name} URL: expected ':PORT' after ']'"
                    ))
                }
            },
        };
        (addr.to_string(), port)
    } else {
        let (h, p) = match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !ok {
            return err(format!(
                "bad host '{}' in the {name} URL: expected a host name, an IPv4 address or \
                 [an IPv6 address]",
                h.escape_debug()
            ));
        }
        (h.to_string(), p)
    };
    let port = match (port, default) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return err(format!(
                    "bad port '{p}' for host '{host}' in the {name} URL: expected 1 to 65535"
                ))
            }
        },
        (None, Some(d)) => d,
        (None, None) => {
            return err(format!(
                "host '{host}' in the {name} URL needs a port: HOST:PORT"
            ))
        }
    };
    Ok((host, port))
}
