/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The commit path of every controller, with group commit.
 *
 * A change runs inside a savepoint of the open batch transaction. A
 * controller that replies through daemon_reply_after_commit() does not
 * wait for its own commit: the batch is committed once the bus has no more
 * messages ready (an idle-priority defer source), or at once when it is
 * full, or before any other message is handled (a bus filter), so nothing
 * uncommitted is ever visible.
 *
 * A store whose commit completes later (PostgreSQL) has one commit in
 * flight at a time. Change methods that arrive meanwhile gather in the
 * next batch, committed when the first completes (group commit); any other
 * message, and everything after it, is held back until what came before
 * it is durable, then handled in the order it arrived.
 *
 * What a change reveals (its Event signals, a model's PropertiesChanged,
 * its reply) is queued in the order the change made it, and after the
 * commit goes out in that order, change after change: each caller's reply
 * follows its own change's signals and precedes the next change's, exactly
 * as if every change had been committed on its own. So a GDBusProxy whose
 * reply arrives shows that change and no later one, and Event signals go
 * out in seq order. Durable before visible, signal before reply, one
 * signal per change (DESIGN.md §4). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "bus-gvariant.h"
#include "bus-methods.h"
#include "daemon.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

#define BATCH_REPLIES_MAX 256

typedef enum BatchItemKind {
        BATCH_ITEM_EVENT,       /* sent as an Event signal once committed */
        BATCH_ITEM_SIGNAL,      /* a model's change signal, sent even when the commit fails */
        BATCH_ITEM_REPLY,       /* a method return, or an error if the commit fails */
} BatchItemKind;

typedef struct BatchItem {
        BatchItemKind kind;
        StoredEvent *event;
        sd_bus_message *message;        /* the signal, or the method return */
        sd_bus_message *call;           /* what the method return answers */
        char **results;                 /* the method return's values as text, for the audit */
} BatchItem;

static void batch_item_free(BatchItem *i) {
        if (i->event)
                stored_event_free(i->event);
        sd_bus_message_unref(i->message);
        sd_bus_message_unref(i->call);
        g_strfreev(i->results);
        g_free(i);
}

static void message_unref(void *m) {
        sd_bus_message_unref(m);
}

static GPtrArray *held_new(void) {
        return g_ptr_array_new_with_free_func(message_unref);
}

static GPtrArray *batch_items_new(void) {
        return g_ptr_array_new_with_free_func((GDestroyNotify) batch_item_free);
}

static BatchItem *batch_add(Daemon *d, BatchItemKind kind, StoredEvent *event, sd_bus_message *message,
                            sd_bus_message *call) {
        BatchItem *i = g_new0(BatchItem, 1);

        *i = (BatchItem) {
                .kind = kind,
                .event = event,
                .message = message,
                .call = call,
        };
        g_ptr_array_add(d->pending, i);
        return i;
}

/* Only the change methods the table marks wait for a group commit;
 * anything else that arrives ends the batch first. */
static bool message_is_batchable(sd_bus_message *m) {
        const BusChangeMethod *method = bus_change_method_of(m);

        return method && method->batchable;
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
        d->change_first_item = d->pending->len;
        return 0;
}

/* End the current change's savepoint, keeping what it did in the batch.
 * On failure the change stays open, for daemon_rollback() to undo. */
static int change_release(Daemon *d) {
        int r;

        if (!d->change_open)
                return 0;
        r = store_release_savepoint(d->store);
        if (r < 0)
                return r;
        d->change_open = false;
        return 0;
}

static void schedule_flush(Daemon *d) {
        (void) sd_event_source_set_enabled(d->flush_source, SD_EVENT_ONESHOT);
}

int daemon_end_change(Daemon *d) {
        int r;

        r = change_release(d);
        if (r < 0) {
                daemon_rollback(d);
                return r;
        }
        /* Whoever made the change, the batch it joined gets committed. */
        schedule_flush(d);
        return 0;
}

int daemon_append_event(Daemon *d, const char *topic, GVariant *data, uint64_t *ret_seq) {
        return daemon_append_event_request(d, topic, data, NULL, NULL, ret_seq);
}

int daemon_append_event_request(Daemon *d, const char *topic, GVariant *data, const char *request_key,
                                const char *request_result, uint64_t *ret_seq) {
        StoredEvent *e;
        uint64_t seq;
        int64_t now = g_get_real_time();
        int r;

        if (request_key)
                r = store_event_append_request(d->store, topic, now, data, request_key, request_result, &seq);
        else
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
        batch_add(d, BATCH_ITEM_EVENT, e, NULL, NULL);
        events_note_append(d);
        if (ret_seq)
                *ret_seq = seq;
        return 0;
}

