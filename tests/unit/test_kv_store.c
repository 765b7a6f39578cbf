/*
 * test_kv_store.c - the LMDB store: filesystem guard, open/close/reopen,
 * schema and index versions, read-only opens, docid allocation and the id
 * maps, the reverse index against a brute-force oracle and its queued
 * puts, map growth
 * (in-process and by another process), stale reader slots of a killed
 * process, readers concurrent with a writer, OOM injection, backups.
 */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "kv/kv.h"
#include "tests/lib/testutil.h"
#include "tests/unit/kv_testgen.h"

static struct kv_store *open_at(const char *dir, size_t map, int ro)
{
    struct kv_options o = {0};
    struct kv_store *s = NULL;
    char err[1024];
    o.map_size = map;
    o.read_only = ro;
    o.no_sync = 1;
    enum cm_status st = kv_open(dir, &o, &s, err, sizeof err);
    ck_assert_msg(st == CM_OK, "kv_open(%s): %s: %s", dir, cm_status_str(st),
                  err);
    return s;
}

static char *path_in(const char *dir, const char *name)
{
    static char buf[8][4096];
    static int k;
    char tmp[4096];
    char *p = buf[k++ & 7];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, name);
    memcpy(p, tmp, sizeof tmp);
    return p;
}

/* ---- filesystem guard ---- */

START_TEST(fs_verdict_table)
{
    static const struct {
        unsigned long t;
        const char *name;
    } bad[] = {{0x01021997UL, "9p"},   {0x65735546UL, "FUSE"},
               {0x6969UL, "NFS"},      {0xFF534D42UL, "CIFS"},
               {0xFE534D42UL, "SMB2"}, {0x517BUL, "SMB"}};
    static const unsigned long good[] = {
        0xEF53UL /* ext4 */, 0x58465342UL /* xfs */, 0x01021994UL /* tmpfs */,
        0x9123683EUL /* btrfs */, 0x794C7630UL /* overlayfs */};
    char err[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ck_assert_int_eq(kv_fs_verdict(bad[i].t, err, sizeof err),
                         CM_UNSUPPORTED);
        ck_assert_msg(strstr(err, bad[i].name), "%s", err);
        ck_assert(strstr(err, "PEEKD_ALLOW_NETWORK_FS=1"));
        ck_assert(strstr(err, "named volume"));
        ck_assert(strstr(err, "local filesystem"));
        /* f_type sign-extended by a 32-bit signed field */
        unsigned long sx = (unsigned long)(long)(int32_t)(uint32_t)bad[i].t;
        ck_assert_int_eq(kv_fs_verdict(sx, err, sizeof err), CM_UNSUPPORTED);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_int_eq(kv_fs_verdict(good[i], err, sizeof err), CM_OK);
    ck_assert_int_eq(kv_check_fs(tu_tmpdir(), err, sizeof err), CM_OK);
    ck_assert_int_eq(kv_check_fs("/nonexistent/peekd", err, sizeof err), CM_IO);
    ck_assert(strstr(err, "/nonexistent/peekd"));
}
END_TEST

/* ---- open / close / versions ---- */

static enum cm_status put_scenes(struct kv_txn *t, void *ctx)
{
    uint64_t seed = *(uint64_t *)ctx;
    for (uint64_t i = 1; i <= 50; i++) {
        struct tg_arena a = {0};
        struct kv_scene sc;
        struct kv_entity e;
        uint32_t d;
        bool created;
        enum cm_status st;
        tg_scene(&a, &seed, &sc, i * 10, 20);
        tg_entity(&a, &seed, &e);
        e.type = KV_TAG;
        e.id = i;
        st = kv_scene_store(t, &sc, NULL, &d, &created);
        if (st == CM_OK)
            st = kv_entity_put(t, &e);
        tg_arena_free(&a);
        if (st != CM_OK)
            return st;
    }
    return CM_OK;
}

static void check_scenes(struct kv_store *s, uint64_t seed)
{
    struct kv_txn *t;
    uint64_t n;
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_scene_count(t, &n), CM_OK);
    ck_assert_uint_eq(n, 50);
    for (uint64_t i = 1; i <= 50; i++) {
        struct tg_arena a = {0};
        struct kv_scene sc, got;
        struct kv_entity e, ge;
        uint32_t d;
        tg_scene(&a, &seed, &sc, i * 10, 20);
        tg_entity(&a, &seed, &e);
        e.type = KV_TAG;
        e.id = i;
        ck_assert_int_eq(kv_docid_of(t, i * 10, &d), CM_OK);
        ck_assert_uint_eq(d, i); /* docids in arrival order from 1 */
        ck_assert_int_eq(kv_scene_get(t, d, &got), CM_OK);
        ck_assert(kv_scene_equal(&sc, &got));
        ck_assert_int_eq(kv_entity_get(t, KV_TAG, i, &ge), CM_OK);
        ck_assert(kv_entity_equal(&e, &ge));
        kv_scene_fini(&got);
        kv_entity_fini(&ge);
        tg_arena_free(&a);
    }
    kv_read_end(t);
}

START_TEST(open_close_reopen)
{
    const char *base = tu_tmpdir();
    const char *dir = path_in(base, "store");
    uint64_t seed = 31;
    struct kv_store *s = open_at(dir, 0, 0);
    struct stat sb;

    ck_assert_int_eq(stat(dir, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0700);
    ck_assert_str_eq(kv_dir(s), dir);
    ck_assert_int_eq(kv_write_run(s, put_scenes, &seed), CM_OK);
    check_scenes(s, 31);
    kv_close(s);
    s = open_at(dir, 0, 0);
    check_scenes(s, 31);
    {
        struct kv_txn *t, *t2 = NULL;
        bool ok;
        struct kv_entity e;
        ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
        ck_assert_int_eq(kv_read_begin(s, &t2), CM_BUSY); /* one per thread */
        ck_assert_ptr_null(t2);
        kv_close(NULL);
        ck_assert_int_eq(kv_index_version_ok(t, &ok), CM_OK);
        ck_assert(ok);
        ck_assert_int_eq(kv_entity_get(t, KV_TAG, 999, &e), CM_NOTFOUND);
        ck_assert_int_eq(kv_entity_get(t, KV_PERFORMER, 1, &e), CM_NOTFOUND);
        kv_read_end(t);
    }
    kv_close(s);
}
END_TEST

static void set_meta(const char *dir, const char *key, uint64_t v)
{
    struct kv_store *s = open_at(dir, 0, 0);
    struct kv_txn *t;
    ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_meta_put_u64(t, key, v), CM_OK);
    ck_assert_int_eq(kv_commit(t), CM_OK);
    kv_close(s);
}

START_TEST(schema_version_mismatch)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s = NULL;
    char err[1024];
    struct kv_options o = {0};

    kv_close(open_at(dir, 0, 0));
    set_meta(dir, "schema_version", 99);
    ck_assert_int_eq(kv_open(dir, &o, &s, err, sizeof err), CM_VERSION);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, "99") && strstr(err, "newer peekd"), "%s", err);
    ck_assert(strstr(err, dir));
    /* nothing was written: still 99 */
    o.read_only = 1;
    ck_assert_int_eq(kv_open(dir, &o, &s, err, sizeof err), CM_VERSION);
    /* an older store */
    const char *dir2 = tu_tmpdir();
    kv_close(open_at(dir2, 0, 0));
    set_meta(dir2, "schema_version", 0);
    o.read_only = 0;
    ck_assert_int_eq(kv_open(dir2, &o, &s, err, sizeof err), CM_VERSION);
    ck_assert_msg(strstr(err, "schema version 0") && strstr(err, "peekd sync"),
                  "%s", err);
}
END_TEST

