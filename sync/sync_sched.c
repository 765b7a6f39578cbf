/*
 * sync_sched.c - the sync scheduler thread used by `peekd serve` (see
 * sync.h): a sync at start, then every cfg->sync_interval seconds, and on
 * demand.  One sync at a time; a trigger during a run is remembered and
 * runs right after it (a full request wins over an incremental one).
 * Each incremental pass runs the activity sweep and the id reconciliation
 * itself when they are due (sync_run reads their last times from the
 * store), so their schedule rides on these passes and survives restarts.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/cm_alloc.h"
#include "common/cm_log.h"
#include "sync/sync.h"

struct sync_scheduler {
    struct kv_store *s;
    const struct cm_config *cfg;
    struct sync_status *status;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled on trigger and on quit */
    bool quit;
    bool pending; /* a sync was asked for */
    enum sync_mode pending_mode;
    bool running;
};

static void *sched_main(void *arg)
{
    struct sync_scheduler *sc = arg;
    char err[512];

    pthread_mutex_lock(&sc->mu);
    for (;;) {
        enum sync_mode mode;
        struct sync_stats stats;
        enum cm_status st;

        while (!sc->quit && !sc->pending) {
            if (sc->cfg->sync_interval > 0) {
                struct timespec ts;
                int rc;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (time_t)sc->cfg->sync_interval;
                rc = pthread_cond_timedwait(&sc->cv, &sc->mu, &ts);
                if (rc == ETIMEDOUT && !sc->quit) {
                    sc->pending = true;
                    sc->pending_mode = SYNC_INCREMENTAL;
                }
            } else {
                pthread_cond_wait(&sc->cv, &sc->mu);
            }
        }
        if (sc->quit)
            break;
        mode = sc->pending_mode;
        sc->pending = false;
        sc->pending_mode = SYNC_INCREMENTAL;
        sc->running = true;
        atomic_store(&sc->status->stop, 0);
        pthread_mutex_unlock(&sc->mu);

        cm_info("sync", "starting %s sync",
                mode == SYNC_FULL ? "a full" : "an incremental");
        st =
            sync_run(sc->s, sc->cfg, mode, sc->status, &stats, err, sizeof err);
        if (st == CM_OK)
            cm_info("sync", "sync done in %.1fs", stats.seconds);
        else
            cm_error("sync", "sync failed: %s", err);

        pthread_mutex_lock(&sc->mu);
        sc->running = false;
    }
    pthread_mutex_unlock(&sc->mu);
    return NULL;
}

enum cm_status sync_scheduler_start(struct kv_store *s,
                                    const struct cm_config *cfg,
                                    struct sync_status *status,
                                    struct sync_scheduler **out)
{
    struct sync_scheduler *sc;

    *out = NULL;
    if (!(sc = cm_calloc(1, sizeof *sc)))
        return CM_NOMEM;
    cm_info("sync",
            "schedule (seconds, 0 = off): incremental every %lld, activity "
            "sweep every %lld, reconciliation every %lld",
            (long long)cfg->sync_interval, (long long)cfg->sweep_interval,
            (long long)cfg->reconcile_interval);
    sc->s = s;
    sc->cfg = cfg;
    sc->status = status;
    sc->pending = true; /* sync at start */
    sc->pending_mode = cfg->full ? SYNC_FULL : SYNC_INCREMENTAL;
    if (pthread_mutex_init(&sc->mu, NULL) != 0) {
        cm_free(sc);
        return CM_INTERNAL;
    }
    if (pthread_cond_init(&sc->cv, NULL) != 0) {
        pthread_mutex_destroy(&sc->mu);
        cm_free(sc);
        return CM_INTERNAL;
    }
    if (pthread_create(&sc->thread, NULL, sched_main, sc) != 0) {
        pthread_cond_destroy(&sc->cv);
        pthread_mutex_destroy(&sc->mu);
        cm_free(sc);
        return CM_INTERNAL;
    }
    *out = sc;
    return CM_OK;
}

void sync_scheduler_stop(struct sync_scheduler *sc)
{
    if (!sc)
        return;
    pthread_mutex_lock(&sc->mu);
    sc->quit = true;
    atomic_store(&sc->status->stop, 1);
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    pthread_join(sc->thread, NULL);
    pthread_cond_destroy(&sc->cv);
    pthread_mutex_destroy(&sc->mu);
    cm_free(sc);
}

enum cm_status sync_trigger(struct sync_scheduler *sc, enum sync_mode mode)
{
    enum cm_status st;
    pthread_mutex_lock(&sc->mu);
    st = sc->running ? CM_BUSY : CM_OK;
    if (!sc->pending || mode == SYNC_FULL)
        sc->pending_mode = mode;
    sc->pending = true;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    return st;
}

void sync_abort(struct sync_scheduler *sc)
{
    pthread_mutex_lock(&sc->mu);
    if (sc->running)
        atomic_store(&sc->status->stop, 1);
    pthread_mutex_unlock(&sc->mu);
}
