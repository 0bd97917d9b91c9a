/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl: options, verbs, and what the verbs share. */
#include "config.h"

#include <inttypes.h>

#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

typedef enum {
        OPT_IF_TAG = 1 << 0,
        OPT_TTL = 1 << 1,
        OPT_SINCE = 1 << 2,
        OPT_TOPIC = 1 << 3,
        OPT_FOLLOW = 1 << 4,
        OPT_REQUEST_ID = 1 << 5,
} VerbOption;

typedef struct Verb {
        const char *group;
        const char *name;       /* NULL: the group alone */
        guint min_args, max_args;
        VerbOption options;
        gboolean needs_rest;    /* "-- MESSAGE" */
        int (*run)(Ctl *ctl);
} Verb;

#define ANY G_MAXUINT

static const Verb verbs[] = {
        { "status", NULL, 0, 0, 0, FALSE, ctl_status },
        { "users", "list", 0, 0, 0, FALSE, ctl_users_list },
        { "users", "show", 1, 1, 0, FALSE, ctl_users_show },
        { "users", "create", 1, ANY, 0, FALSE, ctl_users_create },
        { "users", "set", 2, ANY, OPT_IF_TAG, FALSE, ctl_users_set },
        { "users", "delete", 1, 1, OPT_IF_TAG, FALSE, ctl_users_delete },
        { "presence", NULL, 0, 0, 0, FALSE, ctl_presence_list },
        { "presence", "online", 1, 1, OPT_TTL, FALSE, ctl_presence_online },
        { "presence", "offline", 1, 1, 0, FALSE, ctl_presence_offline },
        { "send", NULL, 1, ANY, OPT_REQUEST_ID, TRUE, ctl_send },
        { "events", NULL, 0, 0, OPT_SINCE | OPT_TOPIC | OPT_FOLLOW, FALSE, ctl_events },
        { "publish", NULL, 1, ANY, 0, FALSE, ctl_publish },
        { "bridge", "status", 0, 0, 0, FALSE, ctl_bridge_status },
        { "bridge", "reconnect", 0, 0, 0, FALSE, ctl_bridge_reconnect },
        { "bridge", "peers", 0, 0, 0, FALSE, ctl_bridge_peers },
};

static void usage(FILE *f) {
        fprintf(f, "%s", _("Usage: outpostctl [--system|--session|--address=ADDR] [--json] VERB ...\n"
                           "\n"
                           "  status                               the service, its managers and bridge\n"
                           "  users list                           list the users\n"
                           "  users show USER                      show a user (an id or a name)\n"
                           "  users create NAME [KEY=VALUE...]     create a user\n"
                           "  users set USER KEY=VALUE... [--if-tag=TAG]\n"
                           "                                       change a user\n"
                           "  users delete USER [--if-tag=TAG]     delete a user\n"
                           "  presence                             list the users online\n"
                           "  presence online USER [--ttl=S]       hold a user online until stopped\n"
                           "  presence offline USER                drop this client's hold\n"
                           "  send USER... [--request-id=ID] -- MESSAGE\n"
                           "                                       send a system message\n"
                           "  events [--since=SEQ] [--topic=PREFIX] [--follow]\n"
                           "                                       show (and follow) the events\n"
                           "  publish TOPIC [KEY=VALUE...]         publish an event\n"
                           "  bridge status | bridge reconnect     the bridge of this bus\n"
                           "  bridge peers                         the remote bridges its listener serves\n"
                           "\n"
                           "KEY is a user field: name, display-name, email, enabled (true/false),\n"
                           "attributes.NAME (attributes= clears them all).\n"));
}

static int vfail(const GError *error, const char *format, va_list ap) G_GNUC_PRINTF(2, 0);

static int vfail(const GError *error, const char *format, va_list ap) {
        g_autofree char *message = g_strdup_vprintf(format, ap);
        g_autofree char *reason = error ? ctl_error_message(error) : NULL;

        if (reason)
                fprintf(stderr, "outpostctl: %s: %s\n", message, reason);
        else
                fprintf(stderr, "outpostctl: %s\n", message);
        return 1;
}

int ctl_fail(const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = vfail(NULL, format, ap);
        va_end(ap);
        return r;
}

int ctl_fail_error(const GError *error, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = vfail(error, format, ap);
        va_end(ap);
        return r;
}