START_TEST(index_version)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s;
    struct kv_txn *t;
    bool ok = true;

    kv_close(open_at(dir, 0, 0));
    set_meta(dir, KV_META_INDEX_VERSION, KV_INDEX_VERSION + 1);
    s = open_at(dir, 0, 0); /* only the index differs: opens */
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_index_version_ok(t, &ok), CM_OK);
    ck_assert(!ok);
    kv_read_end(t);
    ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_index_version_set(t), CM_OK);
    ck_assert_int_eq(kv_commit(t), CM_OK);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_index_version_ok(t, &ok), CM_OK);
    ck_assert(ok);
    kv_read_end(t);
    kv_close(s);
}
END_TEST

static unsigned long long file_sum(const char *path, off_t *size)
{
    size_t n;
    char *b = tu_read_file(path, &n);
    unsigned long long h = 1469598103934665603ULL;
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)b[i]) * 1099511628211ULL;
    free(b);
    *size = (off_t)n;
    return h;
}

START_TEST(read_only)
{
    const char *base = tu_tmpdir();
    const char *dir = path_in(base, "ro");
    struct kv_options o = {0};
    struct kv_store *s = NULL;
    struct kv_txn *t = NULL;
    char err[1024];
    uint64_t seed = 8;
    off_t sz1, sz2;
    unsigned long long h1, h2;

    o.read_only = 1;
    ck_assert_int_eq(kv_open(dir, &o, &s, err, sizeof err), CM_NOTFOUND);
    ck_assert_int_ne(access(dir, F_OK), 0); /* not created */
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(kv_open(dir, &o, &s, err, sizeof err), CM_NOTFOUND);
    ck_assert(strstr(err, "no store"));
    s = open_at(dir, 0, 0);
    ck_assert_int_eq(kv_write_run(s, put_scenes, &seed), CM_OK);
    kv_close(s);
    h1 = file_sum(path_in(dir, "data.mdb"), &sz1);
    s = open_at(dir, 0, 1);
    check_scenes(s, 8);
    ck_assert_int_eq(kv_write_begin(s, &t), CM_INVALID);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(kv_write_run(s, put_scenes, &seed), CM_INVALID);
    kv_close(s);
    h2 = file_sum(path_in(dir, "data.mdb"), &sz2);
    ck_assert_int_eq(sz1, sz2);
    ck_assert(h1 == h2);
}
END_TEST

/* ---- docids and id maps ---- */

struct docid_ctx {
    uint64_t *ids;
    int n;
    uint32_t *docids;
    bool *created;
};

static enum cm_status store_ids(struct kv_txn *t, void *ctx)
{
    struct docid_ctx *c = ctx;
    for (int i = 0; i < c->n; i++) {
        struct kv_scene sc;
        memset(&sc, 0, sizeof sc);
        sc.id = c->ids[i];
        enum cm_status st =
            kv_scene_store(t, &sc, NULL, &c->docids[i], &c->created[i]);
        if (st != CM_OK)
            return st;
    }
    return CM_OK;
}

static enum cm_status remove_docid(struct kv_txn *t, void *ctx)
{
    return kv_scene_remove(t, *(uint32_t *)ctx, NULL);
}

/* One write txn that looks ids up, stores, removes and stores again: the
 * txn's cached id-map answer and its cached next docid must follow every
 * change (kv_docid_of answers from the cache for the id it saw last). */
static enum cm_status churn_one_txn(struct kv_txn *t, void *ctx)
{
    uint32_t *out = ctx, d = 0, d2 = 0;
    struct kv_scene sc;
    bool made = false;

    memset(&sc, 0, sizeof sc);
    sc.id = 77;
    ck_assert_int_eq(kv_docid_of(t, 77, &d), CM_NOTFOUND);
    ck_assert_int_eq(kv_docid_of(t, 77, &d), CM_NOTFOUND); /* cached miss */
    ck_assert_int_eq(kv_scene_store(t, &sc, NULL, &d, &made), CM_OK);
    ck_assert(made);
    ck_assert_int_eq(kv_docid_of(t, 77, &d2), CM_OK);
    ck_assert_uint_eq(d2, d);
    ck_assert_int_eq(kv_scene_remove(t, d, NULL), CM_OK);
    ck_assert_int_eq(kv_docid_of(t, 77, &d2), CM_NOTFOUND);
    ck_assert_int_eq(kv_scene_store(t, &sc, NULL, &d2, &made), CM_OK);
    ck_assert(made);
    ck_assert_uint_eq(d2, d + 1); /* never reused, even inside one txn */
    sc.id = 78;
    ck_assert_int_eq(kv_scene_store(t, &sc, NULL, &out[1], &made), CM_OK);
    ck_assert_uint_eq(out[1], d + 2);
    ck_assert_int_eq(kv_docid_of(t, 77, &d), CM_OK); /* not the cached 78 */
    ck_assert_uint_eq(d, d2);
    out[0] = d2;
    return out[2] ? CM_ABORTED : CM_OK; /* out[2]: abort instead */
}

START_TEST(docid_cache_in_one_txn)
{
    struct kv_store *s = open_at(tu_tmpdir(), 0, 0);
    uint32_t out[3] = {0, 0, 1}, d;
    struct kv_txn *t;
    uint64_t next;

    /* an aborted txn leaves neither id maps nor the counter behind */
    ck_assert_int_eq(kv_write_run(s, churn_one_txn, out), CM_ABORTED);
    out[2] = 0;
    ck_assert_int_eq(kv_write_run(s, churn_one_txn, out), CM_OK);
    ck_assert_uint_eq(out[0], 2);
    ck_assert_uint_eq(out[1], 3);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_docid_of(t, 77, &d), CM_OK);
    ck_assert_uint_eq(d, 2);
    ck_assert_int_eq(kv_docid_of(t, 78, &d), CM_OK);
    ck_assert_uint_eq(d, 3);
    ck_assert_int_eq(kv_meta_get_u64(t, "next_docid", &next), CM_OK);
    ck_assert_uint_eq(next, 4);
    kv_read_end(t);
    kv_close(s);
}
END_TEST

START_TEST(docid_allocation)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s = open_at(dir, 0, 0);
    uint64_t ids[200], seed = 3;
    uint32_t docids[200], again[200];
    bool created[200];
    struct docid_ctx c = {ids, 200, docids, created};
    struct kv_txn *t;
    uint64_t n, sid;
    uint32_t d;

    for (int i = 0; i < 200; i++)
        ids[i] = (tg_next(&seed) >> 20) * 200 + (uint64_t)i + 1; /* distinct */
    ck_assert_int_eq(kv_write_run(s, store_ids, &c), CM_OK);
    for (int i = 0; i < 200; i++) {
        ck_assert_uint_eq(docids[i], (uint32_t)i + 1);
        ck_assert(created[i]);
    }
    c.docids = again;
    ck_assert_int_eq(kv_write_run(s, store_ids, &c), CM_OK);
    for (int i = 0; i < 200; i++) {
        ck_assert_uint_eq(again[i], docids[i]);
        ck_assert(!created[i]);
    }
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_scene_count(t, &n), CM_OK);
    ck_assert_uint_eq(n, 200);
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(kv_docid_of(t, ids[i], &d), CM_OK);
        ck_assert_uint_eq(d, docids[i]);
        ck_assert_int_eq(kv_stash_id_of(t, d, &sid), CM_OK);
        ck_assert_uint_eq(sid, ids[i]);
    }
    ck_assert_int_eq(kv_docid_of(t, 0xFFFFFFFFFFULL, &d), CM_NOTFOUND);
    ck_assert_int_eq(kv_stash_id_of(t, 201, &sid), CM_NOTFOUND);
    kv_read_end(t);
    /* remove #7, re-add it: a new docid, never reused */
    d = docids[7];
    ck_assert_int_eq(kv_write_run(s, remove_docid, &d), CM_OK);
    ck_assert_int_eq(kv_write_run(s, remove_docid, &d), CM_NOTFOUND);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_docid_of(t, ids[7], &d), CM_NOTFOUND);
    ck_assert_int_eq(kv_stash_id_of(t, docids[7], &sid), CM_NOTFOUND);
    ck_assert_int_eq(kv_scene_count(t, &n), CM_OK);
    ck_assert_uint_eq(n, 199);
    kv_read_end(t);
    c.ids = &ids[7];
    c.n = 1;
    ck_assert_int_eq(kv_write_run(s, store_ids, &c), CM_OK);
    ck_assert_uint_eq(again[0], 201);
    ck_assert(created[0]);
    kv_close(s);
    /* the counter persists */
    s = open_at(dir, 0, 0);
    ids[0] = 1;
    c.ids = ids;
    ck_assert_int_eq(kv_write_run(s, store_ids, &c), CM_OK);
    ck_assert_uint_eq(again[0], 202);
    kv_close(s);
}
END_TEST

