/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"

static const char *env_or(const char *name, const char *fallback) {
        const char *v = g_getenv(name);
        return v && *v ? v : fallback;
}

/* Children die with the test program, whatever way it ends. */
static void child_setup(gpointer data) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static int call_as_child(void);
static int listen_child(const char *address, const char *end_topic);

gboolean test_store_is_postgresql(void) {
        const char *c = g_getenv("OUTPOST_TEST_POSTGRESQL");
        return c && *c;
}

/* Run SQL on DATABASE of the test's server. */
static void pg_exec(const char *database, const char *sql) {
        g_autofree char *conninfo = g_strconcat(g_getenv("OUTPOST_TEST_POSTGRESQL"), " dbname=", database, NULL);
        PGconn *conn = PQconnectdb(conninfo);
        PGresult *res;

        if (PQstatus(conn) != CONNECTION_OK)
                g_error("Cannot connect to the test's PostgreSQL server (%s): %s", conninfo, PQerrorMessage(conn));
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                g_error("%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(conn);
}

/* Run SQL on the server's maintenance database. */
static void pg_admin(const char *sql) {
        pg_exec("postgres", sql);
}

void test_pg_store_exec(TestBus *tb, const char *sql) {
        TestBus *origin = tb->central ?: tb;

        g_assert_true(test_store_is_postgresql());
        g_assert_nonnull(origin->pg_database);
        pg_exec(origin->pg_database, sql);
}

/* The [Store] group that points outpostd at TB's database, made on first
 * use: a daemon restarted on TB finds what it stored. */
static char *pg_store_group(TestBus *tb) {
        if (!tb->pg_database) {
                g_autofree char *sql = NULL;

                tb->pg_database = g_strdup_printf("outpost_%08x%08x", g_random_int(), g_random_int());
                sql = g_strdup_printf("CREATE DATABASE %s", tb->pg_database);
                pg_admin(sql);
        }
        return g_strdup_printf("\n[Store]\nBackend=postgresql\nConnection=%s dbname=%s\n",
                               g_getenv("OUTPOST_TEST_POSTGRESQL"), tb->pg_database);
}

static void pg_drop_database(TestBus *tb) {
        g_autofree char *sql = NULL;

        if (!tb->pg_database)
                return;
        sql = g_strdup_printf("DROP DATABASE IF EXISTS %s WITH (FORCE)", tb->pg_database);
        pg_admin(sql);
        g_clear_pointer(&tb->pg_database, g_free);
}

void test_init(int *argc, char ***argv) {
        /* test_call_as() and test_listen_as() run the test program again
         * as another user. */
        if (g_getenv("OUTPOST_TEST_CALL_CHILD"))
                exit(call_as_child());
        if (g_getenv("OUTPOST_TEST_LISTEN_CHILD"))
                exit(listen_child(g_getenv("OUTPOST_TEST_LISTEN_CHILD"), g_getenv("OUTPOST_TEST_LISTEN_END")));
        g_test_init(argc, argv, NULL);
        /* A daemon that dies must not kill the test with SIGPIPE. */
        signal(SIGPIPE, SIG_IGN);
}

/* The bus is configured by tests/common/system-bus-conf.sh, as for the
 * shell tests and the demo: like Debian's system bus, with the project's
 * policy included. What only these tests add (root may own the name of
 * the stand-in polkit, a test's EXTRA) is a file it includes last. */
static char *bus_config(const char *tmpdir, const char *extra) {
        const char *policy = env_or("OUTPOST_POLICY", SRCDIR "/data/org.outpost.Outpost1.conf");
        g_autofree char *socket = g_build_filename(tmpdir, "system_bus_socket", NULL);
        g_autofree char *additions_path = g_build_filename(tmpdir, "test-bus.conf", NULL);
        g_autofree char *additions = NULL;
        g_autoptr(GError) error = NULL;
        char *config = NULL;
        int status;

        /* The generator lets an include be missing; the policy must not. */
        g_assert_true(g_file_test(policy, G_FILE_TEST_IS_REGULAR));
        additions = g_strdup_printf(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                "<busconfig>\n"
                "  <policy user=\"root\">\n"
                "    <allow own=\"org.freedesktop.PolicyKit1\"/>\n"
                "    <allow send_destination=\"org.freedesktop.PolicyKit1\"/>\n"
                "  </policy>\n"
                "%s"
                "</busconfig>\n",
                extra ?: "");
        g_assert_true(g_file_set_contents(additions_path, additions, -1, &error));
        g_assert_no_error(error);

        const char *argv[] = { "sh", SRCDIR "/tests/common/system-bus-conf.sh", socket, policy, additions_path, NULL };
        g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &config, NULL, &status, &error);
        g_assert_no_error(error);
        g_assert_true(g_spawn_check_wait_status(status, &error));
        return config;
}

