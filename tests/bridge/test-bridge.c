/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpost-bridge end to end: central, site and machine buses on one
 * machine, linked over TLS on loopback. A program on the machine bus uses
 * org.outpost.Outpost1 as it would at central, and sees outages honestly
 * (DESIGN.md §4 and §5). */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "bridge-harness.h"

#define UNKNOWN_ID "00000000-0000-4000-8000-000000000000"

static guint64 get_u64(GDBusConnection *c, const char *path, const char *iface, const char *prop) {
        g_autoptr(GVariant) r = NULL, v = NULL;

        r = test_call_ok(c, path, "org.freedesktop.DBus.Properties", "Get", g_variant_new("(ss)", iface, prop), "(v)");
        g_variant_get(r, "(v)", &v);
        return g_variant_get_uint64(v);
}

static guint32 bridge_u32(GDBusConnection *c, const char *prop) {
        g_autoptr(GVariant) r = NULL, v = NULL;

        r = test_call_ok(c, OUTPOST_BRIDGE_PATH, "org.freedesktop.DBus.Properties", "Get",
                         g_variant_new("(ss)", IFACE_BRIDGE, prop), "(v)");
        g_variant_get(r, "(v)", &v);
        return g_variant_get_uint32(v);
}

static gboolean presence_has(GDBusConnection *c, const char *user) {
        return test_is_online(c, user);
}

