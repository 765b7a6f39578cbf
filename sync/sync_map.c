/*
 * sync_map.c - Stash JSON objects (as sync/queries/NAME.graphql return them)
 * to kv records, strictly (see sync.h).
 *
 * Every field our documents request must be present with the JSON type of
 * Stash's schema; nullable fields may be null and map to the record's null
 * encodings.  Errors name the object and the field path.  URLs lose any
 * apikey query parameter: the key must never reach the store.
 */
#include <assert.h>
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

/* ---- objects ------------------------------------------------------ */

#define MAX_FIELDS 32

/* A member name our documents request, with its length. */
struct name {
    const char *s;
    uint8_t n;
};
#define NM(lit)                                                                \
    {                                                                          \
        lit, sizeof lit - 1                                                    \
    }

/* The members of one JSON object that our document requests, found in one
 * pass over its members.  names[] lists them in the document's order,
 * which is the order Stash answers in, so a member is usually matched by
 * its first comparison (a lookup per field
 * walked the member list once per field instead).  Of duplicate keys the
 * first wins, as with that lookup. */
struct obj {
    const struct name *names; /* the requested members, in order */
    const struct fpath *path; /* the object's own path; NULL: the root */
    struct sjv v[MAX_FIELDS]; /* v[i]: member names[i], or missing */
};

/* a[0..n) == b[0..n), inline: words of 8 bytes, the last one overlapping
 * (names are 2 to 17 bytes; a memcmp call cost more than the compare). */
static inline bool bytes_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    uint32_t u, v;
    uint16_t p, q;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return false;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        if (u != v)
            return false;
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return u == v;
    }
    if (n >= 2) {
        memcpy(&p, a, 2);
        memcpy(&q, b, 2);
        if (p != q)
            return false;
        memcpy(&p, a + n - 2, 2);
        memcpy(&q, b + n - 2, 2);
        return p == q;
    }
    return n == 0 || a[0] == b[0];
}

/* Key k (n bytes) is name m: lengths first, then the bytes (a byte loop
 * to the NUL was half of the member matching's instructions). */
static inline bool key_eq(const char *k, size_t n, const struct name *m)
{
    return n == m->n && bytes_eq(k, m->s, n);
}

/* Fills ob from o (all missing when o is not an object). */
static void obj_scan(struct obj *ob, struct sjv o, const struct name *names,
                     size_t n, const struct fpath *path)
{
    size_t next = 0, i;
    assert(n <= MAX_FIELDS);
    ob->names = names;
    ob->path = path;
    memset(ob->v, 0, n * sizeof ob->v[0]);
    if (sj_type(o) != SJ_OBJECT)
        return;
    SJ_FOREACH(it, o)
    {
        size_t kn;
        const char *key = sj_key(it, &kn);
        i = next;
        if (i >= n || !key_eq(key, kn, &names[i]))
            for (i = 0; i < n && !key_eq(key, kn, &names[i]); i++)
                ;
        if (i == n)
            continue;
        if (sj_missing(ob->v[i]))
            ob->v[i] = it;
        next = i + 1;
    }
}

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* The path of member f of ob (valid in the enclosing block). */
#define FP(ob, f) (&(struct fpath){(ob)->path, (ob)->names[f].s, 0})

/* ---- scalar fields ------------------------------------------------ */

static enum cm_status str_val(struct mctx *m, struct sjv v,
                              const struct fpath *path, bool nullable,
                              struct kv_str *out)
{
    size_t n;
    out->p = NULL;
    out->len = 0;
    if (nullable && sj_is_null(v))
        return CM_OK;
    if (sj_type(v) != SJ_STRING)
        return fail(m, path, "expected string%s, got %s",
                    nullable ? " or null" : "", sj_type_name(v));
    out->p = sj_str(v, &n);
    if (n > CM_MAX_STRING)
        return fail(m, path, "string longer than %zu bytes",
                    (size_t)CM_MAX_STRING);
    out->len = (uint32_t)n;
    return CM_OK;
}

static enum cm_status get_str(struct mctx *m, const struct obj *ob, int f,
                              bool nullable, struct kv_str *out)
{
    return str_val(m, ob->v[f], FP(ob, f), nullable, out);
}

/* A URL field: a string without apikey. */
static enum cm_status get_url(struct mctx *m, const struct obj *ob, int f,
                              bool nullable, struct kv_str *out)
{
    enum cm_status st = get_str(m, ob, f, nullable, out);
    if (st != CM_OK || !out->p)
        return st;
    st = sync_strip_apikey(out->p, out->len, m->a, out);
    return st == CM_NOMEM ? nomem(m) : st;
}

static enum cm_status get_time(struct mctx *m, const struct obj *ob, int f,
                               bool nullable, struct kv_str *out)
{
    enum cm_status st = get_str(m, ob, f, nullable, out);
    if (st != CM_OK || !out->p)
        return st;
    if (!sync_valid_time(out->p, out->len))
        return fail(m, FP(ob, f), "expected an RFC3339 time");
    return CM_OK;
}

static enum cm_status get_bool(struct mctx *m, const struct obj *ob, int f,
                               bool *out)
{
    struct sjv v = ob->v[f];
    if (sj_type(v) != SJ_BOOL)
        return fail(m, FP(ob, f), "expected boolean, got %s", sj_type_name(v));
    *out = sj_true(v);
    return CM_OK;
}

/* An integral JSON number in [lo, hi]; null gives *isnull (when allowed). */
static enum cm_status int_val(struct mctx *m, struct sjv v,
                              const struct fpath *path, bool nullable,
                              double lo, double hi, int64_t *out, bool *isnull)
{
    double d;
    *out = 0;
    if (isnull)
        *isnull = false;
    if (nullable && sj_is_null(v)) {
        if (isnull)
            *isnull = true;
        return CM_OK;
    }
    if (sj_type(v) != SJ_NUMBER)
        return fail(m, path, "expected number%s, got %s",
                    nullable ? " or null" : "", sj_type_name(v));
    d = sj_num(v);
    if (!isfinite(d) || d != floor(d))
        return fail(m, path, "expected an integer");
    if (d < lo || d > hi)
        return fail(m, path, "%.0f out of range [%.0f, %.0f]", d, lo, hi);
    *out = (int64_t)d;
    return CM_OK;
}

