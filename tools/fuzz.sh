#!/bin/sh
# make fuzz: build every tests/fuzz/fuzz_*.c as a libFuzzer binary with
# clang (ASan+UBSan) and run each for FUZZ_SECONDS (default 30) over its
# corpus.  New crashers land in tests/fuzz/ (crash-*): move them to
# tests/fuzz/regress/<name>/ so `make test` replays them.
set -eu
B=${1:-build/fuzz}
secs=${FUZZ_SECONDS:-30}
libs="$B/libapi.a $B/libhls.a $B/libsync.a $B/libindex.a $B/libkv.a $B/libcommon.a"
mkdir -p "$B/fuzzers"
for src in tests/fuzz/fuzz_*.c; do
    n=$(basename "$src" .c)
    name=${n#fuzz_}
    existing=""
    for l in $libs; do [ -f "$l" ] && existing="$existing $l"; done
    # shellcheck disable=SC2086
    clang -std=c11 -D_GNU_SOURCE -I. -I"$B/gen" -g -O1 \
        -fsanitize=fuzzer,address,undefined -o "$B/fuzzers/$n" "$src" \
        $existing -lmicrohttpd -lcurl -lcjson -llmdb -lroaring -lxxhash \
        -ldeflate -lz -lpthread -lm
    mkdir -p "tests/fuzz/corpus/$name" "$B/corpus/$name"
    echo "fuzz: $n for ${secs}s"
    "$B/fuzzers/$n" -max_total_time="$secs" -artifact_prefix=tests/fuzz/ \
        "$B/corpus/$name" "tests/fuzz/corpus/$name"
done
