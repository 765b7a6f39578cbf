/*
 * fuzz_kv_record.c - libFuzzer target for the record codecs: decodes the
 * input as a scene and as an entity; whatever decodes is re-encoded,
 * decoded again and must compare equal (and re-encode to the same bytes).
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_limits.h"
#include "kv/kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void scene(const uint8_t *data, size_t size)
{
    struct kv_scene a, b;
    struct cm_buf e1, e2;
    if (kv_scene_decode(data, size, &a) != CM_OK) {
        kv_scene_fini(&a);
        return;
    }
    cm_buf_init(&e1, CM_MAX_RECORD);
    cm_buf_init(&e2, CM_MAX_RECORD);
    if (kv_scene_encode(&a, &e1) == CM_OK) {
        enum cm_status st = kv_scene_decode(e1.data, e1.len, &b);
        assert(st == CM_OK || st == CM_NOMEM);
        if (st == CM_OK) {
            assert(kv_scene_equal(&a, &b));
            if (kv_scene_encode(&b, &e2) == CM_OK)
                assert(e1.len == e2.len &&
                       memcmp(e1.data, e2.data, e1.len) == 0);
        }
        kv_scene_fini(&b);
    }
    cm_buf_fini(&e1);
    cm_buf_fini(&e2);
    kv_scene_fini(&a);
}

static void entity(const uint8_t *data, size_t size)
{
    struct kv_entity a, b;
    struct cm_buf e1;
    if (kv_entity_decode(data, size, &a) != CM_OK) {
        kv_entity_fini(&a);
        return;
    }
    cm_buf_init(&e1, CM_MAX_RECORD);
    if (kv_entity_encode(&a, &e1) == CM_OK) {
        enum cm_status st = kv_entity_decode(e1.data, e1.len, &b);
        assert(st == CM_OK || st == CM_NOMEM);
        if (st == CM_OK)
            assert(kv_entity_equal(&a, &b));
        kv_entity_fini(&b);
    }
    cm_buf_fini(&e1);
    kv_entity_fini(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    scene(data, size);
    entity(data, size);
    return 0;
}
