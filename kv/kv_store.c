/*
 * kv_store.c - the LMDB environment: open/close with the filesystem guard
 * and the schema check, per-thread reusable read transactions, write
 * transactions, map growth, raw get/put/del, meta helpers, backups.
 *
 * Map growth.  mdb_env_set_mapsize() may only run while no transaction is
 * active in the process (lmdb.h), and LMDB does not check it.  Every
 * transaction therefore holds grow_lock shared for its lifetime; kv_grow
 * and the MDB_MAP_RESIZED handler (another process grew the map) take it
 * exclusively.  The lock prefers writers so a steady stream of readers
 * cannot starve a grow; a thread's nested holds are counted in a small
 * thread-local table instead of re-locking (which would deadlock behind a
 * waiting grower).
 *
 * Read handles.  Each thread gets one MDB_txn per store, kept in a
 * pthread key: kv_read_begin renews it, kv_read_end resets it (15 ns vs
 * 59 ns for begin/abort).  The handles are also linked in the store so
 * kv_close can free those of threads that are still alive; a thread that
 * exits frees its own through the key's destructor.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "common/cm_log.h"
#include "kv/kv_int.h"

#define DEFAULT_MAP_SIZE    ((size_t)64 << 30)
#define DEFAULT_MAX_READERS 512
#define RESIZE_RETRIES      8

static const char *const db_names[KV_DB_COUNT] = {
    [KV_DB_META] = "meta",         [KV_DB_SCENES] = "scenes",
    [KV_DB_ENTITIES] = "entities", [KV_DB_IDMAP] = "idmap",
    [KV_DB_DOCMAP] = "docmap",     [KV_DB_REVERSE] = "reverse",
    [KV_DB_POSTINGS] = "postings", [KV_DB_SORTS] = "sorts",
    [KV_DB_COLUMNS] = "columns",   [KV_DB_TEXT] = "text",
    [KV_DB_SYNC] = "sync",
};

static unsigned db_flags(enum kv_db db)
{
    return db == KV_DB_SCENES || db == KV_DB_DOCMAP ? MDB_INTEGERKEY : 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    if (vsnprintf(err, errlen, fmt, ap) < 0)
        err[0] = '\0';
    va_end(ap);
}

/* ---- Status translation ---------------------------------------------- */

enum cm_status kv_from_mdb(int rc, const char *what)
{
    enum cm_status st;
    enum cm_log_level lvl = CM_LOG_ERROR;

    switch (rc) {
    case MDB_SUCCESS: return CM_OK;
    case MDB_NOTFOUND: return CM_NOTFOUND;
    case MDB_KEYEXIST: return CM_EXISTS;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_PAGE_FULL:
    case MDB_CURSOR_FULL:
        st = CM_TOOBIG;
        lvl = CM_LOG_DEBUG; /* kv_write_run grows and retries */
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_INCOMPATIBLE: st = CM_CORRUPT; break;
    case MDB_VERSION_MISMATCH: st = CM_VERSION; break;
    case MDB_READERS_FULL:
    case MDB_MAP_RESIZED:
    case MDB_TLS_FULL: st = CM_BUSY; break;
    case MDB_BAD_VALSIZE: st = CM_INVALID; break;
    case ENOMEM: st = CM_NOMEM; break;
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOENT:
    case ENOSPC:
    case EIO:
    case EAGAIN: st = CM_IO; break;
    default: /* MDB_DBS_FULL, MDB_BAD_TXN, MDB_BAD_RSLOT, MDB_BAD_DBI, EINVAL */
        st = CM_INTERNAL;
        break;
    }
    cm_log(lvl, "kv", "%s: %s (lmdb %d)", what ? what : "lmdb",
           mdb_strerror(rc), rc);
    return st;
}

/* Translates rc from an operation on t, remembering a full map. */
static enum cm_status txn_rc(struct kv_txn *t, int rc, const char *what)
{
    if (rc == MDB_MAP_FULL)
        t->map_full = 1;
    return kv_from_mdb(rc, what);
}

enum cm_status kv_txn_from_mdb(struct kv_txn *t, int rc, const char *what)
{
    if (!t)
        return kv_from_mdb(rc, what);
    return txn_rc(t, rc, what);
}

/* ---- Filesystem guard ------------------------------------------------ */

static const struct {
    unsigned long type;
    const char *name;
    const char *where;
} bad_fs[] = {
    {0x01021997UL, "9p (v9fs)",
     "WSL2 Windows drives and Docker Desktop "
     "bind mounts on Windows"},
    {0x65735546UL, "FUSE",
     "virtiofs/gRPC-FUSE Docker Desktop bind mounts "
     "on macOS and Windows, sshfs, ..."},
    {0x6969UL, "NFS", "network share"},
    {0xFF534D42UL, "CIFS", "Windows/Samba network share"},
    {0xFE534D42UL, "SMB2", "Windows/Samba network share"},
    {0x517BUL, "SMB", "Windows/Samba network share"},
};

