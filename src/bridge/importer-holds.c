/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The presence holds of the importer's local callers (DESIGN.md §5): each
 * local connection's holds are counted per user, with the semantics
 * outpostd gives direct callers (ttl or not, renewals, release when the
 * holder leaves its bus), and the link holds the user upstream, without
 * ttl, while any local hold remains. What the link asks upstream (its
 * holds asserted again after a connect, released when the last local
 * holder goes) goes through a queue, a few calls at a time, so that it
 * never crowds out the calls of local clients nor runs past the listener's
 * limit of calls in flight, whatever the number of holds. */
#include "config.h"

#include <errno.h>
#include <time.h>

#include "importer.h"
#include "log.h"
#include "macro.h"

/* A local connection holding users online. */
typedef struct LocalHolder {
        Importer *importer;
        char *sender;
        sd_bus_track *track;
        GHashTable *users;              /* user id → expiry, CLOCK_MONOTONIC µs (0: none), as a pointer-sized int */
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

uint64_t importer_now_monotonic(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static void holder_free(LocalHolder *h) {
        sd_bus_track_unref(h->track);
        g_hash_table_unref(h->users);
        g_free(h->sender);
        g_free(h);
}

unsigned importer_hold_count(Importer *im, const char *user) {
        return GPOINTER_TO_UINT(g_hash_table_lookup(im->hold_counts, user));
}

static void send_upstream_go_offline(Importer *im, const char *user);

/* Drop one local hold of USER; returns whether it was the last. */
static bool hold_release(Importer *im, const char *user) {
        unsigned n = importer_hold_count(im, user);

        if (n <= 1) {
                g_hash_table_remove(im->hold_counts, user);
                return true;
        }
        g_hash_table_replace(im->hold_counts, g_strdup(user), GUINT_TO_POINTER(n - 1));
        return false;
}

static int on_holder_left(sd_bus_track *track, void *userdata) {
        LocalHolder *h = userdata;
        Importer *im = h->importer;
        GHashTableIter iter;
        const char *user;

        g_hash_table_iter_init(&iter, h->users);
        while (g_hash_table_iter_next(&iter, (gpointer *) &user, NULL))
                if (hold_release(im, user))
                        send_upstream_go_offline(im, user);
        g_hash_table_remove(im->holders, h->sender);
        return 0;
}

static void rearm_expiry(Importer *im);

/* Local holds with a ttl lapse here; the link's hold upstream has none. */
static int on_hold_expiry(sd_event_source *s, uint64_t usec, void *userdata) {
        Importer *im = userdata;
        uint64_t now = importer_now_monotonic();
        GHashTableIter hi, ui;
        LocalHolder *h;
        gpointer user, expires;

        g_hash_table_iter_init(&hi, im->holders);
        while (g_hash_table_iter_next(&hi, NULL, (gpointer *) &h)) {
                g_hash_table_iter_init(&ui, h->users);
                while (g_hash_table_iter_next(&ui, &user, &expires)) {
                        uint64_t e = (uint64_t) GPOINTER_TO_SIZE(expires);
                        if (e == 0 || e > now)
                                continue;
                        if (hold_release(im, user))
                                send_upstream_go_offline(im, user);
                        g_hash_table_iter_remove(&ui);
                }
        }
        rearm_expiry(im);
        return 0;
}

static void rearm_expiry(Importer *im) {
        uint64_t earliest = UINT64_MAX;
        GHashTableIter hi, ui;
        LocalHolder *h;
        gpointer expires;

        g_hash_table_iter_init(&hi, im->holders);
        while (g_hash_table_iter_next(&hi, NULL, (gpointer *) &h)) {
                g_hash_table_iter_init(&ui, h->users);
                while (g_hash_table_iter_next(&ui, NULL, &expires)) {
                        uint64_t e = (uint64_t) GPOINTER_TO_SIZE(expires);
                        if (e != 0 && e < earliest)
                                earliest = e;
                }
        }
        if (earliest == UINT64_MAX) {
                (void) sd_event_source_set_enabled(im->hold_expiry, SD_EVENT_OFF);
                return;
        }
        if (!im->hold_expiry &&
            sd_event_add_time(im->bridge->event, &im->hold_expiry, CLOCK_MONOTONIC, earliest, 0, on_hold_expiry, im) < 0)
                return;
        (void) sd_event_source_set_time(im->hold_expiry, earliest);
        (void) sd_event_source_set_enabled(im->hold_expiry, SD_EVENT_ONESHOT);
}

void importer_hold_add(Importer *im, const char *sender, const char *user, uint64_t expires) {
        LocalHolder *h = g_hash_table_lookup(im->holders, sender);

        if (!h) {
                h = g_new0(LocalHolder, 1);
                h->importer = im;
                h->sender = g_strdup(sender);
                h->users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
                if (sd_bus_track_new(im->local, &h->track, on_holder_left, h) < 0 ||
                    sd_bus_track_add_name(h->track, sender) < 0) {
                        /* Most likely the caller left while its GoOnline
                         * was on its way: its hold ends now, as it would
                         * at the daemon. */
                        log_debug("Cannot track %s (gone?); dropping its hold of %s", sender, user);
                        holder_free(h);
                        if (importer_hold_count(im, user) == 0)
                                send_upstream_go_offline(im, user);
                        return;
                }
                g_hash_table_insert(im->holders, h->sender, h);
        }
        if (!g_hash_table_contains(h->users, user))
                g_hash_table_replace(im->hold_counts, g_strdup(user),
                                     GUINT_TO_POINTER(importer_hold_count(im, user) + 1));
        /* Calling again renews, and may change the kind of hold. */
        g_hash_table_replace(h->users, g_strdup(user), GSIZE_TO_POINTER((gsize) expires));
        rearm_expiry(im);
}

bool importer_hold_remove(Importer *im, const char *sender, const char *user) {
        LocalHolder *h = sender ? g_hash_table_lookup(im->holders, sender) : NULL;

        if (!h || !g_hash_table_remove(h->users, user))
                return false;
        (void) hold_release(im, user);
        return true;
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

int importer_reassert_holds(Importer *im, void (*done)(Importer *im)) {
        HoldQueue *q = hold_queue(im);
        GHashTableIter iter;
        const char *user;

        q->done = done;
        g_hash_table_iter_init(&iter, im->hold_counts);
        while (g_hash_table_iter_next(&iter, (gpointer *) &user, NULL))
                hold_queue_push(q, user, true);
        if (!g_queue_is_empty(&q->ops))
                log_info("Upstream %s: re-asserting %u presence holds, at most %u at a time",
                         im->bridge->config.upstream, g_queue_get_length(&q->ops), q->window);
        hold_queue_pump(q);
        return 0;
}

int importer_holds_setup(Importer *im) {
        im->hold_counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        im->holders = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) holder_free);
        return 0;
}

void importer_holds_free(Importer *im) {
        importer_reassert_cancel(im);
        im->hold_expiry = sd_event_source_disable_unref(im->hold_expiry);
        g_clear_pointer(&im->holders, g_hash_table_unref);
        g_clear_pointer(&im->hold_counts, g_hash_table_unref);
}
