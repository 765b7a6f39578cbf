/*
 * idx_bulk.c - the bulk index build behind idx_rebuild: every scene is
 * derived once, in increasing docid order, into memory, and then every key
 * of the (empty) index databases is written once, in key order, with
 * MDB_APPEND.  Nothing is looked up in LMDB and nothing is written twice.
 * The output is byte-identical to the incremental writer's bitmaps and to
 * the dictionary positions the writer gives an empty store ((i+1) *
 * IDX_GAP); docs/INDEX.md "Rebuild" has the details and figures.
 *
 * Derive hands the builder three kinds of keys apart (split entries):
 *
 * Int facets (18 per scene): a dense column of values per field, by scene
 * ordinal, counting-sorted by value at write time.
 *
 * Listed text tokens (fingerprints, numbers of 5+ digits: nearly all
 * distinct per scene): one item (key bytes, docid) each, sorted once at
 * write time (stably: each key's docids stay in docid order).
 *
 * The other posting and text keys.  One open-addressing table of distinct
 * keys: a slot holds 32 bits of the hash next to the key's index, an entry
 * (32 bytes) the key's first 12 bytes as two integers, so a probe reads a
 * slot and one entry line and touches the key arena only for longer keys.
 * A scene's keys are looked up in batches (hash and prefetch every slot,
 * then every entry, then compare and add) so their cache misses overlap.
 * Each key keeps its docids in increasing order: the first inline, the
 * others in arrays of 4, 8, ... 4096 from one pool (an outgrown array
 * goes to its size class's free list; a full 4096 array is moved into the
 * key's roaring bitmap and reused).  Scenes come in increasing docid
 * order, so a key derived twice by one scene is skipped by comparing with
 * the key's last docid: no per-scene sort.  At write time the table's keys
 * of a db are sorted and merged in key order with the facets (postings)
 * or the token list (text); the tag, performer, studio, group and gallery
 * postings give the reverse index's entries too (rev_put).
 *
 * Dictionaries.  Per string sort field, one item (key bytes, docid) per
 * scene that has a value; at write time the items are sorted, each run of
 * equal keys becomes one entry {(i+1) * IDX_GAP, run length} and fills the
 * column cells of its docids.
 *
 * Columns.  One array per sort field by docid; every chunk of IDX_CHUNK
 * docids of which one was added is written for every field, as the
 * incremental writer does.
 *
 * Keys are sorted with a string radix sort on 8-byte big-endian words:
 * sort by the word at depth d (MSD radix sort on its bytes, skipping bytes
 * that are the same in every item), then within each run of equal words
 * the keys that end inside the word come first (shorter first: each is a
 * prefix of the longer ones) and the others are sorted from depth d + 8.
 * Small runs are insertion-sorted with memcmp.
 */
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL /* keys over 12 bytes: no call, no dispatch */
#include <xxhash.h>

#include "common/cm_alloc.h"
#include "index/idx_int.h"

/* ---- String sort ---------------------------------------------------- */

/* A key to sort: off locates u16 length ‖ bytes in an arena; val is the
 * caller's (docid or key index). */
struct sitem {
    uint64_t w; /* big-endian word of the key at the current depth */
    uint32_t off;
    uint32_t val;
};

static size_t klen_at(const uint8_t *arena, uint32_t off)
{
    uint16_t n;
    memcpy(&n, arena + off, 2);
    return n;
}

static uint64_t word_at(const uint8_t *arena, uint32_t off, size_t depth)
{
    size_t n = klen_at(arena, off);
    const uint8_t *k = arena + off + 2;
    uint64_t v = 0;
    if (depth + 8 <= n)
        return idx_rd_be64(k + depth);
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (depth + i < n ? k[depth + i] : 0);
    return v;
}

