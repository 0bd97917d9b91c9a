/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The importer: owns org.outpost.Outpost1 on the local bus and serves it
 * from an upstream bridge's listener (DESIGN.md §5). This file keeps the
 * upstream link: connecting with jittered exponential backoff, the
 * resynchronisation after each connect (snapshot, PropertiesChanged for
 * what differs, replay of missed events or Gap, presence holds), the
 * heartbeat that notices a dead link, and the Bridge object that tells
 * local clients all of it (rules 5 and 6 of DESIGN.md §4). */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "bus-gvariant.h"
#include "importer.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

static void start_connect(Importer *im);
static void sync_step_snapshot(Importer *im);
static void sync_step_replay(Importer *im);
static void sync_step_holds(Importer *im);

/* The Bridge object */

const char *importer_since_string(Importer *im, char *buf, size_t size) {
        time_t t = (time_t) (im->since / G_USEC_PER_SEC);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

static uint32_t hops(Importer *im) {
        return im->upstream_is_bridge ? im->upstream_hops + 1 : 1;
}

/* State and LastError end to end: our link, then the upstream's. */
static void compute_state(Importer *im, const char **ret_state, char **ret_error) {
        switch (im->phase) {
        case PHASE_STOPPED:
                *ret_state = "disconnected";
                *ret_error = g_strdup(im->last_error ?: "");
                return;
        case PHASE_UP:
                if (im->upstream_is_bridge && g_strcmp0(im->upstream_state, "connected") != 0) {
                        *ret_state = im->upstream_state ?: "connecting";
                        *ret_error = g_strdup_printf("via %s: %s", im->bridge->config.upstream,
                                                     im->upstream_last_error ?: "");
                        return;
                }
                *ret_state = "connected";
                *ret_error = g_strdup("");
                return;
        default:
                *ret_state = "connecting";
                *ret_error = g_strdup(im->last_error ?: "");
                return;
        }
}

/* Recompute the Bridge properties and announce what changed in ONE
 * PropertiesChanged. */
int importer_emit_bridge_changes(Importer *im) {
        const char *changed[6];
        size_t n = 0;
        const char *state;
        g_autofree char *error = NULL;
        uint32_t h = hops(im);

        compute_state(im, &state, &error);
        if (g_strcmp0(state, im->state) != 0) {
                g_free(im->state);
                im->state = g_strdup(state);
                im->since = g_get_real_time();
                changed[n++] = "State";
                changed[n++] = "Since";
                log_info("Bridge state: %s%s%s", state, error[0] ? ": " : "", error);
        }
        if (g_strcmp0(error, im->bridge_last_error) != 0) {
                g_free(im->bridge_last_error);
                im->bridge_last_error = g_steal_pointer(&error);
                changed[n++] = "LastError";
        }
        if (h != im->hops) {
                im->hops = h;
                changed[n++] = "Hops";
        }
        if (im->reconnects != im->announced_reconnects) {
                im->announced_reconnects = im->reconnects;
                changed[n++] = "Reconnects";
        }
        changed[n] = NULL;
        if (n == 0 || !im->local)
                return 0;
        return sd_bus_emit_properties_changed_strv(im->local, BRIDGE_PATH, BRIDGE_IFACE, (char **) changed);
}

static int property_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Importer *im = userdata;

        if (strcmp(property, "State") == 0)
                return sd_bus_message_append(reply, "s", im->state);
        if (strcmp(property, "Upstream") == 0)
                return sd_bus_message_append(reply, "s", im->bridge->config.upstream);
        return sd_bus_message_append(reply, "s", im->bridge_last_error ?: "");
}

static int method_reconnect(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Importer *im = userdata;
        int r;

        r = polkit_authorize(im->polkit, m, POLKIT_ACTION_MANAGE_BRIDGE, error);
        if (r != 0)
                return r;
        log_info("Reconnect requested by %s", sd_bus_message_get_sender(m) ?: "?");
        if (im->phase == PHASE_LINKING || im->phase == PHASE_SYNCING || im->phase == PHASE_UP)
                importer_link_failed(im, "reconnect requested");
        im->attempt = 0;
        im->reconnect_timer = sd_event_source_disable_unref(im->reconnect_timer);
        start_connect(im);
        return sd_bus_reply_method_return(m, "");
}

