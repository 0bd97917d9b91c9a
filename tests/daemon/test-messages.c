/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Messages manager, and the events the daemon publishes itself, through
 * the real bus with GDBus clients: Send delivers one event per recipient on
 * messages/<id>, refuses bad input without writing anything, sends a
 * retried SendWithOptions with a request id once, and every
 * change of a user is an event on "users" (DESIGN.md §3 Users, Messages,
 * Events; §4 rules 2 and 3: the events come before the reply). */
#include "config.h"

#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define UNKNOWN_ID        "00000000-0000-4000-8000-000000000000"
#define UNKNOWN_ID2       "11111111-1111-4111-8111-111111111111"
#define BODY_MAX          65536

/* Calls */

/* The events after AFTER whose topic starts with PREFIX (one page is
 * plenty here). */
static GVariant *fetch(GDBusConnection *c, guint64 after, const char *prefix) {
        g_autoptr(GVariant) r = NULL;
        GVariant *events;
        gboolean more;

        r = test_call_ok(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                         g_variant_new("(st^asu)", "", after, (const char *[]) { prefix, NULL }, 1000),
                         "(a(tsxa{sv})tb)");
        g_variant_get(r, "(@a(tsxa{sv})tb)", &events, NULL, &more);
        g_assert_false(more);
        return events;
}

static GVariant *send_call(GDBusConnection *c, const char *const *to, const char *body, GError **error) {
        return test_call(c, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send", g_variant_new("(^ass)", to, body),
                         "(st)", error);
}

static void publish_event(TestBus *tb, const char *topic) {
        g_variant_unref(test_call_ok(tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                     g_variant_new_parsed("(%s, @a{sv} {})", topic), "(t)"));
}

/* An asynchronous call awaited in the main loop; notes how many events
 * its watch had seen when the reply was handled. */
typedef struct Call {
        EventWatch *watch;
        GVariant *reply;
        GError *error;
        guint events_at_reply;
        gboolean done;
} Call;

static void call_clear(Call *call) {
        g_clear_pointer(&call->reply, g_variant_unref);
        g_clear_error(&call->error);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Call, call_clear)

static void on_call_reply(GObject *source, GAsyncResult *res, gpointer data) {
        Call *call = data;

        call->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &call->error);
        call->events_at_reply = call->watch->events->len;
        call->done = TRUE;
}

/* Call METHOD; the events it caused, and only those, are in W afterwards
 * (W is emptied first). */
static void call_and_watch(Call *call, EventWatch *w, const char *path, const char *iface, const char *method,
                           GVariant *params, const char *reply_type) {
        event_watch_sync(w);
        g_ptr_array_set_size(w->events, 0);
        call->watch = w;
        g_dbus_connection_call(w->conn, OUTPOST_NAME, path, iface, method, params, G_VARIANT_TYPE(reply_type),
                               G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_call_reply, call);
        test_wait_until(call->done, 30000);
        g_assert_no_error(call->error);
        /* Signal before reply: the events were handled before the reply. */
        event_watch_sync(w);
        g_assert_cmpuint(call->events_at_reply, ==, w->events->len);
}

static guint64 event_seq(GVariant *event) {
        guint64 seq;

        g_variant_get_child(event, 0, "t", &seq);
        return seq;
}

/* DATA holds exactly the given string entries: pairs of key and value,
 * then NULL. */
static void assert_strings(GVariant *data, ...) {
        va_list ap;
        guint n = 0;

        va_start(ap, data);
        for (const char *key = va_arg(ap, const char *); key; key = va_arg(ap, const char *)) {
                const char *want = va_arg(ap, const char *);
                const char *got = NULL;

                if (!g_variant_lookup(data, key, "&s", &got))
                        g_error("event data has no string '%s'", key);
                g_assert_cmpstr(got, ==, want);
                n++;
        }
        va_end(ap);
        g_assert_cmpuint(g_variant_n_children(data), ==, n);
}

/* The bridge peers a message sent on this test's bus came through, as
 * outpostd records them: none, or behind two bridges the names of their
 * certificates (every bridge of the harness has the server's, CN
 * localhost). */
static const char *const *bridge_peers(void) {
        static const char *const none[] = { NULL }, *const two_hops[] = { "localhost", "localhost", NULL };

        return test_bridged() ? two_hops : none;
}

/* DATA has sender-peers PEERS (and then PEERS is not empty), or none. */
static void assert_sender_peers(GVariant *data, const char *const *peers) {
        g_autofree const char **got = NULL;

        if (!peers[0]) {
                g_assert_false(g_variant_lookup(data, "sender-peers", "^a&s", &got));
                return;
        }
        g_assert_true(g_variant_lookup(data, "sender-peers", "^a&s", &got));
        g_assert_cmpstrv(got, peers);
}

