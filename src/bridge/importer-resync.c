/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The importer's resynchronisation: after each connect, bring the cache
 * and the local event stream up to date with the upstream, then re-assert
 * the presence holds (DESIGN.md §4 rule 6, §5), and in between apply what
 * the upstream signals, in the order it sent it.
 *
 * Two ways to catch up. When the upstream still has this importer's
 * history (same Registry, so the same instance of the origin daemon, and
 * the missed events still retained), it resumes: FetchSince from the last
 * applied event, presence brought up to date from the events (each names
 * its generation), and only the objects that changed read again. This
 * costs what changed. Otherwise it takes the snapshot: GetManagedObjects,
 * then the replay of missed events, or Gap. Either way local clients see
 * the same: the objects that went and came, one PropertiesChanged for what
 * differs, the missed events in order, then State connected. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "importer.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

static void sync_step_snapshot(Importer *im);
static void sync_step_replay(Importer *im);
static void sync_step_holds(Importer *im);
static bool can_resume(Importer *im);
static void resume_start(Importer *im);
static int on_resume_bridge(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error);
static void resume_read_state(Importer *im);
static void resume_apply(Importer *im);
static int adopt_history(Importer *im, const char *history, uint64_t last);
static uint64_t cached_u64(Importer *im, const char *path, const char *iface, const char *name);

/* Events */

/* Where local subscribers are in the upstream's history: every event up
 * to SEQ was relayed, or lies in a Gap already announced. Our cached
 * LastSeq follows, so that a snapshot served from the cache while the link
 * is down says where a client (or a bridge below) resumes from. */
static void set_position(Importer *im, uint64_t seq) {
        im->last_seq = seq;
        cache_set(im->cache, EVENTS_PATH, EVENTS_IFACE, "LastSeq", g_variant_new_uint64(seq));
}

/* Gap(AFTER, RESUMED): the events AFTER+1..RESUMED were discarded upstream
 * before they could be relayed, and what follows RESUMED comes in order.
 * A Gap that does not move forward would hide events or announce them
 * twice: it is refused, and the caller drops the link to start afresh. */
static int emit_gap(Importer *im, uint64_t after, uint64_t resumed) {
        if (resumed <= after) {
                log_error("Refusing to announce a gap from event %" G_GUINT64_FORMAT " back to %" G_GUINT64_FORMAT,
                          after, resumed);
                return -ERANGE;
        }
        log_warning("Events %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT " were discarded upstream before they could be relayed; emitting Gap",
                    after + 1, resumed);
        set_position(im, resumed);
        return sd_bus_emit_signal(im->local, EVENTS_PATH, EVENTS_IFACE, "Gap", "tt", after, resumed);
}

static void forward_event_signal(Importer *im, sd_bus_message *m, uint64_t seq) {
        if (seq <= im->last_seq && im->have_seq)
                return;         /* already relayed: each event once */
        set_position(im, seq);
        (void) bus_forward_signal(im->local, m);
}

/* An upstream bridge's Gap, said again in terms of what this bus saw: the
 * part we are already past is not news, and the rest starts where our
 * subscribers are. */
static void forward_gap_signal(Importer *im, sd_bus_message *m) {
        uint64_t after, resumed;

        if (sd_bus_message_read(m, "tt", &after, &resumed) < 0)
                return;
        if (resumed <= after) {
                log_warning("Upstream %s sent Gap(%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "), which does not move forward; ignoring it",
                            importer_upstream(im), after, resumed);
                return;
        }
        if (!im->have_seq || resumed <= im->last_seq)
                return;
        (void) emit_gap(im, im->last_seq, resumed);
}

/* A live Event, MessageReceived or Gap of the upstream, in the order it
 * sent them. */
static void forward_history_signal(Importer *im, sd_bus_message *m) {
        uint64_t seq;

        (void) sd_bus_message_rewind(m, true);
        if (sd_bus_message_is_signal(m, EVENTS_IFACE, "Gap"))
                forward_gap_signal(im, m);
        else if (sd_bus_message_read(m, "t", &seq) >= 0)
                forward_event_signal(im, m, seq);
}

/* The model: presence objects and the managers' properties */

static bool is_presence_manager(const char *path, const char *iface) {
        return strcmp(path, PRESENCE_PATH) == 0 && strcmp(iface, PRESENCE_IFACE) == 0;
}

static bool cached_generation(Importer *im, uint64_t *ret) {
        GVariant *v = cache_get(im->cache, PRESENCE_PATH, PRESENCE_IFACE, "Generation");

        if (!v || !g_variant_is_of_type(v, G_VARIANT_TYPE_UINT64))
                return false;
        *ret = g_variant_get_uint64(v);
        return true;
}

/* InterfacesAdded/InterfacesRemoved of an upstream object (an online
 * user): into the cache, then to local clients, in their place among the
 * other signals (DESIGN.md §4 rules 1 and 4). */
static int read_object_signal(sd_bus_message *m, bool added, const char **ret_path, GVariant **ret_interfaces,
                              char ***ret_names) {
        int r;

        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "o", ret_path);
        if (r < 0)
                return r;
        if (!added)
                return sd_bus_message_read_strv(m, ret_names);
        r = bus_message_read_gvariant(m, ret_interfaces);
        if (r < 0)
                return r;
        return g_variant_is_of_type(*ret_interfaces, G_VARIANT_TYPE("a{sa{sv}}")) ? 0 : -EBADMSG;
}

static void apply_object_signal(Importer *im, sd_bus_message *m) {
        bool added = sd_bus_message_is_signal(m, NULL, "InterfacesAdded");
        g_autoptr(GVariant) interfaces = NULL;
        g_auto(GStrv) names = NULL;
        const char *path;

        if (read_object_signal(m, added, &path, &interfaces, &names) < 0) {
                log_warning("Ignoring a malformed %s from upstream", sd_bus_message_get_member(m));
                return;
        }
        /* The upstream's /bridge object is folded into ours, never relayed. */
        if (!object_path_in_tree(path) || strcmp(path, BRIDGE_PATH) == 0)
                return;
        if (added)
                cache_add_interfaces(im->cache, path, interfaces);
        else
                cache_remove_interfaces(im->cache, path, (const char *const *) names);
        (void) bus_forward_signal(im->local, m);
}

