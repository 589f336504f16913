//! The shm backend tried as an attacker, a careless operator or a buggy neighbour would:
//! bytes changed anywhere in a live segment, segments made by somebody else, racing
//! creators, secrets left in expired entries.

use super::lock::Timing;
use super::segment::{self, Segment};
use super::shard::ENTRY_HEADER;
use super::tests::Name;
use super::ShmStore;
use crate::store::testing::{get, key, value};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The path of a test segment.
fn path(n: &Name) -> String {
    Segment::path(&n.0)
}

fn now() -> u64 {
    crate::clock::now()
}

/// Aborts the whole test process if `f` has not returned within `limit`: a hang is a
/// failure, not a test that never ends.
fn within<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            if d.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("hostile test: no answer within {limit:?}: a hang");
        std::process::abort();
    });
    let out = f();
    done.store(true, Ordering::Relaxed);
    out
}

/// A tiny deterministic generator (tests must be repeatable from their seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A one-shard store with these lock bounds.
fn one_shard(n: &Name, timing: Timing) -> ShmStore {
    let mut s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
    assert_eq!(s.shard_count(), 1);
    s.set_timing(timing);
    s
}

/// Lock bounds under which a live owner is never taken over during a test: 2 ms a wait.
fn never_stolen() -> Timing {
    Timing {
        budget: Duration::from_millis(2),
        steal_after: Duration::from_secs(60),
    }
}

fn quick_timing() -> Timing {
    Timing {
        budget: Duration::from_millis(2),
        steal_after: Duration::from_millis(10),
    }
}

/// Writes random bytes at random places of the mapping: half of them in the headers (the
/// segment's, the shards' lock words, counts, head and tail) and the indexes, where one
/// byte does the most harm, the rest anywhere.
fn vandalise(s: &ShmStore, rng: &mut Rng, writes: usize) {
    for _ in 0..writes {
        let off = match rng.below(4) {
            0 => rng.below(64),
            1 => {
                let sh = &s.shards[rng.below(s.shards.len())];
                // SAFETY: inside the shard's header (test-only pointer arithmetic).
                unsafe { sh.hdr.cast::<u8>().offset_from(s.segment.base) as usize + rng.below(64) }
            }
            2 => {
                let sh = &s.shards[rng.below(s.shards.len())];
                // SAFETY: inside the shard's index.
                unsafe {
                    sh.index.cast::<u8>().offset_from(s.segment.base) as usize
                        + rng.below(sh.index_cap * 8)
                }
            }
            _ => rng.below(s.segment.size),
        };
        let byte = match rng.below(3) {
            0 => 0,
            1 => 0xff,
            _ => rng.next() as u8,
        };
        // SAFETY: off < the mapping's size; test-only write into our own mapping.
        unsafe {
            s.segment
                .base
                .add(off.min(s.segment.size - 1))
                .write_volatile(byte)
        };
    }
}

/// Finding: one byte written into a shard header, an index or a lock word made processes
/// loop forever, fail every operation or crash. Now: whatever is written, every operation
/// returns promptly, never panics, and a hit is always intact and a value that was stored
/// under its key — never damaged bytes, never another key's value. (Whether it is the *last*
/// value depends on what the damage hid from a removal; removals walk the ring to keep that
/// rare: the count is printed.)
#[test]
fn random_writes_never_hang_crash_or_return_a_wrong_value() {
    crate::log::silence();
    within(Duration::from_secs(120), || {
        for seed in 1..=12u64 {
            let n = Name::new();
            let mut s = ShmStore::open(&n.0, Some(256 << 10), 0o600, 2048).unwrap();
            s.set_timing(quick_timing());
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut last: HashMap<u32, Vec<u8>> = HashMap::new();
            let mut ever: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
            let (mut hits, mut wrong, mut stale) = (0, 0, 0);
            for step in 0..6000 {
                let k = rng.below(400) as u32;
                match rng.below(8) {
                    0..=3 => {
                        let v = vec![(step % 251) as u8 ^ k as u8; 1 + rng.below(600)];
                        // Under random writes a put may time out or find no room: then
                        // what the key holds is unknown (a pending removal takes it).
                        ever.entry(k).or_default().push(v.clone());
                        match s.put(&key(k), value(&v, now() + 1000, false), now()) {
                            Ok(_) => {
                                last.insert(k, v);
                            }
                            Err(_) => {
                                last.remove(&k);
                            }
                        }
                    }
                    4..=6 => {
                        if let Some(got) = get(&s, &key(k), now()) {
                            hits += 1;
                            if !ever.get(&k).is_some_and(|vs| vs.contains(&got)) {
                                wrong += 1;
                            } else if last.get(&k) != Some(&got) {
                                stale += 1;
                            }
                        }
                    }
                    _ => {
                        let _ = s.remove(&key(k));
                        last.remove(&k);
                    }
                }
                if step % 4 == 0 {
                    let writes = 1 + rng.below(3);
                    vandalise(&s, &mut rng, writes);
                }
            }
            assert_eq!(
                wrong, 0,
                "seed {seed}: {wrong} wrong values among {hits} hits"
            );
            if stale > 0 {
                eprintln!("seed {seed}: {stale} of {hits} hits were an older value of their key");
            }
            assert!(
                hits > 100,
                "seed {seed}: the cache stopped working ({hits} hits)"
            );
        }
    });
}

