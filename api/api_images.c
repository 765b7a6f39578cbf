/*
 * api_images.c - image proxy: /api/proxy/scene/{id}/{screenshot|preview|
 * webp|sprite|vtt}, /api/proxy/{performer|studio|tag|group|gallery}/{id}/
 * {image|back_image} and /api/proxy/stash?path=<Stash asset URL or path>.
 *
 * Only Stash's origin (cfg->stash_url) is ever contacted, and only asset
 * paths (/scene/, /performer/, /studio/, /tag/, /group/, /movie/,
 * /gallery/, /image/): the ApiKey header is added here, server-side, and
 * never returned.  Fetches run on a small worker pool (IMG_WORKERS
 * concurrent requests toward Stash); the MHD thread suspends the
 * connection meanwhile (api_req_suspend) and is resumed by the worker.
 * Results land in a bounded on-disk cache (cfg->cache_dir/images, LRU by
 * mtime, capped at cfg->image_cache_max) served with ETag, Cache-Control
 * and 304 on If-None-Match.
 *
 * Cache file format: "PKIMG1\n" <content type> "\n" <bytes>.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"

#define IMG_WORKERS   4
#define IMG_MAX_BYTES (64 * CM_MiB) /* one upstream asset */
#define IMG_MAGIC     "PKIMG1\n"

struct job {
    atomic_int refs;
    char *url;           /* full upstream URL */
    char key[17];        /* hex cache key */
    enum cm_status st;   /* result: CM_OK, CM_NOTFOUND, CM_UPSTREAM, ... */
    struct api_req *req; /* resumed when done */
    struct job *next;
};

struct api_images {
    const struct cm_config *cfg;
    char dir[4096];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    bool stopping;
    pthread_t th[IMG_WORKERS];
    int nth;
    pthread_mutex_t evict_mu;
    atomic_int_fast64_t cached_bytes;
    atomic_uint_fast64_t hits, misses, fetch_errors, not_modified;
};

static void job_unref(void *p)
{
    struct job *j = p;
    if (j && atomic_fetch_sub(&j->refs, 1) == 1) {
        cm_free(j->url);
        cm_free(j);
    }
}

/* ---- Cache ----------------------------------------------------------- */

static int mkdirs(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n >= sizeof tmp)
        return -1;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            tmp[i] = c;
        }
    }
    return 0;
}

struct ent {
    struct timespec mtime;
    off_t size;
    char name[32];
};

static int by_mtime(const void *a, const void *b)
{
    const struct ent *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return (x->mtime.tv_sec > y->mtime.tv_sec) -
               (x->mtime.tv_sec < y->mtime.tv_sec);
    return (x->mtime.tv_nsec > y->mtime.tv_nsec) -
           (x->mtime.tv_nsec < y->mtime.tv_nsec);
}

/* Sums the cache; when over the cap, deletes the oldest files down to
 * 90 % of it. */
static void evict(struct api_images *im, bool force_scan)
{
    DIR *d;
    struct dirent *e;
    struct ent *v = NULL;
    size_t n = 0, cap = 0;
    int64_t total = 0, max = im->cfg->image_cache_max;
    if (!force_scan && atomic_load(&im->cached_bytes) <= max)
        return;
    pthread_mutex_lock(&im->evict_mu);
    d = opendir(im->dir);
    if (!d)
        goto out;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        size_t nl = strlen(e->d_name);
        if (e->d_name[0] == '.' || nl >= sizeof v->name)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            struct ent *nv = cm_realloc(v, nc * sizeof *nv);
            if (!nv)
                break;
            v = nv;
            cap = nc;
        }
        v[n].mtime = st.st_mtim;
        v[n].size = st.st_size;
        memcpy(v[n].name, e->d_name, nl + 1);
        total += st.st_size;
        n++;
    }
    closedir(d);
    if (total > max && n > 0) {
        qsort(v, n, sizeof *v, by_mtime);
        int dfd = open(im->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (size_t i = 0; dfd >= 0 && i < n && total > max / 10 * 9; i++)
            if (unlinkat(dfd, v[i].name, 0) == 0)
                total -= v[i].size;
        if (dfd >= 0)
            close(dfd);
    }
    atomic_store(&im->cached_bytes, total);
out:
    pthread_mutex_unlock(&im->evict_mu);
    cm_free(v);
}

