/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Faults under load, two hops from the daemon: while clients on the
 * machine bus publish, save a user and hold presence, every process of the
 * deployment (central outpostd, central listener, site bridge, machine
 * bridge) is killed with SIGKILL or frozen with SIGSTOP at random points.
 * Once everything is running again, the contract's promises must hold:
 *
 *  - nothing acknowledged is lost: every Publish that returned a seq is at
 *    central with its data, every acknowledged save is there or was
 *    overwritten by a later attempt;
 *  - nothing is written twice that was asked once;
 *  - a subscriber on the machine bus sees, from each owner of the name,
 *    events in strictly increasing order with no hole that a Gap does not
 *    announce, and with FetchSince when the owner changes it has them all;
 *  - the presence hold is back at central;
 *  - every call got an answer (a reply or an error), none timed out.
 *
 * The faults are drawn from g_test_rand_int(), so a failure is replayed
 * with the --seed that the test prints. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge-harness.h"

#define CALL_TIMEOUT_MS   60000
#define FAULTS            10
#define PUBLISH_TOPIC     "load/publish"

typedef struct Load {
        Deployment *d;
        GDBusConnection *conn;          /* the load's clients' connection to the machine bus */
        gboolean stopping;
        guint in_flight;                /* calls not answered yet */
        guint timers;                   /* steps waiting for their time */
        guint answered;
        guint errors;
        GHashTable *error_names;        /* name → count, for the report */

        /* Publish: each k is asked once; acknowledged k → seq. */
        guint64 publish_next;
        GHashTable *published;          /* k → seq (acknowledged) */

        /* SaveUser of one user's display-name "v<k>". */
        char *saver_id;
        char *saver_tag;
        guint64 save_next, save_acked;
        gboolean save_refreshing;

        /* A presence hold, re-asserted when the name gets a new owner, as
         * a client does (DESIGN.md §3 Presence). */
        char *holder_id;
        guint hold_generation;          /* bumped per owner, so stale retries stop */
        gboolean holding;
} Load;

typedef struct Subscriber {
        Load *load;
        GHashTable *epochs;             /* unique name → GArray of seqs in arrival order */
        GArray *gaps;                   /* (after, resumed) pairs, as guint64 */
        GHashTable *fetched;            /* seq → seq: what FetchSince brought on an owner change */
        guint64 max_seen;
        char *owner;
        guint fetch_generation;
} Subscriber;

static void note_error(Load *l, const GError *error) {
        g_autofree char *name = g_dbus_error_get_remote_error(error);
        const char *key = name ?: error->message;
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(l->error_names, key));

        /* A call must be answered, never left to time out. */
        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
                g_error("A call timed out: %s", error->message);
        l->errors++;
        g_hash_table_insert(l->error_names, g_strdup(key), GUINT_TO_POINTER(n + 1));
}

typedef void (*LoadReply)(Load *l, GVariant *reply, const GError *error, gpointer data);

typedef struct LoadCall {
        Load *load;
        LoadReply done;
        gpointer data;
} LoadCall;

static void on_load_reply(GObject *source, GAsyncResult *res, gpointer data) {
        LoadCall *call = data;
        Load *l = call->load;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);

        l->in_flight--;
        l->answered++;
        if (error)
                note_error(l, error);
        call->done(l, reply, error, call->data);
        g_free(call);
}

static void load_call(Load *l, const char *path, const char *iface, const char *method, GVariant *params,
                      const char *reply_type, LoadReply done, gpointer data) {
        LoadCall *call = g_new0(LoadCall, 1);

        *call = (LoadCall) { .load = l, .done = done, .data = data };
        l->in_flight++;
        g_dbus_connection_call(l->conn, OUTPOST_NAME, path, iface, method, params, G_VARIANT_TYPE(reply_type),
                               G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, NULL, on_load_reply, call);
}

/* The next step of a loop, a little later: a failing link answers at
 * once, and the loops must not spin on it. Counted, so that the test ends
 * only once no step is left to run. */
typedef void (*LoadStep)(gpointer data);

typedef struct Later {
        Load *load;
        LoadStep step;
        gpointer data;
} Later;

static void later_run(gpointer data) {
        Later *later = data;

        later->load->timers--;
        later->step(later->data);
        g_free(later);
}

static void load_later(Load *l, guint ms, LoadStep step, gpointer data) {
        Later *later = g_new0(Later, 1);

        *later = (Later) { .load = l, .step = step, .data = data };
        l->timers++;
        g_timeout_add_once(ms, later_run, later);
}

/* Publish */

static void publish_next(Load *l);

