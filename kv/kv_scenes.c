/*
 * kv_scenes.c - scenes and entities in the store: docid allocation
 * (a never-reused counter in meta), the idmap/docmap pair, the reverse
 * index of entity -> scenes maintained from the refs a record carries,
 * and entity records.
 *
 * Key layouts (docs/STORE.md):
 *   scenes   docid (u32, native, MDB_INTEGERKEY) -> scene record
 *   docmap   docid (u32, native, MDB_INTEGERKEY) -> stash id (u64 LE)
 *   idmap    'S' | stash id (u64 BE)              -> docid (u32 LE)
 *   reverse  type | entity id (u64 BE) | docid (u32 BE) -> ""
 *   entities type | id (u64 BE)                   -> entity record
 */
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "kv/kv_int.h"

#define IDMAP_KEY 9
#define REV_KEY   13
#define ENT_KEY   9

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t rd_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t rd_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void idmap_key(uint8_t k[IDMAP_KEY], uint64_t stash_id)
{
    k[0] = 'S';
    be64(k + 1, stash_id);
}

static void rev_key(uint8_t k[REV_KEY], uint8_t type, uint64_t id,
                    uint32_t docid)
{
    k[0] = type;
    be64(k + 1, id);
    be32(k + 9, docid);
}

/* ---- Id maps --------------------------------------------------------- */

enum cm_status kv_docid_of(struct kv_txn *t, uint64_t stash_id, uint32_t *docid)
{
    uint8_t k[IDMAP_KEY];
    const void *v;
    size_t n;
    enum cm_status st;

    if (!docid)
        return CM_INVALID;
    *docid = 0;
    if (t && t->write && t->idq && t->idq_id == stash_id) {
        *docid = t->idq_docid;
        return t->idq > 0 ? CM_OK : CM_NOTFOUND;
    }
    idmap_key(k, stash_id);
    st = kv_get(t, KV_DB_IDMAP, k, sizeof k, &v, &n);
    if (st == CM_OK && n != 4)
        return CM_CORRUPT;
    if (st == CM_OK)
        *docid = rd_le32(v);
    if (t && t->write && (st == CM_OK || st == CM_NOTFOUND)) {
        t->idq_id = stash_id;
        t->idq_docid = *docid;
        t->idq = st == CM_OK ? 1 : -1;
    }
    return st;
}

enum cm_status kv_stash_id_of(struct kv_txn *t, uint32_t docid,
                              uint64_t *stash_id)
{
    const void *v;
    size_t n;
    enum cm_status st;
    uint64_t x = 0;

    if (!stash_id)
        return CM_INVALID;
    *stash_id = 0;
    st = kv_get(t, KV_DB_DOCMAP, &docid, sizeof docid, &v, &n);
    if (st != CM_OK)
        return st;
    if (n != 8)
        return CM_CORRUPT;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)((const uint8_t *)v)[i] << (8 * i);
    *stash_id = x;
    return CM_OK;
}

/* Allocates the next docid and records the id maps for stash_id.  The
 * next docid is read from meta once per write txn and written back when
 * it commits (kv_pending_flush): a first sync allocates one per scene. */
static enum cm_status alloc_docid(struct kv_txn *t, uint64_t stash_id,
                                  uint32_t *docid)
{
    uint8_t k[IDMAP_KEY], v4[4], v8[8];
    uint32_t d;
    enum cm_status st;

    if (!t->next_docid) {
        st = kv_meta_get_u64(t, KV_META_NEXT_DOCID, &t->next_docid);
        if (st == CM_NOTFOUND) {
            t->next_docid = 1;
            st = CM_OK;
        }
        if (st != CM_OK) {
            t->next_docid = 0;
            return st;
        }
    }
    if (t->next_docid == 0 || t->next_docid > UINT32_MAX) {
        cm_error("kv", "docid space exhausted (next %llu)",
                 (unsigned long long)t->next_docid);
        return CM_TOOBIG;
    }
    d = (uint32_t)t->next_docid;
    idmap_key(k, stash_id);
    le32(v4, d);
    st = kv_put_tail(t, KV_DB_IDMAP, k, sizeof k, v4, sizeof v4);
    if (st != CM_OK)
        return st;
    for (int i = 0; i < 8; i++)
        v8[i] = (uint8_t)(stash_id >> (8 * i));
    st = kv_put_tail(t, KV_DB_DOCMAP, &d, sizeof d, v8, sizeof v8);
    if (st != CM_OK)
        return st;
    t->next_docid++;
    t->next_dirty = 1;
    t->idq_id = stash_id;
    t->idq_docid = d;
    t->idq = 1;
    *docid = d;
    return CM_OK;
}

