/*
 * idx_text.c - `q`, Stash's free-text search, answered from the text index.
 *
 * Terms.  q matches LIKE '%term%', so a term's candidates are the bitmaps
 * of every token that *contains* the term's needle (its longest run of
 * token bytes): no prefix range of the sorted dictionary answers that,
 * and walking the LMDB text db (keys and bitmaps, tens of MB at 1M
 * scenes) costs ~30 ms per term.  Instead the keys are copied once per
 * index generation into a process-wide snapshot: one flat buffer of every
 * key followed by a 0x00 (never a token byte, so a needle never matches
 * across keys), plus the start offset of each key.  A term is one memmem
 * pass over the buffer; each hit is mapped back to its key by binary
 * search on the offsets, and only the matching keys' values are read
 * (mdb_get in the query's transaction).  The buffer is split in three
 * segments by the token's characters: some byte outside [0-9a-f] (words),
 * hex with a letter (oshash, md5), digits only (numbers, phash).  A
 * needle occurs only in tokens of its own segment or an earlier one (a
 * needle with a 'g' needs a token with a 'g'), so a word never scans the
 * fingerprints and numbers.
 *
 * Snapshot validity and sharing follow the order cache (idx_order.c): a
 * snapshot is used only by a query whose transaction reads the generation
 * (IDX_META_GEN) it was built at; generations are random, so one built
 * inside a write transaction that was later aborted is never matched by
 * committed data.  IDX_TEXT_SLOTS stores share one slot table
 * (idx_slots.h); snapshots are refcounted (the slot holds one reference,
 * each query using it another); the one query that claims a stale slot
 * builds it outside the table's mutex, the others walk LMDB meanwhile
 * (they never wait).  A dictionary larger than IDX_TEXT_MAX_BYTES is
 * never copied (nor tried again at that generation).
 *
 * Algebra.  Per query the terms' hits are flat bitsets over the docids
 * (maxdoc / 8 bytes each), OR-ed straight from the stored CRoaring
 * portable serializations (no decode, no container merges); AND / AND
 * NOT are word loops; the result goes back to a roaring bitmap once.
 * Stash evaluates q per row of scene x file x fingerprint x marker and
 * keeps a scene when some row satisfies every condition; idx_q_eval()
 * uses the key classes (IDX_T_FP, IDX_T_MARKER) and the row postings
 * (IDX_P_ROWS) to decide every scene whose rows agree on every term by
 * set algebra and decodes only the others (docs/INDEX.md "q").
 */
#include <lmdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_log.h"
#include "index/idx_filter.h"
#include "index/idx_int.h"
#include "index/idx_slots.h"

#define IDX_TEXT_SLOTS 2
#define NSEG           3 /* words, hex with a letter, digits */

static atomic_uint_fast64_t stats[IDX_TS_COUNT];
static atomic_bool snapshots_off;

uint64_t idx_text_stat(enum idx_text_stat s)
{
    return atomic_load_explicit(&stats[s], memory_order_relaxed);
}

static void stat_add(enum idx_text_stat s, uint64_t n)
{
    atomic_fetch_add_explicit(&stats[s], n, memory_order_relaxed);
}

void idx_text_use_snapshots(bool on)
{
    atomic_store(&snapshots_off, !on);
}

/* ---- Flat bitsets ------------------------------------------------------ */

/* Docids [0, nw * 64) of one query; w NULL = empty.  Every bitset of a
 * query has the same nw. */
struct bits {
    uint64_t *w;
    size_t nw;
};

static void bits_free(struct bits *b)
{
    cm_free(b->w);
    b->w = NULL;
}

/* Allocates b (zeroed) unless it is already. */
static enum cm_status bits_need(struct bits *b, size_t nw)
{
    if (b->w)
        return CM_OK;
    b->nw = nw;
    b->w = cm_calloc(nw ? nw : 1, sizeof *b->w);
    return b->w ? CM_OK : CM_NOMEM;
}

static uint64_t word(const struct bits *b, size_t i)
{
    return b->w ? b->w[i] : 0;
}

