/*
 * idx_write.c - the write side: idx_writer batches, scene and entity puts
 * and deletes, the pending posting changes (key -> add/remove bitmaps,
 * each touched bitmap read and written once at finish), column chunks
 * (cached, written once at finish) and the gap-numbered sort dictionaries.
 *
 * Dictionaries.  A string sort value (title, path, code, studio name,
 * timestamps, and the tie-break key) becomes a u64 position so columns hold
 * fixed-size values: each distinct order-preserving key has an entry
 * {position, refcount}; a new key takes the midpoint between its
 * neighbours' positions (appends step by IDX_GAP).  When two neighbours
 * are adjacent the field is renumbered ((i+1) * IDX_GAP in key order) and
 * its column remapped; the mapping is monotonic, so nothing else changes.
 */
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "index/idx_int.h"

/* Pending changes of one posting/text key: the batch's operations in
 * call order (docid, high bit = remove), turned into add/remove bitmaps at
 * flush (directly, when they are only adds of increasing docids: new scenes).
 */
struct idx_pend {
    struct idx_pend *next; /* hash chain */
    struct idx_pend *all;  /* every pending key */
    uint32_t *ops;         /* docid | IDX_OP_REM */
    uint32_t nops, capops;
    bool simple; /* only adds, strictly increasing docids */
    uint16_t klen;
    uint8_t db;
    uint8_t key[];
};

/* A column chunk the batch writes.  Cells are set before the stored
 * chunk is read (set[] marks them): the stored chunks are read at flush,
 * all of them advised first (kv_prefetch), so that a cold store reads
 * them together rather than one page fault after another. */
struct idx_chunk {
    struct idx_chunk *all;
    uint32_t chunk;
    uint8_t f;
    bool loaded; /* the stored cells are in v[] */
    uint64_t set[IDX_CHUNK / 64];
    uint64_t v[IDX_CHUNK];
};

/* A dictionary key the batch references or releases.  Positions are
 * assigned and the stored entries written once, at flush. */
struct idx_dent {
    struct idx_dent *next; /* hash chain */
    struct idx_dent *all;  /* every touched key */
    uint64_t pos;          /* stored, or assigned at flush */
    uint32_t ref;          /* stored refcount (when found) */
    int32_t delta;         /* references gained - lost in the batch */
    bool found;            /* stored before the batch */
    uint16_t klen;
    uint8_t key[]; /* 'd' ‖ field ‖ key bytes */
};

struct idx_colset {
    struct idx_dent *e; /* NULL: the cell becomes NULL */
    uint32_t docid;
    uint8_t f;
};

enum cm_status idx_writer_init(struct idx_writer *w, struct kv_txn *t)
{
    memset(w, 0, sizeof *w);
    w->t = t;
    idx_ecache_init(&w->ec, t);
    idx_entries_init(&w->eo);
    idx_entries_init(&w->en);
    cm_buf_init(&w->kb, 1024);
    return CM_OK;
}

void idx_writer_fini(struct idx_writer *w)
{
    struct idx_pend *p = w->pend_list;
    struct idx_chunk *c = w->chunk_list;
    while (p) {
        struct idx_pend *n = p->all;
        cm_free(p->ops);
        cm_free(p);
        p = n;
    }
    while (c) {
        struct idx_chunk *n = c->all;
        cm_free(c);
        c = n;
    }
    for (struct idx_dent *d = w->dict_list; d;) {
        struct idx_dent *n = d->all;
        cm_free(d);
        d = n;
    }
    w->dict_list = NULL;
    cm_free(w->cs);
    w->cs = NULL;
    w->ncs = w->capcs = 0;
    idx_map_fini(&w->dict);
    idx_map_fini(&w->pend);
    idx_map_fini(&w->chunks);
    idx_ecache_fini(&w->ec);
    idx_entries_fini(&w->eo);
    idx_entries_fini(&w->en);
    cm_buf_fini(&w->kb);
    w->pend_list = NULL;
    w->chunk_list = NULL;
}

/* ---- Pending postings ------------------------------------------------ */

#define OP_REM 0x80000000u /* docids stay below 2^31 */

static enum cm_status pend_mark(struct idx_writer *w, uint8_t db,
                                const uint8_t *k, size_t n, uint32_t docid,
                                bool add)
{
    uint64_t h = XXH64(k, n, db) | 1;
    void **slot = idx_map_find(&w->pend, h);
    struct idx_pend *p = slot ? *slot : NULL;
    enum cm_status st;

    if (docid & OP_REM)
        return CM_TOOBIG;

    while (p && !(p->db == db && p->klen == n && memcmp(p->key, k, n) == 0))
        p = p->next;
    if (!p) {
        p = cm_calloc(1, sizeof *p + n);
        if (!p)
            return CM_NOMEM;
        p->db = db;
        p->klen = (uint16_t)n;
        p->simple = true;
        memcpy(p->key, k, n);
        p->next = slot ? *slot : NULL;
        st = idx_map_put(&w->pend, h, p);
        if (st != CM_OK) {
            cm_free(p);
            return st;
        }
        p->all = w->pend_list;
        w->pend_list = p;
        w->npend++;
    }
    if (p->nops == p->capops) {
        uint32_t cap = p->capops ? p->capops * 2 : 4;
        uint32_t *o;
        if (cap < p->capops)
            return CM_TOOBIG;
        o = cm_realloc(p->ops, (size_t)cap * sizeof *o);
        if (!o)
            return CM_NOMEM;
        p->ops = o;
        p->capops = cap;
    }
    if (!add || (p->nops && p->ops[p->nops - 1] >= docid))
        p->simple = false;
    p->ops[p->nops++] = docid | (add ? 0u : OP_REM);
    return CM_OK;
}

