/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Presence manager through the real bus, with GDBus clients: holds and
 * what ends them (GoOffline, the holder leaving, ttl, the user being
 * disabled or deleted), and the coherence rules of DESIGN.md §4: each
 * online user an object announced with InterfacesAdded/InterfacesRemoved,
 * then one PropertiesChanged per change, then its events, all before the
 * reply, so that a GDBusProxy's and a GDBusObjectManagerClient's caches
 * already show the change when the reply arrives. */
#include "config.h"

#include <signal.h>
#include <string.h>

#include "harness.h"

#define UNKNOWN_ID        "00000000-0000-4000-8000-000000000000"

/* Calls */

static guint64 go_online(GDBusConnection *c, const char *id, guint32 ttl) {
        g_autoptr(GVariant) r = test_call_ok(c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                             g_variant_new("(su)", id, ttl), "(t)");
        guint64 generation;

        g_variant_get(r, "(t)", &generation);
        return generation;
}

static guint64 go_offline(GDBusConnection *c, const char *id) {
        g_autoptr(GVariant) r = test_call_ok(c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                                             g_variant_new("(s)", id), "(t)");
        guint64 generation;

        g_variant_get(r, "(t)", &generation);
        return generation;
}

static GVariant *get_property(GDBusConnection *c, const char *name) {
        return test_get_property(c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, name);
}

static guint64 get_generation(GDBusConnection *c) {
        g_autoptr(GVariant) v = get_property(c, "Generation");
        return g_variant_get_uint64(v);
}

static gboolean is_online(GDBusConnection *c, const char *id) {
        return test_is_online(c, id);
}

static guint online_count(GDBusConnection *c) {
        return test_online_count(c);
}

/* The user ids of the OnlineUser objects of a GetManagedObjects. */
static GHashTable *managed_online_users(GDBusConnection *c) {
        g_autoptr(GVariant) r = test_call_ok(c, OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager",
                                             "GetManagedObjects", NULL, "(a{oa{sa{sv}}})");
        g_autoptr(GVariant) objects = g_variant_get_child_value(r, 0);
        GHashTable *ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        GVariantIter iter;
        const char *path;
        GVariant *ifaces;

        g_variant_iter_init(&iter, objects);
        while (g_variant_iter_next(&iter, "{&o@a{sa{sv}}}", &path, &ifaces)) {
                g_autoptr(GVariant) props = g_variant_lookup_value(ifaces, IFACE_ONLINE_USER, G_VARIANT_TYPE_VARDICT);
                const char *id;

                if (props) {
                        g_autofree char *want = NULL;
                        gint64 since;

                        g_assert_true(g_variant_lookup(props, "UserId", "&s", &id));
                        g_assert_true(g_variant_lookup(props, "Since", "x", &since));
                        g_assert_cmpint(since, >, 1600000000LL * G_USEC_PER_SEC);
                        want = test_online_user_path(id);
                        g_assert_cmpstr(path, ==, want);
                        g_hash_table_add(ids, g_strdup(id));
                }
                g_variant_unref(ifaces);
        }
        return ids;
}

/* What the daemon signals on one connection, in arrival order */

typedef struct Watch {
        GDBusConnection *conn;
        guint props_id, events_id, objects_id;
        GPtrArray *changes;     /* a{sv}: the changed properties of each PropertiesChanged */
        GPtrArray *events;      /* (tsxa{sv}): each Event */
        /* Each InterfacesAdded/InterfacesRemoved of an online user, as
         * "N+ID" or "N-ID", N being the number of changes seen before it:
         * the objects of change N are announced before its
         * PropertiesChanged. */
        GPtrArray *objects;
        GHashTable *online;     /* user ids, as the object signals tell */
} Watch;

static void on_properties_changed(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                                  const char *signal, GVariant *params, gpointer data) {
        Watch *w = data;
        g_autoptr(GVariant) invalidated = g_variant_get_child_value(params, 2);

        /* The values travel with the signal: a client has nothing to fetch. */
        g_assert_cmpuint(g_variant_n_children(invalidated), ==, 0);
        g_ptr_array_add(w->changes, g_variant_get_child_value(params, 1));
}

static void on_event(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                     const char *signal, GVariant *params, gpointer data) {
        Watch *w = data;
        g_ptr_array_add(w->events, g_variant_ref(params));
}

/* The user id of an OnlineUser object path. */
static char *user_of_path(const char *path) {
        g_assert_true(g_str_has_prefix(path, OUTPOST_PRESENCE_PATH "/"));
        return g_strdelimit(g_strdup(path + strlen(OUTPOST_PRESENCE_PATH "/")), "_", '-');
}

