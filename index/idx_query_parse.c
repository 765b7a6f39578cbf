/*
 * idx_query_parse.c - strict parser of Peek's/Stash's scene query JSON
 * (FindFilterType + SceneFilterType + Peek's additions) into the AST of
 * idx_filter.h.
 *
 * Strict means: every key must be known, every value must have the right
 * type, every modifier must be legal for its criterion; anything else is
 * CM_INVALID with err->field = the dotted path of the offending member
 * ("scene_filter.AND.tags.value[2]") and a message saying what is wrong.
 * Defaults (modifier omitted, direction, per_page, sort) follow Peek, the
 * client peekd serves; see docs/FILTERS.md for the full table.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "index/idx.h"
#include "index/idx_filter.h"

#define M(x) (1u << IDX_MOD_##x)
#define STR_MODS                                                               \
    (M(EQUALS) | M(NOT_EQUALS) | M(INCLUDES) | M(EXCLUDES) |                   \
     M(MATCHES_REGEX) | M(NOT_MATCHES_REGEX) | M(IS_NULL) | M(NOT_NULL))
#define INT_MODS                                                               \
    (M(EQUALS) | M(NOT_EQUALS) | M(GREATER_THAN) | M(LESS_THAN) | M(BETWEEN) | \
     M(NOT_BETWEEN) | M(IS_NULL) | M(NOT_NULL))
#define SET_MODS                                                               \
    (M(INCLUDES) | M(INCLUDES_ALL) | M(EXCLUDES) | M(EQUALS) | M(IS_NULL) |    \
     M(NOT_NULL))
#define NO_DEFAULT IDX_MOD_COUNT

/* Longest accepted string criterion value (not a regex). */
#define MAX_VALUE_LEN CM_MAX_URL_LEN

/* How a SceneFilterType key is read. */
enum vkind {
    V_STRING,
    V_PHASH,
    V_INT,
    V_BOOL,
    V_RES,
    V_ORIENT,
    V_DATE,
    V_TS,
    V_HAS_MARKERS,
    V_MISSING,
    V_HIER,
    V_MULTI,
    V_MOVIES,
    V_SCENE_IDS,
    V_STASH_ID,
    V_INSTANCE,
    V_FAVORITE,
    V_PEEK_FAV,
    V_UNSUPPORTED,
};

struct fspec {
    const char *key;
    enum idx_field field;
    enum vkind vk;
    unsigned mods;    /* allowed modifiers */
    enum idx_mod def; /* when "modifier" is omitted (NO_DEFAULT: required) */
};

static const struct fspec specs[] = {
    {"id", IDX_F_ID, V_INT, INT_MODS, IDX_MOD_EQUALS},
    {"title", IDX_F_TITLE, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"code", IDX_F_CODE, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"details", IDX_F_DETAILS, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"director", IDX_F_DIRECTOR, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"path", IDX_F_PATH, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"url", IDX_F_URL, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"captions", IDX_F_CAPTIONS, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"video_codec", IDX_F_VIDEO_CODEC, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"audio_codec", IDX_F_AUDIO_CODEC, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"oshash", IDX_F_OSHASH, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"checksum", IDX_F_CHECKSUM, V_STRING, STR_MODS, IDX_MOD_INCLUDES},
    {"phash", IDX_F_PHASH, V_PHASH,
     M(EQUALS) | M(NOT_EQUALS) | M(GREATER_THAN) | M(LESS_THAN) | M(IS_NULL) |
         M(NOT_NULL),
     IDX_MOD_EQUALS},
    {"rating100", IDX_F_RATING100, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"o_counter", IDX_F_O_COUNTER, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"play_count", IDX_F_PLAY_COUNT, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"play_duration", IDX_F_PLAY_DURATION, V_INT, INT_MODS,
     IDX_MOD_GREATER_THAN},
    {"resume_time", IDX_F_RESUME_TIME, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"duration", IDX_F_DURATION, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"bitrate", IDX_F_BITRATE, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"framerate", IDX_F_FRAMERATE, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"file_count", IDX_F_FILE_COUNT, V_INT, INT_MODS, IDX_MOD_GREATER_THAN},
    {"interactive_speed", IDX_F_INTERACTIVE_SPEED, V_INT, INT_MODS,
     IDX_MOD_GREATER_THAN},
    {"tag_count", IDX_F_TAG_COUNT, V_INT, INT_MODS, IDX_MOD_EQUALS},
    {"performer_count", IDX_F_PERFORMER_COUNT, V_INT, INT_MODS, IDX_MOD_EQUALS},
    {"performer_age", IDX_F_PERFORMER_AGE, V_INT, INT_MODS, IDX_MOD_EQUALS},
    {"organized", IDX_F_ORGANIZED, V_BOOL, 0, NO_DEFAULT},
    {"interactive", IDX_F_INTERACTIVE, V_BOOL, 0, NO_DEFAULT},
    {"performer_favorite", IDX_F_PERFORMER_FAVORITE, V_BOOL, 0, NO_DEFAULT},
    {"studio_favorite", IDX_F_STUDIO_FAVORITE, V_PEEK_FAV, 0, NO_DEFAULT},
    {"tag_favorite", IDX_F_TAG_FAVORITE, V_PEEK_FAV, 0, NO_DEFAULT},
    {"favorite", IDX_F_CONST, V_FAVORITE, 0, NO_DEFAULT},
    {"instance_id", IDX_F_CONST, V_INSTANCE, 0, NO_DEFAULT},
    {"resolution", IDX_F_RESOLUTION, V_RES,
     M(EQUALS) | M(NOT_EQUALS) | M(GREATER_THAN) | M(LESS_THAN),
     IDX_MOD_EQUALS},
    {"orientation", IDX_F_ORIENTATION, V_ORIENT, M(INCLUDES) | M(EQUALS),
     IDX_MOD_INCLUDES},
    {"date", IDX_F_DATE, V_DATE, INT_MODS, IDX_MOD_GREATER_THAN},
    {"created_at", IDX_F_CREATED_AT, V_TS, INT_MODS, IDX_MOD_GREATER_THAN},
    {"updated_at", IDX_F_UPDATED_AT, V_TS, INT_MODS, IDX_MOD_GREATER_THAN},
    {"last_played_at", IDX_F_LAST_PLAYED_AT, V_TS, INT_MODS,
     IDX_MOD_GREATER_THAN},
    {"has_markers", IDX_F_HAS_MARKERS, V_HAS_MARKERS, 0, NO_DEFAULT},
    {"is_missing", IDX_F_IS_MISSING, V_MISSING, 0, NO_DEFAULT},
    {"studios", IDX_F_STUDIOS, V_HIER, SET_MODS | M(NOT_EQUALS),
     IDX_MOD_INCLUDES},
    {"tags", IDX_F_TAGS, V_HIER, SET_MODS, IDX_MOD_INCLUDES},
    {"groups", IDX_F_GROUPS, V_HIER, SET_MODS, IDX_MOD_INCLUDES},
    {"performer_tags", IDX_F_PERFORMER_TAGS, V_HIER, SET_MODS & ~M(EQUALS),
     IDX_MOD_INCLUDES},
    {"performers", IDX_F_PERFORMERS, V_MULTI, SET_MODS, IDX_MOD_INCLUDES},
    {"galleries", IDX_F_GALLERIES, V_MULTI, SET_MODS, IDX_MOD_INCLUDES},
    {"movies", IDX_F_GROUPS, V_MOVIES, SET_MODS, IDX_MOD_INCLUDES},
    {"ids", IDX_F_SCENE_IDS, V_SCENE_IDS, M(INCLUDES) | M(EXCLUDES),
     IDX_MOD_INCLUDES},
    {"stash_id_endpoint", IDX_F_STASH_ID_ENDPOINT, V_STASH_ID, STR_MODS,
     NO_DEFAULT},
    /* Stash fields peekd does not evaluate: a clear error, not a 200 with
     * wrong rows. */
    {"phash_distance", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"duplicated", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"stash_ids_endpoint", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"stash_id_count", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"custom_fields", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"galleries_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"performers_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"studios_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"tags_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"movies_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"groups_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"markers_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
    {"files_filter", IDX_F_CONST, V_UNSUPPORTED, 0, NO_DEFAULT},
};

struct pstate {
    struct idx_error *err;
    time_t now;
};

/* Sets the error (field = path[.key]) and returns CM_INVALID. */
__attribute__((format(printf, 4, 5))) static enum cm_status
perr(struct pstate *ps, const char *path, const char *key, const char *fmt, ...)
{
    if (ps->err) {
        if (key)
            snprintf(ps->err->field, sizeof ps->err->field, "%s.%s", path, key);
        else
            snprintf(ps->err->field, sizeof ps->err->field, "%s", path);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err->message, sizeof ps->err->message, fmt, ap);
        va_end(ap);
    }
    return CM_INVALID;
}

