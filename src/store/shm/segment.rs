//! The shared-memory segment: creating or opening `/sesscache-NAME`, its header and layout.
//!
//! Layout (all offsets from the start of the mapping):
//!
//! ```text
//! [Header, 4 KiB] [shard 0: ShardHeader | index: u64 × index_cap | ring: ring_cap bytes] [shard 1 …] …
//! ```
//!
//! The creator makes the object with `O_CREAT | O_EXCL` and mode 0600, sizes it, writes the
//! header and the shards, and publishes `ready` last; others wait for `ready`, then check the
//! magic, the layout version and the size before using anything.

use crate::store::Counters;
use std::ffi::CString;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const MAGIC: u64 = u64::from_le_bytes(*b"SESSCACH");
/// Bump on any change of the layout: processes of different versions must not share.
pub const LAYOUT_VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 4096;
pub const SHARD_HEADER_BYTES: usize = 128;
pub const MIN_SIZE: usize = 64 << 10;
pub const MAX_SHARDS: usize = 64;
/// Sizing assumption for the index: a typical entry (20-byte header, 32-byte ID, ~140-byte
/// DER) takes 192 bytes of ring; the index gets one slot per 150 bytes of ring, so that it
/// stays under 80 % full for typical sessions and never limits them.
pub const RING_BYTES_PER_INDEX_SLOT: usize = 150;

/// The segment header, shared by every process.
#[repr(C)]
pub struct Header {
    pub magic: u64,
    pub version: u32,
    /// 0 while the creator initialises the segment, 1 once it is usable.
    pub ready: AtomicU32,
    pub size: u64,
    /// Unix time of creation minus one: entry expiry times are stored relative to it.
    pub epoch: u64,
    /// SipHash keys for session IDs (random per segment: IDs come from clients).
    pub hash_k0: u64,
    pub hash_k1: u64,
    pub n_shards: u32,
    pub index_cap: u32,
    pub ring_cap: u32,
    pub shard_bytes: u32,
    pub counters: Counters,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);

/// The layout a size gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub n_shards: usize,
    pub shard_bytes: usize,
    pub index_cap: usize,
    pub ring_cap: usize,
}

impl Layout {
    /// Splits `size` bytes into shards, each large enough for several sessions of
    /// `max_entry` bytes.
    pub fn for_size(size: usize, max_entry: usize) -> Layout {
        let body = size - HEADER_BYTES;
        let min_shard = (4 * max_entry).max(64 << 10);
        let mut n = 1;
        while n < MAX_SHARDS && body / (n * 2) >= min_shard {
            n *= 2;
        }
        let shard_bytes = (body / n) & !63;
        let space = shard_bytes - SHARD_HEADER_BYTES;
        // ring + 8 * ring / RING_BYTES_PER_INDEX_SLOT = space
        let index_cap = (space / (RING_BYTES_PER_INDEX_SLOT + 8)).max(8);
        let ring_cap = (space - index_cap * 8) & !3;
        Layout {
            n_shards: n,
            shard_bytes,
            index_cap,
            ring_cap,
        }
    }
}

/// A mapped segment. Unmapped when dropped (the object itself stays for other processes).
pub struct Segment {
    pub base: *mut u8,
    pub size: usize,
    pub created: bool,
}

// SAFETY: the mapping is shared memory whose every mutable part is reached only through
// atomics or under a shard's process-shared mutex.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: base/size describe our own mapping, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

