/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reconnects that cost what changed (DESIGN.md §5): after an outage an
 * importer whose upstream still has its history resumes with FetchSince
 * from the last applied event and takes no snapshot, one hop and two hops
 * away; it takes the snapshot of rule 6 when the history was truncated,
 * reset, or the origin daemon is another instance. Either way clients see
 * what changed. And every presence hold of local clients is back upstream
 * after a reconnect, however many there are. A bus monitor at the upstream
 * counts the snapshots (GetManagedObjects) and resumptions (FetchSince)
 * the importers ask for. */
#include "config.h"

#include <signal.h>
#include <string.h>

#include <glib/gstdio.h>

#include "bridge-harness.h"

/* Calls to org.outpost.Outpost1 on one bus, counted as they pass. */
typedef struct Monitor {
        GDBusConnection *conn;
        gint snapshots;         /* GetManagedObjects */
        gint fetches;           /* FetchSince */
        gboolean active;        /* BecomeMonitor was answered */
} Monitor;

/* Counted, then dropped: a monitor must never answer what it sees. */
static GDBusMessage *on_monitored(GDBusConnection *c, GDBusMessage *m, gboolean incoming, gpointer data) {
        Monitor *mon = data;
        const char *member = g_dbus_message_get_member(m);

        if (!incoming || !g_atomic_int_get(&mon->active))
                return m;
        if (g_dbus_message_get_message_type(m) == G_DBUS_MESSAGE_TYPE_METHOD_CALL && member) {
                if (strcmp(member, "GetManagedObjects") == 0)
                        g_atomic_int_inc(&mon->snapshots);
                else if (strcmp(member, "FetchSince") == 0)
                        g_atomic_int_inc(&mon->fetches);
        }
        g_object_unref(m);
        return NULL;
}

static Monitor *monitor_new(TestBus *bus) {
        Monitor *mon = g_new0(Monitor, 1);
        g_autoptr(GError) error = NULL;
        const char *rules[] = {
                "type='method_call',member='GetManagedObjects'",
                "type='method_call',member='FetchSince'",
                NULL
        };

        mon->conn = g_dbus_connection_new_for_address_sync(bus->address,
                                                           G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                           G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                           NULL, NULL, &error);
        g_assert_no_error(error);
        g_dbus_connection_add_filter(mon->conn, on_monitored, mon, NULL);
        g_variant_unref(g_dbus_connection_call_sync(mon->conn, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                    "org.freedesktop.DBus.Monitoring", "BecomeMonitor",
                                                    g_variant_new("(^asu)", rules, 0), NULL,
                                                    G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error));
        g_assert_no_error(error);
        g_atomic_int_set(&mon->active, TRUE);
        return mon;
}

static void monitor_free(Monitor *mon) {
        g_dbus_connection_close_sync(mon->conn, NULL, NULL);
        g_object_unref(mon->conn);
        g_free(mon);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Monitor, monitor_free)

static void monitor_reset(Monitor *mon) {
        g_atomic_int_set(&mon->snapshots, 0);
        g_atomic_int_set(&mon->fetches, 0);
}

/* Every Event and Gap one connection receives. */
typedef struct Stream {
        GDBusConnection *conn;
        guint id;
        GArray *seqs;
        GArray *gaps;           /* (after, resumed) pairs */
} Stream;

static void on_history(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                       const char *signal, GVariant *params, gpointer data) {
        Stream *s = data;
        guint64 a, b;

        if (strcmp(signal, "Gap") == 0) {
                g_variant_get(params, "(tt)", &a, &b);
                g_array_append_val(s->gaps, a);
                g_array_append_val(s->gaps, b);
        } else if (strcmp(signal, "Event") == 0) {
                g_variant_get_child(params, 0, "t", &a);
                g_array_append_val(s->seqs, a);
        }
}

static void stream_init(Stream *s, GDBusConnection *c) {
        s->conn = c;
        s->seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
        s->gaps = g_array_new(FALSE, FALSE, sizeof(guint64));
        s->id = g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, IFACE_EVENTS, NULL, OUTPOST_EVENTS_PATH, NULL,
                                                   G_DBUS_SIGNAL_FLAGS_NONE, on_history, s, NULL);
}

