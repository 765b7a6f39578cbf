/*
 * test_sync_gzip.c - the gzip body decoder (sync_gzip.c).
 *
 * Inputs are made with zlib's deflate (gzip wrapper), an implementation
 * independent of libdeflate; decoded bytes are compared with the original
 * bytes, and zlib's inflate (members back to back, as gunzip does) is the
 * oracle for every mangled input: ours succeeds exactly when zlib does,
 * with the same bytes.  Covers sizes around the 64 KiB guess step, ISIZE
 * trailers that are no good as a size guess (multi-member bodies) or that
 * lie (rejected by both), truncation at every byte, flipped bytes, not-gzip
 * bodies, the size limit at its exact boundary, allocation failures.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_limits.h"
#include "sync/sync.h"
#include "tests/lib/testutil.h"

struct bytes {
    uint8_t *p;
    size_t n;
};

static uint64_t rng = 0x243f6a8885a308d3ULL;

static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

/* n bytes of scene-page-like JSON text, or of noise when noisy. */
static struct bytes make_input(size_t n, int noisy)
{
    static const char *words[] = {"{\"id\":\"", "\",\"title\":\"",
                                  "scene",      "\"files\":[{\"size\":",
                                  "},",         "Quirk",
                                  "performer",  "2026-01-05T10:00:00Z",
                                  " ",          "tags",
                                  "]}"};
    struct bytes b = {malloc(n ? n : 1), n};
    size_t i = 0;
    ck_assert_ptr_nonnull(b.p);
    while (i < n) {
        if (noisy) {
            b.p[i++] = (uint8_t)(next() >> 56);
            continue;
        }
        const char *w = words[next() % (sizeof words / sizeof words[0])];
        for (size_t k = 0; w[k] && i < n; k++)
            b.p[i++] = (uint8_t)w[k];
        if (i < n && next() % 3 == 0)
            b.p[i++] = (uint8_t)('0' + next() % 10);
    }
    return b;
}

/* in as one gzip member, deflated by zlib at level. */
static struct bytes zgzip(const uint8_t *in, size_t n, int level)
{
    z_stream z;
    struct bytes out;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8,
                                  Z_DEFAULT_STRATEGY),
                     Z_OK);
    out.n = deflateBound(&z, n) + 64;
    out.p = malloc(out.n);
    ck_assert_ptr_nonnull(out.p);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out.p;
    z.avail_out = (uInt)out.n;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    out.n = z.total_out;
    deflateEnd(&z);
    return out;
}

static void cat(struct bytes *a, const struct bytes *b)
{
    uint8_t *p = realloc(a->p, a->n + b->n + 1);
    ck_assert_ptr_nonnull(p);
    memcpy(p + a->n, b->p, b->n);
    a->p = p;
    a->n += b->n;
}

/* zlib's verdict on in[0..n): gzip members back to back, like gunzip.
 * Returns 1 with the bytes in *out (caller frees), 0 when invalid. */
static int zgunzip(const uint8_t *in, size_t n, struct bytes *out)
{
    z_stream z;
    size_t cap = 4096, len = 0;
    int rc, ok = 0;
    memset(&z, 0, sizeof z);
    out->p = malloc(cap);
    out->n = 0;
    ck_assert_ptr_nonnull(out->p);
    ck_assert_int_eq(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    if (n == 0)
        goto out;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            out->p = realloc(out->p, cap);
            ck_assert_ptr_nonnull(out->p);
        }
        z.next_out = out->p + len;
        z.avail_out = (uInt)(cap - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0) {
                ok = 1;
                break;
            }
            ck_assert_int_eq(inflateReset(&z), Z_OK);
        } else if (rc != Z_OK) {
            break; /* Z_BUF_ERROR (input ran out), Z_DATA_ERROR, ... */
        }
    }
out:
    inflateEnd(&z);
    out->n = ok ? len : 0;
    return ok;
}

/* Runs our decoder on in with limit max; OUT *got (borrowed from b). */
static enum cm_status ours(struct sync_gunzip *g, const struct bytes *in,
                           size_t max, struct cm_buf *b)
{
    cm_buf_fini(b);
    cm_buf_init(b, max);
    return sync_gunzip(g, in->p, in->n, b);
}

/* Ours agrees with zlib on in: both reject, or both give the same bytes
 * (and, when want is given, those are want). */