static void cache_path(const struct api_images *im, const char *key, char *out,
                       size_t outlen)
{
    snprintf(out, outlen, "%s/%s", im->dir, key);
}

/* Serves the cached file of key.  CM_NOTFOUND when absent. */
static enum cm_status serve_cached(struct api_images *im, struct api_req *req,
                                   struct api_resp *resp, const char *key)
{
    char path[4200], head[256], etag[64];
    struct stat st;
    ssize_t n;
    size_t hl;
    char *nl;
    const char *inm;
    int fd;
    static _Thread_local char ctype[128];

    cache_path(im, key, path, sizeof path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return CM_NOTFOUND;
    if (fstat(fd, &st) != 0)
        goto bad;
    n = pread(fd, head, sizeof head - 1, 0);
    if (n < (ssize_t)strlen(IMG_MAGIC) + 1)
        goto bad;
    head[n] = '\0';
    if (memcmp(head, IMG_MAGIC, strlen(IMG_MAGIC)) != 0)
        goto bad;
    nl = strchr(head + strlen(IMG_MAGIC), '\n');
    if (!nl)
        goto bad;
    *nl = '\0';
    snprintf(ctype, sizeof ctype, "%.*s", (int)(sizeof ctype - 1),
             head + strlen(IMG_MAGIC));
    hl = (size_t)(nl - head) + 1;
    /* LRU: a hit refreshes the mtime. */
    futimens(fd, NULL);
    snprintf(etag, sizeof etag, "\"%s-%llx\"", key,
             (unsigned long long)st.st_size);
    if (api_resp_header(resp, "ETag", etag) != CM_OK ||
        api_resp_header(resp, "Cache-Control", "private, max-age=86400") !=
            CM_OK) {
        close(fd);
        return CM_NOMEM;
    }
    inm = api_req_header(req, "If-None-Match");
    if (inm && strstr(inm, etag)) {
        close(fd);
        atomic_fetch_add(&im->not_modified, 1);
        resp->status = 304;
        return CM_OK;
    }
    resp->status = 200;
    resp->content_type = ctype;
    api_resp_file(resp, fd, hl, (uint64_t)st.st_size - hl);
    return CM_OK;
bad:
    close(fd);
    unlink(path);
    return CM_NOTFOUND;
}

/* ---- Workers ----------------------------------------------------------- */

struct fetch {
    struct cm_buf body;
    char ctype[128];
    struct api_images *im;
};

static size_t on_data(char *p, size_t sz, size_t nm, void *cls)
{
    struct fetch *f = cls;
    if (cm_buf_append(&f->body, p, sz * nm) != CM_OK)
        return 0;
    return sz * nm;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *cls)
{
    struct fetch *f = cls;
    size_t n = sz * nm;
    if (n > 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
        size_t s = 13, e = n;
        while (s < e && (p[s] == ' ' || p[s] == '\t'))
            s++;
        while (e > s &&
               (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' '))
            e--;
        if (e - s < sizeof f->ctype && !memchr(p + s, '\n', e - s))
            snprintf(f->ctype, sizeof f->ctype, "%.*s", (int)(e - s), p + s);
    }
    return n;
}

static int on_progress(void *cls, curl_off_t a, curl_off_t b, curl_off_t c,
                       curl_off_t d)
{
    struct fetch *f = cls;
    bool stop;
    (void)a, (void)b, (void)c, (void)d;
    pthread_mutex_lock(&f->im->mu);
    stop = f->im->stopping;
    pthread_mutex_unlock(&f->im->mu);
    return stop ? 1 : 0;
}

static enum cm_status store(struct api_images *im, const char *key,
                            const struct fetch *f)
{
    char path[4200], tmp[4300];
    int fd;
    FILE *out;
    bool ok;
    cache_path(im, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0)
        return CM_IO;
    out = fdopen(fd, "wb");
    if (!out) {
        close(fd);
        unlink(tmp);
        return CM_IO;
    }
    ok = fprintf(out, "%s%s\n", IMG_MAGIC,
                 f->ctype[0] ? f->ctype : "application/octet-stream") > 0 &&
         fwrite(f->body.data ? f->body.data : "", 1, f->body.len, out) ==
             f->body.len;
    ok = (fclose(out) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return CM_IO;
    }
    atomic_fetch_add(&im->cached_bytes, (int64_t)f->body.len + 160);
    evict(im, false);
    return CM_OK;
}

static void run_job(struct api_images *im, CURL *c, struct job *j)
{
    struct fetch f;
    struct curl_slist *hdrs = NULL;
    char auth[CM_MAX_CONFIG_VALUE + 16];
    long code = 0;
    CURLcode rc;

    memset(&f, 0, sizeof f);
    cm_buf_init(&f.body, IMG_MAX_BYTES);
    f.im = im;
    curl_easy_reset(c);
    if (im->cfg->stash_api_key) {
        snprintf(auth, sizeof auth, "ApiKey: %s", im->cfg->stash_api_key);
        hdrs = curl_slist_append(NULL, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, j->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &f);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &f);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK) {
        /* Never log the URL's headers (the API key); the URL is ours. */
        cm_warn("api", "image fetch failed: %s", curl_easy_strerror(rc));
        j->st = CM_UPSTREAM;
    } else if (code == 404) {
        j->st = CM_NOTFOUND;
    } else if (code != 200) {
        cm_warn("api", "image fetch: Stash answered HTTP %ld", code);
        j->st = CM_UPSTREAM;
    } else {
        j->st = store(im, j->key, &f);
    }
    if (j->st != CM_OK && j->st != CM_NOTFOUND)
        atomic_fetch_add(&im->fetch_errors, 1);
    curl_slist_free_all(hdrs);
    cm_buf_fini(&f.body);
}

