/*
 * sync_map.c - Stash JSON objects (as sync/queries/NAME.graphql return them)
 * to kv records, strictly (see sync.h).
 *
 * Every field our documents request must be present with the JSON type of
 * Stash's schema; nullable fields may be null and map to the record's null
 * encodings.  Errors name the object and the field path.  URLs lose any
 * apikey query parameter: the key must never reach the store.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "sync/sync.h"

struct mctx {
    struct sync_arena *a;
    const char *kind; /* "scene", "tag", ... */
    const char *id;   /* the object's id text, "?" before it is known */
    char *err;
    size_t errlen;
};

/* A field's path, formatted only when an error names it (formatting it for
 * every field cost as much as the mapping itself): a chain of steps from
 * the object's root, each ".key" (key set) or "[idx]" (key NULL). */
struct fpath {
    const struct fpath *up; /* NULL: a top-level field */
    const char *key;
    uint32_t idx;
};

/* A top-level field's path. */
#define FIELD(k) (&(struct fpath){NULL, (k), 0})

/* Writes p as "files[0].fingerprints[1].type" into buf[0..n). */
static void path_str(const struct fpath *p, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    if (!p)
        return;
    if (p->up) {
        path_str(p->up, buf, n);
        len = strlen(buf);
    }
    if (p->key)
        snprintf(buf + len, n - len, "%s%s", p->up ? "." : "", p->key);
    else
        snprintf(buf + len, n - len, "[%u]", p->idx);
}

static enum cm_status fail(struct mctx *m, const struct fpath *path,
                           const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum cm_status fail(struct mctx *m, const struct fpath *path,
                           const char *fmt, ...)
{
    char msg[192], ps[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    path_str(path, ps, sizeof ps);
    if (m->err && m->errlen)
        snprintf(m->err, m->errlen, "%s %.40s: %s: %s", m->kind, m->id, ps,
                 msg);
    return CM_INVALID;
}

static enum cm_status nomem(struct mctx *m)
{
    if (m->err && m->errlen)
        snprintf(m->err, m->errlen, "%s %.40s: out of memory", m->kind, m->id);
    return CM_NOMEM;
}

static const char *jtype(const cJSON *v)
{
    if (!v)
        return "missing";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "boolean";
    if (cJSON_IsNumber(v))
        return "number";
    if (cJSON_IsString(v))
        return "string";
    if (cJSON_IsArray(v))
        return "array";
    if (cJSON_IsObject(v))
        return "object";
    return "invalid";
}

/* ---- scalar fields ------------------------------------------------ */

static enum cm_status str_val(struct mctx *m, const cJSON *v,
                              const struct fpath *path, bool nullable,
                              struct kv_str *out)
{
    size_t n;
    out->p = NULL;
    out->len = 0;
    if (nullable && cJSON_IsNull(v))
        return CM_OK;
    if (!cJSON_IsString(v) || !v->valuestring)
        return fail(m, path, "expected string%s, got %s",
                    nullable ? " or null" : "", jtype(v));
    n = strlen(v->valuestring);
    if (n > CM_MAX_STRING)
        return fail(m, path, "string longer than %zu bytes",
                    (size_t)CM_MAX_STRING);
    out->p = v->valuestring;
    out->len = (uint32_t)n;
    return CM_OK;
}

static enum cm_status get_str(struct mctx *m, const cJSON *o, const char *key,
                              const struct fpath *parent, bool nullable,
                              struct kv_str *out)
{
    struct fpath p = {parent, key, 0};
    return str_val(m, cJSON_GetObjectItemCaseSensitive(o, key), &p, nullable,
                   out);
}

/* A URL field: a string without apikey. */
static enum cm_status get_url(struct mctx *m, const cJSON *o, const char *key,
                              const struct fpath *parent, bool nullable,
                              struct kv_str *out)
{
    enum cm_status st = get_str(m, o, key, parent, nullable, out);
    if (st != CM_OK || !out->p)
        return st;
    st = sync_strip_apikey(out->p, out->len, m->a, out);
    return st == CM_NOMEM ? nomem(m) : st;
}

static enum cm_status get_time(struct mctx *m, const cJSON *o, const char *key,
                               const struct fpath *parent, bool nullable,
                               struct kv_str *out)
{
    struct fpath p = {parent, key, 0};
    enum cm_status st =
        str_val(m, cJSON_GetObjectItemCaseSensitive(o, key), &p, nullable, out);
    if (st != CM_OK || !out->p)
        return st;
    if (!sync_valid_time(out->p, out->len))
        return fail(m, &p, "expected an RFC3339 time");
    return CM_OK;
}

static enum cm_status get_bool(struct mctx *m, const cJSON *o, const char *key,
                               const struct fpath *parent, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsBool(v)) {
        struct fpath p = {parent, key, 0};
        return fail(m, &p, "expected boolean, got %s", jtype(v));
    }
    *out = cJSON_IsTrue(v);
    return CM_OK;
}

/* An integral JSON number in [lo, hi]; null gives *isnull (when allowed). */
static enum cm_status int_val(struct mctx *m, const cJSON *v,
                              const struct fpath *path, bool nullable,
                              double lo, double hi, int64_t *out, bool *isnull)
{
    double d;
    *out = 0;
    if (isnull)
        *isnull = false;
    if (nullable && cJSON_IsNull(v)) {
        if (isnull)
            *isnull = true;
        return CM_OK;
    }
    if (!cJSON_IsNumber(v))
        return fail(m, path, "expected number%s, got %s",
                    nullable ? " or null" : "", jtype(v));
    d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return fail(m, path, "expected an integer");
    if (d < lo || d > hi)
        return fail(m, path, "%.0f out of range [%.0f, %.0f]", d, lo, hi);
    *out = (int64_t)d;
    return CM_OK;
}

static enum cm_status get_int(struct mctx *m, const cJSON *o, const char *key,
                              const struct fpath *parent, bool nullable,
                              double lo, double hi, int64_t *out, bool *isnull)
{
    struct fpath p = {parent, key, 0};
    return int_val(m, cJSON_GetObjectItemCaseSensitive(o, key), &p, nullable,
                   lo, hi, out, isnull);
}

/* Non-negative finite float; null -> -1 when nullable. */
static enum cm_status get_float(struct mctx *m, const cJSON *o, const char *key,
                                const struct fpath *parent, bool nullable,
                                double *out)
{
    struct fpath p = {parent, key, 0};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = -1;
    if (nullable && cJSON_IsNull(v))
        return CM_OK;
    if (!cJSON_IsNumber(v))
        return fail(m, &p, "expected number%s, got %s",
                    nullable ? " or null" : "", jtype(v));
    if (!isfinite(v->valuedouble) || v->valuedouble < 0)
        return fail(m, &p, "expected a non-negative number");
    *out = v->valuedouble;
    return CM_OK;
}

static enum cm_status id_val(struct mctx *m, const cJSON *v,
                             const struct fpath *path, uint64_t *out)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return fail(m, path, "expected id string, got %s", jtype(v));
    if (sync_parse_id(v->valuestring, out) != CM_OK)
        return fail(m, path, "invalid id \"%.24s\"", v->valuestring);
    return CM_OK;
}

