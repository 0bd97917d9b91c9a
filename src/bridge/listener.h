/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The listener's parts (DESIGN.md §5): listener.c accepts peers and
 * screens what they send, listener-pool.c carries their calls over a
 * small pool of local bus connections and fans the service's signals out,
 * listener-holds.c counts each peer's presence holds, listener-send.c
 * names the peer in the messages it sends, listener-dbus.c shows the
 * peers to administrators on a name of the listener's own. */

#include "audit.h"
#include "bridge.h"

typedef struct Peer Peer;
typedef struct Pool Pool;
typedef struct PoolCall PoolCall;

struct Listener {
        Bridge *bridge;
        LinkListener *link_listener;
        GHashTable *peers;      /* Peer* set */
        GPtrArray *pools;       /* Pool*, opened as peers come, at most listener-bus-connections */
        uint64_t n_peers_accepted; /* for each peer's hold key */
        /* Whether the service answers (listener-health.c). */
        sd_bus *health_bus;
        sd_bus_slot *health_ping;
        sd_event_source *health_timer;
        uint64_t unanswered_since; /* CLOCK_MONOTONIC µs of the oldest unanswered ping; 0: none */
        Audit *audit;           /* each change relayed, with the peer it came from */
        char **rules;           /* [Peers]: pattern, scopes, …; NULL: every peer may do everything */
        sd_bus *own_bus;        /* where the listener answers for itself (listener-dbus.c) */
};

/* One remote bridge. */
struct Peer {
        Listener *listener;
        Pool *pool;             /* the local bus connection it is pinned to */
        GList pool_link;        /* in pool->peers */
        GList ready_link;       /* in pool->ready while calls of the peer wait */
        Link *link;
        char *description;
        char *name;             /* its certificate's name (CN, else its first DNS SAN), for messages */
        uint64_t number;        /* the how-manieth peer the listener accepted */
        uint64_t connected_usec; /* CLOCK_REALTIME µs of its link coming up */
        uint64_t n_calls_relayed; /* its calls sent to the local bus */
        unsigned scopes;        /* PeerScope bits: what it may call */
        double change_tokens;   /* change calls it may make now (peer-change-burst at most) */
        uint64_t change_tokens_usec; /* when they were counted */
        sd_bus *remote;         /* the peer-to-peer connection over the link */
        unsigned n_in_flight;   /* calls waiting here or sent to the local bus, not yet answered */
        GQueue waiting;         /* PoolCall, in the order the peer sent them */
        GQueue sent;            /* PoolCall, sent to the local bus */
        char *hold_key;         /* who holds, in its pool's hold table: unique among all peers */
        sd_event_source *idle_timer;
        bool closing;
};

/* One local bus connection and the peers pinned to it. */
struct Pool {
        Listener *listener;
        unsigned index;
        sd_bus *bus;
        GQueue peers;           /* Peer, by pool_link */
        GQueue ready;           /* Peer with calls waiting, by ready_link: round robin */
        GQueue own;             /* PoolCall of the listener itself (releases of holds): served first */
        unsigned n_pending;     /* calls sent on BUS and not answered yet */
        struct HoldTable *holds; /* peer's hold key → the users it holds */
};

/* What becomes of a call when its turn on the bus comes. PREPARE returns
 * 1 with *RET the message to send, or 0 when nothing is to be sent (it
 * answered the peer itself, or there is nothing left to do); an error is
 * answered to the peer. FINISH gets the local bus's answer. */
typedef struct PoolCallOps {
        int (*prepare)(PoolCall *c, sd_bus_message **ret);
        void (*finish)(PoolCall *c, sd_bus_message *reply);
} PoolCallOps;

struct PoolCall {
        Pool *pool;
        Peer *peer;             /* NULL: the listener's own call, or its peer is gone */
        GList peer_link;        /* in peer->waiting, then peer->sent */
        sd_bus_message *call;   /* the peer's call, to be answered; NULL for our own */
        const PoolCallOps *ops;
        char *user;             /* presence calls: the user id */
        uint64_t hold_id;       /* GoOnline: the hold this call made (0: none) */
};