static void join_path(char *out, size_t n, const char *path, const char *key)
{
    snprintf(out, n, "%s.%s", path, key);
}

static bool is_null(const cJSON *j)
{
    return !j || cJSON_IsNull(j);
}

/* ---- Freeing ------------------------------------------------------- */

static void str_free(struct idx_str *s)
{
    cm_free(s->p);
    s->p = NULL;
    s->len = 0;
}

static void crit_fini(struct idx_crit *c)
{
    str_free(&c->str);
    str_free(&c->str2);
    str_free(&c->endpoint);
    for (size_t i = 0; i < c->n_words; i++)
        str_free(&c->words[i]);
    cm_free(c->words);
    if (c->re) {
        regfree(c->re);
        cm_free(c->re);
    }
    cm_free(c->ids);
    cm_free(c->excl);
    memset(c, 0, sizeof *c);
}

static void filter_free(struct idx_filter *f)
{
    while (f) {
        struct idx_filter *sub = f->sub;
        for (size_t i = 0; i < f->n; i++)
            crit_fini(&f->crits[i]);
        cm_free(f->crits);
        cm_free(f);
        f = sub;
    }
}

static void strs_free(struct idx_str *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        str_free(&v[i]);
    cm_free(v);
}

void idx_query_free(struct idx_query *q)
{
    if (!q)
        return;
    filter_free(q->filter);
    cm_free(q->q);
    strs_free(q->qs.must, q->qs.n_must);
    strs_free(q->qs.must_not, q->qs.n_must_not);
    for (size_t i = 0; i < q->qs.n_any; i++)
        strs_free(q->qs.any[i], q->qs.any_len[i]);
    cm_free(q->qs.any);
    cm_free(q->qs.any_len);
    cm_free(q->ids);
    cm_free(q);
}

/* ---- Small readers ------------------------------------------------- */

static enum cm_status dup_str(const char *p, size_t n, struct idx_str *out)
{
    out->p = cm_strndup(p, n);
    if (!out->p)
        return CM_NOMEM;
    out->len = n;
    return CM_OK;
}

/* Every member of obj must be in allowed[] (NULL-terminated), once. */
static enum cm_status check_keys(struct pstate *ps, const cJSON *obj,
                                 const char *path, const char *const *allowed)
{
    const cJSON *c;
    cJSON_ArrayForEach (c, obj) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = c->string && strcmp(c->string, allowed[i]) == 0;
        if (!ok)
            return perr(ps, path, c->string ? c->string : "?", "unknown field");
        for (const cJSON *d = c->next; d; d = d->next)
            if (d->string && strcmp(d->string, c->string) == 0)
                return perr(ps, path, c->string, "duplicate field");
    }
    return CM_OK;
}

static bool name_eq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

/* A JSON integer (or a string of one) in [lo, hi]. */
static enum cm_status read_int(struct pstate *ps, const cJSON *j,
                               const char *path, const char *key, int64_t lo,
                               int64_t hi, int64_t *out)
{
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) ||
            d != (double)(int64_t)d)
            return perr(ps, path, key, "must be an integer");
        *out = (int64_t)d;
    } else if (cJSON_IsString(j)) {
        const char *s = j->valuestring;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || isspace((unsigned char)s[0]))
            return perr(ps, path, key, "must be an integer");
        *out = v;
    } else {
        return perr(ps, path, key, "must be an integer");
    }
    if (*out < lo || *out > hi)
        return perr(ps, path, key, "out of range [%" PRId64 ", %" PRId64 "]",
                    lo, hi);
    return CM_OK;
}

/* A Stash id: number, "12" or Peek's "12:instanceId". */
static bool parse_id(const cJSON *j, uint64_t *out)
{
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
            return false;
        *out = (uint64_t)d;
        return true;
    }
    if (!cJSON_IsString(j))
        return false;
    const char *s = j->valuestring;
    size_t n = strcspn(s, ":");
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

static bool has_id(const uint64_t *v, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == id)
            return true;
    return false;
}

/* Appends the ids of JSON array arr (null = none) to *v (deduplicated).
 * *total counts ids against CM_MAX_FILTER_VALUES. */