static void agree(struct sync_gunzip *g, const struct bytes *in,
                  const struct bytes *want, const char *what)
{
    struct cm_buf b;
    struct bytes z;
    int zok = zgunzip(in->p, in->n, &z);
    enum cm_status st;
    cm_buf_init(&b, CM_MAX_GRAPHQL_RESPONSE);
    st = ours(g, in, CM_MAX_GRAPHQL_RESPONSE, &b);
    ck_assert_msg(st == (zok ? CM_OK : CM_CORRUPT),
                  "%s: ours %s, zlib %s (%zu bytes in)", what,
                  cm_status_str(st), zok ? "ok" : "invalid", in->n);
    if (zok) {
        ck_assert_uint_eq(b.len, z.n);
        ck_assert(z.n == 0 || memcmp(b.data, z.p, z.n) == 0);
        ck_assert_int_eq(b.data[b.len], '\0');
    } else {
        ck_assert_uint_eq(b.len, 0);
    }
    if (want) {
        ck_assert_msg(zok, "%s: zlib rejects its own output", what);
        ck_assert_uint_eq(b.len, want->n);
        ck_assert(want->n == 0 || memcmp(b.data, want->p, want->n) == 0);
    }
    cm_buf_fini(&b);
    free(z.p);
}

static struct sync_gunzip *new_gz(void)
{
    struct sync_gunzip *g;
    ck_assert_int_eq(sync_gunzip_new(&g), CM_OK);
    return g;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static const size_t SIZES[] = {0,     1,      100,     65535,          65536,
                               65537, 200000, 1048593, 3 * 1048576 + 5};

START_TEST(roundtrip_sizes)
{
    static const int levels[] = {0, 1, 4, 9};
    struct sync_gunzip *g = new_gz();
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++)
        for (int noisy = 0; noisy < 2; noisy++)
            for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
                struct bytes in = make_input(SIZES[i], noisy);
                struct bytes gz = zgzip(in.p, in.n, levels[l]);
                char what[96];
                snprintf(what, sizeof what, "%zu bytes, noisy %d, level %d",
                         in.n, noisy, levels[l]);
                agree(g, &gz, &in, what);
                free(in.p);
                free(gz.p);
            }
    sync_gunzip_free(g);
}
END_TEST

/* Multi-member bodies: the trailer's ISIZE (the last member's) is no good
 * as a size guess: too small, zero, or too large for the first member. */
START_TEST(multi_member)
{
    static const struct {
        size_t size[3];
        int members;
    } shapes[] = {
        {{1048576, 10, 0}, 2}, /* guess 10: grows by doubling */
        {{300000, 0, 0}, 2},   /* guess 0 */
        {{5, 2000000, 0}, 2},  /* guess larger than the first member */
        {{0, 0, 0}, 3},        /* three empty members */
        {{70000, 1, 70000}, 3},
    };
    struct sync_gunzip *g = new_gz();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        struct bytes all = {NULL, 0}, body = {NULL, 0};
        for (int m = 0; m < shapes[s].members; m++) {
            struct bytes in = make_input(shapes[s].size[m], m == 1);
            struct bytes gz = zgzip(in.p, in.n, 4);
            cat(&all, &in);
            cat(&body, &gz);
            free(in.p);
            free(gz.p);
        }
        agree(g, &body, &all, "multi-member");
        free(all.p);
        free(body.p);
    }
    sync_gunzip_free(g);
}
END_TEST

/* A single member whose ISIZE lies (too small, too large, zero, past any
 * deflate ratio) is not valid gzip, for zlib as for us: rejected cleanly,
 * without allocating the lie. */
START_TEST(isize_lies)
{
    static const uint32_t lies[] = {0, 1, 65535, 0x7fffffffu, 0xffffffffu};
    struct sync_gunzip *g = new_gz();
    struct bytes in = make_input(150000, 0);
    struct bytes gz = zgzip(in.p, in.n, 4);
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        struct bytes bad = {malloc(gz.n), gz.n};
        struct cm_buf b;
        ck_assert_ptr_nonnull(bad.p);
        memcpy(bad.p, gz.p, gz.n);
        put_le32(bad.p + bad.n - 4, lies[i]);
        agree(g, &bad, NULL, "lying ISIZE");
        /* a lie past 1032:1 is not used as the first size */
        cm_buf_init(&b, CM_MAX_GRAPHQL_RESPONSE);
        ck_assert_int_eq(sync_gunzip(g, bad.p, bad.n, &b), CM_CORRUPT);
        ck_assert_uint_le(b.cap, 8 * (size_t)4 * 1048576);
        cm_buf_fini(&b);
        free(bad.p);
    }
    free(in.p);
    free(gz.p);
    sync_gunzip_free(g);
}
END_TEST

