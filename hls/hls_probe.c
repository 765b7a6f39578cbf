/*
 * hls_probe.c - child processes (posix_spawn) and the parsers of ffprobe
 * output: the JSON of -show_format -show_streams, and the packet CSV that
 * gives a file's keyframe times.  ffprobe output is untrusted (a crafted
 * file controls tags and strings): every parser is bounded and fuzzed
 * (tests/fuzz/fuzz_ffprobe.c).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_log.h"
#include "hls/hls.h"
#include "hls/hls_int.h"

extern char **environ;

int64_t hls_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)f;
    if (flag == FTW_DP)
        return rmdir(p) == 0 || errno == ENOENT ? 0 : 0;
    return unlink(p) == 0 || errno == ENOENT ? 0 : 0;
}

int hls_rmrf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : -1;
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return lstat(path, &sb) != 0 && errno == ENOENT ? 0 : -1;
}

enum cm_status hls_spawn(char *const argv[], int out_fd, const char *err_path,
                         pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, def;
    int rc;

    *pid = 0;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return CM_NOMEM;
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return CM_NOMEM;
    }
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGHUP);
    sigaddset(&def, SIGCHLD);
    rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
                                           POSIX_SPAWN_SETSIGMASK |
                                           POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(&at, 0);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&at, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&at, &def);
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0) {
        if (out_fd >= 0)
            rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        else
            rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY,
                                                  0);
    }
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(
            &fa, 2, err_path ? err_path : "/dev/null",
            O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (rc == 0)
        rc = posix_spawnp(pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        cm_error("hls", "cannot start %s: %s", argv[0], strerror(rc));
        *pid = 0;
        return CM_IO;
    }
    return CM_OK;
}

enum cm_status hls_run_capture(char *const argv[], struct cm_buf *out,
                               int timeout_ms)
{
    int p[2] = {-1, -1};
    pid_t pid = 0;
    enum cm_status st;
    int64_t deadline = hls_now_ms() + timeout_ms;
    int wst = 0;
    char chunk[65536];

    if (pipe2(p, O_CLOEXEC) != 0)
        return CM_IO;
    st = hls_spawn(argv, p[1], NULL, &pid);
    close(p[1]);
    if (st != CM_OK) {
        close(p[0]);
        return st;
    }
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int64_t left = deadline - hls_now_ms();
        int r;
        ssize_t n;
        if (left <= 0) {
            cm_warn("hls", "%s timed out after %d ms", argv[0], timeout_ms);
            st = CM_UPSTREAM;
            break;
        }
        r = poll(&pf, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = CM_IO;
            break;
        }
        if (r == 0)
            continue;
        n = read(p[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = CM_IO;
            break;
        }
        if (n == 0)
            break;
        st = cm_buf_append(out, chunk, (size_t)n);
        if (st != CM_OK)
            break;
    }
    close(p[0]);
    if (st != CM_OK)
        kill(-pid, SIGKILL);
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
        ;
    if (st == CM_OK && !(WIFEXITED(wst) && WEXITSTATUS(wst) == 0)) {
        cm_warn("hls", "%s failed (%s %d)", argv[0],
                WIFEXITED(wst) ? "exit" : "signal",
                WIFEXITED(wst) ? WEXITSTATUS(wst) : WTERMSIG(wst));
        st = CM_UPSTREAM;
    }
    return st;
}

/* ---- JSON -----------------------------------------------------------------
 */

static void copy_str(char *dst, size_t cap, const cJSON *v)
{
    size_t n;
    if (!cJSON_IsString(v) || !v->valuestring)
        return;
    n = strlen(v->valuestring);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v->valuestring, n);
    dst[n] = '\0';
}

/* A number given as a JSON string ("12.5") or number; false if absent or
 * malformed. */
static bool num_of(const cJSON *v, double *out)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return isfinite(*out);
    }
    if (cJSON_IsString(v) && v->valuestring) {
        char *end;
        errno = 0;
        *out = strtod(v->valuestring, &end);
        return errno == 0 && end != v->valuestring && *end == '\0' &&
               isfinite(*out);
    }
    return false;
}

/* "30000/1001" -> 29.97; false for 0/0 or garbage. */
static bool rate_of(const cJSON *v, double *out)
{
    const char *s;
    char *end;
    long long a, b;
    if (!cJSON_IsString(v) || !(s = v->valuestring))
        return false;
    errno = 0;
    a = strtoll(s, &end, 10);
    if (errno || end == s || *end != '/')
        return false;
    s = end + 1;
    b = strtoll(s, &end, 10);
    if (errno || end == s || *end || a <= 0 || b <= 0)
        return false;
    *out = (double)a / (double)b;
    return *out > 0 && *out < 1000;
}

enum cm_status hls_probe_parse(const char *buf, size_t len,
                               struct hls_media *md)
{
    cJSON *root, *streams, *fmt, *s;
    bool have_v = false, have_a = false;
    double d;

