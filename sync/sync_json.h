/*
 * sync_json.h - a GraphQL response body as a flat, read-only JSON document.
 *
 * One pass over the body (a private copy, or the caller's buffer handed
 * over) checks it against RFC 8259
 * (strictly: separators, literals, the number grammar, escapes, UTF-16
 * surrogate pairs) and records one token per value in document order,
 * with links from each element or key to the next; strings are decoded in
 * place and NUL-terminated.  A value is then a token index: no tree of
 * nodes is built and nothing is allocated per value, which is what made
 * cJSON cost ≈ 6 ms of a 1,000-scene page (docs/SYNC.md, "Parsing
 * responses", has the figures and why no packaged parser is used).
 *
 *   struct sync_json *d;
 *   if (sync_json_parse(body, len, &d, err, sizeof err) == CM_OK) {
 *       struct sjv scenes = sj_get(sj_get(sj_root(d), "data"), "scenes");
 *       SJ_FOREACH (s, scenes)
 *           use(sj_str(sj_get(s, "id"), NULL));
 *       sync_json_free(d);
 *   }
 *
 * Values borrow from their document: valid until sync_json_free().  A
 * missing value (a member that is not there, the end of an iteration) has
 * d == NULL; every accessor takes it and answers "missing".  Of duplicate
 * keys the first wins (as with cJSON's lookup).  Liberties, as cJSON took
 * them: raw control bytes and bytes that are not UTF-8 are accepted inside
 * strings, and a string holding \u0000 reads as ending there.  A raw NUL
 * byte anywhere is an error, and so is nesting deeper than
 * SYNC_JSON_MAX_DEPTH.  One thread per document.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_status.h"

#define SYNC_JSON_MAX_DEPTH 1000 /* cJSON's limit too */

enum sj_type {
    SJ_MISSING,
    SJ_NULL,
    SJ_BOOL,
    SJ_NUMBER,
    SJ_STRING,
    SJ_ARRAY,
    SJ_OBJECT
};

/* One value (or key).  Read through the accessors below. */
struct sj_tok {
    uint32_t start; /* strings: the first byte after the quote */
    uint32_t len;   /* strings: decoded bytes; numbers: text bytes;
                       containers: elements or members; true: 1 */
    uint32_t sib;   /* the next element or key of the same container; 0:
                       none (token 0 is the root, never a sibling) */
    uint8_t type;   /* enum sj_type */
    uint8_t member; /* a member's value (its key is the token before) */
};

/* A parsed document. */
struct sync_json {
    char *s;          /* the body, strings decoded in place */
    size_t len;       /* of the body */
    struct sj_tok *t; /* tokens in document order */
    uint32_t n, cap;
};

/* A value of a document, or missing (d == NULL). */
struct sjv {
    const struct sync_json *d;
    uint32_t i; /* token index */
};

/* Parses s[0..len) (untrusted; copied, no NUL needed) as one JSON value
 * with optional surrounding whitespace.  OUT *out: caller owns, free with
 * sync_json_free().  CM_INVALID (not JSON; err says what and at which
 * byte), CM_TOOBIG (len past CM_MAX_GRAPHQL_RESPONSE), CM_NOMEM. */
enum cm_status sync_json_parse(const char *s, size_t len,
                               struct sync_json **out, char *err,
                               size_t errlen) CM_WUR;

/* The same on buf[0..len) itself, without a copy: buf (from cm_malloc,
 * with a NUL at buf[len]) is decoded in place and belongs to the document
 * from now on, also when parsing fails (then it is freed). */
enum cm_status sync_json_parse_buf(char *buf, size_t len,
                                   struct sync_json **out, char *err,
                                   size_t errlen) CM_WUR;

/* NULL-safe. */
void sync_json_free(struct sync_json *d);

#define SJ_NONE ((struct sjv){NULL, 0})

static inline struct sjv sj_root(const struct sync_json *d)
{
    return d && d->n ? (struct sjv){d, 0} : SJ_NONE;
}

static inline bool sj_missing(struct sjv v)
{
    return v.d == NULL;
}

static inline enum sj_type sj_type(struct sjv v)
{
    return v.d ? (enum sj_type)v.d->t[v.i].type : SJ_MISSING;
}

static inline bool sj_is_null(struct sjv v)
{
    return sj_type(v) == SJ_NULL;
}

/* true only for the literal true. */
static inline bool sj_true(struct sjv v)
{
    return sj_type(v) == SJ_BOOL && v.d->t[v.i].len;
}