/* The pending changes as bitmaps: OUT *add, *rem (rem NULL when empty). */
static enum cm_status pend_bitmaps(const struct idx_pend *p,
                                   roaring_bitmap_t **add,
                                   roaring_bitmap_t **rem)
{
    *add = *rem = NULL;
    if (p->simple) {
        *add = roaring_bitmap_of_ptr(p->nops, p->ops);
        return *add ? CM_OK : CM_NOMEM;
    }
    *add = roaring_bitmap_create();
    *rem = roaring_bitmap_create();
    if (!*add || !*rem) {
        idx_bm_free(*add);
        idx_bm_free(*rem);
        *add = *rem = NULL;
        return CM_NOMEM;
    }
    for (uint32_t i = 0; i < p->nops; i++) {
        uint32_t d = p->ops[i] & ~OP_REM;
        if (!(p->ops[i] & OP_REM)) {
            roaring_bitmap_add(*add, d);
            roaring_bitmap_remove(*rem, d);
        } else {
            roaring_bitmap_add(*rem, d);
            roaring_bitmap_remove(*add, d);
        }
    }
    return CM_OK;
}

/* ---- Column chunks --------------------------------------------------- */

void idx_col_key(uint8_t k[6], enum idx_sort_field f, uint32_t chunk)
{
    k[0] = 'c';
    k[1] = (uint8_t)f;
    idx_be32(k + 2, chunk);
}

/* The stored chunk c->f/c->chunk, if any, under the cells the batch
 * has set. */
static enum cm_status chunk_load(struct idx_writer *w, struct idx_chunk *c)
{
    uint8_t k[6];
    const void *v;
    size_t n;
    enum cm_status st;

    if (c->loaded)
        return CM_OK;
    idx_col_key(k, (enum idx_sort_field)c->f, c->chunk);
    st = kv_get(w->t, KV_DB_COLUMNS, k, sizeof k, &v, &n);
    if (st == CM_OK) {
        const uint8_t *p = v;
        if (n > sizeof c->v || n % 8)
            return CM_CORRUPT;
        for (size_t i = 0; i < n / 8; i++)
            if (!(c->set[i / 64] >> (i % 64) & 1))
                memcpy(&c->v[i], p + i * 8, 8);
    } else if (st != CM_NOTFOUND) {
        return st;
    }
    c->loaded = true;
    return CM_OK;
}

/* The batch's chunk f/chunk, created empty (not loaded) the first time;
 * load: with its stored cells. */
static enum cm_status chunk_get(struct idx_writer *w, uint8_t f, uint32_t chunk,
                                bool load, struct idx_chunk **out)
{
    uint64_t key = (uint64_t)1 << 63 | (uint64_t)f << 32 | chunk;
    void **slot = idx_map_find(&w->chunks, key);
    struct idx_chunk *c;
    enum cm_status st;

    if (slot) {
        c = *slot;
    } else {
        c = cm_calloc(1, sizeof *c);
        if (!c)
            return CM_NOMEM;
        c->f = f;
        c->chunk = chunk;
        st = idx_map_put(&w->chunks, key, c);
        if (st != CM_OK) {
            cm_free(c);
            return st;
        }
        c->all = w->chunk_list;
        w->chunk_list = c;
    }
    *out = c;
    return load ? chunk_load(w, c) : CM_OK;
}

static enum cm_status col_set(struct idx_writer *w, enum idx_sort_field f,
                              uint32_t docid, uint64_t v)
{
    struct idx_chunk *c;
    uint32_t i = docid % IDX_CHUNK;
    enum cm_status st = chunk_get(w, (uint8_t)f, docid / IDX_CHUNK, false, &c);
    if (st == CM_OK) {
        c->v[i] = v;
        c->set[i / 64] |= (uint64_t)1 << (i % 64);
    }
    return st;
}

/* ---- Dictionaries ---------------------------------------------------- */

enum cm_status idx_dict_key(struct cm_buf *b, enum idx_sort_field f,
                            const void *k, size_t n)
{
    uint8_t h[2] = {'d', (uint8_t)f};
    enum cm_status st;
    cm_buf_reset(b);
    st = cm_buf_append(b, h, 2);
    if (st == CM_OK)
        st = cm_buf_append(b, k, n);
    return st;
}

static void dict_val(uint8_t v[12], uint64_t pos, uint32_t ref)
{
    memcpy(v, &pos, 8);
    memcpy(v + 8, &ref, 4);
}

static enum cm_status mdb_st(struct idx_writer *w, int rc, const char *what)
{
    return rc == MDB_NOTFOUND ? CM_NOTFOUND : kv_txn_from_mdb(w->t, rc, what);
}

static enum cm_status open_cur(struct kv_txn *t, enum kv_db db,
                               MDB_cursor **cur)
{
    int rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), db), cur);
    return rc ? kv_from_mdb(rc, "index cursor") : CM_OK;
}

static bool same_field(const MDB_val *k, enum idx_sort_field f)
{
    const uint8_t *p = k->mv_data;
    return k->mv_size >= 2 && p[0] == 'd' && p[1] == (uint8_t)f;
}

