/*
 * sync_run.c - one sync of Stash into the store (see sync.h and
 * docs/SYNC.md).
 *
 * Passes, in order: tags, studios, performers, groups, galleries (entities
 * first: scene records embed their names), scenes; then, incremental
 * only and when due, the activity sweep; then, always after a full walk
 * and when due after an incremental one, id reconciliation (deletions,
 * and objects a walk skipped).  Every page is one write transaction
 * (kv_write_run) holding the records, their index entries, the denormalized
 * rewrites (bounded: "rw" markers carry what does not fit to the next
 * transactions) and the checkpoint or watermark, so a killed sync resumes
 * at the next page and readers see whole pages only.
 *
 * KV_DB_SYNC keys:
 *   "ckpt"              JSON {mode, type, last, per_page, wm, t0}: an
 *                       unfinished full sync (t0: unix time it started)
 *   "wm/<type>"         the type's watermark: Stash's own updated_at text
 *   "sweep_at"          decimal unix time the last completed activity sweep
 *                       (or full sync) started; written with its last page
 *   "reconcile_at"      the same for the last completed reconciliation
 *   "rw" type id(BE8)   pending rewrite of the scenes carrying an entity;
 *                       value: next docid (u32 LE)
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "index/idx.h"
#include "sync/sync.h"

#define ID_PAGE        5000  /* ids per reconciliation page */
#define REWRITE_BUDGET 20000 /* scene rewrites per transaction */
#define OVERLAP_S      3600  /* incremental overlap window */
#define CONFIRM_SPAN   5000  /* ids per confirmation range query */

struct tdesc {
    const char *doc, *ids_doc; /* Sync<Type>s, Sync<Type>Ids */
    const char *list;          /* plural field in the result */
    const char *filter_arg;    /* <type>_filter */
    bool id_filter;            /* has an `id` criterion: keyset paging */
};

static const struct tdesc T[SYNC_NTYPES] = {
    {"SyncTags", "SyncTagIds", "tags", "tag_filter", false},
    {"SyncStudios", "SyncStudioIds", "studios", "studio_filter", false},
    {"SyncPerformers", "SyncPerformerIds", "performers", "performer_filter",
     false},
    {"SyncGroups", "SyncGroupIds", "groups", "group_filter", false},
    {"SyncGalleries", "SyncGalleryIds", "galleries", "gallery_filter", true},
    {"SyncScenes", "SyncSceneIds", "scenes", "scene_filter", true},
};

/* A growable u64 vector. */
struct vec {
    uint64_t *v;
    size_t n, cap;
};

static enum cm_status vec_push(struct vec *x, uint64_t v)
{
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 256;
        uint64_t *p;
        if (nc > SIZE_MAX / sizeof *p)
            return CM_NOMEM;
        if (!(p = cm_realloc(x->v, nc * sizeof *p)))
            return CM_NOMEM;
        x->v = p;
        x->cap = nc;
    }
    x->v[x->n++] = v;
    return CM_OK;
}

static void vec_fini(struct vec *x)
{
    cm_free(x->v);
    memset(x, 0, sizeof *x);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void vec_sort(struct vec *x)
{
    if (x->n > 1)
        qsort(x->v, x->n, sizeof *x->v, cmp_u64);
}

/* Open-addressing set of u64 hashes (dedupe by (id, updated_at)). */
struct hset {
    uint64_t *slot;
    size_t cap, n;
};

static enum cm_status hset_add(struct hset *h, uint64_t k, bool *fresh)
{
    size_t i;
    if (k == 0)
        k = 1;
    if ((h->n + 1) * 2 > h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 4096;
        uint64_t *ns = cm_calloc(nc, sizeof *ns);
        if (!ns)
            return CM_NOMEM;
        for (i = 0; i < h->cap; i++) {
            size_t j;
            if (!h->slot[i])
                continue;
            for (j = h->slot[i] & (nc - 1); ns[j]; j = (j + 1) & (nc - 1))
                ;
            ns[j] = h->slot[i];
        }
        cm_free(h->slot);
        h->slot = ns;
        h->cap = nc;
    }
    for (i = k & (h->cap - 1); h->slot[i]; i = (i + 1) & (h->cap - 1))
        if (h->slot[i] == k) {
            *fresh = false;
            return CM_OK;
        }
    h->slot[i] = k;
    h->n++;
    *fresh = true;
    return CM_OK;
}

static void hset_fini(struct hset *h)
{
    cm_free(h->slot);
    memset(h, 0, sizeof *h);
}

static uint64_t mix_key(uint64_t id, const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ^ (id * 0x9e3779b97f4a7c15ULL);
}

struct run {
    struct kv_store *s;
    const struct cm_config *cfg;
    struct sync_status *st;
    struct sync_stats *stats;
    struct sync_client *c;
    struct sync_arena arena;
    struct sync_ref_cache *refs; /* put_scene's fills, per page (arena) */
    char *err;
    size_t errlen;
    int page;        /* items per page */
    uint64_t commit; /* full walks: objects per write transaction */
    enum sync_mode mode;
    int64_t full_t0; /* full sync: unix time it started (0 = unknown) */
    bool tty;
    double t_type;                   /* start of the current type's phase */
    char last_progress[SYNC_NTYPES]; /* tty: a bar line is open */
};

static void errf(struct run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void errf(struct run *r, const char *fmt, ...)
{
    va_list ap;
    if (!r->err || !r->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

static bool stop_requested(struct run *r)
{
    return r->st && atomic_load(&r->st->stop);
}

/* ---- progress ------------------------------------------------------ */

static void progress(struct run *r, enum sync_type t, const char *phase,
                     uint64_t done, uint64_t total)
{
    double el = now_s() - r->t_type;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 && total >= done ? (double)(total - done) / rate : -1;

    if (r->st) {
        struct sync_type_status *ts = &r->st->types[t];
        pthread_mutex_lock(&r->st->mu);
        ts->done = done;
        ts->total = total;
        ts->rate = rate;
        ts->eta_s = eta;
        snprintf(ts->phase, sizeof ts->phase, "%s", phase);
        pthread_mutex_unlock(&r->st->mu);
    }
    if (r->tty) {
        char bar[31];
        int fill = total ? (int)(30.0 * (double)(done > total ? total : done) /
                                 (double)total)
                         : 0;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%-10s %-9s [%s] %llu/%llu %.0f/s ETA %.0fs   ",
                sync_type_name(t), phase, bar, (unsigned long long)done,
                (unsigned long long)total, rate, eta < 0 ? 0 : eta);
        fflush(stderr);
        r->last_progress[t] = 1;
    } else {
        cm_info("sync", "progress %s %s %llu/%llu (%.0f/s)", sync_type_name(t),
                phase, (unsigned long long)done, (unsigned long long)total,
                rate);
    }
}

static void progress_end(struct run *r, enum sync_type t)
{
    if (r->tty && r->last_progress[t]) {
        fputc('\n', stderr);
        r->last_progress[t] = 0;
    }
}

/* ---- GraphQL helpers ----------------------------------------------- */

static cJSON *vars_new(int page, int per_page, const char *sort, bool desc)
{
    cJSON *v = cJSON_CreateObject(), *f;
    if (!v)
        return NULL;
    f = cJSON_AddObjectToObject(v, "filter");
    if (!f || !cJSON_AddNumberToObject(f, "page", page) ||
        !cJSON_AddNumberToObject(f, "per_page", per_page) ||
        !cJSON_AddStringToObject(f, "sort", sort) ||
        !cJSON_AddStringToObject(f, "direction", desc ? "DESC" : "ASC")) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

/* Adds {<filter_arg>: {field: {modifier, value}}}; value is a number when
 * sval is NULL. */
static bool vars_crit(cJSON *v, const char *arg, const char *field,
                      const char *mod, const char *sval, double nval)
{
    cJSON *f = cJSON_AddObjectToObject(v, arg), *c;
    if (!f || !(c = cJSON_AddObjectToObject(f, field)) ||
        !cJSON_AddStringToObject(c, "modifier", mod))
        return false;
    if (sval)
        return cJSON_AddStringToObject(c, "value", sval) != NULL;
    return cJSON_AddNumberToObject(c, "value", nval) != NULL;
}

static bool vars_ids(cJSON *v, const uint64_t *ids, size_t n)
{
    cJSON *a = cJSON_AddArrayToObject(v, "ids");
    char buf[24];
    if (!a)
        return false;
    for (size_t i = 0; i < n; i++) {
        cJSON *s;
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)ids[i]);
        if (!(s = cJSON_CreateString(buf)))
            return false;
        cJSON_AddItemToArray(a, s);
    }
    return true;
}

/* Runs doc; OUT *resp (caller owns, sync_json_free), *list (the page's
 * array, borrowed from resp), *count. */
static enum cm_status query(struct run *r, const char *doc, enum sync_type t,
                            cJSON *vars, struct sync_json **resp,
                            struct sjv *list, uint64_t *count)
{
    char e[512];
    struct sjv data, res, cnt, arr;
    enum cm_status st;

    *resp = NULL;
    *list = (struct sjv){NULL, 0};
    if (count)
        *count = 0;
    if (!vars) {
        errf(r, "out of memory");
        return CM_NOMEM;
    }
    st = sync_client_query(r->c, doc, vars, resp, &data, e, sizeof e);
    cJSON_Delete(vars);
    if (st != CM_OK) {
        errf(r, "%s: %s", doc, e);
        return st;
    }
    res = sj_first(data); /* data's one member: findScenes, findTags, ... */
    cnt = sj_get(res, "count");
    arr = sj_get(res, T[t].list);
    if (sj_type(res) != SJ_OBJECT || sj_type(cnt) != SJ_NUMBER ||
        sj_num(cnt) < 0 || sj_type(arr) != SJ_ARRAY) {
        errf(r, "%s: malformed response (no count or %s)", doc, T[t].list);
        sync_json_free(*resp);
        *resp = NULL;
        return CM_UPSTREAM;
    }
    *list = arr;
    if (count)
        *count = (uint64_t)sj_num(cnt);
    return CM_OK;
}

static enum cm_status item_id(struct run *r, struct sjv it, uint64_t *id)
{
    const char *v = sj_str(sj_get(it, "id"), NULL);
    if (!v || sync_parse_id(v, id) != CM_OK) {
        errf(r, "Stash returned an object without a valid id");
        return CM_INVALID;
    }
    return CM_OK;
}

/* ---- the page transaction ------------------------------------------ */

struct page {
    struct run *r;
    enum sync_type type;
    const struct sjv *items; /* objects to upsert */
    size_t n_items;
    bool activity;       /* items are SyncSceneActivity rows */
    const uint64_t *del; /* stash ids to delete (of type del_type) */
    size_t n_del;
    enum sync_type del_type;
    const char *ckpt; /* checkpoint JSON to write, or NULL */
    bool drop_ckpt;
    const char *wm;       /* watermark of `type` to write, or NULL */
    int64_t sweep_at;     /* > 0: write as "sweep_at" */
    int64_t reconcile_at; /* > 0: write as "reconcile_at" */
    /* results of the last attempt */
    uint64_t written, rewritten, deleted, unknown;
    bool rw_left; /* rewrite markers remain */
};

static void rw_key(uint8_t k[11], uint8_t type, uint64_t id)
{
    k[0] = 'r';
    k[1] = 'w';
    k[2] = type;
    for (int i = 0; i < 8; i++)
        k[3 + i] = (uint8_t)(id >> (56 - 8 * i));
}

static enum cm_status mark_rewrite(struct kv_txn *t, uint8_t type, uint64_t id)
{
    uint8_t k[11], v[4] = {0, 0, 0, 0};
    rw_key(k, type, id);
    return kv_put(t, KV_DB_SYNC, k, sizeof k, v, sizeof v);
}

/* Does a change from old to e alter what scene records embed?  Of the
 * images only their presence (a new image URL, as Stash gives one with
 * every image change, leaves the records as they are). */
static bool ref_fields_differ(const struct kv_entity *a,
                              const struct kv_entity *b)
{
#define SEQ(x, y)                                                              \
    ((x).len == (y).len && ((x).p == NULL) == ((y).p == NULL) &&               \
     ((x).len == 0 || memcmp((x).p, (y).p, (x).len) == 0))
    return !SEQ(a->name, b->name) ||
           kv_str_set(a->image) != kv_str_set(b->image) ||
           !SEQ(a->disambiguation, b->disambiguation) ||
           kv_str_set(a->back_image) != kv_str_set(b->back_image) ||
           a->favorite != b->favorite || a->rating100 != b->rating100 ||
           a->gender != b->gender;
#undef SEQ
}

struct collect {
    struct vec *v;
    uint32_t from;
    size_t limit;
};

static int collect_cb(uint32_t docid, void *ctx)
{
    struct collect *c = ctx;
    if (docid < c->from)
        return 0;
    if (c->v->n >= c->limit)
        return 1;
    return vec_push(c->v, docid) != CM_OK ? 1 : 0;
}

/* Re-maps one stored scene's refs from the current entity records. */
static enum cm_status rewrite_scene(struct page *pg, struct kv_txn *t,
                                    struct idx_writer *w, uint32_t docid)
{
    struct kv_scene sc, *cl = NULL;
    enum cm_status st = kv_scene_get(t, docid, &sc);
    if (st == CM_NOTFOUND)
        return CM_OK;
    if (st != CM_OK) {
        kv_scene_fini(&sc);
        return st;
    }
    st = kv_scene_clone(&sc, &cl);
    kv_scene_fini(&sc);
    if (st == CM_OK)
        st = sync_fill_refs(t, cl, &pg->r->arena, NULL, &pg->unknown);
    if (st == CM_OK)
        st = idx_scene_put(w, cl, NULL);
    if (st == CM_OK)
        pg->rewritten++;
    kv_scene_free(cl);
    return st;
}

/* Works through pending rewrite markers, up to budget scenes. */
static enum cm_status drain_rewrites(struct page *pg, struct kv_txn *t,
                                     struct idx_writer *w, size_t budget)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    struct vec marks = {0}, docs = {0};
    enum cm_status st = CM_OK;
    int rc;

    pg->rw_left = false;
    rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), KV_DB_SYNC),
                         &cur);
    if (rc != 0)
        return kv_from_mdb(rc, "sync cursor");
    k.mv_data = (void *)"rw";
    k.mv_size = 2;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        uint64_t id = 0;
        if (k.mv_size != 11 || p[0] != 'r' || p[1] != 'w')
            break;
        for (int i = 0; i < 8; i++)
            id = id << 8 | p[3 + i];
        if ((st = vec_push(&marks, (uint64_t)p[2] << 56 | id)) != CM_OK)
            break;
        if (id >> 56) { /* ids beyond 2^56 are not Stash's */
            st = CM_CORRUPT;
            break;
        }
    }
    mdb_cursor_close(cur);
    if (st != CM_OK)
        goto out;
    for (size_t i = 0; i < marks.n; i++) {
        uint8_t type = (uint8_t)(marks.v[i] >> 56), key[11];
        uint64_t id = marks.v[i] & ((1ULL << 56) - 1);
        const void *val;
        size_t vlen;
        struct collect cc;
        uint32_t from = 0;

        if (budget == 0) {
            pg->rw_left = true;
            break;
        }
        rw_key(key, type, id);
        if ((st = kv_get(t, KV_DB_SYNC, key, sizeof key, &val, &vlen)) != CM_OK)
            goto out;
        if (vlen == 4)
            memcpy(&from, val, 4);
        docs.n = 0;
        cc = (struct collect){&docs, from, budget + 1};
        if ((st = kv_scenes_with(t, type, id, collect_cb, &cc)) != CM_OK)
            goto out;
        for (size_t j = 0; j < docs.n && j < budget; j++)
            if ((st = rewrite_scene(pg, t, w, (uint32_t)docs.v[j])) != CM_OK)
                goto out;
        if (docs.n > budget) { /* more left: remember where */
            uint32_t next = (uint32_t)docs.v[budget];
            budget = 0;
            pg->rw_left = true;
            st = kv_put(t, KV_DB_SYNC, key, sizeof key, &next, 4);
        } else {
            budget -= docs.n;
            st = kv_del(t, KV_DB_SYNC, key, sizeof key);
            if (st == CM_NOTFOUND)
                st = CM_OK;
        }
        if (st != CM_OK)
            goto out;
    }