enum cm_status kv_pending_flush(struct kv_txn *t)
{
    enum cm_status st = kv_rev_flush(t);
    if (st == CM_OK && t->next_dirty) {
        st = kv_meta_put_u64(t, KV_META_NEXT_DOCID, t->next_docid);
        if (st == CM_OK)
            t->next_dirty = 0;
    }
    return st;
}

/* ---- Scene records --------------------------------------------------- */

enum cm_status kv_scene_get_raw(struct kv_txn *t, uint32_t docid,
                                const void **rec, size_t *len)
{
    return kv_get(t, KV_DB_SCENES, &docid, sizeof docid, rec, len);
}

static void warm_scenes_fn(struct kv_txn *t, size_t lo, size_t hi, void *ctx)
{
    const uint64_t *ids = ctx;
    for (size_t i = lo; i < hi; i++) {
        uint32_t docid;
        const void *rec;
        size_t len;
        if (kv_docid_of(t, ids[i], &docid) == CM_OK &&
            kv_scene_get_raw(t, docid, &rec, &len) == CM_OK)
            kv_prefetch(rec, len);
    }
}

void kv_warm_scenes(struct kv_store *s, const uint64_t *stash_ids, size_t n)
{
    kv_warm_run(s, n, warm_scenes_fn, (void *)stash_ids);
}

enum cm_status kv_scene_get(struct kv_txn *t, uint32_t docid,
                            struct kv_scene *out)
{
    const void *rec;
    size_t len;
    enum cm_status st;

    if (!out)
        return CM_INVALID;
    memset(out, 0, sizeof *out);
    st = kv_scene_get_raw(t, docid, &rec, &len);
    if (st != CM_OK)
        return st;
    st = kv_scene_decode(rec, len, out);
    if (st == CM_CORRUPT || st == CM_VERSION)
        cm_error("kv", "scene record of docid %u: %s", docid,
                 cm_status_str(st));
    return st;
}

enum cm_status kv_scene_count(struct kv_txn *t, uint64_t *n)
{
    MDB_stat ms;
    int rc;

    if (!n)
        return CM_INVALID;
    *n = 0;
    if (!t || !t->txn || !t->active)
        return CM_INVALID;
    rc = mdb_stat(t->txn, t->s->dbi[KV_DB_SCENES], &ms);
    if (rc != 0)
        return kv_from_mdb(rc, "scene count");
    *n = ms.ms_entries;
    return CM_OK;
}

/* ---- Reverse index --------------------------------------------------- */

struct eref {
    uint64_t id;
    uint8_t type;
};

