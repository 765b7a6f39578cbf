/*
 * bench_peek.c - `make bench`: the same browse queries through peekd's HTTP
 * API and through SQLite with Peek's schema and SQL shapes (and a tuned
 * SQLite variant), in one run.  For every query the page ids (in order)
 * and the count must be identical across the three; any difference fails
 * the run.  Prints a table and writes a JSON results file.
 *
 *   bench_peek --data NDJSON_DIR --url http://127.0.0.1:PORT
 *              --work DIR --out results.json [--iters N] [--sqlite-iters N]
 *
 * SQL shapes follow Peek's SceneQueryBuilder (peek-api.md §3): the per-user
 * LEFT JOINs and exclusion anti-join, EXISTS/COUNT(DISTINCT) subqueries on
 * the junction tables, ORDER BY ... LIMIT/OFFSET, a separate
 * COUNT(DISTINCT id||':'||instance) query, the seeded random expression.
 * Filter semantics and the ordering contract are Stash's (what peekd
 * implements), so the answers are comparable: direct tags only, rating from
 * Stash, ties broken by COALESCE(title, id) NATURAL_CI then id.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/bench/bench_sqlite.h"

#define MAXQ    64
#define MAXPAGE 1000

struct bq {
    char name[64];
    char json[2048];
    char wpeek[32768];
    char wtuned[32768];
    char sort[32];
    int desc;
    long page, per_page;
    double t_peekd[2], t_peek[2], t_tuned[2]; /* p50, p99 in ms */
    int64_t count;
};

static struct bq qs[MAXQ];
static int nq;

struct idfreq {
    char id[24];
    long n;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void pct(double *t, int n, double out[2])
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    out[0] = t[n / 2];
    out[1] = t[(int)ceil(n * 0.99) - 1 < 0 ? 0 : (int)ceil(n * 0.99) - 1];
}

/* ---- peekd over HTTP ------------------------------------------------ */

struct body {
    char *p;
    size_t n;
};

static size_t on_data(char *p, size_t sz, size_t nm, void *ud)
{
    struct body *b = ud;
    size_t n = sz * nm;
    char *q = realloc(b->p, b->n + n + 1);
    if (!q)
        return 0;
    memcpy(q + b->n, p, n);
    b->p = q;
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

static CURL *curl;
static struct curl_slist *hdrs;
static char url[512];

static int peekd_query(const char *json, uint64_t *ids, size_t *n,
                       int64_t *count, double *ms)
{
    struct body b = {0};
    long code = 0;
    cJSON *root, *fs, *sc;
    double t0;

    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    t0 = now_ms();
    if (curl_easy_perform(curl) != CURLE_OK) {
        free(b.p);
        return -1;
    }
    *ms = now_ms() - t0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200 || !b.p) {
        fprintf(stderr, "peekd: HTTP %ld: %.300s\n  for %s\n", code,
                b.p ? b.p : "", json);
        free(b.p);
        return -1;
    }
    *n = 0;
    if (ids) {
        root = cJSON_Parse(b.p);
        fs = cJSON_GetObjectItem(root, "findScenes");
        *count =
            (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(fs, "count"));
        cJSON_ArrayForEach (sc, cJSON_GetObjectItem(fs, "scenes")) {
            const char *id =
                cJSON_GetStringValue(cJSON_GetObjectItem(sc, "id"));
            if (id && *n < MAXPAGE)
                ids[(*n)++] = strtoull(id, NULL, 10);
        }
        cJSON_Delete(root);
    }
    free(b.p);
    return 0;
}

/* ---- SQL text ------------------------------------------------------- */

static const char peek_from[] =
    " FROM StashScene s"
    " LEFT JOIN SceneRating r ON s.id = r.sceneId AND"
    " s.stashInstanceId = r.instanceId AND r.userId = 1"
    " LEFT JOIN WatchHistory w ON s.id = w.sceneId AND"
    " s.stashInstanceId = w.instanceId AND w.userId = 1"
    " LEFT JOIN UserExcludedEntity e ON e.userId = 1 AND"
    " e.entityType = 'scene' AND e.entityId = s.id AND"
    " (e.instanceId = '' OR e.instanceId = s.stashInstanceId)"
    " WHERE s.deletedAt IS NULL AND e.id IS NULL AND"
    " (s.stashInstanceId IN ('peekd') OR s.stashInstanceId IS NULL) ";

