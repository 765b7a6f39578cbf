/*
 * cmd_reindex.c - `peekd reindex`: rebuilds every index database (postings,
 * sort dictionaries, columns, text) from the stored scene records and
 * entities in one write transaction (readers of a running server keep the
 * old indexes until the commit), and stamps the index version.  Shows a
 * progress bar on stderr when it is a terminal; otherwise (logs, CI) only
 * the one-line summary on stdout.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "index/idx.h"
#include "kv/kv.h"

/* The progress bar on stderr when it is a terminal: redrawn in place
 * (carriage return) when the percentage changes. */
struct bar {
    int last; /* last percentage drawn, -1 = none */
};

static void draw_bar(uint64_t done, uint64_t total, void *vctx)
{
    struct bar *b = vctx;
    char cells[41];
    int pct = total ? (int)(done * 100 / total) : 100, fill;
    if (pct > 100)
        pct = 100;
    if (pct == b->last)
        return;
    b->last = pct;
    fill = pct * 40 / 100;
    for (int i = 0; i < 40; i++)
        cells[i] = i < fill ? '#' : '.';
    cells[40] = '\0';
    fprintf(stderr, "\rpeekd reindex: [%s] %3d%% %llu/%llu scenes", cells, pct,
            (unsigned long long)done, (unsigned long long)total);
    fflush(stderr);
}

int cmd_reindex(int argc, char **argv)
{
    struct cm_config cfg;
    struct kv_options opt = {0};
    struct kv_store *s = NULL;
    struct timespec a, b;
    char err[1024];
    uint64_t n = 0;
    int rc;
    enum cm_status st;

    if (cmd_setup(CM_CMD_REINDEX, "reindex", "rebuild every index", argc, argv,
                  &cfg, NULL, NULL, &rc))
        return rc;
    st = kv_open(cfg.data_dir, &opt, &s, err, sizeof err);
    if (st != CM_OK) {
        fprintf(stderr, "peekd reindex: %s\n", err);
        cm_config_fini(&cfg);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (isatty(STDERR_FILENO)) {
        struct bar bar = {-1};
        st = idx_rebuild_progress(s, draw_bar, &bar, &n);
        if (bar.last >= 0)
            fputc('\n', stderr);
    } else {
        st = idx_rebuild(s, &n); /* not a terminal: the summary only */
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (st != CM_OK) {
        fprintf(stderr, "peekd reindex: rebuild failed: %s\n",
                cm_status_str(st));
        rc = 1;
    } else {
        printf("peekd reindex: indexed %llu scenes in %.3f s\n",
               (unsigned long long)n,
               (double)(b.tv_sec - a.tv_sec) +
                   (double)(b.tv_nsec - a.tv_nsec) / 1e9);
        rc = 0;
    }
    kv_close(s);
    cm_config_fini(&cfg);
    return rc;
}