static void set_range(struct bits *b, uint64_t lo, uint64_t hi) /* [lo,hi] */
{
    uint64_t max = (uint64_t)b->nw * 64 - 1;
    if (lo > max)
        return;
    if (hi > max)
        hi = max;
    while (lo <= hi) {
        size_t i = (size_t)(lo >> 6);
        unsigned s = (unsigned)(lo & 63);
        uint64_t last = (uint64_t)i * 64 + 63;
        unsigned e = hi >= last ? 63 : (unsigned)(hi & 63);
        uint64_t m = (e == 63 ? ~(uint64_t)0 : (((uint64_t)1 << (e + 1)) - 1)) &
                     ~(((uint64_t)1 << s) - 1);
        b->w[i] |= m;
        if (hi <= last)
            break;
        lo = last + 1;
    }
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* CRoaring's portable format (RoaringFormatSpec): cookie 12347 | (n-1) <<
 * 16 then a run-container bitmap, or cookie 12346 then n; n (key, card-1)
 * u16 pairs; u32 offsets unless it has runs and n < 4; the containers:
 * runs (u16 count, (start, length) pairs), bitsets (card > 4096: 1024
 * u64) or arrays (card u16).  Little-endian. */
#define COOKIE_RUNS    12347u
#define COOKIE_NO_RUNS 12346u
#define ARRAY_MAX      4096u

/* ORs the portable bitmap v[0..n) into b (allocated with nw words when
 * needed; docids beyond it are dropped).  CM_CORRUPT, CM_NOMEM. */
static enum cm_status bits_or_portable(struct bits *b, size_t nw,
                                       const uint8_t *v, size_t n)
{
    const uint8_t *runs = NULL, *hdr;
    size_t pos, size;
    uint64_t nbits = (uint64_t)nw * 64;
    enum cm_status st;

    if (n < 4)
        return CM_CORRUPT;
    if ((rd32(v) & 0xFFFF) == COOKIE_RUNS) {
        size = (rd32(v) >> 16) + 1;
        runs = v + 4;
        pos = 4 + (size + 7) / 8;
    } else if (rd32(v) == COOKIE_NO_RUNS) {
        if (n < 8)
            return CM_CORRUPT;
        size = rd32(v + 4);
        pos = 8;
        if (size > 65536)
            return CM_CORRUPT;
    } else {
        return CM_CORRUPT;
    }
    if (pos > n || (n - pos) / 4 < size)
        return CM_CORRUPT;
    hdr = v + pos;
    pos += 4 * size;
    if (!runs || size >= 4)
        pos += 4 * size; /* offsets: the containers are read in order */
    if (pos > n)
        return CM_CORRUPT;
    if (size == 0)
        return CM_OK;
    st = bits_need(b, nw);
    if (st != CM_OK)
        return st;
    for (size_t i = 0; i < size; i++) {
        uint64_t base = (uint64_t)rd16(hdr + 4 * i) << 16;
        uint32_t card = (uint32_t)rd16(hdr + 4 * i + 2) + 1;
        if (runs && (runs[i / 8] >> (i % 8) & 1)) {
            uint32_t nr;
            if (n - pos < 2)
                return CM_CORRUPT;
            nr = rd16(v + pos);
            pos += 2;
            if ((n - pos) / 4 < nr)
                return CM_CORRUPT;
            for (uint32_t k = 0; k < nr; k++, pos += 4) {
                uint64_t s = base + rd16(v + pos);
                set_range(b, s, s + rd16(v + pos + 2));
            }
        } else if (card > ARRAY_MAX) {
            size_t w0 = (size_t)(base >> 6);
            if (n - pos < 8192)
                return CM_CORRUPT;
            for (size_t k = 0; k < 1024 && w0 + k < b->nw; k++)
                b->w[w0 + k] |= rd64(v + pos + 8 * k);
            pos += 8192;
        } else {
            if ((n - pos) / 2 < card)
                return CM_CORRUPT;
            for (uint32_t k = 0; k < card; k++, pos += 2) {
                uint64_t d = base + rd16(v + pos);
                if (d < nbits)
                    b->w[d >> 6] |= (uint64_t)1 << (d & 63);
            }
        }
    }
    return CM_OK;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt"))) static uint32_t pop_hw(const uint64_t *w,
                                                         size_t n)
{
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (uint32_t)__builtin_popcountll(w[i]);
    return c;
}
#endif

static uint32_t pop(const uint64_t *w, size_t n)
{
    uint32_t c = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("popcnt"))
        return pop_hw(w, n);
#endif
    for (size_t i = 0; i < n; i++)
        c += (uint32_t)__builtin_popcountll(w[i]);
    return c;
}