static const sd_bus_vtable bridge_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("State", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Upstream", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Since", "x", NULL, offsetof(Importer, since), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Reconnects", "u", NULL, offsetof(Importer, reconnects), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Hops", "u", NULL, offsetof(Importer, hops), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Reconnect", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_reconnect,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

/* The link */

static void teardown_link(Importer *im) {
        im->heartbeat_timer = sd_event_source_disable_unref(im->heartbeat_timer);
        im->heartbeat_slot = sd_bus_slot_unref(im->heartbeat_slot);
        importer_relay_fail_all(im);
        bus_close_unref_later(im->bridge, TAKE_PTR(im->upstream));
        im->link = link_free(im->link);
        g_ptr_array_set_size(im->held_events, 0);
        im->snapshot_taken = false;
        im->sync_pending = 0;
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Importer *im = userdata;

        im->reconnect_timer = sd_event_source_disable_unref(im->reconnect_timer);
        start_connect(im);
        return 0;
}

/* min·2^attempt, at most max, then ±25 % so that many sites do not all
 * come back at the same instant. */
static uint64_t backoff_usec(Importer *im) {
        const BridgeConfig *c = &im->bridge->config;
        uint64_t ms = c->reconnect_min_ms;

        for (unsigned i = 0; i < im->attempt && ms < c->reconnect_max_ms; i++)
                ms *= 2;
        ms = MIN(ms, (uint64_t) c->reconnect_max_ms);
        ms = ms * (750 + g_random_int_range(0, 501)) / 1000;
        return ms * 1000;
}

void importer_link_failed(Importer *im, const char *reason) {
        uint64_t delay;

        if (im->phase == PHASE_WAITING || im->phase == PHASE_STOPPED)
                return;
        log_warning("Upstream %s: %s", im->bridge->config.upstream, reason);
        g_free(im->last_error);
        im->last_error = g_strdup_printf("%s: %s", im->bridge->config.upstream, reason);
        im->phase = PHASE_WAITING;
        /* State first: clients hear of the outage before the calls in
         * flight fail, and those errors then say what State says. */
        (void) importer_emit_bridge_changes(im);
        teardown_link(im);

        delay = backoff_usec(im);
        im->attempt++;
        im->reconnect_timer = sd_event_source_disable_unref(im->reconnect_timer);
        if (sd_event_add_time_relative(im->bridge->event, &im->reconnect_timer, CLOCK_MONOTONIC, delay, 0,
                                       on_reconnect_timer, im) < 0)
                log_error("Cannot schedule a reconnect");
}

/* A cycle never heals by retrying: say so and stop until Reconnect(). */
static void link_refused(Importer *im, const char *reason) {
        log_error("Upstream %s: %s", im->bridge->config.upstream, reason);
        g_free(im->last_error);
        im->last_error = g_strdup_printf("%s: %s", im->bridge->config.upstream, reason);
        im->phase = PHASE_STOPPED;
        (void) importer_emit_bridge_changes(im);
        teardown_link(im);
}

static bool link_recently_active(Importer *im) {
        struct timespec ts;
        uint64_t now, last = link_get_last_receive(im->link);

        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        return last != 0 && now - last < (uint64_t) im->bridge->config.heartbeat_timeout_ms * 1000;
}

static int on_heartbeat_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (sd_bus_message_get_bus(m) != im->upstream)
                return 0;

        im->heartbeat_slot = sd_bus_slot_unref(im->heartbeat_slot);
        if (e && sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) && link_recently_active(im))
                /* The answer waits behind a large message still coming in:
                 * the link is busy, not dead. Ask again next time. */
                return 0;
        if (e) {
                g_autofree char *reason = g_strdup_printf("no answer to a heartbeat: %s", e->message);
                importer_link_failed(im, reason);
        }
        return 0;
}