static enum cm_status get_int(struct mctx *m, const struct obj *ob, int f,
                              bool nullable, double lo, double hi, int64_t *out,
                              bool *isnull)
{
    return int_val(m, ob->v[f], FP(ob, f), nullable, lo, hi, out, isnull);
}

/* Non-negative finite float; null -> -1 when nullable. */
static enum cm_status get_float(struct mctx *m, const struct obj *ob, int f,
                                bool nullable, double *out)
{
    struct sjv v = ob->v[f];
    double d;
    *out = -1;
    if (nullable && sj_is_null(v))
        return CM_OK;
    if (sj_type(v) != SJ_NUMBER)
        return fail(m, FP(ob, f), "expected number%s, got %s",
                    nullable ? " or null" : "", sj_type_name(v));
    d = sj_num(v);
    if (!isfinite(d) || d < 0)
        return fail(m, FP(ob, f), "expected a non-negative number");
    *out = d;
    return CM_OK;
}

static enum cm_status id_val(struct mctx *m, struct sjv v,
                             const struct fpath *path, uint64_t *out)
{
    const char *s = sj_str(v, NULL);
    if (!s)
        return fail(m, path, "expected id string, got %s", sj_type_name(v));
    if (sync_parse_id(s, out) != CM_OK)
        return fail(m, path, "invalid id \"%.24s\"", s);
    return CM_OK;
}

static enum cm_status get_id(struct mctx *m, const struct obj *ob, int f,
                             uint64_t *out)
{
    return id_val(m, ob->v[f], FP(ob, f), out);
}

static const struct name REF_F[] = {NM("id")};

/* {id: "N"} or (nullable) null -> 0. */
static enum cm_status ref_val(struct mctx *m, struct sjv v,
                              const struct fpath *path, bool nullable,
                              uint64_t *out)
{
    struct obj ob;
    *out = 0;
    if (nullable && sj_is_null(v))
        return CM_OK;
    if (sj_type(v) != SJ_OBJECT)
        return fail(m, path, "expected object%s, got %s",
                    nullable ? " or null" : "", sj_type_name(v));
    obj_scan(&ob, v, REF_F, NFIELDS(REF_F), path);
    return get_id(m, &ob, 0, out);
}

static enum cm_status get_ref(struct mctx *m, const struct obj *ob, int f,
                              bool nullable, uint64_t *out)
{
    return ref_val(m, ob->v[f], FP(ob, f), nullable, out);
}

static enum cm_status get_date(struct mctx *m, const struct obj *ob, int f,
                               struct kv_date *out)
{
    struct kv_str s;
    enum cm_status st = get_str(m, ob, f, true, &s);
    memset(out, 0, sizeof *out);
    if (st != CM_OK || !s.p)
        return st;
    if (sync_parse_date(s.p, s.len, out) != CM_OK)
        return fail(m, FP(ob, f), "invalid date \"%.16s\"", s.p);
    return CM_OK;
}

/* An array field: OUT *arr and its length (0 for a nullable null). */
static enum cm_status get_arr(struct mctx *m, const struct obj *ob, int f,
                              bool nullable, struct sjv *arr, uint32_t *n)
{
    struct sjv v = ob->v[f];
    uint32_t sz;
    *arr = (struct sjv){NULL, 0};
    *n = 0;
    if (nullable && sj_is_null(v))
        return CM_OK;
    if (sj_type(v) != SJ_ARRAY)
        return fail(m, FP(ob, f), "expected array%s, got %s",
                    nullable ? " or null" : "", sj_type_name(v));
    sz = sj_size(v);
    if (sz > CM_MAX_ARRAY)
        return fail(m, FP(ob, f), "more than %d elements", CM_MAX_ARRAY);
    *arr = v;
    *n = sz;
    return CM_OK;
}

static void *arr_alloc(struct mctx *m, uint32_t n, size_t elem)
{
    if (n == 0)
        return NULL;
    return sync_arena_alloc(m->a, (size_t)n * elem);
}

/* [String!] into a fresh array. */
static enum cm_status get_strs(struct mctx *m, const struct obj *ob, int f,
                               bool nullable, struct kv_str **out, uint32_t *n)
{
    struct sjv arr;
    struct fpath p = {ob->path, ob->names[f].s, 0}, e = {&p, NULL, 0};
    enum cm_status st = get_arr(m, ob, f, nullable, &arr, n);
    *out = NULL;
    if (st != CM_OK || *n == 0)
        return st;
    if (!(*out = arr_alloc(m, *n, sizeof **out)))
        return nomem(m);
    SJ_FOREACH(it, arr)
    {
        if ((st = str_val(m, it, &e, false, &(*out)[e.idx])) != CM_OK)
            return st;
        e.idx++;
    }
    return CM_OK;
}

