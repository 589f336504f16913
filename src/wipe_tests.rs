//! Every copy of session bytes is wiped before its memory goes back to the allocator.
//!
//! The test binary's allocator watches for a pattern: while armed, every block freed through
//! Rust's allocator is searched for it, and a block that still holds it is counted. The
//! sessions made here carry that pattern as their master key, so any unwiped copy of their
//! DER (a refused session, a lookup's copy, a vector that was reallocated) is caught.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The master key every session made here carries (unlikely anywhere else).
const MASTER_KEY: [u8; 48] = {
    let mut k = [0u8; 48];
    let mut i = 0;
    while i < 48 {
        k[i] = (i as u8).wrapping_mul(73) ^ 0xC5;
        i += 1;
    }
    k
};

struct Watching;

static ARMED: AtomicBool = AtomicBool::new(false);
static UNWIPED: AtomicUsize = AtomicUsize::new(0);
/// Tests that arm the watch run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// SAFETY: forwards every call to the system allocator; on dealloc it only reads the block
// being freed, which is still valid until the forwarded call.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) && layout.size() >= 16 {
            // SAFETY: the block is valid for layout.size() bytes until we free it below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            // Search for a 16-byte piece of the key: a copy cut anywhere still shows.
            if block.windows(16).any(|w| w == &MASTER_KEY[8..24]) {
                UNWIPED.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// Runs `f` with the watch armed; returns how many freed blocks still held the key.
fn unwiped_during(f: impl FnOnce()) -> usize {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    UNWIPED.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    f();
    ARMED.store(false, Ordering::Relaxed);
    UNWIPED.load(Ordering::Relaxed)
}

/// A live TLS 1.2 session with this ID and the watched master key; the caller frees it.
fn session(id: &[u8]) -> *mut openssl_sys::SSL_SESSION {
    crate::test_sessions::tls12(id, &MASTER_KEY)
}

fn free(s: *mut openssl_sys::SSL_SESSION) {
    // SAFETY: a session made by `session`, freed once.
    unsafe { openssl_sys::SSL_SESSION_free(s) };
}

/// The watch itself works: an unwiped copy is seen.
#[test]
fn the_watch_sees_an_unwiped_copy() {
    let n = unwiped_during(|| {
        let v = MASTER_KEY.to_vec();
        drop(std::hint::black_box(v));
    });
    assert_eq!(n, 1);
}

/// Finding 6: a session refused for its size was freed without wiping.
#[test]
fn a_session_refused_for_its_size_is_wiped() {
    let cache = crate::cache::Cache::open("memory:?max_session_bytes=64").unwrap();
    let s = session(&[1u8; 32]);
    let n = unwiped_during(|| {
        // SAFETY: s is live.
        assert!(!unsafe { cache.store_session(s, None) });
    });
    assert_eq!(cache.stats().rejected, 1);
    free(s);
    assert_eq!(n, 0, "{n} freed blocks still held the master key");
}

/// Storing, looking up (each backend's copies), replacing, removing and dropping a cache.
#[test]
fn every_path_of_session_bytes_is_wiped() {
    crate::log::silence();
    for url in ["memory:", "shm:wipe-test-{pid}?size=256K"] {
        let url = url.replace("{pid}", &std::process::id().to_string());
        let s = session(&[2u8; 32]);
        let n = unwiped_during(|| {
            let cache = crate::cache::Cache::open(&url).unwrap();
            for _ in 0..3 {
                // SAFETY: s is live.
                assert!(unsafe { cache.store_session(s, None) });
                assert!(cache.lookup(&[2u8; 32]).is_some());
            }
            assert!(cache.store_der(&[3u8; 32], &MASTER_KEY, crate::clock::now() + 100, false));
            assert!(cache.lookup(&[3u8; 32]).is_none(), "not a session: dropped");
            cache.remove(&[2u8; 32]);
            drop(cache);
        });
        free(s);
        crate::store::shm::segment::unlink(&format!("wipe-test-{}", std::process::id()));
        assert_eq!(n, 0, "{url}: {n} freed blocks still held the master key");
    }
}

/// A vector with spare capacity handed to `SecretBytes` is not left behind unwiped.
#[test]
fn secret_bytes_from_a_roomy_vector_wipes_it() {
    let n = unwiped_during(|| {
        let mut v = Vec::with_capacity(256);
        v.extend_from_slice(&MASTER_KEY);
        drop(crate::secret::SecretBytes::from(v));
    });
    assert_eq!(n, 0);
}
