/*
 * api_scenes.c - scene routes: POST /api/library/scenes (Peek's
 * findScenes envelope), GET /api/library/scenes/{id}, and
 * GET /api/library/scenes/{id}/similar (Peek's weighted candidates:
 * shared performers x3, same studio x2, shared tags x1).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "index/idx.h"

#define TRY(x)                                                                 \
    do {                                                                       \
        if ((st = (x)) != CM_OK)                                               \
            goto out;                                                          \
    } while (0)

#define SIMILAR_PER_PAGE  12
#define SIMILAR_MAX       500        /* Peek's candidate cap */
#define SIMILAR_MAX_PAIRS (4u << 20) /* bounded work per request */

/* Bytes reserved per scene before rendering a page (a typical scene is
 * 2-3 KB): one allocation per page instead of a doubling series. */
#define SCENE_JSON_ESTIMATE 3072

/* Renders docids[0..n) as a JSON array of scenes into b. */
static enum cm_status put_scenes(struct api_req *req, struct kv_txn *t,
                                 const uint32_t *docids, size_t n,
                                 const struct cm_buf *base, struct cm_buf *b)
{
    struct api_ecache *ec = NULL;
    enum cm_status st;
    bool first = true, owned = false;
    size_t want;

    if (!__builtin_mul_overflow(n, (size_t)SCENE_JSON_ESTIMATE, &want) &&
        cm_buf_reserve(b, want + 64) != CM_OK) {
        /* only a hint: the writes below reserve what they need */
    }
    st = api_req_ecache(req, &ec, &owned);
    if (st == CM_OK) {
        api_ecache_begin(ec, t);
        st = api_put(b, "[", 1);
    }
    for (size_t i = 0; i < n && st == CM_OK; i++) {
        size_t mark = b->len;
        if (!first)
            st = api_put(b, ",", 1);
        if (st == CM_OK)
            st = api_scene_json_docid(req, ec, docids[i], base->data, base->len,
                                      b);
        if (st == CM_NOTFOUND) {
            /* deleted between index and record: skip */
            cm_buf_truncate(b, mark);
            st = CM_OK;
            continue;
        }
        first = false;
    }
    if (st == CM_OK)
        st = api_put(b, "]", 1);
    if (owned)
        api_ecache_free(ec);
    return st;
}

/* Reads the "ids" array: strings "id" / "id:instance" or integers. */
static enum cm_status parse_ids(const cJSON *ids, struct api_resp *resp,
                                uint64_t **out, size_t *n)
{
    int cnt = cJSON_GetArraySize(ids);
    uint64_t *v;
    size_t k = 0;
    const cJSON *it;
    char field[32];

    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(ids))
        return api_fail(resp, CM_INVALID, "ids must be an array", "ids");
    if (cnt > CM_MAX_IDS)
        return api_fail(resp, CM_INVALID, "too many ids", "ids");
    v = cm_malloc(((size_t)cnt + 1) * sizeof *v);
    if (!v)
        return CM_NOMEM;
    cJSON_ArrayForEach (it, ids) {
        uint64_t id = 0;
        enum cm_status st = CM_INVALID;
        if (cJSON_IsString(it))
            st = api_parse_id(it->valuestring, strlen(it->valuestring), &id);
        else if (cJSON_IsNumber(it) && it->valuedouble >= 1 &&
                 it->valuedouble < 9007199254740992.0 &&
                 it->valuedouble == (double)(uint64_t)it->valuedouble) {
            id = (uint64_t)it->valuedouble;
            st = CM_OK;
        }
        if (st != CM_OK) {
            snprintf(field, sizeof field, "ids[%zu]", k);
            cm_free(v);
            return api_fail(resp, CM_INVALID, "invalid scene id", field);
        }
        v[k++] = id;
    }
    *out = v;
    *n = k;
    return CM_OK;
}

static const cJSON *obj_member(const cJSON *root, const char *name,
                               struct api_resp *resp, enum cm_status *st)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, name);
    *st = CM_OK;
    if (!j || cJSON_IsNull(j))
        return NULL;
    if (!cJSON_IsObject(j)) {
        *st = api_fail(resp, CM_INVALID, "must be an object", name);
        return NULL;
    }
    return j;
}

/* The paging bounds of the API contract (docs/API.md), checked before the
 * query parser: page 1..CM_MAX_PAGE, per_page -1 (all) or
 * 0..CM_MAX_PER_PAGE, integers. */
