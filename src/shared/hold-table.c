/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who holds which user online. Each hold is in three places at once: its
 * holder's table (user id → Hold), its user's list of holds (no allocation:
 * the link is in the hold) and, while it has a ttl, the sequence of holds
 * soonest to lapse first. So a holder leaving looks only at its own holds,
 * a user removed only at the user's, and the timer only at the first of
 * the sequence: nothing here ever walks every hold. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <glib.h>

#include "hold-table.h"

typedef struct HeldUser {
        char *id;
        GQueue holds;                   /* Hold, by their user_link */
} HeldUser;

typedef struct Holder {
        char *name;
        GHashTable *holds;              /* user id (the HeldUser's) → Hold */
} Holder;

typedef struct Hold {
        Holder *holder;
        HeldUser *user;
        GList user_link;                /* in user->holds */
        uint64_t id;
        uint64_t expires;               /* CLOCK_MONOTONIC µs; 0: no ttl */
        GSequenceIter *expiry;          /* in HoldTable.expiring while expires != 0 */
} Hold;

struct HoldTable {
        sd_event *event;
        GHashTable *users;              /* user id → HeldUser */
        GHashTable *holders;            /* holder → Holder */
        GSequence *expiring;            /* Hold with a ttl, soonest first */
        sd_event_source *timer;
        uint64_t last_id;
        HoldReleasedFn released;
        void *userdata;
};

static void held_user_free(HeldUser *u) {
        assert(g_queue_is_empty(&u->holds));
        g_free(u->id);
        g_free(u);
}

static void hold_free(Hold *h) {
        if (h->expiry)
                g_sequence_remove(h->expiry);
        g_free(h);
}

static void holder_free(Holder *h) {
        g_hash_table_unref(h->holds);
        g_free(h->name);
        g_free(h);
}

int hold_table_new(sd_event *event, HoldReleasedFn released, void *userdata, HoldTable **ret) {
        HoldTable *t = g_new0(HoldTable, 1);

        assert(event);
        t->event = sd_event_ref(event);
        t->users = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) held_user_free);
        t->holders = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) holder_free);
        t->expiring = g_sequence_new(NULL);
        t->released = released;
        t->userdata = userdata;
        *ret = t;
        return 0;
}

HoldTable *hold_table_free(HoldTable *t) {
        if (!t)
                return NULL;
        hold_table_clear(t);
        g_hash_table_unref(t->holders);
        g_hash_table_unref(t->users);
        g_sequence_free(t->expiring);
        sd_event_source_disable_unref(t->timer);
        sd_event_unref(t->event);
        g_free(t);
        return NULL;
}

static uint64_t now_monotonic(HoldTable *t) {
        uint64_t now = 0;

        (void) sd_event_now(t->event, CLOCK_MONOTONIC, &now);
        return now;
}

static Hold *first_expiring(HoldTable *t) {
        GSequenceIter *first = g_sequence_get_begin_iter(t->expiring);

        return g_sequence_iter_is_end(first) ? NULL : g_sequence_get(first);
}

static int on_expiry(sd_event_source *s, uint64_t usec, void *userdata);

/* The timer fires at the soonest lapse of any hold. */
static void rearm_expiry(HoldTable *t) {
        Hold *first = first_expiring(t);

        if (!first) {
                (void) sd_event_source_set_enabled(t->timer, SD_EVENT_OFF);
                return;
        }
        if (!t->timer &&
            sd_event_add_time(t->event, &t->timer, CLOCK_MONOTONIC, first->expires, 0, on_expiry, t) < 0)
                return;         /* retried at the next change; a late lapse is the worst of it */
        (void) sd_event_source_set_time(t->timer, first->expires);
        (void) sd_event_source_set_enabled(t->timer, SD_EVENT_ONESHOT);
}

static int compare_expiry(const void *a, const void *b, void *userdata) {
        const Hold *x = a, *y = b;

        if (x->expires != y->expires)
                return x->expires < y->expires ? -1 : 1;
        /* Any order among equals, but a total one. */
        return x->id < y->id ? -1 : x->id > y->id;
}

static void hold_set_expiry(HoldTable *t, Hold *h, uint64_t expires) {
        if (h->expiry)
                g_sequence_remove(g_steal_pointer(&h->expiry));
        h->expires = expires;
        if (expires != 0)
                h->expiry = g_sequence_insert_sorted(t->expiring, h, compare_expiry, NULL);
}

/* End hold H; returns whether it was its user's last (the user is then
 * gone from the table). */
static bool hold_end(HoldTable *t, Hold *h) {
        HeldUser *u = h->user;
        Holder *holder = h->holder;

        g_queue_unlink(&u->holds, &h->user_link);
        g_hash_table_remove(holder->holds, u->id);      /* frees h */
        if (g_hash_table_size(holder->holds) == 0)
                g_hash_table_remove(t->holders, holder->name);
        if (!g_queue_is_empty(&u->holds))
                return false;
        g_hash_table_remove(t->users, u->id);
        return true;
}

/* End H, noting its user in RELEASED when that was the last hold. */
static void hold_end_noting(HoldTable *t, Hold *h, GPtrArray *released) {
        g_autofree char *user = g_strdup(h->user->id);

        if (hold_end(t, h))
                g_ptr_array_add(released, g_steal_pointer(&user));
}

