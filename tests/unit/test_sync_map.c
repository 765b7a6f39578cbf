/*
 * test_sync_map.c - the Stash JSON -> kv record mapping (sync_map.c) and
 * the GraphQL response parser (sync_client.c).
 *
 * Differential part: every object of a generated library (tests/gen,
 * NDJSON in exactly our documents' shape) maps, and survives a kv encode/
 * decode round trip unchanged; spot fields are compared with the JSON.
 * Hostile part: wrong types, missing fields, bad ids and dates, huge
 * strings, deep nesting: always CM_INVALID with the field path, no crash.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_limits.h"
#include "kv/kv.h"
#include "sync/sync.h"
#include "tests/lib/testutil.h"

static char gen_dir[4096];

/* Generates the library once per process (Check forks per test: each
 * child generates its own; small enough). */
static const char *gen(int scenes)
{
    char cmd[8192];
    const char *d = tu_tmpdir();
    snprintf(cmd, sizeof cmd,
             "node tests/gen/generate.mjs --seed 1 --scenes %d --out %s "
             "2>/dev/null",
             scenes, d);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(gen_dir, sizeof gen_dir, "%s", d);
    return gen_dir;
}

static uint8_t etype_of(const char *file)
{
    if (strcmp(file, "tags") == 0)
        return KV_TAG;
    if (strcmp(file, "studios") == 0)
        return KV_STUDIO;
    if (strcmp(file, "performers") == 0)
        return KV_PERFORMER;
    if (strcmp(file, "groups") == 0)
        return KV_GROUP;
    if (strcmp(file, "galleries") == 0)
        return KV_GALLERY;
    return 0;
}

static bool kstr_is(struct kv_str s, const char *c)
{
    if (!c)
        return s.p == NULL;
    return s.p && s.len == strlen(c) && memcmp(s.p, c, s.len) == 0;
}

/* Documents our parser read, freed together by docs_free(). */
static struct sync_json *docs[64];
static int ndocs;

/* o (built or mutated with cJSON, the independent oracle) as our parser
 * reads it: printed and parsed again. */
static struct sjv as_doc(const cJSON *o)
{
    char *txt = cJSON_PrintUnformatted(o);
    char err[128] = "";
    ck_assert_ptr_nonnull(txt);
    ck_assert_int_lt(ndocs, 64);
    ck_assert_msg(sync_json_parse(txt, strlen(txt), &docs[ndocs], err,
                                  sizeof err) == CM_OK,
                  "%s", err);
    cJSON_free(txt);
    return sj_root(docs[ndocs++]);
}

