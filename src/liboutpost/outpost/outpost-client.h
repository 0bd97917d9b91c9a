/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(OUTPOST_INSIDE) && !defined(OUTPOST_COMPILATION)
#error "Only <outpost/outpost.h> can be included directly."
#endif

#include <gio/gio.h>
#include <outpost/outpost-generated.h>
#include <outpost/outpost-online-users.h>

G_BEGIN_DECLS

/**
 * OutpostClientState:
 * @OUTPOST_CLIENT_STATE_CONNECTING: the service is there but not usable yet:
 *   the client is catching up after a (re)connection, or a bridge on the way
 *   is trying to reach the origin daemon again.
 * @OUTPOST_CLIENT_STATE_CONNECTED: the service is there and up to date; calls
 *   go through.
 * @OUTPOST_CLIENT_STATE_DISCONNECTED: nobody owns `org.outpost.Outpost1` on
 *   the bus, or a bridge on the way gave up; calls through the client fail at
 *   once with %OUTPOST_ERROR_DISCONNECTED.
 *
 * Where an #OutpostClient stands with the service. It changes on its own as
 * the service comes and goes; watch #OutpostClient:state.
 */
typedef enum {
        OUTPOST_CLIENT_STATE_CONNECTING,
        OUTPOST_CLIENT_STATE_CONNECTED,
        OUTPOST_CLIENT_STATE_DISCONNECTED,
} OutpostClientState;

#define OUTPOST_TYPE_CLIENT_STATE (outpost_client_state_get_type())
GType outpost_client_state_get_type(void);

/**
 * OutpostClient:
 *
 * The connection to the Outpost service, as a program sees it: it follows
 * `org.outpost.Outpost1` as it comes and goes (#OutpostClient:state), hands
 * out one proxy per manager, delivers events (outpost_client_subscribe())
 * and keeps presence holds (outpost_client_hold_presence()).
 *
 * ## Errors
 *
 * Every call, through the client's own functions or through the generated
 * proxies it hands out (outpost_users_call_get_user() and the like), reports
 * its failure only in its async result, as a #GError; the errors of the
 * contract are in the %OUTPOST_ERROR domain. A call made while the service
 * cannot be reached fails at once with %OUTPOST_ERROR_DISCONNECTED, whose
 * message names the service:
 *
 * - the client's functions (outpost_client_call(),
 *   outpost_client_hold_presence(), outpost_client_release_presence()) check
 *   #OutpostClient:state first and fail without a call unless it is
 *   %OUTPOST_CLIENT_STATE_CONNECTED;
 * - a proxy's call is sent as it is; when nobody owns the name, the message
 *   bus's answer (`org.freedesktop.DBus.Error.ServiceUnknown` or
 *   `NameHasNoOwner`), and `org.freedesktop.DBus.Error.NoReply` when the
 *   service left the bus before it replied, arrive as
 *   %OUTPOST_ERROR_DISCONNECTED: the client filters the replies to calls on
 *   the service's objects on its connection, so this holds for every call
 *   to the service made on that connection;
 * - behind a bridge whose link is down, the bridge itself answers
 *   `Disconnected`.
 *
 * No call waits longer than %OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC.
 */
#define OUTPOST_TYPE_CLIENT (outpost_client_get_type())
G_DECLARE_FINAL_TYPE(OutpostClient, outpost_client, OUTPOST, CLIENT, GObject)

/**
 * OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC:
 *
 * The timeout of every call made through the client and its proxies: no
 * call waits longer than this for a reply.
 */
#define OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC 25000

/**
 * OUTPOST_PUBLISH_REQUEST_ID_KEY:
 *
 * The key of the data of Publish (outpost_events_call_publish()) that
 * names the call with a request id of the caller's choosing (a string of
 * 1 to 128 printable ASCII characters without space, a UUID say). The
 * event does not carry it. A retry with the same request id, after an
 * error that said the call may have been carried out, returns the first
 * call's seq instead of publishing again.
 */
#define OUTPOST_PUBLISH_REQUEST_ID_KEY "org.outpost.request-id"

/**
 * OUTPOST_SEND_OPTION_REQUEST_ID:
 *
 * The option of SendWithOptions
 * (outpost_messages_call_send_with_options()) that names the call with
 * a request id, as #OUTPOST_PUBLISH_REQUEST_ID_KEY does for Publish: a
 * retry returns the first call's message id and last seq instead of
 * sending the message again.
 */
#define OUTPOST_SEND_OPTION_REQUEST_ID "request-id"

/**
 * OutpostEventFunc:
 * @client: the client
 * @seq: the event's global sequence number
 * @topic: the event's topic
 * @time: when it was published, in microseconds since the Unix epoch
 * @data: the event's data, of type `a{sv}`
 * @user_data: the data given to outpost_client_subscribe()
 *
 * Called for each event whose topic starts with the prefix of a
 * subscription, in ascending order of @seq, each event once.
 */
typedef void (*OutpostEventFunc)(OutpostClient *client, guint64 seq, const char *topic, gint64 time,
                                 GVariant *data, gpointer user_data);

void outpost_client_new(GBusType bus_type, GCancellable *cancellable, GAsyncReadyCallback callback,
                        gpointer user_data);
void outpost_client_new_for_address(const char *address, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);
void outpost_client_new_for_connection(GDBusConnection *connection, GCancellable *cancellable,
                                       GAsyncReadyCallback callback, gpointer user_data);
OutpostClient *outpost_client_new_finish(GAsyncResult *result, GError **error);

OutpostClientState outpost_client_get_state(OutpostClient *client);
const char *outpost_client_get_server_id(OutpostClient *client);
GDBusConnection *outpost_client_get_connection(OutpostClient *client);
guint64 outpost_client_get_last_seq(OutpostClient *client);

OutpostRegistry *outpost_client_get_registry(OutpostClient *client);
OutpostUsers *outpost_client_get_users(OutpostClient *client);
OutpostPresence *outpost_client_get_presence(OutpostClient *client);
OutpostMessages *outpost_client_get_messages(OutpostClient *client);
OutpostEvents *outpost_client_get_events(OutpostClient *client);
OutpostBridge *outpost_client_get_bridge(OutpostClient *client);
OutpostOnlineUsers *outpost_client_get_online_users(OutpostClient *client);

void outpost_client_call(OutpostClient *client, GDBusProxy *proxy, const char *method, GVariant *parameters,
                         GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
GVariant *outpost_client_call_finish(OutpostClient *client, GAsyncResult *result, GError **error);

guint outpost_client_subscribe(OutpostClient *client, const char *topic_prefix, OutpostEventFunc callback,
                               gpointer user_data, GDestroyNotify destroy);
void outpost_client_unsubscribe(OutpostClient *client, guint subscription_id);
void outpost_client_resume_from(OutpostClient *client, const char *history_id, guint64 after_seq);

void outpost_client_hold_presence(OutpostClient *client, const char *user_id, guint ttl_seconds,
                                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
gboolean outpost_client_hold_presence_finish(OutpostClient *client, GAsyncResult *result, GError **error);
void outpost_client_release_presence(OutpostClient *client, const char *user_id, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
gboolean outpost_client_release_presence_finish(OutpostClient *client, GAsyncResult *result, GError **error);

G_END_DECLS
