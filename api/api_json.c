/*
 * api_json.c - hand-written JSON rendering of scenes (Peek's
 * NormalizedScene, peek-api.md §4.2) straight into a cm_buf: no cJSON
 * trees and no printf on the hot path.  Arrays are never null; every ref
 * carries the constant instanceId; asset paths are rewritten to peekd URLs
 * (images under /api/proxy/..., streams under /api/scene/{id}/...).
 *
 * Cost model (a 24-scene page is ~65 KB): every write is an inline
 * bounds check + memcpy (api_put), numbers are formatted by hand, strings
 * are escaped with a table-driven copy loop.  The entity fields a scene
 * record does not embed (parent studio, inherited tags) and each scene's
 * rendered JSON (minus its request-dependent sceneStreams) are kept in a
 * per-thread cache tied to one LMDB snapshot (see api_handlers.h), so a
 * repeated page is two memcpys and two URLs per scene.
 */
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"

#define TRY(x)                                                                 \
    do {                                                                       \
        if ((st = (x)) != CM_OK)                                               \
            goto out;                                                          \
    } while (0)
#define LIT(b, s) API_LIT((b), (s))

#define MAX_INHERITED 256 /* inherited tags rendered per scene */

/* ---- Numbers ------------------------------------------------------------ */

static const char digits2[] = "00010203040506070809"
                              "10111213141516171819"
                              "20212223242526272829"
                              "30313233343536373839"
                              "40414243444546474849"
                              "50515253545556575859"
                              "60616263646566676869"
                              "70717273747576777879"
                              "80818283848586878889"
                              "90919293949596979899";

char *api_fmt_u64(char *end, uint64_t v)
{
    char *p = end;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, digits2 + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, digits2 + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    return p;
}

enum cm_status api_json_u64(struct cm_buf *b, uint64_t v)
{
    char tmp[API_U64_CHARS];
    char *p = api_fmt_u64(tmp + sizeof tmp, v);
    return api_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

enum cm_status api_json_i64(struct cm_buf *b, int64_t v)
{
    char tmp[API_U64_CHARS];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = api_fmt_u64(tmp + sizeof tmp, u);
    if (v < 0)
        *--p = '-';
    return api_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

enum cm_status api_json_id(struct cm_buf *b, uint64_t v)
{
    char tmp[API_U64_CHARS + 2];
    char *e = tmp + sizeof tmp - 1, *p;
    *e = '"';
    p = api_fmt_u64(e, v);
    *--p = '"';
    return api_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* The former printf path, kept for the values the fast path declines. */
static size_t fmt_double_printf(double v, char *out)
{
    int n = snprintf(out, API_DBL_CHARS, "%.15g", v);
    if (n > 0 && n < API_DBL_CHARS && strtod(out, NULL) != v)
        n = snprintf(out, API_DBL_CHARS, "%.17g", v);
    if (n <= 0 || n >= API_DBL_CHARS)
        return 0; /* cannot happen for a finite double */
    return (size_t)n;
}

size_t api_fmt_double(double v, char *out)
{
    char tmp[API_U64_CHARS];
    char *p, *o = out;
    double a;
    size_t n;

    if (!isfinite(v))
        return 0;
    if (v == floor(v) && fabs(v) < 9e15) {
        int64_t i = (int64_t)v;
        uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
        p = api_fmt_u64(tmp + sizeof tmp, u);
        if (i < 0)
            *o++ = '-';
        n = (size_t)(tmp + sizeof tmp - p);
        memcpy(o, p, n);
        return (size_t)(o - out) + n;
    }
    /* Up to 6 decimals (durations, frame rates, play positions): when
     * r / 1e6 rounds to exactly a, the decimal d = r / 1e6 has at most 15
     * significant digits (a < 1e9) and lies within half an ulp of a, so
     * "%.15g" prints d (fixed notation: a >= 1e-4), trailing zeros
     * trimmed, and d reads back as a.  Same text, no printf. */
    a = fabs(v);
    if (a >= 1e-4 && a < 1e9) {
        uint64_t r = (uint64_t)(a * 1e6 + 0.5);
        if ((double)r / 1e6 == a) {
            uint64_t ip = r / 1000000, fp = r % 1000000;
            char frac[6];
            size_t fl = 6;
            if (v < 0)
                *o++ = '-';
            p = api_fmt_u64(tmp + sizeof tmp, ip);
            n = (size_t)(tmp + sizeof tmp - p);
            memcpy(o, p, n);
            o += n;
            for (int i = 5; i >= 0; i--) {
                frac[i] = (char)('0' + fp % 10);
                fp /= 10;
            }
            while (fl > 0 && frac[fl - 1] == '0')
                fl--;
            if (fl) { /* always: a is not integral */
                *o++ = '.';
                memcpy(o, frac, fl);
                o += fl;
            }
            return (size_t)(o - out);
        }
    }
    return fmt_double_printf(v, out);
}

enum cm_status api_json_double(struct cm_buf *b, double v)
{
    char tmp[API_DBL_CHARS];
    size_t n = api_fmt_double(v, tmp);
    if (!n)
        return LIT(b, "null");
    return api_put(b, tmp, n);
}

/* ---- Strings ------------------------------------------------------------ */

/* 1 = copied as is (printable ASCII but '"' and '\\'). */
static const unsigned char plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),
    /* 0x20..0x2F: '"' = 0x22 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x30..0x5F: '\\' = 0x5C */
    R16(1), R16(1), 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    /* 0x60..0x7F */
    R16(1), R16(1),
    /* 0x80..0xFF */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0)
#undef R16
};

