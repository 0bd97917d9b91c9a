/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Calls to a service that is not there fail with Disconnected.
 *
 * The proxies a client hands out are gdbus-codegen's, and their calls go
 * straight to GDBusProxy: the client cannot check its state first. When
 * org.outpost.Outpost1 has no owner, the message bus answers such a call
 * with org.freedesktop.DBus.Error.ServiceUnknown (or NameHasNoOwner), and a
 * call whose callee left the bus before replying gets NoReply. For the
 * program these all mean what the contract calls Disconnected, so this
 * filter on the client's connection rewrites those replies, before GDBus
 * turns them into a GError, into org.outpost.Outpost1.Error.Disconnected
 * naming the service and keeping the bus's own words. The program sees
 * OUTPOST_ERROR_DISCONNECTED in the async result, as from any other call.
 *
 * Only replies from the bus driver to method calls on the service's objects
 * (paths under /org/outpost/Outpost1, sent to the well-known name or to a
 * unique name) are touched; a service's own errors never are.
 *
 * Filters run in GDBus's worker thread, in the order messages go out and
 * come in; the state here is behind a mutex, and is freed by GDBus once
 * the filter is removed and no longer running. */
#include "config.h"

#include <string.h>

#include "bus-errors.h"
#include "bus-names.h"
#include "outpost-call-filter.h"

#define BUS_DRIVER              "org.freedesktop.DBus"
#define DBUS_ERROR_SERVICE_UNKNOWN  "org.freedesktop.DBus.Error.ServiceUnknown"
#define DBUS_ERROR_NAME_HAS_NO_OWNER "org.freedesktop.DBus.Error.NameHasNoOwner"
#define DBUS_ERROR_NO_REPLY     "org.freedesktop.DBus.Error.NoReply"

/* Calls still waiting for a reply are forgotten after this long (a reply
 * that never comes, e.g. the caller's own timeout fired and the bus never
 * answers), so the table stays small. */
#define CALL_FORGET_USEC        (120 * G_USEC_PER_SEC)
#define CALLS_PRUNE_AT          256

typedef struct Call {
        char *destination;      /* the well-known name or a unique name */
        gboolean callee_left;   /* the name's owner changed since */
        gint64 sent;
} Call;

typedef struct CallFilter {
        GMutex lock;
        GHashTable *calls;      /* serial → Call* */
} CallFilter;

static void call_free(Call *c) {
        g_free(c->destination);
        g_free(c);
}

static void call_filter_free(CallFilter *f) {
        g_hash_table_unref(f->calls);
        g_mutex_clear(&f->lock);
        g_free(f);
}

static gboolean is_service_path(const char *path) {
        return path && g_str_has_prefix(path, OUTPOST_ROOT_PATH) &&
               (path[strlen(OUTPOST_ROOT_PATH)] == '\0' || path[strlen(OUTPOST_ROOT_PATH)] == '/');
}

static void prune(CallFilter *f, gint64 now) {
        GHashTableIter iter;
        Call *c;

        g_hash_table_iter_init(&iter, f->calls);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &c))
                if (now - c->sent > CALL_FORGET_USEC)
                        g_hash_table_iter_remove(&iter);
}

static void outgoing(CallFilter *f, GDBusMessage *message) {
        const char *destination = g_dbus_message_get_destination(message);
        Call *c;

        if (g_dbus_message_get_message_type(message) != G_DBUS_MESSAGE_TYPE_METHOD_CALL ||
            (g_dbus_message_get_flags(message) & G_DBUS_MESSAGE_FLAGS_NO_REPLY_EXPECTED) ||
            !is_service_path(g_dbus_message_get_path(message)) || !destination ||
            !(g_str_equal(destination, OUTPOST_BUS_NAME) || destination[0] == ':'))
                return;

        c = g_new0(Call, 1);
        c->destination = g_strdup(destination);
        c->sent = g_get_monotonic_time();
        g_mutex_lock(&f->lock);
        if (g_hash_table_size(f->calls) >= CALLS_PRUNE_AT)
                prune(f, c->sent);
        g_hash_table_replace(f->calls, GUINT_TO_POINTER(g_dbus_message_get_serial(message)), c);
        g_mutex_unlock(&f->lock);
}

/* The bus says the service's owner changed: the calls sent to the old
 * owner (or to the name while it had that owner) will not be answered by
 * it. The bus sends NameOwnerChanged before the NoReply of those calls. */
