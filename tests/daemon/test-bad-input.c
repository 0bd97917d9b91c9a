/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Hostile input, table-driven: for every method of every manager, wrong
 * argument types, empty and over-long strings, huge arrays, unknown keys
 * and integer bounds. Each call gets the error DESIGN.md §2/§3 documents,
 * the daemon keeps serving, and nothing is written: the state snapshot
 * (every model, LastSeq, every user) is the same after each call (issue 6).
 *
 * Invalid UTF-8 is not among the cases: the bus refuses to carry it (GDBus
 * will not send it and dbus-daemon drops a client that does), so it never
 * reaches the daemon. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define UNKNOWN_ID "00000000-0000-4000-8000-000000000000"
#define INVALID_ARGS "org.freedesktop.DBus.Error.InvalidArgs"

typedef struct Fixture {
        TestBus *tb;
        GDBusConnection *c;
        char *id, *tag;                 /* user "ann" */
        char *disabled_id;              /* user "dis", disabled */
        char *history_id;
} Fixture;

/* Parameters too large to write out: made by a function with N. */
typedef GVariant *(*MakeParams)(Fixture *f, guint n);

typedef struct BadCall {
        const char *name;       /* what is wrong */
        const char *path;
        const char *iface;
        const char *method;
        /* GVariant text, in which $ID, $TAG, $DISABLED, $HISTORY and
         * $UNKNOWN stand for the fixture's values and $A<n> for n 'a's. */
        const char *params;
        MakeParams make;        /* instead of params */
        guint n;
        const char *error;      /* a full name, or the suffix after org.outpost.Outpost1.Error. */
        const char *mention;    /* in the error message; may be NULL */
} BadCall;

#define REG   OUTPOST_ROOT, IFACE_REGISTRY
#define USERS OUTPOST_USERS_PATH, IFACE_USERS
#define PRES  OUTPOST_PRESENCE_PATH, IFACE_PRESENCE
#define MSGS  OUTPOST_MESSAGES_PATH, IFACE_MESSAGES
#define EVTS  OUTPOST_EVENTS_PATH, IFACE_EVENTS

/* Send(as user_ids, s body) with N copies of the known user's id. */
static GVariant *make_recipients(Fixture *f, guint n) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE_STRING_ARRAY);
        for (guint i = 0; i < n; i++)
                g_variant_builder_add(&b, "s", f->id);
        return g_variant_new("(ass)", &b, "hello");
}

/* FetchSince(s, t, as topic_prefixes, u) with N prefixes. */
static GVariant *make_prefixes(Fixture *f, guint n) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE_STRING_ARRAY);
        for (guint i = 0; i < n; i++)
                g_variant_builder_add(&b, "s", "site");
        return g_variant_new("(stasu)", "", (guint64) 0, &b, 10);
}

/* An a{sv} with N distinct keys. */
static GVariant *many_keys(guint n, gboolean with_name) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
        if (with_name)
                g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string("zed"));
        for (guint i = 0; i < n; i++) {
                g_autofree char *key = g_strdup_printf("key%u", i);
                g_variant_builder_add(&b, "{sv}", key, g_variant_new_uint32(i));
        }
        return g_variant_builder_end(&b);
}

static GVariant *make_create_many_keys(Fixture *f, guint n) {
        return g_variant_new("(@a{sv})", many_keys(n, TRUE));
}

static GVariant *make_save_many_keys(Fixture *f, guint n) {
        return g_variant_new("(ss@a{sv})", f->id, f->tag, many_keys(n, FALSE));
}

/* Publish with N keys: over 64 KiB serialized for a large N. */
static GVariant *make_publish_many_keys(Fixture *f, guint n) {
        return g_variant_new("(s@a{sv})", "site.big", many_keys(n, FALSE));
}