static void on_published(Load *l, GVariant *reply, const GError *error, gpointer data) {
        guint64 k = GPOINTER_TO_SIZE(data), seq;

        if (reply) {
                g_variant_get(reply, "(t)", &seq);
                g_hash_table_insert(l->published, g_memdup2(&k, sizeof k), g_memdup2(&seq, sizeof seq));
        }
        load_later(l, error ? 50 : 5, (LoadStep) publish_next, l);
}

static void publish_next(Load *l) {
        guint64 k;

        if (l->stopping)
                return;
        k = l->publish_next++;
        load_call(l, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "Publish",
                  g_variant_new_parsed("(%s, {'k': <%t>})", PUBLISH_TOPIC, k), "(t)",
                  on_published, GSIZE_TO_POINTER(k));
}

/* SaveUser: after an error the outcome is unknown, so the loop reads the
 * user again before it goes on. */

static void save_next(Load *l);

static void on_user_read(Load *l, GVariant *reply, const GError *error, gpointer data) {
        g_autoptr(GVariant) user = NULL;

        if (!reply) {
                load_later(l, 50, (LoadStep) save_next, l);
                return;
        }
        user = g_variant_get_child_value(reply, 0);
        g_free(l->saver_tag);
        g_assert_true(g_variant_lookup(user, "tag", "s", &l->saver_tag));
        l->save_refreshing = FALSE;
        load_later(l, 5, (LoadStep) save_next, l);
}

static void on_saved(Load *l, GVariant *reply, const GError *error, gpointer data) {
        guint64 k = GPOINTER_TO_SIZE(data);

        if (reply) {
                g_free(l->saver_tag);
                g_variant_get(reply, "(s)", &l->saver_tag);
                l->save_acked = k;
        } else {
                l->save_refreshing = TRUE;
        }
        load_later(l, reply ? 5 : 50, (LoadStep) save_next, l);
}

static void save_next(Load *l) {
        guint64 k;
        g_autofree char *value = NULL;

        if (l->stopping)
                return;
        if (l->save_refreshing) {
                load_call(l, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser", g_variant_new("(s)", l->saver_id),
                          "(a{sv})", on_user_read, NULL);
                return;
        }
        k = l->save_next++;
        value = g_strdup_printf("v%" G_GUINT64_FORMAT, k);
        load_call(l, OUTPOST_USERS_PATH, IFACE_USERS, "SaveUser",
                  g_variant_new_parsed("(%s, %s, {'display-name': <%s>})", l->saver_id, l->saver_tag, value),
                  "(s)", on_saved, GSIZE_TO_POINTER(k));
}

/* The presence hold */

static void hold_assert(Load *l);

static void on_hold(Load *l, GVariant *reply, const GError *error, gpointer data) {
        if (GPOINTER_TO_UINT(data) != l->hold_generation)
                return;         /* the name changed owner since: that owner gets its own */
        if (reply)
                l->holding = TRUE;
        else
                load_later(l, 100, (LoadStep) hold_assert, l);
}

static void hold_assert(Load *l) {
        if (l->stopping)
                return;
        load_call(l, OUTPOST_PRESENCE_PATH, IFACE_PRESENCE, "GoOnline", g_variant_new("(su)", l->holder_id, 0),
                  "(t)", on_hold, GUINT_TO_POINTER(l->hold_generation));
}

/* The subscriber */

static void on_event(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                     const char *signal, GVariant *params, gpointer data) {
        Subscriber *s = data;
        guint64 seq, after, resumed;
        GArray *epoch;

        if (strcmp(signal, "Gap") == 0) {
                g_variant_get(params, "(tt)", &after, &resumed);
                g_assert_cmpuint(resumed, >, after);
                g_array_append_val(s->gaps, after);
                g_array_append_val(s->gaps, resumed);
                return;
        }
        if (strcmp(signal, "Event") != 0)
                return;
        g_variant_get_child(params, 0, "t", &seq);
        epoch = g_hash_table_lookup(s->epochs, sender);
        if (!epoch) {
                epoch = g_array_new(FALSE, FALSE, sizeof(guint64));
                g_hash_table_insert(s->epochs, g_strdup(sender), epoch);
        }
        g_array_append_val(epoch, seq);
        s->max_seen = MAX(s->max_seen, seq);
}

static void fetch_missed(Subscriber *s, guint64 after, guint generation);

typedef struct Fetch {
        Subscriber *sub;
        guint64 after;
        guint generation;
} Fetch;

static void fetch_retry(gpointer data) {
        Fetch *f = data;

        fetch_missed(f->sub, f->after, f->generation);
        g_free(f);
}