/* memcmp order of the keys of a and b from depth on. */
static int scmp(const uint8_t *arena, const struct sitem *a,
                const struct sitem *b, size_t depth)
{
    size_t an = klen_at(arena, a->off), bn = klen_at(arena, b->off);
    size_t n = (an < bn ? an : bn) - depth;
    int c = memcmp(arena + a->off + 2 + depth, arena + b->off + 2 + depth, n);
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

#define MSD_SMALL 64

/* Sorts the n items at src by w, stably: MSD radix sort on its bytes from
 * byte b down (7 is the most significant), skipping bytes equal in every
 * item, insertion sort below MSD_SMALL items.  Each pass scatters into
 * the other array and the buckets are sorted from there (no copy back);
 * the result ends in dst when flip is set, else in src. */
static void msd_words(struct sitem *src, struct sitem *dst, size_t n, int b,
                      bool flip)
{
    size_t cnt[256], pos[256];

    for (; b >= 0 && n > MSD_SMALL; b--) {
        unsigned sh = 8 * (unsigned)b;
        size_t at = 0;
        memset(cnt, 0, sizeof cnt);
        for (size_t i = 0; i < n; i++)
            cnt[(src[i].w >> sh) & 0xFF]++;
        if (cnt[(src[0].w >> sh) & 0xFF] == n)
            continue; /* the same byte in every item */
        for (int d = 0; d < 256; d++) {
            pos[d] = at;
            at += cnt[d];
        }
        for (size_t i = 0; i < n; i++)
            dst[pos[(src[i].w >> sh) & 0xFF]++] = src[i];
        at = 0;
        for (int d = 0; d < 256; at += cnt[d++])
            if (cnt[d])
                msd_words(dst + at, src + at, cnt[d], b - 1, !flip);
        return;
    }
    for (size_t i = 1; b >= 0 && i < n; i++) { /* b < 0: all equal */
        struct sitem x = src[i];
        size_t j = i;
        while (j > 0 && src[j - 1].w > x.w) {
            src[j] = src[j - 1];
            j--;
        }
        src[j] = x;
    }
    if (flip)
        memcpy(dst, src, n * sizeof *src);
}

#define SSORT_SMALL 24
#define SSORT_AHEAD 8 /* prefetch distance of the next words' fetch */

/* Sorts v[0..n) by key bytes (memcmp, then length), all equal before
 * depth.  v[i].w must hold the word at depth.  tmp: n items of scratch. */
static void ssort(const uint8_t *arena, struct sitem *v, struct sitem *tmp,
                  size_t n, size_t depth)
{
    size_t a = 0;

    if (n < 2)
        return;
    if (n <= SSORT_SMALL) {
        for (size_t i = 1; i < n; i++) {
            struct sitem x = v[i];
            size_t j = i;
            while (j > 0 && scmp(arena, &x, &v[j - 1], depth) < 0) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
        return;
    }
    msd_words(v, tmp, n, 7, false);
    while (a < n) {
        size_t b = a + 1, ended = 0;
        while (b < n && v[b].w == v[a].w)
            b++;
        if (b - a > 1) {
            /* Keys ending inside the word first, by length (counting sort
             * on length - depth, 0..8), then the others from depth + 8. */
            size_t cnt[10] = {0}, pos[10];
            for (size_t i = a; i < b; i++) {
                size_t n_ = klen_at(arena, v[i].off);
                cnt[n_ <= depth + 8 ? n_ - depth : 9]++;
            }
            ended = b - a - cnt[9];
            if (ended) {
                size_t sum = 0;
                for (int d = 0; d < 10; d++) {
                    pos[d] = sum;
                    sum += cnt[d];
                }
                for (size_t i = a; i < b; i++) {
                    size_t n_ = klen_at(arena, v[i].off);
                    tmp[pos[n_ <= depth + 8 ? n_ - depth : 9]++] = v[i];
                }
                memcpy(v + a, tmp, (b - a) * sizeof *v);
            }
            if (b - a - ended > 1) {
                for (size_t i = a + ended; i < b; i++) {
                    if (i + SSORT_AHEAD < b) { /* items in random order */
                        const uint8_t *p = arena + v[i + SSORT_AHEAD].off;
                        __builtin_prefetch(p);
                        __builtin_prefetch(p + 2 + depth + 8);
                    }
                    v[i].w = word_at(arena, v[i].off, depth + 8);
                }
                ssort(arena, v + a + ended, tmp, b - a - ended, depth + 8);
            }
        }
        a = b;
    }
}

/* Sorts v[0..n) by w, stably: an LSD radix sort on the bytes of w that
 * are not the same in every item.  tmp: n items of scratch. */
static void lsd_words(struct sitem *v, struct sitem *tmp, size_t n)
{
    struct sitem *src = v, *dst = tmp;
    uint64_t diff = 0;

    for (size_t i = 1; i < n; i++)
        diff |= v[i].w ^ v[0].w;
    for (unsigned sh = 0; sh < 64; sh += 8) {
        size_t cnt[256] = {0}, at = 0;
        if (!((diff >> sh) & 0xFF))
            continue;
        for (size_t i = 0; i < n; i++)
            cnt[(src[i].w >> sh) & 0xFF]++;
        for (int d = 0; d < 256; d++) {
            size_t c = cnt[d];
            cnt[d] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[cnt[(src[i].w >> sh) & 0xFF]++] = src[i];
        {
            struct sitem *x = src;
            src = dst;
            dst = x;
        }
    }
    if (src != v)
        memcpy(v, src, n * sizeof *v);
}

/* ---- The builder ------------------------------------------------------ */

/* A distinct posting or text key: 32 bytes, so a probe that finds its
 * slot reads one cache line more (the arena only for keys longer than
 * KEY_INLINE bytes). */
#define KEY_INLINE 12
struct bkey {
    uint32_t n;    /* docids in the array (or 1: last) */
    uint32_t ids;  /* offset of the docid array in pool */
    uint32_t last; /* the last docid added (the only one when n == 1) */
    uint32_t koff; /* into keys: u16 length ‖ bytes */
    uint16_t klen;
    uint8_t db;
    uint8_t cls; /* the array holds 4 << cls docids; NO_ARRAY */
    uint32_t h1; /* the key's head: see struct khead */
    uint64_t h0;
};

/* The first KEY_INLINE bytes of a key as little-endian words, zero
 * padded: compared and hashed as integers. */
struct khead {
    uint64_t w0; /* bytes 0..7 */
    uint32_t w1; /* bytes 8..11 */
};

/* Items (key bytes, docid) appended in docid order and sorted once when
 * written: the values of one dictionary-valued sort field, or the text
 * tokens that are nearly always distinct (idx_token_listed()). */
struct blist {
    struct cm_buf arena; /* u16 length ‖ key bytes, per item */
    struct sitem *v;
    size_t n, cap;
};

/* The int facet keys (IDX_P_INT ‖ field ‖ 0x00, or ‖ 0x01 ‖ BE8 value):
 * derive gives every scene the same fields, each once (e->fac), so each
 * field is a dense column of values by scene ordinal (the ordinal's docid
 * in fac_doc), sorted by value when written.  A field has few distinct
 * values (2 to ~24k at 1M scenes) but every scene has one: in the key
 * table they were a fifth of the probes, and the fields with thousands of
 * values (date, durations) most of its cache misses.  A value is kept in
 * 4 bytes (v32: 0 for null, else the integer + 1) unless one does not fit
 * (v64: idx_enc_i64 value, 0 for null). */
struct bfacet {
    uint32_t *v32;
    uint64_t *v64; /* instead of v32 once a value did not fit */
    uint8_t field;
};

/* Docid arrays: classes of 4 << cls docids up to SPILL_CLS (4096); a
 * full array of that class is moved into the key's roaring bitmap (dense
 * keys then take about a bit per scene instead of four bytes). */
#define POOL_CLASSES 11
#define SPILL_CLS    10
#define NO_ARRAY     0xFF /* bkey.cls: the only docid is bkey.last */

struct idx_bulk {
    struct kv_txn *t;
    struct idx_ecache ec;
    struct idx_entries e; /* scratch: the scene being added */
    /* posting and text keys */
    struct cm_buf keys;
    struct bkey *k;
    size_t nk, capk;
    roaring_bitmap_t **spill; /* [key index]: docids moved out of full
                                 arrays, or NULL; capspill entries */
    size_t capspill;
    uint64_t *slots; /* hash >> 32 << 32 | (key index + 1); 0 = empty */
    size_t capslots;
    uint32_t *pool; /* docid arrays */
    size_t npool, cappool;
    uint32_t freel[POOL_CLASSES]; /* free array of each class: offset + 1 */
    struct blist tok;             /* the idx_token_listed() tokens */
    struct bfacet fac[IDX_MAX_FACETS]; /* in the first scene's order */
    size_t nfac;
    uint32_t *fac_doc; /* [scene ordinal]: docid */
    size_t nord, capord;
    size_t nscenes;             /* the store's scene count (presize) */
    bool is_dict[IDX_SF_COUNT]; /* idx_sfield_kind() == IDX_SK_DICT */
    struct kv_revapp *rev; /* the reverse index, written with the postings */
    uint32_t *rscr;        /* a spilled key's docids (rev_put) */
    size_t caprscr;
    /* sort fields */
    struct blist dict[IDX_SF_COUNT];
    uint64_t *cols[IDX_SF_COUNT]; /* [field][docid]: its column, capdocs
                                     values (a multiple of IDX_CHUNK) */
    uint8_t *present; /* [docid / IDX_CHUNK]: a docid of the chunk was added */
    size_t capdocs;
    uint32_t lastdoc;
    bool any;
};

static uint64_t fmix64(uint64_t v)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    v *= 0xc4ceb9fe1a85ec53ULL;
    return v ^ (v >> 33);
}

__attribute__((noinline)) static uint64_t long_hash(uint8_t db,
                                                    const uint8_t *k, size_t n)
{
    return XXH3_64bits_withSeed(k, n, db);
}

/* The hash of key (db, k[0..n)) with head hd: a key of at most
 * KEY_INLINE bytes (most keys) is mixed from its head words, a longer
 * one hashed whole. */
static inline uint64_t key_hash(uint8_t db, const uint8_t *k, size_t n,
                                struct khead hd)
{
    if (n > KEY_INLINE)
        return long_hash(db, k, n);
    return fmix64(hd.w0 ^
                  ((uint64_t)hd.w1 | (uint64_t)n << 32 | (uint64_t)db << 40) *
                      0x9E3779B97F4A7C15ULL);
}

/* Makes room for more new keys at a load of at most one half. */
static enum cm_status slots_reserve(struct idx_bulk *b, size_t more)
{
    size_t cap = b->capslots ? b->capslots : 1024;
    uint64_t *s;

    while ((b->nk + more) * 2 > cap)
        cap *= 2;
    if (cap == b->capslots)
        return CM_OK;
    s = cm_calloc_big(cap, sizeof *s);
    if (!s)
        return CM_NOMEM;
    for (size_t i = 0; i < b->nk; i++) {
        const struct bkey *x = &b->k[i];
        const uint8_t *kb = (const uint8_t *)b->keys.data + x->koff + 2;
        uint64_t h = key_hash(x->db, kb, x->klen, (struct khead){x->h0, x->h1});
        size_t j = (size_t)h & (cap - 1);
        while (s[j])
            j = (j + 1) & (cap - 1);
        s[j] = (h >> 32 << 32) | (i + 1);
    }
    cm_free(b->slots);
    b->slots = s;
    b->capslots = cap;
    return CM_OK;
}

/* OUT *off: an array of 4 << cls docids in the pool. */
static enum cm_status pool_take(struct idx_bulk *b, unsigned cls, uint32_t *off)
{
    size_t sz = (size_t)4 << cls;
    if (b->freel[cls]) {
        *off = b->freel[cls] - 1;
        b->freel[cls] = b->pool[*off];
        return CM_OK;
    }
    if (b->npool + sz > b->cappool) {
        size_t cap = b->cappool ? b->cappool : 1 << 16;
        uint32_t *p;
        while (cap < b->npool + sz)
            cap *= 2;
        if (cap > (size_t)UINT32_MAX)
            return CM_TOOBIG;
        p = cm_realloc_big(b->pool, cap * sizeof *p);
        if (!p)
            return CM_NOMEM;
        b->pool = p;
        b->cappool = cap;
    }
    *off = (uint32_t)b->npool;
    b->npool += sz;
    return CM_OK;
}

static void pool_give(struct idx_bulk *b, unsigned cls, uint32_t off)
{
    b->pool[off] = b->freel[cls];
    b->freel[cls] = off + 1;
}

/* Moves the docids of key i's full array into its bitmap. */
static enum cm_status spill(struct idx_bulk *b, size_t i)
{
    struct bkey *x = &b->k[i];
    if (!b->spill) {
        b->spill = cm_calloc_big(b->capk, sizeof *b->spill);
        if (!b->spill)
            return CM_NOMEM;
        b->capspill = b->capk;
    }
    if (!b->spill[i]) {
        b->spill[i] = roaring_bitmap_create();
        if (!b->spill[i])
            return CM_NOMEM;
    }
    roaring_bitmap_add_many(b->spill[i], x->n, b->pool + x->ids);
    x->n = 0;
    return CM_OK;
}

static enum cm_status docid_add(struct idx_bulk *b, struct bkey *x,
                                uint32_t docid)
{
    enum cm_status st;
    uint32_t off;

    if (x->last == docid)
        return CM_OK; /* the scene derived the key twice */
    if (x->cls == NO_ARRAY) {
        st = pool_take(b, 0, &off);
        if (st != CM_OK)
            return st;
        b->pool[off] = x->last;
        x->ids = off;
        x->cls = 0;
    } else if (x->n == (uint32_t)4 << x->cls) {
        if (x->cls == SPILL_CLS) {
            st = spill(b, (size_t)(x - b->k));
            if (st != CM_OK)
                return st;
        } else {
            st = pool_take(b, x->cls + 1u, &off);
            if (st != CM_OK)
                return st;
            memcpy(b->pool + off, b->pool + x->ids, (size_t)x->n * 4);
            pool_give(b, x->cls, x->ids);
            x->ids = off;
            x->cls++;
        }
    }
    b->pool[x->ids + x->n++] = docid;
    x->last = docid;
    return CM_OK;
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LE64(v) (v)
#define LE32(v) (v)
#else
#define LE64(v) __builtin_bswap64(v)
#define LE32(v) __builtin_bswap32(v)
#endif

/* The head of k[0..n) (n >= 1).  Reads KEY_INLINE bytes at k even when n
 * is smaller: the caller guarantees they are inside its buffer. */
static inline struct khead key_head(const uint8_t *k, size_t n)
{
    struct khead hd;
    memcpy(&hd.w0, k, 8);
    memcpy(&hd.w1, k + 8, 4);
    hd.w0 = LE64(hd.w0);
    hd.w1 = LE32(hd.w1);
    if (n < 8) {
        hd.w0 &= ((uint64_t)1 << (8 * n)) - 1;
        hd.w1 = 0;
    } else if (n < KEY_INLINE) {
        hd.w1 &= ((uint32_t)1 << (8 * (n - 8))) - 1;
    }
    return hd;
}

static bool key_is(const struct idx_bulk *b, const struct bkey *x, uint8_t db,
                   const uint8_t *k, size_t n, struct khead hd)
{
    return x->h0 == hd.w0 && x->h1 == hd.w1 && x->klen == n && x->db == db &&
           (n <= KEY_INLINE || memcmp(b->keys.data + x->koff + 2 + KEY_INLINE,
                                      k + KEY_INLINE, n - KEY_INLINE) == 0);
}

/* The key (db, k[0..n)) of hash h; when new, it is created with the one
 * docid (room reserved by slots_reserve).  OUT *out. */
static enum cm_status key_get(struct idx_bulk *b, uint64_t h, uint8_t db,
                              const uint8_t *k, size_t n, struct khead hd,
                              uint32_t docid, struct bkey **out)
{
    uint64_t tag = h >> 32 << 32;
    size_t j;
    struct bkey *x;
    enum cm_status st;
    uint16_t n16 = (uint16_t)n;

    for (j = (size_t)h & (b->capslots - 1); b->slots[j];
         j = (j + 1) & (b->capslots - 1)) {
        if ((b->slots[j] & 0xFFFFFFFF00000000ULL) != tag)
            continue;
        x = &b->k[(b->slots[j] & 0xFFFFFFFFu) - 1];
        if (key_is(b, x, db, k, n, hd)) {
            *out = x;
            return CM_OK;
        }
    }
    if (n > UINT16_MAX || b->nk >= UINT32_MAX - 1)
        return CM_TOOBIG;
    if (b->nk == b->capk) {
        size_t cap = b->capk ? b->capk * 2 : 4096;
        struct bkey *nk = cm_realloc_big(b->k, cap * sizeof *nk);
        if (!nk)
            return CM_NOMEM;
        b->k = nk;
        b->capk = cap;
        if (b->spill) {
            roaring_bitmap_t **sp = cm_realloc_big(b->spill, cap * sizeof *sp);
            if (!sp)
                return CM_NOMEM;
            memset(sp + b->capspill, 0, (cap - b->capspill) * sizeof *sp);
            b->spill = sp;
            b->capspill = cap;
        }
    }
    x = &b->k[b->nk];
    memset(x, 0, sizeof *x);
    x->cls = NO_ARRAY;
    x->n = 1;
    x->last = docid;
    x->koff = (uint32_t)b->keys.len;
    x->klen = n16;
    x->db = db;
    x->h0 = hd.w0;
    x->h1 = hd.w1;
    st = cm_buf_append(&b->keys, &n16, 2);
    if (st == CM_OK)
        st = cm_buf_append(&b->keys, k, n);
    if (st != CM_OK) {
        cm_buf_truncate(&b->keys, x->koff);
        return st;
    }
    b->nk++;
    b->slots[j] = tag | b->nk;
    *out = x;
    return CM_OK;
}

static enum cm_status list_add(struct blist *d, const void *k, size_t n,
                               uint32_t docid);

/* The 4-byte form of idx_enc_i64 value v (0: null), or UINT32_MAX when
 * it does not fit. */
static uint32_t fac_narrow(uint64_t v)
{
    uint64_t u = v ^ ((uint64_t)1 << 63); /* the integer, two's complement */
    if (!v)
        return 0;
    return u < UINT32_MAX - 1 ? (uint32_t)u + 1 : UINT32_MAX;
}

static uint64_t fac_wide(uint32_t s)
{
    return s ? ((uint64_t)(s - 1) ^ ((uint64_t)1 << 63)) : 0;
}

/* Makes room for one more scene ordinal in fac_doc and every column. */
static enum cm_status facets_room(struct idx_bulk *b)
{
    size_t cap = b->capord ? b->capord * 2 : b->nscenes + 1024;
    uint32_t *d;

    if (b->nord < b->capord)
        return CM_OK;
    d = cm_realloc_big(b->fac_doc, cap * sizeof *d);
    if (!d)
        return CM_NOMEM;
    b->fac_doc = d;
    for (size_t i = 0; i < b->nfac; i++) {
        struct bfacet *f = &b->fac[i];
        void *p = f->v64 ? cm_realloc_big(f->v64, cap * 8)
                         : cm_realloc_big(f->v32, cap * 4);
        if (!p)
            return CM_NOMEM;
        if (f->v64)
            f->v64 = p;
        else
            f->v32 = p;
    }
    b->capord = cap;
    return CM_OK;
}

/* Stores the scene's int facets (e->fac) at the next ordinal.  The first
 * scene defines the fields; every scene must give the same ones in the
 * same order (derive_facets does): CM_INTERNAL otherwise. */
static enum cm_status facets_add(struct idx_bulk *b,
                                 const struct idx_entries *e, uint32_t docid)
{
    size_t o = b->nord;
    enum cm_status st;

    if (o == 0 && b->nfac == 0) {
        for (size_t i = 0; i < e->nfac; i++)
            b->fac[i].field = e->fac[i].field;
        b->nfac = e->nfac;
    }
    if (e->nfac != b->nfac)
        return CM_INTERNAL;
    st = facets_room(b);
    if (st != CM_OK)
        return st;
    for (size_t i = 0; i < e->nfac; i++) {
        struct bfacet *f = &b->fac[i];
        uint32_t s32 = fac_narrow(e->fac[i].v);
        if (e->fac[i].field != f->field)
            return CM_INTERNAL;
        if (s32 == UINT32_MAX && !f->v64) { /* widen the column */
            uint64_t *w = cm_malloc_big(b->capord * 8);
            if (!w)
                return CM_NOMEM;
            for (size_t j = 0; j < o; j++)
                w[j] = fac_wide(f->v32[j]);
            cm_free(f->v32);
            f->v32 = NULL;
            f->v64 = w;
        }
        if (f->v64)
            f->v64[o] = e->fac[i].v;
        else
            f->v32[o] = s32;
    }
    b->fac_doc[o] = docid;
    b->nord++;
    return CM_OK;
}

/* Adds docid to every key of e.  In batches of KEY_BATCH keys: all their
 * hash slots are prefetched, then the entries the slots point to, then
 * each key is checked and added, so the cache misses of a batch overlap
 * instead of following one another. */
#define KEY_BATCH 64
static enum cm_status keys_add(struct idx_bulk *b, const struct idx_entries *e,
                               uint32_t docid)
{
    uint64_t h[KEY_BATCH];
    uint32_t cand[KEY_BATCH];
    struct khead hd[KEY_BATCH];
    enum cm_status st = CM_OK;

    for (size_t at = 0; at < e->nkeys && st == CM_OK; at += KEY_BATCH) {
        size_t m = e->nkeys - at < KEY_BATCH ? e->nkeys - at : KEY_BATCH;
        size_t mask;
        st = slots_reserve(b, m);
        if (st != CM_OK)
            break;
        mask = b->capslots - 1;
        for (size_t i = 0; i < m; i++) {
            const struct idx_key *x = &e->keys[at + i];
            const uint8_t *kb = idx_entries_key(e, at + i);
            hd[i] = key_head(kb, x->len);
            h[i] = key_hash(x->db, kb, x->len, hd[i]);
            __builtin_prefetch(&b->slots[h[i] & mask]);
        }
        for (size_t i = 0; i < m; i++) {
            uint64_t tag = h[i] >> 32 << 32;
            size_t j = (size_t)h[i] & mask;
            while (b->slots[j] && (b->slots[j] & 0xFFFFFFFF00000000ULL) != tag)
                j = (j + 1) & mask;
            cand[i] = (uint32_t)b->slots[j]; /* index + 1, or 0 */
            if (cand[i])
                __builtin_prefetch(&b->k[cand[i] - 1]);
        }
        for (size_t i = 0; i < m && st == CM_OK; i++) {
            const struct idx_key *kx = &e->keys[at + i];
            const uint8_t *kb = idx_entries_key(e, at + i);
            struct bkey *x = cand[i] ? &b->k[cand[i] - 1] : NULL;
            if (!x || !key_is(b, x, kx->db, kb, kx->len, hd[i]))
                st = key_get(b, h[i], kx->db, kb, kx->len, hd[i], docid, &x);
            if (st == CM_OK)
                st = docid_add(b, x, docid);
        }
    }
    return st;
}

/* Appends the item (k[0..n), docid) to d.  Reads 8 bytes at k even when n
 * is smaller: the caller guarantees they are inside its buffer. */
static enum cm_status list_add(struct blist *d, const void *k, size_t n,
                               uint32_t docid)
{
    size_t off = d->arena.len;
    uint16_t n16 = (uint16_t)n;
    enum cm_status st;

    if (n > UINT16_MAX)
        return CM_TOOBIG;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4096;
        struct sitem *v = cm_realloc_big(d->v, cap * sizeof *v);
        if (!v)
            return CM_NOMEM;
        d->v = v;
        d->cap = cap;
    }
    st = n + 2 < d->arena.cap - off ? CM_OK : cm_buf_reserve(&d->arena, n + 2);
    if (st != CM_OK)
        return st;
    memcpy(d->arena.data + off, &n16, 2);
    memcpy(d->arena.data + off + 2, k, n);
    d->arena.len += n + 2;
    d->arena.data[d->arena.len] = '\0';
    d->v[d->n].off = (uint32_t)off;
    d->v[d->n].val = docid;
    /* word_at(.., 0) from the source: reading back the bytes just copied
     * stalled on store forwarding (more than half of this function) */
    d->v[d->n].w =
        idx_rd_be64(k) & (n >= 8 ? ~(uint64_t)0 : ~(~(uint64_t)0 >> (8 * n)));
    d->n++;
    return CM_OK;
}

/* Grows the columns to hold cap docids (new values 0).  A column per
 * field, field-major and on huge pages, so the dictionary fields' cells,
 * filled in key order (docids at random), are written with a TLB miss per
 * 2 MiB, not per chunk of 26 fields' 4 KiB pages. */
static enum cm_status cols_grow(struct idx_bulk *b, size_t cap)
{
    uint8_t *pr;

    cap = (cap + IDX_CHUNK - 1) / IDX_CHUNK * IDX_CHUNK;
    if (cap <= b->capdocs)
        return CM_OK;
    for (int f = 0; f < IDX_SF_COUNT; f++) {
        uint64_t *c = b->capdocs ? cm_realloc_big(b->cols[f], cap * 8)
                                 : cm_calloc_big(cap, 8);
        if (!c)
            return CM_NOMEM;
        if (b->capdocs)
            memset(c + b->capdocs, 0, (cap - b->capdocs) * 8);
        b->cols[f] = c;
    }
    pr = cm_realloc(b->present, cap / IDX_CHUNK);
    if (!pr)
        return CM_NOMEM;
    memset(pr + b->capdocs / IDX_CHUNK, 0, (cap - b->capdocs) / IDX_CHUNK);
    b->present = pr;
    b->capdocs = cap;
    return CM_OK;
}

/* Makes the columns hold docid and marks its chunk. */
static enum cm_status cols_need(struct idx_bulk *b, uint32_t docid)
{
    enum cm_status st = CM_OK;
    if (docid >= b->capdocs)
        st = cols_grow(b, docid >= UINT32_MAX / 2 ? (size_t)docid + 1
                                                  : (size_t)docid * 2 + 1);
    if (st == CM_OK)
        b->present[docid / IDX_CHUNK] = 1;
    return st;
}

/* Sizes the tables for the store's scene count, so they do not grow (a
 * grown array is copied and its new pages touched again; the hash table
 * is rebuilt).  Estimates from the fake Stash's libraries: about 0.2
 * distinct keys per scene in the table (postings: performers, galleries,
 * int facet values; the nearly unique text tokens are listed instead), up
 * to ~8 listed tokens per scene of ~20 bytes, dictionary keys up to ~50
 * bytes.  Reserved memory is only touched as it fills; a library above
 * the estimates grows as before. */
static enum cm_status presize(struct idx_bulk *b)
{
    uint64_t n = 0;
    size_t keys;
    enum cm_status st = kv_scene_count(b->t, &n);

    if (st != CM_OK || n == 0)
        return st;
    if (n > (uint64_t)1 << 26)
        n = (uint64_t)1 << 26; /* the tables grow past that */
    b->nscenes = (size_t)n;
    st = cols_grow(b, (size_t)n + IDX_CHUNK); /* docids ~ the scene count */
    if (st != CM_OK)
        return st;
    keys = (size_t)n / 4 + 1024;
    b->k = cm_malloc_big(keys * sizeof *b->k);
    if (!b->k)
        return CM_NOMEM;
    b->capk = keys;
    st = slots_reserve(b, keys);
    if (st == CM_OK)
        st = cm_buf_reserve(&b->keys, keys * 20);
    if (st == CM_OK) { /* at most 2^25 items (the arena's offsets are u32) */
        size_t lt = n < (1u << 22) ? (size_t)n * 8 : (size_t)1 << 25;
        b->tok.v = cm_malloc_big(lt * sizeof *b->tok.v);
        if (!b->tok.v)
            return CM_NOMEM;
        b->tok.cap = lt;
        st = cm_buf_reserve(&b->tok.arena, lt * 22);
    }
    for (int f = 0; f < IDX_SF_COUNT && st == CM_OK; f++) {
        struct blist *d = &b->dict[f];
        if (idx_sfield_kind((enum idx_sort_field)f) != IDX_SK_DICT)
            continue;
        d->v = cm_malloc_big((size_t)n * sizeof *d->v);
        if (!d->v)
            return CM_NOMEM;
        d->cap = (size_t)n;
        st = cm_buf_reserve(&d->arena, (size_t)n * 50);
    }
    return st;
}

enum cm_status idx_bulk_new(struct kv_txn *t, struct idx_bulk **out)
{
    struct idx_bulk *b;
    enum cm_status st;

    *out = NULL;
    if (!t)
        return CM_INVALID;
    b = cm_calloc(1, sizeof *b);
    if (!b)
        return CM_NOMEM;
    b->t = t;
    idx_ecache_init(&b->ec, t);
    idx_entries_init(&b->e);
    b->e.split = true;
    for (int f = 0; f < IDX_SF_COUNT; f++)
        b->is_dict[f] = idx_sfield_kind((enum idx_sort_field)f) == IDX_SK_DICT;
    cm_buf_init_big(&b->keys, UINT32_MAX);
    cm_buf_init_big(&b->tok.arena, UINT32_MAX);
    for (int f = 0; f < IDX_SF_COUNT; f++)
        cm_buf_init_big(&b->dict[f].arena, UINT32_MAX);
    st = presize(b);
    if (st != CM_OK) {
        idx_bulk_free(b);
        return st;
    }
    *out = b;
    return CM_OK;
}

void idx_bulk_free(struct idx_bulk *b)
{
    if (!b)
        return;
    idx_ecache_fini(&b->ec);
    idx_entries_fini(&b->e);
    cm_buf_fini(&b->keys);
    cm_buf_fini(&b->tok.arena);
    cm_free(b->tok.v);
    for (size_t i = 0; i < b->nfac; i++) {
        cm_free(b->fac[i].v32);
        cm_free(b->fac[i].v64);
    }
    cm_free(b->fac_doc);
    for (size_t i = 0; b->spill && i < b->nk; i++)
        idx_bm_free(b->spill[i]);
    cm_free(b->spill);
    cm_free(b->k);
    cm_free(b->slots);
    cm_free(b->rscr);
    cm_free(b->pool);
    for (int f = 0; f < IDX_SF_COUNT; f++) {
        cm_buf_fini(&b->dict[f].arena);
        cm_free(b->dict[f].v);
    }
    for (int f = 0; f < IDX_SF_COUNT; f++)
        cm_free(b->cols[f]);
    cm_free(b->present);
    cm_free(b);
}

enum cm_status idx_bulk_add(struct idx_bulk *b, uint32_t docid,
                            const struct kv_scene *sc)
{
    const struct idx_entries *e;
    enum cm_status st;

    if (!b || !sc)
        return CM_INVALID;
    e = &b->e;
    if (b->any && docid <= b->lastdoc)
        return CM_INVALID; /* not in increasing docid order */
    st = idx_derive_unsorted(&b->ec, sc, &b->e);
    /* key_head and list_add read KEY_INLINE (>= 8) bytes at each key and
     * dictionary value: keep them in bounds */
    if (st == CM_OK)
        st = cm_buf_reserve(&b->e.arena, KEY_INLINE);
    if (st == CM_OK)
        st = facets_add(b, e, docid);
    for (size_t i = 0; i < e->nlkeys && st == CM_OK; i++) {
        const struct idx_key *x = &e->lkeys[i];
        bool again = false;
        /* the same token again in this scene (a file number in the path
         * and the basename): one item is enough (put_run would drop the
         * repeat); only the last few are compared */
        for (size_t j = i > 8 ? i - 8 : 0; j < i && !again; j++)
            again = e->lkeys[j].len == x->len &&
                    memcmp(e->arena.data + e->lkeys[j].off,
                           e->arena.data + x->off, x->len) == 0;
        if (!again)
            st = list_add(&b->tok, e->arena.data + x->off, x->len, docid);
    }
    if (st == CM_OK)
        st = keys_add(b, e, docid);
    if (st == CM_OK)
        st = cols_need(b, docid);
    if (st != CM_OK)
        return st;
    for (int f = 0; f < IDX_SF_COUNT && st == CM_OK; f++) {
        if (!b->is_dict[f])
            b->cols[f][docid] = e->num[f];
        else if (e->dlen[f])
            st = list_add(&b->dict[f], e->arena.data + e->doff[f], e->dlen[f],
                          docid);
    }
    b->lastdoc = docid;
    b->any = true;
    return st;
}

/* ---- Writing ---------------------------------------------------------- */

static enum cm_status cursor_open(struct kv_txn *t, enum kv_db db,
                                  MDB_cursor **cur)
{
    int rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), db), cur);
    return rc ? kv_txn_from_mdb(t, rc, "bulk cursor") : CM_OK;
}

