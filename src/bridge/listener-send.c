/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who sent a message, as far as the listener can vouch for it: a peer's
 * Send or SendWithOptions goes to the local bus as SendWithOptions whose
 * option relayed-by ends with the name of the peer's certificate, which
 * the TLS handshake verified (DESIGN.md §3, Messages). The names the
 * peer gave in its own relayed-by (the bridges behind it) come before
 * that one: the listener cannot check them, only keep them in their
 * place, so a peer can neither drop nor replace its own name. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "bus-methods.h"
#include "listener.h"
#include "macro.h"
#include "validate.h"

bool listener_call_is_send(sd_bus_message *m) {
        const BusChangeMethod *method = bus_change_method_of(m);

        return method && strcmp(method->interface, MESSAGES_IFACE) == 0 &&
               (strcmp(method->member, "Send") == 0 || strcmp(method->member, "SendWithOptions") == 0);
}

/* The value of the peer's relayed-by, M at its variant: its names go to
 * CHAIN. ERROR is set for what the peer is to be told. */
static int read_peer_chain(sd_bus_message *m, bool seen, GStrvBuilder *chain, sd_bus_error *error) {
        g_auto(GStrv) names = NULL;
        const char *contents = NULL;
        int r;

        if (seen)
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT,
                                        "Option '" SEND_OPTION_RELAYED_BY "' is given twice");
        r = sd_bus_message_peek_type(m, NULL, &contents);
        if (r < 0)
                return r;
        if (!contents || strcmp(contents, "as") != 0)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Option '" SEND_OPTION_RELAYED_BY "' must be an array of strings (as), "
                                         "not '%s'", contents ?: "");
        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_VARIANT, "as");
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(m, &names);
        if (r < 0)
                return r;
        if (names)
                g_strv_builder_addv(chain, (const char **) names);
        return sd_bus_message_exit_container(m);
}

/* Open the entry of option KEY in LOCAL's a{sv}, up to its value. */
static int open_option(sd_bus_message *local, const char *key) {
        int r;

        r = sd_bus_message_open_container(local, SD_BUS_TYPE_DICT_ENTRY, "sv");
        if (r < 0)
                return r;
        return sd_bus_message_append(local, "s", key);
}

/* Copy the options of the peer's call M, read up to them, to LOCAL (in
 * its open a{sv}), but relayed-by, whose names go to CHAIN. */
static int copy_options(sd_bus_message *m, sd_bus_message *local, GStrvBuilder *chain, sd_bus_error *error) {
        bool seen = false;
        int r;

        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, SEND_OPTION_RELAYED_BY) == 0) {
                        r = read_peer_chain(m, seen, chain, error);
                        seen = true;
                } else {
                        r = open_option(local, key);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_copy(local, m, false);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_close_container(local);
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int append_relayed_by(sd_bus_message *local, char **names) {
        int r;

        r = open_option(local, SEND_OPTION_RELAYED_BY);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(local, SD_BUS_TYPE_VARIANT, "as");
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(local, names);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(local);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(local);
}

/* The local SendWithOptions of the peer's call, built in LOCAL after its
 * recipients and body: the peer's options, its relayed-by ending with
 * the peer's name. */
static int append_options(PoolCall *c, sd_bus_message *local, bool with_options, sd_bus_error *error) {
        g_autoptr(GStrvBuilder) chain = g_strv_builder_new();
        g_auto(GStrv) names = NULL;
        int r;

        r = sd_bus_message_open_container(local, SD_BUS_TYPE_ARRAY, "{sv}");
        if (r < 0)
                return r;
        if (with_options) {
                r = copy_options(c->call, local, chain, error);
                if (r < 0)
                        return r;
        }
        g_strv_builder_add(chain, c->peer->name);
        names = g_strv_builder_end(chain);
        r = append_relayed_by(local, names);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(local);
}

int send_prepare(PoolCall *c, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *local = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = c->call;
        const char *member = sd_bus_message_get_member(m);
        bool with_options = strcmp(member, "SendWithOptions") == 0;
        const char *expected = with_options ? "assa{sv}" : "ass";
        int r;

        assert(c->peer);
        if (!sd_bus_message_has_signature(m, expected)) {
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_INVALID_ARGS,
                                                  "Invalid arguments '%s' to call %s, expecting '%s'",
                                                  sd_bus_message_get_signature(m, true) ?: "", member, expected);
                return 0;
        }
        r = pool_call_new_local(c, sd_bus_message_get_path(m), MESSAGES_IFACE, "SendWithOptions", &local);
        if (r < 0)
                return r;
        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        /* The recipients and the body, as they are. */
        r = sd_bus_message_copy(local, m, false);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(local, m, false);
        if (r < 0)
                return r;
        r = append_options(c, local, with_options, &error);
        if (sd_bus_error_is_set(&error)) {
                (void) sd_bus_reply_method_error(m, &error);
                return 0;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(local);
        return 1;
}
