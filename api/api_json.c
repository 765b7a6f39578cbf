/*
 * api_json.c - hand-written JSON rendering of scenes (Peek's
 * NormalizedScene, peek-api.md §4.2) straight into a cm_buf: no cJSON
 * trees on the hot path.  Arrays are never null; every ref carries the
 * constant instanceId; asset paths are rewritten to peekd URLs (images
 * under /api/proxy/..., streams under /api/scene/{id}/...).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_handlers.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"

#define TRY(x)                                                                 \
    do {                                                                       \
        if ((st = (x)) != CM_OK)                                               \
            goto out;                                                          \
    } while (0)
#define LIT(b, s) cm_buf_append((b), (s), sizeof(s) - 1)

#define MAX_INHERITED 256 /* inherited tags rendered per scene */

enum cm_status api_json_str(struct cm_buf *b, struct kv_str s)
{
    if (!s.p)
        return LIT(b, "null");
    return cm_buf_put_json_str(b, s.p, s.len);
}

enum cm_status api_json_date(struct cm_buf *b, struct kv_date d)
{
    char tmp[16];
    int n;
    if (d.year <= 0)
        return LIT(b, "null");
    if (d.month && d.day)
        n = snprintf(tmp, sizeof tmp, "\"%04d-%02u-%02u\"", d.year,
                     (unsigned)d.month, (unsigned)d.day);
    else if (d.month)
        n = snprintf(tmp, sizeof tmp, "\"%04d-%02u\"", d.year,
                     (unsigned)d.month);
    else
        n = snprintf(tmp, sizeof tmp, "\"%04d\"", d.year);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return CM_INTERNAL;
    return cm_buf_append(b, tmp, (size_t)n);
}

