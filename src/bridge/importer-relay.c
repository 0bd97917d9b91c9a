/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What local callers ask the importer: method calls are relayed upstream
 * (a new call with the body copied, the reply or error mapped back), reads
 * are answered from the cache, and presence calls go through the hold
 * accounting of importer-holds.c (DESIGN.md §5). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "bus-gvariant.h"
#include "bus-methods.h"
#include "frame-limit.h"
#include "importer.h"
#include "log.h"
#include "macro.h"
#include "validate.h"

/* A local call relayed upstream, kept so that a link that drops can fail
 * it with Disconnected at once. */
typedef struct RelayedCall {
        Importer *importer;
        sd_bus_message *call;
        sd_bus_slot *slot;
        char *hold_user;                /* GoOnline: the user the caller holds from the start */
        uint64_t hold_id;               /* and the hold the call made (0: it renewed one) */
        bool edit_managed_objects;      /* GetManagedObjects: add our /bridge object */
        bool hide_messages;             /* FetchSince: the caller may not read messages/ events */
        bool large_reply;               /* its reply may run to megabytes */
        sd_bus_message *upstream_call;  /* built for the upstream, while it waits its turn */
} RelayedCall;

/* Replies come back on one stream, in the order the upstream answers, and
 * a reply of 8 MiB holds up everything behind it for as long as the link
 * takes to carry it. So calls whose reply may be that large go upstream a
 * few at a time for the whole link and one at a time for each caller: a
 * caller paging through FetchSince waits for its own pages, and the
 * others' calls overtake it instead of queueing behind all of its pages.
 * The rest go at once. A caller's calls keep their order: once one of
 * them waits, the ones after it wait too. */
#define LARGE_REPLIES_IN_FLIGHT 2

static unsigned caller_calls(Importer *im, const char *sender) {
        return sender && im->caller_calls ? GPOINTER_TO_UINT(g_hash_table_lookup(im->caller_calls, sender)) : 0;
}

static void caller_calls_add(Importer *im, const char *sender, int delta) {
        unsigned n;

        if (!sender || !im->caller_calls)
                return;
        n = caller_calls(im, sender) + delta;
        if (n == 0)
                g_hash_table_remove(im->caller_calls, sender);
        else
                g_hash_table_replace(im->caller_calls, g_strdup(sender), GUINT_TO_POINTER(n));
}

static RelayedCall *relayed_call_new(Importer *im, sd_bus_message *m) {
        RelayedCall *c = g_new0(RelayedCall, 1);

        c->importer = im;
        c->call = sd_bus_message_ref(m);
        caller_calls_add(im, sd_bus_message_get_sender(m), +1);
        return c;
}

static void relayed_call_free(RelayedCall *c) {
        if (c->large_reply && c->importer->large_in_flight)
                (void) g_ptr_array_remove_fast(c->importer->large_in_flight, c);
        caller_calls_add(c->importer, sd_bus_message_get_sender(c->call), -1);
        sd_bus_slot_unref(c->slot);
        sd_bus_message_unref(c->upstream_call);
        sd_bus_message_unref(c->call);
        g_free(c->hold_user);
        g_free(c);
}

/* Whether a call that fails may have been carried out is what its caller
 * must know to retry it safely (DESIGN.md §4 rule 5): one that never left
 * was not; one sent upstream may have been, whatever ended the link. */
static int reply_disconnected(Importer *im, sd_bus_message *m) {
        char since[64];

        return sd_bus_reply_method_errorf(m, BUS_ERROR_DISCONNECTED,
                                          "Upstream %s is not connected (%s since %s)%s%s; the call was not carried out",
                                          importer_upstream(im), im->state,
                                          importer_since_string(im, since, sizeof since),
                                          im->bridge_last_error && im->bridge_last_error[0] ? ": " : "",
                                          im->bridge_last_error ?: "");
}

