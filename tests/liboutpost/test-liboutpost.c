/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* liboutpost against the real outpostd: the client's state, its proxies and
 * error mapping, event subscriptions across daemon restarts, presence holds
 * and resync-needed when the history was truncated meanwhile.
 *
 * Then behind real bridges: the client on the machine bus of a
 * central/site/machine deployment (tests/common/bridge-harness.c), through links
 * that go down and come back. */
#include "config.h"

#include <signal.h>
#include <string.h>

#include "bridge-harness.h"

#include <outpost/outpost.h>

#include "call-result.h"

#define UNKNOWN_ID "00000000-0000-4000-8000-000000000000"

typedef struct Fixture {
        TestBus *tb;            /* the bus the client is on */
        GDBusConnection *origin; /* the test's connection to outpostd's bus */
        Deployment *d;          /* behind bridges: tb is d->machine */
        OutpostClient *client;
        GArray *states;         /* OutpostClientState, each change */
        GArray *seqs;           /* guint64, each event delivered */
        GPtrArray *topics;      /* char*, each event delivered */
        guint resyncs;
} Fixture;

static void on_client(GObject *source, GAsyncResult *result, gpointer data) {
        Fixture *f = data;
        g_autoptr(GError) error = NULL;

        f->client = outpost_client_new_finish(result, &error);
        g_assert_no_error(error);
        g_assert_nonnull(f->client);
}

static void on_state(GObject *object, GParamSpec *pspec, gpointer data) {
        Fixture *f = data;
        OutpostClientState s = outpost_client_get_state(OUTPOST_CLIENT(object));

        g_array_append_val(f->states, s);
}

static void on_resync(OutpostClient *client, gpointer data) {
        Fixture *f = data;

        f->resyncs++;
}

static void on_event(OutpostClient *client, guint64 seq, const char *topic, gint64 time, GVariant *data,
                     gpointer user_data) {
        Fixture *f = user_data;

        g_assert_true(g_variant_is_of_type(data, G_VARIANT_TYPE("a{sv}")));
        if (f->seqs->len > 0)
                g_assert_cmpuint(seq, >, g_array_index(f->seqs, guint64, f->seqs->len - 1));
        g_array_append_val(f->seqs, seq);
        g_ptr_array_add(f->topics, g_strdup(topic));
}

static void connect_client(Fixture *f) {
        outpost_client_new_for_address(f->tb->address, NULL, on_client, f);
        test_wait_until(f->client != NULL, 10000);
        g_signal_connect(f->client, "notify::state", G_CALLBACK(on_state), f);
        g_signal_connect(f->client, "resync-needed", G_CALLBACK(on_resync), f);
}

static void fixture_init(Fixture *f) {
        f->states = g_array_new(FALSE, FALSE, sizeof(OutpostClientState));
        f->seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
        f->topics = g_ptr_array_new_with_free_func(g_free);
}

static void fixture_setup(Fixture *f, gconstpointer data) {
        fixture_init(f);
        f->tb = test_bus_new();
        f->origin = f->tb->conn;
        test_bus_start_daemon(f->tb, data);
        connect_client(f);
}

static void fixture_setup_no_daemon(Fixture *f, gconstpointer data) {
        fixture_init(f);
        f->tb = test_bus_new();
        f->origin = f->tb->conn;
        connect_client(f);
}

/* The client on the machine bus; outpostd is on the central bus. */
static void fixture_setup_bridged(Fixture *f, gconstpointer data) {
        fixture_init(f);
        test_make_certs();
        f->d = deployment_new(data);
        f->tb = f->d->machine;
        f->origin = f->d->central->conn;
        connect_client(f);
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        g_clear_object(&f->client);
        /* Let the cancelled calls of the client come back. */
        for (int i = 0; i < 50; i++)
                while (g_main_context_iteration(NULL, FALSE))
                        ;
        if (f->d)
                deployment_free(f->d);
        else
                test_bus_free(f->tb);
        g_array_unref(f->states);
        g_array_unref(f->seqs);
        g_ptr_array_unref(f->topics);
}

static guint64 publish(Fixture *f, const char *topic) {
        g_autoptr(GVariant) r = test_call_ok(f->origin, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                             g_variant_new_parsed("(%s, {'k': <1>})", topic), "(t)");
        guint64 seq;

        g_variant_get(r, "(t)", &seq);
        return seq;
}

static guint64 events_property(Fixture *f, const char *name) {
        g_autoptr(GVariant) r = test_call_ok(f->origin, OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Get",
                                             g_variant_new("(ss)", IFACE_EVENTS, name), "(v)");
        g_autoptr(GVariant) v = NULL;

        g_variant_get(r, "(v)", &v);
        return g_variant_get_uint64(v);
}

