/*
 * test_hls_play.c - the pure parts of hls/: Range parsing against a
 * brute-force oracle, the direct-play table, the variant ladder, segment
 * boundaries and playlists (RFC 8216 rules), ffprobe output parsing.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "hls/hls.h"
#include "tests/lib/testutil.h"
#include "tests/unit/hls_testutil.h"

/* Oracle: the satisfiable byte set of a single range spec, by brute force
 * over every byte position. */
static int oracle(long a, long b, long size, long *off, long *cnt)
{
    /* a < 0: suffix of length b; b < 0: open-ended */
    long lo = -1, hi = -1;
    for (long p = 0; p < size; p++) {
        bool in = a < 0 ? p >= size - b : (p >= a && (b < 0 || p <= b));
        if (in) {
            if (lo < 0)
                lo = p;
            hi = p;
        }
    }
    if (lo < 0)
        return 0;
    *off = lo;
    *cnt = hi - lo + 1;
    return 1;
}

START_TEST(range_matches_oracle)
{
    char h[64];
    for (long size = 0; size <= 12; size++)
        for (long a = -1; a <= 14; a++)
            for (long b = -1; b <= 14; b++) {
                uint64_t off, cnt;
                long eo, ec;
                enum cm_status st;
                if (a < 0 && b < 0)
                    continue;
                if (a < 0)
                    snprintf(h, sizeof h, "bytes=-%ld", b);
                else if (b < 0)
                    snprintf(h, sizeof h, "bytes=%ld-", a);
                else
                    snprintf(h, sizeof h, "bytes=%ld-%ld", a, b);
                st = hls_range_parse(h, strlen(h), (uint64_t)size, &off, &cnt);
                if (a >= 0 && b >= 0 && b < a) {
                    ck_assert_int_eq(st, CM_UNSUPPORTED); /* invalid: 200 */
                    continue;
                }
                if (oracle(a, b, size, &eo, &ec)) {
                    ck_assert_msg(st == CM_OK, "%s size %ld", h, size);
                    ck_assert_int_eq(off, eo);
                    ck_assert_int_eq(cnt, ec);
                } else {
                    ck_assert_msg(st == CM_TOOBIG, "%s size %ld: %d", h, size,
                                  st);
                }
            }
}
END_TEST

START_TEST(range_malformed)
{
    static const char *const bad[] = {"",
                                      "bytes",
                                      "bytes=",
                                      "bytes=-",
                                      "items=0-1",
                                      "bytes=0-1,3-4",
                                      "bytes=a-b",
                                      "bytes=1-2x",
                                      "bytes=--1",
                                      "bytes=99999999999999999999999-",
                                      "bytes=0-99999999999999999999999",
                                      NULL};
    uint64_t off, cnt;
    for (int i = 0; bad[i]; i++)
        ck_assert_msg(hls_range_parse(bad[i], strlen(bad[i]), 100, &off,
                                      &cnt) == CM_UNSUPPORTED,
                      "%s", bad[i]);
    /* not NUL-terminated: the length bounds the parse */
    ck_assert_int_eq(hls_range_parse("bytes=0-9XYZ", 9, 100, &off, &cnt),
                     CM_OK);
    ck_assert_int_eq(cnt, 10);
    ck_assert_int_eq(hls_range_parse(" Bytes=5 - ", 11, 100, &off, &cnt),
                     CM_OK);
    ck_assert_int_eq(off, 5);
    ck_assert_int_eq(cnt, 95);
}
END_TEST

static struct hls_media media(const char *fmt, const char *v, const char *a,
                              const char *pix, int w, int h)
{
    struct hls_media md;
    memset(&md, 0, sizeof md);
    snprintf(md.format, sizeof md.format, "%s", fmt);
    snprintf(md.vcodec, sizeof md.vcodec, "%s", v);
    snprintf(md.acodec, sizeof md.acodec, "%s", a);
    snprintf(md.pix_fmt, sizeof md.pix_fmt, "%s", pix);
    md.width = w;
    md.height = h;
    md.duration = 100;
    return md;
}

