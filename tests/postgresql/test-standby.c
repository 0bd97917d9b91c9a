/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Active and standby outpostd on one PostgreSQL database (DESIGN.md §5a):
 * two daemons on two private buses share one database; the second waits
 * as a standby, owning nothing, and takes over when the first is killed,
 * with a new InstanceId and the same ServerId, HistoryId and sequence
 * numbers. A database restart under an active daemon makes it give up its
 * name and exit non-zero, failing the calls in flight with Disconnected;
 * a daemon started again (as systemd would) serves on with nothing
 * acknowledged lost and no gap. Run by run-postgresql.sh, which starts
 * the server; skipped without it. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

#define TAKEOVER_TIMEOUT_MS 20000

static char *registry_string(GDBusConnection *c, const char *name) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_ROOT, IFACE_REGISTRY, name);

        return g_variant_dup_string(v, NULL);
}

static char *history_id(GDBusConnection *c) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "HistoryId");

        return g_variant_dup_string(v, NULL);
}

static guint64 publish(GDBusConnection *c, gint32 n) {
        g_autoptr(GVariant) r = test_call_ok(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                             g_variant_new_parsed("('failover', {'n': <%i>})", n), "(t)");
        guint64 seq;

        g_variant_get(r, "(t)", &seq);
        return seq;
}

/* Whether outpostd of TB logged TEXT, in all it logged so far. */
static gboolean logged(TestBus *tb, const char *text) {
        g_autofree char *path = g_build_filename(tb->tmpdir, "outpostd.log", NULL);
        g_autofree char *contents = NULL;

        return g_file_get_contents(path, &contents, NULL, NULL) && strstr(contents, text);
}

static gint32 event_n(GHashTable *history, guint64 seq) {
        gpointer n;

        g_assert_true(g_hash_table_lookup_extended(history, &seq, NULL, &n));
        return GPOINTER_TO_INT(n);
}

/* The config of TB's outpostd: its [Store] names the database. */
static char *daemon_config(TestBus *tb) {
        char *contents = NULL;

        g_assert_true(g_file_get_contents(tb->config_path, &contents, NULL, NULL));
        return contents;
}

/* ACTIVE serves; STANDBY is started on the same database and waits. */
static void start_pair(TestBus *active, TestBus *standby) {
        g_autofree char *config = NULL;

        test_bus_start_daemon(active, NULL);
        config = daemon_config(active);
        test_bus_spawn_daemon(standby, config);
        test_wait_until(logged(standby, "Standby: another outpostd holds the lock"), TAKEOVER_TIMEOUT_MS);
        g_assert_false(test_bus_name_has_owner(standby->conn, OUTPOST_NAME));
}

static void test_takeover_after_kill(void) {
        g_autoptr(TestBus) tb1 = test_bus_new();
        g_autoptr(TestBus) tb2 = test_bus_new();
        g_autofree char *user_id = NULL, *server = NULL, *history = NULL, *instance = NULL;
        g_autofree char *server2 = NULL, *history2 = NULL, *instance2 = NULL;
        g_autoptr(GHashTable) events = NULL;
        g_autoptr(GVariant) user = NULL;
        guint64 last = 0;
        gint64 killed;

        if (!test_store_is_postgresql()) {
                g_test_skip("needs a PostgreSQL server (run by run-postgresql.sh)");
                return;
        }
        start_pair(tb1, tb2);
        user_id = test_create_user(tb1->conn, "ann", NULL);
        for (gint32 n = 1; n <= 5; n++)
                last = publish(tb1->conn, n);
        server = registry_string(tb1->conn, "ServerId");
        instance = registry_string(tb1->conn, "InstanceId");
        history = history_id(tb1->conn);
        /* Still standby after the writes: it waits for the session, not
         * for a moment of quiet. */
        g_assert_false(test_bus_name_has_owner(tb2->conn, OUTPOST_NAME));

        killed = g_get_monotonic_time();
        test_bus_stop_daemon(tb1, SIGKILL);
        test_bus_wait_daemon_serving(tb2, TAKEOVER_TIMEOUT_MS);
        g_test_message("the standby served %.2f s after the active one was killed",
                       (double) (g_get_monotonic_time() - killed) / G_USEC_PER_SEC);
        g_assert_true(logged(tb2, "this outpostd is now the active one"));

        server2 = registry_string(tb2->conn, "ServerId");
        instance2 = registry_string(tb2->conn, "InstanceId");
        history2 = history_id(tb2->conn);
        g_assert_cmpstr(server2, ==, server);
        g_assert_cmpstr(history2, ==, history);
        g_assert_cmpstr(instance2, !=, instance);
        g_assert_cmpuint(test_last_seq(tb2->conn), ==, last);
        g_assert_cmpuint(publish(tb2->conn, 6), ==, last + 1);
        user = test_call_ok(tb2->conn, OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser", g_variant_new("(s)", "ann"),
                            "(a{sv})");
        events = test_fetch_history_ints(tb2->conn, history, 0, "failover", "n");
        g_assert_cmpint(event_n(events, last + 1), ==, 6);
}

/* Publish in a loop, one call at a time, until a call fails. */
typedef struct Writer {
        GDBusConnection *conn;
        GArray *acked;          /* seq of the Nth acknowledged Publish, N from 1 */
        GError *error;
        gint64 failed_at;
} Writer;

static void writer_next(Writer *w);

static void on_published(GObject *source, GAsyncResult *res, gpointer userdata) {
        Writer *w = userdata;
        g_autoptr(GVariant) r = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &w->error);
        guint64 seq;

        if (!r) {
                w->failed_at = g_get_monotonic_time();
                return;
        }
        g_variant_get(r, "(t)", &seq);
        g_array_append_val(w->acked, seq);
        writer_next(w);
}