static TestBus *bus_new_with_config(const char *extra) {
        g_autoptr(TestBus) tb = g_new0(TestBus, 1);
        g_autoptr(GError) error = NULL;
        g_autofree char *config = NULL, *config_path = NULL, *config_arg = NULL;
        g_autofree char *line = NULL;
        const char *dbus_daemon = env_or("DBUS_DAEMON", "dbus-daemon");
        g_autoptr(GIOChannel) out = NULL;
        int out_fd;

        tb->tmpdir = g_dir_make_tmp("outpost-test-XXXXXX", &error);
        g_assert_no_error(error);
        /* Other users' clients (test_call_as) reach the bus socket in it. */
        g_assert_cmpint(chmod(tb->tmpdir, 0711), ==, 0);
        tb->state_dir = g_build_filename(tb->tmpdir, "state", NULL);
        tb->config_path = g_build_filename(tb->tmpdir, "outpostd.conf", NULL);

        config = bus_config(tb->tmpdir, extra);
        config_path = g_build_filename(tb->tmpdir, "bus.conf", NULL);
        g_assert_true(g_file_set_contents(config_path, config, -1, &error));
        g_assert_no_error(error);
        config_arg = g_strconcat("--config-file=", config_path, NULL);

        const char *argv[] = { dbus_daemon, config_arg, "--nofork", "--nopidfile", "--print-address=1", NULL };
        g_spawn_async_with_pipes(NULL, (char **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH,
                                 child_setup, NULL, &tb->bus_pid, NULL, &out_fd, NULL, &error);
        g_assert_no_error(error);

        out = g_io_channel_unix_new(out_fd);
        g_io_channel_set_close_on_unref(out, TRUE);
        g_io_channel_read_line(out, &line, NULL, NULL, &error);
        g_assert_no_error(error);
        g_assert_nonnull(line);
        tb->address = g_strstrip(g_steal_pointer(&line));

        tb->conn = test_bus_connect(tb);
        return g_steal_pointer(&tb);
}

static TestBus *bus_new(void) {
        return bus_new_with_config(NULL);
}

TestBus *test_bus_new(void) {
        TestBus *tb = bus_new();

        if (test_bridged())
                test_bridged_setup(tb, bus_new);
        return tb;
}

TestBus *test_bus_new_with_config(const char *extra) {
        g_assert_false(test_bridged());
        return bus_new_with_config(extra);
}

static void kill_and_reap(GPid *pid, int signal) {
        if (*pid <= 0)
                return;
        kill(*pid, signal);
        waitpid(*pid, NULL, 0);
        g_spawn_close_pid(*pid);
        *pid = 0;
}

static void remove_tree(const char *path) {
        g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
        const char *name;

        if (dir)
                while ((name = g_dir_read_name(dir))) {
                        g_autofree char *child = g_build_filename(path, name, NULL);
                        if (g_file_test(child, G_FILE_TEST_IS_DIR) && !g_file_test(child, G_FILE_TEST_IS_SYMLINK))
                                remove_tree(child);
                        else
                                g_unlink(child);
                }
        g_rmdir(path);
}

void test_bus_free(TestBus *tb) {
        if (!tb)
                return;
        /* outpostd must end cleanly on SIGTERM: under the sanitizers a leak
         * or an error at shutdown shows here. */
        if (tb->daemon_pid > 0 || (tb->central && tb->central->daemon_pid > 0))
                test_bus_stop_daemon(tb, SIGTERM);
        test_bridged_free(tb);
        g_clear_pointer(&tb->site, test_bus_free);
        g_clear_pointer(&tb->central, test_bus_free);
        kill_and_reap(&tb->polkit_pid, SIGTERM);
        if (tb->conn) {
                g_dbus_connection_close_sync(tb->conn, NULL, NULL);
                g_object_unref(tb->conn);
        }
        kill_and_reap(&tb->bus_pid, SIGTERM);
        pg_drop_database(tb);
        if (tb->tmpdir)
                remove_tree(tb->tmpdir);
        g_free(tb->tmpdir);
        g_free(tb->address);
        g_free(tb->state_dir);
        g_free(tb->config_path);
        g_free(tb);
}

GDBusConnection *test_bus_connect(TestBus *tb) {
        g_autoptr(GError) error = NULL;
        GDBusConnection *c;

        c = g_dbus_connection_new_for_address_sync(tb->address,
                                                   G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                   G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                   NULL, NULL, &error);
        g_assert_no_error(error);
        g_dbus_connection_set_exit_on_close(c, FALSE);
        return c;
}

gboolean test_bus_name_has_owner(GDBusConnection *c, const char *name) {
        g_autoptr(GVariant) r = NULL;
        gboolean owned = FALSE;

        r = g_dbus_connection_call_sync(c, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                        "NameHasOwner", g_variant_new("(s)", name), G_VARIANT_TYPE("(b)"),
                                        G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL);
        if (r)
                g_variant_get(r, "(b)", &owned);
        return owned;
}

static gboolean name_has_owner(GDBusConnection *c) {
        return test_bus_name_has_owner(c, OUTPOST_NAME);
}

static void spawn_daemon(TestBus *tb, const char *const *extra, GPid *ret_pid, int *ret_stderr_fd) {
        g_autoptr(GPtrArray) argv = g_ptr_array_new();
        g_autoptr(GError) error = NULL;
        g_autofree char *address = g_strconcat("--address=", tb->address, NULL);
        g_autofree char *state = g_strconcat("--state-dir=", tb->state_dir, NULL);
        g_autofree char *config = g_strconcat("--config=", tb->config_path, NULL);

        g_ptr_array_add(argv, (char *) env_or("OUTPOSTD", BUILDDIR "/outpostd"));
        g_ptr_array_add(argv, address);
        g_ptr_array_add(argv, state);
        g_ptr_array_add(argv, config);
        g_ptr_array_add(argv, (char *) env_or("OUTPOSTD_LOG_LEVEL", "--log-level=info"));
        for (size_t i = 0; extra && extra[i]; i++)
                g_ptr_array_add(argv, (char *) extra[i]);
        g_ptr_array_add(argv, NULL);

        if (ret_stderr_fd) {
                g_spawn_async_with_pipes(NULL, (char **) argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD, child_setup,
                                         NULL, ret_pid, NULL, NULL, ret_stderr_fd, &error);
        } else {
                /* The daemon's log goes to a file that is checked when it stops. */
                g_autofree char *log = g_build_filename(tb->tmpdir, "outpostd.log", NULL);
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

                g_assert_cmpint(fd, >=, 0);
                g_spawn_async_with_fds(NULL, (char **) argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD, child_setup,
                                       NULL, ret_pid, -1, -1, fd, &error);
                close(fd);
        }
        g_assert_no_error(error);
}

/* Show what the daemon logged since the last check, and fail the test if
 * it logged an error: tests never provoke one. */
static void check_daemon_log(TestBus *tb) {
        g_autofree char *log = g_build_filename(tb->tmpdir, "outpostd.log", NULL);
        g_autofree char *contents = NULL;
        gsize length = 0;
        g_auto(GStrv) lines = NULL;

        if (!g_file_get_contents(log, &contents, &length, NULL) || length <= tb->daemon_log_offset)
                return;
        lines = g_strsplit(contents + tb->daemon_log_offset, "\n", -1);
        tb->daemon_log_offset = length;
        for (size_t i = 0; lines[i]; i++) {
                if (!lines[i][0])
                        continue;
                g_printerr("outpostd: %s\n", lines[i]);
                if (g_str_has_prefix(lines[i], "<0>") || g_str_has_prefix(lines[i], "<1>") ||
                    g_str_has_prefix(lines[i], "<2>") || g_str_has_prefix(lines[i], "<3>") ||
                    strstr(lines[i], "Sanitizer") || strstr(lines[i], "runtime error"))
                        g_error("outpostd logged an error: %s", lines[i]);
        }
}

void test_bus_spawn_daemon(TestBus *tb, const char *config) {
        g_autoptr(GError) error = NULL;

        g_assert_null(tb->central);
        g_assert_cmpint(tb->daemon_pid, ==, 0);
        /* A test that sets [Store] itself keeps it. */
        if (test_store_is_postgresql() && !(config && strstr(config, "[Store]")) &&
            (config || !g_file_test(tb->config_path, G_FILE_TEST_EXISTS))) {
                g_autofree char *group = pg_store_group(tb);
                g_autofree char *full = g_strconcat(config ?: "", group, NULL);

                g_assert_true(g_file_set_contents(tb->config_path, full, -1, &error));
        } else if (config)
                g_assert_true(g_file_set_contents(tb->config_path, config, -1, &error));
        spawn_daemon(tb, NULL, &tb->daemon_pid, NULL);
}

void test_bus_wait_daemon_serving(TestBus *tb, int timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

        g_assert_cmpint(tb->daemon_pid, >, 0);
        while (!name_has_owner(tb->conn)) {
                int status;

                if (waitpid(tb->daemon_pid, &status, WNOHANG) == tb->daemon_pid) {
                        tb->daemon_pid = 0;
                        g_error("outpostd exited before owning its name (status %d)", status);
                }
                if (g_get_monotonic_time() > deadline)
                        g_error("outpostd did not own %s within %d ms", OUTPOST_NAME, timeout_ms);
                g_usleep(5000);
        }
}

void test_bus_start_daemon(TestBus *tb, const char *config) {
        if (tb->central) {
                test_bus_start_daemon(tb->central, config);
                test_bridged_connect(tb);
                return;
        }
        test_bus_spawn_daemon(tb, config);
        test_bus_wait_daemon_serving(tb, 20000);
}

GPid test_bus_daemon_pid(TestBus *tb) {
        return tb->central ? test_bus_daemon_pid(tb->central) : tb->daemon_pid;
}

int test_bus_stop_daemon(TestBus *tb, int signal) {
        int status = 0;

        if (tb->central) {
                status = test_bus_stop_daemon(tb->central, signal);
                test_bridged_wait_outage(tb);
                return status;
        }

        g_assert_cmpint(tb->daemon_pid, >, 0);
        kill(tb->daemon_pid, signal);
        g_assert_cmpint(waitpid(tb->daemon_pid, &status, 0), ==, tb->daemon_pid);
        g_spawn_close_pid(tb->daemon_pid);
        tb->daemon_pid = 0;
        check_daemon_log(tb);
        if (signal == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                g_error("outpostd did not exit cleanly on SIGTERM (wait status 0x%x)", status);
        /* Let the bus notice the name is gone before anyone restarts it. */
        while (tb->conn && name_has_owner(tb->conn))
                g_usleep(2000);
        return status;
}

int test_bus_wait_daemon_exit(TestBus *tb) {
        int status = 0;

        g_assert_null(tb->central);
        g_assert_cmpint(tb->daemon_pid, >, 0);
        g_assert_cmpint(waitpid(tb->daemon_pid, &status, 0), ==, tb->daemon_pid);
        g_spawn_close_pid(tb->daemon_pid);
        tb->daemon_pid = 0;
        return status;
}

char *test_bus_take_daemon_log(TestBus *tb) {
        g_autofree char *log = g_build_filename(tb->tmpdir, "outpostd.log", NULL);
        g_autofree char *contents = NULL;
        gsize length = 0;
        char *taken;

        g_assert_null(tb->central);
        if (!g_file_get_contents(log, &contents, &length, NULL) || length <= tb->daemon_log_offset)
                return g_strdup("");
        taken = g_strndup(contents + tb->daemon_log_offset, length - tb->daemon_log_offset);
        tb->daemon_log_offset = length;
        return taken;
}

int test_bus_run_daemon(TestBus *tb, const char *const *args, char **ret_stderr) {
        if (tb->central)
                return test_bus_run_daemon(tb->central, args, ret_stderr);
        g_autoptr(GString) err = g_string_new(NULL);
        GPid pid;
        int fd, status = 0;
        char buf[4096];
        ssize_t n;

        spawn_daemon(tb, args, &pid, &fd);
        while ((n = read(fd, buf, sizeof buf)) > 0)
                g_string_append_len(err, buf, n);
        close(fd);
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_spawn_close_pid(pid);
        if (ret_stderr)
                *ret_stderr = g_string_free(g_steal_pointer(&err), FALSE);
        return status;
}

GVariant *test_call(GDBusConnection *c, const char *path, const char *iface, const char *method,
                    GVariant *params, const char *reply_type, GError **error) {
        return g_dbus_connection_call_sync(c, OUTPOST_NAME, path, iface, method, params,
                                           reply_type ? G_VARIANT_TYPE(reply_type) : NULL,
                                           G_DBUS_CALL_FLAGS_NONE, 30000, NULL, error);
}

GVariant *test_call_ok(GDBusConnection *c, const char *path, const char *iface, const char *method,
                       GVariant *params, const char *reply_type) {
        g_autoptr(GError) error = NULL;
        GVariant *r = test_call(c, path, iface, method, params, reply_type, &error);

        g_assert_no_error(error);
        return r;
}

GVariant *test_get_property(GDBusConnection *c, const char *path, const char *iface, const char *name) {
        g_autoptr(GVariant) r = test_call_ok(c, path, IFACE_PROPERTIES, "Get", g_variant_new("(ss)", iface, name), "(v)");
        GVariant *v;

        g_variant_get(r, "(v)", &v);
        return v;
}

char *test_online_user_path(const char *user_id) {
        g_autofree char *segment = g_strdelimit(g_strdup(user_id), "-", '_');

        return g_strconcat(OUTPOST_PRESENCE_PATH "/", segment, NULL);
}

gboolean test_is_online(GDBusConnection *c, const char *user_id) {
        g_autofree char *path = test_online_user_path(user_id);
        g_autoptr(GVariant) r = NULL, id = NULL;
        g_autoptr(GError) error = NULL;

        r = test_call(c, path, IFACE_PROPERTIES, "Get", g_variant_new("(ss)", IFACE_ONLINE_USER, "UserId"), "(v)",
                      &error);
        if (!r)
                return FALSE;
        g_variant_get(r, "(v)", &id);
        g_assert_cmpstr(g_variant_get_string(id, NULL), ==, user_id);
        return TRUE;
}

GDBusObjectManager *test_object_manager_new(GDBusConnection *c) {
        g_autoptr(GError) error = NULL;
        GDBusObjectManager *m;

        m = g_dbus_object_manager_client_new_sync(c, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_NONE, OUTPOST_NAME, OUTPOST_ROOT,
                                                  NULL, NULL, NULL, NULL, &error);
        g_assert_no_error(error);
        return m;
}

gboolean test_objects_show_online(GDBusObjectManager *m, const char *user_id) {
        g_autofree char *path = test_online_user_path(user_id);
        g_autoptr(GDBusInterface) iface = g_dbus_object_manager_get_interface(m, path, IFACE_ONLINE_USER);
        g_autoptr(GVariant) id = NULL;

        if (!iface)
                return FALSE;
        id = g_dbus_proxy_get_cached_property(G_DBUS_PROXY(iface), "UserId");
        return id && strcmp(g_variant_get_string(id, NULL), user_id) == 0;
}

guint test_online_count(GDBusConnection *c) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "OnlineCount");

        return g_variant_get_uint32(v);
}

