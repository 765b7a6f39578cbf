/*
 * test_api_http.c - api/ over real loopback HTTP (libcurl) against a store
 * filled through idx_writer with a deterministic library, and a fake Stash
 * (a second MHD daemon) for the image proxy.
 *
 * Oracles are brute force over the generated library held in memory:
 * counts and ids of filtered queries, similar-scene scores, entity scene
 * counts, autocomplete matches.  Every response body and header of the
 * suite is checked for the Stash API key.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_int.h"
#include "common/cm_alloc.h"
#include "common/cm_natural.h"
#include "index/idx.h"
#include "kv/kv.h"
#include "tests/lib/testutil.h"

#define N_SCENES  3000
#define N_PERF    40
#define N_TAGS    25
#define N_STUDIOS 8
#define N_GROUPS  4
#define N_GALS    4
#define API_KEY   "K-very-secret-api-key-4242"
#define TOKEN     "fuzz-token" /* the fuzz seeds' token */

/* ---- The generated library ---------------------------------------------- */

struct gscene {
    uint64_t id;
    char title[48];
    bool has_title;
    char created[32];
    int date_y, date_m, date_d;
    uint64_t perf[3];
    int np;
    uint64_t tags[4];
    int nt;
    uint64_t studio;
    uint64_t group;
    uint64_t gallery;
};

static struct gscene lib[N_SCENES];
static char perf_name[N_PERF + 1][32], tag_name[N_TAGS + 1][32],
    studio_name[N_STUDIOS + 1][32];
static struct kv_store *store;
static struct api_server *srv;
static struct cm_config cfg;
static char base[64];
static struct MHD_Daemon *fake;
static int fake_port;
static int fake_hits;

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void gen(void)
{
    for (int i = 1; i <= N_PERF; i++)
        snprintf(perf_name[i], sizeof perf_name[i], "%s %d",
                 i % 2 ? "Anna" : "Bella", i);
    for (int i = 1; i <= N_TAGS; i++)
        snprintf(tag_name[i], sizeof tag_name[i], "Tag %d", i);
    for (int i = 1; i <= N_STUDIOS; i++)
        snprintf(studio_name[i], sizeof studio_name[i], "Studio %d", i);
    for (int i = 0; i < N_SCENES; i++) {
        struct gscene *g = &lib[i];
        long secs = (long)((i * 7919L) % N_SCENES); /* unique */
        g->id = (uint64_t)i * 3 + 1;
        g->has_title = i % 7 != 0;
        snprintf(g->title, sizeof g->title, "Scene %d", i);
        snprintf(g->created, sizeof g->created,
                 "2024-%02ld-%02ldT%02ld:%02ld:%02ldZ", 1 + secs / 86400 % 12,
                 1 + secs / 3600 % 28, secs / 3600 % 24, secs / 60 % 60,
                 secs % 60);
        g->date_y = rnd() % 5 ? 2000 + (int)(rnd() % 25) : 0;
        g->date_m = 1 + (int)(rnd() % 12);
        g->date_d = 1 + (int)(rnd() % 28);
        g->np = (int)(rnd() % 4);
        for (int k = 0; k < g->np; k++) {
            uint64_t p;
            bool dup;
            do {
                p = 1 + rnd() % N_PERF;
                dup = false;
                for (int j = 0; j < k; j++)
                    dup |= g->perf[j] == p;
            } while (dup);
            g->perf[k] = p;
        }
        g->nt = (int)(rnd() % 5);
        for (int k = 0; k < g->nt; k++) {
            uint64_t t;
            bool dup;
            do {
                t = 1 + rnd() % N_TAGS;
                dup = false;
                for (int j = 0; j < k; j++)
                    dup |= g->tags[j] == t;
            } while (dup);
            g->tags[k] = t;
        }
        g->studio = rnd() % 4 ? 1 + rnd() % N_STUDIOS : 0;
        g->group = rnd() % 5 == 0 ? 1 + rnd() % N_GROUPS : 0;
        g->gallery = rnd() % 6 == 0 ? 1 + rnd() % N_GALS : 0;
    }
}

static struct kv_str S(const char *s) {
    struct kv_str r = {s, s ? (uint32_t)strlen(s) : 0};
    return r;
}

static enum cm_status
put_entities(struct idx_writer *w)
{
    enum cm_status st = CM_OK;
    static char img[64];
    for (int t = 0; t < 5 && st == CM_OK; t++) {
        static const uint8_t types[] = {KV_PERFORMER, KV_TAG, KV_STUDIO,
                                        KV_GROUP, KV_GALLERY};
        static const int counts[] = {N_PERF, N_TAGS, N_STUDIOS, N_GROUPS,
                                     N_GALS};
        for (int i = 1; i <= counts[t] && st == CM_OK; i++) {
            struct kv_entity e;
            char name[32];
            memset(&e, 0, sizeof e);
            e.type = types[t];
            e.id = (uint64_t)i;
            if (types[t] == KV_PERFORMER)
                e.name = S(perf_name[i]);
            else if (types[t] == KV_TAG)
                e.name = S(tag_name[i]);
            else if (types[t] == KV_STUDIO)
                e.name = S(studio_name[i]);
            else {
                snprintf(name, sizeof name, "%s %d",
                         types[t] == KV_GROUP ? "Group" : "Gallery", i);
                e.name = S(name);
            }
            snprintf(img, sizeof img, "http://stash.invalid/%s/%d/image?t=1",
                     types[t] == KV_PERFORMER ? "performer"
                     : types[t] == KV_TAG     ? "tag"
                                              : "studio",
                     i);
            e.image = S(img);
            e.favorite = i % 3 == 0;
            e.rating100 = i % 2 ? i * 2 : -1;
            e.duration = -1;
            e.image_count = -1;
            e.created_at = S("2024-01-01T00:00:00Z");
            e.updated_at = S("2024-01-02T00:00:00Z");
            st = idx_entity_put(w, &e);
        }
    }
    return st;
}

static void ref_of(struct kv_ref *r, uint64_t id, const char *name)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    r->name = S(name);
    r->rating100 = -1;
    r->index = -1;
}

static enum cm_status fill(struct kv_txn *t, void *ctx)
{
    struct idx_writer *w;
    enum cm_status st;
    (void)ctx;
    if ((st = idx_writer_begin(t, &w)) != CM_OK)
        return st;
    st = put_entities(w);
    for (int i = 0; i < N_SCENES && st == CM_OK; i++) {
        struct gscene *g = &lib[i];
        struct kv_scene sc;
        struct kv_file f;
        struct kv_ref perf[3], tags[4], grp, gal;
        char shot[96], path[64], bn[32], gname[40], galname[40];
        memset(&sc, 0, sizeof sc);
        memset(&f, 0, sizeof f);
        sc.id = g->id;
        if (g->has_title)
            sc.title = S(g->title);
        sc.rating100 = (int32_t)(g->id % 101) - 1;
        sc.play_duration = -1;
        sc.resume_time = -1;
        sc.interactive_speed = -1;
        sc.date.year = (int16_t)g->date_y;
        sc.date.month = (uint8_t)(g->date_y ? g->date_m : 0);
        sc.date.day = (uint8_t)(g->date_y ? g->date_d : 0);
        sc.created_at = S(g->created);
        sc.updated_at = S(g->created);
        snprintf(shot, sizeof shot,
                 "http://stash.invalid/scene/%llu/screenshot?t=9",
                 (unsigned long long)g->id);
        sc.p_screenshot = S(shot);
        snprintf(path, sizeof path, "/media/v/file_%d.mp4", i);
        snprintf(bn, sizeof bn, "file_%d.mp4", i);
        f.id = g->id;
        f.path = S(path);
        f.basename = S(bn);
        f.format = S("mp4");
        f.video_codec = S(i % 10 ? "h264" : "mpeg2video");
        f.audio_codec = S("aac");
        f.duration = 60.0 + i;
        f.frame_rate = 29.97;
        f.width = 1920;
        f.height = 1080;
        f.size = 1000000 + i;
        f.bit_rate = 5000000;
        sc.n_files = 1;
        sc.files = &f;
        for (int k = 0; k < g->np; k++)
            ref_of(&perf[k], g->perf[k], perf_name[g->perf[k]]);
        sc.n_performers = (uint32_t)g->np;
        sc.performers = perf;
        for (int k = 0; k < g->nt; k++)
            ref_of(&tags[k], g->tags[k], tag_name[g->tags[k]]);
        sc.n_tags = (uint32_t)g->nt;
        sc.tags = tags;
        if (g->studio)
            ref_of(&sc.studio, g->studio, studio_name[g->studio]);
        if (g->group) {
            snprintf(gname, sizeof gname, "Group %llu",
                     (unsigned long long)g->group);
            ref_of(&grp, g->group, gname);
            grp.index = 1;
            sc.n_groups = 1;
            sc.groups = &grp;
        }
        if (g->gallery) {
            snprintf(galname, sizeof galname, "Gallery %llu",
                     (unsigned long long)g->gallery);
            ref_of(&gal, g->gallery, galname);
            sc.n_galleries = 1;
            sc.galleries = &gal;
        }
        st = idx_scene_put(w, &sc, NULL);
    }
    if (st != CM_OK) {
        idx_writer_discard(w);
        return st;
    }
    return idx_writer_finish(w);
}

