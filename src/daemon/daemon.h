/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus-errors.h"
#include "store.h"

#define USERS_PATH    OUTPOST_ROOT_PATH "/users"
#define PRESENCE_PATH OUTPOST_ROOT_PATH "/presence"
#define MESSAGES_PATH OUTPOST_ROOT_PATH "/messages"
#define EVENTS_PATH   OUTPOST_ROOT_PATH "/events"

#define REGISTRY_IFACE OUTPOST_IFACE_PREFIX "Registry"
#define USERS_IFACE    OUTPOST_IFACE_PREFIX "Users"
#define PRESENCE_IFACE OUTPOST_IFACE_PREFIX "Presence"
#define MESSAGES_IFACE OUTPOST_IFACE_PREFIX "Messages"
#define EVENTS_IFACE   OUTPOST_IFACE_PREFIX "Events"

/* Settings of outpostd.conf (DESIGN.md §3a). */
typedef struct DaemonConfig {
        unsigned retention_count;
        unsigned retention_seconds;
} DaemonConfig;

typedef struct Presence Presence;

/* The one context of outpostd. */
typedef struct Daemon {
        sd_event *event;
        sd_bus *bus;
        Store *store;
        DaemonConfig config;

        /* Events committed in the current transaction, emitted once it is
         * durable (DESIGN.md §4 rule 3). */
        GPtrArray *pending_events;

        Presence *presence;
        sd_event_source *retention_timer;
} Daemon;

/* Each manager registers its object(s) on d->bus. */
int registry_register(Daemon *d);
int users_register(Daemon *d);
int presence_register(Daemon *d);
int messages_register(Daemon *d);
int events_register(Daemon *d);
void presence_free(Presence *p);

/* A change made by a controller: begin, append events, commit. Commit makes
 * everything durable and only then emits the Event signals of the appended
 * events, so a caller that replies after daemon_commit() keeps both "durable
 * before visible" and "signal before reply". */
int daemon_begin(Daemon *d);
int daemon_append_event(Daemon *d, const char *topic, GVariant *data, uint64_t *ret_seq);
int daemon_commit(Daemon *d);
/* The two halves of daemon_commit(), for a model that must show its new
 * state (PropertiesChanged) before the events that describe it. */
int daemon_commit_durable(Daemon *d);
void daemon_emit_pending(Daemon *d);
void daemon_rollback(Daemon *d);

/* Called by the Users manager after a user was deleted or disabled. */
int presence_user_gone(Daemon *d, const char *user_id);

/* Reply helpers: an error for a failed store operation. */
int reply_store_error(sd_bus_message *m, int r, sd_bus_error *error);
