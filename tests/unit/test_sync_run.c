/*
 * test_sync_run.c - sync_run() against the fake Stash over loopback.
 *
 * The fake (tests/fake-stash/server.mjs) is spawned with posix_spawn and
 * is ready when it prints its listening line.  Oracles: the generated
 * library itself (every scene record equals the NDJSON mapped and filled),
 * and a fresh full sync (an incremental sync after edits must converge to
 * it field by field; a failure lists the differing fields).  Kills are
 * SIGKILLs of the real binary ($PEEKD_BIN sync, exported by
 * tools/run_tests.sh), timed by the N-th progress line of its JSON log (N
 * from a seeded PRNG), each followed by `$PEEKD_BIN check`.
 */
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_config.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "index/idx.h"
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
    char *argv[] = {"node",     "tests/fake-stash/server.mjs",
                    "--port",   "0",
                    "--scenes", sc,
                    "--seed",   "1",
                    "--tz",     (char *)tz,
                    NULL};
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

/* POSTs a control op (it must answer 200); returns the parsed answer:
 * caller owns, free with cJSON_Delete(). */
static cJSON *control_json(const struct fake *f, const char *json)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h =
        curl_slist_append(NULL, "Content-Type: application/json");
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
    {
        cJSON *j = cJSON_ParseWithLength(b.data, b.len);
        ck_assert_msg(j != NULL, "control %s: not JSON", json);
        cm_buf_fini(&b);
        return j;
    }
}

static void control(const struct fake *f, const char *json)
{
    cJSON_Delete(control_json(f, json));
}

/* How many GraphQL requests of operation op the fake has answered. */
static uint64_t fake_requests(const struct fake *f, const char *op)
{
    cJSON *j = control_json(f, "{\"op\":\"stats\"}");
    const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(j, "requests");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(reqs, op);
    uint64_t v;
    ck_assert_msg(cJSON_IsObject(reqs), "stats: no requests object");
    v = cJSON_IsNumber(n) ? (uint64_t)n->valuedouble : 0;
    cJSON_Delete(j);
    return v;
}

/* OUT *all: GraphQL requests the fake has answered; returns how many of
 * them asked for gzip. */
static uint64_t fake_gzip_asked(const struct fake *f, uint64_t *all)
{
    cJSON *j = control_json(f, "{\"op\":\"stats\"}");
    const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(j, "requests");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "gzipAsked");
    const cJSON *n;
    uint64_t v;
    ck_assert_msg(cJSON_IsObject(reqs) && cJSON_IsNumber(g), "stats");
    *all = 0;
    cJSON_ArrayForEach (n, reqs)
        *all += (uint64_t)n->valuedouble;
    v = (uint64_t)g->valuedouble;
    cJSON_Delete(j);
    return v;
}

/* Requests of the sweep's and the reconciliation's documents so far. */
struct extra_reqs {
    uint64_t activity, ids;
};

static struct extra_reqs extra_reqs(const struct fake *f)
{
    static const char *const ids_docs[] = {"SyncTagIds",       "SyncStudioIds",
                                           "SyncPerformerIds", "SyncGroupIds",
                                           "SyncGalleryIds",   "SyncSceneIds"};
    struct extra_reqs r = {fake_requests(f, "SyncSceneActivity"), 0};
    for (size_t i = 0; i < sizeof ids_docs / sizeof ids_docs[0]; i++)
        r.ids += fake_requests(f, ids_docs[i]);
    return r;
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

/* The unix time sync recorded under key ("sweep_at", "reconcile_at") in
 * KV_DB_SYNC; 0 when absent. */
static int64_t meta_time(struct kv_store *s, const char *key)
{
    struct kv_txn *t;
    const void *v;
    size_t n;
    char buf[32];
    int64_t out = 0;
    enum cm_status st;
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    st = kv_get(t, KV_DB_SYNC, key, strlen(key), &v, &n);
    if (st == CM_OK) {
        char *end;
        ck_assert_uint_lt(n, sizeof buf);
        memcpy(buf, v, n);
        buf[n] = '\0';
        out = strtoll(buf, &end, 10);
        ck_assert_msg(*end == '\0' && out > 0, "%s = \"%s\"", key, buf);
    } else {
        ck_assert_int_eq(st, CM_NOTFOUND);
    }
    kv_read_end(t);
    return out;
}

struct meta_put {
    const char *key;
    int64_t v;
};

static enum cm_status meta_put_fn(struct kv_txn *t, void *ctx)
{
    const struct meta_put *m = ctx;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)m->v);
    return kv_put(t, KV_DB_SYNC, m->key, strlen(m->key), buf, (size_t)n);
}

/* Moves the recorded time of key `secs` seconds into the past (negative:
 * into the future), as if that much time had passed since. */
static void age_meta(struct kv_store *s, const char *key, int64_t secs)
{
    struct meta_put m = {key, meta_time(s, key) - secs};
    ck_assert_int_gt(m.v + secs, 0);
    ck_assert_int_eq(kv_write_run(s, meta_put_fn, &m), CM_OK);
}

/* The stored play_count of scene id, or -1 when the scene is absent. */
static int32_t play_count(struct kv_store *s, uint64_t id)
{
    struct kv_txn *t;
    struct kv_scene sc;
    uint32_t d;
    int32_t pc = -1;
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    if (kv_docid_of(t, id, &d) == CM_OK) {
        ck_assert_int_eq(kv_scene_get(t, d, &sc), CM_OK);
        pc = sc.play_count;
        kv_scene_fini(&sc);
    }
    kv_read_end(t);
    return pc;
}

static void set_flag(struct cm_config *cfg, const char *name, const char *v)
{
    char err[256];
    ck_assert_msg(cm_config_set(cfg, name, v, err, sizeof err) == CM_OK, "%s",
                  err);
}

/* ---- record dumps: which fields differ ---------------------------------- */

/* Appends one "name=value" line per field of a record to b, so that two
 * records can be compared line by line and a failure names the fields. */
static void dump_line(struct cm_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void dump_line(struct cm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)!cm_buf_vprintf(b, fmt, ap);
    va_end(ap);
    (void)!cm_buf_putc(b, '\n');
}

static void dump_str(struct cm_buf *b, const char *name, struct kv_str s)
{
    if (!s.p)
        dump_line(b, "%s=null", name);
    else
        dump_line(b, "%s=\"%.*s\"", name, (int)(s.len > 200 ? 200 : s.len),
                  s.p);
}

static void dump_ref(struct cm_buf *b, const char *what, uint32_t i,
                     const struct kv_ref *r)
{
    char n[64];
    dump_line(b, "%s[%u].id=%llu", what, i, (unsigned long long)r->id);
    snprintf(n, sizeof n, "%s[%u].name", what, i);
    dump_str(b, n, r->name);
    snprintf(n, sizeof n, "%s[%u].aux", what, i);
    dump_str(b, n, r->aux);
    dump_line(b,
              "%s[%u].rating100=%d index=%d gender=%u favorite=%d image=%d "
              "back_image=%d",
              what, i, r->rating100, r->index, r->gender, r->favorite,
              r->has_image, r->has_back_image);
}

