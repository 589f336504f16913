//! Bytes that hold key material, and wiping them.

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
