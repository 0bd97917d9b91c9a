/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The XML in dbus-interfaces/ is the source of truth: what outpostd shows
 * at run time must match it exactly (methods, argument names, types and
 * directions, properties with their access and change signalling,
 * signals). */
#include "config.h"

#include <string.h>

#include "harness.h"

typedef struct Case {
        const char *path;
        const char *interface;
} Case;

static const Case cases[] = {
        { OUTPOST_ROOT,     IFACE_REGISTRY },
        { OUTPOST_USERS_PATH,    IFACE_USERS },
        { OUTPOST_PRESENCE_PATH, IFACE_PRESENCE },
        /* The object of a user the test holds online (path NULL). */
        { NULL,                  IFACE_ONLINE_USER },
        { OUTPOST_MESSAGES_PATH, IFACE_MESSAGES },
        { OUTPOST_EVENTS_PATH,   IFACE_EVENTS },
};

static GDBusInterfaceInfo *interface_from_file(const char *interface) {
        const char *dir = g_getenv("OUTPOST_INTERFACES_DIR") ?: SRCDIR "/dbus-interfaces";
        g_autofree char *file = g_strdup_printf("%s/%s.xml", dir, interface);
        g_autofree char *xml = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GDBusNodeInfo) node = NULL;
        GDBusInterfaceInfo *info;

        g_assert_true(g_file_get_contents(file, &xml, NULL, &error));
        node = g_dbus_node_info_new_for_xml(xml, &error);
        g_assert_no_error(error);
        info = g_dbus_node_info_lookup_interface(node, interface);
        g_assert_nonnull(info);
        return g_dbus_interface_info_ref(info);
}

static GDBusInterfaceInfo *interface_from_daemon(GDBusConnection *c, const char *path, const char *interface) {
        g_autoptr(GVariant) r = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GDBusNodeInfo) node = NULL;
        const char *xml;
        GDBusInterfaceInfo *info;

        r = test_call_ok(c, path, "org.freedesktop.DBus.Introspectable", "Introspect", NULL, "(s)");
        g_variant_get(r, "(&s)", &xml);
        node = g_dbus_node_info_new_for_xml(xml, &error);
        g_assert_no_error(error);
        info = g_dbus_node_info_lookup_interface(node, interface);
        g_assert_nonnull(info);
        return g_dbus_interface_info_ref(info);
}

static guint count(void **array) {
        guint n = 0;
        while (array && array[n])
                n++;
        return n;
}

static void assert_args_equal(const char *what, GDBusArgInfo **want, GDBusArgInfo **got) {
        g_test_message("%s: %u arguments", what, count((void **) want));
        g_assert_cmpuint(count((void **) got), ==, count((void **) want));
        for (guint i = 0; want && want[i]; i++) {
                g_assert_cmpstr(got[i]->name, ==, want[i]->name);
                g_assert_cmpstr(got[i]->signature, ==, want[i]->signature);
        }
}

/* EmitsChangedSignal as declared, with the D-Bus default of "true". */
static const char *emits_changed(GDBusPropertyInfo *p) {
        const char *v = g_dbus_annotation_info_lookup(p->annotations, "org.freedesktop.DBus.Property.EmitsChangedSignal");
        return v ?: "true";
}

