/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The presence holds of the importer's local callers (DESIGN.md §5): each
 * local connection's holds are kept in a hold table (src/shared/hold-table.c),
 * with the semantics outpostd gives direct callers (ttl or not, renewals,
 * release when the holder leaves its bus) and a limit per caller
 * (max-holds-per-caller), counted from when its GoOnline is relayed. The
 * link holds the user upstream, without ttl, while any local hold remains. What the link asks upstream (its
 * holds asserted again after a connect, released when the last local
 * holder goes) goes through a queue, a few calls at a time, so that it
 * never crowds out the calls of local clients nor runs past the listener's
 * limit of calls in flight, whatever the number of holds. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "hold-table.h"
#include "importer.h"
#include "log.h"
#include "macro.h"

/* A local connection holding users online, watched so that its holds end
 * when it leaves its bus. The holds themselves are in im->holds. */
typedef struct LocalHolder {
        Importer *importer;
        char *sender;
        sd_bus_track *track;
} LocalHolder;

/* What the link asks of the upstream for its local holders: GoOnline
 * (holds asserted again after a connect) and GoOffline (the last local
 * holder gone), queued in order, at most WINDOW in flight at a time. */
typedef struct HoldOp {
        char *user;
        bool online;
} HoldOp;

typedef struct HoldQueue {
        Importer *importer;
        GQueue ops;                     /* HoldOp*, not yet sent */
        GHashTable *calls;              /* HoldCall*, in flight */
        unsigned window;
        unsigned retried;
        bool limited;                   /* the upstream said LimitExceeded: back off */
        sd_event_source *retry;
        void (*done)(Importer *im);     /* once the queue is empty */
} HoldQueue;

/* A retry waits this long when the upstream said its limit was reached
 * and nothing of ours is in flight to wait for instead. */
#define HOLD_RETRY_USEC (100 * 1000)
/* Past this many, LimitExceeded is taken for a limit on holds. */
#define HOLD_RETRIES_MAX 1000

static void holder_free(LocalHolder *h) {
        sd_bus_track_unref(h->track);
        g_free(h->sender);
        g_free(h);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LocalHolder, holder_free)

unsigned importer_hold_count(Importer *im, const char *user) {
        return hold_table_count(im->holds, user);
}

static void send_upstream_go_offline(Importer *im, const char *user);

/* Local holds lapsed, or their holder left: the link lets go upstream of
 * each user no local client holds any more. */
static void on_holds_released(HoldTable *t, char **users, void *userdata) {
        Importer *im = userdata;

        for (char **u = users; *u; u++)
                send_upstream_go_offline(im, *u);
}

static int on_holder_left(sd_bus_track *track, void *userdata) {
        LocalHolder *h = userdata;
        Importer *im = h->importer;

        hold_table_remove_holder(im->holds, h->sender);
        g_hash_table_remove(im->holders, h->sender);    /* frees h */
        return 0;
}

/* Watch SENDER leave its bus, from its first hold on. */
static int holder_watch(Importer *im, const char *sender) {
        g_autoptr(LocalHolder) h = NULL;
        int r;

        if (g_hash_table_contains(im->holders, sender))
                return 0;
        h = g_new0(LocalHolder, 1);
        h->importer = im;
        h->sender = g_strdup(sender);
        r = sd_bus_track_new(im->local, &h->track, on_holder_left, h);
        if (r < 0)
                return r;
        r = sd_bus_track_add_name(h->track, sender);
        if (r < 0)
                return r;
        g_hash_table_insert(im->holders, h->sender, h);
        h = NULL;       /* the table has it now */
        return 0;
}

