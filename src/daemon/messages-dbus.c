/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Messages manager on the bus: Send, and the MessageReceived signal
 * (DESIGN.md §3, Messages). */
#include "config.h"

#include <string.h>

#include "bus-read.h"
#include "macro.h"
#include "messages.h"
#include "validate.h"

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
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "s", &body);
        if (r < 0)
                return r;
        r = message_check_body(d, body, error);
        if (r < 0)
                return r;
        r = message_check_recipients(d, user_ids, n_recipients, error);
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
        if (r < 0)
                return reply_store_error(d, r, error);
        r = message_append_events(d, user_ids, id, body, uid, &last_seq);
        if (r < 0) {
                daemon_rollback(d);
                return reply_store_error(d, r, error);
        }
        /* On failure the change is rolled back already. */
        r = daemon_reply_after_commit(d, m, NULL, NULL, "st", id, last_seq);
        return r < 0 ? reply_store_error(d, r, error) : r;
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
