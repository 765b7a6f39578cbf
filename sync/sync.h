/*
 * sync.h - mirroring Stash into the store.
 *
 * Main objects:
 *   struct sync_arena   bump allocator owning what a mapped record needs
 *                       beyond the response document (arrays, stripped URLs,
 *                       copied entity names); freed all at once
 *   struct sync_gunzip  a reusable whole-buffer gzip decoder (libdeflate)
 *                       for response bodies
 *   struct sync_client  one libcurl easy handle (keep-alive) talking
 *                       GraphQL to Stash with retries and bounded bodies
 *   struct sync_status  progress of the current/last sync, per type,
 *                       readable by any thread (mutex inside)
 *   sync_run()          one full or incremental sync (docs/SYNC.md)
 *   scheduler           a thread: sync at start, on an interval, on demand
 *
 * Mapping (sync_map.c) turns the JSON objects our documents
 * (sync/queries/NAME.graphql) return into struct kv_scene / kv_entity,
 * strictly: a missing required field or a wrong JSON type is CM_INVALID
 * with a message naming the object and field path, e.g.
 * "scene 123: files[0].size: expected number".
 *
 * Thread-safety: an arena, a client and a run belong to one thread; a
 * sync_status may be read from any thread (sync_status_snapshot).  The
 * Stash API key is never logged, stored or returned.
 */
#pragma once

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cm_buf.h"
#include "common/cm_config.h"
#include "common/cm_status.h"
#include "kv/kv.h"
#include "sync/sync_json.h"

/* ---- Arena ---------------------------------------------------------- */

struct sync_arena_chunk;

struct sync_arena {
    struct sync_arena_chunk *head; /* newest chunk first */
    size_t used;                   /* bytes handed out, all chunks */
    size_t max;                    /* bound on used */
    uint64_t resets; /* times reset: caches of its memory check it */
};

/* Initialises a (caller storage); allocates nothing. */
void sync_arena_init(struct sync_arena *a, size_t max);
/* Frees every chunk.  NULL-safe. */
void sync_arena_fini(struct sync_arena *a);
/* Frees everything handed out so far; a stays usable. */
void sync_arena_reset(struct sync_arena *a);
/* n zeroed bytes aligned for any type; NULL on NOMEM or past max.
 * Borrowed, valid until reset/fini. */
void *sync_arena_alloc(struct sync_arena *a, size_t n);
/* Copies s[0..n) plus a NUL into the arena; NULL on NOMEM. */
char *sync_arena_strndup(struct sync_arena *a, const char *s, size_t n);

/* ---- Mapping (sync_map.c) ------------------------------------------- */

/* Sync types in pass order (entities first: scene refs are filled from
 * them). */
enum sync_type {
    SYNC_TAGS,
    SYNC_STUDIOS,
    SYNC_PERFORMERS,
    SYNC_GROUPS,
    SYNC_GALLERIES,
    SYNC_SCENES,
    SYNC_NTYPES
};

/* "tags", "studios", ... and the entity type byte of an entity sync type
 * (0 for SYNC_SCENES). */
const char *sync_type_name(enum sync_type t);
uint8_t sync_type_etype(enum sync_type t);

/* Parses a Stash id: a string of 1..20 ASCII digits, no sign, no leading
 * zero, no exponent, not 0, fitting in u64.  CM_INVALID otherwise. */
enum cm_status sync_parse_id(const char *s, uint64_t *out) CM_WUR;

/* Parses "YYYY", "YYYY-MM" or "YYYY-MM-DD" (month 1..12, day valid for the
 * month, year 1..9999).  CM_INVALID otherwise. */
enum cm_status sync_parse_date(const char *s, size_t len,
                               struct kv_date *out) CM_WUR;

/* Checks Stash's RFC3339 timestamp form
 * YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm).  Returns true when valid. */
bool sync_valid_time(const char *s, size_t len);

/* Maps a scene object of SyncScenes.  Strings are borrowed from obj's
 * document or copied into a; arrays live in a (valid until the document is
 * freed and a reset).  The refs carry ids only (names null, rating/index -1);
 * call sync_fill_refs() next.  OUT err: "scene 12: files[0].size:
 * expected number".  CM_INVALID, CM_NOMEM. */