/* ---- Fake Stash for images ------------------------------------------------
 */

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c,
                                    const char *url, const char *method,
                                    const char *ver, const char *up,
                                    size_t *upsz, void **con)
{
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "ApiKey");
    struct MHD_Response *r;
    enum MHD_Result ret;
    unsigned code = 200;
    static const char png[] = "\x89PNG\r\n\x1a\nfake-image-bytes";
    (void)cls, (void)method, (void)ver, (void)up, (void)upsz;
    if (!*con) {
        *con = (void *)1;
        return MHD_YES;
    }
    __atomic_add_fetch(&fake_hits, 1, __ATOMIC_SEQ_CST);
    if (!key || strcmp(key, API_KEY) != 0)
        code = 401;
    else if (strncmp(url, "/scene/", 7) != 0 ||
             strtoull(url + 7, NULL, 10) % 2 == 0)
        code = 404; /* even scene ids: Stash has no screenshot */
    r = MHD_create_response_from_buffer(code == 200 ? sizeof png - 1 : 0,
                                        (void *)png, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "image/png");
    ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- HTTP helpers ---------------------------------------------------------
 */

struct res {
    long code;
    struct cm_buf body, hdrs;
    long connects;
};

static size_t on_body(char *p, size_t s, size_t n, void *cls)
{
    return cm_buf_append(cls, p, s * n) == CM_OK ? s * n : 0;
}

static void check_no_key(const struct res *r)
{
    ck_assert_ptr_null(memmem(r->body.data ? r->body.data : "", r->body.len,
                              API_KEY, strlen(API_KEY)));
    ck_assert_ptr_null(memmem(r->hdrs.data ? r->hdrs.data : "", r->hdrs.len,
                              API_KEY, strlen(API_KEY)));
}

static void res_fini(struct res *r)
{
    cm_buf_fini(&r->body);
    cm_buf_fini(&r->hdrs);
}

/* Performs method path [body] with extra header lines (NULL-terminated),
 * on handle c (NULL = a fresh one).  auth: add the Bearer token. */
static void req_on(CURL *c, const char *method, const char *path,
                   const char *body, const char *const *hdrs, bool auth,
                   struct res *r)
{
    char url[16384];
    struct curl_slist *h = NULL;
    bool own = c == NULL;
    CURLcode rc;
    if (own)
        c = curl_easy_init();
    memset(r, 0, sizeof *r);
    cm_buf_init(&r->body, 1 << 28);
    cm_buf_init(&r->hdrs, 1 << 20);
    snprintf(url, sizeof url, "%s%s", base, path);
    if (auth)
        h = curl_slist_append(h, "Authorization: Bearer " TOKEN);
    for (int i = 0; hdrs && hdrs[i]; i++)
        h = curl_slist_append(h, hdrs[i]);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->hdrs);
    curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(c, CURLOPT_HTTPGET,
                         strcmp(method, "GET") == 0 ? 1L : 0L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    rc = curl_easy_perform(c);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path,
                  curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->connects);
    curl_slist_free_all(h);
    if (own)
        curl_easy_cleanup(c);
    check_no_key(r);
}

static void req(const char *method, const char *path, const char *body,
                struct res *r)
{
    req_on(NULL, method, path, body, NULL, true, r);
}

static cJSON *json_of(const struct res *r)
{
    cJSON *j = cJSON_ParseWithLength(r->body.data, r->body.len);
    ck_assert_msg(j != NULL, "not JSON: %.200s", r->body.data);
    return j;
}

/* POST path body -> expects code; returns the parsed JSON (caller frees). */
static cJSON *post_json(const char *path, const char *body, long code)
{
    struct res r;
    cJSON *j;
    req("POST", path, body, &r);
    ck_assert_msg(r.code == code, "POST %s %s: %ld %.300s", path, body, r.code,
                  r.body.data);
    j = json_of(&r);
    res_fini(&r);
    return j;
}

static cJSON *get_json(const char *path, long code)
{
    struct res r;
    cJSON *j;
    req("GET", path, NULL, &r);
    ck_assert_msg(r.code == code, "GET %s: %ld %.300s", path, r.code,
                  r.body.data);
    j = json_of(&r);
    res_fini(&r);
    return j;
}

static void expect_error(const char *method, const char *path, const char *body,
                         long code, const char *field)
{
    struct res r;
    cJSON *j, *f;
    req(method, path, body, &r);
    ck_assert_msg(r.code == code, "%s %s %s: got %ld %.300s", method, path,
                  body ? body : "", r.code, r.body.data);
    j = json_of(&r);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "error")));
    if (field) {
        f = cJSON_GetObjectItem(j, "field");
        ck_assert_msg(cJSON_IsString(f) && strcmp(f->valuestring, field) == 0,
                      "%s: field %s expected, body %.300s", path, field,
                      r.body.data);
    }
    cJSON_Delete(j);
    res_fini(&r);
}

/* ---- Fixture ------------------------------------------------------------- */

static const char *webdir;

static void setup_once(void)
{
    struct kv_options o;
    char err[256];
    const char *dir = tu_tmpdir();
    char path[512];
    FILE *f;

    cm_json_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    gen();
    memset(&o, 0, sizeof o);
    o.no_sync = 1;
    o.map_size = 256u << 20;
    ck_assert_int_eq(kv_open(dir, &o, &store, err, sizeof err), CM_OK);
    ck_assert_int_eq(kv_write_run(store, fill, NULL), CM_OK);

    fake = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, fake_handler, NULL, MHD_OPTION_END);
    ck_assert_ptr_nonnull(fake);
    fake_port = MHD_get_daemon_info(fake, MHD_DAEMON_INFO_BIND_PORT)->port;

    webdir = tu_tmpdir();
    snprintf(path, sizeof path, "%s/index.html", webdir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("<!doctype html><title>peek</title>", f);
    fclose(f);

    ck_assert_int_eq(cm_config_init(&cfg), CM_OK);
    cm_free(cfg.listen_host);
    cfg.listen_host = cm_strdup("127.0.0.1");
    cfg.listen_port = 0;
    cfg.token = cm_strdup(TOKEN);
    cfg.cors_origin = cm_strdup("http://peek.test");
    snprintf(path, sizeof path, "http://127.0.0.1:%d", fake_port);
    cfg.stash_url = cm_strdup(path);
    cfg.stash_api_key = cm_strdup(API_KEY);
    cm_free(cfg.cache_dir);
    cfg.cache_dir = cm_strdup(tu_tmpdir());
    cfg.web_dir = cm_strdup(webdir);
    cfg.http_timeout = 2;
    ck_assert_int_eq(api_server_start(&cfg, store, NULL, true, &srv), CM_OK);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", api_server_port(srv));
}

static void setup(void)
{
    if (!srv)
        setup_once();
}

/* ---- Oracles ---------------------------------------------------------------
 */

static bool has(const uint64_t *v, int n, uint64_t x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

static long count_where(bool (*pred)(const struct gscene *, const void *),
                        const void *arg)
{
    long n = 0;
    for (int i = 0; i < N_SCENES; i++)
        n += pred(&lib[i], arg);
    return n;
}

static bool pred_perf(const struct gscene *g, const void *a)
{
    return has(g->perf, g->np, *(const uint64_t *)a);
}

static bool pred_tags_all(const struct gscene *g, const void *a)
{
    const uint64_t *t = a;
    return has(g->tags, g->nt, t[0]) && has(g->tags, g->nt, t[1]);
}

static bool pred_studio(const struct gscene *g, const void *a)
{
    return g->studio == *(const uint64_t *)a;
}

static long count_of(cJSON *j)
{
    cJSON *fs = cJSON_GetObjectItem(j, "findScenes");
    return (long)cJSON_GetObjectItem(fs, "count")->valuedouble;
}

static cJSON *scenes_of(cJSON *j)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findScenes"), "scenes");
}

/* created_at DESC order of the library (created_at values are unique). */
static int by_created_desc(const void *a, const void *b)
{
    const struct gscene *x = *(const struct gscene *const *)a;
    const struct gscene *y = *(const struct gscene *const *)b;
    return -strcmp(x->created, y->created);
}

/* ---- Tests ----------------------------------------------------------------
 */

