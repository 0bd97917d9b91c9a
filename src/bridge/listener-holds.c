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

#include "hold-table.h"
#include "listener.h"
#include "log.h"
#include "macro.h"

static unsigned hold_count(Pool *pool, const char *user) {
        return hold_table_count(pool->holds, user);
}

/* The pool connection lets USER go, unless a peer holds the user again by
 * the time the call goes out. */
static int release_prepare(PoolCall *c, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (hold_count(c->pool, c->user) > 0)
                return 0;
        r = pool_call_new_local(c, PRESENCE_PATH, PRESENCE_IFACE, "GoOffline", &m);
        if (r < 0)
                return r;
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

/* Holds of peers lapsed, or their peer is gone: the pool lets go of each
 * user none of its peers holds any more. */
void holds_released(HoldTable *t, char **users, void *userdata) {
        Pool *pool = userdata;

        for (char **u = users; *u; u++)
                queue_release(pool, *u);
}

/* GoOnline(user, ttl): the peer holds the user from now on (undone if the
 * service refuses); upstream the pool connection holds it without ttl,
 * so that one peer's ttl cannot end another's hold. */
static int go_online_prepare(PoolCall *c, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        Peer *p = c->peer;
        unsigned max = p->listener->bridge->config.max_holds_per_peer;
        const char *user;
        uint32_t ttl;
        int r;

        r = sd_bus_message_read(c->call, "su", &user, &ttl);
        if (r < 0)
                return r;
        r = pool_call_new_local(c, PRESENCE_PATH, PRESENCE_IFACE, "GoOnline", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "su", user, 0);
        if (r < 0)
                return r;
        /* Calling again renews, and may change the kind of hold. */
        r = hold_table_add(c->pool->holds, p->hold_key, user, (uint64_t) ttl * G_USEC_PER_SEC, max, &c->hold_id);
        if (r == -EDQUOT) {
                (void) sd_bus_reply_method_errorf(c->call, BUS_ERROR_LIMIT_EXCEEDED,
                                                  "Peer %s already holds %u users online, the most it may "
                                                  "(max-holds-per-peer); cannot hold '%s'",
                                                  p->description, max, user);
                return 0;
        }
        c->user = g_strdup(user);
        *ret = TAKE_PTR(m);
        return 1;
}

static void go_online_finish(PoolCall *c, sd_bus_message *reply) {
        /* A hold this call made is undone when the service refused it;
         * the peer may have renewed or made it again since, or be gone
         * (its holds went with it). */
        if (sd_bus_message_is_method_error(reply, NULL) && c->peer && c->hold_id != 0 &&
            hold_table_remove(c->pool->holds, c->peer->hold_key, c->user, c->hold_id) == 1)
                queue_release(c->pool, c->user);
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
        (void) hold_table_remove(p->pool->holds, p->hold_key, user, 0);
        if (hold_count(p->pool, user) == 0) {
                /* The last hold of the pool: the call itself lets go. */
                (void) sd_bus_message_rewind(c->call, true);
                c->ops = &pool_relay_ops;
                return c->ops->prepare(c, ret);
        }
        r = pool_call_new_local(c, PRESENCE_PATH, "org.freedesktop.DBus.Properties", "Get", &m);
        if (r < 0)
                return r;
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
        unsigned n = hold_table_holder_size(p->pool->holds, p->hold_key);

        if (n > 0)
                log_debug("Peer %s: releasing its %u holds", p->description, n);
        hold_table_remove_holder(p->pool->holds, p->hold_key);
}

void holds_forget_pool(Pool *pool) {
        hold_table_clear(pool->holds);
}
