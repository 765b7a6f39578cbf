/*
 * kv_warm.c - reading a batch's pages ahead, in parallel.
 *
 * An incremental pass on a store that is not in the page cache spends its
 * wall time waiting on single-page disk reads, one after another: every
 * lookup of its write transaction descends to a leaf the disk must supply
 * before the next lookup starts.  A batch that knows the keys it is about
 * to look up can have them looked up first by KV_WARM_THREADS threads, each
 * in a read transaction of its own: their page faults are in flight
 * together, and the batch's own lookups then find every page in the page
 * cache (and mapped: the threads share the process's map).  Values on
 * overflow pages are advised with kv_prefetch rather than read.
 *
 * It is only a warm-up.  The threads read the last committed state, which
 * shares with the write transaction every page it has not written; nothing
 * they find is used, and a failure (no thread, no reader slot) only means
 * the batch reads its pages itself.  It runs only while the store is in
 * random-access mode (kv_random_access): a scan, or a store the pass finds
 * in the page cache, would pay for every lookup twice for nothing.
 */
#include <lmdb.h>
#include <pthread.h>
#include <string.h>

#include "common/cm_log.h"
#include "kv/kv_int.h"

struct warm_job {
    struct kv_store *s;
    size_t lo, hi;
    kv_warm_fn *fn;
    void *ctx;
};

/* A thread of the warm-up: a read transaction of its own, taken straight
 * from LMDB.  Not kv_read_begin: that takes grow_lock shared, and with a
 * grow waiting for it exclusively (writer-preferring lock) a new shared
 * hold waits too, while the caller, who holds it, waits for this thread.
 * The caller's hold keeps the map in place instead (kv_warm_run). */
static void *warm_thread(void *arg)
{
    struct warm_job *j = arg;
    struct kv_txn t;

    memset(&t, 0, sizeof t);
    t.s = j->s;
    if (mdb_txn_begin(j->s->env, NULL, MDB_RDONLY, &t.txn) != 0)
        return NULL; /* no reader slot, say: the caller reads its own */
    t.active = 1;
    j->fn(&t, j->lo, j->hi, j->ctx);
    mdb_txn_abort(t.txn);
    return NULL;
}

bool kv_warming(struct kv_store *s)
{
    return s && __atomic_load_n(&s->random_access, __ATOMIC_RELAXED);
}

void kv_warm_run(struct kv_store *s, size_t n, kv_warm_fn *fn, void *ctx)
{
    pthread_t tid[KV_WARM_THREADS];
    struct warm_job job[KV_WARM_THREADS];
    bool started[KV_WARM_THREADS] = {false};
    size_t per;

    if (!kv_warming(s) || n < KV_WARM_MIN || !fn)
        return;
    if (!kv_held_by_me(s)) { /* nothing would keep the map in place */
        cm_warn("kv", "kv_warm_run outside a transaction: nothing read ahead");
        return;
    }
    per = (n + KV_WARM_THREADS - 1) / KV_WARM_THREADS;
    for (int i = 0; i < KV_WARM_THREADS; i++) {
        size_t lo = (size_t)i * per, hi = lo + per < n ? lo + per : n;
        if (lo >= n)
            break;
        job[i] = (struct warm_job){s, lo, hi, fn, ctx};
        started[i] = pthread_create(&tid[i], NULL, warm_thread, &job[i]) == 0;
    }
    for (int i = 0; i < KV_WARM_THREADS; i++)
        if (started[i])
            pthread_join(tid[i], NULL);
}

static void warm_keys_fn(struct kv_txn *t, size_t lo, size_t hi, void *ctx)
{
    const struct kv_keyref *k = ctx;
    for (size_t i = lo; i < hi; i++) {
        const void *v;
        size_t n;
        if (kv_get(t, (enum kv_db)k[i].db, k[i].key, k[i].len, &v, &n) == CM_OK)
            kv_prefetch(v, n);
    }
}

void kv_warm_keys(struct kv_store *s, const struct kv_keyref *keys, size_t n)
{
    kv_warm_run(s, n, warm_keys_fn, (void *)keys);
}
