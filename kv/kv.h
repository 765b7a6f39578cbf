/*
 * kv.h - peekd's store: one LMDB environment, its named databases, and the
 * versioned binary records of scenes and entities.
 *
 * Main objects:
 *   struct kv_store  the environment (one per process; never open the same
 *                    directory twice in one process, never use after fork)
 *   struct kv_txn    a read or write transaction; never leaves its thread
 *   struct kv_scene  a decoded scene record: flat and denormalized (names of
 *                    performers, tags, studio, groups, galleries embedded)
 *   struct kv_entity a decoded performer/tag/studio/group/gallery record
 *
 * Thread-safety: a kv_store may be shared by all threads.  Each thread uses
 * its own read transaction (kv_read_begin/kv_read_end; the handle is reset
 * and renewed, 15 ns).  There is one writer at a time (LMDB); write
 * transactions do not block readers.  Data returned from a read is
 * *borrowed, valid until the transaction ends* (kv_read_end/kv_commit/
 * kv_abort) or the next write in the same write transaction.
 *
 * Deadlock rule: map growth (kv_grow, kv_write_run's retry) waits until no
 * transaction is open in the process, so never hold a read transaction
 * while calling kv_write_run or kv_grow in the same thread (they return
 * CM_BUSY instead of hanging); a read nested inside the same thread's write
 * transaction is fine.  kv_close: every other thread must be done with
 * the store.
 *
 * Layout (named databases, see docs/STORE.md):
 *   meta      string key -> value: schema version, counts, sync watermarks
 *   scenes    docid (u32, MDB_INTEGERKEY) -> scene record
 *   entities  type byte ‖ stash id (u64 BE) -> entity record
 *   idmap     'S' ‖ stash id (u64 BE) -> docid (u32); (instance reserved)
 *   docmap    docid -> stash id (u64)   (MDB_INTEGERKEY)
 *   reverse   type byte ‖ entity id BE ‖ docid BE -> "" : scenes that carry
 *             an entity, for rewriting denormalized names on renames
 *   the index databases (owned by index/): postings, sorts, columns, text
 *   sync      sync checkpoints and watermarks
 */
#pragma once

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cm_buf.h"
#include "common/cm_status.h"

/* Bump when the layout of any database or record changes.  A store with
 * another version is refused with CM_VERSION and a message saying what to
 * do (reindex for index-only changes, resync otherwise). */
#define KV_SCHEMA_VERSION 1
/* Bump when only derived index data changes: `peekd reindex` upgrades
 * (and `peekd serve` rebuilds at start).  2: q tokens of code and names;
 * 3: q text key classes (fingerprint, marker) and row postings. */
#define KV_INDEX_VERSION 3

enum kv_db {
    KV_DB_META,
    KV_DB_SCENES,
    KV_DB_ENTITIES,
    KV_DB_IDMAP,
    KV_DB_DOCMAP,
    KV_DB_REVERSE,
    KV_DB_POSTINGS, /* index/: filter bitmaps */
    KV_DB_SORTS,    /* index/: sort keys */
    KV_DB_COLUMNS,  /* index/: dense columns, rank arrays */
    KV_DB_TEXT,     /* index/: token -> bitmap */
    KV_DB_SYNC,     /* sync/: checkpoints */
    KV_DB_COUNT
};

/* Entity types (the first byte of an entity key). */
enum kv_etype {
    KV_PERFORMER = 'P',
    KV_TAG = 'T',
    KV_STUDIO = 'S',
    KV_GROUP = 'G',
    KV_GALLERY = 'Y',
};

struct kv_options {
    size_t map_size;      /* initial map size in bytes (0 = 64 GiB) */
    unsigned max_readers; /* 0 = 512 */
    int allow_network_fs; /* skip the filesystem guard */
    int read_only;        /* open MDB_RDONLY (check, backup) */
    int no_sync;          /* MDB_NOSYNC for bulk loads (tests, bench) */
};