/* A string's decoded bytes, NUL-terminated; OUT *len (may be NULL) its
 * length.  NULL (and *len 0) for anything else. */
static inline const char *sj_str(struct sjv v, size_t *len)
{
    bool is = sj_type(v) == SJ_STRING;
    if (len)
        *len = is ? v.d->t[v.i].len : 0;
    return is ? v.d->s + v.d->t[v.i].start : NULL;
}

/* Elements of an array, members of an object; 0 for anything else. */
static inline uint32_t sj_size(struct sjv v)
{
    enum sj_type ty = sj_type(v);
    return ty == SJ_ARRAY || ty == SJ_OBJECT ? v.d->t[v.i].len : 0;
}

/* The first element of an array, the first member's value of an object;
 * missing when empty or not a container. */
static inline struct sjv sj_first(struct sjv v)
{
    if (sj_size(v) == 0)
        return SJ_NONE;
    return (struct sjv){v.d, v.i + (sj_type(v) == SJ_OBJECT ? 2 : 1)};
}

/* The element or member value after it; missing after the last. */
static inline struct sjv sj_next(struct sjv it)
{
    uint32_t s;
    if (!it.d || it.i == 0)
        return SJ_NONE;
    if (it.d->t[it.i].member) {
        s = it.d->t[it.i - 1].sib; /* the next key */
        return s ? (struct sjv){it.d, s + 1} : SJ_NONE;
    }
    s = it.d->t[it.i].sib;
    return s ? (struct sjv){it.d, s} : SJ_NONE;
}

/* The key of a member value it (from sj_first/sj_next over an object);
 * NULL (and *len 0) for an array element or missing. */
static inline const char *sj_key(struct sjv it, size_t *len)
{
    if (!it.d || !it.d->t[it.i].member)
        return sj_str(SJ_NONE, len);
    return sj_str((struct sjv){it.d, it.i - 1}, len);
}

/* Member key of object o (the first of that name); missing when o is not
 * an object or has none. */
static inline struct sjv sj_get(struct sjv o, const char *key)
{
    size_t n = strlen(key);
    if (sj_type(o) != SJ_OBJECT || o.d->t[o.i].len == 0)
        return SJ_NONE;
    for (uint32_t k = o.i + 1; k; k = o.d->t[k].sib)
        if (o.d->t[k].len == n && memcmp(o.d->s + o.d->t[k].start, key, n) == 0)
            return (struct sjv){o.d, k + 1};
    return SJ_NONE;
}

/* "missing", "null", "boolean", "number", "string", "array", "object":
 * for messages. */
static inline const char *sj_type_name(struct sjv v)
{
    static const char *const names[] = {
        [SJ_MISSING] = "missing", [SJ_NULL] = "null",     [SJ_BOOL] = "boolean",
        [SJ_NUMBER] = "number",   [SJ_STRING] = "string", [SJ_ARRAY] = "array",
        [SJ_OBJECT] = "object"};
    return names[sj_type(v)];
}

/* A number's value, as strtod reads it.  Without an exponent and with a
 * mantissa of at most 2^53 and at most 22 decimals (the integers, the
 * durations and frame rates of a response), it is the mantissa divided
 * by an exact power of ten: both are exact doubles and the division is
 * correctly rounded, so the result is strtod's (Clinger's fast path);
 * strtod reads the rest.  0 for anything that is not a number. */
static inline double sj_num(struct sjv v)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *q, *x;
    uint64_t m = 0;
    uint32_t k = 0, f = 0;
    bool neg;

    if (sj_type(v) != SJ_NUMBER)
        return 0;
    q = v.d->s + v.d->t[v.i].start;
    neg = *q == '-';
    /* at most 19 digits: m stays below 10^19 < 2^64 */
    for (x = q + neg; *x >= '0' && *x <= '9' && k < 19; x++, k++)
        m = m * 10 + (uint64_t)(*x - '0');
    if (*x == '.')
        for (x++; *x >= '0' && *x <= '9' && k < 19; x++, k++, f++)
            m = m * 10 + (uint64_t)(*x - '0');
    /* strtod stops at the byte after the number, which is not part of one */
    if ((uint32_t)(x - q) == v.d->t[v.i].len && m <= (uint64_t)1 << 53 &&
        f <= 22)
        return (neg ? -(double)m : (double)m) / p10[f];
    return strtod(q, NULL);
}

#define SJ_FOREACH(it, v)                                                      \
    for (struct sjv it = sj_first(v); !sj_missing(it); it = sj_next(it))
