//! Prometheus metrics: the text exposition format (version 0.0.4) of
//! `sesscache stats URL --format prometheus`, and `sesscache exporter`, a small HTTP server
//! answering `GET /metrics` with the same for several caches.
//!
//! The exposition is written by the `prometheus-client` crate (prometheus/client_rust), one
//! fresh registry per read: every figure of [`crate::counters`] becomes a metric
//! `sesscache_NAME_total` (a counter) or `sesscache_NAME` (a gauge: `entries`, `bytes`),
//! with the `# HELP` text of [`crate::HELP`], and every sample carries the label
//! `cache="URL"`, the URL as `stats` shows it (a password in it replaced by `***`).
//! `sesscache_up{cache=...}` is 1 when the cache was read, 0 when it could not be (a
//! `redis` server that does not answer): then no other figure of that cache is given,
//! never stale ones. A `redis` cache adds `sesscache_entries_complete` (0 when the survey
//! stopped before the end of a very large prefix, `entries` and `bytes` being lower bounds)
//! and `sesscache_report_age_seconds` (since a process last reported its counters to Redis).
//!
//! The server: std only, one short-lived thread per connection and at most
//! [`MAX_CONNECTIONS`] at once (more are answered 503 at once); a request head of at most
//! [`MAX_REQUEST`] bytes (else 431), read within [`REQUEST_DEADLINE`] (else 408), then the
//! connection is closed. A client that sends nothing, or megabytes, holds one thread for a
//! few seconds and a fixed buffer, never a scrape of someone else. Scrapes read the caches
//! one at a time (a mutex), so concurrent scrapes do not multiply the load on Redis.
//! SIGTERM and SIGINT stop it: it stops accepting, lets the connections in progress finish
//! (a few seconds at most) and exits with status 0.

use crate::{counters, fail, help_of, snapshot, status_of, Failure, Kind};
use crate::{EXIT_FAILURE, EXIT_INTERNAL, EXIT_USAGE};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sesscache::cache::Cache;
use sesscache::store::{Stats, Survey};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `Content-Type` of what `/metrics` answers (the text format 0.0.4).
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;
/// The most connections served at once; more are answered 503 and closed.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// The longest request head read (request line and headers); longer ones get 431.
pub(crate) const MAX_REQUEST: usize = 8 << 10;
/// How long a client has to send its whole request head; slower ones get 408.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long writing the answer may block (a client that does not read it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, once stopping, the connections in progress have to finish.
const DRAIN: Duration = Duration::from_secs(15);

/// The labels of every sample: `cache="URL"`.
type Labels = Vec<(String, String)>;

/// What one read of one cache gave: its figures, or the message of why it failed.
pub(crate) struct Reading<'a> {
    /// The URL as shown (password hidden): the `cache` label.
    pub(crate) shown: &'a str,
    pub(crate) figures: Result<(Stats, Option<Survey>), String>,
}