/* The listener answers the Ping itself: the heartbeat watches the link.
 * The service behind it leaving the bus ends the link from the far side. */
static int on_heartbeat_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Importer *im = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *ping = NULL;
        int r;

        (void) sd_event_source_set_time_relative(s, (uint64_t) im->bridge->config.heartbeat_ms * 1000);
        if (im->heartbeat_slot || !im->upstream)
                return 0;
        r = sd_bus_message_new_method_call(im->upstream, &ping, NULL, OUTPOST_ROOT_PATH, BRIDGE_LINK_IFACE, "Ping");
        if (r >= 0)
                r = sd_bus_call_async(im->upstream, &im->heartbeat_slot, ping, on_heartbeat_reply, im,
                                      (uint64_t) im->bridge->config.heartbeat_timeout_ms * 1000);
        if (r < 0)
                importer_link_failed(im, "cannot send a heartbeat");
        return 0;
}

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
                            im->bridge->config.upstream, after, resumed);
                return;
        }
        if (!im->have_seq || resumed <= im->last_seq)
                return;
        (void) emit_gap(im, im->last_seq, resumed);
}

/* The signals that carry the history: each event, as Event or, for a
 * messages/ topic, as the Messages manager's MessageReceived, and Gap.
 * They keep one order and are relayed once each, by seq. */
static bool is_history_signal(sd_bus_message *m) {
        return sd_bus_message_is_signal(m, EVENTS_IFACE, "Event") ||
               sd_bus_message_is_signal(m, MESSAGES_IFACE, "MessageReceived") ||
               sd_bus_message_is_signal(m, EVENTS_IFACE, "Gap");
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

static void on_upstream_bridge_changed(Importer *im, GVariant *changed) {
        const char *s;
        uint32_t u;

        im->upstream_is_bridge = true;
        if (g_variant_lookup(changed, "State", "&s", &s)) {
                g_free(im->upstream_state);
                im->upstream_state = g_strdup(s);
        }
        if (g_variant_lookup(changed, "LastError", "&s", &s)) {
                g_free(im->upstream_last_error);
                im->upstream_last_error = g_strdup(s);
        }
        if (g_variant_lookup(changed, "Hops", "u", &u))
                im->upstream_hops = u;
}

static void on_properties_changed(Importer *im, sd_bus_message *m) {
        g_autoptr(GVariant) changed = NULL;
        const char *iface;

        if (sd_bus_message_read(m, "s", &iface) < 0 || bus_message_read_gvariant(m, &changed) < 0)
                return;
        if (strcmp(sd_bus_message_get_path(m), BRIDGE_PATH) == 0) {
                /* The upstream bridge's state is folded into ours. */
                on_upstream_bridge_changed(im, changed);
                (void) importer_emit_bridge_changes(im);
                return;
        }
        /* Before the snapshot, the snapshot is newer than this. */
        if (!im->snapshot_taken)
                return;
        cache_update(im->cache, sd_bus_message_get_path(m), iface, changed);
        (void) bus_forward_signal(im->local, m);
}

/* InterfacesAdded/InterfacesRemoved of an upstream object (an online
 * user): into the cache, then to local clients, in their place among the
 * other signals (DESIGN.md §4 rules 1 and 4). */
static void on_interfaces_changed(Importer *im, sd_bus_message *m, bool added) {
        g_autoptr(GVariant) interfaces = NULL;
        g_auto(GStrv) names = NULL;
        const char *path;
        int r;

        /* Before the snapshot, the snapshot is newer than this. */
        if (!im->snapshot_taken)
                return;
        r = sd_bus_message_read(m, "o", &path);
        if (r >= 0)
                r = added ? bus_message_read_gvariant(m, &interfaces) : sd_bus_message_read_strv(m, &names);
        if (r < 0 || (added && !g_variant_is_of_type(interfaces, G_VARIANT_TYPE("a{sa{sv}}")))) {
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

/* Signals the upstream pushes, in the order it sent them. */
static int on_upstream_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;

        if (sd_bus_message_get_bus(m) != im->upstream)
                return 1;       /* the connection of a link already gone */
        if (!sd_bus_message_is_signal(m, NULL, NULL))
                return 0;
        if (!object_path_in_tree(sd_bus_message_get_path(m)))
                return 1;
        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged")) {
                on_properties_changed(im, m);
                return 1;
        }
        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded") ||
            sd_bus_message_is_signal(m, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved")) {
                on_interfaces_changed(im, m, strcmp(sd_bus_message_get_member(m), "InterfacesAdded") == 0);
                return 1;
        }
        /* During a resync, live events (and an upstream bridge's gaps) wait
         * until the missed ones are replayed. */
        if (is_history_signal(m)) {
                if (im->phase == PHASE_SYNCING)
                        g_ptr_array_add(im->held_events, sd_bus_message_ref(m));
                else
                        forward_history_signal(im, m);
                return 1;
        }
        (void) bus_forward_signal(im->local, m);
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
        if (r >= 0)
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
                link_refused(im, "refused: the upstream imports from this bridge (a cycle)");
                return 0;
        }
        g_strfreev(im->chain);
        im->chain = g_steal_pointer(&chain);
        sync_step_snapshot(im);
        return 0;
}