static gboolean is_online(Fixture *f, const char *user_id) {
        return test_is_online(f->origin, user_id);
}

static gboolean saw_state(Fixture *f, OutpostClientState s) {
        for (guint i = 0; i < f->states->len; i++)
                if (g_array_index(f->states, OutpostClientState, i) == s)
                        return TRUE;
        return FALSE;
}

#define client_state(f) outpost_client_get_state((f)->client)

/* Connection */

static void test_connected(Fixture *f, gconstpointer data) {
        g_autoptr(GVariant) r = NULL, v = NULL;
        const char *server_id;

        g_assert_cmpint(client_state(f), ==, OUTPOST_CLIENT_STATE_CONNECTED);
        r = test_call_ok(f->tb->conn, OUTPOST_ROOT, "org.freedesktop.DBus.Properties", "Get",
                         g_variant_new("(ss)", IFACE_REGISTRY, "ServerId"), "(v)");
        g_variant_get(r, "(v)", &v);
        server_id = g_variant_get_string(v, NULL);
        g_assert_cmpstr(outpost_client_get_server_id(f->client), ==, server_id);

        g_assert_nonnull(outpost_client_get_registry(f->client));
        g_assert_nonnull(outpost_client_get_users(f->client));
        g_assert_nonnull(outpost_client_get_presence(f->client));
        g_assert_nonnull(outpost_client_get_messages(f->client));
        g_assert_nonnull(outpost_client_get_events(f->client));
        g_assert_null(outpost_client_get_bridge(f->client));
        g_assert_cmpstr(outpost_registry_get_version(outpost_client_get_registry(f->client)), ==, PACKAGE_VERSION);
        g_assert_cmpint(g_dbus_proxy_get_default_timeout(G_DBUS_PROXY(outpost_client_get_users(f->client))), ==,
                        OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC);
}

/* Errors */

static void test_errors(Fixture *f, gconstpointer data) {
        OutpostUsers *users = outpost_client_get_users(f->client);
        CallResult r = { 0 };
        g_autofree char *id = NULL, *tag = NULL, *remote = NULL;

        /* Through the generated proxy */
        outpost_users_call_get_user(users, UNKNOWN_ID, NULL, on_get_user, &r);
        test_wait_until(r.done, 10000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_NOT_FOUND);
        remote = g_dbus_error_get_remote_error(r.error);
        g_assert_cmpstr(remote, ==, ERROR_PREFIX "NotFound");
        call_result_clear(&r);

        id = test_create_user(f->tb->conn, "ann", &tag);
        outpost_users_call_save_user(users, id, UNKNOWN_ID, g_variant_new_parsed("@a{sv} {'email': <'a@b'>}"), NULL,
                                     on_save_user, &r);
        test_wait_until(r.done, 10000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_SAVE_CONFLICT);
        g_assert_nonnull(strstr(r.error->message, tag));
        call_result_clear(&r);

        /* Through the client's helper */
        outpost_client_call(f->client, G_DBUS_PROXY(users), "CreateUser",
                            g_variant_new_parsed("({'name': <'ann'>},)"), NULL, on_client_call, &r);
        test_wait_until(r.done, 10000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_ALREADY_EXISTS);
        call_result_clear(&r);

        outpost_client_call(f->client, G_DBUS_PROXY(users), "CreateUser",
                            g_variant_new_parsed("({'name': <'Bad Name'>},)"), NULL, on_client_call, &r);
        test_wait_until(r.done, 10000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_INVALID_ARGUMENT);
        call_result_clear(&r);

        outpost_client_call(f->client, G_DBUS_PROXY(outpost_client_get_events(f->client)), "FetchSince",
                            g_variant_new_parsed("('not-the-history', @t 0, @as [], @u 10)"), NULL, on_client_call, &r);
        test_wait_until(r.done, 10000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_HISTORY_RESET);
        call_result_clear(&r);

        outpost_client_call(f->client, G_DBUS_PROXY(users), "GetUser", g_variant_new("(s)", id), NULL, on_client_call, &r);
        test_wait_until(r.done, 10000);
        g_assert_no_error(r.error);
        g_assert_true(g_variant_is_of_type(r.reply, G_VARIANT_TYPE("(a{sv})")));
        call_result_clear(&r);
}

/* No daemon, then a daemon */

/* While the service cannot be reached, calls fail at once, but only in
 * their callbacks, with OUTPOST_ERROR_DISCONNECTED: through the client
 * without a call, and through a generated proxy with whatever the bus or a
 * bridge answered mapped (not the bus's ServiceUnknown); the proxy's error
 * message mentions MENTION. */