/* {id: "N"} or (nullable) null -> 0. */
static enum cm_status ref_val(struct mctx *m, const cJSON *v,
                              const struct fpath *path, bool nullable,
                              uint64_t *out)
{
    struct fpath p2 = {path, "id", 0};
    *out = 0;
    if (nullable && cJSON_IsNull(v))
        return CM_OK;
    if (!cJSON_IsObject(v))
        return fail(m, path, "expected object%s, got %s",
                    nullable ? " or null" : "", jtype(v));
    return id_val(m, cJSON_GetObjectItemCaseSensitive(v, "id"), &p2, out);
}

static enum cm_status get_ref(struct mctx *m, const cJSON *o, const char *key,
                              const struct fpath *parent, bool nullable,
                              uint64_t *out)
{
    struct fpath p = {parent, key, 0};
    return ref_val(m, cJSON_GetObjectItemCaseSensitive(o, key), &p, nullable,
                   out);
}

static enum cm_status get_date(struct mctx *m, const cJSON *o, const char *key,
                               const struct fpath *parent, struct kv_date *out)
{
    struct fpath p = {parent, key, 0};
    struct kv_str s;
    enum cm_status st =
        str_val(m, cJSON_GetObjectItemCaseSensitive(o, key), &p, true, &s);
    memset(out, 0, sizeof *out);
    if (st != CM_OK || !s.p)
        return st;
    if (sync_parse_date(s.p, s.len, out) != CM_OK)
        return fail(m, &p, "invalid date \"%.16s\"", s.p);
    return CM_OK;
}

/* An array field: OUT *arr and its length (0 for a nullable null). */
static enum cm_status get_arr(struct mctx *m, const cJSON *o, const char *key,
                              const struct fpath *parent, bool nullable,
                              const cJSON **arr, uint32_t *n)
{
    struct fpath p = {parent, key, 0};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    int sz;
    *arr = NULL;
    *n = 0;
    if (nullable && cJSON_IsNull(v))
        return CM_OK;
    if (!cJSON_IsArray(v))
        return fail(m, &p, "expected array%s, got %s",
                    nullable ? " or null" : "", jtype(v));
    sz = cJSON_GetArraySize(v);
    if (sz < 0 || sz > CM_MAX_ARRAY)
        return fail(m, &p, "more than %d elements", CM_MAX_ARRAY);
    *arr = v;
    *n = (uint32_t)sz;
    return CM_OK;
}

static void *arr_alloc(struct mctx *m, uint32_t n, size_t elem)
{
    if (n == 0)
        return NULL;
    return sync_arena_alloc(m->a, (size_t)n * elem);
}

/* [String!] into a fresh array. */
static enum cm_status get_strs(struct mctx *m, const cJSON *o, const char *key,
                               bool nullable, struct kv_str **out, uint32_t *n)
{
    const cJSON *arr, *it;
    struct fpath p = {NULL, key, 0}, e = {&p, NULL, 0};
    enum cm_status st = get_arr(m, o, key, NULL, nullable, &arr, n);
    *out = NULL;
    if (st != CM_OK || *n == 0)
        return st;
    if (!(*out = arr_alloc(m, *n, sizeof **out)))
        return nomem(m);
    cJSON_ArrayForEach (it, arr) {
        if ((st = str_val(m, it, &e, false, &(*out)[e.idx])) != CM_OK)
            return st;
        e.idx++;
    }
    return CM_OK;
}

