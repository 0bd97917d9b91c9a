/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Internals of the importer, shared by importer.c (the upstream link, its
 * resynchronisation and the Bridge object) and importer-relay.c (what local
 * callers ask for). */

#include "bridge.h"
#include "cache.h"
#include "polkit.h"

typedef enum LinkPhase {
        PHASE_WAITING,          /* for the next attempt */
        PHASE_LINKING,          /* TCP, TLS, D-Bus handshake */
        PHASE_SYNCING,          /* snapshot, replay, holds */
        PHASE_UP,
        PHASE_STOPPED,          /* nothing is trying: a cycle, until Reconnect() */
} LinkPhase;

struct Importer {
        Bridge *bridge;
        LinkAddress address;
        sd_bus *local;
        Link *link;
        sd_bus *upstream;
        LinkPhase phase;
        unsigned attempt;
        sd_event_source *reconnect_timer;
        sd_event_source *heartbeat_timer;
        sd_bus_slot *heartbeat_slot;
        unsigned sync_pending;          /* replies the resync still waits for */
        bool snapshot_taken;            /* in this resync: later PropertiesChanged apply */

        /* The Bridge object (DESIGN.md §3, Bridge). */
        char *state;                    /* as announced */
        char *bridge_last_error;        /* as announced: end to end */
        char *last_error;               /* of our own link */
        int64_t since;
        uint32_t reconnects, announced_reconnects;
        uint32_t hops;                  /* as announced */
        bool was_up;
        char **chain;                   /* instance ids from the upstream to the origin */

        /* The upstream, when it is itself a bridge: its /bridge object, folded
         * into ours rather than relayed. */
        bool upstream_is_bridge;
        char *upstream_state;
        char *upstream_last_error;
        uint32_t upstream_hops;

        Cache *cache;
        Polkit *polkit;                 /* authorizes local callers' changes */

        /* Events: the last seq relayed to local subscribers, of HISTORY_ID. */
        char *history_id;
        uint64_t last_seq;
        bool have_seq;
        GPtrArray *held_events;         /* live Event signals that came during a resync */

        GHashTable *in_flight;          /* RelayedCall* set */
        GHashTable *caller_calls;       /* local unique name → its calls in flight upstream */

        /* Presence holds of local callers (DESIGN.md §5). */
        GHashTable *hold_counts;        /* user id → number of local holders */
        GHashTable *holders;            /* local unique name → LocalHolder */
        sd_event_source *hold_expiry;   /* the earliest local hold with a ttl */
};

/* importer.c */
void importer_link_failed(Importer *im, const char *reason);
int importer_emit_bridge_changes(Importer *im);
const char *importer_since_string(Importer *im, char *buf, size_t size);

/* importer-relay.c */
int importer_relay_setup(Importer *im);
void importer_relay_fail_all(Importer *im);
int importer_reassert_holds(Importer *im, sd_bus_message_handler_t done, void *userdata);
void importer_holders_free(Importer *im);