static void assert_calls_disconnected(Fixture *f, const char *mention) {
        CallResult r = { 0 };
        gint64 t0 = g_get_monotonic_time();

        outpost_client_call(f->client, G_DBUS_PROXY(outpost_client_get_users(f->client)), "GetUser",
                            g_variant_new("(s)", UNKNOWN_ID), NULL, on_client_call, &r);
        g_assert_false(r.done);
        test_wait_until(r.done, 1000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        g_assert_nonnull(strstr(r.error->message, OUTPOST_NAME));
        call_result_clear(&r);

        outpost_users_call_get_user(outpost_client_get_users(f->client), UNKNOWN_ID, NULL, on_get_user, &r);
        g_assert_false(r.done);
        test_wait_until(r.done, 1000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        g_assert_nonnull(strstr(r.error->message, mention));
        /* The call never reached the service: a retry is safe. */
        g_assert_nonnull(strstr(r.error->message, "the call was not carried out"));
        call_result_clear(&r);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
}

static void test_disconnected(Fixture *f, gconstpointer data) {
        CallResult r = { 0 };

        g_assert_cmpint(client_state(f), ==, OUTPOST_CLIENT_STATE_DISCONNECTED);
        g_assert_null(outpost_client_get_server_id(f->client));

        assert_calls_disconnected(f, OUTPOST_NAME " is not on the bus (org.freedesktop.DBus.Error.ServiceUnknown");

        test_bus_start_daemon(f->tb, NULL);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        g_assert_nonnull(outpost_client_get_server_id(f->client));

        /* The mapping leaves the service's own errors alone. */
        outpost_users_call_get_user(outpost_client_get_users(f->client), UNKNOWN_ID, NULL, on_get_user, &r);
        test_wait_until(r.done, 10000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_NOT_FOUND);
        call_result_clear(&r);

        /* Gone again: the proxy, which knew the owner, fails the same way. */
        test_bus_stop_daemon(f->tb, SIGTERM);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_DISCONNECTED, 10000);
        assert_calls_disconnected(f, OUTPOST_NAME " is not on the bus (org.freedesktop.DBus.Error.ServiceUnknown");
}

/* The daemon dies while a call through a proxy waits for its reply: the
 * bus answers NoReply, and the program gets OUTPOST_ERROR_DISCONNECTED. */
static void test_left_before_reply(Fixture *f, gconstpointer data) {
        CallResult r = { 0 };

        kill(f->tb->daemon_pid, SIGSTOP);
        outpost_users_call_get_user(outpost_client_get_users(f->client), UNKNOWN_ID, NULL, on_get_user, &r);
        g_dbus_connection_flush_sync(outpost_client_get_connection(f->client), NULL, NULL);
        /* Let the stopped daemon's bus socket take the call. */
        g_usleep(100 * 1000);
        g_assert_false(r.done);
        test_bus_stop_daemon(f->tb, SIGKILL);
        test_wait_until(r.done, 5000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_DISCONNECTED);
        g_assert_nonnull(strstr(r.error->message, OUTPOST_NAME));
        g_assert_nonnull(strstr(r.error->message, "NoReply"));
        /* It reached the service: the program must not take it as undone. */
        g_assert_nonnull(strstr(r.error->message, "the call may have been carried out"));
        call_result_clear(&r);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_DISCONNECTED, 10000);
}

/* Events across a restart */

static void on_released(GObject *source, GAsyncResult *result, gpointer data) {
        CallResult *r = data;

        outpost_client_release_presence_finish(OUTPOST_CLIENT(source), result, &r->error);
        r->done = TRUE;
}

/* Every event in the history after AFTER, as the test's own connection
 * sees it. */
static GArray *history_after(Fixture *f, guint64 after) {
        GArray *seqs = g_array_new(FALSE, FALSE, sizeof(guint64));
        gboolean more = TRUE;

        while (more) {
                g_autoptr(GVariant) r = NULL;
                g_autoptr(GVariantIter) iter = NULL;
                guint64 seq;

                r = test_call_ok(f->origin, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                                 g_variant_new_parsed("('', %t, @as [], @u 1000)", after), "(a(tsxa{sv})tb)");
                g_variant_get(r, "(a(tsxa{sv})tb)", &iter, &after, &more);
                while (g_variant_iter_next(iter, "(tsxa{sv})", &seq, NULL, NULL, NULL))
                        g_array_append_val(seqs, seq);
        }
        return seqs;
}

static void assert_seqs_equal(GArray *got, GArray *want) {
        g_assert_cmpmem(got->data, got->len * sizeof(guint64), want->data, want->len * sizeof(guint64));
}

/* Holds USER_ID online with no lease; outpostd has it online. */
static void hold(Fixture *f, const char *user_id) {
        CallResult r = { 0 };

        outpost_client_hold_presence(f->client, user_id, 0, NULL, on_held, &r);
        test_wait_until(r.done, 10000);
        g_assert_no_error(r.error);
        call_result_clear(&r);
        g_assert_true(is_online(f, user_id));
}

