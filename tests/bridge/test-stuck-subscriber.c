/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A slow or stuck subscriber never stalls outpostd or a bridge (issue 6).
 *
 * Each case floods the service with large events while one subscriber has
 * stopped reading its socket, and checks that everyone else is served on
 * time and misses nothing:
 *  - outpostd: a bus client that added a match for every Event and then
 *    never reads (a raw sd-bus connection nobody processes), next to a
 *    SIGSTOPped `gdbus monitor`. The bus queues at most max_outgoing_bytes
 *    for a connection; past that dbus-daemon drops the signals meant for it
 *    (and keeps the connection), while outpostd itself never waits.
 *  - the listener of outpost-bridge: a remote peer over the real TLS link
 *    that stops reading. The listener drops it once its queue passes
 *    max-queued-bytes, logs it, and keeps serving the other peers.
 *  - the importer of outpost-bridge: a stuck subscriber on its local (site)
 *    bus does not hold up the healthy one there, nor calls through it.
 * "On time" is a generous bound, not a measurement: the point is that no
 * call ever waits for the stuck reader. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "bridge-harness.h"
#include "link.h"

/* A call that takes longer than this waited for something it should not. */
#define CALL_BOUND_MS   2000
/* What the test buses queue for one connection: a few MiB, so that a flood
 * of some 10 MiB overflows it (dbus-daemon's own default is 127 MiB). */
#define BUS_QUEUE_BYTES (4u << 20)
/* Data per flood event: just under the contract's 64 KiB. */
#define BLOB_BYTES      60000
/* Publish calls in flight at once, and between two rounds of probes. */
#define WINDOW          16

static TestBus *limited_bus_new(void) {
        g_autofree char *limits = g_strdup_printf("  <limit name=\"max_outgoing_bytes\">%u</limit>\n", BUS_QUEUE_BYTES);

        return test_bus_new_with_config(limits);
}

/* Turns the loops the test waits on: GLib's, and the sd-event of a bridge
 * peer when there is one. */
static void pump(sd_event *event) {
        g_main_context_iteration(NULL, event == NULL);
        if (event)
                g_assert_cmpint(sd_event_run(event, 1000), >=, 0);
}

/* The flood: large events published WINDOW at a time. */

typedef struct Flood {
        GDBusConnection *conn;
        GVariant *data;
        guint n_sent, n_in_flight;
        guint64 last_seq;
} Flood;

static void flood_init(Flood *f, GDBusConnection *c) {
        g_autofree char *blob = g_strnfill(BLOB_BYTES, 'x');

        f->conn = c;
        f->data = g_variant_ref_sink(g_variant_new_parsed("{'blob': <%s>}", blob));
        g_assert_cmpuint(g_variant_get_size(f->data), <=, 64 * 1024);
}

static void flood_clear(Flood *f) {
        g_clear_pointer(&f->data, g_variant_unref);
}

static void on_published(GObject *source, GAsyncResult *res, gpointer userdata) {
        Flood *f = userdata;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
        guint64 seq;

        g_assert_no_error(error);
        g_variant_get(r, "(t)", &seq);
        f->last_seq = MAX(f->last_seq, seq);
        f->n_in_flight--;
}

/* Publish WINDOW events and wait for their replies, turning EVENT too. */
static void flood_round(Flood *f, sd_event *event) {
        for (guint i = 0; i < WINDOW; i++) {
                g_dbus_connection_call(f->conn, OUTPOST_NAME, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                       g_variant_new("(s@a{sv})", "flood", f->data), G_VARIANT_TYPE("(t)"),
                                       G_DBUS_CALL_FLAGS_NONE, 30000, NULL, on_published, f);
                f->n_in_flight++;
                f->n_sent++;
        }
        while (f->n_in_flight > 0)
                pump(event);
}