/* [{id}] into an array of ids. */
static enum cm_status get_ref_ids(struct mctx *m, const cJSON *o,
                                  const char *key, const struct fpath *parent,
                                  const char *sub, uint64_t **out, uint32_t *n)
{
    const cJSON *arr, *it;
    struct fpath p = {parent, key, 0}, e = {&p, NULL, 0}, es = {&e, sub, 0};
    enum cm_status st = get_arr(m, o, key, parent, false, &arr, n);
    *out = NULL;
    if (st != CM_OK || *n == 0)
        return st;
    if (!(*out = arr_alloc(m, *n, sizeof **out)))
        return nomem(m);
    cJSON_ArrayForEach (it, arr) {
        if (sub) { /* containing_groups: [{group: {id}}] */
            if (!cJSON_IsObject(it))
                return fail(m, &e, "expected object, got %s", jtype(it));
            st = ref_val(m, cJSON_GetObjectItemCaseSensitive(it, sub), &es,
                         false, &(*out)[e.idx]);
        } else {
            st = ref_val(m, it, &e, false, &(*out)[e.idx]);
        }
        if (st != CM_OK)
            return st;
        e.idx++;
    }
    return CM_OK;
}

static void ref_init(struct kv_ref *r, uint64_t id)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    r->rating100 = -1;
    r->index = -1;
}

static enum cm_status refs_from_ids(struct mctx *m, const cJSON *o,
                                    const char *key, struct kv_ref **out,
                                    uint32_t *n)
{
    uint64_t *ids;
    enum cm_status st = get_ref_ids(m, o, key, NULL, NULL, &ids, n);
    *out = NULL;
    if (st != CM_OK || *n == 0)
        return st;
    if (!(*out = arr_alloc(m, *n, sizeof **out)))
        return nomem(m);
    for (uint32_t i = 0; i < *n; i++)
        ref_init(&(*out)[i], ids[i]);
    return CM_OK;
}

/* The object's own id, also recorded for messages. */
static enum cm_status own_id(struct mctx *m, const cJSON *o, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (!cJSON_IsObject(o)) {
        m->id = "?";
        return fail(m, FIELD("(object)"), "expected object, got %s", jtype(o));
    }
    if (cJSON_IsString(v) && v->valuestring)
        m->id = v->valuestring;
    return id_val(m, v, FIELD("id"), out);
}

/* ---- public helpers ----------------------------------------------- */

enum cm_status sync_parse_id(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;
    *out = 0;
    if (!s || !*s || s[0] == '0')
        return CM_INVALID;
    for (i = 0; s[i]; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9' || i >= 20)
            return CM_INVALID;
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CM_INVALID;
        v = v * 10 + d;
    }
    *out = v;
    return CM_OK;
}

static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in(int y, int mo)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[mo - 1];
}

enum cm_status sync_parse_date(const char *s, size_t len, struct kv_date *out)
{
    int y, mo = 0, d = 0;
    memset(out, 0, sizeof *out);
    if (len != 4 && len != 7 && len != 10)
        return CM_INVALID;
    if ((y = digits(s, 4)) < 1)
        return CM_INVALID;
    if (len >= 7) {
        if (s[4] != '-' || (mo = digits(s + 5, 2)) < 1 || mo > 12)
            return CM_INVALID;
    }
    if (len == 10) {
        if (s[7] != '-' || (d = digits(s + 8, 2)) < 1 || d > days_in(y, mo))
            return CM_INVALID;
    }
    out->year = (int16_t)y;
    out->month = (uint8_t)mo;
    out->day = (uint8_t)d;
    return CM_OK;
}

bool sync_valid_time(const char *s, size_t len)
{
    size_t i = 19;
    struct kv_date dt;
    int h, mi, se;
    if (len < 20 || sync_parse_date(s, 10, &dt) != CM_OK || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':')
        return false;
    h = digits(s + 11, 2);
    mi = digits(s + 14, 2);
    se = digits(s + 17, 2);
    if (h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60)
        return false;
    if (s[i] == '.') {
        size_t f = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f)
            return false;
    }
    if (i < len && s[i] == 'Z')
        return i + 1 == len;
    if (i < len && (s[i] == '+' || s[i] == '-') && len - i == 6 &&
        s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
    }
    return false;
}

enum cm_status sync_strip_apikey(const char *u, size_t n, struct sync_arena *a,
                                 struct kv_str *out)
{
    const char *q = memchr(u, '?', n), *end = u + n, *hash, *p;
    char *buf, *w;
    bool found = false, first = true;

    out->p = u;
    out->len = (uint32_t)n;
    if (!q)
        return CM_OK;
    hash = memchr(q, '#', (size_t)(end - q));
    if (!hash)
        hash = end;
    for (p = q + 1; p < hash;) {
        const char *amp = memchr(p, '&', (size_t)(hash - p));
        const char *e = amp ? amp : hash;
        if ((size_t)(e - p) >= 6 && strncasecmp(p, "apikey", 6) == 0 &&
            (e - p == 6 || p[6] == '='))
            found = true;
        p = e + 1;
    }
    if (!found)
        return CM_OK;
    if (!(buf = sync_arena_alloc(a, n + 1)))
        return CM_NOMEM;
    w = buf;
    memcpy(w, u, (size_t)(q - u));
    w += q - u;
    for (p = q + 1; p < hash;) {
        const char *amp = memchr(p, '&', (size_t)(hash - p));
        const char *e = amp ? amp : hash;
        bool drop = (size_t)(e - p) >= 6 && strncasecmp(p, "apikey", 6) == 0 &&
                    (e - p == 6 || p[6] == '=');
        if (!drop && e > p) {
            *w++ = first ? '?' : '&';
            first = false;
            memcpy(w, p, (size_t)(e - p));
            w += e - p;
        }
        p = e + 1;
    }
    memcpy(w, hash, (size_t)(end - hash));
    w += end - hash;
    *w = '\0';
    out->p = buf;
    out->len = (uint32_t)(w - buf);
    return CM_OK;
}

