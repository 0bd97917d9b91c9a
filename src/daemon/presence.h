/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The Presence manager's model and holds (presence.c), and the signals its
 * bus face (presence-dbus.c) builds for the model's changes. */

#include "daemon.h"
#include "hold-table.h"

/* A connection holding users online: presence.c's alone. */
typedef struct Holder Holder;

/* An online user: the object /org/outpost/Outpost1/presence/<id>, there
 * while the hold table has a hold of the user. */
typedef struct OnlineUser {
        char *user_id;
        char *path;
        int64_t since;          /* CLOCK_REALTIME µs: when the user came online */
} OnlineUser;

struct Presence {
        Daemon *daemon;
        /* The model: what the bus shows. */
        GHashTable *online;     /* user id → OnlineUser */
        uint64_t generation;

        /* The holds that keep users online (presence.c, "Holds"). */
        HoldTable *holds;       /* unique bus name → the users it holds */
        GHashTable *holders;    /* unique bus name → Holder, watched until it leaves the bus */
        sd_bus_slot *departures; /* NameOwnerChanged of every name that loses its owner */
        bool peers_full_logged; /* MaxPeers was reached and said so in the log */
};

/* presence.c */

/* The model, empty, with its expiry timer and the watch on departures
 * from the bus. */
int presence_new(Daemon *d, Presence **ret);

/* The user ID exists and may be online (FOR_ONLINE: is enabled), or ERROR
 * says why not. */
int presence_check_user(Presence *p, const char *id, bool for_online, sd_bus_error *error);

/* GoOnline's change: the connection SENDER holds USER_ID online, for TTL
 * seconds (0: until it lets go or leaves the bus); calling again renews.
 * The change joins the open batch; ERROR says why it was refused. */
int presence_hold(Presence *p, const char *sender, const char *user_id, uint32_t ttl, sd_bus_error *error);
/* GoOffline's change: SENDER's hold of USER_ID ends, if it has one. */
void presence_release(Presence *p, const char *sender, const char *user_id);

/* presence-dbus.c */

/* The InterfacesAdded (ADDED) or InterfacesRemoved of U's object. */
int online_user_signal_new(Presence *p, const OnlineUser *u, bool added, sd_bus_message **ret);
/* The manager's PropertiesChanged: Generation and OnlineCount as they are. */
int presence_changed_signal_new(Presence *p, sd_bus_message **ret);