enum cm_status kv_fs_verdict(unsigned long f_type, char *err, size_t errlen)
{
    /* statfs's f_type is a signed long on some ABIs: compare 32 bits. */
    unsigned long t = f_type & 0xFFFFFFFFUL;
    for (size_t i = 0; i < sizeof bad_fs / sizeof bad_fs[0]; i++) {
        if (t != bad_fs[i].type)
            continue;
        set_err(err, errlen,
                "the data directory is on %s (%s). LMDB needs a local "
                "filesystem: memory maps and locks are unreliable or slow "
                "there, and a Docker Desktop bind mount is exactly what "
                "made the old SQLite cache 100x slower. Fix: put the store "
                "in a Docker named volume (e.g. `-v peekd-data:/data`) or "
                "in a local directory. To run on it anyway, set "
                "PEEKD_ALLOW_NETWORK_FS=1 (--allow-network-fs).",
                bad_fs[i].name, bad_fs[i].where);
        return CM_UNSUPPORTED;
    }
    return CM_OK;
}

enum cm_status kv_check_fs(const char *dir, char *err, size_t errlen)
{
    struct statfs sf;
    char why[768];
    enum cm_status st;

    if (!dir)
        return CM_INVALID;
    if (statfs(dir, &sf) != 0) {
        set_err(err, errlen, "cannot inspect the filesystem of %s: %s", dir,
                strerror(errno));
        return CM_IO;
    }
    st = kv_fs_verdict((unsigned long)sf.f_type, why, sizeof why);
    if (st != CM_OK)
        set_err(err, errlen, "%s: %s", dir, why);
    return st;
}

/* ---- The grow lock --------------------------------------------------- */

#define HOLD_SLOTS 4
/* This thread's holds on grow locks (see the top of the file). */
static _Thread_local struct {
    struct kv_store *s;
    unsigned n;
} tl_holds[HOLD_SLOTS];

int kv_held_by_me(struct kv_store *s)
{
    for (int i = 0; i < HOLD_SLOTS; i++)
        if (tl_holds[i].s == s && tl_holds[i].n)
            return 1;
    return 0;
}

void kv_hold(struct kv_store *s)
{
    int fr = -1;
    for (int i = 0; i < HOLD_SLOTS; i++) {
        if (tl_holds[i].s == s && tl_holds[i].n) {
            tl_holds[i].n++;
            return;
        }
        if (!tl_holds[i].n && fr < 0)
            fr = i;
    }
    pthread_rwlock_rdlock(&s->grow_lock);
    if (fr >= 0) {
        tl_holds[fr].s = s;
        tl_holds[fr].n = 1;
    }
}

void kv_unhold(struct kv_store *s)
{
    for (int i = 0; i < HOLD_SLOTS; i++)
        if (tl_holds[i].s == s && tl_holds[i].n) {
            if (--tl_holds[i].n == 0) {
                tl_holds[i].s = NULL;
                pthread_rwlock_unlock(&s->grow_lock);
            }
            return;
        }
    pthread_rwlock_unlock(&s->grow_lock); /* an untracked hold */
}

size_t kv_map_size(struct kv_store *s)
{
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) != 0)
        return 0;
    return info.me_mapsize;
}

/* The address and length of the map of data.mdb: LMDB does not export it
 * (mdb_env_info's me_mapaddr is only set for MDB_FIXEDMAP), so it is the
 * mapping of the environment's file (by device and inode) in
 * /proc/self/maps.  false: not found. */
