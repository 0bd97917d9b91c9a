/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit trail (DESIGN.md §5b): each change outpostd carries out is
 * logged once, with the caller as the bus knows it (uid, pid) and the
 * change's result, so that the new tag of a SaveUser finds it. Without
 * journald (as here) the facts are one log line; under journald the same
 * facts are journal fields (tests/system checks those). */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "harness.h"

/* The audit lines of outpostd's log since the last look. */
static char **audit_lines(TestBus *tb) {
        g_autofree char *log = test_bus_take_daemon_log(tb);
        g_auto(GStrv) lines = g_strsplit(log, "\n", -1);
        g_autoptr(GPtrArray) audit = g_ptr_array_new();

        for (size_t i = 0; lines[i]; i++)
                if (strstr(lines[i], "audit: "))
                        g_ptr_array_add(audit, g_strdup(lines[i]));
        g_ptr_array_add(audit, NULL);
        return (char **) g_ptr_array_free(g_steal_pointer(&audit), FALSE);
}

static void assert_one_line_with(char **lines, const char *a, const char *b, const char *c) {
        guint n = 0;

        for (size_t i = 0; lines[i]; i++)
                if (strstr(lines[i], a) && strstr(lines[i], b) && (!c || strstr(lines[i], c)))
                        n++;
        if (n != 1) {
                for (size_t i = 0; lines[i]; i++)
                        g_printerr("%s\n", lines[i]);
                g_error("expected one audit line with '%s', '%s' and '%s', found %u", a, b, c ?: "", n);
        }
}

static void test_changes_logged(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *tag = NULL, *by = g_strdup_printf("by uid=%u pid=", (unsigned) geteuid());
        g_autofree char *id = NULL, *subject = NULL, *seq_text = NULL;
        g_autoptr(GVariant) saved = NULL, published = NULL;
        g_auto(GStrv) lines = NULL;
        const char *new_tag;
        guint64 seq;

        if (test_bridged()) {
                g_test_skip("outpostd's own log is read here");
                return;
        }
        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "audited", &tag);
        saved = test_call_ok(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                             g_variant_new_parsed("(%s, %s, {'email': <'a@example.org'>})", id, tag), "(s)");
        g_variant_get(saved, "(&s)", &new_tag);
        published = test_call_ok(tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                 g_variant_new_parsed("('kiosk/door', @a{sv} {})"), "(t)");
        g_variant_get(published, "(t)", &seq);

        lines = audit_lines(tb);
        subject = g_strdup_printf("Users.SaveUser('%s')", id);
        assert_one_line_with(lines, subject, by, new_tag);
        assert_one_line_with(lines, "Users.CreateUser", by, tag);
        seq_text = g_strdup_printf(": %" G_GUINT64_FORMAT, seq);
        assert_one_line_with(lines, "Events.Publish('kiosk/door')", by, seq_text);
}

/* A change refused before it was carried out is not a change. */
static void test_refused_not_logged(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        g_autofree char *tag = NULL, *id = NULL;
        g_auto(GStrv) lines = NULL;

        if (test_bridged()) {
                g_test_skip("outpostd's own log is read here");
                return;
        }
        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "conflicted", &tag);
        r = test_call(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                      g_variant_new_parsed("(%s, 'not-the-tag', @a{sv} {})", id), "(s)", &error);
        g_assert_null(r);
        lines = audit_lines(tb);
        for (size_t i = 0; lines[i]; i++)
                g_printerr("%s\n", lines[i]);
        g_assert_cmpuint(g_strv_length(lines), ==, 1);  /* the CreateUser */
        g_assert_nonnull(strstr(lines[0], "Users.CreateUser"));
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        g_test_add_func("/audit/changes-logged", test_changes_logged);
        g_test_add_func("/audit/refused-not-logged", test_refused_not_logged);
        return g_test_run();
}
