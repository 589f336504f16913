#!/usr/bin/env python3
"""TLS 1.2 resumption from a Python `ssl` client, for c-tests/servers.sh.

    pyclient.py PORT N [client|generic]

Makes N + 1 connections to 127.0.0.1:PORT with one context, offering the session of the
first connection to the N others, and prints `reused R/N`. The context is
`ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)` (`client`, the default) or the generic
`ssl.SSLContext(ssl.PROTOCOL_TLS)` (`generic`: OpenSSL's TLS_method, which can also serve),
without certificate verification, limited to TLS 1.2. Each connection sends close_notify
(`unwrap()`) before closing.
"""

import socket
import ssl
import sys
import warnings


def main():
    port = int(sys.argv[1])
    n = int(sys.argv[2])
    kind = sys.argv[3] if len(sys.argv) > 3 else "client"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        proto = ssl.PROTOCOL_TLS_CLIENT if kind == "client" else ssl.PROTOCOL_TLS
        ctx = ssl.SSLContext(proto)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    session = None
    reused = 0
    for i in range(n + 1):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            tls = ctx.wrap_socket(raw, session=session)
            if i == 0:
                session = tls.session
            elif tls.session_reused:
                reused += 1
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
            tls.close()
    print("reused %d/%d" % (reused, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
