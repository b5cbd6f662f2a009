# modelmux — see README.md. Targets: all run test check valgrind lint deps clean.

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
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_RUN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%-replay)

DAEMON   := $(BUILD)/modelmux
FAKE     := $(BUILD)/mm-fake-backend
CONFIG   ?= config.example.yaml

.PHONY: all run test unit integration fuzz-replay check valgrind lint deps clean npm-deps install

all: $(DAEMON) $(FAKE)

$(BUILD)/obj/%.o: src/%.c $(wildcard include/modelmux/*.h) | $(BUILD)/obj
	@echo "  CC      $<"
	@$(CC) $(MM_CFLAGS) -c -o $@ $<

$(BUILD)/libmodelmux.a: $(LIB_OBJ)
	@$(AR) rcs $@ $^

$(DAEMON): src/main.c $(BUILD)/libmodelmux.a
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -o $@ $< $(BUILD)/libmodelmux.a $(LDLIBS)

# The fake/demo backend is a test tool: it may use MHD's own threads.
$(FAKE): tests/fake_backend/fake_backend.c | $(BUILD)
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -o $@ $< $(LDLIBS) -lpthread

$(BUILD)/tests/%: tests/unit/%.c tests/unit/check.h $(BUILD)/libmodelmux.a | $(BUILD)/tests
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libmodelmux.a $(LDLIBS)

# Fuzz harnesses replay their seed corpora in `make test` (a tiny main drives them).
$(BUILD)/fuzz/%-replay: fuzz/%.c fuzz/replay_main.c $(BUILD)/libmodelmux.a | $(BUILD)/fuzz
	@echo "  LINK    $@"
	@$(CC) $(MM_CFLAGS) -o $@ $< fuzz/replay_main.c $(BUILD)/libmodelmux.a $(LDLIBS)

$(BUILD) $(BUILD)/obj $(BUILD)/tests $(BUILD)/fuzz:
	mkdir -p $@

run: deps all
	$(DAEMON) -c $(CONFIG)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

fuzz-replay: $(FUZZ_RUN)
	@set -e; for f in $(FUZZ_RUN); do n=$$(basename $$f -replay); echo "== $$n"; $$f fuzz/corpus/$${n#fuzz_}; done

npm-deps:
	@test -d tests/integration/node_modules/openai || (cd tests/integration && npm install --no-audit --no-fund --silent)

integration: all npm-deps
	MM_BUILD=$(abspath $(BUILD)) MM_SANITIZE=$(MM_SANITIZE) node --test --test-concurrency=2 tests/integration/

test: all unit fuzz-replay integration

check:
	$(MAKE) BUILD=build-san OPT='-O1 -g -fno-omit-frame-pointer' \
	  SAN='-fsanitize=address,undefined -fno-sanitize-recover=all' MM_SANITIZE=1 test

valgrind: all
	MM_BUILD=$(abspath $(BUILD)) MM_VALGRIND=1 node --test --test-concurrency=1 tests/integration/

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr -Iinclude --suppress=missingIncludeSystem src tests/fake_backend
	clang-tidy --quiet $(LIB_SRC) src/main.c -- $(filter-out -Werror,$(MM_CFLAGS))

deps:
	@./.ci/deps

PREFIX  ?= /usr/local
DESTDIR ?=
install: $(DAEMON)
	install -D -m 0755 $(DAEMON) $(DESTDIR)$(PREFIX)/bin/modelmux
	install -D -m 0644 contrib/systemd/modelmux.service $(DESTDIR)$(PREFIX)/lib/systemd/system/modelmux.service
	install -D -m 0644 config.example.yaml $(DESTDIR)$(PREFIX)/share/doc/modelmux/config.example.yaml
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/modelmux/README.md

clean:
	rm -rf build build-san

# Benchmark (bench/README.md): direct vs modelmux vs nginx vs HAProxy, in one run.
.PHONY: bench
BENCH_LG := $(BUILD)/bench/mm-loadgen

$(BENCH_LG): bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -std=c17 -D_GNU_SOURCE -Wall -Wextra -o $@ $< $(shell pkg-config --cflags --libs libcurl)

bench: all $(BENCH_LG)
	BUILD=$(BUILD) sh bench/run.sh

# Soak (bench/README.md, "Soak"): 100 000 requests with swaps and client disconnects against
# the real daemon; fails on any lost request, fd or RssAnon growth, zombie or leftover process.
# Not part of `make test` (a few minutes). SOAK_REQUESTS=… for a shorter run.
.PHONY: soak
soak: all
	MM_BUILD=$(abspath $(BUILD)) node bench/soak.js
