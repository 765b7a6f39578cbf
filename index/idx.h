/*
 * idx.h - the index engine: Stash's scene filter language answered from
 * precomputed indexes in LMDB, with exact counts.
 *
 * Write side: struct idx_writer wraps one kv write transaction.  Every
 * change to a scene record and to all its index entries happens in that
 * transaction (a reader never sees one without the other).  A batch (a sync
 * page of ~1,000 scenes) accumulates bitmap changes in memory and writes
 * each touched bitmap once at idx_writer_finish().
 *
 * Read side: idx_query_parse() turns Peek's/Stash's JSON (FindFilterType +
 * SceneFilterType, as cJSON) into a struct idx_query, rejecting anything
 * invalid with an error naming the field; idx_query_run() evaluates it in a
 * read transaction to an exact count and the page's docids in the ordering
 * contract of docs/ARCHITECTURE.md (sort key with SQLite's NULL rule, then
 * COALESCE(title, id) NATURAL_CI ASC, then the Stash id ASC).
 *
 * Thread-safety: a query may be run from any thread with that thread's own
 * read transaction; a parsed query is immutable and may be shared.  A
 * writer is used by one thread.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cm_status.h"
#include "kv/kv.h"

/* An error in a query, for the API's 400 {error, field}. */
struct idx_error {
    char field[128]; /* dotted path, e.g. "scene_filter.tags.modifier" */
    char message[256];
};

struct idx_query;

/* Parses a scene query.  find_filter: FindFilterType object {q, page,
 * per_page, sort, direction} or NULL; scene_filter: SceneFilterType object
 * (plus Peek's additions) or NULL.  Defaults follow Stash/Peek: page 1,
 * per_page default_per_page (Peek: 40; <0 = all rows, capped at
 * CM_MAX_PER_PAGE... see docs/API.md), direction ASC, no sort = Peek's
 * default created_at DESC.  OUT *out: caller owns, free with
 * idx_query_free().  CM_INVALID (+ err), CM_NOMEM. */
enum cm_status idx_query_parse(const cJSON *find_filter,
                               const cJSON *scene_filter, int default_per_page,
                               struct idx_query **out,
                               struct idx_error *err) CM_WUR;
void idx_query_free(struct idx_query *q);

struct idx_result {
    uint64_t count;   /* exact number of matching scenes */
    uint32_t *docids; /* the page, in order; caller owns */
    size_t n;
    /* Stash's FindScenesResultType totals over the whole matching set
     * (not just the page), filled only when the query asked for them with
     * idx_query_want_totals(): */
    double duration_sum; /* seconds: sum of files[0].duration (no file: 0) */
    double filesize_sum; /* bytes: sum of files[0].size (no file: 0) */
    bool has_totals;     /* the two sums above are valid */
};

/* Asks idx_query_run() to also compute the duration and filesize totals
 * (off by default: they cost one dense-column read per matching scene,
 * ~1-2 ms per million).  Call before the query is shared between threads
 * (it writes q).  q may be NULL (no-op). */
void idx_query_want_totals(struct idx_query *q, bool on);

/* Runs q in read (or write) transaction t.  OUT *res: release with
 * idx_result_fini().  CM_INVALID for an unknown referenced entity is NOT
 * an error (it matches nothing); CM_CORRUPT, CM_IO, CM_NOMEM. */
enum cm_status idx_query_run(struct kv_txn *t, const struct idx_query *q,
                             struct idx_result *res) CM_WUR;
void idx_result_fini(struct idx_result *res);

/* Background sort-order builder.  Queries answer from cached full sort
 * orders (docs/INDEX.md); after a write they are stale.  Without a
 * builder the first query that wants a missing or stale order builds it
 * (tens to hundreds of ms at 1M scenes).  While a builder runs for store
 * s, queries never build: they queue the order for the builder thread and
 * answer with the candidate plan meanwhile.  Start also queues the default
 * sort (created_at DESC).  One builder per store (CM_INVALID for a second;
 * CM_TOOBIG past 4 stores, CM_INTERNAL when no thread); stop it before
 * kv_close(s) (joins the thread; NULL-safe, no-op without one). */
