/*
 * kv_testgen.h - random scene and entity records for the kv tests and the
 * fuzz seed generator: a seeded PRNG (splitmix64), strings with nulls,
 * empty strings, Unicode and embedded NULs, arrays of every kind, finite
 * doubles of both signs.  Memory comes from a tg_arena released at once
 * with tg_arena_free().  Header-only (static inline) so each test binary
 * takes what it uses.
 */
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"

struct tg_arena {
    void **blocks;
    size_t n, cap;
};

static inline void *tg_alloc(struct tg_arena *a, size_t n)
{
    void *p;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **nb = realloc(a->blocks, cap * sizeof *nb);
        if (!nb)
            abort();
        a->blocks = nb;
        a->cap = cap;
    }
    p = calloc(1, n ? n : 1);
    if (!p)
        abort();
    a->blocks[a->n++] = p;
    return p;
}

static inline void tg_arena_free(struct tg_arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

static inline uint64_t tg_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint32_t tg_below(uint64_t *s, uint32_t n)
{
    return n ? (uint32_t)(tg_next(s) % n) : 0;
}

static inline struct kv_str tg_str(struct tg_arena *a, uint64_t *s)
{
    static const char *const pieces[] = {
        "a",   "Z",  "0",  "42", " ",  "é",     "日本",  "\xF0\x9F\x8E\xAC",
        "ß",   "\"", "\\", "/",  "\n", "x-y_z", "Ωmega", "\0",
        "tag", "007"};
    uint32_t r = tg_below(s, 100), n;
    struct kv_str out = {NULL, 0};
    char *p;
    size_t len = 0;

    if (r < 15)
        return out; /* null */
    if (r < 25) {
        out.p = tg_alloc(a, 1);
        return out; /* empty */
    }
    n = r < 97 ? tg_below(s, 12) + 1 : tg_below(s, 200) + 1;
    p = tg_alloc(a, (size_t)n * 8 + 1);
    for (uint32_t i = 0; i < n; i++) {
        const char *pc = pieces[tg_below(s, sizeof pieces / sizeof *pieces)];
        size_t pl = pc[0] ? strlen(pc) : 1;
        memcpy(p + len, pc, pl);
        len += pl;
    }
    out.p = p;
    out.len = (uint32_t)len;
    return out;
}

static inline int32_t tg_i32(uint64_t *s)
{
    static const int32_t edge[] = {0, -1, 1, 100, INT32_MIN, INT32_MAX, -2};
    if (tg_below(s, 4) == 0)
        return edge[tg_below(s, 7)];
    return (int32_t)(uint32_t)tg_next(s) >> tg_below(s, 31);
}

static inline int64_t tg_i64(uint64_t *s)
{
    if (tg_below(s, 5) == 0)
        return tg_below(s, 2) ? INT64_MIN : INT64_MAX;
    return (int64_t)(tg_next(s) >> (1 + tg_below(s, 63))) *
           (tg_below(s, 2) ? 1 : -1);
}

static inline uint64_t tg_u64(uint64_t *s)
{
    if (tg_below(s, 6) == 0)
        return tg_below(s, 2) ? UINT64_MAX : 0;
    return tg_next(s) >> tg_below(s, 64);
}

static inline double tg_dbl(uint64_t *s)
{
    switch (tg_below(s, 6)) {
    case 0: return -1.0;
    case 1: return 0.0;
    case 2: return -(double)tg_next(s) / 3.0;
    case 3: return 1e-300 * (double)tg_below(s, 1000);
    default: return (double)tg_below(s, 1000000) / 7.0;
    }
}

static inline uint32_t tg_count(uint64_t *s)
{
    uint32_t r = tg_below(s, 100);
    if (r < 30)
        return 0;
    if (r < 97)
        return tg_below(s, 6) + 1;
    return tg_below(s, 300);
}

static inline struct kv_date tg_date(uint64_t *s)
{
    struct kv_date d = {0, 0, 0};
    if (tg_below(s, 4) == 0)
        return d;
    d.year = (int16_t)(tg_below(s, 3) ? (int32_t)(1950 + tg_below(s, 80))
                                      : (int32_t)tg_next(s));
    d.month = (uint8_t)tg_below(s, 13);
    d.day = (uint8_t)tg_below(s, 256);
    return d;
}

/* idpool: when non-zero, entity ids are drawn from 1..idpool. */
static inline void tg_ref(struct tg_arena *a, uint64_t *s, struct kv_ref *r,
                          uint32_t idpool)
{
    r->id = idpool ? tg_below(s, idpool) + 1 : tg_u64(s);
    r->name = tg_str(a, s);
    r->aux = tg_str(a, s);
    r->rating100 = tg_i32(s);
    r->index = tg_i32(s);
    r->gender = (uint8_t)tg_below(s, KV_GENDER_NON_BINARY + 1);
    r->favorite = tg_below(s, 2);
    r->has_image = tg_below(s, 2);
    r->has_back_image = tg_below(s, 2);
}

static inline struct kv_ref *tg_refs(struct tg_arena *a, uint64_t *s,
                                     uint32_t *n, uint32_t idpool)
{
    struct kv_ref *v;
    *n = tg_count(s);
    if (!*n)
        return NULL;
    v = tg_alloc(a, *n * sizeof *v);
    for (uint32_t i = 0; i < *n; i++)
        tg_ref(a, s, &v[i], idpool);
    return v;
}

static inline void tg_scene(struct tg_arena *a, uint64_t *s,
                            struct kv_scene *sc, uint64_t id, uint32_t idpool)
{
    memset(sc, 0, sizeof *sc);
    sc->id = id;
    sc->title = tg_str(a, s);
    sc->code = tg_str(a, s);
    sc->details = tg_str(a, s);
    sc->director = tg_str(a, s);
    sc->date = tg_date(s);
    sc->rating100 = tg_i32(s);
    sc->organized = tg_below(s, 2);
    sc->interactive = tg_below(s, 2);
    sc->interactive_speed = tg_i32(s);
    sc->o_counter = tg_i32(s);
    sc->play_count = tg_i32(s);
    sc->play_duration = tg_dbl(s);
    sc->resume_time = tg_dbl(s);
    sc->last_played_at = tg_str(a, s);
    sc->created_at = tg_str(a, s);
    sc->updated_at = tg_str(a, s);
    sc->p_screenshot = tg_str(a, s);
    sc->p_preview = tg_str(a, s);
    sc->p_webp = tg_str(a, s);
    sc->p_vtt = tg_str(a, s);
    sc->p_sprite = tg_str(a, s);
    sc->p_funscript = tg_str(a, s);
    sc->p_caption = tg_str(a, s);
    if ((sc->n_urls = tg_count(s)) != 0) {
        sc->urls = tg_alloc(a, sc->n_urls * sizeof *sc->urls);
        for (uint32_t i = 0; i < sc->n_urls; i++)
            sc->urls[i] = tg_str(a, s);
    }
    if ((sc->n_files = tg_count(s) % 4) != 0) {
        sc->files = tg_alloc(a, sc->n_files * sizeof *sc->files);
        for (uint32_t i = 0; i < sc->n_files; i++) {
            struct kv_file *f = &sc->files[i];
            f->id = tg_u64(s);
            f->path = tg_str(a, s);
            f->basename = tg_str(a, s);
            f->format = tg_str(a, s);
            f->video_codec = tg_str(a, s);
            f->audio_codec = tg_str(a, s);
            f->mod_time = tg_str(a, s);
            f->oshash = tg_str(a, s);
            f->md5 = tg_str(a, s);
            f->phash = tg_str(a, s);
            f->size = tg_i64(s);
            f->duration = tg_dbl(s);
            f->frame_rate = tg_dbl(s);
            f->bit_rate = tg_i64(s);
            f->width = tg_i32(s);
            f->height = tg_i32(s);
        }
    }
    if ((sc->n_captions = tg_count(s)) != 0) {
        sc->captions = tg_alloc(a, sc->n_captions * sizeof *sc->captions);
        for (uint32_t i = 0; i < sc->n_captions; i++) {
            sc->captions[i].language_code = tg_str(a, s);
            sc->captions[i].caption_type = tg_str(a, s);
        }
    }
    if ((sc->n_stash_ids = tg_count(s)) != 0) {
        sc->stash_ids = tg_alloc(a, sc->n_stash_ids * sizeof *sc->stash_ids);
        for (uint32_t i = 0; i < sc->n_stash_ids; i++) {
            sc->stash_ids[i].endpoint = tg_str(a, s);
            sc->stash_ids[i].stash_id = tg_str(a, s);
        }
    }
    if ((sc->n_markers = tg_count(s)) != 0) {
        sc->markers = tg_alloc(a, sc->n_markers * sizeof *sc->markers);
        for (uint32_t i = 0; i < sc->n_markers; i++) {
            sc->markers[i].id = tg_u64(s);
            sc->markers[i].title = tg_str(a, s);
            sc->markers[i].seconds = tg_dbl(s);
            sc->markers[i].end_seconds = tg_dbl(s);
            sc->markers[i].primary_tag_id = tg_u64(s);
        }
    }
    if (tg_below(s, 3))
        tg_ref(a, s, &sc->studio, idpool);
    sc->performers = tg_refs(a, s, &sc->n_performers, idpool);
    sc->tags = tg_refs(a, s, &sc->n_tags, idpool);
    sc->groups = tg_refs(a, s, &sc->n_groups, idpool);
    sc->galleries = tg_refs(a, s, &sc->n_galleries, idpool);
}

static inline void tg_entity(struct tg_arena *a, uint64_t *s,
                             struct kv_entity *e)
{
    static const uint8_t types[] = {KV_PERFORMER, KV_TAG, KV_STUDIO, KV_GROUP,
                                    KV_GALLERY};
    memset(e, 0, sizeof *e);
    e->type = types[tg_below(s, 5)];
    e->id = tg_u64(s);
    e->name = tg_str(a, s);
    e->sort_name = tg_str(a, s);
    e->disambiguation = tg_str(a, s);
    e->description = tg_str(a, s);
    e->image = tg_str(a, s);
    e->back_image = tg_str(a, s);
    e->birthdate = tg_str(a, s);
    e->country = tg_str(a, s);
    e->director = tg_str(a, s);
    e->date = tg_date(s);
    e->created_at = tg_str(a, s);
    e->updated_at = tg_str(a, s);
    e->gender = (uint8_t)tg_below(s, KV_GENDER_NON_BINARY + 1);
    e->favorite = tg_below(s, 2);
    e->rating100 = tg_i32(s);
    e->duration = tg_i32(s);
    e->image_count = tg_i32(s);
    e->studio_id = tg_u64(s);
    if ((e->n_aliases = tg_count(s)) != 0) {
        e->aliases = tg_alloc(a, e->n_aliases * sizeof *e->aliases);
        for (uint32_t i = 0; i < e->n_aliases; i++)
            e->aliases[i] = tg_str(a, s);
    }
    if ((e->n_parents = tg_count(s)) != 0) {
        e->parents = tg_alloc(a, e->n_parents * sizeof *e->parents);
        for (uint32_t i = 0; i < e->n_parents; i++)
            e->parents[i] = tg_u64(s);
    }
    if ((e->n_tags = tg_count(s)) != 0) {
        e->tags = tg_alloc(a, e->n_tags * sizeof *e->tags);
        for (uint32_t i = 0; i < e->n_tags; i++)
            e->tags[i] = tg_u64(s);
    }
}