enum cm_status api_json_strn(struct cm_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t start = b->len, i = 0;
    enum cm_status st;
    char *o;

    if (!s)
        return LIT(b, "null");
    /* Room for the 1:1 copy and both quotes; a byte that expands (escape:
     * up to 6, invalid UTF-8: 3) reserves again below. */
    if (n > SIZE_MAX - 3)
        return CM_TOOBIG;
    if (b->cap - b->len <= n + 2 && (st = cm_buf_reserve(b, n + 2)) != CM_OK)
        return st;
    o = b->data + b->len;
    *o++ = '"';
    for (;;) {
        unsigned char c;
        char esc[6];
        size_t elen, used;
        while (i < n && plain[p[i]])
            *o++ = (char)p[i++];
        if (i == n)
            break;
        c = p[i];
        if (c >= 0x80) {
            size_t ulen = cm_utf8_len(p + i, n - i);
            if (ulen) {
                memcpy(o, p + i, ulen); /* 1:1: room reserved */
                o += ulen;
                i += ulen;
                continue;
            }
            memcpy(esc, "\xEF\xBF\xBD", 3);
            elen = 3;
        } else {
            esc[0] = '\\';
            elen = 2;
            switch (c) {
            case '"': esc[1] = '"'; break;
            case '\\': esc[1] = '\\'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            case '\b': esc[1] = 'b'; break;
            case '\f': esc[1] = 'f'; break;
            default:
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                elen = 6;
            }
        }
        /* Make room for the expansion plus the rest 1:1 and the quote. */
        used = (size_t)(o - b->data);
        b->len = used;
        st = cm_buf_reserve(b, elen + (n - i - 1) + 1);
        if (st != CM_OK) {
            cm_buf_truncate(b, start);
            return st;
        }
        o = b->data + used;
        memcpy(o, esc, elen);
        o += elen;
        i++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return CM_OK;
}

enum cm_status api_json_str(struct cm_buf *b, struct kv_str s)
{
    if (!s.p)
        return LIT(b, "null");
    return api_json_strn(b, s.p, s.len);
}

/* n as at least width digits (zero-padded) into out; returns the length. */
static size_t pad_digits(char *out, unsigned v, unsigned width)
{
    char tmp[API_U64_CHARS];
    char *p = api_fmt_u64(tmp + sizeof tmp, v);
    size_t n = (size_t)(tmp + sizeof tmp - p), k = 0;
    while (n + k < width)
        out[k++] = '0';
    memcpy(out + k, p, n);
    return k + n;
}

enum cm_status api_json_date(struct cm_buf *b, struct kv_date d)
{
    char tmp[32];
    size_t n = 0;
    if (d.year <= 0)
        return LIT(b, "null");
    tmp[n++] = '"';
    n += pad_digits(tmp + n, (unsigned)d.year, 4);
    if (d.month) {
        tmp[n++] = '-';
        n += pad_digits(tmp + n, d.month, 2);
        if (d.day) {
            tmp[n++] = '-';
            n += pad_digits(tmp + n, d.day, 2);
        }
    }
    tmp[n++] = '"';
    return api_put(b, tmp, n);
}

/* ---- Entity cache --------------------------------------------------------
 *
 * What the renderer needs of an entity, copied out of the record (so an
 * entry outlives the read transaction it came from): name, whether it has
 * an image, favorite, the first parent (studios), the tag ids (performers,
 * studios, groups).  The cache is keyed by LMDB's snapshot id: any commit
 * (this process or another) changes it, and the next request on a newer
 * snapshot starts from an empty table.  A request on an older snapshot
 * than the cached one (possible with two threads around a commit) bypasses
 * the table (scratch entries only).
 */

struct einfo {
    struct kv_str name; /* owned (in blk) */
    uint64_t *tags;     /* owned (in blk) */
    uint32_t n_tags;
    uint64_t parent0; /* first parent, 0 = none */
    bool has_image;
    bool favorite;
    void *blk; /* the one allocation behind name and tags */
};

struct ecache_ent {
    uint64_t id;
    uint8_t type; /* 0 = empty slot */
    bool found;   /* false: cached "not found" */
    struct einfo e;
};

/* A scene fragment (see "Scene fragments" below). */
struct frag {
    uint32_t docid;
    bool used;
    uint64_t id;      /* Stash id (for the stream URLs) */
    const char *mime; /* static; NULL = no file */
    char *data;       /* part a ‖ part b */
    size_t a_len, b_len;
};

struct api_ecache {
    struct kv_txn *t;        /* the current request's transaction */
    size_t txnid;            /* snapshot of the entries */
    bool bypass;             /* request older than the entries: scratch only */
    struct ecache_ent *slot; /* open addressing, linear probing */
    size_t cap, n;           /* cap: a power of two; n <= cap / 2 */
    /* Past API_ECACHE_MAX (or bypassing): decoded into these in turn (a
     * caller holds at most two results at a time: a studio and its
     * parent). */
    struct einfo scratch[2];
    unsigned next;
    struct frag *frag; /* scene fragments (see below); NULL = none */
    size_t fcap, fn, fbytes;
};

static void frags_clear(struct api_ecache *c);

static void einfo_fini(struct einfo *e)
{
    cm_free(e->blk);
    memset(e, 0, sizeof *e);
}

/* Reads (type, id) into *out (owned copies).  CM_NOTFOUND, CM_CORRUPT,
 * CM_IO, CM_NOMEM. */
static enum cm_status einfo_load(struct kv_txn *t, uint8_t type, uint64_t id,
                                 struct einfo *out)
{
    struct kv_entity e;
    enum cm_status st;
    size_t tags_sz, sz;
    char *blk;

    memset(out, 0, sizeof *out);
    st = kv_entity_get(t, type, id, &e);
    if (st != CM_OK)
        return st;
    tags_sz = (size_t)e.n_tags * sizeof(uint64_t);
    sz = tags_sz + (e.name.p ? e.name.len : 0) + 1;
    blk = cm_malloc(sz);
    if (!blk) {
        kv_entity_fini(&e);
        return CM_NOMEM;
    }
    out->blk = blk;
    out->tags = (uint64_t *)(void *)blk; /* malloc alignment */
    if (tags_sz)
        memcpy(out->tags, e.tags, tags_sz);
    out->n_tags = e.n_tags;
    if (e.name.p) {
        memcpy(blk + tags_sz, e.name.p, e.name.len);
        out->name.p = blk + tags_sz;
        out->name.len = e.name.len;
    }
    out->parent0 = e.n_parents > 0 ? e.parents[0] : 0;
    out->has_image = kv_str_set(e.image);
    out->favorite = e.favorite;
    kv_entity_fini(&e);
    return CM_OK;
}

static void eclear(struct api_ecache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->slot[i].type && c->slot[i].found)
            einfo_fini(&c->slot[i].e);
    memset(c->slot, 0, c->cap * sizeof *c->slot);
    c->n = 0;
    frags_clear(c);
}