static void on_object(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                      const char *signal, GVariant *params, gpointer data) {
        Watch *w = data;
        gboolean added = strcmp(signal, "InterfacesAdded") == 0;
        const char *object;
        g_autofree char *id = NULL;

        if (!added && strcmp(signal, "InterfacesRemoved") != 0)
                return;
        g_variant_get_child(params, 0, "&o", &object);
        id = user_of_path(object);
        if (added) {
                g_autoptr(GVariant) ifaces = g_variant_get_child_value(params, 1);
                g_autoptr(GVariant) props = g_variant_lookup_value(ifaces, IFACE_ONLINE_USER, G_VARIANT_TYPE_VARDICT);
                const char *user;

                /* The properties travel with the signal. */
                g_assert_nonnull(props);
                g_assert_true(g_variant_lookup(props, "UserId", "&s", &user));
                g_assert_cmpstr(user, ==, id);
                g_assert_true(g_variant_lookup(props, "Since", "x", NULL));
                g_hash_table_add(w->online, g_strdup(id));
        } else
                g_hash_table_remove(w->online, id);
        g_ptr_array_add(w->objects, g_strdup_printf("%u%c%s", w->changes->len, added ? '+' : '-', id));
}

static Watch *watch_new(GDBusConnection *c) {
        Watch *w = g_new0(Watch, 1);

        w->conn = g_object_ref(c);
        w->changes = g_ptr_array_new_with_free_func((GDestroyNotify) g_variant_unref);
        w->events = g_ptr_array_new_with_free_func((GDestroyNotify) g_variant_unref);
        w->objects = g_ptr_array_new_with_free_func(g_free);
        w->online = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        w->props_id = g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, IFACE_PROPERTIES, "PropertiesChanged",
                                                         OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, G_DBUS_SIGNAL_FLAGS_NONE,
                                                         on_properties_changed, w, NULL);
        w->events_id = g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, IFACE_EVENTS, "Event", OUTPOST_EVENTS_PATH,
                                                          NULL, G_DBUS_SIGNAL_FLAGS_NONE, on_event, w, NULL);
        w->objects_id = g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, "org.freedesktop.DBus.ObjectManager",
                                                           NULL, OUTPOST_ROOT, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
                                                           on_object, w, NULL);
        return w;
}

static void watch_free(Watch *w) {
        if (!w)
                return;
        g_dbus_connection_signal_unsubscribe(w->conn, w->props_id);
        g_dbus_connection_signal_unsubscribe(w->conn, w->events_id);
        g_dbus_connection_signal_unsubscribe(w->conn, w->objects_id);
        /* Callbacks already queued find their subscription gone. */
        while (g_main_context_iteration(NULL, FALSE))
                ;
        g_ptr_array_unref(w->changes);
        g_ptr_array_unref(w->events);
        g_ptr_array_unref(w->objects);
        g_hash_table_unref(w->online);
        g_object_unref(w->conn);
        g_free(w);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Watch, watch_free)

/* After this, W holds every signal the daemon sent before now: its reply to
 * a round trip comes after them, and their callbacks were queued first. */
static void watch_sync(Watch *w) {
        g_autoptr(GVariant) v = get_property(w->conn, "Generation");

        while (g_main_context_iteration(NULL, FALSE))
                ;
}

/* Whether W saw the object of ID added (ONLINE) or removed before change N. */
static gboolean watch_announced(Watch *w, guint n, const char *id, gboolean online) {
        g_autofree char *object = g_strdup_printf("%u%c%s", n, online ? '+' : '-', id);

        return g_ptr_array_find_with_equal_func(w->objects, object, g_str_equal, NULL);
}

/* Check that change N of W is one whole commit: Generation and OnlineCount
 * together, nothing else, and that the object of ID was announced before
 * it as ONLINE says. */
static void assert_change(Watch *w, guint n, guint64 generation, const char *id, gboolean online) {
        GVariant *change = w->changes->pdata[n];
        guint64 g;
        guint32 count;

        g_assert_cmpuint(g_variant_n_children(change), ==, 2);
        g_assert_true(g_variant_lookup(change, "Generation", "t", &g));
        g_assert_true(g_variant_lookup(change, "OnlineCount", "u", &count));
        g_assert_cmpuint(g, ==, generation);
        if (!watch_announced(w, n, id, online))
                g_error("change %u (generation %" G_GUINT64_FORMAT ") did not announce %s going %s", n, generation,
                        id, online ? "online" : "offline");
}

/* How many users change N of W left online. */
static guint change_count(Watch *w, guint n) {
        guint32 count;

        g_assert_true(g_variant_lookup(w->changes->pdata[n], "OnlineCount", "u", &count));
        return count;
}

/* An asynchronous call awaited in the main loop; notes how much its watch
 * had seen when the reply was handled. */
typedef struct Call {
        Watch *watch;
        GVariant *reply;
        GError *error;
        guint changes_at_reply, events_at_reply;
        gboolean done;
} Call;

static void call_clear(Call *call) {
        g_clear_pointer(&call->reply, g_variant_unref);
        g_clear_error(&call->error);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Call, call_clear)

static void on_call_reply(GObject *source, GAsyncResult *res, gpointer data) {
        Call *call = data;

        call->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &call->error);
        if (call->watch) {
                call->changes_at_reply = call->watch->changes->len;
                call->events_at_reply = call->watch->events->len;
        }
        call->done = TRUE;
}

static void call_and_wait(Call *call, GDBusConnection *c, const char *path, const char *iface, const char *method,
                          GVariant *params, const char *reply_type) {
        g_dbus_connection_call(c, OUTPOST_NAME, path, iface, method, params, G_VARIANT_TYPE(reply_type),
                               G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_call_reply, call);
        test_wait_until(call->done, 30000);
        g_assert_no_error(call->error);
}

