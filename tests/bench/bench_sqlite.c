/*
 * bench_sqlite.c - SQLite with Peek's schema, indexes and PRAGMAs, and a
 * hand-tuned variant, loaded from the generator's NDJSON (see
 * bench_sqlite.h).  Peek's schema: peek-api.md §2 (StashScene, the
 * junction tables with 4-column keys, Peek's indexes), PRAGMAs §2.5.
 */
#include "tests/bench/bench_sqlite.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_buf.h"
#include "common/cm_limits.h"
#include "common/cm_natural.h"

static int natural_ci(void *ctx, int n1, const void *a, int n2, const void *b)
{
    (void)ctx;
    return cm_natural_cmp(a, (size_t)n1, b, (size_t)n2);
}

static int exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n  in: %.200s\n", err, sql);
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

sqlite3 *bs_open(const char *path, enum bs_variant v)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "sqlite open %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_create_collation(db, "NATURAL_CI", SQLITE_UTF8, NULL, natural_ci);
    if (v == BS_PEEK) {
        /* server/prisma/singleton.ts since PR #384. */
        if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
                     "PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;"
                     "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-64000;"
                     "PRAGMA mmap_size=268435456;"))
            goto fail;
    } else {
        if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-1000000;"
                     "PRAGMA mmap_size=2147418112;"))
            goto fail;
    }
    return db;
fail:
    sqlite3_close(db);
    return NULL;
}

static const char peek_schema[] =
    "CREATE TABLE IF NOT EXISTS StashScene (id TEXT NOT NULL,"
    " stashInstanceId TEXT NOT NULL, title TEXT, code TEXT, date TEXT,"
    " studioId TEXT, rating100 INTEGER, duration REAL, organized INTEGER,"
    " details TEXT, director TEXT, urls TEXT, filePath TEXT,"
    " fileBasename TEXT, fileFolder TEXT, fileBitRate INTEGER,"
    " fileFrameRate REAL, fileWidth INTEGER, fileHeight INTEGER,"
    " fileVideoCodec TEXT, fileAudioCodec TEXT, fileSize INTEGER,"
    " pathScreenshot TEXT, pathPreview TEXT, pathSprite TEXT, pathVtt TEXT,"
    " pathChaptersVtt TEXT, pathStream TEXT, pathCaption TEXT,"
    " captions TEXT, streams TEXT, oCounter INTEGER, playCount INTEGER,"
    " playDuration REAL, resumeTime REAL, lastPlayedAt TEXT,"
    " stashCreatedAt TEXT, stashUpdatedAt TEXT, syncedAt TEXT,"
    " deletedAt TEXT, inheritedTagIds TEXT, phash TEXT, phashes TEXT,"
    " oshash TEXT, md5 TEXT, organizedFlag INTEGER,"
    " PRIMARY KEY (id, stashInstanceId));"
    "CREATE INDEX IF NOT EXISTS s_studio ON StashScene(studioId);"
    "CREATE INDEX IF NOT EXISTS s_date ON StashScene(date);"
    "CREATE INDEX IF NOT EXISTS s_created ON StashScene(stashCreatedAt);"
    "CREATE INDEX IF NOT EXISTS s_updated ON StashScene(stashUpdatedAt);"
    "CREATE INDEX IF NOT EXISTS s_rating ON StashScene(rating100);"
    "CREATE INDEX IF NOT EXISTS s_duration ON StashScene(duration);"
    "CREATE INDEX IF NOT EXISTS s_deleted ON StashScene(deletedAt);"
    "CREATE INDEX IF NOT EXISTS s_o ON StashScene(oCounter);"
    "CREATE INDEX IF NOT EXISTS s_play ON StashScene(playCount);"
    "CREATE INDEX IF NOT EXISTS s_phash ON StashScene(phash);"
    "CREATE INDEX IF NOT EXISTS s_b1 ON StashScene(deletedAt, stashCreatedAt "
    "DESC);"
    "CREATE INDEX IF NOT EXISTS s_b2 ON StashScene(deletedAt, stashUpdatedAt "
    "DESC);"
    "CREATE INDEX IF NOT EXISTS s_b3 ON StashScene(deletedAt, date DESC);"
    "CREATE INDEX IF NOT EXISTS s_b4 ON StashScene(deletedAt, title);"
    "CREATE INDEX IF NOT EXISTS s_b5 ON StashScene(deletedAt, duration "
    "DESC);"