/* ---- scenes ------------------------------------------------------- */

static enum cm_status map_file(struct mctx *m, const cJSON *f,
                               const struct fpath *path, struct kv_file *out)
{
    struct fpath pid = {path, "id", 0}, pfps = {path, "fingerprints", 0};
    struct fpath pfp = {&pfps, NULL, 0};
    const cJSON *fps, *it;
    uint32_t nfp;
    int64_t v;
    enum cm_status st;

    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(f))
        return fail(m, path, "expected object, got %s", jtype(f));
    if ((st = id_val(m, cJSON_GetObjectItemCaseSensitive(f, "id"), &pid,
                     &out->id)) != CM_OK ||
        (st = get_str(m, f, "path", path, false, &out->path)) != CM_OK ||
        (st = get_str(m, f, "basename", path, false, &out->basename)) !=
            CM_OK ||
        (st = get_int(m, f, "size", path, false, 0, 9007199254740992.0, &v,
                      NULL)) != CM_OK)
        return st;
    out->size = v;
    if ((st = get_float(m, f, "duration", path, false, &out->duration)) !=
            CM_OK ||
        (st = get_str(m, f, "video_codec", path, false, &out->video_codec)) !=
            CM_OK ||
        (st = get_str(m, f, "audio_codec", path, false, &out->audio_codec)) !=
            CM_OK ||
        (st = get_int(m, f, "width", path, false, 0, INT32_MAX, &v, NULL)) !=
            CM_OK)
        return st;
    out->width = (int32_t)v;
    if ((st = get_int(m, f, "height", path, false, 0, INT32_MAX, &v, NULL)) !=
        CM_OK)
        return st;
    out->height = (int32_t)v;
    if ((st = get_float(m, f, "frame_rate", path, false, &out->frame_rate)) !=
            CM_OK ||
        (st = get_int(m, f, "bit_rate", path, false, 0, 9007199254740992.0, &v,
                      NULL)) != CM_OK)
        return st;
    out->bit_rate = v;
    if ((st = get_str(m, f, "format", path, false, &out->format)) != CM_OK ||
        (st = get_time(m, f, "mod_time", path, false, &out->mod_time)) !=
            CM_OK ||
        (st = get_arr(m, f, "fingerprints", path, false, &fps, &nfp)) != CM_OK)
        return st;
    cJSON_ArrayForEach (it, fps) {
        struct kv_str type, value;
        if (!cJSON_IsObject(it))
            return fail(m, &pfp, "expected object, got %s", jtype(it));
        if ((st = get_str(m, it, "type", &pfp, false, &type)) != CM_OK ||
            (st = get_str(m, it, "value", &pfp, false, &value)) != CM_OK)
            return st;
        pfp.idx++;
        if (strcmp(type.p, "oshash") == 0)
            out->oshash = value;
        else if (strcmp(type.p, "md5") == 0)
            out->md5 = value;
        else if (strcmp(type.p, "phash") == 0)
            out->phash = value;
    }
    return CM_OK;
}

static enum cm_status map_scene_arrays(struct mctx *m, const cJSON *o,
                                       struct kv_scene *sc)
{
    const cJSON *arr, *it;
    struct fpath pa = {NULL, NULL, 0}, path = {&pa, NULL, 0};
    uint32_t i;
    int64_t v;
    bool isnull;
    enum cm_status st;

