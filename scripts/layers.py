#!/usr/bin/env python3
"""Checks the crate's module layering: each module imports only its own layer or lower ones,
no import cycle between modules, and every module is placed in the table below.

    scripts/layers.py --check [SRC_DIR]       violations, one a line (exit 1), or a summary
    scripts/layers.py --check --where [SRC]   the same, each with the file and line
    scripts/layers.py --table [SRC_DIR]       markdown table: layers, modules, what each imports
    scripts/layers.py --graph [--where] [SRC] the module import edges, `a -> b`
    scripts/layers.py --self-test             checks the checker on fixture trees

A module is a file under SRC_DIR (default: src/ next to this script): src/a.rs and
src/a/mod.rs are `a`, src/a/b.rs is `a::b`; src/lib.rs is the crate root, exempt. An import
is a `use` path (`crate::`, `super::`, `self::`, a child module, groups `{a, b::c}`) or a
path in code (`crate::log::write(`, `super::x`, `crate::log!`), resolved to the deepest
module file it names. `crate::NAME!` is an import of the module that defines the
`#[macro_export]` macro NAME. Test code is skipped: any item under `#[cfg(test)]`, and the
files of modules declared `#[cfg(test)] mod name;`. Comments and literals are skipped.
Python 3 standard library only.
"""
import os
import re
import subprocess
import sys
import tempfile
from collections import deque

# Layers, lowest first: (name, module prefixes). A module is in the layer of the longest
# prefix (whole path segments) that matches it; place each new module here deliberately.
LAYERS = [
    ("base", ["clock", "log", "error", "boundary", "secret", "ossl", "threads", "pid", "env", "fault"]),
    ("config", ["config"]),
    ("store", ["store"]),  # store, store::memory, store::front, store::shm and below
    ("cache", ["session", "cache"]),
    # interpose::real, ::record, ::attach, ::hooks, ::trampolines, ::connection,
    # ::preload, ::ready; suspend (asynchronous lookups: ClientHello retry, async jobs)
    ("openssl", ["interpose", "suspend"]),
    ("ffi", ["ffi"]),
]
EXEMPT = {""}  # the crate root, src/lib.rs

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_KEYWORDS = {
    "pub", "fn", "mod", "impl", "struct", "enum", "union", "const", "static", "use",
    "trait", "type", "unsafe", "extern", "macro_rules", "async",
}


def layer_of(module):
    """(index, name) of the module's layer, or None if no prefix covers it."""
    segs = module.split("::")
    best = None
    for index, (name, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            ps = p.split("::")
            if segs[: len(ps)] == ps and (best is None or len(ps) > best[0]):
                best = (len(ps), index, name)
    return None if best is None else (best[1], best[2])


# ---------------------------------------------------------------------------------------
# Lexing: blank out comments and literals, keeping every other character where it was.

RAW_STR = re.compile(r'[bc]?r(#*)"')
CHAR_LIT = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]{1,8}\}|[^\n])|[^\\'\n])'")


def strip_code(src):
    """The source with comments, string, char and byte literals replaced by spaces
    (newlines kept, so offsets and line numbers are the source's)."""
    out = list(src)
    n = len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < n:
        c = src[i]
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rbc" and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")) \
                and RAW_STR.match(src, i):
            m = RAW_STR.match(src, i)
            close = '"' + m.group(1)
            j = src.find(close, m.end())
            j = n if j < 0 else j + len(close)
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n:
                if src[j] == "\\":
                    j += 2
                    continue
                j += 1
                if src[j - 1] == '"':
                    break
            blank(i, j)
            i = j
        elif c == "'":
            m = CHAR_LIT.match(src, i)
            if m:  # a char literal; otherwise a lifetime or a label
                blank(i, m.end())
                i = m.end()
            else:
                i += 1
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            i = j  # a prefix b/c of a literal is stepped over: the literal is next
        else:
            i += 1
    return "".join(out)


def match_brace(s, j):
    """Offset just past the `}` closing the `{` at s[j]."""
    depth = 0
    n = len(s)
    while j < n:
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return n


