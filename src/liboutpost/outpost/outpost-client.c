/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* OutpostClient: the connection to the Outpost service, as a client sees it.
 *
 * It watches the name org.outpost.Outpost1 and, on a bridged bus, the
 * bridge's State. Each time the service (re)appears it takes a snapshot
 * (the Registry's properties, then GetManagedObjects), catches up with the
 * events it missed (FetchSince from the last seq it delivered, page by
 * page), and only then says CONNECTED and re-asserts its presence holds.
 *
 * Everything that belongs to one appearance of the service runs under one
 * GCancellable, the "epoch": when the service goes away, or the client is
 * disposed, the epoch is cancelled, so a late reply never acts on a newer
 * state. Callbacks under an epoch take the client unowned and look at it
 * only when their call was not cancelled.
 *
 * Events are followed in outpost-client-events.c, presence holds kept in
 * outpost-client-presence.c; outpost-client-private.h is what they share. */
#include "config.h"

#include "bus-errors.h"
#include "bus-names.h"
#include "outpost-call-filter.h"
#include "outpost-client-private.h"
#include "outpost-error.h"

#define IFACE_PROPERTIES "org.freedesktop.DBus.Properties"

/* The delay before a failed snapshot or catch-up is tried again. */
#define RETRY_SECONDS   1

G_DEFINE_ENUM_TYPE(OutpostClientState, outpost_client_state,
                   G_DEFINE_ENUM_VALUE(OUTPOST_CLIENT_STATE_CONNECTING, "connecting"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_CLIENT_STATE_CONNECTED, "connected"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_CLIENT_STATE_DISCONNECTED, "disconnected"))

enum {
        PROP_0,
        PROP_BUS_TYPE,
        PROP_ADDRESS,
        PROP_CONNECTION,
        PROP_STATE,
        PROP_SERVER_ID,
        N_PROPS
};
static GParamSpec *props[N_PROPS];

enum {
        SIGNAL_RESYNC_NEEDED,
        N_SIGNALS
};
static guint signals[N_SIGNALS];

static void async_initable_iface_init(GAsyncInitableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE(OutpostClient, outpost_client, G_TYPE_OBJECT,
                              G_IMPLEMENT_INTERFACE(G_TYPE_ASYNC_INITABLE, async_initable_iface_init))

static void sync_start(OutpostClient *self);

static const char *state_name(OutpostClientState state) {
        switch (state) {
        case OUTPOST_CLIENT_STATE_CONNECTING:
                return "connecting";
        case OUTPOST_CLIENT_STATE_CONNECTED:
                return "connected";
        case OUTPOST_CLIENT_STATE_DISCONNECTED:
        default:
                return "disconnected";
        }
}

static void set_state(OutpostClient *self, OutpostClientState state) {
        if (self->state == state)
                return;
        g_debug("state: %s -> %s", state_name(self->state), state_name(state));
        self->state = state;
        g_object_notify_by_pspec(G_OBJECT(self), props[PROP_STATE]);
}

static void set_server_id(OutpostClient *self, const char *server_id) {
        if (g_strcmp0(self->server_id, server_id) == 0)
                return;
        g_free(self->server_id);
        self->server_id = g_strdup(server_id);
        g_object_notify_by_pspec(G_OBJECT(self), props[PROP_SERVER_ID]);
}

/* The first outcome ends the initialization: there is a service or not. */
static void init_done(OutpostClient *self) {
        g_autoptr(GTask) task = g_steal_pointer(&self->init_task);

        if (task)
                g_task_return_boolean(task, TRUE);
}

/* A new epoch: whatever the previous one started is cancelled. */
static void new_epoch(OutpostClient *self) {
        if (self->epoch) {
                g_cancellable_cancel(self->epoch);
                g_object_unref(self->epoch);
        }
        self->epoch = g_cancellable_new();
        g_clear_handle_id(&self->retry_id, g_source_remove);
        self->catching_up = FALSE;
}

gboolean _outpost_client_is_cancelled(const GError *error) {
        return g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
}

static gboolean retry_cb(gpointer data) {
        OutpostClient *self = data;

        self->retry_id = 0;
        if (self->has_owner)
                sync_start(self);
        return G_SOURCE_REMOVE;
}

/* The snapshot or the catch-up failed, e.g. a bridge's link dropped in
 * between, or the daemon is going away: try again shortly. */
void _outpost_client_sync_failed(OutpostClient *self, const GError *error) {
        g_debug("cannot catch up with the service: %s", error->message);
        self->catching_up = FALSE;
        set_state(self, self->has_owner ? OUTPOST_CLIENT_STATE_CONNECTING : OUTPOST_CLIENT_STATE_DISCONNECTED);
        init_done(self);
        g_clear_handle_id(&self->retry_id, g_source_remove);
        self->retry_id = g_timeout_add_seconds(RETRY_SECONDS, retry_cb, self);
}

GVariant *_outpost_client_dbus_call_finish(GObject *source, GAsyncResult *result, GError **error) {
        return g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, error);
}

void _outpost_client_dbus_call(OutpostClient *self, const char *path, const char *iface, const char *method,
                               GVariant *params, const char *reply_type, GAsyncReadyCallback callback) {
        g_dbus_connection_call(self->connection, OUTPOST_BUS_NAME, path, iface, method, params,
                               G_VARIANT_TYPE(reply_type), G_DBUS_CALL_FLAGS_NONE,
                               OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC, self->epoch, callback, self);
}

void _outpost_client_emit_resync_needed(OutpostClient *self) {
        g_debug("events were lost: resync needed, resuming after seq %" G_GUINT64_FORMAT, self->last_seq);
        g_signal_emit(self, signals[SIGNAL_RESYNC_NEEDED], 0);
}

void _outpost_client_catch_up_done(OutpostClient *self) {
        _outpost_client_flush_pending(self);
        self->catching_up = FALSE;
        if (self->state != OUTPOST_CLIENT_STATE_CONNECTED) {
                set_state(self, OUTPOST_CLIENT_STATE_CONNECTED);
                _outpost_client_holds_reassert(self);
        }
        init_done(self);
}

/* The snapshot */

static OutpostClientState bridge_state(const char *state) {
        if (g_strcmp0(state, "connected") == 0)
                return OUTPOST_CLIENT_STATE_CONNECTED;
        if (g_strcmp0(state, "connecting") == 0)
                return OUTPOST_CLIENT_STATE_CONNECTING;
        return OUTPOST_CLIENT_STATE_DISCONNECTED;
}

static void on_snapshot(GObject *source, GAsyncResult *result, gpointer data) {
        OutpostClient *self = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = _outpost_client_dbus_call_finish(source, result, &error);
        g_autoptr(GVariant) objects = NULL, bridge = NULL, events = NULL;
        const char *history_id = NULL, *state = NULL;

        if (_outpost_client_is_cancelled(error))
                return;
        if (!reply)
                return _outpost_client_sync_failed(self, error);

        objects = g_variant_get_child_value(reply, 0);
        bridge = g_variant_lookup_value(objects, BRIDGE_PATH, G_VARIANT_TYPE("a{sa{sv}}"));
        events = g_variant_lookup_value(objects, EVENTS_PATH, G_VARIANT_TYPE("a{sa{sv}}"));
        if (events) {
                g_autoptr(GVariant) p = g_variant_lookup_value(events, EVENTS_IFACE, G_VARIANT_TYPE("a{sv}"));
                if (p && g_variant_lookup(p, "HistoryId", "&s", &history_id)) {
                        g_free(self->server_history_id);
                        self->server_history_id = g_strdup(history_id);
                        g_variant_lookup(p, "LastSeq", "t", &self->snapshot_last_seq);
                }
        }
        if (!history_id) {
                g_autoptr(GError) bad = g_error_new(G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "The snapshot has no Events manager");
                return _outpost_client_sync_failed(self, bad);
        }

        self->has_bridge = bridge != NULL;
        if (bridge) {
                g_autoptr(GVariant) p = g_variant_lookup_value(bridge, BRIDGE_IFACE, G_VARIANT_TYPE("a{sv}"));
                if (p)
                        g_variant_lookup(p, "State", "&s", &state);
                if (bridge_state(state) != OUTPOST_CLIENT_STATE_CONNECTED) {
                        /* The bridge's PropertiesChanged starts the next try. */
                        set_state(self, bridge_state(state));
                        init_done(self);
                        return;
                }
        }
        _outpost_client_catch_up_start(self);
}

static void on_registry_props(GObject *source, GAsyncResult *result, gpointer data) {
        OutpostClient *self = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = _outpost_client_dbus_call_finish(source, result, &error);
        g_autoptr(GVariant) dict = NULL;
        const char *server_id;

        if (_outpost_client_is_cancelled(error))
                return;
        if (!reply)
                return _outpost_client_sync_failed(self, error);
        dict = g_variant_get_child_value(reply, 0);
        if (g_variant_lookup(dict, "ServerId", "&s", &server_id))
                set_server_id(self, server_id);
        _outpost_client_dbus_call(self, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL,
                                  "(a{oa{sa{sv}}})", on_snapshot);
}

static void sync_start(OutpostClient *self) {
        new_epoch(self);
        set_state(self, OUTPOST_CLIENT_STATE_CONNECTING);
        _outpost_client_dbus_call(self, OUTPOST_ROOT_PATH, IFACE_PROPERTIES, "GetAll", g_variant_new("(s)", REGISTRY_IFACE),
                                  "(a{sv})", on_registry_props);
}

static void on_name_appeared(GDBusConnection *connection, const char *name, const char *owner, gpointer data) {
        OutpostClient *self = data;

        g_debug("%s appeared, owned by %s", name, owner);
        self->has_owner = TRUE;
        sync_start(self);
}

static void on_name_vanished(GDBusConnection *connection, const char *name, gpointer data) {
        OutpostClient *self = data;

        g_debug("%s has no owner", name);
        self->has_owner = FALSE;
        self->has_bridge = FALSE;
        new_epoch(self);
        set_state(self, OUTPOST_CLIENT_STATE_DISCONNECTED);
        init_done(self);
}

static void on_bridge_changed(GDBusConnection *connection, const char *sender, const char *path, const char *iface,
                              const char *member, GVariant *params, gpointer data) {
        OutpostClient *self = data;
        g_autoptr(GVariant) changed = NULL;
        const char *state;

        if (!self->has_owner || !g_variant_is_of_type(params, G_VARIANT_TYPE("(sa{sv}as)")))
                return;
        changed = g_variant_get_child_value(params, 1);
        if (!g_variant_lookup(changed, "State", "&s", &state))
                return;
        self->has_bridge = TRUE;
        if (bridge_state(state) == OUTPOST_CLIENT_STATE_CONNECTED) {
                if (self->state != OUTPOST_CLIENT_STATE_CONNECTED)
                        sync_start(self);
        } else {
                new_epoch(self);
                set_state(self, bridge_state(state));
        }
}

/* Initialization */

typedef struct ProxyInfo {
        GType (*get_type)(void);
        const char *path;
        const char *iface;
        gsize offset;
} ProxyInfo;

static const ProxyInfo proxy_infos[] = {
        { outpost_registry_proxy_get_type, OUTPOST_ROOT_PATH, REGISTRY_IFACE, G_STRUCT_OFFSET(OutpostClient, registry) },
        { outpost_users_proxy_get_type, USERS_PATH, USERS_IFACE, G_STRUCT_OFFSET(OutpostClient, users) },
        { outpost_presence_proxy_get_type, PRESENCE_PATH, PRESENCE_IFACE, G_STRUCT_OFFSET(OutpostClient, presence) },
        { outpost_messages_proxy_get_type, MESSAGES_PATH, MESSAGES_IFACE, G_STRUCT_OFFSET(OutpostClient, messages) },
        { outpost_events_proxy_get_type, EVENTS_PATH, EVENTS_IFACE, G_STRUCT_OFFSET(OutpostClient, events) },
        { outpost_bridge_proxy_get_type, BRIDGE_PATH, BRIDGE_IFACE, G_STRUCT_OFFSET(OutpostClient, bridge) },
};

static void watch_service(OutpostClient *self) {
        self->events_signal_id = g_dbus_connection_signal_subscribe(self->connection, OUTPOST_BUS_NAME, EVENTS_IFACE, NULL,
                                                                    EVENTS_PATH, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
                                                                    _outpost_client_on_events_signal, self, NULL);
        /* Messages come as MessageReceived, in the one order of seq; the
         * bus delivers it only to those who may read them. */
        self->messages_signal_id = g_dbus_connection_signal_subscribe(self->connection, OUTPOST_BUS_NAME, MESSAGES_IFACE,
                                                                      "MessageReceived", MESSAGES_PATH, NULL,
                                                                      G_DBUS_SIGNAL_FLAGS_NONE,
                                                                      _outpost_client_on_events_signal, self, NULL);
        self->bridge_signal_id = g_dbus_connection_signal_subscribe(self->connection, OUTPOST_BUS_NAME, IFACE_PROPERTIES,
                                                                    "PropertiesChanged", BRIDGE_PATH, BRIDGE_IFACE,
                                                                    G_DBUS_SIGNAL_FLAGS_NONE, on_bridge_changed, self, NULL);
        self->watch_id = g_bus_watch_name_on_connection(self->connection, OUTPOST_BUS_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                                        on_name_appeared, on_name_vanished, self, NULL);
}

typedef struct ProxyRequest {
        GTask *task;
        const ProxyInfo *info;
} ProxyRequest;

static void on_proxy(GObject *source, GAsyncResult *result, gpointer data) {
        ProxyRequest *req = data;
        g_autoptr(GTask) task = req->task;
        const ProxyInfo *info = req->info;
        OutpostClient *self = g_task_get_source_object(task);
        g_autoptr(GError) error = NULL;
        GObject *proxy = g_async_initable_new_finish(G_ASYNC_INITABLE(source), result, &error);

        g_free(req);
        self->proxies_pending--;
        if (!proxy) {
                /* Only the first error ends the initialization. */
                if (self->init_task == task)
                        g_task_return_error(g_steal_pointer(&self->init_task), g_steal_pointer(&error));
                return;
        }
        g_dbus_proxy_set_default_timeout(G_DBUS_PROXY(proxy), OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC);
        *(GObject **) G_STRUCT_MEMBER_P(self, info->offset) = proxy;
        if (self->proxies_pending == 0 && self->init_task == task)
                watch_service(self);
}

static void make_proxies(OutpostClient *self, GTask *task) {
        /* Before any call: the proxies' calls get their errors mapped. */
        self->filter_id = _outpost_call_filter_add(self->connection);

        self->proxies_pending = G_N_ELEMENTS(proxy_infos);
        for (gsize i = 0; i < G_N_ELEMENTS(proxy_infos); i++) {
                const ProxyInfo *info = &proxy_infos[i];
                ProxyRequest *req = g_new(ProxyRequest, 1);

                req->task = g_object_ref(task);
                req->info = info;
                /* Each proxy follows the name's owner across restarts. */
                g_async_initable_new_async(info->get_type(), G_PRIORITY_DEFAULT, g_task_get_cancellable(task),
                                           on_proxy, req,
                                           "g-flags", G_DBUS_PROXY_FLAGS_NONE,
                                           "g-name", OUTPOST_BUS_NAME,
                                           "g-connection", self->connection,
                                           "g-object-path", info->path,
                                           "g-interface-name", info->iface,
                                           NULL);
        }
}

static void on_connection(GObject *source, GAsyncResult *result, gpointer data) {
        g_autoptr(GTask) task = data;
        OutpostClient *self = g_task_get_source_object(task);
        g_autoptr(GError) error = NULL;

        if (self->address) {
                self->connection = g_dbus_connection_new_for_address_finish(result, &error);
                self->own_connection = self->connection != NULL;
        } else
                self->connection = g_bus_get_finish(result, &error);
        if (!self->connection) {
                g_task_return_error(g_steal_pointer(&self->init_task), g_steal_pointer(&error));
                return;
        }
        make_proxies(self, task);
}

static void outpost_client_init_async(GAsyncInitable *initable, int io_priority, GCancellable *cancellable,
                                      GAsyncReadyCallback callback, gpointer user_data) {
        OutpostClient *self = OUTPOST_CLIENT(initable);
        g_autoptr(GTask) task = g_task_new(self, cancellable, callback, user_data);

        g_task_set_source_tag(task, outpost_client_init_async);
        g_return_if_fail(!self->init_task && !self->proxies_pending && !self->watch_id);
        self->init_task = g_object_ref(task);
        if (self->connection)
                make_proxies(self, task);
        else if (self->address)
                g_dbus_connection_new_for_address(self->address,
                                                  G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                  G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                  NULL, cancellable, on_connection, g_object_ref(task));
        else
                g_bus_get(self->bus_type, cancellable, on_connection, g_object_ref(task));
}

static gboolean outpost_client_init_finish(GAsyncInitable *initable, GAsyncResult *result, GError **error) {
        return g_task_propagate_boolean(G_TASK(result), error);
}

static void async_initable_iface_init(GAsyncInitableIface *iface) {
        iface->init_async = outpost_client_init_async;
        iface->init_finish = outpost_client_init_finish;
}

/* Public API */

/**
 * outpost_client_new:
 * @bus_type: the bus the service is on, usually %G_BUS_TYPE_SYSTEM
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when the client is ready
 * @user_data: data for @callback
 *
 * Connects to the Outpost service on @bus_type. The client is ready once it
 * knows where the service stands: connected and caught up, or not there
 * (then it keeps watching and connects on its own when the service comes).
 * Finish with outpost_client_new_finish().
 */
void outpost_client_new(GBusType bus_type, GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data) {
        g_async_initable_new_async(OUTPOST_TYPE_CLIENT, G_PRIORITY_DEFAULT, cancellable, callback, user_data,
                                   "bus-type", bus_type, NULL);
}

/**
 * outpost_client_new_for_address:
 * @address: a D-Bus address of a message bus, e.g. `unix:path=/run/dbus/system_bus_socket`
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when the client is ready
 * @user_data: data for @callback
 *
 * Like outpost_client_new(), on the message bus at @address, on a
 * connection of the client's own.
 */
void outpost_client_new_for_address(const char *address, GCancellable *cancellable, GAsyncReadyCallback callback,
                                    gpointer user_data) {
        g_return_if_fail(address != NULL);
        g_async_initable_new_async(OUTPOST_TYPE_CLIENT, G_PRIORITY_DEFAULT, cancellable, callback, user_data,
                                   "address", address, NULL);
}

/**
 * outpost_client_new_for_connection:
 * @connection: a connection to a message bus
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when the client is ready
 * @user_data: data for @callback
 *
 * Like outpost_client_new(), on @connection, which the client shares with
 * the program: it does not close it. @connection must be a connection to a
 * message bus (not a peer-to-peer one), and the client adds a message
 * filter to it (see #OutpostClient).
 */
void outpost_client_new_for_connection(GDBusConnection *connection, GCancellable *cancellable,
                                       GAsyncReadyCallback callback, gpointer user_data) {
        g_return_if_fail(G_IS_DBUS_CONNECTION(connection));
        g_async_initable_new_async(OUTPOST_TYPE_CLIENT, G_PRIORITY_DEFAULT, cancellable, callback, user_data,
                                   "connection", connection, NULL);
}

/**
 * outpost_client_new_finish:
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Returns: (transfer full): the client, or %NULL when the bus could not be
 *   reached
 */
OutpostClient *outpost_client_new_finish(GAsyncResult *result, GError **error) {
        g_autoptr(GObject) source = g_async_result_get_source_object(result);

        return OUTPOST_CLIENT(g_async_initable_new_finish(G_ASYNC_INITABLE(source), result, error));
}

/**
 * outpost_client_get_state:
 * @client: a client
 *
 * Returns: where the client stands with the service
 */
OutpostClientState outpost_client_get_state(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), OUTPOST_CLIENT_STATE_DISCONNECTED);
        return client->state;
}

