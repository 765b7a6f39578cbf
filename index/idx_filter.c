/*
 * idx_filter.c - names of the query AST's enums, SQLite's LIKE, and the
 * brute-force reference evaluator (oracle) of a scene filter.
 *
 * The oracle is deliberately naive: one scene at a time, no indexes, each
 * rule written the way Stash's SQL states it (idx_filter.h has the rules).
 * Differential tests compare the index core against it, so clarity beats
 * speed everywhere in this file.
 */
#include "index/idx_filter.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"

/* ---- Names --------------------------------------------------------- */

static const char *const sort_names[IDX_SORT_COUNT] = {
    [IDX_SORT_CREATED_AT] = "created_at",
    [IDX_SORT_UPDATED_AT] = "updated_at",
    [IDX_SORT_TITLE] = "title",
    [IDX_SORT_DATE] = "date",
    [IDX_SORT_RATING] = "rating",
    [IDX_SORT_O_COUNTER] = "o_counter",
    [IDX_SORT_PLAY_COUNT] = "play_count",
    [IDX_SORT_PLAY_DURATION] = "play_duration",
    [IDX_SORT_LAST_PLAYED_AT] = "last_played_at",
    [IDX_SORT_RESUME_TIME] = "resume_time",
    [IDX_SORT_DURATION] = "duration",
    [IDX_SORT_FILESIZE] = "filesize",
    [IDX_SORT_BITRATE] = "bitrate",
    [IDX_SORT_FRAMERATE] = "framerate",
    [IDX_SORT_RESOLUTION] = "resolution",
    [IDX_SORT_PATH] = "path",
    [IDX_SORT_TAG_COUNT] = "tag_count",
    [IDX_SORT_PERFORMER_COUNT] = "performer_count",
    [IDX_SORT_FILE_COUNT] = "file_count",
    [IDX_SORT_ORGANIZED] = "organized",
    [IDX_SORT_INTERACTIVE] = "interactive",
    [IDX_SORT_INTERACTIVE_SPEED] = "interactive_speed",
    [IDX_SORT_CODE] = "code",
    [IDX_SORT_STUDIO] = "studio",
    [IDX_SORT_ID] = "id",
    [IDX_SORT_RANDOM] = "random",
};

const char *idx_sort_name(enum idx_sort s)
{
    if ((unsigned)s >= IDX_SORT_COUNT)
        return "?";
    return sort_names[s];
}

static const char *const mod_names[IDX_MOD_COUNT] = {
    "EQUALS",      "NOT_EQUALS",    "GREATER_THAN",      "LESS_THAN",
    "IS_NULL",     "NOT_NULL",      "INCLUDES_ALL",      "INCLUDES",
    "EXCLUDES",    "MATCHES_REGEX", "NOT_MATCHES_REGEX", "BETWEEN",
    "NOT_BETWEEN",
};

const char *idx_mod_name(enum idx_mod m)
{
    if ((unsigned)m >= IDX_MOD_COUNT)
        return "?";
    return mod_names[m];
}

struct field_info {
    const char *name;
    enum idx_kind kind;
};

static const struct field_info fields[IDX_F_COUNT] = {
    [IDX_F_CONST] = {"const", IDX_K_CONST},
    [IDX_F_TITLE] = {"title", IDX_K_STRING},
    [IDX_F_CODE] = {"code", IDX_K_STRING},
    [IDX_F_DETAILS] = {"details", IDX_K_STRING},
    [IDX_F_DIRECTOR] = {"director", IDX_K_STRING},
    [IDX_F_PATH] = {"path", IDX_K_STRING},
    [IDX_F_URL] = {"url", IDX_K_STRING},
    [IDX_F_CAPTIONS] = {"captions", IDX_K_STRING},
    [IDX_F_VIDEO_CODEC] = {"video_codec", IDX_K_STRING},
    [IDX_F_AUDIO_CODEC] = {"audio_codec", IDX_K_STRING},
    [IDX_F_OSHASH] = {"oshash", IDX_K_STRING},
    [IDX_F_CHECKSUM] = {"checksum", IDX_K_STRING},
    [IDX_F_PHASH] = {"phash", IDX_K_PHASH},
    [IDX_F_ID] = {"id", IDX_K_INT},
    [IDX_F_RATING100] = {"rating100", IDX_K_INT},
    [IDX_F_O_COUNTER] = {"o_counter", IDX_K_INT},
    [IDX_F_PLAY_COUNT] = {"play_count", IDX_K_INT},
    [IDX_F_PLAY_DURATION] = {"play_duration", IDX_K_INT},
    [IDX_F_RESUME_TIME] = {"resume_time", IDX_K_INT},
    [IDX_F_DURATION] = {"duration", IDX_K_INT},
    [IDX_F_BITRATE] = {"bitrate", IDX_K_INT},
    [IDX_F_FRAMERATE] = {"framerate", IDX_K_INT},
    [IDX_F_FILE_COUNT] = {"file_count", IDX_K_INT},
    [IDX_F_TAG_COUNT] = {"tag_count", IDX_K_INT},
    [IDX_F_PERFORMER_COUNT] = {"performer_count", IDX_K_INT},
    [IDX_F_INTERACTIVE_SPEED] = {"interactive_speed", IDX_K_INT},
    [IDX_F_PERFORMER_AGE] = {"performer_age", IDX_K_INT},
    [IDX_F_ORGANIZED] = {"organized", IDX_K_BOOL},
    [IDX_F_INTERACTIVE] = {"interactive", IDX_K_BOOL},
    [IDX_F_PERFORMER_FAVORITE] = {"performer_favorite", IDX_K_BOOL},
    [IDX_F_STUDIO_FAVORITE] = {"studio_favorite", IDX_K_BOOL},
    [IDX_F_TAG_FAVORITE] = {"tag_favorite", IDX_K_BOOL},
    [IDX_F_RESOLUTION] = {"resolution", IDX_K_RESOLUTION},
    [IDX_F_ORIENTATION] = {"orientation", IDX_K_ORIENTATION},
    [IDX_F_DATE] = {"date", IDX_K_DATE},
    [IDX_F_CREATED_AT] = {"created_at", IDX_K_DATE},
    [IDX_F_UPDATED_AT] = {"updated_at", IDX_K_DATE},
    [IDX_F_LAST_PLAYED_AT] = {"last_played_at", IDX_K_DATE},
    [IDX_F_HAS_MARKERS] = {"has_markers", IDX_K_BOOL},
    [IDX_F_IS_MISSING] = {"is_missing", IDX_K_MISSING},
    [IDX_F_STUDIOS] = {"studios", IDX_K_HIER},
    [IDX_F_TAGS] = {"tags", IDX_K_HIER},
    [IDX_F_GROUPS] = {"groups", IDX_K_HIER},
    [IDX_F_PERFORMER_TAGS] = {"performer_tags", IDX_K_HIER},
    [IDX_F_PERFORMERS] = {"performers", IDX_K_MULTI},
    [IDX_F_GALLERIES] = {"galleries", IDX_K_MULTI},
    [IDX_F_SCENE_IDS] = {"ids", IDX_K_MULTI},
    [IDX_F_STASH_ID_ENDPOINT] = {"stash_id_endpoint", IDX_K_STASH_ID},
};