out:
    vec_fini(&marks);
    vec_fini(&docs);
    return st;
}

static enum cm_status put_entity(struct page *pg, struct kv_txn *t,
                                 struct idx_writer *w, struct sjv it)
{
    struct run *r = pg->r;
    struct kv_entity e, old;
    char e2[256];
    uint8_t et = sync_type_etype(pg->type);
    enum cm_status st = sync_map_entity(it, et, &r->arena, &e, e2, sizeof e2);
    bool changed_refs;

    if (st != CM_OK) {
        errf(r, "%s", e2);
        return st;
    }
    st = kv_entity_get(t, et, e.id, &old);
    if (st == CM_OK && kv_entity_equal(&old, &e)) {
        kv_entity_fini(&old);
        return CM_OK;
    }
    if (st != CM_OK && st != CM_NOTFOUND) {
        kv_entity_fini(&old);
        return st;
    }
    changed_refs = st == CM_NOTFOUND || ref_fields_differ(&old, &e);
    kv_entity_fini(&old);
    sync_ref_cache_clear(r->refs); /* it may hold the old version */
    if ((st = idx_entity_put(w, &e)) != CM_OK)
        return st;
    pg->written++;
    if (changed_refs)
        st = mark_rewrite(t, et, e.id);
    return st;
}

static enum cm_status put_scene(struct page *pg, struct kv_txn *t,
                                struct idx_writer *w, struct sjv it)
{
    struct run *r = pg->r;
    struct kv_scene sc, old;
    char e2[256];
    uint32_t docid;
    enum cm_status st = sync_map_scene(it, &r->arena, &sc, e2, sizeof e2);

    if (st != CM_OK) {
        errf(r, "%s", e2);
        return st;
    }
    /* the cache lives across pages: entity writes and deletes clear it */
    if ((st = sync_fill_refs(t, &sc, &r->arena, r->refs, &pg->unknown)) !=
        CM_OK)
        return st;
    st = kv_docid_of(t, sc.id, &docid);
    if (st == CM_OK) {
        bool same;
        if ((st = kv_scene_get(t, docid, &old)) != CM_OK) {
            kv_scene_fini(&old);
            return st;
        }
        same = kv_scene_equal(&old, &sc);
        kv_scene_fini(&old);
        if (same)
            return CM_OK;
    } else if (st != CM_NOTFOUND) {
        return st;
    }
    if ((st = idx_scene_put(w, &sc, NULL)) != CM_OK)
        return st;
    pg->written++;
    return CM_OK;
}

/* Activity row: {id, play_count, o_counter, resume_time, play_duration,
 * last_played_at}. */
static enum cm_status put_activity(struct page *pg, struct kv_txn *t,
                                   struct idx_writer *w, struct sjv it)
{
    struct run *r = pg->r;
    struct sjv pc = sj_get(it, "play_count");
    struct sjv oc = sj_get(it, "o_counter");
    struct sjv rt = sj_get(it, "resume_time");
    struct sjv pd = sj_get(it, "play_duration");
    struct sjv lp = sj_get(it, "last_played_at");
    const char *lps;
    size_t lpn;
    struct kv_scene sc, *cl = NULL;
    int32_t npc, noc;
    double nrt, npd;
    struct kv_str nlp = {NULL, 0};
    uint64_t id;
    uint32_t docid;
    bool same;
    enum cm_status st;

