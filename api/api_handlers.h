/*
 * api_handlers.h - the route handlers of api/ and the helpers they share
 * (JSON rendering of scenes and entities, auth, metrics, images).  Private
 * to api/ (api_int.h is the part the video routes use).  Every handler
 * follows api_int.h's contract: CM_OK with resp filled, or an error status
 * (with api_fail() for the message).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "api/api.h"
#include "api/api_int.h"
#include "common/cm_buf.h"
#include "kv/kv.h"

#define API_INSTANCE_ID "peekd" /* the constant instanceId of every ref */

/* The server-wide state (api_server.c). */
struct api_metrics;
struct api_images;
struct api_elists;
struct api_ctx {
    const struct cm_config *cfg;
    struct kv_store *store;
    struct api_hooks hooks;
    atomic_bool ready; /* first sync done */
    struct api_metrics *metrics;
    struct api_images *images;
    void *video;               /* api_video_init() state */
    bool token_set;            /* cfg->token configured */
    struct api_elists *elists; /* entity list snapshots (may be NULL) */
    pthread_key_t ecache_key;  /* per-thread struct api_ecache */
    bool ecache_key_set;       /* ecache_key was created */
};

/* ---- JSON (api_json.c) ------------------------------------------------ */

/* The hot path writes JSON without printf (performance.md §9 item 11):
 * api_put() is cm_buf_append() with an inline fast path for short writes
 * (it relies on cm_buf's invariant cap <= max + 1, so "room for n bytes
 * and the NUL" also means "within max"); numbers are formatted by hand.
 * Every function appends to b and returns CM_OK, CM_TOOBIG (past b->max)
 * or CM_NOMEM; on error b holds a prefix of the intended output (callers
 * discard the whole body on error). */
static inline enum cm_status api_put(struct cm_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len > n) { /* data != NULL: cap > len */
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return CM_OK;
    }
    return cm_buf_append(b, p, n);
}
#define API_LIT(b, s) api_put((b), (s), sizeof(s) - 1)

#define API_U64_CHARS 24 /* room for any u64/i64 in decimal, with sign */
#define API_DBL_CHARS 40 /* room for any api_fmt_double() output */

/* Writes v in decimal so that it ends at end (exclusive); returns the
 * first character.  end must have API_U64_CHARS bytes before it. */
char *api_fmt_u64(char *end, uint64_t v);
/* The JSON number of v into out[API_DBL_CHARS] (not NUL-terminated):
 * integral values below 9e15 as integers, others in the shortest form of
 * "%.15g" that reads back as v, else "%.17g" (the text of the former
 * printf-based code: integers and up to 6 decimals by hand, the rest via
 * snprintf).  Returns the length, 0 for NaN and infinities (no JSON
 * number: callers write null). */
size_t api_fmt_double(double v, char *out);

/* Appends v in decimal / as a JSON string "v" (Peek's ids). */
enum cm_status api_json_u64(struct cm_buf *b, uint64_t v) CM_WUR;
enum cm_status api_json_i64(struct cm_buf *b, int64_t v) CM_WUR;
enum cm_status api_json_id(struct cm_buf *b, uint64_t v) CM_WUR;
/* Appends s[0..n) as a JSON string literal: byte-for-byte the output of
 * cm_buf_put_json_str() (RFC 8259 escapes, invalid UTF-8 -> U+FFFD, NULL
 * -> null), with a copy loop for plain ASCII runs.  On error b is
 * unchanged. */
enum cm_status api_json_strn(struct cm_buf *b, const char *s, size_t n) CM_WUR;
/* Appends s as a JSON string, or null when s->p is NULL. */
enum cm_status api_json_str(struct cm_buf *b, struct kv_str s) CM_WUR;
/* Appends a kv_date as "YYYY[-MM[-DD]]" or null. */
enum cm_status api_json_date(struct cm_buf *b, struct kv_date d) CM_WUR;
/* Appends a double (api_fmt_double; null for NaN/inf). */
enum cm_status api_json_double(struct cm_buf *b, double v) CM_WUR;

/* A cache of the entity fields a scene record does not carry (a studio's
 * parent, the tags inherited from performers, studio and groups, and
 * those tags' names), copied out of the records: a page of scenes shares
 * studios and performers, and consecutive requests share most of them.
 * Entries belong to one LMDB snapshot (mdb_txn_id): api_ecache_begin()
 * with a newer transaction empties the table, with an older one bypasses
 * it for that request.  Bounded (API_ECACHE_MAX entries; past that,
 * lookups are not cached).  One thread at a time: the server keeps one
 * per MHD thread (api_ctx.ecache_key), tests and tools may make their
 * own.  OUT *out: caller owns, free with api_ecache_free(). */
#define API_ECACHE_MAX 16384
struct api_ecache;
enum cm_status api_ecache_new(struct api_ecache **out) CM_WUR;
/* Starts a request on read transaction t (borrowed until the next begin). */
void api_ecache_begin(struct api_ecache *c, struct kv_txn *t);
void api_ecache_free(struct api_ecache *c); /* NULL-safe */

/* Scene fragments kept per cache: the rendered JSON of a scene without its
 * sceneStreams (rendered per request: absolute URLs on the request's base). */
#define API_FRAG_SLOTS     4096              /* table slots (<= half used) */
#define API_FRAG_MAX_BYTES (8 * 1024 * 1024) /* bytes kept per cache */

/* Appends the NormalizedScene JSON of the scene at docid (read through the
 * transaction of the last api_ecache_begin()), from the cache's fragment
 * when the snapshot already rendered it, else decoded, rendered and kept.
 * Output is byte for byte api_scene_json()'s.  CM_NOTFOUND (no such
 * record: nothing appended), CM_TOOBIG, CM_NOMEM, CM_IO, CM_CORRUPT. */