START_TEST(test_health_and_auth)
{
    struct res r;
    cJSON *j;
    char cookie[256], hdr[300];
    const char *h[2] = {hdr, NULL};
    char *sc;

    setup();
    req_on(NULL, "GET", "/api/health", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 200);
    j = json_of(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "ok");
    ck_assert_int_eq((long)cJSON_GetObjectItem(j, "scenes")->valuedouble,
                     N_SCENES);
    cJSON_Delete(j);
    res_fini(&r);

    /* No credentials: 401 everywhere but the public routes. */
    req_on(NULL, "POST", "/api/library/scenes", "{}", NULL, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    req_on(NULL, "GET", "/api/proxy/scene/1/screenshot", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    req_on(NULL, "GET", "/api/scene/1/stream", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    req_on(NULL, "GET", "/metrics", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    req_on(NULL, "GET", "/api/auth/check", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    req_on(NULL, "GET", "/api/setup/status", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "\"setupComplete\":true"));
    res_fini(&r);
    /* A wrong Bearer is refused. */
    snprintf(hdr, sizeof hdr, "Authorization: Bearer wrong");
    req_on(NULL, "POST", "/api/library/scenes", "{}", h, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    /* Authenticated unknown routes: 404, never 401/403. */
    expect_error("GET", "/api/user/settings", NULL, 404, NULL);
    expect_error("GET", "/api/watch-history", NULL, 404, NULL);
    expect_error("POST", "/api/ratings/scene/1", "{}", 404, NULL);

    /* Sign-in: wrong password 401, missing field 400, right one sets a
     * cookie (not the token) that authenticates. */
    req_on(NULL, "POST", "/api/auth/login",
           "{\"username\":\"admin\",\"password\":\"nope\"}", NULL, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    req_on(NULL, "POST", "/api/auth/login", "{\"username\":\"admin\"}", NULL,
           false, &r);
    ck_assert_int_eq(r.code, 400);
    res_fini(&r);
    req_on(NULL, "POST", "/api/auth/login",
           "{\"username\":\"admin\",\"password\":\"" TOKEN "\"}", NULL, false,
           &r);
    ck_assert_int_eq(r.code, 200);
    sc = strcasestr(r.hdrs.data, "Set-Cookie: token=");
    ck_assert_ptr_nonnull(sc);
    ck_assert_ptr_nonnull(strstr(sc, "HttpOnly"));
    ck_assert_ptr_nonnull(strstr(sc, "SameSite=Strict"));
    ck_assert_ptr_nonnull(strstr(sc, "Max-Age=7200"));
    ck_assert_ptr_null(strstr(r.hdrs.data, TOKEN));
    sscanf(sc + strlen("Set-Cookie: token="), "%255[^;]", cookie);
    res_fini(&r);
    snprintf(hdr, sizeof hdr, "Cookie: token=%s", cookie);
    req_on(NULL, "GET", "/api/auth/check", NULL, h, false, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "\"setupCompleted\":true"));
    res_fini(&r);
    req_on(NULL, "POST", "/api/library/tags", "{}", h, false, &r);
    ck_assert_int_eq(r.code, 200);
    res_fini(&r);
    /* A tampered cookie is refused. */
    cookie[strlen(cookie) - 1] ^= 1;
    snprintf(hdr, sizeof hdr, "Cookie: token=%s", cookie);
    req_on(NULL, "GET", "/api/auth/check", NULL, h, false, &r);
    ck_assert_int_eq(r.code, 401);
    res_fini(&r);
    req_on(NULL, "POST", "/api/auth/logout", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_ptr_nonnull(strstr(r.hdrs.data, "Max-Age=0"));
    res_fini(&r);
}
END_TEST

START_TEST(test_scene_shape)
{
    cJSON *j = post_json("/api/library/scenes",
                         "{\"filter\":{\"per_page\":25}}", 200),
          *s;
    static const char *const arrays[] = {"urls",
                                         "play_history",
                                         "o_history",
                                         "files",
                                         "sceneStreams",
                                         "captions",
                                         "performers",
                                         "tags",
                                         "inheritedTagIds",
                                         "inheritedTags",
                                         "groups",
                                         "galleries",
                                         "streamabilityReasons",
                                         NULL};
    static const char *const keys[] = {"id",
                                       "instanceId",
                                       "title",
                                       "code",
                                       "date",
                                       "details",
                                       "director",
                                       "organized",
                                       "created_at",
                                       "updated_at",
                                       "studioId",
                                       "rating",
                                       "rating100",
                                       "favorite",
                                       "o_counter",
                                       "play_count",
                                       "play_duration",
                                       "resume_time",
                                       "last_played_at",
                                       "last_o_at",
                                       "paths",
                                       "studio",
                                       "isStreamable",
                                       "stashUrl",
                                       NULL};
    setup();
    ck_assert_int_eq(count_of(j), N_SCENES);
    ck_assert_int_eq(cJSON_GetArraySize(scenes_of(j)), 25);
    cJSON_ArrayForEach (s, scenes_of(j)) {
        cJSON *st, *f, *p;
        for (int i = 0; arrays[i]; i++)
            ck_assert_msg(cJSON_IsArray(cJSON_GetObjectItem(s, arrays[i])),
                          "%s not an array", arrays[i]);
        for (int i = 0; keys[i]; i++)
            ck_assert_msg(cJSON_HasObjectItem(s, keys[i]), "%s missing",
                          keys[i]);
        ck_assert_str_eq(cJSON_GetObjectItem(s, "instanceId")->valuestring,
                         "peekd");
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(s, "title")));
        /* Absolute stream URLs on this server. */
        st = cJSON_GetObjectItem(s, "sceneStreams");
        ck_assert_int_ge(cJSON_GetArraySize(st), 2);
        ck_assert_int_eq(strncmp(cJSON_GetArrayItem(st, 0)->child->valuestring,
                                 "http://", 7),
                         0);
        ck_assert_ptr_nonnull(strstr(
            cJSON_GetObjectItem(cJSON_GetArrayItem(st, 0), "url")->valuestring,
            "/api/scene/"));
        f = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "files"), 0);
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(f, "duration")));
        p = cJSON_GetObjectItem(s, "paths");
        ck_assert_int_eq(
            strncmp(cJSON_GetObjectItem(p, "screenshot")->valuestring,
                    "/api/proxy/scene/", 17),
            0);
        cJSON *perf;
        cJSON_ArrayForEach (perf, cJSON_GetObjectItem(s, "performers")) {
            ck_assert_str_eq(
                cJSON_GetObjectItem(perf, "instanceId")->valuestring, "peekd");
            ck_assert(cJSON_HasObjectItem(perf, "gender"));
        }
        /* Title falls back to the file basename. */
        if (strncmp(cJSON_GetObjectItem(s, "title")->valuestring, "file_", 5) ==
            0) {
            uint64_t id =
                strtoull(cJSON_GetObjectItem(s, "id")->valuestring, NULL, 10);
            ck_assert(!lib[(id - 1) / 3].has_title);
        }
    }
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_scene_queries_vs_oracle)
{
    char body[512];
    cJSON *j, *s;
    const struct gscene *order[N_SCENES];
    int k;
    uint64_t p = 7, st = 3, tags[2] = {2, 5};

    setup();
    /* Default sort: created_at DESC; page 2 of 10. */
    for (int i = 0; i < N_SCENES; i++)
        order[i] = &lib[i];
    qsort(order, N_SCENES, sizeof order[0], by_created_desc);
    j = post_json("/api/library/scenes",
                  "{\"filter\":{\"page\":2,\"per_page\":10,"
                  "\"direction\":\"desc\"}}",
                  200);
    k = 10;
    cJSON_ArrayForEach (s, scenes_of(j)) {
        char want[24];
        snprintf(want, sizeof want, "%llu", (unsigned long long)order[k++]->id);
        ck_assert_str_eq(cJSON_GetObjectItem(s, "id")->valuestring, want);
    }
    ck_assert_int_eq(k, 20);
    cJSON_Delete(j);

    snprintf(body, sizeof body,
             "{\"scene_filter\":{\"performers\":{\"value\":[\"%llu:peekd\"],"
             "\"modifier\":\"INCLUDES\"}}}",
             (unsigned long long)p);
    j = post_json("/api/library/scenes", body, 200);
    ck_assert_int_eq(count_of(j), count_where(pred_perf, &p));
    cJSON_ArrayForEach (s, scenes_of(j)) {
        uint64_t id =
            strtoull(cJSON_GetObjectItem(s, "id")->valuestring, NULL, 10);
        ck_assert(pred_perf(&lib[(id - 1) / 3], &p));
    }
    cJSON_Delete(j);

    snprintf(body, sizeof body,
             "{\"scene_filter\":{\"tags\":{\"value\":[\"2\",\"5\"],"
             "\"modifier\":\"INCLUDES_ALL\",\"depth\":0}}}");
    j = post_json("/api/library/scenes", body, 200);
    ck_assert_int_eq(count_of(j), count_where(pred_tags_all, tags));
    cJSON_Delete(j);

    snprintf(body, sizeof body,
             "{\"filter\":{\"per_page\":-1},\"scene_filter\":{\"studios\":{"
             "\"value\":[\"3\"],\"modifier\":\"INCLUDES\"}}}");
    j = post_json("/api/library/scenes", body, 200);
    ck_assert_int_eq(count_of(j), count_where(pred_studio, &st));
    ck_assert_int_eq(cJSON_GetArraySize(scenes_of(j)),
                     count_where(pred_studio, &st));
    cJSON_Delete(j);

    /* ids lookup: bare, composite and numeric ids; unknown ids dropped. */
    j = post_json("/api/library/scenes",
                  "{\"ids\":[\"1\",\"4:peekd\",7,\"999999999\"]}", 200);
    ck_assert_int_eq(count_of(j), 3);
    ck_assert_int_eq(cJSON_GetArraySize(scenes_of(j)), 3);
    cJSON_Delete(j);

    j = post_json("/api/library/scenes", "{\"ids\":[]}", 200);
    ck_assert_int_eq(count_of(j), 0);
    ck_assert_int_eq(cJSON_GetArraySize(scenes_of(j)), 0);
    cJSON_Delete(j);
    j = post_json("/api/library/tags", "{\"ids\":[]}", 200);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findTags"), "count")
            ->valueint,
        0);
    cJSON_Delete(j);

    /* One scene. */
    j = get_json("/api/library/scenes/4", 200);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "id")->valuestring, "4");
    cJSON_Delete(j);
    j = get_json("/api/library/scenes/4:peekd", 200);
    cJSON_Delete(j);
    expect_error("GET", "/api/library/scenes/5", NULL, 404, "id");
    expect_error("GET", "/api/library/scenes/abc", NULL, 400, "id");
}
END_TEST

