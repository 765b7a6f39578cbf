/*
 * cm_alloc.c - allocation wrappers with failure injection (see
 * cm_alloc.h).
 */
#include "common/cm_alloc.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/cm_limits.h"

static atomic_long fail_countdown; /* 0: off; else allocations until fail */
static atomic_int fail_sticky;
static atomic_long fail_injected;

static int should_fail(void)
{
    long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (n == 0)
        return 0;
    if (n == 1) {
        if (!atomic_load(&fail_sticky))
            atomic_store(&fail_countdown, 0);
        atomic_fetch_add(&fail_injected, 1);
        return 1;
    }
    atomic_fetch_sub(&fail_countdown, 1);
    return 0;
}

void cm_alloc_fail_at(long n, int sticky)
{
    atomic_store(&fail_sticky, sticky);
    atomic_store(&fail_injected, 0);
    atomic_store(&fail_countdown, n < 0 ? 0 : n);
}

long cm_alloc_injected(void)
{
    return atomic_load(&fail_injected);
}

void *cm_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *cm_calloc(size_t nmemb, size_t size)
{
    if (should_fail())
        return NULL;
    if (nmemb == 0 || size == 0)
        return calloc(1, 1);
    return calloc(nmemb, size);
}

void *cm_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void cm_free(void *p)
{
    free(p);
}

/* Advises the whole 2 MiB pages inside p[0..n) for huge pages.  glibc
 * serves blocks this big with mmap (realloc with mremap, which keeps the
 * advice) or from the heap; either way the range is anonymous memory,
 * and so is ASan's.  A failure only means no huge pages. */
static void advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(huge - 1);
    if (p && n >= CM_BIG_MIN && e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

void *cm_malloc_big(size_t n)
{
    void *p = cm_malloc(n);
    advise_huge(p, n);
    return p;
}

void *cm_calloc_big(size_t nmemb, size_t size)
{
    void *p = cm_calloc(nmemb, size);
    if (nmemb && size <= SIZE_MAX / nmemb)
        advise_huge(p, nmemb * size);
    return p;
}

void *cm_realloc_big(void *p, size_t n)
{
    void *q = cm_realloc(p, n);
    advise_huge(q, n);
    return q;
}

char *cm_strndup(const char *s, size_t n)
{
    char *d = cm_malloc(n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *cm_strdup(const char *s)
{
    return cm_strndup(s, strlen(s));
}

static void *json_malloc(size_t n)
{
    return cm_malloc(n);
}

void cm_json_init(void)
{
    cJSON_Hooks hooks = {json_malloc, cm_free};
    cJSON_InitHooks(&hooks);
}