char *ctl_error_message(const GError *error) {
        g_autoptr(GError) copy = g_error_copy(error);

        g_dbus_error_strip_remote_error(copy);
        return g_strdup(copy->message);
}

gboolean ctl_check_connected(Ctl *ctl) {
        switch (outpost_client_get_state(ctl->client)) {
        case OUTPOST_CLIENT_STATE_CONNECTED:
                return TRUE;
        case OUTPOST_CLIENT_STATE_CONNECTING:
                ctl_fail(_("The Outpost service is not reachable now: its bridge is reconnecting (see 'outpostctl bridge status')"));
                return FALSE;
        case OUTPOST_CLIENT_STATE_DISCONNECTED:
        default:
                ctl_fail(_("The Outpost service is not running on this bus (nobody owns org.outpost.Outpost1)"));
                return FALSE;
        }
}

static gboolean is_uuid(const char *s) {
        if (strlen(s) != 36)
                return FALSE;
        for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return FALSE;
                } else if (!g_ascii_isxdigit(s[i]))
                        return FALSE;
        }
        return TRUE;
}

GVariant *ctl_resolve_user(Ctl *ctl, const char *word, GError **error) {
        OutpostUsers *users = outpost_client_get_users(ctl->client);
        GVariant *user = NULL;

        if (is_uuid(word))
                outpost_users_call_get_user_sync(users, word, &user, NULL, error);
        else
                outpost_users_call_lookup_user_sync(users, word, &user, NULL, error);
        return user;
}

GVariant *ctl_get_user(Ctl *ctl, const char *word) {
        g_autoptr(GError) error = NULL;
        GVariant *user = ctl_resolve_user(ctl, word, &error);

        if (!user)
                ctl_fail_error(error, _("Cannot find user '%s'"), word);
        return user;
}

static gboolean parse_bool(const char *s, gboolean *ret) {
        if (g_str_equal(s, "true") || g_str_equal(s, "yes") || g_str_equal(s, "1") || g_str_equal(s, "on"))
                *ret = TRUE;
        else if (g_str_equal(s, "false") || g_str_equal(s, "no") || g_str_equal(s, "0") || g_str_equal(s, "off"))
                *ret = FALSE;
        else
                return FALSE;
        return TRUE;
}

GVariant *ctl_parse_user_fields(char **words, GVariant *base, GError **error) {
        g_auto(GVariantDict) dict = G_VARIANT_DICT_INIT(NULL);
        g_autoptr(GHashTable) attributes = NULL;

        for (char **w = words; *w; w++) {
                const char *eq = strchr(*w, '=');
                g_autofree char *key = NULL;
                const char *value;

                if (!eq || eq == *w) {
                        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, _("'%s' is not KEY=VALUE"), *w);
                        return NULL;
                }
                key = g_strndup(*w, eq - *w);
                value = eq + 1;

                if (g_str_has_prefix(key, "attributes.") || g_str_equal(key, "attributes")) {
                        if (!attributes) {
                                g_autoptr(GVariant) current = NULL;
                                GVariantIter iter;
                                const char *k, *v;

                                attributes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
                                if (base && (current = g_variant_lookup_value(base, "attributes", G_VARIANT_TYPE("a{ss}")))) {
                                        g_variant_iter_init(&iter, current);
                                        while (g_variant_iter_next(&iter, "{&s&s}", &k, &v))
                                                g_hash_table_insert(attributes, g_strdup(k), g_strdup(v));
                                }
                        }
                        if (g_str_equal(key, "attributes")) {
                                if (*value) {
                                        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                                    _("'attributes' takes no value (attributes= clears them); set one with attributes.NAME=VALUE"));
                                        return NULL;
                                }
                                g_hash_table_remove_all(attributes);
                        } else
                                g_hash_table_insert(attributes, g_strdup(key + strlen("attributes.")), g_strdup(value));
                } else if (g_str_equal(key, "enabled")) {
                        gboolean b;
                        if (!parse_bool(value, &b)) {
                                g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                            _("enabled takes true or false, not '%s'"), value);
                                return NULL;
                        }
                        g_variant_dict_insert(&dict, key, "b", b);
                } else if (g_str_equal(key, "name") || g_str_equal(key, "display-name") || g_str_equal(key, "email")) {
                        g_variant_dict_insert(&dict, key, "s", value);
                } else if (g_str_equal(key, "id") || g_str_equal(key, "tag") || g_str_equal(key, "created") ||
                           g_str_equal(key, "modified")) {
                        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, _("The field '%s' is read-only"), key);
                        return NULL;
                } else {
                        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                    _("Unknown field '%s' (known: name, display-name, email, enabled, attributes.NAME)"), key);
                        return NULL;
                }
        }
        if (attributes) {
                g_autoptr(GVariantBuilder) b = g_variant_builder_new(G_VARIANT_TYPE("a{ss}"));
                g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(attributes), (GCompareFunc) strcmp);

                for (GList *l = keys; l; l = l->next)
                        g_variant_builder_add(b, "{ss}", l->data, g_hash_table_lookup(attributes, l->data));
                g_variant_dict_insert_value(&dict, "attributes", g_variant_builder_end(b));
        }
        return g_variant_ref_sink(g_variant_dict_end(&dict));
}