static void *worker(void *arg)
{
    struct api_images *im = arg;
    CURL *c = curl_easy_init();
    for (;;) {
        struct job *j;
        pthread_mutex_lock(&im->mu);
        while (!im->head && !im->stopping)
            pthread_cond_wait(&im->cv, &im->mu);
        j = im->head;
        if (j) {
            im->head = j->next;
            if (!im->head)
                im->tail = NULL;
        }
        if (!j && im->stopping) {
            pthread_mutex_unlock(&im->mu);
            break;
        }
        pthread_mutex_unlock(&im->mu);
        if (!c)
            j->st = CM_NOMEM;
        else
            run_job(im, c, j);
        api_req_resume(j->req);
        job_unref(j);
    }
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

enum cm_status api_images_new(const struct cm_config *cfg,
                              struct api_images **out)
{
    struct api_images *im;
    int n;
    *out = NULL;
    im = cm_calloc(1, sizeof *im);
    if (!im)
        return CM_NOMEM;
    im->cfg = cfg;
    n = snprintf(im->dir, sizeof im->dir, "%s/images",
                 cfg->cache_dir ? cfg->cache_dir : "/tmp/peekd-cache");
    if (n < 0 || (size_t)n >= sizeof im->dir || mkdirs(im->dir) != 0) {
        cm_error("api", "cannot create the image cache directory %s: %s",
                 im->dir, strerror(errno));
        cm_free(im);
        return CM_IO;
    }
    pthread_mutex_init(&im->mu, NULL);
    pthread_cond_init(&im->cv, NULL);
    pthread_mutex_init(&im->evict_mu, NULL);
    evict(im, true);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < IMG_WORKERS; i++) {
        if (pthread_create(&im->th[i], NULL, worker, im) != 0)
            break;
        im->nth++;
    }
    if (im->nth == 0) {
        api_images_free(im);
        return CM_NOMEM;
    }
    *out = im;
    return CM_OK;
}

void api_images_stop(struct api_images *im)
{
    if (!im)
        return;
    pthread_mutex_lock(&im->mu);
    im->stopping = true;
    pthread_cond_broadcast(&im->cv);
    pthread_mutex_unlock(&im->mu);
    for (int i = 0; i < im->nth; i++)
        pthread_join(im->th[i], NULL);
    im->nth = 0;
}

void api_images_free(struct api_images *im)
{
    if (!im)
        return;
    api_images_stop(im);
    pthread_mutex_destroy(&im->mu);
    pthread_cond_destroy(&im->cv);
    pthread_mutex_destroy(&im->evict_mu);
    cm_free(im);
}

