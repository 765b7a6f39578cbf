# peekd — GNU make build.
#
#   make            build/peekd (release variant)
#   make test       install missing packages, build, run every test
#   make asan       the same tests under ASan+UBSan (build/asan/)
#   make lint       clang-format check + banned-function/prefix check
#   make run        build, then start the demo (fake Stash + sync + serve)
#   make bench      benchmark against SQLite (not part of make test)
#   make bench-engine  in-process engine p50/p99 at 100k and 1M scenes
#
# Objects go to build/<variant>/ so variants never mix.  Honours CC, CFLAGS,
# CPPFLAGS, LDFLAGS, LDLIBS.  WERROR=0 relaxes -Werror locally.

VARIANT ?= release
B       := build/$(VARIANT)
CC      ?= cc
WERROR  ?= 1

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wvla -Wnull-dereference \
        -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif

OPT_release := -O2 -g
# -Wformat-truncation is kept in release builds; at -O1 with sanitizers
# gcc's range analysis reports false positives, so the asan variant skips it.
OPT_asan    := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
               -fno-omit-frame-pointer -Wno-format-truncation
OPT_tsan    := -O1 -g -fsanitize=thread -Wno-format-truncation
OPT_debug   := -O0 -g
OPT_fuzz    := -O1 -g -fsanitize=fuzzer-no-link,address,undefined
LDOPT_asan  := -fsanitize=address,undefined
LDOPT_fuzz  := -fsanitize=address,undefined
LDOPT_tsan  := -fsanitize=thread

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -I. -I$(B)/gen -MMD -MP \
               $(OPT_$(VARIANT)) $(WARN)
ALL_CFLAGS  := $(BASE_CFLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS := $(LDOPT_$(VARIANT)) $(LDFLAGS)
# Literal -l flags, like the others (tests/js/ops_docker.test.mjs maps each
# to its runtime package): libdeflate's .pc says just -ldeflate, no cflags.
SYSLIBS     := -lmicrohttpd -lcurl -lcjson -llmdb -lroaring -lxxhash \
               -ldeflate -lpthread -lm $(LDLIBS)
CHECK_LIBS  := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)

