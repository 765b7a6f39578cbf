/*
 * test_common.c - common/: status strings, bounded buffers, JSON escaping,
 * allocation failure injection, the big-table allocators, configuration
 * parsing, natural order.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_config.h"
#include "common/cm_limits.h"
#include "common/cm_natural.h"
#include "common/cm_status.h"
#include "tests/lib/testutil.h"

START_TEST(status_strings)
{
    for (int i = 0; i < CM_STATUS_COUNT; i++) {
        ck_assert_ptr_nonnull(cm_status_str((enum cm_status)i));
        ck_assert_str_ne(cm_status_str((enum cm_status)i), "unknown status");
        ck_assert_int_eq(strncmp(cm_status_name((enum cm_status)i), "CM_", 3),
                         0);
    }
    ck_assert_str_eq(cm_status_str(CM_NOTFOUND), "not found");
    ck_assert_str_eq(cm_status_name(CM_NOTFOUND), "CM_NOTFOUND");
    ck_assert_str_eq(cm_status_str((enum cm_status)999), "unknown status");
}
END_TEST

START_TEST(buf_bounds)
{
    struct cm_buf b;
    cm_buf_init(&b, 10);
    ck_assert_int_eq(cm_buf_puts(&b, "hello"), CM_OK);
    ck_assert_int_eq(cm_buf_puts(&b, "world"), CM_OK);
    ck_assert_int_eq(b.len, 10);
    ck_assert_str_eq(b.data, "helloworld");
    /* One byte more is refused and leaves the buffer unchanged. */
    ck_assert_int_eq(cm_buf_putc(&b, '!'), CM_TOOBIG);
    ck_assert_int_eq(b.len, 10);
    ck_assert_str_eq(b.data, "helloworld");
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_buf_printf(&b, "%d-%s", 42, "x"), CM_OK);
    ck_assert_str_eq(b.data, "42-x");
    ck_assert_int_eq(cm_buf_printf(&b, "%s", "0123456789"), CM_TOOBIG);
    ck_assert_str_eq(b.data, "42-x");
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_buf_put_i64(&b, INT64_MIN), CM_TOOBIG);
    cm_buf_fini(&b);
    cm_buf_init(&b, 100);
    ck_assert_int_eq(cm_buf_put_i64(&b, INT64_MIN), CM_OK);
    ck_assert_str_eq(b.data, "-9223372036854775808");
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_buf_put_i64(&b, 0), CM_OK);
    ck_assert_str_eq(b.data, "0");
    size_t n;
    char *p = cm_buf_take(&b, &n);
    ck_assert_str_eq(p, "0");
    ck_assert_int_eq(n, 1);
    ck_assert_ptr_null(b.data);
    cm_free(p);
    cm_buf_fini(&b);
}
END_TEST

START_TEST(buf_json_escape)
{
    struct cm_buf b;
    const char in[] = "a\"b\\c\n\x01\xC3\xA9\xFF\xE2\x82"
                      "z";
    cm_buf_init(&b, 1000);
    ck_assert_int_eq(cm_buf_put_json_str(&b, in, sizeof in - 1), CM_OK);
    /* é stays UTF-8; 0xFF and the truncated sequence become U+FFFD. */
    ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\u0001\xC3\xA9\xEF\xBF\xBD"
                             "\xEF\xBF\xBD\xEF\xBF\xBDz\"");
    cm_buf_reset(&b);
    ck_assert_int_eq(cm_buf_put_json_str(&b, NULL, 0), CM_OK);
    ck_assert_str_eq(b.data, "null");
    cm_buf_fini(&b);
    /* A string that does not fit leaves nothing half-written. */
    cm_buf_init(&b, 8);
    ck_assert_int_eq(cm_buf_puts(&b, "ab"), CM_OK);
    ck_assert_int_eq(cm_buf_put_json_str(&b, "abcdefgh", 8), CM_TOOBIG);
    ck_assert_str_eq(b.data, "ab");
    cm_buf_fini(&b);
}
END_TEST

