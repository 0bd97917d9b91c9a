/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a remote peer can and cannot do at a listener (DESIGN.md §5): it
 * reaches methods under /org/outpost/Outpost1 of org.outpost.Outpost1 and
 * nothing else; a peer without a certificate from the CA never gets a
 * D-Bus connection; garbage on the link does not hurt the listener. The
 * peer here is a raw sd-bus connection over the real TLS link. */
#include "config.h"

#include <arpa/inet.h>
#include <gio/gunixfdlist.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "bridge-harness.h"
#include "peer-link.h"

static void central_start_with(Central *c, const char *const *extra) {
        central_start_on(c, test_bus_new(), extra);
}

static void central_start(Central *c) {
        central_start_with(c, NULL);
}

/* Connect as site1, retrying while the listener starts. */
static sd_bus *connect_site(Central *c, Dial **ret) {
        return connect_as(c, "site1", ret);
}

static void test_reaches_only_the_service(void) {
        Central c = {};
        Dial *link = NULL;
        sd_bus *bus;
        Call r;

        central_start(&c);
        bus = connect_site(&c, &link);

        call(c.event, bus, NULL, OUTPOST_ROOT, IFACE_REGISTRY, "GetManager", &r, "s", "users");
        g_assert_true(r.ok);

        call(c.event, bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames", &r, NULL);
        assert_denied(&r, "org.freedesktop.DBus");
        call(c.event, bus, NULL, "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames", &r, NULL);
        assert_denied(&r, "/org/freedesktop/DBus");
        call(c.event, bus, NULL, OUTPOST_ROOT, "org.freedesktop.DBus", "RequestName", &r, "su", "org.evil", 0);
        assert_denied(&r, "org.freedesktop.DBus");
        call(c.event, bus, NULL, OUTPOST_ROOT, "org.freedesktop.DBus", "AddMatch", &r, "s", "eavesdrop=true");
        assert_denied(&r, "org.freedesktop.DBus");
        call(c.event, bus, NULL, OUTPOST_ROOT, "org.freedesktop.DBus.Monitoring", "BecomeMonitor", &r, "asu", 0, 0);
        assert_denied(&r, "Monitoring");
        call(c.event, bus, "org.freedesktop.PolicyKit1", OUTPOST_ROOT, IFACE_REGISTRY, "ListManagers", &r, NULL);
        assert_denied(&r, "org.freedesktop.PolicyKit1");
        call(c.event, bus, NULL, "/org/outpost", IFACE_REGISTRY, "ListManagers", &r, NULL);
        assert_denied(&r, "/org/outpost");
        call(c.event, bus, NULL, "/org/outpost/Outpost10", IFACE_REGISTRY, "ListManagers", &r, NULL);
        assert_denied(&r, "/org/outpost/Outpost10");

        /* Still served after all that. */
        call(c.event, bus, NULL, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers", &r, "su", "", 10);
        g_assert_true(r.ok);

        sd_bus_close_unref(bus);
        dial_free(link);
        central_stop(&c);
}

static void test_refuses_foreign_certificates(void) {
        Central c = {};
        Dial *link = NULL;
        sd_bus *bus;
        Call r;

        central_start(&c);
        bus = connect_site(&c, &link);   /* the listener is up */
        sd_bus_close_unref(bus);
        dial_free(link);

        /* A certificate from another CA. */
        assert_refused(&c, "intruder");
        /* No certificate at all: tests/bridge/test-link.c, which speaks raw TLS. */

        bus = connect_site(&c, &link);
        call(c.event, bus, NULL, OUTPOST_ROOT, IFACE_REGISTRY, "ListManagers", &r, NULL);
        g_assert_true(r.ok);
        sd_bus_close_unref(bus);
        dial_free(link);
        central_stop(&c);
}

/* A new peer is served after whatever the test did to the listener. */
static void assert_listener_serves(Central *c) {
        Dial *link = NULL;
        sd_bus *bus = connect_site(c, &link);
        Call r;

        call(c->event, bus, NULL, OUTPOST_ROOT, IFACE_REGISTRY, "ListManagers", &r, NULL);
        g_assert_true(r.ok);
        sd_bus_close_unref(bus);
        dial_free(link);
}

static void test_garbage_after_handshake(void) {
        Central c = {};
        Dial *link = NULL;
        sd_bus *bus;
        char junk[4096];

        central_start(&c);
        bus = connect_site(&c, &link);
        sd_bus_close_unref(bus);
        dial_free(link);

        /* Random bytes where the D-Bus handshake should be. */
        for (int round = 0; round < 5; round++) {
                Dial *d = dial(c.event, c.port, "site1");

                g_assert_cmpint(d->fd, >=, 0);
                for (size_t i = 0; i < sizeof junk; i++)
                        junk[i] = (char) g_random_int_range(0, 256);
                (void) write(d->fd, junk, sizeof junk);
                for (int i = 0; i < 20; i++)
                        sd_event_run(c.event, 10000);
                close(d->fd);
                dial_free(d);
        }

        assert_listener_serves(&c);
        central_stop(&c);
}

/* Publish with data {"blob": N bytes}, through BUS; waits for the answer. */
static void publish_blob(Central *c, sd_bus *bus, size_t n, Call *r) {
        g_autofree uint8_t *blob = g_malloc0(n);
        sd_bus_message *m = NULL;

        *r = (Call) { .error = SD_BUS_ERROR_NULL };
        g_assert_cmpint(sd_bus_message_new_method_call(bus, &m, "org.outpost.Outpost1", OUTPOST_ROOT "/events",
                                                       IFACE_EVENTS, "Publish"), >=, 0);
        g_assert_cmpint(sd_bus_message_append(m, "s", "test"), >=, 0);
        g_assert_cmpint(sd_bus_message_open_container(m, 'a', "{sv}"), >=, 0);
        g_assert_cmpint(sd_bus_message_open_container(m, 'e', "sv"), >=, 0);
        g_assert_cmpint(sd_bus_message_append(m, "s", "blob"), >=, 0);
        g_assert_cmpint(sd_bus_message_open_container(m, 'v', "ay"), >=, 0);
        g_assert_cmpint(sd_bus_message_append_array(m, 'y', blob, n), >=, 0);
        for (int i = 0; i < 3; i++)
                g_assert_cmpint(sd_bus_message_close_container(m), >=, 0);
        g_assert_cmpint(sd_bus_call_async(bus, NULL, m, call_on_reply, r, 10 * 1000000ULL), >=, 0);
        sd_bus_message_unref(m);
        while (!r->done)
                g_assert_cmpint(sd_event_run(c->event, 1000000), >=, 0);
}

/* Whether the listener's log says TEXT, waiting a little for it. */
static bool listener_logged(Central *c, const char *text) {
        for (int i = 0; i < 100; i++) {
                g_autofree char *log = NULL;

                if (g_file_get_contents(c->listener.log_path, &log, NULL, NULL) && strstr(log, text))
                        return true;
                g_usleep(50000);
        }
        return false;
}

/* A message under the listener's size limit is relayed (and judged by
 * the service); one over it drops the peer as soon as its header arrives,
 * with a warning naming both sizes, and the listener serves others on. */
static void test_oversized_message_drops_peer(void) {
        Central c = {};
        Dial *link = NULL;
        sd_bus *bus;
        Call r;

        central_start(&c);
        bus = connect_site(&c, &link);
        publish_blob(&c, bus, 900u << 10, &r);
        g_assert_false(r.ok);
        g_assert_cmpstr(r.error.name, ==, ERROR_PREFIX "LimitExceeded");  /* outpostd: data over 64 KiB */
        sd_bus_error_free(&r.error);

        publish_blob(&c, bus, 2u << 20, &r);
        g_assert_false(r.ok);
        g_test_message("the peer's call ended with %s: %s", r.error.name, r.error.message);
        sd_bus_error_free(&r.error);
        g_assert_true(listener_logged(&c, "dropped: peer sent a message of 2097"));
        g_assert_true(listener_logged(&c, "more than the limit of 1048576"));
        sd_bus_close_unref(bus);
        dial_free(link);

        assert_listener_serves(&c);
        central_stop(&c);
}


/* ---- connections that never say anything ------------------------------ */

#define FLOOD           300
#define PER_ADDRESS     16      /* the listener's default max-connections-per-address */

/* A TCP connection to the listener that will never send a byte. */
static int connect_silently(unsigned port) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        g_assert_cmpint(fd, >=, 0);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        g_assert_cmpint(connect(fd, (struct sockaddr *) &sin, sizeof sin), ==, 0);
        return fd;
}

/* How many of FDS the listener has closed (end of stream or reset). */
static unsigned count_closed(const int *fds, size_t n) {
        unsigned closed = 0;
        char c;

        for (size_t i = 0; i < n; i++) {
                struct pollfd p = { .fd = fds[i], .events = POLLIN };

                if (poll(&p, 1, 0) == 1 && recv(fds[i], &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
                        closed++;
        }
        return closed;
}

/* Hundreds of silent connections from one address: the listener keeps
 * the newest few, closes the others (it would otherwise hold each until
 * its handshake timed out, here never), says so once, and a known peer
 * from the same address is still served while the flood is held open. */
static void test_silent_flood_keeps_known_peers_in(void) {
        static const char *const extra[] = { "--handshake-timeout-sec=600", NULL };
        Central c = {};
        int flood[FLOOD];
        unsigned closed = 0;

        central_start_with(&c, extra);
        assert_listener_serves(&c);

        for (size_t i = 0; i < FLOOD; i++)
                flood[i] = connect_silently(c.port);
        /* A bound for a busy machine, not a measure of speed. */
        for (int i = 0; i < 600 && closed < FLOOD - PER_ADDRESS; i++) {
                closed = count_closed(flood, FLOOD);
                g_usleep(50000);
        }
        g_assert_cmpuint(closed, ==, FLOOD - PER_ADDRESS);
        g_assert_true(listener_logged(&c, "still in the TLS handshake to make room"));
        g_assert_true(listener_logged(&c, "at most 16 from one address (max-connections-per-address)"));

        assert_listener_serves(&c);

        for (size_t i = 0; i < FLOOD; i++)
                close(flood[i]);
        central_stop(&c);
}

/* Real peers all at once, as after a restart of the listener: however few
 * handshakes may run at once, each peer waits its turn in the backlog and
 * none is closed to make room (which would send it into its backoff). */
#define STORM 48
static void test_storm_of_peers_waits_its_turn(void) {
        static const char *const extra[] = { "--max-handshakes=2", "--max-connections-per-address=1000", NULL };
        g_autofree char *log = NULL;
        gint64 deadline;
        Dial *storm[STORM];
        Central c = {};
        bool all_done;

        central_start_with(&c, extra);
        assert_listener_serves(&c);

        for (size_t i = 0; i < STORM; i++)
                storm[i] = dial_start(c.event, c.port, "site1");
        /* A bound for a busy machine, not a measure of speed. */
        deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
        do {
                all_done = true;
                for (size_t i = 0; i < STORM; i++)
                        all_done = all_done && storm[i]->done;
                if (!all_done)
                        g_assert_cmpint(sd_event_run(c.event, 100000), >=, 0);
        } while (!all_done && g_get_monotonic_time() < deadline);
        for (size_t i = 0; i < STORM; i++) {
                g_assert_true(storm[i]->done);
                g_assert_cmpstr(storm[i]->error, ==, NULL);
                g_assert_cmpint(storm[i]->fd, >=, 0);
        }
        g_assert_true(listener_logged(&c, "All 2 TLS handshake slots are busy"));
        g_assert_true(g_file_get_contents(c.listener.log_path, &log, NULL, NULL));
        g_assert_null(strstr(log, "to make room"));

        for (size_t i = 0; i < STORM; i++)
                dial_free(storm[i]);
        central_stop(&c);
}

/* ---- what one local caller of an importer can do to the link ---------- */

static guint32 bridge_reconnects(GDBusConnection *c) {
        g_autoptr(GVariant) v = test_get_property(c, OUTPOST_ROOT "/bridge", IFACE_BRIDGE, "Reconnects");

        return g_variant_get_uint32(v);
}

/* GetUser with an id of N bytes, from C. */
static GVariant *get_user(GDBusConnection *c, size_t n, GError **error) {
        g_autofree char *id = g_malloc(n + 1);

        memset(id, 'a', n);
        id[n] = '\0';
        return test_call(c, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", id), NULL, error);
}

/* The site's link to central survived whatever the test did on the site
 * bus: still connected, never reconnected, and central never dropped it. */
static void assert_site_link_kept(Deployment *d, guint32 reconnects) {
        g_autofree char *log = NULL;
        g_autofree char *state = NULL;

        /* A round trip over the link first: a drop would be seen by now. */
        g_autoptr(GVariant) users = test_call_ok(d->site->conn, OUTPOST_USERS_PATH, IFACE_USERS, "ListUsers",
                                                 g_variant_new("(su)", "", 10), NULL);
        state = bridge_state(d->site->conn);
        g_assert_cmpstr(state, ==, "connected");
        g_assert_cmpuint(bridge_reconnects(d->site->conn), ==, reconnects);
        g_assert_true(g_file_get_contents(d->central_listener.log_path, &log, NULL, NULL));
        g_assert_null(strstr(log, "dropped"));
}

/* The relayed GetUser call's header: path, member, interface and
 * signature fields (120 bytes with padding); its body, the string's
 * length, the string and its NUL. Measured, not guessed: a call of exactly
 * the limit must go through, and one byte more must not. */
#define GET_USER_OVERHEAD (120 + 4 + 1)

static void test_importer_refuses_what_would_end_the_link(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        g_autoptr(GVariant) nested = g_variant_ref_sink(g_variant_new_string("deep"));
        guint32 reconnects = bridge_reconnects(d->site->conn);
        GVariant *r;

        /* Any local user may call GetUser; 2 MiB is twice the link's limit. */
        r = get_user(d->site->conn, 2u << 20, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "LimitExceeded", "more than the limit of 1048576 (max-message-bytes)");
        g_clear_error(&error);
        assert_site_link_kept(d, reconnects);

        /* At the limit exactly, central's listener takes it (and outpostd
         * judges the id); one byte more is refused at the site. */
        r = get_user(d->site->conn, (1u << 20) - GET_USER_OVERHEAD, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "InvalidArgument", NULL);
        g_clear_error(&error);
        r = get_user(d->site->conn, (1u << 20) - GET_USER_OVERHEAD + 1, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "LimitExceeded", "a message of 1048577 bytes");
        g_clear_error(&error);

        /* A unix fd cannot cross a link: refused here, by name. */
        g_assert_cmpint(g_unix_fd_list_append(fds, 0, NULL), ==, 0);
        r = g_dbus_connection_call_with_unix_fd_list_sync(d->site->conn, OUTPOST_NAME, OUTPOST_USERS_PATH,
                                                          IFACE_USERS, "GetUser", g_variant_new("(h)", 0), NULL,
                                                          G_DBUS_CALL_FLAGS_NONE, 30000, fds, NULL, NULL, &error);
        g_assert_null(r);
        test_assert_dbus_error(error, "InvalidArgument", "Unix file descriptors cannot be relayed");
        g_clear_error(&error);

        /* As deep as the local bus lets a call nest: it crosses the link,
         * and outpostd refuses the arguments. */
        for (int i = 0; i < 60; i++)
                nested = g_variant_ref_sink(g_variant_new_variant(g_steal_pointer(&nested)));
        r = test_call(d->site->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                      g_variant_new_tuple(&nested, 1), NULL, &error);
        g_assert_null(r);
        g_assert_nonnull(error);
        g_clear_error(&error);

        assert_site_link_kept(d, reconnects);
}

typedef struct Pending {
        GError *error;
        gboolean done;
} Pending;

static void on_pending_done(GObject *source, GAsyncResult *result, gpointer userdata) {
        Pending *p = userdata;
        g_autoptr(GVariant) r = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &p->error);

        p->done = TRUE;
}

static void get_user_async(GDBusConnection *c, Pending *p) {
        g_dbus_connection_call(c, OUTPOST_NAME, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                               g_variant_new("(s)", "00000000-0000-4000-8000-000000000001"), NULL,
                               G_DBUS_CALL_FLAGS_NONE, 60000, NULL, on_pending_done, p);
}

static void wait_pending(Pending *p, int seconds) {
        gint64 deadline = g_get_monotonic_time() + seconds * G_USEC_PER_SEC;

        while (!p->done && g_get_monotonic_time() < deadline)
                if (!g_main_context_iteration(NULL, FALSE))
                        g_usleep(10000);
}

/* The listener answers calls beyond its limit in flight with an error: a
 * local caller that floods must hit its own, smaller, limit at the site,
 * and leave room for others. Central's outpostd is stopped, so that calls
 * stay in flight for as long as the test needs them to. */
static void test_importer_caps_calls_per_caller(void) {
        static const char *const extra[] = { "--max-calls-per-caller=2", NULL };
        g_autoptr(Deployment) d = deployment_new_with(NULL, extra);
        g_autoptr(GDBusConnection) greedy = test_bus_connect(d->site);
        g_autoptr(GDBusConnection) other = test_bus_connect(d->site);
        guint32 reconnects = bridge_reconnects(d->site->conn);
        Pending calls[3] = {}, others = {};
        GPid outpostd = test_bus_daemon_pid(d->central);

        g_assert_cmpint(kill(outpostd, SIGSTOP), ==, 0);
        for (size_t i = 0; i < G_N_ELEMENTS(calls); i++)
                get_user_async(greedy, &calls[i]);
        wait_pending(&calls[2], 10);
        get_user_async(other, &others);
        wait_pending(&others, 1);
        g_assert_cmpint(kill(outpostd, SIGCONT), ==, 0);

        g_assert_true(calls[2].done);
        test_assert_dbus_error(calls[2].error, "LimitExceeded", "at most 2, max-calls-per-caller");
        for (size_t i = 0; i < 2; i++) {
                wait_pending(&calls[i], 30);
                test_assert_dbus_error(calls[i].error, "NotFound", NULL);
                g_clear_error(&calls[i].error);
        }
        wait_pending(&others, 30);
        test_assert_dbus_error(others.error, "NotFound", NULL);
        g_clear_error(&others.error);
        g_clear_error(&calls[2].error);
        assert_site_link_kept(d, reconnects);
}

/* Replies come back in the order the upstream answers. A caller paging
 * through FetchSince (replies up to 8 MiB each) must not put all of its
 * pages ahead of another caller's small call: its large calls go upstream
 * one at a time, and the other call overtakes them. outpostd is stopped
 * while the calls are made, so the order they reach it is the order the
 * site's importer sent them; outpostd answers them in that order (the
 * pages are of bulk/ events, for which it asks nobody). */
typedef struct Ordered {
        int *counter;
        int position;
        GError *error;
} Ordered;

static void on_ordered_done(GObject *source, GAsyncResult *result, gpointer userdata) {
        Ordered *o = userdata;
        g_autoptr(GVariant) r = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &o->error);

        o->position = ++*o->counter;
}

static void wait_ordered(Ordered *o) {
        gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;

        while (o->position == 0 && g_get_monotonic_time() < deadline)
                g_main_context_iteration(NULL, TRUE);
        g_assert_cmpint(o->position, >, 0);
}

/* Events of about 60 kB on topic bulk/blob at central: a page of 16 of
 * them is about 1 MB, so that replies are far apart on the link. */
static void publish_bulk(Deployment *d) {
        g_autofree guint8 *blob = g_malloc0(60000);

        for (int i = 0; i < 16; i++) {
                GVariant *data = g_variant_new_parsed("{'blob': <%@ay>}",
                                                      g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, blob, 60000, 1));
                g_autoptr(GVariant) seq = test_call_ok(d->central->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                                       g_variant_new("(s@a{sv})", "bulk/blob", data), "(t)");
        }
}

/* N FetchSince calls of bulk/ pages from C, made before this returns: the
 * importer reads one connection's messages in order, so once it answered
 * the Ping it has relayed or queued every page. */
static void fetch_pages_async(GDBusConnection *c, Ordered *pages, size_t n, int *counter) {
        static const char *const bulk_topic[] = { "bulk", NULL };
        g_autoptr(GVariant) pong = NULL;

        for (size_t i = 0; i < n; i++) {
                pages[i].counter = counter;
                g_dbus_connection_call(c, OUTPOST_NAME, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                                       g_variant_new("(st^asu)", "", (guint64) 0, bulk_topic, 16),
                                       NULL, G_DBUS_CALL_FLAGS_NONE, 60000, NULL, on_ordered_done, &pages[i]);
        }
        pong = test_call_ok(c, "/", "org.freedesktop.DBus.Peer", "Ping", NULL, NULL);
}

static void test_large_replies_leave_room_for_others(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autoptr(GDBusConnection) pager = test_bus_connect(d->site);
        g_autoptr(GDBusConnection) other = test_bus_connect(d->site);
        GPid outpostd = test_bus_daemon_pid(d->central);
        guint32 reconnects = bridge_reconnects(d->site->conn);
        Ordered pages[6] = {}, small = { .counter = NULL };
        int counter = 0;

        publish_bulk(d);
        g_assert_cmpint(kill(outpostd, SIGSTOP), ==, 0);
        fetch_pages_async(pager, pages, G_N_ELEMENTS(pages), &counter);
        small.counter = &counter;
        g_dbus_connection_call(other, OUTPOST_NAME, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                               g_variant_new("(s)", "00000000-0000-4000-8000-000000000001"), NULL,
                               G_DBUS_CALL_FLAGS_NONE, 60000, NULL, on_ordered_done, &small);
        g_assert_cmpint(kill(outpostd, SIGCONT), ==, 0);

        for (size_t i = 0; i < G_N_ELEMENTS(pages); i++) {
                wait_ordered(&pages[i]);
                g_assert_no_error(pages[i].error);
                if (i > 0)
                        g_assert_cmpint(pages[i].position, >, pages[i - 1].position);
        }
        wait_ordered(&small);
        test_assert_dbus_error(small.error, "NotFound", NULL);
        g_clear_error(&small.error);
        /* At most the page in flight when the call came is ahead of it. */
        g_test_message("GetUser answered after %d of 6 pages", small.position - 1);
        g_assert_cmpint(small.position, <=, 2);
        assert_site_link_kept(d, reconnects);
}

/* Calls still waiting their turn when the link goes are answered at once,
 * like those in flight. */
static void test_waiting_calls_fail_with_the_link(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        g_autoptr(GDBusConnection) pager = test_bus_connect(d->site);
        g_autoptr(GVariant) none = NULL;
        GPid outpostd = test_bus_daemon_pid(d->central);
        Ordered pages[3] = {};
        int counter = 0;

        publish_bulk(d);
        g_assert_cmpint(kill(outpostd, SIGSTOP), ==, 0);
        fetch_pages_async(pager, pages, G_N_ELEMENTS(pages), &counter);
        none = test_call_ok(d->site->conn, OUTPOST_BRIDGE_PATH, IFACE_BRIDGE, "Reconnect", NULL, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(pages); i++) {
                wait_ordered(&pages[i]);
                test_assert_dbus_error(pages[i].error, "Disconnected", NULL);
                g_clear_error(&pages[i].error);
        }
        g_assert_cmpint(kill(outpostd, SIGCONT), ==, 0);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/bridge-security/reaches-only-the-service", test_reaches_only_the_service);
        g_test_add_func("/bridge-security/refuses-foreign-certificates", test_refuses_foreign_certificates);
        g_test_add_func("/bridge-security/garbage-after-handshake", test_garbage_after_handshake);
        g_test_add_func("/bridge-security/oversized-message-drops-peer", test_oversized_message_drops_peer);
        g_test_add_func("/bridge-security/silent-flood-keeps-known-peers-in", test_silent_flood_keeps_known_peers_in);
        g_test_add_func("/bridge-security/storm-of-peers-waits-its-turn", test_storm_of_peers_waits_its_turn);
        g_test_add_func("/bridge-security/importer-refuses-what-would-end-the-link",
                        test_importer_refuses_what_would_end_the_link);
        g_test_add_func("/bridge-security/importer-caps-calls-per-caller", test_importer_caps_calls_per_caller);
        g_test_add_func("/bridge-security/large-replies-leave-room-for-others",
                        test_large_replies_leave_room_for_others);
        g_test_add_func("/bridge-security/waiting-calls-fail-with-the-link", test_waiting_calls_fail_with_the_link);
        return g_test_run();
}
