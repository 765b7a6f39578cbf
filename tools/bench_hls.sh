#!/bin/sh
# bench_hls.sh [build-dir] - time to first HLS segment through peekd itself
# (make bench calls it last; not part of make test).  A 60 s 1080p30
# H.264/AAC source is served by the fake Stash with --media-dir, synced,
# and for every case a fresh `peekd serve` (empty cache, nothing running)
# answers: the master playlist (ffprobe), the variant playlist (the copy
# variant's keyframe scan), then the timed segment request — the wait a
# player sees after its playlists.  Cases: remux (copy), 720p and 1080p
# from segment 0, and far seeks (segment 20, i.e. 40 s).
# Targets (issue 6): remux < 0.3 s, 720p < 1.0 s, 1080p < 1.5 s.
# BENCH_HLS_ROUNDS (3) repetitions.  Prints the load average first: figures
# taken on a loaded machine are not comparable.
set -eu
B=${1:-build/release}
PEEKD=$PWD/$B/peekd
ROUNDS=${BENCH_HLS_ROUNDS:-3}
T=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

echo "== bench_hls: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$T/media"
echo "generating 60 s 1080p30 H.264/AAC source ..."
ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=1920x1080:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 60 \
    -c:v libx264 -preset ultrafast -g 60 -pix_fmt yuv420p -c:a aac -shortest \
    "$T/media/src.mp4"

node tests/fake-stash/server.mjs --port 0 --scenes 3 --seed 1 \
    --media-dir "$T/media" >"$T/fake.log" 2>&1 &
pids="$pids $!"
until grep -q 'listening on' "$T/fake.log"; do sleep 0.05; done
STASH=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$T/fake.log" | head -1)
"$PEEKD" sync --data "$T/store" --stash-url "$STASH" --full \
    --log-level warn >/dev/null 2>&1

# case NAME RUNG SEGMENT: prints the time of the segment request.
case_() {
    name=$1 rung=$2 seg=$3
    rm -rf "$T/cache" "$T/serve.log"
    "$PEEKD" serve --data "$T/store" --listen 127.0.0.1:0 \
        --path-map "/data/media=$T/media" --cache-dir "$T/cache" \
        --log-level warn >"$T/serve.log" 2>&1 &
    spid=$!
    until grep -q 'listening on' "$T/serve.log"; do sleep 0.01; done
    U=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$T/serve.log" | head -1)
    curl -sf -o /dev/null "$U/api/scene/1/hls/master.m3u8"
    pl=$(curl -sf -o /dev/null -w '%{time_total}' \
        "$U/api/scene/1/hls/$rung/index.m3u8")
    t=$(curl -sf -o /dev/null -w '%{time_total}' \
        "$U/api/scene/1/hls/$rung/$seg.ts")
    kill "$spid"
    wait "$spid" 2>/dev/null || true
    printf '%-16s segment %s s   (variant playlist %s s)\n' "$name" "$t" "$pl"
}

for i in $(seq 1 "$ROUNDS"); do
    case_ "remux-first" copy 0
    case_ "720p-first" 720p 0
    case_ "1080p-first" 1080p 0
    case_ "remux-far" copy 20
    case_ "720p-far" 720p 20
    case_ "1080p-far" 1080p 20
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
