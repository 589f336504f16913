use super::*;
use std::os::raw::{c_char, c_int, c_long, c_uint, c_void};

// ---- a small DER writer, to build sessions and client certificates of any shape -------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn cons(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    cons(0x30, parts)
}

fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        body.extend(groups.iter().rev());
    }
    tlv(0x06, &body)
}

fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

/// A Name of one RDN per (type, value).
fn name(rdns: &[(String, String)]) -> Vec<u8> {
    let sets: Vec<Vec<u8>> = rdns
        .iter()
        .map(|(t, v)| cons(0x31, &[seq(&[oid(t), utf8(v)])]))
        .collect();
    seq(&sets)
}

fn ext(id: &str, value: Vec<u8>) -> Vec<u8> {
    seq(&[oid(id), tlv(0x04, &value)])
}

/// A P-256 public key: the curve's generator, a valid point.
fn ec_spki() -> Vec<u8> {
    let mut point = vec![0x00, 0x04];
    point.extend(hex(
        "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296",
    ));
    point.extend(hex(
        "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5",
    ));
    seq(&[
        seq(&[oid("1.2.840.10045.2.1"), oid("1.2.840.10045.3.1.7")]),
        tlv(0x03, &point),
    ])
}

/// An RSA public key of `bits` (a made-up odd modulus: decoding does not check it).
fn rsa_spki(bits: usize) -> Vec<u8> {
    let mut n = vec![0x00, 0xc5];
    n.extend((1..bits / 8).map(|i| (i * 131 % 251) as u8 | 1));
    let key = seq(&[tlv(0x02, &n), tlv(0x02, &[0x01, 0x00, 0x01])]);
    let mut bits_content = vec![0x00];
    bits_content.extend(key);
    seq(&[
        seq(&[oid("1.2.840.113549.1.1.1"), tlv(0x05, &[])]),
        tlv(0x03, &bits_content),
    ])
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A certificate (its signature is not checked by decoding, so it is filler).
fn cert(subject: &[(String, String)], spki: Vec<u8>, exts: Vec<Vec<u8>>) -> Vec<u8> {
    let sig_alg = seq(&[oid("1.2.840.10045.4.3.2")]);
    let mut tbs = vec![
        cons(0xa0, &[tlv(0x02, &[2])]),
        tlv(0x02, &[0x01, 0x23, 0x45]),
        sig_alg.clone(),
        name(&[("2.5.4.3".into(), "issuer".into())]),
        seq(&[tlv(0x17, b"250101000000Z"), tlv(0x17, b"350101000000Z")]),
        name(subject),
        spki,
    ];
    if !exts.is_empty() {
        tbs.push(cons(0xa3, &[seq(&exts)]));
    }
    let mut sig = vec![0x00];
    sig.extend(seq(&[tlv(0x02, &[0x11; 32]), tlv(0x02, &[0x22; 32])]));
    seq(&[seq(&tbs), sig_alg, tlv(0x03, &sig)])
}

fn cn(v: &str) -> Vec<(String, String)> {
    vec![("2.5.4.3".into(), v.into())]
}

// ---- sessions -------------------------------------------------------------------------

extern "C" {
    fn SSL_SESSION_set1_hostname(s: *mut openssl_sys::SSL_SESSION, h: *const c_char) -> c_int;
    fn SSL_SESSION_set_time(s: *mut openssl_sys::SSL_SESSION, t: c_long) -> c_long;
    fn X509_check_purpose(x: *mut openssl_sys::X509, id: c_int, ca: c_int) -> c_int;
    fn X509_get0_pubkey(x: *const openssl_sys::X509) -> *mut openssl_sys::EVP_PKEY;
    fn EVP_PKEY_get0(pkey: *const openssl_sys::EVP_PKEY) -> *mut c_void;
    fn X509_check_host(
        x: *mut openssl_sys::X509,
        name: *const c_char,
        len: usize,
        flags: c_uint,
        peername: *mut *mut c_char,
    ) -> c_int;
}

/// The DER of a TLS 1.2 server session without a peer certificate.
fn session_der(hostname: Option<&str>) -> Vec<u8> {
    let s = crate::test_sessions::tls12(&[7u8; 32], &[9u8; 48]);
    // SAFETY: test-only OpenSSL calls on the session made above, freed here.
    unsafe {
        SSL_SESSION_set_time(s, 1_700_000_000);
        if let Some(h) = hostname {
            let h = std::ffi::CString::new(h).unwrap();
            assert_eq!(SSL_SESSION_set1_hostname(s, h.as_ptr()), 1);
        }
        let der = crate::session::encode(s).unwrap().as_slice().to_vec();
        openssl_sys::SSL_SESSION_free(s);
        der
    }
}

/// `session` with `[3] { cert }` (the peer) inserted where OpenSSL's encoder puts it:
/// after `[2] timeout`, before the fields tagged [4] and up.
fn with_peer(session: &[u8], cert: &[u8]) -> Vec<u8> {
    let outer = read(session, 0, session.len()).ok().unwrap();
    let mut fields = Vec::new();
    let mut at = outer.content.start;
    while at < outer.content.end {
        let f = read(session, at, outer.content.end).ok().unwrap();
        fields.push(session[at..f.end].to_vec());
        at = f.end;
    }
    let pos = fields
        .iter()
        .position(|f| (0xa4..=0xbf).contains(&f[0]))
        .unwrap_or(fields.len());
    fields.insert(pos, cons(0xa3, &[cert.to_vec()]));
    seq(&fields)
}

/// `session` (DER without a peer) with a P-256 client certificate whose subject has
/// `names` RDNs: a session that costs more the more names it has.
pub(crate) fn with_client_cert(session: &[u8], names: usize) -> Vec<u8> {
    let subject: Vec<(String, String)> = (0..names.max(1))
        .map(|_| ("2.5.4.3".into(), "x".into()))
        .collect();
    with_peer(session, &cert(&subject, ec_spki(), vec![]))
}

/// The elements of the peer field, as `object_cost` counts them.
fn peer_elements(der: &[u8]) -> usize {
    let outer = read(der, 0, der.len()).ok().unwrap();
    let mut at = outer.content.start;
    while at < outer.content.end {
        let f = read(der, at, outer.content.end).ok().unwrap();
        if f.tag == 0xa3 {
            return elements(der, at..f.end);
        }
        at = f.end;
    }
    0
}

// ---- the walk -------------------------------------------------------------------------

#[test]
fn counts_nested_and_encapsulated_elements() {
    // SEQUENCE { INTEGER 1, OCTET STRING { SEQUENCE { NULL } }, BIT STRING (opaque) }
    let der = seq(&[
        tlv(0x02, &[1]),
        tlv(0x04, &seq(&[tlv(0x05, &[])])),
        tlv(0x03, &[0x00, 0xff, 0xff, 0xff]),
    ]);
    assert_eq!(elements(&der, 0..der.len()), 6);
    // Long-form lengths.
    let big = seq(&[tlv(0x04, &[0xffu8; 300])]);
    assert_eq!(elements(&big, 0..big.len()), 2);
    // Zero padding inside an OCTET STRING is opaque, not end-of-contents markers.
    let zeros = tlv(0x04, &[0u8; 100]);
    assert_eq!(elements(&zeros, 0..zeros.len()), 1);
    // So is printable filler, though its first bytes read as a constructed TLV.
    let filler: Vec<u8> = (0..7400).map(|i| b'!' + (i * 7 % 90) as u8).collect();
    let opaque = tlv(0x04, &filler);
    assert_eq!(elements(&opaque, 0..opaque.len()), 1);
    // DER followed by junk: a decoder reads the first item.
    let mut prefixed = seq(&[tlv(0x05, &[]), tlv(0x05, &[])]);
    prefixed.extend([0xff; 30]);
    let prefixed = tlv(0x04, &prefixed);
    assert_eq!(elements(&prefixed, 0..prefixed.len()), 4);
}

/// A client certificate with a big opaque extension costs about its bytes, not more.
#[test]
fn opaque_extensions_cost_their_bytes() {
    let filler: Vec<u8> = (0..7400).map(|i| b'!' + (i * 7 % 90) as u8).collect();
    let der = with_peer(
        &session_der(None),
        &cert(
            &cn("client"),
            ec_spki(),
            vec![ext("1.3.6.1.4.1.55555.1", filler)],
        ),
    );
    let e = peer_elements(&der);
    assert!(e < 50, "{e} elements");
    assert!(object_cost(&der) < 6 * der.len(), "{}", object_cost(&der));
}

#[test]
fn what_does_not_parse_counts_at_most() {
    // A SEQUENCE whose content is junk: one element per two bytes of it.
    let junk = cons(0x30, &[vec![0xff; 40]]);
    assert_eq!(elements(&junk, 0..junk.len()), 1 + 20);
    // BER indefinite length inside an OCTET STRING: a decoder would read it.
    let mut ber = vec![0x30, 0x80];
    ber.extend([0x05, 0x00].repeat(20));
    ber.extend([0x00, 0x00]);
    let hidden = tlv(0x04, &ber);
    assert!(elements(&hidden, 0..hidden.len()) > ber.len() / 2);
    // A truncated session costs as if it were all certificate.
    let der = session_der(None);
    let cut = &der[..der.len() - 1];
    assert!(object_cost(cut) >= STRUCTURED_BASE + PER_ELEMENT * (cut.len() / 2 - 2));
}

#[test]
fn a_session_without_a_peer_costs_base_plus_bytes() {
    for host in [None, Some("a-rather-long-server-name.example")] {
        let der = session_der(host);
        assert_eq!(object_cost(&der), BASE + PER_BYTE * der.len(), "{host:?}");
    }
}

#[test]
fn a_peer_is_charged_per_element() {
    let plain = session_der(None);
    let small = with_peer(&plain, &cert(&cn("client"), ec_spki(), vec![]));
    let names: Vec<(String, String)> = (0..100).map(|_| ("2.5.4.3".into(), "x".into())).collect();
    let many = with_peer(&plain, &cert(&names, ec_spki(), vec![]));
    let e_small = peer_elements(&small);
    let e_many = peer_elements(&many);
    assert!(e_many >= e_small + 396, "{e_small} {e_many}");
    assert_eq!(
        object_cost(&small),
        BASE + PER_BYTE * small.len() + STRUCTURED_BASE + PER_ELEMENT * e_small
    );
}

proptest::proptest! {
    /// Any bytes: no panic, and never more elements than two bytes each can hold.
    #[test]
    fn arbitrary_bytes(der in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let n = elements(&der, 0..der.len());
        proptest::prop_assert!(n <= der.len() / 2, "{} elements in {} bytes", n, der.len());
        let cost = object_cost(&der);
        proptest::prop_assert!(cost >= BASE + PER_BYTE * der.len());
        proptest::prop_assert!(cost <= BASE + PER_BYTE * der.len() + STRUCTURED_BASE * (1 + der.len() / 2) + PER_ELEMENT * der.len() / 2);
    }

    /// Session-shaped bytes with a mutation: still no panic.
    #[test]
    fn mutated_sessions(pos in 0usize..2000, byte in proptest::num::u8::ANY) {
        let mut der = with_peer(&session_der(None), &cert(&cn("c"), rsa_spki(1024), vec![]));
        let i = pos % der.len();
        der[i] = byte;
        let _ = object_cost(&der);
    }
}

// ---- the formula against what OpenSSL allocates ----------------------------------------

/// The shapes of client certificate measured: ordinary ones and ones built to make
/// OpenSSL allocate as much as possible per byte.
fn shapes() -> Vec<(&'static str, Option<Vec<u8>>)> {
    let many = |n: usize, f: &dyn Fn(usize) -> Vec<u8>| (0..n).map(f).collect::<Vec<_>>();
    let std_exts = vec![
        ext("2.5.29.19", seq(&[])),                         // basicConstraints
        ext("2.5.29.15", tlv(0x03, &[0x07, 0x80])),         // keyUsage
        ext("2.5.29.37", seq(&[oid("1.3.6.1.5.5.7.3.2")])), // extKeyUsage
        ext("2.5.29.14", tlv(0x04, &[0x5a; 20])),           // subjectKeyIdentifier
        ext("2.5.29.35", seq(&[tlv(0x80, &[0x5b; 20])])),   // authorityKeyIdentifier
        ext(
            "2.5.29.17",
            seq(&[tlv(0x81, b"a@b.example"), tlv(0x82, b"client.example")]),
        ),
    ];
    let rdns = |n: usize, t: &dyn Fn(usize) -> String, v: &str| -> Vec<(String, String)> {
        (0..n).map(|i| (t(i), v.to_string())).collect()
    };
    vec![
        ("no peer certificate", None),
        ("P-256", Some(cert(&cn("client"), ec_spki(), vec![]))),
        (
            "P-256, usual extensions",
            Some(cert(&cn("client"), ec_spki(), std_exts)),
        ),
        (
            "RSA-2048",
            Some(cert(&cn("client"), rsa_spki(2048), vec![])),
        ),
        (
            "RSA-8192",
            Some(cert(&cn("client"), rsa_spki(8192), vec![])),
        ),
        (
            "one 7,000-byte extension",
            Some(cert(
                &cn("client"),
                ec_spki(),
                vec![ext("1.3.6.1.4.1.99999.1", vec![0x5a; 7000])],
            )),
        ),
        (
            "600 one-letter CN RDNs",
            Some(cert(
                &rdns(600, &|_| "2.5.4.3".into(), "x"),
                ec_spki(),
                vec![],
            )),
        ),
        (
            "600 RDNs of unknown OIDs",
            Some(cert(
                &rdns(600, &|i| format!("1.3.{}", 100 + i), ""),
                ec_spki(),
                vec![],
            )),
        ),
        (
            "600 unknown extensions",
            Some(cert(
                &cn("c"),
                ec_spki(),
                many(600, &|i| ext(&format!("1.3.{}", 100 + i), vec![])),
            )),
        ),
        (
            "1,500 DNS names",
            Some(cert(
                &cn("c"),
                ec_spki(),
                vec![ext("2.5.29.17", seq(&many(1500, &|_| tlv(0x82, b"a"))))],
            )),
        ),
        (
            "1,000 CRL distribution points",
            Some(cert(
                &cn("c"),
                ec_spki(),
                vec![ext(
                    "2.5.29.31",
                    seq(&many(1000, &|_| {
                        seq(&[cons(0xa0, &[cons(0xa0, &[tlv(0x86, b"a")])])])
                    })),
                )],
            )),
        ),
        (
            "800 name constraints",
            Some(cert(
                &cn("c"),
                ec_spki(),
                vec![ext(
                    "2.5.29.30",
                    seq(&[cons(0xa0, &many(800, &|_| seq(&[tlv(0x82, b"a")])))]),
                )],
            )),
        ),
    ]
}

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    m.uordblks + m.hblkhd
}

