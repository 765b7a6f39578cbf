/*
 * api_video.c - video routes under /api/scene/{id}/ (owned by hls/'s
 * engineer; the logic lives in hls/, this file maps HTTP onto it).
 *
 *   stream, proxy-stream/stream          direct play with Range (206/416)
 *                                        when a browser plays the file as
 *                                        is (hls_direct_type); else 404 so
 *                                        Peek's player falls back to HLS
 *   hls/master.m3u8                      master playlist
 *   hls/{rung}/index.m3u8                VOD media playlist
 *   hls/{rung}/{n}.ts                    segment (starts ffmpeg on demand;
 *                                        the request is suspended until it
 *                                        is ready: 504 after the bounded
 *                                        wait, 503 + Retry-After when the
 *                                        transcode limit is reached)
 *   proxy-stream/stream.m3u8?resolution= Peek's HLS fallback: the media
 *                                        playlist of the rung for Stash's
 *                                        resolution enum, segment URIs
 *                                        "hls/{rung}/{n}.ts" relative to
 *                                        /api/scene/{id}/proxy-stream/
 *   proxy-stream/hls/...                 same as hls/...
 *
 * Anything else (including caption) answers 404.  Path segments are
 * matched against a strict grammar (rung [a-z0-9]{1,15}, n decimal without
 * leading zeros), so "..", encoded dots or absolute paths never reach the
 * filesystem; the file itself comes only from the scene record through the
 * path mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_int.h"
#include "common/cm_alloc.h"
#include "common/cm_log.h"
#include "hls/hls.h"

struct vstate {
    struct hls_mgr *m;
};

/* The async state of a suspended segment request. */
struct vwait {
    struct hls_wait *w;
};

static void vwait_free(void *p)
{
    struct vwait *v = p;
    if (!v)
        return;
    hls_wait_free(v->w);
    cm_free(v);
}

enum cm_status api_video_init(const struct cm_config *cfg,
                              struct kv_store *store, void **state)
{
    struct vstate *s;
    enum cm_status st;
    (void)store;
    *state = NULL;
    s = cm_calloc(1, sizeof *s);
    if (!s)
        return CM_NOMEM;
    st = hls_mgr_new(cfg, NULL, &s->m);
    if (st != CM_OK) {
        cm_free(s);
        return st;
    }
    *state = s;
    return CM_OK;
}

void api_video_quiesce(void *state)
{
    struct vstate *s = state;
    if (s)
        hls_mgr_shutdown(s->m);
}

void api_video_fini(void *state)
{
    struct vstate *s = state;
    if (!s)
        return;
    hls_mgr_free(s->m);
    cm_free(s);
}

/* ---- Helpers ---------------------------------------------------------- */

static enum cm_status load_media(struct api_req *req, struct vstate *s,
                                 struct hls_media *md)
{
    struct kv_txn *t;
    struct kv_scene sc;
    uint32_t doc;
    enum cm_status st;

    memset(md, 0, sizeof *md);
    if ((st = api_req_txn(req, &t)) != CM_OK)
        return st;
    if ((st = kv_docid_of(t, req->scene_id, &doc)) != CM_OK)
        return st;
    memset(&sc, 0, sizeof sc);
    st = kv_scene_get(t, doc, &sc);
    if (st == CM_OK)
        st = hls_media_resolve(s->m, &sc, md);
    kv_scene_fini(&sc);
    return st;
}

static bool is_rung(const char *p, size_t n)
{
    if (n == 0 || n > 15)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')))
            return false;
    return true;
}

