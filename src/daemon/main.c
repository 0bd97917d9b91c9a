/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostd: publishes the Outpost managers on the bus. */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "bus-open.h"
#include "config-file.h"
#include "daemon.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

#define DEFAULT_CONFIG_FILE SYSCONFDIR "/outpost/outpostd.conf"
#define DEFAULT_STATE_DIR   LOCALSTATEDIR "/lib/outpost"

typedef struct Options {
        gboolean session;
        char *address;
        char *state_dir;
        char *config_file;
        char *log_level;
        gboolean version;
} Options;

static const ConfigKey daemon_config_keys[] = {
        { "Store", "Backend",    CONFIG_STRING, offsetof(DaemonConfig, store_backend) },
        { "Store", "Path",       CONFIG_STRING, offsetof(DaemonConfig, store_path) },
        { "Store", "Connection", CONFIG_STRING, offsetof(DaemonConfig, store_connection) },
        { "Events", "RetentionCount",   CONFIG_UINT, offsetof(DaemonConfig, retention_count),   1, 100000000 },
        { "Events", "RetentionSeconds", CONFIG_UINT, offsetof(DaemonConfig, retention_seconds), 1, UINT32_MAX },
        { "Presence", "MaxPeers",          CONFIG_UINT, offsetof(DaemonConfig, max_presence_peers),       1, 1000000 },
        { "Presence", "MaxHoldsPerPeer",   CONFIG_UINT, offsetof(DaemonConfig, max_holds_per_connection), 1, 1000000 },
        /* Clients are written against the contract's figures: a limit may
         * be lowered, never raised past them. */
#define LIMIT(key, field, contract) { "Limits", key, CONFIG_UINT, offsetof(DaemonConfig, field), 1, contract }
        LIMIT("MaxEventDataBytes",      max_event_data_bytes,               EVENT_DATA_SIZE_MAX),
        LIMIT("MaxEventsPerPage",       max_events_per_page,                FETCH_LIMIT_MAX),
        LIMIT("MaxTopicPrefixes",       max_topic_prefixes,                 FETCH_PREFIXES_MAX),
        LIMIT("MaxMessageBodyBytes",    max_message_body_bytes,             MESSAGE_BODY_MAX),
        LIMIT("MaxRecipients",          max_recipients,                     MESSAGE_RECIPIENTS_MAX),
        LIMIT("MaxUsersPerPage",        max_users_per_page,                 LIST_LIMIT_MAX),
        LIMIT("MaxDisplayNameLength",   user_limits.display_name_chars,     USER_DISPLAY_NAME_MAX),
        LIMIT("MaxAttributes",          user_limits.attributes,             USER_ATTRIBUTES_MAX),
        LIMIT("MaxAttributeKeyBytes",   user_limits.attribute_key_bytes,    USER_ATTRIBUTE_KEY_MAX),
        LIMIT("MaxAttributeValueBytes", user_limits.attribute_value_bytes,  USER_ATTRIBUTE_VALUE_MAX),
#undef LIMIT
};

static void options_clear(Options *o) {
        g_free(o->address);
        g_free(o->state_dir);
        g_free(o->config_file);
        g_free(o->log_level);
}

static int parse_options(int argc, char **argv, Options *o) {
        const GOptionEntry entries[] = {
                { "session",   0, 0, G_OPTION_ARG_NONE,     &o->session,     "Connect to the session bus", NULL },
                { "address",   0, 0, G_OPTION_ARG_STRING,   &o->address,     "Connect to the bus at ADDRESS", "ADDRESS" },
                { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &o->state_dir,   "Keep the store in DIR (default " DEFAULT_STATE_DIR ")", "DIR" },
                { "config",    0, 0, G_OPTION_ARG_FILENAME, &o->config_file, "Read settings from FILE (default " DEFAULT_CONFIG_FILE ")", "FILE" },
                { "log-level", 0, 0, G_OPTION_ARG_STRING,   &o->log_level,   "Log up to LEVEL (err, warning, notice, info, debug)", "LEVEL" },
                { "version",   0, 0, G_OPTION_ARG_NONE,     &o->version,     "Print the version and exit", NULL },
                {}
        };
        g_autoptr(GOptionContext) context = g_option_context_new("- the Outpost system service");
        g_autoptr(GError) error = NULL;

        g_option_context_set_summary(context, "Publishes the Outpost managers as org.outpost.Outpost1 on the system bus.");
        g_option_context_add_main_entries(context, entries, NULL);
        if (!g_option_context_parse(context, &argc, &argv, &error)) {
                log_error("%s", error->message);
                return -EINVAL;
        }
        if (argc > 1) {
                log_error("Unexpected argument '%s'", argv[1]);
                return -EINVAL;
        }
        if (o->session && o->address) {
                log_error("--session and --address= cannot be combined");
                return -EINVAL;
        }
        if (o->log_level)
                return log_set_max_level_from_string(o->log_level);
        return 0;
}

