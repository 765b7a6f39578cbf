/*
 * fuzz_api_request.c - libFuzzer target over api/'s request parsing:
 * the input is a raw request head plus body,
 *
 *   METHOD SP TARGET [SP VERSION] LF
 *   (Header: value LF)*
 *   LF
 *   body
 *
 * which goes through api_method_parse, api_parse_target (path, percent
 * decoding, query arguments), cookie/bearer auth, the router and every
 * handler's body parsing (idx_query_parse for scenes, the entity
 * envelopes, login, sync trigger) with no store: handlers that reach the
 * store answer CM_UNSUPPORTED.  Whatever the bytes, it must not crash,
 * leak or read out of bounds, and every answer must be a status with a
 * JSON body for errors.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_handlers.h"
#include "api/api_status.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cm_config cfg;
static struct api_ctx ctx;
static int inited;

static void init(void)
{
    if (inited)
        return;
    inited = 1;
    cm_json_init();
    if (cm_config_init(&cfg) != CM_OK)
        abort();
    cfg.token = cm_strdup("fuzz-token");
    ctx.cfg = &cfg;
    atomic_init(&ctx.ready, true);
    api_auth_init(&ctx);
    if (api_metrics_new(&ctx.metrics) != CM_OK)
        abort();
}

static size_t line_end(const char *p, size_t n, size_t from)
{
    while (from < n && p[from] != '\n')
        from++;
    return from;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    char method[16], *store = NULL, *heads = NULL, *body = NULL;
    struct api_req req;
    struct api_resp resp;
    size_t e, sp, sp2, i, hn = 0;
    enum cm_status st;

    init();
    if (size > CM_MAX_REQUEST_BODY + CM_MAX_URL_LEN)
        return 0;
    memset(&req, 0, sizeof req);
    api_resp_init(&resp);
    req.ctx = &ctx;
    req.cfg = &cfg;
    req.subpath = "";
    atomic_init(&req.async_state, 0);

    e = line_end(p, size, 0);
    for (sp = 0; sp < e && p[sp] != ' '; sp++)
        ;
    if (sp == 0 || sp >= sizeof method || sp >= e)
        goto out;
    memcpy(method, p, sp);
    method[sp] = '\0';
    req.method_str = method;
    req.method = api_method_parse(method);
    for (sp2 = sp + 1; sp2 < e && p[sp2] != ' '; sp2++)
        ;
    store = malloc(sp2 - sp + 2);
    if (!store)
        goto out;
    if (api_parse_target(p + sp + 1, sp2 - sp - 1, store, sp2 - sp + 2, &req) !=
        CM_OK)
        goto out;
    assert(req.path && req.path[0] == '/');
    assert(req.n_args <= API_MAX_ARGS);

    /* Headers: a NUL-terminated copy, split in place. */
    i = e + 1;
    heads = malloc(size + 1);
    if (!heads)
        goto out;
    memcpy(heads, p, size);
    heads[size] = '\0';
    while (i < size) {
        size_t le = line_end(p, size, i);
        char *colon;
        if (le == i)
            break;
        heads[le] = '\0';
        colon = memchr(heads + i, ':', le - i);
        if (colon && hn < API_MAX_REQ_HEADERS) {
            *colon = '\0';
            req.hdrs[hn].name = heads + i;
            req.hdrs[hn].value = colon + 1 + (colon[1] == ' ');
            hn++;
        }
        i = le + 1;
    }
    req.n_hdrs = (unsigned)hn;
    i = i < size ? i + 1 : size;
    body = malloc(size - i + 1);
    if (!body)
        goto out;
    memcpy(body, p + i, size - i);
    body[size - i] = '\0';
    req.body = body;
    req.body_len = size - i;

    req.authenticated = api_auth_ok(&req);
    st = api_route(&req, &resp);
    if (st != CM_OK)
        api_resp_from_status(&resp, st);
    assert(req.txn == NULL);
    if (st != CM_OK) {
        assert(resp.status >= 400 && resp.status < 600);
        assert(resp.body.len == 0 || resp.body.data[0] == '{');
    }
out:
    api_resp_fini(&resp);
    free(store);
    free(heads);
    free(body);
    return 0;
}