static void sort_sql(const struct bq *q, int tuned, char *out, size_t n)
{
    const char *dir = q->desc ? "DESC" : "ASC";
    const char *tie = tuned ? "s.tiebreak COLLATE NATURAL_CI ASC, s.id ASC"
                            : "COALESCE(s.title, s.id) COLLATE NATURAL_CI ASC,"
                              " CAST(s.id AS INTEGER) ASC";
    const char *id = tuned ? "s.id" : "CAST(s.id AS INTEGER)";
    if (strncmp(q->sort, "random_", 7) == 0) {
        unsigned long long seed = strtoull(q->sort + 7, NULL, 10) % 100000000;
        snprintf(out, n,
                 "mod((%s + %llu) * (%s + %llu) * 52959209 + (%s + %llu) *"
                 " 1047483763, 2147483647) %s, %s",
                 id, seed, id, seed, id, seed, dir, tie);
    } else if (strcmp(q->sort, "title") == 0) {
        snprintf(out, n,
                 "COALESCE(s.title, %s) COLLATE NATURAL_CI %s, %s COLLATE"
                 " NATURAL_CI %s, %s",
                 tuned ? "s.basename" : "s.fileBasename", dir,
                 tuned ? "s.folder" : "s.fileFolder", dir, tie);
    } else {
        const char *col = "s.id";
        if (strcmp(q->sort, "created_at") == 0)
            col = tuned ? "s.created" : "s.stashCreatedAt";
        else if (strcmp(q->sort, "date") == 0)
            col = "s.date";
        else if (strcmp(q->sort, "rating") == 0)
            col = tuned ? "s.rating" : "s.rating100";
        else if (strcmp(q->sort, "duration") == 0)
            col = "s.duration";
        else if (strcmp(q->sort, "o_counter") == 0)
            col = tuned ? "s.o" : "s.oCounter";
        else if (strcmp(q->sort, "play_count") == 0)
            col = tuned ? "s.plays" : "s.playCount";
        else if (strcmp(q->sort, "last_played_at") == 0)
            col = tuned ? "s.last_played" : "s.lastPlayedAt";
        snprintf(out, n, "%s %s, %s", col, dir, tie);
    }
}

static int sqlite_query(sqlite3 *db, const struct bq *q, int tuned,
                        uint64_t *ids, size_t *n, int64_t *count, double *ms)
{
    static char sql[16384], order[1024];
    double t0 = now_ms();
    sort_sql(q, tuned, order, sizeof order);
    if (tuned)
        snprintf(sql, sizeof sql,
                 "SELECT s.id FROM scene s WHERE 1 %s ORDER BY %s LIMIT %ld"
                 " OFFSET %ld",
                 q->wtuned, order, q->per_page, (q->page - 1) * q->per_page);
    else
        snprintf(sql, sizeof sql,
                 "SELECT s.id, s.*, r.rating, r.favorite, w.playCount,"
                 " w.playDuration, w.lastPlayedAt, w.oCount, w.resumeTime,"
                 " w.oHistory, w.playHistory %s %s ORDER BY %s LIMIT %ld"
                 " OFFSET %ld",
                 peek_from, q->wpeek, order, q->per_page,
                 (q->page - 1) * q->per_page);
    if (bs_ids(db, sql, ids, MAXPAGE, n))
        return -1;
    if (tuned)
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM scene s WHERE 1 %s",
                 q->wtuned);
    else
        snprintf(sql, sizeof sql,
                 "SELECT COUNT(DISTINCT s.id || ':' || s.stashInstanceId) %s"
                 " %s",
                 peek_from, q->wpeek);
    if (bs_count(db, sql, count))
        return -1;
    *ms = now_ms() - t0;
    return 0;
}

/* ---- The query mix -------------------------------------------------- */

static struct bq *add(const char *name, const char *sort, int desc, long page,
                      long per_page, const char *filter_json, const char *wpeek,
                      const char *wtuned)
{
    struct bq *q = &qs[nq++];
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", name);
    snprintf(q->sort, sizeof q->sort, "%s", sort);
    q->desc = desc;
    q->page = page;
    q->per_page = per_page;
    snprintf(q->json, sizeof q->json,
             "{\"filter\":{\"page\":%ld,\"per_page\":%ld,\"sort\":\"%s\","
             "\"direction\":\"%s\"%s%s%s},\"scene_filter\":{%s}}",
             page, per_page, sort, desc ? "DESC" : "ASC", "", "", "",
             filter_json ? filter_json : "");
    snprintf(q->wpeek, sizeof q->wpeek, "%s", wpeek ? wpeek : "");
    snprintf(q->wtuned, sizeof q->wtuned, "%s", wtuned ? wtuned : "");
    return q;
}

