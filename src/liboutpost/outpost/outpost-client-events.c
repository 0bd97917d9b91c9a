/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* OutpostClient: following events.
 *
 * One signal subscription (one match rule, the same the Events proxy uses,
 * so the bus holds it once) for Event and Gap, and one for the Messages
 * manager's MessageReceived, which carries the events of messages/ topics
 * to the clients the bus policy lets receive them; both go through the
 * same queue, in the order they arrive. While the client is catching
 * up, or not connected, live signals wait in a queue; they are delivered
 * after the catch-up, each event at most once: an event is delivered only
 * when its seq is above the last delivered seq. */
#include "config.h"

#include "outpost-client-private.h"
#include "outpost-error.h"

/* Events asked for per FetchSince page. */
#define FETCH_PAGE      1000

void _outpost_pending_free(Pending *p) {
        g_free(p->topic);
        g_clear_pointer(&p->data, g_variant_unref);
        g_free(p);
}

static void subscription_clear(Subscription *s) {
        g_free(s->prefix);
        if (s->destroy)
                s->destroy(s->user_data);
}

void _outpost_subscription_release(Subscription *s) {
        g_atomic_rc_box_release_full(s, (GDestroyNotify) subscription_clear);
}

/* Events */

static void dispatch(OutpostClient *self, guint64 seq, const char *topic, gint64 time, GVariant *data) {
        g_autoptr(GPtrArray) subs = g_ptr_array_new_with_free_func((GDestroyNotify) _outpost_subscription_release);

        /* A callback may subscribe or unsubscribe: work on a copy. */
        for (guint i = 0; i < self->subscriptions->len; i++) {
                Subscription *s = g_ptr_array_index(self->subscriptions, i);
                if (g_str_has_prefix(topic, s->prefix))
                        g_ptr_array_add(subs, g_atomic_rc_box_acquire(s));
        }
        g_object_ref(self);
        for (guint i = 0; i < subs->len; i++) {
                Subscription *s = g_ptr_array_index(subs, i);
                if (!s->removed)
                        s->func(self, seq, topic, time, data, s->user_data);
        }
        g_object_unref(self);
}

static void deliver(OutpostClient *self, guint64 seq, const char *topic, gint64 time, GVariant *data) {
        if (seq <= self->last_seq)
                return;         /* seen already */
        self->last_seq = seq;
        dispatch(self, seq, topic, time, data);
}

static void deliver_gap(OutpostClient *self, guint64 resumed_seq) {
        if (resumed_seq > 0 && resumed_seq - 1 > self->last_seq)
                self->last_seq = resumed_seq - 1;
        _outpost_client_emit_resync_needed(self);
}

void _outpost_client_flush_pending(OutpostClient *self) {
        Pending *p;

        while ((p = g_queue_pop_head(&self->pending))) {
                if (p->gap)
                        deliver_gap(self, p->seq);
                else
                        deliver(self, p->seq, p->topic, p->time, p->data);
                _outpost_pending_free(p);
        }
}

void _outpost_client_on_events_signal(GDBusConnection *connection, const char *sender, const char *path,
                                      const char *iface, const char *member, GVariant *params, gpointer data) {
        OutpostClient *self = data;
        gboolean queue = self->catching_up || self->state != OUTPOST_CLIENT_STATE_CONNECTED;
        Pending *p;

        if ((g_str_equal(member, "Event") || g_str_equal(member, "MessageReceived")) &&
            g_variant_is_of_type(params, G_VARIANT_TYPE("(tsxa{sv})"))) {
                p = g_new0(Pending, 1);
                g_variant_get(params, "(tsx@a{sv})", &p->seq, &p->topic, &p->time, &p->data);
        } else if (g_str_equal(member, "Gap") && g_variant_is_of_type(params, G_VARIANT_TYPE("(tt)"))) {
                p = g_new0(Pending, 1);
                p->gap = TRUE;
                g_variant_get(params, "(tt)", NULL, &p->seq);
        } else
                return;

        g_queue_push_tail(&self->pending, p);
        if (!queue)
                _outpost_client_flush_pending(self);
}

/* After HistoryTruncated or HistoryReset: the events after last_seq are
 * gone. Tell the program, and go on from the current LastSeq. */
static void on_events_props(GObject *source, GAsyncResult *result, gpointer data) {
        OutpostClient *self = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = _outpost_client_dbus_call_finish(source, result, &error);
        g_autoptr(GVariant) dict = NULL;
        const char *history_id = NULL;
        guint64 last_seq = 0;

        if (_outpost_client_is_cancelled(error))
                return;
        if (!reply)
                return _outpost_client_sync_failed(self, error);
        dict = g_variant_get_child_value(reply, 0);
        if (!g_variant_lookup(dict, "HistoryId", "&s", &history_id) || !g_variant_lookup(dict, "LastSeq", "t", &last_seq)) {
                g_autoptr(GError) bad = g_error_new(G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "The Events manager has no HistoryId or LastSeq");
                return _outpost_client_sync_failed(self, bad);
        }
        g_free(self->history_id);
        self->history_id = g_strdup(history_id);
        self->last_seq = last_seq;
        _outpost_client_emit_resync_needed(self);
        _outpost_client_catch_up_done(self);
}

static void fetch_page(OutpostClient *self, guint64 after_seq);

