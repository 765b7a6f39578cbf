/*
 * test_sync_run.c - sync_run() against the fake Stash over loopback.
 *
 * The fake (tests/fake-stash/server.mjs) is spawned with posix_spawn and
 * is ready when it prints its listening line.  Oracles: the generated
 * library itself (every scene record equals the NDJSON mapped and filled),
 * and a fresh full sync (an incremental sync after edits must converge to
 * it field by field).  Kills are SIGKILLs of a forked child running the
 * sync, timed by the N-th progress line it logs (N from a seeded PRNG).
 */
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_config.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "kv/kv.h"
#include "sync/sync.h"
#include "tests/lib/testutil.h"

extern char **environ;

/* Fakes started by this process, killed at exit even when an assertion
 * ends the test early. */
static pid_t fakes[8];
static int n_fakes;

static void kill_fakes(void)
{
    for (int i = 0; i < n_fakes; i++)
        if (fakes[i] > 0) {
            kill(fakes[i], SIGTERM);
            waitpid(fakes[i], NULL, 0);
        }
    n_fakes = 0;
}

static void track_fake(pid_t pid)
{
    if (n_fakes == 0)
        atexit(kill_fakes);
    if (n_fakes < 8)
        fakes[n_fakes++] = pid;
}

struct fake {
    pid_t pid;
    char url[128];
};

static void fake_start(struct fake *f, int scenes, const char *tz)
{
    int pipefd[2];
    posix_spawn_file_actions_t fa;
    char sc[16], line[512];
    FILE *out;
    char *argv[] = {"node",  "tests/fake-stash/server.mjs", "--port", "0",
                    "--scenes", sc, "--seed", "1", "--tz", (char *)tz, NULL};
    snprintf(sc, sizeof sc, "%d", scenes);
    ck_assert_int_eq(pipe(pipefd), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    ck_assert_int_eq(posix_spawnp(&f->pid, "node", &fa, NULL, argv, environ),
                     0);
    posix_spawn_file_actions_destroy(&fa);
    track_fake(f->pid);
    close(pipefd[1]);
    out = fdopen(pipefd[0], "r");
    ck_assert_ptr_nonnull(out);
    f->url[0] = '\0';
    while (fgets(line, sizeof line, out)) {
        char *p = strstr(line, "listening on ");
        if (p) {
            p += strlen("listening on ");
            p[strcspn(p, "\r\n")] = '\0';
            snprintf(f->url, sizeof f->url, "%s", p);
            break;
        }
    }
    /* keep reading nothing more: the fake writes only this line */
    fclose(out);
    ck_assert_msg(f->url[0], "fake did not start");
}

static void fake_stop(struct fake *f)
{
    for (int i = 0; i < n_fakes; i++)
        if (fakes[i] == f->pid)
            fakes[i] = 0;
    kill(f->pid, SIGTERM);
    waitpid(f->pid, NULL, 0);
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    struct cm_buf *b = ud;
    (void)!cm_buf_append(b, p, s * n);
    return s * n;
}

/* POSTs a control op; returns the HTTP status. */
static long control(const struct fake *f, const char *json)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL,
                                             "Content-Type: application/json");
    char url[256];
    long code = 0;
    struct cm_buf b;
    cm_buf_init(&b, CM_MiB);
    snprintf(url, sizeof url, "%s/__control", f->url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    ck_assert_msg(code == 200, "control %s -> %ld %s", json, code,
                  b.data ? b.data : "");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cm_buf_fini(&b);
    return code;
}

