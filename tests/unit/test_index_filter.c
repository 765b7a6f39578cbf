/*
 * test_index_filter.c - the scene filter language: strict parsing of
 * FindFilterType + SceneFilterType (+ Peek's additions), and the reference
 * evaluator (oracle) on hand-built scenes, cross-checked against SQLite for
 * LIKE, BETWEEN, ROUND and the performer-age expression.
 */
#include <check.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_buf.h"
#include "common/cm_limits.h"
#include "index/idx.h"
#include "index/idx_filter.h"
#include "tests/lib/testutil.h"

#define S(x)    ((struct kv_str){(x), (uint32_t)(sizeof(x) - 1)})
#define NUL_STR ((struct kv_str){NULL, 0})

/* ---- Helpers ------------------------------------------------------- */

static enum cm_status parse(const char *ff, const char *sf,
                            struct idx_query **q, struct idx_error *err)
{
    cJSON *f = ff ? cJSON_Parse(ff) : NULL;
    cJSON *s = sf ? cJSON_Parse(sf) : NULL;
    ck_assert_msg(!ff || f, "bad test JSON: %s", ff);
    ck_assert_msg(!sf || s, "bad test JSON: %s", sf);
    enum cm_status st = idx_query_parse(f, s, 40, q, err);
    cJSON_Delete(f);
    cJSON_Delete(s);
    return st;
}

static struct idx_query *parse_ok(const char *ff, const char *sf)
{
    struct idx_query *q = NULL;
    struct idx_error err;
    enum cm_status st = parse(ff, sf, &q, &err);
    ck_assert_msg(st == CM_OK, "parse failed: %s: %s (%s | %s)", err.field,
                  err.message, ff ? ff : "-", sf ? sf : "-");
    ck_assert_ptr_nonnull(q);
    return q;
}

static void parse_err(const char *ff, const char *sf, const char *field)
{
    struct idx_query *q = (struct idx_query *)1;
    struct idx_error err;
    enum cm_status st = parse(ff, sf, &q, &err);
    ck_assert_msg(st == CM_INVALID, "expected CM_INVALID for %s | %s, got %d",
                  ff ? ff : "-", sf ? sf : "-", st);
    ck_assert_ptr_null(q);
    ck_assert_msg(strcmp(err.field, field) == 0,
                  "field: got \"%s\" (%s) want \"%s\" for %s", err.field,
                  err.message, field, sf ? sf : ff);
    ck_assert_msg(err.message[0] != '\0', "empty message");
}

/* Tags: 1 <- 2 <- 3 <- 6, 1 <- 4, 5 <- 4 (a DAG).  Studios: 10 <- 11 <-
 * 12.  Groups: 20 <- 21.  Performers 30 (tags 2, born 1990-05-15), 31 (no
 * tags, born 2000), 32 (tag 5, no birthdate). */
static uint64_t p_t2[] = {1}, p_t3[] = {2}, p_t6[] = {3}, p_t4[] = {1, 5};
static uint64_t p_s11[] = {10}, p_s12[] = {11}, p_g21[] = {20};
static uint64_t pt30[] = {2}, pt32[] = {5}, st10[] = {6}, gt21[] = {4};
static struct kv_entity ents[] = {
    {.type = KV_TAG, .id = 1},
    {.type = KV_TAG, .id = 2, .n_parents = 1, .parents = p_t2},
    {.type = KV_TAG, .id = 3, .n_parents = 1, .parents = p_t3},
    {.type = KV_TAG, .id = 4, .n_parents = 2, .parents = p_t4},
    {.type = KV_TAG, .id = 5},
    {.type = KV_TAG, .id = 6, .n_parents = 1, .parents = p_t6},
    {.type = KV_STUDIO, .id = 10, .n_tags = 1, .tags = st10},
    {.type = KV_STUDIO, .id = 11, .n_parents = 1, .parents = p_s11},
    {.type = KV_STUDIO, .id = 12, .n_parents = 1, .parents = p_s12},
    {.type = KV_GROUP, .id = 20},
    {.type = KV_GROUP,
     .id = 21,
     .n_parents = 1,
     .parents = p_g21,
     .n_tags = 1,
     .tags = gt21},
    {.type = KV_PERFORMER,
     .id = 30,
     .n_tags = 1,
     .tags = pt30,
     .birthdate = {"1990-05-15", 10}},
    {.type = KV_PERFORMER, .id = 31, .birthdate = {"2000", 4}},
    {.type = KV_PERFORMER, .id = 32, .n_tags = 1, .tags = pt32},
};

static void blank_scene(struct kv_scene *sc, uint64_t id)
{
    memset(sc, 0, sizeof *sc);
    sc->id = id;
    sc->rating100 = -1;
    sc->interactive_speed = -1;
    sc->play_duration = -1;
    sc->resume_time = -1;
}

/* Does scene sc match scene_filter JSON sf? */
static bool m(const char *sf, const struct kv_scene *sc)
{
    struct idx_query *q = parse_ok(NULL, sf);
    struct idx_match_ctx ctx;
    idx_match_ctx_mem(&ctx, ents, sizeof ents / sizeof ents[0]);
    bool r = idx_filter_match(q->filter, sc, &ctx);
    ck_assert_int_eq(ctx.err, CM_OK);
    idx_match_ctx_fini(&ctx);
    idx_query_free(q);
    return r;
}

static bool mq(const char *qtext, const struct kv_scene *sc)
{
    char ff[512];
    cJSON *s = cJSON_CreateString(qtext);
    char *enc = cJSON_PrintUnformatted(s);
    snprintf(ff, sizeof ff, "{\"q\":%s}", enc);
    cJSON_free(enc);
    cJSON_Delete(s);
    struct idx_query *q = parse_ok(ff, NULL);
    bool r = idx_q_match(q, sc);
    idx_query_free(q);
    return r;
}

static struct kv_file one_file(int w, int h)
{
    struct kv_file f;
    memset(&f, 0, sizeof f);
    f.path = S("/media/Vids/Foo_Bar 100%.mp4");
    f.basename = S("Foo_Bar 100%.mp4");
    f.video_codec = S("h264");
    f.audio_codec = S("aac");
    f.oshash = S("0123456789abcdef");
    f.width = w;
    f.height = h;
    f.duration = 59.9;
    f.frame_rate = 29.5;
    f.bit_rate = 5000000;
    return f;
}

/* ---- Parser: acceptance -------------------------------------------- */

START_TEST(parse_every_field)
{
    const char *sf =
        "{\"id\":{\"value\":1,\"modifier\":\"EQUALS\"},"
        "\"title\":{\"value\":\"a\",\"modifier\":\"INCLUDES\"},"
        "\"code\":{\"value\":\"a\",\"modifier\":\"EQUALS\"},"
        "\"details\":{\"value\":\"a\",\"modifier\":\"EXCLUDES\"},"
        "\"director\":{\"value\":\"a\",\"modifier\":\"NOT_EQUALS\"},"
        "\"path\":{\"value\":\"^/a\",\"modifier\":\"MATCHES_REGEX\"},"
        "\"url\":{\"value\":\"x\",\"modifier\":\"NOT_MATCHES_REGEX\"},"
        "\"captions\":{\"value\":\"en\",\"modifier\":\"EQUALS\"},"
        "\"video_codec\":{\"value\":\"\",\"modifier\":\"IS_NULL\"},"
        "\"audio_codec\":{\"value\":\"\",\"modifier\":\"NOT_NULL\"},"
        "\"oshash\":{\"value\":\"ab\",\"modifier\":\"EQUALS\"},"
        "\"checksum\":{\"value\":\"ab\",\"modifier\":\"EQUALS\"},"
        "\"phash\":{\"value\":\"ff00\",\"modifier\":\"EQUALS\"},"
        "\"rating100\":{\"value\":80,\"modifier\":\"GREATER_THAN\"},"
        "\"o_counter\":{\"value\":1,\"modifier\":\"LESS_THAN\"},"
        "\"play_count\":{\"value\":1,\"value2\":5,\"modifier\":\"BETWEEN\"},"
        "\"play_duration\":{\"value\":1,\"value2\":5,\"modifier\":"
        "\"NOT_BETWEEN\"},"
        "\"resume_time\":{\"value\":0,\"modifier\":\"IS_NULL\"},"
        "\"duration\":{\"value\":60},"
        "\"bitrate\":{\"value\":1},"
        "\"framerate\":{\"value\":30,\"modifier\":\"EQUALS\"},"
        "\"file_count\":{\"value\":1,\"modifier\":\"EQUALS\"},"
        "\"tag_count\":{\"value\":1},"
        "\"performer_count\":{\"value\":1},"
        "\"performer_age\":{\"value\":25,\"modifier\":\"GREATER_THAN\"},"
        "\"interactive_speed\":{\"value\":1,\"modifier\":\"NOT_NULL\"},"
        "\"interactive\":false,\"organized\":true,"
        "\"performer_favorite\":true,\"studio_favorite\":true,"
        "\"tag_favorite\":true,"
        "\"resolution\":{\"value\":\"FULL_HD\",\"modifier\":\"GREATER_THAN\"},"
        "\"orientation\":{\"value\":[\"LANDSCAPE\",\"SQUARE\"]},"
        "\"date\":{\"value\":\"2020\",\"modifier\":\"GREATER_THAN\"},"
        "\"created_at\":{\"value\":\"2024-01-01\",\"modifier\":\"LESS_THAN\"},"
        "\"updated_at\":{\"value\":\"2024\",\"value2\":\"2025\","
        "\"modifier\":\"BETWEEN\"},"
        "\"last_played_at\":{\"value\":\"\",\"modifier\":\"NOT_NULL\"},"
        "\"has_markers\":\"true\",\"is_missing\":\"studio\","
        "\"studios\":{\"value\":[\"10\"],\"modifier\":\"INCLUDES\","
        "\"depth\":-1},"
        "\"tags\":{\"value\":[\"1\",\"2:uuid\"],\"modifier\":\"INCLUDES_ALL\","
        "\"depth\":2,\"excludes\":[5],\"inherited\":true},"
        "\"groups\":{\"value\":[\"20\"],\"modifier\":\"EQUALS\",\"depth\":0},"
        "\"performer_tags\":{\"value\":[\"2\"],\"modifier\":\"EXCLUDES\"},"
        "\"performers\":{\"value\":[\"30\"],\"modifier\":\"INCLUDES\","
        "\"excludes\":[\"31\"]},"
        "\"galleries\":{\"modifier\":\"IS_NULL\"},"
        "\"movies\":{\"value\":[\"20\"],\"modifier\":\"INCLUDES\"},"
        "\"stash_id_endpoint\":{\"endpoint\":\"https://x\",\"stash_id\":"
        "\"abc\",\"modifier\":\"EQUALS\"},"
        "\"instance_id\":\"peekd\",\"favorite\":false}";
    struct idx_query *q = parse_ok(NULL, sf);
    /* everything but instance_id and favorite=false (no clause) */
    ck_assert_uint_eq(q->filter->n, 47);
    ck_assert_int_eq(q->filter->sub_kind, IDX_SUB_NONE);
    bool seen[IDX_F_COUNT] = {0};
    for (size_t i = 0; i < q->filter->n; i++)
        seen[q->filter->crits[i].field] = true;
    for (int f = IDX_F_TITLE; f < IDX_F_COUNT; f++)
        if (f != IDX_F_SCENE_IDS)
            ck_assert_msg(seen[f], "field %s not produced",
                          idx_field_name((enum idx_field)f));
    /* spot checks of the digested values */
    for (size_t i = 0; i < q->filter->n; i++) {
        const struct idx_crit *c = &q->filter->crits[i];
        switch (c->field) {
        case IDX_F_TAGS:
            ck_assert_int_eq(c->mod, IDX_MOD_INCLUDES_ALL);
            ck_assert_uint_eq(c->n_ids, 2);
            ck_assert_uint_eq(c->ids[1], 2);
            ck_assert_uint_eq(c->n_excl, 1);
            ck_assert_int_eq(c->depth, 2);
            ck_assert(c->inherited);
            break;
        case IDX_F_PERFORMER_TAGS:
            ck_assert_uint_eq(c->n_ids, 0);
            ck_assert_uint_eq(c->n_excl, 1);
            break;
        case IDX_F_DATE: ck_assert_str_eq(c->str.p, "2020-01-01"); break;
        case IDX_F_PHASH: ck_assert_int_eq(c->i, 0xff00); break;
        case IDX_F_DURATION:
            ck_assert_int_eq(c->mod, IDX_MOD_GREATER_THAN);
            ck_assert_int_eq(c->i, 60);
            break;
        case IDX_F_TAG_COUNT: ck_assert_int_eq(c->mod, IDX_MOD_EQUALS); break;
        case IDX_F_PATH: ck_assert_ptr_nonnull(c->re); break;
        case IDX_F_CREATED_AT: /* timestamps are compared as given */
            ck_assert_str_eq(c->str.p, "2024-01-01");
            break;
        case IDX_F_PLAY_DURATION: ck_assert_int_eq(c->i2, 5); break;
        default: break;
        }
    }
    idx_query_free(q);
}
END_TEST

