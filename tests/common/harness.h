/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

/* The test harness: a private dbus-daemon with a system-bus-like
 * configuration that includes the project's own policy file, and the real
 * outpostd on it with a temporary state directory. Every process it starts
 * dies with the test program (PR_SET_PDEATHSIG), so a failing assertion
 * leaves nothing running. */

#define OUTPOST_NAME            "org.outpost.Outpost1"
#define OUTPOST_ROOT            "/org/outpost/Outpost1"
#define OUTPOST_USERS_PATH      OUTPOST_ROOT "/users"
#define OUTPOST_PRESENCE_PATH   OUTPOST_ROOT "/presence"
#define OUTPOST_MESSAGES_PATH   OUTPOST_ROOT "/messages"
#define OUTPOST_EVENTS_PATH     OUTPOST_ROOT "/events"
#define IFACE_REGISTRY          "org.outpost.Outpost1.Registry"
#define IFACE_USERS             "org.outpost.Outpost1.Users"
#define IFACE_PRESENCE          "org.outpost.Outpost1.Presence"
#define IFACE_ONLINE_USER       "org.outpost.Outpost1.OnlineUser"
#define IFACE_MESSAGES          "org.outpost.Outpost1.Messages"
#define IFACE_EVENTS            "org.outpost.Outpost1.Events"
#define ERROR_PREFIX            "org.outpost.Outpost1.Error."
#define OUTPOST_BRIDGE_PATH     OUTPOST_ROOT "/bridge"
#define IFACE_BRIDGE            "org.outpost.Outpost1.Bridge"
#define IFACE_PROPERTIES        "org.freedesktop.DBus.Properties"

typedef struct TestBus TestBus;
typedef struct BridgeProcess {
        TestBus *bus;           /* the bus it serves (borrowed) */
        GPid pid;
        char **argv;
        char *log_path;
        gsize log_offset;
} BridgeProcess;

/* Certificates for TLS links (tests/common/make-test-certs.sh), made once per
 * test program and removed at its exit. */
void test_make_certs(void);
const char *test_certs_dir(void);
/* A free TCP port on 127.0.0.1, kept from every other taker (bridges bind
 * it with SO_REUSEADDR) until the test program ends. */
unsigned free_port(void);

/* Start outpost-bridge on BUS with the given --listen/--upstream (either
 * may be NULL) and EXTRA options; fast reconnect and heartbeat settings. */
void bridge_process_start(BridgeProcess *p, TestBus *bus, const char *listen, const char *upstream,
                          const char *const *extra);
/* The same, run inside the network namespace NETNS (ip netns exec). */
void bridge_process_start_in(BridgeProcess *p, const char *netns, TestBus *bus, const char *listen,
                             const char *upstream, const char *const *extra);
/* The same, run by WRAPPER (a command line that ends with the program to
 * run, e.g. systemd-socket-activate -l ADDRESS). */
void bridge_process_start_wrapped(BridgeProcess *p, const char *const *wrapper, TestBus *bus, const char *listen,
                                  const char *upstream, const char *const *extra);
/* SIGTERM (checking a clean exit) or SIGKILL. */
void bridge_process_stop(BridgeProcess *p, int signal);
void bridge_process_restart(BridgeProcess *p);
/* Wait (at most TIMEOUT_MS) for the bridge to exit by itself; its wait status. */
int bridge_process_wait_exit(BridgeProcess *p, int timeout_ms);
/* Whether the bridge's log holds TEXT. */
gboolean bridge_process_logged(BridgeProcess *p, const char *text);

void bridge_process_clear(BridgeProcess *p);


struct TestBus {
        char *tmpdir;
        char *address;
        char *state_dir;
        char *config_path;      /* outpostd.conf, written by test_bus_start_daemon */
        GPid bus_pid;
        GPid daemon_pid;
        GPid polkit_pid;        /* the mock polkitd, when started */
        gsize daemon_log_offset; /* of outpostd.log, checked up to here */
        char *pg_database;      /* the store's database, with OUTPOST_TEST_POSTGRESQL */
        GDBusConnection *conn;  /* a client connection of the test itself */

        /* Bridged mode (OUTPOST_TEST_BRIDGED=1): this is the machine bus of
         * a central/site/machine deployment; outpostd runs on CENTRAL and
         * is reached through two bridges. */
        TestBus *central, *site;
        BridgeProcess bridges[3];
};

/* Whether outpostd keeps its store in PostgreSQL: OUTPOST_TEST_POSTGRESQL
 * holds a libpq connection string to a server (tests/postgresql/run-postgresql.sh),
 * and each bus's outpostd gets a database of its own there. */
gboolean test_store_is_postgresql(void);
/* Run SQL (no rows returned) on the PostgreSQL database of TB's outpostd
 * (the origin's, when TB is bridged), which must have been started. */
void test_pg_store_exec(TestBus *tb, const char *sql);