/* Options */

typedef struct Parsed {
        GBusType bus_type;
        char *address;
        VerbOption given;
        GPtrArray *words;
} Parsed;

/* Matches --NAME=VALUE or --NAME VALUE; *RET is NULL when the value is
 * missing. */
static gboolean option_value(char **argv, int *i, const char *name, const char **ret) {
        const char *arg = argv[*i];
        gsize n = strlen(name);

        if (strncmp(arg, name, n) != 0)
                return FALSE;
        if (arg[n] == '=') {
                *ret = arg + n + 1;
                return TRUE;
        }
        if (arg[n] != '\0')
                return FALSE;
        *ret = argv[*i + 1];
        if (*ret)
                ++*i;
        else
                ctl_fail(_("Option %s needs a value"), name);
        return TRUE;
}

static gboolean parse_number(const char *option, const char *value, guint64 max, guint64 *ret) {
        if (!value)
                return FALSE;
        if (!g_ascii_string_to_unsigned(value, 10, 0, max, ret, NULL)) {
                ctl_fail(_("Option %s takes a number from 0 to %" PRIu64 ", not '%s'"), option, (uint64_t) max, value);
                return FALSE;
        }
        return TRUE;
}

/* Returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, Ctl *ctl, Parsed *p) {
        const char *v;
        guint64 n;

        p->bus_type = G_BUS_TYPE_SYSTEM;
        p->words = g_ptr_array_new_with_free_func(g_free);
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i];

                if (g_str_equal(arg, "--")) {
                        ctl->have_rest = TRUE;
                        ctl->rest = g_strdupv(argv + i + 1);
                        break;
                }
                if (arg[0] != '-' || arg[1] == '\0') {
                        g_ptr_array_add(p->words, g_strdup(arg));
                        continue;
                }
                if (g_str_equal(arg, "-h") || g_str_equal(arg, "--help")) {
                        usage(stdout);
                        return 0;
                } else if (g_str_equal(arg, "--version")) {
                        printf("outpostctl %s\n", PACKAGE_VERSION);
                        return 0;
                } else if (g_str_equal(arg, "--system")) {
                        p->bus_type = G_BUS_TYPE_SYSTEM;
                        g_clear_pointer(&p->address, g_free);
                } else if (g_str_equal(arg, "--session")) {
                        p->bus_type = G_BUS_TYPE_SESSION;
                        g_clear_pointer(&p->address, g_free);
                } else if (option_value(argv, &i, "--address", &v)) {
                        if (!v)
                                return 1;
                        g_free(p->address);
                        p->address = g_strdup(v);
                } else if (g_str_equal(arg, "--json")) {
                        ctl->json = TRUE;
                } else if (option_value(argv, &i, "--if-tag", &v)) {
                        if (!v)
                                return 1;
                        p->given |= OPT_IF_TAG;
                        g_free(ctl->if_tag);
                        ctl->if_tag = g_strdup(v);
                } else if (option_value(argv, &i, "--ttl", &v)) {
                        p->given |= OPT_TTL;
                        ctl->have_ttl = TRUE;
                        if (!parse_number("--ttl", v, G_MAXUINT32, &n))
                                return 1;
                        ctl->ttl = n;
                } else if (option_value(argv, &i, "--since", &v)) {
                        p->given |= OPT_SINCE;
                        ctl->have_since = TRUE;
                        if (!parse_number("--since", v, G_MAXUINT64, &ctl->since))
                                return 1;
                } else if (option_value(argv, &i, "--topic", &v)) {
                        if (!v)
                                return 1;
                        p->given |= OPT_TOPIC;
                        g_free(ctl->topic);
                        ctl->topic = g_strdup(v);
                } else if (option_value(argv, &i, "--request-id", &v)) {
                        if (!v)
                                return 1;
                        p->given |= OPT_REQUEST_ID;
                        g_free(ctl->request_id);
                        ctl->request_id = g_strdup(v);
                } else if (g_str_equal(arg, "--follow") || g_str_equal(arg, "-f")) {
                        p->given |= OPT_FOLLOW;
                        ctl->follow = TRUE;
                } else {
                        return ctl_fail(_("Unknown option %s (see outpostctl --help)"), arg);
                }
        }
        g_ptr_array_add(p->words, NULL);
        return -1;
}

static const Verb *find_verb(char **words, int *ret_consumed) {
        if (!words[0])
                return NULL;
        for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++) {
                const Verb *v = &verbs[i];
                if (!g_str_equal(words[0], v->group))
                        continue;
                if (v->name && words[1] && g_str_equal(words[1], v->name)) {
                        *ret_consumed = 2;
                        return v;
                }
        }
        /* The group alone ("presence", "events"): the words are its arguments. */
        for (gsize i = 0; i < G_N_ELEMENTS(verbs); i++) {
                const Verb *v = &verbs[i];
                if (g_str_equal(words[0], v->group) && !v->name) {
                        *ret_consumed = 1;
                        return v;
                }
        }
        return NULL;
}

