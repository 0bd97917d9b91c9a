/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Presence manager: a model (Online, Generation) changed only through
 * its controller (GoOnline, GoOffline). A user is online while some bus
 * connection holds it; holds end with GoOffline, with the holder leaving the
 * bus, with their ttl, or with the user being deleted or disabled
 * (DESIGN.md §3, Presence). */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "bus-gvariant.h"
#include "daemon.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

typedef struct Holder Holder;

typedef struct Hold {
        Holder *holder;
        char *user_id;
        uint64_t expires;       /* CLOCK_MONOTONIC µs; 0: held until GoOffline or the holder leaves */
        GSequenceIter *expiry;  /* in Presence.expiring while expires != 0 */
} Hold;

/* One bus connection that holds, or held, users online. It is kept until
 * the connection leaves the bus, so that a client going on and off line
 * does not set up peer tracking (a bus round trip) each time. */
struct Holder {
        Presence *presence;
        char *sender;
        sd_bus_track *track;
        GHashTable *holds;      /* user id → Hold */
};

struct Presence {
        Daemon *daemon;
        GHashTable *holders;    /* unique bus name → Holder */
        GHashTable *online;     /* user id → number of holds (GUINT_TO_POINTER) */
        uint64_t generation;
        /* The holds with a ttl, soonest to expire first: the timer and
         * GoOnline look at the first, never at every hold. */
        GSequence *expiring;
        sd_event_source *expiry_timer;
        bool peers_full_logged; /* MaxPeers was reached and said so in the log */
};

/* What one commit changes: users that came online and that went offline. */
typedef struct Change {
        GPtrArray *online;
        GPtrArray *offline;
} Change;

static void change_init(Change *c) {
        c->online = g_ptr_array_new_with_free_func(g_free);
        c->offline = g_ptr_array_new_with_free_func(g_free);
}

static void change_clear(Change *c) {
        g_clear_pointer(&c->online, g_ptr_array_unref);
        g_clear_pointer(&c->offline, g_ptr_array_unref);
}

static bool change_is_empty(const Change *c) {
        return c->online->len == 0 && c->offline->len == 0;
}

static uint64_t now_monotonic(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static int compare_expiry(const void *a, const void *b, void *userdata) {
        const Hold *x = a, *y = b;

        if (x->expires != y->expires)
                return x->expires < y->expires ? -1 : 1;
        /* Any order among equals, but a total one. */
        return x < y ? -1 : x > y;
}

/* Set when H lapses (0: never) and its place among the expiring holds. */
static void hold_set_expiry(Hold *h, uint64_t expires) {
        if (h->expiry)
                g_sequence_remove(g_steal_pointer(&h->expiry));
        h->expires = expires;
        if (expires != 0)
                h->expiry = g_sequence_insert_sorted(h->holder->presence->expiring, h, compare_expiry, NULL);
}

static void hold_free(Hold *h) {
        if (h->expiry)
                g_sequence_remove(h->expiry);
        g_free(h->user_id);
        g_free(h);
}

static void holder_free(Holder *h) {
        sd_bus_track_unref(h->track);
        g_hash_table_unref(h->holds);
        g_free(h->sender);
        g_free(h);
}

/* Count a hold of USER_ID; note in C when the user comes online. */
static void online_add(Presence *p, const char *user_id, Change *c) {
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(p->online, user_id));

        g_hash_table_replace(p->online, g_strdup(user_id), GUINT_TO_POINTER(n + 1));
        if (n == 0)
                g_ptr_array_add(c->online, g_strdup(user_id));
}

static void online_remove(Presence *p, const char *user_id, Change *c) {
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(p->online, user_id));

        if (n <= 1) {
                g_hash_table_remove(p->online, user_id);
                g_ptr_array_add(c->offline, g_strdup(user_id));
        } else
                g_hash_table_replace(p->online, g_strdup(user_id), GUINT_TO_POINTER(n - 1));
}