static enum cm_status read_ids(struct pstate *ps, const cJSON *arr,
                               const char *path, const char *key, uint64_t **v,
                               size_t *n, size_t *total)
{
    if (is_null(arr))
        return CM_OK;
    if (!cJSON_IsArray(arr))
        return perr(ps, path, key, "must be an array of ids");
    size_t cnt = (size_t)cJSON_GetArraySize(arr);
    if (cnt > CM_MAX_FILTER_VALUES || *total + cnt > CM_MAX_FILTER_VALUES)
        return perr(ps, path, key, "more than %d ids", CM_MAX_FILTER_VALUES);
    *total += cnt;
    if (cnt == 0)
        return CM_OK;
    uint64_t *nv = cm_realloc(*v, (*n + cnt) * sizeof *nv);
    if (!nv)
        return CM_NOMEM;
    *v = nv;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach (e, arr) {
        uint64_t id;
        if (!parse_id(e, &id)) {
            char k[64];
            snprintf(k, sizeof k, "%s[%zu]", key, i);
            return perr(ps, path, k, "not an id (\"12\" or \"12:instance\")");
        }
        if (!has_id(*v, *n, id))
            (*v)[(*n)++] = id;
        i++;
    }
    return CM_OK;
}

static enum cm_status read_modifier(struct pstate *ps, const cJSON *obj,
                                    const char *path, const struct fspec *sp,
                                    enum idx_mod *out)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "modifier");
    if (is_null(m)) {
        if (sp->def == NO_DEFAULT)
            return perr(ps, path, "modifier", "modifier is required");
        *out = sp->def;
        return CM_OK;
    }
    if (!cJSON_IsString(m))
        return perr(ps, path, "modifier", "must be a CriterionModifier");
    for (int i = 0; i < IDX_MOD_COUNT; i++) {
        if (name_eq(m->valuestring, idx_mod_name((enum idx_mod)i))) {
            if (!(sp->mods & (1u << i)))
                return perr(ps, path, "modifier",
                            "modifier %s is not valid for %s",
                            idx_mod_name((enum idx_mod)i), sp->key);
            *out = (enum idx_mod)i;
            return CM_OK;
        }
    }
    return perr(ps, path, "modifier", "unknown modifier");
}

/* ---- Strings ------------------------------------------------------- */

static bool go_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
}

/* RE2's \s: no \v. */
static bool re2_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

static void trim(const char **p, size_t *n)
{
    while (*n && go_space(**p)) {
        (*p)++;
        (*n)--;
    }
    while (*n && go_space((*p)[*n - 1]))
        (*n)--;
}

static enum cm_status push_word(struct idx_crit *c, const char *p, size_t n)
{
    struct idx_str *w = cm_realloc(c->words, (c->n_words + 1) * sizeof *w);
    if (!w)
        return CM_NOMEM;
    c->words = w;
    enum cm_status st = dup_str(p, n, &c->words[c->n_words]);
    if (st == CM_OK)
        c->n_words++;
    return st;
}

/* Stash's getStringSearchClause word split (see idx_crit). */
static enum cm_status split_words(struct idx_crit *c)
{
    const char *p = c->str.p;
    size_t n = c->str.len;
    trim(&p, &n);
    const char *t = p;
    size_t tn = n;
    while (tn && *t == '"') {
        t++;
        tn--;
    }
    while (tn && t[tn - 1] == '"')
        tn--;
    if (tn != n) /* a quoted phrase */
        return push_word(c, t, tn);
    if (n == 0)
        return push_word(c, p, 0);
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && !re2_space(p[j]))
            j++;
        enum cm_status st = push_word(c, p + i, j - i);
        if (st != CM_OK)
            return st;
        i = j;
        while (i < n && re2_space(p[i]))
            i++;
    }
    return CM_OK;
}

static enum cm_status compile_regex(struct pstate *ps, struct idx_crit *c,
                                    const char *path)
{
    if (c->str.len > CM_MAX_REGEX_LEN)
        return perr(ps, path, "value", "regex longer than %d bytes",
                    CM_MAX_REGEX_LEN);
    c->re = cm_calloc(1, sizeof *c->re);
    if (!c->re)
        return CM_NOMEM;
    int rc = regcomp(c->re, c->str.p, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[160];
        regerror(rc, c->re, msg, sizeof msg);
        cm_free(c->re);
        c->re = NULL;
        if (rc == REG_ESPACE)
            return CM_NOMEM;
        return perr(ps, path, "value", "invalid regex: %s", msg);
    }
    return CM_OK;
}

/* Fills c->str from s and prepares words / regex for c->mod. */
static enum cm_status string_value(struct pstate *ps, struct idx_crit *c,
                                   const char *s, const char *path)
{
    size_t n = strlen(s);
    if (n > MAX_VALUE_LEN)
        return perr(ps, path, "value", "longer than %d bytes",
                    (int)MAX_VALUE_LEN);
    enum cm_status st = dup_str(s, n, &c->str);
    if (st != CM_OK)
        return st;
    if (c->mod == IDX_MOD_INCLUDES || c->mod == IDX_MOD_EXCLUDES)
        return split_words(c);
    if (c->mod == IDX_MOD_MATCHES_REGEX || c->mod == IDX_MOD_NOT_MATCHES_REGEX)
        return compile_regex(ps, c, path);
    return CM_OK;
}

static enum cm_status parse_string(struct pstate *ps, const cJSON *obj,
                                   const char *path, struct idx_crit *c)
{
    static const char *const keys[] = {"value", "modifier", NULL};
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "value");
    if (is_null(v)) {
        if (c->mod != IDX_MOD_IS_NULL && c->mod != IDX_MOD_NOT_NULL)
            return perr(ps, path, "value", "value is required");
        return string_value(ps, c, "", path);
    }
    if (!cJSON_IsString(v))
        return perr(ps, path, "value", "must be a string");
    return string_value(ps, c, v->valuestring, path);
}

static enum cm_status parse_phash(struct pstate *ps, const cJSON *obj,
                                  const char *path, struct idx_crit *c)
{
    static const char *const keys[] = {"value", "modifier", NULL};
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "value");
    if (c->mod == IDX_MOD_IS_NULL || c->mod == IDX_MOD_NOT_NULL)
        if (is_null(v))
            return CM_OK;
    if (!cJSON_IsString(v))
        return perr(ps, path, "value", "must be a hex phash string");
    const char *s = v->valuestring;
    size_t n = strlen(s);
    uint64_t x = 0;
    if (n == 0 || n > 16)
        return perr(ps, path, "value", "must be a hex phash string");
    for (size_t i = 0; i < n; i++) {
        int d = isxdigit((unsigned char)s[i])
                    ? (isdigit((unsigned char)s[i])
                           ? s[i] - '0'
                           : tolower((unsigned char)s[i]) - 'a' + 10)
                    : -1;
        if (d < 0)
            return perr(ps, path, "value", "must be a hex phash string");
        x = (x << 4) | (uint64_t)d;
    }
    c->i = (int64_t)x;
    return CM_OK;
}

/* ---- Numbers and dates --------------------------------------------- */