static int eref_cmp(const void *a, const void *b)
{
    const struct eref *x = a, *y = b;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

struct erefs {
    struct eref *v;
    size_t n;
    struct eref small[32];
};

static void erefs_fini(struct erefs *r)
{
    if (r->v != r->small)
        cm_free(r->v);
    r->v = NULL;
    r->n = 0;
}

/* The distinct (type, id) pairs a scene carries, sorted.  Id 0 means
 * "none" (e.g. no studio) and is skipped. */
static enum cm_status erefs_of(const struct kv_scene *sc, struct erefs *r)
{
    const struct kv_ref *arr[] = {sc->performers, sc->tags, sc->groups,
                                  sc->galleries};
    const uint32_t cnt[] = {sc->n_performers, sc->n_tags, sc->n_groups,
                            sc->n_galleries};
    const uint8_t type[] = {KV_PERFORMER, KV_TAG, KV_GROUP, KV_GALLERY};
    size_t total = 1, k = 0;

    r->v = r->small;
    r->n = 0;
    for (int i = 0; i < 4; i++) {
        if (cnt[i] && !arr[i])
            return CM_INVALID;
        total += cnt[i];
    }
    if (total > sizeof r->small / sizeof r->small[0]) {
        r->v = cm_malloc(total * sizeof *r->v);
        if (!r->v)
            return CM_NOMEM;
    }
    if (sc->studio.id)
        r->v[k++] = (struct eref){sc->studio.id, KV_STUDIO};
    for (int i = 0; i < 4; i++)
        for (uint32_t j = 0; j < cnt[i]; j++)
            if (arr[i][j].id)
                r->v[k++] = (struct eref){arr[i][j].id, type[i]};
    if (k <= 32) { /* a scene's few refs: no qsort call per pair */
        for (size_t i = 1; i < k; i++) {
            struct eref x = r->v[i];
            size_t j = i;
            while (j > 0 && eref_cmp(&r->v[j - 1], &x) > 0) {
                r->v[j] = r->v[j - 1];
                j--;
            }
            r->v[j] = x;
        }
    } else {
        qsort(r->v, k, sizeof *r->v, eref_cmp);
    }
    r->n = 0;
    for (size_t i = 0; i < k; i++)
        if (r->n == 0 || eref_cmp(&r->v[r->n - 1], &r->v[i]) != 0)
            r->v[r->n++] = r->v[i];
    return CM_OK;
}

/* A reverse entry, queued by a write txn or collected by a rebuild. */
struct kv_revent {
    uint64_t id;
    uint32_t docid;
    uint8_t type;
};

/* Byte b of the entry's key type ‖ id BE ‖ docid BE (13 bytes). */
static uint8_t revent_byte(const struct kv_revent *e, int b)
{
    if (b == 0)
        return e->type;
    if (b < 9)
        return (uint8_t)(e->id >> (8 * (8 - b)));
    return (uint8_t)(e->docid >> (8 * (12 - b)));
}

/* Sorts v[0..n) in key order with a (stable) LSD radix sort over the
 * first nb key bytes: 13 for the whole key, 9 (type and id) when v is
 * already in docid order (a rebuild adds scenes in docid order, and a
 * stable sort keeps that order within each entity).  Bytes with a single
 * value are skipped (ids and docids rarely use more than three), so a
 * sort is a few passes. */
static enum cm_status revent_sort(struct kv_revent *v, size_t n, int nb)
{
    enum { NB = 13 };
    size_t(*cnt)[256];
    struct kv_revent *tmp, *src = v, *dst;

    if (n < 2)
        return CM_OK;
    cnt = cm_calloc((size_t)NB, sizeof *cnt);
    tmp = cm_malloc_big(n * sizeof *tmp);
    if (!cnt || !tmp) {
        cm_free(cnt);
        cm_free(tmp);
        return CM_NOMEM;
    }
    dst = tmp;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < nb; b++)
            cnt[b][revent_byte(&v[i], b)]++;
    for (int b = nb - 1; b >= 0; b--) {
        size_t off = 0;
        if (cnt[b][revent_byte(&v[0], b)] == n)
            continue;
        for (int c = 0; c < 256; c++) {
            size_t k = cnt[b][c];
            cnt[b][c] = off;
            off += k;
        }
        for (size_t i = 0; i < n; i++)
            dst[cnt[b][revent_byte(&src[i], b)]++] = src[i];
        {
            struct kv_revent *x = src;
            src = dst;
            dst = x;
        }
    }
    if (src != v)
        memcpy(v, src, n * sizeof *v);
    cm_free(tmp);
    cm_free(cnt);
    return CM_OK;
}

