//! A Linux eventfd owned by the library: what a program (or an OpenSSL async job's owner)
//! polls while a lookup runs. Readable once signalled, until drained; closed when dropped.

use std::os::raw::c_int;

pub struct EventFd(c_int);

impl EventFd {
    /// A new eventfd, non-blocking and closed on exec. None if the process is out of
    /// descriptors (the caller then does not suspend).
    pub fn new() -> Option<EventFd> {
        // SAFETY: plain system call; the result is a new descriptor we own, or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        (fd >= 0).then_some(EventFd(fd))
    }

    pub fn fd(&self) -> c_int {
        self.0
    }

    /// Makes it readable (idempotent until drained).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own descriptor. It cannot block
        // (non-blocking); it can only fail at a counter of 2^64 - 2, which a drain resets.
        let _ = unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
    }

    /// Makes it not readable again.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking descriptor.
        let _ = unsafe { libc::read(self.0, (&mut v as *mut u64).cast(), 8) };
    }

    /// Whether it is signalled now (for tests).
    #[cfg(test)]
    pub fn is_signalled(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one live pollfd without waiting.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}
