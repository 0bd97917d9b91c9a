/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Registry and the Users manager through the real bus, with a GDBus
 * client: every method, its errors, paging, conflicts and durability. */
#include "config.h"

#include <signal.h>
#include <string.h>

#include "harness.h"

#define UNKNOWN_ID "00000000-0000-4000-8000-000000000000"

typedef struct Fixture {
        TestBus *tb;
        GDBusConnection *c;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data) {
        f->tb = test_bus_new();
        test_bus_start_daemon(f->tb, NULL);
        f->c = f->tb->conn;
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        test_bus_free(f->tb);
}

static GVariant *get_user(GDBusConnection *c, const char *id, GError **error) {
        g_autoptr(GVariant) r = test_call(c, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                                          g_variant_new("(s)", id), "(a{sv})", error);
        return r ? g_variant_get_child_value(r, 0) : NULL;
}

static char *lookup_string(GVariant *user, const char *key) {
        g_autofree char *s = NULL;
        g_assert_true(g_variant_lookup(user, key, "s", &s));
        return g_steal_pointer(&s);
}

static GVariant *save_user(GDBusConnection *c, const char *id, const char *tag, GVariant *changes, GError **error) {
        return test_call(c, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                         g_variant_new("(ss@a{sv})", id, tag, changes), "(s)", error);
}

/* Registry */

static void test_registry(Fixture *f, gconstpointer data) {
        g_autoptr(GVariant) r = NULL, props = NULL, path = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariantIter) iter = NULL;
        const char *name, *p, *iface;
        guint n = 0;

        r = test_call_ok(f->c, OUTPOST_ROOT, IFACE_REGISTRY, "ListManagers", NULL, "(a(sos))");
        g_variant_get(r, "(a(sos))", &iter);
        while (g_variant_iter_next(iter, "(&s&o&s)", &name, &p, &iface)) {
                g_autofree char *want_path = g_strconcat(OUTPOST_ROOT "/", name, NULL);
                g_assert_cmpstr(p, ==, want_path);
                g_assert_true(g_str_has_prefix(iface, "org.outpost.Outpost1."));
                n++;
        }
        g_assert_cmpuint(n, ==, 4);

        path = test_call_ok(f->c, OUTPOST_ROOT, IFACE_REGISTRY, "GetManager", g_variant_new("(s)", "users"), "(o)");
        g_variant_get(path, "(&o)", &p);
        g_assert_cmpstr(p, ==, OUTPOST_USERS_PATH);

        r = test_call(f->c, OUTPOST_ROOT, IFACE_REGISTRY, "GetManager", g_variant_new("(s)", "nope"), "(o)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "NotFound", "'nope'");

        props = test_call_ok(f->c, OUTPOST_ROOT, "org.freedesktop.DBus.Properties", "GetAll",
                             g_variant_new("(s)", IFACE_REGISTRY), "(a{sv})");
        {
                g_autoptr(GVariant) dict = g_variant_get_child_value(props, 0);
                const char *server_id = NULL, *version = NULL;
                g_assert_true(g_variant_lookup(dict, "ServerId", "&s", &server_id));
                g_assert_true(g_variant_lookup(dict, "Version", "&s", &version));
                g_assert_cmpuint(strlen(server_id), ==, 36);
                g_assert_cmpstr(version, ==, PACKAGE_VERSION);
        }
}

static void test_managed_objects(Fixture *f, gconstpointer data) {
        g_autoptr(GVariant) r = NULL, objects = NULL, presence = NULL, events = NULL;

        r = test_call_ok(f->c, OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL,
                         "(a{oa{sa{sv}}})");
        objects = g_variant_get_child_value(r, 0);
        g_assert_true(g_variant_lookup(objects, OUTPOST_USERS_PATH, "@a{sa{sv}}", NULL));
        g_assert_true(g_variant_lookup(objects, OUTPOST_MESSAGES_PATH, "@a{sa{sv}}", NULL));
        g_assert_true(g_variant_lookup(objects, OUTPOST_PRESENCE_PATH, "@a{sa{sv}}", &presence));
        g_assert_true(g_variant_lookup(objects, OUTPOST_EVENTS_PATH, "@a{sa{sv}}", &events));
        {
                g_autoptr(GVariant) props = g_variant_lookup_value(presence, IFACE_PRESENCE, NULL);
                g_assert_nonnull(props);
                g_assert_true(g_variant_lookup(props, "OnlineCount", "u", NULL));
                g_assert_true(g_variant_lookup(props, "Generation", "t", NULL));
        }
        {
                g_autoptr(GVariant) props = g_variant_lookup_value(events, IFACE_EVENTS, NULL);
                g_assert_nonnull(props);
                g_assert_true(g_variant_lookup(props, "LastSeq", "t", NULL));
                g_assert_true(g_variant_lookup(props, "FirstSeq", "t", NULL));
                g_assert_true(g_variant_lookup(props, "HistoryId", "s", NULL));
        }
}

