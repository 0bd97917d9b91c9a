/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "bus-errors.h"
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
        if (r < 0)
                return r;
        r = bus_message_append_gvariant(m, inner);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

static int append_vardict_entry(sd_bus_message *m, GVariant *entry) {
        g_autoptr(GVariant) key = g_variant_get_child_value(entry, 0);
        g_autoptr(GVariant) boxed = g_variant_get_child_value(entry, 1);
        g_autoptr(GVariant) inner = g_variant_get_variant(boxed);
        int r;

        r = sd_bus_message_open_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(m, SD_BUS_TYPE_STRING, g_variant_get_string(key, NULL));
        if (r < 0)
                return r;
        r = append_variant(m, inner);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

/* a{sv}: event data, properties. */
static int append_vardict(sd_bus_message *m, GVariant *v) {
        gsize n = g_variant_n_children(v);
        int r;

        r = sd_bus_message_open_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        for (gsize i = 0; i < n; i++) {
                g_autoptr(GVariant) entry = g_variant_get_child_value(v, i);

                r = append_vardict_entry(m, entry);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
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
        if (r < 0)
                return r;
        r = append_children(m, v);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
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

/* What a value costs the bus. GVariant's serialization is not D-Bus's: a
 * D-Bus boolean takes 4 bytes, every string and array a 4-byte length,
 * every struct and dict entry starts on 8 bytes, every variant carries its
 * signature. So a value of 64 KiB as GVariant may take several times that
 * in a message: laid out here as D-Bus marshals it. */

/* The alignment of a value of the complete TYPE (GVariant type string). */
static size_t bus_alignment(char type) {
        switch (type) {
        case 'n': case 'q':
                return 2;
        case 'b': case 'i': case 'u': case 'h': case 's': case 'o': case 'a':
                return 4;
        case 'x': case 't': case 'd': case '(': case '{':
                return 8;
        default:        /* y, g, v */
                return 1;
        }
}

static size_t align_to(size_t pos, size_t alignment) {
        return (pos + alignment - 1) & ~(alignment - 1);
}

/* Whether every value of TYPE takes the same room on the bus from a
 * position aligned for it: numbers and structs of numbers. */
static bool type_is_fixed(const char *type) {
        return strspn(type, "ybnqiuxtdh(){}") == strlen(type);
}

/* How many containers TYPE nests (a variant counts 1, whatever it may
 * hold), advancing *TYPE past it. */
static unsigned type_depth(const char **type) {
        unsigned deepest = 0;

        switch (*(*type)++) {
        case 'a':
        case 'm':
                return 1 + type_depth(type);
        case '(':
        case '{':
                while (**type && **type != ')' && **type != '}')
                        deepest = MAX(deepest, type_depth(type));
                if (**type)
                        (*type)++;
                return 1 + deepest;
        case 'v':
                return 1;
        default:
                return 0;
        }
}

/* Whether TYPE, a GVariant type, is also a D-Bus signature: no maybe
 * types, no empty structs, dict entries only as array elements, at most
 * 255 characters. (Nesting is left to the depth.) */
static bool type_is_dbus(const char *type) {
        if (strlen(type) > 255 || strchr(type, 'm') || strstr(type, "()"))
                return false;
        for (const char *p = strchr(type, '{'); p; p = strchr(p + 1, '{'))
                if (p == type || p[-1] != 'a')
                        return false;
        return true;
}

static void measure(GVariant *v, unsigned level, BusSize *size);

static void measure_children(GVariant *v, unsigned level, BusSize *size) {
        const char *type = g_variant_get_type_string(v);
        gsize n = g_variant_n_children(v);

        /* An empty array counts as deep as its type: what a validator makes
         * of it is not worth betting on. */
        if (n == 0) {
                const char *t = type;
                unsigned depth = level - 1 + type_depth(&t);

                size->depth = MAX(size->depth, depth);
                return;
        }
        /* An array of fixed-size elements: each takes the first one's room,
         * padded to the element alignment, so one is enough to look at. */
        if (type[0] == 'a' && n > 1 && type_is_fixed(type + 1)) {
                g_autoptr(GVariant) first = g_variant_get_child_value(v, 0);
                size_t start = size->bytes, stride;

                measure(first, level, size);
                stride = align_to(size->bytes - start, bus_alignment(type[1]));
                size->bytes = start + stride * (n - 1) + (size->bytes - start);
                return;
        }
        for (gsize i = 0; i < n; i++) {
                g_autoptr(GVariant) child = g_variant_get_child_value(v, i);
                measure(child, level, size);
        }
}

/* V laid out from SIZE->bytes, V being at nesting LEVEL (0: not inside any
 * container). */
static void measure(GVariant *v, unsigned level, BusSize *size) {
        const char *type = g_variant_get_type_string(v);
        size_t pos = align_to(size->bytes, bus_alignment(type[0]));

        switch (type[0]) {
        case 'y': size->bytes = pos + 1; return;
        case 'n': case 'q': size->bytes = pos + 2; return;
        case 'b': case 'i': case 'u': case 'h': size->bytes = pos + 4; return;
        case 'x': case 't': case 'd': size->bytes = pos + 8; return;
        case 's': case 'o': {
                gsize len;
                (void) g_variant_get_string(v, &len);
                size->bytes = pos + 4 + len + 1;
                return;
        }
        case 'g':
                size->bytes = pos + 1 + strlen(g_variant_get_string(v, NULL)) + 1;
                return;
        case 'v': {
                g_autoptr(GVariant) inner = g_variant_get_variant(v);
                const char *signature = g_variant_get_type_string(inner);

                if (!type_is_dbus(signature))
                        size->unsupported = true;
                size->bytes = pos + 1 + strlen(signature) + 1;
                size->depth = MAX(size->depth, level + 1);
                measure(inner, level + 1, size);
                return;
        }
        case 'a':
                /* The length, then padding to the element alignment, even
                 * when there is no element. */
                size->bytes = align_to(pos + 4, bus_alignment(type[1]));
                break;
        case '(': case '{':
                size->bytes = pos;
                break;
        default:        /* maybe types: GVariant has them, D-Bus has not */
                size->unsupported = true;
                return;
        }
        size->depth = MAX(size->depth, level + 1);
        measure_children(v, level + 1, size);
}

void bus_gvariant_measure(GVariant *v, BusSize *ret) {
        *ret = (BusSize) {};
        measure(v, 0, ret);
}

size_t bus_event_size_bound(const char *topic, const BusSize *data_size) {
        /* (tsxa{sv}) as an array element: up to 7 bytes of padding, t, s
         * (length, text, NUL), up to 7 bytes of padding, x, then the data,
         * which starts aligned as it was measured. */
        return 7 + 8 + 4 + strlen(topic) + 1 + 7 + 8 + data_size->bytes;
}

int bus_check_event_data(GVariant *data, size_t max_bytes, sd_bus_error *error) {
        BusSize size;

        bus_gvariant_measure(data, &size);
        return bus_check_event_size(data, &size, max_bytes, error);
}

int bus_check_event_size(GVariant *data, const BusSize *measured, size_t max_bytes, sd_bus_error *error) {
        size_t serialized = g_variant_get_size(data);
        BusSize size = *measured;

        if (size.unsupported)
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT,
                                        "Event data holds a type D-Bus cannot carry (maybe, empty struct, lone dict entry)");
        if (size.depth > BUS_EVENT_DATA_DEPTH_MAX)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Event data nests %u containers deep (arrays, structs, dict entries and "
                                         "variants, its own a{sv} counting 3), at most %d are allowed",
                                         size.depth, BUS_EVENT_DATA_DEPTH_MAX);
        if (serialized > max_bytes)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Event data is %zu bytes serialized, at most %zu are allowed",
                                         serialized, max_bytes);
        if (size.bytes > max_bytes)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Event data takes %zu bytes in a D-Bus message, at most %zu are allowed",
                                         size.bytes, max_bytes);
        return 0;
}
