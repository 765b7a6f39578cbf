/*
 * cm_status.h - the one status enum of peekd.
 *
 * Every fallible function returns an enum cm_status; results travel through
 * out-parameters placed last.  Foreign codes (MDB_*, CURLcode, errno, HTTP
 * statuses, cJSON NULLs) are translated once, where they enter, and logged
 * there.  Only api/ maps statuses to HTTP.  Thread-safe: pure functions.
 */
#pragma once

#define CM_STATUS_LIST(X)                                                      \
    X(CM_OK, "ok")                                                             \
    X(CM_NOMEM, "out of memory")                                               \
    X(CM_NOTFOUND, "not found")                                                \
    X(CM_EXISTS, "already exists")                                             \
    X(CM_INVALID, "invalid argument")                                          \
    X(CM_TOOBIG, "too big")                                                    \
    X(CM_IO, "i/o error")                                                      \
    X(CM_CORRUPT, "corrupt data")                                              \
    X(CM_BUSY, "busy")                                                         \
    X(CM_UPSTREAM, "upstream error")                                           \
    X(CM_INTERNAL, "internal error")                                           \
    X(CM_UNSUPPORTED, "unsupported")                                           \
    X(CM_ABORTED, "aborted")                                                   \
    X(CM_VERSION, "version mismatch")

enum cm_status {
#define CM_X(name, str) name,
    CM_STATUS_LIST(CM_X)
#undef CM_X
        CM_STATUS_COUNT
};

#define CM_WUR __attribute__((warn_unused_result))

/* Returns a static, human-readable string for st ("unknown status" when out
 * of range).  Never NULL. */
const char *cm_status_str(enum cm_status st);

/* Returns the enum's own name ("CM_NOTFOUND"), for logs and JSON. */
const char *cm_status_name(enum cm_status st);
