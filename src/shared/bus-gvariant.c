/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "bus-gvariant.h"
#include "macro.h"

static bool is_container(char type) {
        return IN_SET(type, SD_BUS_TYPE_ARRAY, SD_BUS_TYPE_VARIANT,
                      SD_BUS_TYPE_STRUCT, SD_BUS_TYPE_DICT_ENTRY);
}

static int read_basic(sd_bus_message *m, char type, GVariant **ret) {
        union {
                uint8_t y; int b; int16_t n; uint16_t q; int32_t i; uint32_t u;
                int64_t x; uint64_t t; double d; const char *s;
        } v;
        int r;

        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENXIO;

        switch (type) {
        case 'y': *ret = g_variant_new_byte(v.y); break;
        case 'b': *ret = g_variant_new_boolean(v.b); break;
        case 'n': *ret = g_variant_new_int16(v.n); break;
        case 'q': *ret = g_variant_new_uint16(v.q); break;
        case 'i': *ret = g_variant_new_int32(v.i); break;
        case 'u': *ret = g_variant_new_uint32(v.u); break;
        case 'x': *ret = g_variant_new_int64(v.x); break;
        case 't': *ret = g_variant_new_uint64(v.t); break;
        case 'd': *ret = g_variant_new_double(v.d); break;
        case 's': *ret = g_variant_new_string(v.s); break;
        case 'o': *ret = g_variant_new_object_path(v.s); break;
        case 'g': *ret = g_variant_new_signature(v.s); break;
        default: return -EOPNOTSUPP;
        }
        g_variant_ref_sink(*ret);
        return 0;
}

/* Read the elements of the container M has just entered. */
static int read_children(sd_bus_message *m, GPtrArray *children) {
        for (;;) {
                GVariant *child = NULL;
                int r;

                r = sd_bus_message_at_end(m, false);
                if (r < 0)
                        return r;
                if (r > 0)
                        return 0;
                r = bus_message_read_gvariant(m, &child);
                if (r < 0)
                        return r;
                g_ptr_array_add(children, child);
        }
}

static GVariant *build_container(char type, const char *contents, GPtrArray *children) {
        GVariant **items = (GVariant **) children->pdata;
        gsize n = children->len;

        switch (type) {
        case SD_BUS_TYPE_ARRAY: {
                g_autoptr(GVariantType) element = g_variant_type_new(contents);
                return g_variant_new_array(element, items, n);
        }
        case SD_BUS_TYPE_VARIANT:
                return n == 1 ? g_variant_new_variant(items[0]) : NULL;
        case SD_BUS_TYPE_STRUCT:
                return g_variant_new_tuple(items, n);
        case SD_BUS_TYPE_DICT_ENTRY:
                return n == 2 ? g_variant_new_dict_entry(items[0], items[1]) : NULL;
        default:
                return NULL;
        }
}

int bus_message_read_gvariant(sd_bus_message *m, GVariant **ret) {
        g_autoptr(GPtrArray) children = NULL;
        const char *contents;
        GVariant *v;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENXIO;

        if (type == SD_BUS_TYPE_UNIX_FD)
                return -EOPNOTSUPP;
        if (!is_container(type))
                return read_basic(m, type, ret);

        r = sd_bus_message_enter_container(m, type, contents);
        if (r < 0)
                return r;

        children = g_ptr_array_new_with_free_func((GDestroyNotify) g_variant_unref);
        r = read_children(m, children);
        if (r < 0)
                return r;

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        v = build_container(type, contents, children);
        if (!v)
                return -EBADMSG;
        *ret = g_variant_ref_sink(v);
        return 0;
}

int bus_message_read_vardict(sd_bus_message *m, GVariant **ret) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0 || type != SD_BUS_TYPE_ARRAY || strcmp(contents, "{sv}") != 0)
                return -ENXIO;
        return bus_message_read_gvariant(m, ret);
}

static int append_basic(sd_bus_message *m, GVariant *v) {
        char type = g_variant_get_type_string(v)[0];

        switch (type) {
        case 'y': { uint8_t x = g_variant_get_byte(v); return sd_bus_message_append_basic(m, type, &x); }
        case 'b': { int x = g_variant_get_boolean(v); return sd_bus_message_append_basic(m, type, &x); }
        case 'n': { int16_t x = g_variant_get_int16(v); return sd_bus_message_append_basic(m, type, &x); }
        case 'q': { uint16_t x = g_variant_get_uint16(v); return sd_bus_message_append_basic(m, type, &x); }
        case 'i': { int32_t x = g_variant_get_int32(v); return sd_bus_message_append_basic(m, type, &x); }
        case 'u': { uint32_t x = g_variant_get_uint32(v); return sd_bus_message_append_basic(m, type, &x); }
        case 'x': { int64_t x = g_variant_get_int64(v); return sd_bus_message_append_basic(m, type, &x); }
        case 't': { uint64_t x = g_variant_get_uint64(v); return sd_bus_message_append_basic(m, type, &x); }
        case 'd': { double x = g_variant_get_double(v); return sd_bus_message_append_basic(m, type, &x); }
        case 's': case 'o': case 'g':
                return sd_bus_message_append_basic(m, type, g_variant_get_string(v, NULL));
        default:
                return -EINVAL;
        }
}