    if ((st = item_id(r, it, &id)) != CM_OK)
        return st;
#define INTF(j, out)                                                           \
    do {                                                                       \
        if (sj_is_null(j))                                                     \
            out = 0;                                                           \
        else if (sj_type(j) == SJ_NUMBER && sj_num(j) >= 0 &&                  \
                 sj_num(j) <= INT32_MAX && sj_num(j) == floor(sj_num(j)))      \
            out = (int32_t)sj_num(j);                                          \
        else                                                                   \
            goto bad;                                                          \
    } while (0)
#define FLTF(j, out)                                                           \
    do {                                                                       \
        if (sj_is_null(j))                                                     \
            out = -1;                                                          \
        else if (sj_type(j) == SJ_NUMBER && isfinite(sj_num(j)) &&             \
                 sj_num(j) >= 0)                                               \
            out = sj_num(j);                                                   \
        else                                                                   \
            goto bad;                                                          \
    } while (0)
    INTF(pc, npc);
    INTF(oc, noc);
    FLTF(rt, nrt);
    FLTF(pd, npd);
#undef INTF
#undef FLTF
    if ((lps = sj_str(lp, &lpn)) && sync_valid_time(lps, lpn)) {
        nlp.p = lps;
        nlp.len = (uint32_t)lpn;
    } else if (!sj_is_null(lp)) {
        goto bad;
    }
    st = kv_docid_of(t, id, &docid);
    if (st == CM_NOTFOUND)
        return CM_OK; /* new scene: the scene pass or reconciliation adds it */
    if (st != CM_OK || (st = kv_scene_get(t, docid, &sc)) != CM_OK)
        return st;
    same = sc.play_count == npc && sc.o_counter == noc &&
           sc.resume_time == nrt && sc.play_duration == npd &&
           sc.last_played_at.len == nlp.len &&
           (sc.last_played_at.p == NULL) == (nlp.p == NULL) &&
           (nlp.len == 0 || memcmp(sc.last_played_at.p, nlp.p, nlp.len) == 0);
    if (!same)
        st = kv_scene_clone(&sc, &cl);
    kv_scene_fini(&sc);
    if (same || st != CM_OK)
        return st;
    cl->play_count = npc;
    cl->o_counter = noc;
    cl->resume_time = nrt;
    cl->play_duration = npd;
    cl->last_played_at = nlp;
    st = idx_scene_put(w, cl, NULL);
    kv_scene_free(cl);
    if (st == CM_OK)
        pg->written++;
    return st;
bad:
    errf(r, "scene %llu: activity fields of the wrong type",
         (unsigned long long)id);
    return CM_INVALID;
}

static enum cm_status put_time(struct kv_txn *t, const char *key, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    return kv_put(t, KV_DB_SYNC, key, strlen(key), buf, (size_t)n);
}

/* Writes pg's watermark, checkpoint (or drops it) and schedule times. */
static enum cm_status put_meta(struct kv_txn *t, const struct page *pg)
{
    enum cm_status st = CM_OK;
    if (pg->sweep_at > 0)
        st = put_time(t, "sweep_at", pg->sweep_at);
    if (st == CM_OK && pg->reconcile_at > 0)
        st = put_time(t, "reconcile_at", pg->reconcile_at);
    if (st == CM_OK && pg->wm) {
        char key[32];
        snprintf(key, sizeof key, "wm/%s", sync_type_name(pg->type));
        st = kv_put(t, KV_DB_SYNC, key, strlen(key), pg->wm, strlen(pg->wm));
    }
    if (st == CM_OK && pg->ckpt)
        st = kv_put(t, KV_DB_SYNC, "ckpt", 4, pg->ckpt, strlen(pg->ckpt));
    if (st == CM_OK && pg->drop_ckpt) {
        st = kv_del(t, KV_DB_SYNC, "ckpt", 4);
        if (st == CM_NOTFOUND)
            st = CM_OK;
    }
    return st;
}

/* Upserts one object of pg's kind. */
static enum cm_status put_item(struct page *pg, struct kv_txn *t,
                               struct idx_writer *w, struct sjv it)
{
    if (pg->activity)
        return put_activity(pg, t, w, it);
    if (pg->type == SYNC_SCENES)
        return put_scene(pg, t, w, it);
    return put_entity(pg, t, w, it);
}

/* In an incremental pass on a cold store the id-map entries and records
 * of the page's scenes are read ahead together (kv_warm_scenes does
 * nothing while the store is not in random-access mode).  An item without
 * a valid id is left to put_item, which reports it. */
static void warm_page(const struct page *pg, struct kv_txn *t)
{
    bool items = pg->activity || pg->type == SYNC_SCENES;
    size_t n = 0, max = (items ? pg->n_items : 0) +
                        (pg->del_type == SYNC_SCENES ? pg->n_del : 0);
    uint64_t *ids;

    if (!kv_warming(kv_txn_store(t)) || max < KV_WARM_MIN)
        return;
    if (!(ids = cm_malloc(max * sizeof *ids)))
        return;
    for (size_t i = 0; items && i < pg->n_items; i++) {
        const char *v = sj_str(sj_get(pg->items[i], "id"), NULL);
        if (v && sync_parse_id(v, &ids[n]) == CM_OK)
            n++;
    }
    for (size_t i = 0; pg->del_type == SYNC_SCENES && i < pg->n_del; i++)
        ids[n++] = pg->del[i];
    kv_warm_scenes(kv_txn_store(t), ids, n);
    cm_free(ids);
}

static enum cm_status page_fn(struct kv_txn *t, void *ctx)
{
    struct page *pg = ctx;
    struct idx_writer *w = NULL;
    enum cm_status st;

    sync_arena_reset(&pg->r->arena);
    pg->written = pg->rewritten = pg->deleted = pg->unknown = 0;
    if ((st = idx_writer_begin(t, &w)) != CM_OK)
        return st;
    warm_page(pg, t);
    for (size_t i = 0; i < pg->n_items; i++)
        if ((st = put_item(pg, t, w, pg->items[i])) != CM_OK)
            goto fail;
    if (pg->n_del && pg->del_type != SYNC_SCENES)
        sync_ref_cache_clear(pg->r->refs);
    for (size_t i = 0; i < pg->n_del; i++) {
        if (pg->del_type == SYNC_SCENES)
            st = idx_scene_delete(w, pg->del[i]);
        else
            st =
                idx_entity_delete(w, sync_type_etype(pg->del_type), pg->del[i]);
        if (st == CM_OK)
            pg->deleted++;
        else if (st != CM_NOTFOUND)
            goto fail;
    }
    if ((st = drain_rewrites(pg, t, w, REWRITE_BUDGET)) != CM_OK ||
        (st = put_meta(t, pg)) != CM_OK)
        goto fail;
    return idx_writer_finish(w);
fail:
    idx_writer_discard(w);
    return st;
}

/* Adds the results of a committed page to the run's stats. */
static void add_stats(struct run *r, const struct page *pg)
{
    if (!r->stats)
        return;
    if (pg->activity)
        r->stats->activity += pg->written;
    else
        r->stats->written[pg->type] += pg->written;
    r->stats->deleted[pg->del_type] += pg->deleted;
    r->stats->rewritten += pg->rewritten;
    r->stats->unknown_refs += pg->unknown;
}

static enum cm_status drain_more(struct run *r, struct page *pg);

/* Commits one page, then drains leftover rewrites in more transactions. */
static enum cm_status commit_page(struct run *r, struct page *pg)
{
    enum cm_status st;
    pg->r = r;
    st = kv_write_run(r->s, page_fn, pg);
    if (st != CM_OK) {
        if (r->err && !r->err[0])
            errf(r, "store write failed: %s", cm_status_str(st));
        return st;
    }
    add_stats(r, pg);
    return drain_more(r, pg);
}

/* After a committed transaction that left rewrite markers: drains them,
 * REWRITE_BUDGET scenes per transaction. */
static enum cm_status drain_more(struct run *r, struct page *pg)
{
    enum cm_status st;
    while (pg->rw_left) {
        struct page more = {.r = r, .type = pg->type, .del_type = pg->type};
        if (stop_requested(r)) {
            errf(r, "sync aborted");
            return CM_ABORTED;
        }
        if ((st = kv_write_run(r->s, page_fn, &more)) != CM_OK) {
            errf(r, "store write failed: %s", cm_status_str(st));
            return st;
        }
        if (r->stats) {
            r->stats->rewritten += more.rewritten;
            r->stats->unknown_refs += more.unknown;
        }
        pg->rw_left = more.rw_left;
    }
    return CM_OK;
}

/* ---- meta: checkpoints and watermarks ------------------------------ */

struct ckpt {
    bool valid;
    enum sync_type type;
    uint64_t last; /* keyset: last id; offset types: items done */
    int per_page;  /* page size the offset was counted in */
    char wm[64];   /* Stash's max updated_at when the type started */
    int64_t t0;    /* unix time the full sync started, 0 = unknown */
};

static enum cm_status read_meta(struct run *r, const char *key, char *out,
                                size_t n, bool *found)
{
    struct kv_txn *t;
    const void *v;
    size_t len;
    enum cm_status st = kv_read_begin(r->s, &t);
    *found = false;
    out[0] = '\0';
    if (st != CM_OK)
        return st;
    st = kv_get(t, KV_DB_SYNC, key, strlen(key), &v, &len);
    if (st == CM_OK && len < n) {
        memcpy(out, v, len);
        out[len] = '\0';
        *found = true;
    } else if (st == CM_NOTFOUND) {
        st = CM_OK;
    }
    kv_read_end(t);
    return st;
}

static enum cm_status read_ckpt(struct run *r, struct ckpt *c)
{
    char buf[512];
    bool found;
    cJSON *j;
    const cJSON *ty, *last, *pp, *wm, *t0;
    enum cm_status st = read_meta(r, "ckpt", buf, sizeof buf, &found);
    memset(c, 0, sizeof *c);
    if (st != CM_OK || !found)
        return st;
    j = cJSON_Parse(buf);
    ty = cJSON_GetObjectItemCaseSensitive(j, "type");
    last = cJSON_GetObjectItemCaseSensitive(j, "last");
    pp = cJSON_GetObjectItemCaseSensitive(j, "per_page");
    wm = cJSON_GetObjectItemCaseSensitive(j, "wm");
    t0 = cJSON_GetObjectItemCaseSensitive(j, "t0"); /* older: absent */
    if (cJSON_IsNumber(ty) && ty->valueint >= 0 &&
        ty->valueint <= SYNC_NTYPES && cJSON_IsNumber(last) &&
        last->valuedouble >= 0 && cJSON_IsNumber(pp) && cJSON_IsString(wm) &&
        strlen(wm->valuestring) < sizeof c->wm) {
        c->valid = true;
        c->type = (enum sync_type)ty->valueint;
        c->last = (uint64_t)last->valuedouble;
        c->per_page = pp->valueint;
        snprintf(c->wm, sizeof c->wm, "%s", wm->valuestring);
        if (cJSON_IsNumber(t0) && t0->valuedouble > 0 && t0->valuedouble < 1e15)
            c->t0 = (int64_t)t0->valuedouble;
    } else {
        cm_warn("sync", "ignoring an unreadable checkpoint");
    }
    cJSON_Delete(j);
    return CM_OK;
}

