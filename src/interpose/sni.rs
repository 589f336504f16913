//! A resumed session belongs to its server name: the rules the get-session callback applies
//! (`sni_check`, on by default) before it hands a session to OpenSSL, and the strict reader
//! of the ClientHello's `server_name` extension they need.
//!
//! No OpenSSL version checks that a resumed session was made for the name (SNI) the client
//! asks for now: TLS 1.2 only compares the session ID context, TLS 1.3 never looks
//! ("Network-based Origin Confusion Attacks against HTTPS Virtual Hosting", Delignat-Lavaud
//! and Bhargavan, 2015). A session OpenSSL made on a server keeps the name of its full
//! handshake (`SSL_SESSION_get0_hostname`): `final_server_name` in ssl/statem/extensions.c
//! of 1.1.1 to 4.0 copies the ClientHello's name into the session when the handshake was
//! not a resumption, the client sent a name and the server's servername callback accepted it
//! (`SSL_TLSEXT_ERR_OK`). A TLS 1.3 ticket issued on a resumed connection is a copy of the
//! resumed session, so it carries the original name.
//!
//! The rules ([`verdict`]):
//! - names are compared ASCII case-insensitively, one trailing dot ignored (`A.TEST.` is
//!   `a.test`);
//! - a session with a name resumes only on a connection asking for the same name: another
//!   name, or none, is refused;
//! - a session without a name resumes whatever the connection asks for: OpenSSL stores no
//!   name when the client sent none, but also when the server has no servername callback or
//!   its callback did not acknowledge the name, and the two cannot be told apart from the
//!   session; refusing would end resumption on every server without a servername callback;
//! - a ClientHello that cannot be read (none in progress) resumes: never worse than without
//!   the check;
//! - a malformed `server_name` extension is refused: OpenSSL itself fails the handshake on
//!   it (a TLS 1.2 server parses it after the lookup, a TLS 1.3 one before).

/// The ClientHello of the handshake being processed, as far as names go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello<'a> {
    /// No ClientHello is being processed (OpenSSL frees it once its early processing ends).
    Unreadable,
    /// A ClientHello without a `server_name` extension.
    NoName,
    /// The `host_name` the ClientHello asks for.
    Name(&'a [u8]),
    /// A `server_name` extension that does not parse.
    Malformed,
}

/// What to do with a session found in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Resume,
    /// Made for another name than the connection asks for (or for a name, asked for none).
    Refuse,
}

/// `TLSEXT_TYPE_server_name`.
const EXT_SERVER_NAME: u32 = 0;
/// `TLSEXT_NAMETYPE_host_name`.
const HOST_NAME: u8 = 0;
/// `TLSEXT_MAXLEN_host_name`: OpenSSL refuses longer names.
const MAX_NAME: usize = 255;

/// Reads a `server_name` extension's body (RFC 6066 section 3) as OpenSSL's
/// `tls_parse_ctos_server_name` does, strictly: a 2-byte length covering exactly the rest,
/// one entry of type `host_name` (0) with a 2-byte length covering exactly the rest, a name
/// of 1 to 255 bytes without a zero byte. Anything else is None. Never reads out of `ext`.
pub fn parse_server_name(ext: &[u8]) -> Option<&[u8]> {
    let (list_len, list) = split_u16(ext)?;
    if usize::from(list_len) != list.len() || list.is_empty() {
        return None;
    }
    let (&name_type, rest) = list.split_first()?;
    if name_type != HOST_NAME {
        return None;
    }
    let (name_len, name) = split_u16(rest)?;
    if usize::from(name_len) != name.len()
        || name.is_empty()
        || name.len() > MAX_NAME
        || name.contains(&0)
    {
        return None;
    }
    Some(name)
}

fn split_u16(b: &[u8]) -> Option<(u16, &[u8])> {
    match b {
        [hi, lo, rest @ ..] => Some((u16::from_be_bytes([*hi, *lo]), rest)),
        _ => None,
    }
}

/// Whether two server names are the same: ASCII case-insensitively, one trailing dot of
/// either ignored.
pub fn same_name(a: &[u8], b: &[u8]) -> bool {
    fn trim(n: &[u8]) -> &[u8] {
        n.strip_suffix(b".").unwrap_or(n)
    }
    trim(a).eq_ignore_ascii_case(trim(b))
}

