#!/usr/bin/env python3
"""A client that hangs up: resumption when connections end without close_notify, for
c-tests/servers.sh.

    hangup.py PORT N 1.2|1.3 http|line
    hangup.py --forge PORT 1.2|1.3 http|line

Makes N + 1 connections to 127.0.0.1:PORT with one `ssl.SSLContext(PROTOCOL_TLS_CLIENT)`
(no certificate verification), limited to the given TLS version. Each connection offers the
session the previous one ended with (for TLS 1.3 the newest ticket, as HTTP clients do),
sends one request and reads the answer (`http`: an HTTP/1.1 GET, the answer read up to its
blank line and Content-Length; `line`: a line, answered by one line, as `openssl s_server
-rev` does), then closes the TCP connection WITHOUT close_notify while the server is waiting
for the next request, as `requests`/urllib3 and most HTTP clients do. Prints `reused R/N`.

--forge: what must still end a session. Connection 1 as above; connection 2 offers its
session, makes one exchange, then sends a record whose last byte (its authentication tag) is
flipped, which the server must answer with a fatal bad_record_mac alert; connection 3 offers
the session connection 2 ended with. Prints `forged: second=New|Reused third=New|Reused`.
"""

import socket
import ssl
import sys


def read_until(tls, data, done):
    """Reads until done(data) or the end of the stream; returns what it has."""
    while not done(data):
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def exchange(tls, mode):
    if mode == "http":
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = read_until(tls, b"", lambda d: b"\r\n\r\n" in d)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        read_until(tls, body, lambda d: len(d) >= length)
    else:
        tls.sendall(b"hang up on me\n")
        read_until(tls, b"", lambda d: b"\n" in d)


class Pumped:
    """A TLS connection over memory BIOs, so that the bytes on the wire can be changed."""

    def __init__(self, ctx, port, session):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, session=session)

    def flush(self, forge=False):
        data = self.out.read()
        if forge:
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        if data:
            self.sock.sendall(data)

    def call(self, fn, *args):
        while True:
            try:
                result = fn(*args)
                self.flush()
                return result
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if data:
                    self.inc.write(data)
                else:
                    self.inc.write_eof()

    # The interface exchange() uses.
    def sendall(self, data):
        self.call(self.obj.write, data)

    def recv(self, n):
        try:
            return self.call(self.obj.read, n)
        except ssl.SSLZeroReturnError:
            return b""


def forge(ctx, port, mode):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(raw)
    exchange(tls, mode)
    session = tls.session
    tls.close()

    second = Pumped(ctx, port, session)
    second.call(second.obj.do_handshake)
    reused2 = second.obj.session_reused
    exchange(second, mode)
    session = second.obj.session
    # One more request, its record's authentication tag broken.
    second.obj.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" if mode == "http" else b"x\n")
    second.flush(forge=True)
    try:
        while second.sock.recv(65536):  # the alert, then the end of the connection
            pass
    except OSError:
        pass
    second.sock.close()

    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    third = ctx.wrap_socket(raw, session=session)
    reused3 = third.session_reused
    third.close()
    name = {False: "New", True: "Reused"}
    print("forged: second=%s third=%s" % (name[reused2], name[reused3]))
    return 0


def context(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = v
    ctx.maximum_version = v
    return ctx


def main():
    if sys.argv[1] == "--forge":
        return forge(context(sys.argv[3]), int(sys.argv[2]), sys.argv[4])
    port, n, version, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ctx = context(version)
    session = None
    reused = 0
    for i in range(n + 1):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = ctx.wrap_socket(raw, session=session)
        if i > 0 and tls.session_reused:
            reused += 1
        exchange(tls, mode)
        session = tls.session
        # No unwrap(): the TCP connection ends without close_notify.
        tls.close()
    print("reused %d/%d" % (reused, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