static void tell_released(HoldTable *t, GPtrArray *released) {
        if (released->len == 0 || !t->released)
                return;
        g_ptr_array_add(released, NULL);
        t->released(t, (char **) released->pdata, t->userdata);
}

static int on_expiry(sd_event_source *s, uint64_t usec, void *userdata) {
        HoldTable *t = userdata;
        g_autoptr(GPtrArray) released = g_ptr_array_new_with_free_func(g_free);
        uint64_t now = now_monotonic(t);
        Hold *h;

        while ((h = first_expiring(t)) && h->expires <= now)
                hold_end_noting(t, h, released);
        rearm_expiry(t);
        tell_released(t, released);
        return 0;
}

static Holder *holder_get(HoldTable *t, const char *name) {
        Holder *h = g_hash_table_lookup(t->holders, name);

        if (h)
                return h;
        h = g_new0(Holder, 1);
        h->name = g_strdup(name);
        h->holds = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) hold_free);
        g_hash_table_insert(t->holders, h->name, h);
        return h;
}

static HeldUser *held_user_get(HoldTable *t, const char *id, bool *ret_new) {
        HeldUser *u = g_hash_table_lookup(t->users, id);

        *ret_new = !u;
        if (u)
                return u;
        u = g_new0(HeldUser, 1);
        u->id = g_strdup(id);
        g_hash_table_insert(t->users, u->id, u);
        return u;
}

static Hold *hold_find(HoldTable *t, const char *holder, const char *user) {
        Holder *h = g_hash_table_lookup(t->holders, holder);

        return h ? g_hash_table_lookup(h->holds, user) : NULL;
}

int hold_table_add(HoldTable *t, const char *holder, const char *user, uint64_t ttl_usec, unsigned max,
                   uint64_t *ret_id) {
        Hold *h = hold_find(t, holder, user);
        uint64_t id = 0;
        bool first = false;

        if (!h) {
                if (max > 0 && hold_table_holder_size(t, holder) >= max)
                        return -EDQUOT;
                h = g_new0(Hold, 1);
                h->holder = holder_get(t, holder);
                h->user = held_user_get(t, user, &first);
                h->id = id = ++t->last_id;
                h->user_link.data = h;
                g_queue_push_tail_link(&h->user->holds, &h->user_link);
                g_hash_table_insert(h->holder->holds, h->user->id, h);
        }
        /* Holding again renews, and may change the kind of hold. */
        hold_set_expiry(t, h, ttl_usec == 0 ? 0 : now_monotonic(t) + ttl_usec);
        rearm_expiry(t);
        if (ret_id)
                *ret_id = id;
        return first;
}

int hold_table_remove(HoldTable *t, const char *holder, const char *user, uint64_t id) {
        Hold *h = hold_find(t, holder, user);
        bool last;

        if (!h || (id != 0 && h->id != id))
                return -ENOENT;
        last = hold_end(t, h);
        rearm_expiry(t);
        return last;
}

void hold_table_remove_holder(HoldTable *t, const char *holder) {
        Holder *h = g_hash_table_lookup(t->holders, holder);
        g_autoptr(GPtrArray) released = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GList) holds = NULL;

        if (!h)
                return;
        /* The holder goes with its last hold: not while iterating it. */
        holds = g_hash_table_get_values(h->holds);
        for (GList *l = holds; l; l = l->next)
                hold_end_noting(t, l->data, released);
        rearm_expiry(t);
        tell_released(t, released);
}

bool hold_table_remove_user(HoldTable *t, const char *user) {
        HeldUser *u = g_hash_table_lookup(t->users, user);

        if (!u)
                return false;
        /* The last one frees U. */
        for (guint n = g_queue_get_length(&u->holds); n > 0; n--)
                (void) hold_end(t, g_queue_peek_head(&u->holds));
        rearm_expiry(t);
        return true;
}

void hold_table_clear(HoldTable *t) {
        GHashTableIter iter;
        HeldUser *u;

        /* Holds first, so that each leaves its user's list. */
        g_hash_table_remove_all(t->holders);
        g_hash_table_iter_init(&iter, t->users);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &u))
                g_queue_init(&u->holds);
        g_hash_table_remove_all(t->users);
        (void) sd_event_source_set_enabled(t->timer, SD_EVENT_OFF);
}

unsigned hold_table_count(HoldTable *t, const char *user) {
        HeldUser *u = g_hash_table_lookup(t->users, user);

        return u ? g_queue_get_length(&u->holds) : 0;
}

unsigned hold_table_holder_size(HoldTable *t, const char *holder) {
        Holder *h = g_hash_table_lookup(t->holders, holder);

        return h ? g_hash_table_size(h->holds) : 0;
}

unsigned hold_table_n_users(HoldTable *t) {
        return g_hash_table_size(t->users);
}

bool hold_table_holds(HoldTable *t, const char *holder, const char *user) {
        return hold_find(t, holder, user) != NULL;
}

void hold_table_foreach_user(HoldTable *t, void (*fn)(const char *user, void *userdata), void *userdata) {
        GHashTableIter iter;
        const char *user;

        g_hash_table_iter_init(&iter, t->users);
        while (g_hash_table_iter_next(&iter, (gpointer *) &user, NULL))
                fn(user, userdata);
}
