/*
 * api_entities.c - performer/studio/tag/group/gallery lists
 * (POST /api/library/<entities>, Peek's find<Entity>s envelope) and the
 * autocomplete lists (POST /api/library/<entities>/minimal).
 *
 * Entities are few (tens of thousands at most).  Their sort and filter
 * fields live in a per-type snapshot of the store (see api_handlers.h,
 * "Entity list snapshots"): built by one scan of the entities database per
 * LMDB snapshot, names pre-ranked in natural order, scene counts (from the
 * posting bitmaps, idx_entity_scene_count) computed for the whole type on
 * first use.  A request filters the snapshot's rows (favorite, ids, q on
 * pre-folded text, minimum scene count) and keeps the best page + offset
 * in a bounded heap; only the page's records are read and decoded.
 */
#include <cjson/cJSON.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_natural.h"
#include "index/idx.h"

#define TRY(x)                                                                 \
    do {                                                                       \
        if ((st = (x)) != CM_OK)                                               \
            goto out;                                                          \
    } while (0)
#define LIT(b, s) API_LIT((b), (s))

enum esort {
    S_NAME,
    S_SCENES,
    S_CREATED,
    S_UPDATED,
    S_RATING,
    S_DATE,
    S_RANDOM
};

struct eopts {
    const char *q; /* NULL = no text filter */
    size_t qlen;
    enum esort sort;
    bool desc;
    long page, per_page; /* per_page -1 = all (capped) */
    int favorite;        /* -1 = any */
    int64_t min_scenes;  /* -1 = none */
    uint64_t *ids;       /* sorted */
    size_t nids;
    bool has_ids;  /* an ids lookup (possibly empty: matches nothing) */
    uint64_t seed; /* random_<seed> */
};

struct erow {
    uint64_t id;
    struct kv_str name, created, updated;
    int32_t rating;
    int32_t date;   /* yyyymmdd, -1 null */
    int64_t scenes; /* -1 = not computed */
    double rnd;
};

static const char *plural(uint8_t t)
{
    switch (t) {
    case KV_PERFORMER: return "performers";
    case KV_STUDIO: return "studios";
    case KV_TAG: return "tags";
    case KV_GROUP: return "groups";
    default: return "galleries";
    }
}

static const char *singular(uint8_t t)
{
    switch (t) {
    case KV_PERFORMER: return "performer";
    case KV_STUDIO: return "studio";
    case KV_TAG: return "tag";
    case KV_GROUP: return "group";
    default: return "gallery";
    }
}

static const char *find_key(uint8_t t)
{
    switch (t) {
    case KV_PERFORMER: return "findPerformers";
    case KV_STUDIO: return "findStudios";
    case KV_TAG: return "findTags";
    case KV_GROUP: return "findGroups";
    default: return "findGalleries";
    }
}

/* ---- Request parsing ---------------------------------------------------- */

static enum cm_status get_int(const cJSON *j, const char *field,
                              struct api_resp *resp, long lo, long hi,
                              long *out)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) ||
        j->valuedouble < (double)lo || j->valuedouble > (double)hi)
        return api_fail(resp, CM_INVALID, "out of range or not an integer",
                        field);
    *out = (long)j->valuedouble;
    return CM_OK;
}

static enum cm_status parse_sort(const char *s, struct eopts *o,
                                 struct api_resp *resp)
{
    static const struct {
        const char *name;
        enum esort sort;
    } t[] = {{"name", S_NAME},          {"title", S_NAME},
             {"scene_count", S_SCENES}, {"scenes_count", S_SCENES},
             {"created_at", S_CREATED}, {"updated_at", S_UPDATED},
             {"rating", S_RATING},      {"rating100", S_RATING},
             {"date", S_DATE},          {"random", S_RANDOM}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) {
            o->sort = t[i].sort;
            return CM_OK;
        }
    if (strncmp(s, "random_", 7) == 0) {
        char *end;
        unsigned long long v = strtoull(s + 7, &end, 10);
        if (*end || end == s + 7 || s[7] == '-')
            return api_fail(resp, CM_INVALID, "invalid random seed",
                            "filter.sort");
        o->sort = S_RANDOM;
        o->seed = v;
        return CM_OK;
    }
    return api_fail(resp, CM_INVALID, "unknown sort field", "filter.sort");
}