/* Appends (key, value of vlen bytes) at the end of cur's database.
 * OUT *val: where to write the value (valid until the next write). */
static enum cm_status append_reserve(struct kv_txn *t, MDB_cursor *cur,
                                     const void *key, size_t klen, size_t vlen,
                                     void **val)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, NULL};
    int rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc)
        return kv_txn_from_mdb(t, rc, "bulk append");
    *val = v.mv_data;
    return CM_OK;
}

static enum cm_status append_put(struct kv_txn *t, MDB_cursor *cur,
                                 const void *key, size_t klen, const void *val,
                                 size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND);
    return rc ? kv_txn_from_mdb(t, rc, "bulk append") : CM_OK;
}

/* Prefetch distance (items) of the writing loops. */
#define AHEAD 16

/* Appends key's bitmap: the docids ids[0..n) (increasing, distinct) and,
 * when bm is not NULL, those already in bm (takes ownership of bm). */
static enum cm_status put_bitmap(struct kv_txn *t, MDB_cursor *cur,
                                 const uint8_t *key, size_t klen,
                                 const uint32_t *ids, size_t n,
                                 roaring_bitmap_t *bm)
{
    void *out = NULL;
    size_t len = bm ? 0 : idx_bm_small_size(ids, n);
    enum cm_status st;

    if (len) { /* most keys: a few docids, no bitmap needed */
        st = append_reserve(t, cur, key, klen, len, &out);
        if (st == CM_OK)
            idx_bm_small_write(ids, n, out);
        return st;
    }
    if (bm)
        roaring_bitmap_add_many(bm, n, ids);
    else
        bm = roaring_bitmap_of_ptr(n, ids);
    if (!bm)
        return CM_NOMEM;
    roaring_bitmap_run_optimize(bm);
    len = roaring_bitmap_portable_size_in_bytes(bm);
    st = append_reserve(t, cur, key, klen, len, &out);
    if (st == CM_OK)
        roaring_bitmap_portable_serialize(bm, out);
    roaring_bitmap_free(bm);
    return st;
}