START_TEST(alloc_injection)
{
    void *p;
    cm_alloc_fail_at(2, 0);
    p = cm_malloc(10);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_null(cm_malloc(10));
    ck_assert_int_eq(cm_alloc_injected(), 1);
    /* Not sticky: the next one succeeds. */
    void *q = cm_malloc(10);
    ck_assert_ptr_nonnull(q);
    cm_free(p);
    cm_free(q);
    /* Buffers report CM_NOMEM cleanly. */
    struct cm_buf b;
    cm_buf_init(&b, 100);
    cm_alloc_fail_at(1, 1);
    ck_assert_int_eq(cm_buf_puts(&b, "x"), CM_NOMEM);
    ck_assert_ptr_null(cm_strdup("x"));
    cm_alloc_fail_at(0, 0);
    ck_assert_int_eq(cm_buf_puts(&b, "x"), CM_OK);
    cm_buf_fini(&b);
}
END_TEST

/* Whether the mapping holding address a has flag fl in its VmFlags
 * (/proc/self/smaps). */
static bool vma_has_flag(uintptr_t a, const char *fl)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in = false, has = false;
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') &&
            strchr(line, ' ') > strchr(line, '-')) {
            in = a >= lo && a < hi;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            char pat[8];
            snprintf(pat, sizeof pat, " %s", fl);
            has = strstr(line + 8, pat) != NULL;
            break;
        }
    }
    fclose(f);
    return has;
}

/* The big-table allocators: the same failure injection as cm_malloc;
 * contents kept across growth; the 2 MiB pages inside a big block
 * advised for huge pages (VmFlags "hg"), where the kernel has THP. */
START_TEST(alloc_big)
{
    const size_t mb = (size_t)1 << 20;
    uintptr_t inner;
    unsigned char *p, *q;
    size_t bad = 0;

    cm_alloc_fail_at(1, 0);
    ck_assert_ptr_null(cm_malloc_big(8 * mb));
    ck_assert_int_eq(cm_alloc_injected(), 1);
    cm_alloc_fail_at(1, 0);
    ck_assert_ptr_null(cm_calloc_big(8, mb));
    ck_assert_int_eq(cm_alloc_injected(), 1);

    p = cm_calloc_big(8, mb);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < 8 * mb; i++)
        bad += p[i] != 0;
    ck_assert_uint_eq(bad, 0);
    for (size_t i = 0; i < 8 * mb; i++)
        p[i] = (unsigned char)(i * 7 + i / 4096);
    cm_alloc_fail_at(1, 0);
    ck_assert_ptr_null(cm_realloc_big(p, 24 * mb)); /* p still valid */
    cm_alloc_fail_at(0, 0);
    q = cm_realloc_big(p, 24 * mb);
    ck_assert_ptr_nonnull(q);
    for (size_t i = 0; i < 8 * mb; i++)
        bad += q[i] != (unsigned char)(i * 7 + i / 4096);
    ck_assert_uint_eq(bad, 0);
    memset(q + 8 * mb, 0xA5, 16 * mb);
    inner = ((uintptr_t)q + 22 * mb) & ~(uintptr_t)(2 * mb - 1);
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0) {
        ck_assert(vma_has_flag(((uintptr_t)q + 4 * mb) & ~(2 * mb - 1), "hg"));
        ck_assert(vma_has_flag(inner, "hg")); /* the grown part too */
    }
    cm_free(q);

    /* Small blocks are plain allocations, freed the same way. */
    p = cm_malloc_big(100);
    ck_assert_ptr_nonnull(p);
    p = cm_realloc_big(p, 1000);
    ck_assert_ptr_nonnull(p);
    cm_free(p);

    /* A big buffer grows through them, within its bound. */
    {
        struct cm_buf b;
        cm_buf_init_big(&b, 16 * mb);
        ck_assert_int_eq(cm_buf_reserve(&b, 9 * mb), CM_OK);
        memset(b.data, 'x', 9 * mb);
        b.len = 9 * mb;
        b.data[b.len] = '\0';
        ck_assert_int_eq(cm_buf_reserve(&b, 8 * mb), CM_TOOBIG);
        cm_alloc_fail_at(1, 1);
        ck_assert_int_eq(cm_buf_reserve(&b, 7 * mb), CM_NOMEM);
        cm_alloc_fail_at(0, 0);
        ck_assert_uint_eq(b.len, 9 * mb);
        ck_assert_int_eq(cm_buf_reserve(&b, 7 * mb), CM_OK);
        ck_assert_uint_eq((unsigned char)b.data[9 * mb - 1], 'x');
        cm_buf_fini(&b);
    }
}
END_TEST

static enum cm_status set(struct cm_config *c, const char *k, const char *v,
                          char *err)
{
    return cm_config_set(c, k, v, err, 256);
}