enum cm_status sync_map_scene(struct sjv obj, struct sync_arena *a,
                              struct kv_scene *out, char *err,
                              size_t errlen) CM_WUR;

/* Maps an entity object of Sync<Type>s (type: enum kv_etype).  Same rules
 * as sync_map_scene(). */
enum cm_status sync_map_entity(struct sjv obj, uint8_t type,
                               struct sync_arena *a, struct kv_entity *out,
                               char *err, size_t errlen) CM_WUR;

/* Remembers what sync_fill_refs() filled per (entity type, id), so a sync
 * decodes each entity record once rather than once per ref.  Entries own
 * copies of their strings, and refs filled from them borrow those: valid
 * until the cache is cleared or freed.  The cache does not see the store:
 * whoever writes or deletes an entity record (or aborts a transaction that
 * did) must clear it before the next fill (sync_run clears it at every
 * entity write and delete).  At most CM_MAX_REF_CACHE entries and
 * CM_MAX_REF_CACHE_BYTES of strings; past that, fills are not cached.  One
 * thread. */
struct sync_ref_cache;

/* OUT *out: caller owns, free with sync_ref_cache_free().  CM_NOMEM. */
enum cm_status sync_ref_cache_new(struct sync_ref_cache **out) CM_WUR;
/* Forgets every entry.  NULL-safe. */
void sync_ref_cache_clear(struct sync_ref_cache *c);
/* NULL-safe. */
void sync_ref_cache_free(struct sync_ref_cache *c);

/* Fills the denormalized fields of every ref of sc (studio, performers,
 * tags, groups, galleries) from the entity records in transaction t.  The
 * strings are copied into a or, for refs in cache (may be NULL; see above),
 * borrowed from it: either way they survive later writes in t.  A ref to
 * an unknown entity keeps its id with a null name; INOUT *unknown (may be
 * NULL) counts them.  CM_NOMEM, CM_CORRUPT, CM_IO. */
enum cm_status sync_fill_refs(struct kv_txn *t, struct kv_scene *sc,
                              struct sync_arena *a,
                              struct sync_ref_cache *cache,
                              uint64_t *unknown) CM_WUR;

/* Removes every `apikey` query parameter from URL u[0..n): OUT *out
 * (borrowed from u when nothing was removed, else copied into a). */
enum cm_status sync_strip_apikey(const char *u, size_t n, struct sync_arena *a,
                                 struct kv_str *out) CM_WUR;

/* ---- gzip bodies (sync_gzip.c) -------------------------------------- */

/* A reusable gzip decoder (one libdeflate decompressor).  One thread at a
 * time. */
struct sync_gunzip;

/* OUT *out: caller owns, free with sync_gunzip_free().  CM_NOMEM. */
enum cm_status sync_gunzip_new(struct sync_gunzip **out) CM_WUR;
/* NULL-safe. */
void sync_gunzip_free(struct sync_gunzip *g);

/* Decodes the gzip body in[0..len) (untrusted; one or more members,
 * decoded back to back as gzip(1) and zlib do) into INOUT out, which is
 * reset first; its limit out->max bounds the decoded size.  Every member's
 * CRC-32 and ISIZE are checked.  Statuses: CM_CORRUPT (not valid gzip:
 * bad header, bad deflate data, CRC or length mismatch, truncated member,
 * trailing bytes that are not a member, empty body), CM_TOOBIG (decoded
 * size past out->max), CM_NOMEM.  On error out is empty. */
enum cm_status sync_gunzip(struct sync_gunzip *g, const void *in, size_t len,
                           struct cm_buf *out) CM_WUR;

/* ---- GraphQL client (sync_client.c) --------------------------------- */

struct sync_client;

struct sync_client_opts {
    const char *url;        /* Stash base URL, without /graphql */
    const char *api_key;    /* NULL = none; sent as ApiKey, never logged */
    long connect_timeout_s; /* 0 = 10 s */
    long timeout_s;         /* whole request; 0 = 120 s */
    int retries;            /* extra attempts on 5xx, timeouts, resets */
    long backoff_ms;        /* first backoff; 0 = 250 ms */
    atomic_int *stop;       /* non-zero aborts retries (may be NULL) */
    enum cm_gzip gzip;      /* ask for gzip bodies; 0 = CM_GZIP_AUTO */
};