static guint64 last_seq(GDBusConnection *c) {
        g_autoptr(GVariant) r = NULL, v = NULL;

        r = test_call_ok(c, OUTPOST_EVENTS_PATH, "org.freedesktop.DBus.Properties", "Get",
                         g_variant_new("(ss)", IFACE_EVENTS, "LastSeq"), "(v)");
        g_variant_get(r, "(v)", &v);
        return g_variant_get_uint64(v);
}

/* A call of a healthy client, answered within the bound. */
static void assert_prompt(GDBusConnection *c, const char *iface, const char *method, GVariant *params) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL;
        gint64 start = g_get_monotonic_time(), ms;

        r = g_dbus_connection_call_sync(c, OUTPOST_NAME,
                                        strcmp(iface, IFACE_USERS) == 0 ? OUTPOST_USERS_PATH :
                                        strcmp(iface, IFACE_EVENTS) == 0 ? OUTPOST_EVENTS_PATH : OUTPOST_ROOT,
                                        iface, method, params, NULL, G_DBUS_CALL_FLAGS_NONE, 30000, NULL, &error);
        ms = (g_get_monotonic_time() - start) / 1000;
        g_assert_no_error(error);
        if (ms > CALL_BOUND_MS)
                g_error("%s.%s took %" G_GINT64_FORMAT " ms with a stuck subscriber around", iface, method, ms);
}

/* Ping, GetUser and a small Publish from a healthy client. */
static void probe(GDBusConnection *c, const char *user_id) {
        assert_prompt(c, "org.freedesktop.DBus.Peer", "Ping", NULL);
        assert_prompt(c, IFACE_USERS, "GetUser", g_variant_new("(s)", user_id));
        assert_prompt(c, IFACE_EVENTS, "Publish", g_variant_new_parsed("('probe', {'n': <1>})"));
}

/* W saw every event after FROM up to TO, once each, in order. */
static void assert_saw_all(EventWatch *w, guint64 from, guint64 to) {
        event_watch_sync(w);
        g_assert_cmpuint(w->events->len, ==, to - from);
        for (guint i = 0; i < w->events->len; i++) {
                guint64 seq;

                g_variant_get_child(w->events->pdata[i], 0, "t", &seq);
                g_assert_cmpuint(seq, ==, from + 1 + i);
        }
}

/* A subscriber that stops reading: a bus client that asks for every Event
 * and then is never processed again, so its socket fills up. */
static sd_bus *stuck_subscriber_new(TestBus *tb) {
        sd_bus *bus = NULL;

        g_assert_cmpint(sd_bus_new(&bus), >=, 0);
        g_assert_cmpint(sd_bus_set_address(bus, tb->address), >=, 0);
        g_assert_cmpint(sd_bus_set_bus_client(bus, true), >=, 0);
        g_assert_cmpint(sd_bus_start(bus), >=, 0);
        /* Not attached to a loop: this is a call, answered before it returns. */
        g_assert_cmpint(sd_bus_add_match(bus, NULL,
                                         "type='signal',interface='" IFACE_EVENTS "',member='Event'",
                                         NULL, NULL), >=, 0);
        return bus;
}

/* Bytes waiting unread in the socket of BUS. */
static int unread_bytes(sd_bus *bus) {
        int n = 0;

        g_assert_cmpint(ioctl(sd_bus_get_fd(bus), FIONREAD, &n), ==, 0);
        return n;
}

/* Read what BUS holds for a while; the number of Events it got, which
 * must have come in order. */
static guint drain_events(sd_bus *bus) {
        guint64 previous = 0;
        guint n = 0;

        for (;;) {
                sd_bus_message *m = NULL;
                int r = sd_bus_process(bus, &m);

                g_assert_cmpint(r, >=, 0);
                if (m && sd_bus_message_is_signal(m, IFACE_EVENTS, "Event")) {
                        guint64 seq;

                        g_assert_cmpint(sd_bus_message_read(m, "t", &seq), >=, 0);
                        g_assert_cmpuint(seq, >, previous);
                        previous = seq;
                        n++;
                }
                sd_bus_message_unref(m);
                if (r > 0)
                        continue;
                if (sd_bus_wait(bus, 500 * 1000) == 0)
                        return n;
        }
}