int importer_hold_add(Importer *im, sd_bus_message *m, const char *user, uint32_t ttl, uint64_t *ret_id) {
        const char *sender = sd_bus_message_get_sender(m);
        unsigned max = im->bridge->config.max_holds_per_caller;
        int r;

        /* A site's own listener holds for all the machines behind it,
         * each limited there (max-holds-per-peer). */
        if (listener_owns_connection(im->bridge->listener, sender))
                max = 0;

        r = holder_watch(im, sender);
        if (r < 0) {
                /* Most likely the caller left while its call was on its
                 * way: nobody would release what it asks for. */
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_FAILED,
                                                  "Cannot watch caller %s on the bus (%s); cannot hold '%s'",
                                                  sender, strerror(-r), user);
                return 0;
        }
        r = hold_table_add(im->holds, sender, user, (uint64_t) ttl * G_USEC_PER_SEC, max, ret_id);
        if (r == -EDQUOT) {
                (void) sd_bus_reply_method_errorf(m, BUS_ERROR_LIMIT_EXCEEDED,
                                                  "Caller %s already holds %u users online through this bridge, "
                                                  "the most it may (max-holds-per-caller); cannot hold '%s'",
                                                  sender, max, user);
                return 0;
        }
        return r < 0 ? r : 1;
}

void importer_hold_undo(Importer *im, const char *sender, const char *user, uint64_t id) {
        if (id != 0 && hold_table_remove(im->holds, sender, user, id) == 1)
                send_upstream_go_offline(im, user);
}

bool importer_hold_remove(Importer *im, const char *sender, const char *user) {
        return sender && hold_table_remove(im->holds, sender, user, 0) >= 0;
}

/* The queue of the link's holds upstream */

static void hold_op_free(HoldOp *op) {
        g_free(op->user);
        g_free(op);
}

/* One call of the queue in flight; freeing it drops its reply callback,
 * so nothing of a link already gone comes back here. */
typedef struct HoldCall {
        HoldQueue *queue;
        HoldOp *op;
        sd_bus_slot *slot;
} HoldCall;

static void hold_call_free(HoldCall *c) {
        sd_bus_slot_unref(c->slot);
        if (c->op)
                hold_op_free(c->op);
        g_free(c);
}

static void hold_queue_free(HoldQueue *q) {
        if (!q)
                return;
        g_queue_clear_full(&q->ops, (GDestroyNotify) hold_op_free);
        g_hash_table_unref(q->calls);
        sd_event_source_disable_unref(q->retry);
        g_free(q);
}

void importer_reassert_cancel(Importer *im) {
        g_clear_pointer(&im->hold_queue, hold_queue_free);
}

static void hold_queue_pump(HoldQueue *q);

static int on_hold_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        HoldQueue *q = userdata;

        q->retry = sd_event_source_disable_unref(q->retry);
        hold_queue_pump(q);
        return 0;
}

static int on_hold_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        HoldCall *c = userdata;
        HoldQueue *q = c->queue;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e && sd_bus_error_has_name(e, BUS_ERROR_LIMIT_EXCEEDED) && q->retried < HOLD_RETRIES_MAX) {
                /* The listener's calls in flight are shared with those of
                 * local clients: this one waits for its turn again. */
                q->retried++;
                g_queue_push_tail(&q->ops, g_steal_pointer(&c->op));
                q->limited = true;
        } else if (e)
                log_warning("Could not %s %s upstream: %s", c->op->online ? "re-assert the presence hold of" :
                            "release the presence hold of", c->op->user, e->message);
        g_hash_table_remove(q->calls, c);
        hold_queue_pump(q);
        return 0;
}

/* Whether OP still says what the local holders want. */
static bool hold_op_current(Importer *im, const HoldOp *op) {
        return op->online == (importer_hold_count(im, op->user) > 0);
}

static int hold_send(HoldQueue *q, HoldOp *op) {
        Importer *im = q->importer;
        HoldCall *c = g_new0(HoldCall, 1);
        int r;

        c->queue = q;
        c->op = op;
        r = op->online ? sd_bus_call_method_async(im->upstream, &c->slot, NULL, PRESENCE_PATH, PRESENCE_IFACE,
                                                  "GoOnline", on_hold_reply, c, "su", op->user, 0)
                       : sd_bus_call_method_async(im->upstream, &c->slot, NULL, PRESENCE_PATH, PRESENCE_IFACE,
                                                  "GoOffline", on_hold_reply, c, "s", op->user);
        if (r < 0) {
                hold_call_free(c);
                return r;
        }
        g_hash_table_add(q->calls, c);
        return 0;
}

