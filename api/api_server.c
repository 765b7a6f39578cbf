/*
 * api_server.c - the libmicrohttpd server: epoll + internal polling thread
 * pool, connection limits and timeouts, bounded request bodies, auth and
 * CORS in front of the router, suspend/resume for asynchronous handlers,
 * metrics per request, graceful quiesce.
 *
 * Keep-alive pitfall (performance.md §6.3): MHD 0.9.75 closes the TCP
 * connection after every response queued on the FIRST call of the access
 * handler.  The first call only allocates the per-request state; the
 * response is queued on the second (or a later) call.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_handlers.h"
#include "api/api_status.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"

/* How long api_server_stop() lets requests in flight finish. */
#define STOP_READ_GRACE_MS 1500 /* see drain() */
#define STOP_GRACE_MS      15000

struct api_server {
    struct MHD_Daemon *d;
    atomic_int active; /* requests between first callback and completion */
    struct api_ctx ctx;
    int port;
    bool video_started;
};

/* Per-request state (MHD's con_cls). */
struct rq {
    struct api_req req;
    struct api_resp resp;
    struct cm_buf body;
    struct timespec start;
    bool too_big;      /* body past CM_MAX_REQUEST_BODY */
    size_t discarded;  /* bytes of an oversize body dropped */
    bool handled;      /* resp is final */
    bool arg_overflow; /* more query arguments than API_MAX_ARGS */
    size_t target_len; /* path + query length */
};

/* Bytes of an oversize body read and dropped before answering 413. */
#define DISCARD_MAX (16 * CM_MiB)

enum { AS_NONE, AS_SUSPENDING, AS_SUSPENDED, AS_DONE_EARLY };

void api_req_suspend(struct api_req *req)
{
    req->suspend_requested = true;
    atomic_store(&req->async_state, AS_SUSPENDING);
}

void api_req_resume(struct api_req *req)
{
    int s = atomic_load(&req->async_state);
    for (;;) {
        if (s == AS_SUSPENDING) {
            if (atomic_compare_exchange_weak(&req->async_state, &s,
                                             AS_DONE_EARLY))
                return; /* the server resumes right after suspending */
        } else if (s == AS_SUSPENDED) {
            if (atomic_compare_exchange_weak(&req->async_state, &s, AS_NONE)) {
                if (req->conn)
                    MHD_resume_connection(req->conn);
                return;
            }
        } else {
            return;
        }
    }
}

enum cm_status api_req_txn(struct api_req *req, struct kv_txn **out)
{
    enum cm_status st;
    *out = NULL;
    if (!req->store)
        return CM_UNSUPPORTED;
    if (!req->txn) {
        st = kv_read_begin(req->store, &req->txn);
        if (st != CM_OK) {
            req->txn = NULL;
            return st;
        }
    }
    *out = req->txn;
    return CM_OK;
}

enum cm_status api_req_base_url(const struct api_req *req, struct cm_buf *out)
{
    const char *host;
    if (req->cfg && req->cfg->public_url)
        return cm_buf_puts(out, req->cfg->public_url);
    host = api_req_header(req, "Host");
    if (!host || !*host || strlen(host) > 255 ||
        strpbrk(host, "/\\\"<> \t\r\n@?#"))
        host = "localhost";
    {
        enum cm_status st = cm_buf_puts(out, "http://");
        if (st == CM_OK)
            st = cm_buf_puts(out, host);
        return st;
    }
}

static void ecache_destroy(void *c)
{
    api_ecache_free(c);
}

enum cm_status api_req_ecache(struct api_req *req, struct api_ecache **out,
                              bool *owned)
{
    struct api_ctx *ctx = req->ctx;
    struct api_ecache *c;
    enum cm_status st;
    *out = NULL;
    *owned = false;
    if (!ctx || !ctx->ecache_key_set) {
        *owned = true;
        return api_ecache_new(out);
    }
    c = pthread_getspecific(ctx->ecache_key);
    if (!c) {
        if ((st = api_ecache_new(&c)) != CM_OK)
            return st;
        if (pthread_setspecific(ctx->ecache_key, c) != 0) {
            *owned = true; /* keep working, uncached across requests */
        }
    }
    *out = c;
    return CM_OK;
}

/* ---- Building the MHD response -------------------------------------- */

/* Best-effort header (a failure only loses the header). */
static void hdr(struct api_resp *resp, const char *name, const char *value)
{
    if (api_resp_header(resp, name, value) != CM_OK)
        cm_debug("api", "header %s dropped", name);
}

static bool cors_enabled(const struct api_req *req)
{
    return req->cfg && req->cfg->cors_origin;
}

