/*
 * idx_rebuild.c - maintenance: idx_rebuild() recomputes every index
 * database from the scene records and entities in one write transaction;
 * idx_verify() recomputes the expected postings, text bitmaps, children
 * lists, dictionary references and column values in memory (read-only, so
 * `peekd check` runs on a live store) and compares them with what is
 * stored, plus the idmap/docmap round trip of every scene.
 *
 * Dictionary positions are gap numbers, so an incrementally maintained
 * store and a rebuilt one hold different positions for the same order;
 * verify therefore checks the invariants (every referenced key exists with
 * the right refcount, positions increase with the keys, each column value
 * is the position of the scene's key), not byte equality.
 */
#include <lmdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "index/idx_int.h"

static const enum kv_db index_dbs[] = {KV_DB_POSTINGS, KV_DB_SORTS,
                                       KV_DB_COLUMNS, KV_DB_TEXT};

static enum cm_status walk_open(struct kv_txn *t, enum kv_db db,
                                MDB_cursor **cur)
{
    int rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), db), cur);
    return rc ? kv_from_mdb(rc, "index walk") : CM_OK;
}

/* Children lists from every tag, studio and group record. */
static enum cm_status rebuild_children(struct idx_writer *w)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    enum cm_status st = walk_open(w->t, KV_DB_ENTITIES, &cur);
    int rc;

    if (st != CM_OK)
        return st;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && st == CM_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct kv_entity e;
        memset(&e, 0, sizeof e);
        st = kv_entity_decode(v.mv_data, v.mv_size, &e);
        if (st == CM_OK &&
            (e.type == KV_TAG || e.type == KV_STUDIO || e.type == KV_GROUP)) {
            /* copy: the puts below may invalidate v */
            uint64_t *ps = NULL, id = e.id;
            uint8_t type = e.type;
            uint32_t n = e.n_parents;
            if (n) {
                ps = cm_malloc((size_t)n * 8);
                if (!ps)
                    st = CM_NOMEM;
                else
                    memcpy(ps, e.parents, (size_t)n * 8);
            }
            kv_entity_fini(&e);
            for (uint32_t i = 0; i < n && st == CM_OK; i++)
                st = idx_children_edit(w, type, ps[i], id, true);
            cm_free(ps);
            if (st == CM_OK && n) {
                /* re-position after writes */
                uint8_t key[9];
                MDB_val kk = {sizeof key, key};
                key[0] = type;
                idx_be64(key + 1, id);
                rc = mdb_cursor_get(cur, &kk, &v, MDB_SET);
                if (rc) {
                    st = kv_from_mdb(rc, "entity reposition");
                    break;
                }
                k = kk;
            }
        }
        kv_entity_fini(&e);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "entity walk");
    mdb_cursor_close(cur);
    return st;
}

struct rb_ctx {
    uint64_t n;
    idx_progress_fn fn;
    void *fctx;
};

static enum cm_status rebuild_txn(struct kv_txn *t, void *vctx)
{
    struct rb_ctx *ctx = vctx;
    struct idx_writer w;
    struct idx_bulk *b = NULL;
    struct cm_buf arena; /* the decoded scenes' arrays, reused */
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    enum cm_status st;
    int rc;

    uint64_t total = 0;

