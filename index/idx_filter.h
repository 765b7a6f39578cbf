/*
 * idx_filter.h - the parsed scene query (AST) and its reference evaluator.
 *
 * idx_query_parse() (idx.h) turns Peek's/Stash's JSON into a struct
 * idx_query: FindFilterType (q, page, per_page, sort, direction) plus a tree
 * of struct idx_filter (SceneFilterType with AND/OR/NOT).  Everything the
 * evaluator needs is pre-digested here: ids are integers, strings are
 * NUL-terminated copies, INCLUDES/EXCLUDES words are already split, regexes
 * are compiled, defaults are applied, `movies` is folded into `groups`,
 * `instance_id`/`favorite` are folded into IDX_F_CONST.
 *
 * Two evaluators must agree exactly: the index core (idx_query_run, over
 * bitmaps and columns) and the brute-force oracle below (idx_filter_match /
 * idx_q_match, one struct kv_scene at a time), which is the reference in
 * differential tests.  The semantics are those of Stash v0.30's SQL
 * (pkg/sqlite), spelled out per field in the comments of enum idx_field and
 * in docs/FILTERS.md.
 *
 * Lifetime: a query owns its whole tree; free with idx_query_free().  A
 * parsed query is immutable and may be shared between threads (regexes are
 * compiled with REG_NOSUB and regexec is thread-safe on a const regex_t).
 * A struct idx_match_ctx belongs to one thread.
 */
#pragma once

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cm_status.h"
#include "index/idx.h"
#include "kv/kv.h"

/* The instance id peekd reports (Peek's composite "id:instanceId"). */
#define IDX_INSTANCE_ID "peekd"

/* ---- Sort ---------------------------------------------------------- */

/* Scene sort keys (Stash's whitelist, stash-api.md §2.4/§5.1, minus the
 * ones peekd has no data for: file_mod_time, group_scene_number,
 * movie_scene_number, last_o_at, perceptual_similarity, performer_age are
 * rejected with "unsupported sort: X").  Every order ends with the tie-break
 * of idx.h.  NULL keys sort first in ASC, last in DESC. */
enum idx_sort {
    IDX_SORT_CREATED_AT = 0, /* Peek's default (with desc = true) */
    IDX_SORT_UPDATED_AT,
    IDX_SORT_TITLE, /* COALESCE(title, files[0].basename), folder path */
    IDX_SORT_DATE,
    IDX_SORT_RATING, /* "rating" = rating100 */
    IDX_SORT_O_COUNTER,
    IDX_SORT_PLAY_COUNT,
    IDX_SORT_PLAY_DURATION,
    IDX_SORT_LAST_PLAYED_AT,
    IDX_SORT_RESUME_TIME,
    IDX_SORT_DURATION, /* files[0] */
    IDX_SORT_FILESIZE,
    IDX_SORT_BITRATE,
    IDX_SORT_FRAMERATE,
    IDX_SORT_RESOLUTION, /* MIN(width, height) of files[0] */
    IDX_SORT_PATH,       /* files[0].path, NATURAL_CI */
    IDX_SORT_TAG_COUNT,
    IDX_SORT_PERFORMER_COUNT,
    IDX_SORT_FILE_COUNT,
    IDX_SORT_ORGANIZED,
    IDX_SORT_INTERACTIVE,
    IDX_SORT_INTERACTIVE_SPEED,
    IDX_SORT_CODE,
    IDX_SORT_STUDIO, /* studio name */
    IDX_SORT_ID,
    IDX_SORT_RANDOM, /* seed in idx_query.seed, idx_random_key() */
    IDX_SORT_COUNT
};

/* The Stash name of a sort key ("created_at"); never NULL. */
const char *idx_sort_name(enum idx_sort s);

/* ---- Criteria ------------------------------------------------------ */

/* The 13 CriterionModifiers, in Stash's order. */
enum idx_mod {
    IDX_MOD_EQUALS = 0,
    IDX_MOD_NOT_EQUALS,
    IDX_MOD_GREATER_THAN,
    IDX_MOD_LESS_THAN,
    IDX_MOD_IS_NULL,
    IDX_MOD_NOT_NULL,
    IDX_MOD_INCLUDES_ALL,
    IDX_MOD_INCLUDES,
    IDX_MOD_EXCLUDES,
    IDX_MOD_MATCHES_REGEX,
    IDX_MOD_NOT_MATCHES_REGEX,
    IDX_MOD_BETWEEN,
    IDX_MOD_NOT_BETWEEN,
    IDX_MOD_COUNT
};