/* Renumbers dictionary f and remaps its column. */
static enum cm_status renumber(struct idx_writer *w, enum idx_sort_field f)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t start[2] = {'d', (uint8_t)f}, ck[6];
    uint64_t *old = NULL, i = 0, cap = 0;
    enum cm_status st;
    int rc;

    cm_info("index", "renumbering sort dictionary %d", (int)f);
    st = open_cur(w->t, KV_DB_SORTS, &cur);
    if (st != CM_OK)
        return st;
    k.mv_data = start;
    k.mv_size = 2;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && same_field(&k, f);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint8_t nv[12];
        uint32_t ref;
        if (v.mv_size != 12) {
            st = CM_CORRUPT;
            goto out;
        }
        if (i == cap) {
            uint64_t *n;
            cap = cap ? cap * 2 : 1024;
            n = cm_realloc(old, cap * sizeof *old);
            if (!n) {
                st = CM_NOMEM;
                goto out;
            }
            old = n;
        }
        memcpy(&old[i], v.mv_data, 8);
        memcpy(&ref, (const uint8_t *)v.mv_data + 8, 4);
        i++;
        dict_val(nv, i * IDX_GAP, ref);
        v.mv_data = nv;
        rc = mdb_cursor_put(cur, &k, &v, MDB_CURRENT);
        if (rc) {
            st = mdb_st(w, rc, "dict renumber");
            goto out;
        }
    }
    if (rc && rc != MDB_NOTFOUND) {
        st = mdb_st(w, rc, "dict renumber walk");
        goto out;
    }
    mdb_cursor_close(cur);
    cur = NULL;
    /* Load every stored chunk of the column, then remap the cache. */
    st = open_cur(w->t, KV_DB_COLUMNS, &cur);
    if (st != CM_OK)
        goto out;
    idx_col_key(ck, f, 0);
    k.mv_data = ck;
    k.mv_size = sizeof ck;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        struct idx_chunk *c;
        if (k.mv_size != 6 || p[0] != 'c' || p[1] != (uint8_t)f)
            break;
        st = chunk_get(w, (uint8_t)f, idx_rd_be32(p + 2), true, &c);
        if (st != CM_OK)
            goto out;
    }
    for (struct idx_chunk *c = w->chunk_list; c; c = c->all) {
        if (c->f != (uint8_t)f)
            continue;
        /* every stored chunk of f is loaded now: one that is not has no
         * stored cells (it only marks itself loaded) */
        if ((st = chunk_load(w, c)) != CM_OK)
            goto out;
        for (size_t j = 0; j < IDX_CHUNK; j++) {
            uint64_t lo = 0, hi = i;
            if (!c->v[j])
                continue;
            while (lo < hi) {
                uint64_t mid = (lo + hi) / 2;
                if (old[mid] < c->v[j])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == i || old[lo] != c->v[j]) {
                st = CM_CORRUPT;
                goto out;
            }
            c->v[j] = (lo + 1) * IDX_GAP;
        }
    }
    st = CM_OK;
out:
    mdb_cursor_close(cur);
    cm_free(old);
    return st;
}

/* The batch's entry of dictionary key kb (already 'd' ‖ f ‖ bytes). */
static enum cm_status dent_get(struct idx_writer *w, struct idx_dent **out)
{
    const uint8_t *k = (const uint8_t *)w->kb.data;
    size_t n = w->kb.len;
    uint64_t h = XXH64(k, n, 'd') | 1;
    void **slot = idx_map_find(&w->dict, h);
    struct idx_dent *e = slot ? *slot : NULL;
    enum cm_status st;

    while (e && !(e->klen == n && memcmp(e->key, k, n) == 0))
        e = e->next;
    if (!e) {
        if (n > UINT16_MAX)
            return CM_TOOBIG;
        e = cm_calloc(1, sizeof *e + n);
        if (!e)
            return CM_NOMEM;
        e->klen = (uint16_t)n;
        memcpy(e->key, k, n);
        e->next = slot ? *slot : NULL;
        st = idx_map_put(&w->dict, h, e);
        if (st != CM_OK) {
            cm_free(e);
            return st;
        }
        e->all = w->dict_list;
        w->dict_list = e;
        w->ndict++;
    }
    *out = e;
    return CM_OK;
}

static enum cm_status colset_push(struct idx_writer *w, uint32_t docid,
                                  enum idx_sort_field f, struct idx_dent *e)
{
    if (w->ncs == w->capcs) {
        size_t cap = w->capcs ? w->capcs * 2 : 1024;
        struct idx_colset *n = cm_realloc(w->cs, cap * sizeof *n);
        if (!n)
            return CM_NOMEM;
        w->cs = n;
        w->capcs = cap;
    }
    w->cs[w->ncs++] = (struct idx_colset){e, docid, (uint8_t)f};
    return CM_OK;
}

/* Sort item: the key's first bytes inline, so most comparisons do not
 * touch the (scattered) entries. */
struct dsort {
    uint64_t pre; /* bytes 2..9 of the key, big-endian, zero padded */
    struct idx_dent *e;
};

static uint64_t key_prefix(const uint8_t *k, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (i < n ? k[i] : 0);
    return v;
}