guint64 test_last_seq(GDBusConnection *c) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "LastSeq");

        return g_variant_get_uint64(v);
}

GHashTable *test_fetch_history_ints(GDBusConnection *c, const char *history, guint64 after, const char *topic,
                                    const char *key) {
        GHashTable *seen = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
        guint64 expected = after + 1;
        gboolean more = TRUE;

        while (more) {
                g_autoptr(GVariant) r = test_call_ok(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                                                     g_variant_new("(stasu)", history, after, NULL, 10000),
                                                     "(a(tsxa{sv})tb)");
                g_autoptr(GVariantIter) events = NULL;
                g_autoptr(GVariant) data = NULL;
                const char *event_topic;
                guint64 seq;

                g_variant_get(r, "(a(tsxa{sv})tb)", &events, &after, &more);
                while (g_variant_iter_next(events, "(t&sx@a{sv})", &seq, &event_topic, NULL, &data)) {
                        gint32 n = -1;

                        g_assert_cmpuint(seq, ==, expected);
                        expected++;
                        if (g_str_equal(event_topic, topic))
                                g_assert_true(g_variant_lookup(data, key, "i", &n));
                        g_hash_table_insert(seen, g_memdup2(&seq, sizeof(seq)), GINT_TO_POINTER(n));
                        g_clear_pointer(&data, g_variant_unref);
                }
        }
        g_assert_cmpuint(expected - 1, ==, test_last_seq(c));
        return seen;
}

