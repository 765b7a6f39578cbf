/*
 * idx_int.h - declarations shared only inside index/: key layouts of the
 * index databases, the per-scene "entries" derivation (what a scene
 * contributes to every index), natural-order key encoding, columns and
 * dictionaries, bitmap I/O.
 *
 * Layout (docs/INDEX.md has the full story):
 *   postings  field byte ‖ value bytes -> roaring portable bitmap of docids
 *   text      token bytes (ASCII lower-cased) -> roaring portable bitmap
 *   sorts     'd' ‖ sort field ‖ order-preserving key bytes -> dictionary
 *             entry {u64 position, u32 refcount} (gap numbered, so a
 *             value's position compares like the value)
 *   columns   'c' ‖ sort field ‖ chunk (u32 BE) -> IDX_CHUNK u64 values,
 *             the sort value of docid chunk*IDX_CHUNK + i (0 = NULL)
 *
 * Every fallible function returns enum cm_status.  Nothing here is
 * thread-safe beyond what LMDB transactions give.
 */
#pragma once

#include <roaring/roaring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/cm_buf.h"
#include "common/cm_status.h"
#include "index/idx.h"
#include "index/idx_slots.h"
#include "kv/kv.h"

/* ---- Posting fields (first key byte in KV_DB_POSTINGS) ------------- */
enum idx_pfield {
    IDX_P_ALL = 'A',        /* universe, no value */
    IDX_P_TAG = 't',        /* u64 BE tag id (direct) */
    IDX_P_PERFORMER = 'p',  /* u64 BE */
    IDX_P_STUDIO = 's',     /* u64 BE */
    IDX_P_GROUP = 'g',      /* u64 BE */
    IDX_P_GALLERY = 'y',    /* u64 BE */
    IDX_P_PERF_TAG = 'q',   /* u64 BE: a tag of one of the performers */
    IDX_P_INH_TAG = 'i',    /* u64 BE: tag of performers/studio/groups */
    IDX_P_PERF_FAV = 'F',   /* no value: some performer is a favorite */
    IDX_P_STUDIO_FAV = 'G', /* no value: the studio is a favorite */
    IDX_P_TAG_FAV = 'H',    /* no value: some direct tag is a favorite */
    IDX_P_INT = 'n',        /* int field byte ‖ ienc: see enum idx_ifield */
    IDX_P_STR = 'v',        /* str field byte ‖ lower-cased bytes */
};

/* Int-valued facets: IDX_P_INT ‖ field ‖ 0x00 (null) or 0x01 ‖ BE8 of
 * (value ^ sign bit).  A range criterion is a key range scan. */
enum idx_ifield {
    IDX_I_RATING = 'r',      /* rating100 */
    IDX_I_OCOUNT = 'o',      /* o_counter */
    IDX_I_PLAYCOUNT = 'c',   /* play_count */
    IDX_I_TAGCOUNT = 't',    /* number of direct tags */
    IDX_I_PERFCOUNT = 'p',   /* number of performers */
    IDX_I_FILECOUNT = 'f',   /* number of files */
    IDX_I_ISPEED = 'x',      /* interactive_speed */
    IDX_I_ORGANIZED = 'O',   /* 0/1 */
    IDX_I_INTERACTIVE = 'I', /* 0/1 */
    IDX_I_MARKERS = 'M',     /* has markers 0/1 */
    IDX_I_ORIENT = 'R',      /* 0 landscape 1 portrait 2 square; null */
    IDX_I_SHORTSIDE = 'h',   /* MIN(width,height) of files[0]; null */
    IDX_I_FRAMERATE = 'z',   /* ROUND(frame_rate); null without file */
    IDX_I_DURATION = 'd',    /* cast(duration as int); null */
    IDX_I_BITRATE = 'b',     /* bit_rate; null */
    IDX_I_RESUME = 'e',      /* cast(resume_time as int); null */
    IDX_I_PLAYDUR = 'u',     /* cast(play_duration as int); null */
    IDX_I_YEAR = 'Y',        /* date year; null */
    IDX_I_DATE = 'D',        /* date as yyyymmdd (missing parts = 01) */
};

