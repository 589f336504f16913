#!/usr/bin/env python3
"""Instructions per ticket encryption and decryption, from the callgrind profiles of
`bench_resume --tickets` (one file per timed loop: c-tests/bench.sh).

    python3 c-tests/callgrind_tickets.py CALLGRIND_FILE...

Each timed loop of bench_resume under callgrind is dumped to a file of its own whose
description says what it measured ("handshakes TLS1.3 shm resumed N"). In each, the
function that encrypts a ticket is OpenSSL's `construct_stateless_ticket` and the one that
decrypts it `tls_decrypt_ticket`; where libssl has no symbols for its internal functions
(Debian's is stripped: callgrind names them by address), they are found by what they call:
the libssl function that calls `EVP_EncryptUpdate` (the ticket's encryption; the record
layer uses EVP_Cipher), and the one that calls `EVP_DecryptUpdate`. Their inclusive
instructions divided by the calls they received is the cost of one ticket; the same for our
ticket key callback (`evp_key_cb`) as called from each, where present. The key setup
alone (what the callback replaces) is what those functions spend in the callback, or, with
OpenSSL's own keys, in EVP_CIPHER_fetch, EVP_EncryptInit_ex / EVP_DecryptInit_ex,
RAND_bytes_ex, EVP_CIPHER_free and `ssl_hmac_init` (the libssl function that calls
EVP_MAC_init): unlike the whole functions, it does not depend on the ticket's length
(TLS 1.3 tickets are 208 or 224 bytes, by the session's encoding).

Prints, per protocol and configuration (summed over its loops, resumed and full):
    tkinstr PROTO CONFIG ENC_IR_PER_TICKET ENCRYPTIONS DEC_IR_PER_TICKET DECRYPTIONS KEY_ENC_IR KEY_DEC_IR
(KEY_*: instructions per ticket of the key setup: our callback, or OpenSSL's own), and
per protocol, kind and configuration (summed over the rounds):
    tkhsinstr PROTO KIND CONFIG IR_PER_HANDSHAKE HANDSHAKES
and per protocol and configuration, the new tickets a resumed handshake sends (the calls of
the encryption function in the resumed loops, per handshake of those loops: 1.00 where a
resumption renews its ticket, as OpenSSL's own keys do in TLS 1.3, 0.00 where it does not):
    tkrenew PROTO CONFIG NEW_TICKETS_PER_RESUMPTION RESUMED_HANDSHAKES
Exit status 1 when no loop had both an encryption and a decryption function.
"""

import re
import sys
from collections import defaultdict

ENC_NAMES = ("construct_stateless_ticket",)
DEC_NAMES = ("tls_decrypt_ticket",)
CALLBACK = "evp_key_cb"
KEY_SETUP = ("EVP_CIPHER_fetch", "EVP_EncryptInit_ex", "EVP_DecryptInit_ex", "RAND_bytes_ex",
             "EVP_CIPHER_free", "ssl_hmac_init")


class Profile:
    """One callgrind file: self cost per function, and cost and count per call edge."""

    def __init__(self):
        self.desc = ""
        self.summary = 0
        self.self_ir = defaultdict(int)
        self.call_ir = defaultdict(int)
        self.call_n = defaultdict(int)


# Compressed names: "(id) name" the first time, "(id)" after; ids are global in a run.
NAMES = {"ob": {}, "fn": {}, "fl": {}}


def name(kind, text):
    m = re.match(r"\((\d+)\)(?: (.*))?$", text)
    if not m:
        return text
    if m.group(2) is not None:
        NAMES[kind][m.group(1)] = m.group(2)
    return NAMES[kind].get(m.group(1), text)