/* EVENT is a message event: to TO, on messages/TO. */
static void assert_message_event(GVariant *event, const char *message_id, const char *to, const char *body) {
        g_autoptr(GVariant) data = NULL;
        g_autofree char *topic = g_strconcat("messages/", to, NULL);
        const char *t, *got_body = NULL, *id = NULL, *got_to = NULL;
        guint32 uid;

        g_variant_get(event, "(t&sx@a{sv})", NULL, &t, NULL, &data);
        g_assert_cmpstr(t, ==, topic);
        g_assert_cmpuint(g_variant_n_children(data), ==, test_bridged() ? 5 : 4);
        g_assert_true(g_variant_lookup(data, "body", "&s", &got_body));
        /* Compared by length first: a 64 KiB mismatch prints badly. */
        g_assert_cmpuint(strlen(got_body), ==, strlen(body));
        g_assert_true(strcmp(got_body, body) == 0);
        g_assert_true(g_variant_lookup(data, "id", "&s", &id));
        g_assert_cmpstr(id, ==, message_id);
        g_assert_true(g_variant_lookup(data, "to", "&s", &got_to));
        g_assert_cmpstr(got_to, ==, to);
        /* Who sent it, as the bus vouches for it: this test's own uid
         * (the bridges' too, when bridged), and the bridges it came
         * through, as their listeners vouch for them. */
        g_assert_true(g_variant_lookup(data, "sender-uid", "u", &uid));
        g_assert_cmpuint(uid, ==, getuid());
        assert_sender_peers(data, bridge_peers());
}

/* 1. Send: one event per recipient, signalled by the Messages manager
 * before the reply, in the store */

static void test_send(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(EventWatch) w = NULL, broadcast = NULL;
        g_autoptr(GVariant) stored = NULL, only_b = NULL;
        g_autofree char *a = NULL, *b = NULL, *b_topic = NULL;
        g_auto(Call) send = { 0 }, again = { 0 };
        const char *message_id, *second_id;
        guint64 before, last;

        test_bus_start_daemon(tb, NULL);
        a = test_create_user(tb->conn, "ann", NULL);
        b = test_create_user(tb->conn, "bob", NULL);
        w = message_watch_new(tb->conn);
        broadcast = event_watch_new(tb->conn);
        before = test_last_seq(tb->conn);

        call_and_watch(&send, w, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                       g_variant_new_parsed("([%s, %s], 'hello')", a, b), "(st)");
        g_variant_get(send.reply, "(&st)", &message_id, &last);
        g_assert_true(g_uuid_string_is_valid(message_id));
        /* Messages are private: never in the Event broadcast. */
        event_watch_sync(broadcast);
        g_assert_cmpuint(broadcast->events->len, ==, 0);

        /* One event each, in the order given; last_seq is the second. */
        g_assert_cmpuint(w->events->len, ==, 2);
        assert_message_event(w->events->pdata[0], message_id, a, "hello");
        assert_message_event(w->events->pdata[1], message_id, b, "hello");
        g_assert_cmpuint(event_seq(w->events->pdata[0]), >, before);
        g_assert_cmpuint(event_seq(w->events->pdata[1]), >, event_seq(w->events->pdata[0]));
        g_assert_cmpuint(event_seq(w->events->pdata[1]), ==, last);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, last);

        /* Stored as signalled. */
        stored = fetch(tb->conn, before, "messages/");
        g_assert_cmpuint(g_variant_n_children(stored), ==, 2);
        for (guint i = 0; i < 2; i++) {
                g_autoptr(GVariant) e = g_variant_get_child_value(stored, i);
                g_assert_true(g_variant_equal(e, w->events->pdata[i]));
        }
        /* A recipient follows its own topic. */
        b_topic = g_strconcat("messages/", b, NULL);
        only_b = fetch(tb->conn, 0, b_topic);
        g_assert_cmpuint(g_variant_n_children(only_b), ==, 1);
        {
                g_autoptr(GVariant) e = g_variant_get_child_value(only_b, 0);
                assert_message_event(e, message_id, b, "hello");
        }

        /* Every message has an id of its own. */
        call_and_watch(&again, w, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                       g_variant_new_parsed("([%s], 'again')", a), "(st)");
        g_variant_get(again.reply, "(&st)", &second_id, &last);
        g_assert_cmpstr(second_id, !=, message_id);
        g_assert_cmpuint(w->events->len, ==, 1);
        assert_message_event(w->events->pdata[0], second_id, a, "again");
        g_assert_cmpuint(event_seq(w->events->pdata[0]), ==, last);
}

/* 2. Bad input: the documented error, and nothing written */

static void assert_send_fails(TestBus *tb, const char *const *to, const char *body, const char *error_name,
                              const char *mention) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        guint64 before = test_last_seq(tb->conn);

        r = send_call(tb->conn, to, body, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, error_name, mention);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, before);
}

static void assert_send_ok(TestBus *tb, EventWatch *w, const char *to, const char *body) {
        g_autoptr(GVariant) r = NULL;
        const char *id;
        guint64 last;

        event_watch_sync(w);
        g_ptr_array_set_size(w->events, 0);
        r = test_call_ok(tb->conn, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                         g_variant_new("(^ass)", (const char *[]) { to, NULL }, body), "(st)");
        g_variant_get(r, "(&st)", &id, &last);
        event_watch_sync(w);
        g_assert_cmpuint(w->events->len, ==, 1);
        assert_message_event(w->events->pdata[0], id, to, body);
        g_assert_cmpuint(event_seq(w->events->pdata[0]), ==, last);
}

