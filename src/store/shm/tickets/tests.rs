//! The ticket-key table of an `shm:` segment: shared by the processes that open it, first
//! add wins, bounded room, and no byte value in the table can crash, hang or mislead it.

use super::super::lock::Timing;
use super::super::segment::Segment;
use super::super::tests::Name;
use super::super::ShmStore;
use super::{LOCK_AREA, SLOTS, SLOT_BYTES, TABLE_BYTES, TABLE_OFFSET, USED};
use crate::store::testing::{get, key, value};
use crate::store::{Store, StoreError, MAX_TICKET_RECORD_BYTES};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn now() -> u64 {
    crate::clock::now()
}

fn open(n: &Name) -> ShmStore {
    ShmStore::open(&n.0, Some(256 << 10), 0o600, 1024).unwrap()
}

/// (seq, bytes) of every record, by seq.
fn records(s: &ShmStore) -> Vec<(u64, Vec<u8>)> {
    let mut r: Vec<(u64, Vec<u8>)> = s
        .ticket_records()
        .unwrap()
        .into_iter()
        .map(|r| (r.seq, r.bytes.as_slice().to_vec()))
        .collect();
    r.sort();
    r
}

fn seqs(s: &ShmStore) -> Vec<u64> {
    records(s).into_iter().map(|(seq, _)| seq).collect()
}

fn errors(s: &ShmStore) -> u64 {
    s.counters().errors.load(Ordering::Relaxed)
}