#define JUNCTION(T, C)                                                         \
    "CREATE TABLE IF NOT EXISTS " T " (sceneId TEXT NOT NULL,"                 \
    " sceneInstanceId TEXT NOT NULL, " C "Id TEXT NOT NULL, " C                \
    "InstanceId TEXT NOT NULL, sceneIndex INTEGER,"                            \
    " PRIMARY KEY (sceneId, sceneInstanceId, " C "Id, " C "InstanceId));"      \
    "CREATE INDEX IF NOT EXISTS " T "_c ON " T "(" C "Id, " C "InstanceId);"   \
    "CREATE INDEX IF NOT EXISTS " T "_p ON " T "(sceneId, sceneInstanceId);"
    JUNCTION("ScenePerformer", "performer") JUNCTION("SceneTag", "tag")
        JUNCTION("SceneGroup", "group") JUNCTION(
            "SceneGallery",
            "gallery") "CREATE TABLE IF NOT EXISTS StashTag (id TEXT NOT NULL,"
                       " stashInstanceId TEXT NOT NULL, name TEXT, favorite "
                       "INTEGER,"
                       " parentIds TEXT, deletedAt TEXT, PRIMARY KEY (id, "
                       "stashInstanceId));"
                       "CREATE TABLE IF NOT EXISTS StashPerformer (id TEXT NOT "
                       "NULL,"
                       " stashInstanceId TEXT NOT NULL, name TEXT, favorite "
                       "INTEGER,"
                       " birthdate TEXT, deletedAt TEXT, PRIMARY KEY (id, "
                       "stashInstanceId));"
                       "CREATE INDEX IF NOT EXISTS p_fav ON "
                       "StashPerformer(favorite);"
                       "CREATE TABLE IF NOT EXISTS StashStudio (id TEXT NOT "
                       "NULL,"
                       " stashInstanceId TEXT NOT NULL, name TEXT, parentId "
                       "TEXT,"
                       " favorite INTEGER, deletedAt TEXT, PRIMARY KEY (id, "
                       "stashInstanceId));"
                       "CREATE INDEX IF NOT EXISTS st_parent ON "
                       "StashStudio(parentId);"
                       "CREATE TABLE IF NOT EXISTS StashClip (id TEXT NOT NULL,"
                       " stashInstanceId TEXT NOT NULL, sceneId TEXT, "
                       "sceneInstanceId TEXT,"
                       " title TEXT, PRIMARY KEY (id, stashInstanceId));"
                       "CREATE INDEX IF NOT EXISTS clip_scene ON "
                       "StashClip(sceneId, "
                       "sceneInstanceId);"
                       "CREATE TABLE IF NOT EXISTS SceneRating (id INTEGER "
                       "PRIMARY KEY,"
                       " userId INTEGER, instanceId TEXT, sceneId TEXT, rating "
                       "INTEGER,"
                       " favorite INTEGER, UNIQUE (userId, instanceId, "
                       "sceneId));"
                       "CREATE TABLE IF NOT EXISTS WatchHistory (id INTEGER "
                       "PRIMARY KEY,"
                       " userId INTEGER, instanceId TEXT, sceneId TEXT, "
                       "playCount INTEGER,"
                       " playDuration REAL, resumeTime REAL, lastPlayedAt "
                       "TEXT, oCount "
                       "INTEGER,"
                       " oHistory TEXT, playHistory TEXT, UNIQUE (userId, "
                       "instanceId, "
                       "sceneId));"
                       "CREATE TABLE IF NOT EXISTS UserExcludedEntity (id "
                       "INTEGER PRIMARY KEY,"
                       " userId INTEGER, entityType TEXT, entityId TEXT, "
                       "instanceId TEXT,"
                       " reason TEXT, UNIQUE (userId, entityType, entityId, "
                       "instanceId));"
                       "CREATE INDEX IF NOT EXISTS ue_1 ON "
                       "UserExcludedEntity(userId, "
                       "entityType);"
                       "CREATE INDEX IF NOT EXISTS ue_2 ON "
                       "UserExcludedEntity(entityType, "
                       "entityId);";