static void hold_remove(Hold *h, Change *c) {
        Holder *holder = h->holder;

        online_remove(holder->presence, h->user_id, c);
        g_hash_table_remove(holder->holds, h->user_id);
}

static int append_presence_events(Daemon *d, GPtrArray *users, bool online) {
        for (guint i = 0; i < users->len; i++) {
                g_autoptr(GVariant) data = g_variant_ref_sink(vardict_new("user", g_variant_new_string(users->pdata[i]),
                                                                          "online", g_variant_new_boolean(online),
                                                                          NULL));
                int r = daemon_append_event(d, "presence", data, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int append_online(Presence *p, sd_bus_message *m) {
        g_autofree const char **ids = (const char **) g_hash_table_get_keys_as_array(p->online, NULL);

        qsort(ids, g_hash_table_size(p->online), sizeof(char *), compare_strings);
        return sd_bus_message_append_strv(m, (char **) ids);
}

/* The PropertiesChanged of the model as it is now, with Online and
 * Generation. Built now and sent after the commit: by then later changes of
 * the same batch may have moved the model on, and each signal must show its
 * own change, with its own Generation. */
static int changed_signal_new(Presence *p, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(p->daemon->bus, &m, PRESENCE_PATH, "org.freedesktop.DBus.Properties",
                                      "PropertiesChanged");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", PRESENCE_IFACE);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "Online");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "as");
        if (r >= 0)
                r = append_online(p, m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}", "Generation", "t", p->generation);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "as", 0);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

/* A change applied to the model joins the open batch as one change: ONE
 * PropertiesChanged with Online and Generation, then its events, all sent
 * once the batch is durable and before the reply of whoever made it. */
static int presence_publish(Presence *p, Change *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *signal = NULL;
        Daemon *d = p->daemon;
        int r, k;

        if (change_is_empty(c))
                return 0;

        p->generation++;
        k = changed_signal_new(p, &signal);
        if (k < 0)
                /* Clients still see the events, and read the model anew. */
                log_error_errno(k, "Cannot build the PropertiesChanged of presence generation %" G_GUINT64_FORMAT,
                                p->generation);

        r = daemon_begin(d);
        if (r >= 0 && signal)
                daemon_append_signal(d, signal);
        if (r >= 0)
                r = append_presence_events(d, c->online, true);
        if (r >= 0)
                r = append_presence_events(d, c->offline, false);
        if (r >= 0)
                r = daemon_end_change(d);
        if (r < 0) {
                daemon_rollback(d);
                /* Presence is volatile: the model follows its holders even
                 * when the history cannot record it. */
                log_error_errno(r, "Cannot record presence events; the change is shown without them");
                if (signal)
                        daemon_append_signal(d, signal);
        }
        return r < 0 ? r : k;
}

static void rearm_expiry(Presence *p);

static int on_holder_left(sd_bus_track *track, void *userdata) {
        Holder *h = userdata;
        Presence *p = h->presence;
        _cleanup_(change_clear) Change c = {};
        GHashTableIter iter;
        Hold *hold;

        change_init(&c);
        log_debug("%s left the bus; releasing its %u holds", h->sender, g_hash_table_size(h->holds));
        g_hash_table_iter_init(&iter, h->holds);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &hold)) {
                online_remove(p, hold->user_id, &c);
                g_hash_table_iter_remove(&iter);
        }
        g_hash_table_remove(p->holders, h->sender);     /* frees h */
        p->peers_full_logged = false;
        (void) presence_publish(p, &c);
        /* No caller waits for this change: show it now. */
        (void) daemon_flush(p->daemon);
        rearm_expiry(p);
        return 0;
}

static int holder_get(Presence *p, sd_bus_message *m, Holder **ret) {
        const char *sender = sd_bus_message_get_sender(m);
        Holder *h;
        int r;

        if (!sender)
                return -ENXIO;
        h = g_hash_table_lookup(p->holders, sender);
        if (h) {
                *ret = h;
                return 0;
        }
        /* Each holder costs a match rule on the bus and memory here. */
        if (g_hash_table_size(p->holders) >= p->daemon->config.max_presence_peers)
                return -EUSERS;

        h = g_new0(Holder, 1);
        h->presence = p;
        h->sender = g_strdup(sender);
        h->holds = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) hold_free);
        r = sd_bus_track_new(p->daemon->bus, &h->track, on_holder_left, h);
        if (r >= 0)
                r = sd_bus_track_add_name(h->track, sender);
        if (r < 0) {
                holder_free(h);
                return r;
        }
        g_hash_table_insert(p->holders, h->sender, h);
        *ret = h;
        return 0;
}