# Modules, lowest layer last.  A test or binary links the modules it needs.
MODULES := api hls sync index kv common
mod_srcs = $(wildcard $(1)/*.c)
mod_objs = $(patsubst %.c,$(B)/%.o,$(call mod_srcs,$(1)))
mod_lib  = $(B)/lib$(1).a

DEPS_common := common
DEPS_kv     := kv common
DEPS_index  := index kv common
DEPS_sync   := sync index kv common
DEPS_hls    := hls index kv common
DEPS_api    := api hls sync index kv common
DEPS_peekd  := api hls sync index kv common

libs_for = $(foreach m,$(DEPS_$(1)),$(if $(call mod_srcs,$(m)),$(call mod_lib,$(m))))

# sync/queries/*.graphql are embedded as C strings.
QUERY_FILES := $(sort $(wildcard sync/queries/*.graphql))
GEN_QUERIES := $(B)/gen/sync_queries.c

PHONY_EXTRA := tsan
.PHONY: all test asan tsan lint run bench bench-engine bench-smoke deps clean fuzz check-c \
        test-c test-js test-fuzz-replay format
all: build/peekd

build/peekd: $(B)/peekd
	@mkdir -p build
	cp $< $@

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(GEN_QUERIES): $(QUERY_FILES) tools/embed_queries.sh
	@mkdir -p $(dir $@)
	sh tools/embed_queries.sh $(QUERY_FILES) > $@.tmp && mv $@.tmp $@

$(B)/gen/sync_queries.o: $(GEN_QUERIES)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

define module_rule
$(call mod_lib,$(1)): $(call mod_objs,$(1)) $(if $(filter sync,$(1)),$(B)/gen/sync_queries.o)
	@mkdir -p $$(dir $$@)
	rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_rule,$(m))))

CMD_OBJS := $(patsubst %.c,$(B)/%.o,$(wildcard cmd/*.c))
$(B)/peekd: $(CMD_OBJS) $(call libs_for,peekd)
	$(CC) $(ALL_LDFLAGS) -o $@ $(CMD_OBJS) $(call libs_for,peekd) $(SYSLIBS)

# Unit tests: tests/unit/test_<module>[_what].c -> $(B)/tests/test_<...>
UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
TESTLIB_SRCS := $(wildcard tests/lib/*.c)
TESTLIB_OBJS := $(patsubst %.c,$(B)/%.o,$(TESTLIB_SRCS))
test_mod = $(word 2,$(subst _, ,$(1)))

# Extra libraries for one test binary (differential tests against SQLite).
EXTRA_LIBS_test_index_filter := -lsqlite3
# zlib as the independent gzip oracle of the libdeflate decoder.
EXTRA_LIBS_test_sync_gzip := -lz
EXTRA_LIBS_fuzz_gunzip    := -lz

.SECONDEXPANSION:
$(B)/tests/%: $(B)/tests/unit/%.o $(TESTLIB_OBJS) $$(call libs_for,$$(call test_mod,$$*))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(TESTLIB_OBJS) $(call libs_for,$(call test_mod,$*)) $(SYSLIBS) $(CHECK_LIBS) $(EXTRA_LIBS_$*)

# Fuzz targets: replayed over their corpus and regressions without clang.
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAY_BINS := $(patsubst tests/fuzz/%.c,$(B)/fuzz-replay/%,$(FUZZ_SRCS))
$(B)/fuzz-replay/%: $(B)/tests/fuzz/%.o $(B)/tests/fuzz/replay_main.o $(call libs_for,peekd)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SYSLIBS) $(EXTRA_LIBS_$*)

build-tests: $(B)/peekd $(UNIT_BINS) $(FUZZ_REPLAY_BINS) $(B)/bench/bench_peek
.PHONY: build-tests

# Benchmark programs (make bench; not part of make test).
BENCH_CFLAGS := $(filter-out -Werror,$(ALL_CFLAGS)) -Wno-format-truncation
$(B)/bench/bench_peek: tests/bench/bench_peek.c tests/bench/bench_sqlite.c \
		tests/bench/bench_sqlite.h $(call libs_for,common)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(ALL_LDFLAGS) -o $@ tests/bench/bench_peek.c \
	  tests/bench/bench_sqlite.c $(call libs_for,common) -lsqlite3 -lcurl \
	  -lcjson -lm -lpthread

# The engine benchmark (issue 3 item 9): in-process p50/p99 of a fixed
# query mix at 100k and 1M generated scenes (BENCH_ENGINE_SIZES to change).
BENCH_ENGINE_SIZES ?= 100000 1000000
$(B)/bench/bench_index: tests/bench/bench_index.c $(call libs_for,index)
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(ALL_LDFLAGS) -o $@ tests/bench/bench_index.c \
	  $(call libs_for,index) $(SYSLIBS)

bench-engine: $(B)/bench/bench_index
	for n in $(BENCH_ENGINE_SIZES); do $(B)/bench/bench_index $$n || exit 1; done

deps:
	@sh tools/deps.sh

test: deps
	$(MAKE) build-tests all
	sh tools/run_tests.sh $(B)

asan: deps
	$(MAKE) VARIANT=asan build-tests
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh tools/run_tests.sh build/asan

# ThreadSanitizer over the tests whose code runs on several threads (the
# MHD thread pool, per-thread read transactions, the image workers, the
# index caches' slot tables; in test_index_diff, the case "threads": the
# background order builder and the q readers during commits).
TSAN_TESTS := test_kv_store test_api_http test_index_slots
tsan: deps
	$(MAKE) VARIANT=tsan $(addprefix build/tsan/tests/,$(TSAN_TESTS) test_index_diff)
	for t in $(TSAN_TESTS); do \
	  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    CK_FORK=no build/tsan/tests/$$t || exit 1; done
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CK_FORK=no \
	  CK_RUN_CASE=threads build/tsan/tests/test_index_diff

fuzz:
	$(MAKE) VARIANT=fuzz CC=clang build/fuzz/peekd
	sh tools/fuzz.sh build/fuzz

lint:
	sh tools/lint.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

run: deps all
	sh tools/run_demo.sh

bench: deps all $(B)/bench/bench_peek
	sh tools/bench.sh $(B)

bench-smoke: deps all $(B)/bench/bench_peek
	BENCH_SCENES=$${BENCH_SCENES:-20000} BENCH_ITERS=20 sh tools/bench.sh $(B)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