static void stream_clear(Stream *s) {
        g_dbus_connection_signal_unsubscribe(s->conn, s->id);
        g_array_unref(s->seqs);
        g_array_unref(s->gaps);
}

static guint64 stream_last(Stream *s) {
        return s->seqs->len ? g_array_index(s->seqs, guint64, s->seqs->len - 1) : 0;
}

/* Each event after FROM up to LAST once, in order, and no Gap. */
static void assert_stream_whole(Stream *s, guint64 from, guint64 last) {
        guint64 expect = from + 1;

        g_assert_cmpuint(s->gaps->len, ==, 0);
        for (guint i = 0; i < s->seqs->len; i++) {
                guint64 seq = g_array_index(s->seqs, guint64, i);
                if (seq <= from)
                        continue;
                g_assert_cmpuint(seq, ==, expect);
                expect++;
        }
        g_assert_cmpuint(expect, ==, last + 1);
}

static guint64 events_u64(GDBusConnection *c, const char *prop) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, prop);

        return g_variant_get_uint64(v);
}

static guint64 generation(GDBusConnection *c) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "Generation");

        return g_variant_get_uint64(v);
}

static void publish(GDBusConnection *c, int n) {
        for (int i = 0; i < n; i++)
                g_variant_unref(test_call_ok(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                             g_variant_new_parsed("('shop/door', {'n': <%i>})", i), "(t)"));
}

static void go(GDBusConnection *c, const char *method, const char *user) {
        GVariant *params = strcmp(method, "GoOnline") == 0 ? g_variant_new("(su)", user, 0) : g_variant_new("(s)", user);

        g_variant_unref(test_call_ok(c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, method, params, "(t)"));
}

/* Wait until the bus of C shows what central shows: presence and events. */
static void wait_caught_up(GDBusConnection *c, GDBusConnection *central, Stream *s) {
        guint64 g = generation(central), last = events_u64(central, "LastSeq");

        wait_bridge_state(c, "connected", 20000);
        test_wait_until(generation(c) == g && stream_last(s) >= last, 10000);
}

/* Central's listener goes and comes back: the site's link is the one that
 * resumes, one hop from central, while presence and users change and
 * events are published. Then the site bridge itself restarts: the
 * machine's link resumes from the new site bridge, two hops from central,
 * though the site had to take a snapshot (it started with nothing). */
