#!/bin/sh
# Install what peekd needs to build, test and run, when it is missing.
# A no-op when everything is present.  Debian 12 packages only, plus the
# npm packages of tests/package.json for the test tooling.
set -eu

PKGS="build-essential pkg-config clang clang-format liblmdb-dev lmdb-utils
libmicrohttpd-dev libcjson-dev libcurl4-openssl-dev libroaring-dev
libxxhash-dev libdeflate-dev zlib1g-dev check libsubunit-dev ffmpeg nodejs sqlite3 libsqlite3-dev
chromium wrk time curl"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
# nodejs may come from another source that already provides node and npm.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | tr ' ' '\n' | grep -v '^nodejs$' | tr '\n' ' ')
elif ! command -v npm >/dev/null 2>&1; then
    missing="$missing npm"
fi
missing=$(echo "$missing" | tr -s ' ' | sed 's/^ //;s/ $//')

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: missing Debian packages: $missing" >&2
        echo "deps: run 'make deps' as root, or: apt-get install $missing" >&2
        exit 1
    fi
    echo "deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
fi

# Test tooling from npm (graphql-js, hls.js, ...), installed once per lock.
if [ -f tests/package-lock.json ]; then
    stamp=tests/node_modules/.peekd-lock
    if [ ! -f "$stamp" ] || ! cmp -s tests/package-lock.json "$stamp"; then
        echo "deps: npm ci in tests/"
        npm ci --prefix tests --no-audit --no-fund --loglevel=error
        cp tests/package-lock.json "$stamp"
    fi
fi