/* The tuned variant: integer keys, WITHOUT ROWID junctions keyed for both
 * directions, sort indexes that carry the universal tie-break, and an FTS5
 * trigram index for substring search. */
static const char tuned_schema[] =
    "CREATE TABLE IF NOT EXISTS scene (id INTEGER PRIMARY KEY, title TEXT,"
    " date TEXT, studio INTEGER, rating INTEGER, duration REAL,"
    " organized INTEGER, details TEXT, path TEXT, basename TEXT,"
    " folder TEXT, width INTEGER, height INTEGER, size INTEGER,"
    " o INTEGER, plays INTEGER, last_played TEXT, created TEXT,"
    " updated TEXT, fp TEXT, tiebreak TEXT);"
    "CREATE INDEX IF NOT EXISTS t_created ON scene(created, tiebreak COLLATE "
    "NATURAL_CI, id);"
    "CREATE INDEX IF NOT EXISTS t_date ON scene(date, tiebreak COLLATE "
    "NATURAL_CI, id);"
    "CREATE INDEX IF NOT EXISTS t_rating ON scene(rating, tiebreak COLLATE "
    "NATURAL_CI, id);"
    "CREATE INDEX IF NOT EXISTS t_duration ON scene(duration, tiebreak "
    "COLLATE NATURAL_CI, id);"
    "CREATE INDEX IF NOT EXISTS t_title ON scene(COALESCE(title, basename) "
    "COLLATE NATURAL_CI, folder COLLATE NATURAL_CI);"
    "CREATE INDEX IF NOT EXISTS t_studio ON scene(studio);"
    "CREATE TABLE IF NOT EXISTS scene_tag (tag INTEGER, scene INTEGER,"
    " PRIMARY KEY (tag, scene)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS t_st ON scene_tag(scene, tag);"
    "CREATE TABLE IF NOT EXISTS scene_performer (performer INTEGER,"
    " scene INTEGER, PRIMARY KEY (performer, scene)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS t_sp ON scene_performer(scene, performer);"
    "CREATE TABLE IF NOT EXISTS tag (id INTEGER PRIMARY KEY, name TEXT,"
    " favorite INTEGER, parents TEXT);"
    "CREATE TABLE IF NOT EXISTS performer (id INTEGER PRIMARY KEY, name "
    "TEXT,"
    " favorite INTEGER, birthdate TEXT);"
    "CREATE TABLE IF NOT EXISTS studio (id INTEGER PRIMARY KEY, name TEXT,"
    " parent INTEGER, favorite INTEGER);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS scene_text USING fts5(body,"
    " tokenize='trigram');";

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jint(const cJSON *o, const char *k, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        return 0;
    *out = (int64_t)v->valuedouble;
    return 1;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void bind_int(sqlite3_stmt *st, int i, const cJSON *o, const char *k)
{
    int64_t v;
    if (jint(o, k, &v))
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void bind_real(sqlite3_stmt *st, int i, const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsNumber(v))
        sqlite3_bind_double(st, i, v->valuedouble);
    else
        sqlite3_bind_null(st, i);
}

static const char *ref_id(const cJSON *ref)
{
    return cJSON_IsObject(ref) ? jstr(ref, "id") : NULL;
}

typedef int (*line_fn)(sqlite3 *db, enum bs_variant v, cJSON *o,
                       sqlite3_stmt **st);

static int each_line(sqlite3 *db, enum bs_variant v, const char *dir,
                     const char *file, line_fn fn, sqlite3_stmt **st)
{
    char path[4096];
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        cJSON *o = cJSON_ParseWithLength(line, (size_t)n);
        if (!o) {
            fprintf(stderr, "%s: bad JSON line\n", path);
            rc = -1;
            break;
        }
        rc = fn(db, v, o, st);
        cJSON_Delete(o);
        if (rc)
            break;
    }
    free(line);
    fclose(f);
    return rc;
}