void daemon_append_signal(Daemon *d, sd_bus_message *signal) {
        batch_add(d, BATCH_ITEM_SIGNAL, NULL, sd_bus_message_ref(signal), NULL);
}

void daemon_rollback(Daemon *d) {
        if (!d->change_open)
                return;
        d->change_open = false;
        store_rollback_savepoint(d->store);
        g_ptr_array_set_size(d->pending, d->change_first_item);
}

/* The values of a reply as text, from its TYPES ("s" and "t" only: what
 * the change methods return) and the arguments AP, for the audit: a reply
 * being built cannot be read back until it is sent. */
static char **results_as_text(const char *types, va_list ap) {
        g_autoptr(GPtrArray) results = g_ptr_array_new_with_free_func(g_free);

        for (const char *t = types; t && *t; t++) {
                if (*t == 's')
                        g_ptr_array_add(results, g_strdup(va_arg(ap, const char *)));
                else if (*t == 't')
                        g_ptr_array_add(results, g_strdup_printf("%" G_GUINT64_FORMAT, va_arg(ap, uint64_t)));
                else
                        g_assert_not_reached();
        }
        g_ptr_array_add(results, NULL);
        return (char **) g_ptr_array_free(g_steal_pointer(&results), false);
}

/* The method return of CALL with TYPES (NULL: none) and the values AP, and
 * those values as text for the audit. */
static int method_return_new(sd_bus_message *call, const char *types, va_list ap, sd_bus_message **ret,
                             char ***ret_results) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_auto(GStrv) results = NULL;
        va_list aq;
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        if (types) {
                va_copy(aq, ap);
                results = results_as_text(types, aq);
                va_end(aq);
                r = sd_bus_message_appendv(reply, types, ap);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(reply);
        *ret_results = TAKE_PTR(results);
        return 0;
}

int daemon_reply_after_commit(Daemon *d, sd_bus_message *call, DaemonHook hook, const char *hook_arg,
                              const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_auto(GStrv) results = NULL;
        va_list ap;
        int r;

        va_start(ap, types);
        r = method_return_new(call, types, ap, &reply, &results);
        va_end(ap);
        if (r < 0) {
                daemon_rollback(d);
                return r;
        }
        r = change_release(d);
        if (r < 0) {
                daemon_rollback(d);
                return r;
        }
        /* The hook's own change joins the batch between this change and its
         * reply, so that the caller hears back after it was shown. */
        if (hook)
                (void) hook(d, hook_arg);
        batch_add(d, BATCH_ITEM_REPLY, NULL, TAKE_PTR(reply), sd_bus_message_ref(call))->results =
                g_steal_pointer(&results);
        d->pending_replies++;

        if (d->pending_replies >= BATCH_REPLIES_MAX)
                daemon_flush(d);
        else
                schedule_flush(d);
        /* Handled: the reply is sent by the flush. */
        return 1;
}

int daemon_error_after_batch(Daemon *d, sd_bus_message *call, sd_bus_error *error, int r) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int q;

        if (r >= 0 || !(d->batch_open || d->pending->len > 0 || d->committing))
                return r;
        /* The error goes out behind the batch, once it is durable, so it
         * comes after the replies queued before it and names nothing that
         * is not durable yet. */
        if (sd_bus_error_is_set(error))
                q = sd_bus_message_new_method_error(call, &reply, error);
        else
                q = sd_bus_message_new_method_errno(call, &reply, r, NULL);
        if (q < 0)
                return r;
        sd_bus_error_free(error);
        batch_add(d, BATCH_ITEM_REPLY, NULL, TAKE_PTR(reply), sd_bus_message_ref(call));
        daemon_flush(d);
        return 1;
}

/* An event is broadcast as Event, except a message: the Messages manager
 * sends it as MessageReceived, which the bus policy delivers only to
 * those who may read every user's messages (DESIGN.md §3, Messages). */
static int send_event_signal(Daemon *d, const StoredEvent *e) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (topic_is_message(e->topic))
                r = sd_bus_message_new_signal(d->bus, &m, MESSAGES_PATH, MESSAGES_IFACE, "MessageReceived");
        else
                r = sd_bus_message_new_signal(d->bus, &m, EVENTS_PATH, EVENTS_IFACE, "Event");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "tsx", e->seq, e->topic, e->time);
        if (r < 0)
                return r;
        r = bus_message_append_gvariant(m, e->data);
        if (r < 0)
                return r;
        return sd_bus_send(d->bus, m, NULL);
}

