/*
 * cmd_reindex.c - `peekd reindex`: rebuilds every index database (postings,
 * sort dictionaries, columns, text) from the stored scene records and
 * entities in one write transaction (readers of a running server keep the
 * old indexes until the commit), and stamps the index version.
 */
#include <stdio.h>
#include <time.h>

#include "cmd/cmd.h"
#include "index/idx.h"
#include "kv/kv.h"

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
    st = idx_rebuild(s, &n);
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
