/*
 * hls_play.c - the pure parts of video serving: which files a browser
 * plays as they are, HTTP Range parsing, the variant ladder, segment
 * boundaries and the playlists (RFC 8216 VOD playlists synthesized from
 * the duration before any ffmpeg runs).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cm_alloc.h"
#include "hls/hls.h"

void hls_media_fini(struct hls_media *md)
{
    if (!md)
        return;
    cm_free(md->path);
    cm_free(md->url);
    md->path = md->url = NULL;
}

static bool in_list(const char *s, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcasecmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Whether the comma-separated container list fmt holds one of names. */
static bool fmt_has(const char *fmt, const char *const *names)
{
    const char *p = fmt;
    while (*p) {
        size_t n = strcspn(p, ",");
        for (int i = 0; names[i]; i++)
            if (strlen(names[i]) == n && strncasecmp(p, names[i], n) == 0)
                return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static bool eight_bit_420(const char *pix_fmt)
{
    static const char *const ok[] = {"yuv420p", "yuvj420p", "nv12", NULL};
    return !pix_fmt[0] || in_list(pix_fmt, ok);
}

bool hls_can_remux(const struct hls_media *md)
{
    return strcasecmp(md->vcodec, "h264") == 0 && eight_bit_420(md->pix_fmt);
}

const char *hls_direct_type(const struct hls_media *md)
{
    static const char *const mp4[] = {"mp4", "mov", "m4v", NULL};
    static const char *const mkv[] = {"webm", "matroska", "mkv", NULL};
    static const char *const mp4_a[] = {"", "aac", "mp3", NULL};
    static const char *const web_v[] = {"vp8", "vp9", "av1", NULL};
    static const char *const web_a[] = {"", "opus", "vorbis", NULL};

    if (!md->vcodec[0])
        return NULL;
    if (fmt_has(md->format, mp4) && hls_can_remux(md) &&
        in_list(md->acodec, mp4_a))
        return "video/mp4";
    if (fmt_has(md->format, mkv) && in_list(md->vcodec, web_v) &&
        in_list(md->acodec, web_a))
        return "video/webm";
    return NULL;
}

/* ---- Range ------------------------------------------------------------ */

/* Parses decimal digits at p[*i..len) into *v (no overflow).  Returns
 * false when there is no digit or the value overflows. */
static bool digits(const char *p, size_t len, size_t *i, uint64_t *v)
{
    size_t start = *i;
    uint64_t x = 0;
    while (*i < len && p[*i] >= '0' && p[*i] <= '9') {
        unsigned d = (unsigned)(p[*i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        (*i)++;
    }
    *v = x;
    return *i > start;
}

static void skip_ws(const char *p, size_t len, size_t *i)
{
    while (*i < len && (p[*i] == ' ' || p[*i] == '\t'))
        (*i)++;
}

enum cm_status hls_range_parse(const char *buf, size_t len, uint64_t size,
                               uint64_t *off, uint64_t *cnt)
{
    size_t i = 0;
    uint64_t a = 0, b = 0;
    bool has_a, has_b;

    *off = *cnt = 0;
    if (!buf)
        return CM_UNSUPPORTED;
    skip_ws(buf, len, &i);
    if (len - i < 6 || strncasecmp(buf + i, "bytes=", 6) != 0)
        return CM_UNSUPPORTED;
    i += 6;
    skip_ws(buf, len, &i);
    has_a = digits(buf, len, &i, &a);
    if (!has_a && i < len && buf[i] >= '0' && buf[i] <= '9')
        return CM_UNSUPPORTED; /* overflow */
    skip_ws(buf, len, &i);
    if (i >= len || buf[i] != '-')
        return CM_UNSUPPORTED;
    i++;
    skip_ws(buf, len, &i);
    has_b = digits(buf, len, &i, &b);
    if (!has_b && i < len && buf[i] >= '0' && buf[i] <= '9')
        return CM_UNSUPPORTED;
    skip_ws(buf, len, &i);
    if (i != len)
        return CM_UNSUPPORTED; /* trailing bytes or a multi-range list */
    if (!has_a && !has_b)
        return CM_UNSUPPORTED;
    if (has_a && has_b && b < a)
        return CM_UNSUPPORTED; /* invalid: ignored per RFC 9110 14.1.1 */
    if (!has_a) {
        /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return CM_TOOBIG;
        if (b > size)
            b = size;
        *off = size - b;
        *cnt = b;
        return CM_OK;
    }
    if (a >= size)
        return CM_TOOBIG;
    if (!has_b || b >= size)
        b = size - 1;
    *off = a;
    *cnt = b - a + 1;
    return CM_OK;
}

/* ---- Variants --------------------------------------------------------- */

static int even(double v)
{
    int x = (int)lround(v);
    return x & ~1;
}

static void rung_size(const struct hls_media *md, int s, struct hls_rung *r)
{
    r->short_side = s;
    r->width = r->height = 0;
    if (md->width > 0 && md->height > 0) {
        if (md->width >= md->height) {
            r->height = s;
            r->width = even((double)md->width * s / md->height);
        } else {
            r->width = s;
            r->height = even((double)md->height * s / md->width);
        }
    }
}

static int64_t rung_bandwidth(int s)
{
    switch (s) {
    case 1080: return 5000000;
    case 720: return 2800000;
    case 480: return 1400000;
    case 360: return 800000;
    default: {
        double bw = 1400000.0 * (s / 480.0) * (s / 480.0);
        return bw < 300000 ? 300000 : (int64_t)bw;
    }
    }
}

void hls_rungs(const struct hls_media *md, bool local,
               struct hls_rung rungs[HLS_MAX_RUNGS], int *n)
{
    static const int std[] = {1080, 720, 480, 360};
    int src = 0, k = 0;
    bool src_done = false;

    if (md->width > 0 && md->height > 0)
        src = md->width < md->height ? md->width : md->height;
    if (local && hls_can_remux(md)) {
        struct hls_rung *r = &rungs[k++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "copy");
        r->copy = true;
        r->short_side = src;
        r->width = md->width > 0 ? md->width : 0;
        r->height = md->height > 0 ? md->height : 0;
        r->bandwidth = md->bit_rate > 0 ? md->bit_rate : 8000000;
        if (md->bit_rate <= 0 && md->size > 0 && md->duration > 0)
            r->bandwidth = (int64_t)((double)md->size * 8 / md->duration);
    }
    for (int i = 0; i < 4; i++) {
        int s = std[i];
        /* the source's own short side, between the standard rungs */
        if (src > 0 && !src_done && src <= 1080 && src > s) {
            struct hls_rung *r = &rungs[k++];
            memset(r, 0, sizeof *r);
            snprintf(r->name, sizeof r->name, "%dp", src & ~1);
            rung_size(md, src & ~1, r);
            r->bandwidth = rung_bandwidth(src & ~1);
            src_done = true;
        }
        if (src > 0 && s > src)
            continue;
        if (src == s)
            src_done = true;
        if (src == 0 && s > 720)
            continue; /* unknown size: 720p and below */
        {
            struct hls_rung *r = &rungs[k++];
            memset(r, 0, sizeof *r);
            snprintf(r->name, sizeof r->name, "%dp", s);
            rung_size(md, s, r);
            r->bandwidth = rung_bandwidth(s);
        }
    }
    if (src > 0 && src < 360 && !src_done) {
        /* smaller than 360: only the source size */
        struct hls_rung *r = &rungs[k++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%dp", src & ~1);
        rung_size(md, src & ~1, r);
        r->bandwidth = rung_bandwidth(src & ~1);
    }
    *n = k;
}

enum cm_status hls_rung_find(const struct hls_media *md, bool local,
                             const char *name, size_t len, struct hls_rung *out)
{
    struct hls_rung r[HLS_MAX_RUNGS];
    int n;
    hls_rungs(md, local, r, &n);
    for (int i = 0; i < n; i++)
        if (strlen(r[i].name) == len && memcmp(r[i].name, name, len) == 0) {
            *out = r[i];
            return CM_OK;
        }
    return CM_NOTFOUND;
}

void hls_rung_for_resolution(const struct hls_media *md, bool local,
                             const char *resolution, struct hls_rung *out)
{
    static const struct {
        const char *name;
        int side;
    } map[] = {{"FOUR_K", 2160},  {"FULL_HD", 1080}, {"STANDARD_HD", 720},
               {"STANDARD", 480}, {"LOW", 240},      {"ORIGINAL", 100000}};
    struct hls_rung r[HLS_MAX_RUNGS];
    int n, target = 1080, best = -1, smallest = -1;

    hls_rungs(md, local, r, &n);
    for (size_t i = 0; resolution && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(resolution, map[i].name) == 0)
            target = map[i].side;
    if (target == 100000 && n > 0 && r[0].copy) {
        *out = r[0];
        return;
    }
    for (int i = 0; i < n; i++) {
        if (r[i].copy)
            continue;
        if (r[i].short_side <= target &&
            (best < 0 || r[i].short_side > r[best].short_side))
            best = i;
        if (smallest < 0 || r[i].short_side < r[smallest].short_side)
            smallest = i;
    }
    if (best < 0)
        best = smallest >= 0 ? smallest : 0;
    *out = r[best];
}

/* ---- Boundaries --------------------------------------------------------- */

/* A piece shorter than this at the end is merged into the previous one. */
#define MIN_LAST 0.5

enum cm_status hls_grid_bounds(double duration, double fps, double **bounds,
                               uint32_t *n)
{
    double *b;
    uint32_t k, cnt;
    *bounds = NULL;
    *n = 0;
    if (!(duration > 0) || !isfinite(duration))
        return CM_INVALID;
    if (duration / HLS_SEG_SECONDS > HLS_MAX_SEGMENTS)
        return CM_TOOBIG;
    cnt = (uint32_t)ceil((duration - MIN_LAST) / HLS_SEG_SECONDS);
    if (cnt < 1)
        cnt = 1;
    b = cm_malloc(((size_t)cnt + 1) * sizeof *b);
    if (!b)
        return CM_NOMEM;
    for (k = 0; k < cnt; k++) {
        double t = k * HLS_SEG_SECONDS;
        if (fps > 1 && fps < 1000) {
            /* first frame at or after t (1e-6: float noise) */
            t = ceil(t * fps - 1e-6) / fps;
        }
        b[k] = t;
    }
    b[cnt] = duration;
    if (cnt > 1 && b[cnt] - b[cnt - 1] < 0.05) {
        /* the frame grid pushed the last boundary to the end */
        b[cnt - 1] = duration;
        cnt--;
    }
    *bounds = b;
    *n = cnt;
    return CM_OK;
}

enum cm_status hls_keyframe_bounds(const double *kf, size_t nkf,
                                   double duration, double **bounds,
                                   uint32_t *n)
{
    double *b;
    uint32_t cnt = 0;
    size_t j = 0, cap;
    *bounds = NULL;
    *n = 0;
    if (!(duration > 0) || !isfinite(duration))
        return CM_INVALID;
    if (duration / HLS_SEG_SECONDS > HLS_MAX_SEGMENTS)
        return CM_TOOBIG;
    cap = (size_t)ceil(duration / HLS_SEG_SECONDS) + 2;
    b = cm_malloc(cap * sizeof *b);
    if (!b)
        return CM_NOMEM;
    b[cnt++] = 0;
    for (uint32_t k = 1; cnt + 1 < cap; k++) {
        double t = k * HLS_SEG_SECONDS;
        if (t >= duration - MIN_LAST)
            break;
        while (j < nkf && kf[j] < t - 1e-4)
            j++;
        if (j >= nkf || kf[j] >= duration - MIN_LAST)
            break;
        if (kf[j] > b[cnt - 1] + 1e-3)
            b[cnt++] = kf[j];
        j++;
    }
    b[cnt] = duration;
    *bounds = b;
    *n = cnt;
    return CM_OK;
}

/* ---- Playlists ----------------------------------------------------------- */

enum cm_status hls_master_playlist(const struct hls_media *md, bool local,
                                   struct cm_buf *out)
{
    struct hls_rung r[HLS_MAX_RUNGS];
    int n;
    enum cm_status st;
    bool audio = md->acodec[0] != 0;

    hls_rungs(md, local, r, &n);
    if (n == 0)
        return CM_NOTFOUND;
    st = cm_buf_puts(out, "#EXTM3U\n#EXT-X-VERSION:3\n"
                          "#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (int i = 0; st == CM_OK && i < n; i++) {
        st = cm_buf_printf(out, "#EXT-X-STREAM-INF:BANDWIDTH=%lld",
                           (long long)r[i].bandwidth);
        if (st == CM_OK)
            st = cm_buf_printf(out, ",CODECS=\"avc1.640028%s\"",
                               audio ? ",mp4a.40.2" : "");
        if (st == CM_OK && r[i].width > 0 && r[i].height > 0)
            st = cm_buf_printf(out, ",RESOLUTION=%dx%d", r[i].width,
                               r[i].height);
        if (st == CM_OK)
            st = cm_buf_printf(out, ",NAME=\"%s\"\n%s/index.m3u8\n", r[i].name,
                               r[i].name);
    }
    return st;
}

enum cm_status hls_media_playlist(const double *bounds, uint32_t n,
                                  const char *prefix, struct cm_buf *out)
{
    enum cm_status st;
    double maxd = 0;
    for (uint32_t k = 0; k < n; k++)
        if (bounds[k + 1] - bounds[k] > maxd)
            maxd = bounds[k + 1] - bounds[k];
    st = cm_buf_printf(out,
                       "#EXTM3U\n#EXT-X-VERSION:3\n"
                       "#EXT-X-TARGETDURATION:%d\n"
                       "#EXT-X-MEDIA-SEQUENCE:0\n"
                       "#EXT-X-PLAYLIST-TYPE:VOD\n"
                       "#EXT-X-INDEPENDENT-SEGMENTS\n",
                       (int)ceil(maxd - 1e-6) < 1 ? 1 : (int)ceil(maxd - 1e-6));
    for (uint32_t k = 0; st == CM_OK && k < n; k++)
        st = cm_buf_printf(out, "#EXTINF:%.6f,\n%s%u.ts\n",
                           bounds[k + 1] - bounds[k], prefix, k);
    if (st == CM_OK)
        st = cm_buf_puts(out, "#EXT-X-ENDLIST\n");
    return st;
}
