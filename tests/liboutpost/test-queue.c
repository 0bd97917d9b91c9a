/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* liboutpost against a scripted service. A GtDBusQueue owns
 * org.outpost.Outpost1 on a private bus, and each test answers the calls
 * the client makes, so that the service fails, vanishes, comes back with
 * events the client missed, loses its history or reports a gap at exactly
 * the moment the test wants. A GtSignalLogger records the client's
 * notify::state and resync-needed, in order.
 *
 * The calls that only read (Properties.Get/GetAll, GetManagedObjects) are
 * answered by the script from its model of the service (Fake below);
 * every other call waits in Fixture.calls for the test to answer. */
#include "config.h"

#include <string.h>

#include <libglib-testing/dbus-queue.h>
#include <libglib-testing/signal-logger.h>
#include <outpost/outpost.h>

#include "call-result.h"

#define NAME            "org.outpost.Outpost1"
#define ROOT            "/org/outpost/Outpost1"
#define PATH_USERS      ROOT "/users"
#define PATH_PRESENCE   ROOT "/presence"
#define PATH_MESSAGES   ROOT "/messages"
#define PATH_EVENTS     ROOT "/events"
#define PATH_BRIDGE     ROOT "/bridge"
#define IFACE_PREFIX    "org.outpost.Outpost1."
#define IFACE_REGISTRY  IFACE_PREFIX "Registry"
#define IFACE_USERS     IFACE_PREFIX "Users"
#define IFACE_PRESENCE  IFACE_PREFIX "Presence"
#define IFACE_MESSAGES  IFACE_PREFIX "Messages"
#define IFACE_EVENTS    IFACE_PREFIX "Events"
#define IFACE_BRIDGE    IFACE_PREFIX "Bridge"
#define IFACE_PROPERTIES "org.freedesktop.DBus.Properties"
#define IFACE_OBJECT_MANAGER "org.freedesktop.DBus.ObjectManager"
#define ERROR_PREFIX    "org.outpost.Outpost1.Error."

#define SERVER_ID       "6d1c1a52-2f6e-4b1e-9a0b-6c1f1f7e0001"
#define HISTORY         "6d1c1a52-2f6e-4b1e-9a0b-6c1f1f7e0002"
#define NEW_HISTORY     "6d1c1a52-2f6e-4b1e-9a0b-6c1f1f7e0003"
#define USER_ID         "6d1c1a52-2f6e-4b1e-9a0b-6c1f1f7e0004"
#define OTHER_USER_ID   "6d1c1a52-2f6e-4b1e-9a0b-6c1f1f7e0005"

#define WAIT_MS         10000

typedef struct Fixture {
        GtDBusQueue *queue;
        guint name_id;                  /* 0 while the service does not own its name */
        GDBusConnection *service;       /* the service's connection, from its first call */
        GQueue calls;                   /* GDBusMethodInvocation*: left for the test to answer */

        /* The service's model, as its properties show it. */
        char *history_id;
        guint64 first_seq, last_seq;
        guint64 generation;
        const char *bridge_state;       /* NULL: not a bridged bus */

        OutpostClient *client;
        GtSignalLogger *logger;         /* notify::state and resync-needed of the client */
        GArray *seqs;                   /* guint64, each event delivered */
} Fixture;

/* The scripted service */

static const char object_manager_xml[] =
        "<node>"
        "  <interface name='" IFACE_OBJECT_MANAGER "'>"
        "    <method name='GetManagedObjects'>"
        "      <arg name='objects' type='a{oa{sa{sv}}}' direction='out'/>"
        "    </method>"
        "  </interface>"
        "</node>";

typedef struct Manager {
        const char *path;
        const char *iface;
        GDBusInterfaceInfo *(*info)(void);
        gboolean bridged_only;
} Manager;

static const Manager managers[] = {
        { ROOT, IFACE_REGISTRY, outpost_registry_interface_info, FALSE },
        { PATH_USERS, IFACE_USERS, outpost_users_interface_info, FALSE },
        { PATH_PRESENCE, IFACE_PRESENCE, outpost_presence_interface_info, FALSE },
        { PATH_MESSAGES, IFACE_MESSAGES, outpost_messages_interface_info, FALSE },
        { PATH_EVENTS, IFACE_EVENTS, outpost_events_interface_info, FALSE },
        { PATH_BRIDGE, IFACE_BRIDGE, outpost_bridge_interface_info, TRUE },
};

