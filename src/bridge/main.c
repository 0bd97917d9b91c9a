/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpost-bridge: relays org.outpost.Outpost1 between buses over TLS
 * (DESIGN.md §5). --listen exports the local bus's service to remote
 * bridges; --upstream imports a remote service onto the local bus; a site
 * server runs both. */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "bridge.h"
#include "bus-open.h"
#include "config-file.h"
#include "log.h"
#include "macro.h"
#include "peer-scopes.h"
#include "validate.h"

#define DEFAULT_CONFIG_FILE SYSCONFDIR "/outpost/bridge.conf"

#define KEY(name, type, field, min, max) \
        { "Bridge", name, type, offsetof(BridgeConfig, field), min, max }

static const ConfigKey bridge_config_keys[] = {
        KEY("session",              CONFIG_BOOL,   session, 0, 0),
        KEY("address",              CONFIG_STRING, address, 0, 0),
        KEY("listen",               CONFIG_STRING, listen, 0, 0),
        KEY("upstream",             CONFIG_STRING, upstream, 0, 0),
        KEY("tls-ca",               CONFIG_STRING, tls_ca, 0, 0),
        KEY("tls-cert",             CONFIG_STRING, tls_cert, 0, 0),
        KEY("tls-key",              CONFIG_STRING, tls_key, 0, 0),
        KEY("tls-crl",              CONFIG_STRING, tls_crl, 0, 0),
        KEY("allowed-peers",        CONFIG_STRING, allowed_peers, 0, 0),
        KEY("insecure-plaintext",   CONFIG_BOOL,   insecure_plaintext, 0, 0),
        KEY("reconnect-min-ms",     CONFIG_UINT,   reconnect_min_ms, 10, 3600000),
        KEY("reconnect-max-ms",     CONFIG_UINT,   reconnect_max_ms, 10, 3600000),
        KEY("heartbeat-ms",         CONFIG_UINT,   heartbeat_ms, 50, 3600000),
        KEY("heartbeat-timeout-ms", CONFIG_UINT,   heartbeat_timeout_ms, 50, 3600000),
        KEY("peer-idle-timeout-ms", CONFIG_UINT,   peer_idle_timeout_ms, 100, 86400000),
        KEY("max-calls-in-flight",  CONFIG_UINT,   max_calls_in_flight, 1, 100000),
        KEY("max-queued-bytes",     CONFIG_UINT,   max_queued_bytes, 65536, 1u << 30),
        KEY("max-message-bytes",    CONFIG_UINT,   max_message_bytes, 65536, 128u << 20),
        KEY("max-calls-per-caller", CONFIG_UINT,   max_calls_per_caller, 1, 100000),
        KEY("max-handshakes",       CONFIG_UINT,   max_handshakes, 1, 100000),
        KEY("max-connections-per-address", CONFIG_UINT, max_connections_per_address, 1, 100000),
        KEY("handshake-timeout-sec", CONFIG_UINT,  handshake_timeout_sec, 1, 600),
        KEY("listener-bus-connections", CONFIG_UINT, listener_bus_connections, 1, 64),
        KEY("listener-max-pending", CONFIG_UINT,   listener_max_pending, 1, 100000),
        KEY("max-holds-per-peer",   CONFIG_UINT,   max_holds_per_peer, 1, 1000000),
        KEY("max-holds-per-caller", CONFIG_UINT,   max_holds_per_caller, 1, 1000000),
        KEY("resume-max-events",    CONFIG_UINT,   resume_max_events, 1, 10000000),
        KEY("peer-change-rate",     CONFIG_UINT,   peer_change_rate, 1, 1000000),
        KEY("peer-change-burst",    CONFIG_UINT,   peer_change_burst, 1, 1000000),
        /* Patterns are the keys: any key, checked as a rule. */
        { "Peers", NULL, CONFIG_ENTRIES, offsetof(BridgeConfig, peers), 0, 0, peer_rule_check },
};

/* The command line: strings NULL and numbers -1 when not given, so that
 * they override the config file only when given. */
typedef struct Options {
        char *config_file;
        char *log_level;
        gboolean version;
        gboolean session;
        gboolean insecure_plaintext;
        char **upstreams;       /* --upstream, repeated */
        char *strings[8];
        int numbers[19];
} Options;