static int step_reset(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "sqlite insert: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

static int load_tag(sqlite3 *db, enum bs_variant v, cJSON *o, sqlite3_stmt **st)
{
    char *parents =
        cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(o, "parents"));
    int rc;
    const cJSON *fav = cJSON_GetObjectItemCaseSensitive(o, "favorite");
    (void)v;
    bind_text(st[0], 1, jstr(o, "id"));
    bind_text(st[0], 2, jstr(o, "name"));
    sqlite3_bind_int(st[0], 3, cJSON_IsTrue(fav));
    bind_text(st[0], 4, parents);
    rc = step_reset(db, st[0]);
    cJSON_free(parents);
    return rc;
}

static int load_performer(sqlite3 *db, enum bs_variant v, cJSON *o,
                          sqlite3_stmt **st)
{
    (void)v;
    bind_text(st[0], 1, jstr(o, "id"));
    bind_text(st[0], 2, jstr(o, "name"));
    sqlite3_bind_int(st[0], 3,
                     cJSON_IsTrue(cJSON_GetObjectItem(o, "favorite")));
    bind_text(st[0], 4, jstr(o, "birthdate"));
    return step_reset(db, st[0]);
}

static int load_studio(sqlite3 *db, enum bs_variant v, cJSON *o,
                       sqlite3_stmt **st)
{
    (void)v;
    bind_text(st[0], 1, jstr(o, "id"));
    bind_text(st[0], 2, jstr(o, "name"));
    bind_text(st[0], 3, ref_id(cJSON_GetObjectItem(o, "parent_studio")));
    sqlite3_bind_int(st[0], 4,
                     cJSON_IsTrue(cJSON_GetObjectItem(o, "favorite")));
    return step_reset(db, st[0]);
}

static const char *fingerprint(const cJSON *file, const char *type)
{
    const cJSON *fp;
    cJSON_ArrayForEach (fp, cJSON_GetObjectItem(file, "fingerprints")) {
        const char *t = jstr(fp, "type");
        if (t && strcmp(t, type) == 0)
            return jstr(fp, "value");
    }
    return NULL;
}

/* Stash v0.30 stores a fuzzy date as its first day ("2020" ->
 * "2020-01-01", "2020-05" -> "2020-05-01") with a precision column that
 * filters and sorts ignore; the SQLite side stores what Stash's own
 * database holds so that both answer alike. */
static const char *stored_date(const char *d, char *buf, size_t n)
{
    if (!d)
        return NULL;
    if (strlen(d) == 4)
        snprintf(buf, n, "%s-01-01", d);
    else if (strlen(d) == 7)
        snprintf(buf, n, "%s-01", d);
    else
        snprintf(buf, n, "%s", d);
    return buf;
}

/* Appends "\x01name" for each {id} ref in refs, looking the name up with
 * the prepared statement st (SELECT name ... WHERE id = ?1). */
static int append_names(struct cm_buf *b, sqlite3_stmt *st, const cJSON *refs)
{
    const cJSON *r;
    cJSON_ArrayForEach (r, refs) {
        const char *rid = ref_id(r);
        int rc;
        if (!rid)
            continue;
        sqlite3_bind_int64(st, 1, strtoll(rid, NULL, 10));
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
            cm_buf_printf(b, "\x01%s",
                          (const char *)sqlite3_column_text(st, 0)) != CM_OK)
            rc = SQLITE_ERROR;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return -1;
    }
    return 0;
}

/* Peek's variant: statements 0 scene, 1 performer junction, 2 tag, 3 group,
 * 4 gallery, 5 clip.  Tuned: 0 scene, 1 scene_performer, 2 scene_tag,
 * 3 scene_text. */