/* CreateUser with N attributes. */
static GVariant *make_attributes(Fixture *f, guint n) {
        GVariantBuilder attrs, fields;

        g_variant_builder_init(&attrs, G_VARIANT_TYPE("a{ss}"));
        for (guint i = 0; i < n; i++) {
                g_autofree char *key = g_strdup_printf("k%u", i);
                g_variant_builder_add(&attrs, "{ss}", key, "v");
        }
        g_variant_builder_init(&fields, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&fields, "{sv}", "name", g_variant_new_string("zed"));
        g_variant_builder_add(&fields, "{sv}", "attributes", g_variant_builder_end(&attrs));
        return g_variant_new("(@a{sv})", g_variant_builder_end(&fields));
}

static const BadCall bad_calls[] = {
        /* Registry */
        { "arguments to a method without", REG, "ListManagers", "('x',)", NULL, 0, INVALID_ARGS, NULL },
        { "wrong type", REG, "GetManager", "(int32 1,)", NULL, 0, INVALID_ARGS, NULL },
        { "no argument", REG, "GetManager", "()", NULL, 0, INVALID_ARGS, NULL },
        { "empty name", REG, "GetManager", "('',)", NULL, 0, "NotFound", "''" },
        { "over-long name", REG, "GetManager", "('$A100000',)", NULL, 0, "NotFound", "aaaa" },
        { "unknown method", REG, "NoSuchMethod", "()", NULL, 0, "org.freedesktop.DBus.Error.UnknownMethod", NULL },

        /* Users */
        { "wrong type", USERS, "CreateUser", "('ann',)", NULL, 0, INVALID_ARGS, NULL },
        { "extra argument", USERS, "CreateUser", "({'name': <'zed'>}, 1)", NULL, 0, INVALID_ARGS, NULL },
        { "no name", USERS, "CreateUser", "(@a{sv} {},)", NULL, 0, "InvalidArgument", "'name'" },
        { "empty name", USERS, "CreateUser", "({'name': <''>},)", NULL, 0, "InvalidArgument", "name" },
        { "name of 65", USERS, "CreateUser", "({'name': <'$A65'>},)", NULL, 0, "InvalidArgument", "name" },
        { "name of 100000", USERS, "CreateUser", "({'name': <'$A100000'>},)", NULL, 0, "InvalidArgument", "name" },
        { "name of wrong type", USERS, "CreateUser", "({'name': <int32 5>},)", NULL, 0, "InvalidArgument", "'name'" },
        { "name taken", USERS, "CreateUser", "({'name': <'ann'>},)", NULL, 0, "AlreadyExists", "'ann'" },
        { "unknown key", USERS, "CreateUser", "({'name': <'zed'>, 'shoe-size': <42>},)", NULL, 0, "InvalidArgument", "'shoe-size'" },
        { "read-only key", USERS, "CreateUser", "({'name': <'zed'>, 'id': <'$ID'>},)", NULL, 0, "InvalidArgument", "'id'" },
        { "display-name of 257", USERS, "CreateUser", "({'name': <'zed'>, 'display-name': <'$A257'>},)", NULL, 0, "InvalidArgument", "display-name" },
        { "display-name with control", USERS, "CreateUser", "({'name': <'zed'>, 'display-name': <'a\\tb'>},)", NULL, 0, "InvalidArgument", "display-name" },
        { "email without @", USERS, "CreateUser", "({'name': <'zed'>, 'email': <'zed'>},)", NULL, 0, "InvalidArgument", "email" },
        { "email of 255", USERS, "CreateUser", "({'name': <'zed'>, 'email': <'a@$A253'>},)", NULL, 0, "InvalidArgument", "email" },
        { "enabled of wrong type", USERS, "CreateUser", "({'name': <'zed'>, 'enabled': <'yes'>},)", NULL, 0, "InvalidArgument", "'enabled'" },
        { "empty attribute key", USERS, "CreateUser", "({'name': <'zed'>, 'attributes': <{'': 'v'}>},)", NULL, 0, "InvalidArgument", "attribute" },
        { "attribute key of 65", USERS, "CreateUser", "({'name': <'zed'>, 'attributes': <{'$A65': 'v'}>},)", NULL, 0, "InvalidArgument", "attribute" },
        { "attribute value of 4097", USERS, "CreateUser", "({'name': <'zed'>, 'attributes': <{'k': '$A4097'}>},)", NULL, 0, "InvalidArgument", "attribute" },
        { "attributes of wrong type", USERS, "CreateUser", "({'name': <'zed'>, 'attributes': <{'k': 1}>},)", NULL, 0, "InvalidArgument", "'attributes'" },
        { "65 attributes", USERS, "CreateUser", NULL, make_attributes, 65, "InvalidArgument", "65 entries" },
        { "100000 attributes", USERS, "CreateUser", NULL, make_attributes, 100000, "InvalidArgument", "attributes" },
        { "100000 unknown keys", USERS, "CreateUser", NULL, make_create_many_keys, 100000, "InvalidArgument", "Unknown user key" },

        { "wrong type", USERS, "GetUser", "(int32 1,)", NULL, 0, INVALID_ARGS, NULL },
        { "empty id", USERS, "GetUser", "('',)", NULL, 0, "InvalidArgument", "UUID" },
        { "upper-case id", USERS, "GetUser", "('00000000-0000-4000-8000-00000000000A',)", NULL, 0, "InvalidArgument", "UUID" },
        { "id of 100000", USERS, "GetUser", "('$A100000',)", NULL, 0, "InvalidArgument", "UUID" },
        { "unknown id", USERS, "GetUser", "('$UNKNOWN',)", NULL, 0, "NotFound", UNKNOWN_ID },

        { "wrong type", USERS, "LookupUser", "(true,)", NULL, 0, INVALID_ARGS, NULL },
        { "empty name", USERS, "LookupUser", "('',)", NULL, 0, "InvalidArgument", "user name" },
        { "name of 65", USERS, "LookupUser", "('$A65',)", NULL, 0, "InvalidArgument", "user name" },
        { "upper-case name", USERS, "LookupUser", "('Ann',)", NULL, 0, "InvalidArgument", "'Ann'" },
        { "unknown name", USERS, "LookupUser", "('nobody-here',)", NULL, 0, "NotFound", "'nobody-here'" },

        { "wrong types", USERS, "ListUsers", "('', int32 10)", NULL, 0, INVALID_ARGS, NULL },
        { "missing limit", USERS, "ListUsers", "('',)", NULL, 0, INVALID_ARGS, NULL },
        { "limit 0", USERS, "ListUsers", "('', uint32 0)", NULL, 0, "InvalidArgument", "limit 0" },
        { "limit 1001", USERS, "ListUsers", "('', uint32 1001)", NULL, 0, "InvalidArgument", "limit 1001" },
        { "limit max", USERS, "ListUsers", "('', uint32 4294967295)", NULL, 0, "InvalidArgument", "4294967295" },
        { "bad cursor", USERS, "ListUsers", "('NOT A NAME', uint32 10)", NULL, 0, "InvalidArgument", "cursor" },
        { "cursor of 100000", USERS, "ListUsers", "('$A100000', uint32 10)", NULL, 0, "InvalidArgument", "cursor" },

        { "wrong types", USERS, "SaveUser", "('$ID', '$TAG')", NULL, 0, INVALID_ARGS, NULL },
        { "bad id", USERS, "SaveUser", "('x', '$TAG', {'email': <'a@b'>})", NULL, 0, "InvalidArgument", "UUID" },
        { "unknown key", USERS, "SaveUser", "('$ID', '$TAG', {'shoe-size': <42>})", NULL, 0, "InvalidArgument", "'shoe-size'" },
        { "read-only tag", USERS, "SaveUser", "('$ID', '$TAG', {'tag': <'$TAG'>})", NULL, 0, "InvalidArgument", "'tag'" },
        { "read-only created", USERS, "SaveUser", "('$ID', '$TAG', {'created': <int64 0>})", NULL, 0, "InvalidArgument", "'created'" },
        { "bad value", USERS, "SaveUser", "('$ID', '$TAG', {'name': <''>})", NULL, 0, "InvalidArgument", "name" },
        { "100000 unknown keys", USERS, "SaveUser", NULL, make_save_many_keys, 100000, "InvalidArgument", "Unknown user key" },
        { "unknown id", USERS, "SaveUser", "('$UNKNOWN', '$TAG', {'email': <'a@b'>})", NULL, 0, "NotFound", UNKNOWN_ID },
        { "empty tag", USERS, "SaveUser", "('$ID', '', {'email': <'a@b'>})", NULL, 0, "SaveConflict", "current tag" },
        { "tag of 100000", USERS, "SaveUser", "('$ID', '$A100000', {'email': <'a@b'>})", NULL, 0, "SaveConflict", "current tag" },

        { "wrong types", USERS, "DeleteUser", "('$ID',)", NULL, 0, INVALID_ARGS, NULL },
        { "bad id", USERS, "DeleteUser", "('', '$TAG')", NULL, 0, "InvalidArgument", "UUID" },
        { "unknown id", USERS, "DeleteUser", "('$UNKNOWN', '$TAG')", NULL, 0, "NotFound", UNKNOWN_ID },
        { "wrong tag", USERS, "DeleteUser", "('$ID', '$UNKNOWN')", NULL, 0, "SaveConflict", "current tag" },

        /* Presence */
        { "wrong types", PRES, "GoOnline", "('$ID', int32 0)", NULL, 0, INVALID_ARGS, NULL },
        { "missing ttl", PRES, "GoOnline", "('$ID',)", NULL, 0, INVALID_ARGS, NULL },
        { "empty id", PRES, "GoOnline", "('', uint32 0)", NULL, 0, "InvalidArgument", "UUID" },
        { "id of 100000", PRES, "GoOnline", "('$A100000', uint32 0)", NULL, 0, "InvalidArgument", "UUID" },
        { "unknown id", PRES, "GoOnline", "('$UNKNOWN', uint32 0)", NULL, 0, "NotFound", UNKNOWN_ID },
        { "disabled user, huge ttl", PRES, "GoOnline", "('$DISABLED', uint32 4294967295)", NULL, 0, "InvalidArgument", "disabled" },
        { "wrong type", PRES, "GoOffline", "(uint32 0,)", NULL, 0, INVALID_ARGS, NULL },
        { "empty id", PRES, "GoOffline", "('',)", NULL, 0, "InvalidArgument", "UUID" },
        { "unknown id", PRES, "GoOffline", "('$UNKNOWN',)", NULL, 0, "NotFound", UNKNOWN_ID },

        /* Messages */
        { "wrong types", MSGS, "Send", "('$ID', 'hello')", NULL, 0, INVALID_ARGS, NULL },
        { "no recipient", MSGS, "Send", "(@as [], 'hello')", NULL, 0, "InvalidArgument", "recipient" },
        { "empty recipient", MSGS, "Send", "([''], 'hello')", NULL, 0, "InvalidArgument", "recipient" },
        { "unknown recipient", MSGS, "Send", "(['$ID', '$UNKNOWN'], 'hello')", NULL, 0, "NotFound", UNKNOWN_ID },
        { "empty body", MSGS, "Send", "(['$ID'], '')", NULL, 0, "InvalidArgument", "empty" },
        { "body of 65537", MSGS, "Send", "(['$ID'], '$A65537')", NULL, 0, "LimitExceeded", "65537" },
        { "1001 recipients", MSGS, "Send", NULL, make_recipients, 1001, "LimitExceeded", "1001" },
        { "100000 recipients", MSGS, "Send", NULL, make_recipients, 100000, "LimitExceeded", "100000" },

        /* Events */
        { "wrong types", EVTS, "Publish", "('site', 'data')", NULL, 0, INVALID_ARGS, NULL },
        { "empty topic", EVTS, "Publish", "('', @a{sv} {})", NULL, 0, "InvalidArgument", "topic" },
        { "topic of 256", EVTS, "Publish", "('$A256', @a{sv} {})", NULL, 0, "InvalidArgument", "topic" },
        { "empty segment", EVTS, "Publish", "('site//door', @a{sv} {})", NULL, 0, "InvalidArgument", "site//door" },
        { "bad character", EVTS, "Publish", "('site door', @a{sv} {})", NULL, 0, "InvalidArgument", "topic" },
        { "reserved users", EVTS, "Publish", "('users', @a{sv} {})", NULL, 0, "InvalidArgument", "reserved" },
        { "reserved messages/", EVTS, "Publish", "('messages/x', @a{sv} {})", NULL, 0, "InvalidArgument", "reserved" },
        { "data over 64 KiB", EVTS, "Publish", "('site', {'blob': <'$A70000'>})", NULL, 0, "LimitExceeded", "bytes" },
        { "100000 keys", EVTS, "Publish", NULL, make_publish_many_keys, 100000, "LimitExceeded", "bytes" },

        { "wrong types", EVTS, "FetchSince", "('', uint32 0, @as [], uint32 10)", NULL, 0, INVALID_ARGS, NULL },
        { "limit 0", EVTS, "FetchSince", "('', uint64 0, @as [], uint32 0)", NULL, 0, "InvalidArgument", "limit 0" },
        { "limit 10001", EVTS, "FetchSince", "('', uint64 0, @as [], uint32 10001)", NULL, 0, "InvalidArgument", "limit 10001" },
        { "empty prefix", EVTS, "FetchSince", "('', uint64 0, [''], uint32 10)", NULL, 0, "InvalidArgument", "prefix" },
        { "prefix of 256", EVTS, "FetchSince", "('', uint64 0, ['$A256'], uint32 10)", NULL, 0, "InvalidArgument", "prefix" },
        { "65 prefixes", EVTS, "FetchSince", NULL, make_prefixes, 65, "LimitExceeded", "65" },
        { "100000 prefixes", EVTS, "FetchSince", NULL, make_prefixes, 100000, "LimitExceeded", "100000" },
        { "other history", EVTS, "FetchSince", "('$UNKNOWN', uint64 0, @as [], uint32 10)", NULL, 0, "HistoryReset", UNKNOWN_ID },
        { "history of 100000", EVTS, "FetchSince", "('$A100000', uint64 0, @as [], uint32 10)", NULL, 0, "HistoryReset", "$HISTORY" },
        { "after_seq max", EVTS, "FetchSince", "('$HISTORY', uint64 18446744073709551615, @as [], uint32 10)", NULL, 0, "HistoryReset", "18446744073709551615" },

        /* Properties are read-only. */
        { "set LastSeq", OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Set",
          "('" IFACE_EVENTS "', 'LastSeq', <uint64 0>)", NULL, 0, "org.freedesktop.DBus.Error.PropertyReadOnly", NULL },
        { "set OnlineCount", OUTPOST_PRESENCE_PATH, "org.freedesktop.DBus.Properties", "Set",
          "('" IFACE_PRESENCE "', 'OnlineCount', <uint32 7>)", NULL, 0, "org.freedesktop.DBus.Error.PropertyReadOnly", NULL },
        { "unknown property", OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Get",
          "('" IFACE_EVENTS "', 'NoSuchProperty')", NULL, 0, "org.freedesktop.DBus.Error.UnknownProperty", NULL },
};