const char *idx_mod_name(enum idx_mod m);

/*
 * Criterion fields.  Common rules (SQL three-valued logic, as in Stash):
 * a predicate on a NULL value is false for every modifier except IS_NULL
 * (and NOT_MATCHES_REGEX for strings on LEFT-joined columns, which Stash
 * writes as "col IS NULL OR col NOT regexp").  "files[0]" = the primary
 * file; a scene without files has NULL for every file column (Stash joins
 * every file of a scene; peekd evaluates the primary one — identical for
 * single-file scenes, the norm).
 */
enum idx_field {
    IDX_F_CONST = 0, /* b: true = every scene, false = none (instance_id,
                        favorite) */

    /* StringCriterionInput (kind IDX_K_STRING), see struct idx_crit */
    IDX_F_TITLE,
    IDX_F_CODE,
    IDX_F_DETAILS,
    IDX_F_DIRECTOR,
    IDX_F_PATH,        /* files[0].path (= folder + '/' + basename).  Stash
                          INNER-joins files here: no files -> false for every
                          modifier, IS_NULL included */
    IDX_F_URL,         /* urls[] as rows (LEFT join: no urls = one NULL row; the
                          scene matches when ANY row does — EXCLUDES "a" on
                          {"xa","b"} does NOT use rows: Stash's list EXCLUDES is
                          "no url LIKE '%value%'" with the whole value, unsplit) */
    IDX_F_CAPTIONS,    /* captions[].language_code as rows, like url; its
                          EXCLUDES is "no code LIKE value" (no wildcards
                          added) */
    IDX_F_VIDEO_CODEC, /* files[0].video_codec; these four are INNER joins
                          except for IS_NULL: a NULL value (no file, no
                          fingerprint) matches only IS_NULL */
    IDX_F_AUDIO_CODEC,
    IDX_F_OSHASH,   /* files[0].oshash */
    IDX_F_CHECKSUM, /* files[0].md5 */
    /* phash (kind IDX_K_PHASH): Stash turns it into phash_distance with
     * distance 0, an integer comparison on the fingerprint stored as a
     * signed int64.  i = the value parsed as hex (uint64 bits);
     * EQUALS/NOT_EQUALS/GREATER_THAN/LESS_THAN compare (int64_t) values;
     * IS_NULL/NOT_NULL; files[0].phash NULL (or no file) matches only
     * IS_NULL. */
    IDX_F_PHASH,

    /* IntCriterionInput (kind IDX_K_INT); i, i2 */
    IDX_F_ID,
    IDX_F_RATING100,         /* NULL when unrated */
    IDX_F_O_COUNTER,         /* never NULL */
    IDX_F_PLAY_COUNT,        /* never NULL */
    IDX_F_PLAY_DURATION,     /* (int64)trunc(play_duration); NULL if < 0 */
    IDX_F_RESUME_TIME,       /* (int64)trunc(resume_time); NULL if < 0 */
    IDX_F_DURATION,          /* (int64)trunc(files[0].duration) */
    IDX_F_BITRATE,           /* files[0].bit_rate */
    IDX_F_FRAMERATE,         /* (int64)round(files[0].frame_rate), half away
                                from zero as SQLite ROUND */
    IDX_F_FILE_COUNT,        /* n_files, never NULL */
    IDX_F_TAG_COUNT,         /* n_tags (direct), never NULL */
    IDX_F_PERFORMER_COUNT,   /* n_performers, never NULL */
    IDX_F_INTERACTIVE_SPEED, /* NULL when < 0 */
    IDX_F_PERFORMER_AGE,     /* ANY performer with a birthdate, scene has
                                a date, and age satisfies the predicate;
                                age = (int64)trunc(Y.MMDD(scene date) -
                                Y.MMDD(birthdate)) computed in doubles,
                                exactly Stash's cast(strftime('%Y.%m%d',
                                a) - strftime('%Y.%m%d', b) as int).  No
                                performer / no dates: false (even IS_NULL) */

    /* Boolean (kind IDX_K_BOOL); b */
    IDX_F_ORGANIZED,
    IDX_F_INTERACTIVE,        /* video_files.interactive: no file -> false for
                                 both true and false */
    IDX_F_PERFORMER_FAVORITE, /* true: any performers[].favorite; false:
                                 none (also no performers) */
    IDX_F_STUDIO_FAVORITE,    /* Peek: true = studio.favorite (false is
                                 parsed to IDX_F_CONST true) */
    IDX_F_TAG_FAVORITE,       /* Peek: true = any tags[].favorite */