/* What each kind of criterion accepts (independent of the parser). */
static bool allowed(const char *field, enum idx_mod mod)
{
    static const char *const strs[] = {
        "title",    "code",        "details",     "director", "path",     "url",
        "captions", "video_codec", "audio_codec", "oshash",   "checksum", NULL};
    static const char *const ints[] = {"id",
                                       "rating100",
                                       "o_counter",
                                       "play_count",
                                       "play_duration",
                                       "resume_time",
                                       "duration",
                                       "bitrate",
                                       "framerate",
                                       "file_count",
                                       "tag_count",
                                       "performer_count",
                                       "performer_age",
                                       "interactive_speed",
                                       NULL};
    static const char *const dates[] = {"date", "created_at", "updated_at",
                                        "last_played_at", NULL};
    unsigned b = 1u << mod;
    for (int i = 0; strs[i]; i++)
        if (!strcmp(field, strs[i]))
            return !(b &
                     ((1u << IDX_MOD_GREATER_THAN) | (1u << IDX_MOD_LESS_THAN) |
                      (1u << IDX_MOD_INCLUDES_ALL) | (1u << IDX_MOD_BETWEEN) |
                      (1u << IDX_MOD_NOT_BETWEEN)));
    for (int i = 0; ints[i]; i++)
        if (!strcmp(field, ints[i]))
            return !(b &
                     ((1u << IDX_MOD_INCLUDES_ALL) | (1u << IDX_MOD_INCLUDES) |
                      (1u << IDX_MOD_EXCLUDES) | (1u << IDX_MOD_MATCHES_REGEX) |
                      (1u << IDX_MOD_NOT_MATCHES_REGEX)));
    for (int i = 0; dates[i]; i++)
        if (!strcmp(field, dates[i]))
            return allowed("id", mod);
    if (!strcmp(field, "resolution"))
        return mod == IDX_MOD_EQUALS || mod == IDX_MOD_NOT_EQUALS ||
               mod == IDX_MOD_GREATER_THAN || mod == IDX_MOD_LESS_THAN;
    bool set = mod == IDX_MOD_INCLUDES || mod == IDX_MOD_INCLUDES_ALL ||
               mod == IDX_MOD_EXCLUDES || mod == IDX_MOD_IS_NULL ||
               mod == IDX_MOD_NOT_NULL;
    if (!strcmp(field, "studios"))
        return set || mod == IDX_MOD_EQUALS || mod == IDX_MOD_NOT_EQUALS;
    if (!strcmp(field, "performer_tags"))
        return set;
    return set || mod == IDX_MOD_EQUALS; /* tags groups performers ... */
}

START_TEST(parse_every_modifier)
{
    static const struct {
        const char *field, *value;
    } fs[] = {
        {"title", "\"a b\""},
        {"code", "\"x\""},
        {"details", "\"x\""},
        {"director", "\"x\""},
        {"path", "\"x\""},
        {"url", "\"x\""},
        {"captions", "\"en\""},
        {"video_codec", "\"h264\""},
        {"audio_codec", "\"aac\""},
        {"oshash", "\"ab\""},
        {"checksum", "\"ab\""},
        {"id", "5"},
        {"rating100", "5"},
        {"o_counter", "5"},
        {"play_count", "5"},
        {"play_duration", "5"},
        {"resume_time", "5"},
        {"duration", "5"},
        {"bitrate", "5"},
        {"framerate", "5"},
        {"file_count", "5"},
        {"tag_count", "5"},
        {"performer_count", "5"},
        {"performer_age", "5"},
        {"interactive_speed", "5"},
        {"date", "\"2020-05\""},
        {"created_at", "\"2020\""},
        {"updated_at", "\"2020\""},
        {"last_played_at", "\"2020\""},
        {"resolution", "\"FOUR_K\""},
        {"studios", "[\"1\"]"},
        {"tags", "[\"1\"]"},
        {"groups", "[\"1\"]"},
        {"performer_tags", "[\"1\"]"},
        {"performers", "[\"1\"]"},
        {"galleries", "[\"1\"]"},
        {"movies", "[\"1\"]"},
    };
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        for (int mo = 0; mo < IDX_MOD_COUNT; mo++) {
            char sf[256], path[128];
            snprintf(sf, sizeof sf,
                     "{\"%s\":{\"value\":%s,\"modifier\":\"%s\"}}", fs[i].field,
                     fs[i].value, idx_mod_name((enum idx_mod)mo));
            if (allowed(fs[i].field, (enum idx_mod)mo)) {
                idx_query_free(parse_ok(NULL, sf));
            } else {
                snprintf(path, sizeof path, "scene_filter.%s.modifier",
                         fs[i].field);
                parse_err(NULL, sf, path);
            }
        }
    }
}
END_TEST

