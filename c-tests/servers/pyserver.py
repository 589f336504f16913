#!/usr/bin/env python3
"""A small HTTPS server on Python's `ssl` module, for c-tests/servers.sh.

    pyserver.py --mode threaded|prefork --cert CERT --key KEY --port PORT [--children N]
                [--keepalive]

Listens on 127.0.0.1:PORT with one `ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)` left at
Python's defaults (OpenSSL's server session cache on, stateless tickets on), then prints
`listening PORT` on stdout. Each connection: TLS handshake, read one request (up to the
blank line), answer `HTTP/1.0 200 OK` with the serving process ID, then close the socket
WITHOUT close_notify (no `unwrap()`), as many Python servers do. A client that closes
before sending a request gets no answer. --keepalive: HTTP/1.1 keep-alive instead, each
connection answering requests until the client closes; a client that hangs up without
close_notify meets the server waiting in a read (OpenSSL 3 then sees an unexpected EOF).

threaded: one process, a thread per connection. prefork: the context and the listening
socket are made first, then N children (default 3) are forked and each accepts on the
shared socket; the parent only waits. SIGTERM stops everything (children also die with
their parent); every process leaves through C exit(), so atexit handlers run.

Handshake failures are reported on stderr as `pyserver: error: handshake: REASON`.
"""

import argparse
import ctypes
import os
import signal
import socket
import ssl
import sys
import threading


def log(msg):
    sys.stderr.write("pyserver: %s\n" % msg)
    sys.stderr.flush()


def serve_one(ctx, conn, keepalive=False):
    conn.settimeout(10)
    try:
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except ssl.SSLError as e:
            log("error: handshake: %s" % (e.reason or e))
            conn.close()
            return
        except OSError:
            conn.close()
            return
        try:
            while True:
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if b"\r\n\r\n" not in data:
                    break
                body = b"worker %d\n" % os.getpid()
                tls.sendall(b"HTTP/1.%d 200 OK\r\nContent-Type: text/plain\r\n"
                            b"Content-Length: %d\r\nConnection: %s\r\n\r\n%s"
                            % (1 if keepalive else 0, len(body),
                               b"keep-alive" if keepalive else b"close", body))
                if not keepalive:
                    break
        except (ssl.SSLError, OSError):
            pass
        # A plain close: SSL_free without SSL_shutdown, so no close_notify is sent.
        tls.close()
    except Exception as e:  # never let one connection end the server
        log("error: %r" % (e,))


def accept_loop(ctx, sock, threaded, keepalive):
    while True:
        try:
            conn, _ = sock.accept()
        except InterruptedError:
            continue
        except OSError as e:
            log("error: accept: %s" % e)
            return
        if threaded:
            threading.Thread(target=serve_one, args=(ctx, conn, keepalive), daemon=True).start()
        else:
            serve_one(ctx, conn, keepalive)


LIBC = ctypes.CDLL(None, use_errno=True)


def quit_now(*_):
    """Exit through the C library's exit(): its atexit handlers run (a preloaded library's
    too), Python's own shutdown (joining threads) does not."""
    sys.stdout.flush()
    sys.stderr.flush()
    LIBC.exit(0)


def die_with_parent():
    LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("threaded", "prefork"), required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--children", type=int, default=3)
    ap.add_argument("--keepalive", action="store_true")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as e:
        log("cannot bind 127.0.0.1:%d: %s" % (args.port, e))
        return 2
    sock.listen(64)

    signal.signal(signal.SIGTERM, quit_now)

    if args.mode == "threaded":
        print("listening %d" % args.port, flush=True)
        accept_loop(ctx, sock, threaded=True, keepalive=args.keepalive)
        return 0

    children = []
    for _ in range(args.children):
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            if os.getppid() == 1:
                os._exit(0)
            accept_loop(ctx, sock, threaded=False, keepalive=args.keepalive)
            quit_now()
        children.append(pid)
    sock.close()

    def stop(*_):
        for c in children:
            try:
                os.kill(c, signal.SIGTERM)
            except OSError:
                pass
        for c in children:
            try:
                os.waitpid(c, 0)
            except OSError:
                pass
        quit_now()

    signal.signal(signal.SIGTERM, stop)
    print("listening %d children %s" % (args.port, " ".join(map(str, children))), flush=True)
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid in children:
            log("error: child %d exited" % pid)
            children.remove(pid)


if __name__ == "__main__":
    sys.exit(main())
