/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* outpostctl: the command-line client (DESIGN.md §4a), on liboutpost. One
 * file per group of verbs; this header is what they share. */

#include <glib/gi18n.h>
#include <outpost/outpost.h>

typedef struct Ctl {
        OutpostClient *client;
        GMainLoop *loop;
        gboolean json;

        /* Options of the verbs. */
        char *if_tag;
        gboolean have_ttl;
        guint ttl;
        gboolean have_since;
        guint64 since;
        char *topic;
        gboolean follow;
        char *request_id;

        /* The words after the verb, and after "--". */
        char **args;
        char **rest;
        gboolean have_rest;

        int exit_status;        /* for the verbs that run until stopped */
} Ctl;

/* Each verb returns its exit status: 0 or 1. */
int ctl_status(Ctl *ctl);
int ctl_bridge_status(Ctl *ctl);
int ctl_bridge_reconnect(Ctl *ctl);
int ctl_bridge_peers(Ctl *ctl);
int ctl_users_list(Ctl *ctl);
int ctl_users_show(Ctl *ctl);
int ctl_users_create(Ctl *ctl);
int ctl_users_set(Ctl *ctl);
int ctl_users_delete(Ctl *ctl);
int ctl_presence_list(Ctl *ctl);
int ctl_presence_online(Ctl *ctl);
int ctl_presence_offline(Ctl *ctl);
int ctl_send(Ctl *ctl);
int ctl_events(Ctl *ctl);
int ctl_publish(Ctl *ctl);

/* Print "outpostctl: MESSAGE" on stderr; returns 1. */
int ctl_fail(const char *format, ...) G_GNUC_PRINTF(1, 2);
/* The same, ending with ": " and ERROR's message without its D-Bus name. */
int ctl_fail_error(const GError *error, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* ERROR's message without the "GDBus.Error:name: " prefix. */
char *ctl_error_message(const GError *error);

/* Fails unless the client is connected. */
gboolean ctl_check_connected(Ctl *ctl);

/* The user named by WORD: an id (UUID-shaped) or a name. */
GVariant *ctl_resolve_user(Ctl *ctl, const char *word, GError **error);
/* The same, failing with a message: NULL then. */
GVariant *ctl_get_user(Ctl *ctl, const char *word);
/* Read KEY=VALUE words as user fields; BASE (may be NULL) is the user they
 * change, whose attributes the attributes.KEY words add to. */
GVariant *ctl_parse_user_fields(char **words, GVariant *base, GError **error);

/* Output */
char *ctl_format_time(gint64 usec);
void ctl_json_append(GString *out, GVariant *value);
void ctl_json_print(GVariant *value);
char *ctl_format_data(GVariant *dict);

typedef struct CtlTable CtlTable;
CtlTable *ctl_table_new(const char *const *headers);
void ctl_table_add(CtlTable *t, const char *const *cells);
void ctl_table_print(CtlTable *t);
void ctl_table_free(CtlTable *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CtlTable, ctl_table_free)