/* ---- reverse index vs an oracle ---- */

#define RV_SCENES 150
#define RV_POOL   12

struct rv_ctx {
    uint64_t seed;
    struct tg_arena *a;
    /* oracle: refs per stash id, as a bitset type x id */
    int present[RV_SCENES + 1];
    unsigned char has[RV_SCENES + 1][5][RV_POOL + 1];
    uint32_t docid[RV_SCENES + 1];
    struct kv_scene cur[RV_SCENES + 1];
};

static const uint8_t rv_types[5] = {KV_PERFORMER, KV_TAG, KV_STUDIO, KV_GROUP,
                                    KV_GALLERY};

static void oracle_set(struct rv_ctx *c, int i, const struct kv_scene *sc)
{
    memset(c->has[i], 0, sizeof c->has[i]);
    if (!sc)
        return;
    for (uint32_t j = 0; j < sc->n_performers; j++)
        c->has[i][0][sc->performers[j].id] = 1;
    for (uint32_t j = 0; j < sc->n_tags; j++)
        c->has[i][1][sc->tags[j].id] = 1;
    if (sc->studio.id)
        c->has[i][2][sc->studio.id] = 1;
    for (uint32_t j = 0; j < sc->n_groups; j++)
        c->has[i][3][sc->groups[j].id] = 1;
    for (uint32_t j = 0; j < sc->n_galleries; j++)
        c->has[i][4][sc->galleries[j].id] = 1;
}

static enum cm_status rv_step(struct kv_txn *t, void *ctx)
{
    struct rv_ctx *c = ctx;
    for (int k = 0; k < 40; k++) {
        int i = (int)tg_below(&c->seed, RV_SCENES) + 1;
        uint32_t op = tg_below(&c->seed, 10);
        enum cm_status st;
        if (c->present[i] && op < 2) {
            st = kv_scene_remove(t, c->docid[i], op ? &c->cur[i] : NULL);
            if (st != CM_OK)
                return st;
            c->present[i] = 0;
            oracle_set(c, i, NULL);
            continue;
        }
        struct kv_scene sc;
        bool created;
        tg_scene(c->a, &c->seed, &sc, (uint64_t)i, RV_POOL);
        st = kv_scene_store(t, &sc,
                            c->present[i] && (op & 1) ? &c->cur[i] : NULL,
                            &c->docid[i], &created);
        if (st != CM_OK)
            return st;
        ck_assert(created == !c->present[i]);
        c->present[i] = 1;
        c->cur[i] = sc;
        oracle_set(c, i, &sc);
    }
    return CM_OK;
}

struct collect {
    uint32_t v[RV_SCENES + 1];
    int n;
    int stop_after;
};

static int collect_fn(uint32_t docid, void *ctx)
{
    struct collect *c = ctx;
    c->v[c->n++] = docid;
    return c->stop_after && c->n >= c->stop_after;
}

/* The reverse index of s equals the oracle of c. */
static void rv_compare(struct kv_store *s, const struct rv_ctx *c)
{
    struct kv_txn *t;
    MDB_stat ms;
    size_t total = 0;
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    for (int ty = 0; ty < 5; ty++)
        for (uint64_t id = 0; id <= RV_POOL + 1; id++) {
            struct collect got = {{0}, 0, 0};
            uint32_t want[RV_SCENES + 1];
            int nw = 0;
            ck_assert_int_eq(
                kv_scenes_with(t, rv_types[ty], id, collect_fn, &got), CM_OK);
            for (int i = 1; i <= RV_SCENES; i++)
                if (c->present[i] && id <= RV_POOL && id && c->has[i][ty][id])
                    want[nw++] = c->docid[i];
            /* docid order */
            for (int x = 1; x < nw; x++)
                for (int y = x; y > 0 && want[y - 1] > want[y]; y--) {
                    uint32_t tmp = want[y];
                    want[y] = want[y - 1];
                    want[y - 1] = tmp;
                }
            ck_assert_int_eq(got.n, nw);
            for (int x = 0; x < nw; x++)
                ck_assert_uint_eq(got.v[x], want[x]);
            total += (size_t)nw;
        }
    /* no stale entries anywhere */
    ck_assert_int_eq(mdb_stat(kv_txn_mdb(t), kv_dbi(s, KV_DB_REVERSE), &ms), 0);
    ck_assert_uint_eq(ms.ms_entries, total);
    kv_read_end(t);
}

/* The reverse entries of c's present scenes, added in docid order. */
static void rv_build(const struct rv_ctx *c, struct kv_revbuild *rb)
{
    uint32_t last = 0;
    memset(rb, 0, sizeof *rb);
    for (;;) {
        int next = 0;
        for (int i = 1; i <= RV_SCENES; i++)
            if (c->present[i] && c->docid[i] > last &&
                (!next || c->docid[i] < c->docid[next]))
                next = i;
        if (!next)
            break;
        ck_assert_int_eq(kv_revbuild_add(rb, c->docid[next], &c->cur[next]),
                         CM_OK);
        last = c->docid[next];
    }
}

static void rv_check(struct kv_store *s, const struct rv_ctx *c,
                     uint64_t want_missing, uint64_t want_extra)
{
    struct kv_revbuild rb;
    struct kv_txn *t;
    uint64_t missing, extra;
    rv_build(c, &rb);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_revbuild_check(t, &rb, &missing, &extra), CM_OK);
    kv_read_end(t);
    kv_revbuild_fini(&rb);
    ck_assert_uint_eq(missing, want_missing);
    ck_assert_uint_eq(extra, want_extra);
}

/* The reverse index written in key order through kv_revapp from the
 * oracle, as the bulk index build does; id 0 is handed over and must be
 * skipped, and a put out of key order is refused. */
static enum cm_status rv_append(struct kv_txn *t, void *ctx)
{
    const struct rv_ctx *c = ctx;
    /* type bytes in key order, and their index in rv_types */
    static const uint8_t order[5] = {KV_GROUP, KV_PERFORMER, KV_STUDIO, KV_TAG,
                                     KV_GALLERY};
    static const int col[5] = {3, 0, 2, 1, 4};
    struct kv_revapp *a;
    uint32_t one = 1;
    enum cm_status st = kv_revapp_begin(t, &a);