enum cm_status api_ecache_new(struct api_ecache **out)
{
    struct api_ecache *c = cm_calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return CM_NOMEM;
    c->cap = 64;
    c->slot = cm_calloc(c->cap, sizeof *c->slot);
    c->fcap = API_FRAG_SLOTS;
    c->frag = cm_calloc(c->fcap, sizeof *c->frag);
    if (!c->slot || !c->frag) {
        cm_free(c->slot);
        cm_free(c->frag);
        cm_free(c);
        return CM_NOMEM;
    }
    *out = c;
    return CM_OK;
}

void api_ecache_begin(struct api_ecache *c, struct kv_txn *t)
{
    size_t id = mdb_txn_id(kv_txn_mdb(t));
    c->t = t;
    c->bypass = false;
    if (id == c->txnid)
        return;
    if (id < c->txnid && (c->n || c->fn)) {
        c->bypass = true;
        return;
    }
    eclear(c);
    c->txnid = id;
}

void api_ecache_free(struct api_ecache *c)
{
    if (!c)
        return;
    eclear(c);
    for (int i = 0; i < 2; i++)
        einfo_fini(&c->scratch[i]);
    cm_free(c->slot);
    cm_free(c->frag);
    cm_free(c);
}

static size_t ehash(uint8_t type, uint64_t id, size_t cap)
{
    uint64_t h = (id ^ ((uint64_t)type << 56)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (cap - 1);
}

static struct ecache_ent *eslot(struct api_ecache *c, uint8_t type, uint64_t id)
{
    size_t i = ehash(type, id, c->cap);
    while (c->slot[i].type && (c->slot[i].type != type || c->slot[i].id != id))
        i = (i + 1) & (c->cap - 1);
    return &c->slot[i];
}

/* Doubles the table; false when at the bound or out of memory (the cache
 * then stops growing: lookups still work, uncached). */
static bool egrow(struct api_ecache *c)
{
    struct ecache_ent *old = c->slot;
    size_t ocap = c->cap;
    if (ocap >= 2 * API_ECACHE_MAX)
        return false;
    c->slot = cm_calloc(ocap * 2, sizeof *c->slot);
    if (!c->slot) {
        c->slot = old;
        return false;
    }
    c->cap = ocap * 2;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].type)
            *eslot(c, old[i].type, old[i].id) = old[i];
    cm_free(old);
    return true;
}

/* The entity (type, id).  OUT *out: borrowed until the next
 * api_ecache_begin(), or (past the bound) until the second-next call.
 * CM_NOTFOUND (*out NULL), CM_CORRUPT, CM_IO, CM_NOMEM. */
