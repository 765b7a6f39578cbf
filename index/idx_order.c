/*
 * idx_order.c - full sort orders of the library, cached in process memory.
 *
 * For a (sort field, direction, random seed) the "order" is every docid of
 * the universe in the ordering contract: sort value in the requested
 * direction (NULL lowest, so first ASC / last DESC), then the tie-break
 * COALESCE(title, id) NATURAL_CI ASC, Stash id ASC.  DESC is therefore not
 * the reverse of ASC.  An unfiltered page is a slice of it; a broad filter
 * walks it testing membership; deep offsets skip whole 4096-position blocks
 * with roaring_bitmap_and_cardinality against per-block docid bitmaps
 * (built lazily, on the first query that needs them).
 *
 * Building: the tie-break order is itself a cached order (radix sort of
 * the tie column); any other key's order is a stable LSD radix sort of the
 * tie order by the key's u64 sort value, so the tie-break comes for free.
 * Cost at 1M scenes: a few passes over 16 MB (tens of ms).
 *
 * Validity: every write transaction that changes postings or columns
 * stores a fresh random 64-bit generation in meta (IDX_META_GEN, see
 * idx_gen_bump()); an order is used only by a query whose transaction
 * reads the generation it was built at.  Random (not incremented) values
 * mean an aborted transaction's generation never comes back with other
 * data.  A store without a generation (never written by this code) gets
 * no cache: queries use the candidate plan.
 *
 * Sharing and threads: one process-wide slot table (idx_slots.h) of
 * IDX_ORDER_SLOTS slots, keyed by (store, field and direction, seed);
 * orders are reference counted (a slot holds one reference, each user
 * one), so a reader keeps using an order while a newer one replaces it.
 * An order is built by the one query that claims its slot, outside the
 * table's mutex; other queries wanting it meanwhile get NULL and use the
 * candidate plan (they never wait).  It is a cache of derived data that
 * outlives stores (slots of a closed store are never matched again, as
 * its generations are random, and are evicted least-recently-used first).
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/cm_alloc.h"
#include "common/cm_log.h"
#include "index/idx_int.h"
#include "index/idx_slots.h"

static void order_free(void *v);

/* Slot key: (store, f | desc << 8, seed); aux counts the requests of a
 * random seed (built from the second). */
static struct idx_slot slots[IDX_ORDER_SLOTS];
static struct idx_slots orders = IDX_SLOTS_INIT(slots, order_free);

/* Guards the lazily built block bitmaps of every order. */
static pthread_mutex_t blk_mu = PTHREAD_MUTEX_INITIALIZER;

/* Background builders (idx_builder_start): at most one per store.  Lock
 * order: the order table's mutex, then bmu; the builder thread holds
 * neither while building. */
#define BUILDERS      4
#define BUILD_PENDING 16

struct breq {
    uint8_t f;
    bool desc;
    uint64_t seed;
};

struct builder {
    struct kv_store *s; /* NULL: free */
    pthread_t th;
    struct breq q[BUILD_PENDING]; /* FIFO */
    size_t n;
    bool busy, stop;
    unsigned long built, failed;
};

static pthread_mutex_t bmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bcv = PTHREAD_COND_INITIALIZER;   /* work or stop */
static pthread_cond_t bidle = PTHREAD_COND_INITIALIZER; /* a build ended */
static struct builder builders[BUILDERS];
static _Thread_local bool in_builder;

static bool builder_ask(struct kv_store *s, uint8_t f, bool desc,
                        uint64_t seed);

/* ---- Generation ------------------------------------------------------- */

enum cm_status idx_gen_bump(struct kv_txn *t)
{
    static atomic_uint_fast64_t ctr;
    struct timespec ts;
    uint64_t in[4], g;

    clock_gettime(CLOCK_REALTIME, &ts);
    in[0] = (uint64_t)ts.tv_sec;
    in[1] = (uint64_t)ts.tv_nsec;
    in[2] = atomic_fetch_add(&ctr, 1);
    in[3] = (uint64_t)getpid() ^ (uint64_t)(uintptr_t)t;
    g = XXH64(in, sizeof in, 0x9E3779B97F4A7C15ULL);
    if (g == 0)
        g = 1;
    return kv_meta_put_u64(t, IDX_META_GEN, g);
}

enum cm_status idx_gen_get(struct kv_txn *t, uint64_t *gen)
{
    enum cm_status st = kv_meta_get_u64(t, IDX_META_GEN, gen);
    if (st == CM_NOTFOUND) {
        *gen = 0;
        return CM_OK;
    }
    return st;
}

