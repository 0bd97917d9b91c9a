/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* OutpostOnlineUsers: the OnlineUser objects of the service as a
 * GListModel. A GDBusObjectManagerClient follows InterfacesAdded and
 * InterfacesRemoved (one match rule, whatever the number of users) and
 * the owner of the name; the items are kept sorted by user id in a
 * GSequence, with an index by object path, so that a user coming or going
 * costs O(log n) here, not a walk over everyone online. */
#include "config.h"

#include <string.h>

#include "bus-errors.h"
#include "bus-names.h"
#include "outpost-online-users.h"
#include "outpost-online-users-private.h"


struct _OutpostOnlineUsers {
        GObject parent_instance;

        GDBusObjectManager *manager;
        GCancellable *cancellable;
        gboolean loaded;
        GSequence *items;       /* OutpostOnlineUser, by user id */
        GHashTable *by_path;    /* object path → GSequenceIter in items */
};

enum {
        PROP_0,
        PROP_N_ITEMS,
        PROP_LOADED,
        N_PROPS
};
static GParamSpec *props[N_PROPS];

static void list_model_iface_init(GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE(OutpostOnlineUsers, outpost_online_users, G_TYPE_OBJECT,
                              G_IMPLEMENT_INTERFACE(G_TYPE_LIST_MODEL, list_model_iface_init))

static GType outpost_online_users_get_item_type(GListModel *model) {
        return OUTPOST_TYPE_ONLINE_USER;
}

static guint outpost_online_users_get_n_items(GListModel *model) {
        return g_sequence_get_length(OUTPOST_ONLINE_USERS(model)->items);
}

static gpointer outpost_online_users_get_item(GListModel *model, guint position) {
        OutpostOnlineUsers *self = OUTPOST_ONLINE_USERS(model);
        GSequenceIter *iter = g_sequence_get_iter_at_pos(self->items, (int) position);

        return g_sequence_iter_is_end(iter) ? NULL : g_object_ref(g_sequence_get(iter));
}

static void list_model_iface_init(GListModelInterface *iface) {
        iface->get_item_type = outpost_online_users_get_item_type;
        iface->get_n_items = outpost_online_users_get_n_items;
        iface->get_item = outpost_online_users_get_item;
}

static int compare_users(gconstpointer a, gconstpointer b, gpointer data) {
        return g_strcmp0(outpost_online_user_get_user_id((OutpostOnlineUser *) a),
                         outpost_online_user_get_user_id((OutpostOnlineUser *) b));
}

static void changed(OutpostOnlineUsers *self, guint position, guint removed, guint added) {
        g_list_model_items_changed(G_LIST_MODEL(self), position, removed, added);
        g_object_notify_by_pspec(G_OBJECT(self), props[PROP_N_ITEMS]);
}

/* Insert the OnlineUser interface of OBJECT, if it has one; returns its
 * position, or -1. */
static int insert(OutpostOnlineUsers *self, GDBusObject *object) {
        g_autoptr(GDBusInterface) user = g_dbus_object_get_interface(object, ONLINE_USER_IFACE);
        const char *path = g_dbus_object_get_object_path(object);
        GSequenceIter *iter;

        if (!user || g_hash_table_contains(self->by_path, path))
                return -1;
        iter = g_sequence_insert_sorted(self->items, g_object_ref(user), compare_users, NULL);
        g_hash_table_insert(self->by_path, g_strdup(path), iter);
        return g_sequence_iter_get_position(iter);
}

static void on_object_added(GDBusObjectManager *manager, GDBusObject *object, gpointer data) {
        OutpostOnlineUsers *self = data;
        int position = insert(self, object);

        if (position >= 0)
                changed(self, position, 0, 1);
}

static void on_object_removed(GDBusObjectManager *manager, GDBusObject *object, gpointer data) {
        OutpostOnlineUsers *self = data;
        GSequenceIter *iter = g_hash_table_lookup(self->by_path, g_dbus_object_get_object_path(object));
        int position;

        if (!iter)
                return;
        position = g_sequence_iter_get_position(iter);
        g_hash_table_remove(self->by_path, g_dbus_object_get_object_path(object));
        g_sequence_remove(iter);
        changed(self, position, 1, 0);
}

/* The objects are OnlineUser proxies when they are online users; the
 * managers' objects get plain proxies, which nobody here looks at. */
static GType proxy_type(GDBusObjectManagerClient *manager, const char *path, const char *iface, gpointer data) {
        if (!iface)
                return G_TYPE_DBUS_OBJECT_PROXY;
        if (strcmp(iface, ONLINE_USER_IFACE) == 0)
                return OUTPOST_TYPE_ONLINE_USER_PROXY;
        return G_TYPE_DBUS_PROXY;
}

static void on_manager(GObject *source, GAsyncResult *result, gpointer data) {
        g_autoptr(OutpostOnlineUsers) self = data;      /* held while loading */
        g_autoptr(GError) error = NULL;
        GDBusObjectManager *manager = g_dbus_object_manager_client_new_finish(result, &error);
        g_autolist(GDBusObject) objects = NULL;
        guint added = 0;

        if (!manager) {
                if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                        g_warning("Cannot follow who is online: %s", error->message);
                return;
        }
        self->manager = manager;
        g_signal_connect(manager, "object-added", G_CALLBACK(on_object_added), self);
        g_signal_connect(manager, "object-removed", G_CALLBACK(on_object_removed), self);
        /* The first load in one step: one items-changed, not one per user. */
        objects = g_dbus_object_manager_get_objects(manager);
        for (GList *l = objects; l; l = l->next)
                if (insert(self, l->data) >= 0)
                        added++;
        self->loaded = TRUE;
        if (added > 0)
                changed(self, 0, 0, added);
        g_object_notify_by_pspec(G_OBJECT(self), props[PROP_LOADED]);
}

OutpostOnlineUsers *_outpost_online_users_new(GDBusConnection *connection) {
        OutpostOnlineUsers *self = g_object_new(OUTPOST_TYPE_ONLINE_USERS, NULL);

        /* It follows the name's owner: a restarted service's users replace
         * the old ones. */
        g_dbus_object_manager_client_new(connection, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE, OUTPOST_BUS_NAME,
                                         OUTPOST_ROOT_PATH, proxy_type, NULL, NULL, self->cancellable, on_manager,
                                         g_object_ref(self));
        return self;
}

/**
 * outpost_online_users_lookup:
 * @self: the online users
 * @user_id: the id of a user
 *
 * Returns: (transfer full) (nullable): the item of @user_id, or %NULL when
 *   the user is not online
 */
OutpostOnlineUser *outpost_online_users_lookup(OutpostOnlineUsers *self, const char *user_id) {
        g_autofree char *segment = NULL, *path = NULL;
        GSequenceIter *iter;

        g_return_val_if_fail(OUTPOST_IS_ONLINE_USERS(self), NULL);
        g_return_val_if_fail(user_id, NULL);
        segment = g_strdelimit(g_strdup(user_id), "-", '_');
        path = g_strconcat(OUTPOST_ROOT_PATH "/presence/", segment, NULL);
        iter = g_hash_table_lookup(self->by_path, path);
        return iter ? g_object_ref(g_sequence_get(iter)) : NULL;
}

/**
 * outpost_online_users_is_loaded:
 * @self: the online users
 *
 * Returns: whether the first list has arrived (#OutpostOnlineUsers:loaded);
 *   until then the model is empty
 */
gboolean outpost_online_users_is_loaded(OutpostOnlineUsers *self) {
        g_return_val_if_fail(OUTPOST_IS_ONLINE_USERS(self), FALSE);
        return self->loaded;
}

static void outpost_online_users_init(OutpostOnlineUsers *self) {
        self->cancellable = g_cancellable_new();
        self->items = g_sequence_new(g_object_unref);
        self->by_path = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

static void outpost_online_users_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec) {
        OutpostOnlineUsers *self = OUTPOST_ONLINE_USERS(object);

        switch (prop_id) {
        case PROP_N_ITEMS:
                g_value_set_uint(value, g_sequence_get_length(self->items));
                break;
        case PROP_LOADED:
                g_value_set_boolean(value, self->loaded);
                break;
        default:
                G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
        }
}

static void outpost_online_users_dispose(GObject *object) {
        OutpostOnlineUsers *self = OUTPOST_ONLINE_USERS(object);

        g_cancellable_cancel(self->cancellable);
        if (self->manager)
                g_signal_handlers_disconnect_by_data(self->manager, self);
        g_clear_object(&self->manager);
        G_OBJECT_CLASS(outpost_online_users_parent_class)->dispose(object);
}

static void outpost_online_users_finalize(GObject *object) {
        OutpostOnlineUsers *self = OUTPOST_ONLINE_USERS(object);

        g_hash_table_unref(self->by_path);
        g_sequence_free(self->items);
        g_object_unref(self->cancellable);
        G_OBJECT_CLASS(outpost_online_users_parent_class)->finalize(object);
}

static void outpost_online_users_class_init(OutpostOnlineUsersClass *klass) {
        GObjectClass *object_class = G_OBJECT_CLASS(klass);

        object_class->get_property = outpost_online_users_get_property;
        object_class->dispose = outpost_online_users_dispose;
        object_class->finalize = outpost_online_users_finalize;

        /**
         * OutpostOnlineUsers:n-items:
         *
         * The number of users online in the list.
         */
        props[PROP_N_ITEMS] = g_param_spec_uint("n-items", NULL, NULL, 0, G_MAXUINT, 0,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
        /**
         * OutpostOnlineUsers:loaded:
         *
         * Whether the first list has arrived from the service.
         */
        props[PROP_LOADED] = g_param_spec_boolean("loaded", NULL, NULL, FALSE,
                                                  G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
        g_object_class_install_properties(object_class, N_PROPS, props);
}