/* outpostd.conf's [Limits] may lower the contract's figures (issue 6):
 * with these, a call just over a lowered limit gets the error the
 * contract's figure would give, naming the value and the limit. */
static const char lowered_config[] =
        "[Limits]\n"
        "MaxEventDataBytes=1000\n"
        "MaxEventsPerPage=2\n"
        "MaxTopicPrefixes=2\n"
        "MaxMessageBodyBytes=10\n"
        "MaxRecipients=2\n"
        "MaxUsersPerPage=1\n"
        "MaxDisplayNameLength=5\n"
        "MaxAttributes=2\n"
        "MaxAttributeKeyBytes=3\n"
        "MaxAttributeValueBytes=4\n";

static const BadCall over_lowered_limits[] = {
        { "data over 1000 bytes", EVTS, "Publish", "('site', {'blob': <'$A1000'>})", NULL, 0, "LimitExceeded", "at most 1000 are allowed" },
        { "3 prefixes", EVTS, "FetchSince", NULL, make_prefixes, 3, "LimitExceeded", "3 topic prefixes given, at most 2" },
        { "body of 11", MSGS, "Send", "(['$ID'], '$A11')", NULL, 0, "LimitExceeded", "11 bytes, at most 10" },
        { "3 recipients", MSGS, "Send", NULL, make_recipients, 3, "LimitExceeded", "3 recipients given, at most 2" },
        { "display-name of 6", USERS, "CreateUser", "({'name': <'zed'>, 'display-name': <'$A6'>},)", NULL, 0, "InvalidArgument", "6 characters long, at most 5" },
        { "display-name of 6", USERS, "SaveUser", "('$ID', '$TAG', {'display-name': <'$A6'>})", NULL, 0, "InvalidArgument", "6 characters long, at most 5" },
        { "3 attributes", USERS, "CreateUser", NULL, make_attributes, 3, "InvalidArgument", "3 entries, at most 2" },
        { "attribute key of 4", USERS, "CreateUser", "({'name': <'zed'>, 'attributes': <{'$A4': 'v'}>},)", NULL, 0, "InvalidArgument", "must be 1-3 bytes" },
        { "attribute value of 5", USERS, "SaveUser", "('$ID', '$TAG', {'attributes': <{'k': '$A5'}>})", NULL, 0, "InvalidArgument", "5 bytes, at most 4" },
        /* The contract's bounds still hold for page sizes. */
        { "limit 1001", USERS, "ListUsers", "('', uint32 1001)", NULL, 0, "InvalidArgument", "limit 1001" },
        { "limit 10001", EVTS, "FetchSince", "('', uint64 0, @as [], uint32 10001)", NULL, 0, "InvalidArgument", "limit 10001" },
};

