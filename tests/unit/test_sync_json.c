/*
 * test_sync_json.c - the response document (sync_json.c).
 *
 * Two oracles, both independent of our parser:
 *  - cJSON reads every document we accept, and every value must be the
 *    same (types, numbers, decoded strings, member order and keys);
 *  - a strict RFC 8259 validator written here as plain recursive descent
 *    decides, for random documents and for random byte mutations of them,
 *    whether they are JSON; ours must accept exactly those.  (Its two
 *    documented liberties are shared: raw control bytes and bytes that
 *    are not UTF-8 are allowed inside strings, as cJSON allowed them; a
 *    raw NUL byte is not.)
 * Plus the accessors on hand-made documents, the token array outgrowing
 * its first guess, error messages, and allocation failures.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "sync/sync_json.h"
#include "tests/lib/testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(next() % n);
}

/* ---- the strict validator (oracle) ------------------------------------ */

struct vin {
    const char *p, *e;
    int depth;
};

static void v_ws(struct vin *v)
{
    while (v->p < v->e &&
           (*v->p == ' ' || *v->p == '\t' || *v->p == '\n' || *v->p == '\r'))
        v->p++;
}

static int v_hex(struct vin *v)
{
    int x = 0;
    for (int i = 0; i < 4; i++, v->p++) {
        char c = v->p < v->e ? *v->p : 0;
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= c - '0';
        else if (c >= 'a' && c <= 'f')
            x |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            x |= c - 'A' + 10;
        else
            return -1;
    }
    return x;
}

static int v_string(struct vin *v)
{
    if (v->p >= v->e || *v->p++ != '"')
        return 0;
    while (v->p < v->e) {
        char c = *v->p++;
        if (c == '"')
            return 1;
        if (c == '\0')
            return 0;
        if (c != '\\')
            continue;
        if (v->p >= v->e)
            return 0;
        c = *v->p++;
        if (c == 'u') {
            int h = v_hex(v);
            if (h < 0 || (h >= 0xDC00 && h <= 0xDFFF))
                return 0;
            if (h >= 0xD800 && h <= 0xDBFF) {
                int lo;
                if (v->e - v->p < 2 || v->p[0] != '\\' || v->p[1] != 'u')
                    return 0;
                v->p += 2;
                lo = v_hex(v);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return 0;
            }
        } else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
            return 0;
        }
    }
    return 0;
}

static int v_digits(struct vin *v)
{
    const char *s = v->p;
    while (v->p < v->e && *v->p >= '0' && *v->p <= '9')
        v->p++;
    return v->p > s;
}

static int v_value(struct vin *v);

static int v_number(struct vin *v)
{
    if (v->p < v->e && *v->p == '-')
        v->p++;
    if (v->p < v->e && *v->p == '0')
        v->p++;
    else if (!v_digits(v))
        return 0;
    if (v->p < v->e && *v->p == '.') {
        v->p++;
        if (!v_digits(v))
            return 0;
    }
    if (v->p < v->e && (*v->p == 'e' || *v->p == 'E')) {
        v->p++;
        if (v->p < v->e && (*v->p == '+' || *v->p == '-'))
            v->p++;
        if (!v_digits(v))
            return 0;
    }
    return 1;
}

static int v_word(struct vin *v, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(v->e - v->p) < n || memcmp(v->p, w, n) != 0)
        return 0;
    v->p += n;
    return 1;
}

static int v_value(struct vin *v)
{
    v_ws(v);
    if (v->p >= v->e)
        return 0;
    switch (*v->p) {
    case '"': return v_string(v);
    case 't': return v_word(v, "true");
    case 'f': return v_word(v, "false");
    case 'n': return v_word(v, "null");
    case '[':
    case '{': {
        char close = *v->p == '[' ? ']' : '}';
        int obj = close == '}';
        v->p++;
        v_ws(v);
        if (v->p < v->e && *v->p == close) {
            v->p++;
            return 1;
        }
        for (;;) {
            if (obj) {
                v_ws(v);
                if (!v_string(v))
                    return 0;
                v_ws(v);
                if (v->p >= v->e || *v->p++ != ':')
                    return 0;
            }
            if (!v_value(v))
                return 0;
            v_ws(v);
            if (v->p >= v->e)
                return 0;
            if (*v->p == close) {
                v->p++;
                return 1;
            }
            if (*v->p++ != ',')
                return 0;
        }
    }
    default: return v_number(v);
    }
}

