/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The listener's own face on its local bus: org.outpost.Outpost1.Listener
 * (dbus-interfaces/), which tells an administrator which remote peers are
 * connected and what each costs ("outpostctl bridge peers"). It has a
 * connection and a name of its own, apart from the pool that carries the
 * peers' calls, so it answers however busy the pool is, and nothing of it
 * is ever relayed. Only root and the bridge's account may call it: the bus
 * policy says so, and the handler checks the caller's uid once more, so a
 * policy file edited too generously does not open the list to everyone
 * (certificate names and addresses tell how the deployment is built). */
#include "config.h"

#include <stdarg.h>
#include <unistd.h>

#include "bus-caller.h"
#include "listener.h"
#include "log.h"
#include "macro.h"
#include "peer-scopes.h"

/* Root, or the account the bridge runs as (outpost-bridge; on a session
 * bus, the user). */
static int check_caller(sd_bus_message *m, sd_bus_error *error) {
        uid_t uid;
        int r;

        /* Asked of the bus each time: these calls are rare. */
        r = bus_sender_euid(m, &uid);
        if (r < 0)
                return r;
        if (uid == 0 || uid == geteuid())
                return 0;
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "uid %u may not list the listener's peers: only root and the bridge's account "
                                 "(uid %u) may", (unsigned) uid, (unsigned) geteuid());
}

/* A "{sv}" entry of KEY whose value, of TYPE, the caller appends. */
static int open_entry(sd_bus_message *reply, const char *key, const char *type) {
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "s", key);
        if (r < 0)
                return r;
        return sd_bus_message_open_container(reply, 'v', type);
}

static int close_entry(sd_bus_message *reply) {
        int r;

        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int append_entry(sd_bus_message *reply, const char *key, const char *type, ...) {
        va_list ap;
        int r;

        r = open_entry(reply, key, type);
        if (r < 0)
                return r;
        va_start(ap, type);
        r = sd_bus_message_appendv(reply, type, ap);
        va_end(ap);
        if (r < 0)
                return r;
        return close_entry(reply);
}

static int append_scopes(sd_bus_message *reply, unsigned scopes) {
        g_autofree const char **names = peer_scopes_names(scopes);
        int r;

        r = open_entry(reply, "scopes", "as");
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(reply, (char **) names);
        if (r < 0)
                return r;
        return close_entry(reply);
}

static int append_peer(sd_bus_message *reply, Peer *p) {
        PeerInfo info;
        int r;

        peer_get_info(p, &info);
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        if ((r = append_entry(reply, "name", "s", info.name)) < 0 ||
            (r = append_entry(reply, "address", "s", info.address)) < 0 ||
            (r = append_scopes(reply, info.scopes)) < 0 ||
            (r = append_entry(reply, "connected-since", "x", (int64_t) info.connected_usec)) < 0 ||
            (r = append_entry(reply, "calls-relayed", "t", info.calls_relayed)) < 0 ||
            (r = append_entry(reply, "calls-in-flight", "u", info.calls_in_flight)) < 0 ||
            (r = append_entry(reply, "holds", "u", info.holds)) < 0 ||
            (r = append_entry(reply, "queued-bytes", "t", info.queued_bytes)) < 0 ||
            (r = append_entry(reply, "queued-messages", "t", info.queued_messages)) < 0 ||
            (r = append_entry(reply, "bus-connection", "u", info.bus_connection)) < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int method_list_peers(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GPtrArray) peers = NULL;
        Listener *l = userdata;
        int r;

        r = check_caller(m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        if (r < 0)
                return r;
        peers = listener_get_peers(l);
        for (guint i = 0; i < peers->len; i++) {
                r = append_peer(reply, peers->pdata[i]);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static const sd_bus_vtable listener_vtable[] = {
        SD_BUS_VTABLE_START(0),
        /* Unprivileged for sd-bus (it would demand CAP_SYS_ADMIN of the
         * bridge's own account): check_caller() decides. */
        SD_BUS_METHOD_WITH_ARGS("ListPeers", SD_BUS_NO_ARGS, SD_BUS_RESULT("aa{sv}", peers), method_list_peers,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static int on_name_requested(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        uint32_t result = 0;

        /* The peers are served all the same: only the list is missing. */
        if (e || sd_bus_message_read(m, "u", &result) < 0) {
                log_warning("Cannot own %s on the local bus (%s): 'outpostctl bridge peers' cannot reach this "
                            "listener", LISTENER_BUS_NAME, e ? e->message : "bad reply");
                return 0;
        }
        if (result == 2)        /* DBUS_REQUEST_NAME_REPLY_IN_QUEUE */
                log_notice("Another listener owns %s on the local bus: this one takes it over when it leaves",
                           LISTENER_BUS_NAME);
        return 0;
}

int listener_dbus_start(Listener *l) {
        int r;

        r = bridge_connect_local_bus(l->bridge, &l->own_bus);
        if (r < 0)
                return r;
        r = sd_bus_add_object_vtable(l->own_bus, NULL, LISTENER_PATH, LISTENER_IFACE, listener_vtable, l);
        if (r < 0)
                return r;
        /* Queued behind another listener on the same bus (a second
         * bridge, a restart overlapping the old process). */
        return sd_bus_request_name_async(l->own_bus, NULL, LISTENER_BUS_NAME, SD_BUS_NAME_QUEUE, on_name_requested,
                                         l);
}

void listener_dbus_stop(Listener *l) {
        if (l->own_bus)
                l->own_bus = sd_bus_flush_close_unref(l->own_bus);
}