static void test_restart(Fixture *f, gconstpointer data) {
        CallResult r = { 0 };
        g_autofree char *id = test_create_user(f->tb->conn, "ann", NULL);
        g_autoptr(GArray) want = NULL;
        guint64 start = outpost_client_get_last_seq(f->client), last = 0;

        outpost_client_subscribe(f->client, NULL, on_event, f, NULL);
        g_assert_cmpuint(start, ==, events_property(f, "LastSeq") - 1);         /* the user's creation */

        hold(f, id);

        for (int i = 0; i < 3; i++)
                last = publish(f, "app/before");
        test_wait_until(f->seqs->len > 0 && g_array_index(f->seqs, guint64, f->seqs->len - 1) == last, 10000);

        test_bus_stop_daemon(f->tb, SIGTERM);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_DISCONNECTED, 10000);

        /* These are published before the client sees the daemon back: it
         * gets them both from FetchSince and as signals, and delivers each
         * once. */
        test_bus_start_daemon(f->tb, NULL);
        for (int i = 0; i < 5; i++)
                last = publish(f, "app/after");
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        test_wait_until(g_array_index(f->seqs, guint64, f->seqs->len - 1) == last, 10000);
        g_assert_true(saw_state(f, OUTPOST_CLIENT_STATE_DISCONNECTED));
        g_assert_cmpint(g_array_index(f->states, OutpostClientState, f->states->len - 1), ==,
                        OUTPOST_CLIENT_STATE_CONNECTED);

        /* The hold came back (the daemon forgot it). */
        test_wait_until(is_online(f, id), 10000);
        last = events_property(f, "LastSeq");
        test_wait_until(g_array_index(f->seqs, guint64, f->seqs->len - 1) == last, 10000);

        want = history_after(f, start);
        assert_seqs_equal(f->seqs, want);
        g_assert_cmpuint(f->resyncs, ==, 0);

        outpost_client_release_presence(f->client, id, NULL, on_released, &r);
        test_wait_until(r.done, 10000);
        g_assert_no_error(r.error);
        call_result_clear(&r);
        g_assert_false(is_online(f, id));
}

/* Messages: a client that may read them (root here) gets each one live,
 * through MessageReceived, and through FetchSince after an outage, in the
 * one order of seq that it shares with Event, each once. */

static void send_message(Fixture *f, const char *user_id) {
        g_variant_unref(test_call_ok(f->origin, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                                     g_variant_new_parsed("([%s], 'hello')", user_id), "(st)"));
}

static guint count_topic(Fixture *f, const char *topic) {
        guint n = 0;

        for (guint i = 0; i < f->topics->len; i++)
                n += g_str_equal(f->topics->pdata[i], topic);
        return n;
}

static void test_messages(Fixture *f, gconstpointer data) {
        g_autofree char *id = test_create_user(f->origin, "ann", NULL);
        g_autofree char *topic = g_strconcat("messages/", id, NULL);
        g_autoptr(GArray) want = NULL;
        guint64 start, last;

        test_wait_until(outpost_client_get_last_seq(f->client) == events_property(f, "LastSeq"), 10000);
        start = outpost_client_get_last_seq(f->client);
        outpost_client_subscribe(f->client, NULL, on_event, f, NULL);

        send_message(f, id);
        last = publish(f, "app/live");
        test_wait_until(f->seqs->len > 0 && g_array_index(f->seqs, guint64, f->seqs->len - 1) == last, 10000);
        g_assert_cmpuint(f->topics->len, ==, 2);
        g_assert_cmpstr(f->topics->pdata[0], ==, topic);

        test_bus_stop_daemon(f->tb, SIGTERM);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_DISCONNECTED, 10000);
        test_bus_start_daemon(f->tb, NULL);
        send_message(f, id);
        last = publish(f, "app/after");
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        test_wait_until(g_array_index(f->seqs, guint64, f->seqs->len - 1) == last, 10000);

        want = history_after(f, start);
        assert_seqs_equal(f->seqs, want);
        g_assert_cmpuint(count_topic(f, topic), ==, 2);
}

/* The generated proxies carry request ids as the contract has them: a
 * retried Publish or SendWithOptions is written once. */
