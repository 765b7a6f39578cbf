/*
 * api_static.c - the web client's files from cfg->web_dir, with Peek's
 * index.html fallback for deep links (a path whose last segment has no
 * extension).  Paths with "..", NUL or backslashes are refused; symlinks
 * out of web_dir are not followed for the final component.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_handlers.h"

static const char *mime(const char *path)
{
    static const struct {
        const char *ext, *type;
    } t[] = {{".html", "text/html; charset=utf-8"},
             {".js", "text/javascript; charset=utf-8"},
             {".mjs", "text/javascript; charset=utf-8"},
             {".css", "text/css; charset=utf-8"},
             {".json", "application/json"},
             {".svg", "image/svg+xml"},
             {".png", "image/png"},
             {".jpg", "image/jpeg"},
             {".webp", "image/webp"},
             {".ico", "image/x-icon"},
             {".woff2", "font/woff2"},
             {".txt", "text/plain; charset=utf-8"},
             {".webmanifest", "application/manifest+json"}};
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            if (strcmp(dot, t[i].ext) == 0)
                return t[i].type;
    return "application/octet-stream";
}

static bool safe_path(const char *p)
{
    if (strstr(p, "..") || strchr(p, '\\'))
        return false;
    return true;
}

static int open_file(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

enum cm_status api_h_static(struct api_req *req, struct api_resp *resp)
{
    char path[4096];
    const char *rel = req->path;
    const char *last;
    struct stat st;
    int fd = -1, n;
    bool fallback = false;

    if (!safe_path(rel))
        return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
    if (strcmp(rel, "/") == 0)
        rel = "/index.html";
    n = snprintf(path, sizeof path, "%s%s", req->cfg->web_dir, rel);
    if (n < 0 || (size_t)n >= sizeof path)
        return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
    fd = open_file(path, &st);
    if (fd < 0) {
        last = strrchr(rel, '/');
        if (last && strchr(last, '.'))
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        n = snprintf(path, sizeof path, "%s/index.html", req->cfg->web_dir);
        if (n < 0 || (size_t)n >= sizeof path)
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        fd = open_file(path, &st);
        if (fd < 0)
            return api_fail(resp, CM_NOTFOUND, "Not found", NULL);
        fallback = true;
    }
    resp->content_type = mime(path);
    resp->status = 200;
    if (api_resp_header(resp, "Cache-Control",
                        fallback || strstr(path, "index.html")
                            ? "no-cache"
                            : "public, max-age=3600") != CM_OK) {
        close(fd);
        return CM_NOMEM;
    }
    api_resp_file(resp, fd, 0, (uint64_t)st.st_size);
    return CM_OK;
}