static bool find_map(struct kv_store *s, void **addr, size_t *len)
{
    struct stat sb;
    mdb_filehandle_t fd;
    char line[512];
    FILE *f;
    bool found = false;

    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &sb) != 0)
        return false;
    if (!(f = fopen("/proc/self/maps", "re")))
        return false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, ino;
        unsigned long long off;
        unsigned maj, mnr;
        if (sscanf(line, "%lx-%lx %*s %llx %x:%x %lu", &lo, &hi, &off, &maj,
                   &mnr, &ino) == 6 &&
            ino == (unsigned long)sb.st_ino && off == 0 &&
            makedev(maj, mnr) == sb.st_dev && hi > lo) {
            *addr = (void *)lo;
            *len = hi - lo;
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* madvise(MADV_RANDOM or MADV_NORMAL) on the whole map; the caller
 * keeps the map from being replaced (grow_lock, shared or exclusive). */
static void advise_map(struct kv_store *s, bool random)
{
    void *addr;
    size_t len;
    if (!find_map(s, &addr, &len)) {
        cm_warn("kv",
                "the map of %s/data.mdb is not in /proc/self/maps: "
                "read-ahead left as it is",
                s->dir);
        return;
    }
    if (madvise(addr, len, random ? MADV_RANDOM : MADV_NORMAL) != 0)
        cm_warn("kv", "madvise(%s) on the map failed: %s",
                random ? "MADV_RANDOM" : "MADV_NORMAL", strerror(errno));
}

void kv_random_access(struct kv_store *s, bool on)
{
    if (!s)
        return;
    kv_hold(s);
    __atomic_store_n(&s->random_access, on ? 1 : 0, __ATOMIC_RELAXED);
    advise_map(s, on);
    kv_unhold(s);
}

void kv_prefetch(const void *val, size_t n)
{
    long page = sysconf(_SC_PAGESIZE); /* glibc reads it from auxv */
    uintptr_t a, e;

    if (!val || n < KV_PREFETCH_MIN)
        return;
    if (page <= 0)
        page = 4096;
    a = (uintptr_t)val & ~(uintptr_t)(page - 1);
    e = ((uintptr_t)val + n + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    (void)madvise((void *)a, e - a, MADV_WILLNEED);
}

/* Another process grew the map past ours: adopt its size. */
static enum cm_status adopt_map_size(struct kv_store *s)
{
    int rc;
    if (kv_held_by_me(s))
        return CM_BUSY; /* a txn of this thread is still open */
    pthread_rwlock_wrlock(&s->grow_lock);
    rc = mdb_env_set_mapsize(s->env, 0);
    if (rc == 0 && __atomic_load_n(&s->random_access, __ATOMIC_RELAXED))
        advise_map(s, true); /* a new mapping starts with MADV_NORMAL */
    pthread_rwlock_unlock(&s->grow_lock);
    if (rc == 0)
        cm_info("kv", "map grown by another process; now %zu MiB",
                kv_map_size(s) >> 20);
    return kv_from_mdb(rc, "adopt map size");
}

/* Doubles the map unless it already grew past seen. */
static enum cm_status grow_from(struct kv_store *s, size_t seen)
{
    size_t cur, want;
    int rc = 0;

    if (s->read_only)
        return CM_TOOBIG;
    if (kv_held_by_me(s)) {
        cm_error("kv", "kv_grow called with a transaction open in this "
                       "thread");
        return CM_BUSY;
    }
    pthread_rwlock_wrlock(&s->grow_lock);
    cur = kv_map_size(s);
    if (cur <= seen) {
        if (cur >= KV_MAX_MAP_SIZE) {
            pthread_rwlock_unlock(&s->grow_lock);
            cm_error("kv", "map is %zu GiB, the maximum: cannot grow",
                     cur >> 30);
            return CM_TOOBIG;
        }
        want = cur > KV_MAX_MAP_SIZE / 2 ? KV_MAX_MAP_SIZE : cur * 2;
        rc = mdb_env_set_mapsize(s->env, want);
        if (rc == 0 && __atomic_load_n(&s->random_access, __ATOMIC_RELAXED))
            advise_map(s, true); /* a new mapping starts with MADV_NORMAL */
        if (rc == 0)
            cm_info("kv", "map grown from %zu to %zu MiB", cur >> 20,
                    want >> 20);
    }
    pthread_rwlock_unlock(&s->grow_lock);
    return kv_from_mdb(rc, "grow map");
}

enum cm_status kv_grow(struct kv_store *s)
{
    if (!s)
        return CM_INVALID;
    return grow_from(s, kv_map_size(s));
}

/* ---- Read transactions ----------------------------------------------- */

static void unlink_reader(struct kv_store *s, struct kv_txn *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else if (s->readers == t)
        s->readers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

/* Thread exit: frees the thread's read handle. */
static void tls_dtor(void *p)
{
    struct kv_txn *t = p;
    struct kv_store *s = t->s;
    pthread_mutex_lock(&s->reader_mu);
    unlink_reader(s, t);
    pthread_mutex_unlock(&s->reader_mu);
    if (t->active) {
        cm_warn("kv", "thread exited inside a read transaction");
        kv_unhold(s);
    }
    if (t->txn)
        mdb_txn_abort(t->txn);
    cm_free(t);
}

static enum cm_status reader_handle(struct kv_store *s, struct kv_txn **out)
{
    struct kv_txn *t = pthread_getspecific(s->tls_key);
    if (t) {
        *out = t;
        return CM_OK;
    }
    t = cm_calloc(1, sizeof *t);
    if (!t)
        return CM_NOMEM;
    t->s = s;
    if (pthread_setspecific(s->tls_key, t) != 0) {
        cm_free(t);
        return CM_NOMEM;
    }
    pthread_mutex_lock(&s->reader_mu);
    t->next = s->readers;
    if (s->readers)
        s->readers->prev = t;
    s->readers = t;
    pthread_mutex_unlock(&s->reader_mu);
    *out = t;
    return CM_OK;
}

enum cm_status kv_read_begin(struct kv_store *s, struct kv_txn **out)
{
    struct kv_txn *t;
    enum cm_status st;
    int rc;

    if (!out)
        return CM_INVALID;
    *out = NULL;
    if (!s)
        return CM_INVALID;
    st = reader_handle(s, &t);
    if (st != CM_OK)
        return st;
    if (t->active) {
        cm_error("kv", "kv_read_begin: this thread already has an open "
                       "read transaction");
        return CM_BUSY;
    }
    for (int attempt = 0;; attempt++) {
        kv_hold(s);
        if (t->txn) {
            rc = mdb_txn_renew(t->txn);
        } else {
            rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
        }
        if (rc == 0)
            break;
        kv_unhold(s);
        if (rc == MDB_MAP_RESIZED && attempt < RESIZE_RETRIES) {
            st = adopt_map_size(s);
            if (st != CM_OK)
                return st;
            continue;
        }
        if (t->txn && rc != MDB_MAP_RESIZED) {
            mdb_txn_abort(t->txn);
            t->txn = NULL;
        }
        return kv_from_mdb(rc, "begin read txn");
    }
    t->active = 1;
    *out = t;
    return CM_OK;
}

void kv_read_end(struct kv_txn *t)
{
    if (!t || t->write || !t->active)
        return;
    mdb_txn_reset(t->txn);
    t->active = 0;
    kv_unhold(t->s);
}

/* ---- Write transactions ---------------------------------------------- */

static void write_free(struct kv_txn *t)
{
    kv_unhold(t->s);
    cm_buf_fini(&t->enc);
    cm_free(t->rev_put);
    cm_free(t);
}

enum cm_status kv_write_begin(struct kv_store *s, struct kv_txn **out)
{
    struct kv_txn *t;
    enum cm_status st;
    int rc;

    if (!out)
        return CM_INVALID;
    *out = NULL;
    if (!s)
        return CM_INVALID;
    if (s->read_only) {
        cm_error("kv", "write transaction on a read-only store");
        return CM_INVALID;
    }
    t = cm_calloc(1, sizeof *t);
    if (!t)
        return CM_NOMEM;
    t->s = s;
    t->write = 1;
    cm_buf_init(&t->enc, CM_MAX_RECORD);
    for (int attempt = 0;; attempt++) {
        kv_hold(s);
        t->map_seen = kv_map_size(s);
        rc = mdb_txn_begin(s->env, NULL, 0, &t->txn);
        if (rc == 0)
            break;
        kv_unhold(s);
        if (rc == MDB_MAP_RESIZED && attempt < RESIZE_RETRIES) {
            st = adopt_map_size(s);
            if (st == CM_OK)
                continue;
        } else {
            st = kv_from_mdb(rc, "begin write txn");
        }
        cm_buf_fini(&t->enc);
        cm_free(t);
        return st;
    }
    t->active = 1;
    *out = t;
    return CM_OK;
}

/* Commits (write) or ends (read) t; *map_full tells whether the failure
 * was a full map. */
static enum cm_status commit_ex(struct kv_txn *t, int *map_full)
{
    int rc;
    enum cm_status st;

    *map_full = 0;
    if (!t)
        return CM_INVALID;
    if (!t->write) {
        kv_read_end(t);
        return CM_OK;
    }
    if ((st = kv_pending_flush(t)) != CM_OK) {
        *map_full = t->map_full;
        mdb_txn_abort(t->txn);
        write_free(t);
        return st;
    }
    rc = mdb_txn_commit(t->txn); /* frees the txn even on failure */
    st = txn_rc(t, rc, "commit");
    *map_full = t->map_full;
    write_free(t);
    return st;
}

enum cm_status kv_commit(struct kv_txn *t)
{
    int map_full;
    return commit_ex(t, &map_full);
}

void kv_abort(struct kv_txn *t)
{
    if (!t)
        return;
    if (!t->write) {
        kv_read_end(t);
        return;
    }
    mdb_txn_abort(t->txn);
    write_free(t);
}

enum cm_status kv_write_run(struct kv_store *s,
                            enum cm_status (*fn)(struct kv_txn *t, void *ctx),
                            void *ctx)
{
    struct kv_txn *t;
    enum cm_status st;
    size_t seen;
    int map_full;

    if (!s || !fn)
        return CM_INVALID;
    for (;;) {
        st = kv_write_begin(s, &t);
        if (st != CM_OK)
            return st;
        seen = t->map_seen;
        st = fn(t, ctx);
        if (st == CM_OK) {
            st = commit_ex(t, &map_full);
        } else {
            map_full = t->map_full;
            kv_abort(t);
        }
        if (st == CM_OK || !map_full)
            return st;
        st = grow_from(s, seen);
        if (st != CM_OK)
            return st;
    }
}

/* ---- Raw access ------------------------------------------------------ */

static int txn_usable(const struct kv_txn *t, enum kv_db db)
{
    return t && t->txn && t->active && (unsigned)db < KV_DB_COUNT;
}

enum cm_status kv_get(struct kv_txn *t, enum kv_db db, const void *key,
                      size_t klen, const void **val, size_t *vlen)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc;

    if (val)
        *val = NULL;
    if (vlen)
        *vlen = 0;
    if (!txn_usable(t, db) || !key || !val || !vlen)
        return CM_INVALID;
    rc = mdb_get(t->txn, t->s->dbi[db], &k, &v);
    if (rc != 0)
        return txn_rc(t, rc, "get");
    *val = v.mv_data;
    *vlen = v.mv_size;
    return CM_OK;
}

enum cm_status kv_put(struct kv_txn *t, enum kv_db db, const void *key,
                      size_t klen, const void *val, size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    if (!txn_usable(t, db) || !t->write || !key || (!val && vlen))
        return CM_INVALID;
    return txn_rc(t, mdb_put(t->txn, t->s->dbi[db], &k, &v, 0), "put");
}

enum cm_status kv_put_tail(struct kv_txn *t, enum kv_db db, const void *key,
                           size_t klen, const void *val, size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc;
    if (!txn_usable(t, db) || !t->write || !key || (!val && vlen))
        return CM_INVALID;
    rc = mdb_put(t->txn, t->s->dbi[db], &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) /* not past the last key */
        rc = mdb_put(t->txn, t->s->dbi[db], &k, &v, 0);
    return txn_rc(t, rc, "put");
}

enum cm_status kv_del(struct kv_txn *t, enum kv_db db, const void *key,
                      size_t klen)
{
    MDB_val k = {klen, (void *)key};
    if (!txn_usable(t, db) || !t->write || !key)
        return CM_INVALID;
    return txn_rc(t, mdb_del(t->txn, t->s->dbi[db], &k, NULL), "del");
}

MDB_txn *kv_txn_mdb(struct kv_txn *t)
{
    return t ? t->txn : NULL;
}

MDB_dbi kv_dbi(struct kv_store *s, enum kv_db db)
{
    return s && (unsigned)db < KV_DB_COUNT ? s->dbi[db] : 0;
}

struct kv_store *kv_txn_store(struct kv_txn *t)
{
    return t ? t->s : NULL;
}

MDB_env *kv_env(struct kv_store *s)
{
    return s ? s->env : NULL;
}

const char *kv_dir(struct kv_store *s)
{
    return s ? s->dir : NULL;
}

/* ---- Meta ------------------------------------------------------------ */

enum cm_status kv_meta_get_u64(struct kv_txn *t, const char *key, uint64_t *out)
{
    const void *v;
    size_t n;
    enum cm_status st;
    uint64_t x = 0;

    if (!out || !key)
        return CM_INVALID;
    *out = 0;
    st = kv_get(t, KV_DB_META, key, strlen(key), &v, &n);
    if (st != CM_OK)
        return st;
    if (n != 8) {
        cm_error("kv", "meta %s: %zu bytes, expected 8", key, n);
        return CM_CORRUPT;
    }
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)((const uint8_t *)v)[i] << (8 * i);
    *out = x;
    return CM_OK;
}

enum cm_status kv_meta_put_u64(struct kv_txn *t, const char *key, uint64_t v)
{
    uint8_t b[8];
    if (!key)
        return CM_INVALID;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return kv_put(t, KV_DB_META, key, strlen(key), b, sizeof b);
}

/* OUT *v: meta key's value, or 0 when it is absent. */
static enum cm_status meta_u64_or_0(struct kv_txn *t, const char *key,
                                    uint64_t *v)
{
    enum cm_status st = kv_meta_get_u64(t, key, v);
    if (st == CM_NOTFOUND) {
        *v = 0;
        return CM_OK;
    }
    return st;
}

enum cm_status kv_index_version_ok(struct kv_txn *t, bool *ok)
{
    uint64_t v = 0;
    enum cm_status st;
    if (!ok)
        return CM_INVALID;
    st = meta_u64_or_0(t, KV_META_INDEX_VERSION, &v);
    *ok = st == CM_OK && v == KV_INDEX_VERSION;
    return st;
}

enum cm_status kv_index_version_set(struct kv_txn *t)
{
    return kv_meta_put_u64(t, KV_META_INDEX_VERSION, KV_INDEX_VERSION);
}

enum cm_status kv_index_deferred(struct kv_txn *t, bool *on)
{
    uint64_t v = 0;
    enum cm_status st;
    if (!on)
        return CM_INVALID;
    st = meta_u64_or_0(t, KV_META_INDEX_DEFERRED, &v);
    *on = st == CM_OK && v != 0;
    return st;
}

enum cm_status kv_index_defer(struct kv_txn *t, bool on)
{
    enum cm_status st;
    if (on)
        return kv_meta_put_u64(t, KV_META_INDEX_DEFERRED, 1);
    st = kv_del(t, KV_DB_META, KV_META_INDEX_DEFERRED,
                strlen(KV_META_INDEX_DEFERRED));
    return st == CM_NOTFOUND ? CM_OK : st;
}

/* ---- Open and close -------------------------------------------------- */

static enum cm_status init_store(struct kv_store *s, const char *dir)
{
    pthread_rwlockattr_t ra;

    s->dir = cm_strdup(dir);
    if (!s->dir)
        return CM_NOMEM;
    if (pthread_rwlockattr_init(&ra) != 0)
        return CM_NOMEM;
    pthread_rwlockattr_setkind_np(&ra,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    s->grow_lock_ok = pthread_rwlock_init(&s->grow_lock, &ra) == 0;
    pthread_rwlockattr_destroy(&ra);
    s->reader_mu_ok = pthread_mutex_init(&s->reader_mu, NULL) == 0;
    s->tls_key_ok = pthread_key_create(&s->tls_key, tls_dtor) == 0;
    if (!s->grow_lock_ok || !s->reader_mu_ok || !s->tls_key_ok)
        return CM_NOMEM;
    return CM_OK;
}

static enum cm_status check_schema(struct kv_store *s, MDB_txn *txn, char *err,
                                   size_t errlen)
{
    MDB_val k = {strlen(KV_META_SCHEMA), (void *)KV_META_SCHEMA}, v;
    uint64_t ver = 0;
    int rc = mdb_get(txn, s->dbi[KV_DB_META], &k, &v);

    if (rc == MDB_NOTFOUND)
        return CM_NOTFOUND;
    if (rc != 0) {
        set_err(err, errlen, "%s: cannot read the schema version: %s", s->dir,
                mdb_strerror(rc));
        return kv_from_mdb(rc, "read schema version");
    }
    if (v.mv_size != 8) {
        set_err(err, errlen, "%s: the schema version entry is damaged", s->dir);
        return CM_CORRUPT;
    }
    for (int i = 0; i < 8; i++)
        ver |= (uint64_t)((const uint8_t *)v.mv_data)[i] << (8 * i);
    if (ver == KV_SCHEMA_VERSION)
        return CM_OK;
    if (ver < KV_SCHEMA_VERSION)
        set_err(err, errlen,
                "the store in %s has schema version %" PRIu64
                " but this peekd uses schema version %d: the record layout "
                "changed and the store cannot be read. Move %s aside (or "
                "delete it) and run `peekd sync` (or `peekd serve` with "
                "STASH_URL set) to rebuild it from Stash.",
                s->dir, ver, KV_SCHEMA_VERSION, s->dir);
    else
        set_err(err, errlen,
                "the store in %s has schema version %" PRIu64
                ", written by a newer peekd (this one knows schema version "
                "%d). Upgrade peekd, or point --data/PEEKD_DATA at a new "
                "directory and sync again.",
                s->dir, ver, KV_SCHEMA_VERSION);
    return CM_VERSION;
}

/* A new store: writes the schema and index versions and the docid
 * counter.  Refuses a store that has data but no version. */
static enum cm_status init_meta(struct kv_store *s, MDB_txn *txn, char *err,
                                size_t errlen)
{
    static const struct {
        const char *key;
        uint64_t v;
    } init[] = {{KV_META_SCHEMA, KV_SCHEMA_VERSION},
                {KV_META_INDEX_VERSION, KV_INDEX_VERSION},
                {KV_META_NEXT_DOCID, 1}};
    MDB_stat ms;
    int rc = mdb_stat(txn, s->dbi[KV_DB_SCENES], &ms);

    if (rc == 0 && ms.ms_entries == 0)
        rc = mdb_stat(txn, s->dbi[KV_DB_META], &ms);
    if (rc == 0 && ms.ms_entries != 0) {
        set_err(err, errlen,
                "%s holds data but no schema version: not a peekd store, or "
                "a damaged one. Move it aside and sync again.",
                s->dir);
        return CM_CORRUPT;
    }
    for (size_t i = 0; rc == 0 && i < sizeof init / sizeof init[0]; i++) {
        uint8_t b[8];
        MDB_val k = {strlen(init[i].key), (void *)init[i].key}, v = {8, b};
        for (int j = 0; j < 8; j++)
            b[j] = (uint8_t)(init[i].v >> (8 * j));
        rc = mdb_put(txn, s->dbi[KV_DB_META], &k, &v, 0);
    }
    if (rc != 0) {
        set_err(err, errlen, "%s: cannot initialise the store: %s", s->dir,
                mdb_strerror(rc));
        return kv_from_mdb(rc, "init meta");
    }
    cm_info("kv", "created a new store in %s (schema %d)", s->dir,
            KV_SCHEMA_VERSION);
    return CM_OK;
}

/* Opens every named database and checks the schema in one txn that is
 * committed (a DBI opened in an aborted txn is closed again). */
static enum cm_status setup_dbs(struct kv_store *s, char *err, size_t errlen)
{
    MDB_txn *txn = NULL;
    enum cm_status st;
    int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);

    if (rc != 0) {
        set_err(err, errlen, "%s: cannot begin a transaction: %s", s->dir,
                mdb_strerror(rc));
        return kv_from_mdb(rc, "open txn");
    }
    for (int i = 0; i < KV_DB_COUNT; i++) {
        unsigned fl = db_flags(i) | (s->read_only ? 0 : MDB_CREATE);
        rc = mdb_dbi_open(txn, db_names[i], fl, &s->dbi[i]);
        if (rc == MDB_NOTFOUND && s->read_only) {
            set_err(err, errlen,
                    "%s is not a peekd store (database '%s' missing)", s->dir,
                    db_names[i]);
            st = CM_NOTFOUND;
            goto out;
        }
        if (rc != 0) {
            set_err(err, errlen, "%s: cannot open database '%s': %s", s->dir,
                    db_names[i], mdb_strerror(rc));
            st = kv_from_mdb(rc, "open database");
            goto out;
        }
    }
    st = check_schema(s, txn, err, errlen);
    if (st == CM_NOTFOUND && s->read_only) {
        set_err(err, errlen, "%s is not an initialised peekd store", s->dir);
        goto out;
    }
    if (st == CM_NOTFOUND)
        st = init_meta(s, txn, err, errlen);
    if (st != CM_OK)
        goto out;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        set_err(err, errlen, "%s: cannot commit: %s", s->dir, mdb_strerror(rc));
        st = kv_from_mdb(rc, "commit open txn");
    }
out:
    if (txn)
        mdb_txn_abort(txn);
    return st;
}