    /* captions: nullable list */
    if ((st = get_arr(m, o, "captions", NULL, true, &arr, &sc->n_captions)) !=
        CM_OK)
        return st;
    if (sc->n_captions &&
        !(sc->captions = arr_alloc(m, sc->n_captions, sizeof *sc->captions)))
        return nomem(m);
    i = 0;
    pa.key = "captions";
    cJSON_ArrayForEach (it, arr) {
        path.idx = i;
        if (!cJSON_IsObject(it))
            return fail(m, &path, "expected object, got %s", jtype(it));
        if ((st = get_str(m, it, "language_code", &path, false,
                          &sc->captions[i].language_code)) != CM_OK ||
            (st = get_str(m, it, "caption_type", &path, false,
                          &sc->captions[i].caption_type)) != CM_OK)
            return st;
        i++;
    }
    /* files */
    if ((st = get_arr(m, o, "files", NULL, false, &arr, &sc->n_files)) != CM_OK)
        return st;
    if (sc->n_files &&
        !(sc->files = arr_alloc(m, sc->n_files, sizeof *sc->files)))
        return nomem(m);
    i = 0;
    pa.key = "files";
    cJSON_ArrayForEach (it, arr) {
        path.idx = i;
        if ((st = map_file(m, it, &path, &sc->files[i])) != CM_OK)
            return st;
        i++;
    }
    /* stash_ids */
    if ((st = get_arr(m, o, "stash_ids", NULL, false, &arr,
                      &sc->n_stash_ids)) != CM_OK)
        return st;
    if (sc->n_stash_ids &&
        !(sc->stash_ids = arr_alloc(m, sc->n_stash_ids, sizeof *sc->stash_ids)))
        return nomem(m);
    i = 0;
    pa.key = "stash_ids";
    cJSON_ArrayForEach (it, arr) {
        path.idx = i;
        if (!cJSON_IsObject(it))
            return fail(m, &path, "expected object, got %s", jtype(it));
        if ((st = get_str(m, it, "endpoint", &path, false,
                          &sc->stash_ids[i].endpoint)) != CM_OK ||
            (st = get_str(m, it, "stash_id", &path, false,
                          &sc->stash_ids[i].stash_id)) != CM_OK)
            return st;
        i++;
    }
    /* scene_markers */
    if ((st = get_arr(m, o, "scene_markers", NULL, false, &arr,
                      &sc->n_markers)) != CM_OK)
        return st;
    if (sc->n_markers &&
        !(sc->markers = arr_alloc(m, sc->n_markers, sizeof *sc->markers)))
        return nomem(m);
    i = 0;
    pa.key = "scene_markers";
    cJSON_ArrayForEach (it, arr) {
        struct kv_marker *mk = &sc->markers[i];
        struct fpath pid = {&path, "id", 0};
        uint64_t *tids;
        uint32_t nt;
        path.idx = i;
        if (!cJSON_IsObject(it))
            return fail(m, &path, "expected object, got %s", jtype(it));
        if ((st = id_val(m, cJSON_GetObjectItemCaseSensitive(it, "id"), &pid,
                         &mk->id)) != CM_OK ||
            (st = get_str(m, it, "title", &path, false, &mk->title)) != CM_OK ||
            (st = get_float(m, it, "seconds", &path, false, &mk->seconds)) !=
                CM_OK ||
            (st = get_float(m, it, "end_seconds", &path, true,
                            &mk->end_seconds)) != CM_OK ||
            (st = get_ref(m, it, "primary_tag", &path, false,
                          &mk->primary_tag_id)) != CM_OK ||
            (st = get_ref_ids(m, it, "tags", &path, NULL, &tids, &nt)) != CM_OK)
            return st;
        i++;
    }
    /* groups: [{group {id}, scene_index}] */
    if ((st = get_arr(m, o, "groups", NULL, false, &arr, &sc->n_groups)) !=
        CM_OK)
        return st;
    if (sc->n_groups &&
        !(sc->groups = arr_alloc(m, sc->n_groups, sizeof *sc->groups)))
        return nomem(m);
    i = 0;
    pa.key = "groups";
    cJSON_ArrayForEach (it, arr) {
        uint64_t gid;
        path.idx = i;
        if (!cJSON_IsObject(it))
            return fail(m, &path, "expected object, got %s", jtype(it));
        if ((st = get_ref(m, it, "group", &path, false, &gid)) != CM_OK ||
            (st = get_int(m, it, "scene_index", &path, true, INT32_MIN,
                          INT32_MAX, &v, &isnull)) != CM_OK)
            return st;
        ref_init(&sc->groups[i], gid);
        sc->groups[i].index = isnull ? -1 : (int32_t)v;
        if (!isnull && v < 0)
            return fail(m, &path, "negative scene_index");
        i++;
    }
    if ((st = refs_from_ids(m, o, "tags", &sc->tags, &sc->n_tags)) != CM_OK ||
        (st = refs_from_ids(m, o, "performers", &sc->performers,
                            &sc->n_performers)) != CM_OK ||
        (st = refs_from_ids(m, o, "galleries", &sc->galleries,
                            &sc->n_galleries)) != CM_OK)
        return st;
    return CM_OK;
}

static enum cm_status map_paths(struct mctx *m, const cJSON *o,
                                struct kv_scene *sc)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "paths");
    const struct fpath *pp = FIELD("paths");
    enum cm_status st;
    if (!cJSON_IsObject(p))
        return fail(m, pp, "expected object, got %s", jtype(p));
    if ((st = get_url(m, p, "screenshot", pp, true, &sc->p_screenshot)) !=
            CM_OK ||
        (st = get_url(m, p, "preview", pp, true, &sc->p_preview)) != CM_OK ||
        (st = get_url(m, p, "webp", pp, true, &sc->p_webp)) != CM_OK ||
        (st = get_url(m, p, "vtt", pp, true, &sc->p_vtt)) != CM_OK ||
        (st = get_url(m, p, "sprite", pp, true, &sc->p_sprite)) != CM_OK ||
        (st = get_url(m, p, "funscript", pp, true, &sc->p_funscript)) !=
            CM_OK ||
        (st = get_url(m, p, "caption", pp, true, &sc->p_caption)) != CM_OK)
        return st;
    return CM_OK;
}

enum cm_status sync_map_scene(const cJSON *o, struct sync_arena *a,
                              struct kv_scene *sc, char *err, size_t errlen)
{
    struct mctx m = {a, "scene", "?", err, errlen};
    int64_t v;
    bool isnull;
    uint64_t studio;
    enum cm_status st;