static enum cm_status ent_get(struct api_ecache *c, uint8_t type, uint64_t id,
                              const struct einfo **out)
{
    struct ecache_ent *s = NULL;
    enum cm_status st;
    *out = NULL;
    if (!c->bypass) {
        s = eslot(c, type, id);
        if (s->type) {
            *out = s->found ? &s->e : NULL;
            return s->found ? CM_OK : CM_NOTFOUND;
        }
        if ((c->n + 1) * 2 > c->cap)
            s = egrow(c) ? eslot(c, type, id) : NULL;
    }
    if (!s) {
        unsigned k = c->next++ & 1;
        einfo_fini(&c->scratch[k]);
        st = einfo_load(c->t, type, id, &c->scratch[k]);
        if (st == CM_OK)
            *out = &c->scratch[k];
        return st;
    }
    st = einfo_load(c->t, type, id, &s->e);
    if (st != CM_OK && st != CM_NOTFOUND)
        return st;
    s->type = type;
    s->id = id;
    s->found = st == CM_OK;
    c->n++;
    *out = s->found ? &s->e : NULL;
    return st;
}

/* ---- Scene pieces ----------------------------------------------------- */

static enum cm_status put_bool(struct cm_buf *b, bool v)
{
    return v ? LIT(b, "true") : LIT(b, "false");
}

static enum cm_status put_i32_or_null(struct cm_buf *b, int32_t v)
{
    return v < 0 ? LIT(b, "null") : api_json_u64(b, (uint64_t)v);
}

static const char *const genders[] = {
    [KV_GENDER_MALE] = "\"MALE\"",
    [KV_GENDER_FEMALE] = "\"FEMALE\"",
    [KV_GENDER_TRANSGENDER_MALE] = "\"TRANSGENDER_MALE\"",
    [KV_GENDER_TRANSGENDER_FEMALE] = "\"TRANSGENDER_FEMALE\"",
    [KV_GENDER_INTERSEX] = "\"INTERSEX\"",
    [KV_GENDER_NON_BINARY] = "\"NON_BINARY\"",
};

static enum cm_status put_gender(struct cm_buf *b, uint8_t g)
{
    const char *s = g < sizeof genders / sizeof genders[0] ? genders[g] : NULL;
    if (!s)
        return LIT(b, "null");
    return api_put(b, s, strlen(s));
}

/* "<pre><id><post>" written in place (the ids of a scene's URLs and refs:
 * ~20 per scene). */
static enum cm_status put_id_path(struct cm_buf *b, const char *pre,
                                  size_t pre_len, uint64_t id, const char *post,
                                  size_t post_len)
{
    char num[API_U64_CHARS];
    char *p = api_fmt_u64(num + sizeof num, id), *o;
    size_t nl = (size_t)(num + sizeof num - p), n = pre_len + nl + post_len;
    enum cm_status st;
    if (b->cap - b->len <= n && (st = cm_buf_reserve(b, n)) != CM_OK)
        return st;
    o = b->data + b->len;
    memcpy(o, pre, pre_len);
    memcpy(o + pre_len, p, nl);
    memcpy(o + pre_len + nl, post, post_len);
    b->len += n;
    b->data[b->len] = '\0';
    return CM_OK;
}
#define PUT_ID_PATH(b, pre, id, post)                                          \
    put_id_path((b), (pre), sizeof(pre) - 1, (id), (post), sizeof(post) - 1)

/* "/api/proxy/<kind>/<id>/image" or null when the entity has no image.
 * kind is a literal ("\"/api/proxy/studio/"). */
#define PUT_ENTITY_IMAGE(b, prefix, id, has)                                   \
    ((has) ? PUT_ID_PATH((b), prefix, (id), "/image\"") : LIT((b), "null"))

/* {"id":"<id>","instanceId":"peekd" */
static enum cm_status put_ref_head(struct cm_buf *b, uint64_t id)
{
    return PUT_ID_PATH(b, "{\"id\":\"", id,
                       "\",\"instanceId\":\"" API_INSTANCE_ID "\"");
}

static bool str_ieq(struct kv_str s, const char *lit)
{
    size_t n = strlen(lit);
    if (!s.p || s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s.p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return false;
    }
    return true;
}

static bool str_in(struct kv_str s, const char *const *list)
{
    for (; *list; list++)
        if (str_ieq(s, *list))
            return true;
    return false;
}

static const char *mime_of(struct kv_str format)
{
    if (str_ieq(format, "webm"))
        return "\"video/webm\"";
    if (str_ieq(format, "mkv") || str_ieq(format, "matroska"))
        return "\"video/x-matroska\"";
    if (str_ieq(format, "mov"))
        return "\"video/quicktime\"";
    if (str_ieq(format, "avi"))
        return "\"video/x-msvideo\"";
    return "\"video/mp4\"";
}

/* Peek's codecDetection: what a browser plays directly. */
static enum cm_status put_streamability(struct cm_buf *b,
                                        const struct kv_scene *sc)
{
    static const char *const vcodecs[] = {"h264", "hevc", "h265", "vp9",
                                          "vp8",  "av1",  NULL};
    static const char *const acodecs[] = {"aac",  "opus", "mp3", "vorbis",
                                          "flac", "",     NULL};
    static const char *const formats[] = {"mp4", "webm", "m4v", "mov", NULL};
    enum cm_status st;
    const char *reasons[4];
    int n = 0;
    if (sc->n_files == 0) {
        reasons[n++] = "\"no file\"";
    } else {
        const struct kv_file *f = &sc->files[0];
        if (f->video_codec.p && !str_in(f->video_codec, vcodecs))
            reasons[n++] = "\"unsupported video codec\"";
        if (f->audio_codec.p && !str_in(f->audio_codec, acodecs))
            reasons[n++] = "\"unsupported audio codec\"";
        if (f->format.p && !str_in(f->format, formats))
            reasons[n++] = "\"unsupported container\"";
    }
    TRY(n == 0 ? LIT(b, ",\"isStreamable\":true,\"streamabilityReasons\":[")
               : LIT(b, ",\"isStreamable\":false,\"streamabilityReasons\":["));
    for (int i = 0; i < n; i++) {
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(api_put(b, reasons[i], strlen(reasons[i])));
    }
    TRY(api_put(b, "]", 1));
out:
    return st;
}

