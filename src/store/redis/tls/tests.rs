//! The TLS layer against sockets this test makes (the real servers are in
//! c-tests/redis_tls.sh).

use super::*;
use std::net::TcpListener;

/// A TCP server on loopback that answers every connection with `reply` and closes it.
fn answering(reply: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(reply);
        }
    });
    port
}

fn info(port: u16) -> ConnectionInfo {
    ConnectionInfo {
        addr: redis::ConnectionAddr::Tcp("127.0.0.1".into(), port),
        redis: Default::default(),
    }
}

/// Puts one error of the caller's on this thread's OpenSSL queue (a DER decode of junk).
fn callers_error() -> u64 {
    // SAFETY: clears this thread's queue, then a decode that fails on 3 bytes.
    unsafe {
        openssl_sys::ERR_clear_error();
        let junk = [0x30u8, 0x80, 0x00];
        let mut p = junk.as_ptr();
        let x = openssl_sys::d2i_X509(std::ptr::null_mut(), &mut p, junk.len() as _);
        assert!(x.is_null());
        openssl_sys::ERR_peek_last_error() as u64
    }
}

/// What a handshake leaves in the thread's OpenSSL error queue: nothing of ours. (OpenSSL's
/// handshake itself empties the queue when it starts, as it does for any handshake: the
/// store makes its handshakes on its own threads, and reads the TLS 1.3 tickets there.)
#[test]
fn a_failed_handshake_leaves_nothing_in_the_error_queue() {
    let tls = Tls::new(&crate::config::RedisTls::default()).expect("system CA store");
    let port = answering(b"-ERR not TLS\r\nHTTP/1.1 400 Bad Request\r\n\r\n");
    // With an error of the caller's queued, and with an empty queue.
    for with_callers in [true, false] {
        let before = if with_callers {
            callers_error()
        } else {
            // SAFETY: no preconditions.
            unsafe { openssl_sys::ERR_clear_error() };
            0
        };
        let e = match TlsConnection::connect(&tls, &info(port), Duration::from_secs(2)) {
            Ok(_) => panic!("a handshake with a non-TLS server succeeded"),
            Err(e) => e,
        };
        assert!(e.to_string().contains("TLS to 127.0.0.1"), "{e}");
        // SAFETY: no preconditions: they only look at this thread's queue.
        let (first, last) = unsafe {
            (
                openssl_sys::ERR_get_error() as u64,
                openssl_sys::ERR_peek_last_error() as u64,
            )
        };
        assert!(
            first == 0 || first == before,
            "an error of ours was left: {e}"
        );
        assert_eq!(last, 0, "the queue held more than the caller's: {e}");
    }
}

#[test]
fn a_wrong_version_is_named_and_bounded() {
    let tls = Tls::new(&crate::config::RedisTls::default()).unwrap();
    let port = answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let t0 = Instant::now();
    let e = TlsConnection::connect(&tls, &info(port), Duration::from_millis(500))
        .err()
        .expect("refused");
    assert!(t0.elapsed() < Duration::from_secs(2));
    let text = e.to_string();
    assert!(
        text.contains("the TLS handshake failed") || text.contains("closed the connection"),
        "{text}"
    );
}

#[test]
fn a_silent_server_costs_at_most_the_budget() {
    let tls = Tls::new(&crate::config::RedisTls::default()).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Accepted by the kernel's backlog, never answered.
    let t0 = Instant::now();
    let e = TlsConnection::connect(&tls, &info(port), Duration::from_millis(150))
        .err()
        .expect("no answer");
    let took = t0.elapsed();
    assert!(e.is_timeout(), "{e}");
    assert!(
        took >= Duration::from_millis(140) && took < Duration::from_secs(1),
        "{took:?}"
    );
    drop(l);
}

#[test]
fn files_that_cannot_be_used_are_named_at_open() {
    let dir = std::env::temp_dir().join(format!("sesscache-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let cfg = |ca: &std::path::Path| crate::config::RedisTls {
        ca_file: Some(ca.to_str().unwrap().to_string()),
        ..Default::default()
    };
    for (path, says) in [
        (dir.join("none.pem"), "No such file"),
        (junk.clone(), "tls_ca_file"),
    ] {
        let e = Tls::new(&cfg(&path)).err().expect("refused");
        assert!(e.message.contains(path.to_str().unwrap()), "{}", e.message);
        assert!(e.message.contains(says), "{}", e.message);
    }
    let e = Tls::new(&crate::config::RedisTls {
        client_cert: Some((junk.to_str().unwrap().into(), junk.to_str().unwrap().into())),
        ..Default::default()
    })
    .err()
    .expect("refused");
    assert!(e.message.contains("tls_cert_file"), "{}", e.message);
    std::fs::remove_dir_all(&dir).unwrap();
}