START_TEST(truncated_everywhere)
{
    struct sync_gunzip *g = new_gz();
    struct bytes in = make_input(3000, 0);
    struct bytes gz = zgzip(in.p, in.n, 4);
    struct bytes big_in = make_input(400000, 0);
    struct bytes big = zgzip(big_in.p, big_in.n, 4);
    struct bytes two = {NULL, 0};
    cat(&two, &gz);
    cat(&two, &gz);
    for (size_t cut = 0; cut < gz.n; cut++) {
        struct bytes t = {gz.p, cut};
        agree(g, &t, NULL, "truncated");
    }
    for (size_t cut = gz.n + 1; cut < two.n; cut++) {
        struct bytes t = {two.p, cut}; /* second member cut */
        agree(g, &t, NULL, "second member truncated");
    }
    for (size_t cut = 0; cut < big.n; cut += 997 + next() % 4000) {
        struct bytes t = {big.p, cut};
        agree(g, &t, NULL, "big truncated");
    }
    {
        struct bytes t = {big.p, big.n - 1};
        agree(g, &t, NULL, "last byte cut");
    }
    free(in.p);
    free(gz.p);
    free(big_in.p);
    free(big.p);
    free(two.p);
    sync_gunzip_free(g);
}
END_TEST

/* A flipped CRC byte is rejected; flipped bytes anywhere else agree with
 * zlib (rejected, save a harmless header byte such as MTIME or OS). */
START_TEST(corrupt_bytes)
{
    struct sync_gunzip *g = new_gz();
    struct bytes in = make_input(50000, 0);
    struct bytes gz = zgzip(in.p, in.n, 6);
    struct bytes bad = {malloc(gz.n), gz.n}, z;
    ck_assert_ptr_nonnull(bad.p);
    for (size_t k = 0; k < 4; k++) {
        memcpy(bad.p, gz.p, gz.n);
        bad.p[gz.n - 8 + k] ^= 0x01; /* CRC-32 */
        agree(g, &bad, NULL, "bad CRC");
        ck_assert_int_eq(zgunzip(bad.p, bad.n, &z), 0); /* zlib agrees */
        free(z.p);
    }
    for (int i = 0; i < 600; i++) {
        size_t at = i < (int)gz.n && i < 40 ? (size_t)i : next() % gz.n;
        memcpy(bad.p, gz.p, gz.n);
        bad.p[at] ^= (uint8_t)(1u << (next() % 8));
        agree(g, &bad, NULL, "flipped bit");
    }
    free(bad.p);
    free(gz.p);
    free(in.p);
    sync_gunzip_free(g);
}
END_TEST

START_TEST(not_gzip)
{
    static const char *texts[] = {
        "",
        "{\"data\":{}}",
        "\x1f",
        "\x1f\x8b",
        "\x1f\x8b\x08",
        "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", /* header only */
        "\x1f\x8b\x07\x00\x00\x00\x00\x00\x00\x03\x03\x00\x00\x00\x00\x00"
        "\x00\x00\x00\x00", /* CM 7 */
    };
    struct sync_gunzip *g = new_gz();
    struct bytes in = make_input(1000, 0), zl, ok;
    struct cm_buf b;
    cm_buf_init(&b, CM_MAX_GRAPHQL_RESPONSE);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct bytes t = {(uint8_t *)(uintptr_t)texts[i],
                          i == 0 ? 0 : strlen(texts[i])};
        if (i == sizeof texts / sizeof texts[0] - 1)
            t.n = 20;
        agree(g, &t, NULL, texts[i]);
    }
    ck_assert_int_eq(sync_gunzip(g, NULL, 0, &b), CM_CORRUPT);
    /* a zlib stream (RFC 1950) is not gzip */
    zl.n = compressBound(in.n);
    zl.p = malloc(zl.n);
    ck_assert_ptr_nonnull(zl.p);
    {
        uLongf n = zl.n;
        ck_assert_int_eq(compress(zl.p, &n, in.p, in.n), Z_OK);
        zl.n = n;
    }
    agree(g, &zl, NULL, "zlib stream");
    /* trailing bytes after a valid member: zeros, text, half a header */
    ok = zgzip(in.p, in.n, 4);
    {
        static const char *tails[] = {"\0\0\0\0", "\n", "garbage",
                                      "\x1f\x8b\x08"};
        for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
            struct bytes t = {NULL, 0};
            struct bytes tail = {(uint8_t *)(uintptr_t)tails[i],
                                 i == 0 ? 4 : strlen(tails[i])};
            cat(&t, &ok);
            cat(&t, &tail);
            agree(g, &t, NULL, "trailing bytes");
            free(t.p);
        }
    }
    /* and the decoder is still good after all that */
    agree(g, &ok, &in, "valid after errors");
    cm_buf_fini(&b);
    free(zl.p);
    free(ok.p);
    free(in.p);
    sync_gunzip_free(g);
}
END_TEST

