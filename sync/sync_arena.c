/*
 * sync_arena.c - a bump allocator for mapped records (see sync.h).
 *
 * A sync page maps up to a few thousand objects whose arrays and copied
 * strings all die together when the page is written: one arena per page,
 * reset between pages, keeps that to a handful of malloc calls.
 */
#include <stdalign.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "sync/sync.h"

#define CHUNK_MIN (64 * 1024)

struct sync_arena_chunk {
    struct sync_arena_chunk *next;
    size_t cap, off;
    max_align_t data[]; /* cap bytes */
};

void sync_arena_init(struct sync_arena *a, size_t max)
{
    a->head = NULL;
    a->used = 0;
    a->max = max;
    a->resets = 0;
}

void sync_arena_fini(struct sync_arena *a)
{
    struct sync_arena_chunk *c, *n;
    if (!a)
        return;
    for (c = a->head; c; c = n) {
        n = c->next;
        cm_free(c);
    }
    a->head = NULL;
    a->used = 0;
    a->resets++;
}

void sync_arena_reset(struct sync_arena *a)
{
    /* Keep the newest chunk (usually the biggest) for the next page. */
    struct sync_arena_chunk *keep = a->head, *c, *n;
    a->resets++;
    if (!keep)
        return;
    for (c = keep->next; c; c = n) {
        n = c->next;
        cm_free(c);
    }
    keep->next = NULL;
    keep->off = 0;
    a->used = 0;
}

void *sync_arena_alloc(struct sync_arena *a, size_t n)
{
    const size_t al = alignof(max_align_t);
    struct sync_arena_chunk *c = a->head;
    size_t need, cap;
    void *p;

    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - al)
        return NULL;
    need = (n + al - 1) & ~(al - 1);
    if (a->used > a->max || need > a->max - a->used)
        return NULL;
    if (!c || c->cap - c->off < need) {
        cap = need > CHUNK_MIN ? need : CHUNK_MIN;
        if (c && c->cap * 2 > cap && c->cap * 2 <= 64 * CHUNK_MIN)
            cap = c->cap * 2;
        c = cm_malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->off = 0;
        c->next = a->head;
        a->head = c;
    }
    p = (char *)c->data + c->off;
    c->off += need;
    a->used += need;
    memset(p, 0, n);
    return p;
}

char *sync_arena_strndup(struct sync_arena *a, const char *s, size_t n)
{
    char *p;
    if (n == SIZE_MAX)
        return NULL;
    p = sync_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
