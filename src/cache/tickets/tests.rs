//! Shared ticket keys between "processes" (several `Tickets` on one store), with time
//! driven by the tests.

use super::key::NAME_LEN;
use super::plan::Timing;
use super::record::RecordSeal;
use super::*;
use crate::secret::SecretBytes;
use crate::store::memory::{Limits, MemoryStore};
use crate::store::{Entry, Found, SessionKey, Stamp, TicketRecord};
use std::sync::atomic::AtomicBool;

/// A store whose ticket records can be made to fail (a backend that went down) and
/// altered (an adversary with write access).
struct Backend {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Backend {
    fn new() -> Arc<Backend> {
        Arc::new(Backend {
            inner: MemoryStore::new(Limits {
                capacity: 10,
                max_bytes: 1 << 20,
                max_value_bytes: 1024,
            }),
            down: AtomicBool::new(false),
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            Err(StoreError::Unavailable)
        } else {
            Ok(())
        }
    }
}

impl Store for Backend {
    fn put(&self, key: &SessionKey, entry: Entry, now: u64) -> Result<Stamp, StoreError> {
        self.inner.put(key, entry, now)
    }
    fn get(
        &self,
        key: &SessionKey,
        now: u64,
        known: &mut dyn FnMut(Stamp) -> bool,
    ) -> Result<Option<Found>, StoreError> {
        self.inner.get(key, now, known)
    }
    fn take(&self, key: &SessionKey, now: u64) -> Result<Option<SecretBytes>, StoreError> {
        self.inner.take(key, now)
    }
    fn remove(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.inner.remove(key)
    }
    fn counters(&self) -> &Counters {
        self.inner.counters()
    }
    fn occupancy(&self) -> (u64, u64) {
        self.inner.occupancy()
    }
    fn ticket_records(&self) -> Result<Vec<TicketRecord>, StoreError> {
        self.check()?;
        self.inner.ticket_records()
    }
    fn add_ticket_record(
        &self,
        seq: u64,
        bytes: &[u8],
        keep_until: u64,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.add_ticket_record(seq, bytes, keep_until)
    }
    fn drop_ticket_records(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.drop_ticket_records(seqs)
    }
}

const T: Timing = Timing {
    period: 100,
    lifetime: 300,
    lead: 10,
    refresh_ms: 5000,
};
/// In the future: the `memory:` table drops records by the real clock.
const START: u64 = 4_000_000_000;

fn process(backend: &Arc<Backend>) -> Tickets {
    Tickets::new(
        backend.clone(),
        Arc::new(RecordSeal::new(None, b"test")),
        T,
        true,
    )
}

/// The name of the key a process encrypts with at `now`, and whether it is its own.
fn issue(p: &Tickets, now: u64) -> ([u8; NAME_LEN], bool) {
    p.with_encryptor(now, |k| (k.name, k.is_local())).unwrap()
}

/// Whether a process opens a ticket named `name` at `now`, and renews it.
fn open(p: &Tickets, name: &[u8; NAME_LEN], now: u64) -> Option<bool> {
    p.with_decryptor(name, now, |_, renew| renew)
}

#[test]
fn two_processes_open_each_others_tickets() {
    let b = Backend::new();
    let (a, c) = (process(&b), process(&b));
    a.refresh_at(START);
    c.refresh_at(START + 1);
    let (name, local) = issue(&a, START + 2);
    assert!(!local);
    assert_eq!(issue(&c, START + 2).0, name);
    assert_eq!(open(&c, &name, START + 3), Some(false));
    // One key was made, and its successor: not one per process.
    assert_eq!(b.inner.ticket_records().unwrap().len(), 2);
    assert_eq!(
        a.counters().created.load(Ordering::Relaxed) + c.counters().created.load(Ordering::Relaxed),
        2
    );
}

#[test]
fn a_ticket_resumes_in_the_next_generation_and_not_after_its_window() {
    let b = Backend::new();
    let (a, c) = (process(&b), process(&b));
    let mut now = START;
    a.refresh_at(now);
    let (name, _) = issue(&a, now);
    // Into the next generation: still opens, and is renewed.
    while now < START + T.period + 20 {
        now += 5;
        a.refresh_at(now);
        c.refresh_at(now);
    }
    assert_ne!(issue(&a, now).0, name);
    assert_eq!(open(&c, &name, now), Some(true));
    // Past its decryption window (period + lifetime after it started): refused.
    while now < START + T.period + T.lifetime + 5 {
        now += 5;
        a.refresh_at(now);
        c.refresh_at(now);
    }
    assert_eq!(open(&c, &name, now), None);
    assert!(c.counters().unknown.load(Ordering::Relaxed) >= 1);
    // The expired records are gone from the backend too.
    let seqs: Vec<u64> = b
        .inner
        .ticket_records()
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert!(!seqs.contains(&1), "{seqs:?}");
}

#[test]
fn a_process_whose_refresh_is_late_issues_only_tickets_the_others_open() {
    let b = Backend::new();
    let (fast, slow) = (process(&b), process(&b));
    fast.refresh_at(START);
    slow.refresh_at(START);
    let mut now = START;
    // `fast` refreshes every 5 s; `slow` only every 170 s (it was stopped, or its thread
    // starved): every ticket `slow` issues opens on `fast`.
    while now < START + 1500 {
        now += 5;
        fast.refresh_at(now);
        if (now - START) % 170 == 0 {
            slow.refresh_at(now);
        }
        let (name, local) = issue(&slow, now);
        assert!(!local);
        assert!(open(&fast, &name, now).is_some(), "at +{}", now - START);
        let (name, _) = issue(&fast, now);
        // And what `fast` issues, `slow` opens whenever it holds the key: after a refresh.
        if (now - START) % 170 == 0 {
            assert!(open(&slow, &name, now).is_some());
        }
    }
}

#[test]
fn a_backend_down_at_start_means_the_processs_own_key_then_shared_ones() {
    let b = Backend::new();
    b.down.store(true, Ordering::Relaxed);
    let a = process(&b);
    a.refresh_at(START);
    let (own, local) = issue(&a, START);
    assert!(local);
    assert_eq!(a.counters().refresh_errors.load(Ordering::Relaxed), 1);
    b.down.store(false, Ordering::Relaxed);
    a.refresh_at(START + 5);
    let (shared, local) = issue(&a, START + 5);
    assert!(!local && shared != own);
    // Tickets under its own key still open (renewed onto the shared key).
    assert_eq!(open(&a, &own, START + 6), Some(true));
}

#[test]
fn a_backend_lost_later_leaves_the_keys_held_in_use_until_they_expire() {
    let b = Backend::new();
    let a = process(&b);
    a.refresh_at(START);
    let (first, _) = issue(&a, START);
    b.down.store(true, Ordering::Relaxed);
    // The successor was made ahead: rotation goes on without the backend.
    a.refresh_at(START + T.period + 1);
    let (second, local) = issue(&a, START + T.period + 1);
    assert!(!local && second != first);
    assert_eq!(open(&a, &first, START + T.period + 1), Some(true));
    // Past every key's window: the process's own key, as OpenSSL would.
    let late = START + 2 * T.period + T.lifetime;
    a.refresh_at(late);
    assert!(issue(&a, late).1);
}

#[test]
fn an_altered_record_is_refused_counted_and_never_used() {
    let b = Backend::new();
    let a = process(&b);
    a.refresh_at(START);
    let records = b.inner.ticket_records().unwrap();
    // Replace record 1 with its bytes altered (an adversary with write access and no key).
    let mut bad = records
        .iter()
        .find(|r| r.seq == 1)
        .unwrap()
        .bytes
        .as_slice()
        .to_vec();
    bad[40] ^= 1;
    b.inner.drop_ticket_records(&[1]).unwrap();
    b.inner.add_ticket_record(1, &bad, u64::MAX).unwrap();
    let fresh = process(&b);
    fresh.refresh_at(START + 1);
    assert_eq!(fresh.counters().refused_records.load(Ordering::Relaxed), 1);
    assert!(b.counters().errors.load(Ordering::Relaxed) >= 1);
    assert!(fresh
        .with_ring(|r| r.shared().iter().all(|k| k.seq != 1))
        .unwrap());
    // Its number is not reused: the key made instead is generation 3.
    assert!(fresh
        .with_ring(|r| r.shared().iter().any(|k| k.seq == 3))
        .unwrap());
}

#[test]
fn rotate_and_revoke_from_the_tool() {
    let b = Backend::new();
    let seal = RecordSeal::new(None, b"test");
    let a = process(&b);
    a.refresh_at(START);
    let (old, _) = issue(&a, START);
    let rotated = rotate(&*b, &seal, &T, START + 1, false).unwrap();
    assert_eq!(rotated, 3);
    a.refresh_at(START + 2);
    // It starts after the lead.
    assert_eq!(issue(&a, START + 2).0, old);
    assert_ne!(issue(&a, START + 1 + T.lead).0, old);
    let revoking = rotate(&*b, &seal, &T, START + 20, true).unwrap();
    a.refresh_at(START + 21);
    // Only the revoking key and the successor made for it are held.
    assert_eq!(
        a.with_ring(|r| r.shared().iter().map(|k| k.seq).collect::<Vec<_>>())
            .unwrap(),
        vec![revoking, revoking + 1]
    );
    assert_eq!(open(&a, &old, START + 21), None);
    let gens = generations(&*b, &seal).unwrap();
    assert!(gens.iter().all(|g| g.seq >= revoking), "{gens:?}");
    assert!(
        gens.iter()
            .find(|g| g.seq == revoking)
            .unwrap()
            .key
            .unwrap()
            .revokes
    );
}

#[test]
fn a_memory_cache_with_shared_tickets_rotates_its_own_keys() {
    let cache = crate::cache::Cache::open("memory:?tickets=shared").unwrap();
    let t = cache.tickets().expect("tickets=shared");
    let (_, local) = t
        .with_encryptor(crate::clock::now(), |k| (k.seq, k.is_local()))
        .unwrap();
    assert!(!local);
    let gens = cache.ticket_generations().unwrap();
    assert_eq!(gens.len(), 2, "the key that encrypts and its successor");
    assert!(crate::cache::Cache::open("memory:")
        .unwrap()
        .tickets()
        .is_none());
}

/// A forked child (a prefork server's worker, made by a master that made no ticket since it
/// started) reads the keys again before its first ticket: it never encrypts under, nor
/// refuses tickets because of, the keys its parent held when it forked.
#[test]
fn a_forked_child_reads_the_keys_again_before_its_first_ticket() {
    let name = format!("tickets-fork-{}", std::process::id());
    let store: Arc<dyn Store> =
        Arc::new(crate::store::shm::ShmStore::open(&name, Some(1 << 20), 0o600, 4096).unwrap());
    let seal = Arc::new(RecordSeal::new(None, b"shm:fork"));
    let t = Timing::new(3600, None);
    let parent = Tickets::start(store.clone(), seal.clone(), t, true);
    let now = crate::clock::now();
    let (old, _) = issue(&parent, now);
    // Another process revokes every key: the parent's refresher would see it in a minute.
    let fresh = rotate(&*store, &seal, &t, now, true).unwrap();
    let fresh_name = generations(&*store, &seal)
        .unwrap()
        .into_iter()
        .find(|g| g.seq == fresh)
        .unwrap()
        .key
        .unwrap()
        .name;
    assert_eq!(
        issue(&parent, now).0,
        old,
        "the parent has not refreshed yet"
    );
    // SAFETY: fork in a test; the child only uses the tickets and _exits.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let (name, local) = issue(&parent, now);
        let ok = name == fresh_name && !local && open(&parent, &old, now).is_none();
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    crate::store::shm::segment::unlink(&name);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
}
