/*
 * cm_config.c - the settings table and its strict parser (see cm_config.h).
 */
#include "common/cm_config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_limits.h"

enum kind {
    K_STR,      /* any non-empty string */
    K_URL,      /* http:// or https:// URL, trailing slashes dropped */
    K_LISTEN,   /* HOST:PORT */
    K_BOOL,     /* 1/0, true/false, yes/no, on/off; as a flag: no value */
    K_INT,      /* integer in [min, max] */
    K_SIZE,     /* bytes, with optional K/M/G/T suffix (powers of 1024) */
    K_DURATION, /* seconds, with optional s/m/h/d suffix; "off" = 0 */
    K_LOGLEVEL,
    K_LOGFMT,
    K_PATHMAP, /* FROM=TO[;FROM=TO...] */
    K_GZIP,    /* auto, on or off */
};

struct setting {
    const char *name; /* flag, without "--" */
    const char *env;  /* environment variable, NULL = flag only */
    enum kind kind;
    size_t off;       /* offset in struct cm_config */
    const char *def;  /* default, as text; NULL = unset */
    unsigned cmds;    /* enum cm_cmd mask */
    int64_t min, max; /* for K_INT, K_SIZE, K_DURATION */
    const char *help;
};

#define OFF(f) offsetof(struct cm_config, f)
#define ALL                                                                    \
    (CM_CMD_SERVE | CM_CMD_SYNC | CM_CMD_REINDEX | CM_CMD_CHECK | CM_CMD_BACKUP)
#define SRV CM_CMD_SERVE
#define SYN (CM_CMD_SERVE | CM_CMD_SYNC)