static void docs_free(void)
{
    while (ndocs > 0)
        sync_json_free(docs[--ndocs]);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Checks a mapped scene against its JSON, field by field where the
 * mapping is not the identity. */
static void check_scene(const cJSON *o, const struct kv_scene *sc)
{
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    const cJSON *f0 = cJSON_GetArrayItem(files, 0);
    const cJSON *date = cJSON_GetObjectItemCaseSensitive(o, "date");
    char id[24];

    snprintf(id, sizeof id, "%llu", (unsigned long long)sc->id);
    ck_assert_str_eq(id, jstr(o, "id"));
    ck_assert(kstr_is(sc->title, jstr(o, "title")));
    ck_assert(kstr_is(sc->updated_at, jstr(o, "updated_at")));
    ck_assert_uint_eq(sc->n_files, (unsigned)cJSON_GetArraySize(files));
    if (f0) {
        ck_assert(kstr_is(sc->files[0].path, jstr(f0, "path")));
        ck_assert_int_eq(sc->files[0].size,
                         (int64_t)cJSON_GetObjectItem(f0, "size")->valuedouble);
        ck_assert_ptr_nonnull(sc->files[0].oshash.p);
    }
    if (cJSON_IsString(date)) {
        char buf[16];
        if (sc->date.day)
            snprintf(buf, sizeof buf, "%04d-%02d-%02d", sc->date.year,
                     sc->date.month, sc->date.day);
        else if (sc->date.month)
            snprintf(buf, sizeof buf, "%04d-%02d", sc->date.year,
                     sc->date.month);
        else
            snprintf(buf, sizeof buf, "%04d", sc->date.year);
        ck_assert_str_eq(buf, date->valuestring);
    } else {
        ck_assert_int_eq(sc->date.year, 0);
    }
    ck_assert_uint_eq(sc->n_tags, (unsigned)cJSON_GetArraySize(
                                      cJSON_GetObjectItem(o, "tags")));
    ck_assert_uint_eq(
        sc->n_performers,
        (unsigned)cJSON_GetArraySize(cJSON_GetObjectItem(o, "performers")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(o, "rating100"))
                  ? sc->rating100 == -1
                  : sc->rating100 ==
                        cJSON_GetObjectItem(o, "rating100")->valueint);
}

static void roundtrip_file(const char *dir, const char *name, size_t *count)
{
    char path[4200];
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    struct sync_arena a;
    uint8_t et = etype_of(name);

    snprintf(path, sizeof path, "%s/%s.ndjson", dir, name);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    sync_arena_init(&a, CM_MAX_GRAPHQL_RESPONSE);
    while ((n = getline(&line, &cap, f)) > 0) {
        cJSON *o = cJSON_ParseWithLength(line, (size_t)n);
        struct cm_buf b;
        char err[256] = "";
        ck_assert_ptr_nonnull(o);
        cm_buf_init(&b, CM_MAX_RECORD);
        if (et) {
            struct kv_entity e, d;
            ck_assert_msg(sync_map_entity(as_doc(o), et, &a, &e, err,
                                          sizeof err) == CM_OK,
                          "%s: %s", name, err);
            ck_assert(kstr_is(e.updated_at, jstr(o, "updated_at")));
            ck_assert_int_eq(kv_entity_encode(&e, &b), CM_OK);
            ck_assert_int_eq(kv_entity_decode(b.data, b.len, &d), CM_OK);
            ck_assert(kv_entity_equal(&e, &d));
            kv_entity_fini(&d);
        } else {
            struct kv_scene s, d;
            ck_assert_msg(sync_map_scene(as_doc(o), &a, &s, err, sizeof err) ==
                              CM_OK,
                          "scene: %s", err);
            check_scene(o, &s);
            ck_assert_int_eq(kv_scene_encode(&s, &b), CM_OK);
            ck_assert_int_eq(kv_scene_decode(b.data, b.len, &d), CM_OK);
            ck_assert(kv_scene_equal(&s, &d));
            kv_scene_fini(&d);
        }
        cm_buf_fini(&b);
        cJSON_Delete(o);
        docs_free();
        sync_arena_reset(&a);
        (*count)++;
    }
    free(line);
    fclose(f);
    sync_arena_fini(&a);
}

START_TEST(generated_library_maps_and_roundtrips)
{
    const char *d = gen(2000);
    const char *files[] = {"tags",   "studios",   "performers",
                           "groups", "galleries", "scenes"};
    size_t count[6] = {0};
    for (int i = 0; i < 6; i++)
        roundtrip_file(d, files[i], &count[i]);
    ck_assert_uint_eq(count[5], 2000);
    for (int i = 0; i < 5; i++)
        ck_assert_uint_gt(count[i], 0);
}
END_TEST

/* A valid scene to mutate. */
static const char *BASE =
    "{\"id\":\"123\",\"title\":\"T\",\"code\":null,\"details\":null,"
    "\"director\":null,\"urls\":[\"https://x\"],\"date\":\"2020-02-29\","
    "\"rating100\":55,\"organized\":false,\"o_counter\":0,\"play_count\":0,"
    "\"play_duration\":0,\"resume_time\":0,\"last_played_at\":null,"
    "\"created_at\":\"2025-12-18T19:41:58-08:00\","
    "\"updated_at\":\"2025-12-18T19:41:58Z\",\"interactive\":false,"
    "\"interactive_speed\":null,\"captions\":[],"
    "\"files\":[{\"id\":\"7\",\"path\":\"/a/b.mp4\",\"basename\":\"b.mp4\","
    "\"size\":1000,\"duration\":10.5,\"video_codec\":\"h264\","
    "\"audio_codec\":\"\",\"width\":1920,\"height\":1080,\"frame_rate\":30,"
    "\"bit_rate\":5000,\"format\":\"mp4\","
    "\"mod_time\":\"2025-01-01T00:00:00Z\",\"fingerprints\":[{\"type\":"
    "\"oshash\",\"value\":\"abc\"},{\"type\":\"phash\",\"value\":\"f1\"}]}],"
    "\"paths\":{\"screenshot\":\"http://s/scene/123/screenshot?t=1&apikey="
    "SECRET\",\"preview\":\"http://s/p?apikey=SECRET\",\"webp\":null,"
    "\"vtt\":\"http://s/v?a=1&APIKEY=SECRET&b=2#frag\",\"sprite\":null,"
    "\"funscript\":null,\"caption\":null},\"studio\":{\"id\":\"4\"},"
    "\"tags\":[{\"id\":\"1\"},{\"id\":\"2\"}],\"performers\":[{\"id\":\"9\"}],"
    "\"groups\":[{\"group\":{\"id\":\"3\"},\"scene_index\":2}],"
    "\"galleries\":[],\"stash_ids\":[],\"scene_markers\":[{\"id\":\"5\","
    "\"title\":\"m\",\"seconds\":1,\"end_seconds\":null,\"primary_tag\":"
    "{\"id\":\"1\"},\"tags\":[]}]}";

START_TEST(base_scene_maps_and_strips_apikey)
{
    cJSON *o = cJSON_Parse(BASE);
    struct sync_arena a;
    struct kv_scene s;
    char err[256] = "";
    sync_arena_init(&a, CM_MiB);
    ck_assert_int_eq(sync_map_scene(as_doc(o), &a, &s, err, sizeof err), CM_OK);
    ck_assert(kstr_is(s.p_screenshot, "http://s/scene/123/screenshot?t=1"));
    ck_assert(kstr_is(s.p_preview, "http://s/p"));
    ck_assert(kstr_is(s.p_vtt, "http://s/v?a=1&b=2#frag"));
    ck_assert_int_eq(s.date.year, 2020);
    ck_assert_int_eq(s.date.day, 29);
    ck_assert_int_eq(s.studio.id, 4);
    ck_assert_int_eq(s.groups[0].index, 2);
    ck_assert(kstr_is(s.files[0].phash, "f1"));
    ck_assert_ptr_null(s.files[0].md5.p);
    ck_assert_double_eq(s.markers[0].end_seconds, -1);
    ck_assert_int_eq(s.interactive_speed, -1);
    cJSON_Delete(o);
    docs_free();
    sync_arena_fini(&a);
}
END_TEST

struct mutation {
    const char *path;   /* dotted, with [n] for arrays */
    const char *json;   /* new value, NULL = remove the key */
    const char *expect; /* substring of the error */
};

static const struct mutation MUTS[] = {
    {"id", "\"1e3\"", "id: invalid id"},
    {"id", "\"-1\"", "id: invalid id"},
    {"id", "\"99999999999999999999\"", "id: invalid id"},
    {"id", "\"0\"", "id: invalid id"},
    {"id", "\"007\"", "id: invalid id"},
    {"id", "\" 12\"", "id: invalid id"},
    {"id", "123", "id: expected id string"},
    {"id", NULL, "id: expected id string"},
    {"title", "5", "title: expected string or null"},
    {"urls", "null", "urls: expected array"},
    {"urls", "[1]", "urls[0]: expected string"},
    {"date", "\"2021-02-29\"", "date: invalid date"},
    {"date", "\"2021-13\"", "date: invalid date"},
    {"date", "\"20211\"", "date: invalid date"},
    {"rating100", "101", "rating100: 101 out of range"},
    {"rating100", "5.5", "rating100: expected an integer"},
    {"organized", "null", "organized: expected boolean"},
    {"organized", NULL, "organized: expected boolean, got missing"},
    {"o_counter", "-3", "o_counter: -3 out of range"},
    {"resume_time", "-1", "resume_time: expected a non-negative"},
    {"created_at", "\"yesterday\"", "created_at: expected an RFC3339"},
    {"updated_at", "\"2025-12-18 19:41:58\"",
     "updated_at: expected an RFC3339"},
    {"updated_at", NULL, "updated_at: expected string"},
    {"files", "{}", "files: expected array"},
    {"files[0].size", "\"1000\"", "scene 123: files[0].size: expected number"},
    {"files[0].size", "-5", "files[0].size: -5 out of range"},
    {"files[0].width", "1e12", "files[0].width"},
    {"files[0].id", "\"x\"", "files[0].id: invalid id"},
    {"files[0].fingerprints", "[{\"type\":\"md5\"}]",
     "files[0].fingerprints[0].value: expected string"},
    {"files[0].mod_time", "null", "files[0].mod_time: expected string"},
    {"paths", "null", "paths: expected object"},
    {"paths.preview", "[]", "paths.preview: expected string or null"},
    {"studio", "{\"id\":5}", "studio.id: expected id string"},
    {"studio", "[]", "studio: expected object or null"},
    {"tags", "[{\"id\":\"1\"},{\"name\":\"x\"}]", "tags[1].id"},
    {"tags", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
     "tags[0]: expected object"},
    {"groups", "[{\"group\":null,\"scene_index\":1}]", "groups[0].group"},
    {"groups", "[{\"group\":{\"id\":\"3\"},\"scene_index\":-1}]",
     "negative scene_index"},
    {"scene_markers", "[{\"id\":\"5\",\"title\":null}]",
     "scene_markers[0].title: expected string"},
    {"captions", "[{\"language_code\":\"en\"}]",
     "captions[0].caption_type: expected string"},
    {"stash_ids", "[7]", "stash_ids[0]: expected object"},
    /* the whole path, at every nesting level */
    {"urls", "[\"a\",1]", "scene 123: urls[1]: expected string, got number"},
    {"files", "[7]", "scene 123: files[0]: expected object, got number"},
    {"files[0].fingerprints", "[{\"type\":\"md5\",\"value\":\"a\"},3]",
     "scene 123: files[0].fingerprints[1]: expected object, got number"},
    {"files[0].fingerprints", "[{\"type\":5,\"value\":\"a\"}]",
     "scene 123: files[0].fingerprints[0].type: expected string, got number"},
    {"files[0].duration", "-2",
     "scene 123: files[0].duration: expected a non-negative number"},
    {"tags", "[{\"id\":\"1\"},{\"name\":\"x\"}]",
     "scene 123: tags[1].id: expected id string, got missing"},
    {"performers", "[{\"id\":\"08\"}]",
     "scene 123: performers[0].id: invalid id \"08\""},
    {"groups", "[{\"group\":null,\"scene_index\":1}]",
     "scene 123: groups[0].group: expected object, got null"},
    {"groups", "[{\"group\":{\"id\":\"3\"},\"scene_index\":\"1\"}]",
     "scene 123: groups[0].scene_index: expected number or null, got string"},
    {"scene_markers", "[{\"id\":\"x\"}]",
     "scene 123: scene_markers[0].id: invalid id"},
    {"scene_markers",
     "[{\"id\":\"5\",\"title\":\"t\",\"seconds\":1,\"end_seconds\":null,"
     "\"primary_tag\":{\"id\":\"x\"},\"tags\":[]}]",
     "scene 123: scene_markers[0].primary_tag.id: invalid id"},
    {"scene_markers",
     "[{\"id\":\"5\",\"title\":\"t\",\"seconds\":1,\"end_seconds\":null,"
     "\"primary_tag\":{\"id\":\"2\"},\"tags\":[{\"id\":\"1\"},7]}]",
     "scene 123: scene_markers[0].tags[1]: expected object, got number"},
    {"captions", "[5]", "scene 123: captions[0]: expected object, got number"},
    {"stash_ids", "[{\"endpoint\":\"e\",\"stash_id\":1}]",
     "scene 123: stash_ids[0].stash_id: expected string, got number"},
    {"paths", "{}",
     "scene 123: paths.screenshot: expected string or null, "
     "got missing"},
};

/* Replaces (or removes) the value at a dotted path in o. */
static void mutate(cJSON *o, const char *path, const char *json)
{
    char buf[128], *seg, *next;
    cJSON *cur = o, *parent = NULL;
    char last[128] = "";
    snprintf(buf, sizeof buf, "%s", path);
    for (seg = buf; seg; seg = next) {
        char *br;
        next = strchr(seg, '.');
        if (next)
            *next++ = '\0';
        br = strchr(seg, '[');
        parent = cur;
        if (br) {
            *br = '\0';
            cur = cJSON_GetArrayItem(cJSON_GetObjectItem(cur, seg),
                                     (int)strtol(br + 1, NULL, 10));
        } else {
            cur = cJSON_GetObjectItem(cur, seg);
        }
        snprintf(last, sizeof last, "%s", seg);
    }
    ck_assert_ptr_nonnull(parent);
    if (json) {
        cJSON *v = cJSON_Parse(json);
        ck_assert_ptr_nonnull(v);
        cJSON_ReplaceItemInObject(parent, last, v);
    } else {
        cJSON_DeleteItemFromObject(parent, last);
    }
}

START_TEST(hostile_scene_fields)
{
    const struct mutation *m = &MUTS[_i];
    cJSON *o = cJSON_Parse(BASE);
    struct sync_arena a;
    struct kv_scene s;
    char err[256] = "";
    sync_arena_init(&a, CM_MiB);
    mutate(o, m->path, m->json);
    ck_assert_int_eq(sync_map_scene(as_doc(o), &a, &s, err, sizeof err),
                     CM_INVALID);
    ck_assert_msg(strstr(err, m->expect) != NULL, "%s: got \"%s\"", m->path,
                  err);
    ck_assert_msg(strncmp(err, "scene ", 6) == 0, "%s", err);
    cJSON_Delete(o);
    docs_free();
    sync_arena_fini(&a);
}
END_TEST

/* Member names are matched by length and bytes (key_eq): a key that
 * differs from a requested name in any one byte is not that member.  Every
 * key of BASE, at every depth, is misspelled at each of its bytes in turn:
 * the scene must then fail to map (the member is missing) or map to a
 * different scene.  Keys of 2 to 17 bytes cover each word size of the
 * comparison. */
START_TEST(misspelled_members_do_not_match)
{
    struct sync_arena a;
    struct kv_scene want;
    char err[256] = "";
    size_t n = strlen(BASE), keys = 0, tries = 0;
    char *txt = malloc(n + 1);
    struct sync_json *d0 = NULL;

    ck_assert_ptr_nonnull(txt);
    sync_arena_init(&a, CM_MiB);
    ck_assert_int_eq(sync_json_parse(BASE, n, &d0, err, sizeof err), CM_OK);
    ck_assert_int_eq(sync_map_scene(sj_root(d0), &a, &want, err, sizeof err),
                     CM_OK);
    for (size_t q = 0; q < n; q++) {
        size_t e;
        if (BASE[q] != '"' ||
            (q > 0 && BASE[q - 1] != '{' && BASE[q - 1] != ','))
            continue; /* not the opening quote of a key */
        e = q + 1;
        while (BASE[e] != '"')
            e++;
        ck_assert_int_eq(BASE[e + 1], ':');
        keys++;
        for (size_t j = q + 1; j < e; j++) {
            struct sync_json *d = NULL;
            struct kv_scene got;
            struct sync_arena b;
            enum cm_status st;
            memcpy(txt, BASE, n + 1);
            txt[j] = txt[j] == 'x' ? 'y' : 'x';
            sync_arena_init(&b, CM_MiB);
            ck_assert_int_eq(sync_json_parse(txt, n, &d, err, sizeof err),
                             CM_OK);
            st = sync_map_scene(sj_root(d), &b, &got, err, sizeof err);
            ck_assert_msg(st != CM_OK || !kv_scene_equal(&want, &got),
                          "key %.*s misspelled at byte %zu still matched",
                          (int)(e - q - 1), BASE + q + 1, j - q - 1);
            sync_json_free(d);
            sync_arena_fini(&b);
            tries++;
        }
    }
    ck_assert_uint_ge(keys, 50);
    ck_assert_uint_ge(tries, 400);
    sync_json_free(d0);
    sync_arena_fini(&a);
    free(txt);
}
END_TEST

START_TEST(huge_string_and_not_an_object)
{
    cJSON *o = cJSON_Parse(BASE), *arr = cJSON_CreateArray();
    char *big = malloc(CM_MAX_STRING + 2);
    struct sync_arena a;
    struct kv_scene s;
    struct kv_entity e;
    char err[256] = "";
    memset(big, 'x', CM_MAX_STRING + 1);
    big[CM_MAX_STRING + 1] = '\0';
    cJSON_ReplaceItemInObject(o, "details", cJSON_CreateString(big));
    sync_arena_init(&a, CM_MiB);
    ck_assert_int_eq(sync_map_scene(as_doc(o), &a, &s, err, sizeof err),
                     CM_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "details: string longer"));
    ck_assert_int_eq(sync_map_scene(as_doc(arr), &a, &s, err, sizeof err),
                     CM_INVALID);
    ck_assert_int_eq(
        sync_map_entity(as_doc(arr), KV_TAG, &a, &e, err, sizeof err),
        CM_INVALID);
    ck_assert_int_eq(sync_map_entity(as_doc(o), 'Q', &a, &e, err, sizeof err),
                     CM_INVALID);
    free(big);
    cJSON_Delete(o);
    docs_free();
    cJSON_Delete(arr);
    sync_arena_fini(&a);
}
END_TEST

