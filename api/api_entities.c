/*
 * api_entities.c - performer/studio/tag/group/gallery lists
 * (POST /api/library/<entities>, Peek's find<Entity>s envelope) and the
 * autocomplete lists (POST /api/library/<entities>/minimal).
 *
 * Entities are few (tens of thousands at most), so a request scans the
 * entities database for the type, filters and sorts in memory, and
 * renders one page; scene_count comes from the posting bitmaps
 * (idx_entity_scene_count), computed for every match only when the sort or
 * a minimum needs it.  Strings stay borrowed from the read transaction.
 */
#include <cjson/cJSON.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_natural.h"
#include "index/idx.h"

#define TRY(x)                                                                 \
    do {                                                                       \
        if ((st = (x)) != CM_OK)                                               \
            goto out;                                                          \
    } while (0)
#define LIT(b, s) cm_buf_append((b), (s), sizeof(s) - 1)

enum esort {
    S_NAME,
    S_SCENES,
    S_CREATED,
    S_UPDATED,
    S_RATING,
    S_DATE,
    S_RANDOM
};

struct eopts {
    const char *q; /* NULL = no text filter */
    size_t qlen;
    enum esort sort;
    bool desc;
    long page, per_page; /* per_page -1 = all (capped) */
    int favorite;        /* -1 = any */
    int64_t min_scenes;  /* -1 = none */
    uint64_t *ids;       /* sorted */
    size_t nids;
    bool has_ids;  /* an ids lookup (possibly empty: matches nothing) */
    uint64_t seed; /* random_<seed> */
};

struct erow {
    uint64_t id;
    struct kv_str name, created, updated;
    int32_t rating;
    int32_t date;   /* yyyymmdd, -1 null */
    int64_t scenes; /* -1 = not computed */
    double rnd;
};

static const char *plural(uint8_t t)
{
    switch (t) {
    case KV_PERFORMER: return "performers";
    case KV_STUDIO: return "studios";
    case KV_TAG: return "tags";
    case KV_GROUP: return "groups";
    default: return "galleries";
    }
}

static const char *singular(uint8_t t)
{
    switch (t) {
    case KV_PERFORMER: return "performer";
    case KV_STUDIO: return "studio";
    case KV_TAG: return "tag";
    case KV_GROUP: return "group";
    default: return "gallery";
    }
}

static const char *find_key(uint8_t t)
{
    switch (t) {
    case KV_PERFORMER: return "findPerformers";
    case KV_STUDIO: return "findStudios";
    case KV_TAG: return "findTags";
    case KV_GROUP: return "findGroups";
    default: return "findGalleries";
    }
}

/* ---- Request parsing ---------------------------------------------------- */

static enum cm_status get_int(const cJSON *j, const char *field,
                              struct api_resp *resp, long lo, long hi,
                              long *out)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) ||
        j->valuedouble < (double)lo || j->valuedouble > (double)hi)
        return api_fail(resp, CM_INVALID, "out of range or not an integer",
                        field);
    *out = (long)j->valuedouble;
    return CM_OK;
}

static enum cm_status parse_sort(const char *s, struct eopts *o,
                                 struct api_resp *resp)
{
    static const struct {
        const char *name;
        enum esort sort;
    } t[] = {{"name", S_NAME},          {"title", S_NAME},
             {"scene_count", S_SCENES}, {"scenes_count", S_SCENES},
             {"created_at", S_CREATED}, {"updated_at", S_UPDATED},
             {"rating", S_RATING},      {"rating100", S_RATING},
             {"date", S_DATE},          {"random", S_RANDOM}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) {
            o->sort = t[i].sort;
            return CM_OK;
        }
    if (strncmp(s, "random_", 7) == 0) {
        char *end;
        unsigned long long v = strtoull(s + 7, &end, 10);
        if (*end || end == s + 7 || s[7] == '-')
            return api_fail(resp, CM_INVALID, "invalid random seed",
                            "filter.sort");
        o->sort = S_RANDOM;
        o->seed = v;
        return CM_OK;
    }
    return api_fail(resp, CM_INVALID, "unknown sort field", "filter.sort");
}