static const struct setting settings[] = {
    {"data", "PEEKD_DATA", K_STR, OFF(data_dir), "data", ALL, 0, 0,
     "directory of the LMDB store (a local filesystem: use a Docker named "
     "volume)"},
    {"listen", "PEEKD_LISTEN", K_LISTEN, 0, "127.0.0.1:8080",
     SRV | CM_CMD_HEALTH, 0, 0, "HOST:PORT to serve HTTP on"},
    {"stash-url", "STASH_URL", K_URL, OFF(stash_url), NULL, SYN, 0, 0,
     "base URL of Stash, e.g. http://stash:9999 (serve: enables sync)"},
    {"api-key", "STASH_API_KEY", K_STR, OFF(stash_api_key), NULL, SYN, 0, 0,
     "Stash API key; sent only to Stash, never shown"},
    {"token", "PEEKD_TOKEN", K_STR, OFF(token), NULL, SRV, 0, 0,
     "access token required by every route (Bearer or sign-in cookie); "
     "unset = open"},
    {"user", "PEEKD_USER", K_STR, OFF(user), "admin", SRV, 0, 0,
     "user name for the sign-in page (the password is the token)"},
    {"allow-network-fs", "PEEKD_ALLOW_NETWORK_FS", K_BOOL,
     OFF(allow_network_fs), "0", ALL, 0, 0,
     "allow a store on 9p/FUSE/NFS/SMB (slow and unsafe for LMDB)"},
    {"log-level", "PEEKD_LOG_LEVEL", K_LOGLEVEL, OFF(log_level), "info",
     ALL | CM_CMD_VERSION | CM_CMD_HEALTH, 0, 0, "debug, info, warn or error"},
    {"log-format", "PEEKD_LOG_FORMAT", K_LOGFMT, OFF(log_format), "text",
     ALL | CM_CMD_VERSION | CM_CMD_HEALTH, 0, 0,
     "text or json (one JSON object per line)"},
    {"sync-interval", "PEEKD_SYNC_INTERVAL", K_DURATION, OFF(sync_interval),
     "15m", SRV, 0, 366 * 86400,
     "time between incremental syncs (0 = only at start and on demand)"},
    {"sweep-interval", "PEEKD_SWEEP_INTERVAL", K_DURATION, OFF(sweep_interval),
     "1h", SYN, 0, 366 * 86400,
     "minimum time between activity sweeps (play/o counts and resume times "
     "of every scene) in incremental syncs; 0/off = only with sync --sweep "
     "or a full sync"},
    {"reconcile-interval", "PEEKD_RECONCILE_INTERVAL", K_DURATION,
     OFF(reconcile_interval), "1h", SYN, 0, 366 * 86400,
     "minimum time between id reconciliations (finding deletions) in "
     "incremental syncs; 0/off = only with sync --reconcile or a full sync"},
    {"page-size", "PEEKD_SYNC_PAGE_SIZE", K_INT, OFF(sync_page_size), "1000",
     SYN, 1, CM_MAX_SYNC_PAGE, "items per GraphQL page during sync"},
    {"sync-commit", "PEEKD_SYNC_COMMIT", K_INT, OFF(sync_commit), "5000", SYN,
     1, 1000000,
     "full sync: items per write transaction (whole pages; readers see "
     "all of one or none)"},
    {"sync-timeout", "PEEKD_SYNC_TIMEOUT", K_DURATION, OFF(sync_timeout),
     "120s", SYN, 1, 3600, "timeout of one request to Stash"},
    {"sync-retries", "PEEKD_SYNC_RETRIES", K_INT, OFF(sync_retries), "4", SYN,
     0, 20, "retries of a failed request to Stash (with backoff)"},
    {"sync-gzip", "PEEKD_SYNC_GZIP", K_GZIP, 0, "auto", SYN, 0, 0,
     "ask Stash for gzip responses: auto = yes unless Stash answers from a "
     "loopback address (there compression costs both sides CPU and saves "
     "nothing), on or off"},
    {"full", NULL, K_BOOL, OFF(full), "0", CM_CMD_SYNC, 0, 0,
     "force a full sync instead of an incremental one"},
    {"sweep", NULL, K_BOOL, OFF(sweep), "0", CM_CMD_SYNC, 0, 0,
     "run the activity sweep in this incremental sync even if not due"},
    {"reconcile", NULL, K_BOOL, OFF(reconcile), "0", CM_CMD_SYNC, 0, 0,
     "reconcile ids (deletions) in this incremental sync even if not due"},
    {"threads", "PEEKD_THREADS", K_INT, OFF(threads), "2", SRV, 1, 64,
     "HTTP worker threads"},
    {"map-size", "PEEKD_MAP_SIZE", K_SIZE, OFF(map_size), "64G", ALL,
     (int64_t)64 << 20, (int64_t)1 << 44,
     "initial LMDB map size (sparse; grows when full)"},
    {"public-url", "PEEKD_PUBLIC_URL", K_URL, OFF(public_url), NULL, SRV, 0, 0,
     "external base URL for absolute links (default: from Host)"},
    {"cors-origin", "PEEKD_CORS_ORIGIN", K_STR, OFF(cors_origin), NULL, SRV, 0,
     0, "value of Access-Control-Allow-Origin (unset = no CORS)"},
    {"path-map", "PEEKD_PATH_MAP", K_PATHMAP, 0, NULL, SRV, 0, 0,
     "Stash path prefix = local prefix pairs, ';'-separated, for direct "
     "file access (e.g. /data/media=/media)"},
    {"cache-dir", "PEEKD_CACHE_DIR", K_STR, OFF(cache_dir), "/tmp/peekd-cache",
     SRV, 0, 0, "HLS segments and image cache"},
    {"hls-cache-max", "PEEKD_HLS_CACHE_MAX", K_SIZE, OFF(hls_cache_max), "2G",
     SRV, (int64_t)16 << 20, (int64_t)1 << 44,
     "size cap of the HLS segment cache"},
    {"image-cache-max", "PEEKD_IMAGE_CACHE_MAX", K_SIZE, OFF(image_cache_max),
     "512M", SRV, (int64_t)1 << 20, (int64_t)1 << 44,
     "size cap of the image cache"},
    {"transcode-limit", "PEEKD_TRANSCODE_LIMIT", K_INT, OFF(transcode_limit),
     "0", SRV, 0, 64, "concurrent ffmpeg transcodes (0 = number of cores)"},
    {"ffmpeg", "PEEKD_FFMPEG", K_STR, OFF(ffmpeg), "ffmpeg", SRV, 0, 0,
     "ffmpeg binary"},
    {"ffprobe", "PEEKD_FFPROBE", K_STR, OFF(ffprobe), "ffprobe", SRV, 0, 0,
     "ffprobe binary"},
    {"web-dir", "PEEKD_WEB_DIR", K_STR, OFF(web_dir), NULL, SRV, 0, 0,
     "static web client served at / with an index.html fallback"},
    {"http-timeout", "PEEKD_HTTP_TIMEOUT", K_DURATION, OFF(http_timeout), "60s",
     SRV, 1, 3600, "idle HTTP connection timeout (slow clients are dropped)"},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int parse_i64(const char *s, int64_t *out, const char **end)
{
    char *e;
    long long v;
    errno = 0;
    if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    v = strtoll(s, &e, 10);
    if (errno || e == s)
        return -1;
    *out = v;
    *end = e;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int parse_scaled(const char *s, int is_size, int64_t *out)
{
    int64_t v, mul = 1;
    const char *e;
    if (parse_i64(s, &v, &e) || v < 0)
        return -1;
    if (*e) {
        if (e[1] &&
            !(is_size && (e[1] == 'B' || e[1] == 'b') && !e[2] && e[0] != 'B'))
            return -1;
        switch (*e) {
        case 'K':
        case 'k': mul = is_size ? (int64_t)1 << 10 : -1; break;
        case 'M':
        case 'm': mul = is_size ? (int64_t)1 << 20 : 60; break;
        case 'G':
        case 'g': mul = is_size ? (int64_t)1 << 30 : -1; break;
        case 'T':
        case 't': mul = is_size ? (int64_t)1 << 40 : -1; break;
        case 's': mul = is_size ? -1 : 1; break;
        case 'h': mul = is_size ? -1 : 3600; break;
        case 'd': mul = is_size ? -1 : 86400; break;
        case 'B':
        case 'b': mul = is_size && !e[1] ? 1 : -1; break;
        default: mul = -1;
        }
        if (mul < 0)
            return -1;
    }
    if (__builtin_mul_overflow(v, mul, out))
        return -1;
    return 0;
}

static char **str_slot(struct cm_config *cfg, const struct setting *s)
{
    return (char **)((char *)cfg + s->off);
}

static enum cm_status set_str(char **slot, const char *v, size_t n)
{
    char *d = cm_strndup(v, n);
    if (!d)
        return CM_NOMEM;
    cm_free(*slot);
    *slot = d;
    return CM_OK;
}

static void clear_maps(struct cm_config *cfg)
{
    for (int i = 0; i < cfg->n_path_maps; i++) {
        cm_free(cfg->path_maps[i].from);
        cm_free(cfg->path_maps[i].to);
        cfg->path_maps[i].from = cfg->path_maps[i].to = NULL;
    }
    cfg->n_path_maps = 0;
}

static enum cm_status parse_pathmap(struct cm_config *cfg, const char *v,
                                    const char *what, char *err, size_t errlen)
{
    const char *p = v;
    clear_maps(cfg);
    while (*p) {
        const char *semi = strchr(p, ';'), *eq;
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        struct cm_path_map *m;
        if (len == 0) {
            p += semi ? 1 : 0;
            if (!semi)
                break;
            continue;
        }
        eq = memchr(p, '=', len);
        if (!eq || eq == p || eq == p + len - 1) {
            errf(err, errlen, "%s: bad path mapping '%.*s' (expected FROM=TO)",
                 what, (int)len, p);
            return CM_INVALID;
        }
        if (cfg->n_path_maps == CM_MAX_PATH_MAPS) {
            errf(err, errlen, "%s: more than %d path mappings", what,
                 CM_MAX_PATH_MAPS);
            return CM_INVALID;
        }
        m = &cfg->path_maps[cfg->n_path_maps];
        m->from = cm_strndup(p, (size_t)(eq - p));
        m->to = cm_strndup(eq + 1, len - (size_t)(eq - p) - 1);
        cfg->n_path_maps++;
        if (!m->from || !m->to)
            return CM_NOMEM;
        p += len + (semi ? 1 : 0);
    }
    return CM_OK;
}

static enum cm_status apply(struct cm_config *cfg, const struct setting *s,
                            const char *v, const char *what, char *err,
                            size_t errlen)
{
    int64_t n;
    int b;
    const char *e;
    size_t len = strlen(v);

    if (len > CM_MAX_CONFIG_VALUE) {
        errf(err, errlen, "%s: value longer than %zu bytes", what,
             (size_t)CM_MAX_CONFIG_VALUE);
        return CM_INVALID;
    }
    switch (s->kind) {
    case K_STR:
        if (!len) {
            errf(err, errlen, "%s: must not be empty", what);
            return CM_INVALID;
        }
        return set_str(str_slot(cfg, s), v, len);
    case K_URL:
        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
            errf(err, errlen, "%s: '%s' is not an http:// or https:// URL",
                 what, v);
            return CM_INVALID;
        }
        while (len > 8 && v[len - 1] == '/')
            len--;
        if (strchr(v, ' ') || len <= (size_t)(v[4] == 's' ? 8 : 7)) {
            errf(err, errlen, "%s: '%s' is not a valid URL", what, v);
            return CM_INVALID;
        }
        return set_str(str_slot(cfg, s), v, len);
    case K_LISTEN: {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || parse_i64(colon + 1, &n, &e) || *e ||
            n < 0 || n > 65535) {
            errf(err, errlen, "%s: '%s' is not HOST:PORT (port 0-65535)", what,
                 v);
            return CM_INVALID;
        }
        cfg->listen_port = (int)n;
        if (v[0] == '[' && colon[-1] == ']')
            return set_str(&cfg->listen_host, v + 1, (size_t)(colon - v) - 2);
        return set_str(&cfg->listen_host, v, (size_t)(colon - v));
    }
    case K_BOOL:
        if (parse_bool(v, &b)) {
            errf(err, errlen, "%s: '%s' is not a boolean (1/0, true/false)",
                 what, v);
            return CM_INVALID;
        }
        *(int *)((char *)cfg + s->off) = b;
        return CM_OK;
    case K_INT:
        if (parse_i64(v, &n, &e) || *e || n < s->min || n > s->max) {
            errf(err, errlen, "%s: '%s' is not an integer from %lld to %lld",
                 what, v, (long long)s->min, (long long)s->max);
            return CM_INVALID;
        }
        *(int64_t *)((char *)cfg + s->off) = n;
        return CM_OK;
    case K_SIZE:
    case K_DURATION:
        /* "off" is 0, accepted only where 0 is in range */
        if (s->kind == K_DURATION && strcasecmp(v, "off") == 0)
            n = 0;
        else if (parse_scaled(v, s->kind == K_SIZE, &n))
            n = s->min - 1; /* out of range: the error below */
        if (n < s->min || n > s->max) {
            if (s->kind == K_SIZE)
                errf(err, errlen,
                     "%s: '%s' is not a size from %lld to %lld bytes "
                     "(e.g. 512M, 64G)",
                     what, v, (long long)s->min, (long long)s->max);
            else
                errf(err, errlen,
                     "%s: '%s' is not a duration from %llds to %llds "
                     "(e.g. 90s, 15m, 1h)",
                     what, v, (long long)s->min, (long long)s->max);
            return CM_INVALID;
        }
        *(int64_t *)((char *)cfg + s->off) = n;
        return CM_OK;
    case K_LOGLEVEL:
        if (cm_log_level_parse(v, &cfg->log_level)) {
            errf(err, errlen, "%s: '%s' is not one of debug, info, warn, error",
                 what, v);
            return CM_INVALID;
        }
        return CM_OK;
    case K_LOGFMT:
        if (cm_log_format_parse(v, &cfg->log_format)) {
            errf(err, errlen, "%s: '%s' is not text or json", what, v);
            return CM_INVALID;
        }
        return CM_OK;
    case K_PATHMAP: return parse_pathmap(cfg, v, what, err, errlen);
    case K_GZIP:
        if (strcasecmp(v, "auto") == 0)
            cfg->sync_gzip = CM_GZIP_AUTO;
        else if (strcasecmp(v, "on") == 0)
            cfg->sync_gzip = CM_GZIP_ON;
        else if (strcasecmp(v, "off") == 0)
            cfg->sync_gzip = CM_GZIP_OFF;
        else {
            errf(err, errlen, "%s: '%s' is not auto, on or off", what, v);
            return CM_INVALID;
        }
        return CM_OK;
    }
    return CM_INTERNAL;
}