static void apply_pending_objects(Importer *im) {
        for (guint i = 0; i < im->pending_objects->len; i++)
                apply_object_signal(im, im->pending_objects->pdata[i]);
        g_ptr_array_set_size(im->pending_objects, 0);
}

/* An upstream bridge that took a snapshot of a history numbered anew
 * says so with HistoryId: our position means nothing there either. */
static void follow_history(Importer *im, GVariant *changed) {
        const char *history;

        if (!im->have_seq || !g_variant_lookup(changed, "HistoryId", "&s", &history) ||
            g_strcmp0(history, im->history_id) == 0)
                return;
        if (adopt_history(im, history, cached_u64(im, EVENTS_PATH, EVENTS_IFACE, "LastSeq")) < 0)
                importer_link_failed(im, "inconsistent event history upstream");
}

/* The objects a presence change adds or removes come just before its
 * PropertiesChanged, which names its generation: they wait for it. A
 * generation the cache already holds (the snapshot or the resumed events
 * brought it) is dropped with its objects, so that a change is never
 * applied twice nor a cache taken back to an older generation. */
static void on_properties_changed(Importer *im, sd_bus_message *m) {
        g_autoptr(GVariant) changed = NULL;
        const char *path = sd_bus_message_get_path(m), *iface;
        uint64_t generation, cached;

        if (sd_bus_message_rewind(m, true) < 0 || sd_bus_message_read(m, "s", &iface) < 0 ||
            bus_message_read_gvariant(m, &changed) < 0)
                return;
        if (strcmp(path, BRIDGE_PATH) == 0) {
                /* The upstream bridge's state is folded into ours. */
                importer_upstream_bridge_changed(im, changed);
                (void) importer_emit_bridge_changes(im);
                return;
        }
        /* Before the snapshot, the snapshot is newer than this. */
        if (!im->snapshot_taken)
                return;
        if (is_presence_manager(path, iface) && g_variant_lookup(changed, "Generation", "t", &generation) &&
            cached_generation(im, &cached) && generation <= cached) {
                g_ptr_array_set_size(im->pending_objects, 0);
                return;
        }
        apply_pending_objects(im);
        cache_update(im->cache, path, iface, changed);
        (void) bus_forward_signal(im->local, m);
        if (strcmp(path, EVENTS_PATH) == 0 && strcmp(iface, EVENTS_IFACE) == 0)
                follow_history(im, changed);
}

static void on_interfaces_changed(Importer *im, sd_bus_message *m) {
        /* Before the snapshot, the snapshot is newer than this. */
        if (!im->snapshot_taken)
                return;
        g_ptr_array_add(im->pending_objects, sd_bus_message_ref(m));
}

/* The signals that carry the history: each event, as Event or, for a
 * messages/ topic, as the Messages manager's MessageReceived, and Gap.
 * They keep one order and are relayed once each, by seq. */
static bool is_history_signal(sd_bus_message *m) {
        return sd_bus_message_is_signal(m, EVENTS_IFACE, "Event") ||
               sd_bus_message_is_signal(m, MESSAGES_IFACE, "MessageReceived") ||
               sd_bus_message_is_signal(m, EVENTS_IFACE, "Gap");
}

/* One signal of the upstream's tree, in its order. */
static void apply_signal(Importer *im, sd_bus_message *m) {
        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged"))
                on_properties_changed(im, m);
        else if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded") ||
                 sd_bus_message_is_signal(m, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved"))
                on_interfaces_changed(im, m);
        else if (is_history_signal(m))
                forward_history_signal(im, m);
        else
                (void) bus_forward_signal(im->local, m);
}

/* Signals the upstream pushes, in the order it sent them. */
int importer_on_upstream_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;

        if (sd_bus_message_get_bus(m) != im->upstream)
                return 1;       /* the connection of a link already gone */
        if (!sd_bus_message_is_signal(m, NULL, NULL))
                return 0;
        if (!object_path_in_tree(sd_bus_message_get_path(m)))
                return 1;
        if (strcmp(sd_bus_message_get_path(m), BRIDGE_PATH) == 0) {
                if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged"))
                        on_properties_changed(im, m);
                return 1;
        }
        /* While resuming, everything waits until the missed changes are
         * applied; during any resync, live events (and an upstream
         * bridge's gaps) wait until the missed ones are replayed. */
        if (im->phase == PHASE_SYNCING && (im->resuming || is_history_signal(m))) {
                g_ptr_array_add(im->held_events, sd_bus_message_ref(m));
                return 1;
        }
        apply_signal(im, m);
        return 1;
}

/* Resynchronisation, one reply after another. */

static int sync_call(Importer *im, const char *path, const char *iface, const char *member,
                     sd_bus_message_handler_t callback, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(im->upstream, &call, NULL, path, iface, member);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(call, types, ap);
                va_end(ap);
        }
        if (r < 0) {
                importer_link_failed(im, "cannot send a resynchronisation call");
                return r;
        }
        r = sd_bus_call_async(im->upstream, NULL, call, callback, im, 0);
        if (r < 0)
                importer_link_failed(im, "cannot send a resynchronisation call");
        return r;
}

/* True, after failing the link, when REPLY is an error. */
static bool sync_reply_failed(Importer *im, sd_bus_message *reply, const char *what) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (im->phase != PHASE_SYNCING || sd_bus_message_get_bus(reply) != im->upstream)
                return true;    /* a stale reply of a link already gone */
        if (!e)
                return false;
        g_autofree char *reason = g_strdup_printf("%s failed: %s", what, e->message);
        importer_link_failed(im, reason);
        return true;
}