static void dump_scene(struct cm_buf *b, const struct kv_scene *s)
{
    char n[64];
    dump_line(b, "id=%llu", (unsigned long long)s->id);
    dump_str(b, "title", s->title);
    dump_str(b, "code", s->code);
    dump_str(b, "details", s->details);
    dump_str(b, "director", s->director);
    dump_line(b, "date=%d-%u-%u", s->date.year, s->date.month, s->date.day);
    dump_line(b, "rating100=%d organized=%d interactive=%d speed=%d",
              s->rating100, s->organized, s->interactive, s->interactive_speed);
    dump_line(b,
              "o_counter=%d play_count=%d play_duration=%.17g "
              "resume_time=%.17g",
              s->o_counter, s->play_count, s->play_duration, s->resume_time);
    dump_str(b, "last_played_at", s->last_played_at);
    dump_str(b, "created_at", s->created_at);
    dump_str(b, "updated_at", s->updated_at);
    dump_str(b, "paths.screenshot", s->p_screenshot);
    dump_str(b, "paths.preview", s->p_preview);
    dump_str(b, "paths.webp", s->p_webp);
    dump_str(b, "paths.vtt", s->p_vtt);
    dump_str(b, "paths.sprite", s->p_sprite);
    dump_str(b, "paths.funscript", s->p_funscript);
    dump_str(b, "paths.caption", s->p_caption);
    dump_line(b,
              "n_urls=%u n_files=%u n_captions=%u n_stash_ids=%u "
              "n_markers=%u",
              s->n_urls, s->n_files, s->n_captions, s->n_stash_ids,
              s->n_markers);
    dump_line(b, "n_performers=%u n_tags=%u n_groups=%u n_galleries=%u",
              s->n_performers, s->n_tags, s->n_groups, s->n_galleries);
    for (uint32_t i = 0; i < s->n_urls; i++) {
        snprintf(n, sizeof n, "urls[%u]", i);
        dump_str(b, n, s->urls[i]);
    }
    for (uint32_t i = 0; i < s->n_files; i++) {
        const struct kv_file *f = &s->files[i];
        dump_line(b,
                  "files[%u].id=%llu size=%lld duration=%.17g "
                  "frame_rate=%.17g bit_rate=%lld %dx%d",
                  i, (unsigned long long)f->id, (long long)f->size, f->duration,
                  f->frame_rate, (long long)f->bit_rate, f->width, f->height);
#define FS(x)                                                                  \
    do {                                                                       \
        snprintf(n, sizeof n, "files[%u]." #x, i);                             \
        dump_str(b, n, f->x);                                                  \
    } while (0)
        FS(path);
        FS(basename);
        FS(format);
        FS(video_codec);
        FS(audio_codec);
        FS(mod_time);
        FS(oshash);
        FS(md5);
        FS(phash);
#undef FS
    }
    for (uint32_t i = 0; i < s->n_captions; i++) {
        snprintf(n, sizeof n, "captions[%u].language_code", i);
        dump_str(b, n, s->captions[i].language_code);
        snprintf(n, sizeof n, "captions[%u].caption_type", i);
        dump_str(b, n, s->captions[i].caption_type);
    }
    for (uint32_t i = 0; i < s->n_stash_ids; i++) {
        snprintf(n, sizeof n, "stash_ids[%u].endpoint", i);
        dump_str(b, n, s->stash_ids[i].endpoint);
        snprintf(n, sizeof n, "stash_ids[%u].stash_id", i);
        dump_str(b, n, s->stash_ids[i].stash_id);
    }
    for (uint32_t i = 0; i < s->n_markers; i++) {
        const struct kv_marker *m = &s->markers[i];
        dump_line(b,
                  "markers[%u].id=%llu seconds=%.17g end=%.17g "
                  "primary_tag=%llu",
                  i, (unsigned long long)m->id, m->seconds, m->end_seconds,
                  (unsigned long long)m->primary_tag_id);
        snprintf(n, sizeof n, "markers[%u].title", i);
        dump_str(b, n, m->title);
    }
    dump_ref(b, "studio", 0, &s->studio);
    for (uint32_t i = 0; i < s->n_performers; i++)
        dump_ref(b, "performers", i, &s->performers[i]);
    for (uint32_t i = 0; i < s->n_tags; i++)
        dump_ref(b, "tags", i, &s->tags[i]);
    for (uint32_t i = 0; i < s->n_groups; i++)
        dump_ref(b, "groups", i, &s->groups[i]);
    for (uint32_t i = 0; i < s->n_galleries; i++)
        dump_ref(b, "galleries", i, &s->galleries[i]);
}

static void dump_entity(struct cm_buf *b, const struct kv_entity *e)
{
    char n[64];
    dump_line(b, "type=%c id=%llu", e->type, (unsigned long long)e->id);
    dump_str(b, "name", e->name);
    dump_str(b, "sort_name", e->sort_name);
    dump_str(b, "disambiguation", e->disambiguation);
    dump_str(b, "description", e->description);
    dump_str(b, "image", e->image);
    dump_str(b, "back_image", e->back_image);
    dump_str(b, "birthdate", e->birthdate);
    dump_str(b, "country", e->country);
    dump_str(b, "director", e->director);
    dump_line(b, "date=%d-%u-%u", e->date.year, e->date.month, e->date.day);
    dump_str(b, "created_at", e->created_at);
    dump_str(b, "updated_at", e->updated_at);
    dump_line(b,
              "gender=%u favorite=%d rating100=%d duration=%d "
              "image_count=%d studio_id=%llu",
              e->gender, e->favorite, e->rating100, e->duration, e->image_count,
              (unsigned long long)e->studio_id);
    dump_line(b, "n_aliases=%u n_parents=%u n_tags=%u", e->n_aliases,
              e->n_parents, e->n_tags);
    for (uint32_t i = 0; i < e->n_aliases; i++) {
        snprintf(n, sizeof n, "aliases[%u]", i);
        dump_str(b, n, e->aliases[i]);
    }
    for (uint32_t i = 0; i < e->n_parents; i++)
        dump_line(b, "parents[%u]=%llu", i, (unsigned long long)e->parents[i]);
    for (uint32_t i = 0; i < e->n_tags; i++)
        dump_line(b, "tags[%u]=%llu", i, (unsigned long long)e->tags[i]);
}

/* The lines of dump a that differ from dump b, as "field: A | B" (at most
 * 12), into out (NUL-terminated, truncated to n). */
static void diff_dumps(const struct cm_buf *a, const struct cm_buf *b,
                       char *out, size_t n)
{
    const char *pa = a->data ? a->data : "", *pb = b->data ? b->data : "";
    size_t used = 0;
    int shown = 0;
    out[0] = '\0';
    while ((*pa || *pb) && shown < 12 && used + 1 < n) {
        size_t la = strcspn(pa, "\n"), lb = strcspn(pb, "\n");
        if (la != lb || memcmp(pa, pb, la) != 0) {
            int w = snprintf(out + used, n - used, "\n    %.*s  |  %.*s",
                             (int)la, pa, (int)lb, pb);
            if (w < 0)
                break;
            used += (size_t)w < n - used ? (size_t)w : n - used - 1;
            shown++;
        }
        pa += la + (pa[la] == '\n');
        pb += lb + (pb[lb] == '\n');
    }
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
    ck_assert_int_eq(
        mdb_cursor_open(kv_txn_mdb(ta), kv_dbi(a, KV_DB_DOCMAP), &cur), 0);
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
        if (!kv_scene_equal(&sa, &sb)) {
            struct cm_buf da_, db_;
            char d[4096];
            cm_buf_init(&da_, CM_MAX_RECORD * 4);
            cm_buf_init(&db_, CM_MAX_RECORD * 4);
            dump_scene(&da_, &sa);
            dump_scene(&db_, &sb);
            diff_dumps(&da_, &db_, d, sizeof d);
            ck_abort_msg("scene %llu differs (first store | second store):%s",
                         (unsigned long long)sid,
                         d[0] ? d : " (no dumped field differs)");
        }
        kv_scene_fini(&sa);
        kv_scene_fini(&sb);
    }
    mdb_cursor_close(cur);
    ck_assert_int_eq(
        mdb_cursor_open(kv_txn_mdb(ta), kv_dbi(a, KV_DB_ENTITIES), &cur), 0);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const void *bv;
        size_t bl;
        struct kv_entity ea, eb;
        ents_a++;
        if (kv_get(tb, KV_DB_ENTITIES, k.mv_data, k.mv_size, &bv, &bl) !=
            CM_OK) {
            const uint8_t *kp = k.mv_data;
            uint64_t id = 0;
            for (size_t i = 1; i < k.mv_size && i <= 8; i++)
                id = id << 8 | kp[i];
            ck_abort_msg("entity %c%llu missing from the second store", kp[0],
                         (unsigned long long)id);
        }
        ck_assert_int_eq(kv_entity_decode(v.mv_data, v.mv_size, &ea), CM_OK);
        ck_assert_int_eq(kv_entity_decode(bv, bl, &eb), CM_OK);
        if (!kv_entity_equal(&ea, &eb)) {
            struct cm_buf da_, db_;
            char d[4096];
            cm_buf_init(&da_, CM_MAX_RECORD * 4);
            cm_buf_init(&db_, CM_MAX_RECORD * 4);
            dump_entity(&da_, &ea);
            dump_entity(&db_, &eb);
            diff_dumps(&da_, &db_, d, sizeof d);
            ck_abort_msg("entity %c%llu differs (first store | second "
                         "store):%s",
                         ea.type, (unsigned long long)ea.id,
                         d[0] ? d : " (no dumped field differs)");
        }
        kv_entity_fini(&ea);
        kv_entity_fini(&eb);
    }
    mdb_cursor_close(cur);
    ck_assert_int_eq(
        mdb_cursor_open(kv_txn_mdb(tb), kv_dbi(b, KV_DB_ENTITIES), &cur), 0);
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

