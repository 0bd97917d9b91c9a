/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpost-bridge: org.outpost.Outpost1 on a bus far from outpostd.
 *
 * One process plays one role or both: the importer owns the service's
 * name on its local bus and relays to an upstream; the listener lets
 * remote importers reach the service on its local bus. Between an
 * importer and a listener runs a link. A machine two hops from central:
 *
 *   client ─ machine bus ─ importer ═link═ listener ─ site bus ─ importer
 *          ═link═ listener ─ central bus ─ outpostd
 *
 * A method call, from the client to outpostd
 *
 *   The importer's filter (importer-relay.c) sees every call to the name
 *   first. What would harm the link all callers share is refused here, to
 *   this caller alone: unix fds, a call larger than max-message-bytes as
 *   it will be relayed, more than max-calls-per-caller in flight. Property
 *   reads and GetManagedObjects are answered from the cache (cache.c);
 *   change methods are authorized with polkit as outpostd would. The rest
 *   becomes a new call with the body copied (a received message is
 *   sealed), sent on the upstream connection: a peer-to-peer sd-bus
 *   connection whose socket is one end of the link's socketpair.
 *
 *   The link (link.h) carries those bytes. Its pump (link-stream.c) moves
 *   them between the socketpair and TLS records (link-tls.h) on one TCP
 *   connection, in order, with a bounded buffer each way (buffer.c). The
 *   link was set up before any D-Bus byte: dialled by the importer
 *   (link-dial.c), accepted by the listener (link-listen.c), both
 *   certificates checked inside the TLS handshake.
 *
 *   On the listener's side the pump also follows the peer's D-Bus framing
 *   (frame-limit.c) and hands the bytes to the peer's sd-bus server
 *   connection. The listener (listener.c) lets through only method calls
 *   to the service's name, under /org/outpost/Outpost1, and no bus driver
 *   interface; it answers BridgeLink1's Hello and Ping itself, Ping
 *   from what listener-health.c knows of whether the service answers. A call
 *   that passes is copied again, onto the local-bus connection that
 *   carries this peer's traffic, and counted against max-calls-in-flight.
 *   On a site bus the name belongs to the site's importer, and the call
 *   goes through all of the above once more.
 *
 * The reply and the signals, back to the client
 *
 *   outpostd emits its signals before it replies (DESIGN.md §4 rule 2).
 *   dbus-daemon keeps one sender's messages in order toward each
 *   receiving connection, so the peer's local-bus connection gets the
 *   signals, then the reply. The listener writes both, in that order, on
 *   the peer's remote connection; the link keeps the order of the bytes;
 *   the importer's upstream connection dispatches them in the order they
 *   came. A signal updates the cache and goes out on the machine's bus;
 *   the reply is copied to the waiting caller on that same connection,
 *   after it. The client's proxy shows the change before it reads the
 *   reply, however many hops away outpostd is (rule 4).
 *
 *   A signal that is not the echo of a call takes the same way:
 *   outpostd, every listener peer whose match it meets, the link, the
 *   importer's filter on its upstream connection (importer.c), the cache,
 *   the local bus. An importer subscribes once upstream, whatever the
 *   number of its local subscribers. While it resynchronises after a
 *   reconnect, live Events wait until the missed ones are replayed, and
 *   each event is relayed once, by its sequence number (rule 6).
 *
 * Where order is kept
 *
 *   Per peer, and only there: one TCP stream per link, one connection on
 *   each side of it, one local-bus connection per peer at the listener,
 *   and nothing in between that queues one message where another may
 *   overtake it. Two peers, or two clients, have no order between them;
 *   none is promised. An answer the bridge makes itself (a refusal, a
 *   read from the cache, Disconnected) reveals no change, so it has no
 *   signal to wait for.
 *
 * Where each limit applies
 *
 *   Before TLS: the listener holds at most max-handshakes connections
 *   that have not authenticated, and max-connections-per-address from
 *   one source; connect plus handshake must finish within
 *   handshake-timeout-sec (link-listen.c, link.c). In the handshake: the
 *   CA, the allowed names, the host dialled (link-tls-gnutls.c).
 *
 *   Per message: max-message-bytes, from the header of each message a
 *   peer sends, before sd-bus buffers it (frame-limit.c in the listener's
 *   pump); a larger one, or bytes that are not D-Bus, end the link. The
 *   importer measures each call against the same limit before relaying,
 *   so a caller cannot end the link for the others.
 *
 *   Per direction of a link: max-queued-bytes (link-stream.c). Toward the
 *   peer a full buffer while sd-bus has more to say means the peer stopped
 *   reading: the link is dropped. Toward sd-bus a full buffer only stops
 *   reading from TCP, and TCP's flow control holds the peer back. The
 *   listener also bounds what sd-bus queues toward a peer (signals).
 *
 *   Per peer, by its certificate's name: the scopes of [Peers] and a
 *   token bucket of change calls (peer-scopes.c, listener.c), checked
 *   before anything is relayed.
 *
 *   Per caller: max-calls-in-flight per peer at the listener, and
 *   max-calls-per-caller per local client at the importer, answered with
 *   LimitExceeded. Calls whose reply may be large (FetchSince, ListUsers,
 *   GetManagedObjects) go upstream two at a time per link and one at a
 *   time per local caller; the others wait at the importer, in order, so
 *   a caller paging through history never puts more than one page ahead
 *   of another caller's reply. Liveness: the importer's heartbeat (a link busy with a
 *   large message is not a dead one), which fails too when the service
 *   behind the listener has answered nothing for the heartbeat timeout
 *   while calls wait for it, and the listener's peer-idle-timeout. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus-errors.h"