struct simc {
    uint64_t id;
    int score;
    int date;
};

static int simc_cmp(const void *a, const void *b)
{
    const struct simc *x = a, *y = b;
    if (x->score != y->score)
        return y->score - x->score;
    if (x->date != y->date)
        return x->date > y->date ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

START_TEST(test_similar_vs_oracle)
{
    static struct simc c[N_SCENES];
    int n = 0, tested = 0;
    setup();
    for (int q = 0; q < N_SCENES && tested < 3; q += 97) {
        const struct gscene *g = &lib[q];
        char path[96];
        cJSON *j, *s;
        int k;
        if (g->np == 0 && g->nt == 0 && g->studio == 0)
            continue;
        n = 0;
        for (int i = 0; i < N_SCENES; i++) {
            const struct gscene *o = &lib[i];
            int sc = 0;
            if (i == q)
                continue;
            for (int a = 0; a < g->np; a++)
                sc += 3 * has(o->perf, o->np, g->perf[a]);
            if (g->studio && o->studio == g->studio)
                sc += 2;
            for (int a = 0; a < g->nt; a++)
                sc += has(o->tags, o->nt, g->tags[a]);
            if (sc) {
                c[n].id = o->id;
                c[n].score = sc;
                c[n].date =
                    o->date_y ? o->date_y * 10000 + o->date_m * 100 + o->date_d
                              : -1;
                n++;
            }
        }
        qsort(c, (size_t)n, sizeof c[0], simc_cmp);
        for (int page = 1; page <= 2; page++) {
            snprintf(path, sizeof path,
                     "/api/library/scenes/%llu/similar?page=%d",
                     (unsigned long long)g->id, page);
            j = get_json(path, 200);
            ck_assert_int_eq((int)cJSON_GetObjectItem(j, "count")->valuedouble,
                             n < 500 ? n : 500);
            ck_assert_int_eq(cJSON_GetObjectItem(j, "perPage")->valueint, 12);
            k = (page - 1) * 12;
            cJSON_ArrayForEach (s, cJSON_GetObjectItem(j, "scenes")) {
                ck_assert_uint_eq(
                    strtoull(cJSON_GetObjectItem(s, "id")->valuestring, NULL,
                             10),
                    c[k].id);
                k++;
            }
            cJSON_Delete(j);
        }
        tested++;
    }
    ck_assert_int_eq(tested, 3);
    expect_error("GET", "/api/library/scenes/4/similar?page=0", NULL, 400,
                 "page");
    expect_error("GET", "/api/library/scenes/5/similar", NULL, 404, "id");
}
END_TEST

START_TEST(test_entities_vs_oracle)
{
    cJSON *j, *e, *arr;
    long fav = 0;
    setup();
    for (int i = 1; i <= N_PERF; i++)
        fav += i % 3 == 0;
    j = post_json("/api/library/performers",
                  "{\"filter\":{\"per_page\":-1,\"sort\":\"name\","
                  "\"direction\":\"asc\"}}",
                  200);
    e = cJSON_GetObjectItem(j, "findPerformers");
    ck_assert_int_eq(cJSON_GetObjectItem(e, "count")->valueint, N_PERF);
    arr = cJSON_GetObjectItem(e, "performers");
    ck_assert_int_eq(cJSON_GetArraySize(arr), N_PERF);
    {
        const char *prev = NULL;
        cJSON *p;
        cJSON_ArrayForEach (p, arr) {
            uint64_t id =
                strtoull(cJSON_GetObjectItem(p, "id")->valuestring, NULL, 10);
            long want = count_where(pred_perf, &id);
            const char *name = cJSON_GetObjectItem(p, "name")->valuestring;
            ck_assert_int_eq(cJSON_GetObjectItem(p, "scene_count")->valueint,
                             want);
            ck_assert_str_eq(name, perf_name[id]);
            if (prev)
                ck_assert_int_le(
                    cm_natural_cmp(prev, strlen(prev), name, strlen(name)), 0);
            prev = name;
        }
    }
    cJSON_Delete(j);

    j = post_json("/api/library/performers",
                  "{\"performer_filter\":{\"favorite\":true}}", 200);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findPerformers"), "count")
            ->valueint,
        fav);
    cJSON_Delete(j);

    j = post_json("/api/library/studios",
                  "{\"filter\":{\"sort\":\"scene_count\","
                  "\"direction\":\"DESC\",\"per_page\":3}}",
                  200);
    arr = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findStudios"), "studios");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 3);
    {
        long best = 0;
        for (uint64_t s = 1; s <= N_STUDIOS; s++) {
            long c = count_where(pred_studio, &s);
            if (c > best)
                best = c;
        }
        ck_assert_int_eq(
            cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "scene_count")
                ->valueint,
            best);
    }
    cJSON_Delete(j);

    j = post_json("/api/library/tags", "{\"ids\":[\"3\",\"4:peekd\"]}", 200);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findTags"), "count")
            ->valueint,
        2);
    cJSON_Delete(j);
    j = post_json("/api/library/groups", "{}", 200);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findGroups"), "count")
            ->valueint,
        N_GROUPS);
    cJSON_Delete(j);
    j = post_json("/api/library/galleries", "{}", 200);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findGalleries"), "count")
            ->valueint,
        N_GALS);
    cJSON_Delete(j);

    /* Autocomplete: q "anna 1" matches Anna 1, 11, 13, ...; minimum. */
    j = post_json("/api/library/performers/minimal",
                  "{\"filter\":{\"q\":\"ANNA 1\",\"per_page\":50,"
                  "\"sort\":\"name\",\"direction\":\"ASC\"},"
                  "\"count_filter\":{\"min_scene_count\":1}}",
                  200);
    arr = cJSON_GetObjectItem(j, "performers");
    {
        int want = 0;
        for (uint64_t i = 1; i <= N_PERF; i++)
            if (strcasestr(perf_name[i], "anna 1") &&
                count_where(pred_perf, &i) >= 1)
                want++;
        ck_assert_int_eq(cJSON_GetArraySize(arr), want);
        ck_assert_int_gt(want, 0);
    }
    cJSON_ArrayForEach (e, arr) {
        ck_assert_str_eq(cJSON_GetObjectItem(e, "instanceId")->valuestring,
                         "peekd");
        ck_assert_ptr_nonnull(
            strcasestr(cJSON_GetObjectItem(e, "name")->valuestring, "anna 1"));
    }
    cJSON_Delete(j);
    j = post_json("/api/library/tags/minimal", "{\"filter\":{\"per_page\":5}}",
                  200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tags")), 5);
    cJSON_Delete(j);
}
END_TEST

/* The entity list pages (heap selection over the snapshot) against a
 * brute-force oracle: every page of every sort and direction equals the
 * matching slice of the oracle's full order; a write makes the next
 * request see it (the snapshot follows the LMDB transaction). */
struct eora {
    uint64_t id;
    const char *name;
    double k; /* primary key, already negated for DESC */
};