static void test_send_errors(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(EventWatch) w = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        g_autofree char *a = NULL, *gone = NULL, *gone_tag = NULL;
        g_autofree char *long_body = g_strnfill(BODY_MAX + 1, 'x');
        g_autofree char *max_body = g_strnfill(BODY_MAX, 'x');
        g_autoptr(GString) wide_max = g_string_new(NULL);
        g_autofree char *wide_long = NULL;

        test_bus_start_daemon(tb, NULL);
        a = test_create_user(tb->conn, "ann", NULL);
        gone = test_create_user(tb->conn, "gone", &gone_tag);
        g_variant_unref(test_call_ok(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser",
                                     g_variant_new("(ss)", gone, gone_tag), "()"));
        w = message_watch_new(tb->conn);
        event_watch_sync(w);
        g_ptr_array_set_size(w->events, 0);

        /* The first unknown recipient is named, even after a known one;
         * nobody gets the message, not even the known one. */
        r = send_call(tb->conn, (const char *[]) { a, UNKNOWN_ID, UNKNOWN_ID2, NULL }, "hi", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "NotFound", UNKNOWN_ID);
        g_assert_null(strstr(error->message, UNKNOWN_ID2));
        assert_send_fails(tb, (const char *[]) { a, UNKNOWN_ID, NULL }, "hi", "NotFound", UNKNOWN_ID);
        /* A deleted user is unknown too. */
        assert_send_fails(tb, (const char *[]) { gone, NULL }, "hi", "NotFound", gone);
        /* Not an id at all. */
        assert_send_fails(tb, (const char *[]) { a, "not-a-uuid", NULL }, "hi", "InvalidArgument", "not-a-uuid");
        assert_send_fails(tb, (const char *[]) { "", NULL }, "hi", "InvalidArgument", NULL);
        assert_send_fails(tb, (const char *[]) { NULL }, "hi", "InvalidArgument", NULL);
        /* Bodies are 1-65536 bytes, counted in bytes, not characters. */
        assert_send_fails(tb, (const char *[]) { a, NULL }, "", "InvalidArgument", NULL);
        assert_send_fails(tb, (const char *[]) { a, NULL }, long_body, "LimitExceeded", "65537");
        for (guint i = 0; i < BODY_MAX / 2; i++)
                g_string_append(wide_max, "é");
        wide_long = g_strconcat(wide_max->str, "x", NULL);
        assert_send_fails(tb, (const char *[]) { a, NULL }, wide_long, "LimitExceeded", NULL);

        /* Nothing was signalled for any of those. */
        event_watch_sync(w);
        g_assert_cmpuint(w->events->len, ==, 0);

        /* The limits themselves are fine. */
        assert_send_ok(tb, w, a, max_body);
        assert_send_ok(tb, w, a, wide_max->str);
        assert_send_ok(tb, w, a, "x");
}

/* 2a. A retried Send with a request id is sent once */

static GVariant *send_with_id(GDBusConnection *c, const char *const *to, const char *body, const char *id,
                              GError **error) {
        return test_call(c, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                         g_variant_new_parsed("(%^as, %s, {'request-id': <%s>})", to, body, id), "(st)", error);
}

/* The message id and last_seq of a SendWithOptions that must succeed. */
static void send_with_id_ok(GDBusConnection *c, const char *const *to, const char *body, const char *id,
                            char **ret_message_id, guint64 *ret_last) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = send_with_id(c, to, body, id, &error);

        g_assert_no_error(error);
        g_variant_get(r, "(st)", ret_message_id, ret_last);
}

static void assert_options_refused(TestBus *tb, const char *const *to, GVariant *options, const char *mention) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        guint64 before = test_last_seq(tb->conn);

        r = test_call(tb->conn, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                      g_variant_new("(^as&s@a{sv})", to, "hi", options), "(st)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "InvalidArgument", mention);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, before);
}

static guint n_events(GDBusConnection *c, guint64 after, const char *prefix) {
        g_autoptr(GVariant) events = fetch(c, after, prefix);

        return g_variant_n_children(events);
}

