/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One listener, many peers, a bus with the stock system limits (256
 * connections per account, 128 pending replies and 512 match rules per
 * connection): the listener serves more peers than the bus would let it
 * have connections, over a small pool of them (DESIGN.md §5); it counts
 * each peer's presence holds and ends a dropped peer's; a peer that
 * floods is refused past its own limit while another keeps its turn; and
 * outpostd does not spend a match rule per caller. The peers are raw
 * sd-bus connections over real TLS links. */
#include "config.h"

#include <signal.h>
#include <string.h>

#include "bridge-harness.h"
#include "peer-link.h"

#define PEERS 300       /* more than the 256 connections a stock system bus allows one account */

static const char stock_limits[] =
        "  <limit name=\"max_connections_per_user\">256</limit>\n"
        "  <limit name=\"max_replies_per_connection\">128</limit>\n"
        "  <limit name=\"max_match_rules_per_connection\">512</limit>\n"
        "  <policy user=\"root\">\n"
        "    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus.Debug.Stats\"/>\n"
        "  </policy>\n";

/* A remote peer and what it received. */
typedef struct Site {
        Dial *dial;
        sd_bus *bus;
        unsigned events;        /* Event signals */
} Site;

typedef struct Reply {
        bool done, ok;
        char *error_name, *error_message;
        uint64_t value;         /* a 't' reply */
} Reply;

static void central_start(Central *c, const char *const *extra) {
        central_start_on(c, test_bus_new_with_config(stock_limits), extra);
}

static int on_peer_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Site *s = userdata;

        if (sd_bus_message_is_signal(m, IFACE_EVENTS, "Event"))
                s->events++;
        return 0;
}

/* Connect as site1, retrying while the listener starts. */
static void site_connect(Central *c, Site *s) {
        for (int i = 0; i < 100; i++) {
                s->dial = dial(c->event, c->port, "site1");
                if (s->dial->fd >= 0) {
                        s->bus = peer_bus(c->event, s->dial->fd);
                        g_assert_cmpint(sd_bus_add_filter(s->bus, NULL, on_peer_message, s), >=, 0);
                        return;
                }
                dial_free(g_steal_pointer(&s->dial));
                g_usleep(50000);
        }
        g_error("cannot reach the listener");
}

/* The peer's link drops. */
static void site_drop(Site *s) {
        s->bus = sd_bus_close_unref(s->bus);
        dial_free(g_steal_pointer(&s->dial));
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Reply *r = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        r->done = true;
        r->ok = !e;
        if (e) {
                r->error_name = g_strdup(e->name);
                r->error_message = g_strdup(e->message);
        } else if (sd_bus_message_has_signature(m, "t"))
                g_assert_cmpint(sd_bus_message_read(m, "t", &r->value), >=, 0);
        return 0;
}

static void reply_clear(Reply *r) {
        g_free(r->error_name);
        g_free(r->error_message);
        *r = (Reply) {};
}

/* Call METHOD on the service through the peer S, without waiting. */
static void site_call(Site *s, Reply *r, const char *path, const char *iface, const char *member,
                      const char *types, ...) {
        sd_bus_message *m = NULL;
        va_list ap;

        reply_clear(r);
        g_assert_cmpint(sd_bus_message_new_method_call(s->bus, &m, OUTPOST_NAME, path, iface, member), >=, 0);
        va_start(ap, types);
        g_assert_cmpint(sd_bus_message_appendv(m, types, ap), >=, 0);
        va_end(ap);
        g_assert_cmpint(sd_bus_call_async(s->bus, NULL, m, on_reply, r, 120 * G_USEC_PER_SEC), >=, 0);
        sd_bus_message_unref(m);
}

static void run_until_done(Central *c, Reply *r) {
        while (!r->done)
                g_assert_cmpint(sd_event_run(c->event, 1000000), >=, 0);
}

static void assert_ok(Reply *r) {
        if (!r->ok)
                g_error("call failed: %s: %s", r->error_name, r->error_message);
}

