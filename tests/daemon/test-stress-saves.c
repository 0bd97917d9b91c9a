/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A crash in the middle of a burst of saves (issue 6): 8 clients keep
 * SaveUser calls in flight (several each, one per user they own, each
 * chained on the tag the last one returned) toward 10000 saves, and
 * outpostd is killed with SIGKILL part-way. After a restart, every save
 * that was acknowledged is in the store: each user shows the last
 * acknowledged save of its chain, or the one after it (in flight at the
 * kill: committed, but its reply lost). Then, with the daemon stopped, the
 * store passes PRAGMA integrity_check. */
#include "config.h"

#include <signal.h>
#include <sqlite3.h>
#include <string.h>

#include "harness.h"

#define N_CLIENTS          8
#define CHAINS_PER_CLIENT  4
#define N_CHAINS           (N_CLIENTS * CHAINS_PER_CLIENT)
#define N_SAVES            10000
/* Acknowledged saves before the kill: well into the burst. */
#define KILL_AFTER         3000

typedef struct Burst Burst;

/* One user, saved over and over by one client. */
typedef struct Chain {
        Burst *burst;
        GDBusConnection *conn;
        char *id;
        char *acked_tag;        /* returned by the last acknowledged save */
        guint acked;            /* number of that save (0: the user as created) */
        gboolean lost;          /* a save was sent and got no reply but an error */
} Chain;

struct Burst {
        Chain chains[N_CHAINS];
        guint sent, acked, failed, in_flight;
        gboolean stop;
};

static void send_save(Chain *ch);

static void on_saved(GObject *source, GAsyncResult *result, gpointer user_data) {
        Chain *ch = user_data;
        Burst *b = ch->burst;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);

        b->in_flight--;
        if (!reply) {
                /* Only the kill may fail a save: the daemon left the bus. */
                if (!b->stop)
                        g_error("SaveUser failed before the kill: %s", error->message);
                b->failed++;
                ch->lost = TRUE;
                return;
        }
        g_free(ch->acked_tag);
        g_variant_get(reply, "(s)", &ch->acked_tag);
        ch->acked++;
        b->acked++;
        if (!b->stop)
                send_save(ch);
}

static void send_save(Chain *ch) {
        Burst *b = ch->burst;
        g_autofree char *value = NULL;

        if (b->sent >= N_SAVES)
                return;
        value = g_strdup_printf("save %u", ch->acked + 1);
        b->sent++;
        b->in_flight++;
        g_dbus_connection_call(ch->conn, OUTPOST_NAME, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                               g_variant_new_parsed("(%s, %s, {'display-name': <%s>})", ch->id, ch->acked_tag, value),
                               G_VARIANT_TYPE("(s)"), G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_saved, ch);
}

static void integrity_check(const char *state_dir) {
        g_autofree char *path = g_build_filename(state_dir, "outpost.db", NULL);
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        g_autoptr(GString) result = g_string_new(NULL);

        /* PostgreSQL answers for its own files. */
        if (test_store_is_postgresql())
                return;
        g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
        g_assert_cmpint(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), ==, SQLITE_OK);
        g_assert_cmpint(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), ==, SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW)
                g_string_append_printf(result, "%s\n", (const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
        g_assert_cmpstr(result->str, ==, "ok\n");
}

static void test_kill_during_saves(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GPtrArray) conns = g_ptr_array_new_with_free_func(g_object_unref);
        Burst b = {};
        guint n_in_flight_landed = 0;
        gint64 start;
        int status;

        test_bus_start_daemon(tb, NULL);
        for (guint i = 0; i < N_CLIENTS; i++)
                g_ptr_array_add(conns, test_bus_connect(tb));
        for (guint i = 0; i < N_CHAINS; i++) {
                g_autofree char *name = g_strdup_printf("saver%02u", i);
                Chain *ch = &b.chains[i];

                ch->burst = &b;
                ch->conn = conns->pdata[i % N_CLIENTS];
                ch->id = test_create_user(tb->conn, name, &ch->acked_tag);
        }

        start = g_get_monotonic_time();
        for (guint i = 0; i < N_CHAINS; i++)
                send_save(&b.chains[i]);
        test_wait_until(b.acked >= KILL_AFTER, 25000);
        b.stop = TRUE;
        status = test_bus_stop_daemon(tb, SIGKILL);
        g_assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        g_test_message("killed outpostd after %u acknowledged saves of %u sent, in %.1f s; %u in flight",
                       b.acked, b.sent, (g_get_monotonic_time() - start) / 1e6, b.in_flight);
        /* The bus fails what was in flight once the daemon is gone. */
        test_wait_until(b.in_flight == 0, 20000);
        g_assert_cmpuint(b.acked, <, N_SAVES);

        test_bus_start_daemon(tb, NULL);
        for (guint i = 0; i < N_CHAINS; i++) {
                Chain *ch = &b.chains[i];
                g_autoptr(GVariant) reply = NULL, user = NULL;
                g_autofree char *expected = g_strdup_printf("save %u", ch->acked);
                g_autofree char *next = g_strdup_printf("save %u", ch->acked + 1);
                const char *tag, *display_name = "";

                reply = test_call_ok(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", ch->id),
                                     "(a{sv})");
                g_variant_get(reply, "(@a{sv})", &user);
                g_assert_true(g_variant_lookup(user, "tag", "&s", &tag));
                (void) g_variant_lookup(user, "display-name", "&s", &display_name);
                if (strcmp(tag, ch->acked_tag) == 0) {
                        /* The acknowledged save is the current one. */
                        if (ch->acked > 0)
                                g_assert_cmpstr(display_name, ==, expected);
                } else {
                        /* Only the save in flight at the kill may have
                         * landed after it, unacknowledged. */
                        if (!ch->lost || strcmp(display_name, next) != 0)
                                g_error("user %s: tag %s (%s), but the last acknowledged save %u gave %s",
                                        ch->id, tag, display_name, ch->acked, ch->acked_tag);
                        g_assert_cmpstr(display_name, ==, next);
                        n_in_flight_landed++;
                }
        }
        g_test_message("%u saves in flight at the kill were committed", n_in_flight_landed);

        test_bus_stop_daemon(tb, SIGTERM);
        integrity_check(tb->state_dir);

        for (guint i = 0; i < N_CHAINS; i++) {
                g_free(b.chains[i].id);
                g_free(b.chains[i].acked_tag);
        }
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        g_test_add_func("/stress/saves/kill-during-burst", test_kill_during_saves);
        return g_test_run();
}