/* The text of a case with its placeholders filled in. */
static char *expand(Fixture *f, const char *text) {
        g_autoptr(GString) out = g_string_new(NULL);

        for (const char *p = text; *p; ) {
                if (*p != '$') {
                        g_string_append_c(out, *p++);
                        continue;
                }
                if (p[1] == 'A' && g_ascii_isdigit(p[2])) {
                        char *end;
                        guint n = (guint) strtoul(p + 2, &end, 10);
                        for (guint i = 0; i < n; i++)
                                g_string_append_c(out, 'a');
                        p = end;
                        continue;
                }
                static const char *const names[] = { "$ID", "$TAG", "$DISABLED", "$HISTORY", "$UNKNOWN" };
                const char *values[] = { f->id, f->tag, f->disabled_id, f->history_id, UNKNOWN_ID };
                gboolean found = FALSE;

                for (size_t i = 0; i < G_N_ELEMENTS(names) && !found; i++)
                        if (g_str_has_prefix(p, names[i])) {
                                g_string_append(out, values[i]);
                                p += strlen(names[i]);
                                found = TRUE;
                        }
                g_assert_true(found);
        }
        return g_string_free(g_steal_pointer(&out), FALSE);
}

/* outpostd with CONFIG, users "ann" and "dis" (disabled). */
static void fixture_start(Fixture *f, const char *config) {
        g_autoptr(GVariant) r = NULL, v = NULL;
        g_autofree char *disabled_tag = NULL;

        f->tb = test_bus_new();
        f->c = f->tb->conn;
        test_bus_start_daemon(f->tb, config);
        f->id = test_create_user(f->c, "ann", &f->tag);
        f->disabled_id = test_create_user(f->c, "dis", &disabled_tag);
        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                                     g_variant_new_parsed("(%s, %s, {'enabled': <false>})", f->disabled_id, disabled_tag),
                                     "(s)"));
        r = test_call_ok(f->c, OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Get",
                         g_variant_new("(ss)", IFACE_EVENTS, "HistoryId"), "(v)");
        g_variant_get(r, "(v)", &v);
        f->history_id = g_variant_dup_string(v, NULL);
}

