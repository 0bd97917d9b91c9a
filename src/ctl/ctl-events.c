/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl events, publish, send */
#include "config.h"

#include <inttypes.h>

#include <glib-unix.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static GVariant *event_json(guint64 seq, const char *topic, gint64 time, GVariant *data) {
        return g_variant_new_parsed("{'seq': <%t>, 'topic': <%s>, 'time': <%x>, 'data': <%@a{sv}>}", seq, topic, time,
                                    data);
}

static void event_row(CtlTable *table, guint64 seq, const char *topic, gint64 time, GVariant *data) {
        g_autofree char *seq_s = g_strdup_printf("%" G_GUINT64_FORMAT, seq);
        g_autofree char *time_s = ctl_format_time(time);
        g_autofree char *data_s = ctl_format_data(data);

        ctl_table_add(table, (const char *const[]) { seq_s, time_s, topic, data_s, NULL });
}

static const char *const event_headers[] = { N_("SEQ"), N_("TIME"), N_("TOPIC"), N_("DATA"), NULL };

static CtlTable *event_table(void) {
        const char *headers[G_N_ELEMENTS(event_headers)];

        for (gsize i = 0; i < G_N_ELEMENTS(event_headers); i++)
                headers[i] = event_headers[i] ? _(event_headers[i]) : NULL;
        return ctl_table_new(headers);
}

/* Events.FirstSeq, read now: it has no change signal, so a cached value
 * may be old. */
static gboolean read_first_seq(Ctl *ctl, guint64 *ret, GError **error) {
        GDBusProxy *events = G_DBUS_PROXY(outpost_client_get_events(ctl->client));
        g_autoptr(GVariant) reply = NULL, value = NULL;

        reply = g_dbus_connection_call_sync(g_dbus_proxy_get_connection(events), g_dbus_proxy_get_name(events),
                                            g_dbus_proxy_get_object_path(events), "org.freedesktop.DBus.Properties",
                                            "Get", g_variant_new("(ss)", g_dbus_proxy_get_interface_name(events),
                                                                 "FirstSeq"),
                                            G_VARIANT_TYPE("(v)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, error);
        if (!reply)
                return FALSE;
        g_variant_get(reply, "(v)", &value);
        if (!g_variant_is_of_type(value, G_VARIANT_TYPE_UINT64)) {
                g_set_error(error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_SIGNATURE, "FirstSeq is not a uint64");
                return FALSE;
        }
        *ret = g_variant_get_uint64(value);
        return TRUE;
}

/* Without --since the caller asked for what is kept: when retention has
 * discarded the events after *AFTER, move it on to just before FirstSeq,
 * and say so on stderr (never in the output, which may be JSON). */
static int skip_to_kept(Ctl *ctl, guint64 *after) {
        g_autoptr(GError) error = NULL;
        guint64 first;

        if (!read_first_seq(ctl, &first, &error))
                return ctl_fail_error(error, _("Cannot read the events"));
        if (first == 0 || first - 1 <= *after)
                return ctl_fail(_("Cannot read the events: the history after %" PRIu64 " is gone, yet FirstSeq is %" PRIu64),
                                (uint64_t) *after, (uint64_t) first);
        fprintf(stderr, _("outpostctl: older events were discarded by retention; listing those kept, from FirstSeq %" PRIu64 "\n"),
                (uint64_t) first);
        *after = first - 1;
        return 0;
}

/* One page after another until the history is read. */
static int events_list(Ctl *ctl) {
        g_autoptr(CtlTable) table = event_table();
        g_autoptr(GVariantBuilder) all = g_variant_builder_new(G_VARIANT_TYPE("aa{sv}"));
        const char *prefixes[] = { ctl->topic, NULL };
        guint64 after = ctl->since;
        gboolean more = TRUE;
        guint n = 0;

        while (more) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) events = NULL;
                GVariantIter iter;
                guint64 seq;
                const char *topic;
                gint64 time;
                GVariant *data;

                if (!outpost_events_call_fetch_since_sync(outpost_client_get_events(ctl->client), "", after, prefixes,
                                                          1000, &events, &after, &more, NULL, &error)) {
                        if (g_error_matches(error, OUTPOST_ERROR, OUTPOST_ERROR_HISTORY_TRUNCATED) &&
                            !ctl->have_since) {
                                int r = skip_to_kept(ctl, &after);
                                if (r != 0)
                                        return r;
                                continue;
                        }
                        if (g_error_matches(error, OUTPOST_ERROR, OUTPOST_ERROR_HISTORY_TRUNCATED))
                                return ctl_fail_error(error, _("The events after %" PRIu64 " are no longer kept"),
                                                      (uint64_t) ctl->since);
                        return ctl_fail_error(error, _("Cannot read the events"));
                }
                g_variant_iter_init(&iter, events);
                while (g_variant_iter_next(&iter, "(t&sx@a{sv})", &seq, &topic, &time, &data)) {
                        if (ctl->json)
                                g_variant_builder_add_value(all, event_json(seq, topic, time, data));
                        else
                                event_row(table, seq, topic, time, data);
                        g_variant_unref(data);
                        n++;
                }
        }
        if (ctl->json) {
                ctl_json_print(g_variant_builder_end(all));
                return 0;
        }
        ctl_table_print(table);
        printf("\n");
        printf(g_dngettext(GETTEXT_PACKAGE, "%u event listed.\n", "%u events listed.\n", n), n);
        return 0;
}