static enum cm_status parse_find_filter(const cJSON *ff, struct eopts *o,
                                        struct api_resp *resp, long def_pp)
{
    const cJSON *it;
    enum cm_status st = CM_OK;
    o->page = 1;
    o->per_page = def_pp;
    o->sort = S_NAME;
    o->desc = false;
    if (!ff || cJSON_IsNull(ff))
        return CM_OK;
    if (!cJSON_IsObject(ff))
        return api_fail(resp, CM_INVALID, "must be an object", "filter");
    cJSON_ArrayForEach (it, ff) {
        const char *k = it->string;
        if (cJSON_IsNull(it))
            continue;
        if (strcmp(k, "q") == 0) {
            if (!cJSON_IsString(it))
                return api_fail(resp, CM_INVALID, "must be a string",
                                "filter.q");
            o->qlen = strlen(it->valuestring);
            if (o->qlen > CM_MAX_Q_LEN)
                return api_fail(resp, CM_INVALID, "too long", "filter.q");
            o->q = o->qlen ? it->valuestring : NULL;
        } else if (strcmp(k, "page") == 0) {
            st = get_int(it, "filter.page", resp, 1, CM_MAX_PAGE, &o->page);
        } else if (strcmp(k, "per_page") == 0) {
            st = get_int(it, "filter.per_page", resp, -1, CM_MAX_PER_PAGE,
                         &o->per_page);
            if (st == CM_OK && o->per_page == 0)
                st = api_fail(resp, CM_INVALID, "must be -1 or positive",
                              "filter.per_page");
        } else if (strcmp(k, "sort") == 0) {
            if (!cJSON_IsString(it))
                return api_fail(resp, CM_INVALID, "must be a string",
                                "filter.sort");
            st = parse_sort(it->valuestring, o, resp);
        } else if (strcmp(k, "direction") == 0) {
            if (!cJSON_IsString(it))
                return api_fail(resp, CM_INVALID, "must be a string",
                                "filter.direction");
            if (strcasecmp(it->valuestring, "asc") == 0)
                o->desc = false;
            else if (strcasecmp(it->valuestring, "desc") == 0)
                o->desc = true;
            else
                return api_fail(resp, CM_INVALID, "must be ASC or DESC",
                                "filter.direction");
        } else {
            char f[96];
            snprintf(f, sizeof f, "filter.%s", k);
            return api_fail(resp, CM_INVALID, "unknown field", f);
        }
        if (st != CM_OK)
            return st;
    }
    if (o->per_page < 0)
        o->per_page = CM_MAX_PER_PAGE;
    return CM_OK;
}

static enum cm_status parse_entity_filter(const cJSON *ef, const char *name,
                                          struct eopts *o,
                                          struct api_resp *resp)
{
    const cJSON *it;
    if (!ef || cJSON_IsNull(ef))
        return CM_OK;
    if (!cJSON_IsObject(ef))
        return api_fail(resp, CM_INVALID, "must be an object", name);
    cJSON_ArrayForEach (it, ef) {
        char f[96];
        snprintf(f, sizeof f, "%s.%s", name, it->string);
        if (strcmp(it->string, "favorite") == 0 ||
            strcmp(it->string, "filter_favorites") == 0) {
            if (cJSON_IsNull(it))
                continue;
            if (!cJSON_IsBool(it))
                return api_fail(resp, CM_INVALID, "must be a boolean", f);
            o->favorite = cJSON_IsTrue(it) ? 1 : 0;
        } else {
            return api_fail(resp, CM_INVALID, "unsupported filter field", f);
        }
    }
    return CM_OK;
}