/// The text exposition of these readings (each cache's samples under its `cache` label).
pub(crate) fn exposition(readings: &[Reading]) -> String {
    let mut registry = Registry::with_prefix("sesscache");
    let label = |r: &Reading| -> Labels { vec![("cache".to_string(), r.shown.to_string())] };
    // The names and their order come from `counters` alone: a counter added to the stats
    // shows up here too (with its HELP text from `HELP`).
    for (i, (name, _)) in counters(&Stats::default()).into_iter().enumerate() {
        let value = |r: &Reading| r.figures.as_ref().ok().map(|(s, _)| counters(s)[i].1);
        match help_of(name) {
            (Kind::Counter, help) => {
                let family = Family::<Labels, Counter>::default();
                for r in readings {
                    if let Some(v) = value(r) {
                        family.get_or_create(&label(r)).inc_by(v);
                    }
                }
                registry.register(name, help, family);
            }
            (Kind::Gauge, help) => {
                let family = Family::<Labels, Gauge<u64, std::sync::atomic::AtomicU64>>::default();
                for r in readings {
                    if let Some(v) = value(r) {
                        family.get_or_create(&label(r)).set(v);
                    }
                }
                registry.register(name, help, family);
            }
        }
    }
    let up = Family::<Labels, Gauge>::default();
    for r in readings {
        up.get_or_create(&label(r))
            .set(i64::from(r.figures.is_ok()));
    }
    registry.register(
        "up",
        "1 if the cache's figures were read, 0 if not (its backend did not answer): then \
         none of its other figures is given",
        up,
    );
    let surveys: Vec<(&Reading, &Survey)> = readings
        .iter()
        .filter_map(|r| match &r.figures {
            Ok((_, Some(sv))) => Some((r, sv)),
            _ => None,
        })
        .collect();
    if !surveys.is_empty() {
        let complete = Family::<Labels, Gauge>::default();
        let age = Family::<Labels, Gauge>::default();
        for (r, sv) in &surveys {
            complete
                .get_or_create(&label(r))
                .set(i64::from(sv.complete));
            if let Some(a) = sv.reported_ago_s {
                age.get_or_create(&label(r))
                    .set(i64::try_from(a).unwrap_or(i64::MAX));
            }
        }
        registry.register(
            "entries_complete",
            "redis: 1 if the survey counted every entry under the prefix, 0 if it stopped \
             early (entries and bytes are then lower bounds)",
            complete,
        );
        if surveys.iter().any(|(_, sv)| sv.reported_ago_s.is_some()) {
            registry.register(
                "report_age_seconds",
                "redis: seconds since a process last added its counters to Redis (each \
                 does about once a second while they change)",
                age,
            );
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail; the crate's encoder only passes on the writer's
    // errors.
    prometheus_text::encode(&mut out, &registry).expect("encoding into a String");
    out
}

/// `stats URL --format prometheus`: one exposition of one cache. A cache that opens but
/// cannot be read (a `redis` server that does not answer) still gives its
/// `sesscache_up 0`, then the error (exit status 5).
pub(crate) fn stats(cache: &Cache, shown: &str) -> Result<(), Failure> {
    let read = snapshot(cache);
    let reading = Reading {
        shown,
        figures: read
            .as_ref()
            .map(|x| x.clone())
            .map_err(|f| f.message.clone()),
    };
    let mut out = io::stdout().lock();
    out.write_all(exposition(&[reading]).as_bytes())?;
    out.flush()?;
    read.map(|_| ())
}

/// One cache the exporter reads.
struct Source {
    shown: String,
    cache: Cache,
    /// Whether the last read succeeded (a change is logged once).
    up: AtomicBool,
}

struct Exporter {
    sources: Vec<Source>,
    /// One scrape reads the caches at a time.
    scrape: Mutex<()>,
    /// Connections being served.
    active: AtomicUsize,
}

impl Exporter {
    /// Reads every cache now; the exposition.
    fn scrape(&self) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let readings: Vec<Reading> = self
            .sources
            .iter()
            .map(|s| {
                let figures = snapshot(&s.cache).map_err(|f| f.message);
                let now_up = figures.is_ok();
                if s.up.swap(now_up, Ordering::Relaxed) != now_up {
                    match &figures {
                        Ok(_) => eprintln!("sesscache exporter: {}: read again", s.shown),
                        Err(m) => eprintln!(
                            "sesscache exporter: {}: {m} (sesscache_up 0 until it is read again)",
                            s.shown
                        ),
                    }
                }
                Reading {
                    shown: &s.shown,
                    figures,
                }
            })
            .collect();
        exposition(&readings)
    }
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread it starts from now on)
/// and returns a descriptor that reads them (signalfd).
fn stop_signals() -> Result<OwnedFd, Failure> {
    // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset, which initialises it;
    // sigaddset, pthread_sigmask and signalfd only read the set (and write nothing else
    // than the thread's mask); signalfd returns a new descriptor that we own, or -1.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(fail(EXIT_INTERNAL, "cannot block SIGTERM and SIGINT"));
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(fail(
                EXIT_INTERNAL,
                format!("signalfd: {}", io::Error::last_os_error()),
            ));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The name of the signal read from a signalfd, after poll said it is readable.
fn read_signal(fd: &OwnedFd) -> &'static str {
    // SAFETY: a zeroed signalfd_siginfo is plain data; read writes at most its size into it.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is `size` writable bytes; fd is an open signalfd.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    match (n == size as isize).then_some(info.ssi_signo as i32) {
        Some(libc::SIGINT) => "SIGINT",
        _ => "SIGTERM",
    }
}