static void cfg_for(struct cm_config *cfg, const struct fake *f, int page,
                    int retries)
{
    char err[256], n[16];
    ck_assert_int_eq(cm_config_init(cfg), CM_OK);
    ck_assert_int_eq(cm_config_set(cfg, "stash-url", f->url, err, sizeof err),
                     CM_OK);
    snprintf(n, sizeof n, "%d", page);
    ck_assert_int_eq(cm_config_set(cfg, "page-size", n, err, sizeof err),
                     CM_OK);
    snprintf(n, sizeof n, "%d", retries);
    ck_assert_int_eq(cm_config_set(cfg, "sync-retries", n, err, sizeof err),
                     CM_OK);
    ck_assert_int_eq(cm_config_set(cfg, "sync-timeout", "5", err, sizeof err),
                     CM_OK);
}

static struct kv_store *open_store(const char *dir)
{
    struct kv_options o = {0};
    struct kv_store *s;
    char err[256];
    o.map_size = 256 << 20;
    o.no_sync = 1;
    ck_assert_msg(kv_open(dir, &o, &s, err, sizeof err) == CM_OK, "%s", err);
    return s;
}

static void sync_ok(struct kv_store *s, const struct cm_config *cfg,
                    enum sync_mode m, struct sync_stats *st)
{
    char err[512] = "";
    enum cm_status rc = sync_run(s, cfg, m, NULL, st, err, sizeof err);
    ck_assert_msg(rc == CM_OK, "sync: %s (%s)", err, cm_status_str(rc));
}

static uint64_t scene_count(struct kv_store *s)
{
    struct kv_txn *t;
    uint64_t n;
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_scene_count(t, &n), CM_OK);
    kv_read_end(t);
    return n;
}

/* Every scene and entity of a equals b's, and the counts match. */
static void compare_stores(struct kv_store *a, struct kv_store *b)
{
    struct kv_txn *ta, *tb;
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t na, nb, ents_a = 0, ents_b = 0;
    int rc;

    ck_assert_int_eq(kv_read_begin(a, &ta), CM_OK);
    ck_assert_int_eq(kv_read_begin(b, &tb), CM_OK);
    ck_assert_int_eq(kv_scene_count(ta, &na), CM_OK);
    ck_assert_int_eq(kv_scene_count(tb, &nb), CM_OK);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(mdb_cursor_open(kv_txn_mdb(ta),
                                     kv_dbi(a, KV_DB_DOCMAP), &cur),
                     0);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint32_t da, db;
        uint64_t sid;
        struct kv_scene sa, sb;
        memcpy(&da, k.mv_data, 4);
        ck_assert_int_eq(kv_stash_id_of(ta, da, &sid), CM_OK);
        ck_assert_msg(kv_docid_of(tb, sid, &db) == CM_OK, "scene %llu missing",
                      (unsigned long long)sid);
        ck_assert_int_eq(kv_scene_get(ta, da, &sa), CM_OK);
        ck_assert_int_eq(kv_scene_get(tb, db, &sb), CM_OK);
        ck_assert_msg(kv_scene_equal(&sa, &sb), "scene %llu differs",
                      (unsigned long long)sid);
        kv_scene_fini(&sa);
        kv_scene_fini(&sb);
    }
    mdb_cursor_close(cur);
    ck_assert_int_eq(mdb_cursor_open(kv_txn_mdb(ta),
                                     kv_dbi(a, KV_DB_ENTITIES), &cur),
                     0);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const void *bv;
        size_t bl;
        struct kv_entity ea, eb;
        ents_a++;
        ck_assert_msg(kv_get(tb, KV_DB_ENTITIES, k.mv_data, k.mv_size, &bv,
                             &bl) == CM_OK,
                      "entity %c missing", ((char *)k.mv_data)[0]);
        ck_assert_int_eq(kv_entity_decode(v.mv_data, v.mv_size, &ea), CM_OK);
        ck_assert_int_eq(kv_entity_decode(bv, bl, &eb), CM_OK);
        ck_assert_msg(kv_entity_equal(&ea, &eb), "entity %c%llu differs",
                      ea.type, (unsigned long long)ea.id);
        kv_entity_fini(&ea);
        kv_entity_fini(&eb);
    }
    mdb_cursor_close(cur);
    ck_assert_int_eq(mdb_cursor_open(kv_txn_mdb(tb),
                                     kv_dbi(b, KV_DB_ENTITIES), &cur),
                     0);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        ents_b++;
    mdb_cursor_close(cur);
    ck_assert_uint_eq(ents_a, ents_b);
    kv_read_end(ta);
    kv_read_end(tb);
}

