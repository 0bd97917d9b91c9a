/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authorization: every change method asks polkit (the dbusmock polkitd
 * template on the test bus) for its action when the caller is not root;
 * reads stay open; a refusal changes nothing; the bus policy lets only root
 * and the bridge's account own the name (issue 6). Calls from another user
 * run in a child process as nobody (test_call_as), so these tests need
 * root and are skipped without it. */
#include "config.h"

#include <pwd.h>
#include <signal.h>
#include <string.h>

#include "harness.h"

#define ACTION_MANAGE_USERS   "org.outpost.Outpost1.manage-users"
#define ACTION_SET_PRESENCE   "org.outpost.Outpost1.set-presence"
#define ACTION_SEND_MESSAGES  "org.outpost.Outpost1.send-messages"
#define ACTION_PUBLISH_EVENTS "org.outpost.Outpost1.publish-events"
#define ACTION_MANAGE_BRIDGE  "org.outpost.Outpost1.manage-bridge"
#define ACTION_READ_MESSAGES  "org.outpost.Outpost1.read-messages"
#define ACTION_RELAY_FOR_PEERS "org.outpost.Outpost1.relay-for-peers"

static const char *const all_actions[] = {
        ACTION_MANAGE_USERS, ACTION_SET_PRESENCE, ACTION_SEND_MESSAGES, ACTION_PUBLISH_EVENTS, ACTION_MANAGE_BRIDGE,
        ACTION_READ_MESSAGES, ACTION_RELAY_FOR_PEERS,
};

typedef struct Fixture {
        TestBus *tb;
        GDBusConnection *c;
        gboolean ready;         /* FALSE: the test was skipped in setup */
        char *user_id;          /* "ann", made by root */
        char *user_tag;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data) {
        f->tb = test_bus_new();
        f->c = f->tb->conn;
        test_bus_start_daemon(f->tb, NULL);
        if (!test_can_switch_user() || !test_bus_start_polkit(f->tb))
                return;
        f->user_id = test_create_user(f->c, "ann", &f->user_tag);
        f->ready = TRUE;
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        g_free(f->user_id);
        g_free(f->user_tag);
        test_bus_free(f->tb);
}

static GVariant *call_as_nobody(Fixture *f, GDBusCallFlags flags, const char *path, const char *iface,
                                const char *method, GVariant *params, const char *reply_type, GError **error) {
        return test_call_as(f->tb, TEST_UID_NOBODY, TEST_GID_NOGROUP, flags, NULL, path, iface, method, params,
                            reply_type, error);
}

/* The change methods of outpostd, each with valid arguments. */

typedef struct Change {
        const char *method;
        const char *action;
        const char *path;
        const char *iface;
        const char *reply_type;
        GVariant *(*params)(Fixture *f);
        gboolean changes_state; /* when allowed (GoOffline without a hold changes nothing) */
} Change;

static GVariant *create_user_params(Fixture *f) {
        return g_variant_new_parsed("({'name': <'bob'>},)");
}

static GVariant *save_user_params(Fixture *f) {
        return g_variant_new_parsed("(%s, %s, {'display-name': <'Ann A.'>})", f->user_id, f->user_tag);
}

static GVariant *delete_user_params(Fixture *f) {
        return g_variant_new("(ss)", f->user_id, f->user_tag);
}

static GVariant *go_online_params(Fixture *f) {
        return g_variant_new("(su)", f->user_id, 0);
}

static GVariant *go_offline_params(Fixture *f) {
        return g_variant_new("(s)", f->user_id);
}

static GVariant *send_params(Fixture *f) {
        const char *to[] = { f->user_id, NULL };
        return g_variant_new("(^ass)", to, "hello");
}

static GVariant *send_with_options_params(Fixture *f) {
        const char *to[] = { f->user_id, NULL };
        return g_variant_new_parsed("(%^as, 'hello', {'request-id': <'polkit-1'>})", to);
}

static GVariant *publish_params(Fixture *f) {
        return g_variant_new_parsed("('site.door', {'open': <true>})");
}