static enum cm_status parse_find_filter(const cJSON *ff, struct eopts *o,
                                        struct api_resp *resp, long def_pp)
{
    const cJSON *it;
    enum cm_status st = CM_OK;
    o->page = 1;
    o->per_page = def_pp;
    o->sort = S_NAME;
    o->desc = false;
    if (!ff || cJSON_IsNull(ff))
        return CM_OK;
    if (!cJSON_IsObject(ff))
        return api_fail(resp, CM_INVALID, "must be an object", "filter");
    cJSON_ArrayForEach (it, ff) {
        const char *k = it->string;
        if (cJSON_IsNull(it))
            continue;
        if (strcmp(k, "q") == 0) {
            if (!cJSON_IsString(it))
                return api_fail(resp, CM_INVALID, "must be a string",
                                "filter.q");
            o->qlen = strlen(it->valuestring);
            if (o->qlen > CM_MAX_Q_LEN)
                return api_fail(resp, CM_INVALID, "too long", "filter.q");
            o->q = o->qlen ? it->valuestring : NULL;
        } else if (strcmp(k, "page") == 0) {
            st = get_int(it, "filter.page", resp, 1, CM_MAX_PAGE, &o->page);
        } else if (strcmp(k, "per_page") == 0) {
            st = get_int(it, "filter.per_page", resp, -1, CM_MAX_PER_PAGE,
                         &o->per_page);
            if (st == CM_OK && o->per_page == 0)
                st = api_fail(resp, CM_INVALID, "must be -1 or positive",
                              "filter.per_page");
        } else if (strcmp(k, "sort") == 0) {
            if (!cJSON_IsString(it))
                return api_fail(resp, CM_INVALID, "must be a string",
                                "filter.sort");
            st = parse_sort(it->valuestring, o, resp);
        } else if (strcmp(k, "direction") == 0) {
            if (!cJSON_IsString(it))
                return api_fail(resp, CM_INVALID, "must be a string",
                                "filter.direction");
            if (strcasecmp(it->valuestring, "asc") == 0)
                o->desc = false;
            else if (strcasecmp(it->valuestring, "desc") == 0)
                o->desc = true;
            else
                return api_fail(resp, CM_INVALID, "must be ASC or DESC",
                                "filter.direction");
        } else {
            char f[96];
            snprintf(f, sizeof f, "filter.%s", k);
            return api_fail(resp, CM_INVALID, "unknown field", f);
        }
        if (st != CM_OK)
            return st;
    }
    if (o->per_page < 0)
        o->per_page = CM_MAX_PER_PAGE;
    return CM_OK;
}

static enum cm_status parse_entity_filter(const cJSON *ef, const char *name,
                                          struct eopts *o,
                                          struct api_resp *resp)
{
    const cJSON *it;
    if (!ef || cJSON_IsNull(ef))
        return CM_OK;
    if (!cJSON_IsObject(ef))
        return api_fail(resp, CM_INVALID, "must be an object", name);
    cJSON_ArrayForEach (it, ef) {
        char f[96];
        snprintf(f, sizeof f, "%s.%s", name, it->string);
        if (strcmp(it->string, "favorite") == 0 ||
            strcmp(it->string, "filter_favorites") == 0) {
            if (cJSON_IsNull(it))
                continue;
            if (!cJSON_IsBool(it))
                return api_fail(resp, CM_INVALID, "must be a boolean", f);
            o->favorite = cJSON_IsTrue(it) ? 1 : 0;
        } else {
            return api_fail(resp, CM_INVALID, "unsupported filter field", f);
        }
    }
    return CM_OK;
}