/// Whether the segment's file holds `needle` anywhere.
fn segment_contains(n: &Name, needle: &[u8]) -> bool {
    let bytes = std::fs::read(Segment::path(&n.0)).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The table's lock word.
fn lock_word(s: &ShmStore) -> &std::sync::atomic::AtomicU64 {
    // SAFETY: the lock word at TABLE_OFFSET of our own mapping, aligned, living as long as
    // `s`.
    unsafe {
        &*s.segment
            .base
            .add(TABLE_OFFSET)
            .cast::<std::sync::atomic::AtomicU64>()
    }
}

fn quick(s: &mut ShmStore) {
    s.set_timing(Timing {
        budget: Duration::from_millis(2),
        steal_after: Duration::from_millis(10),
    });
}

#[test]
fn first_add_wins_across_two_handles() {
    let n = Name::new();
    let a = open(&n);
    let b = ShmStore::open(&n.0, None, 0o600, 1024).unwrap();
    let until = now() + 3600;
    assert_eq!(a.add_ticket_record(1, b"first", until), Ok(true));
    assert_eq!(b.add_ticket_record(1, b"second", until), Ok(false));
    assert_eq!(a.add_ticket_record(1, b"third", until), Ok(false));
    assert_eq!(records(&b), [(1, b"first".to_vec())]);
    assert_eq!(b.add_ticket_record(2, b"two", until), Ok(true));
    assert_eq!(records(&a), [(1, b"first".to_vec()), (2, b"two".to_vec())]);
    // Sequence number 0 and empty records are records like any other.
    assert_eq!(a.add_ticket_record(0, b"", until), Ok(true));
    assert_eq!(b.add_ticket_record(0, b"x", until), Ok(false));
    assert_eq!(records(&b)[0], (0, Vec::new()));
    // The largest record fits; one byte more is the caller's error, not counted.
    let big = [0xabu8; MAX_TICKET_RECORD_BYTES];
    assert_eq!(a.add_ticket_record(u64::MAX, &big, until), Ok(true));
    assert_eq!(records(&b).last().unwrap(), &(u64::MAX, big.to_vec()));
    assert_eq!(
        a.add_ticket_record(9, &[0; MAX_TICKET_RECORD_BYTES + 1], until),
        Err(StoreError::TooLarge)
    );
    assert_eq!(errors(&a), 0);
}

#[test]
fn racing_adders_agree_on_one_winner() {
    let n = Name::new();
    let _first = open(&n);
    let until = now() + 3600;
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let name = n.0.clone();
            std::thread::spawn(move || {
                let s = ShmStore::open(&name, None, 0o600, 1024).unwrap();
                let won = s.add_ticket_record(7, &[t; 48], until).unwrap();
                (won, records(&s))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|(won, _)| *won).count(), 1);
    let winner = results.iter().find(|(won, _)| *won).unwrap().1.clone();
    assert_eq!(winner.len(), 1);
    for (_, seen) in &results {
        assert_eq!(seen, &winner, "every adder reads the winner's record");
    }
}

#[test]
fn dropped_records_are_wiped() {
    let n = Name::new();
    let a = open(&n);
    let b = ShmStore::open(&n.0, None, 0o600, 1024).unwrap();
    let until = now() + 3600;
    let secret = [0x7eu8; 64];
    a.add_ticket_record(3, &secret, until).unwrap();
    a.add_ticket_record(4, b"four", until).unwrap();
    assert!(segment_contains(&n, &secret));
    b.drop_ticket_records(&[3, 99]).unwrap();
    assert_eq!(seqs(&a), [4]);
    assert!(
        !segment_contains(&n, &secret),
        "dropped bytes are still there"
    );
    b.drop_ticket_records(&[]).unwrap();
    b.drop_ticket_records(&[4]).unwrap();
    assert!(records(&a).is_empty());
    // The place is used again.
    assert_eq!(a.add_ticket_record(3, b"again", until), Ok(true));
    assert_eq!(records(&b), [(3, b"again".to_vec())]);
}

#[test]
fn a_full_table_drops_expired_records_then_the_lowest() {
    let n = Name::new();
    let s = open(&n);
    let t = now();
    let pattern = |seq: u64| [seq as u8 | 0x80; 40];
    for seq in 10..10 + SLOTS as u64 {
        let until = if seq == 15 || seq == 20 {
            t - 10
        } else {
            t + 3600
        };
        assert_eq!(s.add_ticket_record(seq, &pattern(seq), until), Ok(true));
    }
    assert_eq!(seqs(&s).len(), SLOTS);
    // Full: the expired ones go first, the lowest of them first.
    assert_eq!(s.add_ticket_record(100, &pattern(100), t + 3600), Ok(true));
    assert!(!seqs(&s).contains(&15) && seqs(&s).contains(&20));
    assert!(
        !segment_contains(&n, &pattern(15)),
        "evicted bytes are wiped"
    );
    assert_eq!(s.add_ticket_record(101, &pattern(101), t + 3600), Ok(true));
    assert!(!seqs(&s).contains(&20));
    // None expired: the lowest sequence numbers go.
    assert_eq!(s.add_ticket_record(102, &pattern(102), t + 3600), Ok(true));
    assert_eq!(s.add_ticket_record(5, &pattern(5), t + 3600), Ok(true));
    let left = seqs(&s);
    assert_eq!(left.len(), SLOTS);
    assert!(!left.contains(&10) && !left.contains(&11), "{left:?}");
    assert!(left.contains(&5) && left.contains(&102), "{left:?}");
    // What is there is still first-add-wins.
    assert_eq!(s.add_ticket_record(102, b"late", t + 3600), Ok(false));
    assert_eq!(errors(&s), 0);
}

#[test]
fn sessions_and_records_live_side_by_side() {
    let n = Name::new();
    let s = open(&n);
    let until = now() + 3600;
    s.add_ticket_record(1, b"record", until).unwrap();
    for i in 0..2000 {
        s.put(&key(i), value(&[i as u8; 100], now() + 100, false), now())
            .unwrap();
    }
    assert_eq!(get(&s, &key(1999), now()).unwrap(), [1999u32 as u8; 100]);
    // Flushing the sessions leaves the records.
    assert!(s.flush().unwrap() > 0);
    assert_eq!(records(&s), [(1, b"record".to_vec())]);
}

/// A slot's bytes overwritten (by a hostile or broken process) come out as they are: the
/// cache core refuses what it cannot open. The store only has to stay in bounds.
#[test]
fn overwritten_bytes_come_out_as_they_are() {
    let n = Name::new();
    let s = open(&n);
    s.add_ticket_record(1, &[1; 32], now() + 3600).unwrap();
    let slot = (0..SLOTS)
        .find(|&i| {
            // SAFETY: reading slot i's state in our own mapping.
            unsafe {
                s.segment
                    .base
                    .add(TABLE_OFFSET + LOCK_AREA + i * SLOT_BYTES + 20)
                    .cast::<u32>()
                    .read_volatile()
                    == USED
            }
        })
        .unwrap();
    s.fuzz_overwrite_tickets(slot * SLOT_BYTES + 24 + 4, &[0xee; 8]);
    let got = records(&s);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].1[4..12], &[0xee; 8]);
    // A length over a slot's: the record is dropped, counted.
    s.fuzz_overwrite_tickets(
        ShmStore::fuzz_ticket_len_offset(slot),
        &(MAX_TICKET_RECORD_BYTES as u32 + 1).to_le_bytes(),
    );
    assert!(records(&s).is_empty());
    assert_eq!(errors(&s), 1);
    assert!(records(&s).is_empty());
    assert_eq!(errors(&s), 1, "counted once: the slot was wiped");
}

