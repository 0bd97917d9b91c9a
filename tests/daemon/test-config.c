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

/* GKeyFile keeps the last of a key set twice and merges a group given
 * twice: outpostd refuses both, naming the file and both lines. */
static void assert_refused_as(TestBus *tb, const char *contents, const char *message) {
        /* No bus there: an outpostd that accepted the file would stop
         * all the same, with another message, instead of serving. */
        const char *const args[] = { "--address=unix:path=/nonexistent/bus", NULL };
        g_autofree char *err = NULL, *expected = NULL;
        int status;

        g_assert_true(g_file_set_contents(tb->config_path, contents, -1, NULL));
        status = test_bus_run_daemon(tb, args, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        expected = g_strdup_printf("%s:%s", tb->config_path, message);
        if (!strstr(err, expected))
                g_error("outpostd said '%s', not '%s'", err, expected);
}

static void test_duplicate_key(void) {
        g_autoptr(TestBus) tb = test_bus_new();

        assert_refused_as(tb, "[Events]\nRetentionCount=5\n\n# again\nRetentionCount = 6\n",
                          "5: duplicate key 'RetentionCount' in group [Events], already set on line 2");
        /* The same key in two groups is two settings. */
        assert_refused_as(tb, "[Limits]\nMaxRecipients=3\n[Presence]\nMaxPeers=4\n  MaxPeers=4\n",
                          "5: duplicate key 'MaxPeers' in group [Presence], already set on line 4");
}

static void test_duplicate_group(void) {
        g_autoptr(TestBus) tb = test_bus_new();

        assert_refused_as(tb, "[Events]\nRetentionCount=5\n[Limits]\nMaxRecipients=3\n[Events]\nRetentionSeconds=9\n",
                          "5: duplicate group [Events], already begun on line 1");
        /* Even when neither sets anything twice. */
        assert_refused_as(tb, "# settings\n[Limits]\n\n[Limits]\n",
                          "4: duplicate group [Limits], already begun on line 2");
}

/* [Limits] may lower the contract's figures, never raise them (issue 6). */
static const struct {
        const char *key;
        unsigned contract;
} limits[] = {
        { "MaxEventDataBytes", 65536 },
        { "MaxEventsPerPage", 10000 },
        { "MaxTopicPrefixes", 64 },
        { "MaxMessageBodyBytes", 65536 },
        { "MaxRecipients", 1000 },
        { "MaxUsersPerPage", 1000 },
        { "MaxDisplayNameLength", 256 },
        { "MaxAttributes", 64 },
        { "MaxAttributeKeyBytes", 64 },
        { "MaxAttributeValueBytes", 4096 },
};

/* outpostd refuses CONTENTS at start, naming the file, LINE, KEY, VALUE
 * and the range up to the contract's figure MAX. */
static void assert_refused(TestBus *tb, const char *contents, unsigned line, const char *key, const char *value,
                           unsigned max) {
        g_autofree char *err = NULL, *expected = NULL;
        int status;

        g_assert_true(g_file_set_contents(tb->config_path, contents, -1, NULL));
        status = test_bus_run_daemon(tb, NULL, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        expected = g_strdup_printf("%s:%u: bad value '%s' for key '%s' in group [Limits]: expected an integer from 1 to %u",
                                   tb->config_path, line, value, key, max);
        if (!strstr(err, expected))
                g_error("outpostd said '%s', not '%s'", err, expected);
}

static void test_limits_refused(void) {
        g_autoptr(TestBus) tb = test_bus_new();

        for (size_t i = 0; i < G_N_ELEMENTS(limits); i++) {
                g_autofree char *above = g_strdup_printf("%u", limits[i].contract + 1);
                g_autofree char *conf_above = g_strdup_printf("# raised\n[Limits]\n%s=%s\n", limits[i].key, above);
                g_autofree char *conf_zero = g_strdup_printf("[Limits]\n\n%s=0\n", limits[i].key);

                assert_refused(tb, conf_above, 3, limits[i].key, above, limits[i].contract);
                assert_refused(tb, conf_zero, 3, limits[i].key, "0", limits[i].contract);
        }
        assert_refused(tb, "[Limits]\nMaxAttributes=-1\n", 2, "MaxAttributes", "-1", 64);
        assert_refused(tb, "[Limits]\nMaxAttributes=many\n", 2, "MaxAttributes", "many", 64);
}

/* Every limit at the contract's figure, and at 1, is accepted. */
static void test_limits_accepted(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GString) highest = g_string_new("[Limits]\n"), lowest = g_string_new("[Limits]\n");

        for (size_t i = 0; i < G_N_ELEMENTS(limits); i++) {
                g_string_append_printf(highest, "%s=%u\n", limits[i].key, limits[i].contract);
                g_string_append_printf(lowest, "%s=1\n", limits[i].key);
        }
        test_bus_start_daemon(tb, highest->str);
        test_bus_stop_daemon(tb, SIGTERM);
        test_bus_start_daemon(tb, lowest->str);
}

/* data/outpostd.conf shows every setting with its default, commented out:
 * with all of them in force, the daemon starts. */
static void test_shipped_file(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *shipped = NULL;
        g_autoptr(GRegex) setting = g_regex_new("^#([A-Za-z]+=)", G_REGEX_MULTILINE, 0, NULL);
        g_autofree char *in_force = NULL;

        g_assert_true(g_file_get_contents(SRCDIR "/data/outpostd.conf", &shipped, NULL, NULL));
        in_force = g_regex_replace(setting, shipped, -1, 0, "\\1", 0, NULL);
        g_assert_nonnull(strstr(in_force, "\nMaxAttributeValueBytes=4096\n"));
        test_bus_start_daemon(tb, in_force);
}

static guint32 get_retention_count(TestBus *tb) {
        g_autoptr(GVariant) reply = NULL, v = NULL;

        reply = test_call_ok(tb->conn, OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Get",
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
        if (test_store_is_postgresql()) {
                /* On the same database it would wait as a standby (DESIGN.md
                 * §5a): another store is another database, made by a daemon
                 * of another bus. */
                g_autoptr(TestBus) other = test_bus_new();
                g_autofree char *config = NULL;

                test_bus_start_daemon(other, NULL);
                test_bus_stop_daemon(other, SIGTERM);
                g_assert_true(g_file_get_contents(other->config_path, &config, NULL, NULL));
                g_assert_true(g_file_set_contents(tb->config_path, config, -1, NULL));
                status = test_bus_run_daemon(tb, NULL, &err);
                g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
                g_assert_nonnull(strstr(err, "already owns"));
                return;
        }
        status = test_bus_run_daemon(tb, NULL, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_nonnull(strstr(err, "already owns"));
}

/* [Store]: a bad backend, or keys of the other backend, are refused; a
 * PostgreSQL server that cannot be reached stops outpostd, naming it. */
static void assert_store_refused(const char *contents, const char *message) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *err = NULL;
        int status;

        g_assert_true(g_file_set_contents(tb->config_path, contents, -1, NULL));
        status = test_bus_run_daemon(tb, NULL, &err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        if (!strstr(err, message))
                g_error("outpostd said '%s', not '%s'", err, message);
        g_assert_false(test_bus_name_has_owner(tb->conn, OUTPOST_NAME));
}

static void test_store_refused(void) {
        assert_store_refused("[Store]\nBackend=oracle\n", "[Store] Backend=oracle: must be sqlite or postgresql");
        assert_store_refused("[Store]\nBackend=postgresql\n", "[Store] Backend=postgresql needs Connection=");
        assert_store_refused("[Store]\nConnection=dbname=outpost\n",
                             "[Store] Connection= is for Backend=postgresql, but Backend is sqlite");
        assert_store_refused("[Store]\nBackend=postgresql\nPath=/var/lib/outpost\nConnection=dbname=x\n",
                             "[Store] Path= is for Backend=sqlite");
}

static void test_store_unreachable(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *conf = NULL, *expected = NULL;

        /* A socket directory with no server in it. */
        conf = g_strdup_printf("[Store]\nBackend=postgresql\nConnection=host=%s port=9 dbname=outpost\n", tb->tmpdir);
        expected = g_strdup_printf("Cannot reach the store, PostgreSQL database outpost on %s:9", tb->tmpdir);
        assert_store_refused(conf, expected);
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
        g_test_add_func("/config/duplicate-key", test_duplicate_key);
        g_test_add_func("/config/duplicate-group", test_duplicate_group);
        g_test_add_func("/config/missing-file-means-defaults", test_missing_file_means_defaults);
        g_test_add_func("/config/limits-refused", test_limits_refused);
        g_test_add_func("/config/limits-accepted", test_limits_accepted);
        g_test_add_func("/config/shipped-file", test_shipped_file);
        g_test_add_func("/daemon/name-already-owned", test_name_already_owned);
        g_test_add_func("/daemon/bad-option", test_bad_option);
        g_test_add_func("/config/store-refused", test_store_refused);
        g_test_add_func("/config/store-unreachable", test_store_unreachable);
        return g_test_run();
}