static Hold *first_expiring(Presence *p) {
        GSequenceIter *first = g_sequence_get_begin_iter(p->expiring);

        return g_sequence_iter_is_end(first) ? NULL : g_sequence_get(first);
}

static int on_expiry(sd_event_source *s, uint64_t usec, void *userdata) {
        Presence *p = userdata;
        _cleanup_(change_clear) Change c = {};
        uint64_t now = now_monotonic();
        Hold *hold;

        change_init(&c);
        while ((hold = first_expiring(p)) && hold->expires <= now)
                hold_remove(hold, &c);
        (void) presence_publish(p, &c);
        /* No caller waits for this change: show it now. */
        (void) daemon_flush(p->daemon);
        rearm_expiry(p);
        return 0;
}

/* The timer fires at the earliest expiry of any hold with a ttl. */
static void rearm_expiry(Presence *p) {
        Hold *first = first_expiring(p);

        if (!first) {
                (void) sd_event_source_set_enabled(p->expiry_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(p->expiry_timer, first->expires);
        (void) sd_event_source_set_enabled(p->expiry_timer, SD_EVENT_ONESHOT);
}

/* The user ID exists and may be online, or an error says why not. */
static int check_user(Presence *p, const char *id, bool for_online, sd_bus_error *error) {
        const UserRecord *u;
        int r;

        if (!uuid_string_is_valid(id)) {
                g_autofree char *q = quote_for_error(id, 80);
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid user id '%s': expected a lower-case UUID", q);
        }
        r = store_user_get(p->daemon->store, id, &u);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND, "No user with id '%s'", id);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED, "The store could not read user '%s'", id);
        if (for_online && !u->enabled)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "User '%s' (%s) is disabled and cannot go online", id, u->name);
        return 0;
}

static int go_online_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        Presence *p = d->presence;
        _cleanup_(change_clear) Change c = {};
        const char *user_id;
        uint32_t ttl;
        Holder *h;
        Hold *hold;
        int r;

        r = sd_bus_message_read(m, "su", &user_id, &ttl);
        if (r < 0)
                return r;
        r = check_user(p, user_id, true, error);
        if (r < 0)
                return r;
        r = polkit_authorize(d->polkit, m, POLKIT_ACTION_SET_PRESENCE, error);
        if (r != 0)
                return r;
        r = holder_get(p, m, &h);
        if (r == -EUSERS) {
                /* Once until the count drops again: no log flood. */
                if (!p->peers_full_logged)
                        log_warning("Presence: refusing holds of new connections (%s first): %u connections "
                                    "already hold presence ([Presence] MaxPeers)",
                                    sd_bus_message_get_sender(m), d->config.max_presence_peers);
                p->peers_full_logged = true;
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Too many connections hold presence: at most %u ([Presence] MaxPeers)",
                                         d->config.max_presence_peers);
        }
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot track the caller: %s", strerror(-r));

        change_init(&c);
        hold = g_hash_table_lookup(h->holds, user_id);
        if (!hold && g_hash_table_size(h->holds) >= d->config.max_holds_per_connection)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Connection %s already holds %u users online, the most it may "
                                         "([Presence] MaxHoldsPerPeer); cannot hold '%s'",
                                         h->sender, d->config.max_holds_per_connection, user_id);
        if (!hold) {
                hold = g_new0(Hold, 1);
                hold->holder = h;
                hold->user_id = g_strdup(user_id);
                g_hash_table_insert(h->holds, hold->user_id, hold);
                online_add(p, user_id, &c);
        }
        /* Calling again renews, and may change the kind of hold. */
        hold_set_expiry(hold, ttl == 0 ? 0 : now_monotonic() + (uint64_t) ttl * G_USEC_PER_SEC);
        rearm_expiry(p);

        (void) presence_publish(p, &c);
        return daemon_reply_after_commit(d, m, NULL, NULL, "t", p->generation);
}

