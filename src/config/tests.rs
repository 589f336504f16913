//! The parser's tests: URLs, limits, every error.

use super::params::{number, size, DefaultText, Kind, Scheme, PARAMS};
use super::*;

fn msg(url: &str) -> String {
    parse(url).unwrap_err().0
}

#[test]
fn defaults() {
    let c = parse("memory:").unwrap();
    assert_eq!(
        c.backend,
        Backend::Memory {
            capacity: DEFAULT_CAPACITY,
            max_bytes: DEFAULT_MAX_BYTES
        }
    );
    assert_eq!(c.common, Common::default());
    assert_eq!(parse("memory:?").unwrap(), c);
}

#[test]
fn every_parameter() {
    let c =
        parse("memory:?capacity=5&max_bytes=2M&ttl=60&single_use=0&max_session_bytes=4k").unwrap();
    assert_eq!(
        c.backend,
        Backend::Memory {
            capacity: 5,
            max_bytes: 2 << 20
        }
    );
    assert_eq!(
        c.common,
        Common {
            ttl: Some(60),
            single_use: false,
            sni_check: true,
            max_session_bytes: 4096,
            tickets: Tickets::Auto,
            force: false,
            ticket_rotate: 3600,
        }
    );
    assert_eq!(
        parse("memory:?max_bytes=1G").unwrap().backend,
        Backend::Memory {
            capacity: DEFAULT_CAPACITY,
            max_bytes: 1 << 30
        }
    );
}

#[test]
fn errors_name_the_bad_part() {
    assert!(msg("memory:?capacity=banana").contains("capacity"));
    assert!(msg("memory:?capacity=banana").contains("banana"));
    assert!(msg("memory:?capacity=0").contains("capacity"));
    assert!(msg("memory:?colour=red").contains("colour"));
    assert!(msg("redis2://x").contains("redis2"));
    assert!(msg("nonsense").contains("nonsense"));
    assert!(msg("memory:foo").contains("foo"));
    assert!(msg("memory:?ttl").contains("ttl"));
    assert!(msg("memory:?ttl=1&ttl=2").contains("twice"));
    assert!(msg("memory:?single_use=maybe").contains("single_use"));
    assert!(msg("memory:?tickets=sometimes").contains("tickets"));
    assert_eq!(
        parse("memory:?tickets=keep").unwrap().common.tickets,
        Tickets::Keep
    );
    assert_eq!(
        parse("shm:x?tickets=stateful&force=1").unwrap().common,
        Common {
            tickets: Tickets::Stateful,
            force: true,
            ..Common::default()
        }
    );
    assert!(msg("memory:?force=2").contains("force"));
    assert!(msg("memory:?max_bytes=12Q").contains("max_bytes"));
    assert!(msg("memory:?max_bytes=K").contains("max_bytes"));
    assert!(msg("memory:?max_bytes=99999999999999999999G").contains("max_bytes"));
    assert!(msg("memory:?max_session_bytes=2M").contains("max_session_bytes"));
    assert!(msg("memory:?max_bytes=1K").contains("max_session_bytes"));
    assert!(msg("shm:").contains("name"));
    assert!(msg("shm:a/b").contains("a/b"));
    assert!(msg("shm:.hidden").contains(".hidden"));
    assert!(msg("shm:-x").contains("-x"));
    assert!(msg("shm:_x").contains("_x"));
    assert!(msg("shm:x?mode=0777").contains("mode"));
    assert!(msg("memory:?capacity=+5").contains("+5"));
    assert!(msg("shm:x?size=1K").contains("size"));
    assert!(msg("shm:x?capacity=5").contains("capacity"));
}

#[test]
fn shm_urls() {
    let c = parse("shm:web-1.cache_A?size=1M&ttl=30").unwrap();
    assert_eq!(
        c.backend,
        Backend::Shm {
            name: "web-1.cache_A".into(),
            size: Some(1 << 20),
            mode: 0o600,
        }
    );
    assert_eq!(c.common.ttl, Some(30));
    assert_eq!(
        parse("shm:x").unwrap().backend,
        Backend::Shm {
            name: "x".into(),
            size: None,
            mode: 0o600,
        }
    );
    assert!(parse(&format!("shm:{}", "a".repeat(200))).is_ok());
    assert!(parse("shm:0").is_ok());
}

