/*
 * test_hls_seg.c - the ffmpeg job manager against real ffmpeg on videos
 * generated at test time: keyframe grid, timestamps across seek-restarts,
 * remux cuts at source keyframes, idle kill, transcode limit, cache cap,
 * process cleanup.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_config.h"
#include "hls/hls.h"
#include "tests/lib/testutil.h"
#include "tests/unit/hls_testutil.h"

static char media[4096];  /* "Stash-side" media dir (mapped to itself) */
static char v_mp4[4200];  /* H.264/AAC MP4 320x240 25 fps 20 s, GOP 2 s */
static char v_ntsc[4200]; /* H.264 29.97 fps 12 s, no audio */
static char v_gop[4200];  /* H.264/AAC long GOP (-g 300 at 25 fps) 24 s */
static char v_hevc[4200]; /* HEVC/AC3 MKV 640x360 23.976 fps 10 s */

static void gen_all(void)
{
    snprintf(media, sizeof media, "%s", ht_media_dir());
    snprintf(v_mp4, sizeof v_mp4, "%s/a.mp4", media);
    snprintf(v_ntsc, sizeof v_ntsc, "%s/ntsc.mp4", media);
    snprintf(v_gop, sizeof v_gop, "%s/gop.mp4", media);
    snprintf(v_hevc, sizeof v_hevc, "%s/hevc.mkv", media);
    ht_gen(v_mp4, "320x240", "25", 20, true,
           "-c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p -c:a aac "
           "-b:a 64k");
    ht_gen(v_ntsc, "320x240", "30000/1001", 12, false,
           "-c:v libx264 -preset ultrafast -g 60 -pix_fmt yuv420p");
    ht_gen(v_gop, "320x240", "25", 24, true,
           "-c:v libx264 -preset ultrafast -g 300 -keyint_min 300 "
           "-sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 64k");
    ht_gen(v_hevc, "640x360", "24000/1001", 10, true,
           "-c:v libx265 -preset ultrafast -x265-params log-level=error "
           "-c:a ac3");
}

static struct cm_config cfg;

static struct hls_mgr *mk(const struct hls_opts *o, int limit,
                          int64_t cache_max)
{
    char err[256], map[9000];
    struct hls_mgr *m = NULL;
    ck_assert_int_eq(cm_config_init(&cfg), CM_OK);
    ck_assert_int_eq(cm_config_set(&cfg, "cache-dir", tu_tmpdir(), err, 256),
                     CM_OK);
    snprintf(map, sizeof map, "/stash=%s", media);
    ck_assert_int_eq(cm_config_set(&cfg, "path-map", map, err, 256), CM_OK);
    cfg.transcode_limit = limit;
    if (cache_max)
        cfg.hls_cache_max = cache_max;
    ck_assert_int_eq(hls_mgr_new(&cfg, o, &m), CM_OK);
    return m;
}

static void resolve(struct hls_mgr *m, uint64_t id, const char *file,
                    struct hls_media *md)
{
    struct ht_scene h;
    char sp[4200];
    snprintf(sp, sizeof sp, "/stash/%s", strrchr(file, '/') + 1);
    /* Stash fields left empty: the probe fills them. */
    ht_scene_init(&h, id, sp, 0, NULL, NULL, NULL, 0, 0, 0);
    ck_assert_int_eq(hls_media_resolve(m, &h.sc, md), CM_OK);
    ck_assert_ptr_nonnull(md->path);
}

/* Fetches segment n into dir/<n>.ts (a copy, since the cache may evict). */
static uint64_t fetch(struct hls_mgr *m, const struct hls_media *md,
                      const char *rung, uint32_t n, const char *dir)
{
    int fd, out;
    uint64_t size, left;
    char p[4300], buf[65536];
    enum cm_status st = hls_segment_get(m, md, rung, n, &fd, &size);
    ck_assert_msg(st == CM_OK, "segment %u of %s: %s", n, rung,
                  cm_status_str(st));
    ck_assert(size > 0);
    snprintf(p, sizeof p, "%s/%u.ts", dir, n);
    out = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(out, 0);
    for (left = size; left > 0;) {
        ssize_t k = read(fd, buf, sizeof buf);
        ck_assert_int_gt(k, 0);
        ck_assert_int_eq(write(out, buf, (size_t)k), k);
        left -= (uint64_t)k;
    }
    close(out);
    close(fd);
    return size;
}

