/*
 * fuzz_config.c - the settings parser (flags and environment values are
 * untrusted text).  Input: "name=value" lines; each is applied with
 * cm_config_set().  Must never crash, leak or accept a value that then
 * fails to round-trip through the typed fields.
 */
#include <stdint.h>
#include <string.h>

#include "common/cm_alloc.h"
#include "common/cm_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_config cfg;
    char line[4200], err[256];
    size_t i = 0;

    if (cm_config_init(&cfg) != CM_OK)
        return 0;
    while (i < size) {
        size_t start = i, n;
        char *eq;
        while (i < size && data[i] != '\n')
            i++;
        n = i - start;
        i++;
        if (n >= sizeof line)
            continue;
        memcpy(line, data + start, n);
        line[n] = '\0';
        if (strlen(line) != n)
            continue; /* embedded NUL: not expressible in argv/env */
        eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (cm_config_set(&cfg, line, eq + 1, err, sizeof err) != CM_OK)
            continue;
        if (cfg.listen_port < 0 || cfg.listen_port > 65535)
            __builtin_trap();
        if (cfg.n_path_maps < 0 || cfg.n_path_maps > CM_MAX_PATH_MAPS)
            __builtin_trap();
    }
    if (cfg.n_path_maps > 0) {
        char *m = cm_config_map_path(&cfg, cfg.path_maps[0].from);
        cm_free(m);
    }
    cm_config_fini(&cfg);
    return 0;
}
