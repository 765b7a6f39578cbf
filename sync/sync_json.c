/*
 * sync_json.c - GraphQL response bodies as flat JSON documents (see
 * sync_json.h).
 *
 * One pass, iterative (an explicit stack of open containers, so a deep
 * document cannot exhaust the C stack), over a private copy of the body.
 * Each value becomes a token in document order; a container's children
 * are chained through `sib` (an object's keys, each followed by its value
 * token), so lookups and iteration never search.  Strings are decoded in
 * place: the decoded text is never longer than the escaped one, so it is
 * written over it and NUL-terminated where the closing quote was.  Numbers
 * are checked against the grammar and read when asked.
 *
 * Why by hand (ARCHITECTURE.md, "Where peekd departs from the brief"):
 * the packaged parsers build trees (cJSON, json-c, jansson: the allocation
 * and the tree walk were the cost), call back per token (yajl: 7.4 ms per
 * page with empty callbacks) or are lenient tokenizers (jsmn: 2.5 ms, then
 * 2 ms more to check what it lets through, such as [1 2] or {"a":1,}).
 * This pass does the tokenizing and the checks together.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "sync/sync_json.h"

struct parser {
    struct sync_json *d;
    char *err;
    size_t errlen;
};

static enum cm_status bad(struct parser *p, size_t at, const char *what)
{
    if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "not JSON: %s at byte %zu", what, at);
    return CM_INVALID;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A new token of type ty at byte start; OUT *i its index. */
static inline enum cm_status tok_new(struct parser *p, uint8_t ty, size_t start,
                                     uint32_t *i)
{
    struct sync_json *d = p->d;
    struct sj_tok *x;
    if (d->n == d->cap) {
        size_t cap = d->cap ? (size_t)d->cap * 2 : d->len / 8 + 16;
        struct sj_tok *t;
        if (cap > UINT32_MAX)
            return bad(p, start, "too many values");
        if (!(t = cm_realloc(d->t, cap * sizeof *t)))
            return CM_NOMEM;
        d->t = t;
        d->cap = (uint32_t)cap;
    }
    *i = d->n++;
    x = &d->t[*i];
    x->start = (uint32_t)start;
    x->len = 0;
    x->sib = 0;
    x->type = ty;
    x->member = 0;
    return CM_OK;
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1; /* also the NUL at the end of the copy */
    }
    return v;
}

static char *put_utf8(char *w, unsigned cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xC0 | cp >> 6);
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | cp >> 12);
        *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | cp >> 18);
        *w++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* Bytes of v that are zero: the lowest flagged byte (0x80) is the first
 * zero byte (flags above it may be false). */
static inline uint64_t zero_bytes(uint64_t v)
{
    return (v - 0x0101010101010101ULL) & ~v & 0x8080808080808080ULL;
}

/* The first '"', '\\' or NUL at or after r (end: the buffer's NUL, so
 * one is always found).  Strings are most of a response's bytes and most
 * are short (keys, names): 16 bytes a step with SSE2 (every x86-64), else
 * 8 bytes a step with the zero-byte test, while the bytes are inside the
 * buffer; then one byte a step.  A 1,000-scene page spent a third of its
 * parse in a loop of one byte a step; with 16-byte steps its parse takes
 * 1.36-1.41 ms (best of 1,000), with 8-byte steps 1.59-1.64 ms. */
static inline char *quote_scan(char *r, const char *end)
{
#ifdef __SSE2__
    const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    const __m128i z = _mm_setzero_si128();
    while (end - r >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)r);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)),
            _mm_cmpeq_epi8(v, z)));
        if (m)
            return r + __builtin_ctz(m);
        r += 16;
    }
#endif
    while (end - r >= 8) {
        uint64_t v, m;
        memcpy(&v, r, 8);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
        v = __builtin_bswap64(v); /* byte 0 in the low bits */
#endif
        m = zero_bytes(v ^ 0x2222222222222222ULL) |
            zero_bytes(v ^ 0x5C5C5C5C5C5C5C5CULL) | zero_bytes(v);
        if (m)
            return r + __builtin_ctzll(m) / 8;
        r += 8;
    }
    while (*r != '"' && *r != '\\' && *r != '\0')
        r++;
    return r;
}

/* The string whose opening quote is at *pos: decoded in place into token
 * x (already made, start set), NUL-terminated; *pos moves past its
 * closing quote. */