static void owner_changed(CallFilter *f, GDBusMessage *message) {
        GVariant *body = g_dbus_message_get_body(message);
        const char *name, *old_owner;
        GHashTableIter iter;
        Call *c;

        if (!body || !g_variant_is_of_type(body, G_VARIANT_TYPE("(sss)")))
                return;
        g_variant_get(body, "(&s&s&s)", &name, &old_owner, NULL);
        if (!g_str_equal(name, OUTPOST_BUS_NAME) || !old_owner[0])
                return;

        g_mutex_lock(&f->lock);
        g_hash_table_iter_init(&iter, f->calls);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &c))
                if (g_str_equal(c->destination, old_owner) || g_str_equal(c->destination, OUTPOST_BUS_NAME))
                        c->callee_left = TRUE;
        g_mutex_unlock(&f->lock);
}

/* The reply to one of our calls: forget the call, and say whether the
 * error, if it is one, means the service is not there. */
static gboolean reply_means_disconnected(CallFilter *f, GDBusMessage *message) {
        guint32 serial = g_dbus_message_get_reply_serial(message);
        const char *error_name = g_dbus_message_get_error_name(message);
        gboolean disconnected = FALSE;
        Call *c;

        g_mutex_lock(&f->lock);
        c = g_hash_table_lookup(f->calls, GUINT_TO_POINTER(serial));
        if (c && error_name && g_strcmp0(g_dbus_message_get_sender(message), BUS_DRIVER) == 0)
                disconnected = g_str_equal(error_name, DBUS_ERROR_SERVICE_UNKNOWN) ||
                               g_str_equal(error_name, DBUS_ERROR_NAME_HAS_NO_OWNER) ||
                               (g_str_equal(error_name, DBUS_ERROR_NO_REPLY) && c->callee_left);
        if (c)
                g_hash_table_remove(f->calls, GUINT_TO_POINTER(serial));
        g_mutex_unlock(&f->lock);
        return disconnected;
}

static GDBusMessage *disconnected_reply(GDBusMessage *message) {
        g_autoptr(GError) error = NULL;
        GDBusMessage *copy = g_dbus_message_copy(message, &error);
        GVariant *body = g_dbus_message_get_body(message);
        const char *error_name = g_dbus_message_get_error_name(message);
        const char *text = NULL;
        g_autofree char *why = NULL;

        if (!copy) {
                g_warning("Cannot copy an error reply: %s", error->message);
                return message;
        }
        if (body && g_variant_is_of_type(body, G_VARIANT_TYPE("(s)")))
                g_variant_get(body, "(&s)", &text);
        /* As the bridges say it (DESIGN.md §4 rule 5): whether the call
         * may have been carried out. */
        if (g_str_equal(error_name, DBUS_ERROR_NO_REPLY))
                why = g_strdup_printf("%s left the bus before it replied (%s: %s): the call may have been carried out",
                                      OUTPOST_BUS_NAME, error_name, text ?: "no message");
        else
                why = g_strdup_printf("%s is not on the bus (%s: %s): the call was not carried out", OUTPOST_BUS_NAME,
                                      error_name, text ?: "no message");
        g_dbus_message_set_error_name(copy, BUS_ERROR_DISCONNECTED);
        g_dbus_message_set_body(copy, g_variant_new("(s)", why));
        g_object_unref(message);
        return copy;
}

static GDBusMessage *call_filter(GDBusConnection *connection, GDBusMessage *message, gboolean incoming,
                                 gpointer data) {
        CallFilter *f = data;

        if (!incoming) {
                outgoing(f, message);
                return message;
        }
        switch (g_dbus_message_get_message_type(message)) {
        case G_DBUS_MESSAGE_TYPE_SIGNAL:
                if (g_strcmp0(g_dbus_message_get_sender(message), BUS_DRIVER) == 0 &&
                    g_strcmp0(g_dbus_message_get_member(message), "NameOwnerChanged") == 0)
                        owner_changed(f, message);
                return message;
        case G_DBUS_MESSAGE_TYPE_METHOD_RETURN:
        case G_DBUS_MESSAGE_TYPE_ERROR:
                if (reply_means_disconnected(f, message))
                        return disconnected_reply(message);
                return message;
        default:
                return message;
        }
}

/* Adds the filter to CONNECTION; remove it with
 * g_dbus_connection_remove_filter() and the returned id. The client needs
 * NameOwnerChanged for its name to come in, which watching the name does. */
guint _outpost_call_filter_add(GDBusConnection *connection) {
        CallFilter *f = g_new0(CallFilter, 1);

        g_mutex_init(&f->lock);
        f->calls = g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify) call_free);
        return g_dbus_connection_add_filter(connection, call_filter, f, (GDestroyNotify) call_filter_free);
}