static void test_request_ids(Fixture *f, gconstpointer data) {
        g_autofree char *id = test_create_user(f->origin, "ann", NULL);
        g_autofree char *first_message = NULL, *again_message = NULL;
        const char *to[] = { id, NULL };
        guint64 first_seq = 0, again_seq = 0, first_last = 0, again_last = 0;
        g_autoptr(GError) error = NULL;

        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        for (int i = 0; i < 2; i++) {
                GVariantBuilder b;

                g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
                g_variant_builder_add(&b, "{sv}", OUTPOST_PUBLISH_REQUEST_ID_KEY, g_variant_new_string("till-7"));
                g_assert_true(outpost_events_call_publish_sync(outpost_client_get_events(f->client), "app/till",
                                                               g_variant_builder_end(&b), i ? &again_seq : &first_seq,
                                                               NULL, &error));
                g_assert_no_error(error);

                g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
                g_variant_builder_add(&b, "{sv}", OUTPOST_SEND_OPTION_REQUEST_ID, g_variant_new_string("note-7"));
                g_assert_true(outpost_messages_call_send_with_options_sync(
                        outpost_client_get_messages(f->client), to, "hello", g_variant_builder_end(&b),
                        i ? &again_message : &first_message, i ? &again_last : &first_last, NULL, &error));
                g_assert_no_error(error);
        }
        g_assert_cmpuint(again_seq, ==, first_seq);
        g_assert_cmpstr(again_message, ==, first_message);
        g_assert_cmpuint(again_last, ==, first_last);
        g_assert_cmpuint(events_property(f, "LastSeq"), ==, first_last);
}

static void test_lease(Fixture *f, gconstpointer data) {
        CallResult r = { 0 };
        g_autofree char *id = test_create_user(f->tb->conn, "ann", NULL);
        gint64 until;

        outpost_client_hold_presence(f->client, id, 2, NULL, on_held, &r);
        test_wait_until(r.done, 10000);
        g_assert_no_error(r.error);
        call_result_clear(&r);

        /* A 2 s lease, renewed every second, for 3 s. */
        until = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
        while (g_get_monotonic_time() < until) {
                g_assert_true(is_online(f, id));
                g_main_context_iteration(NULL, FALSE);
                g_usleep(20000);
        }

        /* An unknown user is an error, and no hold. */
        outpost_client_hold_presence(f->client, UNKNOWN_ID, 2, NULL, on_held, &r);
        test_wait_until(r.done, 10000);
        g_assert_error(r.error, OUTPOST_ERROR, OUTPOST_ERROR_NOT_FOUND);
        call_result_clear(&r);
}

/* Who is online, as a GListModel */

/* The user ids of MODEL's items, in order, joined by spaces. */
static char *model_ids(GListModel *model) {
        g_autoptr(GString) s = g_string_new(NULL);

        for (guint i = 0; i < g_list_model_get_n_items(model); i++) {
                g_autoptr(OutpostOnlineUser) user = g_list_model_get_item(model, i);

                g_assert_cmpint(outpost_online_user_get_since(user), >, 1600000000LL * G_USEC_PER_SEC);
                g_string_append_printf(s, "%s%s", s->len ? " " : "", outpost_online_user_get_user_id(user));
        }
        return g_string_free(g_steal_pointer(&s), FALSE);
}

/* What a list view would hold: the ids, updated from items-changed only. */
static void on_items_changed(GListModel *model, guint position, guint removed, guint added, gpointer data) {
        GPtrArray *shadow = data;

        g_assert_cmpuint(position + removed, <=, shadow->len);
        g_ptr_array_remove_range(shadow, position, removed);
        for (guint i = 0; i < added; i++) {
                g_autoptr(OutpostOnlineUser) user = g_list_model_get_item(model, position + i);
                g_ptr_array_insert(shadow, position + i, g_strdup(outpost_online_user_get_user_id(user)));
        }
}

static char *shadow_ids(GPtrArray *shadow) {
        g_ptr_array_add(shadow, NULL);
        g_autofree char *s = g_strjoinv(" ", (char **) shadow->pdata);
        g_ptr_array_remove_index(shadow, shadow->len - 1);
        return g_steal_pointer(&s);
}

static void presence_call(GDBusConnection *c, const char *method, const char *id) {
        g_variant_unref(test_call_ok(c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, method,
                                     strcmp(method, "GoOnline") == 0 ? g_variant_new("(su)", id, 0)
                                                                      : g_variant_new("(s)", id), "(t)"));
}

/* Wait until MODEL holds exactly WANT (ids in order), and a view fed by
 * items-changed (SHADOW) too. */
#define wait_model(model, shadow, want)                                                             \
        G_STMT_START {                                                                              \
                g_autofree char *_want = (want);                                                    \
                test_wait_until(({ g_autofree char *_ids = model_ids(model);                        \
                                   strcmp(_ids, _want) == 0; }), 10000);                            \
                g_autofree char *_view = shadow_ids(shadow);                                        \
                g_assert_cmpstr(_view, ==, _want);                                                  \
        } G_STMT_END

static char *sorted_ids(const char *a, const char *b) {
        if (!a)
                return g_strdup("");
        if (!b)
                return g_strdup(a);
        return strcmp(a, b) < 0 ? g_strjoin(" ", a, b, NULL) : g_strjoin(" ", b, a, NULL);
}