static void fixture_setup(Fixture *f, gconstpointer data) {
        fixture_start(f, NULL);
}

static void fixture_setup_lowered(Fixture *f, gconstpointer data) {
        fixture_start(f, lowered_config);
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        g_free(f->id);
        g_free(f->tag);
        g_free(f->disabled_id);
        g_free(f->history_id);
        test_bus_free(f->tb);
}

static void run_case(Fixture *f, const BadCall *bc, const char *before) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        g_autofree char *after = NULL, *mention = NULL;
        GVariant *params;
        gint64 start, elapsed_ms;

        g_test_message("%s.%s: %s", bc->iface, bc->method, bc->name);
        if (bc->make)
                params = bc->make(f, bc->n);
        else {
                g_autofree char *text = expand(f, bc->params);
                g_autoptr(GError) parse_error = NULL;

                params = g_variant_parse(NULL, text, NULL, NULL, &parse_error);
                if (!params)
                        g_error("case '%s' of %s: bad params: %s", bc->name, bc->method, parse_error->message);
        }
        start = g_get_monotonic_time();
        r = test_call(f->c, bc->path, bc->iface, bc->method, params, NULL, &error);
        elapsed_ms = (g_get_monotonic_time() - start) / 1000;
        g_test_message("  answered in %" G_GINT64_FORMAT " ms", elapsed_ms);
        /* Refusing is cheap: a few seconds at most, even under the sanitizers. */
        g_assert_cmpint(elapsed_ms, <, 10000);
        if (r)
                g_error("%s.%s (%s) succeeded; expected %s", bc->iface, bc->method, bc->name, bc->error);
        if (bc->mention)
                mention = expand(f, bc->mention);
        test_assert_dbus_error(error, bc->error, mention);
        /* The message names the bad value, quoted short: a huge argument
         * is not echoed back. */
        g_assert_cmpuint(strlen(error->message), <, 1024);

        /* Nothing was written, and the daemon still answers. */
        after = test_state_snapshot(f->c);
        if (g_strcmp0(before, after) != 0)
                g_error("%s.%s (%s) changed the state:\nbefore: %s\nafter:  %s", bc->iface, bc->method, bc->name,
                        before, after);
}

