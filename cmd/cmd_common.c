/*
 * cmd_common.c - start-up shared by every subcommand (see cmd.h).
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/cm_log.h"

int cmd_setup(enum cm_cmd cmd, const char *name, const char *summary, int argc,
              char **argv, struct cm_config *cfg, const char **pos, int *npos,
              int *exit_code)
{
    char err[512];

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: peekd %s [OPTIONS]%s\n\n%s\n\n", name,
                   pos ? " [ARGS]" : "", summary);
            fflush(stdout);
            cm_config_usage(cmd, 1);
            *exit_code = 0;
            return 1;
        }
    }
    if (cm_config_init(cfg) != CM_OK) {
        fprintf(stderr, "peekd %s: out of memory\n", name);
        *exit_code = 1;
        return 1;
    }
    if (cm_config_load(cfg, cmd, argc, argv, pos, npos, err, sizeof err) !=
        CM_OK) {
        fprintf(stderr, "peekd %s: %s\n", name, err);
        cm_config_fini(cfg);
        *exit_code = 2;
        return 1;
    }
    cm_log_setup(cfg->log_level, cfg->log_format, 2);
    return 0;
}