/* "<n>.ts" with n decimal, no leading zero, < 10^9. */
static bool seg_number(const char *p, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    size_t i;
    if (n < 4 || n > 12 || memcmp(p + n - 3, ".ts", 3) != 0)
        return false;
    n -= 3;
    if (p[0] == '0' && n > 1)
        return false;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

static enum cm_status playlist_resp(struct api_resp *resp)
{
    resp->status = 200;
    resp->content_type = "application/vnd.apple.mpegurl";
    return api_resp_header(resp, "Cache-Control", "no-cache");
}

static enum cm_status busy(struct api_resp *resp)
{
    enum cm_status st;
    api_resp_error(resp, 503, "Too many transcodes, try again", NULL);
    st = api_resp_header(resp, "Retry-After", "5");
    return st == CM_OK ? CM_OK : st;
}

/* ---- Direct play -------------------------------------------------------- */

static enum cm_status direct(struct api_req *req, struct api_resp *resp,
                             const struct hls_media *md)
{
    const char *type = hls_direct_type(md);
    const char *range;
    struct stat sb;
    uint64_t off = 0, cnt;
    int fd;
    enum cm_status st;
    char cr[96];

    if (!md->path || !type)
        return api_fail(resp, CM_NOTFOUND,
                        md->path ? "Not playable directly: use HLS"
                                 : "No local file: use HLS",
                        NULL);
    fd = open(md->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        return api_fail(resp, CM_NOTFOUND, "File not found", NULL);
    }
    cnt = (uint64_t)sb.st_size;
    range = api_req_header(req, "Range");
    st = range ? hls_range_parse(range, strlen(range), (uint64_t)sb.st_size,
                                 &off, &cnt)
               : CM_UNSUPPORTED;
    if (st == CM_TOOBIG) {
        close(fd);
        api_resp_error(resp, 416, "Range not satisfiable", NULL);
        snprintf(cr, sizeof cr, "bytes */%lld", (long long)sb.st_size);
        if ((st = api_resp_header(resp, "Content-Range", cr)) != CM_OK)
            return st;
        return api_resp_header(resp, "Accept-Ranges", "bytes");
    }
    if (st == CM_OK) {
        resp->status = 206;
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%lld", (unsigned long long)off,
                 (unsigned long long)(off + cnt - 1), (long long)sb.st_size);
        if ((st = api_resp_header(resp, "Content-Range", cr)) != CM_OK) {
            close(fd);
            return st;
        }
    } else {
        resp->status = 200;
        off = 0;
        cnt = (uint64_t)sb.st_size;
    }
    resp->content_type = type;
    api_resp_file(resp, fd, off, cnt);
    return api_resp_header(resp, "Accept-Ranges", "bytes");
}

/* ---- Segments ------------------------------------------------------------ */

static void on_ready(void *cls)
{
    api_req_resume(cls);
}

static enum cm_status seg_answer(struct api_resp *resp, int fd, uint64_t size)
{
    resp->status = 200;
    resp->content_type = "video/mp2t";
    api_resp_file(resp, fd, 0, size);
    return api_resp_header(resp, "Cache-Control", "private, max-age=3600");
}

static enum cm_status segment_resumed(struct api_req *req,
                                      struct api_resp *resp)
{
    struct vwait *v = req->async;
    int fd;
    uint64_t size;
    enum cm_status st = hls_wait_result(v->w, &fd, &size);
    if (st == CM_OK)
        return seg_answer(resp, fd, size);
    if (st == CM_ABORTED && hls_wait_timed_out(v->w)) {
        api_resp_error(resp, 504, "Segment not ready in time", NULL);
        return CM_OK;
    }
    if (st == CM_BUSY)
        return busy(resp);
    if (st == CM_ABORTED) {
        api_resp_error(resp, 503, "Server is stopping", NULL);
        return CM_OK;
    }
    return api_fail(resp, st,
                    st == CM_NOTFOUND ? "No such segment" : "Transcode failed",
                    NULL);
}