/* Bounds of a variant, from its playlist. */
static int playlist_bounds(struct hls_mgr *m, const struct hls_media *md,
                           const char *rung, double *b, int max)
{
    struct cm_buf pl;
    int n = 0;
    const char *p;
    cm_buf_init(&pl, 1 << 20);
    ck_assert_int_eq(hls_variant_playlist(m, md, rung, "", &pl), CM_OK);
    ht_check_playlist(pl.data, md->duration, 1.0 / (md->fps > 0 ? md->fps : 25),
                      &n);
    b[0] = 0;
    n = 0;
    for (p = pl.data; (p = strstr(p, "#EXTINF:")) && n < max - 1; p++) {
        b[n + 1] = b[n] + strtod(p + 8, NULL);
        n++;
    }
    cm_buf_fini(&pl);
    return n;
}

/* Every segment in dir (0..n-1) starts with a keyframe at pts0 + b[k]
 * within one frame; the concatenation decodes cleanly with monotonic
 * video timestamps. */
static void check_stream(const char *dir, const double *b, int n, double fps,
                         bool audio, double audio_slack)
{
    double pts0 = 0;
    char p[4300], cmd[8600];
    int cnt = 0;
    for (int k = 0; k < n; k++) {
        double pts;
        bool key;
        snprintf(p, sizeof p, "%s/%d.ts", dir, k);
        ck_assert_msg(ht_first_video(p, &pts, &key), "probe %s", p);
        ck_assert_msg(key, "segment %d starts without a keyframe", k);
        if (k == 0)
            pts0 = pts;
        ck_assert_msg(fabs(pts - pts0 - b[k]) <= 1.0 / fps + 1e-3,
                      "segment %d starts at %f, expected %f", k, pts - pts0,
                      b[k]);
    }
    snprintf(cmd, sizeof cmd, "cd '%s' && cat $(ls *.ts | sort -n) > all.tsx",
             dir);
    ck_assert_int_eq(ht_sh(cmd), 0);
    snprintf(p, sizeof p, "%s/all.tsx", dir);
    ck_assert(ht_decodes_clean(p, audio_slack > 0));
    ck_assert(ht_monotonic(p, "v", 0, &cnt));
    ck_assert_int_gt(cnt, (int)(b[n] * fps * 0.95));
    if (audio) {
        ck_assert(ht_monotonic(p, "a", audio_slack, &cnt));
        ck_assert_int_gt(cnt, (int)(b[n] * 48000 / 1024 * 0.95));
    }
}

