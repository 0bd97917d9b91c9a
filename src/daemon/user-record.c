/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "user-record.h"
#include "validate.h"

typedef bool (*FieldSetter)(UserRecord *u, GVariant *value, const UserLimits *limits, char **error);

typedef struct UserKey {
        const char *key;
        const char *type;       /* GVariant type string */
        UserField field;        /* 0 for read-only keys */
        FieldSetter set;
} UserKey;

static bool set_name(UserRecord *u, GVariant *value, const UserLimits *limits, char **error) {
        const char *s = g_variant_get_string(value, NULL);

        if (!user_name_is_valid(s)) {
                g_autofree char *q = quote_for_error(s, 80);
                *error = g_strdup_printf("Invalid value for 'name': '%s' does not match ^[a-z_][a-z0-9_.-]{0,63}$", q);
                return false;
        }
        g_free(u->name);
        u->name = g_strdup(s);
        return true;
}

/* Index of the first control character in the UTF-8 string S, or -1. */
static glong find_control_char(const char *s) {
        glong i = 0;

        for (const char *p = s; *p; p = g_utf8_next_char(p), i++)
                if (g_unichar_iscntrl(g_utf8_get_char(p)))
                        return i;
        return -1;
}

/* Names are shown to people: refuse what would make one look like
 * another. */
static bool check_visible(const char *key, const char *s, char **error) {
        gunichar c;
        glong i = find_invisible_char(s, &c);

        if (i < 0)
                return true;
        *error = g_strdup_printf("Invalid value for '%s': invisible format character U+%04X at position %ld "
                                 "(bidirectional controls, zero-width and other format characters are refused)",
                                 key, (unsigned) c, i);
        return false;
}

static bool set_display_name(UserRecord *u, GVariant *value, const UserLimits *limits, char **error) {
        const char *s = g_variant_get_string(value, NULL);
        glong n = g_utf8_strlen(s, -1), ctl;

        if (n > (glong) limits->display_name_chars) {
                *error = g_strdup_printf("Invalid value for 'display-name': %ld characters long, at most %u are allowed",
                                         n, limits->display_name_chars);
                return false;
        }
        ctl = find_control_char(s);
        if (ctl >= 0) {
                *error = g_strdup_printf("Invalid value for 'display-name': control character at position %ld", ctl);
                return false;
        }
        if (!check_visible("display-name", s, error))
                return false;
        g_free(u->display_name);
        u->display_name = g_strdup(s);
        return true;
}

static bool set_email(UserRecord *u, GVariant *value, const UserLimits *limits, char **error) {
        const char *s = g_variant_get_string(value, NULL);
        glong n = g_utf8_strlen(s, -1);
        const char *at = strchr(s, '@');

        if (n > USER_EMAIL_MAX) {
                *error = g_strdup_printf("Invalid value for 'email': %ld characters long, at most %d are allowed",
                                         n, USER_EMAIL_MAX);
                return false;
        }
        if (n > 0 && (!at || strchr(at + 1, '@') || find_control_char(s) >= 0)) {
                g_autofree char *q = quote_for_error(s, 80);
                *error = g_strdup_printf("Invalid value for 'email': '%s' must contain exactly one '@' and no control characters", q);
                return false;
        }
        if (!check_visible("email", s, error))
                return false;
        g_free(u->email);
        u->email = g_strdup(s);
        return true;
}

static bool set_enabled(UserRecord *u, GVariant *value, const UserLimits *limits, char **error) {
        u->enabled = g_variant_get_boolean(value);
        return true;
}

static bool check_attribute(const char *key, const char *value, const UserLimits *limits, char **error) {
        g_autofree char *q = quote_for_error(key, 80);
        size_t klen = strlen(key), vlen = strlen(value);

        if (klen == 0 || klen > limits->attribute_key_bytes || find_control_char(key) >= 0) {
                *error = g_strdup_printf("Invalid attribute key '%s': must be 1-%u bytes without control characters (is %zu)",
                                         q, limits->attribute_key_bytes, klen);
                return false;
        }
        if (vlen > limits->attribute_value_bytes) {
                *error = g_strdup_printf("Invalid value for attribute '%s': %zu bytes, at most %u are allowed",
                                         q, vlen, limits->attribute_value_bytes);
                return false;
        }
        return true;
}

static bool set_attributes(UserRecord *u, GVariant *value, const UserLimits *limits, char **error) {
        gsize n = g_variant_n_children(value);
        g_autoptr(GTree) sorted = g_tree_new((GCompareFunc) strcmp);
        GVariantBuilder builder;
        GVariantIter iter;
        const char *key, *val;

        if (n > limits->attributes) {
                *error = g_strdup_printf("Invalid value for 'attributes': %zu entries, at most %u are allowed",
                                         n, limits->attributes);
                return false;
        }
        g_variant_iter_init(&iter, value);
        while (g_variant_iter_next(&iter, "{&s&s}", &key, &val)) {
                if (!check_attribute(key, val, limits, error))
                        return false;
                if (g_tree_lookup(sorted, key)) {
                        g_autofree char *q = quote_for_error(key, 80);
                        *error = g_strdup_printf("Invalid value for 'attributes': key '%s' given twice", q);
                        return false;
                }
                g_tree_insert(sorted, (char *) key, (char *) val);
        }

        /* Sorted so that a stored user reads back the same however it was sent. */
        g_variant_builder_init(&builder, G_VARIANT_TYPE("a{ss}"));
        for (GTreeNode *node = g_tree_node_first(sorted); node; node = g_tree_node_next(node))
                g_variant_builder_add(&builder, "{ss}", g_tree_node_key(node), g_tree_node_value(node));
        g_clear_pointer(&u->attributes, g_variant_unref);
        u->attributes = g_variant_ref_sink(g_variant_builder_end(&builder));
        return true;
}

