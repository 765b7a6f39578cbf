/*
 * hls_mgr.c - the ffmpeg job manager behind on-demand HLS.
 *
 * One job per (scene, variant): a directory <cache>/hls/<scene>-<rung>/
 * holding published segments "<n>.ts", and at most one ffmpeg run.  A run
 * starts at a segment boundary and writes into its own directory
 * run<seq>/seg_<n>.ts with the segment muxer cutting at absolute times
 * (-copyts, -segment_times), so any run cuts exactly where the playlist
 * says.  The monitor thread publishes seg_<n>.ts by rename(2) into the job
 * directory once it is complete (seg_<n+1> exists, or ffmpeg exited 0), so
 * a segment is never served partially and an open reader keeps its inode.
 *
 * Processes: posix_spawn in their own process group; pids are tracked and
 * reaped with waitpid(pid) by the monitor (never waitpid(-1), never kill
 * by name); killed with SIGKILL to the group; a run more than `ahead`
 * segments past the last request is SIGSTOPped and SIGCONTed on demand.
 * Each run's pid is written to run<seq>/pid so that a restarted peekd can
 * kill leftovers of a crash (checked against /proc/<pid>/cmdline holding
 * the run directory).  One mutex guards everything; callbacks of waits run
 * outside it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "hls/hls.h"
#include "hls/hls_int.h"
#include "kv/kv.h"

#define PROBE_CACHE 64
#define MAX_ARGS    96

struct run {
    pid_t pid;           /* 0 = no process */
    bool active;         /* the directory exists (process or leftovers) */
    bool stopped;        /* SIGSTOPped */
    bool exited_ok;      /* ffmpeg exited 0 */
    bool killed;         /* we killed it */
    uint32_t start, end; /* segments [start, end) this run publishes */
    uint32_t next;       /* next segment to publish */
    char dir[PATH_MAX];
};

struct job {
    struct job *next;
    uint64_t scene_id;
    struct hls_rung rung;
    char dir[PATH_MAX];
    char *src; /* local path or Stash URL */
    bool remote;
    char acodec[32];
    int src_w, src_h;
    double duration;
    double *bounds; /* n + 1 entries */
    uint32_t n;
    int64_t *seg_size; /* -1 = not published */
    int64_t *seg_used; /* last use (ms) */
    int64_t last_access;
    uint32_t last_req;
    unsigned run_seq;
    struct run run;
    struct hls_wait *waiters;
};

struct hls_wait {
    struct hls_mgr *m;
    struct job *job; /* NULL once complete */
    struct hls_wait *next, *prev;
    uint32_t n;
    int64_t deadline;
    void (*fn)(void *);
    void *cls;
    bool done, armed, timed_out, fired;
    enum cm_status st;
    char path[PATH_MAX];
};

struct pc_entry {
    uint64_t scene_id;
    int64_t size;
    char key[512];
    struct hls_media md; /* path/url NULL */
    double *kb;          /* copy bounds, kn + 1 entries */
    uint32_t kn;
    int64_t used;
    bool valid;
};

struct hls_mgr {
    const struct cm_config *cfg;
    struct hls_opts o;
    char root[PATH_MAX]; /* <cache_dir>/hls */
    int limit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thr;
    bool thr_started, stop, shutting;
    struct job *jobs;
    int running;
    int64_t cache_bytes;
    uint64_t runs_started, evicted, idle_killed, busy;
    pthread_mutex_t pmu; /* probe cache */
    struct pc_entry pc[PROBE_CACHE];
};

/* Callbacks collected under the lock, run after it. */
struct cbs {
    void (*fn[256])(void *);
    void *cls[256];
    int n;
};

static void cbs_run(struct cbs *c)
{
    for (int i = 0; i < c->n; i++)
        c->fn[i](c->cls[i]);
    c->n = 0;
}

/* ---- Paths -------------------------------------------------------------- */

static bool path_fmt(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool path_fmt(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return r >= 0 && (size_t)r < cap;
}

static bool exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- Waits -------------------------------------------------------------- */

static void wait_unlink(struct hls_wait *w)
{
    struct job *j = w->job;
    if (!j)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        j->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->job = NULL;
}

static void wait_complete(struct hls_wait *w, enum cm_status st, struct cbs *c)
{
    wait_unlink(w);
    w->done = true;
    w->st = st;
    if (w->armed && !w->fired) {
        w->fired = true;
        if (c->n < (int)(sizeof c->fn / sizeof c->fn[0])) {
            c->fn[c->n] = w->fn;
            c->cls[c->n] = w->cls;
            c->n++;
        } else {
            /* never with 256 per tick in practice; run it now */
            w->fn(w->cls);
        }
    }
}

/* ---- Runs ---------------------------------------------------------------- */

static void seg_path(const struct job *j, uint32_t n, char *dst, size_t cap)
{
    if (!path_fmt(dst, cap, "%s/%u.ts", j->dir, n))
        dst[0] = '\0';
}

static void publish(struct hls_mgr *m, struct job *j, uint32_t i)
{
    char from[PATH_MAX], to[PATH_MAX];
    struct stat sb;
    if (!path_fmt(from, sizeof from, "%s/seg_%u.ts", j->run.dir, i))
        return;
    seg_path(j, i, to, sizeof to);
    if (rename(from, to) != 0 || stat(to, &sb) != 0) {
        cm_warn("hls", "cannot publish segment %u of scene %llu: %s", i,
                (unsigned long long)j->scene_id, strerror(errno));
        return;
    }
    if (j->seg_size[i] >= 0)
        m->cache_bytes -= j->seg_size[i];
    j->seg_size[i] = sb.st_size;
    j->seg_used[i] = hls_now_ms();
    m->cache_bytes += sb.st_size;
}

/* Publishes the complete segments of j's run. */
static void run_scan(struct hls_mgr *m, struct job *j)
{
    struct run *r = &j->run;
    char p[PATH_MAX];
    while (r->active && r->next < r->end) {
        uint32_t i = r->next;
        bool have_next;
        if (!path_fmt(p, sizeof p, "%s/seg_%u.ts", r->dir, i) || !exists(p))
            break;
        if (!path_fmt(p, sizeof p, "%s/seg_%u.ts", r->dir, i + 1))
            break;
        have_next = exists(p);
        if (!have_next && !(r->pid == 0 && r->exited_ok))
            break;
        publish(m, j, i);
        r->next++;
        /* What follows is cached already: this run is redundant. */
        if (r->pid && r->next < r->end && j->seg_size[r->next] >= 0) {
            kill(-r->pid, SIGKILL);
            r->killed = true;
        }
    }
}

static void reap(struct hls_mgr *m, struct run *r, bool block)
{
    int st = 0;
    pid_t p;
    if (!r->pid)
        return;
    do
        p = waitpid(r->pid, &st, block ? 0 : WNOHANG);
    while (p < 0 && errno == EINTR);
    if (p == 0)
        return;
    if (p < 0) {
        cm_error("hls", "waitpid %d: %s", (int)r->pid, strerror(errno));
        st = -1;
    }
    r->exited_ok = p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!r->exited_ok && !r->killed) {
        char log[PATH_MAX], msg[301] = "";
        int fd;
        if (path_fmt(log, sizeof log, "%s/ffmpeg.log", r->dir) &&
            (fd = open(log, O_RDONLY | O_CLOEXEC)) >= 0) {
            ssize_t k = read(fd, msg, sizeof msg - 1);
            msg[k > 0 ? k : 0] = '\0';
            msg[strcspn(msg, "\r\n")] = '\0';
            close(fd);
        }
        cm_warn("hls", "ffmpeg %d failed (%s %d): %s", (int)r->pid,
                p > 0 && WIFEXITED(st) ? "exit" : "signal",
                p > 0 && WIFEXITED(st) ? WEXITSTATUS(st)
                                       : (p > 0 ? WTERMSIG(st) : -1),
                msg);
    }
    r->pid = 0;
    r->stopped = false;
    m->running--;
}

