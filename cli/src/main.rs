//! `sesscache`, the command-line tool: the cache core without the C library's interposed
//! OpenSSL functions (the `interpose` feature is off), for operators.
//!
//! ```text
//! sesscache --version                       the library's version
//! sesscache stats URL [--format F] [--watch S]  counters, entries, bytes and hit ratio
//!                                           (F: text, json, prometheus)
//! sesscache exporter --listen ADDR URL...   serves /metrics (Prometheus) for these caches
//! sesscache ls [--json]                     the shm segments of this machine
//! sesscache rm NAME                         removes the shm segment NAME
//! sesscache check URL                       opens the cache (creating nothing), says what is wrong
//! sesscache flush URL                       removes every entry (shm:, redis, redis+cluster, redis+sentinel)
//! sesscache keygen                          a new sealing key, one line for a key_file
//! sesscache tickets URL [--json]            the ticket-key generations (tickets=shared)
//! sesscache tickets rotate URL              a new ticket-key generation, after a lead
//! sesscache tickets revoke URL              a new generation now; every older key dropped
//! ```
//!
//! Nothing here creates a cache: `shm:` URLs name a segment that must exist already
//! (`Cache::open_existing`). A `memory:` cache lives inside the process that made it, so
//! `stats`, `check` and `flush` refuse it (exit status 7). `stats` of a `redis` cache
//! shows the fleet: the counters every process reported to Redis (each at most about a
//! second late), the entries under the prefix and their bytes (SCAN, on each primary of a
//! cluster), and what Redis says of its memory. `--format prometheus` and `exporter` give
//! the same counters in Prometheus's text format (`metrics.rs`).
//!
//! Exit status (the categories of `sesscache_last_error_code`, one status each):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | another failure (e.g. writing the output) |
//! | 2 | a command line it does not understand (usage on stderr) |
//! | 3 | `Url`: the cache URL (or a segment name) is invalid |
//! | 4 | `Permission`: refused (a segment of another user, a key file others may read, ...) |
//! | 5 | `Unavailable`: no such segment, the server does not answer, a flush could not finish |
//! | 6 | `Incompatible`: another layout version, another size, a damaged segment |
//! | 7 | `State`: not possible for this cache (a `memory:` cache from outside its process) |
//! | 8 | `rm`: no such segment |
//! | 9 | `Internal`: a bug or an OpenSSL failure |

mod metrics;
mod tickets;

use clap::{Parser, Subcommand, ValueEnum};
use sesscache::cache::Cache;
use sesscache::error::{Error, ErrorKind};
use sesscache::store::shm::ShmStore;
use sesscache::store::{Stats, Store, Survey};
use std::ffi::CStr;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_URL: u8 = 3;
const EXIT_PERMISSION: u8 = 4;
const EXIT_UNAVAILABLE: u8 = 5;
const EXIT_INCOMPATIBLE: u8 = 6;
const EXIT_STATE: u8 = 7;
const EXIT_NOT_FOUND: u8 = 8;
const EXIT_INTERNAL: u8 = 9;

const EXIT_CODES: &str = "Exit status:
  0  success
  1  another failure (e.g. writing the output)
  2  a command line it does not understand
  3  Url: the cache URL (or a segment name) is invalid
  4  Permission: refused (a segment of another user, a key file others may read, ...)
  5  Unavailable: no such segment, the server does not answer, a flush could not finish
  6  Incompatible: another layout version, another size, a damaged segment
  7  State: not possible for this cache (a memory: cache from outside its process)
  8  rm: no such segment
  9  Internal: a bug or an OpenSSL failure";

const SHM_DIR: &str = "/dev/shm";
const SHM_PREFIX: &str = "sesscache-";

