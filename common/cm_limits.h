/*
 * cm_limits.h - every fixed limit of peekd in one table.
 *
 * Buffers are bounded with these at init (cm_buf_init(&b, CM_MAX_...)), and
 * parsers of untrusted bytes check them before allocating.
 */
#pragma once

#define CM_KiB ((size_t)1024)
#define CM_MiB (1024 * CM_KiB)
#define CM_GiB (1024 * CM_MiB)

/* HTTP requests (api/). */
#define CM_MAX_URL_LEN       (8 * CM_KiB)   /* request target */
#define CM_MAX_REQUEST_BODY  (1 * CM_MiB)   /* POST bodies */
#define CM_MAX_JSON_DEPTH    32             /* nesting of request JSON */
#define CM_MAX_FILTER_DEPTH  16             /* AND/OR/NOT nesting */
#define CM_MAX_FILTER_VALUES 10000          /* ids in one criterion */
#define CM_MAX_IDS           10000          /* ids in a lookup */
#define CM_MAX_PER_PAGE      5000           /* page size (all = -1 capped) */
#define CM_MAX_PAGE          100000000      /* page number */
#define CM_MAX_RESPONSE      (256 * CM_MiB) /* one JSON response */
#define CM_MAX_Q_LEN         1024           /* free-text search */
#define CM_MAX_REGEX_LEN     1024           /* MATCHES_REGEX pattern */

/* Records (kv/). */
#define CM_MAX_RECORD (4 * CM_MiB) /* one encoded record */
#define CM_MAX_STRING (1 * CM_MiB) /* one string field */
#define CM_MAX_ARRAY  65536        /* elements of one array field */
/* Decoded arrays of one record: at most 16 bytes per encoded byte (an
 * empty string is one byte and decodes to a 16-byte struct kv_str). */
#define CM_MAX_RECORD_ARENA (16 * CM_MAX_RECORD)

#define CM_MAX_REV_QUEUE (1 << 20) /* reverse entries a write txn queues */

/* Sync (sync/). */
#define CM_MAX_GRAPHQL_RESPONSE (512 * CM_MiB) /* one GraphQL response body */
#define CM_MAX_SYNC_PAGE        5000           /* items per page */
#define CM_MAX_REF_CACHE        65536         /* entities in sync's ref cache */
#define CM_MAX_REF_CACHE_BYTES  (64 * CM_MiB) /* its copied strings */

/* Config. */
#define CM_MAX_CONFIG_VALUE 4096 /* one flag or env value */
