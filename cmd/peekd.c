/*
 * peekd.c - the entry point: dispatches to a subcommand.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/cm_alloc.h"
#include "common/cm_config.h"
#include "common/cm_log.h"
#include "kv/kv.h"

#ifndef PEEKD_VERSION
#define PEEKD_VERSION "0.1.0"
#endif

static int cmd_version(int argc, char **argv)
{
    struct cm_config cfg;
    int rc;
    if (cmd_setup(CM_CMD_VERSION, "version", "print the version", argc, argv,
                  &cfg, NULL, NULL, &rc))
        return rc;
    printf("peekd %s (store schema %d, index %d)\n", PEEKD_VERSION,
           KV_SCHEMA_VERSION, KV_INDEX_VERSION);
    cm_config_fini(&cfg);
    return 0;
}

static int cmd_config_table(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    cm_config_table(1);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} cmds[] = {
    {"serve", cmd_serve,
     "serve the REST API and video (and sync on a "
     "schedule when STASH_URL is set)"},
    {"sync", cmd_sync, "mirror Stash into the store once and exit"},
    {"reindex", cmd_reindex, "rebuild every index from the stored records"},
    {"check", cmd_check, "verify the store and its indexes"},
    {"backup", cmd_backup, "write a consistent, compacted copy of the store"},
    {"health", cmd_health, "probe a running server (container health check)"},
    {"version", cmd_version, "print the version"},
    {"config-table", cmd_config_table,
     "print the settings as a Markdown "
     "table"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: peekd COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-13s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\n'peekd COMMAND --help' lists a command's options.\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    cm_json_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(0, NULL);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "peekd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