static enum cm_status check_paging(const cJSON *ff, struct api_resp *resp)
{
    const cJSON *p = ff ? cJSON_GetObjectItemCaseSensitive(ff, "page") : NULL;
    const cJSON *pp =
        ff ? cJSON_GetObjectItemCaseSensitive(ff, "per_page") : NULL;
    if (p && !cJSON_IsNull(p) &&
        (!cJSON_IsNumber(p) || p->valuedouble != floor(p->valuedouble) ||
         p->valuedouble < 1 || p->valuedouble > CM_MAX_PAGE))
        return api_fail(resp, CM_INVALID,
                        "page must be an integer from 1 to 100000000",
                        "filter.page");
    if (pp && !cJSON_IsNull(pp) &&
        (!cJSON_IsNumber(pp) || pp->valuedouble != floor(pp->valuedouble) ||
         pp->valuedouble < -1 || pp->valuedouble > CM_MAX_PER_PAGE))
        return api_fail(resp, CM_INVALID,
                        "per_page must be -1 (all) or an integer up to 5000",
                        "filter.per_page");
    return CM_OK;
}

/* Peek's top-level "ids": folded into the scene filter as
 * {"ids":{"value":[...],"modifier":"INCLUDES"},"AND":<scene_filter>} so
 * the filter, sort and paging still apply.  OUT *out: caller owns (the
 * AND member is a reference to sf, not a copy). */
static enum cm_status ids_filter(const uint64_t *ids, size_t n, const cJSON *sf,
                                 cJSON **out)
{
    cJSON *f = cJSON_CreateObject(), *crit = NULL, *arr = NULL;
    *out = NULL;
    if (!f)
        return CM_NOMEM;
    crit = cJSON_AddObjectToObject(f, "ids");
    arr = crit ? cJSON_AddArrayToObject(crit, "value") : NULL;
    if (!arr || !cJSON_AddStringToObject(crit, "modifier", "INCLUDES"))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        char tmp[24];
        cJSON *s;
        snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)ids[i]);
        s = cJSON_CreateString(tmp);
        if (!s || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            goto nomem;
        }
    }
    if (sf && !cJSON_AddItemReferenceToObject(f, "AND", (cJSON *)sf))
        goto nomem;
    *out = f;
    return CM_OK;
nomem:
    cJSON_Delete(f);
    return CM_NOMEM;
}

enum cm_status api_h_scenes(struct api_req *req, struct api_resp *resp)
{
    enum cm_status st;
    cJSON *root = NULL;
    const cJSON *ff, *sf, *ids_j;
    struct idx_query *q = NULL;
    struct idx_error err;
    struct idx_result res;
    struct kv_txn *t;
    struct cm_buf base;
    uint64_t *ids = NULL;
    size_t nids = 0;
    cJSON *idsf = NULL;
    int def_pp = 40;

    memset(&res, 0, sizeof res); /* idx_result_fini-safe whatever its fields */
    cm_buf_init(&base, CM_MAX_CONFIG_VALUE + 16);
    TRY(api_body_json(req, resp, &root));
    ff = obj_member(root, "filter", resp, &st);
    if (st != CM_OK)
        goto out;
    sf = obj_member(root, "scene_filter", resp, &st);
    if (st != CM_OK)
        goto out;
    TRY(check_paging(ff, resp));
    ids_j = cJSON_GetObjectItemCaseSensitive(root, "ids");
    if (ids_j && !cJSON_IsNull(ids_j)) {
        TRY(parse_ids(ids_j, resp, &ids, &nids));
        if (nids == 0) {
            /* An empty lookup finds nothing (not "no filter"). */
            resp->content_type = "application/json";
            resp->status = 200;
            st = cm_buf_puts(&resp->body,
                             "{\"findScenes\":{\"count\":0,\"scenes\":[]}}");
            goto out;
        }
    }
    if (ids) {
        /* A lookup by ids returns them all unless per_page says less. */
        TRY(ids_filter(ids, nids, sf, &idsf));
        sf = idsf;
        def_pp = nids == 0                ? 1
                 : nids > CM_MAX_PER_PAGE ? CM_MAX_PER_PAGE
                                          : (int)nids;
    }
    memset(&err, 0, sizeof err);
    st = idx_query_parse(ff, sf, def_pp, &q, &err);
    if (st == CM_INVALID) {
        st =
            api_fail(resp, CM_INVALID,
                     err.message[0] ? err.message : "invalid query", err.field);
        goto out;
    }
    if (st != CM_OK)
        goto out;
    TRY(api_req_txn(req, &t));
    TRY(api_req_base_url(req, &base));
    TRY(idx_query_run(t, q, &res));
    resp->content_type = "application/json";
    TRY(API_LIT(&resp->body, "{\"findScenes\":{\"count\":"));
    TRY(api_json_u64(&resp->body, (uint64_t)res.count));
    TRY(API_LIT(&resp->body, ",\"scenes\":"));
    TRY(put_scenes(req, t, res.docids, res.n, &base, &resp->body));
    TRY(API_LIT(&resp->body, "}}"));
    resp->status = 200;
out:
    idx_result_fini(&res);
    idx_query_free(q);
    cJSON_Delete(root);
    cm_free(ids);
    cJSON_Delete(idsf);
    cm_buf_fini(&base);
    return st;
}

