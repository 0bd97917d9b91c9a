/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The listener: exports org.outpost.Outpost1 of the local bus to remote
 * bridges (DESIGN.md §5). A peer can call methods under
 * /org/outpost/Outpost1 of that one name, and receives that name's
 * signals; nothing else on the bus is reachable through it. Peers share a
 * small pool of local bus connections (listener-pool.c); what the service
 * would keep per caller, presence holds, the listener keeps per peer
 * (listener-holds.c), and ends with the peer's link. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "hold-table.h"
#include "listener.h"
#include "log.h"
#include "macro.h"
#include "peer-scopes.h"

static void peer_free(Peer *p) {
        if (!p)
                return;
        /* What the peer held is released on its pool connection, and its
         * calls in flight are answered to nobody. */
        if (p->pool) {
                holds_release_peer(p);
                pool_remove_peer(p->pool, p);
        }
        g_clear_pointer(&p->hold_key, g_free);
        /* The remote side may have stopped reading: do not wait for it.
         * Peers are freed from a clean point of the loop (on_peer_teardown,
         * or at exit), never inside this bus's dispatch, so it can close now. */
        if (p->remote)
                sd_bus_close_unref(p->remote);
        link_free(p->link);
        sd_event_source_unref(p->idle_timer);
        g_free(p->description);
        g_free(p->name);
        g_free(p);
}

/* End a peer's session from any callback: the teardown waits for a clean
 * point of the loop, since sd-bus may be dispatching on its connections. */
static int on_peer_teardown(sd_event_source *s, void *userdata) {
        Peer *p = userdata;

        sd_event_source_disable_unref(s);
        g_hash_table_remove(p->listener->peers, p);
        return 0;
}

void peer_close(Peer *p, const char *reason, bool at_fault) {
        if (p->closing)
                return;
        p->closing = true;
        if (at_fault)
                log_warning("Peer %s: dropped: %s", p->description, reason);
        else
                log_info("Peer %s: closing: %s", p->description, reason);
        (void) sd_event_add_defer(p->listener->bridge->event, NULL, on_peer_teardown, p);
}

static void on_link_closed(Link *link, const char *reason, void *userdata) {
        Peer *p = userdata;

        p->link = NULL;         /* the link frees itself */
        peer_close(p, reason, link_peer_at_fault(link));
}

static int reply_chain(Peer *p, sd_bus_message *m) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Bridge *b = p->listener->bridge;
        char **upstream = b->importer ? importer_get_chain(b->importer) : NULL;
        g_autoptr(GStrvBuilder) builder = g_strv_builder_new();
        g_auto(GStrv) chain = NULL;
        int r;

        /* This process, then the ones it imports from, up to the origin. */
        g_strv_builder_add(builder, b->instance_id);
        if (upstream)
                g_strv_builder_addv(builder, (const char **) upstream);
        chain = g_strv_builder_end(builder);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(reply, chain);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Calls wait in the listener when the pool connection has no room, so
 * the limit counts those too: a peer that floods is told at once, and
 * the others keep their turns. */
static int relay_to_local(Peer *p, sd_bus_message *m) {
        unsigned max = p->listener->bridge->config.max_calls_in_flight;

        if (p->n_in_flight >= max)
                return sd_bus_reply_method_errorf(m, BUS_ERROR_LIMIT_EXCEEDED,
                                                  "Too many calls in flight over this link (at most %u, "
                                                  "max-calls-in-flight)", max);
        if (holds_relay(p, m))
                return 0;
        pool_call_enqueue(pool_call_new(p->pool, p, m, &pool_relay_ops));
        return 0;
}

/* A call outside the peer's scopes is refused here, before anything is
 * relayed (DESIGN.md §5b); 1 when it was. */
static int refuse_out_of_scope(Peer *p, sd_bus_message *m) {
        PeerScope needed = peer_scope_of_call(m);
        g_autofree char *needed_name = NULL;

        if (p->scopes & needed)
                return 0;
        needed_name = peer_scopes_format(needed);
        (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED,
                                          "Peer '%s' may not call %s: its certificate lacks the scope '%s' "
                                          "([Peers] of the listener)",
                                          p->name, sd_bus_message_get_member(m) ?: "?", needed_name);
        return 1;
}

/* The Bridge object on this bus is the importer's own link upstream: a
 * peer may read its state, but making it reconnect would let any machine
 * cut its site off, and no scope covers that. (Reconnect is the only
 * method of that name, so a call without an interface counts too.)
 * 1 when refused. */
