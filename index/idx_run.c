/*
 * idx_run.c - the query executor: a parsed idx_query -> exact count and
 * the page's docids in the ordering contract.
 *
 * Filter evaluation is bitmap algebra within a "domain" (the docids still
 * possible at that point): a level's indexed criteria are intersected
 * first, then the criteria no index answers (regexes, substring tests,
 * performer_age, timestamps, exact-set EQUALS, ...) are decided by the
 * reference predicate idx_filter_match() over the remaining candidates
 * only, so they cost one record decode per candidate.  Facet criteria walk
 * the facet's distinct values (a few thousand at most) and OR the bitmaps
 * whose value satisfies the predicate.  `q` narrows the filter's result in
 * idx_text.c (idx_q_eval: dictionary snapshot, set algebra, verification
 * of the scenes whose join rows may disagree).
 *
 * Sorting: the order is (value in the requested direction, NULL lowest,
 * then the tie-break position = COALESCE(title, id) NATURAL_CI, Stash id).
 * Plans, chosen by a cost model on (offset + page) and selectivity:
 * unfiltered = a slice of the cached full order (idx_order.c); broad
 * filter = walk that order testing membership, skipping whole blocks by
 * and-cardinality for deep offsets; selective filter (or no valid cached
 * order) = read the candidates' values from the dense columns, quickselect
 * the first offset + per_page, sort those.
 */
#include <lmdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "index/idx_filter.h"
#include "index/idx_int.h"

struct run {
    struct kv_txn *t;
    struct idx_match_ctx mctx;
    bool mctx_on;
};

static enum cm_status bm_new(roaring_bitmap_t **out)
{
    *out = roaring_bitmap_create();
    return *out ? CM_OK : CM_NOMEM;
}

static enum cm_status get_posting(struct run *r, const uint8_t *k, size_t n,
                                  roaring_bitmap_t **out)
{
    return idx_bm_get(r->t, KV_DB_POSTINGS, k, n, out);
}

static enum cm_status get_id_posting(struct run *r, uint8_t field, uint64_t id,
                                     roaring_bitmap_t **out)
{
    uint8_t k[9];
    k[0] = field;
    idx_be64(k + 1, id);
    return get_posting(r, k, sizeof k, out);
}

/* ---- Columns (read side) --------------------------------------------- */

void idx_colcur_init(struct idx_colcur *c, struct kv_txn *t,
                     enum idx_sort_field f)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    c->f = (uint8_t)f;
    c->chunk = UINT32_MAX;
}

enum cm_status idx_colcur_get(struct idx_colcur *c, uint32_t docid, uint64_t *v)
{
    uint32_t ch = docid / IDX_CHUNK, i = docid % IDX_CHUNK;
    if (ch != c->chunk) {
        uint8_t k[6];
        const void *p;
        size_t n;
        enum cm_status st;
        idx_col_key(k, (enum idx_sort_field)c->f, ch);
        st = kv_get(c->t, KV_DB_COLUMNS, k, sizeof k, &p, &n);
        if (st == CM_NOTFOUND) {
            p = NULL;
            n = 0;
        } else if (st != CM_OK) {
            return st;
        }
        c->chunk = ch;
        c->p = p;
        c->n = n;
    }
    if ((size_t)(i + 1) * 8 > c->n) {
        *v = 0;
        return CM_OK;
    }
    memcpy(v, c->p + (size_t)i * 8, 8);
    return CM_OK;
}

/* ---- Scanning with the reference predicate ---------------------------- */

static enum cm_status scan(struct run *r, const struct idx_crit *c,
                           const roaring_bitmap_t *cand, roaring_bitmap_t **out)
{
    struct idx_filter f = {(struct idx_crit *)c, 1, IDX_SUB_NONE, NULL};
    roaring_uint32_iterator_t it;
    enum cm_status st = bm_new(out);

    if (st != CM_OK)
        return st;
    if (!r->mctx_on) {
        idx_match_ctx_kv(&r->mctx, r->t);
        r->mctx_on = true;
    }
    roaring_init_iterator(cand, &it);
    for (; it.has_value && st == CM_OK; roaring_advance_uint32_iterator(&it)) {
        struct kv_scene sc;
        memset(&sc, 0, sizeof sc);
        st = kv_scene_get(r->t, it.current_value, &sc);
        if (st == CM_OK && idx_filter_match(&f, &sc, &r->mctx))
            roaring_bitmap_add(*out, it.current_value);
        kv_scene_fini(&sc);
        if (st == CM_OK && r->mctx.err != CM_OK)
            st = r->mctx.err;
    }
    return st;
}

/* ---- Facet walks ------------------------------------------------------ */

static bool int_pred(const struct idx_crit *c, bool has, int64_t v)
{
    switch (c->mod) {
    case IDX_MOD_IS_NULL: return !has;
    case IDX_MOD_NOT_NULL: return has;
    case IDX_MOD_EQUALS: return has && v == c->i;
    case IDX_MOD_NOT_EQUALS: return has && v != c->i;
    case IDX_MOD_GREATER_THAN: return has && v > c->i;
    case IDX_MOD_LESS_THAN: return has && v < c->i;
    case IDX_MOD_BETWEEN: return has && v >= c->i && v <= c->i2;
    case IDX_MOD_NOT_BETWEEN: return has && (v < c->i || v > c->i2);
    default: return false;
    }
}

/* Calls pred(ctx, has, value) for every value of int facet fld, OR-ing the
 * bitmaps it accepts. */
static enum cm_status facet_walk(struct run *r, uint8_t fld,
                                 bool (*pred)(const void *ctx, bool has,
                                              int64_t v),
                                 const void *ctx, roaring_bitmap_t **out)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t start[2] = {IDX_P_INT, fld};
    enum cm_status st = bm_new(out);
    int rc;

    if (st != CM_OK)
        return st;
    rc = mdb_cursor_open(kv_txn_mdb(r->t),
                         kv_dbi(kv_txn_store(r->t), KV_DB_POSTINGS), &cur);
    if (rc)
        return kv_from_mdb(rc, "facet cursor");
    k.mv_data = start;
    k.mv_size = 2;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        bool has;
        int64_t val = 0;
        if (k.mv_size < 3 || p[0] != IDX_P_INT || p[1] != fld)
            break;
        has = p[2] == 1;
        if (has) {
            if (k.mv_size != 11) {
                st = CM_CORRUPT;
                break;
            }
            val = idx_dec_i64(idx_rd_be64(p + 3));
        }
        if (pred(ctx, has, val)) {
            roaring_bitmap_t *b = NULL;
            st = idx_bm_decode(v.mv_data, v.mv_size, &b);
            if (st != CM_OK)
                break;
            /* lazy: cardinalities are repaired once, after the walk */
            roaring_bitmap_lazy_or_inplace(*out, b, false);
            idx_bm_free(b);
        }
    }
    roaring_bitmap_repair_after_lazy(*out);
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "facet walk");
    mdb_cursor_close(cur);
    return st;
}

static bool pred_int(const void *ctx, bool has, int64_t v)
{
    return int_pred(ctx, has, v);
}

static bool pred_eq(const void *ctx, bool has, int64_t v)
{
    return has && v == *(const int64_t *)ctx;
}

static bool pred_res(const void *ctx, bool has, int64_t v)
{
    const struct idx_crit *c = ctx;
    int32_t lo, hi;
    if (!has)
        return false;
    idx_resolution_band(c->res, &lo, &hi);
    switch (c->mod) {
    case IDX_MOD_EQUALS: return v >= lo && v <= hi;
    case IDX_MOD_NOT_EQUALS: return v < lo || v > hi;
    case IDX_MOD_GREATER_THAN: return v > hi;
    case IDX_MOD_LESS_THAN: return v < lo;
    default: return false;
    }
}

static bool pred_orient(const void *ctx, bool has, int64_t v)
{
    unsigned bits = *(const unsigned *)ctx;
    return has && v >= 0 && v <= 2 && (bits & (1u << v));
}

static bool pred_date(const void *ctx, bool has, int64_t v)
{
    const struct idx_crit *c = ctx;
    struct idx_filter f = {(struct idx_crit *)c, 1, IDX_SUB_NONE, NULL};
    struct kv_scene sc;
    memset(&sc, 0, sizeof sc);
    sc.rating100 = -1;
    sc.interactive_speed = -1;
    sc.play_duration = sc.resume_time = -1;
    if (has) {
        sc.date.year = (int16_t)(v / 10000);
        sc.date.month = (uint8_t)(v / 100 % 100);
        sc.date.day = (uint8_t)(v % 100);
    }
    return idx_filter_match(&f, &sc, NULL);
}

