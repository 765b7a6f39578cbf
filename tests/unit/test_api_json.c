/*
 * test_api_json.c - the printf-free JSON writer of api/ (api_json.c)
 * against independent oracles: numbers against the printf code it replaced
 * ("%.15g", then "%.17g" when that does not read back; snprintf "%lld" /
 * "%llu" for integers), strings against cm_buf_put_json_str (byte for
 * byte, including the bounded-buffer failures), dates against snprintf.
 * Every number must also be valid JSON that reads back to the same value.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_limits.h"
#include "tests/lib/testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The former api_json_double (printf based). */
static void ref_double(double v, char *out, size_t outlen)
{
    int n;
    if (!isfinite(v)) {
        snprintf(out, outlen, "null");
        return;
    }
    if (v == floor(v) && fabs(v) < 9e15) {
        snprintf(out, outlen, "%lld", (long long)v);
        return;
    }
    n = snprintf(out, outlen, "%.15g", v);
    if (n > 0 && (size_t)n < outlen && strtod(out, NULL) != v)
        snprintf(out, outlen, "%.17g", v);
}

static void check_double(double v)
{
    struct cm_buf b;
    char want[64];
    cm_buf_init(&b, 1024);
    ck_assert_int_eq(api_json_double(&b, v), CM_OK);
    ref_double(v, want, sizeof want);
    ck_assert_msg(strcmp(b.data, want) == 0, "%.17g: got %s want %s", v, b.data,
                  want);
    if (isfinite(v)) {
        /* valid JSON, same value */
        cJSON *j = cJSON_ParseWithLength(b.data, b.len);
        char *end;
        ck_assert_ptr_nonnull(j);
        ck_assert(cJSON_IsNumber(j));
        cJSON_Delete(j);
        ck_assert(strtod(b.data, &end) == v || (v == 0 && b.data[0] == '0'));
        ck_assert_ptr_eq(end, b.data + b.len);
    } else {
        ck_assert_uint_eq(api_fmt_double(v, want), 0);
    }
    cm_buf_fini(&b);
}

START_TEST(test_double_edges)
{
    static const double v[] = {0.0,
                               -0.0,
                               1,
                               -1,
                               0.5,
                               -0.5,
                               0.1,
                               0.2,
                               0.3,
                               1.0 / 3,
                               2.0 / 3,
                               29.97,
                               23.976,
                               59.94,
                               25,
                               30,
                               30000.0 / 1001,
                               24000.0 / 1001,
                               11.878,
                               1234.567,
                               0.001,
                               0.0001,
                               0.00012,
                               0.00009999,
                               1e-5,
                               1e-7,
                               5e-7,
                               1.5e-6,
                               123456789.123456,
                               999999999.999999,
                               1e9,
                               1e9 + 0.5,
                               1e9 - 0.5,
                               1e12 + 0.25,
                               9e15,
                               9e15 - 1,
                               9e15 + 2,
                               1e15 + 0.5,
                               9007199254740992.0,
                               9007199254740993.0,
                               1e16,
                               1e17,
                               1e21,
                               1e300,
                               -1e300,
                               DBL_MAX,
                               -DBL_MAX,
                               DBL_MIN,
                               DBL_TRUE_MIN,
                               4.9e-324,
                               2.2250738585072014e-308,
                               0.1 + 0.2,
                               100.0 / 3,
                               7200.123,
                               3599.999,
                               86400.001,
                               NAN,
                               -NAN,
                               INFINITY,
                               -INFINITY};
    _Static_assert(sizeof v / sizeof v[0] > 10, "edges");
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        check_double(v[i]);
        check_double(-v[i]);
    }
}
END_TEST

START_TEST(test_double_random)
{
    for (int i = 0; i < 200000; i++) {
        uint64_t r = rnd();
        double v;
        switch (i % 4) {
        case 0: /* a decimal with up to 7 places, like Stash's values */
        {
            int places = (int)(rnd() % 8);
            double scale = pow(10, places);
            v = (double)(int64_t)(r % 20000000000ull) / scale;
            if (rnd() & 1)
                v = -v;
            break;
        }
        case 1: /* any bit pattern */ memcpy(&v, &r, sizeof v); break;
        case 2: /* frame rates and durations */
            v = (double)(r % 100000) / (double)(1 + rnd() % 2000);
            break;
        default: /* around the fast path's bounds */
            v = ldexp((double)(r >> 11), (int)(rnd() % 90) - 70);
            break;
        }
        check_double(v);
    }
}
END_TEST