/**
 * outpost_client_get_server_id:
 * @client: a client
 *
 * Returns: (nullable): the id of the origin daemon, once known
 */
const char *outpost_client_get_server_id(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->server_id;
}

/**
 * outpost_client_get_connection:
 * @client: a client
 *
 * Returns: (transfer none): the client's bus connection
 */
GDBusConnection *outpost_client_get_connection(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->connection;
}

/**
 * outpost_client_get_last_seq:
 * @client: a client
 *
 * Returns: the seq of the last event the client delivered to its
 *   subscriptions, or the one it follows on from
 */
guint64 outpost_client_get_last_seq(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), 0);
        return client->last_seq;
}

/**
 * outpost_client_get_registry:
 * @client: a client
 *
 * The proxies follow the service across restarts and bridge reconnections:
 * they stay valid as long as the client. Their calls time out after
 * %OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC.
 *
 * Returns: (transfer none): the proxy of the registry, `/org/outpost/Outpost1`
 */
OutpostRegistry *outpost_client_get_registry(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->registry;
}

/**
 * outpost_client_get_users:
 * @client: a client
 *
 * Returns: (transfer none): the proxy of the users manager
 */
OutpostUsers *outpost_client_get_users(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->users;
}

/**
 * outpost_client_get_presence:
 * @client: a client
 *
 * Returns: (transfer none): the proxy of the presence manager
 */
