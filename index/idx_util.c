/*
 * idx_util.c - small shared pieces of index/: an open-addressing u64 ->
 * pointer map (writer caches), roaring bitmap I/O against LMDB values with
 * error translation (CRoaring reports failure as NULL/false).
 */
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_log.h"
#include "index/idx_int.h"

static size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

void idx_map_fini(struct idx_map *m)
{
    cm_free(m->keys);
    cm_free(m->vals);
    memset(m, 0, sizeof *m);
}

void **idx_map_find(const struct idx_map *m, uint64_t k)
{
    if (!m->cap)
        return NULL;
    for (size_t i = slot_of(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == k)
            return &m->vals[i];
        if (m->keys[i] == 0)
            return NULL;
    }
}

static enum cm_status grow(struct idx_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint64_t *keys = cm_calloc(cap, sizeof *keys);
    void **vals = cm_calloc(cap, sizeof *vals);

    if (!keys || !vals) {
        cm_free(keys);
        cm_free(vals);
        return CM_NOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        size_t j;
        if (!m->keys[i])
            continue;
        for (j = slot_of(m->keys[i], cap); keys[j]; j = (j + 1) & (cap - 1))
            ;
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    cm_free(m->keys);
    cm_free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return CM_OK;
}

enum cm_status idx_map_put(struct idx_map *m, uint64_t k, void *v)
{
    size_t i;
    if (k == 0)
        return CM_INVALID;
    if ((m->n + 1) * 2 > m->cap) {
        enum cm_status st = grow(m);
        if (st != CM_OK)
            return st;
    }
    for (i = slot_of(k, m->cap); m->keys[i] && m->keys[i] != k;
         i = (i + 1) & (m->cap - 1))
        ;
    if (!m->keys[i]) {
        m->keys[i] = k;
        m->n++;
    }
    m->vals[i] = v;
    return CM_OK;
}

/* ---- Bitmaps --------------------------------------------------------- */

enum cm_status idx_bm_decode(const void *v, size_t n, roaring_bitmap_t **out)
{
    *out = NULL;
    if (n == 0) {
        *out = roaring_bitmap_create();
        return *out ? CM_OK : CM_NOMEM;
    }
    if (roaring_bitmap_portable_deserialize_size(v, n) != n) {
        cm_error("index", "bitmap of %zu bytes does not decode", n);
        return CM_CORRUPT;
    }
    *out = roaring_bitmap_portable_deserialize_safe(v, n);
    return *out ? CM_OK : CM_NOMEM;
}

enum cm_status idx_bm_get(struct kv_txn *t, enum kv_db db, const void *key,
                          size_t klen, roaring_bitmap_t **out)
{
    const void *v;
    size_t n;
    enum cm_status st = kv_get(t, db, key, klen, &v, &n);

    *out = NULL;
    if (st == CM_NOTFOUND) {
        *out = roaring_bitmap_create();
        return *out ? CM_OK : CM_NOMEM;
    }
    if (st != CM_OK)
        return st;
    return idx_bm_decode(v, n, out);
}

enum cm_status idx_bm_put(struct kv_txn *t, enum kv_db db, const void *key,
                          size_t klen, roaring_bitmap_t *bm)
{
    size_t n;
    char *buf;
    enum cm_status st;

    if (roaring_bitmap_is_empty(bm)) {
        st = kv_del(t, db, key, klen);
        return st == CM_NOTFOUND ? CM_OK : st;
    }
    roaring_bitmap_run_optimize(bm);
    n = roaring_bitmap_portable_size_in_bytes(bm);
    buf = cm_malloc(n);
    if (!buf)
        return CM_NOMEM;
    roaring_bitmap_portable_serialize(bm, buf);
    st = kv_put(t, db, key, klen, buf, n);
    cm_free(buf);
    return st;
}

/* CRoaring's portable format of one array container (RoaringFormatSpec):
 * cookie SERIAL_COOKIE_NO_RUNCONTAINER, container count, key and
 * cardinality - 1, the container's byte offset, then the low 16 bits of
 * each value; all little-endian. */
#define SMALL_COOKIE 12346u

size_t idx_bm_small_size(const uint32_t *ids, size_t n)
{
    size_t runs = 1;
    if (n == 0 || n > 4096 || ids[0] >> 16 != ids[n - 1] >> 16)
        return 0;
    for (size_t i = 1; i < n; i++)
        runs += ids[i] != ids[i - 1] + 1;
    /* run_optimize makes it a run container when 2 + 4 * runs bytes are
     * fewer than the array's 2 + 2 * n */
    return 2 * runs < n ? 0 : 16 + 2 * n;
}

void idx_bm_small_write(const uint32_t *ids, size_t n, uint8_t *out)
{
    idx_le32(out, SMALL_COOKIE);
    idx_le32(out + 4, 1);
    idx_le16(out + 8, ids[0] >> 16);
    idx_le16(out + 10, (uint32_t)n - 1);
    idx_le32(out + 12, 16);
    for (size_t i = 0; i < n; i++)
        idx_le16(out + 16 + 2 * i, ids[i]);
}
