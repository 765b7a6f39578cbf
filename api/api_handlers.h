/*
 * api_handlers.h - the route handlers of api/ and the helpers they share
 * (JSON rendering of scenes and entities, auth, metrics, images).  Private
 * to api/ (api_int.h is the part the video routes use).  Every handler
 * follows api_int.h's contract: CM_OK with resp filled, or an error status
 * (with api_fail() for the message).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "api/api_int.h"
#include "common/cm_buf.h"
#include "kv/kv.h"

#define API_INSTANCE_ID "peekd" /* the constant instanceId of every ref */

/* The server-wide state (api_server.c). */
struct api_metrics;
struct api_images;
struct api_ctx {
    const struct cm_config *cfg;
    struct kv_store *store;
    struct api_hooks hooks;
    atomic_bool ready; /* first sync done */
    struct api_metrics *metrics;
    struct api_images *images;
    void *video;    /* api_video_init() state */
    bool token_set; /* cfg->token configured */
};

/* ---- JSON (api_json.c) ------------------------------------------------ */

/* Appends s as a JSON string, or null when s->p is NULL. */
enum cm_status api_json_str(struct cm_buf *b, struct kv_str s) CM_WUR;
/* Appends a kv_date as "YYYY[-MM[-DD]]" or null. */
enum cm_status api_json_date(struct cm_buf *b, struct kv_date d) CM_WUR;
/* Appends a double in shortest round-trip form (null for NaN/inf). */
enum cm_status api_json_double(struct cm_buf *b, double v) CM_WUR;

/* Appends the NormalizedScene JSON object of sc (Peek's §4.2 shape).
 * base: absolute base URL for sceneStreams.  t: the read transaction (for
 * parent studios and inherited tags).  CM_TOOBIG, CM_NOMEM, CM_IO. */
enum cm_status api_scene_json(struct api_req *req, struct kv_txn *t,
                              const struct kv_scene *sc, const char *base,
                              struct cm_buf *b) CM_WUR;

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