static enum cm_status prepare_dir(const struct kv_options *opt, const char *dir,
                                  char *err, size_t errlen)
{
    struct stat sb;
    char path[4096];
    enum cm_status st;

    if (!opt->read_only && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        set_err(err, errlen, "cannot create data directory %s: %s", dir,
                strerror(errno));
        return CM_IO;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        set_err(err, errlen, "%s: %s", dir,
                errno == ENOENT ? "no such directory (no store there)"
                                : "not a directory");
        return opt->read_only && errno == ENOENT ? CM_NOTFOUND : CM_IO;
    }
    st = kv_check_fs(dir, err, errlen);
    if (st == CM_UNSUPPORTED && opt->allow_network_fs) {
        cm_warn("kv", "%s (continuing: network filesystems are allowed)", err);
        st = CM_OK;
        if (errlen)
            err[0] = '\0';
    }
    if (st != CM_OK)
        return st;
    if (opt->read_only) {
        int n = snprintf(path, sizeof path, "%s/data.mdb", dir);
        if (n < 0 || (size_t)n >= sizeof path)
            return CM_INVALID;
        if (stat(path, &sb) != 0) {
            set_err(err, errlen, "no store in %s (data.mdb is missing)", dir);
            return CM_NOTFOUND;
        }
    }
    return CM_OK;
}