static void go_online(Central *c, Site *s, const char *user, uint32_t ttl) {
        Reply r = {};

        site_call(s, &r, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline", "su", user, ttl);
        run_until_done(c, &r);
        assert_ok(&r);
        reply_clear(&r);
}

static void go_offline(Central *c, Site *s, const char *user) {
        Reply r = {};

        site_call(s, &r, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline", "s", user);
        run_until_done(c, &r);
        assert_ok(&r);
        reply_clear(&r);
}

/* How many connections to the bus of C the process PID has. */
static unsigned count_connections_of(GDBusConnection *c, GPid pid) {
        g_autoptr(GVariantIter) iter = NULL;
        const char *name;
        unsigned n = 0;
        g_autoptr(GVariant) all = g_dbus_connection_call_sync(c, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                              "org.freedesktop.DBus", "ListNames", NULL,
                                                              G_VARIANT_TYPE("(as)"), G_DBUS_CALL_FLAGS_NONE, -1,
                                                              NULL, NULL);
        g_assert_nonnull(all);
        g_variant_get(all, "(as)", &iter);
        while (g_variant_iter_next(iter, "&s", &name)) {
                g_autoptr(GVariant) owner_pid = NULL;
                guint32 p;

                if (name[0] != ':')
                        continue;
                owner_pid = g_dbus_connection_call_sync(c, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                        "org.freedesktop.DBus", "GetConnectionUnixProcessID",
                                                        g_variant_new("(s)", name), G_VARIANT_TYPE("(u)"),
                                                        G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL);
                if (!owner_pid)
                        continue;       /* left meanwhile */
                g_variant_get(owner_pid, "(u)", &p);
                if ((GPid) p == pid)
                        n++;
        }
        return n;
}

/* More peers than the bus allows the listener's account connections:
 * every one is served, hears the service's signals, and the listener
 * keeps to its pool of connections. */
static void test_more_peers_than_bus_connections(void) {
        static const char *const extra[] = { "--peer-idle-timeout-ms=600000", NULL };
        g_autofree Site *sites = g_new0(Site, PEERS);
        g_autofree Reply *replies = g_new0(Reply, PEERS);
        g_autofree char *ann = NULL;
        Central c = {};
        unsigned connections, served = 0;

        central_start(&c, extra);
        ann = test_create_user(c.bus->conn, "ann", NULL);
        for (unsigned i = 0; i < PEERS; i++)
                site_connect(&c, &sites[i]);

        for (unsigned i = 0; i < PEERS; i++)
                site_call(&sites[i], &replies[i], OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", "s", ann);
        for (unsigned i = 0; i < PEERS; i++) {
                run_until_done(&c, &replies[i]);
                if (replies[i].ok)
                        served++;
                else
                        g_test_message("peer %u: %s: %s", i, replies[i].error_name, replies[i].error_message);
        }
        g_assert_cmpuint(served, ==, PEERS);

        /* A change at central: every peer hears it. */
        g_variant_unref(test_call_ok(c.bus->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", ann, 0), "(t)"));
        for (unsigned i = 0; i < PEERS; i++)
                while (sites[i].events == 0)
                        g_assert_cmpint(sd_event_run(c.event, 1000000), >=, 0);

        connections = count_connections_of(c.bus->conn, c.listener.pid);
        g_test_message("%u peers over %u bus connections", PEERS, connections);
        g_assert_cmpuint(connections, >=, 1);
        /* listener-bus-connections' default, the one that watches
         * whether the service answers, and the one of the listener's own
         * name (ListPeers). */
        g_assert_cmpuint(connections, <=, 8 + 2);

        for (unsigned i = 0; i < PEERS; i++) {
                reply_clear(&replies[i]);
                site_drop(&sites[i]);
        }
        central_stop(&c);
}

/* Two peers hold users; one drops its link: exactly its holds end, those
 * the other peer shares or has of its own stay. POOL_ARG puts both peers
 * on one pool connection, or lets them have one each. */
static void assert_dropped_peer_releases_its_holds(const char *pool_arg) {
        const char *const extra[] = { "--peer-idle-timeout-ms=600000", pool_arg, NULL };
        g_autofree char *ann = NULL, *bob = NULL, *cat = NULL, *dan = NULL;
        Site a = {}, b = {};
        Central c = {};
        GDBusConnection *conn;

        central_start(&c, extra);
        conn = c.bus->conn;
        ann = test_create_user(conn, "ann", NULL);
        bob = test_create_user(conn, "bob", NULL);
        cat = test_create_user(conn, "cat", NULL);
        dan = test_create_user(conn, "dan", NULL);
        site_connect(&c, &a);
        site_connect(&c, &b);

        /* GoOffline of one peer leaves the other's hold in place. */
        go_online(&c, &a, dan, 0);
        go_online(&c, &b, dan, 0);
        go_offline(&c, &a, dan);
        g_assert_true(test_is_online(conn, dan));
        go_offline(&c, &b, dan);
        g_assert_false(test_is_online(conn, dan));

        go_online(&c, &a, ann, 0);
        go_online(&c, &a, bob, 0);
        go_online(&c, &b, bob, 0);
        go_online(&c, &b, cat, 0);
        g_assert_true(test_is_online(conn, ann));

        site_drop(&a);
        test_wait_until(!test_is_online(conn, ann), 20000);
        /* A round trip of B comes after every release A's drop caused. */
        go_online(&c, &b, cat, 0);
        g_assert_true(test_is_online(conn, bob));
        g_assert_true(test_is_online(conn, cat));

        site_drop(&b);
        test_wait_until(test_online_count(conn) == 0, 20000);
        central_stop(&c);
}

static void test_dropped_peer_releases_its_holds_one_connection(void) {
        assert_dropped_peer_releases_its_holds("--listener-bus-connections=1");
}

static void test_dropped_peer_releases_its_holds_two_connections(void) {
        assert_dropped_peer_releases_its_holds("--listener-bus-connections=2");
}

/* A peer's hold with a ttl lapses in the listener; upstream the pool
 * connection holds without ttl, so that it cannot cut short the hold of
 * another peer that shares the connection. */
static void test_ttl_of_one_peer_spares_another(void) {
        static const char *const extra[] = { "--peer-idle-timeout-ms=600000", "--listener-bus-connections=1", NULL };
        g_autofree char *ann = NULL, *bob = NULL;
        Site a = {}, b = {};
        Central c = {};

        central_start(&c, extra);
        ann = test_create_user(c.bus->conn, "ann", NULL);
        bob = test_create_user(c.bus->conn, "bob", NULL);
        site_connect(&c, &a);
        site_connect(&c, &b);

        go_online(&c, &b, ann, 0);
        go_online(&c, &a, ann, 1);
        go_online(&c, &a, bob, 1);
        /* Bob's hold lapses no earlier than ann's, here and at outpostd. */
        test_wait_until(!test_is_online(c.bus->conn, bob), 20000);
        go_online(&c, &b, bob, 0);
        go_offline(&c, &b, bob);
        g_assert_true(test_is_online(c.bus->conn, ann));

        site_drop(&a);
        site_drop(&b);
        central_stop(&c);
}

#define FLOOD_LIMIT 200         /* above the 128 calls the bus lets the pool connection have pending */
#define FLOOD (FLOOD_LIMIT + 10)

static void publish(Site *s, Reply *r) {
        site_call(s, r, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish", "sa{sv}", "flood", 0);
}

/* A peer that floods gets LimitExceeded past its own limit, from the
 * listener at once; its calls that wait for room on the pool connection
 * take turns with another peer's, whose call goes out among the next
 * two (outpostd numbers events in the order it takes the calls). */
static void test_flood_refused_others_keep_their_turn(void) {
        static const char *const extra[] = {
                "--peer-idle-timeout-ms=600000", "--listener-bus-connections=1", "--max-calls-in-flight=200", NULL
        };
        g_autofree Reply *flood = g_new0(Reply, FLOOD);
        Reply other = {}, ping = {};
        Site a = {}, b = {};
        Central c = {};
        GPid daemon;
        unsigned refused = 0;

        central_start(&c, extra);
        site_connect(&c, &a);
        site_connect(&c, &b);
        daemon = test_bus_daemon_pid(c.bus);

        /* outpostd takes nothing while stopped: what comes back is the
         * listener's own answer. */
        g_assert_cmpint(kill(daemon, SIGSTOP), ==, 0);
        for (unsigned i = 0; i < FLOOD; i++)
                publish(&a, &flood[i]);
        for (unsigned i = FLOOD_LIMIT; i < FLOOD; i++) {
                run_until_done(&c, &flood[i]);
                g_assert_false(flood[i].ok);
                g_assert_cmpstr(flood[i].error_name, ==, ERROR_PREFIX "LimitExceeded");
                g_assert_nonnull(strstr(flood[i].error_message, "at most 200"));
                refused++;
        }
        for (unsigned i = 0; i < FLOOD_LIMIT; i++)
                g_assert_false(flood[i].done);

        publish(&b, &other);
        /* The listener answers Ping itself, after taking B's call. */
        site_call(&b, &ping, OUTPOST_ROOT, "org.outpost.BridgeLink1", "Ping", "");
        run_until_done(&c, &ping);
        assert_ok(&ping);
        g_assert_cmpint(kill(daemon, SIGCONT), ==, 0);

        run_until_done(&c, &other);
        assert_ok(&other);
        for (unsigned i = 0; i < FLOOD_LIMIT; i++) {
                run_until_done(&c, &flood[i]);
                assert_ok(&flood[i]);
        }
        g_test_message("%u calls refused; the other peer's went out after %" G_GUINT64_FORMAT
                       " of the flood's", refused, other.value - flood[0].value);
        /* 128 pending on the bus, then one of the flood's, then B's. */
        g_assert_cmpuint(other.value, <, flood[129].value);

        for (unsigned i = 0; i < FLOOD; i++)
                reply_clear(&flood[i]);
        reply_clear(&other);
        reply_clear(&ping);
        site_drop(&a);
        site_drop(&b);
        central_stop(&c);
}

/* outpostd's match rules, as the bus counts them. */
static guint32 daemon_match_rules(GDBusConnection *c) {
        g_autoptr(GVariant) owner = NULL, stats = NULL, dict = NULL;
        const char *name;
        guint32 n = 0;

        owner = g_dbus_connection_call_sync(c, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                            "GetNameOwner", g_variant_new("(s)", OUTPOST_NAME), G_VARIANT_TYPE("(s)"),
                                            G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL);
        g_assert_nonnull(owner);
        g_variant_get(owner, "(&s)", &name);
        stats = g_dbus_connection_call_sync(c, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                            "org.freedesktop.DBus.Debug.Stats", "GetConnectionStats",
                                            g_variant_new("(s)", name), G_VARIANT_TYPE("(a{sv})"),
                                            G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL);
        if (!stats)
                return G_MAXUINT32;
        dict = g_variant_get_child_value(stats, 0);
        g_assert_true(g_variant_lookup(dict, "MatchRules", "u", &n));
        return n;
}

/* Callers holding presence cost outpostd no match rule each: a stock bus
 * allows 512 per connection, and there are more callers than that. */
static void test_outpostd_match_rules_do_not_grow_with_holders(void) {
        g_autoptr(TestBus) tb = test_bus_new_with_config(stock_limits);
        GDBusConnection *holders[20];
        g_autofree char *ann = NULL;
        guint32 before;

        test_bus_start_daemon(tb, NULL);
        ann = test_create_user(tb->conn, "ann", NULL);
        before = daemon_match_rules(tb->conn);
        if (before == G_MAXUINT32) {
                g_test_skip("this dbus-daemon has no Debug.Stats interface");
                return;
        }
        for (size_t i = 0; i < G_N_ELEMENTS(holders); i++) {
                holders[i] = test_bus_connect(tb);
                g_variant_unref(test_call_ok(holders[i], OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                             g_variant_new("(su)", ann, 0), "(t)"));
        }
        /* A round trip after the last GoOnline: any AddMatch it made is in. */
        g_variant_unref(test_call_ok(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", ann, 0), "(t)"));
        g_assert_cmpuint(daemon_match_rules(tb->conn), ==, before);

        /* And leaving still releases. */
        for (size_t i = 0; i < G_N_ELEMENTS(holders); i++) {
                g_dbus_connection_close_sync(holders[i], NULL, NULL);
                g_object_unref(holders[i]);
        }
        g_variant_unref(test_call_ok(tb->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                                     g_variant_new("(s)", ann), "(t)"));
        test_wait_until(test_online_count(tb->conn) == 0, 20000);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/listener-pool/more-peers-than-bus-connections", test_more_peers_than_bus_connections);
        g_test_add_func("/listener-pool/dropped-peer-releases-its-holds/one-connection",
                        test_dropped_peer_releases_its_holds_one_connection);
        g_test_add_func("/listener-pool/dropped-peer-releases-its-holds/two-connections",
                        test_dropped_peer_releases_its_holds_two_connections);
        g_test_add_func("/listener-pool/ttl-of-one-peer-spares-another", test_ttl_of_one_peer_spares_another);
        g_test_add_func("/listener-pool/flood-refused-others-keep-their-turn", test_flood_refused_others_keep_their_turn);
        g_test_add_func("/listener-pool/outpostd-match-rules-do-not-grow-with-holders",
                        test_outpostd_match_rules_do_not_grow_with_holders);
        return g_test_run();
}