static enum cm_status parse_count_filter(const cJSON *cf, struct eopts *o,
                                         struct api_resp *resp)
{
    const cJSON *it;
    if (!cf || cJSON_IsNull(cf))
        return CM_OK;
    if (!cJSON_IsObject(cf))
        return api_fail(resp, CM_INVALID, "must be an object", "count_filter");
    cJSON_ArrayForEach (it, cf) {
        char f[96];
        long v = 0;
        enum cm_status st;
        snprintf(f, sizeof f, "count_filter.%s", it->string);
        if (cJSON_IsNull(it))
            continue;
        if (strcmp(it->string, "min_scene_count") != 0)
            return api_fail(resp, CM_INVALID, "unsupported count filter", f);
        st = get_int(it, f, resp, 0, 1L << 40, &v);
        if (st != CM_OK)
            return st;
        o->min_scenes = v;
    }
    return CM_OK;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static enum cm_status parse_ids(const cJSON *ids, struct eopts *o,
                                struct api_resp *resp)
{
    const cJSON *it;
    size_t k = 0;
    int n;
    if (!ids || cJSON_IsNull(ids))
        return CM_OK;
    if (!cJSON_IsArray(ids))
        return api_fail(resp, CM_INVALID, "must be an array", "ids");
    n = cJSON_GetArraySize(ids);
    if (n > CM_MAX_IDS)
        return api_fail(resp, CM_INVALID, "too many ids", "ids");
    o->ids = cm_malloc(((size_t)n + 1) * sizeof *o->ids);
    if (!o->ids)
        return CM_NOMEM;
    cJSON_ArrayForEach (it, ids) {
        uint64_t v = 0;
        char f[32];
        snprintf(f, sizeof f, "ids[%zu]", k);
        if (cJSON_IsString(it)) {
            if (api_parse_id(it->valuestring, strlen(it->valuestring), &v) !=
                CM_OK)
                return api_fail(resp, CM_INVALID, "invalid id", f);
        } else if (cJSON_IsNumber(it) && it->valuedouble >= 1 &&
                   it->valuedouble < 9007199254740992.0 &&
                   it->valuedouble == floor(it->valuedouble)) {
            v = (uint64_t)it->valuedouble;
        } else {
            return api_fail(resp, CM_INVALID, "invalid id", f);
        }
        o->ids[k++] = v;
    }
    o->nids = k;
    o->has_ids = true;
    qsort(o->ids, k, sizeof *o->ids, u64_cmp); /* for bsearch */
    return CM_OK;
}

/* ---- Snapshots ---------------------------------------------------------- */

struct srow {
    uint64_t id;
    struct kv_str name, created, updated; /* into snap->arena */
    uint32_t text_off, text_len; /* folded search text: name, disambiguation,
                                    aliases, NUL-separated */
    int32_t rating;
    int32_t date;       /* yyyymmdd, -1 null */
    uint32_t name_rank; /* dense rank by (natural name, NULL first) */
    bool favorite;
};

struct esnap {
    atomic_int refs;
    uint8_t type;
    size_t txnid; /* LMDB snapshot the rows come from */
    size_t n;
    struct srow *rows; /* in key (id) order */
    char *arena;       /* strings of rows */
    /* Filled on first use, under the table's mutex. */
    uint32_t *created_rank, *updated_rank;
    int64_t *scenes;
};

#define N_ETYPES 5

struct api_elists {
    pthread_mutex_t mu;
    struct esnap *snap[N_ETYPES];
};

static int etype_index(uint8_t t)
{
    switch (t) {
    case KV_PERFORMER: return 0;
    case KV_STUDIO: return 1;
    case KV_TAG: return 2;
    case KV_GROUP: return 3;
    default: return 4;
    }
}

static void snap_release(struct esnap *sn)
{
    if (!sn || atomic_fetch_sub(&sn->refs, 1) != 1)
        return;
    cm_free(sn->rows);
    cm_free(sn->arena);
    cm_free(sn->created_rank);
    cm_free(sn->updated_rank);
    cm_free(sn->scenes);
    cm_free(sn);
}

enum cm_status api_elists_new(struct api_elists **out)
{
    struct api_elists *el = cm_calloc(1, sizeof *el);
    *out = NULL;
    if (!el)
        return CM_NOMEM;
    if (pthread_mutex_init(&el->mu, NULL) != 0) {
        cm_free(el);
        return CM_NOMEM;
    }
    *out = el;
    return CM_OK;
}

void api_elists_free(struct api_elists *el)
{
    if (!el)
        return;
    for (int i = 0; i < N_ETYPES; i++)
        snap_release(el->snap[i]);
    pthread_mutex_destroy(&el->mu);
    cm_free(el);
}

static int kvstr_cmp(struct kv_str a, struct kv_str b)
{
    if (!a.p || !b.p)
        return (a.p != NULL) - (b.p != NULL); /* NULL first */
    return cm_natural_cmp(a.p, a.len, b.p, b.len);
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Appends s to the arena; OUT *off (the string is fixed up to a pointer
 * once the arena stops moving: p holds the offset + 1, 0 = NULL). */
static enum cm_status arena_str(struct cm_buf *a, struct kv_str s,
                                struct kv_str *out)
{
    out->p = NULL;
    out->len = 0;
    if (!s.p)
        return CM_OK;
    out->p = (const char *)(uintptr_t)(a->len + 1);
    out->len = s.len;
    return cm_buf_append(a, s.p, s.len);
}

static enum cm_status arena_folded(struct cm_buf *a, struct kv_str s)
{
    size_t at = a->len;
    enum cm_status st;
    if (!s.p)
        return CM_OK;
    if ((st = cm_buf_append(a, s.p, s.len)) != CM_OK)
        return st;
    for (size_t i = at; i < a->len; i++)
        if (a->data[i] >= 'A' && a->data[i] <= 'Z')
            a->data[i] = (char)(a->data[i] - 'A' + 'a');
    return cm_buf_putc(a, '\0');
}

static void fix_str(struct kv_str *s, const char *base)
{
    if (s->p)
        s->p = base + ((uintptr_t)s->p - 1);
}

/* Dense ranks of the kv_str at offset field of rows[0..n) in natural order
 * (equal strings share a rank).  The strings are sorted as a contiguous
 * (string, row) array: the comparisons, not the rows, stay in cache. */
struct rkey {
    struct kv_str s;
    uint32_t row;
};

static int rkey_cmp(const void *pa, const void *pb)
{
    const struct rkey *a = pa, *b = pb;
    return kvstr_cmp(a->s, b->s);
}

static enum cm_status make_ranks(const struct srow *rows, size_t n,
                                 size_t field, uint32_t *rank)
{
    struct rkey *k = cm_malloc((n + 1) * sizeof *k);
    uint32_t r = 0;
    if (!k)
        return CM_NOMEM;
    for (size_t i = 0; i < n; i++) {
        k[i].s = *(const struct kv_str *)((const char *)&rows[i] + field);
        k[i].row = (uint32_t)i;
    }
    if (n > 1)
        qsort(k, n, sizeof *k, rkey_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i && rkey_cmp(&k[i - 1], &k[i]) != 0)
            r++;
        rank[k[i].row] = r;
    }
    cm_free(k);
    return CM_OK;
}

/* Reads every entity of type et from t into a new snapshot (one ref). */
static enum cm_status snap_build(struct kv_txn *t, uint8_t et, size_t txnid,
                                 struct esnap **out)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    unsigned char key0 = et;
    struct esnap *sn = NULL;
    struct cm_buf arena;
    size_t cap = 0;
    uint32_t *rank = NULL;
    enum cm_status st = CM_OK;
    int rc;