static enum cm_status string(struct parser *p, struct sj_tok *x, size_t *pos)
{
    char *s = p->d->s, *r = quote_scan(s + *pos + 1, s + p->d->len), *w, *first;
    char c = *r;

    if (c == '"') { /* no escape: the common case */
        x->len = (uint32_t)(r - (s + x->start));
        *r = '\0';
        *pos = (size_t)(r - s) + 1;
        return CM_OK;
    }
    w = r;
    for (;;) {
        unsigned cp;
        int h, lo;
        c = *r;
        if (c == '"')
            break;
        if (c == '\0')
            return bad(p, (size_t)(r - s),
                       (size_t)(r - s) == p->d->len ? "unexpected end"
                                                    : "NUL byte");
        if (c != '\\') {
            *w++ = *r++;
            continue;
        }
        switch (r[1]) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            if ((h = hex4(r + 2)) < 0)
                return bad(p, (size_t)(r - s), "bad \\u escape");
            cp = (unsigned)h;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return bad(p, (size_t)(r - s), "lone surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (r[6] != '\\' || r[7] != 'u' ||
                    (lo = hex4(r + 8)) < 0xDC00 || lo > 0xDFFF)
                    return bad(p, (size_t)(r - s), "lone surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
                r += 6;
            }
            w = put_utf8(w, cp);
            r += 6;
            continue;
        default: return bad(p, (size_t)(r - s), "bad escape");
        }
        r += 2;
    }
    *w = '\0';
    *pos = (size_t)(r - s) + 1;
    /* \u0000 ends the string, as it did with cJSON (C strings) */
    first = memchr(s + x->start, '\0', (size_t)(w - (s + x->start)));
    x->len = (uint32_t)((first ? first : w) - (s + x->start));
    return CM_OK;
}

/* RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  OUT *end:
 * the byte after it.  What follows is checked by the caller. */
static bool number(const char *s, size_t pos, size_t *end)
{
    const char *q = s + pos;
    if (*q == '-')
        q++;
    if (*q == '0')
        q++;
    else if (is_digit(*q))
        while (is_digit(*q))
            q++;
    else
        return false;
    if (*q == '.') {
        if (!is_digit(*++q))
            return false;
        while (is_digit(*q))
            q++;
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!is_digit(*q))
            return false;
        while (is_digit(*q))
            q++;
    }
    *end = (size_t)(q - s);
    return true;
}

/* What the parser expects next. */
enum want {
    W_VALUE,          /* any value */
    W_VALUE_OR_CLOSE, /* after '[' */
    W_KEY,            /* after ',' in an object */
    W_KEY_OR_CLOSE,   /* after '{' */
    W_COLON,          /* after a key */
    W_NEXT            /* after a value: ',' or the container's close */
};

static enum cm_status parse(struct parser *p)
{
    struct sync_json *d = p->d;
    const char *s = d->s;
    size_t pos = 0;
    uint32_t stack[SYNC_JSON_MAX_DEPTH]; /* open containers */
    uint32_t last[SYNC_JSON_MAX_DEPTH];  /* their last child, 0: none */
    int depth = 0;
    enum want want = W_VALUE;
    bool member = false; /* the next value is a member's */
    enum cm_status st;