static void fmt_ckpt(char *buf, size_t n, int t, uint64_t last, int per_page,
                     const char *wm, int64_t t0)
{
    snprintf(buf, n,
             "{\"mode\":\"full\",\"type\":%d,\"last\":%llu,\"per_page\":%d,"
             "\"wm\":\"%s\",\"t0\":%lld}",
             t, (unsigned long long)last, per_page, wm, (long long)t0);
}

/* Stash-local wall time of an RFC3339 string (its first 19 chars). */
static void wall_of(const char *ts, char out[20])
{
    memcpy(out, ts, 19);
    out[19] = '\0';
}

/* wall - secs, as wall text again (naive calendar arithmetic). */
static void wall_minus(const char *wall, long secs, char out[20])
{
    struct tm tm;
    time_t tt;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = (wall[0] - '0') * 1000 + (wall[1] - '0') * 100 +
                 (wall[2] - '0') * 10 + (wall[3] - '0') - 1900;
    tm.tm_mon = (wall[5] - '0') * 10 + (wall[6] - '0') - 1;
    tm.tm_mday = (wall[8] - '0') * 10 + (wall[9] - '0');
    tm.tm_hour = (wall[11] - '0') * 10 + (wall[12] - '0');
    tm.tm_min = (wall[14] - '0') * 10 + (wall[15] - '0');
    tm.tm_sec = (wall[17] - '0') * 10 + (wall[18] - '0');
    char buf[64];
    tt = timegm(&tm) - secs;
    gmtime_r(&tt, &tm);
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d",
             (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100);
    memcpy(out, buf, 19);
    out[19] = '\0';
}

/* updated_at of an item, validated. */
static const char *item_updated(struct sjv it)
{
    size_t n;
    const char *u = sj_str(sj_get(it, "updated_at"), &n);
    return u && sync_valid_time(u, n) ? u : NULL;
}

/* Stash's current max updated_at of type t ("" when empty). */
static enum cm_status probe_max(struct run *r, enum sync_type t, char *out,
                                size_t n)
{
    struct sync_json *resp;
    struct sjv list;
    const char *u;
    enum cm_status st = query(
        r, T[t].doc, t, vars_new(1, 1, "updated_at", true), &resp, &list, NULL);
    out[0] = '\0';
    if (st != CM_OK)
        return st;
    if (sj_size(list) > 0) {
        if (!(u = item_updated(sj_first(list))) || strlen(u) >= n) {
            errf(r, "%s: an object has no valid updated_at", sync_type_name(t));
            st = CM_INVALID;
        } else {
            memcpy(out, u, strlen(u) + 1);
        }
    }
    sync_json_free(resp);
    return st;
}

/* ---- full walk of one type ----------------------------------------- */

/* Fetches the full-walk page of t after cursor `last` (keyset: the last
 * id; page-numbered types: objects done) into items[0..*n).  OUT *resp
 * (caller owns; NULL on error), *cnt (Stash's count), *last_id (the last
 * object's id).  Checks the page: at most pp objects, ids ascending. */
static enum cm_status fetch_full_page(struct run *r, enum sync_type t, int pp,
                                      uint64_t last, struct sync_json **resp,
                                      struct sjv *items, size_t *n,
                                      uint64_t *cnt, uint64_t *last_id)
{
    cJSON *vars;
    struct sjv list, it;
    uint64_t id = 0;
    enum cm_status st;

    *n = 0;
    if (T[t].id_filter) {
        vars = vars_new(1, pp, "id", false);
        if (vars && !vars_crit(vars, T[t].filter_arg, "id", "GREATER_THAN",
                               NULL, (double)last)) {
            cJSON_Delete(vars);
            vars = NULL;
        }
    } else {
        vars = vars_new((int)(last / (uint64_t)pp) + 1, pp, "id", false);
    }
    if ((st = query(r, T[t].doc, t, vars, resp, &list, cnt)) != CM_OK)
        return st;
    for (it = sj_first(list); !sj_missing(it); it = sj_next(it)) {
        uint64_t prev = id;
        if (*n == (size_t)pp || (st = item_id(r, it, &id)) != CM_OK)
            break;
        if (T[t].id_filter && id <= (*n ? prev : last)) {
            errf(r, "%s: ids not ascending", sync_type_name(t));
            st = CM_UPSTREAM;
            break;
        }
        items[(*n)++] = it;
    }
    if (st == CM_OK && *n == (size_t)pp && !sj_missing(it)) {
        errf(r, "%s: Stash returned more than per_page objects",
             sync_type_name(t));
        st = CM_UPSTREAM;
    }
    if (st != CM_OK) {
        sync_json_free(*resp);
        *resp = NULL;
    }
    *last_id = id;
    return st;
}

/* One commit unit of a full walk: whole pages, fetched and applied one
 * after the other in ONE write transaction, until r->commit objects, the
 * type's last page, a failed fetch or a stop request.  The checkpoint of
 * the last applied page is written in the same transaction.  Run through
 * kv_write_run(): a redo after map growth starts again at the unit's
 * first page and fetches it again (keyset and page numbers return the
 * same objects). */
struct unit {
    struct run *r;
    enum sync_type t;
    bool checkpoint;       /* write "ckpt" (and the watermark at the end) */
    const char *wm;        /* the type's starting watermark */
    struct sjv *items;     /* r->page slots */
    uint64_t last0, done0; /* cursor at the unit's start */
    /* results of the last attempt */
    uint64_t last, done, total;
    bool end;           /* the type's last page was applied */
    enum cm_status cut; /* fetch error or stop that ended the unit */
    int pages;          /* pages applied */
    struct page pg;     /* counters of the applied pages */
};

static enum cm_status unit_fn(struct kv_txn *t, void *ctx)
{
    struct unit *u = ctx;
    struct run *r = u->r;
    struct idx_writer *w = NULL;
    uint64_t in_unit = 0;
    char ck[256];
    enum cm_status st;

    u->last = u->last0;
    u->done = u->done0;
    u->end = false;
    u->cut = CM_OK;
    u->pages = 0;
    memset(&u->pg, 0, sizeof u->pg);
    u->pg.r = r;
    u->pg.type = u->pg.del_type = u->t;
    if ((st = idx_writer_begin(t, &w)) != CM_OK)
        return st;
    for (;;) {
        struct sync_json *resp = NULL;
        size_t n = 0;
        uint64_t cnt = 0, last_id = 0;

        if (stop_requested(r)) {
            errf(r, "sync aborted");
            u->cut = CM_ABORTED;
            break;
        }
        st = fetch_full_page(r, u->t, r->page, u->last, &resp, u->items, &n,
                             &cnt, &last_id);
        if (st != CM_OK) { /* commit the pages before it, then fail */
            u->cut = st;
            st = CM_OK;
            break;
        }
        sync_arena_reset(&r->arena);
        for (size_t i = 0; i < n && st == CM_OK; i++)
            st = put_item(&u->pg, t, w, u->items[i]);
        sync_json_free(resp);
        if (st != CM_OK)
            goto fail;
        u->total = T[u->t].id_filter ? u->done + cnt : cnt;
        u->last = T[u->t].id_filter ? (n ? last_id : u->last) : u->last + n;
        u->done += n;
        u->pg.n_items += n; /* objects fetched */
        in_unit += n;
        u->pages++;
        progress(r, u->t, "fetch", u->done,
                 u->total > u->done ? u->total : u->done);
        if (n < (size_t)r->page) {
            u->end = true;
            break;
        }
        if (in_unit >= r->commit)
            break;
    }
    if ((st = drain_rewrites(&u->pg, t, w, REWRITE_BUDGET)) != CM_OK)
        goto fail;
    if (u->checkpoint && u->pages) {
        if (u->end) { /* type t + 1: this walk done */
            fmt_ckpt(ck, sizeof ck, (int)u->t + 1, 0, r->page, "", r->full_t0);
            u->pg.wm = u->wm[0] ? u->wm : NULL;
        } else {
            fmt_ckpt(ck, sizeof ck, (int)u->t, u->last, r->page, u->wm,
                     r->full_t0);
        }
        u->pg.ckpt = ck;
        st = put_meta(t, &u->pg);
        u->pg.ckpt = NULL;
        u->pg.wm = NULL;
        if (st != CM_OK)
            goto fail;
    }
    return idx_writer_finish(w);
fail:
    idx_writer_discard(w);
    return st;
}

/* Walks every object of t (keyset by id where Stash can filter on id,
 * offset pages otherwise), upserting, in commit units of r->commit
 * objects.  With a checkpoint, starts after it and writes one per unit;
 * at the end writes the type's watermark. */
static enum cm_status walk_full(struct run *r, enum sync_type t,
                                const struct ckpt *resume, bool checkpoint)
{
    struct unit u;
    char wm[64] = "";
    enum cm_status st = CM_OK;

    memset(&u, 0, sizeof u);
    r->t_type = now_s();
    if (resume && resume->valid && resume->type == t) {
        snprintf(wm, sizeof wm, "%s", resume->wm);
        if (T[t].id_filter || resume->per_page == r->page)
            u.last0 = resume->last;
        if (!T[t].id_filter)
            u.done0 = u.last0;
        if (r->stats)
            r->stats->resumed = true;
    }
    if (checkpoint && !wm[0] && (st = probe_max(r, t, wm, sizeof wm)) != CM_OK)
        return st;
    if (!(u.items = cm_malloc(sizeof *u.items * (size_t)r->page))) {
        errf(r, "out of memory");
        return CM_NOMEM;
    }
    u.r = r;
    u.t = t;
    u.checkpoint = checkpoint;
    u.wm = wm;
    for (;;) {
        st = kv_write_run(r->s, unit_fn, &u);
        if (st != CM_OK) {
            if (r->err && !r->err[0])
                errf(r, "store write failed: %s", cm_status_str(st));
            break;
        }
        if (r->stats)
            r->stats->fetched[t] += u.pg.n_items;
        add_stats(r, &u.pg);
        if ((st = drain_more(r, &u.pg)) != CM_OK)
            break;
        u.last0 = u.last;
        u.done0 = u.done;
        if (u.cut != CM_OK) {
            st = u.cut;
            break;
        }
        if (u.end)
            break;
    }
    cm_free(u.items);
    progress_end(r, t);
    return st;
}

