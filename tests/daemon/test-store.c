/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostd and its store file: a damaged store is refused at start and,
 * when the damage shows at run time, makes outpostd stop without
 * acknowledging anything more; a file that is not an Outpost store is
 * refused; a store of an earlier outpostd is adopted; a full disk fails
 * writes with StoreFull while reads go on, until there is room again. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "harness.h"

#define OUTPOST_APPLICATION_ID 0x4F555450       /* "OUTP", outpostd(8) */

/* Whether this program runs in a mount namespace of its own, where the
 * disk-full test may mount a small tmpfs (needs root). */
static gboolean private_mounts;

static char *store_file(TestBus *tb) {
        return g_build_filename(tb->state_dir, "outpost.db", NULL);
}

/* SQL run on PATH by SQLite directly, as another program would. */
static void sql_exec(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        char *message = NULL;

        g_assert_cmpint(sqlite3_open(path, &db), ==, SQLITE_OK);
        if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK)
                g_error("%s: %s", sql, message);
        g_assert_cmpint(sqlite3_close(db), ==, SQLITE_OK);
}

static int sql_int(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int v;

        g_assert_cmpint(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
        g_assert_cmpint(sqlite3_prepare_v2(db, sql, -1, &st, NULL), ==, SQLITE_OK);
        g_assert_cmpint(sqlite3_step(st), ==, SQLITE_ROW);
        v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static GVariant *publish_call(GDBusConnection *c, int n, gsize pad, GError **error) {
        g_autofree char *filler = g_strnfill(pad, 'x');

        return test_call(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                         g_variant_new_parsed("('test/store', {'n': <%i>, 'pad': <%s>})", n, filler), "(t)", error);
}

static void on_published(GObject *source, GAsyncResult *res, gpointer data) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
        unsigned *in_flight = data;

        g_assert_no_error(error);
        (*in_flight)--;
}

/* N events of about PAD bytes each, 64 calls in flight at a time. */
static void publish_many(GDBusConnection *c, unsigned n, gsize pad) {
        g_autofree char *filler = g_strnfill(pad, 'x');
        unsigned in_flight = 0;

        for (unsigned i = 0; i < n; i++) {
                g_dbus_connection_call(c, OUTPOST_NAME, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                       g_variant_new_parsed("('test/store', {'n': <%i>, 'pad': <%s>})", (int) i, filler),
                                       G_VARIANT_TYPE("(t)"), G_DBUS_CALL_FLAGS_NONE, 30000, NULL,
                                       on_published, &in_flight);
                in_flight++;
                while (in_flight >= 64)
                        g_main_context_iteration(NULL, TRUE);
        }
        while (in_flight > 0)
                g_main_context_iteration(NULL, TRUE);
}

static GVariant *fetch_call(GDBusConnection *c, guint64 after, GError **error) {
        return test_call(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                         g_variant_new("(st^asu)", "", after, (const char *const[]) { NULL }, 10000u),
                         "(a(tsxa{sv})tb)", error);
}

/* A store made by outpostd with N events of about PAD bytes and a user,
 * closed cleanly: everything is in the database file, no -wal left. */
static void make_store(TestBus *tb, unsigned n, gsize pad) {
        g_autofree char *wal = g_build_filename(tb->state_dir, "outpost.db-wal", NULL);
        g_autofree char *id = NULL;
        struct stat st;

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        publish_many(tb->conn, n, pad);
        test_bus_stop_daemon(tb, SIGTERM);
        g_assert_true(stat(wal, &st) < 0 || st.st_size == 0);
}

/* Overwrite COUNT pages from page FIRST (1-based) with 0xff bytes, which no
 * b-tree page can start with. */
static void overwrite_pages(const char *path, unsigned first, unsigned count) {
        unsigned char header[100];
        unsigned page_size;
        int fd = open(path, O_RDWR | O_CLOEXEC);
        struct stat st;

        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(pread(fd, header, sizeof header, 0), ==, sizeof header);
        page_size = (unsigned) header[16] << 8 | header[17];
        if (page_size == 1)
                page_size = 65536;
        g_assert_cmpint(fstat(fd, &st), ==, 0);
        g_assert_cmpuint((guint64) st.st_size / page_size, >=, first + count - 1);

        g_autofree unsigned char *junk = g_malloc(page_size);
        memset(junk, 0xff, page_size);
        for (unsigned p = first; p < first + count; p++)
                g_assert_cmpint(pwrite(fd, junk, page_size, (off_t) (p - 1) * page_size), ==, (ssize_t) page_size);
        g_assert_cmpint(fsync(fd), ==, 0);
        close(fd);
}

static unsigned page_count(const char *path) {
        return (unsigned) sql_int(path, "PRAGMA page_count");
}

/* outpostd refuses to start: it exits non-zero before it even connects to
 * the bus (given one that does not exist, an outpostd that took the store
 * would stop all the same, saying something else), and says so naming the
 * store file and each of MENTIONS. Returns what it said. */
static char *assert_refused(TestBus *tb, const char *const *mentions) {
        const char *const args[] = { "--address=unix:path=/nonexistent/bus", NULL };
        g_autofree char *path = store_file(tb);
        char *err = NULL;
        int status;

        status = test_bus_run_daemon(tb, args, &err);
        g_printerr("%s", err);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_nonnull(strstr(err, path));
        for (size_t i = 0; mentions && mentions[i]; i++)
                if (!strstr(err, mentions[i]))
                        g_error("outpostd said '%s', which does not mention '%s'", err, mentions[i]);
        return err;
}

static void assert_refused_damaged(TestBus *tb) {
        const char *const mentions[] = { "damaged", "Restore it from a backup", "move it aside", NULL };
        g_autofree char *err = assert_refused(tb, mentions);

        /* At crit: a store that cannot be served is the worst there is. */
        g_assert_true(g_str_has_prefix(err, "<2>"));
}

static char *file_checksum(const char *path) {
        g_autofree char *contents = NULL;
        gsize length;

        g_assert_true(g_file_get_contents(path, &contents, &length, NULL));
        return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *) contents, length);
}