/* Replaces the generator's placeholder base by the fake's URL. */
static char *rebase(const char *line, const char *url)
{
    static const char ph[] = "http://stash.invalid";
    struct cm_buf b;
    const char *p = line, *q;
    cm_buf_init(&b, CM_MAX_RECORD);
    while ((q = strstr(p, ph))) {
        ck_assert_int_eq(cm_buf_append(&b, p, (size_t)(q - p)), CM_OK);
        ck_assert_int_eq(cm_buf_puts(&b, url), CM_OK);
        p = q + sizeof ph - 1;
    }
    ck_assert_int_eq(cm_buf_puts(&b, p), CM_OK);
    return cm_buf_take(&b, NULL);
}

START_TEST(full_sync_equals_generated_library)
{
    struct fake f;
    struct cm_config cfg;
    struct kv_store *s;
    struct sync_stats st;
    char cmd[4300], path[4200], *line = NULL, err[256];
    const char *gd = tu_tmpdir();
    size_t cap = 0, n = 0;
    FILE *fp;
    struct kv_txn *t;
    struct sync_arena a;

    fake_start(&f, 5000, "Z");
    cfg_for(&cfg, &f, 1000, 1);
    s = open_store(tu_tmpdir());
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st); /* fresh store: full */
    ck_assert_uint_eq(st.fetched[SYNC_SCENES], 5000);
    ck_assert_uint_eq(st.written[SYNC_SCENES], 5000);
    ck_assert_uint_eq(st.unknown_refs, 0);
    ck_assert_uint_eq(scene_count(s), 5000);

    snprintf(cmd, sizeof cmd,
             "node tests/gen/generate.mjs --seed 1 --scenes 5000 --out %s "
             "2>/dev/null",
             gd);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/scenes.ndjson", gd);
    fp = fopen(path, "r");
    ck_assert_ptr_nonnull(fp);
    sync_arena_init(&a, CM_MAX_GRAPHQL_RESPONSE);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    while (getline(&line, &cap, fp) > 0) {
        char *l = rebase(line, f.url);
        cJSON *o = cJSON_Parse(l);
        struct kv_scene want, got;
        uint32_t docid;
        ck_assert_int_eq(sync_map_scene(o, &a, &want, err, sizeof err), CM_OK);
        ck_assert_int_eq(sync_fill_refs(t, &want, &a, NULL), CM_OK);
        ck_assert_int_eq(kv_docid_of(t, want.id, &docid), CM_OK);
        ck_assert_int_eq(kv_scene_get(t, docid, &got), CM_OK);
        ck_assert_msg(kv_scene_equal(&want, &got), "scene %llu",
                      (unsigned long long)want.id);
        kv_scene_fini(&got);
        cJSON_Delete(o);
        cm_free(l);
        sync_arena_reset(&a);
        n++;
    }
    kv_read_end(t);
    ck_assert_uint_eq(n, 5000);
    free(line);
    fclose(fp);
    sync_arena_fini(&a);

    /* a second sync changes nothing and fetches only the overlap */
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st);
    for (int i = 0; i < SYNC_NTYPES; i++)
        ck_assert_uint_eq(st.written[i], 0);
    ck_assert_uint_eq(st.deleted[SYNC_SCENES], 0);
    ck_assert_uint_lt(st.fetched[SYNC_SCENES], 500);
    kv_close(s);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