static const char *const string_options[8] = {
        "address", "listen", "tls-ca", "tls-cert", "tls-key", "tls-crl", "allowed-peers", NULL,
};
static const char *const number_options[19] = {
        "reconnect-min-ms", "reconnect-max-ms", "heartbeat-ms", "heartbeat-timeout-ms",
        "peer-idle-timeout-ms", "max-calls-in-flight", "max-queued-bytes", "max-message-bytes",
        "max-calls-per-caller", "max-handshakes", "max-connections-per-address", "handshake-timeout-sec",
        "listener-bus-connections", "listener-max-pending", "max-holds-per-peer", "max-holds-per-caller",
        "peer-change-rate", "peer-change-burst", "resume-max-events",
};

static void options_clear(Options *o) {
        g_free(o->config_file);
        g_free(o->log_level);
        g_strfreev(o->upstreams);
        for (size_t i = 0; i < ELEMENTSOF(o->strings); i++)
                g_free(o->strings[i]);
}

static void config_clear(BridgeConfig *c) {
        g_free(c->address);
        g_free(c->listen);
        g_free(c->upstream);
        g_free(c->tls_ca);
        g_free(c->tls_cert);
        g_free(c->tls_key);
        g_free(c->tls_crl);
        g_free(c->allowed_peers);
        g_strfreev(c->peers);
}

static const ConfigKey *find_key(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(bridge_config_keys); i++)
                if (bridge_config_keys[i].key && strcmp(bridge_config_keys[i].key, name) == 0)
                        return &bridge_config_keys[i];
        return NULL;
}

static int parse_options(int argc, char **argv, Options *o) {
        GOptionEntry entries[40] = {
                { "config",    0, 0, G_OPTION_ARG_FILENAME, &o->config_file, "Read settings from FILE (default " DEFAULT_CONFIG_FILE ")", "FILE" },
                { "session",   0, 0, G_OPTION_ARG_NONE, &o->session, "Use the session bus", NULL },
                { "insecure-plaintext", 0, 0, G_OPTION_ARG_NONE, &o->insecure_plaintext, "Allow tcp: links on loopback (development only)", NULL },
                { "log-level", 0, 0, G_OPTION_ARG_STRING, &o->log_level, "Log up to LEVEL (err, warning, notice, info, debug)", "LEVEL" },
                { "version",   0, 0, G_OPTION_ARG_NONE, &o->version, "Print the version and exit", NULL },
                { "upstream",  0, 0, G_OPTION_ARG_STRING_ARRAY, &o->upstreams,
                  "Import from ADDRESS; repeated (or ADDRESS;ADDRESS), each is tried in turn", "ADDRESS" },
        };
        size_t n = 6;
        g_autoptr(GOptionContext) context = g_option_context_new("- relay org.outpost.Outpost1 between buses over TLS");
        g_autoptr(GError) error = NULL;

        for (size_t i = 0; string_options[i]; i++)
                entries[n++] = (GOptionEntry) { string_options[i], 0, 0, G_OPTION_ARG_STRING, &o->strings[i],
                                                "See bridge.conf", "VALUE" };
        for (size_t i = 0; i < ELEMENTSOF(number_options); i++) {
                o->numbers[i] = -1;
                entries[n++] = (GOptionEntry) { number_options[i], 0, 0, G_OPTION_ARG_INT, &o->numbers[i],
                                                "See bridge.conf", "N" };
        }
        entries[n] = (GOptionEntry) {};

        g_option_context_set_summary(context,
                "--listen=tls:host=H,port=P exports the local bus's org.outpost.Outpost1 to remote bridges;\n"
                "--upstream=tls:host=H,port=P imports a remote one onto the local bus. A site server runs both.");
        g_option_context_add_main_entries(context, entries, NULL);
        if (!g_option_context_parse(context, &argc, &argv, &error)) {
                log_error("%s", error->message);
                return -EINVAL;
        }
        if (argc > 1) {
                log_error("Unexpected argument '%s'", argv[1]);
                return -EINVAL;
        }
        if (o->log_level)
                return log_set_max_level_from_string(o->log_level);
        return 0;
}

