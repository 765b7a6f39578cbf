/*
 * hls.h - on-demand video for peekd: direct play decisions and HTTP Range
 * parsing, HLS playlists synthesized from the known duration, and the
 * ffmpeg job manager that produces segments when they are requested.
 *
 * Main objects:
 *   struct hls_media  what peekd knows of a scene's primary file: the
 *                     source (local path through the path mapping, or
 *                     Stash's stream URL), duration, codecs, size.
 *   struct hls_mgr    one per server: ffmpeg jobs (one per scene and
 *                     variant), their segment directories under
 *                     <cache_dir>/hls, a monitor thread (publishes finished
 *                     segments, wakes waiters, pauses/kills/reaps ffmpeg,
 *                     evicts the cache), a probe cache.
 *   struct hls_wait   one pending segment request (see hls_segment_open).
 *
 * Design (docs/VIDEO.md): playlists are built before ffmpeg runs; a segment
 * request starts ffmpeg at the segment boundary (-ss before -i, -copyts,
 * the same -output_ts_offset on every run) with the segment muxer cutting
 * at absolute times (-segment_times), so every run cuts at the same points;
 * each run writes into its own directory and the monitor renames a segment
 * into the job directory only once it is complete.
 *
 * Thread-safety: every hls_mgr_* / hls_segment_* / hls_media_* function
 * may be called from any thread.  The pure functions (playlists, Range,
 * direct play, parsers) are reentrant.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cm_buf.h"
#include "common/cm_config.h"
#include "common/cm_status.h"

struct kv_scene;

/* Segment length (transcode; remux target).  2 s, as Stash: time to the
 * first segment is dominated by SEG / encoder speed (hls.md 5.5), so
 * halving it halves the wait before playback and after a far seek. */
#define HLS_SEG_SECONDS      2.0
#define HLS_TS_OFFSET        1.0 /* -output_ts_offset of every run (hls.md 8.2) */
#define HLS_MAX_RUNGS        8   /* variants of one scene */
#define HLS_MAX_SEGMENTS     200000 /* segments of one variant (~4.6 days) */
#define HLS_MAX_PROBE_OUT    (4 * 1024 * 1024)   /* ffprobe JSON output */
#define HLS_MAX_KEYFRAME_OUT (128 * 1024 * 1024) /* ffprobe packet CSV */

/* Tunables; zero fields take the defaults in brackets. */
struct hls_opts {
    int64_t idle_ms;      /* kill a job this long without requests [30000] */
    int64_t tick_ms;      /* monitor period [100] */
    int64_t wait_ms;      /* longest wait for one segment [20000] */
    int ahead;            /* pause ffmpeg this many segments past the last
                             request [10] */
    int gap;              /* restart when a request is this many segments
                             past what the run has produced [5] */
    int remux_window;     /* segments one remux run produces [15] */
    int transcode_window; /* segments one transcode run may produce [1000] */
};

/* A scene's primary file.  Strings are owned: release with
 * hls_media_fini(). */
struct hls_media {
    uint64_t scene_id;
    char *path;        /* local file (mapped, regular), or NULL */
    char *url;         /* Stash stream URL (no key), or NULL */
    double duration;   /* seconds */
    double start_time; /* container start time (probe; 0 if unknown) */
    double fps;        /* 0 = unknown */
    int64_t size;      /* bytes, 0 = unknown */
    int64_t bit_rate;  /* bits/s, 0 = unknown */
    int width, height; /* 0 = unknown */
    char format[64];   /* container ("mp4", "matroska", "mov,mp4,...") */
    char vcodec[32];   /* "h264", "hevc", ... ("" = none/unknown) */
    char acodec[32];   /* "aac", ... ("" = none) */
    char pix_fmt[32];  /* "yuv420p", ... ("" = unknown) */
    bool probed;       /* fields come from ffprobe */
};

void hls_media_fini(struct hls_media *md);

/* ---- Pure helpers (hls_play.c) --------------------------------------- */

/* The MIME type under which a browser can play the file as is ("video/mp4"
 * or "video/webm"), or NULL when it must go through HLS: H.264 (8-bit
 * 4:2:0) with AAC/MP3/no audio in MP4/MOV; VP8/VP9/AV1 with Opus/Vorbis/no
 * audio in WebM/Matroska.  H.264 in MKV, HEVC, 10-bit H.264 are not. */
const char *hls_direct_type(const struct hls_media *md);

/* Whether the video can be stream-copied into browser HLS (8-bit H.264). */
bool hls_can_remux(const struct hls_media *md);