/* OUT *out: caller owns, free with sync_client_free().  CM_NOMEM,
 * CM_INTERNAL (libcurl init). */
enum cm_status sync_client_new(const struct sync_client_opts *o,
                               struct sync_client **out) CM_WUR;
void sync_client_free(struct sync_client *c);

/* Runs the embedded document `op` (a sync_queries[] name = operationName)
 * with variables (borrowed; NULL = none).  OUT *doc: the parsed response,
 * caller owns, free with sync_json_free(); *data: its `data` object.
 * Statuses: CM_UPSTREAM (401 "Stash rejected the API key", 422 with
 * Stash's messages, 200 with errors[] (first message), HTTP errors,
 * "malformed response", transport errors after retries), CM_TOOBIG (body
 * past CM_MAX_GRAPHQL_RESPONSE), CM_ABORTED (stop flag), CM_NOTFOUND
 * (unknown op), CM_NOMEM.  OUT err: a message without secrets. */
enum cm_status sync_client_query(struct sync_client *c, const char *op,
                                 const cJSON *variables, struct sync_json **doc,
                                 struct sjv *data, char *err,
                                 size_t errlen) CM_WUR;

/* Parses one GraphQL HTTP response (untrusted bytes, no NUL needed).
 * Exposed for the fuzz target and tests.  Same statuses and OUT as
 * sync_client_query(); OUT *retry: true when the status is worth a retry
 * (5xx). */
enum cm_status sync_parse_response(long http_status, const char *body,
                                   size_t len, struct sync_json **doc,
                                   struct sjv *data, bool *retry, char *err,
                                   size_t errlen) CM_WUR;

/* Number of HTTP requests made (attempts included). */
uint64_t sync_client_requests(const struct sync_client *c);

/* The text of embedded document name, or NULL. */
const char *sync_query_text(const char *name);

/* ---- Progress ------------------------------------------------------- */

enum sync_mode { SYNC_INCREMENTAL = 0, SYNC_FULL = 1 };

struct sync_type_status {
    uint64_t done;        /* items processed in the current phase */
    uint64_t total;       /* items expected (Stash's count), 0 = unknown */
    double rate;          /* items per second */
    double eta_s;         /* seconds left, < 0 = unknown */
    char phase[24];       /* "", "fetch", "activity", "reconcile", "done" */
    char last_error[256]; /* "" = none */
    int64_t last_success; /* unix time of the last completed pass, 0 */
};

struct sync_status {
    pthread_mutex_t mu; /* guards everything below */
    bool running;
    enum sync_mode mode;
    int64_t started, finished; /* unix seconds, 0 = never */
    char last_error[256];      /* of the last run, "" = succeeded */
    int64_t last_success;      /* unix time of the last successful run */
    int64_t last_sweep;        /* unix time the last completed activity sweep
                                  (or full sync) started, from the store; 0 */
    int64_t last_reconcile;    /* same for the last id reconciliation */
    struct sync_type_status types[SYNC_NTYPES];
    atomic_int stop; /* set to abort the running sync */
    int tty;         /* draw progress bars on stderr */
};

/* A copy of the status without the mutex, for readers. */
struct sync_status_view {
    bool running;
    enum sync_mode mode;
    int64_t started, finished, last_success;
    int64_t last_sweep, last_reconcile;
    char last_error[256];
    struct sync_type_status types[SYNC_NTYPES];
};

/* CM_INTERNAL when the mutex cannot be created. */
enum cm_status sync_status_init(struct sync_status *s) CM_WUR;
void sync_status_fini(struct sync_status *s);
/* Copies s into OUT *v.  Safe from any thread. */
void sync_status_snapshot(struct sync_status *s, struct sync_status_view *v);

/* ---- Runs (sync_run.c) ---------------------------------------------- */