    *out = NULL;
    cm_buf_init(&arena, CM_MAX_RESPONSE);
    sn = cm_calloc(1, sizeof *sn);
    if (!sn)
        return CM_NOMEM;
    atomic_init(&sn->refs, 1);
    sn->type = et;
    sn->txnid = txnid;
    rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), KV_DB_ENTITIES),
                         &cur);
    if (rc) {
        st = kv_from_mdb(rc, "entities cursor");
        goto out;
    }
    k.mv_data = &key0;
    k.mv_size = 1;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *kp = k.mv_data;
        struct kv_entity e;
        struct srow *r;
        if (k.mv_size < 1 || kp[0] != et)
            break;
        if (k.mv_size != 9)
            continue;
        st = kv_entity_decode(v.mv_data, v.mv_size, &e);
        if (st != CM_OK) {
            kv_entity_fini(&e);
            goto out;
        }
        if (sn->n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct srow *nr = cm_realloc(sn->rows, ncap * sizeof *nr);
            if (!nr) {
                kv_entity_fini(&e);
                st = CM_NOMEM;
                goto out;
            }
            sn->rows = nr;
            cap = ncap;
        }
        r = &sn->rows[sn->n];
        memset(r, 0, sizeof *r);
        r->id = e.id ? e.id : be64(kp + 1);
        r->rating = e.rating100;
        r->date = e.date.year > 0
                      ? e.date.year * 10000 + e.date.month * 100 + e.date.day
                      : -1;
        r->favorite = e.favorite;
        st = arena_str(&arena, e.name, &r->name);
        if (st == CM_OK)
            st = arena_str(&arena, e.created_at, &r->created);
        if (st == CM_OK)
            st = arena_str(&arena, e.updated_at, &r->updated);
        r->text_off = (uint32_t)arena.len;
        if (arena.len > UINT32_MAX / 2)
            st = CM_TOOBIG;
        if (st == CM_OK)
            st = arena_folded(&arena, e.name);
        if (st == CM_OK)
            st = arena_folded(&arena, e.disambiguation);
        for (uint32_t i = 0; i < e.n_aliases && st == CM_OK; i++)
            st = arena_folded(&arena, e.aliases[i]);
        r->text_len = (uint32_t)(arena.len - r->text_off);
        kv_entity_fini(&e);
        if (st != CM_OK)
            goto out;
        sn->n++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        st = kv_from_mdb(rc, "entities scan");
        goto out;
    }
    if (!arena.data && (st = cm_buf_reserve(&arena, 1)) != CM_OK)
        goto out;
    sn->arena = cm_buf_take(&arena, NULL);
    for (size_t i = 0; i < sn->n; i++) {
        fix_str(&sn->rows[i].name, sn->arena);
        fix_str(&sn->rows[i].created, sn->arena);
        fix_str(&sn->rows[i].updated, sn->arena);
    }
    rank = cm_malloc((sn->n + 1) * sizeof *rank);
    if (!rank) {
        st = CM_NOMEM;
        goto out;
    }
    TRY(make_ranks(sn->rows, sn->n, offsetof(struct srow, name), rank));
    for (size_t i = 0; i < sn->n; i++)
        sn->rows[i].name_rank = rank[i];
    *out = sn;
    sn = NULL;
out:
    mdb_cursor_close(cur);
    cm_buf_fini(&arena);
    cm_free(rank);
    snap_release(sn);
    return st;
}

/* The snapshot of type et for t's LMDB snapshot: the published one when
 * current, else a new one (published when newer than the published one;
 * a request on an older transaction gets a private copy).  OUT *out: one
 * reference, release with snap_release(). */
static enum cm_status snap_get(struct api_req *req, struct kv_txn *t,
                               uint8_t et, struct esnap **out)
{
    struct api_elists *el = req->ctx ? req->ctx->elists : NULL;
    size_t txnid = mdb_txn_id(kv_txn_mdb(t));
    int ti = etype_index(et);
    struct esnap *cur, *sn = NULL;
    enum cm_status st = CM_OK;

    *out = NULL;
    if (!el)
        return snap_build(t, et, txnid, out);
    pthread_mutex_lock(&el->mu);
    cur = el->snap[ti];
    if (cur && cur->txnid == txnid) {
        atomic_fetch_add(&cur->refs, 1);
        *out = cur;
        goto out;
    }
    st = snap_build(t, et, txnid, &sn);
    if (st != CM_OK)
        goto out;
    if (!cur || cur->txnid < txnid) {
        el->snap[ti] = sn;
        atomic_fetch_add(&sn->refs, 1);
        snap_release(cur);
    }
    *out = sn;
out:
    pthread_mutex_unlock(&el->mu);
    return st;
}