/* After the process is gone: publish what is complete, fail the waits
 * inside the window that cannot come any more, remove the directory. */
static void run_finish(struct hls_mgr *m, struct job *j, struct cbs *c)
{
    struct run *r = &j->run;
    struct hls_wait *w, *nx;
    run_scan(m, j);
    for (w = j->waiters; w; w = nx) {
        nx = w->next;
        if (j->seg_size[w->n] >= 0 || w->n < r->start || w->n >= r->end)
            continue;
        if (r->exited_ok)
            wait_complete(w, CM_NOTFOUND, c);
        else if (!r->killed)
            wait_complete(w, CM_UPSTREAM, c);
        /* killed by us: the tick restarts a run for it */
    }
    hls_rmrf(r->dir);
    r->active = false;
}

static void run_kill(struct hls_mgr *m, struct job *j, struct cbs *c)
{
    struct run *r = &j->run;
    if (r->pid) {
        r->killed = true;
        kill(-r->pid, SIGKILL);
        reap(m, r, true);
    }
    if (r->active)
        run_finish(m, j, c);
}

/* ---- argv ------------------------------------------------------------------
 */

struct argv_b {
    char *v[MAX_ARGS + 1];
    int n;
    bool oom;
};

static void arg(struct argv_b *a, const char *s)
{
    if (a->oom || a->n >= MAX_ARGS) {
        a->oom = true;
        return;
    }
    a->v[a->n] = cm_strdup(s);
    if (!a->v[a->n]) {
        a->oom = true;
        return;
    }
    a->n++;
    a->v[a->n] = NULL;
}

static void argf(struct argv_b *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void argf(struct argv_b *a, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= sizeof tmp) {
        a->oom = true;
        return;
    }
    arg(a, tmp);
}

static void argv_free(struct argv_b *a)
{
    for (int i = 0; i < a->n; i++)
        cm_free(a->v[i]);
    a->n = 0;
}

/* The -segment_times list: absolute cut times (after the ts offset) of
 * boundaries start+1 .. end (end: the piece past the window, discarded). */
static enum cm_status seg_times(const struct job *j, uint32_t start,
                                uint32_t end, struct cm_buf *b)
{
    enum cm_status st = CM_OK;
    for (uint32_t k = start + 1; st == CM_OK && k <= end && k < j->n; k++)
        st = cm_buf_printf(b, "%s%.4f", k > start + 1 ? "," : "",
                           j->bounds[k] + HLS_TS_OFFSET - 0.0005);
    return st;
}

