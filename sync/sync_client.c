/*
 * sync_client.c - the GraphQL client: one reused libcurl easy handle
 * (keep-alive, gzip), bounded response bodies, retries with exponential
 * backoff and jitter for transient failures (see sync.h).
 *
 * libcurl does not decode bodies: we ask for gzip ourselves and, the body
 * being buffered whole anyway, decode it in one pass with libdeflate
 * (sync_gzip.c), which is about 2.5 times faster than libcurl's streaming
 * zlib on Stash's pages (docs/SYNC.md, "HTTP client").  With --sync-gzip
 * auto we stop asking once Stash answers from a loopback address: there
 * compressing costs Stash and us CPU and saves nothing.  A gzip body is
 * decoded whether we asked for it or not.
 *
 * CURLcode and HTTP statuses are translated here, once.  The API key goes
 * into a header and nowhere else: no log line or message carries it.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "sync/sync.h"
#include "sync/sync_queries.h"

struct sync_client {
    CURL *curl;
    struct curl_slist *headers;       /* with Accept-Encoding: gzip */
    struct curl_slist *headers_plain; /* without it */
    enum cm_gzip gzip;                /* the setting */
    bool asks_gzip;                   /* the headers in use */
    char *endpoint;                   /* <url>/graphql */
    struct cm_buf body;  /* response body of the current attempt, as sent */
    struct cm_buf plain; /* the same, gzip-decoded */
    struct sync_gunzip *gz;
    int too_big; /* the write callback hit the bound */
    int retries;
    long backoff_ms;
    atomic_int *stop;
    uint64_t rng; /* jitter PRNG state */
    uint64_t requests;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *sync_query_text(const char *name)
{
    for (const struct sync_query *q = sync_queries; q->name; q++)
        if (strcmp(q->name, name) == 0)
            return q->text;
    return NULL;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    struct sync_client *c = ud;
    size_t len = size * n;
    if (cm_buf_append(&c->body, p, len) != CM_OK) {
        c->too_big = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    return len;
}

/* OUT *out: the request headers, with Accept-Encoding: gzip when gzip is
 * set, and key (NULL = none) as a header line.  CM_NOMEM. */
static enum cm_status headers(struct curl_slist **out, bool gzip,
                              const char *key)
{
    const char *lines[] = {"Content-Type: application/json",
                           "Accept: application/json",
                           gzip ? "Accept-Encoding: gzip" : NULL, key};
    struct curl_slist *l = NULL, *h;

    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!lines[i])
            continue;
        if (!(h = curl_slist_append(l, lines[i]))) {
            curl_slist_free_all(l);
            return CM_NOMEM;
        }
        l = h;
    }
    *out = l;
    return CM_OK;
}

/* True for an address text of 127.0.0.0/8, ::1 or ::ffff:127.x.y.z. */
static bool loopback(const char *ip)
{
    unsigned char a[16];

    if (!ip)
        return false;
    if (inet_pton(AF_INET, ip, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, ip, a) != 1)
        return false;
    if (memcmp(a, in6addr_loopback.s6_addr, 16) == 0)
        return true;
    return memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 && a[12] == 127;
}

/* --sync-gzip auto: once Stash has answered from a loopback address, asks
 * for plain bodies from then on. */
static void gzip_auto(struct sync_client *c)
{
    char *ip = NULL;

    if (c->gzip != CM_GZIP_AUTO || !c->asks_gzip)
        return;
    if (curl_easy_getinfo(c->curl, CURLINFO_PRIMARY_IP, &ip) != CURLE_OK ||
        !loopback(ip))
        return;
    c->asks_gzip = false;
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers_plain);
    cm_info("sync",
            "Stash answers from %s, a loopback address: asking for "
            "uncompressed responses (--sync-gzip)",
            ip);
}

enum cm_status sync_client_new(const struct sync_client_opts *o,
                               struct sync_client **out)
{
    struct sync_client *c = NULL;
    struct cm_buf hdr;
    enum cm_status st = CM_NOMEM;
    size_t ulen;

