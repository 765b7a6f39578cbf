/*
 * cm_alloc.h - allocation wrappers with a failure-injection hook, and the
 * JSON arena.
 *
 * All of peekd allocates through cm_malloc/cm_calloc/cm_realloc/cm_free so
 * that tests can make the Nth allocation fail (cm_alloc_fail_at) and check
 * that every path returns CM_NOMEM cleanly without leaks.  cm_json_init()
 * installs the same hooks in cJSON.  Thread-safe: the counters are atomics.
 *
 * struct cm_json_arena lets one thread's cJSON allocate by bumping a
 * pointer instead of a malloc per node and per string (a page of 1000
 * scenes is ~100k of them, and glibc pays again to consolidate them once
 * they are freed).  Lifetime rule: it rewinds by itself when the last
 * cJSON allocation made from it is freed, so nothing can outlive a
 * rewind; a thread may stop using it only when all of them are freed.
 * The one other rewind is cm_json_drop(), only when its marks prove the
 * dropped tree is everything the arena holds (below).
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

/* ---- JSON arena ------------------------------------------------------

 * While a thread uses an arena (cm_json_arena_use), cJSON's malloc hook
 * takes that thread's allocations from it and its free hook ignores memory
 * in it (other threads, and memory from before, keep the heap).  Every
 * cJSON tree, printed string and cJSON_malloc() block made from it must be
 * freed as usual (cJSON_Delete, cJSON_free) before the thread stops using
 * it: when its live count drops to 0 it rewinds, keeping one chunk as big
 * as everything it held.  Past `max` bytes of chunks it falls back to the
 * heap.  Allocations from it count for cm_alloc_fail_at() like any other.
 * Under AddressSanitizer every block is poisoned when freed and has a
 * poisoned redzone, so use after free, overflows and double frees are
 * still reported.  One thread at a time. */
struct cm_json_arena;

/* OUT *out: caller owns, free with cm_json_arena_free().  CM_NOMEM. */
enum cm_status cm_json_arena_new(size_t max, struct cm_json_arena **out) CM_WUR;

/* Frees a's chunks.  a must not be in use by any thread and must have no
 * live allocation (asserted).  NULL-safe. */
void cm_json_arena_free(struct cm_json_arena *a);

/* Makes cJSON on the calling thread allocate from a (NULL: from the heap
 * again) and returns the arena it used before (to restore it).  The
 * arena being replaced must have no live allocation (asserted). */
struct cm_json_arena *cm_json_arena_use(struct cm_json_arena *a);

/* Freeing a whole tree without visiting it.  cJSON_Delete() walks every
 * node and string of a tree (about 1 ms for a page of 1,000 scenes, long
 * after the tree left the cache); when the tree is all the arena holds,
 * rewinding the arena frees it at once.  Use:
 *
 *   cm_json_mark_begin(&m);  the arena holds nothing now
 *   ... code that builds tree and frees everything else it made ...
 *   cm_json_mark_end(&m);
 *   ... read tree (allocate nothing else from the arena to keep the gain) ...
 *   cm_json_drop(tree, &m);
 *
 * cm_json_drop() rewinds only when the marks prove it safe: the arena was
 * empty at the begin mark, no block of the tree went to the heap, and no
 * block was handed out after the end mark; so every live block then is
 * the tree's.  Otherwise (no arena, another arena, something allocated in
 * between) it is cJSON_Delete(tree).  The caller's part of the contract:
 * between the two marks, whatever is not the tree is freed. */
struct cm_json_mark {
    struct cm_json_arena *a; /* NULL: drop falls back to cJSON_Delete */
    uint64_t taken, spilled;
};

struct cJSON;
void cm_json_mark_begin(struct cm_json_mark *m);
void cm_json_mark_end(struct cm_json_mark *m);
void cm_json_drop(struct cJSON *tree, const struct cm_json_mark *m);