/* Fills the lazily computed columns the options need (under the mutex
 * when the snapshot is shared: concurrent requests on it wait, then see
 * the published arrays). */
static enum cm_status snap_need(struct api_req *req, struct kv_txn *t,
                                struct esnap *sn, const struct eopts *o)
{
    struct api_elists *el = req->ctx ? req->ctx->elists : NULL;
    enum cm_status st = CM_OK;
    if (el)
        pthread_mutex_lock(&el->mu);
    if ((o->sort == S_SCENES || o->min_scenes >= 0) && !sn->scenes) {
        int64_t *c = cm_malloc((sn->n + 1) * sizeof *c);
        if (!c) {
            st = CM_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < sn->n && st == CM_OK; i++) {
            uint64_t v = 0;
            st = idx_entity_scene_count(t, sn->type, sn->rows[i].id, &v);
            c[i] = (int64_t)v;
        }
        if (st != CM_OK) {
            cm_free(c);
            goto out;
        }
        sn->scenes = c;
    }
    if ((o->sort == S_CREATED || o->sort == S_UPDATED)) {
        uint32_t **dst =
            o->sort == S_CREATED ? &sn->created_rank : &sn->updated_rank;
        if (!*dst) {
            uint32_t *r = cm_malloc((sn->n + 1) * sizeof *r);
            if (!r) {
                st = CM_NOMEM;
                goto out;
            }
            st = make_ranks(sn->rows, sn->n,
                            o->sort == S_CREATED
                                ? offsetof(struct srow, created)
                                : offsetof(struct srow, updated),
                            r);
            if (st != CM_OK) {
                cm_free(r);
                goto out;
            }
            *dst = r;
        }
    }
out:
    if (el)
        pthread_mutex_unlock(&el->mu);
    return st;
}

/* ---- Filter and select ----------------------------------------------------
 */

/* A match with its sort key: k ascending (negated for DESC), then the
 * name rank ascending, then the id ascending (Stash's tie-breaks). */
struct pick {
    double k;
    uint32_t name_rank;
    uint32_t row;
    uint64_t id;
};