/* String facets: IDX_P_STR ‖ field ‖ bytes (ASCII lower-cased, at most
 * IDX_MAX_STRKEY bytes; longer values are not indexed as facets). */
enum idx_sfield {
    IDX_S_VCODEC = 'v',
    IDX_S_ACODEC = 'a',
};
#define IDX_MAX_STRKEY 200

/* ---- Sort fields ---------------------------------------------------- */
enum idx_sort_field {
    IDX_SF_TITLE,
    IDX_SF_DATE,
    IDX_SF_CREATED,
    IDX_SF_UPDATED,
    IDX_SF_RATING,
    IDX_SF_OCOUNT,
    IDX_SF_PLAYCOUNT,
    IDX_SF_PLAYDUR,
    IDX_SF_LASTPLAYED,
    IDX_SF_RESUME,
    IDX_SF_DURATION,
    IDX_SF_FILESIZE,
    IDX_SF_BITRATE,
    IDX_SF_FRAMERATE,
    IDX_SF_RESOLUTION,
    IDX_SF_PATH,
    IDX_SF_TAGCOUNT,
    IDX_SF_PERFCOUNT,
    IDX_SF_FILECOUNT,
    IDX_SF_ORGANIZED,
    IDX_SF_INTERACTIVE,
    IDX_SF_ISPEED,
    IDX_SF_CODE,
    IDX_SF_STUDIO,
    IDX_SF_ID,
    IDX_SF_TIE,   /* internal: COALESCE(title, id) NATURAL_CI, stash id */
    IDX_SF_COUNT, /* number of stored columns */
    IDX_SF_RANDOM = IDX_SF_COUNT, /* computed from the stash id */
};

/* How a sort field's value is made. */
enum idx_sort_kind {
    IDX_SK_NUM,  /* u64 computed directly */
    IDX_SK_DICT, /* position of its key bytes in a gap-numbered dictionary */
};

/* Name of a sort key as Stash spells it ("title", ...); NULL for TIE. */
const char *idx_sfield_name(enum idx_sort_field f);
/* Looks a Stash sort name up (not random).  CM_NOTFOUND. */
enum cm_status idx_sfield_lookup(const char *name, size_t len,
                                 enum idx_sort_field *out) CM_WUR;
enum idx_sort_kind idx_sfield_kind(enum idx_sort_field f);

/* ---- Order-preserving encodings ------------------------------------- */

/* Appends the natural-order key of s[0..n) (memcmp order of two keys ==
 * cm_natural_cmp order, see idx_keys.c for the two documented gaps).
 * Bounded: at most max bytes are appended (truncated at an element
 * boundary, then terminated).  CM_NOMEM/CM_TOOBIG from out. */
enum cm_status idx_natkey(const char *s, size_t n, size_t max,
                          struct cm_buf *out) CM_WUR;
/* Appends an escaped binary key of s (memcmp order == byte order),
 * terminated, at most max bytes. */
enum cm_status idx_binkey(const char *s, size_t n, size_t max,
                          struct cm_buf *out) CM_WUR;

/* u64 encodings where 0 means NULL and larger sorts later. */
static inline uint64_t idx_enc_i64(int64_t v) /* v + 2^63, never 0 */
{
    uint64_t e = (uint64_t)v ^ ((uint64_t)1 << 63);
    return e ? e : 1; /* INT64_MIN shares 1 with INT64_MIN+1: never used */
}
uint64_t idx_enc_double(double v); /* finite v; -0.0 == 0.0 */
double idx_dec_double(uint64_t e);
int64_t idx_dec_i64(uint64_t e);

