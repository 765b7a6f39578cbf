/*
 * cmd_reindex.c - `peekd reindex`: rebuild every index.
 */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_reindex(int argc, char **argv)
{
    struct cm_config cfg;
    int rc;
    if (cmd_setup(CM_CMD_REINDEX, "reindex", "rebuild every index", argc, argv,
                  &cfg, NULL, NULL, &rc))
        return rc;
    fprintf(stderr, "peekd reindex: not implemented yet\n");
    cm_config_fini(&cfg);
    return 2;
}
