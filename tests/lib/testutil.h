/*
 * testutil.h - helpers shared by the unit tests (Check framework).
 *
 * tu_tmpdir() makes a fresh mkdtemp directory under $TMPDIR (or /tmp) and
 * registers it for removal at exit; tu_repo_path() resolves a path relative
 * to the repository root (tests run from the root via make test).
 */
#pragma once

#include <check.h>
#include <stddef.h>

/* A new empty directory; removed recursively at exit.  Aborts the test on
 * failure.  Returned string lives until exit. */
const char *tu_tmpdir(void);

/* Removes path recursively (like rm -rf).  Returns 0 on success. */
int tu_rmrf(const char *path);

/* Reads a whole file into a malloc'd buffer (NUL-terminated).  OUT *len.
 * Returns NULL on failure. */
char *tu_read_file(const char *path, size_t *len);

/* Runs the suite with CK_NORMAL output; returns the process exit code
 * (0 when every test passed). */
int tu_run(Suite *s);
