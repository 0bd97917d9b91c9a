/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <outpost/outpost.h>

/* The outcome of one asynchronous liboutpost call in a test: the
 * callbacks below fill it; the test waits for DONE. */
typedef struct CallResult {
        gboolean done;
        GVariant *reply;
        GError *error;
} CallResult;

void call_result_clear(CallResult *r);

/* GAsyncReadyCallbacks, with a CallResult as user data. */
void on_client_call(GObject *source, GAsyncResult *result, gpointer data);     /* outpost_client_call() */
void on_get_user(GObject *source, GAsyncResult *result, gpointer data);        /* Users.GetUser */
void on_save_user(GObject *source, GAsyncResult *result, gpointer data);       /* Users.SaveUser */
void on_held(GObject *source, GAsyncResult *result, gpointer data);            /* hold_presence() */