    memset(sc, 0, sizeof *sc);
    if ((st = own_id(&m, o, &sc->id)) != CM_OK ||
        (st = get_str(&m, o, "title", NULL, true, &sc->title)) != CM_OK ||
        (st = get_str(&m, o, "code", NULL, true, &sc->code)) != CM_OK ||
        (st = get_str(&m, o, "details", NULL, true, &sc->details)) != CM_OK ||
        (st = get_str(&m, o, "director", NULL, true, &sc->director)) != CM_OK ||
        (st = get_strs(&m, o, "urls", false, &sc->urls, &sc->n_urls)) !=
            CM_OK ||
        (st = get_date(&m, o, "date", NULL, &sc->date)) != CM_OK ||
        (st = get_int(&m, o, "rating100", NULL, true, 0, 100, &v, &isnull)) !=
            CM_OK)
        goto out;
    sc->rating100 = isnull ? -1 : (int32_t)v;
    if ((st = get_bool(&m, o, "organized", NULL, &sc->organized)) != CM_OK ||
        (st = get_int(&m, o, "o_counter", NULL, true, 0, INT32_MAX, &v,
                      NULL)) != CM_OK)
        goto out;
    sc->o_counter = (int32_t)v;
    if ((st = get_int(&m, o, "play_count", NULL, true, 0, INT32_MAX, &v,
                      NULL)) != CM_OK)
        goto out;
    sc->play_count = (int32_t)v;
    if ((st = get_float(&m, o, "play_duration", NULL, true,
                        &sc->play_duration)) != CM_OK ||
        (st = get_float(&m, o, "resume_time", NULL, true, &sc->resume_time)) !=
            CM_OK ||
        (st = get_time(&m, o, "last_played_at", NULL, true,
                       &sc->last_played_at)) != CM_OK ||
        (st = get_time(&m, o, "created_at", NULL, false, &sc->created_at)) !=
            CM_OK ||
        (st = get_time(&m, o, "updated_at", NULL, false, &sc->updated_at)) !=
            CM_OK ||
        (st = get_bool(&m, o, "interactive", NULL, &sc->interactive)) !=
            CM_OK ||
        (st = get_int(&m, o, "interactive_speed", NULL, true, 0, INT32_MAX, &v,
                      &isnull)) != CM_OK)
        goto out;
    sc->interactive_speed = isnull ? -1 : (int32_t)v;
    if ((st = map_paths(&m, o, sc)) != CM_OK ||
        (st = get_ref(&m, o, "studio", NULL, true, &studio)) != CM_OK ||
        (st = map_scene_arrays(&m, o, sc)) != CM_OK)
        goto out;
    ref_init(&sc->studio, studio);
out:
    return st;
}

/* ---- entities ----------------------------------------------------- */

static enum cm_status map_gender(struct mctx *m, const cJSON *o, uint8_t *out)
{
    struct kv_str s;
    enum cm_status st = get_str(m, o, "gender", NULL, true, &s);
    *out = KV_GENDER_NULL;
    if (st != CM_OK || !s.p)
        return st;
    for (uint8_t i = 1; i < KV_GENDER_COUNT; i++)
        if (strcmp(s.p, kv_gender_name(i)) == 0) {
            *out = i;
            return CM_OK;
        }
    return fail(m, FIELD("gender"), "unknown gender \"%.24s\"", s.p);
}

static enum cm_status map_rating(struct mctx *m, const cJSON *o, int32_t *out)
{
    int64_t v;
    bool isnull;
    enum cm_status st =
        get_int(m, o, "rating100", NULL, true, 0, 100, &v, &isnull);
    *out = isnull ? -1 : (int32_t)v;
    return st;
}

static enum cm_status map_tag(struct mctx *m, const cJSON *o,
                              struct kv_entity *e)
{
    enum cm_status st;
    if ((st = get_str(m, o, "sort_name", NULL, true, &e->sort_name)) != CM_OK ||
        (st = get_strs(m, o, "aliases", false, &e->aliases, &e->n_aliases)) !=
            CM_OK ||
        (st = get_bool(m, o, "favorite", NULL, &e->favorite)) != CM_OK ||
        (st = get_str(m, o, "description", NULL, true, &e->description)) !=
            CM_OK ||
        (st = get_url(m, o, "image_path", NULL, true, &e->image)) != CM_OK ||
        (st = get_ref_ids(m, o, "parents", NULL, NULL, &e->parents,
                          &e->n_parents)) != CM_OK)
        return st;
    return CM_OK;
}

static enum cm_status map_performer(struct mctx *m, const cJSON *o,
                                    struct kv_entity *e)
{
    struct kv_date d;
    enum cm_status st;
    if ((st = get_str(m, o, "disambiguation", NULL, true,
                      &e->disambiguation)) != CM_OK ||
        (st = get_strs(m, o, "alias_list", false, &e->aliases,
                       &e->n_aliases)) != CM_OK ||
        (st = map_gender(m, o, &e->gender)) != CM_OK ||
        (st = get_bool(m, o, "favorite", NULL, &e->favorite)) != CM_OK ||
        (st = map_rating(m, o, &e->rating100)) != CM_OK ||
        (st = get_str(m, o, "birthdate", NULL, true, &e->birthdate)) != CM_OK)
        return st;
    if (e->birthdate.p &&
        sync_parse_date(e->birthdate.p, e->birthdate.len, &d) != CM_OK)
        return fail(m, FIELD("birthdate"), "invalid date \"%.16s\"",
                    e->birthdate.p);
    if ((st = get_str(m, o, "country", NULL, true, &e->country)) != CM_OK ||
        (st = get_url(m, o, "image_path", NULL, true, &e->image)) != CM_OK ||
        (st = get_ref_ids(m, o, "tags", NULL, NULL, &e->tags, &e->n_tags)) !=
            CM_OK)
        return st;
    return CM_OK;
}

static enum cm_status map_studio(struct mctx *m, const cJSON *o,
                                 struct kv_entity *e)
{
    uint64_t parent;
    enum cm_status st;
    if ((st = get_strs(m, o, "aliases", false, &e->aliases, &e->n_aliases)) !=
            CM_OK ||
        (st = get_bool(m, o, "favorite", NULL, &e->favorite)) != CM_OK ||
        (st = map_rating(m, o, &e->rating100)) != CM_OK ||
        (st = get_ref(m, o, "parent_studio", NULL, true, &parent)) != CM_OK ||
        (st = get_url(m, o, "image_path", NULL, true, &e->image)) != CM_OK ||
        (st = get_str(m, o, "details", NULL, true, &e->description)) != CM_OK)
        return st;
    if (parent) {
        if (!(e->parents = sync_arena_alloc(m->a, sizeof *e->parents)))
            return nomem(m);
        e->parents[0] = parent;
        e->n_parents = 1;
    }
    return CM_OK;
}

