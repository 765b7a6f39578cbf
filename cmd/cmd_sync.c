/*
 * cmd_sync.c - `peekd sync`: mirror Stash into the store.
 */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_sync(int argc, char **argv)
{
    struct cm_config cfg;
    int rc;
    if (cmd_setup(CM_CMD_SYNC, "sync", "mirror Stash into the store", argc,
                  argv, &cfg, NULL, NULL, &rc))
        return rc;
    fprintf(stderr, "peekd sync: not implemented yet\n");
    cm_config_fini(&cfg);
    return 2;
}