START_TEST(parse_rejects_with_field)
{
    static const struct {
        const char *sf, *field;
    } bad[] = {
        {"{\"nope\":1}", "scene_filter.nope"},
        {"{\"title\":{\"value\":\"a\",\"modifier\":\"EQUALS\",\"x\":1}}",
         "scene_filter.title.x"},
        {"{\"title\":\"a\"}", "scene_filter.title"},
        {"{\"title\":{\"value\":5,\"modifier\":\"EQUALS\"}}",
         "scene_filter.title.value"},
        {"{\"title\":{\"modifier\":\"EQUALS\"}}", "scene_filter.title.value"},
        {"{\"title\":{\"value\":\"a\",\"modifier\":\"BOGUS\"}}",
         "scene_filter.title.modifier"},
        {"{\"rating100\":{\"value\":1.5,\"modifier\":\"EQUALS\"}}",
         "scene_filter.rating100.value"},
        {"{\"rating100\":{\"value\":\"x\"}}", "scene_filter.rating100.value"},
        {"{\"rating100\":{\"value\":1,\"modifier\":\"INCLUDES\"}}",
         "scene_filter.rating100.modifier"},
        {"{\"path\":{\"value\":\"(a\",\"modifier\":\"MATCHES_REGEX\"}}",
         "scene_filter.path.value"},
        {"{\"AND\":{},\"OR\":{}}", "scene_filter"},
        {"{\"AND\":{\"NOT\":{},\"OR\":{}}}", "scene_filter.AND"},
        {"{\"AND\":5}", "scene_filter.AND"},
        {"{\"organized\":\"yes\"}", "scene_filter.organized"},
        {"{\"tags\":{\"value\":[\"1\",\"x\"]}}", "scene_filter.tags.value[1]"},
        {"{\"tags\":{\"value\":\"1\"}}", "scene_filter.tags.value"},
        {"{\"tags\":{\"value\":[\"1\"],\"depth\":-2}}",
         "scene_filter.tags.depth"},
        {"{\"tags\":{\"value\":[\"1\"],\"modifier\":\"EQUALS\",\"depth\":1}}",
         "scene_filter.tags.depth"},
        {"{\"tags\":{\"value\":[\"1\"],\"modifier\":\"EQUALS\","
         "\"inherited\":true}}",
         "scene_filter.tags.inherited"},
        {"{\"studios\":{\"value\":[\"1\"],\"inherited\":true}}",
         "scene_filter.studios.inherited"},
        {"{\"performers\":{\"value\":[\"1\"],\"depth\":1}}",
         "scene_filter.performers.depth"},
        {"{\"performers\":{\"value\":[\"1\"],\"modifier\":\"NOT_EQUALS\"}}",
         "scene_filter.performers.modifier"},
        {"{\"resolution\":{\"value\":\"HUGE_X\"}}",
         "scene_filter.resolution.value"},
        {"{\"orientation\":{\"value\":[\"WIDE\"]}}",
         "scene_filter.orientation.value[0]"},
        {"{\"date\":{\"value\":\"2020-13\"}}", "scene_filter.date.value"},
        {"{\"date\":{\"value\":\"yesterday\"}}", "scene_filter.date.value"},
        {"{\"has_markers\":\"maybe\"}", "scene_filter.has_markers"},
        {"{\"is_missing\":\"cover\"}", "scene_filter.is_missing"},
        {"{\"is_missing\":\"rating100\"}", "scene_filter.is_missing"},
        {"{\"duplicated\":{\"duplicated\":true}}", "scene_filter.duplicated"},
        {"{\"phash_distance\":{\"value\":\"ab\",\"modifier\":\"EQUALS\"}}",
         "scene_filter.phash_distance"},
        {"{\"tags_filter\":{}}", "scene_filter.tags_filter"},
        {"{\"stash_id_endpoint\":{\"stash_id\":\"a\"}}",
         "scene_filter.stash_id_endpoint.modifier"},
        {"{\"phash\":{\"value\":\"xyz\"}}", "scene_filter.phash.value"},
        {"{\"title\":{\"value\":\"a\"},\"title\":{\"value\":\"b\"}}",
         "scene_filter.title"},
        {"{\"OR\":{\"NOT\":{\"AND\":{\"bogus\":1}}}}",
         "scene_filter.OR.NOT.AND.bogus"},
        {"[1]", "scene_filter"},
        {"{\"ids\":[\"a\"]}", "scene_filter.ids[0]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        parse_err(NULL, bad[i].sf, bad[i].field);

    /* nesting: CM_MAX_FILTER_DEPTH levels are fine, one more is not */
    struct cm_buf b;
    for (int levels = CM_MAX_FILTER_DEPTH; levels <= CM_MAX_FILTER_DEPTH + 1;
         levels++) {
        cm_buf_init(&b, 4096);
        for (int i = 1; i < levels; i++)
            ck_assert_int_eq(cm_buf_puts(&b, "{\"organized\":true,\"AND\":"),
                             CM_OK);
        ck_assert_int_eq(cm_buf_puts(&b, "{\"organized\":true}"), CM_OK);
        for (int i = 1; i < levels; i++)
            ck_assert_int_eq(cm_buf_putc(&b, '}'), CM_OK);
        if (levels == CM_MAX_FILTER_DEPTH) {
            idx_query_free(parse_ok(NULL, b.data));
        } else {
            struct cm_buf field;
            cm_buf_init(&field, 512);
            ck_assert_int_eq(cm_buf_puts(&field, "scene_filter"), CM_OK);
            for (int i = 1; i < levels; i++)
                ck_assert_int_eq(cm_buf_puts(&field, ".AND"), CM_OK);
            parse_err(NULL, b.data, field.data);
            cm_buf_fini(&field);
        }
        cm_buf_fini(&b);
    }

    /* id lists: CM_MAX_FILTER_VALUES ids (value + excludes) at most */
    cm_buf_init(&b, CM_MiB);
    ck_assert_int_eq(cm_buf_puts(&b, "{\"tags\":{\"value\":["), CM_OK);
    for (int i = 0; i <= CM_MAX_FILTER_VALUES; i++)
        ck_assert_int_eq(cm_buf_printf(&b, "%s%d", i ? "," : "", i + 1), CM_OK);
    ck_assert_int_eq(cm_buf_puts(&b, "]}}"), CM_OK);
    parse_err(NULL, b.data, "scene_filter.tags.value");
    cm_buf_fini(&b);
    cm_buf_init(&b, CM_MiB); /* value + excludes together */
    ck_assert_int_eq(cm_buf_puts(&b, "{\"tags\":{\"value\":[1],"
                                     "\"excludes\":["),
                     CM_OK);
    for (int i = 0; i < CM_MAX_FILTER_VALUES; i++)
        ck_assert_int_eq(cm_buf_printf(&b, "%s%d", i ? "," : "", i + 2), CM_OK);
    ck_assert_int_eq(cm_buf_puts(&b, "]}}"), CM_OK);
    parse_err(NULL, b.data, "scene_filter.tags.excludes");
    cm_buf_fini(&b);

    /* regex length limit */
    cm_buf_init(&b, CM_MiB);
    ck_assert_int_eq(
        cm_buf_puts(&b,
                    "{\"title\":{\"modifier\":\"MATCHES_REGEX\",\"value\":\""),
        CM_OK);
    for (int i = 0; i <= CM_MAX_REGEX_LEN; i++)
        ck_assert_int_eq(cm_buf_putc(&b, 'a'), CM_OK);
    ck_assert_int_eq(cm_buf_puts(&b, "\"}}"), CM_OK);
    parse_err(NULL, b.data, "scene_filter.title.value");
    cm_buf_fini(&b);
}
END_TEST

START_TEST(parse_find_filter)
{
    struct idx_query *q = parse_ok(NULL, NULL);
    ck_assert_int_eq(q->sort, IDX_SORT_CREATED_AT); /* Peek's default */
    ck_assert(q->desc);
    ck_assert_int_eq(q->page, 1);
    ck_assert_int_eq(q->per_page, 40);
    ck_assert_ptr_null(q->filter);
    idx_query_free(q);

    q = parse_ok("{\"sort\":\"title\",\"page\":0,\"per_page\":-1}", NULL);
    ck_assert_int_eq(q->sort, IDX_SORT_TITLE);
    ck_assert(!q->desc); /* Stash: ASC */
    ck_assert_int_eq(q->page, 1);
    ck_assert_int_eq(q->per_page, CM_MAX_PER_PAGE);
    ck_assert(q->per_page_all);
    idx_query_free(q);

    q = parse_ok("{\"sort\":\"random_12345678901\",\"direction\":\"desc\","
                 "\"per_page\":0,\"page\":3}",
                 NULL);
    ck_assert_int_eq(q->sort, IDX_SORT_RANDOM);
    ck_assert_uint_eq(q->seed, 12345678901ULL % 100000000ULL);
    ck_assert(q->desc);
    ck_assert_int_eq(q->per_page, 0);
    ck_assert_int_eq(q->page, 3);
    idx_query_free(q);

    q = parse_ok("{\"sort\":\"random\",\"direction\":\"sideways\"}", NULL);
    ck_assert_int_eq(q->sort, IDX_SORT_RANDOM);
    ck_assert_uint_lt(q->seed, 100000000u);
    ck_assert(!q->desc); /* invalid direction -> ASC, as Stash */
    idx_query_free(q);

    q = parse_ok("{\"direction\":\"ASC\",\"per_page\":999999}", NULL);
    ck_assert_int_eq(q->sort, IDX_SORT_CREATED_AT);
    ck_assert(!q->desc);
    ck_assert_int_eq(q->per_page, CM_MAX_PER_PAGE);
    idx_query_free(q);

    for (int s = 0; s < IDX_SORT_COUNT; s++) {
        char ff[128];
        snprintf(ff, sizeof ff, "{\"sort\":\"%s\"}",
                 idx_sort_name((enum idx_sort)s));
        q = parse_ok(ff, NULL);
        ck_assert_int_eq(q->sort, s);
        idx_query_free(q);
    }

    parse_err("{\"sort\":\"bogus\"}", NULL, "filter.sort");
    parse_err("{\"sort\":\"random_x\"}", NULL, "filter.sort");
    parse_err("{\"sort\":\"random_99999999999999999999999\"}", NULL,
              "filter.sort");
    parse_err("{\"sort\":\"perceptual_similarity\"}", NULL, "filter.sort");
    parse_err("{\"sort\":5}", NULL, "filter.sort");
    parse_err("{\"page\":\"x\"}", NULL, "filter.page");
    parse_err("{\"page\":1000000000}", NULL, "filter.page");
    parse_err("{\"per_page\":2.5}", NULL, "filter.per_page");
    parse_err("{\"qq\":1}", NULL, "filter.qq");
    parse_err("[]", NULL, "filter");
    struct cm_buf b;
    cm_buf_init(&b, CM_MiB);
    ck_assert_int_eq(cm_buf_puts(&b, "{\"q\":\""), CM_OK);
    for (int i = 0; i <= CM_MAX_Q_LEN; i++)
        ck_assert_int_eq(cm_buf_putc(&b, 'x'), CM_OK);
    ck_assert_int_eq(cm_buf_puts(&b, "\"}"), CM_OK);
    parse_err(b.data, NULL, "filter.q");
    cm_buf_fini(&b);
}
END_TEST

START_TEST(parse_q_spec)
{
    struct idx_query *q =
        parse_ok("{\"q\":\"  foo \\\"big cat\\\" a OR b or c -bar -\\\"x y\\\" "
                 "\\\"\\\" - \"}",
                 NULL);
    const struct idx_qspec *s = &q->qs;
    ck_assert_uint_eq(s->n_must, 3);
    ck_assert_str_eq(s->must[0].p, "foo");
    ck_assert_str_eq(s->must[1].p, "big cat");
    ck_assert_str_eq(s->must[2].p, "-"); /* a lone "-" is a word */
    ck_assert_uint_eq(s->n_any, 1);
    ck_assert_uint_eq(s->any_len[0], 3);
    ck_assert_str_eq(s->any[0][2].p, "c");
    ck_assert_uint_eq(s->n_must_not, 2);
    ck_assert_str_eq(s->must_not[0].p, "bar");
    ck_assert_str_eq(s->must_not[1].p, "x y");
    idx_query_free(q);

    q = parse_ok("{\"q\":\"OR a\"}", NULL); /* leading OR is literal */
    ck_assert_uint_eq(q->qs.n_must, 2);
    ck_assert_uint_eq(q->qs.n_any, 0);
    idx_query_free(q);

    q = parse_ok("{\"q\":\"\\\"unterminated phrase\"}", NULL);
    ck_assert_uint_eq(q->qs.n_must, 2);
    ck_assert_str_eq(q->qs.must[0].p, "\"unterminated");
    idx_query_free(q);
}
END_TEST

START_TEST(parse_peek_bodies)
{
    /* peek-api.md §4.1 */
    const char *body =
        "{ \"filter\": {\"page\":1,\"per_page\":24,\"sort\":\"random_12345\","
        "\"direction\":\"DESC\",\"q\":\"text\"},"
        "\"scene_filter\": { \"performers\":{\"value\":[\"12:uuid\"],"
        "\"modifier\":\"INCLUDES_ALL\"},"
        "\"tags\":{\"value\":[\"7:uuid\"],\"modifier\":\"INCLUDES\","
        "\"depth\":0},"
        "\"rating100\":{\"value\":80,\"modifier\":\"GREATER_THAN\"}, "
        "\"performer_favorite\":true, \"instance_id\":\"uuid\" },"
        "\"ids\": [\"123\"] }";
    cJSON *j = cJSON_Parse(body);
    ck_assert_ptr_nonnull(j);
    struct idx_query *q = NULL;
    struct idx_error err;
    ck_assert_int_eq(idx_query_parse(cJSON_GetObjectItem(j, "filter"),
                                     cJSON_GetObjectItem(j, "scene_filter"), 40,
                                     &q, &err),
                     CM_OK);
    ck_assert_int_eq(idx_query_set_ids(q, cJSON_GetObjectItem(j, "ids"), &err),
                     CM_OK);
    ck_assert_uint_eq(q->n_ids, 1);
    ck_assert_uint_eq(q->ids[0], 123);
    ck_assert_int_eq(q->per_page, 24);
    ck_assert_uint_eq(q->seed, 12345);
    /* instance "uuid" is not ours: a constant-false criterion */
    ck_assert_uint_eq(q->filter->n, 5);
    struct kv_scene sc;
    blank_scene(&sc, 1);
    struct idx_match_ctx ctx;
    idx_match_ctx_mem(&ctx, ents, sizeof ents / sizeof ents[0]);
    ck_assert(!idx_filter_match(q->filter, &sc, &ctx));
    idx_match_ctx_fini(&ctx);
    idx_query_free(q);
    cJSON_Delete(j);

    /* everything peek-api.md §11 lists, with the client's shapes */
    const char *all =
        "{\"performers\":{\"value\":[\"3:x\"],\"modifier\":\"INCLUDES\"},"
        "\"studios\":{\"value\":[\"10:x\"],\"modifier\":\"INCLUDES\","
        "\"depth\":-1},"
        "\"tags\":{\"value\":[\"1:x\",\"2:x\"],\"modifier\":\"INCLUDES_ALL\","
        "\"depth\":0},"
        "\"groups\":{\"value\":[\"20:x\"],\"modifier\":\"INCLUDES\"},"
        "\"galleries\":{\"value\":[\"1:x\"],\"modifier\":\"INCLUDES\"},"
        "\"favorite\":true,\"performer_favorite\":true,"
        "\"studio_favorite\":true,\"tag_favorite\":true,"
        "\"rating100\":{\"modifier\":\"GREATER_THAN\",\"value\":60,"
        "\"value2\":null},"
        "\"duration\":{\"modifier\":\"BETWEEN\",\"value\":60,\"value2\":600},"
        "\"play_duration\":{\"modifier\":\"GREATER_THAN\",\"value\":1},"
        "\"o_counter\":{\"modifier\":\"EQUALS\",\"value\":0},"
        "\"play_count\":{\"modifier\":\"LESS_THAN\",\"value\":3},"
        "\"bitrate\":{\"modifier\":\"GREATER_THAN\",\"value\":5000000},"
        "\"framerate\":{\"modifier\":\"EQUALS\",\"value\":60},"
        "\"performer_count\":{\"modifier\":\"EQUALS\",\"value\":1},"
        "\"performer_age\":{\"modifier\":\"BETWEEN\",\"value\":18,"
        "\"value2\":25},"
        "\"tag_count\":{\"modifier\":\"GREATER_THAN\",\"value\":2},"
        "\"resolution\":{\"value\":\"STANDARD_HD\",\"modifier\":\"EQUALS\"},"
        "\"date\":{\"value\":\"2020-01-01\",\"value2\":\"2021-01-01\","
        "\"modifier\":\"BETWEEN\"},"
        "\"created_at\":{\"value\":\"2024-01-01\",\"modifier\":"
        "\"GREATER_THAN\"},"
        "\"updated_at\":{\"value\":\"2024-01-01\",\"modifier\":\"LESS_THAN\"},"
        "\"last_played_at\":{\"value\":\"2024-01-01\"},"
        "\"title\":{\"value\":\"a\",\"modifier\":\"INCLUDES\"},"
        "\"details\":{\"value\":\"a\"},"
        "\"director\":{\"value\":\"a\",\"modifier\":\"INCLUDES\"},"
        "\"video_codec\":{\"value\":\"h264\",\"modifier\":\"INCLUDES\"},"
        "\"audio_codec\":{\"value\":\"aac\",\"modifier\":\"INCLUDES\"},"
        "\"orientation\":{\"value\":[\"PORTRAIT\"]},"
        "\"instance_id\":\"peekd\"}";
    q = parse_ok("{\"page\":2,\"per_page\":25,\"sort\":\"created_at\","
                 "\"direction\":\"desc\"}",
                 all);
    ck_assert(q->desc);
    ck_assert_uint_eq(q->filter->n, 30); /* favorite=true -> const false */
    idx_query_free(q);
}
END_TEST

START_TEST(set_ids)
{
    struct idx_query *q = parse_ok(NULL, NULL);
    struct idx_error err;
    cJSON *ids = cJSON_Parse("[\"1\",\"2:uuid\",3]");
    ck_assert_int_eq(idx_query_set_ids(q, ids, &err), CM_OK);
    ck_assert_uint_eq(q->n_ids, 3);
    ck_assert_uint_eq(q->ids[0], 1);
    ck_assert_uint_eq(q->ids[1], 2);
    ck_assert_uint_eq(q->ids[2], 3);
    cJSON_Delete(ids);
    ids = cJSON_Parse("[\"1\",\"x:2\"]");
    ck_assert_int_eq(idx_query_set_ids(q, ids, &err), CM_INVALID);
    ck_assert_str_eq(err.field, "ids[1]");
    ck_assert_uint_eq(q->n_ids, 3); /* unchanged */
    cJSON_Delete(ids);
    ids = cJSON_CreateArray();
    for (int i = 0; i <= CM_MAX_IDS; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(i + 1));
    ck_assert_int_eq(idx_query_set_ids(q, ids, &err), CM_INVALID);
    ck_assert_str_eq(err.field, "ids");
    cJSON_Delete(ids);
    ck_assert_int_eq(idx_query_set_ids(q, NULL, &err), CM_OK);
    ck_assert_uint_eq(q->n_ids, 0);
    idx_query_free(q);
}
END_TEST

/* ---- Oracle -------------------------------------------------------- */

START_TEST(oracle_strings)
{
    struct kv_scene sc;
    blank_scene(&sc, 7);
    sc.title = S("The Big_Cat 50% off");
    sc.details = S("   ");

    /* EQUALS is LIKE: case-insensitive, % and _ are wildcards */
    ck_assert(m("{\"title\":{\"value\":\"the big_cat 50% off\","
                "\"modifier\":\"EQUALS\"}}",
                &sc));
    ck_assert(
        m("{\"title\":{\"value\":\"The Big%\",\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(m("{\"title\":{\"value\":\"The Big_Cat 50_ off\","
                "\"modifier\":\"EQUALS\"}}",
                &sc));
    ck_assert(
        !m("{\"title\":{\"value\":\"The Big\",\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(m("{\"title\":{\"value\":\"The Big\",\"modifier\":"
                "\"NOT_EQUALS\"}}",
                &sc));
    /* INCLUDES: words OR-ed, EXCLUDES: AND of NOT */
    ck_assert(m("{\"title\":{\"value\":\"dog  cat\",\"modifier\":"
                "\"INCLUDES\"}}",
                &sc));
    ck_assert(!m("{\"title\":{\"value\":\"dog bird\"}}", &sc));
    ck_assert(!m("{\"title\":{\"value\":\"dog cat\",\"modifier\":"
                 "\"EXCLUDES\"}}",
                 &sc));
    ck_assert(m("{\"title\":{\"value\":\"dog bird\",\"modifier\":"
                "\"EXCLUDES\"}}",
                &sc));
    /* a quoted value is one phrase */
    ck_assert(!m("{\"title\":{\"value\":\"\\\"big dog\\\"\"}}", &sc));
    ck_assert(m("{\"title\":{\"value\":\"\\\"big_cat 5\\\"\"}}", &sc));
    /* NULL vs blank */
    ck_assert(
        m("{\"details\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(m("{\"code\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(!m("{\"title\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(!m("{\"code\":{\"value\":\"x\",\"modifier\":\"NOT_EQUALS\"}}",
                 &sc)); /* NULL NOT LIKE x is NULL */
    ck_assert(
        !m("{\"code\":{\"value\":\"x\",\"modifier\":\"EXCLUDES\"}}", &sc));
    ck_assert(
        m("{\"details\":{\"value\":\"x\",\"modifier\":\"EXCLUDES\"}}", &sc));
    /* regex: POSIX ERE; NOT also matches NULL */
    ck_assert(m("{\"title\":{\"value\":\"^The [A-Z]ig\","
                "\"modifier\":\"MATCHES_REGEX\"}}",
                &sc));
    ck_assert(!m("{\"title\":{\"value\":\"^the\","
                 "\"modifier\":\"MATCHES_REGEX\"}}",
                 &sc)); /* case-sensitive like Go */
    ck_assert(m("{\"code\":{\"value\":\"a\","
                "\"modifier\":\"NOT_MATCHES_REGEX\"}}",
                &sc));
    ck_assert(!m("{\"code\":{\"value\":\"a\","
                 "\"modifier\":\"MATCHES_REGEX\"}}",
                 &sc));

    /* file columns: no file -> only IS_NULL (and path never) */
    ck_assert(
        m("{\"video_codec\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(!m("{\"video_codec\":{\"value\":\"a\",\"modifier\":"
                 "\"NOT_MATCHES_REGEX\"}}",
                 &sc));
    ck_assert(!m("{\"path\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    struct kv_file f = one_file(1920, 1080);
    sc.files = &f;
    sc.n_files = 1;
    ck_assert(m("{\"path\":{\"value\":\"vids/foo\"}}", &sc));
    ck_assert(m("{\"path\":{\"value\":\"%/foo_bar 100%.mp4\","
                "\"modifier\":\"EQUALS\"}}",
                &sc));
    /* no ESCAPE: a backslash is a literal character */
    ck_assert(!m("{\"path\":{\"value\":\"%/foo_bar 100\\\\%.mp4\","
                 "\"modifier\":\"EQUALS\"}}",
                 &sc));
    ck_assert(m("{\"oshash\":{\"value\":\"0123456789ABCDEF\","
                "\"modifier\":\"EQUALS\"}}",
                &sc));
    ck_assert(
        m("{\"checksum\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(!m("{\"checksum\":{\"value\":\"a\",\"modifier\":"
                 "\"NOT_EQUALS\"}}",
                 &sc));

    /* urls: rows; EXCLUDES = no url contains the whole value */
    struct kv_str urls[] = {S("https://a.example/x"), S("https://b.test")};
    ck_assert(m("{\"url\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(
        m("{\"url\":{\"value\":\"a b\",\"modifier\":\"EXCLUDES\"}}", &sc));
    sc.urls = urls;
    sc.n_urls = 2;
    ck_assert(m("{\"url\":{\"value\":\"b.test\",\"modifier\":"
                "\"NOT_EQUALS\"}}",
                &sc)); /* the other row differs */
    ck_assert(!m("{\"url\":{\"value\":\"example\",\"modifier\":"
                 "\"EXCLUDES\"}}",
                 &sc));
    ck_assert(m("{\"url\":{\"value\":\"example nothere\",\"modifier\":"
                "\"EXCLUDES\"}}",
                &sc)); /* whole value, not split */
    ck_assert(!m("{\"url\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));

    /* captions: EXCLUDES has no wildcards */
    struct kv_caption caps[] = {{S("en"), S("srt")}};
    sc.captions = caps;
    sc.n_captions = 1;
    ck_assert(
        m("{\"captions\":{\"value\":\"e\",\"modifier\":\"EXCLUDES\"}}", &sc));
    ck_assert(!m("{\"captions\":{\"value\":\"EN\",\"modifier\":"
                 "\"EXCLUDES\"}}",
                 &sc));
    ck_assert(m("{\"captions\":{\"value\":\"e\"}}", &sc));

    /* stash ids: endpoint selects rows */
    struct kv_stash_id sids[] = {
        {S("https://stashdb.org/graphql"), S("aaaa-1")},
        {S("https://other/graphql"), S("bbbb-2")}};
    ck_assert(m("{\"stash_id_endpoint\":{\"endpoint\":\"https://x\","
                "\"modifier\":\"IS_NULL\"}}",
                &sc));
    sc.stash_ids = sids;
    sc.n_stash_ids = 2;
    ck_assert(m("{\"stash_id_endpoint\":{\"endpoint\":"
                "\"https://stashdb.org/graphql\",\"stash_id\":\"AAAA-1\","
                "\"modifier\":\"EQUALS\"}}",
                &sc));
    ck_assert(!m("{\"stash_id_endpoint\":{\"endpoint\":"
                 "\"https://stashdb.org/graphql\",\"stash_id\":\"bbbb-2\","
                 "\"modifier\":\"EQUALS\"}}",
                 &sc));
    ck_assert(m("{\"stash_id_endpoint\":{\"stash_id\":\"bbbb-2\","
                "\"modifier\":\"EQUALS\"}}",
                &sc));
    ck_assert(m("{\"stash_id_endpoint\":{\"endpoint\":\"https://none\","
                "\"modifier\":\"IS_NULL\"}}",
                &sc));
    ck_assert(!m("{\"stash_id_endpoint\":{\"modifier\":\"IS_NULL\"}}", &sc));
}
END_TEST

START_TEST(oracle_numbers)
{
    struct kv_scene sc;
    blank_scene(&sc, 42);
    ck_assert(m("{\"id\":{\"value\":42,\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(m("{\"rating100\":{\"value\":0,\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(!m("{\"rating100\":{\"value\":50,\"modifier\":"
                 "\"NOT_EQUALS\"}}",
                 &sc));
    ck_assert(!m("{\"duration\":{\"value\":0,\"modifier\":\"NOT_EQUALS\"}}",
                 &sc)); /* no file: NULL */
    ck_assert(m("{\"o_counter\":{\"value\":0,\"modifier\":\"EQUALS\"}}",
                &sc)); /* counts never NULL */
    ck_assert(
        !m("{\"tag_count\":{\"value\":0,\"modifier\":\"IS_NULL\"}}", &sc));
    sc.rating100 = 80;
    ck_assert(m("{\"rating100\":{\"value\":80,\"value2\":90,"
                "\"modifier\":\"BETWEEN\"}}",
                &sc));
    ck_assert(m("{\"rating100\":{\"value\":70,\"value2\":80,"
                "\"modifier\":\"BETWEEN\"}}",
                &sc));
    ck_assert(!m("{\"rating100\":{\"value\":70,\"value2\":80,"
                 "\"modifier\":\"NOT_BETWEEN\"}}",
                 &sc));
    ck_assert(!m("{\"rating100\":{\"value\":70,\"modifier\":\"BETWEEN\"}}",
                 &sc)); /* value2 defaults to 0 */
    ck_assert(m("{\"rating100\":{\"value\":79}}", &sc)); /* GREATER_THAN */

    struct kv_file f = one_file(1080, 1920); /* duration 59.9, 29.5 fps */
    sc.files = &f;
    sc.n_files = 1;
    ck_assert(m("{\"duration\":{\"value\":59,\"modifier\":\"EQUALS\"}}",
                &sc)); /* cast truncates */
    ck_assert(m("{\"framerate\":{\"value\":30,\"modifier\":\"EQUALS\"}}",
                &sc)); /* ROUND(29.5) = 30 */
    ck_assert(
        m("{\"bitrate\":{\"value\":5000000,\"modifier\":\"EQUALS\"}}", &sc));
    sc.play_duration = 12.99;
    ck_assert(
        m("{\"play_duration\":{\"value\":12,\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(m("{\"interactive_speed\":{\"value\":0,\"modifier\":"
                "\"IS_NULL\"}}",
                &sc));
    /* phash: integer comparison of the signed value */
    f.phash = S("8000000000000001");
    ck_assert(m("{\"phash\":{\"value\":\"8000000000000001\"}}", &sc));
    ck_assert(m("{\"phash\":{\"value\":\"1\",\"modifier\":\"LESS_THAN\"}}",
                &sc)); /* negative as int64 */
    f.phash = NUL_STR;
    ck_assert(m("{\"phash\":{\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(
        !m("{\"phash\":{\"value\":\"1\",\"modifier\":\"NOT_EQUALS\"}}", &sc));
}
END_TEST

START_TEST(oracle_resolution_orientation)
{
    struct kv_scene sc;
    blank_scene(&sc, 1);
    ck_assert(!m("{\"resolution\":{\"value\":\"LOW\",\"modifier\":"
                 "\"NOT_EQUALS\"}}",
                 &sc)); /* no file */
    ck_assert(!m("{\"orientation\":{\"value\":[\"SQUARE\"]}}", &sc));
    ck_assert(m("{\"orientation\":{\"value\":[]}}", &sc));
    struct kv_file f = one_file(3840, 2000); /* short side 2000 */
    sc.files = &f;
    sc.n_files = 1;
    ck_assert(m("{\"resolution\":{\"value\":\"VR_HD\"}}", &sc));
    ck_assert(m("{\"resolution\":{\"value\":\"FOUR_K\"}}", &sc));
    ck_assert(m("{\"resolution\":{\"value\":\"QUAD_HD\",\"modifier\":"
                "\"GREATER_THAN\"}}",
                &sc));
    ck_assert(!m("{\"resolution\":{\"value\":\"VR_HD\",\"modifier\":"
                 "\"GREATER_THAN\"}}",
                 &sc));
    f.width = 2200;
    f.height = 4000; /* 2200: FOUR_K, above VR_HD */
    ck_assert(m("{\"resolution\":{\"value\":\"VR_HD\",\"modifier\":"
                "\"GREATER_THAN\"}}",
                &sc));
    ck_assert(!m("{\"resolution\":{\"value\":\"VR_HD\"}}", &sc));
    ck_assert(m("{\"resolution\":{\"value\":\"4K\"}}", &sc));
    ck_assert(m("{\"resolution\":{\"value\":\"FIVE_K\",\"modifier\":"
                "\"LESS_THAN\"}}",
                &sc));
    ck_assert(m("{\"resolution\":{\"value\":\"FIVE_K\",\"modifier\":"
                "\"NOT_EQUALS\"}}",
                &sc));
    ck_assert(
        m("{\"orientation\":{\"value\":[\"SQUARE\",\"PORTRAIT\"]}}", &sc));
    ck_assert(!m("{\"orientation\":{\"value\":[\"LANDSCAPE\"]}}", &sc));
    /* every band boundary */
    for (int r = 0; r < IDX_RES_COUNT; r++) {
        int32_t lo, hi;
        idx_resolution_band((enum idx_resolution)r, &lo, &hi);
        ck_assert_int_le(lo, hi);
        struct idx_crit c = {.field = IDX_F_RESOLUTION,
                             .mod = IDX_MOD_EQUALS,
                             .res = (enum idx_resolution)r};
        struct idx_filter flt = {.crits = &c, .n = 1};
        struct idx_match_ctx ctx;
        idx_match_ctx_mem(&ctx, NULL, 0);
        int32_t probes[] = {lo - 1, lo, hi, hi + 1};
        for (int k = 0; k < 4; k++) {
            f.width = probes[k];
            f.height = 10000;
            ck_assert_int_eq(idx_filter_match(&flt, &sc, &ctx),
                             k == 1 || k == 2);
        }
    }
}
END_TEST

START_TEST(oracle_dates)
{
    struct kv_scene sc;
    blank_scene(&sc, 1);
    ck_assert(m("{\"date\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(
        !m("{\"date\":{\"value\":\"2000\",\"modifier\":\"NOT_EQUALS\"}}", &sc));
    sc.date = (struct kv_date){2020, 0, 0}; /* year precision */
    ck_assert(
        m("{\"date\":{\"value\":\"2020\",\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(m("{\"date\":{\"value\":\"2020-01-01\",\"modifier\":"
                "\"EQUALS\"}}",
                &sc));
    ck_assert(!m("{\"date\":{\"value\":\"2020\"}}", &sc)); /* > 2020-01-01 */
    sc.date = (struct kv_date){2020, 5, 0};
    ck_assert(m("{\"date\":{\"value\":\"2020\"}}", &sc));
    ck_assert(
        m("{\"date\":{\"value\":\"2020-05\",\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(m("{\"date\":{\"value\":\"2020-05-02\",\"modifier\":"
                "\"LESS_THAN\"}}",
                &sc));
    ck_assert(m("{\"date\":{\"value\":\"2020-01-01\",\"value2\":\"2020-05-01\","
                "\"modifier\":\"BETWEEN\"}}",
                &sc));
    ck_assert(!m("{\"date\":{\"value\":\"2020-01-01\",\"value2\":"
                 "\"2020-04-30\",\"modifier\":\"BETWEEN\"}}",
                 &sc));
    /* no value2: between value and tomorrow */
    ck_assert(
        m("{\"date\":{\"value\":\"2019\",\"modifier\":\"BETWEEN\"}}", &sc));

    /* timestamps: plain text comparison */
    sc.created_at = S("2025-12-18T19:41:58-08:00");
    ck_assert(m("{\"created_at\":{\"value\":\"2025-12-18T19:41:58\"}}",
                &sc)); /* longer string, same prefix: greater */
    ck_assert(
        !m("{\"created_at\":{\"value\":\"2025-12-18T19:41:58.999Z\"}}", &sc));
    ck_assert(m("{\"created_at\":{\"value\":\"2025-12-18T19:41:58.999-\"}}",
                &sc) == false);
    ck_assert(
        m("{\"updated_at\":{\"value\":\"\",\"modifier\":\"IS_NULL\"}}", &sc));
    /* last_played_at: never played = datetime(0) */
    ck_assert(!m("{\"last_played_at\":{\"value\":\"\",\"modifier\":"
                 "\"IS_NULL\"}}",
                 &sc));
    ck_assert(m("{\"last_played_at\":{\"value\":\"2000\",\"modifier\":"
                "\"LESS_THAN\"}}",
                &sc));
    sc.last_played_at = S("2024-03-01T10:00:00Z");
    ck_assert(!m("{\"last_played_at\":{\"value\":\"2000\",\"modifier\":"
                 "\"LESS_THAN\"}}",
                 &sc));
    ck_assert(m("{\"last_played_at\":{\"value\":\"2024-03\"}}", &sc));
}
END_TEST

START_TEST(oracle_sets)
{
    struct kv_scene sc;
    blank_scene(&sc, 1);
    struct kv_ref tags[] = {{.id = 6}, {.id = 4}};
    sc.tags = tags;
    sc.n_tags = 2;
    /* depth through the DAG: 6 -> 3 -> 2 -> 1, 4 -> {1, 5} */
    ck_assert(!m("{\"tags\":{\"value\":[\"1\"]}}", &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"1\"],\"depth\":1}}", &sc)); /* 4 */
    ck_assert(m("{\"tags\":{\"value\":[\"5\"],\"depth\":1}}", &sc));
    ck_assert(!m("{\"tags\":{\"value\":[\"2\"],\"depth\":1}}", &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"2\"],\"depth\":2}}", &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"2\"],\"depth\":-1}}", &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"2\",\"5\"],\"modifier\":"
                "\"INCLUDES_ALL\",\"depth\":-1}}",
                &sc));
    ck_assert(!m("{\"tags\":{\"value\":[\"2\",\"5\"],\"modifier\":"
                 "\"INCLUDES_ALL\"}}",
                 &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"4\",\"6\"],\"modifier\":"
                "\"INCLUDES_ALL\"}}",
                &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"4\",\"6:x\"],\"modifier\":"
                "\"EQUALS\"}}",
                &sc));
    ck_assert(
        !m("{\"tags\":{\"value\":[\"4\"],\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(!m("{\"tags\":{\"value\":[\"4\",\"6\",\"1\"],\"modifier\":"
                 "\"EQUALS\"}}",
                 &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"4\",\"4\",\"6\"],\"modifier\":"
                "\"EQUALS\"}}",
                &sc)); /* deduplicated */
    ck_assert(!m("{\"tags\":{\"value\":[\"1\"],\"modifier\":\"EXCLUDES\","
                 "\"depth\":-1}}",
                 &sc));
    ck_assert(
        m("{\"tags\":{\"value\":[\"1\"],\"modifier\":\"EXCLUDES\"}}", &sc));
    ck_assert(!m("{\"tags\":{\"value\":[\"6\"],\"excludes\":[\"4\"]}}", &sc));
    ck_assert(m("{\"tags\":{\"value\":[],\"modifier\":\"INCLUDES\"}}",
                &sc)); /* no clause */
    ck_assert(!m("{\"tags\":{\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(m("{\"tags\":{\"modifier\":\"NOT_NULL\"}}", &sc));

    /* studios: tree 10 <- 11 <- 12 */
    ck_assert(m("{\"studios\":{\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(m("{\"studios\":{\"value\":[\"10\"],\"modifier\":"
                "\"EXCLUDES\",\"depth\":-1}}",
                &sc)); /* a NULL studio is kept */
    sc.studio = (struct kv_ref){.id = 12, .favorite = true};
    ck_assert(m("{\"studios\":{\"value\":[\"10\"],\"depth\":-1}}", &sc));
    ck_assert(!m("{\"studios\":{\"value\":[\"10\"],\"depth\":1}}", &sc));
    ck_assert(
        m("{\"studios\":{\"value\":[\"12\"],\"modifier\":\"EQUALS\"}}", &sc));
    ck_assert(!m("{\"studios\":{\"value\":[\"10\",\"12\"],\"modifier\":"
                 "\"EQUALS\",\"depth\":-1}}",
                 &sc)); /* one studio cannot be two */
    ck_assert(!m("{\"studios\":{\"value\":[\"11\"],\"modifier\":"
                 "\"NOT_EQUALS\",\"depth\":1}}",
                 &sc));
    ck_assert(m("{\"studio_favorite\":true}", &sc));

    /* groups 20 <- 21, movies = groups depth 0 */
    struct kv_ref groups[] = {{.id = 21}};
    sc.groups = groups;
    sc.n_groups = 1;
    ck_assert(m("{\"groups\":{\"value\":[\"20\"],\"depth\":1}}", &sc));
    ck_assert(!m("{\"movies\":{\"value\":[\"20\"]}}", &sc));
    ck_assert(m("{\"movies\":{\"value\":[\"21\"]}}", &sc));

    /* performers and performer tags */
    struct kv_ref perf[] = {{.id = 30, .favorite = false}, {.id = 31}};
    sc.performers = perf;
    sc.n_performers = 2;
    ck_assert(m("{\"performers\":{\"value\":[\"30\",\"31\"],\"modifier\":"
                "\"INCLUDES_ALL\"}}",
                &sc));
    ck_assert(!m("{\"performers\":{\"value\":[\"30\",\"32\"],\"modifier\":"
                 "\"INCLUDES_ALL\"}}",
                 &sc));
    ck_assert(m("{\"performers\":{\"value\":[\"30\",\"31\"],\"modifier\":"
                "\"EQUALS\"}}",
                &sc));
    ck_assert(!m("{\"performers\":{\"value\":[\"30\"],\"modifier\":"
                 "\"EQUALS\"}}",
                 &sc));
    ck_assert(!m("{\"performers\":{\"value\":[\"32\"],\"excludes\":[\"31\"],"
                 "\"modifier\":\"INCLUDES\"}}",
                 &sc));
    ck_assert(m("{\"performer_tags\":{\"value\":[\"1\"],\"depth\":1}}", &sc));
    ck_assert(!m("{\"performer_tags\":{\"value\":[\"1\"]}}", &sc));
    ck_assert(m("{\"performer_tags\":{\"modifier\":\"IS_NULL\"}}",
                &sc)); /* 31 has no tags */
    ck_assert(m("{\"performer_tags\":{\"modifier\":\"NOT_NULL\"}}", &sc));
    ck_assert(!m("{\"performer_favorite\":true}", &sc));
    ck_assert(m("{\"performer_favorite\":false}", &sc));
    perf[1].favorite = true;
    ck_assert(m("{\"performer_favorite\":true}", &sc));

    /* inherited tags (Peek's opt-in): performer 30 -> tag 2, studio 12 ->
     * none, group 21 -> tag 4; the direct criterion ignores them */
    sc.n_tags = 0;
    ck_assert(!m("{\"tags\":{\"value\":[\"2\"]}}", &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"2\"],\"inherited\":true}}", &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"2\",\"4\"],\"modifier\":"
                "\"INCLUDES_ALL\",\"inherited\":true}}",
                &sc));
    ck_assert(m("{\"tags\":{\"value\":[\"1\"],\"depth\":1,"
                "\"inherited\":true}}",
                &sc));
    ck_assert(m("{\"tags\":{\"modifier\":\"IS_NULL\"}}", &sc));
    ck_assert(
        !m("{\"tags\":{\"modifier\":\"IS_NULL\",\"inherited\":true}}", &sc));
    sc.studio.id = 10; /* studio 10 carries tag 6 */
    ck_assert(m("{\"tags\":{\"value\":[\"3\"],\"depth\":1,"
                "\"inherited\":true}}",
                &sc));

    /* Peek's scene ids */
    ck_assert(m("{\"ids\":[\"1:x\",\"9\"]}", &sc));
    ck_assert(
        !m("{\"ids\":{\"value\":[\"1\"],\"modifier\":\"EXCLUDES\"}}", &sc));
}
END_TEST

START_TEST(oracle_misc)
{
    struct kv_scene sc;
    blank_scene(&sc, 1);
    ck_assert(m("{\"is_missing\":\"url\"}", &sc));
    ck_assert(m("{\"is_missing\":\"title\"}", &sc));
    ck_assert(m("{\"is_missing\":\"rating\"}", &sc));
    ck_assert(m("{\"is_missing\":\"phash\"}", &sc));
    ck_assert(m("{\"is_missing\":\"movie\"}", &sc));
    ck_assert(m("{\"is_missing\":\"\"}", &sc));
    sc.title = S(" ");
    ck_assert(m("{\"is_missing\":\"title\"}", &sc));
    sc.title = S("x");
    ck_assert(!m("{\"is_missing\":\"title\"}", &sc));
    ck_assert(m("{\"has_markers\":\"false\"}", &sc));
    struct kv_marker mk = {.id = 1, .title = S("Intro")};
    sc.markers = &mk;
    sc.n_markers = 1;
    ck_assert(m("{\"has_markers\":\"true\"}", &sc));
    ck_assert(!m("{\"organized\":true}", &sc));
    ck_assert(m("{\"organized\":false}", &sc));
    ck_assert(!m("{\"interactive\":false}", &sc)); /* no file: NULL */
    struct kv_file f = one_file(100, 100);
    sc.files = &f;
    sc.n_files = 1;
    ck_assert(m("{\"interactive\":false}", &sc));
    ck_assert(!m("{\"favorite\":true}", &sc));
    ck_assert(m("{\"favorite\":false}", &sc));
    ck_assert(m("{\"instance_id\":\"\"}", &sc));
    ck_assert(!m("{\"instance_id\":\"other\"}", &sc));
    ck_assert(!m("{\"tag_favorite\":true}", &sc));
    ck_assert(m("{\"tag_favorite\":false}", &sc));

    /* performer_age = cast(Y.MMDD(date) - Y.MMDD(birth) as int) */
    struct kv_ref perf[] = {{.id = 30}, {.id = 32}};
    sc.performers = perf;
    sc.n_performers = 2;
    ck_assert(!m("{\"performer_age\":{\"value\":0,\"modifier\":"
                 "\"NOT_NULL\"}}",
                 &sc)); /* no scene date */
    sc.date = (struct kv_date){2020, 5, 14};
    ck_assert(m("{\"performer_age\":{\"value\":29}}", &sc)); /* EQUALS */
    sc.date = (struct kv_date){2020, 5, 15};
    ck_assert(m("{\"performer_age\":{\"value\":30}}", &sc));
    ck_assert(!m("{\"performer_age\":{\"value\":0,\"modifier\":"
                 "\"IS_NULL\"}}",
                 &sc));
    perf[0].id = 31; /* born "2000" = 2000-01-01 */
    ck_assert(m("{\"performer_age\":{\"value\":20}}", &sc));
}
END_TEST

START_TEST(oracle_and_or_not)
{
    struct kv_scene sc;
    blank_scene(&sc, 1);
    sc.title = S("alpha");
    sc.organized = true;
    ck_assert(m("{\"title\":{\"value\":\"alpha\"},\"AND\":{\"organized\":"
                "true}}",
                &sc));
    ck_assert(!m("{\"title\":{\"value\":\"alpha\"},\"AND\":{\"organized\":"
                 "false}}",
                 &sc));
    ck_assert(m("{\"title\":{\"value\":\"beta\"},\"OR\":{\"organized\":"
                "true}}",
                &sc));
    ck_assert(!m("{\"title\":{\"value\":\"beta\"},\"OR\":{\"organized\":"
                 "false}}",
                 &sc));
    ck_assert(!m("{\"title\":{\"value\":\"alpha\"},\"NOT\":{\"organized\":"
                 "true}}",
                 &sc));
    ck_assert(m("{\"title\":{\"value\":\"alpha\"},\"NOT\":{\"organized\":"
                "false}}",
                &sc));
    /* NOT at the top level, without own criteria */
    ck_assert(!m("{\"NOT\":{\"organized\":true}}", &sc));
    ck_assert(m("{\"NOT\":{\"organized\":false}}", &sc));
    /* OR without own criteria is just the sub-filter */
    ck_assert(!m("{\"OR\":{\"organized\":false}}", &sc));
    /* an empty sub-filter adds no clause */
    ck_assert(!m("{\"title\":{\"value\":\"beta\"},\"OR\":{}}", &sc));
    ck_assert(m("{\"NOT\":{}}", &sc));
    ck_assert(m("{\"NOT\":{\"tags\":{\"value\":[]}}}", &sc));
    /* chains: beta OR (gamma OR organized) */
    ck_assert(m("{\"title\":{\"value\":\"beta\"},\"OR\":{\"title\":{\"value\":"
                "\"gamma\"},\"OR\":{\"organized\":true}}}",
                &sc));
    /* NOT (x AND NOT y) */
    ck_assert(m("{\"NOT\":{\"organized\":true,\"NOT\":{\"title\":{\"value\":"
                "\"alp\"}}}}",
                &sc));
    struct idx_query *q = parse_ok(NULL, "{\"NOT\":{}}");
    ck_assert_ptr_null(q->filter);
    idx_query_free(q);
}
END_TEST

START_TEST(oracle_q)
{
    struct kv_scene sc;
    blank_scene(&sc, 1);
    sc.title = S("Summer Trip");
    sc.details = S("beach day");
    ck_assert(mq("", &sc));
    ck_assert(mq("summer", &sc));
    ck_assert(mq("summer beach", &sc));
    ck_assert(!mq("summer winter", &sc));
    ck_assert(mq("winter OR beach", &sc));
    ck_assert(!mq("summer -beach", &sc));
    ck_assert(mq("\"r tr\"", &sc));
    ck_assert(!mq("\"trip summer\"", &sc));
    ck_assert(mq("s_mmer", &sc)); /* LIKE wildcard */
    struct kv_file files[2] = {one_file(10, 10), one_file(10, 10)};
    files[0].phash = S("ffffffffffffffff"); /* stored as int64 -1 */
    files[1].path = S("/other/clip.mkv");
    files[1].oshash = NUL_STR;
    sc.files = files;
    sc.n_files = 2;
    ck_assert(mq("foo_bar", &sc));
    ck_assert(mq("clip.mkv", &sc)); /* any file */
    ck_assert(mq("0123456789", &sc));
    /* "-1" is a must-not of "1": the first file's path has a 1, but the
     * row of the second file has none (Stash's row semantics) */
    ck_assert(mq("-1", &sc));
    ck_assert(!mq("-trip", &sc)); /* the title is in every row */
    ck_assert(mq("\"-1\"", &sc)); /* phash as signed decimal */
    ck_assert(!mq("ffffffff", &sc));
    struct kv_marker mk[2] = {{.id = 1, .title = S("Sunset")},
                              {.id = 2, .title = S("Waves")}};
    sc.markers = mk;
    sc.n_markers = 2;
    ck_assert(mq("sunset", &sc));
    /* Stash's row semantics: both terms must hit the same row */
    ck_assert(!mq("sunset waves", &sc));
    ck_assert(mq("summer waves", &sc));
    /* must-not on one row is enough (another marker lacks it) */
    ck_assert(mq("-sunset", &sc));
    ck_assert(!mq("-summer", &sc));
}
END_TEST

/* peekd's name columns: code, studio, performer and tag names (the names
 * embedded in the record's refs), present on every row. */
START_TEST(oracle_q_names)
{
    struct kv_scene sc;
    struct kv_ref perfs[2], tags[2];
    memset(perfs, 0, sizeof perfs);
    memset(tags, 0, sizeof tags);
    blank_scene(&sc, 1);
    sc.title = S("Summer Trip");
    ck_assert(!mq("alice", &sc));
    ck_assert(!mq("ABC-123", &sc));
    sc.code = S("ABC-123");
    ck_assert(mq("abc-123", &sc));
    ck_assert(mq("c-1", &sc));
    ck_assert(mq("summer abc", &sc)); /* title and code on the same row */
    ck_assert(!mq("-abc", &sc));
    perfs[0] = (struct kv_ref){.id = 30, .name = S("Alice Wonder")};
    perfs[1] = (struct kv_ref){.id = 31, .name = NUL_STR};
    sc.performers = perfs;
    sc.n_performers = 2;
    ck_assert(mq("alice", &sc));
    ck_assert(mq("\"ce wo\"", &sc)); /* phrase inside one name */
    ck_assert(mq("al_ce", &sc));     /* LIKE wildcard */
    ck_assert(!mq("-wonder", &sc));
    ck_assert(mq("bob OR alice", &sc));
    tags[0] = (struct kv_ref){.id = 1, .name = S("Beach")};
    tags[1] = (struct kv_ref){.id = 2, .name = S("Outdoor")};
    sc.tags = tags;
    sc.n_tags = 2;
    ck_assert(mq("outdoor", &sc));
    ck_assert(mq("beach outdoor alice abc trip", &sc)); /* across names */
    ck_assert(!mq("beach indoor", &sc));
    ck_assert(!mq("-door", &sc));
    /* The studio name counts only when the scene has a studio. */
    sc.studio.name = S("Sunny Studio");
    ck_assert(!mq("sunny", &sc));
    sc.studio.id = 10;
    ck_assert(mq("sunny", &sc));
    ck_assert(!mq("-studio", &sc));
    /* Names are on every row: a marker-only word and a name together. */
    struct kv_marker mk[2] = {{.id = 1, .title = S("Sunset")},
                              {.id = 2, .title = S("Waves")}};
    sc.markers = mk;
    sc.n_markers = 2;
    ck_assert(mq("sunset alice", &sc));
    ck_assert(!mq("sunset waves", &sc)); /* still one marker per row */
    ck_assert(mq("-sunset", &sc));       /* the Waves row lacks it */
    ck_assert(!mq("-sunny", &sc));       /* a name is in every row */
    /* Group names and URLs are not searched. */
    struct kv_ref grp = {.id = 20, .name = S("Holiday Series")};
    sc.groups = &grp;
    sc.n_groups = 1;
    ck_assert(!mq("holiday", &sc));
}
END_TEST

/* ---- SQLite cross-checks ------------------------------------------- */

static sqlite3 *db_open(void)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    return db;
}

static int sql_int(sqlite3 *db, const char *sql, const char *a, int an,
                   const char *b, int bn)
{
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (a)
        sqlite3_bind_text(st, 1, a, an, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(st, 2, b, bn, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int r = sqlite3_column_type(st, 0) == SQLITE_NULL
                ? -999
                : sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return r;
}

static unsigned rng_state = 12345;
static unsigned rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 16) & 0x7fff;
}

static int rand_str(char *out, int max, bool pattern)
{
    static const char alpha[] = "aAbB%_ \xc3\xa9\xc3\x89\xe2\x82\xac\xff";
    int n = (int)(rnd() % (unsigned)max);
    for (int i = 0; i < n; i++) {
        char c = alpha[rnd() % (sizeof alpha - 1)];
        if (!pattern && (c == '%' || c == '_') && rnd() % 2)
            c = 'a';
        out[i] = c;
    }
    out[n] = '\0';
    return n;
}

START_TEST(sqlite_like_differential)
{
    sqlite3 *db = db_open();
    char p[16], s[16];
    int agree = 0;
    for (int i = 0; i < 20000; i++) {
        int pn = rand_str(p, 8, true), sn = rand_str(s, 10, false);
        int want = sql_int(db, "SELECT ?2 LIKE ?1", p, pn, s, sn);
        bool got = idx_like(p, (size_t)pn, s, (size_t)sn);
        ck_assert_msg(want == (int)got, "LIKE '%s' on '%s': sqlite %d us %d", p,
                      s, want, got);
        /* the INCLUDES form '%' || w || '%' */
        want = sql_int(db, "SELECT ?2 LIKE '%' || ?1 || '%'", p, pn, s, sn);
        struct idx_crit c = {.field = IDX_F_TITLE, .mod = IDX_MOD_INCLUDES};
        struct idx_str w = {p, (size_t)pn};
        c.words = &w;
        c.n_words = 1;
        struct idx_filter f = {.crits = &c, .n = 1};
        struct kv_scene sc;
        blank_scene(&sc, 1);
        sc.title = (struct kv_str){s, (uint32_t)sn};
        struct idx_match_ctx ctx;
        idx_match_ctx_mem(&ctx, NULL, 0);
        ck_assert_int_eq(want, idx_filter_match(&f, &sc, &ctx));
        agree++;
    }
    ck_assert_int_eq(agree, 20000);
    sqlite3_close(db);
}
END_TEST

START_TEST(sqlite_numeric_differential)
{
    sqlite3 *db = db_open();
    char buf[256];
    for (int i = 0; i < 3000; i++) {
        int v = (int)(rnd() % 21) - 10, a = (int)(rnd() % 21) - 10,
            b = (int)(rnd() % 21) - 10;
        snprintf(buf, sizeof buf, "SELECT %d BETWEEN %d AND %d", v, a, b);
        int want = sql_int(db, buf, NULL, 0, NULL, 0);
        struct idx_crit c = {
            .field = IDX_F_O_COUNTER, .mod = IDX_MOD_BETWEEN, .i = a, .i2 = b};
        struct idx_filter f = {.crits = &c, .n = 1};
        struct kv_scene sc;
        blank_scene(&sc, 1);
        sc.o_counter = v;
        struct idx_match_ctx ctx;
        idx_match_ctx_mem(&ctx, NULL, 0);
        ck_assert_int_eq(want, idx_filter_match(&f, &sc, &ctx));
        c.mod = IDX_MOD_NOT_BETWEEN;
        ck_assert_int_eq(!want, idx_filter_match(&f, &sc, &ctx));

        /* framerate: cast(ROUND(x) as int) */
        double fr = (double)(rnd() % 2000) / 40.0 + (rnd() % 2 ? 0.0 : 1e-9);
        snprintf(buf, sizeof buf, "SELECT cast(ROUND(%.17g) as int)", fr);
        want = sql_int(db, buf, NULL, 0, NULL, 0);
        struct kv_file file = one_file(10, 10);
        file.frame_rate = fr;
        sc.files = &file;
        sc.n_files = 1;
        c = (struct idx_crit){
            .field = IDX_F_FRAMERATE, .mod = IDX_MOD_EQUALS, .i = want};
        ck_assert_msg(idx_filter_match(&f, &sc, &ctx), "framerate %.17g", fr);
        c.i = want + 1;
        ck_assert(!idx_filter_match(&f, &sc, &ctx));
    }
    sqlite3_close(db);
}
END_TEST

START_TEST(sqlite_performer_age_differential)
{
    sqlite3 *db = db_open();
    for (int i = 0; i < 3000; i++) {
        char sd[16], bd[16];
        int sy = 1950 + (int)(rnd() % 80), by = 1940 + (int)(rnd() % 80);
        int sm = 1 + (int)(rnd() % 12), bm = 1 + (int)(rnd() % 12);
        int sdd = 1 + (int)(rnd() % 28), bdd = 1 + (int)(rnd() % 28);
        snprintf(sd, sizeof sd, "%04d-%02d-%02d", sy, sm, sdd);
        snprintf(bd, sizeof bd, "%04d-%02d-%02d", by, bm, bdd);
        int want = sql_int(db,
                           "SELECT cast(strftime('%Y.%m%d', ?1) - "
                           "strftime('%Y.%m%d', ?2) as int)",
                           sd, -1, bd, -1);
        struct kv_entity perf = {
            .type = KV_PERFORMER, .id = 1, .birthdate = {bd, 10}};
        struct kv_ref ref = {.id = 1};
        struct kv_scene sc;
        blank_scene(&sc, 1);
        sc.date = (struct kv_date){(int16_t)sy, (uint8_t)sm, (uint8_t)sdd};
        sc.performers = &ref;
        sc.n_performers = 1;
        struct idx_crit c = {
            .field = IDX_F_PERFORMER_AGE, .mod = IDX_MOD_EQUALS, .i = want};
        struct idx_filter f = {.crits = &c, .n = 1};
        struct idx_match_ctx ctx;
        idx_match_ctx_mem(&ctx, &perf, 1);
        ck_assert_msg(idx_filter_match(&f, &sc, &ctx), "age %s - %s = %d", sd,
                      bd, want);
        c.mod = IDX_MOD_NOT_EQUALS;
        ck_assert(!idx_filter_match(&f, &sc, &ctx));
    }
    sqlite3_close(db);
}
END_TEST

/* The kv-backed context gives the same answers as the in-memory one. */
START_TEST(oracle_kv_context)
{
    static const char *const filters[] = {
        "{\"tags\":{\"value\":[\"1\"],\"depth\":-1}}",
        "{\"tags\":{\"value\":[\"2\",\"5\"],\"modifier\":"
        "\"INCLUDES_ALL\",\"depth\":2,\"inherited\":true}}",
        "{\"studios\":{\"value\":[\"10\"],\"depth\":1}}",
        "{\"groups\":{\"value\":[\"20\"],\"depth\":-1,"
        "\"excludes\":[\"21\"]}}",
        "{\"performer_tags\":{\"value\":[\"1\"],\"depth\":-1}}",
        "{\"performer_tags\":{\"modifier\":\"IS_NULL\"}}",
        "{\"performer_age\":{\"value\":20,\"modifier\":\"GREATER_THAN\"}}",
    };
    struct kv_options opt = {.map_size = 64 * CM_MiB, .no_sync = 1};
    struct kv_store *st = NULL;
    struct kv_txn *t = NULL;
    char err[256];
    ck_assert_int_eq(kv_open(tu_tmpdir(), &opt, &st, err, sizeof err), CM_OK);
    ck_assert_int_eq(kv_write_begin(st, &t), CM_OK);
    for (size_t i = 0; i < sizeof ents / sizeof ents[0]; i++)
        ck_assert_int_eq(kv_entity_put(t, &ents[i]), CM_OK);
    ck_assert_int_eq(kv_commit(t), CM_OK);
    ck_assert_int_eq(kv_read_begin(st, &t), CM_OK);

    uint64_t tag_ids[] = {1, 2, 3, 4, 5, 6, 99};
    uint64_t studio_ids[] = {0, 10, 11, 12};
    uint64_t group_ids[] = {20, 21};
    uint64_t perf_ids[] = {30, 31, 32, 33};
    int agree = 0, hits = 0;
    for (int n = 0; n < 300; n++) {
        struct kv_ref tags[3], groups[2], perfs[2];
        struct kv_scene sc;
        blank_scene(&sc, (uint64_t)n + 1);
        sc.n_tags = rnd() % 4;
        for (uint32_t i = 0; i < sc.n_tags; i++)
            tags[i] = (struct kv_ref){.id = tag_ids[rnd() % 7]};
        sc.tags = tags;
        sc.studio.id = studio_ids[rnd() % 4];
        sc.n_groups = rnd() % 3;
        for (uint32_t i = 0; i < sc.n_groups; i++)
            groups[i] = (struct kv_ref){.id = group_ids[rnd() % 2]};
        sc.groups = groups;
        sc.n_performers = rnd() % 3;
        for (uint32_t i = 0; i < sc.n_performers; i++)
            perfs[i] = (struct kv_ref){.id = perf_ids[rnd() % 4]};
        sc.performers = perfs;
        sc.date = (struct kv_date){(int16_t)(2000 + rnd() % 40), 6, 1};
        for (size_t k = 0; k < sizeof filters / sizeof filters[0]; k++) {
            struct idx_query *q = parse_ok(NULL, filters[k]);
            struct idx_match_ctx a, b;
            idx_match_ctx_mem(&a, ents, sizeof ents / sizeof ents[0]);
            idx_match_ctx_kv(&b, t);
            bool ra = idx_filter_match(q->filter, &sc, &a);
            bool rb = idx_filter_match(q->filter, &sc, &b);
            ck_assert_int_eq(b.err, CM_OK);
            ck_assert_msg(ra == rb, "filter %s scene %d", filters[k], n);
            agree++;
            hits += ra;
            idx_match_ctx_fini(&a);
            idx_match_ctx_fini(&b);
            idx_query_free(q);
        }
    }
    ck_assert_int_eq(agree, 300 * 7);
    ck_assert_int_gt(hits, 100); /* the filters do select something */
    ck_assert_int_lt(hits, agree - 100);
    kv_read_end(t);
    kv_close(st);
}
END_TEST

/* ---- OOM ----------------------------------------------------------- */

START_TEST(parse_oom)
{
    const char *ff = "{\"q\":\"a \\\"b c\\\" d OR e -f\",\"sort\":\"title\"}";
    const char *sf =
        "{\"title\":{\"value\":\"x y z\",\"modifier\":\"INCLUDES\"},"
        "\"path\":{\"value\":\"^a.*b$\",\"modifier\":\"MATCHES_REGEX\"},"
        "\"tags\":{\"value\":[\"1\",\"2\",\"3\"],\"excludes\":[\"4\"],"
        "\"modifier\":\"EXCLUDES\",\"depth\":-1},"
        "\"date\":{\"value\":\"2020\",\"modifier\":\"BETWEEN\"},"
        "\"stash_id_endpoint\":{\"endpoint\":\"e\",\"stash_id\":\"a b\","
        "\"modifier\":\"INCLUDES\"},"
        "\"OR\":{\"performers\":{\"value\":[\"1\"]},\"NOT\":{\"details\":"
        "{\"value\":\"q\"}}}}";
    cJSON *f = cJSON_Parse(ff), *s = cJSON_Parse(sf);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(s);
    int failures = 0;
    for (long n = 1;; n++) {
        struct idx_query *q = NULL;
        struct idx_error err;
        cm_alloc_fail_at(n, 0);
        enum cm_status st = idx_query_parse(f, s, 40, &q, &err);
        long injected = cm_alloc_injected();
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK) {
            ck_assert_ptr_nonnull(q);
            idx_query_free(q);
            if (injected == 0)
                break;
            continue; /* the failed allocation was not needed */
        }
        ck_assert_int_eq(st, CM_NOMEM);
        ck_assert_ptr_null(q);
        failures++;
        ck_assert_int_lt(n, 10000);
    }
    ck_assert_int_gt(failures, 10);
    cJSON_Delete(f);
    cJSON_Delete(s);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("index_filter");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, parse_every_field);
    tcase_add_test(tc, parse_every_modifier);
    tcase_add_test(tc, parse_rejects_with_field);
    tcase_add_test(tc, parse_find_filter);
    tcase_add_test(tc, parse_q_spec);
    tcase_add_test(tc, parse_peek_bodies);
    tcase_add_test(tc, set_ids);
    tcase_add_test(tc, parse_oom);
    suite_add_tcase(s, tc);
    tc = tcase_create("oracle");
    tcase_add_test(tc, oracle_strings);
    tcase_add_test(tc, oracle_numbers);
    tcase_add_test(tc, oracle_resolution_orientation);
    tcase_add_test(tc, oracle_dates);
    tcase_add_test(tc, oracle_sets);
    tcase_add_test(tc, oracle_misc);
    tcase_add_test(tc, oracle_and_or_not);
    tcase_add_test(tc, oracle_q);
    tcase_add_test(tc, oracle_q_names);
    tcase_add_test(tc, oracle_kv_context);
    suite_add_tcase(s, tc);
    tc = tcase_create("sqlite");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sqlite_like_differential);
    tcase_add_test(tc, sqlite_numeric_differential);
    tcase_add_test(tc, sqlite_performer_age_differential);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    cm_json_init();
    return tu_run(suite());
}
