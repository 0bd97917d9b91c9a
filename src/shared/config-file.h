/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

/* A GKeyFile read against a table of known keys: anything not in the table,
 * or a value out of range, is an error naming the file, the line and the key
 * (DESIGN.md §3a). A missing file means all defaults. */

typedef enum ConfigType {
        CONFIG_UINT,     /* unsigned int, within [min, max] */
        CONFIG_BOOL,     /* bool */
        CONFIG_STRING,   /* char *, g_free'd when replaced */
        /* A group whose keys are not known in advance (a key NULL in the
         * table): char **, each key and its value in turn, in the order of
         * the file (g_strfreev'd when replaced); an empty list when the
         * group is there with no keys, left NULL when it is not there. */
        CONFIG_ENTRIES,
} ConfigType;

typedef struct ConfigKey {
        const char *group;
        const char *key;
        ConfigType type;
        size_t offset;           /* of the field in the target struct */
        unsigned min, max;       /* for CONFIG_UINT */
        /* For CONFIG_ENTRIES: whether KEY=VALUE is good; when not,
         * *RET_REASON (g_free'd) says why, for the error naming the line. */
        bool (*check)(const char *key, const char *value, char **ret_reason);
} ConfigKey;

bool config_file_load(const char *path, const ConfigKey *keys, size_t n_keys, void *target, GError **error);
