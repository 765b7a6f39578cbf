/*
 * fuzz_ffprobe.c - the parsers of ffprobe output (a crafted media file
 * controls its tags and strings).  First byte selects the parser: even =
 * the JSON of -show_format -show_streams, odd = the packet CSV of the
 * keyframe scan.  Must never crash or leak; parsed values stay in range.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "hls/hls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0) {
        struct hls_media md;
        memset(&md, 0, sizeof md);
        if (hls_probe_parse((const char *)data + 1, size - 1, &md) == CM_OK) {
            assert(md.duration >= 0 && isfinite(md.duration));
            assert(md.width >= 0 && md.height >= 0);
            assert(strlen(md.vcodec) < sizeof md.vcodec);
            assert(md.fps >= 0 && md.fps < 1000);
        }
        hls_media_fini(&md);
    } else {
        double *kf = NULL;
        size_t n = 0;
        if (hls_keyframes_parse((const char *)data + 1, size - 1, &kf, &n) ==
            CM_OK) {
            for (size_t i = 1; i < n; i++)
                assert(kf[i] > kf[i - 1]);
        }
        cm_free(kf);
    }
    return 0;
}