/* ---- Date ranges by year ----------------------------------------------- */

/* A date compares as its text "YYYY-MM-DD" (missing parts 01), so every
 * date of year Y lies in [f, l] = ["Y-01-01", "Y-12-31"].  When no bound
 * of the criterion falls strictly between f and l, every date of the year
 * other than f and l compares alike with every bound, and the year's
 * posting (adjusted by the postings of days f and l) answers it; otherwise
 * the year's days are walked.  A range over decades thus reads a few
 * dozen postings instead of one per distinct day. */
static void int_key(uint8_t k[11], uint8_t fld, int64_t v)
{
    k[0] = IDX_P_INT;
    k[1] = fld;
    k[2] = 1;
    idx_be64(k + 3, idx_enc_i64(v));
}

static int text10_cmp(const struct idx_str *b, const char *t)
{
    size_t n = b->len;
    int c = memcmp(b->p, t, n < 10 ? n : 10);
    if (c == 0)
        c = n < 10 ? -1 : n > 10;
    return c;
}

static bool date_uniform(const struct idx_crit *c, int year)
{
    char f[16], l[16];
    const struct idx_str *b[2] = {&c->str, &c->str2};
    int nb = c->mod == IDX_MOD_BETWEEN || c->mod == IDX_MOD_NOT_BETWEEN ? 2
             : c->mod == IDX_MOD_IS_NULL || c->mod == IDX_MOD_NOT_NULL  ? 0
                                                                        : 1;
    snprintf(f, sizeof f, "%04d-01-01", year);
    snprintf(l, sizeof l, "%04d-12-31", year);
    for (int i = 0; i < nb; i++)
        if (text10_cmp(b[i], f) > 0 && text10_cmp(b[i], l) < 0)
            return false;
    return true;
}

/* The year's scenes whose date is day (yyyymmdd), and with them *b: added
 * when keep, else removed. */
static enum cm_status date_day_adjust(struct run *r, int64_t day, bool keep,
                                      roaring_bitmap_t *b)
{
    uint8_t dk[11];
    roaring_bitmap_t *d = NULL;
    enum cm_status st;
    int_key(dk, IDX_I_DATE, day);
    st = get_posting(r, dk, sizeof dk, &d);
    if (st == CM_OK) {
        if (keep)
            roaring_bitmap_or_inplace(b, d);
        else
            roaring_bitmap_andnot_inplace(b, d);
    }
    idx_bm_free(d);
    return st;
}

/* ORs into *out the days of [lo, hi] (yyyymmdd) whose verdict is true. */
static enum cm_status date_days(struct run *r, const struct idx_crit *c,
                                MDB_cursor *cur, int64_t lo, int64_t hi,
                                roaring_bitmap_t *out)
{
    uint8_t start[11];
    MDB_val k, v;
    enum cm_status st = CM_OK;
    int rc;

    int_key(start, IDX_I_DATE, lo);
    k.mv_data = start;
    k.mv_size = sizeof start;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        int64_t day;
        roaring_bitmap_t *b = NULL;
        if (k.mv_size != 11 || p[0] != IDX_P_INT || p[1] != IDX_I_DATE ||
            p[2] != 1)
            break;
        day = idx_dec_i64(idx_rd_be64(p + 3));
        if (day > hi)
            break;
        if (!pred_date(c, true, day))
            continue;
        st = idx_bm_decode(v.mv_data, v.mv_size, &b);
        if (st != CM_OK)
            return st;
        roaring_bitmap_lazy_or_inplace(out, b, false);
        idx_bm_free(b);
    }
    if (rc && rc != MDB_NOTFOUND)
        return kv_from_mdb(rc, "date walk");
    return st;
}

static enum cm_status date_eval(struct run *r, const struct idx_crit *c,
                                roaring_bitmap_t **out)
{
    MDB_cursor *yc = NULL, *dc = NULL;
    MDB_dbi dbi = kv_dbi(kv_txn_store(r->t), KV_DB_POSTINGS);
    uint8_t start[2] = {IDX_P_INT, IDX_I_YEAR};
    MDB_val k, v;
    enum cm_status st = bm_new(out);
    int rc;

    if (st != CM_OK)
        return st;
    rc = mdb_cursor_open(kv_txn_mdb(r->t), dbi, &yc);
    if (rc == 0)
        rc = mdb_cursor_open(kv_txn_mdb(r->t), dbi, &dc);
    if (rc) {
        st = kv_from_mdb(rc, "date cursor");
        goto out;
    }
    k.mv_data = start;
    k.mv_size = 2;
    for (rc = mdb_cursor_get(yc, &k, &v, MDB_SET_RANGE); rc == 0 && st == CM_OK;
         rc = mdb_cursor_get(yc, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        roaring_bitmap_t *b = NULL;
        int64_t y, first, last;
        bool pf, pm, pl;
        if (k.mv_size < 3 || p[0] != IDX_P_INT || p[1] != IDX_I_YEAR)
            break;
        if (p[2] != 1) { /* NULL date */
            if (pred_date(c, false, 0)) {
                st = idx_bm_decode(v.mv_data, v.mv_size, &b);
                if (st == CM_OK)
                    roaring_bitmap_lazy_or_inplace(*out, b, false);
                idx_bm_free(b);
            }
            continue;
        }
        if (k.mv_size != 11) {
            st = CM_CORRUPT;
            break;
        }
        y = idx_dec_i64(idx_rd_be64(p + 3));
        first = y * 10000 + 101;
        last = y * 10000 + 1231;
        if (y < 1 || y > 9999 || !date_uniform(c, (int)y)) {
            st = date_days(r, c, dc, first, last, *out);
            continue;
        }
        pf = pred_date(c, true, first);
        pm = pred_date(c, true, y * 10000 + 615);
        pl = pred_date(c, true, last);
        if (pm)
            st = idx_bm_decode(v.mv_data, v.mv_size, &b);
        else
            st = bm_new(&b);
        if (st == CM_OK && pf != pm)
            st = date_day_adjust(r, first, pf, b);
        if (st == CM_OK && pl != pm)
            st = date_day_adjust(r, last, pl, b);
        if (st == CM_OK)
            roaring_bitmap_lazy_or_inplace(*out, b, false);
        idx_bm_free(b);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "year walk");
out:
    roaring_bitmap_repair_after_lazy(*out);
    if (yc)
        mdb_cursor_close(yc);
    if (dc)
        mdb_cursor_close(dc);
    if (st != CM_OK) {
        idx_bm_free(*out);
        *out = NULL;
    }
    return st;
}

/* String facet (codecs): the value's oracle verdict on a stand-in scene;
 * the overflow bucket (long values) is scanned. */
static enum cm_status str_facet(struct run *r, const struct idx_crit *c,
                                uint8_t fld, const roaring_bitmap_t *dom,
                                roaring_bitmap_t **out)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t start[2] = {IDX_P_STR, fld};
    struct idx_filter f = {(struct idx_crit *)c, 1, IDX_SUB_NONE, NULL};
    enum cm_status st = bm_new(out);
    int rc;

    if (st != CM_OK)
        return st;
    rc = mdb_cursor_open(kv_txn_mdb(r->t),
                         kv_dbi(kv_txn_store(r->t), KV_DB_POSTINGS), &cur);
    if (rc)
        return kv_from_mdb(rc, "facet cursor");
    k.mv_data = start;
    k.mv_size = 2;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && st == CM_OK; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        roaring_bitmap_t *b = NULL;
        bool ok;
        if (k.mv_size < 3 || p[0] != IDX_P_STR || p[1] != fld)
            break;
        st = idx_bm_decode(v.mv_data, v.mv_size, &b);
        if (st != CM_OK)
            break;
        if (p[2] == 2) {
            roaring_bitmap_t *s = NULL;
            roaring_bitmap_and_inplace(b, dom);
            st = scan(r, c, b, &s);
            if (st == CM_OK)
                roaring_bitmap_or_inplace(*out, s);
            idx_bm_free(s);
        } else {
            struct kv_scene sc;
            struct kv_file fl;
            memset(&sc, 0, sizeof sc);
            memset(&fl, 0, sizeof fl);
            sc.rating100 = -1;
            sc.interactive_speed = -1;
            if (p[2] == 1) {
                struct kv_str s = {(const char *)p + 3,
                                   (uint32_t)(k.mv_size - 3)};
                if (fld == IDX_S_VCODEC)
                    fl.video_codec = s;
                else
                    fl.audio_codec = s;
                sc.files = &fl;
                sc.n_files = 1;
            }
            ok = idx_filter_match(&f, &sc, NULL);
            if (ok)
                roaring_bitmap_or_inplace(*out, b);
        }
        idx_bm_free(b);
    }
    if (st == CM_OK && rc && rc != MDB_NOTFOUND)
        st = kv_from_mdb(rc, "facet walk");
    mdb_cursor_close(cur);
    return st;
}