/// A URL of `n` distinct parameters `p0=1&p1=1&...`.
fn many_params(n: usize) -> String {
    let mut url = String::from("memory:?");
    for i in 0..n {
        url.push_str(&format!("p{i}=1&"));
    }
    url
}

#[test]
fn huge_url_is_refused_naming_its_length() {
    let url = many_params(160_000);
    assert!(url.len() > MAX_URL_BYTES);
    assert_eq!(
        msg(&url),
        format!("cache URL is {} bytes long; at most 4096", url.len())
    );
    // At the limit a URL is parsed; one byte more is refused.
    let mut url = String::from("memory:?ttl=1");
    url.push_str(&"&".repeat(MAX_URL_BYTES - url.len()));
    assert_eq!(url.len(), MAX_URL_BYTES);
    assert_eq!(parse(&url).unwrap().common.ttl, Some(1));
    url.push('&');
    assert_eq!(msg(&url), "cache URL is 4097 bytes long; at most 4096");
}

#[test]
fn too_many_parameters_are_refused_naming_the_count() {
    let m = msg(&many_params(33));
    assert_eq!(m, "cache URL has 33 parameters; at most 32");
    assert!(msg(&format!("shm:x?{}", "ttl=1&".repeat(40))).contains("40 parameters"));
    // 32 are allowed: then the first unknown one is the error.
    assert!(msg(&many_params(32)).contains("unknown parameter 'p0'"));
    // Empty pieces are not parameters.
    let url = format!("memory:?ttl=5{}", "&".repeat(100));
    assert_eq!(parse(&url).unwrap().common.ttl, Some(5));
}

#[test]
fn repeats_within_the_limit_are_given_twice() {
    let url = format!("memory:?{}", ["ttl=1"; 32].join("&"));
    assert_eq!(msg(&url), "parameter 'ttl' is given twice");
    let url = format!("shm:x?{}", ["mode=0660"; 32].join("&"));
    assert_eq!(msg(&url), "parameter 'mode' is given twice");
}

#[test]
fn unknown_parameters_list_the_known_ones() {
    assert_eq!(
        msg("memory:?colour=red"),
        "unknown parameter 'colour' for memory: (known: capacity, max_bytes, ttl, \
         single_use, sni_check, max_session_bytes, tickets, ticket_rotate, force)"
    );
    assert_eq!(
        msg("shm:x?capacity=5"),
        "unknown parameter 'capacity' for shm: (known: size, mode, ttl, \
         single_use, sni_check, max_session_bytes, tickets, ticket_rotate, force, key_file)"
    );
    // A parameter of the other scheme is unknown, not silently taken.
    assert!(msg("memory:?mode=0600").contains("unknown parameter 'mode'"));
    assert!(msg("memory:?size=1M").contains("unknown parameter 'size'"));
}

#[test]
fn numbers_are_ascii_digits_only() {
    for bad in ["+5", " 5", "5 ", "-1", "5_0", "0x10", "", "\u{0665}"] {
        let quoted = format!("'{bad}'");
        let m = msg(&format!("memory:?capacity={bad}"));
        assert!(m.contains("capacity") && m.contains(&quoted), "{m}");
        let m = msg(&format!("memory:?ttl={bad}"));
        assert!(m.contains("ttl") && m.contains(&quoted), "{m}");
        let m = msg(&format!("memory:?max_bytes={bad}"));
        assert!(m.contains("max_bytes") && m.contains(&quoted), "{m}");
        let m = msg(&format!("memory:?max_session_bytes={bad}"));
        assert!(
            m.contains("max_session_bytes") && m.contains(&quoted),
            "{m}"
        );
        let m = msg(&format!("shm:x?size={bad}"));
        assert!(m.contains("size") && m.contains(&quoted), "{m}");
    }
    for bad in ["+5K", " 5M", "5 K", "-1G", "1_0M", "+64K"] {
        assert!(size(bad).is_none(), "{bad}");
        assert!(msg(&format!("shm:x?size={bad}")).contains("size"));
    }
    assert_eq!(Kind::Number.parse("007"), Some(7));
    assert_eq!(number("007"), Some(7));
    assert!(Kind::Number.parse("99999999999999999999999").is_none());
    assert_eq!(size("64k"), Some(64 << 10));
}