static void on_fetched(GObject *source, GAsyncResult *res, gpointer data) {
        Fetch *f = data;
        Subscriber *s = f->sub;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
        g_autoptr(GVariant) events = NULL;
        guint64 next_after;
        gboolean more;

        s->load->in_flight--;
        if (f->generation != s->fetch_generation) {
                g_free(f);
                return;
        }
        if (!reply) {
                /* The new owner may not be connected yet. */
                load_later(s->load, 100, fetch_retry, f);
                return;
        }
        g_variant_get(reply, "(@a(tsxa{sv})tb)", &events, &next_after, &more);
        for (gsize i = 0; i < g_variant_n_children(events); i++) {
                guint64 seq;

                g_variant_get_child(events, i, "(tsx@a{sv})", &seq, NULL, NULL, NULL);
                g_hash_table_add(s->fetched, g_memdup2(&seq, sizeof seq));
                s->max_seen = MAX(s->max_seen, seq);
        }
        if (more)
                fetch_missed(s, next_after, f->generation);
        g_free(f);
}

static void fetch_missed(Subscriber *s, guint64 after, guint generation) {
        Fetch *f = g_new0(Fetch, 1);

        *f = (Fetch) { .sub = s, .after = after, .generation = generation };
        s->load->in_flight++;
        g_dbus_connection_call(s->load->d->machine->conn, OUTPOST_NAME, OUTPOST_EVENTS_PATH, IFACE_EVENTS,
                               "FetchSince", g_variant_new("(st^asu)", "", after, (const char *const[]) { NULL }, 1000),
                               G_VARIANT_TYPE("(a(tsxa{sv})tb)"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, NULL,
                               on_fetched, f);
}

/* A new owner of the name: a client catches up from what it last saw and
 * asserts its holds again. */
static void on_name_appeared(GDBusConnection *c, const char *name, const char *owner, gpointer data) {
        Subscriber *s = data;
        Load *l = s->load;

        if (g_strcmp0(s->owner, owner) == 0)
                return;
        g_free(s->owner);
        s->owner = g_strdup(owner);
        fetch_missed(s, s->max_seen, ++s->fetch_generation);
        l->hold_generation++;
        l->holding = FALSE;
        if (!l->stopping)
                hold_assert(l);
}

/* The faults */

typedef enum Victim {
        VICTIM_CENTRAL_DAEMON,
        VICTIM_CENTRAL_LISTENER,
        VICTIM_SITE_BRIDGE,
        VICTIM_MACHINE_BRIDGE,
        _VICTIM_MAX,
} Victim;

static const char *const victim_names[_VICTIM_MAX] = {
        "central outpostd", "central listener", "site bridge", "machine bridge",
};

static BridgeProcess *victim_bridge(Deployment *d, Victim v) {
        switch (v) {
        case VICTIM_CENTRAL_LISTENER: return &d->central_listener;
        case VICTIM_SITE_BRIDGE: return &d->site_bridge;
        case VICTIM_MACHINE_BRIDGE: return &d->machine_bridge;
        default: return NULL;
        }
}

static GPid victim_pid(Deployment *d, Victim v) {
        BridgeProcess *b = victim_bridge(d, v);

        return b ? b->pid : d->central->daemon_pid;
}

static void victim_kill(Deployment *d, Victim v) {
        BridgeProcess *b = victim_bridge(d, v);

        if (b)
                bridge_process_stop(b, SIGKILL);
        else
                test_bus_stop_daemon(d->central, SIGKILL);
}

static void victim_restart(Deployment *d, Victim v) {
        BridgeProcess *b = victim_bridge(d, v);

        if (b)
                bridge_process_restart(b);
        else
                test_bus_start_daemon(d->central, NULL);
}

/* Let the main loop run for MS milliseconds: the load goes on meanwhile. */
static void run_for(guint ms) {
        gint64 until = g_get_monotonic_time() + (gint64) ms * 1000;

        while (g_get_monotonic_time() < until) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(1000);
        }
}

static void inject_fault(Deployment *d, int round) {
        Victim v = g_test_rand_int_range(0, _VICTIM_MAX);
        gboolean freeze = g_test_rand_bit();
        guint hold_ms = g_test_rand_int_range(50, 1200);

        g_test_message("fault %d: %s %s for %u ms", round, freeze ? "SIGSTOP" : "SIGKILL", victim_names[v], hold_ms);
        if (freeze) {
                g_assert_cmpint(kill(victim_pid(d, v), SIGSTOP), ==, 0);
                run_for(hold_ms);
                g_assert_cmpint(kill(victim_pid(d, v), SIGCONT), ==, 0);
        } else {
                victim_kill(d, v);
                run_for(hold_ms);
                victim_restart(d, v);
        }
}

