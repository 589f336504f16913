//! The cache core's stores alone, without OpenSSL or a handshake (issue 12, `make bench-core`):
//!
//! 1. what a lookup and a store cost in the `memory:` and `shm:` backends when they hold
//!    1 k, 100 k and 1 M entries: each store is filled once to N entries of a real TLS 1.2
//!    session's size (the question is whether the cost is flat in N). Measured:
//!    - `get_hit`: `Store::get` of a present key, chosen pseudo-randomly over the N for every
//!      call, so that the caches of the processor are not trivially warm; the entry's bytes
//!      are copied out (`known` says no), as for a process that has not decoded it yet;
//!    - `get_hit_recent`: the same, of a key among the [`RECENT`] stored last. Resumptions
//!      mostly come soon after the full handshake, so a server's lookups touch recent
//!      entries; next to `get_hit` this tells what the store's own work costs (flat in N
//!      if this is) from what reaching memory outside the processor's caches adds;
//!    - `get_miss`: `Store::get` of a key that was never stored;
//!    - `put`: `Store::put` replacing the entry of a present key (chosen as for `get_hit`),
//!      with bytes made outside the timed part, as the cache core hands them over. In
//!      `shm:` a replacement is written at the head of its shard's ring, and once the ring
//!      has gone round a put also frees room at its tail, evicting the oldest live entries:
//!      the store then holds fewer than N (printed after each size). `put` runs last.
//!
//!    Each call also makes its 32-byte key (four SplitMix64 steps, a few nanoseconds).
//! 2. how many sessions a MiB of `shm:` holds: an 8 MiB segment filled with sessions of one
//!    kind until its first eviction, for a TLS 1.2 session, a TLS 1.3 one (a stateful
//!    ticket) and a TLS 1.3 one with a client certificate, in clear and sealed (`key_file`).
//!    The first eviction comes when the fullest shard fills; what the segment holds once
//!    full (twice as many stored) is printed too.
//!
//! The sessions are real: `c-tests/session_der.c` makes them by handshakes and writes their
//! DER to `build/sessions/` (`make bench-core` runs it first; `SESSCACHE_BENCH_SESSIONS`
//! names another folder). The per-operation figures are criterion's; the densities are
//! written to `build/bench-core-density.txt`, which `scripts/bench_core_summary.py` puts
//! together with criterion's estimates in `build/bench-core.txt`.

use criterion::{BatchSize, BenchmarkId, Criterion};
use sesscache::cache::codec::Codec;
use sesscache::cache::seal::Keys;
use sesscache::secret::SecretBytes;
use sesscache::store::memory::{Limits, MemoryStore};
use sesscache::store::shm::{segment, ShmStore};
use sesscache::store::{Entry, SessionKey, Store};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The store sizes measured.
const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];
/// The largest value a store accepts: the default `max_session_bytes` plus room for what
/// sealing adds (33 bytes), about what the cache core grants.
const MAX_VALUE_BYTES: usize = (16 << 10) + 64;
/// Server session IDs and TLS 1.3 ticket identities are 32 bytes.
const KEY_LEN: usize = 32;
/// The first key index never stored: misses are looked up from here on.
const MISS_BASE: u64 = 1 << 40;
/// How many of the last stored keys `get_hit_recent` picks from.
const RECENT: u64 = 1_000;
/// The segment of the density measurement.
const DENSITY_MIB: usize = 8;

/// The real sessions of each kind: name and DER.
fn sessions() -> Vec<(&'static str, Vec<u8>)> {
    let dir = std::env::var_os("SESSCACHE_BENCH_SESSIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/sessions"));
    ["tls12", "tls13", "tls13_client_cert"]
        .into_iter()
        .map(|kind| {
            let path = dir.join(format!("{kind}.der"));
            let der = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}: run `make bench-core`, which makes real sessions first \
                     (build/session_der build/sessions)",
                    path.display()
                )
            });
            (kind, der)
        })
        .collect()
}

/// One SplitMix64 step: a well-mixed 64-bit value for each input.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Key number `i`: 32 bytes that look random, as a server's session IDs do, and can be made
/// again from `i` (no table of a million keys to read on every call).
fn key(i: u64) -> SessionKey {
    let mut bytes = [0u8; KEY_LEN];
    for (lane, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(i * 4 + lane as u64).to_le_bytes());
    }
    SessionKey::new(&bytes).expect("a 32-byte key")
}

/// Pseudo-random indexes in `from..from + n` (xorshift64, scaled without division).
struct Picker {
    state: u64,
    from: u64,
    n: u64,
}

