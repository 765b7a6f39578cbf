#!/bin/sh
# bench_hls.sh - time to first complete HLS segment with the ffmpeg argument
# shapes peekd's hls/ uses (hls_mgr.c build_argv): remux (copy), 720p and
# 1080p transcode from 0, and a far seek (restart at segment 10).  A segment
# n counts as complete when seg_<n+1> appears (peekd's publish rule).
# Figures, not tests.  Targets: remux < 0.3 s, 720p < 1.0 s, 1080p < 1.5 s.
set -eu
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
SRC="$T/src.mp4"
echo "generating 60 s 1080p30 H.264/AAC source ..."
ffmpeg -nostdin -v error -f lavfi -i testsrc2=size=1920x1080:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 60 \
    -c:v libx264 -preset ultrafast -g 60 -pix_fmt yuv420p -c:a aac -shortest "$SRC"

now() { date +%s.%N; }

# run NAME START(segment) VIDEO-ARGS...
run() {
    name=$1; n=$2; shift 2
    d="$T/$name"; mkdir -p "$d"
    ss=$(echo "$n * 4" | bc)
    times=$(seq $((n + 1)) $((n + 4)) | awk '{ sep = (NR > 1) ? "," : ""; printf "%s%.4f", sep, $1 * 4 + 1 - 0.0005 }')
    t0=$(now)
    ffmpeg -hide_banner -nostdin -loglevel error -y -ss "$ss" -i "$SRC" \
        -map 0:v:0 -map '0:a:0?' -sn -dn "$@" -c:a aac -ac 2 -b:a 128k \
        -copyts -start_at_zero -avoid_negative_ts disabled -output_ts_offset 1 \
        -f segment -segment_format mpegts -segment_start_number "$n" \
        -segment_times "$times" "$d/seg_%d.ts" &
    pid=$!
    while [ ! -e "$d/seg_$((n + 1)).ts" ]; do sleep 0.01; done
    t1=$(now)
    kill $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    printf '%-28s %.3f s\n' "$name" "$(echo "$t1 - $t0" | bc)"
}

X264="-c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -profile:v high \
-x264opts subme=0:me_range=16:rc_lookahead=10:me=hex:open_gop=0 \
-sc_threshold 0 -force_key_frames expr:gte(t,n_forced*4)"

for i in 1 2 3; do
    run "remux-first-$i" 0 -c:v copy
    run "720p-first-$i" 0 $X264 -vf scale=-2:720
    run "1080p-first-$i" 0 $X264
    run "720p-far-seek-$i" 10 $X264 -vf scale=-2:720
    run "remux-far-seek-$i" 10 -c:v copy
done