static int eora_cmp(const void *pa, const void *pb)
{
    const struct eora *a = pa, *b = pb;
    int c;
    if (a->k != b->k)
        return a->k < b->k ? -1 : 1;
    c = cm_natural_cmp(a->name, strlen(a->name), b->name, strlen(b->name));
    if (c)
        return c;
    return (a->id > b->id) - (a->id < b->id);
}

static void check_entity_pages(const char *route, const char *key,
                               const char *arr_key, int n, const char *sort,
                               bool desc, int per_page, const char *filter,
                               bool only_fav)
{
    struct eora o[N_PERF + 1];
    int m = 0;
    char body[256];
    for (int i = 1; i <= n; i++) {
        double k = 0;
        if (only_fav && i % 3 != 0)
            continue;
        o[m].id = (uint64_t)i;
        o[m].name = strcmp(route, "performers") == 0 ? perf_name[i]
                    : strcmp(route, "tags") == 0     ? tag_name[i]
                                                     : studio_name[i];
        if (strcmp(sort, "name") == 0) {
            k = 0; /* the name decides */
        } else if (strcmp(sort, "rating") == 0) {
            k = i % 2 ? i * 2 : -1;
        } else if (strcmp(sort, "scene_count") == 0) {
            uint64_t id = (uint64_t)i;
            k = (double)count_where(
                strcmp(route, "performers") == 0 ? pred_perf : pred_studio,
                &id);
        } else if (strcmp(sort, "random_7") == 0) {
            k = idx_random_key((uint64_t)i, 7);
        }
        o[m].k = desc ? -k : k;
        m++;
    }
    if (strcmp(sort, "name") == 0 && desc) {
        /* name DESC, ties (none here: names are unique) by id */
        qsort(o, (size_t)m, sizeof o[0], eora_cmp);
        for (int i = 0; i < m / 2; i++) {
            struct eora t = o[i];
            o[i] = o[m - 1 - i];
            o[m - 1 - i] = t;
        }
    } else {
        qsort(o, (size_t)m, sizeof o[0], eora_cmp);
    }
    for (int page = 1; (page - 1) * per_page <= m; page++) {
        char path[64];
        cJSON *j, *e, *arr, *it;
        int idx = (page - 1) * per_page;
        snprintf(path, sizeof path, "/api/library/%s", route);
        snprintf(body, sizeof body,
                 "{\"filter\":{\"page\":%d,\"per_page\":%d,\"sort\":\"%s\","
                 "\"direction\":\"%s\"}%s}",
                 page, per_page, sort, desc ? "DESC" : "ASC", filter);
        j = post_json(path, body, 200);
        e = cJSON_GetObjectItem(j, key);
        ck_assert_int_eq(cJSON_GetObjectItem(e, "count")->valueint, m);
        arr = cJSON_GetObjectItem(e, arr_key);
        ck_assert_int_eq(cJSON_GetArraySize(arr),
                         m - idx < per_page ? (m - idx > 0 ? m - idx : 0)
                                            : per_page);
        cJSON_ArrayForEach (it, arr) {
            uint64_t id =
                strtoull(cJSON_GetObjectItem(it, "id")->valuestring, NULL, 10);
            ck_assert_msg(
                id == o[idx].id, "%s sort %s %s page %d pos %d: %llu != %llu",
                route, sort, desc ? "desc" : "asc", page, idx,
                (unsigned long long)id, (unsigned long long)o[idx].id);
            idx++;
        }
        cJSON_Delete(j);
    }
}

static enum cm_status add_performer(struct kv_txn *t, void *ctx)
{
    struct idx_writer *w;
    struct kv_entity e;
    enum cm_status st;
    memset(&e, 0, sizeof e);
    e.type = KV_PERFORMER;
    e.id = *(uint64_t *)ctx;
    e.name = S("Aaron Added");
    e.rating100 = -1;
    e.duration = -1;
    e.image_count = -1;
    if ((st = idx_writer_begin(t, &w)) != CM_OK)
        return st;
    st = idx_entity_put(w, &e);
    if (st != CM_OK) {
        idx_writer_discard(w);
        return st;
    }
    return idx_writer_finish(w);
}

static enum cm_status del_performer(struct kv_txn *t, void *ctx)
{
    struct idx_writer *w;
    enum cm_status st;
    if ((st = idx_writer_begin(t, &w)) != CM_OK)
        return st;
    st = idx_entity_delete(w, KV_PERFORMER, *(uint64_t *)ctx);
    if (st != CM_OK) {
        idx_writer_discard(w);
        return st;
    }
    return idx_writer_finish(w);
}

START_TEST(test_entity_pages_vs_oracle)
{
    static const char *const sorts[] = {"name", "rating", "scene_count",
                                        "random_7"};
    uint64_t extra = 1000;
    cJSON *j, *arr;
    setup();
    for (int s = 0; s < 4; s++)
        for (int d = 0; d < 2; d++) {
            check_entity_pages("performers", "findPerformers", "performers",
                               N_PERF, sorts[s], d, 7, "", false);
            check_entity_pages(
                "performers", "findPerformers", "performers", N_PERF, sorts[s],
                d, 4, ",\"performer_filter\":{\"favorite\":true}", true);
            if (s != 2) /* tag scene counts include more than direct tags */
                check_entity_pages("tags", "findTags", "tags", N_TAGS, sorts[s],
                                   d, 6, "", false);
            check_entity_pages("studios", "findStudios", "studios", N_STUDIOS,
                               sorts[s], d, 3, "", false);
        }

    /* A commit is seen by the next request (new snapshot), and gone again
     * after the delete. */
    ck_assert_int_eq(kv_write_run(store, add_performer, &extra), CM_OK);
    j = post_json("/api/library/performers/minimal",
                  "{\"filter\":{\"per_page\":1,\"sort\":\"name\"}}", 200);
    arr = cJSON_GetObjectItem(j, "performers");
    ck_assert_int_eq(cJSON_GetArraySize(arr), 1);
    ck_assert_str_eq(
        cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "name")->valuestring,
        "Aaron Added");
    cJSON_Delete(j);
    j = post_json("/api/library/performers", "{\"filter\":{\"q\":\"aaron\"}}",
                  200);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findPerformers"), "count")
            ->valueint,
        1);
    cJSON_Delete(j);
    ck_assert_int_eq(kv_write_run(store, del_performer, &extra), CM_OK);
    j = post_json("/api/library/performers",
                  "{\"filter\":{\"per_page\":1,\"sort\":\"name\"}}", 200);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "findPerformers"), "count")
            ->valueint,
        N_PERF);
    cJSON_Delete(j);
}
END_TEST

/* The renderer's per-thread entity cache follows commits: a studio's
 * parent and the parent's name (not carried by the scene record) change
 * in the very next response. */
struct studio_edit {
    uint64_t id, parent;
    const char *name;
};

static enum cm_status put_studio_ent(struct kv_txn *t, void *ctx)
{
    const struct studio_edit *ed = ctx;
    struct idx_writer *w;
    struct kv_entity e;
    enum cm_status st;
    memset(&e, 0, sizeof e);
    e.type = KV_STUDIO;
    e.id = ed->id;
    e.name = S(ed->name);
    e.rating100 = -1;
    e.duration = -1;
    e.image_count = -1;
    e.parents = (uint64_t *)&ed->parent;
    e.n_parents = ed->parent ? 1 : 0;
    if ((st = idx_writer_begin(t, &w)) != CM_OK)
        return st;
    st = idx_entity_put(w, &e);
    if (st != CM_OK) {
        idx_writer_discard(w);
        return st;
    }
    return idx_writer_finish(w);
}

/* The studio object of a scene: round 0 by the single-scene route, round 1
 * by the list route (the one that keeps rendered fragments). */
static cJSON *scene_studio(uint64_t scene, int round, cJSON **root)
{
    char path[64], body[96];
    if (round == 0) {
        snprintf(path, sizeof path, "/api/library/scenes/%llu",
                 (unsigned long long)scene);
        *root = get_json(path, 200);
        return cJSON_GetObjectItem(*root, "studio");
    }
    snprintf(body, sizeof body, "{\"ids\":[\"%llu\"]}",
             (unsigned long long)scene);
    *root = post_json("/api/library/scenes", body, 200);
    ck_assert_int_eq(cJSON_GetArraySize(scenes_of(*root)), 1);
    return cJSON_GetObjectItem(cJSON_GetArrayItem(scenes_of(*root), 0),
                               "studio");
}

