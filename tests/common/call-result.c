/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "call-result.h"

void call_result_clear(CallResult *r) {
        g_clear_pointer(&r->reply, g_variant_unref);
        g_clear_error(&r->error);
        r->done = FALSE;
}

void on_client_call(GObject *source, GAsyncResult *result, gpointer data) {
        CallResult *r = data;

        r->reply = outpost_client_call_finish(OUTPOST_CLIENT(source), result, &r->error);
        r->done = TRUE;
}

void on_get_user(GObject *source, GAsyncResult *result, gpointer data) {
        CallResult *r = data;

        outpost_users_call_get_user_finish(OUTPOST_USERS(source), &r->reply, result, &r->error);
        r->done = TRUE;
}

void on_save_user(GObject *source, GAsyncResult *result, gpointer data) {
        CallResult *r = data;
        g_autofree char *tag = NULL;

        outpost_users_call_save_user_finish(OUTPOST_USERS(source), &tag, result, &r->error);
        r->done = TRUE;
}

void on_held(GObject *source, GAsyncResult *result, gpointer data) {
        CallResult *r = data;

        outpost_client_hold_presence_finish(OUTPOST_CLIENT(source), result, &r->error);
        r->done = TRUE;
}
