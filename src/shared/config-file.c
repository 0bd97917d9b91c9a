/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config-file.h"

/* GKeyFile does not say where a key stands, so find its line ourselves. */
static unsigned find_line(const char *contents, const char *group, const char *key) {
        g_auto(GStrv) lines = g_strsplit(contents, "\n", -1);
        const char *current = NULL;
        g_autofree char *current_buf = NULL;

        for (unsigned i = 0; lines[i]; i++) {
                char *line = g_strstrip(lines[i]);

                if (line[0] == '[') {
                        char *end = strchr(line, ']');
                        g_free(current_buf);
                        current_buf = g_strndup(line + 1, end ? (size_t) (end - line - 1) : strlen(line + 1));
                        current = current_buf;
                        if (!key && strcmp(current, group) == 0)
                                return i + 1;
                        continue;
                }
                if (!key || !current || strcmp(current, group) != 0)
                        continue;
                size_t n = strlen(key);
                if (strncmp(line, key, n) == 0 && (line[n] == '=' || line[n] == ' ' || line[n] == '\t'))
                        return i + 1;
        }
        return 0;
}

/* GKeyFile merges a group that appears twice and keeps the last of a key
 * set twice, silently: a setting edited in one place would be overridden by
 * another further down. Both are errors naming the two lines. CONTENTS was
 * parsed by GKeyFile already, so every line is a comment, a group or a
 * key=value pair, read here as GKeyFile reads them. */
static bool check_duplicates(const char *path, const char *contents, GError **error) {
        g_autoptr(GHashTable) groups = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_autoptr(GHashTable) keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_auto(GStrv) lines = g_strsplit(contents, "\n", -1);
        const char *group = NULL;

        for (unsigned i = 0; lines[i]; i++) {
                char *line = g_strchug(lines[i]), *end;
                unsigned number = i + 1, first;

                g_strchomp(line);
                if (line[0] == '\0' || line[0] == '#')
                        continue;
                if (line[0] == '[') {
                        end = strrchr(line, ']');
                        g_autofree char *name = g_strndup(line + 1, end ? (size_t) (end - line - 1) : strlen(line + 1));

                        first = GPOINTER_TO_UINT(g_hash_table_lookup(groups, name));
                        if (first > 0) {
                                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                                            "%s:%u: duplicate group [%s], already begun on line %u",
                                            path, number, name, first);
                                return false;
                        }
                        group = name;   /* owned by the table from here */
                        g_hash_table_insert(groups, g_steal_pointer(&name), GUINT_TO_POINTER(number));
                        continue;
                }
                end = strchr(line, '=');
                if (!group || !end)
                        continue;
                *end = '\0';
                g_strchomp(line);
                g_autofree char *id = g_strconcat(group, "\n", line, NULL);
                first = GPOINTER_TO_UINT(g_hash_table_lookup(keys, id));
                if (first > 0) {
                        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                                    "%s:%u: duplicate key '%s' in group [%s], already set on line %u",
                                    path, number, line, group, first);
                        return false;
                }
                g_hash_table_insert(keys, g_steal_pointer(&id), GUINT_TO_POINTER(number));
        }
        return true;
}

static const ConfigKey *find_key(const ConfigKey *keys, size_t n, const char *group, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(keys[i].group, group) == 0 && (!key || !keys[i].key || strcmp(keys[i].key, key) == 0))
                        return &keys[i];
        return NULL;
}

static bool parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        unsigned long v;

        if (!g_ascii_isdigit(s[0]))
                return false;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < min || v > max)
                return false;
        *ret = (unsigned) v;
        return true;
}

static bool set_value(const ConfigKey *k, const char *value, void *target) {
        void *field = (char *) target + k->offset;

        switch (k->type) {
        case CONFIG_UINT:
                return parse_uint(value, k->min, k->max, field);
        case CONFIG_BOOL:
                if (g_ascii_strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0 || g_ascii_strcasecmp(value, "yes") == 0)
                        *(bool *) field = true;
                else if (g_ascii_strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0 || g_ascii_strcasecmp(value, "no") == 0)
                        *(bool *) field = false;
                else
                        return false;
                return true;
        case CONFIG_STRING:
                g_free(*(char **) field);
                *(char **) field = g_strdup(value);
                return true;
        case CONFIG_ENTRIES:
                return false;   /* a whole group: load_entries() */
        }
        return false;
}

static const char *expected(const ConfigKey *k, char *buf, size_t size) {
        switch (k->type) {
        case CONFIG_UINT:
                g_snprintf(buf, size, "an integer from %u to %u", k->min, k->max);
                return buf;
        case CONFIG_BOOL:
                return "true or false";
        default:
                return "a string";
        }
}