/* Big-endian loads and stores: one (byte-swapped) word access; inline,
 * the bulk build and the key sorts call them per key. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define IDX_BE64(v) __builtin_bswap64(v)
#define IDX_BE32(v) __builtin_bswap32(v)
#else
#define IDX_BE64(v) (v)
#define IDX_BE32(v) (v)
#endif
static inline void idx_be64(uint8_t *p, uint64_t v)
{
    v = IDX_BE64(v);
    memcpy(p, &v, 8);
}
static inline uint64_t idx_rd_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return IDX_BE64(v);
}
static inline void idx_be32(uint8_t *p, uint32_t v)
{
    v = IDX_BE32(v);
    memcpy(p, &v, 4);
}
static inline uint32_t idx_rd_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return IDX_BE32(v);
}
/* Little-endian writers (roaring's portable format). */
void idx_le16(uint8_t *p, uint32_t v); /* the low 16 bits of v */
void idx_le32(uint8_t *p, uint32_t v);

/* ---- Bitmaps --------------------------------------------------------- */

/* Reads the bitmap at key in db.  OUT *out: a new bitmap (empty when the
 * key is absent); caller frees with roaring_bitmap_free.  CM_CORRUPT,
 * CM_NOMEM, CM_IO. */
enum cm_status idx_bm_get(struct kv_txn *t, enum kv_db db, const void *key,
                          size_t klen, roaring_bitmap_t **out) CM_WUR;
/* Writes bm at key (deletes the key when bm is empty). */
enum cm_status idx_bm_put(struct kv_txn *t, enum kv_db db, const void *key,
                          size_t klen, roaring_bitmap_t *bm) CM_WUR;
/* roaring_bitmap_free that accepts NULL (0.2.66's does not). */
static inline void idx_bm_free(roaring_bitmap_t *b)
{
    if (b)
        roaring_bitmap_free(b);
}
enum cm_status idx_bm_decode(const void *v, size_t n,
                             roaring_bitmap_t **out) CM_WUR;
/* The portable serialization of the sorted docids ids[0..n) without
 * building a bitmap, when CRoaring would make it one array container (all
 * in one 2^16 block, n <= 4096, and run_optimize keeps the array):
 * idx_bm_small_size() gives its length, 0 when the set has another shape
 * (serialize through CRoaring then); idx_bm_small_write() writes that many
 * bytes.  Byte-identical to roaring_bitmap_of_ptr + run_optimize +
 * portable_serialize (test_bm_small). */
size_t idx_bm_small_size(const uint32_t *ids, size_t n);
void idx_bm_small_write(const uint32_t *ids, size_t n, uint8_t *out);

/* ---- Columns and dictionaries -------------------------------------- */

#define IDX_CHUNK       1024u
#define IDX_GAP         ((uint64_t)1 << 32)
#define IDX_DICT_MAXKEY 400 /* dictionary key bytes (LMDB keys <= 511) */

/* A read cursor over one column: caches the current chunk pointer.
 * Values: 0 = NULL or absent. */
struct idx_colcur {
    struct kv_txn *t;
    uint8_t f;
    uint32_t chunk; /* UINT32_MAX: none loaded */
    const uint8_t *p;
    size_t n;
};
void idx_colcur_init(struct idx_colcur *c, struct kv_txn *t,
                     enum idx_sort_field f);
enum cm_status idx_colcur_get(struct idx_colcur *c, uint32_t docid,
                              uint64_t *v) CM_WUR;

/* Column chunk key: 'c' ‖ f ‖ chunk BE4. */
void idx_col_key(uint8_t k[6], enum idx_sort_field f, uint32_t chunk);
/* Dictionary key: 'd' ‖ f ‖ bytes into b (reset first). */
enum cm_status idx_dict_key(struct cm_buf *b, enum idx_sort_field f,
                            const void *k, size_t n) CM_WUR;

/* ---- Small maps ----------------------------------------------------- */

/* Open addressing u64 (non-zero) -> pointer.  Zero-initialise to use. */
struct idx_map {
    uint64_t *keys;
    void **vals;
    size_t cap, n;
};
void idx_map_fini(struct idx_map *m); /* frees the table, not the values */
void **idx_map_find(const struct idx_map *m, uint64_t k);
enum cm_status idx_map_put(struct idx_map *m, uint64_t k, void *v) CM_WUR;

/* ---- Entity facts the scene entries depend on ------------------------ */

