#!/bin/sh
# `make run`: a demo of peekd.  Unless STASH_URL is set, starts the fake
# Stash with a demo library (100,000 scenes; a few short videos made with
# ffmpeg's lavfi sources in build/demo-media are served as the first
# scenes' files), waits for its ready line, fills the store with
# `peekd sync`, then serves on 127.0.0.1:8080.  Ctrl-C stops both.
#
#   DEMO_SCENES=N   size of the demo library (default 100000)
#   DEMO_DATA=DIR   store directory (default build/demo-data)
#   STASH_URL, STASH_API_KEY: use a real Stash instead of the fake
set -eu

cd "$(dirname "$0")/.."
PEEKD=build/peekd
SCENES=${DEMO_SCENES:-100000}
DATA=${DEMO_DATA:-build/demo-data}
MEDIA=build/demo-media
LISTEN=${PEEKD_LISTEN:-127.0.0.1:8080}
FAKE_PID=
LOG=build/demo-fake.log

cleanup() {
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null || true
        wait "$FAKE_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$PEEKD" ] || { echo "run_demo: $PEEKD missing (make all)" >&2; exit 1; }
mkdir -p build

if [ -z "${STASH_URL:-}" ]; then
    if command -v ffmpeg >/dev/null 2>&1; then
        mkdir -p "$MEDIA"
        i=0
        for spec in "testsrc2=size=1280x720:rate=30" \
                    "smptebars=size=1920x1080:rate=25" \
                    "mandelbrot=size=854x480:rate=30"; do
            i=$((i + 1))
            out="$MEDIA/demo_$i.mp4"
            [ -s "$out" ] && continue
            ffmpeg -nostdin -loglevel error -y -f lavfi -i "$spec" \
                -f lavfi -i "sine=frequency=$((220 * i)):sample_rate=48000" \
                -t 20 -c:v libx264 -preset veryfast -pix_fmt yuv420p \
                -c:a aac -shortest "$out"
        done
        MEDIA_ARGS="--media-dir $MEDIA"
    else
        echo "run_demo: ffmpeg not found; the demo library has no playable files" >&2
        MEDIA_ARGS=
    fi
    [ -d tests/node_modules/graphql ] || npm ci --prefix tests --silent
    # shellcheck disable=SC2086
    node --max-old-space-size=4096 tests/fake-stash/server.mjs --port 0 \
        --scenes "$SCENES" --seed 7 $MEDIA_ARGS >"$LOG" 2>&1 &
    FAKE_PID=$!
    echo "run_demo: starting the fake Stash ($SCENES scenes)..."
    STASH_URL=
    while [ -z "$STASH_URL" ]; do
        if ! kill -0 "$FAKE_PID" 2>/dev/null; then
            echo "run_demo: the fake Stash failed:" >&2
            cat "$LOG" >&2
            exit 1
        fi
        STASH_URL=$(sed -n 's/^fake-stash listening on \(http:[^ ]*\).*/\1/p' "$LOG" | head -n 1)
        [ -n "$STASH_URL" ] || sleep 0.2
    done
    export STASH_URL
    unset STASH_API_KEY || true
    echo "run_demo: fake Stash at $STASH_URL"
fi

echo "run_demo: syncing into $DATA ..."
"$PEEKD" sync --data "$DATA" --stash-url "$STASH_URL"

WEB_ARGS=
[ -f web/index.html ] && WEB_ARGS="--web-dir $PWD/web"
HOST=${LISTEN%:*}
PORT=${LISTEN##*:}
echo
[ -n "$WEB_ARGS" ] && echo "  peekd: open http://$HOST:$PORT/ in a browser"
echo "  peekd: health http://$HOST:$PORT/api/health"
echo "         curl -s -X POST http://$HOST:$PORT/api/library/scenes -d '{\"filter\":{\"per_page\":2}}'"
echo "         metrics: http://$HOST:$PORT/metrics   (Ctrl-C stops everything)"
echo
if [ -n "$FAKE_PID" ]; then
    # Not exec: the trap must stop the fake Stash when serve ends.
    # The fake serves build/demo-media as /data/media/<name>: map it so
    # peekd reads the files directly (direct play and local HLS).
    "$PEEKD" serve --data "$DATA" --listen "$LISTEN" --stash-url "$STASH_URL" \
        --path-map "/data/media=$PWD/$MEDIA" $WEB_ARGS &
    SERVE_PID=$!
    trap 'kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID; exit 130' INT TERM
    wait "$SERVE_PID"
else
    # shellcheck disable=SC2086
    exec "$PEEKD" serve --data "$DATA" --listen "$LISTEN" $WEB_ARGS
fi
