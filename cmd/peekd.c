/*
 * peekd.c - the entry point: dispatches to a subcommand.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/*
 * The heap on transparent huge pages, through glibc's tunable
 * glibc.malloc.hugetlb=1 (glibc >= 2.35: malloc advises MADV_HUGEPAGE on
 * the memory it gets from the kernel).  LMDB mallocs every dirty page of a
 * write transaction, 4 KiB at a time, and a first sync or a reindex of 1M
 * scenes dirties about 1 GB of them: on 4 KiB pages each is a page fault
 * of its own.  `peekd reindex` of 1M scenes: 18.8-22.2 s of CPU without,
 * 13.0-15.1 s with (docs/PERFORMANCE.md).  GLIBC_TUNABLES is read only when
 * a process starts, so the commands that write re-execute themselves once
 * with it added (same pid, same arguments and descriptors).  A
 * GLIBC_TUNABLES that already names glibc.malloc.hugetlb is left alone
 * (=0 turns this off).  The re-executed process puts GLIBC_TUNABLES back as
 * it was, so ffmpeg and other children do not inherit it.
 */
#define HUGE_MARK    "PEEKD_HUGE_HEAP"
#define HUGE_TUNABLE "glibc.malloc.hugetlb=1"

static void huge_heap(char **argv)
{
    const char *t = getenv("GLIBC_TUNABLES"), *mark = getenv(HUGE_MARK);
    char buf[1024];
    int n;

    if (mark) { /* re-executed: restore the caller's GLIBC_TUNABLES */
        if (strcmp(mark, "-") == 0)
            unsetenv("GLIBC_TUNABLES");
        else
            setenv("GLIBC_TUNABLES", mark, 1);
        unsetenv(HUGE_MARK);
        return;
    }
    if (t && strstr(t, "glibc.malloc.hugetlb"))
        return;
    n = snprintf(buf, sizeof buf, HUGE_TUNABLE "%s%s", t && *t ? ":" : "",
                 t ? t : "");
    if (n < 0 || (size_t)n >= sizeof buf)
        return;
    if (setenv(HUGE_MARK, t && *t ? t : "-", 1) != 0)
        return;
    if (setenv("GLIBC_TUNABLES", buf, 1) == 0)
        execv("/proc/self/exe", argv);
    /* no exec (no /proc?): go on with the usual heap */
    if (t)
        setenv("GLIBC_TUNABLES", t, 1);
    else
        unsetenv("GLIBC_TUNABLES");
    unsetenv(HUGE_MARK);
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
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0)
            continue;
        if (cmds[i].fn == cmd_serve || cmds[i].fn == cmd_sync ||
            cmds[i].fn == cmd_reindex)
            huge_heap(argv);
        return cmds[i].fn(argc - 2, argv + 2);
    }
    fprintf(stderr, "peekd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