static void test_online_users(Fixture *f, gconstpointer data) {
        g_autofree char *ann = test_create_user(f->origin, "ann", NULL), *bob = test_create_user(f->origin, "bob", NULL);
        g_autoptr(GDBusConnection) holder = test_bus_connect(f->tb);
        g_autoptr(GPtrArray) shadow = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(OutpostOnlineUser) found = NULL;
        OutpostOnlineUsers *users;
        GListModel *model;

        presence_call(holder, "GoOnline", bob);
        users = outpost_client_get_online_users(f->client);
        g_assert_true(users == outpost_client_get_online_users(f->client));
        model = G_LIST_MODEL(users);
        g_assert_true(g_list_model_get_item_type(model) == OUTPOST_TYPE_ONLINE_USER);
        g_signal_connect(model, "items-changed", G_CALLBACK(on_items_changed), shadow);
        test_wait_until(outpost_online_users_is_loaded(users), 10000);
        wait_model(model, shadow, g_strdup(bob));

        presence_call(holder, "GoOnline", ann);
        wait_model(model, shadow, sorted_ids(ann, bob));
        found = outpost_online_users_lookup(users, ann);
        g_assert_nonnull(found);
        g_assert_cmpstr(outpost_online_user_get_user_id(found), ==, ann);

        presence_call(holder, "GoOffline", bob);
        wait_model(model, shadow, g_strdup(ann));
        g_assert_null(outpost_online_users_lookup(users, bob));

        /* A restarted daemon has nobody online: the list follows it, and
         * fills again from the new instance. */
        test_bus_stop_daemon(f->tb, SIGTERM);
        wait_model(model, shadow, g_strdup(""));
        test_bus_start_daemon(f->tb, NULL);
        presence_call(holder, "GoOnline", bob);
        wait_model(model, shadow, g_strdup(bob));
        g_signal_handlers_disconnect_by_data(model, shadow);
}

/* Behind bridges: the list shows the bridge's cached view during an
 * outage, and after it only what changed comes and goes. */
static void test_bridged_online_users(Fixture *f, gconstpointer data) {
        g_autofree char *ann = test_create_user(f->origin, "ann", NULL), *bob = test_create_user(f->origin, "bob", NULL);
        g_autoptr(GDBusConnection) holder = test_bus_connect(f->d->central);
        g_autoptr(GPtrArray) shadow = g_ptr_array_new_with_free_func(g_free);
        GListModel *model = G_LIST_MODEL(outpost_client_get_online_users(f->client));

        g_signal_connect(model, "items-changed", G_CALLBACK(on_items_changed), shadow);
        presence_call(holder, "GoOnline", ann);
        wait_model(model, shadow, g_strdup(ann));

        bridge_process_stop(&f->d->central_listener, SIGKILL);
        test_wait_until(client_state(f) != OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        presence_call(holder, "GoOffline", ann);
        presence_call(holder, "GoOnline", bob);
        {
                /* The bridge's cache: who was online when the link dropped. */
                g_autofree char *ids = model_ids(model);
                g_assert_cmpstr(ids, ==, ann);
        }

        bridge_process_restart(&f->d->central_listener);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 20000);
        wait_model(model, shadow, g_strdup(bob));
        g_signal_handlers_disconnect_by_data(model, shadow);
}

/* Subscriptions: prefixes, unsubscribe, resume_from */

static void on_prefixed(OutpostClient *client, guint64 seq, const char *topic, gint64 time, GVariant *data,
                        gpointer user_data) {
        guint *n = user_data;

        g_assert_true(g_str_has_prefix(topic, "app/x"));
        (*n)++;
}

static void test_subscriptions(Fixture *f, gconstpointer data) {
        guint n = 0, id;
        guint64 last = 0, first;
        g_autoptr(GArray) want = NULL;

        id = outpost_client_subscribe(f->client, "app/x", on_prefixed, &n, NULL);
        outpost_client_subscribe(f->client, "", on_event, f, NULL);
        first = publish(f, "app/x");
        publish(f, "app/y");
        last = publish(f, "app/xz");
        test_wait_until(f->seqs->len == 3, 10000);
        g_assert_cmpuint(n, ==, 2);

        outpost_client_unsubscribe(f->client, id);
        last = publish(f, "app/x");
        test_wait_until(f->seqs->len == 4, 10000);
        g_assert_cmpuint(n, ==, 2);

        /* Back in time: the client fetches what it had delivered already
         * and delivers it again, in order, then goes on live. */
        g_array_set_size(f->seqs, 0);
        outpost_client_resume_from(f->client, NULL, first - 1);
        last = publish(f, "app/z");
        test_wait_until(f->seqs->len > 0 && g_array_index(f->seqs, guint64, f->seqs->len - 1) == last, 10000);
        want = history_after(f, first - 1);
        assert_seqs_equal(f->seqs, want);
}