    /* ResolutionCriterionInput (kind IDX_K_RESOLUTION); res.  On
     * m = MIN(files[0].width, files[0].height), band [lo, hi] of
     * idx_resolution_band(): EQUALS lo <= m <= hi, NOT_EQUALS outside,
     * GREATER_THAN m > hi, LESS_THAN m < lo.  No files: false. */
    IDX_F_RESOLUTION,
    /* OrientationCriterionInput (kind IDX_K_ORIENTATION); orient bitset of
     * IDX_ORIENT_*, OR-ed on files[0]: LANDSCAPE w > h, PORTRAIT w < h,
     * SQUARE w == h.  Empty set: matches every scene.  No files: false. */
    IDX_F_ORIENTATION,

    /* DateCriterionInput (kind IDX_K_DATE); str, str2.  Text comparison
     * (byte order, like SQLite's BINARY collation) of the stored date text
     * idx_date_text() ("YYYY-MM-DD": Stash v0.30 stores a fuzzy date as its
     * first day, "2020" -> "2020-01-01", plus a precision column that
     * filters ignore) against str.  The parser normalizes value the way
     * Stash's models.ParseDate does ("2020" -> "2020-01-01", "2020-05" ->
     * "2020-05-01"; anything else is an error); value2 is used as given.
     * So EQUALS "2020" matches dates stored as 2020-01-01 (a year-precision
     * 2020 or that exact day), GREATER_THAN "2020" everything after
     * 2020-01-01.  BETWEEN/NOT_BETWEEN: [str, str2] inclusive.  IS_NULL: no
     * date. */
    IDX_F_DATE,
    /* TimestampCriterionInput (kind IDX_K_DATE): text comparison of the
     * stored RFC3339 text with the value as given (no parsing); NULL or ""
     * matches IS_NULL only. */
    IDX_F_CREATED_AT,
    IDX_F_UPDATED_AT,
    /* As a timestamp, but Stash compares IFNULL(last_played_at,
     * datetime(0)): a never-played scene has the text
     * IDX_NEVER_PLAYED_TEXT, so IS_NULL matches nothing and LESS_THAN
     * matches never-played scenes. */
    IDX_F_LAST_PLAYED_AT,

    /* b: "true" = n_markers > 0, "false" = n_markers == 0 */
    IDX_F_HAS_MARKERS,
    /* missing (kind IDX_K_MISSING); see enum idx_missing */
    IDX_F_IS_MISSING,

    /* HierarchicalMultiCriterionInput (kind IDX_K_HIER): ids, excl, depth.
     * expand(v) = v plus its descendants down to `depth` levels (0 = v
     * only, -1 = all; descendants of a tag are tags having it among their
     * parents, transitively — a DAG; studios: child studios; groups:
     * sub-groups, i.e. groups listing it in `parents`).  Let S = the scene's
     * set (tags: tags[] ids, plus with `inherited` the tags of its
     * performers, studio and groups entities; studios: {studio.id} or {};
     * groups: groups[] ids; performer_tags: union of the tags of its
     * performers' entities).
     *   INCLUDES      S ∩ expand(v) ≠ ∅ for some v in ids
     *   INCLUDES_ALL  S ∩ expand(v) ≠ ∅ for every v in ids (studios: and
     *                 n_ids == 1, since Stash counts distinct studio ids)
     *   EQUALS        (depth 0, not studios) S == set(ids) exactly
     *   EXCLUDES      parsed into excl (ids moved there)
     *   IS_NULL       S == ∅ ;  NOT_NULL  S ≠ ∅   (ids/excl ignored;
     *                 performer_tags IS_NULL: no performers, or some
     *                 performer without tags; NOT_NULL: some performer
     *                 has a tag — Stash's LEFT JOIN rows)
     * and in every case except IS_NULL/NOT_NULL: S ∩ expand(e) == ∅ for
     * every e in excl.  No ids and no excl: matches every scene.  ids are
     * de-duplicated by the parser.  studios EQUALS is parsed as
     * INCLUDES_ALL and NOT_EQUALS as EXCLUDES (Stash does the same);
     * performer_tags rejects EQUALS.  `inherited` is rejected with EQUALS
     * and outside `tags`.  Unknown entities have no parents/tags. */
    IDX_F_STUDIOS,
    IDX_F_TAGS,
    IDX_F_GROUPS, /* also `movies` (depth 0) */
    IDX_F_PERFORMER_TAGS,
    /* MultiCriterionInput (kind IDX_K_MULTI): as above with depth 0 and S =
     * performers[] / galleries[] ids; EQUALS = exact set (|S| == n_ids and
     * every id in S).  Stash ignores `excludes` and EQUALS for galleries
     * (a different handler); peekd applies them uniformly. */
    IDX_F_PERFORMERS,
    IDX_F_GALLERIES,
    /* Peek's scene_filter.ids (kind IDX_K_MULTI, S = {scene id}): INCLUDES
     * or EXCLUDES. */
    IDX_F_SCENE_IDS,

