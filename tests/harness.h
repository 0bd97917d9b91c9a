/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

/* The test harness: a private dbus-daemon with a system-bus-like
 * configuration that includes the project's own policy file, and the real
 * outpostd on it with a temporary state directory. Every process it starts
 * dies with the test program (PR_SET_PDEATHSIG), so a failing assertion
 * leaves nothing running. */

#define OUTPOST_NAME       "org.outpost.Outpost1"
#define OUTPOST_ROOT       "/org/outpost/Outpost1"
#define OUTPOST_USERS      OUTPOST_ROOT "/users"
#define OUTPOST_PRESENCE   OUTPOST_ROOT "/presence"
#define OUTPOST_MESSAGES   OUTPOST_ROOT "/messages"
#define OUTPOST_EVENTS     OUTPOST_ROOT "/events"
#define IFACE_REGISTRY     "org.outpost.Outpost1.Registry"
#define IFACE_USERS        "org.outpost.Outpost1.Users"
#define IFACE_PRESENCE     "org.outpost.Outpost1.Presence"
#define IFACE_MESSAGES     "org.outpost.Outpost1.Messages"
#define IFACE_EVENTS       "org.outpost.Outpost1.Events"
#define ERROR_PREFIX       "org.outpost.Outpost1.Error."

typedef struct TestBus {
        char *tmpdir;
        char *address;
        char *state_dir;
        char *config_path;      /* outpostd.conf, written by test_bus_start_daemon */
        GPid bus_pid;
        GPid daemon_pid;
        gsize daemon_log_offset; /* of outpostd.log, checked up to here */
        GDBusConnection *conn;  /* a client connection of the test itself */
} TestBus;

/* Start a private bus. Fails the test when it cannot. */
TestBus *test_bus_new(void);
void test_bus_free(TestBus *tb);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestBus, test_bus_free)

/* Start outpostd with CONFIG as the contents of its config file (NULL:
 * leave the file as it is, or missing) and wait until it owns its name. Keeps the state directory across restarts. */
void test_bus_start_daemon(TestBus *tb, const char *config);
/* Stop outpostd with SIGNAL (SIGTERM or SIGKILL) and wait for it to exit;
 * returns its wait status. */
int test_bus_stop_daemon(TestBus *tb, int signal);
/* Run outpostd with ARGS (NULL-terminated, after the program name) to its
 * end; returns its exit status and its stderr in *ret_stderr. */
int test_bus_run_daemon(TestBus *tb, const char *const *args, char **ret_stderr);

/* A new client connection to the bus. */
GDBusConnection *test_bus_connect(TestBus *tb);

/* Synchronous call to outpostd; returns the reply, or NULL with *error set. */
GVariant *test_call(GDBusConnection *c, const char *path, const char *iface, const char *method,
                    GVariant *params, const char *reply_type, GError **error);
/* The same, asserting success. */
GVariant *test_call_ok(GDBusConnection *c, const char *path, const char *iface, const char *method,
                       GVariant *params, const char *reply_type);
/* Assert that ERROR is the D-Bus error NAME (a full name, or a suffix
 * after "org.outpost.Outpost1.Error.") and that its message mentions
 * MENTION (may be NULL). */
void test_assert_dbus_error(GError *error, const char *name, const char *mention);

/* Create a user named NAME; returns its id, and its tag in *ret_tag. */
char *test_create_user(GDBusConnection *c, const char *name, char **ret_tag);

/* Run the main context until CONDITION (evaluated each iteration) holds or
 * TIMEOUT_MS passes; fails the test on timeout. */
#define test_wait_until(condition, timeout_ms)                                          \
        G_STMT_START {                                                                  \
                gint64 _deadline = g_get_monotonic_time() + (timeout_ms) * 1000;        \
                while (!(condition)) {                                                  \
                        if (g_get_monotonic_time() > _deadline)                         \
                                g_error("Timed out waiting for: %s", #condition);        \
                        g_main_context_iteration(NULL, FALSE);                          \
                        g_usleep(1000);                                                 \
                }                                                                       \
        } G_STMT_END

/* Sets up the test environment (g_test_init and friends). */
void test_init(int *argc, char ***argv);
