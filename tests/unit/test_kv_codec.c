/*
 * test_kv_codec.c - the scene and entity record codecs: randomized
 * round trips (differential against the input struct), every truncation,
 * random corruption, limits, hostile counts, OOM injection, clone/free.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "kv/kv.h"
#include "tests/lib/testutil.h"
#include "tests/unit/kv_testgen.h"

static int str_within(struct kv_str s, const struct cm_buf *b)
{
    return !s.p || (s.p >= b->data && s.p + s.len <= b->data + b->len);
}

START_TEST(scene_roundtrip_random)
{
    uint64_t seed = 12345;
    for (int i = 0; i < 1500; i++) {
        struct tg_arena a = {0};
        struct kv_scene sc, dec, *cl = NULL;
        struct cm_buf b, b2;

        tg_scene(&a, &seed, &sc, tg_u64(&seed), 0);
        cm_buf_init(&b, CM_MAX_RECORD);
        cm_buf_init(&b2, CM_MAX_RECORD);
        ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_OK);
        ck_assert_int_eq(kv_scene_decode(b.data, b.len, &dec), CM_OK);
        ck_assert_msg(kv_scene_equal(&sc, &dec), "round trip %d differs", i);
        /* strings are borrowed from the buffer */
        ck_assert(str_within(dec.title, &b));
        ck_assert(str_within(dec.studio.name, &b));
        if (dec.n_tags)
            ck_assert(str_within(dec.tags[dec.n_tags - 1].aux, &b));
        /* re-encoding gives the same bytes */
        ck_assert_int_eq(kv_scene_encode(&dec, &b2), CM_OK);
        ck_assert_uint_eq(b.len, b2.len);
        ck_assert_int_eq(memcmp(b.data, b2.data, b.len), 0);
        /* a clone owns its strings */
        ck_assert_int_eq(kv_scene_clone(&dec, &cl), CM_OK);
        ck_assert(kv_scene_equal(cl, &sc));
        if (cl->title.p) {
            ck_assert(!str_within(cl->title, &b));
            ck_assert_int_eq(cl->title.p[cl->title.len], '\0');
        }
        kv_scene_free(cl);
        kv_scene_fini(&dec);
        kv_scene_fini(&dec); /* idempotent */
        cm_buf_fini(&b);
        cm_buf_fini(&b2);
        tg_arena_free(&a);
    }
}
END_TEST

START_TEST(entity_roundtrip_random)
{
    uint64_t seed = 777;
    for (int i = 0; i < 1500; i++) {
        struct tg_arena a = {0};
        struct kv_entity e, dec;
        struct cm_buf b;

        tg_entity(&a, &seed, &e);
        cm_buf_init(&b, CM_MAX_RECORD);
        ck_assert_int_eq(kv_entity_encode(&e, &b), CM_OK);
        ck_assert_int_eq(kv_entity_decode(b.data, b.len, &dec), CM_OK);
        ck_assert_msg(kv_entity_equal(&e, &dec), "entity %d differs", i);
        kv_entity_fini(&dec);
        cm_buf_fini(&b);
        tg_arena_free(&a);
    }
}
END_TEST

