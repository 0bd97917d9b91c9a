/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who is online, as it changes: a liboutpost GListModel printed instead of
 * shown. A GTK program binds the same model to a list view, e.g.
 *
 *     GtkSelectionModel *sel = GTK_SELECTION_MODEL(gtk_no_selection_new(
 *             g_object_ref(G_LIST_MODEL(outpost_client_get_online_users(client)))));
 *     GtkWidget *view = gtk_list_view_new(sel, factory);
 *
 * with a factory that shows each item's "user-id" and "since".
 *
 *     online-users [--session | --address=ADDRESS]
 */
#include <outpost/outpost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_users(GListModel *model) {
        guint n = g_list_model_get_n_items(model);

        printf("%u online\n", n);
        for (guint i = 0; i < n; i++) {
                g_autoptr(OutpostOnlineUser) user = g_list_model_get_item(model, i);
                g_autoptr(GDateTime) since = g_date_time_new_from_unix_local(outpost_online_user_get_since(user) /
                                                                             G_USEC_PER_SEC);
                g_autofree char *when = since ? g_date_time_format(since, "%Y-%m-%d %H:%M:%S") : g_strdup("?");

                printf("  %s  since %s\n", outpost_online_user_get_user_id(user), when);
        }
        fflush(stdout);
}

/* A view would update only what changed; this prints it all again. */
static void on_items_changed(GListModel *model, guint position, guint removed, guint added, gpointer data) {
        printf("-- at %u: %u went, %u came\n", position, removed, added);
        print_users(model);
}

static void on_client(GObject *source, GAsyncResult *result, gpointer data) {
        OutpostClient **client = data;
        g_autoptr(GError) error = NULL;
        GListModel *model;

        *client = outpost_client_new_finish(result, &error);
        if (!*client) {
                fprintf(stderr, "online-users: %s\n", error->message);
                exit(1);
        }
        model = G_LIST_MODEL(outpost_client_get_online_users(*client));
        g_signal_connect(model, "items-changed", G_CALLBACK(on_items_changed), NULL);
}

int main(int argc, char **argv) {
        g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
        OutpostClient *client = NULL;

        if (argc > 1 && g_str_has_prefix(argv[1], "--address="))
                outpost_client_new_for_address(argv[1] + strlen("--address="), NULL, on_client, &client);
        else
                outpost_client_new(argc > 1 && g_str_equal(argv[1], "--session") ? G_BUS_TYPE_SESSION
                                                                                   : G_BUS_TYPE_SYSTEM,
                                   NULL, on_client, &client);
        g_main_loop_run(loop);
        g_clear_object(&client);
        return 0;
}