/* The config file, then what the command line gives on top. */
static int load_config(const Options *o, BridgeConfig *c) {
        g_autoptr(GError) error = NULL;

        *c = (BridgeConfig) {
                .reconnect_min_ms = 1000,
                .reconnect_max_ms = 30000,
                .heartbeat_ms = 1000,
                .heartbeat_timeout_ms = 2000,
                .peer_idle_timeout_ms = 10000,
                .max_calls_in_flight = 256,
                /* Room for the largest reply outpostd sends (a FetchSince page
                 * of about 8 MiB) with its framing. */
                .max_queued_bytes = 16u << 20,
                /* Far above the largest call DESIGN.md allows (a CreateUser
                 * with 64 attributes of 4 KiB, about 270 KiB), far below
                 * sd-bus's 128 MiB. */
                .max_message_bytes = 1u << 20,
                /* Half of what the upstream lets the link have in flight
                 * (max-calls-in-flight there): one local caller cannot
                 * take it all, and one that pipelines a hundred calls
                 * still may. */
                .max_calls_per_caller = 128,
                /* An idle connection costs little (the link allocates TLS
                 * state only once a peer sends), and known peers finish
                 * their handshake in a round trip or two: the oldest idle
                 * ones make room when a flood reaches these. */
                .max_handshakes = 64,
                .max_connections_per_address = 16,
                .handshake_timeout_sec = 10,
                /* A stock system bus allows 256 connections per account:
                 * peers share these, however many they are. */
                .listener_bus_connections = 8,
                /* What a stock system bus lets one connection have
                 * pending (max_replies_per_connection). */
                .listener_max_pending = 128,
                /* outpostd's own MaxHoldsPerPeer. */
                .max_holds_per_peer = 65536,
                /* What outpostd allows one connection of its own bus
                 * (MaxHoldsPerPeer): a local client of a site or machine
                 * may hold as many as one at central. */
                .max_holds_per_caller = 4096,
                /* Missed events held in memory while a resume checks
                 * them (pages of at most 1000): a few MiB of typical
                 * events; past it a snapshot costs no more. */
                .resume_max_events = 20000,
                /* A peer may be a site with thousands of people behind
                 * it, all coming online in the same minute: room for a
                 * morning's burst of holds, while a stolen machine's
                 * flood is held to a rate the store takes in its stride
                 * and the other peers go on. */
                .peer_change_rate = 1000,
                .peer_change_burst = 10000,
        };
        if (!config_file_load(o->config_file ?: DEFAULT_CONFIG_FILE, bridge_config_keys,
                              ELEMENTSOF(bridge_config_keys), c, &error)) {
                log_error("%s", error->message);
                return -EINVAL;
        }
        c->session = c->session || o->session;
        c->insecure_plaintext = c->insecure_plaintext || o->insecure_plaintext;
        for (size_t i = 0; string_options[i]; i++) {
                const ConfigKey *k = find_key(string_options[i]);

                if (k && o->strings[i]) {
                        char **field = (char **) ((char *) c + k->offset);
                        g_free(*field);
                        *field = g_strdup(o->strings[i]);
                }
        }
        if (o->upstreams) {
                g_free(c->upstream);
                c->upstream = g_strjoinv(";", o->upstreams);
        }
        for (size_t i = 0; i < ELEMENTSOF(number_options); i++) {
                const ConfigKey *k = find_key(number_options[i]);

                if (k && o->numbers[i] >= 0) {
                        if ((unsigned) o->numbers[i] < k->min || (unsigned) o->numbers[i] > k->max) {
                                log_error("--%s=%d: expected %u to %u", k->key, o->numbers[i], k->min, k->max);
                                return -EINVAL;
                        }
                        *(unsigned *) ((char *) c + k->offset) = (unsigned) o->numbers[i];
                }
        }
        return 0;
}

/* Certificates, keys and the plaintext rule, checked before anything
 * starts, so that a mistake is one clear line at start-up. */
static int check_link(Bridge *b, const char *address, char **ret_error) {
        _cleanup_(link_address_clear) LinkAddress a = {};
        int r;

        r = link_address_parse(address, &a, ret_error);
        if (r < 0)
                return r;
        return link_check(&a, &b->link_config, ret_error);
}

