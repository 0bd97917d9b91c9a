/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Registry: how a client finds the managers (DESIGN.md §3, Registry). */
#include "config.h"

#include <string.h>

#include "daemon.h"
#include "macro.h"
#include "validate.h"

typedef struct ManagerEntry {
        const char *name;
        const char *path;
        const char *interface;
} ManagerEntry;

static const ManagerEntry managers[] = {
        { "users",    USERS_PATH,    USERS_IFACE },
        { "presence", PRESENCE_PATH, PRESENCE_IFACE },
        { "messages", MESSAGES_PATH, MESSAGES_IFACE },
        { "events",   EVENTS_PATH,   EVENTS_IFACE },
};

static int method_list_managers(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sos)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(managers); i++) {
                r = sd_bus_message_append(reply, "(sos)", managers[i].name, managers[i].path, managers[i].interface);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_manager(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(managers); i++)
                if (strcmp(managers[i].name, name) == 0)
                        return sd_bus_reply_method_return(m, "o", managers[i].path);
        /* Quoted short: the name can be as long as the caller likes. */
        g_autofree char *q = quote_for_error(name, 80);
        return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND,
                                 "No manager named '%s' (known: users, presence, messages, events)", q);
}

static int property_get_server_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "s", store_server_id(d->store));
}

static int property_get_instance_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "s", d->instance_id);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static const sd_bus_vtable registry_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("ServerId", "s", property_get_server_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("InstanceId", "s", property_get_instance_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("ListManagers",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(sos)", managers),
                                method_list_managers,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetManager",
                                SD_BUS_ARGS("s", name),
                                SD_BUS_RESULT("o", path),
                                method_get_manager,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

int registry_register(Daemon *d) {
        int r;

        /* Volatile state (presence) belongs to this run: a cache that sees
         * another InstanceId knows that state of the old one is gone. */
        d->instance_id = uuid_string_new();
        r = sd_bus_add_object_vtable(d->bus, NULL, OUTPOST_ROOT_PATH, REGISTRY_IFACE, registry_vtable, d);
        if (r < 0)
                return r;
        /* GetManagedObjects: every manager's properties read in one handler,
         * so the snapshot is of one instant. */
        return sd_bus_add_object_manager(d->bus, NULL, OUTPOST_ROOT_PATH);
}