/* ---- Orders ----------------------------------------------------------- */

static void order_free(void *v)
{
    struct idx_order *o = v;
    if (!o)
        return;
    if (o->blocks) {
        for (uint32_t i = 0; i < o->nblocks; i++)
            idx_bm_free(o->blocks[i]);
        cm_free(o->blocks);
    }
    cm_free(o->docids);
    cm_free(o->rank);
    cm_free(o);
}

void idx_order_release(struct idx_order *o)
{
    idx_slots_release(&orders, o);
}

struct kitem {
    uint64_t k;
    uint32_t d;
};

/* Stable LSD radix sort of v[0..n) by k (8-bit digits; digits that are
 * equal in every item are skipped).  tmp has room for n items.  Returns
 * the buffer holding the result. */
static struct kitem *radix(struct kitem *v, struct kitem *tmp, size_t n)
{
    uint32_t(*cnt)[256] = cm_calloc(8, sizeof *cnt);
    if (!cnt)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = v[i].k;
        for (int b = 0; b < 8; b++)
            cnt[b][(k >> (8 * b)) & 0xFF]++;
    }
    for (int b = 0; b < 8; b++) {
        uint32_t sum = 0, *c = cnt[b];
        bool trivial = false;
        for (int x = 0; x < 256; x++)
            if (c[x] == n) {
                trivial = true;
                break;
            }
        if (trivial)
            continue;
        for (int x = 0; x < 256; x++) {
            uint32_t y = c[x];
            c[x] = sum;
            sum += y;
        }
        for (size_t i = 0; i < n; i++)
            tmp[c[(v[i].k >> (8 * b)) & 0xFF]++] = v[i];
        struct kitem *sw = v;
        v = tmp;
        tmp = sw;
    }
    cm_free(cnt);
    return v;
}

/* Dense copy of column f: OUT *vals[0..maxdoc] (0 = NULL/absent). */
static enum cm_status read_column(struct kv_txn *t, enum idx_sort_field f,
                                  uint32_t maxdoc, uint64_t **vals)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t start[6];
    uint64_t *a;
    size_t cap = (size_t)maxdoc + 1;
    enum cm_status st = CM_OK;
    int rc;

    *vals = NULL;
    a = cm_calloc(cap, sizeof *a);
    if (!a)
        return CM_NOMEM;
    rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), KV_DB_COLUMNS),
                         &cur);
    if (rc) {
        cm_free(a);
        return kv_from_mdb(rc, "column cursor");
    }
    idx_col_key(start, f, 0);
    k.mv_data = start;
    k.mv_size = sizeof start;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        size_t base;
        if (k.mv_size != 6 || p[0] != 'c' || p[1] != (uint8_t)f)
            break;
        if (v.mv_size % 8 || v.mv_size > IDX_CHUNK * 8) {
            st = CM_CORRUPT;
            break;
        }
        base = (size_t)idx_rd_be32(p + 2) * IDX_CHUNK;
        if (base >= cap)
            break;
        memcpy(a + base, v.mv_data,
               base + v.mv_size / 8 > cap ? (cap - base) * 8 : v.mv_size);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "column walk");
    mdb_cursor_close(cur);
    if (st != CM_OK) {
        cm_free(a);
        return st;
    }
    *vals = a;
    return CM_OK;
}

/* Builds the order of (f, desc, seed) over universe all; tie (NULL for the
 * tie-break order itself) gives the tie-break order to refine. */