/* Two subscribers to every Event on one bus: a healthy GDBus client, and
 * a stuck one. */
typedef struct Subscribers {
        GDBusConnection *healthy;
        EventWatch *watch;
        sd_bus *stuck;
        guint64 from;           /* LastSeq of ORIGIN when both were in place */
} Subscribers;

static void subscribers_start(Subscribers *s, TestBus *tb, GDBusConnection *origin) {
        s->healthy = test_bus_connect(tb);
        s->watch = event_watch_new(s->healthy);
        event_watch_sync(s->watch);
        s->stuck = stuck_subscriber_new(tb);
        s->from = last_seq(origin);
}

/* After a flood that ended at TO: the stuck one really stopped (its
 * socket is full), the healthy one got everything, and the bus dropped
 * what did not fit in the stuck one's queue: reading again, it gets fewer
 * events than were sent, in order. Returns how many it got. */
static guint subscribers_check(Subscribers *s, guint64 to) {
        guint got;

        g_test_message("the stuck subscriber has %d bytes unread in its socket", unread_bytes(s->stuck));
        g_assert_cmpint(unread_bytes(s->stuck), >, 64 * 1024);
        assert_saw_all(s->watch, s->from, to);
        got = drain_events(s->stuck);
        g_test_message("the stuck subscriber got %u of %" G_GUINT64_FORMAT " events once it read again",
                       got, to - s->from);
        g_assert_cmpuint(got, >, 0);
        g_assert_cmpuint(got, <, to - s->from);
        return got;
}

static void subscribers_clear(Subscribers *s) {
        sd_bus_flush_close_unref(s->stuck);
        g_clear_pointer(&s->watch, event_watch_free);
        g_clear_object(&s->healthy);
}

/* Flood three times what the bus queues for one connection, probing each
 * of PROBED (NULL-terminated) after every round. */
static void flood_past_bus_queue(Flood *f, GDBusConnection *const *probed, const char *user_id) {
        while ((guint64) f->n_sent * BLOB_BYTES < 3 * BUS_QUEUE_BYTES) {
                flood_round(f, NULL);
                for (size_t i = 0; probed[i]; i++)
                        probe(probed[i], user_id);
        }
        g_test_message("published %u events of %u bytes", f->n_sent, BLOB_BYTES);
}

/* A whole process that stops: `gdbus monitor` of the service, subscribed,
 * then SIGSTOPped. */
static GPid stopped_monitor_new(TestBus *tb) {
        const char *argv[] = { "gdbus", "monitor", "--address", tb->address, "--dest", OUTPOST_NAME, NULL };
        g_autoptr(GError) error = NULL;
        g_autoptr(GIOChannel) out = NULL;
        GPid pid;
        int fd;

        g_spawn_async_with_pipes(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                 NULL, NULL, &pid, NULL, &fd, NULL, &error);
        g_assert_no_error(error);
        out = g_io_channel_unix_new(fd);
        g_io_channel_set_close_on_unref(out, TRUE);
        /* It prints the owner after asking the bus, which was after its
         * match rule went in: from then on the bus sends it every signal. */
        for (;;) {
                g_autofree char *line = NULL;

                g_assert_cmpint(g_io_channel_read_line(out, &line, NULL, NULL, &error), ==, G_IO_STATUS_NORMAL);
                if (strstr(line, "is owned by"))
                        break;
        }
        g_assert_cmpint(kill(pid, SIGSTOP), ==, 0);
        return pid;
}

static void stopped_monitor_kill(GPid pid) {
        kill(pid, SIGKILL);
        kill(pid, SIGCONT);
        g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
        g_spawn_close_pid(pid);
}

