/*
 * bench_index.c - the engine benchmark of `make bench-engine` (issue 3,
 * item 9; not run by make test).  Loads N synthetic scenes (argv[1],
 * default 1,000,000) through idx_writer in batches of 1,000 (a sync page)
 * into a fresh store (argv[2], default a temp dir, removed at the end),
 * updates 1,000 random scenes in one batch, then runs a fixed mix of 36
 * queries in read transactions, in-process: Peek's carousels and grids,
 * tags of 50 % / 5 % / 0.5 % / 0.05 % selectivity, INCLUDES_ALL
 * performers, studio depth -1, rating > 80 random, q search, date
 * ranges, deep pages to offset 10k, AND/OR/NOT, count-only and totals.
 * Each query: the first run (cold: may build a cached order), then up to
 * REPS runs (fewer for slow queries: at least MIN_REPS, at most ~1 s):
 * p50/p99 in ms, printed as a Markdown table.  Then one query right after
 * a write (stale cache) and idx_rebuild.
 */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* 64 title words (each in ~3 % of titles), performer first/last names. */
static const char *const words[64] = {
    "amber",   "beach",   "candle",  "dawn",    "ember",   "forest",  "garden",
    "harbor",  "island",  "jungle",  "kettle",  "lagoon",  "meadow",  "night",
    "ocean",   "prairie", "quartz",  "river",   "sunset",  "thunder", "umbra",
    "valley",  "willow",  "xenon",   "yonder",  "zephyr",  "autumn",  "breeze",
    "canyon",  "desert",  "echo",    "falcon",  "glacier", "horizon", "ivory",
    "jasmine", "koala",   "lantern", "marble",  "nectar",  "orchid",  "pepper",
    "quiver",  "raven",   "saffron", "tundra",  "utopia",  "velvet",  "walnut",
    "yarrow",  "zenith",  "aurora",  "blossom", "cobalt",  "dune",    "eclipse",
    "fjord",   "granite", "hollow",  "indigo",  "juniper", "kelp",    "lotus",
    "mirage"};
static const char *const firsts[16] = {
    "Anna", "Bella", "Cara", "Dana", "Eva", "Fiona", "Gina",  "Hana",
    "Iris", "Jade",  "Kira", "Lena", "Mia", "Nora",  "Olive", "Petra"};

#define NTAGS    2000
#define NPERFS   5000
#define NSTUDIOS 300
/* Tags 1-4 have fixed selectivity: */
#define TAG_50  1 /* 50 % */
#define TAG_5   2 /* 5 % */
#define TAG_05  3 /* 0.5 % */
#define TAG_005 4 /* 0.05 % */

struct gen_scene {
    struct kv_scene sc;
    struct kv_ref tags[6], perf[2];
    struct kv_file f;
    char title[64], ts[32], code[16], pname[2][32];
};

static void perf_name(char *b, size_t n, uint64_t id)
{
    snprintf(b, n, "%s %s%c", firsts[id % 16], words[(id / 16) % 64],
             (char)('a' + (id / 1024) % 26));
}