/* listener-pool.c */
extern const PoolCallOps pool_relay_ops;
/* The pool connection for a new peer: the one with the fewest peers, or a
 * new one while there are fewer than the configured number. */
int pool_pick(Listener *l, Pool **ret);
void pool_free(Pool *pool);
void pool_add_peer(Pool *pool, Peer *p);
/* Forget the peer's calls that wait; those already sent are answered to
 * nobody. */
void pool_remove_peer(Pool *pool, Peer *p);
/* A call for the peer P (or the listener's own when P is NULL) whose
 * message is M (NULL for our own). */
PoolCall *pool_call_new(Pool *pool, Peer *p, sd_bus_message *m, const PoolCallOps *ops);
/* Queue C behind the calls of its peer that wait, and send what the
 * bus connection has room for. */
void pool_call_enqueue(PoolCall *c);
/* A new call on the pool's bus of PATH, INTERFACE, MEMBER carrying over
 * the interactive-authorization flag of C's message. */
int pool_call_new_local(PoolCall *c, const char *path, const char *interface, const char *member,
                        sd_bus_message **ret);

/* listener-send.c */
/* Whether M is Messages.Send or SendWithOptions, which go to the local
 * bus naming the peer they came from. */
bool listener_call_is_send(sd_bus_message *m);
/* The PREPARE of such a call: SendWithOptions with the peer's recipients,
 * body and options, whose relayed-by ends with the peer's name. */
int send_prepare(PoolCall *c, sd_bus_message **ret);

/* listener-health.c */
/* Ping the service on a connection of its own, every half heartbeat while
 * calls wait for it. */
int listener_health_start(Listener *l);
/* A call went to the service: watch whether it answers. */
void listener_health_watch(Listener *l);
void listener_health_stop(Listener *l);
/* False once the service has answered nothing, our pings nor the peers'
 * calls, for the heartbeat timeout while a ping of ours waits. */
bool listener_service_answers(Listener *l);
/* The service answered something just now. */
void listener_service_answered(Listener *l);

/* listener.c */
void peer_close(Peer *p, const char *reason, bool at_fault);

/* What an administrator is shown of a peer; borrowed from the peer. */
typedef struct PeerInfo {
        const char *name;
        const char *address;
        unsigned scopes;        /* PeerScope bits */
        uint64_t connected_usec; /* CLOCK_REALTIME µs */
        uint64_t calls_relayed;
        unsigned calls_in_flight;
        unsigned holds;
        uint64_t queued_bytes;  /* in the link, toward the peer */
        uint64_t queued_messages; /* in sd-bus, before those bytes */
        unsigned bus_connection; /* its pool connection, from 1 */
} PeerInfo;
/* The peers whose link is up (not closing), oldest first: Peer*,
 * borrowed; free the array. */
GPtrArray *listener_get_peers(Listener *l);
void peer_get_info(Peer *p, PeerInfo *ret);

/* listener-dbus.c */
/* Export the listener's object and ask for its name; a name another
 * process has is waited for, with a log line, and the listener goes on. */
int listener_dbus_start(Listener *l);
void listener_dbus_stop(Listener *l);

/* listener-holds.c */
/* When M is GoOnline or GoOffline, queue it with the peer's presence
 * accounting and return 1; otherwise 0. */
int holds_relay(Peer *p, sd_bus_message *m);
/* The peer's link dropped: its holds end, and the pool releases each
 * user no other peer of the pool holds. */
void holds_release_peer(Peer *p);
/* The service changed owner: what it held is gone with it. */
void holds_forget_pool(Pool *pool);
/* The hold table's RELEASED function; its userdata is the pool. */
void holds_released(struct HoldTable *t, char **users, void *userdata);