START_TEST(direct_play_table)
{
    static const struct {
        const char *fmt, *v, *a, *pix, *want;
    } t[] = {
        {"mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", "yuv420p", "video/mp4"},
        {"mp4", "h264", "mp3", "yuv420p", "video/mp4"},
        {"mp4", "h264", "", "yuv420p", "video/mp4"},
        {"mp4", "h264", "ac3", "yuv420p", NULL},
        {"mp4", "h264", "aac", "yuv420p10le", NULL}, /* Hi10P */
        {"mp4", "hevc", "aac", "yuv420p", NULL},
        {"matroska,webm", "h264", "aac", "yuv420p", NULL}, /* H.264 MKV */
        {"matroska,webm", "vp9", "opus", "yuv420p", "video/webm"},
        {"webm", "vp8", "vorbis", "yuv420p", "video/webm"},
        {"matroska", "av1", "", "yuv420p", "video/webm"},
        {"matroska,webm", "vp9", "aac", "yuv420p", NULL},
        {"matroska,webm", "hevc", "ac3", "yuv420p", NULL},
        {"avi", "mpeg4", "mp3", "yuv420p", NULL},
        {"mp4", "", "aac", "", NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct hls_media md =
            media(t[i].fmt, t[i].v, t[i].a, t[i].pix, 1920, 1080);
        const char *got = hls_direct_type(&md);
        if (t[i].want)
            ck_assert_msg(got && strcmp(got, t[i].want) == 0, "row %zu", i);
        else
            ck_assert_msg(got == NULL, "row %zu", i);
    }
}
END_TEST

static void names(const struct hls_media *md, bool local, char *out, size_t cap)
{
    struct hls_rung r[HLS_MAX_RUNGS];
    int n;
    hls_rungs(md, local, r, &n);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        strncat(out, r[i].name, cap - strlen(out) - 2);
        strncat(out, " ", cap - strlen(out) - 1);
    }
}

START_TEST(variant_ladder)
{
    char s[256];
    struct hls_media md = media("mp4", "h264", "aac", "yuv420p", 3840, 2160);
    struct hls_rung r;
    names(&md, true, s, sizeof s);
    ck_assert_str_eq(s, "copy 1080p 720p 480p 360p ");
    names(&md, false, s, sizeof s); /* remote: no remux */
    ck_assert_str_eq(s, "1080p 720p 480p 360p ");
    md = media("mp4", "h264", "aac", "yuv420p10le", 1280, 720);
    names(&md, true, s, sizeof s);
    ck_assert_str_eq(s, "720p 480p 360p ");
    md = media("matroska", "hevc", "ac3", "", 1024, 576);
    names(&md, true, s, sizeof s);
    ck_assert_str_eq(s, "576p 480p 360p ");
    md = media("mp4", "hevc", "ac3", "", 320, 240);
    names(&md, true, s, sizeof s);
    ck_assert_str_eq(s, "240p ");
    md = media("mp4", "hevc", "aac", "", 1080, 1920); /* portrait */
    names(&md, true, s, sizeof s);
    ck_assert_str_eq(s, "1080p 720p 480p 360p ");
    ck_assert_int_eq(hls_rung_find(&md, true, "720p", 4, &r), CM_OK);
    ck_assert_int_eq(r.width, 720);
    ck_assert_int_eq(r.height, 1280);
    ck_assert_int_eq(hls_rung_find(&md, true, "copy", 4, &r), CM_NOTFOUND);
    ck_assert_int_eq(hls_rung_find(&md, true, "1440p", 5, &r), CM_NOTFOUND);
    /* Stash's resolution enum */
    md = media("mp4", "h264", "aac", "yuv420p", 1920, 1080);
    hls_rung_for_resolution(&md, true, "STANDARD_HD", &r);
    ck_assert_str_eq(r.name, "720p");
    hls_rung_for_resolution(&md, true, "LOW", &r);
    ck_assert_str_eq(r.name, "360p");
    hls_rung_for_resolution(&md, true, "FOUR_K", &r);
    ck_assert_str_eq(r.name, "1080p");
    hls_rung_for_resolution(&md, true, "ORIGINAL", &r);
    ck_assert_str_eq(r.name, "copy");
    hls_rung_for_resolution(&md, true, NULL, &r);
    ck_assert_str_eq(r.name, "1080p");
}
END_TEST