static enum cm_status parse_count_filter(const cJSON *cf, struct eopts *o,
                                         struct api_resp *resp)
{
    const cJSON *it;
    if (!cf || cJSON_IsNull(cf))
        return CM_OK;
    if (!cJSON_IsObject(cf))
        return api_fail(resp, CM_INVALID, "must be an object", "count_filter");
    cJSON_ArrayForEach (it, cf) {
        char f[96];
        long v = 0;
        enum cm_status st;
        snprintf(f, sizeof f, "count_filter.%s", it->string);
        if (cJSON_IsNull(it))
            continue;
        if (strcmp(it->string, "min_scene_count") != 0)
            return api_fail(resp, CM_INVALID, "unsupported count filter", f);
        st = get_int(it, f, resp, 0, 1L << 40, &v);
        if (st != CM_OK)
            return st;
        o->min_scenes = v;
    }
    return CM_OK;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static enum cm_status parse_ids(const cJSON *ids, struct eopts *o,
                                struct api_resp *resp)
{
    const cJSON *it;
    size_t k = 0;
    int n;
    if (!ids || cJSON_IsNull(ids))
        return CM_OK;
    if (!cJSON_IsArray(ids))
        return api_fail(resp, CM_INVALID, "must be an array", "ids");
    n = cJSON_GetArraySize(ids);
    if (n > CM_MAX_IDS)
        return api_fail(resp, CM_INVALID, "too many ids", "ids");
    o->ids = cm_malloc(((size_t)n + 1) * sizeof *o->ids);
    if (!o->ids)
        return CM_NOMEM;
    cJSON_ArrayForEach (it, ids) {
        uint64_t v = 0;
        char f[32];
        snprintf(f, sizeof f, "ids[%zu]", k);
        if (cJSON_IsString(it)) {
            if (api_parse_id(it->valuestring, strlen(it->valuestring), &v) !=
                CM_OK)
                return api_fail(resp, CM_INVALID, "invalid id", f);
        } else if (cJSON_IsNumber(it) && it->valuedouble >= 1 &&
                   it->valuedouble < 9007199254740992.0 &&
                   it->valuedouble == floor(it->valuedouble)) {
            v = (uint64_t)it->valuedouble;
        } else {
            return api_fail(resp, CM_INVALID, "invalid id", f);
        }
        o->ids[k++] = v;
    }
    o->nids = k;
    o->has_ids = true;
    qsort(o->ids, k, sizeof *o->ids, u64_cmp); /* for bsearch */
    return CM_OK;
}

/* ---- Scan, filter, sort ------------------------------------------------- */

static bool ci_contains(const char *h, size_t hn, const char *n, size_t nn)
{
    if (!h || nn > hn)
        return false;
    for (size_t i = 0; i + nn <= hn; i++) {
        size_t k = 0;
        while (k < nn) {
            unsigned char a = (unsigned char)h[i + k];
            unsigned char b = (unsigned char)n[k];
            if (a >= 'A' && a <= 'Z')
                a = (unsigned char)(a - 'A' + 'a');
            if (b >= 'A' && b <= 'Z')
                b = (unsigned char)(b - 'A' + 'a');
            if (a != b)
                break;
            k++;
        }
        if (k == nn)
            return true;
    }
    return false;
}

static bool matches(const struct kv_entity *e, const struct eopts *o)
{
    if (o->favorite >= 0 && (int)e->favorite != o->favorite)
        return false;
    if (o->has_ids &&
        !bsearch(&e->id, o->ids, o->nids, sizeof *o->ids, u64_cmp))
        return false;
    if (o->q) {
        if (ci_contains(e->name.p, e->name.len, o->q, o->qlen) ||
            ci_contains(e->disambiguation.p, e->disambiguation.len, o->q,
                        o->qlen))
            return true;
        for (uint32_t i = 0; i < e->n_aliases; i++)
            if (ci_contains(e->aliases[i].p, e->aliases[i].len, o->q, o->qlen))
                return true;
        return false;
    }
    return true;
}

static int kvstr_cmp(struct kv_str a, struct kv_str b)
{
    if (!a.p || !b.p)
        return (a.p != NULL) - (b.p != NULL); /* NULL first */
    return cm_natural_cmp(a.p, a.len, b.p, b.len);
}

static _Thread_local const struct eopts *sort_opts;

static int row_cmp(const void *pa, const void *pb)
{
    const struct erow *a = pa, *b = pb;
    const struct eopts *o = sort_opts;
    int c = 0;
    switch (o->sort) {
    case S_NAME: c = kvstr_cmp(a->name, b->name); break;
    case S_SCENES: c = (a->scenes > b->scenes) - (a->scenes < b->scenes); break;
    case S_CREATED: c = kvstr_cmp(a->created, b->created); break;
    case S_UPDATED: c = kvstr_cmp(a->updated, b->updated); break;
    case S_RATING: c = (a->rating > b->rating) - (a->rating < b->rating); break;
    case S_DATE: c = (a->date > b->date) - (a->date < b->date); break;
    case S_RANDOM: c = (a->rnd > b->rnd) - (a->rnd < b->rnd); break;
    }
    if (o->desc)
        c = -c;
    if (c == 0 && o->sort != S_NAME)
        c = kvstr_cmp(a->name, b->name);
    if (c == 0)
        c = (a->id > b->id) - (a->id < b->id);
    return c;
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Collects the rows of type et matching o. */
static enum cm_status scan(struct kv_txn *t, uint8_t et, const struct eopts *o,
                           struct erow **rows, size_t *nrows)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    unsigned char key0 = et;
    struct erow *r = NULL;
    size_t n = 0, cap = 0;
    enum cm_status st = CM_OK;
    int rc;

    *rows = NULL;
    *nrows = 0;
    rc = mdb_cursor_open(kv_txn_mdb(t), kv_dbi(kv_txn_store(t), KV_DB_ENTITIES),
                         &cur);
    if (rc)
        return kv_from_mdb(rc, "entities cursor");
    k.mv_data = &key0;
    k.mv_size = 1;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const unsigned char *kp = k.mv_data;
        struct kv_entity e;
        if (k.mv_size < 1 || kp[0] != et)
            break;
        if (k.mv_size != 9)
            continue;
        st = kv_entity_decode(v.mv_data, v.mv_size, &e);
        if (st != CM_OK) {
            kv_entity_fini(&e);
            goto out;
        }
        if (matches(&e, o)) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 256;
                struct erow *nr = cm_realloc(r, ncap * sizeof *nr);
                if (!nr) {
                    kv_entity_fini(&e);
                    st = CM_NOMEM;
                    goto out;
                }
                r = nr;
                cap = ncap;
            }
            r[n].id = e.id ? e.id : be64(kp + 1);
            r[n].name = e.name;
            r[n].created = e.created_at;
            r[n].updated = e.updated_at;
            r[n].rating = e.rating100;
            r[n].date = e.date.year > 0 ? e.date.year * 10000 +
                                              e.date.month * 100 + e.date.day
                                        : -1;
            r[n].scenes = -1;
            r[n].rnd =
                o->sort == S_RANDOM ? idx_random_key(r[n].id, o->seed) : 0;
            n++;
        }
        kv_entity_fini(&e);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        st = kv_from_mdb(rc, "entities scan");
        goto out;
    }
    *rows = r;
    *nrows = n;
    r = NULL;
