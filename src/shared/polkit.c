/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authorization through polkit, without libpolkit.
 *
 * A change method that needs ACTION calls polkit_authorize() once it has
 * read and checked its arguments. A caller with effective uid 0 (as the bus
 * saw it when the caller connected) may do everything. For anyone else, the
 * first run sends CheckAuthorization to polkit and remembers the question,
 * keyed by the caller's message, and the handler returns without replying.
 * When polkit answers, the caller's message is rewound and queued on the bus
 * again, so the handler runs once more from the start; this time
 * polkit_authorize() finds the answer and returns it. Nothing waits in the
 * meantime: other callers are served while polkit thinks, or while it asks a
 * user for a password.
 *
 * A bus filter notices the message coming round again and takes its answer
 * out of the table, so an answer is freed even when the second run fails
 * before it asks (e.g. the user it names was deleted meanwhile). */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "bus-caller.h"
#include "bus-methods.h"
#include "log.h"
#include "macro.h"
#include "polkit.h"

#define POLKIT_NAME  "org.freedesktop.PolicyKit1"
#define POLKIT_PATH  "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_IFACE "org.freedesktop.PolicyKit1.Authority"

/* CheckAuthorizationFlags */
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

/* polkit answers a plain question at once; a question that makes it ask a
 * person for a password takes that person's time. */
#define POLKIT_TIMEOUT_USEC             (25ULL * 1000 * 1000)
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (300ULL * 1000 * 1000)

/* Questions in flight: in all, and for one caller. */
#define QUERIES_MAX            4096
#define QUERIES_PER_SENDER_MAX 32

typedef enum Verdict {
        VERDICT_PENDING,
        VERDICT_ALLOWED,
        VERDICT_DENIED,
        VERDICT_CHALLENGE,      /* polkit would authorize after authentication */
        VERDICT_FAILED,         /* polkit could not be asked */
} Verdict;

typedef struct Query {
        Polkit *polkit;
        sd_bus_message *request;        /* the caller's method call */
        char *action;
        sd_bus_slot *slot;              /* the CheckAuthorization call in flight */
        Verdict verdict;
        char *failure;                  /* VERDICT_FAILED: why */
} Query;

struct Polkit {
        sd_bus *bus;
        GHashTable *queries;            /* sd_bus_message *request → Query, owned */
        Query *current;                 /* answered; its request is being dispatched again */
        BusCallers *callers;            /* borrowed */
        sd_bus_slot *filter;
};

static void query_free(Query *q) {
        if (!q)
                return;
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        g_free(q->action);
        g_free(q->failure);
        g_free(q);
}

static void query_freep(Query **q) {
        query_free(*q);
}

static const char *message_method(sd_bus_message *m) {
        return sd_bus_message_get_member(m) ?: "(unknown method)";
}

static int deny(sd_bus_message *m, const char *action, const char *why, sd_bus_error *error) {
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "%s.%s is not allowed: %s%s%s%s",
                                 sd_bus_message_get_interface(m) ?: "", message_method(m), action,
                                 why ? " (" : "", why ?: "", why ? ")" : "");
}

/* The answer of Q to the caller's message M, as polkit_authorize() returns it. */
static int query_result(const Query *q, sd_bus_message *m, sd_bus_error *error) {
        switch (q->verdict) {
        case VERDICT_ALLOWED:
                return 0;
        case VERDICT_CHALLENGE:
                if (sd_bus_message_get_allow_interactive_authorization(m))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                                 "%s needs authentication for %s, and no polkit authentication agent could ask for it",
                                                 message_method(m), q->action);
                return sd_bus_error_setf(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                         "%s needs authentication for %s: call it again allowing interactive authorization",
                                         message_method(m), q->action);
        case VERDICT_FAILED:
                return deny(m, q->action, q->failure, error);
        case VERDICT_DENIED:
        default:
                return deny(m, q->action, NULL, error);
        }
}

/* The effective uid the caller had when it connected, as the bus daemon
 * saw it (not read from /proc, so a later exec cannot change it). */