/* Damage */

/* 30 pages of a consistent store overwritten while outpostd is stopped: it
 * is refused at start. */
static void test_damaged_at_start(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);

        make_store(tb, 400, 1000);
        overwrite_pages(path, page_count(path) / 3, 30);
        assert_refused_damaged(tb);
        /* And again: the check does not mend or change the file. */
        assert_refused_damaged(tb);
}

/* After the damage was found at run time: outpostd logged it at crit naming
 * the file, gave up its name and exited non-zero; the next start refuses
 * the store. */
static void assert_stopped_for_damage(TestBus *tb) {
        g_autofree char *path = store_file(tb);
        g_autofree char *log = NULL;
        g_auto(GStrv) lines = NULL;
        gboolean crit = FALSE;
        int status;

        status = test_bus_wait_daemon_exit(tb);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        g_assert_false(test_bus_name_has_owner(tb->conn, OUTPOST_NAME));
        log = test_bus_take_daemon_log(tb);
        g_printerr("%s", log);
        lines = g_strsplit(log, "\n", -1);
        for (size_t i = 0; lines[i]; i++)
                crit = crit || (g_str_has_prefix(lines[i], "<2>") && strstr(lines[i], path));
        g_assert_true(crit);
        assert_refused_damaged(tb);
}

/* An error of a call that met the damaged store: the daemon says what
 * happened, or it had already left the bus. Never a reply. */
static void assert_not_acknowledged(GVariant *reply, GError *error, const char *path) {
        g_autofree char *remote = NULL;

        g_assert_null(reply);
        g_assert_nonnull(error);
        remote = g_dbus_error_get_remote_error(error);
        if (g_strcmp0(remote, "org.freedesktop.DBus.Error.Failed") == 0) {
                g_assert_nonnull(strstr(error->message, path));
                g_assert_nonnull(strstr(error->message, "damaged"));
        }
}

/* Every page after the first overwritten while outpostd serves: the next
 * Publish reads the last page of the events (not in SQLite's cache: only
 * the oldest events were read since the start), finds the damage, and is
 * not acknowledged. */
static void test_damaged_at_run_time(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = NULL;

        /* More than the 2000 events the first retention round reads. */
        make_store(tb, 2600, 200);
        test_bus_start_daemon(tb, NULL);
        overwrite_pages(path, 2, page_count(path) - 1);

        reply = publish_call(tb->conn, 1, 10, &error);
        if (error)
                g_printerr("Publish: %s\n", error->message);
        else
                g_printerr("Publish acknowledged on a damaged store\n");
        assert_not_acknowledged(reply, error, path);
        assert_stopped_for_damage(tb);
}