enum cm_status api_images_metrics(struct api_images *im, struct cm_buf *out)
{
    return cm_buf_printf(out,
                         "# TYPE peekd_image_cache_hits_total counter\n"
                         "peekd_image_cache_hits_total %llu\n"
                         "# TYPE peekd_image_cache_misses_total counter\n"
                         "peekd_image_cache_misses_total %llu\n"
                         "# TYPE peekd_image_not_modified_total counter\n"
                         "peekd_image_not_modified_total %llu\n"
                         "# TYPE peekd_image_fetch_errors_total counter\n"
                         "peekd_image_fetch_errors_total %llu\n"
                         "# TYPE peekd_image_cache_bytes gauge\n"
                         "peekd_image_cache_bytes %lld\n",
                         (unsigned long long)atomic_load(&im->hits),
                         (unsigned long long)atomic_load(&im->misses),
                         (unsigned long long)atomic_load(&im->not_modified),
                         (unsigned long long)atomic_load(&im->fetch_errors),
                         (long long)atomic_load(&im->cached_bytes));
}

/* ---- The handler ------------------------------------------------------- */

/* Reduces a Stash URL or path to its path+query and checks it is a Stash
 * asset path.  Returns a pointer into s, or NULL when refused. */
static const char *asset_path(const char *s)
{
    static const char *const prefixes[] = {
        "/scene/", "/performer/", "/studio/", "/tag/", "/group/",
        "/movie/", "/gallery/",   "/image/",  NULL};
    const char *p = s;
    const char *scheme = strstr(s, "://");
    if (scheme &&
        (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0)) {
        p = strchr(scheme + 3, '/');
        if (!p)
            return NULL;
    }
    if (p[0] != '/' || p[1] == '/')
        return NULL;
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c < 0x21 || *c == '\\' || *c == 0x7f)
            return NULL;
    {
        size_t qlen = strcspn(p, "?#");
        for (size_t i = 0; i + 1 < qlen; i++)
            if (p[i] == '.' && p[i + 1] == '.')
                return NULL;
        for (size_t i = 0; i + 2 < qlen; i++)
            if (p[i] == '%' && p[i + 1] == '2' &&
                (p[i + 2] == 'e' || p[i + 2] == 'E' || p[i + 2] == 'f' ||
                 p[i + 2] == 'F'))
                return NULL;
    }
    for (int i = 0; prefixes[i]; i++)
        if (strncmp(p, prefixes[i], strlen(prefixes[i])) == 0)
            return p;
    return NULL;
}

static uint8_t etype_of(const char *s, size_t n)
{
    static const struct {
        const char *name;
        uint8_t t;
    } t[] = {{"performer", KV_PERFORMER},
             {"studio", KV_STUDIO},
             {"tag", KV_TAG},
             {"group", KV_GROUP},
             {"gallery", KV_GALLERY}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strlen(t[i].name) == n && memcmp(s, t[i].name, n) == 0)
            return t[i].t;
    return 0;
}

/* Finds the upstream asset of the request into out (a path+query). */
static enum cm_status upstream_of(struct api_req *req, struct api_resp *resp,
                                  struct cm_buf *out)
{
    /* path: /api/proxy/<kind>/<id>/<what> or /api/proxy/stash */
    const char *p = req->path + strlen("/api/proxy/");
    const char *s1 = strchr(p, '/'), *s2, *what;
    uint64_t id;
    struct kv_txn *t;
    struct kv_str src = {NULL, 0};
    enum cm_status st;
    const char *ap;
    char tmp[8192];