static enum cm_status add_common_headers(struct api_req *req,
                                         struct api_resp *resp)
{
    enum cm_status st = CM_OK;
    if (cors_enabled(req)) {
        st = api_resp_header(resp, "Access-Control-Allow-Origin",
                             req->cfg->cors_origin);
        if (st == CM_OK)
            st = api_resp_header(resp, "Access-Control-Allow-Credentials",
                                 "true");
        if (st == CM_OK)
            st = api_resp_header(resp, "Vary", "Origin");
    }
    return st;
}

static struct MHD_Response *make_response(struct api_resp *resp)
{
    struct MHD_Response *r = NULL;
    if (resp->fd >= 0) {
        r = MHD_create_response_from_fd_at_offset64(resp->fd_len, resp->fd,
                                                    resp->fd_off);
        if (r)
            resp->fd = -1; /* MHD closes it */
    } else if (resp->reader) {
        r = MHD_create_response_from_callback(
            resp->reader_size == API_SIZE_UNKNOWN ? MHD_SIZE_UNKNOWN
                                                  : resp->reader_size,
            resp->reader_block ? resp->reader_block : 64 * 1024,
            (MHD_ContentReaderCallback)resp->reader, resp->reader_cls,
            resp->reader_free);
        if (r) {
            resp->reader = NULL;
            resp->reader_cls = NULL;
        }
    } else {
        size_t len;
        char *data = cm_buf_take(&resp->body, &len);
        if (!data) {
            r = MHD_create_response_from_buffer(0, (void *)"",
                                                MHD_RESPMEM_PERSISTENT);
        } else {
            r = MHD_create_response_from_buffer_with_free_callback(len, data,
                                                                   cm_free);
            if (!r)
                cm_free(data);
        }
    }
    if (!r)
        return NULL;
    if (resp->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                resp->content_type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    for (unsigned i = 0; i < resp->n_hdr; i++)
        MHD_add_response_header(r, resp->hdr_name[i], resp->hdr_value[i]);
    if (resp->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow);
    return r;
}

static enum MHD_Result queue(struct MHD_Connection *conn, struct rq *q)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    if (add_common_headers(&q->req, &q->resp) != CM_OK) {
        /* headers are best effort */
    }
    r = make_response(&q->resp);
    if (!r)
        return MHD_NO;
    ret = MHD_queue_response(conn, q->resp.status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- The request pipeline -------------------------------------------- */

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value)
{
    struct rq *q = cls;
    (void)kind;
    q->target_len += strlen(key) + 2 + (value ? strlen(value) : 0);
    if (q->req.n_args >= API_MAX_ARGS) {
        q->arg_overflow = true;
        return MHD_YES;
    }
    q->req.args[q->req.n_args].name = key;
    q->req.args[q->req.n_args].value = value ? value : "";
    q->req.n_args++;
    return MHD_YES;
}

static bool is_public(const struct api_req *req)
{
    static const char *const pub[] = {"/api/health", "/api/setup/status",
                                      "/api/auth/login", "/api/auth/logout",
                                      NULL};
    for (int i = 0; pub[i]; i++)
        if (strcmp(req->path, pub[i]) == 0)
            return true;
    /* The web client's own files (not /api, not /metrics) load before
     * sign-in: they hold no data. */
    return req->cfg->web_dir && strncmp(req->path, "/api/", 5) != 0 &&
           strcmp(req->path, "/api") != 0 && strcmp(req->path, "/metrics") != 0;
}

static void preflight(struct api_req *req, struct api_resp *resp)
{
    resp->status = 204;
    if (cors_enabled(req)) {
        hdr(resp, "Access-Control-Allow-Methods",
            "GET, HEAD, POST, PUT, DELETE, OPTIONS");
        hdr(resp, "Access-Control-Allow-Headers",
            "Authorization, Content-Type, Range");
        hdr(resp, "Access-Control-Max-Age", "600");
    }
}

/* Runs auth, preflight, the ready gate and the router; fills q->resp
 * unless the handler suspended. */
static void process(struct rq *q)
{
    struct api_req *req = &q->req;
    struct api_resp *resp = &q->resp;
    struct api_ctx *ctx = req->ctx;
    enum cm_status st;

    if (q->too_big) {
        api_resp_error(resp, 413, "Request body too large", "body");
        return;
    }
    if (q->target_len > CM_MAX_URL_LEN || q->arg_overflow) {
        api_resp_error(resp, 414, "URL too long", NULL);
        return;
    }
    if (req->method == API_OPTIONS) {
        req->route = API_R_PREFLIGHT;
        preflight(req, resp);
        return;
    }
    req->authenticated = api_auth_ok(req);
    if (!req->authenticated && !is_public(req)) {
        api_resp_error(resp, 401, "Authentication required", NULL);
        hdr(resp, "WWW-Authenticate", "Bearer");
        return;
    }
    if (!atomic_load(&ctx->ready) &&
        strncmp(req->path, "/api/library/", 13) == 0) {
        req->route = API_R_SCENES;
        resp->status = 503;
        resp->content_type = "application/json";
        cm_buf_reset(&resp->body);
        if (cm_buf_puts(&resp->body, "{\"error\":\"Server is initializing\","
                                     "\"ready\":false}") != CM_OK)
            cm_buf_reset(&resp->body);
        hdr(resp, "Retry-After", "5");
        return;
    }
    st = api_route(req, resp);
    if (req->txn) {
        kv_read_end(req->txn);
        req->txn = NULL;
    }
    if (req->suspend_requested)
        return;
    if (st != CM_OK) {
        api_resp_from_status(resp, st);
        if (st == CM_INTERNAL || st == CM_IO || st == CM_CORRUPT)
            cm_warn("api", "%s %s: %s", req->method_str, req->path,
                    cm_status_str(st));
    } else if (resp->status == 0) {
        resp->status = 200;
    }
}

static void rq_free(struct rq *q)
{
    if (!q)
        return;
    if (q->req.txn)
        kv_read_end(q->req.txn);
    if (q->req.async && q->req.async_free)
        q->req.async_free(q->req.async);
    api_resp_fini(&q->resp);
    cm_buf_fini(&q->body);
    cm_free(q);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct api_server *srv = cls;
    struct rq *q = *con_cls;
    (void)version;

    if (!q) {
        /* First call: state only, never a response (keep-alive). */
        q = cm_calloc(1, sizeof *q);
        if (!q)
            return MHD_NO;
        atomic_fetch_add(&srv->active, 1);
        clock_gettime(CLOCK_MONOTONIC, &q->start);
        api_resp_init(&q->resp);
        cm_buf_init(&q->body, CM_MAX_REQUEST_BODY);
        q->req.ctx = &srv->ctx;
        q->req.cfg = srv->ctx.cfg;
        q->req.store = srv->ctx.store;
        q->req.conn = conn;
        q->req.video = srv->ctx.video;
        q->req.method_str = method;
        q->req.method = api_method_parse(method);
        q->req.path = url;
        q->req.path_len = strlen(url);
        q->req.subpath = "";
        q->req.body = "";
        q->target_len = q->req.path_len;
        atomic_init(&q->req.async_state, AS_NONE);
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, q);
        *con_cls = q;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!q->too_big && cm_buf_append(&q->body, upload_data, n) != CM_OK) {
            q->too_big = true;
            cm_buf_fini(&q->body);
        }
        if (q->too_big)
            q->discarded += n;
        /* An oversize body is read and dropped up to a bound, so the 413
         * reaches clients that send without Expect: 100-continue; past
         * the bound answer now (MHD closes the connection). */
        if (!q->too_big || q->discarded <= DISCARD_MAX)
            return MHD_YES;
        if (!q->handled) {
            process(q);
            q->handled = true;
        }
        return queue(conn, q);
    }
    if (!q->handled) {
        if (q->req.resumed == 0 && !q->req.suspend_requested) {
            q->req.body = q->body.data ? q->body.data : "";
            q->req.body_len = q->body.len;
        }
        if (q->req.suspend_requested) {
            /* Called again after api_req_resume(). */
            q->req.suspend_requested = false;
            q->req.resumed++;
        }
        process(q);
        if (q->req.suspend_requested) {
            int s = AS_SUSPENDING;
            MHD_suspend_connection(conn);
            if (!atomic_compare_exchange_strong(&q->req.async_state, &s,
                                                AS_SUSPENDED)) {
                /* The job finished before we suspended. */
                atomic_store(&q->req.async_state, AS_NONE);
                MHD_resume_connection(conn);
            }
            return MHD_YES;
        }
        q->handled = true;
    }
    return queue(conn, q);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct api_server *srv = cls;
    struct rq *q = *con_cls;
    struct timespec end;
    double secs;
    (void)conn;
    if (!q)
        return;
    clock_gettime(CLOCK_MONOTONIC, &end);
    secs = (double)(end.tv_sec - q->start.tv_sec) +
           (double)(end.tv_nsec - q->start.tv_nsec) / 1e9;
    api_metrics_observe(
        srv->ctx.metrics, q->req.route,
        q->resp.status
            ? q->resp.status
            : (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 200 : 499),
        secs);
    if (cm_log_enabled(CM_LOG_DEBUG))
        cm_debug("api", "%s %s -> %u (%.3f ms)", q->req.method_str, q->req.path,
                 q->resp.status, secs * 1e3);
    rq_free(q);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->active, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    cm_debug("mhd", "%s", msg);
}