static guint64 call_generation(Call *call) {
        guint64 generation;

        g_variant_get(call->reply, "(t)", &generation);
        return generation;
}

/* 1. Coherence: a proxy's and an object manager's caches are up to date
 * when the reply arrives */

#define CYCLES_PER_CLIENT 250

typedef struct Cycler {
        GDBusProxy *proxy;
        GDBusObjectManager *objects;
        char *user;
        guint cycles_left;
        gboolean online;        /* what the call in flight asks for */
        guint64 last_generation;
        guint *round_trips, *stale;
} Cycler;

static GDBusObjectManager *object_manager_new(GDBusConnection *c) {
        return test_object_manager_new(c);
}

/* Whether M shows USER online (with the right UserId) or not. */
static gboolean objects_show(GDBusObjectManager *m, const char *user, gboolean online) {
        return test_objects_show_online(m, user) == online;
}

static gboolean cache_shows(Cycler *cy, gboolean online, guint64 generation) {
        g_autoptr(GVariant) gen = g_dbus_proxy_get_cached_property(cy->proxy, "Generation");

        return gen && g_variant_get_uint64(gen) == generation && objects_show(cy->objects, cy->user, online);
}

static void cycler_next(Cycler *cy);

static void on_cycle_reply(GObject *source, GAsyncResult *res, gpointer data) {
        Cycler *cy = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_proxy_call_finish(G_DBUS_PROXY(source), res, &error);
        guint64 generation;

        g_assert_no_error(error);
        g_variant_get(reply, "(t)", &generation);
        /* Each client has its own user, so every call changes the model. */
        g_assert_cmpuint(generation, >, cy->last_generation);
        cy->last_generation = generation;
        if (!cache_shows(cy, cy->online, generation) && (*cy->stale)++ < 5)
                g_test_message("stale cache for %s after %s returned generation %" G_GUINT64_FORMAT,
                               cy->user, cy->online ? "GoOnline" : "GoOffline", generation);
        (*cy->round_trips)++;
        if (!cy->online)
                cy->cycles_left--;
        cy->online = !cy->online;
        cycler_next(cy);
}

static void cycler_next(Cycler *cy) {
        if (cy->cycles_left == 0)
                return;
        if (cy->online)
                g_dbus_proxy_call(cy->proxy, "GoOnline", g_variant_new("(su)", cy->user, 0),
                                  G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_cycle_reply, cy);
        else
                g_dbus_proxy_call(cy->proxy, "GoOffline", g_variant_new("(s)", cy->user),
                                  G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_cycle_reply, cy);
}

static GDBusProxy *presence_proxy(GDBusConnection *c) {
        g_autoptr(GError) error = NULL;
        GDBusProxy *proxy;

        /* Default flags: the proxy loads and caches the properties and
         * follows PropertiesChanged, as an application's would. */
        proxy = g_dbus_proxy_new_sync(c, G_DBUS_PROXY_FLAGS_NONE, NULL, OUTPOST_NAME, OUTPOST_PRESENCE_PATH,
                                      IFACE_PRESENCE, NULL, &error);
        g_assert_no_error(error);
        return proxy;
}

static void test_coherence(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) c1 = NULL, c2 = NULL;
        g_autoptr(GDBusProxy) p1 = NULL, p2 = NULL;
        g_autoptr(GDBusObjectManager) m1 = NULL, m2 = NULL;
        g_autofree char *ann = NULL, *bob = NULL;
        guint round_trips = 0, stale = 0;

        test_bus_start_daemon(tb, NULL);
        ann = test_create_user(tb->conn, "ann", NULL);
        bob = test_create_user(tb->conn, "bob", NULL);
        c1 = test_bus_connect(tb);
        c2 = test_bus_connect(tb);
        p1 = presence_proxy(c1);
        p2 = presence_proxy(c2);
        m1 = object_manager_new(c1);
        m2 = object_manager_new(c2);

        /* Two clients in flight at once: each sees the other's changes
         * too, and its own before its reply. */
        Cycler a = { .proxy = p1, .objects = m1, .user = ann, .cycles_left = CYCLES_PER_CLIENT, .online = TRUE,
                     .round_trips = &round_trips, .stale = &stale };
        Cycler b = { .proxy = p2, .objects = m2, .user = bob, .cycles_left = CYCLES_PER_CLIENT, .online = TRUE,
                     .round_trips = &round_trips, .stale = &stale };
        cycler_next(&a);
        cycler_next(&b);
        test_wait_until(a.cycles_left == 0 && b.cycles_left == 0, 30000);

        g_assert_cmpuint(round_trips, ==, 4 * CYCLES_PER_CLIENT);
        g_assert_cmpuint(stale, ==, 0);
        g_assert_cmpuint(online_count(tb->conn), ==, 0);
        g_dbus_connection_close_sync(c1, NULL, NULL);
        g_dbus_connection_close_sync(c2, NULL, NULL);
}

/* 2. One change, one signal; signal before reply */

