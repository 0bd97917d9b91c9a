/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl against the real outpostd: output, JSON and exit status of
 * each verb, and its errors as one line on stderr. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

typedef struct Fixture {
        TestBus *tb;
        char *out;
        char *err;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data) {
        f->tb = test_bus_new();
        test_bus_start_daemon(f->tb, NULL);
}

static void fixture_teardown(Fixture *f, gconstpointer data) {
        test_bus_free(f->tb);
        g_free(f->out);
        g_free(f->err);
}

static GPtrArray *ctl_argv(Fixture *f, const char *const *args) {
        GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

        g_ptr_array_add(argv, g_strdup(OUTPOSTCTL));
        g_ptr_array_add(argv, g_strconcat("--address=", f->tb->address, NULL));
        for (; *args; args++)
                g_ptr_array_add(argv, g_strdup(*args));
        g_ptr_array_add(argv, NULL);
        return argv;
}

/* Run outpostctl with ARGS; returns its exit status, its output in f->out
 * and f->err. */
static int run_argv(Fixture *f, const char *const *args) {
        g_autoptr(GPtrArray) argv = ctl_argv(f, args);
        g_autoptr(GError) error = NULL;
        int status;

        g_clear_pointer(&f->out, g_free);
        g_clear_pointer(&f->err, g_free);
        g_spawn_sync(NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &f->out, &f->err, &status, &error);
        g_assert_no_error(error);
        if (!WIFEXITED(status))
                g_error("outpostctl %s died (status %d): %s", args[0], status, f->err);
        g_test_message("outpostctl %s: %d\n%s%s", args[0], WEXITSTATUS(status), f->out, f->err);
        return WEXITSTATUS(status);
}

#define run(f, ...) run_argv(f, (const char *const[]) { __VA_ARGS__, NULL })

static void assert_ok(Fixture *f, int status) {
        if (status != 0)
                g_error("outpostctl failed (%d): %s", status, f->err);
        g_assert_cmpstr(f->err, ==, "");
}

/* Exit status 1 and one line on stderr that mentions MENTION. */
static void assert_fails(Fixture *f, int status, const char *mention) {
        g_assert_cmpint(status, ==, 1);
        g_assert_true(g_str_has_prefix(f->err, "outpostctl: "));
        /* One line */
        g_assert_true(strchr(f->err, '\n') == f->err + strlen(f->err) - 1);
        if (mention && !strstr(f->err, mention))
                g_error("'%s' does not mention '%s'", f->err, mention);
        g_assert_cmpstr(f->out, ==, "");
}

static void assert_has(const char *text, const char *what) {
        if (!strstr(text, what))
                g_error("'%s' does not contain '%s'", text, what);
}

static char *user_tag(Fixture *f, const char *name) {
        g_autoptr(GVariant) r = test_call_ok(f->tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser",
                                             g_variant_new("(s)", name), "(a{sv})");
        g_autoptr(GVariant) user = g_variant_get_child_value(r, 0);
        char *tag = NULL;

        g_variant_lookup(user, "tag", "s", &tag);
        return tag;
}

