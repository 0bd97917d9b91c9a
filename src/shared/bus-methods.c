/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <string.h>

#include "bus-methods.h"
#include "bus-names.h"
#include "macro.h"
#include "polkit.h"
#include "validate.h"

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

/* Whether the options of SendWithOptions M, which is rewound first, name
 * KEY: 1, 0 or a negative errno. */
static int send_options_name(sd_bus_message *m, const char *key) {
        int r, found = 0;

        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        r = sd_bus_message_skip(m, "ass");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
                const char *k;

                r = sd_bus_message_read(m, "s", &k);
                if (r < 0)
                        return r;
                if (strcmp(k, key) == 0)
                        found = 1;
                r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        return r < 0 ? r : found;
}

const char *bus_change_action_of(sd_bus_message *m) {
        const BusChangeMethod *method = bus_change_method_of(m);
        int r;

        assert(method);
        if (strcmp(method->interface, MESSAGES_IFACE) != 0 || strcmp(method->member, "SendWithOptions") != 0)
                return method->polkit_action;
        /* Any other signature is refused as the wrong arguments anyway. */
        if (!sd_bus_message_has_signature(m, "assa{sv}"))
                return method->polkit_action;
        r = send_options_name(m, SEND_OPTION_RELAYED_BY);
        (void) sd_bus_message_rewind(m, true);
        /* Options it cannot read are refused below; until then the
         * stricter action is the one asked for. */
        return r == 0 ? method->polkit_action : POLKIT_ACTION_RELAY_FOR_PEERS;
}
