#!/bin/sh
# Runs every test of peekd against the binaries of build variant dir $1
# (build/release or build/asan): the C unit tests, the fuzz regression
# replays, the Node tests (fake Stash, conformance, integration over
# loopback, browser).  Prints one line per test program and a closing
# "N passed, N failed" line; exits non-zero when anything failed.
set -u
B=${1:-build/release}
export PEEKD_BIN="$PWD/$B/peekd"
export PEEKD_BUILD="$PWD/$B"
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120}
pass=0
fail=0
failed=""
logdir="$B/test-logs"
mkdir -p "$logdir"

run() { # name, command...
    name=$1
    shift
    start=$(date +%s)
    if "$@" >"$logdir/$name.log" 2>&1; then
        pass=$((pass + 1))
        echo "PASS $name ($(($(date +%s) - start))s)"
    else
        fail=$((fail + 1))
        failed="$failed $name"
        echo "FAIL $name ($(($(date +%s) - start))s)"
        tail -n 60 "$logdir/$name.log" | sed 's/^/    /'
    fi
}

for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done

for f in "$B"/fuzz-replay/fuzz_*; do
    [ -x "$f" ] || continue
    n=$(basename "$f")
    n=${n#fuzz_}
    run "fuzz-replay-$n" "$f" tests/fuzz/corpus/"$n" tests/fuzz/regress/"$n"
done

if [ -d tests/js ] && ls tests/js/*.test.mjs >/dev/null 2>&1; then
    for t in tests/js/*.test.mjs; do
        run "js-$(basename "$t" .test.mjs)" node --test --test-reporter=spec "$t"
    done
fi

# The benchmark's identical-answer check at a small size: peekd, SQLite
# with Peek's schema and SQL, and a tuned SQLite must agree on every query.
if [ -x "$B/bench/bench_peek" ]; then
    run bench-smoke env BENCH_SCENES=2000 BENCH_ITERS=3 BENCH_SQLITE_ITERS=1 \
        BENCH_DIR="$B/bench-smoke" sh tools/bench.sh "$B"
fi

echo
if [ "$fail" -ne 0 ]; then
    echo "failed:$failed (logs in $logdir)"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