static enum cm_status put_file(struct cm_buf *b, const struct kv_file *f)
{
    enum cm_status st;
    TRY(LIT(b, "{\"path\":"));
    TRY(api_json_str(b, f->path));
    TRY(LIT(b, ",\"basename\":"));
    TRY(api_json_str(b, f->basename));
    TRY(LIT(b, ",\"duration\":"));
    TRY(api_json_double(b, f->duration));
    TRY(LIT(b, ",\"bit_rate\":"));
    TRY(api_json_i64(b, f->bit_rate));
    TRY(LIT(b, ",\"frame_rate\":"));
    TRY(api_json_double(b, f->frame_rate));
    TRY(LIT(b, ",\"width\":"));
    TRY(api_json_i64(b, f->width));
    TRY(LIT(b, ",\"height\":"));
    TRY(api_json_i64(b, f->height));
    TRY(LIT(b, ",\"video_codec\":"));
    TRY(api_json_str(b, f->video_codec));
    TRY(LIT(b, ",\"audio_codec\":"));
    TRY(api_json_str(b, f->audio_codec));
    TRY(LIT(b, ",\"size\":"));
    TRY(api_json_i64(b, f->size));
    TRY(LIT(b, ",\"format\":"));
    TRY(api_json_str(b, f->format));
    TRY(api_put(b, "}", 1));
out:
    return st;
}

static enum cm_status put_studio(struct cm_buf *b, struct api_ecache *ec,
                                 const struct kv_ref *s)
{
    enum cm_status st;
    const struct einfo *e, *pe;
    uint64_t pid;
    TRY(put_ref_head(b, s->id));
    TRY(LIT(b, ",\"name\":"));
    TRY(api_json_str(b, s->name));
    TRY(LIT(b, ",\"image_path\":"));
    TRY(PUT_ENTITY_IMAGE(b, "\"/api/proxy/studio/", s->id, s->has_image));
    TRY(s->favorite ? LIT(b, ",\"favorite\":true,\"parent_studio\":")
                    : LIT(b, ",\"favorite\":false,\"parent_studio\":"));
    st = ent_get(ec, KV_STUDIO, s->id, &e);
    if (st != CM_OK && st != CM_NOTFOUND)
        goto out;
    if (e && e->parent0) {
        pid = e->parent0;
        st = ent_get(ec, KV_STUDIO, pid, &pe);
        if (st != CM_OK && st != CM_NOTFOUND)
            goto out;
        TRY(put_ref_head(b, pid));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, pe ? pe->name : (struct kv_str){NULL, 0}));
        TRY(LIT(b, "}}"));
    } else {
        TRY(LIT(b, "null}"));
    }
    st = CM_OK;
out:
    return st;
}

static bool has_id(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Adds the tag ids of entity (type, id) not yet in inh[] nor direct. */
static enum cm_status collect_tags(struct api_ecache *ec,
                                   const struct kv_scene *sc, uint8_t type,
                                   uint64_t id, uint64_t *inh, size_t *n)
{
    const struct einfo *e;
    enum cm_status st = ent_get(ec, type, id, &e);
    if (st == CM_NOTFOUND)
        return CM_OK;
    if (st != CM_OK)
        return st;
    for (uint32_t i = 0; i < e->n_tags && *n < MAX_INHERITED; i++) {
        uint64_t tid = e->tags[i];
        bool direct = false;
        for (uint32_t k = 0; k < sc->n_tags; k++)
            if (sc->tags[k].id == tid)
                direct = true;
        if (!direct && !has_id(inh, *n, tid))
            inh[(*n)++] = tid;
    }
    return CM_OK;
}

static enum cm_status put_inherited(struct cm_buf *b, struct api_ecache *ec,
                                    const struct kv_scene *sc)
{
    enum cm_status st = CM_OK;
    uint64_t inh[MAX_INHERITED]; /* 2 KiB of stack */
    size_t n = 0;
    for (uint32_t i = 0; i < sc->n_performers; i++)
        TRY(collect_tags(ec, sc, KV_PERFORMER, sc->performers[i].id, inh, &n));
    if (sc->studio.id)
        TRY(collect_tags(ec, sc, KV_STUDIO, sc->studio.id, inh, &n));
    for (uint32_t i = 0; i < sc->n_groups; i++)
        TRY(collect_tags(ec, sc, KV_GROUP, sc->groups[i].id, inh, &n));
    TRY(LIT(b, ",\"inheritedTagIds\":["));
    for (size_t i = 0; i < n; i++) {
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(api_json_id(b, inh[i]));
    }
    TRY(LIT(b, "],\"inheritedTags\":["));
    for (size_t i = 0; i < n; i++) {
        const struct einfo *e;
        struct kv_str none = {NULL, 0};
        st = ent_get(ec, KV_TAG, inh[i], &e);
        if (st != CM_OK && st != CM_NOTFOUND)
            goto out;
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(put_ref_head(b, inh[i]));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, e ? e->name : none));
        TRY(LIT(b, ",\"image_path\":"));
        if (e && e->has_image)
            TRY(PUT_ID_PATH(b, "\"/api/proxy/tag/", inh[i], "/image\""));
        else
            TRY(LIT(b, "null"));
        TRY(e && e->favorite ? LIT(b, ",\"favorite\":true}")
                             : LIT(b, ",\"favorite\":false}"));
    }
    TRY(api_put(b, "]", 1));