/* ---- Timestamps from the sort columns ---------------------------------- */

/* created_at, updated_at and last_played_at compare as text (SQLite
 * BINARY, date_pred in idx_filter.c).  Their sort column holds each
 * scene's dictionary position, and positions increase with the binary
 * keys, which compare like the texts.  So a bound becomes a position: the
 * first dictionary key >= the bound's key (and whether it is the bound
 * itself), and a scene compares with the bound as its position compares
 * with that one.  Keys are truncated only past IDX_TS_EXACT bytes of
 * content, and a bound shorter than that compares the same with a
 * truncated key as with the whole text (the truncated content is longer
 * than the bound, so they differ within the bound or the bound is a prefix
 * of both); longer bounds are scanned. */
#define IDX_TS_EXACT ((IDX_DICT_MAXKEY - 10) / 2 - 8)

struct ts_bound {
    uint64_t lo; /* position of the first key >= the bound; UINT64_MAX: none */
    bool eq;     /* that key is the bound's own */
};

static enum idx_sort_field ts_field(enum idx_field f)
{
    switch (f) {
    case IDX_F_CREATED_AT: return IDX_SF_CREATED;
    case IDX_F_UPDATED_AT: return IDX_SF_UPDATED;
    case IDX_F_LAST_PLAYED_AT: return IDX_SF_LASTPLAYED;
    default: return IDX_SF_COUNT;
    }
}

static enum cm_status ts_bound_of(MDB_cursor *cur, enum idx_sort_field sf,
                                  const char *s, size_t n, struct ts_bound *b)
{
    struct cm_buf kb, db;
    MDB_val k, v;
    enum cm_status st;
    int rc;

    cm_buf_init(&kb, IDX_DICT_MAXKEY);
    cm_buf_init(&db, IDX_DICT_MAXKEY + 2);
    st = idx_binkey(s, n, IDX_DICT_MAXKEY - 10, &kb);
    if (st == CM_OK)
        st = idx_dict_key(&db, sf, kb.data, kb.len);
    if (st != CM_OK)
        goto out;
    b->lo = UINT64_MAX;
    b->eq = false;
    k.mv_data = db.data;
    k.mv_size = db.len;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size >= 2 && ((const uint8_t *)k.mv_data)[0] == 'd' &&
        ((const uint8_t *)k.mv_data)[1] == (uint8_t)sf) {
        if (v.mv_size < 8) {
            st = CM_CORRUPT;
            goto out;
        }
        memcpy(&b->lo, v.mv_data, 8);
        b->eq = k.mv_size == db.len && memcmp(k.mv_data, db.data, db.len) == 0;
    } else if (rc && rc != MDB_NOTFOUND) {
        st = kv_from_mdb(rc, "timestamp bound");
    }
out:
    cm_buf_fini(&kb);
    cm_buf_fini(&db);
    return st;
}

/* The criterion's verdict for a text comparing with the bounds as r1, r2
 * (date_pred's switch, the NULL modifiers excluded). */
static bool ts_verdict(enum idx_mod mod, int r1, int r2)
{
    switch (mod) {
    case IDX_MOD_EQUALS: return r1 == 0;
    case IDX_MOD_NOT_EQUALS: return r1 != 0;
    case IDX_MOD_GREATER_THAN: return r1 > 0;
    case IDX_MOD_LESS_THAN: return r1 < 0;
    case IDX_MOD_BETWEEN: return r1 >= 0 && r2 <= 0;
    case IDX_MOD_NOT_BETWEEN: return !(r1 >= 0 && r2 <= 0);
    default: return false;
    }
}

static int ts_cmp(uint64_t pos, const struct ts_bound *b)
{
    if (pos < b->lo)
        return -1;
    return pos == b->lo && b->eq ? 0 : 1;
}

/* The oracle's verdict on a stand-in scene whose timestamp is NULL
 * (empty: false) or "" (empty: true). */
static bool ts_standin(const struct idx_crit *c, bool empty)
{
    struct idx_filter f = {(struct idx_crit *)c, 1, IDX_SUB_NONE, NULL};
    struct kv_scene sc;
    struct kv_str e = {empty ? "" : NULL, 0};
    memset(&sc, 0, sizeof sc);
    sc.rating100 = -1;
    sc.interactive_speed = -1;
    sc.play_duration = sc.resume_time = -1;
    sc.created_at = sc.updated_at = sc.last_played_at = e;
    return idx_filter_match(&f, &sc, NULL);
}

/* The scenes of dom whose value in column sf passes keep(ctx, value);
 * one 8-byte read per scene of dom, in docid order. */
static enum cm_status col_filter(struct run *r, const roaring_bitmap_t *dom,
                                 enum idx_sort_field sf,
                                 bool (*keep)(const void *ctx, uint64_t v),
                                 const void *ctx, roaring_bitmap_t **out)
{
    struct idx_colcur cc;
    roaring_uint32_iterator_t it;
    uint32_t buf[512], got, *hit = cm_malloc(512 * sizeof *hit);
    enum cm_status st;

    if (!hit)
        return CM_NOMEM;
    st = bm_new(out);
    idx_colcur_init(&cc, r->t, sf);
    roaring_init_iterator(dom, &it);
    while (st == CM_OK && (got = roaring_read_uint32_iterator(&it, buf, 512))) {
        size_t nhit = 0;
        for (uint32_t i = 0; i < got; i++) {
            uint64_t v;
            st = idx_colcur_get(&cc, buf[i], &v);
            if (st != CM_OK)
                break;
            if (keep(ctx, v))
                hit[nhit++] = buf[i];
        }
        if (st == CM_OK && nhit)
            roaring_bitmap_add_many(*out, nhit, hit);
    }
    cm_free(hit);
    if (st != CM_OK) {
        idx_bm_free(*out);
        *out = NULL;
    }
    return st;
}

struct ts_ctx {
    const struct idx_crit *c;
    bool nullmod, two, v_null, v_empty;
    struct ts_bound b1, b2, empty;
};

static bool ts_keep(const void *ctx, uint64_t pos)
{
    const struct ts_ctx *x = ctx;
    if (pos == 0)
        return x->v_null;
    if (x->empty.eq && pos == x->empty.lo)
        return x->v_empty;
    if (x->nullmod)
        return x->c->mod == IDX_MOD_NOT_NULL;
    return ts_verdict(x->c->mod, ts_cmp(pos, &x->b1),
                      x->two ? ts_cmp(pos, &x->b2) : 0);
}

static enum cm_status ts_eval(struct run *r, const struct idx_crit *c,
                              const roaring_bitmap_t *dom,
                              roaring_bitmap_t **out)
{
    enum idx_sort_field sf = ts_field(c->field);
    struct ts_ctx x = {
        .c = c,
        .nullmod = c->mod == IDX_MOD_IS_NULL || c->mod == IDX_MOD_NOT_NULL,
        .two = c->mod == IDX_MOD_BETWEEN || c->mod == IDX_MOD_NOT_BETWEEN,
        .v_null = ts_standin(c, false),
        .v_empty = ts_standin(c, true),
        .b1 = {UINT64_MAX, false},
        .b2 = {UINT64_MAX, false},
        .empty = {UINT64_MAX, false},
    };
    MDB_cursor *cur = NULL;
    enum cm_status st;
    int rc;

    if (!x.nullmod &&
        (c->str.len > IDX_TS_EXACT || (x.two && c->str2.len > IDX_TS_EXACT)))
        return scan(r, c, dom, out);
    rc = mdb_cursor_open(kv_txn_mdb(r->t),
                         kv_dbi(kv_txn_store(r->t), KV_DB_SORTS), &cur);
    if (rc)
        return kv_from_mdb(rc, "timestamp cursor");
    st = ts_bound_of(cur, sf, "", 0, &x.empty);
    if (st == CM_OK && !x.nullmod)
        st = ts_bound_of(cur, sf, c->str.p, c->str.len, &x.b1);
    if (st == CM_OK && !x.nullmod && x.two)
        st = ts_bound_of(cur, sf, c->str2.p, c->str2.len, &x.b2);
    mdb_cursor_close(cur);
    if (st != CM_OK)
        return st;
    return col_filter(r, dom, sf, ts_keep, &x, out);
}