    ctx->n = 0;
    if (ctx->fn) {
        st = kv_scene_count(t, &total);
        if (st != CM_OK)
            return st;
        ctx->fn(0, total, ctx->fctx);
    }
    for (size_t i = 0; i < sizeof index_dbs / sizeof *index_dbs; i++) {
        rc = mdb_drop(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), index_dbs[i]), 0);
        if (rc)
            return kv_txn_from_mdb(t, rc, "index drop");
    }
    /* Bulk: every key of the (empty) index dbs is written once, in key
     * order, with MDB_APPEND; the children lists come after.  The reverse
     * index (entity -> scenes) is derived from the records too (a
     * deferred first sync does not write it): idx_bulk_write appends it
     * with the postings of the same entities. */
    cm_buf_init(&arena, CM_MAX_RECORD_ARENA);
    st = idx_bulk_new(t, &b);
    if (st == CM_OK)
        st = walk_open(t, KV_DB_SCENES, &cur);
    /* Scene records are not written here, so the cursor stays valid. */
    for (rc = st == CM_OK ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : 0;
         st == CM_OK && rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct kv_scene sc;
        uint32_t docid;
        if (k.mv_size != 4) {
            st = CM_CORRUPT;
            break;
        }
        memcpy(&docid, k.mv_data, 4);
        st = kv_scene_decode_in(v.mv_data, v.mv_size, &arena, &sc);
        if (st == CM_OK)
            st = idx_bulk_add(b, docid, &sc);
        ctx->n++;
        if (ctx->fn && ctx->n % IDX_PROGRESS_STEP == 0 && ctx->n < total)
            ctx->fn(ctx->n, total, ctx->fctx);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "scene walk");
    mdb_cursor_close(cur);
    cm_buf_fini(&arena);
    if (st == CM_OK)
        st = idx_bulk_write(b);
    idx_bulk_free(b);
    if (st == CM_OK) {
        st = idx_writer_init(&w, t);
        if (st == CM_OK)
            st = rebuild_children(&w);
        idx_writer_fini(&w);
    }
    if (st == CM_OK)
        st = kv_index_version_set(t);
    if (st == CM_OK)
        st = kv_index_defer(t, false);
    /* Even with no scene (nothing flushed): every index db was dropped, so
     * nothing cached from before may be used. */
    if (st == CM_OK)
        st = idx_gen_bump(t);
    if (st == CM_OK && ctx->fn)
        ctx->fn(ctx->n, ctx->n > total ? ctx->n : total, ctx->fctx);
    return st;
}

enum cm_status idx_rebuild_progress(struct kv_store *s, idx_progress_fn fn,
                                    void *fctx, uint64_t *scenes)
{
    struct rb_ctx ctx = {0, fn, fctx};
    enum cm_status st;
    if (scenes)
        *scenes = 0;
    if (!s)
        return CM_INVALID;
    st = kv_write_run(s, rebuild_txn, &ctx);
    if (st == CM_OK && scenes)
        *scenes = ctx.n;
    return st;
}

enum cm_status idx_rebuild(struct kv_store *s, uint64_t *scenes)
{
    return idx_rebuild_progress(s, NULL, NULL, scenes);
}

/* ---- Verify ------------------------------------------------------------- */

struct vent {
    struct vent *next;
    roaring_bitmap_t *bm; /* postings/text; NULL for dictionary keys */
    uint32_t refs;        /* dictionary references */
    bool seen;
    uint16_t klen;
    uint8_t db;
    uint8_t key[];
};

struct verify {
    struct kv_txn *t;
    struct idx_map m;
    struct vent *all_list; /* not linked: free via map chains */
    struct cm_buf *rep;
    unsigned problems;
};