static void test_daemon(void) {
        g_autoptr(TestBus) tb = limited_bus_new();
        g_autoptr(GDBusConnection) publisher = NULL;
        g_autofree char *user_id = NULL;
        Subscribers subs = {};
        const char *stuck_name;
        Flood flood = {};
        guint64 to;
        GPid monitor;

        test_bus_start_daemon(tb, NULL);
        user_id = test_create_user(tb->conn, "ann", NULL);
        publisher = test_bus_connect(tb);
        subscribers_start(&subs, tb, tb->conn);
        g_assert_cmpint(sd_bus_get_unique_name(subs.stuck, &stuck_name), >=, 0);
        monitor = stopped_monitor_new(tb);

        flood_init(&flood, publisher);
        flood_past_bus_queue(&flood, (GDBusConnection *[]) { subs.healthy, NULL }, user_id);
        to = last_seq(tb->conn);
        /* The flood, and one Publish of each probe. */
        g_assert_cmpuint(to, ==, subs.from + flood.n_sent + flood.n_sent / WINDOW);

        /* dbus-daemon kept the stuck connection all along, and serves it as
         * usual once it reads again. */
        g_assert_true(test_bus_name_has_owner(tb->conn, stuck_name));
        (void) subscribers_check(&subs, to);
        probe(subs.healthy, user_id);
        g_assert_cmpuint(drain_events(subs.stuck), ==, 1);

        stopped_monitor_kill(monitor);
        subscribers_clear(&subs);
        flood_clear(&flood);
        /* outpostd ends cleanly and logged no error (the harness checks). */
        test_bus_stop_daemon(tb, SIGTERM);
}

/* The listener of outpost-bridge, and remote peers over its TLS link. */

/* A dialled link. It frees itself when it closes, so whether it is still
 * ours to free is tracked here. */
typedef struct Peer {
        sd_event *event;        /* turns its link and its bus; a stuck peer's is never run */
        Link *link;
        sd_bus *bus;
        int fd;
        gboolean ready;
        guint64 last_seq;       /* of the last Event it read */
        guint n_events;
} Peer;

static void on_peer_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Peer *p = userdata;

        p->fd = fd;
        p->ready = TRUE;
        if (fd < 0)
                p->link = NULL;
}

static void on_peer_closed(Link *link, const char *reason, void *userdata) {
        Peer *p = userdata;

        p->link = NULL;
}

/* Events come straight from the listener: no bus, no match rules. */
static int on_peer_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Peer *p = userdata;
        guint64 seq;

        if (!sd_bus_message_is_signal(m, IFACE_EVENTS, "Event"))
                return 0;
        g_assert_cmpint(sd_bus_message_read(m, "t", &seq), >=, 0);
        if (p->last_seq)
                g_assert_cmpuint(seq, ==, p->last_seq + 1);
        p->last_seq = seq;
        p->n_events++;
        return 0;
}

/* Dial the listener on PORT as site1 until it answers. */
static Peer *peer_new(unsigned port) {
        g_autofree char *ca = g_strdup_printf("%s/ca.pem", bridge_test_certs());
        g_autofree char *cert = g_strdup_printf("%s/site1.pem", bridge_test_certs());
        g_autofree char *key = g_strdup_printf("%s/site1.key", bridge_test_certs());
        LinkConfig config = { .ca_file = ca, .cert_file = cert, .key_file = key, .handshake_timeout_sec = 5 };
        LinkAddress address = { .tls = true, .host = (char *) "127.0.0.1", .port = port };
        gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
        Peer *p = g_new0(Peer, 1);

        g_assert_cmpint(sd_event_new(&p->event), >=, 0);
        do {
                p->fd = -1;
                p->ready = FALSE;
                g_assert_cmpint(link_connect(p->event, &address, &config, on_peer_ready, on_peer_closed, p,
                                             &p->link), >=, 0);
                while (!p->ready)
                        g_assert_cmpint(sd_event_run(p->event, 100000), >=, 0);
                if (p->fd < 0)
                        g_usleep(50000);
        } while (p->fd < 0 && g_get_monotonic_time() < deadline);
        g_assert_cmpint(p->fd, >=, 0);

        g_assert_cmpint(sd_bus_new(&p->bus), >=, 0);
        g_assert_cmpint(sd_bus_set_fd(p->bus, p->fd, p->fd), >=, 0);
        g_assert_cmpint(sd_bus_set_anonymous(p->bus, true), >=, 0);
        g_assert_cmpint(sd_bus_add_filter(p->bus, NULL, on_peer_message, p), >=, 0);
        g_assert_cmpint(sd_bus_start(p->bus), >=, 0);
        g_assert_cmpint(sd_bus_attach_event(p->bus, p->event, 0), >=, 0);
        return p;
}