struct kv_store;
struct kv_txn;

/* Opens (creating if needed) the store in directory dir: creates the
 * directory, refuses network/FUSE filesystems unless allowed (CM_UNSUPPORTED
 * with a message naming the filesystem and the fix), clears stale reader
 * slots, opens every named database, checks the schema version
 * (CM_VERSION; a new store gets KV_SCHEMA_VERSION and KV_INDEX_VERSION).
 * opt may be NULL (defaults).  read_only opens MDB_RDONLY and writes no
 * data (only LMDB's lock file is touched); it does not create anything
 * and gives CM_NOTFOUND when there is no store.  OUT *out: caller owns,
 * free with kv_close().  OUT err: a human-readable message on failure.
 * Statuses: CM_OK, CM_IO, CM_VERSION, CM_UNSUPPORTED, CM_CORRUPT,
 * CM_NOMEM, CM_NOTFOUND (read_only), CM_INVALID. */
enum cm_status kv_open(const char *dir, const struct kv_options *opt,
                       struct kv_store **out, char *err, size_t errlen) CM_WUR;

/* Closes the store.  No transaction may be open.  NULL-safe. */
void kv_close(struct kv_store *s);

/* The filesystem guard alone: CM_OK when dir is on a local filesystem,
 * CM_UNSUPPORTED + message otherwise. */
enum cm_status kv_check_fs(const char *dir, char *err, size_t errlen) CM_WUR;

/* Read transactions: one per thread at a time (a second begin before the
 * end is CM_BUSY).  kv_read_begin reuses the calling thread's handle
 * (renew); kv_read_end resets it (NULL-safe, idempotent).  A map grown by
 * another process (MDB_MAP_RESIZED) is adopted transparently.  CM_IO,
 * CM_BUSY (reader table full), CM_NOMEM on LMDB failure. */
enum cm_status kv_read_begin(struct kv_store *s, struct kv_txn **out) CM_WUR;
void kv_read_end(struct kv_txn *t);

/* Write transactions (one at a time, blocking other writers; CM_INVALID
 * on a read-only store).  Growing the map and retrying is NOT possible
 * after a partial write, so a write that hits a full map returns
 * CM_TOOBIG from kv_put: the caller aborts and calls kv_grow() (doubles
 * the map) then redoes the whole transaction.  Prefer kv_write_run(),
 * which does exactly that.  kv_commit/kv_abort free t (also on failure);
 * given a read handle they act as kv_read_end. */
enum cm_status kv_write_begin(struct kv_store *s, struct kv_txn **out) CM_WUR;
enum cm_status kv_commit(struct kv_txn *t) CM_WUR;
void kv_abort(struct kv_txn *t);
enum cm_status kv_grow(struct kv_store *s) CM_WUR;

/* Page-cache read-ahead on the store's map.  on: MADV_RANDOM, so a page
 * fault reads only its own page instead of the block device's read-ahead
 * window around it (8 MiB here: an incremental sync on a cold 3.7 GB store
 * read 2.7 GB for 1,000 scenes); off: MADV_NORMAL again (scans: the
 * deferred index build, the sweep, reconciliation, backups).  Kept across
 * map growth.  Only advice: a failing madvise is logged, not returned. */
void kv_random_access(struct kv_store *s, bool on);

/* Asks the kernel to start reading the pages of a value kv_get returned
 * (MADV_WILLNEED), so that a batch can name every value it will read
 * before it reads any and a cold store's disk reads overlap instead of
 * coming one page fault at a time.  Only values LMDB keeps on pages of
 * their own (KV_PREFETCH_MIN bytes and more) are advised: a smaller one
 * lies in the leaf page kv_get has just read.  Only advice: nothing is
 * returned.  (A value in a write transaction's own dirty pages is heap
 * memory, for which the advice does nothing.) */
#define KV_PREFETCH_MIN 2048
void kv_prefetch(const void *val, size_t n);