static void test_one_signal_per_change(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(Watch) w = NULL;
        g_autofree char *id = NULL;
        g_auto(Call) online = { 0 }, renew = { 0 }, renew_ttl = { 0 }, offline = { 0 };
        guint64 g0, g1;

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        w = watch_new(tb->conn);
        g0 = get_generation(tb->conn);
        watch_sync(w);
        g_assert_cmpuint(w->changes->len, ==, 0);

        online.watch = w;
        call_and_wait(&online, tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                      g_variant_new("(su)", id, 0), "(t)");
        g1 = call_generation(&online);
        g_assert_cmpuint(g1, ==, g0 + 1);
        /* The signal was handled before the reply... */
        g_assert_cmpuint(online.changes_at_reply, ==, 1);
        /* ...and no other followed. */
        watch_sync(w);
        g_assert_cmpuint(w->changes->len, ==, 1);
        assert_change(w, 0, g1, id, TRUE);

        /* A renewal changes nothing: no signal, the same generation, with
         * or without a ttl. */
        renew.watch = w;
        call_and_wait(&renew, tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                      g_variant_new("(su)", id, 0), "(t)");
        g_assert_cmpuint(call_generation(&renew), ==, g1);
        renew_ttl.watch = w;
        call_and_wait(&renew_ttl, tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                      g_variant_new("(su)", id, 60), "(t)");
        g_assert_cmpuint(call_generation(&renew_ttl), ==, g1);
        watch_sync(w);
        g_assert_cmpuint(w->changes->len, ==, 1);

        offline.watch = w;
        call_and_wait(&offline, tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                      g_variant_new("(s)", id), "(t)");
        g_assert_cmpuint(call_generation(&offline), ==, g1 + 1);
        g_assert_cmpuint(offline.changes_at_reply, ==, 2);
        watch_sync(w);
        g_assert_cmpuint(w->changes->len, ==, 2);
        assert_change(w, 1, g1 + 1, id, FALSE);
}

/* 2b. Signal before reply, and one change in the order of DESIGN.md §3: the object's
 * InterfacesAdded/InterfacesRemoved, the manager's PropertiesChanged, the
 * Event, then the reply; so at reply time an object manager, a proxy and an
 * event subscriber on the caller's connection all show the change. */

typedef struct OrderCall {
        GDBusObjectManager *objects;
        GDBusProxy *proxy;
        EventWatch *events;
        const char *user;
        gboolean online;
        guint64 generation;
        gboolean done;
} OrderCall;

static guint64 event_generation(GVariant *event, const char *user, gboolean online) {
        g_autoptr(GVariant) data = g_variant_get_child_value(event, 3);
        const char *topic, *u;
        guint64 generation;
        gboolean b;

        g_variant_get_child(event, 1, "&s", &topic);
        g_assert_cmpstr(topic, ==, "presence");
        g_assert_true(g_variant_lookup(data, "user", "&s", &u));
        g_assert_cmpstr(u, ==, user);
        g_assert_true(g_variant_lookup(data, "online", "b", &b));
        g_assert_cmpint(b, ==, online);
        g_assert_true(g_variant_lookup(data, "generation", "t", &generation));
        return generation;
}

static void on_order_reply(GObject *source, GAsyncResult *res, gpointer data) {
        OrderCall *oc = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GDBusMessage) reply = g_dbus_connection_send_message_with_reply_finish(G_DBUS_CONNECTION(source),
                                                                                        res, &error);
        g_autoptr(GVariant) gen = NULL, count = NULL;

        g_assert_no_error(error);
        g_assert_cmpint(g_dbus_message_get_message_type(reply), ==, G_DBUS_MESSAGE_TYPE_METHOD_RETURN);
        g_variant_get(g_dbus_message_get_body(reply), "(t)", &oc->generation);

        /* Everything the change revealed was handled before this reply. */
        g_assert_true(objects_show(oc->objects, oc->user, oc->online));
        gen = g_dbus_proxy_get_cached_property(oc->proxy, "Generation");
        count = g_dbus_proxy_get_cached_property(oc->proxy, "OnlineCount");
        g_assert_cmpuint(g_variant_get_uint64(gen), ==, oc->generation);
        g_assert_cmpuint(g_variant_get_uint32(count), ==, oc->online ? 1 : 0);
        g_assert_cmpuint(oc->events->events->len, >, 0);
        g_assert_cmpuint(event_generation(oc->events->events->pdata[oc->events->events->len - 1], oc->user,
                                          oc->online), ==, oc->generation);
        oc->done = TRUE;
}

static int find_arrival(Arrivals *a, const char *member, const char *path, guint64 generation) {
        int i = arrivals_find_presence(a, 0, member, path, generation);

        if (i < 0)
                g_error("no %s for %s (generation %" G_GUINT64_FORMAT ") arrived", member, path, generation);
        return i;
}