void test_assert_dbus_error(GError *error, const char *name, const char *mention) {
        g_autofree char *remote = NULL;
        g_autofree char *full = strchr(name, '.') ? g_strdup(name) : g_strconcat(ERROR_PREFIX, name, NULL);

        g_assert_nonnull(error);
        remote = g_dbus_error_get_remote_error(error);
        if (g_strcmp0(remote, full) != 0)
                g_error("expected error %s, got %s: %s", full, remote ?: "(none)", error->message);
        if (mention && !strstr(error->message, mention))
                g_error("error message '%s' does not mention '%s'", error->message, mention);
}

/* polkit */

#define POLKIT_NAME  "org.freedesktop.PolicyKit1"
#define POLKIT_PATH  "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_IFACE "org.freedesktop.PolicyKit1.Authority"
#define MOCK_IFACE   "org.freedesktop.DBus.Mock"

gboolean test_bus_start_polkit(TestBus *tb) {
        g_autoptr(GError) error = NULL;
        g_autofree char *log = g_build_filename(tb->tmpdir, "polkitd.log", NULL);
        g_auto(GStrv) env = g_environ_setenv(g_get_environ(), "DBUS_SYSTEM_BUS_ADDRESS", tb->address, TRUE);
        const char *argv[] = { env_or("PYTHON3", "/usr/bin/python3"), "-m", "dbusmock", "--template", "polkitd", NULL };
        gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
        int fd;

        g_assert_cmpint(tb->polkit_pid, ==, 0);
        fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        g_assert_cmpint(fd, >=, 0);
        g_spawn_async_with_fds(NULL, (char **) argv, env, G_SPAWN_DO_NOT_REAP_CHILD, child_setup, NULL,
                               &tb->polkit_pid, -1, fd, fd, &error);
        close(fd);
        g_assert_no_error(error);

        while (!test_bus_name_has_owner(tb->conn, POLKIT_NAME)) {
                int status;

                if (waitpid(tb->polkit_pid, &status, WNOHANG) == tb->polkit_pid) {
                        g_autofree char *contents = NULL;

                        g_spawn_close_pid(tb->polkit_pid);
                        tb->polkit_pid = 0;
                        (void) g_file_get_contents(log, &contents, NULL, NULL);
                        g_test_skip_printf("The mock polkitd (python3-dbusmock) did not start: %s", contents ?: "");
                        return FALSE;
                }
                if (g_get_monotonic_time() > deadline)
                        g_error("The mock polkitd did not own %s within 20 s", POLKIT_NAME);
                g_usleep(5000);
        }
        return TRUE;
}