/* Create, read, lookup */

static void test_create_and_get(Fixture *f, gconstpointer data) {
        g_autoptr(GVariant) r = NULL, user = NULL, by_name = NULL, attrs = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *id = NULL, *tag = NULL;
        const char *s;
        gboolean enabled;
        gint64 created, modified;

        r = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                         g_variant_new_parsed("({'name': <'ann'>, 'display-name': <'Ann Àlvarez'>,"
                                              " 'email': <'ann@example.org'>, 'enabled': <false>,"
                                              " 'attributes': <{'desk': '12', 'badge': 'x7'}>},)"),
                         "(ss)");
        g_variant_get(r, "(ss)", &id, &tag);
        g_assert_cmpuint(strlen(id), ==, 36);
        g_assert_cmpuint(strlen(tag), ==, 36);
        g_assert_cmpstr(id, !=, tag);

        user = get_user(f->c, id, &error);
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(user, "id", "&s", &s));
        g_assert_cmpstr(s, ==, id);
        g_assert_true(g_variant_lookup(user, "tag", "&s", &s));
        g_assert_cmpstr(s, ==, tag);
        g_assert_true(g_variant_lookup(user, "name", "&s", &s));
        g_assert_cmpstr(s, ==, "ann");
        g_assert_true(g_variant_lookup(user, "display-name", "&s", &s));
        g_assert_cmpstr(s, ==, "Ann Àlvarez");
        g_assert_true(g_variant_lookup(user, "email", "&s", &s));
        g_assert_cmpstr(s, ==, "ann@example.org");
        g_assert_true(g_variant_lookup(user, "enabled", "b", &enabled));
        g_assert_false(enabled);
        g_assert_true(g_variant_lookup(user, "attributes", "@a{ss}", &attrs));
        g_assert_cmpuint(g_variant_n_children(attrs), ==, 2);
        g_assert_true(g_variant_lookup(attrs, "desk", "&s", &s));
        g_assert_cmpstr(s, ==, "12");
        g_assert_true(g_variant_lookup(user, "created", "x", &created));
        g_assert_true(g_variant_lookup(user, "modified", "x", &modified));
        g_assert_cmpint(created, ==, modified);
        g_assert_cmpint(created, >, 1600000000LL * G_USEC_PER_SEC);

        r = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser", g_variant_new("(s)", "ann"), "(a{sv})");
        by_name = g_variant_get_child_value(r, 0);
        g_assert_true(g_variant_equal(user, by_name));
}

static void test_create_defaults(Fixture *f, gconstpointer data) {
        g_autofree char *id = test_create_user(f->c, "bob", NULL);
        g_autoptr(GVariant) user = get_user(f->c, id, NULL);
        g_autoptr(GVariant) attrs = NULL;
        gboolean enabled;
        const char *s;

        g_assert_true(g_variant_lookup(user, "enabled", "b", &enabled));
        g_assert_true(enabled);
        g_assert_true(g_variant_lookup(user, "display-name", "&s", &s));
        g_assert_cmpstr(s, ==, "");
        g_assert_true(g_variant_lookup(user, "email", "&s", &s));
        g_assert_cmpstr(s, ==, "");
        g_assert_true(g_variant_lookup(user, "attributes", "@a{ss}", &attrs));
        g_assert_cmpuint(g_variant_n_children(attrs), ==, 0);
}

static void test_create_already_exists(Fixture *f, gconstpointer data) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        g_autofree char *id = test_create_user(f->c, "carol", NULL);

        r = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                      g_variant_new_parsed("({'name': <'carol'>},)"), "(ss)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "AlreadyExists", "'carol'");
}