static enum cm_status parse_int(struct pstate *ps, const cJSON *obj,
                                const char *path, struct idx_crit *c)
{
    static const char *const keys[] = {"value", "value2", "modifier", NULL};
    const int64_t lim = 9007199254740992LL;
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "value");
    const cJSON *v2 = cJSON_GetObjectItemCaseSensitive(obj, "value2");
    if (is_null(v)) {
        if (c->mod != IDX_MOD_IS_NULL && c->mod != IDX_MOD_NOT_NULL)
            return perr(ps, path, "value", "value is required");
    } else {
        st = read_int(ps, v, path, "value", -lim, lim, &c->i);
        if (st != CM_OK)
            return st;
    }
    c->i2 = 0; /* Stash: value2 defaults to 0 */
    if (!is_null(v2))
        st = read_int(ps, v2, path, "value2", -lim, lim, &c->i2);
    return st;
}

/* Stash's models.ParseDate for "YYYY", "YYYY-MM", "YYYY-MM-DD" ->
 * "YYYY-MM-DD" (first day of a fuzzy date). */
static bool norm_date(const char *s, char out[11])
{
    size_t n = strlen(s);
    int y, m = 1, d = 1;
    if (n != 4 && n != 7 && n != 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? s[i] != '-' : !isdigit((unsigned char)s[i]))
            return false;
    }
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
        (s[3] - '0');
    if (n >= 7)
        m = (s[5] - '0') * 10 + (s[6] - '0');
    if (n == 10)
        d = (s[8] - '0') * 10 + (s[9] - '0');
    static const int mdays[12] = {31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    return snprintf(out, 11, "%04d-%02d-%02d", y, m, d) == 10;
}

/* Go's time.Now().AddDate(0, 0, 1).Format(time.RFC3339), local zone. */
static void tomorrow_rfc3339(time_t now, char out[48])
{
    struct tm tm;
    time_t t = now + 86400;
    out[0] = '\0';
    if (!localtime_r(&t, &tm))
        return;
    char base[24];
    if (strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return;
    long off = tm.tm_gmtoff;
    if (off == 0) {
        snprintf(out, 48, "%sZ", base);
        return;
    }
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    int h = (int)((off / 3600) % 100), mi = (int)((off / 60) % 60);
    snprintf(out, 48, "%s%c%02d:%02d", base, sign, h, mi);
}

static enum cm_status parse_date(struct pstate *ps, const cJSON *obj,
                                 const char *path, struct idx_crit *c,
                                 bool fuzzy)
{
    static const char *const keys[] = {"value", "value2", "modifier", NULL};
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "value");
    const cJSON *v2 = cJSON_GetObjectItemCaseSensitive(obj, "value2");
    if (c->mod == IDX_MOD_IS_NULL || c->mod == IDX_MOD_NOT_NULL) {
        if (!is_null(v) && !cJSON_IsString(v))
            return perr(ps, path, "value", "must be a string");
        return dup_str("", 0, &c->str);
    }
    if (!cJSON_IsString(v))
        return perr(ps, path, "value",
                    is_null(v) ? "value is required" : "must be a string");
    if (strlen(v->valuestring) > 64)
        return perr(ps, path, "value", "longer than 64 bytes");
    if (fuzzy) {
        char d[11];
        if (!norm_date(v->valuestring, d))
            return perr(ps, path, "value",
                        "must be a date YYYY, YYYY-MM or YYYY-MM-DD");
        st = dup_str(d, 10, &c->str);
    } else {
        st = dup_str(v->valuestring, strlen(v->valuestring), &c->str);
    }
    if (st != CM_OK)
        return st;
    if (!is_null(v2)) {
        if (!cJSON_IsString(v2))
            return perr(ps, path, "value2", "must be a string");
        if (strlen(v2->valuestring) > 64)
            return perr(ps, path, "value2", "longer than 64 bytes");
        return dup_str(v2->valuestring, strlen(v2->valuestring), &c->str2);
    }
    char t[48];
    tomorrow_rfc3339(ps->now, t);
    return dup_str(t, strlen(t), &c->str2);
}

/* ---- Enums --------------------------------------------------------- */

static const struct {
    const char *name, *label;
    enum idx_resolution r;
} res_names[] = {
    {"VERY_LOW", "144p", IDX_RES_VERY_LOW},
    {"LOW", "240p", IDX_RES_LOW},
    {"R360P", "360p", IDX_RES_R360P},
    {"STANDARD", "480p", IDX_RES_STANDARD},
    {"WEB_HD", "540p", IDX_RES_WEB_HD},
    {"STANDARD_HD", "720p", IDX_RES_STANDARD_HD},
    {"FULL_HD", "1080p", IDX_RES_FULL_HD},
    {"QUAD_HD", "1440p", IDX_RES_QUAD_HD},
    {"VR_HD", "1920p", IDX_RES_VR_HD},
    {"FOUR_K", "4k", IDX_RES_FOUR_K},
    {"FIVE_K", "5k", IDX_RES_FIVE_K},
    {"SIX_K", "6k", IDX_RES_SIX_K},
    {"SEVEN_K", "7k", IDX_RES_SEVEN_K},
    {"EIGHT_K", "8k", IDX_RES_EIGHT_K},
    {"HUGE", "8k+", IDX_RES_HUGE},
};

static enum cm_status parse_res(struct pstate *ps, const cJSON *obj,
                                const char *path, struct idx_crit *c)
{
    static const char *const keys[] = {"value", "modifier", NULL};
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "value");
    if (!cJSON_IsString(v))
        return perr(ps, path, "value", "must be a ResolutionEnum");
    for (size_t i = 0; i < sizeof res_names / sizeof res_names[0]; i++) {
        if (strcmp(v->valuestring, res_names[i].name) == 0 ||
            name_eq(v->valuestring, res_names[i].label)) {
            c->res = res_names[i].r;
            return CM_OK;
        }
    }
    return perr(ps, path, "value", "unknown resolution");
}

static enum cm_status parse_orient(struct pstate *ps, const cJSON *obj,
                                   const char *path, struct idx_crit *c)
{
    static const char *const keys[] = {"value", "modifier", NULL};
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "value");
    if (is_null(v))
        return CM_OK;
    if (!cJSON_IsArray(v))
        return perr(ps, path, "value", "must be an array of orientations");
    const cJSON *e;
    size_t i = 0;
    cJSON_ArrayForEach (e, v) {
        char k[32];
        snprintf(k, sizeof k, "value[%zu]", i++);
        if (!cJSON_IsString(e))
            return perr(ps, path, k, "must be LANDSCAPE, PORTRAIT or SQUARE");
        if (strcmp(e->valuestring, "LANDSCAPE") == 0)
            c->orient |= IDX_ORIENT_LANDSCAPE;
        else if (strcmp(e->valuestring, "PORTRAIT") == 0)
            c->orient |= IDX_ORIENT_PORTRAIT;
        else if (strcmp(e->valuestring, "SQUARE") == 0)
            c->orient |= IDX_ORIENT_SQUARE;
        else
            return perr(ps, path, k, "must be LANDSCAPE, PORTRAIT or SQUARE");
    }
    return CM_OK;
}

