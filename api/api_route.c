/*
 * api_route.c - the router: path -> handler, with the methods each route
 * allows (405 + Allow otherwise) and 404 for everything unknown.  The
 * table of routes here is the one docs/openapi.json describes (a test
 * checks both ways).
 */
#include <string.h>

#include "api/api_handlers.h"

static bool eq(const char *a, size_t an, const char *lit)
{
    size_t n = strlen(lit);
    return an == n && memcmp(a, lit, n) == 0;
}

/* Splits path into at most max segments (pointers into path). */
static unsigned split(const char *path, size_t len, const char **seg,
                      size_t *seglen, unsigned max)
{
    unsigned n = 0;
    size_t i = 0;
    while (i < len) {
        size_t s;
        while (i < len && path[i] == '/')
            i++;
        if (i >= len)
            break;
        s = i;
        while (i < len && path[i] != '/')
            i++;
        if (n == max)
            return max + 1;
        seg[n] = path + s;
        seglen[n] = i - s;
        n++;
    }
    return n;
}

static uint8_t etype_of(const char *s, size_t n)
{
    if (eq(s, n, "performers"))
        return KV_PERFORMER;
    if (eq(s, n, "studios"))
        return KV_STUDIO;
    if (eq(s, n, "tags"))
        return KV_TAG;
    if (eq(s, n, "groups"))
        return KV_GROUP;
    if (eq(s, n, "galleries"))
        return KV_GALLERY;
    return 0;
}

static enum cm_status method_check(struct api_req *req, struct api_resp *resp,
                                   unsigned allowed, const char *allow)
{
    if (req->method & allowed)
        return CM_OK;
    resp->allow = allow;
    api_resp_error(resp, 405, "Method not allowed", NULL);
    return CM_ABORTED; /* resp is final */
}

#define GET_ONLY (API_GET | API_HEAD)
#define METHODS(m, allow)                                                      \
    do {                                                                       \
        if (method_check(req, resp, (m), (allow)) != CM_OK)                    \
            return CM_OK;                                                      \
    } while (0)

static enum cm_status route_library(struct api_req *req, struct api_resp *resp,
                                    const char **seg, size_t *sl, unsigned n)
{
    uint8_t et;
    /* seg[0] = "api", seg[1] = "library" */
    if (n == 3 && eq(seg[2], sl[2], "scenes")) {
        req->route = API_R_SCENES;
        METHODS(API_POST, "POST");
        return api_h_scenes(req, resp);
    }
    if ((n == 4 || n == 5) && eq(seg[2], sl[2], "scenes")) {
        enum cm_status st = api_parse_id(seg[3], sl[3], &req->scene_id);
        if (n == 5 && !eq(seg[4], sl[4], "similar"))
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        req->route = n == 4 ? API_R_SCENE : API_R_SIMILAR;
        METHODS(GET_ONLY, "GET, HEAD");
        if (st != CM_OK)
            return api_fail(resp, CM_INVALID, "Invalid scene id", "id");
        return n == 4 ? api_h_scene(req, resp) : api_h_similar(req, resp);
    }
    et = n >= 3 ? etype_of(seg[2], sl[2]) : 0;
    if (et && n == 3) {
        req->route = API_R_ENTITIES;
        METHODS(API_POST, "POST");
        return api_h_entities(req, resp, et);
    }
    if (et && n == 4 && eq(seg[3], sl[3], "minimal")) {
        req->route = API_R_MINIMAL;
        METHODS(API_POST, "POST");
        return api_h_minimal(req, resp, et);
    }
    return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
}