static void test_not_found(Fixture *f, gconstpointer data) {
        g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL, e5 = NULL;
        g_autoptr(GVariant) r1 = NULL, r2 = NULL, r3 = NULL, r4 = NULL, r5 = NULL;

        r1 = get_user(f->c, UNKNOWN_ID, &e1);
        test_assert_dbus_error(e1, "NotFound", UNKNOWN_ID);
        r2 = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser", g_variant_new("(s)", "nobody"), NULL, &e2);
        test_assert_dbus_error(e2, "NotFound", "'nobody'");
        r3 = save_user(f->c, UNKNOWN_ID, UNKNOWN_ID, g_variant_new_parsed("@a{sv} {}"), &e3);
        test_assert_dbus_error(e3, "NotFound", UNKNOWN_ID);
        r4 = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser",
                       g_variant_new("(ss)", UNKNOWN_ID, UNKNOWN_ID), NULL, &e4);
        test_assert_dbus_error(e4, "NotFound", UNKNOWN_ID);
        /* Malformed ids are bad arguments, not missing users. */
        r5 = get_user(f->c, "not-a-uuid", &e5);
        test_assert_dbus_error(e5, "InvalidArgument", "'not-a-uuid'");
}

/* Validation: every bad input is refused with InvalidArgument naming the
 * key, and nothing is written. */

typedef struct BadFields {
        const char *fields;     /* GVariant text of the a{sv} */
        const char *mention;
} BadFields;

static const BadFields bad_creates[] = {
        { "@a{sv} {}",                                                   "'name' is required" },
        { "{'name': <'Ann'>}",                                           "'name'" },
        { "{'name': <'1ann'>}",                                          "'name'" },
        { "{'name': <''>}",                                              "'name'" },
        { "{'name': <'a b'>}",                                           "'name'" },
        { "{'name': <'ann'>, 'nickname': <'x'>}",                        "Unknown user key 'nickname'" },
        { "{'name': <'ann'>, 'id': <'x'>}",                              "'id' is read-only" },
        { "{'name': <'ann'>, 'tag': <'x'>}",                             "'tag' is read-only" },
        { "{'name': <'ann'>, 'created': <int64 5>}",                     "'created' is read-only" },
        { "{'name': <'ann'>, 'modified': <int64 5>}",                    "'modified' is read-only" },
        { "{'name': <'ann'>, 'enabled': <'yes'>}",                       "'enabled' must be of type 'b'" },
        { "{'name': <42>}",                                              "'name' must be of type 's'" },
        { "{'name': <'ann'>, 'attributes': <{'a': <'b'>}>}",             "'attributes' must be of type 'a{ss}'" },
        { "{'name': <'ann'>, 'display-name': <'tab\\there'>}",           "control character" },
        { "{'name': <'ann'>, 'email': <'no-at-sign'>}",                  "'email'" },
        { "{'name': <'ann'>, 'email': <'two@@example.org'>}",            "'email'" },
        { "{'name': <'ann'>, 'attributes': <{'': 'x'}>}",                "attribute key" },
};

static void test_create_invalid(Fixture *f, gconstpointer data) {
        g_autoptr(GVariant) list = NULL;
        g_autoptr(GVariant) users = NULL;

        for (size_t i = 0; i < G_N_ELEMENTS(bad_creates); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) fields = g_variant_ref_sink(g_variant_new_parsed(bad_creates[i].fields));
                g_autoptr(GVariant) r = NULL;

                g_test_message("bad create %zu: %s", i, bad_creates[i].fields);
                r = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                              g_variant_new("(@a{sv})", fields), "(ss)", &error);
                g_assert_null(r);
                test_assert_dbus_error(error, "InvalidArgument", bad_creates[i].mention);
        }
        list = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 10), "(aa{sv}s)");
        users = g_variant_get_child_value(list, 0);
        g_assert_cmpuint(g_variant_n_children(users), ==, 0);
}

static char *repeat(char c, size_t n) {
        char *s = g_malloc(n + 1);
        memset(s, c, n);
        s[n] = 0;
        return s;
}

static void assert_create_fails(Fixture *f, GVariant *fields, const char *error_name, const char *mention) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                                          g_variant_new("(@a{sv})", fields), "(ss)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, error_name, mention);
}