/* Loop: --sync-gzip auto (the fake is on loopback: plain bodies after the
 * first answer), on (every body gzip). */
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
    uint64_t asked, all;

    fake_start(&f, 5000, "Z");
    cfg_for(&cfg, &f, 1000, 1);
    ck_assert_int_eq(
        cm_config_set(&cfg, "sync-gzip", _i ? "on" : "auto", err, sizeof err),
        CM_OK);
    s = open_store(tu_tmpdir());
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st); /* fresh store: full */
    asked = fake_gzip_asked(&f, &all);
    ck_assert_uint_gt(all, 10);
    ck_assert_uint_eq(asked, _i ? all : 1);
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
        struct sync_json *o = NULL;
        struct kv_scene want, got;
        uint32_t docid;
        ck_assert_int_eq(sync_json_parse(l, strlen(l), &o, err, sizeof err),
                         CM_OK);
        ck_assert_int_eq(sync_map_scene(sj_root(o), &a, &want, err, sizeof err),
                         CM_OK);
        ck_assert_int_eq(sync_fill_refs(t, &want, &a, NULL, NULL), CM_OK);
        ck_assert_int_eq(kv_docid_of(t, want.id, &docid), CM_OK);
        ck_assert_int_eq(kv_scene_get(t, docid, &got), CM_OK);
        ck_assert_msg(kv_scene_equal(&want, &got), "scene %llu",
                      (unsigned long long)want.id);
        kv_scene_fini(&got);
        sync_json_free(o);
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
    /* the full sync just swept and reconciled: force both (their
     * schedule is sweep_and_reconcile_schedule's subject) */
    set_flag(&cfg, "sweep", "1");
    set_flag(&cfg, "reconcile", "1");
    sync_ok(a, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert_int_eq(st.sweep, SYNC_EXTRA_DONE);
    ck_assert_int_eq(st.reconcile, SYNC_EXTRA_DONE);
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

/* A new image (its URL's ?t= changes, nothing else) updates the entity
 * record and rewrites no scene: records embed only an image's presence. */
START_TEST(new_image_rewrites_no_scene)
{
    struct fake f;
    struct cm_config cfg;
    struct kv_store *a, *b;
    struct sync_stats st;

    fake_start(&f, 1200, NULL);
    cfg_for(&cfg, &f, 500, 1);
    a = open_store(tu_tmpdir());
    sync_ok(a, &cfg, SYNC_FULL, &st);
    control(&f, "{\"op\":\"setClock\",\"now\":\"2026-01-05T10:00:00Z\"}");
    control(&f, "{\"op\":\"newImage\",\"kind\":\"performer\",\"id\":\"2\"}");
    control(&f, "{\"op\":\"newImage\",\"kind\":\"tag\",\"id\":\"3\"}");
    control(&f, "{\"op\":\"newImage\",\"kind\":\"studio\",\"id\":\"1\"}");
    sync_ok(a, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert_uint_eq(st.written[SYNC_PERFORMERS], 1);
    ck_assert_uint_eq(st.written[SYNC_TAGS], 1);
    ck_assert_uint_eq(st.written[SYNC_STUDIOS], 1);
    ck_assert_uint_eq(st.rewritten, 0);
    b = open_store(tu_tmpdir());
    sync_ok(b, &cfg, SYNC_FULL, &st);
    compare_stores(a, b);
    compare_stores(b, a);
    kv_close(a);
    kv_close(b);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

/* a equals, record by record, a fresh full sync of the fake. */
static void equals_fresh_full(struct kv_store *a, const struct cm_config *cfg)
{
    struct kv_store *b = open_store(tu_tmpdir());
    struct sync_stats st;
    sync_ok(b, cfg, SYNC_FULL, &st);
    compare_stores(a, b);
    compare_stores(b, a);
    kv_close(b);
}

/* One incremental sync; asserts what it did about the sweep and the
 * reconciliation and, through the fake's request counts, that it fetched
 * activity rows / id lists exactly when it says it ran them. */
static void sync_extras(struct kv_store *s, const struct cm_config *cfg,
                        const struct fake *f, enum sync_extra sweep,
                        enum sync_extra rec)
{
    struct sync_stats st;
    struct extra_reqs before = extra_reqs(f), after;
    sync_ok(s, cfg, SYNC_INCREMENTAL, &st);
    after = extra_reqs(f);
    ck_assert_msg(st.sweep == sweep, "sweep: %s, expected %s",
                  sync_extra_name(st.sweep), sync_extra_name(sweep));
    ck_assert_msg(st.reconcile == rec, "reconciliation: %s, expected %s",
                  sync_extra_name(st.reconcile), sync_extra_name(rec));
    if (sweep == SYNC_EXTRA_DONE)
        ck_assert_uint_gt(after.activity, before.activity);
    else
        ck_assert_uint_eq(after.activity, before.activity);
    if (rec == SYNC_EXTRA_DONE)
        ck_assert_uint_ge(after.ids, before.ids + 6); /* every type */
    else
        ck_assert_uint_eq(after.ids, before.ids);
    ck_assert_int_eq(st.last_sweep, meta_time(s, "sweep_at"));
    ck_assert_int_eq(st.last_reconcile, meta_time(s, "reconcile_at"));
}

START_TEST(sweep_and_reconcile_schedule)
{
    /* issue #4 item 7: a plain incremental pass is only the updated_at
     * walks; the activity sweep and the id reconciliation run when their
     * interval has passed since the time recorded in the store, or when
     * forced.  "Time passes" by moving the recorded time back. */
    struct fake f;
    struct cm_config cfg;
    struct kv_store *a;
    struct sync_stats st;
    int64_t t0, t1, sw, rc;

    fake_start(&f, 1200, "Z");
    cfg_for(&cfg, &f, 300, 1);
    a = open_store(tu_tmpdir());
    t0 = (int64_t)time(NULL);
    sync_ok(a, &cfg, SYNC_FULL, &st);
    t1 = (int64_t)time(NULL);
    ck_assert_int_eq(st.sweep, SYNC_EXTRA_FULL);
    ck_assert_int_eq(st.reconcile, SYNC_EXTRA_DONE);
    sw = meta_time(a, "sweep_at");
    rc = meta_time(a, "reconcile_at");
    ck_assert_int_ge(sw, t0); /* the full sync's start */
    ck_assert_int_le(sw, t1);
    ck_assert_int_ge(rc, sw);
    ck_assert_int_le(rc, t1);

    /* (a) not due (default 1h each): a play count that does not bump
     * updated_at stays unseen, and no activity row or id is fetched */
    control(&f, "{\"op\":\"setClock\",\"now\":\"2026-01-05T10:00:00Z\"}");
    control(&f, "{\"op\":\"setActivity\",\"id\":\"18\",\"play_count\":42,"
                "\"o_counter\":7,\"resume_time\":12.5}");
    control(&f, "{\"op\":\"editScene\",\"id\":\"30\",\"title\":\"Seen\"}");
    sync_extras(a, &cfg, &f, SYNC_EXTRA_NOT_DUE, SYNC_EXTRA_NOT_DUE);
    ck_assert_int_ne(play_count(a, 18), 42);
    ck_assert_int_eq(meta_time(a, "sweep_at"), sw);
    ck_assert_int_eq(meta_time(a, "reconcile_at"), rc);

    /* (b) forced: the sweep sees it; the store equals a fresh full sync */
    set_flag(&cfg, "sweep", "1");
    sync_extras(a, &cfg, &f, SYNC_EXTRA_DONE, SYNC_EXTRA_NOT_DUE);
    set_flag(&cfg, "sweep", "0");
    ck_assert_int_eq(play_count(a, 18), 42);
    ck_assert_int_ge(meta_time(a, "sweep_at"), t1);
    ck_assert_int_eq(meta_time(a, "reconcile_at"), rc);
    equals_fresh_full(a, &cfg);
    /* ... and due: 59 min after the sweep not yet, 61 min after it is */
    control(&f, "{\"op\":\"setActivity\",\"id\":\"19\",\"play_count\":9}");
    age_meta(a, "sweep_at", 59 * 60);
    sync_extras(a, &cfg, &f, SYNC_EXTRA_NOT_DUE, SYNC_EXTRA_NOT_DUE);
    ck_assert_int_ne(play_count(a, 19), 9);
    age_meta(a, "sweep_at", 2 * 60);
    t0 = (int64_t)time(NULL);
    sync_extras(a, &cfg, &f, SYNC_EXTRA_DONE, SYNC_EXTRA_NOT_DUE);
    ck_assert_int_eq(play_count(a, 19), 9);
    ck_assert_int_ge(meta_time(a, "sweep_at"), t0);
    equals_fresh_full(a, &cfg);

    /* (c) deletions wait for the reconciliation: not due, not removed */
    control(&f, "{\"op\":\"deleteScene\",\"id\":\"20\"}");
    control(&f, "{\"op\":\"deletePerformer\",\"id\":\"3\"}");
    sync_extras(a, &cfg, &f, SYNC_EXTRA_NOT_DUE, SYNC_EXTRA_NOT_DUE);
    ck_assert_int_ne(play_count(a, 20), -1);
    ck_assert_uint_eq(scene_count(a), 1200);
    age_meta(a, "reconcile_at", 3600);
    t0 = (int64_t)time(NULL);
    sync_extras(a, &cfg, &f, SYNC_EXTRA_NOT_DUE, SYNC_EXTRA_DONE);
    ck_assert_int_eq(play_count(a, 20), -1);
    ck_assert_uint_eq(scene_count(a), 1199);
    ck_assert_int_ge(meta_time(a, "reconcile_at"), t0);
    equals_fresh_full(a, &cfg);
    /* forced reconciliation, and a recorded time in the future (the
     * clock went back) counts as due rather than postponing it */
    set_flag(&cfg, "reconcile", "1");
    sync_extras(a, &cfg, &f, SYNC_EXTRA_NOT_DUE, SYNC_EXTRA_DONE);
    set_flag(&cfg, "reconcile", "0");
    age_meta(a, "reconcile_at", -86400);
    sync_extras(a, &cfg, &f, SYNC_EXTRA_NOT_DUE, SYNC_EXTRA_DONE);

    /* 0/off: never by schedule, only when forced */
    set_flag(&cfg, "sweep-interval", "off");
    set_flag(&cfg, "reconcile-interval", "0");
    age_meta(a, "sweep_at", 400 * 86400);
    age_meta(a, "reconcile_at", 400 * 86400);
    control(&f, "{\"op\":\"setActivity\",\"id\":\"21\",\"play_count\":5}");
    sync_extras(a, &cfg, &f, SYNC_EXTRA_OFF, SYNC_EXTRA_OFF);
    ck_assert_int_ne(play_count(a, 21), 5);
    set_flag(&cfg, "sweep", "1");
    sync_extras(a, &cfg, &f, SYNC_EXTRA_DONE, SYNC_EXTRA_OFF);
    ck_assert_int_eq(play_count(a, 21), 5);
    kv_close(a);
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
    ck_assert_ptr_nonnull(
        memchr(sc.updated_at.p, _i ? '-' : 'Z', sc.updated_at.len));
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
    {"{\"op\":\"fault\",\"kind\":\"errors\",\"count\":50}", "fault injected"},
    {"{\"op\":\"fault\",\"kind\":\"badgzip\",\"count\":50}",
     "/graphql was not valid gzip"},
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
    compare_stores(ref, s);
    {
        struct cm_buf rep;
        enum cm_status v;
        cm_buf_init(&rep, 64 * 1024);
        v = idx_verify(s, &rep); /* and consistent, as `peekd check` sees it */
        ck_assert_msg(v == CM_OK, "idx_verify after the fault: %s\n%s",
                      cm_status_str(v), rep.data ? rep.data : "");
        cm_buf_fini(&rep);
    }
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
    int64_t rc;

    fake_start(&f, 60, "Z");
    cfg_for(&cfg, &f, 25, 1);
    s = open_store(tu_tmpdir());
    sync_ok(s, &cfg, SYNC_FULL, &st);
    ck_assert_uint_eq(scene_count(s), 60);
    rc = meta_time(s, "reconcile_at");
    for (int i = 1; i <= 60; i++) {
        snprintf(op, sizeof op, "{\"op\":\"deleteScene\",\"id\":\"%d\"}", i);
        control(&f, op);
    }
    set_flag(&cfg, "reconcile", "1");
    sync_ok(s, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert(st.deletes_skipped);
    ck_assert_uint_eq(st.deleted[SYNC_SCENES], 0);
    ck_assert_uint_eq(scene_count(s), 60);
    /* a guarded reconciliation is not recorded (its schedule counts from
     * the last one that completed) */
    ck_assert_int_eq(st.reconcile, SYNC_EXTRA_GUARDED);
    ck_assert_int_eq(meta_time(s, "reconcile_at"), rc);
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
    char e2[256];

    fake_start(&f, 2050, "Z");
    cfg_for(&cfg, &f, 250, 1);
    /* commit units of two pages: a reader sees whole units */
    ck_assert_int_eq(cm_config_set(&cfg, "sync-commit", "500", e2, sizeof e2),
                     CM_OK);
    rd.s = open_store(tu_tmpdir());
    rd.page = 500;
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

/* ---- deferred indexes of a first full sync ------------------------- */

/* What a reader sees in one read transaction: the scene records and the
 * number of scenes the indexes answer for (an unfiltered query). */
static void observe(struct kv_store *s, uint64_t *records, uint64_t *indexed,
                    bool *deferred)
{
    struct kv_txn *t;
    struct idx_query *q = NULL;
    struct idx_error qe;
    struct idx_result res;
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(kv_scene_count(t, records), CM_OK);
    ck_assert_int_eq(kv_index_deferred(t, deferred), CM_OK);
    ck_assert_int_eq(idx_query_parse(NULL, NULL, 40, &q, &qe), CM_OK);
    memset(&res, 0, sizeof res);
    ck_assert_int_eq(idx_query_run(t, q, &res), CM_OK);
    *indexed = res.count;
    idx_result_fini(&res);
    idx_query_free(q);
    kv_read_end(t);
}

struct dreader {
    struct kv_store *s;
    struct sync_status *status; /* stop it once this many records exist */
    uint64_t stop_at, total;
    volatile int stop;
    /* results */
    uint64_t samples, mixed, stopped_at;
    bool saw_deferred_gap; /* records stored, indexes still at 0 */
};

static void *dreader_main(void *arg)
{
    struct dreader *r = arg;
    while (!r->stop) {
        uint64_t rec, idx;
        bool def;
        observe(r->s, &rec, &idx, &def);
        r->samples++;
        /* the indexes answer for the library before the sync or after */
        if (idx != 0 && idx != r->total)
            r->mixed++;
        if (def && rec > 0 && idx == 0)
            r->saw_deferred_gap = true;
        if (r->status && !r->stopped_at && rec >= r->stop_at) {
            r->stopped_at = rec;
            atomic_store(&r->status->stop, 1);
        }
    }
    return NULL;
}

static void verify_clean(struct kv_store *s, const char *when)
{
    struct cm_buf rep;
    enum cm_status v;
    cm_buf_init(&rep, 64 * 1024);
    v = idx_verify(s, &rep);
    ck_assert_msg(v == CM_OK, "idx_verify %s: %s\n%s", when, cm_status_str(v),
                  rep.data ? rep.data : "");
    cm_buf_fini(&rep);
}

START_TEST(first_sync_defers_indexes)
{
    /* A full sync into an empty store writes records only and builds the
     * indexes in one transaction at the end: stopped half way, the store
     * is deferred (records verified, indexes still empty); resumed, it
     * builds them, and the result equals an ordinary store field by field
     * and passes idx_verify (which rebuilds the expected indexes and the
     * reverse index from the records). */
    struct fake f;
    struct cm_config cfg;
    struct sync_status status;
    struct dreader rd;
    struct sync_stats st;
    struct kv_store *ref;
    pthread_t th;
    char err[512] = "", e2[256];
    uint64_t rec, idx;
    bool def;
    enum cm_status rc;

    fake_start(&f, 2050, "Z");
    cfg_for(&cfg, &f, 250, 1);
    ck_assert_int_eq(cm_config_set(&cfg, "sync-commit", "250", e2, sizeof e2),
                     CM_OK);
    ck_assert_int_eq(sync_status_init(&status), CM_OK);
    memset(&rd, 0, sizeof rd);
    rd.s = open_store(tu_tmpdir());
    rd.status = &status;
    rd.stop_at = 500;
    rd.total = 2050;
    ck_assert_int_eq(pthread_create(&th, NULL, dreader_main, &rd), 0);
    rc = sync_run(rd.s, &cfg, SYNC_FULL, &status, &st, err, sizeof err);
    rd.stop = 1;
    pthread_join(th, NULL);
    ck_assert_msg(rc == CM_ABORTED, "stopped sync: %s (%s)", err,
                  cm_status_str(rc));
    ck_assert_uint_ge(rd.stopped_at, 500);
    ck_assert(rd.saw_deferred_gap);
    observe(rd.s, &rec, &idx, &def);
    ck_assert(def);
    ck_assert_uint_ge(rec, 500);
    ck_assert_uint_lt(rec, 2050);
    ck_assert_uint_eq(idx, 0);
    ck_assert_uint_eq(st.indexed, 0);
    verify_clean(rd.s, "of a stopped first sync"); /* records only */

    /* resumed: the walk goes on deferred and the end builds everything */
    atomic_store(&status.stop, 0);
    rd.status = NULL;
    rd.stop = 0;
    ck_assert_int_eq(pthread_create(&th, NULL, dreader_main, &rd), 0);
    sync_ok(rd.s, &cfg, SYNC_INCREMENTAL, &st);
    rd.stop = 1;
    pthread_join(th, NULL);
    ck_assert(st.resumed);
    ck_assert_uint_eq(st.indexed, 2050);
    ck_assert_uint_eq(rd.mixed, 0);
    ck_assert_uint_gt(rd.samples, 0);
    observe(rd.s, &rec, &idx, &def);
    ck_assert(!def);
    ck_assert_uint_eq(rec, 2050);
    ck_assert_uint_eq(idx, 2050);
    verify_clean(rd.s, "after the deferred first sync");

    /* an ordinary store: the same library synced page by page (not
     * empty at the start: one scene stored first, so nothing defers) */
    ref = open_store(tu_tmpdir());
    {
        struct kv_txn *t;
        struct idx_writer *w;
        struct kv_scene one;
        memset(&one, 0, sizeof one);
        one.id = 999999;
        ck_assert_int_eq(kv_write_begin(ref, &t), CM_OK);
        ck_assert_int_eq(idx_writer_begin(t, &w), CM_OK);
        ck_assert_int_eq(idx_scene_put(w, &one, NULL), CM_OK);
        ck_assert_int_eq(idx_writer_finish(w), CM_OK);
        ck_assert_int_eq(kv_commit(t), CM_OK);
    }
    sync_ok(ref, &cfg, SYNC_FULL, &st); /* reconciliation drops 999999 */
    ck_assert_uint_eq(st.indexed, 0);
    compare_stores(rd.s, ref);
    compare_stores(ref, rd.s);
    verify_clean(ref, "of the ordinary store");

    /* deferred without a scene walk to resume (e.g. a killed build): the
     * next sync of any kind builds first */
    {
        struct kv_txn *t;
        ck_assert_int_eq(kv_write_begin(rd.s, &t), CM_OK);
        ck_assert_int_eq(kv_index_defer(t, true), CM_OK);
        ck_assert_int_eq(kv_commit(t), CM_OK);
    }
    sync_ok(rd.s, &cfg, SYNC_INCREMENTAL, &st);
    ck_assert_uint_eq(st.indexed, 2050);
    observe(rd.s, &rec, &idx, &def);
    ck_assert(!def);
    verify_clean(rd.s, "after a build before an incremental sync");

    kv_close(rd.s);
    kv_close(ref);
    sync_status_fini(&status);
    cm_config_fini(&cfg);
    fake_stop(&f);
}
END_TEST

/* ---- the real binary: peekd sync killed at random moments --------- */

static const char *peekd_bin(void)
{
    const char *b = getenv("PEEKD_BIN");
    ck_assert_msg(b && b[0] && access(b, X_OK) == 0,
                  "PEEKD_BIN must name an executable peekd (tools/run_tests.sh "
                  "exports it; by hand: PEEKD_BIN=$PWD/build/release/peekd "
                  "build/release/tests/test_sync_run); got \"%s\"",
                  b ? b : "(unset)");
    return b;
}

/* Is line a JSON log line of a sync progress report? */
static bool is_progress(const char *line)
{
    cJSON *j = cJSON_Parse(line);
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(j, "mod");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
    bool yes = cJSON_IsString(mod) && strcmp(mod->valuestring, "sync") == 0 &&
               cJSON_IsString(msg) &&
               strncmp(msg->valuestring, "progress ", 9) == 0;
    ck_assert_msg(j != NULL, "peekd wrote a log line that is not JSON: %s",
                  line);
    cJSON_Delete(j);
    return yes;
}

/* Spawns PEEKD_BIN with argv (argv[0] is replaced), stdout to /dev/null
 * and stderr to a pipe whose read end is returned in *rd. */
static pid_t spawn_peekd(char **argv, FILE **rd)
{
    int p[2];
    pid_t pid;
    posix_spawn_file_actions_t fa;
    argv[0] = (char *)peekd_bin();
    ck_assert_int_eq(pipe(p), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    posix_spawn_file_actions_addclose(&fa, p[1]);
    ck_assert_int_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    *rd = fdopen(p[0], "r");
    ck_assert_ptr_nonnull(*rd);
    return pid;
}

/* Runs `peekd sync --data dir --stash-url URL --page-size 200
 * --sync-commit 600 --log-format json [--full | extra...]` and reads its
 * log (extra: NULL-terminated flags of an incremental run, or NULL).
 * kill_at > 0: SIGKILL it right after its kill_at-th progress line (one
 * per page applied; a full sync commits every 3 pages; the child runs on
 * while we read, so the kill lands anywhere, mid-transaction included). Returns
 * 1 when SIGKILL ended it; a run that ends by itself must exit 0.  OUT *lines
 * (may be NULL): progress lines read. */
static int peekd_sync_args(const char *dir, const struct fake *f, bool full,
                           const char *const *extra, int kill_at, int *lines)
{
    char *argv[] = {NULL,
                    "sync",
                    "--data",
                    (char *)dir,
                    "--stash-url",
                    (char *)f->url,
                    "--page-size",
                    "200",
                    "--log-format",
                    "json",
                    "--sync-retries",
                    "1",
                    "--map-size",
                    "256M",
                    "--sync-commit",
                    "600",
                    full ? "--full" : NULL,
                    NULL,
                    NULL,
                    NULL};
    char line[8192], last[512] = "";
    FILE *rd;
    int n = 0, status;
    pid_t pid;
    bool killed = false;

    for (int i = 0; !full && extra && extra[i]; i++) {
        ck_assert_int_lt(i, 3);
        argv[16 + i] = (char *)extra[i];
    }
    pid = spawn_peekd(argv, &rd);

    while (fgets(line, sizeof line, rd)) {
        if (is_progress(line)) {
            if (++n == kill_at) {
                ck_assert_int_eq(kill(pid, SIGKILL), 0);
                killed = true;
                break;
            }
        } else {
            snprintf(last, sizeof last, "%.*s", (int)(sizeof last - 1), line);
        }
    }
    fclose(rd);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (lines)
        *lines = n;
    if (killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return 1;
    /* it finished before the kill (or ran uninterrupted): it must succeed */
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "peekd sync %s failed (status 0x%x): %s",
                  full ? "--full" : "", status, last);
    return 0;
}

/* The kill tests force the activity sweep and the reconciliation in their
 * incremental runs: they check convergence with a full sync, which needs
 * both (their schedule is tested by sweep_and_reconcile_schedule and
 * schedule_persists_across_runs). */
static const char *const FORCE_EXTRAS[] = {"--sweep", "--reconcile", NULL};

static int peekd_sync(const char *dir, const struct fake *f, bool full,
                      int kill_at, int *lines)
{
    return peekd_sync_args(dir, f, full, FORCE_EXTRAS, kill_at, lines);
}

/* `peekd check --data dir` must exit 0. */
static void peekd_check(const char *dir, const char *when)
{
    char *argv[] = {NULL, "check", "--data", (char *)dir, NULL};
    char out[4096];
    size_t len = 0, r;
    FILE *rd;
    int status;
    pid_t pid;

    /* check prints its report on stdout: send both to the pipe */
    {
        int p[2];
        posix_spawn_file_actions_t fa;
        argv[0] = (char *)peekd_bin();
        ck_assert_int_eq(pipe(p), 0);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        posix_spawn_file_actions_adddup2(&fa, p[1], 2);
        posix_spawn_file_actions_addclose(&fa, p[0]);
        posix_spawn_file_actions_addclose(&fa, p[1]);
        ck_assert_int_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ),
                         0);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        rd = fdopen(p[0], "r");
        ck_assert_ptr_nonnull(rd);
    }
    while ((r = fread(out + len, 1, sizeof out - 1 - len, rd)) > 0)
        len += r;
    out[len] = '\0';
    {
        char drain[512]; /* a report longer than out: keep the pipe open */
        while (fread(drain, 1, sizeof drain, rd) > 0)
            ;
    }
    fclose(rd);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "peekd check after %s: status 0x%x:\n%s", when, status, out);
}

static unsigned next_rand(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

/* Kills `peekd sync` (full or incremental) at seeded random progress lines
 * until `want` kills happened, running `peekd check` after each.  Returns
 * the kills. */
static int kill_runs(const char *dir, const struct fake *f, bool full, int want,
                     int max_line, unsigned *seed)
{
    int kills = 0;
    char when[128];
    for (int attempt = 0; kills < want; attempt++) {
        int n = 1 + (int)(next_rand(seed) % (unsigned)max_line);
        ck_assert_msg(attempt < want * 4,
                      "only %d of %d runs were killed (the sync ended first)",
                      kills, want);
        kills += peekd_sync(dir, f, full, n, NULL);
        snprintf(when, sizeof when, "%s run %d killed at progress line %d",
                 full ? "full" : "incremental", attempt, n);
        peekd_check(dir, when);
    }
    return kills;
}

START_TEST(sigkill_resume_converges)
{
    /* The "a sync killed with SIGKILL at random moments leaves a
     * store that passes `peekd check` and converges": the real binary,
     * killed 24 times at moments drawn from a seeded PRNG (printed with
     * any failure), `peekd check` after every kill, then a rerun to
     * completion compared record by record with uninterrupted syncs. */
    struct fake f;
    struct kv_store *k, *u;
    const char *kdir = tu_tmpdir(), *udir = tu_tmpdir(), *u2dir;
    unsigned seed = 12345;
    int kills = 0, full_lines, incr_lines;

    fake_start(&f, 3000, "-08:00");
    /* the uninterrupted reference, and how many lines a full run prints */
    ck_assert_int_eq(peekd_sync(udir, &f, true, 0, &full_lines), 0);
    ck_assert_int_ge(full_lines, 20);
    peekd_check(udir, "an uninterrupted full sync");
    kills += kill_runs(kdir, &f, true, 14, full_lines, &seed);
    ck_assert_int_eq(peekd_sync(kdir, &f, true, 0, NULL), 0);
    peekd_check(kdir, "the rerun of the full sync");
    k = open_store(kdir);
    u = open_store(udir);
    compare_stores(k, u);
    compare_stores(u, k);
    kv_close(k);
    kv_close(u);

    /* incremental syncs after edits, killed 10 more times */
    edits(&f);
    ck_assert_int_eq(peekd_sync(udir, &f, false, 0, &incr_lines), 0);
    ck_assert_int_ge(incr_lines, 10);
    kills += kill_runs(kdir, &f, false, 10, incr_lines, &seed);
    ck_assert_int_eq(peekd_sync(kdir, &f, false, 0, NULL), 0);
    peekd_check(kdir, "the rerun of the incremental sync");
    u2dir = tu_tmpdir();
    ck_assert_int_eq(peekd_sync(u2dir, &f, true, 0, NULL), 0);
    k = open_store(kdir);
    u = open_store(u2dir);
    compare_stores(k, u);
    compare_stores(u, k);
    kv_close(u);
    u = open_store(udir); /* the uninterrupted incremental agrees too */
    compare_stores(k, u);
    compare_stores(u, k);
    ck_assert_int_ge(kills, 24);
    kv_close(k);
    kv_close(u);
    fake_stop(&f);
}
END_TEST

START_TEST(schedule_persists_across_runs)
{
    /* The schedule lives in the store: separate `peekd sync` processes
     * (each a fresh start, defaults: 1h each) honour the times the
     * previous one recorded. */
    struct fake f;
    struct kv_store *s;
    const char *dir = tu_tmpdir();
    const char *const plain[] = {NULL};
    struct extra_reqs r0, r1;
    int64_t t0, t1, sw, rc;

    fake_start(&f, 900, "Z");
    t0 = (int64_t)time(NULL);
    ck_assert_int_eq(peekd_sync_args(dir, &f, true, NULL, 0, NULL), 0);
    t1 = (int64_t)time(NULL);
    s = open_store(dir);
    sw = meta_time(s, "sweep_at");
    rc = meta_time(s, "reconcile_at");
    ck_assert(sw >= t0 && sw <= t1 && rc >= t0 && rc <= t1);
    kv_close(s);

    control(&f, "{\"op\":\"setActivity\",\"id\":\"18\",\"play_count\":42}");
    control(&f, "{\"op\":\"deleteScene\",\"id\":\"20\"}");
    r0 = extra_reqs(&f);
    ck_assert_int_eq(peekd_sync_args(dir, &f, false, plain, 0, NULL), 0);
    r1 = extra_reqs(&f);
    ck_assert_uint_eq(r1.activity, r0.activity); /* not due */
    ck_assert_uint_eq(r1.ids, r0.ids);
    s = open_store(dir);
    ck_assert_int_ne(play_count(s, 18), 42);
    ck_assert_int_ne(play_count(s, 20), -1);
    ck_assert_int_eq(meta_time(s, "sweep_at"), sw);
    ck_assert_int_eq(meta_time(s, "reconcile_at"), rc);
    /* an hour passes */
    age_meta(s, "sweep_at", 3601);
    age_meta(s, "reconcile_at", 3601);
    kv_close(s);

    t0 = (int64_t)time(NULL);
    ck_assert_int_eq(peekd_sync_args(dir, &f, false, plain, 0, NULL), 0);
    r0 = extra_reqs(&f);
    ck_assert_uint_gt(r0.activity, r1.activity); /* due */
    ck_assert_uint_gt(r0.ids, r1.ids);
    s = open_store(dir);
    ck_assert_int_eq(play_count(s, 18), 42);
    ck_assert_int_eq(play_count(s, 20), -1);
    sw = meta_time(s, "sweep_at");
    rc = meta_time(s, "reconcile_at");
    ck_assert(sw >= t0 && rc >= t0);
    kv_close(s);

    /* the next process sees what that one recorded: not due again */
    ck_assert_int_eq(peekd_sync_args(dir, &f, false, plain, 0, NULL), 0);
    r1 = extra_reqs(&f);
    ck_assert_uint_eq(r1.activity, r0.activity);
    ck_assert_uint_eq(r1.ids, r0.ids);
    s = open_store(dir);
    ck_assert_int_eq(meta_time(s, "sweep_at"), sw);
    ck_assert_int_eq(meta_time(s, "reconcile_at"), rc);
    kv_close(s);
    peekd_check(dir, "the scheduled runs");
    fake_stop(&f);
}
END_TEST

START_TEST(client_auth_and_validation)
{
    struct fake f;
    struct sync_client *c;
    struct sync_client_opts o = {0};
    cJSON *v;
    struct sync_json *doc = NULL;
    struct sjv data;
    char err[512];
    enum cm_status st;
    int pipefd[2];
    posix_spawn_file_actions_t fa;
    char line[256];
    FILE *out;
    char *argv[] = {"node",      "tests/fake-stash/server.mjs",
                    "--port",    "0",
                    "--scenes",  "10",
                    "--api-key", "s3cret",
                    NULL};

    ck_assert_int_eq(pipe(pipefd), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    ck_assert_int_eq(posix_spawnp(&f.pid, "node", &fa, NULL, argv, environ), 0);
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
    st = sync_client_query(c, "Version", NULL, &doc, &data, err, sizeof err);
    ck_assert_int_eq(st, CM_UPSTREAM);
    ck_assert_ptr_nonnull(strstr(err, "Stash rejected the API key"));
    ck_assert_ptr_null(strstr(err, "wrong"));
    ck_assert_uint_eq(sync_client_requests(c), 1); /* 4xx: no retry */
    sync_client_free(c);

    o.api_key = "s3cret";
    ck_assert_int_eq(sync_client_new(&o, &c), CM_OK);
    ck_assert_int_eq(
        sync_client_query(c, "Version", NULL, &doc, &data, err, sizeof err),
        CM_OK);
    ck_assert_int_eq(sj_type(sj_get(data, "version")), SJ_OBJECT);
    sync_json_free(doc);
    v = cJSON_Parse("{\"filter\":{\"direction\":\"SIDEWAYS\"}}");
    st = sync_client_query(c, "SyncTags", v, &doc, &data, err, sizeof err);
    ck_assert_int_eq(st, CM_UPSTREAM);
    ck_assert_msg(strstr(err, "HTTP 422") != NULL, "%s", err);
    cJSON_Delete(v);
    v = cJSON_Parse("{\"filter\":{\"sort\":\"nope\"}}");
    st = sync_client_query(c, "SyncTags", v, &doc, &data, err, sizeof err);
    ck_assert_int_eq(st, CM_UPSTREAM);
    ck_assert_msg(strstr(err, "invalid sort: nope") != NULL, "%s", err);
    cJSON_Delete(v);
    ck_assert_int_eq(
        sync_client_query(c, "NoSuchDoc", NULL, &doc, &data, err, sizeof err),
        CM_NOTFOUND);
    /* a 503 is retried, then succeeds */
    control(&f, "{\"op\":\"fault\",\"kind\":\"status\",\"code\":503,"
                "\"count\":2}");
    ck_assert_int_eq(
        sync_client_query(c, "Version", NULL, &doc, &data, err, sizeof err),
        CM_OK);
    sync_json_free(doc);
    sync_client_free(c);
    fake_stop(&f);
}
END_TEST

/* One query with a fault in front (count times): OUT st, err; returns the
 * number of requests the client made. */
static uint64_t faulted_query(const struct fake *f, const char *fault,
                              int retries, enum cm_status *st, char *err,
                              size_t errlen)
{
    struct sync_client *c;
    struct sync_client_opts o = {0};
    struct sync_json *doc = NULL;
    struct sjv data;
    uint64_t n;
    o.url = f->url;
    o.retries = retries;
    o.backoff_ms = 1;
    o.timeout_s = 5;
    o.gzip = CM_GZIP_ON;
    control(f, "{\"op\":\"clearFaults\"}");
    if (fault)
        control(f, fault);
    ck_assert_int_eq(sync_client_new(&o, &c), CM_OK);
    *st = sync_client_query(c, "Version", NULL, &doc, &data, err, errlen);
    ck_assert(*st == CM_OK ? doc != NULL : doc == NULL && sj_missing(data));
    if (doc)
        ck_assert_int_eq(sj_type(sj_get(data, "version")), SJ_OBJECT);
    sync_json_free(doc);
    n = sync_client_requests(c);
    sync_client_free(c);
    return n;
}

/* Bodies come gzip-encoded and are decoded by sync_gunzip: a gzip stream
 * cut by the connection or inside a whole message is retried like any
 * transient failure; an encoding we did not ask for is a clear error, not
 * retried; the labels gzip/x-gzip/identity are read case-insensitively. */
START_TEST(client_gzip_bodies)
{
    static const struct {
        const char *fault;
        int retries;
        enum cm_status st;
        uint64_t requests;
        const char *msg;
    } cases[] = {
        {NULL, 2, CM_OK, 1, NULL},
        {"{\"op\":\"fault\",\"kind\":\"badgzip\",\"count\":1}", 2, CM_OK, 2,
         NULL},
        {"{\"op\":\"fault\",\"kind\":\"badgzip\",\"count\":9}", 2, CM_UPSTREAM,
         3, "/graphql was not valid gzip (Content-Encoding: gzip"},
        {"{\"op\":\"fault\",\"kind\":\"truncate\",\"count\":1}", 2, CM_OK, 2,
         NULL},
        {"{\"op\":\"fault\",\"kind\":\"truncate\",\"count\":9}", 1, CM_UPSTREAM,
         2, "request to Stash failed"},
        {"{\"op\":\"fault\",\"kind\":\"reset\",\"count\":1}", 2, CM_OK, 2,
         NULL},
        {"{\"op\":\"fault\",\"kind\":\"encoding\",\"encoding\":\"br\","
         "\"count\":9}",
         2, CM_UPSTREAM, 1,
         "has Content-Encoding \"br\" (peekd decodes only gzip"},
        {"{\"op\":\"fault\",\"kind\":\"encoding\",\"encoding\":\"gzip, "
         "gzip\",\"count\":9}",
         2, CM_UPSTREAM, 1, "Content-Encoding \"gzip, gzip\""},
        {"{\"op\":\"fault\",\"kind\":\"encoding\",\"encoding\":\"X-GZip\","
         "\"count\":9}",
         2, CM_OK, 1, NULL},
        {"{\"op\":\"fault\",\"kind\":\"encoding\",\"encoding\":\" GZIP "
         "\",\"count\":9}",
         2, CM_OK, 1, NULL},
        {"{\"op\":\"fault\",\"kind\":\"encoding\",\"encoding\":"
         "\"identity\",\"count\":9}",
         2, CM_OK, 1, NULL},
        /* a 5xx stays a retried 5xx whatever its body's encoding */
        {"{\"op\":\"fault\",\"kind\":\"encoding\",\"encoding\":\"br\","
         "\"code\":503,\"count\":1}",
         2, CM_OK, 2, NULL},
        {"{\"op\":\"fault\",\"kind\":\"encoding\",\"encoding\":\"br\","
         "\"code\":502,\"count\":9}",
         2, CM_UPSTREAM, 3, "Stash returned HTTP 502"},
    };
    struct fake f;
    char err[512];
    enum cm_status st;

    fake_start(&f, 10, "Z");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t n;
        err[0] = '\0';
        n = faulted_query(&f, cases[i].fault, cases[i].retries, &st, err,
                          sizeof err);
        ck_assert_msg(st == cases[i].st, "case %zu: %s: %s", i,
                      cm_status_str(st), err);
        ck_assert_msg(n == cases[i].requests, "case %zu: %llu requests", i,
                      (unsigned long long)n);
        if (!cases[i].msg)
            continue;
        ck_assert_msg(strstr(err, cases[i].msg), "case %zu: got \"%s\"", i,
                      err);
        if (strstr(err, "response from ")) { /* names the URL */
            char want[256];
            snprintf(want, sizeof want, "response from %s/graphql ", f.url);
            ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
        }
    }
    fake_stop(&f);
}
END_TEST

/* --sync-gzip: on asks for gzip in every request, off in none, auto in
 * the first only when Stash answers from a loopback address (the fake
 * listens on 127.0.0.1), and a gzip body is decoded whatever was asked. */
START_TEST(client_gzip_setting)
{
    static const struct {
        enum cm_gzip mode;
        uint64_t asked;
    } cases[] = {{CM_GZIP_ON, 3}, {CM_GZIP_OFF, 0}, {CM_GZIP_AUTO, 1}};
    struct fake f;
    char err[512];

    fake_start(&f, 10, "Z");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sync_client *c;
        struct sync_client_opts o = {0};
        struct sync_json *doc = NULL;
        struct sjv data;
        uint64_t before, after, all;

        o.url = f.url;
        o.gzip = cases[i].mode;
        before = fake_gzip_asked(&f, &all);
        ck_assert_int_eq(sync_client_new(&o, &c), CM_OK);
        for (int k = 0; k < 3; k++) {
            ck_assert_int_eq(sync_client_query(c, "Version", NULL, &doc, &data,
                                               err, sizeof err),
                             CM_OK);
            ck_assert_int_eq(sj_type(sj_get(data, "version")), SJ_OBJECT);
            sync_json_free(doc);
        }
        after = fake_gzip_asked(&f, &all);
        ck_assert_msg(after - before == cases[i].asked,
                      "case %zu: %llu of 3 asked for gzip", i,
                      (unsigned long long)(after - before));
        /* a gzip body that was not asked for is still decoded */
        control(&f, "{\"op\":\"fault\",\"kind\":\"encoding\","
                    "\"encoding\":\"gzip\",\"count\":1}");
        ck_assert_int_eq(
            sync_client_query(c, "Version", NULL, &doc, &data, err, sizeof err),
            CM_OK);
        ck_assert_int_eq(sj_type(sj_get(data, "version")), SJ_OBJECT);
        sync_json_free(doc);
        sync_client_free(c);
    }
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
    tcase_add_test(tc, client_gzip_bodies);
    tcase_add_loop_test(tc, full_sync_equals_generated_library, 0, 2);
    tcase_add_test(tc, client_gzip_setting);
    tcase_add_loop_test(tc, incremental_converges_to_full, 0, 2);
    tcase_add_test(tc, new_image_rewrites_no_scene);
    tcase_add_test(tc, sweep_and_reconcile_schedule);
    tcase_add_loop_test(tc, updated_at_quirk, 0, 2);
    tcase_add_loop_test(tc, faults_fail_cleanly, 0,
                        (int)(sizeof FAULTS / sizeof FAULTS[0]));
    tcase_add_test(tc, zero_ids_guard);
    tcase_add_test(tc, readers_see_whole_pages);
    tcase_add_test(tc, first_sync_defers_indexes);
    tcase_add_test(tc, sigkill_resume_converges);
    tcase_add_test(tc, schedule_persists_across_runs);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