OutpostPresence *outpost_client_get_presence(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->presence;
}

/**
 * outpost_client_get_messages:
 * @client: a client
 *
 * Returns: (transfer none): the proxy of the messages manager
 */
OutpostMessages *outpost_client_get_messages(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->messages;
}

/**
 * outpost_client_get_events:
 * @client: a client
 *
 * To follow events, use outpost_client_subscribe() rather than the proxy's
 * #OutpostEvents::event signal: it resumes after outages.
 *
 * Returns: (transfer none): the proxy of the events manager
 */
OutpostEvents *outpost_client_get_events(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->events;
}

/**
 * outpost_client_get_online_users:
 * @client: a client
 *
 * Who is online, as a #GListModel of #OutpostOnlineUser items sorted by user
 * id, kept current from the service's object manager: bind a list view to
 * it. The first call starts following the objects; the model is empty until
 * #OutpostOnlineUsers:loaded.
 *
 * Returns: (transfer none): the online users
 */
OutpostOnlineUsers *outpost_client_get_online_users(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        g_return_val_if_fail(client->connection, NULL);
        if (!client->online_users)
                client->online_users = _outpost_online_users_new(client->connection);
        return client->online_users;
}

/**
 * outpost_client_get_bridge:
 * @client: a client
 *
 * Returns: (transfer none) (nullable): the proxy of the bridge object when
 *   the service is relayed onto this bus by a bridge, %NULL otherwise
 */