enum cm_status kv_rev_flush(struct kv_txn *t)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    uint8_t k[REV_KEY];
    size_t n = t->rev_n;
    int rc;

    enum cm_status st;

    if (n == 0)
        return CM_OK;
    if ((st = revent_sort(t->rev_put, n, 13)) != CM_OK)
        return st;
    t->rev_n = 0;
    rc = mdb_cursor_open(t->txn, t->s->dbi[KV_DB_REVERSE], &cur);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct kv_revent *p = &t->rev_put[i];
        rev_key(k, p->type, p->id, p->docid);
        key.mv_size = sizeof k;
        key.mv_data = k;
        val.mv_size = 0;
        val.mv_data = (void *)"";
        rc = mdb_cursor_put(cur, &key, &val, 0);
    }
    if (cur)
        mdb_cursor_close(cur);
    return rc ? kv_txn_from_mdb(t, rc, "reverse put") : CM_OK;
}

/* Queues the reverse entry (type, id, docid) in t (written by
 * kv_rev_flush, at the latest when t commits). */
static enum cm_status rev_queue(struct kv_txn *t, uint8_t type, uint64_t id,
                                uint32_t docid)
{
    enum cm_status st;
    if (t->rev_n == t->rev_cap) {
        size_t nc = t->rev_cap ? t->rev_cap * 2 : 4096;
        struct kv_revent *p;
        if (t->rev_cap >= CM_MAX_REV_QUEUE) { /* full: write it out */
            if ((st = kv_rev_flush(t)) != CM_OK)
                return st;
        } else {
            if (!(p = cm_realloc(t->rev_put, nc * sizeof *p)))
                return CM_NOMEM;
            t->rev_put = p;
            t->rev_cap = nc;
        }
    }
    t->rev_put[t->rev_n++] = (struct kv_revent){id, docid, type};
    return CM_OK;
}

/* Applies old -> new to the reverse entries of docid: deletes what only
 * old has, queues what only new has. */
static enum cm_status rev_diff(struct kv_txn *t, uint32_t docid,
                               const struct erefs *old, const struct erefs *cur)
{
    size_t i = 0, j = 0;
    uint8_t k[REV_KEY];
    enum cm_status st = CM_OK;

    while (st == CM_OK && (i < old->n || j < cur->n)) {
        int c;
        if (i == old->n)
            c = 1;
        else if (j == cur->n)
            c = -1;
        else
            c = eref_cmp(&old->v[i], &cur->v[j]);
        if (c < 0) {
            rev_key(k, old->v[i].type, old->v[i].id, docid);
            st = kv_rev_flush(t); /* the entry may be queued */
            if (st == CM_OK)
                st = kv_del(t, KV_DB_REVERSE, k, sizeof k);
            if (st == CM_NOTFOUND)
                st = CM_OK;
            i++;
        } else if (c > 0) {
            st = rev_queue(t, cur->v[j].type, cur->v[j].id, docid);
            j++;
        } else {
            i++;
            j++;
        }
    }
    return st;
}

/* The refs of the stored version of docid (when old is NULL). */
static enum cm_status stored_erefs(struct kv_txn *t, uint32_t docid,
                                   const struct kv_scene *old, struct erefs *r)
{
    struct kv_scene prev;
    enum cm_status st;

    r->v = r->small;
    r->n = 0;
    if (old)
        return erefs_of(old, r);
    st = kv_scene_get(t, docid, &prev);
    if (st == CM_NOTFOUND)
        return CM_OK;
    if (st == CM_CORRUPT || st == CM_VERSION) {
        cm_warn("kv",
                "docid %u: unreadable previous record; its reverse "
                "entries cannot be diffed",
                docid);
        return CM_OK;
    }
    if (st == CM_OK)
        st = erefs_of(&prev, r);
    kv_scene_fini(&prev);
    return st;
}