out:
    mdb_cursor_close(cur);
    cm_free(r);
    return st;
}

/* Computes scene counts when the sort or a minimum needs them; drops rows
 * below the minimum; sorts. */
static enum cm_status order(struct kv_txn *t, uint8_t et, const struct eopts *o,
                            struct erow *rows, size_t *n)
{
    enum cm_status st;
    if (o->sort == S_SCENES || o->min_scenes >= 0) {
        size_t k = 0;
        for (size_t i = 0; i < *n; i++) {
            uint64_t c = 0;
            st = idx_entity_scene_count(t, et, rows[i].id, &c);
            if (st != CM_OK)
                return st;
            rows[i].scenes = (int64_t)c;
            if (o->min_scenes >= 0 && rows[i].scenes < o->min_scenes)
                continue;
            rows[k++] = rows[i];
        }
        *n = k;
    }
    sort_opts = o;
    if (*n > 1)
        qsort(rows, *n, sizeof *rows, row_cmp);
    return CM_OK;
}

/* ---- Rendering ------------------------------------------------------------
 */

static enum cm_status put_id(struct cm_buf *b, uint64_t id)
{
    return cm_buf_printf(b, "\"%llu\"", (unsigned long long)id);
}

static enum cm_status put_image(struct cm_buf *b, uint8_t et, uint64_t id,
                                struct kv_str img, const char *what)
{
    if (!img.p || !img.len)
        return LIT(b, "null");
    return cm_buf_printf(b, "\"/api/proxy/%s/%llu/%s\"", singular(et),
                         (unsigned long long)id, what);
}

