/*
 * kv_codec.c - the versioned binary records of scenes and entities.
 *
 * Format (docs/STORE.md): a magic byte and a record version byte, then
 * every field in a fixed order.  Unsigned integers are LEB128 varints,
 * signed ones zigzag varints, doubles 8 bytes IEEE-754 little-endian
 * (finite only), booleans one byte 0/1, strings a varint (length + 1,
 * 0 = null) then the bytes, arrays a varint count then the elements.
 * Scene records are written as version 2, whose entity refs carry their
 * images' presence in a flags byte instead of the image URLs (version 1,
 * still read: a ref's URLs were a quarter of a record's bytes, and the API
 * only ever asked whether they were there).
 *
 * Encoding validates the limits and writes into the room the buffer has,
 * once more when the record did not fit (encode()).  Decoding (untrusted bytes)
 * also runs twice: a dry pass that bounds-checks everything and sums the array
 * sizes, then a filling pass into a single allocation (the "arena").  The arena
 * starts with the first non-empty array in field order, which is how
 * kv_scene_fini/kv_entity_fini find it. Strings are borrowed from the input
 * buffer.
 */
#include <assert.h>
#include <math.h>
#include <stdalign.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_limits.h"
#include "kv/kv_int.h"

/* ---- Names ----------------------------------------------------------- */

const char *kv_gender_name(uint8_t g)
{
    static const char *const names[KV_GENDER_COUNT] = {
        [KV_GENDER_MALE] = "MALE",
        [KV_GENDER_FEMALE] = "FEMALE",
        [KV_GENDER_TRANSGENDER_MALE] = "TRANSGENDER_MALE",
        [KV_GENDER_TRANSGENDER_FEMALE] = "TRANSGENDER_FEMALE",
        [KV_GENDER_INTERSEX] = "INTERSEX",
        [KV_GENDER_NON_BINARY] = "NON_BINARY",
    };
    return g < KV_GENDER_COUNT ? names[g] : NULL;
}

/* ---- Encoding -------------------------------------------------------- */

/* The flags byte of a ref (scene records of version 2). */
#define REF_FAVORITE   1
#define REF_IMAGE      2
#define REF_BACK_IMAGE 4

struct enc {
    uint8_t *p;        /* the output */
    size_t cap;        /* room at p */
    size_t n;          /* bytes produced so far (counted past cap too) */
    enum cm_status st; /* first error */
};

/* Bytes that do not fit are counted, not written; from the first one on
 * nothing is written (n stays past cap), and encode() runs again with
 * room for all. */
static void put_byte(struct enc *e, uint8_t b)
{
    if (e->n < e->cap)
        e->p[e->n] = b;
    e->n++;
}

static void put_bytes(struct enc *e, const void *src, size_t n)
{
    if (n && e->n < e->cap && n <= e->cap - e->n)
        memcpy(e->p + e->n, src, n);
    e->n += n;
}