enum cm_status api_json_double(struct cm_buf *b, double v)
{
    char tmp[40];
    int n;
    if (!isfinite(v))
        return LIT(b, "null");
    if (v == floor(v) && fabs(v) < 9e15)
        return cm_buf_put_i64(b, (int64_t)v);
    n = snprintf(tmp, sizeof tmp, "%.15g", v);
    if (n > 0 && (size_t)n < sizeof tmp && strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof tmp, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return CM_INTERNAL;
    return cm_buf_append(b, tmp, (size_t)n);
}

static enum cm_status put_u64_str(struct cm_buf *b, uint64_t v)
{
    enum cm_status st = cm_buf_putc(b, '"');
    if (st == CM_OK)
        st = cm_buf_printf(b, "%llu\"", (unsigned long long)v);
    return st;
}

static enum cm_status put_bool(struct cm_buf *b, bool v)
{
    return v ? LIT(b, "true") : LIT(b, "false");
}

static enum cm_status put_i32_or_null(struct cm_buf *b, int32_t v)
{
    return v < 0 ? LIT(b, "null") : cm_buf_put_i64(b, v);
}

static const char *gender_str(uint8_t g)
{
    switch (g) {
    case KV_GENDER_MALE: return "MALE";
    case KV_GENDER_FEMALE: return "FEMALE";
    case KV_GENDER_TRANSGENDER_MALE: return "TRANSGENDER_MALE";
    case KV_GENDER_TRANSGENDER_FEMALE: return "TRANSGENDER_FEMALE";
    case KV_GENDER_INTERSEX: return "INTERSEX";
    case KV_GENDER_NON_BINARY: return "NON_BINARY";
    default: return NULL;
    }
}

static enum cm_status put_gender(struct cm_buf *b, uint8_t g)
{
    const char *s = gender_str(g);
    if (!s)
        return LIT(b, "null");
    return cm_buf_put_json_str(b, s, strlen(s));
}

/* "/api/proxy/<kind>/<id>/image" or null when the entity has no image. */
static enum cm_status put_entity_image(struct cm_buf *b, const char *kind,
                                       uint64_t id, struct kv_str img)
{
    if (!img.p || !img.len)
        return LIT(b, "null");
    return cm_buf_printf(b, "\"/api/proxy/%s/%llu/image\"", kind,
                         (unsigned long long)id);
}

static enum cm_status put_ref_head(struct cm_buf *b, uint64_t id)
{
    enum cm_status st;
    if ((st = LIT(b, "{\"id\":")) != CM_OK)
        return st;
    if ((st = put_u64_str(b, id)) != CM_OK)
        return st;
    return LIT(b, ",\"instanceId\":\"" API_INSTANCE_ID "\"");
}

/* Scene asset path: /api/proxy/scene/<id>/<what> when Stash has one. */
static enum cm_status put_scene_asset(struct cm_buf *b, uint64_t id,
                                      const char *what, struct kv_str p)
{
    if (!p.p || !p.len)
        return LIT(b, "null");
    return cm_buf_printf(b, "\"/api/proxy/scene/%llu/%s\"",
                         (unsigned long long)id, what);
}

static bool str_ieq(struct kv_str s, const char *lit)
{
    size_t n = strlen(lit);
    if (!s.p || s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s.p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return false;
    }
    return true;
}

static bool str_in(struct kv_str s, const char *const *list)
{
    for (; *list; list++)
        if (str_ieq(s, *list))
            return true;
    return false;
}

static const char *mime_of(struct kv_str format)
{
    if (str_ieq(format, "webm"))
        return "video/webm";
    if (str_ieq(format, "mkv") || str_ieq(format, "matroska"))
        return "video/x-matroska";
    if (str_ieq(format, "mov"))
        return "video/quicktime";
    if (str_ieq(format, "avi"))
        return "video/x-msvideo";
    return "video/mp4";
}

/* Peek's codecDetection: what a browser plays directly. */
static enum cm_status put_streamability(struct cm_buf *b,
                                        const struct kv_scene *sc)
{
    static const char *const vcodecs[] = {"h264", "hevc", "h265", "vp9",
                                          "vp8",  "av1",  NULL};
    static const char *const acodecs[] = {"aac",  "opus", "mp3", "vorbis",
                                          "flac", "",     NULL};
    static const char *const formats[] = {"mp4", "webm", "m4v", "mov", NULL};
    enum cm_status st;
    const char *reasons[4];
    int n = 0;
    if (sc->n_files == 0) {
        reasons[n++] = "no file";
    } else {
        const struct kv_file *f = &sc->files[0];
        if (f->video_codec.p && !str_in(f->video_codec, vcodecs))
            reasons[n++] = "unsupported video codec";
        if (f->audio_codec.p && !str_in(f->audio_codec, acodecs))
            reasons[n++] = "unsupported audio codec";
        if (f->format.p && !str_in(f->format, formats))
            reasons[n++] = "unsupported container";
    }
    TRY(LIT(b, ",\"isStreamable\":"));
    TRY(put_bool(b, n == 0));
    TRY(LIT(b, ",\"streamabilityReasons\":["));
    for (int i = 0; i < n; i++) {
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(cm_buf_put_json_str(b, reasons[i], strlen(reasons[i])));
    }
    TRY(cm_buf_putc(b, ']'));
out:
    return st;
}

static enum cm_status put_file(struct cm_buf *b, const struct kv_file *f)
{
    enum cm_status st;
    TRY(LIT(b, "{\"path\":"));
    TRY(api_json_str(b, f->path));
    TRY(LIT(b, ",\"basename\":"));
    TRY(api_json_str(b, f->basename));
    TRY(LIT(b, ",\"duration\":"));
    TRY(api_json_double(b, f->duration));
    TRY(LIT(b, ",\"bit_rate\":"));
    TRY(cm_buf_put_i64(b, f->bit_rate));
    TRY(LIT(b, ",\"frame_rate\":"));
    TRY(api_json_double(b, f->frame_rate));
    TRY(LIT(b, ",\"width\":"));
    TRY(cm_buf_put_i64(b, f->width));
    TRY(LIT(b, ",\"height\":"));
    TRY(cm_buf_put_i64(b, f->height));
    TRY(LIT(b, ",\"video_codec\":"));
    TRY(api_json_str(b, f->video_codec));
    TRY(LIT(b, ",\"audio_codec\":"));
    TRY(api_json_str(b, f->audio_codec));
    TRY(LIT(b, ",\"size\":"));
    TRY(cm_buf_put_i64(b, f->size));
    TRY(LIT(b, ",\"format\":"));
    TRY(api_json_str(b, f->format));
    TRY(cm_buf_putc(b, '}'));
out:
    return st;
}

static enum cm_status put_studio(struct cm_buf *b, struct kv_txn *t,
                                 const struct kv_ref *s)
{
    enum cm_status st;
    struct kv_entity e, pe;
    bool have = false, have_p = false;
    memset(&e, 0, sizeof e);
    memset(&pe, 0, sizeof pe);
    TRY(put_ref_head(b, s->id));
    TRY(LIT(b, ",\"name\":"));
    TRY(api_json_str(b, s->name));
    TRY(LIT(b, ",\"image_path\":"));
    TRY(put_entity_image(b, "studio", s->id, s->image));
    TRY(LIT(b, ",\"favorite\":"));
    TRY(put_bool(b, s->favorite));
    TRY(LIT(b, ",\"parent_studio\":"));
    st = kv_entity_get(t, KV_STUDIO, s->id, &e);
    if (st == CM_OK)
        have = true;
    else if (st != CM_NOTFOUND)
        goto out;
    if (have && e.n_parents > 0 && e.parents[0]) {
        st = kv_entity_get(t, KV_STUDIO, e.parents[0], &pe);
        if (st == CM_OK)
            have_p = true;
        else if (st != CM_NOTFOUND)
            goto out;
        TRY(put_ref_head(b, e.parents[0]));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, have_p ? pe.name : (struct kv_str){NULL, 0}));
        TRY(cm_buf_putc(b, '}'));
    } else {
        TRY(LIT(b, "null"));
    }
    TRY(cm_buf_putc(b, '}'));
    st = CM_OK;
