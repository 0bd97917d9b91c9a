/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* OutpostClient: presence holds. The client keeps each hold it was asked
 * for, renews a lease with a ttl at half its length, and asserts every
 * hold again each time it is connected anew: presence is volatile, and a
 * daemon restart or a new bridge forgets it. */
#include "config.h"

#include "outpost-client-private.h"

void _outpost_hold_free(Hold *h) {
        g_clear_handle_id(&h->renew_id, g_source_remove);
        g_free(h->user_id);
        g_free(h);
}

/* Presence */

static void on_renewed(GObject *source, GAsyncResult *result, gpointer data) {
        g_autoptr(GError) error = NULL;
        char *user_id = data;

        if (!outpost_presence_call_go_online_finish(OUTPOST_PRESENCE(source), NULL, result, &error))
                g_debug("Cannot renew the presence of %s: %s", user_id, error->message);
        g_free(user_id);
}

static void hold_assert(Hold *h) {
        OutpostClient *self = h->client;

        if (self->state != OUTPOST_CLIENT_STATE_CONNECTED)
                return;         /* again once connected */
        outpost_presence_call_go_online(self->presence, h->user_id, h->ttl, NULL, on_renewed, g_strdup(h->user_id));
}

static gboolean hold_renew_cb(gpointer data) {
        hold_assert(data);
        return G_SOURCE_CONTINUE;
}

void _outpost_client_holds_reassert(OutpostClient *self) {
        GHashTableIter iter;
        Hold *h;

        g_hash_table_iter_init(&iter, self->holds);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &h))
                hold_assert(h);
}

/* GoOnline succeeded: keep the hold, the task's data. */
static void hold_kept(GTask *task, GVariant *reply) {
        OutpostClient *self = g_task_get_source_object(task);
        Hold *h = g_memdup2(g_task_get_task_data(task), sizeof(Hold));

        h->user_id = g_strdup(h->user_id);
        /* Renew well before the lease lapses. */
        if (h->ttl > 0)
                h->renew_id = g_timeout_add_seconds(MAX(h->ttl / 2, 1u), hold_renew_cb, h);
        g_hash_table_replace(self->holds, h->user_id, h);
        g_task_return_boolean(task, TRUE);
}

static void hold_template_free(Hold *h) {
        g_free(h->user_id);
        g_free(h);
}

/**
 * outpost_client_hold_presence:
 * @client: a client
 * @user_id: the id of a user
 * @ttl_seconds: the lease: 0 holds while the client is connected, otherwise
 *   the hold lapses after that many seconds unless renewed
 * @cancellable: (nullable): a #GCancellable
 * @callback: called once the user is held online
 * @user_data: data for @callback
 *
 * Holds @user_id online (Presence.GoOnline) until
 * outpost_client_release_presence() or the end of the client: the client
 * renews a lease with a ttl at half its length, and asserts the hold again
 * after every reconnection (presence does not survive a daemon restart).
 */
void outpost_client_hold_presence(OutpostClient *client, const char *user_id, guint ttl_seconds,
                                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data) {
        g_autoptr(GTask) task = NULL;
        OutpostCall *call;
        Hold *h;

        g_return_if_fail(OUTPOST_IS_CLIENT(client));
        g_return_if_fail(user_id != NULL);

        task = g_task_new(client, cancellable, callback, user_data);
        g_task_set_source_tag(task, outpost_client_hold_presence);
        h = g_new0(Hold, 1);
        h->client = client;
        h->user_id = g_strdup(user_id);
        h->ttl = ttl_seconds;
        g_task_set_task_data(task, h, (GDestroyNotify) hold_template_free);
        call = _outpost_client_call_begin(client, task, hold_kept);
        if (!call)
                return;
        outpost_presence_call_go_online(client->presence, user_id, ttl_seconds, cancellable, _outpost_client_call_done,
                                        call);
}

/**
 * outpost_client_hold_presence_finish:
 * @client: a client
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Returns: %TRUE when the user is held online
 */
gboolean outpost_client_hold_presence_finish(OutpostClient *client, GAsyncResult *result, GError **error) {
        g_return_val_if_fail(g_task_is_valid(result, client), FALSE);
        return g_task_propagate_boolean(G_TASK(result), error);
}

static void return_true(GTask *task, GVariant *reply) {
        g_task_return_boolean(task, TRUE);
}

/**
 * outpost_client_release_presence:
 * @client: a client
 * @user_id: the id of a user held with outpost_client_hold_presence()
 * @cancellable: (nullable): a #GCancellable
 * @callback: called once the hold is dropped
 * @user_data: data for @callback
 *
 * Stops holding @user_id online (Presence.GoOffline). The client forgets
 * the hold at once, whatever the outcome of the call.
 */
void outpost_client_release_presence(OutpostClient *client, const char *user_id, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data) {
        g_autoptr(GTask) task = NULL;
        OutpostCall *call;

        g_return_if_fail(OUTPOST_IS_CLIENT(client));
        g_return_if_fail(user_id != NULL);

        task = g_task_new(client, cancellable, callback, user_data);
        g_task_set_source_tag(task, outpost_client_release_presence);
        g_hash_table_remove(client->holds, user_id);
        call = _outpost_client_call_begin(client, task, return_true);
        if (!call)
                return;
        outpost_presence_call_go_offline(client->presence, user_id, cancellable, _outpost_client_call_done, call);
}

/**
 * outpost_client_release_presence_finish:
 * @client: a client
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Returns: %TRUE when the service dropped the hold
 */
gboolean outpost_client_release_presence_finish(OutpostClient *client, GAsyncResult *result, GError **error) {
        g_return_val_if_fail(g_task_is_valid(result, client), FALSE);
        return g_task_propagate_boolean(G_TASK(result), error);
}