/* The properties of IFACE, as an a{sv} (floating). */
static GVariant *properties(Fixture *f, const char *iface) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
        if (g_str_equal(iface, IFACE_REGISTRY)) {
                g_variant_builder_add(&b, "{sv}", "ServerId", g_variant_new_string(SERVER_ID));
                g_variant_builder_add(&b, "{sv}", "Version", g_variant_new_string(PACKAGE_VERSION));
        } else if (g_str_equal(iface, IFACE_EVENTS)) {
                g_variant_builder_add(&b, "{sv}", "HistoryId", g_variant_new_string(f->history_id));
                g_variant_builder_add(&b, "{sv}", "FirstSeq", g_variant_new_uint64(f->first_seq));
                g_variant_builder_add(&b, "{sv}", "LastSeq", g_variant_new_uint64(f->last_seq));
                g_variant_builder_add(&b, "{sv}", "RetentionCount", g_variant_new_uint32(100000));
                g_variant_builder_add(&b, "{sv}", "RetentionSeconds", g_variant_new_uint32(604800));
        } else if (g_str_equal(iface, IFACE_PRESENCE)) {
                g_variant_builder_add(&b, "{sv}", "OnlineCount", g_variant_new_uint32(0));
                g_variant_builder_add(&b, "{sv}", "Generation", g_variant_new_uint64(f->generation));
        } else if (g_str_equal(iface, IFACE_BRIDGE) && f->bridge_state) {
                g_variant_builder_add(&b, "{sv}", "State", g_variant_new_string(f->bridge_state));
                g_variant_builder_add(&b, "{sv}", "Upstream", g_variant_new_string("tls:host=site.example,port=7000"));
                g_variant_builder_add(&b, "{sv}", "LastError", g_variant_new_string(""));
                g_variant_builder_add(&b, "{sv}", "Since", g_variant_new_int64(0));
                g_variant_builder_add(&b, "{sv}", "Reconnects", g_variant_new_uint32(0));
                g_variant_builder_add(&b, "{sv}", "Hops", g_variant_new_uint32(1));
        }
        return g_variant_builder_end(&b);
}

static GVariant *managed_objects(Fixture *f) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a{oa{sa{sv}}}"));
        for (gsize i = 0; i < G_N_ELEMENTS(managers); i++) {
                if (managers[i].bridged_only && !f->bridge_state)
                        continue;
                g_variant_builder_add(&b, "{o@a{sa{sv}}}", managers[i].path,
                                      g_variant_new_parsed("{%s: %@a{sv}}", managers[i].iface,
                                                           properties(f, managers[i].iface)));
        }
        return g_variant_builder_end(&b);
}

/* Answers the calls that only read the model; FALSE for the others. */
static gboolean answer_read(Fixture *f, GDBusMethodInvocation *inv) {
        const char *iface = g_dbus_method_invocation_get_interface_name(inv);
        const char *method = g_dbus_method_invocation_get_method_name(inv);
        GVariant *params = g_dbus_method_invocation_get_parameters(inv);
        const char *want, *name;

        if (g_str_equal(iface, IFACE_PROPERTIES) && g_str_equal(method, "GetAll")) {
                g_variant_get(params, "(&s)", &want);
                g_dbus_method_invocation_return_value(inv, g_variant_new("(@a{sv})", properties(f, want)));
                return TRUE;
        }
        if (g_str_equal(iface, IFACE_PROPERTIES) && g_str_equal(method, "Get")) {
                g_autoptr(GVariant) all = NULL, value = NULL;

                g_variant_get(params, "(&s&s)", &want, &name);
                all = g_variant_ref_sink(properties(f, want));
                value = g_variant_lookup_value(all, name, NULL);
                if (value)
                        g_dbus_method_invocation_return_value(inv, g_variant_new("(v)", value));
                else
                        g_dbus_method_invocation_return_dbus_error(inv, "org.freedesktop.DBus.Error.UnknownProperty",
                                                                   name);
                return TRUE;
        }
        if (g_str_equal(iface, IFACE_OBJECT_MANAGER) && g_str_equal(method, "GetManagedObjects")) {
                g_dbus_method_invocation_return_value(inv, g_variant_new("(@a{oa{sa{sv}}})", managed_objects(f)));
                return TRUE;
        }
        return FALSE;
}

/* Runs the test's main context once and takes the calls that came in.
 * (gt_dbus_queue_try_pop_message() of libglib-testing 0.1.1 never pops:
 * only this thread pops, so a message counted is there to pop.) */
static void pump(Fixture *f) {
        GDBusMethodInvocation *inv;

        g_main_context_iteration(NULL, FALSE);
        while (gt_dbus_queue_get_n_messages(f->queue) > 0 && gt_dbus_queue_pop_message(f->queue, &inv)) {
                if (!f->service)
                        f->service = g_object_ref(g_dbus_method_invocation_get_connection(inv));
                if (!answer_read(f, inv))
                        g_queue_push_tail(&f->calls, inv);
        }
}