static enum cm_status open_env(struct kv_store *s, const struct kv_options *opt,
                               char *err, size_t errlen)
{
    unsigned flags = 0;
    int rc, dead = 0;

    rc = mdb_env_create(&s->env);
    if (rc != 0) {
        s->env = NULL;
        set_err(err, errlen, "cannot create the LMDB environment: %s",
                mdb_strerror(rc));
        return kv_from_mdb(rc, "env create");
    }
    if (opt->read_only)
        flags |= MDB_RDONLY;
    if (opt->no_sync)
        flags |= MDB_NOSYNC;
    rc = mdb_env_set_maxdbs(s->env, KV_DB_COUNT);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(
            s->env, opt->max_readers ? opt->max_readers : DEFAULT_MAX_READERS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, opt->map_size ? opt->map_size
                                                       : DEFAULT_MAP_SIZE);
    if (rc == 0)
        rc = mdb_env_open(s->env, s->dir, flags, 0600);
    if (rc != 0) {
        set_err(err, errlen, "cannot open the store in %s: %s%s", s->dir,
                mdb_strerror(rc),
                rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH
                    ? " (not an LMDB store of a compatible version)"
                    : "");
        return kv_from_mdb(rc, "env open");
    }
    rc = mdb_reader_check(s->env, &dead);
    if (rc != 0)
        cm_warn("kv", "reader check failed: %s", mdb_strerror(rc));
    s->stale_cleared = dead > 0 ? (unsigned)dead : 0;
    if (dead > 0)
        cm_info("kv",
                "cleared %d stale reader slot(s) left by crashed "
                "processes",
                dead);
    return CM_OK;
}