static enum cm_status build(struct kv_txn *t, enum idx_sort_field f, bool desc,
                            uint64_t seed, const roaring_bitmap_t *all,
                            const struct idx_order *tie, struct idx_order **out)
{
    uint64_t n64 = roaring_bitmap_get_cardinality(all);
    uint32_t maxdoc = n64 ? roaring_bitmap_maximum(all) : 0;
    uint64_t *col = NULL;
    struct kitem *v = NULL, *tmp = NULL, *res;
    struct idx_order *o = NULL;
    size_t n = (size_t)n64, i = 0;
    enum cm_status st;

    *out = NULL;
    if (tie && tie->n != n)
        return CM_INTERNAL;
    st = read_column(t, f == IDX_SF_RANDOM ? IDX_SF_ID : f, maxdoc, &col);
    if (st != CM_OK)
        return st;
    o = cm_calloc(1, sizeof *o);
    v = cm_malloc((n ? n : 1) * sizeof *v);
    tmp = cm_malloc((n ? n : 1) * sizeof *tmp);
    if (!o || !v || !tmp) {
        st = CM_NOMEM;
        goto out;
    }
    o->docids = cm_malloc((n ? n : 1) * sizeof *o->docids);
    if (!o->docids) {
        st = CM_NOMEM;
        goto out;
    }
    if (tie) {
        for (i = 0; i < n; i++)
            v[i].d = tie->docids[i];
    } else {
        roaring_uint32_iterator_t it;
        roaring_init_iterator(all, &it);
        for (; it.has_value && i < n; roaring_advance_uint32_iterator(&it))
            v[i++].d = it.current_value;
    }
    for (i = 0; i < n; i++) {
        uint64_t k = col[v[i].d];
        if (f == IDX_SF_RANDOM)
            k = idx_enc_double(idx_random_key((uint64_t)idx_dec_i64(k), seed));
        v[i].k = desc ? ~k : k;
    }
    res = radix(v, tmp, n);
    if (!res) {
        st = CM_NOMEM;
        goto out;
    }
    o->rank = cm_malloc(((size_t)maxdoc + 1) * sizeof *o->rank);
    if (!o->rank) {
        st = CM_NOMEM;
        goto out;
    }
    memset(o->rank, 0xFF, ((size_t)maxdoc + 1) * sizeof *o->rank);
    for (i = 0; i < n; i++) {
        o->docids[i] = res[i].d;
        o->rank[res[i].d] = (uint32_t)i;
    }
    o->n = (uint32_t)n;
    o->maxdoc = maxdoc;
    *out = o;
    o = NULL;
out:
    order_free(o);
    cm_free(v);
    cm_free(tmp);
    cm_free(col);
    return st;
}

static struct idx_slot_key slot_key(struct kv_store *s, enum idx_sort_field f,
                                    bool desc, uint64_t seed)
{
    return (struct idx_slot_key){s, (uint64_t)f | (uint64_t)desc << 8, seed};
}

void idx_order_peek(struct kv_store *s, enum idx_sort_field f, bool desc,
                    uint64_t seed, uint64_t gen, struct idx_order **out)
{
    struct idx_slot_key key;
    void *v;

    *out = NULL;
    if (gen == 0)
        return;
    if (f != IDX_SF_RANDOM)
        seed = 0;
    key = slot_key(s, f, desc, seed);
    idx_slots_peek(&orders, &key, gen, &v);
    *out = v;
}

struct admit_arg {
    struct kv_store *s;
    enum idx_sort_field f;
    bool desc;
    uint64_t seed;
};

/* With the table's mutex held: may this query build the order? */
static bool admit(uint64_t *requests, void *arg)
{
    const struct admit_arg *a = arg;
    /* A random seed is often used once: build from its second request. */
    if (a->f == IDX_SF_RANDOM && ++*requests < 2)
        return false;
    /* With a builder running for this store, queries never build: they
     * hand the build over and use the candidate plan meanwhile. */
    if (!in_builder && builder_ask(a->s, (uint8_t)a->f, a->desc, a->seed))
        return false;
    return true;
}

enum cm_status idx_order_get(struct kv_txn *t, enum idx_sort_field f, bool desc,
                             uint64_t seed, uint64_t gen,
                             const roaring_bitmap_t *all,
                             struct idx_order **out)
{
    struct kv_store *s = kv_txn_store(t);
    struct idx_order *tie = NULL, *built = NULL;
    struct idx_slot *sl;
    struct idx_slot_key key;
    struct admit_arg aa;
    enum cm_status st = CM_OK;
    void *v;

    *out = NULL;
    if (gen == 0)
        return CM_OK;
    if (f != IDX_SF_RANDOM)
        seed = 0;
    if (f == IDX_SF_TIE)
        desc = false;
    key = slot_key(s, f, desc, seed);
    aa = (struct admit_arg){s, f, desc, seed};
    switch (idx_slots_get(&orders, &key, gen, admit, &aa, &v, &sl)) {
    case IDX_SLOT_HIT: *out = v; return CM_OK;
    case IDX_SLOT_NONE:
        return CM_OK; /* being built elsewhere, or not now: candidate plan */
    case IDX_SLOT_CLAIMED: break;
    }

    if (f != IDX_SF_TIE)
        st = idx_order_get(t, IDX_SF_TIE, false, 0, gen, all, &tie);
    if (st == CM_OK && (tie || f == IDX_SF_TIE))
        st = build(t, f, desc, seed, all, tie, &built);
    idx_order_release(tie);