START_TEST(config_defaults_and_values)
{
    struct cm_config c;
    char err[256];
    ck_assert_int_eq(cm_config_init(&c), CM_OK);
    ck_assert_str_eq(c.listen_host, "127.0.0.1");
    ck_assert_int_eq(c.listen_port, 8080);
    ck_assert_ptr_null(c.stash_url);
    ck_assert_int_eq(c.sync_interval, 900);
    ck_assert_int_eq(c.map_size, (int64_t)64 << 30);

    ck_assert_int_eq(set(&c, "listen", "0.0.0.0:9000", err), CM_OK);
    ck_assert_str_eq(c.listen_host, "0.0.0.0");
    ck_assert_int_eq(c.listen_port, 9000);
    ck_assert_int_eq(set(&c, "listen", "[::1]:81", err), CM_OK);
    ck_assert_str_eq(c.listen_host, "::1");
    ck_assert_int_eq(set(&c, "stash-url", "http://stash:9999///", err), CM_OK);
    ck_assert_str_eq(c.stash_url, "http://stash:9999");
    ck_assert_int_eq(set(&c, "sync-interval", "2h", err), CM_OK);
    ck_assert_int_eq(c.sync_interval, 7200);
    ck_assert_int_eq(set(&c, "sync-interval", "OFF", err), CM_OK);
    ck_assert_int_eq(c.sync_interval, 0);
    /* the sweep and reconciliation schedule: 1h each, 0 or off = off */
    ck_assert_int_eq(c.sweep_interval, 3600);
    ck_assert_int_eq(c.reconcile_interval, 3600);
    ck_assert_int_eq(c.sweep, 0);
    ck_assert_int_eq(c.reconcile, 0);
    ck_assert_int_eq(set(&c, "sweep-interval", "15m", err), CM_OK);
    ck_assert_int_eq(c.sweep_interval, 900);
    ck_assert_int_eq(set(&c, "sweep-interval", "off", err), CM_OK);
    ck_assert_int_eq(c.sweep_interval, 0);
    ck_assert_int_eq(set(&c, "reconcile-interval", "0", err), CM_OK);
    ck_assert_int_eq(c.reconcile_interval, 0);
    ck_assert_int_eq(set(&c, "reconcile-interval", "1d", err), CM_OK);
    ck_assert_int_eq(c.reconcile_interval, 86400);
    ck_assert_int_eq(set(&c, "sweep", "1", err), CM_OK);
    ck_assert_int_eq(set(&c, "reconcile", "true", err), CM_OK);
    ck_assert_int_eq(c.sweep + c.reconcile, 2);
    ck_assert_int_eq(set(&c, "map-size", "512M", err), CM_OK);
    ck_assert_int_eq(c.map_size, (int64_t)512 << 20);
    ck_assert_int_eq(set(&c, "allow-network-fs", "yes", err), CM_OK);
    ck_assert_int_eq(c.allow_network_fs, 1);
    ck_assert_int_eq(set(&c, "log-level", "debug", err), CM_OK);
    ck_assert_int_eq(c.log_level, CM_LOG_DEBUG);
    ck_assert_int_eq(
        set(&c, "path-map", "/data/media=/media;/other/=/mnt/o/", err), CM_OK);
    ck_assert_int_eq(c.n_path_maps, 2);
    char *m = cm_config_map_path(&c, "/data/media/a/b.mp4");
    ck_assert_str_eq(m, "/media/a/b.mp4");
    cm_free(m);
    m = cm_config_map_path(&c, "/other/x.mkv");
    ck_assert_str_eq(m, "/mnt/o/x.mkv");
    cm_free(m);
    /* A prefix must end at a path boundary. */
    ck_assert_ptr_null(cm_config_map_path(&c, "/data/mediax/b.mp4"));
    ck_assert_ptr_null(cm_config_map_path(&c, "/elsewhere/b.mp4"));
    cm_config_fini(&c);
}
END_TEST