enum idx_kind idx_field_kind(enum idx_field f)
{
    if ((unsigned)f >= IDX_F_COUNT)
        return IDX_K_CONST;
    return fields[f].kind;
}

const char *idx_field_name(enum idx_field f)
{
    if ((unsigned)f >= IDX_F_COUNT || !fields[f].name)
        return "?";
    return fields[f].name;
}

static const int32_t res_bands[IDX_RES_COUNT][2] = {
    [IDX_RES_VERY_LOW] = {144, 239},  [IDX_RES_LOW] = {240, 359},
    [IDX_RES_R360P] = {360, 479},     [IDX_RES_STANDARD] = {480, 539},
    [IDX_RES_WEB_HD] = {540, 719},    [IDX_RES_STANDARD_HD] = {720, 1079},
    [IDX_RES_FULL_HD] = {1080, 1439}, [IDX_RES_QUAD_HD] = {1440, 1919},
    [IDX_RES_VR_HD] = {1920, 2159},   [IDX_RES_FOUR_K] = {1920, 2559},
    [IDX_RES_FIVE_K] = {2560, 2999},  [IDX_RES_SIX_K] = {3000, 3583},
    [IDX_RES_SEVEN_K] = {3584, 3839}, [IDX_RES_EIGHT_K] = {3840, 6143},
    [IDX_RES_HUGE] = {6144, 9999},
};

void idx_resolution_band(enum idx_resolution r, int32_t *lo, int32_t *hi)
{
    if ((unsigned)r >= IDX_RES_COUNT) {
        *lo = 1;
        *hi = 0; /* empty band */
        return;
    }
    *lo = res_bands[r][0];
    *hi = res_bands[r][1];
}

bool idx_date_text(struct kv_date d, char buf[11])
{
    buf[0] = '\0';
    if (d.year == 0)
        return false;
    int n = snprintf(buf, 11, "%04d-%02u-%02u", (int)d.year,
                     d.month ? (unsigned)d.month : 1u,
                     d.day ? (unsigned)d.day : 1u);
    return n > 0;
}

/* ---- SQLite LIKE --------------------------------------------------- */

/* sqlite3Utf8Trans1: payload bits of a UTF-8 lead byte 0xC0..0xFF. */
static const unsigned char utf8_trans1[64] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
    0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x00,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
    0x0c, 0x0d, 0x0e, 0x0f, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
    0x07, 0x00, 0x01, 0x02, 0x03, 0x00, 0x01, 0x00, 0x00,
};

/* Reads one character the way sqlite3Utf8Read does (lenient). */
static uint32_t u8read(const unsigned char *s, size_t n, size_t *i)
{
    uint32_t c = s[(*i)++];
    if (c >= 0xc0) {
        c = utf8_trans1[c - 0xc0];
        while (*i < n && (s[*i] & 0xc0) == 0x80)
            c = (c << 6) + (0x3fu & s[(*i)++]);
        if (c < 0x80 || (c & 0xFFFFF800u) == 0xD800 ||
            (c & 0xFFFFFFFEu) == 0xFFFE)
            c = 0xFFFD;
    }
    return c;
}

static uint32_t ascii_lower(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* LIKE of s against the pattern ('%' if lead) p ('%' if trail), evaluated
 * over characters with the classic backtrack-to-last-'%' algorithm (exact
 * for patterns of '%', '_' and literals). */
static bool like_impl(const unsigned char *p, size_t pl, bool lead, bool trail,
                      const unsigned char *s, size_t sl)
{
    /* Pattern positions: 0 = lead '%', 1..pl (byte offsets + 1) = p,
     * pl + 1 = trail '%', pl + 2 = end. */
    size_t pi = lead ? 0 : 1, end = trail ? pl + 2 : pl + 1;
    size_t si = 0, star_p = (size_t)-1, star_s = 0;

    for (;;) {
        if (pi < end) {
            bool is_pct, is_us = false;
            size_t next = pi;
            uint32_t pc = 0;
            if (pi == 0 || pi == pl + 1) {
                is_pct = true;
                next = pi + 1;
            } else {
                size_t k = pi - 1;
                pc = u8read(p, pl, &k);
                is_pct = pc == '%';
                is_us = pc == '_';
                next = k + 1;
            }
            if (is_pct) {
                /* collapse, remember the star */
                star_p = next;
                star_s = si;
                pi = next;
                continue;
            }
            if (si < sl) {
                size_t k = si;
                uint32_t sc = u8read(s, sl, &k);
                bool eq = is_us || (pc < 0x80 && sc < 0x80
                                        ? ascii_lower(pc) == ascii_lower(sc)
                                        : pc == sc);
                if (eq) {
                    pi = next;
                    si = k;
                    continue;
                }
            }
        } else if (si == sl) {
            return true;
        }
        /* mismatch (or pattern exhausted with input left) */
        if (star_p == (size_t)-1 || star_s >= sl)
            return false;
        size_t k = star_s;
        (void)u8read(s, sl, &k);
        star_s = k;
        si = k;
        pi = star_p;
    }
}

bool idx_like(const char *pat, size_t plen, const char *s, size_t slen)
{
    return like_impl((const unsigned char *)pat, plen, false, false,
                     (const unsigned char *)s, slen);
}

/* v LIKE '%w%'.  A pure-ASCII w without '%'/'_' is a plain ASCII
 * case-insensitive byte search: an ASCII byte is a character of its own in
 * any UTF-8 (u8read never swallows one), so it decides the same. */
static bool like_has(const struct idx_str *w, const char *v, size_t vlen)
{
    const unsigned char *p = (const unsigned char *)w->p;
    const unsigned char *s = (const unsigned char *)v;
    size_t n = w->len;
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 0x80 || p[i] == '%' || p[i] == '_')
            return like_impl(p, n, true, true, s, vlen);
    if (n == 0)
        return true;
    if (n > vlen)
        return false;
    for (size_t i = 0; i + n <= vlen; i++) {
        size_t k = 0;
        while (k < n && ascii_lower(s[i + k]) == ascii_lower(p[k]))
            k++;
        if (k == n)
            return true;
    }
    return false;
}