#include "bus-names.h"
#include "link.h"

/* How a SIGHUP that changed nothing begins its log line. */
#define RELOAD_FAILED "Reload failed, keeping the certificates in use and every other setting"

/* Spoken only between bridges, on the link itself: never on a bus. */
#define BRIDGE_LINK_IFACE  "org.outpost.BridgeLink1"

/* Settings of bridge.conf and the command line (DESIGN.md §3a: every
 * option has a key of the same name, in group [Bridge]). */
typedef struct BridgeConfig {
        bool session;
        char *address;
        char *listen;
        char *upstream;
        char *tls_ca;
        char *tls_cert;
        char *tls_key;
        char *tls_crl;                  /* the CA's revocation list, or NULL */
        char *allowed_peers;            /* comma-separated certificate names */
        char **peers;                   /* [Peers]: pattern, scopes, …; NULL: no such group (peer-scopes.h) */
        bool insecure_plaintext;
        unsigned reconnect_min_ms;
        unsigned reconnect_max_ms;
        unsigned heartbeat_ms;          /* importer pings upstream this often */
        unsigned heartbeat_timeout_ms;  /* a ping unanswered this long means the link is dead */
        unsigned peer_idle_timeout_ms;  /* listener drops a peer silent this long */
        unsigned max_calls_in_flight;   /* per remote peer */
        unsigned max_queued_bytes;      /* per remote peer, each direction */
        unsigned max_message_bytes;     /* the largest message a remote peer may send */
        unsigned max_calls_per_caller;  /* importer: per local caller, in flight upstream */
        unsigned max_handshakes;        /* listener: connections not yet authenticated */
        unsigned max_connections_per_address; /* listener: of those, from one address */
        unsigned handshake_timeout_sec; /* TCP connect and TLS handshake, both sides */
        unsigned listener_bus_connections; /* listener: its pool of local bus connections */
        unsigned listener_max_pending;  /* listener: calls pending on one of them, the rest wait */
        unsigned max_holds_per_peer;    /* listener: presence holds of one remote peer */
        unsigned max_holds_per_caller;  /* importer: presence holds of one local caller */
        unsigned resume_max_events;     /* importer: missed events a resume may hold, else a snapshot */
        unsigned peer_change_rate;      /* listener: change calls per second of one peer, on average */
        unsigned peer_change_burst;     /* listener: … and at most this many at once */
} BridgeConfig;

typedef struct Importer Importer;
typedef struct Listener Listener;

/* The one context of outpost-bridge. */
typedef struct Bridge {
        sd_event *event;
        BridgeConfig config;
        LinkConfig link_config;
        char *instance_id;      /* this process, for cycle detection */
        Importer *importer;
        Listener *listener;
        GPtrArray *graveyard;           /* closed buses, unref'd from a clean point */
        sd_event_source *graveyard_source;
} Bridge;

/* Connect to the local bus as the configuration says. */
int bridge_open_local_bus(Bridge *b, sd_bus **ret);
/* Losing BUS (the local bus) ends the bridge with an error and a log line. */
int bridge_watch_local_bus(Bridge *b, sd_bus *bus);
/* bridge_open_local_bus(), attached to the bridge's event loop, watched. */
int bridge_connect_local_bus(Bridge *b, sd_bus **ret);

int importer_new(Bridge *b, Importer **ret);
Importer *importer_free(Importer *im);
/* The chain of bridge instances from this process up to the origin, for
 * the listener to hand to its peers (cycle detection). */
char **importer_get_chain(Importer *im);

int listener_new(Bridge *b, int activated_fd, Listener **ret);
Listener *listener_free(Listener *l);
/* SIGHUP: the TLS files of CONFIG (CA, certificate, key, CRL) and the
 * [Peers] rules PEERS for the peers that connect from now on; a connected
 * peer that these would refuse, or would give fewer scopes, is dropped
 * at once. A failure keeps the old ones and says why. */
int listener_reload(Listener *l, const LinkConfig *config, char **peers);
/* Whether NAME (a unique name on the local bus) is one of the listener's
 * own pool connections: their holds are the peers', limited per peer. */
bool listener_owns_connection(Listener *l, const char *name);

/* Helpers shared by both roles. */
bool object_path_in_tree(const char *path);
int bus_forward_signal(sd_bus *to, sd_bus_message *m);
/* The bus's own errors about the service (no reply, no owner) become
 * Disconnected, saying whether the call may have been carried out. */
int bus_reply_copy(sd_bus_message *call, sd_bus_message *reply);
/* Close BUS (without waiting to flush: the other side may not read) and
 * drop our reference, once the loop is out of its callbacks. */
void bus_close_unref_later(Bridge *b, sd_bus *bus);
void bridge_release_buses(Bridge *b);