/* OUT *out: a new roaring bitmap of b's docids (written in the portable
 * format, then deserialized: no per-element container work). */
static enum cm_status bits_to_roaring(const struct bits *b,
                                      roaring_bitmap_t **out)
{
    size_t nch = b->w ? (b->nw + 1023) / 1024 : 0, n = 0, len, at;
    uint32_t *card = NULL;
    uint8_t *buf = NULL;
    enum cm_status st = CM_OK;

    *out = NULL;
    card = cm_calloc(nch ? nch : 1, sizeof *card);
    if (!card)
        return CM_NOMEM;
    len = 8;
    for (size_t c = 0; c < nch; c++) {
        size_t w0 = c * 1024, k = b->nw - w0 < 1024 ? b->nw - w0 : 1024;
        card[c] = pop(b->w + w0, k);
        if (card[c]) {
            n++;
            len += 8 + (card[c] > ARRAY_MAX ? 8192 : 2 * (size_t)card[c]);
        }
    }
    buf = cm_malloc(len);
    if (!buf) {
        st = CM_NOMEM;
        goto out;
    }
    idx_le32(buf, COOKIE_NO_RUNS);
    idx_le32(buf + 4, (uint32_t)n);
    at = 8 + 8 * n;
    for (size_t c = 0, i = 0; c < nch; c++) {
        size_t w0 = c * 1024, k = b->nw - w0 < 1024 ? b->nw - w0 : 1024;
        if (!card[c])
            continue;
        idx_le16(buf + 8 + 4 * i, (uint32_t)c);
        idx_le16(buf + 8 + 4 * i + 2, card[c] - 1);
        idx_le32(buf + 8 + 4 * n + 4 * i, (uint32_t)at);
        i++;
        if (card[c] > ARRAY_MAX) {
            memset(buf + at, 0, 8192);
            for (size_t j = 0; j < k; j++) {
                uint64_t x = b->w[w0 + j];
                for (int y = 0; y < 8; y++)
                    buf[at + 8 * j + (size_t)y] = (uint8_t)(x >> (8 * y));
            }
            at += 8192;
        } else {
            for (size_t j = 0; j < k; j++)
                for (uint64_t x = b->w[w0 + j]; x; x &= x - 1) {
                    idx_le16(buf + at,
                             (uint32_t)(j * 64 + (size_t)__builtin_ctzll(x)));
                    at += 2;
                }
        }
    }
    *out = roaring_bitmap_portable_deserialize_safe((const char *)buf, len);
    if (!*out)
        st = CM_NOMEM;
out:
    cm_free(card);
    cm_free(buf);
    return st;
}

enum cm_status idx_text_bits_roundtrip(const void *v, size_t n, size_t nbits,
                                       roaring_bitmap_t **out)
{
    struct bits b = {NULL, 0};
    size_t nw = nbits / 64 + 1;
    enum cm_status st = bits_or_portable(&b, nw, v, n);
    *out = NULL;
    if (st == CM_OK && !b.w)
        st = bits_need(&b, nw);
    if (st == CM_OK)
        st = bits_to_roaring(&b, out);
    bits_free(&b);
    return st;
}

/* ---- Dictionary snapshot ----------------------------------------------- */

struct tdict {
    struct idx_slot_ref ref; /* generation and references (idx_slots.h) */
    char *buf;               /* every key + 0x00, segment after segment */
    uint32_t *off;           /* [n + 1]: start of key i; off[n] = bytes used */
    uint32_t n;
    uint32_t seg[NSEG + 1]; /* first key of each segment; seg[NSEG] = n */
};

static void tdict_free(void *v);

/* Slot key: (store, 0, 0). */
static struct idx_slot slots[IDX_TEXT_SLOTS];
static struct idx_slots dicts = IDX_SLOTS_INIT(slots, tdict_free);

/* Segment of a token (its bytes after any class prefix). */
static int seg_of(const uint8_t *p, size_t n)
{
    int sg = 2;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c >= 'a' && c <= 'f')
            sg = 1;
        else if (c < '0' || c > '9')
            return 0;
    }
    return sg;
}

/* Class of a text key; returns the length of its prefix. */
static size_t key_class(const uint8_t *k, size_t n, enum idx_tclass *c)
{
    if (n > 0 && k[0] == IDX_T_FP) {
        *c = IDX_TC_FP;
        return 1;
    }
    if (n > 0 && k[0] == IDX_T_MARKER) {
        *c = IDX_TC_MARKER;
        return 1;
    }
    *c = IDX_TC_MAIN;
    return 0;
}

