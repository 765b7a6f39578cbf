/*
 * idx_keys.c - order-preserving key encodings: natural-order keys
 * (NATURAL_CI as bytes), escaped binary keys, u64 encodings of numbers with
 * 0 reserved for NULL, big-endian helpers, and the sort-key name table.
 *
 * Natural key.  cm_natural_cmp walks two strings element by element (a
 * digit run or one rune).  The key writes each element so that memcmp
 * reproduces that walk:
 *   end of string   0x00, then the string's byte length (ordered varint)
 *   digit run       0x01, significant-digit count (ordered varint), the
 *                   significant digits, the absolute byte offset where they
 *                   start (ordered varint; Go compares that offset when the
 *                   numbers are equal, so fewer leading zeros sort first)
 *   other rune      its lowest case-fold equivalent v, as one byte v+2
 *                   (v <= 0x7D), two bytes 0x80|hi (v < 0x407E) or three
 *                   bytes 0xC0|hi: all above the digit tag, in v order.
 * Known gaps (documented in docs/INDEX.md): (1) when one string runs out
 * of elements first, Go compares byte lengths; the key puts it first, which
 * differs only when fold-equivalent runes of different UTF-8 lengths
 * precede (e.g. U+212A KELVIN SIGN vs "K"); (2) keys are truncated at an
 * element boundary at max bytes, so two strings whose first ~100+
 * characters compare equal are ordered by their byte length and then the
 * next tie-break.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "common/cm_natural.h"
#include "index/idx_int.h"

void idx_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void idx_le32(uint8_t *p, uint32_t v)
{
    idx_le16(p, v);
    idx_le16(p + 2, v >> 16);
}

int64_t idx_dec_i64(uint64_t e)
{
    return (int64_t)(e ^ ((uint64_t)1 << 63));
}

uint64_t idx_enc_double(double v)
{
    uint64_t b;
    if (v == 0)
        v = 0; /* -0.0 sorts with 0.0, as in SQLite */
    memcpy(&b, &v, sizeof b);
    return (b >> 63) ? ~b : (b | ((uint64_t)1 << 63));
}

