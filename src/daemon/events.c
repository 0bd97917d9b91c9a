/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Events manager: a bounded, persistent history of events with global
 * sequence numbers, and the commit path through which every manager
 * publishes (DESIGN.md §3, Events; §4 rule 3). This file holds what the
 * history accepts and delivers, and its retention; events-dbus.c is its
 * face on the bus. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "events.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

#define RETENTION_BATCH         2000            /* rows deleted per round */
/* The soonest a round follows what made it due, so that a busy history
 * is trimmed about once a second, not once per commit. */
#define RETENTION_DELAY_USEC    (1000 * 1000)

static bool topic_is_reserved(const char *topic) {
        static const char *const reserved[] = { "users", "presence", "messages" };
        size_t first = strcspn(topic, "/");

        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (strlen(reserved[i]) == first && strncmp(topic, reserved[i], first) == 0)
                        return true;
        return false;
}

int events_check_publish(Daemon *d, const char *topic, GVariant *data, sd_bus_error *error) {
        if (!topic_is_valid(topic)) {
                g_autofree char *q = quote_for_error(topic, 80);
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid topic '%s': 1-%d characters of [A-Za-z0-9_.-] in non-empty '/'-separated segments",
                                         q, TOPIC_MAX);
        }
        if (topic_is_reserved(topic))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Topic '%s' is reserved to the daemon (users, presence and messages/...)", topic);
        return bus_check_event_data(data, d->config.max_event_data_bytes, error);
}

bool event_filter_is_empty(const EventFilter *f) {
        return !f->prefixes[0] && !f->hide_messages;
}

bool event_filter_match(const char *topic, void *userdata) {
        const EventFilter *f = userdata;

        if (f->hide_messages && topic_is_message(topic))
                return false;
        if (!f->prefixes[0])
                return true;
        for (char **p = f->prefixes; *p; p++)
                if (g_str_has_prefix(topic, *p))
                        return true;
        return false;
}

int events_check_prefixes(char **prefixes, size_t n, unsigned max, sd_bus_error *error) {
        if (n > max)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "%zu topic prefixes given, at most %u are allowed", n, max);
        for (size_t i = 0; i < n; i++) {
                const char *p = prefixes[i];
                size_t len = strlen(p);

                if (len == 0 || len > TOPIC_MAX || strspn(p, "abcdefghijklmnopqrstuvwxyz"
                                                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") != len) {
                        g_autofree char *q = quote_for_error(p, 80);
                        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                                 "Invalid topic prefix '%s': 1-%d characters of [A-Za-z0-9_./-]",
                                                 q, TOPIC_MAX);
                }
        }
        return 0;
}

/* HistoryReset and HistoryTruncated, exactly as DESIGN.md words them. */
int events_check_history(Daemon *d, const char *history_id, uint64_t after, sd_bus_error *error) {
        uint64_t first = store_event_first_seq(d->store), last = store_event_last_seq(d->store);

        if (history_id[0] && strcmp(history_id, store_history_id(d->store)) != 0) {
                g_autofree char *q = quote_for_error(history_id, 80);
                return sd_bus_error_setf(error, BUS_ERROR_HISTORY_RESET,
                                         "History '%s' is not this server's history '%s'; rebuild from a snapshot and resume from LastSeq %" G_GUINT64_FORMAT,
                                         q, store_history_id(d->store), last);
        }
        if (after > last)
                return sd_bus_error_setf(error, BUS_ERROR_HISTORY_RESET,
                                         "after_seq %" G_GUINT64_FORMAT " is beyond LastSeq %" G_GUINT64_FORMAT
                                         " of history '%s'; rebuild from a snapshot",
                                         after, last, store_history_id(d->store));
        if (after + 1 < first)
                return sd_bus_error_setf(error, BUS_ERROR_HISTORY_TRUNCATED,
                                         "Events after %" G_GUINT64_FORMAT " were discarded by retention; FirstSeq is %" G_GUINT64_FORMAT,
                                         after, first);
        return 0;
}

/* The data of E as FetchSince delivers it. Publish refuses data that a
 * bus message could not carry, but a store may hold events from before it
 * did: such data would make the reply one that dbus-daemon refuses (it
 * drops the sender), so it is withheld, and the event is delivered with a
 * marker saying why instead. Its seq stays in the sequence: a client
 * catching up sees no gap, and learns what it missed. The rules are the
 * contract's, not this site's [Limits], which only bound what comes in. */
