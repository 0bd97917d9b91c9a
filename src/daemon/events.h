/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The Events manager's history rules and retention (events.c), for its
 * bus face (events-dbus.c). The checks set ERROR to what the caller is to
 * be told and return negative errno. */

#include "daemon.h"

/* What Publish may store: a valid topic not reserved to the daemon, and
 * data that fits every message that will carry it. */
int events_check_publish(Daemon *d, const char *topic, GVariant *data, sd_bus_error *error);

/* PREFIXES holds the first of N prefixes given (all, when N is allowed). */
int events_check_prefixes(char **prefixes, size_t n, unsigned max, sd_bus_error *error);
/* HistoryReset and HistoryTruncated for a caller resuming after AFTER in
 * HISTORY_ID ("": whatever the history). */
int events_check_history(Daemon *d, const char *history_id, uint64_t after, sd_bus_error *error);

/* Which events a FetchSince call gets. */
typedef struct EventFilter {
        char **prefixes;        /* empty: every topic */
        bool hide_messages;     /* the caller may not read messages/ events */
} EventFilter;

bool event_filter_is_empty(const EventFilter *f);
/* A StoreEventMatch; USERDATA is the EventFilter. */
bool event_filter_match(const char *topic, void *userdata);

/* The data of E as FetchSince delivers it (a new reference). */
GVariant *event_deliverable_data(const StoredEvent *e);

/* The first retention round runs as soon as the loop starts; it arms the
 * next. */
int events_start_retention(Daemon *d);