static int pick_cmp(const struct pick *a, const struct pick *b)
{
    if (a->k != b->k)
        return a->k < b->k ? -1 : 1;
    if (a->name_rank != b->name_rank)
        return a->name_rank < b->name_rank ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int pick_qcmp(const void *a, const void *b)
{
    return pick_cmp(a, b);
}

static bool row_matches(const struct esnap *sn, size_t i, const struct eopts *o,
                        const char *fq)
{
    const struct srow *r = &sn->rows[i];
    if (o->favorite >= 0 && (int)r->favorite != o->favorite)
        return false;
    if (o->has_ids &&
        !bsearch(&r->id, o->ids, o->nids, sizeof *o->ids, u64_cmp))
        return false;
    if (o->min_scenes >= 0 && sn->scenes[i] < o->min_scenes)
        return false;
    /* q has no NUL (a C string), so a match never spans two fields. */
    if (fq && (o->qlen > r->text_len ||
               !memmem(sn->arena + r->text_off, r->text_len, fq, o->qlen)))
        return false;
    return true;
}

static double sort_key(const struct esnap *sn, size_t i, const struct eopts *o)
{
    const struct srow *r = &sn->rows[i];
    double k = 0;
    switch (o->sort) {
    case S_NAME: k = r->name_rank; break;
    case S_SCENES: k = (double)sn->scenes[i]; break;
    case S_CREATED: k = sn->created_rank[i]; break;
    case S_UPDATED: k = sn->updated_rank[i]; break;
    case S_RATING: k = r->rating; break;
    case S_DATE: k = r->date; break;
    case S_RANDOM: k = idx_random_key(r->id, o->seed); break;
    }
    return o->desc ? -k : k;
}

/* Sift-down in a max-heap (the worst kept pick on top). */
static void heap_down(struct pick *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        struct pick tmp;
        if (l < n && pick_cmp(&h[l], &h[m]) > 0)
            m = l;
        if (l + 1 < n && pick_cmp(&h[l + 1], &h[m]) > 0)
            m = l + 1;
        if (m == i)
            return;
        tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

/* Filters the snapshot and selects the rows of [from, from + limit) in
 * sort order: a bounded max-heap of the best from + limit matches (one
 * comparison per match that cannot make the page), then a sort of those
 * few.  OUT *page (caller frees with cm_free), *npage, *count (all
 * matches). */
static enum cm_status select_page(const struct esnap *sn, const struct eopts *o,
                                  size_t from, size_t limit, struct pick **page,
                                  size_t *npage, size_t *count)
{
    char fq[CM_MAX_Q_LEN + 1];
    const char *q = NULL;
    size_t want, n = 0, cnt = 0;
    struct pick *h;

    *page = NULL;
    *npage = 0;
    *count = 0;
    if (o->q) {
        for (size_t i = 0; i < o->qlen; i++)
            fq[i] =
                (char)(o->q[i] >= 'A' && o->q[i] <= 'Z' ? o->q[i] - 'A' + 'a'
                                                        : o->q[i]);
        q = fq;
    }
    want = from > SIZE_MAX - limit ? SIZE_MAX : from + limit;
    if (want > sn->n)
        want = sn->n;
    h = cm_malloc((want + 1) * sizeof *h);
    if (!h)
        return CM_NOMEM;
    for (size_t i = 0; i < sn->n; i++) {
        struct pick p;
        if (!row_matches(sn, i, o, q))
            continue;
        cnt++;
        if (!want)
            continue;
        p.k = sort_key(sn, i, o);
        p.name_rank = sn->rows[i].name_rank;
        p.row = (uint32_t)i;
        p.id = sn->rows[i].id;
        if (n < want) {
            /* sift up */
            size_t c = n++;
            h[c] = p;
            while (c > 0 && pick_cmp(&h[(c - 1) / 2], &h[c]) < 0) {
                struct pick tmp = h[c];
                h[c] = h[(c - 1) / 2];
                h[(c - 1) / 2] = tmp;
                c = (c - 1) / 2;
            }
        } else if (pick_cmp(&p, &h[0]) < 0) {
            h[0] = p;
            heap_down(h, n, 0);
        }
    }
    if (n > 1)
        qsort(h, n, sizeof *h, pick_qcmp);
    if (from < n) {
        memmove(h, h + from, (n - from) * sizeof *h);
        *npage = n - from;
    }
    *page = h;
    *count = cnt;
    return CM_OK;
}

/* ---- Rendering ------------------------------------------------------------
 */

static enum cm_status put_id(struct cm_buf *b, uint64_t id)
{
    return api_json_id(b, id);
}

static enum cm_status put_image(struct cm_buf *b, uint8_t et, uint64_t id,
                                struct kv_str img, const char *what)
{
    enum cm_status st;
    if (!img.p || !img.len)
        return LIT(b, "null");
    st = LIT(b, "\"/api/proxy/");
    if (st == CM_OK)
        st = cm_buf_puts(b, singular(et));
    if (st == CM_OK)
        st = LIT(b, "/");
    if (st == CM_OK)
        st = api_json_u64(b, id);
    if (st == CM_OK)
        st = LIT(b, "/");
    if (st == CM_OK)
        st = cm_buf_puts(b, what);
    if (st == CM_OK)
        st = LIT(b, "\"");
    return st;
}

static enum cm_status put_str_array(struct cm_buf *b, const struct kv_str *v,
                                    uint32_t n)
{
    enum cm_status st = cm_buf_putc(b, '[');
    for (uint32_t i = 0; i < n && st == CM_OK; i++) {
        if (i)
            st = cm_buf_putc(b, ',');
        if (st == CM_OK)
            st = api_json_str(b, v[i]);
    }
    if (st == CM_OK)
        st = cm_buf_putc(b, ']');
    return st;
}

/* [{id,instanceId,name}] of ids (names looked up; missing ones dropped). */
static enum cm_status put_refs(struct cm_buf *b, struct kv_txn *t, uint8_t et,
                               const uint64_t *ids, uint32_t n)
{
    enum cm_status st = cm_buf_putc(b, '[');
    bool first = true;
    for (uint32_t i = 0; i < n && st == CM_OK; i++) {
        struct kv_entity e;
        st = kv_entity_get(t, et, ids[i], &e);
        if (st == CM_NOTFOUND) {
            st = CM_OK;
            continue;
        }
        if (st != CM_OK)
            break;
        if (!first)
            st = cm_buf_putc(b, ',');
        first = false;
        if (st == CM_OK)
            st = LIT(b, "{\"id\":");
        if (st == CM_OK)
            st = put_id(b, ids[i]);
        if (st == CM_OK)
            st = LIT(b, ",\"instanceId\":\"" API_INSTANCE_ID "\",\"name\":");
        if (st == CM_OK)
            st = api_json_str(b, e.name);
        if (st == CM_OK)
            st = cm_buf_putc(b, '}');
        kv_entity_fini(&e);
    }
    if (st == CM_OK)
        st = cm_buf_putc(b, ']');
    return st;
}

static enum cm_status put_entity(struct cm_buf *b, struct kv_txn *t,
                                 const struct kv_entity *e, uint64_t scenes)
{
    enum cm_status st;
    uint8_t et = e->type;
    TRY(LIT(b, "{\"id\":"));
    TRY(put_id(b, e->id));
    TRY(LIT(b, ",\"instanceId\":\"" API_INSTANCE_ID "\","));
    TRY(cm_buf_puts(b, et == KV_GALLERY ? "\"title\":" : "\"name\":"));
    TRY(api_json_str(b, e->name));
    TRY(LIT(b, ",\"favorite\":"));
    TRY(cm_buf_puts(b, e->favorite ? "true" : "false"));
    TRY(LIT(b, ",\"rating100\":"));
    if (e->rating100 < 0)
        TRY(LIT(b, "null"));
    else
        TRY(cm_buf_put_i64(b, e->rating100));
    TRY(LIT(b, ",\"scene_count\":"));
    TRY(cm_buf_put_i64(b, (int64_t)scenes));
    TRY(LIT(b, ",\"created_at\":"));
    TRY(api_json_str(b, e->created_at));
    TRY(LIT(b, ",\"updated_at\":"));
    TRY(api_json_str(b, e->updated_at));
    switch (et) {
    case KV_PERFORMER:
        TRY(LIT(b, ",\"disambiguation\":"));
        TRY(api_json_str(b, e->disambiguation));
        TRY(LIT(b, ",\"gender\":"));
        {
            const char *g = kv_gender_name(e->gender);
            if (g)
                TRY(api_json_strn(b, g, strlen(g)));
            else
                TRY(LIT(b, "null"));
        }
        TRY(LIT(b, ",\"birthdate\":"));
        TRY(api_json_str(b, e->birthdate));
        TRY(LIT(b, ",\"country\":"));
        TRY(api_json_str(b, e->country));
        TRY(LIT(b, ",\"alias_list\":"));
        TRY(put_str_array(b, e->aliases, e->n_aliases));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"tags\":"));
        TRY(put_refs(b, t, KV_TAG, e->tags, e->n_tags));
        break;
    case KV_STUDIO:
        TRY(LIT(b, ",\"details\":"));
        TRY(api_json_str(b, e->description));
        TRY(LIT(b, ",\"aliases\":"));
        TRY(put_str_array(b, e->aliases, e->n_aliases));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"parent_studio\":"));
        if (e->n_parents && e->parents[0]) {
            struct cm_buf tmp;
            cm_buf_init(&tmp, CM_MAX_RESPONSE);
            st = put_refs(&tmp, t, KV_STUDIO, e->parents, 1);
            /* "[{...}]" -> "{...}" or null */
            if (st == CM_OK && tmp.len > 2)
                st = cm_buf_append(b, tmp.data + 1, tmp.len - 2);
            else if (st == CM_OK)
                st = LIT(b, "null");
            cm_buf_fini(&tmp);
            if (st != CM_OK)
                goto out;
        } else {
            TRY(LIT(b, "null"));
        }
        TRY(LIT(b, ",\"tags\":"));
        TRY(put_refs(b, t, KV_TAG, e->tags, e->n_tags));
        break;
    case KV_TAG:
        TRY(LIT(b, ",\"sort_name\":"));
        TRY(api_json_str(b, e->sort_name));
        TRY(LIT(b, ",\"description\":"));
        TRY(api_json_str(b, e->description));
        TRY(LIT(b, ",\"aliases\":"));
        TRY(put_str_array(b, e->aliases, e->n_aliases));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"parents\":"));
        TRY(put_refs(b, t, KV_TAG, e->parents, e->n_parents));
        break;
    case KV_GROUP:
        TRY(LIT(b, ",\"date\":"));
        TRY(api_json_date(b, e->date));
        TRY(LIT(b, ",\"director\":"));
        TRY(api_json_str(b, e->director));
        TRY(LIT(b, ",\"synopsis\":"));
        TRY(api_json_str(b, e->description));
        TRY(LIT(b, ",\"duration\":"));
        if (e->duration < 0)
            TRY(LIT(b, "null"));
        else
            TRY(cm_buf_put_i64(b, e->duration));
        TRY(LIT(b, ",\"front_image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"back_image_path\":"));
        TRY(put_image(b, et, e->id, e->back_image, "back_image"));
        TRY(LIT(b, ",\"studio\":"));
        if (e->studio_id)
            TRY(put_refs(b, t, KV_STUDIO, &e->studio_id, 1));
        else
            TRY(LIT(b, "null"));
        TRY(LIT(b, ",\"tags\":"));
        TRY(put_refs(b, t, KV_TAG, e->tags, e->n_tags));
        break;
    default:
        TRY(LIT(b, ",\"date\":"));
        TRY(api_json_date(b, e->date));
        TRY(LIT(b, ",\"image_count\":"));
        TRY(cm_buf_put_i64(b, e->image_count < 0 ? 0 : e->image_count));
        TRY(LIT(b, ",\"cover\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"studio\":"));
        if (e->studio_id)
            TRY(put_refs(b, t, KV_STUDIO, &e->studio_id, 1));
        else
            TRY(LIT(b, "null"));
        break;
    }
    TRY(cm_buf_putc(b, '}'));