static int reply_lost_in_flight(Importer *im, sd_bus_message *m) {
        return sd_bus_reply_method_errorf(m, BUS_ERROR_DISCONNECTED,
                                          "The link to upstream %s ended while the call was in flight%s%s%s; "
                                          "the call may have been carried out",
                                          importer_upstream(im),
                                          im->bridge_last_error && im->bridge_last_error[0] ? " (" : "",
                                          im->bridge_last_error ?: "",
                                          im->bridge_last_error && im->bridge_last_error[0] ? ")" : "");
}

/* C failed: a hold its GoOnline made is undone, as the caller is told. */
static void undo_hold(RelayedCall *c) {
        if (c->hold_user)
                importer_hold_undo(c->importer, sd_bus_message_get_sender(c->call), c->hold_user, c->hold_id);
}

/* Calls that never left: the link went down while they waited their turn. */
static void fail_waiting(Importer *im) {
        RelayedCall *c;

        while (im->waiting && (c = g_queue_pop_head(im->waiting))) {
                undo_hold(c);
                (void) reply_disconnected(im, c->call);
                relayed_call_free(c);
        }
}

void importer_relay_fail_all(Importer *im) {
        g_autoptr(GHashTable) calls = g_steal_pointer(&im->in_flight);
        GHashTableIter iter;
        RelayedCall *c;

        im->in_flight = g_hash_table_new_full(g_direct_hash, g_direct_equal, (GDestroyNotify) relayed_call_free, NULL);
        if (calls) {
                g_hash_table_iter_init(&iter, calls);
                while (g_hash_table_iter_next(&iter, (gpointer *) &c, NULL)) {
                        undo_hold(c);
                        (void) reply_lost_in_flight(im, c->call);
                }
        }
        fail_waiting(im);
}

void importer_relay_free(Importer *im) {
        g_clear_pointer(&im->polkit, polkit_free);
        im->audit = audit_free(im->audit);
        im->callers = bus_callers_free(im->callers);
        if (im->waiting)
                g_queue_free_full(g_steal_pointer(&im->waiting), (GDestroyNotify) relayed_call_free);
        g_clear_pointer(&im->in_flight, g_hash_table_unref);
        g_clear_pointer(&im->large_in_flight, g_ptr_array_unref);
        g_clear_pointer(&im->caller_calls, g_hash_table_unref);
}

/* Relaying */

static GVariant *bridge_object_entry(Importer *im) {
        GVariantBuilder props, ifaces;

        g_variant_builder_init(&props, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&props, "{sv}", "State", g_variant_new_string(im->state));
        g_variant_builder_add(&props, "{sv}", "Upstream", g_variant_new_string(importer_upstream(im)));
        g_variant_builder_add(&props, "{sv}", "LastError", g_variant_new_string(im->bridge_last_error ?: ""));
        g_variant_builder_add(&props, "{sv}", "Since", g_variant_new_int64(im->since));
        g_variant_builder_add(&props, "{sv}", "Reconnects", g_variant_new_uint32(im->reconnects));
        g_variant_builder_add(&props, "{sv}", "Hops", g_variant_new_uint32(im->hops));
        g_variant_builder_init(&ifaces, G_VARIANT_TYPE("a{sa{sv}}"));
        g_variant_builder_add(&ifaces, "{s@a{sv}}", BRIDGE_IFACE, g_variant_builder_end(&props));
        return g_variant_new("{o@a{sa{sv}}}", BRIDGE_PATH, g_variant_builder_end(&ifaces));
}

/* OBJECTS (a{oa{sa{sv}}}) without any /bridge object, plus ours. */
static GVariant *with_our_bridge_object(Importer *im, GVariant *objects) {
        GVariantBuilder b;
        GVariantIter iter;
        GVariant *entry;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a{oa{sa{sv}}}"));
        g_variant_iter_init(&iter, objects);
        while ((entry = g_variant_iter_next_value(&iter))) {
                const char *path;
                g_variant_get_child(entry, 0, "&o", &path);
                if (strcmp(path, BRIDGE_PATH) != 0)
                        g_variant_builder_add_value(&b, entry);
                g_variant_unref(entry);
        }
        g_variant_builder_add_value(&b, bridge_object_entry(im));
        return g_variant_builder_end(&b);
}

