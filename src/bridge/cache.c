/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <string.h>

#include "cache.h"

/* path → interface → property → GVariant, all hash tables. */
struct Cache {
        GHashTable *objects;
};

static GHashTable *new_table(GDestroyNotify free_value) {
        return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, free_value);
}

Cache *cache_new(void) {
        Cache *c = g_new0(Cache, 1);

        c->objects = new_table((GDestroyNotify) g_hash_table_unref);
        return c;
}

void cache_free(Cache *c) {
        if (!c)
                return;
        g_hash_table_unref(c->objects);
        g_free(c);
}

static GHashTable *interfaces_of(Cache *c, const char *path, gboolean create) {
        GHashTable *ifaces = g_hash_table_lookup(c->objects, path);

        if (!ifaces && create) {
                ifaces = new_table((GDestroyNotify) g_hash_table_unref);
                g_hash_table_insert(c->objects, g_strdup(path), ifaces);
        }
        return ifaces;
}

static GHashTable *properties_of(Cache *c, const char *path, const char *interface, gboolean create) {
        GHashTable *ifaces = interfaces_of(c, path, create), *props;

        if (!ifaces)
                return NULL;
        props = g_hash_table_lookup(ifaces, interface);
        if (!props && create) {
                props = new_table((GDestroyNotify) g_variant_unref);
                g_hash_table_insert(ifaces, g_strdup(interface), props);
        }
        return props;
}

void cache_update(Cache *c, const char *path, const char *interface, GVariant *changed) {
        GHashTable *props = properties_of(c, path, interface, TRUE);
        GVariantIter iter;
        const char *name;
        GVariant *value;

        g_variant_iter_init(&iter, changed);
        while (g_variant_iter_next(&iter, "{&sv}", &name, &value))
                g_hash_table_insert(props, g_strdup(name), value);
}

void cache_set(Cache *c, const char *path, const char *interface, const char *property, GVariant *value) {
        GHashTable *props = properties_of(c, path, interface, TRUE);

        g_hash_table_insert(props, g_strdup(property), g_variant_ref_sink(value));
}

void cache_remove_object(Cache *c, const char *path) {
        g_hash_table_remove(c->objects, path);
}

typedef gboolean (*KeepFunc)(GHashTable *old, const char *key, GVariant *value);

/* The entries of DICT (a{s…}) that KEEP accepts, given OLD, as a new dict
 * of the same type; NULL when there are none. */
static GVariant *dict_filter(GVariant *dict, GHashTable *old, KeepFunc keep) {
        GVariantBuilder b;
        GVariantIter iter;
        GVariant *entry;
        gboolean any = FALSE;

        g_variant_builder_init(&b, g_variant_get_type(dict));
        g_variant_iter_init(&iter, dict);
        while ((entry = g_variant_iter_next_value(&iter))) {
                g_autoptr(GVariant) value = g_variant_get_child_value(entry, 1);
                const char *key;

                g_variant_get_child(entry, 0, "&s", &key);
                if (keep(old, key, value)) {
                        g_variant_builder_add_value(&b, entry);
                        any = TRUE;
                }
                g_variant_unref(entry);
        }
        if (!any) {
                g_variant_builder_clear(&b);
                return NULL;
        }
        return g_variant_ref_sink(g_variant_builder_end(&b));
}

static gboolean property_differs(GHashTable *old, const char *name, GVariant *boxed) {
        g_autoptr(GVariant) value = g_variant_get_variant(boxed);
        GVariant *before = g_hash_table_lookup(old, name);

        return !before || !g_variant_equal(before, value);
}

/* The properties of NEW_PROPS (a{sv}) that OLD lacks or holds otherwise. */
static GVariant *diff_properties(GHashTable *old, GVariant *new_props) {
        return dict_filter(new_props, old, property_differs);
}

GVariant *cache_diff(Cache *c, const char *path, const char *interface, GVariant *props) {
        GHashTable *old = properties_of(c, path, interface, FALSE);
        g_autoptr(GHashTable) none = NULL;

        if (!old)
                old = none = g_hash_table_new(g_str_hash, g_str_equal);
        return diff_properties(old, props);
}