enum cm_status cm_config_init(struct cm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        enum cm_status st;
        if (!settings[i].def)
            continue;
        st = apply(cfg, &settings[i], settings[i].def, settings[i].name, NULL,
                   0);
        if (st != CM_OK) {
            cm_config_fini(cfg);
            return st;
        }
    }
    return CM_OK;
}

void cm_config_fini(struct cm_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (s->kind == K_STR || s->kind == K_URL) {
            cm_free(*str_slot(cfg, s));
            *str_slot(cfg, s) = NULL;
        }
    }
    cm_free(cfg->listen_host);
    cfg->listen_host = NULL;
    clear_maps(cfg);
}

static const struct setting *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strlen(settings[i].name) == len &&
            memcmp(settings[i].name, name, len) == 0)
            return &settings[i];
    return NULL;
}

enum cm_status cm_config_set(struct cm_config *cfg, const char *name,
                             const char *value, char *err, size_t errlen)
{
    const struct setting *s = find_flag(name, strlen(name));
    char what[80];
    if (!s) {
        errf(err, errlen, "unknown setting '%s'", name);
        return CM_NOTFOUND;
    }
    snprintf(what, sizeof what, "--%s", s->name);
    return apply(cfg, s, value, what, err, errlen);
}

enum cm_status cm_config_load(struct cm_config *cfg, enum cm_cmd cmd, int argc,
                              char **argv, const char **pos, int *npos,
                              char *err, size_t errlen)
{
    enum cm_status st;
    char what[96];

    if (npos)
        *npos = 0;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        const char *v;
        if (!s->env || !(s->cmds & cmd))
            continue;
        v = getenv(s->env);
        if (!v)
            continue;
        snprintf(what, sizeof what, "environment variable %s", s->env);
        st = apply(cfg, s, v, what, err, errlen);
        if (st != CM_OK)
            return st;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq, *v;
        const struct setting *s;
        size_t nlen;

        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (!pos || !npos) {
                errf(err, errlen, "unexpected argument '%s'", a);
                return CM_INVALID;
            }
            pos[(*npos)++] = a;
            continue;
        }
        a += 2;
        eq = strchr(a, '=');
        nlen = eq ? (size_t)(eq - a) : strlen(a);
        s = find_flag(a, nlen);
        if (!s || !(s->cmds & cmd)) {
            errf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen,
                 a);
            return CM_INVALID;
        }
        snprintf(what, sizeof what, "--%s", s->name);
        if (eq) {
            v = eq + 1;
        } else if (s->kind == K_BOOL) {
            v = "1";
        } else {
            if (i + 1 >= argc) {
                errf(err, errlen, "%s needs a value", what);
                return CM_INVALID;
            }
            v = argv[++i];
        }
        st = apply(cfg, s, v, what, err, errlen);
        if (st != CM_OK)
            return st;
    }
    return CM_OK;
}

