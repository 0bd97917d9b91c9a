/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

/* The importer's copy of every manager's properties, as the upstream's
 * GetManagedObjects and PropertiesChanged describe them. It answers reads
 * while the link is down (DESIGN.md §4 rule 5), and tells what differs
 * after a reconnect (rule 6). */
typedef struct Cache Cache;

/* PROPERTIES: an a{sv} of what changed on PATH, INTERFACE. */
typedef void (*CacheChangedFunc)(const char *path, const char *interface, GVariant *properties, void *userdata);
/* INTERFACES: the a{sa{sv}} that appeared on PATH. */
typedef void (*CacheAddedFunc)(const char *path, GVariant *interfaces, void *userdata);
/* INTERFACES: the names that went from PATH. */
typedef void (*CacheRemovedFunc)(const char *path, const char *const *interfaces, void *userdata);

/* What cache_replace() tells, in this order: the interfaces that went and
 * that came (InterfacesRemoved, InterfacesAdded), then the properties that
 * differ (PropertiesChanged), as one change of the upstream would. Any may
 * be NULL. */
typedef struct CacheDiff {
        CacheRemovedFunc removed;
        CacheAddedFunc added;
        CacheChangedFunc changed;
        void *userdata;
} CacheDiff;

Cache *cache_new(void);
void cache_free(Cache *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Cache, cache_free)

/* Replace everything with OBJECTS (a{oa{sa{sv}}}). DIFF's REMOVED and ADDED
 * are called for the interfaces of each object that went or came, then its
 * CHANGED once per interface whose properties now differ from the cached
 * ones (all of them when it was not cached), with the differing ones. */
void cache_replace(Cache *c, GVariant *objects, const CacheDiff *diff);
/* The properties of PROPS (a{sv}) that differ from the cached ones of
 * PATH, INTERFACE, or NULL when none do. */
GVariant *cache_diff(Cache *c, const char *path, const char *interface, GVariant *props);
/* Merge CHANGED (a{sv}) into PATH, INTERFACE. */
void cache_update(Cache *c, const char *path, const char *interface, GVariant *changed);
/* Set one property to VALUE (a floating reference is sunk). */
void cache_set(Cache *c, const char *path, const char *interface, const char *property, GVariant *value);
/* Forget PATH entirely (e.g. the upstream's own /bridge object). */
void cache_remove_object(Cache *c, const char *path);
/* InterfacesAdded: INTERFACES (a{sa{sv}}) appear on PATH. */
void cache_add_interfaces(Cache *c, const char *path, GVariant *interfaces);
/* InterfacesRemoved: INTERFACES go from PATH, and PATH with its last one. */
void cache_remove_interfaces(Cache *c, const char *path, const char *const *interfaces);

/* A property, or NULL. Borrowed. */
GVariant *cache_get(Cache *c, const char *path, const char *interface, const char *property);
/* The properties of PATH, INTERFACE as a floating a{sv}, or NULL. */
GVariant *cache_get_all(Cache *c, const char *path, const char *interface);
/* Everything as a floating a{oa{sa{sv}}}. */
GVariant *cache_get_objects(Cache *c);
gboolean cache_has_object(Cache *c, const char *path);
/* The names of PATH's interfaces, or NULL when it is not cached. */
char **cache_get_interfaces(Cache *c, const char *path);