OutpostBridge *outpost_client_get_bridge(OutpostClient *client) {
        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), NULL);
        return client->has_bridge ? client->bridge : NULL;
}

struct OutpostCall {
        GTask *task;
        OutpostCallReply on_reply;
};

OutpostCall *_outpost_client_call_begin(OutpostClient *self, GTask *task, OutpostCallReply on_reply) {
        OutpostCall *call;

        if (self->state != OUTPOST_CLIENT_STATE_CONNECTED) {
                g_task_return_new_error(task, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED,
                                        "%s is not available (the client is %s)", OUTPOST_BUS_NAME,
                                        state_name(self->state));
                return NULL;
        }
        call = g_new(OutpostCall, 1);
        call->task = g_object_ref(task);
        call->on_reply = on_reply;
        return call;
}

void _outpost_client_call_done(GObject *source, GAsyncResult *result, gpointer data) {
        OutpostCall *call = data;
        g_autoptr(GTask) task = call->task;
        OutpostCallReply on_reply = call->on_reply;
        GError *error = NULL;
        g_autoptr(GVariant) reply = g_dbus_proxy_call_finish(G_DBUS_PROXY(source), result, &error);

        g_free(call);
        if (!reply) {
                g_task_return_error(task, error);
                return;
        }
        on_reply(task, reply);
}