#define wait_for(f, condition)                                                          \
        G_STMT_START {                                                                  \
                gint64 _deadline = g_get_monotonic_time() + WAIT_MS * 1000;             \
                while (!(condition)) {                                                  \
                        if (g_get_monotonic_time() > _deadline)                         \
                                g_error("Timed out waiting for: %s", #condition);        \
                        pump(f);                                                        \
                        g_usleep(1000);                                                 \
                }                                                                       \
        } G_STMT_END

/* Lets whatever is under way settle for MS milliseconds. */
static void settle(Fixture *f, int ms) {
        gint64 until = g_get_monotonic_time() + ms * 1000;

        while (g_get_monotonic_time() < until) {
                pump(f);
                g_usleep(1000);
        }
}

/* The next call the client made, which must be METHOD on IFACE at PATH. */
static GDBusMethodInvocation *expect_call(Fixture *f, const char *path, const char *iface, const char *method) {
        GDBusMethodInvocation *inv;

        wait_for(f, f->calls.length > 0);
        inv = g_queue_pop_head(&f->calls);
        if (!g_str_equal(g_dbus_method_invocation_get_object_path(inv), path) ||
            !g_str_equal(g_dbus_method_invocation_get_interface_name(inv), iface) ||
            !g_str_equal(g_dbus_method_invocation_get_method_name(inv), method)) {
                g_autofree char *got = gt_dbus_queue_format_message(inv);
                g_error("Expected %s.%s on %s, got:\n%s", iface, method, path, got);
        }
        return inv;
}

static void assert_no_calls(Fixture *f) {
        settle(f, 50);
        if (f->calls.length > 0) {
                g_autofree char *got = gt_dbus_queue_format_message(g_queue_peek_head(&f->calls));
                g_error("Expected no call, got %u, the first:\n%s", f->calls.length, got);
        }
}

static void service_appear(Fixture *f) {
        g_assert_cmpuint(f->name_id, ==, 0);
        f->name_id = gt_dbus_queue_own_name(f->queue, NAME);
}

static void service_vanish(Fixture *f) {
        g_assert_cmpuint(f->name_id, !=, 0);
        gt_dbus_queue_unown_name(f->queue, f->name_id);
        f->name_id = 0;
}

static void emit(Fixture *f, const char *path, const char *iface, const char *member, GVariant *params) {
        g_autoptr(GError) error = NULL;

        g_assert_nonnull(f->service);
        g_dbus_connection_emit_signal(f->service, NULL, path, iface, member, params, &error);
        g_assert_no_error(error);
}

static void emit_event(Fixture *f, guint64 seq) {
        if (seq > f->last_seq)
                f->last_seq = seq;
        emit(f, PATH_EVENTS, IFACE_EVENTS, "Event",
             g_variant_new_parsed("(%t, 'app/door', @x 1764201600000000, {'n': <%t>})", seq, seq));
}

static void emit_gap(Fixture *f, guint64 after_seq, guint64 resumed_seq) {
        emit(f, PATH_EVENTS, IFACE_EVENTS, "Gap", g_variant_new("(tt)", after_seq, resumed_seq));
}

static void set_bridge_state(Fixture *f, const char *state) {
        f->bridge_state = state;
        emit(f, PATH_BRIDGE, IFACE_PROPERTIES, "PropertiesChanged",
             g_variant_new_parsed("(%s, {'State': <%s>}, @as [])", IFACE_BRIDGE, state));
}

/* A FetchSince reply with the events FIRST..LAST (none when FIRST > LAST). */
static void return_events(GDBusMethodInvocation *inv, guint64 first, guint64 last, guint64 next_after,
                          gboolean more) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a(tsxa{sv})"));
        for (guint64 seq = first; seq <= last; seq++)
                g_variant_builder_add_parsed(&b, "(%t, 'app/door', @x 1764201600000000, {'n': <%t>})", seq, seq);
        g_dbus_method_invocation_return_value(inv, g_variant_new("(a(tsxa{sv})tb)", &b, next_after, more));
}

/* The next call is FetchSince for HISTORY_ID after AFTER_SEQ, for every topic. */
static GDBusMethodInvocation *expect_fetch(Fixture *f, const char *history_id, guint64 after_seq) {
        GDBusMethodInvocation *inv = expect_call(f, PATH_EVENTS, IFACE_EVENTS, "FetchSince");
        g_autofree const char **prefixes = NULL;
        const char *history;
        guint64 after;
        guint32 limit;

        g_variant_get(g_dbus_method_invocation_get_parameters(inv), "(&st^a&su)", &history, &after, &prefixes, &limit);
        g_assert_cmpstr(history, ==, history_id);
        g_assert_cmpuint(after, ==, after_seq);
        g_assert_cmpuint(g_strv_length((char **) prefixes), ==, 0);
        g_assert_cmpuint(limit, >=, 1);
        g_assert_cmpuint(limit, <=, 10000);
        return inv;
}

/* The client */

#define client_state(f) outpost_client_get_state((f)->client)

static void on_init(GObject *source, GAsyncResult *result, gpointer data) {
        gboolean *done = data;
        g_autoptr(GError) error = NULL;

        g_assert_true(g_async_initable_init_finish(G_ASYNC_INITABLE(source), result, &error));
        g_assert_no_error(error);
        *done = TRUE;
}