/* ---- incremental pass of one type ----------------------------------- */

static enum cm_status walk_incremental(struct run *r, enum sync_type t,
                                       const char *wm_in)
{
    char wm[64], thr[20], wall[20];
    struct sjv *items = NULL;
    struct hset seen = {0};
    uint64_t done = 0, total;
    enum cm_status st;
    int pp = r->page, page = 1;
    struct sync_json *resp = NULL;
    struct sjv list;

    r->t_type = now_s();
    {
        size_t l = strnlen(wm_in, sizeof wm - 1);
        memcpy(wm, wm_in, l);
        wm[l] = '\0';
    }
    wall_of(wm, wall);
    wall_minus(wall, OVERLAP_S, thr);
    {
        cJSON *v = vars_new(1, 0, "updated_at", false);
        if (v && !vars_crit(v, T[t].filter_arg, "updated_at", "GREATER_THAN",
                            thr, 0)) {
            cJSON_Delete(v);
            v = NULL;
        }
        if ((st = query(r, T[t].doc, t, v, &resp, &list, &total)) != CM_OK)
            return st;
        sync_json_free(resp);
        resp = NULL;
    }
    if (total == 0) {
        progress(r, t, "fetch", 0, 0);
        progress_end(r, t);
        return CM_OK;
    }
    if (!(items = cm_malloc(sizeof *items * (size_t)pp))) {
        errf(r, "out of memory");
        return CM_NOMEM;
    }
    for (;;) {
        cJSON *v;
        struct page pg = {.type = t, .del_type = t};
        size_t n = 0, got = 0;
        char lastwall[20] = "";

        if (stop_requested(r)) {
            errf(r, "sync aborted");
            st = CM_ABORTED;
            break;
        }
        v = vars_new(page, pp, "updated_at", false);
        if (v && !vars_crit(v, T[t].filter_arg, "updated_at", "GREATER_THAN",
                            thr, 0)) {
            cJSON_Delete(v);
            v = NULL;
        }
        if ((st = query(r, T[t].doc, t, v, &resp, &list, NULL)) != CM_OK)
            break;
        SJ_FOREACH(it, list)
        {
            const char *u = item_updated(it);
            uint64_t id;
            bool fresh;
            if (got == (size_t)pp)
                break;
            got++;
            if ((st = item_id(r, it, &id)) != CM_OK)
                break;
            if (!u) {
                errf(r, "%s %llu: updated_at: expected an RFC3339 time",
                     sync_type_name(t), (unsigned long long)id);
                st = CM_INVALID;
                break;
            }
            wall_of(u, lastwall);
            /* the watermark: max of Stash's own values, by wall time */
            if (strncmp(u, wm, 19) > 0 && strlen(u) < sizeof wm)
                memcpy(wm, u, strlen(u) + 1);
            if ((st = hset_add(&seen, mix_key(id, u), &fresh)) != CM_OK)
                break;
            if (fresh)
                items[n++] = it;
        }
        if (st != CM_OK)
            break;
        pg.items = items;
        pg.n_items = n;
        pg.wm = wm;
        if ((st = commit_page(r, &pg)) != CM_OK)
            break;
        if (r->stats)
            r->stats->fetched[t] += n;
        done += n;
        progress(r, t, "fetch", done, total > done ? total : done);
        sync_json_free(resp);
        resp = NULL;
        if (got < (size_t)pp)
            break;
        /* keyset on wall time; offset only within one second */
        if (strcmp(lastwall, thr) > 0) {
            memcpy(thr, lastwall, sizeof thr);
            page = 1;
        } else {
            page++;
        }
    }
    sync_json_free(resp);
    cm_free(items);
    hset_fini(&seen);
    progress_end(r, t);
    return st;
}

/* ---- activity sweep -------------------------------------------------- */

/* Fetches the activity fields of every scene (Stash does not bump
 * updated_at for them) and rewrites the scenes whose fields differ.  The
 * last page's transaction records "sweep_at" = t0 (the sweep's start: the
 * store's activity is at least that fresh). */
static enum cm_status activity_sweep(struct run *r, int64_t t0)
{
    struct sjv *items = NULL;
    uint64_t last = 0, done = 0, total = 0;
    enum cm_status st = CM_OK;

    r->t_type = now_s();
    if (!(items = cm_malloc(sizeof *items * ID_PAGE))) {
        errf(r, "out of memory");
        return CM_NOMEM;
    }
    for (;;) {
        cJSON *v;
        struct sync_json *resp = NULL;
        struct sjv list;
        struct page pg = {
            .type = SYNC_SCENES, .activity = true, .del_type = SYNC_SCENES};
        size_t n = 0;
        uint64_t id = 0, cnt;

        if (stop_requested(r)) {
            errf(r, "sync aborted");
            st = CM_ABORTED;
            break;
        }
        v = vars_new(1, ID_PAGE, "id", false);
        if (v && !vars_crit(v, "scene_filter", "id", "GREATER_THAN", NULL,
                            (double)last)) {
            cJSON_Delete(v);
            v = NULL;
        }
        if ((st = query(r, "SyncSceneActivity", SYNC_SCENES, v, &resp, &list,
                        &cnt)) != CM_OK)
            break;
        total = done + cnt;
        SJ_FOREACH(it, list)
        {
            if (n == ID_PAGE || (st = item_id(r, it, &id)) != CM_OK)
                break;
            items[n++] = it;
        }
        if (st == CM_OK && n && id <= last) {
            errf(r, "scenes: ids not ascending");
            st = CM_UPSTREAM;
        }
        if (st == CM_OK && n < ID_PAGE) /* the last page */
            pg.sweep_at = t0;
        if (st == CM_OK && (n || pg.sweep_at)) {
            pg.items = items;
            pg.n_items = n;
            st = commit_page(r, &pg);
        }
        sync_json_free(resp);
        if (st != CM_OK)
            break;
        done += n;
        last = id;
        progress(r, SYNC_SCENES, "activity", done, total);
        if (n < ID_PAGE)
            break;
    }
    cm_free(items);
    progress_end(r, SYNC_SCENES);
    return st;
}

/* ---- reconciliation -------------------------------------------------- */

/* Every local stash id of type t, ascending. */
static enum cm_status local_ids(struct run *r, enum sync_type t,
                                struct vec *out)
{
    struct kv_txn *tx;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t prefix = t == SYNC_SCENES ? 'S' : sync_type_etype(t);
    enum kv_db db = t == SYNC_SCENES ? KV_DB_IDMAP : KV_DB_ENTITIES;
    enum cm_status st = kv_read_begin(r->s, &tx);
    int rc;

    if (st != CM_OK)
        return st;
    rc = mdb_cursor_open(kv_txn_mdb(tx), kv_dbi(r->s, db), &cur);
    if (rc != 0) {
        kv_read_end(tx);
        return kv_from_mdb(rc, "id walk");
    }
    k.mv_data = &prefix;
    k.mv_size = 1;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        uint64_t id = 0;
        if (k.mv_size != 9 || p[0] != prefix)
            break;
        for (int i = 0; i < 8; i++)
            id = id << 8 | p[1 + i];
        if ((st = vec_push(out, id)) != CM_OK)
            break;
    }
    if (rc != 0 && rc != MDB_NOTFOUND && st == CM_OK)
        st = kv_from_mdb(rc, "id walk");
    mdb_cursor_close(cur);
    kv_read_end(tx);
    return st;
}

/* Every Stash id of type t, ascending (pages of ID_PAGE). */
static enum cm_status stash_ids(struct run *r, enum sync_type t,
                                struct vec *out)
{
    uint64_t last = 0;
    int page = 1;
    enum cm_status st;
    for (;;) {
        cJSON *v;
        struct sync_json *resp = NULL;
        struct sjv list;
        size_t n = 0;
        uint64_t id = 0;
        if (stop_requested(r)) {
            errf(r, "sync aborted");
            return CM_ABORTED;
        }
        if (T[t].id_filter) {
            v = vars_new(1, ID_PAGE, "id", false);
            if (v && !vars_crit(v, T[t].filter_arg, "id", "GREATER_THAN", NULL,
                                (double)last)) {
                cJSON_Delete(v);
                v = NULL;
            }
        } else {
            v = vars_new(page, ID_PAGE, "id", false);
        }
        if ((st = query(r, T[t].ids_doc, t, v, &resp, &list, NULL)) != CM_OK)
            return st;
        SJ_FOREACH(it, list)
        {
            if ((st = item_id(r, it, &id)) != CM_OK ||
                (st = vec_push(out, id)) != CM_OK)
                break;
            n++;
        }
        sync_json_free(resp);
        if (st != CM_OK)
            return st;
        last = id;
        page++;
        if (n < ID_PAGE)
            break;
    }
    vec_sort(out);
    return CM_OK;
}

/* Fetches the objects of type t (scenes or galleries: by id range) whose
 * ids are in ids[0..n) (ascending) with doc; calls fn for each page with
 * the items whose id is in the range.  OUT present: the ids Stash
 * returned (ascending). */