/* ---- Match contexts ------------------------------------------------ */

static const struct kv_entity *mem_lookup(struct idx_match_ctx *ctx,
                                          uint8_t type, uint64_t id)
{
    for (size_t i = 0; i < ctx->n_ents; i++)
        if (ctx->ents[i].type == type && ctx->ents[i].id == id)
            return &ctx->ents[i];
    return NULL;
}

void idx_match_ctx_mem(struct idx_match_ctx *ctx, const struct kv_entity *ents,
                       size_t n)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->lookup = mem_lookup;
    ctx->ents = ents;
    ctx->n_ents = n;
}

static const struct kv_entity *kv_lookup(struct idx_match_ctx *ctx,
                                         uint8_t type, uint64_t id)
{
    for (size_t i = 0; i < ctx->n_kept; i++)
        if (ctx->kept[i].type == type && ctx->kept[i].id == id)
            return &ctx->kept[i];
    if (ctx->n_kept == ctx->cap_kept) {
        size_t cap = ctx->cap_kept ? ctx->cap_kept * 2 : 16;
        struct kv_entity *k = cm_realloc(ctx->kept, cap * sizeof *k);
        if (!k) {
            if (ctx->err == CM_OK)
                ctx->err = CM_NOMEM;
            return NULL;
        }
        ctx->kept = k;
        ctx->cap_kept = cap;
    }
    struct kv_entity *e = &ctx->kept[ctx->n_kept];
    memset(e, 0, sizeof *e);
    enum cm_status st = kv_entity_get(ctx->txn, type, id, e);
    if (st != CM_OK) {
        kv_entity_fini(e);
        if (st != CM_NOTFOUND && ctx->err == CM_OK)
            ctx->err = st;
        return NULL;
    }
    ctx->n_kept++;
    return e;
}

void idx_match_ctx_kv(struct idx_match_ctx *ctx, struct kv_txn *t)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->lookup = kv_lookup;
    ctx->txn = t;
}

void idx_match_ctx_fini(struct idx_match_ctx *ctx)
{
    if (!ctx)
        return;
    for (size_t i = 0; i < ctx->n_kept; i++)
        kv_entity_fini(&ctx->kept[i]);
    cm_free(ctx->kept);
    ctx->kept = NULL;
    ctx->n_kept = ctx->cap_kept = 0;
}

/* ---- String criteria ----------------------------------------------- */

static bool is_blank(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != ' ')
            return false; /* SQLite TRIM() removes spaces only */
    return true;
}

static bool regex_hit(const regex_t *re, const char *v, size_t n,
                      struct idx_match_ctx *ctx)
{
    char small[256];
    char *buf = small;
    if (n >= sizeof small) {
        buf = cm_malloc(n + 1);
        if (!buf) {
            if (ctx && ctx->err == CM_OK)
                ctx->err = CM_NOMEM;
            return false;
        }
    }
    memcpy(buf, v, n);
    buf[n] = '\0';
    bool m = regexec(re, buf, 0, NULL, 0) == 0;
    if (buf != small)
        cm_free(buf);
    return m;
}

/* The string predicate of c on one value (v == NULL: SQL NULL). */
static bool str_pred(const struct idx_crit *c, const char *v, size_t n,
                     struct idx_match_ctx *ctx)
{
    switch (c->mod) {
    case IDX_MOD_EQUALS: return v && idx_like(c->str.p, c->str.len, v, n);
    case IDX_MOD_NOT_EQUALS: return v && !idx_like(c->str.p, c->str.len, v, n);
    case IDX_MOD_INCLUDES:
        if (!v)
            return false;
        for (size_t i = 0; i < c->n_words; i++)
            if (like_has(&c->words[i], v, n))
                return true;
        return false;
    case IDX_MOD_EXCLUDES:
        if (!v)
            return false;
        for (size_t i = 0; i < c->n_words; i++)
            if (like_has(&c->words[i], v, n))
                return false;
        return true;
    case IDX_MOD_MATCHES_REGEX: return v && regex_hit(c->re, v, n, ctx);
    case IDX_MOD_NOT_MATCHES_REGEX: return !v || !regex_hit(c->re, v, n, ctx);
    case IDX_MOD_IS_NULL: return !v || is_blank(v, n);
    case IDX_MOD_NOT_NULL: return v && !is_blank(v, n);
    default: return false;
    }
}

static bool str_pred_kv(const struct idx_crit *c, struct kv_str s,
                        struct idx_match_ctx *ctx)
{
    return str_pred(c, s.p, s.len, ctx);
}

/* A column reached through an INNER join except for IS_NULL (codecs,
 * fingerprints): NULL matches IS_NULL only. */
static bool str_pred_inner(const struct idx_crit *c, struct kv_str s,
                           struct idx_match_ctx *ctx)
{
    if (!s.p)
        return c->mod == IDX_MOD_IS_NULL;
    return str_pred_kv(c, s, ctx);
}