static void return_reply(GTask *task, GVariant *reply) {
        g_task_return_pointer(task, g_variant_ref(reply), (GDestroyNotify) g_variant_unref);
}

/**
 * outpost_client_call:
 * @client: a client
 * @proxy: one of the client's proxies
 * @method: the method's name
 * @parameters: (nullable): its parameters; a floating reference is consumed
 * @cancellable: (nullable): a #GCancellable
 * @callback: called with the outcome
 * @user_data: data for @callback
 *
 * Calls @method on @proxy, unless the client is not connected: then the
 * call fails at once with %OUTPOST_ERROR_DISCONNECTED. Errors come only
 * through outpost_client_call_finish().
 */
void outpost_client_call(OutpostClient *client, GDBusProxy *proxy, const char *method, GVariant *parameters,
                         GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data) {
        g_autoptr(GTask) task = NULL;
        g_autoptr(GVariant) params = parameters ? g_variant_ref_sink(parameters) : NULL;
        OutpostCall *call;

        g_return_if_fail(OUTPOST_IS_CLIENT(client));
        g_return_if_fail(G_IS_DBUS_PROXY(proxy));
        g_return_if_fail(method != NULL);

        task = g_task_new(client, cancellable, callback, user_data);
        g_task_set_source_tag(task, outpost_client_call);
        call = _outpost_client_call_begin(client, task, return_reply);
        if (!call)
                return;
        g_dbus_proxy_call(proxy, method, params, G_DBUS_CALL_FLAGS_NONE, OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC,
                          cancellable, _outpost_client_call_done, call);
}