static void test_resume_without_snapshot(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        GDBusConnection *central = d->central->conn, *m = d->machine->conn;
        g_autofree char *ann = test_create_user(central, "ann", NULL), *bob = test_create_user(central, "bob", NULL);
        g_autofree char *cid = test_create_user(central, "cid", NULL);
        g_autoptr(GDBusConnection) holder = test_bus_connect(d->central), watcher = test_bus_connect(d->machine);
        g_autoptr(GDBusObjectManager) objects = test_object_manager_new(watcher);
        g_autoptr(Monitor) at_central = monitor_new(d->central), at_site = monitor_new(d->site);
        Arrivals *a = arrivals_new(watcher);
        g_autofree char *ann_path = test_online_user_path(ann), *bob_path = test_online_user_path(bob);
        Stream s;
        guint64 from, g;
        guint start;

        stream_init(&s, m);
        go(holder, "GoOnline", ann);
        go(holder, "GoOnline", cid);
        publish(central, 3);
        wait_caught_up(m, central, &s);
        from = stream_last(&s);

        /* One hop: the site resumes from central. */
        monitor_reset(at_central);
        bridge_process_stop(&d->central_listener, SIGKILL);
        wait_bridge_state(m, "connecting", 5000);
        go(holder, "GoOffline", ann);
        go(holder, "GoOnline", bob);
        g_free(test_create_user(central, "dan", NULL));
        publish(central, 5);
        g = generation(central);
        start = arrivals_len(a);
        bridge_process_restart(&d->central_listener);
        wait_caught_up(m, central, &s);
        test_wait_until(test_objects_show_online(objects, bob) && !test_objects_show_online(objects, ann), 5000);
        g_assert_true(test_objects_show_online(objects, cid));
        g_assert_cmpuint(test_online_count(m), ==, 2);
        g_assert_false(test_is_online(m, ann));
        g_assert_false(test_is_online(d->site->conn, ann));
        assert_stream_whole(&s, from, events_u64(central, "LastSeq"));
        g_assert_cmpint(g_atomic_int_get(&at_central->snapshots), ==, 0);
        g_assert_cmpint(g_atomic_int_get(&at_central->fetches), >=, 1);
        g_assert_true(bridge_process_logged(&d->site_bridge, "without a snapshot"));
        /* As with a snapshot: objects first, then the new generation. */
        {
                int gone = arrivals_find_presence(a, start, "InterfacesRemoved", ann_path, 0);
                int came = arrivals_find_presence(a, start, "InterfacesAdded", bob_path, 0);
                int change = arrivals_find_presence(a, start, "PropertiesChanged", OUTPOST_PRESENCE_PATH, g);

                g_assert_cmpint(gone, >=, 0);
                g_assert_cmpint(came, >=, 0);
                g_assert_cmpint(change, >, gone);
                g_assert_cmpint(change, >, came);
        }

        /* Two hops: the machine resumes from a site bridge that restarted. */
        from = stream_last(&s);
        monitor_reset(at_site);
        bridge_process_stop(&d->site_bridge, SIGKILL);
        wait_bridge_state(m, "connecting", 5000);
        go(holder, "GoOnline", ann);
        go(holder, "GoOffline", cid);
        publish(central, 4);
        bridge_process_restart(&d->site_bridge);
        wait_caught_up(m, central, &s);
        test_wait_until(test_objects_show_online(objects, ann) && !test_objects_show_online(objects, cid), 5000);
        g_assert_true(test_objects_show_online(objects, bob));
        g_assert_cmpuint(test_online_count(m), ==, 2);
        assert_stream_whole(&s, from, events_u64(central, "LastSeq"));
        g_assert_cmpint(g_atomic_int_get(&at_site->snapshots), ==, 0);
        g_assert_cmpint(g_atomic_int_get(&at_site->fetches), >=, 1);
        g_assert_true(bridge_process_logged(&d->machine_bridge, "without a snapshot"));

        stream_clear(&s);
        g_clear_object(&objects);
        g_dbus_connection_close_sync(watcher, NULL, NULL);
        arrivals_free(a);
}

/* The site's link to central goes; meanwhile CHANGE happens at central.
 * The site must take the snapshot, and the machine still sees presence
 * as central has it. */
static void outage_with_snapshot(Deployment *d, void (*change)(Deployment *d), const char *why) {
        GDBusConnection *central, *m = d->machine->conn;
        g_autoptr(Monitor) at_central = monitor_new(d->central);

        bridge_process_stop(&d->central_listener, SIGKILL);
        wait_bridge_state(m, "connecting", 5000);
        change(d);
        central = d->central->conn;
        bridge_process_restart(&d->central_listener);
        wait_bridge_state(m, "connected", 20000);
        test_wait_until(generation(m) == generation(central), 10000);
        g_assert_cmpuint(test_online_count(m), ==, test_online_count(central));
        g_assert_cmpint(g_atomic_int_get(&at_central->snapshots), >=, 1);
        g_assert_true(bridge_process_logged(&d->site_bridge, why));
}

static void publish_past_retention(Deployment *d) {
        guint64 seen = events_u64(d->central->conn, "LastSeq");

        publish(d->central->conn, 120);
        /* Retention trims a history over its count about once a second:
         * wait until it has discarded events the site did not see. */
        test_wait_until(events_u64(d->central->conn, "FirstSeq") > seen + 1, 10000);
}