#[test]
fn shm_names() {
    let long = "a".repeat(201);
    for bad in ["-x", "_x", ".x", "-", "x/y", "x y", "é", &long] {
        let m = msg(&format!("shm:{bad}"));
        assert!(m.contains(&format!("'{bad}'")), "{m}");
        assert!(
            m.contains("the first character must be an ASCII letter or digit"),
            "{m}"
        );
        assert!(m.contains("'.', '_' or '-', at most 200 bytes"), "{m}");
    }
    for good in ["x", "0", "A-b_c.d", "9-", "a..", "x_"] {
        assert!(parse(&format!("shm:{good}")).is_ok(), "{good}");
    }
}

#[test]
fn shm_mode() {
    let mode = |url: &str| match parse(url).unwrap().backend {
        Backend::Shm { mode, .. } => mode,
        other => panic!("{other:?}"),
    };
    assert_eq!(mode("shm:x"), 0o600);
    assert_eq!(mode("shm:x?mode=0600"), 0o600);
    assert_eq!(mode("shm:x?mode=0660"), 0o660);
    assert_eq!(mode("shm:x?size=1M&mode=0660&ttl=5"), 0o660);
    for bad in ["0777", "0666", "600", "660", "0644", "", "0o660", " 0660"] {
        assert_eq!(
            msg(&format!("shm:x?mode={bad}")),
            format!("bad value '{bad}' for mode: expected 0600 or 0660")
        );
    }
}

/// A valid URL of `scheme` with the parameters `extra` (`KEY=VALUE&...`, or ""), and those
/// the scheme needs (a `redis` URL needs `key_file` or `insecure_plaintext=1`).
fn url_with(scheme: Scheme, extra: &str) -> String {
    let start = match scheme {
        Scheme::Memory => "memory:",
        Scheme::Shm => "shm:x",
        Scheme::Redis => "redis://h",
        Scheme::Rediss => "rediss://h",
        Scheme::RedisUnix => "redis+unix:///s",
        Scheme::RedisCluster => "redis+cluster://h:7000",
        Scheme::RedisSentinel => "redis+sentinel://h:26379/m",
    };
    let needs = match scheme {
        Scheme::Memory | Scheme::Shm => "",
        _ if extra.starts_with("key_file=") => "insecure_plaintext=1&",
        _ => "key_file=/k&",
    };
    format!("{start}?{needs}{extra}")
}

#[test]
fn table_defaults_are_the_parsers() {
    for p in PARAMS {
        let DefaultText::Value(v) = p.default else {
            continue;
        };
        for scheme in Scheme::ALL.into_iter().filter(|&s| p.schemes.contains(s)) {
            let url = url_with(scheme, "");
            assert_eq!(
                parse(&url_with(scheme, &format!("{}={v}", p.name))),
                parse(&url),
                "the table gives '{v}' as the default of {} for {url}",
                p.name
            );
        }
    }
}

#[test]
fn each_scheme_takes_the_parameters_the_table_gives_it() {
    for scheme in Scheme::ALL {
        let url = url_with(scheme, "");
        for (i, p) in PARAMS.iter().enumerate() {
            let given = url_with(scheme, &format!("{}=%", p.name));
            if p.schemes.contains(scheme) {
                // A value no kind takes: refused with the entry's message.
                assert_eq!(msg(&given), p.bad_value("%").0);
                assert!(
                    !PARAMS[..i]
                        .iter()
                        .any(|q| q.name == p.name && q.schemes.contains(scheme)),
                    "{} is in the table twice for {url}",
                    p.name
                );
            } else {
                assert!(msg(&given).starts_with(&format!("unknown parameter '{}'", p.name)));
            }
        }
    }
    assert!(PARAMS
        .iter()
        .all(|p| Scheme::ALL.iter().any(|&s| p.schemes.contains(s))));
}

