//! `sesscache tickets`: the ticket-key generations of a cache with shared tickets
//! (`tickets=shared`), never the keys; `rotate` makes a new generation, `revoke` one that
//! drops every older key.

use crate::Failure;
use sesscache::cache::tickets::Generation;
use sesscache::cache::Cache;
use std::io::{self, Write};

/// UTC, ISO 8601 to the second, from Unix seconds.
pub fn utc(t: u64) -> String {
    if t == u64::MAX {
        return "never".into();
    }
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which generation encrypts at `now`: the valid one that started last.
fn encrypting(gens: &[Generation], now: u64) -> Option<u64> {
    gens.iter()
        .filter_map(|g| g.key.as_ref().ok().map(|k| (g.seq, k)))
        .filter(|(_, k)| {
            let half = k.decrypt_until.saturating_sub(k.enc_until) / 2;
            k.enc_from <= now && now < k.enc_until.saturating_add(half)
        })
        .max_by_key(|(seq, k)| (k.enc_from, *seq))
        .map(|(seq, _)| seq)
}

pub fn list(url: &str, json: bool) -> Result<(), Failure> {
    let cache = Cache::open_existing(url)?;
    let gens = cache.ticket_generations()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let current = encrypting(&gens, now);
    let mut out = io::stdout().lock();
    if json {
        let items: Vec<String> = gens
            .iter()
            .map(|g| match &g.key {
                Ok(k) => format!(
                    "{{\"generation\":{},\"name\":\"{}\",\"created\":{},\"encrypts_from\":{},\"encrypts_until\":{},\"decrypts_until\":{},\"revokes_older\":{},\"encrypting\":{},\"refused\":null}}",
                    g.seq,
                    hex(&k.name),
                    k.created,
                    k.enc_from,
                    k.enc_until,
                    k.decrypt_until,
                    k.revokes,
                    current == Some(g.seq)
                ),
                Err(why) => format!(
                    "{{\"generation\":{},\"refused\":\"{why}\"}}",
                    g.seq
                ),
            })
            .collect();
        writeln!(out, "[{}]", items.join(","))?;
        return Ok(());
    }
    if gens.is_empty() {
        writeln!(
            out,
            "no ticket keys in {} (servers with tickets=shared make them when they start)",
            sesscache::config::redacted(url)
        )?;
        return Ok(());
    }
    for g in &gens {
        match &g.key {
            Ok(k) => writeln!(
                out,
                "generation {}  name {}  created {}  encrypts {} .. {}  decrypts until {}{}{}",
                g.seq,
                hex(&k.name),
                utc(k.created),
                utc(k.enc_from),
                utc(k.enc_until),
                utc(k.decrypt_until),
                if current == Some(g.seq) {
                    "  (encrypting now)"
                } else if k.enc_from > now {
                    "  (next)"
                } else {
                    ""
                },
                if k.revokes {
                    "  (revoked older keys)"
                } else {
                    ""
                },
            )?,
            Err(why) => writeln!(out, "generation {}  REFUSED: the record {why}", g.seq)?,
        }
    }
    Ok(())
}

pub fn rotate(url: &str, revoke: bool) -> Result<(), Failure> {
    let cache = Cache::open_existing(url)?;
    let seq = cache.rotate_tickets(revoke)?;
    let gens = cache.ticket_generations()?;
    let from = gens
        .iter()
        .find(|g| g.seq == seq)
        .and_then(|g| g.key.as_ref().ok())
        .map_or_else(|| "?".into(), |k| utc(k.enc_from));
    if revoke {
        println!(
            "generation {seq} encrypts from {from}; every older key was dropped: servers stop opening their tickets at their next refresh"
        );
    } else {
        println!("generation {seq} encrypts from {from} (every server holds it by then)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_796_673_001), "2026-12-07T19:50:01Z");
    }
}
