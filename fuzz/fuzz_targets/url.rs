//! Fuzz target `url`: arbitrary bytes as a cache URL, given to `sesscache::config::parse`
//! (what `sesscache_open`, `SESSCACHE_URL` and the command-line tool hand it).
//!
//! Bytes that are not UTF-8 are made into text with U+FFFD replacements (the C API refuses
//! them before parsing; here they still reach the parser as odd characters). Beyond "never
//! panics", it asserts:
//! - every error has a message, and for a `redis…://` URL with an inline password (six or
//!   more characters, found nowhere else in the URL) the message does not quote it (a
//!   "password" in the query is no password to the parser, which may quote the query);
//! - a URL that parses still parses once passed through `config::redacted` (what logs and
//!   diagnostics show), and for a `redis` URL it gives the same configuration with the
//!   password `***`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sesscache::config::{self, Backend, Password};

/// The inline password of a `redis…://` URL (raw, percent-encoded), where the parser takes
/// one: what `config::redacted` hides when the first "://" is the scheme's.
fn inline_password(url: &str) -> Option<&str> {
    let shown = config::redacted(url);
    if shown == url {
        return None;
    }
    let start = url.find("://")? + 3;
    if !["redis", "redis+unix", "redis+cluster"].contains(&&url[..start - 3]) {
        return None;
    }
    let colon = start + url[start..].find(':')?;
    // `redacted` keeps everything from the '@' on: the password is what it replaced.
    let kept = shown.len() - (colon + 4);
    Some(&url[colon + 1..url.len() - kept])
}

fuzz_target!(|data: &[u8]| {
    let url = String::from_utf8_lossy(data);
    let url = url.as_ref();
    match config::parse(url) {
        Err(e) => {
            assert!(!e.0.is_empty(), "an error without a message for {url:?}");
            // The message may contain the password's text by chance (`ure_pl` is in the
            // list of known parameters): a leak is text that goes when the password does.
            if let Some(p) = inline_password(url) {
                if p.len() >= 6 && url.matches(p).count() == 1 && e.0.contains(p) {
                    let shown = config::parse(&config::redacted(url));
                    assert!(
                        shown.is_err_and(|e| e.0.contains(p)),
                        "the error for {url:?} quotes the password"
                    );
                }
            }
        }
        Ok(cfg) => {
            let shown = config::redacted(url);
            let again = match config::parse(&shown) {
                Ok(c) => c,
                Err(e) => panic!("{url:?} parses but its redacted form {shown:?} does not: {e}"),
            };
            if let Backend::Redis(r) = &cfg.backend {
                let mut want = cfg.clone();
                if let (Backend::Redis(w), Password::Inline(_)) = (&mut want.backend, &r.password) {
                    w.password = Password::Inline("***".to_string());
                }
                assert_eq!(
                    again, want,
                    "{url:?} and its redacted form {shown:?} differ"
                );
            }
        }
    }
});