static void on_call_done(GObject *source, GAsyncResult *res, gpointer data) {
        GError **error = data;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, error);

        /* Not acknowledged: a reply here fails the test. */
        g_assert_null(reply);
}

/* A FetchSince meets the damage; a Publish sent right behind it, in flight
 * while outpostd stops, gets an error too. */
static void test_damaged_found_by_read(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);
        GError *fetch_error = NULL, *publish_error = NULL;

        make_store(tb, 2600, 200);
        test_bus_start_daemon(tb, NULL);
        overwrite_pages(path, 2, page_count(path) - 1);

        g_dbus_connection_call(tb->conn, OUTPOST_NAME, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                               g_variant_new("(st^asu)", "", (guint64) 0, (const char *const[]) { NULL }, 10000u),
                               NULL, G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_call_done, &fetch_error);
        g_dbus_connection_call(tb->conn, OUTPOST_NAME, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                               g_variant_new_parsed("('test/store', {'n': <1>})"),
                               NULL, G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_call_done, &publish_error);
        test_wait_until(fetch_error && publish_error, 30000);
        g_printerr("FetchSince: %s\nPublish: %s\n", fetch_error->message, publish_error->message);
        assert_not_acknowledged(NULL, fetch_error, path);
        assert_not_acknowledged(NULL, publish_error, path);
        g_error_free(fetch_error);
        g_error_free(publish_error);
        assert_stopped_for_damage(tb);
}

/* Files that are not Outpost stores */

static void test_foreign_database(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);
        g_autofree char *before = NULL, *after = NULL, *err = NULL;
        const char *const mentions[] = { "not an Outpost store", NULL };
        const char *const mentions_id[] = { "not an Outpost store", "application_id 0x12345678", NULL };

        g_assert_cmpint(g_mkdir_with_parents(tb->state_dir, 0700), ==, 0);
        /* Another program's database, without an application_id. */
        sql_exec(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('keep me');");
        before = file_checksum(path);
        err = assert_refused(tb, mentions);
        after = file_checksum(path);
        /* Refused as it was: not switched to WAL, not marked. */
        g_assert_cmpstr(before, ==, after);
        g_assert_cmpint(sql_int(path, "PRAGMA application_id"), ==, 0);
        g_assert_cmpint(sql_int(path, "SELECT count(*) FROM notes"), ==, 1);

        /* With an application_id of its own, even with Outpost's tables. */
        g_assert_cmpint(g_unlink(path), ==, 0);
        test_bus_start_daemon(tb, NULL);
        test_bus_stop_daemon(tb, SIGTERM);
        sql_exec(path, "PRAGMA application_id = 305419896");     /* 0x12345678 */
        g_free(assert_refused(tb, mentions_id));

        /* Empty, but another program's. */
        g_assert_cmpint(g_unlink(path), ==, 0);
        sql_exec(path, "PRAGMA application_id = 305419896");
        g_free(assert_refused(tb, mentions_id));
}

static void test_not_a_database(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);
        g_autoptr(GString) text = g_string_new(NULL);
        g_autofree char *err = NULL;
        const char *const mentions[] = { "not an SQLite database", "move it aside", NULL };

        for (int i = 0; i < 500; i++)
                g_string_append(text, "This is a text file, not a database.\n");
        g_assert_cmpint(g_mkdir_with_parents(tb->state_dir, 0700), ==, 0);
        g_assert_true(g_file_set_contents(path, text->str, text->len, NULL));
        err = assert_refused(tb, mentions);
        g_free(err);
        err = NULL;
        g_assert_true(g_file_get_contents(path, &err, NULL, NULL));
        g_assert_cmpstr(err, ==, text->str);
}

/* A store as the outpostd before the application_id mark wrote it: this
 * schema text, user_version 1, application_id 0. */