#[test]
fn bad_values_say_what_is_expected() {
    let cases = [
        (
            "memory:?capacity=banana",
            "bad value 'banana' for capacity: expected a whole number of at least 1 (digits only)",
        ),
        (
            "memory:?max_bytes=12Q",
            "bad value '12Q' for max_bytes: expected a size such as 4096, 64K, 16M or 1G",
        ),
        (
            "shm:x?size=1K",
            "bad value '1K' for size: expected a size from 64K to 64G \
             (digits with an optional K, M or G suffix)",
        ),
        (
            "shm:x?size=0",
            "bad value '0' for size: expected a size from 64K to 64G \
             (digits with an optional K, M or G suffix)",
        ),
        (
            "memory:?max_session_bytes=2M",
            "bad value '2M' for max_session_bytes: expected a size of at most 1M \
             (digits with an optional K, M or G suffix)",
        ),
        (
            "memory:?single_use=maybe",
            "bad value 'maybe' for single_use: expected 0 or 1 (or false/true, no/yes)",
        ),
        (
            "memory:?tickets=sometimes",
            "bad value 'sometimes' for tickets: expected 'auto', 'keep', 'stateful' or 'shared'",
        ),
        (
            "shm:x?mode=0644",
            "bad value '0644' for mode: expected 0600 or 0660",
        ),
    ];
    for (url, want) in cases {
        assert_eq!(msg(url), want);
    }
    // Every word a flag takes, and the limits of the bounded sizes.
    for (word, on) in [("1", true), ("true", true), ("yes", true)]
        .into_iter()
        .chain([("0", false), ("false", false), ("no", false)])
    {
        let c = parse(&format!("shm:x?single_use={word}&force={word}")).unwrap();
        assert_eq!((c.common.single_use, c.common.force), (on, on), "{word}");
    }
    for bad in ["True", "YES", "on", "off", "2", "01", ""] {
        assert!(
            msg(&format!("memory:?force={bad}")).contains("for force"),
            "{bad}"
        );
    }
    assert!(parse("shm:x?size=64K").is_ok() && parse("shm:x?size=64G").is_ok());
    assert!(parse("shm:x?size=65535").is_err() && parse("shm:x?size=65G").is_err());
    assert!(parse("memory:?max_session_bytes=1M").is_ok());
    assert!(parse("memory:?max_session_bytes=1048577").is_err());
}

#[test]
fn scheme_errors_list_the_schemes() {
    assert_eq!(
        msg("nonsense"),
        "cache URL 'nonsense' has no scheme: expected 'memory:', 'shm:', 'redis:', \
         'rediss:', 'redis+unix:', 'redis+cluster:' or 'redis+sentinel:' (e.g. 'memory:?capacity=10000')"
    );
    assert_eq!(
        msg("redis2://x"),
        "unknown scheme 'redis2' in cache URL: the supported schemes are 'memory', 'shm', \
         'redis', 'rediss', 'redis+unix', 'redis+cluster' and 'redis+sentinel'"
    );
}

proptest::proptest! {
    #[test]
    fn never_panics(s in ".*") {
        let _ = parse(&s);
    }

    #[test]
    fn sizes_round_trip(n in 1usize..1_000_000, suffix in 0usize..3) {
        let (text, mult) = match suffix { 0 => (format!("{n}"), 1), 1 => (format!("{n}K"), 1024), _ => (format!("{n}M"), 1 << 20) };
        proptest::prop_assert_eq!(size(&text).unwrap(), n * mult);
    }
}

fn redis(url: &str) -> RedisConfig {
    match parse(url) {
        Ok(Config {
            backend: Backend::Redis(r),
            ..
        }) => r,
        other => panic!("{url}: {other:?}"),
    }
}