/// The rules of the module doc: whether a session made for `session_name` (None: no name
/// stored) may resume on a connection whose ClientHello is `hello`.
pub fn verdict(session_name: Option<&[u8]>, hello: Hello<'_>) -> Verdict {
    let Some(made_for) = session_name else {
        return Verdict::Resume;
    };
    match hello {
        Hello::Unreadable => Verdict::Resume,
        Hello::Name(asked) if same_name(made_for, asked) => Verdict::Resume,
        Hello::Name(_) | Hello::NoName | Hello::Malformed => Verdict::Refuse,
    }
}

/// The ClientHello of the handshake `ssl` is processing. OpenSSL (1.1.1 to 4.0) keeps it
/// from the end of `tls_process_client_hello` to the end of
/// `tls_early_post_process_client_hello` (ssl/statem/statem_srvr.c), which is where it
/// looks sessions up (`ssl_get_prev_session`: TLS 1.2 session IDs, and TLS 1.3 PSK
/// identities, whose extension it parses from there): every get-session callback of a
/// handshake sees it. With ECH (4.0) a ClientHello that decrypts has been replaced by the
/// inner one before that (`tls_process_client_hello`), so the name read is the inner
/// name. `SSL_get_servername` would not do: the servername callback that accepts the name
/// runs only after the lookup.
///
/// # Safety
/// `ssl` is a live connection.
pub unsafe fn hello<'a>(ssl: *mut openssl_sys::SSL) -> Hello<'a> {
    // SAFETY: ssl is live (caller); a NULL out pointer is allowed (only the size is asked).
    if unsafe { openssl_sys::SSL_client_hello_get0_random(ssl, std::ptr::null_mut()) } == 0 {
        return Hello::Unreadable;
    }
    let mut p: *const u8 = std::ptr::null();
    let mut len: usize = 0;
    // SAFETY: ssl is live with a ClientHello; p and len are writable.
    if unsafe { openssl_sys::SSL_client_hello_get0_ext(ssl, EXT_SERVER_NAME, &mut p, &mut len) }
        != 1
    {
        return Hello::NoName;
    }
    if p.is_null() {
        // An extension with an empty body (PACKET_data of nothing may be anything).
        return Hello::Malformed;
    }
    // SAFETY: OpenSSL points at `len` bytes of the ClientHello it holds, which live until
    // its early processing ends, after this callback returns ('a stays inside the callback).
    let ext = unsafe { std::slice::from_raw_parts(p, len) };
    match parse_server_name(ext) {
        Some(name) => Hello::Name(name),
        None => Hello::Malformed,
    }
}

/// The name a session was made for, or None.
///
/// # Safety
/// `sess` is a live session that outlives the returned borrow.
pub unsafe fn session_name<'a>(sess: *const openssl_sys::SSL_SESSION) -> Option<&'a [u8]> {
    // SAFETY: sess is live (caller); the string is the session's, NUL-terminated.
    unsafe {
        let p = crate::ossl::SSL_SESSION_get0_hostname(sess);
        (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_bytes())
    }
}