static void test_bad_input(Fixture *f, gconstpointer data) {
        const char *iface = data;
        g_autofree char *before = test_state_snapshot(f->c);
        guint n = 0;

        for (size_t i = 0; i < G_N_ELEMENTS(bad_calls); i++)
                if (strcmp(bad_calls[i].iface, iface) == 0) {
                        run_case(f, &bad_calls[i], before);
                        n++;
                }
        g_assert_cmpuint(n, >, 0);
}

/* The limits themselves are accepted: the bounds above are exactly one
 * past them. */
static void test_limits_accepted(Fixture *f, gconstpointer data) {
        g_autofree char *name64 = g_strnfill(64, 'b');
        g_autofree char *display256 = g_strnfill(256, 'd');
        g_autofree char *body = g_strnfill(65536, 'm');
        g_autofree char *topic255 = g_strnfill(255, 't');
        g_autoptr(GPtrArray) to = g_ptr_array_new();
        g_autoptr(GPtrArray) prefixes = g_ptr_array_new();

        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                                     g_variant_new_parsed("({'name': <%s>, 'display-name': <%s>},)", name64, display256),
                                     "(ss)"));
        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 1), NULL));
        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 1000), NULL));

        for (guint i = 0; i < 1000; i++)
                g_ptr_array_add(to, f->id);
        g_ptr_array_add(to, NULL);
        g_variant_unref(test_call_ok(f->c, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                                     g_variant_new("(^ass)", (char **) to->pdata, body), "(st)"));

        g_variant_unref(test_call_ok(f->c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                     g_variant_new_parsed("(%s, @a{sv} {})", topic255), "(t)"));
        for (guint i = 0; i < 64; i++)
                g_ptr_array_add(prefixes, topic255);
        g_ptr_array_add(prefixes, NULL);
        g_variant_unref(test_call_ok(f->c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                                     g_variant_new("(st^asu)", f->history_id, (guint64) 0, (char **) prefixes->pdata, 10000),
                                     NULL));

        /* The longest ttl holds the user, and does not overflow into the past. */
        g_variant_unref(test_call_ok(f->c, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline",
                                     g_variant_new("(su)", f->id, G_MAXUINT32), "(t)"));
        g_assert_true(test_is_online(f->c, f->id));
        g_assert_cmpuint(test_online_count(f->c), ==, 1);
}