static int load_scene(sqlite3 *db, enum bs_variant v, cJSON *o,
                      sqlite3_stmt **st)
{
    const char *id = jstr(o, "id");
    const cJSON *file = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "files"), 0);
    const char *path = file ? jstr(file, "path") : NULL;
    const char *base = file ? jstr(file, "basename") : NULL;
    char folder[4096] = "";
    const char *oshash = file ? fingerprint(file, "oshash") : NULL;
    const char *md5 = file ? fingerprint(file, "md5") : NULL;
    const char *phash = file ? fingerprint(file, "phash") : NULL;
    const cJSON *r;
    int64_t w = 0, h = 0;
    char datebuf[16];
    const char *date = stored_date(jstr(o, "date"), datebuf, sizeof datebuf);

    if (!id)
        return -1;
    if (path && base && strlen(path) > strlen(base)) {
        size_t n = strlen(path) - strlen(base);
        if (n > 0 && path[n - 1] == '/')
            n--;
        if (n < sizeof folder) {
            memcpy(folder, path, n);
            folder[n] = '\0';
        }
    }
    if (file) {
        jint(file, "width", &w);
        jint(file, "height", &h);
    }
    if (v == BS_PEEK) {
        sqlite3_stmt *s = st[0];
        bind_text(s, 1, id);
        bind_text(s, 2, jstr(o, "title"));
        bind_text(s, 3, jstr(o, "code"));
        bind_text(s, 4, date);
        bind_text(s, 5, ref_id(cJSON_GetObjectItem(o, "studio")));
        bind_int(s, 6, o, "rating100");
        if (file)
            bind_real(s, 7, file, "duration");
        sqlite3_bind_int(s, 8,
                         cJSON_IsTrue(cJSON_GetObjectItem(o, "organized")));
        bind_text(s, 9, jstr(o, "details"));
        bind_text(s, 10, jstr(o, "director"));
        bind_text(s, 11, path);
        bind_text(s, 12, base);
        bind_text(s, 13, file ? folder : NULL);
        if (file) {
            bind_int(s, 14, file, "bit_rate");
            bind_real(s, 15, file, "frame_rate");
            sqlite3_bind_int64(s, 16, w);
            sqlite3_bind_int64(s, 17, h);
            bind_text(s, 18, jstr(file, "video_codec"));
            bind_text(s, 19, jstr(file, "audio_codec"));
            bind_int(s, 20, file, "size");
        }
        bind_int(s, 21, o, "o_counter");
        bind_int(s, 22, o, "play_count");
        bind_real(s, 23, o, "play_duration");
        bind_real(s, 24, o, "resume_time");
        bind_text(s, 25, jstr(o, "last_played_at"));
        bind_text(s, 26, jstr(o, "created_at"));
        bind_text(s, 27, jstr(o, "updated_at"));
        bind_text(s, 28, phash);
        bind_text(s, 29, oshash);
        bind_text(s, 30, md5);
        if (step_reset(db, s))
            return -1;
        cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "performers")) {
            bind_text(st[1], 1, id);
            bind_text(st[1], 2, ref_id(r));
            if (step_reset(db, st[1]))
                return -1;
        }
        cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "tags")) {
            bind_text(st[2], 1, id);
            bind_text(st[2], 2, ref_id(r));
            if (step_reset(db, st[2]))
                return -1;
        }
        cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "groups")) {
            bind_text(st[3], 1, id);
            bind_text(st[3], 2, ref_id(cJSON_GetObjectItem(r, "group")));
            bind_int(st[3], 3, r, "scene_index");
            if (step_reset(db, st[3]))
                return -1;
        }
        cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "galleries")) {
            bind_text(st[4], 1, id);
            bind_text(st[4], 2, ref_id(r));
            if (step_reset(db, st[4]))
                return -1;
        }
        cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "scene_markers")) {
            bind_text(st[5], 1, jstr(r, "id"));
            bind_text(st[5], 2, id);
            bind_text(st[5], 3, jstr(r, "title"));
            if (step_reset(db, st[5]))
                return -1;
        }
        return 0;
    }
    /* Tuned. */
    {
        sqlite3_stmt *s = st[0];
        char fp[256];
        const char *title = jstr(o, "title"), *details = jstr(o, "details");
        snprintf(fp, sizeof fp, "%s %s %s", oshash ? oshash : "",
                 md5 ? md5 : "", phash ? phash : "");
        sqlite3_bind_int64(s, 1, strtoll(id, NULL, 10));
        bind_text(s, 2, title);
        bind_text(s, 3, date);
        {
            const char *sid = ref_id(cJSON_GetObjectItem(o, "studio"));
            if (sid)
                sqlite3_bind_int64(s, 4, strtoll(sid, NULL, 10));
        }
        bind_int(s, 5, o, "rating100");
        if (file)
            bind_real(s, 6, file, "duration");
        sqlite3_bind_int(s, 7,
                         cJSON_IsTrue(cJSON_GetObjectItem(o, "organized")));
        bind_text(s, 8, details);
        bind_text(s, 9, path);
        bind_text(s, 10, base);
        bind_text(s, 11, file ? folder : NULL);
        sqlite3_bind_int64(s, 12, w);
        sqlite3_bind_int64(s, 13, h);
        if (file)
            bind_int(s, 14, file, "size");
        bind_int(s, 15, o, "o_counter");
        bind_int(s, 16, o, "play_count");
        bind_text(s, 17, jstr(o, "last_played_at"));
        bind_text(s, 18, jstr(o, "created_at"));
        bind_text(s, 19, jstr(o, "updated_at"));
        bind_text(s, 20, fp);
        bind_text(s, 21, title ? title : id);
        if (step_reset(db, s))
            return -1;
        cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "performers")) {
            sqlite3_bind_int64(st[1], 1, strtoll(ref_id(r), NULL, 10));
            sqlite3_bind_int64(st[1], 2, strtoll(id, NULL, 10));
            if (step_reset(db, st[1]))
                return -1;
        }
        cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "tags")) {
            sqlite3_bind_int64(st[2], 1, strtoll(ref_id(r), NULL, 10));
            sqlite3_bind_int64(st[2], 2, strtoll(id, NULL, 10));
            if (step_reset(db, st[2]))
                return -1;
        }
        /* One text column per scene: every field peekd's q searches
         * (docs/FILTERS.md: Stash's columns plus code and the names of the
         * scene's performers, studio and tags), separated by a byte no
         * search term contains. */
        {
            struct cm_buf body;
            const char *code = jstr(o, "code");
            int rc;
            cm_buf_init(&body, 64 * CM_MiB);
            if (cm_buf_printf(&body, "%s\x01%s\x01%s\x01%s\x01%s",
                              title ? title : "", details ? details : "",
                              path ? path : "", fp, code ? code : "") != CM_OK)
                return -1;
            cJSON_ArrayForEach (r, cJSON_GetObjectItem(o, "scene_markers")) {
                const char *t = jstr(r, "title");
                if (cm_buf_printf(&body, "\x01%s", t ? t : "") != CM_OK)
                    return -1;
            }
            if (append_names(&body, st[4], cJSON_GetObjectItem(o, "tags")) ||
                append_names(&body, st[5],
                             cJSON_GetObjectItem(o, "performers")))
                return -1;
            {
                cJSON *one = cJSON_CreateArray();
                const cJSON *studio = cJSON_GetObjectItem(o, "studio");
                if (cJSON_IsObject(studio))
                    cJSON_AddItemReferenceToArray(one, (cJSON *)studio);
                rc = append_names(&body, st[6], one);
                cJSON_Delete(one);
                if (rc)
                    return -1;
            }
            sqlite3_bind_int64(st[3], 1, strtoll(id, NULL, 10));
            sqlite3_bind_text(st[3], 2, body.data, (int)body.len,
                              SQLITE_TRANSIENT);
            cm_buf_fini(&body);
        }
        return step_reset(db, st[3]);
    }
}

