/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The names of the bus contract (DESIGN.md §1 and §3), spelled once.
 * Every program of the tree takes them from here; tests/daemon/test-bus-names
 * checks each interface against its XML in dbus-interfaces/, which stays
 * the one description of what the interfaces hold. */

#define OUTPOST_BUS_NAME       "org.outpost.Outpost1"
#define OUTPOST_ROOT_PATH      "/org/outpost/Outpost1"
#define OUTPOST_IFACE_PREFIX   "org.outpost.Outpost1."

#define USERS_PATH             OUTPOST_ROOT_PATH "/users"
#define PRESENCE_PATH          OUTPOST_ROOT_PATH "/presence"
#define MESSAGES_PATH          OUTPOST_ROOT_PATH "/messages"
#define EVENTS_PATH            OUTPOST_ROOT_PATH "/events"
#define BRIDGE_PATH            OUTPOST_ROOT_PATH "/bridge"

#define REGISTRY_IFACE         OUTPOST_IFACE_PREFIX "Registry"
#define USERS_IFACE            OUTPOST_IFACE_PREFIX "Users"
#define PRESENCE_IFACE         OUTPOST_IFACE_PREFIX "Presence"
#define ONLINE_USER_IFACE      OUTPOST_IFACE_PREFIX "OnlineUser"
#define MESSAGES_IFACE         OUTPOST_IFACE_PREFIX "Messages"
#define EVENTS_IFACE           OUTPOST_IFACE_PREFIX "Events"
#define BRIDGE_IFACE           OUTPOST_IFACE_PREFIX "Bridge"

/* The standard interfaces sd-bus shows on every object in
 * GetManagedObjects, in its order, as an array initializer: whoever
 * announces an object (InterfacesAdded/InterfacesRemoved) names them too,
 * so that a cache built from the signals equals the snapshot. */
#define BUS_STANDARD_INTERFACES                 \
        {                                       \
                "org.freedesktop.DBus.Peer",    \
                "org.freedesktop.DBus.Introspectable", \
                "org.freedesktop.DBus.Properties", \
        }

/* The listener's own face on its local bus, for administrators: a name
 * of its own, never relayed (DESIGN.md §5b). */
#define LISTENER_BUS_NAME      OUTPOST_IFACE_PREFIX "Listener"
#define LISTENER_PATH          OUTPOST_ROOT_PATH "/listener"
#define LISTENER_IFACE         OUTPOST_IFACE_PREFIX "Listener"
