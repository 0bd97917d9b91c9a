/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Events manager on the bus: Publish, FetchSince and the history's
 * properties (DESIGN.md §3, Events). What the history accepts and
 * delivers is events.c's. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "bus-read.h"
#include "events.h"
#include "macro.h"
#include "request-id.h"
#include "validate.h"

#define FETCH_SCAN_MAX          50000           /* rows looked at per FetchSince call */

/* The request id of a Publish, if its data names one (as the key
 * PUBLISH_REQUEST_ID_KEY): in *RET_KEY, scoped to the caller, and in
 * *RET_DATA the data without it, which is what the event carries. */
static int publish_request(Daemon *d, sd_bus_message *m, GVariant *data, char **ret_key, GVariant **ret_data,
                           sd_bus_error *error) {
        g_autoptr(GVariant) value = g_variant_lookup_value(data, PUBLISH_REQUEST_ID_KEY, NULL);
        GVariantDict dict;
        const char *id;
        uid_t uid;
        int r;

        if (!value) {
                *ret_key = NULL;
                *ret_data = g_variant_ref(data);
                return 0;
        }
        r = request_id_check(value, "request id (data key '" PUBLISH_REQUEST_ID_KEY "')", &id, error);
        if (r < 0)
                return r;
        /* Known already: polkit_authorize() needed it. */
        r = polkit_sender_euid(d->polkit, m, &uid);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot tell who published the event: %s", strerror(-r));
        *ret_key = request_key_new(uid, NULL, id);
        g_variant_dict_init(&dict, data);
        g_variant_dict_remove(&dict, PUBLISH_REQUEST_ID_KEY);
        *ret_data = g_variant_ref_sink(g_variant_dict_end(&dict));
        return 0;
}

static int publish_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        g_autoptr(GVariant) data = NULL, event_data = NULL;
        g_autofree char *request_key = NULL;
        const char *topic;
        uint64_t seq;
        int r;

        r = sd_bus_message_read(m, "s", &topic);
        if (r < 0)
                return r;
        r = bus_message_read_vardict(m, &data);
        if (r == -EOPNOTSUPP)
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, "Event data must not carry file descriptors");
        if (r < 0)
                return r;

        r = events_check_publish(d, topic, data, error);
        if (r < 0)
                return r;
        r = polkit_authorize(d->polkit, m, POLKIT_ACTION_PUBLISH_EVENTS, error);
        if (r != 0)
                return r;
        r = publish_request(d, m, data, &request_key, &event_data, error);
        if (r < 0)
                return r;

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        /* A retry writes nothing: it gets the first call's answer, queued
         * like any reply, so not before that call is durable. */
        if (!request_key || store_request_find(d->store, request_key, &seq, NULL) < 0) {
                r = daemon_append_event_request(d, topic, event_data, request_key, NULL, &seq);
                if (r < 0) {
                        daemon_rollback(d);
                        return reply_store_error(d, r, error);
                }
        }
        /* On failure the change is rolled back already. */
        r = daemon_reply_after_commit(d, m, NULL, NULL, "t", seq);
        return r < 0 ? reply_store_error(d, r, error) : r;
}

static int method_publish(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, publish_call(m, userdata, error));
}

/* A FetchSince call while the store reads its page. */
typedef struct FetchCall {
        Daemon *daemon;
        sd_bus_message *call;
        uint64_t after;
        EventFilter filter;
} FetchCall;

static void fetch_call_free(FetchCall *f) {
        sd_bus_message_unref(f->call);
        g_strfreev(f->filter.prefixes);
        g_free(f);
}

/* Messages are private (DESIGN.md §3, Messages): a caller not authorized
 * for read-messages gets every other event, and the scan goes past the
 * messages as past any event that does not match, so next_after and more
 * page exactly as for everyone. polkit is asked only when the prefixes
 * could take messages in. Returns 1 while it is asked. */
static int hide_messages_from(Daemon *d, sd_bus_message *m, char **prefixes, bool *ret) {
        bool allowed = true;
        int r;

        *ret = false;
        if (!topic_prefixes_reach_messages(prefixes))
                return 0;
        r = polkit_authorize_read(d->polkit, m, POLKIT_ACTION_READ_MESSAGES, &allowed);
        if (r != 0)
                return r;
        *ret = !allowed;
        return 0;
}

