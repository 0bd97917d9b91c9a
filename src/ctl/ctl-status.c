/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl status, bridge status|reconnect */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "bus-names.h"
#include "ctl.h"


static GVariant *call(Ctl *ctl, const char *path, const char *iface, const char *method, GVariant *params,
                      const char *reply_type, GError **error) {
        return g_dbus_connection_call_sync(outpost_client_get_connection(ctl->client), OUTPOST_BUS_NAME, path,
                                           iface, method, params, G_VARIANT_TYPE(reply_type), G_DBUS_CALL_FLAGS_NONE,
                                           OUTPOST_CLIENT_DEFAULT_TIMEOUT_MSEC, NULL, error);
}

/* The properties of INTERFACE at PATH in a GetManagedObjects reply. */
static GVariant *object_props(GVariant *objects, const char *path, const char *iface) {
        g_autoptr(GVariant) ifaces = g_variant_lookup_value(objects, path, G_VARIANT_TYPE("a{sa{sv}}"));

        return ifaces ? g_variant_lookup_value(ifaces, iface, G_VARIANT_TYPE("a{sv}")) : NULL;
}

static const char *str_prop(GVariant *props, const char *name) {
        const char *s = NULL;

        if (props)
                g_variant_lookup(props, name, "&s", &s);
        return s ?: "";
}

static guint64 num_prop(GVariant *props, const char *name) {
        g_autoptr(GVariant) v = props ? g_variant_lookup_value(props, name, NULL) : NULL;

        if (!v)
                return 0;
        if (g_variant_is_of_type(v, G_VARIANT_TYPE_UINT32))
                return g_variant_get_uint32(v);
        if (g_variant_is_of_type(v, G_VARIANT_TYPE_INT64))
                return g_variant_get_int64(v);
        if (g_variant_is_of_type(v, G_VARIANT_TYPE_UINT64))
                return g_variant_get_uint64(v);
        return 0;
}

static void print_bridge(GVariant *bridge, const char *indent) {
        g_autofree char *since = ctl_format_time(num_prop(bridge, "Since"));
        const char *last_error = str_prop(bridge, "LastError");
        guint hops = num_prop(bridge, "Hops");

        printf("%s%14s %s %s %s\n", indent, _("Bridge:"), str_prop(bridge, "State"), _("since"), since);
        printf("%s%14s %s (%u %s)\n", indent, _("Upstream:"), str_prop(bridge, "Upstream"), hops,
               g_dngettext(GETTEXT_PACKAGE, "hop", "hops", hops));
        printf("%s%14s %u\n", indent, _("Reconnects:"), (guint) num_prop(bridge, "Reconnects"));
        if (last_error[0])
                printf("%s%14s %s\n", indent, _("Last error:"), last_error);
}

static const char *client_state(Ctl *ctl) {
        switch (outpost_client_get_state(ctl->client)) {
        case OUTPOST_CLIENT_STATE_CONNECTED:
                return "connected";
        case OUTPOST_CLIENT_STATE_CONNECTING:
                return "connecting";
        case OUTPOST_CLIENT_STATE_DISCONNECTED:
        default:
                return "disconnected";
        }
}

/* What systemd says of outpostd.service on this bus (its STATUS=, such
 * as "Standby: another outpostd is active on ..."), or NULL: on a bus
 * without systemd, or for a unit that set no status. */