void cache_add_interfaces(Cache *c, const char *path, GVariant *interfaces) {
        GHashTable *ifaces = interfaces_of(c, path, TRUE);
        GVariantIter iter;
        const char *iface;
        GVariant *props;

        g_variant_iter_init(&iter, interfaces);
        while (g_variant_iter_next(&iter, "{&s@a{sv}}", &iface, &props)) {
                /* An interface that appears has these properties, no others. */
                g_hash_table_remove(ifaces, iface);
                cache_update(c, path, iface, props);
                g_variant_unref(props);
        }
}

void cache_remove_interfaces(Cache *c, const char *path, const char *const *interfaces) {
        GHashTable *ifaces = interfaces_of(c, path, FALSE);

        if (!ifaces)
                return;
        for (; *interfaces; interfaces++)
                g_hash_table_remove(ifaces, *interfaces);
        if (g_hash_table_size(ifaces) == 0)
                g_hash_table_remove(c->objects, path);
}

/* The interfaces of each object in OLD that NOW lacks. */
static void report_removed(GHashTable *old, GHashTable *now, const CacheDiff *diff) {
        GHashTableIter oi;
        const char *path;
        GHashTable *old_ifaces;

        g_hash_table_iter_init(&oi, old);
        while (g_hash_table_iter_next(&oi, (gpointer *) &path, (gpointer *) &old_ifaces)) {
                GHashTable *new_ifaces = g_hash_table_lookup(now, path);
                g_autoptr(GPtrArray) gone = g_ptr_array_new();
                GHashTableIter ii;
                const char *iface;

                g_hash_table_iter_init(&ii, old_ifaces);
                while (g_hash_table_iter_next(&ii, (gpointer *) &iface, NULL))
                        if (!new_ifaces || !g_hash_table_contains(new_ifaces, iface))
                                g_ptr_array_add(gone, (gpointer) iface);
                if (gone->len == 0)
                        continue;
                g_ptr_array_add(gone, NULL);
                diff->removed(path, (const char *const *) gone->pdata, diff->userdata);
        }
}

static gboolean interface_is_new(GHashTable *old_ifaces, const char *iface, GVariant *props) {
        return !g_hash_table_contains(old_ifaces, iface);
}

/* The interfaces of INTERFACES (a{sa{sv}}) that OLD_IFACES lacks, or NULL. */
static GVariant *new_interfaces(GHashTable *old_ifaces, GVariant *interfaces) {
        if (!old_ifaces)
                return g_variant_ref(interfaces);
        return dict_filter(interfaces, old_ifaces, interface_is_new);
}

static void report_added(GHashTable *old, GVariant *objects, const CacheDiff *diff) {
        GVariantIter iter;
        const char *path;
        GVariant *interfaces;

        g_variant_iter_init(&iter, objects);
        while (g_variant_iter_next(&iter, "{&o@a{sa{sv}}}", &path, &interfaces)) {
                g_autoptr(GVariant) added = new_interfaces(g_hash_table_lookup(old, path), interfaces);

                if (added)
                        diff->added(path, added, diff->userdata);
                g_variant_unref(interfaces);
        }
}

static void report_changed(GHashTable *old, GVariant *objects, const CacheDiff *diff) {
        GVariantIter objects_iter;
        const char *path;
        GVariant *interfaces;

        g_variant_iter_init(&objects_iter, objects);
        while (g_variant_iter_next(&objects_iter, "{&o@a{sa{sv}}}", &path, &interfaces)) {
                GHashTable *old_ifaces = g_hash_table_lookup(old, path);
                GVariantIter iface_iter;
                const char *iface;
                GVariant *props;

                g_variant_iter_init(&iface_iter, interfaces);
                while (g_variant_iter_next(&iface_iter, "{&s@a{sv}}", &iface, &props)) {
                        GHashTable *old_props = old_ifaces ? g_hash_table_lookup(old_ifaces, iface) : NULL;
                        g_autoptr(GHashTable) none = NULL;
                        g_autoptr(GVariant) changed = NULL;

                        /* What was not cached before is new in full: a bridge
                         * below this one may have taken its snapshot from us
                         * while we had none, and learns it from these. */
                        if (!old_props)
                                old_props = none = g_hash_table_new(g_str_hash, g_str_equal);
                        changed = diff_properties(old_props, props);
                        if (changed)
                                diff->changed(path, iface, changed, diff->userdata);
                        g_variant_unref(props);
                }
                g_variant_unref(interfaces);
        }
}