static void test_users(Fixture *f, gconstpointer data) {
        g_autofree char *tag = NULL, *stale_tag = NULL, *id = NULL, *want = NULL, *if_tag = NULL;
        g_autoptr(GVariant) r = NULL, user = NULL, attrs = NULL;
        gboolean enabled = TRUE;
        const char *s;

        assert_ok(f, run(f, "users", "create", "ann", "display-name=Ann Àlvarez", "enabled=false",
                         "attributes.desk=12", "email=ann@example.org"));
        assert_has(f->out, "Created user ann");

        r = test_call_ok(f->tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "LookupUser", g_variant_new("(s)", "ann"), "(a{sv})");
        user = g_variant_get_child_value(r, 0);
        g_assert_true(g_variant_lookup(user, "display-name", "&s", &s));
        g_assert_cmpstr(s, ==, "Ann Àlvarez");
        g_assert_true(g_variant_lookup(user, "enabled", "b", &enabled));
        g_assert_false(enabled);
        g_assert_true(g_variant_lookup(user, "attributes", "@a{ss}", &attrs));
        g_assert_true(g_variant_lookup(attrs, "desk", "&s", &s));
        g_assert_cmpstr(s, ==, "12");
        g_assert_true(g_variant_lookup(user, "id", "s", &id));

        assert_ok(f, run(f, "users", "create", "bob"));
        assert_ok(f, run(f, "users", "list"));
        assert_has(f->out, "NAME");
        assert_has(f->out, "Ann Àlvarez");
        assert_has(f->out, "2 users listed.");
        g_assert_true(strstr(f->out, "ann") < strstr(f->out, "bob"));

        assert_ok(f, run(f, "--json", "users", "list"));
        g_assert_true(g_str_has_prefix(f->out, "[{"));
        assert_has(f->out, "\"name\":\"ann\"");
        assert_has(f->out, "\"enabled\":false");
        assert_has(f->out, "\"attributes\":{\"desk\":\"12\"}");

        /* By name and by id */
        assert_ok(f, run(f, "users", "show", "ann"));
        assert_has(f->out, id);
        assert_has(f->out, "desk=12");
        assert_ok(f, run(f, "--json", "users", "show", id));
        assert_has(f->out, "\"display-name\":\"Ann Àlvarez\"");

        /* set: the attributes add up, the types follow the field */
        stale_tag = user_tag(f, "ann");
        assert_ok(f, run(f, "users", "set", "ann", "attributes.badge=x7", "enabled=true"));
        tag = user_tag(f, "ann");
        want = g_strdup_printf("tag %s", tag);
        assert_has(f->out, want);
        assert_ok(f, run(f, "--json", "users", "show", "ann"));
        assert_has(f->out, "\"attributes\":{\"badge\":\"x7\",\"desk\":\"12\"}");
        assert_has(f->out, "\"enabled\":true");

        /* Conflicts name both tags */
        assert_fails(f, run(f, "users", "set", "ann", "email=", "--if-tag", stale_tag), stale_tag);
        assert_has(f->err, tag);
        assert_fails(f, run(f, "users", "delete", "ann", "--if-tag=00000000-0000-4000-8000-000000000000"), tag);
        if_tag = g_strconcat("--if-tag=", tag, NULL);
        assert_ok(f, run(f, "users", "set", "ann", "email=", if_tag));

        /* Bad input is refused before any call */
        assert_fails(f, run(f, "users", "set", "ann", "enabled=maybe"), "maybe");
        assert_fails(f, run(f, "users", "set", "ann", "shoe-size=44"), "shoe-size");
        assert_fails(f, run(f, "users", "set", "ann", "id=x"), "read-only");
        assert_fails(f, run(f, "users", "set", "ann", "justaword"), "justaword");
        /* and the daemon's refusals come through */
        assert_fails(f, run(f, "users", "create", "Bad Name"), "Bad Name");
        assert_fails(f, run(f, "users", "create", "bob"), "bob");
        assert_fails(f, run(f, "users", "show", "nobody"), "nobody");
        assert_fails(f, run(f, "users", "show", "00000000-0000-4000-8000-000000000000"), NULL);

        assert_ok(f, run(f, "users", "delete", "bob"));
        assert_has(f->out, "Deleted user bob");
        assert_fails(f, run(f, "users", "show", "bob"), "bob");
}

static void test_status(Fixture *f, gconstpointer data) {
        g_autoptr(GVariant) r = NULL, v = NULL;
        const char *server_id;

        r = test_call_ok(f->tb->conn, OUTPOST_ROOT, "org.freedesktop.DBus.Properties", "Get",
                         g_variant_new("(ss)", IFACE_REGISTRY, "ServerId"), "(v)");
        g_variant_get(r, "(v)", &v);
        server_id = g_variant_get_string(v, NULL);

        assert_ok(f, run(f, "status"));
        assert_has(f->out, server_id);
        assert_has(f->out, PACKAGE_VERSION);
        assert_has(f->out, "events, messages, presence, users");
        assert_has(f->out, "none");
        assert_ok(f, run(f, "--json", "status"));
        assert_has(f->out, "\"server-id\":\"");
        assert_has(f->out, server_id);
        assert_has(f->out, "\"managers\":[\"events\",\"messages\",\"presence\",\"users\"]");

        assert_fails(f, run(f, "bridge", "status"), "no bridge");
        assert_fails(f, run(f, "bridge", "reconnect"), "no bridge");
}

static void test_usage(Fixture *f, gconstpointer data) {
        assert_fails(f, run(f, "frobnicate"), "frobnicate");
        assert_fails(f, run(f, "users", "list", "--ttl=3"), "users list");
        assert_fails(f, run(f, "users", "show"), "users show");
        assert_fails(f, run(f, "send", "ann"), "--");
        assert_fails(f, run(f, "--bogus", "status"), "--bogus");
        assert_fails(f, run(f, "events", "--since=x"), "--since");
        assert_ok(f, run(f, "--help"));
        assert_has(f->out, "users create NAME");

        test_bus_stop_daemon(f->tb, SIGTERM);
        assert_fails(f, run(f, "users", "list"), "not running");
        assert_fails(f, run(f, "status"), "not running");
}