static enum cm_status
fetch_ranges(struct run *r, enum sync_type t, const char *doc,
             const uint64_t *ids, size_t n, struct vec *present,
             enum cm_status (*fn)(struct run *, enum sync_type, struct sjv *,
                                  size_t, void *),
             void *ctx)
{
    struct sjv *items = cm_malloc(sizeof *items * CONFIRM_SPAN);
    enum cm_status st = CM_OK;
    size_t i = 0;

    if (!items)
        return CM_NOMEM;
    while (i < n && st == CM_OK) {
        uint64_t lo = ids[i], hi = lo;
        size_t j = i, k = 0;
        cJSON *v;
        struct sync_json *resp = NULL;
        struct sjv list;

        while (j < n && ids[j] - lo < CONFIRM_SPAN)
            hi = ids[j++];
        v = vars_new(1, (int)(hi - lo + 1), "id", false);
        if (v && !vars_crit(v, T[t].filter_arg, "id", "GREATER_THAN", NULL,
                            (double)(lo - 1))) {
            cJSON_Delete(v);
            v = NULL;
        }
        if ((st = query(r, doc, t, v, &resp, &list, NULL)) != CM_OK)
            break;
        SJ_FOREACH(it, list)
        {
            uint64_t id;
            if ((st = item_id(r, it, &id)) != CM_OK)
                break;
            if (id < lo || id > hi)
                continue;
            if (present && (st = vec_push(present, id)) != CM_OK)
                break;
            if (k < CONFIRM_SPAN)
                items[k++] = it;
        }
        if (st == CM_OK && fn && k)
            st = fn(r, t, items, k, ctx);
        sync_json_free(resp);
        i = j;
    }
    cm_free(items);
    if (present)
        vec_sort(present);
    return st;
}

static enum cm_status upsert_fn(struct run *r, enum sync_type t,
                                struct sjv *items, size_t n, void *ctx)
{
    struct page pg = {.type = t, .del_type = t, .items = items, .n_items = n};
    (void)ctx;
    if (r->stats)
        r->stats->fetched[t] += n;
    return commit_page(r, &pg);
}

/* Entities that Stash has but we miss (a walk skipped them): by ids. */
static enum cm_status fetch_entities(struct run *r, enum sync_type t,
                                     const uint64_t *ids, size_t n)
{
    enum cm_status st = CM_OK;
    for (size_t i = 0; i < n && st == CM_OK; i += 500) {
        size_t k = n - i < 500 ? n - i : 500, m = 0;
        cJSON *v = cJSON_CreateObject();
        struct sync_json *resp = NULL;
        struct sjv list;
        struct sjv *items = cm_malloc(sizeof *items * k);
        if (!items || !v || !vars_ids(v, ids + i, k)) {
            cJSON_Delete(v);
            cm_free(items);
            return CM_NOMEM;
        }
        st = query(r, T[t].doc, t, v, &resp, &list, NULL);
        if (st == CM_UPSTREAM) { /* deleted meanwhile: next sync */
            cm_warn("sync", "%s: could not fetch missing objects: %s",
                    sync_type_name(t), r->err ? r->err : "");
            if (r->err)
                r->err[0] = '\0';
            st = CM_OK;
            cm_free(items);
            continue;
        }
        if (st == CM_OK) {
            SJ_FOREACH(it, list)
            if (m < k)
                items[m++] = it;
            st = upsert_fn(r, t, items, m, NULL);
        }
        sync_json_free(resp);
        cm_free(items);
    }
    return st;
}

/* Confirms that entity id of type t is gone: an ids lookup fails with
 * "not found".  OUT *gone. */
static enum cm_status confirm_entity(struct run *r, enum sync_type t,
                                     uint64_t id, bool *gone)
{
    cJSON *v = cJSON_CreateObject();
    struct sync_json *resp = NULL;
    struct sjv data, list;
    char e[512];
    enum cm_status st;

    *gone = false;
    if (!v || !vars_ids(v, &id, 1)) {
        cJSON_Delete(v);
        return CM_NOMEM;
    }
    st = sync_client_query(r->c, T[t].doc, v, &resp, &data, e, sizeof e);
    cJSON_Delete(v);
    if (st == CM_OK) {
        list = sj_get(sj_first(data), T[t].list);
        *gone = sj_type(list) != SJ_ARRAY || sj_size(list) == 0;
        sync_json_free(resp);
        return CM_OK;
    }
    if (st == CM_UPSTREAM && strstr(e, "not found")) {
        *gone = true;
        return CM_OK;
    }
    errf(r, "%s: confirming deletion of %llu: %s", sync_type_name(t),
         (unsigned long long)id, e);
    return st;
}

struct deleted_entity {
    enum sync_type t;
    uint64_t id;
};

/* Scene stash ids carrying entity (type, id). */
static enum cm_status scenes_carrying(struct run *r, uint8_t et, uint64_t id,
                                      struct vec *out)
{
    struct kv_txn *t;
    struct vec docs = {0};
    struct collect cc = {&docs, 0, SIZE_MAX};
    enum cm_status st = kv_read_begin(r->s, &t);
    if (st != CM_OK)
        return st;
    st = kv_scenes_with(t, et, id, collect_cb, &cc);
    for (size_t i = 0; st == CM_OK && i < docs.n; i++) {
        uint64_t sid;
        st = kv_stash_id_of(t, (uint32_t)docs.v[i], &sid);
        if (st == CM_OK)
            st = vec_push(out, sid);
        else if (st == CM_NOTFOUND)
            st = CM_OK;
    }
    kv_read_end(t);
    vec_fini(&docs);
    return st;
}

/* Scene stash ids whose markers use one of the tags in tags (sorted): the
 * reverse index does not cover marker tags, so scan the records (only
 * after a tag deletion or merge, which is rare). */
static enum cm_status
scenes_with_marker_tags(struct run *r, const struct vec *tags, struct vec *out)
{
    struct kv_txn *t;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    enum cm_status st = kv_read_begin(r->s, &t);
    int rc;

    if (st != CM_OK)
        return st;
    rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(r->s, KV_DB_SCENES), &cur);
    if (rc != 0) {
        kv_read_end(t);
        return kv_from_mdb(rc, "scene scan");
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && st == CM_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct kv_scene sc;
        if ((st = kv_scene_decode(v.mv_data, v.mv_size, &sc)) != CM_OK) {
            kv_scene_fini(&sc);
            break;
        }
        for (uint32_t i = 0; i < sc.n_markers; i++)
            if (tags->n && bsearch(&sc.markers[i].primary_tag_id, tags->v,
                                   tags->n, sizeof *tags->v, cmp_u64)) {
                st = vec_push(out, sc.id);
                break;
            }
        kv_scene_fini(&sc);
    }
    if (rc != 0 && rc != MDB_NOTFOUND && st == CM_OK)
        st = kv_from_mdb(rc, "scene scan");
    mdb_cursor_close(cur);
    kv_read_end(t);
    return st;
}

/* Diff of sorted a minus sorted b into out. */
static enum cm_status minus(const struct vec *a, const struct vec *b,
                            struct vec *out)
{
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        while (j < b->n && b->v[j] < a->v[i])
            j++;
        if (j < b->n && b->v[j] == a->v[i])
            continue;
        if (vec_push(out, a->v[i]) != CM_OK)
            return CM_NOMEM;
    }
    return CM_OK;
}

/* Refetches scenes (ascending stash ids) from Stash; those Stash no
 * longer has are deleted.  Entities in del (may be empty) are deleted in
 * the last transaction. */
static enum cm_status refetch_scenes(struct run *r, struct vec *ids,
                                     const uint64_t *del, size_t n_del,
                                     enum sync_type del_type)
{
    struct vec present = {0}, gone = {0};
    struct page pg = {
        .type = SYNC_SCENES, .del_type = del_type, .del = del, .n_del = n_del};
    enum cm_status st = CM_OK;

    vec_sort(ids);
    if (ids->n) { /* unique */
        size_t u = 1;
        for (size_t i = 1; i < ids->n; i++)
            if (ids->v[i] != ids->v[u - 1])
                ids->v[u++] = ids->v[i];
        ids->n = u;
    }
    /* by ids, 500 at a time (they exist as far as we know); a batch that
     * fails because one vanished meanwhile falls back to id ranges */
    for (size_t i = 0; st == CM_OK && i < ids->n; i += 500) {
        size_t k = ids->n - i < 500 ? ids->n - i : 500, m = 0;
        cJSON *v = cJSON_CreateObject();
        struct sync_json *resp = NULL;
        struct sjv list;
        struct sjv *items = cm_malloc(sizeof *items * k);
        if (!items || !v || !vars_ids(v, ids->v + i, k)) {
            cJSON_Delete(v);
            cm_free(items);
            st = CM_NOMEM;
            break;
        }
        st = query(r, "SyncScenes", SYNC_SCENES, v, &resp, &list, NULL);
        if (st == CM_UPSTREAM && r->err && strstr(r->err, "not found")) {
            r->err[0] = '\0';
            st = fetch_ranges(r, SYNC_SCENES, "SyncScenes", ids->v + i, k,
                              &present, upsert_fn, NULL);
        } else if (st == CM_OK) {
            SJ_FOREACH(it, list)
            {
                uint64_t id;
                if (m == k || (st = item_id(r, it, &id)) != CM_OK ||
                    (st = vec_push(&present, id)) != CM_OK)
                    break;
                items[m++] = it;
            }
            if (st == CM_OK)
                st = upsert_fn(r, SYNC_SCENES, items, m, NULL);
        }
        sync_json_free(resp);
        cm_free(items);
    }
    vec_sort(&present);
    if (st == CM_OK)
        st = minus(ids, &present, &gone);
    if (st == CM_OK && gone.n) {
        struct page dp = {.type = SYNC_SCENES,
                          .del_type = SYNC_SCENES,
                          .del = gone.v,
                          .n_del = gone.n};
        st = commit_page(r, &dp);
    }
    if (st == CM_OK && n_del)
        st = commit_page(r, &pg);
    vec_fini(&present);
    vec_fini(&gone);
    return st;
}

static enum cm_status reconcile_type(struct run *r, enum sync_type t,
                                     struct vec *confirmed)
{
    struct vec local = {0}, remote = {0}, cand = {0}, missing = {0};
    enum cm_status st;