/* memcmp order of two keys (shorter first on a common prefix). */
static inline int kcmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c;
    if (an && bn && a[0] != b[0]) /* the merges: nearly always decided here */
        return a[0] < b[0] ? -1 : 1;
    c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* The keys of one db in the key table, sorted (v[i].val: key index), as
 * they are written. */
struct tabwalk {
    const struct sitem *v;
    size_t n, i;
};

/* The reverse index entries (entity -> scenes) of key x when it is a tag,
 * performer, studio, group or gallery posting: the same docids in the
 * same order (the posting fields g < p < s < t < y sort like the entity
 * types G < P < S < T < Y), so idx_bulk_write appends both at once and
 * the rebuild needs no list of reverse entries of its own.  bm: x's
 * spilled docids (before its array's), or NULL. */
static enum cm_status rev_put(struct idx_bulk *b, const struct bkey *x,
                              const roaring_bitmap_t *bm)
{
    const uint8_t *k = (const uint8_t *)b->keys.data + x->koff + 2;
    const uint32_t *ids = x->cls == NO_ARRAY ? &x->last : b->pool + x->ids;
    size_t n = x->n;
    uint8_t type;

    if (x->db != KV_DB_POSTINGS || x->klen != 9)
        return CM_OK;
    switch (k[0]) {
    case IDX_P_GROUP: type = KV_GROUP; break;
    case IDX_P_PERFORMER: type = KV_PERFORMER; break;
    case IDX_P_STUDIO: type = KV_STUDIO; break;
    case IDX_P_TAG: type = KV_TAG; break;
    case IDX_P_GALLERY: type = KV_GALLERY; break;
    default: return CM_OK;
    }
    if (bm) {
        uint64_t card = roaring_bitmap_get_cardinality(bm);
        if (card + n > b->caprscr) {
            uint32_t *r;
            if (card + n > UINT32_MAX)
                return CM_TOOBIG;
            r = cm_realloc_big(b->rscr, (size_t)(card + n) * sizeof *r);
            if (!r)
                return CM_NOMEM;
            b->rscr = r;
            b->caprscr = (size_t)(card + n);
        }
        roaring_bitmap_to_uint32_array(bm, b->rscr);
        memcpy(b->rscr + card, ids, n * sizeof *ids);
        ids = b->rscr;
        n += (size_t)card;
    }
    return kv_revapp_put(b->rev, type, idx_rd_be64(k + 1), ids, n);
}

