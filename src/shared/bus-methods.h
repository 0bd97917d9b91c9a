/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

/* What every layer must know of a change method, in one table
 * (bus-methods.c): outpostd asks polkit for its action and lets it wait
 * for a group commit when it is batchable; the importer authorizes its
 * local callers with the same action before relaying; a listener bounds
 * a remote peer by its scope (DESIGN.md §5b). A method that is not in
 * the table is a read: scope "read", no polkit action. */

typedef struct BusChangeMethod {
        const char *interface;
        const char *member;
        const char *polkit_action;      /* data/org.outpost.Outpost1.policy */
        bool batchable;                 /* may share outpostd's group commit */
        const char *scope;              /* a peer may call it with this scope */
} BusChangeMethod;

extern const BusChangeMethod bus_change_methods[];
extern const size_t bus_n_change_methods;

/* The scope every peer needs for anything that is not in the table. */
#define BUS_SCOPE_READ "read"

const BusChangeMethod *bus_change_method_find(const char *interface, const char *member);
/* The entry of the method call M, or NULL for a read (or not a call). A
 * call without an interface gets the entry of the member it names. */
const BusChangeMethod *bus_change_method_of(sd_bus_message *m);
/* Whether the call M is a SendWithOptions that names the bridge peers it
 * came through (SEND_OPTION_RELAYED_BY): 1 with their names in
 * *RET_NAMES (NULL when its value is not an array of strings; free with
 * g_strfreev()), 0 when not, or a negative errno when its options cannot
 * be read. Reads M's arguments and leaves it rewound. */
int bus_send_relayed_by(sd_bus_message *m, char ***ret_names);
/* The polkit action that authorizes the change call M: its method's, but
 * for a SendWithOptions that names the peers it came through
 * (SEND_OPTION_RELAYED_BY) the action of the bridges that may say so,
 * POLKIT_ACTION_RELAY_FOR_PEERS, in its place. Reads M's arguments and
 * leaves it rewound. */
const char *bus_change_action_of(sd_bus_message *m);