/* Parses an HTTP Range header value buf[0..len) (untrusted, not
 * NUL-terminated) against a resource of size bytes.  Single ranges only:
 * "bytes=a-b", "bytes=a-", "bytes=-n".  CM_OK: OUT *off, *cnt (cnt > 0);
 * CM_UNSUPPORTED: malformed or multi-range (RFC 9110: ignore, serve 200);
 * CM_TOOBIG: unsatisfiable (416 with Content-Range: bytes * /size). */
enum cm_status hls_range_parse(const char *buf, size_t len, uint64_t size,
                               uint64_t *off, uint64_t *cnt) CM_WUR;

struct hls_rung {
    char name[16];     /* "copy", "1080p", "720p", ... */
    bool copy;         /* stream copy of the video */
    int short_side;    /* target short side (copy: the source's) */
    int width, height; /* output size (even), 0 when unknown */
    int64_t bandwidth; /* bits/s for the master playlist */
};

/* The variants of md, best first: a remux variant when hls_can_remux()
 * and the source is local, then the transcode rungs 1080/720/480/360 at or
 * below the source's short side, plus the source's own short side when it
 * is <= 1080 and not a standard rung (no upscaling).  OUT rungs[0..*n). */
void hls_rungs(const struct hls_media *md, bool local,
               struct hls_rung rungs[HLS_MAX_RUNGS], int *n);

/* Finds rung name[0..len) among md's variants.  CM_NOTFOUND. */
enum cm_status hls_rung_find(const struct hls_media *md, bool local,
                             const char *name, size_t len,
                             struct hls_rung *out) CM_WUR;

/* Picks the variant for Stash's StreamingResolutionEnum value (FOUR_K,
 * FULL_HD, STANDARD_HD, STANDARD, LOW, ORIGINAL; NULL/unknown = FULL_HD):
 * the largest transcode rung not above the target, else the smallest. */
void hls_rung_for_resolution(const struct hls_media *md, bool local,
                             const char *resolution, struct hls_rung *out);

/* Transcode segment boundaries: b[k] = time of the first frame at or after
 * k*HLS_SEG_SECONDS (frame grid from fps; exact multiples when fps is 0),
 * b[n] = duration.  A last piece shorter than half a second is merged into
 * the one before.  OUT *bounds: caller owns, free with cm_free(); *n
 * segments (n+1 entries).  CM_INVALID (duration <= 0), CM_TOOBIG, CM_NOMEM. */
enum cm_status hls_grid_bounds(double duration, double fps, double **bounds,
                               uint32_t *n) CM_WUR;

/* Remux boundaries from keyframe times kf[0..nkf) (sorted, seconds from
 * the start): cut at the first keyframe at or after each multiple of
 * HLS_SEG_SECONDS.  Same output contract as hls_grid_bounds. */
enum cm_status hls_keyframe_bounds(const double *kf, size_t nkf,
                                   double duration, double **bounds,
                                   uint32_t *n) CM_WUR;

/* Appends the master playlist of md (variant URIs "<rung>/index.m3u8"). */
enum cm_status hls_master_playlist(const struct hls_media *md, bool local,
                                   struct cm_buf *out) CM_WUR;

/* Appends a VOD media playlist for bounds[0..n]: segment URIs are
 * prefix + "<k>.ts" (prefix e.g. "" or "hls/720p/"). */
enum cm_status hls_media_playlist(const double *bounds, uint32_t n,
                                  const char *prefix,
                                  struct cm_buf *out) CM_WUR;

/* ---- ffprobe output (hls_probe.c; fuzzed by fuzz_ffprobe) ------------ */

/* Parses `ffprobe -print_format json -show_format -show_streams` output
 * buf[0..len) (untrusted) into the probe fields of md (duration, size,
 * format, codecs, size, fps, pix_fmt, start_time, bit_rate).  Fields the
 * output lacks are left as they were.  CM_INVALID (not JSON / no streams),
 * CM_TOOBIG (> HLS_MAX_PROBE_OUT), CM_NOMEM. */
enum cm_status hls_probe_parse(const char *buf, size_t len,
                               struct hls_media *md) CM_WUR;

/* Parses `ffprobe -select_streams v:0 -show_entries packet=pts_time,flags
 * -of csv=p=0` output: keyframe times (flags starting with K), sorted and
 * deduplicated.  OUT *kf: caller owns, free with cm_free().  CM_INVALID
 * (a malformed line), CM_TOOBIG, CM_NOMEM. */
enum cm_status hls_keyframes_parse(const char *buf, size_t len, double **kf,
                                   size_t *n) CM_WUR;

/* ---- The manager (hls_mgr.c) ---------------------------------------- */

struct hls_mgr;
struct hls_wait;

/* Creates the manager: wipes leftovers under <cfg->cache_dir>/hls (killing
 * ffmpeg processes of a previous peekd recorded there, verified by their
 * command line, never by name), starts the monitor thread.  cfg is
 * borrowed and must outlive the manager.  opts may be NULL (defaults).
 * OUT *out: caller owns, free with hls_mgr_free().  CM_IO, CM_NOMEM. */
