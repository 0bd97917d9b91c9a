/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

/* Authorization of the change methods through polkit, spoken over sd-bus
 * (no libpolkit): org.freedesktop.PolicyKit1.Authority.CheckAuthorization,
 * asked asynchronously, with the caller's message dispatched again once
 * polkit has answered (DESIGN.md §5, issue 6). */

/* The actions of data/org.outpost.Outpost1.policy. */
#define POLKIT_ACTION_MANAGE_USERS   "org.outpost.Outpost1.manage-users"
#define POLKIT_ACTION_SET_PRESENCE   "org.outpost.Outpost1.set-presence"
#define POLKIT_ACTION_SEND_MESSAGES  "org.outpost.Outpost1.send-messages"
#define POLKIT_ACTION_PUBLISH_EVENTS "org.outpost.Outpost1.publish-events"
#define POLKIT_ACTION_MANAGE_BRIDGE  "org.outpost.Outpost1.manage-bridge"
/* Sending in the name of bridge peers (SendWithOptions' option
 * relayed-by): the bridges' own, in place of send-messages. */
#define POLKIT_ACTION_RELAY_FOR_PEERS "org.outpost.Outpost1.relay-for-peers"
/* Not a change: who may see the messages of every user (FetchSince). */
#define POLKIT_ACTION_READ_MESSAGES  "org.outpost.Outpost1.read-messages"

typedef struct Polkit Polkit;
typedef struct BusCallers BusCallers;

/* CALLERS (src/shared/bus-caller.h) gives the callers' uids; borrowed. */
int polkit_new(sd_bus *bus, BusCallers *callers, Polkit **ret);
/* Pending questions are dropped; their callers see the daemon leave. */
void polkit_free(Polkit *p);

/* May the sender of the method call M do ACTION?
 *  0: yes, go on with the change;
 *  1: polkit was asked; the handler returns 1 (handled, no reply yet) and
 *     runs again with M, from the start, when the answer is in;
 *  <0: no; ERROR says why (AccessDenied or InteractiveAuthorizationRequired,
 *     naming ACTION), and the handler returns this value.
 * So a handler says: r = polkit_authorize(...); if (r != 0) return r;
 * It must have read and checked its arguments before, and change nothing
 * before: the first run ends here. A caller with effective uid 0 is allowed
 * without asking polkit. */
int polkit_authorize(Polkit *p, sd_bus_message *m, const char *action, sd_bus_error *error);
/* The same for a change method of the contract, with the action that
 * bus_change_action_of() gives it (one table for every layer), which
 * leaves M rewound. M must be one of those methods. */
int polkit_authorize_change(Polkit *p, sd_bus_message *m, sd_bus_error *error);

/* For a read whose answer depends on ACTION (what the caller may see, not
 * do): like polkit_authorize(), but a refusal is no error, only a
 * narrower answer, and polkit never asks anyone for a password (a read
 * must not wait on a person; an administrator reads as root).
 *  0: decided, *RET_ALLOWED says how (anything but a yes is a no);
 *  1: polkit was asked; the handler returns 1 and runs again, as above. */
int polkit_authorize_read(Polkit *p, sd_bus_message *m, const char *action, bool *ret_allowed);

/* The effective uid the sender of M had when it connected, as the bus saw
 * it. The first question per unique name is a call to the bus, made
 * synchronously; the answer is remembered, so a handler that was just
 * authorized gets it without asking again. */
int polkit_sender_euid(Polkit *p, sd_bus_message *m, uid_t *ret);
