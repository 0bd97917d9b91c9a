/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who is connected to a listener (DESIGN.md §5b): the listener answers
 * org.outpost.Outpost1.Listener.ListPeers on its local bus, under a name
 * of its own, to root and the bridge's account only, and "outpostctl
 * bridge peers" shows it. Peers are raw sd-bus connections over the real
 * TLS link (peer-link.h), with the certificates of
 * tests/common/make-test-certs.sh; the bus has the project's policy. */
#include "config.h"

#include <string.h>
#include <sys/wait.h>

#include "bridge-harness.h"
#include "peer-link.h"

#define LISTENER_NAME  "org.outpost.Outpost1.Listener"
#define LISTENER_PATH  OUTPOST_ROOT "/listener"
#define IFACE_LISTENER "org.outpost.Outpost1.Listener"

#define RULES "[Peers]\nkiosk-*=read;presence\nsite-*=read;presence;send;publish;users\n"

/* Central with a listener configured with RULES, on BUS. */
static void central_start_with_rules(Central *c, TestBus *bus) {
        g_autofree char *path = g_build_filename(bridge_test_certs(), "listener-peers.conf", NULL);
        g_autofree char *option = g_strconcat("--config=", path, NULL);
        const char *extra[] = { option, NULL };

        g_assert_true(g_file_set_contents(path, RULES, -1, NULL));
        central_start_on(c, bus, extra);
        test_wait_until(test_bus_name_has_owner(c->bus->conn, LISTENER_NAME), 10000);
}

static char *create_user(TestBus *bus, const char *name) {
        g_autoptr(GVariant) r = test_call_ok(bus->conn, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                                            g_variant_new_parsed("({'name': <%s>},)", name), "(ss)");
        char *id = NULL;

        g_variant_get(r, "(ss)", &id, NULL);
        return id;
}

static void go_online(Central *c, sd_bus *bus, const char *user) {
        Call r;

        call(c->event, bus, NULL, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline", &r, "su", user, 0);
        if (!r.ok)
                g_error("GoOnline failed: %s: %s", r.error.name, r.error.message);
}

/* ListPeers as the test (root): the array of a{sv}. */
static GVariant *list_peers(Central *c) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(c->bus->conn, LISTENER_NAME, LISTENER_PATH,
                                                            IFACE_LISTENER, "ListPeers", NULL,
                                                            G_VARIANT_TYPE("(aa{sv})"), G_DBUS_CALL_FLAGS_NONE,
                                                            10000, NULL, &error);

        g_assert_no_error(error);
        return g_variant_get_child_value(r, 0);
}

static GVariant *find_peer(GVariant *peers, const char *name) {
        for (gsize i = 0; i < g_variant_n_children(peers); i++) {
                g_autoptr(GVariant) peer = g_variant_get_child_value(peers, i);
                const char *n = NULL;

                if (g_variant_lookup(peer, "name", "&s", &n) && g_str_equal(n, name))
                        return g_steal_pointer(&peer);
        }
        g_error("peer %s is not listed", name);
}

static guint peer_count(Central *c) {
        g_autoptr(GVariant) peers = list_peers(c);

        return g_variant_n_children(peers);
}

/* The peer NAME as listed: its scopes joined with ';', its holds, and
 * that the rest is sound. */
static void assert_peer(GVariant *peers, const char *name, const char *scopes, guint holds, guint64 min_calls) {
        g_autoptr(GVariant) peer = find_peer(peers, name);
        g_autofree const char **scope_list = NULL;
        g_autofree char *joined = NULL;
        const char *address = NULL;
        gint64 since = 0;
        guint64 calls = 0, queued = 0;
        guint n_holds = 0, in_flight = 1, connection = 0;

        g_assert_true(g_variant_lookup(peer, "address", "&s", &address));
        g_assert_true(g_str_has_prefix(address, "127.0.0.1:"));
        g_assert_true(g_variant_lookup(peer, "scopes", "^a&s", &scope_list));
        joined = g_strjoinv(";", (char **) scope_list);
        g_assert_cmpstr(joined, ==, scopes);
        g_assert_true(g_variant_lookup(peer, "connected-since", "x", &since));
        g_assert_cmpint(since, <=, g_get_real_time());
        g_assert_cmpint(since, >, g_get_real_time() - 120 * G_USEC_PER_SEC);
        g_assert_true(g_variant_lookup(peer, "calls-relayed", "t", &calls));
        g_assert_cmpuint(calls, >=, min_calls);
        g_assert_true(g_variant_lookup(peer, "calls-in-flight", "u", &in_flight));
        g_assert_cmpuint(in_flight, ==, 0);
        g_assert_true(g_variant_lookup(peer, "holds", "u", &n_holds));
        g_assert_cmpuint(n_holds, ==, holds);
        g_assert_true(g_variant_lookup(peer, "queued-bytes", "t", &queued));
        g_assert_cmpuint(queued, <, 1u << 20);
        g_assert_true(g_variant_lookup(peer, "bus-connection", "u", &connection));
        g_assert_cmpuint(connection, >=, 1);
}

