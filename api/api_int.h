/*
 * api_int.h - the internal request/response interface of api/, shared by
 * every route file of the module (api_scenes.c, api_entities.c, ... and
 * api_video.c, which the hls engineer owns).
 *
 * Main objects:
 *   struct api_ctx   server-wide state (config, store, metrics, image
 *                    fetcher, video state); defined in api_server.c;
 *                    lives from api_server_start() to api_server_stop().
 *   struct api_req   one HTTP request as the router hands it to a handler:
 *                    method, decoded path, query arguments, headers, the
 *                    whole body (bounded by CM_MAX_REQUEST_BODY), a lazily
 *                    begun read transaction.
 *   struct api_resp  what the handler answers: status, headers, and one of
 *                    a memory body (cm_buf), a file range, or a reader
 *                    callback (streamed).
 *
 * Flow: the server (api_server.c) accumulates the body, builds an api_req,
 * checks auth and CORS, then api_route() dispatches it to one handler.  A
 * handler returns CM_OK after filling resp, or a status that the router
 * turns into a JSON error through the table in api_status.h (the handler
 * may have set resp->err_msg / resp->err_field for the message).  The
 * response is queued by the server on MHD's second (or later) callback,
 * never the first, so keep-alive works.
 *
 * Video: every path /api/scene/{id}/... (stream, hls/..., proxy-stream/...,
 * caption) is dispatched to api_video_handle() with req->scene_id and
 * req->subpath set, AFTER auth.  api_video_init()/api_video_fini() are
 * called once at server start/stop and own *state (req->video).
 *
 * Asynchronous handlers (image fetch, a segment still being transcoded):
 * a handler that must wait for another thread calls api_req_suspend(),
 * stores its job in req->async (freed with req->async_free when the
 * request ends) and returns CM_OK without a response.  The other thread
 * calls api_req_resume(req) exactly once when done; the server then calls
 * the same handler again with req->resumed incremented, and it answers.
 *
 * Thread-safety: a request is handled by one MHD thread at a time; the
 * only cross-thread call is api_req_resume().  Handlers must not block an
 * MHD thread for long (a bounded wait of a few ms at most): use suspend.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/cm_buf.h"
#include "common/cm_config.h"
#include "common/cm_status.h"
#include "kv/kv.h"

struct MHD_Connection;
struct api_ctx;

enum api_method {
    API_GET = 1 << 0,
    API_HEAD = 1 << 1,
    API_POST = 1 << 2,
    API_PUT = 1 << 3,
    API_DELETE = 1 << 4,
    API_OPTIONS = 1 << 5,
    API_PATCH = 1 << 6,
    API_OTHER = 1 << 7,
};

#define API_MAX_ARGS         32 /* query arguments kept per request */
#define API_MAX_REQ_HEADERS  32 /* headers kept when there is no MHD conn */
#define API_MAX_RESP_HEADERS 16

struct api_kv {
    const char *name;  /* borrowed, valid for the request */
    const char *value; /* borrowed; "" for a flag without '=' */
};

/* Route ids, for metrics (one label per route). */
#define API_ROUTE_LIST(X)                                                      \
    X(API_R_UNKNOWN, "unknown")                                                \
    X(API_R_SCENES, "scenes")                                                  \
    X(API_R_SCENE, "scene")                                                    \
    X(API_R_SIMILAR, "similar")                                                \
    X(API_R_ENTITIES, "entities")                                              \
    X(API_R_MINIMAL, "minimal")                                                \
    X(API_R_SYNC, "sync")                                                      \
    X(API_R_HEALTH, "health")                                                  \
    X(API_R_METRICS, "metrics")                                                \
    X(API_R_AUTH, "auth")                                                      \
    X(API_R_IMAGE, "image")                                                    \
    X(API_R_VIDEO, "video")                                                    \
    X(API_R_STATIC, "static")                                                  \
    X(API_R_PREFLIGHT, "preflight")

enum api_route_id {
#define API_X(id, name) id,
    API_ROUTE_LIST(API_X)
#undef API_X
        API_R_COUNT
};

struct api_req {
    struct api_ctx *ctx;         /* server state; NULL in parser tests */
    const struct cm_config *cfg; /* read-only */
    struct kv_store *store;      /* NULL in parser tests */
    struct MHD_Connection *conn; /* NULL in parser tests */
    void *video;                 /* state from api_video_init() */

    enum api_method method;
    const char *method_str; /* as received */
    const char *path;       /* decoded path without the query, NUL-term. */
    size_t path_len;
    struct api_kv args[API_MAX_ARGS]; /* decoded query arguments */
    unsigned n_args;
    struct api_kv hdrs[API_MAX_REQ_HEADERS]; /* only when conn == NULL */
    unsigned n_hdrs;
    const char *body; /* request body, NUL-terminated (NUL not counted);
                         "" when none */
    size_t body_len;