static const struct kv_file *primary(const struct kv_scene *sc)
{
    return sc->n_files ? &sc->files[0] : NULL;
}

static bool match_urls(const struct idx_crit *c, const struct kv_scene *sc,
                       struct idx_match_ctx *ctx)
{
    if (c->mod == IDX_MOD_EXCLUDES) { /* NOT IN (... LIKE '%value%') */
        for (uint32_t i = 0; i < sc->n_urls; i++)
            if (sc->urls[i].p &&
                like_has(&c->str, sc->urls[i].p, sc->urls[i].len))
                return false;
        return true;
    }
    if (sc->n_urls == 0)
        return str_pred(c, NULL, 0, ctx);
    for (uint32_t i = 0; i < sc->n_urls; i++)
        if (str_pred_kv(c, sc->urls[i], ctx))
            return true;
    return false;
}

static bool match_captions(const struct idx_crit *c, const struct kv_scene *sc,
                           struct idx_match_ctx *ctx)
{
    if (c->mod == IDX_MOD_EXCLUDES) { /* NOT IN (... LIKE value) */
        for (uint32_t i = 0; i < sc->n_captions; i++) {
            struct kv_str l = sc->captions[i].language_code;
            if (l.p && idx_like(c->str.p, c->str.len, l.p, l.len))
                return false;
        }
        return true;
    }
    if (sc->n_captions == 0)
        return str_pred(c, NULL, 0, ctx);
    for (uint32_t i = 0; i < sc->n_captions; i++)
        if (str_pred_kv(c, sc->captions[i].language_code, ctx))
            return true;
    return false;
}

static bool match_stash_id(const struct idx_crit *c, const struct kv_scene *sc,
                           struct idx_match_ctx *ctx)
{
    bool any_row = false;
    for (uint32_t i = 0; i < sc->n_stash_ids; i++) {
        const struct kv_stash_id *s = &sc->stash_ids[i];
        if (c->endpoint.p && c->endpoint.len > 0 &&
            !(s->endpoint.p && s->endpoint.len == c->endpoint.len &&
              memcmp(s->endpoint.p, c->endpoint.p, c->endpoint.len) == 0))
            continue;
        any_row = true;
        if (str_pred_kv(c, s->stash_id, ctx))
            return true;
    }
    if (!any_row)
        return str_pred(c, NULL, 0, ctx);
    return false;
}

static bool match_string(const struct idx_crit *c, const struct kv_scene *sc,
                         struct idx_match_ctx *ctx)
{
    const struct kv_file *f = primary(sc);
    struct kv_str null = {NULL, 0};
    switch (c->field) {
    case IDX_F_TITLE: return str_pred_kv(c, sc->title, ctx);
    case IDX_F_CODE: return str_pred_kv(c, sc->code, ctx);
    case IDX_F_DETAILS: return str_pred_kv(c, sc->details, ctx);
    case IDX_F_DIRECTOR: return str_pred_kv(c, sc->director, ctx);
    case IDX_F_PATH: return f && str_pred_kv(c, f->path, ctx);
    case IDX_F_URL: return match_urls(c, sc, ctx);
    case IDX_F_CAPTIONS: return match_captions(c, sc, ctx);
    case IDX_F_VIDEO_CODEC:
        return str_pred_inner(c, f ? f->video_codec : null, ctx);
    case IDX_F_AUDIO_CODEC:
        return str_pred_inner(c, f ? f->audio_codec : null, ctx);
    case IDX_F_OSHASH: return str_pred_inner(c, f ? f->oshash : null, ctx);
    case IDX_F_CHECKSUM: return str_pred_inner(c, f ? f->md5 : null, ctx);
    default: return false;
    }
}

/* ---- Numbers ------------------------------------------------------- */

/* Stash's getIntWhereClause on a value that may be NULL. */
static bool int_pred(const struct idx_crit *c, bool has, int64_t v)
{
    switch (c->mod) {
    case IDX_MOD_IS_NULL: return !has;
    case IDX_MOD_NOT_NULL: return has;
    default: break;
    }
    if (!has)
        return false;
    switch (c->mod) {
    case IDX_MOD_EQUALS: return v == c->i;
    case IDX_MOD_NOT_EQUALS: return v != c->i;
    case IDX_MOD_GREATER_THAN: return v > c->i;
    case IDX_MOD_LESS_THAN: return v < c->i;
    case IDX_MOD_BETWEEN: return v >= c->i && v <= c->i2;
    case IDX_MOD_NOT_BETWEEN: return !(v >= c->i && v <= c->i2);
    default: return false;
    }
}

/* SQLite's CAST(real AS INTEGER): truncation, saturating. */
static int64_t cast_int(double d)
{
    if (isnan(d))
        return 0;
    if (d <= -9223372036854775808.0)
        return INT64_MIN;
    if (d >= 9223372036854775807.0)
        return INT64_MAX;
    return (int64_t)d;
}

/* SQLite's ROUND(x) (0 digits): adds 0.5 in doubles, then truncates. */
static double sqlite_round(double r)
{
    const double big = 9223372036854775807.0 - 1;
    if (r >= 0 && r < big)
        return (double)(int64_t)(r + 0.5);
    if (r < 0 && -r < big)
        return -(double)(int64_t)((-r) + 0.5);
    return r;
}

/* strftime('%Y.%m%d', date) as a REAL, from "YYYY[-MM[-DD]]" text; false
 * when the text is not such a date. */