static void problem(struct verify *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(struct verify *v, const char *fmt, ...)
{
    va_list ap;
    v->problems++;
    if (v->problems > 20 || !v->rep)
        return;
    va_start(ap, fmt);
    if (cm_buf_vprintf(v->rep, fmt, ap) == CM_OK &&
        cm_buf_putc(v->rep, '\n') != CM_OK)
        cm_buf_truncate(v->rep, v->rep->len);
    va_end(ap);
}

static enum cm_status vfind(struct verify *v, uint8_t db, const uint8_t *k,
                            size_t n, bool create, struct vent **out)
{
    uint64_t h = XXH64(k, n, db) | 1;
    void **slot = idx_map_find(&v->m, h);
    struct vent *e = slot ? *slot : NULL;
    enum cm_status st;

    while (e && !(e->db == db && e->klen == n && memcmp(e->key, k, n) == 0))
        e = e->next;
    *out = e;
    if (e || !create)
        return CM_OK;
    e = cm_calloc(1, sizeof *e + n);
    if (!e)
        return CM_NOMEM;
    e->db = db;
    e->klen = (uint16_t)n;
    memcpy(e->key, k, n);
    e->next = slot ? *slot : NULL;
    st = idx_map_put(&v->m, h, e);
    if (st != CM_OK) {
        cm_free(e);
        return st;
    }
    *out = e;
    return CM_OK;
}

static void vfree(struct verify *v)
{
    for (size_t i = 0; i < v->m.cap; i++) {
        struct vent *e = v->m.keys[i] ? v->m.vals[i] : NULL;
        while (e) {
            struct vent *n = e->next;
            idx_bm_free(e->bm);
            cm_free(e);
            e = n;
        }
    }
    idx_map_fini(&v->m);
}

static enum cm_status expect_scene(struct verify *v, struct idx_ecache *ec,
                                   struct idx_entries *e, uint32_t docid,
                                   const struct kv_scene *sc)
{
    enum cm_status st = idx_derive(ec, sc, e);
    struct vent *x;

    for (size_t i = 0; i < e->nkeys && st == CM_OK; i++) {
        st = vfind(v, e->keys[i].db, idx_entries_key(e, i), e->keys[i].len,
                   true, &x);
        if (st == CM_OK && !x->bm) {
            x->bm = roaring_bitmap_create();
            if (!x->bm)
                st = CM_NOMEM;
        }
        if (st == CM_OK)
            roaring_bitmap_add(x->bm, docid);
    }
    for (int f = 0; f < IDX_SF_COUNT && st == CM_OK; f++) {
        struct idx_colcur cc;
        uint64_t col;
        idx_colcur_init(&cc, v->t, (enum idx_sort_field)f);
        st = idx_colcur_get(&cc, docid, &col);
        if (st != CM_OK)
            break;
        if (idx_sfield_kind((enum idx_sort_field)f) == IDX_SK_NUM) {
            if (col != e->num[f])
                problem(v, "column %d of docid %u: %llu, expected %llu", f,
                        docid, (unsigned long long)col,
                        (unsigned long long)e->num[f]);
            continue;
        }
        if (!e->dlen[f]) {
            if (col)
                problem(v, "column %d of docid %u: %llu, expected NULL", f,
                        docid, (unsigned long long)col);
            continue;
        }
        {
            struct cm_buf kb;
            const void *dv;
            size_t dn;
            uint64_t pos;
            cm_buf_init(&kb, 1024);
            st = idx_dict_key(&kb, (enum idx_sort_field)f,
                              e->arena.data + e->doff[f], e->dlen[f]);
            if (st == CM_OK)
                st = vfind(v, KV_DB_SORTS, (const uint8_t *)kb.data, kb.len,
                           true, &x);
            if (st == CM_OK) {
                x->refs++;
                st = kv_get(v->t, KV_DB_SORTS, kb.data, kb.len, &dv, &dn);
                if (st == CM_NOTFOUND) {
                    problem(v, "docid %u: sort %d key missing", docid, f);
                    st = CM_OK;
                } else if (st == CM_OK) {
                    memcpy(&pos, dv, dn >= 8 ? 8 : 0);
                    if (dn != 12 || pos != col)
                        problem(v,
                                "docid %u: sort %d column %llu != "
                                "dictionary position",
                                docid, f, (unsigned long long)col);
                }
            }
            cm_buf_fini(&kb);
        }
    }
    return st;
}

static enum cm_status check_ids(struct verify *v, uint32_t docid,
                                const struct kv_scene *sc)
{
    uint64_t sid;
    uint32_t d;
    enum cm_status st = kv_stash_id_of(v->t, docid, &sid);
    if (st == CM_NOTFOUND || (st == CM_OK && sid != sc->id))
        problem(v, "docmap of docid %u does not give stash id %llu", docid,
                (unsigned long long)sc->id);
    else if (st != CM_OK)
        return st;
    st = kv_docid_of(v->t, sc->id, &d);
    if (st == CM_NOTFOUND || (st == CM_OK && d != docid))
        problem(v, "idmap of stash id %llu does not give docid %u",
                (unsigned long long)sc->id, docid);
    else if (st != CM_OK)
        return st;
    return CM_OK;
}

/* Expected children lists. */
static enum cm_status expect_children(struct verify *v)
{
    MDB_cursor *cur = NULL;
    MDB_val k, val;
    enum cm_status st = walk_open(v->t, KV_DB_ENTITIES, &cur);
    int rc;

    if (st != CM_OK)
        return st;
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); rc == 0 && st == CM_OK;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        struct kv_entity e;
        memset(&e, 0, sizeof e);
        st = kv_entity_decode(val.mv_data, val.mv_size, &e);
        if (st != CM_OK) {
            problem(v, "entity record does not decode: %s", cm_status_str(st));
            st = CM_OK;
        } else if (e.type == KV_TAG || e.type == KV_STUDIO ||
                   e.type == KV_GROUP) {
            for (uint32_t i = 0; i < e.n_parents && st == CM_OK; i++) {
                uint8_t ck[10];
                struct vent *x;
                ck[0] = IDX_P_CHILDREN;
                ck[1] = e.type;
                idx_be64(ck + 2, e.parents[i]);
                st = vfind(v, KV_DB_POSTINGS, ck, sizeof ck, true, &x);
                if (st == CM_OK && !x->bm) {
                    x->bm = roaring_bitmap_create(); /* marker only */
                    if (!x->bm)
                        st = CM_NOMEM;
                }
                if (st == CM_OK)
                    x->refs++;
            }
        }
        kv_entity_fini(&e);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "entity walk");
    mdb_cursor_close(cur);
    return st;
}