static const struct {
    const char *name;
    enum idx_missing m;
} missing_names[] = {
    {"url", IDX_MISS_URL},           {"galleries", IDX_MISS_GALLERIES},
    {"studio", IDX_MISS_STUDIO},     {"movie", IDX_MISS_GROUPS},
    {"group", IDX_MISS_GROUPS},      {"performers", IDX_MISS_PERFORMERS},
    {"date", IDX_MISS_DATE},         {"tags", IDX_MISS_TAGS},
    {"stash_id", IDX_MISS_STASH_ID}, {"phash", IDX_MISS_PHASH},
    {"title", IDX_MISS_TITLE},       {"code", IDX_MISS_CODE},
    {"details", IDX_MISS_DETAILS},   {"director", IDX_MISS_DIRECTOR},
    {"rating", IDX_MISS_RATING},
};

/* ---- Sets ---------------------------------------------------------- */

static enum cm_status parse_set(struct pstate *ps, const cJSON *obj,
                                const char *path, const struct fspec *sp,
                                struct idx_crit *c)
{
    static const char *const hier_keys[] = {"value", "modifier", "depth",
                                            "excludes", NULL};
    static const char *const tag_keys[] = {"value",    "modifier",  "depth",
                                           "excludes", "inherited", NULL};
    static const char *const multi_keys[] = {"value", "modifier", "excludes",
                                             NULL};
    const char *const *keys = multi_keys;
    if (sp->vk == V_HIER)
        keys = sp->field == IDX_F_TAGS ? tag_keys : hier_keys;
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;

    size_t total = 0;
    st = read_ids(ps, cJSON_GetObjectItemCaseSensitive(obj, "value"), path,
                  "value", &c->ids, &c->n_ids, &total);
    if (st == CM_OK)
        st = read_ids(ps, cJSON_GetObjectItemCaseSensitive(obj, "excludes"),
                      path, "excludes", &c->excl, &c->n_excl, &total);
    if (st != CM_OK)
        return st;

    const cJSON *d = cJSON_GetObjectItemCaseSensitive(obj, "depth");
    if (!is_null(d)) {
        int64_t depth;
        st = read_int(ps, d, path, "depth", -1, INT32_MAX, &depth);
        if (st != CM_OK)
            return st;
        c->depth = (int32_t)depth;
    }
    const cJSON *inh = cJSON_GetObjectItemCaseSensitive(obj, "inherited");
    if (!is_null(inh)) {
        if (!cJSON_IsBool(inh))
            return perr(ps, path, "inherited", "must be a boolean");
        c->inherited = cJSON_IsTrue(inh);
    }

    if (sp->field == IDX_F_STUDIOS) { /* Stash's studioCriterionHandler */
        if (c->mod == IDX_MOD_EQUALS)
            c->mod = IDX_MOD_INCLUDES_ALL;
        else if (c->mod == IDX_MOD_NOT_EQUALS)
            c->mod = IDX_MOD_EXCLUDES;
    }
    if (c->mod == IDX_MOD_EQUALS && c->depth != 0)
        return perr(ps, path, "depth",
                    "depth is not supported with modifier EQUALS");
    if (c->mod == IDX_MOD_EQUALS && c->inherited)
        return perr(ps, path, "inherited",
                    "inherited is not supported with modifier EQUALS");
    if (c->mod == IDX_MOD_EXCLUDES) { /* fold value into excludes */
        for (size_t i = 0; i < c->n_ids; i++) {
            if (has_id(c->excl, c->n_excl, c->ids[i]))
                continue;
            uint64_t *e = cm_realloc(c->excl, (c->n_excl + 1) * sizeof *e);
            if (!e)
                return CM_NOMEM;
            c->excl = e;
            c->excl[c->n_excl++] = c->ids[i];
        }
        c->n_ids = 0;
    }
    if (c->mod == IDX_MOD_IS_NULL || c->mod == IDX_MOD_NOT_NULL) {
        c->n_ids = 0; /* value and excludes are ignored, as in Stash */
        c->n_excl = 0;
    }
    return CM_OK;
}

static enum cm_status parse_stash_id(struct pstate *ps, const cJSON *obj,
                                     const char *path, struct idx_crit *c)
{
    static const char *const keys[] = {"endpoint", "stash_id", "modifier",
                                       NULL};
    enum cm_status st = check_keys(ps, obj, path, keys);
    if (st != CM_OK)
        return st;
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(obj, "endpoint");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(obj, "stash_id");
    if (!is_null(ep)) {
        if (!cJSON_IsString(ep))
            return perr(ps, path, "endpoint", "must be a string");
        if (strlen(ep->valuestring) > MAX_VALUE_LEN)
            return perr(ps, path, "endpoint", "too long");
        st = dup_str(ep->valuestring, strlen(ep->valuestring), &c->endpoint);
        if (st != CM_OK)
            return st;
    }
    if (!is_null(sid) && !cJSON_IsString(sid))
        return perr(ps, path, "stash_id", "must be a string");
    return string_value(ps, c, is_null(sid) ? "" : sid->valuestring, path);
}

/* ---- One criterion -------------------------------------------------- */

/* Parses key/value j into c.  *keep = false when the criterion constrains
 * nothing (Stash adds no SQL clause for it). */
static enum cm_status parse_crit(struct pstate *ps, const struct fspec *sp,
                                 const cJSON *j, const char *path,
                                 struct idx_crit *c, bool *keep)
{
    char p[128];
    enum cm_status st = CM_OK;
    join_path(p, sizeof p, path, sp->key);
    c->field = sp->field;
    *keep = true;