/* Retention discarded what the client missed */

static void test_truncated(Fixture *f, gconstpointer data) {
        guint64 missed_after, last = 0;

        outpost_client_subscribe(f->client, "app/", on_event, f, NULL);
        publish(f, "app/seen");
        test_wait_until(f->seqs->len == 1, 10000);
        missed_after = g_array_index(f->seqs, guint64, 0);

        test_bus_stop_daemon(f->tb, SIGTERM);
        test_bus_start_daemon(f->tb, NULL);
        for (int i = 0; i < 25; i++)
                last = publish(f, "app/missed");
        /* Retention trims a history over its count about a second later. */
        while (events_property(f, "FirstSeq") <= missed_after + 1)
                g_usleep(50000);

        test_wait_until(f->resyncs == 1, 10000);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        g_assert_cmpuint(outpost_client_get_last_seq(f->client), >=, last);

        /* It goes on from there. */
        last = publish(f, "app/later");
        test_wait_until(g_array_index(f->seqs, guint64, f->seqs->len - 1) == last, 10000);
        g_assert_cmpuint(f->resyncs, ==, 1);
}

/* Behind bridges */

static guint64 last_delivered(Fixture *f, guint64 start) {
        return f->seqs->len ? g_array_index(f->seqs, guint64, f->seqs->len - 1) : start;
}

static void publish_n(Fixture *f, const char *topic, int n) {
        for (int i = 0; i < n; i++)
                publish(f, topic);
}

/* Every event outpostd has after START reached the subscription once and
 * in order: none lost, none doubled. */
static void assert_every_event_once(Fixture *f, guint64 start) {
        g_autoptr(GArray) want = NULL;
        guint64 last = events_property(f, "LastSeq");

        test_wait_until(last_delivered(f, start) >= last, 20000);
        want = history_after(f, start);
        assert_seqs_equal(f->seqs, want);
}

/* The state left CONNECTED for NOT_CONNECTED, stayed away from it, and
 * came back. */
static void assert_outage_states(Fixture *f, OutpostClientState not_connected) {
        g_assert_cmpuint(f->states->len, >=, 2);
        g_assert_cmpint(g_array_index(f->states, OutpostClientState, 0), ==, not_connected);
        for (guint i = 0; i + 1 < f->states->len; i++)
                g_assert_cmpint(g_array_index(f->states, OutpostClientState, i), !=, OUTPOST_CLIENT_STATE_CONNECTED);
        g_assert_cmpint(g_array_index(f->states, OutpostClientState, f->states->len - 1), ==,
                        OUTPOST_CLIENT_STATE_CONNECTED);
}

/* Subscribed, holding a user, with events delivered: returns the seq the
 * subscription started after. */
static guint64 bridged_start(Fixture *f, const char *user_id) {
        guint64 start = outpost_client_get_last_seq(f->client);

        g_assert_cmpint(client_state(f), ==, OUTPOST_CLIENT_STATE_CONNECTED);
        g_assert_nonnull(outpost_client_get_bridge(f->client));
        outpost_client_subscribe(f->client, NULL, on_event, f, NULL);
        if (user_id)
                hold(f, user_id);
        publish_n(f, "app/before", 3);
        test_wait_until(last_delivered(f, start) == events_property(f, "LastSeq"), 10000);
        return start;
}

/* The site's link to central drops: the machine's bridge keeps the name
 * and says "connecting" (it is trying again), so the client says
 * CONNECTING, not CONNECTED, and its calls fail at once; central drops the
 * hold of the link that left. When the link is back the client is
 * CONNECTED, has had every event once, and the hold is back at central. */
static void test_bridged_link_outage(Fixture *f, gconstpointer data) {
        g_autofree char *id = test_create_user(f->origin, "ann", NULL);
        guint64 start = bridged_start(f, id);

        bridge_process_stop(&f->d->central_listener, SIGKILL);
        test_wait_until(client_state(f) != OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        g_assert_cmpint(client_state(f), ==, OUTPOST_CLIENT_STATE_CONNECTING);
        assert_calls_disconnected(f, "tls:host=127.0.0.1");

        publish_n(f, "app/during", 5);
        test_wait_until(!is_online(f, id), 10000);

        bridge_process_restart(&f->d->central_listener);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 20000);
        assert_outage_states(f, OUTPOST_CLIENT_STATE_CONNECTING);
        publish_n(f, "app/after", 2);

        test_wait_until(is_online(f, id), 10000);
        assert_every_event_once(f, start);
        g_assert_cmpuint(f->resyncs, ==, 0);
}