void test_bus_stop_polkit(TestBus *tb) {
        kill_and_reap(&tb->polkit_pid, SIGTERM);
        while (test_bus_name_has_owner(tb->conn, POLKIT_NAME))
                g_usleep(2000);
}

GVariant *test_polkit_mock(TestBus *tb, const char *method, GVariant *params) {
        g_autoptr(GError) error = NULL;
        GVariant *r;

        r = g_dbus_connection_call_sync(tb->conn, POLKIT_NAME, POLKIT_PATH, MOCK_IFACE, method, params, NULL,
                                        G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        g_assert_no_error(error);
        return r;
}

static void call_mock(TestBus *tb, const char *method, GVariant *params) {
        g_variant_unref(test_polkit_mock(tb, method, params));
}

void test_polkit_set_allowed(TestBus *tb, const char *const *actions) {
        const char *const none[] = { NULL };

        call_mock(tb, "SetAllowed", g_variant_new("(^as)", actions ?: none));
}

void test_polkit_challenge(TestBus *tb) {
        /* args[3] is CheckAuthorization's flags: 1 allows user interaction. */
        call_mock(tb, "AddMethod",
                  g_variant_new("(sssss)", POLKIT_IFACE, "CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})",
                                "ret = (args[3] == 1, args[3] != 1, {})"));
}

/* Calls from another user */

gboolean test_can_switch_user(void) {
        if (geteuid() == 0)
                return TRUE;
        g_test_skip("Calls from another user need the tests to run as root");
        return FALSE;
}

typedef struct SwitchUser {
        uid_t uid;
        gid_t gid;
} SwitchUser;

/* In the child, between fork and exec: only system calls. */
static void switch_user(gpointer data) {
        const SwitchUser *s = data;

        if (setgroups(0, NULL) < 0 || setresgid(s->gid, s->gid, s->gid) < 0 || setresuid(s->uid, s->uid, s->uid) < 0)
                _exit(126);
        /* Set after the switch, which clears it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* The child side of test_call_as(): the request on stdin, the outcome on
 * stdout, both as GVariant text. */
/* GDBus's calls need an interface; D-Bus does not: a message of our own. */
static GVariant *call_without_interface(GDBusConnection *c, const char *dest, const char *path, const char *method,
                                        GVariant *params, GError **error) {
        g_autoptr(GDBusMessage) m = g_dbus_message_new_method_call(dest, path, NULL, method);
        g_autoptr(GDBusMessage) reply = NULL;

        g_dbus_message_set_body(m, params);
        reply = g_dbus_connection_send_message_with_reply_sync(c, m, G_DBUS_SEND_MESSAGE_FLAGS_NONE, 30000, NULL,
                                                               NULL, error);
        if (!reply || g_dbus_message_to_gerror(reply, error))
                return NULL;
        return g_variant_ref(g_dbus_message_get_body(reply) ?: g_variant_new("()"));
}

static int call_as_child(void) {
        g_autoptr(GError) error = NULL, call_error = NULL;
        g_autoptr(GIOChannel) in = g_io_channel_unix_new(STDIN_FILENO);
        g_autofree char *text = NULL, *out = NULL;
        g_autoptr(GVariant) request = NULL, params = NULL, reply = NULL, outcome = NULL;
        g_autoptr(GDBusConnection) c = NULL;
        const char *address, *dest, *path, *iface, *method, *reply_type;
        guint32 flags;

        if (g_io_channel_read_to_end(in, &text, NULL, &error) != G_IO_STATUS_NORMAL ||
            !(request = g_variant_parse(G_VARIANT_TYPE("(sssssvsu)"), text, NULL, NULL, &error))) {
                fprintf(stderr, "test_call_as child: bad request: %s\n", error ? error->message : "?");
                return 2;
        }
        g_variant_get(request, "(&s&s&s&s&sv&su)", &address, &dest, &path, &iface, &method, &params, &reply_type, &flags);

        c = g_dbus_connection_new_for_address_sync(address,
                                                   G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                   G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                   NULL, NULL, &call_error);
        if (c && iface[0])
                reply = g_dbus_connection_call_sync(c, dest, path, iface, method, g_steal_pointer(&params),
                                                    reply_type[0] ? G_VARIANT_TYPE(reply_type) : NULL,
                                                    flags, 30000, NULL, &call_error);
        else if (c)
                reply = call_without_interface(c, dest, path, method, g_steal_pointer(&params), &call_error);
        if (reply)
                outcome = g_variant_new("(bssv)", TRUE, "", "", reply);
        else {
                g_autofree char *name = g_dbus_error_get_remote_error(call_error);

                g_dbus_error_strip_remote_error(call_error);
                outcome = g_variant_new("(bssv)", FALSE, name ?: "", call_error->message, g_variant_new("()"));
        }
        out = g_variant_print(g_variant_ref_sink(outcome), TRUE);
        printf("%s\n", out);
        if (c)
                g_dbus_connection_close_sync(c, NULL, NULL);
        return 0;
}

GVariant *test_call_as(TestBus *tb, uid_t uid, gid_t gid, GDBusCallFlags flags, const char *dest,
                       const char *path, const char *iface, const char *method,
                       GVariant *params, const char *reply_type, GError **error) {
        g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                                                            G_SUBPROCESS_FLAGS_STDOUT_PIPE);
        g_autoptr(GSubprocess) child = NULL;
        g_autoptr(GError) local = NULL;
        g_autoptr(GVariant) request = NULL, outcome = NULL, reply = NULL;
        g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
        g_autofree char *text = NULL, *out = NULL;
        SwitchUser su = { .uid = uid, .gid = gid };
        gboolean ok;
        const char *name, *message;

        g_assert_nonnull(self);
        request = g_variant_ref_sink(g_variant_new("(sssssvsu)", tb->address, dest ?: OUTPOST_NAME, path, iface, method,
                                                   params ?: g_variant_new("()"), reply_type ?: "", (guint32) flags));
        text = g_variant_print(request, TRUE);

        g_subprocess_launcher_setenv(launcher, "OUTPOST_TEST_CALL_CHILD", "1", TRUE);
        g_subprocess_launcher_set_child_setup(launcher, switch_user, &su, NULL);
        child = g_subprocess_launcher_spawn(launcher, &local, self, NULL);
        g_assert_no_error(local);
        g_subprocess_communicate_utf8(child, text, NULL, &out, NULL, &local);
        g_assert_no_error(local);
        if (!g_subprocess_get_if_exited(child) || g_subprocess_get_exit_status(child) != 0)
                g_error("test_call_as: the child calling %s as uid %u failed", method, (unsigned) uid);

        outcome = g_variant_parse(G_VARIANT_TYPE("(bssv)"), out, NULL, NULL, &local);
        g_assert_no_error(local);
        g_variant_get(outcome, "(b&s&sv)", &ok, &name, &message, &reply);
        if (ok)
                return g_steal_pointer(&reply);
        if (name[0])
                g_propagate_error(error, g_dbus_error_new_for_dbus_error(name, message));
        else
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", message);
        return NULL;
}

/* Signals received by another user */

/* Only a safety net for a listener whose end marker never comes (the
 * test has failed then): the marker normally ends it at once. */
#define LISTEN_CHILD_TIMEOUT_USEC (120 * G_USEC_PER_SEC)

typedef struct ListenChild {
        const char *end_topic;
        gboolean done;
} ListenChild;

static void on_listened_signal(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                               const char *member, GVariant *params, gpointer data) {
        ListenChild *lc = data;
        const char *topic = "";

        if (g_variant_is_of_type(params, G_VARIANT_TYPE("(tsxa{sv})")))
                g_variant_get_child(params, 1, "&s", &topic);
        printf("%s.%s %s\n", iface, member, topic);
        fflush(stdout);
        if (g_str_equal(iface, IFACE_EVENTS) && g_str_equal(member, "Event") && g_str_equal(topic, lc->end_topic))
                lc->done = TRUE;
}

/* The child side of test_listen_as(): "ready" once subscribed, then a line
 * per signal until the end marker. */
static int listen_child(const char *address, const char *end_topic) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GDBusConnection) c = NULL;
        g_autoptr(GVariant) id = NULL;
        ListenChild lc = { .end_topic = end_topic };
        gint64 deadline = g_get_monotonic_time() + LISTEN_CHILD_TIMEOUT_USEC;

        c = g_dbus_connection_new_for_address_sync(address,
                                                   G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                   G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                                   NULL, NULL, &error);
        if (!c) {
                fprintf(stderr, "test_listen_as child: %s\n", error->message);
                return 2;
        }
        g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, NULL, NULL, NULL, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
                                           on_listened_signal, &lc, NULL);
        /* The bus handles a connection's messages in order: once this is
         * answered, the match rule is in place. */
        id = g_dbus_connection_call_sync(c, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                         "GetId", NULL, G_VARIANT_TYPE("(s)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
        if (!id) {
                fprintf(stderr, "test_listen_as child: %s\n", error->message);
                return 2;
        }
        printf("ready\n");
        fflush(stdout);
        while (!lc.done) {
                if (g_get_monotonic_time() > deadline) {
                        fprintf(stderr, "test_listen_as child: no end marker %s\n", end_topic);
                        return 3;
                }
                g_main_context_iteration(NULL, FALSE);
                g_usleep(1000);
        }
        g_dbus_connection_close_sync(c, NULL, NULL);
        return 0;
}

#define MESSAGES_GROUP "outpost-messages"

static char *stand_in_policy;

static void remove_stand_in_policy(void) {
        if (stand_in_policy)
                g_unlink(stand_in_policy);
}

gid_t test_messages_group(void) {
        static const char *const stand_ins[] = { "daemon", "bin", "sys", "adm" };
        const char *policy = env_or("OUTPOST_POLICY", SRCDIR "/data/org.outpost.Outpost1.conf");
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL, *replaced = NULL, *quoted = NULL;
        g_auto(GStrv) parts = NULL;
        struct group *gr = getgrnam(MESSAGES_GROUP);
        int fd;

        if (gr)
                return gr->gr_gid;
        for (size_t i = 0; !gr && i < G_N_ELEMENTS(stand_ins); i++)
                gr = getgrnam(stand_ins[i]);
        if (!gr)
                return (gid_t) -1;

        g_assert_true(g_file_get_contents(policy, &text, NULL, &error));
        g_assert_no_error(error);
        parts = g_strsplit(text, "group=\"" MESSAGES_GROUP "\"", -1);
        quoted = g_strdup_printf("group=\"%s\"", gr->gr_name);
        replaced = g_strjoinv(quoted, parts);
        fd = g_file_open_tmp("outpost-policy-XXXXXX.conf", &stand_in_policy, &error);
        g_assert_no_error(error);
        close(fd);
        /* Readable by dbus-daemon, whoever it runs as. */
        g_assert_true(g_file_set_contents_full(stand_in_policy, replaced, -1, G_FILE_SET_CONTENTS_NONE, 0644, &error));
        g_assert_no_error(error);
        atexit(remove_stand_in_policy);
        g_setenv("OUTPOST_POLICY", stand_in_policy, TRUE);
        return gr->gr_gid;
}

struct TestListener {
        TestBus *tb;
        GSubprocess *child;
        GDataInputStream *out;
        char *end_topic;
};

TestListener *test_listen_as(TestBus *tb, uid_t uid, gid_t gid) {
        static unsigned n;
        g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE);
        g_autoptr(GError) error = NULL;
        g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
        g_autofree char *line = NULL;
        TestListener *l = g_new0(TestListener, 1);
        SwitchUser su = { .uid = uid, .gid = gid };

        g_assert_nonnull(self);
        l->tb = tb;
        l->end_topic = g_strdup_printf("test.listener-end.%u", ++n);
        g_subprocess_launcher_setenv(launcher, "OUTPOST_TEST_LISTEN_CHILD", tb->address, TRUE);
        g_subprocess_launcher_setenv(launcher, "OUTPOST_TEST_LISTEN_END", l->end_topic, TRUE);
        g_subprocess_launcher_set_child_setup(launcher, switch_user, &su, NULL);
        l->child = g_subprocess_launcher_spawn(launcher, &error, self, NULL);
        g_assert_no_error(error);
        l->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(l->child));
        line = g_data_input_stream_read_line_utf8(l->out, NULL, NULL, &error);
        g_assert_no_error(error);
        if (g_strcmp0(line, "ready") != 0)
                g_error("test_listen_as: the listener as uid %u did not subscribe", (unsigned) uid);
        return l;
}