/* The a{sv} of a resync reply into *RET; false, after failing the link,
 * when the reply is an error (WHAT was being done) or malformed (BAD). */
static bool sync_reply_properties(Importer *im, sd_bus_message *reply, const char *what, const char *bad,
                                  GVariant **ret) {
        if (sync_reply_failed(im, reply, what))
                return false;
        if (bus_message_read_vardict(reply, ret) < 0) {
                importer_link_failed(im, bad);
                return false;
        }
        return true;
}

static int on_hello(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        g_auto(GStrv) chain = NULL;

        if (sync_reply_failed(im, reply, "the link greeting"))
                return 0;
        if (bus_message_read_strv_nonnull(reply, &chain) < 0) {
                importer_link_failed(im, "bad link greeting");
                return 0;
        }
        if (g_strv_contains((const char *const *) chain, im->bridge->instance_id)) {
                importer_link_refused(im, "refused: the upstream imports from this bridge (a cycle)");
                return 0;
        }
        g_strfreev(im->chain);
        im->chain = g_steal_pointer(&chain);
        if (can_resume(im))
                resume_start(im);
        else
                sync_step_snapshot(im);
        return 0;
}

static int send_properties_changed(Importer *im, const char *path, const char *interface, GVariant *properties) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(im->local, &m, path, "org.freedesktop.DBus.Properties", "PropertiesChanged");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", interface);
        if (r < 0)
                return r;
        r = bus_message_append_gvariant(m, properties);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "as", 0);
        if (r < 0)
                return r;
        return sd_bus_send(im->local, m, NULL);
}

static void emit_cached_change(const char *path, const char *interface, GVariant *properties, void *userdata) {
        Importer *im = userdata;
        int r;

        /* Its properties never change: its InterfacesAdded said all. */
        if (strcmp(interface, ONLINE_USER_IFACE) == 0)
                return;
        r = send_properties_changed(im, path, interface, properties);
        if (r < 0)
                log_warning_errno(r, "Cannot announce what changed on %s", path);
}

/* The objects that came and went during an outage, announced as the
 * upstream would have (InterfacesAdded/InterfacesRemoved on the root). */
static int send_interfaces(Importer *im, const char *path, bool added, GVariant *interfaces,
                           const char *const *names) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(im->local, &m, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.ObjectManager",
                                      added ? "InterfacesAdded" : "InterfacesRemoved");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "o", path);
        if (r < 0)
                return r;
        r = added ? bus_message_append_gvariant(m, interfaces) : sd_bus_message_append_strv(m, (char **) names);
        if (r < 0)
                return r;
        return sd_bus_send(im->local, m, NULL);
}

static void emit_interfaces(Importer *im, const char *path, bool added, GVariant *interfaces,
                            const char *const *names) {
        int r;

        r = send_interfaces(im, path, added, interfaces, names);
        if (r < 0)
                log_warning_errno(r, "Cannot announce that %s %s", path, added ? "appeared" : "went");
}

static void emit_cached_added(const char *path, GVariant *interfaces, void *userdata) {
        emit_interfaces(userdata, path, true, interfaces, NULL);
}

static void emit_cached_removed(const char *path, const char *const *interfaces, void *userdata) {
        emit_interfaces(userdata, path, false, NULL, interfaces);
}

static void take_upstream_bridge(Importer *im, GVariant *objects) {
        g_autoptr(GVariant) ifaces = g_variant_lookup_value(objects, BRIDGE_PATH, G_VARIANT_TYPE("a{sa{sv}}"));
        g_autoptr(GVariant) props = NULL;

        im->upstream_is_bridge = false;
        if (!ifaces)
                return;
        props = g_variant_lookup_value(ifaces, BRIDGE_IFACE, G_VARIANT_TYPE_VARDICT);
        if (props)
                importer_upstream_bridge_changed(im, props);
}

/* The snapshot without the upstream's own /bridge object. */
static GVariant *strip_bridge_object(GVariant *objects) {
        GVariantBuilder b;
        GVariantIter iter;
        const char *path;
        GVariant *ifaces;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a{oa{sa{sv}}}"));
        g_variant_iter_init(&iter, objects);
        while (g_variant_iter_next(&iter, "{&o@a{sa{sv}}}", &path, &ifaces)) {
                if (strcmp(path, BRIDGE_PATH) != 0 && object_path_in_tree(path))
                        g_variant_builder_add(&b, "{o@a{sa{sv}}}", path, ifaces);
                g_variant_unref(ifaces);
        }
        return g_variant_ref_sink(g_variant_builder_end(&b));
}

static int on_registry(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        g_autoptr(GVariant) props = NULL;

        if (!sync_reply_properties(im, reply, "reading the registry", "bad registry properties", &props))
                return 0;
        {
                g_autoptr(GVariant) diff = cache_diff(im->cache, OUTPOST_ROOT_PATH, REGISTRY_IFACE, props);
                if (diff)
                        emit_cached_change(OUTPOST_ROOT_PATH, REGISTRY_IFACE, diff, im);
        }
        cache_update(im->cache, OUTPOST_ROOT_PATH, REGISTRY_IFACE, props);
        sync_step_replay(im);
        return 0;
}

static int on_snapshot(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        g_autoptr(GVariant) objects = NULL, mine = NULL;

        if (sync_reply_failed(im, reply, "GetManagedObjects"))
                return 0;
        if (bus_message_read_gvariant(reply, &objects) < 0 ||
            !g_variant_is_of_type(objects, G_VARIANT_TYPE("a{oa{sa{sv}}}"))) {
                importer_link_failed(im, "bad snapshot");
                return 0;
        }
        take_upstream_bridge(im, objects);
        mine = strip_bridge_object(objects);
        g_ptr_array_set_size(im->pending_objects, 0);   /* the snapshot is newer */
        /* Local clients hear of every object that came or went and every
         * property that differs from what they may have cached during the
         * outage, objects first (rules 1 and 6). */
        cache_replace(im->cache, mine, &(CacheDiff) {
                .removed = emit_cached_removed,
                .added = emit_cached_added,
                .changed = emit_cached_change,
                .userdata = im,
        });
        im->snapshot_taken = true;
        sync_call(im, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.Properties", "GetAll", on_registry,
                  "s", REGISTRY_IFACE);
        return 0;
}