    *out = NULL;
    cm_buf_init(&hdr, CM_MAX_CONFIG_VALUE + 64);
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        cm_error("sync", "curl_global_init: %s",
                 curl_easy_strerror(curl_init_rc));
        return CM_INTERNAL;
    }
    if (!o->url || !*o->url)
        return CM_INVALID;
    if (!(c = cm_calloc(1, sizeof *c)))
        goto out;
    cm_buf_init(&c->body, CM_MAX_GRAPHQL_RESPONSE);
    cm_buf_init(&c->plain, CM_MAX_GRAPHQL_RESPONSE);
    if ((st = sync_gunzip_new(&c->gz)) != CM_OK)
        goto out;
    st = CM_NOMEM;
    if (o->api_key && *o->api_key &&
        cm_buf_printf(&hdr, "ApiKey: %s", o->api_key) != CM_OK)
        goto out;
    ulen = strlen(o->url);
    while (ulen && o->url[ulen - 1] == '/')
        ulen--;
    if (!(c->endpoint = cm_malloc(ulen + sizeof "/graphql")))
        goto out;
    memcpy(c->endpoint, o->url, ulen);
    memcpy(c->endpoint + ulen, "/graphql", sizeof "/graphql");
    c->retries = o->retries < 0 ? 0 : o->retries;
    c->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 250;
    c->stop = o->stop;
    c->rng = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    if (!(c->curl = curl_easy_init())) {
        st = CM_INTERNAL;
        goto out;
    }
    if (headers(&c->headers, true, hdr.data) != CM_OK ||
        headers(&c->headers_plain, false, hdr.data) != CM_OK)
        goto out;
    c->gzip = o->gzip;
    c->asks_gzip = o->gzip != CM_GZIP_OFF;
    curl_easy_setopt(c->curl, CURLOPT_URL, c->endpoint);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER,
                     c->asks_gzip ? c->headers : c->headers_plain);
    /* Our own Accept-Encoding header above, CURLOPT_ACCEPT_ENCODING left
     * unset (it would also make libcurl decode), and decoding off for good
     * measure: the write callback gets the body as sent. */
    curl_easy_setopt(c->curl, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT,
                     o->connect_timeout_s > 0 ? o->connect_timeout_s : 10L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT,
                     o->timeout_s > 0 ? o->timeout_s : 120L);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    st = CM_OK;
    *out = c;
    c = NULL;
out:
    /* the header text holds the key: wipe it */
    if (hdr.data)
        memset(hdr.data, 0, hdr.cap);
    cm_buf_fini(&hdr);
    sync_client_free(c);
    return st;
}

void sync_client_free(struct sync_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    curl_slist_free_all(c->headers_plain);
    cm_free(c->endpoint);
    cm_buf_fini(&c->body);
    cm_buf_fini(&c->plain);
    sync_gunzip_free(c->gz);
    cm_free(c);
}

/* Appends up to three of Stash's error messages to m. */
static void join_messages(struct sjv errors, char *m, size_t n)
{
    size_t used = strlen(m);
    int k = 0;
    SJ_FOREACH(e, errors)
    {
        const char *msg = sj_str(sj_get(e, "message"), NULL);
        int w;
        if (!msg || used >= n)
            continue;
        w = snprintf(m + used, n - used, "%s%s", k ? "; " : "", msg);
        if (w < 0)
            break;
        used += (size_t)w < n - used ? (size_t)w : n - used - 1;
        if (++k == 3)
            break;
    }
    if (k == 0 && used < n)
        snprintf(m + used, n - used, "(no message)");
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* sync_parse_response() on body[0..len), or, when own is set, on own[0..len)
 * (from cm_malloc, NUL-terminated), which it takes: parsed in place and
 * kept by the document, or freed. */
static enum cm_status response(long http, const char *body, char *own,
                               size_t len, struct sync_json **doc,
                               struct sjv *data, bool *retry, char *err,
                               size_t errlen)
{
    struct sync_json *j = NULL;
    struct sjv root, errors, d;
    char msg[512] = "", why[128] = "";
    enum cm_status st = CM_UPSTREAM;

    *doc = NULL;
    *data = (struct sjv){NULL, 0};
    *retry = false;
    if (http == 401) {
        cm_free(own);
        errf(err, errlen, "Stash rejected the API key (HTTP 401)");
        return CM_UPSTREAM;
    }
    if (http >= 500 && http <= 599) {
        cm_free(own);
        *retry = true;
        errf(err, errlen, "Stash returned HTTP %ld", http);
        return CM_UPSTREAM;
    }
    if (len > CM_MAX_GRAPHQL_RESPONSE) {
        cm_free(own);
        errf(err, errlen, "response larger than %zu bytes",
             (size_t)CM_MAX_GRAPHQL_RESPONSE);
        return CM_TOOBIG;
    }
    if (own && len)
        st = sync_json_parse_buf(own, len, &j, why, sizeof why);
    else if (body && len)
        st = sync_json_parse(body, len, &j, why, sizeof why);
    else
        cm_free(own);
    if (own || body) {
        if (st == CM_NOMEM) {
            errf(err, errlen, "out of memory");
            return st;
        }
        st = CM_UPSTREAM;
    }
    root = sj_root(j);
    if (http != 200) {
        errors = sj_get(root, "errors");
        if (sj_type(errors) == SJ_ARRAY) {
            join_messages(errors, msg, sizeof msg);
            errf(err, errlen, "Stash rejected the query (HTTP %ld): %s", http,
                 msg);
        } else {
            errf(err, errlen, "Stash returned HTTP %ld", http);
        }
        goto out;
    }
    if (sj_type(root) != SJ_OBJECT) {
        if ((!body && !own) || len == 0)
            errf(err, errlen, "malformed response (empty body)");
        else if (why[0])
            errf(err, errlen, "malformed response (%s)", why);
        else
            errf(err, errlen, "malformed response (not an object)");
        goto out;
    }
    errors = sj_get(root, "errors");
    if (!sj_missing(errors) && !sj_is_null(errors)) {
        if (sj_type(errors) != SJ_ARRAY) {
            errf(err, errlen, "malformed response (errors)");
            goto out;
        }
        if (sj_size(errors) > 0) {
            const char *m0 = sj_str(sj_get(sj_first(errors), "message"), NULL);
            errf(err, errlen, "Stash: %s", m0 ? m0 : "(no message)");
            goto out;
        }
    }
    d = sj_get(root, "data");
    if (sj_type(d) != SJ_OBJECT) {
        errf(err, errlen, "malformed response (no data)");
        goto out;
    }
    *doc = j;
    *data = d;
    return CM_OK;
out:
    sync_json_free(j);
    return st;
}

enum cm_status sync_parse_response(long http, const char *body, size_t len,
                                   struct sync_json **doc, struct sjv *data,
                                   bool *retry, char *err, size_t errlen)
{
    return response(http, body, NULL, len, doc, data, retry, err, errlen);
}

static bool retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return true;
    default: return false;
    }
}

