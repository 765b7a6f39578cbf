/*
 * cmd_backup.c - `peekd backup DEST`: writes a consistent, compacted copy
 * of the store into DEST (a new or empty directory) with mdb_env_copy2.
 * The copy is one LMDB read transaction, so it is safe while another
 * process serves or syncs the same store.  The store is opened read-only.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "cmd/cmd.h"
#include "common/cm_alloc.h"
#include "kv/kv.h"

/* Prints what was written: path, size, scene count of the copy. */
static void report(struct kv_store *src, const char *dest)
{
    char path[4096];
    struct stat sb;
    struct kv_txn *t;
    uint64_t scenes = 0;
    int n = snprintf(path, sizeof path, "%s/data.mdb", dest);

    if (kv_read_begin(src, &t) == CM_OK) {
        if (kv_scene_count(t, &scenes) != CM_OK)
            scenes = 0;
        kv_read_end(t);
    }
    if (n > 0 && (size_t)n < sizeof path && stat(path, &sb) == 0)
        printf("peekd backup: wrote %s (%lld bytes, %llu scenes) from %s\n",
               path, (long long)sb.st_size, (unsigned long long)scenes,
               kv_dir(src));
    else
        printf("peekd backup: wrote %s from %s\n", dest, kv_dir(src));
}

int cmd_backup(int argc, char **argv)
{
    struct cm_config cfg;
    struct kv_options opt = {0};
    struct kv_store *s = NULL;
    const char **pos = NULL;
    char err[1024];
    int npos = 0, rc;
    enum cm_status st;

    pos = cm_calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) {
        fprintf(stderr, "peekd backup: out of memory\n");
        return 1;
    }
    if (cmd_setup(CM_CMD_BACKUP, "backup",
                  "write a consistent, compacted copy of the store into "
                  "DEST (a new or empty directory); safe while peekd serves "
                  "or syncs",
                  argc, argv, &cfg, pos, &npos, &rc)) {
        cm_free(pos);
        return rc;
    }
    rc = 2;
    if (npos != 1) {
        fprintf(stderr, "peekd backup: expected one argument, the "
                        "destination directory (usage: peekd backup "
                        "[OPTIONS] DEST)\n");
        goto out;
    }
    opt.read_only = 1;
    opt.allow_network_fs = cfg.allow_network_fs;
    opt.map_size = (size_t)cfg.map_size;
    rc = 1;
    st = kv_open(cfg.data_dir, &opt, &s, err, sizeof err);
    if (st != CM_OK) {
        fprintf(stderr, "peekd backup: %s\n", err);
        goto out;
    }
    st = kv_backup(s, pos[0], err, sizeof err);
    if (st != CM_OK) {
        fprintf(stderr, "peekd backup: %s\n", err);
        goto out;
    }
    report(s, pos[0]);
    rc = 0;
out:
    kv_close(s);
    cm_config_fini(&cfg);
    cm_free(pos);
    return rc;
}