/* Writes the table keys of tw from the next one on, up to (without) the
 * first one not below lim[0..limn) (lim NULL: all). */
static enum cm_status table_until(struct idx_bulk *b, MDB_cursor *cur,
                                  struct tabwalk *tw, const uint8_t *lim,
                                  size_t limn)
{
    const uint8_t *arena = (const uint8_t *)b->keys.data;
    enum cm_status st = CM_OK;

    for (; tw->i < tw->n && st == CM_OK; tw->i++) {
        size_t i = tw->i;
        const struct bkey *x = &b->k[tw->v[i].val];
        const uint32_t *ids = x->cls == NO_ARRAY ? &x->last : b->pool + x->ids;
        roaring_bitmap_t *bm = b->spill ? b->spill[tw->v[i].val] : NULL;
        if (lim && kcmp(arena + x->koff + 2, x->klen, lim, limn) >= 0)
            break;
        if (i + AHEAD < tw->n) { /* sorted order visits the keys at random */
            __builtin_prefetch(&b->k[tw->v[i + AHEAD].val]);
            __builtin_prefetch(arena + tw->v[i + AHEAD].off);
        }
        if (b->rev && (st = rev_put(b, x, bm)) != CM_OK)
            break;
        if (bm)
            b->spill[tw->v[i].val] = NULL;
        st = put_bitmap(b->t, cur, arena + x->koff + 2, x->klen, ids, x->n, bm);
    }
    return st;
}