static void writer_next(Writer *w) {
        g_dbus_connection_call(w->conn, OUTPOST_NAME, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                               g_variant_new_parsed("('failover', {'n': <%i>})", (gint32) w->acked->len + 1),
                               G_VARIANT_TYPE("(t)"), G_DBUS_CALL_FLAGS_NONE, 60000, NULL, on_published, w);
}

static void on_restarted(GPid pid, gint status, gpointer userdata) {
        gboolean *done = userdata;

        g_assert_true(g_spawn_check_wait_status(status, NULL));
        g_spawn_close_pid(pid);
        *done = TRUE;
}

/* Restart the server (pg_ctl restart -m fast) while the main loop runs,
 * so that the writer's calls go on meanwhile. */
static void restart_server(void) {
        const char *argv[] = { g_getenv("OUTPOST_TEST_PG_RESTART"), NULL };
        g_autoptr(GError) error = NULL;
        gboolean done = FALSE;
        GPid pid;

        g_assert_true(g_spawn_async(NULL, (char **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, &error));
        g_assert_no_error(error);
        g_child_watch_add(pid, on_restarted, &done);
        test_wait_until(done, 60000);
}

/* The call in flight failed with a clear error, not a timeout: the
 * daemon's Disconnected, or the bus's once the name was gone. */
static void assert_outage_error(const GError *error) {
        g_autofree char *name = g_dbus_error_get_remote_error(error);

        g_test_message("the call in flight failed with %s: %s", name, error->message);
        if (g_strcmp0(name, ERROR_PREFIX "Disconnected") == 0) {
                /* In flight, or received once the session was lost. */
                g_assert_true(strstr(error->message, "the call may have been carried out") ||
                              strstr(error->message, "the call was not carried out"));
                return;
        }
        g_assert_true(g_strcmp0(name, "org.freedesktop.DBus.Error.ServiceUnknown") == 0 ||
                      g_strcmp0(name, "org.freedesktop.DBus.Error.NameHasNoOwner") == 0 ||
                      (g_strcmp0(name, "org.freedesktop.DBus.Error.NoReply") == 0 &&
                       strstr(error->message, "disconnected")));
}

/* What the daemon that lost its session logged and how it ended. */
static void assert_exited_on_session_loss(TestBus *tb, const char *why) {
        int status = test_bus_wait_daemon_exit(tb);
        g_autofree char *log = test_bus_take_daemon_log(tb);

        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), !=, 0);
        g_test_message("outpostd logged:\n%s", log);
        if (!strstr(log, why))
                g_error("outpostd did not log '%s'", why);
}

static void test_database_restart(void) {
        g_autoptr(TestBus) tb1 = test_bus_new();
        g_autoptr(TestBus) tb2 = test_bus_new();
        g_autofree char *server = NULL, *history = NULL, *server2 = NULL, *history2 = NULL;
        g_autoptr(GArray) acked = g_array_new(FALSE, FALSE, sizeof(guint64));
        g_autoptr(GHashTable) events = NULL;
        Writer w = { .acked = acked };
        guint64 last_acked, last;

        if (!test_store_is_postgresql() || !g_getenv("OUTPOST_TEST_PG_RESTART")) {
                g_test_skip("run-postgresql.sh did not say how to restart the server");
                return;
        }
        start_pair(tb1, tb2);
        server = registry_string(tb1->conn, "ServerId");
        history = history_id(tb1->conn);

        w.conn = tb1->conn;
        writer_next(&w);
        test_wait_until(acked->len >= 20, TAKEOVER_TIMEOUT_MS);
        restart_server();

        /* The active one stops serving and exits non-zero; the call in
         * flight is answered at once, the standby's session went too. */
        test_wait_until(w.error, TAKEOVER_TIMEOUT_MS);
        assert_outage_error(w.error);
        assert_exited_on_session_loss(tb1, "the session with the store");
        g_assert_false(test_bus_name_has_owner(tb1->conn, OUTPOST_NAME));
        assert_exited_on_session_loss(tb2, "while this outpostd was a standby");

        /* systemd starts both again: the first to take the lock serves,
         * the other waits, and stops cleanly as a standby. */
        test_bus_start_daemon(tb2, NULL);
        test_bus_spawn_daemon(tb1, NULL);
        test_wait_until(logged(tb1, "Standby: another outpostd holds the lock"), TAKEOVER_TIMEOUT_MS);
        test_bus_stop_daemon(tb1, SIGTERM);

        server2 = registry_string(tb2->conn, "ServerId");
        history2 = history_id(tb2->conn);
        g_assert_cmpstr(server2, ==, server);
        g_assert_cmpstr(history2, ==, history);
        /* Every acknowledged event is there; the one in flight may be. */
        last_acked = g_array_index(acked, guint64, acked->len - 1);
        last = test_last_seq(tb2->conn);
        g_assert_cmpuint(last, >=, last_acked);
        g_assert_cmpuint(last, <=, last_acked + 1);
        events = test_fetch_history_ints(tb2->conn, history, 0, "failover", "n");
        for (guint i = 0; i < acked->len; i++)
                g_assert_cmpint(event_n(events, g_array_index(acked, guint64, i)), ==, (gint32) i + 1);
        g_assert_cmpuint(publish(tb2->conn, 0), ==, last + 1);
        g_clear_error(&w.error);
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        g_test_add_func("/standby/takeover-after-kill", test_takeover_after_kill);
        g_test_add_func("/standby/database-restart", test_database_restart);
        return g_test_run();
}
