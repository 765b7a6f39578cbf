/*
 * api_status.h - the one table mapping enum cm_status to HTTP statuses and
 * default error messages (lwan's lwan-http-status.h idea).  Only api/ maps
 * statuses to HTTP, and only through this table.
 */
#pragma once

#include "common/cm_status.h"

/* X(status, http code, default message) */
#define API_STATUS_MAP(X)                                                      \
    X(CM_OK, 200, "OK")                                                        \
    X(CM_NOMEM, 503, "Out of memory")                                          \
    X(CM_NOTFOUND, 404, "Not found")                                           \
    X(CM_EXISTS, 409, "Already exists")                                        \
    X(CM_INVALID, 400, "Bad request")                                          \
    X(CM_TOOBIG, 413, "Request too large")                                     \
    X(CM_IO, 500, "Storage error")                                             \
    X(CM_CORRUPT, 500, "Corrupt data")                                         \
    X(CM_BUSY, 503, "Busy, try again")                                         \
    X(CM_UPSTREAM, 502, "Stash is unreachable or failed")                      \
    X(CM_INTERNAL, 500, "Internal error")                                      \
    X(CM_UNSUPPORTED, 404, "Not found")                                        \
    X(CM_ABORTED, 503, "Aborted")                                              \
    X(CM_VERSION, 500, "Store version mismatch")

/* HTTP status for st (500 for an out-of-range value). */
unsigned api_status_http(enum cm_status st);

/* Default message for st (never NULL). */
const char *api_status_msg(enum cm_status st);

/* Reason phrase of an HTTP status code, for logs ("Not Found"). */
const char *api_http_reason(unsigned code);