/// Looks at TLS session caches from outside the servers using them. URLs are those of
/// SESSCACHE_URL ('shm:NAME...', 'redis://...'); nothing is created: a shm: segment must
/// exist.
#[derive(Parser)]
#[command(name = "sesscache", version = version(), after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The counters of a cache, with its entries, bytes and hit ratio, one "name value" a
    /// line. shm: the whole segment's; redis: every process's as reported to Redis (about
    /// once a second), the entries and bytes under the prefix (SCAN, every primary of a
    /// cluster) and Redis's memory figures; memory: is refused (exit 7).
    #[command(after_help = EXIT_CODES)]
    Stats {
        /// The cache URL, e.g. 'shm:web' (the segment must exist)
        url: String,
        /// One JSON object (a line of its own per snapshot with --watch): --format json
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// text: one "name value" a line; json: one JSON object; prometheus: Prometheus's
        /// text exposition format, counters as sesscache_NAME_total, entries and bytes as
        /// gauges, sesscache_up, each with the label cache="URL" (a failed read prints
        /// sesscache_up 0, then exits 5)
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
        format: Format,
        /// Print again every SECONDS seconds, until interrupted (not with prometheus: use
        /// the exporter)
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
        watch: Option<u32>,
        /// With --watch: stop after N snapshots
        #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Serves the counters of these caches to Prometheus: GET /metrics answers the text
    /// exposition format (as stats --format prometheus, every cache read afresh at each
    /// scrape; a cache that cannot be read has sesscache_up 0 and no other figure); other
    /// paths 404, other methods 405. Every cache must open at start (else it exits with the
    /// status of the error, naming the cache); memory: is refused (exit 7). Runs until
    /// SIGTERM or SIGINT, then exits 0.
    #[command(after_help = EXIT_CODES)]
    Exporter {
        /// The address and port to listen on, e.g. 127.0.0.1:9877 (only this one is bound)
        #[arg(long, value_name = "ADDR", required = true)]
        listen: SocketAddr,
        /// The caches' URLs, e.g. 'shm:web' 'redis://cache.internal?password_env=REDIS_PASSWORD'
        #[arg(value_name = "URL", required = true, num_args = 1..)]
        urls: Vec<String>,
    },
    /// The shm segments of this machine (/dev/shm/sesscache-*): name, owner, mode, size and
    /// fill (entries, bytes), or why the fill cannot be read (another user's, damaged)
    #[command(after_help = EXIT_CODES)]
    Ls {
        /// One JSON array of objects
        #[arg(long)]
        json: bool,
    },
    /// Removes the shm segment NAME (servers that have it open keep using their mapping)
    #[command(after_help = EXIT_CODES)]
    Rm {
        /// The segment's name, as in 'shm:NAME'
        name: String,
    },
    /// Opens the cache without creating anything and says what is wrong, if anything, with
    /// the C API's messages and categories (the exit status)
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The cache URL, e.g. 'shm:web?key_file=/etc/sesscache/keys'
        url: String,
    },
    /// Removes every entry of a shm: cache (wiping them) or every entry under a redis
    /// cache's prefix (SCAN and DEL, on every primary of a cluster; the counters stay);
    /// memory: is refused (exit 7)
    #[command(after_help = EXIT_CODES)]
    Flush {
        /// The cache URL, e.g. 'shm:web' (the segment must exist)
        url: String,
    },
    /// Prints a new random sealing key: 64 lowercase hex digits, one line of a key_file
    #[command(after_help = EXIT_CODES)]
    Keygen,
    /// The ticket-key generations of a cache with shared tickets (tickets=shared): number,
    /// name (the first 16 bytes of every ticket it encrypts), when it was made, when it
    /// encrypts, until when it decrypts; never the keys. A record that does not open
    /// (altered, or sealed under another key_file) is shown as REFUSED.
    #[command(after_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
    Tickets {
        #[command(subcommand)]
        action: Option<TicketsAction>,
        /// The cache URL, as the servers give it (its key_file opens the records)
        url: Option<String>,
        /// One JSON array of objects
        #[arg(long)]
        json: bool,
    },
}

