/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Trust between layers (DESIGN.md §5b): what each peer may do by the
 * name of its certificate ([Peers]), revocation at connect and by
 * SIGHUP, and the change rate of one peer. Peers are raw sd-bus
 * connections over the real TLS link (peer-link.h), and real bridges of
 * a central/site/machine chain. Certificates: tests/common/make-test-certs.sh
 * (site-1, kiosk-1, kiosk-2, stray; revoked.crl revokes kiosk-2). */
#include "config.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge-harness.h"
#include "config-file.h"
#include "peer-link.h"
#include "peer-scopes.h"

#define KIOSK_RULES "[Peers]\nkiosk-*=read;presence\nsite-*=read;presence;send;publish;users\n"

/* ---- the rules alone -------------------------------------------------- */

static void test_rules_table(void) {
        static const struct {
                const char *pattern, *scopes;
                bool ok;
        } checks[] = {
                { "kiosk-*", "read;presence", true },
                { "site-?", "read;presence;send;publish;users;", true },
                { "kiosk-7", "", true },                /* matches, grants nothing: refused */
                { "*", " read ; users ", true },
                { "kiosk-*", "read;write", false },
                { "kiosk-*", "READ", false },
                { "kiosk-*", "all", false },
                { "", "read", false },
                { "site[12]", "read", false },
                { "site\\1", "read", false },
        };
        char *rules[] = { "kiosk-7", "", "KIOSK-*", "read;presence", "*.example.org", "read", NULL };
        char *kiosk7[] = { "kiosk-7", NULL }, *kiosk1[] = { "Kiosk-1", NULL };
        char *by_san[] = { "no-such-cn", "shop.example.org", NULL }, *stray[] = { "stray", NULL };
        const char *pattern;
        unsigned scopes;

        for (size_t i = 0; i < G_N_ELEMENTS(checks); i++) {
                g_autofree char *reason = NULL;

                g_test_message("%s=%s", checks[i].pattern, checks[i].scopes);
                g_assert_cmpint(peer_rule_check(checks[i].pattern, checks[i].scopes, &reason), ==, checks[i].ok);
                g_assert_true(checks[i].ok == !reason);
        }

        g_assert_false(peer_rules_match(rules, kiosk7, &scopes, &pattern));
        g_assert_cmpstr(pattern, ==, "kiosk-7");
        g_assert_true(peer_rules_match(rules, kiosk1, &scopes, &pattern));
        g_assert_cmpuint(scopes, ==, PEER_SCOPE_READ | PEER_SCOPE_PRESENCE);
        g_assert_true(peer_rules_match(rules, by_san, &scopes, &pattern));
        g_assert_cmpuint(scopes, ==, PEER_SCOPE_READ);
        g_assert_false(peer_rules_match(rules, stray, &scopes, &pattern));
        g_assert_null(pattern);
        g_assert_false(peer_rules_match(rules, NULL, &scopes, &pattern));
        g_assert_true(peer_rules_match(NULL, stray, &scopes, &pattern));
        g_assert_cmpuint(scopes, ==, PEER_SCOPE_ALL);
}

typedef struct Settings {
        char *listen;
        char **peers;
} Settings;

static const ConfigKey settings_keys[] = {
        { "Bridge", "listen", CONFIG_STRING, offsetof(Settings, listen), 0, 0, NULL },
        { "Peers", NULL, CONFIG_ENTRIES, offsetof(Settings, peers), 0, 0, peer_rule_check },
};

/* CONTENTS as bridge.conf: NULL when it loads (*RET the settings), or
 * the error. */
static char *load(const char *contents, Settings *ret) {
        g_autofree char *path = g_build_filename(g_get_tmp_dir(), "outpost-test-scopes.conf", NULL);
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_set_contents(path, contents, -1, NULL));
        *ret = (Settings) {};
        if (config_file_load(path, settings_keys, G_N_ELEMENTS(settings_keys), ret, &error)) {
                (void) g_unlink(path);
                return NULL;
        }
        (void) g_unlink(path);
        g_assert_true(g_str_has_prefix(error->message, path));
        g_free(ret->listen);
        g_strfreev(ret->peers);
        return g_strdup(error->message + strlen(path));
}