static void on_event(OutpostClient *client, guint64 seq, const char *topic, gint64 time, GVariant *data,
                     gpointer user_data) {
        Fixture *f = user_data;

        g_array_append_val(f->seqs, seq);
}

/* The state notifications and resync-needed, popped in the order they came. */
static void assert_state_notified(Fixture *f, OutpostClientState state) {
        gt_signal_logger_assert_notify_emission_pop(f->logger, f->client, "state");
        g_assert_cmpint(client_state(f), ==, state);
}

static void assert_resync_needed(Fixture *f) {
        gt_signal_logger_assert_emission_pop(f->logger, f->client, "resync-needed", NULL);
}

static void assert_seqs(Fixture *f, guint64 first, guint64 last) {
        g_assert_cmpuint(f->seqs->len, ==, last - first + 1);
        for (guint i = 0; i < f->seqs->len; i++)
                g_assert_cmpuint(g_array_index(f->seqs, guint64, i), ==, first + i);
}

/* Until the service owns its name on the bus, or no longer does. */
static void wait_owned(Fixture *f, gboolean want) {
        gboolean owned = !want;

        while (owned != want) {
                g_autoptr(GVariant) r = NULL;
                g_autoptr(GError) error = NULL;

                r = g_dbus_connection_call_sync(gt_dbus_queue_get_client_connection(f->queue), "org.freedesktop.DBus",
                                                "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
                                                g_variant_new("(s)", NAME), G_VARIANT_TYPE("(b)"),
                                                G_DBUS_CALL_FLAGS_NONE, WAIT_MS, NULL, &error);
                g_assert_no_error(error);
                g_variant_get(r, "(b)", &owned);
                if (owned != want)
                        g_usleep(1000);
        }
}

static void setup(Fixture *f, gboolean bridged) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GDBusNodeInfo) node = g_dbus_node_info_new_for_xml(object_manager_xml, &error);
        gboolean ready = FALSE;

        g_assert_no_error(error);
        f->history_id = g_strdup(HISTORY);
        f->first_seq = 1;
        f->last_seq = 10;
        f->bridge_state = bridged ? "connected" : NULL;
        f->seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
        g_queue_init(&f->calls);

        f->queue = gt_dbus_queue_new();
        gt_dbus_queue_connect(f->queue, &error);
        g_assert_no_error(error);
        for (gsize i = 0; i < G_N_ELEMENTS(managers); i++) {
                if (managers[i].bridged_only && !bridged)
                        continue;
                gt_dbus_queue_export_object(f->queue, managers[i].path, managers[i].info(), &error);
                g_assert_no_error(error);
        }
        gt_dbus_queue_export_object(f->queue, ROOT, node->interfaces[0], &error);
        g_assert_no_error(error);
        service_appear(f);
        wait_owned(f, TRUE);

        /* Built by hand, so that the logger sees the first notification. */
        f->client = g_object_new(OUTPOST_TYPE_CLIENT, "connection", gt_dbus_queue_get_client_connection(f->queue),
                                 NULL);
        f->logger = gt_signal_logger_new();
        gt_signal_logger_connect(f->logger, f->client, "notify::state");
        gt_signal_logger_connect(f->logger, f->client, "resync-needed");
        g_async_initable_init_async(G_ASYNC_INITABLE(f->client), G_PRIORITY_DEFAULT, NULL, on_init, &ready);
        wait_for(f, ready);

        /* The first snapshot: nothing to fetch, the client follows on from
         * the snapshot's LastSeq. */
        assert_state_notified(f, OUTPOST_CLIENT_STATE_CONNECTED);
        gt_signal_logger_assert_no_emissions(f->logger);
        g_assert_cmpstr(outpost_client_get_server_id(f->client), ==, SERVER_ID);
        g_assert_cmpuint(outpost_client_get_last_seq(f->client), ==, 10);
        g_assert_true((outpost_client_get_bridge(f->client) != NULL) == bridged);
        outpost_client_subscribe(f->client, "app/", on_event, f, NULL);
        assert_no_calls(f);
}

static void fixture_setup(Fixture *f, gconstpointer data) {
        setup(f, FALSE);
}

static void fixture_setup_bridged(Fixture *f, gconstpointer data) {
        setup(f, TRUE);
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        gt_signal_logger_assert_no_emissions(f->logger);
        g_clear_pointer(&f->logger, gt_signal_logger_free);
        g_clear_object(&f->client);
        /* Let the client's cancelled calls come back, and answer what the
         * proxies asked on their way out. */
        settle(f, 50);
        g_assert_cmpuint(f->calls.length, ==, 0);
        /* Give the name back while the queue's server thread still runs,
         * so that nothing of it is left for its main context afterwards. */
        if (f->name_id) {
                service_vanish(f);
                wait_owned(f, FALSE);
                settle(f, 20);
        }
        g_clear_object(&f->service);
        gt_dbus_queue_disconnect(f->queue, TRUE);
        g_clear_pointer(&f->queue, gt_dbus_queue_free);
        g_array_unref(f->seqs);
        g_free(f->history_id);
}