/* The tags of performers/studios/groups, and tag/studio/group parents,
 * cached per writer (or rebuild) and loaded lazily from the txn. */
struct idx_etags {
    uint32_t n;
    bool present; /* the entity record exists */
    uint64_t tags[];
};
#define IDX_ECACHE_DIRECT ((uint64_t)1 << 20) /* ids kept in dir[] */
struct idx_ecache {
    struct kv_txn *t;
    struct idx_map m; /* type << 56 | id -> struct idx_etags * (big ids) */
    /* [performer, studio, group, tag][id < IDX_ECACHE_DIRECT]: a lookup per
     * performer, group and studio of every scene, without hashing */
    struct idx_etags **dir[4];
    size_t dircap[4];
};
void idx_ecache_init(struct idx_ecache *c, struct kv_txn *t);
void idx_ecache_fini(struct idx_ecache *c);
void idx_ecache_drop(struct idx_ecache *c, uint8_t type, uint64_t id);
/* OUT *out: borrowed until the entry is dropped or the cache freed. */
enum cm_status idx_ecache_tags(struct idx_ecache *c, uint8_t type, uint64_t id,
                               const struct idx_etags **out) CM_WUR;
/* The cell holding the cached entry of (type, id) (the writer swaps an
 * entity's old and new facts there), NULL when there is none.  Borrowed
 * until the next idx_ecache_tags (the cache may grow). */
void **idx_ecache_slot(struct idx_ecache *c, uint8_t type, uint64_t id);

/* ---- Per-scene derivation ------------------------------------------ */

/* One key (posting or text token) in an entries arena. */
struct idx_key {
    uint32_t off, len; /* into idx_entries.arena */
    uint8_t db;        /* KV_DB_POSTINGS or KV_DB_TEXT */
};

/* An int facet key given as its parts (split entries): IDX_P_INT ‖ field
 * ‖ 0x00 when v is 0, else ‖ 0x01 ‖ BE8(v). */
struct idx_facet {
    uint64_t v; /* idx_enc_i64 of the value (never 0), 0 = null */
    uint8_t field;
};
#define IDX_MAX_FACETS 32

/* Everything a scene contributes to the indexes. */
struct idx_entries {
    struct cm_buf arena;
    struct idx_key *keys;
    size_t nkeys, capkeys;
    uint64_t num[IDX_SF_COUNT];  /* IDX_SK_NUM fields (0 = NULL) */
    uint32_t doff[IDX_SF_COUNT]; /* IDX_SK_DICT fields: key bytes */
    uint32_t dlen[IDX_SF_COUNT]; /* 0 = NULL (no dictionary entry) */
    /* Split entries (the bulk build sets split): the int facet keys are
     * not in keys but in fac[], and the text tokens idx_token_listed()
     * selects are in lkeys (bytes in arena), so the builder takes each
     * kind to its own structure without looking at every key. */
    bool split;
    struct idx_facet fac[IDX_MAX_FACETS];
    size_t nfac;
    struct idx_key *lkeys;
    size_t nlkeys, caplkeys;
};

void idx_entries_init(struct idx_entries *e);
void idx_entries_reset(struct idx_entries *e);
void idx_entries_fini(struct idx_entries *e);
static inline const uint8_t *idx_entries_key(const struct idx_entries *e,
                                             size_t i)
{
    return (const uint8_t *)e->arena.data + e->keys[i].off;
}

/* Fills e (reset first) from scene sc, with the entity facts from c.
 * Keys come out sorted (db, bytes) and deduplicated.  CM_NOMEM,
 * CM_TOOBIG, CM_IO, CM_CORRUPT. */
enum cm_status idx_derive(struct idx_ecache *c, const struct kv_scene *sc,
                          struct idx_entries *e) CM_WUR;
/* idx_derive without the sort: keys in derivation order, and a key may
 * appear more than once (the bulk build, which takes scenes in increasing
 * docid order, skips a docid already last in a key's list instead).  When
 * e->split is set (the bulk build), the int facets go to e->fac and the
 * listed tokens to e->lkeys instead of e->keys (see struct idx_entries). */