enum cm_status kv_open(const char *dir, const struct kv_options *opt,
                       struct kv_store **out, char *err, size_t errlen)
{
    static const struct kv_options defaults;
    struct kv_store *s = NULL;
    enum cm_status st;

    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return CM_INVALID;
    *out = NULL;
    if (!opt)
        opt = &defaults;
    if (!dir || !*dir) {
        set_err(err, errlen, "no data directory given");
        return CM_INVALID;
    }
    st = prepare_dir(opt, dir, err, errlen);
    if (st != CM_OK)
        return st;
    s = cm_calloc(1, sizeof *s);
    if (!s) {
        set_err(err, errlen, "out of memory");
        return CM_NOMEM;
    }
    s->read_only = opt->read_only;
    st = init_store(s, dir);
    if (st != CM_OK) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    st = open_env(s, opt, err, errlen);
    if (st == CM_OK)
        st = setup_dbs(s, err, errlen);
out:
    if (st != CM_OK) {
        kv_close(s);
        return st;
    }
    *out = s;
    return CM_OK;
}

void kv_close(struct kv_store *s)
{
    struct kv_txn *t, *next;

    if (!s)
        return;
    if (s->tls_key_ok)
        pthread_key_delete(s->tls_key); /* no destructor runs after this */
    if (s->reader_mu_ok) {
        pthread_mutex_lock(&s->reader_mu);
        for (t = s->readers; t; t = next) {
            next = t->next;
            if (t->active)
                cm_warn("kv", "kv_close with a read transaction open");
            if (t->txn)
                mdb_txn_abort(t->txn);
            cm_free(t);
        }
        s->readers = NULL;
        pthread_mutex_unlock(&s->reader_mu);
        pthread_mutex_destroy(&s->reader_mu);
    }
    for (int i = 0; i < HOLD_SLOTS; i++)
        if (tl_holds[i].s == s)
            tl_holds[i].s = NULL, tl_holds[i].n = 0;
    if (s->env)
        mdb_env_close(s->env);
    if (s->grow_lock_ok)
        pthread_rwlock_destroy(&s->grow_lock);
    cm_free(s->dir);
    cm_free(s);
}