static struct bq *add_q(const char *name, const char *word, const char *sort,
                        int desc)
{
    struct bq *q = add(name, sort, desc, 1, 24, NULL, NULL, NULL);
    snprintf(q->json, sizeof q->json,
             "{\"filter\":{\"page\":1,\"per_page\":24,\"sort\":\"%s\","
             "\"direction\":\"%s\",\"q\":\"%s\"},\"scene_filter\":{}}",
             sort, desc ? "DESC" : "ASC", word);
    /* Peek's q shape: LIKE over the scene's columns OR EXISTS on the
     * performer, studio and tag names (peek-api.md §3.1), over the fields
     * peekd's q searches (docs/FILTERS.md). */
    snprintf(q->wpeek, sizeof q->wpeek,
             "AND (s.title LIKE '%%%s%%' OR s.details LIKE '%%%s%%' OR"
             " s.filePath LIKE '%%%s%%' OR s.code LIKE '%%%s%%' OR"
             " s.oshash LIKE '%%%s%%' OR s.md5 LIKE '%%%s%%' OR"
             " s.phash LIKE '%%%s%%' OR EXISTS (SELECT 1 FROM StashClip c"
             " WHERE c.sceneId = s.id AND c.sceneInstanceId ="
             " s.stashInstanceId AND c.title LIKE '%%%s%%') OR EXISTS"
             " (SELECT 1 FROM ScenePerformer sp JOIN StashPerformer p ON"
             " p.id = sp.performerId AND p.stashInstanceId ="
             " sp.performerInstanceId WHERE sp.sceneId = s.id AND"
             " sp.sceneInstanceId = s.stashInstanceId AND p.name LIKE"
             " '%%%s%%') OR EXISTS (SELECT 1 FROM StashStudio st WHERE"
             " st.id = s.studioId AND st.stashInstanceId ="
             " s.stashInstanceId AND st.name LIKE '%%%s%%') OR EXISTS"
             " (SELECT 1 FROM SceneTag stg JOIN StashTag t ON t.id ="
             " stg.tagId AND t.stashInstanceId = stg.tagInstanceId WHERE"
             " stg.sceneId = s.id AND stg.sceneInstanceId ="
             " s.stashInstanceId AND t.name LIKE '%%%s%%'))",
             word, word, word, word, word, word, word, word, word, word, word);
    snprintf(q->wtuned, sizeof q->wtuned,
             "AND s.id IN (SELECT rowid FROM scene_text WHERE body LIKE"
             " '%%%s%%')",
             word);
    return q;
}

static char *idlist(const char *const *ids, int n, int quoted, char *out,
                    size_t cap)
{
    size_t l = 0;
    out[0] = '\0';
    for (int i = 0; i < n && l < cap; i++)
        l += (size_t)snprintf(out + l, cap - l, "%s%s%s%s", i ? "," : "",
                              quoted ? "'" : "", ids[i], quoted ? "'" : "");
    return out;
}

static void tag_cond(const char *const *ids, int n, int all, int neg,
                     char *peek, char *tuned, size_t cap)
{
    static char q[32768], u[32768];
    idlist(ids, n, 1, q, sizeof q);
    idlist(ids, n, 0, u, sizeof u);
    if (all) {
        snprintf(peek, cap,
                 "(SELECT COUNT(DISTINCT st.tagId) FROM SceneTag st WHERE"
                 " st.sceneId = s.id AND st.sceneInstanceId ="
                 " s.stashInstanceId AND st.tagId IN (%s)) = %d",
                 q, n);
        snprintf(tuned, cap,
                 "s.id IN (SELECT scene FROM scene_tag WHERE tag IN (%s)"
                 " GROUP BY scene HAVING COUNT(*) = %d)",
                 u, n);
        return;
    }
    snprintf(peek, cap,
             "%sEXISTS (SELECT 1 FROM SceneTag st WHERE st.sceneId = s.id AND"
             " st.sceneInstanceId = s.stashInstanceId AND st.tagId IN (%s))",
             neg ? "NOT " : "", q);
    snprintf(tuned, cap,
             "s.id %sIN (SELECT scene FROM scene_tag WHERE tag"
             " IN (%s))",
             neg ? "NOT " : "", u);
}

static void perf_cond(const char *const *ids, int n, int all, char *peek,
                      char *tuned, size_t cap)
{
    char q[1024], u[1024];
    idlist(ids, n, 1, q, sizeof q);
    idlist(ids, n, 0, u, sizeof u);
    if (all) {
        snprintf(peek, cap,
                 "(SELECT COUNT(DISTINCT sc.performerId) FROM ScenePerformer"
                 " sc WHERE sc.sceneId = s.id AND sc.sceneInstanceId ="
                 " s.stashInstanceId AND sc.performerId IN (%s)) = %d",
                 q, n);
        snprintf(tuned, cap,
                 "s.id IN (SELECT scene FROM scene_performer WHERE"
                 " performer IN (%s) GROUP BY scene HAVING COUNT(*) = %d)",
                 u, n);
        return;
    }
    snprintf(peek, cap,
             "EXISTS (SELECT 1 FROM ScenePerformer sc WHERE sc.sceneId ="
             " s.id AND sc.sceneInstanceId = s.stashInstanceId AND"
             " sc.performerId IN (%s))",
             q);
    snprintf(tuned, cap,
             "s.id IN (SELECT scene FROM scene_performer WHERE performer IN"
             " (%s))",
             u);
}

/* Descendants of root (inclusive) in a parent relation loaded from NDJSON:
 * ids and parents as strings.  Returns the count written to out. */
struct node {
    char id[24];
    char parents[8][24];
    int np;
};

