/*
 * cmd_backup.c - `peekd backup`: copy the store.
 */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_backup(int argc, char **argv)
{
    struct cm_config cfg;
    int rc;
    if (cmd_setup(CM_CMD_BACKUP, "backup", "copy the store", argc, argv, &cfg,
                  NULL, NULL, &rc))
        return rc;
    fprintf(stderr, "peekd backup: not implemented yet\n");
    cm_config_fini(&cfg);
    return 2;
}
