# sesscache — build, test, benchmark, install.
#   make            the libraries: target/release/libsesscache.{so,a}, and the example
#                   event-loop server build/async_server (examples/async_server.c)
#   make cli        the command-line tool: target/cli/release/sesscache
#   make check      every test (Rust, C harness, ABI, transparency, valgrind, ASan + UBSan,
#                   real servers, panics, setuid, soak, fuzz smoke, bench smoke)
#   make demo       a small server and client showing resumption through the cache
#   make bench      every benchmark, then docs/bench.md and docs/bench.png (QUICK=1: smoke)
#   make bench-servers  nginx and Apache httpd, their own caches vs sesscache preloaded (root)
#   make bench-core the cache core alone (criterion)
#   make sanitize   ThreadSanitizer over the stores, Miri over the pure-Rust parts (nightly)
#   make soak       the soak test: threads and processes on shm:, redis:// and memory: for
#                   SOAK_SECONDS (60) each, no wrong session, memory bounded (c-tests/soak.sh)
#   make install    PREFIX=/usr/local DESTDIR= : libraries, header, pkg-config file, manual pages
#   make man-check  the manual pages: one per exported function, no formatting warnings
#   make fuzz       the fuzz targets (cargo-fuzz, nightly), 20 s each: scripts/fuzz.sh
#   make compat     the OpenSSL matrix: 1.1.1, 3.0, 3.5, 3.6, 4.0 built from source (cached),
#                   the library and the C tests against each: c-tests/compat.sh
#   make openssl-suite  OpenSSL's own SSL tests, without and with the library preloaded and
#                   unconfigured: scripts/openssl_suite.sh (OPENSSL_TARBALL=...)

CARGO     ?= cargo
CC        ?= cc
PREFIX    ?= /usr/local
DESTDIR   ?=
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR     := $(firstword $(subst ., ,$(VERSION)))

CBINDGEN_VERSION := 0.29.4
CBINDGEN  ?= target/tools/bin/cbindgen

REL       := target/release
SO        := $(REL)/libsesscache.so
A         := $(REL)/libsesscache.a
B         := build

SSL_CFLAGS := $(shell pkg-config --cflags openssl)
SSL_LIBS   := $(shell pkg-config --libs openssl)
CFLAGS    ?= -O2 -g
WARN      := -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror
CPPFLAGS  := -Iinclude -Ic-tests $(SSL_CFLAGS)
# Link against the library in the tree, found at run time without installing it.
LINK_SC   := -L$(REL) -lsesscache -Wl,-rpath,$(CURDIR)/$(REL)

TLS_UTIL  := c-tests/tls_util.c c-tests/tls_util.h
CHECK_FW  := c-tests/check.c c-tests/check.h
RUST_SRC  := $(shell find src -name '*.rs') Cargo.toml build.rs
CLI_SRC   := $(shell find cli/src -name '*.rs') cli/Cargo.toml Cargo.lock
# The command-line tool, in a target directory of its own: Cargo builds the library again
# for it, without the `interpose` feature but as a cdylib and staticlib too, and those would
# replace the C library's copies in target/release/deps (and make each build of one rebuild
# the other).
CLI_DIR   := target/cli
CLI       := $(CLI_DIR)/release/sesscache

.PHONY: all lib fault-lib sanitize cli header check-header check check-all lint rust-test model c-tests demo demo-run bench bench-run install uninstall clean \
        install-man uninstall-man man-check

all: lib $(B)/async_server

lib: $(SO).$(MAJOR)

# One cargo run makes both libraries: a grouped target, so `make -j` runs it once.
$(SO) $(A) &: $(RUST_SRC)
	$(CARGO) build --release --locked
	@touch $(SO) $(A)

# The SONAME is libsesscache.so.$(MAJOR): give the in-tree copy that name too.
$(SO).$(MAJOR): $(SO)
	ln -sf libsesscache.so $@

# The library with the `fault-injection` feature, for c-tests/panic_check.sh only: its own
# target directory, so it can never replace the library `make` builds and installs.
FAULT_SO  := target/fault/release/libsesscache.so
fault-lib: $(FAULT_SO).$(MAJOR)
$(FAULT_SO): $(RUST_SRC)
	$(CARGO) build --release --locked --lib --features fault-injection --target-dir target/fault
	@touch $@
$(FAULT_SO).$(MAJOR): $(FAULT_SO)
	ln -sf libsesscache.so $@

# -p: built alone, so that Cargo does not unify its features with the root package's, which
# would turn `interpose` on in the tool too (c-tests/cli_check.sh checks it is off).
$(CLI): $(RUST_SRC) $(CLI_SRC)
	$(CARGO) build --release --locked -p sesscache-cli --target-dir $(CLI_DIR)
	@touch $@

