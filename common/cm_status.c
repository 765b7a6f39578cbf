/*
 * cm_status.c - strings for enum cm_status.
 */
#include "common/cm_status.h"

static const char *const strs[] = {
#define CM_X(name, str) str,
    CM_STATUS_LIST(CM_X)
#undef CM_X
};

static const char *const names[] = {
#define CM_X(name, str) #name,
    CM_STATUS_LIST(CM_X)
#undef CM_X
};

const char *cm_status_str(enum cm_status st)
{
    if ((unsigned)st >= CM_STATUS_COUNT)
        return "unknown status";
    return strs[st];
}

const char *cm_status_name(enum cm_status st)
{
    if ((unsigned)st >= CM_STATUS_COUNT)
        return "CM_UNKNOWN";
    return names[st];
}
