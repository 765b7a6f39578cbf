#!/bin/sh
# index_digest.sh STORE-DIR [STORE-DIR...] - one SHA-256 per database
# `peekd reindex` writes (postings, text, sorts, columns, and the reverse
# index) of each store, over mdb_dump's output: every key and value, byte
# for byte, in key order (independent of page layout).  Two stores built
# from the same records by two versions of `peekd reindex` must print the
# same lines; an incrementally maintained store differs from a rebuilt one
# only in sorts and columns (dictionary positions are gap numbers:
# INDEX.md).  Needs mdb_dump (lmdb-utils) and a store nothing is writing
# to.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 STORE-DIR..." >&2; exit 2; }
for store in "$@"; do
    [ -f "$store/data.mdb" ] || { echo "$0: no data.mdb in $store" >&2; exit 1; }
    for db in postings text sorts columns reverse; do
        sum=$(mdb_dump -s "$db" "$store" | sha256sum | cut -c1-64)
        printf '%s %-8s %s\n' "$sum" "$db" "$store"
    done
done
