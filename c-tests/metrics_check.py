#!/usr/bin/env python3
"""Checks for c-tests/metrics.sh: a strict reader of Prometheus's text exposition format
(0.0.4) as `sesscache stats --format prometheus` and `sesscache exporter` write it, and the
HTTP checks of the exporter. Each check prints "ok - ..." or "FAIL - ..." ("#" lines say
more); the exit status is the number of failures (at most 100).

  metrics_check.py compare PROM JSON CACHE FIELDS
      PROM (an exposition) holds every field named in FILE FIELDS (one a line: the fields
      of struct sesscache_stats) for the label cache="CACHE", with the value of the same
      field in JSON (one `stats --json` object): sesscache_NAME_total, a counter, for the
      events; sesscache_NAME, a gauge, for entries and bytes; each with a real HELP text;
      sesscache_up{cache="CACHE"} 1.
  metrics_check.py down PROM CACHE
      sesscache_up{cache="CACHE"} 0 and no other sample of that cache.
  metrics_check.py get PORT OUT
      one GET /metrics: 200, the body saved in OUT.
  metrics_check.py http PORT OUT
      the exporter on 127.0.0.1:PORT: GET /metrics (body saved in OUT), HEAD, 404, 405, and
      a silent client and a client sending megabytes while another scrapes.
"""
import re
import socket
import sys
import threading
import time
import json

failures = 0


def ok(text):
    print("ok - " + text)


def fail(text, detail=None):
    global failures
    failures += 1
    print("FAIL - " + text)
    if detail:
        for line in str(detail).splitlines()[:40]:
            print("#   " + line)


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(
    rf"^({NAME})(?:\{{((?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})(?:,[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})*,?)?\}})? (\S+)$"
)
LABEL = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)=({LABEL_VALUE})")


def unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v[1:-1])