static void on_fetch(GObject *source, GAsyncResult *result, gpointer data) {
        OutpostClient *self = data;
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) events = NULL;
        GVariantIter iter;
        guint64 next_after, seq;
        gboolean more;
        const char *topic;
        gint64 time;
        GVariant *event_data;

        if (!outpost_events_call_fetch_since_finish(OUTPOST_EVENTS(source), &events, &next_after, &more, result,
                                                    &error)) {
                if (_outpost_client_is_cancelled(error))
                        return;
                if (g_error_matches(error, OUTPOST_ERROR, OUTPOST_ERROR_HISTORY_TRUNCATED) ||
                    g_error_matches(error, OUTPOST_ERROR, OUTPOST_ERROR_HISTORY_RESET))
                        _outpost_client_dbus_call(self, EVENTS_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                                                  g_variant_new("(s)", EVENTS_IFACE), "(a{sv})", on_events_props);
                else
                        _outpost_client_sync_failed(self, error);
                return;
        }

        g_variant_iter_init(&iter, events);
        while (g_variant_iter_next(&iter, "(t&sx@a{sv})", &seq, &topic, &time, &event_data)) {
                deliver(self, seq, topic, time, event_data);
                g_variant_unref(event_data);
        }
        if (more)
                fetch_page(self, next_after);
        else {
                /* Whatever history we asked for, we are in the current one now. */
                g_free(self->history_id);
                self->history_id = g_strdup(self->server_history_id);
                _outpost_client_catch_up_done(self);
        }
}

/* Through the generated proxy: the signature is the XML's. Under the
 * epoch, like every call of the client's own. */
static void fetch_page(OutpostClient *self, guint64 after_seq) {
        const char *const all_topics[] = { NULL };

        outpost_events_call_fetch_since(self->events, self->history_id ?: "", after_seq, all_topics, FETCH_PAGE,
                                        self->epoch, on_fetch, self);
}

void _outpost_client_catch_up_start(OutpostClient *self) {
        self->catching_up = TRUE;
        if (!self->history_id) {
                /* The first time: follow from the snapshot on. */
                self->history_id = g_strdup(self->server_history_id);
                self->last_seq = self->snapshot_last_seq;
                _outpost_client_catch_up_done(self);
                return;
        }
        fetch_page(self, self->last_seq);
}

/**
 * outpost_client_subscribe:
 * @client: a client
 * @topic_prefix: (nullable): the prefix of the topics wanted, e.g. `presence`
 *   or `messages/`; %NULL or "" for every event
 * @callback: (scope notified) (closure user_data) (destroy destroy): called for each event
 * @user_data: data for @callback
 * @destroy: (nullable): frees @user_data when the subscription ends
 *
 * Follows the events whose topic starts with @topic_prefix. The client
 * delivers every event once, in order; after an outage it fetches what it
 * missed before it delivers live events again. When it cannot (the events
 * were discarded, or the history was reset, or a bridge reports a gap), it
 * emits #OutpostClient::resync-needed and goes on from the newest event.
 *
 * Messages (the topics under `messages/`) are private: a program gets them
 * only when it runs as root or in the group `outpost-messages` (the bus
 * delivers their signal to no one else) and, for what it fetches after an
 * outage, when polkit authorizes it for `org.outpost.Outpost1.read-messages`.
 * Other programs never see them, and their sequence numbers are skipped.
 *
 * Returns: the id of the subscription, for outpost_client_unsubscribe()
 */
guint outpost_client_subscribe(OutpostClient *client, const char *topic_prefix, OutpostEventFunc callback,
                               gpointer user_data, GDestroyNotify destroy) {
        Subscription *s;

        g_return_val_if_fail(OUTPOST_IS_CLIENT(client), 0);
        g_return_val_if_fail(callback != NULL, 0);

        s = g_atomic_rc_box_new0(Subscription);
        s->id = ++client->next_subscription_id;
        s->prefix = g_strdup(topic_prefix ?: "");
        s->func = callback;
        s->user_data = user_data;
        s->destroy = destroy;
        g_ptr_array_add(client->subscriptions, s);
        return s->id;
}

/**
 * outpost_client_unsubscribe:
 * @client: a client
 * @subscription_id: what outpost_client_subscribe() returned
 *
 * Ends a subscription: its callback is not called again, even for an event
 * being delivered right now.
 */
void outpost_client_unsubscribe(OutpostClient *client, guint subscription_id) {
        g_return_if_fail(OUTPOST_IS_CLIENT(client));

        for (guint i = 0; i < client->subscriptions->len; i++) {
                Subscription *s = g_ptr_array_index(client->subscriptions, i);
                if (s->id == subscription_id) {
                        s->removed = TRUE;
                        g_ptr_array_remove_index(client->subscriptions, i);
                        return;
                }
        }
        g_critical("%s: no subscription %u", G_STRFUNC, subscription_id);
}

/**
 * outpost_client_resume_from:
 * @client: a client
 * @history_id: (nullable): the HistoryId @after_seq belongs to, or %NULL or
 *   "" for the current history
 * @after_seq: the seq of the last event the program has seen
 *
 * Makes the client deliver the events after @after_seq, e.g. to go on from
 * where a program stopped last time. The client fetches them now if it is
 * connected, otherwise once it connects; events it can no longer get are
 * reported with #OutpostClient::resync-needed.
 */
void outpost_client_resume_from(OutpostClient *client, const char *history_id, guint64 after_seq) {
        g_return_if_fail(OUTPOST_IS_CLIENT(client));

        g_free(client->history_id);
        client->history_id = g_strdup(history_id ?: "");
        client->last_seq = after_seq;
        if (client->state == OUTPOST_CLIENT_STATE_CONNECTED && !client->catching_up) {
                client->catching_up = TRUE;
                fetch_page(client, after_seq);
        }
}