def item_end(s, j):
    """Offset just past the item (or field, or statement) starting at s[j]."""
    head = re.match(r"\s*(?:#\s*!?\s*\[[^\]]*\]\s*)*(" + IDENT + ")", s[j:j + 400])
    is_item = bool(head) and head.group(1) in ITEM_KEYWORDS
    depth = 0
    n = len(s)
    while j < n:
        ch = s[j]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                return j
        elif depth == 0:
            if ch == ";":
                return j + 1
            if ch == "{":
                return match_brace(s, j)
            if ch == "}":
                return j
            if ch == "," and not is_item:
                return j + 1
        j += 1
    return n


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
CFG_TEST_INNER = re.compile(r"#\s*!\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
MOD_DECL = re.compile(
    r"\s*(?:#\s*\[[^\]]*\]\s*)*(?:pub\s*(?:\([^)]*\))?\s*)?mod\s+(" + IDENT + r")\s*;")


def drop_test_code(code):
    """(code with every `#[cfg(test)]` item blanked, names of `#[cfg(test)] mod x;`)."""
    out = list(code)
    test_mods = set()
    pos = 0
    while True:
        m = CFG_TEST.search(code, pos)
        if not m:
            break
        end = item_end(code, m.end())
        d = MOD_DECL.match(code, m.end())
        if d and d.end() <= end:
            test_mods.add(d.group(1))
        for k in range(m.start(), end):
            if out[k] != "\n":
                out[k] = " "
        pos = max(end, m.end())
    return "".join(out), test_mods


# ---------------------------------------------------------------------------------------
# Paths

USE_STMT = re.compile(r"(?<![\w$])use\s+")
USE_TOKEN = re.compile(r"\s*(::|\{|\}|,|\*|;|\$?" + IDENT + r"|\S)")
PATH_RE = re.compile(
    r"(?<![\w$:])(\$?" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)(\s*!)?")
VIS_IN = re.compile(r"\bpub\s*\(\s*in\s+[^)]*\)")
INLINE_MOD = re.compile(r"(?<![\w$])mod\s+(" + IDENT + r")\s*\{")
MACRO_EXPORT = re.compile(
    r"#\s*\[\s*macro_export[^\]]*\]\s*(?:#\s*\[[^\]]*\]\s*)*macro_rules\s*!\s*(" + IDENT + ")")


def parse_use_tree(text):
    """The paths of a use tree (`crate::{a, b::c as d, e::*}`): [(segments, alias)]."""
    toks = [t for t in USE_TOKEN.findall(text) if t]
    toks.append("<end>")

    def tree(i, prefix):
        out = []
        path = list(prefix)
        if toks[i] == "::":
            path.append("::")
            i += 1
        while True:
            t = toks[i]
            if t == "{":
                i += 1
                while toks[i] not in ("}", "<end>"):
                    sub, i = tree(i, path)
                    out += sub
                    if toks[i] == ",":
                        i += 1
                    elif toks[i] not in ("}", "<end>"):
                        i += 1  # unexpected token: step over it
                return out, i + 1
            if t == "*":
                return out + [(path + ["*"], None)], i + 1
            if not re.match(r"\$?" + IDENT + "$", t):
                return out, i
            path.append(t)
            i += 1
            if toks[i] == "::":
                i += 1
                continue
            alias = None
            if toks[i] == "as" and toks[i + 1] != "<end>":
                alias = toks[i + 1]
                i += 2
            if path[-1] == "self" and len(path) > 1:
                path.pop()
            return out + [(path, alias)], i

    result, _ = tree(0, [])
    return result


def split_path(text):
    return [s.strip() for s in text.split("::") if s.strip()]


class Crate:
    """The modules of SRC_DIR and the imports between them."""

    def __init__(self, src_dir):
        self.src_dir = src_dir
        self.files = {}  # module -> relative file path
        for root, _dirs, names in os.walk(src_dir):
            for name in sorted(names):
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), src_dir).replace(os.sep, "/")
                parts = rel[:-3].split("/")
                if rel in ("lib.rs", "main.rs"):
                    module = ""
                elif parts[-1] == "mod":
                    module = "::".join(parts[:-1])
                else:
                    module = "::".join(parts)
                self.files[module] = rel
        self.code = {}
        self.test_only = set()
        self.macros = {}  # exported macro name -> module defining it
        declared_test = set()
        for module, rel in self.files.items():
            with open(os.path.join(src_dir, rel), encoding="utf-8") as f:
                code = strip_code(f.read())
            if CFG_TEST_INNER.search(code):
                self.test_only.add(module)
            code, test_mods = drop_test_code(code)
            self.code[module] = code
            for name in test_mods:
                declared_test.add(module + "::" + name if module else name)
        for module in self.files:
            for t in declared_test:
                if module == t or module.startswith(t + "::"):
                    self.test_only.add(module)
        self.modules = sorted(m for m in self.files
                              if m not in EXEMPT and m not in self.test_only)
        for module in self.files:
            if module in self.test_only:
                continue
            for m in MACRO_EXPORT.finditer(self.code[module]):
                self.macros.setdefault(m.group(1), module)
        self.sites = []  # (from, to, file, line, text)
        for module in self.modules:
            self._scan(module)
        self.edges = {}  # (from, to) -> first site (file, line, text)
        for a, b, rel, line, text in self.sites:
            self.edges.setdefault((a, b), (rel, line, text))

    def children(self, module):
        prefix = module + "::" if module else ""
        return {m[len(prefix):] for m in self.files
                if m.startswith(prefix) and m != module and "::" not in m[len(prefix):]}

    def target(self, absolute, bang=False):
        """The module an absolute path (segments after `crate`) names, or None for the root."""
        if bang and len(absolute) == 1 and absolute[0] in self.macros:
            return self.macros[absolute[0]]
        for k in range(len(absolute), 0, -1):
            m = "::".join(absolute[:k])
            if m in self.files:
                return m
        if absolute and absolute[0] in self.macros:
            return self.macros[absolute[0]]
        return None

    def _scan(self, module):
        code = self.code[module]
        rel = self.files[module]
        segs = module.split("::") if module else []
        children = self.children(module)
        line_starts = [0] + [m.end() for m in re.finditer("\n", code)]

        def line_of(pos):
            lo, hi = 0, len(line_starts) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if line_starts[mid] <= pos:
                    lo = mid
                else:
                    hi = mid - 1
            return lo + 1

        # Inline (non-test) modules: `super` inside them is relative to them.
        inline = []
        for m in INLINE_MOD.finditer(code):
            inline.append((m.start(), match_brace(code, m.end() - 1), m.group(1)))

        def inline_at(pos):
            return [name for a, b, name in sorted(inline) if a <= pos < b]

        aliases = {}

        def resolve(path, pos):
            first = path[0]
            base = segs + inline_at(pos)
            if first in ("crate", "$crate"):
                return path[1:]
            if first == "self":
                return base + path[1:]
            if first == "super":
                k = 0
                while k < len(path) and path[k] == "super":
                    k += 1
                if k > len(base):
                    return None
                return base[: len(base) - k] + path[k:]
            if first in aliases:
                return aliases[first] + path[1:]
            if first in children and not inline_at(pos):
                return segs + path
            return None

        out = list(code)
        uses = []
        for m in USE_STMT.finditer(code):
            end = m.end()
            depth = 0
            while end < len(code):
                if code[end] == "{":
                    depth += 1
                elif code[end] == "}":
                    depth -= 1
                    if depth < 0:
                        break
                elif code[end] == ";" and depth == 0:
                    break
                end += 1
            uses.append((m.start(), parse_use_tree(code[m.end():end])))
            for k in range(m.start(), end):
                if out[k] != "\n":
                    out[k] = " "
        # Use paths may start with a name another use brought in: resolve twice.
        for _ in range(2):
            for pos, paths in uses:
                for path, alias in paths:
                    if not path or path[0] == "::" or path[-1] == "*":
                        continue
                    absolute = resolve(path, pos)
                    name = alias or path[-1]
                    if absolute is not None and name not in ("_", "self", "super", "crate"):
                        aliases.setdefault(name, absolute)

        def add(pos, path, text, bang=False):
            if not path or path[0] == "::":
                return
            absolute = resolve(path, pos)
            if absolute is None:
                return
            if path[-1] == "*":
                absolute = absolute[:-1]
            to = self.target(absolute, bang)
            if to is None or to == module or to in EXEMPT or to in self.test_only:
                return
            self.sites.append((module, to, rel, line_of(pos), text))

        for pos, paths in uses:
            for path, _alias in paths:
                add(pos, path, "use " + "::".join(path))
        rest = VIS_IN.sub(lambda m: " " * len(m.group(0)), "".join(out))
        for m in PATH_RE.finditer(rest):
            path = [m.group(1)] + split_path(m.group(2))
            bang = bool(m.group(3))
            add(m.start(), path, "::".join(path) + ("!" if bang else ""), bang)

    # -- checks -------------------------------------------------------------------------

    def graph(self):
        g = {m: set() for m in self.modules}
        for a, b in self.edges:
            if a in g and b in g:
                g[a].add(b)
        return g

    def cycles(self):
        """Cycles of the import graph: for each strongly connected component, a shortest
        cycle through each of its modules (deduplicated), each as [a, b, ..., a]."""
        g = self.graph()
        index, low, on, stack, sccs = {}, {}, set(), [], []
        counter = [0]

        def strong(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(g[v]):
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                sccs.append(set(comp))

        sys.setrecursionlimit(max(1000, 10 * len(g)))
        for v in sorted(g):
            if v not in index:
                strong(v)
        found = set()
        for comp in sccs:
            if len(comp) < 2:
                continue
            for v in sorted(comp):
                prev = {v: None}
                queue = deque([v])
                cycle = None
                while queue and cycle is None:
                    u = queue.popleft()
                    for w in sorted(g[u]):
                        if w not in comp:
                            continue
                        if w == v:
                            path = [u]
                            while prev[path[-1]] is not None:
                                path.append(prev[path[-1]])
                            cycle = path[::-1]
                            break
                        if w not in prev:
                            prev[w] = u
                            queue.append(w)
                if cycle:
                    k = cycle.index(min(cycle))
                    found.add(tuple(cycle[k:] + cycle[:k]))
        return [list(c) + [c[0]] for c in sorted(found)]

    def upward(self):
        out = []
        for (a, b), site in sorted(self.edges.items()):
            la, lb = layer_of(a), layer_of(b)
            if la and lb and lb[0] > la[0]:
                out.append((a, la[1], b, lb[1], site))
        return out

    def unplaced(self):
        return [m for m in self.modules if layer_of(m) is None]

    def violations(self, where=False):
        def at(site):
            return "  [%s:%d: %s]" % site if where else ""

        lines = []
        for a, la, b, lb, site in self.upward():
            lines.append("layer: %s (%s) imports %s (%s)%s" % (a, la, b, lb, at(site)))
        for c in self.cycles():
            extra = ""
            if where:
                extra = "  [" + "; ".join(
                    "%s:%d: %s" % self.edges[(c[k], c[k + 1])] for k in range(len(c) - 1)) + "]"
            lines.append("cycle: " + " -> ".join(c) + extra)
        for m in self.unplaced():
            lines.append("unplaced: " + m)
        return lines

    def summary(self):
        edges = [e for e in self.edges if e[0] in self.modules and e[1] in self.modules]
        return "layers: %d modules, %d imports, no upward import, no cycle" % (
            len(self.modules), len(edges))

    def table(self):
        rows = ["| Layer | Modules | Imports layers | Imports modules (other layers) |",
                "|---|---|---|---|"]
        groups = [(i, name) for i, (name, _p) in enumerate(LAYERS)]
        if self.unplaced():
            groups.append((None, "(unplaced)"))
        for i, name in groups:
            mods = [m for m in self.modules
                    if (layer_of(m) or (None, None))[0] == i]
            used_layers, used_mods = set(), set()
            for (a, b) in self.edges:
                if a in mods and b in self.modules:
                    lb = layer_of(b)
                    used_layers.add((lb[0], lb[1]) if lb else (99, "(unplaced)"))
                    if b not in mods:
                        used_mods.add(b)
            label = name if i is None else "%d %s" % (i, name)
            rows.append("| %s | %s | %s | %s |" % (
                label,
                ", ".join("`%s`" % m for m in mods) or "—",
                ", ".join(n for _k, n in sorted(used_layers)) or "—",
                ", ".join("`%s`" % m for m in sorted(used_mods)) or "—"))
        return "\n".join(rows)


# ---------------------------------------------------------------------------------------
# Self-test

CLEAN = {
    "lib.rs": """
        //! Doc mentioning crate::ffi::api and `super::x`.
        pub mod clock;
        pub mod log;
        pub mod config;
        pub mod store;
        pub mod session;
        pub mod cache;
        pub mod interpose;
        pub mod ffi;
        #[cfg(test)]
        mod test_sessions;
    """,
    "clock.rs": """
        /// Returns crate::ffi::now (a comment, not an import).
        pub fn now() -> u64 { 0 }
        const S: &str = "crate::ffi::api::x()";
        const R: &str = r#"use crate::ffi;"#;
        const C: char = '"';
        const T: &str = "still a string: crate::ffi::y";
        fn f<'a>(x: &'a str) -> &'a str { x }
        /* block /* nested */ crate::ffi::z() */
    """,
    "log.rs": """
        use std::fmt::Arguments;
        pub fn write(_a: Arguments<'_>) { let _t = crate::clock::now(); }
        #[macro_export]
        macro_rules! log_limited {
            ($($arg:tt)*) => { $crate::log::write(format_args!($($arg)*)) };
        }
        #[cfg(test)]
        mod tests {
            use crate::ffi::api;
            #[test] fn t() { crate::cache::x(); }
        }
    """,
    "config.rs": """
        use crate::{clock::now, log};
        pub fn parse() { crate::log_limited!("x {}", now()); }
        #[cfg(test)]
        fn only_in_tests() { crate::ffi::api::f(); }
    """,
    "store/mod.rs": """
        pub mod memory;
        pub mod shm;
        #[cfg(test)]
        pub mod testing;
        pub trait Store {}
        pub fn open() { let _ = crate::config::parse(); }
    """,
    "store/memory.rs": """
        use super::Store;
        pub struct MemoryStore;
    """,
    "store/testing.rs": """
        use crate::ffi::api;
        use crate::cache::Cache;
    """,
    "store/shm/mod.rs": """
        pub mod lock;
        pub mod segment;
        pub struct ShmStore;
    """,
    "store/shm/lock.rs": """
        pub struct Stuck;
    """,
    "store/shm/segment.rs": """
        use super::lock::Stuck;
        fn f() -> super::ShmStore { super::super::open(); todo!() }
    """,
    "session.rs": """
        pub mod cost;
        pub struct SessionObject;
    """,
    "session/cost.rs": """
        use crate::session::SessionObject;
        #[cfg(test)]
        pub(crate) mod tests;
    """,
    "session/cost/tests.rs": """
        use crate::ffi::api;
    """,
    "cache.rs": """
        use crate::store::{self, memory::MemoryStore, Store};
        use crate::session as sess;
        pub struct Cache;
        fn g() { let _ = sess::cost::x(); let _ = store::shm::lock::Stuck; }
    """,
    "interpose/mod.rs": """
        pub mod record;
        pub use self::record::make_server_cache;
    """,
    "interpose/record.rs": """
        pub fn make_server_cache() -> crate::cache::Cache { crate::cache::Cache }
    """,
    "ffi/mod.rs": """
        pub mod api;
    """,
    "ffi/api.rs": """
        pub fn f() { let _c = crate::interpose::record::make_server_cache(); }
    """,
    "test_sessions.rs": """
        use crate::ffi::api;
    """,
}

CLEAN_EDGES = {
    ("log", "clock"),
    ("config", "clock"), ("config", "log"),
    ("store", "config"),
    ("store::memory", "store"),
    ("store::shm::segment", "store::shm::lock"), ("store::shm::segment", "store::shm"),
    ("store::shm::segment", "store"),
    ("session::cost", "session"),
    ("cache", "store"), ("cache", "store::memory"), ("cache", "session"),
    ("cache", "session::cost"), ("cache", "store::shm::lock"),
    ("interpose", "interpose::record"),
    ("interpose::record", "cache"),
    ("ffi::api", "interpose::record"),
}


def build(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lines = text.split("\n")
        indent = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(l[indent:] for l in lines).strip("\n") + "\n")


def self_test():
    failures = []

    def expect(name, cond, detail=""):
        print("%s  %s%s" % ("ok  " if cond else "FAIL", name, ("  " + detail) if not cond else ""))
        if not cond:
            failures.append(name)

    def variant(tmp, name, changes):
        files = dict(CLEAN)
        files.update(changes)
        root = os.path.join(tmp, name, "src")
        build(root, {k: v for k, v in files.items() if v is not None})
        return root, Crate(root)

    def run_cli(root):
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--check", root],
                           capture_output=True, text=True)
        return p.returncode, p.stdout.strip().splitlines()

    with tempfile.TemporaryDirectory() as tmp:
        root, c = variant(tmp, "clean", {})
        edges = set(c.edges)
        expect("clean tree: the expected import edges", edges == CLEAN_EDGES,
               "missing %s, extra %s" % (sorted(CLEAN_EDGES - edges), sorted(edges - CLEAN_EDGES)))
        expect("clean tree: no violation", c.violations() == [], repr(c.violations()))
        rc, out = run_cli(root)
        expect("clean tree: exit 0 and one summary line",
               rc == 0 and len(out) == 1 and out[0].startswith("layers: 15 modules, 17 imports,"),
               "rc=%d out=%r" % (rc, out))
        expect("test-only files are not modules",
               not {"test_sessions", "store::testing", "session::cost::tests"} & set(c.modules),
               repr(c.modules))
        expect("strings, comments, #[cfg(test)] items do not import ffi",
               not any(b.startswith("ffi") for (a, b) in edges if not a.startswith("ffi")))
        expect("inline crate::x::f() path: ffi::api -> interpose::record (deepest module)",
               ("ffi::api", "interpose::record") in edges)
        expect("use super:: edges: store::memory -> store, segment -> shm::lock",
               ("store::memory", "store") in edges
               and ("store::shm::segment", "store::shm::lock") in edges)
        expect("inline super::super:: path", ("store::shm::segment", "store") in edges)
        expect("crate::log_limited! macro -> log", ("config", "log") in edges)
        expect("grouped use with self and an alias",
               {("cache", "store"), ("cache", "store::memory"), ("cache", "session::cost"),
                ("cache", "store::shm::lock")} <= edges)

        _root, c = variant(tmp, "upward", {
            "store/shm/segment.rs": CLEAN["store/shm/segment.rs"] + "\nuse crate::cache::Cache;\n"})
        rc, out = run_cli(_root)
        expect("upward import reported",
               rc == 1 and out == ["layer: store::shm::segment (store) imports cache (cache)"],
               "rc=%d out=%r" % (rc, out))

        _root, c = variant(tmp, "upward-inline", {
            "store/shm/lock.rs": CLEAN["store/shm/lock.rs"] + "\nfn h() { crate::ffi::reset(); }\n"})
        expect("upward inline crate::x::f() reported",
               c.violations() == ["layer: store::shm::lock (store) imports ffi (ffi)"],
               repr(c.violations()))

        _root, c = variant(tmp, "string", {
            "clock.rs": CLEAN["clock.rs"] + '\nfn h() { let _ = "crate::ffi::api::f()"; }\n'})
        expect("a string containing crate::ffi is not an import", c.violations() == [],
               repr(c.violations()))

        _root, c = variant(tmp, "cycle", {
            "clock.rs": CLEAN["clock.rs"] + "\nfn h() { crate::log::write(format_args!(\"\")); }\n"})
        expect("cycle of two modules in one layer reported",
               c.violations() == ["cycle: clock -> log -> clock"], repr(c.violations()))

        _root, c = variant(tmp, "cycle-parent", {
            "store/mod.rs": CLEAN["store/mod.rs"] + "\npub use memory::MemoryStore;\n"})
        expect("parent re-export + child use super:: is a cycle",
               c.violations() == ["cycle: store -> store::memory -> store"], repr(c.violations()))

        _root, c = variant(tmp, "unplaced", {
            "lib.rs": CLEAN["lib.rs"] + "\npub mod hooks;\n",
            "hooks.rs": "use crate::cache::Cache;\n"})
        expect("unknown module reported as unplaced", c.violations() == ["unplaced: hooks"],
               repr(c.violations()))
    print("self-test: %s" % ("%d failure(s)" % len(failures) if failures else "all passed"))
    return 1 if failures else 0


def main(argv):
    args = [a for a in argv if not a.startswith("-")]
    flags = {a for a in argv if a.startswith("-")}
    known = {"--check", "--table", "--graph", "--self-test", "--where", "-h", "--help"}
    modes = flags & {"--check", "--table", "--graph", "--self-test"}
    if flags - known or len(modes) != 1 or len(args) > 1 or "-h" in flags or "--help" in flags:
        sys.stderr.write(__doc__)
        return 2
    if "--self-test" in modes:
        return self_test()
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "..", "src")
    if not os.path.isdir(src):
        sys.stderr.write("layers.py: no directory %s\n" % src)
        return 2
    crate = Crate(src)
    where = "--where" in flags
    if "--table" in modes:
        print(crate.table())
        return 0
    if "--graph" in modes:
        for (a, b), site in sorted(crate.edges.items()):
            if a in crate.modules and b in crate.modules:
                print("%s -> %s%s" % (a, b, ("  [%s:%d: %s]" % site) if where else ""))
        return 0
    lines = crate.violations(where)
    for line in lines:
        print(line)
    if lines:
        return 1
    print(crate.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