double idx_dec_double(uint64_t e)
{
    uint64_t b = (e >> 63) ? (e & ~((uint64_t)1 << 63)) : ~e;
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* Ordered varint: < 0xFF in one byte, else 0xFF + 4 bytes BE. */
static size_t put_ovar(uint8_t *p, uint32_t v)
{
    if (v < 0xFF) {
        p[0] = (uint8_t)v;
        return 1;
    }
    p[0] = 0xFF;
    idx_be32(p + 1, v);
    return 5;
}

static bool isdig(uint32_t c)
{
    return c >= '0' && c <= '9';
}

/* The most bytes idx_natkey/idx_binkey append for n input bytes: a rune
 * of d >= 1 bytes gives at most 3, a digit run of L >= 1 bytes at most
 * L + 11, the end 6; binary keys 2 per byte and the end. */
static size_t natkey_room(size_t n, size_t max)
{
    return n > (max - 6) / 12 ? max : 12 * n + 6;
}

enum cm_status idx_natkey(const char *s, size_t n, size_t max,
                          struct cm_buf *out)
{
    size_t i = 0, used = 0, w = 0;
    uint8_t *o;
    enum cm_status st;

    if (max < 16)
        return CM_INVALID;
    if (n > UINT32_MAX)
        n = UINT32_MAX;
    /* Written in place: room for the longest key this input can give.
     * used counts what the limit checks reserve (a digit run's varints
     * at their longest), w what is written (w <= used <= max). */
    st = cm_buf_reserve(out, natkey_room(n, max));
    if (st != CM_OK)
        return st;
    o = (uint8_t *)out->data + out->len;
    while (i < n) {
        size_t d;
        unsigned char b0 = (unsigned char)s[i];
        uint32_t c;
        if (b0 < 0x80 && !isdig(b0)) { /* ASCII: cm_fold_rune upper-cases */
            if (used + 1 + 6 > max)
                break;
            o[w++] = (uint8_t)((b0 >= 'a' && b0 <= 'z' ? b0 - 32 : b0) + 2);
            used++;
            i++;
            continue;
        }
        c = cm_utf8_decode(s + i, n - i, &d);
        if (isdig(c)) {
            size_t z = i, nz, e;
            while (z < n && s[z] == '0')
                z++;
            nz = z;
            e = nz;
            while (e < n && isdig((unsigned char)s[e]))
                e++;
            /* tag + count + digits + offset must fit with the end (6). */
            if (used + 1 + 5 + (e - nz) + 5 + 6 > max)
                break;
            o[w++] = 0x01;
            w += put_ovar(o + w, (uint32_t)(e - nz));
            memcpy(o + w, s + nz, e - nz);
            w += e - nz;
            w += put_ovar(o + w, (uint32_t)nz);
            used += 1 + 5 + (e - nz) + 5;
            i = e;
            continue;
        }
        c = cm_fold_rune(c);
        {
            uint8_t el[3];
            size_t k = 0;
            if (c <= 0x7D) {
                el[k++] = (uint8_t)(c + 2);
            } else if (c < 0x407E) {
                uint32_t v = c - 0x7E;
                el[k++] = (uint8_t)(0x80 | (v >> 8));
                el[k++] = (uint8_t)v;
            } else {
                uint32_t v = c - 0x407E;
                el[k++] = (uint8_t)(0xC0 | (v >> 16));
                el[k++] = (uint8_t)(v >> 8);
                el[k++] = (uint8_t)v;
            }
            if (used + k + 6 > max)
                break;
            memcpy(o + w, el, k);
            w += k;
            used += k;
        }
        i += d;
    }
    o[w++] = 0x00;
    w += put_ovar(o + w, (uint32_t)n);
    out->len += w;
    out->data[out->len] = '\0';
    return CM_OK;
}

enum cm_status idx_binkey(const char *s, size_t n, size_t max,
                          struct cm_buf *out)
{
    size_t used = 0;
    uint8_t *o;
    enum cm_status st =
        cm_buf_reserve(out, n > (max - 1) / 2 ? max : 2 * n + 1);

    if (st != CM_OK)
        return st;
    o = (uint8_t *)out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (used + 3 > max)
            break;
        if (c <= 1) {
            o[used++] = 1;
            o[used++] = (uint8_t)(c + 1);
        } else {
            o[used++] = c;
        }
    }
    o[used++] = 0;
    out->len += used;
    out->data[out->len] = '\0';
    return CM_OK;
}

/* ---- Sort names ------------------------------------------------------ */

static const struct {
    const char *name;
    enum idx_sort_kind kind;
} sorts[IDX_SF_COUNT] = {
    [IDX_SF_TITLE] = {"title", IDX_SK_DICT},
    [IDX_SF_DATE] = {"date", IDX_SK_NUM},
    [IDX_SF_CREATED] = {"created_at", IDX_SK_DICT},
    [IDX_SF_UPDATED] = {"updated_at", IDX_SK_DICT},
    [IDX_SF_RATING] = {"rating", IDX_SK_NUM},
    [IDX_SF_OCOUNT] = {"o_counter", IDX_SK_NUM},
    [IDX_SF_PLAYCOUNT] = {"play_count", IDX_SK_NUM},
    [IDX_SF_PLAYDUR] = {"play_duration", IDX_SK_NUM},
    [IDX_SF_LASTPLAYED] = {"last_played_at", IDX_SK_DICT},
    [IDX_SF_RESUME] = {"resume_time", IDX_SK_NUM},
    [IDX_SF_DURATION] = {"duration", IDX_SK_NUM},
    [IDX_SF_FILESIZE] = {"filesize", IDX_SK_NUM},
    [IDX_SF_BITRATE] = {"bitrate", IDX_SK_NUM},
    [IDX_SF_FRAMERATE] = {"framerate", IDX_SK_NUM},
    [IDX_SF_RESOLUTION] = {"resolution", IDX_SK_NUM},
    [IDX_SF_PATH] = {"path", IDX_SK_DICT},
    [IDX_SF_TAGCOUNT] = {"tag_count", IDX_SK_NUM},
    [IDX_SF_PERFCOUNT] = {"performer_count", IDX_SK_NUM},
    [IDX_SF_FILECOUNT] = {"file_count", IDX_SK_NUM},
    [IDX_SF_ORGANIZED] = {"organized", IDX_SK_NUM},
    [IDX_SF_INTERACTIVE] = {"interactive", IDX_SK_NUM},
    [IDX_SF_ISPEED] = {"interactive_speed", IDX_SK_NUM},
    [IDX_SF_CODE] = {"code", IDX_SK_DICT},
    [IDX_SF_STUDIO] = {"studio", IDX_SK_DICT},
    [IDX_SF_ID] = {"id", IDX_SK_NUM},
    [IDX_SF_TIE] = {NULL, IDX_SK_DICT},
};