def parse(text):
    """(samples {(name, cache): value}, types {name: type}, helps {name: text}); raises
    ValueError naming the first line that is not of the format."""
    samples, types, helps = {}, {}, {}
    current = None
    if not text.endswith("\n"):
        raise ValueError("the exposition does not end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            if not re.fullmatch(NAME, name) or name in helps:
                raise ValueError(f"line {n}: bad or repeated HELP: {line!r}")
            helps[name] = help_text
            current = name
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            if name != current or typ not in ("counter", "gauge") or name in types:
                raise ValueError(f"line {n}: TYPE not after its HELP, or unknown: {line!r}")
            types[name] = typ
        elif line.startswith("#") or not line:
            raise ValueError(f"line {n}: unexpected line {line!r}")
        else:
            m = SAMPLE.match(line)
            if not m:
                raise ValueError(f"line {n}: not a sample: {line!r}")
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            if name != current or name not in types:
                raise ValueError(f"line {n}: a sample outside its family {current}: {line!r}")
            lab = {k: unescape(v) for k, v in LABEL.findall(labels)}
            if set(lab) != {"cache"}:
                raise ValueError(f"line {n}: labels other than cache alone: {line!r}")
            if not re.fullmatch(r"[0-9]+", value):
                raise ValueError(f"line {n}: not a whole number: {line!r}")
            key = (name, lab["cache"])
            if key in samples:
                raise ValueError(f"line {n}: a repeated sample: {line!r}")
            samples[key] = int(value)
    return samples, types, helps


def read_prom(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return parse(text)
    except ValueError as e:
        fail(f"{path} is in the text exposition format", f"{e}\n{text}")
        return None


def compare(prom, js, cache, fields_file):
    parsed = read_prom(prom)
    if parsed is None:
        return
    samples, types, helps = parsed
    ok(f"{prom} is in the text exposition format ({len(samples)} samples)")
    with open(js, encoding="utf-8") as f:
        stats = json.loads(f.read())
    with open(fields_file, encoding="utf-8") as f:
        fields = [line.strip() for line in f if line.strip()]
    if not fields:
        fail(f"{fields_file} names the fields of struct sesscache_stats")
        return
    bad = []
    for field in fields:
        gauge = field in ("entries", "bytes")
        name = f"sesscache_{field}" if gauge else f"sesscache_{field}_total"
        want_type = "gauge" if gauge else "counter"
        got = samples.get((name, cache))
        if field not in stats:
            bad.append(f"{field}: not in stats --json")
        elif types.get(name) != want_type:
            bad.append(f"{name}: TYPE {types.get(name)}, want {want_type}")
        elif len(helps.get(name, "")) < 10 or "NO HELP" in helps.get(name, ""):
            bad.append(f"{name}: HELP {helps.get(name)!r}")
        elif got != stats[field]:
            bad.append(f"{name}{{cache={cache!r}}} is {got}, stats --json's {field} is {stats[field]}")
    if bad:
        fail(f"every field of struct sesscache_stats for cache={cache} as stats --json says", "\n".join(bad))
    else:
        ok(
            f"the {len(fields)} fields of struct sesscache_stats for cache={cache}, typed, with HELP, equal "
            f"stats --json's (lookups {stats['lookups']}, hits {stats['hits']}, entries {stats['entries']})"
        )
    if samples.get(("sesscache_up", cache)) == 1 and types.get("sesscache_up") == "gauge":
        ok(f'sesscache_up{{cache="{cache}"}} 1')
    else:
        fail(f'sesscache_up{{cache="{cache}"}} 1 (got {samples.get(("sesscache_up", cache))})')
    no_help = [n for n, h in helps.items() if "NO HELP" in h]
    if no_help:
        fail("every metric has a HELP text of its own (HELP in cli/src/main.rs)", " ".join(no_help))
    else:
        ok(f"every one of the {len(helps)} metrics has a HELP text of its own")


def down(prom, cache):
    parsed = read_prom(prom)
    if parsed is None:
        return
    samples = parsed[0]
    others = [n for (n, c) in samples if c == cache and n != "sesscache_up"]
    if samples.get(("sesscache_up", cache)) == 0 and not others:
        ok(f'sesscache_up{{cache="{cache}"}} 0 and no other (stale) figure of it')
    else:
        fail(
            f'sesscache_up{{cache="{cache}"}} 0 and no other figure of it',
            f"up: {samples.get(('sesscache_up', cache))}, others: {others}",
        )


def request(port, raw, timeout=10):
    """Sends raw bytes, reads the answer to the end: (status code, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/1.1 ") else 0
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    return code, headers, body


def http(port, out):
    port = int(port)
    code, headers, body = request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    ctype = headers.get("content-type")
    if code == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8" and body.startswith(b"# HELP sesscache_"):
        ok(f"GET /metrics: 200, Content-Type {ctype}, {len(body)} bytes")
    else:
        fail("GET /metrics: 200, text/plain; version=0.0.4", f"{code} {headers} {body[:300]!r}")
    with open(out, "wb") as f:
        f.write(body)
    if int(headers.get("content-length", -1)) == len(body):
        ok("GET /metrics: Content-Length is the body's length")
    else:
        fail("GET /metrics: Content-Length is the body's length", f"{headers} {len(body)}")
    code, headers, body = request(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    check_code("HEAD /metrics", code, 200, body == b"")
    code, _, _ = request(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
    check_code("GET /metrics?x=1 (HTTP/1.0)", code, 200)
    for path in (b"/", b"/metricsx", b"/metrics/", b"/favicon.ico"):
        code, _, _ = request(port, b"GET " + path + b" HTTP/1.1\r\n\r\n")
        check_code(f"GET {path.decode()}", code, 404)
    for method in (b"POST", b"PUT", b"DELETE", b"OPTIONS"):
        code, headers, _ = request(port, method + b" /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        check_code(f"{method.decode()} /metrics", code, 405, headers.get("allow") == "GET, HEAD")
    code, _, _ = request(port, b"garbage\r\n\r\n")
    check_code("a request line that is not one", code, 400)

    # A client that connects and sends nothing, and one that sends megabytes, while another
    # scrapes: the scrape is answered at once.
    silent = socket.create_connection(("127.0.0.1", port))
    flood_result = {}

    def flood():
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        sent = 0
        t0 = time.monotonic()
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: ")
            chunk = b"a" * 65536
            while sent < (16 << 20) and time.monotonic() - t0 < 15:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError as e:
            flood_result["error"] = type(e).__name__
        flood_result["sent"] = sent
        flood_result["seconds"] = time.monotonic() - t0
        try:
            flood_result["answer"] = s.recv(200)
        except OSError as e:
            flood_result["answer"] = type(e).__name__.encode()
        s.close()

    flooder = threading.Thread(target=flood)
    flooder.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    code, _, body = request(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    took = time.monotonic() - t0
    if code == 200 and body.startswith(b"# HELP") and took < 2:
        ok(f"a scrape while one client sends nothing and another megabytes: 200 in {took:.2f} s")
    else:
        fail("a scrape while one client sends nothing and another megabytes: 200 within 2 s", f"{code} in {took:.2f} s")
    flooder.join(30)
    answer = flood_result.get("answer", b"")
    # Cut off: its writes fail (the server closed the connection after 8 KiB) well before
    # the 16 MiB it would send; what it managed is what the kernel's socket buffers took.
    if (
        flood_result.get("sent", 1 << 30) < (16 << 20)
        and flood_result.get("seconds", 99) < 10
        and (answer.startswith(b"HTTP/1.1 431") or "error" in flood_result)
    ):
        how = flood_result.get("error") or answer.split(b"\r\n")[0].decode()
        ok(f"the client sending megabytes is cut off after {flood_result['sent']} bytes ({how})")
    else:
        fail("the client sending megabytes is cut off (431 or closed) before 16 MiB", str(flood_result))
    # The silent one is told 408 and closed once its 5 s are up.
    silent.settimeout(10)
    t0 = time.monotonic()
    try:
        answer = silent.recv(200)
    except OSError as e:
        answer = type(e).__name__.encode()
    took = time.monotonic() - t0
    if answer.startswith(b"HTTP/1.1 408") and took < 8:
        ok(f"the silent client is answered 408 and closed (after {took + 0.3:.1f} s)")
    else:
        fail("the silent client is answered 408 and closed within the request deadline", f"{answer!r} after {took:.1f} s")
    silent.close()

    # More silent clients than the cap: the extra ones are answered 503 at once.
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    time.sleep(0.3)
    code, _, _ = request(port, b"GET /metrics HTTP/1.1\r\n\r\n", timeout=3)
    for s in held:
        s.close()
    check_code("a scrape while 16 clients hold every connection slot", code, 503)
    # Their threads see the close and end; a slot is free again.
    for _ in range(30):
        time.sleep(0.1)
        code, _, _ = request(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        if code == 200:
            break
    check_code("a scrape once they have gone", code, 200)


def get(port, out):
    t0 = time.monotonic()
    code, headers, body = request(int(port), b"GET /metrics HTTP/1.1\r\n\r\n", timeout=20)
    with open(out, "wb") as f:
        f.write(body)
    check_code(f"GET /metrics ({len(body)} bytes in {time.monotonic() - t0:.2f} s)", code, 200)


def check_code(what, code, want, extra=True):
    if code == want and extra:
        ok(f"{what}: {want}")
    else:
        fail(f"{what}: {want}", f"got {code}")


def main():
    args = sys.argv[1:]
    try:
        if args[:1] == ["compare"] and len(args) == 5:
            compare(*args[1:])
        elif args[:1] == ["down"] and len(args) == 3:
            down(*args[1:])
        elif args[:1] == ["get"] and len(args) == 3:
            get(*args[1:])
        elif args[:1] == ["http"] and len(args) == 3:
            http(*args[1:])
        else:
            print(__doc__, file=sys.stderr)
            sys.exit(100)
    except Exception as e:  # a check that could not run is a failure, never a skip
        fail(f"{' '.join(args[:1])}: the checks ran to the end", repr(e))
    sys.exit(min(failures, 99))


if __name__ == "__main__":
    main()