static void test_truncated(void) {
        g_autoptr(Deployment) d = deployment_new("[Events]\nRetentionCount=50\n");
        Stream s;

        stream_init(&s, d->machine->conn);
        publish(d->central->conn, 3);
        test_wait_until(s.seqs->len == 3, 5000);
        outage_with_snapshot(d, publish_past_retention, "cannot resume from event");
        /* What retention discarded is said with a Gap. */
        test_wait_until(s.gaps->len >= 2, 5000);
        g_assert_cmpuint(g_array_index(s.gaps, guint64, 0), ==, 3);
        stream_clear(&s);
}

static void publish_many(Deployment *d) {
        publish(d->central->conn, 1100);
}

/* More missed events than the site may hold while a resume checks them
 * (resume-max-events): it takes the snapshot instead, and the machine
 * still gets every event, in order, with no gap. */
static void test_too_many_to_resume(void) {
        const char *const extra[] = { "--resume-max-events=100", NULL };
        g_autoptr(Deployment) d = deployment_new_with(NULL, extra);
        Stream s;
        guint64 from;

        stream_init(&s, d->machine->conn);
        publish(d->central->conn, 3);
        wait_caught_up(d->machine->conn, d->central->conn, &s);
        from = stream_last(&s);
        outage_with_snapshot(d, publish_many, "more than 100 missed events (resume-max-events)");
        wait_caught_up(d->machine->conn, d->central->conn, &s);
        assert_stream_whole(&s, from, events_u64(d->central->conn, "LastSeq"));
        stream_clear(&s);
}

static void restart_daemon(Deployment *d) {
        test_bus_stop_daemon(d->central, SIGTERM);
        test_bus_start_daemon(d->central, NULL);
}

/* The origin daemon restarted: its presence is gone (and the site's hold
 * of nobody is re-asserted), whatever its history says. */
static void test_new_instance(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autofree char *ann = test_create_user(d->central->conn, "ann", NULL);
        g_autoptr(GDBusConnection) holder = test_bus_connect(d->central);

        go(holder, "GoOnline", ann);
        test_wait_until(test_is_online(d->machine->conn, ann), 5000);
        g_dbus_connection_close_sync(holder, NULL, NULL);
        outage_with_snapshot(d, restart_daemon, "the upstream is another instance");
        g_assert_false(test_is_online(d->machine->conn, ann));
}

static void remove_tree(const char *dir) {
        g_autoptr(GDir) listing = g_dir_open(dir, 0, NULL);
        const char *name;

        while (listing && (name = g_dir_read_name(listing))) {
                g_autofree char *path = g_build_filename(dir, name, NULL);
                if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK))
                        remove_tree(path);
                g_assert_cmpint(g_remove(path), ==, 0);
        }
}

/* The store is lost and started anew: another history. */
static void reset_store(Deployment *d) {
        test_bus_stop_daemon(d->central, SIGTERM);
        remove_tree(d->central->state_dir);
        test_bus_start_daemon(d->central, NULL);
        publish(d->central->conn, 2);
}

static void test_reset(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        Stream s;

        stream_init(&s, d->machine->conn);
        publish(d->central->conn, 5);
        test_wait_until(s.seqs->len == 5, 5000);
        outage_with_snapshot(d, reset_store, "taking a snapshot");
        /* Nothing of the new history was relayed: a Gap from its start. */
        test_wait_until(s.gaps->len >= 2, 5000);
        g_assert_cmpuint(g_array_index(s.gaps, guint64, 0), ==, 0);
        g_assert_cmpuint(g_array_index(s.gaps, guint64, 1), ==, events_u64(d->central->conn, "LastSeq"));
        stream_clear(&s);
}

/* Many calls at once from one client, at most WINDOW of them waiting. */
typedef struct Batch {
        unsigned pending, failed;
        GError *error;
        GPtrArray *ids;         /* of the users CreateUser made, when not NULL */
} Batch;