/* Reading a batch's pages ahead, in parallel (kv_warm.c).  While the store
 * is in random-access mode (kv_random_access: an incremental pass), a batch
 * about to look up many keys one after another in its write transaction
 * can first have them looked up by KV_WARM_THREADS threads, each in a read
 * transaction of its own, so that the page faults of a cold store are in
 * flight together; values of KV_PREFETCH_MIN bytes and more are advised
 * with kv_prefetch.  Only a warm-up: nothing is returned, a failure only
 * leaves the pages to the batch, and fewer than KV_WARM_MIN items or a
 * store not in random-access mode do nothing (a cached store would pay
 * for each lookup twice).  Call it with a transaction of s open in the
 * calling thread (a write transaction: the batch's own), which keeps the
 * map in place for the threads; without one it does nothing.  That
 * transaction is untouched: the threads read the last committed state. */
#define KV_WARM_THREADS 16
#define KV_WARM_MIN     64
struct kv_keyref {
    const void *key;
    uint16_t len;
    uint8_t db; /* enum kv_db */
};
typedef void kv_warm_fn(struct kv_txn *t, size_t lo, size_t hi, void *ctx);
bool kv_warming(struct kv_store *s);
/* fn(t, lo, hi, ctx) on slices of [0, n), each in a thread's read txn. */
void kv_warm_run(struct kv_store *s, size_t n, kv_warm_fn *fn, void *ctx);
void kv_warm_keys(struct kv_store *s, const struct kv_keyref *keys, size_t n);
/* The id-map entries and the records of these scenes (by Stash id). */
void kv_warm_scenes(struct kv_store *s, const uint64_t *stash_ids, size_t n);

/* Runs fn(t, ctx) in a write transaction and commits; on CM_TOOBIG from a
 * full map grows the map and runs fn again from the start (fn must be
 * repeatable).  Any other error from fn aborts and is returned. */
enum cm_status kv_write_run(struct kv_store *s,
                            enum cm_status (*fn)(struct kv_txn *t, void *ctx),
                            void *ctx) CM_WUR;

/* Raw access for index/ and sync/.  kv_get: OUT *val borrowed (see top).
 * CM_NOTFOUND, CM_IO; kv_put/kv_del: CM_TOOBIG on a full map, CM_IO. */
enum cm_status kv_get(struct kv_txn *t, enum kv_db db, const void *key,
                      size_t klen, const void **val, size_t *vlen) CM_WUR;
enum cm_status kv_put(struct kv_txn *t, enum kv_db db, const void *key,
                      size_t klen, const void *val, size_t vlen) CM_WUR;
enum cm_status kv_del(struct kv_txn *t, enum kv_db db, const void *key,
                      size_t klen) CM_WUR;

/* The LMDB handles behind a transaction and a database, for cursors. */
MDB_txn *kv_txn_mdb(struct kv_txn *t);
MDB_dbi kv_dbi(struct kv_store *s, enum kv_db db);
struct kv_store *kv_txn_store(struct kv_txn *t);
MDB_env *kv_env(struct kv_store *s);
const char *kv_dir(struct kv_store *s);

/* Translates an LMDB return code (logging the original). */
enum cm_status kv_from_mdb(int rc, const char *what);

/* Like kv_from_mdb for an rc of a raw mdb_* call made on t's txn (cursor
 * puts in index/): also remembers MDB_MAP_FULL so kv_write_run() grows the
 * map and retries.  t may be NULL. */
enum cm_status kv_txn_from_mdb(struct kv_txn *t, int rc, const char *what);

/* The filesystem guard's decision for a statfs() f_type: CM_OK for local
 * filesystems, CM_UNSUPPORTED + message (what it is, why LMDB cannot use
 * it, the fix, the override) for 9p, FUSE (virtiofs, gRPC-FUSE), NFS,
 * CIFS, SMB2, SMB.  Pure; thread-safe. */