START_TEST(entities_strict)
{
    struct {
        uint8_t type;
        const char *json, *expect;
    } cases[] = {
        {KV_PERFORMER,
         "{\"id\":\"1\",\"name\":\"A\",\"disambiguation\":null,\"alias_list\":"
         "[],\"gender\":\"ROBOT\",\"favorite\":false,\"rating100\":null,"
         "\"birthdate\":null,\"country\":null,\"image_path\":null,\"tags\":[],"
         "\"created_at\":\"2020-01-01T00:00:00Z\",\"updated_at\":"
         "\"2020-01-01T00:00:00Z\"}",
         "performer 1: gender: unknown gender"},
        {KV_PERFORMER,
         "{\"id\":\"1\",\"name\":\"A\",\"disambiguation\":null,\"alias_list\":"
         "[],\"gender\":\"FEMALE\",\"favorite\":false,\"rating100\":null,"
         "\"birthdate\":\"1990-02-30\",\"country\":null,\"image_path\":null,"
         "\"tags\":[],\"created_at\":\"2020-01-01T00:00:00Z\",\"updated_at\":"
         "\"2020-01-01T00:00:00Z\"}",
         "birthdate: invalid date"},
        {KV_TAG, "{\"id\":\"2\",\"name\":null}",
         "tag 2: name: expected string"},
        {KV_STUDIO,
         "{\"id\":\"3\",\"name\":\"S\",\"aliases\":[],\"favorite\":true,"
         "\"rating100\":null,\"parent_studio\":{\"id\":\"x\"}}",
         "studio 3: parent_studio.id: invalid id"},
        {KV_GROUP,
         "{\"id\":\"4\",\"name\":\"G\",\"aliases\":null,\"date\":null,"
         "\"duration\":-1}",
         "group 4: duration: -1 out of range"},
        {KV_GALLERY,
         "{\"id\":\"5\",\"title\":null,\"date\":null,\"rating100\":null,"
         "\"studio\":null,\"image_count\":3,\"paths\":{\"cover\":null}}",
         "gallery 5: paths.cover: expected string"},
        {KV_GROUP,
         "{\"id\":\"4\",\"name\":\"G\",\"aliases\":null,\"date\":null,"
         "\"duration\":null,\"rating100\":null,\"director\":null,"
         "\"synopsis\":null,\"studio\":null,\"containing_groups\":[{\"group\":"
         "{\"id\":\"1\"}},{\"group\":{\"id\":\"z\"}}]}",
         "group 4: containing_groups[1].group.id: invalid id \"z\""},
        {KV_GROUP,
         "{\"id\":\"4\",\"name\":\"G\",\"aliases\":null,\"date\":null,"
         "\"duration\":null,\"rating100\":null,\"director\":null,"
         "\"synopsis\":null,\"studio\":null,\"containing_groups\":[3]}",
         "group 4: containing_groups[0]: expected object, got number"},
        {KV_PERFORMER,
         "{\"id\":\"1\",\"name\":\"A\",\"disambiguation\":null,\"alias_list\":"
         "[],\"gender\":null,\"favorite\":false,\"rating100\":null,"
         "\"birthdate\":null,\"country\":null,\"image_path\":null,\"tags\":"
         "[{\"id\":\"1\"},{\"id\":\"0\"}]}",
         "performer 1: tags[1].id: invalid id \"0\""},
        {KV_TAG,
         "{\"id\":\"2\",\"name\":\"T\",\"sort_name\":null,\"aliases\":"
         "[\"a\",3]}",
         "tag 2: aliases[1]: expected string, got number"},
    };
    struct sync_arena a;
    sync_arena_init(&a, CM_MiB);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *o = cJSON_Parse(cases[i].json);
        struct kv_entity e;
        char err[256] = "";
        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(
            sync_map_entity(as_doc(o), cases[i].type, &a, &e, err, sizeof err),
            CM_INVALID);
        ck_assert_msg(strstr(err, cases[i].expect) != NULL, "got \"%s\"", err);
        cJSON_Delete(o);
        docs_free();
    }
    sync_arena_fini(&a);
}
END_TEST

