/*
 * cmd_health.c - `peekd health`: probe a running `peekd serve`.
 *
 * The container's HEALTHCHECK runs this instead of curl (the runtime image
 * has no curl binary): GET http://HOST:PORT/api/health on the configured
 * listen address (PEEKD_LISTEN / --listen), where a wildcard bind address
 * (0.0.0.0, ::) is reached over loopback.  Exit 0 when the server answers
 * 200, 1 when it does not (refused, timeout, other status), 2 on a
 * configuration error.  Proxies from the environment are ignored: the probe
 * is always local.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/cm_buf.h"
#include "common/cm_status.h"

/* A probe that takes longer than this is a failed probe: Docker's own
 * --timeout should be larger (the compose file uses 10 s). */
#define HEALTH_TIMEOUT_S 5L
/* The health answer is small; more than this is not our server. */
#define HEALTH_MAX_BODY 4096

static size_t on_body(char *p, size_t size, size_t n, void *cls)
{
    struct cm_buf *body = cls;
    size_t len = size * n;
    size_t room = HEALTH_MAX_BODY - body->len;
    /* Keep the first bytes for the message, swallow the rest. */
    if (cm_buf_append(body, p, len < room ? len : room) != CM_OK)
        return 0;
    return len;
}

/* The host to connect to for a bind address: wildcards mean loopback. */
static const char *probe_host(const char *listen_host, int *is_v6)
{
    *is_v6 = 0;
    if (strcmp(listen_host, "0.0.0.0") == 0 || listen_host[0] == '\0' ||
        strcmp(listen_host, "*") == 0)
        return "127.0.0.1";
    if (strcmp(listen_host, "::") == 0) {
        *is_v6 = 1;
        return "::1";
    }
    *is_v6 = strchr(listen_host, ':') != NULL;
    return listen_host;
}

/* Builds the URL and runs the GET.  OUT *http: status (0 = no answer);
 * OUT msg: what went wrong. */
static enum cm_status probe(const struct cm_config *cfg, struct cm_buf *url,
                            struct cm_buf *body, long *http, char *msg,
                            size_t msglen)
{
    enum cm_status st = CM_OK;
    CURL *c = NULL;
    CURLcode cc;
    int v6;
    const char *host = probe_host(cfg->listen_host, &v6);

    *http = 0;
    if (cm_buf_printf(url, "http://%s%s%s:%d/api/health", v6 ? "[" : "", host,
                      v6 ? "]" : "", cfg->listen_port) != CM_OK) {
        snprintf(msg, msglen, "listen address too long");
        return CM_INVALID;
    }
    c = curl_easy_init();
    if (!c) {
        snprintf(msg, msglen, "cannot initialise libcurl");
        return CM_NOMEM;
    }
    if (curl_easy_setopt(c, CURLOPT_URL, url->data) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*") != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT, HEALTH_TIMEOUT_S) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, HEALTH_TIMEOUT_S) !=
            CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_USERAGENT, "peekd-health") != CURLE_OK) {
        snprintf(msg, msglen, "cannot configure libcurl");
        st = CM_INTERNAL;
        goto out;
    }
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        snprintf(msg, msglen, "%s", curl_easy_strerror(cc));
        st = CM_UPSTREAM;
        goto out;
    }
    if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http) != CURLE_OK)
        *http = 0;
    if (*http != 200) {
        snprintf(msg, msglen, "HTTP %ld", *http);
        st = CM_UPSTREAM;
    }
out:
    curl_easy_cleanup(c);
    return st;
}

int cmd_health(int argc, char **argv)
{
    struct cm_config cfg;
    struct cm_buf url, body;
    char msg[CURL_ERROR_SIZE + 64] = "";
    long http = 0;
    enum cm_status st;
    int rc;

    if (cmd_setup(CM_CMD_HEALTH, "health",
                  "probe a running `peekd serve` (GET /api/health on the "
                  "listen address; exit 0 when it answers 200, 1 otherwise)",
                  argc, argv, &cfg, NULL, NULL, &rc))
        return rc;
    if (cfg.listen_port == 0) {
        fprintf(stderr, "peekd health: --listen/PEEKD_LISTEN has port 0: "
                        "give the port the server listens on\n");
        cm_config_fini(&cfg);
        return 2;
    }
    cm_buf_init(&url, 1024);
    cm_buf_init(&body, HEALTH_MAX_BODY + 1);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "peekd health: cannot initialise libcurl\n");
        rc = 1;
        goto out;
    }
    st = probe(&cfg, &url, &body, &http, msg, sizeof msg);
    curl_global_cleanup();
    if (st != CM_OK) {
        fprintf(stderr, "peekd health: unhealthy: %s%s%s\n", msg,
                url.len ? " from " : "", url.len ? url.data : "");
        rc = st == CM_INVALID ? 2 : 1;
        goto out;
    }
    printf("healthy: %s answered 200 %s\n", url.data,
           body.len ? body.data : "");
    rc = 0;
out:
    cm_buf_fini(&url);
    cm_buf_fini(&body);
    cm_config_fini(&cfg);
    return rc;
}
