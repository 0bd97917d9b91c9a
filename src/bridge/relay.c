/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pieces both bridge roles use to move messages from one connection to
 * another. Received messages are sealed, so relaying means building a new
 * message and copying the body (NOTES-sd-bus.md). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bridge.h"
#include "log.h"
#include "macro.h"

bool object_path_in_tree(const char *path) {
        size_t n = strlen(OUTPOST_ROOT_PATH);

        return path && strncmp(path, OUTPOST_ROOT_PATH, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int bus_forward_signal(sd_bus *to, sd_bus_message *m) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int r;

        r = sd_bus_message_new_signal(to, &s, sd_bus_message_get_path(m), sd_bus_message_get_interface(m),
                                      sd_bus_message_get_member(m));
        if (r < 0)
                return r;
        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(s, m, true);
        if (r < 0)
                return r;
        return sd_bus_send(to, s, NULL);
}

/* The bus's errors for a service that did not answer (it left the bus,
 * or the call timed out) or was not there are an outage to the caller:
 * Disconnected, saying whether the call may have been carried out
 * (DESIGN.md §4 rule 5), as at every layer. Other errors are the
 * service's own, relayed as they are. */
static int reply_error(sd_bus_message *call, const sd_bus_error *e) {
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY))
                return sd_bus_reply_method_errorf(call, BUS_ERROR_DISCONNECTED,
                                                  "No reply from " OUTPOST_BUS_NAME " behind the bridge (%s: %s): "
                                                  "the call may have been carried out", e->name, e->message ?: "");
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                return sd_bus_reply_method_errorf(call, BUS_ERROR_DISCONNECTED,
                                                  OUTPOST_BUS_NAME " is not on the bus behind the bridge (%s: %s): "
                                                  "the call was not carried out", e->name, e->message ?: "");
        return sd_bus_reply_method_error(call, e);
}

/* Answer CALL with what REPLY (a method return or an error) carried. */
int bus_reply_copy(sd_bus_message *call, sd_bus_message *reply) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *ret = NULL;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int r;

        if (e)
                return reply_error(call, e);
        r = sd_bus_message_new_method_return(call, &ret);
        if (r < 0)
                return r;
        r = sd_bus_message_rewind(reply, true);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(ret, reply, true);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, ret, NULL);
}

static void empty_graveyard(Bridge *b) {
        if (b->graveyard)
                g_ptr_array_set_size(b->graveyard, 0);      /* closes and unrefs each */
        b->graveyard_source = sd_event_source_disable_unref(b->graveyard_source);
}

static int on_graveyard(sd_event_source *s, void *userdata) {
        empty_graveyard(userdata);
        return 0;
}

static void bus_close_unref_void(void *bus) {
        sd_bus_close_unref(bus);
}

void bus_close_unref_later(Bridge *b, sd_bus *bus) {
        if (!bus)
                return;
        /* Closed and freed from a clean point of the loop, or at exit by
         * bridge_release_buses(): we may be inside its dispatch, and sd-bus
         * must not be closed under its own feet. Until then its callbacks
         * may still run; they ignore a bus that is no longer theirs. */
        if (!b->graveyard)
                b->graveyard = g_ptr_array_new_with_free_func(bus_close_unref_void);
        g_ptr_array_add(b->graveyard, bus);
        if (!b->graveyard_source && sd_event_get_state(b->event) != SD_EVENT_FINISHED)
                (void) sd_event_add_defer(b->event, &b->graveyard_source, on_graveyard, b);
}

void bridge_release_buses(Bridge *b) {
        empty_graveyard(b);
        g_clear_pointer(&b->graveyard, g_ptr_array_unref);
}

/* The local bus is what a bridge serves: without it there is nothing left
 * to do. Say why and end with an error, so that the service manager
 * restarts us (sd-bus's own exit-on-disconnect ends the loop with a
 * status that reads as success). */
static int on_local_bus_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Bridge *b = userdata;

        if (!sd_bus_message_is_signal(m, "org.freedesktop.DBus.Local", "Disconnected"))
                return 0;
        log_error("Lost the connection to the local bus %s: the bus daemon stopped or disconnected us; exiting",
                  b->config.address ?: b->config.session ? "(the session bus)" : "(the system bus)");
        (void) sd_event_exit(b->event, -ENOTCONN);
        return 0;
}

int bridge_watch_local_bus(Bridge *b, sd_bus *bus) {
        return sd_bus_add_filter(bus, NULL, on_local_bus_message, b);
}