static void on_event(OutpostClient *client, guint64 seq, const char *topic, gint64 time, GVariant *data,
                     gpointer user_data) {
        Ctl *ctl = user_data;

        if (ctl->json)
                ctl_json_print(event_json(seq, topic, time, data));
        else {
                g_autofree char *time_s = ctl_format_time(time);
                g_autofree char *data_s = ctl_format_data(data);

                printf("%" G_GUINT64_FORMAT "  %s  %s  %s\n", seq, time_s, topic, data_s);
                fflush(stdout);
        }
}

static void on_state(GObject *object, GParamSpec *pspec, gpointer data) {
        switch (outpost_client_get_state(OUTPOST_CLIENT(object))) {
        case OUTPOST_CLIENT_STATE_CONNECTED:
                fprintf(stderr, _("outpostctl: connected again; caught up with the events missed\n"));
                break;
        case OUTPOST_CLIENT_STATE_CONNECTING:
                fprintf(stderr, _("outpostctl: the service is reconnecting; waiting\n"));
                break;
        case OUTPOST_CLIENT_STATE_DISCONNECTED:
        default:
                fprintf(stderr, _("outpostctl: lost the service; waiting for it to come back\n"));
                break;
        }
}

static void on_resync(OutpostClient *client, gpointer data) {
        fprintf(stderr, _("outpostctl: events were lost while away (discarded, or the history was reset); "
                          "resuming after seq %" PRIu64 "\n"),
                (uint64_t) outpost_client_get_last_seq(client));
}

static gboolean on_stop(gpointer data) {
        Ctl *ctl = data;

        g_main_loop_quit(ctl->loop);
        return G_SOURCE_CONTINUE;
}

/* Through the client, which resumes after outages on its own. */
static int events_follow(Ctl *ctl) {
        guint sigint, sigterm;

        if (ctl->have_since)
                outpost_client_resume_from(ctl->client, NULL, ctl->since);
        outpost_client_subscribe(ctl->client, ctl->topic, on_event, ctl, NULL);
        g_signal_connect(ctl->client, "notify::state", G_CALLBACK(on_state), NULL);
        g_signal_connect(ctl->client, "resync-needed", G_CALLBACK(on_resync), NULL);
        sigint = g_unix_signal_add(SIGINT, on_stop, ctl);
        sigterm = g_unix_signal_add(SIGTERM, on_stop, ctl);
        g_main_loop_run(ctl->loop);
        g_source_remove(sigint);
        g_source_remove(sigterm);
        return 0;
}

int ctl_events(Ctl *ctl) {
        if (ctl->topic && !ctl->topic[0])
                g_clear_pointer(&ctl->topic, g_free);
        if (!ctl_check_connected(ctl))
                return 1;
        return ctl->follow ? events_follow(ctl) : events_list(ctl);
}

int ctl_publish(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_auto(GVariantDict) dict = G_VARIANT_DICT_INIT(NULL);
        const char *topic = ctl->args[0];
        guint64 seq;

        for (char **w = ctl->args + 1; *w; w++) {
                const char *eq = strchr(*w, '=');
                g_autofree char *key = NULL;

                if (!eq || eq == *w)
                        return ctl_fail(_("'%s' is not KEY=VALUE"), *w);
                key = g_strndup(*w, eq - *w);
                g_variant_dict_insert(&dict, key, "s", eq + 1);
        }
        if (!ctl_check_connected(ctl))
                return 1;
        if (!outpost_events_call_publish_sync(outpost_client_get_events(ctl->client), topic, g_variant_dict_end(&dict),
                                              &seq, NULL, &error))
                return ctl_fail_error(error, _("Cannot publish on '%s'"), topic);
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'seq': <%t>}", seq));
        else
                printf(_("Published event %" PRIu64 " on %s\n"), (uint64_t) seq, topic);
        return 0;
}

/* Send, or with --request-id SendWithOptions, which a retry with the same
 * id answers with the first call's message instead of sending it again. */
static gboolean send_message(Ctl *ctl, const char *const *ids, const char *body, char **ret_message_id,
                             guint64 *ret_last_seq, GError **error) {
        OutpostMessages *messages = outpost_client_get_messages(ctl->client);
        g_auto(GVariantDict) options = G_VARIANT_DICT_INIT(NULL);

        if (!ctl->request_id)
                return outpost_messages_call_send_sync(messages, ids, body, ret_message_id, ret_last_seq, NULL, error);
        g_variant_dict_insert(&options, OUTPOST_SEND_OPTION_REQUEST_ID, "s", ctl->request_id);
        return outpost_messages_call_send_with_options_sync(messages, ids, body, g_variant_dict_end(&options),
                                                            ret_message_id, ret_last_seq, NULL, error);
}

int ctl_send(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *body = NULL, *message_id = NULL;
        guint64 last_seq;

        if (!ctl->rest[0])
                return ctl_fail(_("'send' needs a message after '--'"));
        body = g_strjoinv(" ", ctl->rest);
        if (!ctl_check_connected(ctl))
                return 1;
        for (char **w = ctl->args; *w; w++) {
                g_autoptr(GVariant) user = ctl_get_user(ctl, *w);
                char *id = NULL;

                if (!user)
                        return 1;
                g_variant_lookup(user, "id", "s", &id);
                g_ptr_array_add(ids, id);
        }
        g_ptr_array_add(ids, NULL);
        if (!send_message(ctl, (const char *const *) ids->pdata, body, &message_id, &last_seq, &error))
                return ctl_fail_error(error, _("Cannot send the message"));
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'id': <%s>, 'last-seq': <%t>}", message_id, last_seq));
        else
                printf(g_dngettext(GETTEXT_PACKAGE, "Sent message %s to %u user (last event %" PRIu64 ")\n",
                                   "Sent message %s to %u users (last event %" PRIu64 ")\n", ids->len - 1),
                       message_id, ids->len - 1, (uint64_t) last_seq);
        return 0;
}
