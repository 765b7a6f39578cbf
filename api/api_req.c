/*
 * api_req.c - request and response helpers of api/ (see api_int.h):
 * argument/header/cookie lookup, id parsing, the request-target parser
 * used by tests and the fuzzer, body JSON parsing with a depth limit, and
 * the response builders.
 */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/api_int.h"
#include "api/api_status.h"
#include "common/cm_alloc.h"
#include "common/cm_limits.h"

const char *api_req_arg(const struct api_req *req, const char *name)
{
    for (unsigned i = 0; i < req->n_args; i++)
        if (strcmp(req->args[i].name, name) == 0)
            return req->args[i].value;
    return NULL;
}

const char *api_req_header(const struct api_req *req, const char *name)
{
    if (req->conn)
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
    for (unsigned i = 0; i < req->n_hdrs; i++)
        if (strcasecmp(req->hdrs[i].name, name) == 0)
            return req->hdrs[i].value;
    return NULL;
}

bool api_req_cookie(const struct api_req *req, const char *name, char *out,
                    size_t outlen)
{
    const char *c = api_req_header(req, "Cookie");
    size_t nlen = strlen(name);
    if (!c || !outlen)
        return false;
    while (*c) {
        const char *end;
        while (*c == ' ' || *c == ';' || *c == '\t')
            c++;
        end = c;
        while (*end && *end != ';')
            end++;
        if ((size_t)(end - c) > nlen && strncmp(c, name, nlen) == 0 &&
            c[nlen] == '=') {
            size_t vlen = (size_t)(end - c) - nlen - 1;
            if (vlen >= outlen)
                return false;
            memcpy(out, c + nlen + 1, vlen);
            out[vlen] = '\0';
            return true;
        }
        c = end;
    }
    return false;
}

enum cm_status api_parse_id(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;
    *out = 0;
    if (!s || n == 0)
        return CM_INVALID;
    /* "id:instanceId": the instance part is accepted and ignored. */
    for (i = 0; i < n && s[i] != ':'; i++)
        ;
    n = i;
    if (n == 0 || n > 20 || s[0] == '0')
        return CM_INVALID;
    for (i = 0; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return CM_INVALID;
        d = (unsigned)(s[i] - '0');
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, d, &v))
            return CM_INVALID;
    }
    *out = v;
    return CM_OK;
}

enum api_method api_method_parse(const char *s)
{
    static const struct {
        const char *name;
        enum api_method m;
    } t[] = {{"GET", API_GET},       {"HEAD", API_HEAD},
             {"POST", API_POST},     {"PUT", API_PUT},
             {"DELETE", API_DELETE}, {"OPTIONS", API_OPTIONS},
             {"PATCH", API_PATCH}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0)
            return t[i].m;
    return API_OTHER;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes in[0..n) to out (NUL-terminated); '+' -> ' ' when plus.
 * Returns the decoded length, or -1 when it would contain a NUL. */
static long pct_decode(const char *in, size_t n, char *out, bool plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%' && i + 2 < n) {
            int h = hexval(in[i + 1]);
            int l = hexval(in[i + 2]);
            if (h >= 0 && l >= 0) {
                c = (char)(h * 16 + l);
                i += 2;
            }
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

static bool has_dotdot(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '.' && p[i + 1] == '.' && (i == 0 || p[i - 1] == '/') &&
            (i + 2 == n || p[i + 2] == '/'))
            return true;
    return false;
}

enum cm_status api_parse_target(const char *buf, size_t len, char *store,
                                size_t storelen, struct api_req *req)
{
    size_t plen = 0, o;
    long d;

    req->path = NULL;
    req->path_len = 0;
    req->n_args = 0;
    if (len > CM_MAX_URL_LEN || storelen < len + 2)
        return CM_TOOBIG;
    if (len == 0 || buf[0] != '/')
        return CM_INVALID;
    while (plen < len && buf[plen] != '?')
        plen++;
    d = pct_decode(buf, plen, store, false);
    if (d < 0 || has_dotdot(store, (size_t)d))
        return CM_INVALID;
    req->path = store;
    req->path_len = (size_t)d;
    o = (size_t)d + 1;
    if (plen < len) {
        size_t i = plen + 1;
        while (i < len && req->n_args < API_MAX_ARGS) {
            size_t s = i, eq = 0;
            long nl, vl;
            char *name, *value;
            while (i < len && buf[i] != '&') {
                if (buf[i] == '=' && !eq)
                    eq = i;
                i++;
            }
            if (i > s) {
                size_t nend = eq ? eq : i;
                name = store + o;
                nl = pct_decode(buf + s, nend - s, name, true);
                if (nl < 0)
                    return CM_INVALID;
                o += (size_t)nl + 1;
                value = store + o;
                if (eq) {
                    vl = pct_decode(buf + eq + 1, i - eq - 1, value, true);
                    if (vl < 0)
                        return CM_INVALID;
                    o += (size_t)vl + 1;
                } else {
                    value = (char *)"";
                }
                req->args[req->n_args].name = name;
                req->args[req->n_args].value = value;
                req->n_args++;
            }
            i++;
        }
    }
    return CM_OK;
}

/* Maximum nesting of [ and { outside strings; -1 when unbalanced in a way
 * that matters (more closers than openers is left to the parser). */
static int json_depth(const char *s, size_t n)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        } else if ((c == '}' || c == ']') && depth > 0)
            depth--;
    }
    return max;
}