static void test_limits(Fixture *f, gconstpointer data) {
        g_autofree char *b63 = repeat('b', 63), *b64 = repeat('b', 64);
        g_autofree char *name64 = g_strconcat("a", b63, NULL), *name65 = g_strconcat("a", b64, NULL);
        g_autofree char *dn256 = repeat('x', 256), *dn257 = repeat('x', 257);
        g_autofree char *m240 = repeat('m', 240), *m243 = repeat('m', 243);
        g_autofree char *mail252 = g_strconcat(m240, "@example.org", NULL);
        g_autofree char *mail255 = g_strconcat(m243, "@example.org", NULL);
        g_autofree char *key64 = repeat('k', 64), *key65 = repeat('k', 65);
        g_autofree char *val4096 = repeat('v', 4096), *val4097 = repeat('v', 4097);
        GVariantBuilder attrs;

        g_free(test_create_user(f->c, name64, NULL));
        assert_create_fails(f, g_variant_new_parsed("{'name': <%s>}", name65), "InvalidArgument", "'name'");

        /* Every field at its longest is accepted. */
        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                                     g_variant_new_parsed("({'name': <'dn'>, 'display-name': <%s>, 'email': <%s>,"
                                                          " 'attributes': <{%s: %s}>},)",
                                                          dn256, mail252, key64, val4096),
                                     "(ss)"));
        assert_create_fails(f, g_variant_new_parsed("{'name': <'dn2'>, 'display-name': <%s>}", dn257),
                            "InvalidArgument", "256");
        assert_create_fails(f, g_variant_new_parsed("{'name': <'dn3'>, 'email': <%s>}", mail255),
                            "InvalidArgument", "254");
        assert_create_fails(f, g_variant_new_parsed("{'name': <'dn4'>, 'attributes': <{%s: 'v'}>}", key65),
                            "InvalidArgument", "attribute key");
        assert_create_fails(f, g_variant_new_parsed("{'name': <'dn5'>, 'attributes': <{'k': %s}>}", val4097),
                            "InvalidArgument", "4096");

        /* 64 attributes are fine, 65 are not. */
        g_variant_builder_init(&attrs, G_VARIANT_TYPE("a{ss}"));
        for (int i = 0; i < 65; i++) {
                g_autofree char *k = g_strdup_printf("k%02d", i);
                g_variant_builder_add(&attrs, "{ss}", k, "v");
        }
        assert_create_fails(f, g_variant_new_parsed("{'name': <'dn6'>, 'attributes': <%@a{ss}>}",
                                                    g_variant_builder_end(&attrs)),
                            "InvalidArgument", "65 entries");
}

/* Save and delete */

static void test_save(Fixture *f, gconstpointer data) {
        g_autofree char *tag = NULL, *new_tag = NULL;
        g_autofree char *id = test_create_user(f->c, "dave", &tag);
        g_autoptr(GVariant) r = NULL, user = NULL, attrs = NULL;
        const char *s;
        gint64 created, modified;

        r = save_user(f->c, id, tag, g_variant_new_parsed("{'display-name': <'Dave'>, 'attributes': <{'desk': '3'}>}"),
                      NULL);
        g_assert_nonnull(r);
        g_variant_get(r, "(s)", &new_tag);
        g_assert_cmpstr(new_tag, !=, tag);

        user = get_user(f->c, id, NULL);
        g_assert_true(g_variant_lookup(user, "tag", "&s", &s));
        g_assert_cmpstr(s, ==, new_tag);
        g_assert_true(g_variant_lookup(user, "display-name", "&s", &s));
        g_assert_cmpstr(s, ==, "Dave");
        /* Only the given keys change. */
        g_assert_true(g_variant_lookup(user, "name", "&s", &s));
        g_assert_cmpstr(s, ==, "dave");
        g_assert_true(g_variant_lookup(user, "attributes", "@a{ss}", &attrs));
        g_assert_cmpuint(g_variant_n_children(attrs), ==, 1);
        g_assert_true(g_variant_lookup(user, "created", "x", &created));
        g_assert_true(g_variant_lookup(user, "modified", "x", &modified));
        g_assert_cmpint(modified, >=, created);
}

static void test_save_conflict(Fixture *f, gconstpointer data) {
        g_autofree char *tag = NULL, *current = NULL;
        g_autofree char *id = test_create_user(f->c, "erin", &tag);
        g_autoptr(GVariant) r1 = NULL, r2 = NULL, r3 = NULL, user = NULL;
        g_autoptr(GError) error = NULL, derror = NULL;

        r1 = save_user(f->c, id, tag, g_variant_new_parsed("{'email': <'erin@example.org'>}"), NULL);
        g_assert_nonnull(r1);
        g_variant_get(r1, "(s)", &current);

        /* A save from the outdated copy fails and names the current tag. */
        r2 = save_user(f->c, id, tag, g_variant_new_parsed("{'email': <'old@example.org'>}"), &error);
        g_assert_null(r2);
        test_assert_dbus_error(error, "SaveConflict", current);
        g_assert_nonnull(strstr(error->message, tag));

        r3 = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser", g_variant_new("(ss)", id, tag), NULL, &derror);
        g_assert_null(r3);
        test_assert_dbus_error(derror, "SaveConflict", current);

        user = get_user(f->c, id, NULL);
        {
                g_autofree char *email = lookup_string(user, "email");
                g_assert_cmpstr(email, ==, "erin@example.org");
        }
}

