/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Presence manager: a model (Generation, OnlineCount, and one object
 * per online user) changed only through its controller (GoOnline,
 * GoOffline). A user is online while some bus connection holds it; holds
 * end with GoOffline, with the holder leaving the bus, with their ttl, or
 * with the user being deleted or disabled (DESIGN.md §3, Presence). What a
 * change costs does not depend on how many users are online: the hold
 * table finds a user's holds and a holder's without looking at others,
 * and a change's signals name only the objects it adds or removes. Holders leaving the bus are seen through
 * one match rule for every departure, not one per holder: a stock system
 * bus allows a connection 512 match rules, and there are more callers.
 *
 * This file holds the model and the holds; presence-dbus.c is its face on
 * the bus, and builds the signals of its changes. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "log.h"
#include "macro.h"
#include "presence.h"
#include "validate.h"

/* The model: the online users, and each change of them published as one
 * change of the batch. */

/* What one commit changes: the InterfacesAdded/InterfacesRemoved of the
 * objects it adds and removes, built as each happens (an object removed is
 * gone by the time the change is published), and the users concerned, for
 * the events. */
typedef struct Change {
        GPtrArray *objects;     /* sd_bus_message */
        GPtrArray *online;
        GPtrArray *offline;
} Change;

static void message_unref(void *m) {
        sd_bus_message_unref(m);
}

static void change_init(Change *c) {
        c->objects = g_ptr_array_new_with_free_func(message_unref);
        c->online = g_ptr_array_new_with_free_func(g_free);
        c->offline = g_ptr_array_new_with_free_func(g_free);
}

static void change_clear(Change *c) {
        g_clear_pointer(&c->objects, g_ptr_array_unref);
        g_clear_pointer(&c->online, g_ptr_array_unref);
        g_clear_pointer(&c->offline, g_ptr_array_unref);
}

static bool change_is_empty(const Change *c) {
        return c->online->len == 0 && c->offline->len == 0;
}

static void online_user_free(OnlineUser *u) {
        g_free(u->user_id);
        g_free(u->path);
        g_free(u);
}

/* The object path of USER_ID: a UUID has '-', which object paths lack. */
static char *online_user_path(const char *user_id) {
        g_autofree char *segment = g_strdup(user_id);

        g_strdelimit(segment, "-", '_');
        return g_strconcat(PRESENCE_PATH "/", segment, NULL);
}

/* Note in C the InterfacesAdded (ADDED) or InterfacesRemoved of U, built
 * now: it is sent after the commit, ahead of the change's PropertiesChanged
 * (DESIGN.md §4 rule 1). */
static void change_add_object(Presence *p, Change *c, const OnlineUser *u, bool added) {
        sd_bus_message *m;
        int r;

        r = online_user_signal_new(p, u, added, &m);
        if (r < 0) {
                /* GetManagedObjects still shows the truth. */
                log_error_errno(r, "Cannot build the %s of %s", added ? "InterfacesAdded" : "InterfacesRemoved",
                                u->path);
                return;
        }
        g_ptr_array_add(c->objects, m);
}

/* USER_ID has its first hold: online, and announced in C. */
static void online_user_add(Presence *p, const char *user_id, Change *c) {
        OnlineUser *u = g_new0(OnlineUser, 1);

        assert(!g_hash_table_contains(p->online, user_id));
        u->user_id = g_strdup(user_id);
        u->path = online_user_path(user_id);
        u->since = g_get_real_time();
        g_hash_table_insert(p->online, u->user_id, u);
        g_ptr_array_add(c->online, g_strdup(user_id));
        change_add_object(p, c, u, true);
}

/* U lost its last hold: offline. */
static void online_user_gone(Presence *p, OnlineUser *u, Change *c) {
        g_ptr_array_add(c->offline, g_strdup(u->user_id));
        change_add_object(p, c, u, false);
        g_hash_table_remove(p->online, u->user_id);     /* frees u */
}