START_TEST(ids_dates_times)
{
    uint64_t v;
    struct kv_date d;
    ck_assert_int_eq(sync_parse_id("18446744073709551615", &v), CM_OK);
    ck_assert(v == UINT64_MAX);
    ck_assert_int_eq(sync_parse_id("18446744073709551616", &v), CM_INVALID);
    ck_assert_int_eq(sync_parse_id("", &v), CM_INVALID);
    ck_assert_int_eq(sync_parse_id("12a", &v), CM_INVALID);
    ck_assert_int_eq(sync_parse_id("+1", &v), CM_INVALID);
    ck_assert_int_eq(sync_parse_date("2024-02-29", 10, &d), CM_OK);
    ck_assert_int_eq(sync_parse_date("1900-02-29", 10, &d), CM_INVALID);
    ck_assert_int_eq(sync_parse_date("0000", 4, &d), CM_INVALID);
    ck_assert_int_eq(sync_parse_date("2024-00", 7, &d), CM_INVALID);
    ck_assert(sync_valid_time("2025-12-18T19:41:58-08:00", 25));
    ck_assert(sync_valid_time("2025-12-18T19:41:58.123Z", 24));
    ck_assert(!sync_valid_time("2025-12-18T19:41:58", 19));
    ck_assert(!sync_valid_time("2025-12-18T25:41:58Z", 20));
    ck_assert(!sync_valid_time("2025-12-18T19:41:58+0800", 24));
}
END_TEST