static void on_batch_reply(GObject *source, GAsyncResult *result, gpointer data) {
        Batch *b = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);

        if (!r) {
                b->failed++;
                if (!b->error)
                        b->error = g_steal_pointer(&error);
        } else if (b->ids && g_variant_is_of_type(r, G_VARIANT_TYPE("(ss)"))) {
                char *id;
                g_variant_get_child(r, 0, "s", &id);
                g_ptr_array_add(b->ids, id);
        }
        b->pending--;
}

static void batch_call(GDBusConnection *c, Batch *b, const char *path, const char *iface, const char *method,
                       GVariant *params) {
        test_wait_until(b->pending < 64, 60000);
        b->pending++;
        g_dbus_connection_call(c, OUTPOST_NAME, path, iface, method, params, NULL, G_DBUS_CALL_FLAGS_NONE, -1,
                               NULL, on_batch_reply, b);
}

static void batch_finish(Batch *b) {
        test_wait_until(b->pending == 0, 120000);
        if (b->error)
                g_error("%u calls failed, the first: %s", b->failed, b->error->message);
}

#define HOLDS 5000
#define HOLDERS 5

/* 5,000 holds from several clients of the machine come back upstream
 * after the machine's link is re-established, and again after the site's:
 * re-asserting them never runs into the listener's limit of calls in
 * flight, and nobody's hold is dropped for it. */
static void test_many_holds_reasserted(void) {
        g_autoptr(Deployment) d = deployment_new("[Presence]\nMaxHoldsPerPeer=20000\n");
        GDBusConnection *central = d->central->conn, *m = d->machine->conn;
        GDBusConnection *holders[HOLDERS];
        g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
        Batch b = { .ids = ids };

        /* The users, made at central without waiting for each. */
        for (unsigned i = 0; i < HOLDS; i++) {
                g_autofree char *name = g_strdup_printf("user%u", i);
                batch_call(central, &b, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                           g_variant_new_parsed("({'name': <%s>},)", name));
        }
        batch_finish(&b);
        g_assert_cmpuint(ids->len, ==, HOLDS);
        b.ids = NULL;

        for (unsigned h = 0; h < HOLDERS; h++)
                holders[h] = test_bus_connect(d->machine);
        for (unsigned i = 0; i < HOLDS; i++)
                batch_call(holders[i % HOLDERS], &b, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                           g_variant_new("(su)", (const char *) ids->pdata[i], 0));
        batch_finish(&b);
        g_assert_cmpuint(test_online_count(central), ==, HOLDS);

        /* The machine's link: its importer re-asserts every hold. */
        g_variant_unref(test_call_ok(m, OUTPOST_BRIDGE_PATH, IFACE_BRIDGE, "Reconnect", NULL, NULL));
        wait_bridge_state(m, "connected", 60000);
        test_wait_until(test_online_count(central) == HOLDS, 30000);
        g_assert_false(bridge_process_logged(&d->machine_bridge, "Could not re-assert"));

        /* The site's link: its importer holds them all for its one peer. */
        bridge_process_stop(&d->central_listener, SIGKILL);
        wait_bridge_state(m, "connecting", 5000);
        bridge_process_restart(&d->central_listener);
        wait_bridge_state(m, "connected", 60000);
        test_wait_until(test_online_count(central) == HOLDS, 30000);
        g_assert_cmpuint(test_online_count(m), ==, HOLDS);
        g_assert_false(bridge_process_logged(&d->site_bridge, "Could not re-assert"));

        for (unsigned h = 0; h < HOLDERS; h++) {
                g_dbus_connection_close_sync(holders[h], NULL, NULL);
                g_object_unref(holders[h]);
        }
        test_wait_until(test_online_count(central) == 0, 30000);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/bridge-resync/resume-without-snapshot", test_resume_without_snapshot);
        g_test_add_func("/bridge-resync/truncated", test_truncated);
        g_test_add_func("/bridge-resync/too-many-to-resume", test_too_many_to_resume);
        g_test_add_func("/bridge-resync/new-instance", test_new_instance);
        g_test_add_func("/bridge-resync/reset", test_reset);
        g_test_add_func("/bridge-resync/many-holds-reasserted", test_many_holds_reasserted);
        return g_test_run();
}
