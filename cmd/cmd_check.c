/*
 * cmd_check.c - `peekd check`: opens the store read-only (safe next to a
 * running server), decodes every record, checks the idmap/docmap round
 * trip of every scene and compares every index entry with what a rebuild
 * would produce (idx_verify).  Prints a summary; exit 0 when clean, 1 when
 * not (run `peekd reindex` to repair index problems).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/cm_buf.h"
#include "index/idx.h"
#include "kv/kv.h"

int cmd_check(int argc, char **argv)
{
    struct cm_config cfg;
    struct kv_options opt = {0};
    struct kv_store *s = NULL;
    struct kv_txn *t = NULL;
    struct cm_buf rep;
    char err[1024];
    uint64_t n = 0;
    bool deferred = false;
    int rc;
    enum cm_status st;

    if (cmd_setup(CM_CMD_CHECK, "check", "verify the store", argc, argv, &cfg,
                  NULL, NULL, &rc))
        return rc;
    opt.read_only = 1;
    st = kv_open(cfg.data_dir, &opt, &s, err, sizeof err);
    if (st != CM_OK) {
        fprintf(stderr, "peekd check: %s\n", err);
        cm_config_fini(&cfg);
        return 1;
    }
    if (kv_read_begin(s, &t) == CM_OK) {
        if (kv_scene_count(t, &n) != CM_OK)
            n = 0;
        if (kv_index_deferred(t, &deferred) != CM_OK)
            deferred = false;
        kv_read_end(t);
    }
    cm_buf_init(&rep, 64 * 1024);
    st = idx_verify(s, &rep);
    if (st == CM_OK && deferred) {
        printf("peekd check: %s: %llu scenes, records consistent; indexes "
               "deferred by an unfinished first sync (the next sync, or "
               "peekd reindex, builds them)\n",
               kv_dir(s), (unsigned long long)n);
        rc = 0;
    } else if (st == CM_OK) {
        printf("peekd check: %s: %llu scenes, records and indexes "
               "consistent\n",
               kv_dir(s), (unsigned long long)n);
        rc = 0;
    } else {
        /* the first line of the report names the first disagreement */
        const char *r = rep.data && rep.len ? rep.data : "";
        const char *nl = strchr(r, '\n');
        int first_len = nl ? (int)(nl - r) : (int)strlen(r);
        printf("peekd check: %s: %llu scenes: %s\n", kv_dir(s),
               (unsigned long long)n,
               st == CM_CORRUPT ? "PROBLEMS FOUND (run peekd reindex)"
                                : cm_status_str(st));
        if (first_len > 0)
            fprintf(stderr, "peekd check: first disagreement: %.*s\n",
                    first_len, r);
        printf("%s", r);
        rc = 1;
    }
    cm_buf_fini(&rep);
    kv_close(s);
    cm_config_fini(&cfg);
    return rc;
}