static void order_call(GDBusConnection *c, Arrivals *a, OrderCall *oc, const char *method, GVariant *params) {
        g_autoptr(GDBusMessage) call = g_dbus_message_new_method_call(OUTPOST_NAME, OUTPOST_PRESENCE_PATH,
                                                                      IFACE_PRESENCE, method);
        g_autofree char *path = test_online_user_path(oc->user);
        guint32 serial = 0;
        int object, change, event, reply;

        oc->done = FALSE;
        g_dbus_message_set_body(call, params);
        g_dbus_connection_send_message_with_reply(c, call, G_DBUS_SEND_MESSAGE_FLAGS_NONE, 30000, &serial, NULL,
                                                  on_order_reply, oc);
        test_wait_until(oc->done, 30000);

        object = find_arrival(a, oc->online ? "InterfacesAdded" : "InterfacesRemoved", path, 0);
        change = find_arrival(a, "PropertiesChanged", OUTPOST_PRESENCE_PATH, oc->generation);
        event = find_arrival(a, "Event", OUTPOST_EVENTS_PATH, oc->generation);
        reply = arrivals_find_reply(a, serial);
        g_test_message("%s: object %d, PropertiesChanged %d, Event %d, reply %d", method, object, change, event, reply);
        g_assert_cmpint(object, <, change);
        g_assert_cmpint(change, <, event);
        g_assert_cmpint(event, <, reply);
}

static void test_change_order(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) c = NULL;
        g_autoptr(GDBusObjectManager) objects = NULL;
        g_autoptr(GDBusProxy) proxy = NULL;
        g_autoptr(EventWatch) events = NULL;
        g_autofree char *id = NULL;
        Arrivals *a;
        OrderCall oc = { 0 };

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        c = test_bus_connect(tb);
        objects = object_manager_new(c);
        proxy = presence_proxy(c);
        events = event_watch_new(c);
        a = arrivals_new(c);
        oc = (OrderCall) { .objects = objects, .proxy = proxy, .events = events, .user = id };

        oc.online = TRUE;
        order_call(c, a, &oc, "GoOnline", g_variant_new("(su)", id, 0));
        oc.online = FALSE;
        order_call(c, a, &oc, "GoOffline", g_variant_new("(s)", id));

        g_clear_pointer(&events, event_watch_free);
        g_clear_object(&objects);
        g_clear_object(&proxy);
        /* Once closed, the worker delivers nothing more to the filter. */
        g_dbus_connection_close_sync(c, NULL, NULL);
        arrivals_free(a);
}

/* 3. A holder that leaves the bus releases its holds */

static void test_holder_leaves(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) c = NULL;
        g_autoptr(Watch) w = NULL;
        g_autoptr(GHashTable) ids_online = NULL;
        g_autofree char *ann = NULL, *bob = NULL;
        guint64 g;

        test_bus_start_daemon(tb, NULL);
        ann = test_create_user(tb->conn, "ann", NULL);
        bob = test_create_user(tb->conn, "bob", NULL);
        c = test_bus_connect(tb);
        go_online(c, ann, 0);
        g = go_online(c, bob, 300);
        g_assert_cmpuint(online_count(tb->conn), ==, 2);
        g_assert_true(is_online(tb->conn, ann));
        g_assert_true(is_online(tb->conn, bob));
        ids_online = managed_online_users(tb->conn);
        g_assert_cmpuint(g_hash_table_size(ids_online), ==, 2);
        g_assert_true(g_hash_table_contains(ids_online, ann));
        g_assert_true(g_hash_table_contains(ids_online, bob));
        w = watch_new(tb->conn);
        watch_sync(w);

        /* Exits without GoOffline. */
        g_dbus_connection_close_sync(c, NULL, NULL);
        test_wait_until(online_count(tb->conn) == 0, 2000);

        watch_sync(w);
        if (test_bridged()) {
                /* Behind a bridge the link holds both users upstream, and
                 * releasing them is one GoOffline each: two changes, each
                 * one signal, ending with both users offline. */
                g_assert_cmpuint(w->changes->len, ==, 2);
                g_assert_cmpuint(change_count(w, 0), ==, 1);
                g_assert_cmpuint(change_count(w, 1), ==, 0);
                g_assert_true(watch_announced(w, 0, ann, FALSE) || watch_announced(w, 1, ann, FALSE));
                g_assert_true(watch_announced(w, 0, bob, FALSE) || watch_announced(w, 1, bob, FALSE));
                g_assert_cmpuint(get_generation(tb->conn), ==, g + 2);
                return;
        }
        /* Both holds end in one change. */
        g_assert_cmpuint(w->changes->len, ==, 1);
        assert_change(w, 0, g + 1, ann, FALSE);
        assert_change(w, 0, g + 1, bob, FALSE);
        g_assert_cmpuint(change_count(w, 0), ==, 0);
        g_assert_cmpuint(get_generation(tb->conn), ==, g + 1);
}

/* A client that leaves while its GoOnline is on its way: whether the
 * daemon sees the call before or after the departure, no hold outlives the
 * client. */
static void test_holder_leaves_at_once(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *id = NULL;

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        for (int i = 0; i < 20; i++) {
                g_autoptr(GDBusConnection) c = test_bus_connect(tb);
                g_autoptr(GDBusMessage) m = g_dbus_message_new_method_call(OUTPOST_NAME, OUTPOST_PRESENCE_PATH,
                                                                           IFACE_PRESENCE, "GoOnline");
                g_autoptr(GError) error = NULL;

                g_dbus_message_set_body(m, g_variant_new("(su)", id, i % 2 ? 0 : 300));
                g_dbus_message_set_flags(m, G_DBUS_MESSAGE_FLAGS_NO_REPLY_EXPECTED);
                g_dbus_connection_send_message(c, m, G_DBUS_SEND_MESSAGE_FLAGS_NONE, NULL, &error);
                g_assert_no_error(error);
                g_dbus_connection_close_sync(c, NULL, NULL);
        }
        test_wait_until(online_count(tb->conn) == 0, 2000);
        /* And it stays so: nothing was merely late. */
        g_usleep(200 * 1000);
        g_assert_cmpuint(online_count(tb->conn), ==, 0);
}