static int reply_managed_objects(Importer *im, sd_bus_message *call, GVariant *objects) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GVariant) all = g_variant_ref_sink(with_our_bridge_object(im, objects));
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        r = bus_message_append_gvariant(reply, all);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Copy one event of REPLY, entered at its (tsxa{sv}), to M unless it is
 * of a messages/ topic. */
static int copy_event_but_message(sd_bus_message *m, sd_bus_message *reply) {
        const char *topic;
        uint64_t seq;
        int64_t time;
        int r;

        r = sd_bus_message_read(reply, "tsx", &seq, &topic, &time);
        if (r < 0)
                return r;
        if (topic_is_message(topic))
                return sd_bus_message_skip(reply, "a{sv}");
        r = sd_bus_message_open_container(m, 'r', "tsxa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "tsx", seq, topic, time);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(m, reply, false);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

/* Copy the events of REPLY (FetchSince's, at its a(tsxa{sv})) to M, but
 * those of messages/ topics. */
static int copy_events_but_messages(sd_bus_message *m, sd_bus_message *reply) {
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "(tsxa{sv})");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "(tsxa{sv})");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'r', "tsxa{sv}")) > 0) {
                r = copy_event_but_message(m, reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

/* The upstream answered FetchSince for the link's account, which may read
 * every message; this caller may not, so the messages/ events are taken
 * out here. next_after and more stay the upstream's: the caller pages on
 * past them, as outpostd's own callers do (DESIGN.md §3, Messages). */
static int new_reply_without_messages(sd_bus_message *call, sd_bus_message *reply, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *filtered = NULL;
        int r;

        r = sd_bus_message_new_method_return(call, &filtered);
        if (r < 0)
                return r;
        r = copy_events_but_messages(filtered, reply);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(filtered, reply, true);     /* next_after, more */
        if (r < 0)
                return r;
        *ret = TAKE_PTR(filtered);
        return 0;
}

static int reply_without_messages(sd_bus_message *call, sd_bus_message *reply) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *filtered = NULL;
        int r;

        r = new_reply_without_messages(call, reply, &filtered);
        if (r < 0)
                return sd_bus_reply_method_errorf(call, SD_BUS_ERROR_FAILED,
                                                  "Cannot read the upstream's answer to FetchSince: %s", strerror(-r));
        return sd_bus_send(NULL, filtered, NULL);
}

static void finish_relayed(RelayedCall *c, sd_bus_message *reply) {
        Importer *im = c->importer;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_autoptr(GVariant) objects = NULL;

        audit_relayed_change(im->audit, c->call, NULL, reply);
        if (e)
                undo_hold(c);
        if (!e && c->edit_managed_objects && bus_message_read_gvariant(reply, &objects) >= 0) {
                (void) reply_managed_objects(im, c->call, objects);
                return;
        }
        if (!e && c->hide_messages) {
                (void) reply_without_messages(c->call, reply);
                return;
        }
        (void) bus_reply_copy(c->call, reply);
}

static int reply_cannot_relay(sd_bus_message *m, int error) {
        return sd_bus_reply_method_errorf(m, SD_BUS_ERROR_FAILED,
                                          "Cannot relay the call upstream (%s); it was not carried out",
                                          strerror(-error));
}

static void send_waiting(Importer *im);

static int on_relayed_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        RelayedCall *c = userdata;
        Importer *im = c->importer;
        bool large = c->large_reply;

        /* Replies and signals are relayed in the order the upstream sent
         * them, so the signal-before-reply rule holds over every hop. */
        finish_relayed(c, reply);
        g_hash_table_remove(im->in_flight, c);
        if (large)
                send_waiting(im);
        return 0;
}

