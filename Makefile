# Liaison: one Makefile for the broker, the library, the CLI, tests and tools.
# Targets: all test test-asan bench fuzz fuzz-run demo install deps format clean

BUILD   ?= build
CC      ?= cc
PREFIX  ?= /usr/local
VERSION := 0.1.0
SOMAJOR := 0

PKGS     = libzmq libczmq libprotobuf-c openssl sqlite3
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)

SAN_FLAGS ?=
OPT     ?= -O2 -g
ALL_CFLAGS = $(OPT) -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -fPIC \
             -fvisibility=hidden -D_GNU_SOURCE $(SAN_FLAGS) $(CFLAGS)
ALL_CPPFLAGS = -I$(BUILD)/gen -Iclient/wire -Iclient -Ibroker -Itests $(PKG_CFLAGS) $(CPPFLAGS)
ALL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)

GEN      = $(BUILD)/gen/liaison.pb-c.c $(BUILD)/gen/liaison.pb-c.h
WIRE_SRC = client/wire/frame.c client/wire/tls.c client/wire/conn.c client/wire/codec.c \
           client/wire/ackproof.c client/wire/sqldb.c
LIB_SRC  = client/session.c client/message.c client/verify.c client/state.c
CLI_SRC  = $(wildcard client/cli/*.c)
BROKER_SRC = $(filter-out broker/main.c,$(wildcard broker/*.c))
UNIT_SRC = $(wildcard tests/unit/*.c)
INTEG_SRC = $(wildcard tests/integration/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
WIRE_OBJ = $(call obj,$(WIRE_SRC)) $(BUILD)/obj/gen/liaison.pb-c.o
LIB_OBJ  = $(call obj,$(LIB_SRC)) $(WIRE_OBJ)
BROKER_OBJ = $(call obj,$(BROKER_SRC))

LIBA  = $(BUILD)/libliaison.a
LIBSO = $(BUILD)/libliaison.so.$(VERSION)
LIBSONAME = libliaison.so.$(SOMAJOR)

all: $(BUILD)/liaisond $(BUILD)/liaison $(LIBA) $(LIBSO) $(BUILD)/liaison.pc

.PHONY: all deps test test-asan bench bench-run fuzz fuzz-build fuzz-run demo install format clean \
        check-run check-run-asan

deps:
	@sh deploy/deps.sh

$(BUILD)/gen/liaison.pb-c.c $(BUILD)/gen/liaison.pb-c.h: proto/liaison.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -Iproto proto/liaison.proto

$(BUILD)/obj/gen/liaison.pb-c.o: $(BUILD)/gen/liaison.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -Wno-error -c $< -o $@

$(BUILD)/obj/%.o: %.c $(GEN) $(wildcard client/wire/*.h client/*.h client/cli/*.h broker/*.h tests/*.h tests/integration/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIBSO): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(LIBSONAME) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)
	ln -sf libliaison.so.$(VERSION) $(BUILD)/$(LIBSONAME)
	ln -sf libliaison.so.$(VERSION) $(BUILD)/libliaison.so

$(BUILD)/liaison.pc: Makefile
	@mkdir -p $(BUILD)
	printf 'prefix=$(PREFIX)\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: liaison\nDescription: Liaison client library (cross-border police message broker)\nVersion: $(VERSION)\nRequires.private: libzmq libprotobuf-c openssl\nLibs: -L$${libdir} -lliaison\nCflags: -I$${includedir}\n' > $@

$(BUILD)/liaisond: $(call obj,broker/main.c) $(BROKER_OBJ) $(WIRE_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The CLI links the shared library: it can only use what libliaison exports.
$(BUILD)/liaison: $(call obj,$(CLI_SRC)) $(LIBSO)
	$(CC) $(ALL_LDFLAGS) -o $@ $(call obj,$(CLI_SRC)) -L$(BUILD) -l:libliaison.so.$(VERSION) \
	    -Wl,-rpath,'$$ORIGIN' $(PKG_LIBS)

$(BUILD)/check_liaison: $(call obj,tests/check_liaison.c $(UNIT_SRC) $(INTEG_SRC)) $(BROKER_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CHECK_LIBS)

$(BUILD)/bench_relay: $(call obj,tests/bench/bench_relay.c) $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm -lpthread

$(BUILD)/bench_policy: $(call obj,tests/bench/bench_policy.c broker/rules.c) $(LIBA)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/bench_durable: $(call obj,tests/bench/bench_durable.c) $(LIBA) $(BUILD)/fsync_count.so
	$(CC) $(ALL_LDFLAGS) -o $@ $(call obj,tests/bench/bench_durable.c) $(LIBA) $(PKG_LIBS) -lm -lpthread

# LD_PRELOAD shim for bench_durable: counts fsync and fdatasync per process.
$(BUILD)/fsync_count.so: tests/bench/fsync_count.c
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -shared $(ALL_LDFLAGS) -o $@ $< -ldl

$(BUILD)/test-pki/.done: tests/integration/make-test-pki.sh deploy/pki/liaison-pki
	bash tests/integration/make-test-pki.sh $(BUILD)/test-pki >/dev/null
	touch $@

# The README's test command: installs what is missing, builds, runs Check.
test: deps
	@$(MAKE) --no-print-directory check-run

check-run: all $(BUILD)/check_liaison $(BUILD)/test-pki/.done
	LIAISON_BUILD=$(BUILD) LIAISON_PKI=$(BUILD)/test-pki $(BUILD)/check_liaison

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" check-run-asan

check-run-asan: all $(BUILD)/check_liaison $(BUILD)/test-pki/.done
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	CK_TIMEOUT_MULTIPLIER=4 LIAISON_BUILD=$(BUILD) LIAISON_PKI=$(BUILD)/test-pki \
	    $(BUILD)/check_liaison

bench: deps
	@$(MAKE) --no-print-directory bench-run

bench-run: all $(BUILD)/bench_relay $(BUILD)/bench_policy $(BUILD)/bench_durable \
           $(BUILD)/test-pki/.done
	$(BUILD)/bench_policy
	LIAISON_BUILD=$(BUILD) LIAISON_PKI=$(BUILD)/test-pki $(BUILD)/bench_relay
	LIAISON_BUILD=$(BUILD) $(BUILD)/bench_durable

# libFuzzer targets, built with clang into build/fuzz.
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS = -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
              -I$(BUILD)/gen -Iclient/wire -Iclient -Ibroker $(PKG_CFLAGS)
FUZZ_WIRE = $(WIRE_SRC) $(BUILD)/gen/liaison.pb-c.c
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build

fuzz-build: $(GEN)
	@mkdir -p $(BUILD)/fuzz
	clang $(FUZZ_CFLAGS) -o $(BUILD)/fuzz/fuzz_frame tests/fuzz/fuzz_frame.c $(FUZZ_WIRE) $(PKG_LIBS)
	clang $(FUZZ_CFLAGS) -o $(BUILD)/fuzz/fuzz_config tests/fuzz/fuzz_config.c broker/config.c $(PKG_LIBS)
	clang $(FUZZ_CFLAGS) -o $(BUILD)/fuzz/fuzz_rules tests/fuzz/fuzz_rules.c broker/rules.c $(FUZZ_WIRE) $(PKG_LIBS)
	clang $(FUZZ_CFLAGS) -o $(BUILD)/fuzz/fuzz_ack tests/fuzz/fuzz_ack.c $(FUZZ_WIRE) $(PKG_LIBS)

# A short fuzzing run (CI): FUZZ_SECONDS per target.
fuzz-run: fuzz
	@mkdir -p $(BUILD)/fuzz/corpus-frame $(BUILD)/fuzz/corpus-config $(BUILD)/fuzz/corpus-rules \
	    $(BUILD)/fuzz/corpus-ack
	@# Seeds: an Ack of two items and a DELIVERED receipt with a one-step path.
	@printf '\102\073\012\032\012\020\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020\022\006\144\145\055\142\153\141\012\031\012\020\021\022\023\024\025\026\027\030\031\032\033\034\035\036\037\040\022\005\151\164\055\160\163\020\002\030\001' > $(BUILD)/fuzz/corpus-ack/ack
	@printf '\112\113\012\020\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020\022\006\144\145\055\142\153\141\030\002\060\001\130\001\140\002\152\040\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\162\005\146\162\055\160\156' > $(BUILD)/fuzz/corpus-ack/receipt
	cp deploy/liaisond.cfg $(BUILD)/fuzz/corpus-config/
	cp deploy/liaison.rules tests/integration/test.rules $(BUILD)/fuzz/corpus-rules/
	$(BUILD)/fuzz/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -max_len=70000 $(BUILD)/fuzz/corpus-frame
	$(BUILD)/fuzz/fuzz_config -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(BUILD)/fuzz/corpus-config
	$(BUILD)/fuzz/fuzz_rules -max_total_time=$(FUZZ_SECONDS) -max_len=16384 $(BUILD)/fuzz/corpus-rules
	$(BUILD)/fuzz/fuzz_ack -max_total_time=$(FUZZ_SECONDS) -max_len=70000 $(BUILD)/fuzz/corpus-ack

demo: deps
	@$(MAKE) --no-print-directory all
	@bash tests/integration/demo.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/liaisond $(BUILD)/liaison deploy/pki/liaison-pki $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libliaison.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(LIBSONAME)
	ln -sf libliaison.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libliaison.so
	install -m 644 client/liaison.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/liaison.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

format:
	clang-format -i $(WIRE_SRC) client/wire/*.h client/*.c client/*.h client/cli/*.c \
	    broker/*.c broker/*.h tests/unit/*.c tests/integration/*.c tests/*.h

clean:
	rm -rf build