/* Results of calls */

static void on_released(GObject *source, GAsyncResult *result, gpointer data) {
        CallResult *r = data;

        outpost_client_release_presence_finish(OUTPOST_CLIENT(source), result, &r->error);
        r->done = TRUE;
}

/* outpost_client_call() fails at once, in its callback, without a call. */
static void assert_client_call_disconnected(Fixture *f) {
        CallResult r = { 0 };

        outpost_client_call(f->client, G_DBUS_PROXY(outpost_client_get_users(f->client)), "GetUser",
                            g_variant_new("(s)", USER_ID), NULL, on_client_call, &r);
        g_assert_false(r.done);
        wait_for(f, r.done);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        g_assert_nonnull(strstr(r.error->message, NAME));
        call_result_clear(&r);
        assert_no_calls(f);
}

/* GetUser through the generated proxy; the service answers with the D-Bus
 * error NAME, or with a user when NAME is NULL. */
static void get_user_answered(Fixture *f, const char *name, const char *message, CallResult *r) {
        GDBusMethodInvocation *inv;

        outpost_users_call_get_user(outpost_client_get_users(f->client), USER_ID, NULL, on_get_user, r);
        inv = expect_call(f, PATH_USERS, IFACE_USERS, "GetUser");
        g_assert_false(r->done);
        if (name)
                g_dbus_method_invocation_return_dbus_error(inv, name, message);
        else
                g_dbus_method_invocation_return_value(inv, g_variant_new_parsed("({'id': <%s>},)", USER_ID));
        wait_for(f, r->done);
}

/* The service leaves its name: the client says DISCONNECTED. */
static void service_away(Fixture *f) {
        service_vanish(f);
        wait_for(f, client_state(f) == OUTPOST_CLIENT_STATE_DISCONNECTED);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_DISCONNECTED);
}

/* The service is back: the client, CONNECTING, takes its snapshot and
 * asks for the events after AFTER_SEQ in HISTORY_ID; returns that call. */
static GDBusMethodInvocation *service_back(Fixture *f, const char *history_id, guint64 after_seq) {
        GDBusMethodInvocation *inv;

        service_appear(f);
        inv = expect_fetch(f, history_id, after_seq);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_CONNECTING);
        return inv;
}

/* Nothing was missed after NEXT_AFTER: the client says CONNECTED. */
static void caught_up(Fixture *f, GDBusMethodInvocation *fetch, guint64 next_after) {
        return_events(fetch, 1, 0, next_after, FALSE);
        wait_for(f, client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_CONNECTED);
}

/* Tests */

/* Every error of the contract reaches the program in the OUTPOST_ERROR
 * domain with its D-Bus name and message, through the generated proxies
 * and through outpost_client_call(); other errors keep their own domain. */
static void test_errors(Fixture *f, gconstpointer data) {
        static const struct {
                const char *name;
                int code;
        } errors[] = {
                { "SaveConflict", OUTPOST_ERROR_SAVE_CONFLICT },
                { "NotFound", OUTPOST_ERROR_NOT_FOUND },
                { "AlreadyExists", OUTPOST_ERROR_ALREADY_EXISTS },
                { "InvalidArgument", OUTPOST_ERROR_INVALID_ARGUMENT },
                { "LimitExceeded", OUTPOST_ERROR_LIMIT_EXCEEDED },
                { "Disconnected", OUTPOST_ERROR_DISCONNECTED },
                { "HistoryTruncated", OUTPOST_ERROR_HISTORY_TRUNCATED },
                { "HistoryReset", OUTPOST_ERROR_HISTORY_RESET },
        };
        OutpostUsers *users = outpost_client_get_users(f->client);
        CallResult r = { 0 };
        GDBusMethodInvocation *inv;
        const char *id, *tag;

        for (gsize i = 0; i < G_N_ELEMENTS(errors); i++) {
                g_autofree char *name = g_strconcat(ERROR_PREFIX, errors[i].name, NULL);
                g_autofree char *message = g_strdup_printf("the current tag is 'tag-%zu'", i);
                g_autofree char *remote = NULL;

                outpost_users_call_save_user(users, USER_ID, "tag-old", g_variant_new_parsed("@a{sv} {}"), NULL,
                                             on_save_user, &r);
                inv = expect_call(f, PATH_USERS, IFACE_USERS, "SaveUser");
                g_variant_get(g_dbus_method_invocation_get_parameters(inv), "(&s&s@a{sv})", &id, &tag, NULL);
                g_assert_cmpstr(id, ==, USER_ID);
                g_assert_cmpstr(tag, ==, "tag-old");
                g_assert_false(r.done);
                g_dbus_method_invocation_return_dbus_error(inv, name, message);
                wait_for(f, r.done);
                g_assert_error(r.error, OUTPOST_ERROR, errors[i].code);
                remote = g_dbus_error_get_remote_error(r.error);
                g_assert_cmpstr(remote, ==, name);
                g_assert_nonnull(strstr(r.error->message, message));
                call_result_clear(&r);

                outpost_client_call(f->client, G_DBUS_PROXY(users), "CreateUser",
                                    g_variant_new_parsed("({'name': <'ann'>},)"), NULL, on_client_call, &r);
                inv = expect_call(f, PATH_USERS, IFACE_USERS, "CreateUser");
                g_dbus_method_invocation_return_dbus_error(inv, name, message);
                wait_for(f, r.done);
                g_assert_error(r.error, OUTPOST_ERROR, errors[i].code);
                call_result_clear(&r);
        }

        /* Authorization failures stay what polkit-using services send. */
        get_user_answered(f, "org.freedesktop.DBus.Error.AccessDenied", "not allowed", &r);
        g_assert_error(r.error, G_DBUS_ERROR, G_DBUS_ERROR_ACCESS_DENIED);
        call_result_clear(&r);

        /* Only the bus's word that the service is gone becomes Disconnected,
         * not the same error name from the service itself. */
        get_user_answered(f, "org.freedesktop.DBus.Error.ServiceUnknown", "not mine", &r);
        g_assert_error(r.error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN);
        call_result_clear(&r);

        /* A success, to be sure. */
        get_user_answered(f, NULL, NULL, &r);
        g_assert_no_error(r.error);
        g_assert_true(g_variant_lookup(r.reply, "id", "&s", &id));
        g_assert_cmpstr(id, ==, USER_ID);
        call_result_clear(&r);
}