    /* StashIDCriterionInput (kind IDX_K_STASH_ID): rows = the stash_ids
     * whose endpoint == endpoint (byte equality; all of them when endpoint
     * is absent or ""), or one NULL row when there are none (LEFT JOIN ...
     * ON endpoint = ?); the scene matches when some row's stash_id
     * satisfies the string criterion (value = stash_id, "" when absent;
     * words/re prepared as for strings). */
    IDX_F_STASH_ID_ENDPOINT,

    IDX_F_COUNT
};

/* What a criterion's value looks like. */
enum idx_kind {
    IDX_K_CONST,
    IDX_K_STRING,
    IDX_K_INT,
    IDX_K_BOOL,
    IDX_K_RESOLUTION,
    IDX_K_ORIENTATION,
    IDX_K_DATE,
    IDX_K_MISSING,
    IDX_K_HIER,
    IDX_K_MULTI,
    IDX_K_STASH_ID,
    IDX_K_PHASH,
};

/* What Stash's IFNULL(last_played_at, datetime(0)) yields. */
#define IDX_NEVER_PLAYED_TEXT "-4713-11-24 12:00:00"

enum idx_kind idx_field_kind(enum idx_field f);
/* The JSON key ("performer_tags"); never NULL. */
const char *idx_field_name(enum idx_field f);

enum idx_resolution {
    IDX_RES_VERY_LOW = 0, /* 144-239 */
    IDX_RES_LOW,          /* 240-359 */
    IDX_RES_R360P,        /* 360-479 */
    IDX_RES_STANDARD,     /* 480-539 */
    IDX_RES_WEB_HD,       /* 540-719 */
    IDX_RES_STANDARD_HD,  /* 720-1079 */
    IDX_RES_FULL_HD,      /* 1080-1439 */
    IDX_RES_QUAD_HD,      /* 1440-1919 */
    IDX_RES_VR_HD,        /* 1920-2159 (deprecated; overlaps FOUR_K) */
    IDX_RES_FOUR_K,       /* 1920-2559 */
    IDX_RES_FIVE_K,       /* 2560-2999 */
    IDX_RES_SIX_K,        /* 3000-3583 */
    IDX_RES_SEVEN_K,      /* 3584-3839 */
    IDX_RES_EIGHT_K,      /* 3840-6143 */
    IDX_RES_HUGE,         /* 6144-9999 */
    IDX_RES_COUNT
};

/* The inclusive band of r on MIN(width, height) (stash-api.md §4.3). */
void idx_resolution_band(enum idx_resolution r, int32_t *lo, int32_t *hi);

#define IDX_ORIENT_LANDSCAPE 1u
#define IDX_ORIENT_PORTRAIT  2u
#define IDX_ORIENT_SQUARE    4u

/* is_missing values.  Each is "the scene has none": */
enum idx_missing {
    IDX_MISS_URL = 0,   /* n_urls == 0 */
    IDX_MISS_GALLERIES, /* n_galleries == 0 */
    IDX_MISS_STUDIO,    /* studio.id == 0 */
    IDX_MISS_GROUPS,    /* "movie" or "group": n_groups == 0 */
    IDX_MISS_PERFORMERS,
    IDX_MISS_DATE, /* date.year == 0 */
    IDX_MISS_TAGS,
    IDX_MISS_STASH_ID, /* n_stash_ids == 0 */
    IDX_MISS_PHASH,    /* no files, or files[0].phash null */
    IDX_MISS_TITLE,    /* null or blank after trim (Stash's default
                          branch: col IS NULL OR TRIM(col) = '') */
    IDX_MISS_CODE,
    IDX_MISS_DETAILS,
    IDX_MISS_DIRECTOR,
    IDX_MISS_RATING, /* "rating": rating100 null */
    IDX_MISS_COUNT
};

