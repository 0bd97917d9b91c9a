/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl presence [online|offline USER] */
#include "config.h"

#include <glib-unix.h>
#include <stdio.h>
#include <string.h>

#include "bus-names.h"
#include "ctl.h"


/* Whether ID's object is there: it exists exactly while the user is online. */
static gboolean is_online(Ctl *ctl, const char *id) {
        g_autofree char *segment = g_strdelimit(g_strdup(id), "-", '_');
        g_autofree char *path = g_strconcat(PRESENCE_PATH "/", segment, NULL);
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(
                outpost_client_get_connection(ctl->client), OUTPOST_BUS_NAME, path,
                "org.freedesktop.DBus.Properties", "Get",
                g_variant_new("(ss)", ONLINE_USER_IFACE, "UserId"), G_VARIANT_TYPE("(v)"),
                G_DBUS_CALL_FLAGS_NONE, OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC, NULL, NULL);

        return r != NULL;
}

typedef struct OnlineEntry {
        const char *id;
        gint64 since;
} OnlineEntry;

static int compare_entries(gconstpointer a, gconstpointer b) {
        return strcmp(((const OnlineEntry *) a)->id, ((const OnlineEntry *) b)->id);
}

/* The online users of a GetManagedObjects reply (a{oa{sa{sv}}}), by id,
 * and the manager's Generation of the same instant. Borrowed from OBJECTS. */
static GArray *online_entries(GVariant *objects, guint64 *ret_generation) {
        GArray *entries = g_array_new(FALSE, FALSE, sizeof(OnlineEntry));
        GVariantIter iter;
        const char *path;
        GVariant *ifaces;

        *ret_generation = 0;
        g_variant_iter_init(&iter, objects);
        while (g_variant_iter_next(&iter, "{&o@a{sa{sv}}}", &path, &ifaces)) {
                g_autoptr(GVariant) user = g_variant_lookup_value(ifaces, ONLINE_USER_IFACE,
                                                                  G_VARIANT_TYPE_VARDICT);
                g_autoptr(GVariant) presence = g_variant_lookup_value(ifaces, PRESENCE_IFACE,
                                                                      G_VARIANT_TYPE_VARDICT);
                OnlineEntry e = { 0 };

                if (presence)
                        g_variant_lookup(presence, "Generation", "t", ret_generation);
                /* The strings live in OBJECTS, which the caller keeps. */
                if (user && g_variant_lookup(user, "UserId", "&s", &e.id)) {
                        g_variant_lookup(user, "Since", "x", &e.since);
                        g_array_append_val(entries, e);
                }
                g_variant_unref(ifaces);
        }
        g_array_sort(entries, compare_entries);
        return entries;
}

/* Who is online: one GetManagedObjects, so the list and its generation are
 * of one instant. */