START_TEST(test_entity_cache_follows_commits)
{
    const struct gscene *g = NULL;
    struct studio_edit ed;
    cJSON *j, *st, *ps;
    setup();
    for (int i = 0; i < N_SCENES && !g; i++)
        if (lib[i].studio && lib[i].studio != 1)
            g = &lib[i];
    ck_assert_ptr_nonnull(g);
    for (int round = 0; round < 2; round++) { /* both MHD threads, likely */
        st = scene_studio(g->id, round, &j);
        ck_assert(cJSON_IsNull(cJSON_GetObjectItem(st, "parent_studio")));
        cJSON_Delete(j);
    }
    ed.id = g->studio;
    ed.parent = 1;
    ed.name = studio_name[g->studio];
    ck_assert_int_eq(kv_write_run(store, put_studio_ent, &ed), CM_OK);
    for (int round = 0; round < 2; round++) {
        st = scene_studio(g->id, round, &j);
        ps = cJSON_GetObjectItem(st, "parent_studio");
        ck_assert(cJSON_IsObject(ps));
        ck_assert_str_eq(cJSON_GetObjectItem(ps, "id")->valuestring, "1");
        ck_assert_str_eq(cJSON_GetObjectItem(ps, "name")->valuestring,
                         studio_name[1]);
        cJSON_Delete(j);
    }
    /* Rename the parent: only its entity record changes. */
    ed.id = 1;
    ed.parent = 0;
    ed.name = "Renamed Parent";
    ck_assert_int_eq(kv_write_run(store, put_studio_ent, &ed), CM_OK);
    for (int round = 0; round < 2; round++) {
        st = scene_studio(g->id, round, &j);
        ps = cJSON_GetObjectItem(st, "parent_studio");
        ck_assert_str_eq(cJSON_GetObjectItem(ps, "name")->valuestring,
                         "Renamed Parent");
        cJSON_Delete(j);
    }
    /* Restore the fixture. */
    ed.name = studio_name[1];
    ck_assert_int_eq(kv_write_run(store, put_studio_ent, &ed), CM_OK);
    ed.id = g->studio;
    ed.name = studio_name[g->studio];
    ck_assert_int_eq(kv_write_run(store, put_studio_ent, &ed), CM_OK);
    for (int round = 0; round < 2; round++) {
        st = scene_studio(g->id, round, &j);
        ck_assert(cJSON_IsNull(cJSON_GetObjectItem(st, "parent_studio")));
        cJSON_Delete(j);
    }
}
END_TEST

/* Scene fragments: a page served again (from the per-thread fragments)
 * is byte-identical; every scene of a list equals the single-scene route's
 * object (rendered without fragments); the absolute stream URLs follow
 * each request's Host. */
static void post_raw(const char *body, const char *host, struct res *r)
{
    const char *h[] = {host, NULL};
    req_on(NULL, "POST", "/api/library/scenes", body, host ? h : NULL, true, r);
    ck_assert_int_eq(r->code, 200);
}

START_TEST(test_scene_fragments)
{
    static const char *const bodies[] = {
        "{\"filter\":{\"per_page\":60,\"sort\":\"created_at\","
        "\"direction\":\"DESC\"}}",
        "{\"filter\":{\"page\":3,\"per_page\":45,\"sort\":\"random_5\"}}",
        "{\"filter\":{\"per_page\":-1,\"sort\":\"title\"}}"};
    setup();
    for (size_t q = 0; q < sizeof bodies / sizeof bodies[0]; q++) {
        struct res a, b;
        cJSON *j, *sc;
        int checked = 0;
        post_raw(bodies[q], NULL, &a);
        for (int rep = 0; rep < 4; rep++) { /* both MHD threads, likely */
            post_raw(bodies[q], NULL, &b);
            ck_assert_uint_eq(a.body.len, b.body.len);
            ck_assert_mem_eq(a.body.data, b.body.data, a.body.len);
            res_fini(&b);
        }
        j = json_of(&a);
        cJSON_ArrayForEach (sc, scenes_of(j)) {
            char path[64];
            cJSON *one;
            if (checked++ >= 60)
                break;
            snprintf(path, sizeof path, "/api/library/scenes/%s",
                     cJSON_GetObjectItem(sc, "id")->valuestring);
            one = get_json(path, 200);
            ck_assert_msg(cJSON_Compare(sc, one, 1), "scene %s differs",
                          cJSON_GetObjectItem(sc, "id")->valuestring);
            cJSON_Delete(one);
        }
        ck_assert_int_gt(checked, 0);
        cJSON_Delete(j);
        res_fini(&a);
    }
    {
        struct res a, b;
        cJSON *ja, *jb, *sa, *sb;
        int n = 0;
        post_raw(bodies[0], "Host: a.example:1", &a);
        post_raw(bodies[0], "Host: b.example:2", &b);
        ja = json_of(&a);
        jb = json_of(&b);
        for (sa = scenes_of(ja)->child, sb = scenes_of(jb)->child; sa && sb;
             sa = sa->next, sb = sb->next) {
            cJSON *ua =
                cJSON_GetArrayItem(cJSON_GetObjectItem(sa, "sceneStreams"), 0);
            cJSON *ub =
                cJSON_GetArrayItem(cJSON_GetObjectItem(sb, "sceneStreams"), 0);
            if (!ua)
                continue;
            n++;
            ck_assert_int_eq(
                strncmp(cJSON_GetObjectItem(ua, "url")->valuestring,
                        "http://a.example:1/api/scene/", 29),
                0);
            ck_assert_int_eq(
                strncmp(cJSON_GetObjectItem(ub, "url")->valuestring,
                        "http://b.example:2/api/scene/", 29),
                0);
            ck_assert_str_eq(cJSON_GetObjectItem(ua, "url")->valuestring + 18,
                             cJSON_GetObjectItem(ub, "url")->valuestring + 18);
        }
        ck_assert_int_gt(n, 0);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        res_fini(&a);
        res_fini(&b);
    }
}
END_TEST

START_TEST(test_bad_input)
{
    char *big;
    struct res r;
    setup();
    expect_error("POST", "/api/library/scenes", "{\"filter\":", 400, "body");
    expect_error("POST", "/api/library/scenes", "[1,2]", 400, "body");
    expect_error("POST", "/api/library/scenes", "{\"filter\":3}", 400,
                 "filter");
    expect_error("POST", "/api/library/scenes",
                 "{\"scene_filter\":{\"no_such_field\":1}}", 400, NULL);
    expect_error("POST", "/api/library/scenes", "{\"filter\":{\"page\":-4}}",
                 400, "filter.page");
    expect_error("POST", "/api/library/scenes",
                 "{\"filter\":{\"per_page\":100000000}}", 400,
                 "filter.per_page");
    expect_error("POST", "/api/library/scenes", "{\"ids\":[\"x1\"]}", 400,
                 "ids[0]");
    expect_error("POST", "/api/library/scenes", "{\"ids\":\"1\"}", 400, "ids");
    expect_error("POST", "/api/library/performers",
                 "{\"filter\":{\"sort\":\"shoe_size\"}}", 400, "filter.sort");
    expect_error("POST", "/api/library/performers",
                 "{\"performer_filter\":{\"favorite\":\"yes\"}}", 400,
                 "performer_filter.favorite");
    expect_error("POST", "/api/library/tags", "{\"filter\":{\"page\":0}}", 400,
                 "filter.page");
    expect_error("POST", "/api/library/tags/minimal",
                 "{\"count_filter\":{\"min_gallery_count\":1}}", 400,
                 "count_filter.min_gallery_count");
    expect_error("POST", "/api/sync/trigger", "{\"type\":\"partial\"}", 400,
                 "type");
    {
        /* 200 levels of nesting. */
        char deep[512];
        memset(deep, '[', 200);
        memset(deep + 200, ']', 200);
        deep[400] = '\0';
        expect_error("POST", "/api/library/scenes", deep, 400, "body");
    }
    /* Wrong method: 405 + Allow. */
    req("GET", "/api/library/scenes", NULL, &r);
    ck_assert_int_eq(r.code, 405);
    ck_assert_ptr_nonnull(strcasestr(r.hdrs.data, "Allow: POST"));
    res_fini(&r);
    req("DELETE", "/api/health", NULL, &r);
    ck_assert_int_eq(r.code, 405);
    res_fini(&r);
    /* Oversize body: 413. */
    big = malloc((2u << 20) + 1);
    memset(big, ' ', 2u << 20);
    big[2u << 20] = '\0';
    req("POST", "/api/library/scenes", big, &r);
    ck_assert_int_eq(r.code, 413);
    res_fini(&r);
    free(big);
    /* Over-long URL: 414. */
    big = malloc(9000 + 32);
    memcpy(big, "/api/health?x=", 14);
    memset(big + 14, 'a', 9000);
    big[9014] = '\0';
    req("GET", big, NULL, &r);
    ck_assert_int_eq(r.code, 414);
    res_fini(&r);
    free(big);
    /* Still serving. */
    req("GET", "/api/health", NULL, &r);
    ck_assert_int_eq(r.code, 200);
    res_fini(&r);
}
END_TEST