static bool reply_may_be_large(sd_bus_message *m) {
        return sd_bus_message_is_method_call(m, EVENTS_IFACE, "FetchSince") ||
               sd_bus_message_is_method_call(m, USERS_IFACE, "ListUsers") ||
               sd_bus_message_is_method_call(m, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects");
}

static bool caller_has_large_in_flight(Importer *im, const char *sender) {
        for (guint i = 0; i < im->large_in_flight->len; i++) {
                RelayedCall *c = g_ptr_array_index(im->large_in_flight, i);
                if (g_strcmp0(sd_bus_message_get_sender(c->call), sender) == 0)
                        return true;
        }
        return false;
}

static bool large_reply_may_go(Importer *im, RelayedCall *c) {
        return im->large_in_flight->len < LARGE_REPLIES_IN_FLIGHT &&
               !caller_has_large_in_flight(im, sd_bus_message_get_sender(c->call));
}

static bool caller_has_waiting(Importer *im, const char *sender) {
        for (GList *l = im->waiting->head; l; l = l->next) {
                RelayedCall *w = l->data;
                if (g_strcmp0(sd_bus_message_get_sender(w->call), sender) == 0)
                        return true;
        }
        return false;
}

static int send_upstream(RelayedCall *c, sd_bus_message *call) {
        Importer *im = c->importer;
        int r;

        r = sd_bus_call_async(im->upstream, &c->slot, call, on_relayed_reply, c, 0);
        if (r < 0)
                return r;
        g_hash_table_add(im->in_flight, c);
        if (c->large_reply)
                g_ptr_array_add(im->large_in_flight, c);
        return 0;
}

/* Send the waiting calls whose turn has come, in the order they came. A
 * caller whose first waiting call may not go yet keeps the rest of its
 * calls waiting too. */
static void send_waiting(Importer *im) {
        g_autoptr(GHashTable) held_back = g_hash_table_new(g_str_hash, g_str_equal);
        GList *l = im->waiting->head;
        int r;

        while (l) {
                RelayedCall *c = l->data;
                const char *sender = sd_bus_message_get_sender(c->call) ?: "";
                GList *next = l->next;

                if (g_hash_table_contains(held_back, sender) || (c->large_reply && !large_reply_may_go(im, c))) {
                        g_hash_table_add(held_back, (gpointer) sender);
                        l = next;
                        continue;
                }
                g_queue_delete_link(im->waiting, l);
                r = send_upstream(c, c->upstream_call);
                if (r < 0) {
                        (void) reply_cannot_relay(c->call, r);
                        relayed_call_free(c);
                } else
                        c->upstream_call = sd_bus_message_unref(c->upstream_call);
                l = next;
        }
}

/* Send CALL (built for the upstream) on behalf of the local message M, now
 * or when its turn comes. */
static int relay_prepared(Importer *im, sd_bus_message *m, sd_bus_message *call, RelayedCall **ret) {
        RelayedCall *c;
        int r;

        r = sd_bus_message_set_allow_interactive_authorization(call,
                                                               sd_bus_message_get_allow_interactive_authorization(m));
        if (r < 0)
                return r;
        c = relayed_call_new(im, m);
        c->large_reply = reply_may_be_large(m);
        if (caller_has_waiting(im, sd_bus_message_get_sender(m)) || (c->large_reply && !large_reply_may_go(im, c))) {
                c->upstream_call = sd_bus_message_ref(call);
                g_queue_push_tail(im->waiting, c);
        } else {
                r = send_upstream(c, call);
                if (r < 0) {
                        relayed_call_free(c);
                        return r;
                }
        }
        if (ret)
                *ret = c;
        return 0;
}

static int new_upstream_call(Importer *im, sd_bus_message *m, sd_bus_message **ret) {
        return sd_bus_message_new_method_call(im->upstream, ret, NULL, sd_bus_message_get_path(m),
                                              sd_bus_message_get_interface(m), sd_bus_message_get_member(m));
}

static int relay(Importer *im, sd_bus_message *m, RelayedCall **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        if (im->phase != PHASE_UP)
                return reply_disconnected(im, m);
        r = new_upstream_call(im, m, &call);
        if (r < 0)
                return reply_cannot_relay(m, r);
        r = sd_bus_message_copy(call, m, true);
        if (r < 0)
                return reply_cannot_relay(m, r);
        r = relay_prepared(im, m, call, ret);
        if (r < 0)
                return reply_cannot_relay(m, r);
        return 0;
}

static int relay_go_online_without_ttl(Importer *im, sd_bus_message *m, const char *user, RelayedCall **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        r = new_upstream_call(im, m, &call);
        if (r < 0)
                return r;
        r = sd_bus_message_append(call, "su", user, 0);
        if (r < 0)
                return r;
        return relay_prepared(im, m, call, ret);
}

/* Every local hold is counted per local holder, and lapses here when it
 * has a ttl; upstream, the link holds the user without ttl while any local
 * hold remains, so one client's ttl cannot end another's hold. */
static int relay_go_online(Importer *im, sd_bus_message *m) {
        RelayedCall *c = NULL;
        uint64_t hold_id = 0;
        const char *user;
        uint32_t ttl;
        int r;

        if (im->phase != PHASE_UP)
                return reply_disconnected(im, m);
        r = sd_bus_message_read(m, "su", &user, &ttl);
        if (r < 0)
                return r;
        r = importer_hold_add(im, m, user, ttl, &hold_id);
        if (r <= 0)
                return r;
        r = relay_go_online_without_ttl(im, m, user, &c);
        if (r < 0) {
                importer_hold_undo(im, sd_bus_message_get_sender(m), user, hold_id);
                return reply_cannot_relay(m, r);
        }
        c->hold_user = g_strdup(user);
        c->hold_id = hold_id;
        return 0;
}

/* GoOffline drops the caller's local hold; upstream only once no local
 * client holds the user any more. */
static int relay_go_offline(Importer *im, sd_bus_message *m) {
        GVariant *generation;
        const char *user;
        int r;

        if (im->phase != PHASE_UP)
                return reply_disconnected(im, m);
        r = sd_bus_message_read(m, "s", &user);
        if (r < 0)
                return r;
        (void) importer_hold_remove(im, sd_bus_message_get_sender(m), user);
        generation = cache_get(im->cache, PRESENCE_PATH, PRESENCE_IFACE, "Generation");
        if (importer_hold_count(im, user) > 0 && generation)
                /* Still held by another local client: nothing changes. */
                return sd_bus_reply_method_return(m, "t", g_variant_get_uint64(generation));
        (void) sd_bus_message_rewind(m, true);
        return relay(im, m, NULL);
}

/* Reads */

static int reply_variant(sd_bus_message *m, const char *type, GVariant *v) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        if (type) {
                r = sd_bus_message_open_container(reply, 'v', type);
                if (r < 0)
                        return r;
        }
        r = bus_message_append_gvariant(reply, v);
        if (r < 0)
                return r;
        if (type) {
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        return sd_bus_send(NULL, reply, NULL);
}

/* FirstSeq and LastSeq emit no change signal: the cache cannot follow
 * them, so they are read from the upstream while it is there. */
static bool read_through(Importer *im, const char *iface, const char *prop) {
        return im->phase == PHASE_UP && strcmp(iface, EVENTS_IFACE) == 0 &&
               (!prop || strcmp(prop, "FirstSeq") == 0 || strcmp(prop, "LastSeq") == 0);
}

static int handle_properties(Importer *im, sd_bus_message *m) {
        const char *path = sd_bus_message_get_path(m), *iface, *prop = NULL;
        int r;

        if (sd_bus_message_is_method_call(m, NULL, "Set"))
                return relay(im, m, NULL);
        r = sd_bus_message_read(m, "s", &iface);
        if (r >= 0 && sd_bus_message_is_method_call(m, NULL, "Get"))
                r = sd_bus_message_read(m, "s", &prop);
        if (r < 0)
                return sd_bus_reply_method_errorf(m, SD_BUS_ERROR_INVALID_ARGS, "Bad arguments");
        if (read_through(im, iface, prop)) {
                (void) sd_bus_message_rewind(m, true);
                return relay(im, m, NULL);
        }
        if (!prop) {
                g_autoptr(GVariant) all = cache_get_all(im->cache, path, iface);
                if (!all)
                        return sd_bus_reply_method_errorf(m, SD_BUS_ERROR_UNKNOWN_INTERFACE,
                                                          "No interface %s on %s", iface, path);
                g_variant_ref_sink(all);
                return reply_variant(m, NULL, all);
        }
        GVariant *v = cache_get(im->cache, path, iface, prop);
        if (!v)
                return sd_bus_reply_method_errorf(m, SD_BUS_ERROR_UNKNOWN_PROPERTY, "No property %s.%s on %s",
                                                  iface, prop, path);
        return reply_variant(m, g_variant_get_type_string(v), v);
}

static int handle_managed_objects(Importer *im, sd_bus_message *m) {
        RelayedCall *c = NULL;
        g_autoptr(GVariant) objects = NULL;

        /* A fresh snapshot while the link is up (it reads FirstSeq and
         * LastSeq too); the cache, consistent if old, while it is down. */
        if (im->phase == PHASE_UP) {
                int r = relay(im, m, &c);
                if (c)
                        c->edit_managed_objects = true;
                return r;
        }
        objects = g_variant_ref_sink(cache_get_objects(im->cache));
        return reply_managed_objects(im, m, objects);
}

/* FetchSince: the messages/ events only for a caller authorized for
 * read-messages, as outpostd gives them. polkit is asked only when the
 * prefixes could take messages in; arguments that cannot be read hide
 * them too (the upstream refuses such a call anyway). */
static int read_fetch_prefixes(sd_bus_message *m, char ***ret) {
        int r;

        r = sd_bus_message_skip(m, "st");
        if (r < 0)
                return r;
        return bus_message_read_strv_nonnull(m, ret);
}

static int relay_fetch_since(Importer *im, sd_bus_message *m) {
        g_auto(GStrv) prefixes = NULL;
        RelayedCall *c = NULL;
        bool allowed = false;
        int r;

        if (read_fetch_prefixes(m, &prefixes) >= 0) {
                if (!topic_prefixes_reach_messages(prefixes))
                        allowed = true;
                else if (polkit_authorize_read(im->polkit, m, POLKIT_ACTION_READ_MESSAGES, &allowed) > 0)
                        return 0;       /* polkit was asked; the message comes back here later */
        }
        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        r = relay(im, m, &c);
        if (r < 0)
                return r;
        if (c)
                c->hide_messages = !allowed;
        return 0;
}

/* A site behaves like central: local callers are authorized here, with the
 * same actions, before anything is relayed (DESIGN.md §5). Upstream, the
 * link's account is trusted by the polkit rule shipped with the project. */
static bool authorized(Importer *im, sd_bus_message *m) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (!bus_change_method_of(m))
                return true;
        r = polkit_authorize_change(im->polkit, m, &error);
        if (r == 0)
                return true;
        if (r < 0)
                (void) sd_bus_reply_method_error(m, &error);
        /* r > 0: polkit was asked; the message comes back here later. */
        return false;
}