/* Run outpostctl on the bus of C with ARGS; its exit status, its output in
 * *RET_OUT and *RET_ERR. */
static int run_ctl(TestBus *bus, const char *const *args, char **ret_out, char **ret_err) {
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        int status = 0;

        g_ptr_array_add(argv, g_strdup(OUTPOSTCTL));
        g_ptr_array_add(argv, g_strconcat("--address=", bus->address, NULL));
        for (const char *const *a = args; *a; a++)
                g_ptr_array_add(argv, g_strdup(*a));
        g_ptr_array_add(argv, NULL);
        g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, ret_out, ret_err, &status,
                     &error);
        g_assert_no_error(error);
        g_assert_true(WIFEXITED(status));
        g_test_message("outpostctl: %d\n%s%s", WEXITSTATUS(status), *ret_out, *ret_err);
        return WEXITSTATUS(status);
}

/* The line of the table that begins with NAME. */
static char *table_line(const char *out, const char *name) {
        g_auto(GStrv) lines = g_strsplit(out, "\n", -1);

        for (char **l = lines; *l; l++)
                if (g_str_has_prefix(*l, name) && (*l)[strlen(name)] == ' ')
                        return g_strdup(*l);
        g_error("no line for %s in:\n%s", name, out);
}

static void assert_ctl_lists(Central *c) {
        g_autofree char *out = NULL, *err = NULL, *kiosk = NULL, *site = NULL;

        g_assert_cmpint(run_ctl(c->bus, (const char *const[]) { "bridge", "peers", NULL }, &out, &err), ==, 0);
        g_assert_true(g_str_has_prefix(out, "NAME "));
        g_assert_nonnull(strstr(out, "CONNECTED SINCE"));
        kiosk = table_line(out, "kiosk-1");
        site = table_line(out, "site-1");
        g_assert_nonnull(strstr(kiosk, " 127.0.0.1:"));
        g_assert_nonnull(strstr(kiosk, " read;presence "));
        g_assert_nonnull(strstr(site, " read;presence;send;publish;users "));
        g_assert_true(g_str_has_suffix(out, "\n2 peers connected.\n"));
        g_free(g_steal_pointer(&out));
        g_free(g_steal_pointer(&err));

        g_assert_cmpint(run_ctl(c->bus, (const char *const[]) { "--json", "bridge", "peers", NULL }, &out, &err),
                        ==, 0);
        g_assert_nonnull(strstr(out, "\"peer-count\":2"));
        g_assert_nonnull(strstr(out, "\"name\":\"kiosk-1\""));
        g_assert_nonnull(strstr(out, "\"scopes\":[\"read\",\"presence\"]"));
        g_assert_nonnull(strstr(out, "\"holds\":1"));
        g_assert_nonnull(strstr(out, "\"holds\":2"));
}

static void test_peers_listed(void) {
        Central c = {};
        Dial *kiosk = NULL, *site = NULL;
        g_autofree char *ann = NULL, *bob = NULL;
        g_autoptr(GVariant) peers = NULL, after = NULL;
        sd_bus *kiosk_bus, *site_bus;

        central_start_with_rules(&c, test_bus_new());
        g_assert_cmpuint(peer_count(&c), ==, 0);
        ann = create_user(c.bus, "ann");
        bob = create_user(c.bus, "bob");

        kiosk_bus = connect_as(&c, "kiosk-1", &kiosk);
        site_bus = connect_as(&c, "site-1", &site);
        go_online(&c, kiosk_bus, ann);
        go_online(&c, site_bus, ann);
        go_online(&c, site_bus, bob);

        peers = list_peers(&c);
        g_assert_cmpuint(g_variant_n_children(peers), ==, 2);
        assert_peer(peers, "kiosk-1", "read;presence", 1, 1);
        assert_peer(peers, "site-1", "read;presence;send;publish;users", 2, 2);
        assert_ctl_lists(&c);

        /* A peer whose link drops leaves the list, and its holds with it. */
        sd_bus_close_unref(kiosk_bus);
        dial_free(kiosk);
        test_wait_until(peer_count(&c) == 1, 10000);
        after = list_peers(&c);
        assert_peer(after, "site-1", "read;presence;send;publish;users", 2, 2);

        sd_bus_close_unref(site_bus);
        dial_free(site);
        central_stop(&c);
}

/* The bus policy refuses everyone else; past a policy that lets a user
 * through, the listener refuses the uid itself. */