char **test_listener_finish(TestListener *l) {
        g_autoptr(GStrvBuilder) lines = g_strv_builder_new();
        g_autoptr(GError) error = NULL;
        char *line;

        g_variant_unref(test_call_ok(l->tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                     g_variant_new_parsed("(%s, @a{sv} {})", l->end_topic), "(t)"));
        while ((line = g_data_input_stream_read_line_utf8(l->out, NULL, NULL, &error))) {
                g_strv_builder_add(lines, line);
                g_free(line);
        }
        g_assert_no_error(error);
        g_subprocess_wait(l->child, NULL, &error);
        g_assert_no_error(error);
        if (!g_subprocess_get_if_exited(l->child) || g_subprocess_get_exit_status(l->child) != 0)
                g_error("test_listen_as: the listener failed (see its stderr)");
        g_object_unref(l->out);
        g_object_unref(l->child);
        g_free(l->end_topic);
        g_free(l);
        return g_strv_builder_end(lines);
}

char *test_create_user(GDBusConnection *c, const char *name, char **ret_tag) {
        g_autoptr(GVariant) r = NULL;
        char *id, *tag;

        r = test_call_ok(c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                         g_variant_new_parsed("({'name': <%s>},)", name), "(ss)");
        g_variant_get(r, "(ss)", &id, &tag);
        if (ret_tag)
                *ret_tag = tag;
        else
                g_free(tag);
        return id;
}