static char *unit_status_text(Ctl *ctl) {
        GDBusConnection *c = outpost_client_get_connection(ctl->client);
        g_autoptr(GVariant) unit = NULL, text = NULL, value = NULL;
        const char *path;

        unit = g_dbus_connection_call_sync(c, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                           "org.freedesktop.systemd1.Manager", "GetUnit",
                                           g_variant_new("(s)", "outpostd.service"), G_VARIANT_TYPE("(o)"),
                                           G_DBUS_CALL_FLAGS_NO_AUTO_START, 2000, NULL, NULL);
        if (!unit)
                return NULL;
        g_variant_get(unit, "(&o)", &path);
        text = g_dbus_connection_call_sync(c, "org.freedesktop.systemd1", path, "org.freedesktop.DBus.Properties",
                                           "Get", g_variant_new("(ss)", "org.freedesktop.systemd1.Service",
                                                                "StatusText"),
                                           G_VARIANT_TYPE("(v)"), G_DBUS_CALL_FLAGS_NO_AUTO_START, 2000, NULL, NULL);
        if (!text)
                return NULL;
        g_variant_get(text, "(v)", &value);
        if (!g_variant_is_of_type(value, G_VARIANT_TYPE_STRING) || !g_variant_get_string(value, NULL)[0])
                return NULL;
        return g_variant_dup_string(value, NULL);
}

/* Nobody owns the name. A standby outpostd (DESIGN.md §5a) owns nothing
 * on the bus either, by design: it cannot be asked, so what its unit
 * told systemd is shown when there is one, and otherwise the message
 * names both possibilities. */
static int status_no_service(Ctl *ctl) {
        g_autofree char *unit_status = unit_status_text(ctl);

        if (unit_status)
                return ctl_fail(_("The Outpost service is not running on this bus (nobody owns org.outpost.Outpost1); "
                                  "outpostd.service says: %s"), unit_status);
        return ctl_fail(_("The Outpost service is not running on this bus (nobody owns org.outpost.Outpost1), or "
                          "outpostd is a standby waiting for the database lock, which owns nothing until it becomes "
                          "the active one (see its log)"));
}

