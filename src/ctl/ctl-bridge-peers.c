/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl bridge peers: the remote bridges connected to the listener of
 * this bus, from the listener's own name (org.outpost.Outpost1.Listener),
 * which only root and the bridge's account may ask. */
#include "config.h"

#include <stdio.h>

#include "bus-names.h"
#include "ctl.h"

static int fail_list(const GError *error) {
        if (g_dbus_error_is_remote_error(error)) {
                g_autofree char *name = g_dbus_error_get_remote_error(error);

                if (g_str_equal(name, "org.freedesktop.DBus.Error.ServiceUnknown") ||
                    g_str_equal(name, "org.freedesktop.DBus.Error.NameHasNoOwner"))
                        return ctl_fail(_("No bridge listens on this bus (nobody owns %s): outpost-bridge runs "
                                          "without --listen here, or not at all"), LISTENER_BUS_NAME);
                if (g_str_equal(name, "org.freedesktop.DBus.Error.AccessDenied"))
                        return ctl_fail_error(error, _("Only root and the bridge's account (outpost-bridge) may "
                                                       "list the listener's peers"));
        }
        return ctl_fail_error(error, _("Cannot list the listener's peers"));
}

static const char *str_entry(GVariant *peer, const char *key) {
        const char *s = NULL;

        g_variant_lookup(peer, key, "&s", &s);
        return s ?: "";
}

static char *scopes_cell(GVariant *peer) {
        g_autofree const char **scopes = NULL;

        if (!g_variant_lookup(peer, "scopes", "^a&s", &scopes) || !scopes[0])
                return g_strdup("-");
        return g_strjoinv(";", (char **) scopes);
}

static void add_row(CtlTable *table, GVariant *peer) {
        gint64 since = 0;
        guint64 calls = 0, queued = 0;
        guint holds = 0;
        g_autofree char *scopes = scopes_cell(peer), *since_cell = NULL, *calls_cell = NULL;
        g_autofree char *holds_cell = NULL, *queued_cell = NULL;

        g_variant_lookup(peer, "connected-since", "x", &since);
        g_variant_lookup(peer, "calls-relayed", "t", &calls);
        g_variant_lookup(peer, "holds", "u", &holds);
        g_variant_lookup(peer, "queued-bytes", "t", &queued);
        since_cell = ctl_format_time(since);
        calls_cell = g_strdup_printf("%" G_GUINT64_FORMAT, calls);
        holds_cell = g_strdup_printf("%u", holds);
        queued_cell = g_format_size_full(queued, G_FORMAT_SIZE_IEC_UNITS);
        ctl_table_add(table, (const char *const[]) { str_entry(peer, "name"), str_entry(peer, "address"), scopes,
                                                      since_cell, calls_cell, holds_cell, queued_cell, NULL });
}

int ctl_bridge_peers(Ctl *ctl) {
        const char *const headers[] = { _("NAME"),  _("ADDRESS"), _("SCOPES"), _("CONNECTED SINCE"),
                                        _("CALLS"), _("HOLDS"),   _("QUEUED"), NULL };
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = NULL, peers = NULL;
        g_autoptr(CtlTable) table = NULL;
        gsize n;

        reply = g_dbus_connection_call_sync(outpost_client_get_connection(ctl->client), LISTENER_BUS_NAME,
                                            LISTENER_PATH, LISTENER_IFACE, "ListPeers", NULL,
                                            G_VARIANT_TYPE("(aa{sv})"), G_DBUS_CALL_FLAGS_NO_AUTO_START,
                                            OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC, NULL, &error);
        if (!reply)
                return fail_list(error);
        peers = g_variant_get_child_value(reply, 0);
        n = g_variant_n_children(peers);
        if (ctl->json) {
                ctl_json_print(g_variant_new_parsed("{'peer-count': <%u>, 'peers': <%@aa{sv}>}", (guint) n, peers));
                return 0;
        }
        table = ctl_table_new(headers);
        for (gsize i = 0; i < n; i++) {
                g_autoptr(GVariant) peer = g_variant_get_child_value(peers, i);

                add_row(table, peer);
        }
        ctl_table_print(table);
        printf("\n");
        printf(g_dngettext(GETTEXT_PACKAGE, "%u peer connected.\n", "%u peers connected.\n", (guint) n), (guint) n);
        return 0;
}
