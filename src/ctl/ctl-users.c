/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* outpostctl users list|show|create|set|delete */
#include "config.h"

#include <stdio.h>

#include "ctl.h"

static const char *lookup_str(GVariant *user, const char *key) {
        const char *s = NULL;

        g_variant_lookup(user, key, "&s", &s);
        return s ?: "";
}

static gboolean lookup_enabled(GVariant *user) {
        gboolean enabled = TRUE;

        g_variant_lookup(user, "enabled", "b", &enabled);
        return enabled;
}

int ctl_users_list(Ctl *ctl) {
        g_autoptr(CtlTable) table = NULL;
        g_autoptr(GVariantBuilder) all = g_variant_builder_new(G_VARIANT_TYPE("aa{sv}"));
        g_autofree char *cursor = g_strdup("");
        const char *const headers[] = { _("NAME"), _("DISPLAY NAME"), _("EMAIL"), _("ENABLED"), _("ID"), NULL };
        guint n = 0;

        if (!ctl_check_connected(ctl))
                return 1;
        table = ctl_table_new(headers);
        do {
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) users = NULL;
                g_autofree char *next = NULL;
                GVariantIter iter;
                GVariant *user;

                if (!outpost_users_call_list_users_sync(outpost_client_get_users(ctl->client), cursor, 1000, &users,
                                                        &next, NULL, &error))
                        return ctl_fail_error(error, _("Cannot list the users"));
                g_variant_iter_init(&iter, users);
                while ((user = g_variant_iter_next_value(&iter))) {
                        const char *const row[] = { lookup_str(user, "name"), lookup_str(user, "display-name"),
                                                    lookup_str(user, "email"),
                                                    lookup_enabled(user) ? _("yes") : _("no"),
                                                    lookup_str(user, "id"), NULL };
                        ctl_table_add(table, row);
                        g_variant_builder_add_value(all, user);
                        n++;
                }
                g_free(cursor);
                cursor = g_steal_pointer(&next);
        } while (cursor[0]);

        if (ctl->json) {
                ctl_json_print(g_variant_builder_end(all));
                return 0;
        }
        ctl_table_print(table);
        printf("\n");
        printf(g_dngettext(GETTEXT_PACKAGE, "%u user listed.\n", "%u users listed.\n", n), n);
        return 0;
}

static void print_user(GVariant *user) {
        g_autoptr(GVariant) attributes = g_variant_lookup_value(user, "attributes", G_VARIANT_TYPE("a{ss}"));
        gint64 created = 0, modified = 0;
        g_autofree char *created_s = NULL, *modified_s = NULL;
        GVariantIter iter;
        const char *k, *v;
        gboolean first = TRUE;

        g_variant_lookup(user, "created", "x", &created);
        g_variant_lookup(user, "modified", "x", &modified);
        created_s = ctl_format_time(created);
        modified_s = ctl_format_time(modified);

        printf("%14s %s\n", _("Name:"), lookup_str(user, "name"));
        printf("%14s %s\n", _("Id:"), lookup_str(user, "id"));
        printf("%14s %s\n", _("Tag:"), lookup_str(user, "tag"));
        printf("%14s %s\n", _("Display name:"), lookup_str(user, "display-name"));
        printf("%14s %s\n", _("Email:"), lookup_str(user, "email"));
        printf("%14s %s\n", _("Enabled:"), lookup_enabled(user) ? _("yes") : _("no"));
        if (attributes) {
                g_variant_iter_init(&iter, attributes);
                while (g_variant_iter_next(&iter, "{&s&s}", &k, &v)) {
                        printf("%14s %s=%s\n", first ? _("Attributes:") : "", k, v);
                        first = FALSE;
                }
        }
        printf("%14s %s\n", _("Created:"), created_s);
        printf("%14s %s\n", _("Modified:"), modified_s);
}

int ctl_users_show(Ctl *ctl) {
        g_autoptr(GVariant) user = NULL;

        if (!ctl_check_connected(ctl) || !(user = ctl_get_user(ctl, ctl->args[0])))
                return 1;
        if (ctl->json)
                ctl_json_print(g_variant_ref(user));
        else
                print_user(user);
        return 0;
}