static void put_uv(struct enc *e, uint64_t v)
{
    while (v >= 0x80) {
        put_byte(e, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_byte(e, (uint8_t)v);
}

static void put_sv(struct enc *e, int64_t v)
{
    uint64_t u = (uint64_t)v << 1;
    if (v < 0)
        u = ~u;
    put_uv(e, u);
}

static void put_bool(struct enc *e, bool b)
{
    put_byte(e, b ? 1 : 0);
}

static void put_dbl(struct enc *e, double d)
{
    uint64_t u;
    uint8_t b[8];
    if (!isfinite(d) && e->st == CM_OK)
        e->st = CM_INVALID;
    memcpy(&u, &d, sizeof u);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(u >> (8 * i));
    put_bytes(e, b, 8);
}

static void put_str(struct enc *e, struct kv_str s)
{
    if (!s.p) {
        put_uv(e, 0);
        return;
    }
    if (s.len > CM_MAX_STRING) {
        if (e->st == CM_OK)
            e->st = CM_INVALID;
        return;
    }
    put_uv(e, (uint64_t)s.len + 1);
    put_bytes(e, s.p, s.len);
}

/* Writes an array count; returns 0 (and records CM_INVALID) when the array
 * is too long or missing, so the caller skips its elements. */
static int put_count(struct enc *e, uint32_t n, const void *arr)
{
    if (n > CM_MAX_ARRAY || (n && !arr)) {
        if (e->st == CM_OK)
            e->st = CM_INVALID;
        return 0;
    }
    put_uv(e, n);
    return 1;
}

static void put_gender(struct enc *e, uint8_t g)
{
    if (g > KV_GENDER_NON_BINARY && e->st == CM_OK)
        e->st = CM_INVALID;
    put_uv(e, g);
}

static void put_date(struct enc *e, struct kv_date d)
{
    put_sv(e, d.year);
    put_uv(e, d.month);
    put_uv(e, d.day);
}

/* Refs of scene records since version 2: the image URLs are not
 * embedded, only their presence, in one flags byte with favorite. */
static void put_ref(struct enc *e, const struct kv_ref *r)
{
    put_uv(e, r->id);
    put_str(e, r->name);
    put_str(e, r->aux);
    put_sv(e, r->rating100);
    put_sv(e, r->index);
    put_gender(e, r->gender);
    put_byte(e, (uint8_t)((r->favorite ? REF_FAVORITE : 0) |
                          (r->has_image ? REF_IMAGE : 0) |
                          (r->has_back_image ? REF_BACK_IMAGE : 0)));
}

static void put_refs(struct enc *e, uint32_t n, const struct kv_ref *a)
{
    if (put_count(e, n, a))
        for (uint32_t i = 0; i < n; i++)
            put_ref(e, &a[i]);
}

static void put_file(struct enc *e, const struct kv_file *f)
{
    put_uv(e, f->id);
    put_str(e, f->path);
    put_str(e, f->basename);
    put_str(e, f->format);
    put_str(e, f->video_codec);
    put_str(e, f->audio_codec);
    put_str(e, f->mod_time);
    put_str(e, f->oshash);
    put_str(e, f->md5);
    put_str(e, f->phash);
    put_sv(e, f->size);
    put_dbl(e, f->duration);
    put_dbl(e, f->frame_rate);
    put_sv(e, f->bit_rate);
    put_sv(e, f->width);
    put_sv(e, f->height);
}

static void scene_fields(struct enc *e, const struct kv_scene *sc)
{
    put_byte(e, KV_SCENE_MAGIC);
    put_byte(e, KV_SCENE_VERSION);
    put_uv(e, sc->id);
    put_str(e, sc->title);
    put_str(e, sc->code);
    put_str(e, sc->details);
    put_str(e, sc->director);
    put_date(e, sc->date);
    put_sv(e, sc->rating100);
    put_byte(e, (uint8_t)((sc->organized ? 1 : 0) | (sc->interactive ? 2 : 0)));
    put_sv(e, sc->interactive_speed);
    put_sv(e, sc->o_counter);
    put_sv(e, sc->play_count);
    put_dbl(e, sc->play_duration);
    put_dbl(e, sc->resume_time);
    put_str(e, sc->last_played_at);
    put_str(e, sc->created_at);
    put_str(e, sc->updated_at);
    put_str(e, sc->p_screenshot);
    put_str(e, sc->p_preview);
    put_str(e, sc->p_webp);
    put_str(e, sc->p_vtt);
    put_str(e, sc->p_sprite);
    put_str(e, sc->p_funscript);
    put_str(e, sc->p_caption);
    if (put_count(e, sc->n_urls, sc->urls))
        for (uint32_t i = 0; i < sc->n_urls; i++)
            put_str(e, sc->urls[i]);
    if (put_count(e, sc->n_files, sc->files))
        for (uint32_t i = 0; i < sc->n_files; i++)
            put_file(e, &sc->files[i]);
    if (put_count(e, sc->n_captions, sc->captions))
        for (uint32_t i = 0; i < sc->n_captions; i++) {
            put_str(e, sc->captions[i].language_code);
            put_str(e, sc->captions[i].caption_type);
        }
    if (put_count(e, sc->n_stash_ids, sc->stash_ids))
        for (uint32_t i = 0; i < sc->n_stash_ids; i++) {
            put_str(e, sc->stash_ids[i].endpoint);
            put_str(e, sc->stash_ids[i].stash_id);
        }
    if (put_count(e, sc->n_markers, sc->markers))
        for (uint32_t i = 0; i < sc->n_markers; i++) {
            const struct kv_marker *m = &sc->markers[i];
            put_uv(e, m->id);
            put_str(e, m->title);
            put_dbl(e, m->seconds);
            put_dbl(e, m->end_seconds);
            put_uv(e, m->primary_tag_id);
        }
    put_ref(e, &sc->studio);
    put_refs(e, sc->n_performers, sc->performers);
    put_refs(e, sc->n_tags, sc->tags);
    put_refs(e, sc->n_groups, sc->groups);
    put_refs(e, sc->n_galleries, sc->galleries);
}

static bool etype_ok(uint8_t t)
{
    return t == KV_PERFORMER || t == KV_TAG || t == KV_STUDIO ||
           t == KV_GROUP || t == KV_GALLERY;
}

static void entity_fields(struct enc *e, const struct kv_entity *en)
{
    put_byte(e, KV_ENTITY_MAGIC);
    put_byte(e, KV_ENTITY_VERSION);
    if (!etype_ok(en->type) && e->st == CM_OK)
        e->st = CM_INVALID;
    put_byte(e, en->type);
    put_uv(e, en->id);
    put_str(e, en->name);
    put_str(e, en->sort_name);
    put_str(e, en->disambiguation);
    put_str(e, en->description);
    put_str(e, en->image);
    put_str(e, en->back_image);
    put_str(e, en->birthdate);
    put_str(e, en->country);
    put_str(e, en->director);
    put_date(e, en->date);
    put_str(e, en->created_at);
    put_str(e, en->updated_at);
    put_gender(e, en->gender);
    put_bool(e, en->favorite);
    put_sv(e, en->rating100);
    put_sv(e, en->duration);
    put_sv(e, en->image_count);
    put_uv(e, en->studio_id);
    if (put_count(e, en->n_aliases, en->aliases))
        for (uint32_t i = 0; i < en->n_aliases; i++)
            put_str(e, en->aliases[i]);
    if (put_count(e, en->n_parents, en->parents))
        for (uint32_t i = 0; i < en->n_parents; i++)
            put_uv(e, en->parents[i]);
    if (put_count(e, en->n_tags, en->tags))
        for (uint32_t i = 0; i < en->n_tags; i++)
            put_uv(e, en->tags[i]);
}

/* Validates rec and appends its bytes with fields(e, rec), in one pass
 * into the room out already has (a record's worth once it has held one;
 * 4 KiB at first); a record that does not fit is encoded again into room
 * for its counted size.  (A sizing pass before every record was a third
 * of the encoding's instructions.) */
static enum cm_status encode(void (*fields)(struct enc *, const void *),
                             const void *rec, struct cm_buf *out)
{
    struct enc e = {NULL, 0, 0, CM_OK};
    size_t room;
    enum cm_status st;

    if (!rec || !out)
        return CM_INVALID;
    room = out->cap > out->len + 1 ? out->cap - out->len - 1 : 0;
    if (room < 4096) {
        room = out->max - out->len < 4096 ? out->max - out->len : 4096;
        if ((st = cm_buf_reserve(out, room)) != CM_OK)
            return st;
    }
    e.p = (uint8_t *)out->data + out->len;
    e.cap = room;
    fields(&e, rec);
    if (e.st != CM_OK)
        return e.st;
    if (e.n > CM_MAX_RECORD)
        return CM_TOOBIG;
    if (e.n > room) {
        size_t want = e.n;
        if ((st = cm_buf_reserve(out, want)) != CM_OK)
            return st;
        e = (struct enc){(uint8_t *)out->data + out->len, want, 0, CM_OK};
        fields(&e, rec);
        assert(e.n == want && e.st == CM_OK);
    }
    out->len += e.n;
    out->data[out->len] = '\0';
    return CM_OK;
}

static void scene_fields_v(struct enc *e, const void *rec)
{
    scene_fields(e, rec);
}

static void entity_fields_v(struct enc *e, const void *rec)
{
    entity_fields(e, rec);
}

enum cm_status kv_scene_encode(const struct kv_scene *sc, struct cm_buf *out)
{
    return encode(scene_fields_v, sc, out);
}

enum cm_status kv_entity_encode(const struct kv_entity *e, struct cm_buf *out)
{
    return encode(entity_fields_v, e, out);
}

/* ---- Decoding -------------------------------------------------------- */

struct dec {
    const uint8_t *p, *end;
    char *arena; /* NULL in the dry pass */
    size_t used; /* arena bytes handed out (filling pass) */
    size_t need; /* arena bytes needed (dry pass) */
    size_t cap;  /* arena bytes (filling pass) */
    bool short_; /* the filling pass ran out of arena (kv_scene_decode_in) */
    uint8_t ver; /* the record's version */
};

#define RD(call)                                                               \
    do {                                                                       \
        enum cm_status st_ = (call);                                           \
        if (st_ != CM_OK)                                                      \
            return st_;                                                        \
    } while (0)

#define ARENA_ALIGN 8

static size_t left(const struct dec *d)
{
    return (size_t)(d->end - d->p);
}

static enum cm_status get_byte(struct dec *d, uint8_t *out)
{
    if (d->p >= d->end)
        return CM_CORRUPT;
    *out = *d->p++;
    return CM_OK;
}

static enum cm_status get_uv(struct dec *d, uint64_t *out)
{
    uint64_t v = 0;
    if (d->p < d->end && *d->p < 0x80) { /* one byte: most counts, lengths */
        *out = *d->p++;
        return CM_OK;
    }
    for (unsigned i = 0; i < 10; i++) {
        uint8_t b;
        RD(get_byte(d, &b));
        if (i == 9 && b > 1)
            return CM_CORRUPT; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return CM_OK;
        }
    }
    return CM_CORRUPT;
}

static enum cm_status get_sv(struct dec *d, int64_t *out)
{
    uint64_t u;
    RD(get_uv(d, &u));
    if (u & 1)
        *out = -(int64_t)(u >> 1) - 1;
    else
        *out = (int64_t)(u >> 1);
    return CM_OK;
}

static enum cm_status get_i32(struct dec *d, int32_t *out)
{
    int64_t v;
    RD(get_sv(d, &v));
    if (v < INT32_MIN || v > INT32_MAX)
        return CM_CORRUPT;
    *out = (int32_t)v;
    return CM_OK;
}

static enum cm_status get_u8(struct dec *d, uint8_t *out)
{
    uint64_t v;
    RD(get_uv(d, &v));
    if (v > UINT8_MAX)
        return CM_CORRUPT;
    *out = (uint8_t)v;
    return CM_OK;
}

static enum cm_status get_gender(struct dec *d, uint8_t *out)
{
    RD(get_u8(d, out));
    return *out <= KV_GENDER_NON_BINARY ? CM_OK : CM_CORRUPT;
}

static enum cm_status get_bool(struct dec *d, bool *out)
{
    uint8_t b;
    RD(get_byte(d, &b));
    if (b > 1)
        return CM_CORRUPT;
    *out = b == 1;
    return CM_OK;
}

static enum cm_status get_dbl(struct dec *d, double *out)
{
    uint64_t u = 0;
    if (left(d) < 8)
        return CM_CORRUPT;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)d->p[i] << (8 * i);
    d->p += 8;
    memcpy(out, &u, sizeof *out);
    return isfinite(*out) ? CM_OK : CM_CORRUPT;
}