/* Equality must notice a change in any field: mutate one at a time. */
START_TEST(equal_notices_each_field)
{
    uint64_t seed = 99;
    struct tg_arena a = {0};
    struct kv_scene sc, m;
    struct kv_str other = {"other", 5};
    int n = 0;

    do
        tg_scene(&a, &seed, &sc, 5, 0);
    while (!sc.n_files || !sc.n_tags || !sc.n_markers || !sc.n_urls);
    ck_assert(kv_scene_equal(&sc, &sc));
#define MUT(stmt)                                                              \
    do {                                                                       \
        m = sc;                                                                \
        stmt;                                                                  \
        ck_assert_msg(!kv_scene_equal(&sc, &m), "missed: " #stmt);             \
        n++;                                                                   \
    } while (0)
    MUT(m.id++);
    MUT(m.title = other);
    MUT(m.title.p = NULL; m.title.len = 0; if (!sc.title.p) m.title = other);
    MUT(m.date.day ^= 1);
    MUT(m.rating100 ^= 1);
    MUT(m.organized = !m.organized);
    MUT(m.play_duration += 1.5);
    MUT(m.p_caption = other;
        if (sc.p_caption.p && sc.p_caption.len == 5 &&
            !memcmp(sc.p_caption.p, "other", 5)) m.p_caption.p = NULL);
    MUT(m.n_urls--);
    MUT(m.studio.id++);
    struct kv_ref tags[512];
    struct kv_file files[8];
    memcpy(tags, sc.tags, sc.n_tags * sizeof *tags);
    memcpy(files, sc.files, sc.n_files * sizeof *files);
    MUT(m.tags = tags; tags[0].favorite = !tags[0].favorite);
    memcpy(tags, sc.tags, sc.n_tags * sizeof *tags);
    MUT(m.tags = tags; tags[0].has_image = !tags[0].has_image);
    memcpy(tags, sc.tags, sc.n_tags * sizeof *tags);
    MUT(m.studio.has_back_image = !m.studio.has_back_image);
    memcpy(tags, sc.tags, sc.n_tags * sizeof *tags);
    MUT(m.tags = tags; tags[sc.n_tags - 1].index ^= 4);
    MUT(m.files = files; files[0].height ^= 1);
    memcpy(files, sc.files, sc.n_files * sizeof *files);
    MUT(m.files = files; files[0].frame_rate += 1);
    ck_assert_int_eq(n, 16);
#undef MUT
    tg_arena_free(&a);
}
END_TEST

/* ---- Version 1 scene records ------------------------------------------
 * Written here by hand from STORE.md's description of version 1 (the refs
 * carried their image URLs, and a group's back image URL in aux), so the
 * reading of stores written before version 2 is checked against a writer
 * that is not the codec's. */

static void v1_byte(struct cm_buf *b, uint8_t v)
{
    ck_assert_int_eq(cm_buf_append(b, &v, 1), CM_OK);
}

static void v1_uv(struct cm_buf *b, uint64_t v)
{
    while (v >= 0x80) {
        v1_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    v1_byte(b, (uint8_t)v);
}

static void v1_sv(struct cm_buf *b, int64_t v)
{
    v1_uv(b, v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1);
}

static void v1_dbl(struct cm_buf *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        v1_byte(b, (uint8_t)(u >> (8 * i)));
}

static void v1_str(struct cm_buf *b, struct kv_str s)
{
    if (!s.p) {
        v1_uv(b, 0);
        return;
    }
    v1_uv(b, (uint64_t)s.len + 1);
    ck_assert_int_eq(cm_buf_append(b, s.p, s.len), CM_OK);
}

/* r as version 1 wrote it, with image (and, for a group, back) URLs. */
static void v1_ref(struct cm_buf *b, const struct kv_ref *r,
                   struct kv_str image, struct kv_str aux)
{
    v1_uv(b, r->id);
    v1_str(b, r->name);
    v1_str(b, image);
    v1_str(b, aux);
    v1_sv(b, r->rating100);
    v1_sv(b, r->index);
    v1_uv(b, r->gender);
    v1_byte(b, r->favorite);
}

/* A URL for a ref whose has_image (has) is set, else null or "" (both
 * read as no image). */
static struct kv_str v1_url(uint64_t *seed, bool has)
{
    static const struct kv_str urls[] = {
        {"http://stash:9999/performer/7/image?t=1", 38}, {"x", 1}};
    if (has)
        return urls[tg_below(seed, 2)];
    return tg_below(seed, 2) ? (struct kv_str){"", 0}
                             : (struct kv_str){NULL, 0};
}

static void v1_refs(struct cm_buf *b, uint64_t *seed, uint32_t n,
                    const struct kv_ref *r, bool group)
{
    v1_uv(b, n);
    for (uint32_t i = 0; i < n; i++)
        v1_ref(b, &r[i], v1_url(seed, r[i].has_image),
               group ? v1_url(seed, r[i].has_back_image) : r[i].aux);
}

static void v1_scene(struct cm_buf *b, uint64_t *seed,
                     const struct kv_scene *sc)
{
    const struct kv_str *paths[] = {
        &sc->p_screenshot, &sc->p_preview,   &sc->p_webp,   &sc->p_vtt,
        &sc->p_sprite,     &sc->p_funscript, &sc->p_caption};
    v1_byte(b, 0xD5);
    v1_byte(b, 1);
    v1_uv(b, sc->id);
    v1_str(b, sc->title);
    v1_str(b, sc->code);
    v1_str(b, sc->details);
    v1_str(b, sc->director);
    v1_sv(b, sc->date.year);
    v1_uv(b, sc->date.month);
    v1_uv(b, sc->date.day);
    v1_sv(b, sc->rating100);
    v1_byte(b, (uint8_t)(sc->organized | sc->interactive << 1));
    v1_sv(b, sc->interactive_speed);
    v1_sv(b, sc->o_counter);
    v1_sv(b, sc->play_count);
    v1_dbl(b, sc->play_duration);
    v1_dbl(b, sc->resume_time);
    v1_str(b, sc->last_played_at);
    v1_str(b, sc->created_at);
    v1_str(b, sc->updated_at);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        v1_str(b, *paths[i]);
    v1_uv(b, sc->n_urls);
    for (uint32_t i = 0; i < sc->n_urls; i++)
        v1_str(b, sc->urls[i]);
    v1_uv(b, sc->n_files);
    for (uint32_t i = 0; i < sc->n_files; i++) {
        const struct kv_file *f = &sc->files[i];
        v1_uv(b, f->id);
        v1_str(b, f->path);
        v1_str(b, f->basename);
        v1_str(b, f->format);
        v1_str(b, f->video_codec);
        v1_str(b, f->audio_codec);
        v1_str(b, f->mod_time);
        v1_str(b, f->oshash);
        v1_str(b, f->md5);
        v1_str(b, f->phash);
        v1_sv(b, f->size);
        v1_dbl(b, f->duration);
        v1_dbl(b, f->frame_rate);
        v1_sv(b, f->bit_rate);
        v1_sv(b, f->width);
        v1_sv(b, f->height);
    }
    v1_uv(b, sc->n_captions);
    for (uint32_t i = 0; i < sc->n_captions; i++) {
        v1_str(b, sc->captions[i].language_code);
        v1_str(b, sc->captions[i].caption_type);
    }
    v1_uv(b, sc->n_stash_ids);
    for (uint32_t i = 0; i < sc->n_stash_ids; i++) {
        v1_str(b, sc->stash_ids[i].endpoint);
        v1_str(b, sc->stash_ids[i].stash_id);
    }
    v1_uv(b, sc->n_markers);
    for (uint32_t i = 0; i < sc->n_markers; i++) {
        const struct kv_marker *m = &sc->markers[i];
        v1_uv(b, m->id);
        v1_str(b, m->title);
        v1_dbl(b, m->seconds);
        v1_dbl(b, m->end_seconds);
        v1_uv(b, m->primary_tag_id);
    }
    v1_ref(b, &sc->studio, v1_url(seed, sc->studio.has_image), sc->studio.aux);
    v1_refs(b, seed, sc->n_performers, sc->performers, false);
    v1_refs(b, seed, sc->n_tags, sc->tags, false);
    v1_refs(b, seed, sc->n_groups, sc->groups, true);
    v1_refs(b, seed, sc->n_galleries, sc->galleries, false);
}

/* Version 1 records (stores written before version 2) still decode, each
 * ref's image URLs read as their presence and a group's aux (its back
 * image URL then) as has_back_image; re-encoded they are version 2 and
 * decode to the same scene. */
START_TEST(version1_records_decode)
{
    uint64_t seed = 4242;
    struct cm_buf arena;
    int imgs = 0, backs = 0;

    cm_buf_init(&arena, CM_MAX_RECORD);
    for (int i = 0; i < 1500; i++) {
        struct tg_arena a = {0};
        struct kv_scene sc, dec, din;
        struct cm_buf b, b2;

        tg_scene(&a, &seed, &sc, tg_u64(&seed), 0);
        sc.studio.has_back_image = false; /* a group's only */
        for (uint32_t k = 0; k < sc.n_groups; k++)
            sc.groups[k].aux = (struct kv_str){NULL, 0};
        for (uint32_t k = 0; k < sc.n_performers; k++)
            sc.performers[k].has_back_image = false;
        for (uint32_t k = 0; k < sc.n_tags; k++) {
            sc.tags[k].has_back_image = false;
            imgs += sc.tags[k].has_image;
        }
        for (uint32_t k = 0; k < sc.n_galleries; k++)
            sc.galleries[k].has_back_image = false;
        for (uint32_t k = 0; k < sc.n_groups; k++)
            backs += sc.groups[k].has_back_image;
        cm_buf_init(&b, CM_MAX_RECORD);
        cm_buf_init(&b2, CM_MAX_RECORD);
        v1_scene(&b, &seed, &sc);
        ck_assert_int_eq(kv_scene_decode(b.data, b.len, &dec), CM_OK);
        ck_assert_msg(kv_scene_equal(&sc, &dec), "v1 record %d differs", i);
        ck_assert_int_eq(kv_scene_decode_in(b.data, b.len, &arena, &din),
                         CM_OK);
        ck_assert_msg(kv_scene_equal(&sc, &din), "v1 record %d differs (in)",
                      i);
        ck_assert_int_eq(kv_scene_encode(&dec, &b2), CM_OK);
        ck_assert_int_eq((uint8_t)b2.data[1], 2);
        ck_assert_uint_le(b2.len, b.len);
        kv_scene_fini(&dec);
        ck_assert_int_eq(kv_scene_decode(b2.data, b2.len, &dec), CM_OK);
        ck_assert(kv_scene_equal(&sc, &dec));
        kv_scene_fini(&dec);
        cm_buf_fini(&b);
        cm_buf_fini(&b2);
        tg_arena_free(&a);
    }
    ck_assert_int_gt(imgs, 100); /* both kinds of refs were seen */
    ck_assert_int_gt(backs, 10);
    cm_buf_fini(&arena);
}
END_TEST

/* A version 2 ref's flags byte takes three bits; any other is corrupt. */
START_TEST(ref_flags_checked)
{
    struct kv_scene sc, dec;
    struct cm_buf b;

    memset(&sc, 0, sizeof sc);
    sc.id = 1;
    sc.studio = (struct kv_ref){.id = 5,
                                .rating100 = -1,
                                .index = -1,
                                .favorite = true,
                                .has_image = true,
                                .has_back_image = true};
    cm_buf_init(&b, CM_MAX_RECORD);
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_OK);
    /* the studio's flags byte, then the 4 empty ref counts */
    ck_assert_uint_eq((uint8_t)b.data[b.len - 5], 7);
    ck_assert_int_eq(kv_scene_decode(b.data, b.len, &dec), CM_OK);
    ck_assert(dec.studio.favorite && dec.studio.has_image &&
              dec.studio.has_back_image);
    kv_scene_fini(&dec);
    b.data[b.len - 5] = 8;
    ck_assert_int_eq(kv_scene_decode(b.data, b.len, &dec), CM_CORRUPT);
    b.data[b.len - 5] = 2;
    ck_assert_int_eq(kv_scene_decode(b.data, b.len, &dec), CM_OK);
    ck_assert(!dec.studio.favorite && dec.studio.has_image &&
              !dec.studio.has_back_image);
    kv_scene_fini(&dec);
    cm_buf_fini(&b);
}
END_TEST

static void encode_one(uint64_t seed, int entity, struct cm_buf *b,
                       struct tg_arena *a)
{
    cm_buf_init(b, CM_MAX_RECORD);
    if (entity) {
        struct kv_entity e;
        tg_entity(a, &seed, &e);
        ck_assert_int_eq(kv_entity_encode(&e, b), CM_OK);
    } else {
        struct kv_scene sc;
        tg_scene(a, &seed, &sc, 42, 0);
        ck_assert_int_eq(kv_scene_encode(&sc, b), CM_OK);
    }
}

static enum cm_status decode_any(int entity, const void *p, size_t n,
                                 int *zeroed)
{
    enum cm_status st;
    if (entity) {
        struct kv_entity e, z;
        memset(&z, 0, sizeof z);
        st = kv_entity_decode(p, n, &e);
        *zeroed = st != CM_OK ? memcmp(&e, &z, sizeof e) == 0 : 1;
        kv_entity_fini(&e);
    } else {
        struct kv_scene sc, z;
        memset(&z, 0, sizeof z);
        st = kv_scene_decode(p, n, &sc);
        *zeroed = st != CM_OK ? memcmp(&sc, &z, sizeof sc) == 0 : 1;
        kv_scene_fini(&sc);
    }
    return st;
}

START_TEST(every_truncation_fails)
{
    for (int entity = 0; entity < 2; entity++)
        for (uint64_t seed = 1; seed <= 40; seed++) {
            struct tg_arena a = {0};
            struct cm_buf b;
            int zeroed;
            encode_one(seed, entity, &b, &a);
            for (size_t n = 0; n < b.len; n++) {
                /* a copy of exactly n bytes so ASan sees any overread */
                char *p = malloc(n ? n : 1);
                memcpy(p, b.data, n);
                ck_assert_int_eq(decode_any(entity, p, n, &zeroed), CM_CORRUPT);
                ck_assert(zeroed);
                free(p);
            }
            ck_assert_int_eq(decode_any(entity, b.data, b.len, &zeroed), CM_OK);
            /* trailing garbage */
            ck_assert_int_eq(cm_buf_putc(&b, 0), CM_OK);
            ck_assert_int_eq(decode_any(entity, b.data, b.len, &zeroed),
                             CM_CORRUPT);
            cm_buf_fini(&b);
            tg_arena_free(&a);
        }
}
END_TEST

/* kv_scene_decode_in agrees with kv_scene_decode on every input: valid
 * records of varying size through one reused arena (so it is sometimes
 * too small, grows and then serves in one pass), truncated and corrupted
 * ones; its arrays live in the arena, its strings in the record.  An
 * arena whose max is too small gives CM_TOOBIG and a zeroed scene. */
START_TEST(decode_in_matches_decode)
{
    uint64_t rs = 777;
    struct cm_buf arena, tiny;
    size_t grew = 0, last_cap = 0;
    unsigned ok = 0;
    cm_buf_init(&arena, CM_MAX_RECORD_ARENA);
    for (int round = 0; round < 3000; round++) {
        struct tg_arena a = {0};
        struct cm_buf b;
        struct kv_scene x, y, z;
        enum cm_status s1, s2;
        size_t n;
        char *p;
        encode_one(tg_next(&rs), 0, &b, &a);
        if (round % 3 == 2) /* corrupt some bytes */
            for (int f = 0; f < 2 && b.len > 2; f++)
                b.data[2 + tg_below(&rs, (uint32_t)(b.len - 2))] ^=
                    (char)(1u << tg_below(&rs, 8));
        n = round % 5 == 4 ? tg_below(&rs, (uint32_t)b.len) : b.len;
        p = malloc(n ? n : 1);
        memcpy(p, b.data, n);
        s1 = kv_scene_decode(p, n, &x);
        s2 = kv_scene_decode_in(p, n, &arena, &y);
        ck_assert_int_eq(s1, s2);
        if (s2 == CM_OK) {
            const char *lo = arena.data, *hi = arena.data + arena.cap;
            ck_assert(kv_scene_equal(&x, &y));
            ck_assert(!y.files || ((const char *)y.files >= lo &&
                                   (const char *)(y.files + y.n_files) <= hi));
            ck_assert(!y.tags || ((const char *)y.tags >= lo &&
                                  (const char *)(y.tags + y.n_tags) <= hi));
            ck_assert(!y.title.p ||
                      (y.title.p >= p && y.title.p + y.title.len <= p + n));
            ok++;
        } else {
            memset(&z, 0, sizeof z);
            ck_assert(memcmp(&y, &z, sizeof y) == 0);
        }
        if (arena.cap != last_cap) {
            grew++;
            last_cap = arena.cap;
        }
        kv_scene_fini(&x);
        free(p);
        cm_buf_fini(&b);
        tg_arena_free(&a);
    }
    ck_assert_uint_gt(ok, 1000);
    ck_assert_uint_gt(grew, 2); /* the short-arena path ran */
    cm_buf_fini(&arena);
    /* an arena that cannot hold the arrays */
    cm_buf_init(&tiny, 16);
    for (int round = 0, hit = 0; round < 200 && !hit; round++) {
        struct tg_arena a = {0};
        struct cm_buf b;
        struct kv_scene y, z;
        encode_one(tg_next(&rs), 0, &b, &a);
        enum cm_status st = kv_scene_decode_in(b.data, b.len, &tiny, &y);
        memset(&z, 0, sizeof z);
        if (st == CM_TOOBIG) {
            ck_assert(memcmp(&y, &z, sizeof y) == 0);
            hit = 1;
        } else {
            ck_assert_int_eq(st, CM_OK);
        }
        ck_assert_msg(hit || round < 199, "no scene needed more than 16 bytes");
        cm_buf_fini(&b);
        tg_arena_free(&a);
    }
    cm_buf_fini(&tiny);
    ck_assert_int_eq(kv_scene_decode_in(NULL, 0, NULL, NULL), CM_INVALID);
}
END_TEST

START_TEST(header_checks)
{
    struct tg_arena a = {0};
    struct cm_buf sb, eb;
    struct kv_scene sc;
    struct kv_entity e;

    encode_one(3, 0, &sb, &a);
    encode_one(3, 1, &eb, &a);
    ck_assert_int_eq(kv_entity_decode(sb.data, sb.len, &e), CM_CORRUPT);
    ck_assert_int_eq(kv_scene_decode(eb.data, eb.len, &sc), CM_CORRUPT);
    sb.data[1]++;
    ck_assert_int_eq(kv_scene_decode(sb.data, sb.len, &sc), CM_VERSION);
    sb.data[1] = 0;
    ck_assert_int_eq(kv_scene_decode(sb.data, sb.len, &sc), CM_VERSION);
    eb.data[1] = 0;
    ck_assert_int_eq(kv_entity_decode(eb.data, eb.len, &e), CM_VERSION);
    ck_assert_int_eq(kv_scene_decode(NULL, 0, &sc), CM_CORRUPT);
    ck_assert_int_eq(kv_scene_decode(NULL, 5, &sc), CM_INVALID);
    kv_scene_fini(&sc);
    kv_entity_fini(&e);
    kv_scene_fini(NULL);
    kv_entity_fini(NULL);
    cm_buf_fini(&sb);
    cm_buf_fini(&eb);
    tg_arena_free(&a);
}
END_TEST

/* Random corruption never crashes; what still decodes re-encodes to an
 * equal record. */
START_TEST(random_corruption)
{
    uint64_t rs = 4242;
    for (int round = 0; round < 4000; round++) {
        int entity = round & 1, zeroed;
        struct tg_arena a = {0};
        struct cm_buf b;
        encode_one(tg_next(&rs), entity, &b, &a);
        int flips = 1 + (int)tg_below(&rs, 4);
        for (int f = 0; f < flips && b.len; f++) {
            size_t at = 2 + tg_below(&rs, (uint32_t)(b.len - 2));
            switch (tg_below(&rs, 3)) {
            case 0: b.data[at] ^= (char)(1u << tg_below(&rs, 8)); break;
            case 1: b.data[at] = (char)0xff; break;
            default: b.data[at] = (char)tg_next(&rs);
            }
        }
        size_t n =
            tg_below(&rs, 8) == 0 ? tg_below(&rs, (uint32_t)b.len) : b.len;
        char *p = malloc(n ? n : 1);
        memcpy(p, b.data, n);
        enum cm_status st = decode_any(entity, p, n, &zeroed);
        ck_assert_msg(st == CM_OK || st == CM_CORRUPT, "status %d", st);
        ck_assert(zeroed);
        if (st == CM_OK && !entity) {
            struct kv_scene x, y;
            struct cm_buf b2;
            cm_buf_init(&b2, CM_MAX_RECORD);
            ck_assert_int_eq(kv_scene_decode(p, n, &x), CM_OK);
            ck_assert_int_eq(kv_scene_encode(&x, &b2), CM_OK);
            ck_assert_int_eq(kv_scene_decode(b2.data, b2.len, &y), CM_OK);
            ck_assert(kv_scene_equal(&x, &y));
            kv_scene_fini(&x);
            kv_scene_fini(&y);
            cm_buf_fini(&b2);
        }
        free(p);
        cm_buf_fini(&b);
        tg_arena_free(&a);
    }
}
END_TEST

/* Position of the urls count in an encoded empty scene. */
static size_t urls_count_at(void)
{
    struct kv_scene sc;
    struct kv_str u = {NULL, 0};
    struct cm_buf b0, b1;
    size_t i = 0;
    memset(&sc, 0, sizeof sc);
    cm_buf_init(&b0, CM_MAX_RECORD);
    cm_buf_init(&b1, CM_MAX_RECORD);
    ck_assert_int_eq(kv_scene_encode(&sc, &b0), CM_OK);
    sc.n_urls = 1;
    sc.urls = &u;
    ck_assert_int_eq(kv_scene_encode(&sc, &b1), CM_OK);
    while (i < b0.len && b0.data[i] == b1.data[i])
        i++;
    cm_buf_fini(&b0);
    cm_buf_fini(&b1);
    return i;
}

START_TEST(hostile_counts_allocate_nothing)
{
    size_t at = urls_count_at();
    unsigned char buf[128];
    struct kv_scene sc;
    struct kv_entity e;
    ck_assert_uint_lt(at, 100);
    /* A valid prefix then a count of 4294967295 and nothing else. */
    {
        struct kv_scene empty;
        struct cm_buf b;
        memset(&empty, 0, sizeof empty);
        cm_buf_init(&b, CM_MAX_RECORD);
        ck_assert_int_eq(kv_scene_encode(&empty, &b), CM_OK);
        memcpy(buf, b.data, at);
        cm_buf_fini(&b);
    }
    memcpy(buf + at, "\xff\xff\xff\xff\x0f", 5);
    cm_alloc_fail_at(1, 1); /* any allocation would fail */
    ck_assert_int_eq(kv_scene_decode(buf, at + 5, &sc), CM_CORRUPT);
    /* a count within CM_MAX_ARRAY but beyond the bytes left */
    memcpy(buf + at, "\x80\x80\x04", 3); /* 65536 */
    memset(buf + at + 3, 0, 20);
    ck_assert_int_eq(kv_scene_decode(buf, at + 23, &sc), CM_CORRUPT);
    /* 11-byte varint */
    memcpy(buf + 2, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    ck_assert_int_eq(kv_scene_decode(buf, 13, &sc), CM_CORRUPT);
    /* a 5-byte entity claiming a huge name */
    memcpy(buf, "\xE7\x01P\x01\xff", 5);
    ck_assert_int_eq(kv_entity_decode(buf, 5, &e), CM_CORRUPT);
    ck_assert_int_eq(cm_alloc_injected(), 0);
    cm_alloc_fail_at(0, 0);
}
END_TEST

START_TEST(encode_limits)
{
    struct kv_scene sc;
    struct kv_entity e;
    struct cm_buf b;
    char *big = calloc(1, CM_MAX_STRING + 2);
    struct kv_str s5[5];
    struct kv_ref *refs = calloc(CM_MAX_ARRAY + 1, sizeof *refs);

    memset(&sc, 0, sizeof sc);
    cm_buf_init(&b, 64 * CM_MiB);
    ck_assert_int_eq(cm_buf_putc(&b, 'x'), CM_OK);
    /* a string of exactly the limit round-trips; one more is refused */
    sc.title.p = big;
    sc.title.len = CM_MAX_STRING;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_OK);
    {
        struct kv_scene d;
        ck_assert_int_eq(kv_scene_decode(b.data + 1, b.len - 1, &d), CM_OK);
        ck_assert_uint_eq(d.title.len, CM_MAX_STRING);
        kv_scene_fini(&d);
    }
    cm_buf_truncate(&b, 1);
    sc.title.len = CM_MAX_STRING + 1;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_INVALID);
    ck_assert_uint_eq(b.len, 1); /* unchanged on error */
    sc.title.len = 3;
    /* arrays: CM_MAX_ARRAY round-trips, one more is refused */
    for (uint32_t i = 0; i <= CM_MAX_ARRAY; i++)
        refs[i].id = i;
    sc.tags = refs;
    sc.n_tags = CM_MAX_ARRAY;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_OK);
    {
        struct kv_scene d;
        ck_assert_int_eq(kv_scene_decode(b.data + 1, b.len - 1, &d), CM_OK);
        ck_assert_uint_eq(d.n_tags, CM_MAX_ARRAY);
        ck_assert(kv_scene_equal(&d, &sc));
        kv_scene_fini(&d);
    }
    cm_buf_truncate(&b, 1);
    sc.n_tags = CM_MAX_ARRAY + 1;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_INVALID);
    sc.n_tags = 2;
    sc.tags = NULL;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_INVALID);
    sc.tags = refs;
    refs[1].gender = KV_GENDER_NON_BINARY + 1;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_INVALID);
    refs[1].gender = 0;
    sc.resume_time = 0.0 / 0.0;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_INVALID);
    sc.resume_time = 1.0 / 0.0;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_INVALID);
    sc.resume_time = -1;
    /* the whole record over CM_MAX_RECORD */
    for (int i = 0; i < 5; i++) {
        s5[i].p = big;
        s5[i].len = CM_MAX_STRING;
    }
    sc.urls = s5;
    sc.n_urls = 5;
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_TOOBIG);
    ck_assert_uint_eq(b.len, 1);
    /* entity type must be known */
    memset(&e, 0, sizeof e);
    e.type = 'Q';
    ck_assert_int_eq(kv_entity_encode(&e, &b), CM_INVALID);
    e.type = KV_TAG;
    ck_assert_int_eq(kv_entity_encode(&e, &b), CM_OK);
    ck_assert_int_eq(kv_entity_encode(NULL, &b), CM_INVALID);
    cm_buf_fini(&b);
    free(big);
    free(refs);
}
END_TEST