START_TEST(fill_refs_from_store)
{
    struct kv_store *s;
    struct kv_txn *t;
    struct kv_options o = {0};
    struct kv_entity e;
    struct kv_scene sc;
    struct sync_arena a;
    cJSON *obj = cJSON_Parse(BASE);
    char err[256];
    uint64_t unknown = 0;

    o.map_size = 64 << 20;
    o.no_sync = 1;
    ck_assert_int_eq(kv_open(tu_tmpdir(), &o, &s, err, sizeof err), CM_OK);
    ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
    memset(&e, 0, sizeof e);
    e.type = KV_TAG;
    e.id = 1;
    e.name = (struct kv_str){"Tag One", 7};
    e.rating100 = -1;
    e.duration = -1;
    e.image_count = -1;
    e.favorite = true;
    e.created_at = e.updated_at = (struct kv_str){"2020-01-01T00:00:00Z", 20};
    ck_assert_int_eq(kv_entity_put(t, &e), CM_OK);
    e.type = KV_PERFORMER;
    e.id = 9;
    e.name = (struct kv_str){"Ann", 3};
    e.disambiguation = (struct kv_str){"II", 2};
    e.gender = KV_GENDER_FEMALE;
    e.rating100 = 80;
    ck_assert_int_eq(kv_entity_put(t, &e), CM_OK);
    ck_assert_int_eq(kv_commit(t), CM_OK);

    sync_arena_init(&a, CM_MiB);
    ck_assert_int_eq(sync_map_scene(as_doc(obj), &a, &sc, err, sizeof err),
                     CM_OK);
    ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
    ck_assert_int_eq(sync_fill_refs(t, &sc, &a, NULL, &unknown), CM_OK);
    kv_read_end(t);
    /* tag 2, studio 4 and group 3 are unknown */
    ck_assert_uint_eq(unknown, 3);
    ck_assert(kstr_is(sc.tags[0].name, "Tag One"));
    ck_assert(sc.tags[0].favorite);
    ck_assert_ptr_null(sc.tags[1].name.p);
    ck_assert_uint_eq(sc.tags[1].id, 2);
    ck_assert(kstr_is(sc.performers[0].name, "Ann"));
    ck_assert(kstr_is(sc.performers[0].aux, "II"));
    ck_assert_int_eq(sc.performers[0].gender, KV_GENDER_FEMALE);
    ck_assert_int_eq(sc.performers[0].rating100, 80);
    ck_assert_int_eq(sc.groups[0].index, 2);
    ck_assert_uint_eq(sc.studio.id, 4);

    /* With a ref cache: the same refs and unknown count, first filled
     * from the store, then from the cache.  The entries outlive the
     * caller's arena (their strings are the cache's), so a rename is seen
     * only once the cache is cleared, as the writer of an entity must. */
    {
        struct sync_ref_cache *c;
        struct kv_scene c1, c2;
        uint64_t unk = 0;
        ck_assert_int_eq(sync_ref_cache_new(&c), CM_OK);
        for (int round = 0; round < 2; round++) {
            struct kv_scene *x = round ? &c2 : &c1;
            ck_assert_int_eq(
                sync_map_scene(as_doc(obj), &a, x, err, sizeof err), CM_OK);
            ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
            ck_assert_int_eq(sync_fill_refs(t, x, &a, c, &unk), CM_OK);
            kv_read_end(t);
            ck_assert(kv_scene_equal(x, &sc));
        }
        ck_assert_uint_eq(unk, 6);
        ck_assert_ptr_eq(c1.tags[0].name.p, c2.tags[0].name.p); /* cached */

        ck_assert_int_eq(kv_write_begin(s, &t), CM_OK);
        e.type = KV_TAG;
        e.id = 1;
        e.name = (struct kv_str){"Renamed", 7};
        e.disambiguation = (struct kv_str){NULL, 0};
        e.gender = 0;
        e.rating100 = -1;
        ck_assert_int_eq(kv_entity_put(t, &e), CM_OK);
        ck_assert_int_eq(kv_commit(t), CM_OK);
        sync_arena_reset(&a);
        ck_assert_int_eq(sync_map_scene(as_doc(obj), &a, &c1, err, sizeof err),
                         CM_OK);
        ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
        ck_assert_int_eq(sync_fill_refs(t, &c1, &a, c, NULL), CM_OK);
        kv_read_end(t);
        ck_assert(kstr_is(c1.tags[0].name, "Tag One")); /* not cleared */
        ck_assert_ptr_eq(c1.tags[0].name.p, c2.tags[0].name.p);
        sync_ref_cache_clear(c);
        sync_arena_reset(&a);
        ck_assert_int_eq(sync_map_scene(as_doc(obj), &a, &c1, err, sizeof err),
                         CM_OK);
        ck_assert_int_eq(kv_read_begin(s, &t), CM_OK);
        ck_assert_int_eq(sync_fill_refs(t, &c1, &a, c, &unk), CM_OK);
        kv_read_end(t);
        ck_assert(kstr_is(c1.tags[0].name, "Renamed"));
        ck_assert(kstr_is(c1.performers[0].name, "Ann"));
        ck_assert_uint_eq(unk, 9); /* every fill counts its unknown refs */
        sync_ref_cache_free(c);
    }
    sync_arena_fini(&a);
    cJSON_Delete(obj);
    docs_free();
    kv_close(s);
}
END_TEST

