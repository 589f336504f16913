//! The shared-memory segment: creating or opening `/dev/shm/sesscache-NAME`, its header and
//! layout, and who may use it.
//!
//! Layout (all offsets from the start of the mapping):
//!
//! ```text
//! [Header | ticket-key table (at 512, see `tickets`), 4 KiB] [shard 0: ShardHeader | index: u64 × index_cap | ring: ring_cap bytes] [shard 1 …] …
//! ```
//!
//! Creation is race-free: the segment is made as an unnamed file (`O_TMPFILE`; where that is
//! missing, a hidden 0600 file of a random name), its memory reserved with
//! `posix_fallocate` (a `/dev/shm` too small fails here, with a message, instead of killing
//! the server with SIGBUS later), its mode set, its header and shards written, and only then
//! is it linked under its name, which fails if somebody else got there first (then that
//! segment is opened instead). Nobody ever sees a half-made segment under the name.
//!
//! Opening an existing segment checks, on the open file itself: a regular file (no symlink
//! is followed), owned by this process's effective user with no group or other access, or,
//! with `mode=0660`, group access for a group this process is in and never other access.
//! Anything else is refused with a message naming the owner and mode: another local user
//! who created the name first would otherwise read every master secret and plant sessions.

use crate::error::{Error, ErrorKind};
use crate::store::Counters;
use std::ffi::CString;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where POSIX shared memory lives on Linux (what `shm_open` uses).
pub(crate) const SHM_DIR: &str = "/dev/shm";
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SESSCACH");
/// Bump on any change of the layout: processes of different versions must not share.
/// 3: the ticket-key table in the header page ([`super::tickets`]).
/// 4: fenced 64-bit lock words: owner thread and generation ([`super::lock`]).
pub(crate) const LAYOUT_VERSION: u32 = 4;
pub(crate) const HEADER_BYTES: usize = 4096;
pub(crate) const SHARD_HEADER_BYTES: usize = 128;
/// Entries in a ring start at multiples of this (so the ring's size is one too).
pub(crate) const ENTRY_ALIGN: usize = 4;
pub(crate) const MAX_SHARDS: usize = 64;
/// Sizing assumption for the index: a typical entry (24-byte header, 32-byte ID, ~140-byte
/// DER) takes 196 bytes of ring; the index gets one slot per 150 bytes of ring, so that it
/// stays under 80 % full for typical sessions and never limits them.
pub(crate) const RING_BYTES_PER_INDEX_SLOT: usize = 150;

/// The segment header, shared by every process.
#[repr(C)]
pub struct Header {
    pub magic: u64,
    pub version: u32,
    /// 1 once the creator has initialised the segment (always, once it has a name).
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
        let ring_cap = (space - index_cap * 8) & !(ENTRY_ALIGN - 1);
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
// atomics or under a shard's lock.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: base/size describe our own mapping, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

/// A file descriptor closed when dropped.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

fn os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn cstring(s: &str) -> Result<CString, Error> {
    CString::new(s)
        .map_err(|_| Error::new(ErrorKind::Argument, format!("bad shared memory path {s:?}")))
}

/// A segment made but not yet given its name: an `O_TMPFILE` file, or a hidden file with a
/// random name (`temp`) removed when this is dropped.
struct Unnamed {
    fd: Fd,
    temp: Option<CString>,
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        if let Some(t) = &self.temp {
            // SAFETY: removing the hidden file we created (NUL-terminated path).
            unsafe { libc::unlink(t.as_ptr()) };
        }
    }
}