static const char earlier_schema[] =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS meta ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS users ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  tag TEXT NOT NULL,"
        "  name TEXT NOT NULL UNIQUE,"
        "  display_name TEXT NOT NULL,"
        "  email TEXT NOT NULL,"
        "  enabled INTEGER NOT NULL,"
        "  attributes BLOB NOT NULL,"
        "  created INTEGER NOT NULL,"
        "  modified INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS events ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  topic TEXT NOT NULL,"
        "  time INTEGER NOT NULL,"
        "  data BLOB NOT NULL);"
        "PRAGMA user_version = 1;"
        "INSERT INTO meta VALUES ('server-id', '6a1c0d6e-4a47-4c55-9a53-0f6c4a2f1e01');"
        "INSERT INTO meta VALUES ('history-id', '0b8f2d7c-2f1e-4a4b-8d5e-3c1a9e7b6f02');"
        "INSERT INTO users VALUES ('1f0e2d3c-4b5a-4978-8c6d-5e4f3a2b1c0d', 'tag-1', 'ann', 'Ann', 'ann@example.org', 1, X'', 1000, 1000);"
        "INSERT INTO events (topic, time, data) VALUES ('users', 1000, X'');"
        "INSERT INTO events (topic, time, data) VALUES ('app/one', 2000, X'');"
        "INSERT INTO events (topic, time, data) VALUES ('app/two', 3000, X'');";

static void test_earlier_store_adopted(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);
        g_autofree char *log = NULL, *printed = NULL;
        g_autoptr(GVariant) user = NULL, events = NULL, history = NULL, list = NULL, published = NULL;

        g_assert_cmpint(g_mkdir_with_parents(tb->state_dir, 0700), ==, 0);
        sql_exec(path, earlier_schema);
        g_assert_cmpint(sql_int(path, "PRAGMA application_id"), ==, 0);

        test_bus_start_daemon(tb, "[Events]\nRetentionSeconds=4294967295\n");
        user = test_call_ok(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                            g_variant_new("(s)", "1f0e2d3c-4b5a-4978-8c6d-5e4f3a2b1c0d"), "(a{sv})");
        printed = g_variant_print(user, FALSE);
        g_assert_nonnull(strstr(printed, "'ann@example.org'"));
        history = test_get_property(tb->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "HistoryId");
        g_assert_cmpstr(g_variant_get_string(history, NULL), ==, "0b8f2d7c-2f1e-4a4b-8d5e-3c1a9e7b6f02");
        events = fetch_call(tb->conn, 0, NULL);
        g_assert_nonnull(events);
        list = g_variant_get_child_value(events, 0);
        g_assert_cmpuint(g_variant_n_children(list), ==, 3);
        /* And it goes on from there. */
        published = publish_call(tb->conn, 4, 1, NULL);
        g_assert_nonnull(published);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, 4);

        log = test_bus_take_daemon_log(tb);
        g_assert_nonnull(strstr(log, "adopted"));
        /* And brought to schema version 2 (request ids) on the way. */
        g_assert_nonnull(strstr(log, "from schema version 1 to 2"));
        test_bus_stop_daemon(tb, SIGTERM);
        g_assert_cmpint(sql_int(path, "PRAGMA application_id"), ==, OUTPOST_APPLICATION_ID);
        g_assert_cmpint(sql_int(path, "PRAGMA user_version"), ==, 2);

        /* Marked now: adopted again without a word. */
        test_bus_start_daemon(tb, NULL);
        test_bus_stop_daemon(tb, SIGTERM);
}

/* A new store is marked at once. */
static void test_new_store_marked(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);

        test_bus_start_daemon(tb, NULL);
        test_bus_stop_daemon(tb, SIGTERM);
        g_assert_cmpint(sql_int(path, "PRAGMA application_id"), ==, OUTPOST_APPLICATION_ID);
        g_assert_cmpint(sql_int(path, "PRAGMA user_version"), ==, 2);
}

static void test_newer_schema(void) {
        g_autoptr(TestBus) tb = test_bus_new();
        g_autofree char *path = store_file(tb);
        const char *const mentions[] = { "schema version 7", "schema version 2", NULL };

        test_bus_start_daemon(tb, NULL);
        test_bus_stop_daemon(tb, SIGTERM);
        sql_exec(path, "PRAGMA user_version = 7");
        g_free(assert_refused(tb, mentions));
        g_assert_cmpint(sql_int(path, "PRAGMA user_version"), ==, 7);
}