static void peer_free(Peer *p) {
        if (!p)
                return;
        sd_bus_close_unref(p->bus);
        link_free(p->link);
        sd_event_unref(p->event);
        g_free(p);
}

typedef struct PeerCall {
        gboolean done;
        char *error;
} PeerCall;

static int on_peer_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        PeerCall *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        c->error = e ? g_strdup_printf("%s: %s", e->name, e->message) : NULL;
        c->done = TRUE;
        return 0;
}

/* A call of P through the listener, answered in time. */
static void peer_assert_prompt(Peer *p, const char *path, const char *iface, const char *method,
                               const char *types, const char *arg) {
        sd_bus_message *m = NULL;
        PeerCall c = {};
        gint64 start = g_get_monotonic_time(), ms;

        g_assert_cmpint(sd_bus_message_new_method_call(p->bus, &m, OUTPOST_NAME, path, iface, method), >=, 0);
        if (types)
                g_assert_cmpint(sd_bus_message_append(m, types, arg), >=, 0);
        g_assert_cmpint(sd_bus_call_async(p->bus, NULL, m, on_peer_reply, &c, 30 * G_USEC_PER_SEC), >=, 0);
        sd_bus_message_unref(m);
        while (!c.done)
                pump(p->event);
        ms = (g_get_monotonic_time() - start) / 1000;
        if (c.error)
                g_error("%s.%s over the bridge failed: %s", iface, method, c.error);
        if (ms > CALL_BOUND_MS)
                g_error("%s.%s over the bridge took %" G_GINT64_FORMAT " ms with a stuck peer around", iface, method, ms);
}

