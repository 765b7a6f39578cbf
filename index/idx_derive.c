/*
 * idx_derive.c - what one scene contributes to every index: its posting
 * keys (filter facets), its free-text tokens and its sort values.  The
 * writer diffs the entries of the old and the new version of a scene;
 * rebuild and verify derive every scene from scratch.  Facts that live in
 * entity records (the tags of performers, studios and groups) come from an
 * idx_ecache so a batch or a rebuild decodes each entity once.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "index/idx_filter.h"
#include "index/idx_int.h"

/* ---- Entity cache ---------------------------------------------------- */

void idx_ecache_init(struct idx_ecache *c, struct kv_txn *t)
{
    memset(c, 0, sizeof *c);
    c->t = t;
}

void idx_ecache_fini(struct idx_ecache *c)
{
    for (size_t i = 0; i < c->m.cap; i++)
        if (c->m.keys[i])
            cm_free(c->m.vals[i]);
    idx_map_fini(&c->m);
    for (int t = 0; t < 4; t++) {
        for (size_t i = 0; i < c->dircap[t]; i++)
            cm_free(c->dir[t][i]);
        cm_free(c->dir[t]);
        c->dir[t] = NULL;
        c->dircap[t] = 0;
    }
}

static uint64_t ekey(uint8_t type, uint64_t id)
{
    return (uint64_t)type << 56 | (id & 0x00FFFFFFFFFFFFFFULL);
}

/* The index of type in c->dir, or -1 (the id then goes to the map). */
static int dir_of(uint8_t type, uint64_t id)
{
    if (id >= IDX_ECACHE_DIRECT)
        return -1;
    switch (type) {
    case KV_PERFORMER: return 0;
    case KV_STUDIO: return 1;
    case KV_GROUP: return 2;
    case KV_TAG: return 3;
    default: return -1;
    }
}

/* The cell of (type, id): in c->dir (grown to hold id) or the map's.
 * NULL when absent and !grow; CM_NOMEM in *st. */
static void **ecache_cell(struct idx_ecache *c, uint8_t type, uint64_t id,
                          bool grow, enum cm_status *st)
{
    int t = dir_of(type, id);
    if (t < 0)
        return idx_map_find(&c->m, ekey(type, id));
    if (id >= c->dircap[t]) {
        size_t cap = c->dircap[t] ? c->dircap[t] : 256;
        struct idx_etags **d;
        if (!grow)
            return NULL;
        while (cap <= id)
            cap *= 2;
        d = cm_realloc(c->dir[t], cap * sizeof *d);
        if (!d) {
            *st = CM_NOMEM;
            return NULL;
        }
        memset(d + c->dircap[t], 0, (cap - c->dircap[t]) * sizeof *d);
        c->dir[t] = d;
        c->dircap[t] = cap;
    }
    return (void **)&c->dir[t][id];
}

void **idx_ecache_slot(struct idx_ecache *c, uint8_t type, uint64_t id)
{
    enum cm_status st = CM_OK;
    return ecache_cell(c, type, id, false, &st);
}

void idx_ecache_drop(struct idx_ecache *c, uint8_t type, uint64_t id)
{
    enum cm_status st = CM_OK;
    void **v = ecache_cell(c, type, id, false, &st);
    if (v) {
        cm_free(*v);
        *v = NULL;
    }
}

