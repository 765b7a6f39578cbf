/*
 * cmd_sync.c - `peekd sync`: mirror Stash into the store once and exit.
 *
 * Opens the store, runs one sync (incremental, or full with --full or on a
 * fresh store; an interrupted full sync resumes), prints a summary.  An
 * incremental sync runs the activity sweep and the id reconciliation when
 * their intervals (--sweep-interval, --reconcile-interval) have passed
 * since the times recorded in the store, or when --sweep / --reconcile
 * force them; `--sweep-interval 0` (or off) skips the sweep.  Exit
 * codes: 0 success, 1 the sync failed (the reason on stderr), 2 usage.
 * SIGINT/SIGTERM stop the sync after the current page.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "common/cm_log.h"
#include "kv/kv.h"
#include "sync/sync.h"

/* The signal handler's only way to reach the run. */
static atomic_int *volatile stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    if (stop_flag)
        atomic_store(stop_flag, 1);
}

static void print_summary(const struct sync_stats *s, enum cm_status st)
{
    printf("%-11s %10s %10s %10s\n", "type", "fetched", "written", "deleted");
    for (int t = 0; t < SYNC_NTYPES; t++)
        printf("%-11s %10llu %10llu %10llu\n",
               sync_type_name((enum sync_type)t),
               (unsigned long long)s->fetched[t],
               (unsigned long long)s->written[t],
               (unsigned long long)s->deleted[t]);
    printf("rewritten scenes %llu, activity updates %llu, requests %llu%s%s\n",
           (unsigned long long)s->rewritten, (unsigned long long)s->activity,
           (unsigned long long)s->requests, s->resumed ? ", resumed" : "",
           s->deletes_skipped ? ", deletions skipped by the guard" : "");
    if (s->indexed)
        printf("indexes built at the end of the first sync: %llu scenes\n",
               (unsigned long long)s->indexed);
    printf("activity sweep: %s; reconciliation: %s\n",
           sync_extra_name(s->sweep), sync_extra_name(s->reconcile));
    printf("sync %s in %.2fs\n", st == CM_OK ? "done" : "failed", s->seconds);
    fflush(stdout);
}

int cmd_sync(int argc, char **argv)
{
    struct cm_config cfg;
    struct kv_options ko;
    struct kv_store *s = NULL;
    struct sync_status status;
    struct sync_stats stats;
    struct sigaction sa;
    char err[512];
    enum cm_status st;
    int rc;

    if (cmd_setup(CM_CMD_SYNC, "sync",
                  "mirror Stash into the store once.  Incremental by default: "
                  "the objects\nchanged since the last sync; then the "
                  "activity sweep (play/o counts,\nresume times) and the id "
                  "reconciliation (deletions), each only when its\ninterval "
                  "has passed since the last one (recorded in the store) or "
                  "when\n--sweep / --reconcile force it.  --full fetches "
                  "everything and reconciles.",
                  argc, argv, &cfg, NULL, NULL, &rc))
        return rc;
    if (!cfg.stash_url) {
        fprintf(stderr, "peekd sync: --stash-url (or STASH_URL) is required\n");
        cm_config_fini(&cfg);
        return 2;
    }
    memset(&ko, 0, sizeof ko);
    ko.map_size = (size_t)cfg.map_size;
    ko.allow_network_fs = cfg.allow_network_fs;
    st = kv_open(cfg.data_dir, &ko, &s, err, sizeof err);
    if (st != CM_OK) {
        fprintf(stderr, "peekd sync: cannot open the store in %s: %s\n",
                cfg.data_dir, err);
        cm_config_fini(&cfg);
        return 1;
    }
    if (sync_status_init(&status) != CM_OK) {
        fprintf(stderr, "peekd sync: cannot initialise\n");
        kv_close(s);
        cm_config_fini(&cfg);
        return 1;
    }
    status.tty = isatty(2);
    stop_flag = &status.stop;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    st = sync_run(s, &cfg, cfg.full ? SYNC_FULL : SYNC_INCREMENTAL, &status,
                  &stats, err, sizeof err);
    stop_flag = NULL;
    print_summary(&stats, st);
    if (st != CM_OK)
        fprintf(stderr, "peekd sync: %s\n", err[0] ? err : cm_status_str(st));
    sync_status_fini(&status);
    kv_close(s);
    cm_config_fini(&cfg);
    return st == CM_OK ? 0 : 1;
}