/* A readable name of an index key for the report, e.g. "posting tag
 * 123", "text token \"beach\"", "sort dictionary title". */
static void describe_key(uint8_t db, const uint8_t *k, size_t n, char *out,
                         size_t cap)
{
    static const struct {
        uint8_t f;
        const char *name;
    } ids[] = {{IDX_P_TAG, "tag"},
               {IDX_P_PERFORMER, "performer"},
               {IDX_P_STUDIO, "studio"},
               {IDX_P_GROUP, "group"},
               {IDX_P_GALLERY, "gallery"},
               {IDX_P_PERF_TAG, "performer tag"},
               {IDX_P_INH_TAG, "inherited tag"}};
    size_t o = 0;
    int r;

    out[0] = '\0';
    if (db == KV_DB_TEXT ||
        (db == KV_DB_POSTINGS && n >= 3 && k[0] == IDX_P_STR)) {
        size_t start = db == KV_DB_TEXT ? 0 : 2;
        const char *what = "text token";
        if (db == KV_DB_TEXT && n > 0 && k[0] == IDX_T_FP) {
            what = "text fingerprint token";
            start = 1;
        } else if (db == KV_DB_TEXT && n > 0 && k[0] == IDX_T_MARKER) {
            what = "text marker token";
            start = 1;
        }
        r = db == KV_DB_TEXT
                ? snprintf(out, cap, "%s \"", what)
                : snprintf(out, cap, "posting string facet '%c' \"", k[1]);
        o = r > 0 && (size_t)r < cap ? (size_t)r : 0;
        for (size_t i = start; i < n && i < start + 60 && o + 6 < cap; i++) {
            r = k[i] >= 32 && k[i] < 127 && k[i] != '"'
                    ? snprintf(out + o, cap - o, "%c", k[i])
                    : snprintf(out + o, cap - o, "\\x%02x", k[i]);
            if (r > 0)
                o += (size_t)r;
        }
        if (o + 2 < cap)
            snprintf(out + o, cap - o, "\"");
        return;
    }
    if (db == KV_DB_SORTS && n >= 2) {
        const char *name = idx_sfield_name((enum idx_sort_field)k[1]);
        snprintf(out, cap, "sort dictionary %s (%zu key bytes)",
                 name ? name : "tie-break", n - 2);
        return;
    }
    if (n == 9)
        for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
            if (k[0] == ids[i].f) {
                snprintf(out, cap, "posting %s %llu", ids[i].name,
                         (unsigned long long)idx_rd_be64(k + 1));
                return;
            }
    if (n == 2 && k[0] == IDX_P_ROWS) {
        snprintf(out, cap, "posting rows '%c' (scenes with several %s)", k[1],
                 k[1] == IDX_ROWS_FILES ? "files"
                 : k[1] == IDX_ROWS_FP  ? "fingerprints in a file"
                                        : "markers");
        return;
    }
    if (n == 10 && k[0] == IDX_P_CHILDREN) {
        snprintf(out, cap, "children of entity type %u id %llu", k[1],
                 (unsigned long long)idx_rd_be64(k + 2));
        return;
    }
    r = snprintf(out, cap, "%s key", db == KV_DB_SORTS ? "sort" : "posting");
    o = r > 0 && (size_t)r < cap ? (size_t)r : 0;
    for (size_t i = 0; i < n && i < 16 && o + 4 < cap; i++) {
        r = snprintf(out + o, cap - o, " %02x", k[i]);
        if (r > 0)
            o += (size_t)r;
    }
}