static void on_client(GObject *source, GAsyncResult *result, gpointer data) {
        Ctl *ctl = data;
        g_autoptr(GError) error = NULL;

        ctl->client = outpost_client_new_finish(result, &error);
        if (!ctl->client)
                ctl_fail_error(error, _("Cannot connect to the bus"));
        g_main_loop_quit(ctl->loop);
}

static int run(Ctl *ctl, Parsed *p) {
        const Verb *verb;
        g_autofree char *verb_name = NULL;
        int consumed = 0;
        guint n_args;

        verb = find_verb((char **) p->words->pdata, &consumed);
        if (!verb) {
                if (p->words->len <= 1) {
                        usage(stderr);
                        return 1;
                }
                return ctl_fail(_("Unknown verb '%s' (see outpostctl --help)"), (char *) p->words->pdata[0]);
        }
        verb_name = verb->name ? g_strdup_printf("%s %s", verb->group, verb->name) : g_strdup(verb->group);
        ctl->args = (char **) p->words->pdata + consumed;
        n_args = g_strv_length(ctl->args);
        if (n_args < verb->min_args || n_args > verb->max_args)
                return ctl_fail(_("Wrong number of arguments for '%s' (see outpostctl --help)"), verb_name);
        if (p->given & ~verb->options)
                return ctl_fail(_("An option given does not apply to '%s' (see outpostctl --help)"), verb_name);
        if (verb->needs_rest != ctl->have_rest)
                return ctl_fail(verb->needs_rest ? _("'%s' needs '-- MESSAGE'") : _("'%s' takes no '--'"), verb_name);

        if (p->address)
                outpost_client_new_for_address(p->address, NULL, on_client, ctl);
        else
                outpost_client_new(p->bus_type, NULL, on_client, ctl);
        g_main_loop_run(ctl->loop);
        return ctl->client ? verb->run(ctl) : 1;
}

int main(int argc, char **argv) {
        Ctl ctl = { 0 };
        Parsed p = { 0 };
        int r;

        setlocale(LC_ALL, "");
        bindtextdomain(GETTEXT_PACKAGE, LOCALEDIR);
        bind_textdomain_codeset(GETTEXT_PACKAGE, "UTF-8");
        textdomain(GETTEXT_PACKAGE);

        ctl.loop = g_main_loop_new(NULL, FALSE);
        r = parse_args(argc, argv, &ctl, &p);
        if (r < 0)
                r = run(&ctl, &p);

        g_clear_object(&ctl.client);
        /* The client's cancelled calls come back here. */
        while (g_main_context_iteration(NULL, FALSE))
                ;
        g_main_loop_unref(ctl.loop);
        g_ptr_array_unref(p.words);
        g_free(p.address);
        g_free(ctl.if_tag);
        g_free(ctl.topic);
        g_free(ctl.request_id);
        g_strfreev(ctl.rest);
        return r;
}