out:
    if (have)
        kv_entity_fini(&e);
    if (have_p)
        kv_entity_fini(&pe);
    return st;
}

static bool has_id(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Adds the tag ids of entity (type, id) not yet in inh[] nor direct. */
static enum cm_status collect_tags(struct kv_txn *t, const struct kv_scene *sc,
                                   uint8_t type, uint64_t id, uint64_t *inh,
                                   size_t *n)
{
    struct kv_entity e;
    enum cm_status st = kv_entity_get(t, type, id, &e);
    if (st == CM_NOTFOUND)
        return CM_OK;
    if (st != CM_OK)
        return st;
    for (uint32_t i = 0; i < e.n_tags && *n < MAX_INHERITED; i++) {
        uint64_t tid = e.tags[i];
        bool direct = false;
        for (uint32_t k = 0; k < sc->n_tags; k++)
            if (sc->tags[k].id == tid)
                direct = true;
        if (!direct && !has_id(inh, *n, tid))
            inh[(*n)++] = tid;
    }
    kv_entity_fini(&e);
    return CM_OK;
}

static enum cm_status put_inherited(struct cm_buf *b, struct kv_txn *t,
                                    const struct kv_scene *sc)
{
    enum cm_status st = CM_OK;
    uint64_t *inh = cm_malloc(MAX_INHERITED * sizeof *inh);
    size_t n = 0;
    if (!inh)
        return CM_NOMEM;
    for (uint32_t i = 0; i < sc->n_performers; i++)
        TRY(collect_tags(t, sc, KV_PERFORMER, sc->performers[i].id, inh, &n));
    if (sc->studio.id)
        TRY(collect_tags(t, sc, KV_STUDIO, sc->studio.id, inh, &n));
    for (uint32_t i = 0; i < sc->n_groups; i++)
        TRY(collect_tags(t, sc, KV_GROUP, sc->groups[i].id, inh, &n));
    TRY(LIT(b, ",\"inheritedTagIds\":["));
    for (size_t i = 0; i < n; i++) {
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(put_u64_str(b, inh[i]));
    }
    TRY(LIT(b, "],\"inheritedTags\":["));
    for (size_t i = 0; i < n; i++) {
        struct kv_entity e;
        bool have;
        st = kv_entity_get(t, KV_TAG, inh[i], &e);
        if (st != CM_OK && st != CM_NOTFOUND)
            goto out;
        have = st == CM_OK;
        if (i)
            st = cm_buf_putc(b, ',');
        if (st == CM_OK || st == CM_NOTFOUND)
            st = put_ref_head(b, inh[i]);
        if (st == CM_OK)
            st = LIT(b, ",\"name\":");
        if (st == CM_OK)
            st = api_json_str(b, have ? e.name : (struct kv_str){NULL, 0});
        if (st == CM_OK)
            st = LIT(b, ",\"image_path\":");
        if (st == CM_OK)
            st = put_entity_image(b, "tag", inh[i],
                                  have ? e.image : (struct kv_str){NULL, 0});
        if (st == CM_OK)
            st = LIT(b, ",\"favorite\":");
        if (st == CM_OK)
            st = put_bool(b, have && e.favorite);
        if (st == CM_OK)
            st = cm_buf_putc(b, '}');
        if (have)
            kv_entity_fini(&e);
        if (st != CM_OK)
            goto out;
    }
    TRY(cm_buf_putc(b, ']'));
out:
    cm_free(inh);
    return st;
}

static enum cm_status put_refs(struct cm_buf *b, struct kv_txn *t,
                               const struct kv_scene *sc)
{
    enum cm_status st;
    TRY(LIT(b, ",\"studio\":"));
    if (sc->studio.id)
        TRY(put_studio(b, t, &sc->studio));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"performers\":["));
    for (uint32_t i = 0; i < sc->n_performers; i++) {
        const struct kv_ref *r = &sc->performers[i];
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"disambiguation\":"));
        TRY(api_json_str(b, r->aux));
        TRY(LIT(b, ",\"gender\":"));
        TRY(put_gender(b, r->gender));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_entity_image(b, "performer", r->id, r->image));
        TRY(LIT(b, ",\"favorite\":"));
        TRY(put_bool(b, r->favorite));
        TRY(LIT(b, ",\"rating100\":"));
        TRY(put_i32_or_null(b, r->rating100));
        TRY(cm_buf_putc(b, '}'));
    }
    TRY(LIT(b, "],\"tags\":["));
    for (uint32_t i = 0; i < sc->n_tags; i++) {
        const struct kv_ref *r = &sc->tags[i];
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"image_path\":"));
        TRY(put_entity_image(b, "tag", r->id, r->image));
        TRY(LIT(b, ",\"favorite\":"));
        TRY(put_bool(b, r->favorite));
        TRY(cm_buf_putc(b, '}'));
    }
    TRY(cm_buf_putc(b, ']'));
    TRY(put_inherited(b, t, sc));
    TRY(LIT(b, ",\"groups\":["));
    for (uint32_t i = 0; i < sc->n_groups; i++) {
        const struct kv_ref *r = &sc->groups[i];
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"name\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"front_image_path\":"));
        TRY(put_entity_image(b, "group", r->id, r->image));
        TRY(LIT(b, ",\"back_image_path\":"));
        if (r->aux.p && r->aux.len)
            TRY(cm_buf_printf(b, "\"/api/proxy/group/%llu/back_image\"",
                              (unsigned long long)r->id));
        else
            TRY(LIT(b, "null"));
        TRY(LIT(b, ",\"scene_index\":"));
        TRY(put_i32_or_null(b, r->index));
        TRY(cm_buf_putc(b, '}'));
    }
    TRY(LIT(b, "],\"galleries\":["));
    for (uint32_t i = 0; i < sc->n_galleries; i++) {
        const struct kv_ref *r = &sc->galleries[i];
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(put_ref_head(b, r->id));
        TRY(LIT(b, ",\"title\":"));
        TRY(api_json_str(b, r->name));
        TRY(LIT(b, ",\"cover\":"));
        TRY(put_entity_image(b, "gallery", r->id, r->image));
        TRY(cm_buf_putc(b, '}'));
    }
    TRY(cm_buf_putc(b, ']'));