static const Change changes[] = {
        { "CreateUser", ACTION_MANAGE_USERS,   OUTPOST_USERS_PATH,    IFACE_USERS,    "(ss)", create_user_params, TRUE },
        { "SaveUser",   ACTION_MANAGE_USERS,   OUTPOST_USERS_PATH,    IFACE_USERS,    "(s)",  save_user_params,   TRUE },
        { "DeleteUser", ACTION_MANAGE_USERS,   OUTPOST_USERS_PATH,    IFACE_USERS,    "()",   delete_user_params, TRUE },
        { "GoOnline",   ACTION_SET_PRESENCE,   OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "(t)",  go_online_params,   TRUE },
        { "GoOffline",  ACTION_SET_PRESENCE,   OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "(t)",  go_offline_params,  FALSE },
        { "Send",       ACTION_SEND_MESSAGES,  OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "(st)", send_params,        TRUE },
        { "SendWithOptions", ACTION_SEND_MESSAGES, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "(st)",
          send_with_options_params, TRUE },
        { "Publish",    ACTION_PUBLISH_EVENTS, OUTPOST_EVENTS_PATH,   IFACE_EVENTS,   "(t)",  publish_params,     TRUE },
};

static GVariant *call_change_as_nobody(Fixture *f, const Change *ch, GDBusCallFlags flags, GError **error) {
        return call_as_nobody(f, flags, ch->path, ch->iface, ch->method, ch->params(f), ch->reply_type, error);
}

/* Nothing allowed, then everything but the method's own action: denied
 * each time, naming the action, with nothing changed. */
static void test_denied(Fixture *f, gconstpointer data) {
        const Change *ch = data;
        g_autofree char *before = NULL, *after = NULL;
        g_autoptr(GPtrArray) others = g_ptr_array_new();

        if (!f->ready)
                return;
        before = test_state_snapshot(f->c);

        for (int round = 0; round < 2; round++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) r = NULL;

                r = call_change_as_nobody(f, ch, G_DBUS_CALL_FLAGS_NONE, &error);
                g_assert_null(r);
                test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", ch->action);
                g_assert_nonnull(strstr(error->message, ch->method));

                for (size_t i = 0; i < G_N_ELEMENTS(all_actions); i++)
                        if (strcmp(all_actions[i], ch->action) != 0)
                                g_ptr_array_add(others, (gpointer) all_actions[i]);
                g_ptr_array_add(others, NULL);
                test_polkit_set_allowed(f->tb, (const char *const *) others->pdata);
        }

        after = test_state_snapshot(f->c);
        g_assert_cmpstr(after, ==, before);
}

/* A call without an interface changes nothing for a caller without the
 * action: sd-bus does not dispatch it to outpostd's methods at all
 * (UnknownObject), and a bridge authorizes it as the method of its name
 * (bus_change_method_of). Either way outpostd keeps serving. */
static void test_denied_without_interface(Fixture *f, gconstpointer data) {
        const Change *ch = data;
        g_autofree char *before = NULL, *after = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;

        if (!f->ready)
                return;
        before = test_state_snapshot(f->c);
        r = call_as_nobody(f, G_DBUS_CALL_FLAGS_NONE, ch->path, "", ch->method, ch->params(f), ch->reply_type, &error);
        g_assert_null(r);
        g_assert_nonnull(error);
        after = test_state_snapshot(f->c);
        g_assert_cmpstr(after, ==, before);
}

static void test_allowed(Fixture *f, gconstpointer data) {
        const Change *ch = data;
        const char *const allowed[] = { ch->action, NULL };
        g_autofree char *before = NULL, *after = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;

        if (!f->ready)
                return;
        test_polkit_set_allowed(f->tb, allowed);
        before = test_state_snapshot(f->c);
        r = call_change_as_nobody(f, ch, G_DBUS_CALL_FLAGS_NONE, &error);
        g_assert_no_error(error);
        g_assert_nonnull(r);
        after = test_state_snapshot(f->c);
        if (ch->changes_state)
                g_assert_cmpstr(after, !=, before);
}

/* Root needs no polkit: all changes work with the mock denying all, and
 * with no polkit at all. */