/// How `stats` prints.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Prometheus,
}

#[derive(Subcommand)]
enum TicketsAction {
    /// Makes a new generation that starts encrypting after a lead of two refresh intervals
    /// (every server holds it by then); older keys still decrypt for their lifetime
    Rotate {
        /// The cache URL, with the servers' ticket_rotate and ttl
        url: String,
    },
    /// After a suspected compromise: makes a new generation that encrypts at once and drops
    /// every older key from the backend; servers drop theirs at their next refresh (their
    /// tickets then need a full handshake)
    Revoke {
        /// The cache URL, with the servers' ticket_rotate and ttl
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Stats {
            url,
            json,
            format,
            watch,
            count,
        } => stats(&url, if json { Format::Json } else { format }, watch, count),
        Command::Exporter { listen, urls } => metrics::exporter(listen, &urls),
        Command::Ls { json } => ls(json),
        Command::Rm { name } => rm(&name),
        Command::Check { url } => check(&url),
        Command::Flush { url } => flush(&url),
        Command::Keygen => keygen(),
        Command::Tickets { action, url, json } => match (action, url) {
            (Some(TicketsAction::Rotate { url }), _) => tickets::rotate(&url, false),
            (Some(TicketsAction::Revoke { url }), _) => tickets::rotate(&url, true),
            (None, Some(url)) => tickets::list(&url, json),
            (None, None) => Err(fail(
                EXIT_USAGE,
                "tickets needs a URL: sesscache tickets URL, sesscache tickets rotate URL or sesscache tickets revoke URL",
            )),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("sesscache: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}

/// A failure: the message for stderr and the exit status.
pub(crate) struct Failure {
    status: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            status: status_of(e.kind),
            message: e.message,
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure {
            status: EXIT_FAILURE,
            message: format!("writing the output: {e}"),
        }
    }
}

fn fail(status: u8, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

/// The exit status of an error category (see the module docs).
fn status_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Url => EXIT_URL,
        ErrorKind::Permission => EXIT_PERMISSION,
        ErrorKind::Unavailable => EXIT_UNAVAILABLE,
        ErrorKind::Incompatible => EXIT_INCOMPATIBLE,
        ErrorKind::State => EXIT_STATE,
        ErrorKind::Internal => EXIT_INTERNAL,
        ErrorKind::Argument => EXIT_FAILURE,
    }
}

/// The version of the library this program was built with, as `sesscache_version()` gives
/// it to C programs.
fn version() -> &'static str {
    let p = sesscache::ffi::api::sesscache_version();
    // SAFETY: sesscache_version returns a static NUL-terminated string, never NULL.
    unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("unknown")
}

/// Whether a URL names a redis cache.
fn is_redis(url: &str) -> bool {
    matches!(
        sesscache::config::parse(url).map(|c| c.backend),
        Ok(sesscache::config::Backend::Redis(_))
    )
}

/// One snapshot for `stats`: the figures, and what a networked backend adds (None for
/// shm:).
fn snapshot(cache: &Cache) -> Result<(Stats, Option<Survey>), Failure> {
    Ok(match cache.survey()? {
        Some(survey) => (survey.stats, Some(survey)),
        None => (cache.stats(), None),
    })
}

fn stats(url: &str, format: Format, watch: Option<u32>, count: Option<u64>) -> Result<(), Failure> {
    if format == Format::Prometheus && watch.is_some() {
        return Err(fail(
            EXIT_USAGE,
            "--watch does not go with --format prometheus: Prometheus scrapes `sesscache exporter`",
        ));
    }
    let json = format == Format::Json;
    let cache = Cache::open_existing(url)?;
    let shown = sesscache::config::redacted(url);
    if format == Format::Prometheus {
        return metrics::stats(&cache, &shown);
    }
    let mut n = 0u64;
    loop {
        let (s, survey) = snapshot(&cache)?;
        let mut out = io::stdout().lock();
        if json {
            let mut fields = vec![
                format!("\"url\":{}", json_str(&shown)),
                format!(
                    "\"scope\":{}",
                    json_str(if survey.is_some() { "fleet" } else { "cache" })
                ),
            ];
            fields.extend(counters(&s).iter().map(|(k, v)| format!("\"{k}\":{v}")));
            fields.push(format!(
                "\"hit_ratio\":{}",
                hit_ratio(&s).map_or("null".to_string(), |r| format!("{r:.4}"))
            ));
            if let Some(sv) = &survey {
                fields.push(format!("\"entries_complete\":{}", sv.complete));
                fields.push(format!(
                    "\"reported_s_ago\":{}",
                    sv.reported_ago_s
                        .map_or("null".to_string(), |a| a.to_string())
                ));
                let server: Vec<String> = sv
                    .server
                    .iter()
                    .map(|(k, v)| match v.parse::<u64>() {
                        Ok(n) => format!("\"{k}\":{n}"),
                        Err(_) => format!("\"{k}\":{}", json_str(v)),
                    })
                    .collect();
                fields.push(format!("\"server\":{{{}}}", server.join(",")));
            }
            writeln!(out, "{{{}}}", fields.join(","))?;
        } else {
            if n > 0 {
                writeln!(out)?;
            }
            for (name, value) in counters(&s) {
                writeln!(out, "{name} {value}")?;
            }
            match hit_ratio(&s) {
                Some(r) => writeln!(out, "hit_ratio {r:.4}")?,
                None => writeln!(out, "hit_ratio -")?,
            }
            if let Some(sv) = &survey {
                writeln!(
                    out,
                    "entries_complete {}",
                    if sv.complete { "yes" } else { "no" }
                )?;
                match sv.reported_ago_s {
                    Some(a) => writeln!(out, "reported_s_ago {a}")?,
                    None => writeln!(out, "reported_s_ago -")?,
                }
                for (k, v) in &sv.server {
                    writeln!(out, "{k} {v}")?;
                }
            }
        }
        out.flush()?;
        n += 1;
        match watch {
            Some(secs) if count.map_or(true, |c| n < c) => {
                std::thread::sleep(std::time::Duration::from_secs(u64::from(secs)))
            }
            _ => return Ok(()),
        }
    }
}

/// Hits per lookup; None before the first lookup.
fn hit_ratio(s: &Stats) -> Option<f64> {
    (s.lookups > 0).then(|| s.hits as f64 / s.lookups as f64)
}

/// The counters, named and ordered as the fields of `struct sesscache_stats` in the C
/// header: the events up to `errors`, then `entries` and `bytes`, then the network ones
/// (`Stats::events` lists every event counter, so a new one cannot be forgotten here).
fn counters(s: &Stats) -> Vec<(&'static str, u64)> {
    let named: Vec<(&'static str, u64)> = Stats::EVENT_NAMES.into_iter().zip(s.events()).collect();
    let at_errors = Stats::EVENT_NAMES
        .iter()
        .position(|n| *n == "errors")
        .expect("errors is an event")
        + 1;
    let mut out = named[..at_errors].to_vec();
    out.push(("entries", s.entries));
    out.push(("bytes", s.bytes));
    out.extend_from_slice(&named[at_errors..]);
    out
}

/// Whether a figure of [`counters`] counts events (a Prometheus counter, `_total`) or is a
/// level (a gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// What each figure of [`counters`] means, for the `# HELP` lines of the Prometheus
/// metrics (from the docs of the fields of `struct sesscache_stats`), and its kind. Every
/// name of [`counters`] must be here: a missing one is exported as a counter with a
/// placeholder text, which c-tests/metrics.sh refuses.
const HELP: &[(&str, Kind, &str)] = &[
    (
        "lookups",
        Kind::Counter,
        "Session lookups answered by the cache (get-session callbacks)",
    ),
    ("hits", Kind::Counter, "Lookups that returned a session"),
    ("misses", Kind::Counter, "Lookups that returned nothing"),
    ("stores", Kind::Counter, "Sessions stored"),
    (
        "removes",
        Kind::Counter,
        "Sessions removed on OpenSSL's request",
    ),
    (
        "evictions",
        Kind::Counter,
        "Live sessions evicted to make room",
    ),
    ("expirations", Kind::Counter, "Expired sessions dropped"),
    (
        "rejected",
        Kind::Counter,
        "Sessions refused: session IDs of invalid length, sessions larger than max_session_bytes",
    ),
    (
        "errors",
        Kind::Counter,
        "Stored data that did not decode or open (corrupt, tampered with, sealed under an \
         unknown key), backend failures and internal errors",
    ),
    (
        "entries",
        Kind::Gauge,
        "Sessions held now (redis: the entries under the prefix, on every primary)",
    ),
    (
        "bytes",
        Kind::Gauge,
        "Bytes of the sessions held now (shm: the encoded sessions in the segment; redis: \
         the values under the prefix)",
    ),
    (
        "net_errors",
        Kind::Counter,
        "redis: operations that failed on the network or with a server error",
    ),
    (
        "timeouts",
        Kind::Counter,
        "redis: lookups and connection attempts that gave up after timeout_ms",
    ),
    (
        "breaker_opens",
        Kind::Counter,
        "redis: times a circuit breaker opened, skipping Redis after repeated failures",
    ),
    (
        "queue_drops",
        Kind::Counter,
        "redis: stores and removals dropped because the write queue was full or the breaker \
         was open",
    ),
    (
        "sni_refused",
        Kind::Counter,
        "Sessions found but refused because they were made for another server name (SNI) \
         than the one asked for (sni_check)",
    ),
];

/// The kind and HELP text of a figure of [`counters`].
fn help_of(name: &str) -> (Kind, &'static str) {
    HELP.iter().find(|(n, _, _)| *n == name).map_or(
        (
            Kind::Counter,
            "NO HELP TEXT: add this counter to HELP in cli/src/main.rs",
        ),
        |(_, k, h)| (*k, *h),
    )
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One row of `ls`.
struct Row {
    name: String,
    owner: String,
    uid: u32,
    mode: u32,
    size: u64,
    /// (entries, bytes), or why they cannot be read.
    fill: Result<(u64, u64), Error>,
}

/// The user name of `uid`, or None.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: a zeroed passwd for getpwuid_r to fill.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into pw and buf (of the length given) only.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
    Some(
        unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn ls(json: bool) -> Result<(), Failure> {
    let dir = std::fs::read_dir(SHM_DIR)
        .map_err(|e| fail(EXIT_UNAVAILABLE, format!("cannot read {SHM_DIR}: {e}")))?;
    let mut rows = Vec::new();
    for entry in dir.flatten() {
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_prefix(SHM_PREFIX)) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue; // removed meanwhile
        };
        let mode = meta.mode() & 0o7777;
        let fill = if !sesscache::config::valid_shm_name(name) {
            Err(Error::new(ErrorKind::Url, "not a valid segment name"))
        } else {
            // A segment shared with a group is opened as the group's servers do.
            let want = if mode & 0o070 != 0 { 0o660 } else { 0o600 };
            ShmStore::open_existing(name, None, want, 1024).map(|s| s.occupancy())
        };
        rows.push(Row {
            name: name.to_string(),
            owner: user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string()),
            uid: meta.uid(),
            mode,
            size: meta.size(),
            fill,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = io::stdout().lock();
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                let fill = match &r.fill {
                    Ok((e, b)) => format!("\"entries\":{e},\"bytes\":{b},\"problem\":null"),
                    Err(e) => format!(
                        "\"entries\":null,\"bytes\":null,\"problem\":{}",
                        json_str(&e.message)
                    ),
                };
                format!(
                    "{{\"name\":{},\"owner\":{},\"uid\":{},\"mode\":\"{:04o}\",\"size\":{},{fill}}}",
                    json_str(&r.name),
                    json_str(&r.owner),
                    r.uid,
                    r.mode,
                    r.size
                )
            })
            .collect();
        writeln!(out, "[{}]", items.join(","))?;
    } else {
        writeln!(
            out,
            "{:<24} {:<12} {:<5} {:>12} {:>9} {:>12}",
            "NAME", "OWNER", "MODE", "SIZE", "ENTRIES", "BYTES"
        )?;
        for r in &rows {
            let fill = match &r.fill {
                Ok((e, b)) => format!("{e:>9} {b:>12}"),
                Err(e) => format!("{:>9} {:>12}  ({})", "-", "-", e.message),
            };
            writeln!(
                out,
                "{:<24} {:<12} {:04o}  {:>12} {fill}",
                r.name, r.owner, r.mode, r.size
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

fn rm(name: &str) -> Result<(), Failure> {
    if !sesscache::config::valid_shm_name(name) {
        return Err(fail(
            EXIT_URL,
            format!(
                "'{name}' is not a segment name: {}",
                sesscache::config::shm_name_rule()
            ),
        ));
    }
    let path = format!("{SHM_DIR}/{SHM_PREFIX}{name}");
    match std::fs::remove_file(&path) {
        Ok(()) => {
            println!("removed {path}");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(fail(EXIT_NOT_FOUND, format!("no such segment: {path}")))
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(fail(EXIT_PERMISSION, format!("cannot remove {path}: {e}")))
        }
        Err(e) => Err(fail(EXIT_FAILURE, format!("cannot remove {path}: {e}"))),
    }
}

fn check(url: &str) -> Result<(), Failure> {
    let shown = sesscache::config::redacted(url);
    let cache = Cache::open_existing(url)?;
    if is_redis(url) {
        // Opening made no connection: one lookup of an ID nobody uses asks the server.
        let id: [u8; 32] = random_bytes();
        let _ = cache.lookup(&id);
        let net = cache.stats().net;
        if net.timeouts > 0 {
            return Err(fail(
                EXIT_UNAVAILABLE,
                format!("{shown}: the server did not answer in time"),
            ));
        }
        if net.net_errors > 0 || cache.stats().errors > 0 {
            return Err(fail(
                EXIT_UNAVAILABLE,
                format!(
                    "{shown}: the server could not be used (unreachable, refused, or an error reply; SESSCACHE_LOG=debug says more)"
                ),
            ));
        }
    }
    if is_redis(url) {
        // (Counting its entries is `stats`' work: a SCAN of the whole prefix.)
        println!("ok: {shown}: the server answered");
    } else {
        let s = cache.stats();
        println!("ok: {shown}: {} entries, {} bytes", s.entries, s.bytes);
    }
    Ok(())
}

fn flush(url: &str) -> Result<(), Failure> {
    let cache = Cache::open_existing(url)?;
    let removed = cache.flush()?;
    println!(
        "removed {removed} entries from {}",
        sesscache::config::redacted(url)
    );
    Ok(())
}

/// `N` random bytes from the kernel (getrandom, blocking until it is seeded).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: getrandom writes at most N - got bytes at b[got..].
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), N - got, 0) };
        if n > 0 {
            got += n as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // No randomness at all: nothing safe to print.
            eprintln!(
                "sesscache: getrandom failed: {}",
                io::Error::last_os_error()
            );
            std::process::exit(i32::from(EXIT_INTERNAL));
        }
    }
    b
}

fn keygen() -> Result<(), Failure> {
    let key: [u8; 32] = random_bytes();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = io::stdout().lock();
    writeln!(out, "{hex}")?;
    out.flush()?;
    Ok(())
}