static int strict_json(const char *s, size_t n)
{
    struct vin v = {s, s + n, 0};
    if (!v_value(&v))
        return 0;
    v_ws(&v);
    return v.p == v.e;
}

/* ---- random documents ------------------------------------------------- */

static void ws(struct cm_buf *b)
{
    static const char *const w[] = {"", "", "", " ", "\n", "\t ", "\r\n  "};
    ck_assert_int_eq(cm_buf_puts(b, w[pick(7)]), CM_OK);
}

static void gen_string(struct cm_buf *b)
{
    static const char *const parts[] = {
        "a",        "Zz",      "scene",   " ",
        "\\\"",     "\\\\",    "\\/",     "\\b",
        "\\f",      "\\n",     "\\r",     "\\t",
        "\\u00e9",  "\\u20AC", "\\u0041", "\\ud83d\\ude00",
        "\xc3\xa9", "\x01",    "0",       "é",
        "\\u0000x", "apikey=1"};
    unsigned n = pick(6);
    ck_assert_int_eq(cm_buf_putc(b, '"'), CM_OK);
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(
            cm_buf_puts(b, parts[pick(sizeof parts / sizeof parts[0])]), CM_OK);
    ck_assert_int_eq(cm_buf_putc(b, '"'), CM_OK);
}

static void gen_value(struct cm_buf *b, int depth)
{
    static const char *const nums[] = {"0",
                                       "-0",
                                       "7",
                                       "-12",
                                       "123456789012345",
                                       "1234567890123456789",
                                       "9007199254740993",
                                       "0.5",
                                       "-3.25",
                                       "1e3",
                                       "2E-2",
                                       "6.02e+23",
                                       "1.7976931348623157e308",
                                       "5e-324",
                                       "100",
                                       "42.0"};
    unsigned k = pick(depth > 4 ? 6 : 8);
    switch (k) {
    case 0: ck_assert_int_eq(cm_buf_puts(b, "null"), CM_OK); break;
    case 1: ck_assert_int_eq(cm_buf_puts(b, "true"), CM_OK); break;
    case 2: ck_assert_int_eq(cm_buf_puts(b, "false"), CM_OK); break;
    case 3:
    case 4:
        ck_assert_int_eq(
            cm_buf_puts(b, nums[pick(sizeof nums / sizeof nums[0])]), CM_OK);
        break;
    case 5: gen_string(b); break;
    default: {
        int obj = k == 7;
        unsigned n = pick(5);
        ck_assert_int_eq(cm_buf_putc(b, obj ? '{' : '['), CM_OK);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                ck_assert_int_eq(cm_buf_putc(b, ','), CM_OK);
            ws(b);
            if (obj) {
                gen_string(b);
                ws(b);
                ck_assert_int_eq(cm_buf_putc(b, ':'), CM_OK);
                ws(b);
            }
            gen_value(b, depth + 1);
            ws(b);
        }
        ck_assert_int_eq(cm_buf_putc(b, obj ? '}' : ']'), CM_OK);
    }
    }
}

/* Same value as cJSON's?  Numbers whose text cJSON cuts (over 63 bytes)
 * are compared by type only. */
static int same(struct sjv v, const cJSON *c)
{
    switch (sj_type(v)) {
    case SJ_NULL: return cJSON_IsNull(c);
    case SJ_BOOL: return cJSON_IsBool(c) && sj_true(v) == !!cJSON_IsTrue(c);
    case SJ_NUMBER: return cJSON_IsNumber(c) && sj_num(v) == c->valuedouble;
    case SJ_STRING: {
        size_t n;
        const char *s = sj_str(v, &n);
        return cJSON_IsString(c) && strlen(c->valuestring) == n &&
               memcmp(s, c->valuestring, n) == 0 && s[n] == '\0';
    }
    case SJ_ARRAY:
    case SJ_OBJECT: {
        const cJSON *e = c->child;
        uint32_t k = 0;
        if (sj_type(v) == SJ_ARRAY ? !cJSON_IsArray(c) : !cJSON_IsObject(c))
            return 0;
        SJ_FOREACH(it, v)
        {
            if (!e || !same(it, e))
                return 0;
            if (sj_type(v) == SJ_OBJECT &&
                (!sj_key(it, NULL) || strcmp(sj_key(it, NULL), e->string)))
                return 0;
            if (sj_type(v) == SJ_ARRAY && sj_key(it, NULL))
                return 0;
            e = e->next;
            k++;
        }
        return e == NULL && k == sj_size(v);
    }
    default: return 0;
    }
}