/* Whether the tests run through two bridges (OUTPOST_TEST_BRIDGED=1). */
gboolean test_bridged(void);
/* Internals of the bridged mode, for harness.c. */
void test_bridged_setup(TestBus *machine, TestBus *(*new_bus)(void));
void test_bridged_connect(TestBus *machine);
void test_bridged_wait_outage(TestBus *machine);
void test_bridged_free(TestBus *machine);
/* The bridge's State on the bus of C, read now. */
char *bridge_state(GDBusConnection *c);
/* Wait until the bridge's State on the bus of C is STATE. */
void wait_bridge_state(GDBusConnection *c, const char *state, int timeout_ms);


/* Start a private bus. Fails the test when it cannot. */
TestBus *test_bus_new(void);
/* The same with EXTRA (elements such as <limit name="max_outgoing_bytes">)
 * added to the bus configuration; not in bridged mode. */
TestBus *test_bus_new_with_config(const char *extra);
void test_bus_free(TestBus *tb);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestBus, test_bus_free)

/* Start outpostd with CONFIG as the contents of its config file (NULL:
 * leave the file as it is, or missing) and wait until it owns its name. Keeps the state directory across restarts. */
void test_bus_start_daemon(TestBus *tb, const char *config);
/* The two halves of test_bus_start_daemon() (not bridged), for a daemon
 * that may wait before it serves (a standby): start it, and wait (at most
 * TIMEOUT_MS) until it owns its name. */
void test_bus_spawn_daemon(TestBus *tb, const char *config);
void test_bus_wait_daemon_serving(TestBus *tb, int timeout_ms);
/* Stop outpostd with SIGNAL (SIGTERM or SIGKILL) and wait for it to exit;
 * returns its wait status. */
int test_bus_stop_daemon(TestBus *tb, int signal);
/* Wait until outpostd (not bridged) exits by itself; returns its wait
 * status. What it logged is left for test_bus_take_daemon_log(). */
int test_bus_wait_daemon_exit(TestBus *tb);
/* What outpostd (not bridged) logged since the last look, which the check
 * when it stops then skips: for a test that provokes errors on purpose and
 * asserts them. */
char *test_bus_take_daemon_log(TestBus *tb);
/* The pid of the bus's outpostd; when bridged, the one at central. */
GPid test_bus_daemon_pid(TestBus *tb);
/* Run outpostd with ARGS (NULL-terminated, after the program name) to its
 * end; returns its exit status and its stderr in *ret_stderr. */
int test_bus_run_daemon(TestBus *tb, const char *const *args, char **ret_stderr);

/* A new client connection to the bus. */
GDBusConnection *test_bus_connect(TestBus *tb);
/* Whether NAME (well-known or unique) has an owner on the bus of C. */
gboolean test_bus_name_has_owner(GDBusConnection *c, const char *name);

/* Synchronous call to outpostd; returns the reply, or NULL with *error set. */
GVariant *test_call(GDBusConnection *c, const char *path, const char *iface, const char *method,
                    GVariant *params, const char *reply_type, GError **error);
/* The same, asserting success. */
GVariant *test_call_ok(GDBusConnection *c, const char *path, const char *iface, const char *method,
                       GVariant *params, const char *reply_type);
/* The value of property NAME of IFACE at PATH of outpostd (Properties.Get). */
GVariant *test_get_property(GDBusConnection *c, const char *path, const char *iface, const char *name);
/* The object of an online user: /org/outpost/Outpost1/presence/<id>, '-' as '_'. */
char *test_online_user_path(const char *user_id);
/* Whether USER_ID is online as C sees it: its object answers UserId. */
gboolean test_is_online(GDBusConnection *c, const char *user_id);
/* Presence.OnlineCount. */
guint test_online_count(GDBusConnection *c);
/* A GDBusObjectManagerClient of the service on C, loaded, with plain
 * GDBusProxy objects as a generic client would have. */
GDBusObjectManager *test_object_manager_new(GDBusConnection *c);
/* Whether M has USER_ID's OnlineUser object, with that UserId. */
gboolean test_objects_show_online(GDBusObjectManager *m, const char *user_id);
/* Events.LastSeq: also a round trip after which every Event the daemon sent
 * C before it has arrived. */
guint64 test_last_seq(GDBusConnection *c);
/* The history of HISTORY after AFTER, read with FetchSince on C, asserted
 * to run one seq after the other (no gap, no double) up to LastSeq: seq
 * (a gint64 key) → the int KEY of the events on TOPIC, -1 for the others. */
GHashTable *test_fetch_history_ints(GDBusConnection *c, const char *history, guint64 after, const char *topic,
                                    const char *key);
/* Assert that ERROR is the D-Bus error NAME (a full name, or a suffix
 * after "org.outpost.Outpost1.Error.") and that its message mentions
 * MENTION (may be NULL). */
void test_assert_dbus_error(GError *error, const char *name, const char *mention);

/* polkit on the test bus: python3-dbusmock's polkitd template, which owns
 * org.freedesktop.PolicyKit1 (the test bus lets root own it) and denies
 * every action until told otherwise. Start it before the callers need it;
 * stop it to see what outpostd does without polkit. */