static void test_root_bypass(Fixture *f, gconstpointer data) {
        if (!f->ready)
                return;
        for (int round = 0; round < 2; round++) {
                g_autofree char *name = g_strdup_printf("root%d", round);
                g_autofree char *tag = NULL, *id = test_create_user(f->c, name, &tag);
                g_autoptr(GVariant) saved = NULL;
                const char *to[] = { id, NULL };
                const char *new_tag;

                saved = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                                     g_variant_new_parsed("(%s, %s, {'email': <'r@example.org'>})", id, tag), "(s)");
                g_variant_get(saved, "(&s)", &new_tag);
                g_variant_unref(test_call_ok(f->c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                             g_variant_new("(su)", id, 0), "(t)"));
                g_variant_unref(test_call_ok(f->c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOffline",
                                             g_variant_new("(s)", id), "(t)"));
                g_variant_unref(test_call_ok(f->c, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                                             g_variant_new("(^ass)", to, "hi"), "(st)"));
                g_variant_unref(test_call_ok(f->c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                             g_variant_new_parsed("('root.test', @a{sv} {})"), "(t)"));
                g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "DeleteUser",
                                             g_variant_new("(ss)", id, new_tag), "()"));
                test_bus_stop_polkit(f->tb);
        }
}

/* Naming the bridge peers a message came through is for the bridges
 * alone: send-messages is not enough, relay-for-peers is asked in its
 * place, and the refusal names it and sends nothing. */
static void test_relay_for_peers(Fixture *f, gconstpointer data) {
        const char *to[] = { NULL, NULL };
        g_autoptr(GVariant) r = NULL, sent = NULL, fetched = NULL, events = NULL, event = NULL, event_data = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree const char **peers = NULL;
        GVariant *relayed;
        guint64 before;

        if (!f->ready)
                return;
        to[0] = f->user_id;
        test_polkit_set_allowed(f->tb, (const char *[]) { ACTION_SEND_MESSAGES, NULL });
        before = test_last_seq(f->c);
        relayed = g_variant_ref_sink(g_variant_new_parsed("(%^as, 'hi', {'relayed-by': <['site-1']>})", to));
        r = call_as_nobody(f, G_DBUS_CALL_FLAGS_NONE, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                           relayed, "(st)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", ACTION_RELAY_FOR_PEERS);
        g_assert_cmpuint(test_last_seq(f->c), ==, before);
        g_clear_error(&error);

        /* The bridges' action is enough on its own. */
        test_polkit_set_allowed(f->tb, (const char *[]) { ACTION_RELAY_FOR_PEERS, NULL });
        sent = call_as_nobody(f, G_DBUS_CALL_FLAGS_NONE, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "SendWithOptions",
                              relayed, "(st)", &error);
        g_variant_unref(relayed);
        g_assert_no_error(error);
        fetched = test_call_ok(f->c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                               g_variant_new("(st^asu)", "", before, (const char *[]) { "messages/", NULL }, 10),
                               "(a(tsxa{sv})tb)");
        events = g_variant_get_child_value(fetched, 0);
        g_assert_cmpuint(g_variant_n_children(events), ==, 1);
        event = g_variant_get_child_value(events, 0);
        event_data = g_variant_get_child_value(event, 3);
        g_assert_true(g_variant_lookup(event_data, "sender-peers", "^a&s", &peers));
        g_assert_cmpstrv(peers, ((const char *[]) { "site-1", NULL }));
}

