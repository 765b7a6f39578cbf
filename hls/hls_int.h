/*
 * hls_int.h - shared inside hls/ only: spawning ffmpeg/ffprobe with
 * posix_spawn (argv arrays, no shell, own process group, stdin from
 * /dev/null) and capturing a bounded stdout.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "common/cm_buf.h"
#include "common/cm_status.h"

/* Spawns argv[0] (PATH lookup) in a new process group (pgid = pid), stdin
 * /dev/null, stdout to out_fd (or /dev/null when < 0), stderr to err_path
 * (appended, or /dev/null when NULL).  OUT *pid.  CM_IO (errno logged,
 * never argv: it may hold the Stash key). */
enum cm_status hls_spawn(char *const argv[], int out_fd, const char *err_path,
                         pid_t *pid) CM_WUR;

/* Runs argv to completion capturing stdout into out (bounded by out->max),
 * killing the child after timeout_ms.  CM_OK only for exit status 0;
 * CM_UPSTREAM (non-zero exit, signal, timeout), CM_TOOBIG (output past the
 * bound; child killed), CM_IO. */
enum cm_status hls_run_capture(char *const argv[], struct cm_buf *out,
                               int timeout_ms) CM_WUR;

/* Monotonic milliseconds. */
int64_t hls_now_ms(void);

/* rm -rf path (no symlink following).  Returns 0 when gone. */
int hls_rmrf(const char *path);