/* Durations (files[0].duration, resume_time, play_duration) compare as
 * CAST(value AS INT) (their facets hold that); their sort column holds the
 * double itself (0 = NULL).  A range over seconds would OR thousands of
 * facet bitmaps, so ranges read the column instead (EQUALS keeps the
 * facet: one bitmap). */
static enum idx_sort_field dur_field(const struct idx_crit *c)
{
    if (c->mod == IDX_MOD_EQUALS || c->mod == IDX_MOD_INCLUDES ||
        c->mod == IDX_MOD_EXCLUDES)
        return IDX_SF_COUNT;
    switch (c->field) {
    case IDX_F_DURATION: return IDX_SF_DURATION;
    case IDX_F_RESUME_TIME: return IDX_SF_RESUME;
    case IDX_F_PLAY_DURATION: return IDX_SF_PLAYDUR;
    default: return IDX_SF_COUNT;
    }
}

static bool pred_int(const void *ctx, bool has, int64_t v);

static bool dur_keep(const void *ctx, uint64_t v)
{
    return pred_int(ctx, v != 0, v ? (int64_t)idx_dec_double(v) : 0);
}

/* ---- Hierarchies and multi criteria ----------------------------------- */

static enum cm_status children(struct run *r, uint8_t type, uint64_t id,
                               const uint64_t **kids, size_t *n)
{
    uint8_t k[10];
    const void *v;
    size_t len;
    enum cm_status st;
    k[0] = IDX_P_CHILDREN;
    k[1] = type;
    idx_be64(k + 2, id);
    st = kv_get(r->t, KV_DB_POSTINGS, k, sizeof k, &v, &len);
    *kids = NULL;
    *n = 0;
    if (st == CM_NOTFOUND)
        return CM_OK;
    if (st != CM_OK)
        return st;
    if (len % 8)
        return CM_CORRUPT;
    *kids = v; /* u64 LE, unaligned-safe reads below */
    *n = len / 8;
    return CM_OK;
}

struct idset {
    uint64_t *v;
    size_t n, cap;
};

static bool idset_has(const struct idset *s, uint64_t x)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == x)
            return true;
    return false;
}

static enum cm_status idset_add(struct idset *s, uint64_t x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        uint64_t *n = cm_realloc(s->v, cap * sizeof *n);
        if (!n)
            return CM_NOMEM;
        s->v = n;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return CM_OK;
}

/* v plus descendants down to depth levels (-1 = all). */
static enum cm_status expand(struct run *r, uint8_t type, uint64_t v,
                             int32_t depth, struct idset *out)
{
    size_t lvl_start = 0, lvl_end;
    enum cm_status st;
    out->n = 0;
    st = idset_add(out, v);
    for (int32_t d = 0; st == CM_OK && type && (depth < 0 || d < depth); d++) {
        lvl_end = out->n;
        if (lvl_start == lvl_end)
            break;
        for (size_t i = lvl_start; i < lvl_end && st == CM_OK; i++) {
            const uint64_t *kids;
            size_t nk;
            st = children(r, type, out->v[i], &kids, &nk);
            for (size_t j = 0; j < nk && st == CM_OK; j++) {
                uint64_t c;
                memcpy(&c, (const uint8_t *)kids + j * 8, 8);
                if (!idset_has(out, c))
                    st = idset_add(out, c);
            }
        }
        lvl_start = lvl_end;
    }
    return st;
}

struct hier {
    uint8_t post, post2; /* posting fields (post2: inherited tags, or 0) */
    uint8_t type;        /* hierarchy entity type, 0 = none */
    bool scene_ids;
};

static enum cm_status value_bm(struct run *r, const struct hier *h, uint64_t v,
                               int32_t depth, roaring_bitmap_t **out)
{
    struct idset ids = {0};
    enum cm_status st = bm_new(out);

    if (st != CM_OK)
        return st;
    if (h->scene_ids) {
        uint32_t d;
        st = kv_docid_of(r->t, v, &d);
        if (st == CM_OK)
            roaring_bitmap_add(*out, d);
        return st == CM_NOTFOUND ? CM_OK : st;
    }
    st = expand(r, h->type, v, depth, &ids);
    for (size_t i = 0; i < ids.n && st == CM_OK; i++) {
        for (int k = 0; k < 2 && st == CM_OK; k++) {
            roaring_bitmap_t *b = NULL;
            uint8_t fld = k ? h->post2 : h->post;
            if (!fld)
                continue;
            st = get_id_posting(r, fld, ids.v[i], &b);
            if (st == CM_OK)
                roaring_bitmap_or_inplace(*out, b);
            idx_bm_free(b);
        }
    }
    cm_free(ids.v);
    return st;
}

static enum cm_status has_bm(struct run *r, const struct hier *h,
                             roaring_bitmap_t **out)
{
    uint8_t k[2] = {IDX_P_HAS, h->post};
    roaring_bitmap_t *b = NULL;
    enum cm_status st = get_posting(r, k, 2, out);
    if (st == CM_OK && h->post2) {
        k[1] = h->post2;
        st = get_posting(r, k, 2, &b);
        if (st == CM_OK)
            roaring_bitmap_or_inplace(*out, b);
        idx_bm_free(b);
    }
    return st;
}

static enum cm_status hier_eval(struct run *r, const struct idx_crit *c,
                                const roaring_bitmap_t *dom,
                                roaring_bitmap_t **out)
{
    struct hier h = {0};
    roaring_bitmap_t *acc = NULL, *b = NULL;
    enum cm_status st = CM_OK;

    switch (c->field) {
    case IDX_F_TAGS:
        h = (struct hier){IDX_P_TAG, c->inherited ? IDX_P_INH_TAG : 0, KV_TAG,
                          false};
        break;
    case IDX_F_PERFORMER_TAGS:
        h = (struct hier){IDX_P_PERF_TAG, 0, KV_TAG, false};
        break;
    case IDX_F_STUDIOS:
        h = (struct hier){IDX_P_STUDIO, 0, KV_STUDIO, false};
        break;
    case IDX_F_GROUPS:
        h = (struct hier){IDX_P_GROUP, 0, KV_GROUP, false};
        break;
    case IDX_F_PERFORMERS:
        h = (struct hier){IDX_P_PERFORMER, 0, 0, false};
        break;
    case IDX_F_GALLERIES: h = (struct hier){IDX_P_GALLERY, 0, 0, false}; break;
    default: h = (struct hier){0, 0, 0, true}; break;
    }
    if (c->mod == IDX_MOD_IS_NULL || c->mod == IDX_MOD_NOT_NULL) {
        /* performer_tags IS_NULL is Stash's LEFT JOIN: also true when
         * any one performer has no tags; the predicate decides. */
        if (h.scene_ids ||
            (c->field == IDX_F_PERFORMER_TAGS && c->mod == IDX_MOD_IS_NULL))
            return scan(r, c, dom, out);
        st = has_bm(r, &h, &b);
        if (st == CM_OK) {
            acc = roaring_bitmap_copy(dom);
            if (!acc)
                st = CM_NOMEM;
            else if (c->mod == IDX_MOD_NOT_NULL)
                roaring_bitmap_and_inplace(acc, b);
            else
                roaring_bitmap_andnot_inplace(acc, b);
        }
        idx_bm_free(b);
        *out = acc;
        return st;
    }
    acc = roaring_bitmap_copy(dom);
    if (!acc)
        return CM_NOMEM;
    if (c->n_ids && c->mod == IDX_MOD_INCLUDES) {
        roaring_bitmap_t *any = NULL;
        st = bm_new(&any);
        for (size_t i = 0; i < c->n_ids && st == CM_OK; i++) {
            st = value_bm(r, &h, c->ids[i], c->depth, &b);
            if (st == CM_OK)
                roaring_bitmap_or_inplace(any, b);
            idx_bm_free(b);
            b = NULL;
        }
        if (st == CM_OK)
            roaring_bitmap_and_inplace(acc, any);
        idx_bm_free(any);
    } else if (c->n_ids &&
               (c->mod == IDX_MOD_INCLUDES_ALL || c->mod == IDX_MOD_EQUALS)) {
        if (c->field == IDX_F_STUDIOS && c->n_ids > 1 &&
            c->mod == IDX_MOD_INCLUDES_ALL)
            roaring_bitmap_clear(acc);
        for (size_t i = 0; i < c->n_ids && st == CM_OK; i++) {
            st = value_bm(r, &h, c->ids[i],
                          c->mod == IDX_MOD_EQUALS ? 0 : c->depth, &b);
            if (st == CM_OK)
                roaring_bitmap_and_inplace(acc, b);
            idx_bm_free(b);
            b = NULL;
        }
    } else if (c->mod == IDX_MOD_EQUALS ||
               (c->n_ids && c->mod != IDX_MOD_EXCLUDES &&
                c->mod != IDX_MOD_INCLUDES_ALL)) {
        /* Unusual shapes: let the predicate decide. */
        idx_bm_free(acc);
        return scan(r, c, dom, out);
    }
    for (size_t i = 0; i < c->n_excl && st == CM_OK; i++) {
        st = value_bm(r, &h, c->excl[i], c->depth, &b);
        if (st == CM_OK)
            roaring_bitmap_andnot_inplace(acc, b);
        idx_bm_free(b);
        b = NULL;
    }
    if (st == CM_OK && c->mod == IDX_MOD_EQUALS) {
        /* Exact set: the intersection is a superset; verify. */
        st = scan(r, c, acc, out);
        idx_bm_free(acc);
        return st;
    }
    if (st != CM_OK) {
        idx_bm_free(acc);
        acc = NULL;
    }
    *out = acc;
    return st;
}