static enum cm_status put_str_array(struct cm_buf *b, const struct kv_str *v,
                                    uint32_t n)
{
    enum cm_status st = cm_buf_putc(b, '[');
    for (uint32_t i = 0; i < n && st == CM_OK; i++) {
        if (i)
            st = cm_buf_putc(b, ',');
        if (st == CM_OK)
            st = api_json_str(b, v[i]);
    }
    if (st == CM_OK)
        st = cm_buf_putc(b, ']');
    return st;
}

/* [{id,instanceId,name}] of ids (names looked up; missing ones dropped). */
static enum cm_status put_refs(struct cm_buf *b, struct kv_txn *t, uint8_t et,
                               const uint64_t *ids, uint32_t n)
{
    enum cm_status st = cm_buf_putc(b, '[');
    bool first = true;
    for (uint32_t i = 0; i < n && st == CM_OK; i++) {
        struct kv_entity e;
        st = kv_entity_get(t, et, ids[i], &e);
        if (st == CM_NOTFOUND) {
            st = CM_OK;
            continue;
        }
        if (st != CM_OK)
            break;
        if (!first)
            st = cm_buf_putc(b, ',');
        first = false;
        if (st == CM_OK)
            st = LIT(b, "{\"id\":");
        if (st == CM_OK)
            st = put_id(b, ids[i]);
        if (st == CM_OK)
            st = LIT(b, ",\"instanceId\":\"" API_INSTANCE_ID "\",\"name\":");
        if (st == CM_OK)
            st = api_json_str(b, e.name);
        if (st == CM_OK)
            st = cm_buf_putc(b, '}');
        kv_entity_fini(&e);
    }
    if (st == CM_OK)
        st = cm_buf_putc(b, ']');
    return st;
}