static void test_events(Fixture *f, gconstpointer data) {
        g_autofree char *ann = test_create_user(f->tb->conn, "ann", NULL);
        g_autofree char *bob = test_create_user(f->tb->conn, "bob", NULL);

        assert_ok(f, run(f, "publish", "app/door", "state=open", "who=ann"));
        assert_has(f->out, "Published event 3 on app/door");
        assert_ok(f, run(f, "--json", "publish", "app/light", "on=yes"));
        g_assert_cmpstr(f->out, ==, "{\"seq\":4}\n");
        assert_fails(f, run(f, "publish", "users"), "users");

        assert_ok(f, run(f, "send", "ann", bob, "--", "hello", "there"));
        assert_has(f->out, "to 2 users");
        assert_fails(f, run(f, "send", "nobody", "--", "hi"), "nobody");

        assert_ok(f, run(f, "events"));
        assert_has(f->out, "SEQ");
        assert_has(f->out, "app/door");
        assert_has(f->out, "state=open who=ann");
        assert_has(f->out, "body=hello there");
        assert_has(f->out, "6 events listed.");

        assert_ok(f, run(f, "events", "--topic=app/", "--since=3"));
        assert_has(f->out, "1 event listed.");
        assert_has(f->out, "app/light");

        assert_ok(f, run(f, "--json", "events", "--topic", "messages/"));
        g_assert_true(g_str_has_prefix(f->out, "[{\"seq\":5,"));
        assert_has(f->out, "\"body\":\"hello there\"");
}

/* A send retried with its request id prints the first send's message and
 * sends nothing again; another id is another message. */
static void test_send_request_id(Fixture *f, gconstpointer data) {
        g_autofree char *ann = test_create_user(f->tb->conn, "ann", NULL);
        g_autofree char *first = NULL;
        guint64 last;

        assert_ok(f, run(f, "--json", "send", "ann", "--request-id=note-1", "--", "hello"));
        first = g_strdup(f->out);
        last = test_last_seq(f->tb->conn);
        assert_ok(f, run(f, "--json", "send", "ann", "--request-id", "note-1", "--", "hello"));
        g_assert_cmpstr(f->out, ==, first);
        g_assert_cmpuint(test_last_seq(f->tb->conn), ==, last);

        assert_ok(f, run(f, "send", "ann", "--request-id=note-2", "--", "hello"));
        assert_has(f->out, "Sent message");
        g_assert_cmpuint(test_last_seq(f->tb->conn), ==, last + 1);

        assert_fails(f, run(f, "send", "ann", "--request-id=a b", "--", "hello"), "request id");
        assert_fails(f, run(f, "send", "ann", "--request-id"), "--request-id needs a value");
        assert_fails(f, run(f, "events", "--request-id=note-3"), "does not apply");
}