static void tdict_free(void *v)
{
    struct tdict *d = v;
    if (!d)
        return;
    cm_free(d->buf);
    cm_free(d->off);
    cm_free(d);
}

static void tdict_release(struct tdict *d)
{
    idx_slots_release(&dicts, d);
}

/* Per-segment growing key list during the build. */
struct segbuf {
    struct cm_buf b;
    uint32_t *off;
    size_t n, cap;
};

/* Copies t's text keys.  OUT *out: NULL (and CM_OK) when they exceed
 * IDX_TEXT_MAX_BYTES (*too_big set). */
static enum cm_status build(struct kv_txn *t, struct tdict **out, bool *too_big)
{
    struct segbuf sb[NSEG];
    struct tdict *d = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    size_t total = 0, nkeys = 0;
    enum cm_status st = CM_OK;
    int rc;

    *out = NULL;
    *too_big = false;
    memset(sb, 0, sizeof sb);
    for (int i = 0; i < NSEG; i++)
        cm_buf_init(&sb[i].b, IDX_TEXT_MAX_BYTES);
    rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), KV_DB_TEXT),
                         &cur);
    if (rc) {
        st = kv_from_mdb(rc, "text cursor");
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        enum idx_tclass c;
        size_t skip = key_class(p, k.mv_size, &c);
        struct segbuf *s = &sb[seg_of(p + skip, k.mv_size - skip)];
        total += k.mv_size + 1;
        if (total > IDX_TEXT_MAX_BYTES || nkeys >= UINT32_MAX - 1) {
            *too_big = true;
            goto out;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 1024;
            uint32_t *no = cm_realloc(s->off, cap * sizeof *no);
            if (!no) {
                st = CM_NOMEM;
                goto out;
            }
            s->off = no;
            s->cap = cap;
        }
        s->off[s->n++] = (uint32_t)s->b.len;
        st = cm_buf_append(&s->b, p, k.mv_size);
        if (st == CM_OK)
            st = cm_buf_putc(&s->b, '\0');
        if (st != CM_OK)
            goto out;
        nkeys++;
    }
    if (rc != MDB_NOTFOUND) {
        st = kv_from_mdb(rc, "text walk");
        goto out;
    }
    d = cm_calloc(1, sizeof *d);
    if (!d) {
        st = CM_NOMEM;
        goto out;
    }
    d->buf = cm_malloc(total ? total : 1);
    d->off = cm_malloc((nkeys + 1) * sizeof *d->off);
    if (!d->buf || !d->off) {
        st = CM_NOMEM;
        goto out;
    }
    {
        size_t at = 0, ki = 0;
        for (int i = 0; i < NSEG; i++) {
            d->seg[i] = (uint32_t)ki;
            if (sb[i].b.len)
                memcpy(d->buf + at, sb[i].b.data, sb[i].b.len);
            for (size_t j = 0; j < sb[i].n; j++)
                d->off[ki++] = (uint32_t)(at + sb[i].off[j]);
            at += sb[i].b.len;
        }
        d->seg[NSEG] = (uint32_t)ki;
        d->off[ki] = (uint32_t)at;
        d->n = (uint32_t)ki;
    }
    *out = d;
    d = NULL;
out:
    if (cur)
        mdb_cursor_close(cur);
    for (int i = 0; i < NSEG; i++) {
        cm_buf_fini(&sb[i].b);
        cm_free(sb[i].off);
    }
    tdict_free(d);
    return st;
}

/* The snapshot of t's store at generation gen; built now (in t) when
 * missing or stale unless another query is building it.  OUT *out: NULL
 * when not available (gen 0, switched off, being built elsewhere, too
 * big, out of memory): walk LMDB.  Release with tdict_release(). */
static enum cm_status tdict_get(struct kv_txn *t, uint64_t gen,
                                struct tdict **out)
{
    struct idx_slot_key key = {kv_txn_store(t), 0, 0};
    struct tdict *built = NULL;
    struct idx_slot *sl;
    bool too_big = false;
    enum cm_status st;
    void *v;