#[test]
fn redis_urls() {
    let r = redis(
        "redis://cache.example:7000/3?key_file=/etc/k&prefix=web:&timeout_ms=25&l1=500&queue=16&batch_ms=0",
    );
    assert_eq!(r.batch_ms, 0);
    assert_eq!(redis("redis://h?key_file=/k&batch_ms=100").batch_ms, 100);
    assert!(msg("redis://h?key_file=/k&batch_ms=101").contains("batch_ms"));
    assert_eq!(
        r.target,
        RedisTarget::Tcp {
            host: "cache.example".into(),
            port: 7000
        }
    );
    assert_eq!(
        (r.db, r.prefix.as_str(), r.timeout_ms, r.l1, r.queue),
        (3, "web:", 25, 500, 16)
    );
    let c = parse("redis://h?key_file=/etc/k").unwrap();
    assert_eq!(c.sealing.key_file.as_deref(), Some("/etc/k"));
    assert!(!c.sealing.insecure_plaintext);
    let r = redis("redis://h?insecure_plaintext=1");
    assert_eq!(
        (r.db, r.prefix.as_str(), r.timeout_ms, r.l1, r.queue),
        (0, "sesscache:", 10, 0, 4096),
        "defaults"
    );
    assert_eq!(r.batch_ms, 2, "default");
    assert_eq!(
        r.target,
        RedisTarget::Tcp {
            host: "h".into(),
            port: 6379
        }
    );
    let r = redis("redis://[::1]:6380?insecure_plaintext=1");
    assert_eq!(
        r.target,
        RedisTarget::Tcp {
            host: "::1".into(),
            port: 6380
        }
    );
    let r = redis("redis+unix:///run/redis/redis.sock?insecure_plaintext=1");
    assert_eq!(
        r.target,
        RedisTarget::Unix {
            path: "/run/redis/redis.sock".into()
        }
    );
    let r = redis("redis+cluster://a:7000,b:7001?insecure_plaintext=1");
    assert_eq!(
        r.target,
        RedisTarget::Cluster {
            nodes: vec![("a".into(), 7000), ("b".into(), 7001)]
        }
    );
    let r = redis(
        "redis+sentinel://app:pw@s1:26379,[::1]:26380,s3.example:26381/cache-1.a_b/2?insecure_plaintext=1&timeout_ms=20",
    );
    assert_eq!(
        r.target,
        RedisTarget::Sentinel {
            sentinels: vec![
                ("s1".into(), 26379),
                ("::1".into(), 26380),
                ("s3.example".into(), 26381)
            ],
            master: "cache-1.a_b".into(),
            password: Password::None,
        }
    );
    assert_eq!(
        (r.db, r.user.as_deref(), r.timeout_ms),
        (2, Some("app"), 20)
    );
    assert_eq!(r.password, Password::Inline("pw".into()));
    let r = redis("redis+sentinel://s:1/m/?key_file=/k&sentinel_password_file=/etc/sp");
    assert_eq!(
        (r.target.clone(), r.db),
        (
            RedisTarget::Sentinel {
                sentinels: vec![("s".into(), 1)],
                master: "m".into(),
                password: Password::File("/etc/sp".into()),
            },
            0
        )
    );
    let r = redis("redis+sentinel://s:1/m?key_file=/k&sentinel_password_env=SP&password_env=RP");
    assert!(matches!(
        &r.target,
        RedisTarget::Sentinel { password: Password::Env(e), .. } if e == "SP"
    ));
    assert_eq!(r.password, Password::Env("RP".into()));
    // Users and passwords, percent-decoded.
    let r = redis("redis://app:p%40ss%3Aw0rd@h?insecure_plaintext=1");
    assert_eq!(r.user.as_deref(), Some("app"));
    assert_eq!(r.password, Password::Inline("p@ss:w0rd".into()));
    let r = redis("redis://:only@h?insecure_plaintext=1");
    assert_eq!(
        (r.user, r.password.clone()),
        (None, Password::Inline("only".into()))
    );
    let r = redis("redis://h?insecure_plaintext=1&password_file=/etc/redis-pass");
    assert_eq!(r.password, Password::File("/etc/redis-pass".into()));
    let r = redis("redis://h?insecure_plaintext=1&password_env=REDIS_PASS");
    assert_eq!(r.password, Password::Env("REDIS_PASS".into()));
    // A path with '&' in it, percent-encoded.
    let c = parse("redis://h?key_file=/etc/a%26b").unwrap();
    assert_eq!(c.sealing.key_file.as_deref(), Some("/etc/a&b"));
    // shm: may seal too.
    let c = parse("shm:x?key_file=/etc/k").unwrap();
    assert_eq!(c.sealing.key_file.as_deref(), Some("/etc/k"));
}

