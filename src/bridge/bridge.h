/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus-errors.h"
#include "link.h"

#define BRIDGE_PATH        OUTPOST_ROOT_PATH "/bridge"
#define BRIDGE_IFACE       OUTPOST_IFACE_PREFIX "Bridge"
#define EVENTS_PATH        OUTPOST_ROOT_PATH "/events"
#define EVENTS_IFACE       OUTPOST_IFACE_PREFIX "Events"
#define MESSAGES_PATH      OUTPOST_ROOT_PATH "/messages"
#define MESSAGES_IFACE     OUTPOST_IFACE_PREFIX "Messages"
#define PRESENCE_PATH      OUTPOST_ROOT_PATH "/presence"
#define PRESENCE_IFACE     OUTPOST_IFACE_PREFIX "Presence"
#define ONLINE_USER_IFACE  OUTPOST_IFACE_PREFIX "OnlineUser"
#define REGISTRY_IFACE     OUTPOST_IFACE_PREFIX "Registry"
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
        char *allowed_peers;            /* comma-separated certificate names */
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

int importer_new(Bridge *b, Importer **ret);
Importer *importer_free(Importer *im);
/* The chain of bridge instances from this process up to the origin, for
 * the listener to hand to its peers (cycle detection). */
char **importer_get_chain(Importer *im);

int listener_new(Bridge *b, int activated_fd, Listener **ret);
Listener *listener_free(Listener *l);
/* SIGHUP: read the TLS files again for the peers that connect from now
 * on. A failure keeps the old ones and says why. */
int listener_reload(Listener *l);

/* Helpers shared by both roles. */
bool object_path_in_tree(const char *path);
int bus_forward_signal(sd_bus *to, sd_bus_message *m);
int bus_reply_copy(sd_bus_message *call, sd_bus_message *reply);
/* Close BUS (without waiting to flush: the other side may not read) and
 * drop our reference, once the loop is out of its callbacks. */
void bus_close_unref_later(Bridge *b, sd_bus *bus);
void bridge_release_buses(Bridge *b);