cli: $(CLI)

$(CBINDGEN):
	$(CARGO) install cbindgen --version =$(CBINDGEN_VERSION) --locked --root target/tools

header: $(CBINDGEN)
	$(CBINDGEN) --quiet --config cbindgen.toml --output include/sesscache.h

check-header: $(CBINDGEN)
	@mkdir -p $(B)
	$(CBINDGEN) --quiet --config cbindgen.toml --output $(B)/sesscache.h
	@cmp -s $(B)/sesscache.h include/sesscache.h || { \
	  echo "include/sesscache.h is stale: run 'make header' and commit it"; \
	  diff -u include/sesscache.h $(B)/sesscache.h | head -n 40; exit 1; }
	@echo "header: include/sesscache.h is up to date"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --locked --workspace --all-targets --no-default-features -- -D warnings
	$(CARGO) clippy --release --locked --lib --features fault-injection -- -D warnings

rust-test:
	$(CARGO) test --release --locked

# The shm lock's protocol, checked by spin (model/shm_lock.pml; also part of `make check`).
model:
	sh scripts/model_check.sh

# ---- C programs -------------------------------------------------------------------------
$(B)/abi_check.o: c-tests/abi_check.c include/sesscache.h
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) -c $< -o $@

# The harness programs: c-tests/NAME.c with the TLS helpers and the check framework,
# linked with the library in the tree; NAME_asan is the same under AddressSanitizer and
# UndefinedBehaviorSanitizer (the C side instrumented; every malloc/free in the process,
# OpenSSL's and ours, goes through ASan's allocator; any undefined behaviour in the harness
# stops it).
HARNESS_DEPS := $(TLS_UTIL) $(CHECK_FW) include/sesscache.h $(SO).$(MAJOR)
HARNESS_SRC   = $< c-tests/tls_util.c c-tests/check.c

$(B)/test_%: c-tests/test_%.c $(HARNESS_DEPS)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) $(HARNESS_SRC) -o $@ $(LINK_SC) $(SSL_LIBS) -lpthread

$(B)/test_%_asan: c-tests/test_%.c $(HARNESS_DEPS)
	@mkdir -p $(B)
	$(CC) $(WARN) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -fno-omit-frame-pointer $(CPPFLAGS) $(HARNESS_SRC) \
	  -o $@ $(LINK_SC) $(SSL_LIBS) -lpthread

# The transparency probe, built twice: without the library and linked with it first.
$(B)/observe_plain: c-tests/observe.c $(TLS_UTIL)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) c-tests/observe.c c-tests/tls_util.c -o $@ $(SSL_LIBS)

$(B)/observe_linked: c-tests/observe.c $(TLS_UTIL) $(SO).$(MAJOR)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) c-tests/observe.c c-tests/tls_util.c -o $@ \
	  -Wl,--no-as-needed $(LINK_SC) -Wl,--as-needed $(SSL_LIBS)

$(B)/bench_resume: c-tests/bench_resume.c $(TLS_UTIL) include/sesscache.h $(SO).$(MAJOR)
	@mkdir -p $(B)
	$(CC) $(WARN) -O2 -g -pthread $(CPPFLAGS) c-tests/bench_resume.c c-tests/tls_util.c -o $@ $(LINK_SC) $(SSL_LIBS)

# The soak test (c-tests/soak.c): threads in forked processes sharing one cache; run by
# `make soak` (below), not built by `make c-tests`.
$(B)/soak: c-tests/soak.c $(TLS_UTIL) include/sesscache.h $(SO).$(MAJOR)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) -pthread $(CPPFLAGS) c-tests/soak.c c-tests/tls_util.c -o $@ $(LINK_SC) $(SSL_LIBS)

$(B)/demo: examples/demo.c $(TLS_UTIL) include/sesscache.h $(SO).$(MAJOR)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) examples/demo.c c-tests/tls_util.c -o $@ $(LINK_SC) $(SSL_LIBS)

# The example single-threaded epoll server with asynchronous lookups (c-tests/async_server.sh).
$(B)/async_server: examples/async_server.c include/sesscache.h $(SO).$(MAJOR)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) examples/async_server.c -o $@ $(LINK_SC) $(SSL_LIBS)

C_PROGRAMS := $(B)/abi_check.o $(B)/test_cache $(B)/test_shm $(B)/test_memory_bound \
              $(B)/test_tickets $(B)/test_cache_asan $(B)/test_shm_asan $(B)/test_tickets_asan \
              $(B)/test_async $(B)/test_async_asan \
              $(B)/observe_plain \
              $(B)/observe_linked $(B)/bench_resume $(B)/bench_client $(B)/soak $(B)/demo \
              $(B)/async_server