static void sync_step_snapshot(Importer *im) {
        log_info("Upstream %s: taking a snapshot", importer_upstream(im));
        sync_call(im, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                  on_snapshot, NULL);
}

static uint64_t cached_u64(Importer *im, const char *path, const char *iface, const char *name) {
        GVariant *v = cache_get(im->cache, path, iface, name);
        return v && g_variant_is_of_type(v, G_VARIANT_TYPE_UINT64) ? g_variant_get_uint64(v) : 0;
}

static const char *cached_history_id(Importer *im) {
        GVariant *v = cache_get(im->cache, EVENTS_PATH, EVENTS_IFACE, "HistoryId");
        return v && g_variant_is_of_type(v, G_VARIANT_TYPE_STRING) ? g_variant_get_string(v, NULL) : "";
}

/* The event REPLY is in (its struct entered) as a signal to local
 * clients, unless it was relayed already. */
static int relay_replayed_event(Importer *im, sd_bus_message *reply) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *signal = NULL;
        const char *topic;
        uint64_t seq;
        int64_t time;
        int r;

        r = sd_bus_message_read(reply, "tsx", &seq, &topic, &time);
        if (r < 0)
                return r;
        /* Sent as outpostd sends it: a message only to those the bus
         * policy lets receive it. */
        if (topic_is_message(topic))
                r = sd_bus_message_new_signal(im->local, &signal, MESSAGES_PATH, MESSAGES_IFACE, "MessageReceived");
        else
                r = sd_bus_message_new_signal(im->local, &signal, EVENTS_PATH, EVENTS_IFACE, "Event");
        if (r < 0)
                return r;
        r = sd_bus_message_append(signal, "tsx", seq, topic, time);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(signal, reply, false);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0 || seq <= im->last_seq)
                return r;
        set_position(im, seq);
        return sd_bus_send(im->local, signal, NULL);
}

/* One page of FetchSince: EACH for every event (its struct entered), then
 * where the next page starts and whether there is one. */
static int read_page(Importer *im, sd_bus_message *reply, int (*each)(Importer *im, sd_bus_message *reply),
                     uint64_t *ret_next, bool *ret_more) {
        int more, r;

        r = sd_bus_message_enter_container(reply, 'a', "(tsxa{sv})");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "tsxa{sv}")) > 0)
                r = each(im, reply);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "tb", ret_next, &more);
        if (r < 0)
                return r;
        *ret_more = more;
        return 0;
}

/* Relay one page of FetchSince as Event signals; returns whether more. */
static int relay_page(Importer *im, sd_bus_message *reply, bool *ret_more) {
        uint64_t next_after;
        int r;

        r = read_page(im, reply, relay_replayed_event, &next_after, ret_more);
        if (r < 0)
                return r;
        if (next_after > im->last_seq)
                set_position(im, next_after);
        return 0;
}

/* A history the upstream numbers anew (its store was reset or restored):
 * our position means nothing there. What it holds up to LAST was not
 * relayed here, which a Gap from 0 says; the first time there is nothing
 * to say. */
static int adopt_history(Importer *im, const char *history, uint64_t last) {
        bool had_seq = im->have_seq;

        if (had_seq)
                log_warning("Upstream %s: history '%s' now ends at event %" G_GUINT64_FORMAT
                            " (relayed here: up to %" G_GUINT64_FORMAT " of history '%s'); resuming from there",
                            importer_upstream(im), history, last, im->last_seq, im->history_id);
        g_free(im->history_id);
        im->history_id = g_strdup(history);
        im->have_seq = true;
        set_position(im, 0);
        if (had_seq && last > 0)
                return emit_gap(im, 0, last);
        set_position(im, last);
        return 0;
}

static void fetch_page(Importer *im);

/* FetchSince said HistoryTruncated or HistoryReset: the upstream's bounds
 * now, read (through any bridge above) after the error, tell what was
 * lost. Retention may have moved on since the snapshot and keeps moving
 * while we catch up, so the snapshot's figures cannot say it: only the
 * events below a FirstSeq read after the error are known to be gone. */
static int on_history_bounds(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        g_autoptr(GVariant) props = NULL;
        const char *history;
        uint64_t first, last;
        int r;

        if (sync_reply_failed(im, reply, "reading the event history's bounds"))
                return 0;
        if (bus_message_read_vardict(reply, &props) < 0 || !g_variant_lookup(props, "HistoryId", "&s", &history) ||
            !g_variant_lookup(props, "FirstSeq", "t", &first) || !g_variant_lookup(props, "LastSeq", "t", &last)) {
                importer_link_failed(im, "bad Events properties");
                return 0;
        }
        cache_update(im->cache, EVENTS_PATH, EVENTS_IFACE, props);
        if (strcmp(history, im->history_id) != 0 || last < im->last_seq)
                r = adopt_history(im, history, last);
        else if (first > 0 && first - 1 > im->last_seq)
                /* Every event below FirstSeq is gone for good: resume
                 * just before it, and replay the rest. */
                r = emit_gap(im, im->last_seq, first - 1);
        else {
                g_autofree char *reason = g_strdup_printf(
                        "the events after %" G_GUINT64_FORMAT " were said to be lost, yet FirstSeq is %" G_GUINT64_FORMAT
                        " and LastSeq %" G_GUINT64_FORMAT, im->last_seq, first, last);
                importer_link_failed(im, reason);
                return 0;
        }
        if (r < 0) {
                importer_link_failed(im, "inconsistent event history upstream");
                return 0;
        }
        fetch_page(im);
        return 0;
}

