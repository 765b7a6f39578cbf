/*
 * cm_alloc.h - allocation wrappers with a failure-injection hook.
 *
 * All of peekd allocates through cm_malloc/cm_calloc/cm_realloc/cm_free so
 * that tests can make the Nth allocation fail (cm_alloc_fail_at) and check
 * that every path returns CM_NOMEM cleanly without leaks.  cm_json_init()
 * installs the same hooks in cJSON.  Thread-safe: the counters are atomics.
 */
#pragma once

#include <stddef.h>

/* Like malloc/calloc/realloc/free.  Return NULL on failure (real or
 * injected).  cm_free(NULL) is a no-op. */
void *cm_malloc(size_t n);
void *cm_calloc(size_t nmemb, size_t size);
void *cm_realloc(void *p, size_t n);
void cm_free(void *p);

/* Copies of s (NUL-terminated) or of s[0..n) plus a NUL.  Caller owns, free
 * with cm_free(). */
char *cm_strdup(const char *s);
char *cm_strndup(const char *s, size_t n);

/* Failure injection (tests only): the n-th allocation from now fails
 * (1 = the next one), and so do all later ones when sticky is non-zero.
 * n = 0 disables injection. */
void cm_alloc_fail_at(long n, int sticky);

/* Number of allocations that failed by injection since the last
 * cm_alloc_fail_at() call. */
long cm_alloc_injected(void);

/* Installs cm_malloc/cm_free as cJSON's allocator.  Idempotent. */
void cm_json_init(void);