/* The checks */

static guint64 central_last_seq(Deployment *d) {
        return test_last_seq(d->central->conn);
}

/* Every event at central with topic PUBLISH_TOPIC after BASE: seq → k. */
static GHashTable *central_publishes(Deployment *d, guint64 base) {
        GHashTable *by_seq = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
        guint64 after = base;
        gboolean more = TRUE;

        while (more) {
                g_autoptr(GVariant) r = NULL, events = NULL;

                r = test_call_ok(d->central->conn, OUTPOST_EVENTS_PATH, IFACE_EVENTS, "FetchSince",
                                 g_variant_new("(st^asu)", "", after, (const char *const[]) { PUBLISH_TOPIC, NULL }, 1000),
                                 "(a(tsxa{sv})tb)");
                g_variant_get(r, "(@a(tsxa{sv})tb)", &events, &after, &more);
                for (gsize i = 0; i < g_variant_n_children(events); i++) {
                        g_autoptr(GVariant) data = NULL;
                        guint64 seq, k;

                        g_variant_get_child(events, i, "(tsx@a{sv})", &seq, NULL, NULL, &data);
                        g_assert_true(g_variant_lookup(data, "k", "t", &k));
                        g_hash_table_insert(by_seq, g_memdup2(&seq, sizeof seq), g_memdup2(&k, sizeof k));
                }
        }
        return by_seq;
}

static void check_publishes(Load *l, guint64 base) {
        g_autoptr(GHashTable) at_central = central_publishes(l->d, base);
        g_autoptr(GHashTable) ks = g_hash_table_new(g_int64_hash, g_int64_equal);
        GHashTableIter it;
        gpointer key, value;

        /* Asked once, written at most once. */
        g_hash_table_iter_init(&it, at_central);
        while (g_hash_table_iter_next(&it, &key, &value)) {
                if (!g_hash_table_add(ks, value))
                        g_error("Publish k=%" G_GUINT64_FORMAT " was written twice", *(guint64 *) value);
        }
        /* Acknowledged, so kept, under the seq its reply named. */
        g_hash_table_iter_init(&it, l->published);
        while (g_hash_table_iter_next(&it, &key, &value)) {
                guint64 *k = g_hash_table_lookup(at_central, value);

                if (!k || *k != *(guint64 *) key)
                        g_error("Acknowledged Publish k=%" G_GUINT64_FORMAT " (seq %" G_GUINT64_FORMAT ") is lost",
                                *(guint64 *) key, *(guint64 *) value);
        }
        g_test_message("%u publishes acknowledged, %u at central", g_hash_table_size(l->published),
                       g_hash_table_size(at_central));
}

static void check_saves(Load *l) {
        g_autoptr(GVariant) r = NULL, user = NULL;
        const char *name;
        guint64 k;

        r = test_call_ok(l->d->central->conn, OUTPOST_USERS_PATH, IFACE_USERS, "GetUser",
                         g_variant_new("(s)", l->saver_id), "(a{sv})");
        user = g_variant_get_child_value(r, 0);
        g_assert_true(g_variant_lookup(user, "display-name", "&s", &name));
        g_assert_true(name[0] == 'v');
        k = g_ascii_strtoull(name + 1, NULL, 10);
        /* The last acknowledged save, or a later one whose answer was lost. */
        g_assert_cmpuint(k, >=, l->save_acked);
        g_assert_cmpuint(k, <, l->save_next);
        g_test_message("%" G_GUINT64_FORMAT " saves asked, last acknowledged v%" G_GUINT64_FORMAT ", central has %s",
                       l->save_next, l->save_acked, name);
}

static gboolean in_gap(Subscriber *s, guint64 seq) {
        for (guint i = 0; i + 1 < s->gaps->len; i += 2)
                if (seq > g_array_index(s->gaps, guint64, i) && seq < g_array_index(s->gaps, guint64, i + 1))
                        return TRUE;
        return FALSE;
}

/* From one owner of the name, events come in strictly increasing order,
 * and what it skipped it announced with Gap. */
static void check_epoch(Subscriber *s, const char *owner, GArray *seqs) {
        for (guint i = 1; i < seqs->len; i++) {
                guint64 prev = g_array_index(seqs, guint64, i - 1), seq = g_array_index(seqs, guint64, i);

                if (seq <= prev)
                        g_error("%s sent event %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT, owner, seq, prev);
                for (guint64 missing = prev + 1; missing < seq; missing++)
                        if (!in_gap(s, missing))
                                g_error("%s skipped event %" G_GUINT64_FORMAT " without a Gap", owner, missing);
        }
}

static gboolean seen(Subscriber *s, guint64 seq) {
        GHashTableIter it;
        gpointer value;

        if (g_hash_table_contains(s->fetched, &seq) || in_gap(s, seq))
                return TRUE;
        g_hash_table_iter_init(&it, s->epochs);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
                GArray *seqs = value;

                for (guint i = 0; i < seqs->len; i++)
                        if (g_array_index(seqs, guint64, i) == seq)
                                return TRUE;
        }
        return FALSE;
}

