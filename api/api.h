/*
 * api.h - peekd's HTTP server: Peek's REST contract on libmicrohttpd.
 *
 * Main object: struct api_server, one per process, created by
 * api_server_start() (binds, starts MHD's epoll thread pool) and destroyed
 * by api_server_stop().  Sync is reached through struct api_hooks so that
 * api/ does not depend on the scheduler's internals (cmd/cmd_serve.c wires
 * them to sync/; tests may pass their own).
 *
 * Thread-safety: start/quiesce/stop from one (the main) thread; requests
 * are served by MHD's pool; api_server_set_ready() from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/cm_buf.h"
#include "common/cm_config.h"
#include "common/cm_status.h"
#include "kv/kv.h"

/* What the server needs from the sync scheduler.  Every member may be NULL
 * (sync not configured): the sync routes then answer 503 / a status saying
 * sync is off.  Functions are called from MHD threads. */
struct api_hooks {
    void *cls;
    /* Appends the JSON object of GET /api/sync/status to out. */
    enum cm_status (*sync_status_json)(void *cls, struct cm_buf *out);
    /* Appends Prometheus lines (sync progress gauges) to out. */
    enum cm_status (*sync_metrics)(void *cls, struct cm_buf *out);
    /* Requests a sync: full or incremental.  CM_BUSY when one runs. */
    enum cm_status (*sync_trigger)(void *cls, bool full);
    /* Asks the running sync to stop at a page boundary.  CM_NOTFOUND when
     * none runs. */
    enum cm_status (*sync_abort)(void *cls);
};

struct api_server;

/* Starts serving cfg->listen_host:cfg->listen_port (port 0 = any free
 * port; see api_server_port) with cfg->threads MHD threads over store.
 * ready: whether library routes answer now (false = 503 "Server is
 * initializing" until api_server_set_ready(true)).  OUT *out: caller owns,
 * stop with api_server_stop().  CM_IO (bind failure, message logged),
 * CM_NOMEM, CM_INVALID (bad listen address). */
enum cm_status api_server_start(const struct cm_config *cfg,
                                struct kv_store *store,
                                const struct api_hooks *hooks, bool ready,
                                struct api_server **out) CM_WUR;

/* The bound TCP port. */
int api_server_port(const struct api_server *srv);

/* Marks the store as ready (first sync done). */
void api_server_set_ready(struct api_server *srv, bool ready);

/* Stops accepting new connections (in-flight requests continue). */
void api_server_quiesce(struct api_server *srv);

/* Stops the server: lets the requests in flight finish (their bodies may
 * still be arriving; at most 15 s), then closes every connection and
 * frees everything.  Call api_server_quiesce() first so no new
 * connection arrives meanwhile.  NULL-safe. */
void api_server_stop(struct api_server *srv);
