/*
 * hls_testutil.h - helpers shared by the hls/ and api video tests: test
 * videos generated with ffmpeg lavfi at test time (never committed), a
 * fake scene record pointing at one, ffprobe packet listings, and an
 * RFC 8216 media playlist checker.  Header-only (static functions).
 */
#pragma once

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/testutil.h"

#include "kv/kv.h"

/* A temp dir made outside any test (the media shared by all tests),
 * removed at exit by the process that made it. */
static char ht_dir_buf[4096];
static pid_t ht_dir_owner;
static inline void ht_dir_cleanup(void)
{
    if (getpid() == ht_dir_owner)
        tu_rmrf(ht_dir_buf);
}
static inline const char *ht_media_dir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(ht_dir_buf, sizeof ht_dir_buf, "%s/peekd-media-XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(ht_dir_buf)) {
        perror("mkdtemp");
        exit(1);
    }
    ht_dir_owner = getpid();
    atexit(ht_dir_cleanup);
    return ht_dir_buf;
}

/* Runs a shell command line built by the test (fixed strings and temp
 * paths only); returns its exit status. */
static inline int ht_sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs cmd and returns its stdout (malloc'd, NUL-terminated) or NULL. */
static inline char *ht_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!p)
        return NULL;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 131072;
            buf = realloc(buf, cap);
            if (!buf)
                break;
        }
        size_t n = fread(buf + len, 1, 65536, p);
        if (n == 0)
            break;
        len += n;
    }
    if (pclose(p) != 0 || !buf) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* Generates a test video: lavfi testsrc2 (+ sine) with extra ffmpeg
 * arguments (codecs, container options).  Usable outside a test (no
 * ck_assert); exits the process on failure. */
static inline void ht_gen(const char *out, const char *size, const char *rate,
                          double secs, bool audio, const char *args)
{
    char cmd[10000];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=%s:rate=%s "
             "%s -t %g %s %s '%s'",
             size, rate,
             audio ? "-f lavfi -i sine=frequency=440:sample_rate=48000" : "",
             secs, args, audio ? "-shortest" : "", out);
    if (ht_sh(cmd) != 0) {
        fprintf(stderr, "generating %s failed: %s\n", out, cmd);
        exit(1);
    }
}

/* A scene record whose files[0] describes the video at stash_path.
 * Strings point at static storage / the arguments (they must outlive the
 * scene). */
struct ht_scene {
    struct kv_scene sc;
    struct kv_file f;
};

static inline struct kv_str ht_str(const char *s)
{
    struct kv_str k = {s, s ? (uint32_t)strlen(s) : 0};
    return k;
}

static inline void ht_scene_init(struct ht_scene *h, uint64_t id,
                                 const char *stash_path, double duration,
                                 const char *format, const char *vcodec,
                                 const char *acodec, int w, int hgt, double fps)
{
    memset(h, 0, sizeof *h);
    h->sc.id = id;
    h->sc.n_files = 1;
    h->sc.files = &h->f;
    h->f.id = id;
    h->f.path = ht_str(stash_path);
    h->f.format = ht_str(format);
    h->f.video_codec = ht_str(vcodec);
    h->f.audio_codec = ht_str(acodec);
    h->f.duration = duration;
    h->f.frame_rate = fps;
    h->f.width = w;
    h->f.height = hgt;
}

/* First video packet of a TS segment: pts and whether it is a keyframe. */
static inline bool ht_first_video(const char *seg, double *pts, bool *key)
{
    char cmd[8800];
    char *out;
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -select_streams v:0 -show_entries "
             "packet=pts_time,flags -of csv=p=0 -read_intervals '%%+#1' '%s'",
             seg);
    out = ht_capture(cmd);
    if (!out)
        return false;
    *pts = strtod(out, NULL);
    *key = strchr(out, 'K') != NULL;
    free(out);
    return true;
}

/* Decodes file fully (only the video when video_only): true when ffmpeg
 * reports no error at all. */
static inline bool ht_decodes_clean(const char *file, bool video_only)
{
    char cmd[8800];
    char *out;
    bool ok;
    snprintf(cmd, sizeof cmd,
             "ffmpeg -nostdin -v error -i '%s' %s -f null - 2>&1", file,
             video_only ? "-map 0:v" : "");
    out = ht_capture(cmd);
    ok = out && out[0] == '\0';
    if (out && out[0])
        fprintf(stderr, "decode errors in %s: %.500s\n", file, out);
    free(out);
    return ok;
}

/* DTS of the first stream of kind ("v" or "a") of file strictly
 * increasing, except for steps back of at most slack seconds (the restart
 * seam check).  OUT *count: packets. */
static inline bool ht_monotonic(const char *file, const char *kind,
                                double slack, int *count)
{
    char cmd[8800];
    char *out, *p;
    double prev = -1e18;
    bool ok = true;
    int n = 0;
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -select_streams %s:0 -show_entries "
             "packet=dts_time -of csv=p=0 '%s'",
             kind, file);
    out = ht_capture(cmd);
    if (!out)
        return false;
    for (p = out; *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p) {
            p++;
            continue;
        }
        if (v <= prev && (slack <= 0 || v < prev - slack)) {
            fprintf(stderr, "non-monotonic dts %f after %f\n", v, prev);
            ok = false;
        }
        if (v > prev)
            prev = v;
        n++;
        p = end;
    }
    free(out);
    *count = n;
    return ok;
}

/* Checks a media playlist against RFC 8216's VOD rules; returns the
 * number of segments and their EXTINF sum. */
static inline void ht_check_playlist(const char *pl, double duration,
                                     double frame, int *nseg)
{
    const char *p = pl;
    int target = -1, n = 0, version = -1;
    double sum = 0;
    bool endlist = false, vod = false;
    ck_assert_msg(strncmp(pl, "#EXTM3U\n", 8) == 0, "EXTM3U first");
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        ck_assert_msg(!endlist, "ENDLIST is not the last tag");
        if (strncmp(p, "#EXT-X-TARGETDURATION:", 22) == 0)
            target = (int)strtol(p + 22, NULL, 10);
        else if (strncmp(p, "#EXT-X-VERSION:", 15) == 0)
            version = (int)strtol(p + 15, NULL, 10);
        else if (strncmp(p, "#EXT-X-PLAYLIST-TYPE:VOD", 24) == 0)
            vod = true;
        else if (strncmp(p, "#EXTINF:", 8) == 0) {
            double d = strtod(p + 8, NULL);
            ck_assert_msg(target > 0, "TARGETDURATION before EXTINF");
            ck_assert_msg(lround(d) <= target, "EXTINF %f > target %d", d,
                          target);
            ck_assert_msg(d > 0, "EXTINF positive");
            sum += d;
            n++;
        } else if (strncmp(p, "#EXT-X-ENDLIST", 14) == 0)
            endlist = true;
        p += len + (eol ? 1 : 0);
    }
    ck_assert(version >= 3);
    ck_assert(vod);
    ck_assert(endlist);
    ck_assert_msg(fabs(sum - duration) <= frame, "EXTINF sum %f vs %f", sum,
                  duration);
    *nseg = n;
}