/// `sesscache exporter --listen ADDR URL...`: serves `/metrics` until SIGTERM or SIGINT.
pub(crate) fn exporter(listen: SocketAddr, urls: &[String]) -> Result<(), Failure> {
    // Before any thread is started (a redis cache starts its own), so that every thread
    // has them blocked and only the signalfd sees them.
    let signals = stop_signals()?;
    let mut sources: Vec<Source> = Vec::with_capacity(urls.len());
    for url in urls {
        let shown = sesscache::config::redacted(url);
        if sources.iter().any(|s| s.shown == shown) {
            return Err(fail(
                EXIT_USAGE,
                format!("the cache {shown} is given twice"),
            ));
        }
        let cache = Cache::open_existing(url).map_err(|e| {
            fail(
                status_of(e.kind),
                format!("cannot export {shown}: {}", e.message),
            )
        })?;
        sources.push(Source {
            shown,
            cache,
            up: AtomicBool::new(true),
        });
    }
    let listener = TcpListener::bind(listen)
        .map_err(|e| fail(EXIT_FAILURE, format!("cannot listen on {listen}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| fail(EXIT_FAILURE, format!("cannot listen on {listen}: {e}")))?;
    let ex = Arc::new(Exporter {
        sources,
        scrape: Mutex::new(()),
        active: AtomicUsize::new(0),
    });
    let names: Vec<&str> = ex.sources.iter().map(|s| s.shown.as_str()).collect();
    eprintln!(
        "sesscache exporter: serving http://{local}/metrics for {}",
        names.join(" ")
    );
    let signal = loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is two initialised pollfd structures, as the count says.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(fail(EXIT_INTERNAL, format!("poll: {e}")));
        }
        if fds[1].revents != 0 {
            break read_signal(&signals);
        }
        if fds[0].revents == 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => admit(&ex, stream),
            // Out of descriptors, a connection reset before it was accepted, ...: the next
            // one may do better; a pause keeps a persistent failure from spinning.
            Err(e) => {
                eprintln!("sesscache exporter: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    drop(listener);
    let until = Instant::now() + DRAIN;
    while ex.active.load(Ordering::Acquire) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("sesscache exporter: {signal}: stopped");
    Ok(())
}

/// Serves one accepted connection on a thread of its own, or answers 503 at once when
/// [`MAX_CONNECTIONS`] are being served.
fn admit(ex: &Arc<Exporter>, stream: TcpStream) {
    if ex.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        ex.active.fetch_sub(1, Ordering::AcqRel);
        // Never blocks the accepting thread: what does not fit the socket's buffer is lost.
        let _ = stream.set_nonblocking(true);
        let _ = respond(
            &stream,
            503,
            "Service Unavailable",
            "text/plain; charset=utf-8",
            "too many connections\n",
            false,
        );
        return;
    }
    let worker = Arc::clone(ex);
    let spawned = std::thread::Builder::new()
        .name("scrape".into())
        .spawn(move || {
            serve(&worker, &stream);
            worker.active.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        ex.active.fetch_sub(1, Ordering::AcqRel);
        eprintln!("sesscache exporter: cannot start a thread: {e}");
    }
}

/// The end of the request head (the blank line), if `buf` holds it.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

/// Reads one request head and answers it; the connection is then closed.
fn serve(ex: &Exporter, stream: &TcpStream) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let text = "text/plain; charset=utf-8";
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let mut reader = stream;
    let end = loop {
        if let Some(end) = head_end(&buf[..len]) {
            break end;
        }
        if len == buf.len() {
            let _ = respond(
                stream,
                431,
                "Request Header Fields Too Large",
                text,
                "request too large\n",
                false,
            );
            return;
        }
        let too_slow = || {
            let _ = respond(
                stream,
                408,
                "Request Timeout",
                text,
                "request not received in time\n",
                false,
            );
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            too_slow();
            return;
        }
        match reader.read(&mut buf[len..]) {
            Ok(0) => return,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                too_slow();
                return;
            }
            Err(_) => return,
        }
    };
    let line = buf[..end].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = std::str::from_utf8(line)
        .unwrap_or("")
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version), None) = (method, target, version, parts.next())
    else {
        let _ = respond(
            stream,
            400,
            "Bad Request",
            text,
            "bad request line\n",
            false,
        );
        return;
    };
    if !version.starts_with("HTTP/1.") {
        let _ = respond(stream, 400, "Bad Request", text, "HTTP/1.x only\n", false);
        return;
    }
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(
            stream,
            405,
            "Method Not Allowed",
            text,
            "GET or HEAD only\n",
            false,
        );
        return;
    }
    if path != "/metrics" {
        let _ = respond(
            stream,
            404,
            "Not Found",
            text,
            "not found: the metrics are at /metrics\n",
            head_only,
        );
        return;
    }
    let body = ex.scrape();
    let _ = respond(stream, 200, "OK", CONTENT_TYPE, &body, head_only);
}

/// Writes one HTTP/1.1 answer (`Connection: close`); without its body for HEAD. A 405 says
/// which methods are allowed.
fn respond(
    mut stream: &TcpStream,
    code: u16,
    reason: &str,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()?;
    // Lets the client read the whole answer before the close (rather than a reset, when
    // some of its request was not read).
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{exposition, head_end, Reading};
    use sesscache::store::Stats;

    #[test]
    fn every_counter_has_its_own_help_text() {
        for (name, _) in crate::counters(&Stats::default()) {
            let (_, help) = crate::help_of(name);
            assert!(!help.starts_with("NO HELP"), "{name} has no HELP text");
        }
        assert_eq!(crate::help_of("entries").0, crate::Kind::Gauge);
        assert_eq!(crate::help_of("bytes").0, crate::Kind::Gauge);
        assert_eq!(crate::help_of("hits").0, crate::Kind::Counter);
    }

    #[test]
    fn samples_are_labelled_escaped_and_absent_when_down() {
        let s = Stats {
            lookups: 7,
            entries: 3,
            ..Stats::default()
        };
        let text = exposition(&[
            Reading {
                shown: "shm:a\"b\\c",
                figures: Ok((s, None)),
            },
            Reading {
                shown: "redis://u:***@h",
                figures: Err("down".into()),
            },
        ]);
        assert!(text.contains("# TYPE sesscache_lookups_total counter\n"));
        assert!(text.contains("sesscache_lookups_total{cache=\"shm:a\\\"b\\\\c\"} 7\n"));
        assert!(text.contains("# TYPE sesscache_entries gauge\n"));
        assert!(text.contains("sesscache_entries{cache=\"shm:a\\\"b\\\\c\"} 3\n"));
        assert!(text.contains("sesscache_up{cache=\"redis://u:***@h\"} 0\n"));
        assert_eq!(text.matches("redis://").count(), 1, "{text}");
        assert!(!text.contains("entries_complete"));
    }

    #[test]
    fn request_heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(23));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
