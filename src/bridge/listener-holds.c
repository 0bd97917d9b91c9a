/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Presence holds of the listener's peers (DESIGN.md §5). The service sees
 * one caller per pool connection, however many peers share it, so the
 * listener keeps what the service would keep per caller: each peer's
 * holds, with their ttl. Upstream, the pool connection holds a user
 * without ttl while any of its peers does, and lets go when the last one
 * calls GoOffline, lapses, or drops its link. Every decision is taken when
 * the call goes out on the pool connection, in the order the service will
 * see the calls, so the count here and the holds there agree. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "listener.h"
#include "log.h"
#include "macro.h"

typedef struct PeerHold {
        Peer *peer;
        char *user;
        uint64_t id;            /* which GoOnline made it, to undo it if that one fails */
        sd_event_source *expiry; /* a hold with a ttl: when it lapses */
} PeerHold;

void peer_hold_free(void *hold) {
        PeerHold *h = hold;

        sd_event_source_disable_unref(h->expiry);
        g_free(h->user);
        g_free(h);
}

static unsigned hold_count(Pool *pool, const char *user) {
        return GPOINTER_TO_UINT(g_hash_table_lookup(pool->hold_counts, user));
}

static void hold_count_add(Pool *pool, const char *user, int delta) {
        unsigned n = hold_count(pool, user) + delta;

        if (n == 0)
                g_hash_table_remove(pool->hold_counts, user);
        else
                g_hash_table_replace(pool->hold_counts, g_strdup(user), GUINT_TO_POINTER(n));
}

/* The pool connection lets USER go, unless a peer holds the user again by
 * the time the call goes out. */
static int release_prepare(PoolCall *c, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (hold_count(c->pool, c->user) > 0)
                return 0;
        r = pool_call_new_local(c, PRESENCE_PATH, PRESENCE_IFACE, "GoOffline", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", c->user);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 1;
}

static void release_finish(PoolCall *c, sd_bus_message *reply) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e)
                log_debug("Could not release the hold of %s: %s", c->user, e->message);
}

static const PoolCallOps release_ops = {
        .prepare = release_prepare,
        .finish = release_finish,
};

static void queue_release(Pool *pool, const char *user) {
        PoolCall *c = pool_call_new(pool, NULL, NULL, &release_ops);

        c->user = g_strdup(user);
        pool_call_enqueue(c);
}

/* H ends (lapsed, or its peer is gone); the pool lets the user go when it
 * was the last hold of its peers. */
static void hold_end(PeerHold *h) {
        Peer *p = h->peer;
        Pool *pool = p->pool;
        g_autofree char *user = g_strdup(h->user);

        g_hash_table_remove(p->holds, user);    /* frees h */
        hold_count_add(pool, user, -1);
        if (hold_count(pool, user) == 0)
                queue_release(pool, user);
}

static int on_hold_lapsed(sd_event_source *s, uint64_t usec, void *userdata) {
        PeerHold *h = userdata;

        log_debug("Peer %s: the hold of %s lapsed", h->peer->description, h->user);
        hold_end(h);
        return 0;
}

static int hold_set_ttl(PeerHold *h, uint32_t ttl) {
        uint64_t usec = (uint64_t) ttl * G_USEC_PER_SEC;

        if (ttl == 0) {
                h->expiry = sd_event_source_disable_unref(h->expiry);
                return 0;
        }
        if (!h->expiry)
                return sd_event_add_time_relative(h->peer->listener->bridge->event, &h->expiry, CLOCK_MONOTONIC,
                                                  usec, 0, on_hold_lapsed, h);
        (void) sd_event_source_set_time_relative(h->expiry, usec);
        return sd_event_source_set_enabled(h->expiry, SD_EVENT_ONESHOT);
}

static PeerHold *hold_new(Peer *p, const char *user) {
        PeerHold *h = g_new0(PeerHold, 1);

        h->peer = p;
        h->user = g_strdup(user);
        h->id = ++p->last_hold_id;
        g_hash_table_insert(p->holds, h->user, h);
        hold_count_add(p->pool, user, +1);
        return h;
}

/* GoOnline(user, ttl): the peer holds the user from now on (undone if the
 * service refuses); upstream the pool connection holds it without ttl,
 * so that one peer's ttl cannot end another's hold. */
