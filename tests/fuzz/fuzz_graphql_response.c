/*
 * fuzz_graphql_response.c - libFuzzer target over the GraphQL response
 * parser (sync_parse_response) and the record mapping (sync_map_scene,
 * sync_map_entity) of every object it returns.
 *
 * Input: the HTTP status as the first byte (0 -> 200, 1 -> 401, 2 -> 422,
 * 3 -> 503, else 200) then the response body.  Whatever the bytes, the
 * code must return a status, never crash or leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/cm_limits.h"
#include "sync/sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long codes[] = {200, 401, 422, 503};
    static const uint8_t types[] = {KV_TAG, KV_STUDIO, KV_PERFORMER, KV_GROUP,
                                    KV_GALLERY};
    struct sync_json *doc = NULL;
    struct sjv d;
    struct sync_arena a;
    bool retry;
    char err[256];
    long http;

    if (size < 1)
        return 0;
    http = data[0] < 4 ? codes[data[0]] : 200;
    if (sync_parse_response(http, (const char *)data + 1, size - 1, &doc, &d,
                            &retry, err, sizeof err) != CM_OK)
        return 0;
    sync_arena_init(&a, 64 * CM_MiB);
    SJ_FOREACH(res, d)
    {
        SJ_FOREACH(list, res)
        {
            SJ_FOREACH(it, list)
            {
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
    sync_json_free(doc);
    return 0;
}