static void emit_cached_change(const char *path, const char *interface, GVariant *properties, void *userdata) {
        Importer *im = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        /* Its properties never change: its InterfacesAdded said all. */
        if (strcmp(interface, ONLINE_USER_IFACE) == 0)
                return;
        r = sd_bus_message_new_signal(im->local, &m, path, "org.freedesktop.DBus.Properties", "PropertiesChanged");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", interface);
        if (r >= 0)
                r = bus_message_append_gvariant(m, properties);
        if (r >= 0)
                r = sd_bus_message_append(m, "as", 0);
        if (r >= 0)
                r = sd_bus_send(im->local, m, NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot announce what changed on %s", path);
}

/* The objects that came and went during an outage, announced as the
 * upstream would have (InterfacesAdded/InterfacesRemoved on the root). */
static void emit_interfaces(Importer *im, const char *path, bool added, GVariant *interfaces,
                            const char *const *names) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(im->local, &m, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.ObjectManager",
                                      added ? "InterfacesAdded" : "InterfacesRemoved");
        if (r < 0)
                goto fail;
        r = sd_bus_message_append(m, "o", path);
        if (r < 0)
                goto fail;
        r = added ? bus_message_append_gvariant(m, interfaces) : sd_bus_message_append_strv(m, (char **) names);
        if (r < 0)
                goto fail;
        r = sd_bus_send(im->local, m, NULL);
        if (r >= 0)
                return;
fail:
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
                on_upstream_bridge_changed(im, props);
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

        if (sync_reply_failed(im, reply, "reading the registry"))
                return 0;
        if (bus_message_read_vardict(reply, &props) < 0) {
                importer_link_failed(im, "bad registry properties");
                return 0;
        }
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

/* Relay one page of FetchSince as Event signals; returns whether more. */
static int relay_page(Importer *im, sd_bus_message *reply, bool *ret_more) {
        uint64_t next_after;
        int more, r;

        r = sd_bus_message_enter_container(reply, 'a', "(tsxa{sv})");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "tsxa{sv}")) > 0) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *signal = NULL;
                const char *topic;
                uint64_t seq;
                int64_t time;

                r = sd_bus_message_read(reply, "tsx", &seq, &topic, &time);
                /* Sent as outpostd sends it: a message only to those the
                 * bus policy lets receive it. */
                if (r >= 0 && topic_is_message(topic))
                        r = sd_bus_message_new_signal(im->local, &signal, MESSAGES_PATH, MESSAGES_IFACE,
                                                      "MessageReceived");
                else if (r >= 0)
                        r = sd_bus_message_new_signal(im->local, &signal, EVENTS_PATH, EVENTS_IFACE, "Event");
                if (r >= 0)
                        r = sd_bus_message_append(signal, "tsx", seq, topic, time);
                if (r >= 0)
                        r = sd_bus_message_copy(signal, reply, false);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0 && seq > im->last_seq) {
                        set_position(im, seq);
                        r = sd_bus_send(im->local, signal, NULL);
                }
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "tb", &next_after, &more);
        if (r < 0)
                return r;
        if (next_after > im->last_seq)
                set_position(im, next_after);
        *ret_more = more;
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
                            im->bridge->config.upstream, history, last, im->last_seq, im->history_id);
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
                log_info("Upstream %s: %s", im->bridge->config.upstream, e->message);
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