static int on_replay_page(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        bool more = false;

        if (im->phase != PHASE_SYNCING || sd_bus_message_get_bus(reply) != im->upstream)
                return 0;
        if (e && (sd_bus_error_has_name(e, BUS_ERROR_HISTORY_TRUNCATED) ||
                  sd_bus_error_has_name(e, BUS_ERROR_HISTORY_RESET))) {
                log_info("Upstream %s: %s", importer_upstream(im), e->message);
                sync_call(im, EVENTS_PATH, "org.freedesktop.DBus.Properties", "GetAll", on_history_bounds,
                          "s", EVENTS_IFACE);
                return 0;
        }
        if (sync_reply_failed(im, reply, "replaying events"))
                return 0;
        if (relay_page(im, reply, &more) < 0) {
                importer_link_failed(im, "bad FetchSince reply");
                return 0;
        }
        if (more)
                fetch_page(im);
        else
                sync_step_holds(im);
        return 0;
}

static int send_fetch_page(Importer *im) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        r = sd_bus_message_new_method_call(im->upstream, &call, NULL, EVENTS_PATH, EVENTS_IFACE, "FetchSince");
        if (r < 0)
                return r;
        r = sd_bus_message_append(call, "stasu", im->history_id, im->last_seq, 0, 1000);
        if (r < 0)
                return r;
        return sd_bus_call_async(im->upstream, NULL, call, on_replay_page, im, 0);
}

static void fetch_page(Importer *im) {
        if (send_fetch_page(im) < 0)
                importer_link_failed(im, "cannot replay events");
}

/* Missed events are replayed from the last one relayed; the first time,
 * and after the history changed, there is nothing to replay from: live
 * events, held since the link came up, follow the snapshot. */
static void sync_step_replay(Importer *im) {
        const char *history = cached_history_id(im);

        if (im->have_seq && strcmp(history, im->history_id) == 0) {
                fetch_page(im);
                return;
        }
        if (adopt_history(im, history, cached_u64(im, EVENTS_PATH, EVENTS_IFACE, "LastSeq")) < 0) {
                importer_link_failed(im, "inconsistent event history upstream");
                return;
        }
        sync_step_holds(im);
}


/* Resuming from the last applied event */

/* What the missed events say of one user's presence. */
typedef struct ResumedUser {
        bool online;
        int64_t time;           /* of the event: Since, should the object be gone already */
        GVariant *props;        /* its OnlineUser properties, read after the events */
} ResumedUser;

static void resumed_user_free(ResumedUser *u) {
        if (u->props)
                g_variant_unref(u->props);
        g_free(u);
}

static char *online_user_path(const char *user) {
        g_autofree char *segment = g_strdelimit(g_strdup(user), "-", '_');

        return g_strdup_printf("%s/%s", PRESENCE_PATH, segment);
}

/* Resuming needs a cache that a whole resync filled, and a position in a
 * history; whether the upstream still has both is for it to say. */
static bool can_resume(Importer *im) {
        uint64_t generation;

        return im->was_up && im->have_seq && im->history_id && cached_generation(im, &generation) &&
               cache_get(im->cache, OUTPOST_ROOT_PATH, REGISTRY_IFACE, "InstanceId");
}

static void message_unref(void *m) {
        sd_bus_message_unref(m);
}

/* Resuming is not possible after all: what was gathered goes, and so do
 * the live model signals held meanwhile (the snapshot is newer than
 * them); held events keep their place, after the replay. */
static void resume_abandon(Importer *im, const char *why) {
        g_autoptr(GPtrArray) held = g_steal_pointer(&im->held_events);

        log_info("Upstream %s: cannot resume from event %" G_GUINT64_FORMAT " (%s); taking a snapshot",
                 importer_upstream(im), im->last_seq, why);
        im->resuming = false;
        g_ptr_array_set_size(im->resume_pages, 0);
        g_hash_table_remove_all(im->resume_users);
        g_hash_table_remove_all(im->resume_reads);
        g_clear_pointer(&im->resume_check, g_variant_unref);
        im->held_events = g_ptr_array_new_with_free_func(message_unref);
        for (guint i = 0; i < held->len; i++)
                if (is_history_signal(held->pdata[i]))
                        g_ptr_array_add(im->held_events, sd_bus_message_ref(held->pdata[i]));
        sync_step_snapshot(im);
}

static void resume_fetch(Importer *im);

/* Registry: another InstanceId means the origin daemon restarted, and its
 * volatile state (presence) with it; another ServerId, another store. */
static int on_resume_registry(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        g_autoptr(GVariant) props = NULL, diff = NULL;
        const char *instance = "?";

        if (!sync_reply_properties(im, reply, "reading the registry", "bad registry properties", &props))
                return 0;
        diff = cache_diff(im->cache, OUTPOST_ROOT_PATH, REGISTRY_IFACE, props);
        if (diff) {
                g_autofree char *why = NULL;
                (void) g_variant_lookup(props, "InstanceId", "&s", &instance);
                why = g_strdup_printf("the upstream is another instance, InstanceId %s", instance);
                resume_abandon(im, why);
                return 0;
        }
        sync_call(im, BRIDGE_PATH, "org.freedesktop.DBus.Properties", "GetAll", on_resume_bridge, "s", BRIDGE_IFACE);
        return 0;
}

static bool is_unknown_error(const sd_bus_error *e) {
        return sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_INTERFACE) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_PROPERTY);
}

/* The upstream's own /bridge object, when it is a bridge: folded into
 * ours, as the snapshot would have told. */
static int on_resume_bridge(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_autoptr(GVariant) props = NULL;

        if (im->phase != PHASE_SYNCING || sd_bus_message_get_bus(reply) != im->upstream)
                return 0;
        im->upstream_is_bridge = false;
        if (e && is_unknown_error(e)) {
                resume_fetch(im);
                return 0;
        }
        if (!sync_reply_properties(im, reply, "reading the upstream bridge", "bad upstream bridge properties", &props))
                return 0;
        importer_upstream_bridge_changed(im, props);
        resume_fetch(im);
        return 0;
}