/* GKeyFile takes "key[xx]" for a translation of "key" and hides it from
 * g_key_file_get_keys(): in a group whose keys are the user's own (a
 * pattern), such a line would be dropped without a word. The first key
 * line of GROUP in CONTENTS that is not among NAMES: its line number and,
 * in *RET_KEY, the key; 0 when there is none. */
static unsigned find_hidden_key(const char *contents, const char *group, char **names, char **ret_key) {
        g_auto(GStrv) lines = g_strsplit(contents, "\n", -1);
        bool in_group = false;

        for (unsigned i = 0; lines[i]; i++) {
                char *line = g_strstrip(lines[i]), *end;

                if (line[0] == '[') {
                        end = strrchr(line, ']');
                        in_group = end && (size_t) (end - line - 1) == strlen(group) &&
                                   strncmp(line + 1, group, strlen(group)) == 0;
                        continue;
                }
                end = strchr(line, '=');
                if (!in_group || line[0] == '#' || !end)
                        continue;
                *end = '\0';
                g_strchomp(line);
                if (!names || !g_strv_contains((const char * const *) names, line)) {
                        *ret_key = g_strdup(line);
                        return i + 1;
                }
        }
        return 0;
}

/* A group of CONFIG_ENTRIES: each key is checked by K, then kept with
 * its value, in the order of the file. */
static bool load_entries(GKeyFile *kf, const char *path, const char *contents, const char *group, char **names,
                         const ConfigKey *k, void *target, GError **error) {
        char ***field = (char ***) ((char *) target + k->offset);
        g_autoptr(GStrvBuilder) entries = g_strv_builder_new();
        g_autofree char *hidden = NULL;
        unsigned line = find_hidden_key(contents, group, names, &hidden);

        if (line > 0) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s:%u: bad key '%s' in group [%s]: brackets are not allowed in it", path, line,
                            hidden, group);
                return false;
        }

        for (size_t i = 0; names && names[i]; i++) {
                g_autofree char *value = g_key_file_get_string(kf, group, names[i], NULL);
                g_autofree char *reason = NULL;

                if (!value || (k->check && !k->check(names[i], value, &reason))) {
                        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                                    "%s:%u: bad entry '%s=%s' in group [%s]: %s",
                                    path, find_line(contents, group, names[i]), names[i], value ?: "",
                                    group, reason ?: "cannot read its value");
                        return false;
                }
                g_strv_builder_add(entries, names[i]);
                g_strv_builder_add(entries, value);
        }
        g_strfreev(*field);
        *field = g_strv_builder_end(entries);
        return true;
}

static bool load_group(GKeyFile *kf, const char *path, const char *contents, const char *group,
                       const ConfigKey *keys, size_t n_keys, void *target, GError **error) {
        g_auto(GStrv) names = g_key_file_get_keys(kf, group, NULL, NULL);
        const ConfigKey *group_key = find_key(keys, n_keys, group, NULL);

        if (!group_key) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                            "%s:%u: unknown group [%s]", path, find_line(contents, group, NULL), group);
                return false;
        }
        if (group_key->type == CONFIG_ENTRIES)
                return load_entries(kf, path, contents, group, names, group_key, target, error);
        for (size_t i = 0; names && names[i]; i++) {
                const ConfigKey *k = find_key(keys, n_keys, group, names[i]);
                g_autofree char *value = NULL;
                char buf[64];

                if (!k) {
                        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                                    "%s:%u: unknown key '%s' in group [%s]",
                                    path, find_line(contents, group, names[i]), names[i], group);
                        return false;
                }
                value = g_key_file_get_string(kf, group, names[i], NULL);
                if (!value || !set_value(k, value, target)) {
                        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                                    "%s:%u: bad value '%s' for key '%s' in group [%s]: expected %s",
                                    path, find_line(contents, group, names[i]), value ?: "",
                                    names[i], group, expected(k, buf, sizeof buf));
                        return false;
                }
        }
        return true;
}

bool config_file_load(const char *path, const ConfigKey *keys, size_t n_keys, void *target, GError **error) {
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) local_error = NULL;
        g_autofree char *contents = NULL;
        g_auto(GStrv) groups = NULL;
        gsize length;

        if (!g_file_get_contents(path, &contents, &length, &local_error)) {
                if (g_error_matches(local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return true;
                g_propagate_prefixed_error(error, g_steal_pointer(&local_error), "%s: ", path);
                return false;
        }
        if (!g_key_file_load_from_data(kf, contents, length, G_KEY_FILE_NONE, &local_error)) {
                g_propagate_prefixed_error(error, g_steal_pointer(&local_error), "%s: ", path);
                return false;
        }

        if (!check_duplicates(path, contents, error))
                return false;

        groups = g_key_file_get_groups(kf, NULL);
        for (size_t i = 0; groups[i]; i++)
                if (!load_group(kf, path, contents, groups[i], keys, n_keys, target, error))
                        return false;
        return true;
}