    *out = NULL;
    if (gen == 0 || atomic_load(&snapshots_off))
        return CM_OK;
    switch (idx_slots_get(&dicts, &key, gen, NULL, NULL, &v, &sl)) {
    case IDX_SLOT_HIT: *out = v; return CM_OK;
    case IDX_SLOT_NONE: return CM_OK; /* walk LMDB meanwhile */
    case IDX_SLOT_CLAIMED: break;
    }

    st = build(t, &built, &too_big);

    idx_slots_publish(&dicts, sl, gen, built, too_big);
    *out = built;
    if (built)
        stat_add(IDX_TS_BUILD, 1);
    if (too_big)
        cm_warn("index",
                "the q text dictionary exceeds %zu MB: searching it in "
                "LMDB",
                IDX_TEXT_MAX_BYTES >> 20);
    if (st == CM_NOMEM) {
        cm_warn("index", "no memory for the q text dictionary snapshot; "
                         "searching it in LMDB");
        st = CM_OK;
    }
    return st;
}

/* ---- Term search ------------------------------------------------------- */

/* ORs the stored bitmap of text key k into hit[class of k]. */
static enum cm_status or_key(struct kv_txn *t, const uint8_t *k, size_t n,
                             size_t nw, struct bits hit[IDX_TC_COUNT])
{
    const void *v;
    size_t vn;
    enum idx_tclass c;
    enum cm_status st = kv_get(t, KV_DB_TEXT, k, n, &v, &vn);

    if (st == CM_NOTFOUND) {
        /* The snapshot is of this generation, so every key exists. */
        cm_error("index", "q text snapshot key missing from the store");
        return CM_CORRUPT;
    }
    if (st != CM_OK)
        return st;
    (void)key_class(k, n, &c);
    return bits_or_portable(&hit[c], nw, v, vn);
}

/* Index of the key holding byte offset pos (off[i] <= pos < off[i+1]). */
static uint32_t key_at(const struct tdict *d, uint32_t hi, size_t pos)
{
    uint32_t lo = 0; /* invariant: off[lo] <= pos < off[hi] */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (d->off[mid] <= pos)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static enum cm_status find_snapshot(struct kv_txn *t, const struct tdict *d,
                                    const char *nd, size_t nn, size_t nw,
                                    struct bits hit[IDX_TC_COUNT])
{
    uint32_t nk = d->seg[seg_of((const uint8_t *)nd, nn) + 1];
    size_t pos = 0, end = d->off[nk];
    enum cm_status st = CM_OK;

    while (st == CM_OK && pos < end) {
        const char *p = memmem(d->buf + pos, end - pos, nd, nn);
        uint32_t i;
        if (!p)
            break;
        i = key_at(d, nk, (size_t)(p - d->buf));
        st = or_key(t, (const uint8_t *)d->buf + d->off[i],
                    d->off[i + 1] - d->off[i] - 1, nw, hit);
        pos = d->off[i + 1]; /* the next key */
    }
    return st;
}

static enum cm_status find_walk(struct kv_txn *t, const char *nd, size_t nn,
                                size_t nw, struct bits hit[IDX_TC_COUNT])
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    enum cm_status st = CM_OK;
    int rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), KV_DB_TEXT),
                             &cur);

    if (rc)
        return kv_from_mdb(rc, "text cursor");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && st == CM_OK;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        enum idx_tclass c;
        size_t skip = key_class(k.mv_data, k.mv_size, &c);
        if (memmem((const char *)k.mv_data + skip, k.mv_size - skip, nd, nn))
            st = bits_or_portable(&hit[c], nw, v.mv_data, v.mv_size);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "text walk");
    mdb_cursor_close(cur);
    return st;
}

/* ---- q ---------------------------------------------------------------- */