/* Reads are open to every local user, with polkit denying everything. */
static void test_reads_open(Fixture *f, gconstpointer data) {
        static const struct {
                const char *path, *iface, *method, *params, *reply_type;
        } reads[] = {
                { OUTPOST_ROOT, IFACE_REGISTRY, "ListManagers", "()", "(a(sos))" },
                { OUTPOST_ROOT, IFACE_REGISTRY, "GetManager", "('users',)", "(o)" },
                { OUTPOST_ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", "()", "(a{oa{sa{sv}}})" },
                { OUTPOST_ROOT, "org.freedesktop.DBus.Introspectable", "Introspect", "()", "(s)" },
                { OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser", "('ann',)", "(a{sv})" },
                { OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", "('', uint32 10)", "(aa{sv}s)" },
                { OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince", "('', uint64 0, @as [], uint32 10)", "(a(tsxa{sv})tb)" },
                { OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Get", "('" IFACE_EVENTS "', 'LastSeq')", "(v)" },
                { OUTPOST_PRESENCE_PATH, "org.freedesktop.DBus.Properties", "GetAll", "('" IFACE_PRESENCE "',)", "(a{sv})" },
        };

        if (!f->ready)
                return;
        for (size_t i = 0; i < G_N_ELEMENTS(reads); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) r = NULL;

                r = call_as_nobody(f, G_DBUS_CALL_FLAGS_NONE, reads[i].path, reads[i].iface, reads[i].method,
                                   g_variant_new_parsed(reads[i].params), reads[i].reply_type, &error);
                g_assert_no_error(error);
                g_assert_nonnull(r);
        }
        {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) r = call_as_nobody(f, G_DBUS_CALL_FLAGS_NONE, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                                                       g_variant_new("(s)", f->user_id), "(a{sv})", &error);
                g_assert_no_error(error);
        }
}

/* A challenge (authentication would authorize) is InteractiveAuthorizationRequired
 * for a call that does not allow interaction; one that does is passed on
 * to polkit with the flag (the mock then authorizes). */
static void test_interactive(Fixture *f, gconstpointer data) {
        const Change *ch = &changes[0];
        g_autofree char *before = NULL, *after = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;

        if (!f->ready)
                return;
        test_polkit_challenge(f->tb);
        before = test_state_snapshot(f->c);
        r = call_change_as_nobody(f, ch, G_DBUS_CALL_FLAGS_NONE, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", ch->action);
        after = test_state_snapshot(f->c);
        g_assert_cmpstr(after, ==, before);

        r = call_change_as_nobody(f, ch, G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION, NULL);
        g_assert_nonnull(r);
}

/* Without polkit on the bus, nobody but root may change anything. */
static void test_polkit_absent(Fixture *f, gconstpointer data) {
        const char *const all[] = { ACTION_MANAGE_USERS, ACTION_SET_PRESENCE, ACTION_SEND_MESSAGES,
                                    ACTION_PUBLISH_EVENTS, NULL };
        g_autofree char *before = NULL, *after = NULL;

        if (!f->ready)
                return;
        test_polkit_set_allowed(f->tb, all);
        test_bus_stop_polkit(f->tb);
        before = test_state_snapshot(f->c);
        for (size_t i = 0; i < G_N_ELEMENTS(changes); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) r = call_change_as_nobody(f, &changes[i], G_DBUS_CALL_FLAGS_NONE, &error);

                g_assert_null(r);
                test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", changes[i].action);
                g_assert_nonnull(strstr(error->message, "polkit could not be asked"));
        }
        after = test_state_snapshot(f->c);
        g_assert_cmpstr(after, ==, before);
}

/* While polkit thinks about one caller, outpostd serves the others. */
typedef struct Pending {
        Fixture *f;
        GVariant *reply;
        GError *error;
} Pending;

static gpointer pending_call(gpointer data) {
        Pending *p = data;

        p->reply = call_change_as_nobody(p->f, &changes[0], G_DBUS_CALL_FLAGS_NONE, &p->error);
        return NULL;
}

static gboolean mock_has_hanging_calls(TestBus *tb) {
        g_autoptr(GVariant) r = test_polkit_mock(tb, "HaveHangingCalls", NULL);
        gboolean hanging = FALSE;

        g_variant_get(r, "(b)", &hanging);
        return hanging;
}

static void test_not_blocking(Fixture *f, gconstpointer data) {
        const char *const allowed[] = { ACTION_MANAGE_USERS, NULL };
        Pending p = { .f = f };
        GThread *thread;

        if (!f->ready)
                return;
        test_polkit_set_allowed(f->tb, allowed);
        g_variant_unref(test_polkit_mock(f->tb, "SimulateHang", g_variant_new("(b)", TRUE)));
        thread = g_thread_new("pending-call", pending_call, &p);
        test_wait_until(mock_has_hanging_calls(f->tb), 20000);

        /* Root's change and everyone's reads go through meanwhile. */
        g_free(test_create_user(f->c, "carol", NULL));
        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 10),
                                     "(aa{sv}s)"));

        g_variant_unref(test_polkit_mock(f->tb, "ReleaseHangingCalls", NULL));
        g_thread_join(thread);
        g_assert_no_error(p.error);
        g_assert_nonnull(p.reply);
        g_variant_unref(p.reply);
        {
                g_autoptr(GVariant) bob = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser",
                                                       g_variant_new("(s)", "bob"), "(a{sv})");
        }
}

/* Bus policy: a user other than root and the bridge's account cannot own
 * the name. */