typedef struct Race {
        int done, won, conflicts;
} Race;

static void on_race_reply(GObject *source, GAsyncResult *res, gpointer data) {
        Race *race = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);

        if (r)
                race->won++;
        else {
                test_assert_dbus_error(error, "SaveConflict", NULL);
                race->conflicts++;
        }
        race->done++;
}

static void test_save_race(Fixture *f, gconstpointer data) {
        g_autoptr(GDBusConnection) a = test_bus_connect(f->tb), b = test_bus_connect(f->tb);
        g_autofree char *tag = NULL;
        g_autofree char *id = test_create_user(f->c, "frank", &tag);

        /* Two clients save from the same tag at once, many times over:
         * each round exactly one wins. */
        for (int round = 0; round < 50; round++) {
                Race race = {};
                g_autoptr(GVariant) user = NULL;

                g_dbus_connection_call(a, OUTPOST_NAME, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                                       g_variant_new_parsed("(%s, %s, {'display-name': <'from a'>})", id, tag),
                                       G_VARIANT_TYPE("(s)"), 0, -1, NULL, on_race_reply, &race);
                g_dbus_connection_call(b, OUTPOST_NAME, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                                       g_variant_new_parsed("(%s, %s, {'display-name': <'from b'>})", id, tag),
                                       G_VARIANT_TYPE("(s)"), 0, -1, NULL, on_race_reply, &race);
                test_wait_until(race.done == 2, 10000);
                g_assert_cmpint(race.won, ==, 1);
                g_assert_cmpint(race.conflicts, ==, 1);

                user = get_user(f->c, id, NULL);
                g_free(tag);
                tag = lookup_string(user, "tag");
        }
}

static gboolean is_answer_to(GDBusMessage *m, gconstpointer serial) {
        GDBusMessageType type = g_dbus_message_get_message_type(m);

        return (type == G_DBUS_MESSAGE_TYPE_METHOD_RETURN || type == G_DBUS_MESSAGE_TYPE_ERROR) &&
               g_dbus_message_get_reply_serial(m) == GPOINTER_TO_UINT(serial);
}

static guint32 send_save(GDBusConnection *c, const char *id, const char *tag, const char *display_name) {
        g_autoptr(GDBusMessage) call = g_dbus_message_new_method_call(OUTPOST_NAME, OUTPOST_USERS_PATH,
                                                                      IFACE_USERS, "SaveUser");
        g_autoptr(GError) error = NULL;
        guint32 serial = 0;

        g_dbus_message_set_body(call, g_variant_new_parsed("(%s, %s, {'display-name': <%s>})", id, tag, display_name));
        g_assert_true(g_dbus_connection_send_message(c, call, G_DBUS_SEND_MESSAGE_FLAGS_NONE, &serial, &error));
        g_assert_no_error(error);
        return serial;
}

/* Two saves from the same tag sent at once, so that they meet in one group
 * commit: the second's SaveConflict names the tag the first made, so it
 * must not arrive before the first's reply (which comes once that tag is
 * durable). */
