# modelmux — see README.md. Targets: all run test check valgrind fuzz lint deps install clean,
# test-node18, fresh-check, bench, soak.

VERSION  := 0.1.0
BUILD    ?= build
CC       ?= gcc
PKGS     := libmicrohttpd libcurl yaml-0.1 libcjson libcrypto
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wwrite-strings -Wvla
OPT      ?= -O2 -g
SAN      ?=
MM_CFLAGS = $(OPT) $(SAN) -std=c17 -D_GNU_SOURCE $(WARN) -fstack-protector-strong -Iinclude \
            -DMM_VERSION='"$(VERSION)"' $(if $(SAN),,-D_FORTIFY_SOURCE=2) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null)

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/ui_assets.o
# The web page (ui/): plain files, gzip-compressed and embedded as C by tools/embed.c.
UI_FILES := $(sort $(notdir $(wildcard ui/*.html ui/*.js ui/*.css ui/*.svg)))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_RUN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%-replay)

DAEMON   := $(BUILD)/modelmux
FAKE     := $(BUILD)/mm-fake-backend
CONFIG   ?= config.example.yaml

.PHONY: all run test test-node18 unit integration fuzz-replay fuzz check valgrind lint deps deps-run \
        deps-test deps-dev clean npm-deps install fresh-check

all: $(DAEMON) $(FAKE)

$(BUILD)/obj/%.o: src/%.c $(wildcard include/modelmux/*.h src/*.h) | $(BUILD)/obj
	@echo "  CC      $<"
	@$(CC) $(MM_CFLAGS) -c -o $@ $<

$(BUILD)/gen/ui_assets.c: $(addprefix ui/,$(UI_FILES)) tools/embed.c | $(BUILD)/gen
	@echo "  EMBED   $@"
	@$(CC) -O2 -std=c17 -Wall -Wextra -Werror -o $(BUILD)/gen/embed tools/embed.c
	@for f in $(UI_FILES); do gzip -9nc ui/$$f > $(BUILD)/gen/$$f.gz || exit 1; done
	@$(BUILD)/gen/embed $@ ui $(BUILD)/gen $(UI_FILES)

$(BUILD)/obj/ui_assets.o: $(BUILD)/gen/ui_assets.c include/modelmux/ui.h | $(BUILD)/obj
	@echo "  CC      $<"
	@$(CC) $(MM_CFLAGS) -c -o $@ $<

$(BUILD)/libmodelmux.a: $(LIB_OBJ)
	@$(AR) rcs $@ $^

$(DAEMON): src/main.c $(BUILD)/libmodelmux.a
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -o $@ $< $(BUILD)/libmodelmux.a $(LDLIBS)

# The fake/demo backend is a test tool: it may use MHD's own threads.
$(FAKE): tests/fake_backend/fake_backend.c tests/fake_backend/llama_like.c \
    tests/fake_backend/llama_like.h | $(BUILD)
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -o $@ $< tests/fake_backend/llama_like.c $(LDLIBS) -lpthread

$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(BUILD)/libmodelmux.a | $(BUILD)/tests
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libmodelmux.a $(LDLIBS)

# Fuzz harnesses replay their seed corpora in `make test` (a tiny main drives them).
$(BUILD)/fuzz/%-replay: fuzz/%.c fuzz/replay_main.c tests/unit/mhd_head.h $(BUILD)/libmodelmux.a | $(BUILD)/fuzz
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -o $@ $< fuzz/replay_main.c $(BUILD)/libmodelmux.a $(LDLIBS)

$(BUILD) $(BUILD)/obj $(BUILD)/tests $(BUILD)/fuzz $(BUILD)/gen:
	mkdir -p $@

# libFuzzer: every harness built by clang with ASan+UBSan, then run FUZZ_SECONDS each. New
# inputs go to a scratch corpus ($(FUZZ_BUILD)/corpus/<h>), never into fuzz/corpus; crashers to
# $(FUZZ_BUILD)/crash/<h>/ (add them to fuzz/corpus/<h>/ once fixed). FUZZ_MAXLEN bounds
# each harness's inputs to what its parser meets (4096 when not listed); fuzz/<h>.dict, when
# there is one, gives libFuzzer the parser's words.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS   = -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -std=c17 -D_GNU_SOURCE $(WARN) -Iinclude \
                -DMM_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_OBJ     := $(LIB_SRC:src/%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_BUILD)/obj/ui_assets.o
FUZZ_BIN     := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_MAXLEN  := accept=4096 hdr=4096 config=16384 split=4096 json=8192 multipart=8192 path=4096 auth=2048 usage=8192 h1=8192

$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard include/modelmux/*.h src/*.h) | $(FUZZ_BUILD)/obj
	@echo "  CC      $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/obj/ui_assets.o: $(BUILD)/gen/ui_assets.c | $(FUZZ_BUILD)/obj
	@echo "  CC      $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/libmodelmux.a: $(FUZZ_OBJ)
	@$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c tests/unit/mhd_head.h $(FUZZ_BUILD)/libmodelmux.a
	@echo "  LINK    $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libmodelmux.a $(LDLIBS)

$(FUZZ_BUILD)/obj:
	mkdir -p $@

fuzz: $(FUZZ_BIN)
	@fail=""; summary=""; \
	for f in $(FUZZ_BIN); do \
	  h=$${f##*/fuzz_}; len=4096; \
	  for kv in $(FUZZ_MAXLEN); do [ "$${kv%%=*}" = "$$h" ] && len=$${kv#*=}; done; \
	  rm -rf $(FUZZ_BUILD)/corpus/$$h; mkdir -p $(FUZZ_BUILD)/corpus/$$h $(FUZZ_BUILD)/crash/$$h; \
	  echo "== fuzz_$$h ($(FUZZ_SECONDS) s)"; \
	  dict=""; [ -f fuzz/$$h.dict ] && dict=-dict=fuzz/$$h.dict; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=$$len -timeout=10 -print_final_stats=1 $$dict \
	    -artifact_prefix=$(FUZZ_BUILD)/crash/$$h/ $(FUZZ_BUILD)/corpus/$$h fuzz/corpus/$$h \
	    </dev/null >$(FUZZ_BUILD)/fuzz_$$h.log 2>&1 || fail="$$fail $$h"; \
	  n=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_BUILD)/fuzz_$$h.log); \
	  summary="$$summary$$(printf '%-10s %12s execs' $$h "$${n:-?}")\n"; \
	done; \
	printf "== executions in $(FUZZ_SECONDS) s per harness\n$$summary"; \
	if [ -n "$$fail" ]; then echo "fuzz: failed:$$fail (see $(FUZZ_BUILD)/fuzz_<h>.log)"; exit 1; fi

# The packages come first, then the build in a sub-make, so that even `make -j` compiles
# nothing before the compiler and libraries are there.
run: deps-run
	@$(MAKE) --no-print-directory all
	$(DAEMON) -c $(CONFIG)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

fuzz-replay: $(FUZZ_RUN)
	@set -e; for f in $(FUZZ_RUN); do n=$$(basename $$f -replay); echo "== $$n"; $$f fuzz/corpus/$${n#fuzz_}; done

# The tests' npm packages exactly as package-lock.json pins them, installed again whenever the
# lock file is newer than what npm last installed (npm's own record of it, in node_modules), so
# an old clone follows a dependency upgrade. npm's errors (network, certificates) are shown.
NPM_STAMP := tests/integration/node_modules/.package-lock.json
npm-deps: $(NPM_STAMP)
$(NPM_STAMP): tests/integration/package.json tests/integration/package-lock.json | deps-test
	cd tests/integration && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

integration: all npm-deps
	MM_BUILD=$(abspath $(BUILD)) MM_SANITIZE=$(MM_SANITIZE) node --test --test-concurrency=2 tests/integration/

test: deps-test
	@$(MAKE) --no-print-directory all unit fuzz-replay integration

# The integration suite again under Debian 12's own Node.js 18 (.ci/node18; needs root).
test-node18: all npm-deps
	./.ci/node18

# A newcomer's first ten minutes, for real (not in CI: 6-10 min on 2 cores, ~2 GB, root): a
# minimal Debian 12 made by debootstrap, this repository cloned into it, the README's `make run`
# (until its curl example answers) and `make test`, then `make install` and the /etc config
# served from /; everything removed after, also on failure (.ci/fresh-check).
fresh-check:
	./.ci/fresh-check

check:
	$(MAKE) BUILD=build-san OPT='-O1 -g -fno-omit-frame-pointer' \
	  SAN='-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all' MM_SANITIZE=1 test

# A representative scenario under valgrind (any definite leak or memory error fails it):
# requests, streams, swaps, queues, multipart, WebSockets, reload, shutdown.
VALGRIND_TESTS ?= 01-chat 02-streaming 04-swap 12-queue 15-surface 17-websocket 19-upstream-wire 35-reload
valgrind: deps-dev all npm-deps
	MM_BUILD=$(abspath $(BUILD)) MM_VALGRIND=1 node --test --test-concurrency=1 \
	  $(patsubst %,tests/integration/%.test.js,$(VALGRIND_TESTS))

lint: deps-dev
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr -Iinclude --suppress=missingIncludeSystem src tests/fake_backend
	clang-tidy --quiet $(LIB_SRC) src/main.c -- $(filter-out -Werror,$(MM_CFLAGS))

deps: deps-dev
deps-run deps-test deps-dev:
	@./.ci/deps $(@:deps-%=%)

PREFIX  ?= /usr/local
DESTDIR ?=
install: $(DAEMON) $(FAKE)
	install -D -m 0755 $(DAEMON) $(DESTDIR)$(PREFIX)/bin/modelmux
	install -D -m 0755 $(FAKE) $(DESTDIR)$(PREFIX)/libexec/modelmux/demo-backend
	test -e $(DESTDIR)/etc/modelmux/config.yaml || \
	  sed 's|/usr/local/|$(PREFIX)/|g' contrib/etc/modelmux/config.yaml | \
	  install -D -m 0644 /dev/stdin $(DESTDIR)/etc/modelmux/config.yaml
	sed 's|/usr/local/|$(PREFIX)/|g' contrib/systemd/modelmux.service | \
	  install -D -m 0644 /dev/stdin $(DESTDIR)$(PREFIX)/lib/systemd/system/modelmux.service
	install -D -m 0644 config.example.yaml $(DESTDIR)$(PREFIX)/share/doc/modelmux/config.example.yaml
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/modelmux/README.md

clean:
	rm -rf build build-san build-fuzz

# Benchmark (bench/README.md): direct vs modelmux vs nginx vs HAProxy, in one run.
.PHONY: bench
BENCH_LG := $(BUILD)/bench/mm-loadgen

$(BENCH_LG): bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -std=c17 -D_GNU_SOURCE -Wall -Wextra -o $@ $< $(shell pkg-config --cflags --libs libcurl)

bench: all $(BENCH_LG)
	BUILD=$(BUILD) sh bench/run.sh

# Several hosts behind HAProxy (bench/README.md): added latency, failover, requests lost.
# Root (network namespaces) and Debian's haproxy.
.PHONY: bench-multihost
bench-multihost: all $(BENCH_LG)
	MM_BUILD=$(abspath $(BUILD)) node bench/multihost.js

# Soak (bench/README.md, "Soak"): 100 000 requests with swaps and client disconnects against
# the real daemon; fails on any lost request, fd or RssAnon growth, zombie or leftover process.
# Not part of `make test` (a few minutes). SOAK_REQUESTS=… for a shorter run.
.PHONY: soak
soak: all
	MM_BUILD=$(abspath $(BUILD)) node bench/soak.js
