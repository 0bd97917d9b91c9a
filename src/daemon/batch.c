/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The commit path of every controller, with group commit.
 *
 * A change runs inside a SQLite savepoint of the open batch transaction.
 * A controller that replies through daemon_reply_after_commit() does not
 * wait for its own fsync: the batch is committed once the bus has no more
 * messages ready (an idle-priority defer source), or at once when it is
 * full, or before any other message is handled (a bus filter), so nothing
 * uncommitted is ever visible. After the commit, the batch's Event signals
 * go out, then each change's after-commit hook, then the replies, in order:
 * durable before visible, signal before reply (DESIGN.md §4). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "bus-gvariant.h"
#include "daemon.h"
#include "log.h"
#include "macro.h"

#define BATCH_REPLIES_MAX 256

typedef struct DeferredReply {
        sd_bus_message *call;
        sd_bus_message *reply;
        DaemonHook hook;
        char *hook_arg;
} DeferredReply;

static void deferred_reply_free(DeferredReply *r) {
        sd_bus_message_unref(r->call);
        sd_bus_message_unref(r->reply);
        g_free(r->hook_arg);
        g_free(r);
}

/* Only these change methods wait for a group commit; anything else that
 * arrives ends the batch first. */
static bool message_is_batchable(sd_bus_message *m) {
        static const char *const batchable[][2] = {
                { USERS_IFACE,    "CreateUser" },
                { USERS_IFACE,    "SaveUser" },
                { USERS_IFACE,    "DeleteUser" },
                { EVENTS_IFACE,   "Publish" },
                { MESSAGES_IFACE, "Send" },
        };

        for (size_t i = 0; i < ELEMENTSOF(batchable); i++)
                if (sd_bus_message_is_method_call(m, batchable[i][0], batchable[i][1]))
                        return true;
        return false;
}

int daemon_begin(Daemon *d) {
        int r;

        if (!d->batch_open) {
                r = store_begin(d->store);
                if (r < 0)
                        return r;
                d->batch_open = true;
        }
        r = store_savepoint(d->store);
        if (r < 0)
                return r;
        d->change_open = true;
        d->change_first_event = d->pending_events->len;
        return 0;
}

/* End the current change's savepoint, keeping what it did in the batch. */
static int change_release(Daemon *d) {
        if (!d->change_open)
                return 0;
        d->change_open = false;
        return store_release_savepoint(d->store);
}

int daemon_append_event(Daemon *d, const char *topic, GVariant *data, uint64_t *ret_seq) {
        StoredEvent *e;
        uint64_t seq;
        int64_t now = g_get_real_time();
        int r;

        r = store_event_append(d->store, topic, now, data, &seq);
        if (r < 0)
                return r;
        e = g_new0(StoredEvent, 1);
        *e = (StoredEvent) {
                .seq = seq,
                .topic = g_strdup(topic),
                .time = now,
                .data = g_variant_ref(data),
        };
        g_ptr_array_add(d->pending_events, e);
        if (ret_seq)
                *ret_seq = seq;
        return 0;
}

void daemon_rollback(Daemon *d) {
        if (!d->change_open)
                return;
        d->change_open = false;
        store_rollback_savepoint(d->store);
        g_ptr_array_set_size(d->pending_events, d->change_first_event);
}