START_TEST(test_keepalive_cors_static)
{
    CURL *c = curl_easy_init();
    struct res r;
    const char *origin[] = {"Origin: http://peek.test", NULL};
    setup();
    req_on(c, "POST", "/api/library/scenes", "{}", NULL, true, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_int_eq(r.connects, 1);
    res_fini(&r);
    req_on(c, "POST", "/api/library/scenes", "{}", NULL, true, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_int_eq(r.connects, 0); /* the connection was reused */
    res_fini(&r);
    req_on(c, "GET", "/api/library/scenes/4", NULL, NULL, true, &r);
    ck_assert_int_eq(r.connects, 0);
    res_fini(&r);
    curl_easy_cleanup(c);

    req_on(NULL, "OPTIONS", "/api/library/scenes", NULL, origin, false, &r);
    ck_assert_int_eq(r.code, 204);
    ck_assert_ptr_nonnull(strcasestr(r.hdrs.data,
                                     "Access-Control-Allow-Origin: "
                                     "http://peek.test"));
    ck_assert_ptr_nonnull(
        strcasestr(r.hdrs.data, "Access-Control-Allow-Headers:"));
    res_fini(&r);

    /* Static files and the deep-link fallback (public). */
    req_on(NULL, "GET", "/", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "<title>peek</title>"));
    res_fini(&r);
    req_on(NULL, "GET", "/scenes/123", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "<title>peek</title>"));
    res_fini(&r);
    req_on(NULL, "GET", "/assets/missing.js", NULL, NULL, false, &r);
    ck_assert_int_eq(r.code, 404);
    res_fini(&r);
}
END_TEST

START_TEST(test_images)
{
    struct res r;
    char etag[128], hdr[160];
    const char *h[2] = {hdr, NULL};
    char *p;
    int before;
    setup();
    before = __atomic_load_n(&fake_hits, __ATOMIC_SEQ_CST);
    req("GET", "/api/proxy/scene/1/screenshot", NULL, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_int_eq(r.body.len, 24);
    ck_assert_int_eq(memcmp(r.body.data, "\x89PNG", 4), 0);
    ck_assert_ptr_nonnull(strcasestr(r.hdrs.data, "Content-Type: image/png"));
    ck_assert_ptr_nonnull(strcasestr(r.hdrs.data, "Cache-Control:"));
    p = strcasestr(r.hdrs.data, "ETag: ");
    ck_assert_ptr_nonnull(p);
    sscanf(p + 6, "%127[^\r\n]", etag);
    res_fini(&r);
    /* Second time from the cache: Stash is not asked again. */
    req("GET", "/api/proxy/scene/1/screenshot", NULL, &r);
    ck_assert_int_eq(r.code, 200);
    res_fini(&r);
    ck_assert_int_eq(__atomic_load_n(&fake_hits, __ATOMIC_SEQ_CST), before + 1);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
    req_on(NULL, "GET", "/api/proxy/scene/1/screenshot", NULL, h, true, &r);
    ck_assert_int_eq(r.code, 304);
    res_fini(&r);
    /* Stash 404 -> 404; unknown scene -> 404; no such asset -> 404. */
    expect_error("GET", "/api/proxy/scene/10/screenshot", NULL, 404, NULL);
    expect_error("GET", "/api/proxy/scene/5/screenshot", NULL, 404, NULL);
    expect_error("GET", "/api/proxy/scene/1/preview", NULL, 404, NULL);
    expect_error("GET", "/api/proxy/scene/1/passwd", NULL, 404, NULL);
    /* The stash proxy: Stash's own origin only, asset paths only. */
    req("GET",
        "/api/proxy/stash?path=http%3A%2F%2Felsewhere%2Fscene%2F1%2F"
        "screenshot%3Ft%3D9",
        NULL, &r);
    ck_assert_int_eq(r.code, 200); /* same asset, served from the cache */
    res_fini(&r);
    expect_error("GET", "/api/proxy/stash?path=%2Fgraphql%3Fquery%3D%7B%7D",
                 NULL, 400, "path");
    expect_error("GET", "/api/proxy/stash?path=%2Fscene%2F..%2Fgraphql", NULL,
                 400, "path");
    expect_error("GET", "/api/proxy/stash", NULL, 400, "path");
}
END_TEST

/* A server whose image cache holds ~3 images: older ones are evicted (LRU
 * by mtime), the newest stays cached. */
START_TEST(test_image_cache_eviction)
{
    struct api_server *s2;
    struct cm_config c2;
    char saved[64], path[600];
    struct res r;
    DIR *d;
    struct dirent *e;
    long total = 0;
    int files = 0, hits;
    static const int ids[] = {1, 7, 13, 19, 25, 31};
    setup();
    c2 = cfg;
    c2.cache_dir = (char *)tu_tmpdir();
    c2.image_cache_max = 200;
    ck_assert_int_eq(api_server_start(&c2, store, NULL, true, &s2), CM_OK);
    memcpy(saved, base, sizeof saved);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", api_server_port(s2));
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        snprintf(path, sizeof path, "/api/proxy/scene/%d/screenshot", ids[i]);
        req("GET", path, NULL, &r);
        ck_assert_int_eq(r.code, 200);
        res_fini(&r);
    }
    snprintf(path, sizeof path, "%s/images", c2.cache_dir);
    d = opendir(path);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) != 0)
            continue;
        total += st.st_size;
        files++;
    }
    closedir(d);
    ck_assert_int_le(total, 200);
    ck_assert_int_ge(files, 1);
    ck_assert_int_lt(files, 6);
    /* The newest is still cached: Stash is not asked again. */
    hits = __atomic_load_n(&fake_hits, __ATOMIC_SEQ_CST);
    req("GET", "/api/proxy/scene/31/screenshot", NULL, &r);
    ck_assert_int_eq(r.code, 200);
    res_fini(&r);
    ck_assert_int_eq(__atomic_load_n(&fake_hits, __ATOMIC_SEQ_CST), hits);
    api_server_quiesce(s2);
    api_server_stop(s2);
    memcpy(base, saved, sizeof saved);
}
END_TEST

START_TEST(test_metrics_sync_routes)
{
    struct res r;
    cJSON *j;
    setup();
    req("GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.code, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "peekd_http_requests_total{"
                                              "route=\"health\",status="
                                              "\"200\"}"));
    ck_assert_ptr_nonnull(strstr(r.body.data, "peekd_http_request_duration_"
                                              "seconds_bucket{route="));
    ck_assert_ptr_nonnull(strstr(r.body.data, "peekd_scenes 3000"));
    ck_assert_ptr_nonnull(strstr(r.body.data, "peekd_store_bytes "));
    res_fini(&r);
    j = get_json("/api/sync/status", 200);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "enabled")));
    cJSON_Delete(j);
    expect_error("POST", "/api/sync/trigger", "{\"type\":\"full\"}", 409, NULL);
    expect_error("POST", "/api/sync/abort", NULL, 409, NULL);
}
END_TEST

/* A second server, not ready, with sync hooks recording calls. */
static int trig_full = -1, aborts;
static enum cm_status h_status(void *cls, struct cm_buf *b)
{
    (void)cls;
    return cm_buf_puts(b, "{\"enabled\":true,\"running\":true}");
}
static enum cm_status h_trigger(void *cls, bool full)
{
    (void)cls;
    if (trig_full >= 0)
        return CM_BUSY;
    trig_full = full;
    return CM_OK;
}
static enum cm_status h_abort(void *cls)
{
    (void)cls;
    aborts++;
    return CM_OK;
}

START_TEST(test_not_ready_and_hooks)
{
    struct api_server *s2;
    struct api_hooks hk = {NULL, h_status, NULL, h_trigger, h_abort};
    char saved[64];
    struct res r;
    cJSON *j;
    setup();
    ck_assert_int_eq(api_server_start(&cfg, store, &hk, false, &s2), CM_OK);
    memcpy(saved, base, sizeof saved);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", api_server_port(s2));
    req("POST", "/api/library/scenes", "{}", &r);
    ck_assert_int_eq(r.code, 503);
    j = json_of(&r);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "error")->valuestring,
                     "Server is initializing");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "ready")));
    cJSON_Delete(j);
    res_fini(&r);
    req("GET", "/api/health", NULL, &r);
    ck_assert_int_eq(r.code, 200);
    res_fini(&r);
    j = get_json("/api/sync/status", 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "running")));
    cJSON_Delete(j);
    j = post_json("/api/sync/trigger", "{\"type\":\"full\"}", 202);
    cJSON_Delete(j);
    ck_assert_int_eq(trig_full, 1);
    expect_error("POST", "/api/sync/trigger", "{}", 409, NULL);
    j = post_json("/api/sync/abort", "", 200);
    cJSON_Delete(j);
    ck_assert_int_eq(aborts, 1);
    api_server_set_ready(s2, true);
    req("POST", "/api/library/scenes", "{}", &r);
    ck_assert_int_eq(r.code, 200);
    res_fini(&r);
    api_server_quiesce(s2);
    api_server_stop(s2);
    memcpy(base, saved, sizeof saved);
}
END_TEST