/// Asks for everything OpenSSL caches in a certificate when an application inspects it.
///
/// # Safety
/// `sess` is a live session.
unsafe fn inspect_peer(sess: *mut openssl_sys::SSL_SESSION) {
    // SAFETY: sess is live (caller); these calls read the certificate and fill its caches.
    unsafe {
        let peer = crate::ossl::SSL_SESSION_get0_peer(sess);
        if peer.is_null() {
            return;
        }
        X509_check_purpose(peer, -1, 0);
        let key = X509_get0_pubkey(peer);
        if !key.is_null() {
            EVP_PKEY_get0(key);
        }
        X509_check_host(peer, c"a".as_ptr(), 1, 0, std::ptr::null_mut());
        openssl_sys::ERR_clear_error();
    }
}

const MEASURE_ENV: &str = "SESSCACHE_MEASURE_COST";

/// The cost formula bounds the heap that `d2i_SSL_SESSION` objects hold, after the
/// application inspected their certificates, for every shape above. Measured with glibc's
/// `mallinfo2` (bytes in use, malloc overhead included) around decoding 16 objects kept
/// alive at once, in a child process with one thread and no thread cache, so that nothing
/// else allocates meanwhile.
#[test]
fn formula_bounds_what_openssl_allocates() {
    if std::env::var_os(MEASURE_ENV).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "session::cost::tests::formula_bounds_what_openssl_allocates",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MEASURE_ENV, "1")
            .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the measurement failed");
        assert!(text.contains("1 passed"), "the measurement did not run");
        return;
    }
    const N: usize = 16;
    let plain = session_der(None);
    println!(
        "{:<34} {:>9} {:>9} {:>11} {:>11} {:>7}",
        "peer certificate", "DER", "elements", "heap", "cost", "margin"
    );
    let mut worst = f64::MAX;
    for (label, cert) in shapes() {
        let der = match &cert {
            Some(c) => with_peer(&plain, c),
            None => plain.clone(),
        };
        // Once untimed, so that OpenSSL's lazily built tables are not counted.
        let first = crate::session::decode(&der).expect("the session decodes");
        assert_eq!(first.has_peer(), cert.is_some(), "{label}");
        // SAFETY: first holds a reference.
        unsafe { inspect_peer(first.as_ptr()) };
        drop(first);
        let before = heap_in_use();
        let objs: Vec<_> = (0..N)
            .map(|_| {
                let o = crate::session::decode(&der).unwrap();
                // SAFETY: o holds a reference.
                unsafe { inspect_peer(o.as_ptr()) };
                o
            })
            .collect();
        let heap = heap_in_use().saturating_sub(before) / N;
        drop(objs);
        let cost = object_cost(&der);
        let margin = cost as f64 / heap as f64;
        worst = worst.min(margin);
        println!(
            "{label:<34} {:>9} {:>9} {heap:>11} {cost:>11} {margin:>7.2}",
            der.len(),
            peer_elements(&der)
        );
        assert!(
            cost >= heap,
            "{label}: {cost} estimated, {heap} allocated by OpenSSL"
        );
    }
    println!("smallest margin: {worst:.2}");
}