enum coding { CODING_IDENTITY, CODING_GZIP, CODING_OTHER };

/* The Content-Encoding of the last response.  OUT name: its value for
 * messages, printable ASCII only. */
static enum coding coding_of(CURL *curl, char *name, size_t n)
{
    struct curl_header *h = NULL;
    const char *v;
    size_t len, k = 0;
    CURLHcode hc;

    name[0] = '\0';
    hc = curl_easy_header(curl, "Content-Encoding", 0, CURLH_HEADER, -1, &h);
    if (hc == CURLHE_MISSING || hc == CURLHE_NOHEADERS)
        return CODING_IDENTITY;
    if (hc != CURLHE_OK || !h || !h->value) {
        snprintf(name, n, "(unreadable: libcurl header error %d)", (int)hc);
        return CODING_OTHER;
    }
    v = h->value;
    while (*v == ' ' || *v == '\t')
        v++;
    len = strlen(v);
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    for (; k < len && k + 1 < n; k++)
        name[k] = v[k] >= 0x20 && v[k] < 0x7f ? v[k] : '?';
    name[k] = '\0';
    if (h->amount > 1)
        return CODING_OTHER;
    if (len == 0 || (len == 8 && strncasecmp(v, "identity", 8) == 0))
        return CODING_IDENTITY;
    if ((len == 4 && strncasecmp(v, "gzip", 4) == 0) ||
        (len == 6 && strncasecmp(v, "x-gzip", 6) == 0))
        return CODING_GZIP;
    return CODING_OTHER;
}

/* Points OUT *body, *len at the body of the last response, gzip-decoded
 * when it says Content-Encoding: gzip.  (For a status other than 200 a
 * body that cannot be decoded is dropped and the status decides.)  A body that
 * is not valid gzip is CM_UPSTREAM with *retry set, as libcurl's
 * CURLE_BAD_CONTENT_ENCODING was (a body mangled or cut in transit may arrive
 * whole next time; libcurl 7.88 missed a stream cut inside a whole message,
 * which then failed as a malformed response, not retried); an encoding we did
 * not ask for is CM_UPSTREAM, not retried; CM_TOOBIG past
 * CM_MAX_GRAPHQL_RESPONSE decoded; CM_NOMEM. */
static enum cm_status decode_body(struct sync_client *c, const char **body,
                                  size_t *len, bool *retry, char *err,
                                  size_t errlen)
{
    char name[64];
    enum cm_status st;

    *body = NULL;
    *len = 0;
    *retry = false;
    switch (coding_of(c->curl, name, sizeof name)) {
    case CODING_IDENTITY:
        *body = c->body.data;
        *len = c->body.len;
        return CM_OK;
    case CODING_OTHER:
        errf(err, errlen,
             "response from %s has Content-Encoding \"%s\" (peekd decodes "
             "only gzip)",
             c->endpoint, name);
        return CM_UPSTREAM;
    case CODING_GZIP: break;
    }
    st = sync_gunzip(c->gz, c->body.data, c->body.len, &c->plain);
    switch (st) {
    case CM_OK:
        *body = c->plain.data;
        *len = c->plain.len;
        return CM_OK;
    case CM_CORRUPT:
        *retry = true;
        errf(err, errlen,
             "response from %s was not valid gzip (Content-Encoding: %s, "
             "%zu bytes)",
             c->endpoint, name, c->body.len);
        return CM_UPSTREAM;
    case CM_TOOBIG:
        errf(err, errlen, "response larger than %zu bytes once decoded",
             (size_t)CM_MAX_GRAPHQL_RESPONSE);
        return CM_TOOBIG;
    default: return st;
    }
}