/* One local caller must never be able to end or starve the link that
 * every caller shares. The listener upstream drops the whole link for a
 * message over its size limit, so the call is measured as it will be
 * relayed (a new message: its header is not the local one) and refused
 * here, to this caller alone; unix fds cannot cross a link at all; and
 * the listener answers calls beyond its limit in flight with an error, so
 * each local caller gets a share of it. Returns true when M was answered. */
static bool refuse_unrelayable(Importer *im, sd_bus_message *m) {
        const BridgeConfig *config = &im->bridge->config;
        const char *signature = sd_bus_message_get_signature(m, true);
        MessageMeasure measure;
        int r;

        if (signature && strchr(signature, SD_BUS_TYPE_UNIX_FD)) {
                (void) sd_bus_reply_method_errorf(m, BUS_ERROR_INVALID_ARGUMENT,
                                                  "Unix file descriptors cannot be relayed over a bridge "
                                                  "(arguments '%s')", signature);
                return true;
        }
        if (caller_calls(im, sd_bus_message_get_sender(m)) >= config->max_calls_per_caller) {
                (void) sd_bus_reply_method_errorf(m, BUS_ERROR_LIMIT_EXCEEDED,
                                                  "Too many calls of this caller in flight upstream "
                                                  "(at most %u, max-calls-per-caller)", config->max_calls_per_caller);
                return true;
        }
        r = bus_message_measure_call(m, NULL, &measure);
        if (r < 0) {
                (void) sd_bus_reply_method_errorf(m, BUS_ERROR_INVALID_ARGUMENT, "Cannot read the call: %s",
                                                  strerror(-r));
                return true;
        }
        if (measure.depth > BUS_MESSAGE_DEPTH_MAX) {
                (void) sd_bus_reply_method_errorf(m, BUS_ERROR_LIMIT_EXCEEDED,
                                                  "The call nests containers %u deep, more than the limit of %u",
                                                  measure.depth, BUS_MESSAGE_DEPTH_MAX);
                return true;
        }
        if (measure.size > config->max_message_bytes) {
                (void) sd_bus_reply_method_errorf(m, BUS_ERROR_LIMIT_EXCEEDED,
                                                  "The call would go upstream as a message of %" PRIu64 " bytes, "
                                                  "more than the limit of %u (max-message-bytes)",
                                                  measure.size, config->max_message_bytes);
                return true;
        }
        return false;
}