START_TEST(grid_playlists_follow_rfc8216)
{
    static const double durs[] = {0.3, 1,  3.99,  4,  4.2,
                                  4.6, 10, 19.96, 20, 3601.5};
    static const double fpss[] = {0, 25, 30000.0 / 1001, 24000.0 / 1001, 60};
    for (size_t i = 0; i < sizeof durs / sizeof durs[0]; i++)
        for (size_t k = 0; k < sizeof fpss / sizeof fpss[0]; k++) {
            double *b;
            uint32_t n;
            int nseg;
            struct cm_buf pl;
            ck_assert_int_eq(hls_grid_bounds(durs[i], fpss[k], &b, &n), CM_OK);
            for (uint32_t j = 0; j < n; j++) {
                ck_assert(b[j + 1] > b[j]);
                if (j + 1 < n) /* inner cuts on the frame grid */
                    ck_assert(fabs(b[j + 1] - (j + 1) * HLS_SEG_SECONDS) <
                              (fpss[k] > 0 ? 1 / fpss[k] : 1e-9) + 1e-9);
            }
            cm_buf_init(&pl, 1 << 20);
            ck_assert_int_eq(hls_media_playlist(b, n, "", &pl), CM_OK);
            ht_check_playlist(pl.data, durs[i], 1e-5 * n, &nseg);
            ck_assert_int_eq(nseg, (int)n);
            cm_buf_fini(&pl);
            cm_free(b);
        }
    {
        double *b;
        uint32_t n;
        ck_assert_int_eq(hls_grid_bounds(0, 25, &b, &n), CM_INVALID);
        ck_assert_int_eq(hls_grid_bounds(-1, 25, &b, &n), CM_INVALID);
        ck_assert_int_eq(hls_grid_bounds(1e9, 25, &b, &n), CM_TOOBIG);
    }
}
END_TEST

START_TEST(keyframe_bounds)
{
    /* In units of S = HLS_SEG_SECONDS / 4 (the table was written for
     * 4 s segments; scaling keeps it valid for any segment length). */
    static const double kf0[] = {0, 2, 4.04, 6, 8, 14, 26, 27.9};
    const double S = HLS_SEG_SECONDS / 4.0;
    double kf[8], *b;
    uint32_t n;
    for (int i = 0; i < 8; i++)
        kf[i] = kf0[i] * S;
    ck_assert_int_eq(hls_keyframe_bounds(kf, 8, 28.2 * S, &b, &n), CM_OK);
    /* cuts at the first keyframe >= 4k: 4.04, 8, 14 (>=12), 26 (>=16..24
     * all map to 26, once) */
    ck_assert_int_eq(n, 5);
    ck_assert(b[1] == kf[2] && b[2] == kf[4] && b[3] == kf[5] && b[4] == kf[6]);
    ck_assert(b[5] == 28.2 * S);
    cm_free(b);
    ck_assert_int_eq(hls_keyframe_bounds(NULL, 0, 10, &b, &n), CM_OK);
    ck_assert_int_eq(n, 1);
    cm_free(b);
}
END_TEST

START_TEST(master_playlist)
{
    struct hls_media md = media("mp4", "h264", "aac", "yuv420p", 1920, 1080);
    struct cm_buf pl;
    cm_buf_init(&pl, 1 << 16);
    ck_assert_int_eq(hls_master_playlist(&md, true, &pl), CM_OK);
    ck_assert(strncmp(pl.data, "#EXTM3U\n", 8) == 0);
    ck_assert_ptr_nonnull(strstr(pl.data, "copy/index.m3u8\n"));
    ck_assert_ptr_nonnull(strstr(pl.data, "RESOLUTION=1280x720"));
    ck_assert_ptr_nonnull(strstr(pl.data, "avc1.640028,mp4a.40.2"));
    /* every STREAM-INF has BANDWIDTH and is followed by a URI */
    for (const char *p = pl.data; (p = strstr(p, "#EXT-X-STREAM-INF:")); p++) {
        const char *eol = strchr(p, '\n');
        ck_assert_ptr_nonnull(strstr(p, "BANDWIDTH="));
        ck_assert(strstr(p, "BANDWIDTH=") < eol);
        ck_assert(eol[1] != '#' && eol[1] != '\0');
    }
    cm_buf_fini(&pl);
}
END_TEST