static int append_presence_events(Presence *p, GPtrArray *users, bool online) {
        for (guint i = 0; i < users->len; i++) {
                g_autoptr(GVariant) data = g_variant_ref_sink(vardict_new("user", g_variant_new_string(users->pdata[i]),
                                                                          "online", g_variant_new_boolean(online),
                                                                          "generation", g_variant_new_uint64(p->generation),
                                                                          NULL));
                int r = daemon_append_event(p->daemon, "presence", data, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The signals of C in the order of DESIGN.md §3: its objects, then the
 * manager's one PropertiesChanged. */
static void append_change_signals(Daemon *d, Change *c, sd_bus_message *changed) {
        for (guint i = 0; i < c->objects->len; i++)
                daemon_append_signal(d, c->objects->pdata[i]);
        if (changed)
                daemon_append_signal(d, changed);
}

/* C's signals and events, as a change of the batch of its own. */
static int publish_change(Presence *p, Change *c, sd_bus_message *changed) {
        Daemon *d = p->daemon;
        int r;

        r = daemon_begin(d);
        if (r < 0)
                return r;
        append_change_signals(d, c, changed);
        r = append_presence_events(p, c->online, true);
        if (r < 0)
                return r;
        r = append_presence_events(p, c->offline, false);
        if (r < 0)
                return r;
        return daemon_end_change(d);
}

/* A change applied to the model joins the open batch as one change: its
 * objects' InterfacesAdded/InterfacesRemoved, ONE PropertiesChanged with
 * Generation and OnlineCount, then its events, all sent once the batch is
 * durable and before the reply of whoever made it. The PropertiesChanged is
 * built now: by then later changes of the same batch may have moved the
 * model on, and each signal must show its own change. */
static int presence_publish(Presence *p, Change *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *signal = NULL;
        Daemon *d = p->daemon;
        int r, k;

        if (change_is_empty(c))
                return 0;

        p->generation++;
        k = presence_changed_signal_new(p, &signal);
        if (k < 0)
                /* Clients still see the events, and read the model anew. */
                log_error_errno(k, "Cannot build the PropertiesChanged of presence generation %" G_GUINT64_FORMAT,
                                p->generation);

        r = publish_change(p, c, signal);
        if (r < 0) {
                daemon_rollback(d);
                /* Presence is volatile: the model follows its holders even
                 * when the history cannot record it. */
                log_error_errno(r, "Cannot record presence events; the change is shown without them");
                append_change_signals(d, c, signal);
                return r;
        }
        return k;
}

/* Holds: who keeps a user online, until when, and what ends a hold (the
 * holder letting go or leaving the bus, its ttl, the user going). The
 * holds are in the hold table every layer keeps (src/shared/hold-table.c);
 * here are their holders, watched until they leave the bus. */

/* One bus connection that holds, or held, users online. It is kept until
 * the connection leaves the bus, so that a client going on and off line
 * does not check its presence on the bus (a round trip) each time. */
struct Holder {
        Presence *presence;
        char *sender;
        sd_bus_slot *check;     /* GetNameOwner: whether it left before we knew it */
};

static void holder_free(Holder *h) {
        sd_bus_slot_unref(h->check);
        g_free(h->sender);
        g_free(h);
}

/* USERS lost their last hold together, by lapses or by their holder
 * leaving: offline, as one change. */
static void on_holds_released(HoldTable *t, char **users, void *userdata) {
        Presence *p = userdata;
        _cleanup_(change_clear) Change c = {};

        change_init(&c);
        for (char **id = users; *id; id++) {
                OnlineUser *u = g_hash_table_lookup(p->online, *id);

                assert(u);
                online_user_gone(p, u, &c);
        }
        (void) presence_publish(p, &c);
        /* No caller waits for this change: show it now. */
        daemon_flush(p->daemon);
}

static void holder_left(Holder *h) {
        Presence *p = h->presence;

        log_debug("%s left the bus; releasing its %u holds", h->sender, hold_table_holder_size(p->holds, h->sender));
        hold_table_remove_holder(p->holds, h->sender);
        g_hash_table_remove(p->holders, h->sender);     /* frees h */
        p->peers_full_logged = false;
}

/* A unique name lost its owner: that connection left the bus. */
static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Presence *p = userdata;
        const char *name, *old_owner, *new_owner;
        Holder *h;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || new_owner[0] != '\0')
                return 0;
        h = g_hash_table_lookup(p->holders, name);
        if (h)
                holder_left(h);
        return 0;
}

/* The departure of a caller whose call waited (for polkit) may have come
 * before its holder existed. The bus answers this after any such
 * departure, and the match sees every later one. */
static int on_holder_checked(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Holder *h = userdata;

        h->check = sd_bus_slot_unref(h->check);
        if (sd_bus_message_is_method_error(reply, NULL))
                holder_left(h);
        return 0;
}

static int holder_get(Presence *p, const char *sender, Holder **ret) {
        Holder *h;
        int r;

        if (!sender)
                return -ENXIO;
        h = g_hash_table_lookup(p->holders, sender);
        if (h) {
                *ret = h;
                return 0;
        }
        /* Each holder costs memory here. */
        if (g_hash_table_size(p->holders) >= p->daemon->config.max_presence_peers)
                return -EUSERS;

        h = g_new0(Holder, 1);
        h->presence = p;
        h->sender = g_strdup(sender);
        r = sd_bus_call_method_async(p->daemon->bus, &h->check, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetNameOwner", on_holder_checked, h, "s", sender);
        if (r < 0) {
                holder_free(h);
                return r;
        }
        g_hash_table_insert(p->holders, h->sender, h);
        *ret = h;
        return 0;
}

/* The changes: GoOnline, GoOffline, and a user deleted or disabled. */

int presence_check_user(Presence *p, const char *id, bool for_online, sd_bus_error *error) {
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

/* SENDER's holder, or -EUSERS refused with LimitExceeded (logged once
 * until a holder leaves). */
static int holder_get_limited(Presence *p, const char *sender, Holder **ret, sd_bus_error *error) {
        unsigned max_peers = p->daemon->config.max_presence_peers;
        int r;

        r = holder_get(p, sender, ret);
        if (r == -EUSERS) {
                /* Once until the count drops again: no log flood. */
                if (!p->peers_full_logged)
                        log_warning("Presence: refusing holds of new connections (%s first): %u connections "
                                    "already hold presence ([Presence] MaxPeers)",
                                    sender, max_peers);
                p->peers_full_logged = true;
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Too many connections hold presence: at most %u ([Presence] MaxPeers)",
                                         max_peers);
        }
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot track the caller: %s", strerror(-r));
        return 0;
}

int presence_hold(Presence *p, const char *sender, const char *user_id, uint32_t ttl, sd_bus_error *error) {
        unsigned max_holds = p->daemon->config.max_holds_per_connection;
        _cleanup_(change_clear) Change c = {};
        Holder *h = NULL;
        int r;

        r = holder_get_limited(p, sender, &h, error);
        if (r < 0)
                return r;
        assert(h);

        /* Calling again renews, and may change the kind of hold. */
        r = hold_table_add(p->holds, sender, user_id, (uint64_t) ttl * G_USEC_PER_SEC, max_holds, NULL);
        if (r == -EDQUOT)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Connection %s already holds %u users online, the most it may "
                                         "([Presence] MaxHoldsPerPeer); cannot hold '%s'",
                                         sender, max_holds, user_id);
        if (r == 0)
                return 0;       /* online already */
        change_init(&c);
        online_user_add(p, user_id, &c);
        (void) presence_publish(p, &c);
        return 0;
}

void presence_release(Presence *p, const char *sender, const char *user_id) {
        _cleanup_(change_clear) Change c = {};
        OnlineUser *u;

        /* Its last hold: the user goes offline. */
        if (!sender || hold_table_remove(p->holds, sender, user_id, 0) != 1)
                return;
        u = g_hash_table_lookup(p->online, user_id);
        assert(u);
        change_init(&c);
        online_user_gone(p, u, &c);
        (void) presence_publish(p, &c);
}

int presence_user_gone(Daemon *d, const char *user_id) {
        Presence *p = d->presence;
        _cleanup_(change_clear) Change c = {};
        OnlineUser *u = g_hash_table_lookup(p->online, user_id);

        if (!u)
                return 0;

        /* The user's own holds, whoever has them. */
        (void) hold_table_remove_user(p->holds, user_id);
        change_init(&c);
        online_user_gone(p, u, &c);
        return presence_publish(p, &c);
}

void presence_free(Presence *p) {
        if (!p)
                return;
        hold_table_free(p->holds);
        g_hash_table_unref(p->holders);
        sd_bus_slot_unref(p->departures);
        g_hash_table_unref(p->online);
        g_free(p);
}

static void presence_freep(Presence **p) {
        presence_free(*p);
}

int presence_new(Daemon *d, Presence **ret) {
        _cleanup_(presence_freep) Presence *p = g_new0(Presence, 1);
        int r;

        p->daemon = d;
        p->holders = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) holder_free);
        p->online = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) online_user_free);
        /* Presence is volatile, but Generation must never go back: every
         * change publishes one event, so the last seq at start is past any
         * generation an earlier run reached. */
        p->generation = store_event_last_seq(d->store);

        r = hold_table_new(d->event, on_holds_released, p, &p->holds);
        if (r < 0)
                return r;
        /* Before the name is requested, so before any caller can hold. */
        r = sd_bus_add_match_async(d->bus, &p->departures,
                                   "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                   "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg2=''",
                                   on_name_owner_changed, NULL, p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}