def parse(path):
    prof = Profile()
    ob = cob = fn = cfn = None
    pending = None  # the (caller, callee) edge whose cost line comes next
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            key, _, val = line.partition("=")
            if key in ("ob", "cob", "fn", "cfn", "fl", "fi", "fe", "cfi", "cfl") and _:
                kind = {"cob": "ob", "cfn": "fn", "fi": "fl", "fe": "fl",
                        "cfi": "fl", "cfl": "fl"}.get(key, key)
                v = name(kind, val)
                if key == "ob":
                    ob = v
                elif key == "cob":
                    cob = v
                elif key == "fn":
                    fn = (ob, v)
                elif key == "cfn":
                    cfn = v
                continue
            if line.startswith("calls="):
                count = int(line[6:].split()[0])
                callee = (cob if cob is not None else ob, cfn)
                pending = (fn, callee)
                prof.call_n[pending] += count
                continue
            if line.startswith("desc: Trigger: Client Request: "):
                prof.desc = line[len("desc: Trigger: Client Request: "):]
                continue
            if line.startswith("summary: "):
                prof.summary = int(line.split()[1])
                continue
            if line[0] in "0123456789+-*":
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                if pending is not None:
                    if pending[0] != pending[1]:
                        prof.call_ir[pending] += ir
                    pending = None
                    cob = None
                else:
                    prof.self_ir[fn] += ir
    return prof


def find(prof, names, calls):
    """The functions named one of `names`; else the libssl functions that call `calls`."""
    named = {f for f in prof.self_ir if f[1] in names}
    named |= {e[1] for e in prof.call_n if e[1][1] in names}
    if named:
        return named
    return {caller for (caller, callee) in prof.call_n
            if callee[1] == calls and caller and caller[0] and "libssl" in caller[0]}


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: callgrind_tickets.py CALLGRIND_FILE...\n")
        return 2
    # (proto, config) -> [enc_ir, encs, dec_ir, decs, cb_enc_ir, cb_encs, cb_dec_ir, cb_decs]
    sums = defaultdict(lambda: [0] * 8)
    loops = defaultdict(lambda: [0, 0])
    # (proto, config) -> [encryptions in the resumed loops, resumed handshakes]
    renews = defaultdict(lambda: [0, 0])
    for path in sys.argv[1:]:
        prof = parse(path)
        m = re.match(r"handshakes (TLS1\.[23]) (\S+) (\S+) (\d+)$", prof.desc)
        if not m:
            continue
        proto = "tls13" if m.group(1) == "TLS1.3" else "tls12"
        config, kind, n = m.group(2), m.group(3), int(m.group(4))
        loops[(proto, kind, config)][0] += prof.summary
        loops[(proto, kind, config)][1] += n
        s = sums[(proto, config)]
        if kind == "resumed":
            renews[(proto, config)][1] += n
        for fns, at in ((find(prof, ENC_NAMES, "EVP_EncryptUpdate"), 0),
                        (find(prof, DEC_NAMES, "EVP_DecryptUpdate"), 2)):
            for f in fns:
                incl = prof.self_ir[f] + sum(ir for (a, _), ir in prof.call_ir.items() if a == f)
                s[at] += incl
                calls = sum(c for (_, b), c in prof.call_n.items() if b == f)
                s[at + 1] += calls
                if at == 0 and kind == "resumed":
                    renews[(proto, config)][0] += calls
                hmac_init = {a for (a, b) in prof.call_n if b[1] == "EVP_MAC_init"}
                for (a, b), ir in prof.call_ir.items():
                    if a == f and b[1] is not None and (
                            CALLBACK in b[1] or b[1] in KEY_SETUP or b in hmac_init):
                        s[4 + at] += ir
    found = False
    for (proto, config), s in sorted(sums.items()):
        if s[1] == 0 or s[3] == 0:
            continue
        found = True
        print(f"tkinstr {proto} {config} {s[0] // s[1]} {s[1]} {s[2] // s[3]} {s[3]} "
              f"{s[4] // s[1]} {s[6] // s[3]}")
    for (proto, kind, config), (ir, n) in sorted(loops.items()):
        if n > 0:
            print(f"tkhsinstr {proto} {kind} {config} {ir // n} {n}")
    for (proto, config), (encs, n) in sorted(renews.items()):
        if n > 0:
            print(f"tkrenew {proto} {config} {encs / n:.2f} {n}")
    if not found:
        sys.stderr.write("callgrind_tickets: no ticket encryption and decryption found\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
