#!/bin/sh
# Syncs one Stash with two peekd binaries and compares the two stores,
# database by database (mdb_dump), to show that a change to the sync path
# writes byte-identical records:
#
#   tools/sync_compare.sh OLD_PEEKD NEW_PEEKD STASH_URL [WORKDIR]
#
# Each binary runs `peekd sync --full` into an empty store of its own, then
# every named database except `sync` (it holds wall-clock times) is dumped
# and compared, without meta's `index_gen` (a random value by design).  Prints one line per database and the CPU time (user, sys)
# of each sync; exits 1 on the first difference.  Extra `peekd sync`
# options can be passed in SYNC_OPTS (e.g. "--page-size 500").  Two
# binaries on either side of a record version change (scene records became
# version 2 at 8f2b1a3) differ in `scenes` by design; the other databases
# must still match.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: $0 OLD_PEEKD NEW_PEEKD STASH_URL [WORKDIR]" >&2
    exit 2
fi
OLD=$1
NEW=$2
URL=$3
W=${4:-${TMPDIR:-/tmp}/peekd-sync-compare}
DBS="scenes idmap docmap entities reverse meta postings sorts columns text"

rm -rf "$W"
mkdir -p "$W"
for side in old new; do
    if [ "$side" = old ]; then bin=$OLD; else bin=$NEW; fi
    # shellcheck disable=SC2086
    /usr/bin/time -f "$side: %e s wall, %U s user, %S s sys, %M KiB" \
        "$bin" sync --data "$W/$side" --stash-url "$URL" --full \
        --log-level warn ${SYNC_OPTS:-} >"$W/$side.log" 2>&1 || {
        cat "$W/$side.log" >&2
        exit 1
    }
    tail -n 1 "$W/$side.log"
done
status=0
for db in $DBS; do
    for side in old new; do
        # the header carries the map size, which may differ: drop it
        # (index_gen, hex-encoded, and the value line after it)
        mdb_dump -s "$db" "$W/$side" | sed '1,/^HEADER=END$/d' |
            sed '/^ 696e6465785f67656e$/,+1d' >"$W/$side.$db"
    done
    if cmp -s "$W/old.$db" "$W/new.$db"; then
        echo "same      $db ($(wc -l <"$W/new.$db") lines)"
    else
        echo "DIFFERENT $db"
        status=1
    fi
done
exit "$status"