static int prepare_all(sqlite3 *db, const char *const *sqls, int n,
                       sqlite3_stmt **st)
{
    for (int i = 0; i < n; i++) {
        if (sqlite3_prepare_v2(db, sqls[i], -1, &st[i], NULL) != SQLITE_OK) {
            fprintf(stderr, "prepare: %s\n  %s\n", sqlite3_errmsg(db), sqls[i]);
            return -1;
        }
    }
    return 0;
}

static void finalize_all(sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}

static int load_file(sqlite3 *db, enum bs_variant v, const char *dir,
                     const char *file, const char *const *sqls, int n,
                     line_fn fn)
{
    sqlite3_stmt *st[8] = {0};
    int rc = prepare_all(db, sqls, n, st);
    if (rc == 0)
        rc = each_line(db, v, dir, file, fn, st);
    finalize_all(st, n);
    return rc;
}

int bs_load(sqlite3 *db, enum bs_variant v, const char *dir)
{
    static const char *const peek_tag[] = {
        "INSERT INTO StashTag VALUES (?1, 'peekd', ?2, ?3, ?4, NULL)"};
    static const char *const peek_perf[] = {
        "INSERT INTO StashPerformer VALUES (?1, 'peekd', ?2, ?3, ?4, NULL)"};
    static const char *const peek_studio[] = {
        "INSERT INTO StashStudio VALUES (?1, 'peekd', ?2, ?3, ?4, NULL)"};
    static const char *const peek_scene[] = {
        "INSERT INTO StashScene (id, stashInstanceId, title, code, date,"
        " studioId, rating100, duration, organized, details, director,"
        " filePath, fileBasename, fileFolder, fileBitRate, fileFrameRate,"
        " fileWidth, fileHeight, fileVideoCodec, fileAudioCodec, fileSize,"
        " oCounter, playCount, playDuration, resumeTime, lastPlayedAt,"
        " stashCreatedAt, stashUpdatedAt, phash, oshash, md5, urls, captions,"
        " streams, inheritedTagIds) VALUES (?1, 'peekd', ?2, ?3, ?4, ?5, ?6,"
        " ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,"
        " ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, '[]', '[]',"
        " '[]', '[]')",
        "INSERT OR IGNORE INTO ScenePerformer VALUES (?1, 'peekd', ?2,"
        " 'peekd', NULL)",
        "INSERT OR IGNORE INTO SceneTag VALUES (?1, 'peekd', ?2, 'peekd',"
        " NULL)",
        "INSERT OR IGNORE INTO SceneGroup VALUES (?1, 'peekd', ?2, 'peekd',"
        " ?3)",
        "INSERT OR IGNORE INTO SceneGallery VALUES (?1, 'peekd', ?2,"
        " 'peekd', NULL)",
        "INSERT OR IGNORE INTO StashClip VALUES (?1, 'peekd', ?2, 'peekd',"
        " ?3)"};
    static const char *const t_tag[] = {
        "INSERT INTO tag VALUES (CAST(?1 AS INTEGER), ?2, ?3, ?4)"};
    static const char *const t_perf[] = {
        "INSERT INTO performer VALUES (CAST(?1 AS INTEGER), ?2, ?3, ?4)"};
    static const char *const t_studio[] = {
        "INSERT INTO studio VALUES (CAST(?1 AS INTEGER), ?2,"
        " CAST(?3 AS INTEGER), ?4)"};
    static const char *const t_scene[] = {
        "INSERT INTO scene VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
        " ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        "INSERT OR IGNORE INTO scene_performer VALUES (?1, ?2)",
        "INSERT OR IGNORE INTO scene_tag VALUES (?1, ?2)",
        "INSERT INTO scene_text (rowid, body) VALUES (?1, ?2)",
        "SELECT name FROM tag WHERE id = ?1",
        "SELECT name FROM performer WHERE id = ?1",
        "SELECT name FROM studio WHERE id = ?1"};
    int peek = v == BS_PEEK;

    if (exec(db, peek ? peek_schema : tuned_schema) || exec(db, "BEGIN"))
        return -1;
    if (load_file(db, v, dir, "tags.ndjson", peek ? peek_tag : t_tag, 1,
                  load_tag) ||
        load_file(db, v, dir, "performers.ndjson", peek ? peek_perf : t_perf, 1,
                  load_performer) ||
        load_file(db, v, dir, "studios.ndjson", peek ? peek_studio : t_studio,
                  1, load_studio) ||
        load_file(db, v, dir, "scenes.ndjson", peek ? peek_scene : t_scene,
                  peek ? 6 : 7, load_scene))
        return -1;
    if (exec(db, "COMMIT") || exec(db, "ANALYZE"))
        return -1;
    return 0;
}

int bs_ids(sqlite3 *db, const char *sql, uint64_t *ids, size_t cap, size_t *n)
{
    sqlite3_stmt *st;
    int rc;
    *n = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s\n  %s\n", sqlite3_errmsg(db), sql);
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n < cap)
            ids[(*n)++] = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "step: %s\n  %s\n", sqlite3_errmsg(db), sql);
        return -1;
    }
    return 0;
}

int bs_count(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s\n  %s\n", sqlite3_errmsg(db), sql);
        return -1;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}
