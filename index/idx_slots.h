/*
 * idx_slots.h - a small process-wide table of cached values derived from
 * a store's index, shared inside index/ by the sort order cache
 * (idx_order.c) and the q dictionary snapshot (idx_text.c).
 *
 * A table is a fixed array of slots, each keyed by a store and two u64s
 * the owner chooses, holding at most one value.  A value is valid for the
 * index generation (IDX_META_GEN) it was built at and is reference
 * counted: the slot holds one reference, each user one, so a user keeps
 * reading a value while a newer one replaces it or the slot is evicted.
 * A missing or stale value is built by the one caller that claims its
 * slot, outside the mutex; everyone else asking meanwhile gets nothing
 * and falls back (they never wait).  Free slots are taken first, then the
 * least recently used one that is not being built.
 *
 * Threads: every function is safe from any thread; one mutex per table
 * guards the slots and the values' reference counts.  Values are freed
 * (the table's free callback) outside the mutex, by whichever call drops
 * their last reference.  Tables are static objects, set up with
 * IDX_SLOTS_INIT and never torn down (a cache that outlives stores: a
 * closed store's slots never match again, as its generations are random,
 * and are evicted in turn).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "kv/kv.h"

/* The first member of every value kept in a table (the table reads and
 * writes it through the value's void pointer). */
struct idx_slot_ref {
    uint64_t gen;  /* IDX_META_GEN value the value was built at */
    unsigned refs; /* guarded by the table's mutex */
};

struct idx_slot_key {
    struct kv_store *s; /* NULL only in free slots */
    uint64_t a, b;      /* the owner's (0 where unused) */
};

struct idx_slot {
    struct idx_slot_key key;
    void *v;           /* one reference; NULL while never built */
    uint64_t last_use; /* LRU tick */
    uint64_t aux;      /* the owner's, for its admit callback; 0 when taken */
    uint64_t no_gen;   /* a build at this generation was refused: no retry */
    bool building;     /* claimed by one caller */
};

struct idx_slots {
    pthread_mutex_t mu;
    struct idx_slot *slot;
    size_t n;
    uint64_t tick;
    void (*free)(void *v); /* frees a value with no reference left */
};

/* Initializer of a static table over the static array slots_. */
#define IDX_SLOTS_INIT(slots_, free_)                                          \
    {                                                                          \
        PTHREAD_MUTEX_INITIALIZER, (slots_),                                   \
            sizeof(slots_) / sizeof *(slots_), 0, (free_)                      \
    }

enum idx_slot_got {
    IDX_SLOT_HIT,     /* *out: the value of gen, referenced for the caller */
    IDX_SLOT_NONE,    /* use nothing, build nothing */
    IDX_SLOT_CLAIMED, /* *claim: the caller builds; idx_slots_publish() */
};

/* The value of key at generation gen.  When there is none, the slot of
 * key (found, or taken: free first, else least recently used; an evicted
 * value loses the slot's reference) is claimed for the caller to build
 * unless it is being built, gen was refused for it, no slot can be taken,
 * or admit (called with the mutex held, with the slot's aux; NULL: always)
 * returns false.  OUT *out: the value on IDX_SLOT_HIT, else NULL; release
 * with idx_slots_release().  OUT *claim: the slot on IDX_SLOT_CLAIMED,
 * else NULL; the caller must end the claim with idx_slots_publish(). */
enum idx_slot_got idx_slots_get(struct idx_slots *tab,
                                const struct idx_slot_key *key, uint64_t gen,
                                bool (*admit)(uint64_t *aux, void *arg),
                                void *arg, void **out, struct idx_slot **claim);

/* The value of key at generation gen when there is one; never claims.
 * OUT *out: NULL when none; release with idx_slots_release(). */
void idx_slots_peek(struct idx_slots *tab, const struct idx_slot_key *key,
                    uint64_t gen, void **out);

/* Ends the claim on sl.  v (takes ownership; NULL: nothing was built)
 * becomes the slot's value for gen, replacing the old one, with two
 * references: the slot's and the caller's.  refuse: gen is not claimed
 * again for this slot (the value cannot be built at this generation). */
void idx_slots_publish(struct idx_slots *tab, struct idx_slot *sl, uint64_t gen,
                       void *v, bool refuse);

/* Drops one reference to v (NULL-safe); frees it when it was the last. */
void idx_slots_release(struct idx_slots *tab, void *v);