void cache_replace(Cache *c, GVariant *objects, const CacheDiff *diff) {
        g_autoptr(GHashTable) old = g_steal_pointer(&c->objects);
        GVariantIter iter;
        const char *path;
        GVariant *interfaces;

        c->objects = new_table((GDestroyNotify) g_hash_table_unref);
        g_variant_iter_init(&iter, objects);
        while (g_variant_iter_next(&iter, "{&o@a{sa{sv}}}", &path, &interfaces)) {
                cache_add_interfaces(c, path, interfaces);
                g_variant_unref(interfaces);
        }
        if (!diff)
                return;
        /* Objects first, then properties: a cache below that applies these
         * in order is whole at each PropertiesChanged (DESIGN.md §4 rule 1). */
        if (diff->removed)
                report_removed(old, c->objects, diff);
        if (diff->added)
                report_added(old, objects, diff);
        if (diff->changed)
                report_changed(old, objects, diff);
}

GVariant *cache_get(Cache *c, const char *path, const char *interface, const char *property) {
        GHashTable *props = properties_of(c, path, interface, FALSE);

        return props ? g_hash_table_lookup(props, property) : NULL;
}

static GVariant *table_to_vardict(GHashTable *props) {
        GVariantBuilder b;
        GHashTableIter iter;
        const char *name;
        GVariant *value;

        g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
        g_hash_table_iter_init(&iter, props);
        while (g_hash_table_iter_next(&iter, (gpointer *) &name, (gpointer *) &value))
                g_variant_builder_add(&b, "{sv}", name, value);
        return g_variant_builder_end(&b);
}

GVariant *cache_get_all(Cache *c, const char *path, const char *interface) {
        GHashTable *props = properties_of(c, path, interface, FALSE);

        return props ? table_to_vardict(props) : NULL;
}

GVariant *cache_get_objects(Cache *c) {
        GVariantBuilder objects;
        GHashTableIter oi;
        const char *path;
        GHashTable *ifaces;

        g_variant_builder_init(&objects, G_VARIANT_TYPE("a{oa{sa{sv}}}"));
        g_hash_table_iter_init(&oi, c->objects);
        while (g_hash_table_iter_next(&oi, (gpointer *) &path, (gpointer *) &ifaces)) {
                GVariantBuilder interfaces;
                GHashTableIter ii;
                const char *iface;
                GHashTable *props;

                g_variant_builder_init(&interfaces, G_VARIANT_TYPE("a{sa{sv}}"));
                g_hash_table_iter_init(&ii, ifaces);
                while (g_hash_table_iter_next(&ii, (gpointer *) &iface, (gpointer *) &props))
                        g_variant_builder_add(&interfaces, "{s@a{sv}}", iface, table_to_vardict(props));
                g_variant_builder_add(&objects, "{o@a{sa{sv}}}", path, g_variant_builder_end(&interfaces));
        }
        return g_variant_builder_end(&objects);
}

gboolean cache_has_object(Cache *c, const char *path) {
        return g_hash_table_contains(c->objects, path);
}

char **cache_get_interfaces(Cache *c, const char *path) {
        GHashTable *ifaces = interfaces_of(c, path, FALSE);
        g_autofree const char **names = NULL;

        if (!ifaces)
                return NULL;
        names = (const char **) g_hash_table_get_keys_as_array(ifaces, NULL);
        return g_strdupv((char **) names);
}