    for (int o = 0; o < 5 && st == CM_OK; o++) {
        st = kv_revapp_put(a, order[o], 0, &one, 1); /* "none": skipped */
        for (uint64_t id = 1; id <= RV_POOL && st == CM_OK; id++) {
            uint32_t d[RV_SCENES + 1];
            size_t n = 0;
            for (int i = 1; i <= RV_SCENES; i++)
                if (c->present[i] && c->has[i][col[o]][id])
                    d[n++] = c->docid[i];
            for (size_t x = 1; x < n; x++) /* docid order */
                for (size_t y = x; y > 0 && d[y - 1] > d[y]; y--) {
                    uint32_t tmp = d[y];
                    d[y] = d[y - 1];
                    d[y - 1] = tmp;
                }
            st = kv_revapp_put(a, order[o], id, d, n);
        }
    }
    if (st == CM_OK) /* back to an earlier entity */
        ck_assert_int_eq(kv_revapp_put(a, KV_GROUP, 1, &one, 1), CM_INVALID);
    kv_revapp_end(a);
    return st;
}

START_TEST(reverse_index_oracle)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s = open_at(dir, 0, 0);
    struct tg_arena a = {0};
    struct rv_ctx *c = calloc(1, sizeof *c);
    c->seed = 2024;
    c->a = &a;
    for (int round = 0; round < 25; round++) {
        ck_assert_int_eq(kv_write_run(s, rv_step, c), CM_OK);
        rv_compare(s, c);
        /* the bulk builder's check agrees with the maintained index */
        rv_check(s, c, 0, 0);
    }
    /* written from scratch in key order, as the bulk index build does:
     * the same oracle holds */
    ck_assert_int_eq(kv_write_run(s, rv_append, c), CM_OK);
    rv_compare(s, c);
    rv_check(s, c, 0, 0);
    /* and the check sees one entry removed, and one too many */
    {
        struct kv_txn *t;
        uint8_t k[13] = {KV_TAG, 0, 0, 0, 0, 0, 0, 0, RV_POOL + 5, 0, 0, 0, 7};
        MDB_cursor *cur;
        MDB_val key, val;
        ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
        ck_assert_int_eq(
            mdb_cursor_open(kv_txn_mdb(t), kv_dbi(s, KV_DB_REVERSE), &cur), 0);
        ck_assert_int_eq(mdb_cursor_get(cur, &key, &val, MDB_FIRST), 0);
        ck_assert_int_eq(mdb_cursor_del(cur, 0), 0);
        mdb_cursor_close(cur);
        ck_assert_int_eq(kv_commit(t), CM_OK);
        rv_check(s, c, 1, 0);
        ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
        ck_assert_int_eq(kv_put(t, KV_DB_REVERSE, k, sizeof k, "", 0), CM_OK);
        ck_assert_int_eq(kv_commit(t), CM_OK);
        rv_check(s, c, 1, 1);
    }
    /* adds must come in increasing docid order */
    {
        struct kv_revbuild rb = {0};
        ck_assert_int_eq(kv_revbuild_add(&rb, 5, &c->cur[1]), CM_OK);
        ck_assert_int_eq(kv_revbuild_add(&rb, 5, &c->cur[1]), CM_INVALID);
        kv_revbuild_fini(&rb);
    }
    /* early stop */
    {
        struct kv_txn *t;
        for (uint64_t id = 1; id <= RV_POOL; id++) {
            struct collect got = {{0}, 0, 2};
            ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
            ck_assert_int_eq(kv_scenes_with(t, KV_TAG, id, collect_fn, &got),
                             CM_OK);
            kv_read_end(t);
            ck_assert_int_le(got.n, 2);
        }
    }
    free(c);
    tg_arena_free(&a);
    kv_close(s);
}
END_TEST

/* ---- queued reverse entries ---- */

/* The reverse entries sc makes: its distinct (type, id) refs, id 0 aside. */
static size_t distinct_refs(const struct kv_scene *sc)
{
    struct {
        uint8_t type;
        uint64_t id;
    } v[512];
    const struct kv_ref *arr[] = {sc->performers, sc->tags, sc->groups,
                                  sc->galleries, &sc->studio};
    const uint32_t cnt[] = {sc->n_performers, sc->n_tags, sc->n_groups,
                            sc->n_galleries, 1};
    const uint8_t type[] = {KV_PERFORMER, KV_TAG, KV_GROUP, KV_GALLERY,
                            KV_STUDIO};
    size_t n = 0;
    for (int i = 0; i < 5; i++)
        for (uint32_t j = 0; j < cnt[i]; j++) {
            size_t k;
            if (!arr[i][j].id)
                continue;
            for (k = 0; k < n; k++)
                if (v[k].type == type[i] && v[k].id == arr[i][j].id)
                    break;
            if (k == n) {
                ck_assert_uint_lt(n, 512);
                v[n].type = type[i];
                v[n++].id = arr[i][j].id;
            }
        }
    return n;
}

struct rq_ctx {
    uint64_t seed;
    int scenes;
    size_t want; /* reverse entries of the last attempt */
    int calls;
};

static enum cm_status rq_fill(struct kv_txn *t, void *ctx)
{
    struct rq_ctx *c = ctx;
    uint64_t seed = c->seed;
    c->calls++;
    c->want = 0;
    for (int i = 1; i <= c->scenes; i++) {
        struct tg_arena a = {0};
        struct kv_scene sc;
        uint32_t d;
        enum cm_status st;
        tg_scene(&a, &seed, &sc, (uint64_t)i, 400);
        st = kv_scene_store(t, &sc, NULL, &d, NULL);
        c->want += distinct_refs(&sc);
        tg_arena_free(&a);
        if (st != CM_OK)
            return st;
    }
    return CM_OK;
}

static uint64_t reverse_entries(struct kv_store *s)
{
    struct kv_txn *t;
    MDB_stat ms;
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(mdb_stat(kv_txn_mdb(t), kv_dbi(s, KV_DB_REVERSE), &ms), 0);
    kv_read_end(t);
    return ms.ms_entries;
}

/* kv_scene_store queues its reverse puts and writes them sorted when the
 * transaction commits: a reader of the reverse map in the same
 * transaction, a deletion, an abort and a map that fills up meanwhile must
 * all behave as if every put had been written at once. */
START_TEST(reverse_queue)
{
    struct kv_store *s = open_at(tu_tmpdir(), CM_MiB, 0);
    struct tg_arena a = {0};
    struct kv_txn *t;
    struct kv_scene sc;
    struct rq_ctx c = {9, 3000, 0, 0};
    uint64_t seed = 77;
    uint32_t d1, d2;

    ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
    tg_scene(&a, &seed, &sc, 1, RV_POOL);
    sc.studio.id = 5;
    ck_assert_int_eq(kv_scene_store(t, &sc, NULL, &d1, NULL), CM_OK);
    {
        struct collect got = {{0}, 0, 0};
        ck_assert_int_eq(kv_scenes_with(t, KV_STUDIO, 5, collect_fn, &got),
                         CM_OK);
        ck_assert_int_eq(got.n, 1);
        ck_assert_uint_eq(got.v[0], d1);
    }
    tg_scene(&a, &seed, &sc, 2, RV_POOL);
    sc.studio.id = 6;
    ck_assert_int_eq(kv_scene_store(t, &sc, NULL, &d2, NULL), CM_OK);
    ck_assert_int_eq(kv_scene_remove(t, d2, NULL), CM_OK);
    {
        struct collect got = {{0}, 0, 0};
        ck_assert_int_eq(kv_scenes_with(t, KV_STUDIO, 6, collect_fn, &got),
                         CM_OK);
        ck_assert_int_eq(got.n, 0);
    }
    kv_abort(t); /* the queue goes with the transaction */
    ck_assert_uint_eq(reverse_entries(s), 0);

    /* Stored and removed in one committed transaction: nothing left. */
    ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_scene_store(t, &sc, NULL, &d2, NULL), CM_OK);
    ck_assert_int_eq(kv_scene_remove(t, d2, NULL), CM_OK);
    ck_assert_int_eq(kv_commit(t), CM_OK);
    ck_assert_uint_eq(reverse_entries(s), 0);

    /* Thousands of scenes into a 1 MiB map: it fills up while entries are
     * queued or while they are written at commit; kv_write_run grows it and
     * redoes the transaction, which leaves exactly its entries. */
    ck_assert_int_eq(kv_write_run(s, rq_fill, &c), CM_OK);
    ck_assert_int_gt(c.calls, 1);
    ck_assert_uint_eq(reverse_entries(s), c.want);
    tg_arena_free(&a);
    kv_close(s);
}
END_TEST

