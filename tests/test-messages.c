/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Messages manager, and the events the daemon publishes itself, through
 * the real bus with GDBus clients: Send delivers one event per recipient on
 * messages/<id>, refuses bad input without writing anything, and every
 * change of a user is an event on "users" (DESIGN.md §3 Users, Messages,
 * Events; §4 rules 2 and 3: the events come before the reply). */
#include "config.h"

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

/* EVENT is a message event: to TO, on messages/TO. */
static void assert_message_event(GVariant *event, const char *message_id, const char *to, const char *body) {
        g_autoptr(GVariant) data = NULL;
        g_autofree char *topic = g_strconcat("messages/", to, NULL);
        const char *t, *got_body = NULL, *id = NULL, *got_to = NULL;
        guint32 uid;

        g_variant_get(event, "(t&sx@a{sv})", NULL, &t, NULL, &data);
        g_assert_cmpstr(t, ==, topic);
        g_assert_cmpuint(g_variant_n_children(data), ==, 4);
        g_assert_true(g_variant_lookup(data, "body", "&s", &got_body));
        /* Compared by length first: a 64 KiB mismatch prints badly. */
        g_assert_cmpuint(strlen(got_body), ==, strlen(body));
        g_assert_true(strcmp(got_body, body) == 0);
        g_assert_true(g_variant_lookup(data, "id", "&s", &id));
        g_assert_cmpstr(id, ==, message_id);
        g_assert_true(g_variant_lookup(data, "to", "&s", &got_to));
        g_assert_cmpstr(got_to, ==, to);
        /* Who sent it, as the bus vouches for it: this test's own uid. */
        g_assert_true(g_variant_lookup(data, "sender-uid", "u", &uid));
        g_assert_cmpuint(uid, ==, getuid());
}

/* 1. Send: one event per recipient, before the reply, in the store */

static void test_send(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autoptr(EventWatch) w = NULL;
        g_autoptr(GVariant) stored = NULL, only_b = NULL;
        g_autofree char *a = NULL, *b = NULL, *b_topic = NULL;
        g_auto(Call) send = { 0 }, again = { 0 };
        const char *message_id, *second_id;
        guint64 before, last;

        test_bus_start_daemon(tb, NULL);
        a = test_create_user(tb->conn, "ann", NULL);
        b = test_create_user(tb->conn, "bob", NULL);
        w = event_watch_new(tb->conn);
        before = test_last_seq(tb->conn);

        call_and_watch(&send, w, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                       g_variant_new_parsed("([%s, %s], 'hello')", a, b), "(st)");
        g_variant_get(send.reply, "(&st)", &message_id, &last);
        g_assert_true(g_uuid_string_is_valid(message_id));

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
        w = event_watch_new(tb->conn);
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

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        g_test_add_func("/messages/send", test_send);
        g_test_add_func("/messages/send-errors", test_send_errors);
        g_test_add_func("/messages/users-events", test_users_events);
        return g_test_run();
}