enum cm_status idx_ecache_tags(struct idx_ecache *c, uint8_t type, uint64_t id,
                               const struct idx_etags **out)
{
    struct kv_entity e;
    struct idx_etags *et;
    const uint64_t *src;
    uint32_t n;
    enum cm_status st = CM_OK;
    void **slot = ecache_cell(c, type, id, true, &st);

    *out = NULL;
    if (st != CM_OK)
        return st;
    if (slot && *slot) {
        *out = *slot;
        return CM_OK;
    }
    memset(&e, 0, sizeof e);
    st = kv_entity_get(c->t, type, id, &e);
    if (st != CM_OK && st != CM_NOTFOUND) {
        kv_entity_fini(&e);
        return st;
    }
    /* tags for performers/studios/groups; parents for the hierarchy. */
    if (type == KV_TAG) {
        src = e.parents;
        n = st == CM_OK ? e.n_parents : 0;
    } else {
        src = e.tags;
        n = st == CM_OK ? e.n_tags : 0;
    }
    et = cm_malloc(sizeof *et + (size_t)n * sizeof(uint64_t));
    if (!et) {
        kv_entity_fini(&e);
        return CM_NOMEM;
    }
    et->n = n;
    et->present = st == CM_OK;
    if (n)
        memcpy(et->tags, src, (size_t)n * sizeof(uint64_t));
    kv_entity_fini(&e);
    if (dir_of(type, id) >= 0) {
        *slot = et; /* the cell of c->dir, grown above */
        *out = et;
        return CM_OK;
    }
    st = idx_map_put(&c->m, ekey(type, id), et);
    if (st != CM_OK) {
        cm_free(et);
        return st;
    }
    *out = et;
    return CM_OK;
}

/* ---- Entries --------------------------------------------------------- */

void idx_entries_init(struct idx_entries *e)
{
    memset(e, 0, sizeof *e);
    cm_buf_init(&e->arena, CM_MAX_RECORD * 4);
}

void idx_entries_reset(struct idx_entries *e)
{
    cm_buf_reset(&e->arena);
    e->nkeys = 0;
    e->nfac = 0;
    e->nlkeys = 0;
    memset(e->num, 0, sizeof e->num);
    memset(e->doff, 0, sizeof e->doff);
    memset(e->dlen, 0, sizeof e->dlen);
}

void idx_entries_fini(struct idx_entries *e)
{
    cm_buf_fini(&e->arena);
    cm_free(e->keys);
    cm_free(e->lkeys);
    memset(e, 0, sizeof *e);
}

/* Grows a key array to hold at least need keys (doubling, 128 at first). */
static enum cm_status keys_reserve(struct idx_key **keys, size_t *cap,
                                   size_t need)
{
    size_t n = *cap ? *cap : 128;
    struct idx_key *nk;
    if (need <= *cap)
        return CM_OK;
    while (n < need)
        n *= 2;
    nk = cm_realloc(*keys, n * sizeof *nk);
    if (!nk)
        return CM_NOMEM;
    *keys = nk;
    *cap = n;
    return CM_OK;
}

/* Inline: the posting keys have constant lengths at their call sites. */
static inline enum cm_status add_key(struct idx_entries *e, uint8_t db,
                                     const void *k, size_t n)
{
    enum cm_status st;
    if (n == 0 || n > 511)
        return CM_INVALID;
    if (e->nkeys == e->capkeys) {
        st = keys_reserve(&e->keys, &e->capkeys, e->nkeys + 1);
        if (st != CM_OK)
            return st;
    }
    /* cm_buf_append's work inline: a scene adds ~80 small keys. */
    st = n < e->arena.cap - e->arena.len ? CM_OK : cm_buf_reserve(&e->arena, n);
    if (st != CM_OK)
        return st;
    e->keys[e->nkeys].off = (uint32_t)e->arena.len;
    e->keys[e->nkeys].len = (uint32_t)n;
    e->keys[e->nkeys].db = db;
    memcpy(e->arena.data + e->arena.len, k, n);
    e->arena.len += n;
    e->arena.data[e->arena.len] = '\0';
    e->nkeys++;
    return CM_OK;
}

static enum cm_status add_id(struct idx_entries *e, uint8_t field, uint64_t id)
{
    uint8_t k[9];
    k[0] = field;
    idx_be64(k + 1, id);
    return add_key(e, KV_DB_POSTINGS, k, sizeof k);
}