/* A container's children, in order. Children of a serialized GVariant are
 * made on demand, so each costs an allocation: the common shapes below take
 * fewer of them. */
static int append_children(sd_bus_message *m, GVariant *v) {
        gsize n = g_variant_n_children(v);

        for (gsize i = 0; i < n; i++) {
                g_autoptr(GVariant) child = g_variant_get_child_value(v, i);
                int r = bus_message_append_gvariant(m, child);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int append_variant(sd_bus_message *m, GVariant *inner) {
        int r;

        r = sd_bus_message_open_container(m, SD_BUS_TYPE_VARIANT, g_variant_get_type_string(inner));
        if (r >= 0)
                r = bus_message_append_gvariant(m, inner);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* a{sv}: event data, properties. */
static int append_vardict(sd_bus_message *m, GVariant *v) {
        gsize n = g_variant_n_children(v);
        int r;

        r = sd_bus_message_open_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
        for (gsize i = 0; r >= 0 && i < n; i++) {
                g_autoptr(GVariant) entry = g_variant_get_child_value(v, i);
                g_autoptr(GVariant) key = g_variant_get_child_value(entry, 0);
                g_autoptr(GVariant) boxed = g_variant_get_child_value(entry, 1);
                g_autoptr(GVariant) inner = g_variant_get_variant(boxed);

                r = sd_bus_message_open_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, SD_BUS_TYPE_STRING, g_variant_get_string(key, NULL));
                if (r >= 0)
                        r = append_variant(m, inner);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* The size of a fixed-size number of TYPE, the same in GVariant and on
 * D-Bus, or 0. (Not 'b': a GVariant boolean is one byte, a D-Bus one four.) */
static size_t fixed_element_size(char type) {
        switch (type) {
        case 'y': return 1;
        case 'n': case 'q': return 2;
        case 'i': case 'u': return 4;
        case 'x': case 't': case 'd': return 8;
        default: return 0;
        }
}

int bus_message_append_gvariant(sd_bus_message *m, GVariant *v) {
        const char *type_string = g_variant_get_type_string(v);
        char contents[256];     /* a D-Bus signature is at most 255 characters */
        size_t len;
        int r;

        switch (g_variant_classify(v)) {
        case G_VARIANT_CLASS_ARRAY:
                if (strcmp(type_string, "a{sv}") == 0)
                        return append_vardict(m, v);
                /* Arrays of fixed-size numbers have the same layout in both: one copy. */
                if (type_string[2] == 0 && fixed_element_size(type_string[1]) > 0) {
                        size_t size = fixed_element_size(type_string[1]);
                        gsize n_elements;
                        const void *data = g_variant_get_fixed_array(v, &n_elements, size);

                        return sd_bus_message_append_array(m, type_string[1], data, n_elements * size);
                }
                r = sd_bus_message_open_container(m, SD_BUS_TYPE_ARRAY, type_string + 1);
                break;
        case G_VARIANT_CLASS_VARIANT: {
                g_autoptr(GVariant) inner = g_variant_get_variant(v);
                return append_variant(m, inner);
        }
        case G_VARIANT_CLASS_TUPLE:
        case G_VARIANT_CLASS_DICT_ENTRY:
                len = strlen(type_string);
                if (len < 2 || len - 2 >= sizeof contents)
                        return -EINVAL;
                memcpy(contents, type_string + 1, len - 2);
                contents[len - 2] = 0;
                r = sd_bus_message_open_container(m, g_variant_classify(v) == G_VARIANT_CLASS_TUPLE ?
                                                  SD_BUS_TYPE_STRUCT : SD_BUS_TYPE_DICT_ENTRY, contents);
                break;
        case G_VARIANT_CLASS_MAYBE:
        case G_VARIANT_CLASS_HANDLE:
                return -EINVAL;
        default:
                return append_basic(m, v);
        }
        if (r >= 0)
                r = append_children(m, v);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

GVariant *vardict_new(const char *key, GVariant *value, ...) {
        GVariant *entries[VARDICT_NEW_MAX];
        size_t n = 0;
        va_list ap;

        va_start(ap, value);
        while (key) {
                g_assert(n < G_N_ELEMENTS(entries));
                entries[n++] = g_variant_new_dict_entry(g_variant_new_string(key), g_variant_new_variant(value));
                key = va_arg(ap, const char *);
                if (key)
                        value = va_arg(ap, GVariant *);
        }
        va_end(ap);
        return g_variant_new_array(G_VARIANT_TYPE("{sv}"), entries, n);
}

int bus_message_read_strv_nonnull(sd_bus_message *m, char ***ret) {
        char **l = NULL;
        int r;

        r = sd_bus_message_read_strv(m, &l);
        if (r < 0)
                return r;
        *ret = l ?: g_new0(char *, 1);
        return 0;
}