START_TEST(probe_parse)
{
    static const char js[] =
        "{\"streams\":[{\"codec_type\":\"video\",\"codec_name\":\"mjpeg\","
        "\"disposition\":{\"attached_pic\":1}},"
        "{\"codec_type\":\"video\",\"codec_name\":\"h264\",\"width\":1280,"
        "\"height\":720,\"pix_fmt\":\"yuv420p10le\",\"avg_frame_rate\":"
        "\"30000/1001\"},{\"codec_type\":\"audio\",\"codec_name\":\"ac3\"}],"
        "\"format\":{\"format_name\":\"matroska,webm\",\"duration\":"
        "\"12.5\",\"size\":\"1000\",\"start_time\":\"0.5\"}}";
    struct hls_media md;
    double *kf;
    size_t n;
    memset(&md, 0, sizeof md);
    ck_assert_int_eq(hls_probe_parse(js, strlen(js), &md), CM_OK);
    ck_assert_str_eq(md.vcodec, "h264");
    ck_assert_str_eq(md.acodec, "ac3");
    ck_assert_str_eq(md.pix_fmt, "yuv420p10le");
    ck_assert_int_eq(md.width, 1280);
    ck_assert(fabs(md.fps - 29.97) < 0.01);
    ck_assert(md.duration == 12.5 && md.start_time == 0.5);
    ck_assert_int_eq(md.size, 1000);
    ck_assert(!hls_can_remux(&md));
    ck_assert_int_eq(hls_probe_parse("{}", 2, &md), CM_INVALID);
    ck_assert_int_eq(hls_probe_parse("{\"streams\":[", 12, &md), CM_INVALID);
    ck_assert_int_eq(hls_keyframes_parse("4.0,K_\n0.0,K__\n2.0,__\n4.0,K_\n"
                                         "N/A,K_\n\n1.5\n",
                                         40, &kf, &n),
                     CM_OK);
    ck_assert_int_eq(n, 2);
    ck_assert(kf[0] == 0 && kf[1] == 4.0);
    cm_free(kf);
    ck_assert_int_eq(hls_keyframes_parse("zz,K_\n", 6, &kf, &n), CM_INVALID);
}
END_TEST

START_TEST(oom_never_crashes)
{
    for (long k = 1; k < 40; k++) {
        double *b = NULL;
        uint32_t n;
        struct cm_buf pl;
        struct hls_media md =
            media("mp4", "h264", "aac", "yuv420p", 1920, 1080);
        cm_alloc_fail_at(k, 1);
        if (hls_grid_bounds(100, 25, &b, &n) == CM_OK) {
            cm_buf_init(&pl, 1 << 16);
            (void)!hls_media_playlist(b, n, "", &pl);
            (void)!hls_master_playlist(&md, true, &pl);
            cm_buf_fini(&pl);
        }
        cm_free(b);
        {
            const char *js = "{\"streams\":[{\"codec_type\":\"video\"}]}";
            (void)!hls_probe_parse(js, strlen(js), &md);
        }
        cm_alloc_fail_at(0, 0);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hls_play");
    TCase *tc = tcase_create("play");
    tcase_add_test(tc, range_matches_oracle);
    tcase_add_test(tc, range_malformed);
    tcase_add_test(tc, direct_play_table);
    tcase_add_test(tc, variant_ladder);
    tcase_add_test(tc, grid_playlists_follow_rfc8216);
    tcase_add_test(tc, keyframe_bounds);
    tcase_add_test(tc, master_playlist);
    tcase_add_test(tc, probe_parse);
    tcase_add_test(tc, oom_never_crashes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