/* ---- map growth ---- */

struct grow_ctx {
    int txn_no;
    size_t per_txn;
    int calls;
};

static void fill(unsigned char *b, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = tg_next(&seed);
        memcpy(b + i, &v, n - i < 8 ? n - i : 8);
    }
}

static enum cm_status grow_fn(struct kv_txn *t, void *ctx)
{
    struct grow_ctx *g = ctx;
    unsigned char val[32768];
    g->calls++;
    for (size_t off = 0; off < g->per_txn; off += sizeof val) {
        uint32_t key[2] = {(uint32_t)g->txn_no, (uint32_t)off};
        fill(val, sizeof val, (uint64_t)g->txn_no << 32 | off);
        enum cm_status st =
            kv_put(t, KV_DB_POSTINGS, key, sizeof key, val, sizeof val);
        if (st != CM_OK)
            return st;
    }
    return CM_OK;
}

START_TEST(map_growth)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s = open_at(dir, CM_MiB, 0);
    struct grow_ctx g = {0, 2 * CM_MiB, 0};
    MDB_envinfo info;
    int calls = 0;

    /* one big txn first: 8 MB into a 1 MiB map, retried after growth */
    g.per_txn = 8 * CM_MiB;
    ck_assert_int_eq(kv_write_run(s, grow_fn, &g), CM_OK);
    ck_assert_int_gt(g.calls, 1);
    calls = g.calls;
    g.per_txn = 2 * CM_MiB;
    for (g.txn_no = 1; g.txn_no <= 21; g.txn_no++)
        ck_assert_int_eq(kv_write_run(s, grow_fn, &g), CM_OK);
    ck_assert_int_gt(g.calls, calls + 21 - 1);
    ck_assert_int_eq(mdb_env_info(kv_env(s), &info), 0);
    ck_assert_uint_ge(info.me_mapsize, 50 * CM_MiB);
    ck_assert_int_eq(kv_grow(s), CM_OK);
    {
        MDB_envinfo i2;
        ck_assert_int_eq(mdb_env_info(kv_env(s), &i2), 0);
        ck_assert_uint_eq(i2.me_mapsize, 2 * info.me_mapsize);
    }
    kv_close(s);
    /* everything is there after a reopen with the tiny map again */
    s = open_at(dir, CM_MiB, 1);
    {
        struct kv_txn *t;
        unsigned char want[32768];
        ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
        for (int tn = 0; tn <= 21; tn++) {
            size_t per = tn == 0 ? 8 * CM_MiB : 2 * CM_MiB;
            for (size_t off = 0; off < per; off += sizeof want) {
                uint32_t key[2] = {(uint32_t)tn, (uint32_t)off};
                const void *v;
                size_t n;
                fill(want, sizeof want, (uint64_t)tn << 32 | off);
                ck_assert_int_eq(
                    kv_get(t, KV_DB_POSTINGS, key, sizeof key, &v, &n), CM_OK);
                ck_assert_uint_eq(n, sizeof want);
                ck_assert_int_eq(memcmp(v, want, n), 0);
            }
        }
        kv_read_end(t);
    }
    kv_close(s);
}
END_TEST

static enum cm_status failing_fn(struct kv_txn *t, void *ctx)
{
    int *calls = ctx;
    (*calls)++;
    if (kv_put(t, KV_DB_SYNC, "k", 1, "v", 1) != CM_OK)
        return CM_INTERNAL;
    return CM_UPSTREAM;
}

/* A read txn nested in the same thread's write txn sees the committed
 * state and does not deadlock against the grow lock. */
static enum cm_status nested_fn(struct kv_txn *t, void *ctx)
{
    struct kv_store *s = kv_txn_store(t);
    struct kv_txn *r;
    const void *v;
    size_t n;
    enum cm_status st = kv_put(t, KV_DB_SYNC, "n", 1, "1", 1);
    (void)ctx;
    if (st != CM_OK)
        return st;
    st = kv_read_begin(s, &r);
    if (st != CM_OK)
        return st;
    st = kv_get(r, KV_DB_SYNC, "n", 1, &v, &n);
    kv_read_end(r);
    return st == CM_NOTFOUND ? CM_OK : CM_INTERNAL;
}

START_TEST(nested_read_in_write)
{
    struct kv_store *s = open_at(tu_tmpdir(), 0, 0);
    struct kv_txn *t;
    const void *v;
    size_t n;
    ck_assert_int_eq(kv_write_run(s, nested_fn, NULL), CM_OK);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_get(t, KV_DB_SYNC, "n", 1, &v, &n), CM_OK);
    /* growing with a txn open in this thread is refused, not a deadlock */
    ck_assert_int_eq(kv_grow(s), CM_BUSY);
    kv_read_end(t);
    ck_assert_int_eq(kv_grow(s), CM_OK);
    kv_close(s);
}
END_TEST

START_TEST(write_run_error_aborts)
{
    struct kv_store *s = open_at(tu_tmpdir(), 0, 0);
    struct kv_txn *t;
    const void *v;
    size_t n;
    int calls = 0;
    ck_assert_int_eq(kv_write_run(s, failing_fn, &calls), CM_UPSTREAM);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_get(t, KV_DB_SYNC, "k", 1, &v, &n), CM_NOTFOUND);
    /* writes are refused in a read txn */
    ck_assert_int_eq(kv_put(t, KV_DB_SYNC, "k", 1, "v", 1), CM_INVALID);
    kv_read_end(t);
    kv_read_end(t); /* harmless */
    ck_assert_int_eq(kv_get(t, KV_DB_SYNC, "k", 1, &v, &n), CM_INVALID);
    kv_close(s);
}
END_TEST

/* ---- processes ---- */

static void wait_byte(int fd)
{
    char c;
    ck_assert_int_eq(read(fd, &c, 1), 1);
}

/* Child: opens dir, optionally begins a read txn, says "ready" on wfd,
 * then waits for rfd to close. */
static pid_t spawn_holder(const char *dir, int read_txn, int write_txn,
                          int *ready_fd, int *release_fd)
{
    int up[2], down[2];
    pid_t pid;
    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(down), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct kv_options o = {0};
        struct kv_store *s;
        struct kv_txn *t = NULL;
        char err[512], c;
        close(up[0]);
        close(down[1]);
        o.no_sync = 1;
        if (kv_open(dir, &o, &s, err, sizeof err) != CM_OK)
            _exit(3);
        if (read_txn && kv_read_begin(s, &t) != CM_OK)
            _exit(4);
        if (write_txn && kv_write_begin(s, &t) != CM_OK)
            _exit(5);
        if (write(up[1], "r", 1) != 1)
            _exit(6);
        while (read(down[0], &c, 1) > 0)
            ;
        kv_abort(t);
        kv_close(s);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    *ready_fd = up[0];
    *release_fd = down[1];
    return pid;
}