static void test_bus_policy_own(Fixture *f, gconstpointer data) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;

        if (!f->ready)
                return;
        r = test_call_as(f->tb, TEST_UID_NOBODY, TEST_GID_NOGROUP, G_DBUS_CALL_FLAGS_NONE, "org.freedesktop.DBus",
                         "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
                         g_variant_new("(su)", OUTPOST_NAME, 0), "(u)", &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "org.freedesktop.DBus.Error.AccessDenied", OUTPOST_NAME);
}

static void test_bus_policy_bridge_account(Fixture *f, gconstpointer data) {
        struct passwd *pw = getpwnam("outpost-bridge");
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        guint32 result = 0;

        if (!f->ready)
                return;
        if (!pw) {
                g_test_skip("No user outpost-bridge on this machine");
                return;
        }
        test_bus_stop_daemon(f->tb, SIGTERM);
        r = test_call_as(f->tb, pw->pw_uid, pw->pw_gid, G_DBUS_CALL_FLAGS_NONE, "org.freedesktop.DBus",
                         "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
                         g_variant_new("(su)", OUTPOST_NAME, 0), "(u)", &error);
        g_assert_no_error(error);
        g_variant_get(r, "(u)", &result);
        g_assert_cmpuint(result, ==, 1);        /* DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER */
}

/* The installed actions: exactly the ones the services ask for, none open
 * to remote or inactive sessions. */
typedef struct PolicyParse {
        GHashTable *actions;    /* id → allow_any value */
        char *current_id;
        const char *element;
} PolicyParse;

static void policy_start(GMarkupParseContext *context, const char *element, const char **names,
                         const char **values, gpointer data, GError **error) {
        PolicyParse *p = data;

        p->element = element;
        if (strcmp(element, "action") == 0) {
                for (size_t i = 0; names[i]; i++)
                        if (strcmp(names[i], "id") == 0) {
                                g_free(p->current_id);
                                p->current_id = g_strdup(values[i]);
                                g_hash_table_insert(p->actions, g_strdup(values[i]), g_strdup("(unset)"));
                        }
        }
}

static void policy_text(GMarkupParseContext *context, const char *text, gsize len, gpointer data, GError **error) {
        PolicyParse *p = data;

        if (p->current_id && p->element && (strcmp(p->element, "allow_any") == 0 || strcmp(p->element, "allow_inactive") == 0)) {
                g_autofree char *value = g_strstrip(g_strndup(text, len));
                g_autofree char *what = g_strdup_printf("%s %s", p->element, p->current_id);

                /* Remote and inactive sessions have nobody to authenticate. */
                if (strcmp(value, "no") != 0)
                        g_error("%s is '%s', expected 'no'", what, value);
                g_hash_table_insert(p->actions, g_strdup(p->current_id), g_strdup(value));
        }
}

static void policy_end(GMarkupParseContext *context, const char *element, gpointer data, GError **error) {
        PolicyParse *p = data;
        p->element = NULL;
}

static void test_actions_file(void) {
        static const GMarkupParser parser = { policy_start, policy_end, policy_text, NULL, NULL };
        g_autofree char *path = g_build_filename(BUILDDIR, "data", "org.outpost.Outpost1.policy", NULL);
        g_autofree char *contents = NULL, *xmllint = g_find_program_in_path("xmllint");
        g_autoptr(GError) error = NULL;
        g_autoptr(GHashTable) actions = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        PolicyParse p = { .actions = actions };
        GMarkupParseContext *context;

        g_assert_true(g_file_get_contents(path, &contents, NULL, &error));
        g_assert_no_error(error);
        context = g_markup_parse_context_new(&parser, 0, &p, NULL);
        g_assert_true(g_markup_parse_context_parse(context, contents, -1, &error));
        g_assert_no_error(error);
        g_markup_parse_context_free(context);
        g_free(p.current_id);

        g_assert_cmpuint(g_hash_table_size(actions), ==, G_N_ELEMENTS(all_actions));
        for (size_t i = 0; i < G_N_ELEMENTS(all_actions); i++)
                g_assert_cmpstr(g_hash_table_lookup(actions, all_actions[i]), ==, "no");

        if (xmllint && g_file_test("/usr/share/polkit-1/policyconfig-1.dtd", G_FILE_TEST_EXISTS)) {
                const char *argv[] = { xmllint, "--noout", "--dtdvalid", "/usr/share/polkit-1/policyconfig-1.dtd",
                                       path, NULL };
                int status;

                g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL,
                                           &status, &error));
                g_assert_no_error(error);
                g_assert_true(g_spawn_check_wait_status(status, &error));
                g_assert_no_error(error);
        } else
                g_test_message("xmllint or polkit's DTD missing: the actions file is not checked against the DTD");
}