int polkit_sender_euid(Polkit *p, sd_bus_message *m, uid_t *ret) {
        const BusCaller *caller;
        int r;

        r = bus_callers_get(p->callers, m, &caller);
        if (r < 0)
                return r;
        *ret = caller->uid;
        return 0;
}

/* The handler runs again, from its first argument. */
static int dispatch_again(Polkit *p, sd_bus_message *request) {
        int r;

        r = sd_bus_message_rewind(request, true);
        if (r < 0)
                return r;
        return sd_bus_enqueue_for_read(p->bus, request);
}

static int on_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Query *q = userdata;
        Polkit *p = q->polkit;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *sender = sd_bus_message_get_sender(q->request);
        int authorized = false, challenge = false;
        int r;

        q->slot = sd_bus_slot_unref(q->slot);

        if (e) {
                q->verdict = VERDICT_FAILED;
                q->failure = g_strdup_printf("polkit could not be asked: %s", e->message ?: e->name);
                log_warning("Cannot ask polkit whether %s may %s (%s: %s); denying",
                            sender, q->action, e->name, e->message ?: "");
        } else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r > 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                if (r <= 0) {
                        q->verdict = VERDICT_FAILED;
                        q->failure = g_strdup("polkit's answer could not be read");
                        log_warning("Cannot read polkit's answer for %s on %s: %s; denying",
                                    sender, q->action, r < 0 ? strerror(-r) : "empty answer");
                } else
                        q->verdict = authorized ? VERDICT_ALLOWED : challenge ? VERDICT_CHALLENGE : VERDICT_DENIED;
        }
        log_debug("polkit: %s may %s: %s", sender, q->action,
                  q->verdict == VERDICT_ALLOWED ? "yes" : q->verdict == VERDICT_CHALLENGE ? "after authentication" : "no");

        r = dispatch_again(p, q->request);
        if (r < 0) {
                log_warning_errno(r, "Cannot dispatch %s's %s call again after polkit answered",
                                  sender, message_method(q->request));
                (void) sd_bus_reply_method_errorf(q->request, SD_BUS_ERROR_FAILED,
                                                  "The call could not be carried out after authorization (%s); see the outpostd log",
                                                  strerror(-r));
                g_hash_table_remove(p->queries, q->request);
        }
        return 0;
}

/* The question's answer moves out of the table as its message comes round. */
static int on_incoming(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Polkit *p = userdata;
        Query *q;

        if (g_hash_table_size(p->queries) == 0)
                return 0;
        q = g_hash_table_lookup(p->queries, m);
        if (!q || q->verdict == VERDICT_PENDING)
                return 0;
        g_hash_table_steal(p->queries, m);
        query_free(p->current);
        p->current = q;
        return 0;
}

static int check_limits(Polkit *p, const char *sender, sd_bus_message *m, const char *action, sd_bus_error *error) {
        GHashTableIter iter;
        Query *q;
        unsigned n = 0;

        if (g_hash_table_size(p->queries) >= QUERIES_MAX) {
                log_warning("%u authorization questions are waiting for polkit; refusing %s's %s",
                            g_hash_table_size(p->queries), sender, message_method(m));
                return deny(m, action, "too many authorization questions are waiting for polkit", error);
        }
        g_hash_table_iter_init(&iter, p->queries);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &q))
                if (strcmp(sd_bus_message_get_sender(q->request), sender) == 0 && ++n >= QUERIES_PER_SENDER_MAX)
                        return deny(m, action, "too many of this caller's calls are waiting for polkit", error);
        return 0;
}