static bool ymd_real(const char *s, size_t n, double *out)
{
    int y = 0, m = 1, d = 1;
    size_t i = 0;
    if (n < 4)
        return false;
    for (; i < 4; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        y = y * 10 + (s[i] - '0');
    }
    if (n >= 7 && s[4] == '-' && s[5] >= '0' && s[5] <= '9' && s[6] >= '0' &&
        s[6] <= '9') {
        m = (s[5] - '0') * 10 + (s[6] - '0');
        i = 7;
        if (n >= 10 && s[7] == '-' && s[8] >= '0' && s[8] <= '9' &&
            s[9] >= '0' && s[9] <= '9') {
            d = (s[8] - '0') * 10 + (s[9] - '0');
            i = 10;
        }
    }
    if (i != n || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%04d.%02d%02d", y, m, d);
    if (k <= 0 || (size_t)k >= sizeof buf)
        return false;
    *out = strtod(buf, NULL);
    return true;
}

static bool match_performer_age(const struct idx_crit *c,
                                const struct kv_scene *sc,
                                struct idx_match_ctx *ctx)
{
    char date[11];
    double sd, bd;
    if (!idx_date_text(sc->date, date) || !ymd_real(date, 10, &sd))
        return false;
    for (uint32_t i = 0; i < sc->n_performers; i++) {
        const struct kv_entity *p =
            ctx->lookup(ctx, KV_PERFORMER, sc->performers[i].id);
        if (!p || !p->birthdate.p ||
            !ymd_real(p->birthdate.p, p->birthdate.len, &bd))
            continue;
        if (int_pred(c, true, cast_int(sd - bd)))
            return true;
    }
    return false;
}

static bool match_int(const struct idx_crit *c, const struct kv_scene *sc,
                      struct idx_match_ctx *ctx)
{
    const struct kv_file *f = primary(sc);
    switch (c->field) {
    case IDX_F_ID: return int_pred(c, true, (int64_t)sc->id);
    case IDX_F_RATING100: return int_pred(c, sc->rating100 >= 0, sc->rating100);
    case IDX_F_O_COUNTER: return int_pred(c, true, sc->o_counter);
    case IDX_F_PLAY_COUNT: return int_pred(c, true, sc->play_count);
    case IDX_F_PLAY_DURATION:
        return int_pred(c, sc->play_duration >= 0, cast_int(sc->play_duration));
    case IDX_F_RESUME_TIME:
        return int_pred(c, sc->resume_time >= 0, cast_int(sc->resume_time));
    case IDX_F_DURATION:
        return int_pred(c, f != NULL, f ? cast_int(f->duration) : 0);
    case IDX_F_BITRATE: return int_pred(c, f != NULL, f ? f->bit_rate : 0);
    case IDX_F_FRAMERATE:
        return int_pred(c, f != NULL,
                        f ? cast_int(sqlite_round(f->frame_rate)) : 0);
    case IDX_F_FILE_COUNT: return int_pred(c, true, sc->n_files);
    case IDX_F_TAG_COUNT: return int_pred(c, true, sc->n_tags);
    case IDX_F_PERFORMER_COUNT: return int_pred(c, true, sc->n_performers);
    case IDX_F_INTERACTIVE_SPEED:
        return int_pred(c, f && sc->interactive_speed >= 0,
                        sc->interactive_speed);
    case IDX_F_PERFORMER_AGE: return match_performer_age(c, sc, ctx);
    default: return false;
    }
}

/* Parses an unpadded hex phash; false when it is not hex. */
static bool phash_value(struct kv_str s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s.p || s.len == 0 || s.len > 16)
        return false;
    for (uint32_t i = 0; i < s.len; i++) {
        char ch = s.p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return false;
        v = (v << 4) | d;
    }
    *out = v;
    return true;
}

static bool match_phash(const struct idx_crit *c, const struct kv_scene *sc)
{
    const struct kv_file *f = primary(sc);
    uint64_t v;
    bool has = f && phash_value(f->phash, &v);
    if (!has)
        return c->mod == IDX_MOD_IS_NULL;
    int64_t a = (int64_t)v, b = c->i;
    switch (c->mod) {
    case IDX_MOD_EQUALS: return a == b;
    case IDX_MOD_NOT_EQUALS: return a != b;
    case IDX_MOD_GREATER_THAN: return a > b;
    case IDX_MOD_LESS_THAN: return a < b;
    case IDX_MOD_NOT_NULL: return true;
    default: return false;
    }
}

/* ---- Dates, resolution, misc --------------------------------------- */

static int text_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int r = memcmp(a, b, n);
    if (r != 0)
        return r;
    return an < bn ? -1 : (an > bn ? 1 : 0);
}

static bool date_pred(const struct idx_crit *c, const char *v, size_t n)
{
    bool null = !v || n == 0;
    if (c->mod == IDX_MOD_IS_NULL)
        return null;
    if (c->mod == IDX_MOD_NOT_NULL)
        return !null;
    if (!v)
        return false;
    int r = text_cmp(v, n, c->str.p, c->str.len);
    switch (c->mod) {
    case IDX_MOD_EQUALS: return r == 0;
    case IDX_MOD_NOT_EQUALS: return r != 0;
    case IDX_MOD_GREATER_THAN: return r > 0;
    case IDX_MOD_LESS_THAN: return r < 0;
    case IDX_MOD_BETWEEN:
    case IDX_MOD_NOT_BETWEEN: {
        bool in = r >= 0 && text_cmp(v, n, c->str2.p, c->str2.len) <= 0;
        return c->mod == IDX_MOD_BETWEEN ? in : !in;
    }
    default: return false;
    }
}

static bool match_date(const struct idx_crit *c, const struct kv_scene *sc)
{
    char d[11];
    switch (c->field) {
    case IDX_F_DATE:
        if (!idx_date_text(sc->date, d))
            return date_pred(c, NULL, 0);
        return date_pred(c, d, strlen(d));
    case IDX_F_CREATED_AT:
        return date_pred(c, sc->created_at.p, sc->created_at.len);
    case IDX_F_UPDATED_AT:
        return date_pred(c, sc->updated_at.p, sc->updated_at.len);
    case IDX_F_LAST_PLAYED_AT:
        if (!sc->last_played_at.p)
            return date_pred(c, IDX_NEVER_PLAYED_TEXT,
                             strlen(IDX_NEVER_PLAYED_TEXT));
        return date_pred(c, sc->last_played_at.p, sc->last_played_at.len);
    default: return false;
    }
}

