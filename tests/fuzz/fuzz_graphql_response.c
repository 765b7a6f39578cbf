/*
 * fuzz_graphql_response.c - libFuzzer target over the GraphQL response
 * parser (sync_parse_response) and the record mapping (sync_map_scene,
 * sync_map_entity) of every object it returns, with the response parsed
 * into a JSON arena as sync_run does (so ASan sees its blocks).
 *
 * Input: the HTTP status as the first byte (0 -> 200, 1 -> 401, 2 -> 422,
 * 3 -> 503, else 200) then the response body.  Whatever the bytes, the
 * code must return a status, never crash or leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "sync/sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long codes[] = {200, 401, 422, 503};
    static const uint8_t types[] = {KV_TAG, KV_STUDIO, KV_PERFORMER, KV_GROUP,
                                    KV_GALLERY};
    cJSON *d = NULL;
    const cJSON *res, *list;
    struct sync_arena a;
    struct cm_json_arena *ja = NULL;
    bool retry;
    char err[256];
    long http;

    if (size < 1)
        return 0;
    cm_json_init();
    if (cm_json_arena_new(CM_MAX_JSON_ARENA, &ja) != CM_OK)
        return 0;
    cm_json_arena_use(ja);
    http = data[0] < 4 ? codes[data[0]] : 200;
    if (sync_parse_response(http, (const char *)data + 1, size - 1, &d, &retry,
                            err, sizeof err) != CM_OK)
        goto out;
    sync_arena_init(&a, 64 * CM_MiB);
    cJSON_ArrayForEach (res, d) {
        cJSON_ArrayForEach (list, res) {
            const cJSON *it;
            if (!cJSON_IsArray(list))
                continue;
            cJSON_ArrayForEach (it, list) {
                struct kv_scene sc;
                struct kv_entity e;
                int ok = sync_map_scene(it, &a, &sc, err, sizeof err) == CM_OK;
                for (size_t i = 0; i < sizeof types; i++)
                    ok += sync_map_entity(it, types[i], &a, &e, err,
                                          sizeof err) == CM_OK;
                (void)ok;
                sync_arena_reset(&a);
            }
        }
    }
    sync_arena_fini(&a);
    cJSON_Delete(d);
out:
    cm_json_arena_use(NULL);
    cm_json_arena_free(ja);
    return 0;
}