    r->t_type = now_s();
    progress(r, t, "reconcile", 0, 0);
    if ((st = local_ids(r, t, &local)) != CM_OK ||
        (st = stash_ids(r, t, &remote)) != CM_OK)
        goto out;
    if (remote.n == 0 && local.n > 0) {
        cm_warn("sync",
                "%s: Stash returned no ids while the store holds "
                "%zu: not deleting anything",
                sync_type_name(t), local.n);
        if (r->stats)
            r->stats->deletes_skipped = true;
        goto out;
    }
    if ((st = minus(&local, &remote, &cand)) != CM_OK ||
        (st = minus(&remote, &local, &missing)) != CM_OK)
        goto out;
    if (cand.n * 2 > local.n && local.n > 0)
        cm_warn("sync",
                "%s: %zu of %zu local ids missing from Stash: "
                "confirming each before deleting",
                sync_type_name(t), cand.n, local.n);
    /* confirm every candidate */
    if (T[t].id_filter) {
        struct vec still = {0};
        st = fetch_ranges(r, t, T[t].ids_doc, cand.v, cand.n, &still, NULL,
                          NULL);
        if (st == CM_OK) {
            struct vec gone = {0};
            st = minus(&cand, &still, &gone);
            for (size_t i = 0; st == CM_OK && i < gone.n; i++)
                st = vec_push(confirmed, gone.v[i]);
            vec_fini(&gone);
        }
        vec_fini(&still);
    } else {
        for (size_t i = 0; st == CM_OK && i < cand.n; i++) {
            bool gone;
            if ((st = confirm_entity(r, t, cand.v[i], &gone)) == CM_OK && gone)
                st = vec_push(confirmed, cand.v[i]);
        }
    }
    if (st != CM_OK)
        goto out;
    /* what a walk skipped */
    if (missing.n) {
        cm_info("sync", "%s: %zu objects missing from the store: fetching",
                sync_type_name(t), missing.n);
        if (T[t].id_filter)
            st = fetch_ranges(r, t, T[t].doc, missing.v, missing.n, NULL,
                              upsert_fn, NULL);
        else
            st = fetch_entities(r, t, missing.v, missing.n);
    }
    progress(r, t, "reconcile", local.n, local.n);
out:
    progress_end(r, t);
    vec_fini(&local);
    vec_fini(&remote);
    vec_fini(&cand);
    vec_fini(&missing);
    return st;
}

/* Id reconciliation of every type (see docs/SYNC.md "Deletions").  Its
 * last transaction deletes the confirmed scenes and records
 * "reconcile_at" = t0 (not when a deletion guard fired: the schedule then
 * still counts from the last complete one); after a full walk it also
 * drops the checkpoint and records "sweep_at" = the full sync's start. */
static enum cm_status reconcile(struct run *r, int64_t t0)
{
    struct vec gone[SYNC_NTYPES];
    bool any_entity = false, guarded = false;
    enum cm_status st = CM_OK;

    memset(gone, 0, sizeof gone);
    for (int t = 0; t < SYNC_NTYPES && st == CM_OK; t++) {
        st = reconcile_type(r, (enum sync_type)t, &gone[t]);
        if (t != SYNC_SCENES && gone[t].n)
            any_entity = true;
    }
    /* entity deletions change other entities and scenes silently (FK
     * cascades, merges): refresh all entities, then refetch the scenes
     * that carried them, then drop them */
    if (st == CM_OK && any_entity) {
        for (int t = 0; t < SYNC_SCENES && st == CM_OK; t++)
            st = walk_full(r, (enum sync_type)t, NULL, false);
        for (int t = 0; t < SYNC_SCENES && st == CM_OK; t++) {
            struct vec scenes = {0};
            for (size_t i = 0; st == CM_OK && i < gone[t].n; i++)
                st = scenes_carrying(r, sync_type_etype((enum sync_type)t),
                                     gone[t].v[i], &scenes);
            if (st == CM_OK && t == SYNC_TAGS && gone[t].n)
                st = scenes_with_marker_tags(r, &gone[t], &scenes);
            if (st == CM_OK && gone[t].n) {
                cm_info("sync", "%s: deleting %zu, refetching %zu scenes",
                        sync_type_name((enum sync_type)t), gone[t].n, scenes.n);
                st = refetch_scenes(r, &scenes, gone[t].v, gone[t].n,
                                    (enum sync_type)t);
            }
            vec_fini(&scenes);
        }
    }
    if (st == CM_OK) {
        struct page pg = {.type = SYNC_SCENES,
                          .del_type = SYNC_SCENES,
                          .del = gone[SYNC_SCENES].v,
                          .n_del = gone[SYNC_SCENES].n};
        guarded = r->stats && r->stats->deletes_skipped;
        if (!guarded)
            pg.reconcile_at = t0;
        if (r->mode == SYNC_FULL) {
            pg.drop_ckpt = true;
            pg.sweep_at = r->full_t0;
        }
        if (pg.n_del)
            cm_info("sync", "scenes: deleting %zu", pg.n_del);
        st = commit_page(r, &pg);
    }
    if (st == CM_OK && r->stats)
        r->stats->reconcile = guarded ? SYNC_EXTRA_GUARDED : SYNC_EXTRA_DONE;
    for (int t = 0; t < SYNC_NTYPES; t++)
        vec_fini(&gone[t]);
    return st;
}

/* ---- the run --------------------------------------------------------- */

static void set_type_done(struct run *r, enum sync_type t, enum cm_status st)
{
    if (!r->st)
        return;
    pthread_mutex_lock(&r->st->mu);
    if (st == CM_OK) {
        r->st->types[t].last_success = (int64_t)time(NULL);
        r->st->types[t].last_error[0] = '\0';
        snprintf(r->st->types[t].phase, sizeof r->st->types[t].phase, "done");
    } else {
        snprintf(r->st->types[t].last_error, sizeof r->st->types[t].last_error,
                 "%s", r->err ? r->err : cm_status_str(st));
    }
    pthread_mutex_unlock(&r->st->mu);
}

/* Reads a unix time written by put_time(); OUT *out = 0 when absent or
 * unreadable (then the pass is due). */
static enum cm_status read_time(struct run *r, const char *key, int64_t *out)
{
    char buf[24], *end;
    bool found;
    long long v;
    enum cm_status st = read_meta(r, key, buf, sizeof buf, &found);
    *out = 0;
    if (st != CM_OK || !found)
        return st;
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno || end == buf || *end || v <= 0)
        cm_warn("sync", "ignoring an unreadable %s", key);
    else
        *out = v;
    return CM_OK;
}

/* Is a pass last done at `last` (unix s, 0 = never) due at `now` with
 * interval iv (0 = off)?  A clock that went back before `last` makes it
 * due rather than postponing it for as long. */
static bool is_due(int64_t last, int64_t iv, int64_t now)
{
    return iv > 0 && (last <= 0 || now < last || now - last >= iv);
}

/* Decides whether an incremental run does the sweep (flag "sweep") or
 * the reconciliation (flag "reconcile"): SYNC_EXTRA_DONE = do it. */
static enum sync_extra decide(const char *flag, bool forced, int64_t last,
                              int64_t iv, int64_t now)
{
    const char *what =
        strcmp(flag, "sweep") == 0 ? "activity sweep" : "reconciliation";
    if (forced || is_due(last, iv, now))
        return SYNC_EXTRA_DONE;
    if (iv <= 0) {
        cm_info("sync", "%s: off (--%s-interval 0; run it with --%s)", what,
                flag, flag);
        return SYNC_EXTRA_OFF;
    }
    cm_info("sync", "%s: not due (last %llds ago, interval %llds)", what,
            (long long)(now - last), (long long)iv);
    return SYNC_EXTRA_NOT_DUE;
}

static void set_extra_times(struct run *r, int64_t sweep, int64_t rec)
{
    if (sweep > 0)
        r->stats->last_sweep = sweep;
    if (rec > 0)
        r->stats->last_reconcile = rec;
    if (!r->st)
        return;
    pthread_mutex_lock(&r->st->mu);
    r->st->last_sweep = r->stats->last_sweep;
    r->st->last_reconcile = r->stats->last_reconcile;
    pthread_mutex_unlock(&r->st->mu);
}

/* ---- deferred indexes: a first full sync ---------------------------- */

/* Marks the indexes deferred when the store holds no scene yet: the scene
 * walk then writes records only and build_indexes() derives every index
 * once at the end (docs/SYNC.md).  OUT *on. */
static enum cm_status defer_fn(struct kv_txn *t, void *ctx)
{
    bool *on = ctx;
    uint64_t n = 0;
    enum cm_status st = kv_scene_count(t, &n);
    *on = false;
    if (st == CM_OK && n == 0 && (st = kv_index_defer(t, true)) == CM_OK)
        *on = true;
    return st;
}

static enum cm_status read_deferred(struct run *r, bool *on)
{
    struct kv_txn *t;
    enum cm_status st = kv_read_begin(r->s, &t);
    *on = false;
    if (st != CM_OK)
        return st;
    st = kv_index_deferred(t, on);
    kv_read_end(t);
    return st;
}

static void build_progress(uint64_t done, uint64_t total, void *ctx)
{
    progress(ctx, SYNC_SCENES, "index", done, total);
}

/* Builds every index of a deferred store (one write transaction, which
 * also clears the mark): readers switch from the old indexes to the whole
 * library at its commit. */
static enum cm_status build_indexes(struct run *r)
{
    double t0 = now_s(), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    uint64_t n = 0;
    enum cm_status st;

    r->t_type = t0;
    cm_info("sync", "building the indexes of the first sync");
    st = idx_rebuild_progress(r->s, build_progress, r, &n);
    progress_end(r, SYNC_SCENES);
    if (st != CM_OK) {
        errf(r, "building the indexes failed: %s", cm_status_str(st));
        return st;
    }
    cm_info("sync", "indexes built: %llu scenes in %.1f s (%.1f s of CPU)",
            (unsigned long long)n, now_s() - t0,
            clock_s(CLOCK_THREAD_CPUTIME_ID) - c0);
    if (r->stats)
        r->stats->indexed = n;
    return CM_OK;
}

/* Read-ahead (kv_random_access): an incremental pass reads a few pages per
 * changed object, scattered over the store, so from its first meta read
 * to the end of its updated_at walks a page fault reads only its page: on
 * a store not in the page cache, the default read-around (the device's
 * read-ahead window, 8 MiB on the bench VM) made a pass over 1,000 changed
 * scenes read 2.7 GB of a 3.7 GB store.  Scans (a full walk, the deferred
 * index build, the sweep, reconciliation) keep the normal read-ahead. */