/* Parses s[0..n) with ours; checks it against both oracles. */
static void check_doc(const char *s, size_t n)
{
    struct sync_json *d = NULL;
    char err[160] = "";
    enum cm_status st = sync_json_parse(s, n, &d, err, sizeof err);
    int want = strict_json(s, n);
    ck_assert_msg((st == CM_OK) == want, "ours %s, oracle %s: %.*s (%s)",
                  st == CM_OK ? "accepts" : "rejects",
                  want ? "accepts" : "rejects", (int)(n < 200 ? n : 200), s,
                  err);
    if (st == CM_OK) {
        const char *end = NULL;
        cJSON *c = cJSON_ParseWithLengthOpts(s, n, &end, 0);
        ck_assert_msg(c != NULL, "cJSON rejects what we accept: %.*s",
                      (int)(n < 200 ? n : 200), s);
        ck_assert_msg(same(sj_root(d), c), "values differ: %.*s",
                      (int)(n < 200 ? n : 200), s);
        cJSON_Delete(c);
    } else {
        ck_assert_int_eq(st, CM_INVALID);
        ck_assert_ptr_null(d);
        ck_assert_msg(strncmp(err, "not JSON: ", 10) == 0, "%s", err);
    }
    sync_json_free(d);
}

START_TEST(random_documents_match_both_oracles)
{
    for (int i = 0; i < 3000; i++) {
        struct cm_buf b;
        cm_buf_init(&b, 1 << 20);
        ws(&b);
        gen_value(&b, 0);
        ws(&b);
        ck_assert(strict_json(b.data, b.len)); /* the generator's promise */
        check_doc(b.data, b.len);
        cm_buf_fini(&b);
    }
}
END_TEST

START_TEST(mutated_documents_match_both_oracles)
{
    static const char ins[] = ",:[]{}\"\\ 0-.eE1tfnu\x01";
    for (int i = 0; i < 20000; i++) {
        struct cm_buf b;
        char *s;
        size_t n;
        cm_buf_init(&b, 1 << 20);
        gen_value(&b, 2 + (int)pick(2)); /* small: most mutations matter */
        s = b.data;
        n = b.len;
        for (unsigned m = 1 + pick(2); m > 0 && n > 0; m--) {
            size_t at = pick((unsigned)n);
            switch (pick(4)) {
            case 0: /* delete */
                memmove(s + at, s + at + 1, n - at - 1);
                n--;
                break;
            case 1: /* replace */ s[at] = ins[pick(sizeof ins - 1)]; break;
            case 2: /* duplicate */
                if (cm_buf_putc(&b, 0) == CM_OK) {
                    s = b.data;
                    memmove(s + at + 1, s + at, n - at);
                    n++;
                }
                break;
            default: /* insert */
                if (cm_buf_putc(&b, 0) == CM_OK) {
                    s = b.data;
                    memmove(s + at + 1, s + at, n - at);
                    s[at] = ins[pick(sizeof ins - 1)];
                    n++;
                }
            }
        }
        check_doc(s, n);
        cm_buf_fini(&b);
    }
}
END_TEST

static struct sync_json *parse_ok(const char *s)
{
    struct sync_json *d = NULL;
    char err[160] = "";
    ck_assert_msg(sync_json_parse(s, strlen(s), &d, err, sizeof err) == CM_OK,
                  "%s: %s", s, err);
    return d;
}