enum cm_status kv_fs_verdict(unsigned long f_type, char *err,
                             size_t errlen) CM_WUR;

/* Clears reader slots of dead processes.  OUT *cleared (may be NULL).
 * kv_open does this once; serve may call it periodically.  CM_IO. */
enum cm_status kv_reader_check(struct kv_store *s, int *cleared) CM_WUR;
/* How many stale reader slots kv_open cleared. */
unsigned kv_stale_readers_cleared_at_open(struct kv_store *s);

/* Writes a consistent, compacted copy of the store (mdb_env_copy2 with
 * MDB_CP_COMPACT: a read txn, so it runs while another process serves or
 * syncs) as dest_dir/data.mdb.  dest_dir must not exist or be empty
 * (created 0700).  No transaction of the calling thread may be open.
 * OUT err: message on failure.  CM_EXISTS (not empty), CM_IO, CM_BUSY. */
enum cm_status kv_backup(struct kv_store *s, const char *dest_dir, char *err,
                         size_t errlen) CM_WUR;

/* Meta key of the derived-index version (u64). */
#define KV_META_INDEX_VERSION "index_version"

/* OUT *ok: the store's index version equals KV_INDEX_VERSION (false when
 * it differs or is missing: run idx_rebuild, then kv_index_version_set in
 * its last write txn).  CM_IO, CM_CORRUPT. */
enum cm_status kv_index_version_ok(struct kv_txn *t, bool *ok) CM_WUR;
enum cm_status kv_index_version_set(struct kv_txn *t) CM_WUR;

/* Deferred indexes: a first full sync into an empty store writes scene
 * records only (kv_scene_store_record) and builds every index once at the
 * end with idx_rebuild, which clears the mark in the same transaction.
 * While the mark is set the index databases do not describe the records:
 * `peekd check` verifies the records only, and serve without a Stash URL
 * rebuilds at start.  OUT *on.  CM_IO, CM_CORRUPT. */
#define KV_META_INDEX_DEFERRED "index_deferred"
enum cm_status kv_index_deferred(struct kv_txn *t, bool *on) CM_WUR;
enum cm_status kv_index_defer(struct kv_txn *t, bool on) CM_WUR;

/* Meta helpers: string keys, u64 values. */
enum cm_status kv_meta_get_u64(struct kv_txn *t, const char *key,
                               uint64_t *out) CM_WUR;
enum cm_status kv_meta_put_u64(struct kv_txn *t, const char *key,
                               uint64_t v) CM_WUR;

/* ---- Records ------------------------------------------------------- */

/* A borrowed string: p == NULL means null; len excludes any NUL.  Strings
 * decoded from records are NOT NUL-terminated. */
struct kv_str {
    const char *p;
    uint32_t len;
};

/* s is there and not empty: what makes an image URL an image (a ref's
 * has_image, the API's image paths, the sync's rewrite test). */
static inline bool kv_str_set(struct kv_str s)
{
    return s.p != NULL && s.len != 0;
}

/* A reference to an entity embedded in a scene (denormalized).  Of the
 * entity's images only their presence is embedded: the API answers with
 * peekd's own proxy path, which the image proxy resolves from the entity
 * record (STORE.md, "Records"). */
struct kv_ref {
    uint64_t id;        /* Stash id */
    struct kv_str name; /* performer/tag/studio/group name, gallery title */
    struct kv_str aux;  /* performer disambiguation */
    int32_t rating100;  /* -1 = null */
    int32_t index;      /* group scene_index, -1 = null */
    uint8_t gender;     /* performer: enum kv_gender */
    bool favorite;
    bool has_image;      /* image_path / front_image_path / cover */
    bool has_back_image; /* group back_image_path */
};

