//! Bytes that hold key material, and wiping them.

use crate::error::{Error, ErrorKind};
use std::sync::atomic::Ordering;

/// Bytes that hold key material: overwritten with zeros before the memory is released.
pub struct SecretBytes(Box<[u8]>);

impl SecretBytes {
    pub fn new(bytes: Box<[u8]>) -> Self {
        SecretBytes(bytes)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// `len` zero bytes, to be filled in place.
    pub fn zeroed(len: usize) -> Self {
        SecretBytes(vec![0u8; len].into_boxed_slice())
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(v: &[u8]) -> Self {
        SecretBytes(v.into())
    }
}

impl From<Vec<u8>> for SecretBytes {
    /// Takes the vector's bytes. A vector with spare capacity would be reallocated by
    /// `into_boxed_slice`, leaving its old buffer unwiped: copy and wipe it instead.
    fn from(mut v: Vec<u8>) -> Self {
        if v.capacity() == v.len() {
            return SecretBytes(v.into_boxed_slice());
        }
        let out = SecretBytes::from(v.as_slice());
        v.resize(v.capacity(), 0);
        wipe(&mut v);
        out
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        SecretBytes(self.0.clone())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `buf` with zeros in a way the compiler may not elide.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to one byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// The content of a file that holds secrets (keys, a password), for `what` (e.g.
/// "key_file", the name errors give it). The file must be a regular file (a symlink is
/// refused), owned by this process's user or root, with no group or other permissions
/// (like an ssh private key), and at most 64 KiB. Errors name the file and what is wrong,
/// never its content: `Permission` for who may read it, `Url` for the rest.
pub fn read_private_file(path: &str, what: &str) -> Result<SecretBytes, Error> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    const MAX: u64 = 64 << 10;
    let bad =
        |e: &dyn std::fmt::Display| Error::new(ErrorKind::Url, format!("{what} '{path}': {e}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::Permission,
                _ => ErrorKind::Url,
            };
            Error::new(kind, format!("{what} '{path}': {e}"))
        })?;
    let meta = file.metadata().map_err(|e| bad(&e))?;
    if !meta.is_file() {
        return Err(bad(&"not a regular file"));
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(Error::new(
            ErrorKind::Permission,
            format!(
                "{what} '{path}' belongs to uid {}, not to this process's user (uid {euid}) or root",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::Permission,
            format!(
                "{what} '{path}' has mode {:04o}: others could read it; make it 0600 or 0400",
                meta.mode() & 0o7777
            ),
        ));
    }
    if meta.len() > MAX {
        return Err(bad(&format!("larger than 64K: not a {what}")));
    }
    let mut text = Vec::with_capacity(meta.len() as usize + 1);
    let read = file.take(MAX).read_to_end(&mut text);
    let text = SecretBytes::from(text);
    read.map_err(|e| bad(&e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_zeroes() {
        let mut v = vec![0xAAu8; 100];
        wipe(&mut v);
        assert!(v.iter().all(|&b| b == 0));
    }
}