/* [Store]: one backend, and only its own keys. */
static int check_store_config(const char *path, const DaemonConfig *config) {
        const char *backend = config->store_backend ?: "sqlite";

        if (g_str_equal(backend, "sqlite")) {
                if (config->store_connection) {
                        log_error("%s: [Store] Connection= is for Backend=postgresql, but Backend is sqlite", path);
                        return -EINVAL;
                }
                return 0;
        }
        if (!g_str_equal(backend, "postgresql")) {
                log_error("%s: [Store] Backend=%s: must be sqlite or postgresql", path, backend);
                return -EINVAL;
        }
        if (config->store_path) {
                log_error("%s: [Store] Path= is for Backend=sqlite, but Backend is postgresql", path);
                return -EINVAL;
        }
        if (!config->store_connection || !config->store_connection[0]) {
                log_error("%s: [Store] Backend=postgresql needs Connection= (a libpq connection string, "
                          "such as \"host=db.example.com dbname=outpost user=outpost\")", path);
                return -EINVAL;
        }
        return 0;
}

static void daemon_config_clear(DaemonConfig *config) {
        g_free(config->store_backend);
        g_free(config->store_path);
        g_free(config->store_connection);
}

static int load_config(const char *path, DaemonConfig *config) {
        g_autoptr(GError) error = NULL;

        *config = (DaemonConfig) {
                .retention_count = 100000,
                .retention_seconds = 7 * 24 * 3600,
                .max_presence_peers = 500,
                .max_holds_per_connection = 4096,
                .user_limits = USER_LIMITS_CONTRACT,
                .max_event_data_bytes = EVENT_DATA_SIZE_MAX,
                .max_events_per_page = FETCH_LIMIT_MAX,
                .max_topic_prefixes = FETCH_PREFIXES_MAX,
                .max_message_body_bytes = MESSAGE_BODY_MAX,
                .max_recipients = MESSAGE_RECIPIENTS_MAX,
                .max_users_per_page = LIST_LIMIT_MAX,
        };
        if (!config_file_load(path, daemon_config_keys, G_N_ELEMENTS(daemon_config_keys), config, &error)) {
                log_error("%s", error->message);
                return -EINVAL;
        }
        return check_store_config(path, config);
}

static int on_name_acquired(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Daemon *d = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        uint32_t result = 0;
        int r;

        if (e) {
                log_error("Cannot own %s: %s", OUTPOST_BUS_NAME, e->message);
                return sd_event_exit(d->event, -EACCES);
        }
        r = sd_bus_message_read(m, "u", &result);
        if (r < 0 || (result != 1 && result != 4)) {
                /* 3: DBUS_REQUEST_NAME_REPLY_EXISTS. */
                log_error("Cannot own %s: another program already owns it", OUTPOST_BUS_NAME);
                return sd_event_exit(d->event, -EEXIST);
        }
        log_info("Serving %s", OUTPOST_BUS_NAME);
        (void) sd_notifyf(false, "STATUS=Serving %s, store %s", OUTPOST_BUS_NAME, store_path(d->store));
        return 0;
}

/* sd-bus tells of a lost connection with a local signal. dbus-daemon
 * drops a connection that breaks its rules (a message too large or nested
 * too deep), and the bus itself may go away; either way nobody can reach
 * outpostd any more, so it says so and exits non-zero for systemd to
 * restart it, rather than live on without its name. */