/* A full disk */

/* Fill the file system of DIR with FILE until not one byte more fits. */
static void fill_disk(const char *file) {
        static const size_t chunks[] = { 1 << 16, 4096, 1 };
        g_autofree char *block = g_malloc0(1 << 16);
        int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        g_assert_cmpint(fd, >=, 0);
        for (size_t i = 0; i < G_N_ELEMENTS(chunks); i++)
                while (write(fd, block, chunks[i]) > 0)
                        ;
        g_assert_cmpint(errno, ==, ENOSPC);
        close(fd);
}

static void test_disk_full(void) {
        g_autoptr(TestBus) tb = NULL;
        g_autofree char *path = NULL, *filler = NULL, *log = NULL, *id = NULL;
        g_autoptr(GError) error = NULL, create_error = NULL;
        g_autoptr(GVariant) user = NULL, events = NULL, list = NULL, again = NULL;
        guint64 last, seq;

        if (!private_mounts) {
                g_test_skip("needs root and a mount namespace of its own, for a small tmpfs");
                return;
        }
        tb = test_bus_new();
        path = store_file(tb);
        filler = g_build_filename(tb->state_dir, "filler", NULL);
        g_assert_cmpint(g_mkdir_with_parents(tb->state_dir, 0700), ==, 0);
        g_assert_cmpint(mount("outpost-test", tb->state_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700"), ==, 0);

        test_bus_start_daemon(tb, NULL);
        id = test_create_user(tb->conn, "ann", NULL);
        publish_many(tb->conn, 10, 100);
        last = test_last_seq(tb->conn);

        fill_disk(filler);
        g_assert_null(publish_call(tb->conn, 100, 100, &error));
        test_assert_dbus_error(error, "StoreFull", path);
        g_assert_nonnull(strstr(error->message, "is full"));
        g_assert_null(test_call(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "CreateUser",
                                g_variant_new_parsed("({'name': <'bob'>},)"), "(ss)", &create_error));
        test_assert_dbus_error(create_error, "StoreFull", path);

        /* Reads are served all along. */
        user = test_call_ok(tb->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", id), "(a{sv})");
        events = fetch_call(tb->conn, 0, NULL);
        g_assert_nonnull(events);
        list = g_variant_get_child_value(events, 0);
        g_assert_cmpuint(g_variant_n_children(list), ==, last);
        g_assert_cmpuint(test_last_seq(tb->conn), ==, last);

        /* Room again: writes work, no restart needed, and what failed left
         * no trace. */
        g_assert_cmpint(g_unlink(filler), ==, 0);
        again = publish_call(tb->conn, 101, 100, NULL);
        g_assert_nonnull(again);
        g_variant_get(again, "(t)", &seq);
        g_assert_cmpuint(seq, ==, last + 1);
        g_free(test_create_user(tb->conn, "bob", NULL));

        log = test_bus_take_daemon_log(tb);
        g_printerr("%s", log);
        g_assert_nonnull(strstr(log, "full"));
        test_bus_stop_daemon(tb, SIGTERM);
        g_assert_cmpint(umount2(tb->state_dir, MNT_DETACH), ==, 0);
}

/* The test program gets a mount namespace of its own, where mounts do not
 * propagate back: a tmpfs mounted in it is gone with the program at the
 * latest. Done before any thread starts. */
static void setup_private_mounts(void) {
        if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0)
                return;
        private_mounts = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

int main(int argc, char **argv) {
        setup_private_mounts();
        test_init(&argc, &argv);
        g_test_add_func("/store/damaged-at-start", test_damaged_at_start);
        g_test_add_func("/store/damaged-at-run-time", test_damaged_at_run_time);
        g_test_add_func("/store/damaged-found-by-read", test_damaged_found_by_read);
        g_test_add_func("/store/foreign-database", test_foreign_database);
        g_test_add_func("/store/not-a-database", test_not_a_database);
        g_test_add_func("/store/earlier-store-adopted", test_earlier_store_adopted);
        g_test_add_func("/store/new-store-marked", test_new_store_marked);
        g_test_add_func("/store/newer-schema", test_newer_schema);
        g_test_add_func("/store/disk-full", test_disk_full);
        return g_test_run();
}