#[test]
fn bad_redis_urls_name_the_part_and_never_the_password() {
    let secret = "s3cr3t-Pw";
    for (url, wanted) in [
        ("redis://h", "key_file=PATH"),
        ("redis://h?key_file=/k&insecure_plaintext=1", "contradict"),
        ("redis:h?insecure_plaintext=1", "starts with 'redis://'"),
        ("redis://?insecure_plaintext=1", "bad host ''"),
        ("redis://h:0?insecure_plaintext=1", "bad port '0'"),
        ("redis://h:99999?insecure_plaintext=1", "bad port '99999'"),
        ("redis://h/x?insecure_plaintext=1", "bad database 'x'"),
        ("redis://h o?insecure_plaintext=1", "bad host"),
        ("redis://[::1?insecure_plaintext=1", "ends with ']'"),
        ("redis+cluster://a?insecure_plaintext=1", "needs a port"),
        (
            "redis+sentinel://a:26379?insecure_plaintext=1",
            "needs the master's name",
        ),
        (
            "redis+sentinel://a:26379/?insecure_plaintext=1",
            "needs the master's name",
        ),
        (
            "redis+sentinel://a:26379//1?insecure_plaintext=1",
            "needs the master's name",
        ),
        (
            "redis+sentinel://a/m?insecure_plaintext=1",
            "host 'a' in the redis+sentinel URL needs a port",
        ),
        (
            "redis+sentinel://a:1,b:x/m?insecure_plaintext=1",
            "bad port 'x' for host 'b'",
        ),
        (
            "redis+sentinel://a:1,,b:2/m?insecure_plaintext=1",
            "bad host ''",
        ),
        (
            "redis+sentinel://a:1/m%20x?insecure_plaintext=1",
            "bad master name 'm%20x'",
        ),
        (
            "redis+sentinel://a:1/m/x?insecure_plaintext=1",
            "bad database 'x'",
        ),
        (
            "redis+sentinel://a:1/m?insecure_plaintext=1&sentinel_password_env=A&sentinel_password_file=/f",
            "both give the Sentinels' password",
        ),
        (
            "redis+sentinel://a:1/m?insecure_plaintext=1&sentinel_password_env=1A",
            "sentinel_password_env",
        ),
        (
            "redis://h?insecure_plaintext=1&sentinel_password_env=A",
            "unknown parameter 'sentinel_password_env'",
        ),
        (
            "redis+cluster://a:1/2?insecure_plaintext=1",
            "takes no database",
        ),
        (
            "redis+unix://relative?insecure_plaintext=1",
            "absolute path",
        ),
        (
            "redis://h?insecure_plaintext=1&key_file=relative",
            "key_file",
        ),
        (
            "redis://h?insecure_plaintext=1&password_env=1X",
            "password_env",
        ),
        ("redis://h?insecure_plaintext=1&timeout_ms=0", "timeout_ms"),
        ("redis://h?insecure_plaintext=1&prefix=a%20b", "prefix"),
        ("memory:?key_file=/k", "unknown parameter 'key_file'"),
        (
            "shm:x?insecure_plaintext=1",
            "unknown parameter 'insecure_plaintext'",
        ),
    ] {
        assert!(msg(url).contains(wanted), "{url}: {}", msg(url));
    }
    for url in [
        format!("redis://u:{secret}@h"),
        format!("redis://u:{secret}@h:0?insecure_plaintext=1"),
        format!("redis://u:{secret}@bad%host?insecure_plaintext=1"),
        format!("redis://u:{secret}@h/db?insecure_plaintext=1"),
        format!("redis://u:{secret}%zz@h?insecure_plaintext=1"),
        format!("redis://u:{secret}@h?insecure_plaintext=1&password_env=X"),
        format!("redis+cluster://u:{secret}@a,b?insecure_plaintext=1"),
        format!("redis+unix://u:{secret}@rel?insecure_plaintext=1"),
        format!("redis+sentinel://u:{secret}@a:1?insecure_plaintext=1"),
        format!("redis+sentinel://u:{secret}@a:1/m%20x?insecure_plaintext=1"),
        format!("redis+sentinel://u:{secret}@a:1,b/m?insecure_plaintext=1"),
        format!("redis+sentinel://u:{secret}@a:1/m?insecure_plaintext=1&sentinel_password_env=1"),
    ] {
        let m = msg(&url);
        assert!(
            !m.contains(secret),
            "{url}: the message quotes the password: {m}"
        );
        let debug = format!(
            "{:?}",
            parse(&format!("redis://u:{secret}@h?insecure_plaintext=1"))
        );
        assert!(!debug.contains(secret), "Debug shows the password: {debug}");
    }
}

