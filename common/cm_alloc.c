/*
 * cm_alloc.c - allocation wrappers with failure injection, and the JSON
 * arena (see cm_alloc.h).
 */
#include "common/cm_alloc.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/cm_limits.h"

#if defined(__SANITIZE_ADDRESS__)
#define JSON_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JSON_ASAN 1
#endif
#endif
#ifdef JSON_ASAN
#include <sanitizer/asan_interface.h>
#else
#define JSON_ASAN                         0
#define ASAN_POISON_MEMORY_REGION(p, n)   ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

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

/* ---- JSON arena ---------------------------------------------------- */

#define JALIGN     alignof(max_align_t)
#define JCHUNK_MIN (256 * CM_KiB)
/* Under ASan a block is [header][payload][redzone]: the header keeps the
 * size (to poison the block when it is freed) and whether it is live. */
#define JHDR (JSON_ASAN ? JALIGN : 0)
#define JRED (JSON_ASAN ? JALIGN : 0)

struct jchunk {
    struct jchunk *next;
    size_t cap, off;
    max_align_t data[]; /* cap bytes */
};

struct jhdr { /* ASan builds only */
    size_t n;
    size_t live;
};

struct cm_json_arena {
    struct jchunk *head; /* the chunk handing out memory; older ones next */
    size_t held;         /* bytes of all chunks */
    size_t max;          /* bound on held; past it: the heap */
    size_t live;         /* blocks handed out and not freed yet */
    size_t next_cap;     /* capacity of the next chunk */
    uint64_t taken;      /* blocks ever handed out (cm_json_drop) */
    uint64_t spilled;    /* allocations that went to the heap instead */
};

static _Thread_local struct cm_json_arena *tl_json_arena;

enum cm_status cm_json_arena_new(size_t max, struct cm_json_arena **out)
{
    *out = cm_calloc(1, sizeof **out);
    if (!*out)
        return CM_NOMEM;
    (*out)->max = max;
    (*out)->next_cap = JCHUNK_MIN;
    return CM_OK;
}

static void free_chunks(struct cm_json_arena *a)
{
    struct jchunk *c, *n;
    for (c = a->head; c; c = n) {
        n = c->next;
        ASAN_UNPOISON_MEMORY_REGION(c->data, c->cap);
        cm_free(c);
    }
    a->head = NULL;
    a->held = 0;
}

void cm_json_arena_free(struct cm_json_arena *a)
{
    if (!a)
        return;
    assert(a->live == 0 && tl_json_arena != a);
    free_chunks(a);
    cm_free(a);
}

struct cm_json_arena *cm_json_arena_use(struct cm_json_arena *a)
{
    struct cm_json_arena *prev = tl_json_arena;
    assert(!prev || prev == a || prev->live == 0);
    tl_json_arena = a;
    return prev;
}

/* The last block was freed: start again at the beginning, in one chunk
 * big enough for everything held so far. */
static void arena_rewind(struct cm_json_arena *a)
{
    struct jchunk *c = a->head;
    if (!c)
        return;
    if (c->next) {
        a->next_cap = a->held;
        free_chunks(a);
        return;
    }
    c->off = 0;
    ASAN_POISON_MEMORY_REGION(c->data, c->cap);
}

/* OUT *p: a block of n bytes from a.  CM_TOOBIG when it would pass
 * a->max (the caller then uses the heap), CM_NOMEM. */
static enum cm_status arena_take(struct cm_json_arena *a, size_t n, void **out)
{
    struct jchunk *c = a->head;
    size_t need, cap;
    char *p;