static void fetch_page(Importer *im) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        r = sd_bus_message_new_method_call(im->upstream, &call, NULL, EVENTS_PATH, EVENTS_IFACE, "FetchSince");
        if (r >= 0)
                r = sd_bus_message_append(call, "st", im->history_id, im->last_seq);
        if (r >= 0)
                r = sd_bus_message_append(call, "as", 0);
        if (r >= 0)
                r = sd_bus_message_append(call, "u", 1000);
        if (r >= 0)
                r = sd_bus_call_async(im->upstream, NULL, call, on_replay_page, im, 0);
        if (r < 0)
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

static int on_sync_done(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;

        /* REPLY: the last re-asserted hold's, or NULL when there were none. */
        if (im->phase != PHASE_SYNCING || (reply && sd_bus_message_get_bus(reply) != im->upstream))
                return 0;
        /* Live events that came meanwhile, after the replayed ones, once. */
        for (guint i = 0; i < im->held_events->len; i++)
                forward_history_signal(im, im->held_events->pdata[i]);
        g_ptr_array_set_size(im->held_events, 0);

        im->phase = PHASE_UP;
        im->attempt = 0;
        if (im->was_up)
                im->reconnects++;
        else
                (void) sd_notify(false, "READY=1");     /* the first snapshot is served */
        im->was_up = true;
        g_clear_pointer(&im->last_error, g_free);
        (void) sd_event_add_time_relative(im->bridge->event, &im->heartbeat_timer, CLOCK_MONOTONIC,
                                          (uint64_t) im->bridge->config.heartbeat_ms * 1000, 0,
                                          on_heartbeat_timer, im);
        (void) sd_event_source_set_enabled(im->heartbeat_timer, SD_EVENT_ON);
        (void) importer_emit_bridge_changes(im);
        return 0;
}

static void sync_step_holds(Importer *im) {
        if (importer_reassert_holds(im, on_sync_done, im) < 0)
                importer_link_failed(im, "cannot re-assert presence holds");
}

static int setup_upstream_bus(Importer *im, int fd) {
        int r;

        r = sd_bus_new(&im->upstream);
        if (r < 0)
                return r;
        r = sd_bus_set_fd(im->upstream, fd, fd);
        if (r >= 0)
                r = sd_bus_set_anonymous(im->upstream, true);
        if (r >= 0)
                r = sd_bus_negotiate_fds(im->upstream, false);
        if (r >= 0)
                r = sd_bus_add_filter(im->upstream, NULL, on_upstream_message, im);
        if (r >= 0)
                r = sd_bus_start(im->upstream);
        if (r >= 0)
                r = sd_bus_attach_event(im->upstream, im->bridge->event, SD_EVENT_PRIORITY_NORMAL);
        return r;
}

static void on_link_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Importer *im = userdata;
        const char *own[] = { im->bridge->instance_id, NULL };
        int r;

        if (link != im->link || im->phase != PHASE_LINKING) {
                /* Not the link this importer is waiting for. */
                if (fd >= 0)
                        close(fd);
                log_warning("Upstream %s: ignoring a link that is not the current one", im->bridge->config.upstream);
                return;
        }
        if (fd < 0) {
                im->link = NULL;
                importer_link_failed(im, error ?: "cannot connect");
                return;
        }
        log_info("Upstream %s: link up (%s); resynchronising", im->bridge->config.upstream, peer);
        r = setup_upstream_bus(im, fd);
        if (r < 0) {
                importer_link_failed(im, "cannot start D-Bus on the link");
                return;
        }
        im->phase = PHASE_SYNCING;
        sync_call(im, OUTPOST_ROOT_PATH, BRIDGE_LINK_IFACE, "Hello", on_hello, "as", 1, own[0]);
}