out:
    return st;
}

static enum cm_status put_paths(struct cm_buf *b, const struct kv_scene *sc)
{
    enum cm_status st;
    unsigned long long id = (unsigned long long)sc->id;
    TRY(LIT(b, ",\"paths\":{\"screenshot\":"));
    TRY(put_scene_asset(b, sc->id, "screenshot", sc->p_screenshot));
    TRY(LIT(b, ",\"preview\":"));
    TRY(put_scene_asset(b, sc->id, "preview", sc->p_preview));
    TRY(LIT(b, ",\"stream\":"));
    if (sc->n_files)
        TRY(cm_buf_printf(b, "\"/api/scene/%llu/stream\"", id));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"sprite\":"));
    TRY(put_scene_asset(b, sc->id, "sprite", sc->p_sprite));
    TRY(LIT(b, ",\"vtt\":"));
    TRY(put_scene_asset(b, sc->id, "vtt", sc->p_vtt));
    TRY(LIT(b, ",\"chapters_vtt\":null,\"caption\":"));
    if (sc->p_caption.p && sc->p_caption.len)
        TRY(cm_buf_printf(b, "\"/api/scene/%llu/caption\"", id));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"webp\":"));
    TRY(put_scene_asset(b, sc->id, "webp", sc->p_webp));
    TRY(cm_buf_putc(b, '}'));
