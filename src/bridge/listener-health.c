/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whether the service behind the listener still answers. A service that is
 * alive on the bus but stuck (stopped, deadlocked, swapped out) keeps its
 * name, so nothing closes the peers' links; their calls would wait for the
 * bus's 25 s timeout while every State along the chain says "connected".
 *
 * So while calls of the peers wait for the service, the listener asks the
 * service itself, on a connection of its own (the pool's may be full with
 * the stock 128 pending replies), with org.freedesktop.DBus.Peer.Ping every
 * half heartbeat. A peer's heartbeat (BridgeLink1.Ping) is answered at once
 * from what the listener knows: an error once the service has answered
 * nothing — neither a ping of ours nor any peer's call — for the heartbeat
 * timeout. A service that is only busy keeps answering calls, and is not
 * taken for a stuck one. One ping per interval, however many peers, and
 * none while nothing waits: an idle service is left asleep, and a stuck
 * one that nobody calls harms nobody until someone does. The importer fails its link on that error, its
 * callers get Disconnected, and its State leaves "connected". */
#include "config.h"

#include <errno.h>

#include "listener.h"
#include "log.h"
#include "macro.h"

static uint64_t now_usec(Listener *l) {
        uint64_t now = 0;

        (void) sd_event_now(l->bridge->event, CLOCK_MONOTONIC, &now);
        return now;
}

static int on_service_pong(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Listener *l = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        l->health_ping = sd_bus_slot_unref(l->health_ping);
        /* No reply in the bus's own timeout: still stuck, since the first
         * unanswered ping. Any other answer comes from the service or says
         * it is gone (which closes the peers anyway, listener-pool.c). */
        if (e && sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY))
                return 0;
        listener_service_answered(l);
        return 0;
}

void listener_service_answered(Listener *l) {
        if (l->unanswered_since != 0 && !listener_service_answers(l))
                log_notice("%s answers again on the local bus", OUTPOST_BUS_NAME);
        /* A ping still waiting counts from now. */
        l->unanswered_since = l->health_ping ? now_usec(l) : 0;
}

static uint64_t ping_interval(Listener *l) {
        return MAX((uint64_t) l->bridge->config.heartbeat_ms * 1000 / 2, 10 * 1000);
}

static bool calls_pending(Listener *l) {
        for (guint i = 0; i < l->pools->len; i++) {
                Pool *pool = l->pools->pdata[i];

                if (pool->n_pending > 0)
                        return true;
        }
        return false;
}

static int on_health_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Listener *l = userdata;
        bool answered = listener_service_answers(l);
        int r;

        if (!l->health_ping && !calls_pending(l)) {
                l->unanswered_since = 0;
                return 0;       /* nothing waits: sleep until a call goes out */
        }
        (void) sd_event_source_set_time_relative(s, ping_interval(l));
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (!l->health_ping) {
                r = sd_bus_call_method_async(l->health_bus, &l->health_ping, OUTPOST_BUS_NAME, OUTPOST_ROOT_PATH,
                                             "org.freedesktop.DBus.Peer", "Ping", on_service_pong, l, NULL);
                if (r < 0)
                        log_debug("Cannot ping %s: %s", OUTPOST_BUS_NAME, strerror(-r));
                else if (l->unanswered_since == 0)
                        l->unanswered_since = now_usec(l);
        }
        if (answered && !listener_service_answers(l))
                log_warning("%s has not answered on the local bus for %u ms: telling the peers",
                            OUTPOST_BUS_NAME, l->bridge->config.heartbeat_timeout_ms);
        return 0;
}

void listener_health_watch(Listener *l) {
        int enabled = SD_EVENT_OFF;

        if (!l->health_timer || sd_event_source_get_enabled(l->health_timer, &enabled) < 0 || enabled != SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_time_relative(l->health_timer, ping_interval(l));
        (void) sd_event_source_set_enabled(l->health_timer, SD_EVENT_ONESHOT);
}

bool listener_service_answers(Listener *l) {
        uint64_t limit = (uint64_t) l->bridge->config.heartbeat_timeout_ms * 1000;

        return l->unanswered_since == 0 || now_usec(l) - l->unanswered_since <= limit;
}

int listener_health_start(Listener *l) {
        Bridge *b = l->bridge;
        int r;

        r = bridge_connect_local_bus(b, &l->health_bus);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(b->event, &l->health_timer, CLOCK_MONOTONIC, ping_interval(l), 0,
                                       on_health_timer, l);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(l->health_timer, SD_EVENT_OFF);
}

void listener_health_stop(Listener *l) {
        l->health_timer = sd_event_source_disable_unref(l->health_timer);
        l->health_ping = sd_bus_slot_unref(l->health_ping);
        if (l->health_bus)
                l->health_bus = sd_bus_flush_close_unref(l->health_bus);
}
