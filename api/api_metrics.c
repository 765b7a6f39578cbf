/*
 * api_metrics.c - request counters and latency histograms per route
 * (C11 atomics, lock-free), GET /metrics in Prometheus text format, and
 * GET /api/health.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"

static const unsigned codes[] = {200, 204, 206, 304, 400, 401, 403, 404,
                                 405, 413, 414, 416, 500, 502, 503, 0};
#define N_CODES (sizeof codes / sizeof codes[0]) /* last = other */
static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                0.005,  0.01,    0.025,  0.05,  0.1,
                                0.25,   0.5,     1,      2.5,   10};
#define N_BOUNDS (sizeof bounds / sizeof bounds[0])

static const char *const route_names[] = {
#define API_X(id, name) name,
    API_ROUTE_LIST(API_X)
#undef API_X
};

struct route_stats {
    atomic_uint_fast64_t by_code[N_CODES];
    atomic_uint_fast64_t bucket[N_BOUNDS + 1]; /* last = +Inf */
    atomic_uint_fast64_t sum_us;
    atomic_uint_fast64_t count;
};

struct api_metrics {
    struct route_stats r[API_R_COUNT];
};

enum cm_status api_metrics_new(struct api_metrics **out)
{
    struct api_metrics *m = cm_calloc(1, sizeof *m);
    *out = m;
    return m ? CM_OK : CM_NOMEM;
}

void api_metrics_free(struct api_metrics *m)
{
    cm_free(m);
}

void api_metrics_observe(struct api_metrics *m, enum api_route_id route,
                         unsigned status, double seconds)
{
    struct route_stats *r;
    size_t c = N_CODES - 1, b = N_BOUNDS;
    if (!m || (unsigned)route >= API_R_COUNT)
        return;
    r = &m->r[route];
    for (size_t i = 0; i + 1 < N_CODES; i++)
        if (codes[i] == status) {
            c = i;
            break;
        }
    for (size_t i = 0; i < N_BOUNDS; i++)
        if (seconds <= bounds[i]) {
            b = i;
            break;
        }
    atomic_fetch_add_explicit(&r->by_code[c], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_us, (uint_fast64_t)(seconds * 1e6 + 0.5),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

static uint64_t store_bytes(struct kv_store *s)
{
    char path[4096];
    struct stat st;
    if (!s)
        return 0;
    snprintf(path, sizeof path, "%s/data.mdb", kv_dir(s));
    if (stat(path, &st) != 0)
        return 0;
    /* Allocated bytes: the map file is sparse. */
    return (uint64_t)st.st_blocks * 512;
}

static enum cm_status scene_count(struct api_req *req, uint64_t *n)
{
    struct kv_txn *t;
    enum cm_status st = api_req_txn(req, &t);
    *n = 0;
    if (st != CM_OK)
        return st;
    return kv_scene_count(t, n);
}

#define TRY(x)                                                                 \
    do {                                                                       \
        if ((st = (x)) != CM_OK)                                               \
            goto out;                                                          \
    } while (0)

enum cm_status api_h_metrics(struct api_req *req, struct api_resp *resp)
{
    struct api_metrics *m = req->ctx->metrics;
    struct cm_buf *b = &resp->body;
    enum cm_status st;
    uint64_t scenes = 0;

    TRY(cm_buf_puts(b, "# HELP peekd_http_requests_total HTTP requests by "
                       "route and status.\n"
                       "# TYPE peekd_http_requests_total counter\n"));
    for (unsigned r = 0; r < API_R_COUNT; r++)
        for (size_t c = 0; c < N_CODES; c++) {
            uint64_t v = atomic_load(&m->r[r].by_code[c]);
            if (!v)
                continue;
            if (codes[c])
                TRY(cm_buf_printf(b,
                                  "peekd_http_requests_total{route=\"%s\","
                                  "status=\"%u\"} %llu\n",
                                  route_names[r], codes[c],
                                  (unsigned long long)v));
            else
                TRY(cm_buf_printf(b,
                                  "peekd_http_requests_total{route=\"%s\","
                                  "status=\"other\"} %llu\n",
                                  route_names[r], (unsigned long long)v));
        }
    TRY(cm_buf_puts(b, "# HELP peekd_http_request_duration_seconds Request "
                       "latency by route.\n"
                       "# TYPE peekd_http_request_duration_seconds "
                       "histogram\n"));
    for (unsigned r = 0; r < API_R_COUNT; r++) {
        uint64_t cum = 0, count = atomic_load(&m->r[r].count);
        if (!count)
            continue;
        for (size_t i = 0; i <= N_BOUNDS; i++) {
            cum += atomic_load(&m->r[r].bucket[i]);
            if (i < N_BOUNDS)
                TRY(cm_buf_printf(b,
                                  "peekd_http_request_duration_seconds_"
                                  "bucket{route=\"%s\",le=\"%g\"} %llu\n",
                                  route_names[r], bounds[i],
                                  (unsigned long long)cum));
            else
                TRY(cm_buf_printf(b,
                                  "peekd_http_request_duration_seconds_"
                                  "bucket{route=\"%s\",le=\"+Inf\"} "
                                  "%llu\n",
                                  route_names[r], (unsigned long long)cum));
        }
        TRY(cm_buf_printf(
            b,
            "peekd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
            "peekd_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            route_names[r], (double)atomic_load(&m->r[r].sum_us) / 1e6,
            route_names[r], (unsigned long long)cum));
    }
    st = scene_count(req, &scenes);
    if (st != CM_OK && st != CM_UNSUPPORTED)
        goto out;
    TRY(cm_buf_printf(b,
                      "# TYPE peekd_scenes gauge\npeekd_scenes %llu\n"
                      "# TYPE peekd_store_bytes gauge\n"
                      "peekd_store_bytes %llu\n"
                      "# TYPE peekd_ready gauge\npeekd_ready %d\n",
                      (unsigned long long)scenes,
                      (unsigned long long)store_bytes(req->store),
                      atomic_load(&req->ctx->ready) ? 1 : 0));
    if (req->ctx->hooks.sync_metrics)
        TRY(req->ctx->hooks.sync_metrics(req->ctx->hooks.cls, b));
    if (req->ctx->images)
        TRY(api_images_metrics(req->ctx->images, b));
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->status = 200;
out:
    return st;
}

enum cm_status api_h_health(struct api_req *req, struct api_resp *resp)
{
    uint64_t scenes = 0;
    enum cm_status st = scene_count(req, &scenes);
    resp->content_type = "application/json";
    if (st != CM_OK) {
        resp->status = 503;
        return cm_buf_printf(&resp->body,
                             "{\"status\":\"error\",\"error\":\"%s\"}",
                             cm_status_str(st));
    }
    resp->status = 200;
    return cm_buf_printf(&resp->body,
                         "{\"status\":\"ok\",\"scenes\":%llu,\"ready\":%s,"
                         "\"store_bytes\":%llu}",
                         (unsigned long long)scenes,
                         atomic_load(&req->ctx->ready) ? "true" : "false",
                         (unsigned long long)store_bytes(req->store));
}