out:
    return st;
}

static enum cm_status put_url(struct cm_buf *b, const char *base,
                              unsigned long long id, const char *rest)
{
    char tmp[CM_MAX_CONFIG_VALUE + 128];
    int n = snprintf(tmp, sizeof tmp, "%s/api/scene/%llu/%s", base, id, rest);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return CM_TOOBIG;
    return cm_buf_put_json_str(b, tmp, (size_t)n);
}

static enum cm_status put_stream(struct cm_buf *b, const char *base,
                                 unsigned long long id, const char *rest,
                                 const char *mime, const char *label)
{
    enum cm_status st;
    TRY(LIT(b, "{\"url\":"));
    TRY(put_url(b, base, id, rest));
    TRY(LIT(b, ",\"mime_type\":"));
    TRY(cm_buf_put_json_str(b, mime, strlen(mime)));
    TRY(LIT(b, ",\"label\":"));
    TRY(cm_buf_put_json_str(b, label, strlen(label)));
    TRY(cm_buf_putc(b, '}'));
out:
    return st;
}

/* Direct stream first (the client tries it first), then the HLS master
 * playlist (adaptive: its variants are the hls module's business). */
static enum cm_status put_streams(struct cm_buf *b, const struct kv_scene *sc,
                                  const char *base)
{
    enum cm_status st;
    unsigned long long id = (unsigned long long)sc->id;
    TRY(LIT(b, ",\"sceneStreams\":["));
    if (sc->n_files) {
        TRY(put_stream(b, base, id, "stream", mime_of(sc->files[0].format),
                       "Direct stream"));
        TRY(cm_buf_putc(b, ','));
        TRY(put_stream(b, base, id, "hls/master.m3u8",
                       "application/vnd.apple.mpegurl", "HLS"));
    }
    TRY(cm_buf_putc(b, ']'));
out:
    return st;
}

static enum cm_status put_stash_url(struct cm_buf *b, const char *stash,
                                    uint64_t id)
{
    char tmp[CM_MAX_CONFIG_VALUE + 64];
    int n;
    if (!stash)
        return LIT(b, "null");
    n = snprintf(tmp, sizeof tmp, "%s/scenes/%llu", stash,
                 (unsigned long long)id);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return LIT(b, "null");
    return cm_buf_put_json_str(b, tmp, (size_t)n);
}