static int refuse_link_control(Peer *p, sd_bus_message *m) {
        const char *iface = sd_bus_message_get_interface(m);
        const char *member = sd_bus_message_get_member(m) ?: "";

        if (iface ? strcmp(iface, BRIDGE_IFACE) != 0 : strcmp(member, "Reconnect") != 0)
                return 0;
        (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED,
                                          "Peer '%s' may not call " BRIDGE_IFACE ".%s: a bridge's link is "
                                          "managed on its own machine, not over a bridge", p->name, member);
        return 1;
}

/* A token bucket per peer for its change calls: peer-change-burst at
 * once, peer-change-rate a second after that. A peer over it is told so;
 * the others keep their own buckets. 1 when refused. */
static int refuse_over_rate(Peer *p, sd_bus_message *m) {
        const BridgeConfig *c = &p->listener->bridge->config;
        uint64_t now = (uint64_t) g_get_monotonic_time();

        if (peer_scope_of_call(m) == PEER_SCOPE_READ)
                return 0;
        p->change_tokens = MIN((double) c->peer_change_burst,
                               p->change_tokens + (double) (now - p->change_tokens_usec) * c->peer_change_rate / 1e6);
        p->change_tokens_usec = now;
        if (p->change_tokens >= 1.0) {
                p->change_tokens -= 1.0;
                return 0;
        }
        (void) sd_bus_reply_method_errorf(m, BUS_ERROR_LIMIT_EXCEEDED,
                                          "Peer '%s' sends changes faster than it may (%u a second, %u at once: "
                                          "peer-change-rate, peer-change-burst); try again later",
                                          p->name, c->peer_change_rate, c->peer_change_burst);
        return 1;
}

static bool interface_is_driver(const char *iface) {
        return iface && g_str_has_prefix(iface, "org.freedesktop.DBus") &&
               (strcmp(iface, "org.freedesktop.DBus") == 0 || strcmp(iface, "org.freedesktop.DBus.Monitoring") == 0 ||
                strcmp(iface, "org.freedesktop.DBus.Debug.Stats") == 0);
}

/* Every message the remote peer sends comes here first, and goes no
 * further than this function decides. */
static int on_remote_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Peer *p = userdata;
        const char *path = sd_bus_message_get_path(m), *iface = sd_bus_message_get_interface(m);

        (void) sd_event_source_set_time_relative(p->idle_timer,
                                                 (uint64_t) p->listener->bridge->config.peer_idle_timeout_ms * 1000);
        if (p->closing)
                return 1;
        if (!sd_bus_message_is_method_call(m, NULL, NULL))
                return 1;       /* a peer has nothing else to say here */
        if (sd_bus_message_is_method_call(m, BRIDGE_LINK_IFACE, "Hello")) {
                (void) reply_chain(p, m);
                return 1;
        }
        /* The importer's heartbeat asks whether the link and the service
         * behind it answer: the link by this reply, the service by what
         * listener-health.c knows of it (a service that left the bus
         * closes the peer anyway, see listener-pool.c). */
        if (sd_bus_message_is_method_call(m, BRIDGE_LINK_IFACE, "Ping")) {
                if (listener_service_answers(p->listener))
                        (void) sd_bus_reply_method_return(m, NULL);
                else
                        (void) sd_bus_reply_method_errorf(m, BUS_ERROR_DISCONNECTED,
                                                          OUTPOST_BUS_NAME " has not answered on the listener's "
                                                          "bus for more than %u ms",
                                                          p->listener->bridge->config.heartbeat_timeout_ms);
                return 1;
        }
        if (sd_bus_message_get_destination(m) && strcmp(sd_bus_message_get_destination(m), OUTPOST_BUS_NAME) != 0) {
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED,
                                                  "Only " OUTPOST_BUS_NAME " is reachable over a bridge, not '%s'",
                                                  sd_bus_message_get_destination(m));
                return 1;
        }
        if (!object_path_in_tree(path)) {
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED,
                                                  "Only objects under " OUTPOST_ROOT_PATH
                                                  " are reachable over a bridge, not '%s'", path ?: "");
                return 1;
        }
        if (interface_is_driver(iface)) {
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED,
                                                  "Interface '%s' is not reachable over a bridge", iface);
                return 1;
        }
        if (refuse_link_control(p, m) || refuse_out_of_scope(p, m) || refuse_over_rate(p, m))
                return 1;
        (void) relay_to_local(p, m);
        return 1;
}

static int on_peer_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        peer_close(userdata, "peer silent for too long", true);
        return 0;
}