static void emit_event(Daemon *d, const StoredEvent *e) {
        int r;

        r = send_event_signal(d, e);
        if (r < 0)
                /* The event is stored: subscribers catch up with FetchSince. */
                log_warning_errno(r, "Cannot emit event %" G_GUINT64_FORMAT, e->seq);
}

int reply_store_error(Daemon *d, int r, sd_bus_error *error) {
        const char *path = store_path(d->store);
        uint64_t free_bytes = 0;

        switch (r) {
        case -ENOSPC: {
                g_autofree char *room = NULL;

                if (store_free_bytes(d->store, &free_bytes) < 0)
                        return sd_bus_error_setf(error, BUS_ERROR_STORE_FULL,
                                                 "The disk holding the store %s is full: the change was not made", path);
                room = g_format_size(free_bytes);
                return sd_bus_error_setf(error, BUS_ERROR_STORE_FULL,
                                         "The disk holding the store %s is full (%s free): the change was not made",
                                         path, room);
        }
        case -ECONNRESET:
                /* Like a bridge's lost link (DESIGN.md §4 rule 5): a commit
                 * in flight may have reached the database. */
                return sd_bus_error_setf(error, BUS_ERROR_DISCONNECTED,
                                         "outpostd lost its session with the store %s and stops serving; the call "
                                         "may have been carried out; another outpostd takes over "
                                         "org.outpost.Outpost1", path);
        case -EUCLEAN:
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED,
                                         "The store %s is damaged or cannot be read or written: outpostd accepts no "
                                         "change and is stopping; see its log", path);
        default:
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED,
                                         "The store %s could not complete the request (%s); see the outpostd log",
                                         path, strerror(-r));
        }
}

static int reply_commit_error(Daemon *d, sd_bus_message *call, int commit_error) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        (void) reply_store_error(d, commit_error, &error);
        return sd_bus_reply_method_error(call, &error);
}

static void send_item(Daemon *d, const BatchItem *i, int commit_error) {
        int r = 0;

        switch (i->kind) {
        case BATCH_ITEM_EVENT:
                /* An event that was not committed never happened. */
                if (commit_error >= 0)
                        emit_event(d, i->event);
                return;
        case BATCH_ITEM_SIGNAL:
                /* The model it describes is volatile and has changed anyway:
                 * the caches must follow it. */
                r = sd_bus_send(d->bus, i->message, NULL);
                break;
        case BATCH_ITEM_REPLY:
                if (commit_error >= 0) {
                        /* Logged before the caller can hear of it; an
                         * error queued behind the batch changed nothing. */
                        if (!sd_bus_message_is_method_error(i->message, NULL))
                                audit_change(d->audit, i->call, NULL, NULL, i->results);
                        r = sd_bus_send(NULL, i->message, NULL);
                } else
                        r = reply_commit_error(d, i->call, commit_error);
                break;
        }
        if (r < 0)
                log_debug("Cannot send a %s: %s", i->kind == BATCH_ITEM_SIGNAL ? "signal" : "reply", strerror(-r));
}

static void send_items(Daemon *d, GPtrArray *items, int commit_error) {
        for (guint i = 0; i < items->len; i++)
                send_item(d, items->pdata[i], commit_error);
}

static GPtrArray *take_pending(Daemon *d) {
        GPtrArray *items = TAKE_PTR(d->pending);

        d->pending = batch_items_new();
        d->pending_replies = 0;
        return items;
}

/* Messages held back while a commit was in flight are handled again, in
 * the order they arrived. The store completes a commit at a priority below
 * the bus's, so nothing read from the bus is waiting ahead of them. */
static void release_held(Daemon *d) {
        g_autoptr(GPtrArray) held = TAKE_PTR(d->held);

        d->held = held_new();
        for (guint i = 0; i < held->len; i++) {
                int r = sd_bus_enqueue_for_read(d->bus, held->pdata[i]);
                if (r < 0)
                        log_warning_errno(r, "Cannot handle a message held back during a commit");
        }
}

static void on_committed(Store *s, int r, void *userdata) {
        Daemon *d = userdata;
        g_autoptr(GPtrArray) items = TAKE_PTR(d->committing);

        send_items(d, items, r);
        /* What gathered while the commit was in flight is committed next;
         * what was held back waits until everything before it is durable. */
        if (d->batch_open || d->pending->len > 0)
                daemon_flush(d);
        if (!d->committing)
                release_held(d);
}

void daemon_flush(Daemon *d) {
        /* Taken out first: sending must not see a batch being refilled. */
        g_autoptr(GPtrArray) items = NULL;

        /* One commit at a time: its completion commits what gathers
         * meanwhile. */
        if (d->committing)
                return;
        if (!d->batch_open) {
                items = take_pending(d);
                send_items(d, items, 0);
                return;
        }
        (void) change_release(d);
        d->change_open = false;
        d->batch_open = false;
        d->committing = take_pending(d);
        store_commit(d->store, on_committed, d);
}

