/*
 * fuzz_json.c - libFuzzer target over the response document parser
 * (sync_json_parse) with cJSON as the second opinion: whatever we accept,
 * cJSON must accept too, with the same value (types, numbers, decoded
 * strings, member order and keys).  cJSON is more lenient (leading zeros,
 * "1."), so only that direction is checked here; test_sync_json holds the
 * strict oracle for the other.  Where cJSON has limits of its own (1000
 * levels of nesting, 63 bytes of a number's text) nothing is compared.
 *
 * Input: the bytes of a document.  Whatever they are, the parser must
 * return a status, never crash, leak or read out of bounds.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sync/sync_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int depth_of(struct sjv v)
{
    int d = 0;
    SJ_FOREACH(it, v)
    {
        int x = depth_of(it);
        if (x > d)
            d = x;
    }
    return sj_type(v) == SJ_ARRAY || sj_type(v) == SJ_OBJECT ? d + 1 : 0;
}

static int same(struct sjv v, const cJSON *c)
{
    const cJSON *e;
    switch (sj_type(v)) {
    case SJ_NULL: return cJSON_IsNull(c);
    case SJ_BOOL: return cJSON_IsBool(c) && sj_true(v) == !!cJSON_IsTrue(c);
    case SJ_NUMBER: return cJSON_IsNumber(c) && sj_num(v) == c->valuedouble;
    case SJ_STRING:
        return cJSON_IsString(c) &&
               strcmp(sj_str(v, NULL), c->valuestring) == 0;
    case SJ_ARRAY:
    case SJ_OBJECT:
        if (sj_type(v) == SJ_ARRAY ? !cJSON_IsArray(c) : !cJSON_IsObject(c))
            return 0;
        e = c->child;
        SJ_FOREACH(it, v)
        {
            if (!e || !same(it, e))
                return 0;
            if (sj_type(v) == SJ_OBJECT && strcmp(sj_key(it, NULL), e->string))
                return 0;
            e = e->next;
        }
        return e == NULL;
    default: return 0;
    }
}

/* A run of 64 or more bytes that could be a number's text. */
static int long_number(const uint8_t *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        run = strchr("0123456789+-.eE", p[i]) && p[i] ? run + 1 : 0;
        if (run >= 64)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sync_json *d = NULL;
    char err[160];
    cJSON *c;

    if (sync_json_parse((const char *)data, size, &d, err, sizeof err) != CM_OK)
        return 0;
    if (depth_of(sj_root(d)) < 1000 && !long_number(data, size)) {
        c = cJSON_ParseWithLength((const char *)data, size);
        if (!c || !same(sj_root(d), c))
            abort();
        cJSON_Delete(c);
    }
    sync_json_free(d);
    return 0;
}