static const UserKey user_keys[] = {
        { "id",           "s",     0,                       NULL },
        { "tag",          "s",     0,                       NULL },
        { "name",         "s",     USER_FIELD_NAME,         set_name },
        { "display-name", "s",     USER_FIELD_DISPLAY_NAME, set_display_name },
        { "email",        "s",     USER_FIELD_EMAIL,        set_email },
        { "enabled",      "b",     USER_FIELD_ENABLED,      set_enabled },
        { "attributes",   "a{ss}", USER_FIELD_ATTRIBUTES,   set_attributes },
        { "created",      "x",     0,                       NULL },
        { "modified",     "x",     0,                       NULL },
};

static const UserKey *user_key_find(const char *key) {
        for (size_t i = 0; i < G_N_ELEMENTS(user_keys); i++)
                if (strcmp(user_keys[i].key, key) == 0)
                        return &user_keys[i];
        return NULL;
}

void user_record_init(UserRecord *u) {
        *u = (UserRecord) {
                .display_name = g_strdup(""),
                .email = g_strdup(""),
                .enabled = true,
                .attributes = g_variant_ref_sink(g_variant_new_array(G_VARIANT_TYPE("{ss}"), NULL, 0)),
        };
}

void user_record_clear(UserRecord *u) {
        g_free(u->id);
        g_free(u->tag);
        g_free(u->name);
        g_free(u->display_name);
        g_free(u->email);
        g_clear_pointer(&u->attributes, g_variant_unref);
        *u = (UserRecord) {};
}

void user_record_free(UserRecord *u) {
        if (!u)
                return;
        user_record_clear(u);
        g_free(u);
}

void user_record_copy(UserRecord *dest, const UserRecord *src) {
        *dest = (UserRecord) {
                .id = g_strdup(src->id),
                .tag = g_strdup(src->tag),
                .name = g_strdup(src->name),
                .display_name = g_strdup(src->display_name),
                .email = g_strdup(src->email),
                .enabled = src->enabled,
                .attributes = src->attributes ? g_variant_ref(src->attributes) : NULL,
                .created = src->created,
                .modified = src->modified,
        };
}

static bool apply_one(UserRecord *u, const char *key, GVariant *value, const UserLimits *limits, UserField *fields,
                      char **error) {
        g_autofree char *q = quote_for_error(key, 80);
        const UserKey *k = user_key_find(key);

        if (!k) {
                *error = g_strdup_printf("Unknown user key '%s'", q);
                return false;
        }
        if (!k->set) {
                *error = g_strdup_printf("Key '%s' is read-only", key);
                return false;
        }
        if (!g_variant_is_of_type(value, G_VARIANT_TYPE(k->type))) {
                *error = g_strdup_printf("Key '%s' must be of type '%s', not '%s'",
                                         key, k->type, g_variant_get_type_string(value));
                return false;
        }
        if (*fields & k->field) {
                *error = g_strdup_printf("Key '%s' given twice", key);
                return false;
        }
        *fields |= k->field;
        return k->set(u, value, limits, error);
}

bool user_record_apply(UserRecord *u, GVariant *changes, UserField *ret_fields, char **error) {
        return user_record_apply_limited(u, changes, &USER_LIMITS_CONTRACT, ret_fields, error);
}

bool user_record_apply_limited(UserRecord *u, GVariant *changes, const UserLimits *limits, UserField *ret_fields,
                               char **error) {
        UserField fields = 0;
        GVariantIter iter;
        const char *key;
        GVariant *value;

        g_return_val_if_fail(g_variant_is_of_type(changes, G_VARIANT_TYPE_VARDICT), false);

        g_variant_iter_init(&iter, changes);
        while (g_variant_iter_next(&iter, "{&sv}", &key, &value)) {
                bool ok = apply_one(u, key, value, limits, &fields, error);

                g_variant_unref(value);
                if (!ok)
                        return false;
        }
        *ret_fields = fields;
        return true;
}

/* The entry "attributes" of a record: {sv} holding an a{ss}. */
static int append_attributes_entry(sd_bus_message *m, GVariant *attributes) {
        GVariantIter iter;
        const char *key, *value;
        int r;

        r = sd_bus_message_open_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", "attributes");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, SD_BUS_TYPE_VARIANT, "a{ss}");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, SD_BUS_TYPE_ARRAY, "{ss}");
        if (r < 0)
                return r;
        if (attributes) {
                g_variant_iter_init(&iter, attributes);
                while (g_variant_iter_next(&iter, "{&s&s}", &key, &value)) {
                        r = sd_bus_message_append(m, "{ss}", key, value);
                        if (r < 0)
                                return r;
                }
        }
        /* The array, the variant and the entry. */
        for (unsigned i = 0; i < 3; i++) {
                r = sd_bus_message_close_container(m);
                if (r < 0)
                        return r;
        }
        return 0;
}

int user_record_append(sd_bus_message *m, const UserRecord *u) {
        int r;

        r = sd_bus_message_open_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        /* sd-bus writes a NULL string as "", as the contract wants. */
        r = sd_bus_message_append(m, "{sv}{sv}{sv}{sv}{sv}{sv}",
                                  "id", "s", u->id,
                                  "tag", "s", u->tag,
                                  "name", "s", u->name,
                                  "display-name", "s", u->display_name,
                                  "email", "s", u->email,
                                  "enabled", "b", (int) u->enabled);
        if (r < 0)
                return r;
        r = append_attributes_entry(m, u->attributes);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "{sv}{sv}",
                                  "created", "x", u->created,
                                  "modified", "x", u->modified);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}