static void gen(struct gen_scene *g, uint64_t id)
{
    uint32_t nt = 0;
    memset(g, 0, sizeof *g);
    g->sc.id = id;
    snprintf(g->title, sizeof g->title, "%s %s %u", words[rnd(64)],
             words[rnd(64)], rnd(100000));
    snprintf(g->ts, sizeof g->ts, "20%02u-%02u-%02uT%02u:00:00Z", 10 + rnd(15),
             1 + rnd(12), 1 + rnd(28), rnd(24));
    snprintf(g->code, sizeof g->code, "ABC-%05u", rnd(100000));
    g->sc.title = (struct kv_str){g->title, (uint32_t)strlen(g->title)};
    g->sc.code = (struct kv_str){g->code, (uint32_t)strlen(g->code)};
    g->sc.created_at = g->sc.updated_at =
        (struct kv_str){g->ts, (uint32_t)strlen(g->ts)};
    g->sc.date.year = (int16_t)(2000 + rnd(25));
    g->sc.date.month = (uint8_t)(1 + rnd(12));
    g->sc.date.day = (uint8_t)(1 + rnd(28));
    g->sc.rating100 = rnd(3) ? (int32_t)rnd(101) : -1;
    g->sc.interactive_speed = -1;
    g->sc.play_duration = g->sc.resume_time = -1;
    g->sc.play_count = (int32_t)(rnd(4) ? 0 : rnd(20));
    g->sc.o_counter = (int32_t)(rnd(5) ? 0 : rnd(5));
    g->sc.organized = rnd(2);
    if (rnd(2) == 0)
        g->tags[nt++].id = TAG_50;
    if (rnd(20) == 0)
        g->tags[nt++].id = TAG_5;
    if (rnd(200) == 0)
        g->tags[nt++].id = TAG_05;
    if (rnd(2000) == 0)
        g->tags[nt++].id = TAG_005;
    for (uint32_t k = 1 + rnd(2); k > 0; k--)
        g->tags[nt++].id = 10 + rnd(NTAGS - 10);
    if (nt == 3 && g->tags[1].id == g->tags[2].id)
        nt = 2;
    for (uint32_t k = 0; k < nt; k++)
        g->tags[k].rating100 = -1;
    g->sc.n_tags = nt;
    g->sc.tags = g->tags;
    g->sc.n_performers = rnd(3);
    for (uint32_t k = 0; k < g->sc.n_performers; k++) {
        /* a few popular performers: 1 and 2 are in ~2 % of scenes */
        uint64_t pid = rnd(25) == 0 ? 1 + rnd(2) : 1 + rnd(NPERFS);
        if (k && pid == g->perf[0].id)
            pid = pid % NPERFS + 1;
        g->perf[k].id = pid;
        g->perf[k].rating100 = -1;
        perf_name(g->pname[k], sizeof g->pname[k], pid);
        g->perf[k].name =
            (struct kv_str){g->pname[k], (uint32_t)strlen(g->pname[k])};
    }
    g->sc.performers = g->perf;
    g->sc.studio.id = 1 + rnd(NSTUDIOS);
    g->sc.studio.rating100 = -1;
    g->f.path = (struct kv_str){"/m/a.mp4", 8};
    g->f.basename = (struct kv_str){"a.mp4", 5};
    g->f.width = 1920;
    g->f.height = 1080;
    g->f.duration = rnd(7200);
    g->f.size = (int64_t)rnd(4000) * 1000000;
    g->sc.files = &g->f;
    g->sc.n_files = 1;
}

/* Studios 1-10 are roots; 11-60 children of them; the rest grandchildren
 * (so depth -1 on a root covers ~1/10 of the scenes). */
static void put_entities(struct idx_writer *w)
{
    for (uint64_t i = 1; i <= NSTUDIOS; i++) {
        struct kv_entity e;
        uint64_t parent = i <= 10   ? 0
                          : i <= 60 ? 1 + (i - 11) % 10
                                    : 11 + (i - 61) % 50;
        memset(&e, 0, sizeof e);
        e.type = KV_STUDIO;
        e.id = i;
        e.rating100 = e.duration = e.image_count = -1;
        e.n_parents = parent ? 1 : 0;
        e.parents = &parent;
        if (idx_entity_put(w, &e) != CM_OK)
            exit(1);
    }
}