impl Picker {
    fn new(from: u64, n: u64) -> Picker {
        Picker {
            state: 0x2545_F491_4F6C_DD1D,
            from,
            n,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.from + ((u128::from(self.state) * u128::from(self.n)) >> 64) as u64
    }
}

/// An entry of `bytes` that lives an hour and can be looked up any number of times.
fn entry(bytes: &[u8], now: u64) -> Entry {
    Entry {
        bytes: SecretBytes::from(bytes),
        expires_at: now + 3600,
        single_use: false,
    }
}

/// An `shm:` store on a segment of its own, named for this process and removed when dropped.
struct ShmBench {
    store: ShmStore,
    name: String,
}

impl ShmBench {
    fn open(size: usize) -> ShmBench {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bench-core-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let store = ShmStore::open(&name, Some(size), 0o600, MAX_VALUE_BYTES)
            .unwrap_or_else(|e| panic!("shm:{name} of {size} bytes: {e}"));
        ShmBench { store, name }
    }
}

impl Drop for ShmBench {
    fn drop(&mut self) {
        segment::unlink(&self.name);
    }
}

/// A `memory:` store with room for `n` entries of `value_len` bytes and to spare: its
/// shards are filled unevenly, and none may evict.
fn memory_store(n: u64, value_len: usize) -> MemoryStore {
    let n = n as usize;
    MemoryStore::new(Limits {
        capacity: 2 * n,
        max_bytes: 2 * n * (value_len + 1024),
        max_value_bytes: MAX_VALUE_BYTES,
    })
}

/// An `shm:` store with room for `n` entries of `value_len` bytes and to spare (twice what
/// they take in the ring, whole MiB), so that filling it evicts nothing.
fn shm_store(n: u64, value_len: usize) -> ShmBench {
    let ring = 2 * n as usize * (24 + KEY_LEN + value_len + 4);
    ShmBench::open(((ring >> 20) + 2) << 20)
}

/// Stores keys `0..n`, then checks that the store holds exactly them.
fn fill(store: &dyn Store, n: u64, value: &[u8], now: u64) {
    for i in 0..n {
        store.put(&key(i), entry(value, now), now).expect("put");
    }
    let (entries, _) = store.occupancy();
    let evictions = store.counters().evictions.load(Ordering::Relaxed);
    assert_eq!((entries, evictions), (n, 0), "the filled store evicted");
}

/// `get_hit`, `get_miss` and `put` on a store holding `n` entries of `value`'s size.
fn bench_store(c: &mut Criterion, backend: &str, n: u64, store: &dyn Store, value: &[u8]) {
    let now = sesscache::clock::now();
    let start = Instant::now();
    fill(store, n, value, now);
    println!(
        "{backend} at {n}: filled in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let mut g = c.benchmark_group(backend);
    let recent = RECENT.min(n);
    for (op, mut pick) in [
        ("get_hit", Picker::new(0, n)),
        ("get_hit_recent", Picker::new(n - recent, recent)),
    ] {
        g.bench_function(BenchmarkId::new(op, n), |b| {
            b.iter(|| {
                let found = store.get(&key(pick.next()), now, &mut |_| false);
                assert!(matches!(found, Ok(Some(_))), "a stored key was not found");
                found
            })
        });
    }
    g.bench_function(BenchmarkId::new("get_miss", n), |b| {
        let mut pick = Picker::new(MISS_BASE, n);
        b.iter(|| {
            let found = store.get(&key(pick.next()), now, &mut |_| false);
            assert!(matches!(found, Ok(None)), "a key never stored was found");
            found
        })
    });
    g.bench_function(BenchmarkId::new("put", n), |b| {
        let mut pick = Picker::new(0, n);
        b.iter_batched(
            || (key(pick.next()), entry(value, now)),
            |(k, e)| store.put(&k, e, now).expect("put"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let (entries, _) = store.occupancy();
    let evictions = store.counters().evictions.load(Ordering::Relaxed);
    println!("{backend} at {n}: {entries} entries after the benchmarks, {evictions} evictions");
}

/// Sessions of `value`'s size an `shm:` segment of [`DENSITY_MIB`] holds: (those stored
/// before its first eviction, those it holds once twice as many were stored).
fn shm_density(value: &[u8]) -> (u64, u64) {
    let shm = ShmBench::open(DENSITY_MIB << 20);
    let now = sesscache::clock::now();
    let put = |i| shm.store.put(&key(i), entry(value, now), now).expect("put");
    let mut stored = 0;
    while shm.store.counters().evictions.load(Ordering::Relaxed) == 0 {
        put(stored);
        stored += 1;
    }
    let first = stored - 1;
    for i in stored..2 * first {
        put(i);
    }
    (first, shm.store.occupancy().0)
}

/// Sessions per MiB of `shm:` for each kind, in clear and sealed: printed, and the clear
/// ones written for the summary (`density shm KIND SESSIONS_PER_MIB DER_BYTES`).
fn density(sessions: &[(&str, Vec<u8>)]) {
    let keys = Keys::parse(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        .expect("a key");
    let sealed = Codec::Sealed {
        keys: keys.into(),
        context: b"shm:bench".to_vec().into(),
    };
    let mut lines = String::new();
    let per_mib = |n: u64| n as f64 / DENSITY_MIB as f64;
    for (kind, der) in sessions {
        let (first, full) = shm_density(der);
        let sealed_der = sealed
            .seal(&key(0), SecretBytes::from(der.as_slice()))
            .expect("sealing");
        let (sealed_first, sealed_full) = shm_density(sealed_der.as_slice());
        println!(
            "density shm {kind}: {} bytes of DER: {:.0} sessions per MiB before the first \
             eviction, {:.0} once full; sealed ({} bytes): {:.0}, {:.0} once full",
            der.len(),
            per_mib(first),
            per_mib(full),
            sealed_der.len(),
            per_mib(sealed_first),
            per_mib(sealed_full),
        );
        let per_mib = per_mib(first);
        lines += &format!("density shm {kind} {per_mib:.0} {}\n", der.len());
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/bench-core-density.txt");
    std::fs::create_dir_all(out.parent().expect("a folder")).expect("build/");
    std::fs::write(&out, lines).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

fn main() {
    let start = Instant::now();
    let sessions = sessions();
    let tls12 = &sessions[0].1;
    // 24 benchmarks of about 3.5 s each, plus filling and emptying the stores: about two and
    // a half minutes in all on 2 cores.
    let mut c = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(2500))
        .nresamples(20_000)
        .configure_from_args();
    for n in SIZES {
        let store = memory_store(n, tls12.len());
        bench_store(&mut c, "memory", n, &store, tls12);
    }
    for n in SIZES {
        let shm = shm_store(n, tls12.len());
        bench_store(&mut c, "shm", n, &shm.store, tls12);
    }
    c.final_summary();
    density(&sessions);
    println!("bench core: {:.0} s in all", start.elapsed().as_secs_f64());
}
