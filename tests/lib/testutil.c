/*
 * testutil.c - helpers shared by the unit tests (see testutil.h).
 */
#include "tests/lib/testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TMPDIRS 256
static char *tmpdirs[MAX_TMPDIRS];
static int n_tmpdirs;
static pid_t owner_pid;

static int rm_cb(const char *p, const struct stat *sb, int flag,
                 struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int tu_rmrf(const char *path)
{
    return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    /* Check forks a child per test: only the process that made a
     * directory removes it. */
    if (getpid() != owner_pid)
        return;
    for (int i = 0; i < n_tmpdirs; i++) {
        tu_rmrf(tmpdirs[i]);
        free(tmpdirs[i]);
    }
    n_tmpdirs = 0;
}

const char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    char *d;

    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpl, sizeof tmpl, "%s/peekd-test-XXXXXX", base);
    d = mkdtemp(tmpl);
    ck_assert_msg(d != NULL, "mkdtemp failed");
    ck_assert_int_lt(n_tmpdirs, MAX_TMPDIRS);
    if (owner_pid != getpid()) {
        /* First directory in this process (or in a forked test child). */
        owner_pid = getpid();
        n_tmpdirs = 0;
        atexit(cleanup);
    }
    tmpdirs[n_tmpdirs] = strdup(d);
    ck_assert_ptr_nonnull(tmpdirs[n_tmpdirs]);
    return tmpdirs[n_tmpdirs++];
}

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = '\0';
            if (len)
                *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
