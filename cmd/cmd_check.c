/*
 * cmd_check.c - `peekd check`: verify the store.
 */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_check(int argc, char **argv)
{
    struct cm_config cfg;
    int rc;
    if (cmd_setup(CM_CMD_CHECK, "check", "verify the store", argc, argv, &cfg,
                  NULL, NULL, &rc))
        return rc;
    fprintf(stderr, "peekd check: not implemented yet\n");
    cm_config_fini(&cfg);
    return 2;
}