static bool match_resolution(const struct idx_crit *c,
                             const struct kv_scene *sc)
{
    const struct kv_file *f = primary(sc);
    int32_t lo, hi;
    if (!f)
        return false;
    int32_t m = f->width < f->height ? f->width : f->height;
    idx_resolution_band(c->res, &lo, &hi);
    switch (c->mod) {
    case IDX_MOD_EQUALS: return m >= lo && m <= hi;
    case IDX_MOD_NOT_EQUALS: return !(m >= lo && m <= hi);
    case IDX_MOD_GREATER_THAN: return m > hi;
    case IDX_MOD_LESS_THAN: return m < lo;
    default: return false;
    }
}

static bool match_orientation(const struct idx_crit *c,
                              const struct kv_scene *sc)
{
    const struct kv_file *f = primary(sc);
    if (c->orient == 0)
        return true;
    if (!f)
        return false;
    if ((c->orient & IDX_ORIENT_LANDSCAPE) && f->width > f->height)
        return true;
    if ((c->orient & IDX_ORIENT_PORTRAIT) && f->width < f->height)
        return true;
    if ((c->orient & IDX_ORIENT_SQUARE) && f->width == f->height)
        return true;
    return false;
}

static bool match_missing(const struct idx_crit *c, const struct kv_scene *sc)
{
    const struct kv_file *f = primary(sc);
    uint64_t ph;
    switch (c->missing) {
    case IDX_MISS_URL: return sc->n_urls == 0;
    case IDX_MISS_GALLERIES: return sc->n_galleries == 0;
    case IDX_MISS_STUDIO: return sc->studio.id == 0;
    case IDX_MISS_GROUPS: return sc->n_groups == 0;
    case IDX_MISS_PERFORMERS: return sc->n_performers == 0;
    case IDX_MISS_DATE: return sc->date.year == 0;
    case IDX_MISS_TAGS: return sc->n_tags == 0;
    case IDX_MISS_STASH_ID: return sc->n_stash_ids == 0;
    case IDX_MISS_PHASH: return !f || !phash_value(f->phash, &ph);
    case IDX_MISS_TITLE:
        return !sc->title.p || is_blank(sc->title.p, sc->title.len);
    case IDX_MISS_CODE:
        return !sc->code.p || is_blank(sc->code.p, sc->code.len);
    case IDX_MISS_DETAILS:
        return !sc->details.p || is_blank(sc->details.p, sc->details.len);
    case IDX_MISS_DIRECTOR:
        return !sc->director.p || is_blank(sc->director.p, sc->director.len);
    case IDX_MISS_RATING: return sc->rating100 < 0;
    default: return false;
    }
}

static bool match_bool(const struct idx_crit *c, const struct kv_scene *sc)
{
    switch (c->field) {
    case IDX_F_ORGANIZED: return sc->organized == c->b;
    case IDX_F_INTERACTIVE: /* video_files.interactive: no file -> NULL */
        return sc->n_files > 0 && sc->interactive == c->b;
    case IDX_F_PERFORMER_FAVORITE: {
        bool any = false;
        for (uint32_t i = 0; i < sc->n_performers; i++)
            any = any || sc->performers[i].favorite;
        return c->b ? any : !any;
    }
    case IDX_F_STUDIO_FAVORITE:
        return sc->studio.id != 0 && sc->studio.favorite;
    case IDX_F_TAG_FAVORITE:
        for (uint32_t i = 0; i < sc->n_tags; i++)
            if (sc->tags[i].favorite)
                return true;
        return false;
    case IDX_F_HAS_MARKERS:
        return c->b ? sc->n_markers > 0 : sc->n_markers == 0;
    default: return false;
    }
}

/* ---- Sets and hierarchies ------------------------------------------ */

/* A small growable id list (the oracle's scratch). */
struct idlist {
    uint64_t *v;
    size_t n, cap;
    bool oom;
};

static void il_add(struct idlist *l, uint64_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        uint64_t *v = cm_realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
}

static bool il_has(const struct idlist *l, uint64_t id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == id)
            return true;
    return false;
}

/* Is `root` item itself or an ancestor of item within `depth` parent
 * steps (-1 = any)?  Breadth-first over parents with a visited list, so a
 * DAG (or a bad cycle) is walked once. */
static bool under(struct idx_match_ctx *ctx, uint8_t type, uint64_t item,
                  uint64_t root, int32_t depth)
{
    if (item == root)
        return true;
    if (depth == 0)
        return false;
    struct idlist seen = {0}, cur = {0}, next = {0};
    bool found = false;
    il_add(&cur, item);
    il_add(&seen, item);
    for (int32_t level = 0; cur.n && (depth < 0 || level < depth); level++) {
        next.n = 0;
        for (size_t i = 0; i < cur.n && !found; i++) {
            const struct kv_entity *e = ctx->lookup(ctx, type, cur.v[i]);
            for (uint32_t k = 0; e && k < e->n_parents; k++) {
                uint64_t p = e->parents[k];
                if (p == root) {
                    found = true;
                    break;
                }
                if (!il_has(&seen, p)) {
                    il_add(&seen, p);
                    il_add(&next, p);
                }
            }
        }
        if (found)
            break;
        struct idlist t = cur;
        cur = next;
        next = t;
    }
    if ((seen.oom || cur.oom || next.oom) && ctx->err == CM_OK)
        ctx->err = CM_NOMEM;
    cm_free(seen.v);
    cm_free(cur.v);
    cm_free(next.v);
    return found;
}

static void add_entity_tags(struct idx_match_ctx *ctx, struct idlist *s,
                            uint8_t type, uint64_t id)
{
    const struct kv_entity *e = ctx->lookup(ctx, type, id);
    for (uint32_t k = 0; e && k < e->n_tags; k++)
        il_add(s, e->tags[k]);
}