enum cm_status hls_mgr_new(const struct cm_config *cfg,
                           const struct hls_opts *opts,
                           struct hls_mgr **out) CM_WUR;

/* Completes every pending wait with CM_ABORTED (their callbacks run) and
 * refuses new segment requests (CM_ABORTED).  Call before the HTTP server
 * stops.  NULL-safe. */
void hls_mgr_shutdown(struct hls_mgr *m);

/* Shuts down, stops the monitor, kills (SIGKILL to the process group) and
 * reaps every ffmpeg, removes <cache_dir>/hls.  NULL-safe. */
void hls_mgr_free(struct hls_mgr *m);

/* Fills md from a scene record (files[0]): maps the path (it must exist
 * and be a regular file; ".." components are refused), else uses Stash's
 * /scene/{id}/stream when Stash is configured; runs ffprobe (cached per
 * scene, size and path) when the record lacks duration or codecs, or when
 * a local H.264 file's pixel format decides direct play and remux.
 * OUT md: release with hls_media_fini() (also on error).  CM_NOTFOUND (no
 * file, unmapped and no Stash), CM_UPSTREAM (probe failed), CM_NOMEM. */
enum cm_status hls_media_resolve(struct hls_mgr *m, const struct kv_scene *sc,
                                 struct hls_media *md) CM_WUR;

/* Appends the media playlist of variant rung of md: transcode rungs from
 * the duration grid; the copy rung from the source's keyframes (ffprobe,
 * cached).  CM_NOTFOUND (unknown rung), CM_UPSTREAM, CM_NOMEM, CM_TOOBIG. */
enum cm_status hls_variant_playlist(struct hls_mgr *m,
                                    const struct hls_media *md,
                                    const char *rung, const char *prefix,
                                    struct cm_buf *out) CM_WUR;

/* Asks for segment n of variant rung.  On CM_OK either *fd >= 0 (ready:
 * caller owns fd, *size its length) and *w == NULL, or *fd == -1 and *w is
 * a pending wait: call hls_wait_arm() then, once its callback ran,
 * hls_wait_result(); free it with hls_wait_free() in any case.
 * CM_NOTFOUND (bad rung or n), CM_BUSY (transcode limit reached: answer 503
 * with Retry-After), CM_ABORTED (shutting down), CM_IO, CM_NOMEM. */
enum cm_status hls_segment_open(struct hls_mgr *m, const struct hls_media *md,
                                const char *rung, uint32_t n, int *fd,
                                uint64_t *size, struct hls_wait **w) CM_WUR;

/* Sets the callback of w: fn(cls) is called exactly once, from the monitor
 * thread (or right here when w is already complete), when the segment is
 * ready, failed, timed out or the manager shut down. */
void hls_wait_arm(struct hls_wait *w, void (*fn)(void *cls), void *cls);

/* The outcome of a completed wait: CM_OK (OUT *fd: caller owns; *size),
 * CM_ABORTED (timed out or shut down: 504/503), CM_UPSTREAM (ffmpeg
 * failed), CM_NOTFOUND (ffmpeg ended before producing it), CM_BUSY (no
 * transcode slot). */
enum cm_status hls_wait_result(struct hls_wait *w, int *fd,
                               uint64_t *size) CM_WUR;

/* True when w's outcome was a timeout (vs shutdown) - for 504 vs 503. */
bool hls_wait_timed_out(const struct hls_wait *w);

/* Frees w (unregistering it if still pending).  NULL-safe. */
void hls_wait_free(struct hls_wait *w);

/* Blocking convenience for tests and tools: hls_segment_open + wait.
 * Same statuses as hls_wait_result plus those of hls_segment_open. */
enum cm_status hls_segment_get(struct hls_mgr *m, const struct hls_media *md,
                               const char *rung, uint32_t n, int *fd,
                               uint64_t *size) CM_WUR;

/* Counters for tests, metrics and the bench. */
struct hls_stats {
    int jobs;              /* live jobs */
    int running;           /* ffmpeg processes alive (incl. paused) */
    int paused;            /* of which SIGSTOPped */
    int64_t cache_bytes;   /* published segment bytes */
    uint64_t runs_started; /* ffmpeg runs ever started */
    uint64_t evicted;      /* segments evicted for the cache cap */
    uint64_t idle_killed;  /* jobs ended by the idle timeout */
    uint64_t busy;         /* requests refused by the transcode limit */
};
void hls_mgr_stats(struct hls_mgr *m, struct hls_stats *out);

/* The pids of live ffmpeg runs (tests check they are gone).  Returns the
 * count, at most max written. */
int hls_mgr_pids(struct hls_mgr *m, int *pids, int max);