/* A string value: NUL-terminated copy, len excludes the NUL (the value may
 * contain NUL bytes from JSON "\u0000"; len is authoritative). */
struct idx_str {
    char *p;
    size_t len;
};

/*
 * One criterion.  Only the members of the field's kind are meaningful.
 *
 * Strings (IDX_K_STRING, and stash_id of IDX_K_STASH_ID), with v = the
 * column value, LIKE = SQLite's LIKE (ASCII case-insensitive; `%` and `_`
 * in the pattern ARE wildcards, no escape character — Stash passes the
 * user's text through unescaped):
 *   EQUALS        v LIKE str            NOT_EQUALS  v NOT LIKE str
 *   INCLUDES      OR over words w:  v LIKE '%w%'
 *   EXCLUDES      AND over words w: v NOT LIKE '%w%'
 *   MATCHES_REGEX v IS NOT NULL AND regexec(re, v)
 *   NOT_MATCHES_REGEX  v IS NULL OR NOT regexec(re, v)
 *   IS_NULL       v IS NULL OR trim(v) == ""   (trim: ASCII spaces only,
 *                                               as SQLite TRIM)
 *   NOT_NULL      v IS NOT NULL AND trim(v) != ""
 * with NULL v false everywhere else.  words: Stash's getStringSearchClause:
 * str is trimmed (Go TrimSpace); if it starts or ends with '"', the words
 * are the single phrase with all leading/trailing '"' removed; otherwise
 * the words are its whitespace-separated runs (an empty value gives one
 * empty word, which matches every non-NULL v).
 * Regexes: POSIX ERE (regcomp REG_EXTENDED|REG_NOSUB), not Go RE2: no
 * \d \w \s, no (?i) flags, no lazy quantifiers; unanchored search like Go.
 */
struct idx_crit {
    enum idx_field field;
    enum idx_mod mod;

    struct idx_str str;    /* string/date value; stash_id */
    struct idx_str str2;   /* date value2 (BETWEEN); the parser fills Stash's
                              default (now + 1 day, RFC3339 local) when
                              absent */
    struct idx_str *words; /* INCLUDES/EXCLUDES words, n_words >= 1 */
    size_t n_words;
    regex_t *re; /* MATCHES_REGEX / NOT_MATCHES_REGEX; compiled */

    int64_t i, i2; /* int value, value2 (BETWEEN: inclusive [i, i2],
                      i2 defaults to 0 as in Stash) */
    bool b;        /* boolean / const / has_markers */

    uint64_t *ids; /* hier/multi value (deduplicated, input order) */
    size_t n_ids;
    uint64_t *excl; /* hier/multi excludes (+ EXCLUDES' value) */
    size_t n_excl;
    int32_t depth;  /* 0 = the node only, -1 = all descendants, n > 0 */
    bool inherited; /* tags: Peek's inherited tags (opt-in) */

    enum idx_resolution res;
    unsigned orient; /* IDX_ORIENT_* bits */
    enum idx_missing missing;
    struct idx_str endpoint; /* stash_id_endpoint; p == NULL = absent */
};

/*
 * A filter level: AND of crits[0..n) (true when n == 0), combined with sub
 * per sub_kind (Stash's pkg/sqlite/filter.go):
 *   NONE  own
 *   AND   own AND sub
 *   OR    own OR sub     (n == 0: just sub)
 *   NOT   own AND NOT sub (n == 0: just NOT sub)
 */
enum idx_sub_kind { IDX_SUB_NONE = 0, IDX_SUB_AND, IDX_SUB_OR, IDX_SUB_NOT };

struct idx_filter {
    struct idx_crit *crits;
    size_t n;
    enum idx_sub_kind sub_kind;
    struct idx_filter *sub; /* NULL iff sub_kind == IDX_SUB_NONE */
};

/* filter.q, parsed as Stash's models.ParseSearchString (§2.2): */
struct idx_qspec {
    struct idx_str *must; /* each: some column LIKE '%t%' */
    size_t n_must;
    struct idx_str *must_not; /* each: every column NOT LIKE '%t%' */
    size_t n_must_not;
    struct idx_str **any; /* any[i][0..n_any_len[i]): some column LIKE some */
    size_t *any_len;
    size_t n_any;
};