/* A presence event of the page: what it says of its user, when its
 * generation is newer than the cache. */
static int scan_presence_event(Importer *im, int64_t time, GVariant *data) {
        const char *user;
        gboolean online;
        uint64_t generation;
        ResumedUser *u;

        if (!g_variant_lookup(data, "user", "&s", &user) || !g_variant_lookup(data, "online", "b", &online) ||
            !g_variant_lookup(data, "generation", "t", &generation))
                return -EBADMSG;
        if (generation <= im->resume_from_generation)
                return 0;
        im->resume_generation = MAX(im->resume_generation, generation);
        u = g_hash_table_lookup(im->resume_users, user);
        if (!u) {
                u = g_new0(ResumedUser, 1);
                g_hash_table_insert(im->resume_users, g_strdup(user), u);
        }
        u->online = online;
        u->time = time;
        return 0;
}

/* The event REPLY is in (its struct entered), for what it changes if it
 * is a presence event. */
static int scan_event(Importer *im, sd_bus_message *reply) {
        g_autoptr(GVariant) data = NULL;
        const char *topic;
        uint64_t seq;
        int64_t time;
        int r;

        r = sd_bus_message_read(reply, "tsx", &seq, &topic, &time);
        if (r < 0)
                return r;
        im->resume_events++;
        if (strcmp(topic, "presence") != 0)
                r = sd_bus_message_skip(reply, "a{sv}");
        else {
                r = bus_message_read_gvariant(reply, &data);
                if (r < 0)
                        return r;
                r = scan_presence_event(im, time, data);
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

/* Read one FetchSince page for what its presence events change. */
static int scan_page(Importer *im, sd_bus_message *reply, uint64_t *ret_next, bool *ret_more) {
        return read_page(im, reply, scan_event, ret_next, ret_more);
}

static int on_resume_page(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        uint64_t next_after;
        bool more = false;

        if (im->phase != PHASE_SYNCING || sd_bus_message_get_bus(reply) != im->upstream)
                return 0;
        if (e && (sd_bus_error_has_name(e, BUS_ERROR_HISTORY_TRUNCATED) ||
                  sd_bus_error_has_name(e, BUS_ERROR_HISTORY_RESET))) {
                resume_abandon(im, e->message);
                return 0;
        }
        if (sync_reply_failed(im, reply, "fetching the missed events"))
                return 0;
        if (scan_page(im, reply, &next_after, &more) < 0) {
                importer_link_failed(im, "bad FetchSince reply");
                return 0;
        }
        g_ptr_array_add(im->resume_pages, sd_bus_message_ref(reply));
        im->resume_after = MAX(im->resume_after, next_after);
        /* The pages are held until the whole resume checks out: past the
         * limit, the snapshot, whose replay relays page by page, holds
         * less. */
        if (more && im->resume_events >= im->bridge->config.resume_max_events) {
                g_autofree char *why = g_strdup_printf("more than %u missed events (resume-max-events)",
                                                       im->bridge->config.resume_max_events);

                resume_abandon(im, why);
                return 0;
        }
        if (more)
                resume_fetch(im);
        else
                resume_read_state(im);
        return 0;
}

static void resume_fetch(Importer *im) {
        sync_call(im, EVENTS_PATH, EVENTS_IFACE, "FetchSince", on_resume_page, "stasu",
                  im->history_id, im->resume_after, 0, (uint32_t) 1000);
}

/* One reply of the reads below has come: once all have, apply. */
static void resume_read_done(Importer *im) {
        assert(im->resume_pending > 0);
        if (--im->resume_pending == 0)
                resume_apply(im);
}

/* The object of a user who came online during the outage, as it is now:
 * gone again (an error) means the held signals say it went. */
static int on_resume_object(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_autoptr(GVariant) props = NULL;
        const char *user;
        ResumedUser *u;
        uint64_t cookie;

        if (im->phase != PHASE_SYNCING || sd_bus_message_get_bus(reply) != im->upstream || !im->resuming)
                return 0;
        if (sd_bus_message_get_reply_cookie(reply, &cookie) < 0 ||
            !(user = g_hash_table_lookup(im->resume_reads, &cookie)))
                return 0;
        u = g_hash_table_lookup(im->resume_users, user);
        if (e && !is_unknown_error(e)) {
                (void) sync_reply_failed(im, reply, "reading an online user");
                return 0;
        }
        if (!e && bus_message_read_vardict(reply, &props) < 0) {
                importer_link_failed(im, "bad online user properties");
                return 0;
        }
        if (u && props)
                u->props = g_steal_pointer(&props);
        resume_read_done(im);
        return 0;
}

static int resume_read_object(Importer *im, const char *user) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        g_autofree char *path = online_user_path(user);
        uint64_t cookie;
        int r;

        r = sd_bus_message_new_method_call(im->upstream, &call, NULL, path, "org.freedesktop.DBus.Properties",
                                           "GetAll");
        if (r < 0)
                return r;
        r = sd_bus_message_append(call, "s", ONLINE_USER_IFACE);
        if (r < 0)
                return r;
        r = sd_bus_call_async(im->upstream, NULL, call, on_resume_object, im, 0);
        if (r < 0)
                return r;
        r = sd_bus_message_get_cookie(call, &cookie);
        if (r < 0)
                return r;
        g_hash_table_insert(im->resume_reads, g_memdup2(&cookie, sizeof cookie), g_strdup(user));
        im->resume_pending++;
        return 0;
}

/* The Events properties but LastSeq, which follows what was relayed here. */
static int on_resume_events(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        g_autoptr(GVariant) props = NULL;

        if (!sync_reply_properties(im, reply, "reading the event history's bounds", "bad Events properties", &props) || !im->resuming)
                return 0;
        cache_update(im->cache, EVENTS_PATH, EVENTS_IFACE, props);
        set_position(im, im->last_seq);
        resume_read_done(im);
        return 0;
}

/* Read last: the upstream's Presence properties as of the signals held up
 * to here, against which the resumed cache is checked. */
static int on_resume_check(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        g_autoptr(GVariant) props = NULL;

        if (!sync_reply_properties(im, reply, "reading presence", "bad Presence properties", &props) || !im->resuming)
                return 0;
        g_clear_pointer(&im->resume_check, g_variant_unref);
        im->resume_check = g_steal_pointer(&props);
        im->resume_cut = im->held_events->len;
        resume_read_done(im);
        return 0;
}

/* The events are in: read what they cannot tell, in one go. */
static void resume_read_state(Importer *im) {
        GHashTableIter iter;
        const char *user;
        ResumedUser *u;

        im->resume_pending = 1;         /* until everything is sent */
        if (sync_call(im, EVENTS_PATH, "org.freedesktop.DBus.Properties", "GetAll", on_resume_events,
                      "s", EVENTS_IFACE) < 0)
                return;
        im->resume_pending++;
        g_hash_table_iter_init(&iter, im->resume_users);
        while (g_hash_table_iter_next(&iter, (gpointer *) &user, (gpointer *) &u))
                if (u->online && resume_read_object(im, user) < 0) {
                        importer_link_failed(im, "cannot read an online user");
                        return;
                }
        if (sync_call(im, PRESENCE_PATH, "org.freedesktop.DBus.Properties", "GetAll", on_resume_check,
                      "s", PRESENCE_IFACE) < 0)
                return;
        im->resume_pending++;
        resume_read_done(im);
}

/* The interfaces the origin announces with an online user's object: the
 * standard ones sd-bus shows on every object, then its own, so that a
 * cache built from signals equals the snapshot. */
static GVariant *online_user_interfaces(const char *user, ResumedUser *u) {
        static const char *const standard[] = BUS_STANDARD_INTERFACES;
        g_autoptr(GVariant) props = u->props ? g_variant_ref(u->props) : NULL;
        GVariantBuilder b;

        /* Gone again already: the held signals remove it right after. */
        if (!props)
                props = g_variant_ref_sink(vardict_new("UserId", g_variant_new_string(user),
                                                       "Since", g_variant_new_int64(u->time), NULL));
        g_variant_builder_init(&b, G_VARIANT_TYPE("a{sa{sv}}"));
        for (size_t i = 0; i < ELEMENTSOF(standard); i++)
                g_variant_builder_add(&b, "{s@a{sv}}", standard[i], g_variant_new_array(G_VARIANT_TYPE("{sv}"), NULL, 0));
        g_variant_builder_add(&b, "{s@a{sv}}", ONLINE_USER_IFACE, props);
        return g_variant_builder_end(&b);
}

/* Whether PATH's cached OnlineUser is INTERFACES' (a{sa{sv}}). */
static bool cached_object_equal(Importer *im, const char *path, GVariant *interfaces) {
        g_autoptr(GVariant) cached = cache_get_all(im->cache, path, ONLINE_USER_IFACE);
        g_autoptr(GVariant) props = g_variant_lookup_value(interfaces, ONLINE_USER_IFACE, G_VARIANT_TYPE_VARDICT);

        if (!cached)
                return false;
        g_variant_ref_sink(cached);
        return props && g_variant_equal(cached, props);
}

/* PATH goes with every interface it had, as at the origin. */
static void resume_remove_object(Importer *im, const char *path, unsigned *removed) {
        g_auto(GStrv) names = cache_get_interfaces(im->cache, path);

        if (!names)
                return;
        emit_interfaces(im, path, false, NULL, (const char *const *) names);
        cache_remove_interfaces(im->cache, path, (const char *const *) names);
        (*removed)++;
}

/* The objects that went, then those that came (or came back, since), then
 * ONE PropertiesChanged of the manager: what the snapshot would have told. */
static void resume_apply_presence(Importer *im) {
        GHashTableIter iter;
        const char *user;
        ResumedUser *u;
        unsigned added = 0, removed = 0;
        GVariant *v;
        uint32_t count;

        g_hash_table_iter_init(&iter, im->resume_users);
        while (g_hash_table_iter_next(&iter, (gpointer *) &user, (gpointer *) &u)) {
                g_autofree char *path = online_user_path(user);
                if (!u->online)
                        resume_remove_object(im, path, &removed);
        }
        g_hash_table_iter_init(&iter, im->resume_users);
        while (g_hash_table_iter_next(&iter, (gpointer *) &user, (gpointer *) &u)) {
                g_autofree char *path = online_user_path(user);
                g_autoptr(GVariant) interfaces = NULL;

                if (!u->online)
                        continue;
                interfaces = g_variant_ref_sink(online_user_interfaces(user, u));
                if (cached_object_equal(im, path, interfaces))
                        continue;
                /* Went and came back: clients learn its new Since. */
                resume_remove_object(im, path, &removed);
                cache_add_interfaces(im->cache, path, interfaces);
                emit_interfaces(im, path, true, interfaces, NULL);
                added++;
        }
        if (im->resume_generation <= im->resume_from_generation)
                return;
        v = cache_get(im->cache, PRESENCE_PATH, PRESENCE_IFACE, "OnlineCount");
        count = v && g_variant_is_of_type(v, G_VARIANT_TYPE_UINT32) ? g_variant_get_uint32(v) : 0;
        {
                g_autoptr(GVariant) props = g_variant_ref_sink(vardict_new(
                        "Generation", g_variant_new_uint64(im->resume_generation),
                        "OnlineCount", g_variant_new_uint32(count + added - removed), NULL));
                g_autoptr(GVariant) diff = cache_diff(im->cache, PRESENCE_PATH, PRESENCE_IFACE, props);

                cache_update(im->cache, PRESENCE_PATH, PRESENCE_IFACE, props);
                if (diff)
                        emit_cached_change(PRESENCE_PATH, PRESENCE_IFACE, diff, im);
        }
}

/* Whether the cache shows what the upstream's Presence said when it was
 * read (the signals held before that reply are applied by now). */
static bool resume_check_passes(Importer *im) {
        uint64_t generation, cached = 0;
        uint32_t count;
        GVariant *v = cache_get(im->cache, PRESENCE_PATH, PRESENCE_IFACE, "OnlineCount");

        if (!im->resume_check || !g_variant_lookup(im->resume_check, "Generation", "t", &generation) ||
            !g_variant_lookup(im->resume_check, "OnlineCount", "u", &count))
                return false;
        if (!cached_generation(im, &cached) || cached != generation) {
                log_warning("Upstream %s: resumed to presence generation %" G_GUINT64_FORMAT ", but it is at %" G_GUINT64_FORMAT,
                            importer_upstream(im), cached, generation);
                return false;
        }
        if (!v || !g_variant_is_of_type(v, G_VARIANT_TYPE_UINT32) || g_variant_get_uint32(v) != count) {
                log_warning("Upstream %s: resumed to %u users online, but it has %u", importer_upstream(im),
                            v && g_variant_is_of_type(v, G_VARIANT_TYPE_UINT32) ? g_variant_get_uint32(v) : 0, count);
                return false;
        }
        return true;
}

static void resume_apply(Importer *im) {
        g_autoptr(GPtrArray) held = g_steal_pointer(&im->held_events);
        uint64_t from = im->last_seq;
        bool more, passed = false;
        unsigned changes = g_hash_table_size(im->resume_users);

        im->held_events = g_ptr_array_new_with_free_func(message_unref);
        im->resuming = false;
        im->snapshot_taken = true;
        resume_apply_presence(im);
        for (guint i = 0; i < im->resume_pages->len; i++) {
                sd_bus_message *page = im->resume_pages->pdata[i];
                if (sd_bus_message_rewind(page, true) < 0 || relay_page(im, page, &more) < 0) {
                        importer_link_failed(im, "bad FetchSince reply");
                        return;
                }
        }
        g_ptr_array_set_size(im->resume_pages, 0);
        /* What the upstream signalled meanwhile, in order: the changes the
         * events brought already are dropped by their generation, the
         * events by their seq. */
        for (guint i = 0; i <= held->len; i++) {
                if (i == im->resume_cut)
                        passed = resume_check_passes(im);
                if (i < held->len)
                        apply_signal(im, held->pdata[i]);
        }
        g_hash_table_remove_all(im->resume_users);
        g_hash_table_remove_all(im->resume_reads);
        g_clear_pointer(&im->resume_check, g_variant_unref);
        if (!passed) {
                /* Something changed that the events do not tell (a
                 * change the origin could not record): start afresh. */
                im->snapshot_taken = false;
                sync_step_snapshot(im);
                return;
        }
        log_info("Upstream %s: resumed from event %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT
                 " (%u users' presence changed) without a snapshot",
                 importer_upstream(im), from, im->last_seq, changes);
        sync_step_holds(im);
}

/* Ask the upstream whether it is still the one whose history and state
 * the cache holds; meanwhile every live signal waits. */
static void resume_start(Importer *im) {
        uint64_t generation = 0;

        (void) cached_generation(im, &generation);
        im->resuming = true;
        im->resume_events = 0;
        im->resume_after = im->last_seq;
        im->resume_from_generation = generation;
        im->resume_generation = generation;
        log_info("Upstream %s: resuming from event %" G_GUINT64_FORMAT, importer_upstream(im), im->last_seq);
        sync_call(im, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.Properties", "GetAll", on_resume_registry,
                  "s", REGISTRY_IFACE);
}

/* The end of a resync */

static void on_holds_done(Importer *im) {
        /* Live events that came meanwhile, after the replayed ones, once. */
        for (guint i = 0; i < im->held_events->len; i++)
                forward_history_signal(im, im->held_events->pdata[i]);
        g_ptr_array_set_size(im->held_events, 0);
        importer_sync_done(im);
}

static void sync_step_holds(Importer *im) {
        if (importer_reassert_holds(im, on_holds_done) < 0)
                importer_link_failed(im, "cannot re-assert presence holds");
}

void importer_resync_start(Importer *im) {
        const char *own[] = { im->bridge->instance_id, NULL };

        sync_call(im, OUTPOST_ROOT_PATH, BRIDGE_LINK_IFACE, "Hello", on_hello, "as", 1, own[0]);
}

void importer_resync_reset(Importer *im) {
        if (im->held_events)
                g_ptr_array_set_size(im->held_events, 0);
        if (im->pending_objects)
                g_ptr_array_set_size(im->pending_objects, 0);
        if (im->resume_pages)
                g_ptr_array_set_size(im->resume_pages, 0);
        if (im->resume_users)
                g_hash_table_remove_all(im->resume_users);
        if (im->resume_reads)
                g_hash_table_remove_all(im->resume_reads);
        g_clear_pointer(&im->resume_check, g_variant_unref);
        im->resuming = false;
        im->resume_pending = 0;
        im->snapshot_taken = false;
}

int importer_resync_setup(Importer *im) {
        im->held_events = g_ptr_array_new_with_free_func(message_unref);
        im->pending_objects = g_ptr_array_new_with_free_func(message_unref);
        im->resume_pages = g_ptr_array_new_with_free_func(message_unref);
        im->resume_users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) resumed_user_free);
        im->resume_reads = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
        return 0;
}

void importer_resync_free(Importer *im) {
        importer_resync_reset(im);
        g_clear_pointer(&im->held_events, g_ptr_array_unref);
        g_clear_pointer(&im->pending_objects, g_ptr_array_unref);
        g_clear_pointer(&im->resume_pages, g_ptr_array_unref);
        g_clear_pointer(&im->resume_users, g_hash_table_unref);
        g_clear_pointer(&im->resume_reads, g_hash_table_unref);
        g_free(im->history_id);
}