static int on_flush(sd_event_source *s, void *userdata) {
        daemon_flush(userdata);
        return 0;
}

/* Hold M back until the commit in flight is durable: it must not see
 * (nor reveal) what is not. */
static int hold(Daemon *d, sd_bus_message *m) {
        g_ptr_array_add(d->held, sd_bus_message_ref(m));
        return 1;
}

static int on_incoming(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;

        /* Stopping: every call received gets an answer that says why. */
        if (store_is_damaged(d->store) && sd_bus_message_is_method_call(m, NULL, NULL) > 0) {
                if (store_failure(d->store) == -ECONNRESET)
                        /* Not handled at all: the caller may retry elsewhere. */
                        (void) sd_bus_reply_method_errorf(m, BUS_ERROR_DISCONNECTED,
                                                          "outpostd lost its session with the store %s and stops "
                                                          "serving; the call was not carried out; another outpostd "
                                                          "takes over org.outpost.Outpost1", store_path(d->store));
                else
                        (void) reply_commit_error(d, m, store_failure(d->store));
                return 1;
        }
        /* The bus's own notes (Disconnected) are never held. */
        if (g_strcmp0(sd_bus_message_get_interface(m), "org.freedesktop.DBus.Local") == 0)
                return 0;
        if (d->held->len > 0 || (d->committing && !message_is_batchable(m)))
                return hold(d, m);
        if ((d->batch_open || d->pending->len > 0) && !message_is_batchable(m)) {
                daemon_flush(d);
                if (d->committing)
                        return hold(d, m);
        }
        return 0;
}

static int on_exit_damaged(sd_event_source *s, void *userdata) {
        Daemon *d = userdata;

        return sd_event_exit(d->event, store_failure(d->store));
}

/* A store that reported damage or an I/O error, or lost its database
 * session, is written no more (the store refuses every write, and the open
 * batch is rolled back, its callers told so): outpostd gives up its name
 * at once and exits non-zero, for systemd to restart it and the check at
 * start to judge the file, or (PostgreSQL) to wait as a standby while
 * another outpostd takes over. Called from inside the store operation
 * that failed: it only schedules. */
static void daemon_store_failed(Store *s, void *userdata) {
        Daemon *d = userdata;

        if (store_failure(s) == -ECONNRESET)
                log_crit("Giving up %s and exiting: the session with the store %s is lost (see above); the next start "
                         "waits for the store's lock as a standby", OUTPOST_BUS_NAME, store_path(s));
        else
                log_crit("Giving up %s and exiting: the store %s cannot be used any more (see above); the next start "
                         "checks it", OUTPOST_BUS_NAME, store_path(s));
        (void) sd_bus_release_name_async(d->bus, NULL, OUTPOST_BUS_NAME, NULL, NULL);
        (void) sd_event_source_set_enabled(d->exit_source, SD_EVENT_ONESHOT);
}

/* A defer source, off until enabled, that runs below the bus: once no
 * message is ready. */
static int add_idle_defer(Daemon *d, sd_event_source **ret, sd_event_handler_t callback) {
        int r;

        r = sd_event_add_defer(d->event, ret, callback, d);
        if (r < 0)
                return r;
        r = sd_event_source_set_priority(*ret, SD_EVENT_PRIORITY_IDLE);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(*ret, SD_EVENT_OFF);
}

int batch_setup(Daemon *d) {
        int r;

        d->pending = batch_items_new();
        d->held = held_new();
        store_set_damage_handler(d->store, daemon_store_failed, d);

        /* The batch ends when no message is ready; a daemon stopping for a
         * damaged store answers the calls already received first. */
        r = add_idle_defer(d, &d->flush_source, on_flush);
        if (r < 0)
                return r;
        r = add_idle_defer(d, &d->exit_source, on_exit_damaged);
        if (r < 0)
                return r;
        return sd_bus_add_filter(d->bus, NULL, on_incoming, d);
}

void batch_done(Daemon *d) {
        /* Replies owed to callers go out before the bus closes. */
        if (d->pending)
                daemon_flush(d);
        /* And so do the answers the store still owes (FetchSince pages). */
        if (d->store)
                store_drain(d->store);
        d->flush_source = sd_event_source_unref(d->flush_source);
        d->exit_source = sd_event_source_unref(d->exit_source);
        if (d->store)
                store_set_damage_handler(d->store, NULL, NULL);
        g_clear_pointer(&d->pending, g_ptr_array_unref);
        g_clear_pointer(&d->held, g_ptr_array_unref);
}