out:
    return st;
}

static enum cm_status put_refs(struct cm_buf *b, struct api_ecache *ec,
                               const struct kv_scene *sc)
{
    enum cm_status st;
    TRY(LIT(b, ",\"studio\":"));
    if (sc->studio.id)
        TRY(put_studio(b, ec, &sc->studio));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"performers\":["));
    for (uint32_t i = 0; i < sc->n_performers; i++) {
        const struct kv_ref *r = &sc->performers[i];
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"disambiguation\":"));
        TRY(api_json_str(b, r->aux));
        TRY(LIT(b, ",\"gender\":"));
        TRY(put_gender(b, r->gender));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(PUT_ENTITY_IMAGE(b, "\"/api/proxy/performer/", r->id,
                             r->has_image));
        TRY(r->favorite ? LIT(b, ",\"favorite\":true,\"rating100\":")
                        : LIT(b, ",\"favorite\":false,\"rating100\":"));
        TRY(put_i32_or_null(b, r->rating100));
        TRY(api_put(b, "}", 1));
    }
    TRY(LIT(b, "],\"tags\":["));
    for (uint32_t i = 0; i < sc->n_tags; i++) {
        const struct kv_ref *r = &sc->tags[i];
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(PUT_ENTITY_IMAGE(b, "\"/api/proxy/tag/", r->id, r->has_image));
        TRY(r->favorite ? LIT(b, ",\"favorite\":true}")
                        : LIT(b, ",\"favorite\":false}"));
    }
    TRY(api_put(b, "]", 1));
    TRY(put_inherited(b, ec, sc));
    TRY(LIT(b, ",\"groups\":["));
    for (uint32_t i = 0; i < sc->n_groups; i++) {
        const struct kv_ref *r = &sc->groups[i];
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"front_image_path\":"));
        TRY(PUT_ENTITY_IMAGE(b, "\"/api/proxy/group/", r->id, r->has_image));
        TRY(LIT(b, ",\"back_image_path\":"));
        if (r->has_back_image)
            TRY(PUT_ID_PATH(b, "\"/api/proxy/group/", r->id, "/back_image\""));
        else
            TRY(LIT(b, "null"));
        TRY(LIT(b, ",\"scene_index\":"));
        TRY(put_i32_or_null(b, r->index));
        TRY(api_put(b, "}", 1));
    }
    TRY(LIT(b, "],\"galleries\":["));
    for (uint32_t i = 0; i < sc->n_galleries; i++) {
        const struct kv_ref *r = &sc->galleries[i];
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"title\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"cover\":"));
        TRY(PUT_ENTITY_IMAGE(b, "\"/api/proxy/gallery/", r->id, r->has_image));
        TRY(api_put(b, "}", 1));
    }
    TRY(api_put(b, "]", 1));
out:
    return st;
}

/* Scene asset path: /api/proxy/scene/<id>/<what> when Stash has one. */
#define PUT_SCENE_ASSET(b, id, what, path)                                     \
    (((path).p && (path).len)                                                  \
         ? PUT_ID_PATH((b), "\"/api/proxy/scene/", (id), "/" what "\"")        \
         : LIT((b), "null"))

static enum cm_status put_paths(struct cm_buf *b, const struct kv_scene *sc)
{
    enum cm_status st;
    uint64_t id = sc->id;
    TRY(LIT(b, ",\"paths\":{\"screenshot\":"));
    TRY(PUT_SCENE_ASSET(b, id, "screenshot", sc->p_screenshot));
    TRY(LIT(b, ",\"preview\":"));
    TRY(PUT_SCENE_ASSET(b, id, "preview", sc->p_preview));
    TRY(LIT(b, ",\"stream\":"));
    if (sc->n_files)
        TRY(PUT_ID_PATH(b, "\"/api/scene/", id, "/stream\""));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"sprite\":"));
    TRY(PUT_SCENE_ASSET(b, id, "sprite", sc->p_sprite));
    TRY(LIT(b, ",\"vtt\":"));
    TRY(PUT_SCENE_ASSET(b, id, "vtt", sc->p_vtt));
    TRY(LIT(b, ",\"chapters_vtt\":null,\"caption\":"));
    if (sc->p_caption.p && sc->p_caption.len)
        TRY(PUT_ID_PATH(b, "\"/api/scene/", id, "/caption\""));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"webp\":"));
    TRY(PUT_SCENE_ASSET(b, id, "webp", sc->p_webp));
    TRY(api_put(b, "}", 1));
