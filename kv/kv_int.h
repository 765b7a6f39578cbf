/*
 * kv_int.h - declarations shared only inside kv/ (SQLite's btreeInt.h
 * role): the definitions of struct kv_store and struct kv_txn, the record
 * magic bytes and versions, and the meta keys.
 *
 * Locking model (see kv_store.c): every transaction, read or write, holds
 * the store's grow_lock in shared mode for its whole life, so that kv_grow
 * and the MDB_MAP_RESIZED handler, which take it exclusively, run
 * mdb_env_set_mapsize() with no transaction active in the process.  A
 * thread may nest holds (a read txn inside its write txn): a thread-local
 * count makes the nested acquisition free instead of a deadlock.
 */
#pragma once

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include "common/cm_buf.h"
#include "kv/kv.h"

/* Record headers: magic byte then record version byte. */
#define KV_SCENE_MAGIC       0xD5 /* scene record */
#define KV_ENTITY_MAGIC      0xE7 /* entity record */
#define KV_SCENE_VERSION     2    /* written; 1 is still read (kv_codec.c) */
#define KV_SCENE_VERSION_MIN 1
#define KV_ENTITY_VERSION    1

/* Meta keys (bytes without the NUL; values u64 little-endian, 8 bytes). */
#define KV_META_SCHEMA     "schema_version"
#define KV_META_NEXT_DOCID "next_docid"

/* Growth stops here (16 TiB, the config's upper bound). */
#define KV_MAX_MAP_SIZE ((size_t)1 << 44)

struct kv_revent;

struct kv_txn {
    struct kv_store *s;
    MDB_txn *txn;
    int write;           /* 1: write txn (heap, freed at end) */
    int active;          /* read handle: 1 between begin and end */
    int map_full;        /* saw MDB_MAP_FULL: growing the map helps */
    size_t map_seen;     /* map size when the txn began */
    struct cm_buf enc;   /* write txn: reusable record encode buffer */
    struct kv_txn *next; /* read handles: store's list (reader_mu) */
    struct kv_txn *prev;
    /* write txn: reverse entries kv_scene_store() queued (kv_scenes.c) */
    struct kv_revent *rev_put;
    size_t rev_n, rev_cap;
    /* write txn: the last id-map answer of kv_docid_of(), so that the
     * caller's check and the store that follows look a scene up once */
    uint64_t idq_id;
    uint32_t idq_docid;
    int idq; /* 0: none, 1: idq_id maps to idq_docid, -1: not mapped */
    /* write txn: the next docid, read from meta once and written back
     * by kv_pending_flush() (0: not read yet) */
    uint64_t next_docid;
    int next_dirty;
};

/* Whether the calling thread holds s's grow_lock (a transaction of s is
 * open in it): the map cannot be replaced until it lets go. */
int kv_held_by_me(struct kv_store *s);

struct kv_store {
    MDB_env *env;
    MDB_dbi dbi[KV_DB_COUNT];
    char *dir;
    int read_only;
    unsigned stale_cleared; /* reader slots cleared at open */
    uint64_t index_version; /* as stored at open */
    pthread_key_t tls_key;  /* this thread's read handle */
    int tls_key_ok;
    pthread_rwlock_t grow_lock; /* shared: any txn; exclusive: resize */
    int grow_lock_ok;
    pthread_mutex_t reader_mu; /* guards the readers list */
    int reader_mu_ok;
    struct kv_txn *readers; /* every per-thread read handle */
    int random_access;      /* kv_random_access(): re-advised after growth */
};

/* Takes / releases this thread's shared hold on s->grow_lock (nested
 * holds by one thread are counted, not re-locked). */
void kv_hold(struct kv_store *s);
void kv_unhold(struct kv_store *s);

/* Current map size of the environment. */
size_t kv_map_size(struct kv_store *s);

/* Writes the reverse entries kv_scene_store() queued in write txn t,
 * sorted, through one cursor (an insert then mostly lands on the leaf of
 * the one before, instead of a descent from the root for each).  Runs
 * before t commits and before anything in t reads or deletes reverse
 * entries.  MDB errors as kv_txn_from_mdb(). */
enum cm_status kv_rev_flush(struct kv_txn *t) CM_WUR;

/* kv_put for a key that is usually past every key of db (a new docid; a
 * Stash id of a keyset walk): MDB_APPEND skips the descent and fills the
 * last page instead of splitting it in half; a key that is not past the
 * last one is put the ordinary way. */
enum cm_status kv_put_tail(struct kv_txn *t, enum kv_db db, const void *key,
                           size_t klen, const void *val, size_t vlen) CM_WUR;

/* Everything write txn t keeps back until it commits: the queued reverse
 * entries (kv_rev_flush) and the next docid.  Runs before t commits. */
enum cm_status kv_pending_flush(struct kv_txn *t) CM_WUR;
