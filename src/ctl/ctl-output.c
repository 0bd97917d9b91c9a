/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Output of outpostctl: aligned tables for people (like loginctl), JSON for
 * scripts, written by hand so that json-glib is not needed. */
#include "config.h"

#include <stdio.h>

#include "ctl.h"

char *ctl_format_time(gint64 usec) {
        g_autoptr(GDateTime) seconds = g_date_time_new_from_unix_local(usec / G_USEC_PER_SEC);
        g_autoptr(GDateTime) dt = seconds ? g_date_time_add(seconds, usec % G_USEC_PER_SEC) : NULL;

        return dt && usec > 0 ? g_date_time_format(dt, "%Y-%m-%d %H:%M:%S %Z") : g_strdup("-");
}

static void json_string(GString *out, const char *s) {
        g_string_append_c(out, '"');
        for (; *s; s++) {
                unsigned char c = *s;
                switch (c) {
                case '"':
                        g_string_append(out, "\\\"");
                        break;
                case '\\':
                        g_string_append(out, "\\\\");
                        break;
                case '\n':
                        g_string_append(out, "\\n");
                        break;
                case '\t':
                        g_string_append(out, "\\t");
                        break;
                case '\r':
                        g_string_append(out, "\\r");
                        break;
                default:
                        if (c < 0x20 || c == 0x7f)
                                g_string_append_printf(out, "\\u%04x", c);
                        else
                                g_string_append_c(out, c);
                }
        }
        g_string_append_c(out, '"');
}

void ctl_json_append(GString *out, GVariant *value) {
        GVariantIter iter;
        GVariant *child;
        gboolean first = TRUE;

        switch (g_variant_classify(value)) {
        case G_VARIANT_CLASS_BOOLEAN:
                g_string_append(out, g_variant_get_boolean(value) ? "true" : "false");
                return;
        case G_VARIANT_CLASS_BYTE:
                g_string_append_printf(out, "%u", g_variant_get_byte(value));
                return;
        case G_VARIANT_CLASS_INT16:
                g_string_append_printf(out, "%d", g_variant_get_int16(value));
                return;
        case G_VARIANT_CLASS_UINT16:
                g_string_append_printf(out, "%u", g_variant_get_uint16(value));
                return;
        case G_VARIANT_CLASS_INT32:
                g_string_append_printf(out, "%d", g_variant_get_int32(value));
                return;
        case G_VARIANT_CLASS_UINT32:
                g_string_append_printf(out, "%u", g_variant_get_uint32(value));
                return;
        case G_VARIANT_CLASS_INT64:
                g_string_append_printf(out, "%" G_GINT64_FORMAT, g_variant_get_int64(value));
                return;
        case G_VARIANT_CLASS_UINT64:
                g_string_append_printf(out, "%" G_GUINT64_FORMAT, g_variant_get_uint64(value));
                return;
        case G_VARIANT_CLASS_DOUBLE: {
                char buf[G_ASCII_DTOSTR_BUF_SIZE];
                g_string_append(out, g_ascii_dtostr(buf, sizeof buf, g_variant_get_double(value)));
                return;
        }
        case G_VARIANT_CLASS_STRING:
        case G_VARIANT_CLASS_OBJECT_PATH:
        case G_VARIANT_CLASS_SIGNATURE:
                json_string(out, g_variant_get_string(value, NULL));
                return;
        case G_VARIANT_CLASS_VARIANT: {
                g_autoptr(GVariant) inner = g_variant_get_variant(value);
                ctl_json_append(out, inner);
                return;
        }
        case G_VARIANT_CLASS_MAYBE: {
                g_autoptr(GVariant) inner = g_variant_get_maybe(value);
                if (inner)
                        ctl_json_append(out, inner);
                else
                        g_string_append(out, "null");
                return;
        }
        case G_VARIANT_CLASS_ARRAY:
                if (g_variant_type_is_dict_entry(g_variant_type_element(g_variant_get_type(value)))) {
                        g_string_append_c(out, '{');
                        g_variant_iter_init(&iter, value);
                        while ((child = g_variant_iter_next_value(&iter))) {
                                g_autoptr(GVariant) key = g_variant_get_child_value(child, 0);
                                g_autoptr(GVariant) val = g_variant_get_child_value(child, 1);
                                if (!first)
                                        g_string_append_c(out, ',');
                                first = FALSE;
                                if (g_variant_is_of_type(key, G_VARIANT_TYPE_STRING))
                                        json_string(out, g_variant_get_string(key, NULL));
                                else {
                                        g_autofree char *k = g_variant_print(key, FALSE);
                                        json_string(out, k);
                                }
                                g_string_append_c(out, ':');
                                ctl_json_append(out, val);
                                g_variant_unref(child);
                        }
                        g_string_append_c(out, '}');
                        return;
                }
                G_GNUC_FALLTHROUGH;
        case G_VARIANT_CLASS_TUPLE:
        case G_VARIANT_CLASS_DICT_ENTRY:
        default:
                g_string_append_c(out, '[');
                g_variant_iter_init(&iter, value);
                while ((child = g_variant_iter_next_value(&iter))) {
                        if (!first)
                                g_string_append_c(out, ',');
                        first = FALSE;
                        ctl_json_append(out, child);
                        g_variant_unref(child);
                }
                g_string_append_c(out, ']');
                return;
        }
}