out:
    return st;
}

/* "<base>/api/scene/<id>/<rest>" as a JSON string.  The base (public URL
 * or Host header) is escaped as before; the rest is plain ASCII. */
static enum cm_status put_url(struct cm_buf *b, const char *base,
                              size_t base_len, uint64_t id, const char *rest,
                              size_t rest_len)
{
    enum cm_status st;
    size_t start = b->len;
    if (base_len > CM_MAX_CONFIG_VALUE)
        return CM_TOOBIG;
    TRY(api_json_strn(b, base, base_len));
    cm_buf_truncate(b, b->len - 1); /* reopen the string */
    TRY(put_id_path(b, "/api/scene/", 11, id, rest, rest_len));
    TRY(api_put(b, "\"", 1));
out:
    if (st != CM_OK && b->len >= start)
        cm_buf_truncate(b, start);
    return st;
}

/* Direct stream first (the client tries it first), then the HLS master
 * playlist (adaptive: its variants are the hls module's business). */
static enum cm_status put_streams(struct cm_buf *b, uint64_t id,
                                  const char *mime, const char *base,
                                  size_t base_len)
{
    enum cm_status st;
    TRY(LIT(b, ",\"sceneStreams\":["));
    if (mime) { /* the scene has a file */
        TRY(LIT(b, "{\"url\":"));
        TRY(put_url(b, base, base_len, id, "/stream", 7));
        TRY(LIT(b, ",\"mime_type\":"));
        TRY(api_put(b, mime, strlen(mime)));
        TRY(LIT(b, ",\"label\":\"Direct stream\"},{\"url\":"));
        TRY(put_url(b, base, base_len, id, "/hls/master.m3u8", 16));
        TRY(LIT(b, ",\"mime_type\":\"application/vnd.apple.mpegurl\","
                   "\"label\":\"HLS\"}"));
    }
    TRY(api_put(b, "]", 1));
out:
    return st;
}

static enum cm_status put_stash_url(struct cm_buf *b, const char *stash,
                                    uint64_t id)
{
    char tmp[CM_MAX_CONFIG_VALUE + 64];
    int n;
    if (!stash)
        return LIT(b, "null");
    n = snprintf(tmp, sizeof tmp, "%s/scenes/%llu", stash,
                 (unsigned long long)id);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return LIT(b, "null");
    return api_json_strn(b, tmp, (size_t)n);
}

/* The part of a scene object before sceneStreams. */
static enum cm_status scene_part_a(const struct kv_scene *sc, struct cm_buf *b)
{
    enum cm_status st;
    struct kv_str title = sc->title;
    if ((!title.p || !title.len) && sc->n_files)
        title = sc->files[0].basename;
    TRY(PUT_ID_PATH(b, "{\"id\":\"", sc->id,
                    "\",\"instanceId\":\"" API_INSTANCE_ID "\",\"title\":"));
    TRY(api_json_str(b, title));
    TRY(LIT(b, ",\"code\":"));
    TRY(api_json_str(b, sc->code));
    TRY(LIT(b, ",\"date\":"));
    TRY(api_json_date(b, sc->date));
    TRY(LIT(b, ",\"details\":"));
    TRY(api_json_str(b, sc->details));
    TRY(LIT(b, ",\"director\":"));
    TRY(api_json_str(b, sc->director));
    TRY(LIT(b, ",\"organized\":"));
    TRY(put_bool(b, sc->organized));
    TRY(LIT(b, ",\"interactive\":"));
    TRY(put_bool(b, sc->interactive));
    TRY(LIT(b, ",\"created_at\":"));
    TRY(api_json_str(b, sc->created_at));
    TRY(LIT(b, ",\"updated_at\":"));
    TRY(api_json_str(b, sc->updated_at));
    TRY(LIT(b, ",\"urls\":["));
    for (uint32_t i = 0; i < sc->n_urls; i++) {
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(api_json_str(b, sc->urls[i]));
    }
    TRY(LIT(b, "],\"studioId\":"));
    if (sc->studio.id)
        TRY(api_json_id(b, sc->studio.id));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"rating\":"));
    TRY(put_i32_or_null(b, sc->rating100));
    TRY(LIT(b, ",\"rating100\":"));
    TRY(put_i32_or_null(b, sc->rating100));
    TRY(LIT(b, ",\"favorite\":false,\"o_counter\":"));
    TRY(api_json_i64(b, sc->o_counter));
    TRY(LIT(b, ",\"play_count\":"));
    TRY(api_json_i64(b, sc->play_count));
    TRY(LIT(b, ",\"play_duration\":"));
    TRY(api_json_double(b, sc->play_duration < 0 ? 0 : sc->play_duration));
    TRY(LIT(b, ",\"resume_time\":"));
    TRY(api_json_double(b, sc->resume_time < 0 ? 0 : sc->resume_time));
    TRY(LIT(b, ",\"play_history\":[],\"o_history\":[],\"last_played_at\":"));
    TRY(api_json_str(b, sc->last_played_at));
    TRY(LIT(b, ",\"last_o_at\":null,\"files\":["));
    if (sc->n_files)
        TRY(put_file(b, &sc->files[0]));
    TRY(api_put(b, "]", 1));
    TRY(put_paths(b, sc));
