# sesscache — build, test, benchmark, install.
#   make            the libraries: target/release/libsesscache.{so,a}
#   make cli        the command-line tool: target/cli/release/sesscache
#   make check      every test (Rust, C harness, ABI, transparency, valgrind, ASan)
#   make demo       a small server and client showing resumption through the cache
#   make bench      resumed handshakes per second: sesscache vs OpenSSL's internal cache
#   make install    PREFIX=/usr/local DESTDIR= : libraries, header, pkg-config file, manual pages
#   make man-check  the manual pages: one per exported function, no formatting warnings
#   make fuzz       the fuzz targets (cargo-fuzz, nightly), 20 s each: scripts/fuzz.sh

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

.PHONY: all lib fault-lib cli header check-header check check-all lint rust-test c-tests demo demo-run bench bench-run install uninstall clean \
        install-man uninstall-man man-check

all: lib

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

# ---- C programs -------------------------------------------------------------------------
$(B)/abi_check.o: c-tests/abi_check.c include/sesscache.h
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) -c $< -o $@

# The harness programs: c-tests/NAME.c with the TLS helpers and the check framework,
# linked with the library in the tree; NAME_asan is the same under AddressSanitizer (the C
# side instrumented; every malloc/free in the process, OpenSSL's and ours, goes through
# ASan's allocator).
HARNESS_DEPS := $(TLS_UTIL) $(CHECK_FW) include/sesscache.h $(SO).$(MAJOR)
HARNESS_SRC   = $< c-tests/tls_util.c c-tests/check.c

$(B)/test_%: c-tests/test_%.c $(HARNESS_DEPS)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) $(HARNESS_SRC) -o $@ $(LINK_SC) $(SSL_LIBS) -lpthread

$(B)/test_%_asan: c-tests/test_%.c $(HARNESS_DEPS)
	@mkdir -p $(B)
	$(CC) $(WARN) -O1 -g -fsanitize=address -fno-omit-frame-pointer $(CPPFLAGS) $(HARNESS_SRC) \
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

$(B)/demo: examples/demo.c $(TLS_UTIL) include/sesscache.h $(SO).$(MAJOR)
	@mkdir -p $(B)
	$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS) examples/demo.c c-tests/tls_util.c -o $@ $(LINK_SC) $(SSL_LIBS)

C_PROGRAMS := $(B)/abi_check.o $(B)/test_cache $(B)/test_shm $(B)/test_memory_bound \
              $(B)/test_cache_asan $(B)/test_shm_asan \
              $(B)/observe_plain \
              $(B)/observe_linked $(B)/bench_resume $(B)/demo

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

bench-run: $(B)/bench_resume $(CLI)
	sh c-tests/bench.sh $(B)/bench_resume $(if $(QUICK),--quick)

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

# ---- fuzzing ----------------------------------------------------------------------------
# make fuzz: the cargo-fuzz targets of fuzz/ (URL parser, shm shard reader, sealed value
# opener, the callback path with arbitrary IDs and DER), built with the nightly toolchain and
# run FUZZ_SECONDS (20) each over a copy of their committed seed corpus; fails when
# cargo-fuzz or nightly is missing or a target finds something. Longer runs:
# `sh scripts/fuzz.sh long RUNS` (fuzz/README.md).
.PHONY: fuzz
fuzz:
	sh scripts/fuzz.sh smoke