enum cm_status api_scene_json(struct api_req *req, struct kv_txn *t,
                              const struct kv_scene *sc, const char *base,
                              struct cm_buf *b)
{
    enum cm_status st;
    struct kv_str title = sc->title;
    const struct cm_config *cfg = req->cfg;
    if ((!title.p || !title.len) && sc->n_files)
        title = sc->files[0].basename;
    TRY(LIT(b, "{\"id\":"));
    TRY(put_u64_str(b, sc->id));
    TRY(LIT(b, ",\"instanceId\":\"" API_INSTANCE_ID "\",\"title\":"));
    TRY(api_json_str(b, title));
    TRY(LIT(b, ",\"code\":"));
    TRY(api_json_str(b, sc->code));
    TRY(LIT(b, ",\"date\":"));
    TRY(api_json_date(b, sc->date));
    TRY(LIT(b, ",\"details\":"));
    TRY(api_json_str(b, sc->details));
    TRY(LIT(b, ",\"director\":"));
    TRY(api_json_str(b, sc->director));
    TRY(LIT(b, ",\"organized\":"));
    TRY(put_bool(b, sc->organized));
    TRY(LIT(b, ",\"interactive\":"));
    TRY(put_bool(b, sc->interactive));
    TRY(LIT(b, ",\"created_at\":"));
    TRY(api_json_str(b, sc->created_at));
    TRY(LIT(b, ",\"updated_at\":"));
    TRY(api_json_str(b, sc->updated_at));
    TRY(LIT(b, ",\"urls\":["));
    for (uint32_t i = 0; i < sc->n_urls; i++) {
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(api_json_str(b, sc->urls[i]));
    }
    TRY(LIT(b, "],\"studioId\":"));
    if (sc->studio.id)
        TRY(put_u64_str(b, sc->studio.id));
    else
        TRY(LIT(b, "null"));
    TRY(LIT(b, ",\"rating\":"));
    TRY(put_i32_or_null(b, sc->rating100));
    TRY(LIT(b, ",\"rating100\":"));
    TRY(put_i32_or_null(b, sc->rating100));
    TRY(LIT(b, ",\"favorite\":false,\"o_counter\":"));
    TRY(cm_buf_put_i64(b, sc->o_counter));
    TRY(LIT(b, ",\"play_count\":"));
    TRY(cm_buf_put_i64(b, sc->play_count));
    TRY(LIT(b, ",\"play_duration\":"));
    TRY(api_json_double(b, sc->play_duration < 0 ? 0 : sc->play_duration));
    TRY(LIT(b, ",\"resume_time\":"));
    TRY(api_json_double(b, sc->resume_time < 0 ? 0 : sc->resume_time));
    TRY(LIT(b, ",\"play_history\":[],\"o_history\":[],\"last_played_at\":"));
    TRY(api_json_str(b, sc->last_played_at));
    TRY(LIT(b, ",\"last_o_at\":null,\"files\":["));
    if (sc->n_files)
        TRY(put_file(b, &sc->files[0]));
    TRY(cm_buf_putc(b, ']'));
    TRY(put_paths(b, sc));
    TRY(put_streams(b, sc, base));
    TRY(LIT(b, ",\"captions\":["));
    for (uint32_t i = 0; i < sc->n_captions; i++) {
        if (i)
            TRY(cm_buf_putc(b, ','));
        TRY(LIT(b, "{\"language_code\":"));
        TRY(api_json_str(b, sc->captions[i].language_code));
        TRY(LIT(b, ",\"caption_type\":"));
        TRY(api_json_str(b, sc->captions[i].caption_type));
        TRY(cm_buf_putc(b, '}'));
    }
    TRY(cm_buf_putc(b, ']'));
    TRY(put_refs(b, t, sc));
    TRY(put_streamability(b, sc));
    TRY(LIT(b, ",\"stashUrl\":"));
    TRY(put_stash_url(b, cfg ? cfg->stash_url : NULL, sc->id));
    TRY(cm_buf_putc(b, '}'));
out:
    return st;
}