static int ask_polkit(Polkit *p, sd_bus_message *m, const char *sender, const char *action, bool interactive,
                      sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_(query_freep) Query *q = NULL;
        int r;

        r = sd_bus_message_new_method_call(p->bus, &call, POLKIT_NAME, POLKIT_PATH, POLKIT_IFACE, "CheckAuthorization");
        if (r < 0)
                goto fail;
        r = sd_bus_message_append(call, "(sa{sv})sa{ss}us",
                                  "system-bus-name", 1, "name", "s", sender,
                                  action,
                                  0,
                                  interactive ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0u,
                                  "");
        if (r < 0)
                goto fail;

        q = g_new0(Query, 1);
        q->polkit = p;
        q->request = sd_bus_message_ref(m);
        q->action = g_strdup(action);
        r = sd_bus_call_async(p->bus, &q->slot, call, on_check_reply, q,
                              interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : POLKIT_TIMEOUT_USEC);
        if (r < 0)
                goto fail;
        g_hash_table_insert(p->queries, m, TAKE_PTR(q));
        return 1;

fail:
        log_warning_errno(r, "Cannot ask polkit whether %s may %s; denying", sender, action);
        {
                g_autofree char *why = g_strdup_printf("polkit could not be asked: %s", strerror(-r));
                return deny(m, action, why, error);
        }
}

static int authorize(Polkit *p, sd_bus_message *m, const char *action, bool interactive, sd_bus_error *error) {
        _cleanup_(query_freep) Query *answered = NULL;
        const char *sender;
        uid_t uid;
        int r;

        /* The second run: polkit has answered. */
        if (p->current && p->current->request == m)
                answered = TAKE_PTR(p->current);
        else {
                Query *q = g_hash_table_lookup(p->queries, m);

                if (q && q->verdict == VERDICT_PENDING)
                        return 1;       /* already asked; the answer brings M back */
                if (q) {
                        g_hash_table_steal(p->queries, m);
                        answered = q;
                }
        }
        if (answered) {
                if (strcmp(answered->action, action) != 0) {
                        log_warning("%s asked polkit about %s, then needed %s; denying",
                                    message_method(m), answered->action, action);
                        return deny(m, action, NULL, error);
                }
                return query_result(answered, m, error);
        }

        r = polkit_sender_euid(p, m, &uid);
        if (r < 0) {
                log_warning_errno(r, "Cannot tell who called %s; denying", message_method(m));
                return deny(m, action, "the caller's credentials could not be read", error);
        }
        if (uid == 0)
                return 0;

        sender = sd_bus_message_get_sender(m);
        if (!sender)
                return deny(m, action, "a caller without a bus name cannot be authorized", error);
        r = check_limits(p, sender, m, action, error);
        if (r < 0)
                return r;
        return ask_polkit(p, m, sender, action, interactive, error);
}

int polkit_authorize(Polkit *p, sd_bus_message *m, const char *action, sd_bus_error *error) {
        return authorize(p, m, action, sd_bus_message_get_allow_interactive_authorization(m) > 0, error);
}

int polkit_authorize_read(Polkit *p, sd_bus_message *m, const char *action, bool *ret_allowed) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = authorize(p, m, action, false, &error);
        if (r > 0)
                return 1;
        if (r < 0)
                log_debug("%s gets the answer of a caller without %s: %s",
                          message_method(m), action, error.message ?: strerror(-r));
        *ret_allowed = r == 0;
        return 0;
}

int polkit_new(sd_bus *bus, BusCallers *callers, Polkit **ret) {
        Polkit *p = g_new0(Polkit, 1);
        int r;

        p->bus = sd_bus_ref(bus);
        p->queries = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, (GDestroyNotify) query_free);
        p->callers = callers;
        r = sd_bus_add_filter(bus, &p->filter, on_incoming, p);
        if (r < 0) {
                polkit_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

void polkit_free(Polkit *p) {
        if (!p)
                return;
        if (g_hash_table_size(p->queries) > 0)
                log_info("Dropping %u calls that wait for polkit", g_hash_table_size(p->queries));
        sd_bus_slot_unref(p->filter);
        g_hash_table_unref(p->queries);
        query_free(p->current);
        sd_bus_unref(p->bus);
        g_free(p);
}

int polkit_authorize_change(Polkit *p, sd_bus_message *m, sd_bus_error *error) {
        return polkit_authorize(p, m, bus_change_action_of(m), error);
}