static int compare_entries(gconstpointer a, gconstpointer b) {
        const char *x, *y;

        g_variant_get_child(*(GVariant **) a, 0, "&o", &x);
        g_variant_get_child(*(GVariant **) b, 0, "&o", &y);
        return strcmp(x, y);
}

/* The objects of a GetManagedObjects reply ((a{oa{sa{sv}}})) by path: the
 * order of a dictionary on the bus means nothing. */
static void append_objects_sorted(GString *out, GVariant *reply) {
        g_autoptr(GVariant) objects = g_variant_get_child_value(reply, 0);
        g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func((GDestroyNotify) g_variant_unref);
        GVariantIter iter;
        GVariant *entry;

        g_variant_iter_init(&iter, objects);
        while ((entry = g_variant_iter_next_value(&iter)))
                g_ptr_array_add(entries, entry);
        g_ptr_array_sort(entries, compare_entries);
        for (guint i = 0; i < entries->len; i++) {
                g_variant_print_string(entries->pdata[i], out, TRUE);
                g_string_append_c(out, '\n');
        }
}

char *test_state_snapshot(GDBusConnection *c) {
        g_autoptr(GString) out = g_string_new(NULL);
        g_autoptr(GVariant) objects = NULL;
        g_autofree char *cursor = g_strdup("");

        objects = test_call_ok(c, OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL,
                               "(a{oa{sa{sv}}})");
        append_objects_sorted(out, objects);
        do {
                g_autoptr(GVariant) page = NULL, users = NULL;
                g_autofree char *next = NULL;

                page = test_call_ok(c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", cursor, 1000),
                                    "(aa{sv}s)");
                g_variant_get(page, "(@aa{sv}s)", &users, &next);
                g_string_append_c(out, '\n');
                g_variant_print_string(users, out, TRUE);
                g_free(cursor);
                cursor = g_steal_pointer(&next);
        } while (cursor[0]);
        return g_string_free(g_steal_pointer(&out), FALSE);
}

/* Event signals on one connection, in arrival order */


static void on_watched_event(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                     const char *signal, GVariant *params, gpointer data) {
        EventWatch *w = data;

        g_assert_true(g_variant_is_of_type(params, G_VARIANT_TYPE("(tsxa{sv})")));
        g_ptr_array_add(w->events, g_variant_ref(params));
}