    switch (sp->vk) {
    case V_UNSUPPORTED:
        return perr(ps, p, NULL,
                    "unsupported criterion: peekd does not evaluate %s",
                    sp->key);
    case V_BOOL:
    case V_PEEK_FAV:
    case V_FAVORITE:
        if (!cJSON_IsBool(j))
            return perr(ps, p, NULL, "must be a boolean");
        c->b = cJSON_IsTrue(j);
        if (sp->vk == V_PEEK_FAV) /* Peek applies these only when true */
            *keep = c->b;
        if (sp->vk == V_FAVORITE) { /* no per-user data: none are */
            *keep = c->b;
            c->b = false;
        }
        return CM_OK;
    case V_INSTANCE:
        if (!cJSON_IsString(j))
            return perr(ps, p, NULL, "must be a string");
        *keep = !(j->valuestring[0] == '\0' ||
                  strcmp(j->valuestring, IDX_INSTANCE_ID) == 0);
        c->b = false;
        return CM_OK;
    case V_HAS_MARKERS:
        if (cJSON_IsString(j) && strcmp(j->valuestring, "true") == 0)
            c->b = true;
        else if (cJSON_IsString(j) && strcmp(j->valuestring, "false") == 0)
            c->b = false;
        else
            return perr(ps, p, NULL, "must be \"true\" or \"false\"");
        return CM_OK;
    case V_MISSING:
        if (!cJSON_IsString(j))
            return perr(ps, p, NULL, "must be a string");
        if (j->valuestring[0] == '\0') {
            *keep = false;
            return CM_OK;
        }
        if (strcmp(j->valuestring, "cover") == 0)
            return perr(ps, p, NULL,
                        "unsupported: peekd does not know whether a scene "
                        "has a cover");
        for (size_t i = 0; i < sizeof missing_names / sizeof *missing_names;
             i++)
            if (strcmp(j->valuestring, missing_names[i].name) == 0) {
                c->missing = missing_names[i].m;
                return CM_OK;
            }
        return perr(ps, p, NULL, "unknown is_missing value");
    default: break;
    }

    /* Criterion objects (bare arrays accepted for Peek's ids). */
    if (sp->vk == V_SCENE_IDS && cJSON_IsArray(j)) {
        size_t total = 0;
        c->mod = IDX_MOD_INCLUDES;
        st = read_ids(ps, j, path, sp->key, &c->ids, &c->n_ids, &total);
        *keep = st == CM_OK && c->n_ids > 0;
        return st;
    }
    if (!cJSON_IsObject(j))
        return perr(ps, p, NULL, "must be an object");
    st = read_modifier(ps, j, p, sp, &c->mod);
    if (st != CM_OK)
        return st;

    switch (sp->vk) {
    case V_STRING: return parse_string(ps, j, p, c);
    case V_PHASH: return parse_phash(ps, j, p, c);
    case V_INT: return parse_int(ps, j, p, c);
    case V_RES: return parse_res(ps, j, p, c);
    case V_ORIENT:
        st = parse_orient(ps, j, p, c);
        *keep = c->orient != 0;
        return st;
    case V_DATE: return parse_date(ps, j, p, c, true);
    case V_TS: return parse_date(ps, j, p, c, false);
    case V_HIER:
    case V_MULTI:
    case V_MOVIES:
    case V_SCENE_IDS:
        st = parse_set(ps, j, p, sp, c);
        if (st == CM_OK && c->mod != IDX_MOD_IS_NULL &&
            c->mod != IDX_MOD_NOT_NULL && c->n_ids == 0 && c->n_excl == 0)
            *keep = false;
        return st;
    case V_STASH_ID: return parse_stash_id(ps, j, p, c);
    default: return perr(ps, p, NULL, "internal: unhandled criterion");
    }
}

/* ---- Filters ------------------------------------------------------- */

static const struct fspec *find_spec(const char *key)
{
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        if (strcmp(specs[i].key, key) == 0)
            return &specs[i];
    return NULL;
}

static bool filter_empty(const struct idx_filter *f)
{
    return f->n == 0 && f->sub_kind == IDX_SUB_NONE;
}

static enum cm_status parse_filter(struct pstate *ps, const cJSON *obj,
                                   const char *path, int depth,
                                   struct idx_filter **out)
{
    struct idx_filter *f = NULL;
    enum cm_status st = CM_OK;
    const cJSON *subj = NULL;
    const char *subname = NULL;
    *out = NULL;

    if (!cJSON_IsObject(obj))
        return perr(ps, path, NULL, "must be an object");
    if (depth > CM_MAX_FILTER_DEPTH)
        return perr(ps, path, NULL, "filter nesting deeper than %d levels",
                    CM_MAX_FILTER_DEPTH);
    size_t cnt = (size_t)cJSON_GetArraySize(obj);
    f = cm_calloc(1, sizeof *f);
    if (!f)
        return CM_NOMEM;
    if (cnt) {
        f->crits = cm_calloc(cnt, sizeof *f->crits);
        if (!f->crits) {
            st = CM_NOMEM;
            goto out;
        }
    }
    const cJSON *c;
    cJSON_ArrayForEach (c, obj) {
        const char *key = c->string ? c->string : "";
        for (const cJSON *d = c->next; d; d = d->next)
            if (d->string && strcmp(d->string, key) == 0) {
                st = perr(ps, path, key, "duplicate field");
                goto out;
            }
        if (is_null(c))
            continue; /* GraphQL: null = not given */
        if (strcmp(key, "AND") == 0 || strcmp(key, "OR") == 0 ||
            strcmp(key, "NOT") == 0) {
            if (subj) {
                st = perr(ps, path, NULL, "illegal filter combination");
                goto out;
            }
            subj = c;
            subname = key;
            continue;
        }
        const struct fspec *sp = find_spec(key);
        if (!sp) {
            st = perr(ps, path, key, "unknown field");
            goto out;
        }
        bool keep = true;
        st = parse_crit(ps, sp, c, path, &f->crits[f->n], &keep);
        if (st != CM_OK) {
            crit_fini(&f->crits[f->n]);
            goto out;
        }
        if (keep)
            f->n++;
        else
            crit_fini(&f->crits[f->n]);
    }
    if (subj) {
        char p[128];
        join_path(p, sizeof p, path, subname);
        st = parse_filter(ps, subj, p, depth + 1, &f->sub);
        if (st != CM_OK)
            goto out;
        if (filter_empty(f->sub)) { /* an empty clause adds nothing */
            filter_free(f->sub);
            f->sub = NULL;
        } else {
            f->sub_kind = subname[0] == 'A'   ? IDX_SUB_AND
                          : subname[0] == 'O' ? IDX_SUB_OR
                                              : IDX_SUB_NOT;
        }
    }
out:
    if (st != CM_OK) {
        filter_free(f);
        return st;
    }
    *out = f;
    return CM_OK;
}

/* ---- filter.q ------------------------------------------------------ */

struct slice {
    const char *p;
    size_t n;
};

static struct slice phrase_of(struct slice w)
{
    if (w.n > 1 && w.p[0] == '"' && w.p[w.n - 1] == '"')
        return (struct slice){w.p + 1, w.n - 2};
    return w;
}

static bool is_or(struct slice w)
{
    return w.n == 2 && tolower((unsigned char)w.p[0]) == 'o' &&
           tolower((unsigned char)w.p[1]) == 'r';
}