static void put(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

void cm_config_usage(enum cm_cmd cmd, int fd)
{
    char line[1024];
    put(fd, "Options (flag, environment variable, default):\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (!(s->cmds & cmd))
            continue;
        snprintf(line, sizeof line, "  --%s%s%s%s%s%s%s\n      %s\n", s->name,
                 s->kind == K_BOOL ? "" : " VALUE", s->env ? "  $" : "",
                 s->env ? s->env : "", s->def ? "  [" : "",
                 s->def ? s->def : "", s->def ? "]" : "", s->help);
        put(fd, line);
    }
}

void cm_config_table(int fd)
{
    char line[1024];
    put(fd, "| flag | environment | default | commands | meaning |\n");
    put(fd, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        char cmds[64] = "";
        if (s->cmds & CM_CMD_SERVE)
            strncat(cmds, "serve ", sizeof cmds - strlen(cmds) - 1);
        if (s->cmds & CM_CMD_SYNC)
            strncat(cmds, "sync ", sizeof cmds - strlen(cmds) - 1);
        if (s->cmds & CM_CMD_HEALTH)
            strncat(cmds, "health ", sizeof cmds - strlen(cmds) - 1);
        if ((s->cmds & ALL) == ALL)
            snprintf(cmds, sizeof cmds, "all ");
        cmds[strlen(cmds) - 1] = '\0';
        snprintf(line, sizeof line, "| `--%s` | %s%s%s | %s%s%s | %s | %s |\n",
                 s->name, s->env ? "`" : "", s->env ? s->env : "–",
                 s->env ? "`" : "", s->def ? "`" : "", s->def ? s->def : "–",
                 s->def ? "`" : "", cmds, s->help);
        put(fd, line);
    }
}

char *cm_config_map_path(const struct cm_config *cfg, const char *stash_path)
{
    size_t best = 0;
    int bi = -1;
    for (int i = 0; i < cfg->n_path_maps; i++) {
        size_t n = strlen(cfg->path_maps[i].from);
        if (n > best && strncmp(stash_path, cfg->path_maps[i].from, n) == 0 &&
            (stash_path[n] == '/' || stash_path[n] == '\0' ||
             cfg->path_maps[i].from[n - 1] == '/')) {
            best = n;
            bi = i;
        }
    }
    if (bi < 0)
        return NULL;
    {
        struct cm_buf b;
        cm_buf_init(&b, CM_MAX_CONFIG_VALUE * 2);
        if (cm_buf_puts(&b, cfg->path_maps[bi].to) != CM_OK ||
            cm_buf_puts(&b, stash_path + best) != CM_OK) {
            cm_buf_fini(&b);
            return NULL;
        }
        return cm_buf_take(&b, NULL);
    }
}
