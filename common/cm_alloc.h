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
#include <stdint.h>

#include "common/cm_status.h"

/* Like malloc/calloc/realloc/free.  Return NULL on failure (real or
 * injected).  cm_free(NULL) is a no-op. */
void *cm_malloc(size_t n);
void *cm_calloc(size_t nmemb, size_t size);
void *cm_realloc(void *p, size_t n);
void cm_free(void *p);

/* Big tables (the bulk index build's key table, hash slots, pools, sort
 * scratch...): like cm_malloc/cm_calloc/cm_realloc (the same failure
 * injection, freed with cm_free), and from CM_BIG_MIN bytes on every
 * whole 2 MiB-aligned range inside the block is advised for transparent
 * huge pages (madvise MADV_HUGEPAGE; the kernel's THP mode is usually
 * "madvise", so nothing else gets them).  A table read at random then
 * takes a TLB miss per 2 MiB instead of per 4 KiB: the 1M-scene reindex
 * spends ~15 % less CPU.  Below CM_BIG_MIN, or when madvise fails (no
 * THP), they are plain allocations.  Use them only for blocks that are
 * mostly filled: a huge page is backed as a whole. */
#define CM_BIG_MIN ((size_t)4 << 20)
void *cm_malloc_big(size_t n);
void *cm_calloc_big(size_t nmemb, size_t size);
void *cm_realloc_big(void *p, size_t n);

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
