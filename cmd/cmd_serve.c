/*
 * cmd_serve.c - `peekd serve`: open the store (rebuilding the indexes when
 * only their version differs), start background sync when STASH_URL is
 * set, serve the REST API and video until SIGTERM/SIGINT, then shut down
 * gracefully: stop accepting, stop the sync at a page boundary, let
 * in-flight requests finish, close the store.
 *
 * The readiness line (stderr, and stdout for scripts) names the real
 * listen address, so `--listen 127.0.0.1:0` can be used by tests:
 *   peekd ready: listening on http://127.0.0.1:PORT (scenes N, ...)
 */
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/api.h"
#include "cmd/cmd.h"
#include "common/cm_log.h"
#include "index/idx.h"
#include "kv/kv.h"
#include "sync/sync.h"

struct serve {
    struct sync_status status;
    struct sync_scheduler *sched;
    bool have_status;
};

/* ---- Hooks for api/ ---------------------------------------------------- */

static enum cm_status put_str(struct cm_buf *b, const char *s)
{
    return cm_buf_put_json_str(b, s, strlen(s));
}

static enum cm_status hook_status(void *cls, struct cm_buf *b)
{
    struct serve *sv = cls;
    struct sync_status_view v;
    enum cm_status st;
    sync_status_snapshot(&sv->status, &v);
    st = cm_buf_printf(b,
                       "{\"enabled\":true,\"running\":%s,\"mode\":\"%s\","
                       "\"started\":%lld,\"finished\":%lld,"
                       "\"lastSuccess\":%lld,\"lastSweep\":%lld,"
                       "\"lastReconcile\":%lld,\"lastError\":",
                       v.running ? "true" : "false",
                       v.mode == SYNC_FULL ? "full" : "incremental",
                       (long long)v.started, (long long)v.finished,
                       (long long)v.last_success, (long long)v.last_sweep,
                       (long long)v.last_reconcile);
    if (st == CM_OK)
        st =
            v.last_error[0] ? put_str(b, v.last_error) : cm_buf_puts(b, "null");
    if (st == CM_OK)
        st = cm_buf_puts(b, ",\"types\":{");
    for (int i = 0; i < SYNC_NTYPES && st == CM_OK; i++) {
        const struct sync_type_status *t = &v.types[i];
        st = cm_buf_printf(b,
                           "%s\"%s\":{\"done\":%llu,\"total\":%llu,"
                           "\"rate\":%.1f,\"eta\":%.1f,\"phase\":",
                           i ? "," : "", sync_type_name((enum sync_type)i),
                           (unsigned long long)t->done,
                           (unsigned long long)t->total, t->rate, t->eta_s);
        if (st == CM_OK)
            st = put_str(b, t->phase);
        if (st == CM_OK)
            st = cm_buf_puts(b, ",\"lastError\":");
        if (st == CM_OK)
            st = t->last_error[0] ? put_str(b, t->last_error)
                                  : cm_buf_puts(b, "null");
        if (st == CM_OK)
            st = cm_buf_printf(b, ",\"lastSuccess\":%lld}",
                               (long long)t->last_success);
    }
    if (st == CM_OK)
        st = cm_buf_puts(b, "}}");
    return st;
}

static enum cm_status hook_metrics(void *cls, struct cm_buf *b)
{
    struct serve *sv = cls;
    struct sync_status_view v;
    enum cm_status st;
    sync_status_snapshot(&sv->status, &v);
    st = cm_buf_printf(b,
                       "# TYPE peekd_sync_running gauge\n"
                       "peekd_sync_running %d\n"
                       "# TYPE peekd_sync_last_success_timestamp gauge\n"
                       "peekd_sync_last_success_timestamp %lld\n"
                       "# TYPE peekd_sync_last_sweep_timestamp gauge\n"
                       "peekd_sync_last_sweep_timestamp %lld\n"
                       "# TYPE peekd_sync_last_reconcile_timestamp gauge\n"
                       "peekd_sync_last_reconcile_timestamp %lld\n"
                       "# TYPE peekd_sync_items_done gauge\n"
                       "# TYPE peekd_sync_items_total gauge\n"
                       "# TYPE peekd_sync_rate gauge\n",
                       v.running ? 1 : 0, (long long)v.last_success,
                       (long long)v.last_sweep, (long long)v.last_reconcile);
    for (int i = 0; i < SYNC_NTYPES && st == CM_OK; i++) {
        const char *n = sync_type_name((enum sync_type)i);
        st = cm_buf_printf(b,
                           "peekd_sync_items_done{type=\"%s\"} %llu\n"
                           "peekd_sync_items_total{type=\"%s\"} %llu\n"
                           "peekd_sync_rate{type=\"%s\"} %.1f\n",
                           n, (unsigned long long)v.types[i].done, n,
                           (unsigned long long)v.types[i].total, n,
                           v.types[i].rate);
    }
    return st;
}

