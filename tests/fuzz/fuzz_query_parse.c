/*
 * fuzz_query_parse.c - the scene query parser (request bodies are
 * untrusted).  Input: a JSON request body {filter, scene_filter, ids};
 * idx_query_parse() runs on its `filter` and `scene_filter` members and
 * idx_query_set_ids() on `ids`.  Must never crash or leak; an accepted
 * query must be evaluable by the oracle on an empty scene, and a rejected
 * one must name a field or say why.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "index/idx.h"
#include "index/idx_filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct idx_query *q = NULL;
    struct idx_error err;
    cJSON *root;

    cm_json_init();
    if (size > CM_MAX_REQUEST_BODY)
        return 0;
    root = cJSON_ParseWithLength((const char *)data, size);
    if (!root)
        return 0;
    const cJSON *ff = cJSON_IsObject(root)
                          ? cJSON_GetObjectItemCaseSensitive(root, "filter")
                          : NULL;
    const cJSON *sf =
        cJSON_IsObject(root)
            ? cJSON_GetObjectItemCaseSensitive(root, "scene_filter")
            : root;
    enum cm_status st = idx_query_parse(ff, sf, 40, &q, &err);
    if (st == CM_OK) {
        assert(q);
        assert(q->page >= 1 && q->page <= CM_MAX_PAGE);
        assert(q->per_page >= 0 && q->per_page <= CM_MAX_PER_PAGE);
        assert(q->q_len <= CM_MAX_Q_LEN);
        struct kv_scene sc;
        memset(&sc, 0, sizeof sc);
        sc.id = 1;
        sc.rating100 = -1;
        sc.interactive_speed = -1;
        sc.play_duration = sc.resume_time = -1;
        struct idx_match_ctx ctx;
        idx_match_ctx_mem(&ctx, NULL, 0);
        (void)idx_filter_match(q->filter, &sc, &ctx);
        (void)idx_q_match(q, &sc);
        idx_match_ctx_fini(&ctx);
        if (cJSON_IsObject(root)) {
            st = idx_query_set_ids(
                q, cJSON_GetObjectItemCaseSensitive(root, "ids"), &err);
            assert(st == CM_OK || st == CM_INVALID || st == CM_NOMEM);
        }
        idx_query_free(q);
    } else {
        assert(!q);
        assert(st == CM_INVALID || st == CM_NOMEM);
        assert(st == CM_NOMEM || err.message[0] != '\0');
    }
    cJSON_Delete(root);
    return 0;
}