static void assert_interfaces_equal(GDBusInterfaceInfo *want, GDBusInterfaceInfo *got) {
        g_assert_cmpuint(count((void **) got->methods), ==, count((void **) want->methods));
        for (guint i = 0; want->methods && want->methods[i]; i++) {
                GDBusMethodInfo *w = want->methods[i];
                GDBusMethodInfo *g = g_dbus_interface_info_lookup_method(got, w->name);
                g_autofree char *in = g_strconcat(w->name, " in", NULL), *out = g_strconcat(w->name, " out", NULL);

                if (!g)
                        g_error("%s: method %s missing at run time", want->name, w->name);
                assert_args_equal(in, w->in_args, g->in_args);
                assert_args_equal(out, w->out_args, g->out_args);
        }

        g_assert_cmpuint(count((void **) got->signals), ==, count((void **) want->signals));
        for (guint i = 0; want->signals && want->signals[i]; i++) {
                GDBusSignalInfo *w = want->signals[i];
                GDBusSignalInfo *g = g_dbus_interface_info_lookup_signal(got, w->name);

                if (!g)
                        g_error("%s: signal %s missing at run time", want->name, w->name);
                assert_args_equal(w->name, w->args, g->args);
        }

        g_assert_cmpuint(count((void **) got->properties), ==, count((void **) want->properties));
        for (guint i = 0; want->properties && want->properties[i]; i++) {
                GDBusPropertyInfo *w = want->properties[i];
                GDBusPropertyInfo *g = g_dbus_interface_info_lookup_property(got, w->name);

                if (!g)
                        g_error("%s: property %s missing at run time", want->name, w->name);
                g_assert_cmpstr(g->signature, ==, w->signature);
                g_assert_cmpint(g->flags, ==, w->flags);
                g_assert_cmpstr(emits_changed(g), ==, emits_changed(w));
        }
}

static void test_interface(gconstpointer data) {
        const Case *c = data;
        g_autoptr(TestBus) tb = test_bus_new();
        GDBusInterfaceInfo *want, *got;

        g_autofree char *path = g_strdup(c->path);

        test_bus_start_daemon(tb, NULL);
        if (!path) {
                g_autofree char *id = test_create_user(tb->conn, "ann", NULL);

                g_variant_unref(test_call_ok(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                             g_variant_new("(su)", id, 0), "(t)"));
                path = test_online_user_path(id);
        }
        want = interface_from_file(c->interface);
        got = interface_from_daemon(tb->conn, path, c->interface);
        assert_interfaces_equal(want, got);
        g_dbus_interface_info_unref(want);
        g_dbus_interface_info_unref(got);
}

/* Every interface file parses and documents each member (gdbus-codegen
 * style comments), so the generated reference is complete. */
static void test_documented(void) {
        const char *names[] = { "Registry", "Users", "Presence", "OnlineUser", "Messages", "Events", "Bridge" };
        const char *dir = g_getenv("OUTPOST_INTERFACES_DIR") ?: SRCDIR "/dbus-interfaces";

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
                g_autofree char *iface = g_strconcat("org.outpost.Outpost1.", names[i], NULL);
                g_autofree char *file = g_strdup_printf("%s/%s.xml", dir, iface);
                g_autofree char *xml = NULL;
                GDBusInterfaceInfo *info = interface_from_file(iface);
                g_autofree char *iface_doc = g_strconcat(iface, ":", NULL);

                g_assert_true(g_file_get_contents(file, &xml, NULL, NULL));
                g_assert_nonnull(strstr(xml, iface_doc));
                for (guint m = 0; info->methods && info->methods[m]; m++) {
                        g_autofree char *doc = g_strconcat(info->methods[m]->name, ":", NULL);
                        if (!strstr(xml, doc))
                                g_error("%s: method %s has no doc comment", iface, info->methods[m]->name);
                }
                for (guint s = 0; info->signals && info->signals[s]; s++) {
                        g_autofree char *doc = g_strconcat(info->signals[s]->name, ":", NULL);
                        if (!strstr(xml, doc))
                                g_error("%s: signal %s has no doc comment", iface, info->signals[s]->name);
                }
                for (guint p = 0; info->properties && info->properties[p]; p++) {
                        g_autofree char *doc = g_strconcat(info->properties[p]->name, ":", NULL);
                        if (!strstr(xml, doc))
                                g_error("%s: property %s has no doc comment", iface, info->properties[p]->name);
                }
                g_dbus_interface_info_unref(info);
        }
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *path = g_strdup_printf("/introspection/%s", strrchr(cases[i].interface, '.') + 1);
                g_test_add_data_func(path, &cases[i], test_interface);
        }
        g_test_add_func("/introspection/documented", test_documented);
        return g_test_run();
}
