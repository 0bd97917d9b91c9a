/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "bus-methods.h"
#include "bus-names.h"
#include "macro.h"
#include "polkit.h"

const BusChangeMethod bus_change_methods[] = {
        { USERS_IFACE,    "CreateUser", POLKIT_ACTION_MANAGE_USERS,   true, "users" },
        { USERS_IFACE,    "SaveUser",   POLKIT_ACTION_MANAGE_USERS,   true, "users" },
        { USERS_IFACE,    "DeleteUser", POLKIT_ACTION_MANAGE_USERS,   true, "users" },
        { PRESENCE_IFACE, "GoOnline",   POLKIT_ACTION_SET_PRESENCE,   true, "presence" },
        { PRESENCE_IFACE, "GoOffline",  POLKIT_ACTION_SET_PRESENCE,   true, "presence" },
        { MESSAGES_IFACE, "Send",       POLKIT_ACTION_SEND_MESSAGES,  true, "send" },
        { MESSAGES_IFACE, "SendWithOptions", POLKIT_ACTION_SEND_MESSAGES, true, "send" },
        { EVENTS_IFACE,   "Publish",    POLKIT_ACTION_PUBLISH_EVENTS, true, "publish" },
};

const size_t bus_n_change_methods = ELEMENTSOF(bus_change_methods);

const BusChangeMethod *bus_change_method_find(const char *interface, const char *member) {
        if (!interface || !member)
                return NULL;
        for (size_t i = 0; i < bus_n_change_methods; i++)
                if (strcmp(bus_change_methods[i].interface, interface) == 0 &&
                    strcmp(bus_change_methods[i].member, member) == 0)
                        return &bus_change_methods[i];
        return NULL;
}

const BusChangeMethod *bus_change_method_of(sd_bus_message *m) {
        const char *member = sd_bus_message_get_member(m);

        if (!sd_bus_message_is_method_call(m, NULL, NULL) || !member)
                return NULL;
        if (sd_bus_message_get_interface(m))
                return bus_change_method_find(sd_bus_message_get_interface(m), member);
        /* A call without an interface reaches the method of that name, so
         * it is authorized, batched and scoped as that method: the names
         * of the table are unique (tests/daemon/test-bus-names checks). */
        for (size_t i = 0; i < bus_n_change_methods; i++)
                if (strcmp(bus_change_methods[i].member, member) == 0)
                        return &bus_change_methods[i];
        return NULL;
}