    if (n > SIZE_MAX / 2)
        return CM_TOOBIG;
    need = JHDR + ((n + JALIGN - 1) & ~(JALIGN - 1)) + JRED;
    if (!c || c->cap - c->off < need) {
        if (a->held >= a->max || need > a->max - a->held)
            return CM_TOOBIG;
        cap = a->next_cap > need ? a->next_cap : need;
        if (cap > a->max - a->held)
            cap = a->max - a->held;
        if (!(c = cm_malloc(sizeof *c + cap)))
            return CM_NOMEM;
        c->cap = cap;
        c->off = 0;
        c->next = a->head;
        a->head = c;
        a->held += cap;
        a->next_cap = cap < a->max / 2 ? cap * 2 : a->max;
        ASAN_POISON_MEMORY_REGION(c->data, cap);
    }
    p = (char *)c->data + c->off;
    c->off += need;
    a->live++;
    a->taken++;
    if (JSON_ASAN) {
        struct jhdr *h = (struct jhdr *)p;
        ASAN_UNPOISON_MEMORY_REGION(h, sizeof *h);
        h->n = n;
        h->live = 1;
        ASAN_POISON_MEMORY_REGION(h, sizeof *h);
        p += JHDR;
    }
    ASAN_UNPOISON_MEMORY_REGION(p, n);
    *out = p;
    return CM_OK;
}

static bool arena_owns(const struct cm_json_arena *a, const void *p)
{
    uintptr_t u = (uintptr_t)p;
    for (const struct jchunk *c = a->head; c; c = c->next)
        if (u >= (uintptr_t)c->data && u < (uintptr_t)c->data + c->cap)
            return true;
    return false;
}

static void arena_release(struct cm_json_arena *a, void *p)
{
    if (JSON_ASAN) {
        struct jhdr *h = (struct jhdr *)((char *)p - JHDR);
        ASAN_UNPOISON_MEMORY_REGION(h, sizeof *h);
        if (h->live != 1) { /* a double free, or not a block's start */
            fprintf(stderr, "cm_json_arena: bad free of %p\n", p);
            abort();
        }
        h->live = 0;
        ASAN_POISON_MEMORY_REGION(h,
                                  JHDR + ((h->n + JALIGN - 1) & ~(JALIGN - 1)));
    }
    assert(a->live > 0);
    if (--a->live == 0)
        arena_rewind(a);
}

static void *json_malloc(size_t n)
{
    struct cm_json_arena *a = tl_json_arena;
    void *p = NULL;
    enum cm_status st;
    if (a) {
        if (should_fail())
            return NULL;
        st = arena_take(a, n ? n : 1, &p);
        if (st != CM_TOOBIG)
            return p;
        a->spilled++;
        return malloc(n ? n : 1); /* injection was consulted above */
    }
    return cm_malloc(n);
}

static void json_free(void *p)
{
    struct cm_json_arena *a = tl_json_arena;
    if (a && p && arena_owns(a, p)) {
        arena_release(a, p);
        return;
    }
    cm_free(p);
}

void cm_json_mark_begin(struct cm_json_mark *m)
{
    struct cm_json_arena *a = tl_json_arena;
    m->a = a && a->live == 0 ? a : NULL;
    m->taken = a ? a->taken : 0;
    m->spilled = a ? a->spilled : 0;
}

void cm_json_mark_end(struct cm_json_mark *m)
{
    struct cm_json_arena *a = m->a;
    if (a && (tl_json_arena != a || a->spilled != m->spilled))
        m->a = NULL; /* another arena, or part of the tree is heap memory */
    if (m->a)
        m->taken = a->taken;
}

void cm_json_drop(struct cJSON *tree, const struct cm_json_mark *m)
{
    struct cm_json_arena *a = m ? m->a : NULL;
    if (!tree)
        return;
    if (a && tl_json_arena == a && a->taken == m->taken && a->live > 0) {
        a->live = 0; /* every live block is tree's (see cm_alloc.h) */
        arena_rewind(a);
        return;
    }
    cJSON_Delete(tree);
}

void cm_json_init(void)
{
    cJSON_Hooks hooks = {json_malloc, json_free};
    cJSON_InitHooks(&hooks);
}