static enum cm_status resolve(const char *host, int port,
                              struct sockaddr_storage *ss, bool *v6)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    int rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    rc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
    if (rc != 0 || !res) {
        cm_error("api", "cannot resolve listen address '%s': %s",
                 host ? host : "", gai_strerror(rc));
        return CM_INVALID;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return CM_OK;
}

enum cm_status api_server_start(const struct cm_config *cfg,
                                struct kv_store *store,
                                const struct api_hooks *hooks, bool ready,
                                struct api_server **out)
{
    struct api_server *srv;
    struct sockaddr_storage ss;
    bool v6 = false;
    enum cm_status st;
    unsigned flags;
    const union MHD_DaemonInfo *info;

    *out = NULL;
    srv = cm_calloc(1, sizeof *srv);
    if (!srv)
        return CM_NOMEM;
    srv->ctx.cfg = cfg;
    srv->ctx.store = store;
    if (hooks)
        srv->ctx.hooks = *hooks;
    atomic_init(&srv->ctx.ready, ready);
    atomic_init(&srv->active, 0);
    api_auth_init(&srv->ctx);
    if ((st = api_metrics_new(&srv->ctx.metrics)) != CM_OK)
        goto fail;
    if ((st = api_elists_new(&srv->ctx.elists)) != CM_OK)
        goto fail;
    if (pthread_key_create(&srv->ctx.ecache_key, ecache_destroy) != 0) {
        st = CM_NOMEM;
        goto fail;
    }
    srv->ctx.ecache_key_set = true;
    if ((st = api_images_new(cfg, &srv->ctx.images)) != CM_OK)
        goto fail;
    if ((st = api_video_init(cfg, store, &srv->ctx.video)) != CM_OK)
        goto fail;
    srv->video_started = true;
    if ((st = resolve(cfg->listen_host, cfg->listen_port, &ss, &v6)) != CM_OK)
        goto fail;