static void on_link_closed(Link *link, const char *reason, void *userdata) {
        Importer *im = userdata;

        if (link != im->link)
                return;
        im->link = NULL;        /* it frees itself */
        importer_link_failed(im, reason);
}

static void start_connect(Importer *im) {
        int r;

        im->phase = PHASE_LINKING;
        (void) importer_emit_bridge_changes(im);
        r = link_connect(im->bridge->event, &im->address, &im->bridge->link_config, on_link_ready,
                         on_link_closed, im, &im->link);
        if (r < 0) {
                im->link = NULL;
                importer_link_failed(im, strerror(-r));
        }
}

char **importer_get_chain(Importer *im) {
        return im->chain;
}

static int on_name_acquired(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        uint32_t result = 0;

        if (e || sd_bus_message_read(m, "u", &result) < 0 || (result != 1 && result != 4)) {
                log_error("Cannot own %s on the local bus: %s", OUTPOST_BUS_NAME,
                          e ? e->message : "another program owns it");
                return sd_event_exit(im->bridge->event, -EEXIST);
        }
        log_info("Serving %s on the local bus, imported from %s", OUTPOST_BUS_NAME, im->bridge->config.upstream);
        return 0;
}

static void message_unref(void *m) {
        sd_bus_message_unref(m);
}

int importer_new(Bridge *b, Importer **ret) {
        g_autofree char *error = NULL;
        Importer *im = g_new0(Importer, 1);
        int r;

        im->bridge = b;
        if (link_address_parse(b->config.upstream, &im->address, &error) < 0) {
                log_error("Bad --upstream address '%s': %s", b->config.upstream, error);
                importer_free(im);
                return -EINVAL;
        }
        im->cache = cache_new();
        im->held_events = g_ptr_array_new_with_free_func(message_unref);
        im->state = g_strdup("connecting");
        im->since = g_get_real_time();
        im->hops = 1;
        im->phase = PHASE_WAITING;

        r = bridge_open_local_bus(b, &im->local);
        if (r >= 0)
                r = sd_bus_attach_event(im->local, b->event, SD_EVENT_PRIORITY_NORMAL);
        /* Without its local bus an importer has nothing left to do. */
        if (r >= 0)
                r = bridge_watch_local_bus(b, im->local);
        if (r >= 0)
                r = sd_bus_add_object_vtable(im->local, NULL, BRIDGE_PATH, BRIDGE_IFACE, bridge_vtable, im);
        if (r >= 0)
                r = importer_relay_setup(im);
        /* Last: a client that sees the name can use everything. */
        if (r >= 0)
                r = sd_bus_request_name_async(im->local, NULL, OUTPOST_BUS_NAME, 0, on_name_acquired, im);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the importer on the local bus");
                importer_free(im);
                return r;
        }
        start_connect(im);
        *ret = im;
        return 0;
}

Importer *importer_free(Importer *im) {
        if (!im)
                return NULL;
        teardown_link(im);
        im->reconnect_timer = sd_event_source_disable_unref(im->reconnect_timer);
        importer_holders_free(im);
        if (im->local)
                sd_bus_flush_close_unref(im->local);
        link_address_clear(&im->address);
        cache_free(im->cache);
        g_clear_pointer(&im->held_events, g_ptr_array_unref);
        g_strfreev(im->chain);
        g_free(im->state);
        g_free(im->last_error);
        g_free(im->bridge_last_error);
        g_free(im->upstream_state);
        g_free(im->upstream_last_error);
        g_free(im->history_id);
        g_free(im);
        return NULL;
}