START_TEST(stale_reader_cleared)
{
    const char *dir = tu_tmpdir();
    int hr, hw, vr, vw, status, cleared = -1;
    pid_t holder, victim;
    struct kv_store *s;

    /* the holder keeps the lock file in use, so it is not reset */
    holder = spawn_holder(dir, 0, 0, &hr, &hw);
    wait_byte(hr);
    victim = spawn_holder(dir, 1, 0, &vr, &vw);
    wait_byte(vr);
    ck_assert_int_eq(kill(victim, SIGKILL), 0);
    ck_assert_int_eq(waitpid(victim, &status, 0), victim);
    ck_assert(WIFSIGNALED(status));
    s = open_at(dir, 0, 0);
    ck_assert_uint_eq(kv_stale_readers_cleared_at_open(s), 1);
    ck_assert_int_eq(kv_reader_check(s, &cleared), CM_OK);
    ck_assert_int_eq(cleared, 0);
    kv_close(s);
    close(hw);
    ck_assert_int_eq(waitpid(holder, &status, 0), holder);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(hr);
    close(vr);
    close(vw);
}
END_TEST

/* Another process grows the map far past ours: our readers and writer
 * adopt the new size (MDB_MAP_RESIZED). */
START_TEST(map_resized_by_other_process)
{
    const char *dir = tu_tmpdir();
    int go[2], status;
    pid_t pid;
    struct kv_store *s;
    struct kv_txn *t;
    struct grow_ctx g = {1, 24 * CM_MiB, 0};
    const void *v;
    size_t n;
    char c;

    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct kv_options o = {0};
        char err[512];
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        o.map_size = CM_MiB;
        o.no_sync = 1;
        if (kv_open(dir, &o, &s, err, sizeof err) != CM_OK)
            _exit(3);
        if (kv_write_run(s, grow_fn, &g) != CM_OK)
            _exit(4);
        kv_close(s);
        _exit(0);
    }
    close(go[0]);
    s = open_at(dir, CM_MiB, 0);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK); /* a handle exists */
    kv_read_end(t);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    {
        uint32_t key[2] = {1, (uint32_t)(g.per_txn - 32768)};
        ck_assert_int_eq(kv_get(t, KV_DB_POSTINGS, key, sizeof key, &v, &n),
                         CM_OK);
        ck_assert_uint_eq(n, 32768);
    }
    kv_read_end(t);
    g.txn_no = 2;
    g.per_txn = CM_MiB;
    ck_assert_int_eq(kv_write_run(s, grow_fn, &g), CM_OK);
    kv_close(s);
    close(go[1]);
}
END_TEST

START_TEST(backup_copy)
{
    const char *base = tu_tmpdir();
    const char *src = path_in(base, "src");
    const char *dst = path_in(base, "dst");
    const char *dst2 = path_in(base, "dst2");
    uint64_t seed = 77;
    struct kv_store *s = open_at(src, 0, 0), *b;
    struct kv_txn *t, *u;
    char err[1024];
    int hr, hw, status;
    pid_t writer;

    ck_assert_int_eq(kv_write_run(s, put_scenes, &seed), CM_OK);
    kv_close(s);
    /* another process holds the write lock while we back up */
    writer = spawn_holder(src, 0, 1, &hr, &hw);
    wait_byte(hr);
    s = open_at(src, 0, 1);
    ck_assert_int_eq(kv_backup(s, dst, err, sizeof err), CM_OK);
    ck_assert_int_eq(kv_backup(s, dst, err, sizeof err), CM_EXISTS);
    ck_assert(strstr(err, "not empty"));
    ck_assert_int_eq(mkdir(dst2, 0700), 0);
    ck_assert_int_eq(kv_backup(s, dst2, err, sizeof err), CM_OK);
    {
        struct stat sb;
        ck_assert_int_eq(stat(path_in(dst2, "data.mdb"), &sb), 0);
        ck_assert_int_eq(sb.st_mode & 0777, 0600);
    }
    close(hw);
    ck_assert_int_eq(waitpid(writer, &status, 0), writer);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(hr);
    kv_close(s);
    /* identical records; the backup opens as a store (read-write too) */
    s = open_at(src, 0, 1);
    b = open_at(dst, 0, 0);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_read_begin(b, &u), CM_OK);
    for (uint32_t d = 1; d <= 51; d++) {
        const void *r1, *r2;
        size_t n1, n2;
        enum cm_status s1 = kv_scene_get_raw(t, d, &r1, &n1);
        ck_assert_int_eq(kv_scene_get_raw(u, d, &r2, &n2), s1);
        if (s1 == CM_OK) {
            ck_assert_uint_eq(n1, n2);
            ck_assert_int_eq(memcmp(r1, r2, n1), 0);
        }
    }
    kv_read_end(t);
    kv_read_end(u);
    kv_close(b);
    check_scenes(s, 77);
    kv_close(s);
    s = open_at(dst2, 0, 1);
    check_scenes(s, 77);
    kv_close(s);
}
END_TEST

/* ---- threads ---- */

struct thr_ctx {
    struct kv_store *s;
    atomic_int done;
    atomic_int errors;
    atomic_long reads;
    int round;
};

static enum cm_status writer_fn(struct kv_txn *t, void *ctx)
{
    struct thr_ctx *c = ctx;
    uint64_t seed = (uint64_t)c->round;
    uint64_t n;
    enum cm_status st;
    for (int i = 0; i < 10; i++) {
        struct tg_arena a = {0};
        struct kv_scene sc;
        uint32_t d;
        bool created;
        tg_scene(&a, &seed, &sc, (uint64_t)c->round * 10 + (uint64_t)i + 1, 30);
        st = kv_scene_store(t, &sc, NULL, &d, &created);
        tg_arena_free(&a);
        if (st != CM_OK)
            return st;
    }
    st = kv_scene_count(t, &n);
    if (st == CM_OK)
        st = kv_meta_put_u64(t, "test_count", n);
    return st;
}

static void *reader_thread(void *p)
{
    struct thr_ctx *c = p;
    uint64_t seed = (uint64_t)(uintptr_t)&seed;
    int last = 0;
    while (!last) {
        struct kv_txn *t;
        uint64_t n, m;
        last = atomic_load(&c->done);
        if (kv_read_begin(c->s, &t) != CM_OK) {
            atomic_fetch_add(&c->errors, 1);
            break;
        }
        if (kv_scene_count(t, &n) != CM_OK ||
            (n && kv_meta_get_u64(t, "test_count", &m) != CM_OK) ||
            (n && m != n))
            atomic_fetch_add(&c->errors, 1);
        if (n) {
            struct kv_scene sc;
            uint32_t d = tg_below(&seed, (uint32_t)n) + 1;
            if (kv_scene_get(t, d, &sc) != CM_OK)
                atomic_fetch_add(&c->errors, 1);
            kv_scene_fini(&sc);
        }
        kv_read_end(t);
        atomic_fetch_add(&c->reads, 1);
    }
    return NULL;
}