static enum cm_status store_scene(struct kv_txn *t, const struct kv_scene *sc,
                                  const struct kv_scene *old, uint32_t *docid,
                                  bool *created, bool reverse)
{
    struct erefs before = {0}, after = {0};
    uint32_t d = 0;
    bool made = false;
    enum cm_status st;

    if (docid)
        *docid = 0;
    if (created)
        *created = false;
    if (!t || !t->write || !sc || sc->id == 0)
        return CM_INVALID;
    before.v = before.small;
    after.v = after.small;
    cm_buf_reset(&t->enc);
    st = kv_scene_encode(sc, &t->enc);
    if (st == CM_OK && reverse)
        st = erefs_of(sc, &after);
    if (st != CM_OK)
        goto out;
    st = kv_docid_of(t, sc->id, &d);
    if (st == CM_NOTFOUND) {
        st = alloc_docid(t, sc->id, &d);
        made = true;
    } else if (st == CM_OK && reverse) {
        /* Collected before the put: a put invalidates borrowed data. */
        st = stored_erefs(t, d, old, &before);
    }
    if (st != CM_OK)
        goto out;
    if (made) /* a new docid: past every record */
        st =
            kv_put_tail(t, KV_DB_SCENES, &d, sizeof d, t->enc.data, t->enc.len);
    else
        st = kv_put(t, KV_DB_SCENES, &d, sizeof d, t->enc.data, t->enc.len);
    if (st == CM_OK && reverse)
        st = rev_diff(t, d, &before, &after);
    if (st == CM_OK) {
        if (docid)
            *docid = d;
        if (created)
            *created = made;
    }
out:
    erefs_fini(&before);
    erefs_fini(&after);
    return st;
}

enum cm_status kv_scene_store(struct kv_txn *t, const struct kv_scene *sc,
                              const struct kv_scene *old, uint32_t *docid,
                              bool *created)
{
    return store_scene(t, sc, old, docid, created, true);
}

enum cm_status kv_scene_store_record(struct kv_txn *t,
                                     const struct kv_scene *sc, uint32_t *docid)
{
    return store_scene(t, sc, NULL, docid, NULL, false);
}

enum cm_status kv_scene_remove(struct kv_txn *t, uint32_t docid,
                               const struct kv_scene *old)
{
    struct erefs before = {0}, none = {0};
    uint64_t sid;
    uint8_t k[IDMAP_KEY];
    enum cm_status st;

    if (!t || !t->write)
        return CM_INVALID;
    before.v = before.small;
    none.v = none.small;
    st = kv_stash_id_of(t, docid, &sid);
    if (st == CM_OK)
        st = stored_erefs(t, docid, old, &before);
    if (st == CM_OK)
        st = kv_del(t, KV_DB_SCENES, &docid, sizeof docid);
    if (st == CM_NOTFOUND)
        st = CM_OK; /* id maps without a record: still clean them */
    if (st == CM_OK)
        st = kv_del(t, KV_DB_DOCMAP, &docid, sizeof docid);
    if (st == CM_OK) {
        idmap_key(k, sid);
        t->idq = 0;
        st = kv_del(t, KV_DB_IDMAP, k, sizeof k);
        if (st == CM_NOTFOUND)
            st = CM_OK;
    }
    if (st == CM_OK)
        st = rev_diff(t, docid, &before, &none);
    erefs_fini(&before);
    return st;
}

enum cm_status kv_scenes_with(struct kv_txn *t, uint8_t type, uint64_t id,
                              int (*fn)(uint32_t docid, void *ctx), void *ctx)
{
    MDB_cursor *cur = NULL;
    uint8_t k[REV_KEY];
    MDB_val key, val;
    int rc;
    enum cm_status st = CM_OK;

    if (!t || !t->txn || !t->active || !fn)
        return CM_INVALID;
    if (t->write && (st = kv_rev_flush(t)) != CM_OK)
        return st;
    rev_key(k, type, id, 0);
    rc = mdb_cursor_open(t->txn, t->s->dbi[KV_DB_REVERSE], &cur);
    if (rc != 0)
        return kv_from_mdb(rc, "reverse cursor");
    key.mv_data = k;
    key.mv_size = sizeof k;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (rc == 0) {
        const uint8_t *p = key.mv_data;
        uint32_t d;
        if (key.mv_size != REV_KEY || p[0] != type || rd_be64(p + 1) != id)
            break;
        d = (uint32_t)p[9] << 24 | (uint32_t)p[10] << 16 |
            (uint32_t)p[11] << 8 | p[12];
        if (fn(d, ctx))
            break;
        rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "reverse walk");
    mdb_cursor_close(cur);
    return st;
}