/* Writes key's bitmap from the items v[a..e) (one key, in docid order: the
 * lists are appended in docid order and their sorts are stable), without
 * the repeats of a scene that gave the key twice.  *ids_buf, *cap:
 * scratch, grown here (caller frees). */
static enum cm_status put_run(struct kv_txn *t, MDB_cursor *cur,
                              const uint8_t *key, size_t klen,
                              const struct sitem *v, size_t a, size_t e,
                              uint32_t **ids_buf, size_t *cap)
{
    size_t k = 0;
    if (e - a == 1)
        return put_bitmap(t, cur, key, klen, &v[a].val, 1, NULL);
    if (e - a > *cap) {
        uint32_t *p = cm_realloc_big(*ids_buf, (e - a) * sizeof *p);
        if (!p)
            return CM_NOMEM;
        *ids_buf = p;
        *cap = e - a;
    }
    for (size_t i = a; i < e; i++)
        if (k == 0 || (*ids_buf)[k - 1] != v[i].val)
            (*ids_buf)[k++] = v[i].val;
    return put_bitmap(t, cur, key, klen, *ids_buf, k, NULL);
}

/* The token list, sorted, merged with the table's text keys. */
static enum cm_status write_tokens(struct idx_bulk *b, MDB_cursor *cur,
                                   struct tabwalk *tw, struct sitem *tmp,
                                   uint32_t **ids_buf, size_t *cap)
{
    const struct blist *l = &b->tok;
    const uint8_t *la = (const uint8_t *)l->arena.data;
    enum cm_status st = CM_OK;

    ssort(la, l->v, tmp, l->n, 0);
    for (size_t j = 0, e; j < l->n && st == CM_OK; j = e) {
        const uint8_t *lk = la + l->v[j].off + 2;
        size_t lkn = klen_at(la, l->v[j].off);
        for (e = j + 1; e < l->n && klen_at(la, l->v[e].off) == lkn &&
                        memcmp(la + l->v[e].off + 2, lk, lkn) == 0;
             e++)
            ;
        if (e + AHEAD < l->n) /* the arena is in docid order */
            __builtin_prefetch(la + l->v[e + AHEAD].off);
        st = table_until(b, cur, tw, lk, lkn);
        if (st == CM_OK)
            st = put_run(b->t, cur, lk, lkn, l->v, j, e, ids_buf, cap);
    }
    return st;
}