static int go_online_prepare(PoolCall *c, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        Peer *p = c->peer;
        unsigned max = p->listener->bridge->config.max_holds_per_peer;
        const char *user;
        PeerHold *h;
        uint32_t ttl;
        int r;

        r = sd_bus_message_read(c->call, "su", &user, &ttl);
        if (r < 0)
                return r;
        h = g_hash_table_lookup(p->holds, user);
        if (!h && g_hash_table_size(p->holds) >= max) {
                (void) sd_bus_reply_method_errorf(c->call, BUS_ERROR_LIMIT_EXCEEDED,
                                                  "Peer %s already holds %u users online, the most it may "
                                                  "(max-holds-per-peer); cannot hold '%s'",
                                                  p->description, max, user);
                return 0;
        }
        r = pool_call_new_local(c, PRESENCE_PATH, PRESENCE_IFACE, "GoOnline", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "su", user, 0);
        if (r < 0)
                return r;
        if (!h) {
                h = hold_new(p, user);
                c->hold_id = h->id;
        }
        /* Calling again renews, and may change the kind of hold. */
        r = hold_set_ttl(h, ttl);
        if (r < 0)
                log_warning_errno(r, "Peer %s: cannot time the hold of %s; it lasts until GoOffline",
                                  p->description, user);
        c->user = g_strdup(user);
        *ret = TAKE_PTR(m);
        return 1;
}

static void go_online_finish(PoolCall *c, sd_bus_message *reply) {
        PeerHold *h = c->peer ? g_hash_table_lookup(c->peer->holds, c->user) : NULL;

        if (sd_bus_message_is_method_error(reply, NULL) && h && h->id == c->hold_id)
                hold_end(h);
        pool_relay_ops.finish(c, reply);
}

static const PoolCallOps go_online_ops = {
        .prepare = go_online_prepare,
        .finish = go_online_finish,
};

/* While other peers of the pool hold the user, a GoOffline changes
 * nothing upstream: the peer gets the current Generation, read through
 * the same connection, so that it comes after every change sent before. */
static void generation_finish(PoolCall *c, sd_bus_message *reply) {
        uint64_t generation;
        int r;

        if (!c->peer || c->peer->closing)
                return;
        if (sd_bus_message_is_method_error(reply, NULL) ||
            sd_bus_message_read(reply, "v", "t", &generation) < 0) {
                pool_relay_ops.finish(c, reply);
                return;
        }
        r = sd_bus_reply_method_return(c->call, "t", generation);
        if (r < 0)
                log_debug("Peer %s: cannot answer GoOffline: %s", c->peer->description, strerror(-r));
}

static const PoolCallOps generation_ops = {
        .finish = generation_finish,
};

static int go_offline_prepare(PoolCall *c, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        Peer *p = c->peer;
        const char *user;
        int r;

        r = sd_bus_message_read(c->call, "s", &user);
        if (r < 0)
                return r;
        if (g_hash_table_remove(p->holds, user))
                hold_count_add(p->pool, user, -1);
        if (hold_count(p->pool, user) == 0) {
                /* The last hold of the pool: the call itself lets go. */
                (void) sd_bus_message_rewind(c->call, true);
                c->ops = &pool_relay_ops;
                return c->ops->prepare(c, ret);
        }
        r = pool_call_new_local(c, PRESENCE_PATH, "org.freedesktop.DBus.Properties", "Get", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", PRESENCE_IFACE, "Generation");
        if (r < 0)
                return r;
        c->ops = &generation_ops;
        *ret = TAKE_PTR(m);
        return 1;
}

/* PREPARE picks what becomes of the call, and with it its FINISH. */
static const PoolCallOps go_offline_ops = {
        .prepare = go_offline_prepare,
};

/* Whether M is GoOnline or GoOffline of the Presence manager, however the
 * peer spelled it: a call without an interface reaches the method too, and
 * must not slip past the count. */
static bool is_presence_call(sd_bus_message *m, const char *member, const char *signature) {
        const char *iface = sd_bus_message_get_interface(m);

        return g_strcmp0(sd_bus_message_get_path(m), PRESENCE_PATH) == 0 &&
               (!iface || strcmp(iface, PRESENCE_IFACE) == 0) &&
               g_strcmp0(sd_bus_message_get_member(m), member) == 0 &&
               sd_bus_message_has_signature(m, signature);
}

int holds_relay(Peer *p, sd_bus_message *m) {
        const PoolCallOps *ops;

        if (is_presence_call(m, "GoOnline", "su"))
                ops = &go_online_ops;
        else if (is_presence_call(m, "GoOffline", "s"))
                ops = &go_offline_ops;
        else
                return 0;
        pool_call_enqueue(pool_call_new(p->pool, p, m, ops));
        return 1;
}

void holds_release_peer(Peer *p) {
        g_autoptr(GList) holds = g_hash_table_get_values(p->holds);

        if (holds)
                log_debug("Peer %s: releasing its %u holds", p->description, g_hash_table_size(p->holds));
        /* Each hold leaves the table as it ends: not while iterating it. */
        for (GList *l = holds; l; l = l->next)
                hold_end(l->data);
}

void holds_forget_pool(Pool *pool) {
        for (GList *l = pool->peers.head; l; l = l->next) {
                Peer *p = l->data;

                g_hash_table_remove_all(p->holds);
        }
        g_hash_table_remove_all(pool->hold_counts);
}
