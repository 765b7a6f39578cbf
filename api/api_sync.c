/*
 * api_sync.c - GET /api/sync/status, POST /api/sync/trigger
 * {type:"full"|"incremental"}, POST /api/sync/abort, through the hooks the
 * server was started with (struct api_hooks; cmd_serve wires sync/).
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "api/api_handlers.h"

enum cm_status api_h_sync_status(struct api_req *req, struct api_resp *resp)
{
    const struct api_hooks *h = &req->ctx->hooks;
    resp->content_type = "application/json";
    resp->status = 200;
    if (!h->sync_status_json)
        return cm_buf_puts(&resp->body,
                           "{\"enabled\":false,\"running\":false}");
    return h->sync_status_json(h->cls, &resp->body);
}

static void not_configured(struct api_resp *resp)
{
    api_resp_error(resp, 409, "Sync is not configured (set STASH_URL)", NULL);
}

enum cm_status api_h_sync_trigger(struct api_req *req, struct api_resp *resp)
{
    const struct api_hooks *h = &req->ctx->hooks;
    cJSON *root = NULL;
    const cJSON *type;
    bool full = false;
    enum cm_status st = api_body_json(req, resp, &root);
    if (st != CM_OK)
        return st;
    type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (type && !cJSON_IsNull(type)) {
        if (cJSON_IsString(type) && strcmp(type->valuestring, "full") == 0)
            full = true;
        else if (!cJSON_IsString(type) ||
                 strcmp(type->valuestring, "incremental") != 0) {
            cJSON_Delete(root);
            return api_fail(resp, CM_INVALID,
                            "type must be \"full\" or \"incremental\"", "type");
        }
    }
    cJSON_Delete(root);
    if (!h->sync_trigger) {
        not_configured(resp);
        return CM_OK;
    }
    st = h->sync_trigger(h->cls, full);
    if (st == CM_BUSY) {
        api_resp_error(resp, 409, "A sync is already running", NULL);
        return CM_OK;
    }
    if (st != CM_OK)
        return st;
    resp->content_type = "application/json";
    resp->status = 202;
    return cm_buf_puts(&resp->body, full ? "{\"success\":true,\"type\":"
                                           "\"full\"}"
                                         : "{\"success\":true,\"type\":"
                                           "\"incremental\"}");
}

enum cm_status api_h_sync_abort(struct api_req *req, struct api_resp *resp)
{
    const struct api_hooks *h = &req->ctx->hooks;
    enum cm_status st;
    if (!h->sync_abort) {
        not_configured(resp);
        return CM_OK;
    }
    st = h->sync_abort(h->cls);
    if (st == CM_NOTFOUND) {
        api_resp_error(resp, 409, "No sync is running", NULL);
        return CM_OK;
    }
    if (st != CM_OK)
        return st;
    resp->content_type = "application/json";
    resp->status = 200;
    return cm_buf_puts(&resp->body, "{\"success\":true}");
}
