/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The importer: owns org.outpost.Outpost1 on the local bus and serves it
 * from an upstream bridge's listener (DESIGN.md §5). This file keeps the
 * upstream link: connecting with jittered exponential backoff (each
 * connect is followed by the resynchronisation of importer-resync.c), the
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

static void start_connect(Importer *im);

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
                        *ret_error = g_strdup_printf("via %s: %s", importer_upstream(im),
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
                return sd_bus_message_append(reply, "s", importer_upstream(im));
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
        importer_reassert_cancel(im);
        importer_resync_reset(im);
        bus_close_unref_later(im->bridge, TAKE_PTR(im->upstream));
        im->link = link_free(im->link);
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

/* A failed link moves to the next upstream, at once; returns false when
 * that is the first again (or the only one): a whole round failed, and the
 * backoff applies. */
static bool next_upstream(Importer *im) {
        if (im->n_upstreams <= 1)
                return false;
        im->current = (im->current + 1) % im->n_upstreams;
        log_info("Trying upstream %s next (%u of %u)", importer_upstream(im), im->current + 1, im->n_upstreams);
        return im->current != 0;
}

void importer_link_failed(Importer *im, const char *reason) {
        uint64_t delay;

        if (im->phase == PHASE_WAITING || im->phase == PHASE_STOPPED)
                return;
        log_warning("Upstream %s: %s", importer_upstream(im), reason);
        g_free(im->last_error);
        im->last_error = g_strdup_printf("%s: %s", importer_upstream(im), reason);
        im->phase = PHASE_WAITING;
        /* State first: clients hear of the outage before the calls in
         * flight fail, and those errors then say what State says. */
        (void) importer_emit_bridge_changes(im);
        teardown_link(im);

        if (next_upstream(im))
                delay = (uint64_t) im->bridge->config.reconnect_min_ms * 1000;
        else {
                delay = backoff_usec(im);
                im->attempt++;
        }
        im->reconnect_timer = sd_event_source_disable_unref(im->reconnect_timer);
        if (sd_event_add_time_relative(im->bridge->event, &im->reconnect_timer, CLOCK_MONOTONIC, delay, 0,
                                       on_reconnect_timer, im) < 0)
                log_error("Cannot schedule a reconnect");
}

void importer_link_refused(Importer *im, const char *reason) {
        log_error("Upstream %s: %s", importer_upstream(im), reason);
        g_free(im->last_error);
        im->last_error = g_strdup_printf("%s: %s", importer_upstream(im), reason);
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

/* The listener answers the Ping itself, with an error when the service
 * behind it has stopped answering (listener-health.c): the heartbeat
 * watches the link and the service. The service leaving the bus ends the
 * link from the far side. */
static int on_heartbeat_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Importer *im = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *ping = NULL;
        int r;

        (void) sd_event_source_set_time_relative(s, (uint64_t) im->bridge->config.heartbeat_ms * 1000);
        if (im->heartbeat_slot || !im->upstream)
                return 0;
        r = sd_bus_message_new_method_call(im->upstream, &ping, NULL, OUTPOST_ROOT_PATH, BRIDGE_LINK_IFACE, "Ping");
        if (r < 0) {
                importer_link_failed(im, "cannot send a heartbeat");
                return 0;
        }
        r = sd_bus_call_async(im->upstream, &im->heartbeat_slot, ping, on_heartbeat_reply, im,
                              (uint64_t) im->bridge->config.heartbeat_timeout_ms * 1000);
        if (r < 0)
                importer_link_failed(im, "cannot send a heartbeat");
        return 0;
}

void importer_upstream_bridge_changed(Importer *im, GVariant *changed) {
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

void importer_sync_done(Importer *im) {
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
}

static int setup_upstream_bus(Importer *im, int fd) {
        int r;

        r = sd_bus_new(&im->upstream);
        if (r < 0)
                return r;
        r = sd_bus_set_fd(im->upstream, fd, fd);
        if (r < 0)
                return r;
        r = sd_bus_set_anonymous(im->upstream, true);
        if (r < 0)
                return r;
        r = sd_bus_negotiate_fds(im->upstream, false);
        if (r < 0)
                return r;
        r = sd_bus_add_filter(im->upstream, NULL, importer_on_upstream_message, im);
        if (r < 0)
                return r;
        r = sd_bus_start(im->upstream);
        if (r < 0)
                return r;
        return sd_bus_attach_event(im->upstream, im->bridge->event, SD_EVENT_PRIORITY_NORMAL);
}

static void on_link_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Importer *im = userdata;
        int r;

        if (link != im->link || im->phase != PHASE_LINKING) {
                /* Not the link this importer is waiting for. */
                if (fd >= 0)
                        close(fd);
                log_warning("Upstream %s: ignoring a link that is not the current one", importer_upstream(im));
                return;
        }
        if (fd < 0) {
                im->link = NULL;
                importer_link_failed(im, error ?: "cannot connect");
                return;
        }
        log_info("Upstream %s: link up (%s); resynchronising", importer_upstream(im), peer);
        r = setup_upstream_bus(im, fd);
        if (r < 0) {
                importer_link_failed(im, "cannot start D-Bus on the link");
                return;
        }
        im->phase = PHASE_SYNCING;
        importer_resync_start(im);
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
        r = link_connect(im->bridge->event, &im->addresses[im->current], &im->bridge->link_config, on_link_ready,
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
        log_info("Serving %s on the local bus, imported from %s", OUTPOST_BUS_NAME, importer_upstream(im));
        return 0;
}

static int importer_setup_local(Importer *im) {
        Bridge *b = im->bridge;
        int r;

        /* Without its local bus an importer has nothing left to do. */
        r = bridge_connect_local_bus(b, &im->local);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(im->local, NULL, BRIDGE_PATH, BRIDGE_IFACE, bridge_vtable, im);
        if (r < 0)
                return r;
        r = importer_resync_setup(im);
        if (r < 0)
                return r;
        r = importer_holds_setup(im);
        if (r < 0)
                return r;
        r = importer_relay_setup(im);
        if (r < 0)
                return r;
        /* Last: a client that sees the name can use everything. */
        return sd_bus_request_name_async(im->local, NULL, OUTPOST_BUS_NAME, 0, on_name_acquired, im);
}

static int parse_upstreams(Importer *im, const char *list) {
        im->upstreams = link_address_list_split(list);
        im->n_upstreams = g_strv_length(im->upstreams);
        if (im->n_upstreams == 0) {
                log_error("No upstream address in '%s'", list);
                return -EINVAL;
        }
        im->addresses = g_new0(LinkAddress, im->n_upstreams);
        for (unsigned i = 0; i < im->n_upstreams; i++) {
                g_autofree char *error = NULL;

                if (link_address_parse(im->upstreams[i], &im->addresses[i], &error) < 0) {
                        log_error("Bad --upstream address '%s': %s", im->upstreams[i], error);
                        return -EINVAL;
                }
        }
        return 0;
}

int importer_new(Bridge *b, Importer **ret) {
        Importer *im = g_new0(Importer, 1);
        int r;

        im->bridge = b;
        r = parse_upstreams(im, b->config.upstream);
        if (r < 0) {
                importer_free(im);
                return r;
        }
        im->cache = cache_new();
        im->state = g_strdup("connecting");
        im->since = g_get_real_time();
        im->hops = 1;
        im->phase = PHASE_WAITING;

        r = importer_setup_local(im);
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
        importer_holds_free(im);
        importer_relay_free(im);
        if (im->local)
                sd_bus_flush_close_unref(im->local);
        for (unsigned i = 0; im->addresses && i < im->n_upstreams; i++)
                link_address_clear(&im->addresses[i]);
        g_free(im->addresses);
        g_strfreev(im->upstreams);
        importer_resync_free(im);
        cache_free(im->cache);
        g_strfreev(im->chain);
        g_free(im->state);
        g_free(im->last_error);
        g_free(im->bridge_last_error);
        g_free(im->upstream_state);
        g_free(im->upstream_last_error);
        g_free(im);
        return NULL;
}