static void test_conflict_after_batched_save(Fixture *f, gconstpointer data) {
        g_autoptr(GDBusConnection) c = test_bus_connect(f->tb);
        Arrivals *a = arrivals_new(c);

        for (int round = 0; round < 50; round++) {
                g_autofree char *name = g_strdup_printf("pair%d", round), *tag = NULL;
                g_autofree char *id = test_create_user(c, name, &tag);
                guint32 first = send_save(c, id, tag, "one"), second = send_save(c, id, tag, "two");
                int reply_at, error_at;
                const char *new_tag, *message;
                GDBusMessage *reply, *conflict;
                g_autoptr(GPtrArray) arrived = NULL;

                test_wait_until((error_at = arrivals_find(a, 0, is_answer_to, GUINT_TO_POINTER(second))) >= 0, 10000);
                reply_at = arrivals_find(a, 0, is_answer_to, GUINT_TO_POINTER(first));
                g_assert_cmpint(reply_at, >=, 0);
                g_assert_cmpint(reply_at, <, error_at);

                arrived = arrivals_snapshot(a);
                reply = arrived->pdata[reply_at];
                conflict = arrived->pdata[error_at];
                g_assert_cmpint(g_dbus_message_get_message_type(reply), ==, G_DBUS_MESSAGE_TYPE_METHOD_RETURN);
                g_assert_cmpstr(g_dbus_message_get_error_name(conflict), ==, ERROR_PREFIX "SaveConflict");
                g_variant_get(g_dbus_message_get_body(reply), "(&s)", &new_tag);
                g_variant_get(g_dbus_message_get_body(conflict), "(&s)", &message);
                g_assert_nonnull(strstr(message, new_tag));
        }
        g_dbus_connection_close_sync(c, NULL, NULL);
        arrivals_free(a);
}

/* Names shown to people: no bidirectional controls, no zero-width or
 * other invisible format characters, which make one name look like
 * another ("Ann\u202Egpj.exe"). Scripts of every direction are fine. */
static void test_invisible_chars(Fixture *f, gconstpointer data) {
        static const gunichar refused[] = {
                0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x061C,
                0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064,
                0xFEFF, 0x00AD, 0x2028, 0x2029, 0xE0001,
        };
        static const char *const accepted[] = { "Zoë Àlvarez", "日本 太郎", "مريم", "דוד", "Ann 👍" };
        g_autofree char *tag = NULL;
        g_autofree char *id = test_create_user(f->c, "hana", &tag);
        g_autoptr(GVariant) before = get_user(f->c, id, NULL);
        g_autoptr(GVariant) after = NULL;

        for (size_t i = 0; i < G_N_ELEMENTS(refused); i++) {
                char c[8] = {};
                g_autofree char *name = NULL, *email = NULL, *cp = g_strdup_printf("U+%04X", (unsigned) refused[i]);
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) r = NULL;

                g_unichar_to_utf8(refused[i], c);
                name = g_strconcat("Ann", c, "x", NULL);
                email = g_strconcat("ann", c, "@example.org", NULL);
                assert_create_fails(f, g_variant_new_parsed("{'name': <'ann'>, 'display-name': <%s>}", name),
                                    "InvalidArgument", cp);
                assert_create_fails(f, g_variant_new_parsed("{'name': <'ann'>, 'display-name': <%s>}", name),
                                    "InvalidArgument", "'display-name'");
                assert_create_fails(f, g_variant_new_parsed("{'name': <'ann'>, 'email': <%s>}", email),
                                    "InvalidArgument", cp);
                r = save_user(f->c, id, tag, g_variant_new_parsed("{'display-name': <%s>}", name), &error);
                g_assert_null(r);
                test_assert_dbus_error(error, "InvalidArgument", cp);
        }
        after = get_user(f->c, id, NULL);
        g_assert_true(g_variant_equal(before, after));

        for (size_t i = 0; i < G_N_ELEMENTS(accepted); i++) {
                g_autoptr(GVariant) r = save_user(f->c, id, tag, g_variant_new_parsed("{'display-name': <%s>}",
                                                                                       accepted[i]), NULL);
                g_autoptr(GVariant) user = get_user(f->c, id, NULL);
                g_autofree char *got = lookup_string(user, "display-name");

                g_assert_nonnull(r);
                g_free(tag);
                g_variant_get(r, "(s)", &tag);
                g_assert_cmpstr(got, ==, accepted[i]);
        }
}

static void test_save_invalid(Fixture *f, gconstpointer data) {
        static const BadFields bad_saves[] = {
                { "{'name': <'Bad Name'>}",             "'name'" },
                { "{'id': <'x'>}",                      "'id' is read-only" },
                { "{'tag': <'x'>}",                     "'tag' is read-only" },
                { "{'enabled': <1>}",                   "'enabled' must be of type 'b'" },
                { "{'colour': <'red'>}",                "Unknown user key 'colour'" },
                { "{'display-name': <'ok'>, 'email': <'bad'>}", "'email'" },
        };
        g_autofree char *tag = NULL;
        g_autofree char *id = test_create_user(f->c, "gina", &tag);
        g_autoptr(GVariant) before = get_user(f->c, id, NULL);
        g_autoptr(GVariant) after = NULL;

        for (size_t i = 0; i < G_N_ELEMENTS(bad_saves); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) r = save_user(f->c, id, tag, g_variant_new_parsed(bad_saves[i].fields), &error);

                g_assert_null(r);
                test_assert_dbus_error(error, "InvalidArgument", bad_saves[i].mention);
        }
        /* Nothing written: not even the display-name of the last one. */
        after = get_user(f->c, id, NULL);
        g_assert_true(g_variant_equal(before, after));
}