/* The Users calls of the daemon's tests work unchanged two hops away. */
static void test_users_through_two_hops(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        GDBusConnection *m = d->machine->conn;
        g_autofree char *tag = NULL, *new_tag = NULL;
        g_autofree char *id = test_create_user(m, "ann", &tag);
        g_autoptr(GVariant) at_central = NULL, at_machine = NULL, r = NULL;
        g_autoptr(GError) error = NULL;

        at_central = test_call_ok(d->central->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", id), "(a{sv})");
        at_machine = test_call_ok(m, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", id), "(a{sv})");
        g_assert_true(g_variant_equal(at_central, at_machine));

        r = test_call_ok(m, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                         g_variant_new_parsed("(%s, %s, {'display-name': <'Ann'>})", id, tag), "(s)");
        g_variant_get(r, "(s)", &new_tag);
        g_clear_pointer(&r, g_variant_unref);

        /* Errors keep their names and messages across hops. */
        r = test_call(m, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                      g_variant_new_parsed("(%s, %s, {'display-name': <'Old'>})", id, tag), "(s)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "SaveConflict", new_tag);
        g_clear_error(&error);
        r = test_call(m, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", UNKNOWN_ID), NULL, &error);
        test_assert_dbus_error(error, "NotFound", UNKNOWN_ID);
        g_clear_error(&error);
        r = test_call(m, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser", g_variant_new_parsed("({'name': <'Bad Name'>},)"),
                      NULL, &error);
        test_assert_dbus_error(error, "InvalidArgument", "'Bad Name'");
}

/* One SaveUser from the machine is in the audit trail of every process of
 * the chain, found by its new tag: outpostd with its caller (the central
 * listener), the central listener with the site's certificate name, the
 * site bridge as importer and as listener, and the machine's importer. */
static void test_audit_through_two_hops(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autofree char *tag = NULL, *id = test_create_user(d->machine->conn, "traced", &tag);
        g_autoptr(GVariant) r = test_call_ok(d->machine->conn, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                                             g_variant_new_parsed("(%s, %s, {'email': <'t@example.org'>})", id, tag),
                                             "(s)");
        g_autofree char *daemon_log = test_bus_take_daemon_log(d->central);
        g_autofree char *line = NULL;
        const char *new_tag;

        g_variant_get(r, "(&s)", &new_tag);
        line = g_strdup_printf("audit: Users.SaveUser('%s')", id);
        g_assert_nonnull(strstr(daemon_log, line));
        g_assert_nonnull(strstr(daemon_log, new_tag));
        for (unsigned i = 0; i < 200; i++) {
                if (bridge_process_logged(&d->central_listener, new_tag) &&
                    bridge_process_logged(&d->site_bridge, new_tag) &&
                    bridge_process_logged(&d->machine_bridge, new_tag))
                        break;
                g_usleep(20000);
        }
        g_assert_true(bridge_process_logged(&d->central_listener, "from peer '"));
        g_assert_true(bridge_process_logged(&d->central_listener, new_tag));
        g_assert_true(bridge_process_logged(&d->site_bridge, new_tag));
        g_assert_true(bridge_process_logged(&d->machine_bridge, new_tag));
        g_assert_true(bridge_process_logged(&d->machine_bridge, line));
}

static void test_snapshot_includes_bridge(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autoptr(GVariant) r = NULL, objects = NULL, bridge = NULL, props = NULL;
        guint32 hops;
        const char *state;

        r = test_call_ok(d->machine->conn, OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                         NULL, "(a{oa{sa{sv}}})");
        objects = g_variant_get_child_value(r, 0);
        g_assert_true(g_variant_lookup(objects, OUTPOST_USERS_PATH, "@a{sa{sv}}", NULL));
        g_assert_true(g_variant_lookup(objects, OUTPOST_BRIDGE_PATH, "@a{sa{sv}}", &bridge));
        props = g_variant_lookup_value(bridge, IFACE_BRIDGE, NULL);
        g_assert_true(g_variant_lookup(props, "Hops", "u", &hops));
        g_assert_cmpuint(hops, ==, 2);
        g_assert_true(g_variant_lookup(props, "State", "&s", &state));
        g_assert_cmpstr(state, ==, "connected");
        g_assert_cmpuint(bridge_u32(d->site->conn, "Hops"), ==, 1);

        /* The origin has no bridge object. */
        g_clear_pointer(&r, g_variant_unref);
        g_clear_pointer(&objects, g_variant_unref);
        r = test_call_ok(d->central->conn, OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                         NULL, "(a{oa{sa{sv}}})");
        objects = g_variant_get_child_value(r, 0);
        g_assert_false(g_variant_lookup(objects, OUTPOST_BRIDGE_PATH, "@a{sa{sv}}", NULL));
}

typedef struct Coherence {
        GDBusProxy *proxy;
        GDBusObjectManager *objects;
        const char *user;
        int remaining, stale, done;
        gboolean online;
} Coherence;

static void coherence_next(Coherence *c);

static void on_coherence_reply(GObject *source, GAsyncResult *res, gpointer data) {
        Coherence *c = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_proxy_call_finish(G_DBUS_PROXY(source), res, &error);
        g_autoptr(GVariant) generation = NULL;
        guint64 gen;

        g_assert_no_error(error);
        g_variant_get(r, "(t)", &gen);
        generation = g_dbus_proxy_get_cached_property(c->proxy, "Generation");
        if (test_objects_show_online(c->objects, c->user) != c->online || g_variant_get_uint64(generation) != gen)
                c->stale++;
        coherence_next(c);
}

static void coherence_next(Coherence *c) {
        if (c->remaining-- <= 0) {
                c->done = TRUE;
                return;
        }
        c->online = !c->online;
        g_dbus_proxy_call(c->proxy, c->online ? "GoOnline" : "GoOffline",
                          c->online ? g_variant_new("(su)", c->user, 0) : g_variant_new("(s)", c->user),
                          G_DBUS_CALL_FLAGS_NONE, -1, NULL, on_coherence_reply, c);
}

/* Signal before reply holds over two hops: when GoOnline's reply reaches
 * a machine client, its proxy's and its object manager's caches already
 * show the change. */
static void test_coherence_through_two_hops(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autofree char *id = test_create_user(d->central->conn, "bob", NULL);
        g_autoptr(GError) error = NULL;
        Coherence c = { .user = id, .remaining = 1000 };

        c.proxy = g_dbus_proxy_new_sync(d->machine->conn, G_DBUS_PROXY_FLAGS_NONE, NULL, OUTPOST_NAME,
                                        OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, NULL, &error);
        g_assert_no_error(error);
        c.objects = test_object_manager_new(d->machine->conn);
        coherence_next(&c);
        test_wait_until(c.done, 60000);
        g_assert_cmpint(c.stale, ==, 0);
        g_object_unref(c.objects);
        g_object_unref(c.proxy);
}

typedef struct EventLog {
        GArray *seqs;
        int gaps;
} EventLog;

static void on_event(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                     const char *signal, GVariant *params, gpointer data) {
        EventLog *log = data;
        guint64 seq, after, resumed;

        if (strcmp(signal, "Gap") == 0) {
                g_variant_get(params, "(tt)", &after, &resumed);
                log->gaps++;
                return;
        }
        g_variant_get_child(params, 0, "t", &seq);
        g_array_append_val(log->seqs, seq);
}

static guint subscribe_events(GDBusConnection *c, EventLog *log) {
        log->seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
        return g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, IFACE_EVENTS, NULL, OUTPOST_EVENTS_PATH, NULL,
                                                  G_DBUS_SIGNAL_FLAGS_NONE, on_event, log, NULL);
}

static void publish(GDBusConnection *c, int n) {
        for (int i = 0; i < n; i++)
                g_variant_unref(test_call_ok(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                             g_variant_new_parsed("('shop/door', {'n': <%i>})", i), "(t)"));
}

static void assert_every_event_once(EventLog *log, guint64 first, guint64 last) {
        g_assert_cmpuint(log->seqs->len, ==, last - first + 1);
        for (guint i = 0; i < log->seqs->len; i++)
                g_assert_cmpuint(g_array_index(log->seqs, guint64, i), ==, first + i);
}

/* Kill the central listener: machine calls fail at once with
 * Disconnected, cached reads go on, and after the listener is back the
 * machine's subscriber has every event once and in order. */
static void test_outage_and_replay(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        GDBusConnection *m = d->machine->conn;
        EventLog log = {};
        guint sub = subscribe_events(m, &log);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        guint64 first, last;
        gint64 t0;

        publish(m, 5);
        first = get_u64(d->central->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "LastSeq") - 4;
        test_wait_until(log.seqs->len == 5, 5000);

        bridge_process_stop(&d->central_listener, SIGKILL);
        wait_bridge_state(m, "connecting", 3000);

        t0 = g_get_monotonic_time();
        r = test_call(m, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 10), NULL, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "Disconnected", "tls:host=127.0.0.1");
        /* It never left the site: the caller may retry it freely. */
        g_assert_nonnull(strstr(error->message, "the call was not carried out"));
        g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
        /* Cached reads still answer. */
        (void) get_u64(m, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "Generation");
        g_variant_unref(test_call_ok(m, OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                                     NULL, "(a{oa{sa{sv}}})"));

        publish(d->central->conn, 500);
        last = get_u64(d->central->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "LastSeq");

        bridge_process_restart(&d->central_listener);
        wait_bridge_state(m, "connected", 20000);
        test_wait_until(log.seqs->len >= last - first + 1, 10000);
        assert_every_event_once(&log, first, last);
        g_assert_cmpint(log.gaps, ==, 0);
        /* The site's link was the one re-established; the machine's stayed up. */
        g_assert_cmpuint(bridge_u32(d->site->conn, "Reconnects"), >=, 1);
        g_assert_cmpuint(bridge_u32(m, "Reconnects"), ==, 0);

        g_dbus_connection_signal_unsubscribe(m, sub);
        g_array_unref(log.seqs);
}

/* When retention discarded what the bridge missed, it says so with Gap. */
static void test_gap_when_history_truncated(void) {
        g_autoptr(Deployment) d = deployment_new("[Events]\nRetentionCount=50\n");
        GDBusConnection *m = d->machine->conn;
        EventLog log = {};
        guint sub = subscribe_events(m, &log);

        publish(m, 3);
        test_wait_until(log.seqs->len == 3, 5000);
        bridge_process_stop(&d->central_listener, SIGKILL);
        wait_bridge_state(m, "connecting", 3000);
        publish(d->central->conn, 200);
        /* Retention trims a history over its count about a second later. */
        g_usleep(1500 * 1000);
        bridge_process_restart(&d->central_listener);
        wait_bridge_state(m, "connected", 20000);
        test_wait_until(log.gaps >= 1, 5000);

        g_dbus_connection_signal_unsubscribe(m, sub);
        g_array_unref(log.seqs);
}

/* Presence holds belong to the machine's clients, through two hops. */
static void test_presence_holds(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autofree char *id = test_create_user(d->central->conn, "carl", NULL);
        g_autoptr(GDBusConnection) a = test_bus_connect(d->machine), b = test_bus_connect(d->machine);

        g_variant_unref(test_call_ok(a, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline", g_variant_new("(su)", id, 0), "(t)"));
        g_variant_unref(test_call_ok(b, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline", g_variant_new("(su)", id, 0), "(t)"));
        g_assert_true(presence_has(d->central->conn, id));

        /* One of two holders leaves: still online. */
        g_dbus_connection_close_sync(a, NULL, NULL);
        g_usleep(300 * 1000);
        g_assert_true(presence_has(d->central->conn, id));

        /* A link outage: the hold of the client still there comes back. */
        bridge_process_stop(&d->central_listener, SIGKILL);
        wait_bridge_state(d->machine->conn, "connecting", 3000);
        bridge_process_restart(&d->central_listener);
        wait_bridge_state(d->machine->conn, "connected", 20000);
        test_wait_until(presence_has(d->central->conn, id), 5000);

        /* The last holder leaves: offline at central. */
        g_dbus_connection_close_sync(b, NULL, NULL);
        test_wait_until(!presence_has(d->central->conn, id), 5000);
}

/* Whether GetUser finds ID through C (an error of any kind: no). */
static gboolean user_known(GDBusConnection *c, const char *id) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = test_call(c, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", id),
                                              NULL, &error);

        return reply != NULL;
}

static char *bridge_upstream(GDBusConnection *c) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_BRIDGE_PATH, IFACE_BRIDGE, "Upstream");

        return g_variant_dup_string(v, NULL);
}

/* An importer with several upstreams uses one at a time and moves to the
 * next when its link fails: an address nobody listens on, a listener
 * killed, a listener whose service left its bus. */
static void test_several_upstreams(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        TestBus *other = test_bus_new(), *site2 = test_bus_new();
        BridgeProcess other_listener = {}, importer = {};
        unsigned other_port = free_port(), dead_port = free_port();
        g_autofree char *central = g_strdup_printf("tls:host=127.0.0.1,port=%u", d->central_port);
        g_autofree char *second = g_strdup_printf("tls:host=127.0.0.1,port=%u", other_port);
        g_autofree char *dead = g_strdup_printf("tls:host=127.0.0.1,port=%u", dead_port);
        g_autofree char *upstreams = g_strdup_printf("%s;%s;%s", dead, central, second);
        g_autofree char *id = NULL, *used = NULL;

        test_bus_start_daemon(other, NULL);
        bridge_process_start(&other_listener, other, second, NULL, NULL);
        id = test_create_user(other->conn, "only-on-the-second", NULL);

        /* The first is dead: the second is used. */
        bridge_process_start(&importer, site2, NULL, upstreams, NULL);
        wait_bridge_state(site2->conn, "connected", 20000);
        used = bridge_upstream(site2->conn);
        g_assert_cmpstr(used, ==, central);

        /* Its listener killed: the third, with its own users. */
        bridge_process_stop(&d->central_listener, SIGKILL);
        test_wait_until(user_known(site2->conn, id), 20000);
        wait_bridge_state(site2->conn, "connected", 20000);
        g_clear_pointer(&used, g_free);
        used = bridge_upstream(site2->conn);
        g_assert_cmpstr(used, ==, second);

        /* The service behind the third leaves its bus: the listener says
         * so, and the importer goes round to the second again. */
        bridge_process_restart(&d->central_listener);
        g_assert_cmpint(test_bus_stop_daemon(other, SIGKILL), !=, 0);
        test_wait_until(!user_known(site2->conn, id), 30000);
        wait_bridge_state(site2->conn, "connected", 30000);
        g_clear_pointer(&used, g_free);
        used = bridge_upstream(site2->conn);
        g_assert_cmpstr(used, ==, central);

        bridge_process_clear(&importer);
        bridge_process_clear(&other_listener);
        test_bus_free(site2);
        test_bus_free(other);
}

static void on_waiting_call(GObject *source, GAsyncResult *result, gpointer data) {
        GError **error = data;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, error);

        if (reply)
                *error = g_error_new_literal(G_IO_ERROR, G_IO_ERROR_FAILED, "(answered)");
}

/* A service that is alive on the bus but answers nothing (SIGSTOP) is an
 * outage to every layer once someone calls it: within a heartbeat or so
 * State leaves "connected" at the site and the machine, the call waiting
 * two hops away fails with Disconnected and later calls fail at once,
 * instead of waiting for the bus's timeout; all comes back once the
 * service answers again. Idle, nothing pings the service (the daemon's
 * own tests check that it sleeps, also behind bridges). */
static void test_hung_service(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autofree char *id = test_create_user(d->central->conn, "patient", NULL);
        GPid outpostd = test_bus_daemon_pid(d->central);
        g_autoptr(GError) error = NULL, waited = NULL;
        g_autoptr(GVariant) reply = NULL;
        gint64 stopped, noticed;

        g_assert_true(user_known(d->machine->conn, id));
        g_assert_cmpint(kill(outpostd, SIGSTOP), ==, 0);
        stopped = g_get_monotonic_time();
        g_dbus_connection_call(d->machine->conn, OUTPOST_NAME, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                               g_variant_new("(s)", id), NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, on_waiting_call,
                               &waited);
        for (;;) {
                g_autofree char *state = bridge_state(d->machine->conn);

                if (g_strcmp0(state, "connected") != 0)
                        break;
                g_assert_cmpint(g_get_monotonic_time() - stopped, <, 10 * G_USEC_PER_SEC);
                g_main_context_iteration(NULL, FALSE);
                g_usleep(20 * 1000);
        }
        noticed = g_get_monotonic_time();
        /* The listener pings every 0.5 s and calls the service stuck after
         * 2 s (heartbeat-timeout-ms) without an answer; the importer's
         * next heartbeat, within 1 s, hears it. */
        g_test_message("State left connected %" G_GINT64_FORMAT " ms after SIGSTOP", (noticed - stopped) / 1000);
        g_assert_cmpint(noticed - stopped, <, 5 * G_USEC_PER_SEC);
        test_wait_until(waited != NULL, 2000);
        /* The call reached the service, which may have carried it out;
         * the next one never leaves the site. */
        test_assert_dbus_error(waited, "Disconnected", "the call may have been carried out");
        reply = test_call(d->machine->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", id),
                          NULL, &error);
        g_assert_null(reply);
        test_assert_dbus_error(error, "Disconnected", "the call was not carried out");
        g_assert_cmpint(g_get_monotonic_time() - noticed, <, 2 * G_USEC_PER_SEC);

        g_assert_cmpint(kill(outpostd, SIGCONT), ==, 0);
        wait_bridge_state(d->site->conn, "connected", 20000);
        wait_bridge_state(d->machine->conn, "connected", 20000);
        g_assert_true(user_known(d->machine->conn, id));

        /* Central's listener itself stopped: the site's heartbeat goes
         * unanswered, and the same follows. */
        g_assert_cmpint(kill(d->central_listener.pid, SIGSTOP), ==, 0);
        stopped = g_get_monotonic_time();
        for (;;) {
                g_autofree char *state = bridge_state(d->machine->conn);

                if (g_strcmp0(state, "connected") != 0)
                        break;
                g_assert_cmpint(g_get_monotonic_time() - stopped, <, 10 * G_USEC_PER_SEC);
                g_usleep(20 * 1000);
        }
        g_test_message("State left connected %" G_GINT64_FORMAT " ms after SIGSTOP of the listener",
                       (g_get_monotonic_time() - stopped) / 1000);
        g_assert_cmpint(g_get_monotonic_time() - stopped, <, 5 * G_USEC_PER_SEC);
        g_clear_error(&error);
        g_clear_pointer(&reply, g_variant_unref);
        reply = test_call(d->machine->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", id),
                          NULL, &error);
        g_assert_null(reply);
        test_assert_dbus_error(error, "Disconnected", NULL);
        g_assert_cmpint(kill(d->central_listener.pid, SIGCONT), ==, 0);
        wait_bridge_state(d->machine->conn, "connected", 30000);
        g_assert_true(user_known(d->machine->conn, id));
}

/* The service leaves its bus (killed) while a call two hops away waits
 * for it: the caller is told at once that the call may have been carried
 * out, whether the bus's NoReply or the link's end reaches it first. */
static void test_service_gone_with_call_pending(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autofree char *id = test_create_user(d->central->conn, "patient", NULL);
        GPid outpostd = test_bus_daemon_pid(d->central);
        g_autoptr(GError) waited = NULL;
        gint64 killed;

        g_assert_true(user_known(d->machine->conn, id));
        g_assert_cmpint(kill(outpostd, SIGSTOP), ==, 0);
        g_dbus_connection_call(d->machine->conn, OUTPOST_NAME, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                               g_variant_new("(s)", id), NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, on_waiting_call,
                               &waited);
        /* Long enough for the call to reach central's bus, well within the
         * heartbeat timeout that would call the service stuck. */
        for (gint64 until = g_get_monotonic_time() + 300 * 1000; g_get_monotonic_time() < until;) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(10 * 1000);
        }
        g_assert_null(waited);
        test_bus_stop_daemon(d->central, SIGKILL);
        killed = g_get_monotonic_time();
        test_wait_until(waited != NULL, 5000);
        test_assert_dbus_error(waited, "Disconnected", "the call may have been carried out");
        g_assert_cmpint(g_get_monotonic_time() - killed, <, 3 * G_USEC_PER_SEC);
}

typedef struct HoldTally {
        unsigned answered, held, limited;
} HoldTally;

static void on_go_online(GObject *source, GAsyncResult *result, gpointer data) {
        HoldTally *t = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);
        g_autofree char *name = error ? g_dbus_error_get_remote_error(error) : NULL;

        t->answered++;
        if (reply)
                t->held++;
        else if (g_strcmp0(name, ERROR_PREFIX "LimitExceeded") == 0)
                t->limited++;
}