static enum cm_status get_str(struct dec *d, struct kv_str *out)
{
    uint64_t n;
    RD(get_uv(d, &n));
    if (n == 0) {
        out->p = NULL;
        out->len = 0;
        return CM_OK;
    }
    n--;
    if (n > CM_MAX_STRING || n > left(d))
        return CM_CORRUPT;
    out->p = (const char *)d->p;
    out->len = (uint32_t)n;
    d->p += n;
    return CM_OK;
}

static enum cm_status get_date(struct dec *d, struct kv_date *out)
{
    int64_t y;
    RD(get_sv(d, &y));
    if (y < INT16_MIN || y > INT16_MAX)
        return CM_CORRUPT;
    out->year = (int16_t)y;
    RD(get_u8(d, &out->month));
    return get_u8(d, &out->day);
}

/* Reads an array count, checks it against the limit and against the bytes
 * left (each element takes at least min_enc bytes) BEFORE anything is
 * allocated, then reserves (dry pass) or hands out (filling pass) the
 * array.  *arr is NULL for an empty array and in the dry pass. */
static enum cm_status get_array(struct dec *d, size_t min_enc, size_t elem,
                                uint32_t *n, void **arr)
{
    uint64_t c;
    size_t off, bytes;

    *arr = NULL;
    RD(get_uv(d, &c));
    if (c > CM_MAX_ARRAY || c > left(d) / min_enc)
        return CM_CORRUPT;
    *n = (uint32_t)c;
    if (c == 0)
        return CM_OK;
    if (__builtin_mul_overflow((size_t)c, elem, &bytes))
        return CM_CORRUPT;
    if (!d->arena) {
        off = (d->need + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
        if (off < d->need || __builtin_add_overflow(off, bytes, &d->need))
            return CM_CORRUPT;
        return CM_OK;
    }
    off = (d->used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (off < d->used || off > d->cap || bytes > d->cap - off) {
        d->short_ = true; /* only a reused arena can be short */
        return CM_TOOBIG;
    }
    *arr = d->arena + off;
    d->used = off + bytes;
    return CM_OK;
}

/* Minimum encoded sizes of array elements. */
#define MIN_STR      1
#define MIN_U64      1
#define MIN_FILE     30
#define MIN_CAPTION  2
#define MIN_STASH_ID 2
#define MIN_MARKER   19
#define MIN_REF      7

/* A ref of a version 1 record: the image URL where version 2 has its
 * presence, and a group's back image URL in aux. */
static enum cm_status get_ref_v1(struct dec *d, struct kv_ref *r, bool group)
{
    struct kv_str image;
    RD(get_str(d, &image));
    RD(get_str(d, &r->aux));
    r->has_image = kv_str_set(image);
    r->has_back_image = group && kv_str_set(r->aux);
    if (group)
        r->aux = (struct kv_str){NULL, 0};
    RD(get_i32(d, &r->rating100));
    RD(get_i32(d, &r->index));
    RD(get_gender(d, &r->gender));
    return get_bool(d, &r->favorite);
}

static enum cm_status get_ref(struct dec *d, struct kv_ref *r, bool group)
{
    uint8_t flags;
    RD(get_uv(d, &r->id));
    RD(get_str(d, &r->name));
    if (d->ver == 1)
        return get_ref_v1(d, r, group);
    RD(get_str(d, &r->aux));
    RD(get_i32(d, &r->rating100));
    RD(get_i32(d, &r->index));
    RD(get_gender(d, &r->gender));
    RD(get_byte(d, &flags));
    if (flags & ~(REF_FAVORITE | REF_IMAGE | REF_BACK_IMAGE))
        return CM_CORRUPT;
    r->favorite = (flags & REF_FAVORITE) != 0;
    r->has_image = (flags & REF_IMAGE) != 0;
    r->has_back_image = (flags & REF_BACK_IMAGE) != 0;
    return CM_OK;
}

static enum cm_status get_refs(struct dec *d, uint32_t *n, struct kv_ref **out,
                               bool group)
{
    void *arr;
    struct kv_ref tmp;
    RD(get_array(d, MIN_REF, sizeof **out, n, &arr));
    *out = arr;
    for (uint32_t i = 0; i < *n; i++)
        RD(get_ref(d, arr ? &(*out)[i] : &tmp, group));
    return CM_OK;
}

static enum cm_status get_file(struct dec *d, struct kv_file *f)
{
    RD(get_uv(d, &f->id));
    RD(get_str(d, &f->path));
    RD(get_str(d, &f->basename));
    RD(get_str(d, &f->format));
    RD(get_str(d, &f->video_codec));
    RD(get_str(d, &f->audio_codec));
    RD(get_str(d, &f->mod_time));
    RD(get_str(d, &f->oshash));
    RD(get_str(d, &f->md5));
    RD(get_str(d, &f->phash));
    RD(get_sv(d, &f->size));
    RD(get_dbl(d, &f->duration));
    RD(get_dbl(d, &f->frame_rate));
    RD(get_sv(d, &f->bit_rate));
    RD(get_i32(d, &f->width));
    return get_i32(d, &f->height);
}

static enum cm_status get_marker(struct dec *d, struct kv_marker *m)
{
    RD(get_uv(d, &m->id));
    RD(get_str(d, &m->title));
    RD(get_dbl(d, &m->seconds));
    RD(get_dbl(d, &m->end_seconds));
    return get_uv(d, &m->primary_tag_id);
}

static enum cm_status scene_arrays(struct dec *d, struct kv_scene *o)
{
    void *arr;
    struct kv_str ts;
    struct kv_file tf;
    struct kv_caption tc;
    struct kv_stash_id ti;
    struct kv_marker tm;

    RD(get_array(d, MIN_STR, sizeof *o->urls, &o->n_urls, &arr));
    o->urls = arr;
    for (uint32_t i = 0; i < o->n_urls; i++)
        RD(get_str(d, arr ? &o->urls[i] : &ts));
    RD(get_array(d, MIN_FILE, sizeof *o->files, &o->n_files, &arr));
    o->files = arr;
    for (uint32_t i = 0; i < o->n_files; i++)
        RD(get_file(d, arr ? &o->files[i] : &tf));
    RD(get_array(d, MIN_CAPTION, sizeof *o->captions, &o->n_captions, &arr));
    o->captions = arr;
    for (uint32_t i = 0; i < o->n_captions; i++) {
        struct kv_caption *c = arr ? &o->captions[i] : &tc;
        RD(get_str(d, &c->language_code));
        RD(get_str(d, &c->caption_type));
    }
    RD(get_array(d, MIN_STASH_ID, sizeof *o->stash_ids, &o->n_stash_ids, &arr));
    o->stash_ids = arr;
    for (uint32_t i = 0; i < o->n_stash_ids; i++) {
        struct kv_stash_id *s = arr ? &o->stash_ids[i] : &ti;
        RD(get_str(d, &s->endpoint));
        RD(get_str(d, &s->stash_id));
    }
    RD(get_array(d, MIN_MARKER, sizeof *o->markers, &o->n_markers, &arr));
    o->markers = arr;
    for (uint32_t i = 0; i < o->n_markers; i++)
        RD(get_marker(d, arr ? &o->markers[i] : &tm));
    RD(get_ref(d, &o->studio, false));
    RD(get_refs(d, &o->n_performers, &o->performers, false));
    RD(get_refs(d, &o->n_tags, &o->tags, false));
    RD(get_refs(d, &o->n_groups, &o->groups, true));
    return get_refs(d, &o->n_galleries, &o->galleries, false);
}

static enum cm_status scene_body(struct dec *d, struct kv_scene *o)
{
    uint8_t flags;
    memset(o, 0, sizeof *o);
    RD(get_uv(d, &o->id));
    RD(get_str(d, &o->title));
    RD(get_str(d, &o->code));
    RD(get_str(d, &o->details));
    RD(get_str(d, &o->director));
    RD(get_date(d, &o->date));
    RD(get_i32(d, &o->rating100));
    RD(get_byte(d, &flags));
    if (flags & ~3u)
        return CM_CORRUPT;
    o->organized = flags & 1;
    o->interactive = (flags & 2) != 0;
    RD(get_i32(d, &o->interactive_speed));
    RD(get_i32(d, &o->o_counter));
    RD(get_i32(d, &o->play_count));
    RD(get_dbl(d, &o->play_duration));
    RD(get_dbl(d, &o->resume_time));
    RD(get_str(d, &o->last_played_at));
    RD(get_str(d, &o->created_at));
    RD(get_str(d, &o->updated_at));
    RD(get_str(d, &o->p_screenshot));
    RD(get_str(d, &o->p_preview));
    RD(get_str(d, &o->p_webp));
    RD(get_str(d, &o->p_vtt));
    RD(get_str(d, &o->p_sprite));
    RD(get_str(d, &o->p_funscript));
    RD(get_str(d, &o->p_caption));
    return scene_arrays(d, o);
}

static enum cm_status get_u64s(struct dec *d, uint32_t *n, uint64_t **out)
{
    void *arr;
    uint64_t tmp;
    RD(get_array(d, MIN_U64, sizeof **out, n, &arr));
    *out = arr;
    for (uint32_t i = 0; i < *n; i++)
        RD(get_uv(d, arr ? &(*out)[i] : &tmp));
    return CM_OK;
}

static enum cm_status entity_body(struct dec *d, struct kv_entity *o)
{
    void *arr;
    struct kv_str ts;
    memset(o, 0, sizeof *o);
    RD(get_byte(d, &o->type));
    if (!etype_ok(o->type))
        return CM_CORRUPT;
    RD(get_uv(d, &o->id));
    RD(get_str(d, &o->name));
    RD(get_str(d, &o->sort_name));
    RD(get_str(d, &o->disambiguation));
    RD(get_str(d, &o->description));
    RD(get_str(d, &o->image));
    RD(get_str(d, &o->back_image));
    RD(get_str(d, &o->birthdate));
    RD(get_str(d, &o->country));
    RD(get_str(d, &o->director));
    RD(get_date(d, &o->date));
    RD(get_str(d, &o->created_at));
    RD(get_str(d, &o->updated_at));
    RD(get_gender(d, &o->gender));
    RD(get_bool(d, &o->favorite));
    RD(get_i32(d, &o->rating100));
    RD(get_i32(d, &o->duration));
    RD(get_i32(d, &o->image_count));
    RD(get_uv(d, &o->studio_id));
    RD(get_array(d, MIN_STR, sizeof *o->aliases, &o->n_aliases, &arr));
    o->aliases = arr;
    for (uint32_t i = 0; i < o->n_aliases; i++)
        RD(get_str(d, arr ? &o->aliases[i] : &ts));
    RD(get_u64s(d, &o->n_parents, &o->parents));
    return get_u64s(d, &o->n_tags, &o->tags);
}

/* Checks the header, runs body() dry over the rest, then for real into
 * one arena.  On failure *out is zeroed. */
static enum cm_status decode(const void *buf, size_t len, uint8_t magic,
                             uint8_t vmin, uint8_t vmax,
                             enum cm_status (*body)(struct dec *, void *),
                             void *out, size_t out_size)
{
    const uint8_t *b = buf;
    struct dec d;
    enum cm_status st;

    memset(out, 0, out_size);
    if (!buf && len)
        return CM_INVALID;
    if (len < 2 || b[0] != magic)
        return CM_CORRUPT;
    if (b[1] < vmin || b[1] > vmax)
        return CM_VERSION;
    if (len > CM_MAX_RECORD)
        return CM_CORRUPT;
    d = (struct dec){b + 2, b + len, NULL, 0, 0, 0, false, b[1]};
    st = body(&d, out);
    if (st == CM_OK && d.p != d.end)
        st = CM_CORRUPT; /* trailing bytes */
    if (st != CM_OK || d.need == 0) {
        if (st != CM_OK)
            memset(out, 0, out_size);
        return st; /* no arrays: the dry pass filled *out */
    }
    d.arena = cm_malloc(d.need);
    if (!d.arena) {
        memset(out, 0, out_size);
        return CM_NOMEM;
    }
    size_t need = d.need;
    d.p = b + 2;
    d.used = 0;
    d.cap = need;
    st = body(&d, out);
    assert(st == CM_OK && d.used == need);
    (void)need;
    return st;
}

static enum cm_status scene_body_v(struct dec *d, void *o)
{
    return scene_body(d, o);
}

static enum cm_status entity_body_v(struct dec *d, void *o)
{
    return entity_body(d, o);
}

enum cm_status kv_scene_decode(const void *buf, size_t len,
                               struct kv_scene *out)
{
    if (!out)
        return CM_INVALID;
    return decode(buf, len, KV_SCENE_MAGIC, KV_SCENE_VERSION_MIN,
                  KV_SCENE_VERSION, scene_body_v, out, sizeof *out);
}

enum cm_status kv_entity_decode(const void *buf, size_t len,
                                struct kv_entity *out)
{
    if (!out)
        return CM_INVALID;
    return decode(buf, len, KV_ENTITY_MAGIC, KV_ENTITY_VERSION,
                  KV_ENTITY_VERSION, entity_body_v, out, sizeof *out);
}

enum cm_status kv_scene_decode_in(const void *buf, size_t len,
                                  struct cm_buf *arena, struct kv_scene *out)
{
    const uint8_t *b = buf;
    struct dec d;
    enum cm_status st = CM_OK;

    if (!out || !arena)
        return CM_INVALID;
    memset(out, 0, sizeof *out);
    if (!buf && len)
        return CM_INVALID;
    if (len < 2 || b[0] != KV_SCENE_MAGIC)
        return CM_CORRUPT;
    if (b[1] < KV_SCENE_VERSION_MIN || b[1] > KV_SCENE_VERSION)
        return CM_VERSION;
    if (len > CM_MAX_RECORD)
        return CM_CORRUPT;
    cm_buf_reset(arena);
    /* One filling pass when the arena is big enough (the usual case once
     * it has grown); else the dry pass sizes it and the filling pass runs
     * again, as in kv_scene_decode. */
    d = (struct dec){b + 2, b + len,    arena->data, 0,
                     0,     arena->cap, false,       b[1]};
    if (arena->data)
        st = scene_body(&d, out);
    if (!arena->data || d.short_) {
        d = (struct dec){b + 2, b + len, NULL, 0, 0, 0, false, b[1]};
        st = scene_body(&d, out);
        if (st == CM_OK && d.need) {
            st = cm_buf_reserve(arena, d.need);
            d = (struct dec){b + 2, b + len,    arena->data, 0,
                             0,     arena->cap, false,       b[1]};
            if (st == CM_OK)
                st = scene_body(&d, out);
        }
    }
    if (st == CM_OK && d.p != d.end)
        st = CM_CORRUPT; /* trailing bytes */
    if (st != CM_OK)
        memset(out, 0, sizeof *out);
    return st;
}

void kv_scene_fini(struct kv_scene *sc)
{
    /* The arena begins with the first non-empty array in field order. */
    void *first[] = {
        sc ? sc->urls : NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (!sc)
        return;
    first[1] = sc->files;
    first[2] = sc->captions;
    first[3] = sc->stash_ids;
    first[4] = sc->markers;
    first[5] = sc->performers;
    first[6] = sc->tags;
    first[7] = sc->groups;
    first[8] = sc->galleries;
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        if (first[i]) {
            cm_free(first[i]);
            break;
        }
    memset(sc, 0, sizeof *sc);
}

void kv_entity_fini(struct kv_entity *e)
{
    if (!e)
        return;
    if (e->aliases)
        cm_free(e->aliases);
    else if (e->parents)
        cm_free(e->parents);
    else if (e->tags)
        cm_free(e->tags);
    memset(e, 0, sizeof *e);
}

/* ---- Equality -------------------------------------------------------- */

static bool str_eq(struct kv_str a, struct kv_str b)
{
    if (!a.p || !b.p)
        return !a.p && !b.p;
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool date_eq(struct kv_date a, struct kv_date b)
{
    return a.year == b.year && a.month == b.month && a.day == b.day;
}

static bool ref_eq(const struct kv_ref *a, const struct kv_ref *b)
{
    return a->id == b->id && str_eq(a->name, b->name) &&
           str_eq(a->aux, b->aux) && a->rating100 == b->rating100 &&
           a->index == b->index && a->gender == b->gender &&
           a->favorite == b->favorite && a->has_image == b->has_image &&
           a->has_back_image == b->has_back_image;
}

static bool refs_eq(uint32_t n, const struct kv_ref *a, const struct kv_ref *b)
{
    for (uint32_t i = 0; i < n; i++)
        if (!ref_eq(&a[i], &b[i]))
            return false;
    return true;
}

static bool file_eq(const struct kv_file *a, const struct kv_file *b)
{
    return a->id == b->id && str_eq(a->path, b->path) &&
           str_eq(a->basename, b->basename) && str_eq(a->format, b->format) &&
           str_eq(a->video_codec, b->video_codec) &&
           str_eq(a->audio_codec, b->audio_codec) &&
           str_eq(a->mod_time, b->mod_time) && str_eq(a->oshash, b->oshash) &&
           str_eq(a->md5, b->md5) && str_eq(a->phash, b->phash) &&
           a->size == b->size && a->duration == b->duration &&
           a->frame_rate == b->frame_rate && a->bit_rate == b->bit_rate &&
           a->width == b->width && a->height == b->height;
}

static bool scene_arrays_eq(const struct kv_scene *a, const struct kv_scene *b)
{
    if (a->n_urls != b->n_urls || a->n_files != b->n_files ||
        a->n_captions != b->n_captions || a->n_stash_ids != b->n_stash_ids ||
        a->n_markers != b->n_markers || a->n_performers != b->n_performers ||
        a->n_tags != b->n_tags || a->n_groups != b->n_groups ||
        a->n_galleries != b->n_galleries)
        return false;
    for (uint32_t i = 0; i < a->n_urls; i++)
        if (!str_eq(a->urls[i], b->urls[i]))
            return false;
    for (uint32_t i = 0; i < a->n_files; i++)
        if (!file_eq(&a->files[i], &b->files[i]))
            return false;
    for (uint32_t i = 0; i < a->n_captions; i++)
        if (!str_eq(a->captions[i].language_code,
                    b->captions[i].language_code) ||
            !str_eq(a->captions[i].caption_type, b->captions[i].caption_type))
            return false;
    for (uint32_t i = 0; i < a->n_stash_ids; i++)
        if (!str_eq(a->stash_ids[i].endpoint, b->stash_ids[i].endpoint) ||
            !str_eq(a->stash_ids[i].stash_id, b->stash_ids[i].stash_id))
            return false;
    for (uint32_t i = 0; i < a->n_markers; i++) {
        const struct kv_marker *x = &a->markers[i], *y = &b->markers[i];
        if (x->id != y->id || !str_eq(x->title, y->title) ||
            x->seconds != y->seconds || x->end_seconds != y->end_seconds ||
            x->primary_tag_id != y->primary_tag_id)
            return false;
    }
    return ref_eq(&a->studio, &b->studio) &&
           refs_eq(a->n_performers, a->performers, b->performers) &&
           refs_eq(a->n_tags, a->tags, b->tags) &&
           refs_eq(a->n_groups, a->groups, b->groups) &&
           refs_eq(a->n_galleries, a->galleries, b->galleries);
}

bool kv_scene_equal(const struct kv_scene *a, const struct kv_scene *b)
{
    if (!a || !b)
        return a == b;
    return a->id == b->id && str_eq(a->title, b->title) &&
           str_eq(a->code, b->code) && str_eq(a->details, b->details) &&
           str_eq(a->director, b->director) && date_eq(a->date, b->date) &&
           a->rating100 == b->rating100 && a->organized == b->organized &&
           a->interactive == b->interactive &&
           a->interactive_speed == b->interactive_speed &&
           a->o_counter == b->o_counter && a->play_count == b->play_count &&
           a->play_duration == b->play_duration &&
           a->resume_time == b->resume_time &&
           str_eq(a->last_played_at, b->last_played_at) &&
           str_eq(a->created_at, b->created_at) &&
           str_eq(a->updated_at, b->updated_at) &&
           str_eq(a->p_screenshot, b->p_screenshot) &&
           str_eq(a->p_preview, b->p_preview) && str_eq(a->p_webp, b->p_webp) &&
           str_eq(a->p_vtt, b->p_vtt) && str_eq(a->p_sprite, b->p_sprite) &&
           str_eq(a->p_funscript, b->p_funscript) &&
           str_eq(a->p_caption, b->p_caption) && scene_arrays_eq(a, b);
}

bool kv_entity_equal(const struct kv_entity *a, const struct kv_entity *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type || a->id != b->id || !str_eq(a->name, b->name) ||
        !str_eq(a->sort_name, b->sort_name) ||
        !str_eq(a->disambiguation, b->disambiguation) ||
        !str_eq(a->description, b->description) ||
        !str_eq(a->image, b->image) || !str_eq(a->back_image, b->back_image) ||
        !str_eq(a->birthdate, b->birthdate) ||
        !str_eq(a->country, b->country) || !str_eq(a->director, b->director) ||
        !date_eq(a->date, b->date) || !str_eq(a->created_at, b->created_at) ||
        !str_eq(a->updated_at, b->updated_at) || a->gender != b->gender ||
        a->favorite != b->favorite || a->rating100 != b->rating100 ||
        a->duration != b->duration || a->image_count != b->image_count ||
        a->studio_id != b->studio_id || a->n_aliases != b->n_aliases ||
        a->n_parents != b->n_parents || a->n_tags != b->n_tags)
        return false;
    for (uint32_t i = 0; i < a->n_aliases; i++)
        if (!str_eq(a->aliases[i], b->aliases[i]))
            return false;
    for (uint32_t i = 0; i < a->n_parents; i++)
        if (a->parents[i] != b->parents[i])
            return false;
    for (uint32_t i = 0; i < a->n_tags; i++)
        if (a->tags[i] != b->tags[i])
            return false;
    return true;
}

/* ---- Deep copy ------------------------------------------------------- */

/* Calls fn on every string field of sc, arrays included. */
static void scene_visit_strs(struct kv_scene *sc,
                             void (*fn)(struct kv_str *, void *), void *ctx)
{
    struct kv_str *top[] = {
        &sc->title,       &sc->code,           &sc->details,
        &sc->director,    &sc->last_played_at, &sc->created_at,
        &sc->updated_at,  &sc->p_screenshot,   &sc->p_preview,
        &sc->p_webp,      &sc->p_vtt,          &sc->p_sprite,
        &sc->p_funscript, &sc->p_caption,      &sc->studio.name,
        &sc->studio.aux};
    struct kv_ref *refs[] = {sc->performers, sc->tags, sc->groups,
                             sc->galleries};
    uint32_t nrefs[] = {sc->n_performers, sc->n_tags, sc->n_groups,
                        sc->n_galleries};

    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        fn(top[i], ctx);
    for (uint32_t i = 0; i < sc->n_urls; i++)
        fn(&sc->urls[i], ctx);
    for (uint32_t i = 0; i < sc->n_files; i++) {
        struct kv_file *f = &sc->files[i];
        struct kv_str *fs[] = {&f->path,        &f->basename,    &f->format,
                               &f->video_codec, &f->audio_codec, &f->mod_time,
                               &f->oshash,      &f->md5,         &f->phash};
        for (size_t j = 0; j < sizeof fs / sizeof fs[0]; j++)
            fn(fs[j], ctx);
    }
    for (uint32_t i = 0; i < sc->n_captions; i++) {
        fn(&sc->captions[i].language_code, ctx);
        fn(&sc->captions[i].caption_type, ctx);
    }
    for (uint32_t i = 0; i < sc->n_stash_ids; i++) {
        fn(&sc->stash_ids[i].endpoint, ctx);
        fn(&sc->stash_ids[i].stash_id, ctx);
    }
    for (uint32_t i = 0; i < sc->n_markers; i++)
        fn(&sc->markers[i].title, ctx);
    for (size_t k = 0; k < 4; k++)
        for (uint32_t i = 0; i < nrefs[k]; i++) {
            fn(&refs[k][i].name, ctx);
            fn(&refs[k][i].aux, ctx);
        }
}

struct clone_ctx {
    size_t size; /* sizing: bytes of string copies */
    int overflow;
    char *pool; /* copying: next free byte */
};

static void str_size(struct kv_str *s, void *ctx)
{
    struct clone_ctx *c = ctx;
    if (s->p && __builtin_add_overflow(c->size, (size_t)s->len + 1, &c->size))
        c->overflow = 1;
}

static void str_copy(struct kv_str *s, void *ctx)
{
    struct clone_ctx *c = ctx;
    if (!s->p)
        return;
    if (s->len)
        memcpy(c->pool, s->p, s->len);
    c->pool[s->len] = '\0';
    s->p = c->pool;
    c->pool += (size_t)s->len + 1;
}

/* Adds an aligned array of n * elem bytes to *size; returns its offset. */
static int arr_size(size_t *size, uint32_t n, size_t elem, size_t *off)
{
    size_t bytes;
    *off = (*size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (*off < *size || __builtin_mul_overflow((size_t)n, elem, &bytes) ||
        __builtin_add_overflow(*off, bytes, size))
        return -1;
    return 0;
}

#define CLONE_ARR(field, nfield)                                               \
    do {                                                                       \
        if (arr_size(&size, in->nfield, sizeof *in->field, &offs[k]))          \
            return CM_TOOBIG;                                                  \
        if (in->nfield && !in->field)                                          \
            return CM_INVALID;                                                 \
        k++;                                                                   \
    } while (0)

#define CLONE_SET(field, nfield)                                               \
    do {                                                                       \
        c->field = in->nfield ? (void *)(blk + offs[k]) : NULL;                \
        if (in->nfield)                                                        \
            memcpy(c->field, in->field, in->nfield * sizeof *in->field);       \
        k++;                                                                   \
    } while (0)

enum cm_status kv_scene_clone(const struct kv_scene *in, struct kv_scene **out)
{
    size_t size = sizeof(struct kv_scene), offs[9];
    struct clone_ctx cc = {0, 0, NULL};
    struct kv_scene *c;
    char *blk;
    int k = 0;

    if (!out)
        return CM_INVALID;
    *out = NULL;
    if (!in)
        return CM_INVALID;
    CLONE_ARR(urls, n_urls);
    CLONE_ARR(files, n_files);
    CLONE_ARR(captions, n_captions);
    CLONE_ARR(stash_ids, n_stash_ids);
    CLONE_ARR(markers, n_markers);
    CLONE_ARR(performers, n_performers);
    CLONE_ARR(tags, n_tags);
    CLONE_ARR(groups, n_groups);
    CLONE_ARR(galleries, n_galleries);
    scene_visit_strs((struct kv_scene *)in, str_size, &cc);
    if (cc.overflow || __builtin_add_overflow(size, cc.size, &cc.size))
        return CM_TOOBIG;
    blk = cm_malloc(cc.size);
    if (!blk)
        return CM_NOMEM;
    c = (struct kv_scene *)blk;
    *c = *in;
    k = 0;
    CLONE_SET(urls, n_urls);
    CLONE_SET(files, n_files);
    CLONE_SET(captions, n_captions);
    CLONE_SET(stash_ids, n_stash_ids);
    CLONE_SET(markers, n_markers);
    CLONE_SET(performers, n_performers);
    CLONE_SET(tags, n_tags);
    CLONE_SET(groups, n_groups);
    CLONE_SET(galleries, n_galleries);
    cc.pool = blk + size;
    scene_visit_strs(c, str_copy, &cc);
    assert(cc.pool == blk + cc.size);
    *out = c;
    return CM_OK;
}

void kv_scene_free(struct kv_scene *sc)
{
    cm_free(sc);
}