/* The service's name vanishes: the state says so, calls fail at once with
 * OUTPOST_ERROR_DISCONNECTED (the client's own without a call; a proxy's
 * with the bus's ServiceUnknown mapped), and when the name comes back the
 * client catches up before it says CONNECTED. */
static void test_name_vanishes(Fixture *f, gconstpointer data) {
        CallResult r = { 0 };
        GDBusMethodInvocation *inv;

        service_away(f);
        gt_signal_logger_assert_no_emissions(f->logger);

        assert_client_call_disconnected(f);

        outpost_users_call_get_user(outpost_client_get_users(f->client), USER_ID, NULL, on_get_user, &r);
        wait_for(f, r.done);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        g_assert_nonnull(strstr(r.error->message, NAME " is not on the bus"));
        g_assert_nonnull(strstr(r.error->message, "ServiceUnknown"));
        call_result_clear(&r);

        outpost_client_hold_presence(f->client, USER_ID, 0, NULL, on_held, &r);
        g_assert_false(r.done);
        wait_for(f, r.done);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        call_result_clear(&r);
        assert_no_calls(f);

        /* Back: snapshot, then the catch-up, then CONNECTED. */
        inv = service_back(f, HISTORY, 10);
        gt_signal_logger_assert_no_emissions(f->logger);
        caught_up(f, inv, 10);

        /* The same proxy works again. */
        get_user_answered(f, NULL, NULL, &r);
        g_assert_no_error(r.error);
        call_result_clear(&r);
        g_assert_cmpuint(f->seqs->len, ==, 0);
}

/* After the service was away the client fetches, page by page, from the
 * last seq it delivered; live events that come meanwhile wait, and each
 * event reaches the subscription once and in order. */
static void test_resume(Fixture *f, gconstpointer data) {
        GDBusMethodInvocation *inv;

        emit_event(f, 11);
        emit_event(f, 12);
        wait_for(f, f->seqs->len == 2);

        service_away(f);
        f->last_seq = 14;       /* published while the client was away */

        inv = service_back(f, HISTORY, 12);
        /* Live while the client is catching up: these wait. */
        emit_event(f, 15);
        emit_event(f, 16);
        settle(f, 50);
        g_assert_cmpuint(f->seqs->len, ==, 2);

        return_events(inv, 13, 14, 14, TRUE);
        inv = expect_fetch(f, HISTORY, 14);
        g_assert_cmpint(client_state(f), ==, OUTPOST_CLIENT_STATE_CONNECTING);
        return_events(inv, 15, 16, 16, FALSE);
        wait_for(f, client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_CONNECTED);
        assert_seqs(f, 11, 16);
        g_assert_cmpuint(outpost_client_get_last_seq(f->client), ==, 16);

        emit_event(f, 17);
        wait_for(f, f->seqs->len == 7);
        assert_seqs(f, 11, 17);
        assert_no_calls(f);
}

/* The history lost what the client missed (data: the error FetchSince
 * returns): resync-needed, then the client goes on from the service's
 * LastSeq, and later resumes in the history it found. */
