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

/* The value of relayed-by, M at its variant: *RET_NAMES as for
 * bus_send_relayed_by(). */
static int read_relayed_by(sd_bus_message *m, char ***ret_names) {
        const char *contents = NULL;
        int r;

        r = sd_bus_message_peek_type(m, NULL, &contents);
        if (r < 0)
                return r;
        if (!contents || strcmp(contents, "as") != 0)
                return sd_bus_message_skip(m, "v");
        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_VARIANT, "as");
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(m, ret_names);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* bus_send_relayed_by() of M, a SendWithOptions with its arguments,
 * rewound first. */
static int send_options_relayed_by(sd_bus_message *m, char ***ret_names) {
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
                /* The first one: outpostd refuses the call when there are more. */
                if (strcmp(k, SEND_OPTION_RELAYED_BY) == 0 && !found) {
                        found = 1;
                        r = read_relayed_by(m, ret_names);
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        return r < 0 ? r : found;
}

int bus_send_relayed_by(sd_bus_message *m, char ***ret_names) {
        const BusChangeMethod *method = bus_change_method_of(m);
        int r;

        *ret_names = NULL;
        if (!method || strcmp(method->interface, MESSAGES_IFACE) != 0 ||
            strcmp(method->member, "SendWithOptions") != 0)
                return 0;
        /* Any other signature is refused as the wrong arguments anyway. */
        if (!sd_bus_message_has_signature(m, "assa{sv}"))
                return 0;
        r = send_options_relayed_by(m, ret_names);
        (void) sd_bus_message_rewind(m, true);
        if (r <= 0)
                g_clear_pointer(ret_names, g_strfreev);
        return r;
}

const char *bus_change_action_of(sd_bus_message *m) {
        const BusChangeMethod *method = bus_change_method_of(m);
        g_auto(GStrv) names = NULL;

        assert(method);
        /* Options it cannot read are refused later; until then the
         * stricter action is the one asked for. */
        return bus_send_relayed_by(m, &names) == 0 ? method->polkit_action : POLKIT_ACTION_RELAY_FOR_PEERS;
}