int daemon_reply_after_commit(Daemon *d, sd_bus_message *call, DaemonHook hook, const char *hook_arg,
                              const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        DeferredReply *deferred;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(reply, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = change_release(d);
        if (r < 0) {
                daemon_rollback(d);
                return r;
        }
        deferred = g_new0(DeferredReply, 1);
        *deferred = (DeferredReply) {
                .call = sd_bus_message_ref(call),
                .reply = TAKE_PTR(reply),
                .hook = hook,
                .hook_arg = g_strdup(hook_arg),
        };
        g_ptr_array_add(d->pending_replies, deferred);

        if (d->pending_replies->len >= BATCH_REPLIES_MAX)
                (void) daemon_flush(d);
        else
                (void) sd_event_source_set_enabled(d->flush_source, SD_EVENT_ONESHOT);
        /* Handled: the reply is sent by the flush. */
        return 1;
}

static int emit_event(Daemon *d, const StoredEvent *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(d->bus, &m, EVENTS_PATH, EVENTS_IFACE, "Event");
        if (r >= 0)
                r = sd_bus_message_append(m, "tsx", e->seq, e->topic, e->time);
        if (r >= 0)
                r = bus_message_append_gvariant(m, e->data);
        if (r >= 0)
                r = sd_bus_send(d->bus, m, NULL);
        if (r < 0)
                /* The event is stored: subscribers catch up with FetchSince. */
                log_warning_errno(r, "Cannot emit event %" G_GUINT64_FORMAT, e->seq);
        return r;
}

int daemon_commit_durable(Daemon *d) {
        int r = 0;

        if (d->batch_open) {
                (void) change_release(d);
                d->batch_open = false;
                r = store_commit(d->store);
        }
        if (r < 0) {
                g_autoptr(GPtrArray) replies = g_steal_pointer(&d->pending_replies);

                d->pending_replies = g_ptr_array_new_with_free_func((GDestroyNotify) deferred_reply_free);
                g_ptr_array_set_size(d->pending_events, 0);
                for (guint i = 0; i < replies->len; i++) {
                        DeferredReply *deferred = replies->pdata[i];
                        (void) sd_bus_reply_method_errorf(deferred->call, SD_BUS_ERROR_FAILED,
                                                          "The store could not commit the change (%s); see the outpostd log",
                                                          strerror(-r));
                }
        }
        return r;
}

void daemon_emit_pending(Daemon *d) {
        /* Taken out first: a hook may start and publish a change of its own. */
        g_autoptr(GPtrArray) events = g_steal_pointer(&d->pending_events);
        g_autoptr(GPtrArray) replies = g_steal_pointer(&d->pending_replies);

        d->pending_events = g_ptr_array_new_with_free_func((GDestroyNotify) stored_event_free);
        d->pending_replies = g_ptr_array_new_with_free_func((GDestroyNotify) deferred_reply_free);

        for (guint i = 0; i < events->len; i++)
                (void) emit_event(d, events->pdata[i]);
        for (guint i = 0; i < replies->len; i++) {
                DeferredReply *deferred = replies->pdata[i];
                int r;

                if (deferred->hook)
                        (void) deferred->hook(d, deferred->hook_arg);
                r = sd_bus_send(NULL, deferred->reply, NULL);
                if (r < 0)
                        log_debug("Cannot send a reply: %s", strerror(-r));
        }
}

int daemon_flush(Daemon *d) {
        int r;

        r = daemon_commit_durable(d);
        if (r < 0)
                return r;
        daemon_emit_pending(d);
        return 0;
}

int daemon_commit(Daemon *d) {
        return daemon_flush(d);
}

static int on_flush(sd_event_source *s, void *userdata) {
        (void) daemon_flush(userdata);
        return 0;
}

static int on_incoming(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;

        if (d->batch_open && !message_is_batchable(m))
                (void) daemon_flush(d);
        return 0;
}

int batch_setup(Daemon *d) {
        int r;

        d->pending_events = g_ptr_array_new_with_free_func((GDestroyNotify) stored_event_free);
        d->pending_replies = g_ptr_array_new_with_free_func((GDestroyNotify) deferred_reply_free);

        r = sd_event_add_defer(d->event, &d->flush_source, on_flush, d);
        if (r < 0)
                return r;
        /* Below the bus: the batch ends when no message is ready. */
        r = sd_event_source_set_priority(d->flush_source, SD_EVENT_PRIORITY_IDLE);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(d->flush_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        return sd_bus_add_filter(d->bus, NULL, on_incoming, d);
}

void batch_done(Daemon *d) {
        /* Replies owed to callers go out before the bus closes. */
        if (d->pending_events)
                (void) daemon_flush(d);
        d->flush_source = sd_event_source_unref(d->flush_source);
        g_clear_pointer(&d->pending_events, g_ptr_array_unref);
        g_clear_pointer(&d->pending_replies, g_ptr_array_unref);
}
