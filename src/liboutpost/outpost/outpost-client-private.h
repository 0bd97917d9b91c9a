/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the parts of OutpostClient share: the instance and the functions
 * one part calls in another. Not installed. */
#pragma once

#include "bus-errors.h"
#include "bus-names.h"
#include "outpost-client.h"
#include "outpost-online-users-private.h"


typedef struct Subscription {
        guint id;
        char *prefix;
        OutpostEventFunc func;
        gpointer user_data;
        GDestroyNotify destroy;
        gboolean removed;
} Subscription;

/* A live signal kept until the client has caught up. */
typedef struct Pending {
        gboolean gap;
        guint64 seq;            /* the event's seq; for a gap, resumed_seq */
        char *topic;
        gint64 time;
        GVariant *data;
} Pending;

typedef struct Hold {
        OutpostClient *client;  /* unowned: the client owns the hold */
        char *user_id;
        guint ttl;
        guint renew_id;
} Hold;

struct _OutpostClient {
        GObject parent_instance;

        GBusType bus_type;
        char *address;
        GDBusConnection *connection;
        gboolean own_connection;        /* opened for address: closed with the client */
        guint filter_id;                /* outpost-call-filter.c */

        OutpostClientState state;
        char *server_id;
        gboolean has_owner;
        gboolean has_bridge;

        OutpostRegistry *registry;
        OutpostUsers *users;
        OutpostPresence *presence;
        OutpostMessages *messages;
        OutpostEvents *events;
        OutpostBridge *bridge;

        guint watch_id;
        guint events_signal_id;
        guint messages_signal_id;       /* MessageReceived: the events of messages/ topics */
        guint bridge_signal_id;
        GCancellable *epoch;
        guint retry_id;
        GTask *init_task;       /* done after the first snapshot, or when there is no service */
        guint proxies_pending;

        /* Events. */
        GPtrArray *subscriptions;       /* Subscription*, in the order they were made */
        guint next_subscription_id;
        char *history_id;               /* the history last_seq belongs to; NULL: none yet */
        guint64 last_seq;               /* of the last event delivered */
        char *server_history_id;        /* from the last snapshot */
        guint64 snapshot_last_seq;
        gboolean catching_up;
        GQueue pending;                 /* Pending*, in the order received */

        /* Presence holds: user id → Hold. */
        GHashTable *holds;
        /* Who is online, made on first request. */
        OutpostOnlineUsers *online_users;
};


/* outpost-client.c */
gboolean _outpost_client_is_cancelled(const GError *error);
/* The snapshot or the catch-up failed: try again shortly. */
void _outpost_client_sync_failed(OutpostClient *self, const GError *error);
/* A call of the client's own to the service, under the current epoch. */
void _outpost_client_dbus_call(OutpostClient *self, const char *path, const char *iface, const char *method,
                               GVariant *params, const char *reply_type, GAsyncReadyCallback callback);
GVariant *_outpost_client_dbus_call_finish(GObject *source, GAsyncResult *result, GError **error);
void _outpost_client_catch_up_done(OutpostClient *self);
void _outpost_client_emit_resync_needed(OutpostClient *self);

/* The one completion path of the public asynchronous calls: a call the
 * program asked for is started with _outpost_client_call_begin(), which
 * fails TASK at once with OUTPOST_ERROR_DISCONNECTED (and returns NULL)
 * unless the client is connected; otherwise the caller passes
 * _outpost_client_call_done and what begin returned as the callback and its
 * data of a proxy call (a generated one, so the signature is the XML's).
 * On success ON_REPLY makes the task's result of the reply; errors return
 * the task's error as they are. */
typedef void (*OutpostCallReply)(GTask *task, GVariant *reply);
typedef struct OutpostCall OutpostCall;
OutpostCall *_outpost_client_call_begin(OutpostClient *self, GTask *task, OutpostCallReply on_reply);
void _outpost_client_call_done(GObject *source, GAsyncResult *result, gpointer data);

/* outpost-client-events.c */
void _outpost_client_on_events_signal(GDBusConnection *connection, const char *sender, const char *path,
                                      const char *iface, const char *member, GVariant *params, gpointer data);
void _outpost_client_catch_up_start(OutpostClient *self);
void _outpost_client_flush_pending(OutpostClient *self);
void _outpost_pending_free(Pending *p);
void _outpost_subscription_release(Subscription *s);

/* outpost-client-presence.c */
void _outpost_client_holds_reassert(OutpostClient *self);
void _outpost_hold_free(Hold *h);