static void test_history_lost(Fixture *f, gconstpointer data) {
        const char *error_name = data;
        gboolean reset = g_str_equal(error_name, ERROR_PREFIX "HistoryReset");
        GDBusMethodInvocation *inv;

        emit_event(f, 11);
        wait_for(f, f->seqs->len == 1);

        service_away(f);
        if (reset) {
                g_free(f->history_id);
                f->history_id = g_strdup(NEW_HISTORY);
                f->first_seq = 1;
                f->last_seq = 5;
        } else {
                f->first_seq = 40;
                f->last_seq = 50;
        }

        inv = service_back(f, HISTORY, 11);
        g_dbus_method_invocation_return_dbus_error(inv, error_name, "FirstSeq is 40");
        /* The client reads the Events manager's HistoryId and LastSeq (the
         * script answers that), then says what happened. */
        wait_for(f, client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED);
        assert_resync_needed(f);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_CONNECTED);
        g_assert_cmpuint(outpost_client_get_last_seq(f->client), ==, f->last_seq);
        assert_seqs(f, 11, 11);

        emit_event(f, f->last_seq + 1);
        wait_for(f, f->seqs->len == 2);
        g_assert_cmpuint(g_array_index(f->seqs, guint64, 1), ==, f->last_seq);

        /* Away again: it resumes in the history it found, after what it
         * delivered. */
        service_away(f);
        inv = service_back(f, reset ? NEW_HISTORY : HISTORY, f->last_seq);
        caught_up(f, inv, f->last_seq);
        assert_no_calls(f);
}

/* Behind a bridge: its Gap is resync-needed; while its State is not
 * "connected" the client is not either and its calls fail at once; when
 * the link is back the client resumes, and a Gap the bridge sent before
 * it said "connected" is reported after the catch-up. */
static void test_bridge(Fixture *f, gconstpointer data) {
        CallResult r = { 0 };
        GDBusMethodInvocation *inv;

        emit_event(f, 11);
        wait_for(f, f->seqs->len == 1);

        /* The bridge could not replay 12..19. */
        emit_gap(f, 11, 20);
        wait_for(f, gt_signal_logger_get_n_emissions(f->logger) == 1);
        assert_resync_needed(f);
        g_assert_cmpuint(outpost_client_get_last_seq(f->client), ==, 19);
        emit_event(f, 20);
        wait_for(f, f->seqs->len == 2);
        g_assert_cmpuint(g_array_index(f->seqs, guint64, 1), ==, 20);

        /* The link drops: the bridge keeps the name and says "connecting". */
        set_bridge_state(f, "connecting");
        wait_for(f, client_state(f) == OUTPOST_CLIENT_STATE_CONNECTING);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_CONNECTING);
        assert_client_call_disconnected(f);
        /* A proxy's call reaches the bridge, which answers Disconnected. */
        get_user_answered(f, ERROR_PREFIX "Disconnected", "tls:host=site.example,port=7000 is down", &r);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        call_result_clear(&r);

        /* Back: the bridge could not replay all it missed either. */
        emit_gap(f, 20, 30);
        set_bridge_state(f, "connected");
        inv = expect_fetch(f, HISTORY, 20);
        settle(f, 50);
        gt_signal_logger_assert_no_emissions(f->logger);
        return_events(inv, 30, 31, 31, FALSE);
        wait_for(f, client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED);
        assert_resync_needed(f);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_CONNECTED);
        g_assert_cmpuint(f->seqs->len, ==, 4);
        g_assert_cmpuint(g_array_index(f->seqs, guint64, 2), ==, 30);
        g_assert_cmpuint(g_array_index(f->seqs, guint64, 3), ==, 31);

        /* The bridge gave up. */
        set_bridge_state(f, "disconnected");
        wait_for(f, client_state(f) == OUTPOST_CLIENT_STATE_DISCONNECTED);
        assert_state_notified(f, OUTPOST_CLIENT_STATE_DISCONNECTED);
        assert_client_call_disconnected(f);
}

/* A presence hold is asserted, renewed, asserted again after the service
 * was away, and released. */