static enum cm_status map_group(struct mctx *m, const cJSON *o,
                                struct kv_entity *e)
{
    struct kv_str alias;
    int64_t v;
    bool isnull;
    enum cm_status st;
    if ((st = get_str(m, o, "aliases", NULL, true, &alias)) != CM_OK ||
        (st = get_date(m, o, "date", NULL, &e->date)) != CM_OK ||
        (st = get_int(m, o, "duration", NULL, true, 0, INT32_MAX, &v,
                      &isnull)) != CM_OK)
        return st;
    e->duration = isnull ? -1 : (int32_t)v;
    if ((st = map_rating(m, o, &e->rating100)) != CM_OK ||
        (st = get_str(m, o, "director", NULL, true, &e->director)) != CM_OK ||
        (st = get_str(m, o, "synopsis", NULL, true, &e->description)) !=
            CM_OK ||
        (st = get_ref(m, o, "studio", NULL, true, &e->studio_id)) != CM_OK ||
        (st = get_ref_ids(m, o, "containing_groups", NULL, "group", &e->parents,
                          &e->n_parents)) != CM_OK ||
        (st = get_url(m, o, "front_image_path", NULL, true, &e->image)) !=
            CM_OK ||
        (st = get_url(m, o, "back_image_path", NULL, true, &e->back_image)) !=
            CM_OK)
        return st;
    if (alias.p) {
        if (!(e->aliases = sync_arena_alloc(m->a, sizeof *e->aliases)))
            return nomem(m);
        e->aliases[0] = alias;
        e->n_aliases = 1;
    }
    return CM_OK;
}

static enum cm_status map_gallery(struct mctx *m, const cJSON *o,
                                  struct kv_entity *e)
{
    const cJSON *paths;
    int64_t v;
    enum cm_status st;
    if ((st = get_date(m, o, "date", NULL, &e->date)) != CM_OK ||
        (st = map_rating(m, o, &e->rating100)) != CM_OK ||
        (st = get_ref(m, o, "studio", NULL, true, &e->studio_id)) != CM_OK ||
        (st = get_int(m, o, "image_count", NULL, false, 0, INT32_MAX, &v,
                      NULL)) != CM_OK)
        return st;
    e->image_count = (int32_t)v;
    paths = cJSON_GetObjectItemCaseSensitive(o, "paths");
    if (!cJSON_IsObject(paths))
        return fail(m, FIELD("paths"), "expected object, got %s", jtype(paths));
    return get_url(m, paths, "cover", FIELD("paths"), false, &e->image);
}

enum cm_status sync_map_entity(const cJSON *o, uint8_t type,
                               struct sync_arena *a, struct kv_entity *e,
                               char *err, size_t errlen)
{
    struct mctx m = {a, "entity", "?", err, errlen};
    enum cm_status st;

    memset(e, 0, sizeof *e);
    e->type = type;
    e->rating100 = -1;
    e->duration = -1;
    e->image_count = -1;
    switch (type) {
    case KV_TAG: m.kind = "tag"; break;
    case KV_PERFORMER: m.kind = "performer"; break;
    case KV_STUDIO: m.kind = "studio"; break;
    case KV_GROUP: m.kind = "group"; break;
    case KV_GALLERY: m.kind = "gallery"; break;
    default:
        if (err && errlen)
            snprintf(err, errlen, "unknown entity type %u", type);
        return CM_INVALID;
    }
    if ((st = own_id(&m, o, &e->id)) != CM_OK ||
        (st = get_str(&m, o, type == KV_GALLERY ? "title" : "name", NULL,
                      type == KV_GALLERY, &e->name)) != CM_OK)
        return st;
    switch (type) {
    case KV_TAG: st = map_tag(&m, o, e); break;
    case KV_PERFORMER: st = map_performer(&m, o, e); break;
    case KV_STUDIO: st = map_studio(&m, o, e); break;
    case KV_GROUP: st = map_group(&m, o, e); break;
    default: st = map_gallery(&m, o, e); break;
    }
    if (st != CM_OK ||
        (st = get_time(&m, o, "created_at", NULL, false, &e->created_at)) !=
            CM_OK ||
        (st = get_time(&m, o, "updated_at", NULL, false, &e->updated_at)) !=
            CM_OK)
        return st;
    return CM_OK;
}

/* ---- refs --------------------------------------------------------- */

static enum cm_status copy_str(struct sync_arena *a, struct kv_str in,
                               struct kv_str *out)
{
    char *p;
    if (!in.p) {
        out->p = NULL;
        out->len = 0;
        return CM_OK;
    }
    if (!(p = sync_arena_strndup(a, in.p, in.len)))
        return CM_NOMEM;
    out->p = p;
    out->len = in.len;
    return CM_OK;
}

/* Reads entity (type, id) into OUT *out's ref fields (strings copied into
 * a); OUT *found = false when the store lacks it. */