static int on_bus_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Daemon *d = userdata;

        log_error("Lost the connection to the bus (dbus-daemon dropped it or went away); "
                  "exiting so that the service manager restarts outpostd");
        return sd_event_exit(d->event, -ECONNRESET);
}

static int register_objects(Daemon *d) {
        static int (*const register_manager[])(Daemon *d) = {
                registry_register,
                users_register,
                presence_register,
                messages_register,
                events_register,
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(register_manager); i++) {
                r = register_manager[i](d);
                if (r < 0)
                        return log_error_errno(r, "Cannot register objects");
        }
        return 0;
}

static void daemon_done(Daemon *d) {
        batch_done(d);
        polkit_free(d->polkit);
        audit_free(d->audit);
        bus_callers_free(d->callers);
        if (d->bus)
                sd_bus_flush_close_unref(d->bus);
        presence_free(d->presence);
        sd_event_source_unref(d->retention_timer);
        store_close(d->store);
        daemon_config_clear(&d->config);
        g_free(d->instance_id);
        sd_event_unref(d->event);
}

/* The store is open and this outpostd is the active one: it connects to
 * the bus, registers every object and, last, requests its name. */
static int serve(Daemon *d, const Options *o) {
        int r;

        r = bus_open_as_configured(o->address, o->session, &d->bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(d->bus, d->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop");
        r = sd_bus_match_signal(d->bus, NULL, NULL, "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                "Disconnected", on_bus_disconnected, d);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the bus connection");

        r = batch_setup(d);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the commit path");
        d->callers = bus_callers_new();
        r = polkit_new(d->bus, d->callers, &d->polkit);
        if (r < 0)
                return log_error_errno(r, "Cannot set up authorization");
        r = audit_new(d->callers, &d->audit);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the audit trail");
        r = register_objects(d);
        if (r < 0)
                return r;

        /* Last: a client that sees the name owned can use everything. */
        r = sd_bus_request_name_async(d->bus, NULL, OUTPOST_BUS_NAME, 0, on_name_acquired, d);
        if (r < 0)
                return log_error_errno(r, "Cannot request %s", OUTPOST_BUS_NAME);

        return 0;
}

/* What serve() needs once the store is ready. */
typedef struct StartContext {
        Daemon *daemon;
        const Options *options;
} StartContext;

static void on_store_active(Store *s, int r, void *userdata) {
        StartContext *c = userdata;

        if (r < 0) {
                (void) sd_event_exit(c->daemon->event, r);
                return;
        }
        r = serve(c->daemon, c->options);
        if (r < 0)
                (void) sd_event_exit(c->daemon->event, r);
}

static int run(const Options *o) {
        _cleanup_(daemon_done) Daemon d = {};
        StartContext start = { .daemon = &d, .options = o };
        sigset_t mask;
        int r;

        r = load_config(o->config_file ?: DEFAULT_CONFIG_FILE, &d.config);
        if (r < 0)
                return r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&d.event);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the event loop");
        /* A NULL handler makes the loop exit cleanly on the signal. */
        (void) sd_event_add_signal(d.event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(d.event, NULL, SIGINT, NULL, NULL);

        StoreConfig store_config = {
                .backend = g_strcmp0(d.config.store_backend, "postgresql") == 0 ?
                           STORE_BACKEND_POSTGRESQL : STORE_BACKEND_SQLITE,
                /* The command line wins over the file. */
                .directory = o->state_dir ?: d.config.store_path ?: DEFAULT_STATE_DIR,
                .connection = d.config.store_connection,
        };
        r = store_open(&store_config, d.event, &d.store);
        if (r < 0)
                return r;
        /* A standby (PostgreSQL) waits here, on the loop, owning nothing on
         * the bus; serve() runs once this outpostd is the active one. */
        store_wait_active(d.store, on_store_active, &start);

        r = sd_event_loop(d.event);
        if (r < 0)
                return r;
        log_info("Shutting down");
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_(options_clear) Options o = {};
        int r;

        setlocale(LC_ALL, "");
        log_set_program_name("outpostd");

        r = parse_options(argc, argv, &o);
        if (r < 0)
                return EXIT_FAILURE;
        if (o.version) {
                printf("outpostd %s\n", PACKAGE_VERSION);
                return EXIT_SUCCESS;
        }
        r = run(&o);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