static void assert_bad(const char *contents, const char *expected) {
        g_autofree char *error = NULL;
        Settings s;

        error = load(contents, &s);
        g_test_message("%s", error ?: "(loaded)");
        g_assert_nonnull(error);
        g_assert_nonnull(strstr(error, expected));
}

static void test_peers_group_in_config(void) {
        Settings s;

        g_assert_null(load("[Bridge]\nlisten=x\n", &s));
        g_assert_null(s.peers);         /* no group: every peer may do everything */
        g_free(s.listen);

        g_assert_null(load("[Peers]\n", &s));
        g_assert_nonnull(s.peers);      /* a group without keys: every peer refused */
        g_assert_null(s.peers[0]);
        g_strfreev(s.peers);

        g_assert_null(load("# shops\n[Peers]\nkiosk-7=\nkiosk-*=read;presence\n*=read\n", &s));
        g_assert_cmpstr(s.peers[0], ==, "kiosk-7");
        g_assert_cmpstr(s.peers[1], ==, "");
        g_assert_cmpstr(s.peers[2], ==, "kiosk-*");
        g_assert_cmpstr(s.peers[3], ==, "read;presence");
        g_assert_cmpstr(s.peers[4], ==, "*");
        g_assert_null(s.peers[6]);
        g_strfreev(s.peers);

        assert_bad("[Peers]\nkiosk-*=read;write\n", ":2: bad entry 'kiosk-*=read;write' in group [Peers]: "
                   "unknown scope 'write'");
        assert_bad("[Bridge]\nlisten=x\n\n[Peers]\nsite-*=read\nsite-*=users\n", ":6: duplicate key 'site-*'");
        assert_bad("[Peers]\nsite[1]=read\n", ":2: bad key 'site[1]' in group [Peers]: brackets");
        assert_bad("[Peers]\nkiosk-*\n", "");   /* not key=value: GKeyFile's own error */
        assert_bad("[Peer]\nkiosk-*=read\n", "unknown group [Peer]");
}

/* ---- one listener and raw peers ------------------------------------- */

/* A file in the certificates' directory with CONTENTS. */
static char *write_file(const char *name, const char *contents) {
        char *path = g_build_filename(bridge_test_certs(), name, NULL);

        g_assert_true(g_file_set_contents(path, contents, -1, NULL));
        return path;
}

static char *copy_file(const char *from, const char *to) {
        g_autofree char *source = g_build_filename(bridge_test_certs(), from, NULL);
        g_autofree char *contents = NULL;

        g_assert_true(g_file_get_contents(source, &contents, NULL, NULL));
        return write_file(to, contents);
}

/* Central with a listener whose bridge.conf is CONFIG (NULL: none) and
 * EXTRA options. */
static void central_start_conf(Central *c, const char *config, const char *const *extra) {
        g_autofree char *path = config ? write_file("listener.conf", config) : NULL;
        g_autofree char *config_option = path ? g_strconcat("--config=", path, NULL) : NULL;
        g_autoptr(GStrvBuilder) args = g_strv_builder_new();
        g_auto(GStrv) argv = NULL;

        if (config_option)
                g_strv_builder_add(args, config_option);
        if (extra)
                g_strv_builder_addv(args, (const char **) extra);
        argv = g_strv_builder_end(args);
        central_start_on(c, test_bus_new(), (const char *const *) argv);
}

static char *create_user(TestBus *bus, const char *name) {
        g_autoptr(GVariant) r = test_call_ok(bus->conn, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                                            g_variant_new_parsed("({'name': <%s>},)", name), "(ss)");
        char *id = NULL;

        g_variant_get(r, "(ss)", &id, NULL);
        return id;
}