/// A tiny deterministic generator.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Garbage over the whole table, lock word and all, with used slots of every length up to
/// `u32::MAX`, and duplicates: every operation returns promptly, without a panic; what
/// comes out fits a record; the table works again afterwards.
#[test]
fn garbage_in_the_table_never_crashes_or_hangs() {
    crate::log::silence();
    let n = Name::new();
    let mut s = open(&n);
    quick(&mut s);
    let t0 = Instant::now();
    for seed in 1..=200u64 {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut garbage = vec![0u8; TABLE_BYTES];
        for b in garbage.iter_mut() {
            *b = next(&mut x) as u8;
        }
        for i in 0..SLOTS {
            let at = LOCK_AREA + i * SLOT_BYTES;
            let r = next(&mut x);
            if r % 4 != 0 {
                garbage[at + 20..at + 24].copy_from_slice(&USED.to_le_bytes());
            }
            let len: u32 = match r % 5 {
                0 => u32::MAX,
                1 => MAX_TICKET_RECORD_BYTES as u32 + 1,
                2 => MAX_TICKET_RECORD_BYTES as u32,
                3 => (r >> 32) as u32 % 200,
                _ => (r >> 32) as u32,
            };
            garbage[at + 16..at + 20].copy_from_slice(&len.to_le_bytes());
            if r % 7 == 0 {
                // A duplicate of slot 0's sequence number.
                let dup = garbage[LOCK_AREA..LOCK_AREA + 8].to_vec();
                garbage[at..at + 8].copy_from_slice(&dup);
            }
        }
        // The lock word too, unless this round keeps it free.
        if seed % 2 == 0 {
            garbage[..4].copy_from_slice(&[0; 4]);
        }
        // SAFETY: the table lies inside our own mapping's header page; test-only write.
        unsafe {
            std::ptr::copy_nonoverlapping(
                garbage.as_ptr(),
                s.segment.base.add(TABLE_OFFSET),
                TABLE_BYTES,
            )
        };
        for round in 0..3 {
            let out = match (seed + round) % 3 {
                0 => s.ticket_records().map(|r| r.len()),
                1 => s
                    .add_ticket_record(seed, b"fresh", now() + 3600)
                    .map(usize::from),
                _ => s.drop_ticket_records(&[seed, 1, 2]).map(|()| 0),
            };
            // The garbage lock word may name a live process: a timeout, then a take-over.
            assert!(
                matches!(out, Ok(_) | Err(StoreError::Timeout)),
                "seed {seed}: {out:?}"
            );
        }
        let mut recs = Err(StoreError::Timeout);
        for _ in 0..200 {
            recs = s.ticket_records();
            if recs.is_ok() {
                break;
            }
        }
        let recs = recs.unwrap_or_else(|e| panic!("seed {seed}: {e:?}"));
        assert!(recs.len() <= SLOTS);
        let mut seen: Vec<u64> = recs.iter().map(|r| r.seq).collect();
        assert!(recs
            .iter()
            .all(|r| r.bytes.len() <= MAX_TICKET_RECORD_BYTES));
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), recs.len(), "seed {seed}: one record per seq");
    }
    assert!(errors(&s) > 0);
    // The table still works: cleared, then used.
    let all: Vec<u64> = s.ticket_records().unwrap().iter().map(|r| r.seq).collect();
    s.drop_ticket_records(&all).unwrap();
    assert!(records(&s).is_empty());
    assert_eq!(s.add_ticket_record(1, b"one", now() + 3600), Ok(true));
    assert_eq!(records(&s), [(1, b"one".to_vec())]);
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
}

/// A process that died holding the table's lock: the next user takes it over, checks the
/// table and goes on, with an error counted.
#[test]
fn a_lock_left_by_a_dead_process_is_recovered() {
    crate::log::silence();
    let n = Name::new();
    let s = open(&n);
    s.add_ticket_record(1, b"kept", now() + 3600).unwrap();
    // SAFETY: fork in a test; the child only exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: the child exits at once.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: reaping our own child, so that its PID no longer exists.
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    lock_word(&s).store(child as u64, Ordering::Relaxed);
    let t0 = Instant::now();
    assert_eq!(s.add_ticket_record(2, b"new", now() + 3600), Ok(true));
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(errors(&s), 1);
    assert_eq!(lock_word(&s).load(Ordering::Relaxed) as u32, 0, "released");
    assert_eq!(records(&s), [(1, b"kept".to_vec()), (2, b"new".to_vec())]);
}

/// A live owner that never lets go: a bounded wait, a timeout counted as an error, and
/// then the lock is taken over.
#[test]
fn a_stuck_owner_costs_timeouts_then_is_taken_over() {
    crate::log::silence();
    let n = Name::new();
    let mut s = open(&n);
    quick(&mut s);
    s.add_ticket_record(1, b"one", now() + 3600).unwrap();
    // A live thread that will never release it.
    let (holder, _stop) = super::super::lock::live_thread();
    lock_word(&s).store(holder, Ordering::Relaxed);
    let t0 = Instant::now();
    assert_eq!(s.ticket_records().err(), Some(StoreError::Timeout));
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(errors(&s), 1);
    let mut out = Err(StoreError::Timeout);
    for _ in 0..200 {
        out = s.ticket_records();
        if out.is_ok() {
            break;
        }
    }
    assert_eq!(out.unwrap().len(), 1);
}