START_TEST(response_parser)
{
    struct {
        long http;
        const char *body;
        enum cm_status st;
        bool retry;
        const char *msg;
    } c[] = {
        {200, "{\"data\":{\"findTags\":{\"count\":0,\"tags\":[]}}}", CM_OK,
         false, ""},
        {200, "{\"data\":{}} \n", CM_OK, false, ""},
        {401, "", CM_UPSTREAM, false, "Stash rejected the API key"},
        {503, "busy", CM_UPSTREAM, true, "HTTP 503"},
        {422, "{\"errors\":[{\"message\":\"bad enum\"},{\"message\":\"m2\"}]}",
         CM_UPSTREAM, false, "bad enum; m2"},
        {200,
         "{\"errors\":[{\"message\":\"invalid sort: foo\"}],\"data\":null}",
         CM_UPSTREAM, false, "invalid sort: foo"},
        {200, "{\"data\":{\"findScenes\":{\"count\":1,\"scenes\":[{\"id\":",
         CM_UPSTREAM, false, "malformed response"},
        {200, "{\"data\":{}}garbage", CM_UPSTREAM, false, "malformed"},
        {200, "", CM_UPSTREAM, false, "malformed"},
        {200, "[]", CM_UPSTREAM, false, "malformed"},
        {200, "{\"data\":null}", CM_UPSTREAM, false, "no data"},
        {404, "nope", CM_UPSTREAM, false, "HTTP 404"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        struct sync_json *doc = NULL;
        struct sjv data;
        bool retry = !c[i].retry;
        char err[256] = "";
        enum cm_status st =
            sync_parse_response(c[i].http, c[i].body, strlen(c[i].body), &doc,
                                &data, &retry, err, sizeof err);
        ck_assert_msg(st == c[i].st, "case %zu: %s", i, err);
        ck_assert_int_eq(retry, c[i].retry);
        ck_assert_msg(strstr(err, c[i].msg) != NULL, "case %zu: %s", i, err);
        ck_assert(st == CM_OK ? doc != NULL && sj_type(data) == SJ_OBJECT
                              : doc == NULL && sj_missing(data));
        sync_json_free(doc);
    }
}
END_TEST

START_TEST(arena_bounds)
{
    struct sync_arena a;
    sync_arena_init(&a, 1000);
    ck_assert_ptr_nonnull(sync_arena_alloc(&a, 500));
    ck_assert_ptr_null(sync_arena_alloc(&a, 600));
    ck_assert_ptr_null(sync_arena_alloc(&a, SIZE_MAX));
    sync_arena_reset(&a);
    ck_assert_ptr_nonnull(sync_arena_alloc(&a, 900));
    sync_arena_fini(&a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sync_map");
    TCase *tc = tcase_create("map");
    cm_json_init();
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, generated_library_maps_and_roundtrips);
    tcase_add_test(tc, base_scene_maps_and_strips_apikey);
    tcase_add_loop_test(tc, hostile_scene_fields, 0,
                        (int)(sizeof MUTS / sizeof MUTS[0]));
    tcase_add_test(tc, misspelled_members_do_not_match);
    tcase_add_test(tc, huge_string_and_not_an_object);
    tcase_add_test(tc, entities_strict);
    tcase_add_test(tc, ids_dates_times);
    tcase_add_test(tc, fill_refs_from_store);
    tcase_add_test(tc, response_parser);
    tcase_add_test(tc, arena_bounds);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