enum cm_status idx_derive_unsorted(struct idx_ecache *c,
                                   const struct kv_scene *sc,
                                   struct idx_entries *e) CM_WUR;

/* Children lists (tag DAG, studio tree, group tree) in KV_DB_POSTINGS:
 * 'C' ‖ type ‖ parent id BE8 -> sorted u64 LE child ids. */
#define IDX_P_CHILDREN 'C'
/* "Has at least one": IDX_P_HAS ‖ posting field byte (tag, performer,
 * studio, group, gallery, perf-tag, inh-tag). */
#define IDX_P_HAS 'h'
/* is_missing: IDX_P_MISSING ‖ enum idx_missing byte. */
#define IDX_P_MISSING 'm'

/* ---- Writer ---------------------------------------------------------- */

struct idx_pend;   /* pending add/remove of one posting key */
struct idx_dent;   /* a dictionary key touched by the batch */
struct idx_colset; /* a pending dictionary-valued column cell */

struct idx_writer {
    struct kv_txn *t;
    struct idx_ecache ec;
    struct idx_map pend; /* hash of key -> struct idx_pend chain */
    struct idx_pend *pend_list;
    size_t npend;
    struct idx_map chunks; /* column chunk key -> struct idx_chunk */
    struct idx_chunk *chunk_list;
    struct idx_map dict; /* hash of dictionary key -> struct idx_dent */
    struct idx_dent *dict_list;
    size_t ndict;
    struct idx_colset *cs; /* in call order: the last one of a cell wins */
    size_t ncs, capcs;
    bool deferred; /* the store's indexes are deferred (kv_index_deferred):
                      scene and entity changes write records only */
    struct idx_entries eo, en; /* scratch */
    struct cm_buf kb;          /* scratch key buffer */
};

/* Applies old -> new of docid (either may be NULL = nothing). */
enum cm_status idx_apply(struct idx_writer *w, uint32_t docid,
                         const struct idx_entries *old,
                         const struct idx_entries *cur) CM_WUR;
/* Adds or removes child in parent's children list. */
enum cm_status idx_children_edit(struct idx_writer *w, uint8_t type,
                                 uint64_t parent, uint64_t child,
                                 bool add) CM_WUR;
enum cm_status idx_writer_init(struct idx_writer *w, struct kv_txn *t) CM_WUR;
enum cm_status idx_writer_flush(struct idx_writer *w) CM_WUR;
void idx_writer_fini(struct idx_writer *w);

/* The bulk build of idx_rebuild (idx_bulk.c): scenes are added in
 * increasing docid order and every index key is written once at the end,
 * with MDB_APPEND, into index databases that must be empty.  Not
 * thread-safe; the builder lives inside one write transaction. */
struct idx_bulk;
/* OUT *out: caller owns, free with idx_bulk_free().  CM_NOMEM. */
enum cm_status idx_bulk_new(struct kv_txn *t, struct idx_bulk **out) CM_WUR;
/* Derives scene sc at docid into the builder (sc is not kept).  CM_INVALID
 * when docid is not above the previous one; CM_NOMEM, CM_TOOBIG, CM_IO,
 * CM_CORRUPT. */
enum cm_status idx_bulk_add(struct idx_bulk *b, uint32_t docid,
                            const struct kv_scene *sc) CM_WUR;
/* Writes every posting, text, dictionary and column key, and the reverse
 * index (kv_revapp_*: its entries are the docids of the tag, performer,
 * studio, group and gallery postings).  CM_NOMEM, CM_TOOBIG, CM_IO (map
 * full: kv_write_run retries). */
enum cm_status idx_bulk_write(struct idx_bulk *b) CM_WUR;
void idx_bulk_free(struct idx_bulk *b); /* NULL-safe */

/* Seeds used by sort "random" (Peek: a daily seed): seed of the current
 * UTC day, % 1e8. */
uint64_t idx_daily_seed(void);

