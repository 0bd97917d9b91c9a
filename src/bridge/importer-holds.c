/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The presence holds of the importer's local callers (DESIGN.md §5): each
 * local connection's holds are counted per user, with the semantics
 * outpostd gives direct callers (ttl or not, renewals, release when the
 * holder leaves its bus), and the link holds the user upstream, without
 * ttl, while any local hold remains. After a connect the link's holds are
 * asserted again, a few at a time so that they never crowd out the calls
 * of local clients or go past the listener's limit of calls in flight. */
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

/* Holds being asserted again after a connect: a queue of user ids, of
 * which at most WINDOW are in flight upstream at a time. */
typedef struct Reassert {
        Importer *importer;
        GQueue users;                   /* char*, not yet sent */
        GHashTable *calls;              /* ReassertCall*, in flight */
        unsigned window;
        unsigned retried;
        bool limited;                   /* the upstream said LimitExceeded: back off */
        sd_event_source *retry;
        void (*done)(Importer *im);
} Reassert;

/* A retry waits this long when the upstream said its limit was reached
 * and nothing of ours is in flight to wait for instead. */
#define REASSERT_RETRY_USEC (100 * 1000)
/* Past this many, LimitExceeded is taken for a limit on holds. */
#define REASSERT_RETRIES_MAX 1000

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

static void send_upstream_go_offline(Importer *im, const char *user) {
        /* While the link resyncs, a hold may already be asserted again. */
        if ((im->phase != PHASE_UP && im->phase != PHASE_SYNCING) || !im->upstream)
                return;
        /* Nobody waits for this answer: the holder is gone. */
        (void) sd_bus_call_method_async(im->upstream, NULL, NULL, PRESENCE_PATH, PRESENCE_IFACE, "GoOffline",
                                        NULL, NULL, "s", user);
}

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

/* Re-asserting holds after a connect */

/* One GoOnline of the re-assertion in flight; freeing it drops its reply
 * callback, so nothing of a link already gone comes back here. */
typedef struct ReassertCall {
        Reassert *reassert;
        char *user;
        sd_bus_slot *slot;
} ReassertCall;

static void reassert_call_free(ReassertCall *c) {
        sd_bus_slot_unref(c->slot);
        g_free(c->user);
        g_free(c);
}

static void reassert_free(Reassert *ra) {
        if (!ra)
                return;
        g_queue_clear_full(&ra->users, g_free);
        g_hash_table_unref(ra->calls);
        sd_event_source_disable_unref(ra->retry);
        g_free(ra);
}

void importer_reassert_cancel(Importer *im) {
        g_clear_pointer(&im->reassert, reassert_free);
}

static void reassert_pump(Reassert *ra);

static int on_reassert_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Reassert *ra = userdata;

        ra->retry = sd_event_source_disable_unref(ra->retry);
        reassert_pump(ra);
        return 0;
}

static int on_reasserted(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        ReassertCall *c = userdata;
        Reassert *ra = c->reassert;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e && sd_bus_error_has_name(e, BUS_ERROR_LIMIT_EXCEEDED) &&
            importer_hold_count(ra->importer, c->user) > 0) {
                /* The listener's calls in flight are shared with those of
                 * local clients: this one waits for its turn again. A
                 * limit on holds, not calls, would say so every time. */
                if (ra->retried++ < REASSERT_RETRIES_MAX) {
                        g_queue_push_tail(&ra->users, g_steal_pointer(&c->user));
                        ra->limited = true;
                } else
                        log_warning("Could not re-assert the presence hold of %s: %s", c->user, e->message);
        } else if (e)
                log_warning("Could not re-assert the presence hold of %s: %s", c->user, e->message);
        g_hash_table_remove(ra->calls, c);
        reassert_pump(ra);
        return 0;
}

static int reassert_send(Reassert *ra, char *user) {
        Importer *im = ra->importer;
        ReassertCall *c = g_new0(ReassertCall, 1);
        int r;

        c->reassert = ra;
        c->user = user;
        r = sd_bus_call_method_async(im->upstream, &c->slot, NULL, PRESENCE_PATH, PRESENCE_IFACE, "GoOnline",
                                     on_reasserted, c, "su", user, 0);
        if (r < 0) {
                reassert_call_free(c);
                return r;
        }
        g_hash_table_add(ra->calls, c);
        return 0;
}

/* Send from the queue while the window has room; once nothing is left to
 * send or to wait for, the resync goes on. */
static void reassert_pump(Reassert *ra) {
        Importer *im = ra->importer;
        int r;

        if (ra->limited && g_hash_table_size(ra->calls) > 0)
                return;         /* the upstream is full: wait for our own calls to end */
        if (ra->limited) {
                ra->limited = false;
                if (!ra->retry && sd_event_add_time_relative(im->bridge->event, &ra->retry, CLOCK_MONOTONIC,
                                                              REASSERT_RETRY_USEC, 0, on_reassert_retry, ra) >= 0)
                        return;
        }
        if (ra->retry)
                return;
        while (g_hash_table_size(ra->calls) < ra->window && !g_queue_is_empty(&ra->users)) {
                char *user = g_queue_pop_head(&ra->users);

                /* The last local holder may have left meanwhile. */
                if (importer_hold_count(im, user) == 0) {
                        g_free(user);
                        continue;
                }
                r = reassert_send(ra, user);
                if (r < 0) {
                        importer_link_failed(im, "cannot re-assert presence holds");
                        return;
                }
        }
        if (g_hash_table_size(ra->calls) > 0 || !g_queue_is_empty(&ra->users))
                return;
        log_info("Upstream %s: presence holds re-asserted", im->bridge->config.upstream);
        void (*done)(Importer *) = ra->done;
        importer_reassert_cancel(im);
        done(im);
}

int importer_reassert_holds(Importer *im, void (*done)(Importer *im)) {
        const BridgeConfig *config = &im->bridge->config;
        GHashTableIter iter;
        const char *user;
        Reassert *ra;

        importer_reassert_cancel(im);
        ra = g_new0(Reassert, 1);
        ra->importer = im;
        ra->done = done;
        ra->calls = g_hash_table_new_full(g_direct_hash, g_direct_equal, (GDestroyNotify) reassert_call_free, NULL);
        /* A quarter of what the listener lets a link have in flight (the
         * same setting on both sides, as a rule): the rest stays for the
         * calls of local clients. */
        ra->window = MAX(config->max_calls_in_flight / 4, 1u);
        g_hash_table_iter_init(&iter, im->hold_counts);
        while (g_hash_table_iter_next(&iter, (gpointer *) &user, NULL))
                g_queue_push_tail(&ra->users, g_strdup(user));
        if (!g_queue_is_empty(&ra->users))
                log_info("Upstream %s: re-asserting %u presence holds, at most %u at a time",
                         config->upstream, g_queue_get_length(&ra->users), ra->window);
        im->reassert = ra;
        reassert_pump(ra);
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
