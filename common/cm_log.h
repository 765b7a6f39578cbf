/*
 * cm_log.h - one line per event, as text or JSON lines.
 *
 * Text:  2026-11-27T02:41:07.123Z info  sync: page 3/40 scenes (1000 items)
 * JSON:
 * {"ts":"2026-11-27T02:41:07.123Z","level":"info","mod":"sync","msg":"..."}
 *
 * cm_log_setup() is called once at start, before threads exist; cm_log() is
 * thread-safe afterwards (one write(2) per line).  Never log secrets: the
 * Stash API key and the access token must not reach a log line.
 */
#pragma once

#include <stdarg.h>

enum cm_log_level { CM_LOG_DEBUG, CM_LOG_INFO, CM_LOG_WARN, CM_LOG_ERROR };
enum cm_log_format { CM_LOG_TEXT, CM_LOG_JSON };

/* Sets the minimum level, the format and the output fd (2 = stderr). */
void cm_log_setup(enum cm_log_level min, enum cm_log_format fmt, int fd);

/* Returns non-zero when a message at level would be written. */
int cm_log_enabled(enum cm_log_level level);

/* Writes one line.  mod is the module ("kv", "sync", ...).  The message is
 * truncated at 4 KiB. */
void cm_log(enum cm_log_level level, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cm_vlog(enum cm_log_level level, const char *mod, const char *fmt,
             va_list ap) __attribute__((format(printf, 3, 0)));

#define cm_debug(mod, ...) cm_log(CM_LOG_DEBUG, mod, __VA_ARGS__)
#define cm_info(mod, ...)  cm_log(CM_LOG_INFO, mod, __VA_ARGS__)
#define cm_warn(mod, ...)  cm_log(CM_LOG_WARN, mod, __VA_ARGS__)
#define cm_error(mod, ...) cm_log(CM_LOG_ERROR, mod, __VA_ARGS__)

/* Parses "debug"/"info"/"warn"/"error" and "text"/"json".  Return 0 on
 * success, -1 on an unknown name. */
int cm_log_level_parse(const char *s, enum cm_log_level *out);
int cm_log_format_parse(const char *s, enum cm_log_format *out);