static enum cm_status put_entity(struct cm_buf *b, struct kv_txn *t,
                                 const struct kv_entity *e, uint64_t scenes)
{
    enum cm_status st;
    uint8_t et = e->type;
    TRY(LIT(b, "{\"id\":"));
    TRY(put_id(b, e->id));
    TRY(LIT(b, ",\"instanceId\":\"" API_INSTANCE_ID "\","));
    TRY(cm_buf_puts(b, et == KV_GALLERY ? "\"title\":" : "\"name\":"));
    TRY(api_json_str(b, e->name));
    TRY(LIT(b, ",\"favorite\":"));
    TRY(cm_buf_puts(b, e->favorite ? "true" : "false"));
    TRY(LIT(b, ",\"rating100\":"));
    if (e->rating100 < 0)
        TRY(LIT(b, "null"));
    else
        TRY(cm_buf_put_i64(b, e->rating100));
    TRY(LIT(b, ",\"scene_count\":"));
    TRY(cm_buf_put_i64(b, (int64_t)scenes));
    TRY(LIT(b, ",\"created_at\":"));
    TRY(api_json_str(b, e->created_at));
    TRY(LIT(b, ",\"updated_at\":"));
    TRY(api_json_str(b, e->updated_at));
    switch (et) {
    case KV_PERFORMER:
        TRY(LIT(b, ",\"disambiguation\":"));
        TRY(api_json_str(b, e->disambiguation));
        TRY(LIT(b, ",\"gender\":"));
        {
            static const char *const g[] = {NULL,
                                            "MALE",
                                            "FEMALE",
                                            "TRANSGENDER_MALE",
                                            "TRANSGENDER_FEMALE",
                                            "INTERSEX",
                                            "NON_BINARY"};
            if (e->gender < 7 && g[e->gender])
                TRY(cm_buf_printf(b, "\"%s\"", g[e->gender]));
            else
                TRY(LIT(b, "null"));
        }
        TRY(LIT(b, ",\"birthdate\":"));
        TRY(api_json_str(b, e->birthdate));
        TRY(LIT(b, ",\"country\":"));
        TRY(api_json_str(b, e->country));
        TRY(LIT(b, ",\"alias_list\":"));
        TRY(put_str_array(b, e->aliases, e->n_aliases));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"tags\":"));
        TRY(put_refs(b, t, KV_TAG, e->tags, e->n_tags));
        break;
    case KV_STUDIO:
        TRY(LIT(b, ",\"details\":"));
        TRY(api_json_str(b, e->description));
        TRY(LIT(b, ",\"aliases\":"));
        TRY(put_str_array(b, e->aliases, e->n_aliases));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"parent_studio\":"));
        if (e->n_parents && e->parents[0]) {
            struct cm_buf tmp;
            cm_buf_init(&tmp, CM_MAX_RESPONSE);
            st = put_refs(&tmp, t, KV_STUDIO, e->parents, 1);
            /* "[{...}]" -> "{...}" or null */
            if (st == CM_OK && tmp.len > 2)
                st = cm_buf_append(b, tmp.data + 1, tmp.len - 2);
            else if (st == CM_OK)
                st = LIT(b, "null");
            cm_buf_fini(&tmp);
            if (st != CM_OK)
                goto out;
        } else {
            TRY(LIT(b, "null"));
        }
        TRY(LIT(b, ",\"tags\":"));
        TRY(put_refs(b, t, KV_TAG, e->tags, e->n_tags));
        break;
    case KV_TAG:
        TRY(LIT(b, ",\"sort_name\":"));
        TRY(api_json_str(b, e->sort_name));
        TRY(LIT(b, ",\"description\":"));
        TRY(api_json_str(b, e->description));
        TRY(LIT(b, ",\"aliases\":"));
        TRY(put_str_array(b, e->aliases, e->n_aliases));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"parents\":"));
        TRY(put_refs(b, t, KV_TAG, e->parents, e->n_parents));
        break;
    case KV_GROUP:
        TRY(LIT(b, ",\"date\":"));
        TRY(api_json_date(b, e->date));
        TRY(LIT(b, ",\"director\":"));
        TRY(api_json_str(b, e->director));
        TRY(LIT(b, ",\"synopsis\":"));
        TRY(api_json_str(b, e->description));
        TRY(LIT(b, ",\"duration\":"));
        if (e->duration < 0)
            TRY(LIT(b, "null"));
        else
            TRY(cm_buf_put_i64(b, e->duration));
        TRY(LIT(b, ",\"front_image_path\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"back_image_path\":"));
        TRY(put_image(b, et, e->id, e->back_image, "back_image"));
        TRY(LIT(b, ",\"studio\":"));
        if (e->studio_id)
            TRY(put_refs(b, t, KV_STUDIO, &e->studio_id, 1));
        else
            TRY(LIT(b, "null"));
        TRY(LIT(b, ",\"tags\":"));
        TRY(put_refs(b, t, KV_TAG, e->tags, e->n_tags));
        break;
    default:
        TRY(LIT(b, ",\"date\":"));
        TRY(api_json_date(b, e->date));
        TRY(LIT(b, ",\"image_count\":"));
        TRY(cm_buf_put_i64(b, e->image_count < 0 ? 0 : e->image_count));
        TRY(LIT(b, ",\"cover\":"));
        TRY(put_image(b, et, e->id, e->image, "image"));
        TRY(LIT(b, ",\"studio\":"));
        if (e->studio_id)
            TRY(put_refs(b, t, KV_STUDIO, &e->studio_id, 1));
        else
            TRY(LIT(b, "null"));
        break;
    }
    TRY(cm_buf_putc(b, '}'));
out:
    return st;
}

/* ---- Handlers -------------------------------------------------------------
 */

static void opts_init(struct eopts *o)
{
    memset(o, 0, sizeof *o);
    o->favorite = -1;
    o->min_scenes = -1;
}