void ctl_json_print(GVariant *value) {
        g_autoptr(GString) out = g_string_new(NULL);
        g_autoptr(GVariant) sunk = g_variant_ref_sink(value);

        ctl_json_append(out, sunk);
        g_string_append_c(out, '\n');
        fputs(out->str, stdout);
        fflush(stdout);
}

/* An a{sv} as "key=value key=value", strings bare. */
char *ctl_format_data(GVariant *dict) {
        g_autoptr(GString) out = g_string_new(NULL);
        GVariantIter iter;
        const char *key;
        GVariant *value;

        g_variant_iter_init(&iter, dict);
        while (g_variant_iter_next(&iter, "{&sv}", &key, &value)) {
                if (out->len)
                        g_string_append_c(out, ' ');
                g_string_append_printf(out, "%s=", key);
                if (g_variant_is_of_type(value, G_VARIANT_TYPE_STRING))
                        g_string_append(out, g_variant_get_string(value, NULL));
                else
                        g_variant_print_string(value, out, FALSE);
                g_variant_unref(value);
        }
        return g_string_free(g_steal_pointer(&out), FALSE);
}

struct CtlTable {
        guint n_columns;
        GPtrArray *rows;        /* GStrv, the headers first */
};

CtlTable *ctl_table_new(const char *const *headers) {
        CtlTable *t = g_new0(CtlTable, 1);

        t->n_columns = g_strv_length((char **) headers);
        t->rows = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        g_ptr_array_add(t->rows, g_strdupv((char **) headers));
        return t;
}

void ctl_table_add(CtlTable *t, const char *const *cells) {
        g_assert(g_strv_length((char **) cells) == t->n_columns);
        g_ptr_array_add(t->rows, g_strdupv((char **) cells));
}

void ctl_table_print(CtlTable *t) {
        g_autofree gsize *widths = g_new0(gsize, t->n_columns);

        for (guint r = 0; r < t->rows->len; r++) {
                char **row = g_ptr_array_index(t->rows, r);
                for (guint c = 0; c < t->n_columns; c++)
                        widths[c] = MAX(widths[c], (gsize) g_utf8_strlen(row[c], -1));
        }
        for (guint r = 0; r < t->rows->len; r++) {
                char **row = g_ptr_array_index(t->rows, r);
                g_autoptr(GString) line = g_string_new(NULL);

                for (guint c = 0; c < t->n_columns; c++) {
                        g_string_append(line, row[c]);
                        if (c + 1 < t->n_columns)
                                for (gsize pad = g_utf8_strlen(row[c], -1); pad < widths[c] + 2; pad++)
                                        g_string_append_c(line, ' ');
                }
                printf("%s\n", line->str);
        }
}

void ctl_table_free(CtlTable *t) {
        if (!t)
                return;
        g_ptr_array_unref(t->rows);
        g_free(t);
}