enum kv_gender {
    KV_GENDER_NULL = 0,
    KV_GENDER_MALE,
    KV_GENDER_FEMALE,
    KV_GENDER_TRANSGENDER_MALE,
    KV_GENDER_TRANSGENDER_FEMALE,
    KV_GENDER_INTERSEX,
    KV_GENDER_NON_BINARY,
    KV_GENDER_COUNT
};

/* Stash's GenderEnum name of g ("MALE", ...); NULL for KV_GENDER_NULL and
 * out-of-range values.  The one table sync's mapping and the API share. */
const char *kv_gender_name(uint8_t g);

struct kv_file {
    uint64_t id;
    struct kv_str path, basename, format, video_codec, audio_codec, mod_time;
    struct kv_str oshash, md5, phash; /* null when absent */
    int64_t size;
    double duration, frame_rate;
    int64_t bit_rate;
    int32_t width, height;
};

struct kv_caption {
    struct kv_str language_code, caption_type;
};

struct kv_stash_id {
    struct kv_str endpoint, stash_id;
};

struct kv_marker {
    uint64_t id;
    struct kv_str title;
    double seconds, end_seconds; /* end_seconds < 0 = null */
    uint64_t primary_tag_id;
};

/* Date with Stash's precision: "YYYY", "YYYY-MM" or "YYYY-MM-DD". */
struct kv_date {
    int16_t year;  /* 0 = null */
    uint8_t month; /* 0 = absent (precision year) */
    uint8_t day;   /* 0 = absent */
};

struct kv_scene {
    uint64_t id; /* Stash id */
    struct kv_str title, code, details, director;
    struct kv_date date;
    int32_t rating100; /* -1 = null */
    bool organized, interactive;
    int32_t interactive_speed; /* -1 = null */
    int32_t o_counter, play_count;
    double play_duration, resume_time;    /* < 0 = null */
    struct kv_str last_played_at;         /* Stash's text, null = never */
    struct kv_str created_at, updated_at; /* Stash's RFC3339 text */
    /* Stash asset URLs without any apikey (paths.*) */
    struct kv_str p_screenshot, p_preview, p_webp, p_vtt, p_sprite, p_funscript,
        p_caption;
    uint32_t n_urls, n_files, n_captions, n_stash_ids, n_markers;
    uint32_t n_performers, n_tags, n_groups, n_galleries;
    struct kv_str *urls;
    struct kv_file *files; /* files[0] is the primary file */
    struct kv_caption *captions;
    struct kv_stash_id *stash_ids;
    struct kv_marker *markers;
    struct kv_ref studio; /* id 0 = no studio */
    struct kv_ref *performers, *tags, *groups, *galleries;
};

/* Entities.  Fields a type does not have stay null/zero. */
struct kv_entity {
    uint8_t type; /* enum kv_etype */
    uint64_t id;
    struct kv_str name;           /* gallery: title */
    struct kv_str sort_name;      /* tag */
    struct kv_str disambiguation; /* performer */
    struct kv_str description;    /* tag description, studio details,
                                     group synopsis */
    struct kv_str image;          /* image_path, front_image_path, cover */
    struct kv_str back_image;     /* group */
    struct kv_str birthdate;      /* performer, as Stash sent it */
    struct kv_str country;        /* performer */
    struct kv_str director;       /* group */
    struct kv_date date;          /* group, gallery */
    struct kv_str created_at, updated_at;
    uint8_t gender; /* enum kv_gender */
    bool favorite;
    int32_t rating100;   /* -1 = null */
    int32_t duration;    /* group, seconds, -1 = null */
    int32_t image_count; /* gallery, -1 = null */
    uint64_t studio_id;  /* group, gallery; 0 = none */
    uint32_t n_aliases, n_parents, n_tags;
    struct kv_str *aliases; /* performer alias_list, tag/studio aliases,
                               group aliases (one string) */
    uint64_t *parents;      /* tag parents, studio parent (n <= 1),
                               group containing groups */
    uint64_t *tags;         /* performer/studio/group tag ids */
};