static void check_int(int64_t v)
{
    struct cm_buf b;
    char want[32];
    cm_buf_init(&b, 64);
    ck_assert_int_eq(api_json_i64(&b, v), CM_OK);
    snprintf(want, sizeof want, "%lld", (long long)v);
    ck_assert_str_eq(b.data, want);
    cm_buf_reset(&b);
    ck_assert_int_eq(api_json_u64(&b, (uint64_t)v), CM_OK);
    snprintf(want, sizeof want, "%llu", (unsigned long long)v);
    ck_assert_str_eq(b.data, want);
    cm_buf_reset(&b);
    ck_assert_int_eq(api_json_id(&b, (uint64_t)v), CM_OK);
    snprintf(want, sizeof want, "\"%llu\"", (unsigned long long)v);
    ck_assert_str_eq(b.data, want);
    cm_buf_fini(&b);
}

START_TEST(test_integers)
{
    /* sizes are int64: beyond 2^53 too */
    static const int64_t v[] = {0,
                                1,
                                -1,
                                9,
                                10,
                                99,
                                100,
                                101,
                                -100,
                                9007199254740992LL,
                                9007199254740993LL,
                                INT64_MAX,
                                INT64_MIN,
                                INT64_MIN + 1,
                                (int64_t)1 << 62,
                                1000000000000000000LL,
                                -999999999999999999LL};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        check_int(v[i]);
    for (int i = 0; i < 100000; i++) {
        uint64_t r = rnd();
        check_int((int64_t)(r >> (rnd() % 64)));
    }
}
END_TEST

/* Random bytes biased towards what escaping cares about. */
static size_t rand_bytes(char *s, size_t max)
{
    static const char special[] = "\"\\\n\r\t\b\f\x01\x1f\x7f/";
    static const char *const utf8[] = {
        "\xC3\xA9",     "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
        "\xED\xA0\x80", "\xC0\xAF",     "\xF4\x90\x80\x80",
        "\xE0\x80\xAF", "\xC3",         "\xE2\x82",
        "\xF0\x9F\x98", "\x80",         "\xFF"};
    size_t n = 0, len = rnd() % max;
    while (n < len) {
        unsigned k = (unsigned)(rnd() % 10);
        if (k < 5) {
            s[n++] = (char)(' ' + rnd() % 95);
        } else if (k < 7) {
            s[n++] = special[rnd() % (sizeof special - 1)];
        } else if (k < 9) {
            const char *u = utf8[rnd() % (sizeof utf8 / sizeof utf8[0])];
            size_t ul = strlen(u);
            if (n + ul > len)
                break;
            memcpy(s + n, u, ul);
            n += ul;
        } else {
            s[n++] = (char)(rnd() & 0xFF);
        }
    }
    return n;
}

START_TEST(test_strings_vs_cm_buf)
{
    char s[300];
    for (int i = 0; i < 100000; i++) {
        size_t n = rand_bytes(s, sizeof s);
        size_t max = i % 3 ? 4096 : 1 + rnd() % 700; /* some too small */
        struct cm_buf a, b;
        enum cm_status sa, sb;
        cm_buf_init(&a, max);
        cm_buf_init(&b, max);
        /* a common prefix, so the escape appends mid-buffer */
        if (i % 2) {
            ck_assert_int_eq(cm_buf_append(&a, "[1,", 3) == CM_OK,
                             cm_buf_append(&b, "[1,", 3) == CM_OK);
        }
        sa = cm_buf_put_json_str(&a, s, n);
        sb = api_json_strn(&b, s, n);
        ck_assert_int_eq(sa, sb);
        ck_assert_uint_eq(a.len, b.len);
        if (a.len)
            ck_assert_mem_eq(a.data, b.data, a.len);
        if (b.data)
            ck_assert_int_eq(b.data[b.len], '\0');
        if (sb == CM_OK) {
            cJSON *j = cJSON_ParseWithLength(b.data + (i % 2 ? 3 : 0),
                                             b.len - (i % 2 ? 3 : 0));
            ck_assert_ptr_nonnull(j);
            ck_assert(cJSON_IsString(j));
            cJSON_Delete(j);
        }
        cm_buf_fini(&a);
        cm_buf_fini(&b);
    }
}
END_TEST