static enum cm_status run_passes_in(struct run *r, enum sync_mode mode);

static enum cm_status run_passes(struct run *r, enum sync_mode mode)
{
    enum cm_status st;
    kv_random_access(r->s, mode != SYNC_FULL);
    st = run_passes_in(r, mode);
    kv_random_access(r->s, false);
    return st;
}

static enum cm_status run_passes_in(struct run *r, enum sync_mode mode)
{
    struct ckpt ck;
    char wms[SYNC_NTYPES][64];
    enum cm_status st;
    bool all_wm = true;
    int64_t now = (int64_t)time(NULL), last_sweep, last_rec;
    enum sync_extra sweep, rec;
    bool deferred = false;

    if ((st = read_ckpt(r, &ck)) != CM_OK ||
        (st = read_time(r, "sweep_at", &last_sweep)) != CM_OK ||
        (st = read_time(r, "reconcile_at", &last_rec)) != CM_OK)
        return st;
    set_extra_times(r, last_sweep, last_rec);
    for (int t = 0; t < SYNC_NTYPES; t++) {
        char key[32];
        bool found;
        snprintf(key, sizeof key, "wm/%s", sync_type_name((enum sync_type)t));
        if ((st = read_meta(r, key, wms[t], sizeof wms[t], &found)) != CM_OK)
            return st;
        if (!found || !sync_valid_time(wms[t], strlen(wms[t])))
            all_wm = false;
    }
    if (ck.valid) {
        kv_random_access(r->s, false);
        cm_info("sync", "resuming an interrupted full sync at %s",
                sync_type_name(ck.type));
        mode = SYNC_FULL;
    } else if (!all_wm) {
        mode = SYNC_FULL;
    }
    if (mode == SYNC_FULL)
        kv_random_access(r->s, false);
    r->mode = mode;
    if (r->st) {
        pthread_mutex_lock(&r->st->mu);
        r->st->mode = mode;
        pthread_mutex_unlock(&r->st->mu);
    }
    if (mode == SYNC_FULL) {
        /* a resumed sync started when its checkpoint says (unknown for a
         * checkpoint of an older peekd: then no sweep time is recorded) */
        r->full_t0 = ck.valid ? ck.t0 : now;
        sweep = SYNC_EXTRA_FULL;
        rec = SYNC_EXTRA_DONE;
    } else {
        sweep = decide("sweep", r->cfg->sweep, last_sweep,
                       r->cfg->sweep_interval, now);
        rec = decide("reconcile", r->cfg->reconcile, last_rec,
                     r->cfg->reconcile_interval, now);
    }
    /* Deferred indexes go on only while a full sync's scene walk resumes;
     * anything else needs them (rewrites use the reverse index). */
    if ((st = read_deferred(r, &deferred)) != CM_OK)
        return st;
    if (deferred &&
        !(mode == SYNC_FULL && ck.valid && ck.type == SYNC_SCENES)) {
        kv_random_access(r->s, false); /* it reads every record */
        if ((st = build_indexes(r)) != CM_OK)
            return st;
        deferred = false;
        if (mode != SYNC_FULL)
            kv_random_access(r->s, true);
    }
    /* rewrites left by a killed run */
    {
        struct page pg = {.type = SYNC_SCENES, .del_type = SYNC_SCENES};
        if ((st = commit_page(r, &pg)) != CM_OK)
            return st;
    }
    for (int t = 0; t < SYNC_NTYPES; t++) {
        if (mode == SYNC_FULL) {
            if (ck.valid && (enum sync_type)t < ck.type)
                continue;
            if (t == SYNC_SCENES && !deferred &&
                (st = kv_write_run(r->s, defer_fn, &deferred)) != CM_OK) {
                errf(r, "store write failed: %s", cm_status_str(st));
                return st;
            }
            st = walk_full(r, (enum sync_type)t, ck.valid ? &ck : NULL, true);
            if (st == CM_OK && t == SYNC_SCENES && deferred) {
                st = build_indexes(r);
                deferred = false;
            }
        } else {
            st = walk_incremental(r, (enum sync_type)t, wms[t]);
        }
        set_type_done(r, (enum sync_type)t, st);
        if (st != CM_OK)
            break;
    }
    kv_random_access(r->s, false); /* the sweep and reconciliation scan */
    if (st != CM_OK)
        return st;
    if (sweep == SYNC_EXTRA_DONE) {
        int64_t t0 = (int64_t)time(NULL);
        if ((st = activity_sweep(r, t0)) != CM_OK)
            return st;
        set_extra_times(r, t0, 0);
    }
    r->stats->sweep = sweep;
    if (rec != SYNC_EXTRA_DONE) {
        r->stats->reconcile = rec;
        return CM_OK;
    }
    {
        int64_t t0 = (int64_t)time(NULL);
        if ((st = reconcile(r, t0)) != CM_OK)
            return st;
        set_extra_times(r, mode == SYNC_FULL ? r->full_t0 : 0,
                        r->stats->reconcile == SYNC_EXTRA_DONE ? t0 : 0);
    }
    return CM_OK;
}

enum cm_status sync_run(struct kv_store *s, const struct cm_config *cfg,
                        enum sync_mode mode, struct sync_status *status,
                        struct sync_stats *stats, char *err, size_t errlen)
{
    struct sync_stats local_stats;
    struct sync_client_opts o;
    struct run r;
    double t0 = now_s();
    enum cm_status st;

    memset(&local_stats, 0, sizeof local_stats);
    if (!stats)
        stats = &local_stats;
    memset(stats, 0, sizeof *stats);
    memset(&r, 0, sizeof r);
    if (err && errlen)
        err[0] = '\0';
    r.s = s;
    r.cfg = cfg;
    r.st = status;
    r.stats = stats;
    r.err = err;
    r.errlen = errlen;
    r.page = (int)cfg->sync_page_size;
    if (r.page < 1 || r.page > CM_MAX_SYNC_PAGE)
        r.page = 1000;
    r.commit = cfg->sync_commit > 0 ? (uint64_t)cfg->sync_commit : 1;
    r.tty = status && status->tty;
    sync_arena_init(&r.arena, CM_MAX_GRAPHQL_RESPONSE);
    if (!cfg->stash_url) {
        errf(&r, "no Stash URL configured (--stash-url / STASH_URL)");
        return CM_INVALID;
    }
    memset(&o, 0, sizeof o);
    o.url = cfg->stash_url;
    o.api_key = cfg->stash_api_key;
    o.timeout_s = (long)cfg->sync_timeout;
    o.connect_timeout_s = cfg->sync_timeout < 10 ? (long)cfg->sync_timeout : 10;
    o.retries = (int)cfg->sync_retries;
    o.gzip = cfg->sync_gzip;
    o.stop = status ? &status->stop : NULL;
    if (status) {
        pthread_mutex_lock(&status->mu);
        status->running = true;
        status->mode = mode;
        status->started = (int64_t)time(NULL);
        for (int t = 0; t < SYNC_NTYPES; t++) {
            status->types[t].done = status->types[t].total = 0;
            status->types[t].phase[0] = '\0';
        }
        pthread_mutex_unlock(&status->mu);
    }
    st = sync_client_new(&o, &r.c);
    if (st != CM_OK)
        errf(&r, "cannot create the HTTP client: %s", cm_status_str(st));
    else if ((st = sync_ref_cache_new(&r.refs)) != CM_OK)
        errf(&r, "out of memory");
    else
        st = run_passes(&r, mode);
    if (st != CM_OK && err && errlen && !err[0])
        errf(&r, "%s", cm_status_str(st));
    if (r.c)
        stats->requests = sync_client_requests(r.c);
    stats->seconds = now_s() - t0;
    if (stats->unknown_refs)
        cm_warn("sync",
                "%llu refs to entities not in the store (they are "
                "kept with their id and no name)",
                (unsigned long long)stats->unknown_refs);
    if (status) {
        pthread_mutex_lock(&status->mu);
        status->running = false;
        status->finished = (int64_t)time(NULL);
        if (st == CM_OK) {
            status->last_success = status->finished;
            status->last_error[0] = '\0';
        } else {
            snprintf(status->last_error, sizeof status->last_error, "%s",
                     err && errlen ? err : cm_status_str(st));
        }
        pthread_mutex_unlock(&status->mu);
    }
    sync_client_free(r.c);
    sync_ref_cache_free(r.refs);
    sync_arena_fini(&r.arena);
    return st;
}

/* ---- status ------------------------------------------------------------ */

enum cm_status sync_status_init(struct sync_status *s)
{
    memset(s, 0, sizeof *s);
    if (pthread_mutex_init(&s->mu, NULL) != 0)
        return CM_INTERNAL;
    atomic_init(&s->stop, 0);
    for (int t = 0; t < SYNC_NTYPES; t++)
        s->types[t].eta_s = -1;
    return CM_OK;
}

void sync_status_fini(struct sync_status *s)
{
    if (s)
        pthread_mutex_destroy(&s->mu);
}

void sync_status_snapshot(struct sync_status *s, struct sync_status_view *v)
{
    pthread_mutex_lock(&s->mu);
    v->running = s->running;
    v->mode = s->mode;
    v->started = s->started;
    v->finished = s->finished;
    v->last_success = s->last_success;
    v->last_sweep = s->last_sweep;
    v->last_reconcile = s->last_reconcile;
    memcpy(v->last_error, s->last_error, sizeof v->last_error);
    memcpy(v->types, s->types, sizeof v->types);
    pthread_mutex_unlock(&s->mu);
}

const char *sync_extra_name(enum sync_extra e)
{
    switch (e) {
    case SYNC_EXTRA_NONE: return "not run";
    case SYNC_EXTRA_DONE: return "done";
    case SYNC_EXTRA_NOT_DUE: return "not due";
    case SYNC_EXTRA_OFF: return "off";
    case SYNC_EXTRA_FULL: return "covered by the full sync";
    case SYNC_EXTRA_GUARDED: return "deletions skipped by the guard";
    }
    return "?";
}