static int load_nodes(const char *dir, const char *file, const char *field,
                      struct node **out)
{
    char path[4096], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0, max = 0;
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    f = fopen(path, "r");
    if (!f)
        return -1;
    *out = NULL;
    while ((len = getline(&line, &cap, f)) > 0) {
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len), *p;
        struct node *nd;
        if (n == max) {
            max = max ? max * 2 : 1024;
            *out = realloc(*out, (size_t)max * sizeof **out);
        }
        nd = &(*out)[n++];
        memset(nd, 0, sizeof *nd);
        snprintf(nd->id, sizeof nd->id, "%s",
                 cJSON_GetStringValue(cJSON_GetObjectItem(o, "id")));
        p = cJSON_GetObjectItem(o, field);
        if (cJSON_IsArray(p)) {
            cJSON *e;
            cJSON_ArrayForEach (e, p) {
                const char *pid =
                    cJSON_GetStringValue(cJSON_GetObjectItem(e, "id"));
                if (pid && nd->np < 8)
                    snprintf(nd->parents[nd->np++], 24, "%s", pid);
            }
        } else if (cJSON_IsObject(p)) {
            const char *pid =
                cJSON_GetStringValue(cJSON_GetObjectItem(p, "id"));
            if (pid)
                snprintf(nd->parents[nd->np++], 24, "%s", pid);
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return n;
}

static int descendants(const struct node *nd, int n, const char *root,
                       const char **out, int max)
{
    int k = 0;
    out[k++] = root;
    for (int i = 0; i < k && k < max; i++) {
        for (int j = 0; j < n && k < max; j++) {
            for (int p = 0; p < nd[j].np; p++) {
                if (strcmp(nd[j].parents[p], out[i]) == 0) {
                    int seen = 0;
                    for (int x = 0; x < k; x++)
                        if (strcmp(out[x], nd[j].id) == 0)
                            seen = 1;
                    if (!seen)
                        out[k++] = nd[j].id;
                }
            }
        }
    }
    return k;
}

static int freq(sqlite3 *db, const char *sql, struct idfreq *out, int max)
{
    sqlite3_stmt *st;
    int n = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW && n < max) {
        snprintf(out[n].id, sizeof out[n].id, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        out[n].n = sqlite3_column_int64(st, 1);
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

static const char *nearest(const struct idfreq *f, int n, double target)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (fabs(f[i].n - target) < fabs(f[best].n - target))
            best = i;
    return f[best].id;
}

static int build_mix(sqlite3 *db, const char *dir, long scenes)
{
    static struct idfreq tf[20000], pf[8];
    static char p2[24];
    static char a[32768], b[32768], c[32768], d[32768], fj[4096], wp[40000],
        wt[40000];
    const char *t50, *t5, *t05, *t005, *desc_ids[4096];
    struct node *tags = NULL, *studios = NULL;
    int ntf, npf, nt, ns, k;
    long last = scenes / 24;
    const char *best_tag = NULL, *best_studio = NULL;
    int best_tn = 0, best_sn = 0;

    ntf = freq(db,
               "SELECT tagId, COUNT(*) c FROM SceneTag GROUP BY tagId"
               " ORDER BY c DESC, CAST(tagId AS INTEGER)",
               tf, 20000);
    npf = freq(db,
               "SELECT performerId, COUNT(*) c FROM ScenePerformer GROUP BY"
               " performerId ORDER BY c DESC, CAST(performerId AS INTEGER)"
               " LIMIT 8",
               pf, 8);
    if (ntf < 4 || npf < 1)
        return -1;
    t50 = tf[0].id;
    t5 = nearest(tf, ntf, scenes * 0.05);
    t05 = nearest(tf, ntf, scenes * 0.005);
    t005 = nearest(tf, ntf, scenes * 0.0005 < 1 ? 1 : scenes * 0.0005);
    {
        char sql[512];
        struct idfreq co[1];
        snprintf(sql, sizeof sql,
                 "SELECT b.performerId, COUNT(*) c FROM ScenePerformer a JOIN"
                 " ScenePerformer b ON a.sceneId = b.sceneId WHERE"
                 " a.performerId = '%s' AND b.performerId != '%s' GROUP BY 1"
                 " ORDER BY c DESC, CAST(b.performerId AS INTEGER) LIMIT 1",
                 pf[0].id, pf[0].id);
        if (freq(db, sql, co, 1) != 1)
            return -1;
        snprintf(p2, sizeof p2, "%s", co[0].id);
    }
    nt = load_nodes(dir, "tags.ndjson", "parents", &tags);
    ns = load_nodes(dir, "studios.ndjson", "parent_studio", &studios);
    for (int i = 0; i < nt; i++) {
        int n = descendants(tags, nt, tags[i].id, desc_ids, 4096);
        if (n > best_tn) {
            best_tn = n;
            best_tag = tags[i].id;
        }
    }
    for (int i = 0; i < ns; i++) {
        int n = descendants(studios, ns, studios[i].id, desc_ids, 4096);
        if (n > best_sn) {
            best_sn = n;
            best_studio = studios[i].id;
        }
    }

    /* Unfiltered grids and carousels. */
    add("grid created_at DESC p1", "created_at", 1, 1, 24, NULL, NULL, NULL);
    add("grid created_at DESC p3", "created_at", 1, 3, 24, NULL, NULL, NULL);
    add("deep page created_at", "created_at", 1, last / 2 > 1 ? last / 2 : 1,
        24, NULL, NULL, NULL);
    add("last page created_at", "created_at", 1, last > 1 ? last : 1, 24, NULL,
        NULL, NULL);
    add("recently added carousel", "created_at", 1, 1, 12, NULL, NULL, NULL);
    add("date DESC", "date", 1, 1, 24, NULL, NULL, NULL);
    add("title ASC", "title", 0, 1, 24, NULL, NULL, NULL);
    add("title DESC p10", "title", 1, 10, 24, NULL, NULL, NULL);
    add("rating DESC", "rating", 1, 1, 24, NULL, NULL, NULL);
    add("duration ASC", "duration", 0, 1, 40, NULL, NULL, NULL);
    add("random_12345", "random_12345", 0, 1, 24, NULL, NULL, NULL);
    add("random_99999999 p5", "random_99999999", 0, 5, 24, NULL, NULL, NULL);
    /* Tags by selectivity. */
    const char *one[1];
#define TAGQ(NAME, ID, SORT, DESC)                                             \
    one[0] = ID;                                                               \
    tag_cond(one, 1, 0, 0, a, b, sizeof a);                                    \
    snprintf(fj, sizeof fj,                                                    \
             "\"tags\":{\"value\":[\"%s\"],\"modifier\":\"INCLUDES\"}", ID);   \
    snprintf(wp, sizeof wp, "AND %s", a);                                      \
    snprintf(wt, sizeof wt, "AND %s", b);                                      \
    add(NAME, SORT, DESC, 1, 24, fj, wp, wt)
    TAGQ("tag broad (top tag)", t50, "created_at", 1);
    TAGQ("tag 5%", t5, "created_at", 1);
    TAGQ("tag 0.5%", t05, "date", 1);
    TAGQ("tag 0.05%", t005, "title", 0);
    TAGQ("tag broad random", t50, "random_4242", 0);
    {
        const char *two[2] = {t50, t5};
        tag_cond(two, 2, 1, 0, a, b, sizeof a);
        snprintf(fj, sizeof fj,
                 "\"tags\":{\"value\":[\"%s\",\"%s\"],\"modifier\":"
                 "\"INCLUDES_ALL\"}",
                 t50, t5);
        snprintf(wp, sizeof wp, "AND %s", a);
        snprintf(wt, sizeof wt, "AND %s", b);
        add("tags INCLUDES_ALL 2", "created_at", 1, 1, 24, fj, wp, wt);
    }
    one[0] = t50;
    tag_cond(one, 1, 0, 1, a, b, sizeof a);
    snprintf(fj, sizeof fj,
             "\"tags\":{\"value\":[\"%s\"],\"modifier\":\"EXCLUDES\"}", t50);
    snprintf(wp, sizeof wp, "AND %s", a);
    snprintf(wt, sizeof wt, "AND %s", b);
    add("tags EXCLUDES top", "date", 1, 1, 24, fj, wp, wt);
    if (best_tag) {
        k = descendants(tags, nt, best_tag, desc_ids, 4096);
        tag_cond(desc_ids, k, 0, 0, a, b, sizeof a);
        snprintf(fj, sizeof fj,
                 "\"tags\":{\"value\":[\"%s\"],\"modifier\":\"INCLUDES\","
                 "\"depth\":-1}",
                 best_tag);
        snprintf(wp, sizeof wp, "AND %s", a);
        snprintf(wt, sizeof wt, "AND %s", b);
        add("tag hierarchy depth -1", "created_at", 1, 1, 24, fj, wp, wt);
    }
    /* Performers. */
    {
        const char *pp[2] = {pf[0].id, p2};
        perf_cond(pp, 2, 1, a, b, sizeof a);
        snprintf(fj, sizeof fj,
                 "\"performers\":{\"value\":[\"%s\",\"%s\"],\"modifier\":"
                 "\"INCLUDES_ALL\"}",
                 pf[0].id, p2);
        snprintf(wp, sizeof wp, "AND %s", a);
        snprintf(wt, sizeof wt, "AND %s", b);
        add("performers INCLUDES_ALL 2", "date", 1, 1, 24, fj, wp, wt);
        perf_cond(pp, 1, 0, a, b, sizeof a);
        snprintf(fj, sizeof fj,
                 "\"performers\":{\"value\":[\"%s\"],\"modifier\":"
                 "\"INCLUDES\"}",
                 pf[0].id);
        snprintf(wp, sizeof wp, "AND %s", a);
        snprintf(wt, sizeof wt, "AND %s", b);
        add("performer top", "created_at", 1, 1, 24, fj, wp, wt);
    }
    /* Studios. */
    if (best_studio) {
        static char q1[32768], u1[32768];
        k = descendants(studios, ns, best_studio, desc_ids, 4096);
        idlist(desc_ids, k, 1, q1, sizeof q1);
        idlist(desc_ids, k, 0, u1, sizeof u1);
        snprintf(fj, sizeof fj,
                 "\"studios\":{\"value\":[\"%s\"],\"modifier\":\"INCLUDES\","
                 "\"depth\":-1}",
                 best_studio);
        snprintf(wp, sizeof wp, "AND s.studioId IN (%s)", q1);
        snprintf(wt, sizeof wt, "AND s.studio IN (%s)", u1);
        add("studio tree depth -1", "date", 1, 1, 24, fj, wp, wt);
        snprintf(fj, sizeof fj,
                 "\"studios\":{\"value\":[\"%s\"],\"modifier\":\"INCLUDES\"}",
                 best_studio);
        snprintf(wp, sizeof wp, "AND s.studioId IN ('%s')", best_studio);
        snprintf(wt, sizeof wt, "AND s.studio IN (%s)", best_studio);
        add("studio depth 0", "title", 0, 1, 24, fj, wp, wt);
    }
    /* Ratings, dates, numbers. */
    add("rating > 80 random (carousel)", "random_777", 0, 1, 12,
        "\"rating100\":{\"value\":80,\"modifier\":\"GREATER_THAN\"}",
        "AND s.rating100 > 80", "AND s.rating > 80");
    add("rating > 80 by rating", "rating", 1, 2, 24,
        "\"rating100\":{\"value\":80,\"modifier\":\"GREATER_THAN\"}",
        "AND s.rating100 > 80", "AND s.rating > 80");
    add("date 2015-2016", "date", 0, 1, 24,
        "\"date\":{\"value\":\"2015-01-01\",\"value2\":\"2016-12-31\","
        "\"modifier\":\"BETWEEN\"}",
        "AND s.date BETWEEN '2015-01-01' AND '2016-12-31'",
        "AND s.date BETWEEN '2015-01-01' AND '2016-12-31'");
    add("date > 2020 by title", "title", 0, 1, 24,
        "\"date\":{\"value\":\"2020-12-31\",\"modifier\":\"GREATER_THAN\"}",
        "AND s.date > '2020-12-31'", "AND s.date > '2020-12-31'");
    add("duration > 30 min", "duration", 1, 1, 24,
        "\"duration\":{\"value\":1800,\"modifier\":\"GREATER_THAN\"}",
        "AND CAST(s.duration AS INTEGER) > 1800",
        "AND CAST(s.duration AS INTEGER) > 1800");
    add("resolution 1080p", "created_at", 1, 1, 24,
        "\"resolution\":{\"value\":\"FULL_HD\",\"modifier\":\"EQUALS\"}",
        "AND MIN(s.fileWidth, s.fileHeight) BETWEEN 1080 AND 1439",
        "AND MIN(s.width, s.height) BETWEEN 1080 AND 1439");
    add("played, last played", "last_played_at", 1, 1, 24,
        "\"play_count\":{\"value\":0,\"modifier\":\"GREATER_THAN\"}",
        "AND s.playCount > 0", "AND s.plays > 0");
    add("o_counter > 0", "o_counter", 1, 1, 24,
        "\"o_counter\":{\"value\":0,\"modifier\":\"GREATER_THAN\"}",
        "AND s.oCounter > 0", "AND s.o > 0");
    add("favorite performers random", "random_31337", 0, 1, 12,
        "\"performer_favorite\":true",
        "AND EXISTS (SELECT 1 FROM ScenePerformer sp JOIN StashPerformer p"
        " ON p.id = sp.performerId AND p.stashInstanceId ="
        " sp.performerInstanceId WHERE sp.sceneId = s.id AND"
        " sp.sceneInstanceId = s.stashInstanceId AND p.favorite = 1)",
        "AND s.id IN (SELECT scene FROM scene_performer WHERE performer IN"
        " (SELECT id FROM performer WHERE favorite = 1))");
    /* Text search. */
    add_q("q common word", "harbor", "created_at", 1);
    add_q("q rare word", "sapphire", "title", 0);
    {
        /* A performer's surname: found through the names q also searches. */
        static char word[64];
        char sql[256];
        sqlite3_stmt *st;
        snprintf(sql, sizeof sql,
                 "SELECT name FROM StashPerformer WHERE id = '%s'", pf[0].id);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            const char *sp = name ? strrchr(name, ' ') : NULL;
            const char *w = sp ? sp + 1 : name;
            size_t n = w ? strspn(w, "abcdefghijklmnopqrstuvwxyz"
                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
                         : 0;
            if (n >= 3 && n < sizeof word && w[n] == '\0') {
                memcpy(word, w, n + 1);
                add_q("q performer surname", word, "date", 1);
            }
        }
        sqlite3_finalize(st);
    }
    /* Boolean structure. */
    one[0] = t5;
    tag_cond(one, 1, 0, 0, a, b, sizeof a);
    snprintf(fj, sizeof fj,
             "\"tags\":{\"value\":[\"%s\"],\"modifier\":\"INCLUDES\"},"
             "\"AND\":{\"rating100\":{\"value\":60,\"modifier\":"
             "\"GREATER_THAN\"},\"organized\":true}",
             t5);
    snprintf(wp, sizeof wp, "AND %s AND (s.rating100 > 60 AND s.organized = 1)",
             a);
    snprintf(wt, sizeof wt, "AND %s AND (s.rating > 60 AND s.organized = 1)",
             b);
    add("AND: tag + rating + organized", "created_at", 1, 1, 24, fj, wp, wt);
    one[0] = t05;
    tag_cond(one, 1, 0, 0, a, b, sizeof a);
    {
        const char *pp[1] = {pf[0].id};
        perf_cond(pp, 1, 0, c, d, sizeof c);
    }
    snprintf(fj, sizeof fj,
             "\"tags\":{\"value\":[\"%s\"],\"modifier\":\"INCLUDES\"},"
             "\"OR\":{\"performers\":{\"value\":[\"%s\"],\"modifier\":"
             "\"INCLUDES\"}}",
             t05, pf[0].id);
    snprintf(wp, sizeof wp, "AND ((%s) OR (%s))", a, c);
    snprintf(wt, sizeof wt, "AND ((%s) OR (%s))", b, d);
    add("OR: tag or performer", "date", 1, 1, 24, fj, wp, wt);
    one[0] = t50;
    tag_cond(one, 1, 0, 0, a, b, sizeof a);
    snprintf(fj, sizeof fj,
             "\"NOT\":{\"tags\":{\"value\":[\"%s\"],\"modifier\":"
             "\"INCLUDES\"}}",
             t50);
    snprintf(wp, sizeof wp, "AND NOT (%s)", a);
    snprintf(wt, sizeof wt, "AND NOT (%s)", b);
    add("NOT: top tag", "created_at", 1, 2, 24, fj, wp, wt);
    free(tags);
    free(studios);
    return 0;
}

/* ---- Main ----------------------------------------------------------- */

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static double geomean(const double *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += log(v[i]);
    return n ? exp(s / n) : 0;
}

int main(int argc, char **argv)
{
    const char *data = arg(argc, argv, "--data", NULL);
    const char *base = arg(argc, argv, "--url", NULL);
    const char *work = arg(argc, argv, "--work", "build/bench");
    const char *outp = arg(argc, argv, "--out", "build/bench/results.json");
    const char *token = arg(argc, argv, "--token", NULL);
    int iters = (int)strtol(arg(argc, argv, "--iters", "200"), NULL, 10);
    int siters = (int)strtol(arg(argc, argv, "--sqlite-iters", "3"), NULL, 10);
    long scenes = strtol(arg(argc, argv, "--scenes", "0"), NULL, 10);
    char path[4096];
    sqlite3 *dbp, *dbt;
    static uint64_t a[MAXPAGE], b[MAXPAGE], c[MAXPAGE];
    double *t = malloc(sizeof(double) * (size_t)(iters > 50 ? iters : 50));
    double r_peek[MAXQ], r_tuned[MAXQ], med[MAXQ], t0;
    int mismatches = 0;
    int sqlite_only = strcmp(base ? base : "", "none") == 0;
    FILE *out;

    if (!data || !base || scenes <= 0 || iters < 1 || siters < 1 || !t) {
        fprintf(stderr, "usage: bench_peek --data DIR --url URL --scenes N"
                        " [--work DIR] [--out FILE] [--iters N]"
                        " [--sqlite-iters N] [--token T]\n");
        return 2;
    }
    /* SQLite: Peek's schema and the tuned variant. */
    snprintf(path, sizeof path, "%s/peek.sqlite", work);
    remove(path);
    t0 = now_ms();
    dbp = bs_open(path, BS_PEEK);
    if (!dbp || bs_load(dbp, BS_PEEK, data))
        return 1;
    printf("sqlite (Peek schema) loaded in %.1f s\n", (now_ms() - t0) / 1e3);
    snprintf(path, sizeof path, "%s/tuned.sqlite", work);
    remove(path);
    t0 = now_ms();
    dbt = bs_open(path, BS_TUNED);
    if (!dbt || bs_load(dbt, BS_TUNED, data))
        return 1;
    printf("sqlite (tuned) loaded in %.1f s\n", (now_ms() - t0) / 1e3);
    if (build_mix(dbp, data, scenes)) {
        fprintf(stderr, "bench: could not build the query mix\n");
        return 1;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl = curl_easy_init();
    snprintf(url, sizeof url, "%s/api/library/scenes", base);
    hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (token) {
        char h[512];
        snprintf(h, sizeof h, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, h);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);

    printf("\n%-32s %8s | %9s %9s | %9s %9s | %9s %9s | %8s %8s\n", "query",
           "count", "peekd p50", "p99", "peek p50", "p99", "tuned p50", "p99",
           "x peek", "x tuned");
    for (int i = 0; i < nq; i++) {
        struct bq *q = &qs[i];
        size_t na, nb, nc;
        int64_t ca, cb, cc;
        double ms;
        int same;

        if (sqlite_only) {
            if (sqlite_query(dbp, q, 0, a, &na, &ca, &ms))
                return 1;
        } else if (peekd_query(q->json, a, &na, &ca, &ms)) {
            fprintf(stderr, "bench: query '%s' failed\n", q->name);
            return 1;
        }
        if (sqlite_query(dbp, q, 0, b, &nb, &cb, &ms) ||
            sqlite_query(dbt, q, 1, c, &nc, &cc, &ms)) {
            fprintf(stderr, "bench: query '%s' failed\n", q->name);
            return 1;
        }
        same = ca == cb && cb == cc && na == nb && nb == nc &&
               memcmp(a, b, na * sizeof *a) == 0 &&
               memcmp(b, c, nb * sizeof *b) == 0;
        if (!same) {
            mismatches++;
            fprintf(stderr,
                    "MISMATCH %s: counts peekd %lld peek %lld tuned %lld;"
                    " page sizes %zu/%zu/%zu\n",
                    q->name, (long long)ca, (long long)cb, (long long)cc, na,
                    nb, nc);
            for (size_t k = 0; k < na || k < nb; k++) {
                if (k < na && k < nb && a[k] == b[k] &&
                    (k >= nc || b[k] == c[k]))
                    continue;
                fprintf(stderr, "  [%zu] peekd %llu sqlite %llu tuned %llu\n",
                        k, k < na ? (unsigned long long)a[k] : 0ULL,
                        k < nb ? (unsigned long long)b[k] : 0ULL,
                        k < nc ? (unsigned long long)c[k] : 0ULL);
                if (k > 5)
                    break;
            }
            fprintf(stderr, "  request: %s\n", q->json);
        }
        q->count = ca;
        for (int k = 0; k < iters && !sqlite_only; k++)
            if (peekd_query(q->json, NULL, &na, &ca, &t[k]))
                return 1;
        if (sqlite_only)
            t[0] = 1, iters = 1;
        pct(t, iters, q->t_peekd);
        for (int k = 0; k < siters; k++)
            if (sqlite_query(dbp, q, 0, b, &nb, &cb, &t[k]))
                return 1;
        pct(t, siters, q->t_peek);
        for (int k = 0; k < siters * 3; k++)
            if (sqlite_query(dbt, q, 1, c, &nc, &cc, &t[k]))
                return 1;
        pct(t, siters * 3, q->t_tuned);
        r_peek[i] = q->t_peek[0] / q->t_peekd[0];
        r_tuned[i] = q->t_tuned[0] / q->t_peekd[0];
        med[i] = q->t_peekd[0];
        printf("%-32s %8lld | %9.3f %9.3f | %9.2f %9.2f | %9.3f %9.3f |"
               " %8.0f %8.1f%s\n",
               q->name, (long long)q->count, q->t_peekd[0], q->t_peekd[1],
               q->t_peek[0], q->t_peek[1], q->t_tuned[0], q->t_tuned[1],
               r_peek[i], r_tuned[i], same ? "" : "  MISMATCH");
        fflush(stdout);
    }
    qsort(med, (size_t)nq, sizeof *med, cmp_double);
    printf("\n%d queries, %d mismatches; peekd median of p50s %.3f ms;"
           " geometric mean speed-up vs Peek's SQLite %.0fx, vs tuned"
           " SQLite %.1fx\n",
           nq, mismatches, med[nq / 2], geomean(r_peek, nq),
           geomean(r_tuned, nq));

    out = fopen(outp, "w");
    if (out) {
        fprintf(out, "{\"scenes\":%ld,\"mismatches\":%d,", scenes, mismatches);
        fprintf(out,
                "\"median_p50_ms\":%.4f,\"geomean_x_peek\":%.1f,"
                "\"geomean_x_tuned\":%.2f,\"queries\":[",
                med[nq / 2], geomean(r_peek, nq), geomean(r_tuned, nq));
        for (int i = 0; i < nq; i++)
            fprintf(out,
                    "%s{\"name\":\"%s\",\"count\":%lld,\"peekd_p50_ms\":%.4f,"
                    "\"peekd_p99_ms\":%.4f,\"peek_p50_ms\":%.3f,"
                    "\"peek_p99_ms\":%.3f,\"tuned_p50_ms\":%.4f,"
                    "\"tuned_p99_ms\":%.4f}",
                    i ? "," : "", qs[i].name, (long long)qs[i].count,
                    qs[i].t_peekd[0], qs[i].t_peekd[1], qs[i].t_peek[0],
                    qs[i].t_peek[1], qs[i].t_tuned[0], qs[i].t_tuned[1]);
        fprintf(out, "]}\n");
        fclose(out);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    sqlite3_close(dbp);
    sqlite3_close(dbt);
    free(t);
    return mismatches ? 1 : 0;
}