START_TEST(test_strings_fixed)
{
    struct cm_buf b;
    struct kv_str none = {NULL, 0}, s = {"a\"b\\c\n\x01\xC3\xA9\xFF", 10};
    cm_buf_init(&b, 256);
    ck_assert_int_eq(api_json_str(&b, none), CM_OK);
    ck_assert_str_eq(b.data, "null");
    cm_buf_reset(&b);
    ck_assert_int_eq(api_json_str(&b, s), CM_OK);
    ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\u0001\xC3\xA9\xEF\xBF\xBD\"");
    cm_buf_reset(&b);
    ck_assert_int_eq(api_json_strn(&b, "", 0), CM_OK);
    ck_assert_str_eq(b.data, "\"\"");
    cm_buf_fini(&b);

    /* Exactly at the limit: fits; one byte less: CM_TOOBIG, unchanged. */
    cm_buf_init(&b, 7);
    ck_assert_int_eq(api_json_strn(&b, "ab\"de", 5), CM_TOOBIG);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(api_json_strn(&b, "ab\"d", 4), CM_OK);
    ck_assert_str_eq(b.data, "\"ab\\\"d\"");
    cm_buf_fini(&b);
}
END_TEST

START_TEST(test_strings_oom)
{
    /* Every allocation of a growing escape may fail: the status says so
     * and the buffer keeps its old content. */
    char s[2000];
    for (size_t i = 0; i < sizeof s; i++)
        s[i] = i % 17 == 0 ? '"' : (char)('a' + i % 26);
    for (long n = 1; n < 10; n++) {
        struct cm_buf b;
        enum cm_status st;
        cm_buf_init(&b, CM_MAX_RESPONSE);
        ck_assert_int_eq(cm_buf_append(&b, "xy", 2), CM_OK);
        cm_alloc_fail_at(n, 1);
        st = api_json_strn(&b, s, sizeof s);
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK) {
            ck_assert_uint_gt(b.len, sizeof s);
        } else {
            ck_assert_int_eq(st, CM_NOMEM);
            ck_assert_uint_eq(b.len, 2);
            ck_assert_str_eq(b.data, "xy");
        }
        cm_buf_fini(&b);
    }
}
END_TEST

START_TEST(test_dates_and_put)
{
    struct cm_buf b;
    char want[64];
    cm_buf_init(&b, 64);
    for (int y = -1; y < 40000; y += 997)
        for (int m = 0; m < 256; m += 37)
            for (int d = 0; d < 256; d += 51) {
                struct kv_date dt = {(int16_t)y, (uint8_t)m, (uint8_t)d};
                if (y > 32767)
                    continue;
                cm_buf_reset(&b);
                ck_assert_int_eq(api_json_date(&b, dt), CM_OK);
                if (y <= 0)
                    snprintf(want, sizeof want, "null");
                else if (m && d)
                    snprintf(want, sizeof want, "\"%04d-%02u-%02u\"", y,
                             (unsigned)m, (unsigned)d);
                else if (m)
                    snprintf(want, sizeof want, "\"%04d-%02u\"", y,
                             (unsigned)m);
                else
                    snprintf(want, sizeof want, "\"%04d\"", y);
                ck_assert_str_eq(b.data, want);
            }
    cm_buf_fini(&b);

    /* api_put honours the bound like cm_buf_append. */
    cm_buf_init(&b, 5);
    ck_assert_int_eq(api_put(&b, "abc", 3), CM_OK);
    ck_assert_int_eq(api_put(&b, "de", 2), CM_OK);
    ck_assert_int_eq(api_put(&b, "f", 1), CM_TOOBIG);
    ck_assert_str_eq(b.data, "abcde");
    ck_assert_int_eq(API_LIT(&b, ""), CM_OK);
    cm_buf_fini(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api_json");
    TCase *tc = tcase_create("json");
    cm_json_init();
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_double_edges);
    tcase_add_test(tc, test_double_random);
    tcase_add_test(tc, test_integers);
    tcase_add_test(tc, test_strings_vs_cm_buf);
    tcase_add_test(tc, test_strings_fixed);
    tcase_add_test(tc, test_strings_oom);
    tcase_add_test(tc, test_dates_and_put);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
