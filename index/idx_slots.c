/*
 * idx_slots.c - the slot table of cached index-derived values (see
 * idx_slots.h): find, take/evict, claim while building, publish, and the
 * reference counts, under the table's mutex.
 */
#include <string.h>

#include "index/idx_slots.h"

static bool key_eq(const struct idx_slot_key *x, const struct idx_slot_key *y)
{
    return x->s == y->s && x->a == y->a && x->b == y->b;
}

static struct idx_slot *find_locked(struct idx_slots *tab,
                                    const struct idx_slot_key *key)
{
    for (size_t i = 0; i < tab->n; i++)
        if (key_eq(&tab->slot[i].key, key))
            return &tab->slot[i];
    return NULL;
}

/* Drops one reference; the caller holds the mutex.  Returns the value to
 * free (after unlocking) or NULL. */
static void *unref_locked(void *v)
{
    struct idx_slot_ref *r = v;
    if (r && --r->refs == 0)
        return v;
    return NULL;
}

static void free_value(struct idx_slots *tab, void *v)
{
    if (v)
        tab->free(v);
}

/* A free or least recently used slot not being built; NULL when all are
 * being built.  *evicted: the value to free after unlocking. */
static struct idx_slot *take_locked(struct idx_slots *tab, void **evicted)
{
    struct idx_slot *best = NULL;
    *evicted = NULL;
    for (size_t i = 0; i < tab->n; i++) {
        struct idx_slot *x = &tab->slot[i];
        if (x->building)
            continue;
        if (!x->key.s)
            return x;
        if (!best || x->last_use < best->last_use)
            best = x;
    }
    if (best) {
        *evicted = unref_locked(best->v);
        memset(best, 0, sizeof *best);
    }
    return best;
}

static bool current(const struct idx_slot *sl, uint64_t gen)
{
    return sl->v && ((const struct idx_slot_ref *)sl->v)->gen == gen;
}

enum idx_slot_got idx_slots_get(struct idx_slots *tab,
                                const struct idx_slot_key *key, uint64_t gen,
                                bool (*admit)(uint64_t *aux, void *arg),
                                void *arg, void **out, struct idx_slot **claim)
{
    struct idx_slot *sl;
    void *drop = NULL;
    enum idx_slot_got got = IDX_SLOT_NONE;

    *out = NULL;
    *claim = NULL;
    pthread_mutex_lock(&tab->mu);
    sl = find_locked(tab, key);
    if (sl) {
        sl->last_use = ++tab->tick;
        if (current(sl, gen)) {
            ((struct idx_slot_ref *)sl->v)->refs++;
            *out = sl->v;
            got = IDX_SLOT_HIT;
            goto out;
        }
        if (sl->building || sl->no_gen == gen)
            goto out; /* someone builds it, or it cannot be built */
    } else {
        sl = take_locked(tab, &drop);
        if (!sl)
            goto out;
        sl->key = *key;
        sl->last_use = ++tab->tick;
    }
    if (admit && !admit(&sl->aux, arg))
        goto out;
    sl->building = true;
    *claim = sl;
    got = IDX_SLOT_CLAIMED;
out:
    pthread_mutex_unlock(&tab->mu);
    free_value(tab, drop);
    return got;
}

void idx_slots_peek(struct idx_slots *tab, const struct idx_slot_key *key,
                    uint64_t gen, void **out)
{
    struct idx_slot *sl;

    *out = NULL;
    pthread_mutex_lock(&tab->mu);
    sl = find_locked(tab, key);
    if (sl && current(sl, gen)) {
        sl->last_use = ++tab->tick;
        ((struct idx_slot_ref *)sl->v)->refs++;
        *out = sl->v;
    }
    pthread_mutex_unlock(&tab->mu);
}

void idx_slots_publish(struct idx_slots *tab, struct idx_slot *sl, uint64_t gen,
                       void *v, bool refuse)
{
    void *drop = NULL;

    pthread_mutex_lock(&tab->mu);
    /* The slot cannot have moved: building slots are never taken. */
    sl->building = false;
    if (refuse)
        sl->no_gen = gen;
    if (v) {
        struct idx_slot_ref *r = v;
        r->gen = gen;
        r->refs = 2; /* the slot's and the caller's */
        drop = unref_locked(sl->v);
        sl->v = v;
    }
    pthread_mutex_unlock(&tab->mu);
    free_value(tab, drop);
}

void idx_slots_release(struct idx_slots *tab, void *v)
{
    void *f;
    if (!v)
        return;
    pthread_mutex_lock(&tab->mu);
    f = unref_locked(v);
    pthread_mutex_unlock(&tab->mu);
    free_value(tab, f);
}