/* The machine's own bridge stops: org.outpost.Outpost1 vanishes from the
 * machine bus and the client is DISCONNECTED; a proxy's call gets the
 * bus's ServiceUnknown as OUTPOST_ERROR_DISCONNECTED. When the bridge is
 * back, so is everything. */
static void test_bridged_bridge_restart(Fixture *f, gconstpointer data) {
        g_autofree char *id = test_create_user(f->origin, "bob", NULL);
        guint64 start = bridged_start(f, id);

        bridge_process_stop(&f->d->machine_bridge, SIGTERM);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_DISCONNECTED, 10000);
        assert_calls_disconnected(f, OUTPOST_NAME " is not on the bus (org.freedesktop.DBus.Error.ServiceUnknown");
        publish_n(f, "app/during", 5);
        /* The machine's link to the site left: the hold went with it. */
        test_wait_until(!is_online(f, id), 10000);

        bridge_process_restart(&f->d->machine_bridge);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 20000);
        assert_outage_states(f, OUTPOST_CLIENT_STATE_DISCONNECTED);
        publish_n(f, "app/after", 2);

        test_wait_until(is_online(f, id), 10000);
        assert_every_event_once(f, start);
        g_assert_cmpuint(f->resyncs, ==, 0);
}

/* Gap signals on the machine bus, as the test's own connection sees them. */
static void on_gap(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                   const char *signal, GVariant *params, gpointer data) {
        guint *gaps = data;

        (*gaps)++;
}

/* Retention at central discards what the site missed during the outage:
 * the bridge says Gap, the client says resync-needed and goes on with the
 * newest events, in order and each once. */
static void test_bridged_gap(Fixture *f, gconstpointer data) {
        GDBusConnection *m = f->tb->conn;
        guint64 start = bridged_start(f, NULL), last;
        guint gaps = 0, sub;

        sub = g_dbus_connection_signal_subscribe(m, OUTPOST_NAME, IFACE_EVENTS, "Gap", OUTPOST_EVENTS_PATH, NULL,
                                                 G_DBUS_SIGNAL_FLAGS_NONE, on_gap, &gaps, NULL);
        bridge_process_stop(&f->d->central_listener, SIGKILL);
        test_wait_until(client_state(f) != OUTPOST_CLIENT_STATE_CONNECTED, 10000);
        publish_n(f, "app/lost", 200);
        /* Retention trims a history over its count about a second later. */
        g_usleep(1500 * 1000);
        bridge_process_restart(&f->d->central_listener);
        test_wait_until(client_state(f) == OUTPOST_CLIENT_STATE_CONNECTED, 20000);
        test_wait_until(gaps >= 1, 10000);
        test_wait_until(f->resyncs >= 1, 10000);

        publish_n(f, "app/after", 3);
        last = events_property(f, "LastSeq");
        test_wait_until(last_delivered(f, start) == last, 10000);
        /* on_event() checks the order; the newest came, the lost did not. */
        for (guint i = 0; i < 3; i++)
                g_assert_cmpuint(g_array_index(f->seqs, guint64, f->seqs->len - 1 - i), ==, last - i);
        g_assert_cmpuint(f->seqs->len, <, last - start);

        g_dbus_connection_signal_unsubscribe(m, sub);
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);

#define ADD(name, data, setup, fn) g_test_add(name, Fixture, data, setup, fn, fixture_teardown)
        ADD("/liboutpost/connected", NULL, fixture_setup, test_connected);
        ADD("/liboutpost/errors", NULL, fixture_setup, test_errors);
        ADD("/liboutpost/disconnected", NULL, fixture_setup_no_daemon, test_disconnected);
        ADD("/liboutpost/left-before-reply", NULL, fixture_setup, test_left_before_reply);
        ADD("/liboutpost/restart", NULL, fixture_setup, test_restart);
        ADD("/liboutpost/messages", NULL, fixture_setup, test_messages);
        ADD("/liboutpost/request-ids", NULL, fixture_setup, test_request_ids);
        ADD("/liboutpost/lease", NULL, fixture_setup, test_lease);
        ADD("/liboutpost/online-users", NULL, fixture_setup, test_online_users);
        ADD("/liboutpost/subscriptions", NULL, fixture_setup, test_subscriptions);
        ADD("/liboutpost/truncated", "[Events]\nRetentionCount=10\n", fixture_setup, test_truncated);
        ADD("/liboutpost/bridged/link-outage", NULL, fixture_setup_bridged, test_bridged_link_outage);
        ADD("/liboutpost/bridged/bridge-restart", NULL, fixture_setup_bridged, test_bridged_bridge_restart);
        ADD("/liboutpost/bridged/gap", "[Events]\nRetentionCount=50\n", fixture_setup_bridged, test_bridged_gap);
        ADD("/liboutpost/bridged/online-users", NULL, fixture_setup_bridged, test_bridged_online_users);

        return g_test_run();
}