static int method_go_online(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, go_online_call(m, userdata, error));
}

static int go_offline_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        Presence *p = d->presence;
        _cleanup_(change_clear) Change c = {};
        const char *user_id, *sender;
        Holder *h;
        Hold *hold;
        int r;

        r = sd_bus_message_read(m, "s", &user_id);
        if (r < 0)
                return r;
        r = check_user(p, user_id, false, error);
        if (r < 0)
                return r;
        r = polkit_authorize(d->polkit, m, POLKIT_ACTION_SET_PRESENCE, error);
        if (r != 0)
                return r;

        change_init(&c);
        sender = sd_bus_message_get_sender(m);
        h = sender ? g_hash_table_lookup(p->holders, sender) : NULL;
        hold = h ? g_hash_table_lookup(h->holds, user_id) : NULL;
        if (hold) {
                hold_remove(hold, &c);
                rearm_expiry(p);
        }
        (void) presence_publish(p, &c);
        return daemon_reply_after_commit(d, m, NULL, NULL, "t", p->generation);
}

static int method_go_offline(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, go_offline_call(m, userdata, error));
}

int presence_user_gone(Daemon *d, const char *user_id) {
        Presence *p = d->presence;
        _cleanup_(change_clear) Change c = {};
        GHashTableIter iter;
        Holder *h;

        if (!g_hash_table_contains(p->online, user_id))
                return 0;

        change_init(&c);
        g_hash_table_iter_init(&iter, p->holders);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &h)) {
                Hold *hold = g_hash_table_lookup(h->holds, user_id);
                if (hold)
                        hold_remove(hold, &c);
        }
        rearm_expiry(p);
        return presence_publish(p, &c);
}

static int property_get_online(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return append_online(d->presence, reply);
}

static int property_get_generation(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "t", d->presence->generation);
}

static const sd_bus_vtable presence_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Online", "as", property_get_online, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Generation", "t", property_get_generation, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("GoOnline",
                                SD_BUS_ARGS("s", user_id, "u", ttl_seconds),
                                SD_BUS_RESULT("t", generation),
                                method_go_online,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GoOffline",
                                SD_BUS_ARGS("s", user_id),
                                SD_BUS_RESULT("t", generation),
                                method_go_offline,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

void presence_free(Presence *p) {
        if (!p)
                return;
        /* The holds leave the sequence as they go. */
        g_hash_table_unref(p->holders);
        g_sequence_free(p->expiring);
        g_hash_table_unref(p->online);
        sd_event_source_unref(p->expiry_timer);
        g_free(p);
}

int presence_register(Daemon *d) {
        Presence *p = g_new0(Presence, 1);
        int r;

        p->daemon = d;
        p->holders = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) holder_free);
        p->online = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        p->expiring = g_sequence_new(NULL);
        /* Presence is volatile, but Generation must never go back: every
         * change publishes one event, so the last seq at start is past any
         * generation an earlier run reached. */
        p->generation = store_event_last_seq(d->store);
        d->presence = p;

        r = sd_event_add_time(d->event, &p->expiry_timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_expiry, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->expiry_timer, SD_EVENT_OFF);
        return sd_bus_add_object_vtable(d->bus, NULL, PRESENCE_PATH, PRESENCE_IFACE, presence_vtable, d);
}