static bool stopped(const struct sync_client *c)
{
    return c->stop && atomic_load(c->stop);
}

/* Sleeps ms milliseconds in slices, returning early when stopped. */
static void backoff_sleep(struct sync_client *c, long ms)
{
    while (ms > 0 && !stopped(c)) {
        long slice = ms < 50 ? ms : 50;
        struct timespec ts = {0, slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

static long jitter(struct sync_client *c, long ms)
{
    /* xorshift64*: ms * [0.5, 1.0) */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return ms / 2 + (long)((c->rng * 0x2545F4914F6CDD1DULL >> 33) %
                           (uint64_t)(ms / 2 + 1));
}

/* Keeps memory bounded between requests: big pages come and go. */
static void shrink(struct cm_buf *b)
{
    if (b->cap > 16 * CM_MiB) {
        cm_buf_fini(b);
        cm_buf_init(b, CM_MAX_GRAPHQL_RESPONSE);
    } else
        cm_buf_reset(b);
}

enum cm_status sync_client_query(struct sync_client *c, const char *op,
                                 const cJSON *variables, struct sync_json **doc,
                                 struct sjv *data, char *err, size_t errlen)
{
    const char *text = sync_query_text(op);
    cJSON *req = NULL, *vars = NULL;
    char *payload = NULL;
    enum cm_status st = CM_NOMEM;
    long delay = c->backoff_ms;

    *doc = NULL;
    *data = (struct sjv){NULL, 0};
    if (!text) {
        errf(err, errlen, "unknown GraphQL document %s", op);
        return CM_NOTFOUND;
    }
    if (!(req = cJSON_CreateObject()) ||
        !cJSON_AddStringToObject(req, "query", text) ||
        !cJSON_AddStringToObject(req, "operationName", op))
        goto out;
    if (variables) {
        if (!(vars = cJSON_Duplicate(variables, 1)))
            goto out;
        cJSON_AddItemToObject(req, "variables", vars);
    }
    if (!(payload = cJSON_PrintUnformatted(req)))
        goto out;
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    for (int attempt = 0;; attempt++) {
        CURLcode rc;
        long http = 0;
        bool retry = false;

        if (stopped(c)) {
            errf(err, errlen, "sync aborted");
            st = CM_ABORTED;
            goto out;
        }
        cm_buf_reset(&c->body);
        c->too_big = 0;
        c->requests++;
        rc = curl_easy_perform(c->curl);
        if (rc == CURLE_OK) {
            const char *body;
            size_t blen;
            gzip_auto(c);
            curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
            st = decode_body(c, &body, &blen, &retry, err, errlen);
            if (st == CM_OK) {
                /* the document takes the buffer: no copy of the page (a
                 * gzip body's next buffer is one malloc of the size its
                 * trailer gives) */
                struct cm_buf *b = body == c->plain.data  ? &c->plain
                                   : body == c->body.data ? &c->body
                                                          : NULL;
                char *own = b && b->data ? cm_buf_take(b, NULL) : NULL;
                st = response(http, own ? NULL : body, own, blen, doc, data,
                              &retry, err, errlen);
            } else if (http != 200 && st != CM_NOMEM)
                /* the status decides (401, a retried 5xx, a 4xx), as it
                 * did when libcurl decoded: the body is only its detail */
                st = sync_parse_response(http, NULL, 0, doc, data, &retry, err,
                                         errlen);
        } else if (c->too_big) {
            errf(err, errlen, "response larger than %zu bytes",
                 (size_t)CM_MAX_GRAPHQL_RESPONSE);
            st = CM_TOOBIG;
        } else {
            retry = retryable(rc);
            errf(err, errlen, "request to Stash failed: %s",
                 curl_easy_strerror(rc));
            st = CM_UPSTREAM;
        }
        if (st == CM_OK || !retry || attempt >= c->retries)
            break;
        cm_warn("sync", "%s: %s; retry %d/%d", op, err ? err : "", attempt + 1,
                c->retries);
        backoff_sleep(c, jitter(c, delay));
        if (delay < 10000)
            delay *= 2;
    }
    if (st == CM_UPSTREAM && stopped(c)) {
        errf(err, errlen, "sync aborted");
        st = CM_ABORTED;
    }
out:
    if (st == CM_NOMEM)
        errf(err, errlen, "out of memory");
    cJSON_free(payload);
    cJSON_Delete(req);
    shrink(&c->body);
    shrink(&c->plain);
    return st;
}

uint64_t sync_client_requests(const struct sync_client *c)
{
    return c->requests;
}