static enum cm_status ref_lookup(struct kv_txn *t, uint8_t type, uint64_t id,
                                 struct sync_arena *a, struct kv_ref *out,
                                 bool *found)
{
    struct kv_entity e;
    enum cm_status st;

    ref_init(out, id);
    *found = false;
    memset(&e, 0, sizeof e);
    st = kv_entity_get(t, type, id, &e);
    if (st == CM_NOTFOUND) {
        kv_entity_fini(&e);
        return CM_OK;
    }
    if (st != CM_OK)
        goto out;
    *found = true;
    out->favorite = e.favorite;
    out->rating100 = e.rating100;
    if (type == KV_PERFORMER) {
        out->gender = e.gender;
        st = copy_str(a, e.disambiguation, &out->aux);
    } else if (type == KV_GROUP) {
        st = copy_str(a, e.back_image, &out->aux);
    }
    if (st == CM_OK)
        st = copy_str(a, e.name, &out->name);
    if (st == CM_OK)
        st = copy_str(a, e.image, &out->image);
out:
    kv_entity_fini(&e);
    return st;
}

struct ref_entry {
    uint64_t key; /* type << 56 | id; 0 = empty slot */
    bool found;   /* the entity exists */
    struct kv_ref ref;
};

struct sync_ref_cache {
    struct ref_entry *slot; /* open addressing, cap a power of two */
    size_t cap, n;
    const struct sync_arena *a; /* the arena the entries point into */
    uint64_t resets;            /* its reset count when they were filled */
};

enum cm_status sync_ref_cache_new(struct sync_ref_cache **out)
{
    *out = cm_calloc(1, sizeof **out);
    return *out ? CM_OK : CM_NOMEM;
}

void sync_ref_cache_free(struct sync_ref_cache *c)
{
    if (!c)
        return;
    cm_free(c->slot);
    cm_free(c);
}

static size_t ref_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

/* The slot of key: holding it, or the empty one where it goes.  NULL
 * when the key cannot be cached (an id past 2^56, the cache full, or out
 * of memory: the caller then fills without it). */
static struct ref_entry *ref_slot(struct sync_ref_cache *c,
                                  const struct sync_arena *a, uint64_t key)
{
    size_t i;
    if (c->a != a || c->resets != a->resets) { /* the entries died */
        if (c->n)
            memset(c->slot, 0, c->cap * sizeof *c->slot);
        c->n = 0;
        c->a = a;
        c->resets = a->resets;
    }
    if ((c->n + 1) * 2 > c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        struct ref_entry *ns;
        if (nc > 2 * (size_t)CM_MAX_REF_CACHE ||
            !(ns = cm_calloc(nc, sizeof *ns)))
            goto lookup_only;
        for (size_t j = 0; j < c->cap; j++) {
            if (!c->slot[j].key)
                continue;
            for (i = ref_hash(c->slot[j].key) & (nc - 1); ns[i].key;
                 i = (i + 1) & (nc - 1))
                ;
            ns[i] = c->slot[j];
        }
        cm_free(c->slot);
        c->slot = ns;
        c->cap = nc;
    }
lookup_only:
    if (!c->cap)
        return NULL;
    for (i = ref_hash(key) & (c->cap - 1); c->slot[i].key;
         i = (i + 1) & (c->cap - 1))
        if (c->slot[i].key == key)
            return &c->slot[i];
    return (c->n + 1) * 2 > c->cap ? NULL : &c->slot[i];
}

static enum cm_status fill_one(struct kv_txn *t, uint8_t type, struct kv_ref *r,
                               struct sync_arena *a, struct sync_ref_cache *c,
                               uint64_t *unknown)
{
    int32_t index = r->index;
    uint64_t id = r->id, key = (uint64_t)type << 56 | id;
    struct ref_entry *e = c && !(id >> 56) ? ref_slot(c, a, key) : NULL;
    bool found;
    enum cm_status st;

    if (e && e->key) { /* cached */
        *r = e->ref;
        found = e->found;
    } else {
        if ((st = ref_lookup(t, type, id, a, r, &found)) != CM_OK)
            return st;
        if (e) {
            e->key = key;
            e->found = found;
            e->ref = *r;
            c->n++;
        }
    }
    r->id = id;
    r->index = type == KV_GROUP ? index : -1;
    if (!found && unknown)
        (*unknown)++;
    return CM_OK;
}

enum cm_status sync_fill_refs(struct kv_txn *t, struct kv_scene *sc,
                              struct sync_arena *a, struct sync_ref_cache *c,
                              uint64_t *unknown)
{
    enum cm_status st = CM_OK;
    if (sc->studio.id &&
        (st = fill_one(t, KV_STUDIO, &sc->studio, a, c, unknown)) != CM_OK)
        return st;
    for (uint32_t i = 0; st == CM_OK && i < sc->n_performers; i++)
        st = fill_one(t, KV_PERFORMER, &sc->performers[i], a, c, unknown);
    for (uint32_t i = 0; st == CM_OK && i < sc->n_tags; i++)
        st = fill_one(t, KV_TAG, &sc->tags[i], a, c, unknown);
    for (uint32_t i = 0; st == CM_OK && i < sc->n_groups; i++)
        st = fill_one(t, KV_GROUP, &sc->groups[i], a, c, unknown);
    for (uint32_t i = 0; st == CM_OK && i < sc->n_galleries; i++)
        st = fill_one(t, KV_GALLERY, &sc->galleries[i], a, c, unknown);
    return st;
}

/* ---- types -------------------------------------------------------- */

const char *sync_type_name(enum sync_type t)
{
    static const char *const n[] = {"tags",   "studios",   "performers",
                                    "groups", "galleries", "scenes"};
    return (unsigned)t < SYNC_NTYPES ? n[t] : "?";
}

uint8_t sync_type_etype(enum sync_type t)
{
    static const uint8_t e[] = {KV_TAG,   KV_STUDIO,  KV_PERFORMER,
                                KV_GROUP, KV_GALLERY, 0};
    return (unsigned)t < SYNC_NTYPES ? e[t] : 0;
}
