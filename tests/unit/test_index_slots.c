/*
 * test_index_slots.c - the slot table shared by the sort order cache and
 * the q dictionary snapshot (index/idx_slots.c): hits by key and
 * generation, one builder per slot while others fall back, publishing
 * over a stale value, least-recently-used eviction that never takes a
 * slot being built, refused generations, the admit hook, and values freed
 * exactly once, when their last reference goes (also from several threads:
 * make tsan runs this binary).
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "index/idx_slots.h"
#include "tests/lib/testutil.h"

struct val {
    struct idx_slot_ref ref; /* first: the table's */
    int id;
};

static atomic_int n_freed;
static atomic_int last_freed;

static void val_free(void *v)
{
    struct val *x = v;
    atomic_store(&last_freed, x->id);
    atomic_fetch_add(&n_freed, 1);
    free(x);
}

static struct val *val_new(int id)
{
    struct val *x = calloc(1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    x->id = id;
    return x;
}

/* Opaque store handles: only their addresses matter to the table. */
static char stores[4];
#define STORE(i) ((struct kv_store *)(void *)&stores[i])

static struct idx_slot_key key_of(int store, uint64_t a)
{
    return (struct idx_slot_key){STORE(store), a, 0};
}

/* Builds and publishes key at gen; returns the caller's reference. */
static struct val *build(struct idx_slots *tab, struct idx_slot_key k,
                         uint64_t gen, int id)
{
    struct idx_slot *sl;
    void *v;
    struct val *x;
    ck_assert_int_eq(idx_slots_get(tab, &k, gen, NULL, NULL, &v, &sl),
                     IDX_SLOT_CLAIMED);
    ck_assert_ptr_null(v);
    x = val_new(id);
    idx_slots_publish(tab, sl, gen, x, false);
    ck_assert_uint_eq(x->ref.gen, gen);
    ck_assert_uint_eq(x->ref.refs, 2);
    return x;
}

START_TEST(test_claim_hit_stale)
{
    static struct idx_slot s[2];
    static struct idx_slots tab = IDX_SLOTS_INIT(s, val_free);
    struct idx_slot_key k = key_of(0, 1), other = key_of(0, 2);
    struct idx_slot *sl, *sl2;
    struct val *a, *b;
    void *v;
    int f0 = atomic_load(&n_freed);

    /* While one caller builds, the others get nothing (they never wait). */
    ck_assert_int_eq(idx_slots_get(&tab, &k, 5, NULL, NULL, &v, &sl),
                     IDX_SLOT_CLAIMED);
    ck_assert_int_eq(idx_slots_get(&tab, &k, 5, NULL, NULL, &v, &sl2),
                     IDX_SLOT_NONE);
    ck_assert_ptr_null(sl2);
    idx_slots_peek(&tab, &k, 5, &v);
    ck_assert_ptr_null(v);
    a = val_new(1);
    idx_slots_publish(&tab, sl, 5, a, false);

    ck_assert_int_eq(idx_slots_get(&tab, &k, 5, NULL, NULL, &v, &sl),
                     IDX_SLOT_HIT);
    ck_assert_ptr_eq(v, a);
    ck_assert_ptr_null(sl);
    ck_assert_uint_eq(a->ref.refs, 3);
    idx_slots_release(&tab, v);
    idx_slots_peek(&tab, &k, 5, &v);
    ck_assert_ptr_eq(v, a);
    idx_slots_release(&tab, v);
    idx_slots_peek(&tab, &other, 5, &v); /* another key: nothing */
    ck_assert_ptr_null(v);

    /* A new generation: the stale value is not handed out, the slot is
     * claimed again; the old value lives on for its holder. */
    idx_slots_peek(&tab, &k, 6, &v);
    ck_assert_ptr_null(v);
    b = build(&tab, k, 6, 2);
    ck_assert_int_eq(atomic_load(&n_freed), f0);
    ck_assert_uint_eq(a->ref.refs, 1);
    idx_slots_release(&tab, a);
    ck_assert_int_eq(atomic_load(&n_freed), f0 + 1);
    ck_assert_int_eq(atomic_load(&last_freed), 1);
    idx_slots_release(&tab, b);
    ck_assert_uint_eq(b->ref.refs, 1); /* the slot's */

    /* A failed build (nothing published) leaves the slot claimable. */
    ck_assert_int_eq(idx_slots_get(&tab, &k, 7, NULL, NULL, &v, &sl),
                     IDX_SLOT_CLAIMED);
    idx_slots_publish(&tab, sl, 7, NULL, false);
    ck_assert_int_eq(idx_slots_get(&tab, &k, 7, NULL, NULL, &v, &sl),
                     IDX_SLOT_CLAIMED);
    idx_slots_publish(&tab, sl, 7, NULL, false);
    idx_slots_release(&tab, NULL); /* NULL-safe */
}
END_TEST

START_TEST(test_lru_eviction)
{
    static struct idx_slot s[2];
    static struct idx_slots tab = IDX_SLOTS_INIT(s, val_free);
    struct idx_slot_key ka = key_of(1, 0), kb = key_of(2, 0), kc = key_of(3, 0);
    struct val *a, *b, *c;
    struct idx_slot *sl, *sl2, *none;
    void *v;
    int f0 = atomic_load(&n_freed);

    a = build(&tab, ka, 9, 10);
    b = build(&tab, kb, 9, 11);
    idx_slots_release(&tab, b); /* b: only the slot's reference */
    /* a hit makes a the most recent */
    ck_assert_int_eq(idx_slots_get(&tab, &ka, 9, NULL, NULL, &v, &sl),
                     IDX_SLOT_HIT);
    idx_slots_release(&tab, v);

    /* c takes the least recently used slot: b's, freed at once. */
    c = build(&tab, kc, 9, 12);
    ck_assert_int_eq(atomic_load(&n_freed), f0 + 1);
    ck_assert_int_eq(atomic_load(&last_freed), 11);
    idx_slots_peek(&tab, &kb, 9, &v);
    ck_assert_ptr_null(v);

    /* So does a peek that hits: b's key now takes c's slot. */
    idx_slots_release(&tab, c);
    idx_slots_peek(&tab, &ka, 9, &v);
    idx_slots_release(&tab, v);
    ck_assert_int_eq(idx_slots_get(&tab, &kb, 9, NULL, NULL, &v, &sl),
                     IDX_SLOT_CLAIMED);
    ck_assert_int_eq(atomic_load(&n_freed), f0 + 2);
    ck_assert_int_eq(atomic_load(&last_freed), 12);

    /* A slot being built is never taken, even when least recently used:
     * c's key evicts a, which its holder keeps until released. */
    ck_assert_int_eq(idx_slots_get(&tab, &kc, 9, NULL, NULL, &v, &sl2),
                     IDX_SLOT_CLAIMED);
    ck_assert_ptr_ne(sl2, sl);
    ck_assert_int_eq(atomic_load(&n_freed), f0 + 2);
    ck_assert_uint_eq(a->ref.refs, 1);
    ck_assert_int_eq(a->id, 10);
    idx_slots_release(&tab, a);
    ck_assert_int_eq(atomic_load(&n_freed), f0 + 3);
    ck_assert_int_eq(atomic_load(&last_freed), 10);

    /* Every slot being built: nothing to take. */
    ck_assert_int_eq(idx_slots_get(&tab, &ka, 9, NULL, NULL, &v, &none),
                     IDX_SLOT_NONE);
    ck_assert_ptr_null(none);
    idx_slots_publish(&tab, sl, 9, NULL, false);
    idx_slots_publish(&tab, sl2, 9, NULL, false);
    ck_assert_int_eq(idx_slots_get(&tab, &ka, 9, NULL, NULL, &v, &sl),
                     IDX_SLOT_CLAIMED);
    idx_slots_publish(&tab, sl, 9, NULL, false);
    ck_assert_int_eq(atomic_load(&n_freed), f0 + 3);
}
END_TEST

START_TEST(test_refuse)
{
    static struct idx_slot s[1];
    static struct idx_slots tab = IDX_SLOTS_INIT(s, val_free);
    struct idx_slot_key k = key_of(0, 0);
    struct idx_slot *sl;
    struct val *x;
    void *v;

    ck_assert_int_eq(idx_slots_get(&tab, &k, 3, NULL, NULL, &v, &sl),
                     IDX_SLOT_CLAIMED);
    idx_slots_publish(&tab, sl, 3, NULL, true); /* e.g. too big */
    ck_assert_int_eq(idx_slots_get(&tab, &k, 3, NULL, NULL, &v, &sl),
                     IDX_SLOT_NONE);
    /* another generation may be built */
    x = build(&tab, k, 4, 20);
    idx_slots_release(&tab, x);
    ck_assert_int_eq(idx_slots_get(&tab, &k, 3, NULL, NULL, &v, &sl),
                     IDX_SLOT_NONE);
    /* taking the slot for another key forgets the refusal */
    x = build(&tab, key_of(1, 0), 3, 21);
    idx_slots_release(&tab, x);
    x = build(&tab, k, 3, 22);
    idx_slots_release(&tab, x);
}
END_TEST

static bool admit_second(uint64_t *aux, void *arg)
{
    int *calls = arg;
    (*calls)++;
    return ++*aux >= 2;
}

START_TEST(test_admit)
{
    static struct idx_slot s[1];
    static struct idx_slots tab = IDX_SLOTS_INIT(s, val_free);
    struct idx_slot_key k = key_of(0, 7), k2 = key_of(0, 8);
    struct idx_slot *sl;
    struct val *x;
    int calls = 0;
    void *v;

    ck_assert_int_eq(idx_slots_get(&tab, &k, 1, admit_second, &calls, &v, &sl),
                     IDX_SLOT_NONE);
    ck_assert_ptr_null(sl);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(idx_slots_get(&tab, &k, 1, admit_second, &calls, &v, &sl),
                     IDX_SLOT_CLAIMED);
    ck_assert_int_eq(calls, 2);
    x = val_new(30);
    idx_slots_publish(&tab, sl, 1, x, false);
    idx_slots_release(&tab, x);
    /* a hit does not ask; neither does a slot being built */
    ck_assert_int_eq(idx_slots_get(&tab, &k, 1, admit_second, &calls, &v, &sl),
                     IDX_SLOT_HIT);
    idx_slots_release(&tab, v);
    ck_assert_int_eq(idx_slots_get(&tab, &k, 2, admit_second, &calls, &v, &sl),
                     IDX_SLOT_CLAIMED);
    ck_assert_int_eq(calls, 3);
    ck_assert_int_eq(idx_slots_get(&tab, &k, 2, admit_second, &calls, &v, &sl),
                     IDX_SLOT_NONE);
    ck_assert_int_eq(calls, 3);
    ck_assert_ptr_null(sl);
    ck_assert_int_eq(idx_slots_get(&tab, &k, 2, NULL, NULL, &v, &sl),
                     IDX_SLOT_NONE);
    /* (the claim is still ours: end it) */
    idx_slots_publish(&tab, &s[0], 2, NULL, false);
    /* a slot taken for another key starts from aux 0 */
    ck_assert_int_eq(idx_slots_get(&tab, &k2, 2, admit_second, &calls, &v, &sl),
                     IDX_SLOT_NONE);
    ck_assert_uint_eq(s[0].aux, 1);
    ck_assert_int_eq(atomic_load(&last_freed), 30);
}
END_TEST

/* Several threads get, build, publish and release over more keys than
 * slots while the generation moves: every value handed out is of the
 * asked key and generation, and once they are done every value is either
 * freed or held by its slot alone. */
#define TH_N     4
#define TH_ITERS 50000
#define TH_KEYS  5

static struct idx_slot th_s[3];
static struct idx_slots th_tab = IDX_SLOTS_INIT(th_s, val_free);
static atomic_uint_fast64_t th_gen = 1;
static atomic_int th_alloc, th_bad;

static void *th_main(void *arg)
{
    unsigned r = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    for (int i = 0; i < TH_ITERS; i++) {
        struct idx_slot_key k;
        struct idx_slot *sl;
        uint64_t gen;
        void *v;
        r = r * 1103515245u + 12345u;
        k = key_of(0, (r >> 16) % TH_KEYS);
        if ((r >> 8) % 97 == 0)
            atomic_fetch_add(&th_gen, 1);
        gen = atomic_load(&th_gen);
        switch (idx_slots_get(&th_tab, &k, gen, NULL, NULL, &v, &sl)) {
        case IDX_SLOT_HIT: {
            struct val *x = v;
            if (x->id != (int)k.a || x->ref.gen != gen)
                atomic_fetch_add(&th_bad, 1);
            idx_slots_release(&th_tab, x);
            break;
        }
        case IDX_SLOT_CLAIMED: {
            struct val *x = (r >> 4) % 5 ? val_new((int)k.a) : NULL;
            if (x)
                atomic_fetch_add(&th_alloc, 1);
            idx_slots_publish(&th_tab, sl, gen, x, false);
            idx_slots_release(&th_tab, x);
            break;
        }
        case IDX_SLOT_NONE: break;
        }
        if ((r >> 12) % 7 == 0) {
            idx_slots_peek(&th_tab, &k, gen, &v);
            if (v && ((struct val *)v)->id != (int)k.a)
                atomic_fetch_add(&th_bad, 1);
            idx_slots_release(&th_tab, v);
        }
    }
    return NULL;
}

START_TEST(test_threads)
{
    pthread_t th[TH_N];
    int f0 = atomic_load(&n_freed), held = 0;

    for (uintptr_t i = 0; i < TH_N; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, th_main, (void *)i), 0);
    for (int i = 0; i < TH_N; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_int_eq(atomic_load(&th_bad), 0);
    for (size_t i = 0; i < sizeof th_s / sizeof *th_s; i++) {
        ck_assert(!th_s[i].building);
        if (th_s[i].v) {
            ck_assert_uint_eq(((struct val *)th_s[i].v)->ref.refs, 1);
            held++;
        }
    }
    ck_assert_int_gt(atomic_load(&th_alloc), 50);
    ck_assert_int_eq(atomic_load(&n_freed) - f0, atomic_load(&th_alloc) - held);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("index_slots");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_claim_hit_stale);
    tcase_add_test(tc, test_lru_eviction);
    tcase_add_test(tc, test_refuse);
    tcase_add_test(tc, test_admit);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
