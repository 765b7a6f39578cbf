/*
 * bench_index.c - micro-benchmark of the index engine (not run by make
 * test).  Loads N synthetic scenes (argv[1], default 1,000,000) through
 * idx_writer in batches of 1,000 (a sync page) into a fresh store (argv[2],
 * default a temp dir), updates 1,000 random scenes in one batch, runs a
 * query mix in read transactions (first run = cold, incl. building a
 * cached order; then 200 runs: p50/p99), one query right after a write
 * (stale cache), and idx_rebuild.  Build:
 *   make build/release/libindex.a build/release/libkv.a build/release/libcommon.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. tests/bench/bench_index.c \
 *     build/release/libindex.a build/release/libkv.a build/release/libcommon.a \
 *     -llmdb -lroaring -lxxhash -lcjson -lm -lpthread -o build/bench_index
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "common/cm_alloc.h"
#include "index/idx.h"
#include "index/idx_filter.h"
#include "kv/kv.h"

static uint64_t rng = 42;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct gen_scene {
    struct kv_scene sc;
    struct kv_ref tags[3], perf[2];
    struct kv_file f;
    char title[32], ts[32];
};

static void gen(struct gen_scene *g, uint64_t id)
{
    memset(g, 0, sizeof *g);
    g->sc.id = id;
    snprintf(g->title, sizeof g->title, "Scene %u", rnd(100000));
    snprintf(g->ts, sizeof g->ts, "20%02u-%02u-%02uT00:00:00Z", 10 + rnd(15),
             1 + rnd(12), 1 + rnd(28));
    g->sc.title = (struct kv_str){g->title, (uint32_t)strlen(g->title)};
    g->sc.created_at = g->sc.updated_at =
        (struct kv_str){g->ts, (uint32_t)strlen(g->ts)};
    g->sc.date.year = (int16_t)(2000 + rnd(25));
    g->sc.rating100 = rnd(3) ? (int32_t)rnd(101) : -1;
    g->sc.interactive_speed = -1;
    g->sc.play_duration = g->sc.resume_time = -1;
    g->sc.organized = rnd(2);
    g->sc.n_tags = 1 + rnd(3);
    for (uint32_t k = 0; k < g->sc.n_tags; k++)
        g->tags[k].id = 1 + rnd(2000), g->tags[k].rating100 = -1;
    g->sc.tags = g->tags;
    g->sc.n_performers = rnd(3);
    for (uint32_t k = 0; k < g->sc.n_performers; k++)
        g->perf[k].id = 1 + rnd(5000), g->perf[k].rating100 = -1;
    g->sc.performers = g->perf;
    g->sc.studio.id = 1 + rnd(300);
    g->sc.studio.rating100 = -1;
    g->f.path = (struct kv_str){"/m/a.mp4", 8};
    g->f.basename = (struct kv_str){"a.mp4", 5};
    g->f.width = 1920;
    g->f.height = 1080;
    g->f.duration = rnd(7200);
    g->sc.files = &g->f;
    g->sc.n_files = 1;
}

/* Puts scenes ids[0..n) (generated afresh) in one batch; returns seconds
 * of CPU time (the process's, so page-cache writeback is not counted). */