c-tests: $(C_PROGRAMS)

# ---- the targets the README names -------------------------------------------------------
# `make check` and `make demo` first install the Debian packages they need when some are
# missing (as root; otherwise they print the one apt-get line to run and stop), then run in a
# fresh make, which sees what was installed (pkg-config above).
check:
	bash scripts/deps.sh install
	$(MAKE) check-all

check-all: lint check-header rust-test c-tests cli fault-lib
	CC="$(CC)" SSL_CFLAGS="$(SSL_CFLAGS)" SSL_LIBS="$(SSL_LIBS)" sh c-tests/run.sh

demo:
	bash scripts/deps.sh install demo
	$(MAKE) demo-run

demo-run: $(B)/demo $(CLI)
	sh examples/demo.sh

# make bench: every benchmark, then docs/bench.md and docs/bench.png (c-tests/bench.sh);
# QUICK=1: a smoke run (what `make check` runs), its report under build/bench.
bench:
	bash scripts/deps.sh install
	$(MAKE) bench-run

bench-run: $(B)/bench_resume $(B)/bench_client $(B)/async_server $(CLI)
	sh c-tests/bench.sh $(B)/bench_resume $(if $(QUICK),--quick)

# ---- bench-core: the cache core alone (issue 12) ----------------------------------------
# Criterion benchmarks of the `memory:` and `shm:` stores (benches/core.rs): get (hit,
# miss) and put at 1 k, 100 k and 1 M entries, and sessions per MiB of `shm:`. The sizes are
# those of real sessions: build/session_der makes them by handshakes (c-tests/session_der.c)
# and writes their DER to build/sessions/, which the benchmark reads. The figures end in
# build/bench-core.txt (scripts/bench_core_summary.py, from criterion's estimates).
.PHONY: bench-core

$(B)/session_der: c-tests/session_der.c $(TLS_UTIL)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) c-tests/session_der.c c-tests/tls_util.c -o $@ $(SSL_LIBS)

bench-core: $(B)/session_der
	@mkdir -p $(B)/sessions
	$(B)/session_der $(B)/sessions
	$(CARGO) bench --locked --bench core
	python3 scripts/bench_core_summary.py > $(B)/bench-core.txt
	@cat $(B)/bench-core.txt

# ---- bench-servers: real servers, measured (issue 12) -----------------------------------
# nginx (2 workers) with its own `shared:` session cache against the same nginx with
# `ssl_session_cache none` and libsesscache preloaded on shm:, and Apache prefork with `shmcb`
# against `none` + the library with force=1 on shm:: resumed connections per second under
# the same load of resuming clients (build/bench_client), as per-round ratios to the
# baseline. Run as root. BENCH_ROUNDS, BENCH_SECONDS, BENCH_CLIENTS, BENCH_PROTOCOLS,
# BENCH_SERVERS, BENCH_SLICES, BENCH_OUT, QUICK=1 (a smoke test): see c-tests/bench_servers.sh.
.PHONY: bench-servers

$(B)/bench_client: c-tests/bench_client.c
	@mkdir -p $(B)
	$(CC) $(WARN) -O2 -g $(SSL_CFLAGS) c-tests/bench_client.c -o $@ $(SSL_LIBS) -lpthread

bench-servers: $(B)/bench_client $(SO).$(MAJOR)
	sh c-tests/bench_servers.sh $(B)/bench_client

# make sanitize: ThreadSanitizer over the concurrent tests of the stores and of the front
# (Rust's std rebuilt with TSan; OpenSSL is not instrumented, so tests that race inside
# OpenSSL cannot be judged and are not run), and Miri over the pure-Rust parts that make no
# foreign call (the URL parser, the memory store, hashing, the counters' report, wiping,
# logging; property tests with 4 cases each, and not the many-threads test, which TSan
# runs: Miri is ~1000x slower). Needs the nightly toolchain with rust-src and miri; several
# minutes, so not part of `make check`.
TSAN_TESTS := store::memory store::shm:: store::hashed cache::front
MIRI_TESTS := config:: store::memory store::hashed store::redis::tally store::redis::admin::tests \
              secret:: log::tests --skip sealed --skip huge_url --skip many_threads
sanitize:
	RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS=halt_on_error=1 $(CARGO) +nightly test \
	  -Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/tsan --lib -- $(TSAN_TESTS)
	PROPTEST_CASES=4 MIRIFLAGS=-Zmiri-disable-isolation $(CARGO) +nightly miri test --lib -- $(MIRI_TESTS)