    /* Set by the router. */
    enum api_route_id route;
    uint64_t scene_id;   /* /api/scene/{id}/..., /api/library/scenes/{id} */
    const char *subpath; /* after "/api/scene/{id}/" ("stream",
                            "hls/master.m3u8", ...); "" when none */
    bool authenticated;  /* valid token or cookie (always true when no
                            token is configured) */

    /* Lazily begun read transaction (api_req_txn); ended by the server. */
    struct kv_txn *txn;

    /* Asynchronous handlers (see top). */
    unsigned resumed;           /* times the handler was resumed */
    void *async;                /* handler's job state */
    void (*async_free)(void *); /* frees async at request end (or NULL) */
    atomic_int async_state;     /* server-private */
    bool suspend_requested;     /* server-private */
};

/* A reader callback for streamed bodies (MHD's ContentReaderCallback):
 * copy up to max bytes at position pos into buf and return the count,
 * API_READER_END at the end, API_READER_ERROR to abort the connection.
 * Returning 0 means "no data yet" (MHD polls again: avoid). */
typedef ssize_t (*api_reader_fn)(void *cls, uint64_t pos, char *buf,
                                 size_t max);
#define API_READER_END   ((ssize_t)-1)
#define API_READER_ERROR ((ssize_t)-2)
#define API_SIZE_UNKNOWN UINT64_MAX

struct api_resp {
    unsigned status;          /* HTTP status; 0 = not answered yet */
    const char *content_type; /* static string; NULL = none */
    struct cm_buf body;       /* memory body (bounded by CM_MAX_RESPONSE) */
    char *hdr_name[API_MAX_RESP_HEADERS];  /* owned copies */
    char *hdr_value[API_MAX_RESP_HEADERS]; /* owned copies */
    unsigned n_hdr;

    /* A file range instead of body (fd >= 0): the response takes ownership
     * of fd and closes it. */
    int fd;
    uint64_t fd_off, fd_len;

    /* A streamed body instead of body (reader != NULL): the response takes
     * ownership of reader_cls and releases it with reader_free. */
    api_reader_fn reader;
    void *reader_cls;
    void (*reader_free)(void *cls);
    uint64_t reader_size; /* API_SIZE_UNKNOWN = chunked */
    size_t reader_block;  /* preferred block size; 0 = 64 KiB */

    /* For a handler returning an error status: message and field of the
     * {"error","field"} body (static strings or copies owned by resp). */
    char err_msg[256];
    char err_field[128];
    const char *allow; /* for 405: the Allow header value (static) */
};

/* ---- Request helpers ------------------------------------------------ */

/* The decoded value of query argument name, or NULL. */
const char *api_req_arg(const struct api_req *req, const char *name);

/* The value of request header name (case-insensitive), or NULL. */
const char *api_req_header(const struct api_req *req, const char *name);

/* The value of cookie name from the Cookie header, copied into
 * out[0..outlen) (NUL-terminated).  Returns true when found and fitting. */
bool api_req_cookie(const struct api_req *req, const char *name, char *out,
                    size_t outlen);

/* The request's read transaction, begun on first use (kv_read_begin: the
 * thread's reused handle) and ended by the server as soon as the handler
 * returns, also when it suspends: never keep it across a suspension.
 * OUT *out: borrowed, valid until the handler returns.  CM_IO,
 * CM_UNSUPPORTED (no store). */
enum cm_status api_req_txn(struct api_req *req, struct kv_txn **out) CM_WUR;

/* The base URL for absolute links ("http://host:port" or cfg->public_url,
 * no trailing slash) into out.  CM_TOOBIG, CM_NOMEM. */
enum cm_status api_req_base_url(const struct api_req *req,
                                struct cm_buf *out) CM_WUR;

/* Parses an id as Peek sends it: "123" or "123:instanceId" (any instance
 * is accepted: peekd serves one).  CM_INVALID when not a positive decimal
 * u64 (leading zeros, signs, spaces rejected). */
enum cm_status api_parse_id(const char *s, size_t n, uint64_t *out) CM_WUR;

/* Suspend/resume (see top).  api_req_suspend() is called by the handler
 * (MHD thread); api_req_resume() from any thread, exactly once after
 * api_req_suspend(). */
void api_req_suspend(struct api_req *req);
void api_req_resume(struct api_req *req);

/* ---- Response helpers ----------------------------------------------- */

