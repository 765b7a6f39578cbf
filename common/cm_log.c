/*
 * cm_log.c - line logger (see cm_log.h).
 */
#include "common/cm_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cm_buf.h"

/* Set once by cm_log_setup() before any thread starts; read-only after. */
static struct {
    enum cm_log_level min;
    enum cm_log_format fmt;
    int fd;
} log_cfg = {CM_LOG_INFO, CM_LOG_TEXT, 2};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cm_log_setup(enum cm_log_level min, enum cm_log_format fmt, int fd)
{
    log_cfg.min = min;
    log_cfg.fmt = fmt;
    log_cfg.fd = fd;
}

int cm_log_enabled(enum cm_log_level level)
{
    return level >= log_cfg.min;
}

int cm_log_level_parse(const char *s, enum cm_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum cm_log_level)i;
            return 0;
        }
    }
    return -1;
}

int cm_log_format_parse(const char *s, enum cm_log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = CM_LOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = CM_LOG_JSON;
    else
        return -1;
    return 0;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void cm_vlog(enum cm_log_level level, const char *mod, const char *fmt,
             va_list ap)
{
    char msg[4096], ts[40], line[8192];
    struct timespec now;
    struct tm tm;
    struct cm_buf b;
    int n;

    if (level < log_cfg.min)
        return;
    n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
    if (n < 0)
        return;
    if (log_cfg.fmt == CM_LOG_TEXT) {
        n = snprintf(line, sizeof line, "%s %-5s %s: %s\n", ts,
                     level_names[level], mod, msg);
        if (n < 0)
            return;
        if ((size_t)n >= sizeof line) {
            n = (int)sizeof line - 1;
            line[n - 1] = '\n';
        }
        write_all(log_cfg.fd, line, (size_t)n);
        return;
    }
    /* JSON lines: built in a bounded buffer; on overflow the line is cut
     * at the message, still valid JSON. */
    cm_buf_init(&b, sizeof line);
    if (cm_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":", ts,
                      level_names[level]) == CM_OK &&
        cm_buf_put_json_str(&b, mod, strlen(mod)) == CM_OK &&
        cm_buf_puts(&b, ",\"msg\":") == CM_OK &&
        cm_buf_put_json_str(&b, msg, strlen(msg)) == CM_OK &&
        cm_buf_puts(&b, "}\n") == CM_OK)
        write_all(log_cfg.fd, b.data, b.len);
    cm_buf_fini(&b);
}

void cm_log(enum cm_log_level level, const char *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_vlog(level, mod, fmt, ap);
    va_end(ap);
}