/* The smallest docid in one bitmap and not the other (-1: equal). */
static int64_t first_diff(const roaring_bitmap_t *a, const roaring_bitmap_t *b,
                          bool *in_a)
{
    roaring_bitmap_t *x = roaring_bitmap_xor(a, b);
    uint32_t d;
    int64_t r = -1;
    if (x && roaring_bitmap_get_cardinality(x) &&
        roaring_bitmap_select(x, 0, &d)) {
        r = d;
        *in_a = roaring_bitmap_contains(a, d);
    }
    idx_bm_free(x);
    return r;
}

/* Compares a stored database with the expectations. */
static enum cm_status compare_db(struct verify *v, enum kv_db db)
{
    MDB_cursor *cur = NULL;
    MDB_val k, val;
    uint64_t lastpos = 0;
    uint8_t lastf = 0xFF;
    char kd[160];
    enum cm_status st = walk_open(v->t, db, &cur);
    int rc;

    if (st != CM_OK)
        return st;
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); rc == 0 && st == CM_OK;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        struct vent *x = NULL;
        if (db == KV_DB_COLUMNS)
            continue; /* checked per scene */
        st = vfind(v, (uint8_t)db, p, k.mv_size, false, &x);
        if (st != CM_OK)
            break;
        if (!x) {
            describe_key((uint8_t)db, p, k.mv_size, kd, sizeof kd);
            problem(v, "%s is stored but no record gives it", kd);
            continue;
        }
        x->seen = true;
        if (db == KV_DB_SORTS) {
            uint64_t pos;
            uint32_t ref;
            describe_key((uint8_t)db, p, k.mv_size, kd, sizeof kd);
            if (val.mv_size != 12) {
                problem(v, "%s: value of %zu bytes", kd, val.mv_size);
                continue;
            }
            memcpy(&pos, val.mv_data, 8);
            memcpy(&ref, (const uint8_t *)val.mv_data + 8, 4);
            if (ref != x->refs)
                problem(v, "%s: refcount %u, expected %u", kd, ref, x->refs);
            if (k.mv_size >= 2 && p[1] == lastf && pos <= lastpos)
                problem(v, "dictionary positions out of order (field %u)",
                        p[1]);
            lastf = k.mv_size >= 2 ? p[1] : 0xFF;
            lastpos = pos;
        } else if (k.mv_size >= 1 && p[0] == IDX_P_CHILDREN &&
                   db == KV_DB_POSTINGS) {
            if (val.mv_size != (size_t)x->refs * 8) {
                describe_key((uint8_t)db, p, k.mv_size, kd, sizeof kd);
                problem(v, "%s: %zu entries, expected %u", kd, val.mv_size / 8,
                        x->refs);
            }
        } else {
            roaring_bitmap_t *b = NULL;
            st = idx_bm_decode(val.mv_data, val.mv_size, &b);
            if (st == CM_CORRUPT) {
                describe_key((uint8_t)db, p, k.mv_size, kd, sizeof kd);
                problem(v, "%s: bitmap does not decode", kd);
                st = CM_OK;
            } else if (st == CM_OK && !roaring_bitmap_equals(b, x->bm)) {
                bool stored = false;
                int64_t d = first_diff(b, x->bm, &stored);
                describe_key((uint8_t)db, p, k.mv_size, kd, sizeof kd);
                problem(
                    v,
                    "%s: bitmap has %llu docids, the records give "
                    "%llu (docid %lld %s)",
                    kd, (unsigned long long)roaring_bitmap_get_cardinality(b),
                    (unsigned long long)roaring_bitmap_get_cardinality(x->bm),
                    (long long)d,
                    stored ? "is in the bitmap but its record does not "
                             "give the key"
                           : "is missing from the bitmap");
            }
            idx_bm_free(b);
        }
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "compare walk");
    mdb_cursor_close(cur);
    return st;
}