enum cm_status kv_reader_check(struct kv_store *s, int *cleared)
{
    int dead = 0, rc;
    if (cleared)
        *cleared = 0;
    if (!s)
        return CM_INVALID;
    rc = mdb_reader_check(s->env, &dead);
    if (rc != 0)
        return kv_from_mdb(rc, "reader check");
    if (dead > 0)
        cm_info("kv", "cleared %d stale reader slot(s)", dead);
    if (cleared)
        *cleared = dead;
    return CM_OK;
}

unsigned kv_stale_readers_cleared_at_open(struct kv_store *s)
{
    return s ? s->stale_cleared : 0;
}

/* ---- Backup ---------------------------------------------------------- */

static enum cm_status backup_dir_ready(const char *dest, char *err,
                                       size_t errlen)
{
    struct stat sb;
    DIR *d;
    struct dirent *e;
    int empty = 1;

    if (mkdir(dest, 0700) == 0)
        return CM_OK;
    if (errno != EEXIST) {
        set_err(err, errlen, "cannot create %s: %s", dest, strerror(errno));
        return CM_IO;
    }
    if (stat(dest, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        set_err(err, errlen, "%s exists and is not a directory", dest);
        return CM_EXISTS;
    }
    d = opendir(dest);
    if (!d) {
        set_err(err, errlen, "cannot read %s: %s", dest, strerror(errno));
        return CM_IO;
    }
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    if (!empty) {
        set_err(err, errlen,
                "%s is not empty: a backup goes into a new or empty "
                "directory",
                dest);
        return CM_EXISTS;
    }
    return CM_OK;
}

enum cm_status kv_backup(struct kv_store *s, const char *dest_dir, char *err,
                         size_t errlen)
{
    enum cm_status st;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!s || !dest_dir || !*dest_dir) {
        set_err(err, errlen, "no backup directory given");
        return CM_INVALID;
    }
    if (kv_held_by_me(s)) {
        set_err(err, errlen, "kv_backup with a transaction open");
        return CM_BUSY;
    }
    st = backup_dir_ready(dest_dir, err, errlen);
    if (st != CM_OK)
        return st;
    /* The copy runs in its own read txn; the hold keeps the map size
     * fixed meanwhile. */
    kv_hold(s);
    rc = mdb_env_copy2(s->env, dest_dir, MDB_CP_COMPACT);
    kv_unhold(s);
    if (rc != 0) {
        set_err(err, errlen, "backup to %s failed: %s", dest_dir,
                mdb_strerror(rc));
        return kv_from_mdb(rc, "backup");
    }
    {
        /* mdb_env_copy2 creates the file 0666 & ~umask: match the store. */
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/data.mdb", dest_dir);
        if (n > 0 && (size_t)n < sizeof path && chmod(path, 0600) != 0)
            cm_warn("kv", "chmod %s: %s", path, strerror(errno));
    }
    return CM_OK;
}