static void test_others_refused(void) {
        static const char let_nobody_through[] =
                "  <policy user=\"nobody\">\n"
                "    <allow send_destination=\"" LISTENER_NAME "\"/>\n"
                "  </policy>\n";
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        Central c = {};

        if (!test_can_switch_user())
                return;
        central_start_with_rules(&c, test_bus_new());
        r = test_call_as(c.bus, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, LISTENER_NAME,
                         LISTENER_PATH, IFACE_LISTENER, "ListPeers", NULL, "(aa{sv})", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", NULL);
        g_assert_null(strstr(error->message, "may not list"));  /* the bus refused it */
        g_clear_error(&error);
        /* Nor may anyone else pose as the listener. */
        r = test_call_as(c.bus, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, "org.freedesktop.DBus",
                         "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
                         g_variant_new("(su)", LISTENER_NAME, 0), "(u)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", LISTENER_NAME);
        central_stop(&c);

        g_clear_error(&error);
        central_start_with_rules(&c, test_bus_new_with_config(let_nobody_through));
        r = test_call_as(c.bus, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, LISTENER_NAME,
                         LISTENER_PATH, IFACE_LISTENER, "ListPeers", NULL, "(aa{sv})", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", "uid 65534 may not list");
        central_stop(&c);
}

/* The name is the listener's own: a peer reaches only org.outpost.Outpost1. */
static void test_peer_cannot_reach_it(void) {
        Central c = {};
        Dial *site = NULL;
        sd_bus *bus;
        Call r;

        central_start_with_rules(&c, test_bus_new());
        bus = connect_as(&c, "site-1", &site);
        call(c.event, bus, LISTENER_NAME, LISTENER_PATH, IFACE_LISTENER, "ListPeers", &r, NULL);
        assert_denied(&r, "Only " OUTPOST_NAME " is reachable");
        sd_bus_close_unref(bus);
        dial_free(site);
        central_stop(&c);
}

/* What the listener shows in introspection is the XML of dbus-interfaces/. */
static void test_introspection(void) {
        const char *dir = g_getenv("OUTPOST_INTERFACES_DIR") ?: SRCDIR "/dbus-interfaces";
        g_autofree char *file = g_build_filename(dir, IFACE_LISTENER ".xml", NULL);
        g_autofree char *xml = NULL;
        g_autoptr(GDBusNodeInfo) want = NULL, got = NULL;
        g_autoptr(GVariant) r = NULL;
        GDBusMethodInfo *want_m, *got_m;
        const char *text;
        Central c = {};

        g_assert_true(g_file_get_contents(file, &xml, NULL, NULL));
        want = g_dbus_node_info_new_for_xml(xml, NULL);
        central_start_with_rules(&c, test_bus_new());
        r = g_dbus_connection_call_sync(c.bus->conn, LISTENER_NAME, LISTENER_PATH,
                                        "org.freedesktop.DBus.Introspectable", "Introspect", NULL,
                                        G_VARIANT_TYPE("(s)"), G_DBUS_CALL_FLAGS_NONE, 10000, NULL, NULL);
        g_assert_nonnull(r);
        g_variant_get(r, "(&s)", &text);
        got = g_dbus_node_info_new_for_xml(text, NULL);
        g_assert_nonnull(got);
        want_m = g_dbus_interface_info_lookup_method(g_dbus_node_info_lookup_interface(want, IFACE_LISTENER),
                                                     "ListPeers");
        got_m = g_dbus_interface_info_lookup_method(g_dbus_node_info_lookup_interface(got, IFACE_LISTENER),
                                                    "ListPeers");
        g_assert_nonnull(got_m);
        g_assert_null(got_m->in_args && got_m->in_args[0] ? got_m->in_args[0] : NULL);
        g_assert_cmpstr(got_m->out_args[0]->name, ==, want_m->out_args[0]->name);
        g_assert_cmpstr(got_m->out_args[0]->signature, ==, want_m->out_args[0]->signature);
        g_assert_null(got_m->out_args[1]);
        central_stop(&c);
}

/* A bus without a listener: outpostctl says so. */
static void test_no_listener(void) {
        g_autoptr(TestBus) bus = test_bus_new();
        g_autofree char *out = NULL, *err = NULL;

        test_bus_start_daemon(bus, NULL);
        g_assert_cmpint(run_ctl(bus, (const char *const[]) { "bridge", "peers", NULL }, &out, &err), ==, 1);
        g_assert_true(g_str_has_prefix(err, "outpostctl: No bridge listens on this bus (nobody owns "
                                            LISTENER_NAME ")"));
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/listener-peers/listed", test_peers_listed);
        g_test_add_func("/listener-peers/others-refused", test_others_refused);
        g_test_add_func("/listener-peers/peer-cannot-reach-it", test_peer_cannot_reach_it);
        g_test_add_func("/listener-peers/introspection", test_introspection);
        g_test_add_func("/listener-peers/no-listener", test_no_listener);
        return g_test_run();
}