/* [{id}] into an array of ids; with sub, [{sub: {id}}]. */
static enum cm_status get_ref_ids(struct mctx *m, const struct obj *ob, int f,
                                  const char *sub, uint64_t **out, uint32_t *n)
{
    struct sjv arr;
    const struct name sub_f[] = {{sub, sub ? (uint8_t)strlen(sub) : 0}};
    struct fpath p = {ob->path, ob->names[f].s, 0}, e = {&p, NULL, 0};
    struct obj io;
    enum cm_status st = get_arr(m, ob, f, false, &arr, n);
    *out = NULL;
    if (st != CM_OK || *n == 0)
        return st;
    if (!(*out = arr_alloc(m, *n, sizeof **out)))
        return nomem(m);
    SJ_FOREACH(it, arr)
    {
        if (sub) { /* containing_groups: [{group: {id}}] */
            if (sj_type(it) != SJ_OBJECT)
                return fail(m, &e, "expected object, got %s", sj_type_name(it));
            obj_scan(&io, it, sub_f, 1, &e);
            st = get_ref(m, &io, 0, false, &(*out)[e.idx]);
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

static enum cm_status refs_from_ids(struct mctx *m, const struct obj *ob, int f,
                                    struct kv_ref **out, uint32_t *n)
{
    uint64_t *ids;
    enum cm_status st = get_ref_ids(m, ob, f, NULL, &ids, n);
    *out = NULL;
    if (st != CM_OK || *n == 0)
        return st;
    if (!(*out = arr_alloc(m, *n, sizeof **out)))
        return nomem(m);
    for (uint32_t i = 0; i < *n; i++)
        ref_init(&(*out)[i], ids[i]);
    return CM_OK;
}

/* The object's own id (member 0 of every object document), also recorded
 * for messages. */
static enum cm_status own_id(struct mctx *m, struct sjv o, const struct obj *ob,
                             uint64_t *out)
{
    const char *s = sj_str(ob->v[0], NULL);
    if (sj_type(o) != SJ_OBJECT) {
        m->id = "?";
        return fail(m, FIELD("(object)"), "expected object, got %s",
                    sj_type_name(o));
    }
    if (s)
        m->id = s;
    return get_id(m, ob, 0, out);
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

/* The members of SyncScenes' objects, in the document's order. */
enum {
    S_ID,
    S_TITLE,
    S_CODE,
    S_DETAILS,
    S_DIRECTOR,
    S_URLS,
    S_DATE,
    S_RATING,
    S_ORGANIZED,
    S_O_COUNTER,
    S_PLAY_COUNT,
    S_PLAY_DURATION,
    S_RESUME_TIME,
    S_LAST_PLAYED_AT,
    S_CREATED_AT,
    S_UPDATED_AT,
    S_INTERACTIVE,
    S_INTERACTIVE_SPEED,
    S_CAPTIONS,
    S_FILES,
    S_PATHS,
    S_STUDIO,
    S_TAGS,
    S_PERFORMERS,
    S_GROUPS,
    S_GALLERIES,
    S_STASH_IDS,
    S_MARKERS,
    S_N
};
_Static_assert(S_N <= MAX_FIELDS, "struct obj holds every scene member");
static const struct name SCENE_F[S_N] = {
    [S_ID] = NM("id"),
    [S_TITLE] = NM("title"),
    [S_CODE] = NM("code"),
    [S_DETAILS] = NM("details"),
    [S_DIRECTOR] = NM("director"),
    [S_URLS] = NM("urls"),
    [S_DATE] = NM("date"),
    [S_RATING] = NM("rating100"),
    [S_ORGANIZED] = NM("organized"),
    [S_O_COUNTER] = NM("o_counter"),
    [S_PLAY_COUNT] = NM("play_count"),
    [S_PLAY_DURATION] = NM("play_duration"),
    [S_RESUME_TIME] = NM("resume_time"),
    [S_LAST_PLAYED_AT] = NM("last_played_at"),
    [S_CREATED_AT] = NM("created_at"),
    [S_UPDATED_AT] = NM("updated_at"),
    [S_INTERACTIVE] = NM("interactive"),
    [S_INTERACTIVE_SPEED] = NM("interactive_speed"),
    [S_CAPTIONS] = NM("captions"),
    [S_FILES] = NM("files"),
    [S_PATHS] = NM("paths"),
    [S_STUDIO] = NM("studio"),
    [S_TAGS] = NM("tags"),
    [S_PERFORMERS] = NM("performers"),
    [S_GROUPS] = NM("groups"),
    [S_GALLERIES] = NM("galleries"),
    [S_STASH_IDS] = NM("stash_ids"),
    [S_MARKERS] = NM("scene_markers"),
};

enum {
    F_ID,
    F_PATH,
    F_BASENAME,
    F_SIZE,
    F_DURATION,
    F_VIDEO_CODEC,
    F_AUDIO_CODEC,
    F_WIDTH,
    F_HEIGHT,
    F_FRAME_RATE,
    F_BIT_RATE,
    F_FORMAT,
    F_MOD_TIME,
    F_FINGERPRINTS,
    F_N
};
static const struct name FILE_F[F_N] = {
    [F_ID] = NM("id"),
    [F_PATH] = NM("path"),
    [F_BASENAME] = NM("basename"),
    [F_SIZE] = NM("size"),
    [F_DURATION] = NM("duration"),
    [F_VIDEO_CODEC] = NM("video_codec"),
    [F_AUDIO_CODEC] = NM("audio_codec"),
    [F_WIDTH] = NM("width"),
    [F_HEIGHT] = NM("height"),
    [F_FRAME_RATE] = NM("frame_rate"),
    [F_BIT_RATE] = NM("bit_rate"),
    [F_FORMAT] = NM("format"),
    [F_MOD_TIME] = NM("mod_time"),
    [F_FINGERPRINTS] = NM("fingerprints"),
};

static const struct name FINGERPRINT_F[] = {NM("type"), NM("value")};
static const struct name CAPTION_F[] = {NM("language_code"),
                                        NM("caption_type")};
static const struct name STASH_ID_F[] = {NM("endpoint"), NM("stash_id")};
static const struct name SCENE_GROUP_F[] = {NM("group"), NM("scene_index")};
enum {
    MK_ID,
    MK_TITLE,
    MK_SECONDS,
    MK_END_SECONDS,
    MK_PRIMARY_TAG,
    MK_TAGS,
    MK_N
};
static const struct name MARKER_F[MK_N] = {
    [MK_ID] = NM("id"),
    [MK_TITLE] = NM("title"),
    [MK_SECONDS] = NM("seconds"),
    [MK_END_SECONDS] = NM("end_seconds"),
    [MK_PRIMARY_TAG] = NM("primary_tag"),
    [MK_TAGS] = NM("tags"),
};
static const struct name PATHS_F[] = {
    NM("screenshot"), NM("preview"),   NM("webp"),   NM("vtt"),
    NM("sprite"),     NM("funscript"), NM("caption")};

static enum cm_status map_file(struct mctx *m, struct sjv f,
                               const struct fpath *path, struct kv_file *out)
{
    struct fpath pfps = {path, FILE_F[F_FINGERPRINTS].s, 0};
    struct fpath pfp = {&pfps, NULL, 0};
    struct obj fo, fpo;
    struct sjv fps;
    uint32_t nfp;
    int64_t v;
    enum cm_status st;

    memset(out, 0, sizeof *out);
    if (sj_type(f) != SJ_OBJECT)
        return fail(m, path, "expected object, got %s", sj_type_name(f));
    obj_scan(&fo, f, FILE_F, F_N, path);
    if ((st = get_id(m, &fo, F_ID, &out->id)) != CM_OK ||
        (st = get_str(m, &fo, F_PATH, false, &out->path)) != CM_OK ||
        (st = get_str(m, &fo, F_BASENAME, false, &out->basename)) != CM_OK ||
        (st = get_int(m, &fo, F_SIZE, false, 0, 9007199254740992.0, &v,
                      NULL)) != CM_OK)
        return st;
    out->size = v;
    if ((st = get_float(m, &fo, F_DURATION, false, &out->duration)) != CM_OK ||
        (st = get_str(m, &fo, F_VIDEO_CODEC, false, &out->video_codec)) !=
            CM_OK ||
        (st = get_str(m, &fo, F_AUDIO_CODEC, false, &out->audio_codec)) !=
            CM_OK ||
        (st = get_int(m, &fo, F_WIDTH, false, 0, INT32_MAX, &v, NULL)) != CM_OK)
        return st;
    out->width = (int32_t)v;
    if ((st = get_int(m, &fo, F_HEIGHT, false, 0, INT32_MAX, &v, NULL)) !=
        CM_OK)
        return st;
    out->height = (int32_t)v;
    if ((st = get_float(m, &fo, F_FRAME_RATE, false, &out->frame_rate)) !=
            CM_OK ||
        (st = get_int(m, &fo, F_BIT_RATE, false, 0, 9007199254740992.0, &v,
                      NULL)) != CM_OK)
        return st;
    out->bit_rate = v;
    if ((st = get_str(m, &fo, F_FORMAT, false, &out->format)) != CM_OK ||
        (st = get_time(m, &fo, F_MOD_TIME, false, &out->mod_time)) != CM_OK ||
        (st = get_arr(m, &fo, F_FINGERPRINTS, false, &fps, &nfp)) != CM_OK)
        return st;
    SJ_FOREACH(it, fps)
    {
        struct kv_str type, value;
        if (sj_type(it) != SJ_OBJECT)
            return fail(m, &pfp, "expected object, got %s", sj_type_name(it));
        obj_scan(&fpo, it, FINGERPRINT_F, NFIELDS(FINGERPRINT_F), &pfp);
        if ((st = get_str(m, &fpo, 0, false, &type)) != CM_OK ||
            (st = get_str(m, &fpo, 1, false, &value)) != CM_OK)
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

/* Element i of a [{...}] field: checks it is an object and scans it with
 * names[0..n) into OUT *eo (path: *ep, which is set to the element). */
static enum cm_status elem_scan(struct mctx *m, struct sjv it, uint32_t i,
                                const struct name *names, size_t n,
                                struct fpath *ep, struct obj *eo)
{
    ep->idx = i;
    if (sj_type(it) != SJ_OBJECT)
        return fail(m, ep, "expected object, got %s", sj_type_name(it));
    obj_scan(eo, it, names, n, ep);
    return CM_OK;
}

static enum cm_status map_scene_arrays(struct mctx *m, const struct obj *ob,
                                       struct kv_scene *sc)
{
    struct sjv arr;
    struct fpath pa = {ob->path, NULL, 0}, path = {&pa, NULL, 0};
    struct obj eo;
    uint32_t i;
    int64_t v;
    bool isnull;
    enum cm_status st;

    /* captions: nullable list */
    if ((st = get_arr(m, ob, S_CAPTIONS, true, &arr, &sc->n_captions)) != CM_OK)
        return st;
    if (sc->n_captions &&
        !(sc->captions = arr_alloc(m, sc->n_captions, sizeof *sc->captions)))
        return nomem(m);
    i = 0;
    pa.key = SCENE_F[S_CAPTIONS].s;
    SJ_FOREACH(it, arr)
    {
        if ((st = elem_scan(m, it, i, CAPTION_F, NFIELDS(CAPTION_F), &path,
                            &eo)) != CM_OK ||
            (st = get_str(m, &eo, 0, false, &sc->captions[i].language_code)) !=
                CM_OK ||
            (st = get_str(m, &eo, 1, false, &sc->captions[i].caption_type)) !=
                CM_OK)
            return st;
        i++;
    }
    /* files */
    if ((st = get_arr(m, ob, S_FILES, false, &arr, &sc->n_files)) != CM_OK)
        return st;
    if (sc->n_files &&
        !(sc->files = arr_alloc(m, sc->n_files, sizeof *sc->files)))
        return nomem(m);
    i = 0;
    pa.key = SCENE_F[S_FILES].s;
    SJ_FOREACH(it, arr)
    {
        path.idx = i;
        if ((st = map_file(m, it, &path, &sc->files[i])) != CM_OK)
            return st;
        i++;
    }
    /* stash_ids */
    if ((st = get_arr(m, ob, S_STASH_IDS, false, &arr, &sc->n_stash_ids)) !=
        CM_OK)
        return st;
    if (sc->n_stash_ids &&
        !(sc->stash_ids = arr_alloc(m, sc->n_stash_ids, sizeof *sc->stash_ids)))
        return nomem(m);
    i = 0;
    pa.key = SCENE_F[S_STASH_IDS].s;
    SJ_FOREACH(it, arr)
    {
        if ((st = elem_scan(m, it, i, STASH_ID_F, NFIELDS(STASH_ID_F), &path,
                            &eo)) != CM_OK ||
            (st = get_str(m, &eo, 0, false, &sc->stash_ids[i].endpoint)) !=
                CM_OK ||
            (st = get_str(m, &eo, 1, false, &sc->stash_ids[i].stash_id)) !=
                CM_OK)
            return st;
        i++;
    }
    /* scene_markers */
    if ((st = get_arr(m, ob, S_MARKERS, false, &arr, &sc->n_markers)) != CM_OK)
        return st;
    if (sc->n_markers &&
        !(sc->markers = arr_alloc(m, sc->n_markers, sizeof *sc->markers)))
        return nomem(m);
    i = 0;
    pa.key = SCENE_F[S_MARKERS].s;
    SJ_FOREACH(it, arr)
    {
        struct kv_marker *mk = &sc->markers[i];
        uint64_t *tids;
        uint32_t nt;
        if ((st = elem_scan(m, it, i, MARKER_F, MK_N, &path, &eo)) != CM_OK ||
            (st = get_id(m, &eo, MK_ID, &mk->id)) != CM_OK ||
            (st = get_str(m, &eo, MK_TITLE, false, &mk->title)) != CM_OK ||
            (st = get_float(m, &eo, MK_SECONDS, false, &mk->seconds)) !=
                CM_OK ||
            (st = get_float(m, &eo, MK_END_SECONDS, true, &mk->end_seconds)) !=
                CM_OK ||
            (st = get_ref(m, &eo, MK_PRIMARY_TAG, false,
                          &mk->primary_tag_id)) != CM_OK ||
            (st = get_ref_ids(m, &eo, MK_TAGS, NULL, &tids, &nt)) != CM_OK)
            return st;
        i++;
    }
    /* groups: [{group {id}, scene_index}] */
    if ((st = get_arr(m, ob, S_GROUPS, false, &arr, &sc->n_groups)) != CM_OK)
        return st;
    if (sc->n_groups &&
        !(sc->groups = arr_alloc(m, sc->n_groups, sizeof *sc->groups)))
        return nomem(m);
    i = 0;
    pa.key = SCENE_F[S_GROUPS].s;
    SJ_FOREACH(it, arr)
    {
        uint64_t gid;
        if ((st = elem_scan(m, it, i, SCENE_GROUP_F, NFIELDS(SCENE_GROUP_F),
                            &path, &eo)) != CM_OK ||
            (st = get_ref(m, &eo, 0, false, &gid)) != CM_OK ||
            (st = get_int(m, &eo, 1, true, INT32_MIN, INT32_MAX, &v,
                          &isnull)) != CM_OK)
            return st;
        ref_init(&sc->groups[i], gid);
        sc->groups[i].index = isnull ? -1 : (int32_t)v;
        if (!isnull && v < 0)
            return fail(m, &path, "negative scene_index");
        i++;
    }
    if ((st = refs_from_ids(m, ob, S_TAGS, &sc->tags, &sc->n_tags)) != CM_OK ||
        (st = refs_from_ids(m, ob, S_PERFORMERS, &sc->performers,
                            &sc->n_performers)) != CM_OK ||
        (st = refs_from_ids(m, ob, S_GALLERIES, &sc->galleries,
                            &sc->n_galleries)) != CM_OK)
        return st;
    return CM_OK;
}

static enum cm_status map_paths(struct mctx *m, const struct obj *ob,
                                struct kv_scene *sc)
{
    struct sjv p = ob->v[S_PATHS];
    const struct fpath pp = {ob->path, SCENE_F[S_PATHS].s, 0};
    struct kv_str *const out[] = {
        &sc->p_screenshot, &sc->p_preview,   &sc->p_webp,   &sc->p_vtt,
        &sc->p_sprite,     &sc->p_funscript, &sc->p_caption};
    struct obj po;
    enum cm_status st;
    if (sj_type(p) != SJ_OBJECT)
        return fail(m, &pp, "expected object, got %s", sj_type_name(p));
    obj_scan(&po, p, PATHS_F, NFIELDS(PATHS_F), &pp);
    for (size_t i = 0; i < NFIELDS(PATHS_F); i++)
        if ((st = get_url(m, &po, (int)i, true, out[i])) != CM_OK)
            return st;
    return CM_OK;
}

enum cm_status sync_map_scene(struct sjv o, struct sync_arena *a,
                              struct kv_scene *sc, char *err, size_t errlen)
{
    struct mctx m = {a, "scene", "?", err, errlen};
    struct obj ob;
    int64_t v;
    bool isnull;
    uint64_t studio;
    enum cm_status st;

    memset(sc, 0, sizeof *sc);
    obj_scan(&ob, o, SCENE_F, S_N, NULL);
    if ((st = own_id(&m, o, &ob, &sc->id)) != CM_OK ||
        (st = get_str(&m, &ob, S_TITLE, true, &sc->title)) != CM_OK ||
        (st = get_str(&m, &ob, S_CODE, true, &sc->code)) != CM_OK ||
        (st = get_str(&m, &ob, S_DETAILS, true, &sc->details)) != CM_OK ||
        (st = get_str(&m, &ob, S_DIRECTOR, true, &sc->director)) != CM_OK ||
        (st = get_strs(&m, &ob, S_URLS, false, &sc->urls, &sc->n_urls)) !=
            CM_OK ||
        (st = get_date(&m, &ob, S_DATE, &sc->date)) != CM_OK ||
        (st = get_int(&m, &ob, S_RATING, true, 0, 100, &v, &isnull)) != CM_OK)
        goto out;
    sc->rating100 = isnull ? -1 : (int32_t)v;
    if ((st = get_bool(&m, &ob, S_ORGANIZED, &sc->organized)) != CM_OK ||
        (st = get_int(&m, &ob, S_O_COUNTER, true, 0, INT32_MAX, &v, NULL)) !=
            CM_OK)
        goto out;
    sc->o_counter = (int32_t)v;
    if ((st = get_int(&m, &ob, S_PLAY_COUNT, true, 0, INT32_MAX, &v, NULL)) !=
        CM_OK)
        goto out;
    sc->play_count = (int32_t)v;
    if ((st = get_float(&m, &ob, S_PLAY_DURATION, true, &sc->play_duration)) !=
            CM_OK ||
        (st = get_float(&m, &ob, S_RESUME_TIME, true, &sc->resume_time)) !=
            CM_OK ||
        (st = get_time(&m, &ob, S_LAST_PLAYED_AT, true, &sc->last_played_at)) !=
            CM_OK ||
        (st = get_time(&m, &ob, S_CREATED_AT, false, &sc->created_at)) !=
            CM_OK ||
        (st = get_time(&m, &ob, S_UPDATED_AT, false, &sc->updated_at)) !=
            CM_OK ||
        (st = get_bool(&m, &ob, S_INTERACTIVE, &sc->interactive)) != CM_OK ||
        (st = get_int(&m, &ob, S_INTERACTIVE_SPEED, true, 0, INT32_MAX, &v,
                      &isnull)) != CM_OK)
        goto out;
    sc->interactive_speed = isnull ? -1 : (int32_t)v;
    if ((st = map_paths(&m, &ob, sc)) != CM_OK ||
        (st = get_ref(&m, &ob, S_STUDIO, true, &studio)) != CM_OK ||
        (st = map_scene_arrays(&m, &ob, sc)) != CM_OK)
        goto out;
    ref_init(&sc->studio, studio);
out:
    return st;
}

/* ---- entities ----------------------------------------------------- */

/* The members of Sync<Type>s' objects, in the documents' order.  Every
 * one starts with id and name (title for galleries) and ends with
 * created_at and updated_at: sync_map_entity() reads those by position. */
enum { E_ID, E_NAME };
enum {
    TG_SORT_NAME = E_NAME + 1,
    TG_ALIASES,
    TG_FAVORITE,
    TG_DESCRIPTION,
    TG_IMAGE,
    TG_PARENTS,
    TG_CREATED_AT,
    TG_UPDATED_AT,
    TG_N
};
static const struct name TAG_F[TG_N] = {
    [E_ID] = NM("id"),
    [E_NAME] = NM("name"),
    [TG_SORT_NAME] = NM("sort_name"),
    [TG_ALIASES] = NM("aliases"),
    [TG_FAVORITE] = NM("favorite"),
    [TG_DESCRIPTION] = NM("description"),
    [TG_IMAGE] = NM("image_path"),
    [TG_PARENTS] = NM("parents"),
    [TG_CREATED_AT] = NM("created_at"),
    [TG_UPDATED_AT] = NM("updated_at"),
};
enum {
    PF_DISAMBIGUATION = E_NAME + 1,
    PF_ALIASES,
    PF_GENDER,
    PF_FAVORITE,
    PF_RATING,
    PF_BIRTHDATE,
    PF_COUNTRY,
    PF_IMAGE,
    PF_TAGS,
    PF_CREATED_AT,
    PF_UPDATED_AT,
    PF_N
};
static const struct name PERFORMER_F[PF_N] = {
    [E_ID] = NM("id"),
    [E_NAME] = NM("name"),
    [PF_DISAMBIGUATION] = NM("disambiguation"),
    [PF_ALIASES] = NM("alias_list"),
    [PF_GENDER] = NM("gender"),
    [PF_FAVORITE] = NM("favorite"),
    [PF_RATING] = NM("rating100"),
    [PF_BIRTHDATE] = NM("birthdate"),
    [PF_COUNTRY] = NM("country"),
    [PF_IMAGE] = NM("image_path"),
    [PF_TAGS] = NM("tags"),
    [PF_CREATED_AT] = NM("created_at"),
    [PF_UPDATED_AT] = NM("updated_at"),
};
enum {
    ST_ALIASES = E_NAME + 1,
    ST_FAVORITE,
    ST_RATING,
    ST_PARENT,
    ST_IMAGE,
    ST_DETAILS,
    ST_CREATED_AT,
    ST_UPDATED_AT,
    ST_N
};
static const struct name STUDIO_F[ST_N] = {
    [E_ID] = NM("id"),
    [E_NAME] = NM("name"),
    [ST_ALIASES] = NM("aliases"),
    [ST_FAVORITE] = NM("favorite"),
    [ST_RATING] = NM("rating100"),
    [ST_PARENT] = NM("parent_studio"),
    [ST_IMAGE] = NM("image_path"),
    [ST_DETAILS] = NM("details"),
    [ST_CREATED_AT] = NM("created_at"),
    [ST_UPDATED_AT] = NM("updated_at"),
};
enum {
    GR_ALIASES = E_NAME + 1,
    GR_DATE,
    GR_DURATION,
    GR_RATING,
    GR_DIRECTOR,
    GR_SYNOPSIS,
    GR_STUDIO,
    GR_CONTAINING,
    GR_FRONT,
    GR_BACK,
    GR_CREATED_AT,
    GR_UPDATED_AT,
    GR_N
};
static const struct name GROUP_F[GR_N] = {
    [E_ID] = NM("id"),
    [E_NAME] = NM("name"),
    [GR_ALIASES] = NM("aliases"),
    [GR_DATE] = NM("date"),
    [GR_DURATION] = NM("duration"),
    [GR_RATING] = NM("rating100"),
    [GR_DIRECTOR] = NM("director"),
    [GR_SYNOPSIS] = NM("synopsis"),
    [GR_STUDIO] = NM("studio"),
    [GR_CONTAINING] = NM("containing_groups"),
    [GR_FRONT] = NM("front_image_path"),
    [GR_BACK] = NM("back_image_path"),
    [GR_CREATED_AT] = NM("created_at"),
    [GR_UPDATED_AT] = NM("updated_at"),
};
enum {
    GA_DATE = E_NAME + 1,
    GA_RATING,
    GA_STUDIO,
    GA_IMAGE_COUNT,
    GA_PATHS,
    GA_CREATED_AT,
    GA_UPDATED_AT,
    GA_N
};
static const struct name GALLERY_F[GA_N] = {
    [E_ID] = NM("id"),
    [E_NAME] = NM("title"),
    [GA_DATE] = NM("date"),
    [GA_RATING] = NM("rating100"),
    [GA_STUDIO] = NM("studio"),
    [GA_IMAGE_COUNT] = NM("image_count"),
    [GA_PATHS] = NM("paths"),
    [GA_CREATED_AT] = NM("created_at"),
    [GA_UPDATED_AT] = NM("updated_at"),
};
static const struct name GALLERY_PATHS_F[] = {NM("cover")};

static enum cm_status map_gender(struct mctx *m, const struct obj *ob,
                                 uint8_t *out)
{
    struct kv_str s;
    enum cm_status st = get_str(m, ob, PF_GENDER, true, &s);
    *out = KV_GENDER_NULL;
    if (st != CM_OK || !s.p)
        return st;
    for (uint8_t i = 1; i < KV_GENDER_COUNT; i++)
        if (strcmp(s.p, kv_gender_name(i)) == 0) {
            *out = i;
            return CM_OK;
        }
    return fail(m, FP(ob, PF_GENDER), "unknown gender \"%.24s\"", s.p);
}

static enum cm_status map_rating(struct mctx *m, const struct obj *ob, int f,
                                 int32_t *out)
{
    int64_t v;
    bool isnull;
    enum cm_status st = get_int(m, ob, f, true, 0, 100, &v, &isnull);
    *out = isnull ? -1 : (int32_t)v;
    return st;
}

static enum cm_status map_tag(struct mctx *m, const struct obj *ob,
                              struct kv_entity *e)
{
    enum cm_status st;
    if ((st = get_str(m, ob, TG_SORT_NAME, true, &e->sort_name)) != CM_OK ||
        (st = get_strs(m, ob, TG_ALIASES, false, &e->aliases, &e->n_aliases)) !=
            CM_OK ||
        (st = get_bool(m, ob, TG_FAVORITE, &e->favorite)) != CM_OK ||
        (st = get_str(m, ob, TG_DESCRIPTION, true, &e->description)) != CM_OK ||
        (st = get_url(m, ob, TG_IMAGE, true, &e->image)) != CM_OK ||
        (st = get_ref_ids(m, ob, TG_PARENTS, NULL, &e->parents,
                          &e->n_parents)) != CM_OK)
        return st;
    return CM_OK;
}

static enum cm_status map_performer(struct mctx *m, const struct obj *ob,
                                    struct kv_entity *e)
{
    struct kv_date d;
    enum cm_status st;
    if ((st = get_str(m, ob, PF_DISAMBIGUATION, true, &e->disambiguation)) !=
            CM_OK ||
        (st = get_strs(m, ob, PF_ALIASES, false, &e->aliases, &e->n_aliases)) !=
            CM_OK ||
        (st = map_gender(m, ob, &e->gender)) != CM_OK ||
        (st = get_bool(m, ob, PF_FAVORITE, &e->favorite)) != CM_OK ||
        (st = map_rating(m, ob, PF_RATING, &e->rating100)) != CM_OK ||
        (st = get_str(m, ob, PF_BIRTHDATE, true, &e->birthdate)) != CM_OK)
        return st;
    if (e->birthdate.p &&
        sync_parse_date(e->birthdate.p, e->birthdate.len, &d) != CM_OK)
        return fail(m, FP(ob, PF_BIRTHDATE), "invalid date \"%.16s\"",
                    e->birthdate.p);
    if ((st = get_str(m, ob, PF_COUNTRY, true, &e->country)) != CM_OK ||
        (st = get_url(m, ob, PF_IMAGE, true, &e->image)) != CM_OK ||
        (st = get_ref_ids(m, ob, PF_TAGS, NULL, &e->tags, &e->n_tags)) != CM_OK)
        return st;
    return CM_OK;
}

static enum cm_status map_studio(struct mctx *m, const struct obj *ob,
                                 struct kv_entity *e)
{
    uint64_t parent;
    enum cm_status st;
    if ((st = get_strs(m, ob, ST_ALIASES, false, &e->aliases, &e->n_aliases)) !=
            CM_OK ||
        (st = get_bool(m, ob, ST_FAVORITE, &e->favorite)) != CM_OK ||
        (st = map_rating(m, ob, ST_RATING, &e->rating100)) != CM_OK ||
        (st = get_ref(m, ob, ST_PARENT, true, &parent)) != CM_OK ||
        (st = get_url(m, ob, ST_IMAGE, true, &e->image)) != CM_OK ||
        (st = get_str(m, ob, ST_DETAILS, true, &e->description)) != CM_OK)
        return st;
    if (parent) {
        if (!(e->parents = sync_arena_alloc(m->a, sizeof *e->parents)))
            return nomem(m);
        e->parents[0] = parent;
        e->n_parents = 1;
    }
    return CM_OK;
}

static enum cm_status map_group(struct mctx *m, const struct obj *ob,
                                struct kv_entity *e)
{
    struct kv_str alias;
    int64_t v;
    bool isnull;
    enum cm_status st;
    if ((st = get_str(m, ob, GR_ALIASES, true, &alias)) != CM_OK ||
        (st = get_date(m, ob, GR_DATE, &e->date)) != CM_OK ||
        (st = get_int(m, ob, GR_DURATION, true, 0, INT32_MAX, &v, &isnull)) !=
            CM_OK)
        return st;
    e->duration = isnull ? -1 : (int32_t)v;
    if ((st = map_rating(m, ob, GR_RATING, &e->rating100)) != CM_OK ||
        (st = get_str(m, ob, GR_DIRECTOR, true, &e->director)) != CM_OK ||
        (st = get_str(m, ob, GR_SYNOPSIS, true, &e->description)) != CM_OK ||
        (st = get_ref(m, ob, GR_STUDIO, true, &e->studio_id)) != CM_OK ||
        (st = get_ref_ids(m, ob, GR_CONTAINING, "group", &e->parents,
                          &e->n_parents)) != CM_OK ||
        (st = get_url(m, ob, GR_FRONT, true, &e->image)) != CM_OK ||
        (st = get_url(m, ob, GR_BACK, true, &e->back_image)) != CM_OK)
        return st;
    if (alias.p) {
        if (!(e->aliases = sync_arena_alloc(m->a, sizeof *e->aliases)))
            return nomem(m);
        e->aliases[0] = alias;
        e->n_aliases = 1;
    }
    return CM_OK;
}

static enum cm_status map_gallery(struct mctx *m, const struct obj *ob,
                                  struct kv_entity *e)
{
    struct sjv paths = ob->v[GA_PATHS];
    struct fpath pp = {ob->path, GALLERY_F[GA_PATHS].s, 0};
    struct obj po;
    int64_t v;
    enum cm_status st;
    if ((st = get_date(m, ob, GA_DATE, &e->date)) != CM_OK ||
        (st = map_rating(m, ob, GA_RATING, &e->rating100)) != CM_OK ||
        (st = get_ref(m, ob, GA_STUDIO, true, &e->studio_id)) != CM_OK ||
        (st = get_int(m, ob, GA_IMAGE_COUNT, false, 0, INT32_MAX, &v, NULL)) !=
            CM_OK)
        return st;
    e->image_count = (int32_t)v;
    if (sj_type(paths) != SJ_OBJECT)
        return fail(m, &pp, "expected object, got %s", sj_type_name(paths));
    obj_scan(&po, paths, GALLERY_PATHS_F, NFIELDS(GALLERY_PATHS_F), &pp);
    return get_url(m, &po, 0, false, &e->image);
}

enum cm_status sync_map_entity(struct sjv o, uint8_t type, struct sync_arena *a,
                               struct kv_entity *e, char *err, size_t errlen)
{
    struct mctx m = {a, "entity", "?", err, errlen};
    const struct name *names;
    struct obj ob;
    size_t n;
    enum cm_status st;

    memset(e, 0, sizeof *e);
    e->type = type;
    e->rating100 = -1;
    e->duration = -1;
    e->image_count = -1;
    switch (type) {
    case KV_TAG:
        m.kind = "tag";
        names = TAG_F;
        n = TG_N;
        break;
    case KV_PERFORMER:
        m.kind = "performer";
        names = PERFORMER_F;
        n = PF_N;
        break;
    case KV_STUDIO:
        m.kind = "studio";
        names = STUDIO_F;
        n = ST_N;
        break;
    case KV_GROUP:
        m.kind = "group";
        names = GROUP_F;
        n = GR_N;
        break;
    case KV_GALLERY:
        m.kind = "gallery";
        names = GALLERY_F;
        n = GA_N;
        break;
    default:
        if (err && errlen)
            snprintf(err, errlen, "unknown entity type %u", type);
        return CM_INVALID;
    }
    obj_scan(&ob, o, names, n, NULL);
    if ((st = own_id(&m, o, &ob, &e->id)) != CM_OK ||
        (st = get_str(&m, &ob, E_NAME, type == KV_GALLERY, &e->name)) != CM_OK)
        return st;
    switch (type) {
    case KV_TAG: st = map_tag(&m, &ob, e); break;
    case KV_PERFORMER: st = map_performer(&m, &ob, e); break;
    case KV_STUDIO: st = map_studio(&m, &ob, e); break;
    case KV_GROUP: st = map_group(&m, &ob, e); break;
    default: st = map_gallery(&m, &ob, e); break;
    }
    if (st != CM_OK ||
        (st = get_time(&m, &ob, (int)n - 2, false, &e->created_at)) != CM_OK ||
        (st = get_time(&m, &ob, (int)n - 1, false, &e->updated_at)) != CM_OK)
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
    }
    out->has_image = kv_str_set(e.image);
    out->has_back_image = kv_str_set(e.back_image);
    if (st == CM_OK)
        st = copy_str(a, e.name, &out->name);
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
    struct sync_arena strs; /* the strings the entries point to */
};

enum cm_status sync_ref_cache_new(struct sync_ref_cache **out)
{
    *out = cm_calloc(1, sizeof **out);
    if (!*out)
        return CM_NOMEM;
    sync_arena_init(&(*out)->strs, CM_MAX_REF_CACHE_BYTES);
    return CM_OK;
}

void sync_ref_cache_clear(struct sync_ref_cache *c)
{
    if (!c)
        return;
    if (c->n)
        memset(c->slot, 0, c->cap * sizeof *c->slot);
    c->n = 0;
    sync_arena_reset(&c->strs);
}

void sync_ref_cache_free(struct sync_ref_cache *c)
{
    if (!c)
        return;
    sync_arena_fini(&c->strs);
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
static struct ref_entry *ref_slot(struct sync_ref_cache *c, uint64_t key)
{
    size_t i;
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
    struct ref_entry *e = c && !(id >> 56) ? ref_slot(c, key) : NULL;
    bool found;
    enum cm_status st = CM_NOMEM;

    if (e && e->key) { /* cached */
        *r = e->ref;
        found = e->found;
    } else {
        /* Cached: copied into the cache's memory, unless that is full
         * (then, like uncached, into the caller's arena). */
        if (e && (st = ref_lookup(t, type, id, &c->strs, r, &found)) == CM_OK) {
            e->key = key;
            e->found = found;
            e->ref = *r;
            c->n++;
        } else if (st != CM_NOMEM ||
                   (st = ref_lookup(t, type, id, a, r, &found)) != CM_OK) {
            return st;
        }
    }
    r->id = id;
    r->index = type == KV_GROUP ? index : -1;
    if (!found && unknown)
        (*unknown)++;
    return CM_OK;
}

/* Asks for the cache slots of r[0..n) before they are probed: the table
 * is megabytes (a slot per entity of the library), so each probe is a
 * cache miss, and a scene's ~15 of them then overlap instead of following
 * one another. */
static void ref_prefetch(const struct sync_ref_cache *c, uint8_t type,
                         const struct kv_ref *r, uint32_t n)
{
    if (!c || !c->cap)
        return;
    for (uint32_t i = 0; i < n; i++) {
        const struct ref_entry *e =
            &c->slot[ref_hash((uint64_t)type << 56 | r[i].id) & (c->cap - 1)];
        __builtin_prefetch(e);
        __builtin_prefetch((const char *)(e + 1) - 1);
    }
}

enum cm_status sync_fill_refs(struct kv_txn *t, struct kv_scene *sc,
                              struct sync_arena *a, struct sync_ref_cache *c,
                              uint64_t *unknown)
{
    enum cm_status st = CM_OK;
    if (sc->studio.id)
        ref_prefetch(c, KV_STUDIO, &sc->studio, 1);
    ref_prefetch(c, KV_PERFORMER, sc->performers, sc->n_performers);
    ref_prefetch(c, KV_TAG, sc->tags, sc->n_tags);
    ref_prefetch(c, KV_GROUP, sc->groups, sc->n_groups);
    ref_prefetch(c, KV_GALLERY, sc->galleries, sc->n_galleries);
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