/* One (tsxa{sv}) of FetchSince's reply. */
static int append_event(sd_bus_message *reply, const StoredEvent *e) {
        g_autoptr(GVariant) data = event_deliverable_data(e);
        int r;

        r = sd_bus_message_open_container(reply, 'r', "tsxa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "tsx", e->seq, e->topic, e->time);
        if (r < 0)
                return r;
        r = bus_message_append_gvariant(reply, data);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int append_events(sd_bus_message *reply, GPtrArray *events) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(tsxa{sv})");
        if (r < 0)
                return r;
        for (guint i = 0; i < events->len; i++) {
                r = append_event(reply, events->pdata[i]);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int fetch_reply(FetchCall *f, GPtrArray *events, uint64_t next_after, bool more) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(f->call, &reply);
        if (r < 0)
                return r;
        r = append_events(reply, events);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "tb", next_after, more);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Answer F with the page the store read (R: how the read went), or set
 * ERROR. */
static int fetch_answer(FetchCall *f, int r, GPtrArray *events, uint64_t next_after, bool more,
                        sd_bus_error *error) {
        if (r < 0)
                return reply_store_error(f->daemon, r, error);
        /* Retention may have run while the store read the page. */
        r = events_check_history(f->daemon, "", f->after, error);
        if (r < 0)
                return r;
        r = fetch_reply(f, events, next_after, more);
        if (r < 0)
                return reply_store_error(f->daemon, r, error);
        return 0;
}

static void fetch_done(Store *s, int r, GPtrArray *events, uint64_t next_after, bool more, void *userdata) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        FetchCall *f = userdata;

        if (fetch_answer(f, r, events, next_after, more, &error) < 0)
                (void) sd_bus_reply_method_error(f->call, &error);
        fetch_call_free(f);
}

static int method_fetch_since(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        g_auto(GStrv) prefixes = NULL;
        Daemon *d = userdata;
        const char *history_id;
        uint64_t after;
        uint32_t limit;
        size_t n_prefixes;
        bool hide_messages;
        FetchCall *f;
        int r;

        r = sd_bus_message_read(m, "st", &history_id, &after);
        if (r < 0)
                return r;
        r = bus_read_strv_bounded(m, d->config.max_topic_prefixes, &prefixes, &n_prefixes);
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "u", &limit);
        if (r < 0)
                return r;

        if (limit < 1 || limit > FETCH_LIMIT_MAX)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid limit %u: must be 1-%d", limit, FETCH_LIMIT_MAX);
        /* A lowered page size only shortens pages, which 'more' reports:
         * a client that asks for more, as the contract lets it, still
         * catches up. */
        limit = MIN(limit, d->config.max_events_per_page);
        r = events_check_prefixes(prefixes, n_prefixes, d->config.max_topic_prefixes, error);
        if (r < 0)
                return r;
        r = events_check_history(d, history_id, after, error);
        if (r < 0)
                return r;
        r = hide_messages_from(d, m, prefixes, &hide_messages);
        if (r != 0)
                return r;

        f = g_new0(FetchCall, 1);
        *f = (FetchCall) {
                .daemon = d,
                .call = sd_bus_message_ref(m),
                .after = after,
                .filter.prefixes = TAKE_PTR(prefixes),
                .filter.hide_messages = hide_messages,
        };
        /* Answered once the store has read the page. */
        store_event_scan(d->store, after, limit, FETCH_SCAN_MAX,
                         event_filter_is_empty(&f->filter) ? NULL : event_filter_match, &f->filter, fetch_done, f);
        return 1;
}

static int property_get_history_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "s", store_history_id(d->store));
}

static int property_get_first_seq(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "t", store_event_first_seq(d->store));
}

static int property_get_last_seq(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        return sd_bus_message_append(reply, "t", store_event_last_seq(d->store));
}

static const sd_bus_vtable events_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("HistoryId", "s", property_get_history_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("FirstSeq", "t", property_get_first_seq, 0, 0),
        SD_BUS_PROPERTY("LastSeq", "t", property_get_last_seq, 0, 0),
        SD_BUS_PROPERTY("RetentionCount", "u", NULL, offsetof(Daemon, config.retention_count),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("RetentionSeconds", "u", NULL, offsetof(Daemon, config.retention_seconds),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Publish",
                                SD_BUS_ARGS("s", topic, "a{sv}", data),
                                SD_BUS_RESULT("t", seq),
                                method_publish,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("FetchSince",
                                SD_BUS_ARGS("s", history_id, "t", after_seq, "as", topic_prefixes, "u", limit),
                                SD_BUS_RESULT("a(tsxa{sv})", events, "t", next_after, "b", more),
                                method_fetch_since,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Event",
                                SD_BUS_ARGS("t", seq, "s", topic, "x", time, "a{sv}", data),
                                0),
        SD_BUS_SIGNAL_WITH_ARGS("Gap",
                                SD_BUS_ARGS("t", after_seq, "t", resumed_seq),
                                0),
        SD_BUS_VTABLE_END
};

int events_register(Daemon *d) {
        int r;

        r = sd_bus_add_object_vtable(d->bus, NULL, EVENTS_PATH, EVENTS_IFACE, events_vtable, d);
        if (r < 0)
                return r;
        return events_start_retention(d);
}