START_TEST(size_limit)
{
    struct sync_gunzip *g = new_gz();
    struct bytes in = make_input(200000, 0);
    struct bytes gz = zgzip(in.p, in.n, 4);
    struct bytes two = {NULL, 0}, e = zgzip(in.p, 0, 4);
    struct cm_buf b;
    cm_buf_init(&b, 1);
    ck_assert_int_eq(ours(g, &gz, in.n, &b), CM_OK); /* exactly the limit */
    ck_assert_uint_eq(b.len, in.n);
    ck_assert(memcmp(b.data, in.p, in.n) == 0);
    ck_assert_int_eq(ours(g, &gz, in.n - 1, &b), CM_TOOBIG);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(ours(g, &gz, 1000, &b), CM_TOOBIG);
    ck_assert_int_eq(ours(g, &gz, 0, &b), CM_TOOBIG);
    ck_assert_int_eq(ours(g, &e, 0, &b), CM_OK); /* empty member, limit 0 */
    ck_assert_uint_eq(b.len, 0);
    /* over the limit only with the second member */
    cat(&two, &gz);
    cat(&two, &gz);
    ck_assert_int_eq(ours(g, &two, 2 * in.n, &b), CM_OK);
    ck_assert_int_eq(ours(g, &two, 2 * in.n - 1, &b), CM_TOOBIG);
    ck_assert_int_eq(ours(g, &two, in.n + 1, &b), CM_TOOBIG);
    cm_buf_fini(&b);
    free(in.p);
    free(gz.p);
    free(e.p);
    free(two.p);
    sync_gunzip_free(g);
}
END_TEST

/* Allocation N fails, N = 1, 2, ...: CM_NOMEM, never a crash or a leak
 * (ASan), until everything succeeds. */
START_TEST(alloc_failures)
{
    struct bytes in = make_input(300000, 0), ten = make_input(10, 1);
    struct bytes body = zgzip(in.p, in.n, 4), gz10 = zgzip(ten.p, ten.n, 4);
    int done = 0;
    cat(&body, &gz10); /* guess 10: several reallocations */
    for (long n = 1; n < 200 && !done; n++) {
        struct sync_gunzip *g = NULL;
        struct cm_buf b;
        enum cm_status st;
        cm_buf_init(&b, CM_MAX_GRAPHQL_RESPONSE);
        cm_alloc_fail_at(n, 1);
        st = sync_gunzip_new(&g);
        if (st == CM_OK)
            st = sync_gunzip(g, body.p, body.n, &b);
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK) {
            ck_assert_uint_eq(b.len, in.n + ten.n);
            ck_assert(memcmp(b.data, in.p, in.n) == 0);
            done = 1;
        } else {
            ck_assert_msg(st == CM_NOMEM, "n=%ld: %s", n, cm_status_str(st));
            ck_assert(g == NULL || b.len == 0);
        }
        sync_gunzip_free(g);
        cm_buf_fini(&b);
    }
    ck_assert(done);
    free(in.p);
    free(ten.p);
    free(body.p);
    free(gz10.p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync_gzip");
    TCase *tc = tcase_create("gzip");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, roundtrip_sizes);
    tcase_add_test(tc, multi_member);
    tcase_add_test(tc, isize_lies);
    tcase_add_test(tc, truncated_everywhere);
    tcase_add_test(tc, corrupt_bytes);
    tcase_add_test(tc, not_gzip);
    tcase_add_test(tc, size_limit);
    tcase_add_test(tc, alloc_failures);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