static enum cm_status add_flag(struct idx_entries *e, uint8_t a, uint8_t b)
{
    uint8_t k[2] = {a, b};
    return add_key(e, KV_DB_POSTINGS, k, b ? 2 : 1);
}

/* Int facet: null when !has. */
static enum cm_status add_int(struct idx_entries *e, uint8_t field, bool has,
                              int64_t v)
{
    uint8_t k[11] = {IDX_P_INT, field, 0};
    if (e->split) {
        if (e->nfac == IDX_MAX_FACETS)
            return CM_INTERNAL;
        e->fac[e->nfac].field = field;
        e->fac[e->nfac++].v = has ? idx_enc_i64(v) : 0;
        return CM_OK;
    }
    if (!has)
        return add_key(e, KV_DB_POSTINGS, k, 3);
    k[2] = 1;
    idx_be64(k + 3, idx_enc_i64(v));
    return add_key(e, KV_DB_POSTINGS, k, sizeof k);
}

static enum cm_status add_str(struct idx_entries *e, uint8_t field, bool has,
                              struct kv_str s)
{
    uint8_t k[3 + IDX_MAX_STRKEY] = {IDX_P_STR, field, 0};
    if (!has || !s.p)
        return add_key(e, KV_DB_POSTINGS, k, 3);
    if (s.len > IDX_MAX_STRKEY) {
        k[2] = 2; /* overflow bucket: evaluated by scanning */
        return add_key(e, KV_DB_POSTINGS, k, 3);
    }
    k[2] = 1;
    memcpy(k + 3, s.p, s.len);
    return add_key(e, KV_DB_POSTINGS, k, 3 + (size_t)s.len);
}

/* The tokens of s as text keys of the class given by prefix (0,
 * IDX_T_FP or IDX_T_MARKER), lower-cased straight into the arena. */
static enum cm_status add_text_as(struct idx_entries *e, uint8_t prefix,
                                  const char *s, size_t n)
{
    struct idx_tokit it = {(const unsigned char *)s, s ? n : 0, 0, 0, 0};
    size_t pre = prefix != 0, tn;
    /* Room for every token of s at once, so the loop checks nothing: a
     * token takes a byte of s and a separator, a long run gives a window
     * per IDX_TOK_STEP bytes; the keys' bytes are at most 2n + a window
     * (the windows overlap) plus the prefixes, and a window may be
     * written in full past the end. */
    size_t most = (n + 1) / 2 + n / IDX_TOK_STEP + 2;
    enum cm_status st;

    if (!s || !n)
        return CM_OK;
    st = keys_reserve(&e->keys, &e->capkeys, e->nkeys + most);
    if (st == CM_OK && e->split)
        st = keys_reserve(&e->lkeys, &e->caplkeys, e->nlkeys + most);
    if (st == CM_OK)
        st = cm_buf_reserve(&e->arena, 2 * n + most * pre + 4 * IDX_TOK_MAX);
    if (st != CM_OK)
        return st;
    for (;;) {
        uint8_t *o = (uint8_t *)e->arena.data + e->arena.len;
        struct idx_key *k;
        if (!idx_tok_next(&it, o + pre, &tn))
            break;
        if (prefix)
            o[0] = prefix;
        k = e->split && idx_token_listed(o, tn + pre) ? &e->lkeys[e->nlkeys++]
                                                      : &e->keys[e->nkeys++];
        k->off = (uint32_t)e->arena.len;
        k->len = (uint32_t)(tn + pre);
        k->db = KV_DB_TEXT;
        e->arena.len += tn + pre;
    }
    e->arena.data[e->arena.len] = '\0'; /* windows were written past len */
    return CM_OK;
}

static enum cm_status add_text(struct idx_entries *e, const char *s, size_t n)
{
    return add_text_as(e, 0, s, n);
}

