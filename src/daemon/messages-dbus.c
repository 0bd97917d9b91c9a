/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Messages manager on the bus: Send, and the MessageReceived signal
 * (DESIGN.md §3, Messages). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "bus-read.h"
#include "macro.h"
#include "messages.h"
#include "request-id.h"
#include "validate.h"

/* The option SEND_OPTION_RELAYED_BY: the names of the bridge peers the
 * call came through, in *RET (borrowed from VALUE). */
static int check_relayed_by(GVariant *value, const char ***ret, sd_bus_error *error) {
        g_autofree const char **names = NULL;
        gsize n;

        if (!g_variant_is_of_type(value, G_VARIANT_TYPE_STRING_ARRAY))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Option '" SEND_OPTION_RELAYED_BY "' must be an array of strings (as), not '%s'",
                                         g_variant_get_type_string(value));
        names = g_variant_get_strv(value, &n);
        if (n == 0)
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT,
                                        "Option '" SEND_OPTION_RELAYED_BY "' must name at least one peer");
        if (n > RELAYED_BY_MAX)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Option '" SEND_OPTION_RELAYED_BY "' names %zu peers, at most %u are allowed",
                                         (size_t) n, RELAYED_BY_MAX);
        for (gsize i = 0; i < n; i++)
                if (!peer_name_is_valid(names[i])) {
                        g_autofree char *q = quote_for_error(names[i], 80);
                        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                                 "Invalid peer name '%s' in option '" SEND_OPTION_RELAYED_BY "': "
                                                 "expected 1-%u bytes without control or invisible characters",
                                                 q, PEER_NAME_MAX);
                }
        *ret = TAKE_PTR(names);
        return 0;
}

/* SendWithOptions' options, checked: what they say goes to *RET_REQUEST_ID
 * and *RET_RELAYED_BY (NULL when not given; borrowed from OPTIONS, the
 * array itself to be freed). */
static int check_send_options(GVariant *options, const char **ret_request_id, const char ***ret_relayed_by,
                              sd_bus_error *error) {
        GVariantIter iter;
        const char *key;
        GVariant *value;

        *ret_request_id = NULL;
        *ret_relayed_by = NULL;
        g_variant_iter_init(&iter, options);
        while (g_variant_iter_loop(&iter, "{&sv}", &key, &value)) {
                bool is_request_id = strcmp(key, SEND_OPTION_REQUEST_ID) == 0;
                bool is_relayed_by = strcmp(key, SEND_OPTION_RELAYED_BY) == 0;
                int r;

                /* Two values of one option: which one was meant is not ours to guess. */
                if ((is_request_id && *ret_request_id) || (is_relayed_by && *ret_relayed_by))
                        r = sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT, "Option '%s' is given twice", key);
                else if (is_request_id)
                        r = request_id_check(value, "request id (option '" SEND_OPTION_REQUEST_ID "')",
                                             ret_request_id, error);
                else if (is_relayed_by)
                        r = check_relayed_by(value, ret_relayed_by, error);
                else {
                        g_autofree char *q = quote_for_error(key, 80);
                        r = sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                              "Unknown option '%s' of SendWithOptions (known: "
                                              SEND_OPTION_REQUEST_ID ", " SEND_OPTION_RELAYED_BY ")", q);
                }
                if (r < 0) {
                        g_variant_unref(value);
                        return r;
                }
        }
        return 0;
}

/* Send, or SendWithOptions with WITH_OPTIONS. */
static int send_call(sd_bus_message *m, Daemon *d, bool with_options, sd_bus_error *error) {
        g_auto(GStrv) user_ids = NULL;
        g_autoptr(GVariant) options = NULL;
        g_autofree const char **relayed_by = NULL;
        g_autofree char *id = NULL, *request_key = NULL;
        const char *body, *request_id = NULL, *first_id;
        size_t n_recipients;
        uint64_t last_seq = 0;
        uid_t uid;
        int r;

        r = bus_read_strv_bounded(m, d->config.max_recipients, &user_ids, &n_recipients);
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "s", &body);
        if (r < 0)
                return r;
        if (with_options) {
                r = bus_message_read_vardict(m, &options);
                if (r == -EOPNOTSUPP)
                        return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT,
                                                "Options must not carry file descriptors");
                if (r < 0)
                        return r;
                r = check_send_options(options, &request_id, &relayed_by, error);
                if (r < 0)
                        return r;
        }
        r = message_check_body(d, body, error);
        if (r < 0)
                return r;
        /* relayed-by asks for the bridges' own action, in place of
         * send-messages (bus_change_action_of()). */
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;
        /* Known already: polkit_authorize() needed it. */
        r = polkit_sender_euid(d->polkit, m, &uid);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot tell who sent the message: %s", strerror(-r));
        if (request_id)
                request_key = request_key_new(uid, relayed_by, request_id);

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        /* A retry writes nothing and is not checked again (a recipient
         * deleted since is no reason to hide that the message went): it
         * gets the first call's answer, queued like any reply, so not
         * before that call is durable. */
        if (!request_key || store_request_find(d->store, request_key, &last_seq, &first_id) < 0) {
                r = message_check_recipients(d, user_ids, n_recipients, error);
                if (r < 0) {
                        daemon_rollback(d);
                        return r;
                }
                id = uuid_string_new();
                MessageSender sender = { .uid = uid, .peers = (char **) relayed_by };

                r = message_append_events(d, user_ids, id, body, &sender, request_key, &last_seq);
                if (r < 0) {
                        daemon_rollback(d);
                        return reply_store_error(d, r, error);
                }
        } else
                id = g_strdup(first_id);
        /* On failure the change is rolled back already. */
        r = daemon_reply_after_commit(d, m, NULL, NULL, "st", id, last_seq);
        return r < 0 ? reply_store_error(d, r, error) : r;
}

static int method_send(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, send_call(m, userdata, false, error));
}

static int method_send_with_options(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, send_call(m, userdata, true, error));
}

static const sd_bus_vtable messages_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Send",
                                SD_BUS_ARGS("as", user_ids, "s", body),
                                SD_BUS_RESULT("s", message_id, "t", last_seq),
                                method_send,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SendWithOptions",
                                SD_BUS_ARGS("as", user_ids, "s", body, "a{sv}", options),
                                SD_BUS_RESULT("s", message_id, "t", last_seq),
                                method_send_with_options,
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
