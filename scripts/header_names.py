#!/usr/bin/env python3
"""Lists the names a C header declares: macros, typedefs, struct tags it defines, functions
and variables; with --check, fails (exit 1) on any name a C program could collide with, i.e.
one that is neither `sesscache_*`/`SESSCACHE_*` nor one of the OpenSSL functions the library
interposes (nor a forward declaration of one of OpenSSL's own struct tags, OPENSSL_TAGS).

    scripts/header_names.py [--check] HEADER
"""
import re
import sys

# OpenSSL's functions that libsesscache defines (with OpenSSL's prototypes) to interpose.
INTERPOSED = {
    "SSL_CTX_sess_set_new_cb", "SSL_CTX_sess_get_new_cb",
    "SSL_CTX_sess_set_get_cb", "SSL_CTX_sess_get_get_cb",
    "SSL_CTX_sess_set_remove_cb", "SSL_CTX_sess_get_remove_cb",
    "SSL_set_SSL_CTX", "SSL_CTX_new", "SSL_CTX_new_ex",
    "SSL_set_accept_state", "SSL_free", "SSL_clear",
    "SSL_CTX_ctrl", "SSL_CTX_callback_ctrl", "SSL_CTX_set_tlsext_ticket_key_evp_cb",
    "SSL_CTX_set_client_hello_cb",
}
# OpenSSL's own struct tags that the header may forward-declare (`struct X;`): OpenSSL 1.1.1
# has no `struct ossl_lib_ctx_st` nor `struct evp_mac_ctx_st`, which SSL_CTX_new_ex's and
# SSL_CTX_set_tlsext_ticket_key_evp_cb's prototypes name; each declaration is
# the same one OpenSSL 3's <openssl/types.h> makes, so it can collide with nothing.
OPENSSL_TAGS = {"ossl_lib_ctx_st", "evp_mac_ctx_st"}
# Words that may precede a declared name and are not names themselves.
KEYWORDS = {
    "const", "volatile", "unsigned", "signed", "char", "short", "int", "long", "void",
    "float", "double", "struct", "union", "enum", "extern", "static", "inline", "typedef",
    "_Bool", "bool", "size_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t", "int8_t",
    "int16_t", "int32_t", "int64_t", "uintptr_t", "intptr_t",
}


def declared_names(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    names = []
    body = []
    for line in text.splitlines():
        m = re.match(r"\s*#\s*define\s+(\w+)", line)
        if m:
            names.append(m.group(1))
        if not line.lstrip().startswith("#"):
            body.append(line)
    body = " ".join(body)
    # `extern "C" {` and its closing brace only wrap declarations.
    body = re.sub(r'extern\s+"C"\s*\{', " ", body)
    decls, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:  # the closing brace of extern "C"
                depth = 0
                continue
        if ch == ";" and depth == 0:
            decls.append(cur)
            cur = ""
        else:
            cur += ch
    for d in decls:
        # Struct and union tags defined here.
        for m in re.finditer(r"\b(?:struct|union|enum)\s+(\w+)\s*\{", d):
            names.append(m.group(1))
        toks = re.findall(r"[A-Za-z_]\w*|\S", re.sub(r"\{.*\}", " { } ", d, flags=re.S))
        if not toks:
            continue
        if len(toks) == 2 and toks[0] == "struct" and toks[1] in OPENSSL_TAGS:
            continue  # a forward declaration of one of OpenSSL's tags
        if toks[0] == "typedef":
            fn_ptr = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", d)
            if fn_ptr:  # typedef R (*NAME)(PARAMS): NAME, not a parameter's name
                names.append(fn_ptr.group(1))
                continue
            idents = [t for t in toks if re.match(r"[A-Za-z_]\w*$", t)]
            names.append(idents[-1])
            m = re.match(r"typedef\s+(?:struct|union|enum)\s+(\w+)\s*;?", " ".join(toks))
            if m and "{" not in toks:
                names.append(m.group(1))  # a forward declaration of the tag
            continue
        # A function: the first identifier followed by "(" that is not a keyword and not a
        # struct tag; else a variable: the last identifier.
        found = None
        for i, t in enumerate(toks[:-1]):
            if (re.match(r"[A-Za-z_]\w*$", t) and toks[i + 1] == "(" and t not in KEYWORDS
                    and (i == 0 or toks[i - 1] not in ("struct", "union", "enum"))):
                found = t
                break
        if found is None:
            idents = [t for t in toks if re.match(r"[A-Za-z_]\w*$", t) and t not in KEYWORDS]
            found = idents[-1] if idents else None
        if found:
            names.append(found)
    return names


def allowed(name):
    return (name.startswith("sesscache_") or name.startswith("SESSCACHE_") or name == "sesscache"
            or name in INTERPOSED)


def main(argv):
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    if len(paths) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    names = declared_names(open(paths[0]).read())
    if not check:
        print("\n".join(names))
        return 0
    bad = sorted({n for n in names if not allowed(n)})
    if bad:
        print(f"{paths[0]} declares names outside sesscache_*/SESSCACHE_* and the interposed "
              f"OpenSSL functions: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"{paths[0]}: {len(set(names))} names, all sesscache_*, SESSCACHE_* or interposed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