/// Finding: when an entry that had been hit got its second chance, the move computed a new
/// checksum over whatever bytes were there, so bytes damaged in place became "valid".
#[test]
fn a_damaged_entry_is_not_laundered_by_its_second_chance() {
    crate::log::silence();
    let n = Name::new();
    let s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
    assert_eq!(s.shard_count(), 1);
    let payload = [0x11u8; 140];
    s.put(&key(0), value(&payload, now() + 1000, false), now())
        .unwrap();
    assert!(
        get(&s, &key(0), now()).is_some(),
        "hit: it earns a second chance"
    );
    // Damage the stored DER of entry 0 (the first entry, at ring offset 0).
    // SAFETY: test-only write inside the ring of our own mapping.
    unsafe { *s.shards[0].ring.add(ENTRY_HEADER + 32 + 70) ^= 0x40 };
    // Push it to the tail and past it: the ring turns over several times.
    for i in 1..2000 {
        s.put(&key(i), value(&payload, now() + 1000, false), now())
            .unwrap();
    }
    assert!(
        get(&s, &key(0), now()).is_none(),
        "a damaged entry came back"
    );
    assert!(s.counters().errors.load(Ordering::Relaxed) >= 1);
}

/// Whatever the lock word says (a dead process, a live one that never lets go, garbage),
/// an operation waits at most the budget, and the shard is usable again soon after.
#[test]
fn a_garbage_lock_word_costs_a_bounded_wait() {
    crate::log::silence();
    let n = Name::new();
    let mut s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
    s.set_timing(quick_timing());
    s.put(&key(1), value(b"kept", now() + 1000, false), now())
        .unwrap();
    let me = super::lock::owner_id();
    for garbage in [
        u64::from(u32::MAX),
        1 << 30,
        999_999,
        me,
        me | 1 << 31,
        7 << 32 | me,
    ] {
        // SAFETY: test-only write of the shard's lock word in our own mapping.
        unsafe { (*s.shards[0].hdr).lock.store(garbage, Ordering::Relaxed) };
        within(Duration::from_secs(10), || {
            let mut recovered = false;
            for _ in 0..200 {
                if let Some(v) = get(&s, &key(1), now()) {
                    assert_eq!(v, b"kept");
                    recovered = true;
                    break;
                }
            }
            assert!(recovered, "lock word {garbage:#x}: never recovered");
        });
    }
}