START_TEST(config_rejects)
{
    static const char *const bad[][2] = {
        {"listen", "nope"},
        {"listen", "host:99999"},
        {"listen", ":80"},
        {"stash-url", "ftp://x"},
        {"stash-url", "http://"},
        {"threads", "0"},
        {"threads", "2x"},
        {"threads", ""},
        {"map-size", "12Q"},
        {"map-size", "1K"},
        {"sync-interval", "-5"},
        {"sync-interval", "5x"},
        {"sync-interval", "offf"},
        {"sync-timeout", "off"}, /* "off" is 0: only where 0 is allowed */
        {"http-timeout", "0"},
        {"sweep-interval", "-1"},
        {"sweep-interval", "1.5h"},
        {"sweep-interval", "367d"},
        {"reconcile-interval", "never"},
        {"reconcile-interval", ""},
        {"sweep", "sometimes"},
        {"log-level", "loud"},
        {"log-format", "xml"},
        {"sync-gzip", "yes"},
        {"sync-gzip", ""},
        {"allow-network-fs", "2"},
        {"path-map", "noequals"},
        {"path-map", "=/x"},
        {"page-size", "5001"},
        {"data", ""},
    };
    struct cm_config c;
    char err[256];
    ck_assert_int_eq(cm_config_init(&c), CM_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ck_assert_msg(set(&c, bad[i][0], bad[i][1], err) == CM_INVALID,
                      "%s=%s accepted", bad[i][0], bad[i][1]);
        /* The message names the setting. */
        ck_assert_msg(strstr(err, bad[i][0]) != NULL, "message '%s'", err);
    }
    ck_assert_int_eq(set(&c, "no-such", "1", err), CM_NOTFOUND);
    cm_config_fini(&c);

    /* sync-gzip: auto by default; its three words in any case */
    ck_assert_int_eq(cm_config_init(&c), CM_OK);
    ck_assert_int_eq(c.sync_gzip, CM_GZIP_AUTO);
    ck_assert_int_eq(set(&c, "sync-gzip", "OFF", err), CM_OK);
    ck_assert_int_eq(c.sync_gzip, CM_GZIP_OFF);
    ck_assert_int_eq(set(&c, "sync-gzip", "on", err), CM_OK);
    ck_assert_int_eq(c.sync_gzip, CM_GZIP_ON);
    ck_assert_int_eq(set(&c, "sync-gzip", "Auto", err), CM_OK);
    ck_assert_int_eq(c.sync_gzip, CM_GZIP_AUTO);
    cm_config_fini(&c);
}
END_TEST

START_TEST(config_env_and_flags)
{
    struct cm_config c;
    char err[256];
    const char *pos[8];
    int npos;
    char *argv[] = {"--listen", "127.0.0.1:1234", "--full", "extra",
                    "--page-size=10"};
    setenv("PEEKD_LISTEN", "127.0.0.1:5555", 1);
    setenv("PEEKD_SYNC_PAGE_SIZE", "77", 1);
    ck_assert_int_eq(cm_config_init(&c), CM_OK);
    ck_assert_int_eq(
        cm_config_load(&c, CM_CMD_SERVE, 0, NULL, NULL, NULL, err, sizeof err),
        CM_OK);
    ck_assert_int_eq(c.listen_port, 5555);
    ck_assert_int_eq(c.sync_page_size, 77);
    /* --full belongs to sync only. */
    ck_assert_int_eq(
        cm_config_load(&c, CM_CMD_SERVE, 5, argv, pos, &npos, err, sizeof err),
        CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "--full"));
    ck_assert_int_eq(cm_config_load(&c, CM_CMD_SYNC, 2, argv + 2, pos, &npos,
                                    err, sizeof err),
                     CM_OK);
    ck_assert_int_eq(c.full, 1);
    ck_assert_int_eq(npos, 1);
    ck_assert_str_eq(pos[0], "extra");
    ck_assert_int_eq(cm_config_load(&c, CM_CMD_SYNC, 1, argv + 4, NULL, NULL,
                                    err, sizeof err),
                     CM_OK);
    ck_assert_int_eq(c.sync_page_size, 10);
    /* A bad environment value names the variable. */
    setenv("PEEKD_SYNC_PAGE_SIZE", "lots", 1);
    ck_assert_int_eq(
        cm_config_load(&c, CM_CMD_SYNC, 0, NULL, NULL, NULL, err, sizeof err),
        CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "PEEKD_SYNC_PAGE_SIZE"));
    /* A flag missing its value. */
    ck_assert_int_eq(
        cm_config_load(&c, CM_CMD_SERVE, 1, argv, NULL, NULL, err, sizeof err),
        CM_INVALID);
    unsetenv("PEEKD_LISTEN");
    unsetenv("PEEKD_SYNC_PAGE_SIZE");
    cm_config_fini(&c);
}
END_TEST