    flags = MHD_USE_EPOLL | MHD_USE_INTERNAL_POLLING_THREAD |
            MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    srv->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(cfg->threads > 1 ? cfg->threads : 1),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)256,
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg->http_timeout > 0 ? cfg->http_timeout : 60),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!srv->d) {
        cm_error("api", "cannot listen on %s:%d: %s", cfg->listen_host,
                 cfg->listen_port, strerror(errno));
        st = CM_IO;
        goto fail;
    }
    info = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? (int)info->port : cfg->listen_port;
    *out = srv;
    return CM_OK;
fail:
    api_server_stop(srv);
    return st;
}

int api_server_port(const struct api_server *srv)
{
    return srv->port;
}

void api_server_set_ready(struct api_server *srv, bool ready)
{
    atomic_store(&srv->ctx.ready, ready);
}

void api_server_quiesce(struct api_server *srv)
{
    MHD_socket s;
    if (!srv || !srv->d)
        return;
    s = MHD_quiesce_daemon(srv->d);
    if (s != MHD_INVALID_SOCKET)
        close(s);
}

/* Number of open connections (0 when MHD cannot tell). */
static unsigned open_connections(struct api_server *srv)
{
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return di ? di->num_connections : 0;
}

/* Waits until no request is in flight (a request whose head arrived and
 * whose response is not yet sent), at most STOP_GRACE_MS.  A request whose
 * bytes were sent before the stop but not yet read by a worker is not
 * counted yet: while connections are open and nothing is counted, first
 * give the workers STOP_READ_GRACE_MS to read what already arrived (idle
 * keep-alive connections cost that much at shutdown, then close). */
static void drain(struct api_server *srv)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    int waited = 0;
    while (atomic_load(&srv->active) == 0 && open_connections(srv) > 0 &&
           waited < STOP_READ_GRACE_MS) {
        nanosleep(&ts, NULL);
        waited += 5;
    }
    waited = 0;
    while (atomic_load(&srv->active) > 0 && waited < STOP_GRACE_MS) {
        nanosleep(&ts, NULL);
        waited += 5;
    }
    if (atomic_load(&srv->active) > 0)
        cm_warn("api", "stopping with %d request(s) still in flight",
                atomic_load(&srv->active));
}

void api_server_stop(struct api_server *srv)
{
    if (!srv)
        return;
    if (srv->d)
        drain(srv);
    /* Image workers first: their pending requests are resumed (503) so
     * MHD can finish them. */
    api_images_stop(srv->ctx.images);
    if (srv->video_started)
        api_video_quiesce(srv->ctx.video); /* resume suspended segments */
    if (srv->d)
        MHD_stop_daemon(srv->d);
    api_images_free(srv->ctx.images);
    if (srv->video_started)
        api_video_fini(srv->ctx.video);
    api_metrics_free(srv->ctx.metrics);
    api_elists_free(srv->ctx.elists);
    /* MHD's threads have exited (their caches were freed by the key's
     * destructor); a cache of this thread (none in the server) would be
     * freed here. */
    if (srv->ctx.ecache_key_set) {
        api_ecache_free(pthread_getspecific(srv->ctx.ecache_key));
        pthread_key_delete(srv->ctx.ecache_key);
    }
    cm_free(srv);
}