static void test_send_request_id(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *a = NULL, *b = NULL, *b_tag = NULL, *first_id = NULL, *again_id = NULL, *other_id = NULL;
        g_autofree char *plain_id = NULL, *long_id = g_strnfill(129, 'x');
        g_autoptr(GVariant) plain = NULL;
        const char *to[3];
        guint64 before, first_last, again_last, other_last, plain_last;

        test_bus_start_daemon(tb, NULL);
        a = test_create_user(tb->conn, "ann", NULL);
        b = test_create_user(tb->conn, "bob", &b_tag);
        to[0] = a, to[1] = b, to[2] = NULL;
        before = test_last_seq(tb->conn);

        send_with_id_ok(tb->conn, to, "hello", "note-0001", &first_id, &first_last);
        g_assert_true(g_uuid_string_is_valid(first_id));
        send_with_id_ok(tb->conn, to, "hello", "note-0001", &again_id, &again_last);
        g_assert_cmpstr(again_id, ==, first_id);
        g_assert_cmpuint(again_last, ==, first_last);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, first_last);
        g_assert_cmpuint(n_events(tb->conn, before, "messages/"), ==, 2);

        /* Another id, or none, is another message. */
        send_with_id_ok(tb->conn, to, "hello", "note-0002", &other_id, &other_last);
        g_assert_cmpstr(other_id, !=, first_id);
        g_assert_cmpuint(other_last, ==, first_last + 2);
        plain = test_call_ok(tb->conn, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                             g_variant_new_parsed("(%^as, 'hello', @a{sv} {})", to), "(st)");
        g_variant_get(plain, "(st)", &plain_id, &plain_last);
        g_assert_cmpstr(plain_id, !=, first_id);
        g_assert_cmpuint(n_events(tb->conn, before, "messages/"), ==, 6);

        /* Bad ids and unknown options are refused, and write nothing. */
        assert_options_refused(tb, to, g_variant_new_parsed("{'request-id': <''>}"), "128");
        assert_options_refused(tb, to, g_variant_new_parsed("{'request-id': <%s>}", long_id), "128");
        assert_options_refused(tb, to, g_variant_new_parsed("{'request-id': <'a\tb'>}"), "printable ASCII");
        assert_options_refused(tb, to, g_variant_new_parsed("{'request-id': <@u 7>}"), "type");
        assert_options_refused(tb, to, g_variant_new_parsed("{'request-id': <'a'>, 'request-id': <'b'>}"),
                               "given twice");
        assert_options_refused(tb, to, g_variant_new_parsed("{'priority': <'high'>}"), "priority");

        /* A retry is answered even once a recipient is gone: the message
         * went, and the caller learns so. */
        g_variant_unref(test_call_ok(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser",
                                     g_variant_new("(ss)", b, b_tag), "()"));
        g_clear_pointer(&again_id, g_free);
        send_with_id_ok(tb->conn, to, "hello", "note-0001", &again_id, &again_last);
        g_assert_cmpstr(again_id, ==, first_id);
        g_assert_cmpuint(again_last, ==, first_last);

        /* Remembered across a restart of outpostd. */
        before = test_last_seq(tb->conn);
        test_bus_stop_daemon(tb, SIGTERM);
        test_bus_start_daemon(tb, NULL);
        g_clear_pointer(&again_id, g_free);
        send_with_id_ok(tb->conn, to, "hello", "note-0002", &again_id, &again_last);
        g_assert_cmpstr(again_id, ==, other_id);
        g_assert_cmpuint(again_last, ==, other_last);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, before);
}

/* Request ids are each caller's own: another Unix user's same id is
 * another message. (Behind a bridge every caller is the bridge's
 * account.) */
static void test_send_request_id_per_caller(void) {
        g_autoptr(TestBus) tb = NULL;
        g_autofree char *a = NULL, *root_id = NULL;
        g_autoptr(GVariant) r = NULL;
        g_autoptr(GError) error = NULL;
        const char *to[2] = { NULL, NULL }, *nobody_id;
        guint64 root_last, nobody_last;

        if (test_bridged()) {
                g_test_skip("every caller is the bridge's account behind a bridge");
                return;
        }
        if (!test_can_switch_user())
                return;
        tb = test_bus_new();
        test_bus_start_daemon(tb, NULL);
        a = test_create_user(tb->conn, "ann", NULL);
        if (!test_bus_start_polkit(tb))
                return;
        test_polkit_set_allowed(tb, (const char *[]) { "org.outpost.Outpost1.send-messages", NULL });
        to[0] = a;
        send_with_id_ok(tb->conn, to, "hello", "note-0001", &root_id, &root_last);
        r = test_call_as(tb, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL, OUTPOST_MESSAGES_PATH,
                         IFACE_MESSAGES, "SendWithOptions",
                         g_variant_new_parsed("(%^as, 'hello', {'request-id': <'note-0001'>})", to), "(st)", &error);
        g_assert_no_error(error);
        g_variant_get(r, "(&st)", &nobody_id, &nobody_last);
        g_assert_cmpstr(nobody_id, !=, root_id);
        g_assert_cmpuint(nobody_last, >, root_last);
}

/* 2b. relayed-by: the peers a message came through, in its events */

/* The sender-peers of the one message event after AFTER. */
static void assert_last_message_peers(GDBusConnection *c, guint64 after, const char *const *peers) {
        g_autoptr(GVariant) events = fetch(c, after, "messages/");
        g_autoptr(GVariant) event = NULL, data = NULL;

        g_assert_cmpuint(g_variant_n_children(events), ==, 1);
        event = g_variant_get_child_value(events, 0);
        g_variant_get(event, "(tsx@a{sv})", NULL, NULL, NULL, &data);
        assert_sender_peers(data, peers);
}