const char *idx_sfield_name(enum idx_sort_field f)
{
    if (f == IDX_SF_RANDOM)
        return "random";
    return (unsigned)f < IDX_SF_COUNT ? sorts[f].name : NULL;
}

enum idx_sort_kind idx_sfield_kind(enum idx_sort_field f)
{
    return (unsigned)f < IDX_SF_COUNT ? sorts[f].kind : IDX_SK_NUM;
}

enum cm_status idx_sfield_lookup(const char *name, size_t len,
                                 enum idx_sort_field *out)
{
    for (int f = 0; f < IDX_SF_COUNT; f++)
        if (sorts[f].name && strlen(sorts[f].name) == len &&
            memcmp(sorts[f].name, name, len) == 0) {
            *out = (enum idx_sort_field)f;
            return CM_OK;
        }
    return CM_NOTFOUND;
}

/* ---- Random ---------------------------------------------------------- */

double idx_random_key(uint64_t id, uint64_t seed)
{
    /* SQLite: integer arithmetic that overflows continues in double. */
    int64_t s = (int64_t)(id + seed % 100000000u), sq, p, q, sum;
    double dp, dsum;
    bool dbl = false;

    if (__builtin_mul_overflow(s, s, &sq)) {
        double ds = (double)s;
        dp = ds * ds * 52959209.0;
        dbl = true;
        p = 0;
    } else if (__builtin_mul_overflow(sq, (int64_t)52959209, &p)) {
        dp = (double)sq * 52959209.0;
        dbl = true;
    } else {
        dp = (double)p;
    }
    if (__builtin_mul_overflow(s, (int64_t)1047483763, &q))
        return fmod(dp + (double)s * 1047483763.0, 2147483647.0);
    if (dbl) {
        dsum = dp + (double)q;
    } else if (__builtin_add_overflow(p, q, &sum)) {
        dsum = (double)p + (double)q;
    } else {
        dsum = (double)sum;
    }
    return fmod(dsum, 2147483647.0);
}

uint64_t idx_daily_seed(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return ((uint64_t)ts.tv_sec / 86400u) % 100000000u;
}

bool idx_is_tokbyte(unsigned char c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/* Token byte -> its lower-case form, any other byte -> 0 (no token byte
 * is 0): idx_is_tokbyte and the case fold in one load. */
#define TOKL(c)                                                                \
    ((unsigned char)((c) >= 0x80                ? (c)                          \
                     : (c) >= 'A' && (c) <= 'Z' ? (c) + 32                     \
                     : ((c) >= 'a' && (c) <= 'z') ||                           \
                             ((c) >= '0' && (c) <= '9')                        \
                         ? (c)                                                 \
                         : 0))
#define TOKL4(c)  TOKL(c), TOKL((c) + 1), TOKL((c) + 2), TOKL((c) + 3)
#define TOKL16(c) TOKL4(c), TOKL4((c) + 4), TOKL4((c) + 8), TOKL4((c) + 12)
#define TOKL64(c)                                                              \
    TOKL16(c), TOKL16((c) + 16), TOKL16((c) + 32), TOKL16((c) + 48)
const unsigned char idx_tok_lower[256] = {TOKL64(0), TOKL64(64), TOKL64(128),
                                          TOKL64(192)};

void idx_tokenize(const char *s, size_t len,
                  int (*fn)(const char *tok, size_t n, void *ctx), void *ctx)
{
    struct idx_tokit it = {(const unsigned char *)s, len, 0, 0, 0};
    unsigned char tok[IDX_TOK_MAX];
    size_t n;

    while (idx_tok_next(&it, tok, &n))
        if (fn((const char *)tok, n, ctx))
            return;
}
