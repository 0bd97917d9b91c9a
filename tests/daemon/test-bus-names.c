/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The names the programs take from src/shared/bus-names.h and the table
 * of change methods in src/shared/bus-methods.c must agree with the XML
 * in dbus-interfaces/ and the polkit policy: a method added to the XML
 * without a row in the table would be relayed as a read, unauthorized
 * and outside every peer's scope. No bus is needed for this. */
#include "config.h"

#include <gio/gio.h>
#include <stdbool.h>
#include <string.h>

#include "bus-methods.h"
#include "bus-names.h"

static const char *const service_interfaces[] = {
        REGISTRY_IFACE, USERS_IFACE, PRESENCE_IFACE, ONLINE_USER_IFACE, MESSAGES_IFACE, EVENTS_IFACE,
};

static GDBusNodeInfo *node_from_file(const char *interface) {
        const char *dir = g_getenv("OUTPOST_INTERFACES_DIR") ?: SRCDIR "/dbus-interfaces";
        g_autofree char *file = g_strdup_printf("%s/%s.xml", dir, interface);
        g_autofree char *xml = NULL;
        g_autoptr(GError) error = NULL;
        GDBusNodeInfo *node;

        if (!g_file_get_contents(file, &xml, NULL, &error))
                g_error("%s is spelled in bus-names.h but has no XML: %s", interface, error->message);
        node = g_dbus_node_info_new_for_xml(xml, &error);
        g_assert_no_error(error);
        g_assert_nonnull(g_dbus_node_info_lookup_interface(node, interface));
        return node;
}

static void test_interfaces_have_xml(void) {
        for (size_t i = 0; i < G_N_ELEMENTS(service_interfaces); i++)
                g_dbus_node_info_unref(node_from_file(service_interfaces[i]));
        g_dbus_node_info_unref(node_from_file(BRIDGE_IFACE));
        g_dbus_node_info_unref(node_from_file(LISTENER_IFACE));
        g_assert_true(g_str_has_prefix(LISTENER_PATH, OUTPOST_ROOT_PATH "/"));
        g_assert_true(g_str_has_prefix(USERS_PATH, OUTPOST_ROOT_PATH "/"));
        g_assert_cmpstr(OUTPOST_IFACE_PREFIX, ==, OUTPOST_BUS_NAME ".");
}

static void test_table_methods_exist(void) {
        for (size_t i = 0; i < bus_n_change_methods; i++) {
                const BusChangeMethod *m = &bus_change_methods[i];
                g_autoptr(GDBusNodeInfo) node = node_from_file(m->interface);
                GDBusInterfaceInfo *info = g_dbus_node_info_lookup_interface(node, m->interface);

                if (!g_dbus_interface_info_lookup_method(info, m->member))
                        g_error("the table names %s.%s, which the XML does not have", m->interface, m->member);
                g_assert_true(bus_change_method_find(m->interface, m->member) == m);
                /* A call without an interface is taken for the change
                 * method of its member: there must be only one. */
                for (size_t j = 0; j < i; j++)
                        g_assert_cmpstr(bus_change_methods[j].member, !=, m->member);
        }
        g_assert_null(bus_change_method_find(USERS_IFACE, "GetUser"));
}

/* DESIGN.md §5b: reads are property reads, Get*, List*, Lookup* and
 * FetchSince; everything else must be in the table. */
static bool is_read(const char *member) {
        return g_str_has_prefix(member, "Get") || g_str_has_prefix(member, "List") ||
               g_str_has_prefix(member, "Lookup") || strcmp(member, "FetchSince") == 0;
}

static void test_every_change_in_table(void) {
        for (size_t i = 0; i < G_N_ELEMENTS(service_interfaces); i++) {
                g_autoptr(GDBusNodeInfo) node = node_from_file(service_interfaces[i]);
                GDBusInterfaceInfo *info = node->interfaces[0];

                for (GDBusMethodInfo **m = info->methods; m && *m; m++) {
                        bool listed = bus_change_method_find(info->name, (*m)->name) != NULL;

                        if (listed == is_read((*m)->name))
                                g_error("%s.%s is %s but %s the table of change methods", info->name, (*m)->name,
                                        listed ? "a read" : "a change", listed ? "in" : "missing from");
                }
        }
}

static void test_actions_in_policy(void) {
        g_autofree char *policy = NULL;
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_get_contents(SRCDIR "/data/org.outpost.Outpost1.policy.in", &policy, NULL, &error));
        for (size_t i = 0; i < bus_n_change_methods; i++) {
                g_autofree char *needle = g_strdup_printf("\"%s\"", bus_change_methods[i].polkit_action);

                if (!strstr(policy, needle))
                        g_error("polkit action %s is not in the policy file", bus_change_methods[i].polkit_action);
        }
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/bus-names/interfaces-have-xml", test_interfaces_have_xml);
        g_test_add_func("/bus-names/table-methods-exist", test_table_methods_exist);
        g_test_add_func("/bus-names/every-change-in-table", test_every_change_in_table);
        g_test_add_func("/bus-names/actions-in-policy", test_actions_in_policy);
        return g_test_run();
}