/* SendWithOptions as root relaying for MACHINE behind "site-1", with
 * REQUEST_ID; the message id, also in *RET_ID (freed first). */
static const char *send_relayed(TestBus *tb, const char *const *to, const char *machine, const char *request_id,
                                char **ret_id) {
        g_autoptr(GVariant) r = NULL;

        r = test_call_ok(tb->conn, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                         g_variant_new_parsed("(%^as, 'hi', {'relayed-by': <[%s, 'site-1']>, 'request-id': <%s>})",
                                              to, machine, request_id),
                         "(st)");
        g_free(*ret_id);
        g_variant_get(r, "(st)", ret_id, NULL);
        return *ret_id;
}

static void test_send_relayed_by(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GPtrArray) expected = g_ptr_array_new();
        g_autoptr(GVariantBuilder) many = g_variant_builder_new(G_VARIANT_TYPE_STRING_ARRAY);
        g_autofree char *a = NULL, *long_name = g_strnfill(256, 'x');
        g_autofree char *first_id = NULL, *kiosk2_id = NULL, *retry_id = NULL;
        const char *to[2] = { NULL, NULL };
        guint64 before;

        test_bus_start_daemon(tb, NULL);
        a = test_create_user(tb->conn, "ann", NULL);
        to[0] = a;

        /* Root may say whom it relays for: the names go first, before the
         * ones the bridges of this test (if any) add. */
        before = test_last_seq(tb->conn);
        send_relayed(tb, to, "kiosk-1", "relayed-1", &first_id);
        g_ptr_array_add(expected, "kiosk-1");
        g_ptr_array_add(expected, "site-1");
        for (const char *const *p = bridge_peers(); *p; p++)
                g_ptr_array_add(expected, (gpointer) *p);
        g_ptr_array_add(expected, NULL);
        assert_last_message_peers(tb->conn, before, (const char *const *) expected->pdata);

        /* A request id is the chain's own: another machine behind the same
         * bridge with the same id sends its own message, and a retry
         * along the first chain gets the first one's id. */
        g_assert_cmpstr(send_relayed(tb, to, "kiosk-2", "relayed-1", &kiosk2_id), !=, first_id);
        g_assert_cmpstr(send_relayed(tb, to, "kiosk-1", "relayed-1", &retry_id), ==, first_id);
        g_assert_cmpstr(send_relayed(tb, to, "kiosk-2", "relayed-1", &retry_id), ==, kiosk2_id);

        /* Without it, a message names no peer of its own. */
        before = test_last_seq(tb->conn);
        g_variant_unref(test_call_ok(tb->conn, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                                     g_variant_new_parsed("(%^as, 'hi', @a{sv} {})", to), "(st)"));
        assert_last_message_peers(tb->conn, before, bridge_peers());

        /* What may not be a chain of names is refused, writing nothing. */
        for (int i = 0; i < 17; i++)
                g_variant_builder_add(many, "s", "site-1");
        assert_options_refused(tb, to, g_variant_new_parsed("{'relayed-by': <%as>}", many), "at most 16");
        assert_options_refused(tb, to, g_variant_new_parsed("{'relayed-by': <'site-1'>}"), "array of strings");
        assert_options_refused(tb, to, g_variant_new_parsed("{'relayed-by': <['site-1']>, 'relayed-by': <['b']>}"),
                               "twice");
        /* (Behind bridges, the bridges' names come after it: not empty.) */
        if (!test_bridged())
                assert_options_refused(tb, to, g_variant_new_parsed("{'relayed-by': <@as []>}"), "at least one");
        assert_options_refused(tb, to, g_variant_new_parsed("{'relayed-by': <[%s]>}", long_name), "255");
        assert_options_refused(tb, to, g_variant_new_parsed("{'relayed-by': <['a\\nb']>}"), "control");
        assert_options_refused(tb, to, g_variant_new_parsed("{'relayed-by': <['']>}"), "1-255");
}

/* 3. Every change of a user is an event on "users" */

static void assert_users_event(GVariant *event, const char *action, const char *id, const char *tag) {
        g_autoptr(GVariant) data = NULL;
        const char *topic;

        g_variant_get(event, "(t&sx@a{sv})", NULL, &topic, NULL, &data);
        g_assert_cmpstr(topic, ==, "users");
        assert_strings(data, "action", action, "id", id, "tag", tag, NULL);
}

/* A users method that must fail with ERROR_NAME, mentioning MENTION. */
static void assert_users_call_fails(TestBus *tb, const char *method, GVariant *params, const char *error_name,
                                    const char *mention) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = test_call(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, method, params, NULL, &error);

        g_assert_null(r);
        test_assert_dbus_error(error, error_name, mention);
}

static void assert_nothing_published(TestBus *tb, EventWatch *w, guint64 before) {
        event_watch_sync(w);
        for (guint i = 0; i < w->events->len; i++) {
                g_autofree char *s = g_variant_print(w->events->pdata[i], TRUE);
                g_test_message("unexpected event: %s", s);
        }
        g_assert_cmpuint(w->events->len, ==, 0);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, before);
}