static enum cm_status build_argv(struct hls_mgr *m, struct job *j,
                                 uint32_t start, uint32_t end, struct argv_b *a)
{
    const struct cm_config *cfg = m->cfg;
    struct cm_buf times;
    enum cm_status st;
    double ss = j->bounds[start];
    bool copy = j->rung.copy;

    a->n = 0;
    a->oom = false;
    a->v[0] = NULL;
    arg(a, cfg->ffmpeg ? cfg->ffmpeg : "ffmpeg");
    arg(a, "-hide_banner");
    arg(a, "-nostdin");
    arg(a, "-loglevel");
    arg(a, "error");
    arg(a, "-y");
    if (j->remote && cfg->stash_api_key && cfg->stash_api_key[0]) {
        char h[CM_MAX_CONFIG_VALUE + 16];
        if (!path_fmt(h, sizeof h, "ApiKey: %s\r\n", cfg->stash_api_key))
            return CM_TOOBIG;
        arg(a, "-headers");
        arg(a, h);
    }
    if (start > 0) {
        arg(a, "-ss");
        /* transcode: just before the first frame of the segment (accurate
         * seek keeps it); copy: just after the keyframe (seek lands on it) */
        argf(a, "%.4f", copy ? ss + 0.0005 : (ss > 0.0005 ? ss - 0.0005 : 0));
    }
    if (end < j->n) {
        arg(a, "-t");
        argf(a, "%.4f", j->bounds[end] - ss + 0.5);
    }
    arg(a, "-i");
    arg(a, j->src);
    arg(a, "-map");
    arg(a, "0:v:0");
    if (j->acodec[0]) {
        arg(a, "-map");
        arg(a, "0:a:0?");
    }
    arg(a, "-sn");
    arg(a, "-dn");
    arg(a, "-map_metadata");
    arg(a, "-1");
    arg(a, "-map_chapters");
    arg(a, "-1");
    if (copy) {
        arg(a, "-c:v");
        arg(a, "copy");
    } else {
        arg(a, "-c:v");
        arg(a, "libx264");
        /* superfast: no lookahead and no mbtree, so the first frames
         * leave the encoder at once and a 2 s segment costs about 2/3 of
         * veryfast's CPU (docs/VIDEO.md, measured); threads: x264's
         * default (1.5 x cores) is what the transcode limit assumes. */
        arg(a, "-preset");
        arg(a, "superfast");
        arg(a, "-crf");
        arg(a, "23");
        arg(a, "-pix_fmt");
        arg(a, "yuv420p");
        arg(a, "-profile:v");
        arg(a, "high");
        arg(a, "-x264opts");
        arg(a, "open_gop=0");
        arg(a, "-sc_threshold");
        arg(a, "0");
        arg(a, "-force_key_frames");
        argf(a, "expr:gte(t,n_forced*%g)", HLS_SEG_SECONDS);
        if (j->rung.short_side > 0 &&
            (j->src_w <= 0 || j->src_h <= 0 ||
             j->rung.short_side <
                 (j->src_w < j->src_h ? j->src_w : j->src_h))) {
            arg(a, "-vf");
            if (j->src_w > 0 && j->src_h > j->src_w)
                argf(a, "scale=%d:-2:flags=bilinear", j->rung.short_side);
            else
                argf(a, "scale=-2:%d:flags=bilinear", j->rung.short_side);
        } else {
            arg(a, "-vf");
            arg(a, "scale=trunc(iw/2)*2:trunc(ih/2)*2");
        }
    }
    if (!j->acodec[0]) {
        arg(a, "-an");
    } else {
        /* Audio is always re-encoded, also for the copy variant: the
         * decoder then trims it at -ss, so a restarted run never repeats
         * audio the previous run already put before the cut. */
        arg(a, "-c:a");
        arg(a, "aac");
        arg(a, "-ac");
        arg(a, "2");
        arg(a, "-b:a");
        arg(a, "128k");
    }
    arg(a, "-copyts");
    arg(a, "-start_at_zero");
    arg(a, "-avoid_negative_ts");
    arg(a, "disabled");
    arg(a, "-output_ts_offset");
    argf(a, "%g", HLS_TS_OFFSET);
    arg(a, "-max_muxing_queue_size");
    arg(a, "2048");
    arg(a, "-f");
    arg(a, "segment");
    arg(a, "-segment_format");
    arg(a, "mpegts");
    arg(a, "-segment_start_number");
    argf(a, "%u", start);
    cm_buf_init(&times, 1024 * 1024);
    st = seg_times(j, start, end, &times);
    if (st == CM_OK && times.len > 0) {
        arg(a, "-segment_times");
        arg(a, times.data);
    } else if (st == CM_OK) {
        /* a single segment: never cut */
        arg(a, "-segment_time");
        arg(a, "100000000");
    }
    cm_buf_fini(&times);
    if (st != CM_OK)
        return st;
    argf(a, "%s/seg_%%d.ts", j->run.dir);
    return a->oom ? CM_NOMEM : CM_OK;
}

/* Kills a paused run of another job without waiters, to free a slot. */
static bool steal_slot(struct hls_mgr *m, struct job *self, struct cbs *c)
{
    for (struct job *j = m->jobs; j; j = j->next)
        if (j != self && j->run.pid && j->run.stopped && !j->waiters) {
            run_kill(m, j, c);
            return true;
        }
    return false;
}

static enum cm_status run_start(struct hls_mgr *m, struct job *j, uint32_t n,
                                struct cbs *c)
{
    struct argv_b a;
    enum cm_status st;
    char pidf[PATH_MAX], log[PATH_MAX];
    uint32_t window =
        (uint32_t)(j->rung.copy ? m->o.remux_window : m->o.transcode_window);
    struct run *r = &j->run;

    run_kill(m, j, c);
    if (m->running >= m->limit && !steal_slot(m, j, c)) {
        m->busy++;
        return CM_BUSY;
    }
    memset(r, 0, sizeof *r);
    r->start = r->next = n;
    r->end = n + window < j->n ? n + window : j->n;
    if (!path_fmt(r->dir, sizeof r->dir, "%s/run%u", j->dir, ++j->run_seq) ||
        !path_fmt(pidf, sizeof pidf, "%s/pid", r->dir) ||
        !path_fmt(log, sizeof log, "%s/ffmpeg.log", r->dir))
        return CM_TOOBIG;
    if (mkdir(r->dir, 0700) != 0) {
        cm_error("hls", "mkdir %s: %s", r->dir, strerror(errno));
        return CM_IO;
    }
    r->active = true;
    st = build_argv(m, j, r->start, r->end, &a);
    if (st == CM_OK)
        st = hls_spawn(a.v, -1, log, &r->pid);
    argv_free(&a);
    if (st != CM_OK) {
        hls_rmrf(r->dir);
        r->active = false;
        return st;
    }
    m->running++;
    m->runs_started++;
    {
        FILE *f = fopen(pidf, "we");
        if (f) {
            fprintf(f, "%d\n", (int)r->pid);
            fclose(f);
        }
    }
    cm_debug("hls", "scene %llu %s: ffmpeg %d for segments %u..%u",
             (unsigned long long)j->scene_id, j->rung.name, (int)r->pid,
             r->start, r->end - 1);
    return CM_OK;
}

/* ---- Jobs -------------------------------------------------------------------
 */