out:
    return st;
}

/* ---- Handlers -------------------------------------------------------------
 */

static void opts_init(struct eopts *o)
{
    memset(o, 0, sizeof *o);
    o->favorite = -1;
    o->min_scenes = -1;
}

/* Runs the filter/sort of o over the snapshot of et.  OUT *sn (release
 * with snap_release), *page (cm_free), *npage, *count. */
static enum cm_status run_list(struct api_req *req, struct kv_txn *t,
                               uint8_t et, const struct eopts *o,
                               struct esnap **sn, struct pick **page,
                               size_t *npage, size_t *count)
{
    enum cm_status st;
    size_t from;
    *page = NULL;
    *npage = *count = 0;
    TRY(snap_get(req, t, et, sn));
    TRY(snap_need(req, t, *sn, o));
    from = (size_t)(o->page - 1) * (size_t)o->per_page;
    TRY(select_page(*sn, o, from, (size_t)o->per_page, page, npage, count));
out:
    return st;
}

enum cm_status api_h_entities(struct api_req *req, struct api_resp *resp,
                              uint8_t et)
{
    enum cm_status st;
    cJSON *root = NULL;
    struct eopts o;
    struct esnap *sn = NULL;
    struct pick *page = NULL;
    size_t npage = 0, count = 0;
    struct kv_txn *t;
    char fname[32];
    struct cm_buf *b = &resp->body;

    opts_init(&o);
    TRY(api_body_json(req, resp, &root));
    TRY(parse_find_filter(cJSON_GetObjectItemCaseSensitive(root, "filter"), &o,
                          resp, 40));
    snprintf(fname, sizeof fname, "%s_filter", singular(et));
    TRY(parse_entity_filter(cJSON_GetObjectItemCaseSensitive(root, fname),
                            fname, &o, resp));
    TRY(parse_ids(cJSON_GetObjectItemCaseSensitive(root, "ids"), &o, resp));
    TRY(api_req_txn(req, &t));
    TRY(run_list(req, t, et, &o, &sn, &page, &npage, &count));
    resp->content_type = "application/json";
    TRY(LIT(b, "{\""));
    TRY(cm_buf_puts(b, find_key(et)));
    TRY(LIT(b, "\":{\"count\":"));
    TRY(api_json_u64(b, count));
    TRY(LIT(b, ",\""));
    TRY(cm_buf_puts(b, plural(et)));
    TRY(LIT(b, "\":["));
    for (size_t i = 0; i < npage; i++) {
        struct kv_entity e;
        uint64_t sc = 0;
        uint64_t id = page[i].id;
        TRY(kv_entity_get(t, et, id, &e));
        /* Only columns this request ensured (snap_need) are read: another
         * thread may be filling the others. */
        if (o.sort == S_SCENES || o.min_scenes >= 0)
            sc = (uint64_t)sn->scenes[page[i].row];
        else
            st = idx_entity_scene_count(t, et, id, &sc);
        if (st == CM_OK && i > 0)
            st = LIT(b, ",");
        if (st == CM_OK)
            st = put_entity(b, t, &e, sc);
        kv_entity_fini(&e);
        if (st != CM_OK)
            goto out;
    }
    TRY(LIT(b, "]}}"));
    resp->status = 200;
out:
    cm_free(page);
    snap_release(sn);
    cm_free(o.ids);
    cJSON_Delete(root);
    return st;
}

