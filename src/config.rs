//! Cache URLs.
//!
//! One table, `PARAMS` in `params.rs`, describes every parameter: the parser finds a
//! parameter there, then parses, checks and stores its value as the entry says; the errors
//! about a parameter are made from its entry; and the text between the `generated` markers,
//! here, in README.md ("Cache URLs") and in the doc comment of `sesscache_open` (hence in
//! `include/sesscache.h`), is rendered from it by `docs.rs`. The test
//! `generated_url_docs_are_current` fails when a copy differs from what the table renders;
//! `SESSCACHE_BLESS=1 cargo test --lib generated_url_docs_are_current` rewrites the copies
//! (then `make header` brings the C header along).
//!
//! <!-- BEGIN generated: url-params, from src/config/params.rs: edit the table there -->
//!
//! ```text
//! URL   = "memory:" [ "?" QUERY ]
//!       | "shm:" NAME [ "?" QUERY ]
//!       | "redis:" //[USER[:PASSWORD]@]HOST[:PORT][/DB] [ "?" QUERY ]
//!       | "rediss:" //[USER[:PASSWORD]@]HOST[:PORT][/DB] [ "?" QUERY ]
//!       | "redis+unix:" //[USER[:PASSWORD]@]PATH [ "?" QUERY ]
//!       | "redis+cluster:" //[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...] [ "?" QUERY ]
//!       | "redis+sentinel:" //[USER[:PASSWORD]@]SENTINELS/MASTERNAME[/DB] [ "?" QUERY ]
//! QUERY = PARAM *( "&" PARAM )          empty PARAMs ("a=1&&b=2", a trailing '&') are skipped
//! PARAM = KEY "=" VALUE
//! ```
//!
//! Parameters (each optional and at most once; any other KEY is an error):
//!
//! | KEY | VALUE | default | schemes | meaning |
//! | --- | --- | --- | --- | --- |
//! | `capacity` | NUMBER | `20000` | `memory:` | the most sessions held |
//! | `max_bytes` | SIZE | `64M` | `memory:` | the most bytes held for sessions, encoded or decoded (estimated from above), with their bookkeeping |
//! | `size` | SIZE from 64K to 64G | an existing segment's size, else 32M | `shm:` | the size a new segment is created with, reserved at once; an existing segment of another size is refused |
//! | `mode` | `0600` or `0660` | `0600` | `shm:` | who may use the segment: `0600` only the server's own user, `0660` the members of its group too |
//! | `ttl` | NUMBER | the session's own timeout | all | the longest lifetime of an entry, in seconds |
//! | `single_use` | `0` or `1` | `1` | all | TLS 1.3 tickets resume once |
//! | `sni_check` | `0` or `1` | `1` | all | a session made for one server name (SNI) is not resumed on a connection that asks for another name or for none (a miss, counted as `sni_refused`; see SECURITY.md) |
//! | `max_session_bytes` | SIZE at most 1M | `16K` | all | larger encoded sessions are not stored (counted as `rejected`) |
//! | `tickets` | `auto`, `keep`, `stateful` or `shared` | `auto` | all | stateful tickets on preloaded server connections where the cache is shared by every process that may resume (`auto`), always (`stateful`) or never (`keep`); or stateless tickets under keys kept in the cache and rotated through it, shared by every process and host using it (`shared`, preloaded and attached contexts; `redis` needs `key_file`) |
//! | `ticket_rotate` | NUMBER from 2 to 604800 | `3600` | all | with shared tickets (`tickets` `shared`): seconds each ticket key encrypts; it then still decrypts for `ttl` seconds (default 7200); every server of a cache must give the same |
//! | `force` | `0` or `1` | `0` | all | preload mode: serve also the contexts whose program turned its session cache off; with shared tickets, also those whose program set its own ticket keys or ticket callback (the shared keys then win) |
//! | `key_file` | PATH | none: sessions are stored as they are | `shm:`, `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | seal every stored session with AES-256-GCM under the keys in this file (one key a line, 64 hex digits; the first seals, every one opens), the session ID as associated data; the file must be private to its owner |
//! | `insecure_plaintext` | `0` or `1` | `0` | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | `1` lets a `redis` cache store sessions, master secrets included, in clear (without it, `key_file` is required) |
//! | `prefix` | TEXT | `sesscache:` | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | put before every key (and sealed into every value, so that values do not move between caches) |
//! | `timeout_ms` | NUMBER from 1 to 60000 | `10` | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | the most a lookup waits for Redis, connecting included, before it is a miss |
//! | `l1` | NUMBER from 1 to 10000000 | none | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | keep up to this many reusable sessions in this process too, tried before Redis |
//! | `queue` | NUMBER from 1 to 1000000 | `4096` | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | the most stores and removals waiting to be sent; more are dropped and counted |
//! | `batch_ms` | NUMBER from 0 to 100 | `2` | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | under load, a store waits until this long after the previous batch was sent, so that one round trip carries the stores of the meantime (less CPU for this process and Redis); other hosts see a session up to this much later; 0: send each at once |
//! | `password_file` | PATH | none | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | read the password from this file's first line (private to its owner) |
//! | `password_env` | NAME | none | `redis:`, `rediss:`, `redis+unix:`, `redis+cluster:`, `redis+sentinel:` | read the password from this environment variable (refused in setuid, setgid and file-capability programs) |
//! | `tls` | `0` or `1` | `0` | `redis:`, `redis+cluster:`, `redis+sentinel:` | connect over TLS, the server's certificate verified as with `rediss:` (for `redis+cluster:`, every node's; for `redis+sentinel:`, the Sentinels' and the primary's) |
//! | `tls_ca_file` | PATH | the system's CA store | `redis:`, `rediss:`, `redis+cluster:`, `redis+sentinel:` | trust only the CA certificates in this PEM file to sign the server's certificate |
//! | `tls_cert_file` | PATH | none | `redis:`, `rediss:`, `redis+cluster:`, `redis+sentinel:` | present this PEM certificate (chain) to the server (mutual TLS; needs tls_key_file) |
//! | `tls_key_file` | PATH | none | `redis:`, `rediss:`, `redis+cluster:`, `redis+sentinel:` | the private key of tls_cert_file, in PEM (private to its owner) |
//! | `tls_name` | TEXT | the host the URL names | `redis:`, `rediss:`, `redis+cluster:`, `redis+sentinel:` | the name (or IP address) the server's certificate must be for, also sent as SNI; for a cluster, every node's |
//! | `sentinel_password_file` | PATH | none: the Sentinels are asked without a password | `redis+sentinel:` | the Sentinels' own password (their requirepass), from this file's first line (private to its owner) |
//! | `sentinel_password_env` | NAME | none | `redis+sentinel:` | the Sentinels' own password, from this environment variable (refused in setuid, setgid and file-capability programs) |
//!
//! - NAME (of a `shm:` URL): the first character must be an ASCII letter or digit, the rest
//!   letters, digits, '.', '_' or '-', at most 200 bytes.
//! - //[USER[:PASSWORD]@]HOST[:PORT][/DB] (of a `redis:` URL): HOST is a host name, an IPv4
//!   address or an IPv6 address in brackets; PORT defaults to 6379; DB is a database number
//!   (default 0); USER and PASSWORD are percent-encoded where they hold ':', '@', '/', '?', '&'
//!   or '%' (a password is better given with password_file or password_env, since a URL may
//!   show in `ps`).
//! - //[USER[:PASSWORD]@]HOST[:PORT][/DB] (of a `rediss:` URL): as redis:, over TLS: the
//!   server's certificate is verified against the system's CAs (or tls_ca_file) and HOST (or
//!   tls_name).
//! - //[USER[:PASSWORD]@]PATH (of a `redis+unix:` URL): PATH is the absolute path of the
//!   server's Unix socket.
//! - //[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...] (of a `redis+cluster:` URL): one or more seed
//!   nodes of a Redis Cluster, each HOST:PORT; the cluster's other nodes are found from them.
//! - //[USER[:PASSWORD]@]SENTINELS/MASTERNAME[/DB] (of a `redis+sentinel:` URL): SENTINELS is
//!   one or more Redis Sentinels, HOST:PORT[,HOST:PORT...], asked in turn for the address of
//!   the primary they watch under MASTERNAME (letters, digits, '.', '_', '-'; at most 128),
//!   again for every new connection, so that the cache follows a failover; DB is a database
//!   number (default 0); USER and PASSWORD are the Redis servers' (the Sentinels' own password
//!   is sentinel_password_file or sentinel_password_env).
//! - NUMBER: ASCII digits only (no sign, spaces, underscores or other characters), at least 1.
//! - SIZE: a NUMBER of bytes, optionally followed by `K`, `M` or `G` (either case; powers of
//!   1024), e.g. `4096`, `64K`, `16M`, `1G`.
//! - PATH: an absolute file path; TEXT: printable ASCII without spaces, at most 128 bytes;
//!   NAME: an environment variable's name (letters, digits and '_'). Each is percent-decoded
//!   (`%26` for '&', `%25` for '%').
//! - `0` or `1` (a flag): off is `0`, `false` or `no`; on is `1`, `true` or `yes`.
//! - Limits: a URL is at most 4096 bytes with at most 32 parameters (counting repeats and
//!   unknown ones); longer URLs are refused before anything else is looked at. Parsing is one
//!   pass over the URL.
//! - Every error names the bad part: `memory:?capacity=banana` gives `bad value 'banana' for
//!   capacity: expected a whole number of at least 1 (digits only)`.
//!
//! <!-- END generated: url-params -->
//!
//! More on some parameters:
//! - `mode`: who may use the segment. `0600`: only the server's own user. `0660`: members of
//!   the segment's group may share it too, that is read and plant sessions; give it only to a
//!   group trusted with the sessions' secrets.
//! - `tickets` (preload mode): `stateful` turns stateless tickets off on every server
//!   connection the cache serves (`SSL_OP_NO_TICKET`), so that sessions go through the cache;
//!   `keep` leaves the program's setting alone; `auto` is `stateful` where the cache is
//!   shared by every process that could see the client again (`shm:`, or `memory:` in the
//!   process that opened it) and `keep` elsewhere (`memory:` in a forked child, whose copy of
//!   the cache no other process sees): never fewer resumptions than without the library.
//! - `force` (preload mode): `1` makes the cache serve every server context, even one whose
//!   program turned its own session cache off (`SSL_SESS_CACHE_OFF`), with stateful tickets
//!   unless `tickets=keep` is given; `0` leaves such contexts exactly as without the library.
//!
//! Every error names the part of the URL that is wrong, so that `sesscache_last_error()`
//! (and the preload diagnostics) can tell the user what to fix.