/* The scene's set S for a hierarchical/multi criterion. */
static void scene_set(const struct idx_crit *c, const struct kv_scene *sc,
                      struct idx_match_ctx *ctx, struct idlist *s)
{
    switch (c->field) {
    case IDX_F_TAGS:
        for (uint32_t i = 0; i < sc->n_tags; i++)
            il_add(s, sc->tags[i].id);
        if (c->inherited) {
            for (uint32_t i = 0; i < sc->n_performers; i++)
                add_entity_tags(ctx, s, KV_PERFORMER, sc->performers[i].id);
            if (sc->studio.id)
                add_entity_tags(ctx, s, KV_STUDIO, sc->studio.id);
            for (uint32_t i = 0; i < sc->n_groups; i++)
                add_entity_tags(ctx, s, KV_GROUP, sc->groups[i].id);
        }
        break;
    case IDX_F_PERFORMER_TAGS:
        for (uint32_t i = 0; i < sc->n_performers; i++)
            add_entity_tags(ctx, s, KV_PERFORMER, sc->performers[i].id);
        break;
    case IDX_F_STUDIOS:
        if (sc->studio.id)
            il_add(s, sc->studio.id);
        break;
    case IDX_F_GROUPS:
        for (uint32_t i = 0; i < sc->n_groups; i++)
            il_add(s, sc->groups[i].id);
        break;
    case IDX_F_PERFORMERS:
        for (uint32_t i = 0; i < sc->n_performers; i++)
            il_add(s, sc->performers[i].id);
        break;
    case IDX_F_GALLERIES:
        for (uint32_t i = 0; i < sc->n_galleries; i++)
            il_add(s, sc->galleries[i].id);
        break;
    case IDX_F_SCENE_IDS: il_add(s, sc->id); break;
    default: break;
    }
}

static uint8_t hier_type(enum idx_field f)
{
    switch (f) {
    case IDX_F_STUDIOS: return KV_STUDIO;
    case IDX_F_GROUPS: return KV_GROUP;
    case IDX_F_TAGS:
    case IDX_F_PERFORMER_TAGS: return KV_TAG;
    default: return 0; /* flat: depth is 0 */
    }
}

/* S ∩ expand(v) ≠ ∅ */
static bool set_hits(const struct idx_crit *c, const struct idlist *s,
                     uint64_t v, struct idx_match_ctx *ctx)
{
    uint8_t type = hier_type(c->field);
    int32_t depth = type ? c->depth : 0;
    for (size_t i = 0; i < s->n; i++)
        if (under(ctx, type, s->v[i], v, depth))
            return true;
    return false;
}

static bool performer_tags_null(const struct kv_scene *sc,
                                struct idx_match_ctx *ctx)
{
    if (sc->n_performers == 0)
        return true;
    for (uint32_t i = 0; i < sc->n_performers; i++) {
        const struct kv_entity *e =
            ctx->lookup(ctx, KV_PERFORMER, sc->performers[i].id);
        if (!e || e->n_tags == 0)
            return true;
    }
    return false;
}

static bool set_pred(const struct idx_crit *c, const struct idlist *s,
                     const struct kv_scene *sc, struct idx_match_ctx *ctx)
{
    if (c->mod == IDX_MOD_IS_NULL)
        return c->field == IDX_F_PERFORMER_TAGS ? performer_tags_null(sc, ctx)
                                                : s->n == 0;
    if (c->mod == IDX_MOD_NOT_NULL)
        return s->n > 0;
    for (size_t k = 0; k < c->n_excl; k++)
        if (set_hits(c, s, c->excl[k], ctx))
            return false;
    if (c->n_ids == 0)
        return true;
    switch (c->mod) {
    case IDX_MOD_INCLUDES:
        for (size_t k = 0; k < c->n_ids; k++)
            if (set_hits(c, s, c->ids[k], ctx))
                return true;
        return false;
    case IDX_MOD_INCLUDES_ALL:
        if (c->field == IDX_F_STUDIOS && c->n_ids != 1)
            return false;
        for (size_t k = 0; k < c->n_ids; k++)
            if (!set_hits(c, s, c->ids[k], ctx))
                return false;
        return true;
    case IDX_MOD_EQUALS:
        if (s->n != c->n_ids)
            return false;
        for (size_t k = 0; k < c->n_ids; k++)
            if (!il_has(s, c->ids[k]))
                return false;
        return true;
    default: return false; /* EXCLUDES was folded into excl by the parser */
    }
}

static bool match_set(const struct idx_crit *c, const struct kv_scene *sc,
                      struct idx_match_ctx *ctx)
{
    struct idlist s = {0};
    scene_set(c, sc, ctx, &s);
    if (s.oom && ctx->err == CM_OK)
        ctx->err = CM_NOMEM;
    bool r = set_pred(c, &s, sc, ctx);
    cm_free(s.v);
    return r;
}

/* ---- Filters ------------------------------------------------------- */

static bool crit_match(const struct idx_crit *c, const struct kv_scene *sc,
                       struct idx_match_ctx *ctx)
{
    switch (idx_field_kind(c->field)) {
    case IDX_K_CONST: return c->b;
    case IDX_K_STRING: return match_string(c, sc, ctx);
    case IDX_K_INT: return match_int(c, sc, ctx);
    case IDX_K_BOOL: return match_bool(c, sc);
    case IDX_K_RESOLUTION: return match_resolution(c, sc);
    case IDX_K_ORIENTATION: return match_orientation(c, sc);
    case IDX_K_DATE: return match_date(c, sc);
    case IDX_K_MISSING: return match_missing(c, sc);
    case IDX_K_HIER:
    case IDX_K_MULTI: return match_set(c, sc, ctx);
    case IDX_K_STASH_ID: return match_stash_id(c, sc, ctx);
    case IDX_K_PHASH: return match_phash(c, sc);
    }
    return false;
}

bool idx_filter_match(const struct idx_filter *f, const struct kv_scene *sc,
                      struct idx_match_ctx *ctx)
{
    if (!f)
        return true;
    bool own = true;
    for (size_t i = 0; i < f->n && own; i++)
        own = crit_match(&f->crits[i], sc, ctx);
    switch (f->sub_kind) {
    case IDX_SUB_NONE: return own;
    case IDX_SUB_AND: return own && idx_filter_match(f->sub, sc, ctx);
    case IDX_SUB_OR:
        if (f->n == 0)
            return idx_filter_match(f->sub, sc, ctx);
        return own || idx_filter_match(f->sub, sc, ctx);
    case IDX_SUB_NOT: return own && !idx_filter_match(f->sub, sc, ctx);
    }
    return false;
}

/* ---- filter.q ------------------------------------------------------ */