static EventWatch *watch_new(GDBusConnection *c, const char *path, const char *iface, const char *member) {
        EventWatch *w = g_new0(EventWatch, 1);

        w->conn = g_object_ref(c);
        w->events = g_ptr_array_new_with_free_func((GDestroyNotify) g_variant_unref);
        w->id = g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, iface, member, path, NULL,
                                                   G_DBUS_SIGNAL_FLAGS_NONE, on_watched_event, w, NULL);
        return w;
}

EventWatch *event_watch_new(GDBusConnection *c) {
        return watch_new(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Event");
}

EventWatch *message_watch_new(GDBusConnection *c) {
        return watch_new(c, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "MessageReceived");
}

void event_watch_free(EventWatch *w) {
        if (!w)
                return;
        g_dbus_connection_signal_unsubscribe(w->conn, w->id);
        /* Unsubscribing defers work to the main context. */
        while (g_main_context_iteration(NULL, FALSE))
                ;
        g_ptr_array_unref(w->events);
        g_object_unref(w->conn);
        g_free(w);
}

/* After this, W holds every Event the daemon sent before now: the reply to
 * a round trip on W's connection comes after them, and their callbacks
 * were queued first. */
void event_watch_sync(EventWatch *w) {
        g_variant_unref(test_call_ok(w->conn, OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Get",
                                     g_variant_new("(ss)", IFACE_EVENTS, "LastSeq"), "(v)"));
        while (g_main_context_iteration(NULL, FALSE))
                ;
}


/* ---- arrivals ----------------------------------------------------------- */

struct Arrivals {
        GDBusConnection *conn;
        guint filter;
        GMutex lock;
        GPtrArray *messages;    /* GDBusMessage, incoming */
};

static GDBusMessage *on_arrival(GDBusConnection *c, GDBusMessage *m, gboolean incoming, gpointer data) {
        Arrivals *a = data;

        if (incoming) {
                g_mutex_lock(&a->lock);
                g_ptr_array_add(a->messages, g_object_ref(m));
                g_mutex_unlock(&a->lock);
        }
        return m;
}

Arrivals *arrivals_new(GDBusConnection *c) {
        Arrivals *a = g_new0(Arrivals, 1);

        g_mutex_init(&a->lock);
        a->messages = g_ptr_array_new_with_free_func(g_object_unref);
        a->conn = g_object_ref(c);
        a->filter = g_dbus_connection_add_filter(c, on_arrival, a, NULL);
        return a;
}

void arrivals_free(Arrivals *a) {
        g_dbus_connection_remove_filter(a->conn, a->filter);
        g_object_unref(a->conn);
        g_ptr_array_unref(a->messages);
        g_mutex_clear(&a->lock);
        g_free(a);
}

guint arrivals_len(Arrivals *a) {
        guint n;

        g_mutex_lock(&a->lock);
        n = a->messages->len;
        g_mutex_unlock(&a->lock);
        return n;
}

static gpointer ref_message(gconstpointer m, gpointer data) {
        return g_object_ref((gpointer) m);
}

GPtrArray *arrivals_snapshot(Arrivals *a) {
        GPtrArray *copy;

        g_mutex_lock(&a->lock);
        copy = g_ptr_array_copy(a->messages, ref_message, NULL);
        g_mutex_unlock(&a->lock);
        g_ptr_array_set_free_func(copy, g_object_unref);
        return copy;
}

int arrivals_find(Arrivals *a, guint from, ArrivalMatch match, gconstpointer data) {
        g_autoptr(GPtrArray) messages = arrivals_snapshot(a);

        for (guint i = from; i < messages->len; i++)
                if (match(messages->pdata[i], data))
                        return (int) i;
        return -1;
}

static gboolean is_reply_to(GDBusMessage *m, gconstpointer data) {
        return g_dbus_message_get_message_type(m) == G_DBUS_MESSAGE_TYPE_METHOD_RETURN &&
               g_dbus_message_get_reply_serial(m) == GPOINTER_TO_UINT(data);
}

int arrivals_find_reply(Arrivals *a, guint32 serial) {
        return arrivals_find(a, 0, is_reply_to, GUINT_TO_POINTER(serial));
}

typedef struct PresenceSignal {
        const char *member;
        const char *path;
        guint64 generation;
} PresenceSignal;

static gboolean is_presence_signal(GDBusMessage *m, gconstpointer data) {
        const PresenceSignal *w = data;
        GVariant *body = g_dbus_message_get_body(m);
        g_autoptr(GVariant) dict = NULL;
        const char *object;
        guint64 g = 0;

        if (g_dbus_message_get_message_type(m) != G_DBUS_MESSAGE_TYPE_SIGNAL ||
            g_strcmp0(g_dbus_message_get_member(m), w->member) != 0 || !body)
                return FALSE;
        if (g_str_has_prefix(w->member, "Interfaces")) {
                g_variant_get_child(body, 0, "&o", &object);
                return strcmp(object, w->path) == 0;
        }
        if (strcmp(w->member, "PropertiesChanged") == 0) {
                if (g_strcmp0(g_dbus_message_get_path(m), w->path) != 0)
                        return FALSE;
                dict = g_variant_get_child_value(body, 1);
        } else
                dict = g_variant_get_child_value(body, 3);      /* an Event's data */
        return g_variant_lookup(dict, strcmp(w->member, "Event") == 0 ? "generation" : "Generation", "t", &g) &&
               g == w->generation;
}

int arrivals_find_presence(Arrivals *a, guint from, const char *member, const char *path, guint64 generation) {
        PresenceSignal w = { member, path, generation };

        return arrivals_find(a, from, is_presence_signal, &w);
}
