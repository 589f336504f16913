//! Sealing stored sessions: AES-256-GCM through OpenSSL's EVP (already in the process), under
//! keys from a key file, so that a backend off this process never holds a session in clear
//! and bytes moved to another ID, altered or planted do not open.
//!
//! A sealed value:
//!
//! ```text
//! version (1 byte, 1) | key id (4 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//! ```
//!
//! - the key id is the first 4 bytes of SHA-256 over the key: opening picks the key by it, so
//!   rotation costs no trial decryptions;
//! - the nonce is random (`RAND_bytes`) for every seal: with 96-bit random nonces a key may
//!   seal about 2^32 values before rotation is due (a busy server making 10,000 sessions a
//!   second reaches that in about five days: rotate keys at least weekly);
//! - the associated data is the version, the key id, the cache's context (for `redis://`, its
//!   key prefix) and the session ID, so a value opens only under the ID and in the cache it
//!   was sealed for.
//!
//! Key file: one key per line as 64 hex digits (32 bytes); blank lines and lines starting
//! with `#` are ignored. The first key seals; every key opens. The file must be a regular
//! file owned by this process's user (or root) with no group or other permissions, like an
//! ssh private key: the keys protect every session's master secret.

use crate::error::{Error, ErrorKind};
use crate::secret::{wipe, SecretBytes};
use openssl_sys as ffi;
use std::os::raw::c_int;

pub(crate) const VERSION: u8 = 1;
pub(crate) const KEY_ID_LEN: usize = 4;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
/// What sealing adds to a value.
pub(crate) const OVERHEAD: usize = 1 + KEY_ID_LEN + NONCE_LEN + TAG_LEN;
const HEADER: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Most keys a key file may hold.
pub(crate) const MAX_KEYS: usize = 64;

struct Key {
    id: [u8; KEY_ID_LEN],
    bytes: [u8; 32],
}

impl Drop for Key {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

/// The keys of a cache: the first seals, every one opens.
pub struct Keys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keys {
    // Never the keys themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} keys)", self.keys.len())
    }
}

fn key_error(path: &str, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Url, format!("key_file '{path}': {what}"))
}

impl Keys {
    /// Reads a key file (see the module documentation), checking who may read it.
    pub fn from_file(path: &str) -> Result<Keys, Error> {
        let text = crate::secret::read_private_file(path, "key_file")?;
        Keys::parse(text.as_slice()).map_err(|what| key_error(path, what))
    }

    /// Parses key file text; on error, says what is wrong (never quoting a key).
    pub fn parse(text: &[u8]) -> Result<Keys, String> {
        let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut bytes = [0u8; 32];
            if line.len() != 64 || hex_decode(line, &mut bytes).is_none() {
                wipe(&mut bytes);
                return Err(format!(
                    "line {}: expected a key of 64 hex digits (32 bytes), found {} characters",
                    n + 1,
                    line.len()
                ));
            }
            if keys.len() == MAX_KEYS {
                return Err(format!("more than {MAX_KEYS} keys"));
            }
            let key = Key {
                id: key_id(&bytes),
                bytes,
            };
            if keys.iter().any(|k| k.id == key.id) {
                return Err(format!("line {}: the same key appears twice", n + 1));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no key in the file".into());
        }
        Ok(Keys { keys })
    }

    /// Seals `plain`, the value filed under `id` in the cache named by `context`.
    pub fn seal(&self, context: &[u8], id: &[u8], plain: &[u8]) -> Option<SecretBytes> {
        let key = &self.keys[0];
        let mut out = SecretBytes::zeroed(OVERHEAD + plain.len());
        let buf = out.as_mut_slice();
        buf[0] = VERSION;
        buf[1..1 + KEY_ID_LEN].copy_from_slice(&key.id);
        // SAFETY: the nonce slice is NONCE_LEN writable bytes.
        if unsafe { ffi::RAND_bytes(buf[1 + KEY_ID_LEN..].as_mut_ptr(), NONCE_LEN as c_int) } != 1 {
            return None;
        }
        let (header, rest) = buf.split_at_mut(HEADER);
        let (body, tag) = rest.split_at_mut(plain.len());
        let nonce = &header[1 + KEY_ID_LEN..];
        let aad = [&header[..1 + KEY_ID_LEN], context, id];
        Cipher::new()?
            .seal(&key.bytes, nonce, &aad, plain, body, tag)
            .then_some(out)
    }

    /// Opens a value sealed under `id` in the cache named by `context`: None if it is not
    /// one (too short, another version), was sealed under a key not in the file, or fails
    /// authentication (altered, moved to another ID, planted).
    pub fn open(&self, context: &[u8], id: &[u8], sealed: &[u8]) -> Option<SecretBytes> {
        if sealed.len() < OVERHEAD || sealed[0] != VERSION {
            return None;
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id[..] == sealed[1..1 + KEY_ID_LEN])?;
        let (header, rest) = sealed.split_at(HEADER);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = &header[1 + KEY_ID_LEN..];
        let aad = [&header[..1 + KEY_ID_LEN], context, id];
        let mut out = SecretBytes::zeroed(body.len());
        Cipher::new()?
            .open(&key.bytes, nonce, &aad, body, tag, out.as_mut_slice())
            .then_some(out)
    }

