/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A bridge that catches up while retention trims the history under it
 * (DESIGN.md §3 Events, §4 rule 6). Central keeps a short history and
 * events never stop coming; the site bridge is frozen (SIGSTOP) and thawed
 * again and again, so that its link to central breaks, its replay starts
 * behind, and retention overtakes it in the middle of the replay. On the
 * site bus (one hop) and on the machine bus (two hops), a subscriber must
 * see each event once and in order, and a Gap only over events that
 * central had really discarded: after_seq is the last event it saw,
 * resumed_seq is larger, and the next event is resumed_seq + 1. */
#include "config.h"

#include <signal.h>
#include <string.h>

#include "bridge-harness.h"

/* What one subscriber saw, checked as it arrives. */
typedef struct Stream {
        const char *name;
        GDBusConnection *central;       /* to ask which events are still kept */
        guint id;
        guint64 position;               /* the last event seen, or the end of the last Gap */
        unsigned events, gaps;
        GString *violations;
} Stream;

static guint64 central_u64(GDBusConnection *central, const char *prop) {
        g_autoptr(GVariant) v = test_get_property(central, OUTPOST_EVENTS_PATH, IFACE_EVENTS, prop);

        return g_variant_get_uint64(v);
}

static void violation(Stream *s, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void violation(Stream *s, const char *format, ...) {
        va_list ap;

        /* The first few say what went wrong; the rest would only repeat it. */
        if (s->violations->len > 2000)
                return;
        g_string_append_printf(s->violations, "\n  %s: ", s->name);
        va_start(ap, format);
        g_string_append_vprintf(s->violations, format, ap);
        va_end(ap);
}

static void check_gap(Stream *s, guint64 after, guint64 resumed) {
        guint64 first;

        s->gaps++;
        if (resumed <= after)
                violation(s, "Gap(%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") does not move forward", after, resumed);
        if (after != s->position)
                violation(s, "Gap(%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") after event %" G_GUINT64_FORMAT,
                          after, resumed, s->position);
        /* FirstSeq only grows: an event kept now was kept when the Gap was
         * sent, and a Gap over it hides an event that could be replayed. */
        first = central_u64(s->central, "FirstSeq");
        if (resumed >= first)
                violation(s, "Gap(%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") covers events central still keeps (FirstSeq %" G_GUINT64_FORMAT ")",
                          after, resumed, first);
        s->position = MAX(s->position, resumed);
}

static void check_event(Stream *s, guint64 seq) {
        s->events++;
        if (s->position != 0 && seq != s->position + 1)
                violation(s, "event %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT "%s", seq, s->position,
                          seq <= s->position ? " (again, or out of order)" : " (events lost without a Gap)");
        s->position = MAX(s->position, seq);
}

static void on_signal(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                      const char *signal, GVariant *params, gpointer data) {
        Stream *s = data;
        guint64 a, b;

        if (strcmp(signal, "Gap") == 0) {
                g_variant_get(params, "(tt)", &a, &b);
                check_gap(s, a, b);
        } else if (strcmp(signal, "Event") == 0) {
                g_variant_get_child(params, 0, "t", &a);
                check_event(s, a);
        }
}

static void stream_init(Stream *s, const char *name, GDBusConnection *c, GDBusConnection *central) {
        *s = (Stream) { .name = name, .central = central, .violations = g_string_new(NULL) };
        s->id = g_dbus_connection_signal_subscribe(c, OUTPOST_NAME, IFACE_EVENTS, NULL, OUTPOST_EVENTS_PATH, NULL,
                                                   G_DBUS_SIGNAL_FLAGS_NONE, on_signal, s, NULL);
}

static void stream_done(Stream *s, GDBusConnection *c) {
        g_dbus_connection_signal_unsubscribe(c, s->id);
        g_string_free(s->violations, TRUE);
}

/* Publish at central from a thread of its own, until told to stop: about
 * 50 events a second, fewer than retention keeps, so that a Gap that
 * covers kept events is seen to do so (retention trims once a second). */
typedef struct Publisher {
        TestBus *central;
        GThread *thread;
        gint stop;
} Publisher;

static gpointer publish_loop(gpointer data) {
        Publisher *p = data;
        g_autoptr(GDBusConnection) c = test_bus_connect(p->central);

        for (int i = 0; !g_atomic_int_get(&p->stop); i++) {
                g_variant_unref(test_call_ok(c, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                             g_variant_new_parsed("('shop/till', {'n': <%i>})", i), "(t)"));
                g_usleep(20000);
        }
        g_dbus_connection_close_sync(c, NULL, NULL);
        return NULL;
}

/* Let the subscribers' signals be checked while time passes. */
static void spin(unsigned ms) {
        gint64 end = g_get_monotonic_time() + (gint64) ms * 1000;

        while (g_get_monotonic_time() < end) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(1000);
        }
}

static void test_retention_during_catch_up(void) {
        /* A short history and one event per page: a replay takes many
         * round trips, and retention can overtake it. */
        g_autoptr(Deployment) d = deployment_new("[Events]\nRetentionCount=100\n[Limits]\nMaxEventsPerPage=1\n");
        GDBusConnection *central = d->central->conn;
        Publisher publisher = { .central = d->central };
        Stream site, machine;
        GPid site_pid = d->site_bridge.pid;
        const unsigned awake_ms[] = { 200, 400, 700, 1000, 1500 };
        guint64 last;

        stream_init(&site, "site bus", d->site->conn, central);
        stream_init(&machine, "machine bus", d->machine->conn, central);
        for (int i = 0; i < 20; i++)
                g_variant_unref(test_call_ok(central, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                                             g_variant_new_parsed("('shop/door', {'n': <%i>})", i), "(t)"));
        last = central_u64(central, "LastSeq");
        test_wait_until(site.position == last && machine.position == last, 10000);

        publisher.thread = g_thread_new("publisher", publish_loop, &publisher);
        for (size_t i = 0; i < G_N_ELEMENTS(awake_ms); i++) {
                /* The site freezes and its link to central breaks; the
                 * machine's heartbeat gives up on the site. Retention
                 * discards what the site has not seen. */
                kill(site_pid, SIGSTOP);
                bridge_process_stop(&d->central_listener, SIGKILL);
                bridge_process_restart(&d->central_listener);
                spin(3000);
                /* Awake for a while: long enough, or not, to reconnect and
                 * replay before it freezes again, while events keep coming. */
                kill(site_pid, SIGCONT);
                spin(awake_ms[i]);
        }
        wait_bridge_state(d->machine->conn, "connected", 30000);
        g_atomic_int_set(&publisher.stop, 1);
        g_thread_join(publisher.thread);

        last = central_u64(central, "LastSeq");
        test_wait_until(site.position >= last && machine.position >= last, 30000);
        spin(200);      /* anything doubled at the end shows too */
        g_test_message("up to event %" G_GUINT64_FORMAT ": site saw %u events and %u gaps, machine %u and %u",
                       last, site.events, site.gaps, machine.events, machine.gaps);
        if (site.violations->len || machine.violations->len)
                g_error("the event stream broke its promises:%s%s", site.violations->str, machine.violations->str);
        /* The scenario did test replays that retention overtook. */
        g_assert_cmpuint(site.gaps, >=, 1);
        g_assert_cmpuint(machine.gaps, >=, 1);

        stream_done(&site, d->site->conn);
        stream_done(&machine, d->machine->conn);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/bridge-resume/retention-during-catch-up", test_retention_during_catch_up);
        return g_test_run();
}