/* ---- One criterion ------------------------------------------------------ */

static int int_facet(enum idx_field f)
{
    switch (f) {
    case IDX_F_RATING100: return IDX_I_RATING;
    case IDX_F_O_COUNTER: return IDX_I_OCOUNT;
    case IDX_F_PLAY_COUNT: return IDX_I_PLAYCOUNT;
    case IDX_F_PLAY_DURATION: return IDX_I_PLAYDUR;
    case IDX_F_RESUME_TIME: return IDX_I_RESUME;
    case IDX_F_DURATION: return IDX_I_DURATION;
    case IDX_F_FRAMERATE: return IDX_I_FRAMERATE;
    case IDX_F_FILE_COUNT: return IDX_I_FILECOUNT;
    case IDX_F_TAG_COUNT: return IDX_I_TAGCOUNT;
    case IDX_F_PERFORMER_COUNT: return IDX_I_PERFCOUNT;
    case IDX_F_INTERACTIVE_SPEED: return IDX_I_ISPEED;
    default: return 0;
    }
}

/* How c is evaluated: 0 = from postings, 1 = from a sort column (one
 * 8-byte read per scene of the domain), 2 = scanned (one record decode
 * per scene of the domain).  A level evaluates its criteria in that
 * order, each within the result of the previous ones. */
static int crit_class(const struct idx_crit *c);

/* Whether c is answered from indexes (else scanned). */
static bool indexed(const struct idx_crit *c)
{
    switch (c->field) {
    case IDX_F_CREATED_AT:
    case IDX_F_UPDATED_AT:
    case IDX_F_LAST_PLAYED_AT:
    case IDX_F_CONST:
    case IDX_F_ORGANIZED:
    case IDX_F_INTERACTIVE:
    case IDX_F_PERFORMER_FAVORITE:
    case IDX_F_RESOLUTION:
    case IDX_F_ORIENTATION:
    case IDX_F_DATE:
    case IDX_F_HAS_MARKERS:
    case IDX_F_IS_MISSING:
    case IDX_F_STUDIOS:
    case IDX_F_TAGS:
    case IDX_F_GROUPS:
    case IDX_F_PERFORMER_TAGS:
    case IDX_F_PERFORMERS:
    case IDX_F_GALLERIES:
    case IDX_F_SCENE_IDS:
    case IDX_F_VIDEO_CODEC:
    case IDX_F_AUDIO_CODEC: return true;
    case IDX_F_STUDIO_FAVORITE:
    case IDX_F_TAG_FAVORITE: return c->b;
    default:
        return int_facet(c->field) != 0 && c->mod != IDX_MOD_INCLUDES &&
               c->mod != IDX_MOD_EXCLUDES;
    }
}

static int crit_class(const struct idx_crit *c)
{
    if (!indexed(c))
        return 2;
    return ts_field(c->field) != IDX_SF_COUNT || dur_field(c) != IDX_SF_COUNT
               ? 1
               : 0;
}

static enum cm_status crit_eval(struct run *r, const struct idx_crit *c,
                                const roaring_bitmap_t *dom,
                                roaring_bitmap_t **out)
{
    roaring_bitmap_t *b = NULL;
    enum cm_status st;
    int fi;
    int64_t one;

    *out = NULL;
    if (!indexed(c))
        return scan(r, c, dom, out);
    if (dur_field(c) != IDX_SF_COUNT)
        return col_filter(r, dom, dur_field(c), dur_keep, c, out);
    switch (c->field) {
    case IDX_F_CREATED_AT:
    case IDX_F_UPDATED_AT:
    case IDX_F_LAST_PLAYED_AT: return ts_eval(r, c, dom, out);
    case IDX_F_CONST:
        *out = c->b ? roaring_bitmap_copy(dom) : roaring_bitmap_create();
        return *out ? CM_OK : CM_NOMEM;
    case IDX_F_STUDIOS:
    case IDX_F_TAGS:
    case IDX_F_GROUPS:
    case IDX_F_PERFORMER_TAGS:
    case IDX_F_PERFORMERS:
    case IDX_F_GALLERIES:
    case IDX_F_SCENE_IDS: return hier_eval(r, c, dom, out);
    case IDX_F_VIDEO_CODEC:
    case IDX_F_AUDIO_CODEC:
        st = str_facet(
            r, c, c->field == IDX_F_VIDEO_CODEC ? IDX_S_VCODEC : IDX_S_ACODEC,
            dom, &b);
        break;
    case IDX_F_ORGANIZED:
    case IDX_F_INTERACTIVE:
    case IDX_F_HAS_MARKERS:
        one = c->b;
        st = facet_walk(r,
                        c->field == IDX_F_ORGANIZED     ? IDX_I_ORGANIZED
                        : c->field == IDX_F_INTERACTIVE ? IDX_I_INTERACTIVE
                                                        : IDX_I_MARKERS,
                        pred_eq, &one, &b);
        break;
    case IDX_F_PERFORMER_FAVORITE:
    case IDX_F_STUDIO_FAVORITE:
    case IDX_F_TAG_FAVORITE: {
        uint8_t k[1] = {c->field == IDX_F_PERFORMER_FAVORITE ? IDX_P_PERF_FAV
                        : c->field == IDX_F_STUDIO_FAVORITE  ? IDX_P_STUDIO_FAV
                                                             : IDX_P_TAG_FAV};
        st = get_posting(r, k, 1, &b);
        if (st == CM_OK && !c->b) {
            roaring_bitmap_t *a = roaring_bitmap_copy(dom);
            if (!a) {
                st = CM_NOMEM;
            } else {
                roaring_bitmap_andnot_inplace(a, b);
                idx_bm_free(b);
                b = a;
            }
        }
        break;
    }
    case IDX_F_RESOLUTION:
        st = facet_walk(r, IDX_I_SHORTSIDE, pred_res, c, &b);
        break;
    case IDX_F_ORIENTATION:
        if (!c->orient) {
            *out = roaring_bitmap_copy(dom);
            return *out ? CM_OK : CM_NOMEM;
        }
        st = facet_walk(r, IDX_I_ORIENT, pred_orient, &c->orient, &b);
        break;
    case IDX_F_DATE: st = date_eval(r, c, &b); break;
    case IDX_F_IS_MISSING: {
        uint8_t k[2] = {IDX_P_MISSING, (uint8_t)(c->missing + 1)};
        st = get_posting(r, k, 2, &b);
        break;
    }
    default:
        fi = int_facet(c->field);
        st = facet_walk(r, (uint8_t)fi, pred_int, c, &b);
        break;
    }
    if (st == CM_OK)
        roaring_bitmap_and_inplace(b, dom);
    if (st != CM_OK) {
        idx_bm_free(b);
        b = NULL;
    }
    *out = b;
    return st;
}