    idx_slots_publish(&orders, sl, gen, built, false);
    *out = built;
    if (st == CM_NOMEM) {
        cm_warn("index", "no memory for a sort order cache; using the "
                         "candidate plan");
        st = CM_OK;
    }
    return st;
}

/* Per-block docid bitmaps: block b holds docids[b*IDX_ORDER_BLOCK ...]. */
static enum cm_status build_blocks(const struct idx_order *o,
                                   roaring_bitmap_t ***out, uint32_t *nout)
{
    uint32_t nb = (o->n + IDX_ORDER_BLOCK - 1) / IDX_ORDER_BLOCK;
    const uint32_t *blk;
    uint32_t *start = NULL, *ids = NULL;
    roaring_bitmap_t **b = NULL;
    enum cm_status st = CM_OK;

    *out = NULL;
    *nout = 0;
    blk = o->rank; /* docid -> position; divided by the block size below */
    start = cm_calloc((size_t)nb + 1, sizeof *start);
    ids = cm_malloc(((size_t)o->n + 1) * sizeof *ids);
    b = cm_calloc(nb ? nb : 1, sizeof *b);
    if (!blk || !start || !ids || !b) {
        st = CM_NOMEM;
        goto out;
    }
    /* A counting sort by block of the docids in increasing docid order,
     * so each block's list comes out sorted. */
    for (uint32_t x = 0; x < nb; x++)
        start[x + 1] = start[x] + (x + 1 == nb ? o->n - x * IDX_ORDER_BLOCK
                                               : IDX_ORDER_BLOCK);
    {
        uint32_t *fill = cm_malloc(((size_t)nb + 1) * sizeof *fill);
        if (!fill) {
            st = CM_NOMEM;
            goto out;
        }
        memcpy(fill, start, ((size_t)nb + 1) * sizeof *fill);
        for (uint32_t d = 0; d <= o->maxdoc; d++)
            if (blk[d] != UINT32_MAX)
                ids[fill[blk[d] / IDX_ORDER_BLOCK]++] = d;
        cm_free(fill);
    }
    for (uint32_t x = 0; x < nb; x++) {
        b[x] = roaring_bitmap_of_ptr(start[x + 1] - start[x], ids + start[x]);
        if (!b[x]) {
            st = CM_NOMEM;
            goto out;
        }
        roaring_bitmap_run_optimize(b[x]);
    }
    *out = b;
    *nout = nb;
    b = NULL;
out:
    if (b) {
        for (uint32_t x = 0; x < nb; x++)
            idx_bm_free(b[x]);
        cm_free(b);
    }
    cm_free(start);
    cm_free(ids);
    return st;
}

enum cm_status idx_order_blocks(struct idx_order *o,
                                roaring_bitmap_t *const **blocks,
                                uint32_t *nblocks)
{
    roaring_bitmap_t **b = NULL;
    uint32_t nb = 0;
    enum cm_status st;
    bool mine = false;

    *blocks = NULL;
    *nblocks = 0;
    pthread_mutex_lock(&blk_mu);
    if (o->blocks) {
        *blocks = o->blocks;
        *nblocks = o->nblocks;
    } else if (!o->blocks_building) {
        o->blocks_building = true;
        mine = true;
    }
    pthread_mutex_unlock(&blk_mu);
    if (!mine)
        return CM_OK; /* built already, or being built: walk without */
    st = build_blocks(o, &b, &nb);
    pthread_mutex_lock(&blk_mu);
    o->blocks_building = false;
    if (st == CM_OK) {
        o->blocks = b;
        o->nblocks = nb;
        *blocks = b;
        *nblocks = nb;
    }
    pthread_mutex_unlock(&blk_mu);
    return st == CM_NOMEM ? CM_OK : st;
}

/* ---- Background builder ------------------------------------------------ */

static struct builder *builder_of_locked(struct kv_store *s)
{
    for (size_t i = 0; i < BUILDERS; i++)
        if (builders[i].s == s && !builders[i].stop)
            return &builders[i];
    return NULL;
}

/* Queues (f, desc, seed) for s's builder unless already queued.  Returns
 * false when s has no builder (the caller builds). */
static bool builder_ask(struct kv_store *s, uint8_t f, bool desc, uint64_t seed)
{
    struct builder *b;
    bool have;

    pthread_mutex_lock(&bmu);
    b = builder_of_locked(s);
    have = b != NULL;
    if (b) {
        bool dup = false;
        for (size_t i = 0; i < b->n && !dup; i++)
            dup =
                b->q[i].f == f && b->q[i].desc == desc && b->q[i].seed == seed;
        if (!dup && b->n < BUILD_PENDING) {
            b->q[b->n++] = (struct breq){f, desc, seed};
            pthread_cond_broadcast(&bcv);
        }
    }
    pthread_mutex_unlock(&bmu);
    return have;
}