START_TEST(readers_while_writing)
{
    struct thr_ctx c;
    pthread_t th[2];
    memset(&c, 0, sizeof c);
    c.s = open_at(tu_tmpdir(), CM_MiB, 0); /* small: growth under load */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_thread, &c), 0);
    for (c.round = 0; c.round < 300; c.round++)
        ck_assert_int_eq(kv_write_run(c.s, writer_fn, &c), CM_OK);
    atomic_store(&c.done, 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_int_eq(atomic_load(&c.errors), 0);
    ck_assert_int_ge(atomic_load(&c.reads), 2);
    {
        struct kv_txn *t;
        uint64_t n;
        ck_assert_int_eq(kv_read_begin(c.s, &t), CM_OK);
        ck_assert_int_eq(kv_scene_count(t, &n), CM_OK);
        ck_assert_uint_eq(n, 3000);
        kv_read_end(t);
    }
    kv_close(c.s);
}
END_TEST

/* ---- OOM ---- */

START_TEST(oom_open_and_store)
{
    const char *dir = tu_tmpdir();
    struct kv_options o = {0};
    char err[512];
    long n;
    enum cm_status st;
    struct kv_store *s = NULL;
    uint64_t seed = 5;

    o.no_sync = 1;
    for (n = 1;; n++) {
        cm_alloc_fail_at(n, 0);
        st = kv_open(dir, &o, &s, err, sizeof err);
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK)
            break;
        ck_assert_int_eq(st, CM_NOMEM);
        ck_assert_ptr_null(s);
    }
    ck_assert_int_gt(n, 1);
    for (n = 1;; n++) {
        struct kv_txn *t;
        uint64_t cnt;
        cm_alloc_fail_at(n, 0);
        st = kv_write_run(s, put_scenes, &seed);
        cm_alloc_fail_at(0, 0);
        ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
        ck_assert_int_eq(kv_scene_count(t, &cnt), CM_OK);
        kv_read_end(t);
        if (st == CM_OK) {
            ck_assert_uint_eq(cnt, 50);
            break;
        }
        ck_assert_int_eq(st, CM_NOMEM);
        ck_assert_uint_eq(cnt, 0); /* all or nothing */
    }
    ck_assert_int_gt(n, 2);
    check_scenes(s, 5);
    kv_close(s);
}
END_TEST

/* The VmFlags of the mapping of dir/data.mdb in /proc/self/smaps: 1 when
 * they include "rr" (MADV_RANDOM), 0 when not, -1: no such mapping. */
static int map_random(const char *dir)
{
    char want[4200], line[1024];
    FILE *f = fopen("/proc/self/smaps", "r");
    int in = 0, r = -1, maps = 0;
    snprintf(want, sizeof want, "%s/data.mdb", dir);
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        size_t hex = strspn(line, "0123456789abcdef");
        if (hex > 0 && line[hex] == '-') { /* a mapping's first line */
            in =
                n >= strlen(want) && strcmp(line + n - strlen(want), want) == 0;
            maps += in;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            r = strstr(line, " rr") != NULL;
        }
    }
    fclose(f);
    ck_assert_int_le(maps, 1); /* LMDB maps the file once */
    return r;
}

/* kv_random_access: MADV_RANDOM on the whole map and back, kept across a
 * grow (a new mapping), and not applied by a grow while off. */
START_TEST(random_access_advice)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s = open_at(dir, CM_MiB, 0);
    MDB_envinfo i0, i1;

    ck_assert_int_eq(mdb_env_info(kv_env(s), &i0), 0);

    ck_assert_int_eq(map_random(dir), 0);
    kv_random_access(s, true);
    ck_assert_int_eq(map_random(dir), 1);
    ck_assert_int_eq(kv_grow(s), CM_OK);
    ck_assert_int_eq(mdb_env_info(kv_env(s), &i1), 0);
    ck_assert_uint_eq(i1.me_mapsize, 2 * i0.me_mapsize);
    ck_assert_int_eq(map_random(dir), 1);
    kv_random_access(s, false);
    ck_assert_int_eq(map_random(dir), 0);
    ck_assert_int_eq(kv_grow(s), CM_OK);
    ck_assert_int_eq(map_random(dir), 0);
    kv_random_access(NULL, true); /* no store: nothing */
    kv_close(s);
}
END_TEST

/* How many of the pages under [p, p + n) are in the page cache. */
static size_t resident_pages(const void *p, size_t n, size_t *pages)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    size_t len = (uintptr_t)p + n - a, np = (len + (size_t)pg - 1) / (size_t)pg,
           in = 0;
    unsigned char *v = malloc(np);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(mincore((void *)a, len, v), 0);
    for (size_t i = 0; i < np; i++)
        in += v[i] & 1;
    free(v);
    *pages = np;
    return in;
}

/* kv_prefetch: the pages of a value on overflow pages, dropped from the
 * page cache, are read in by the advice alone (nothing touches them), even
 * with MADV_RANDOM on the map; a value under KV_PREFETCH_MIN is not advised.
 * Polls mincore until the read-ahead lands (bounded: 30 s). */
START_TEST(prefetch_reads_value_pages)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s = open_at(dir, 64 * CM_MiB, 0);
    struct kv_txn *t;
    size_t big = 256 * 1024, np = 0, in;
    unsigned char *val = malloc(big);
    const void *p;
    size_t n;
    int fd;

    ck_assert_ptr_nonnull(val);
    for (size_t i = 0; i < big; i++)
        val[i] = (unsigned char)(i * 131 + 7);
    ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_put(t, KV_DB_POSTINGS, "big", 3, val, big), CM_OK);
    ck_assert_int_eq(kv_commit(t), CM_OK);
    /* written with write(), never mapped: DONTNEED drops the pages */
    fd = open(path_in(dir, "data.mdb"), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fdatasync(fd), 0);
    ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
    kv_random_access(s, true);

    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_get(t, KV_DB_POSTINGS, "big", 3, &p, &n), CM_OK);
    ck_assert_uint_eq(n, big);
    in = resident_pages(p, n, &np);
    ck_assert_uint_ge(np, 64);
    ck_assert_msg(in < np / 2,
                  "%zu of %zu pages still cached after POSIX_FADV_DONTNEED: "
                  "TMPDIR must be on a disk filesystem (not tmpfs)",
                  in, np);
    kv_prefetch(p, KV_PREFETCH_MIN - 1); /* too small: not advised */
    ck_assert_uint_eq(resident_pages(p, n, &np), in);
    kv_prefetch(p, n);
    for (int i = 0; i < 30000 && (in = resident_pages(p, n, &np)) < np; i++)
        usleep(1000);
    ck_assert_uint_eq(in, np);
    ck_assert_mem_eq(p, val, big); /* and the value reads as written */
    kv_read_end(t);
    kv_prefetch(NULL, 0);
    kv_prefetch(val, big); /* heap memory: harmless */
    free(val);
    kv_close(s);
}
END_TEST

/* Pages of dir/data.mdb in the page cache: mincore on a map of our own,
 * which reads nothing. */
static size_t file_cached(const char *dir)
{
    int fd = open(path_in(dir, "data.mdb"), O_RDONLY);
    struct stat sb;
    size_t np, in = 0;
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char *v;
    void *m;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &sb), 0);
    np = ((size_t)sb.st_size + (size_t)pg - 1) / (size_t)pg;
    m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    ck_assert(m != MAP_FAILED);
    v = malloc(np);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(mincore(m, (size_t)sb.st_size, v), 0);
    for (size_t i = 0; i < np; i++)
        in += v[i] & 1;
    free(v);
    munmap(m, (size_t)sb.st_size);
    close(fd);
    return in;
}

#define WARM_SCENES 3000
#define WARM_SMALL  3000
#define WARM_BIG    16

static void warm_key(char k[16], int i)
{
    snprintf(k, 16, "w%06d", i);
}