static enum cm_status filter_eval(struct run *r, const struct idx_filter *f,
                                  const roaring_bitmap_t *dom, int depth,
                                  roaring_bitmap_t **out)
{
    roaring_bitmap_t *own, *sub = NULL;
    enum cm_status st = CM_OK;

    *out = NULL;
    if (depth > CM_MAX_FILTER_DEPTH + 4)
        return CM_INVALID;
    own = roaring_bitmap_copy(dom);
    if (!own)
        return CM_NOMEM;
    for (int pass = 0; pass < 3 && st == CM_OK; pass++)
        for (size_t i = 0; i < f->n && st == CM_OK; i++) {
            roaring_bitmap_t *b = NULL;
            if (crit_class(&f->crits[i]) != pass)
                continue;
            st = crit_eval(r, &f->crits[i], own, &b);
            if (st == CM_OK) {
                idx_bm_free(own);
                own = b;
            }
        }
    if (st == CM_OK && f->sub) {
        switch (f->sub_kind) {
        case IDX_SUB_AND:
            st = filter_eval(r, f->sub, own, depth + 1, &sub);
            if (st == CM_OK) {
                idx_bm_free(own);
                own = sub;
                sub = NULL;
            }
            break;
        case IDX_SUB_OR:
            st = filter_eval(r, f->sub, dom, depth + 1, &sub);
            if (st == CM_OK) {
                if (f->n == 0) {
                    idx_bm_free(own);
                    own = sub;
                    sub = NULL;
                } else {
                    roaring_bitmap_or_inplace(own, sub);
                }
            }
            break;
        case IDX_SUB_NOT:
            st = filter_eval(r, f->sub, own, depth + 1, &sub);
            if (st == CM_OK)
                roaring_bitmap_andnot_inplace(own, sub);
            break;
        default: break;
        }
    }
    idx_bm_free(sub);
    if (st != CM_OK) {
        idx_bm_free(own);
        return st;
    }
    *out = own;
    return CM_OK;
}

/* ---- q ------------------------------------------------------------------ */

/* idx_text.c: dictionary snapshot, term hits, row-aware set algebra. */
static enum cm_status q_eval(struct run *r, const struct idx_query *q,
                             roaring_bitmap_t *cand)
{
    return idx_q_eval(r->t, q, cand);
}

static bool q_active(const struct idx_query *q)
{
    return q->qs.n_must || q->qs.n_must_not || q->qs.n_any;
}

/* ---- Sort and page ------------------------------------------------------ */

struct item {
    uint64_t key, tie;
    uint32_t docid;
};

static int item_cmp(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->tie != y->tie)
        return x->tie < y->tie ? -1 : 1;
    return x->docid < y->docid ? -1 : x->docid > y->docid;
}

static void swap_items(struct item *a, struct item *b)
{
    struct item t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k smallest items to the front (unordered). */
static void select_k(struct item *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1 && k > lo && k < hi) {
        size_t mid = lo + (hi - lo) / 2, i = lo, j;
        struct item pivot;
        /* median of three */
        if (item_cmp(&v[mid], &v[lo]) < 0)
            swap_items(&v[mid], &v[lo]);
        if (item_cmp(&v[hi - 1], &v[lo]) < 0)
            swap_items(&v[hi - 1], &v[lo]);
        if (item_cmp(&v[hi - 1], &v[mid]) < 0)
            swap_items(&v[hi - 1], &v[mid]);
        pivot = v[mid];
        swap_items(&v[mid], &v[hi - 1]);
        for (j = lo; j < hi - 1; j++)
            if (item_cmp(&v[j], &pivot) < 0)
                swap_items(&v[i++], &v[j]);
        swap_items(&v[i], &v[hi - 1]);
        if (i == k || i + 1 == k)
            return;
        if (i < k)
            lo = i + 1;
        else
            hi = i;
    }
}

static enum idx_sort_field sort_field(enum idx_sort s)
{
    enum idx_sort_field f;
    if (s == IDX_SORT_RANDOM)
        return IDX_SF_RANDOM;
    const char *name = idx_sort_name(s);
    if (idx_sfield_lookup(name, strlen(name), &f) != CM_OK)
        return IDX_SF_ID;
    return f;
}

static atomic_uint_fast64_t plan_counts[IDX_PLAN_COUNT];

static void plan_used(enum idx_plan p)
{
    atomic_fetch_add_explicit(&plan_counts[p], 1, memory_order_relaxed);
}

uint64_t idx_plan_count(enum idx_plan p)
{
    return p < IDX_PLAN_COUNT
               ? atomic_load_explicit(&plan_counts[p], memory_order_relaxed)
               : 0;
}

/* The sort item of docid: its value in column vc (the random key for
 * random_<seed>, complemented for DESC) and its tie-break position. */
static enum cm_status read_item(struct idx_colcur *vc, struct idx_colcur *tc,
                                const struct idx_query *q,
                                enum idx_sort_field f, uint32_t docid,
                                struct item *x)
{
    enum cm_status st = idx_colcur_get(vc, docid, &x->key);
    x->docid = docid;
    if (st == CM_OK)
        st = idx_colcur_get(tc, docid, &x->tie);
    if (st == CM_OK && f == IDX_SF_RANDOM)
        x->key = idx_enc_double(
            idx_random_key((uint64_t)idx_dec_i64(x->key), q->seed));
    if (q->desc)
        x->key = ~x->key;
    return st;
}

/* Sorts the k selected items and returns items[off, off + lim) as the
 * page. */
static enum cm_status emit_items(struct item *items, size_t k, uint64_t off,
                                 uint64_t lim, struct idx_result *res)
{
    qsort(items, k, sizeof *items, item_cmp);
    res->docids = cm_malloc((size_t)lim * sizeof *res->docids);
    if (!res->docids)
        return CM_NOMEM;
    for (uint64_t i = 0; i < lim; i++)
        res->docids[i] = items[off + i].docid;
    res->n = (size_t)lim;
    return CM_OK;
}

/* Sifts v[i] down the max-heap v[0..n) (by item_cmp). */
static void heap_down(struct item *v, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && item_cmp(&v[l], &v[m]) > 0)
            m = l;
        if (l + 1 < n && item_cmp(&v[l + 1], &v[m]) > 0)
            m = l + 1;
        if (m == i)
            return;
        swap_items(&v[i], &v[m]);
        i = m;
    }
}

/* The candidate plan for a small k over many candidates: one pass over
 * the candidates keeping the k smallest in a max-heap, so nearly every
 * candidate costs two column reads and one comparison (no array of all
 * candidates: the first page of a fresh million-scene store, before its
 * order is built, takes milliseconds). */
static enum cm_status page_heap(struct run *r, const struct idx_query *q,
                                enum idx_sort_field f,
                                const roaring_bitmap_t *cand, uint64_t off,
                                uint64_t lim, struct idx_result *res)
{
    size_t k = (size_t)(off + lim), n = 0;
    struct idx_colcur vc, tc;
    struct item *h = cm_malloc(k * sizeof *h);
    roaring_uint32_iterator_t it;
    uint32_t buf[512], got;
    enum cm_status st = CM_OK;

    if (!h)
        return CM_NOMEM;
    idx_colcur_init(&vc, r->t, f == IDX_SF_RANDOM ? IDX_SF_ID : f);
    idx_colcur_init(&tc, r->t, IDX_SF_TIE);
    roaring_init_iterator(cand, &it);
    while (st == CM_OK && (got = roaring_read_uint32_iterator(&it, buf, 512)))
        for (uint32_t i = 0; i < got && st == CM_OK; i++) {
            struct item x;
            st = read_item(&vc, &tc, q, f, buf[i], &x);
            if (st != CM_OK)
                break;
            if (n < k) {
                size_t j = n++;
                h[j] = x;
                while (j > 0 && item_cmp(&h[(j - 1) / 2], &h[j]) < 0) {
                    swap_items(&h[(j - 1) / 2], &h[j]);
                    j = (j - 1) / 2;
                }
            } else if (item_cmp(&x, &h[0]) < 0) {
                h[0] = x;
                heap_down(h, n, 0);
            }
        }
    if (st == CM_OK && n < k)
        st = CM_CORRUPT; /* fewer candidates than their cardinality */
    if (st == CM_OK)
        st = emit_items(h, n, off, lim, res);
    cm_free(h);
    return st;
}

/* The candidate plan: read every candidate's (value, tie) from the
 * columns, quickselect the first offset + limit, sort those (a heap when
 * offset + limit is small against the candidates). */
static enum cm_status page_topk(struct run *r, const struct idx_query *q,
                                enum idx_sort_field f,
                                const roaring_bitmap_t *cand, uint64_t card,
                                uint64_t off, uint64_t lim,
                                struct idx_result *res)
{
    uint64_t k = off + lim;
    struct idx_colcur vc, tc;
    struct item *items = NULL;
    roaring_uint32_iterator_t it;
    size_t n = 0;
    enum cm_status st = CM_OK;

