/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The listener's connections to its local bus: a small pool, whatever the
 * number of peers, since a stock system bus allows 256 connections per
 * account and 128 pending replies per connection (DESIGN.md §5). Each peer
 * is pinned to one connection, so its calls, their replies and the
 * service's signals reach it in the order the bus gave them (rules 2 and
 * 4). A connection has one signal subscription, fanned out to its peers.
 * Calls beyond what the bus lets a connection have pending wait here, and
 * take turns peer by peer, so one busy peer does not hold up the others. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "hold-table.h"
#include "listener.h"
#include "log.h"
#include "macro.h"

static void pool_pump(Pool *pool);

PoolCall *pool_call_new(Pool *pool, Peer *p, sd_bus_message *m, const PoolCallOps *ops) {
        PoolCall *c = g_new0(PoolCall, 1);

        c->pool = pool;
        c->peer = p;
        c->peer_link.data = c;
        c->call = m ? sd_bus_message_ref(m) : NULL;
        c->ops = ops;
        if (p)
                p->n_in_flight++;
        return c;
}

static void pool_call_free(PoolCall *c) {
        if (c->peer)
                c->peer->n_in_flight--;
        sd_bus_message_unref(c->call);
        g_free(c->user);
        g_free(c);
}

/* The slot of a sent call ends with its reply, or with the connection. */
static void on_sent_call_destroyed(void *userdata) {
        PoolCall *c = userdata;

        if (c->peer)
                g_queue_unlink(&c->peer->sent, &c->peer_link);
        pool_call_free(c);
}

static int on_local_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PoolCall *c = userdata;

        /* An answer of the service's own shows it is not stuck, however
         * long our ping waits behind the calls it is busy with. */
        if (!sd_bus_message_is_method_error(reply, SD_BUS_ERROR_NO_REPLY))
                listener_service_answered(c->pool->listener);
        /* A peer that is gone has nobody to answer, but the presence
         * accounting may still need the outcome. */
        c->ops->finish(c, reply);
        /* Every sent call gets here once (sd-bus makes up an error on a
         * timeout): its room on the connection is free again. */
        c->pool->n_pending--;
        pool_pump(c->pool);
        return 0;
}

/* A call that could not be sent never reached the service, and its
 * caller is told so, as at every layer (DESIGN.md §4 rule 5): a lost
 * connection to the local bus is an outage, Disconnected; anything else
 * a failure of the listener's own. */
static void answer_failure(PoolCall *c, int error) {
        bool lost = IN_SET(error, -ENOTCONN, -ECONNRESET, -EPIPE, -ESHUTDOWN);

        if (!c->peer || !c->call || c->peer->closing)
                return;
        (void) sd_bus_reply_method_errorf(c->call, lost ? BUS_ERROR_DISCONNECTED : SD_BUS_ERROR_FAILED,
                                          "%s (%s): the call was not carried out",
                                          lost ? "The listener's connection to the local bus is closed"
                                               : "The listener cannot relay the call",
                                          strerror(-error));
}

static void pool_call_send(PoolCall *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *local = NULL;
        sd_bus_slot *slot = NULL;
        int r;

        /* A peer that is closing waits for nothing any more. */
        if (c->peer && c->peer->closing) {
                pool_call_free(c);
                return;
        }
        r = c->ops->prepare(c, &local);
        if (r > 0)
                r = sd_bus_call_async(c->pool->bus, &slot, local, on_local_reply, c, 0);
        if (r <= 0) {
                if (r < 0)
                        answer_failure(c, r);
                pool_call_free(c);
                return;
        }
        c->pool->n_pending++;
        listener_health_watch(c->pool->listener);
        if (c->peer) {
                c->peer->n_calls_relayed++;
                g_queue_push_tail_link(&c->peer->sent, &c->peer_link);
        }
        /* The connection owns the slot; its end frees the record. */
        (void) sd_bus_slot_set_destroy_callback(slot, on_sent_call_destroyed);
        (void) sd_bus_slot_set_floating(slot, true);
        sd_bus_slot_unref(slot);
}

/* The next call to send: the listener's own first (they are few, and a
 * release must reach the bus before any later hold of the same user),
 * then one call of each peer with calls waiting, in turn. */
static PoolCall *pool_next_call(Pool *pool) {
        PoolCall *c = g_queue_pop_head(&pool->own);
        Peer *p;

        if (c)
                return c;
        p = g_queue_peek_head(&pool->ready);
        if (!p)
                return NULL;
        g_queue_unlink(&pool->ready, &p->ready_link);
        c = g_queue_pop_head_link(&p->waiting)->data;
        if (!g_queue_is_empty(&p->waiting))
                g_queue_push_tail_link(&pool->ready, &p->ready_link);
        return c;
}

static void pool_pump(Pool *pool) {
        unsigned max = pool->listener->bridge->config.listener_max_pending;
        PoolCall *c;

        while (pool->n_pending < max && (c = pool_next_call(pool)))
                pool_call_send(c);
}

void pool_call_enqueue(PoolCall *c) {
        Peer *p = c->peer;

        if (!p)
                g_queue_push_tail(&c->pool->own, c);
        else {
                if (g_queue_is_empty(&p->waiting))
                        g_queue_push_tail_link(&c->pool->ready, &p->ready_link);
                g_queue_push_tail_link(&p->waiting, &c->peer_link);
        }
        pool_pump(c->pool);
}