/* Encodes a record into out (appends; caller owns out).  CM_TOOBIG past
 * CM_MAX_RECORD, CM_INVALID for a string longer than CM_MAX_STRING or an
 * array longer than CM_MAX_ARRAY, CM_NOMEM. */
enum cm_status kv_scene_encode(const struct kv_scene *sc,
                               struct cm_buf *out) CM_WUR;
enum cm_status kv_entity_encode(const struct kv_entity *e,
                                struct cm_buf *out) CM_WUR;

/* Decodes buf[0..len) (untrusted: never reads out of bounds).  Strings in
 * *out are borrowed from buf; arrays are allocated: release with
 * kv_scene_fini()/kv_entity_fini() (also after an error).  CM_CORRUPT for
 * truncated or malformed input, CM_VERSION for an unknown record version,
 * CM_NOMEM. */
enum cm_status kv_scene_decode(const void *buf, size_t len,
                               struct kv_scene *out) CM_WUR;
void kv_scene_fini(struct kv_scene *sc);
/* kv_scene_decode with the arrays in arena (reset first, grown as needed
 * up to its max; caller owns it and reuses it across records, so a walk
 * over many records allocates nothing and parses each once).  *out's
 * arrays are borrowed from arena until it is next used or freed: do not
 * call kv_scene_fini() on *out.  Same statuses as kv_scene_decode, and
 * CM_TOOBIG when the arrays do not fit arena's max (CM_MAX_RECORD_ARENA
 * fits any record). */
enum cm_status kv_scene_decode_in(const void *buf, size_t len,
                                  struct cm_buf *arena,
                                  struct kv_scene *out) CM_WUR;
enum cm_status kv_entity_decode(const void *buf, size_t len,
                                struct kv_entity *out) CM_WUR;
void kv_entity_fini(struct kv_entity *e);

/* Deep copy of a decoded scene whose strings no longer borrow from the
 * record buffer (caller owns, free with kv_scene_free()).  CM_NOMEM. */
enum cm_status kv_scene_clone(const struct kv_scene *in,
                              struct kv_scene **out) CM_WUR;
void kv_scene_free(struct kv_scene *sc);

/* Field-by-field equality (tests, and skipping no-op updates). */
bool kv_scene_equal(const struct kv_scene *a, const struct kv_scene *b);
bool kv_entity_equal(const struct kv_entity *a, const struct kv_entity *b);

/* ---- Scenes and entities in the store ------------------------------ */

/* Looks up the docid of a Stash scene id.  CM_NOTFOUND. */
enum cm_status kv_docid_of(struct kv_txn *t, uint64_t stash_id,
                           uint32_t *docid) CM_WUR;
/* Stash id of a docid.  CM_NOTFOUND. */
enum cm_status kv_stash_id_of(struct kv_txn *t, uint32_t docid,
                              uint64_t *stash_id) CM_WUR;

/* Reads and decodes the scene at docid.  OUT *out: strings borrowed until
 * the transaction ends; release arrays with kv_scene_fini().
 * CM_NOTFOUND, CM_CORRUPT. */
enum cm_status kv_scene_get(struct kv_txn *t, uint32_t docid,
                            struct kv_scene *out) CM_WUR;

/* Raw record bytes of docid (borrowed). */
enum cm_status kv_scene_get_raw(struct kv_txn *t, uint32_t docid,
                                const void **rec, size_t *len) CM_WUR;

/* Stores a scene record (write txn): allocates a docid for a new Stash id
 * (OUT *docid, *created), updates idmap/docmap and the reverse index of
 * the entities it carries by diffing against the previous version: old
 * when the caller has it decoded, else the stored record is read (so old
 * may always be NULL).  Unchanged refs cost no write.  Entity id 0 means
 * "none" and is not indexed.  sc->id must be non-zero.  Does NOT touch index/
 * databases: callers go through idx_scene_put(), which calls this.  CM_TOOBIG
 * (map full), CM_IO, CM_INVALID. */
