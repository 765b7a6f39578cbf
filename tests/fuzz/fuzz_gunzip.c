/*
 * fuzz_gunzip.c - libFuzzer target over the gzip body decoder
 * (sync_gunzip), with zlib as a second opinion.
 *
 * Input: the first byte sets the decoded-size limit (byte << 12, so 0 to
 * about 1 MiB), the rest is the response body.  Whatever the bytes, the
 * decoder must return a status, never crash or leak; a success stays
 * within the limit, and when zlib also decodes the body (members back to
 * back) both give the same bytes.  (The reverse is not asserted: zlib
 * checks an optional header CRC, FHCRC, that libdeflate skips.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/cm_buf.h"
#include "sync/sync.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* zlib's decoding of in[0..n) into out[0..cap): its length, or -1 when
 * invalid or longer than cap. */
static long zlib_gunzip(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z;
    size_t len = 0;
    long ret = -1;
    memset(&z, 0, sizeof z);
    if (n == 0 || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return -1;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    for (;;) {
        int rc;
        z.next_out = out + len;
        z.avail_out = (uInt)(cap - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0) {
                ret = (long)len;
                break;
            }
            if (inflateReset(&z) != Z_OK)
                break;
        } else if (rc != Z_OK || len == cap) {
            break;
        }
    }
    inflateEnd(&z);
    return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sync_gunzip *g = NULL;
    struct cm_buf b;
    size_t limit;
    enum cm_status st;

    if (size < 1)
        return 0;
    limit = (size_t)data[0] << 12;
    if (sync_gunzip_new(&g) != CM_OK)
        return 0;
    cm_buf_init(&b, limit);
    st = sync_gunzip(g, data + 1, size - 1, &b);
    if (st != CM_OK && b.len != 0)
        abort();
    if (st == CM_OK) {
        uint8_t *z = malloc(limit + 1);
        long zn;
        if (b.len > limit || !z)
            abort();
        zn = zlib_gunzip(data + 1, size - 1, z, limit + 1);
        if (zn >= 0 &&
            ((size_t)zn != b.len || (zn && memcmp(z, b.data, b.len) != 0)))
            abort();
        free(z);
    }
    cm_buf_fini(&b);
    sync_gunzip_free(g);
    return 0;
}