static void test_presence(Fixture *f, gconstpointer data) {
        CallResult r = { 0 };
        GDBusMethodInvocation *inv;
        const char *user;
        guint32 ttl;

        outpost_client_hold_presence(f->client, USER_ID, 0, NULL, on_held, &r);
        inv = expect_call(f, PATH_PRESENCE, IFACE_PRESENCE, "GoOnline");
        g_variant_get(g_dbus_method_invocation_get_parameters(inv), "(&su)", &user, &ttl);
        g_assert_cmpstr(user, ==, USER_ID);
        g_assert_cmpuint(ttl, ==, 0);
        g_dbus_method_invocation_return_value(inv, g_variant_new("(t)", ++f->generation));
        wait_for(f, r.done);
        g_assert_no_error(r.error);
        call_result_clear(&r);

        /* A lease is renewed before it lapses. */
        outpost_client_hold_presence(f->client, OTHER_USER_ID, 2, NULL, on_held, &r);
        inv = expect_call(f, PATH_PRESENCE, IFACE_PRESENCE, "GoOnline");
        g_dbus_method_invocation_return_value(inv, g_variant_new("(t)", ++f->generation));
        wait_for(f, r.done);
        g_assert_no_error(r.error);
        call_result_clear(&r);
        inv = expect_call(f, PATH_PRESENCE, IFACE_PRESENCE, "GoOnline");
        g_variant_get(g_dbus_method_invocation_get_parameters(inv), "(&su)", &user, &ttl);
        g_assert_cmpstr(user, ==, OTHER_USER_ID);
        g_assert_cmpuint(ttl, ==, 2);
        g_dbus_method_invocation_return_value(inv, g_variant_new("(t)", f->generation));

        /* Released: no longer renewed (assert_no_calls() below). */
        outpost_client_release_presence(f->client, OTHER_USER_ID, NULL, on_released, &r);
        inv = expect_call(f, PATH_PRESENCE, IFACE_PRESENCE, "GoOffline");
        g_dbus_method_invocation_return_value(inv, g_variant_new("(t)", ++f->generation));
        wait_for(f, r.done);
        g_assert_no_error(r.error);
        call_result_clear(&r);

        /* Presence does not survive the service: the hold comes back once
         * the client has caught up. */
        service_away(f);
        inv = service_back(f, HISTORY, 10);
        caught_up(f, inv, 10);
        inv = expect_call(f, PATH_PRESENCE, IFACE_PRESENCE, "GoOnline");
        g_variant_get(g_dbus_method_invocation_get_parameters(inv), "(&su)", &user, &ttl);
        g_assert_cmpstr(user, ==, USER_ID);
        g_assert_cmpuint(ttl, ==, 0);
        g_dbus_method_invocation_return_value(inv, g_variant_new("(t)", ++f->generation));
        assert_no_calls(f);

        outpost_client_release_presence(f->client, USER_ID, NULL, on_released, &r);
        inv = expect_call(f, PATH_PRESENCE, IFACE_PRESENCE, "GoOffline");
        g_variant_get(g_dbus_method_invocation_get_parameters(inv), "(&s)", &user);
        g_assert_cmpstr(user, ==, USER_ID);
        g_dbus_method_invocation_return_dbus_error(inv, ERROR_PREFIX "NotFound", "no such hold");
        wait_for(f, r.done);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_NOT_FOUND);
        call_result_clear(&r);

        /* Released: not asserted after the next reconnection. */
        service_away(f);
        inv = service_back(f, HISTORY, 10);
        caught_up(f, inv, 10);
        assert_no_calls(f);
}

/* outpost_client_new_for_connection(): a second client on the same
 * connection, which it leaves open. */
static void on_new_client(GObject *source, GAsyncResult *result, gpointer data) {
        OutpostClient **client = data;
        g_autoptr(GError) error = NULL;

        *client = outpost_client_new_finish(result, &error);
        g_assert_no_error(error);
}

static void test_shared_connection(Fixture *f, gconstpointer data) {
        GDBusConnection *connection = gt_dbus_queue_get_client_connection(f->queue);
        OutpostClient *second = NULL;
        CallResult r = { 0 };
        GDBusMethodInvocation *inv;

        outpost_client_new_for_connection(connection, NULL, on_new_client, &second);
        wait_for(f, second != NULL);
        g_assert_cmpint(outpost_client_get_state(second), ==, OUTPOST_CLIENT_STATE_CONNECTED);
        g_assert_true(outpost_client_get_connection(second) == connection);
        g_clear_object(&second);
        settle(f, 50);
        g_assert_false(g_dbus_connection_is_closed(connection));

        /* The first client still maps errors on the connection. */
        service_away(f);
        outpost_users_call_get_user(outpost_client_get_users(f->client), USER_ID, NULL, on_get_user, &r);
        wait_for(f, r.done);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        call_result_clear(&r);
        inv = service_back(f, HISTORY, 10);
        caught_up(f, inv, 10);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);

#define ADD(name, data, fn) g_test_add(name, Fixture, data, fixture_setup, fn, fixture_teardown)
#define ADD_BRIDGED(name, fn) g_test_add(name, Fixture, NULL, fixture_setup_bridged, fn, fixture_teardown)
        ADD("/liboutpost-queue/errors", NULL, test_errors);
        ADD("/liboutpost-queue/name-vanishes", NULL, test_name_vanishes);
        ADD("/liboutpost-queue/resume", NULL, test_resume);
        ADD("/liboutpost-queue/history-truncated", ERROR_PREFIX "HistoryTruncated", test_history_lost);
        ADD("/liboutpost-queue/history-reset", ERROR_PREFIX "HistoryReset", test_history_lost);
        ADD_BRIDGED("/liboutpost-queue/bridge", test_bridge);
        ADD("/liboutpost-queue/presence", NULL, test_presence);
        ADD("/liboutpost-queue/shared-connection", NULL, test_shared_connection);

        return g_test_run();
}