static int key_cmp(const void *a, const void *b, void *ctx)
{
    const struct idx_entries *e = ctx;
    const struct idx_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c;
    if (x->db != y->db)
        return x->db < y->db ? -1 : 1;
    c = memcmp(e->arena.data + x->off, e->arena.data + y->off, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sets dictionary field f from up to two components (NULL-marked). */
static enum cm_status set_dict(struct idx_entries *e, enum idx_sort_field f,
                               struct kv_str a, struct kv_str b, int parts,
                               bool natural)
{
    size_t start = e->arena.len;
    enum cm_status st = CM_OK;
    struct kv_str comp[2] = {a, b};

    if (parts == 1 && !a.p)
        return CM_OK; /* NULL */
    for (int i = 0; i < parts && st == CM_OK; i++) {
        size_t room = (IDX_DICT_MAXKEY - 10) / (size_t)parts;
        if (parts == 2) {
            st = cm_buf_putc(&e->arena, comp[i].p ? 1 : 0);
            if (!comp[i].p || st != CM_OK)
                continue;
        }
        st = natural ? idx_natkey(comp[i].p, comp[i].len, room, &e->arena)
                     : idx_binkey(comp[i].p, comp[i].len, room, &e->arena);
    }
    if (st != CM_OK)
        return st;
    e->doff[f] = (uint32_t)start;
    e->dlen[f] = (uint32_t)(e->arena.len - start);
    return CM_OK;
}

static struct kv_str folder_of(const struct kv_file *f)
{
    struct kv_str r = f->path;
    if (!r.p)
        return r;
    if (f->basename.p && f->basename.len < r.len &&
        memcmp(r.p + r.len - f->basename.len, f->basename.p, f->basename.len) ==
            0) {
        char sep = r.p[r.len - f->basename.len - 1];
        if (sep == '/' || sep == '\\')
            r.len -= f->basename.len + 1;
    }
    return r;
}

static enum cm_status derive_sorts(const struct kv_scene *sc,
                                   struct idx_entries *e)
{
    const struct kv_file *f0 = sc->n_files ? &sc->files[0] : NULL;
    struct kv_str none = {NULL, 0}, t1, tie;
    char idtxt[24];
    int n;
    enum cm_status st;
    size_t start;

    if (sc->date.year)
        e->num[IDX_SF_DATE] =
            idx_enc_i64((int64_t)sc->date.year * 10000 +
                        (sc->date.month ? sc->date.month : 1) * 100 +
                        (sc->date.day ? sc->date.day : 1));
    if (sc->rating100 >= 0)
        e->num[IDX_SF_RATING] = idx_enc_i64(sc->rating100);
    e->num[IDX_SF_OCOUNT] = idx_enc_i64(sc->o_counter);
    e->num[IDX_SF_PLAYCOUNT] = idx_enc_i64(sc->play_count);
    if (sc->play_duration >= 0)
        e->num[IDX_SF_PLAYDUR] = idx_enc_double(sc->play_duration);
    if (sc->resume_time >= 0)
        e->num[IDX_SF_RESUME] = idx_enc_double(sc->resume_time);
    if (f0) {
        e->num[IDX_SF_DURATION] = idx_enc_double(f0->duration);
        e->num[IDX_SF_FILESIZE] = idx_enc_i64(f0->size);
        e->num[IDX_SF_BITRATE] = idx_enc_i64(f0->bit_rate);
        e->num[IDX_SF_FRAMERATE] = idx_enc_double(f0->frame_rate);
        e->num[IDX_SF_RESOLUTION] =
            idx_enc_i64(f0->width < f0->height ? f0->width : f0->height);
    }
    e->num[IDX_SF_TAGCOUNT] = idx_enc_i64(sc->n_tags);
    e->num[IDX_SF_PERFCOUNT] = idx_enc_i64(sc->n_performers);
    e->num[IDX_SF_FILECOUNT] = idx_enc_i64(sc->n_files);
    e->num[IDX_SF_ORGANIZED] = idx_enc_i64(sc->organized);
    e->num[IDX_SF_INTERACTIVE] = idx_enc_i64(sc->interactive);
    if (sc->interactive_speed >= 0)
        e->num[IDX_SF_ISPEED] = idx_enc_i64(sc->interactive_speed);
    e->num[IDX_SF_ID] = idx_enc_i64((int64_t)sc->id);

    t1 = sc->title.p ? sc->title : (f0 ? f0->basename : none);
    st = set_dict(e, IDX_SF_TITLE, t1, f0 ? folder_of(f0) : none, 2, true);
    if (st == CM_OK)
        st = set_dict(e, IDX_SF_PATH, f0 ? f0->path : none, none, 1, true);
    if (st == CM_OK)
        st = set_dict(e, IDX_SF_CODE, sc->code, none, 1, false);
    if (st == CM_OK)
        st = set_dict(e, IDX_SF_STUDIO, sc->studio.id ? sc->studio.name : none,
                      none, 1, false);
    if (st == CM_OK)
        st = set_dict(e, IDX_SF_CREATED, sc->created_at, none, 1, false);
    if (st == CM_OK)
        st = set_dict(e, IDX_SF_UPDATED, sc->updated_at, none, 1, false);
    if (st == CM_OK)
        st = set_dict(e, IDX_SF_LASTPLAYED, sc->last_played_at, none, 1, false);
    if (st != CM_OK)
        return st;
    /* Tie: COALESCE(title, id) NATURAL_CI, then the Stash id. */
    tie = sc->title;
    if (!tie.p) {
        n = snprintf(idtxt, sizeof idtxt, "%llu", (unsigned long long)sc->id);
        if (n < 0 || (size_t)n >= sizeof idtxt)
            return CM_INTERNAL;
        tie.p = idtxt;
        tie.len = (uint32_t)n;
    }
    start = e->arena.len;
    st = idx_natkey(tie.p, tie.len, IDX_DICT_MAXKEY - 12, &e->arena);
    if (st == CM_OK) {
        uint8_t b[8];
        idx_be64(b, sc->id);
        st = cm_buf_append(&e->arena, b, 8);
    }
    if (st == CM_OK) {
        e->doff[IDX_SF_TIE] = (uint32_t)start;
        e->dlen[IDX_SF_TIE] = (uint32_t)(e->arena.len - start);
    }
    return st;
}

static enum cm_status derive_missing(const struct kv_scene *sc,
                                     struct idx_entries *e)
{
    struct idx_crit c;
    struct idx_filter f;
    struct idx_match_ctx ctx;
    enum cm_status st = CM_OK;

    idx_match_ctx_mem(&ctx, NULL, 0);
    memset(&c, 0, sizeof c);
    c.field = IDX_F_IS_MISSING;
    c.mod = IDX_MOD_EQUALS;
    f = (struct idx_filter){&c, 1, IDX_SUB_NONE, NULL};
    for (int m = 0; m < IDX_MISS_COUNT && st == CM_OK; m++) {
        c.missing = (enum idx_missing)m;
        if (idx_filter_match(&f, sc, &ctx))
            st = add_flag(e, IDX_P_MISSING, (uint8_t)(m + 1));
    }
    idx_match_ctx_fini(&ctx);
    return st;
}

static enum cm_status derive_refs(struct idx_ecache *c,
                                  const struct kv_scene *sc,
                                  struct idx_entries *e)
{
    enum cm_status st = CM_OK;
    bool fav = false, tfav = false, has_pt = false, has_it = false;
    const struct idx_etags *et;

    for (uint32_t i = 0; i < sc->n_tags && st == CM_OK; i++) {
        st = add_id(e, IDX_P_TAG, sc->tags[i].id);
        tfav |= sc->tags[i].favorite;
    }
    for (uint32_t i = 0; i < sc->n_performers && st == CM_OK; i++) {
        st = add_id(e, IDX_P_PERFORMER, sc->performers[i].id);
        fav |= sc->performers[i].favorite;
        if (st == CM_OK)
            st = idx_ecache_tags(c, KV_PERFORMER, sc->performers[i].id, &et);
        for (uint32_t j = 0; st == CM_OK && j < et->n; j++) {
            st = add_id(e, IDX_P_PERF_TAG, et->tags[j]);
            if (st == CM_OK)
                st = add_id(e, IDX_P_INH_TAG, et->tags[j]);
            has_pt = has_it = true;
        }
    }
    for (uint32_t i = 0; i < sc->n_groups && st == CM_OK; i++) {
        st = add_id(e, IDX_P_GROUP, sc->groups[i].id);
        if (st == CM_OK)
            st = idx_ecache_tags(c, KV_GROUP, sc->groups[i].id, &et);
        for (uint32_t j = 0; st == CM_OK && j < et->n; j++) {
            st = add_id(e, IDX_P_INH_TAG, et->tags[j]);
            has_it = true;
        }
    }
    for (uint32_t i = 0; i < sc->n_galleries && st == CM_OK; i++)
        st = add_id(e, IDX_P_GALLERY, sc->galleries[i].id);
    if (st == CM_OK && sc->studio.id) {
        st = add_id(e, IDX_P_STUDIO, sc->studio.id);
        if (st == CM_OK)
            st = idx_ecache_tags(c, KV_STUDIO, sc->studio.id, &et);
        for (uint32_t j = 0; st == CM_OK && j < et->n; j++) {
            st = add_id(e, IDX_P_INH_TAG, et->tags[j]);
            has_it = true;
        }
        if (st == CM_OK && sc->studio.favorite)
            st = add_flag(e, IDX_P_STUDIO_FAV, 0);
    }
    if (st == CM_OK && fav)
        st = add_flag(e, IDX_P_PERF_FAV, 0);
    if (st == CM_OK && tfav)
        st = add_flag(e, IDX_P_TAG_FAV, 0);
    if (st == CM_OK && sc->n_tags)
        st = add_flag(e, IDX_P_HAS, IDX_P_TAG);
    if (st == CM_OK && sc->n_performers)
        st = add_flag(e, IDX_P_HAS, IDX_P_PERFORMER);
    if (st == CM_OK && sc->n_groups)
        st = add_flag(e, IDX_P_HAS, IDX_P_GROUP);
    if (st == CM_OK && sc->n_galleries)
        st = add_flag(e, IDX_P_HAS, IDX_P_GALLERY);
    if (st == CM_OK && sc->studio.id)
        st = add_flag(e, IDX_P_HAS, IDX_P_STUDIO);
    if (st == CM_OK && has_pt)
        st = add_flag(e, IDX_P_HAS, IDX_P_PERF_TAG);
    if (st == CM_OK && has_it)
        st = add_flag(e, IDX_P_HAS, IDX_P_INH_TAG);
    return st;
}

static int64_t sql_round(double v)
{
    return (int64_t)(v < 0 ? -floor(-v + 0.5) : floor(v + 0.5));
}

static enum cm_status derive_facets(const struct kv_scene *sc,
                                    struct idx_entries *e)
{
    const struct kv_file *f0 = sc->n_files ? &sc->files[0] : NULL;
    bool hf = f0 != NULL;
    int32_t ss = hf ? (f0->width < f0->height ? f0->width : f0->height) : 0;
    int orient = !hf                      ? 0
                 : f0->width > f0->height ? 0
                 : f0->width < f0->height ? 1
                                          : 2;
    enum cm_status st =
        add_int(e, IDX_I_RATING, sc->rating100 >= 0, sc->rating100);
    if (st == CM_OK)
        st = add_int(e, IDX_I_OCOUNT, true, sc->o_counter);
    if (st == CM_OK)
        st = add_int(e, IDX_I_PLAYCOUNT, true, sc->play_count);
    if (st == CM_OK)
        st = add_int(e, IDX_I_TAGCOUNT, true, sc->n_tags);
    if (st == CM_OK)
        st = add_int(e, IDX_I_PERFCOUNT, true, sc->n_performers);
    if (st == CM_OK)
        st = add_int(e, IDX_I_FILECOUNT, true, sc->n_files);
    if (st == CM_OK)
        st = add_int(e, IDX_I_ISPEED, hf && sc->interactive_speed >= 0,
                     sc->interactive_speed);
    if (st == CM_OK)
        st = add_int(e, IDX_I_ORGANIZED, true, sc->organized);
    if (st == CM_OK)
        st = add_int(e, IDX_I_INTERACTIVE, hf, sc->interactive);
    if (st == CM_OK)
        st = add_int(e, IDX_I_MARKERS, true, sc->n_markers > 0);
    if (st == CM_OK)
        st = add_int(e, IDX_I_ORIENT, hf, orient);
    if (st == CM_OK)
        st = add_int(e, IDX_I_SHORTSIDE, hf, ss);
    if (st == CM_OK)
        st =
            add_int(e, IDX_I_FRAMERATE, hf, hf ? sql_round(f0->frame_rate) : 0);
    if (st == CM_OK)
        st = add_int(e, IDX_I_DURATION, hf, hf ? (int64_t)f0->duration : 0);
    if (st == CM_OK)
        st = add_int(e, IDX_I_RESUME, sc->resume_time >= 0,
                     (int64_t)sc->resume_time);
    if (st == CM_OK)
        st = add_int(e, IDX_I_PLAYDUR, sc->play_duration >= 0,
                     (int64_t)sc->play_duration);
    if (st == CM_OK)
        st = add_int(e, IDX_I_YEAR, sc->date.year != 0, sc->date.year);
    if (st == CM_OK)
        st = add_int(e, IDX_I_DATE, sc->date.year != 0,
                     (int64_t)sc->date.year * 10000 +
                         (sc->date.month ? sc->date.month : 1) * 100 +
                         (sc->date.day ? sc->date.day : 1));
    if (st == CM_OK)
        st = add_str(e, IDX_S_VCODEC, hf, hf ? f0->video_codec : sc->title);
    if (st == CM_OK)
        st = add_str(e, IDX_S_ACODEC, hf, hf ? f0->audio_codec : sc->title);
    return st;
}

/* Writes v in decimal (as "%lld" does) to out (room for 20 bytes); returns
 * the length.  snprintf's format machinery was ~700 instructions per scene
 * of the bulk build. */
static size_t i64_dec(char out[24], int64_t v)
{
    char tmp[24];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, k = 0;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[k++] = '-';
    while (n)
        out[k++] = tmp[--n];
    return k;
}

/* The q search columns: title, details, every file's path and
 * fingerprints (phash as signed decimal), marker titles, and peekd's
 * name columns: code, studio name, performer names, tag names (the names
 * embedded in the record; sync rewrites the records on a rename).
 * Fingerprint and marker tokens are keyed in their own classes
 * (IDX_T_FP, IDX_T_MARKER), and the row postings (IDX_P_ROWS) say which
 * parts of Stash's join rows vary, so idx_run.c can tell when a scene's
 * rows all agree on a term (see q_rows there). */
static enum cm_status derive_text(const struct kv_scene *sc,
                                  struct idx_entries *e)
{
    enum cm_status st = add_text(e, sc->title.p, sc->title.len);
    char num[24];

    if (st == CM_OK)
        st = add_text(e, sc->details.p, sc->details.len);
    if (st == CM_OK)
        st = add_text(e, sc->code.p, sc->code.len);
    if (st == CM_OK && sc->studio.id)
        st = add_text(e, sc->studio.name.p, sc->studio.name.len);
    for (uint32_t i = 0; i < sc->n_performers && st == CM_OK; i++)
        st = add_text(e, sc->performers[i].name.p, sc->performers[i].name.len);
    for (uint32_t i = 0; i < sc->n_tags && st == CM_OK; i++)
        st = add_text(e, sc->tags[i].name.p, sc->tags[i].name.len);
    for (uint32_t i = 0; i < sc->n_files && st == CM_OK; i++) {
        const struct kv_file *f = &sc->files[i];
        st = add_text(e, f->path.p, f->path.len);
        if (st == CM_OK)
            st = add_text_as(e, IDX_T_FP, f->oshash.p, f->oshash.len);
        if (st == CM_OK)
            st = add_text_as(e, IDX_T_FP, f->md5.p, f->md5.len);
        if (st == CM_OK && f->phash.p) {
            /* Stash stores phash as a signed int64 and q matches its
             * decimal text, so only that form is a q column (the token
             * set must be exactly the q columns' tokens: idx_run.c answers
             * single-word searches from it without verification). */
            uint64_t v = 0;
            bool ok = f->phash.len > 0 && f->phash.len <= 16;
            for (uint32_t k = 0; ok && k < f->phash.len; k++) {
                char ch = f->phash.p[k];
                int d = ch >= '0' && ch <= '9'   ? ch - '0'
                        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                 : -1;
                if (d < 0)
                    ok = false;
                else
                    v = v << 4 | (uint64_t)d;
            }
            if (ok) {
                size_t n = i64_dec(num, (int64_t)v);
                st = add_text_as(e, IDX_T_FP, num, n);
            }
        }
    }
    for (uint32_t i = 0; i < sc->n_markers && st == CM_OK; i++)
        st = add_text_as(e, IDX_T_MARKER, sc->markers[i].title.p,
                         sc->markers[i].title.len);
    /* Row postings.  Fingerprint rows of a file are counted by presence
     * (a phash that is not valid hex is no row of the oracle's, so this
     * may over-count: the postings may only over-approximate). */
    if (st == CM_OK && sc->n_files > 1)
        st = add_flag(e, IDX_P_ROWS, IDX_ROWS_FILES);
    for (uint32_t i = 0; i < sc->n_files && st == CM_OK; i++) {
        const struct kv_file *f = &sc->files[i];
        if ((f->oshash.p != NULL) + (f->md5.p != NULL) + (f->phash.p != NULL) >
            1) {
            st = add_flag(e, IDX_P_ROWS, IDX_ROWS_FP);
            break;
        }
    }
    if (st == CM_OK && sc->n_markers > 1)
        st = add_flag(e, IDX_P_ROWS, IDX_ROWS_MARK);
    return st;
}

enum cm_status idx_derive_unsorted(struct idx_ecache *c,
                                   const struct kv_scene *sc,
                                   struct idx_entries *e)
{
    enum cm_status st;

    idx_entries_reset(e);
    st = add_flag(e, IDX_P_ALL, 0);
    if (st == CM_OK)
        st = derive_refs(c, sc, e);
    if (st == CM_OK)
        st = derive_facets(sc, e);
    if (st == CM_OK)
        st = derive_missing(sc, e);
    if (st == CM_OK)
        st = derive_text(sc, e);
    if (st == CM_OK)
        st = derive_sorts(sc, e);
    return st;
}

enum cm_status idx_derive(struct idx_ecache *c, const struct kv_scene *sc,
                          struct idx_entries *e)
{
    enum cm_status st = idx_derive_unsorted(c, sc, e);
    size_t k = 0;

    if (st != CM_OK)
        return st;
    qsort_r(e->keys, e->nkeys, sizeof *e->keys, key_cmp, e);
    for (size_t i = 0; i < e->nkeys; i++)
        if (k == 0 || key_cmp(&e->keys[k - 1], &e->keys[i], e) != 0)
            e->keys[k++] = e->keys[i];
    e->nkeys = k;
    return CM_OK;
}