/* The longest run of token bytes without LIKE wildcards, lower-cased. */
static size_t needle_of(const struct idx_str *t, char *buf, size_t cap)
{
    size_t best = 0, bs = 0, i = 0;
    while (i < t->len) {
        size_t s;
        while (i < t->len && !idx_is_tokbyte((unsigned char)t->p[i]))
            i++;
        s = i;
        while (i < t->len && idx_is_tokbyte((unsigned char)t->p[i]))
            i++;
        if (i - s > best) {
            best = i - s;
            bs = s;
        }
    }
    if (best > cap)
        best = cap;
    for (size_t k = 0; k < best; k++) {
        unsigned char c = (unsigned char)t->p[bs + k];
        buf[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return best;
}

/* A term the token index answers exactly: 1..(IDX_TOK_MAX -
 * IDX_TOK_STEP) bytes, all ASCII alnum.  LIKE '%t%' on a column then
 * holds iff one of the column's tokens contains t: t has no wildcards,
 * the tokenizer and LIKE fold ASCII case alike, and an ASCII byte is a
 * character of its own in any UTF-8 (even malformed), so a byte match is a
 * character match. */
static bool term_exact(const struct idx_str *t)
{
    if (t->len == 0 || t->len > IDX_TOK_MAX - IDX_TOK_STEP)
        return false;
    for (size_t i = 0; i < t->len; i++) {
        unsigned char c = (unsigned char)t->p[i];
        if (c >= 0x80 || !idx_is_tokbyte(c))
            return false;
    }
    return true;
}

/* True when the candidates from the token index ARE the answer: one must
 * term, or one OR set, of exact terms and no exclusion.  With a single
 * positive condition Stash's row semantics reduce to "some column of the
 * scene" (every column value appears on some row), and the text index
 * holds exactly the tokens of the q columns (idx_derive.c). */
static bool q_exact(const struct idx_qspec *qs)
{
    if (qs->n_must_not || qs->n_must + qs->n_any != 1)
        return false;
    if (qs->n_must)
        return term_exact(&qs->must[0]);
    for (size_t j = 0; j < qs->any_len[0]; j++)
        if (!term_exact(&qs->any[0][j]))
            return false;
    return true;
}

/* What the text index says about one term. */
struct qterm {
    struct bits hit[IDX_TC_COUNT]; /* per key class */
    bool needle;                   /* false: every scene is a candidate */
    bool exact;                    /* term_exact: hits are the LIKE hits */
    const uint64_t *cand; /* union of hit (qterm_prep; zeros when none) */
    const uint64_t *dep;  /* see qterm_prep (zeros when none) */
    struct bits own[2];   /* storage of cand, dep when computed */
};

static void qterm_fini(struct qterm *qt)
{
    for (int c = 0; c < IDX_TC_COUNT; c++)
        bits_free(&qt->hit[c]);
    bits_free(&qt->own[0]);
    bits_free(&qt->own[1]);
}

/* The row postings (IDX_P_ROWS), as bitsets. */
struct qrows {
    struct bits files, fp, mark;
};

/* Sets qt->cand, the union of the term's hits, and qt->dep: the scenes
 * where the term's truth may differ between the rows of Stash's join,
 * for scenes with at most one file (those with several are always
 * verified).  The title, details, names and the one path are on every
 * row, so a term hitting them is true on every row; otherwise it is
 * row-dependent only through fingerprint tokens of a scene with several
 * fingerprint rows or marker tokens of a scene with several markers.  A
 * superset of the scenes whose rows really disagree.  zero: nw zero
 * words, used for empty sets. */
static enum cm_status qterm_prep(struct qterm *qt, const struct qrows *rw,
                                 const uint64_t *zero, size_t nw)
{
    const struct bits *m = &qt->hit[IDX_TC_MAIN], *f = &qt->hit[IDX_TC_FP],
                      *k = &qt->hit[IDX_TC_MARKER];
    bool fd = rw && f->w && rw->fp.w, kd = rw && k->w && rw->mark.w;
    enum cm_status st;

    qt->cand = m->w ? m->w : zero;
    qt->dep = zero;
    if (f->w || k->w) {
        st = bits_need(&qt->own[0], nw);
        if (st != CM_OK)
            return st;
        for (size_t i = 0; i < nw; i++)
            qt->own[0].w[i] = word(m, i) | word(f, i) | word(k, i);
        qt->cand = qt->own[0].w;
    }
    if (fd || kd) {
        st = bits_need(&qt->own[1], nw);
        if (st != CM_OK)
            return st;
        for (size_t i = 0; i < nw; i++)
            qt->own[1].w[i] = ((fd ? f->w[i] & rw->fp.w[i] : 0) |
                               (kd ? k->w[i] & rw->mark.w[i] : 0)) &
                              ~word(m, i);
        qt->dep = qt->own[1].w;
    }
    return CM_OK;
}

static enum cm_status qterm_eval(struct kv_txn *t, const struct tdict *d,
                                 size_t nw, const struct idx_str *s,
                                 struct qterm *qt)
{
    char nd[IDX_TOK_MAX - IDX_TOK_STEP];
    size_t nn = needle_of(s, nd, sizeof nd);

    memset(qt, 0, sizeof *qt);
    qt->exact = term_exact(s);
    if (nn == 0)
        return CM_OK;
    qt->needle = true;
    stat_add(d ? IDX_TS_SNAPSHOT : IDX_TS_WALK, 1);
    return d ? find_snapshot(t, d, nd, nn, nw, qt->hit)
             : find_walk(t, nd, nn, nw, qt->hit);
}

static enum cm_status rows_get(struct kv_txn *t, size_t nw, struct qrows *rw)
{
    static const uint8_t kinds[3] = {IDX_ROWS_FILES, IDX_ROWS_FP,
                                     IDX_ROWS_MARK};
    struct bits *dst[3] = {&rw->files, &rw->fp, &rw->mark};
    enum cm_status st = CM_OK;

    for (int i = 0; i < 3 && st == CM_OK; i++) {
        uint8_t k[2] = {IDX_P_ROWS, kinds[i]};
        const void *v;
        size_t n;
        st = kv_get(t, KV_DB_POSTINGS, k, 2, &v, &n);
        if (st == CM_NOTFOUND)
            st = CM_OK;
        else if (st == CM_OK)
            st = bits_or_portable(dst[i], nw, v, n);
    }
    return st;
}

/* Verifies one docid of the domain with idx_q_match (one decode); sets it
 * in keep when it matches. */
static enum cm_status verify_one(struct kv_txn *t, const struct idx_query *q,
                                 uint32_t docid, struct bits *keep)
{
    struct kv_scene sc;
    enum cm_status st;
    memset(&sc, 0, sizeof sc);
    stat_add(IDX_TS_VERIFIED, 1);
    st = kv_scene_get(t, docid, &sc);
    if (st == CM_OK && idx_q_match(q, &sc))
        keep->w[docid >> 6] |= (uint64_t)1 << (docid & 63);
    kv_scene_fini(&sc);
    return st;
}

/* Sets in keep the docids of set (domain members only) that match q. */
static enum cm_status verify_bits(struct kv_txn *t, const struct idx_query *q,
                                  const struct bits *set,
                                  const roaring_bitmap_t *domain,
                                  struct bits *keep)
{
    enum cm_status st = CM_OK;
    for (size_t i = 0; set->w && i < set->nw && st == CM_OK; i++)
        for (uint64_t x = set->w[i]; x && st == CM_OK; x &= x - 1) {
            uint32_t d = (uint32_t)(i * 64 + (size_t)__builtin_ctzll(x));
            if (roaring_bitmap_contains(domain, d))
                st = verify_one(t, q, d, keep);
        }
    return st;
}

/* Evaluates term s into *qt (freed by the caller), notes whether it is
 * exact and ORs its dep into dep.  rw: NULL when q is one positive
 * condition of exact terms (the rows do not matter). */
static enum cm_status term_fold(struct kv_txn *t, const struct tdict *d,
                                size_t nw, const struct idx_str *s,
                                const struct qrows *rw, const uint64_t *zero,
                                struct bits *dep, struct qterm *qt,
                                bool *all_exact)
{
    enum cm_status st = qterm_eval(t, d, nw, s, qt);
    *all_exact = *all_exact && qt->exact && qt->needle;
    if (st != CM_OK || !qt->needle)
        return st;
    st = qterm_prep(qt, rw, zero, nw);
    if (st == CM_OK && qt->dep != zero)
        for (size_t w = 0; w < nw; w++)
            dep->w[w] |= qt->dep[w];
    return st;
}

/* Narrows cand to the scenes matching q->qs.  C starts as every docid;
 * each term is evaluated, folded in and freed (memory stays a few bitsets
 * whatever the number of terms):
 *
 * - a must term ANDs its candidates into C, an OR set the union of its
 *   terms' (exact for exact terms, supersets otherwise; a term without
 *   needle narrows nothing);
 * - an exact `-word` removes the scenes where it is present and
 *   row-constant (at most one file, not in its dep): it is then on every
 *   row, so no row passes;
 * - every term's dep is OR-ed into D.
 *
 * Then: one positive condition of exact terms and no exclusion: C is the
 * answer.  All terms exact: a scene of C outside D ∪ (several files) has
 * row-constant terms, so it matches (its exclusions were removed); only
 * the others are verified.  Otherwise every scene of C is verified. */
enum cm_status idx_q_eval(struct kv_txn *t, const struct idx_query *q,
                          roaring_bitmap_t *cand)
{
    const struct idx_qspec *qs = &q->qs;
    struct tdict *d = NULL;
    struct qrows rw;
    struct qterm qt;
    struct bits c = {NULL, 0}, dep = {NULL, 0}, zero = {NULL, 0}, u = {NULL, 0};
    roaring_bitmap_t *res = NULL;
    bool exact = q_exact(qs), all_exact = true;
    uint64_t gen = 0;
    size_t nw;
    enum cm_status st;

    memset(&rw, 0, sizeof rw);
    memset(&qt, 0, sizeof qt);
    if (roaring_bitmap_is_empty(cand))
        return CM_OK;
    nw = (size_t)roaring_bitmap_maximum(cand) / 64 + 1;
    st = idx_gen_get(t, &gen);
    if (st == CM_OK)
        st = tdict_get(t, gen, &d);
    if (st == CM_OK)
        st = bits_need(&zero, nw);
    if (st == CM_OK)
        st = bits_need(&c, nw);
    if (st == CM_OK)
        st = bits_need(&dep, nw);
    if (st == CM_OK && !exact)
        st = rows_get(t, nw, &rw);
    if (st != CM_OK)
        goto out;
    memset(c.w, 0xFF, nw * sizeof *c.w);

    for (size_t i = 0; i < qs->n_must && st == CM_OK; i++) {
        st = term_fold(t, d, nw, &qs->must[i], exact ? NULL : &rw, zero.w, &dep,
                       &qt, &all_exact);
        if (st == CM_OK && qt.needle)
            for (size_t w = 0; w < nw; w++)
                c.w[w] &= qt.cand[w];
        qterm_fini(&qt);
    }
    for (size_t i = 0; i < qs->n_any && st == CM_OK; i++) {
        bool all = false;
        st = bits_need(&u, nw);
        if (st == CM_OK)
            memset(u.w, 0, nw * sizeof *u.w);
        for (size_t j = 0; j < qs->any_len[i] && st == CM_OK; j++) {
            st = term_fold(t, d, nw, &qs->any[i][j], exact ? NULL : &rw, zero.w,
                           &dep, &qt, &all_exact);
            if (st == CM_OK && !qt.needle)
                all = true;
            else if (st == CM_OK)
                for (size_t w = 0; w < nw; w++)
                    u.w[w] |= qt.cand[w];
            qterm_fini(&qt);
        }
        if (st == CM_OK && !all)
            for (size_t w = 0; w < nw; w++)
                c.w[w] &= u.w[w];
    }
    for (size_t i = 0; i < qs->n_must_not && st == CM_OK; i++) {
        const uint64_t *files = rw.files.w ? rw.files.w : zero.w;
        st = term_fold(t, d, nw, &qs->must_not[i], &rw, zero.w, &dep, &qt,
                       &all_exact);
        if (st == CM_OK && qt.needle && qt.exact)
            for (size_t w = 0; w < nw; w++)
                c.w[w] &= ~(qt.cand[w] & ~qt.dep[w] & ~files[w]);
        qterm_fini(&qt);
    }
    if (st != CM_OK)
        goto out;
    if (!exact) {
        if (all_exact) {
            /* D = (C ∩ (dep ∪ files)); C = C \ D, plus D's matches */
            for (size_t w = 0; w < nw; w++) {
                uint64_t x = (dep.w[w] | word(&rw.files, w)) & c.w[w];
                dep.w[w] = x;
                c.w[w] &= ~x;
            }
        } else {
            /* everything is verified */
            memcpy(dep.w, c.w, nw * sizeof *c.w);
            memset(c.w, 0, nw * sizeof *c.w);
        }
        st = verify_bits(t, q, &dep, cand, &c);
    }
    if (st == CM_OK)
        st = bits_to_roaring(&c, &res);
    if (st == CM_OK)
        roaring_bitmap_and_inplace(cand, res);
out:
    tdict_release(d);
    qterm_fini(&qt);
    bits_free(&rw.files);
    bits_free(&rw.fp);
    bits_free(&rw.mark);
    bits_free(&c);
    bits_free(&dep);
    bits_free(&zero);
    bits_free(&u);
    idx_bm_free(res);
    return st;
}