static int peer_setup_remote(Peer *p, int fd) {
        sd_id128_t id;
        int r;

        r = sd_bus_new(&p->remote);
        if (r < 0)
                return r;
        (void) sd_id128_randomize(&id);
        r = sd_bus_set_fd(p->remote, fd, fd);
        if (r < 0)
                return r;
        r = sd_bus_set_server(p->remote, true, id);
        if (r < 0)
                return r;
        r = sd_bus_set_anonymous(p->remote, true);
        if (r < 0)
                return r;
        r = sd_bus_negotiate_fds(p->remote, false);
        if (r < 0)
                return r;
        r = sd_bus_add_filter(p->remote, NULL, on_remote_message, p);
        if (r < 0)
                return r;
        r = sd_bus_start(p->remote);
        if (r < 0)
                return r;
        return sd_bus_attach_event(p->remote, p->listener->bridge->event, SD_EVENT_PRIORITY_NORMAL);
}

static int peer_setup_local(Peer *p) {
        Pool *pool;
        int r;

        r = pool_pick(p->listener, &pool);
        if (r < 0)
                return r;
        pool_add_peer(pool, p);
        return 0;
}

/* P's idle timer, its pool connection, then its bus over the link's FD,
 * which is P's from here on, also when this fails. */
static int peer_setup(Peer *p, int fd) {
        int r;

        r = sd_event_add_time_relative(p->listener->bridge->event, &p->idle_timer, CLOCK_MONOTONIC,
                                       (uint64_t) p->listener->bridge->config.peer_idle_timeout_ms * 1000, 0,
                                       on_peer_idle, p);
        if (r < 0) {
                close(fd);
                return r;
        }
        r = peer_setup_local(p);
        if (r < 0) {
                close(fd);
                return r;
        }
        return peer_setup_remote(p, fd);
}

/* What the [Peers] rules give a peer named NAMES: true with its scopes,
 * or false with *RET_REASON saying why it is refused. */
static bool peer_judge(char **rules, char **names, unsigned *ret_scopes, char **ret_reason) {
        const char *pattern = NULL;

        if (peer_rules_match(rules, names, ret_scopes, &pattern))
                return true;
        if (pattern)
                *ret_reason = g_strdup_printf("its certificate matches '%s' of [Peers], which grants nothing",
                                              pattern);
        else
                *ret_reason = g_strdup("its certificate's names match no pattern of [Peers]");
        return false;
}

static void peer_log_scopes(Peer *p, const char *what) {
        g_autofree char *scopes = peer_scopes_format(p->scopes);

        log_info("Peer %s: %s, scopes %s%s", p->description, what, scopes,
                 p->listener->rules ? "" : " (no [Peers] in the configuration)");
}

static void on_link_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Listener *l = userdata;
        g_auto(GStrv) names = NULL;
        g_autofree char *reason = NULL;
        unsigned scopes;
        Peer *p;
        int r;

        if (fd < 0) {
                log_warning("Refused a peer: %s", error ?: "unknown error");
                return;
        }
        names = link_get_peer_names(link);
        if (!peer_judge(l->rules, names, &scopes, &reason)) {
                log_warning("Refused peer %s: %s", peer, reason);
                close(fd);
                link_free(link);
                return;
        }
        p = g_new0(Peer, 1);
        p->listener = l;
        p->link = link;
        p->description = g_strdup(peer);
        p->name = g_strdup(names && names[0] ? names[0] : peer);
        p->scopes = scopes;
        p->change_tokens = l->bridge->config.peer_change_burst;
        p->change_tokens_usec = (uint64_t) g_get_monotonic_time();
        p->number = ++l->n_peers_accepted;
        p->connected_usec = (uint64_t) g_get_real_time();
        p->hold_key = g_strdup_printf("%" PRIu64, p->number);
        g_hash_table_add(l->peers, p);
        link_set_userdata(link, p);

        r = peer_setup(p, fd);
        if (r < 0) {
                log_warning_errno(r, "Peer %s: cannot set up its connections", peer);
                peer_close(p, "setup failed", false);
                return;
        }
        peer_log_scopes(p, "connected");
}

static int compare_peers(gconstpointer a, gconstpointer b) {
        const Peer *x = *(Peer *const *) a, *y = *(Peer *const *) b;

        return x->number < y->number ? -1 : x->number > y->number;
}

GPtrArray *listener_get_peers(Listener *l) {
        GPtrArray *peers = g_ptr_array_new();
        GHashTableIter iter;
        Peer *p;

        g_hash_table_iter_init(&iter, l->peers);
        while (g_hash_table_iter_next(&iter, (gpointer *) &p, NULL))
                if (!p->closing && p->link && p->pool)
                        g_ptr_array_add(peers, p);
        g_ptr_array_sort(peers, compare_peers);
        return peers;
}