static void test_users_events(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(EventWatch) w = NULL;
        g_autoptr(GVariant) stored = NULL;
        g_autoptr(GPtrArray) seen = g_ptr_array_new_with_free_func((GDestroyNotify) g_variant_unref);
        g_auto(Call) create = { 0 }, save = { 0 }, del = { 0 };
        const char *id, *tag, *tag2;
        guint64 before, last;

        test_bus_start_daemon(tb, NULL);
        w = event_watch_new(tb->conn);
        before = test_last_seq(tb->conn);

        call_and_watch(&create, w, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                       g_variant_new_parsed("({'name': <'ann'>},)"), "(ss)");
        g_variant_get(create.reply, "(&s&s)", &id, &tag);
        g_assert_cmpuint(w->events->len, ==, 1);
        assert_users_event(w->events->pdata[0], "created", id, tag);
        g_ptr_array_add(seen, g_variant_ref(w->events->pdata[0]));

        /* The event carries the new tag. */
        call_and_watch(&save, w, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                       g_variant_new_parsed("(%s, %s, {'display-name': <'Ann'>})", id, tag), "(s)");
        g_variant_get(save.reply, "(&s)", &tag2);
        g_assert_cmpstr(tag2, !=, tag);
        g_assert_cmpuint(w->events->len, ==, 1);
        assert_users_event(w->events->pdata[0], "updated", id, tag2);
        g_ptr_array_add(seen, g_variant_ref(w->events->pdata[0]));

        /* What fails publishes nothing. */
        last = test_last_seq(tb->conn);
        g_ptr_array_set_size(w->events, 0);
        assert_users_call_fails(tb, "SaveUser", g_variant_new_parsed("(%s, %s, {'display-name': <'Old'>})", id, tag),
                                "SaveConflict", tag2);
        assert_nothing_published(tb, w, last);
        assert_users_call_fails(tb, "CreateUser", g_variant_new_parsed("({'name': <'ann'>},)"), "AlreadyExists", "ann");
        assert_nothing_published(tb, w, last);
        assert_users_call_fails(tb, "DeleteUser", g_variant_new("(ss)", id, tag), "SaveConflict", tag2);
        assert_nothing_published(tb, w, last);

        /* A deleted user's event names the tag it had. */
        call_and_watch(&del, w, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser", g_variant_new("(ss)", id, tag2), "()");
        g_assert_cmpuint(w->events->len, ==, 1);
        assert_users_event(w->events->pdata[0], "deleted", id, tag2);
        g_ptr_array_add(seen, g_variant_ref(w->events->pdata[0]));

        g_ptr_array_set_size(w->events, 0);
        assert_users_call_fails(tb, "DeleteUser", g_variant_new("(ss)", id, tag2), "NotFound", id);
        assert_nothing_published(tb, w, event_seq(seen->pdata[2]));

        /* The three are in the store as signalled, in order. */
        stored = fetch(tb->conn, before, "users");
        g_assert_cmpuint(g_variant_n_children(stored), ==, 3);
        for (guint i = 0; i < 3; i++) {
                g_autoptr(GVariant) e = g_variant_get_child_value(stored, i);
                g_assert_true(g_variant_equal(e, seen->pdata[i]));
        }
        g_assert_cmpuint(event_seq(seen->pdata[0]), <, event_seq(seen->pdata[1]));
        g_assert_cmpuint(event_seq(seen->pdata[1]), <, event_seq(seen->pdata[2]));
        g_assert_cmpuint(test_last_seq(tb->conn), ==, event_seq(seen->pdata[2]));
}

/* 4. Messages are private: only callers authorized for read-messages get
 * them from FetchSince, only root, the bridge's account and the messages
 * group receive their signal; when bridged, all this two hops away. */

#define ACTION_READ_MESSAGES "org.outpost.Outpost1.read-messages"

static gid_t messages_gid = (gid_t) -1;

typedef struct Page {
        GVariant *events;
        guint64 next_after;
        gboolean more;
} Page;

static void page_clear(Page *p) {
        g_clear_pointer(&p->events, g_variant_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Page, page_clear)

static void fetch_as_nobody(TestBus *tb, guint64 after, const char *prefix, guint32 limit, Page *ret) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;

        r = test_call_as(tb, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, NULL, OUTPOST_EVENTS_PATH,
                         IFACE_EVENTS, "FetchSince",
                         g_variant_new("(st^asu)", "", after, (const char *[]) { prefix, NULL }, limit),
                         "(a(tsxa{sv})tb)", &error);
        g_assert_no_error(error);
        g_variant_get(r, "(@a(tsxa{sv})tb)", &ret->events, &ret->next_after, &ret->more);
}

/* The topics of EVENTS (a(tsxa{sv})), joined by spaces. */
static char *page_topics(GVariant *events) {
        g_autoptr(GString) out = g_string_new(NULL);
        GVariantIter iter;
        const char *topic;

        g_variant_iter_init(&iter, events);
        while (g_variant_iter_next(&iter, "(t&sx@a{sv})", NULL, &topic, NULL, NULL))
                g_string_append_printf(out, "%s%s", out->len ? " " : "", topic);
        return g_string_free(g_steal_pointer(&out), FALSE);
}

/* Every page after AFTER, LIMIT events each, up to the end (LAST): the
 * topics the caller got, joined by spaces. */
static char *fetch_paged_as_nobody(TestBus *tb, guint64 after, guint32 limit, guint64 last) {
        g_autoptr(GString) out = g_string_new(NULL);
        gboolean more = TRUE;

        while (more) {
                g_auto(Page) page = { 0 };
                g_autofree char *topics = NULL;

                fetch_as_nobody(tb, after, NULL, limit, &page);
                g_assert_cmpuint(g_variant_n_children(page.events), <=, limit);
                g_assert_cmpuint(page.next_after, >, after);
                topics = page_topics(page.events);
                g_string_append_printf(out, "%s%s", out->len && topics[0] ? " " : "", topics);
                after = page.next_after;
                more = page.more;
        }
        g_assert_cmpuint(after, ==, last);
        return g_string_free(g_steal_pointer(&out), FALSE);
}

static gboolean fixture_ready(TestBus *tb) {
        test_bus_start_daemon(tb, NULL);
        return test_can_switch_user() && test_bus_start_polkit(tb);
}

static void test_private_fetch(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GVariant) sent = NULL;
        g_autofree char *a = NULL, *b = NULL, *a_topic = NULL, *b_topic = NULL, *want = NULL;
        guint64 before, last;

        if (!fixture_ready(tb))
                return;
        a = test_create_user(tb->conn, "ann", NULL);
        b = test_create_user(tb->conn, "bob", NULL);
        a_topic = g_strconcat("messages/", a, NULL);
        b_topic = g_strconcat("messages/", b, NULL);
        before = test_last_seq(tb->conn);
        publish_event(tb, "shop.open");
        sent = send_call(tb->conn, (const char *[]) { a, b, NULL }, "the code is 1234", NULL);
        g_assert_nonnull(sent);
        publish_event(tb, "shop.closed");
        last = test_last_seq(tb->conn);

        /* Not authorized: every other event, and the scan goes past the
         * messages, whatever the prefixes and the page size. */
        {
                g_auto(Page) all = { 0 }, msgs = { 0 }, m = { 0 }, own = { 0 };
                g_autofree char *topics = NULL;

                fetch_as_nobody(tb, before, NULL, 1000, &all);
                topics = page_topics(all.events);
                g_assert_cmpstr(topics, ==, "shop.open shop.closed");
                g_assert_cmpuint(all.next_after, ==, last);
                g_assert_false(all.more);

                fetch_as_nobody(tb, before, "messages/", 1000, &msgs);
                g_assert_cmpuint(g_variant_n_children(msgs.events), ==, 0);
                g_assert_cmpuint(msgs.next_after, ==, last);
                fetch_as_nobody(tb, before, "m", 1000, &m);
                g_assert_cmpuint(g_variant_n_children(m.events), ==, 0);
                g_assert_cmpuint(m.next_after, ==, last);
                fetch_as_nobody(tb, before, a_topic, 1000, &own);
                g_assert_cmpuint(g_variant_n_children(own.events), ==, 0);
                g_assert_cmpuint(own.next_after, ==, last);
                /* Paged one by one, the messages are passed over (behind
                 * a bridge, a page may come back empty, with more). */
                g_clear_pointer(&topics, g_free);
                topics = fetch_paged_as_nobody(tb, before + 1, 1, last);
                g_assert_cmpstr(topics, ==, "shop.closed");
        }

        /* Root may. */
        {
                g_autoptr(GVariant) stored = fetch(tb->conn, before, "messages/");
                g_autofree char *topics = page_topics(stored);

                want = g_strdup_printf("%s %s", a_topic, b_topic);
                g_assert_cmpstr(topics, ==, want);
        }

        /* So does a caller polkit authorizes for read-messages. */
        test_polkit_set_allowed(tb, (const char *[]) { ACTION_READ_MESSAGES, NULL });
        {
                g_auto(Page) all = { 0 };
                g_autofree char *topics = NULL, *expect = NULL;

                fetch_as_nobody(tb, before, NULL, 1000, &all);
                topics = page_topics(all.events);
                expect = g_strdup_printf("shop.open %s shop.closed", want);
                g_assert_cmpstr(topics, ==, expect);
                g_assert_cmpuint(all.next_after, ==, last);
        }
}