enum cm_status api_h_scene(struct api_req *req, struct api_resp *resp)
{
    enum cm_status st;
    struct kv_txn *t;
    struct kv_scene sc;
    bool have = false;
    uint32_t docid;
    struct cm_buf base;
    struct api_ecache *ec = NULL;
    bool owned = false;

    cm_buf_init(&base, CM_MAX_CONFIG_VALUE + 16);
    TRY(api_req_txn(req, &t));
    st = kv_docid_of(t, req->scene_id, &docid);
    if (st == CM_NOTFOUND) {
        st = api_fail(resp, CM_NOTFOUND, "Scene not found", "id");
        goto out;
    }
    if (st != CM_OK)
        goto out;
    TRY(kv_scene_get(t, docid, &sc));
    have = true;
    TRY(api_req_base_url(req, &base));
    TRY(api_req_ecache(req, &ec, &owned));
    api_ecache_begin(ec, t);
    resp->content_type = "application/json";
    TRY(api_scene_json(req, ec, &sc, base.data, base.len, &resp->body));
    resp->status = 200;
out:
    if (owned)
        api_ecache_free(ec);
    if (have)
        kv_scene_fini(&sc);
    cm_buf_fini(&base);
    return st;
}

/* ---- Similar scenes ---------------------------------------------------- */

struct pair {
    uint32_t docid;
    uint32_t weight;
};

struct collect {
    struct pair *v;
    size_t n, cap;
    uint32_t weight;
    uint32_t self;
    enum cm_status st;
};

static int collect_fn(uint32_t docid, void *ctx)
{
    struct collect *c = ctx;
    if (docid == c->self)
        return 0;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        struct pair *nv;
        if (ncap > SIMILAR_MAX_PAIRS)
            return 1; /* bounded: enough candidates */
        nv = cm_realloc(c->v, ncap * sizeof *nv);
        if (!nv) {
            c->st = CM_NOMEM;
            return 1;
        }
        c->v = nv;
        c->cap = ncap;
    }
    c->v[c->n].docid = docid;
    c->v[c->n].weight = c->weight;
    c->n++;
    return 0;
}

static int by_docid(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    return (x->docid > y->docid) - (x->docid < y->docid);
}

struct cand {
    uint32_t docid;
    uint32_t score;
    int32_t date; /* yyyymmdd, -1 = null */
    uint64_t id;  /* Stash id */
};

static int by_score_date(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->date != y->date)
        return x->date > y->date ? -1 : 1; /* DESC, nulls last */
    return (x->id > y->id) - (x->id < y->id);
}

static int by_score_only(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->docid > y->docid) - (x->docid < y->docid);
}

static enum cm_status fill_date(struct kv_txn *t, struct cand *c)
{
    struct kv_scene sc;
    enum cm_status st = kv_scene_get(t, c->docid, &sc);
    if (st != CM_OK)
        return st;
    c->date = sc.date.year > 0
                  ? sc.date.year * 10000 + sc.date.month * 100 + sc.date.day
                  : -1;
    c->id = sc.id;
    kv_scene_fini(&sc);
    return CM_OK;
}

static enum cm_status parse_page(struct api_req *req, struct api_resp *resp,
                                 long *page)
{
    const char *p = api_req_arg(req, "page");
    char *end;
    long v;
    *page = 1;
    if (!p || !*p)
        return CM_OK;
    errno = 0;
    v = strtol(p, &end, 10);
    if (errno || *end || end == p || v < 1 || v > CM_MAX_PAGE)
        return api_fail(resp, CM_INVALID, "page must be a positive integer",
                        "page");
    *page = v;
    return CM_OK;
}

