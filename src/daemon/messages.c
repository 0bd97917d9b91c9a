/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Messages manager: system messages to users, delivered as one event
 * per recipient on topic messages/<user_id> (DESIGN.md §3, Messages). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "bus-read.h"
#include "daemon.h"
#include "macro.h"
#include "validate.h"

/* Every recipient is a known user, or an error names the first that is not. */
/* USER_IDS holds the first of N recipients given (all, when N is allowed). */
static int check_recipients(Daemon *d, char **user_ids, size_t n, sd_bus_error *error) {
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

static int check_body(Daemon *d, const char *body, sd_bus_error *error) {
        size_t n = strlen(body);

        if (n == 0)
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, "A message body must not be empty");
        if (n > d->config.max_message_body_bytes)
                return sd_bus_error_setf(error, BUS_ERROR_LIMIT_EXCEEDED,
                                         "Message body is %zu bytes, at most %u are allowed",
                                         n, d->config.max_message_body_bytes);
        return 0;
}

static int append_message_events(Daemon *d, char **user_ids, const char *id, const char *body,
                                 uint32_t uid, uint64_t *ret_last_seq) {
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

        for (size_t i = 0; user_ids[i]; i++) {
                g_autofree char *topic = NULL;
                g_autoptr(GVariant) data = NULL;
                int r;

                /* A recipient named twice gets the message once. */
                if (!g_hash_table_add(seen, user_ids[i]))
                        continue;
                topic = g_strconcat("messages/", user_ids[i], NULL);
                data = g_variant_ref_sink(vardict_new("id", g_variant_new_string(id),
                                                      "to", g_variant_new_string(user_ids[i]),
                                                      "body", g_variant_new_string(body),
                                                      "sender-uid", g_variant_new_uint32(uid),
                                                      NULL));
                r = daemon_append_event(d, topic, data, ret_last_seq);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int send_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        g_auto(GStrv) user_ids = NULL;
        g_autofree char *id = NULL;
        size_t n_recipients;
        const char *body;
        uint64_t last_seq = 0;
        uid_t uid;
        int r;

        r = bus_read_strv_bounded(m, d->config.max_recipients, &user_ids, &n_recipients);
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &body);
        if (r < 0)
                return r;
        r = check_body(d, body, error);
        if (r >= 0)
                r = check_recipients(d, user_ids, n_recipients, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;
        /* Known already: polkit_authorize() needed it. */
        r = polkit_sender_euid(d->polkit, m, &uid);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot tell who sent the message: %s", strerror(-r));

        id = uuid_string_new();
        r = daemon_begin(d);
        if (r >= 0)
                r = append_message_events(d, user_ids, id, body, uid, &last_seq);
        if (r >= 0)
                r = daemon_reply_after_commit(d, m, NULL, NULL, "st", id, last_seq);
        if (r < 0) {
                daemon_rollback(d);
                return reply_store_error(d, r, error);
        }
        return r;
}

static int method_send(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, send_call(m, userdata, error));
}

static const sd_bus_vtable messages_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Send",
                                SD_BUS_ARGS("as", user_ids, "s", body),
                                SD_BUS_RESULT("s", message_id, "t", last_seq),
                                method_send,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        /* Each event of a messages/ topic, in place of Event (batch.c). */
        SD_BUS_SIGNAL_WITH_ARGS("MessageReceived",
                                SD_BUS_ARGS("t", seq, "s", topic, "x", time, "a{sv}", data),
                                0),
        SD_BUS_VTABLE_END
};

int messages_register(Daemon *d) {
        return sd_bus_add_object_vtable(d->bus, NULL, MESSAGES_PATH, MESSAGES_IFACE, messages_vtable, d);
}
