/*
 * cm_config.h - configuration from flags and environment, parsed strictly.
 *
 * One table (cm_config.c) lists every setting: its flag, its environment
 * variable, its default, its type and what it means.  The same table prints
 * `peekd <cmd> --help` and docs/CONFIG.md's table (`peekd config-table`).
 * Precedence: default < environment < flag.  A bad value is an error that
 * names the setting and the expected form; nothing is silently ignored.
 *
 * The struct is filled once at start and read-only afterwards; threads may
 * read it freely.  Strings are owned by the struct: free with
 * cm_config_fini().
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cm_log.h"
#include "common/cm_status.h"

#define CM_MAX_PATH_MAPS 16

struct cm_path_map {
    char *from; /* Stash-side path prefix */
    char *to;   /* local path prefix */
};

/* Whether sync asks Stash for gzip bodies (docs/SYNC.md, "HTTP client"). */
enum cm_gzip {
    CM_GZIP_AUTO, /* yes, unless Stash answers from a loopback address */
    CM_GZIP_ON,
    CM_GZIP_OFF,
};

struct cm_config {
    char *data_dir;       /* LMDB store directory */
    char *listen_host;    /* bind address */
    int listen_port;      /* bind port */
    char *stash_url;      /* base URL of Stash, NULL when unset */
    char *stash_api_key;  /* secret: never logged or returned */
    char *token;          /* access token, NULL = open server */
    char *user;           /* sign-in user name for Peek's client */
    int allow_network_fs; /* skip the filesystem guard */
    enum cm_log_level log_level;
    enum cm_log_format log_format;
    int64_t sync_interval;  /* seconds between syncs, 0 = off */
    int64_t sync_page_size; /* items per GraphQL page */
    int64_t sync_commit;    /* full sync: items per write transaction */
    int64_t sync_timeout;   /* seconds per HTTP request to Stash */
    int64_t sync_retries;   /* retries per request */
    enum cm_gzip sync_gzip; /* Accept-Encoding: gzip or not */
    int full;               /* sync: force a full pass */
    int64_t threads;        /* HTTP worker threads */
    int64_t map_size;       /* initial LMDB map size in bytes */
    char *public_url;       /* base for absolute URLs, NULL = from Host */
    char *cors_origin;      /* Access-Control-Allow-Origin, NULL = none */
    struct cm_path_map path_maps[CM_MAX_PATH_MAPS];
    int n_path_maps;
    char *cache_dir;         /* HLS segments and image cache */
    int64_t hls_cache_max;   /* bytes */
    int64_t image_cache_max; /* bytes */
    int64_t transcode_limit; /* concurrent ffmpeg jobs */
    char *ffmpeg;            /* ffmpeg binary */
    char *ffprobe;           /* ffprobe binary */
    char *web_dir;           /* static files served at /, NULL = none */
    int64_t http_timeout;    /* seconds an idle HTTP connection lives */

    /* the activity sweep and the id reconciliation (docs/SYNC.md) */
    int64_t sweep_interval;     /* min seconds between sweeps, 0 = off */
    int64_t reconcile_interval; /* min seconds between reconciliations */
    int sweep;                  /* sync: run the sweep even if not due */
    int reconcile;              /* sync: reconcile even if not due */
};

/* Which subcommand is being configured: it selects the flags accepted. */
enum cm_cmd {
    CM_CMD_SERVE = 1 << 0,
    CM_CMD_SYNC = 1 << 1,
    CM_CMD_REINDEX = 1 << 2,
    CM_CMD_CHECK = 1 << 3,
    CM_CMD_BACKUP = 1 << 4,
    CM_CMD_VERSION = 1 << 5,
    CM_CMD_HEALTH = 1 << 6, /* probes a running serve's /api/health */
};

/* Fills cfg with the defaults.  CM_NOMEM. */
enum cm_status cm_config_init(struct cm_config *cfg) CM_WUR;

/* Frees the strings of cfg.  NULL-safe. */
void cm_config_fini(struct cm_config *cfg);

/* Applies the environment (getenv) then argv[0..argc) flags for cmd.
 * Flags are `--name value` or `--name=value`; boolean flags take no value.
 * Positional arguments are returned through OUT pos/npos (pointers into
 * argv; pos must have room for argc entries; may be NULL when none are
 * accepted).  On error returns CM_INVALID (or CM_NOMEM) and writes a
 * message naming the setting to err[0..errlen). */
enum cm_status cm_config_load(struct cm_config *cfg, enum cm_cmd cmd, int argc,
                              char **argv, const char **pos, int *npos,
                              char *err, size_t errlen) CM_WUR;

/* Sets one setting by flag name (without "--") from a string, as if given
 * on the command line.  Used by tests.  CM_INVALID + message, CM_NOTFOUND
 * for an unknown name. */
enum cm_status cm_config_set(struct cm_config *cfg, const char *name,
                             const char *value, char *err,
                             size_t errlen) CM_WUR;

/* Writes the flags of cmd with their env variables, defaults and meanings
 * to fd, for --help. */
void cm_config_usage(enum cm_cmd cmd, int fd);

/* Writes the Markdown table of every setting to fd (docs/CONFIG.md). */
void cm_config_table(int fd);

/* Maps a Stash-side path through cfg->path_maps.  Returns a new string
 * (caller owns, free with cm_free()) or NULL when no prefix matches or on
 * NOMEM. */
char *cm_config_map_path(const struct cm_config *cfg, const char *stash_path);