enum cm_status idx_builder_start(struct kv_store *s) CM_WUR;
void idx_builder_stop(struct kv_store *s);
/* Waits until s's builder has nothing queued or running (tests, tools). */
void idx_builder_idle(struct kv_store *s);
/* Builds done and failed by s's builder since it started. */
void idx_builder_stats(struct kv_store *s, unsigned long *built,
                       unsigned long *failed);

/* ---- Write side ---------------------------------------------------- */

struct idx_writer;

/* Starts a batch in write transaction t.  OUT *out: free with
 * idx_writer_finish() (which flushes) or idx_writer_discard() (on error,
 * before kv_abort). */
enum cm_status idx_writer_begin(struct kv_txn *t,
                                struct idx_writer **out) CM_WUR;

/* Inserts or replaces the scene with sc->id (a Stash id): stores the record
 * through kv_scene_store() and updates every index entry.  The names and
 * other denormalized fields of sc's refs must already be filled by the
 * caller (sync/ fills them from the entity records).  OUT *docid may be
 * NULL.  CM_TOOBIG (map full: abort, grow, redo), CM_IO, CM_NOMEM. */
enum cm_status idx_scene_put(struct idx_writer *w, const struct kv_scene *sc,
                             uint32_t *docid) CM_WUR;

/* Deletes the scene with Stash id stash_id and all its index entries.
 * CM_NOTFOUND when absent. */
enum cm_status idx_scene_delete(struct idx_writer *w, uint64_t stash_id) CM_WUR;

/* Inserts/replaces or deletes an entity record, and updates the indexes
 * that depend on it (tag hierarchy, performer tags/favorite/birthdate,
 * studio parents, favorites).  It does NOT rewrite the denormalized scene
 * records that carry it: sync/ does that with kv_scenes_with() +
 * idx_scene_put(). */
enum cm_status idx_entity_put(struct idx_writer *w,
                              const struct kv_entity *e) CM_WUR;
enum cm_status idx_entity_delete(struct idx_writer *w, uint8_t type,
                                 uint64_t id) CM_WUR;

/* Flushes the batch's index changes and frees w.  The caller commits t. */
enum cm_status idx_writer_finish(struct idx_writer *w) CM_WUR;
void idx_writer_discard(struct idx_writer *w);

/* ---- Maintenance --------------------------------------------------- */

/* Rebuilds every index database from the stored records and entities, in
 * one write transaction (readers keep seeing the old indexes until commit).
 * OUT stats (may be NULL): scenes indexed. */
enum cm_status idx_rebuild(struct kv_store *s, uint64_t *scenes) CM_WUR;

/* Progress callback of idx_rebuild_progress: done of total scenes derived
 * so far (called every IDX_PROGRESS_STEP scenes and once at the end with
 * done == total; a map-full retry starts again from 0).  Called on the
 * rebuilding thread, inside the write transaction: keep it short. */
typedef void (*idx_progress_fn)(uint64_t done, uint64_t total, void *ctx);
#define IDX_PROGRESS_STEP 4096u

/* idx_rebuild with a progress callback (fn may be NULL). */
enum cm_status idx_rebuild_progress(struct kv_store *s, idx_progress_fn fn,
                                    void *ctx, uint64_t *scenes) CM_WUR;

/* Verifies that every index entry matches what idx_rebuild() would write
 * (and that every record decodes).  Writes a description of the first
 * problems to report (bounded).  CM_OK when consistent, CM_CORRUPT when
 * not. */
enum cm_status idx_verify(struct kv_store *s, struct cm_buf *report) CM_WUR;

/* ---- Helpers shared with api/ ------------------------------------- */

/* Number of scenes that carry entity (type, id) directly (performer, tag,
 * studio, group, gallery), from its posting bitmap; 0 when none. */
enum cm_status idx_entity_scene_count(struct kv_txn *t, uint8_t type,
                                      uint64_t id, uint64_t *n) CM_WUR;

/* Stash's random_<seed> key for a Stash id (stash-api.md §5.2, with
 * SQLite's double rounding). */
double idx_random_key(uint64_t id, uint64_t seed);

/* Free-text search tokens: lower-cased, case-folded words of s; exposed for
 * the entity autocomplete.  Calls fn for each token; stops when fn returns
 * non-zero. */
void idx_tokenize(const char *s, size_t len,
                  int (*fn)(const char *tok, size_t n, void *ctx), void *ctx);