    if (k <= 4096 && card >= 16 * k)
        return page_heap(r, q, f, cand, off, lim, res);
    items = cm_malloc((size_t)card * sizeof *items);
    if (!items)
        return CM_NOMEM;
    idx_colcur_init(&vc, r->t, f == IDX_SF_RANDOM ? IDX_SF_ID : f);
    idx_colcur_init(&tc, r->t, IDX_SF_TIE);
    roaring_init_iterator(cand, &it);
    for (; it.has_value && st == CM_OK; roaring_advance_uint32_iterator(&it)) {
        st = read_item(&vc, &tc, q, f, it.current_value, &items[n++]);
    }
    if (st == CM_OK) {
        if (k < n)
            select_k(items, n, (size_t)k);
        st = emit_items(items, (size_t)k, off, lim, res);
    }
    cm_free(items);
    return st;
}

/* The order plan: slice the cached full order (unfiltered), or walk it
 * testing membership, skipping whole blocks by their and-cardinality
 * when the offset is deep (use_blocks). */
static enum cm_status page_walk(struct idx_order *o,
                                const roaring_bitmap_t *cand, bool unfiltered,
                                bool use_blocks, uint64_t off, uint64_t lim,
                                uint64_t max_visit, bool *gave_up,
                                struct idx_result *res)
{
    uint64_t seen = 0, got = 0;
    uint32_t p = 0, stop;
    enum cm_status st = CM_OK;

    res->docids = cm_malloc((size_t)lim * sizeof *res->docids);
    if (!res->docids)
        return CM_NOMEM;
    if (unfiltered) {
        memcpy(res->docids, o->docids + off, (size_t)lim * sizeof *res->docids);
        res->n = (size_t)lim;
        plan_used(IDX_PLAN_SLICE);
        return CM_OK;
    }
    plan_used(IDX_PLAN_WALK);
    if (use_blocks) {
        roaring_bitmap_t *const *b;
        uint32_t nb;
        st = idx_order_blocks(o, &b, &nb);
        if (st == CM_OK && b)
            plan_used(IDX_PLAN_BLOCKS);
        for (uint32_t i = 0; st == CM_OK && b && i < nb; i++) {
            uint64_t c = roaring_bitmap_and_cardinality(b[i], cand);
            if (seen + c > off)
                break;
            seen += c;
            p += IDX_ORDER_BLOCK;
        }
    }
    /* The cost model assumes candidates spread evenly over the order; a
     * filter correlated with the sort (a date range sorted by date) can
     * leave them all far down.  Past max_visit positions the walk gives
     * up and the caller takes the rank plan, whose cost does not depend
     * on where the candidates sit. */
    stop = max_visit < (uint64_t)(o->n - p) ? p + (uint32_t)max_visit : o->n;
    for (; st == CM_OK && p < o->n && got < lim; p++) {
        uint32_t d = o->docids[p];
        if (p == stop) {
            *gave_up = true;
            cm_free(res->docids);
            res->docids = NULL;
            return CM_OK;
        }
        if (!roaring_bitmap_contains(cand, d))
            continue;
        if (seen < off)
            seen++;
        else
            res->docids[got++] = d;
    }
    res->n = (size_t)got;
    if (st == CM_OK && got != lim)
        st = CM_CORRUPT; /* the order lacks candidates: not the same data */
    return st;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) ascending: LSD radix, 11-bit digits (3 passes; a pass
 * whose digit is constant is skipped).  tmp: n entries.  Returns the
 * array holding the result (v or tmp). */
static uint32_t *radix_u32(uint32_t *v, uint32_t *tmp, size_t n)
{
    for (int shift = 0; shift < 32; shift += 11) {
        size_t cnt[2048] = {0}, sum = 0;
        uint32_t *x;
        for (size_t i = 0; i < n; i++)
            cnt[(v[i] >> shift) & 2047]++;
        if (cnt[(v[0] >> shift) & 2047] == n)
            continue;
        for (size_t d = 0; d < 2048; d++) {
            size_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[cnt[(v[i] >> shift) & 2047]++] = v[i];
        x = v;
        v = tmp;
        tmp = x;
    }
    return v;
}

/* Moves the k smallest of v[0..n) to the front (unordered). */
static void select_u32(uint32_t *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1 && k > lo && k < hi) {
        size_t mid = lo + (hi - lo) / 2, i = lo;
        uint32_t pivot, t;
        if (v[mid] < v[lo]) {
            t = v[mid];
            v[mid] = v[lo];
            v[lo] = t;
        }
        if (v[hi - 1] < v[lo]) {
            t = v[hi - 1];
            v[hi - 1] = v[lo];
            v[lo] = t;
        }
        if (v[hi - 1] < v[mid]) {
            t = v[hi - 1];
            v[hi - 1] = v[mid];
            v[mid] = t;
        }
        pivot = v[mid];
        v[mid] = v[hi - 1];
        v[hi - 1] = pivot;
        for (size_t j = lo; j < hi - 1; j++)
            if (v[j] < pivot) {
                t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
            }
        v[hi - 1] = v[i];
        v[i] = pivot;
        if (i == k || i + 1 == k)
            return;
        if (i < k)
            lo = i + 1;
        else
            hi = i;
    }
}

/* The rank plan: the candidates' positions in a cached order (no column
 * reads), select the first offset + limit, sort those. */
static enum cm_status page_rank(const struct idx_order *o,
                                const roaring_bitmap_t *cand, uint64_t card,
                                uint64_t off, uint64_t lim,
                                struct idx_result *res)
{
    uint32_t *r = cm_malloc((size_t)card * sizeof *r), *sorted;
    roaring_uint32_iterator_t it;
    size_t n = 0, k = (size_t)(off + lim);
    enum cm_status st = CM_OK;

    if (!r)
        return CM_NOMEM;
    roaring_init_iterator(cand, &it);
    for (; it.has_value && n < card; roaring_advance_uint32_iterator(&it)) {
        uint32_t d = it.current_value;
        if (d > o->maxdoc || o->rank[d] == UINT32_MAX) {
            st = CM_CORRUPT; /* not the order of this data */
            break;
        }
        r[n++] = o->rank[d];
    }
    if (st == CM_OK) {
        if (k < n)
            select_u32(r, n, k);
        if (k > 256) {
            uint32_t *tmp = cm_malloc(k * sizeof *tmp);
            if (!tmp) {
                st = CM_NOMEM;
            } else {
                sorted = radix_u32(r, tmp, k);
                if (sorted == r)
                    cm_free(tmp);
                else
                    cm_free(r), r = tmp;
            }
        } else {
            qsort(r, k, sizeof *r, u32_cmp);
        }
    }
    if (st == CM_OK) {
        res->docids = cm_malloc((size_t)lim * sizeof *res->docids);
        if (!res->docids)
            st = CM_NOMEM;
    }
    if (st == CM_OK) {
        for (uint64_t i = 0; i < lim; i++)
            res->docids[i] = o->docids[r[off + i]];
        res->n = (size_t)lim;
        plan_used(IDX_PLAN_RANK);
    }
    cm_free(r);
    return st;
}

/* Cost model (ns, measured at 1M scenes on the 2-vCPU machine): the
 * candidate plan reads two column values per candidate (a chunk lookup
 * each when candidates are sparse) and selects; the walk tests
 * membership (roaring_bitmap_contains) per visited position; a block skip
 * is one and_cardinality of a 4096-docid bitmap.  A query whose candidate
 * plan would cost more than ORDER_BUILD_NS builds the cached order (it is
 * reused by every later query with that sort until the next write). */
#define COST_CAND      250.0
#define ORDER_BUILD_NS 300000.0
#define COST_CONTAINS  40.0
#define COST_RANK      20.0 /* rank lookup + select, per candidate */
#define COST_SORT      4.0  /* sorting the selected: per item and level */
#define COST_BLOCK     40000.0
#define ORDER_MIN_CARD 256

static enum cm_status page_of(struct run *r, const struct idx_query *q,
                              const roaring_bitmap_t *all,
                              const roaring_bitmap_t *cand,
                              struct idx_result *res)
{
    uint64_t card = roaring_bitmap_get_cardinality(cand);
    uint64_t nall = roaring_bitmap_get_cardinality(all);
    uint64_t off, lim;
    enum idx_sort_field f = sort_field(q->sort);
    bool unfiltered, use_blocks = false, walk, build = false;
    uint64_t walk_max = UINT64_MAX;
    enum cm_status st = CM_OK;