/**
 * outpost_client_call_finish:
 * @client: a client
 * @result: the result given to the callback
 * @error: return location for an error, in the %OUTPOST_ERROR domain for the
 *   errors of the contract
 *
 * Returns: (transfer full): the reply's parameters, or %NULL on error
 */
GVariant *outpost_client_call_finish(OutpostClient *client, GAsyncResult *result, GError **error) {
        g_return_val_if_fail(g_task_is_valid(result, client), NULL);
        return g_task_propagate_pointer(G_TASK(result), error);
}

/* GObject */

static void outpost_client_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
        OutpostClient *self = OUTPOST_CLIENT(object);

        switch (prop_id) {
        case PROP_BUS_TYPE:
                g_value_set_enum(value, self->bus_type);
                break;
        case PROP_ADDRESS:
                g_value_set_string(value, self->address);
                break;
        case PROP_CONNECTION:
                g_value_set_object(value, self->connection);
                break;
        case PROP_STATE:
                g_value_set_enum(value, self->state);
                break;
        case PROP_SERVER_ID:
                g_value_set_string(value, self->server_id);
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
        }
}

static void outpost_client_set_property(GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec) {
        OutpostClient *self = OUTPOST_CLIENT(object);

        switch (prop_id) {
        case PROP_BUS_TYPE:
                self->bus_type = g_value_get_enum(value);
                break;
        case PROP_ADDRESS:
                g_free(self->address);
                self->address = g_value_dup_string(value);
                break;
        case PROP_CONNECTION:
                g_clear_object(&self->connection);
                self->connection = g_value_dup_object(value);
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
        }
}