static enum cm_status put_warm(struct kv_txn *t, void *ctx)
{
    uint64_t seed = 99;
    unsigned char v[64 * 1024];
    char k[16];
    enum cm_status st = CM_OK;
    (void)ctx;
    for (int i = 0; i < WARM_SMALL + WARM_BIG && st == CM_OK; i++) {
        memset(v, i & 0xff, sizeof v);
        warm_key(k, i);
        st = kv_put(t, KV_DB_POSTINGS, k, strlen(k), v,
                    i < WARM_SMALL ? 500 : sizeof v);
    }
    for (uint64_t i = 1; i <= WARM_SCENES && st == CM_OK; i++) {
        struct tg_arena a = {0};
        struct kv_scene sc;
        uint32_t d;
        bool created;
        tg_scene(&a, &seed, &sc, i * 10, 20);
        st = kv_scene_store(t, &sc, NULL, &d, &created);
        tg_arena_free(&a);
    }
    return st;
}

static MDB_stat db_stat(struct kv_store *s, enum kv_db db)
{
    MDB_txn *txn;
    MDB_stat ms;
    ck_assert_int_eq(mdb_txn_begin(kv_env(s), NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(mdb_stat(txn, kv_dbi(s, db), &ms), 0);
    mdb_txn_abort(txn);
    return ms;
}

/* kv_warm_keys / kv_warm_scenes on a store dropped from the page cache:
 * nothing without a transaction held by the caller, while the store is not
 * in random-access mode, or for fewer than KV_WARM_MIN items; otherwise the
 * leaf pages holding the keys are cached when the call returns (the threads
 * have looked them up), the records' and id-map leaves likewise, and the
 * overflow pages of the big values, which a lookup does not read, arrive by
 * read-ahead (polled, bounded: 30 s). */
START_TEST(warm_reads_batch_pages)
{
    const char *dir = tu_tmpdir();
    struct kv_store *s = open_at(dir, 256 * CM_MiB, 0);
    struct kv_keyref *k = calloc(WARM_SMALL + WARM_BIG, sizeof *k);
    char(*ks)[16] = calloc(WARM_SMALL + WARM_BIG, sizeof *ks);
    uint64_t *ids = calloc(WARM_SCENES, sizeof *ids);
    size_t base, after;
    MDB_stat post, scn, idm;
    struct kv_txn *t;
    int fd;

    ck_assert(k && ks && ids);
    ck_assert_int_eq(kv_write_run(s, put_warm, NULL), CM_OK);
    kv_close(s); /* a new map: only the pages the open reads are mapped */
    s = open_at(dir, 256 * CM_MiB, 0);
    post = db_stat(s, KV_DB_POSTINGS);
    scn = db_stat(s, KV_DB_SCENES);
    idm = db_stat(s, KV_DB_IDMAP);
    fd = open(path_in(dir, "data.mdb"), O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fdatasync(fd), 0);
    ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
    ck_assert_uint_ge(post.ms_leaf_pages, 100);
    ck_assert_uint_ge(scn.ms_leaf_pages, 100);
    ck_assert_uint_ge(post.ms_overflow_pages, WARM_BIG * 16);
    for (int i = 0; i < WARM_SMALL + WARM_BIG; i++) {
        warm_key(ks[i], i);
        k[i] =
            (struct kv_keyref){ks[i], (uint16_t)strlen(ks[i]), KV_DB_POSTINGS};
    }
    for (int i = 0; i < WARM_SCENES; i++)
        ids[i] = (uint64_t)(i + 1) * 10;
    base = file_cached(dir);
    ck_assert_msg(base < 50,
                  "%zu pages still cached after POSIX_FADV_DONTNEED: "
                  "TMPDIR must be on a disk filesystem (not tmpfs)",
                  base);

    ck_assert(!kv_warming(s));
    kv_random_access(s, true);
    ck_assert(kv_warming(s));
    kv_warm_keys(s, k, WARM_SMALL + WARM_BIG); /* no transaction held */
    kv_warm_scenes(s, ids, WARM_SCENES);
    ck_assert_uint_eq(file_cached(dir), base);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK); /* held from here on */
    kv_random_access(s, false);
    kv_warm_keys(s, k, WARM_SMALL + WARM_BIG); /* not in random-access mode */
    kv_warm_scenes(s, ids, WARM_SCENES);
    ck_assert_uint_eq(file_cached(dir), base);
    kv_random_access(s, true);
    kv_warm_keys(s, k, KV_WARM_MIN - 1); /* too few */
    kv_warm_scenes(s, ids, KV_WARM_MIN - 1);
    ck_assert_uint_eq(file_cached(dir), base);

    kv_warm_keys(s, k, WARM_SMALL + WARM_BIG);
    after = file_cached(dir);
    /* (not exactly all: a few of them may be among the pages the open
     * mapped, which stayed cached) */
    ck_assert_uint_ge(after - base, post.ms_leaf_pages * 9 / 10);
    /* the big values: kv_get reads their leaf, not their overflow pages */
    for (int i = WARM_SMALL; i < WARM_SMALL + WARM_BIG; i++) {
        const void *p;
        size_t n, np = 0, in = 0;
        ck_assert_int_eq(
            kv_get(t, KV_DB_POSTINGS, ks[i], strlen(ks[i]), &p, &n), CM_OK);
        for (int w = 0; w < 30000 && (in = resident_pages(p, n, &np)) < np; w++)
            usleep(1000); /* read-ahead in flight: wait for it, bounded */
        ck_assert_uint_eq(in, np);
    }
    after = file_cached(dir);
    kv_warm_scenes(s, ids, WARM_SCENES);
    ck_assert_uint_ge(file_cached(dir) - after,
                      (scn.ms_leaf_pages + idm.ms_leaf_pages) * 9 / 10);

    /* and all reads back */
    for (int i = 0; i < WARM_SMALL + WARM_BIG; i++) {
        const unsigned char *v;
        const void *p;
        size_t n;
        ck_assert_int_eq(
            kv_get(t, KV_DB_POSTINGS, ks[i], strlen(ks[i]), &p, &n), CM_OK);
        v = p;
        ck_assert_uint_eq(n, i < WARM_SMALL ? 500 : 64 * 1024);
        ck_assert_uint_eq(v[0], (unsigned)(i & 0xff));
        ck_assert_uint_eq(v[n - 1], (unsigned)(i & 0xff));
    }
    kv_read_end(t);
    kv_random_access(s, false);
    free(k);
    free(ks);
    free(ids);
    kv_close(s);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("kv_store");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, fs_verdict_table);
    tcase_add_test(tc, open_close_reopen);
    tcase_add_test(tc, schema_version_mismatch);
    tcase_add_test(tc, index_version);
    tcase_add_test(tc, read_only);
    tcase_add_test(tc, docid_allocation);
    tcase_add_test(tc, docid_cache_in_one_txn);
    tcase_add_test(tc, reverse_index_oracle);
    tcase_add_test(tc, reverse_queue);
    tcase_add_test(tc, map_growth);
    tcase_add_test(tc, random_access_advice);
    tcase_add_test(tc, prefetch_reads_value_pages);
    tcase_add_test(tc, warm_reads_batch_pages);
    tcase_add_test(tc, write_run_error_aborts);
    tcase_add_test(tc, nested_read_in_write);
    tcase_add_test(tc, stale_reader_cleared);
    tcase_add_test(tc, map_resized_by_other_process);
    tcase_add_test(tc, backup_copy);
    tcase_add_test(tc, readers_while_writing);
    tcase_add_test(tc, oom_open_and_store);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