static void test_save_rename_taken(Fixture *f, gconstpointer data) {
        g_autofree char *tag = NULL;
        g_autofree char *id = test_create_user(f->c, "hank", &tag);
        g_autofree char *other = test_create_user(f->c, "ivan", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = save_user(f->c, id, tag, g_variant_new_parsed("{'name': <'ivan'>}"), &error);

        g_assert_null(r);
        test_assert_dbus_error(error, "AlreadyExists", "'ivan'");
}

static void test_delete(Fixture *f, gconstpointer data) {
        g_autofree char *tag = NULL;
        g_autofree char *id = test_create_user(f->c, "judy", &tag);
        g_autoptr(GVariant) r = NULL, gone = NULL;
        g_autoptr(GError) error = NULL;

        r = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser", g_variant_new("(ss)", id, tag), "()");
        gone = get_user(f->c, id, &error);
        g_assert_null(gone);
        test_assert_dbus_error(error, "NotFound", id);
        /* The name is free again. */
        g_free(test_create_user(f->c, "judy", NULL));
}

/* Listing */

static void test_list_paging(Fixture *f, gconstpointer data) {
        g_autofree char *cursor = g_strdup("");
        g_autofree char *previous = g_strdup("");
        guint total = 0, pages = 0;

        /* Created out of order; listed by name. */
        for (int i = 24; i >= 0; i--) {
                g_autofree char *name = g_strdup_printf("user%02d", i);
                g_free(test_create_user(f->c, name, NULL));
        }
        do {
                g_autoptr(GVariant) r = NULL, users = NULL;
                g_autofree char *next = NULL;

                r = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", cursor, 10),
                                 "(aa{sv}s)");
                g_variant_get(r, "(@aa{sv}s)", &users, &next);
                g_assert_cmpuint(g_variant_n_children(users), <=, 10);
                for (gsize i = 0; i < g_variant_n_children(users); i++) {
                        g_autoptr(GVariant) u = g_variant_get_child_value(users, i);
                        g_autofree char *name = lookup_string(u, "name");
                        g_assert_cmpstr(name, >, previous);
                        g_free(previous);
                        previous = g_steal_pointer(&name);
                        total++;
                }
                g_free(cursor);
                cursor = g_steal_pointer(&next);
                pages++;
        } while (cursor[0]);
        g_assert_cmpuint(total, ==, 25);
        g_assert_cmpuint(pages, ==, 3);
        g_assert_cmpstr(previous, ==, "user24");
}

static void test_list_invalid(Fixture *f, gconstpointer data) {
        const struct { const char *cursor; guint32 limit; const char *mention; } cases[] = {
                { "", 0, "limit 0" },
                { "", 1001, "limit 1001" },
                { "Not A Name", 10, "cursor" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) r = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers",
                                                  g_variant_new("(su)", cases[i].cursor, cases[i].limit), NULL, &error);
                g_assert_null(r);
                test_assert_dbus_error(error, "InvalidArgument", cases[i].mention);
        }
        /* The extremes are accepted. */
        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 1), NULL));
        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 1000), NULL));
}

/* Durability */

static char *registry_string(GDBusConnection *c, const char *name) {
        g_autoptr(GVariant) r = NULL, v = NULL;

        r = test_call_ok(c, OUTPOST_ROOT, "org.freedesktop.DBus.Properties", "Get",
                         g_variant_new("(ss)", IFACE_REGISTRY, name), "(v)");
        g_variant_get(r, "(v)", &v);
        return g_variant_dup_string(v, NULL);
}