static int dsort_cmp(const void *a, const void *b)
{
    const struct dsort *p = a, *q = b;
    const struct idx_dent *x = p->e, *y = q->e;
    size_t n;
    int c;
    if (p->pre != q->pre)
        return p->pre < q->pre ? -1 : 1;
    n = x->klen < y->klen ? x->klen : y->klen;
    c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static int rawcmp(const void *a, size_t an, const void *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

/* Finds or assigns the position of each of v[0..n) (one field, sorted):
 * stored keys keep theirs; each run of new keys between two stored
 * neighbours gets evenly spaced positions between them (after the last:
 * steps of IDX_GAP).  *renum: a run did not fit (renumber, retry). */
static enum cm_status dict_assign(struct idx_writer *w, enum idx_sort_field f,
                                  struct idx_dent **v, size_t n, bool *renum)
{
    MDB_cursor *cur = NULL;
    MDB_val k, d;
    uint8_t hikey[512];
    size_t hilen = 0, i = 0;
    enum cm_status st = open_cur(w->t, KV_DB_SORTS, &cur);
    int rc;

    *renum = false;
    if (st != CM_OK)
        return st;
    while (i < n && st == CM_OK) {
        struct idx_dent *e = v[i];
        uint64_t lo = 0, hi = 0, step;
        bool has_hi = false;
        size_t j, m;
        k.mv_data = e->key;
        k.mv_size = e->klen;
        rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == e->klen &&
            memcmp(k.mv_data, e->key, e->klen) == 0) {
            if (d.mv_size != 12) {
                st = CM_CORRUPT;
                break;
            }
            memcpy(&e->pos, d.mv_data, 8);
            memcpy(&e->ref, (const uint8_t *)d.mv_data + 8, 4);
            e->found = true;
            i++;
            continue;
        }
        if (rc && rc != MDB_NOTFOUND) {
            st = mdb_st(w, rc, "dict lookup");
            break;
        }
        if (rc == 0 && same_field(&k, f)) {
            if (d.mv_size != 12 || k.mv_size > sizeof hikey) {
                st = CM_CORRUPT;
                break;
            }
            memcpy(&hi, d.mv_data, 8);
            memcpy(hikey, k.mv_data, k.mv_size);
            hilen = k.mv_size;
            has_hi = true;
        }
        rc = mdb_cursor_get(cur, &k, &d, rc == 0 ? MDB_PREV : MDB_LAST);
        if (rc == 0 && same_field(&k, f)) {
            if (d.mv_size != 12) {
                st = CM_CORRUPT;
                break;
            }
            memcpy(&lo, d.mv_data, 8);
        } else if (rc && rc != MDB_NOTFOUND) {
            st = mdb_st(w, rc, "dict neighbours");
            break;
        }
        /* The new keys up to the next stored one. */
        for (j = i + 1; j < n && (!has_hi || rawcmp(v[j]->key, v[j]->klen,
                                                    hikey, hilen) < 0);
             j++)
            ;
        m = j - i;
        if (has_hi)
            step = hi > lo ? (hi - lo) / (m + 1) : 0;
        else if ((UINT64_MAX - lo) / IDX_GAP > m)
            step = IDX_GAP;
        else
            step = (UINT64_MAX - lo) / (m + 1);
        if (step == 0) {
            *renum = true;
            break;
        }
        for (size_t x = 0; x < m; x++) {
            v[i + x]->pos = lo + step * (x + 1);
            v[i + x]->found = false;
        }
        i = j;
    }
    mdb_cursor_close(cur);
    return st;
}

/* Puts one value. */
static enum cm_status put_raw(struct idx_writer *w, enum kv_db db,
                              const void *key, size_t klen, const void *val,
                              size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc =
        mdb_put(kv_txn_mdb(w->t), kv_dbi(kv_txn_store(w->t), db), &k, &v, 0);
    return rc ? mdb_st(w, rc, "index put") : CM_OK;
}

/* Assigns positions, writes every touched dictionary entry once (in key
 * order), then the dictionary-valued column cells. */
static enum cm_status dict_flush(struct idx_writer *w)
{
    struct idx_dent **v = NULL;
    struct dsort *ds = NULL;
    size_t n = 0;
    enum cm_status st = CM_OK;

    if (w->ndict) {
        v = cm_malloc(w->ndict * sizeof *v);
        ds = cm_malloc(w->ndict * sizeof *ds);
        if (!v || !ds) {
            cm_free(v);
            cm_free(ds);
            return CM_NOMEM;
        }
    }
    for (struct idx_dent *e = w->dict_list; e; e = e->all) {
        ds[n].pre = e->klen > 2 ? key_prefix(e->key + 2, e->klen - 2) : 0;
        ds[n].pre = ds[n].pre >> 8 | (uint64_t)e->key[1] << 56;
        ds[n++].e = e;
    }
    if (n > 1)
        qsort(ds, n, sizeof *ds, dsort_cmp);
    for (size_t i = 0; i < n; i++)
        v[i] = ds[i].e;
    cm_free(ds);
    for (size_t a = 0; a < n && st == CM_OK;) {
        uint8_t f = v[a]->key[1];
        size_t b = a;
        bool renum = false;
        while (b < n && v[b]->key[1] == f)
            b++;
        st = dict_assign(w, (enum idx_sort_field)f, v + a, b - a, &renum);
        if (st == CM_OK && renum) {
            st = renumber(w, (enum idx_sort_field)f);
            if (st == CM_OK)
                st = dict_assign(w, (enum idx_sort_field)f, v + a, b - a,
                                 &renum);
            if (st == CM_OK && renum)
                st = CM_INTERNAL; /* cannot happen after a renumber */
        }
        a = b;
    }
    for (size_t i = 0; i < n && st == CM_OK; i++) {
        struct idx_dent *e = v[i];
        uint8_t nv[12];
        int64_t r = (int64_t)(e->found ? e->ref : 0) + e->delta;
        if (r < 0 || r > UINT32_MAX) {
            st = CM_CORRUPT;
        } else if (r == 0) {
            if (e->found) {
                st = kv_del(w->t, KV_DB_SORTS, e->key, e->klen);
                if (st == CM_NOTFOUND)
                    st = CM_CORRUPT;
            }
        } else if (!e->found || e->delta) {
            dict_val(nv, e->pos, (uint32_t)r);
            st = put_raw(w, KV_DB_SORTS, e->key, e->klen, nv, 12);
        }
    }
    for (size_t i = 0; i < w->ncs && st == CM_OK; i++)
        st = col_set(w, (enum idx_sort_field)w->cs[i].f, w->cs[i].docid,
                     w->cs[i].e ? w->cs[i].e->pos : 0);
    cm_free(v);
    return st;
}

/* ---- Applying a scene's change --------------------------------------- */

static int ekey_cmp(const struct idx_entries *a, size_t i,
                    const struct idx_entries *b, size_t j)
{
    const struct idx_key *x = &a->keys[i], *y = &b->keys[j];
    size_t n = x->len < y->len ? x->len : y->len;
    int c;
    if (x->db != y->db)
        return x->db < y->db ? -1 : 1;
    c = memcmp(idx_entries_key(a, i), idx_entries_key(b, j), n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static enum cm_status apply_sorts(struct idx_writer *w, uint32_t docid,
                                  const struct idx_entries *old,
                                  const struct idx_entries *cur)
{
    enum cm_status st = CM_OK;

    for (int f = 0; f < IDX_SF_COUNT && st == CM_OK; f++) {
        enum idx_sort_field sf = (enum idx_sort_field)f;
        if (idx_sfield_kind(sf) == IDX_SK_NUM) {
            uint64_t o = old ? old->num[f] : 0, n = cur ? cur->num[f] : 0;
            if (!old || o != n)
                st = col_set(w, sf, docid, n);
            continue;
        }
        uint32_t ol = old ? old->dlen[f] : 0, nl = cur ? cur->dlen[f] : 0;
        const char *ob = old ? old->arena.data + old->doff[f] : NULL;
        const char *nb = cur ? cur->arena.data + cur->doff[f] : NULL;
        struct idx_dent *ne = NULL, *oe = NULL;
        if (old && cur && ol == nl && (ol == 0 || memcmp(ob, nb, ol) == 0))
            continue;
        if (nl) {
            st = idx_dict_key(&w->kb, sf, nb, nl);
            if (st == CM_OK)
                st = dent_get(w, &ne);
            if (st == CM_OK)
                ne->delta++;
        }
        if (st == CM_OK && ol) {
            st = idx_dict_key(&w->kb, sf, ob, ol);
            if (st == CM_OK)
                st = dent_get(w, &oe);
            if (st == CM_OK)
                oe->delta--;
        }
        if (st == CM_OK)
            st = colset_push(w, docid, sf, ne);
    }
    return st;
}

enum cm_status idx_apply(struct idx_writer *w, uint32_t docid,
                         const struct idx_entries *old,
                         const struct idx_entries *cur)
{
    size_t i = 0, j = 0, no = old ? old->nkeys : 0, nc = cur ? cur->nkeys : 0;
    enum cm_status st = CM_OK;

    while (st == CM_OK && (i < no || j < nc)) {
        int c = i == no ? 1 : j == nc ? -1 : ekey_cmp(old, i, cur, j);
        if (c < 0) {
            st = pend_mark(w, old->keys[i].db, idx_entries_key(old, i),
                           old->keys[i].len, docid, false);
            i++;
        } else if (c > 0) {
            st = pend_mark(w, cur->keys[j].db, idx_entries_key(cur, j),
                           cur->keys[j].len, docid, true);
            j++;
        } else {
            i++;
            j++;
        }
    }
    if (st == CM_OK)
        st = apply_sorts(w, docid, old, cur);
    return st;
}

static int pend_cmp(const void *a, const void *b)
{
    const struct idx_pend *x = *(const struct idx_pend *const *)a;
    const struct idx_pend *y = *(const struct idx_pend *const *)b;
    if (x->db != y->db)
        return x->db < y->db ? -1 : 1;
    return rawcmp(x->key, x->klen, y->key, y->klen);
}

static int chunk_cmp(const void *a, const void *b)
{
    const struct idx_chunk *x = *(const struct idx_chunk *const *)a;
    const struct idx_chunk *y = *(const struct idx_chunk *const *)b;
    if (x->f != y->f)
        return x->f < y->f ? -1 : 1;
    return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

/* Reads, edits and writes back each touched posting/text bitmap once, in
 * key order. */
static enum cm_status postings_flush(struct idx_writer *w)
{
    struct idx_pend **v = NULL;
    size_t n = 0, cap = 0;
    char *buf = NULL;
    enum cm_status st = CM_OK;

    if (!w->npend)
        return CM_OK;
    v = cm_malloc(w->npend * sizeof *v);
    if (!v)
        return CM_NOMEM;
    for (struct idx_pend *p = w->pend_list; p; p = p->all)
        v[n++] = p;
    qsort(v, n, sizeof *v, pend_cmp);
    for (size_t i = 0; i < n && st == CM_OK; i++) {
        struct idx_pend *p = v[i];
        roaring_bitmap_t *bm = NULL, *add = NULL, *rem = NULL;
        size_t len;
        st = pend_bitmaps(p, &add, &rem);
        if (st != CM_OK)
            break;
        if (roaring_bitmap_is_empty(add) &&
            (!rem || roaring_bitmap_is_empty(rem))) {
            idx_bm_free(add);
            idx_bm_free(rem);
            continue;
        }
        st = idx_bm_get(w->t, (enum kv_db)p->db, p->key, p->klen, &bm);
        if (st == CM_OK) {
            if (rem)
                roaring_bitmap_andnot_inplace(bm, rem);
            roaring_bitmap_or_inplace(bm, add);
        }
        idx_bm_free(add);
        idx_bm_free(rem);
        if (st != CM_OK) {
            idx_bm_free(bm);
            break;
        }
        if (roaring_bitmap_is_empty(bm)) {
            st = kv_del(w->t, (enum kv_db)p->db, p->key, p->klen);
            if (st == CM_NOTFOUND)
                st = CM_OK;
        } else {
            roaring_bitmap_run_optimize(bm);
            len = roaring_bitmap_portable_size_in_bytes(bm);
            if (len > cap) {
                char *nb = cm_realloc(buf, len);
                if (!nb) {
                    st = CM_NOMEM;
                } else {
                    buf = nb;
                    cap = len;
                }
            }
            if (st == CM_OK) {
                roaring_bitmap_portable_serialize(bm, buf);
                st = put_raw(w, (enum kv_db)p->db, p->key, p->klen, buf, len);
            }
        }
        idx_bm_free(bm);
    }
    cm_free(buf);
    cm_free(v);
    return st;
}

static enum cm_status columns_flush(struct idx_writer *w)
{
    struct idx_chunk **v = NULL;
    size_t n = 0;
    enum cm_status st = CM_OK;

    for (struct idx_chunk *c = w->chunk_list; c; c = c->all)
        n++;
    if (!n)
        return CM_OK;
    v = cm_malloc(n * sizeof *v);
    if (!v)
        return CM_NOMEM;
    n = 0;
    for (struct idx_chunk *c = w->chunk_list; c; c = c->all)
        v[n++] = c;
    qsort(v, n, sizeof *v, chunk_cmp);
    for (size_t i = 0; i < n && st == CM_OK; i++) {
        uint8_t k[6];
        idx_col_key(k, (enum idx_sort_field)v[i]->f, v[i]->chunk);
        st = chunk_load(w, v[i]);
        if (st == CM_OK)
            st =
                put_raw(w, KV_DB_COLUMNS, k, sizeof k, v[i]->v, sizeof v[i]->v);
    }
    cm_free(v);
    return st;
}

/* Has every stored value the flush will read looked up ahead, in parallel
 * (kv_warm_keys: only while the store is in random-access mode, that is in
 * an incremental pass): the bitmaps of the pending keys, the dictionary
 * entries, and the column chunks, those of the dictionary cells included. */
static void warm_flush(struct idx_writer *w)
{
    struct kv_store *s = kv_txn_store(w->t);
    struct kv_keyref *k;
    uint8_t(*ck)[6];
    size_t n = 0, nc = 0, max = w->npend + w->ndict + w->ncs;

    if (!kv_warming(s))
        return;
    for (struct idx_chunk *c = w->chunk_list; c; c = c->all)
        max++;
    if (max < KV_WARM_MIN)
        return;
    k = cm_malloc(max * sizeof *k);
    ck = cm_malloc(max * sizeof *ck);
    if (k && ck) {
        for (struct idx_pend *p = w->pend_list; p; p = p->all)
            k[n++] = (struct kv_keyref){p->key, p->klen, p->db};
        for (struct idx_dent *e = w->dict_list; e; e = e->all)
            k[n++] = (struct kv_keyref){e->key, e->klen, KV_DB_SORTS};
        for (struct idx_chunk *c = w->chunk_list; c; c = c->all)
            if (!c->loaded)
                idx_col_key(ck[nc++], (enum idx_sort_field)c->f, c->chunk);
        for (size_t i = 0; i < w->ncs; i++)
            idx_col_key(ck[nc++], (enum idx_sort_field)w->cs[i].f,
                        w->cs[i].docid / IDX_CHUNK);
        for (size_t i = 0; i < nc; i++)
            k[n++] = (struct kv_keyref){ck[i], 6, KV_DB_COLUMNS};
        kv_warm_keys(s, k, n);
    }
    cm_free(k);
    cm_free(ck);
}

enum cm_status idx_writer_flush(struct idx_writer *w)
{
    bool changed = w->pend_list || w->chunk_list || w->dict_list;
    enum cm_status st;

    warm_flush(w);
    st = postings_flush(w);

    if (st == CM_OK)
        st = dict_flush(w);
    if (st == CM_OK)
        st = columns_flush(w);
    /* Cached sort orders of the old data must not be used any more. */
    if (st == CM_OK && changed)
        st = idx_gen_bump(w->t);
    return st;
}

/* ---- Public writer API ----------------------------------------------- */

enum cm_status idx_writer_begin(struct kv_txn *t, struct idx_writer **out)
{
    struct idx_writer *w;
    enum cm_status st;

    *out = NULL;
    if (!t)
        return CM_INVALID;
    w = cm_malloc(sizeof *w);
    if (!w)
        return CM_NOMEM;
    st = idx_writer_init(w, t);
    if (st == CM_OK)
        st = kv_index_deferred(t, &w->deferred);
    if (st != CM_OK) {
        idx_writer_fini(w);
        cm_free(w);
        return st;
    }
    *out = w;
    return CM_OK;
}

enum cm_status idx_writer_finish(struct idx_writer *w)
{
    enum cm_status st;
    if (!w)
        return CM_INVALID;
    st = idx_writer_flush(w);
    idx_writer_fini(w);
    cm_free(w);
    return st;
}

void idx_writer_discard(struct idx_writer *w)
{
    if (!w)
        return;
    idx_writer_fini(w);
    cm_free(w);
}

enum cm_status idx_scene_put(struct idx_writer *w, const struct kv_scene *sc,
                             uint32_t *docid)
{
    struct kv_scene old;
    uint32_t d = 0;
    bool had = false;
    enum cm_status st;

    if (docid)
        *docid = 0;
    if (!w || !sc || sc->id == 0)
        return CM_INVALID;
    if (w->deferred) {
        st = kv_scene_store_record(w->t, sc, &d);
        if (st == CM_OK && docid)
            *docid = d;
        return st;
    }
    memset(&old, 0, sizeof old);
    st = kv_docid_of(w->t, sc->id, &d);
    if (st == CM_OK) {
        st = kv_scene_get(w->t, d, &old);
        if (st == CM_OK) {
            had = true;
            st = idx_derive(&w->ec, &old, &w->eo);
        } else if (st == CM_NOTFOUND) {
            st = CM_OK;
        }
    } else if (st == CM_NOTFOUND) {
        st = CM_OK;
    }
    kv_scene_fini(&old);
    if (st == CM_OK)
        st = idx_derive(&w->ec, sc, &w->en);
    if (st == CM_OK)
        st = kv_scene_store(w->t, sc, NULL, &d, NULL);
    if (st == CM_OK)
        st = idx_apply(w, d, had ? &w->eo : NULL, &w->en);
    if (st == CM_OK && docid)
        *docid = d;
    return st;
}

enum cm_status idx_scene_delete(struct idx_writer *w, uint64_t stash_id)
{
    struct kv_scene old;
    uint32_t d;
    enum cm_status st;

    if (!w)
        return CM_INVALID;
    memset(&old, 0, sizeof old);
    st = kv_docid_of(w->t, stash_id, &d);
    if (st != CM_OK)
        return st;
    if (w->deferred)
        return kv_scene_remove(w->t, d, NULL);
    st = kv_scene_get(w->t, d, &old);
    if (st == CM_OK)
        st = idx_derive(&w->ec, &old, &w->eo);
    if (st == CM_OK)
        st = kv_scene_remove(w->t, d, &old);
    kv_scene_fini(&old);
    if (st == CM_OK)
        st = idx_apply(w, d, &w->eo, NULL);
    return st;
}

/* ---- Entities -------------------------------------------------------- */

enum cm_status idx_children_edit(struct idx_writer *w, uint8_t type,
                                 uint64_t parent, uint64_t child, bool add)
{
    uint8_t k[10];
    const void *v;
    size_t n, cnt, pos = 0;
    uint64_t *arr = NULL;
    enum cm_status st;

    k[0] = IDX_P_CHILDREN;
    k[1] = type;
    idx_be64(k + 2, parent);
    st = kv_get(w->t, KV_DB_POSTINGS, k, sizeof k, &v, &n);
    if (st == CM_NOTFOUND) {
        n = 0;
        st = CM_OK;
    }
    if (st != CM_OK)
        return st;
    if (n % 8)
        return CM_CORRUPT;
    cnt = n / 8;
    arr = cm_malloc((cnt + 1) * 8);
    if (!arr)
        return CM_NOMEM;
    if (n)
        memcpy(arr, v, n);
    while (pos < cnt && arr[pos] < child)
        pos++;
    if (add && (pos == cnt || arr[pos] != child)) {
        memmove(arr + pos + 1, arr + pos, (cnt - pos) * 8);
        arr[pos] = child;
        cnt++;
    } else if (!add && pos < cnt && arr[pos] == child) {
        memmove(arr + pos, arr + pos + 1, (cnt - pos - 1) * 8);
        cnt--;
    }
    if (cnt)
        st = kv_put(w->t, KV_DB_POSTINGS, k, sizeof k, arr, cnt * 8);
    else {
        st = kv_del(w->t, KV_DB_POSTINGS, k, sizeof k);
        if (st == CM_NOTFOUND)
            st = CM_OK;
    }
    cm_free(arr);
    return st;
}

static bool has_id(const uint64_t *a, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == x)
            return true;
    return false;
}

static bool same_set(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    for (size_t i = 0; i < na; i++)
        if (!has_id(b, nb, a[i]))
            return false;
    for (size_t i = 0; i < nb; i++)
        if (!has_id(a, na, b[i]))
            return false;
    return true;
}

struct docs {
    uint32_t *v;
    size_t n, cap;
    bool nomem;
};

static int collect(uint32_t docid, void *ctx)
{
    struct docs *d = ctx;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        uint32_t *nv = cm_realloc(d->v, cap * sizeof *nv);
        if (!nv) {
            d->nomem = true;
            return 1;
        }
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n++] = docid;
    return 0;
}

/* Re-derives the scenes carrying (type, id) with the entity's old facts
 * (in the cache) and its new ones (et_new), applying the difference. */
static enum cm_status rederive(struct idx_writer *w, uint8_t type, uint64_t id,
                               struct idx_etags *et_new)
{
    const struct idx_etags *cached;
    struct idx_etags *et_old;
    struct docs d = {0};
    void **slot;
    enum cm_status st = idx_ecache_tags(&w->ec, type, id, &cached);

    if (st != CM_OK) {
        cm_free(et_new);
        return st;
    }
    et_old = (struct idx_etags *)cached;
    st = kv_scenes_with(w->t, type, id, collect, &d);
    if (st == CM_OK && d.nomem)
        st = CM_NOMEM;
    for (size_t i = 0; i < d.n && st == CM_OK; i++) {
        struct kv_scene sc;
        memset(&sc, 0, sizeof sc);
        st = kv_scene_get(w->t, d.v[i], &sc);
        /* The slot moves when the cache grows: look it up each time. */
        slot = idx_ecache_slot(&w->ec, type, id);
        *slot = et_old;
        if (st == CM_OK)
            st = idx_derive(&w->ec, &sc, &w->eo);
        slot = idx_ecache_slot(&w->ec, type, id);
        *slot = et_new;
        if (st == CM_OK)
            st = idx_derive(&w->ec, &sc, &w->en);
        kv_scene_fini(&sc);
        if (st == CM_OK)
            st = idx_apply(w, d.v[i], &w->eo, &w->en);
        if (st == CM_NOTFOUND)
            st = CM_OK;
    }
    slot = idx_ecache_slot(&w->ec, type, id);
    *slot = et_new;
    cm_free(et_old);
    cm_free(d.v);
    return st;
}

static enum cm_status entity_change(struct idx_writer *w, uint8_t type,
                                    uint64_t id, const struct kv_entity *e)
{
    struct kv_entity old;
    uint64_t *op = NULL, *ot = NULL;
    size_t nop = 0, not_ = 0;
    bool had;
    enum cm_status st;

    memset(&old, 0, sizeof old);
    if (w->deferred) { /* the rebuild derives hierarchy and scenes */
        if (e)
            return kv_entity_put(w->t, e);
        return kv_entity_del(w->t, type, id);
    }
    st = kv_entity_get(w->t, type, id, &old);
    if (st != CM_OK && st != CM_NOTFOUND) {
        kv_entity_fini(&old);
        return st;
    }
    had = st == CM_OK;
    st = CM_OK;
    if (had && old.n_parents) {
        op = cm_malloc(old.n_parents * 8);
        if (!op) {
            st = CM_NOMEM;
            goto out;
        }
        memcpy(op, old.parents, old.n_parents * 8);
        nop = old.n_parents;
    }
    if (had && old.n_tags) {
        ot = cm_malloc(old.n_tags * 8);
        if (!ot) {
            st = CM_NOMEM;
            goto out;
        }
        memcpy(ot, old.tags, old.n_tags * 8);
        not_ = old.n_tags;
    }
    kv_entity_fini(&old);
    /* rederive() below takes the old tags from the writer's cache: load
     * them into it before the record changes, else it reads the new ones
     * and finds nothing to move. */
    if (type == KV_PERFORMER || type == KV_STUDIO || type == KV_GROUP) {
        const struct idx_etags *cached;
        if ((st = idx_ecache_tags(&w->ec, type, id, &cached)) != CM_OK)
            goto out;
    }
    /* Store or delete the record. */
    if (e)
        st = kv_entity_put(w->t, e);
    else
        st = had ? kv_entity_del(w->t, type, id) : CM_NOTFOUND;
    if (st != CM_OK)
        goto out;
    /* Hierarchy. */
    if (type == KV_TAG || type == KV_STUDIO || type == KV_GROUP) {
        const uint64_t *np = e ? e->parents : NULL;
        size_t nnp = e ? e->n_parents : 0;
        for (size_t i = 0; i < nop && st == CM_OK; i++)
            if (!has_id(np, nnp, op[i]))
                st = idx_children_edit(w, type, op[i], id, false);
        for (size_t i = 0; i < nnp && st == CM_OK; i++)
            if (!has_id(op, nop, np[i]))
                st = idx_children_edit(w, type, np[i], id, true);
    }
    /* Tags of performers, studios, groups feed performer/inherited tags. */
    if (st == CM_OK &&
        (type == KV_PERFORMER || type == KV_STUDIO || type == KV_GROUP) &&
        !same_set(ot, not_, e ? e->tags : NULL, e ? e->n_tags : 0)) {
        uint32_t n = e ? e->n_tags : 0;
        struct idx_etags *et = cm_malloc(sizeof *et + (size_t)n * 8);
        if (!et) {
            st = CM_NOMEM;
            goto out;
        }
        et->n = n;
        et->present = e != NULL;
        if (n)
            memcpy(et->tags, e->tags, (size_t)n * 8);
        st = rederive(w, type, id, et);
    } else if (st == CM_OK) {
        idx_ecache_drop(&w->ec, type, id);
    }
out:
    kv_entity_fini(&old);
    cm_free(op);
    cm_free(ot);
    return st;
}

enum cm_status idx_entity_put(struct idx_writer *w, const struct kv_entity *e)
{
    if (!w || !e || e->id == 0)
        return CM_INVALID;
    return entity_change(w, e->type, e->id, e);
}

enum cm_status idx_entity_delete(struct idx_writer *w, uint8_t type,
                                 uint64_t id)
{
    if (!w)
        return CM_INVALID;
    return entity_change(w, type, id, NULL);
}
