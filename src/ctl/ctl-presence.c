/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl presence [online|offline USER] */
#include "config.h"

#include <glib-unix.h>
#include <stdio.h>

#include "ctl.h"

static GVariant *get_property(Ctl *ctl, GDBusProxy *proxy, const char *name, GError **error) {
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(
                outpost_client_get_connection(ctl->client), g_dbus_proxy_get_name(proxy),
                g_dbus_proxy_get_object_path(proxy), "org.freedesktop.DBus.Properties", "Get",
                g_variant_new("(ss)", g_dbus_proxy_get_interface_name(proxy), name), G_VARIANT_TYPE("(v)"),
                G_DBUS_CALL_FLAGS_NONE, OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC, NULL, error);
        GVariant *v = NULL;

        if (r)
                g_variant_get(r, "(v)", &v);
        return v;
}

static gboolean is_online(Ctl *ctl, const char *id) {
        g_autoptr(GVariant) online = get_property(ctl, G_DBUS_PROXY(outpost_client_get_presence(ctl->client)), "Online", NULL);
        g_autofree const char **ids = online ? g_variant_get_strv(online, NULL) : NULL;

        return ids && g_strv_contains(ids, id);
}

int ctl_presence_list(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) online = NULL, generation = NULL;
        g_autoptr(CtlTable) table = NULL;
        g_autoptr(GVariantBuilder) users = g_variant_builder_new(G_VARIANT_TYPE("aa{sv}"));
        const char *const headers[] = { _("NAME"), _("ID"), NULL };
        GDBusProxy *presence = G_DBUS_PROXY(outpost_client_get_presence(ctl->client));
        GVariantIter iter;
        const char *id;
        guint n = 0;

        if (!ctl_check_connected(ctl))
                return 1;
        if (!(online = get_property(ctl, presence, "Online", &error)) ||
            !(generation = get_property(ctl, presence, "Generation", &error)))
                return ctl_fail_error(error, _("Cannot read who is online"));

        table = ctl_table_new(headers);
        g_variant_iter_init(&iter, online);
        while (g_variant_iter_next(&iter, "&s", &id)) {
                g_autoptr(GVariant) user = ctl_resolve_user(ctl, id, NULL);
                const char *name = "";

                if (user)
                        g_variant_lookup(user, "name", "&s", &name);
                ctl_table_add(table, (const char *const[]) { name[0] ? name : "-", id, NULL });
                g_variant_builder_add_parsed(users, "{'id': <%s>, 'name': <%s>}", id, name);
                n++;
        }
        if (ctl->json) {
                ctl_json_print(g_variant_new_parsed("{'generation': <%v>, 'online': <%v>}", generation,
                                                    g_variant_builder_end(users)));
                return 0;
        }
        ctl_table_print(table);
        printf("\n");
        printf(g_dngettext(GETTEXT_PACKAGE, "%u user online.\n", "%u users online.\n", n), n);
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