static void edits(const struct fake *f)
{
    control(f, "{\"op\":\"setClock\",\"now\":\"2026-01-05T10:00:00Z\"}");
    control(f, "{\"op\":\"editScene\",\"id\":\"17\",\"title\":\"Edited\","
               "\"rating100\":99,\"tags\":[\"1\",\"2\"]}");
    control(f, "{\"op\":\"setActivity\",\"id\":\"18\",\"play_count\":42,"
               "\"o_counter\":7,\"resume_time\":12.5,\"last_played_at\":"
               "\"2026-01-05T09:00:00Z\"}");
    control(f, "{\"op\":\"renameTag\",\"id\":\"3\",\"name\":\"Renamed tag\"}");
    control(f, "{\"op\":\"renamePerformer\",\"id\":\"2\",\"name\":\"New P\"}");
    control(f, "{\"op\":\"renameStudio\",\"id\":\"1\",\"name\":\"New S\"}");
    control(f, "{\"op\":\"mergeTags\",\"source\":[\"4\",\"5\"],"
               "\"destination\":\"6\"}");
    control(f, "{\"op\":\"deleteTag\",\"id\":\"7\"}");
    control(f, "{\"op\":\"deletePerformer\",\"id\":\"3\"}");
    control(f, "{\"op\":\"deleteStudio\",\"id\":\"2\"}");
    control(f, "{\"op\":\"deleteScene\",\"id\":\"20\"}");
    control(f, "{\"op\":\"deleteScene\",\"id\":\"1500\"}");
    control(f, "{\"op\":\"addScene\"}");
}