enum cm_status api_h_similar(struct api_req *req, struct api_resp *resp)
{
    enum cm_status st;
    struct kv_txn *t;
    struct kv_scene sc;
    bool have = false;
    uint32_t docid;
    struct collect c;
    struct cand *cands = NULL;
    size_t ncand = 0, total, from, to;
    uint32_t *page_docs = NULL;
    struct cm_buf base;
    long page;

    memset(&c, 0, sizeof c);
    cm_buf_init(&base, CM_MAX_CONFIG_VALUE + 16);
    TRY(parse_page(req, resp, &page));
    TRY(api_req_txn(req, &t));
    st = kv_docid_of(t, req->scene_id, &docid);
    if (st == CM_NOTFOUND) {
        st = api_fail(resp, CM_NOTFOUND, "Scene not found", "id");
        goto out;
    }
    if (st != CM_OK)
        goto out;
    TRY(kv_scene_get(t, docid, &sc));
    have = true;
    c.self = docid;
    c.st = CM_OK;
    c.weight = 3;
    for (uint32_t i = 0; i < sc.n_performers && c.st == CM_OK; i++)
        TRY(kv_scenes_with(t, KV_PERFORMER, sc.performers[i].id, collect_fn,
                           &c));
    c.weight = 2;
    if (sc.studio.id && c.st == CM_OK)
        TRY(kv_scenes_with(t, KV_STUDIO, sc.studio.id, collect_fn, &c));
    c.weight = 1;
    for (uint32_t i = 0; i < sc.n_tags && c.st == CM_OK; i++)
        TRY(kv_scenes_with(t, KV_TAG, sc.tags[i].id, collect_fn, &c));
    TRY(c.st);

    /* Sum weights per docid. */
    if (c.n > 1)
        qsort(c.v, c.n, sizeof *c.v, by_docid);
    cands = cm_malloc((c.n + 1) * sizeof *cands);
    if (!cands) {
        st = CM_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < c.n; i++) {
        if (ncand && cands[ncand - 1].docid == c.v[i].docid) {
            cands[ncand - 1].score += c.v[i].weight;
            continue;
        }
        cands[ncand].docid = c.v[i].docid;
        cands[ncand].score = c.v[i].weight;
        cands[ncand].date = -1;
        cands[ncand].id = 0;
        ncand++;
    }
    /* Top SIMILAR_MAX by score, then date DESC (dates read only for the
     * candidates that can make the cut: score >= the cut-off score). */
    if (ncand > 1)
        qsort(cands, ncand, sizeof *cands, by_score_only);
    total = ncand;
    if (total > SIMILAR_MAX) {
        uint32_t cut = cands[SIMILAR_MAX - 1].score;
        size_t keep = SIMILAR_MAX;
        while (keep < ncand && cands[keep].score == cut)
            keep++;
        total = keep;
    }
    for (size_t i = 0; i < total; i++)
        TRY(fill_date(t, &cands[i]));
    if (total > 1)
        qsort(cands, total, sizeof *cands, by_score_date);
    if (total > SIMILAR_MAX)
        total = SIMILAR_MAX;

    from = (size_t)(page - 1) * SIMILAR_PER_PAGE;
    if (from > total)
        from = total;
    to = from + SIMILAR_PER_PAGE < total ? from + SIMILAR_PER_PAGE : total;
    page_docs = cm_malloc((to - from + 1) * sizeof *page_docs);
    if (!page_docs) {
        st = CM_NOMEM;
        goto out;
    }
    for (size_t i = from; i < to; i++)
        page_docs[i - from] = cands[i].docid;
    TRY(api_req_base_url(req, &base));
    resp->content_type = "application/json";
    TRY(cm_buf_puts(&resp->body, "{\"scenes\":"));
    TRY(put_scenes(req, t, page_docs, to - from, &base, &resp->body));
    TRY(cm_buf_printf(&resp->body,
                      ",\"count\":%zu,\"page\":%ld,"
                      "\"perPage\":%d}",
                      total, page, SIMILAR_PER_PAGE));
    resp->status = 200;
out:
    if (have)
        kv_scene_fini(&sc);
    cm_free(c.v);
    cm_free(cands);
    cm_free(page_docs);
    cm_buf_fini(&base);
    return st;
}