static enum cm_status hook_trigger(void *cls, bool full)
{
    struct serve *sv = cls;
    return sync_trigger(sv->sched, full ? SYNC_FULL : SYNC_INCREMENTAL);
}

static enum cm_status hook_abort(void *cls)
{
    struct serve *sv = cls;
    struct sync_status_view v;
    sync_status_snapshot(&sv->status, &v);
    if (!v.running)
        return CM_NOTFOUND;
    sync_abort(sv->sched);
    return CM_OK;
}

/* ---- Start-up helpers ---------------------------------------------------- */

static enum cm_status set_index_version(struct kv_txn *t, void *ctx)
{
    (void)ctx;
    return kv_index_version_set(t);
}

/* Rebuilds the indexes when their version differs, or when an unfinished
 * first sync deferred them and no Stash URL is set (with one, the
 * scheduled sync resumes that sync and builds them at its end). */
static enum cm_status check_index(struct kv_store *store, bool syncing,
                                  bool *left_deferred)
{
    struct kv_txn *t;
    bool ok = true, deferred = false;
    uint64_t n = 0;
    enum cm_status st = kv_read_begin(store, &t);
    *left_deferred = false;
    if (st != CM_OK)
        return st;
    st = kv_index_version_ok(t, &ok);
    if (st == CM_OK)
        st = kv_index_deferred(t, &deferred);
    kv_read_end(t);
    if (st != CM_OK || (ok && !deferred))
        return st;
    if (ok && syncing) {
        cm_info("serve", "an unfinished first sync deferred the indexes: "
                         "the sync resumes and builds them at its end");
        *left_deferred = true;
        return CM_OK;
    }
    if (!ok)
        cm_info("serve",
                "index version differs from %d: rebuilding the "
                "indexes from the stored records",
                KV_INDEX_VERSION);
    else
        cm_info("serve", "an unfinished first sync deferred the indexes and "
                         "no Stash URL is set: building them from the "
                         "stored records");
    st = idx_rebuild(store, &n);
    if (st != CM_OK)
        return st;
    st = kv_write_run(store, set_index_version, NULL);
    if (st == CM_OK)
        cm_info("serve", "indexes rebuilt: %llu scenes", (unsigned long long)n);
    return st;
}

static void store_figures(struct kv_store *store, uint64_t *scenes,
                          uint64_t *entities, uint64_t *bytes)
{
    struct kv_txn *t;
    MDB_stat ms;
    char path[4096];
    struct stat sb;
    *scenes = *entities = *bytes = 0;
    if (kv_read_begin(store, &t) == CM_OK) {
        if (kv_scene_count(t, scenes) != CM_OK)
            *scenes = 0;
        if (mdb_stat(kv_txn_mdb(t), kv_dbi(store, KV_DB_ENTITIES), &ms) == 0)
            *entities = ms.ms_entries;
        kv_read_end(t);
    }
    snprintf(path, sizeof path, "%s/data.mdb", kv_dir(store));
    if (stat(path, &sb) == 0)
        *bytes = (uint64_t)sb.st_blocks * 512;
}

static bool synced_once(struct serve *sv)
{
    struct sync_status_view v;
    sync_status_snapshot(&sv->status, &v);
    return v.last_success > 0;
}

