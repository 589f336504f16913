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
//! | `ttl` | NUMBER | the session's own timeout | `memory:`, `shm:` | the longest lifetime of an entry, in seconds |
//! | `single_use` | `0` or `1` | `1` | `memory:`, `shm:` | TLS 1.3 tickets resume once |
//! | `max_session_bytes` | SIZE at most 1M | `16K` | `memory:`, `shm:` | larger encoded sessions are not stored (counted as `rejected`) |
//! | `tickets` | `auto`, `keep` or `stateful` | `auto` | `memory:`, `shm:` | preload mode: stateful tickets on server connections where the cache is shared by every process that may resume (`auto`), always (`stateful`) or never (`keep`) |
//! | `force` | `0` or `1` | `0` | `memory:`, `shm:` | preload mode: serve also the contexts whose program turned its session cache off |
//!
//! - NAME (of a `shm:` URL): the first character must be an ASCII letter or digit, the rest
//!   letters, digits, '.', '_' or '-', at most 200 bytes.
//! - NUMBER: ASCII digits only (no sign, spaces, underscores or other characters), at least 1.
//! - SIZE: a NUMBER of bytes, optionally followed by `K`, `M` or `G` (either case; powers of
//!   1024), e.g. `4096`, `64K`, `16M`, `1G`.
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

use params::{join_and, join_or, valid_shm_name, Scheme, Settings};
use types::err;
pub use types::*;

#[cfg(test)]
mod docs;
mod params;
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
            join_or(Scheme::ALL.map(|s| format!("'{}'", s.form())))
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
                sealing: Sealing::default(),
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