/* ---- Entities -------------------------------------------------------- */

static void ent_key(uint8_t k[ENT_KEY], uint8_t type, uint64_t id)
{
    k[0] = type;
    be64(k + 1, id);
}

enum cm_status kv_entity_get(struct kv_txn *t, uint8_t type, uint64_t id,
                             struct kv_entity *out)
{
    uint8_t k[ENT_KEY];
    const void *v;
    size_t n;
    enum cm_status st;

    if (!out)
        return CM_INVALID;
    memset(out, 0, sizeof *out);
    ent_key(k, type, id);
    st = kv_get(t, KV_DB_ENTITIES, k, sizeof k, &v, &n);
    if (st != CM_OK)
        return st;
    st = kv_entity_decode(v, n, out);
    if (st == CM_OK && (out->type != type || out->id != id)) {
        kv_entity_fini(out);
        st = CM_CORRUPT;
    }
    if (st == CM_CORRUPT || st == CM_VERSION)
        cm_error("kv", "entity %c%llu: %s", type, (unsigned long long)id,
                 cm_status_str(st));
    return st;
}

enum cm_status kv_entity_put(struct kv_txn *t, const struct kv_entity *e)
{
    uint8_t k[ENT_KEY];
    enum cm_status st;

    if (!t || !t->write || !e)
        return CM_INVALID;
    cm_buf_reset(&t->enc);
    st = kv_entity_encode(e, &t->enc);
    if (st != CM_OK)
        return st;
    ent_key(k, e->type, e->id);
    return kv_put(t, KV_DB_ENTITIES, k, sizeof k, t->enc.data, t->enc.len);
}

enum cm_status kv_entity_del(struct kv_txn *t, uint8_t type, uint64_t id)
{
    uint8_t k[ENT_KEY];
    ent_key(k, type, id);
    return kv_del(t, KV_DB_ENTITIES, k, sizeof k);
}

/* ---- Rebuilding the reverse index ------------------------------------ */

/* Appends the scene's refs as they are: no per-scene sort; a ref the
 * scene carries twice is skipped where the sorted entries are compared
 * (kv_revbuild_check), where the (stable) sort has put the two next to
 * each other. */
enum cm_status kv_revbuild_add(struct kv_revbuild *rb, uint32_t docid,
                               const struct kv_scene *sc)
{
    const struct kv_ref *arr[] = {sc ? sc->performers : NULL,
                                  sc ? sc->tags : NULL, sc ? sc->groups : NULL,
                                  sc ? sc->galleries : NULL};
    const uint8_t type[] = {KV_PERFORMER, KV_TAG, KV_GROUP, KV_GALLERY};
    uint32_t cnt[4];
    size_t total = 1;

    if (!rb || !sc)
        return CM_INVALID;
    if (docid <= rb->last)
        return CM_INVALID; /* each docid once (> 0), in increasing order */
    cnt[0] = sc->n_performers;
    cnt[1] = sc->n_tags;
    cnt[2] = sc->n_groups;
    cnt[3] = sc->n_galleries;
    for (int i = 0; i < 4; i++) {
        if (cnt[i] && !arr[i])
            return CM_INVALID;
        total += cnt[i];
    }
    if (rb->n + total > rb->cap) {
        size_t cap = rb->cap ? rb->cap : 4096;
        struct kv_revent *v;
        while (cap < rb->n + total)
            cap *= 2;
        v = cm_realloc_big(rb->v, cap * sizeof *v);
        if (!v)
            return CM_NOMEM;
        rb->v = v;
        rb->cap = cap;
    }
    if (sc->studio.id)
        rb->v[rb->n++] = (struct kv_revent){sc->studio.id, docid, KV_STUDIO};
    for (int i = 0; i < 4; i++)
        for (uint32_t j = 0; j < cnt[i]; j++)
            if (arr[i][j].id)
                rb->v[rb->n++] =
                    (struct kv_revent){arr[i][j].id, docid, type[i]};
    rb->last = docid;
    return CM_OK;
}