int cmd_serve(int argc, char **argv)
{
    struct cm_config cfg;
    struct kv_options opt;
    struct kv_store *store = NULL;
    struct api_server *srv = NULL;
    struct api_hooks hooks;
    struct serve sv;
    char err[512];
    int rc, exit_code = 1;
    sigset_t sigs;
    uint64_t scenes, entities, bytes;
    bool ready, deferred = false;
    enum cm_status st;

    if (cmd_setup(CM_CMD_SERVE, "serve",
                  "serve the REST API and video (and sync on a schedule "
                  "when STASH_URL is set)",
                  argc, argv, &cfg, NULL, NULL, &rc))
        return rc;
    memset(&sv, 0, sizeof sv);
    memset(&hooks, 0, sizeof hooks);
    memset(&opt, 0, sizeof opt);
    opt.map_size = (size_t)cfg.map_size;
    opt.allow_network_fs = cfg.allow_network_fs;

    /* Signals are taken by this thread only (sigtimedwait below). */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    st = kv_open(cfg.data_dir, &opt, &store, err, sizeof err);
    if (st != CM_OK) {
        fprintf(stderr, "peekd serve: %s\n", err);
        goto out;
    }
    if ((st = check_index(store, cfg.stash_url != NULL, &deferred)) != CM_OK) {
        fprintf(stderr, "peekd serve: index rebuild failed: %s\n",
                cm_status_str(st));
        goto out;
    }
    store_figures(store, &scenes, &entities, &bytes);
    /* Sort orders are built in the background: no query waits for one. */
    if ((st = idx_builder_start(store)) != CM_OK)
        cm_warn("serve",
                "no background sort-order builder (%s): queries build "
                "their orders themselves",
                cm_status_str(st));
    ready = true;
    if (cfg.stash_url) {
        if (sync_status_init(&sv.status) != CM_OK)
            goto out;
        sv.have_status = true;
        hooks.cls = &sv;
        hooks.sync_status_json = hook_status;
        hooks.sync_metrics = hook_metrics;
        hooks.sync_trigger = hook_trigger;
        hooks.sync_abort = hook_abort;
        /* An empty store (or one whose first sync deferred its indexes)
         * answers 503 until the first sync completes; a store synced
         * before serves at once (instant restarts). */
        ready = (scenes > 0 || entities > 0) && !deferred;
    }
    st = api_server_start(&cfg, store, &hooks, ready, &srv);
    if (st != CM_OK) {
        fprintf(stderr, "peekd serve: cannot serve on %s:%d (%s)\n",
                cfg.listen_host, cfg.listen_port, cm_status_str(st));
        goto out;
    }
    if (cfg.stash_url) {
        st = sync_scheduler_start(store, &cfg, &sv.status, &sv.sched);
        if (st != CM_OK) {
            fprintf(stderr, "peekd serve: cannot start sync: %s\n",
                    cm_status_str(st));
            goto out;
        }
    }
    cm_info("serve",
            "peekd ready: listening on http://%s:%d (scenes %llu, entities "
            "%llu, store %.1f MiB, sync %s, auth %s)",
            cfg.listen_host, api_server_port(srv), (unsigned long long)scenes,
            (unsigned long long)entities, (double)bytes / (1024.0 * 1024.0),
            cfg.stash_url ? "on" : "off", cfg.token ? "token" : "open");
    printf("peekd ready: listening on http://%s:%d\n", cfg.listen_host,
           api_server_port(srv));
    fflush(stdout);

    for (;;) {
        struct timespec ts = {0, 250 * 1000 * 1000};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            cm_info("serve", "signal %d: shutting down", sig);
            break;
        }
        if (!ready && sv.have_status && synced_once(&sv)) {
            ready = true;
            api_server_set_ready(srv, true);
            cm_info("serve", "first sync complete: library routes ready");
        }
    }
    exit_code = 0;
out:
    api_server_quiesce(srv);
    sync_scheduler_stop(sv.sched);
    api_server_stop(srv);
    idx_builder_stop(store);
    if (sv.have_status)
        sync_status_fini(&sv.status);
    kv_close(store);
    cm_config_fini(&cfg);
    return exit_code;
}