/* What SIGHUP reads again: the whole configuration, as at start. */
typedef struct Reload {
        Bridge *bridge;
        const Options *options;
} Reload;

/* The link's view of C: file names borrowed from C. */
static void link_config_tls_from(LinkConfig *lc, const BridgeConfig *c) {
        lc->ca_file = c->tls_ca;
        lc->cert_file = c->tls_cert;
        lc->key_file = c->tls_key;
        lc->crl_file = c->tls_crl;
}

/* allowed-peers: a comma-separated list of names, NULL when not set. */
static char **allowed_peers_split(const char *value) {
        return value ? g_strsplit(value, ",", -1) : NULL;
}

static void take_string(char **to, char **from) {
        g_free(*to);
        *to = g_steal_pointer(from);
}

/* The importer reads the TLS files at each connect, so here they are
 * only checked: a mistake is said now and the files in use are kept. */
static int check_upstream_files(Bridge *b, const LinkConfig *lc) {
        g_auto(GStrv) upstreams = link_address_list_split(b->config.upstream);

        for (size_t i = 0; b->importer && upstreams[i]; i++) {
                _cleanup_(link_address_clear) LinkAddress address = {};
                g_autofree char *error = NULL;
                int r;

                if (link_address_parse(upstreams[i], &address, NULL) < 0)
                        continue;
                r = link_check(&address, lc, &error);
                if (r < 0) {
                        log_error(RELOAD_FAILED ": the next connect to upstream %s would fail: %s", upstreams[i],
                                  error);
                        return r;
                }
        }
        return 0;
}

/* Certificate, key, CA, CRL, allowed-peers and [Peers] from the
 * configuration read again; everything else takes effect at the next
 * start. All or nothing. */
static int reload(Bridge *b, const Options *o) {
        _cleanup_(config_clear) BridgeConfig c = {};
        LinkConfig lc = b->link_config;
        g_auto(GStrv) allowed_peers = NULL;
        int r;

        r = load_config(o, &c);
        if (r < 0) {
                log_error(RELOAD_FAILED ": the configuration does not load");
                return r;
        }
        link_config_tls_from(&lc, &c);
        allowed_peers = allowed_peers_split(c.allowed_peers);
        lc.allowed_peers = allowed_peers;
        r = check_upstream_files(b, &lc);
        if (r < 0)
                return r;
        if (b->listener) {
                r = listener_reload(b->listener, &lc, c.peers);
                if (r < 0)
                        return r;
        }
        take_string(&b->config.tls_ca, &c.tls_ca);
        take_string(&b->config.tls_cert, &c.tls_cert);
        take_string(&b->config.tls_key, &c.tls_key);
        take_string(&b->config.tls_crl, &c.tls_crl);
        take_string(&b->config.allowed_peers, &c.allowed_peers);
        g_strfreev(b->link_config.allowed_peers);
        b->link_config.allowed_peers = g_steal_pointer(&allowed_peers);
        g_strfreev(b->config.peers);
        b->config.peers = g_steal_pointer(&c.peers);
        link_config_tls_from(&b->link_config, &b->config);
        return 0;
}

/* SIGHUP (systemctl reload). Whatever fails, the bridge goes on with
 * what it has. */
static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Reload *reload_context = userdata;

        (void) sd_notify(false, "RELOADING=1");
        log_info("Reloading on SIGHUP");
        (void) reload(reload_context->bridge, reload_context->options);
        (void) sd_notify(false, "READY=1");
        return 0;
}

static int check_config(const BridgeConfig *c) {
        if (!c->listen && !c->upstream && sd_listen_fds(false) <= 0) {
                log_error("Nothing to do: give --listen=, --upstream= or both (or set them in bridge.conf)");
                return -EINVAL;
        }
        if (c->session && c->address) {
                log_error("session and address cannot be combined");
                return -EINVAL;
        }
        if (!c->insecure_plaintext && (!c->tls_ca || !c->tls_cert || !c->tls_key)) {
                log_error("TLS needs tls-ca, tls-cert and tls-key");
                return -EINVAL;
        }
        if (c->reconnect_min_ms > c->reconnect_max_ms) {
                log_error("reconnect-min-ms (%u) is larger than reconnect-max-ms (%u)",
                          c->reconnect_min_ms, c->reconnect_max_ms);
                return -EINVAL;
        }
        return 0;
}