/* Whether LINES (of test_listener_finish()) hold a signal of a messages/
 * topic, or a MessageReceived. */
static gboolean lines_show_messages(char **lines) {
        for (char **l = lines; *l; l++)
                if (strstr(*l, "messages/") || strstr(*l, "MessageReceived"))
                        return TRUE;
        return FALSE;
}

/* LINES hold FIRST, then SECOND later, each once. */
static void assert_in_order(char **lines, const char *first, const char *second) {
        int i_first = -1, i_second = -1;

        for (int i = 0; lines[i]; i++) {
                if (g_str_equal(lines[i], first)) {
                        g_assert_cmpint(i_first, ==, -1);
                        i_first = i;
                } else if (g_str_equal(lines[i], second)) {
                        g_assert_cmpint(i_second, ==, -1);
                        i_second = i;
                }
        }
        if (i_first < 0 || i_second < i_first) {
                g_autofree char *all = g_strjoinv("\n", lines);
                g_error("expected '%s', then '%s', in:\n%s", first, second, all);
        }
}

static void test_private_signal(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(EventWatch) mine = NULL;
        g_autoptr(GVariant) sent = NULL;
        g_auto(GStrv) nobody_lines = NULL, member_lines = NULL;
        g_autofree char *a = NULL, *want = NULL, *public_line = NULL;
        TestListener *nobody, *member = NULL;

        if (!fixture_ready(tb))
                return;
        a = test_create_user(tb->conn, "ann", NULL);
        mine = message_watch_new(tb->conn);
        nobody = test_listen_as(tb, TEST_UID_NOBODY, TEST_GID_NOGROUP);
        if (messages_gid != (gid_t) -1)
                member = test_listen_as(tb, TEST_UID_NOBODY, messages_gid);

        sent = send_call(tb->conn, (const char *[]) { a, NULL }, "the code is 1234", NULL);
        g_assert_nonnull(sent);
        publish_event(tb, "shop.open");
        want = g_strdup_printf(IFACE_MESSAGES ".MessageReceived messages/%s", a);
        public_line = g_strdup(IFACE_EVENTS ".Event shop.open");

        /* Anyone gets the public event, after the message was signalled... */
        nobody_lines = test_listener_finish(nobody);
        g_assert_true(g_strv_contains((const char *const *) nobody_lines, public_line));
        /* ...but not the message, in any signal. */
        if (lines_show_messages(nobody_lines)) {
                g_autofree char *all = g_strjoinv("\n", nobody_lines);
                g_error("an unprivileged listener received a message:\n%s", all);
        }

        /* The messages group does, before the public event, as sent. */
        if (member) {
                member_lines = test_listener_finish(member);
                assert_in_order(member_lines, want, public_line);
        } else
                g_test_message("No group can stand in for outpost-messages here: its part is skipped");

        /* And root. */
        event_watch_sync(mine);
        g_assert_cmpuint(mine->events->len, ==, 1);
}

