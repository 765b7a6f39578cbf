/*
 * cm_buf.c - bounded growable buffer (see cm_buf.h).
 */
#include "common/cm_buf.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "common/cm_alloc.h"

void cm_buf_init(struct cm_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->big = 0;
}

void cm_buf_init_big(struct cm_buf *b, size_t max)
{
    cm_buf_init(b, max);
    b->big = 1;
}

void cm_buf_fini(struct cm_buf *b)
{
    if (!b)
        return;
    cm_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void cm_buf_reset(struct cm_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *cm_buf_take(struct cm_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

enum cm_status cm_buf_reserve(struct cm_buf *b, size_t n)
{
    size_t need, cap;
    char *p;

    if (n > b->max || b->len > b->max - n)
        return CM_TOOBIG;
    need = b->len + n + 1; /* + NUL */
    if (need <= b->cap)
        return CM_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    if (cap > b->max + 1)
        cap = b->max + 1;
    p = b->big ? cm_realloc_big(b->data, cap) : cm_realloc(b->data, cap);
    if (!p)
        return CM_NOMEM;
    b->data = p;
    b->cap = cap;
    return CM_OK;
}

enum cm_status cm_buf_append(struct cm_buf *b, const void *p, size_t n)
{
    enum cm_status st = cm_buf_reserve(b, n);
    if (st != CM_OK)
        return st;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return CM_OK;
}

enum cm_status cm_buf_puts(struct cm_buf *b, const char *s)
{
    return cm_buf_append(b, s, strlen(s));
}

enum cm_status cm_buf_putc(struct cm_buf *b, char c)
{
    return cm_buf_append(b, &c, 1);
}

enum cm_status cm_buf_vprintf(struct cm_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    enum cm_status st;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return CM_INVALID;
    st = cm_buf_reserve(b, (size_t)n);
    if (st != CM_OK)
        return st;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return CM_OK;
}

enum cm_status cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
{
    va_list ap;
    enum cm_status st;
    va_start(ap, fmt);
    st = cm_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return st;
}

enum cm_status cm_buf_put_i64(struct cm_buf *b, int64_t v)
{
    char tmp[24];
    char *e = tmp + sizeof tmp, *p = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return cm_buf_append(b, p, (size_t)(e - p));
}

size_t cm_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len, i;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

enum cm_status cm_buf_put_json_str(struct cm_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0, start = b->len;
    enum cm_status st;

    if (!s)
        return cm_buf_append(b, "null", 4);
    if ((st = cm_buf_putc(b, '"')) != CM_OK)
        return st;
    while (i < n) {
        unsigned char c = p[i];
        char esc[8];
        size_t elen = 0, ulen;

        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            run++;
            continue;
        }
        if (run && (st = cm_buf_append(b, p + i - run, run)) != CM_OK)
            goto fail;
        run = 0;
        if (c >= 0x80) {
            ulen = cm_utf8_len(p + i, n - i);
            if (ulen) {
                if ((st = cm_buf_append(b, p + i, ulen)) != CM_OK)
                    goto fail;
                i += ulen;
            } else {
                if ((st = cm_buf_append(b, "\xEF\xBF\xBD", 3)) != CM_OK)
                    goto fail;
                i++;
            }
            continue;
        }
        esc[elen++] = '\\';
        switch (c) {
        case '"': esc[elen++] = '"'; break;
        case '\\': esc[elen++] = '\\'; break;
        case '\n': esc[elen++] = 'n'; break;
        case '\r': esc[elen++] = 'r'; break;
        case '\t': esc[elen++] = 't'; break;
        case '\b': esc[elen++] = 'b'; break;
        case '\f': esc[elen++] = 'f'; break;
        default:
            esc[elen++] = 'u';
            esc[elen++] = '0';
            esc[elen++] = '0';
            esc[elen++] = hex[c >> 4];
            esc[elen++] = hex[c & 15];
        }
        if ((st = cm_buf_append(b, esc, elen)) != CM_OK)
            goto fail;
        i++;
    }
    if (run && (st = cm_buf_append(b, p + i - run, run)) != CM_OK)
        goto fail;
    if ((st = cm_buf_putc(b, '"')) != CM_OK)
        goto fail;
    return CM_OK;
fail:
    cm_buf_truncate(b, start);
    return st;
}

void cm_buf_truncate(struct cm_buf *b, size_t n)
{
    assert(n <= b->len);
    b->len = n;
    if (b->data)
        b->data[n] = '\0';
}
