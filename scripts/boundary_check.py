#!/usr/bin/env python3
"""Every function C can call goes through the panic boundary.

    python3 scripts/boundary_check.py [--check] [ROOT]     (default ROOT: src)
    python3 scripts/boundary_check.py --self-test

A panic that unwinds out of an `extern "C" fn` aborts the host program. So every
`extern "C" fn` defined under ROOT (exported functions, the callbacks handed to OpenSSL,
atexit and atfork handlers) must run its body through `boundary::guard` or
`std::panic::catch_unwind`: its body calls one of them, or calls a function of the same file
whose body does (the setters and getters share one). A function that cannot panic says so
with a comment `// boundary: <why>` inside its body or right above it, and is listed.
Type positions (`Option<unsafe extern "C" fn(...)>`) are not definitions and are skipped.
Prints each function with how it is covered; exit status 1 if one is not.
"""

import os
import re
import sys
import tempfile

DEF = re.compile(r'(?:pub(?:\([^)]*\))?\s+)?(?:unsafe\s+)?extern\s+"C"\s+fn\s+([A-Za-z_][A-Za-z0-9_]*)')
FN = re.compile(r'\bfn\s+([A-Za-z_][A-Za-z0-9_]*)')
GUARDS = ("guard(", "catch_unwind(")


def strip(src):
    """Source with comments and string contents blanked (lengths kept), except that
    `// boundary:` comments are kept."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            text = src[i:j]
            out.append(text if text.lstrip("/ ").startswith("boundary:") else " " * (j - i))
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif src.startswith('"C"', i):
            out.append('"C"')  # the ABI of `extern "C"`, which the checker looks for
            i += 3
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('"' + " " * (j - i - 1) + '"')
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def body_at(src, start):
    """(body text, end) of the block opening at the first '{' from start (None if a ';'
    comes first: a declaration)."""
    i = start
    while i < len(src) and src[i] not in "{;":
        i += 1
    if i >= len(src) or src[i] == ";":
        return None, i
    depth, j = 0, i
    while j < len(src):
        if src[j] == "{":
            depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0:
                return src[i:j + 1], j + 1
        j += 1
    return src[i:], len(src)


def check_file(path):
    raw = open(path, encoding="utf-8").read()
    src = strip(raw)
    bodies = {}
    for m in FN.finditer(src):
        body, _ = body_at(src, m.end())
        if body is not None:
            bodies.setdefault(m.group(1), body)
    results = []
    for m in DEF.finditer(src):
        # A type position: `fn(` right after the name is impossible for a definition; and a
        # definition starts a statement.
        before = src[:m.start()].rstrip()
        if before.endswith(("<", "(", ",", "=", ":")):
            continue
        name = m.group(1)
        body, _ = body_at(src, m.end())
        if body is None:
            continue
        line = raw.count("\n", 0, m.start()) + 1
        above = src[:m.start()].splitlines()[-3:]
        if any(g in body for g in GUARDS):
            how = "guarded"
        elif "// boundary:" in body or any("// boundary:" in a for a in above):
            how = "cannot panic (" + next(
                (t.split("// boundary:", 1)[1].strip() for t in [body] + above if "// boundary:" in t),
                "") + ")"
        else:
            helpers = [h for h, b in bodies.items()
                       if h != name and re.search(r"\b" + h + r"\s*[(:<]", body)
                       and any(g in b for g in GUARDS)]
            how = f"guarded in {', '.join(helpers)}" if helpers else None
        results.append((path, line, name, how))
    return results


def check(root):
    results = []
    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".rs"):
                results.extend(check_file(os.path.join(dirpath, f)))
    bad = [r for r in results if r[3] is None]
    for path, line, name, how in sorted(results):
        print(f"{'ok  ' if how else 'FAIL'} {path}:{line} {name}: {how or 'no panic boundary'}")
    print(f"boundary: {len(results)} extern \"C\" functions, {len(bad)} without a panic boundary")
    return 1 if bad or not results else 0


def self_test():
    cases = {
        "good.rs": 'pub extern "C" fn a() -> i32 { guard(0, || 1) }\n',
        "helper.rs": 'unsafe fn h() { guard((), || {}) }\n#[no_mangle]\npub unsafe extern "C" fn b() { unsafe { h() } }\n',
        "said.rs": 'extern "C" fn c() {\n    // boundary: one atomic store\n    X.store(0);\n}\n',
        "typepos.rs": 'fn d(cb: Option<unsafe extern "C" fn(i32) -> i32>) { let _ = cb; }\n',
        "bad.rs": 'pub extern "C" fn e() { let v: Vec<u8> = Vec::new(); v[1]; }\n',
        "comment.rs": 'pub extern "C" fn f() { /* guard( */ let s = "catch_unwind("; }\n',
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in cases.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                fh.write(text)
        got = {r[2]: r[3] for f in cases for r in check_file(os.path.join(tmp, f))}
    want_ok = {"a", "b", "c"}
    want_bad = {"e", "f"}
    failures = [n for n in want_ok if not got.get(n)] + [n for n in want_bad if got.get(n, "x")]
    if "d" in got:
        failures.append("d (a type position taken for a definition)")
    if failures:
        print("boundary self-test: FAIL:", ", ".join(failures))
        return 1
    print("boundary self-test: ok (guarded, via a helper, said, type position, missing, "
          "hidden in a comment or string)")
    return 0


def main():
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        return self_test()
    if args[:1] == ["--check"]:
        args = args[1:]
    return check(args[0] if args else "src")


if __name__ == "__main__":
    sys.exit(main())