    for (;;) {
        uint32_t i;
        char c;
        while (is_ws(s[pos]))
            pos++;
        c = s[pos];
        if (c == '\0') {
            if (pos != d->len)
                return bad(p, pos, "NUL byte");
            if (want == W_NEXT && depth == 0)
                return CM_OK;
            return bad(p, pos, d->n ? "unexpected end" : "no value");
        }
        if (want == W_NEXT) {
            const struct sj_tok *top;
            if (depth == 0)
                return bad(p, pos,
                           strchr("{[\"-0123456789tfn", c)
                               ? "more than one top-level value"
                               : "unexpected byte");
            top = &d->t[stack[depth - 1]];
            if (c == ',') {
                want = top->type == SJ_OBJECT ? W_KEY : W_VALUE;
                pos++;
                continue;
            }
            if (c == (top->type == SJ_OBJECT ? '}' : ']')) {
                depth--;
                pos++;
                continue; /* still W_NEXT, for the parent */
            }
            return bad(p, pos,
                       top->type == SJ_OBJECT ? "expected ',' or '}'"
                                              : "expected ',' or ']'");
        }
        if (want == W_COLON) {
            if (c != ':')
                return bad(p, pos, "expected ':'");
            pos++;
            want = W_VALUE;
            member = true;
            continue;
        }
        if ((want == W_VALUE_OR_CLOSE && c == ']') ||
            (want == W_KEY_OR_CLOSE && c == '}')) {
            depth--;
            pos++;
            want = W_NEXT;
            continue;
        }
        if (want == W_KEY || want == W_KEY_OR_CLOSE) {
            if (c != '"')
                return bad(p, pos, "expected a key");
        }
        /* a value or a key: a new token, chained to its container */
        if (c == '"') {
            if ((st = tok_new(p, SJ_STRING, pos + 1, &i)) != CM_OK ||
                (st = string(p, &d->t[i], &pos)) != CM_OK)
                return st;
        } else if (c == '{' || c == '[') {
            if (depth == SYNC_JSON_MAX_DEPTH)
                return bad(p, pos, "nested too deep");
            if ((st = tok_new(p, c == '{' ? SJ_OBJECT : SJ_ARRAY, pos, &i)) !=
                CM_OK)
                return st;
            pos++;
        } else if (c == '-' || is_digit(c)) {
            size_t end;
            if (!number(s, pos, &end))
                return bad(p, pos, "bad number");
            if ((st = tok_new(p, SJ_NUMBER, pos, &i)) != CM_OK)
                return st;
            d->t[i].len = (uint32_t)(end - pos);
            pos = end;
        } else if (strncmp(s + pos, "true", 4) == 0 ||
                   strncmp(s + pos, "false", 5) == 0 ||
                   strncmp(s + pos, "null", 4) == 0) {
            if ((st = tok_new(p, c == 'n' ? SJ_NULL : SJ_BOOL, pos, &i)) !=
                CM_OK)
                return st;
            d->t[i].len = c == 't';
            pos += c == 'f' ? 5 : 4;
        } else {
            return bad(p, pos, "unexpected byte");
        }
        if (member) { /* reached through its key */
            d->t[i].member = 1;
            member = false;
        } else if (depth > 0) {
            uint32_t up = stack[depth - 1];
            if (last[depth - 1])
                d->t[last[depth - 1]].sib = i;
            last[depth - 1] = i;
            d->t[up].len++;
        }
        if (want == W_KEY || want == W_KEY_OR_CLOSE)
            want = W_COLON;
        else if (d->t[i].type == SJ_OBJECT || d->t[i].type == SJ_ARRAY) {
            stack[depth] = i;
            last[depth] = 0;
            depth++;
            want =
                d->t[i].type == SJ_OBJECT ? W_KEY_OR_CLOSE : W_VALUE_OR_CLOSE;
        } else
            want = W_NEXT;
    }
}

void sync_json_free(struct sync_json *d)
{
    if (!d)
        return;
    cm_free(d->s);
    cm_free(d->t);
    cm_free(d);
}

enum cm_status sync_json_parse_buf(char *buf, size_t len,
                                   struct sync_json **out, char *err,
                                   size_t errlen)
{
    struct parser p = {NULL, err, errlen};
    enum cm_status st = CM_NOMEM;

    *out = NULL;
    if (len > CM_MAX_GRAPHQL_RESPONSE) {
        cm_free(buf);
        if (err && errlen)
            snprintf(err, errlen, "JSON document larger than %zu bytes",
                     (size_t)CM_MAX_GRAPHQL_RESPONSE);
        return CM_TOOBIG;
    }
    if (!(p.d = cm_calloc(1, sizeof *p.d))) {
        cm_free(buf);
        goto fail;
    }
    p.d->s = buf;
    p.d->len = len;
    if ((st = parse(&p)) != CM_OK)
        goto fail;
    *out = p.d;
    return CM_OK;
fail:
    if (st == CM_NOMEM && err && errlen)
        snprintf(err, errlen, "out of memory");
    sync_json_free(p.d);
    return st;
}

enum cm_status sync_json_parse(const char *s, size_t len,
                               struct sync_json **out, char *err, size_t errlen)
{
    char *buf;

    *out = NULL;
    if (len > CM_MAX_GRAPHQL_RESPONSE)
        return sync_json_parse_buf(NULL, len, out, err, errlen);
    if (!(buf = cm_malloc(len + 1))) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return CM_NOMEM;
    }
    if (len)
        memcpy(buf, s, len);
    buf[len] = '\0'; /* every scan stops at it */
    return sync_json_parse_buf(buf, len, out, err, errlen);
}