/* Every message on the local bus comes here first. */
static int on_local_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Importer *im = userdata;
        const char *path = sd_bus_message_get_path(m), *iface = sd_bus_message_get_interface(m);

        if (!sd_bus_message_is_method_call(m, NULL, NULL) || !object_path_in_tree(path))
                return 0;
        if (strcmp(path, BRIDGE_PATH) == 0)
                return 0;       /* our own object, served by its vtable */
        if (iface && strcmp(iface, "org.freedesktop.DBus.Peer") == 0)
                return 0;
        if (refuse_unrelayable(im, m))
                return 1;
        if (iface && strcmp(iface, "org.freedesktop.DBus.Properties") == 0)
                return (void) handle_properties(im, m), 1;
        if (sd_bus_message_is_method_call(m, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects") &&
            strcmp(path, OUTPOST_ROOT_PATH) == 0)
                return (void) handle_managed_objects(im, m), 1;
        if (!authorized(im, m))
                return 1;
        if (sd_bus_message_is_method_call(m, PRESENCE_IFACE, "GoOnline"))
                return (void) relay_go_online(im, m), 1;
        if (sd_bus_message_is_method_call(m, PRESENCE_IFACE, "GoOffline"))
                return (void) relay_go_offline(im, m), 1;
        if (sd_bus_message_is_method_call(m, EVENTS_IFACE, "FetchSince"))
                return (void) relay_fetch_since(im, m), 1;
        (void) relay(im, m, NULL);
        return 1;
}

int importer_relay_setup(Importer *im) {
        int r;

        im->callers = bus_callers_new();
        r = polkit_new(im->local, im->callers, &im->polkit);
        if (r < 0)
                return r;
        r = audit_new(im->callers, &im->audit);
        if (r < 0)
                return r;
        im->in_flight = g_hash_table_new_full(g_direct_hash, g_direct_equal, (GDestroyNotify) relayed_call_free, NULL);
        im->caller_calls = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        im->waiting = g_queue_new();
        im->large_in_flight = g_ptr_array_new();
        return sd_bus_add_filter(im->local, NULL, on_local_message, im);
}
