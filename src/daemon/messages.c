/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Messages manager: system messages to users, delivered as one event
 * per recipient on topic messages/<user_id> (DESIGN.md §3, Messages). This
 * file holds what a message may be and the events it makes;
 * messages-dbus.c is its face on the bus. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "macro.h"
#include "messages.h"
#include "validate.h"

/* Every recipient is a known user, or an error names the first that is not. */
int message_check_recipients(Daemon *d, char **user_ids, size_t n, sd_bus_error *error) {
        if (n == 0)
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, "A message needs at least one recipient");
        if (n > d->config.max_recipients)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "%zu recipients given, at most %u are allowed", n, d->config.max_recipients);
        for (size_t i = 0; i < n; i++) {
                const UserRecord *u;
                int r;

                if (!uuid_string_is_valid(user_ids[i])) {
                        g_autofree char *q = quote_for_error(user_ids[i], 80);
                        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                                 "Invalid recipient '%s': expected a user id (a lower-case UUID)", q);
                }
                r = store_user_get(d->store, user_ids[i], &u);
                if (r == -ENOENT)
                        return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND, "No user with id '%s'", user_ids[i]);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED, "The store could not read user '%s'", user_ids[i]);
        }
        return 0;
}

int message_check_body(Daemon *d, const char *body, sd_bus_error *error) {
        size_t n = strlen(body);

        if (n == 0)
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, "A message body must not be empty");
        if (n > d->config.max_message_body_bytes)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Message body is %zu bytes, at most %u are allowed",
                                         n, d->config.max_message_body_bytes);
        return 0;
}

int message_append_events(Daemon *d, char **user_ids, const char *id, const char *body, const MessageSender *sender,
                          const char *request_key, uint64_t *ret_last_seq) {
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
        g_autoptr(GPtrArray) recipients = g_ptr_array_new();

        /* A recipient named twice gets the message once. */
        for (size_t i = 0; user_ids[i]; i++)
                if (g_hash_table_add(seen, user_ids[i]))
                        g_ptr_array_add(recipients, user_ids[i]);

        for (guint i = 0; i < recipients->len; i++) {
                const char *to = recipients->pdata[i];
                bool last = i + 1 == recipients->len;
                g_autofree char *topic = NULL;
                g_autoptr(GVariant) data = NULL;
                GVariant *peers = sender->peers ? g_variant_new_strv((const char *const *) sender->peers, -1) : NULL;
                int r;

                topic = g_strconcat("messages/", to, NULL);
                data = g_variant_ref_sink(vardict_new("id", g_variant_new_string(id),
                                                      "to", g_variant_new_string(to),
                                                      "body", g_variant_new_string(body),
                                                      "sender-uid", g_variant_new_uint32(sender->uid),
                                                      /* Without peers, the list ends here. */
                                                      peers ? MESSAGE_SENDER_PEERS_KEY : NULL, peers,
                                                      NULL));
                /* The request id goes with the last event: its seq and the
                 * message id are the reply. */
                r = daemon_append_event_request(d, topic, data, last ? request_key : NULL, id, ret_last_seq);
                if (r < 0)
                        return r;
        }
        return 0;
}