/* 4. A hold with a ttl lapses without renewal */

static gboolean watch_shows_online(Watch *w, const char *id) {
        return g_hash_table_contains(w->online, id);
}

static void test_ttl(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(Watch) w = NULL;
        g_autofree char *id = NULL;
        guint64 g;
        gint64 renewed;

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        w = watch_new(tb->conn);

        g = go_online(tb->conn, id, 1);
        renewed = g_get_monotonic_time();
        watch_sync(w);
        g_assert_true(watch_shows_online(w, id));
        test_wait_until(!watch_shows_online(w, id), 5000);
        g_assert_cmpint(g_get_monotonic_time() - renewed, >=, 900 * 1000);
        g_assert_cmpuint(get_generation(tb->conn), ==, g + 1);
        g_assert_false(is_online(tb->conn, id));

        /* Renewed well within its ttl, a hold outlives it. */
        g = go_online(tb->conn, id, 1);
        for (int i = 0; i < 6; i++) {
                g_usleep(300 * 1000);
                g_assert_cmpuint(go_online(tb->conn, id, 1), ==, g);
                renewed = g_get_monotonic_time();
        }
        g_assert_true(is_online(tb->conn, id));
        test_wait_until(!is_online(tb->conn, id), 5000);
        g_assert_cmpint(g_get_monotonic_time() - renewed, >=, 900 * 1000);
        g_assert_cmpuint(get_generation(tb->conn), ==, g + 1);

        /* A ttl-0 renewal makes the hold permanent. */
        g = go_online(tb->conn, id, 1);
        g_assert_cmpuint(go_online(tb->conn, id, 0), ==, g);
        g_usleep(1500 * 1000);
        g_assert_true(is_online(tb->conn, id));
        g_assert_cmpuint(get_generation(tb->conn), ==, g);
}

/* 4b. Many holds with ttls lapse each at its own time, whatever else ends
 * the others in between */

static void test_ttl_many(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) other = NULL;
        g_autofree char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
        gint64 start;

        test_bus_start_daemon(tb, NULL);
        a = test_create_user(tb->conn, "ann", NULL);
        b = test_create_user(tb->conn, "bob", NULL);
        c = test_create_user(tb->conn, "cid", NULL);
        d = test_create_user(tb->conn, "dan", NULL);
        e = test_create_user(tb->conn, "eve", NULL);
        other = test_bus_connect(tb);

        start = g_get_monotonic_time();
        go_online(tb->conn, b, 3);
        go_online(tb->conn, a, 1);
        go_online(tb->conn, c, 2);
        go_online(tb->conn, e, 0);
        go_online(other, d, 2);
        /* Ended before their time: by GoOffline, and by the holder
         * leaving. */
        go_offline(tb->conn, c);
        g_dbus_connection_close_sync(other, NULL, NULL);
        test_wait_until(!is_online(tb->conn, d), 5000);
        g_assert_false(is_online(tb->conn, c));

        test_wait_until(!is_online(tb->conn, a), 5000);
        g_assert_cmpint(g_get_monotonic_time() - start, >=, 900 * 1000);
        g_assert_true(is_online(tb->conn, b));
        test_wait_until(!is_online(tb->conn, b), 6000);
        g_assert_cmpint(g_get_monotonic_time() - start, >=, 2900 * 1000);
        g_assert_true(is_online(tb->conn, e));

        /* A ttl hold renewed to a later time lapses at the later one. */
        start = g_get_monotonic_time();
        go_online(tb->conn, a, 1);
        go_online(tb->conn, b, 1);
        go_online(tb->conn, a, 3);
        test_wait_until(!is_online(tb->conn, b), 5000);
        g_assert_true(is_online(tb->conn, a));
        test_wait_until(!is_online(tb->conn, a), 6000);
        g_assert_cmpint(g_get_monotonic_time() - start, >=, 2900 * 1000);
}

/* 5. Two holders of one user */

static void test_two_holders(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) a = NULL, b = NULL;
        g_autoptr(Watch) w = NULL;
        g_autofree char *id = NULL;
        guint64 g0;

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        a = test_bus_connect(tb);
        b = test_bus_connect(tb);
        w = watch_new(tb->conn);
        g0 = get_generation(tb->conn);

        g_assert_cmpuint(go_online(a, id, 0), ==, g0 + 1);
        /* Already online: B's hold changes nothing anyone can see. */
        g_assert_cmpuint(go_online(b, id, 0), ==, g0 + 1);
        g_assert_cmpuint(go_offline(a, id), ==, g0 + 1);
        g_assert_true(is_online(tb->conn, id));
        /* A holds nothing any more. */
        g_assert_cmpuint(go_offline(a, id), ==, g0 + 1);
        g_assert_true(is_online(tb->conn, id));

        g_dbus_connection_close_sync(b, NULL, NULL);
        test_wait_until(!is_online(tb->conn, id), 2000);
        g_assert_cmpuint(get_generation(tb->conn), ==, g0 + 2);

        watch_sync(w);
        g_assert_cmpuint(w->changes->len, ==, 2);
        assert_change(w, 0, g0 + 1, id, TRUE);
        assert_change(w, 1, g0 + 2, id, FALSE);
        g_dbus_connection_close_sync(a, NULL, NULL);
}