out:
    return st;
}

/* The part after sceneStreams (to the closing brace). */
static enum cm_status scene_part_b(const struct cm_config *cfg,
                                   struct api_ecache *ec,
                                   const struct kv_scene *sc, struct cm_buf *b)
{
    enum cm_status st;
    TRY(LIT(b, ",\"captions\":["));
    for (uint32_t i = 0; i < sc->n_captions; i++) {
        if (i)
            TRY(api_put(b, ",", 1));
        TRY(LIT(b, "{\"language_code\":"));
        TRY(api_json_str(b, sc->captions[i].language_code));
        TRY(LIT(b, ",\"caption_type\":"));
        TRY(api_json_str(b, sc->captions[i].caption_type));
        TRY(api_put(b, "}", 1));
    }
    TRY(api_put(b, "]", 1));
    TRY(put_refs(b, ec, sc));
    TRY(put_streamability(b, sc));
    TRY(LIT(b, ",\"stashUrl\":"));
    TRY(put_stash_url(b, cfg ? cfg->stash_url : NULL, sc->id));
    TRY(api_put(b, "}", 1));
out:
    return st;
}

static const char *scene_mime(const struct kv_scene *sc)
{
    return sc->n_files ? mime_of(sc->files[0].format) : NULL;
}

enum cm_status api_scene_json(struct api_req *req, struct api_ecache *ec,
                              const struct kv_scene *sc, const char *base,
                              size_t base_len, struct cm_buf *b)
{
    enum cm_status st;
    TRY(scene_part_a(sc, b));
    TRY(put_streams(b, sc->id, scene_mime(sc), base, base_len));
    TRY(scene_part_b(req->cfg, ec, sc, b));
out:
    return st;
}

/* ---- Scene fragments -----------------------------------------------------
 *
 * The rendered JSON of a scene minus its sceneStreams (absolute URLs on the
 * request's base), per docid, in the same snapshot-keyed per-thread cache:
 * a hit appends two byte ranges and renders the two stream URLs.  Bounded
 * by API_FRAG_MAX_BYTES (then emptied and refilled).
 */
static void frags_clear(struct api_ecache *c)
{
    for (size_t i = 0; i < c->fcap; i++)
        if (c->frag[i].used)
            cm_free(c->frag[i].data);
    if (c->frag)
        memset(c->frag, 0, c->fcap * sizeof *c->frag);
    c->fn = 0;
    c->fbytes = 0;
}

static struct frag *frag_slot(struct api_ecache *c, uint32_t docid)
{
    size_t i = (size_t)((docid * 0x9E3779B1u) >> 7) & (c->fcap - 1);
    while (c->frag[i].used && c->frag[i].docid != docid)
        i = (i + 1) & (c->fcap - 1);
    return &c->frag[i];
}

enum cm_status api_scene_json_docid(struct api_req *req, struct api_ecache *ec,
                                    uint32_t docid, const char *base,
                                    size_t base_len, struct cm_buf *b)
{
    enum cm_status st;
    struct kv_scene sc;
    struct frag *f = NULL;
    size_t start = b->len, a_end, b_start;

    if (!ec->bypass && ec->frag) {
        f = frag_slot(ec, docid);
        if (f->used) {
            TRY(api_put(b, f->data, f->a_len));
            TRY(put_streams(b, f->id, f->mime, base, base_len));
            TRY(api_put(b, f->data + f->a_len, f->b_len));
            return CM_OK;
        }
    }
    st = kv_scene_get(ec->t, docid, &sc);
    if (st != CM_OK)
        return st; /* CM_NOTFOUND: deleted between index and record */
    st = scene_part_a(&sc, b);
    a_end = b->len;
    if (st == CM_OK)
        st = put_streams(b, sc.id, scene_mime(&sc), base, base_len);
    b_start = b->len;
    if (st == CM_OK)
        st = scene_part_b(req->cfg, ec, &sc, b);
    /* Keep the fragment (best effort: a failed copy only skips caching).
     * ent_get() above may not reach this table: f stays valid. */
    if (st == CM_OK && f) {
        size_t a_len = a_end - start, b_len = b->len - b_start;
        if (ec->fn + 1 > ec->fcap / 2 ||
            ec->fbytes + a_len + b_len > API_FRAG_MAX_BYTES) {
            frags_clear(ec);
            f = frag_slot(ec, docid);
        }
        if (a_len + b_len <= API_FRAG_MAX_BYTES / 4 &&
            (f->data = cm_malloc(a_len + b_len + 1)) != NULL) {
            memcpy(f->data, b->data + start, a_len);
            memcpy(f->data + a_len, b->data + b_start, b_len);
            f->used = true;
            f->docid = docid;
            f->id = sc.id;
            f->mime = scene_mime(&sc);
            f->a_len = a_len;
            f->b_len = b_len;
            ec->fn++;
            ec->fbytes += a_len + b_len;
        }
    }
    kv_scene_fini(&sc);
out:
    return st;
}