static void outpost_client_dispose(GObject *object) {
        OutpostClient *self = OUTPOST_CLIENT(object);

        if (self->epoch)
                g_cancellable_cancel(self->epoch);
        g_clear_object(&self->epoch);
        g_clear_handle_id(&self->retry_id, g_source_remove);
        g_clear_handle_id(&self->watch_id, g_bus_unwatch_name);
        if (self->connection) {
                if (self->events_signal_id)
                        g_dbus_connection_signal_unsubscribe(self->connection, self->events_signal_id);
                if (self->messages_signal_id)
                        g_dbus_connection_signal_unsubscribe(self->connection, self->messages_signal_id);
                if (self->bridge_signal_id)
                        g_dbus_connection_signal_unsubscribe(self->connection, self->bridge_signal_id);
                self->events_signal_id = self->messages_signal_id = self->bridge_signal_id = 0;
                if (self->filter_id)
                        g_dbus_connection_remove_filter(self->connection, self->filter_id);
                self->filter_id = 0;
        }
        g_hash_table_remove_all(self->holds);
        g_ptr_array_set_size(self->subscriptions, 0);
        g_clear_object(&self->registry);
        g_clear_object(&self->users);
        g_clear_object(&self->presence);
        g_clear_object(&self->messages);
        g_clear_object(&self->events);
        g_clear_object(&self->bridge);
        g_clear_object(&self->online_users);
        /* A connection of our own ends with us; a shared one stays. */
        if (self->connection && self->own_connection)
                g_dbus_connection_close(self->connection, NULL, NULL, NULL);
        g_clear_object(&self->connection);

        G_OBJECT_CLASS(outpost_client_parent_class)->dispose(object);
}