/* Writes the key of int facet field f and value v (idx_enc_i64 value, 0
 * for null) with the docids ids[0..n), after the table keys below it. */
static enum cm_status put_facet(struct idx_bulk *b, MDB_cursor *cur,
                                struct tabwalk *tw, uint8_t f, uint64_t v,
                                const uint32_t *ids, size_t n)
{
    uint8_t k[11] = {IDX_P_INT, f, 0};
    size_t kn = 3;
    enum cm_status st;

    if (v) {
        k[2] = 1;
        idx_be64(k + 3, v);
        kn = 11;
    }
    st = table_until(b, cur, tw, k, kn);
    return st == CM_OK ? put_bitmap(b->t, cur, k, kn, ids, n, NULL) : st;
}

/* Column fc by counting sort: the null key's docids, then each value's,
 * in ordinal (so docid) order.  *out: nord docids of scratch; *cnt:
 * counts of range + 1 slots (grown here, caller frees). */
static enum cm_status facet_count(struct idx_bulk *b, MDB_cursor *cur,
                                  struct tabwalk *tw, const struct bfacet *fc,
                                  uint32_t lo, size_t range, uint32_t *out,
                                  uint32_t **cnt, size_t *capcnt)
{
    const uint32_t *v = fc->v32;
    uint32_t at = 0;
    enum cm_status st = CM_OK;

    if (range + 1 > *capcnt) {
        uint32_t *c = cm_realloc_big(*cnt, (range + 1) * sizeof *c);
        if (!c)
            return CM_NOMEM;
        *cnt = c;
        *capcnt = range + 1;
    }
    memset(*cnt, 0, (range + 1) * sizeof **cnt);
    for (size_t o = 0; o < b->nord; o++) /* slot 0: null */
        (*cnt)[v[o] ? v[o] - lo + 1 : 0]++;
    for (size_t d = 0; d <= range; d++) {
        uint32_t c = (*cnt)[d];
        (*cnt)[d] = at;
        at += c;
    }
    for (size_t o = 0; o < b->nord; o++)
        out[(*cnt)[v[o] ? v[o] - lo + 1 : 0]++] = b->fac_doc[o];
    /* now (*cnt)[d] is the end of slot d */
    for (size_t d = 0, a = 0; d <= range && st == CM_OK; a = (*cnt)[d++]) {
        if ((*cnt)[d] == a)
            continue;
        st = put_facet(b, cur, tw, fc->field,
                       d ? fac_wide(lo + (uint32_t)d - 1) : 0, out + a,
                       (*cnt)[d] - a);
    }
    return st;
}

/* Column fc by LSD radix sort of (value, docid) items (a wide column, or
 * values spread too far for counting): v, tmp: nord items each. */
static enum cm_status facet_sort(struct idx_bulk *b, MDB_cursor *cur,
                                 struct tabwalk *tw, const struct bfacet *fc,
                                 struct sitem *v, struct sitem *tmp,
                                 uint32_t *out)
{
    enum cm_status st = CM_OK;

    for (size_t o = 0; o < b->nord; o++) {
        v[o].w = fc->v64 ? fc->v64[o] : fac_wide(fc->v32[o]);
        v[o].off = 0;
        v[o].val = b->fac_doc[o];
    }
    lsd_words(v, tmp, b->nord);
    for (size_t j = 0, e; j < b->nord && st == CM_OK; j = e) {
        size_t n = 0;
        for (e = j; e < b->nord && v[e].w == v[j].w; e++)
            out[n++] = v[e].val;
        st = put_facet(b, cur, tw, fc->field, v[j].w, out, n);
    }
    return st;
}

/* Most distinct values a column is counting-sorted over (4 bytes each). */
#define FAC_COUNT_MAX ((size_t)1 << 22)

/* The int facet keys, field by field in key order, merged with the
 * table's posting keys.  tmp: at least nord items of scratch. */
static enum cm_status write_facets(struct idx_bulk *b, MDB_cursor *cur,
                                   struct tabwalk *tw, struct sitem *tmp)
{
    uint32_t *out = NULL, *cnt = NULL;
    struct sitem *v = NULL;
    size_t capcnt = 0;
    enum cm_status st = CM_OK;