static void peer_probe(Peer *p, const char *user_id) {
        peer_assert_prompt(p, OUTPOST_ROOT, "org.freedesktop.DBus.Peer", "Ping", NULL, NULL);
        peer_assert_prompt(p, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", "s", user_id);
}

/* The first line of the bridge's log so far that has TEXT, or NULL. */
static char *log_line(BridgeProcess *b, const char *text) {
        g_autofree char *contents = NULL;
        const char *hit, *start, *end;

        if (!g_file_get_contents(b->log_path, &contents, NULL, NULL) || !(hit = strstr(contents, text)))
                return NULL;
        for (start = hit; start > contents && start[-1] != '\n'; start--)
                ;
        end = strchrnul(hit, '\n');
        return g_strndup(start, end - start);
}

static void test_listener(void) {
        g_autoptr(TestBus) central = limited_bus_new();
        g_autofree char *listen = NULL, *user_id = NULL, *dropped = NULL;
        g_autoptr(GDBusConnection) publisher = NULL;
        /* A small queue, so that the kernel's buffers and this together
         * fill in a few MiB; no idle timeout to mistake for the drop. */
        const char *extra[] = { "--max-queued-bytes=1048576", "--peer-idle-timeout-ms=600000", NULL };
        BridgeProcess listener = {};
        Peer *stuck, *healthy, *late;
        Flood flood = {};
        guint64 from, to;
        unsigned port = free_port();

        test_bus_start_daemon(central, NULL);
        user_id = test_create_user(central->conn, "ann", NULL);
        listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", port);
        bridge_process_start(&listener, central, listen, NULL, extra);
        publisher = test_bus_connect(central);

        healthy = peer_new(port);
        peer_probe(healthy, user_id);
        stuck = peer_new(port);
        peer_assert_prompt(stuck, OUTPOST_ROOT, "org.freedesktop.DBus.Peer", "Ping", NULL, NULL);
        /* From here on nothing turns STUCK's loop: its link reads no more. */
        from = last_seq(central->conn);

        flood_init(&flood, publisher);
        while (!(dropped = log_line(&listener, "dropped: peer stopped reading"))) {
                if ((guint64) flood.n_sent * BLOB_BYTES > (64u << 20))
                        g_error("the listener did not drop a peer that read nothing of %u events", flood.n_sent);
                flood_round(&flood, healthy->event);
                peer_probe(healthy, user_id);
                probe(central->conn, user_id);
        }
        g_test_message("the listener dropped the stuck peer after %u events of %u bytes", flood.n_sent, BLOB_BYTES);
        /* As a warning: an administrator wants to hear of it. */
        g_assert_true(g_str_has_prefix(dropped, "<4>"));
        /* Turned again, the stuck peer reads what was on its way, then the
         * end of its link: the listener closed it. */
        {
                gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

                while (stuck->link && g_get_monotonic_time() < deadline)
                        pump(stuck->event);
                g_assert_null(stuck->link);
                g_assert_cmpuint(stuck->n_events, <, flood.n_sent);
        }

        /* After the drop, the healthy peer and new peers go on as before. */
        flood_round(&flood, healthy->event);
        late = peer_new(port);
        peer_probe(late, user_id);
        peer_probe(healthy, user_id);
        to = last_seq(central->conn);
        while (healthy->last_seq < to)
                pump(healthy->event);
        /* The flood and the probes' Publish: every one, in order. */
        g_assert_cmpuint(healthy->n_events, ==, to - from);

        peer_free(late);
        peer_free(stuck);
        peer_free(healthy);
        flood_clear(&flood);
        bridge_process_clear(&listener);
        test_bus_stop_daemon(central, SIGTERM);
}

/* The importer: a stuck subscriber on the site bus it serves. */
static void test_importer(void) {
        g_autoptr(TestBus) central = test_bus_new_with_config(NULL);
        g_autoptr(TestBus) site = limited_bus_new();
        g_autofree char *listen = NULL, *user_id = NULL, *state = NULL;
        g_autoptr(GDBusConnection) publisher = NULL;
        BridgeProcess listener = {}, importer = {};
        Subscribers subs = {};
        Flood flood = {};

        test_bus_start_daemon(central, NULL);
        user_id = test_create_user(central->conn, "ann", NULL);
        listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", free_port());
        bridge_process_start(&listener, central, listen, NULL, NULL);
        bridge_process_start(&importer, site, NULL, listen, NULL);
        wait_bridge_state(site->conn, "connected", 20000);
        publisher = test_bus_connect(central);
        subscribers_start(&subs, site, central->conn);

        /* Calls through the importer, and on central directly. */
        flood_init(&flood, publisher);
        flood_past_bus_queue(&flood, (GDBusConnection *[]) { subs.healthy, central->conn, NULL }, user_id);
        (void) subscribers_check(&subs, last_seq(central->conn));
        state = bridge_state(site->conn);
        g_assert_cmpstr(state, ==, "connected");

        subscribers_clear(&subs);
        flood_clear(&flood);
        bridge_process_clear(&importer);
        bridge_process_clear(&listener);
        test_bus_stop_daemon(central, SIGTERM);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/stuck-subscriber/daemon", test_daemon);
        g_test_add_func("/stuck-subscriber/bridge-listener", test_listener);
        g_test_add_func("/stuck-subscriber/bridge-importer", test_importer);
        return g_test_run();
}