GVariant *event_deliverable_data(const StoredEvent *e) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        g_autofree char *reason = NULL;

        if (bus_check_event_size(e->data, &e->data_size, EVENT_DATA_SIZE_MAX, &error) >= 0)
                return g_variant_ref(e->data);

        log_warning("Event %" G_GUINT64_FORMAT " (topic %s) is delivered without its data: %s",
                    e->seq, e->topic, error.message);
        reason = g_strdup_printf("%s; it was stored before outpostd refused such data", error.message);
        return g_variant_ref_sink(vardict_new(EVENT_WITHHELD_KEY, g_variant_new_string(reason), NULL));
}

/* Retention runs in small rounds from a timer on CLOCK_REALTIME (event
 * times are wall-clock times), so a long backlog never holds the loop for
 * long, and an idle daemon does not wake up for it: the timer is armed for
 * when the oldest event grows too old, or by an append that takes the
 * history past RetentionCount, and is off while the history is empty. */

static uint64_t retention_now(Daemon *d) {
        uint64_t now = 0;

        (void) sd_event_now(d->event, CLOCK_REALTIME, &now);
        return now;
}

/* Whether more events are kept than RetentionCount: the same test as the
 * store's, on the bounds it keeps in memory. */
static bool retention_over_count(Daemon *d) {
        uint64_t last = store_event_last_seq(d->store), first = store_event_first_seq(d->store);

        return last >= d->config.retention_count && first <= last - d->config.retention_count;
}

/* When the oldest event grows older than RetentionSeconds, or 0 while
 * there is none (the next append arms the timer). */
static uint64_t retention_age_due(Daemon *d, uint64_t now) {
        int64_t oldest;
        uint64_t due;
        int r;

        r = store_event_oldest_time(d->store, &oldest);
        if (r == 0)
                return 0;
        if (r < 0)
                return now + RETENTION_DELAY_USEC;      /* try again */
        due = (uint64_t) MAX(oldest, (int64_t) 0) + (uint64_t) d->config.retention_seconds * G_USEC_PER_SEC;
        /* Never sooner than the delay: a wall clock set back must not make
         * the timer spin. */
        return MAX(due, now + RETENTION_DELAY_USEC);
}

static int retention_arm(Daemon *d, uint64_t due) {
        int r;

        if (due == 0)
                return sd_event_source_set_enabled(d->retention_timer, SD_EVENT_OFF);
        r = sd_event_source_set_time(d->retention_timer, due);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(d->retention_timer, SD_EVENT_ONESHOT);
}

static void retention_done(Store *s, int n, void *userdata) {
        Daemon *d = userdata;
        uint64_t now = retention_now(d);

        if (n > 0)
                log_debug("Retention discarded %d events; FirstSeq is now %" G_GUINT64_FORMAT,
                          n, store_event_first_seq(d->store));
        /* A full round may have left more: come back at once. Otherwise
         * everything due went, by count as well (the rows over it are the
         * oldest), so only age is left to wait for. */
        if (n == RETENTION_BATCH)
                (void) retention_arm(d, now + 1000);
        else if (n < 0)
                (void) retention_arm(d, now + RETENTION_DELAY_USEC);
        else
                (void) retention_arm(d, retention_age_due(d, now));
}

static int on_retention_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        int64_t oldest = g_get_real_time() - (int64_t) d->config.retention_seconds * G_USEC_PER_SEC;

        store_event_expire(d->store, d->config.retention_count, oldest, RETENTION_BATCH, retention_done, d);
        return 0;
}

/* An event was appended: arm the timer if it was off (the history was
 * empty) or if the history is now over RetentionCount. Cheap enough for
 * every append: the store is asked only when the timer was off. */
void events_note_append(Daemon *d) {
        uint64_t now, due;
        int enabled = SD_EVENT_OFF;

        (void) sd_event_source_get_enabled(d->retention_timer, &enabled);
        if (enabled != SD_EVENT_OFF) {
                if (!retention_over_count(d) ||
                    sd_event_source_get_time(d->retention_timer, &due) < 0)
                        return;
                now = retention_now(d);
                if (due > now + RETENTION_DELAY_USEC)
                        (void) retention_arm(d, now + RETENTION_DELAY_USEC);
                return;
        }
        now = retention_now(d);
        (void) retention_arm(d, retention_over_count(d) ? now + RETENTION_DELAY_USEC : retention_age_due(d, now));
}

int events_start_retention(Daemon *d) {
        /* For what aged while the daemon was not running. */
        return sd_event_add_time(d->event, &d->retention_timer, CLOCK_REALTIME, 0, 0, on_retention_timer, d);
}