/* 6. Errors */

static void test_errors(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) other = NULL;
        g_autoptr(Watch) w = NULL;
        g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL, e5 = NULL;
        g_autoptr(GVariant) r1 = NULL, r2 = NULL, r3 = NULL, r4 = NULL, r5 = NULL, saved = NULL;
        g_autofree char *ann = NULL, *bob = NULL, *bob_tag = NULL;
        guint64 g;

        test_bus_start_daemon(tb, NULL);
        ann = test_create_user(tb->conn, "ann", NULL);
        bob = test_create_user(tb->conn, "bob", &bob_tag);
        w = watch_new(tb->conn);

        r1 = test_call(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                       g_variant_new("(su)", "not-a-uuid", 0), "(t)", &e1);
        test_assert_dbus_error(e1, "InvalidArgument", "'not-a-uuid'");
        r2 = test_call(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                       g_variant_new("(su)", UNKNOWN_ID, 0), "(t)", &e2);
        test_assert_dbus_error(e2, "NotFound", UNKNOWN_ID);

        saved = test_call_ok(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                             g_variant_new_parsed("(%s, %s, {'enabled': <false>})", bob, bob_tag), "(s)");
        r3 = test_call(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                       g_variant_new("(su)", bob, 0), "(t)", &e3);
        test_assert_dbus_error(e3, "InvalidArgument", "disabled");
        r4 = test_call(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                       g_variant_new("(s)", "not-a-uuid"), "(t)", &e4);
        test_assert_dbus_error(e4, "InvalidArgument", "'not-a-uuid'");
        r5 = test_call(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                       g_variant_new("(s)", UNKNOWN_ID), "(t)", &e5);
        test_assert_dbus_error(e5, "NotFound", UNKNOWN_ID);

        /* Dropping a hold one does not have is no change: not ours... */
        g = get_generation(tb->conn);
        g_assert_cmpuint(go_offline(tb->conn, ann), ==, g);
        /* ...nor someone else's. */
        other = test_bus_connect(tb);
        g = go_online(other, ann, 0);
        g_assert_cmpuint(go_offline(tb->conn, ann), ==, g);
        g_assert_true(is_online(tb->conn, ann));

        /* The only change was OTHER's GoOnline. */
        watch_sync(w);
        g_assert_cmpuint(w->changes->len, ==, 1);
        assert_change(w, 0, g, ann, TRUE);
        g_assert_cmpuint(online_count(tb->conn), ==, 1);
        g_dbus_connection_close_sync(other, NULL, NULL);
}

/* 7. A user disabled or deleted while online goes offline at once */

static void test_user_gone(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) holder = NULL;
        g_autoptr(Watch) w = NULL;
        g_autofree char *ann = NULL, *ann_tag = NULL, *ann_tag2 = NULL, *bob = NULL, *bob_tag = NULL;
        g_auto(Call) rename = { 0 }, disable = { 0 }, del = { 0 };
        guint64 g;

        test_bus_start_daemon(tb, NULL);
        ann = test_create_user(tb->conn, "ann", &ann_tag);
        bob = test_create_user(tb->conn, "bob", &bob_tag);
        holder = test_bus_connect(tb);
        go_online(holder, ann, 0);
        g = go_online(holder, bob, 0);
        w = watch_new(tb->conn);
        watch_sync(w);

        /* A save that leaves the user enabled changes no presence. */
        rename.watch = w;
        call_and_wait(&rename, tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                      g_variant_new_parsed("(%s, %s, {'display-name': <'Ann'>})", ann, ann_tag), "(s)");
        g_variant_get(rename.reply, "(s)", &ann_tag2);
        g_assert_cmpuint(rename.changes_at_reply, ==, 0);
        g_assert_true(is_online(tb->conn, ann));

        /* By the time the caller hears back, the change has been shown. */
        disable.watch = w;
        call_and_wait(&disable, tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                      g_variant_new_parsed("(%s, %s, {'enabled': <false>})", ann, ann_tag2), "(s)");
        g_assert_cmpuint(disable.changes_at_reply, ==, 1);
        assert_change(w, 0, g + 1, ann, FALSE);
        g_assert_cmpuint(change_count(w, 0), ==, 1);
        g_assert_false(watch_announced(w, 0, bob, FALSE));

        del.watch = w;
        call_and_wait(&del, tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser",
                      g_variant_new("(ss)", bob, bob_tag), "()");
        g_assert_cmpuint(del.changes_at_reply, ==, 2);
        assert_change(w, 1, g + 2, bob, FALSE);

        watch_sync(w);
        g_assert_cmpuint(w->changes->len, ==, 2);
        g_assert_cmpuint(online_count(tb->conn), ==, 0);
        g_assert_cmpuint(get_generation(tb->conn), ==, g + 2);
        g_dbus_connection_close_sync(holder, NULL, NULL);
}