int pool_call_new_local(PoolCall *c, const char *path, const char *interface, const char *member,
                        sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->pool->bus, &m, OUTPOST_BUS_NAME, path, interface, member);
        if (r < 0)
                return r;
        if (c->call) {
                r = sd_bus_message_set_allow_interactive_authorization(
                        m, sd_bus_message_get_allow_interactive_authorization(c->call));
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

/* A plain call: the same method with the same body, the answer copied
 * back. A message says whom it came through (listener-send.c). */
static int relay_prepare(PoolCall *c, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *local = NULL;
        sd_bus_message *m = c->call;
        int r;

        if (listener_call_is_send(m))
                return send_prepare(c, ret);
        r = pool_call_new_local(c, sd_bus_message_get_path(m), sd_bus_message_get_interface(m),
                                sd_bus_message_get_member(m), &local);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(local, m, true);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(local);
        return 1;
}

static void relay_finish(PoolCall *c, sd_bus_message *reply) {
        int r;

        if (!c->peer || c->peer->closing)
                return;
        audit_relayed_change(c->peer->listener->audit, c->call, c->peer->description, reply);
        r = bus_reply_copy(c->call, reply);
        if (r < 0)
                log_debug("Peer %s: cannot relay a reply: %s", c->peer->description, strerror(-r));
}

const PoolCallOps pool_relay_ops = {
        .prepare = relay_prepare,
        .finish = relay_finish,
};

/* Signals of org.outpost.Outpost1 go to every peer of the connection in
 * the order they came, after the replies that came before them. */
static int on_local_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Pool *pool = userdata;

        if (!object_path_in_tree(sd_bus_message_get_path(m)))
                return 0;
        for (GList *l = pool->peers.head; l; l = l->next) {
                Peer *p = l->data;
                uint64_t queued = 0;

                if (p->closing)
                        continue;
                if (bus_forward_signal(p->remote, m) < 0) {
                        peer_close(p, "cannot forward a signal", false);
                        continue;
                }
                /* The link bounds the bytes it holds; this bounds what
                 * sd-bus holds before the link takes it. */
                if (sd_bus_get_n_queued_write(p->remote, &queued) >= 0 && queued > 4096)
                        peer_close(p, "peer stopped reading (4096 messages queued)", true);
        }
        return 0;
}

/* The service behind us went away or was replaced: to each peer that is a
 * link outage, after which it takes a fresh snapshot; what the old owner
 * held for the peers went with it. */
static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Pool *pool = userdata;

        holds_forget_pool(pool);
        for (GList *l = pool->peers.head; l; l = l->next)
                peer_close(l->data, OUTPOST_BUS_NAME " changed owner on the local bus", false);
        return 0;
}

/* Connect POOL to the local bus, watching the service's signals and
 * whether it changes owner. */
static int pool_connect(Pool *pool) {
        Bridge *b = pool->listener->bridge;
        int r;

        r = bridge_connect_local_bus(b, &pool->bus);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(pool->bus, NULL, OUTPOST_BUS_NAME, NULL, NULL, NULL, on_local_signal, NULL,
                                      pool);
        if (r < 0)
                return r;
        return sd_bus_add_match_async(pool->bus, NULL,
                                      "type='signal',sender='org.freedesktop.DBus',"
                                      "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                      "arg0='" OUTPOST_BUS_NAME "'",
                                      on_name_owner_changed, NULL, pool);
}

static int pool_new(Listener *l, Pool **ret) {
        Bridge *b = l->bridge;
        Pool *pool = g_new0(Pool, 1);
        int r;

        pool->listener = l;
        pool->index = l->pools->len;
        (void) hold_table_new(b->event, holds_released, pool, &pool->holds);
        r = pool_connect(pool);
        if (r < 0) {
                pool_free(pool);
                return log_warning_errno(r, "Cannot open connection %u to the local bus", l->pools->len + 1);
        }
        g_ptr_array_add(l->pools, pool);
        log_debug("Opened connection %u of at most %u to the local bus", l->pools->len,
                  b->config.listener_bus_connections);
        *ret = pool;
        return 0;
}

bool listener_owns_connection(Listener *l, const char *name) {
        if (!l || !name)
                return false;
        for (guint i = 0; i < l->pools->len; i++) {
                Pool *pool = l->pools->pdata[i];
                const char *unique = NULL;

                if (sd_bus_get_unique_name(pool->bus, &unique) >= 0 && strcmp(unique, name) == 0)
                        return true;
        }
        return false;
}

int pool_pick(Listener *l, Pool **ret) {
        Pool *best = NULL;

        for (guint i = 0; i < l->pools->len; i++) {
                Pool *pool = l->pools->pdata[i];

                if (!best || pool->peers.length < best->peers.length)
                        best = pool;
        }
        if ((!best || best->peers.length > 0) && l->pools->len < l->bridge->config.listener_bus_connections)
                return pool_new(l, ret);
        *ret = best;
        return 0;
}

void pool_add_peer(Pool *pool, Peer *p) {
        p->pool = pool;
        p->pool_link.data = p;
        p->ready_link.data = p;
        g_queue_push_tail_link(&pool->peers, &p->pool_link);
}

void pool_remove_peer(Pool *pool, Peer *p) {
        GList *l;

        if (!g_queue_is_empty(&p->waiting))
                g_queue_unlink(&pool->ready, &p->ready_link);
        while ((l = g_queue_pop_head_link(&p->waiting)))
                pool_call_free(l->data);
        /* Their replies still free room on the connection when they come. */
        while ((l = g_queue_pop_head_link(&p->sent))) {
                PoolCall *c = l->data;

                c->peer = NULL;
                p->n_in_flight--;
        }
        g_queue_unlink(&pool->peers, &p->pool_link);
        p->pool = NULL;
}

void pool_free(Pool *pool) {
        if (!pool)
                return;
        g_queue_clear_full(&pool->own, (GDestroyNotify) pool_call_free);
        /* Closing the connection ends the slots of the calls in flight. */
        if (pool->bus)
                sd_bus_flush_close_unref(pool->bus);
        hold_table_free(pool->holds);
        g_free(pool);
}