enum cm_status api_h_entities(struct api_req *req, struct api_resp *resp,
                              uint8_t et)
{
    enum cm_status st;
    cJSON *root = NULL;
    struct eopts o;
    struct erow *rows = NULL;
    size_t n = 0, from, to;
    struct kv_txn *t;
    char fname[32];

    opts_init(&o);
    TRY(api_body_json(req, resp, &root));
    TRY(parse_find_filter(cJSON_GetObjectItemCaseSensitive(root, "filter"), &o,
                          resp, 40));
    snprintf(fname, sizeof fname, "%s_filter", singular(et));
    TRY(parse_entity_filter(cJSON_GetObjectItemCaseSensitive(root, fname),
                            fname, &o, resp));
    TRY(parse_ids(cJSON_GetObjectItemCaseSensitive(root, "ids"), &o, resp));
    TRY(api_req_txn(req, &t));
    TRY(scan(t, et, &o, &rows, &n));
    TRY(order(t, et, &o, rows, &n));
    from = (size_t)(o.page - 1) * (size_t)o.per_page;
    if (from > n)
        from = n;
    to = n - from > (size_t)o.per_page ? from + (size_t)o.per_page : n;
    resp->content_type = "application/json";
    TRY(cm_buf_printf(&resp->body, "{\"%s\":{\"count\":%zu,\"%s\":[",
                      find_key(et), n, plural(et)));
    for (size_t i = from; i < to; i++) {
        struct kv_entity e;
        uint64_t sc = 0;
        TRY(kv_entity_get(t, et, rows[i].id, &e));
        if (rows[i].scenes >= 0)
            sc = (uint64_t)rows[i].scenes;
        else
            st = idx_entity_scene_count(t, et, rows[i].id, &sc);
        if (st == CM_OK && i > from)
            st = cm_buf_putc(&resp->body, ',');
        if (st == CM_OK)
            st = put_entity(&resp->body, t, &e, sc);
        kv_entity_fini(&e);
        if (st != CM_OK)
            goto out;
    }
    TRY(cm_buf_puts(&resp->body, "]}}"));
    resp->status = 200;
out:
    cm_free(rows);
    cm_free(o.ids);
    cJSON_Delete(root);
    return st;
}

enum cm_status api_h_minimal(struct api_req *req, struct api_resp *resp,
                             uint8_t et)
{
    enum cm_status st;
    cJSON *root = NULL;
    struct eopts o;
    struct erow *rows = NULL;
    size_t n = 0, from, to;
    struct kv_txn *t;
    const cJSON *it;

    opts_init(&o);
    TRY(api_body_json(req, resp, &root));
    cJSON_ArrayForEach (it, root) {
        if (strcmp(it->string, "filter") &&
            strcmp(it->string, "count_filter")) {
            st = api_fail(resp, CM_INVALID, "unknown field", it->string);
            goto out;
        }
    }
    TRY(parse_find_filter(cJSON_GetObjectItemCaseSensitive(root, "filter"), &o,
                          resp, CM_MAX_PER_PAGE));
    TRY(parse_count_filter(
        cJSON_GetObjectItemCaseSensitive(root, "count_filter"), &o, resp));
    TRY(api_req_txn(req, &t));
    TRY(scan(t, et, &o, &rows, &n));
    TRY(order(t, et, &o, rows, &n));
    from = (size_t)(o.page - 1) * (size_t)o.per_page;
    if (from > n)
        from = n;
    to = n - from > (size_t)o.per_page ? from + (size_t)o.per_page : n;
    resp->content_type = "application/json";
    TRY(cm_buf_printf(&resp->body, "{\"%s\":[", plural(et)));
    for (size_t i = from; i < to; i++) {
        if (i > from)
            TRY(cm_buf_putc(&resp->body, ','));
        TRY(LIT(&resp->body, "{\"id\":"));
        TRY(put_id(&resp->body, rows[i].id));
        TRY(LIT(&resp->body, ",\"name\":"));
        TRY(api_json_str(&resp->body, rows[i].name));
        TRY(LIT(&resp->body, ",\"instanceId\":\"" API_INSTANCE_ID "\"}"));
    }
    TRY(cm_buf_puts(&resp->body, "]}"));
    resp->status = 200;
out:
    cm_free(rows);
    cm_free(o.ids);
    cJSON_Delete(root);
    return st;
}
