/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostd's command line and config file: bad input stops it with a clear
 * message; a missing file means defaults. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

static void test_unknown_key(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *err = NULL;
        g_autofree char *conf = NULL;
        int status;

        g_assert_true(g_file_set_contents(tb->config_path, "[Events]\nRetentionCount=5\n\nBogus=1\n", -1, NULL));
        status = test_bus_run_daemon(tb, NULL, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        conf = g_strdup_printf("%s:4: unknown key 'Bogus' in group [Events]", tb->config_path);
        g_assert_nonnull(strstr(err, conf));
}

static void test_unknown_group(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *err = NULL;
        int status;

        g_assert_true(g_file_set_contents(tb->config_path, "# comment\n[Nope]\nX=1\n", -1, NULL));
        status = test_bus_run_daemon(tb, NULL, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_nonnull(strstr(err, ":2: unknown group [Nope]"));
}

static void test_bad_value(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *err = NULL;
        int status;

        g_assert_true(g_file_set_contents(tb->config_path, "[Events]\nRetentionSeconds=soon\n", -1, NULL));
        status = test_bus_run_daemon(tb, NULL, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_nonnull(strstr(err, ":2: bad value 'soon' for key 'RetentionSeconds'"));
}

static guint32 get_retention_count(TestBus *tb) {
        g_autoptr(GVariant) reply = NULL, v = NULL;

        reply = test_call_ok(tb->conn, OUTPOST_EVENTS, "org.freedesktop.DBus.Properties", "Get",
                             g_variant_new("(ss)", IFACE_EVENTS, "RetentionCount"), "(v)");
        g_variant_get(reply, "(v)", &v);
        return g_variant_get_uint32(v);
}

static void test_missing_file_means_defaults(void) {
        g_autoptr(TestBus) tb = test_bus_new();

        g_assert_false(g_file_test(tb->config_path, G_FILE_TEST_EXISTS));
        test_bus_start_daemon(tb, NULL);
        g_assert_cmpuint(get_retention_count(tb), ==, 100000);
        test_bus_stop_daemon(tb, SIGTERM);

        test_bus_start_daemon(tb, "[Events]\nRetentionCount=7\n");
        g_assert_cmpuint(get_retention_count(tb), ==, 7);
}

static void test_name_already_owned(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *err = NULL;
        int status;

        test_bus_start_daemon(tb, NULL);
        /* A second daemon on another state dir cannot take the name. */
        g_free(tb->state_dir);
        tb->state_dir = g_build_filename(tb->tmpdir, "state2", NULL);
        status = test_bus_run_daemon(tb, NULL, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_nonnull(strstr(err, "already owns"));
}

static void test_bad_option(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *err = NULL;
        const char *args[] = { "--no-such-option", NULL };
        int status;

        status = test_bus_run_daemon(tb, args, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_nonnull(strstr(err, "no-such-option"));
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        g_test_add_func("/config/unknown-key", test_unknown_key);
        g_test_add_func("/config/unknown-group", test_unknown_group);
        g_test_add_func("/config/bad-value", test_bad_value);
        g_test_add_func("/config/missing-file-means-defaults", test_missing_file_means_defaults);
        g_test_add_func("/daemon/name-already-owned", test_name_already_owned);
        g_test_add_func("/daemon/bad-option", test_bad_option);
        return g_test_run();
}