enum cm_status api_body_json(const struct api_req *req, struct api_resp *resp,
                             struct cJSON **root)
{
    cJSON *j;
    const char *end = NULL;
    size_t n = req->body_len;
    const char *b = req->body ? req->body : "";

    *root = NULL;
    /* An empty body is an empty query. */
    while (n && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t')) {
        b++;
        n--;
    }
    if (n == 0) {
        j = cJSON_CreateObject();
        if (!j)
            return CM_NOMEM;
        *root = j;
        return CM_OK;
    }
    if (json_depth(b, n) > CM_MAX_JSON_DEPTH)
        return api_fail(resp, CM_INVALID, "JSON nested too deeply", "body");
    j = cJSON_ParseWithLengthOpts(b, n, &end, false);
    if (!j)
        return api_fail(resp, CM_INVALID, "Malformed JSON body", "body");
    while (end && (size_t)(end - b) < n &&
           (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (end && (size_t)(end - b) < n) {
        cJSON_Delete(j);
        return api_fail(resp, CM_INVALID, "Trailing bytes after JSON body",
                        "body");
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return api_fail(resp, CM_INVALID, "JSON body must be an object",
                        "body");
    }
    *root = j;
    return CM_OK;
}

/* ---- Responses -------------------------------------------------------- */

void api_resp_init(struct api_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    cm_buf_init(&resp->body, CM_MAX_RESPONSE);
    resp->fd = -1;
}

void api_resp_fini(struct api_resp *resp)
{
    if (!resp)
        return;
    cm_buf_fini(&resp->body);
    for (unsigned i = 0; i < resp->n_hdr; i++) {
        cm_free(resp->hdr_name[i]);
        cm_free(resp->hdr_value[i]);
    }
    resp->n_hdr = 0;
    if (resp->fd >= 0)
        close(resp->fd);
    resp->fd = -1;
    if (resp->reader_free && resp->reader_cls)
        resp->reader_free(resp->reader_cls);
    resp->reader = NULL;
    resp->reader_cls = NULL;
}

enum cm_status api_resp_header(struct api_resp *resp, const char *name,
                               const char *value)
{
    char *n, *v;
    if (resp->n_hdr >= API_MAX_RESP_HEADERS)
        return CM_TOOBIG;
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return CM_INVALID;
    n = cm_strdup(name);
    v = cm_strdup(value);
    if (!n || !v) {
        cm_free(n);
        cm_free(v);
        return CM_NOMEM;
    }
    resp->hdr_name[resp->n_hdr] = n;
    resp->hdr_value[resp->n_hdr] = v;
    resp->n_hdr++;
    return CM_OK;
}

void api_resp_error(struct api_resp *resp, unsigned status, const char *msg,
                    const char *field)
{
    enum cm_status st;
    cm_buf_reset(&resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    st = cm_buf_puts(&resp->body, "{\"error\":");
    if (st == CM_OK)
        st = cm_buf_put_json_str(&resp->body, msg, strlen(msg));
    if (st == CM_OK && field && *field) {
        st = cm_buf_puts(&resp->body, ",\"field\":");
        if (st == CM_OK)
            st = cm_buf_put_json_str(&resp->body, field, strlen(field));
    }
    if (st == CM_OK)
        st = cm_buf_putc(&resp->body, '}');
    if (st != CM_OK)
        cm_buf_reset(&resp->body);
}

enum cm_status api_fail(struct api_resp *resp, enum cm_status st,
                        const char *msg, const char *field)
{
    snprintf(resp->err_msg, sizeof resp->err_msg, "%s", msg ? msg : "");
    snprintf(resp->err_field, sizeof resp->err_field, "%s", field ? field : "");
    return st;
}

void api_resp_file(struct api_resp *resp, int fd, uint64_t off, uint64_t len)
{
    if (resp->fd >= 0)
        close(resp->fd);
    resp->fd = fd;
    resp->fd_off = off;
    resp->fd_len = len;
}

void api_resp_reader(struct api_resp *resp, uint64_t size, size_t block,
                     api_reader_fn fn, void *cls, void (*free_fn)(void *))
{
    if (resp->reader_free && resp->reader_cls)
        resp->reader_free(resp->reader_cls);
    resp->reader = fn;
    resp->reader_cls = cls;
    resp->reader_free = free_fn;
    resp->reader_size = size;
    resp->reader_block = block;
}

void api_resp_from_status(struct api_resp *resp, enum cm_status st)
{
    unsigned code = api_status_http(st);
    const char *msg = resp->err_msg[0] ? resp->err_msg : api_status_msg(st);
    api_resp_error(resp, code, msg, resp->err_field);
}

unsigned api_status_http(enum cm_status st)
{
    switch (st) {
#define API_X(s, code, msg)                                                    \
    case s: return code;
        API_STATUS_MAP(API_X)
#undef API_X
    default: return 500;
    }
}

const char *api_status_msg(enum cm_status st)
{
    switch (st) {
#define API_X(s, code, msg)                                                    \
    case s: return msg;
        API_STATUS_MAP(API_X)
#undef API_X
    default: return "Internal error";
    }
}

const char *api_http_reason(unsigned code)
{
    switch (code) {
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "";
    }
}
