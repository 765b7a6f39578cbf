/*
 * cmd_serve.c - `peekd serve`: serve the REST API.
 */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_serve(int argc, char **argv)
{
    struct cm_config cfg;
    int rc;
    if (cmd_setup(CM_CMD_SERVE, "serve", "serve the REST API", argc, argv, &cfg,
                  NULL, NULL, &rc))
        return rc;
    fprintf(stderr, "peekd serve: not implemented yet\n");
    cm_config_fini(&cfg);
    return 2;
}