static enum cm_status segment(struct api_req *req, struct api_resp *resp,
                              struct vstate *s, const struct hls_media *md,
                              const char *rung, uint32_t n)
{
    struct hls_wait *w = NULL;
    struct vwait *v;
    int fd;
    uint64_t size;
    enum cm_status st = hls_segment_open(s->m, md, rung, n, &fd, &size, &w);
    if (st == CM_BUSY)
        return busy(resp);
    if (st == CM_ABORTED) {
        api_resp_error(resp, 503, "Server is stopping", NULL);
        return CM_OK;
    }
    if (st != CM_OK)
        return api_fail(resp, st, st == CM_NOTFOUND ? "No such segment" : NULL,
                        NULL);
    if (!w)
        return seg_answer(resp, fd, size);
    v = cm_calloc(1, sizeof *v);
    if (!v) {
        hls_wait_free(w);
        return CM_NOMEM;
    }
    v->w = w;
    req->async = v;
    req->async_free = vwait_free;
    api_req_suspend(req);
    hls_wait_arm(w, on_ready, req);
    return CM_OK;
}

/* ---- Routing --------------------------------------------------------------
 */

enum cm_status api_video_handle(struct api_req *req, struct api_resp *resp)
{
    struct vstate *s = req->video;
    const char *p = req->subpath ? req->subpath : "";
    struct hls_media md;
    enum cm_status st;
    bool proxy = false;
    size_t len;

    if (req->resumed && req->async)
        return segment_resumed(req, resp);
    if (req->method != API_GET && req->method != API_HEAD) {
        resp->allow = "GET, HEAD";
        api_resp_error(resp, 405, "Method not allowed", NULL);
        return CM_OK;
    }
    if (!s)
        return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
    if (strncmp(p, "proxy-stream/", 13) == 0) {
        proxy = true;
        p += 13;
    }
    len = strlen(p);
    /* Match the grammar first: bad paths never touch the store. */
    if (strcmp(p, "stream") == 0) {
        if ((st = load_media(req, s, &md)) == CM_OK)
            st = direct(req, resp, &md);
    } else if (proxy && strcmp(p, "stream.m3u8") == 0) {
        struct hls_rung r;
        if ((st = load_media(req, s, &md)) == CM_OK) {
            char prefix[32];
            hls_rung_for_resolution(&md, md.path != NULL,
                                    api_req_arg(req, "resolution"), &r);
            snprintf(prefix, sizeof prefix, "hls/%s/", r.name);
            st = hls_variant_playlist(s->m, &md, r.name, prefix, &resp->body);
            if (st == CM_OK)
                st = playlist_resp(resp);
        }
    } else if (strcmp(p, "hls/master.m3u8") == 0) {
        if ((st = load_media(req, s, &md)) == CM_OK) {
            st = hls_master_playlist(&md, md.path != NULL, &resp->body);
            if (st == CM_OK)
                st = playlist_resp(resp);
        }
    } else if (len > 4 && strncmp(p, "hls/", 4) == 0) {
        const char *r = p + 4, *slash = strchr(r, '/');
        char rung[16];
        uint32_t n = 0;
        bool index;
        if (!slash || !is_rung(r, (size_t)(slash - r)) ||
            strchr(slash + 1, '/'))
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        index = strcmp(slash + 1, "index.m3u8") == 0;
        if (!index && !seg_number(slash + 1, strlen(slash + 1), &n))
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        memcpy(rung, r, (size_t)(slash - r));
        rung[slash - r] = '\0';
        if ((st = load_media(req, s, &md)) == CM_OK) {
            if (index) {
                st = hls_variant_playlist(s->m, &md, rung, "", &resp->body);
                if (st == CM_OK)
                    st = playlist_resp(resp);
            } else {
                st = segment(req, resp, s, &md, rung, n);
            }
        }
    } else {
        return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
    }
    hls_media_fini(&md);
    if (st == CM_NOTFOUND && !resp->err_msg[0])
        return api_fail(resp, st, "Not found", NULL);
    if (st == CM_UPSTREAM && !resp->err_msg[0])
        return api_fail(resp, st, "Cannot read the video", NULL);
    return st;
}