/* 8. Presence events */

static void assert_presence_event(GVariant *event, const char *id, gboolean online, guint64 generation) {
        g_autoptr(GVariant) data = NULL;
        gint64 time;

        g_assert_cmpuint(event_generation(event, id, online), ==, generation);
        g_variant_get_child(event, 2, "x", &time);
        data = g_variant_get_child_value(event, 3);
        g_assert_cmpuint(g_variant_n_children(data), ==, 3);
        g_assert_cmpint(time, >, 1600000000LL * G_USEC_PER_SEC);
}

static guint64 event_seq(GVariant *event) {
        guint64 seq;

        g_variant_get_child(event, 0, "t", &seq);
        return seq;
}

static void test_events(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(Watch) w = NULL;
        g_autoptr(GVariant) r = NULL, events = NULL;
        g_autofree char *id = NULL;
        g_auto(Call) online = { 0 }, offline = { 0 };
        guint64 next_after;
        gboolean more;

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        w = watch_new(tb->conn);
        watch_sync(w);
        /* The creation's event on 'users' went out before the watch began. */
        g_assert_cmpuint(w->events->len, ==, 0);

        online.watch = w;
        call_and_wait(&online, tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                      g_variant_new("(su)", id, 0), "(t)");
        g_assert_cmpuint(online.events_at_reply, ==, 1);
        assert_presence_event(w->events->pdata[0], id, TRUE, call_generation(&online));

        offline.watch = w;
        call_and_wait(&offline, tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                      g_variant_new("(s)", id), "(t)");
        g_assert_cmpuint(offline.events_at_reply, ==, 2);
        assert_presence_event(w->events->pdata[1], id, FALSE, call_generation(&offline));
        g_assert_cmpuint(event_seq(w->events->pdata[0]), <, event_seq(w->events->pdata[1]));

        /* The history holds the same events, in order, and nothing else on
         * that topic (the creation is on 'users'). */
        r = test_call_ok(tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                         g_variant_new_parsed("('', uint64 0, ['presence'], uint32 100)"), "(a(tsxa{sv})tb)");
        g_variant_get(r, "(@a(tsxa{sv})tb)", &events, &next_after, &more);
        g_assert_cmpuint(g_variant_n_children(events), ==, 2);
        for (guint i = 0; i < 2; i++) {
                g_autoptr(GVariant) e = g_variant_get_child_value(events, i);
                g_assert_true(g_variant_equal(e, w->events->pdata[i]));
        }
        g_assert_cmpuint(next_after, >=, event_seq(w->events->pdata[1]));
        g_assert_false(more);
}

/* 9. Presence is volatile; Generation never goes back */

static void test_restart(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GDBusConnection) c = NULL;
        g_autofree char *ann = NULL, *bob = NULL;
        guint64 before, after;

        test_bus_start_daemon(tb, NULL);
        ann = test_create_user(tb->conn, "ann", NULL);
        bob = test_create_user(tb->conn, "bob", NULL);
        c = test_bus_connect(tb);
        go_online(c, ann, 0);
        go_online(c, bob, 600);
        /* Some churn, so that Generation is well past its start. */
        for (int i = 0; i < 5; i++) {
                go_offline(c, ann);
                go_online(c, ann, 0);
        }
        before = get_generation(tb->conn);
        g_assert_cmpuint(online_count(tb->conn), ==, 2);

        test_bus_stop_daemon(tb, SIGTERM);
        test_bus_start_daemon(tb, NULL);

        after = get_generation(tb->conn);
        g_assert_cmpuint(after, >=, before);
        if (test_bridged()) {
                /* Behind a bridge a daemon restart is a link outage: the
                 * bridge re-asserts the holds of clients still on its bus
                 * (DESIGN.md §5), so C's users are back. */
                g_assert_cmpuint(online_count(tb->conn), ==, 2);
                g_dbus_connection_close_sync(c, NULL, NULL);
                return;
        }
        /* C is still on the bus, but its holds were in the old daemon. */
        g_assert_cmpuint(online_count(tb->conn), ==, 0);

        /* Re-asserting a hold is a change past both. */
        g_assert_cmpuint(go_online(c, ann, 0), >, MAX(before, after));
        g_assert_true(is_online(tb->conn, ann));
        g_dbus_connection_close_sync(c, NULL, NULL);
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        g_test_add_func("/presence/coherence", test_coherence);
        g_test_add_func("/presence/one-signal-per-change", test_one_signal_per_change);
        g_test_add_func("/presence/change-order", test_change_order);
        g_test_add_func("/presence/holder-leaves", test_holder_leaves);
        g_test_add_func("/presence/holder-leaves-at-once", test_holder_leaves_at_once);
        g_test_add_func("/presence/ttl", test_ttl);
        g_test_add_func("/presence/ttl-many", test_ttl_many);
        g_test_add_func("/presence/two-holders", test_two_holders);
        g_test_add_func("/presence/errors", test_errors);
        g_test_add_func("/presence/user-gone", test_user_gone);
        g_test_add_func("/presence/events", test_events);
        g_test_add_func("/presence/restart", test_restart);
        return g_test_run();
}