/* Allocation N fails for N = 1, 2, ... until the operation succeeds:
 * every failure is CM_NOMEM and leaves nothing allocated (LeakSanitizer
 * checks the latter under make asan). */
START_TEST(oom_injection)
{
    uint64_t seed = 5150;
    struct tg_arena a = {0};
    struct kv_scene sc;
    struct kv_entity e;
    struct cm_buf ok;
    long n;
    enum cm_status st;

    do
        tg_scene(&a, &seed, &sc, 9, 0);
    while (!sc.n_tags || !sc.n_urls);
    tg_entity(&a, &seed, &e);
    cm_buf_init(&ok, CM_MAX_RECORD);
    ck_assert_int_eq(kv_scene_encode(&sc, &ok), CM_OK);

    for (n = 1;; n++) { /* encode */
        struct cm_buf b;
        cm_buf_init(&b, CM_MAX_RECORD);
        cm_alloc_fail_at(n, 0);
        st = kv_scene_encode(&sc, &b);
        long inj = cm_alloc_injected();
        cm_alloc_fail_at(0, 0);
        cm_buf_fini(&b);
        if (st == CM_OK)
            break;
        ck_assert_int_eq(st, CM_NOMEM);
        ck_assert_int_eq(inj, 1);
    }
    ck_assert_int_gt(n, 1);
    for (n = 1;; n++) { /* decode */
        struct kv_scene d;
        cm_alloc_fail_at(n, 0);
        st = kv_scene_decode(ok.data, ok.len, &d);
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK) {
            ck_assert(kv_scene_equal(&d, &sc));
            kv_scene_fini(&d);
            break;
        }
        ck_assert_int_eq(st, CM_NOMEM);
        kv_scene_fini(&d);
    }
    ck_assert_int_eq(n, 2); /* one allocation per decoded record */
    for (n = 1;; n++) {     /* clone */
        struct kv_scene *c;
        cm_alloc_fail_at(n, 0);
        st = kv_scene_clone(&sc, &c);
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK) {
            ck_assert(kv_scene_equal(c, &sc));
            kv_scene_free(c);
            break;
        }
        ck_assert_int_eq(st, CM_NOMEM);
        ck_assert_ptr_null(c);
    }
    for (n = 1;; n++) { /* entity encode + decode */
        struct cm_buf b;
        struct kv_entity d;
        memset(&d, 0, sizeof d);
        cm_buf_init(&b, CM_MAX_RECORD);
        cm_alloc_fail_at(n, 0);
        st = kv_entity_encode(&e, &b);
        if (st == CM_OK)
            st = kv_entity_decode(b.data, b.len, &d);
        cm_alloc_fail_at(0, 0);
        if (st == CM_OK) {
            ck_assert(kv_entity_equal(&d, &e));
            kv_entity_fini(&d);
            cm_buf_fini(&b);
            break;
        }
        ck_assert_int_eq(st, CM_NOMEM);
        kv_entity_fini(&d);
        cm_buf_fini(&b);
    }
    cm_buf_fini(&ok);
    tg_arena_free(&a);
}
END_TEST