static void assert_ok(Call *r) {
        if (!r->ok)
                g_error("call failed: %s: %s", r->error.name, r->error.message);
}

/* What a peer may do with read;presence and what it may not. */
static void assert_kiosk_scopes(sd_event *event, sd_bus *bus, const char *user, const char *name) {
        Call r;

        call(event, bus, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", &r, "su", "", 10);
        assert_ok(&r);
        call(event, bus, NULL, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline", &r, "su", user, 0);
        assert_ok(&r);
        call(event, bus, NULL, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline", &r, "s", user);
        assert_ok(&r);

        call(event, bus, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser", &r, "ssa{sv}", user, "", 0);
        assert_denied(&r, name);
        call(event, bus, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser", &r, "a{sv}", 0);
        assert_denied(&r, "'users'");
        /* Without an interface the call would reach SaveUser all the same. */
        call(event, bus, NULL, OUTPOST_USERS_PATH, NULL, "SaveUser", &r, "ssa{sv}", user, "", 0);
        assert_denied(&r, "'users'");
        call(event, bus, NULL, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish", &r, "sa{sv}", "shop/till", 0);
        assert_denied(&r, "'publish'");
        call(event, bus, NULL, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send", &r, "ass", 1, user, "hello");
        assert_denied(&r, "'send'");

        /* No scope lets a peer make the bridge it calls through reconnect. */
        call(event, bus, NULL, OUTPOST_BRIDGE_PATH, IFACE_BRIDGE, "Reconnect", &r, NULL);
        assert_denied(&r, "managed on its own machine");
        call(event, bus, NULL, OUTPOST_BRIDGE_PATH, NULL, "Reconnect", &r, NULL);
        assert_denied(&r, "managed on its own machine");
}

static void test_scopes_direct(void) {
        Central c = {};
        Dial *kiosk = NULL, *site = NULL;
        g_autofree char *ann = NULL;
        sd_bus *kiosk_bus, *site_bus;
        Call r;

        central_start_conf(&c, KIOSK_RULES, NULL);
        ann = create_user(c.bus, "ann");
        kiosk_bus = connect_as(&c, "kiosk-1", &kiosk);
        assert_kiosk_scopes(c.event, kiosk_bus, ann, "kiosk-1");

        site_bus = connect_as(&c, "site-1", &site);
        call(c.event, site_bus, NULL, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish", &r, "sa{sv}", "shop/till", 0);
        assert_ok(&r);

        /* A name no pattern matches never gets a call through. */
        assert_refused(&c, "stray");
        test_wait_until(bridge_process_logged(&c.listener, "CN=stray: its certificate's names match no pattern"),
                        5000);

        sd_bus_close_unref(kiosk_bus);
        sd_bus_close_unref(site_bus);
        dial_free(kiosk);
        dial_free(site);
        central_stop(&c);
}

/* ---- who sent a message ---------------------------------------------- */

/* The sender-peers of the last message event on BUS after AFTER (NULL:
 * it has none). */
static char **last_sender_peers(TestBus *bus, guint64 after) {
        g_autoptr(GVariant) r = NULL, events = NULL, event = NULL, data = NULL;
        char **peers = NULL;

        r = test_call_ok(bus->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                         g_variant_new("(st^asu)", "", after, (const char *[]) { "messages/", NULL }, 100),
                         "(a(tsxa{sv})tb)");
        events = g_variant_get_child_value(r, 0);
        g_assert_cmpuint(g_variant_n_children(events), >=, 1);
        event = g_variant_get_child_value(events, g_variant_n_children(events) - 1);
        data = g_variant_get_child_value(event, 3);
        if (!g_variant_lookup(data, "sender-peers", "^as", &peers))
                return NULL;
        return peers;
}

static void assert_sender_peers(TestBus *bus, guint64 after, const char *const *expected) {
        g_auto(GStrv) peers = last_sender_peers(bus, after);

        g_assert_nonnull(peers);
        g_assert_cmpstrv(peers, expected);
}

/* A peer's message names the peer as its certificate does, last, after
 * whatever the peer claims of the bridges behind it, which it can
 * neither drop nor replace; its scope is checked first, as for Send. */
static void test_sender_peers_direct(void) {
        Central c = {};
        Dial *site = NULL, *kiosk = NULL;
        g_autofree char *ann = NULL;
        g_auto(GStrv) direct = NULL;
        sd_bus *site_bus, *kiosk_bus;
        guint64 before;
        Call r;

        central_start_conf(&c, KIOSK_RULES, NULL);
        ann = create_user(c.bus, "ann");
        site_bus = connect_as(&c, "site-1", &site);

        before = test_last_seq(c.bus->conn);
        call(c.event, site_bus, NULL, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send", &r, "ass", 1, ann, "hello");
        assert_ok(&r);
        assert_sender_peers(c.bus, before, (const char *[]) { "site-1", NULL });

        /* What it says of the bridges behind it comes first, its own name
         * last, whatever it claims. */
        before = test_last_seq(c.bus->conn);
        call(c.event, site_bus, NULL, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions", &r, "assa{sv}",
             1, ann, "hello", 2, "relayed-by", "as", 2, "forged", "site-2", "request-id", "s", "peers-1");
        assert_ok(&r);
        assert_sender_peers(c.bus, before, (const char *[]) { "forged", "site-2", "site-1", NULL });
        call(c.event, site_bus, NULL, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions", &r, "assa{sv}",
             1, ann, "hello", 1, "relayed-by", "s", "site-2");
        g_assert_false(r.ok);
        g_assert_cmpstr(r.error.name, ==, ERROR_PREFIX "InvalidArgument");
        g_assert_nonnull(strstr(r.error.message, "array of strings"));
        sd_bus_error_free(&r.error);

        /* A message sent at central names no peer. */
        before = test_last_seq(c.bus->conn);
        g_variant_unref(test_call_ok(c.bus->conn, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                                     g_variant_new_parsed("([%s], 'hello')", ann), "(st)"));
        direct = last_sender_peers(c.bus, before);
        g_assert_null(direct);

        /* Without the send scope, options change nothing. */
        kiosk_bus = connect_as(&c, "kiosk-1", &kiosk);
        call(c.event, kiosk_bus, NULL, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions", &r, "assa{sv}",
             1, ann, "hello", 1, "relayed-by", "as", 1, "site-1");
        assert_denied(&r, "'send'");

        sd_bus_close_unref(kiosk_bus);
        sd_bus_close_unref(site_bus);
        dial_free(kiosk);
        dial_free(site);
        central_stop(&c);
}

static void test_no_peers_group_warns(void) {
        Central c = {};
        Dial *stray = NULL;
        sd_bus *bus;
        Call r;

        central_start_conf(&c, NULL, NULL);
        bus = connect_as(&c, "stray", &stray);
        call(c.event, bus, NULL, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish", &r, "sa{sv}", "shop/till", 0);
        assert_ok(&r);
        g_assert_true(bridge_process_logged(&c.listener, "No [Peers] group in the configuration"));
        sd_bus_close_unref(bus);
        dial_free(stray);
        central_stop(&c);
}

static void test_revoked_at_connect(void) {
        g_autofree char *crl = g_strdup_printf("--tls-crl=%s/revoked.crl", bridge_test_certs());
        const char *extra[] = { crl, NULL };
        Central c = {};
        Dial *kiosk = NULL;
        sd_bus *bus;
        Call r;

        central_start_conf(&c, KIOSK_RULES, extra);
        bus = connect_as(&c, "kiosk-1", &kiosk);
        call(c.event, bus, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", &r, "su", "", 10);
        assert_ok(&r);
        assert_refused(&c, "kiosk-2");
        test_wait_until(bridge_process_logged(&c.listener, "client certificate refused (CN=kiosk-2): "
                                              "The certificate is NOT trusted. The certificate chain is revoked"),
                        5000);
        sd_bus_close_unref(bus);
        dial_free(kiosk);
        central_stop(&c);
}

/* An importer with a CRL that revokes the listener's certificate does
 * not connect, and says why. */
static void test_importer_refuses_revoked_listener(void) {
        g_autofree char *crl = g_strdup_printf("--tls-crl=%s/revoked-server.crl", bridge_test_certs());
        g_autofree char *upstream = NULL;
        const char *extra[] = { crl, NULL };
        g_autoptr(TestBus) machine = test_bus_new();
        BridgeProcess importer = {};
        Central c = {};

        central_start_conf(&c, NULL, NULL);
        upstream = g_strdup_printf("tls:host=127.0.0.1,port=%u", c.port);
        bridge_process_start(&importer, machine, NULL, upstream, extra);
        g_autofree char *state = NULL;

        test_wait_until(bridge_process_logged(&importer, "The certificate chain is revoked"), 20000);
        state = bridge_state(machine->conn);
        g_assert_cmpstr(state, !=, "connected");
        bridge_process_clear(&importer);
        central_stop(&c);
}

/* SIGHUP to C's listener, then turn C's loop until D's link is closed by
 * the listener; how long it took from the signal. */
static double reload_and_wait_dropped(Central *c, Dial *d) {
        gint64 start = g_get_monotonic_time();

        g_assert_cmpint(kill(c->listener.pid, SIGHUP), ==, 0);
        while (d->link && g_get_monotonic_time() - start < 5 * G_USEC_PER_SEC)
                g_assert_cmpint(sd_event_run(c->event, 100000), >=, 0);
        g_assert_null(d->link);
        return (double) (g_get_monotonic_time() - start) / G_USEC_PER_SEC;
}

static void reload(Central *c) {
        g_assert_cmpint(kill(c->listener.pid, SIGHUP), ==, 0);
}

static unsigned reloads_logged(Central *c) {
        g_autofree char *contents = NULL;
        unsigned n = 0;

        g_assert_true(g_file_get_contents(c->listener.log_path, &contents, NULL, NULL));
        for (const char *at = contents; (at = strstr(at, "Reloaded the CA")); at++)
                n++;
        return n;
}

/* SIGHUP, and back once the listener says it reloaded. */
static void reload_and_wait(Central *c) {
        unsigned before = reloads_logged(c);

        reload(c);
        test_wait_until(reloads_logged(c) > before, 5000);
}

static void test_revoked_by_sighup(void) {
        g_autofree char *crl = copy_file("empty.crl", "current.crl");
        g_autofree char *crl_option = g_strconcat("--tls-crl=", crl, NULL);
        const char *extra[] = { crl_option, NULL };
        Central c = {};
        Dial *kiosk1 = NULL, *kiosk2 = NULL;
        sd_bus *bus1, *bus2;
        double took;
        Call r;

        central_start_conf(&c, KIOSK_RULES, extra);
        bus1 = connect_as(&c, "kiosk-1", &kiosk1);
        bus2 = connect_as(&c, "kiosk-2", &kiosk2);
        call(c.event, bus2, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", &r, "su", "", 10);
        assert_ok(&r);

        /* A reload that fails keeps what was in use, and the bridge. */
        g_free(write_file("current.crl", "not a CRL\n"));
        reload(&c);
        test_wait_until(bridge_process_logged(&c.listener, "Reload failed, keeping the certificates in use and every other setting: "
                                              "cannot load CRL file"), 5000);
        call(c.event, bus2, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", &r, "su", "", 10);
        assert_ok(&r);

        g_free(copy_file("revoked.crl", "current.crl"));
        took = reload_and_wait_dropped(&c, kiosk2);
        g_test_message("kiosk-2 dropped %.3f s after SIGHUP", took);
        g_assert_cmpfloat(took, <, 1.5);
        g_assert_true(bridge_process_logged(&c.listener, "CN=kiosk-2: dropped: its certificate is now refused"));
        assert_refused(&c, "kiosk-2");

        /* The others stay. */
        call(c.event, bus1, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", &r, "su", "", 10);
        assert_ok(&r);

        /* A scope that shrinks drops the peer too. */
        g_free(write_file("listener.conf", "[Peers]\nkiosk-*=read\n"));
        took = reload_and_wait_dropped(&c, kiosk1);
        g_assert_cmpfloat(took, <, 1.5);
        g_assert_true(bridge_process_logged(&c.listener, "its scopes shrank, it lost presence"));
        sd_bus_close_unref(bus1);
        dial_free(kiosk1);

        /* No longer matched: dropped as well. */
        bus1 = connect_as(&c, "kiosk-1", &kiosk1);
        g_free(write_file("listener.conf", "[Peers]\nsite-*=read\n"));
        took = reload_and_wait_dropped(&c, kiosk1);
        g_assert_cmpfloat(took, <, 1.5);
        sd_bus_close_unref(bus1);
        dial_free(kiosk1);

        /* A name taken out of allowed-peers: dropped, and refused after. */
        g_free(write_file("listener.conf", "[Peers]\nkiosk-*=read\n"));
        reload_and_wait(&c);
        bus1 = connect_as(&c, "kiosk-1", &kiosk1);
        g_free(write_file("listener.conf", "[Bridge]\nallowed-peers=site-1,kiosk-3\n[Peers]\nkiosk-*=read\n"));
        took = reload_and_wait_dropped(&c, kiosk1);
        g_assert_cmpfloat(took, <, 1.5);
        g_assert_true(bridge_process_logged(&c.listener, "CN=kiosk-1: dropped: its certificate's names are no "
                                                         "longer among the allowed peers"));
        assert_refused(&c, "kiosk-1");

        sd_bus_close_unref(bus1);
        sd_bus_close_unref(bus2);
        dial_free(kiosk1);
        dial_free(kiosk2);
        central_stop(&c);
}

static void test_rate_limit(void) {
        const char *extra[] = { "--peer-change-rate=1", "--peer-change-burst=5", NULL };
        Central c = {};
        Dial *kiosk1 = NULL, *kiosk2 = NULL;
        sd_bus *bus1, *bus2;
        unsigned refused = 0;
        Call r;

        central_start_conf(&c, NULL, extra);
        bus1 = connect_as(&c, "kiosk-1", &kiosk1);
        bus2 = connect_as(&c, "kiosk-2", &kiosk2);
        for (int i = 0; i < 20; i++) {
                call(c.event, bus1, NULL, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish", &r, "sa{sv}", "shop/till", 0);
                if (r.ok)
                        continue;
                g_assert_cmpstr(r.error.name, ==, "org.outpost.Outpost1.Error.LimitExceeded");
                g_assert_nonnull(strstr(r.error.message, "kiosk-1"));
                sd_bus_error_free(&r.error);
                refused++;
        }
        g_assert_cmpuint(refused, >=, 10);
        /* Reads do not count, and the other peer has its own bucket. */
        call(c.event, bus1, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", &r, "su", "", 10);
        assert_ok(&r);
        for (int i = 0; i < 5; i++) {
                call(c.event, bus2, NULL, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish", &r, "sa{sv}", "shop/till", 0);
                assert_ok(&r);
        }
        sd_bus_close_unref(bus1);
        sd_bus_close_unref(bus2);
        dial_free(kiosk1);
        dial_free(kiosk2);
        central_stop(&c);
}

/* ---- start-up errors -------------------------------------------------- */

/* The bridge with EXTRA exits at start with status 1, logging EXPECTED. */
static void assert_startup_error(const char *const *extra, const char *expected) {
        g_autoptr(TestBus) bus = test_bus_new();
        g_autofree char *listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        BridgeProcess p = {};
        int status;

        bridge_process_start(&p, bus, listen, NULL, extra);
        status = bridge_process_wait_exit(&p, 10000);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        g_assert_true(bridge_process_logged(&p, expected));
        bridge_process_clear(&p);
}

static void test_startup_errors(void) {
        g_autofree char *bad_crl = write_file("bad.crl", "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n");
        g_autofree char *crl_option = g_strconcat("--tls-crl=", bad_crl, NULL);
        g_autofree char *missing_option = g_strdup_printf("--tls-crl=%s/no-such.crl", bridge_test_certs());
        g_autofree char *conf = write_file("bad-peers.conf", "[Bridge]\n\n[Peers]\nkiosk-*=read;sell\n");
        g_autofree char *conf_option = g_strconcat("--config=", conf, NULL);
        g_autofree char *expected_conf = g_strdup_printf("%s:4: bad entry 'kiosk-*=read;sell'", conf);
        g_autofree char *expected_crl = g_strdup_printf("cannot load CRL file %s", bad_crl);
        const char *with_bad_crl[] = { crl_option, NULL };
        const char *with_missing_crl[] = { missing_option, NULL };
        const char *with_bad_peers[] = { conf_option, NULL };

        assert_startup_error(with_bad_crl, expected_crl);
        assert_startup_error(with_missing_crl, "no-such.crl");
        assert_startup_error(with_bad_peers, expected_conf);
}

/* ---- a chain: central, a site, a machine behind it ------------------- */

typedef struct Chain {
        TestBus *central, *site, *machine;
        BridgeProcess central_listener, site_bridge, machine_bridge;
} Chain;

/* Central's listener with CENTRAL_CONF, the site's bridge as site-1 with
 * SITE_CONF, the machine's as kiosk-1. */
static void chain_start(Chain *c, const char *central_conf, const char *site_conf) {
        const char *certs = bridge_test_certs();
        g_autofree char *central_path = write_file("central.conf", central_conf);
        g_autofree char *site_path = write_file("site.conf", site_conf);
        g_autofree char *central_config = g_strconcat("--config=", central_path, NULL);
        g_autofree char *site_config = g_strconcat("--config=", site_path, NULL);
        g_autofree char *site_cert = g_strdup_printf("--tls-cert=%s/site-1.pem", certs);
        g_autofree char *site_key = g_strdup_printf("--tls-key=%s/site-1.key", certs);
        g_autofree char *kiosk_cert = g_strdup_printf("--tls-cert=%s/kiosk-1.pem", certs);
        g_autofree char *kiosk_key = g_strdup_printf("--tls-key=%s/kiosk-1.key", certs);
        g_autofree char *central_listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        g_autofree char *site_listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        const char *central_extra[] = { central_config, NULL };
        const char *site_extra[] = { site_config, site_cert, site_key, NULL };
        const char *machine_extra[] = { kiosk_cert, kiosk_key, NULL };

        c->central = test_bus_new();
        c->site = test_bus_new();
        c->machine = test_bus_new();
        test_bus_start_daemon(c->central, NULL);
        bridge_process_start(&c->central_listener, c->central, central_listen, NULL, central_extra);
        bridge_process_start(&c->site_bridge, c->site, site_listen, central_listen, site_extra);
        bridge_process_start(&c->machine_bridge, c->machine, NULL, site_listen, machine_extra);
        wait_bridge_state(c->site->conn, "connected", 20000);
        wait_bridge_state(c->machine->conn, "connected", 20000);
}

static void chain_stop(Chain *c) {
        bridge_process_clear(&c->machine_bridge);
        bridge_process_clear(&c->site_bridge);
        bridge_process_clear(&c->central_listener);
        test_bus_free(c->machine);
        test_bus_free(c->site);
        test_bus_free(c->central);
}

static void assert_machine_denied(Chain *c, const char *path, const char *iface, const char *method,
                                  GVariant *params, const char *mention) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = test_call(c->machine->conn, path, iface, method, params, NULL, &error);

        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", mention);
}

static void test_scopes_behind_site(void) {
        g_autofree char *ann = NULL;
        Chain c = {};

        chain_start(&c, KIOSK_RULES, KIOSK_RULES);
        ann = create_user(c.central, "ann");
        g_variant_unref(test_call_ok(c.machine->conn, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers",
                                     g_variant_new("(su)", "", 10), NULL));
        g_variant_unref(test_call_ok(c.machine->conn, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", ann, 0), NULL));
        assert_machine_denied(&c, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                              g_variant_new_parsed("(%s, '', @a{sv} {})", ann), "kiosk-1");
        assert_machine_denied(&c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                              g_variant_new_parsed("('shop/till', @a{sv} {})"), "kiosk-1");
        assert_machine_denied(&c, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                              g_variant_new_parsed("([%s], 'hello')", ann), "kiosk-1");
        chain_stop(&c);
}

/* The site's own scope at central bounds everything behind it, whatever
 * the site lets its machines do. */
static void test_site_scope_bounds_machines(void) {
        Chain c = {};

        chain_start(&c, "[Peers]\nsite-*=read;presence\n", "[Peers]\n*=read;presence;send;publish;users\n");
        g_variant_unref(test_call_ok(c.machine->conn, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers",
                                     g_variant_new("(su)", "", 10), NULL));
        assert_machine_denied(&c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                              g_variant_new_parsed("({'name': <'bob'>},)"), "site-1");
        assert_machine_denied(&c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                              g_variant_new_parsed("('shop/till', @a{sv} {})"), "site-1");
        chain_stop(&c);
}

/* A message from a machine names the machine's bridge and the site's,
 * each as the listener in front of it saw its certificate. */
static void test_sender_peers_behind_site(void) {
        g_autofree char *ann = NULL, *daemon_log = NULL;
        guint64 before;
        Chain c = {};

        chain_start(&c, "[Peers]\nsite-*=read;presence;send\n", "[Peers]\nkiosk-*=read;presence;send\n");
        ann = create_user(c.central, "ann");
        before = test_last_seq(c.central->conn);
        g_variant_unref(test_call_ok(c.machine->conn, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                                     g_variant_new_parsed("([%s], 'hello')", ann), "(st)"));
        assert_sender_peers(c.central, before, (const char *[]) { "kiosk-1", "site-1", NULL });
        /* Central's audit trail names them too. */
        daemon_log = test_bus_take_daemon_log(c.central);
        g_assert_nonnull(strstr(daemon_log, "audit: Messages.SendWithOptions relayed by ['kiosk-1', 'site-1']"));
        chain_stop(&c);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/bridge-scopes/rules-table", test_rules_table);
        g_test_add_func("/bridge-scopes/peers-group-in-config", test_peers_group_in_config);
        g_test_add_func("/bridge-scopes/direct", test_scopes_direct);
        g_test_add_func("/bridge-scopes/no-peers-group-warns", test_no_peers_group_warns);
        g_test_add_func("/bridge-scopes/revoked-at-connect", test_revoked_at_connect);
        g_test_add_func("/bridge-scopes/revoked-by-sighup", test_revoked_by_sighup);
        g_test_add_func("/bridge-scopes/importer-refuses-revoked-listener", test_importer_refuses_revoked_listener);
        g_test_add_func("/bridge-scopes/rate-limit", test_rate_limit);
        g_test_add_func("/bridge-scopes/startup-errors", test_startup_errors);
        g_test_add_func("/bridge-scopes/behind-site", test_scopes_behind_site);
        g_test_add_func("/bridge-scopes/site-scope-bounds-machines", test_site_scope_bounds_machines);
        g_test_add_func("/bridge-scopes/sender-peers-direct", test_sender_peers_direct);
        g_test_add_func("/bridge-scopes/sender-peers-behind-site", test_sender_peers_behind_site);
        return g_test_run();
}