/* Tokenizer shared by the writer and the query side: calls fn for each
 * maximal run of token bytes (ASCII alnum or any byte >= 0x80),
 * ASCII-lower-cased. */
bool idx_is_tokbyte(unsigned char c);
#define IDX_TOK_MAX  255
#define IDX_TOK_STEP 128

/* Token byte -> its ASCII-lower-cased form, any other byte -> 0 (no token
 * byte is 0). */
extern const unsigned char idx_tok_lower[256];

/* The token windows of s[0..len) one at a time, as idx_tokenize emits
 * them: each maximal run of token bytes, a run longer than IDX_TOK_MAX
 * as windows of IDX_TOK_MAX bytes every IDX_TOK_STEP bytes.  Initialise
 * with {s, len} (the rest zero); idx_tok_next writes the next window,
 * lower-cased, to dst (room for IDX_TOK_MAX bytes) and gives its length,
 * or returns false at the end.  A run is copied while it is scanned. */
struct idx_tokit {
    const unsigned char *s;
    size_t len;
    size_t i;   /* scan position */
    size_t off; /* next window of a long run */
    size_t end; /* end of that run (off == end: none pending) */
};
/* 8 bytes at a time (idx_tok_next): x holds s[i..i+8) with s[i] in the
 * low byte.  Returns 0x80 in each byte that is a token byte (>= 0x80 or
 * ASCII alnum); OUT *lower: x with its ASCII letters lower-cased.  No
 * byte's arithmetic carries into the next (each sum stays below 0x100). */
static inline uint64_t idx_tok_mask8(uint64_t x, uint64_t *lower)
{
    const uint64_t h = 0x8080808080808080ULL, l = 0x0101010101010101ULL;
    uint64_t t = x & ~h;         /* each byte's low 7 bits */
    uint64_t a = t | (0x20 * l); /* letters folded to lower case */
    uint64_t digit = (t + (0x80 - '0') * l) & ~(t + (0x7F - '9') * l) & h;
    uint64_t alpha = (a + (0x80 - 'a') * l) & ~(a + (0x7F - 'z') * l) & h;
    uint64_t high = x & h;
    *lower = x | ((alpha & ~high) >> 2);
    return high | digit | alpha;
}