static guint64 first_seq(Fixture *f) {
        g_autoptr(GVariant) v = test_get_property(f->tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FirstSeq");
        return g_variant_get_uint64(v);
}

/* Without --since, "events" lists what is kept, however much retention
 * discarded; it used to fail: "The events after 0 are no longer kept". */
static void test_events_retained(Fixture *f, gconstpointer data) {
        test_bus_stop_daemon(f->tb, SIGTERM);
        test_bus_start_daemon(f->tb, "[Events]\nRetentionCount=2\n");
        for (int i = 0; i < 5; i++)
                assert_ok(f, run(f, "publish", "app/door", "n=x"));
        test_wait_until(first_seq(f) == 4, 20000);

        g_assert_cmpint(run(f, "events"), ==, 0);
        assert_has(f->out, "2 events listed.");
        g_assert_cmpstr(f->err, ==, "outpostctl: older events were discarded by retention; "
                                    "listing those kept, from FirstSeq 4\n");

        /* The note stays out of the JSON. */
        g_assert_cmpint(run(f, "--json", "events"), ==, 0);
        g_assert_true(g_str_has_prefix(f->out, "[{\"seq\":4,"));
        assert_has(f->err, "FirstSeq 4");

        /* Asked for, what is gone is still an error. */
        assert_fails(f, run(f, "events", "--since=0"), "no longer kept");
        assert_ok(f, run(f, "events", "--since=3"));
        assert_has(f->out, "2 events listed.");
}

/* A long-running outpostctl: its stdout as lines. */
typedef struct Child {
        GSubprocess *proc;
        GDataInputStream *out;
} Child;

static void child_start(Fixture *f, Child *c, const char *const *args) {
        g_autoptr(GPtrArray) argv = ctl_argv(f, args);
        g_autoptr(GError) error = NULL;

        c->proc = g_subprocess_newv((const char *const *) argv->pdata, G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
        g_assert_no_error(error);
        c->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(c->proc));
}

static char *child_line(Child *c) {
        g_autoptr(GError) error = NULL;
        char *line = g_data_input_stream_read_line_utf8(c->out, NULL, NULL, &error);

        g_assert_no_error(error);
        g_assert_nonnull(line);
        return line;
}

static void child_stop(Child *c) {
        g_autoptr(GError) error = NULL;

        g_subprocess_send_signal(c->proc, SIGTERM);
        g_subprocess_wait(c->proc, NULL, &error);
        g_assert_no_error(error);
        g_assert_true(g_subprocess_get_if_exited(c->proc));
        g_assert_cmpint(g_subprocess_get_exit_status(c->proc), ==, 0);
        g_clear_object(&c->out);
        g_clear_object(&c->proc);
}

static gboolean is_online(Fixture *f, const char *id) {
        return test_is_online(f->tb->conn, id);
}

static void test_presence(Fixture *f, gconstpointer data) {
        g_autofree char *id = test_create_user(f->tb->conn, "ann", NULL);
        g_autofree char *line = NULL;
        Child c = { 0 };

        assert_ok(f, run(f, "presence"));
        assert_has(f->out, "0 users online.");

        child_start(f, &c, (const char *const[]) { "presence", "online", "ann", "--ttl=4", NULL });
        line = child_line(&c);
        assert_has(line, "ann is online");
        g_assert_true(is_online(f, id));

        assert_ok(f, run(f, "presence"));
        assert_has(f->out, "ann");
        assert_has(f->out, id);
        assert_has(f->out, "1 user online.");
        assert_has(f->out, "SINCE");
        assert_ok(f, run(f, "--json", "presence"));
        assert_has(f->out, "\"online\":[{\"id\":\"");
        assert_has(f->out, "\"since\":");
        assert_has(f->out, "\"online-count\":1");
        /* The online user's object is no manager. */
        assert_ok(f, run(f, "status"));
        assert_has(f->out, "events, messages, presence, users\n");

        /* Another client cannot drop this one's hold. */
        assert_ok(f, run(f, "presence", "offline", "ann"));
        assert_has(f->out, "still online");

        child_stop(&c);
        g_assert_false(is_online(f, id));
        assert_fails(f, run(f, "presence", "online", "nobody"), "nobody");
}

static void test_follow(Fixture *f, gconstpointer data) {
        Child c = { 0 };
        guint64 seq;

        child_start(f, &c, (const char *const[]) { "--json", "events", "--follow", "--since=0", NULL });
        test_call_ok(f->tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish", g_variant_new_parsed("('app/a', @a{sv} {})"), "(t)");
        {
                g_autofree char *line = child_line(&c);
                g_assert_cmpstr(strstr(line, "\"seq\":1,"), !=, NULL);
        }

        /* Across a restart: nothing lost, nothing twice. */
        test_bus_stop_daemon(f->tb, SIGTERM);
        test_bus_start_daemon(f->tb, NULL);
        for (seq = 2; seq <= 4; seq++)
                test_call_ok(f->tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                             g_variant_new_parsed("('app/b', @a{sv} {})"), "(t)");
        for (seq = 2; seq <= 4; seq++) {
                g_autofree char *line = child_line(&c);
                g_autofree char *want = g_strdup_printf("{\"seq\":%" G_GUINT64_FORMAT ",", seq);
                g_assert_true(g_str_has_prefix(line, want));
        }
        child_stop(&c);
}

int main(int argc, char **argv) {
        test_init(&argc, &argv);

#define ADD(name, fn) g_test_add(name, Fixture, NULL, fixture_setup, fn, fixture_teardown)
        ADD("/outpostctl/users", test_users);
        ADD("/outpostctl/status", test_status);
        ADD("/outpostctl/usage", test_usage);
        ADD("/outpostctl/events", test_events);
        ADD("/outpostctl/events-retained", test_events_retained);
        ADD("/outpostctl/send-request-id", test_send_request_id);
        ADD("/outpostctl/presence", test_presence);
        ADD("/outpostctl/follow", test_follow);

        return g_test_run();
}