static enum cm_status push_term(struct idx_str **v, size_t *n, struct slice s)
{
    struct idx_str *nv = cm_realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv)
        return CM_NOMEM;
    *v = nv;
    enum cm_status st = dup_str(s.p, s.n, &nv[*n]);
    if (st == CM_OK)
        (*n)++;
    return st;
}

/* combinePhrases of pkg/models/search.go, in place; returns the count. */
static size_t combine_phrases(struct slice *w, size_t n)
{
    size_t out = 0, start = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (start == (size_t)-1) {
            struct slice ww = w[i];
            if (ww.n > 0 && ww.p[0] == '-')
                ww = (struct slice){ww.p + 1, ww.n - 1};
            if (ww.n > 0 && ww.p[0] == '"' &&
                (ww.n < 2 || ww.p[ww.n - 1] != '"')) {
                start = i;
                continue;
            }
            w[out++] = w[i];
        } else if (w[i].n > 0 && w[i].p[w[i].n - 1] == '"') {
            /* the words are consecutive in q, so the joined phrase is
             * the span from the first to the last */
            w[out++] = (struct slice){w[start].p,
                                      (size_t)(w[i].p + w[i].n - w[start].p)};
            start = (size_t)-1;
        }
    }
    if (start != (size_t)-1)
        for (size_t i = start; i < n; i++)
            w[out++] = w[i];
    return out;
}

static enum cm_status add_any_set(struct idx_qspec *qs, struct slice *w,
                                  size_t from, size_t to)
{
    struct idx_str *set = NULL;
    size_t n = 0;
    enum cm_status st = CM_OK;
    for (size_t k = from; k <= to; k += 2) {
        struct slice p = phrase_of(w[k]);
        if (p.n == 0)
            continue;
        st = push_term(&set, &n, p);
        if (st != CM_OK)
            goto fail;
    }
    if (n == 0)
        return CM_OK; /* Stash would emit "()" (an SQL error); skip */
    struct idx_str **any = cm_realloc(qs->any, (qs->n_any + 1) * sizeof *any);
    if (!any) {
        st = CM_NOMEM;
        goto fail;
    }
    qs->any = any;
    size_t *lens = cm_realloc(qs->any_len, (qs->n_any + 1) * sizeof *lens);
    if (!lens) {
        st = CM_NOMEM;
        goto fail;
    }
    qs->any_len = lens;
    qs->any[qs->n_any] = set;
    qs->any_len[qs->n_any] = n;
    qs->n_any++;
    return CM_OK;
fail:
    strs_free(set, n);
    return st;
}

/* extractOrConditions; returns the new word count via *n. */
static enum cm_status extract_ors(struct idx_qspec *qs, struct slice *w,
                                  size_t *n)
{
    for (bool found = true; found;) {
        found = false;
        for (size_t i = 1; i + 1 < *n; i++) {
            if (!(is_or(w[i]) || (w[i].n == 1 && w[i].p[0] == '|')))
                continue;
            size_t start = i - 1, last = *n - 1;
            for (size_t k = i + 2; k < *n; k += 2)
                if (!is_or(w[k])) {
                    last = k - 1;
                    break;
                }
            found = true;
            enum cm_status st = add_any_set(qs, w, start, last);
            if (st != CM_OK)
                return st;
            memmove(&w[start], &w[last + 1], (*n - last - 1) * sizeof *w);
            *n -= last + 1 - start;
            break;
        }
    }
    return CM_OK;
}

static enum cm_status parse_qspec(const char *q, size_t len,
                                  struct idx_qspec *qs)
{
    const char *p = q;
    size_t n = len;
    trim(&p, &n);
    if (n == 0)
        return CM_OK;
    size_t nw = 1;
    for (size_t i = 0; i < n; i++)
        nw += p[i] == ' ';
    struct slice *w = cm_calloc(nw, sizeof *w);
    if (!w)
        return CM_NOMEM;
    size_t k = 0, s = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || p[i] == ' ') {
            w[k++] = (struct slice){p + s, i - s};
            s = i + 1;
        }
    nw = combine_phrases(w, k);
    enum cm_status st = extract_ors(qs, w, &nw);
    for (size_t i = 0; i < nw && st == CM_OK; i++) {
        if (w[i].n > 1 && w[i].p[0] == '-') {
            struct slice t = phrase_of((struct slice){w[i].p + 1, w[i].n - 1});
            if (t.n)
                st = push_term(&qs->must_not, &qs->n_must_not, t);
            continue;
        }
        struct slice t = phrase_of(w[i]);
        if (t.n)
            st = push_term(&qs->must, &qs->n_must, t);
    }
    cm_free(w);
    return st;
}

/* ---- FindFilterType ------------------------------------------------ */

static const struct {
    const char *name;
    int sort; /* enum idx_sort, or -1 = valid in Stash, unsupported here */
} sort_table[] = {
    {"title", IDX_SORT_TITLE},
    {"date", IDX_SORT_DATE},
    {"created_at", IDX_SORT_CREATED_AT},
    {"updated_at", IDX_SORT_UPDATED_AT},
    {"rating", IDX_SORT_RATING},
    {"o_counter", IDX_SORT_O_COUNTER},
    {"play_count", IDX_SORT_PLAY_COUNT},
    {"play_duration", IDX_SORT_PLAY_DURATION},
    {"last_played_at", IDX_SORT_LAST_PLAYED_AT},
    {"resume_time", IDX_SORT_RESUME_TIME},
    {"duration", IDX_SORT_DURATION},
    {"filesize", IDX_SORT_FILESIZE},
    {"bitrate", IDX_SORT_BITRATE},
    {"framerate", IDX_SORT_FRAMERATE},
    {"resolution", IDX_SORT_RESOLUTION},
    {"path", IDX_SORT_PATH},
    {"tag_count", IDX_SORT_TAG_COUNT},
    {"performer_count", IDX_SORT_PERFORMER_COUNT},
    {"file_count", IDX_SORT_FILE_COUNT},
    {"organized", IDX_SORT_ORGANIZED},
    {"interactive", IDX_SORT_INTERACTIVE},
    {"interactive_speed", IDX_SORT_INTERACTIVE_SPEED},
    {"code", IDX_SORT_CODE},
    {"studio", IDX_SORT_STUDIO},
    {"id", IDX_SORT_ID},
    {"random", IDX_SORT_RANDOM},
    {"file_mod_time", -1},
    {"group_scene_number", -1},
    {"movie_scene_number", -1},
    {"last_o_at", -1},
    {"perceptual_similarity", -1},
    {"performer_age", -1},
};