/* The rule grants the bridge's account every Outpost action and nothing
 * else, run in node with a stand-in for polkit's JavaScript API. */
static void test_rules_file(void) {
        g_autofree char *node = g_find_program_in_path("node");
        g_autofree char *path = g_build_filename(SRCDIR, "data", "org.outpost.Outpost1.rules", NULL);
        g_autofree char *out = NULL, *err = NULL;
        g_autoptr(GError) error = NULL;
        const char *script =
                "const fs = require('fs');\n"
                "const rules = [];\n"
                "const polkit = { Result: { YES: 'yes', NO: 'no' }, addRule: (f) => rules.push(f),\n"
                "                 addAdminRule: () => {}, log: () => {} };\n"
                "eval(fs.readFileSync(process.argv[1], 'utf8'));\n"
                "const ask = (id, user) => rules.map((f) => f({ id: id }, { user: user })).find((r) => r !== undefined);\n"
                "console.log([ask('org.outpost.Outpost1.manage-users', 'outpost-bridge'),\n"
                "             ask('org.outpost.Outpost1.manage-bridge', 'outpost-bridge'),\n"
                "             ask('org.outpost.Outpost1.read-messages', 'outpost-bridge'),\n"
                "             ask('org.outpost.Outpost1.relay-for-peers', 'outpost-bridge'),\n"
                "             ask('org.outpost.Outpost1.manage-users', 'nobody'),\n"
                "             ask('org.freedesktop.login1.reboot', 'outpost-bridge')].join('|'));\n";
        int status;

        if (!node) {
                g_test_skip("node is not installed: the rules file is not run");
                return;
        }
        const char *argv[] = { node, "-e", script, path, NULL };
        g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &error));
        g_assert_no_error(error);
        if (!g_spawn_check_wait_status(status, NULL))
                g_error("node failed on %s: %s", path, err);
        g_assert_cmpstr(g_strstrip(out), ==, "yes|yes|yes|yes||");
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);

        for (size_t i = 0; i < G_N_ELEMENTS(changes); i++) {
                g_autofree char *denied = g_strconcat("/polkit/denied/", changes[i].method, NULL);
                g_autofree char *allowed = g_strconcat("/polkit/allowed/", changes[i].method, NULL);

                g_test_add(denied, Fixture, &changes[i], fixture_setup, test_denied, fixture_teardown);
                g_autofree char *bare = g_strconcat("/polkit/denied-without-interface/", changes[i].method, NULL);

                g_test_add(allowed, Fixture, &changes[i], fixture_setup, test_allowed, fixture_teardown);
                g_test_add(bare, Fixture, &changes[i], fixture_setup, test_denied_without_interface,
                           fixture_teardown);
        }
        g_test_add("/polkit/root-bypass", Fixture, NULL, fixture_setup, test_root_bypass, fixture_teardown);
        g_test_add("/polkit/relay-for-peers", Fixture, NULL, fixture_setup, test_relay_for_peers, fixture_teardown);
        g_test_add("/polkit/reads-open", Fixture, NULL, fixture_setup, test_reads_open, fixture_teardown);
        g_test_add("/polkit/interactive", Fixture, NULL, fixture_setup, test_interactive, fixture_teardown);
        g_test_add("/polkit/absent", Fixture, NULL, fixture_setup, test_polkit_absent, fixture_teardown);
        g_test_add("/polkit/not-blocking", Fixture, NULL, fixture_setup, test_not_blocking, fixture_teardown);
        g_test_add_func("/polkit/actions-file", test_actions_file);
        g_test_add_func("/polkit/rules-file", test_rules_file);
        g_test_add("/bus-policy/nobody-cannot-own", Fixture, NULL, fixture_setup, test_bus_policy_own, fixture_teardown);
        g_test_add("/bus-policy/bridge-account-may-own", Fixture, NULL, fixture_setup, test_bus_policy_bridge_account,
                   fixture_teardown);
        return g_test_run();
}