static double put_batch(struct kv_store *s, uint64_t first, long n, bool rand_ids,
                        long universe)
{
    struct kv_txn *t;
    struct idx_writer *w;
    struct gen_scene g;
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    if (kv_write_begin(s, &t) != CM_OK || idx_writer_begin(t, &w) != CM_OK)
        exit(1);
    for (long i = 0; i < n; i++) {
        gen(&g, rand_ids ? 1 + rnd((uint32_t)universe) : first + (uint64_t)i);
        if (idx_scene_put(w, &g.sc, NULL) != CM_OK)
            exit(1);
    }
    if (idx_writer_finish(w) != CM_OK || kv_commit(t) != CM_OK)
        exit(1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static double run_once(struct kv_store *s, struct idx_query *q, uint64_t *count)
{
    struct kv_txn *t;
    struct idx_result res;
    double a = now();
    if (kv_read_begin(s, &t) != CM_OK || idx_query_run(t, q, &res) != CM_OK)
        exit(1);
    *count = res.count;
    idx_result_fini(&res);
    kv_read_end(t);
    return (now() - a) * 1e3;
}

#define REPS 200

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    char tmpl[] = "/tmp/bench-index-XXXXXX", err[256];
    const char *dir = argc > 2 ? argv[2] : mkdtemp(tmpl);
    struct kv_options o = {0};
    struct kv_store *s;
    static const char *queries[][2] = {
        {"{\"sort\":\"created_at\",\"direction\":\"DESC\",\"per_page\":40}", "{}"},
        {"{\"sort\":\"title\",\"per_page\":40,\"page\":50}", "{}"},
        {"{\"sort\":\"title\",\"direction\":\"DESC\",\"per_page\":40,\"page\":2000}", "{}"},
        {"{\"sort\":\"date\",\"direction\":\"DESC\",\"per_page\":40}",
         "{\"tags\":{\"value\":[\"3\"],\"modifier\":\"INCLUDES\"}}"},
        {"{\"sort\":\"random_12345\",\"per_page\":40}",
         "{\"rating100\":{\"value\":80,\"modifier\":\"GREATER_THAN\"}}"},
        {"{\"sort\":\"duration\",\"per_page\":40}",
         "{\"performers\":{\"value\":[\"7\",\"9\"],\"modifier\":\"INCLUDES\"},"
         "\"organized\":true}"},
        {"{\"sort\":\"rating\",\"direction\":\"DESC\",\"per_page\":40}",
         "{\"studios\":{\"value\":[\"2\"],\"modifier\":\"INCLUDES\",\"depth\":-1}}"},
        {"{\"sort\":\"created_at\",\"direction\":\"DESC\",\"per_page\":40}",
         "{\"organized\":true}"},
        {"{\"sort\":\"created_at\",\"direction\":\"DESC\",\"per_page\":40,\"page\":1000}",
         "{\"organized\":true}"},
        {"{\"sort\":\"date\",\"per_page\":40,\"page\":100}",
         "{\"rating100\":{\"value\":50,\"modifier\":\"GREATER_THAN\"}}"},
        {"{\"sort\":\"duration\",\"direction\":\"DESC\",\"per_page\":40,\"page\":3}",
         "{\"tags\":{\"value\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\"],\"modifier\":\"INCLUDES\"}}"},
    };
    if (!dir || n <= 0)
        return 2;
    o.map_size = (size_t)64 << 30;
    o.no_sync = 1;
    if (kv_open(dir, &o, &s, err, sizeof err) != CM_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    double t0 = now(), cpu = 0;
    for (long base = 0; base < n; base += 1000)
        cpu += put_batch(s, (uint64_t)base + 1, n - base < 1000 ? n - base : 1000,
                         false, 0);
    printf("loaded %ld scenes in pages of 1000: %.1f s wall, %.1f s CPU, "
           "%.1f us/scene (%s)\n",
           n, now() - t0, cpu, cpu * 1e6 / (double)n, dir);
    cpu = put_batch(s, 0, 1000, true, n);
    printf("incremental: 1000 random updates in one batch: %.1f ms CPU\n",
           cpu * 1e3);
    for (size_t qi = 0; qi < sizeof queries / sizeof *queries; qi++) {
        double lat[REPS], first;
        cJSON *ff = cJSON_Parse(queries[qi][0]), *sf = cJSON_Parse(queries[qi][1]);
        struct idx_query *q;
        struct idx_error e;
        uint64_t count = 0;
        if (idx_query_parse(ff, sf, 40, &q, &e) != CM_OK)
            return 1;
        first = run_once(s, q, &count);
        for (int r = 0; r < REPS; r++)
            lat[r] = run_once(s, q, &count);
        qsort(lat, REPS, sizeof *lat, dcmp);
        printf("%-66.66s %-40.40s count %8llu  first %7.3f  p50 %7.3f  p99 %7.3f ms\n",
               queries[qi][0], queries[qi][1], (unsigned long long)count,
               first, lat[REPS / 2], lat[REPS * 99 / 100]);
        idx_query_free(q);
        cJSON_Delete(ff);
        cJSON_Delete(sf);
    }
    {
        /* After a write the cached orders are stale: the next queries
         * rebuild (or fall back to the candidate plan). */
        cJSON *ff = cJSON_Parse(queries[0][0]), *sf = cJSON_Parse(queries[0][1]);
        struct idx_query *q;
        struct idx_error e;
        uint64_t count;
        double a, b;
        if (idx_query_parse(ff, sf, 40, &q, &e) != CM_OK)
            return 1;
        put_batch(s, 0, 10, true, n);
        a = run_once(s, q, &count);
        b = run_once(s, q, &count);
        printf("after a write: default page %.3f ms, then %.3f ms\n", a, b);
        idx_query_free(q);
        cJSON_Delete(ff);
        cJSON_Delete(sf);
    }
    {
        uint64_t cnt;
        double a = now();
        if (idx_rebuild(s, &cnt) != CM_OK)
            return 1;
        printf("idx_rebuild of %llu scenes: %.2f s\n", (unsigned long long)cnt,
               now() - a);
    }
    kv_close(s);
    return 0;
}