START_TEST(accessors)
{
    struct sync_json *d = parse_ok(
        " {\"a\":1,\"b\":[true,false,null,\"x\\u00e9\"],\"a\":2,\"e\":{},"
        "\"f\":[],\"n\":-12.5e1,\"big\":12345678901234567890} ");
    struct sjv r = sj_root(d), a = sj_get(r, "a"), b = sj_get(r, "b"), it;
    struct sjv none = sj_get(r, "zzz");
    size_t n;
    const char *k;

    ck_assert_int_eq(sj_type(r), SJ_OBJECT);
    ck_assert_uint_eq(sj_size(r), 7);
    ck_assert_double_eq(sj_num(a), 1); /* the first of duplicate keys */
    ck_assert_uint_eq(sj_size(b), 4);
    it = sj_first(b);
    ck_assert(sj_true(it));
    ck_assert_ptr_null(sj_key(it, &n)); /* elements have no key */
    it = sj_next(it);
    ck_assert_int_eq(sj_type(it), SJ_BOOL);
    ck_assert(!sj_true(it));
    it = sj_next(it);
    ck_assert(sj_is_null(it));
    it = sj_next(it);
    ck_assert_str_eq(sj_str(it, &n), "x\xc3\xa9");
    ck_assert_uint_eq(n, 3);
    ck_assert(sj_missing(sj_next(it)));
    ck_assert_int_eq(sj_type(sj_get(r, "e")), SJ_OBJECT);
    ck_assert(sj_missing(sj_first(sj_get(r, "e"))));
    ck_assert(sj_missing(sj_first(sj_get(r, "f"))));
    ck_assert_double_eq(sj_num(sj_get(r, "n")), -125);
    ck_assert_double_eq(sj_num(sj_get(r, "big")), 12345678901234567890.0);
    /* members in order, with their keys */
    it = sj_first(r);
    k = sj_key(it, &n);
    ck_assert_str_eq(k, "a");
    ck_assert_uint_eq(n, 1);
    it = sj_next(sj_next(it));
    ck_assert_str_eq(sj_key(it, NULL), "a");
    ck_assert_double_eq(sj_num(it), 2);
    /* missing answers "missing" everywhere, and so do wrong types */
    ck_assert(sj_missing(none));
    ck_assert_int_eq(sj_type(none), SJ_MISSING);
    ck_assert_str_eq(sj_type_name(none), "missing");
    ck_assert_ptr_null(sj_str(none, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_double_eq(sj_num(none), 0);
    ck_assert_uint_eq(sj_size(none), 0);
    ck_assert(sj_missing(sj_first(none)));
    ck_assert(sj_missing(sj_next(none)));
    ck_assert(sj_missing(sj_get(none, "a")));
    ck_assert(sj_missing(sj_get(b, "a")));
    ck_assert(sj_missing(sj_first(a)));
    ck_assert_ptr_null(sj_str(a, NULL));
    ck_assert_double_eq(sj_num(sj_first(b)), 0);
    ck_assert(sj_missing(sj_next(r))); /* the root has no sibling */
    ck_assert_str_eq(sj_type_name(b), "array");
    sync_json_free(d);
    sync_json_free(NULL);
    ck_assert(sj_missing(sj_root(NULL)));

    /* scalars at the top, and a string cut by \u0000 as cJSON cut it */
    d = parse_ok("-0.5");
    ck_assert_double_eq(sj_num(sj_root(d)), -0.5);
    sync_json_free(d);
    d = parse_ok("\"ab\\u0000cd\"");
    ck_assert_str_eq(sj_str(sj_root(d), &n), "ab");
    ck_assert_uint_eq(n, 2);
    sync_json_free(d);
}
END_TEST

/* sj_num reads the numbers without an exponent itself (Clinger's fast
 * path): every value must have strtod's bits, across the edges of that
 * path (19 digits, 2^53, 22 decimals, -0) and on either side of them. */
START_TEST(numbers_have_strtods_bits)
{
    static const char *const edge[] = {"0",
                                       "-0",
                                       "-0.0",
                                       "0.000",
                                       "9007199254740992",
                                       "9007199254740993",
                                       "900719925474099.3",
                                       "9007199254740993.0",
                                       "0.1",
                                       "0.30000000000000004",
                                       "1234567890123456789",
                                       "12345678901234567890",
                                       "1.0000000000000000000001",
                                       "0.0000000000000000000001",
                                       "0.00000000000000000000001",
                                       "123.456",
                                       "29.97",
                                       "30.691",
                                       "-1.5",
                                       "18446744073709551615",
                                       "1e22",
                                       "1.5E-3"};
    char num[64];

    for (int round = 0; round < 20000; round++) {
        struct sync_json *d;
        const char *text = num;
        size_t n = 0;
        double want, got;

        if (round < (int)(sizeof edge / sizeof *edge)) {
            text = edge[round];
        } else { /* sign, 1-21 integer digits, maybe 1-25 decimals */
            int id = 1 + (int)pick(21), fd = pick(3) ? 0 : 1 + (int)pick(25);
            if (pick(4) == 0)
                num[n++] = '-';
            num[n++] = (char)(id > 1 ? '1' + pick(9) : '0' + pick(10));
            for (int i = 1; i < id; i++)
                num[n++] = (char)('0' + pick(10));
            if (fd || pick(2)) {
                num[n++] = '.';
                for (int i = 0; i < (fd ? fd : 1 + (int)pick(22)); i++)
                    num[n++] = (char)('0' + pick(10));
            }
            num[n] = '\0';
        }
        d = parse_ok(text);
        got = sj_num(sj_root(d));
        want = strtod(text, NULL);
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0,
                      "%s: sj_num %.17g, strtod %.17g", text, got, want);
        sync_json_free(d);
    }
}
END_TEST

START_TEST(errors_say_what_and_where)
{
    static const struct {
        const char *in, *msg;
    } c[] = {
        {"", "no value at byte 0"},
        {" \n", "no value at byte 2"},
        {"[1 2]", "expected ',' or ']' at byte 3"},
        {"[1,,2]", "unexpected byte at byte 3"},
        {"{\"a\":1,}", "expected a key at byte 7"},
        {"{\"a\":1 \"b\":2}", "expected ',' or '}' at byte 7"},
        {"[1,]", "unexpected byte at byte 3"},
        {"{\"a\" \"b\"}", "expected ':' at byte 5"},
        {"{\"a\"::1}", "unexpected byte at byte 5"},
        {"{1:2}", "expected a key at byte 1"},
        {"[01]", "expected ',' or ']' at byte 2"},
        {"[-]", "bad number at byte 1"},
        {"[1.]", "bad number at byte 1"},
        {"[1e]", "bad number at byte 1"},
        {"[nul]", "unexpected byte at byte 1"},
        {"truex", "unexpected byte at byte 4"},
        {"[\"\\x\"]", "bad escape at byte 2"},
        {"[\"\\u12g4\"]", "bad \\u escape at byte 2"},
        {"[\"\\udc00\"]", "lone surrogate at byte 2"},
        {"[\"\\ud800x\"]", "lone surrogate"},
        {"[\"\\ud800\\u0041\"]", "lone surrogate"},
        {"{} {}", "more than one top-level value at byte 3"},
        {"{\"a\":[1,2", "unexpected end at byte 9"},
        {"[\"abc", "unexpected end at byte 5"},
        {"[1]]", "unexpected byte at byte 3"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        struct sync_json *d = NULL;
        char err[160] = "";
        ck_assert_int_eq(
            sync_json_parse(c[i].in, strlen(c[i].in), &d, err, sizeof err),
            CM_INVALID);
        ck_assert_msg(strstr(err, c[i].msg) != NULL, "%s: got \"%s\"", c[i].in,
                      err);
        ck_assert_ptr_null(d);
    }
    /* a NUL byte, and bytes after one */
    {
        struct sync_json *d = NULL;
        char err[160] = "";
        ck_assert_int_eq(sync_json_parse("[1]\0[2]", 7, &d, err, sizeof err),
                         CM_INVALID);
        ck_assert_ptr_nonnull(strstr(err, "NUL byte at byte 3"));
        ck_assert_int_eq(sync_json_parse("[\"a\0\"]", 6, &d, err, sizeof err),
                         CM_INVALID);
        ck_assert_ptr_nonnull(strstr(err, "NUL byte at byte 3"));
        ck_assert_int_eq(
            sync_json_parse("[\"a\\n\0\"]", 8, &d, err, sizeof err),
            CM_INVALID);
        ck_assert_ptr_nonnull(strstr(err, "NUL byte at byte 5"));
    }
}
END_TEST

/* Two bytes per token: far more tokens than the first guess (len / 8), so
 * the token array grows several times. */
START_TEST(many_tokens)
{
    struct cm_buf b;
    struct sync_json *d;
    uint32_t k = 0;
    cm_buf_init(&b, 1 << 22);
    ck_assert_int_eq(cm_buf_putc(&b, '['), CM_OK);
    for (int i = 0; i < 200000; i++)
        ck_assert_int_eq(cm_buf_puts(&b, i ? ",7" : "7"), CM_OK);
    ck_assert_int_eq(cm_buf_puts(&b, ",[[[{\"k\":[]}]]]]"), CM_OK);
    check_doc(b.data, b.len);
    d = parse_ok(b.data);
    SJ_FOREACH(it, sj_root(d))
    k++;
    ck_assert_uint_eq(k, 200001);
    sync_json_free(d);
    cm_buf_fini(&b);
}
END_TEST

/* SYNC_JSON_MAX_DEPTH levels parse, one more does not (no recursion: a
 * deeper document is an error, never a stack overflow). */
START_TEST(nesting_limit)
{
    for (int extra = 0; extra < 2; extra++) {
        int n = SYNC_JSON_MAX_DEPTH + extra;
        char *s = malloc((size_t)n * 2 + 1);
        struct sync_json *d = NULL;
        char err[160] = "";
        enum cm_status st;
        ck_assert_ptr_nonnull(s);
        for (int i = 0; i < n; i++) {
            s[i] = '[';
            s[n + i] = ']';
        }
        s[2 * n] = '\0';
        st = sync_json_parse(s, (size_t)n * 2, &d, err, sizeof err);
        if (extra) {
            ck_assert_int_eq(st, CM_INVALID);
            ck_assert_ptr_nonnull(strstr(err, "nested too deep"));
        } else {
            struct sjv v = sj_root(d);
            int k = 0;
            ck_assert_int_eq(st, CM_OK);
            while (sj_type(v) == SJ_ARRAY) {
                k++;
                v = sj_first(v);
            }
            ck_assert_int_eq(k, n);
        }
        sync_json_free(d);
        free(s);
    }
}
END_TEST

START_TEST(alloc_failures)
{
    const char *doc = "{\"data\":{\"findScenes\":{\"count\":2,\"scenes\":"
                      "[{\"id\":\"1\"},{\"id\":\"2\",\"t\":\"\\u00e9\"}]}}}";
    int done = 0;
    for (long n = 1; n < 50 && !done; n++) {
        struct sync_json *d = NULL;
        char err[160] = "";
        enum cm_status st;
        cm_alloc_fail_at(n, 1);
        st = sync_json_parse(doc, strlen(doc), &d, err, sizeof err);
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK) {
            done = 1;
            ck_assert_str_eq(
                sj_str(sj_get(sj_first(sj_get(sj_get(sj_get(sj_root(d), "data"),
                                                     "findScenes"),
                                              "scenes")),
                              "id"),
                       NULL),
                "1");
        } else {
            ck_assert_int_eq(st, CM_NOMEM);
            ck_assert_ptr_null(d);
            ck_assert_str_eq(err, "out of memory");
        }
        sync_json_free(d);
    }
    ck_assert(done);
}
END_TEST

/* sync_json_parse_buf parses the caller's buffer in place and owns it
 * from then on: kept by the document, freed on every error (LeakSanitizer
 * in make asan sees a leak otherwise). */
START_TEST(parse_buf_takes_the_buffer)
{
    static const char *const docs[] = {"{\"a\":\"x\\ty\",\"b\":[1,2]}",
                                       "{\"a\":1,}", ""};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        size_t n = strlen(docs[i]);
        for (long fail = 0; fail < 3; fail++) {
            char *buf = cm_malloc(n + 1);
            struct sync_json *d = NULL;
            char err[160] = "";
            enum cm_status st;
            ck_assert_ptr_nonnull(buf);
            memcpy(buf, docs[i], n + 1);
            cm_alloc_fail_at(fail, 1);
            st = sync_json_parse_buf(buf, n, &d, err, sizeof err);
            cm_alloc_fail_at(0, 0);
            /* allocation 1: the document, 2: its tokens ("" has none) */
            if (fail == 1 || (fail == 2 && n > 0)) {
                ck_assert_int_eq(st, CM_NOMEM);
            } else if (i == 0) {
                ck_assert_int_eq(st, CM_OK);
                ck_assert_str_eq(sj_str(sj_get(sj_root(d), "a"), NULL), "x\ty");
                ck_assert_uint_eq(sj_size(sj_get(sj_root(d), "b")), 2);
            } else {
                ck_assert_int_eq(st, CM_INVALID);
            }
            ck_assert(st == CM_OK ? d != NULL : d == NULL);
            sync_json_free(d);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync_json");
    TCase *tc = tcase_create("json");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, random_documents_match_both_oracles);
    tcase_add_test(tc, mutated_documents_match_both_oracles);
    tcase_add_test(tc, accessors);
    tcase_add_test(tc, numbers_have_strtods_bits);
    tcase_add_test(tc, errors_say_what_and_where);
    tcase_add_test(tc, many_tokens);
    tcase_add_test(tc, nesting_limit);
    tcase_add_test(tc, alloc_failures);
    tcase_add_test(tc, parse_buf_takes_the_buffer);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