impl Unnamed {
    fn create(name: &str, mode: u32) -> Result<Unnamed, Error> {
        let dir = cstring(SHM_DIR)?;
        // O_TMPFILE needs /proc to be linked later under a name.
        // SAFETY: access() on a NUL-terminated literal path.
        if unsafe { libc::access(c"/proc/self/fd".as_ptr(), libc::F_OK) } == 0 {
            // SAFETY: open with a NUL-terminated path; the result is checked.
            let fd = unsafe {
                libc::open(
                    dir.as_ptr(),
                    libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                )
            };
            if fd >= 0 {
                return Ok(Unnamed {
                    fd: Fd(fd),
                    temp: None,
                });
            }
        }
        let temp = cstring(&format!(
            "{SHM_DIR}/.sesscache-{name}.{}.{:016x}",
            std::process::id(),
            random_u64()
        ))?;
        // SAFETY: as above; O_EXCL | O_NOFOLLOW: a fresh file of ours or an error.
        let fd = unsafe {
            libc::open(
                temp.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                (mode & 0o600) as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("cannot create shared memory in {SHM_DIR}: {}", os_error()),
            ));
        }
        Ok(Unnamed {
            fd: Fd(fd),
            temp: Some(temp),
        })
    }

    /// Sets the mode (whatever the umask), reserves `size` bytes and maps them.
    fn reserve(&self, size: usize, mode: u32) -> Result<Segment, Error> {
        // SAFETY: fchmod on our descriptor.
        if unsafe { libc::fchmod(self.fd.0, mode as libc::mode_t) } != 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("cannot set the mode of shared memory: {}", os_error()),
            ));
        }
        // SAFETY: allocating the file's blocks on our descriptor.
        let r = unsafe { libc::posix_fallocate(self.fd.0, 0, size as libc::off_t) };
        if r != 0 {
            let why = std::io::Error::from_raw_os_error(r);
            return Err(Error::new(
                ErrorKind::Unavailable,
                if r == libc::ENOSPC || r == libc::ENOMEM {
                    format!(
                    "not enough room in {SHM_DIR} for a segment of {size} bytes ({} bytes free): ask for a smaller size= or make room",
                    free_bytes(self.fd.0)
                )
                } else {
                    format!("cannot reserve {size} bytes of shared memory: {why}")
                },
            ));
        }
        let base = map(self.fd.0, size)?;
        Ok(Segment {
            base,
            size,
            created: true,
        })
    }

    /// Links the file under `path`. Err(None) if `path` exists already.
    fn publish(&self, path: &CString) -> Result<(), Option<Error>> {
        let r = match &self.temp {
            // SAFETY: linkat with NUL-terminated paths; AT_SYMLINK_FOLLOW resolves the
            // /proc link to our open file.
            None => unsafe {
                let proc_path = CString::new(format!("/proc/self/fd/{}", self.fd.0))
                    .expect("no NUL in a number");
                libc::linkat(
                    libc::AT_FDCWD,
                    proc_path.as_ptr(),
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            },
            // SAFETY: link with NUL-terminated paths.
            Some(temp) => unsafe { libc::link(temp.as_ptr(), path.as_ptr()) },
        };
        if r == 0 {
            return Ok(());
        }
        let e = os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            Err(None)
        } else {
            Err(Some(Error::new(
                ErrorKind::Unavailable,
                format!("cannot name shared memory {}: {e}", path.to_string_lossy()),
            )))
        }
    }
}

fn free_bytes(fd: libc::c_int) -> u64 {
    // SAFETY: fstatvfs into a zeroed buffer on our descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

fn map(fd: libc::c_int, size: usize) -> Result<*mut u8, Error> {
    // SAFETY: mapping `size` bytes of the file, shared, read-write.
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
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!("cannot map shared memory: {}", os_error()),
        ));
    }
    Ok(p.cast())
}

/// Whether this process is a member of group `gid`.
fn in_group(gid: libc::gid_t) -> bool {
    // SAFETY: getegid cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: getgroups fills at most groups.len() entries.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    n > 0 && groups[..n as usize].contains(&gid)
}

/// Refuses a segment that another user could read or write (see the module docs).
fn check_owner(st: &libc::stat, path: &str, mode: u32) -> Result<(), Error> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let perm = st.st_mode & 0o777;
    let ours = st.st_uid == euid;
    let group_ok = mode == 0o660 && in_group(st.st_gid);
    let ok = perm & 0o007 == 0 && (ours || group_ok) && (perm & 0o070 == 0 || group_ok);
    if ok {
        return Ok(());
    }
    let allowed = if mode == 0o660 {
        "owned by this user or a group it is in, with no access for others"
    } else {
        "owned by this user, with no group or other access (or mode=0660 to share with a group)"
    };
    Err(Error::new(ErrorKind::Permission, format!(
        "refusing shared memory {path}: it belongs to uid {} gid {} with mode {perm:04o}, and this process runs as uid {euid}; a segment must be {allowed}. Another local user may have made it to read or plant sessions: remove it (rm {path}) or use another name",
        st.st_uid, st.st_gid
    )))
}