static void check_events(Subscriber *s, guint64 base, guint64 last) {
        GHashTableIter it;
        gpointer key, value;

        g_hash_table_iter_init(&it, s->epochs);
        while (g_hash_table_iter_next(&it, &key, &value))
                check_epoch(s, key, value);
        for (guint64 seq = base + 1; seq <= last; seq++)
                if (!seen(s, seq))
                        g_error("Event %" G_GUINT64_FORMAT " never reached the machine's subscriber", seq);
        g_test_message("events %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT " delivered from %u owners, %u gaps",
                       base + 1, last, g_hash_table_size(s->epochs), s->gaps->len / 2);
}

static gboolean presence_has(GDBusConnection *c, const char *user) {
        return test_is_online(c, user);
}

static void report_errors(Load *l) {
        GHashTableIter it;
        gpointer key, value;

        g_test_message("%u calls answered, %u with an error", l->answered, l->errors);
        g_hash_table_iter_init(&it, l->error_names);
        while (g_hash_table_iter_next(&it, &key, &value))
                g_test_message("  %u x %s", GPOINTER_TO_UINT(value), (const char *) key);
}

static void test_kill_and_stop_under_load(void) {
        g_autoptr(Deployment) d = deployment_new(NULL);
        Load l = {
                .d = d,
                .error_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL),
                .published = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free),
        };
        Subscriber s = {
                .load = &l,
                .epochs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_array_unref),
                .gaps = g_array_new(FALSE, FALSE, sizeof(guint64)),
                .fetched = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL),
        };
        guint64 base, last;
        guint sub, watch;

        l.conn = test_bus_connect(d->machine);
        l.saver_id = test_create_user(d->central->conn, "saver", &l.saver_tag);
        l.holder_id = test_create_user(d->central->conn, "holder", NULL);
        base = central_last_seq(d);
        s.max_seen = base;

        sub = g_dbus_connection_signal_subscribe(l.conn, NULL, IFACE_EVENTS, NULL, OUTPOST_EVENTS_PATH, NULL,
                                                 G_DBUS_SIGNAL_FLAGS_NONE, on_event, &s, NULL);
        watch = g_bus_watch_name_on_connection(l.conn, OUTPOST_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                               on_name_appeared, NULL, &s, NULL);
        test_wait_until(l.holding, 10000);
        publish_next(&l);
        save_next(&l);

        for (int round = 0; round < FAULTS; round++) {
                run_for(g_test_rand_int_range(200, 1500));
                inject_fault(d, round);
        }

        /* Everything runs again: the machine converges, the load ends and
         * every call in flight is answered. */
        wait_bridge_state(d->machine->conn, "connected", 30000);
        run_for(500);
        l.stopping = TRUE;
        test_wait_until(l.in_flight == 0 && l.timers == 0, CALL_TIMEOUT_MS + 5000);
        report_errors(&l);
        g_assert_cmpuint(g_hash_table_size(l.published), >, 0);
        g_assert_cmpuint(l.save_acked, >, 0);

        last = central_last_seq(d);
        test_wait_until(s.max_seen >= last && l.in_flight == 0 && l.timers == 0, 20000);
        check_publishes(&l, base);
        check_saves(&l);
        check_events(&s, base, last);
        test_wait_until(presence_has(d->central->conn, l.holder_id), 20000);

        g_bus_unwatch_name(watch);
        g_dbus_connection_signal_unsubscribe(l.conn, sub);
        g_dbus_connection_close_sync(l.conn, NULL, NULL);
        /* Let queued idle callbacks of the closed connection run before
         * the state they point at goes. */
        run_for(100);
        g_object_unref(l.conn);
        g_hash_table_unref(l.error_names);
        g_hash_table_unref(l.published);
        g_free(l.saver_id);
        g_free(l.saver_tag);
        g_free(l.holder_id);
        g_hash_table_unref(s.epochs);
        g_array_unref(s.gaps);
        g_hash_table_unref(s.fetched);
        g_free(s.owner);
}

int main(int argc, char **argv) {
        bridge_test_init(&argc, &argv);
        g_test_add_func("/faults/kill-and-stop-under-load", test_kill_and_stop_under_load);
        return g_test_run();
}