/* Adds a response header (copied).  CM_TOOBIG past API_MAX_RESP_HEADERS,
 * CM_INVALID for a name or value with CR/LF, CM_NOMEM. */
enum cm_status api_resp_header(struct api_resp *resp, const char *name,
                               const char *value) CM_WUR;

/* Replaces the body with {"error":msg[,"field":field]} and sets status
 * (on out-of-memory the body stays empty; the status is still set). */
void api_resp_error(struct api_resp *resp, unsigned status, const char *msg,
                    const char *field);

/* Sets the error message/field a handler returns with a non-OK status
 * (copied, truncated to the buffers).  field may be NULL.  Returns st so
 * a handler can write: return api_fail(resp, CM_INVALID, "bad", "page"); */
enum cm_status api_fail(struct api_resp *resp, enum cm_status st,
                        const char *msg, const char *field);

/* Sends a file range: takes ownership of fd (closed by the server, also
 * on error). */
void api_resp_file(struct api_resp *resp, int fd, uint64_t off, uint64_t len);

/* Sends a streamed body (see api_reader_fn). Takes ownership of cls. */
void api_resp_reader(struct api_resp *resp, uint64_t size, size_t block,
                     api_reader_fn fn, void *cls, void (*free_fn)(void *));

/* ---- Video (api_video.c, owned by the hls engineer) ------------------ */

/* Called once when the server starts (before any request) and stops
 * (after the last request).  OUT *state: stored in every req->video.
 * Any status other than CM_OK stops the server start. */
enum cm_status api_video_init(const struct cm_config *cfg,
                              struct kv_store *store, void **state) CM_WUR;
void api_video_fini(void *state);

/* Called by api_server_stop() BEFORE MHD stops: completes every suspended
 * video request (they answer 503) and refuses new segment waits, since MHD
 * must not be stopped with suspended connections.  NULL-safe. */
void api_video_quiesce(void *state);

/* Handles every /api/scene/{id}/... request (already authenticated; CORS
 * and OPTIONS handled by the server).  req->scene_id is the Stash scene
 * id, req->subpath the rest of the path.  Returns CM_OK with resp filled,
 * or an error status (CM_NOTFOUND -> 404 JSON, CM_INVALID -> 400, ...). */
enum cm_status api_video_handle(struct api_req *req,
                                struct api_resp *resp) CM_WUR;

/* ---- Router (api_route.c) --------------------------------------------- */

/* Finds the route of req (sets req->route, scene_id, subpath) and runs
 * its handler.  Returns CM_OK with resp filled or the handler's status;
 * unknown paths answer 404, wrong methods 405 with resp->allow set. */
enum cm_status api_route(struct api_req *req, struct api_resp *resp) CM_WUR;

/* Turns a handler's status into resp's status and JSON error body (the
 * X-macro table in api_status.h). */
void api_resp_from_status(struct api_resp *resp, enum cm_status st);

/* Response lifecycle (caller storage). */
void api_resp_init(struct api_resp *resp);
void api_resp_fini(struct api_resp *resp);

/* ---- Parsing (api_req.c; fuzzed by tests/fuzz/fuzz_api_request.c) ---- */

/* The method of a request line token ("GET" ... ; API_OTHER otherwise). */
enum api_method api_method_parse(const char *s);

/* Parses a request target "path[?query]" of len bytes (untrusted, not
 * NUL-terminated) as MHD would deliver it: percent-decodes the path and
 * the query arguments into store[0..storelen) (needs len + 2 bytes or
 * more) and points req->path / req->args into it (extra arguments beyond
 * API_MAX_ARGS are dropped).  CM_TOOBIG past CM_MAX_URL_LEN or storelen,
 * CM_INVALID when the path does not start with '/' or decodes to a NUL
 * or contains a ".." segment. */
enum cm_status api_parse_target(const char *buf, size_t len, char *store,
                                size_t storelen, struct api_req *req) CM_WUR;

/* Checks that the body's JSON nesting stays within CM_MAX_JSON_DEPTH and
 * parses it (cJSON, with cm_alloc hooks).  An empty body gives an empty
 * object.  OUT *root: caller owns, free with cJSON_Delete().  CM_INVALID
 * (+ resp->err_msg) for malformed JSON or a non-object, CM_NOMEM. */
struct cJSON;
enum cm_status api_body_json(const struct api_req *req, struct api_resp *resp,
                             struct cJSON **root) CM_WUR;

/* The route table (api_route.c), NULL-terminated: method and OpenAPI
 * path.  Documentation and tests use it; dispatch is api_route(). */
struct api_route_desc {
    const char *method;
    const char *path;
};
extern const struct api_route_desc api_routes[];