impl Segment {
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header (checked or written at open) and lives as
        // long as self.
        unsafe { &*(self.base as *const Header) }
    }

    /// The path of the segment for a cache NAME.
    pub fn path(name: &str) -> String {
        format!("{SHM_DIR}/sesscache-{name}")
    }

    /// Opens the segment NAME, creating it with `size` bytes (or `default_size` when no size
    /// was asked for) and permissions `mode` (0o600 or 0o660) if it does not exist. `init`
    /// lays out a newly created segment before anyone else can see it.
    pub fn open(
        name: &str,
        size: Option<usize>,
        default_size: usize,
        mode: u32,
        init: impl Fn(&Segment) -> Result<(), Error>,
    ) -> Result<Segment, Error> {
        let path = Segment::path(name);
        let cpath = cstring(&path)?;
        // Up to three rounds: if another process names its new segment between our failed
        // open and our link, the next round opens theirs (a third covers that segment being
        // removed again in between).
        for _ in 0..3 {
            // SAFETY: open with a NUL-terminated path; O_NOFOLLOW refuses a symlink.
            let fd = unsafe {
                libc::open(
                    cpath.as_ptr(),
                    libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd >= 0 {
                return Segment::adopt(Fd(fd), &path, size, mode);
            }
            let e = os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(open_error(&path, &e));
            }
            let size = size.unwrap_or(default_size);
            let new = Unnamed::create(name, mode)?;
            let seg = new.reserve(size, mode)?;
            init(&seg)?;
            seg.header().ready.store(1, Ordering::Release);
            match new.publish(&cpath) {
                Ok(()) => return Ok(seg),
                Err(None) => continue,
                Err(Some(msg)) => return Err(msg),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot create or open shared memory {path}: it keeps appearing and disappearing"
            ),
        ))
    }

    /// Opens the existing segment NAME, with every check [`Segment::open`] makes on an
    /// existing one (owner, `mode`, layout version, `size` when given), and never creates
    /// one: a missing segment is `Unavailable`, "no such segment". For tools that look at a
    /// cache from outside the servers using it.
    pub fn open_existing(name: &str, size: Option<usize>, mode: u32) -> Result<Segment, Error> {
        let path = Segment::path(name);
        let cpath = cstring(&path)?;
        // SAFETY: open with a NUL-terminated path; O_NOFOLLOW refuses a symlink; no O_CREAT.
        let fd = unsafe {
            libc::open(
                cpath.as_ptr(),
                libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("no such segment: {path} does not exist"),
                ));
            }
            return Err(open_error(&path, &e));
        }
        Segment::adopt(Fd(fd), &path, size, mode)
    }

    /// Checks and maps an existing segment.
    fn adopt(fd: Fd, path: &str, want: Option<usize>, mode: u32) -> Result<Segment, Error> {
        // SAFETY: fstat on our descriptor into a zeroed buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("cannot stat {path}: {}", os_error()),
            ));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::new(
                ErrorKind::Permission,
                format!("refusing shared memory {path}: not a regular file"),
            ));
        }
        check_owner(&st, path, mode)?;
        let size = usize::try_from(st.st_size).unwrap_or(0);
        if !(HEADER_BYTES..=crate::config::SHM_MAX_SIZE).contains(&size) {
            return Err(Error::new(ErrorKind::Incompatible, format!(
                "shared memory {path} is not a sesscache segment of this version (size {size}): remove it or use another name"
            )));
        }
        let seg = Segment {
            base: map(fd.0, size)?,
            size,
            created: false,
        };
        let h = seg.header();
        if h.magic != MAGIC {
            return Err(Error::new(
                ErrorKind::Incompatible,
                format!("shared memory {path} is not a sesscache segment"),
            ));
        }
        if h.version != LAYOUT_VERSION {
            return Err(Error::new(ErrorKind::Incompatible, format!(
                "shared memory {path} has layout version {}, this library uses {LAYOUT_VERSION}: use another name or remove {path}",
                h.version
            )));
        }
        if h.ready.load(Ordering::Acquire) != 1 || h.size != size as u64 {
            return Err(Error::new(
                ErrorKind::Incompatible,
                format!(
                    "shared memory {path} is damaged (size {size}, header says {}): remove it",
                    h.size
                ),
            ));
        }
        if let Some(want) = want {
            if want != size {
                return Err(Error::new(ErrorKind::Incompatible, format!(
                    "shared memory {path} exists with size {size}, not the size={want} asked for: use the same size (or none) or another name"
                )));
            }
        }
        Ok(seg)
    }
}

/// Why opening an existing segment's file failed (not ENOENT, which callers handle).
fn open_error(path: &str, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => Error::new(ErrorKind::Permission, format!(
            "refusing shared memory {path}: it is a symbolic link (remove it or use another name)"
        )),
        Some(libc::EACCES) => Error::new(ErrorKind::Permission, format!(
            "cannot open shared memory {path}: {e} (it belongs to another user: remove it or use another name)"
        )),
        _ => Error::new(
            ErrorKind::Unavailable,
            format!("cannot open shared memory {path}: {e}"),
        ),
    }
}

/// Removes the segment NAME (processes that have it mapped keep using their mapping).
pub fn unlink(name: &str) -> bool {
    let Ok(c) = CString::new(Segment::path(name)) else {
        return false;
    };
    // SAFETY: plain libc call with a NUL-terminated path.
    unsafe { libc::unlink(c.as_ptr()) == 0 }
}

/// Random bytes from the kernel, for the hash keys.
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into v.
    let n = unsafe { libc::getrandom((&mut v as *mut u64).cast(), 8, 0) };
    if n != 8 {
        // Without entropy, still differ between segments.
        v = crate::clock::now() ^ (u64::from(std::process::id()) << 32);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mib_holds_five_thousand_typical_entries() {
        let l = Layout::for_size(1 << 20, 20 + 32 + 16 * 1024);
        let per_entry = 196; // 24 + 32 + 140, 4-aligned
        let entries = l.n_shards * (l.ring_cap / per_entry).min(l.index_cap * 4 / 5);
        assert!(entries >= 5000, "{l:?} holds {entries}");
        assert!(l.n_shards * l.shard_bytes + HEADER_BYTES <= 1 << 20);
    }

    #[test]
    fn shards_hold_several_large_sessions() {
        for size in [crate::config::SHM_MIN_SIZE, 1 << 20, 64 << 20, 1 << 30] {
            let l = Layout::for_size(size, 20 + 32 + 16 * 1024);
            assert!(l.n_shards.is_power_of_two() && l.n_shards <= MAX_SHARDS);
            assert!(
                l.n_shards == 1 || l.ring_cap >= 2 * (16 * 1024 + 52),
                "{size}: {l:?}"
            );
        }
    }
}