    /// How many keys open values.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn key_id(key: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    let mut md = [0u8; 32];
    // SAFETY: key is 32 readable bytes; md has room for a SHA-256 digest.
    unsafe { ffi::SHA256(key.as_ptr(), key.len(), md.as_mut_ptr()) };
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&md[..KEY_ID_LEN]);
    id
}

fn hex_decode(s: &str, out: &mut [u8; 32]) -> Option<()> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

/// One EVP cipher context, freed when dropped (which also cleanses its key schedule).
struct Cipher(*mut ffi::EVP_CIPHER_CTX);

impl Drop for Cipher {
    fn drop(&mut self) {
        // SAFETY: the context came from EVP_CIPHER_CTX_new and is freed once.
        unsafe { ffi::EVP_CIPHER_CTX_free(self.0) };
    }
}

fn len_c(n: usize) -> Option<c_int> {
    c_int::try_from(n).ok()
}

impl Cipher {
    fn new() -> Option<Cipher> {
        // SAFETY: no preconditions; NULL on failure.
        let ctx = unsafe { ffi::EVP_CIPHER_CTX_new() };
        (!ctx.is_null()).then_some(Cipher(ctx))
    }

    /// AES-256-GCM: `body` gets the ciphertext of `plain` (same length), `tag` the tag.
    fn seal(
        &self,
        key: &[u8; 32],
        nonce: &[u8],
        aad: &[&[u8]],
        plain: &[u8],
        body: &mut [u8],
        tag: &mut [u8],
    ) -> bool {
        debug_assert!(nonce.len() == NONCE_LEN && body.len() == plain.len());
        let mut n: c_int = 0;
        // SAFETY: the context is live; key is 32 bytes and nonce 12 (GCM's default IV
        // length); every buffer passed with a length has at least that many bytes; the
        // output of an update is as long as its input (GCM is a stream mode).
        unsafe {
            if ffi::EVP_EncryptInit_ex(
                self.0,
                ffi::EVP_aes_256_gcm(),
                std::ptr::null_mut(),
                key.as_ptr(),
                nonce.as_ptr(),
            ) != 1
            {
                return false;
            }
            for part in aad {
                let Some(len) = len_c(part.len()) else {
                    return false;
                };
                if !part.is_empty()
                    && ffi::EVP_EncryptUpdate(
                        self.0,
                        std::ptr::null_mut(),
                        &mut n,
                        part.as_ptr(),
                        len,
                    ) != 1
                {
                    return false;
                }
            }
            let Some(len) = len_c(plain.len()) else {
                return false;
            };
            if ffi::EVP_EncryptUpdate(self.0, body.as_mut_ptr(), &mut n, plain.as_ptr(), len) != 1
                || n != len
            {
                return false;
            }
            let mut last = [0u8; 16];
            if ffi::EVP_EncryptFinal_ex(self.0, last.as_mut_ptr(), &mut n) != 1 || n != 0 {
                return false;
            }
            ffi::EVP_CIPHER_CTX_ctrl(
                self.0,
                ffi::EVP_CTRL_GCM_GET_TAG,
                TAG_LEN as c_int,
                tag.as_mut_ptr().cast(),
            ) == 1
        }
    }