#[test]
fn redacted_urls_hide_passwords_only() {
    use super::redacted;
    assert_eq!(
        redacted("redis://u:pw@h:1/2?x=1"),
        "redis://u:***@h:1/2?x=1"
    );
    assert_eq!(redacted("redis://:p@w@h"), "redis://:***@h");
    assert_eq!(redacted("redis://u@h"), "redis://u@h");
    assert_eq!(
        redacted("redis+unix://u:pw@/run/r.sock"),
        "redis+unix://u:***@/run/r.sock"
    );
    assert_eq!(redacted("redis://h?prefix=a@b:c"), "redis://h?prefix=a@b:c");
    assert_eq!(redacted("shm:x"), "shm:x");
    assert_eq!(redacted("memory:?capacity=1"), "memory:?capacity=1");
}

#[test]
fn shared_tickets_and_their_rotation() {
    let c = parse("shm:x?tickets=shared&ticket_rotate=600").unwrap();
    assert_eq!(c.common.tickets, Tickets::Shared);
    assert_eq!(c.common.ticket_rotate, 600);
    assert_eq!(parse("memory:").unwrap().common.ticket_rotate, 3600);
    assert_eq!(
        msg("memory:?ticket_rotate=1"),
        "bad value '1' for ticket_rotate: expected a whole number from 2 to 604800"
    );
    // Ticket keys never go to Redis in clear: a key file is required, whatever
    // insecure_plaintext says.
    let m = msg("redis://h?insecure_plaintext=1&tickets=shared");
    assert!(
        m.contains("tickets=shared") && m.contains("key_file"),
        "{m}"
    );
    assert!(parse("redis://h?insecure_plaintext=1").is_ok());
    assert!(parse("redis://h?key_file=/k&tickets=shared").is_ok());
}

#[test]
fn tls_settings() {
    let t = |url: &str| redis(url).tls;
    assert_eq!(t("redis://h?key_file=/k"), None);
    let on = t("rediss://h?key_file=/k").expect("rediss is TLS");
    assert_eq!(on, crate::config::RedisTls::default());
    assert_eq!(
        t("redis+cluster://h:1?key_file=/k&tls=1"),
        Some(crate::config::RedisTls::default())
    );
    let full = t(
        "rediss://h?key_file=/k&tls_ca_file=/ca.pem&tls_cert_file=/c.pem\
                  &tls_key_file=/c.key&tls_name=redis.example.net",
    )
    .expect("TLS");
    assert_eq!(full.ca_file.as_deref(), Some("/ca.pem"));
    assert_eq!(
        full.client_cert,
        Some(("/c.pem".to_string(), "/c.key".to_string()))
    );
    assert_eq!(full.name.as_deref(), Some("redis.example.net"));
    assert!(t("rediss://h?key_file=/k&tls_name=10.0.0.1").is_some());
    assert!(t("rediss://h?key_file=/k&tls_name=%5B::1%5D").is_some());
    // Each mistake is named.
    for (url, says) in [
        (
            "redis://h?key_file=/k&tls_ca_file=/ca",
            "tls_ca_file is a TLS setting",
        ),
        (
            "redis://h?key_file=/k&tls_name=x",
            "tls_name is a TLS setting",
        ),
        (
            "rediss://h?key_file=/k&tls_cert_file=/c",
            "tls_cert_file needs tls_key_file",
        ),
        (
            "rediss://h?key_file=/k&tls_key_file=/c",
            "tls_key_file needs tls_cert_file",
        ),
        (
            "rediss://h?key_file=/k&tls_name=*.example.net",
            "bad value '*.example.net' for tls_name",
        ),
        (
            "rediss://h?key_file=/k&tls_name=a..b",
            "bad value 'a..b' for tls_name",
        ),
        ("rediss://h?key_file=/k&tls=1", "unknown parameter"),
        ("redis+unix:///s?key_file=/k&tls=1", "unknown parameter"),
        (
            "rediss://h?key_file=/k&tls_ca_file=ca.pem",
            "bad value 'ca.pem' for tls_ca_file",
        ),
    ] {
        let m = msg(url);
        assert!(m.contains(says), "{url}: {m}");
    }
}