/* What a run did about the activity sweep or the id reconciliation, which
 * incremental runs do only when due (cfg->sweep_interval,
 * cfg->reconcile_interval) or forced (cfg->sweep, cfg->reconcile). */
enum sync_extra {
    SYNC_EXTRA_NONE = 0, /* not decided: the run failed before */
    SYNC_EXTRA_DONE,     /* ran to completion */
    SYNC_EXTRA_NOT_DUE,  /* its interval has not passed since the last */
    SYNC_EXTRA_OFF,      /* interval 0 and not forced */
    SYNC_EXTRA_FULL,     /* sweep of a full sync: every scene was fetched */
    SYNC_EXTRA_GUARDED,  /* reconciliation skipped deletions (zero-ids
                            guard): not recorded as done */
};

/* "done", "not due", "off", "covered by the full sync", ... */
const char *sync_extra_name(enum sync_extra e);

struct sync_stats {
    uint64_t fetched[SYNC_NTYPES]; /* objects received */
    uint64_t written[SYNC_NTYPES]; /* records inserted or changed */
    uint64_t deleted[SYNC_NTYPES]; /* records deleted */
    uint64_t rewritten;            /* scenes rewritten for entity changes */
    uint64_t activity;             /* scenes updated by the activity sweep */
    uint64_t unknown_refs;         /* refs to entities not in the store */
    uint64_t requests;             /* GraphQL requests */
    uint64_t indexed; /* scenes of a deferred first sync indexed at its end */
    bool resumed;     /* continued an interrupted full sync */
    bool deletes_skipped; /* a deletion guard fired */
    enum sync_extra sweep, reconcile;
    int64_t last_sweep;     /* after the run: as sync_status.last_sweep */
    int64_t last_reconcile; /* after the run: as sync_status.last_reconcile */
    double seconds;
};

/* Runs one sync of cfg->stash_url into s: full (every object, pages by id,
 * then id reconciliation) or incremental (per type since its watermark;
 * then the activity sweep and the id reconciliation, each only when its
 * interval has passed since the time recorded in the store or when
 * cfg->sweep / cfg->reconcile force it).  An interrupted full sync is
 * resumed whatever mode is asked.  st (may be NULL) receives progress and
 * carries the stop flag. OUT stats (may be NULL).  OUT err: a clear one-line
 * reason.  Statuses: CM_OK, CM_UPSTREAM, CM_INVALID (a bad object from Stash),
 * CM_ABORTED (stop flag), CM_IO/CM_CORRUPT/CM_NOMEM/CM_TOOBIG from the store.
 * Each page is one write transaction: readers see whole pages.  A full
 * sync into a store without scenes defers the indexes (kv_index_deferred):
 * its scene pages write records only, and one transaction at the end of
 * the scene walk builds every index, so readers' queries see the library
 * from before the sync until then, and all of it after. */
enum cm_status sync_run(struct kv_store *s, const struct cm_config *cfg,
                        enum sync_mode mode, struct sync_status *st,
                        struct sync_stats *stats, char *err,
                        size_t errlen) CM_WUR;

/* ---- Scheduler (sync_sched.c) --------------------------------------- */

struct sync_scheduler;

/* Starts a thread that syncs at start (incremental, or full when
 * cfg->full), then every cfg->sync_interval seconds (0 = never), and on
 * sync_trigger().  status must outlive the scheduler.  OUT *out: free
 * with sync_scheduler_stop().  CM_NOMEM, CM_INTERNAL. */
enum cm_status sync_scheduler_start(struct kv_store *s,
                                    const struct cm_config *cfg,
                                    struct sync_status *status,
                                    struct sync_scheduler **out) CM_WUR;

/* Aborts a running sync, joins the thread, frees sc.  NULL-safe. */
void sync_scheduler_stop(struct sync_scheduler *sc);

/* Asks for a sync now.  CM_BUSY when one is running (the request is then
 * remembered and runs next). */
enum cm_status sync_trigger(struct sync_scheduler *sc,
                            enum sync_mode mode) CM_WUR;

/* Sets the stop flag of the running sync (it ends with CM_ABORTED after
 * the current page). */
void sync_abort(struct sync_scheduler *sc);