static void job_free(struct hls_mgr *m, struct job *j, struct cbs *c)
{
    struct job **pp;
    run_kill(m, j, c);
    while (j->waiters)
        wait_complete(j->waiters, CM_ABORTED, c);
    for (uint32_t i = 0; i < j->n; i++)
        if (j->seg_size[i] >= 0)
            m->cache_bytes -= j->seg_size[i];
    hls_rmrf(j->dir);
    for (pp = &m->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    cm_free(j->src);
    cm_free(j->bounds);
    cm_free(j->seg_size);
    cm_free(j->seg_used);
    cm_free(j);
}

static const char *media_src(const struct hls_media *md)
{
    return md->path ? md->path : md->url;
}

static struct job *job_find(struct hls_mgr *m, const struct hls_media *md,
                            const struct hls_rung *r, struct cbs *c)
{
    for (struct job *j = m->jobs; j; j = j->next) {
        if (j->scene_id != md->scene_id || strcmp(j->rung.name, r->name))
            continue;
        if (strcmp(j->src, media_src(md)) != 0 ||
            fabs(j->duration - md->duration) > 1e-6) {
            job_free(m, j, c); /* the file changed */
            return NULL;
        }
        return j;
    }
    return NULL;
}

static enum cm_status job_new(struct hls_mgr *m, const struct hls_media *md,
                              const struct hls_rung *r, double *bounds,
                              uint32_t n, struct job **out)
{
    struct job *j = cm_calloc(1, sizeof *j);
    *out = NULL;
    if (!j) {
        cm_free(bounds);
        return CM_NOMEM;
    }
    j->bounds = bounds;
    j->n = n;
    j->scene_id = md->scene_id;
    j->rung = *r;
    j->remote = md->path == NULL;
    j->duration = md->duration;
    j->src_w = md->width;
    j->src_h = md->height;
    memcpy(j->acodec, md->acodec, sizeof j->acodec);
    j->src = cm_strdup(media_src(md));
    j->seg_size = cm_malloc(((size_t)n + 1) * sizeof *j->seg_size);
    j->seg_used = cm_calloc((size_t)n + 1, sizeof *j->seg_used);
    if (!j->src || !j->seg_size || !j->seg_used)
        goto oom;
    for (uint32_t i = 0; i <= n; i++)
        j->seg_size[i] = -1;
    if (!path_fmt(j->dir, sizeof j->dir, "%s/%llu-%s", m->root,
                  (unsigned long long)md->scene_id, r->name))
        goto oom;
    hls_rmrf(j->dir);
    if (mkdir(j->dir, 0700) != 0) {
        cm_error("hls", "mkdir %s: %s", j->dir, strerror(errno));
        cm_free(j->src);
        cm_free(j->bounds);
        cm_free(j->seg_size);
        cm_free(j->seg_used);
        cm_free(j);
        return CM_IO;
    }
    j->last_access = hls_now_ms();
    j->next = m->jobs;
    m->jobs = j;
    *out = j;
    return CM_OK;
oom:
    cm_free(j->src);
    cm_free(j->bounds);
    cm_free(j->seg_size);
    cm_free(j->seg_used);
    cm_free(j);
    return CM_NOMEM;
}

/* ---- Cache cap
 * --------------------------------------------------------------- */

struct cand {
    struct job *j;
    uint32_t i;
    int64_t used;
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    return x->used < y->used ? -1 : x->used > y->used;
}

static bool protected_seg(struct hls_mgr *m, const struct job *j, uint32_t i,
                          int64_t now)
{
    bool active = now - j->last_access < m->o.idle_ms;
    return active && i >= j->last_req &&
           i <= j->last_req + (uint32_t)m->o.ahead;
}

static void evict(struct hls_mgr *m, int64_t now)
{
    size_t cnt = 0, k = 0;
    struct cand *cv;
    if (m->cache_bytes <= m->cfg->hls_cache_max)
        return;
    for (struct job *j = m->jobs; j; j = j->next)
        for (uint32_t i = 0; i < j->n; i++)
            if (j->seg_size[i] >= 0 && !protected_seg(m, j, i, now))
                cnt++;
    if (!cnt || !(cv = cm_malloc(cnt * sizeof *cv)))
        return;
    for (struct job *j = m->jobs; j; j = j->next)
        for (uint32_t i = 0; i < j->n; i++)
            if (j->seg_size[i] >= 0 && !protected_seg(m, j, i, now))
                cv[k++] = (struct cand){j, i, j->seg_used[i]};
    qsort(cv, k, sizeof *cv, cmp_cand);
    for (size_t x = 0; x < k && m->cache_bytes > m->cfg->hls_cache_max; x++) {
        char p[PATH_MAX];
        seg_path(cv[x].j, cv[x].i, p, sizeof p);
        if (p[0] && unlink(p) != 0 && errno != ENOENT)
            continue;
        m->cache_bytes -= cv[x].j->seg_size[cv[x].i];
        cv[x].j->seg_size[cv[x].i] = -1;
        m->evicted++;
    }
    cm_free(cv);
}

/* ---- Monitor
 * -------------------------------------------------------------------- */

static void job_tick(struct hls_mgr *m, struct job *j, int64_t now,
                     struct cbs *c)
{
    struct run *r = &j->run;
    struct hls_wait *w, *nx, *newest = NULL;
    bool covered = false;

    if (r->pid)
        reap(m, r, false);
    if (r->active) {
        run_scan(m, j);
        if (!r->pid)
            run_finish(m, j, c);
    }
    for (w = j->waiters; w; w = nx) {
        nx = w->next;
        if (j->seg_size[w->n] >= 0) {
            seg_path(j, w->n, w->path, sizeof w->path);
            wait_complete(w, CM_OK, c);
        } else if (now >= w->deadline) {
            w->timed_out = true;
            wait_complete(w, CM_ABORTED, c);
        } else if (r->pid && w->n >= r->next && w->n < r->end) {
            covered = true;
        } else if (!newest || w->deadline > newest->deadline) {
            newest = w;
        }
    }
    /* No waiter is covered by the run (it was killed for a slot, ended,
     * or passed a segment evicted since): start one for the most recent
     * request, the reader's position.  Only when none is covered, and only
     * one start per tick: two waiters far apart (a seek while an older
     * request is still pending) must not restart ffmpeg back and forth. */
    if (newest && !covered && !m->shutting)
        (void)run_start(m, j, newest->n, c);
    if (r->pid) {
        bool far = r->next > j->last_req + (uint32_t)m->o.ahead;
        if (!r->stopped && far && !j->waiters) {
            if (kill(-r->pid, SIGSTOP) == 0)
                r->stopped = true;
        } else if (r->stopped && (!far || j->waiters)) {
            if (kill(-r->pid, SIGCONT) == 0)
                r->stopped = false;
        }
    }
}

static void tick(struct hls_mgr *m, struct cbs *c)
{
    int64_t now = hls_now_ms();
    struct job *j, *nx;
    for (j = m->jobs; j; j = nx) {
        nx = j->next;
        job_tick(m, j, now, c);
        if (!j->waiters && now - j->last_access > m->o.idle_ms) {
            cm_debug("hls", "scene %llu %s idle: ended",
                     (unsigned long long)j->scene_id, j->rung.name);
            m->idle_killed++;
            job_free(m, j, c);
        }
    }
    evict(m, now);
}

static bool any_waiters(struct hls_mgr *m)
{
    for (struct job *j = m->jobs; j; j = j->next)
        if (j->waiters)
            return true;
    return false;
}

static void *monitor(void *arg)
{
    struct hls_mgr *m = arg;
    struct cbs c = {.n = 0};
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        int64_t ms = any_waiters(m) ? 15 : m->o.tick_ms;
        tick(m, &c);
        if (c.n) {
            pthread_mutex_unlock(&m->mu);
            cbs_run(&c);
            pthread_mutex_lock(&m->mu);
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ---- Leftovers of a previous process
 * ------------------------------------------------ */

/* Kills the process recorded in piddir/pid when its command line names
 * piddir (it is then certainly an ffmpeg of ours). */
static void kill_leftover(const char *piddir)
{
    char p[PATH_MAX], cmd[65536];
    long pid;
    FILE *f;
    int fd;
    ssize_t n;
    if (!path_fmt(p, sizeof p, "%s/pid", piddir) || !(f = fopen(p, "re")))
        return;
    if (fscanf(f, "%ld", &pid) != 1 || pid <= 1 || pid > INT_MAX) {
        fclose(f);
        return;
    }
    fclose(f);
    if (!path_fmt(p, sizeof p, "/proc/%ld/cmdline", pid) ||
        (fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
        return;
    n = read(fd, cmd, sizeof cmd - 1);
    close(fd);
    if (n <= 0)
        return;
    for (ssize_t i = 0; i < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n] = '\0';
    if (strstr(cmd, piddir)) {
        cm_info("hls", "killing leftover ffmpeg %ld", pid);
        kill(-(pid_t)pid, SIGCONT);
        kill(-(pid_t)pid, SIGKILL);
    }
}

static void sweep_leftovers(const char *root)
{
    DIR *d = opendir(root), *d2;
    struct dirent *e, *e2;
    char p[PATH_MAX], q[PATH_MAX];
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (!path_fmt(p, sizeof p, "%s/%s", root, e->d_name) ||
            !(d2 = opendir(p)))
            continue;
        while ((e2 = readdir(d2)))
            if (strncmp(e2->d_name, "run", 3) == 0 &&
                path_fmt(q, sizeof q, "%s/%s", p, e2->d_name))
                kill_leftover(q);
        closedir(d2);
    }
    closedir(d);
}

/* ---- Public
 * ---------------------------------------------------------------------- */

enum cm_status hls_mgr_new(const struct cm_config *cfg,
                           const struct hls_opts *opts, struct hls_mgr **out)
{
    struct hls_mgr *m;
    *out = NULL;
    m = cm_calloc(1, sizeof *m);
    if (!m)
        return CM_NOMEM;
    m->cfg = cfg;
    if (opts)
        m->o = *opts;
    if (m->o.idle_ms <= 0)
        m->o.idle_ms = 30000;
    if (m->o.tick_ms <= 0)
        m->o.tick_ms = 100;
    if (m->o.wait_ms <= 0)
        m->o.wait_ms = 20000;
    if (m->o.ahead <= 0)
        m->o.ahead = 10;
    if (m->o.gap <= 0)
        m->o.gap = 5;
    if (m->o.remux_window <= 0)
        m->o.remux_window = 15;
    if (m->o.transcode_window <= 0)
        m->o.transcode_window = 1000;
    m->limit = (int)cfg->transcode_limit;
    if (m->limit <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        m->limit = nc > 0 ? (int)nc : 1;
    }
    if (!cfg->cache_dir ||
        !path_fmt(m->root, sizeof m->root, "%s/hls", cfg->cache_dir)) {
        cm_free(m);
        return CM_INVALID;
    }
    if (mkdir(cfg->cache_dir, 0700) != 0 && errno != EEXIST) {
        cm_error("hls", "cannot create cache dir %s: %s", cfg->cache_dir,
                 strerror(errno));
        cm_free(m);
        return CM_IO;
    }
    sweep_leftovers(m->root);
    if (hls_rmrf(m->root) != 0 || mkdir(m->root, 0700) != 0) {
        cm_error("hls", "cannot reset %s: %s", m->root, strerror(errno));
        cm_free(m);
        return CM_IO;
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->pmu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (pthread_create(&m->thr, NULL, monitor, m) != 0) {
        hls_mgr_free(m);
        return CM_NOMEM;
    }
    m->thr_started = true;
    *out = m;
    return CM_OK;
}

void hls_mgr_shutdown(struct hls_mgr *m)
{
    struct cbs c = {.n = 0};
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->shutting = true;
    for (struct job *j = m->jobs; j; j = j->next)
        while (j->waiters) {
            wait_complete(j->waiters, CM_ABORTED, &c);
            if (c.n == 256) {
                pthread_mutex_unlock(&m->mu);
                cbs_run(&c);
                pthread_mutex_lock(&m->mu);
            }
        }
    pthread_mutex_unlock(&m->mu);
    cbs_run(&c);
}

void hls_mgr_free(struct hls_mgr *m)
{
    struct cbs c = {.n = 0};
    if (!m)
        return;
    hls_mgr_shutdown(m);
    if (m->thr_started) {
        pthread_mutex_lock(&m->mu);
        m->stop = true;
        pthread_cond_broadcast(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thr, NULL);
    }
    pthread_mutex_lock(&m->mu);
    while (m->jobs)
        job_free(m, m->jobs, &c);
    pthread_mutex_unlock(&m->mu);
    cbs_run(&c);
    if (m->root[0])
        hls_rmrf(m->root);
    for (int i = 0; i < PROBE_CACHE; i++)
        cm_free(m->pc[i].kb);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->pmu);
    pthread_cond_destroy(&m->cv);
    cm_free(m);
}

void hls_mgr_stats(struct hls_mgr *m, struct hls_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->mu);
    for (struct job *j = m->jobs; j; j = j->next) {
        out->jobs++;
        if (j->run.pid) {
            out->running++;
            if (j->run.stopped)
                out->paused++;
        }
    }
    out->cache_bytes = m->cache_bytes;
    out->runs_started = m->runs_started;
    out->evicted = m->evicted;
    out->idle_killed = m->idle_killed;
    out->busy = m->busy;
    pthread_mutex_unlock(&m->mu);
}

int hls_mgr_pids(struct hls_mgr *m, int *pids, int max)
{
    int n = 0;
    pthread_mutex_lock(&m->mu);
    for (struct job *j = m->jobs; j; j = j->next)
        if (j->run.pid && n < max)
            pids[n++] = (int)j->run.pid;
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* ---- Probing
 * ------------------------------------------------------------------------- */

static void probe_key(const struct hls_media *md, char *key, size_t cap)
{
    if (!path_fmt(key, cap, "%s", media_src(md)))
        key[0] = '\0';
}

static struct pc_entry *pc_find(struct hls_mgr *m, const struct hls_media *md)
{
    char key[512];
    probe_key(md, key, sizeof key);
    for (int i = 0; i < PROBE_CACHE; i++) {
        struct pc_entry *e = &m->pc[i];
        if (e->valid && e->scene_id == md->scene_id && e->size == md->size &&
            strcmp(e->key, key) == 0) {
            e->used = hls_now_ms();
            return e;
        }
    }
    return NULL;
}

static struct pc_entry *pc_slot(struct hls_mgr *m, const struct hls_media *md)
{
    struct pc_entry *e = pc_find(m, md);
    if (!e) {
        e = &m->pc[0];
        for (int i = 1; i < PROBE_CACHE; i++)
            if (!m->pc[i].valid || m->pc[i].used < e->used)
                e = &m->pc[i];
        cm_free(e->kb);
        memset(e, 0, sizeof *e);
        e->scene_id = md->scene_id;
        e->size = md->size;
        probe_key(md, e->key, sizeof e->key);
        e->valid = true;
        e->used = hls_now_ms();
    }
    return e;
}

static enum cm_status run_probe(struct hls_mgr *m, struct hls_media *md)
{
    const struct cm_config *cfg = m->cfg;
    struct argv_b a;
    struct cm_buf out;
    enum cm_status st;
    a.n = 0;
    a.oom = false;
    a.v[0] = NULL;
    arg(&a, cfg->ffprobe ? cfg->ffprobe : "ffprobe");
    arg(&a, "-v");
    arg(&a, "error");
    arg(&a, "-print_format");
    arg(&a, "json");
    arg(&a, "-show_format");
    arg(&a, "-show_streams");
    if (!md->path && cfg->stash_api_key && cfg->stash_api_key[0]) {
        char h[CM_MAX_CONFIG_VALUE + 16];
        if (path_fmt(h, sizeof h, "ApiKey: %s\r\n", cfg->stash_api_key)) {
            arg(&a, "-headers");
            arg(&a, h);
        }
    }
    arg(&a, media_src(md));
    if (a.oom) {
        argv_free(&a);
        return CM_NOMEM;
    }
    cm_buf_init(&out, HLS_MAX_PROBE_OUT);
    st = hls_run_capture(a.v, &out, 20000);
    argv_free(&a);
    if (st == CM_OK)
        st = hls_probe_parse(out.data ? out.data : "", out.len, md);
    cm_buf_fini(&out);
    if (st != CM_OK) {
        cm_warn("hls", "probe of scene %llu failed: %s",
                (unsigned long long)md->scene_id, cm_status_str(st));
        return st == CM_NOMEM ? st : CM_UPSTREAM;
    }
    return CM_OK;
}

static bool has_dotdot(const char *p)
{
    const char *s = p;
    while ((s = strstr(s, ".."))) {
        bool start = s == p || s[-1] == '/';
        bool end = s[2] == '\0' || s[2] == '/';
        if (start && end)
            return true;
        s += 2;
    }
    return false;
}

static void copy_kv(char *dst, size_t cap, struct kv_str s)
{
    size_t n = s.p ? s.len : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, s.p, n);
    dst[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (dst[i] >= 'A' && dst[i] <= 'Z')
            dst[i] = (char)(dst[i] - 'A' + 'a');
}

static enum cm_status resolve_source(struct hls_mgr *m, const struct kv_file *f,
                                     struct hls_media *md)
{
    const struct cm_config *cfg = m->cfg;
    if (f->path.p && f->path.len > 0 && f->path.len < PATH_MAX) {
        char *sp = cm_strndup(f->path.p, f->path.len), *mp;
        struct stat sb;
        if (!sp)
            return CM_NOMEM;
        mp = strlen(sp) == f->path.len ? cm_config_map_path(cfg, sp) : NULL;
        cm_free(sp);
        if (mp && !has_dotdot(mp) && stat(mp, &sb) == 0 &&
            S_ISREG(sb.st_mode)) {
            md->path = mp;
            if (md->size <= 0)
                md->size = sb.st_size;
            return CM_OK;
        }
        if (mp)
            cm_debug("hls", "scene %llu: mapped file is missing or unsafe",
                     (unsigned long long)md->scene_id);
        cm_free(mp);
    }
    if (cfg->stash_url && cfg->stash_url[0]) {
        char u[CM_MAX_CONFIG_VALUE + 64];
        size_t l = strlen(cfg->stash_url);
        while (l > 0 && cfg->stash_url[l - 1] == '/')
            l--;
        if (!path_fmt(u, sizeof u, "%.*s/scene/%llu/stream", (int)l,
                      cfg->stash_url, (unsigned long long)md->scene_id))
            return CM_TOOBIG;
        if (!(md->url = cm_strdup(u)))
            return CM_NOMEM;
        return CM_OK;
    }
    return CM_NOTFOUND;
}

enum cm_status hls_media_resolve(struct hls_mgr *m, const struct kv_scene *sc,
                                 struct hls_media *md)
{
    const struct kv_file *f;
    enum cm_status st;
    bool need;
    memset(md, 0, sizeof *md);
    md->scene_id = sc->id;
    if (sc->n_files == 0 || !sc->files)
        return CM_NOTFOUND;
    f = &sc->files[0];
    md->duration = f->duration > 0 && isfinite(f->duration) ? f->duration : 0;
    md->fps = f->frame_rate > 0 && f->frame_rate < 1000 ? f->frame_rate : 0;
    md->size = f->size > 0 ? f->size : 0;
    md->bit_rate = f->bit_rate > 0 ? f->bit_rate : 0;
    md->width = f->width > 0 ? f->width : 0;
    md->height = f->height > 0 ? f->height : 0;
    copy_kv(md->format, sizeof md->format, f->format);
    copy_kv(md->vcodec, sizeof md->vcodec, f->video_codec);
    copy_kv(md->acodec, sizeof md->acodec, f->audio_codec);
    if ((st = resolve_source(m, f, md)) != CM_OK)
        return st;
    need = md->duration <= 0 || !md->vcodec[0] || md->width <= 0 ||
           (md->path && strcmp(md->vcodec, "h264") == 0);
    if (!need)
        return CM_OK;
    pthread_mutex_lock(&m->pmu);
    {
        struct pc_entry *e = pc_find(m, md);
        if (e) {
            char *p = md->path, *u = md->url;
            *md = e->md;
            md->path = p;
            md->url = u;
            pthread_mutex_unlock(&m->pmu);
            return CM_OK;
        }
    }
    pthread_mutex_unlock(&m->pmu);
    if ((st = run_probe(m, md)) != CM_OK)
        return st;
    pthread_mutex_lock(&m->pmu);
    {
        struct pc_entry *e = pc_slot(m, md);
        e->md = *md;
        e->md.path = e->md.url = NULL;
    }
    pthread_mutex_unlock(&m->pmu);
    return CM_OK;
}

static enum cm_status copy_bounds(struct hls_mgr *m, const struct hls_media *md,
                                  double **b, uint32_t *n)
{
    const struct cm_config *cfg = m->cfg;
    struct argv_b a;
    struct cm_buf out;
    enum cm_status st;
    double *kf = NULL;
    size_t nkf = 0;

    pthread_mutex_lock(&m->pmu);
    {
        struct pc_entry *e = pc_find(m, md);
        if (e && e->kb) {
            *b = cm_malloc(((size_t)e->kn + 1) * sizeof **b);
            if (*b) {
                memcpy(*b, e->kb, ((size_t)e->kn + 1) * sizeof **b);
                *n = e->kn;
            }
            pthread_mutex_unlock(&m->pmu);
            return *b ? CM_OK : CM_NOMEM;
        }
    }
    pthread_mutex_unlock(&m->pmu);
    if (!md->path)
        return CM_NOTFOUND;
    a.n = 0;
    a.oom = false;
    a.v[0] = NULL;
    arg(&a, cfg->ffprobe ? cfg->ffprobe : "ffprobe");
    arg(&a, "-v");
    arg(&a, "error");
    arg(&a, "-select_streams");
    arg(&a, "v:0");
    arg(&a, "-show_entries");
    arg(&a, "packet=pts_time,flags");
    arg(&a, "-of");
    arg(&a, "csv=p=0");
    arg(&a, md->path);
    if (a.oom) {
        argv_free(&a);
        return CM_NOMEM;
    }
    cm_buf_init(&out, HLS_MAX_KEYFRAME_OUT);
    st = hls_run_capture(a.v, &out, 120000);
    argv_free(&a);
    if (st == CM_OK)
        st = hls_keyframes_parse(out.data ? out.data : "", out.len, &kf, &nkf);
    cm_buf_fini(&out);
    if (st != CM_OK) {
        cm_warn("hls", "keyframe scan of scene %llu failed: %s",
                (unsigned long long)md->scene_id, cm_status_str(st));
        return st == CM_NOMEM ? st : CM_UPSTREAM;
    }
    for (size_t i = 0; i < nkf; i++)
        kf[i] -= md->start_time; /* -start_at_zero */
    st = hls_keyframe_bounds(kf, nkf, md->duration, b, n);
    cm_free(kf);
    if (st != CM_OK)
        return st;
    pthread_mutex_lock(&m->pmu);
    {
        struct pc_entry *e = pc_slot(m, md);
        double *c = cm_malloc(((size_t)*n + 1) * sizeof *c);
        if (c) {
            memcpy(c, *b, ((size_t)*n + 1) * sizeof *c);
            cm_free(e->kb);
            e->kb = c;
            e->kn = *n;
            if (!e->md.probed) {
                e->md = *md;
                e->md.path = e->md.url = NULL;
            }
        }
    }
    pthread_mutex_unlock(&m->pmu);
    return CM_OK;
}

static enum cm_status rung_bounds(struct hls_mgr *m, const struct hls_media *md,
                                  const struct hls_rung *r, double **b,
                                  uint32_t *n)
{
    if (md->duration <= 0)
        return CM_UPSTREAM;
    if (r->copy)
        return copy_bounds(m, md, b, n);
    return hls_grid_bounds(md->duration, md->fps, b, n);
}

enum cm_status hls_variant_playlist(struct hls_mgr *m,
                                    const struct hls_media *md,
                                    const char *rung, const char *prefix,
                                    struct cm_buf *out)
{
    struct hls_rung r;
    double *b = NULL;
    uint32_t n = 0;
    enum cm_status st;
    st = hls_rung_find(md, md->path != NULL, rung, strlen(rung), &r);
    if (st != CM_OK)
        return st;
    st = rung_bounds(m, md, &r, &b, &n);
    if (st == CM_OK)
        st = hls_media_playlist(b, n, prefix, out);
    cm_free(b);
    return st;
}

/* ---- Segments
 * ------------------------------------------------------------------------- */

static int open_seg(struct job *j, uint32_t n, uint64_t *size)
{
    char p[PATH_MAX];
    struct stat sb;
    int fd;
    seg_path(j, n, p, sizeof p);
    if (!p[0] || (fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return -1;
    }
    *size = (uint64_t)sb.st_size;
    return fd;
}

enum cm_status hls_segment_open(struct hls_mgr *m, const struct hls_media *md,
                                const char *rung, uint32_t n, int *fd,
                                uint64_t *size, struct hls_wait **w)
{
    struct hls_rung r;
    struct job *j;
    struct cbs c = {.n = 0};
    enum cm_status st = CM_OK;
    struct hls_wait *nw = NULL;
    double *b = NULL;
    uint32_t nb = 0;
    int64_t now = hls_now_ms();

    *fd = -1;
    *size = 0;
    *w = NULL;
    if (!media_src(md))
        return CM_NOTFOUND;
    if ((st = hls_rung_find(md, md->path != NULL, rung, strlen(rung), &r)) !=
        CM_OK)
        return st;
    pthread_mutex_lock(&m->mu);
    if (m->shutting) {
        st = CM_ABORTED;
        goto out;
    }
    j = job_find(m, md, &r, &c);
    if (!j) {
        pthread_mutex_unlock(&m->mu);
        st = rung_bounds(m, md, &r, &b, &nb);
        pthread_mutex_lock(&m->mu);
        if (st != CM_OK)
            goto out;
        if (m->shutting) {
            cm_free(b);
            st = CM_ABORTED;
            goto out;
        }
        if (!(j = job_find(m, md, &r, &c))) {
            st = job_new(m, md, &r, b, nb, &j);
            if (st != CM_OK)
                goto out;
        } else {
            cm_free(b);
        }
    }
    if (n >= j->n) {
        st = CM_NOTFOUND;
        goto out;
    }
    j->last_access = now;
    j->last_req = n;
    if (j->seg_size[n] >= 0 && (*fd = open_seg(j, n, size)) >= 0) {
        j->seg_used[n] = now;
        goto out;
    }
    /* Restart when no run covers n: none, n outside its window, n far
     * ahead of it, or n already passed (published, then evicted). */
    if (!j->run.pid || n < j->run.next || n >= j->run.end ||
        n > j->run.next + (uint32_t)m->o.gap) {
        st = run_start(m, j, n, &c);
        if (st != CM_OK)
            goto out;
    } else if (j->run.stopped) {
        if (kill(-j->run.pid, SIGCONT) == 0)
            j->run.stopped = false;
    }
    nw = cm_calloc(1, sizeof *nw);
    if (!nw) {
        st = CM_NOMEM;
        goto out;
    }
    nw->m = m;
    nw->job = j;
    nw->n = n;
    nw->deadline = now + m->o.wait_ms;
    nw->next = j->waiters;
    if (j->waiters)
        j->waiters->prev = nw;
    j->waiters = nw;
    *w = nw;
    pthread_cond_broadcast(&m->cv);
out:
    pthread_mutex_unlock(&m->mu);
    cbs_run(&c);
    return st;
}

void hls_wait_arm(struct hls_wait *w, void (*fn)(void *cls), void *cls)
{
    bool now;
    pthread_mutex_lock(&w->m->mu);
    w->fn = fn;
    w->cls = cls;
    w->armed = true;
    now = w->done && !w->fired;
    if (now)
        w->fired = true;
    pthread_mutex_unlock(&w->m->mu);
    if (now)
        fn(cls);
}

enum cm_status hls_wait_result(struct hls_wait *w, int *fd, uint64_t *size)
{
    enum cm_status st;
    *fd = -1;
    *size = 0;
    pthread_mutex_lock(&w->m->mu);
    st = w->done ? w->st : CM_BUSY;
    pthread_mutex_unlock(&w->m->mu);
    if (st == CM_OK) {
        struct stat sb;
        int f = open(w->path, O_RDONLY | O_CLOEXEC);
        if (f < 0 || fstat(f, &sb) != 0) {
            if (f >= 0)
                close(f);
            return CM_NOTFOUND; /* evicted meanwhile */
        }
        *fd = f;
        *size = (uint64_t)sb.st_size;
    }
    return st;
}

bool hls_wait_timed_out(const struct hls_wait *w)
{
    return w->timed_out;
}

void hls_wait_free(struct hls_wait *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->m->mu);
    wait_unlink(w);
    pthread_mutex_unlock(&w->m->mu);
    cm_free(w);
}

static void sem_cb(void *cls)
{
    sem_post(cls);
}

enum cm_status hls_segment_get(struct hls_mgr *m, const struct hls_media *md,
                               const char *rung, uint32_t n, int *fd,
                               uint64_t *size)
{
    struct hls_wait *w;
    sem_t sem;
    enum cm_status st = hls_segment_open(m, md, rung, n, fd, size, &w);
    if (st != CM_OK || !w)
        return st;
    sem_init(&sem, 0, 0);
    hls_wait_arm(w, sem_cb, &sem);
    while (sem_wait(&sem) != 0 && errno == EINTR)
        ;
    st = hls_wait_result(w, fd, size);
    hls_wait_free(w);
    sem_destroy(&sem);
    return st;
}