    if (len > HLS_MAX_PROBE_OUT)
        return CM_TOOBIG;
    cm_json_init();
    root = cJSON_ParseWithLength(buf, len);
    if (!root)
        return CM_INVALID;
    streams = cJSON_GetObjectItemCaseSensitive(root, "streams");
    if (!cJSON_IsArray(streams)) {
        cJSON_Delete(root);
        return CM_INVALID;
    }
    cJSON_ArrayForEach (s, streams) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "codec_type");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "codec_name");
        if (!cJSON_IsString(type) || !type->valuestring)
            continue;
        if (!have_v && strcmp(type->valuestring, "video") == 0) {
            const cJSON *disp =
                cJSON_GetObjectItemCaseSensitive(s, "disposition");
            const cJSON *pic =
                cJSON_GetObjectItemCaseSensitive(disp, "attached_pic");
            double w = 0, h = 0, r = 0;
            if (cJSON_IsNumber(pic) && pic->valuedouble != 0)
                continue; /* cover art, not the video */
            have_v = true;
            md->vcodec[0] = '\0';
            copy_str(md->vcodec, sizeof md->vcodec, name);
            copy_str(md->pix_fmt, sizeof md->pix_fmt,
                     cJSON_GetObjectItemCaseSensitive(s, "pix_fmt"));
            if (num_of(cJSON_GetObjectItemCaseSensitive(s, "width"), &w) &&
                num_of(cJSON_GetObjectItemCaseSensitive(s, "height"), &h) &&
                w > 0 && h > 0 && w <= 65536 && h <= 65536) {
                md->width = (int)w;
                md->height = (int)h;
            }
            if (rate_of(cJSON_GetObjectItemCaseSensitive(s, "avg_frame_rate"),
                        &r) ||
                rate_of(cJSON_GetObjectItemCaseSensitive(s, "r_frame_rate"),
                        &r))
                md->fps = r;
        } else if (!have_a && strcmp(type->valuestring, "audio") == 0) {
            have_a = true;
            md->acodec[0] = '\0';
            copy_str(md->acodec, sizeof md->acodec, name);
        }
    }
    if (!have_a)
        md->acodec[0] = '\0';
    fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (cJSON_IsObject(fmt)) {
        copy_str(md->format, sizeof md->format,
                 cJSON_GetObjectItemCaseSensitive(fmt, "format_name"));
        if (num_of(cJSON_GetObjectItemCaseSensitive(fmt, "duration"), &d) &&
            d > 0 && d < 1e7)
            md->duration = d;
        if (num_of(cJSON_GetObjectItemCaseSensitive(fmt, "start_time"), &d) &&
            fabs(d) < 1e6)
            md->start_time = d;
        if (num_of(cJSON_GetObjectItemCaseSensitive(fmt, "size"), &d) &&
            d >= 0 && d < 9e18)
            md->size = (int64_t)d;
        if (num_of(cJSON_GetObjectItemCaseSensitive(fmt, "bit_rate"), &d) &&
            d >= 0 && d < 9e15)
            md->bit_rate = (int64_t)d;
    }
    cJSON_Delete(root);
    if (!have_v)
        return CM_INVALID;
    md->probed = true;
    return CM_OK;
}

/* ---- Keyframe CSV ------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum cm_status hls_keyframes_parse(const char *buf, size_t len, double **kf,
                                   size_t *n)
{
    double *v = NULL;
    size_t cnt = 0, cap = 0, i = 0, w;
    *kf = NULL;
    *n = 0;
    if (len > HLS_MAX_KEYFRAME_OUT)
        return CM_TOOBIG;
    while (i < len) {
        size_t eol = i, comma;
        char num[64];
        double t;
        char *end;
        while (eol < len && buf[eol] != '\n')
            eol++;
        if (eol > i && buf[eol - 1] == '\r')
            eol--;
        comma = i;
        while (comma < eol && buf[comma] != ',')
            comma++;
        if (eol == i || comma == eol) {
            /* empty line, or a one-field line (a section footer) */
            goto next;
        }
        if (comma + 1 < eol && buf[comma + 1] == 'K' && comma - i > 0 &&
            comma - i < sizeof num) {
            memcpy(num, buf + i, comma - i);
            num[comma - i] = '\0';
            if (strcmp(num, "N/A") == 0)
                goto next;
            errno = 0;
            t = strtod(num, &end);
            if (errno || *end || !isfinite(t) || t < -1e6 || t > 1e7) {
                cm_free(v);
                return CM_INVALID;
            }
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 256;
                double *nv;
                if (nc > HLS_MAX_KEYFRAME_OUT / 4) {
                    cm_free(v);
                    return CM_TOOBIG;
                }
                nv = cm_realloc(v, nc * sizeof *v);
                if (!nv) {
                    cm_free(v);
                    return CM_NOMEM;
                }
                v = nv;
                cap = nc;
            }
            v[cnt++] = t;
        } else if (comma - i >= sizeof num) {
            cm_free(v);
            return CM_INVALID;
        }
    next:
        while (eol < len && buf[eol] != '\n')
            eol++;
        i = eol + 1;
    }
    if (cnt > 1)
        qsort(v, cnt, sizeof *v, cmp_double);
    for (i = 0, w = 0; i < cnt; i++)
        if (w == 0 || v[i] > v[w - 1])
            v[w++] = v[i];
    *kf = v;
    *n = w;
    return CM_OK;
}