enum cm_status api_scene_json_docid(struct api_req *req, struct api_ecache *ec,
                                    uint32_t docid, const char *base,
                                    size_t base_len, struct cm_buf *b) CM_WUR;

/* The calling thread's cache for req's server (created on first use), or
 * a new one owned by the caller when the server keeps none (*owned set:
 * free it after the request).  CM_NOMEM. */
enum cm_status api_req_ecache(struct api_req *req, struct api_ecache **out,
                              bool *owned) CM_WUR;

/* Appends the NormalizedScene JSON object of sc (Peek's §4.2 shape).
 * base: absolute base URL for sceneStreams (base_len bytes).  ec: the
 * request's entity cache over the read transaction (parent studios and
 * inherited tags).  CM_TOOBIG, CM_NOMEM, CM_IO. */
enum cm_status api_scene_json(struct api_req *req, struct api_ecache *ec,
                              const struct kv_scene *sc, const char *base,
                              size_t base_len, struct cm_buf *b) CM_WUR;

/* ---- Handlers --------------------------------------------------------- */

enum cm_status api_h_scenes(struct api_req *req, struct api_resp *resp) CM_WUR;
enum cm_status api_h_scene(struct api_req *req, struct api_resp *resp) CM_WUR;
enum cm_status api_h_similar(struct api_req *req, struct api_resp *resp) CM_WUR;
/* etype: enum kv_etype of the list. */
enum cm_status api_h_entities(struct api_req *req, struct api_resp *resp,
                              uint8_t etype) CM_WUR;
enum cm_status api_h_minimal(struct api_req *req, struct api_resp *resp,
                             uint8_t etype) CM_WUR;
enum cm_status api_h_health(struct api_req *req, struct api_resp *resp) CM_WUR;
enum cm_status api_h_metrics(struct api_req *req, struct api_resp *resp) CM_WUR;
enum cm_status api_h_sync_status(struct api_req *req,
                                 struct api_resp *resp) CM_WUR;
enum cm_status api_h_sync_trigger(struct api_req *req,
                                  struct api_resp *resp) CM_WUR;
enum cm_status api_h_sync_abort(struct api_req *req,
                                struct api_resp *resp) CM_WUR;
enum cm_status api_h_setup_status(struct api_req *req,
                                  struct api_resp *resp) CM_WUR;
enum cm_status api_h_auth_check(struct api_req *req,
                                struct api_resp *resp) CM_WUR;
enum cm_status api_h_auth_login(struct api_req *req,
                                struct api_resp *resp) CM_WUR;
enum cm_status api_h_auth_logout(struct api_req *req,
                                 struct api_resp *resp) CM_WUR;
/* /api/proxy/...: kind is "scene", "performer", ...; what the asset. */
enum cm_status api_h_image(struct api_req *req, struct api_resp *resp) CM_WUR;
enum cm_status api_h_static(struct api_req *req, struct api_resp *resp) CM_WUR;

/* ---- Entity list snapshots (api_entities.c) ------------------------------
 * The entity list routes filter and sort every entity of a type.  Instead
 * of decoding and natural-sorting tens of thousands of records per
 * request, api_entities.c keeps, per type, a snapshot built from one read
 * transaction (keyed by LMDB's txn id: any commit makes a new one): the
 * sort and filter fields copied out, names pre-ranked, scene counts
 * computed on first use.  Requests on the same snapshot only filter and
 * select the page (partial sort).  Shared by the MHD threads: a mutex
 * guards the table (held to build or to take a reference), snapshots are
 * immutable once published and reference-counted. */
enum cm_status api_elists_new(struct api_elists **out) CM_WUR;
void api_elists_free(struct api_elists *el); /* NULL-safe; no request may
                                                 be running */

/* ---- Auth (api_auth.c) ------------------------------------------------ */

/* Prepares auth state from cfg->token. */
void api_auth_init(struct api_ctx *ctx);
/* The sign-in cookie value valid until exp (unix seconds) into out
 * ("<exp>.<64 hex>"; outlen >= 96).  Derived from the token with a keyed
 * hash: the token itself never appears in it. */
void api_auth_session(const struct api_ctx *ctx, int64_t exp, char *out,
                      size_t outlen);
/* Whether req carries the token (Bearer) or the session cookie; true when
 * no token is configured. */
bool api_auth_ok(const struct api_req *req);
/* Constant-time comparison of a[0..an) and b[0..bn). */
bool api_ct_equal(const void *a, size_t an, const void *b, size_t bn);

/* ---- Metrics (api_metrics.c) ------------------------------------------ */

enum cm_status api_metrics_new(struct api_metrics **out) CM_WUR;
void api_metrics_free(struct api_metrics *m);
/* Records one answered request. */
void api_metrics_observe(struct api_metrics *m, enum api_route_id route,
                         unsigned status, double seconds);

/* ---- Images (api_images.c) -------------------------------------------- */

enum cm_status api_images_new(const struct cm_config *cfg,
                              struct api_images **out) CM_WUR;
/* Stops the workers: running fetches are aborted, queued ones fail, and
 * their requests are resumed; later requests answer 503.  NULL-safe. */
void api_images_stop(struct api_images *im);
/* Stops (if needed) and frees.  NULL-safe. */
void api_images_free(struct api_images *im);
/* Image fetch counters for /metrics. */
enum cm_status api_images_metrics(struct api_images *im,
                                  struct cm_buf *out) CM_WUR;