/* Builds (or finds current) the order of r in a fresh read txn of s. */
static enum cm_status build_one(struct kv_store *s, const struct breq *r)
{
    struct kv_txn *t = NULL;
    struct idx_order *o = NULL;
    roaring_bitmap_t *all = NULL;
    uint8_t k[1] = {IDX_P_ALL};
    uint64_t gen = 0;
    enum cm_status st = kv_read_begin(s, &t);

    if (st == CM_OK)
        st = idx_gen_get(t, &gen);
    if (st == CM_OK && gen)
        st = idx_bm_get(t, KV_DB_POSTINGS, k, 1, &all);
    if (st == CM_OK && gen)
        st = idx_order_get(t, (enum idx_sort_field)r->f, r->desc, r->seed, gen,
                           all, &o);
    idx_order_release(o);
    idx_bm_free(all);
    kv_read_end(t);
    return st;
}

static void *builder_main(void *arg)
{
    struct builder *b = arg;
    struct kv_store *s;

    in_builder = true;
    pthread_mutex_lock(&bmu);
    s = b->s;
    for (;;) {
        struct breq r;
        enum cm_status st;
        while (!b->stop && b->n == 0)
            pthread_cond_wait(&bcv, &bmu);
        if (b->stop)
            break;
        r = b->q[0];
        memmove(b->q, b->q + 1, (b->n - 1) * sizeof *b->q);
        b->n--;
        b->busy = true;
        pthread_mutex_unlock(&bmu);
        st = build_one(s, &r);
        if (st != CM_OK)
            cm_warn("index", "background sort order build failed: %s",
                    cm_status_str(st));
        pthread_mutex_lock(&bmu);
        b->busy = false;
        if (st == CM_OK)
            b->built++;
        else
            b->failed++;
        pthread_cond_broadcast(&bidle);
    }
    b->busy = false;
    pthread_cond_broadcast(&bidle);
    pthread_mutex_unlock(&bmu);
    return NULL;
}

enum cm_status idx_builder_start(struct kv_store *s)
{
    struct builder *b = NULL;

    pthread_mutex_lock(&bmu);
    for (size_t i = 0; i < BUILDERS; i++)
        if (builders[i].s == s) {
            pthread_mutex_unlock(&bmu);
            return CM_INVALID; /* one per store */
        }
    for (size_t i = 0; i < BUILDERS && !b; i++)
        if (!builders[i].s)
            b = &builders[i];
    if (!b) {
        pthread_mutex_unlock(&bmu);
        return CM_TOOBIG;
    }
    memset(b, 0, sizeof *b);
    b->s = s;
    /* Warm the default sort (Peek's created_at DESC), and with it the
     * tie-break order every other order starts from. */
    b->q[b->n++] = (struct breq){IDX_SF_CREATED, true, 0};
    if (pthread_create(&b->th, NULL, builder_main, b) != 0) {
        b->s = NULL;
        pthread_mutex_unlock(&bmu);
        return CM_INTERNAL;
    }
    pthread_mutex_unlock(&bmu);
    return CM_OK;
}

void idx_builder_idle(struct kv_store *s)
{
    struct builder *b;
    pthread_mutex_lock(&bmu);
    while ((b = builder_of_locked(s)) && (b->n || b->busy))
        pthread_cond_wait(&bidle, &bmu);
    pthread_mutex_unlock(&bmu);
}

void idx_builder_stats(struct kv_store *s, unsigned long *built,
                       unsigned long *failed)
{
    struct builder *b;
    pthread_mutex_lock(&bmu);
    b = builder_of_locked(s);
    *built = b ? b->built : 0;
    *failed = b ? b->failed : 0;
    pthread_mutex_unlock(&bmu);
}

void idx_builder_stop(struct kv_store *s)
{
    struct builder *b = NULL;
    pthread_t th;

    if (!s)
        return;
    pthread_mutex_lock(&bmu);
    b = builder_of_locked(s);
    if (!b) {
        pthread_mutex_unlock(&bmu);
        return;
    }
    b->stop = true;
    b->n = 0;
    th = b->th;
    pthread_cond_broadcast(&bcv);
    pthread_mutex_unlock(&bmu);
    pthread_join(th, NULL);
    pthread_mutex_lock(&bmu);
    memset(b, 0, sizeof *b);
    pthread_mutex_unlock(&bmu);
}