static enum cm_status route_api(struct api_req *req, struct api_resp *resp,
                                const char **seg, size_t *sl, unsigned n)
{
    if (n >= 2 && eq(seg[1], sl[1], "library"))
        return route_library(req, resp, seg, sl, n);
    if (n >= 3 && eq(seg[1], sl[1], "scene")) {
        /* Video: everything under /api/scene/{id}/ (hls engineer). */
        enum cm_status st = api_parse_id(seg[2], sl[2], &req->scene_id);
        req->route = API_R_VIDEO;
        if (st != CM_OK)
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        req->subpath = n > 3 ? seg[3] : "";
        return api_video_handle(req, resp);
    }
    if (n == 2 && eq(seg[1], sl[1], "health")) {
        req->route = API_R_HEALTH;
        METHODS(GET_ONLY, "GET, HEAD");
        return api_h_health(req, resp);
    }
    if (n == 3 && eq(seg[1], sl[1], "sync")) {
        req->route = API_R_SYNC;
        if (eq(seg[2], sl[2], "status")) {
            METHODS(GET_ONLY, "GET, HEAD");
            return api_h_sync_status(req, resp);
        }
        if (eq(seg[2], sl[2], "trigger")) {
            METHODS(API_POST, "POST");
            return api_h_sync_trigger(req, resp);
        }
        if (eq(seg[2], sl[2], "abort")) {
            METHODS(API_POST, "POST");
            return api_h_sync_abort(req, resp);
        }
    }
    if (n == 3 && eq(seg[1], sl[1], "setup") && eq(seg[2], sl[2], "status")) {
        req->route = API_R_AUTH;
        METHODS(GET_ONLY, "GET, HEAD");
        return api_h_setup_status(req, resp);
    }
    if (n == 3 && eq(seg[1], sl[1], "auth")) {
        req->route = API_R_AUTH;
        if (eq(seg[2], sl[2], "check")) {
            METHODS(GET_ONLY, "GET, HEAD");
            return api_h_auth_check(req, resp);
        }
        if (eq(seg[2], sl[2], "login")) {
            METHODS(API_POST, "POST");
            return api_h_auth_login(req, resp);
        }
        if (eq(seg[2], sl[2], "logout")) {
            METHODS(API_POST, "POST");
            return api_h_auth_logout(req, resp);
        }
    }
    if (n >= 3 && eq(seg[1], sl[1], "proxy")) {
        req->route = API_R_IMAGE;
        METHODS(GET_ONLY, "GET, HEAD");
        return api_h_image(req, resp);
    }
    return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
}

enum cm_status api_route(struct api_req *req, struct api_resp *resp)
{
    const char *seg[8];
    size_t sl[8];
    unsigned n;

    req->route = API_R_UNKNOWN;
    if (!req->path || req->path[0] != '/')
        return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
    if (strcmp(req->path, "/metrics") == 0) {
        req->route = API_R_METRICS;
        METHODS(GET_ONLY, "GET, HEAD");
        return api_h_metrics(req, resp);
    }
    n = split(req->path, req->path_len, seg, sl, 8);
    if (n >= 1 && eq(seg[0], sl[0], "api")) {
        /* /api/scene/{id}/<subpath with slashes>: keep the raw rest. */
        if (n >= 4 && eq(seg[1], sl[1], "scene")) {
            const char *rest = seg[3];
            enum cm_status st;
            req->route = API_R_VIDEO;
            st = api_parse_id(seg[2], sl[2], &req->scene_id);
            if (st != CM_OK)
                return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
            req->subpath = rest;
            return api_video_handle(req, resp);
        }
        if (n > 8)
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        return route_api(req, resp, seg, sl, n);
    }
    if (req->cfg && req->cfg->web_dir) {
        req->route = API_R_STATIC;
        METHODS(GET_ONLY, "GET, HEAD");
        return api_h_static(req, resp);
    }
    return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
}

/* Every route with its methods, in OpenAPI path syntax (docs/openapi.json
 * lists exactly these; tests/unit/test_api_http.c checks both ways and
 * that each answers). */
const struct api_route_desc api_routes[] = {
    {"POST", "/api/library/scenes"},
    {"GET", "/api/library/scenes/{id}"},
    {"GET", "/api/library/scenes/{id}/similar"},
    {"POST", "/api/library/performers"},
    {"POST", "/api/library/studios"},
    {"POST", "/api/library/tags"},
    {"POST", "/api/library/groups"},
    {"POST", "/api/library/galleries"},
    {"POST", "/api/library/performers/minimal"},
    {"POST", "/api/library/studios/minimal"},
    {"POST", "/api/library/tags/minimal"},
    {"POST", "/api/library/groups/minimal"},
    {"POST", "/api/library/galleries/minimal"},
    {"GET", "/api/sync/status"},
    {"POST", "/api/sync/trigger"},
    {"POST", "/api/sync/abort"},
    {"GET", "/api/health"},
    {"GET", "/metrics"},
    {"GET", "/api/setup/status"},
    {"GET", "/api/auth/check"},
    {"POST", "/api/auth/login"},
    {"POST", "/api/auth/logout"},
    {"GET", "/api/proxy/scene/{id}/{asset}"},
    {"GET", "/api/proxy/{kind}/{id}/image"},
    {"GET", "/api/proxy/group/{id}/back_image"},
    {"GET", "/api/proxy/stash"},
    {"GET", "/api/scene/{id}/stream"},
    {"GET", "/api/scene/{id}/hls/master.m3u8"},
    {"GET", "/api/scene/{id}/proxy-stream/{path}"},
    {NULL, NULL},
};