/// Finding: a segment created first by another user (or with group/other access) was used
/// without complaint. Here: one of ours with a wider mode, and a symlink in its place.
#[test]
fn a_segment_others_can_reach_is_refused() {
    let n = Name::new();
    drop(ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap());
    let mode = std::fs::metadata(path(&n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for wide in [0o644, 0o604, 0o660, 0o666] {
        std::fs::set_permissions(path(&n), std::fs::Permissions::from_mode(wide)).unwrap();
        let err = ShmStore::open(&n.0, None, 0o600, 1024).err().unwrap();
        assert_eq!(err.kind, crate::error::ErrorKind::Permission);
        let err = err.message;
        assert!(
            err.contains("refusing") && err.contains(&format!("{wide:04o}")),
            "{err}"
        );
    }
    // With mode=0660 a group this process is in may share it; others never.
    std::fs::set_permissions(path(&n), std::fs::Permissions::from_mode(0o660)).unwrap();
    assert!(ShmStore::open(&n.0, None, 0o660, 1024).is_ok());
    std::fs::set_permissions(path(&n), std::fs::Permissions::from_mode(0o664)).unwrap();
    assert!(ShmStore::open(&n.0, None, 0o660, 1024).is_err());
    // A symlink planted under the name is not followed.
    let target = Name::new();
    drop(ShmStore::open(&target.0, Some(64 << 10), 0o600, 1024).unwrap());
    std::fs::remove_file(path(&n)).unwrap();
    std::os::unix::fs::symlink(path(&target), path(&n)).unwrap();
    let err = ShmStore::open(&n.0, None, 0o600, 1024).err().unwrap();
    assert_eq!(err.kind, crate::error::ErrorKind::Permission);
    assert!(err.message.contains("symbolic link"), "{err}");
}

/// A new segment gets exactly the mode asked for, whatever the umask.
#[test]
fn a_new_segment_has_the_mode_asked_for() {
    let n = Name::new();
    drop(ShmStore::open(&n.0, Some(64 << 10), 0o660, 1024).unwrap());
    let mode = std::fs::metadata(path(&n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

/// Creation is race-free: many openers of a new name at once end up in one segment, and no
/// half-made or temporary file is left behind.
#[test]
fn racing_creators_share_one_segment() {
    let n = Name::new();
    let name = Arc::new(n.0.clone());
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let stores: Vec<ShmStore> = (0..8)
        .map(|_| {
            let (name, barrier) = (name.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                ShmStore::open(&name, Some(128 << 10), 0o600, 1024).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(stores.iter().filter(|s| s.segment.created).count(), 1);
    stores[3]
        .put(&key(5), value(b"one", now() + 100, false), now())
        .unwrap();
    for s in &stores {
        assert_eq!(get(s, &key(5), now()).unwrap(), b"one");
    }
    let leftovers = std::fs::read_dir(segment::SHM_DIR)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(&*n.0))
        .count();
    assert_eq!(leftovers, 1, "only the segment itself");
}

/// Whether `needle` appears anywhere in the mapping.
fn mapping_contains(s: &ShmStore, needle: &[u8]) -> bool {
    // SAFETY: reading our own whole mapping (test-only).
    let all = unsafe { std::slice::from_raw_parts(s.segment.base, s.segment.size) };
    all.windows(needle.len()).any(|w| w == needle)
}

/// Finding: expired entries kept their master secrets in the segment indefinitely. Now the
/// periodic sweep wipes those nobody looks up, and so does every open.
#[test]
fn expired_entries_are_wiped_by_the_sweep_and_at_open() {
    let n = Name::new();
    let s = ShmStore::open(&n.0, Some(256 << 10), 0o600, 1024).unwrap();
    let secret: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
    let t = now();
    for i in 0..50u32 {
        let mut v = secret.clone();
        v.extend_from_slice(&i.to_le_bytes());
        s.put(&key(i), value(&v, t + 5, false), t).unwrap();
    }
    assert!(mapping_contains(&s, &secret));
    // Long after they expired, operations on other keys carry the sweep along.
    let later = t + 1000;
    for i in 0..2000 {
        get(&s, &key(10_000 + i), later);
    }
    assert!(
        !mapping_contains(&s, &secret),
        "an expired secret is still in the segment"
    );
    assert!(s.counters().expirations.load(Ordering::Relaxed) >= 50);

    // At open: entries that expired while no process had the segment open.
    let m = Name::new();
    let a = ShmStore::open(&m.0, Some(256 << 10), 0o600, 1024).unwrap();
    a.put(&key(1), value(&secret, now() + 1, false), now())
        .unwrap();
    drop(a);
    std::thread::sleep(Duration::from_millis(2100));
    let b = ShmStore::open(&m.0, None, 0o600, 1024).unwrap();
    assert!(!mapping_contains(&b, &secret));
}

/// An operation that cannot get its lock in time is a miss, but a removal or a replacement
/// asked for then is not forgotten: this process carries it out before its next operation on
/// that shard, so an entry OpenSSL removed (a fatal alert) cannot come back.
#[test]
fn a_removal_that_could_not_get_its_lock_is_carried_out_later() {
    crate::log::silence();
    let n = Name::new();
    let s = one_shard(&n, never_stolen());
    let t = now();
    s.put(&key(1), value(b"removed", t + 100, false), t)
        .unwrap();
    s.put(&key(2), value(b"old", t + 100, false), t).unwrap();
    // SAFETY: test-only writes of the shard's lock word: held by a live thread (another
    // thread of this process, which never lets go).
    let word = unsafe { &(*s.shards[0].hdr).lock };
    let (holder, _stop) = super::lock::live_thread();
    word.store(holder, Ordering::Relaxed);
    assert_eq!(
        s.remove(&key(1)),
        Err(StoreError::Timeout),
        "no lock, no removal now"
    );
    assert_eq!(
        s.put(&key(2), value(b"new", t + 100, false), t),
        Err(StoreError::Timeout)
    );
    assert_eq!(
        s.get(&key(1), t, &mut |_| false).err(),
        Some(StoreError::Timeout),
        "a lookup that cannot lock is an error, not a miss"
    );
    word.store(0, Ordering::Relaxed);
    assert!(get(&s, &key(1), t).is_none(), "the removal was carried out");
    assert!(get(&s, &key(2), t).is_none(), "the replaced entry is gone");
    s.put(&key(2), value(b"newer", t + 100, false), t).unwrap();
    assert_eq!(get(&s, &key(2), t).unwrap(), b"newer");
}

/// A removal finds a copy the damaged index no longer leads to, so that no repair can bring
/// back a session OpenSSL asked to remove.
#[test]
fn a_removal_reaches_copies_the_index_lost() {
    crate::log::silence();
    let n = Name::new();
    let s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 1024).unwrap();
    let t = now();
    s.put(&key(1), value(b"to be removed", t + 100, false), t)
        .unwrap();
    // Lose its index slot (a stray write), then remove it.
    let sh = &s.shards[0];
    for i in 0..sh.index_cap {
        // SAFETY: test-only writes inside the shard's index.
        unsafe { sh.index.add(i).write_volatile(0) };
    }
    // SAFETY: test-only: keep the header consistent with the emptied index.
    unsafe {
        (*sh.hdr).index_used = 0;
        (*sh.hdr).live = 0;
    }
    assert!(
        get(&s, &key(1), t).is_none(),
        "unreachable through the index"
    );
    assert!(s.remove(&key(1)).unwrap(), "found in the ring");
    // A repair rebuilds the index from the ring: the removed session must not come back.
    // SAFETY: test-only write of the lock word: a process that no longer exists.
    unsafe {
        (*sh.hdr)
            .lock
            .store(u64::from(u32::MAX >> 2), Ordering::Relaxed)
    };
    assert!(get(&s, &key(1), t).is_none(), "a removed session came back");
}

/// Finding of the fuzz target `shm_shard` (input `02 08 00 00` then 20 bytes `ff`): a
/// shard whose head and tail were both near `u64::MAX` passed the header check (an empty
/// ring, far along) and the next store overflowed adding its entry's length to the head: a
/// panic where overflow is checked, a wrapped counter where it is not. Such counters are
/// damage now, and the rebuild brings them back near 0.
#[test]
fn head_and_tail_near_the_top_of_their_range_are_damage() {
    crate::log::silence();
    let n = Name::new();
    let s = ShmStore::open(&n.0, Some(64 << 10), 0o600, 2048).unwrap();
    for k in 0..2 {
        s.put(&key(k), value(&[k as u8; 100], now() + 1000, false), now())
            .unwrap();
    }
    // The fuzz input's write: 20 bytes of 0xff after the lock's owner (the lock's generation,
    // the head and the tail).
    // SAFETY: test-only write inside shard 0's header, past its lock word's owner half, in
    // our mapping.
    unsafe { std::ptr::write_bytes(s.shards[0].hdr.cast::<u8>().add(4), 0xff, 20) };
    for k in 2..60 {
        s.put(&key(k), value(&[k as u8; 100], now() + 1000, false), now())
            .unwrap();
    }
    for k in 2..60 {
        assert_eq!(get(&s, &key(k), now()), Some(vec![k as u8; 100]), "key {k}");
    }
    assert!(
        s.counters()
            .errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

/// A test hook inside the critical section of every store operation
/// (`ShmStore::with_shard`, between taking the lock and the first write): a thread can park
/// there, or stop its whole process, holding the lock.
pub(super) mod hook {
    use std::cell::RefCell;

    thread_local! {
        static PARK: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    /// Runs `f` inside the next operation of this thread, once.
    pub fn park_once(f: impl FnOnce() + 'static) {
        PARK.with(|p| *p.borrow_mut() = Some(Box::new(f)));
    }

    pub fn in_critical_section() {
        if let Some(f) = PARK.with(|p| p.borrow_mut().take()) {
            f();
        }
    }
}

/// Shard 0's bytes after its lock word: what a holder could write.
fn shard_bytes(s: &ShmStore) -> Vec<u8> {
    let sh = &s.shards[0];
    let len = segment::SHARD_HEADER_BYTES + sh.index_cap * 8 + sh.ring_cap;
    let mut out = vec![0u8; len - 8];
    // SAFETY: the shard's header, index and ring are `len` contiguous bytes of our mapping.
    unsafe { std::ptr::copy_nonoverlapping(sh.hdr.cast::<u8>().add(8), out.as_mut_ptr(), len - 8) };
    out
}

/// Takes shard 0's lock over from a stalled holder: the first store operation that gets it.
fn take_over_from_stalled(s: &ShmStore) {
    within(Duration::from_secs(10), || {
        while Store::get(s, &key(99), now(), &mut |_| false).is_err() {}
    });
}

/// Holds shard 0's lock while `finish` lets a holder that lost it go on and waits for it to
/// end; asserts that it wrote nothing into the shard and released nothing of ours (`who`
/// names it in the messages). Returns what `finish` returned.
fn while_holding<T>(s: &ShmStore, who: &str, finish: impl FnOnce() -> T) -> T {
    let mut ev = super::shard::Events::default();
    let mut held = s.shards[0]
        .lock(s.rel(now()), &s.timing, &mut ev)
        .expect("the lock is free");
    let before = shard_bytes(s);
    let out = finish();
    assert!(before == shard_bytes(s), "{who} wrote into the shard");
    assert!(!held.lost(), "{who} released the lock of its successor");
    drop(held);
    out
}

/// Issue 22: a holder that stalls past `steal_after` (here a thread parked by the test hook
/// inside a store) loses the lock; when it wakes it writes nothing into the shard, its store
/// fails, and it releases nothing of the thread that holds the lock then.
#[test]
fn a_thread_stalled_inside_a_store_writes_nothing_after_it_wakes() {
    crate::log::silence();
    let n = Name::new();
    let s = one_shard(&n, quick_timing());
    let s = Arc::new(s);
    let t = now();
    s.put(&key(1), value(b"old", t + 100, false), t).unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    let s2 = s.clone();
    let stalled = std::thread::spawn(move || {
        hook::park_once(move || {
            held_tx.send(()).unwrap();
            wake_rx.recv().unwrap();
        });
        s2.put(&key(1), value(b"stale", t + 100, false), t)
    });
    held_rx.recv().unwrap();
    take_over_from_stalled(&s);
    s.put(&key(1), value(b"new", t + 100, false), t).unwrap();
    s.put(&key(2), value(b"other", t + 100, false), t).unwrap();
    let stored = while_holding(&s, "the stalled thread", || {
        wake_tx.send(()).unwrap();
        stalled.join().unwrap()
    });
    assert_eq!(stored, Err(StoreError::Timeout), "the stalled store fails");
    assert_eq!(get(&*s, &key(2), t), Some(b"other".to_vec()));
    assert_ne!(get(&*s, &key(1), t), Some(b"stale".to_vec()));
}

/// The other half of the stall test: the child process (this test binary, run by
/// `a_process_stopped_holding_the_lock_writes_nothing_after_it_continues`) stops itself with
/// SIGSTOP inside a store, holding the lock, then tries to finish that store.
#[test]
#[ignore = "run as a child process by the SIGSTOP test"]
fn child_stops_holding_the_lock() {
    let Ok(name) = std::env::var("SESSCACHE_TEST_SEGMENT") else {
        return;
    };
    crate::log::silence();
    let mut s = ShmStore::open_existing(&name, None, 0o600, 1024).unwrap();
    s.set_timing(quick_timing());
    // Straight to file descriptor 1: the test harness captures what `print!` writes.
    let say = |what: &str| {
        // SAFETY: writes the bytes of `what` to standard output.
        unsafe { libc::write(1, what.as_ptr().cast(), what.len()) };
    };
    hook::park_once(move || {
        say("<<lock held>>\n");
        // SAFETY: stops this process until the parent continues it.
        unsafe { libc::raise(libc::SIGSTOP) };
    });
    let t = now();
    let r = s.put(&key(1), value(b"stale", t + 100, false), t);
    say(&format!("stalled store: {r:?}\n"));
}

/// Issue 22: a process stopped (SIGSTOP) while it holds a shard lock is taken over after
/// `steal_after`; continued, it writes nothing into the shard and releases nothing.
#[test]
fn a_process_stopped_holding_the_lock_writes_nothing_after_it_continues() {
    use std::io::BufRead;
    crate::log::silence();
    let n = Name::new();
    let s = one_shard(&n, quick_timing());
    let t = now();
    s.put(&key(1), value(b"old", t + 100, false), t).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::shm::hostile::child_stops_holding_the_lock",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SESSCACHE_TEST_SEGMENT", &n.0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    // (The harness writes "test NAME ... " before the test's own output, on the same line.)
    within(Duration::from_secs(30), || {
        let mut line = String::new();
        while !line.contains("<<lock held>>") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the child ended early"
            );
        }
        let mut st = 0;
        // SAFETY: waiting for our own child to stop.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WUNTRACED) };
        assert!(
            r == pid && libc::WIFSTOPPED(st),
            "the child stopped holding the lock"
        );
    });
    take_over_from_stalled(&s);
    s.put(&key(1), value(b"new", t + 100, false), t).unwrap();
    let rest = while_holding(&s, "the stopped process", || {
        // SAFETY: continues our own stopped child.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let mut rest = String::new();
        within(Duration::from_secs(30), || {
            std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        });
        assert!(child.wait().unwrap().success(), "child: {rest}");
        rest
    });
    assert!(
        rest.contains("stalled store: Err(Timeout)"),
        "the stalled store fails: {rest}"
    );
    assert_eq!(get(&s, &key(1), t), Some(b"new".to_vec()));
}

/// Issue 22: `occupancy` (what `stats` reads) dropped the events of the locks it took, so a
/// repair it made was never counted, nor a lock it could not have.
#[test]
fn occupancy_counts_what_its_locks_find() {
    crate::log::silence();
    let n = Name::new();
    let s = one_shard(&n, never_stolen());
    let t = now();
    s.put(&key(1), value(b"one", t + 100, false), t).unwrap();
    let errors = || s.counters().errors.load(Ordering::Relaxed);
    // A header that fails its check: the lock's repair is an error.
    let hdr = s.shards[0].hdr;
    // SAFETY: test-only write of shard 0's live count in our own mapping.
    unsafe { (*hdr).live = 7 };
    assert_eq!(errors(), 0);
    assert_eq!(Store::occupancy(&s), (1, 3), "rebuilt, then counted");
    assert_eq!(errors(), 1, "the repair is counted");
    // A lock held by a live thread: the shard is left out, and that is an error too.
    let (holder, _stop) = super::lock::live_thread();
    // SAFETY: test-only write of the shard's lock word.
    unsafe { (*s.shards[0].hdr).lock.store(holder, Ordering::Relaxed) };
    assert_eq!(Store::occupancy(&s), (0, 0));
    assert_eq!(errors(), 2, "the busy lock is counted");
    // SAFETY: as above: released.
    unsafe { (*s.shards[0].hdr).lock.store(0, Ordering::Relaxed) };
}