enum cm_status api_h_minimal(struct api_req *req, struct api_resp *resp,
                             uint8_t et)
{
    enum cm_status st;
    cJSON *root = NULL;
    struct eopts o;
    struct esnap *sn = NULL;
    struct pick *page = NULL;
    size_t npage = 0, count = 0;
    struct kv_txn *t;
    const cJSON *it;
    struct cm_buf *b = &resp->body;

    opts_init(&o);
    TRY(api_body_json(req, resp, &root));
    cJSON_ArrayForEach (it, root) {
        if (strcmp(it->string, "filter") &&
            strcmp(it->string, "count_filter")) {
            st = api_fail(resp, CM_INVALID, "unknown field", it->string);
            goto out;
        }
    }
    TRY(parse_find_filter(cJSON_GetObjectItemCaseSensitive(root, "filter"), &o,
                          resp, CM_MAX_PER_PAGE));
    TRY(parse_count_filter(
        cJSON_GetObjectItemCaseSensitive(root, "count_filter"), &o, resp));
    TRY(api_req_txn(req, &t));
    TRY(run_list(req, t, et, &o, &sn, &page, &npage, &count));
    resp->content_type = "application/json";
    TRY(LIT(b, "{\""));
    TRY(cm_buf_puts(b, plural(et)));
    TRY(LIT(b, "\":["));
    for (size_t i = 0; i < npage; i++) {
        const struct srow *r = &sn->rows[page[i].row];
        if (i > 0)
            TRY(LIT(b, ","));
        TRY(LIT(b, "{\"id\":"));
        TRY(api_json_id(b, r->id));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"instanceId\":\"" API_INSTANCE_ID "\"}"));
    }
    TRY(LIT(b, "]}"));
    resp->status = 200;
out:
    cm_free(page);
    snap_release(sn);
    cm_free(o.ids);
    cJSON_Delete(root);
    return st;
}