static void missing_keys(struct verify *v)
{
    char kd[160];
    for (size_t i = 0; i < v->m.cap; i++)
        for (struct vent *e = v->m.keys[i] ? v->m.vals[i] : NULL; e;
             e = e->next)
            if (!e->seen) {
                describe_key(e->db, e->key, e->klen, kd, sizeof kd);
                problem(v, "%s is missing (the records give it)", kd);
            }
}

enum cm_status idx_verify(struct kv_store *s, struct cm_buf *report)
{
    struct verify v;
    struct idx_ecache ec;
    struct idx_entries e;
    struct kv_revbuild rev = {0};
    struct kv_txn *t = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, val;
    bool deferred = false;
    enum cm_status st;
    int rc;

    if (!s)
        return CM_INVALID;
    memset(&v, 0, sizeof v);
    v.rep = report;
    st = kv_read_begin(s, &t);
    if (st != CM_OK)
        return st;
    /* Deferred indexes (an unfinished first sync): only the records, and
     * their id maps, describe the library yet. */
    st = kv_index_deferred(t, &deferred);
    if (st != CM_OK) {
        kv_read_end(t);
        return st;
    }
    v.t = t;
    idx_ecache_init(&ec, t);
    idx_entries_init(&e);
    st = walk_open(t, KV_DB_SCENES, &cur);
    for (rc = st == CM_OK ? mdb_cursor_get(cur, &k, &val, MDB_FIRST) : 0;
         st == CM_OK && rc == 0; rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        struct kv_scene sc;
        uint32_t docid;
        enum cm_status ds;
        if (k.mv_size != 4) {
            problem(&v, "scene key of %zu bytes", k.mv_size);
            continue;
        }
        memcpy(&docid, k.mv_data, 4);
        memset(&sc, 0, sizeof sc);
        ds = kv_scene_decode(val.mv_data, val.mv_size, &sc);
        if (ds == CM_NOMEM) {
            st = ds;
        } else if (ds != CM_OK) {
            problem(&v, "scene record at docid %u does not decode: %s", docid,
                    cm_status_str(ds));
        } else {
            st = check_ids(&v, docid, &sc);
            if (st == CM_OK && !deferred)
                st = expect_scene(&v, &ec, &e, docid, &sc);
            if (st == CM_OK && !deferred)
                st = kv_revbuild_add(&rev, docid, &sc);
        }
        kv_scene_fini(&sc);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "scene walk");
    mdb_cursor_close(cur);
    if (st == CM_OK && !deferred)
        st = expect_children(&v);
    for (size_t i = 0;
         i < sizeof index_dbs / sizeof *index_dbs && st == CM_OK && !deferred;
         i++)
        st = compare_db(&v, index_dbs[i]);
    if (st == CM_OK && !deferred)
        missing_keys(&v);
    if (st == CM_OK && !deferred) {
        uint64_t missing, extra;
        st = kv_revbuild_check(t, &rev, &missing, &extra);
        if (st == CM_OK && (missing || extra))
            problem(&v,
                    "reverse index: %llu entries missing, %llu extra "
                    "(the records give the difference)",
                    (unsigned long long)missing, (unsigned long long)extra);
    }
    kv_revbuild_fini(&rev);
    idx_entries_fini(&e);
    idx_ecache_fini(&ec);
    vfree(&v);
    kv_read_end(t);
    if (st != CM_OK)
        return st;
    if (v.problems > 20 && report &&
        cm_buf_printf(report, "... %u problems in all\n", v.problems) != CM_OK)
        cm_warn("index", "verify report truncated");
    return v.problems ? CM_CORRUPT : CM_OK;
}