    res->count = card;
    if (q->per_page <= 0 || q->page < 1)
        return CM_OK;
    if (__builtin_mul_overflow((uint64_t)(q->page - 1), (uint64_t)q->per_page,
                               &off) ||
        off >= card)
        return CM_OK;
    lim = (uint64_t)q->per_page;
    if (lim > card - off)
        lim = card - off;
    unfiltered = card == nall && roaring_bitmap_equals(cand, all);
    if (unfiltered) {
        walk = card >= ORDER_MIN_CARD;
    } else {
        double ratio = (double)nall / (double)card;
        double cand_cost = (double)card * COST_CAND;
        double plain = (double)(off + lim) * ratio * COST_CONTAINS;
        double skip = (double)off * ratio / IDX_ORDER_BLOCK * COST_BLOCK +
                      (IDX_ORDER_BLOCK + (double)lim * ratio) * COST_CONTAINS;
        use_blocks =
            (double)off * ratio > 2.0 * IDX_ORDER_BLOCK && skip < plain;
        double k = (double)(off + lim);
        double rank = (double)card * COST_RANK +
                      k * (double)(64 - __builtin_clzll(off + lim)) * COST_SORT;
        walk = card >= ORDER_MIN_CARD &&
               (use_blocks ? skip : plain) < cand_cost &&
               (use_blocks ? skip : plain) < rank;
        build = cand_cost > ORDER_BUILD_NS;
        /* positions the walk may visit before the rank plan is cheaper */
        walk_max =
            (uint64_t)(2.0 * (use_blocks ? IDX_ORDER_BLOCK + (double)lim * ratio
                                         : (double)(off + lim) * ratio));
        if (walk_max < (uint64_t)(rank / COST_CONTAINS))
            walk_max = (uint64_t)(rank / COST_CONTAINS);
    }
    if (walk || card >= ORDER_MIN_CARD / 4) {
        struct idx_order *o = NULL;
        uint64_t gen;
        st = idx_gen_get(r->t, &gen);
        if (st == CM_OK && (walk || build))
            st = idx_order_get(r->t, f, q->desc, q->seed, gen, all, &o);
        else if (st == CM_OK) /* selective: use an order only if cached */
            idx_order_peek(kv_txn_store(r->t), f, q->desc, q->seed, gen, &o);
        if (st == CM_OK && o && o->n == nall) {
            bool gave_up = false;
            if (walk)
                st = page_walk(o, cand, unfiltered, use_blocks, off, lim,
                               walk_max, &gave_up, res);
            if (st == CM_OK && (!walk || gave_up))
                st = page_rank(o, cand, card, off, lim, res);
            idx_order_release(o);
            return st;
        }
        idx_order_release(o);
        if (st != CM_OK)
            return st;
    }
    plan_used(IDX_PLAN_TOPK);
    return page_topk(r, q, f, cand, card, off, lim, res);
}

static enum cm_status by_ids(struct run *r, const struct idx_query *q,
                             struct idx_result *res)
{
    roaring_bitmap_t *seen = roaring_bitmap_create();
    enum cm_status st = CM_OK;

    if (!seen)
        return CM_NOMEM;
    res->docids = cm_malloc((q->n_ids ? q->n_ids : 1) * sizeof *res->docids);
    if (!res->docids) {
        idx_bm_free(seen);
        return CM_NOMEM;
    }
    for (size_t i = 0; i < q->n_ids && st == CM_OK; i++) {
        uint32_t d;
        st = kv_docid_of(r->t, q->ids[i], &d);
        if (st == CM_NOTFOUND) {
            st = CM_OK;
            continue;
        }
        if (st == CM_OK && !roaring_bitmap_contains(seen, d)) {
            roaring_bitmap_add(seen, d);
            res->docids[res->n++] = d;
        }
    }
    res->count = res->n;
    idx_bm_free(seen);
    return st;
}

void idx_query_want_totals(struct idx_query *q, bool on)
{
    if (q)
        q->want_totals = on;
}

/* Adds docid's files[0] duration and size (0 = NULL: no file). */
static enum cm_status total_one(struct idx_colcur *dc, struct idx_colcur *sc,
                                uint32_t docid, double *dur, int64_t *size,
                                double *size_over)
{
    uint64_t d, z;
    enum cm_status st = idx_colcur_get(dc, docid, &d);
    if (st == CM_OK)
        st = idx_colcur_get(sc, docid, &z);
    if (st != CM_OK)
        return st;
    if (d)
        *dur += idx_dec_double(d);
    if (z) {
        int64_t v = idx_dec_i64(z);
        /* exact in integers; past int64 (never in practice) in doubles */
        if (__builtin_add_overflow(*size, v, size))
            *size_over += (double)v;
    }
    return CM_OK;
}

/* The duration and filesize sums over cand (or the docids of the ids
 * lookup when cand is NULL) from the dense columns, in docid order. */
static enum cm_status totals(struct run *r, const roaring_bitmap_t *cand,
                             struct idx_result *res)
{
    struct idx_colcur dc, zc;
    double dur = 0, over = 0;
    int64_t size = 0;
    enum cm_status st = CM_OK;

    idx_colcur_init(&dc, r->t, IDX_SF_DURATION);
    idx_colcur_init(&zc, r->t, IDX_SF_FILESIZE);
    if (cand) {
        roaring_uint32_iterator_t it;
        uint32_t buf[512], got;
        roaring_init_iterator(cand, &it);
        while (st == CM_OK &&
               (got = roaring_read_uint32_iterator(&it, buf, 512)) > 0)
            for (uint32_t i = 0; i < got && st == CM_OK; i++)
                st = total_one(&dc, &zc, buf[i], &dur, &size, &over);
    } else {
        for (size_t i = 0; i < res->n && st == CM_OK; i++)
            st = total_one(&dc, &zc, res->docids[i], &dur, &size, &over);
    }
    if (st != CM_OK)
        return st;
    res->duration_sum = dur;
    res->filesize_sum = (double)size + over;
    res->has_totals = true;
    return CM_OK;
}

enum cm_status idx_query_run(struct kv_txn *t, const struct idx_query *q,
                             struct idx_result *res)
{
    struct run r;
    roaring_bitmap_t *all = NULL, *cand = NULL;
    uint8_t k[1] = {IDX_P_ALL};
    enum cm_status st;

    if (!res)
        return CM_INVALID;
    memset(res, 0, sizeof *res);
    if (!t || !q)
        return CM_INVALID;
    memset(&r, 0, sizeof r);
    r.t = t;
    if (q->n_ids) {
        st = by_ids(&r, q, res);
        if (st == CM_OK && q->want_totals)
            st = totals(&r, NULL, res);
        goto out;
    }
    st = get_posting(&r, k, 1, &all);
    if (st == CM_OK && q->filter) {
        st = filter_eval(&r, q->filter, all, 0, &cand);
    } else if (st == CM_OK && q_active(q)) {
        cand = roaring_bitmap_copy(all);
        if (!cand)
            st = CM_NOMEM;
    }
    if (st == CM_OK && q_active(q))
        st = q_eval(&r, q, cand);
    if (st == CM_OK)
        st = page_of(&r, q, all, cand ? cand : all, res);
    if (st == CM_OK && q->want_totals)
        st = totals(&r, cand ? cand : all, res);
out:
    idx_bm_free(all);
    idx_bm_free(cand);
    if (r.mctx_on)
        idx_match_ctx_fini(&r.mctx);
    if (st != CM_OK)
        idx_result_fini(res);
    return st;
}

void idx_result_fini(struct idx_result *res)
{
    if (!res)
        return;
    cm_free(res->docids);
    memset(res, 0, sizeof *res);
}

enum cm_status idx_entity_scene_count(struct kv_txn *t, uint8_t type,
                                      uint64_t id, uint64_t *n)
{
    uint8_t k[9];
    const void *v;
    size_t len;
    enum cm_status st;
    roaring_bitmap_t *b = NULL;

    *n = 0;
    switch (type) {
    case KV_PERFORMER: k[0] = IDX_P_PERFORMER; break;
    case KV_TAG: k[0] = IDX_P_TAG; break;
    case KV_STUDIO: k[0] = IDX_P_STUDIO; break;
    case KV_GROUP: k[0] = IDX_P_GROUP; break;
    case KV_GALLERY: k[0] = IDX_P_GALLERY; break;
    default: return CM_INVALID;
    }
    idx_be64(k + 1, id);
    st = kv_get(t, KV_DB_POSTINGS, k, sizeof k, &v, &len);
    if (st == CM_NOTFOUND)
        return CM_OK;
    if (st != CM_OK)
        return st;
    st = idx_bm_decode(v, len, &b);
    if (st == CM_OK)
        *n = roaring_bitmap_get_cardinality(b);
    idx_bm_free(b);
    return st;
}