int ctl_presence_list(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = NULL, objects = NULL;
        g_autoptr(GArray) entries = NULL;
        g_autoptr(CtlTable) table = NULL;
        g_autoptr(GVariantBuilder) users = g_variant_builder_new(G_VARIANT_TYPE("aa{sv}"));
        const char *const headers[] = { _("NAME"), _("ID"), _("SINCE"), NULL };
        guint64 generation;

        if (!ctl_check_connected(ctl))
                return 1;
        reply = g_dbus_connection_call_sync(outpost_client_get_connection(ctl->client), OUTPOST_BUS_NAME,
                                            OUTPOST_ROOT_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                                            NULL, G_VARIANT_TYPE("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE,
                                            OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC, NULL, &error);
        if (!reply)
                return ctl_fail_error(error, _("Cannot read who is online"));
        objects = g_variant_get_child_value(reply, 0);
        entries = online_entries(objects, &generation);

        table = ctl_table_new(headers);
        for (guint i = 0; i < entries->len; i++) {
                const OnlineEntry *e = &g_array_index(entries, OnlineEntry, i);
                g_autoptr(GVariant) user = ctl_resolve_user(ctl, e->id, NULL);
                g_autofree char *since = ctl_format_time(e->since);
                const char *name = "";

                if (user)
                        g_variant_lookup(user, "name", "&s", &name);
                ctl_table_add(table, (const char *const[]) { name[0] ? name : "-", e->id, since, NULL });
                g_variant_builder_add_parsed(users, "{'id': <%s>, 'name': <%s>, 'since': <%x>}", e->id, name,
                                             e->since);
        }
        if (ctl->json) {
                ctl_json_print(g_variant_new_parsed("{'generation': <%t>, 'online-count': <%u>, 'online': <%v>}",
                                                    generation, entries->len, g_variant_builder_end(users)));
                return 0;
        }
        ctl_table_print(table);
        printf("\n");
        printf(g_dngettext(GETTEXT_PACKAGE, "%u user online.\n", "%u users online.\n", entries->len), entries->len);
        return 0;
}

typedef struct Hold {
        Ctl *ctl;
        char *id;
        char *word;
        gboolean done;
        GError *error;
} Hold;

static void on_held(GObject *source, GAsyncResult *result, gpointer data) {
        Hold *h = data;

        outpost_client_hold_presence_finish(OUTPOST_CLIENT(source), result, &h->error);
        h->done = TRUE;
        g_main_loop_quit(h->ctl->loop);
}

static void on_released(GObject *source, GAsyncResult *result, gpointer data) {
        Hold *h = data;

        outpost_client_release_presence_finish(OUTPOST_CLIENT(source), result, &h->error);
        h->done = TRUE;
        g_main_loop_quit(h->ctl->loop);
}

static gboolean on_stop(gpointer data) {
        Ctl *ctl = data;

        g_main_loop_quit(ctl->loop);
        return G_SOURCE_CONTINUE;
}

static void on_state(GObject *object, GParamSpec *pspec, gpointer data) {
        Hold *h = data;

        if (outpost_client_get_state(OUTPOST_CLIENT(object)) == OUTPOST_CLIENT_STATE_CONNECTED)
                fprintf(stderr, _("outpostctl: connected again; %s is held online again\n"), h->word);
        else
                fprintf(stderr, _("outpostctl: lost the service; waiting for it to hold %s online again\n"), h->word);
}

/* A hold belongs to the connection that made it: outpostctl holds the user
 * online while it runs, renewing the lease and asserting it again after an
 * outage, and releases it on SIGINT or SIGTERM. */
int ctl_presence_online(Ctl *ctl) {
        g_autoptr(GVariant) user = NULL;
        Hold h = { .ctl = ctl, .word = ctl->args[0] };
        guint sigint, sigterm;
        int r = 0;

        if (!ctl_check_connected(ctl) || !(user = ctl_get_user(ctl, h.word)))
                return 1;
        g_variant_lookup(user, "id", "s", &h.id);

        outpost_client_hold_presence(ctl->client, h.id, ctl->ttl, NULL, on_held, &h);
        g_main_loop_run(ctl->loop);
        if (h.error) {
                r = ctl_fail_error(h.error, _("Cannot hold %s online"), h.word);
                g_clear_error(&h.error);
                g_free(h.id);
                return r;
        }
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'id': <%s>, 'online': <true>}", h.id));
        else {
                printf(_("%s is online while outpostctl runs; stop it (Ctrl-C) to release\n"), h.word);
                fflush(stdout);
        }

        sigint = g_unix_signal_add(SIGINT, on_stop, ctl);
        sigterm = g_unix_signal_add(SIGTERM, on_stop, ctl);
        g_signal_connect(ctl->client, "notify::state", G_CALLBACK(on_state), &h);
        g_main_loop_run(ctl->loop);
        g_signal_handlers_disconnect_by_data(ctl->client, &h);
        g_source_remove(sigint);
        g_source_remove(sigterm);

        h.done = FALSE;
        outpost_client_release_presence(ctl->client, h.id, NULL, on_released, &h);
        if (!h.done)
                g_main_loop_run(ctl->loop);
        if (h.error)
                r = ctl_fail_error(h.error, _("Cannot release %s"), h.word);
        else if (!ctl->json)
                printf(_("Released %s\n"), h.word);
        g_clear_error(&h.error);
        g_free(h.id);
        return r;
}

int ctl_presence_offline(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) user = NULL;
        const char *id = NULL, *word = ctl->args[0];
        guint64 generation;
        gboolean still;

        if (!ctl_check_connected(ctl) || !(user = ctl_get_user(ctl, word)))
                return 1;
        g_variant_lookup(user, "id", "&s", &id);
        if (!outpost_presence_call_go_offline_sync(outpost_client_get_presence(ctl->client), id, &generation, NULL, &error))
                return ctl_fail_error(error, _("Cannot take %s offline"), word);
        still = is_online(ctl, id);
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'id': <%s>, 'online': <%b>, 'generation': <%t>}", id, still,
                                                    generation));
        else if (still)
                printf(_("%s is still online: other clients hold it (a client can release only its own hold)\n"), word);
        else
                printf(_("%s is offline\n"), word);
        return 0;
}
