/*
 * sync_gzip.c - whole-buffer decoding of gzip response bodies (RFC 1952)
 * with libdeflate, see sync.h.
 *
 * peekd buffers every Stash response before parsing it, so the body is
 * decoded in one call per gzip member instead of libcurl's streaming zlib:
 * libdeflate inflates a 1.7 MB scene page about 2.5 times faster and checks
 * each member's CRC-32 and ISIZE itself.  It needs the output size up
 * front: the first guess is the ISIZE trailer of the last member (the
 * whole body for the single member Stash sends), which is untrusted, so it
 * is ignored when no deflate stream could expand that much and the buffer
 * doubles, up to its limit, whenever a member does not fit.
 */
#include <libdeflate.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "sync/sync.h"

/* DEFLATE cannot expand more than 1032:1 (zlib's technical details): an
 * ISIZE past that ratio is a lie and not worth allocating for. */
#define MAX_RATIO 1032
/* Guess when the trailer is not believable: Stash's JSON is ~5:1. */
#define FALLBACK_RATIO 8
/* Smallest gzip member: 10-byte header, 2-byte empty block, 8 trailer. */
#define MIN_MEMBER 20
/* Smallest step when a member does not fit. */
#define MIN_GROW (64 * 1024)

struct sync_gunzip {
    struct libdeflate_decompressor *d;
};

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;

static void use_cm_alloc(void)
{
    /* libdeflate's only allocation is the decompressor itself; routing it
     * through cm_malloc lets the OOM-injection tests reach it. */
    libdeflate_set_memory_allocator(cm_malloc, cm_free);
}

enum cm_status sync_gunzip_new(struct sync_gunzip **out)
{
    struct sync_gunzip *g;

    *out = NULL;
    pthread_once(&alloc_once, use_cm_alloc);
    if (!(g = cm_calloc(1, sizeof *g)))
        return CM_NOMEM;
    if (!(g->d = libdeflate_alloc_decompressor())) {
        cm_free(g);
        return CM_NOMEM;
    }
    *out = g;
    return CM_OK;
}

void sync_gunzip_free(struct sync_gunzip *g)
{
    if (!g)
        return;
    libdeflate_free_decompressor(g->d);
    cm_free(g);
}

/* The first output size to try for in[0..len) (len >= MIN_MEMBER). */
static size_t first_guess(const uint8_t *in, size_t len)
{
    const uint8_t *t = in + len - 4;
    size_t isize = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 |
                   (size_t)t[3] << 24;
    size_t most = len <= SIZE_MAX / MAX_RATIO ? len * MAX_RATIO : SIZE_MAX;
    if (isize <= most)
        return isize;
    return len <= SIZE_MAX / FALLBACK_RATIO ? len * FALLBACK_RATIO : SIZE_MAX;
}

/* Makes out's free room (bytes past len, NUL excluded) at least want,
 * clamped to out->max.  CM_NOMEM. */
static enum cm_status make_room(struct cm_buf *out, size_t want)
{
    size_t room = out->max - out->len;
    return cm_buf_reserve(out, want < room ? want : room);
}

enum cm_status sync_gunzip(struct sync_gunzip *g, const void *in, size_t len,
                           struct cm_buf *out)
{
    const uint8_t *p = in;
    size_t pos = 0;
    enum cm_status st;

    cm_buf_reset(out);
    if (!p || len < MIN_MEMBER)
        return CM_CORRUPT;
    if ((st = make_room(out, first_guess(p, len))) != CM_OK)
        return st;
    while (pos < len) {
        size_t used = 0, got = 0, avail = out->cap - out->len - 1;
        enum libdeflate_result r = libdeflate_gzip_decompress_ex(
            g->d, p + pos, len - pos, out->data + out->len, avail, &used, &got);
        if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
            /* decode this member again into twice the room */
            size_t want = avail > SIZE_MAX / 2 ? SIZE_MAX : 2 * avail;
            if (avail >= out->max - out->len) {
                st = CM_TOOBIG;
                goto fail;
            }
            if ((st = make_room(out, want < MIN_GROW ? MIN_GROW : want)) !=
                CM_OK)
                goto fail;
            continue;
        }
        if (r != LIBDEFLATE_SUCCESS || used == 0) {
            st = CM_CORRUPT;
            goto fail;
        }
        pos += used;
        out->len += got;
    }
    out->data[out->len] = '\0';
    return CM_OK;
fail:
    cm_buf_reset(out);
    return st;
}