static int compare_paths(gconstpointer a, gconstpointer b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Works behind a bridge whose link is down, too: the bridge answers
 * property reads and GetManagedObjects from its cache. */
int ctl_status(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) registry = NULL, snapshot = NULL, objects = NULL;
        g_autoptr(GVariant) reg_props = NULL, events = NULL, presence = NULL, bridge = NULL, online = NULL;
        g_autoptr(GString) names = g_string_new(NULL);
        g_autoptr(GVariantBuilder) manager_list = g_variant_builder_new(G_VARIANT_TYPE("as"));
        GVariantIter iter;
        const char *name;

        if (outpost_client_get_state(ctl->client) == OUTPOST_CLIENT_STATE_DISCONNECTED && !outpost_client_get_bridge(ctl->client))
                return status_no_service(ctl);

        registry = call(ctl, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                        g_variant_new("(s)", REGISTRY_IFACE), "(a{sv})", &error);
        if (registry)
                snapshot = call(ctl, OUTPOST_ROOT_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL,
                                "(a{oa{sa{sv}}})", &error);
        if (!snapshot)
                return ctl_fail_error(error, _("Cannot read the state of the service"));
        reg_props = g_variant_get_child_value(registry, 0);
        objects = g_variant_get_child_value(snapshot, 0);
        events = object_props(objects, EVENTS_PATH, EVENTS_IFACE);
        presence = object_props(objects, PRESENCE_PATH, PRESENCE_IFACE);
        bridge = object_props(objects, BRIDGE_PATH, BRIDGE_IFACE);
        online = presence ? g_variant_lookup_value(presence, "OnlineCount", G_VARIANT_TYPE_UINT32) : NULL;

        /* The managers are the objects just below the root, in path order
         * (the online users are one level further down). */
        g_variant_iter_init(&iter, objects);
        {
                g_autoptr(GPtrArray) paths = g_ptr_array_new();
                const char *path;

                while (g_variant_iter_next(&iter, "{&o@a{sa{sv}}}", &path, NULL))
                        if (g_str_has_prefix(path, OUTPOST_ROOT_PATH "/") && !strchr(path + strlen(OUTPOST_ROOT_PATH "/"), '/') &&
                            !g_str_equal(path, BRIDGE_PATH))
                                g_ptr_array_add(paths, (gpointer) path);
                g_ptr_array_sort(paths, compare_paths);
                for (guint i = 0; i < paths->len; i++) {
                        name = (const char *) g_ptr_array_index(paths, i) + strlen(OUTPOST_ROOT_PATH "/");
                        g_variant_builder_add(manager_list, "s", name);
                        if (names->len)
                                g_string_append(names, ", ");
                        g_string_append(names, name);
                }
        }

        if (ctl->json) {
                g_auto(GVariantDict) d = G_VARIANT_DICT_INIT(NULL);

                g_variant_dict_insert(&d, "server-id", "s", str_prop(reg_props, "ServerId"));
                g_variant_dict_insert(&d, "instance-id", "s", str_prop(reg_props, "InstanceId"));
                g_variant_dict_insert(&d, "version", "s", str_prop(reg_props, "Version"));
                g_variant_dict_insert_value(&d, "managers", g_variant_builder_end(manager_list));
                g_variant_dict_insert(&d, "client-state", "s", client_state(ctl));
                if (events) {
                        g_variant_dict_insert(&d, "history-id", "s", str_prop(events, "HistoryId"));
                        g_variant_dict_insert(&d, "first-seq", "t", num_prop(events, "FirstSeq"));
                        g_variant_dict_insert(&d, "last-seq", "t", num_prop(events, "LastSeq"));
                }
                if (online)
                        g_variant_dict_insert_value(&d, "online-count", g_variant_ref(online));
                g_variant_dict_insert_value(&d, "bridge", bridge ? g_variant_ref(bridge) : g_variant_new("a{sv}", NULL));
                ctl_json_print(g_variant_dict_end(&d));
                return 0;
        }

        printf("%14s %s\n", _("Server ID:"), str_prop(reg_props, "ServerId"));
        printf("%14s %s\n", _("Instance ID:"), str_prop(reg_props, "InstanceId"));
        printf("%14s %s\n", _("Version:"), str_prop(reg_props, "Version"));
        printf("%14s %s\n", _("Managers:"), names->str);
        if (events)
                printf("%14s %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT " (%s %s)\n", _("Events:"),
                       num_prop(events, "FirstSeq"), num_prop(events, "LastSeq"), _("history"),
                       str_prop(events, "HistoryId"));
        if (online)
                printf("%14s %u\n", _("Online:"), g_variant_get_uint32(online));
        if (bridge)
                print_bridge(bridge, "");
        else
                printf("%14s %s\n", _("Bridge:"), _("none (this bus has the origin daemon)"));
        printf("%14s %s\n", _("Client:"), client_state(ctl));
        return 0;
}

int ctl_bridge_status(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = NULL, props = NULL;

        if (outpost_client_get_state(ctl->client) == OUTPOST_CLIENT_STATE_DISCONNECTED && !outpost_client_get_bridge(ctl->client))
                return ctl_check_connected(ctl) ? 0 : 1;
        if (!outpost_client_get_bridge(ctl->client))
                return ctl_fail(_("This bus has no bridge: org.outpost.Outpost1 is the origin daemon"));
        r = call(ctl, BRIDGE_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                 g_variant_new("(s)", BRIDGE_IFACE), "(a{sv})", &error);
        if (!r)
                return ctl_fail_error(error, _("Cannot read the bridge's state"));
        props = g_variant_get_child_value(r, 0);
        if (ctl->json)
                ctl_json_print(g_variant_ref(props));
        else
                print_bridge(props, "");
        return 0;
}

int ctl_bridge_reconnect(Ctl *ctl) {
        g_autoptr(GError) error = NULL;

        if (!outpost_client_get_bridge(ctl->client))
                return ctl_fail(_("This bus has no bridge: org.outpost.Outpost1 is the origin daemon"));
        if (!outpost_bridge_call_reconnect_sync(outpost_client_get_bridge(ctl->client), NULL, &error))
                return ctl_fail_error(error, _("Cannot make the bridge reconnect"));
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'reconnecting': <true>}"));
        else
                printf(_("The bridge is reconnecting; see 'outpostctl bridge status'\n"));
        return 0;
}