    if (!b->nord)
        return CM_OK;
    out = cm_malloc_big(b->nord * sizeof *out);
    if (!out)
        return CM_NOMEM;
    for (int f = 0; f < 256 && st == CM_OK; f++) {
        const struct bfacet *fc = NULL;
        uint32_t lo = UINT32_MAX, hi = 0;
        for (size_t i = 0; i < b->nfac; i++)
            if (b->fac[i].field == f)
                fc = &b->fac[i];
        if (!fc)
            continue;
        for (size_t o = 0; !fc->v64 && o < b->nord; o++) {
            uint32_t x = fc->v32[o];
            if (x && x < lo)
                lo = x;
            if (x > hi)
                hi = x;
        }
        if (!fc->v64 && (lo > hi || (size_t)(hi - lo) < FAC_COUNT_MAX)) {
            st = facet_count(b, cur, tw, fc, lo > hi ? 1 : lo,
                             lo > hi ? 0 : (size_t)(hi - lo) + 1, out, &cnt,
                             &capcnt);
            continue;
        }
        if (!v && !(v = cm_malloc_big(b->nord * sizeof *v))) {
            st = CM_NOMEM;
            break;
        }
        st = facet_sort(b, cur, tw, fc, v, tmp, out);
    }
    cm_free(out);
    cm_free(cnt);
    cm_free(v);
    return st;
}

/* The keys of db: the table's, sorted, each with its bitmap, merged in key
 * order with the token list (text) or the int facets (postings); no key
 * is in both: derive routes by the key bytes (idx_token_listed(), every
 * IDX_P_INT key is a facet), and MDB_APPEND refuses a key twice. */
static enum cm_status write_postings(struct idx_bulk *b, enum kv_db db,
                                     struct sitem *v, struct sitem *tmp)
{
    const uint8_t *arena = (const uint8_t *)b->keys.data;
    struct tabwalk tw = {v, 0, 0};
    uint32_t *ids_buf = NULL;
    size_t cap = 0;
    MDB_cursor *cur = NULL;
    enum cm_status st;

    for (size_t x = 0; x < b->nk; x++) {
        if (b->k[x].db != (uint8_t)db)
            continue;
        v[tw.n].off = b->k[x].koff;
        v[tw.n].val = (uint32_t)x;
        v[tw.n].w = word_at(arena, v[tw.n].off, 0);
        tw.n++;
    }
    ssort(arena, v, tmp, tw.n, 0);
    st = cursor_open(b->t, db, &cur);
    if (st == CM_OK && db == KV_DB_TEXT)
        st = write_tokens(b, cur, &tw, tmp, &ids_buf, &cap);
    if (st == CM_OK && db == KV_DB_POSTINGS)
        st = write_facets(b, cur, &tw, tmp);
    if (st == CM_OK)
        st = table_until(b, cur, &tw, NULL, 0);
    mdb_cursor_close(cur);
    cm_free(ids_buf);
    return st;
}

/* Sorts field f's items, writes one entry per distinct key and fills the
 * column cells. */
static enum cm_status write_dict(struct idx_bulk *b, enum idx_sort_field f,
                                 MDB_cursor *cur, struct sitem *tmp,
                                 struct cm_buf *kb)
{
    struct blist *d = &b->dict[f];
    const uint8_t *arena = (const uint8_t *)d->arena.data;
    uint64_t pos = 0;
    enum cm_status st = CM_OK;

    ssort(arena, d->v, tmp, d->n, 0);
    for (size_t i = 0; i < AHEAD && i < d->n; i++)
        __builtin_prefetch(arena + d->v[i].off);
    for (size_t a = 0; a < d->n && st == CM_OK;) {
        size_t klen = klen_at(arena, d->v[a].off), e = a + 1;
        const uint8_t *key = arena + d->v[a].off + 2;
        uint8_t val[12];
        uint32_t ref;
        while (e < d->n && klen_at(arena, d->v[e].off) == klen &&
               memcmp(arena + d->v[e].off + 2, key, klen) == 0)
            e++;
        if (e - a > UINT32_MAX) {
            st = CM_TOOBIG;
            break;
        }
        pos += IDX_GAP;
        ref = (uint32_t)(e - a);
        memcpy(val, &pos, 8);
        memcpy(val + 8, &ref, 4);
        st = idx_dict_key(kb, f, key, klen);
        if (st == CM_OK)
            st = append_put(b->t, cur, kb->data, kb->len, val, sizeof val);
        if (st != CM_OK)
            break;
        for (; a < e; a++) {
            uint32_t docid = d->v[a].val;
            if (a + AHEAD < d->n) { /* keys and cells in random order */
                __builtin_prefetch(arena + d->v[a + AHEAD].off);
                __builtin_prefetch(&b->cols[f][d->v[a + AHEAD].val], 1);
            }
            b->cols[f][docid] = pos;
        }
    }
    return st;
}

enum cm_status idx_bulk_write(struct idx_bulk *b)
{
    struct sitem *v = NULL, *tmp = NULL;
    MDB_cursor *cur = NULL;
    struct cm_buf kb;
    size_t most = b->nk;
    enum cm_status st = CM_OK;

    cm_buf_init(&kb, 1024);
    if (b->tok.n > most)
        most = b->tok.n;
    if (b->nfac && b->nord > most)
        most = b->nord;
    for (int f = 0; f < IDX_SF_COUNT; f++)
        if (b->dict[f].n > most)
            most = b->dict[f].n;
    if (most) {
        v = cm_malloc_big(most * sizeof *v);
        tmp = cm_malloc_big(most * sizeof *tmp);
        if (!v || !tmp) {
            st = CM_NOMEM;
            goto out;
        }
    }
    st = kv_revapp_begin(b->t, &b->rev); /* filled by the postings' walk */
    if (st == CM_OK)
        st = write_postings(b, KV_DB_POSTINGS, v, tmp);
    kv_revapp_end(b->rev);
    b->rev = NULL;
    if (st == CM_OK)
        st = write_postings(b, KV_DB_TEXT, v, tmp);
    if (st == CM_OK)
        st = cursor_open(b->t, KV_DB_SORTS, &cur);
    for (int f = 0; f < IDX_SF_COUNT && st == CM_OK; f++)
        if (idx_sfield_kind((enum idx_sort_field)f) == IDX_SK_DICT)
            st = write_dict(b, (enum idx_sort_field)f, cur, tmp, &kb);
    mdb_cursor_close(cur);
    cur = NULL;
    if (st == CM_OK)
        st = cursor_open(b->t, KV_DB_COLUMNS, &cur);
    for (int f = 0; f < IDX_SF_COUNT && st == CM_OK; f++) {
        for (size_t c = 0; c < b->capdocs / IDX_CHUNK && st == CM_OK; c++) {
            uint8_t k[6];
            if (!b->present[c])
                continue;
            idx_col_key(k, (enum idx_sort_field)f, (uint32_t)c);
            st = append_put(b->t, cur, k, sizeof k, b->cols[f] + c * IDX_CHUNK,
                            IDX_CHUNK * 8);
        }
    }
out:
    mdb_cursor_close(cur);
    cm_buf_fini(&kb);
    cm_free(v);
    cm_free(tmp);
    return st;
}