/* Send from the queue while the window has room; once nothing is left to
 * send or to wait for, tell whoever waits. */
static void hold_queue_pump(HoldQueue *q) {
        Importer *im = q->importer;
        void (*done)(Importer *im);

        if (q->limited && g_hash_table_size(q->calls) > 0)
                return;         /* the upstream is full: wait for our own calls to end */
        if (q->limited) {
                q->limited = false;
                if (!q->retry && sd_event_add_time_relative(im->bridge->event, &q->retry, CLOCK_MONOTONIC,
                                                             HOLD_RETRY_USEC, 0, on_hold_retry, q) >= 0)
                        return;
        }
        if (q->retry)
                return;
        while (g_hash_table_size(q->calls) < q->window && !g_queue_is_empty(&q->ops)) {
                HoldOp *op = g_queue_pop_head(&q->ops);

                /* A holder may have come or gone meanwhile. */
                if (!hold_op_current(im, op)) {
                        hold_op_free(op);
                        continue;
                }
                if (hold_send(q, op) < 0) {
                        importer_link_failed(im, "cannot send a presence hold upstream");
                        return;
                }
        }
        if (g_hash_table_size(q->calls) > 0 || !g_queue_is_empty(&q->ops) || !q->done)
                return;
        done = q->done;
        q->done = NULL;
        done(im);
}

static HoldQueue *hold_queue(Importer *im) {
        HoldQueue *q = im->hold_queue;

        if (q)
                return q;
        q = g_new0(HoldQueue, 1);
        q->importer = im;
        q->calls = g_hash_table_new_full(g_direct_hash, g_direct_equal, (GDestroyNotify) hold_call_free, NULL);
        /* A quarter of what the listener lets a link have in flight (the
         * same setting on both sides, as a rule): the rest stays for the
         * calls of local clients. */
        q->window = MAX(im->bridge->config.max_calls_in_flight / 4, 1u);
        im->hold_queue = q;
        return q;
}

static void hold_queue_push(HoldQueue *q, const char *user, bool online) {
        HoldOp *op = g_new0(HoldOp, 1);

        op->user = g_strdup(user);
        op->online = online;
        g_queue_push_tail(&q->ops, op);
}

static void send_upstream_go_offline(Importer *im, const char *user) {
        HoldQueue *q;

        /* While the link resyncs, a hold may already be asserted again. */
        if ((im->phase != PHASE_UP && im->phase != PHASE_SYNCING) || !im->upstream)
                return;
        q = hold_queue(im);
        hold_queue_push(q, user, false);
        hold_queue_pump(q);
}

static void push_go_online(const char *user, void *userdata) {
        hold_queue_push(userdata, user, true);
}

int importer_reassert_holds(Importer *im, void (*done)(Importer *im)) {
        HoldQueue *q = hold_queue(im);

        q->done = done;
        hold_table_foreach_user(im->holds, push_go_online, q);
        if (!g_queue_is_empty(&q->ops))
                log_info("Upstream %s: re-asserting %u presence holds, at most %u at a time",
                         importer_upstream(im), g_queue_get_length(&q->ops), q->window);
        hold_queue_pump(q);
        return 0;
}

int importer_holds_setup(Importer *im) {
        im->holders = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) holder_free);
        return hold_table_new(im->bridge->event, on_holds_released, im, &im->holds);
}

void importer_holds_free(Importer *im) {
        importer_reassert_cancel(im);
        im->holds = hold_table_free(im->holds);
        g_clear_pointer(&im->holders, g_hash_table_unref);
}