static double put_batch(struct kv_store *s, uint64_t first, long n,
                        bool rand_ids, long universe)
{
    struct kv_txn *t;
    struct idx_writer *w;
    struct gen_scene g;
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    if (kv_write_begin(s, &t) != CM_OK || idx_writer_begin(t, &w) != CM_OK)
        exit(1);
    if (!rand_ids && first == 1)
        put_entities(w);
    for (long i = 0; i < n; i++) {
        gen(&g, rand_ids ? 1 + rnd((uint32_t)universe) : first + (uint64_t)i);
        if (idx_scene_put(w, &g.sc, NULL) != CM_OK)
            exit(1);
    }
    if (idx_writer_finish(w) != CM_OK || kv_commit(t) != CM_OK)
        exit(1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    return (double)(b.tv_sec - a.tv_sec) +
           (double)(b.tv_nsec - a.tv_nsec) / 1e9;
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

#define REPS       200
#define MIN_REPS   20
#define TAGS(v, m) "{\"tags\":{\"value\":[" v "],\"modifier\":\"" m "\"}}"

/* {label, FindFilterType, SceneFilterType, totals?} */
static const struct bq {
    const char *label, *ff, *sf;
    bool totals;
} queries[] = {
    /* Peek's home carousels and the scene grid */
    {"grid: all, created_at DESC, p1",
     "{\"sort\":\"created_at\",\"direction\":\"DESC\"}", "{}", false},
    {"carousel: updated_at DESC",
     "{\"sort\":\"updated_at\",\"direction\":\"DESC\",\"per_page\":20}", "{}",
     false},
    {"carousel: random (daily seed)",
     "{\"sort\":\"random_20261127\",\"per_page\":20}", "{}", false},
    {"carousel: top rated",
     "{\"sort\":\"rating\",\"direction\":\"DESC\",\"per_page\":20}", "{}",
     false},
    {"carousel: most played",
     "{\"sort\":\"play_count\",\"direction\":\"DESC\",\"per_page\":20}", "{}",
     false},
    {"carousel: unorganized, date DESC",
     "{\"sort\":\"date\",\"direction\":\"DESC\",\"per_page\":20}",
     "{\"organized\":false}", false},
    {"grid: title, p50", "{\"sort\":\"title\",\"page\":50}", "{}", false},
    {"grid: title DESC, p2000 (offset 80k)",
     "{\"sort\":\"title\",\"direction\":\"DESC\",\"page\":2000}", "{}", false},
    {"grid: all + totals", "{\"sort\":\"created_at\",\"direction\":\"DESC\"}",
     "{}", true},
    /* tags by selectivity */
    {"tag 50%, date DESC", "{\"sort\":\"date\",\"direction\":\"DESC\"}",
     TAGS("\"1\"", "INCLUDES"), false},
    {"tag 5%, date DESC", "{\"sort\":\"date\",\"direction\":\"DESC\"}",
     TAGS("\"2\"", "INCLUDES"), false},
    {"tag 0.5%, date DESC", "{\"sort\":\"date\",\"direction\":\"DESC\"}",
     TAGS("\"3\"", "INCLUDES"), false},
    {"tag 0.05%, date DESC", "{\"sort\":\"date\",\"direction\":\"DESC\"}",
     TAGS("\"4\"", "INCLUDES"), false},
    {"tag 5%, title, count + totals", "{\"sort\":\"title\"}",
     TAGS("\"2\"", "INCLUDES"), true},
    {"tag 50% AND 5% (INCLUDES_ALL)",
     "{\"sort\":\"created_at\",\"direction\":\"DESC\"}",
     TAGS("\"1\",\"2\"", "INCLUDES_ALL"), false},
    {"tag 50% EXCLUDES, rating DESC",
     "{\"sort\":\"rating\",\"direction\":\"DESC\"}", TAGS("\"1\"", "EXCLUDES"),
     false},
    {"10 tags INCLUDES, duration DESC, p3",
     "{\"sort\":\"duration\",\"direction\":\"DESC\",\"page\":3}",
     TAGS("\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\",\"18\","
          "\"19\"",
          "INCLUDES"),
     false},
    {"tag 5%, count only (per_page 0)", "{\"per_page\":0}",
     TAGS("\"2\"", "INCLUDES"), false},
    /* performers, studios */
    {"performers INCLUDES_ALL (2 popular)",
     "{\"sort\":\"date\",\"direction\":\"DESC\"}",
     "{\"performers\":{\"value\":[\"1\",\"2\"],\"modifier\":\"INCLUDES_ALL\"}}",
     false},
    {"performers INCLUDES + organized", "{\"sort\":\"duration\"}",
     "{\"performers\":{\"value\":[\"7\",\"9\"],\"modifier\":\"INCLUDES\"},"
     "\"organized\":true}",
     false},
    {"studio root depth -1, rating DESC",
     "{\"sort\":\"rating\",\"direction\":\"DESC\"}",
     "{\"studios\":{\"value\":[\"2\"],\"modifier\":\"INCLUDES\",\"depth\":-1}}",
     false},
    {"studio mid depth -1, title", "{\"sort\":\"title\"}",
     "{\"studios\":{\"value\":[\"15\"],\"modifier\":\"INCLUDES\",\"depth\":-1}"
     "}",
     false},
    /* ratings, dates */
    {"rating100 > 80, random", "{\"sort\":\"random_12345\"}",
     "{\"rating100\":{\"value\":80,\"modifier\":\"GREATER_THAN\"}}", false},
    {"rating100 > 50, date, p100", "{\"sort\":\"date\",\"page\":100}",
     "{\"rating100\":{\"value\":50,\"modifier\":\"GREATER_THAN\"}}", false},
    {"date BETWEEN 2010..2012, date", "{\"sort\":\"date\"}",
     "{\"date\":{\"value\":\"2010-01-01\",\"value2\":\"2012-12-31\","
     "\"modifier\":\"BETWEEN\"}}",
     false},
    {"date > 2020-06-01, created_at DESC",
     "{\"sort\":\"created_at\",\"direction\":\"DESC\"}",
     "{\"date\":{\"value\":\"2020-06-01\",\"modifier\":\"GREATER_THAN\"}}",
     false},
    {"created_at > 2023-01-01 (timestamp)",
     "{\"sort\":\"created_at\",\"direction\":\"DESC\"}",
     "{\"created_at\":{\"value\":\"2023-01-01\",\"modifier\":\"GREATER_THAN\"}"
     "}",
     false},
    /* q */
    {"q one word (~3%)",
     "{\"q\":\"sunset\",\"sort\":\"created_at\",\"direction\":\"DESC\"}", "{}",
     false},
    {"q two words (~0.1%)",
     "{\"q\":\"sunset beach\",\"sort\":\"created_at\",\"direction\":\"DESC\"}",
     "{}", false},
    {"q performer name", "{\"q\":\"Anna\",\"sort\":\"title\"}", "{}", false},
    {"q word -word",
     "{\"q\":\"ocean -river\",\"sort\":\"created_at\",\"direction\":\"DESC\"}",
     "{}", false},
    /* deep pages */
    {"all, created_at DESC, offset 10k",
     "{\"sort\":\"created_at\",\"direction\":\"DESC\",\"page\":251}", "{}",
     false},
    {"organized, created_at DESC, offset 10k",
     "{\"sort\":\"created_at\",\"direction\":\"DESC\",\"page\":251}",
     "{\"organized\":true}", false},
    {"tag 5%, title, offset 10k", "{\"sort\":\"title\",\"page\":251}",
     TAGS("\"2\"", "INCLUDES"), false},
    /* AND / OR / NOT */
    {"OR: tag 5% OR performer 1", "{\"sort\":\"date\",\"direction\":\"DESC\"}",
     "{\"tags\":{\"value\":[\"2\"],\"modifier\":\"INCLUDES\"},\"OR\":{"
     "\"performers\":{\"value\":[\"1\"],\"modifier\":\"INCLUDES\"}}}",
     false},
    {"NOT: organized NOT tag 50%",
     "{\"sort\":\"created_at\",\"direction\":\"DESC\"}",
     "{\"organized\":true,\"NOT\":" TAGS("\"1\"", "INCLUDES") "}", false},
    {"AND: rating>60 AND (tag 5% OR studio -1)", "{\"sort\":\"title\"}",
     "{\"rating100\":{\"value\":60,\"modifier\":\"GREATER_THAN\"},\"AND\":{"
     "\"tags\":{\"value\":[\"2\"],\"modifier\":\"INCLUDES\"},\"OR\":{"
     "\"studios\":{\"value\":[\"3\"],\"modifier\":\"INCLUDES\",\"depth\":-1}}}"
     "}",
     false},
};

/* nftw callback: removes the temp store. */
static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    char tmpl[] = "/tmp/bench-index-XXXXXX", err[256];
    const char *dir = argc > 2 ? argv[2] : mkdtemp(tmpl);
    bool own_dir = argc <= 2;
    struct kv_options o = {0};
    struct kv_store *s;
    double worst = 0;
    const char *worst_label = "";

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
        cpu += put_batch(s, (uint64_t)base + 1,
                         n - base < 1000 ? n - base : 1000, false, 0);
    printf("## %ld scenes\n\nloaded in pages of 1000: %.1f s wall, %.1f s "
           "CPU, %.1f us/scene (%s)\n",
           n, now() - t0, cpu, cpu * 1e6 / (double)n, dir);
    cpu = put_batch(s, 0, 1000, true, n);
    printf("incremental: 1000 random updates in one batch: %.1f ms CPU\n\n",
           cpu * 1e3);
    printf("| # | query | count | first ms | p50 ms | p99 ms | runs |\n"
           "|---:|---|---:|---:|---:|---:|---:|\n");
    for (size_t qi = 0; qi < sizeof queries / sizeof *queries; qi++) {
        double lat[REPS], first, start;
        cJSON *ff = cJSON_Parse(queries[qi].ff),
              *sf = cJSON_Parse(queries[qi].sf);
        struct idx_query *q;
        struct idx_error e;
        uint64_t count = 0;
        int reps = 0;
        if (idx_query_parse(ff, sf, 40, &q, &e) != CM_OK) {
            fprintf(stderr, "query %zu: %s: %s\n", qi + 1, e.field, e.message);
            return 1;
        }
        idx_query_want_totals(q, queries[qi].totals);
        first = run_once(s, q, &count);
        start = now();
        while (reps < REPS && (reps < MIN_REPS || now() - start < 1.0))
            lat[reps++] = run_once(s, q, &count);
        qsort(lat, (size_t)reps, sizeof *lat, dcmp);
        {
            double p99 =
                lat[(reps * 99) / 100 < reps ? (reps * 99) / 100 : reps - 1];
            printf("| %zu | %s | %llu | %.3f | %.3f | %.3f | %d |\n", qi + 1,
                   queries[qi].label, (unsigned long long)count, first,
                   lat[reps / 2], p99, reps);
            if (p99 > worst) {
                worst = p99;
                worst_label = queries[qi].label;
            }
        }
        idx_query_free(q);
        cJSON_Delete(ff);
        cJSON_Delete(sf);
    }
    printf("\nworst p99: %.3f ms (%s)\n", worst, worst_label);
    {
        /* After a write the cached orders are stale: the next queries
         * rebuild (or fall back to the candidate plan). */
        cJSON *ff = cJSON_Parse(queries[0].ff),
              *sf = cJSON_Parse(queries[0].sf);
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
        printf("idx_rebuild of %llu scenes: %.2f s\n\n",
               (unsigned long long)cnt, now() - a);
    }
    kv_close(s);
    if (own_dir && nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