/* Whether v[i] repeats v[i - 1] (a scene that carries a ref twice). */
static bool revent_again(const struct kv_revent *v, size_t i)
{
    return i > 0 && v[i].id == v[i - 1].id && v[i].type == v[i - 1].type &&
           v[i].docid == v[i - 1].docid;
}

struct kv_revapp {
    struct kv_txn *t;
    MDB_cursor *cur;
    uint8_t type; /* of the last put */
    uint64_t id;
};

enum cm_status kv_revapp_begin(struct kv_txn *t, struct kv_revapp **out)
{
    struct kv_revapp *a;
    enum cm_status st;
    int rc;

    *out = NULL;
    if (!t || !t->write)
        return CM_INVALID;
    if ((st = kv_rev_flush(t)) != CM_OK) /* nothing queued survives */
        return st;
    rc = mdb_drop(t->txn, t->s->dbi[KV_DB_REVERSE], 0);
    if (rc)
        return kv_txn_from_mdb(t, rc, "reverse drop");
    a = cm_calloc(1, sizeof *a);
    if (!a)
        return CM_NOMEM;
    a->t = t;
    rc = mdb_cursor_open(t->txn, t->s->dbi[KV_DB_REVERSE], &a->cur);
    if (rc) {
        cm_free(a);
        return kv_txn_from_mdb(t, rc, "reverse cursor");
    }
    *out = a;
    return CM_OK;
}

enum cm_status kv_revapp_put(struct kv_revapp *a, uint8_t type, uint64_t id,
                             const uint32_t *docids, size_t n)
{
    uint8_t k[REV_KEY];
    MDB_val key = {sizeof k, k}, val = {0, (void *)""};
    int rc = 0;

    if (!a || (n && !docids))
        return CM_INVALID;
    if (!id || !n)
        return CM_OK;
    if (type < a->type || (type == a->type && id <= a->id))
        return CM_INVALID; /* not in key order */
    a->type = type;
    a->id = id;
    rev_key(k, type, id, 0);
    for (size_t i = 0; i < n && !rc; i++) {
        be32(k + 9, docids[i]);
        rc = mdb_cursor_put(a->cur, &key, &val, MDB_APPEND);
    }
    return rc ? kv_txn_from_mdb(a->t, rc, "reverse put") : CM_OK;
}

void kv_revapp_end(struct kv_revapp *a)
{
    if (!a)
        return;
    mdb_cursor_close(a->cur);
    cm_free(a);
}

void kv_revbuild_fini(struct kv_revbuild *rb)
{
    if (!rb)
        return;
    cm_free(rb->v);
    memset(rb, 0, sizeof *rb);
}

enum cm_status kv_revbuild_check(struct kv_txn *t, struct kv_revbuild *rb,
                                 uint64_t *missing, uint64_t *extra)
{
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    size_t i = 0;
    enum cm_status st;
    int rc;

    if (!t || !t->txn || !rb || !missing || !extra)
        return CM_INVALID;
    *missing = *extra = 0;
    if (t->write && (st = kv_rev_flush(t)) != CM_OK)
        return st;
    if ((st = revent_sort(rb->v, rb->n, 9)) != CM_OK)
        return st;
    rc = mdb_cursor_open(t->txn, t->s->dbi[KV_DB_REVERSE], &cur);
    if (rc)
        return kv_from_mdb(rc, "reverse cursor");
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        int c = 1;
        while (i < rb->n) {
            uint8_t k[REV_KEY];
            if (revent_again(rb->v, i)) {
                i++;
                continue;
            }
            rev_key(k, rb->v[i].type, rb->v[i].id, rb->v[i].docid);
            c = key.mv_size == REV_KEY ? memcmp(k, key.mv_data, REV_KEY) : -1;
            if (c >= 0)
                break;
            (*missing)++; /* expected before the stored key */
            i++;
        }
        if (c == 0)
            i++;
        else
            (*extra)++;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return kv_from_mdb(rc, "reverse walk");
    for (; i < rb->n; i++)
        *missing += !revent_again(rb->v, i);
    return CM_OK;
}