START_TEST(fini_on_zeroed_and_empty)
{
    struct kv_scene sc;
    struct kv_entity e;
    struct cm_buf b;
    memset(&sc, 0, sizeof sc);
    memset(&e, 0, sizeof e);
    kv_scene_fini(&sc);
    kv_entity_fini(&e);
    /* an empty record decodes without allocating */
    cm_buf_init(&b, CM_MAX_RECORD);
    ck_assert_int_eq(kv_scene_encode(&sc, &b), CM_OK);
    cm_alloc_fail_at(1, 1);
    ck_assert_int_eq(kv_scene_decode(b.data, b.len, &sc), CM_OK);
    cm_alloc_fail_at(0, 0);
    ck_assert_ptr_null(sc.urls);
    ck_assert_ptr_null(sc.title.p);
    kv_scene_fini(&sc);
    cm_buf_fini(&b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("kv_codec");
    TCase *tc = tcase_create("codec");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, scene_roundtrip_random);
    tcase_add_test(tc, entity_roundtrip_random);
    tcase_add_test(tc, equal_notices_each_field);
    tcase_add_test(tc, every_truncation_fails);
    tcase_add_test(tc, header_checks);
    tcase_add_test(tc, version1_records_decode);
    tcase_add_test(tc, ref_flags_checked);
    tcase_add_test(tc, decode_in_matches_decode);
    tcase_add_test(tc, random_corruption);
    tcase_add_test(tc, hostile_counts_allocate_nothing);
    tcase_add_test(tc, encode_limits);
    tcase_add_test(tc, oom_injection);
    tcase_add_test(tc, fini_on_zeroed_and_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