void peer_get_info(Peer *p, PeerInfo *ret) {
        uint64_t queued_messages = 0;

        assert(p->link && p->pool);
        (void) sd_bus_get_n_queued_write(p->remote, &queued_messages);
        *ret = (PeerInfo) {
                .name = p->name,
                .address = link_get_peer_address(p->link) ?: p->description,
                .scopes = p->scopes,
                .connected_usec = p->connected_usec,
                .calls_relayed = p->n_calls_relayed,
                .calls_in_flight = p->n_in_flight,
                .holds = hold_table_holder_size(p->pool->holds, p->hold_key),
                .queued_bytes = link_get_queued_bytes(p->link),
                .queued_messages = queued_messages,
                .bus_connection = p->pool->index + 1,
        };
}

static void warn_without_rules(Listener *l) {
        if (!l->rules)
                log_warning("No [Peers] group in the configuration: every peer whose certificate the CA signed "
                            "may read, hold presence, send, publish and manage users");
}

/* One pool connection at once: losing the local bus ends the bridge even
 * before a peer comes. Then listen. */
static int listener_start(Listener *l, const LinkAddress *address, int activated_fd) {
        Bridge *b = l->bridge;
        Pool *first;
        int r;

        r = pool_pick(l, &first);
        if (r < 0)
                return r;
        r = listener_health_start(l);
        if (r < 0)
                return r;
        r = listener_dbus_start(l);
        if (r < 0)
                return r;
        return link_listener_new(b->event, address, activated_fd, &b->link_config, on_link_ready, on_link_closed, l,
                                 &l->link_listener);
}

int listener_new(Bridge *b, int activated_fd, Listener **ret) {
        g_autofree char *error = NULL;
        LinkAddress address = {};
        Listener *l;
        int r;

        if (b->config.listen && link_address_parse(b->config.listen, &address, &error) < 0) {
                log_error("Bad --listen address '%s': %s", b->config.listen, error);
                return -EINVAL;
        }
        l = g_new0(Listener, 1);
        l->bridge = b;
        l->peers = g_hash_table_new_full(g_direct_hash, g_direct_equal, (GDestroyNotify) peer_free, NULL);
        (void) audit_new(NULL, &l->audit);
        l->pools = g_ptr_array_new_with_free_func((GDestroyNotify) pool_free);
        l->rules = g_strdupv(b->config.peers);
        warn_without_rules(l);
        r = listener_start(l, &address, activated_fd);
        link_address_clear(&address);
        if (r < 0) {
                listener_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

/* After a reload: P keeps its link only when the new CA and CRL still
 * accept its certificate and the new rules give it at least what it had
 * (a peer whose scopes grew gets them at once). Dropping the others now
 * is what makes a revocation take effect: a shrunk scope is not applied
 * to a link that stays. */
static void peer_recheck(Peer *p) {
        g_auto(GStrv) names = NULL;
        g_autofree char *reason = NULL;
        unsigned scopes;

        if (p->closing || !p->link)
                return;
        if (link_listener_recheck(p->listener->link_listener, p->link, &reason) < 0) {
                peer_close(p, reason, true);
                return;
        }
        names = link_get_peer_names(p->link);
        if (!peer_judge(p->listener->rules, names, &scopes, &reason)) {
                peer_close(p, reason, true);
                return;
        }
        if (p->scopes & ~scopes) {
                g_autofree char *lost = peer_scopes_format(p->scopes & ~scopes);
                g_autofree char *why = g_strdup_printf("its scopes shrank, it lost %s", lost);

                peer_close(p, why, true);
                return;
        }
        if (scopes == p->scopes)
                return;
        p->scopes = scopes;
        peer_log_scopes(p, "scopes grew");
}

int listener_reload(Listener *l, const LinkConfig *config, char **peers) {
        g_autofree char *error = NULL;
        GHashTableIter iter;
        Peer *p;
        int r;

        r = link_listener_reload(l->link_listener, config, &error);
        if (r < 0) {
                log_error(RELOAD_FAILED ": %s", error ?: strerror(-r));
                return r;
        }
        g_strfreev(l->rules);
        l->rules = g_strdupv(peers);
        warn_without_rules(l);
        g_hash_table_iter_init(&iter, l->peers);
        while (g_hash_table_iter_next(&iter, (gpointer *) &p, NULL))
                peer_recheck(p);
        log_info("Reloaded the CA, certificate and key, the CRL, allowed-peers and [Peers]; %u peers were connected",
                 g_hash_table_size(l->peers));
        return 0;
}

Listener *listener_free(Listener *l) {
        if (!l)
                return NULL;
        /* Peers first: they leave their pool connections. */
        g_clear_pointer(&l->peers, g_hash_table_unref);
        g_clear_pointer(&l->pools, g_ptr_array_unref);
        listener_health_stop(l);
        listener_dbus_stop(l);
        link_listener_free(l->link_listener);
        audit_free(l->audit);
        g_strfreev(l->rules);
        g_free(l);
        return NULL;
}