/* Returns FALSE after g_test_skip() when python3-dbusmock is missing. */
gboolean test_bus_start_polkit(TestBus *tb);
void test_bus_stop_polkit(TestBus *tb);
/* Call METHOD of the mock's control interface (org.freedesktop.DBus.Mock,
 * e.g. SimulateHang, HaveHangingCalls, ReleaseHangingCalls), asserting
 * success; returns the reply. */
GVariant *test_polkit_mock(TestBus *tb, const char *method, GVariant *params);
/* Allow exactly ACTIONS (NULL-terminated; NULL or empty: none). */
void test_polkit_set_allowed(TestBus *tb, const char *const *actions);
/* Make the mock answer every question with a challenge (not authorized,
 * but would be after authentication) when the call did not allow user
 * interaction, and authorize it when it did, as if the user had
 * authenticated: so a test sees both the mapping and the flag. */
void test_polkit_challenge(TestBus *tb);

/* Calls from another user. Only root can switch users: when the test does
 * not run as root these return FALSE after g_test_skip(), and the test
 * returns at once. */
gboolean test_can_switch_user(void);
/* Call DEST (NULL: outpostd) from a process running as UID/GID with no
 * supplementary groups, connected to the test bus on its own; IFACE ""
 * sends the call without an interface. FLAGS as for
 * g_dbus_connection_call() (e.g. G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION).
 * Returns the reply (checked against REPLY_TYPE unless NULL), or NULL with
 * *error set to the D-Bus error the caller got. */
GVariant *test_call_as(TestBus *tb, uid_t uid, gid_t gid, GDBusCallFlags flags, const char *dest,
                       const char *path, const char *iface, const char *method,
                       GVariant *params, const char *reply_type, GError **error);
#define TEST_UID_NOBODY 65534
#define TEST_GID_NOGROUP 65534

/* The group whose members the bus policy lets receive the messages of
 * every user (MessageReceived), for test_listen_as(): outpost-messages
 * where it exists; elsewhere an existing group stands in for it, in a
 * copy of the project's policy that the test buses then include. Call it
 * in main(), before any test: it may set OUTPOST_POLICY. Returns its gid,
 * or (gid_t) -1 when no group can stand in. */
gid_t test_messages_group(void);

/* A client of another user (UID/GID, no supplementary groups) that
 * records every signal outpostd's name sends it, as the bus policy lets it
 * receive them. It has subscribed when test_listen_as() returns. */
typedef struct TestListener TestListener;
TestListener *test_listen_as(TestBus *tb, uid_t uid, gid_t gid);
/* Publish an end marker (as the test, on TB's own connection) and return
 * what the listener received before it, one "INTERFACE.MEMBER TOPIC" line
 * per signal (TOPIC for the signals of an event, else empty), in arrival
 * order. The marker comes after everything the service sent before it, so
 * a signal missing here was not delivered, not merely late. Frees L. */
char **test_listener_finish(TestListener *l);

/* Everything a client can see of outpostd's state, as text to compare
 * before and after a call that must change nothing: every model
 * (GetManagedObjects: LastSeq, Generation, the online users, ...) and every user. */
char *test_state_snapshot(GDBusConnection *c);

/* Event (or MessageReceived) signals on one connection, in arrival order. */
typedef struct EventWatch {
        GDBusConnection *conn;
        guint id;
        GPtrArray *events;      /* (tsxa{sv}) of each signal */
} EventWatch;

EventWatch *event_watch_new(GDBusConnection *c);
/* The same for the Messages manager's MessageReceived signals, which carry
 * the events of messages/ topics. */
EventWatch *message_watch_new(GDBusConnection *c);
void event_watch_free(EventWatch *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EventWatch, event_watch_free)
/* After this, W holds every Event the daemon sent before now: the reply
 * to a round trip on W's connection comes after them. */
void event_watch_sync(EventWatch *w);

/* Every message a connection receives, in arrival order and before any
 * dispatching (a GDBus filter, which runs in the connection's worker
 * thread): for asserting the order of signals and replies. */
typedef struct Arrivals Arrivals;
Arrivals *arrivals_new(GDBusConnection *c);
/* Close the connection first: until then its worker may still be in the
 * filter. */
void arrivals_free(Arrivals *a);
guint arrivals_len(Arrivals *a);
/* A copy of what arrived so far (GDBusMessage, referenced). */
GPtrArray *arrivals_snapshot(Arrivals *a);
typedef gboolean (*ArrivalMatch)(GDBusMessage *m, gconstpointer data);
/* The index of the first message at or after FROM that MATCH accepts, or -1. */
int arrivals_find(Arrivals *a, guint from, ArrivalMatch match, gconstpointer data);
/* The index of the method return to the call with SERIAL, or -1. */
int arrivals_find_reply(Arrivals *a, guint32 serial);
/* The index of the first signal at or after FROM of a presence change:
 * MEMBER "InterfacesAdded" or "InterfacesRemoved" of the object PATH, or
 * "PropertiesChanged" (of the manager at PATH) or "Event" carrying
 * GENERATION; -1 if none arrived. */
int arrivals_find_presence(Arrivals *a, guint from, const char *member, const char *path, guint64 generation);

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