impl Segment {
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header (checked or written at open) and lives as
        // long as self.
        unsafe { &*(self.base as *const Header) }
    }

    /// The object name for a cache NAME.
    pub fn object_name(name: &str) -> String {
        format!("/sesscache-{name}")
    }

    /// Opens the segment NAME, creating it with `size` bytes (or `default_size` when no size
    /// was asked for) if it does not exist. `init` lays out a newly created segment.
    pub fn open(
        name: &str,
        size: Option<usize>,
        default_size: usize,
        init: impl FnOnce(&Segment) -> Result<(), String>,
    ) -> Result<Segment, String> {
        let object = Segment::object_name(name);
        let cname = CString::new(object.clone()).map_err(|_| "bad name".to_string())?;
        // SAFETY: plain libc calls with a NUL-terminated name.
        let fd = unsafe {
            libc::shm_open(
                cname.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd >= 0 {
            let size = size.unwrap_or(default_size);
            let seg = Segment::map_new(fd, size).inspect_err(|_| {
                // SAFETY: removing the object we just created and failed to set up.
                unsafe { libc::shm_unlink(cname.as_ptr()) };
            })?;
            if let Err(e) = init(&seg) {
                // SAFETY: removing the object we just created and failed to set up.
                unsafe { libc::shm_unlink(cname.as_ptr()) };
                return Err(e);
            }
            seg.header().ready.store(1, Ordering::Release);
            return Ok(seg);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("cannot create shared memory {object}: {err}"));
        }
        // SAFETY: as above, without O_CREAT.
        let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
        if fd < 0 {
            return Err(format!(
                "cannot open shared memory {object}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Segment::map_existing(fd, &object, size)
    }

    fn map_new(fd: libc::c_int, size: usize) -> Result<Segment, String> {
        // SAFETY: fd is ours; ftruncate sizes the new (zero-filled) object.
        let ok = unsafe { libc::ftruncate(fd, size as libc::off_t) } == 0;
        let res = if ok {
            Segment::map(fd, size)
        } else {
            Err(format!(
                "cannot size shared memory: {}",
                std::io::Error::last_os_error()
            ))
        };
        // SAFETY: fd is ours; the mapping keeps the object alive.
        unsafe { libc::close(fd) };
        res.map(|base| Segment {
            base,
            size,
            created: true,
        })
    }

    fn map(fd: libc::c_int, size: usize) -> Result<*mut u8, String> {
        // SAFETY: mapping `size` bytes of the object, shared, read-write.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "cannot map shared memory: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(p.cast())
    }

    fn map_existing(fd: libc::c_int, object: &str, want: Option<usize>) -> Result<Segment, String> {
        let res = Segment::check_and_map(fd, object, want);
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        res
    }

    fn check_and_map(
        fd: libc::c_int,
        object: &str,
        want: Option<usize>,
    ) -> Result<Segment, String> {
        // The creator may still be sizing and initialising it: wait up to 2 s.
        let mut size = 0usize;
        for _ in 0..200 {
            // SAFETY: fstat on our fd into a zeroed stat buffer.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::fstat(fd, &mut st) } != 0 {
                return Err(format!(
                    "cannot stat {object}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            size = st.st_size as usize;
            if size >= HEADER_BYTES {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if size < HEADER_BYTES {
            return Err(format!(
                "shared memory {object} exists but is empty (its creator died?); remove /dev/shm{object}"
            ));
        }
        let base = Segment::map(fd, size)?;
        let seg = Segment {
            base,
            size,
            created: false,
        };
        for _ in 0..200 {
            if seg.header().ready.load(Ordering::Acquire) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let h = seg.header();
        if h.ready.load(Ordering::Acquire) != 1 {
            return Err(format!(
                "shared memory {object} was never initialised (its creator died?); remove /dev/shm{object}"
            ));
        }
        if h.magic != MAGIC {
            return Err(format!("shared memory {object} is not a sesscache segment"));
        }
        if h.version != LAYOUT_VERSION {
            return Err(format!(
                "shared memory {object} has layout version {}, this library uses {LAYOUT_VERSION}: use another name or remove /dev/shm{object}",
                h.version
            ));
        }
        if h.size as usize != size {
            return Err(format!(
                "shared memory {object} is damaged (size {size}, header says {})",
                h.size
            ));
        }
        if let Some(want) = want {
            if want != size {
                return Err(format!(
                    "shared memory {object} exists with size {size}, not the size={want} asked for: use the same size (or none) or another name"
                ));
            }
        }
        Ok(seg)
    }
}

/// Removes the object NAME (processes that have it mapped keep using their mapping).
pub fn unlink(name: &str) -> bool {
    let Ok(c) = CString::new(Segment::object_name(name)) else {
        return false;
    };
    // SAFETY: plain libc call with a NUL-terminated name.
    unsafe { libc::shm_unlink(c.as_ptr()) == 0 }
}

/// Random bytes from the kernel, for the hash keys.
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into v.
    let n = unsafe { libc::getrandom((&mut v as *mut u64).cast(), 8, 0) };
    if n != 8 {
        // Without entropy, still differ between segments.
        v = crate::cache::now() ^ (u64::from(std::process::id()) << 32);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mib_holds_five_thousand_typical_entries() {
        let l = Layout::for_size(1 << 20, 20 + 32 + 16 * 1024);
        let per_entry = 192; // 20 + 32 + 140, 4-aligned
        let entries = l.n_shards * (l.ring_cap / per_entry).min(l.index_cap * 4 / 5);
        assert!(entries >= 5000, "{l:?} holds {entries}");
        assert!(l.n_shards * l.shard_bytes + HEADER_BYTES <= 1 << 20);
    }

    #[test]
    fn shards_hold_several_large_sessions() {
        for size in [MIN_SIZE, 1 << 20, 64 << 20, 1 << 30] {
            let l = Layout::for_size(size, 20 + 32 + 16 * 1024);
            assert!(l.n_shards.is_power_of_two() && l.n_shards <= MAX_SHARDS);
            assert!(
                l.n_shards == 1 || l.ring_cap >= 2 * (16 * 1024 + 52),
                "{size}: {l:?}"
            );
        }
    }
}