/* One row of Stash's q join: the five searched columns. */
struct qrow {
    struct kv_str col[5]; /* title, details, path, fingerprint, marker */
};

static bool row_has(const struct qrow *r, const struct idx_str *t)
{
    for (int k = 0; k < 5; k++)
        if (r->col[k].p && like_has(t, r->col[k].p, r->col[k].len))
            return true;
    return false;
}

/* peekd's extension: the scene-level name columns (code, studio name,
 * performer names, tag names), present on every row.  NULL ones are
 * skipped: a term that would match '' already matches COALESCE(title, ''),
 * so skipping them changes nothing for must_not. */
static bool names_has(const struct kv_scene *sc, const struct idx_str *t)
{
    if (sc->code.p && like_has(t, sc->code.p, sc->code.len))
        return true;
    if (sc->studio.id && sc->studio.name.p &&
        like_has(t, sc->studio.name.p, sc->studio.name.len))
        return true;
    for (uint32_t i = 0; i < sc->n_performers; i++)
        if (sc->performers[i].name.p &&
            like_has(t, sc->performers[i].name.p, sc->performers[i].name.len))
            return true;
    for (uint32_t i = 0; i < sc->n_tags; i++)
        if (sc->tags[i].name.p &&
            like_has(t, sc->tags[i].name.p, sc->tags[i].name.len))
            return true;
    return false;
}

/* The hits of each term on the name columns, computed once per scene
 * (the row loop below would otherwise repeat them per row). */
struct qnames {
    bool *must, *must_not, **any;
};

static bool term_has(const struct qrow *r, const struct idx_str *t,
                     bool name_hit)
{
    return name_hit || row_has(r, t);
}

static bool row_match(const struct idx_qspec *qs, const struct qrow *r,
                      const struct qnames *nh)
{
    for (size_t i = 0; i < qs->n_must; i++)
        if (!term_has(r, &qs->must[i], nh->must[i]))
            return false;
    for (size_t i = 0; i < qs->n_any; i++) {
        bool hit = false;
        for (size_t k = 0; k < qs->any_len[i] && !hit; k++)
            hit = term_has(r, &qs->any[i][k], nh->any[i][k]);
        if (!hit)
            return false;
    }
    for (size_t i = 0; i < qs->n_must_not; i++) {
        if (nh->must_not[i])
            return false;
        for (int k = 0; k < 5; k++) { /* COALESCE(col, '') NOT LIKE */
            struct kv_str c = r->col[k];
            if (like_has(&qs->must_not[i], c.p ? c.p : "", c.p ? c.len : 0))
                return false;
        }
    }
    return true;
}

/* The fingerprint rows of a file: oshash, md5, and phash as the decimal
 * text of the signed int64 Stash stores. */
static size_t file_fps(const struct kv_file *f, struct kv_str *out,
                       char phbuf[24])
{
    size_t n = 0;
    uint64_t ph;
    if (f->oshash.p)
        out[n++] = f->oshash;
    if (f->md5.p)
        out[n++] = f->md5;
    if (phash_value(f->phash, &ph)) {
        int k = snprintf(phbuf, 24, "%" PRId64, (int64_t)ph);
        if (k > 0 && k < 24)
            out[n++] = (struct kv_str){phbuf, (uint32_t)k};
    }
    return n;
}

/* The rows of Stash's join (files x fingerprints x markers), each with
 * the name hits of nh. */
static bool rows_match(const struct idx_qspec *qs, const struct kv_scene *sc,
                       const struct qnames *nh)
{
    struct qrow r = {{sc->title, sc->details, {NULL, 0}, {NULL, 0}, {NULL, 0}}};
    uint32_t nf = sc->n_files ? sc->n_files : 1;
    uint32_t nm = sc->n_markers ? sc->n_markers : 1;
    for (uint32_t fi = 0; fi < nf; fi++) {
        struct kv_str fps[3];
        char phbuf[24];
        size_t nfp = 0;
        r.col[2] = (struct kv_str){NULL, 0};
        if (sc->n_files) {
            r.col[2] = sc->files[fi].path;
            nfp = file_fps(&sc->files[fi], fps, phbuf);
        }
        size_t nfr = nfp ? nfp : 1;
        for (size_t pi = 0; pi < nfr; pi++) {
            r.col[3] = nfp ? fps[pi] : (struct kv_str){NULL, 0};
            for (uint32_t mi = 0; mi < nm; mi++) {
                r.col[4] = sc->n_markers ? sc->markers[mi].title
                                         : (struct kv_str){NULL, 0};
                if (row_match(qs, &r, nh))
                    return true;
            }
        }
    }
    return false;
}

/* Terms per kind held in fixed arrays (the parser caps q at CM_MAX_Q_LEN
 * bytes, so a query has at most CM_MAX_Q_LEN / 2 + 1 terms). */
#define QN_MAX (CM_MAX_Q_LEN / 2 + 2)

bool idx_q_match(const struct idx_query *q, const struct kv_scene *sc)
{
    const struct idx_qspec *qs = &q->qs;
    bool must[QN_MAX], must_not[QN_MAX], anyb[QN_MAX];
    bool *anyp[QN_MAX];
    struct qnames nh = {must, must_not, anyp};
    size_t na = 0;

    if (qs->n_must == 0 && qs->n_must_not == 0 && qs->n_any == 0)
        return true;
    assert(qs->n_must <= QN_MAX && qs->n_must_not <= QN_MAX &&
           qs->n_any <= QN_MAX);
    for (size_t i = 0; i < qs->n_must; i++)
        must[i] = names_has(sc, &qs->must[i]);
    for (size_t i = 0; i < qs->n_must_not; i++) {
        must_not[i] = names_has(sc, &qs->must_not[i]);
        if (must_not[i])
            return false; /* a name has an excluded word: no row passes */
    }
    for (size_t i = 0; i < qs->n_any; i++) {
        assert(na + qs->any_len[i] <= QN_MAX);
        anyp[i] = anyb + na;
        for (size_t k = 0; k < qs->any_len[i]; k++)
            anyb[na++] = names_has(sc, &qs->any[i][k]);
    }
    return rows_match(qs, sc, &nh);
}
