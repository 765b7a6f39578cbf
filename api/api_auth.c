/*
 * api_auth.c - access control and Peek's sign-in endpoints.
 *
 * With cfg->token set, a request is authenticated by `Authorization:
 * Bearer <token>` or by the sign-in cookie `token=<exp>.<mac>` that
 * POST /api/auth/login sets (password = the token, user = cfg->user).  The
 * cookie never contains the token: mac = XXH3-128 twice (two seeds) over
 * "peekd-session-v1" ‖ token ‖ exp, so it is valid until exp (2 h) and
 * cannot be turned back into the token.  Comparisons are constant-time.
 * Without a token every request is authenticated (open server).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "api/api_handlers.h"

#define SESSION_TTL 7200

void api_auth_init(struct api_ctx *ctx)
{
    ctx->token_set = ctx->cfg && ctx->cfg->token && ctx->cfg->token[0];
}

bool api_ct_equal(const void *a, size_t an, const void *b, size_t bn)
{
    const unsigned char *x = a, *y = b;
    unsigned char d = an != bn;
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

void api_auth_session(const struct api_ctx *ctx, int64_t exp, char *out,
                      size_t outlen)
{
    char msg[4096 + 64];
    const char *tok = ctx->cfg->token ? ctx->cfg->token : "";
    int n = snprintf(msg, sizeof msg, "peekd-session-v1\n%s\n%lld", tok,
                     (long long)exp);
    XXH128_hash_t h1, h2;
    if (n < 0 || (size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1;
    h1 = XXH3_128bits_withSeed(msg, (size_t)n, 0x7065656b64ULL);
    h2 = XXH3_128bits_withSeed(msg, (size_t)n, h1.low64 ^ 0x5a5a5a5aULL);
    snprintf(out, outlen, "%lld.%016llx%016llx%016llx%016llx", (long long)exp,
             (unsigned long long)h1.high64, (unsigned long long)h1.low64,
             (unsigned long long)h2.high64, (unsigned long long)h2.low64);
}

static bool session_ok(const struct api_req *req)
{
    char val[128], want[128];
    char *end;
    long long exp;
    time_t now = time(NULL);
    if (!api_req_cookie(req, "token", val, sizeof val))
        return false;
    errno = 0;
    exp = strtoll(val, &end, 10);
    if (errno || *end != '.' || exp < now || exp > now + SESSION_TTL + 60)
        return false;
    api_auth_session(req->ctx, exp, want, sizeof want);
    return api_ct_equal(val, strlen(val), want, strlen(want));
}

bool api_auth_ok(const struct api_req *req)
{
    const char *h;
    if (!req->ctx || !req->ctx->token_set)
        return true;
    h = api_req_header(req, "Authorization");
    if (h && strncmp(h, "Bearer ", 7) == 0) {
        const char *tok = req->cfg->token;
        if (api_ct_equal(h + 7, strlen(h + 7), tok, strlen(tok)))
            return true;
    }
    return session_ok(req);
}

static enum cm_status put_user(struct api_req *req, struct cm_buf *b)
{
    const char *user = req->cfg->user ? req->cfg->user : "admin";
    enum cm_status st = cm_buf_puts(b, "{\"id\":1,\"username\":");
    if (st == CM_OK)
        st = cm_buf_put_json_str(b, user, strlen(user));
    if (st == CM_OK)
        st = cm_buf_puts(b, ",\"role\":\"ADMIN\",\"setupCompleted\":true,"
                            "\"landingPagePreference\":{\"pages\":"
                            "[\"home\"],\"randomize\":false}}");
    return st;
}

enum cm_status api_h_setup_status(struct api_req *req, struct api_resp *resp)
{
    resp->content_type = "application/json";
    resp->status = 200;
    return cm_buf_puts(&resp->body, "{\"setupComplete\":true,\"hasUsers\":true,"
                                    "\"hasStashInstance\":true,\"userCount\":1,"
                                    "\"stashInstanceCount\":1}");
}

enum cm_status api_h_auth_check(struct api_req *req, struct api_resp *resp)
{
    enum cm_status st;
    /* Reached only authenticated (the server answers 401 otherwise). */
    resp->content_type = "application/json";
    resp->status = 200;
    st = cm_buf_puts(&resp->body, "{\"authenticated\":true,\"user\":");
    if (st == CM_OK)
        st = put_user(req, &resp->body);
    if (st == CM_OK)
        st = cm_buf_putc(&resp->body, '}');
    return st;
}

enum cm_status api_h_auth_login(struct api_req *req, struct api_resp *resp)
{
    enum cm_status st;
    cJSON *root = NULL;
    const cJSON *u, *p;
    const char *user = req->cfg->user ? req->cfg->user : "admin";
    char cookie[256], val[128];

    st = api_body_json(req, resp, &root);
    if (st != CM_OK)
        return st;
    u = cJSON_GetObjectItemCaseSensitive(root, "username");
    p = cJSON_GetObjectItemCaseSensitive(root, "password");
    if (!cJSON_IsString(u) || !u->valuestring[0]) {
        st = api_fail(resp, CM_INVALID, "Username and password are required",
                      "username");
        goto out;
    }
    if (!cJSON_IsString(p)) {
        st = api_fail(resp, CM_INVALID, "Username and password are required",
                      "password");
        goto out;
    }
    if (req->ctx->token_set) {
        const char *tok = req->cfg->token;
        bool ok_user = api_ct_equal(u->valuestring, strlen(u->valuestring),
                                    user, strlen(user));
        bool ok_pass = api_ct_equal(p->valuestring, strlen(p->valuestring), tok,
                                    strlen(tok));
        if (!ok_user || !ok_pass) {
            api_resp_error(resp, 401, "Invalid credentials", NULL);
            st = CM_OK;
            goto out;
        }
    }
    api_auth_session(req->ctx, (int64_t)time(NULL) + SESSION_TTL, val,
                     sizeof val);
    snprintf(cookie, sizeof cookie,
             "token=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%d", val,
             SESSION_TTL);
    if ((st = api_resp_header(resp, "Set-Cookie", cookie)) != CM_OK)
        goto out;
    resp->content_type = "application/json";
    resp->status = 200;
    if ((st = cm_buf_puts(&resp->body, "{\"success\":true,\"user\":")) != CM_OK)
        goto out;
    if ((st = put_user(req, &resp->body)) != CM_OK)
        goto out;
    st = cm_buf_putc(&resp->body, '}');
out:
    cJSON_Delete(root);
    return st;
}

enum cm_status api_h_auth_logout(struct api_req *req, struct api_resp *resp)
{
    enum cm_status st =
        api_resp_header(resp, "Set-Cookie",
                        "token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (void)req;
    if (st != CM_OK)
        return st;
    resp->content_type = "application/json";
    resp->status = 200;
    return cm_buf_puts(&resp->body, "{\"success\":true}");
}