START_TEST(transcode_grid_and_seek_restart)
{
    struct hls_opts o = {.gap = 1};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    struct hls_stats s;
    const char *dir = tu_tmpdir();
    double b[64];
    int n;
    resolve(m, 1, v_mp4, &md);
    ck_assert_str_eq(md.vcodec, "h264");
    n = playlist_bounds(m, &md, "240p", b, 64);
    ck_assert_int_eq(n, (int)(20 / HLS_SEG_SECONDS));
    /* 0, 1, then a far seek to the last (restart), then back to 2.. (restart)
     */
    fetch(m, &md, "240p", 0, dir);
    fetch(m, &md, "240p", 1, dir);
    fetch(m, &md, "240p", (uint32_t)n - 1, dir);
    for (int k = 2; k < n - 1; k++)
        fetch(m, &md, "240p", (uint32_t)k, dir);
    hls_mgr_stats(m, &s);
    ck_assert_int_ge(s.runs_started, 2);
    check_stream(dir, b, n, 25, true, 0);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(transcode_fractional_fps)
{
    struct hls_opts o = {.gap = 1};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    const char *dir = tu_tmpdir();
    double b[64];
    int n;
    resolve(m, 2, v_ntsc, &md);
    ck_assert(fabs(md.fps - 30000.0 / 1001) < 1e-3);
    ck_assert_str_eq(md.acodec, "");
    n = playlist_bounds(m, &md, "240p", b, 64);
    ck_assert_int_eq(n, (int)(12 / HLS_SEG_SECONDS));
    fetch(m, &md, "240p", (uint32_t)n / 2, dir); /* start in the middle */
    for (int k = 0; k < n; k++)
        if (k != n / 2)
            fetch(m, &md, "240p", (uint32_t)k, dir);
    check_stream(dir, b, n, 30000.0 / 1001, false, 0);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(remux_long_gop_cuts_at_keyframes)
{
    struct hls_opts o = {.gap = 1, .remux_window = 2};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    const char *dir = tu_tmpdir();
    double b[64];
    int n;
    resolve(m, 3, v_gop, &md);
    n = playlist_bounds(m, &md, "copy", b, 64);
    /* keyframes every 12 s: cuts at 0 and 12 only */
    ck_assert_int_eq(n, 2);
    ck_assert(fabs(b[1] - 12.0) < 1e-3);
    fetch(m, &md, "copy", 1, dir);
    fetch(m, &md, "copy", 0, dir);
    check_stream(dir, b, n, 25, true, 1024.0 / 48000);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(remux_windows_and_restarts)
{
    struct hls_opts o = {.gap = 1, .remux_window = 2};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    struct hls_stats s;
    const char *dir = tu_tmpdir();
    double b[64];
    int n;
    resolve(m, 4, v_mp4, &md);
    n = playlist_bounds(m, &md, "copy", b, 64);
    /* GOP 2 s: the copy cuts fall on the grid */
    ck_assert_int_eq(n, (int)(20 / HLS_SEG_SECONDS));
    ck_assert_int_ne(n % 3, 0); /* k * 3 % n visits every segment */
    for (int k = 0; k < n; k++)
        fetch(m, &md, "copy", (uint32_t)((k * 3) % n), dir);
    hls_mgr_stats(m, &s);
    ck_assert_int_ge(s.runs_started, 3);
    check_stream(dir, b, n, 25, true, 1024.0 / 48000);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

/* Regression (found by the browser test): a seek while an older request
 * is still pending left two waiters far apart, and the monitor restarted
 * ffmpeg for each in turn, every tick, until the old wait timed out.  Now
 * the newest request owns the run and the old one is served after. */
static void sem_post_cb(void *cls)
{
    sem_post(cls);
}

START_TEST(pending_old_request_does_not_thrash)
{
    struct hls_opts o = {.gap = 1, .ahead = 1};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    struct hls_stats s;
    struct hls_wait *old = NULL;
    sem_t sem;
    int fd, n;
    uint64_t size;
    double b[64];
    resolve(m, 13, v_mp4, &md);
    n = playlist_bounds(m, &md, "240p", b, 64);
    ck_assert_int_ge(n, 6);
    ck_assert_int_eq(hls_segment_open(m, &md, "240p", 2, &fd, &size, &old),
                     CM_OK);
    ck_assert_ptr_nonnull(old);
    /* the seek: the far segment comes with at most one more run */
    fetch(m, &md, "240p", (uint32_t)n - 2, tu_tmpdir());
    hls_mgr_stats(m, &s);
    ck_assert_msg(s.runs_started <= 3, "%llu runs",
                  (unsigned long long)s.runs_started);
    /* and the old request is still answered */
    sem_init(&sem, 0, 0);
    hls_wait_arm(old, sem_post_cb, &sem);
    while (sem_wait(&sem) != 0 && errno == EINTR)
        ;
    ck_assert_int_eq(hls_wait_result(old, &fd, &size), CM_OK);
    ck_assert(size > 0);
    close(fd);
    hls_wait_free(old);
    sem_destroy(&sem);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(hevc_mkv_transcodes)
{
    struct hls_mgr *m = mk(NULL, 2, 0);
    struct hls_media md;
    struct hls_rung r[HLS_MAX_RUNGS];
    const char *dir = tu_tmpdir();
    double b[64];
    int n, nr;
    resolve(m, 5, v_hevc, &md);
    ck_assert_str_eq(md.vcodec, "hevc");
    ck_assert_ptr_null(hls_direct_type(&md));
    hls_rungs(&md, true, r, &nr);
    ck_assert_int_eq(nr, 1); /* 360p only: no copy, no upscaling */
    ck_assert_str_eq(r[0].name, "360p");
    n = playlist_bounds(m, &md, "360p", b, 64);
    for (int k = 0; k < n; k++)
        fetch(m, &md, "360p", (uint32_t)k, dir);
    check_stream(dir, b, n, 24000.0 / 1001, true, 0);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

static bool gone(int pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

START_TEST(idle_job_killed_and_removed)
{
    struct hls_opts o = {.idle_ms = 300, .tick_ms = 20};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    struct hls_stats s;
    struct hls_wait *w;
    int fd, pids[4], np;
    uint64_t size;
    char jobdir[4300];
    struct stat sb;
    struct timespec t0, t1;
    resolve(m, 6, v_gop, &md);
    ck_assert_int_eq(hls_segment_open(m, &md, "240p", 0, &fd, &size, &w),
                     CM_OK);
    ck_assert_ptr_nonnull(w);
    np = hls_mgr_pids(m, pids, 4);
    ck_assert_int_eq(np, 1);
    hls_wait_free(w); /* the client went away */
    snprintf(jobdir, sizeof jobdir, "%s/hls/6-240p", cfg.cache_dir);
    ck_assert_int_eq(stat(jobdir, &sb), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        hls_mgr_stats(m, &s);
        if (s.jobs == 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_assert_msg(t1.tv_sec - t0.tv_sec < 5, "idle job not killed");
        usleep(10000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* within the timeout plus a few monitor periods */
    ck_assert_int_lt((t1.tv_sec - t0.tv_sec) * 1000 +
                         (t1.tv_nsec - t0.tv_nsec) / 1000000,
                     300 + 200);
    ck_assert_int_eq(s.idle_killed, 1);
    ck_assert(gone(pids[0]));
    ck_assert_int_ne(stat(jobdir, &sb), 0);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(transcode_limit_busy)
{
    struct hls_mgr *m = mk(NULL, 1, 0);
    struct hls_media a, b;
    struct hls_wait *w1, *w2;
    struct hls_stats s;
    int fd;
    uint64_t size;
    resolve(m, 7, v_gop, &a);
    resolve(m, 8, v_mp4, &b);
    ck_assert_int_eq(hls_segment_open(m, &a, "240p", 0, &fd, &size, &w1),
                     CM_OK);
    ck_assert_ptr_nonnull(w1);
    ck_assert_int_eq(hls_segment_open(m, &b, "240p", 0, &fd, &size, &w2),
                     CM_BUSY);
    ck_assert_ptr_null(w2);
    hls_mgr_stats(m, &s);
    ck_assert_int_eq(s.busy, 1);
    hls_wait_free(w1);
    hls_media_fini(&a);
    hls_media_fini(&b);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(cache_cap_evicts_lru)
{
    struct hls_opts o = {.tick_ms = 20, .ahead = 1};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    struct hls_stats s;
    const char *dir = tu_tmpdir();
    uint64_t s0;
    char p[4300];
    struct stat sb;
    struct timespec t0, t1;
    resolve(m, 9, v_mp4, &md);
    s0 = fetch(m, &md, "copy", 0, dir);
    /* cap below two segments: once 0..4 are fetched the oldest go */
    cfg.hls_cache_max = (int64_t)(s0 * 3 / 2);
    for (uint32_t k = 1; k < 5; k++)
        fetch(m, &md, "copy", k, dir);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        hls_mgr_stats(m, &s);
        if (s.cache_bytes <= cfg.hls_cache_max && s.evicted > 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_assert_msg(t1.tv_sec - t0.tv_sec < 5, "no eviction (%lld bytes)",
                      (long long)s.cache_bytes);
        usleep(10000);
    }
    snprintf(p, sizeof p, "%s/hls/9-copy/0.ts", cfg.cache_dir);
    ck_assert_int_ne(stat(p, &sb), 0); /* least recently used went first */
    /* an evicted segment is produced again on demand */
    fetch(m, &md, "copy", 0, tu_tmpdir());
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(free_kills_children_and_wipes)
{
    struct hls_opts o = {.ahead = 1};
    struct hls_mgr *m = mk(&o, 2, 0);
    struct hls_media md;
    struct hls_wait *w;
    int fd, pids[4], np;
    uint64_t size;
    char root[4300];
    struct stat sb;
    resolve(m, 10, v_gop, &md);
    ck_assert_int_eq(hls_segment_open(m, &md, "240p", 0, &fd, &size, &w),
                     CM_OK);
    np = hls_mgr_pids(m, pids, 4);
    ck_assert_int_eq(np, 1);
    snprintf(root, sizeof root, "%s/hls", cfg.cache_dir);
    hls_wait_free(w);
    hls_mgr_free(m);
    ck_assert(gone(pids[0]));
    ck_assert_int_ne(stat(root, &sb), 0);
    hls_media_fini(&md);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(shutdown_aborts_waits)
{
    struct hls_mgr *m = mk(NULL, 2, 0);
    struct hls_media md;
    struct hls_wait *w;
    int fd;
    uint64_t size;
    resolve(m, 11, v_hevc, &md);
    ck_assert_int_eq(hls_segment_open(m, &md, "360p", 1, &fd, &size, &w),
                     CM_OK);
    hls_mgr_shutdown(m);
    ck_assert_int_eq(hls_wait_result(w, &fd, &size), CM_ABORTED);
    ck_assert(!hls_wait_timed_out(w));
    hls_wait_free(w);
    ck_assert_int_eq(hls_segment_open(m, &md, "360p", 1, &fd, &size, &w),
                     CM_ABORTED);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

START_TEST(bad_segment_numbers)
{
    struct hls_mgr *m = mk(NULL, 2, 0);
    struct hls_media md;
    struct hls_wait *w;
    int fd;
    uint64_t size;
    resolve(m, 12, v_mp4, &md);
    ck_assert_int_eq(hls_segment_open(m, &md, "240p",
                                      (uint32_t)(20 / HLS_SEG_SECONDS), &fd,
                                      &size, &w),
                     CM_NOTFOUND);
    ck_assert_int_eq(hls_segment_open(m, &md, "720p", 0, &fd, &size, &w),
                     CM_NOTFOUND);
    ck_assert_int_eq(hls_segment_open(m, &md, "../240p", 0, &fd, &size, &w),
                     CM_NOTFOUND);
    hls_media_fini(&md);
    hls_mgr_free(m);
    cm_config_fini(&cfg);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hls_seg");
    TCase *tc = tcase_create("seg");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, transcode_grid_and_seek_restart);
    tcase_add_test(tc, transcode_fractional_fps);
    tcase_add_test(tc, remux_long_gop_cuts_at_keyframes);
    tcase_add_test(tc, remux_windows_and_restarts);
    tcase_add_test(tc, pending_old_request_does_not_thrash);
    tcase_add_test(tc, hevc_mkv_transcodes);
    tcase_add_test(tc, idle_job_killed_and_removed);
    tcase_add_test(tc, transcode_limit_busy);
    tcase_add_test(tc, cache_cap_evicts_lru);
    tcase_add_test(tc, free_kills_children_and_wipes);
    tcase_add_test(tc, shutdown_aborts_waits);
    tcase_add_test(tc, bad_segment_numbers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    gen_all();
    return tu_run(suite());
}