/* Holds are limited per local caller at the importer, before they go
 * upstream: one client that holds as many users as it may leaves room for
 * every other client behind the same link; the limit counts GoOnline calls
 * still on their way; a refused hold is no hold; GoOffline makes room. */
static void test_holds_limited_per_caller(void) {
        static const char *const site_extra[] = { "--max-holds-per-caller=3", NULL };
        g_autoptr(Deployment) d = deployment_new_with(NULL, site_extra);
        GDBusConnection *central = d->central->conn;
        g_autoptr(GDBusConnection) greedy = test_bus_connect(d->site), other = test_bus_connect(d->site);
        g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) refused = NULL;
        HoldTally tally = {};
        guint refused_at = 0, held_at = 0;

        for (unsigned i = 0; i < 5; i++) {
                g_autofree char *name = g_strdup_printf("held%u", i);
                g_ptr_array_add(ids, test_create_user(central, name, NULL));
        }
        /* Five at once, none answered before the others are sent. */
        for (unsigned i = 0; i < 5; i++)
                g_dbus_connection_call(greedy, OUTPOST_NAME, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                       g_variant_new("(su)", ids->pdata[i], 0), G_VARIANT_TYPE("(t)"),
                                       G_DBUS_CALL_FLAGS_NONE, -1, NULL, on_go_online, &tally);
        test_wait_until(tally.answered == 5, 10000);
        g_assert_cmpuint(tally.held, ==, 3);
        g_assert_cmpuint(tally.limited, ==, 2);
        test_wait_until(test_online_count(central) == 3, 5000);
        for (unsigned i = 0; i < 5; i++)
                if (test_is_online(central, ids->pdata[i]))
                        held_at = i;
                else
                        refused_at = i;

        refused = test_call(greedy, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                            g_variant_new("(su)", ids->pdata[refused_at], 0), "(t)", &error);
        g_assert_null(refused);
        test_assert_dbus_error(error, "LimitExceeded", "the most it may (max-holds-per-caller)");

        /* Another client of the same site is not held back. */
        for (unsigned i = 0; i < 5; i++)
                if (!test_is_online(central, ids->pdata[i]))
                        g_variant_unref(test_call_ok(other, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                                     g_variant_new("(su)", ids->pdata[i], 60), "(t)"));
        test_wait_until(test_online_count(central) == 5, 5000);
        g_variant_unref(test_call_ok(other, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                                     g_variant_new("(s)", ids->pdata[refused_at]), "(t)"));
        g_assert_false(test_is_online(central, ids->pdata[refused_at]));

        /* GoOffline makes room for another hold of the same caller. */
        g_variant_unref(test_call_ok(greedy, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                                     g_variant_new("(s)", ids->pdata[held_at]), "(t)"));
        test_wait_until(!test_is_online(central, ids->pdata[held_at]), 5000);
        g_variant_unref(test_call_ok(greedy, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", ids->pdata[refused_at], 0), "(t)"));
        test_wait_until(test_is_online(central, ids->pdata[refused_at]), 5000);
}

/* Who is online, through an outage: the machine's cache answers for the
 * objects while the link is down, and the resync announces the objects
 * that went and came before the PropertiesChanged of the new generation
 * (DESIGN.md §4 rules 1, 5 and 6), and leaves the others alone. */
static void test_presence_objects_across_outage(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        GDBusConnection *central = d->central->conn;
        g_autofree char *ann = test_create_user(central, "ann", NULL), *bob = test_create_user(central, "bob", NULL);
        g_autofree char *cid = test_create_user(central, "cid", NULL);
        g_autofree char *ann_path = test_online_user_path(ann), *bob_path = test_online_user_path(bob);
        g_autofree char *cid_path = test_online_user_path(cid);
        g_autoptr(GDBusConnection) holder = test_bus_connect(d->central), m = test_bus_connect(d->machine);
        g_autoptr(GDBusObjectManager) objects = test_object_manager_new(m);
        Arrivals *a = arrivals_new(m);
        guint64 generation;
        guint from;
        int gone, came, change;

        g_variant_unref(test_call_ok(holder, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", ann, 0), "(t)"));
        g_variant_unref(test_call_ok(holder, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", cid, 0), "(t)"));
        test_wait_until(test_objects_show_online(objects, ann) && test_objects_show_online(objects, cid), 5000);

        bridge_process_stop(&d->central_listener, SIGKILL);
        wait_bridge_state(m, "connecting", 3000);
        /* The cache answers for the objects, as for the managers. */
        g_assert_true(test_is_online(m, ann));
        g_assert_true(test_is_online(m, cid));
        g_assert_false(test_is_online(m, bob));
        {
                g_autoptr(GVariant) r = test_call_ok(m, OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager",
                                                     "GetManagedObjects", NULL, "(a{oa{sa{sv}}})");
                g_autoptr(GVariant) snapshot = g_variant_get_child_value(r, 0);

                g_assert_true(g_variant_lookup(snapshot, ann_path, "@a{sa{sv}}", NULL));
                g_assert_false(g_variant_lookup(snapshot, bob_path, "@a{sa{sv}}", NULL));
        }

        /* Meanwhile at central: Ann goes, Bob comes, Cid stays. */
        g_variant_unref(test_call_ok(holder, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                                     g_variant_new("(s)", ann), "(t)"));
        g_variant_unref(test_call_ok(holder, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", bob, 0), "(t)"));
        generation = get_u64(central, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "Generation");
        from = arrivals_len(a);

        bridge_process_restart(&d->central_listener);
        wait_bridge_state(m, "connected", 20000);
        test_wait_until(test_objects_show_online(objects, bob) && !test_objects_show_online(objects, ann), 5000);
        g_assert_true(test_objects_show_online(objects, cid));
        g_assert_cmpuint(test_online_count(m), ==, 2);

        gone = arrivals_find_presence(a, from, "InterfacesRemoved", ann_path, 0);
        came = arrivals_find_presence(a, from, "InterfacesAdded", bob_path, 0);
        change = arrivals_find_presence(a, from, "PropertiesChanged", OUTPOST_PRESENCE_PATH, generation);
        g_test_message("after the outage: removed %d, added %d, PropertiesChanged %d", gone, came, change);
        g_assert_cmpint(gone, >=, 0);
        g_assert_cmpint(came, >=, 0);
        g_assert_cmpint(change, >, gone);
        g_assert_cmpint(change, >, came);
        /* What did not change is not announced again. */
        g_assert_cmpint(arrivals_find_presence(a, from, "InterfacesAdded", cid_path, 0), ==, -1);

        g_clear_object(&objects);
        g_dbus_connection_close_sync(m, NULL, NULL);
        arrivals_free(a);
}

/* The daemon restarting behind the listener is an outage like any other. */
static void test_central_daemon_restart(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        GDBusConnection *m = d->machine->conn;
        g_autofree char *id = NULL;

        test_bus_stop_daemon(d->central, SIGTERM);
        wait_bridge_state(m, "connecting", 5000);
        test_bus_start_daemon(d->central, NULL);
        wait_bridge_state(m, "connected", 20000);
        id = test_create_user(m, "dora", NULL);
        g_assert_nonnull(id);
}

/* Restarting the site bridge or the machine bridge converges too. */
static void test_bridge_restarts(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autofree char *id = NULL;

        bridge_process_stop(&d->site_bridge, SIGTERM);
        wait_bridge_state(d->machine->conn, "connecting", 5000);
        bridge_process_restart(&d->site_bridge);
        wait_bridge_state(d->machine->conn, "connected", 20000);

        bridge_process_stop(&d->machine_bridge, SIGTERM);
        bridge_process_restart(&d->machine_bridge);
        wait_bridge_state(d->machine->conn, "connected", 20000);
        id = test_create_user(d->machine->conn, "eve", NULL);
        g_assert_nonnull(id);
}

/* Two bridges importing from each other: refused as a cycle. */
static void test_cycle_refused(void) {
        g_autoptr(TestBus) one = test_bus_new(), two = test_bus_new();
        BridgeProcess a = {}, b = {};
        unsigned pa = free_port(), pb = free_port();
        g_autofree char *la = g_strdup_printf("tls:host=127.0.0.1,port=%u", pa);
        g_autofree char *lb = g_strdup_printf("tls:host=127.0.0.1,port=%u", pb);
        g_autofree char *sa = NULL, *sb = NULL;
        gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

        bridge_process_start(&a, one, la, lb, NULL);
        bridge_process_start(&b, two, lb, la, NULL);
        do {
                g_free(sa);
                g_free(sb);
                g_usleep(50000);
                sa = bridge_state(one->conn);
                sb = bridge_state(two->conn);
                if (g_get_monotonic_time() > deadline)
                        g_error("no cycle detected: states %s and %s", sa, sb);
        } while (g_strcmp0(sa, "disconnected") != 0 && g_strcmp0(sb, "disconnected") != 0);

        bridge_process_stop(&a, SIGTERM);
        bridge_process_stop(&b, SIGTERM);
        g_strfreev(a.argv);
        g_strfreev(b.argv);
        g_free(a.log_path);
        g_free(b.log_path);
}

/* The machine's importer asks its own polkit before relaying a change,
 * with the same actions as the daemon. */
static void test_authorizes_local_callers(void) {
        g_autoptr(Deployment) d = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        g_autofree char *id = NULL;
        const char *users[] = { "org.outpost.Outpost1.manage-users", NULL };

        if (!test_can_switch_user())
                return;
        d = deployment_new(NULL);
        if (!test_bus_start_polkit(d->machine))
                return;

        r = test_call_as(d->machine, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL,
                         OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser", g_variant_new_parsed("({'name': <'nobody1'>},)"),
                         "(ss)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", "org.outpost.Outpost1.manage-users");
        g_clear_error(&error);

        /* Reads stay open; a permitted change goes through to central. */
        r = test_call_as(d->machine, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL,
                         OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 10), NULL, &error);
        g_assert_no_error(error);
        g_clear_pointer(&r, g_variant_unref);
        test_polkit_set_allowed(d->machine, users);
        r = test_call_as(d->machine, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL,
                         OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser", g_variant_new_parsed("({'name': <'nobody2'>},)"),
                         "(ss)", &error);
        g_assert_no_error(error);
        g_clear_pointer(&r, g_variant_unref);
        r = test_call_ok(d->central->conn, OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser", g_variant_new("(s)", "nobody2"), NULL);

        /* Naming bridge peers takes the bridges' own action here too: the
         * importer asks it in place of send-messages, so no local caller
         * can make up where a message came from. */
        g_clear_pointer(&r, g_variant_unref);
        test_polkit_set_allowed(d->machine, (const char *[]) { "org.outpost.Outpost1.send-messages", NULL });
        id = test_create_user(d->central->conn, "ann", NULL);
        r = test_call_as(d->machine, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL,
                         OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                         g_variant_new_parsed("([%s], 'hi', {'relayed-by': <['site-1']>})", id), "(st)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", "org.outpost.Outpost1.relay-for-peers");
        g_clear_error(&error);
        r = test_call_as(d->machine, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL,
                         OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                         g_variant_new_parsed("([%s], 'hi', @a{sv} {})", id), "(st)", &error);
        g_assert_no_error(error);

        /* Bridge.Reconnect is a change too. */
        g_clear_pointer(&r, g_variant_unref);
        r = test_call_as(d->machine, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL,
                         OUTPOST_BRIDGE_PATH, IFACE_BRIDGE, "Reconnect", NULL, NULL, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", "org.outpost.Outpost1.manage-bridge");
        test_bus_stop_polkit(d->machine);
}

/* A test host in a network namespace of our own, behind a veth pair whose
 * host end the test can take down: a link that dies without a word. */
typedef struct TestHost {
        char *netns;
        char *veth;
} TestHost;

#define TEST_HOST_ADDRESS "10.231.0.2"  /* in the server certificate too */

static gboolean sh(const char *format, ...) G_GNUC_PRINTF(1, 2);
static gboolean sh(const char *format, ...) {
        g_autofree char *cmd = NULL;
        va_list ap;
        int status;

        va_start(ap, format);
        cmd = g_strdup_vprintf(format, ap);
        va_end(ap);
        status = system(cmd);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static gboolean test_host_setup(TestHost *h) {
        h->netns = g_strdup_printf("outpost-t%d", (int) getpid());
        h->veth = g_strdup_printf("opt%d", (int) getpid() % 100000);
        return sh("ip netns add %s", h->netns) &&
               sh("ip link add %sa type veth peer name %sb", h->veth, h->veth) &&
               sh("ip link set %sb netns %s", h->veth, h->netns) &&
               sh("ip addr add 10.231.0.1/30 dev %sa && ip link set %sa up", h->veth, h->veth) &&
               sh("ip netns exec %s ip addr add " TEST_HOST_ADDRESS "/30 dev %sb", h->netns, h->veth) &&
               sh("ip netns exec %s ip link set %sb up && ip netns exec %s ip link set lo up",
                  h->netns, h->veth, h->netns);
}

static void test_host_teardown(TestHost *h) {
        (void) sh("ip link del %sa 2>/dev/null", h->veth);
        (void) sh("ip netns del %s 2>/dev/null", h->netns);
        g_free(h->netns);
        g_free(h->veth);
}

/* The link between site and central dies silently (ip link set down): the
 * heartbeat notices, machine calls fail with Disconnected within about a
 * second, and all converges once the link is back. */
static void test_link_failure_in_netns(void) {
        g_autoptr(TestBus) central = NULL, site = NULL, machine = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        BridgeProcess listener = {}, site_bridge = {}, machine_bridge = {};
        TestHost host = {};
        g_autofree char *central_listen = NULL, *site_listen = NULL, *id = NULL;
        unsigned port = free_port();
        gint64 t0;

        if (geteuid() != 0) {
                g_test_skip("network namespaces need root");
                return;
        }
        if (!test_host_setup(&host)) {
                test_host_teardown(&host);
                g_test_skip("cannot make a network namespace with a veth pair here");
                return;
        }
        central = test_bus_new();
        site = test_bus_new();
        machine = test_bus_new();
        test_bus_start_daemon(central, NULL);
        central_listen = g_strdup_printf("tls:host=" TEST_HOST_ADDRESS ",port=%u", port);
        site_listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        bridge_process_start_in(&listener, host.netns, central, central_listen, NULL, NULL);
        bridge_process_start(&site_bridge, site, site_listen, central_listen, NULL);
        bridge_process_start(&machine_bridge, machine, NULL, site_listen, NULL);
        wait_bridge_state(machine->conn, "connected", 20000);
        id = test_create_user(machine->conn, "fay", NULL);
        g_variant_unref(test_call_ok(machine->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", id, 0), "(t)"));

        g_assert_true(sh("ip link set %sa down", host.veth));
        t0 = g_get_monotonic_time();
        /* A call made now either fails at once or when the heartbeat
         * gives up: never after a long timeout. */
        r = test_call(machine->conn, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 10), NULL, &error);
        if (r) {
                g_clear_pointer(&r, g_variant_unref);
                wait_bridge_state(machine->conn, "connecting", 3000);
                r = test_call(machine->conn, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 10),
                              NULL, &error);
        }
        g_assert_null(r);
        test_assert_dbus_error(error, "Disconnected", NULL);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 3 * G_USEC_PER_SEC);
        wait_bridge_state(machine->conn, "connecting", 3000);
        g_assert_true(presence_has(machine->conn, id));     /* cached */

        g_assert_true(sh("ip link set %sa up", host.veth));
        wait_bridge_state(machine->conn, "connected", 20000);
        test_wait_until(presence_has(central->conn, id), 5000);

        bridge_process_stop(&machine_bridge, SIGTERM);
        bridge_process_stop(&site_bridge, SIGTERM);
        bridge_process_stop(&listener, SIGTERM);
        for (BridgeProcess *b = &listener; b; b = b == &listener ? &site_bridge : b == &site_bridge ? &machine_bridge : NULL) {
                g_strfreev(b->argv);
                g_free(b->log_path);
        }
        test_host_teardown(&host);
}

/* Socket activation (outpost-bridge.socket): a listener given its socket
 * by the service manager, with no listen= at all. */
static void test_socket_activation(void) {
        g_autofree char *activate = g_find_program_in_path("systemd-socket-activate");
        g_autoptr(TestBus) central = NULL, site = NULL;
        g_autofree char *where = NULL, *upstream = NULL;
        BridgeProcess listener = {}, importer = {};
        unsigned port = free_port();

        if (!activate) {
                g_test_skip("systemd-socket-activate is not installed");
                return;
        }
        central = test_bus_new();
        site = test_bus_new();
        test_bus_start_daemon(central, NULL);
        where = g_strdup_printf("127.0.0.1:%u", port);
        upstream = g_strdup_printf("tls:host=127.0.0.1,port=%u", port);
        const char *wrapper[] = { activate, "-l", where, NULL };
        bridge_process_start_wrapped(&listener, wrapper, central, NULL, NULL, NULL);
        bridge_process_start(&importer, site, NULL, upstream, NULL);
        wait_bridge_state(site->conn, "connected", 20000);
        g_free(test_create_user(site->conn, "gus", NULL));

        bridge_process_stop(&importer, SIGTERM);
        bridge_process_stop(&listener, SIGTERM);
        g_strfreev(importer.argv);
        g_free(importer.log_path);
        g_strfreev(listener.argv);
        g_free(listener.log_path);
}

static void kill_bus_daemon(TestBus *tb) {
        kill(tb->bus_pid, SIGKILL);
        g_assert_cmpint(waitpid(tb->bus_pid, NULL, 0), ==, tb->bus_pid);
        g_spawn_close_pid(tb->bus_pid);
        tb->bus_pid = 0;
}

static void assert_exits_for_lost_bus(BridgeProcess *p) {
        int status = bridge_process_wait_exit(p, 20000);

        if (!WIFEXITED(status) || WEXITSTATUS(status) == 0)
                g_error("outpost-bridge ended with wait status 0x%x after losing its bus, not an error", status);
        g_assert_true(bridge_process_logged(p, "Lost the connection to the local bus"));
        g_strfreev(p->argv);
        g_free(p->log_path);
}

/* A bridge whose local bus goes away says why and exits with an error, so
 * that the service manager restarts it: an importer, and a listener that
 * has no peer. */
static void test_exits_when_local_bus_lost(void) {
        g_autoptr(TestBus) central = test_bus_new(), site = test_bus_new();
        g_autofree char *listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        BridgeProcess listener = {}, importer = {};

        bridge_process_start(&listener, central, listen, NULL, NULL);
        test_wait_until(bridge_process_logged(&listener, "Listening on"), 20000);
        kill_bus_daemon(central);
        assert_exits_for_lost_bus(&listener);

        bridge_process_start(&importer, site, NULL, listen, NULL);
        test_wait_until(test_bus_name_has_owner(site->conn, OUTPOST_NAME), 20000);
        kill_bus_daemon(site);
        assert_exits_for_lost_bus(&importer);
}

/* SIGTERM while the link is down and being retried ends the bridge
 * cleanly too (bridge_process_stop checks for status 0). */
static void test_sigterm_during_outage(void) {
        g_autoptr(TestBus) site = test_bus_new();
        g_autofree char *nowhere = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        BridgeProcess importer = {};

        bridge_process_start(&importer, site, NULL, nowhere, NULL);
        test_wait_until(bridge_process_logged(&importer, "cannot connect"), 20000);
        bridge_process_clear(&importer);
}

static void copy_file(const char *from, const char *to) {
        g_autofree char *contents = NULL;
        gsize length;
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_get_contents(from, &contents, &length, &error));
        g_assert_true(g_file_set_contents_full(to, contents, (gssize) length, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                               &error));
}

static void reload_and_wait(BridgeProcess *p, const char *logged) {
        int status;

        g_assert_cmpint(kill(p->pid, SIGHUP), ==, 0);
        test_wait_until(bridge_process_logged(p, logged), 5000);
        g_assert_cmpint(waitpid(p->pid, &status, WNOHANG), ==, 0);     /* still running */
}

/* SIGHUP (systemctl reload) reads the listener's TLS files again: new
 * handshakes use the new files, a connected peer they no longer accept is
 * dropped (DESIGN.md §5b; test-scopes.c has the CRL and [Peers]), and
 * files that do not load leave the old ones in use. */
static void test_reload_on_sighup(void) {
        g_autoptr(TestBus) central = test_bus_new(), site = test_bus_new();
        g_autofree char *dir = g_dir_make_tmp("outpost-reload-XXXXXX", NULL);
        g_autofree char *ca = g_build_filename(dir, "ca.pem", NULL);
        g_autofree char *cert = g_build_filename(dir, "server.pem", NULL);
        g_autofree char *key = g_build_filename(dir, "server.key", NULL);
        g_autofree char *real_ca = g_build_filename(test_certs_dir(), "ca.pem", NULL);
        g_autofree char *other_ca = g_build_filename(test_certs_dir(), "other-ca.pem", NULL);
        g_autofree char *real_cert = g_build_filename(test_certs_dir(), "server.pem", NULL);
        g_autofree char *real_key = g_build_filename(test_certs_dir(), "server.key", NULL);
        g_autofree char *listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        g_autofree char *ca_arg = g_strconcat("--tls-ca=", ca, NULL);
        g_autofree char *cert_arg = g_strconcat("--tls-cert=", cert, NULL);
        g_autofree char *key_arg = g_strconcat("--tls-key=", key, NULL);
        const char *const extra[] = { ca_arg, cert_arg, key_arg, NULL };
        BridgeProcess listener = {}, importer = {};

        copy_file(real_ca, ca);
        copy_file(real_cert, cert);
        copy_file(real_key, key);
        test_bus_start_daemon(central, NULL);
        bridge_process_start(&listener, central, listen, NULL, extra);
        bridge_process_start(&importer, site, NULL, listen, NULL);
        wait_bridge_state(site->conn, "connected", 20000);

        /* Another CA from now on: the connected site, which it did not
         * sign, is dropped, and its new handshake is judged by it. */
        copy_file(other_ca, ca);
        reload_and_wait(&listener, "Reloaded the CA, certificate and key");
        test_wait_until(bridge_process_logged(&listener, "dropped: its certificate is now refused"), 5000);
        test_wait_until(bridge_process_logged(&listener, "client certificate refused"), 20000);
        wait_bridge_state(site->conn, "connecting", 5000);

        /* Files that do not load: the listener says so and keeps the last
         * good ones. */
        g_assert_true(g_file_set_contents(ca, "not a certificate\n", -1, NULL));
        reload_and_wait(&listener, "Reload failed, keeping the certificates in use");

        /* The right CA again: the site gets back in. */
        copy_file(real_ca, ca);
        reload_and_wait(&listener, "Reloaded the CA, certificate and key");
        wait_bridge_state(site->conn, "connected", 20000);

        bridge_process_clear(&importer);
        bridge_process_clear(&listener);
        g_assert_cmpint(g_remove(ca), ==, 0);
        g_assert_cmpint(g_remove(cert), ==, 0);
        g_assert_cmpint(g_remove(key), ==, 0);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/bridge/users-through-two-hops", test_users_through_two_hops);
        g_test_add_func("/bridge/snapshot-includes-bridge", test_snapshot_includes_bridge);
        g_test_add_func("/bridge/audit-through-two-hops", test_audit_through_two_hops);
        g_test_add_func("/bridge/coherence-through-two-hops", test_coherence_through_two_hops);
        g_test_add_func("/bridge/outage-and-replay", test_outage_and_replay);
        g_test_add_func("/bridge/gap-when-history-truncated", test_gap_when_history_truncated);
        g_test_add_func("/bridge/presence-holds", test_presence_holds);
        g_test_add_func("/bridge/holds-limited-per-caller", test_holds_limited_per_caller);
        g_test_add_func("/bridge/several-upstreams", test_several_upstreams);
        g_test_add_func("/bridge/hung-service", test_hung_service);
        g_test_add_func("/bridge/service-gone-with-call-pending", test_service_gone_with_call_pending);
        g_test_add_func("/bridge/presence-objects-across-outage", test_presence_objects_across_outage);
        g_test_add_func("/bridge/central-daemon-restart", test_central_daemon_restart);
        g_test_add_func("/bridge/bridge-restarts", test_bridge_restarts);
        g_test_add_func("/bridge/cycle-refused", test_cycle_refused);
        g_test_add_func("/bridge/authorizes-local-callers", test_authorizes_local_callers);
        g_test_add_func("/bridge/link-failure-in-netns", test_link_failure_in_netns);
        g_test_add_func("/bridge/socket-activation", test_socket_activation);
        g_test_add_func("/bridge/exits-when-local-bus-lost", test_exits_when_local_bus_lost);
        g_test_add_func("/bridge/sigterm-during-outage", test_sigterm_during_outage);
        g_test_add_func("/bridge/reload-on-sighup", test_reload_on_sighup);
        return g_test_run();
}