enum cm_status kv_scene_store(struct kv_txn *t, const struct kv_scene *sc,
                              const struct kv_scene *old, uint32_t *docid,
                              bool *created) CM_WUR;

/* Like kv_scene_store, without the reverse index: for a store whose
 * indexes are deferred (kv_index_deferred), where idx_rebuild writes the
 * whole reverse index afterwards (kv_revbuild_*). */
enum cm_status kv_scene_store_record(struct kv_txn *t,
                                     const struct kv_scene *sc,
                                     uint32_t *docid) CM_WUR;

/* The reverse entries the records call for, to check the stored index
 * against (idx_verify): add every scene in increasing docid order, then
 * kv_revbuild_check.  Zero-initialise to use.  (The rebuild writes the
 * index with kv_revapp, from the bulk builder's postings.) */
struct kv_revent;
struct kv_revbuild {
    struct kv_revent *v;
    size_t n, cap;
    uint32_t last; /* docid of the last add */
};
enum cm_status kv_revbuild_add(struct kv_revbuild *rb, uint32_t docid,
                               const struct kv_scene *sc) CM_WUR;
/* Writes the reverse index from scratch in key order, for a builder that
 * already has every entity's scenes sorted (idx_bulk: its posting keys of
 * tags, performers, studios, groups and galleries are exactly these
 * lists).  kv_revapp_begin drops what the reverse database held and opens
 * an appending cursor; each kv_revapp_put appends (type, id, docid) for
 * the increasing docids[0..n), and the calls must come in key order
 * (type, then id: CM_INVALID otherwise, or CM_IO from LMDB's append
 * check).  Id 0 ("none") is skipped.  OUT *out: free with
 * kv_revapp_end() (NULL-safe) before t ends.  CM_NOMEM, CM_IO,
 * CM_TOOBIG (map full). */
struct kv_revapp;
enum cm_status kv_revapp_begin(struct kv_txn *t, struct kv_revapp **out) CM_WUR;
enum cm_status kv_revapp_put(struct kv_revapp *a, uint8_t type, uint64_t id,
                             const uint32_t *docids, size_t n) CM_WUR;
void kv_revapp_end(struct kv_revapp *a);

/* Compares the stored reverse index with rb's entries (sorts rb).  OUT
 * *missing: entries rb has and the store lacks; *extra: the opposite. */
enum cm_status kv_revbuild_check(struct kv_txn *t, struct kv_revbuild *rb,
                                 uint64_t *missing, uint64_t *extra) CM_WUR;
void kv_revbuild_fini(struct kv_revbuild *rb);

/* Removes the scene at docid and its idmap/docmap/reverse entries (write
 * txn).  old is its decoded record, or NULL to read the stored one.  The
 * docid is never reused.  CM_NOTFOUND. */
enum cm_status kv_scene_remove(struct kv_txn *t, uint32_t docid,
                               const struct kv_scene *old) CM_WUR;

/* Number of scenes stored (entries of the scenes database, O(1)). */
enum cm_status kv_scene_count(struct kv_txn *t, uint64_t *n) CM_WUR;

/* Entities: get (decoded, strings borrowed), put, delete. */
enum cm_status kv_entity_get(struct kv_txn *t, uint8_t type, uint64_t id,
                             struct kv_entity *out) CM_WUR;
enum cm_status kv_entity_put(struct kv_txn *t,
                             const struct kv_entity *e) CM_WUR;
enum cm_status kv_entity_del(struct kv_txn *t, uint8_t type,
                             uint64_t id) CM_WUR;

/* Calls fn(docid, ctx) for every scene that carries entity (type, id),
 * in docid order, from the reverse index.  fn returns non-zero to stop. */
enum cm_status kv_scenes_with(struct kv_txn *t, uint8_t type, uint64_t id,
                              int (*fn)(uint32_t docid, void *ctx),
                              void *ctx) CM_WUR;