START_TEST(incremental_converges_to_full)
{
    struct fake f;
    struct cm_config cfg;
    struct kv_store *a, *b;
    struct sync_stats st;

    fake_start(&f, 3000, (const char *)(uintptr_t)(_i ? "-08:00" : "Z"));
    cfg_for(&cfg, &f, 500, 1);
    a = open_store(tu_tmpdir());
    sync_ok(a, &cfg, SYNC_FULL, &st);
    edits(&f);
    sync_ok(a, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert_uint_ge(st.activity, 1);
    ck_assert_uint_ge(st.deleted[SYNC_SCENES], 2);
    ck_assert_uint_ge(st.deleted[SYNC_TAGS], 3);
    ck_assert_uint_ge(st.rewritten, 1);
    /* not a full pass: the changed scenes plus those carrying a deleted
     * or merged entity (refetched by id) */
    ck_assert_uint_lt(st.fetched[SYNC_SCENES], 2000);
    b = open_store(tu_tmpdir());
    sync_ok(b, &cfg, SYNC_FULL, &st);
    compare_stores(a, b);
    compare_stores(b, a);
    /* and it stays converged */
    sync_ok(a, &cfg, SYNC_INCREMENTAL, &st);
    compare_stores(a, b);
    kv_close(a);
    kv_close(b);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

START_TEST(updated_at_quirk)
{
    /* a -08:00 server compares text: the watermark must be sent as wall
     * time without offset, else the edit is missed (Peek's PR #206) */
    struct fake f;
    struct cm_config cfg;
    struct kv_store *s;
    struct sync_stats st;
    struct kv_txn *t;
    struct kv_scene sc;
    uint32_t d;
    const char *tz = _i ? "-08:00" : "Z";

    fake_start(&f, 400, tz);
    cfg_for(&cfg, &f, 100, 1);
    s = open_store(tu_tmpdir());
    sync_ok(s, &cfg, SYNC_FULL, &st);
    control(&f, "{\"op\":\"setClock\",\"now\":\"2026-01-05T10:00:00Z\"}");
    control(&f, "{\"op\":\"editScene\",\"id\":\"5\",\"title\":\"Quirk\"}");
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert_uint_ge(st.written[SYNC_SCENES], 1);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_docid_of(t, 5, &d), CM_OK);
    ck_assert_int_eq(kv_scene_get(t, d, &sc), CM_OK);
    ck_assert(sc.title.len == 5 && memcmp(sc.title.p, "Quirk", 5) == 0);
    ck_assert_ptr_nonnull(memchr(sc.updated_at.p, _i ? '-' : 'Z',
                                 sc.updated_at.len));
    kv_scene_fini(&sc);
    kv_read_end(t);
    /* the same second edited again is caught too (prefix match) */
    control(&f, "{\"op\":\"editScene\",\"id\":\"6\",\"title\":\"Again\"}");
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert_uint_eq(st.written[SYNC_SCENES], 1);
    kv_close(s);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

static const struct {
    const char *fault, *expect;
} FAULTS[] = {
    {"{\"op\":\"fault\",\"kind\":\"status\",\"code\":503,\"count\":50}",
     "HTTP 503"},
    {"{\"op\":\"fault\",\"kind\":\"slow\",\"ms\":2500,\"count\":50}",
     "request to Stash failed"},
    {"{\"op\":\"fault\",\"kind\":\"truncate\",\"count\":50}",
     "request to Stash failed"},
    {"{\"op\":\"fault\",\"kind\":\"malformed\",\"count\":50}",
     "malformed response"},
    {"{\"op\":\"fault\",\"kind\":\"reset\",\"count\":50}",
     "request to Stash failed"},
    {"{\"op\":\"fault\",\"kind\":\"errors\",\"count\":50}",
     "fault injected"},
};

START_TEST(faults_fail_cleanly)
{
    struct fake f;
    struct cm_config cfg;
    struct kv_store *s, *ref;
    struct sync_stats st;
    char err[512] = "", e2[256];
    enum cm_status rc;

    fake_start(&f, 300, "Z");
    cfg_for(&cfg, &f, 100, 1);
    ck_assert_int_eq(cm_config_set(&cfg, "sync-timeout", "1", e2, sizeof e2),
                     CM_OK);
    s = open_store(tu_tmpdir());
    ref = open_store(tu_tmpdir());
    sync_ok(s, &cfg, SYNC_FULL, &st);
    sync_ok(ref, &cfg, SYNC_FULL, &st);
    control(&f, "{\"op\":\"setClock\",\"now\":\"2026-01-05T10:00:00Z\"}");
    control(&f, "{\"op\":\"editScene\",\"id\":\"9\",\"title\":\"X\"}");
    control(&f, FAULTS[_i].fault);
    rc = sync_run(s, &cfg, SYNC_INCREMENTAL, NULL, &st, err, sizeof err);
    ck_assert_int_ne(rc, CM_OK);
    ck_assert_msg(strstr(err, FAULTS[_i].expect) != NULL, "got \"%s\"", err);
    compare_stores(s, ref); /* unchanged */
    control(&f, "{\"op\":\"clearFaults\"}");
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st); /* and recovers */
    ck_assert_uint_eq(st.written[SYNC_SCENES], 1);
    kv_close(s);
    kv_close(ref);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

START_TEST(zero_ids_guard)
{
    struct fake f;
    struct cm_config cfg;
    struct kv_store *s;
    struct sync_stats st;
    char op[128];

    fake_start(&f, 60, "Z");
    cfg_for(&cfg, &f, 25, 1);
    s = open_store(tu_tmpdir());
    sync_ok(s, &cfg, SYNC_FULL, &st);
    ck_assert_uint_eq(scene_count(s), 60);
    for (int i = 1; i <= 60; i++) {
        snprintf(op, sizeof op, "{\"op\":\"deleteScene\",\"id\":\"%d\"}", i);
        control(&f, op);
    }
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert(st.deletes_skipped);
    ck_assert_uint_eq(st.deleted[SYNC_SCENES], 0);
    ck_assert_uint_eq(scene_count(s), 60);
    kv_close(s);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

struct reader {
    struct kv_store *s;
    volatile int stop;
    int bad;
    uint64_t last, total, page, samples;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    while (!r->stop) {
        struct kv_txn *t;
        uint64_t n;
        if (kv_read_begin(r->s, &t) != CM_OK)
            continue;
        if (kv_scene_count(t, &n) == CM_OK) {
            r->samples++;
            if (n % r->page != 0 && n != r->total)
                r->bad++;
            r->last = n;
        }
        kv_read_end(t);
    }
    return NULL;
}

START_TEST(readers_see_whole_pages)
{
    struct fake f;
    struct cm_config cfg;
    struct reader rd = {0};
    struct sync_stats st;
    pthread_t th;

    fake_start(&f, 2050, "Z");
    cfg_for(&cfg, &f, 250, 1);
    rd.s = open_store(tu_tmpdir());
    rd.page = 250;
    rd.total = 2050;
    ck_assert_int_eq(pthread_create(&th, NULL, reader_main, &rd), 0);
    sync_ok(rd.s, &cfg, SYNC_FULL, &st);
    rd.stop = 1;
    pthread_join(th, NULL);
    ck_assert_int_eq(rd.bad, 0);
    ck_assert_uint_gt(rd.samples, 0);
    ck_assert_uint_eq(scene_count(rd.s), 2050);
    kv_close(rd.s);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

/* Runs sync_run in a forked child whose log goes to a pipe; SIGKILLs it
 * after the n-th progress line (or lets it finish).  Returns 1 when it was
 * killed. */
static int killed_run(const char *dir, const struct cm_config *cfg,
                      enum sync_mode m, int n)
{
    int p[2], lines = 0, status;
    pid_t pid;
    FILE *in;
    char buf[1024];

    ck_assert_int_eq(pipe(p), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct kv_store *s;
        char err[512];
        close(p[0]);
        cm_log_setup(CM_LOG_INFO, CM_LOG_TEXT, p[1]);
        s = open_store(dir);
        (void)!sync_run(s, cfg, m, NULL, NULL, err, sizeof err);
        kv_close(s);
        _exit(0);
    }
    close(p[1]);
    in = fdopen(p[0], "r");
    while (fgets(buf, sizeof buf, in))
        if (strstr(buf, "progress ") && ++lines == n) {
            kill(pid, SIGKILL);
            break;
        }
    fclose(in);
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

START_TEST(sigkill_resume_converges)
{
    struct fake f;
    struct cm_config cfg;
    struct kv_store *k, *u;
    struct sync_stats st;
    const char *kdir = tu_tmpdir();
    unsigned seed = 12345;
    int kills = 0;

    fake_start(&f, 3000, "-08:00");
    cfg_for(&cfg, &f, 200, 1);
    /* full sync, killed 12 times at seeded moments */
    for (int i = 0; i < 12; i++) {
        seed = seed * 1103515245u + 12345u;
        kills += killed_run(kdir, &cfg, SYNC_FULL, 1 + (int)(seed >> 16) % 12);
    }
    k = open_store(kdir);
    sync_ok(k, &cfg, SYNC_INCREMENTAL, &st);
    u = open_store(tu_tmpdir());
    sync_ok(u, &cfg, SYNC_FULL, &st);
    compare_stores(k, u);
    kv_close(k);
    /* incremental after edits, killed 10 more times */
    edits(&f);
    for (int i = 0; i < 10; i++) {
        seed = seed * 1103515245u + 12345u;
        kills += killed_run(kdir, &cfg, SYNC_INCREMENTAL,
                            1 + (int)(seed >> 16) % 10);
    }
    k = open_store(kdir);
    sync_ok(k, &cfg, SYNC_INCREMENTAL, &st);
    kv_close(u);
    u = open_store(tu_tmpdir());
    sync_ok(u, &cfg, SYNC_FULL, &st);
    compare_stores(k, u);
    compare_stores(u, k);
    ck_assert_int_ge(kills, 20);
    kv_close(k);
    kv_close(u);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

START_TEST(client_auth_and_validation)
{
    struct fake f;
    struct sync_client *c;
    struct sync_client_opts o = {0};
    cJSON *v, *data = NULL;
    char err[512];
    enum cm_status st;
    int pipefd[2];
    posix_spawn_file_actions_t fa;
    char line[256];
    FILE *out;
    char *argv[] = {"node",     "tests/fake-stash/server.mjs", "--port", "0",
                    "--scenes", "10", "--api-key", "s3cret", NULL};

    ck_assert_int_eq(pipe(pipefd), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    ck_assert_int_eq(posix_spawnp(&f.pid, "node", &fa, NULL, argv, environ),
                     0);
    posix_spawn_file_actions_destroy(&fa);
    track_fake(f.pid);
    close(pipefd[1]);
    out = fdopen(pipefd[0], "r");
    ck_assert_ptr_nonnull(fgets(line, sizeof line, out));
    fclose(out);
    ck_assert_ptr_nonnull(strstr(line, "http://"));
    line[strcspn(line, "\r\n")] = '\0';
    snprintf(f.url, sizeof f.url, "%s", strstr(line, "http://"));

    o.url = f.url;
    o.api_key = "wrong";
    o.retries = 2;
    ck_assert_int_eq(sync_client_new(&o, &c), CM_OK);
    st = sync_client_query(c, "Version", NULL, &data, err, sizeof err);
    ck_assert_int_eq(st, CM_UPSTREAM);
    ck_assert_ptr_nonnull(strstr(err, "Stash rejected the API key"));
    ck_assert_ptr_null(strstr(err, "wrong"));
    ck_assert_uint_eq(sync_client_requests(c), 1); /* 4xx: no retry */
    sync_client_free(c);

    o.api_key = "s3cret";
    ck_assert_int_eq(sync_client_new(&o, &c), CM_OK);
    ck_assert_int_eq(sync_client_query(c, "Version", NULL, &data, err,
                                       sizeof err),
                     CM_OK);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(data, "version"));
    cJSON_Delete(data);
    v = cJSON_Parse("{\"filter\":{\"direction\":\"SIDEWAYS\"}}");
    st = sync_client_query(c, "SyncTags", v, &data, err, sizeof err);
    ck_assert_int_eq(st, CM_UPSTREAM);
    ck_assert_msg(strstr(err, "HTTP 422") != NULL, "%s", err);
    cJSON_Delete(v);
    v = cJSON_Parse("{\"filter\":{\"sort\":\"nope\"}}");
    st = sync_client_query(c, "SyncTags", v, &data, err, sizeof err);
    ck_assert_int_eq(st, CM_UPSTREAM);
    ck_assert_msg(strstr(err, "invalid sort: nope") != NULL, "%s", err);
    cJSON_Delete(v);
    ck_assert_int_eq(sync_client_query(c, "NoSuchDoc", NULL, &data, err,
                                       sizeof err),
                     CM_NOTFOUND);
    /* a 503 is retried, then succeeds */
    control(&f, "{\"op\":\"fault\",\"kind\":\"status\",\"code\":503,"
                "\"count\":2}");
    ck_assert_int_eq(sync_client_query(c, "Version", NULL, &data, err,
                                       sizeof err),
                     CM_OK);
    cJSON_Delete(data);
    sync_client_free(c);
    fake_stop(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync_run");
    TCase *tc = tcase_create("run");
    cm_json_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cm_log_setup(CM_LOG_WARN, CM_LOG_TEXT, 2);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, client_auth_and_validation);
    tcase_add_test(tc, full_sync_equals_generated_library);
    tcase_add_loop_test(tc, incremental_converges_to_full, 0, 2);
    tcase_add_loop_test(tc, updated_at_quirk, 0, 2);
    tcase_add_loop_test(tc, faults_fail_cleanly, 0,
                        (int)(sizeof FAULTS / sizeof FAULTS[0]));
    tcase_add_test(tc, zero_ids_guard);
    tcase_add_test(tc, readers_see_whole_pages);
    tcase_add_test(tc, sigkill_resume_converges);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