static void test_over_lowered_limits(Fixture *f, gconstpointer data) {
        g_autofree char *before = test_state_snapshot(f->c);

        for (size_t i = 0; i < G_N_ELEMENTS(over_lowered_limits); i++)
                run_case(f, &over_lowered_limits[i], before);
}

/* The lowered limits themselves are accepted; a page size asked for above
 * a lowered one is too, and the page is cut there, with the usual way on. */
static void test_lowered_limits_accepted(Fixture *f, gconstpointer data) {
        g_autofree char *blob = g_strnfill(900, 'b');
        g_autoptr(GVariant) page = NULL, users = NULL, events = NULL;
        g_autofree char *next = NULL;
        guint64 next_after;
        gboolean more;

        g_variant_unref(test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                                     g_variant_new_parsed("({'name': <'zed'>, 'display-name': <'ddddd'>,"
                                                          " 'attributes': <{'kkk': 'vvvv', 'k2': ''}>},)"),
                                     "(ss)"));
        g_variant_unref(test_call_ok(f->c, OUTPOST_MESSAGES_PATH, IFACE_MESSAGES, "Send",
                                     g_variant_new_parsed("([%s, %s], 'mmmmmmmmmm')", f->id, f->id), "(st)"));
        g_variant_unref(test_call_ok(f->c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                     g_variant_new_parsed("('site', {'blob': <%s>})", blob), "(t)"));

        page = test_call_ok(f->c, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", g_variant_new("(su)", "", 1000),
                            "(aa{sv}s)");
        g_variant_get(page, "(@aa{sv}s)", &users, &next);
        g_assert_cmpuint(g_variant_n_children(users), ==, 1);
        g_assert_cmpstr(next, ==, "ann");
        g_clear_pointer(&page, g_variant_unref);

        page = test_call_ok(f->c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                            g_variant_new_parsed("(%s, @t 0, ['users', 'site'], @u 10000)", f->history_id),
                            "(a(tsxa{sv})tb)");
        g_variant_get(page, "(@a(tsxa{sv})tb)", &events, &next_after, &more);
        g_assert_cmpuint(g_variant_n_children(events), ==, 2);
        g_assert_true(more);
}

int main(int argc, char **argv) {
        static const char *const ifaces[] = {
                IFACE_REGISTRY, IFACE_USERS, IFACE_PRESENCE, IFACE_MESSAGES, IFACE_EVENTS,
                "org.freedesktop.DBus.Properties",
        };

        test_init(&argc, &argv);
        for (size_t i = 0; i < G_N_ELEMENTS(ifaces); i++) {
                g_autofree char *path = g_strconcat("/bad-input/", ifaces[i], NULL);
                g_test_add(path, Fixture, ifaces[i], fixture_setup, test_bad_input, fixture_teardown);
        }
        g_test_add("/bad-input/limits-accepted", Fixture, NULL, fixture_setup, test_limits_accepted, fixture_teardown);
        g_test_add("/bad-input/over-lowered-limits", Fixture, NULL, fixture_setup_lowered, test_over_lowered_limits,
                   fixture_teardown);
        g_test_add("/bad-input/lowered-limits-accepted", Fixture, NULL, fixture_setup_lowered,
                   test_lowered_limits_accepted, fixture_teardown);
        return g_test_run();
}