/* Sends raw bytes on a fresh TCP connection; returns the status code of
 * the answer (0 when the server closed without one). */
static int raw_request(const char *data, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), code = 0;
    struct sockaddr_in a;
    char buf[4096];
    ssize_t got, tot = 0;
    struct timeval tv = {5, 0};
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)api_server_port(srv));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (write(fd, data, n) != (ssize_t)n) {
        close(fd);
        return 0;
    }
    shutdown(fd, SHUT_WR);
    while ((got = read(fd, buf + tot, sizeof buf - 1 - (size_t)tot)) > 0 &&
           tot < (ssize_t)sizeof buf - 1)
        tot += got;
    buf[tot > 0 ? tot : 0] = '\0';
    if (tot > 12 && strncmp(buf, "HTTP/1.", 7) == 0)
        code = (int)strtol(buf + 9, NULL, 10);
    close(fd);
    return code;
}

/* The fuzz corpus as real requests: LF -> CRLF in the head, a
 * Content-Length for the body.  ok_* seeds must not fail with 5xx; every
 * other seed is hostile and must get a 4xx.  The server stays up. */
START_TEST(test_hostile_corpus)
{
    DIR *d;
    struct dirent *e;
    int files = 0;
    char path[512];
    setup();
    d = opendir("tests/fuzz/corpus/api_request");
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        size_t len, hl;
        char *raw, *body, *out;
        struct cm_buf b;
        int code;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "tests/fuzz/corpus/api_request/%s",
                 e->d_name);
        raw = tu_read_file(path, &len);
        ck_assert_ptr_nonnull(raw);
        body = strstr(raw, "\n\n");
        hl = body ? (size_t)(body - raw) : len;
        body = body ? body + 2 : raw + len;
        cm_buf_init(&b, 1 << 24);
        for (size_t i = 0; i < hl; i++) {
            if (raw[i] == '\n')
                ck_assert_int_eq(cm_buf_putc(&b, '\r'), CM_OK);
            ck_assert_int_eq(cm_buf_putc(&b, raw[i]), CM_OK);
        }
        ck_assert_int_eq(cm_buf_printf(&b,
                                       "\r\nHost: x\r\nConnection: "
                                       "close\r\nContent-Length: %zu"
                                       "\r\n\r\n",
                                       (size_t)(raw + len - body)),
                         CM_OK);
        ck_assert_int_eq(cm_buf_append(&b, body, (size_t)(raw + len - body)),
                         CM_OK);
        out = b.data;
        code = raw_request(out, b.len);
        if (strncmp(e->d_name, "ok_", 3) == 0)
            ck_assert_msg(code >= 200 && code < 500, "%s: %d", e->d_name, code);
        else
            ck_assert_msg(code >= 400 && code < 500, "%s: %d", e->d_name, code);
        cm_buf_fini(&b);
        free(raw);
        files++;
    }
    closedir(d);
    ck_assert_int_ge(files, 8);
    /* Garbage that is not HTTP at all, and a slow client that never
     * finishes its head (dropped by the timeout, 2 s here). */
    ck_assert_int_lt(raw_request("\x01\x02garbage\r\n\r\n", 13), 500);
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        char buf[64];
        struct timeval tv = {10, 0};
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)api_server_port(srv));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        time_t t0 = time(NULL);
        ck_assert_int_eq(write(fd, "GET /api/health HTTP/1.1\r\nHo", 28), 28);
        /* Closed by the server (read returns 0) well before 10 s. */
        ck_assert_int_eq(read(fd, buf, sizeof buf), 0);
        ck_assert_int_lt(time(NULL) - t0, 8);
        close(fd);
    }
    {
        struct res r;
        req("GET", "/api/health", NULL, &r);
        ck_assert_int_eq(r.code, 200);
        res_fini(&r);
    }
}
END_TEST

/* docs/openapi.json lists exactly api_routes[], and every non-video route
 * answers (not 404/405) on the live server. */
START_TEST(test_openapi_matches_routes)
{
    size_t len;
    char *doc = tu_read_file("docs/openapi.json", &len);
    cJSON *j, *paths, *p;
    int n_doc = 0, n_tab = 0;
    setup();
    ck_assert_ptr_nonnull(doc);
    j = cJSON_ParseWithLength(doc, len);
    ck_assert_ptr_nonnull(j);
    paths = cJSON_GetObjectItem(j, "paths");
    ck_assert_ptr_nonnull(paths);
    cJSON_ArrayForEach (p, paths) {
        cJSON *m;
        cJSON_ArrayForEach (m, p) {
            bool found = false;
            if (strcmp(m->string, "parameters") == 0)
                continue;
            for (int i = 0; api_routes[i].path; i++)
                if (strcmp(api_routes[i].path, p->string) == 0 &&
                    strcasecmp(api_routes[i].method, m->string) == 0)
                    found = true;
            ck_assert_msg(found, "openapi %s %s is not a route", m->string,
                          p->string);
            n_doc++;
        }
    }
    for (int i = 0; api_routes[i].path; i++) {
        cJSON *item = cJSON_GetObjectItem(paths, api_routes[i].path);
        char lower[8], url[256];
        const char *s;
        size_t o = 0;
        struct res r;
        for (size_t k = 0; api_routes[i].method[k] && k < 7; k++)
            lower[k] = (char)(api_routes[i].method[k] | 0x20),
            lower[k + 1] = '\0';
        ck_assert_msg(item && cJSON_GetObjectItem(item, lower),
                      "route %s %s missing from openapi.json",
                      api_routes[i].method, api_routes[i].path);
        n_tab++;
        if (strncmp(api_routes[i].path, "/api/scene/", 11) == 0)
            continue; /* video: the hls module's tests */
        /* Substitute parameters with real values. */
        for (s = api_routes[i].path; *s && o < sizeof url - 32; s++) {
            if (strncmp(s, "{id}", 4) == 0) {
                o += (size_t)snprintf(url + o, sizeof url - o, "1");
                s += 3;
            } else if (strncmp(s, "{asset}", 7) == 0) {
                o += (size_t)snprintf(url + o, sizeof url - o, "screenshot");
                s += 6;
            } else if (strncmp(s, "{kind}", 6) == 0) {
                o += (size_t)snprintf(url + o, sizeof url - o, "performer");
                s += 5;
            } else {
                url[o++] = *s;
            }
        }
        url[o] = '\0';
        if (strcmp(url, "/api/proxy/stash") == 0)
            snprintf(url, sizeof url,
                     "/api/proxy/stash?path=%%2Fscene%%2F1%%2Fscreenshot%%3F"
                     "t%%3D9");
        req(api_routes[i].method, url,
            strcmp(api_routes[i].method, "POST") == 0 ? "{}" : NULL, &r);
        if (strstr(url, "/api/proxy/") && strstr(url, "image")) {
            /* Stash (the fake) has no entity images: 404 from upstream
             * is an answer of the route, not a missing route. */
            ck_assert_msg(r.code == 200 || r.code == 404, "%s: %ld", url,
                          r.code);
        } else {
            ck_assert_msg(r.code != 404 && r.code != 405 && r.code < 500,
                          "%s %s: %ld %.200s", api_routes[i].method, url,
                          r.code, r.body.data);
        }
        res_fini(&r);
    }
    ck_assert_int_eq(n_doc, n_tab);
    cJSON_Delete(j);
    free(doc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api_http");
    TCase *tc = tcase_create("http");
    int rc;
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_health_and_auth);
    tcase_add_test(tc, test_scene_shape);
    tcase_add_test(tc, test_scene_queries_vs_oracle);
    tcase_add_test(tc, test_similar_vs_oracle);
    tcase_add_test(tc, test_entities_vs_oracle);
    tcase_add_test(tc, test_entity_pages_vs_oracle);
    tcase_add_test(tc, test_entity_cache_follows_commits);
    tcase_add_test(tc, test_scene_fragments);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_keepalive_cors_static);
    tcase_add_test(tc, test_images);
    tcase_add_test(tc, test_image_cache_eviction);
    tcase_add_test(tc, test_metrics_sync_routes);
    tcase_add_test(tc, test_not_ready_and_hooks);
    tcase_add_test(tc, test_hostile_corpus);
    tcase_add_test(tc, test_openapi_matches_routes);
    suite_add_tcase(s, tc);
    /* One server for the whole suite (MHD threads do not survive fork);
     * with CK_FORK=yes each test sets up its own. */
    setenv("CK_FORK", "no", 0);
    rc = tu_run(s);
    if (srv) {
        api_server_quiesce(srv);
        api_server_stop(srv);
    }
    if (fake)
        MHD_stop_daemon(fake);
    kv_close(store);
    cm_config_fini(&cfg);
    return rc;
}