static void outpost_client_finalize(GObject *object) {
        OutpostClient *self = OUTPOST_CLIENT(object);

        g_queue_clear_full(&self->pending, (GDestroyNotify) _outpost_pending_free);
        g_ptr_array_unref(self->subscriptions);
        g_hash_table_unref(self->holds);
        g_free(self->address);
        g_free(self->server_id);
        g_free(self->history_id);
        g_free(self->server_history_id);

        G_OBJECT_CLASS(outpost_client_parent_class)->finalize(object);
}

static void outpost_client_class_init(OutpostClientClass *klass) {
        GObjectClass *object_class = G_OBJECT_CLASS(klass);

        /* Replies map to OUTPOST_ERROR from the first call on. */
        (void) outpost_error_quark();

        object_class->get_property = outpost_client_get_property;
        object_class->set_property = outpost_client_set_property;
        object_class->dispose = outpost_client_dispose;
        object_class->finalize = outpost_client_finalize;

        /**
         * OutpostClient:bus-type:
         *
         * The bus to connect to, unless #OutpostClient:address is set.
         */
        props[PROP_BUS_TYPE] = g_param_spec_enum("bus-type", NULL, NULL, G_TYPE_BUS_TYPE, G_BUS_TYPE_SYSTEM,
                                                 G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
        /**
         * OutpostClient:address:
         *
         * The address of the message bus to connect to, or %NULL for
         * #OutpostClient:bus-type.
         */
        props[PROP_ADDRESS] = g_param_spec_string("address", NULL, NULL, NULL,
                                                  G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
        /**
         * OutpostClient:connection:
         *
         * The message bus connection the client uses. Set it at
         * construction to share a connection the program has already
         * (outpost_client_new_for_connection()); otherwise the client opens
         * one from #OutpostClient:address or #OutpostClient:bus-type.
         */
        props[PROP_CONNECTION] = g_param_spec_object("connection", NULL, NULL, G_TYPE_DBUS_CONNECTION,
                                                     G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
        /**
         * OutpostClient:state:
         *
         * Where the client stands with the service.
         */
        props[PROP_STATE] = g_param_spec_enum("state", NULL, NULL, OUTPOST_TYPE_CLIENT_STATE,
                                              OUTPOST_CLIENT_STATE_CONNECTING,
                                              G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
        /**
         * OutpostClient:server-id:
         *
         * The id of the origin daemon (the Registry's ServerId), once known.
         */
        props[PROP_SERVER_ID] = g_param_spec_string("server-id", NULL, NULL, NULL,
                                                    G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
        g_object_class_install_properties(object_class, N_PROPS, props);

        /**
         * OutpostClient::resync-needed:
         * @client: the client
         *
         * Events were lost for this client: they were discarded by the
         * history's retention while the client was away, the history was
         * reset, or a bridge reported a gap. Rebuild the state that the
         * events maintain from a fresh snapshot; the subscriptions go on
         * from the newest event.
         */
        signals[SIGNAL_RESYNC_NEEDED] = g_signal_new("resync-needed", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST,
                                                     0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void outpost_client_init(OutpostClient *self) {
        self->bus_type = G_BUS_TYPE_SYSTEM;
        self->state = OUTPOST_CLIENT_STATE_CONNECTING;
        self->subscriptions = g_ptr_array_new_with_free_func((GDestroyNotify) _outpost_subscription_release);
        self->holds = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) _outpost_hold_free);
        g_queue_init(&self->pending);
}

