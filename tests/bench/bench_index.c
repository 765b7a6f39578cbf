/*
 * bench_index.c - micro-benchmark of the index engine (not run by make
 * test).  Loads N synthetic scenes (argv[1], default 1,000,000) through
 * idx_writer in batches of 10,000 into a fresh store (argv[2], default a
 * temp dir), then runs a query mix in read transactions and prints p50/p99
 * per query.  Build:
 *   make build/release/libindex.a build/release/libkv.a build/release/libcommon.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. tests/bench/bench_index.c \
 *     build/release/libindex.a build/release/libkv.a build/release/libcommon.a \
 *     -llmdb -lroaring -lxxhash -lcjson -lm -lpthread -o build/bench_index
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
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
        {"{\"sort\":\"date\",\"direction\":\"DESC\",\"per_page\":40}",
         "{\"tags\":{\"value\":[\"3\"],\"modifier\":\"INCLUDES\"}}"},
        {"{\"sort\":\"random_12345\",\"per_page\":40}",
         "{\"rating100\":{\"value\":80,\"modifier\":\"GREATER_THAN\"}}"},
        {"{\"sort\":\"duration\",\"per_page\":40}",
         "{\"performers\":{\"value\":[\"7\",\"9\"],\"modifier\":\"INCLUDES\"},"
         "\"organized\":true}"},
        {"{\"sort\":\"rating\",\"direction\":\"DESC\",\"per_page\":40}",
         "{\"studios\":{\"value\":[\"2\"],\"modifier\":\"INCLUDES\",\"depth\":-1}}"},
    };
    if (!dir || n <= 0)
        return 2;
    o.map_size = (size_t)64 << 30;
    o.no_sync = 1;
    if (kv_open(dir, &o, &s, err, sizeof err) != CM_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    double t0 = now();
    for (long base = 0; base < n; base += 10000) {
        struct kv_txn *t;
        struct idx_writer *w;
        if (kv_write_begin(s, &t) != CM_OK || idx_writer_begin(t, &w) != CM_OK)
            return 1;
        for (long i = base; i < n && i < base + 10000; i++) {
            struct kv_scene sc;
            struct kv_ref tags[3], perf[2];
            struct kv_file f;
            char title[32], ts[32];
            memset(&sc, 0, sizeof sc);
            memset(tags, 0, sizeof tags);
            memset(perf, 0, sizeof perf);
            memset(&f, 0, sizeof f);
            sc.id = (uint64_t)i + 1;
            snprintf(title, sizeof title, "Scene %u", rnd(100000));
            snprintf(ts, sizeof ts, "20%02u-%02u-%02uT00:00:00Z", 10 + rnd(15),
                     1 + rnd(12), 1 + rnd(28));
            sc.title = (struct kv_str){title, (uint32_t)strlen(title)};
            sc.created_at = sc.updated_at = (struct kv_str){ts, (uint32_t)strlen(ts)};
            sc.date.year = (int16_t)(2000 + rnd(25));
            sc.rating100 = rnd(3) ? (int32_t)rnd(101) : -1;
            sc.interactive_speed = -1;
            sc.play_duration = sc.resume_time = -1;
            sc.organized = rnd(2);
            sc.n_tags = 1 + rnd(3);
            for (uint32_t k = 0; k < sc.n_tags; k++)
                tags[k].id = 1 + rnd(2000), tags[k].rating100 = -1;
            sc.tags = tags;
            sc.n_performers = rnd(3);
            for (uint32_t k = 0; k < sc.n_performers; k++)
                perf[k].id = 1 + rnd(5000), perf[k].rating100 = -1;
            sc.performers = perf;
            sc.studio.id = 1 + rnd(300);
            sc.studio.rating100 = -1;
            f.path = (struct kv_str){"/m/a.mp4", 8};
            f.basename = (struct kv_str){"a.mp4", 5};
            f.width = 1920;
            f.height = 1080;
            f.duration = rnd(7200);
            sc.files = &f;
            sc.n_files = 1;
            if (idx_scene_put(w, &sc, NULL) != CM_OK)
                return 1;
        }
        if (idx_writer_finish(w) != CM_OK || kv_commit(t) != CM_OK)
            return 1;
    }
    printf("loaded %ld scenes in %.1f s (%s)\n", n, now() - t0, dir);
    for (size_t qi = 0; qi < sizeof queries / sizeof *queries; qi++) {
        double lat[50];
        cJSON *ff = cJSON_Parse(queries[qi][0]), *sf = cJSON_Parse(queries[qi][1]);
        struct idx_query *q;
        struct idx_error e;
        uint64_t count = 0;
        if (idx_query_parse(ff, sf, 40, &q, &e) != CM_OK)
            return 1;
        for (int r = 0; r < 50; r++) {
            struct kv_txn *t;
            struct idx_result res;
            double a = now();
            if (kv_read_begin(s, &t) != CM_OK || idx_query_run(t, q, &res) != CM_OK)
                return 1;
            count = res.count;
            idx_result_fini(&res);
            kv_read_end(t);
            lat[r] = (now() - a) * 1e3;
        }
        qsort(lat, 50, sizeof *lat, dcmp);
        printf("%-60.60s %-40.40s count %8llu  p50 %8.3f ms  p99 %8.3f ms\n",
               queries[qi][0], queries[qi][1], (unsigned long long)count,
               lat[25], lat[49]);
        idx_query_free(q);
        cJSON_Delete(ff);
        cJSON_Delete(sf);
    }
    kv_close(s);
    return 0;
}