/* s[i..i+8) as a little-endian word. */
static inline uint64_t idx_tok_load8(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

static inline bool idx_tok_next(struct idx_tokit *it, unsigned char *dst,
                                size_t *n)
{
    /* locals: stores to dst (bytes) would otherwise reload *it */
    const unsigned char *s = it->s;
    size_t len = it->len, i = it->i, k = 0, e;
    unsigned char c = 0;
    uint64_t m, lw;
    if (it->off < it->end) { /* the next window of a long run */
        e = it->end - it->off > IDX_TOK_MAX ? it->off + IDX_TOK_MAX : it->end;
        for (size_t j = it->off; j < e; j++)
            dst[k++] = idx_tok_lower[s[j]];
        *n = k;
        it->off = e == it->end ? it->end : it->off + IDX_TOK_STEP;
        return true;
    }
    /* Skip to the run's first byte, then copy it, 8 bytes at a time while
     * 8 are left (never reading past s[len - 1] nor writing past
     * dst[IDX_TOK_MAX - 1]), the rest a byte at a time. */
    for (; i + 8 <= len; i += 8)
        if ((m = idx_tok_mask8(idx_tok_load8(s + i), &lw)) != 0) {
            i += (size_t)__builtin_ctzll(m) / 8;
            goto run;
        }
    while (i < len && !idx_tok_lower[s[i]])
        i++;
    if (i >= len) {
        it->i = i;
        return false;
    }
run:
    e = i;
    k = len - i > IDX_TOK_MAX ? i + IDX_TOK_MAX : len; /* window's limit */
    for (; i + 8 <= k; i += 8) {
        m = idx_tok_mask8(idx_tok_load8(s + i), &lw);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
        lw = __builtin_bswap64(lw);
#endif
        memcpy(dst + (i - e), &lw, 8);
        if (m != 0x8080808080808080ULL) {
            i += (size_t)__builtin_ctzll(~m & 0x8080808080808080ULL) / 8;
            goto copied;
        }
    }
    while (i < k && (c = idx_tok_lower[s[i]]) != 0)
        dst[i++ - e] = c;
copied:
    k = i - e;
    *n = k;
    if (k == IDX_TOK_MAX && i < len && idx_tok_lower[s[i]]) {
        while (i < len && idx_tok_lower[s[i]])
            i++; /* longer than a window: the others follow */
        it->end = i;
        it->off = e + IDX_TOK_STEP;
    }
    it->i = i;
    return true;
}

/* ---- Cached full orders (idx_order.c) ------------------------------- */

/* Meta key of the index generation: a fresh random u64 stored by every
 * write transaction that changes postings or columns. */
#define IDX_META_GEN "index_gen"
/* Orders cached per process (each 8 bytes per scene: order and rank,
 * plus block bitmaps of about 2 bytes per scene once a deep page needed
 * them): 8 MB each at 1M scenes. */
#define IDX_ORDER_SLOTS 8
/* Positions per block summary (deep-offset skipping). */
#define IDX_ORDER_BLOCK 4096u

/* Every docid of the universe in the ordering contract of one sort key
 * and direction.  Immutable once published, except the lazily built block
 * bitmaps (see idx_order_blocks). */
struct idx_order {
    struct idx_slot_ref ref; /* generation and references (idx_slots.h) */
    uint32_t *docids;        /* n docids, in order */
    uint32_t *rank;          /* [maxdoc + 1]: position of a docid
                                (UINT32_MAX: not in the universe) */
    uint32_t n, maxdoc;
    roaring_bitmap_t **blocks; /* NULL until built; guarded by the blocks
                                  mutex of idx_order.c */
    uint32_t nblocks;
    bool blocks_building;
};

/* Stores a new generation in t (write txn).  CM_TOOBIG, CM_IO. */
enum cm_status idx_gen_bump(struct kv_txn *t) CM_WUR;
/* OUT *gen: the generation t sees; 0 when the store has none. */
enum cm_status idx_gen_get(struct kv_txn *t, uint64_t *gen) CM_WUR;

/* The cached order of (f, desc, seed) for generation gen of t's store,
 * whose universe is all; built now (in t) when missing or stale unless
 * another query is building it.  OUT *out: NULL when not available (no
 * generation, being built elsewhere, first request of a random seed,
 * out of memory): use the candidate plan.  Release with
 * idx_order_release().  Thread-safe.  CM_CORRUPT, CM_IO. */
enum cm_status idx_order_get(struct kv_txn *t, enum idx_sort_field f, bool desc,
                             uint64_t seed, uint64_t gen,
                             const roaring_bitmap_t *all,
                             struct idx_order **out) CM_WUR;
/* The cached order of (f, desc, seed) at generation gen when there is
 * one; never builds.  OUT *out: NULL when none.  Thread-safe. */
void idx_order_peek(struct kv_store *s, enum idx_sort_field f, bool desc,
                    uint64_t seed, uint64_t gen, struct idx_order **out);
void idx_order_release(struct idx_order *o); /* NULL-safe */
/* OUT *blocks[0..*nblocks): per-block docid bitmaps, built on first call;
 * borrowed while o is held.  *blocks NULL while another thread builds
 * them (walk without).  Thread-safe. */
enum cm_status idx_order_blocks(struct idx_order *o,
                                roaring_bitmap_t *const **blocks,
                                uint32_t *nblocks) CM_WUR;

/* Plans chosen by idx_query_run since start (tests assert each plan is
 * exercised; relaxed atomics, for tests and diagnostics only). */
enum idx_plan {
    IDX_PLAN_TOPK,   /* candidates' column values + quickselect */
    IDX_PLAN_SLICE,  /* unfiltered: slice of the cached order */
    IDX_PLAN_WALK,   /* walk the cached order testing membership */
    IDX_PLAN_BLOCKS, /* the walk skipped whole blocks (deep offset) */
    IDX_PLAN_RANK,   /* candidates' positions in a cached order + select */
    IDX_PLAN_COUNT
};
uint64_t idx_plan_count(enum idx_plan p);

/* ---- q text: key classes, row postings, evaluation ------------------
 * (idx_text.c; docs/INDEX.md "q").  KV_DB_TEXT keys are the tokens of
 * the scene-level columns and file paths as they are, the fingerprint
 * tokens behind IDX_T_FP and the marker-title tokens behind IDX_T_MARKER
 * (neither byte is a token byte), so a query can tell which part of
 * Stash's join row a hit came from. */
#define IDX_T_FP     0x01
#define IDX_T_MARKER 0x02

/* Whether the text key k[0..n) (n >= 1) is of the classes the bulk build
 * lists instead of hashing, because they are nearly all distinct per
 * scene: fingerprints (IDX_T_FP) and numbers of IDX_LIST_DIGITS digits or
 * more (ids, timestamps, file numbers: at 1M scenes of the fake library
 * 990k keys, each with one docid).  Shorter ones (years, resolutions,
 * codes: 11k keys with 3.3M docids there) repeat and stay in the key
 * table (docs/INDEX.md "Rebuild").  Looks at k[0] and
 * k[IDX_LIST_DIGITS - 1] only. */
#define IDX_LIST_DIGITS 5
static inline bool idx_token_listed(const uint8_t *k, size_t n)
{
    return k[0] == IDX_T_FP ||
           (n >= IDX_LIST_DIGITS && k[0] >= '0' && k[0] <= '9' &&
            k[IDX_LIST_DIGITS - 1] >= '0' && k[IDX_LIST_DIGITS - 1] <= '9');
}
enum idx_tclass {
    IDX_TC_MAIN,   /* title, details, code, names, file paths */
    IDX_TC_FP,     /* oshash, md5, phash as signed decimal */
    IDX_TC_MARKER, /* marker titles */
    IDX_TC_COUNT
};
/* Row postings: IDX_P_ROWS ‖ one of these.  Scenes whose rows in Stash's
 * q join (files x fingerprints x markers) differ in that part. */
#define IDX_P_ROWS     'R'
#define IDX_ROWS_FILES 'f' /* more than one file */
#define IDX_ROWS_FP    'p' /* a file with more than one fingerprint row */
#define IDX_ROWS_MARK  'm' /* more than one marker */
/* Largest dictionary snapshot (key bytes + separators): a bigger text
 * dictionary is walked in LMDB by every query term instead. */
#define IDX_TEXT_MAX_BYTES ((size_t)256 << 20)

/* Narrows cand (the docids the filter left, or the universe) to the
 * scenes matching q->qs, exactly as idx_q_match() decides (idx_text.c).
 * Uses and maintains the process-wide dictionary snapshot.  Thread-safe
 * (t is the caller's).  CM_NOMEM, CM_CORRUPT, CM_IO. */
enum cm_status idx_q_eval(struct kv_txn *t, const struct idx_query *q,
                          roaring_bitmap_t *cand) CM_WUR;

/* Counters since start (relaxed atomics; tests and diagnostics only). */
enum idx_text_stat {
    IDX_TS_BUILD,    /* snapshots built */
    IDX_TS_SNAPSHOT, /* terms searched in a snapshot */
    IDX_TS_WALK,     /* terms searched by walking KV_DB_TEXT */
    IDX_TS_VERIFIED, /* records decoded to verify a q match */
    IDX_TS_COUNT
};
uint64_t idx_text_stat(enum idx_text_stat s);
/* Whether q may use dictionary snapshots (default true); tests turn it
 * off to check the LMDB walk against the oracle too.  Thread-safe. */
void idx_text_use_snapshots(bool on);
/* For tests: parses the portable bitmap v[0..n) into q's flat bitset of
 * nbits docids and converts it back.  OUT *out: caller frees.
 * CM_CORRUPT, CM_NOMEM. */
enum cm_status idx_text_bits_roundtrip(const void *v, size_t n, size_t nbits,
                                       roaring_bitmap_t **out) CM_WUR;
