/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Presence manager on the bus: GoOnline and GoOffline, the manager's
 * properties, one object per online user, and the signals that announce
 * the model's changes (DESIGN.md §3, Presence). The model and its holds
 * are presence.c's. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "presence.h"

static const char *const standard_interfaces[] = BUS_STANDARD_INTERFACES;

/* The body of U's InterfacesAdded (ADDED: with the properties) or
 * InterfacesRemoved (just the names). */
static int append_interfaces(sd_bus_message *m, const OnlineUser *u, bool added) {
        int r;

        r = sd_bus_message_append(m, "o", u->path);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', added ? "{sa{sv}}" : "s");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(standard_interfaces); i++) {
                r = added ? sd_bus_message_append(m, "{sa{sv}}", standard_interfaces[i], 0)
                          : sd_bus_message_append(m, "s", standard_interfaces[i]);
                if (r < 0)
                        return r;
        }
        r = added ? sd_bus_message_append(m, "{sa{sv}}", ONLINE_USER_IFACE, 2, "UserId", "s", u->user_id, "Since", "x",
                                          u->since)
                  : sd_bus_message_append(m, "s", ONLINE_USER_IFACE);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

int online_user_signal_new(Presence *p, const OnlineUser *u, bool added, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(p->daemon->bus, &m, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.ObjectManager",
                                      added ? "InterfacesAdded" : "InterfacesRemoved");
        if (r < 0)
                return r;
        r = append_interfaces(m, u, added);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

int presence_changed_signal_new(Presence *p, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(p->daemon->bus, &m, PRESENCE_PATH, "org.freedesktop.DBus.Properties",
                                      "PropertiesChanged");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "sa{sv}as", PRESENCE_IFACE, 2,
                                  "Generation", "t", p->generation,
                                  "OnlineCount", "u", (uint32_t) g_hash_table_size(p->online),
                                  0);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static int go_online_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        const char *user_id;
        uint32_t ttl;
        int r;

        r = sd_bus_message_read(m, "su", &user_id, &ttl);
        if (r < 0)
                return r;
        r = presence_check_user(d->presence, user_id, true, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;
        r = presence_hold(d->presence, sd_bus_message_get_sender(m), user_id, ttl, error);
        if (r < 0)
                return r;
        return daemon_reply_after_commit(d, m, NULL, NULL, "t", d->presence->generation);
}

static int method_go_online(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, go_online_call(m, userdata, error));
}

static int go_offline_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        const char *user_id;
        int r;

        r = sd_bus_message_read(m, "s", &user_id);
        if (r < 0)
                return r;
        r = presence_check_user(d->presence, user_id, false, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;
        presence_release(d->presence, sd_bus_message_get_sender(m), user_id);
        return daemon_reply_after_commit(d, m, NULL, NULL, "t", d->presence->generation);
}

static int method_go_offline(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, go_offline_call(m, userdata, error));
}

static int property_get_generation(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "t", d->presence->generation);
}

static int property_get_online_count(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) g_hash_table_size(d->presence->online));
}

static const sd_bus_vtable presence_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Generation", "t", property_get_generation, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("OnlineCount", "u", property_get_online_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("GoOnline",
                                SD_BUS_ARGS("s", user_id, "u", ttl_seconds),
                                SD_BUS_RESULT("t", generation),
                                method_go_online,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GoOffline",
                                SD_BUS_ARGS("s", user_id),
                                SD_BUS_RESULT("t", generation),
                                method_go_offline,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static const sd_bus_vtable online_user_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("UserId", "s", NULL, offsetof(OnlineUser, user_id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Since", "x", NULL, offsetof(OnlineUser, since), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END
};

/* sd-bus does not mix a plain object and a fallback on one path: the
 * manager is a fallback too, found on its own path only. */
static int find_manager(sd_bus *bus, const char *path, const char *interface, void *userdata, void **ret_found,
                        sd_bus_error *error) {
        if (strcmp(path, PRESENCE_PATH) != 0)
                return 0;
        *ret_found = userdata;
        return 1;
}

/* The online user whose object PATH is, in one lookup. */
static int find_online_user(sd_bus *bus, const char *path, const char *interface, void *userdata,
                            void **ret_found, sd_bus_error *error) {
        Presence *p = userdata;
        const char *segment = g_str_has_prefix(path, PRESENCE_PATH "/") ? path + strlen(PRESENCE_PATH "/") : NULL;
        g_autofree char *user_id = NULL;
        OnlineUser *u;

        if (!segment || strchr(segment, '/') || strchr(segment, '-'))
                return 0;
        user_id = g_strdelimit(g_strdup(segment), "_", '-');
        u = g_hash_table_lookup(p->online, user_id);
        if (!u)
                return 0;
        *ret_found = u;
        return 1;
}

/* Every online user's object, for GetManagedObjects and introspection:
 * those list everything by nature; a change never comes here. */
static int enumerate_online_users(sd_bus *bus, const char *path, void *userdata, char ***ret_nodes,
                                  sd_bus_error *error) {
        Presence *p = userdata;
        /* sd-bus frees the vector with free(). */
        char **nodes = calloc(g_hash_table_size(p->online) + 1, sizeof(char *));
        GHashTableIter iter;
        OnlineUser *u;
        size_t n = 0;

        if (!nodes)
                return -ENOMEM;
        g_hash_table_iter_init(&iter, p->online);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &u)) {
                nodes[n] = strdup(u->path);
                if (!nodes[n]) {
                        while (n > 0)
                                free(nodes[--n]);
                        free(nodes);
                        return -ENOMEM;
                }
                n++;
        }
        *ret_nodes = nodes;
        return 0;
}

int presence_register(Daemon *d) {
        Presence *p;
        int r;

        r = presence_new(d, &d->presence);
        if (r < 0)
                return r;
        p = d->presence;
        r = sd_bus_add_fallback_vtable(d->bus, NULL, PRESENCE_PATH, PRESENCE_IFACE, presence_vtable, find_manager, d);
        if (r < 0)
                return r;
        r = sd_bus_add_fallback_vtable(d->bus, NULL, PRESENCE_PATH, ONLINE_USER_IFACE, online_user_vtable,
                                       find_online_user, p);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(d->bus, NULL, PRESENCE_PATH, enumerate_online_users, p);
}