/* Two hops away, a message sent while the site's bridge was down reaches
 * the machine in the replay after the outage: as MessageReceived, to
 * those who may receive it, in its place before later events. */
static void test_private_replay(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(GVariant) sent = NULL;
        g_auto(GStrv) nobody_lines = NULL, member_lines = NULL;
        g_autofree char *a = NULL, *want = NULL;
        TestListener *nobody, *member;

        if (!test_bridged()) {
                g_test_skip("Only through bridges (tests/bridge/bridged/messages.bridged)");
                return;
        }
        if (!fixture_ready(tb))
                return;
        if (messages_gid == (gid_t) -1) {
                g_test_skip("No group can stand in for outpost-messages here");
                return;
        }
        a = test_create_user(tb->conn, "ann", NULL);
        nobody = test_listen_as(tb, TEST_UID_NOBODY, TEST_GID_NOGROUP);
        member = test_listen_as(tb, TEST_UID_NOBODY, messages_gid);

        bridge_process_stop(&tb->bridges[1], SIGTERM);
        test_bridged_wait_outage(tb);
        sent = send_call(tb->central->conn, (const char *[]) { a, NULL }, "the code is 1234", NULL);
        g_assert_nonnull(sent);
        publish_event(tb->central, "shop.open");
        bridge_process_restart(&tb->bridges[1]);
        wait_bridge_state(tb->conn, "connected", 20000);

        want = g_strdup_printf(IFACE_MESSAGES ".MessageReceived messages/%s", a);
        member_lines = test_listener_finish(member);
        assert_in_order(member_lines, want, IFACE_EVENTS ".Event shop.open");
        nobody_lines = test_listener_finish(nobody);
        g_assert_true(g_strv_contains((const char *const *) nobody_lines, IFACE_EVENTS ".Event shop.open"));
        if (lines_show_messages(nobody_lines)) {
                g_autofree char *all = g_strjoinv("\n", nobody_lines);
                g_error("an unprivileged listener received a replayed message:\n%s", all);
        }
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        messages_gid = test_messages_group();
        g_test_add_func("/messages/send", test_send);
        g_test_add_func("/messages/send-errors", test_send_errors);
        g_test_add_func("/messages/send-request-id", test_send_request_id);
        g_test_add_func("/messages/send-request-id-per-caller", test_send_request_id_per_caller);
        g_test_add_func("/messages/send-relayed-by", test_send_relayed_by);
        g_test_add_func("/messages/users-events", test_users_events);
        g_test_add_func("/messages/private-fetch", test_private_fetch);
        g_test_add_func("/messages/private-signal", test_private_signal);
        g_test_add_func("/messages/private-replay", test_private_replay);
        return g_test_run();
}