# ---- installation -----------------------------------------------------------------------
# The manual pages, man/manN/*.N, go to $(MANDIR)/manN/ as they are (`.so` links included).
MANDIR    := $(DESTDIR)$(PREFIX)/share/man
MAN_PAGES := $(wildcard man/man[1-8]/*.[1-8])

install-man:
	install -d $(addprefix $(MANDIR)/,$(sort $(patsubst man/%/,%,$(dir $(MAN_PAGES)))))
	for p in $(MAN_PAGES:man/%=%); do install -m 0644 man/$$p $(MANDIR)/$$p || exit 1; done

uninstall-man:
	rm -f $(MAN_PAGES:man/%=$(MANDIR)/%)

man-check:
	sh c-tests/man_check.sh

install: lib $(CLI) install-man
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/sesscache
	install -m 0755 $(SO) $(DESTDIR)$(PREFIX)/lib/libsesscache.so.$(VERSION)
	ln -sf libsesscache.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsesscache.so.$(MAJOR)
	ln -sf libsesscache.so.$(MAJOR) $(DESTDIR)$(PREFIX)/lib/libsesscache.so
	install -m 0644 $(A) $(DESTDIR)$(PREFIX)/lib/libsesscache.a
	install -m 0644 include/sesscache.h $(DESTDIR)$(PREFIX)/include/sesscache.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' sesscache.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sesscache.pc

uninstall: uninstall-man
	rm -f $(DESTDIR)$(PREFIX)/lib/libsesscache.so* $(DESTDIR)$(PREFIX)/lib/libsesscache.a \
	  $(DESTDIR)$(PREFIX)/include/sesscache.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/sesscache.pc \
	  $(DESTDIR)$(PREFIX)/bin/sesscache

clean:
	rm -rf $(B)
	$(CARGO) clean

# ---- soak test (issue 13) ----------------------------------------------------------------
# make soak: c-tests/soak.sh, one run after the other: shm: (4 processes x 2 threads, TLS 1.2
# and 1.3), redis:// (a redis-server the script starts on loopback, small maxmemory, values
# sealed) and memory: with client certificates; entries expire and are evicted throughout,
# and every resumption is checked against the session issued. SOAK_SECONDS (default 60) is
# the length of each run; `make check` runs it for 30 s a backend (c-tests/run.sh).
.PHONY: soak
soak: $(B)/soak
	sh c-tests/soak.sh $(B)/soak

# ---- fuzzing ----------------------------------------------------------------------------
# make fuzz: the cargo-fuzz targets of fuzz/ (URL parser, shm shard reader, sealed value
# opener, the callback path with arbitrary IDs and DER), built with the nightly toolchain and
# run FUZZ_SECONDS (20) each over a copy of their committed seed corpus; fails when
# cargo-fuzz or nightly is missing or a target finds something. Longer runs:
# `sh scripts/fuzz.sh long RUNS` (fuzz/README.md).
.PHONY: fuzz
fuzz:
	sh scripts/fuzz.sh smoke

# ---- compat: the OpenSSL matrix (issue 19) ----------------------------------------------
# make compat: OpenSSL 1.1.1, 3.0, 3.5, 3.6 and 4.0, each built from its openssl-src crate
# by scripts/openssl_build.sh into a cache that outlives the tree
# (SESSCACHE_OPENSSL_CACHE, default ~/.cache/sesscache/openssl; a version already there is
# reused), the library built against each (target/compat/VERSION), and against each the C
# harness, test_async (against a redis-server it starts), the ABI check, transparency, and
# preload with that version's own s_server and s_client on shm:, shared ticket keys (c-tests/compat.sh, which builds the missing OpenSSLs first: one that
# does not build is a failure). COMPAT_VERSIONS="1.1.1 3.5" runs some. Not part of
# `make check` (.ci/run runs both); docs/compat.md.
.PHONY: compat
compat: cli
	sh c-tests/compat.sh

# ---- openssl-suite: OpenSSL's own tests, preloaded -------------------------------------
# make openssl-suite: OpenSSL's test suite (its TLS, DTLS and session tests;
# OPENSSL_SUITE_TESTS=all for every one) run without and with target/release/libsesscache.so
# preloaded and unconfigured (no SESSCACHE_URL): every test must pass as it does without.
# OpenSSL is built from OPENSSL_TARBALL, or from the upstream tarball `apt-get source
# --download-only openssl` fetches (needs a deb-src entry), in
# ~/.cache/sesscache/openssl-suite/VERSION (SESSCACHE_OPENSSL_SUITE_CACHE), reused.
# Not part of `make check`: scripts/openssl_suite.sh.
.PHONY: openssl-suite
openssl-suite: lib
	sh scripts/openssl_suite.sh $(OPENSSL_TARBALL)