use params::{join_and, join_or, Scheme, Settings};
pub use params::{shm_name_rule, valid_shm_name};
use types::err;
pub use types::*;

#[cfg(test)]
mod docs;
mod params;
mod redis_url;
#[cfg(test)]
mod tests;
mod types;

/// Parses a cache URL.
pub fn parse(url: &str) -> Result<Config, ConfigError> {
    // Absurd URLs are refused before any other work (and before being quoted in a message).
    if url.len() > MAX_URL_BYTES {
        return err(format!(
            "cache URL is {} bytes long; at most {MAX_URL_BYTES}",
            url.len()
        ));
    }
    let Some((scheme, rest)) = url.split_once(':') else {
        return err(format!(
            "cache URL '{url}' has no scheme: expected {} (e.g. 'memory:?capacity=10000')",
            join_or(Scheme::ALL.map(|s| format!("'{}:'", s.name())))
        ));
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, q),
        None => (rest, ""),
    };
    let n_params = query.split('&').filter(|p| !p.is_empty()).count();
    if n_params > MAX_PARAMS {
        return err(format!(
            "cache URL has {n_params} parameters; at most {MAX_PARAMS}"
        ));
    }
    let Some(scheme) = Scheme::from_name(scheme) else {
        return err(format!(
            "unknown scheme '{scheme}' in cache URL: the supported schemes are {}",
            join_and(Scheme::ALL.map(|s| format!("'{}'", s.name())))
        ));
    };
    match scheme {
        Scheme::Redis
        | Scheme::Rediss
        | Scheme::RedisUnix
        | Scheme::RedisCluster
        | Scheme::RedisSentinel => {
            let s = params::walk(query, scheme)?;
            redis_url::parse(scheme, path, s)
        }
        Scheme::Shm => {
            if path.is_empty() {
                return err(format!(
                    "shm: needs a name ('shm:NAME'): {}",
                    scheme.path_rule().unwrap_or_default()
                ));
            }
            if !valid_shm_name(path) {
                return err(format!(
                    "bad shm name '{path}': {}",
                    scheme.path_rule().unwrap_or_default()
                ));
            }
            let s = params::walk(query, scheme)?;
            Ok(Config {
                backend: Backend::Shm {
                    name: path.to_string(),
                    size: s.size,
                    mode: s.mode,
                },
                common: s.common,
                sealing: s.sealing,
            })
        }
        Scheme::Memory => {
            if !path.is_empty() {
                return err(format!(
                    "memory: takes no name or path, but the URL has '{path}' after 'memory:'"
                ));
            }
            let s = params::walk(query, scheme)?;
            check_memory(&s)?;
            Ok(Config {
                backend: Backend::Memory {
                    capacity: s.capacity,
                    max_bytes: s.max_bytes,
                },
                common: s.common,
                sealing: Sealing::default(),
            })
        }
    }
}

/// What the parameters of a `memory:` URL must satisfy together.
fn check_memory(s: &Settings) -> Result<(), ConfigError> {
    if s.common.max_session_bytes > s.max_bytes {
        return err(format!(
            "max_session_bytes ({}) is larger than max_bytes ({}): no session could be stored",
            s.common.max_session_bytes, s.max_bytes
        ));
    }
    Ok(())
}

/// `url` as it may be shown (in logs, in diagnostics): with any password in it replaced by
/// `***`. What follows the scheme's `//` up to the last '@' before the path or query is
/// the userinfo; its part after the first ':' is the password.
pub fn redacted(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..].find('?').map_or(url.len(), |i| start + i);
    let Some(at) = url[start..end].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':').map(|i| start + i) {
        Some(colon) => format!("{}:***{}", &url[..colon], &url[at..]),
        None => url.to_string(),
    }
}