struct idx_query {
    struct idx_filter *filter; /* NULL = no scene_filter (all scenes) */
    char *q;                   /* NULL or NUL-terminated, <= CM_MAX_Q_LEN */
    size_t q_len;
    struct idx_qspec qs; /* parsed q; all empty when q is NULL/blank */
    enum idx_sort sort;
    uint64_t seed; /* IDX_SORT_RANDOM: already % 100000000 */
    bool desc;
    int64_t page;      /* >= 1, <= CM_MAX_PAGE */
    int64_t per_page;  /* 0..CM_MAX_PER_PAGE (0 = count only) */
    bool per_page_all; /* per_page was negative: "all", capped */
    uint64_t *ids;     /* idx_query_set_ids(): Stash scene ids in request
                          order (filters/sort/paging ignored when n_ids) */
    size_t n_ids;
    bool want_totals; /* idx_query_want_totals(): fill the result's
                         duration/filesize sums */
};

/* Sets q->ids from a JSON array of ids: numbers, "12" or Peek's
 * "12:instanceId" (the part before ':').  ids may be NULL or JSON null
 * (clears).  More than CM_MAX_IDS -> CM_INVALID; a non-integer -> CM_INVALID
 * with err->field "ids[i]".  CM_NOMEM. */
enum cm_status idx_query_set_ids(struct idx_query *q, const cJSON *ids,
                                 struct idx_error *err) CM_WUR;

/* The stored date text of d ("YYYY-MM-DD", missing month/day as 01) into
 * buf[11]; returns false (buf = "") when d is null. */
bool idx_date_text(struct kv_date d, char buf[11]);

/* ---- Reference evaluator (oracle) ---------------------------------- */

/*
 * Entity data the predicate needs (tag/studio/group parents for depth,
 * performer/studio/group tags for performer_tags and inherited tags,
 * performer birthdates for performer_age).  Use idx_match_ctx_mem() over
 * arrays (tests) or idx_match_ctx_kv() over a read txn.  Favorites come
 * from the scene's own refs (kv_ref.favorite), not from here.
 */
struct idx_match_ctx {
    /* Returns entity (type, id) or NULL when unknown (or on error, recorded
     * in err).  Borrowed until idx_match_ctx_fini(). */
    const struct kv_entity *(*lookup)(struct idx_match_ctx *ctx, uint8_t type,
                                      uint64_t id);
    const struct kv_entity *ents; /* mem: entities, any order */
    size_t n_ents;
    struct kv_txn *txn;     /* kv: read txn, borrowed */
    struct kv_entity *kept; /* kv: decoded entities (owned) */
    size_t n_kept, cap_kept;
    enum cm_status err; /* first lookup failure other than not-found */
};

/* Over ents[0..n) (borrowed; must outlive ctx). */
void idx_match_ctx_mem(struct idx_match_ctx *ctx, const struct kv_entity *ents,
                       size_t n);
/* Over read/write txn t (borrowed; ctx must be finished before the txn
 * ends, since decoded strings borrow from it). */
void idx_match_ctx_kv(struct idx_match_ctx *ctx, struct kv_txn *t);
void idx_match_ctx_fini(struct idx_match_ctx *ctx);

/* Does scene sc satisfy filter f (NULL = yes)?  Straight evaluation of the
 * rules above; check ctx->err afterwards when using the kv context.
 * Thread-safe for distinct ctx. */
bool idx_filter_match(const struct idx_filter *f, const struct kv_scene *sc,
                      struct idx_match_ctx *ctx);

/* Does sc satisfy q->q (true when q is NULL/blank)?  Stash's row
 * semantics: the scene matches when some row of (files or one NULL row) x
 * (that file's fingerprints oshash, md5, phash-as-signed-decimal, or one
 * NULL) x (markers or one NULL) satisfies every must term (some of title,
 * details, file path, fingerprint, marker title LIKE '%t%'), every any-set,
 * and every must_not term (each column COALESCE(col,'') NOT LIKE '%t%').
 * peekd's extension (the and Peek's name search, a superset of
 * Stash's columns): the scene-level columns code, studio name (when the
 * scene has a studio), every performer name and every tag name (the names
 * embedded in sc's refs) belong to every row; a term hits a row when one
 * of them LIKE '%t%', and a must_not term whose word is in any of them
 * rejects the scene. */
bool idx_q_match(const struct idx_query *q, const struct kv_scene *sc);

/* SQLite's LIKE (no ESCAPE): ASCII case-insensitive, '%' any run, '_' one
 * UTF-8 character.  Exposed for the index core and tests. */
bool idx_like(const char *pat, size_t plen, const char *s, size_t slen);
