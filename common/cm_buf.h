/*
 * cm_buf.h - a bounded, growable byte buffer.
 *
 * Every growable buffer in peekd has a maximum given at init (limits live in
 * cm_limits.h); appending past it returns CM_TOOBIG and leaves the buffer as
 * it was.  The data is always NUL-terminated (the NUL is not counted in len)
 * so text buffers can be handed to C string functions.  Not thread-safe:
 * one owner at a time.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cm_status.h"

struct cm_buf {
    char *data; /* NULL until the first append; NUL-terminated after */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* largest len allowed */
    int big;    /* grown with cm_realloc_big (cm_buf_init_big) */
};

/* Initialises b (caller storage) with limit max.  Allocates nothing. */
void cm_buf_init(struct cm_buf *b, size_t max);

/* The same for a big buffer (an arena of millions of keys): its memory
 * comes from cm_realloc_big (huge pages from CM_BIG_MIN bytes on). */
void cm_buf_init_big(struct cm_buf *b, size_t max);

/* Frees b's memory; b may be reused after cm_buf_init().  NULL-safe. */
void cm_buf_fini(struct cm_buf *b);

/* Empties b, keeping its memory. */
void cm_buf_reset(struct cm_buf *b);

/* Hands b's bytes to the caller (caller owns, free with cm_free()) and
 * leaves b empty.  OUT *len: the length (may be NULL).  Returns NULL when
 * b is empty and nothing was ever allocated; then *len is 0. */
char *cm_buf_take(struct cm_buf *b, size_t *len);

/* Make room for n more bytes.  CM_TOOBIG past max, CM_NOMEM. */
enum cm_status cm_buf_reserve(struct cm_buf *b, size_t n) CM_WUR;

/* Append bytes / a NUL-terminated string / one byte / formatted text.
 * CM_TOOBIG, CM_NOMEM; on error b is unchanged. */
enum cm_status cm_buf_append(struct cm_buf *b, const void *p, size_t n) CM_WUR;
enum cm_status cm_buf_puts(struct cm_buf *b, const char *s) CM_WUR;
enum cm_status cm_buf_putc(struct cm_buf *b, char c) CM_WUR;
enum cm_status cm_buf_printf(struct cm_buf *b, const char *fmt, ...) CM_WUR
    __attribute__((format(printf, 2, 3)));
enum cm_status cm_buf_vprintf(struct cm_buf *b, const char *fmt,
                              va_list ap) CM_WUR
    __attribute__((format(printf, 2, 0)));

/* Appends v in decimal. */
enum cm_status cm_buf_put_i64(struct cm_buf *b, int64_t v) CM_WUR;

/* Appends s[0..n) as a JSON string literal with quotes, escaping as RFC 8259
 * requires; invalid UTF-8 bytes become U+FFFD.  s may be NULL: appends
 * null. */
enum cm_status cm_buf_put_json_str(struct cm_buf *b, const char *s,
                                   size_t n) CM_WUR;

/* Length of the valid UTF-8 sequence at s[0..n) (n > 0): 1 for ASCII, 2..4
 * for a well-formed multi-byte rune (no overlongs, no surrogates, at most
 * U+10FFFF), 0 when invalid.  The rule every JSON writer of peekd uses. */
size_t cm_utf8_len(const unsigned char *s, size_t n);

/* Shrinks len to n (n <= len). */
void cm_buf_truncate(struct cm_buf *b, size_t n);
