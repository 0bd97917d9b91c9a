/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "audit.h"
#include "bus-caller.h"
#include "bus-errors.h"
#include "bus-names.h"
#include "polkit.h"
#include "store.h"
#include "user-record.h"

/* Settings of outpostd.conf (DESIGN.md §3a). */
typedef struct DaemonConfig {
        /* [Store] */
        char *store_backend;            /* "sqlite" or "postgresql" */
        char *store_path;               /* sqlite: the directory of outpost.db */
        char *store_connection;         /* postgresql: a libpq connection string */

        unsigned retention_count;
        unsigned retention_seconds;
        unsigned max_presence_peers;            /* connections holding or having held presence */
        unsigned max_holds_per_connection;      /* presence holds of one connection */

        /* [Limits]: the contract's figures (validate.h), or lower ones. */
        UserLimits user_limits;
        unsigned max_event_data_bytes;
        unsigned max_message_body_bytes;
        unsigned max_recipients;
        unsigned max_users_per_page;
        unsigned max_events_per_page;
        unsigned max_topic_prefixes;
} DaemonConfig;

typedef struct Presence Presence;

/* The one context of outpostd. */
typedef struct Daemon {
        sd_event *event;
        sd_bus *bus;
        Store *store;
        DaemonConfig config;
        char *instance_id;              /* a new UUID every start (Registry.InstanceId) */

        /* The open batch (batch.c): what its changes reveal (Event signals,
         * model signals, replies), in order, sent once the batch is durable
         * (DESIGN.md §4 rule 3). */
        bool batch_open;
        bool change_open;               /* a change's savepoint is open in the batch */
        GPtrArray *pending;             /* BatchItem */
        guint pending_replies;          /* replies among them */
        guint change_first_item;        /* index in pending where the current change began */
        /* The batch being committed (BatchItem), NULL when none: a store
         * whose commit completes later (PostgreSQL) lets the next batch
         * gather meanwhile. */
        GPtrArray *committing;
        /* Messages that arrived while a commit was in flight and must not
         * be handled before it is durable (anything but a change method,
         * and everything after one), in order; handled again once it is. */
        GPtrArray *held;
        sd_event_source *flush_source;
        /* Once the store is damaged (batch.c): ends the loop after every
         * call already received was answered. */
        sd_event_source *exit_source;

        Presence *presence;
        sd_event_source *retention_timer;

        /* Authorization of the change methods (polkit.c). */
        BusCallers *callers;    /* credentials of local callers, for polkit and audit */
        Polkit *polkit;
        Audit *audit;           /* each change carried out, with its caller */
} Daemon;

/* Each manager registers its object(s) on d->bus. A manager is two files:
 * <manager>.c holds its state and rules, <manager>-dbus.c its face on the
 * bus (vtable, method handlers, property getters, and this function);
 * <manager>.h is what the bus face uses of the state. Declared here is
 * what the rest of the daemon uses of a manager. */
int registry_register(Daemon *d);
int users_register(Daemon *d);
int presence_register(Daemon *d);
int messages_register(Daemon *d);
int events_register(Daemon *d);
void events_note_append(Daemon *d);
void presence_free(Presence *p);

/* A change made by a controller (batch.c): daemon_begin(), then the store
 * writes, daemon_append_event() and daemon_append_signal() in the order
 * they are to be seen, then either
 *  - daemon_reply_after_commit(): the reply waits for the group commit; the
 *    handler returns what it returns. HOOK runs at once, after this change
 *    joined the batch, and may add a change of its own: it is shown after
 *    this change and before this reply;
 *  - daemon_end_change(): a change no caller waits for joins the batch,
 *    committed soon (daemon_flush() to commit it now);
 * or daemon_rollback() on failure, which undoes only this change.
 * After the commit, everything goes out in the order it was appended. */
typedef int (*DaemonHook)(Daemon *d, const char *arg);

int batch_setup(Daemon *d);
void batch_done(Daemon *d);
int daemon_begin(Daemon *d);
int daemon_append_event(Daemon *d, const char *topic, GVariant *data, uint64_t *ret_seq);
/* The same for the event that ends a change named by a request id: the
 * store keeps REQUEST_KEY and REQUEST_RESULT with it (store.h). */
int daemon_append_event_request(Daemon *d, const char *topic, GVariant *data, const char *request_key,
                                const char *request_result, uint64_t *ret_seq);
/* Queue the method return of CALL, with TYPES and the values after it as
 * for sd_bus_message_append(), to be sent after the commit. Returns 1, or
 * negative errno with the change rolled back. */
int daemon_reply_after_commit(Daemon *d, sd_bus_message *call, DaemonHook hook, const char *hook_arg,
                              const char *types, ...);
/* What a change method's handler returns goes through this: an error may
 * name state an earlier change of the open batch made (SaveConflict names
 * the current tag, AlreadyExists a name, NotFound a deleted user), so the
 * error to CALL (ERROR, or R) is queued behind the batch and sent once it
 * is durable, after its replies. */
int daemon_error_after_batch(Daemon *d, sd_bus_message *call, sd_bus_error *error, int r);
int daemon_end_change(Daemon *d);
/* Queue SIGNAL, built now so that it shows the model as this change left
 * it. For a volatile model (Presence): it goes out even if the commit fails,
 * since the model changed all the same. */
void daemon_append_signal(Daemon *d, sd_bus_message *signal);
void daemon_rollback(Daemon *d);
/* Commit the open batch, then send what it queued: at once, or once the
 * commit in flight completes. */
void daemon_flush(Daemon *d);

/* The Users manager's hook after a user was deleted or disabled: the
 * user's going offline joins the batch as a change of its own. */
int presence_user_gone(Daemon *d, const char *user_id);

/* The error for a failed store operation R (batch.c): StoreFull naming the
 * store and the room left when the disk is full, Failed saying so when the
 * store is damaged, Disconnected when its database session is lost (the
 * daemon is then stopping), Failed otherwise. */
int reply_store_error(Daemon *d, int r, sd_bus_error *error);