int ctl_users_create(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) fields = NULL;
        g_autofree char *id = NULL, *tag = NULL;
        g_auto(GVariantDict) dict = G_VARIANT_DICT_INIT(NULL);
        const char *name = ctl->args[0];

        fields = ctl_parse_user_fields(ctl->args + 1, NULL, &error);
        if (!fields)
                return ctl_fail("%s", error->message);
        if (g_variant_lookup(fields, "name", "&s", NULL))
                return ctl_fail(_("The name is given twice: as NAME, and as name="));
        g_variant_dict_init(&dict, fields);
        g_variant_dict_insert(&dict, "name", "s", name);
        if (!ctl_check_connected(ctl))
                return 1;
        if (!outpost_users_call_create_user_sync(outpost_client_get_users(ctl->client), g_variant_dict_end(&dict), &id,
                                                 &tag, NULL, &error))
                return ctl_fail_error(error, _("Cannot create user '%s'"), name);
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'id': <%s>, 'tag': <%s>}", id, tag));
        else
                printf(_("Created user %s: id %s, tag %s\n"), name, id, tag);
        return 0;
}

/* After a SaveConflict: say which tag was expected, which is current, and
 * whether the expected one was given or just read. */
static int conflict(Ctl *ctl, const GError *error, const char *what, const char *word, const char *expected) {
        g_autoptr(GError) again_error = NULL;
        g_autoptr(GVariant) again = ctl_resolve_user(ctl, word, &again_error);
        const char *current = again ? lookup_str(again, "tag") : _("(unknown: the user is gone)");

        if (ctl->if_tag)
                return ctl_fail(_("Cannot %s user '%s': it has changed: expected tag %s (--if-tag), current tag %s"),
                                what, word, expected, current);
        return ctl_fail(_("Cannot %s user '%s': it changed after outpostctl read it: expected tag %s (just read), "
                          "current tag %s; run the command again"),
                        what, word, expected, current);
}

int ctl_users_set(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) user = NULL, changes = NULL;
        g_autofree char *new_tag = NULL;
        const char *word = ctl->args[0], *id, *expected;

        if (!ctl_check_connected(ctl) || !(user = ctl_get_user(ctl, word)))
                return 1;
        changes = ctl_parse_user_fields(ctl->args + 1, user, &error);
        if (!changes)
                return ctl_fail("%s", error->message);
        id = lookup_str(user, "id");
        expected = ctl->if_tag ?: lookup_str(user, "tag");
        if (!outpost_users_call_save_user_sync(outpost_client_get_users(ctl->client), id, expected, changes, &new_tag,
                                               NULL, &error)) {
                if (g_error_matches(error, OUTPOST_ERROR, OUTPOST_ERROR_SAVE_CONFLICT))
                        return conflict(ctl, error, _("save"), word, expected);
                return ctl_fail_error(error, _("Cannot save user '%s'"), word);
        }
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'id': <%s>, 'tag': <%s>}", id, new_tag));
        else
                printf(_("Saved user %s: tag %s\n"), word, new_tag);
        return 0;
}

int ctl_users_delete(Ctl *ctl) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) user = NULL;
        const char *word = ctl->args[0], *id, *expected;

        if (!ctl_check_connected(ctl) || !(user = ctl_get_user(ctl, word)))
                return 1;
        id = lookup_str(user, "id");
        expected = ctl->if_tag ?: lookup_str(user, "tag");
        if (!outpost_users_call_delete_user_sync(outpost_client_get_users(ctl->client), id, expected, NULL, &error)) {
                if (g_error_matches(error, OUTPOST_ERROR, OUTPOST_ERROR_SAVE_CONFLICT))
                        return conflict(ctl, error, _("delete"), word, expected);
                return ctl_fail_error(error, _("Cannot delete user '%s'"), word);
        }
        if (ctl->json)
                ctl_json_print(g_variant_new_parsed("{'id': <%s>, 'deleted': <true>}", id));
        else
                printf(_("Deleted user %s (id %s)\n"), word, id);
        return 0;
}