static void test_survives_restart(Fixture *f, gconstpointer data) {
        g_autofree char *tag = NULL, *saved_tag = NULL, *server_id = NULL;
        g_autofree char *id = test_create_user(f->c, "kate", &tag);
        g_autoptr(GVariant) r = NULL, user = NULL, sid1 = NULL, sid2 = NULL;
        g_autofree char *instance1 = registry_string(f->c, "InstanceId"), *instance2 = NULL;

        sid1 = test_call_ok(f->c, OUTPOST_ROOT, "org.freedesktop.DBus.Properties", "Get",
                            g_variant_new("(ss)", IFACE_REGISTRY, "ServerId"), "(v)");
        r = save_user(f->c, id, tag, g_variant_new_parsed("{'display-name': <'Kate'>}"), NULL);
        g_variant_get(r, "(s)", &saved_tag);

        test_bus_stop_daemon(f->tb, SIGTERM);
        test_bus_start_daemon(f->tb, NULL);

        user = get_user(f->c, id, NULL);
        g_assert_nonnull(user);
        {
                g_autofree char *t = lookup_string(user, "tag");
                g_autofree char *dn = lookup_string(user, "display-name");
                g_assert_cmpstr(t, ==, saved_tag);
                g_assert_cmpstr(dn, ==, "Kate");
        }
        /* The server id is stored, not made up at each start. */
        sid2 = test_call_ok(f->c, OUTPOST_ROOT, "org.freedesktop.DBus.Properties", "Get",
                            g_variant_new("(ss)", IFACE_REGISTRY, "ServerId"), "(v)");
        g_assert_true(g_variant_equal(sid1, sid2));
        /* The instance is new at each start, and seen as such through
         * bridges too. */
        instance2 = registry_string(f->c, "InstanceId");
        g_assert_true(g_uuid_string_is_valid(instance1));
        g_assert_true(g_uuid_string_is_valid(instance2));
        g_assert_cmpstr(instance1, !=, instance2);
}

static void test_survives_kill(Fixture *f, gconstpointer data) {
        g_autofree char *tag = NULL;
        g_autofree char *id = test_create_user(f->c, "liam", &tag);

        /* Each acknowledged save is in the store even when the daemon is
         * killed the instant the reply has arrived. */
        for (int i = 0; i < 5; i++) {
                g_autofree char *dn = g_strdup_printf("Liam %d", i);
                g_autoptr(GVariant) r = save_user(f->c, id, tag, g_variant_new_parsed("{'display-name': <%s>}", dn), NULL);
                g_autoptr(GVariant) user = NULL;

                g_assert_nonnull(r);
                g_free(tag);
                g_variant_get(r, "(s)", &tag);
                test_bus_stop_daemon(f->tb, SIGKILL);
                test_bus_start_daemon(f->tb, NULL);

                user = get_user(f->c, id, NULL);
                g_autofree char *t = lookup_string(user, "tag");
                g_autofree char *got = lookup_string(user, "display-name");
                g_assert_cmpstr(t, ==, tag);
                g_assert_cmpstr(got, ==, dn);
        }
}

static void test_keeps_serving_after_bad_input(Fixture *f, gconstpointer data) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;

        /* A call with the wrong signature is refused by the bus library. */
        r = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(u)", 5), NULL, &error);
        g_assert_null(r);
        g_assert_true(g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS));
        g_clear_error(&error);
        r = test_call(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "NoSuchMethod", NULL, NULL, &error);
        g_assert_true(g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD));
        g_free(test_create_user(f->c, "still_here", NULL));
}

#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

int main(int argc, char **argv) {
        test_init(&argc, &argv);
        ADD("/registry/list-and-get", test_registry);
        ADD("/registry/managed-objects", test_managed_objects);
        ADD("/users/create-and-get", test_create_and_get);
        ADD("/users/create-defaults", test_create_defaults);
        ADD("/users/create-already-exists", test_create_already_exists);
        ADD("/users/not-found", test_not_found);
        ADD("/users/create-invalid", test_create_invalid);
        ADD("/users/limits", test_limits);
        ADD("/users/save", test_save);
        ADD("/users/save-conflict", test_save_conflict);
        ADD("/users/save-race", test_save_race);
        ADD("/users/conflict-after-batched-save", test_conflict_after_batched_save);
        ADD("/users/save-invalid", test_save_invalid);
        ADD("/users/invisible-chars", test_invisible_chars);
        ADD("/users/save-rename-taken", test_save_rename_taken);
        ADD("/users/delete", test_delete);
        ADD("/users/list-paging", test_list_paging);
        ADD("/users/list-invalid", test_list_invalid);
        ADD("/users/survives-restart", test_survives_restart);
        ADD("/users/survives-kill", test_survives_kill);
        ADD("/users/keeps-serving", test_keeps_serving_after_bad_input);
        return g_test_run();
}