int bridge_open_local_bus(Bridge *b, sd_bus **ret) {
        return bus_open_as_configured(b->config.address, b->config.session, ret);
}

int bridge_connect_local_bus(Bridge *b, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = bridge_open_local_bus(b, &bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, b->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        r = bridge_watch_local_bus(b, bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}


/* The listen address and every upstream. */
static int check_links(Bridge *b) {
        g_auto(GStrv) upstreams = link_address_list_split(b->config.upstream);
        g_autoptr(GPtrArray) addresses = g_ptr_array_new();

        if (b->config.listen)
                g_ptr_array_add(addresses, b->config.listen);
        for (size_t i = 0; upstreams[i]; i++)
                g_ptr_array_add(addresses, upstreams[i]);
        for (guint i = 0; i < addresses->len; i++) {
                const char *address = addresses->pdata[i];
                g_autofree char *error = NULL;
                int r;

                r = check_link(b, address, &error);
                if (r < 0) {
                        log_error("%s: %s", address, error ?: strerror(-r));
                        return r;
                }
        }
        return 0;
}

static void bridge_done(Bridge *b) {
        b->listener = listener_free(b->listener);
        b->importer = importer_free(b->importer);
        bridge_release_buses(b);
        g_strfreev(b->link_config.allowed_peers);
        config_clear(&b->config);
        g_free(b->instance_id);
        sd_event_unref(b->event);
}

static int run(const Options *o) {
        _cleanup_(bridge_done) Bridge b = {};
        Reload reload_context = { .bridge = &b, .options = o };
        int activated = -1, n, r;
        sigset_t mask;

        r = load_config(o, &b.config);
        if (r < 0)
                return r;
        r = check_config(&b.config);
        if (r < 0)
                return r;
        b.instance_id = uuid_string_new();
        b.link_config = (LinkConfig) {
                .allowed_peers = allowed_peers_split(b.config.allowed_peers),
                .insecure_plaintext = b.config.insecure_plaintext,
                .max_queued_bytes = b.config.max_queued_bytes,
                .max_message_bytes = b.config.max_message_bytes,
                .handshake_timeout_sec = b.config.handshake_timeout_sec,
                .max_handshakes = b.config.max_handshakes,
                .max_handshakes_per_address = b.config.max_connections_per_address,
        };

        link_config_tls_from(&b.link_config, &b.config);

        r = check_links(&b);
        if (r < 0)
                return r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        r = sd_event_default(&b.event);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the event loop");
        (void) sd_event_add_signal(b.event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(b.event, NULL, SIGINT, NULL, NULL);
        r = sd_event_add_signal(b.event, NULL, SIGHUP, on_reload_signal, &reload_context);
        if (r < 0)
                return log_error_errno(r, "Cannot handle SIGHUP");

        /* Both roles watch the local bus: losing it ends the bridge. */
        if (b.config.upstream) {
                r = importer_new(&b, &b.importer);
                if (r < 0)
                        return r;
        }
        /* A socket from the service manager (outpost-bridge.socket) makes
         * this a listener even without listen= in bridge.conf. */
        n = sd_listen_fds(true);
        if (n == 1)
                activated = SD_LISTEN_FDS_START;
        else if (n > 1) {
                log_error("Expected one socket from the service manager, got %d", n);
                return -EINVAL;
        }
        if (b.config.listen || activated >= 0) {
                r = listener_new(&b, activated, &b.listener);
                if (r < 0)
                        return r;
                log_info("Listening on %s", activated >= 0 ? "the socket passed by the service manager" : b.config.listen);
        }
        if (!b.importer)
                (void) sd_notify(false, "READY=1");

        r = sd_event_loop(b.event);
        log_info("Shutting down");
        return r;
}

int main(int argc, char **argv) {
        _cleanup_(options_clear) Options o = {};
        int r;

        setlocale(LC_ALL, "");
        log_set_program_name("outpost-bridge");
        r = parse_options(argc, argv, &o);
        if (r < 0)
                return EXIT_FAILURE;
        if (o.version) {
                printf("outpost-bridge %s\n", PACKAGE_VERSION);
                return EXIT_SUCCESS;
        }
        r = run(&o);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