    /// AES-256-GCM: `out` gets the plaintext of `body` if `tag` authenticates it with `aad`.
    fn open(
        &self,
        key: &[u8; 32],
        nonce: &[u8],
        aad: &[&[u8]],
        body: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> bool {
        debug_assert!(nonce.len() == NONCE_LEN && body.len() == out.len());
        let mut n: c_int = 0;
        let mut tag_copy = [0u8; TAG_LEN];
        tag_copy.copy_from_slice(tag);
        // SAFETY: as in `seal`; the tag is TAG_LEN bytes (OpenSSL copies it).
        let ok = unsafe {
            ffi::EVP_DecryptInit_ex(
                self.0,
                ffi::EVP_aes_256_gcm(),
                std::ptr::null_mut(),
                key.as_ptr(),
                nonce.as_ptr(),
            ) == 1
                && aad.iter().all(|part| {
                    part.is_empty()
                        || len_c(part.len()).is_some_and(|len| {
                            ffi::EVP_DecryptUpdate(
                                self.0,
                                std::ptr::null_mut(),
                                &mut n,
                                part.as_ptr(),
                                len,
                            ) == 1
                        })
                })
                && len_c(body.len()).is_some_and(|len| {
                    ffi::EVP_DecryptUpdate(self.0, out.as_mut_ptr(), &mut n, body.as_ptr(), len)
                        == 1
                        && n == len
                })
                && ffi::EVP_CIPHER_CTX_ctrl(
                    self.0,
                    ffi::EVP_CTRL_GCM_SET_TAG,
                    TAG_LEN as c_int,
                    tag_copy.as_mut_ptr().cast(),
                ) == 1
                && {
                    let mut last = [0u8; 16];
                    ffi::EVP_DecryptFinal_ex(self.0, last.as_mut_ptr(), &mut n) == 1
                }
        };
        if !ok {
            wipe(out);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn keys(lines: &[&str]) -> Keys {
        Keys::parse(lines.join("\n").as_bytes()).unwrap()
    }

    #[test]
    fn seals_and_opens() {
        let k = keys(&[K1]);
        let plain = b"a session's DER, master secret inside";
        let sealed = k.seal(b"ctx", b"id-1", plain).unwrap();
        assert_eq!(sealed.len(), plain.len() + OVERHEAD);
        assert!(
            !sealed.as_slice().windows(plain.len()).any(|w| w == plain),
            "no plaintext in the sealed value"
        );
        assert_eq!(
            k.open(b"ctx", b"id-1", sealed.as_slice())
                .unwrap()
                .as_slice(),
            plain
        );
        // A fresh nonce every time.
        let again = k.seal(b"ctx", b"id-1", plain).unwrap();
        assert_ne!(sealed.as_slice(), again.as_slice());
        // Empty plaintext is fine too.
        let empty = k.seal(b"", b"id", b"").unwrap();
        assert_eq!(
            k.open(b"", b"id", empty.as_slice()).unwrap().as_slice(),
            b""
        );
    }

    #[test]
    fn altered_moved_or_foreign_values_do_not_open() {
        let k = keys(&[K1]);
        let sealed = k.seal(b"ctx", b"id-1", b"secret").unwrap();
        let s = sealed.as_slice();
        for i in 0..s.len() {
            let mut bad = s.to_vec();
            bad[i] ^= 0x01;
            assert!(k.open(b"ctx", b"id-1", &bad).is_none(), "byte {i} flipped");
        }
        assert!(k.open(b"ctx", b"id-2", s).is_none(), "moved to another ID");
        assert!(k.open(b"other", b"id-1", s).is_none(), "another cache");
        assert!(
            k.open(b"ctx", b"id-1", &s[..s.len() - 1]).is_none(),
            "truncated"
        );
        assert!(
            k.open(b"ctx", b"id-1", &s[..OVERHEAD - 1]).is_none(),
            "too short"
        );
        assert!(k.open(b"ctx", b"id-1", b"").is_none());
        let other = keys(&[K2]);
        assert!(other.open(b"ctx", b"id-1", s).is_none(), "unknown key");
    }

    #[test]
    fn rotation_keeps_old_values_open() {
        let old = keys(&[K1]);
        let sealed = old.seal(b"ctx", b"id", b"v").unwrap();
        let rotated = keys(&["# new key first", K2, "", K1]);
        assert_eq!(rotated.len(), 2);
        assert_eq!(
            rotated
                .open(b"ctx", b"id", sealed.as_slice())
                .unwrap()
                .as_slice(),
            b"v"
        );
        let new = rotated.seal(b"ctx", b"id", b"w").unwrap();
        assert!(
            old.open(b"ctx", b"id", new.as_slice()).is_none(),
            "sealed with the new key"
        );
        assert_eq!(
            keys(&[K2])
                .open(b"ctx", b"id", new.as_slice())
                .unwrap()
                .as_slice(),
            b"w"
        );
    }

    #[test]
    fn bad_key_files_are_refused_without_quoting_keys() {
        let err = |t: &str| Keys::parse(t.as_bytes()).err().unwrap();
        assert!(err("").contains("no key"));
        assert!(err("# only a comment\n").contains("no key"));
        let short = &K1[..63];
        let e = err(short);
        assert!(e.contains("line 1") && e.contains("64 hex digits"), "{e}");
        assert!(!e.contains(short), "the key is not quoted: {e}");
        let bad = K1.replace('0', "g");
        assert!(err(&bad).contains("line 1"));
        assert!(err(&format!("{K1}\n{K1}")).contains("twice"));
        assert!(err("zz").contains("line 1"));
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sesscache-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, format!("{K1}\n")).unwrap();
        let p = path.to_str().unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keys::from_file(p).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Permission);
        assert!(e.message.contains("0644"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Keys::from_file(p).unwrap().len(), 1);
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            Keys::from_file(link.to_str().unwrap()).is_err(),
            "no symlinks"
        );
        let e = Keys::from_file(dir.join("missing").to_str().unwrap())
            .err()
            .unwrap();
        assert!(e.message.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