/// A fingerprint of a name for log lines, the same for names [`same_name`] finds equal.
pub fn name_fingerprint(name: &[u8]) -> u32 {
    let trimmed = name.strip_suffix(b".").unwrap_or(name);
    crate::log::fingerprint(&trimmed.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed extension body for `name`.
    fn ext(name: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        v.push(0);
        v.extend_from_slice(&(name.len() as u16).to_be_bytes());
        v.extend_from_slice(name);
        v
    }

    #[test]
    fn well_formed_names_parse() {
        assert_eq!(parse_server_name(&ext(b"a.test")), Some(&b"a.test"[..]));
        let long = vec![b'x'; 255];
        assert_eq!(parse_server_name(&ext(&long)), Some(&long[..]));
        // What OpenSSL's s_client sends for -servername a.test.
        let wire = [0, 9, 0, 0, 6, b'a', b'.', b't', b'e', b's', b't'];
        assert_eq!(parse_server_name(&wire), Some(&b"a.test"[..]));
    }

    #[test]
    fn malformed_extensions_are_none() {
        let good = ext(b"a.test");
        assert_eq!(parse_server_name(&[]), None);
        assert_eq!(parse_server_name(&[0]), None);
        assert_eq!(parse_server_name(&[0, 0]), None, "an empty list");
        // Every truncation, and one byte too many.
        for n in 0..good.len() {
            assert_eq!(parse_server_name(&good[..n]), None, "cut at {n}");
        }
        let mut longer = good.clone();
        longer.push(b'x');
        assert_eq!(parse_server_name(&longer), None, "trailing byte");
        // The list length says more or less than there is.
        let mut bad = good.clone();
        bad[1] += 1;
        assert_eq!(parse_server_name(&bad), None);
        bad[1] -= 2;
        assert_eq!(parse_server_name(&bad), None);
        // The name length says more or less than there is.
        let mut bad = good.clone();
        bad[4] += 1;
        assert_eq!(parse_server_name(&bad), None);
        bad[4] -= 2;
        assert_eq!(parse_server_name(&bad), None);
        // Another name type.
        let mut bad = good.clone();
        bad[2] = 1;
        assert_eq!(parse_server_name(&bad), None);
        // Two entries (the RFC allows one per type; OpenSSL reads one).
        let mut two = ext(b"a.test");
        two.extend_from_slice(&[0, 0, 1, b'b']);
        let total = (two.len() - 2) as u16;
        two[..2].copy_from_slice(&total.to_be_bytes());
        assert_eq!(parse_server_name(&two), None);
        // Empty, too long, or with a zero byte.
        assert_eq!(parse_server_name(&ext(b"")), None);
        assert_eq!(parse_server_name(&ext(&[b'x'; 256])), None);
        assert_eq!(parse_server_name(&ext(b"a\0.test")), None);
    }

    #[test]
    fn names_compare_case_insensitively_with_one_trailing_dot() {
        assert!(same_name(b"a.test", b"a.test"));
        assert!(same_name(b"A.TEST.", b"a.test"));
        assert!(same_name(b"a.test", b"a.Test."));
        assert!(same_name(b"a.test.", b"a.test."));
        assert!(!same_name(b"a.test", b"b.test"));
        assert!(!same_name(b"a.test..", b"a.test"), "one dot only");
        assert!(!same_name(b"a.test", b"a.tes"));
        assert!(!same_name(b"a.test", b"xa.test"));
        // Only ASCII letters fold: bytes above 0x7f compare as they are.
        assert!(!same_name("é.test".as_bytes(), "É.test".as_bytes()));
    }

    #[test]
    fn the_rules() {
        use Hello::*;
        use Verdict::*;
        let a = Some(&b"a.test"[..]);
        // Same name: resumes (case, trailing dot).
        assert_eq!(verdict(a, Name(b"a.test")), Resume);
        assert_eq!(verdict(a, Name(b"A.TEST.")), Resume);
        // Another name, no name, a malformed extension: refused.
        assert_eq!(verdict(a, Name(b"b.test")), Refuse);
        assert_eq!(verdict(a, NoName), Refuse);
        assert_eq!(verdict(a, Malformed), Refuse);
        // No ClientHello to read: never worse than without the check.
        assert_eq!(verdict(a, Unreadable), Resume);
        // A session without a name resumes whatever is asked.
        for h in [NoName, Name(b"b.test"), Malformed, Unreadable] {
            assert_eq!(verdict(None, h), Resume, "{h:?}");
        }
    }

    proptest::proptest! {
        /// Hostile bytes never panic, and what parses is a name inside the input that the
        /// rules accept for itself.
        #[test]
        fn hostile_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Some(name) = parse_server_name(&b) {
                proptest::prop_assert!(!name.is_empty() && name.len() <= MAX_NAME);
                proptest::prop_assert_eq!(b.len(), name.len() + 5);
                proptest::prop_assert_eq!(&b[5..], name);
                proptest::prop_assert_eq!(verdict(Some(name), Hello::Name(name)), Verdict::Resume);
            }
        }

        /// A name built into an extension always reads back.
        #[test]
        fn round_trip(name in proptest::collection::vec(1u8..=255, 1..=255)) {
            let e = ext(&name);
            proptest::prop_assert_eq!(parse_server_name(&e), Some(&name[..]));
        }
    }
}
