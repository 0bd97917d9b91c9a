/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Internals of the importer, one concern a file: importer.c (the upstream
 * link and the Bridge object), importer-resync.c (bringing the cache and
 * the event stream up to date after each connect, and applying what the
 * upstream signals), importer-relay.c (what local callers ask for) and
 * importer-holds.c (the presence holds of local callers). */

#include "audit.h"
#include "bus-caller.h"
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
        /* The upstreams (DESIGN.md §5), tried one at a time in order; a
         * failed link moves to the next. */
        char **upstreams;
        LinkAddress *addresses;         /* one per upstream */
        unsigned n_upstreams, current;
        sd_bus *local;
        Link *link;
        sd_bus *upstream;
        LinkPhase phase;
        unsigned attempt;
        sd_event_source *reconnect_timer;
        sd_event_source *heartbeat_timer;
        sd_bus_slot *heartbeat_slot;
        bool snapshot_taken;            /* in this resync: later PropertiesChanged apply */
        /* A resync that resumes from the last applied event instead of
         * taking the snapshot (DESIGN.md §5): */
        bool resuming;
        unsigned resume_pending;        /* replies it still waits for */
        GPtrArray *resume_pages;        /* FetchSince replies, applied once all came */
        unsigned resume_events;         /* events in them: at most resume-max-events */
        GHashTable *resume_users;       /* user id → ResumedUser: presence as the events leave it */
        GHashTable *resume_reads;       /* cookie of an object read → its user id */
        uint64_t resume_after;          /* the next FetchSince starts after this */
        uint64_t resume_from_generation; /* the presence generation the cache held */
        uint64_t resume_generation;     /* the last presence generation the events name */
        GVariant *resume_check;         /* the upstream's Presence properties, read last */
        unsigned resume_cut;            /* held signals that came before that read */
        /* InterfacesAdded/Removed waiting for the PropertiesChanged that
         * says which generation they belong to. */
        GPtrArray *pending_objects;

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
        BusCallers *callers;            /* credentials of local callers, for polkit and audit */
        Polkit *polkit;                 /* authorizes local callers' changes */
        Audit *audit;                   /* each change relayed, with its local caller */

        /* Events: the last seq relayed to local subscribers, of HISTORY_ID. */
        char *history_id;
        uint64_t last_seq;
        bool have_seq;
        GPtrArray *held_events;         /* live signals that came during a resync, in order */

        GHashTable *in_flight;          /* RelayedCall* set: sent upstream, not yet answered */
        GHashTable *caller_calls;       /* local unique name → its calls waiting or in flight */
        GQueue *waiting;                /* RelayedCall*: not sent yet, to keep the link fair */
        GPtrArray *large_in_flight;     /* RelayedCall*: in flight with a reply that may be large */

        /* Presence holds of local callers (DESIGN.md §5). */
        struct HoldTable *holds;        /* local unique name → the users it holds */
        GHashTable *holders;            /* local unique name → LocalHolder, watched until it leaves */
        struct HoldQueue *hold_queue;   /* GoOnline/GoOffline of the link, a few at a time */
};

/* importer.c */
/* The upstream in use, or being tried. */
static inline const char *importer_upstream(const Importer *im) {
        return im->upstreams[im->current];
}
void importer_link_failed(Importer *im, const char *reason);
/* A cycle never heals by retrying: stop until Reconnect(). */
void importer_link_refused(Importer *im, const char *reason);
int importer_emit_bridge_changes(Importer *im);
const char *importer_since_string(Importer *im, char *buf, size_t size);
/* The upstream's own Bridge properties (a{sv}), folded into ours. */
void importer_upstream_bridge_changed(Importer *im, GVariant *changed);
/* The resync is over: State says connected. */
void importer_sync_done(Importer *im);

/* importer-resync.c */
int importer_resync_setup(Importer *im);
void importer_resync_free(Importer *im);
/* The link is up: greet the upstream and bring everything up to date. */
void importer_resync_start(Importer *im);
/* Forget what a resync of the link that went had gathered. */
void importer_resync_reset(Importer *im);
/* The sd-bus filter of the upstream connection: its signals, in order. */
int importer_on_upstream_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

/* importer-relay.c */
int importer_relay_setup(Importer *im);
void importer_relay_free(Importer *im);
void importer_relay_fail_all(Importer *im);

/* importer-holds.c */
int importer_holds_setup(Importer *im);
void importer_holds_free(Importer *im);
unsigned importer_hold_count(Importer *im, const char *user);
/* The sender of the GoOnline M holds USER for TTL seconds (0: until it
 * lets go or leaves), from now on: before the call goes upstream, so that
 * its limit (max-holds-per-caller) holds however many calls are on their
 * way. Returns 1, or 0 when it answered M with the error that refused
 * the hold. *RET_ID names a new hold (0: a renewal). */
int importer_hold_add(Importer *im, sd_bus_message *m, const char *user, uint32_t ttl, uint64_t *ret_id);
/* The upstream refused the GoOnline that made hold ID: undo it. */
void importer_hold_undo(Importer *im, const char *sender, const char *user, uint64_t id);
/* Whether SENDER held USER, and its hold is now gone. */
bool importer_hold_remove(Importer *im, const char *sender, const char *user);
/* After a connect the upstream holds of the link are gone: ask again, a
 * few at a time, for every user a local client still holds, then call
 * DONE (a NULL reply). */
int importer_reassert_holds(Importer *im, void (*done)(Importer *im));
/* The link went: what it had still to ask upstream goes with it. */
void importer_reassert_cancel(Importer *im);