    if (strcmp(p, "stash") == 0) {
        const char *arg = api_req_arg(req, "path");
        if (!arg || !*arg)
            return api_fail(resp, CM_INVALID, "path is required", "path");
        ap = asset_path(arg);
        if (!ap)
            return api_fail(resp, CM_INVALID, "not a Stash asset path", "path");
        return cm_buf_puts(out, ap);
    }
    if (!s1)
        return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
    s2 = strchr(s1 + 1, '/');
    if (!s2 || strchr(s2 + 1, '/'))
        return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
    what = s2 + 1;
    if (api_parse_id(s1 + 1, (size_t)(s2 - s1 - 1), &id) != CM_OK)
        return api_fail(resp, CM_INVALID, "Invalid id", "id");
    if ((st = api_req_txn(req, &t)) != CM_OK)
        return st;
    if ((size_t)(s1 - p) == 5 && memcmp(p, "scene", 5) == 0) {
        struct kv_scene sc;
        uint32_t docid;
        st = kv_docid_of(t, id, &docid);
        if (st == CM_OK)
            st = kv_scene_get(t, docid, &sc);
        if (st == CM_NOTFOUND)
            return api_fail(resp, CM_NOTFOUND, "Scene not found", "id");
        if (st != CM_OK)
            return st;
        if (strcmp(what, "screenshot") == 0)
            src = sc.p_screenshot;
        else if (strcmp(what, "preview") == 0)
            src = sc.p_preview;
        else if (strcmp(what, "webp") == 0)
            src = sc.p_webp;
        else if (strcmp(what, "sprite") == 0)
            src = sc.p_sprite;
        else if (strcmp(what, "vtt") == 0)
            src = sc.p_vtt;
        else {
            kv_scene_fini(&sc);
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        }
        if (src.p && src.len < sizeof tmp) {
            memcpy(tmp, src.p, src.len);
            tmp[src.len] = '\0';
        } else {
            src.p = NULL;
        }
        kv_scene_fini(&sc);
    } else {
        uint8_t et = etype_of(p, (size_t)(s1 - p));
        struct kv_entity e;
        bool back = strcmp(what, "back_image") == 0;
        if (!et || (!back && strcmp(what, "image") != 0) ||
            (back && et != KV_GROUP))
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        st = kv_entity_get(t, et, id, &e);
        if (st == CM_NOTFOUND)
            return api_fail(resp, CM_NOTFOUND, "Not found", "id");
        if (st != CM_OK)
            return st;
        src = back ? e.back_image : e.image;
        if (src.p && src.len < sizeof tmp) {
            memcpy(tmp, src.p, src.len);
            tmp[src.len] = '\0';
        } else {
            src.p = NULL;
        }
        kv_entity_fini(&e);
    }
    if (!src.p || !src.len)
        return api_fail(resp, CM_NOTFOUND, "No such image", NULL);
    ap = asset_path(tmp);
    if (!ap)
        return api_fail(resp, CM_NOTFOUND, "No such image", NULL);
    return cm_buf_puts(out, ap);
}

enum cm_status api_h_image(struct api_req *req, struct api_resp *resp)
{
    struct api_images *im = req->ctx->images;
    struct cm_buf up;
    enum cm_status st;
    struct job *j = NULL;
    char key[17];
    const char *base = req->cfg->stash_url;

    if (!im)
        return api_fail(resp, CM_BUSY, "Image proxy unavailable", NULL);
    if (req->resumed) {
        j = req->async;
        if (j->st == CM_OK)
            st = serve_cached(im, req, resp, j->key);
        else
            st = j->st;
        if (st == CM_NOTFOUND)
            return api_fail(resp, CM_NOTFOUND, "No such image", NULL);
        return st;
    }
    cm_buf_init(&up, 8192);
    st = upstream_of(req, resp, &up);
    if (st != CM_OK)
        goto out;
    snprintf(key, sizeof key, "%016llx",
             (unsigned long long)XXH3_64bits(up.data, up.len));
    st = serve_cached(im, req, resp, key);
    if (st == CM_OK) {
        atomic_fetch_add(&im->hits, 1);
        goto out;
    }
    if (st != CM_NOTFOUND)
        goto out;
    atomic_fetch_add(&im->misses, 1);
    if (!base) {
        st = api_fail(resp, CM_NOTFOUND,
                      "No such image (Stash not "
                      "configured)",
                      NULL);
        goto out;
    }
    j = cm_calloc(1, sizeof *j);
    if (!j) {
        st = CM_NOMEM;
        goto out;
    }
    atomic_init(&j->refs, 2); /* the request and the worker */
    memcpy(j->key, key, sizeof key);
    j->req = req;
    j->url = cm_malloc(strlen(base) + up.len + 1);
    if (!j->url) {
        cm_free(j);
        st = CM_NOMEM;
        goto out;
    }
    memcpy(j->url, base, strlen(base));
    memcpy(j->url + strlen(base), up.data, up.len + 1);
    pthread_mutex_lock(&im->mu);
    if (im->stopping) {
        pthread_mutex_unlock(&im->mu);
        cm_free(j->url);
        cm_free(j);
        st = CM_BUSY;
        goto out;
    }
    req->async = j;
    req->async_free = job_unref;
    api_req_suspend(req);
    if (im->tail)
        im->tail->next = j;
    else
        im->head = j;
    im->tail = j;
    pthread_cond_signal(&im->cv);
    pthread_mutex_unlock(&im->mu);
    st = CM_OK;
out:
    cm_buf_fini(&up);
    return st;
}
