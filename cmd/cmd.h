/*
 * cmd.h - peekd's subcommands.  Each takes the arguments after its name and
 * returns the process exit code: 0 success, 1 runtime failure, 2 usage or
 * configuration error.  cmd/peekd.c only dispatches.
 */
#pragma once

#include "common/cm_config.h"

int cmd_serve(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_reindex(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_health(int argc, char **argv);

/* Shared start-up of every subcommand: --help (prints usage of cmd with
 * summary and returns 1 with *exit_code = 0), config from env and flags,
 * logger set-up.  On a configuration error prints it to stderr and returns
 * 1 with *exit_code = 2.  Returns 0 when the command should proceed; then
 * cfg must be released with cm_config_fini().  pos/npos: positional
 * arguments (NULL when none are accepted). */
int cmd_setup(enum cm_cmd cmd, const char *name, const char *summary, int argc,
              char **argv, struct cm_config *cfg, const char **pos, int *npos,
              int *exit_code);