START_TEST(config_oom)
{
    /* Every allocation failure is reported, never crashes or leaks. */
    for (long n = 1; n < 200; n++) {
        struct cm_config c;
        char err[256];
        enum cm_status st;
        cm_alloc_fail_at(n, 1);
        st = cm_config_init(&c);
        if (st == CM_OK) {
            st = cm_config_set(&c, "path-map", "/a=/b;/c=/d", err, 256);
            cm_config_fini(&c);
        }
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK)
            return;
        ck_assert_int_eq(st, CM_NOMEM);
    }
    ck_abort_msg("never succeeded");
}
END_TEST

static int ncmp(const char *a, const char *b)
{
    return cm_natural_cmp(a, strlen(a), b, strlen(b));
}

START_TEST(natural_order)
{
    /* The rules of docs/ARCHITECTURE.md ("ordering contract"). */
    ck_assert_int_lt(ncmp("Scene 2", "Scene 10"), 0);
    ck_assert_int_gt(ncmp("Scene 10", "Scene 2"), 0);
    ck_assert_int_eq(ncmp("abc", "ABC"), 0);
    ck_assert_int_lt(ncmp("abc", "abd"), 0);
    ck_assert_int_lt(ncmp("ABC", "abd"), 0);
    /* Digits sort before other characters. */
    ck_assert_int_lt(ncmp("1", "a"), 0);
    ck_assert_int_lt(ncmp("a1", "a "), 0);
    /* Equal value: fewer leading zeros first. */
    ck_assert_int_lt(ncmp("7", "007"), 0);
    ck_assert_int_lt(ncmp("x7y", "x07a"), 0);
    ck_assert_int_lt(ncmp("007", "8"), 0);
    /* Prefix sorts first. */
    ck_assert_int_lt(ncmp("abc", "abcd"), 0);
    ck_assert_int_lt(ncmp("", "a"), 0);
    /* Upper-cased ASCII compare: '_' (0x5F) sorts after 'Z' (0x5A) and
     * after upper-cased letters. */
    ck_assert_int_lt(ncmp("a", "_"), 0);
    /* Non-ASCII: case-insensitive via folding. */
    ck_assert_int_eq(ncmp("\xC3\xA9t\xC3\xA9", "\xC3\x89T\xC3\x89"), 0);
    ck_assert_int_lt(ncmp("z", "\xC3\xA9"), 0);
    /* Long digit runs compare as numbers without overflow. */
    ck_assert_int_lt(ncmp("99999999999999999999", "100000000000000000000"), 0);
}
END_TEST

static unsigned long long rng_state = 88172645463325252ULL;
static unsigned rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)rng_state;
}

START_TEST(natural_is_a_weak_order)
{
    /* Antisymmetry and transitivity on random strings from a small
     * alphabet that stresses digits, case and multi-byte runes. */
    static const char *const atoms[] = {"a", "A",  "b", "0",        "1",
                                        "9", "00", " ", "\xC3\xA9", "\xC3\x89",
                                        "_", "z",  "10"};
    enum { N = 300 };
    static char s[N][16];
    for (int i = 0; i < N; i++) {
        int len = (int)(rnd() % 5);
        s[i][0] = '\0';
        for (int k = 0; k < len; k++)
            strncat(s[i], atoms[rnd() % 13], sizeof s[i] - strlen(s[i]) - 1);
    }
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            int ij = ncmp(s[i], s[j]), ji = ncmp(s[j], s[i]);
            ck_assert_int_eq((ij > 0) - (ij < 0), -((ji > 0) - (ji < 0)));
        }
    }
    for (int t = 0; t < 20000; t++) {
        const char *a = s[rnd() % N], *b = s[rnd() % N], *c = s[rnd() % N];
        if (ncmp(a, b) < 0 && ncmp(b, c) < 0)
            ck_assert_msg(ncmp(a, c) < 0, "'%s' < '%s' < '%s'", a, b, c);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("all");
    tcase_add_test(tc, status_strings);
    tcase_add_test(tc, buf_bounds);
    tcase_add_test(tc, buf_json_escape);
    tcase_add_test(tc, alloc_injection);
    tcase_add_test(tc, alloc_big);
    tcase_add_test(tc, config_defaults_and_values);
    tcase_add_test(tc, config_rejects);
    tcase_add_test(tc, config_env_and_flags);
    tcase_add_test(tc, config_oom);
    tcase_add_test(tc, natural_order);
    tcase_add_test(tc, natural_is_a_weak_order);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