static enum cm_status parse_sort(struct pstate *ps, const char *s,
                                 struct idx_query *q)
{
    if (strncmp(s, "random_", 7) == 0) {
        const char *d = s + 7;
        uint64_t v = 0;
        bool ok = *d != '\0' && strlen(d) <= 20;
        for (; ok && *d; d++) {
            if (*d < '0' || *d > '9' || v > (UINT64_MAX - 9) / 10)
                ok = false;
            else
                v = v * 10 + (uint64_t)(*d - '0');
        }
        if (!ok)
            return perr(ps, "filter.sort", NULL, "invalid sort: %.100s", s);
        q->sort = IDX_SORT_RANDOM;
        q->seed = v % 100000000u;
        return CM_OK;
    }
    for (size_t i = 0; i < sizeof sort_table / sizeof sort_table[0]; i++) {
        if (strcmp(s, sort_table[i].name) != 0)
            continue;
        if (sort_table[i].sort < 0)
            return perr(ps, "filter.sort", NULL, "unsupported sort: %s", s);
        q->sort = (enum idx_sort)sort_table[i].sort;
        if (q->sort == IDX_SORT_RANDOM) /* Peek's daily seed */
            q->seed = ((uint64_t)ps->now / 86400u) % 100000000u;
        return CM_OK;
    }
    return perr(ps, "filter.sort", NULL, "invalid sort: %.100s", s);
}

static enum cm_status parse_find(struct pstate *ps, const cJSON *ff,
                                 int default_per_page, struct idx_query *q)
{
    static const char *const keys[] = {"q",    "page",      "per_page",
                                       "sort", "direction", NULL};
    bool sorted = false, directed = false;
    enum cm_status st;

    q->page = 1;
    q->per_page = default_per_page;
    q->sort = IDX_SORT_CREATED_AT;
    if (!is_null(ff)) {
        if (!cJSON_IsObject(ff))
            return perr(ps, "filter", NULL, "must be an object");
        st = check_keys(ps, ff, "filter", keys);
        if (st != CM_OK)
            return st;
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(ff, "q");
        if (!is_null(j)) {
            if (!cJSON_IsString(j))
                return perr(ps, "filter.q", NULL, "must be a string");
            size_t n = strlen(j->valuestring);
            if (n > CM_MAX_Q_LEN)
                return perr(ps, "filter.q", NULL, "longer than %d bytes",
                            CM_MAX_Q_LEN);
            q->q = cm_strndup(j->valuestring, n);
            if (!q->q)
                return CM_NOMEM;
            q->q_len = n;
            st = parse_qspec(q->q, n, &q->qs);
            if (st != CM_OK)
                return st;
        }
        j = cJSON_GetObjectItemCaseSensitive(ff, "page");
        if (!is_null(j)) {
            st = read_int(ps, j, "filter", "page", INT64_MIN / 2, CM_MAX_PAGE,
                          &q->page);
            if (st != CM_OK)
                return st;
            if (q->page < 1)
                q->page = 1;
        }
        j = cJSON_GetObjectItemCaseSensitive(ff, "per_page");
        if (!is_null(j)) {
            st = read_int(ps, j, "filter", "per_page", INT64_MIN / 2,
                          INT64_MAX / 2, &q->per_page);
            if (st != CM_OK)
                return st;
        }
        j = cJSON_GetObjectItemCaseSensitive(ff, "sort");
        if (!is_null(j)) {
            if (!cJSON_IsString(j))
                return perr(ps, "filter.sort", NULL, "must be a string");
            if (j->valuestring[0] != '\0') {
                st = parse_sort(ps, j->valuestring, q);
                if (st != CM_OK)
                    return st;
                sorted = true;
            }
        }
        j = cJSON_GetObjectItemCaseSensitive(ff, "direction");
        if (!is_null(j)) {
            if (!cJSON_IsString(j))
                return perr(ps, "filter.direction", NULL,
                            "must be ASC or DESC");
            directed = true;
            q->desc = name_eq(j->valuestring, "DESC"); /* else ASC */
        }
    }
    if (!sorted && !directed)
        q->desc = true; /* Peek's default: created_at DESC */
    if (q->per_page < 0) {
        q->per_page = CM_MAX_PER_PAGE;
        q->per_page_all = true;
    } else if (q->per_page > CM_MAX_PER_PAGE) {
        q->per_page = CM_MAX_PER_PAGE;
    }
    return CM_OK;
}

enum cm_status idx_query_parse(const cJSON *find_filter,
                               const cJSON *scene_filter, int default_per_page,
                               struct idx_query **out, struct idx_error *err)
{
    struct pstate ps = {err, time(NULL)};
    struct idx_query *q = NULL;
    enum cm_status st;

    *out = NULL;
    if (err) {
        err->field[0] = '\0';
        err->message[0] = '\0';
    }
    q = cm_calloc(1, sizeof *q);
    if (!q)
        return CM_NOMEM;
    st = parse_find(&ps, find_filter, default_per_page, q);
    if (st != CM_OK)
        goto out;
    if (!is_null(scene_filter)) {
        st = parse_filter(&ps, scene_filter, "scene_filter", 1, &q->filter);
        if (st != CM_OK)
            goto out;
        if (filter_empty(q->filter)) {
            filter_free(q->filter);
            q->filter = NULL;
        }
    }
out:
    if (st != CM_OK) {
        if (st == CM_NOMEM && err) {
            snprintf(err->field, sizeof err->field, "%s", "");
            snprintf(err->message, sizeof err->message, "out of memory");
        }
        idx_query_free(q);
        return st;
    }
    *out = q;
    return CM_OK;
}

enum cm_status idx_query_set_ids(struct idx_query *q, const cJSON *ids,
                                 struct idx_error *err)
{
    struct pstate ps = {err, 0};
    uint64_t *v = NULL;
    size_t n = 0;

    if (!is_null(ids)) {
        if (!cJSON_IsArray(ids))
            return perr(&ps, "ids", NULL, "must be an array of ids");
        if (cJSON_GetArraySize(ids) > CM_MAX_IDS)
            return perr(&ps, "ids", NULL, "more than %d ids", CM_MAX_IDS);
        v = cm_calloc((size_t)cJSON_GetArraySize(ids) + 1, sizeof *v);
        if (!v)
            return CM_NOMEM;
        const cJSON *e;
        cJSON_ArrayForEach (e, ids) {
            if (!parse_id(e, &v[n])) {
                char k[32];
                snprintf(k, sizeof k, "ids[%zu]", n);
                cm_free(v);
                return perr(&ps, k, NULL,
                            "not an id (\"12\" or \"12:instance\")");
            }
            n++;
        }
    }
    cm_free(q->ids);
    q->ids = v;
    q->n_ids = n;
    return CM_OK;
}
