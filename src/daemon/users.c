/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Users manager: users are data objects, copied by value and stored back
 * with an explicit save against a version tag (DESIGN.md §3, Users). This
 * file holds what a user may be and what a change of one does: the store
 * written, the event appended; users-dbus.c is its face on the bus. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "macro.h"
#include "users.h"
#include "validate.h"

int user_check_id(const char *id, sd_bus_error *error) {
        if (uuid_string_is_valid(id))
                return 0;
        g_autofree char *q = quote_for_error(id, 80);
        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                 "Invalid user id '%s': expected a lower-case UUID", q);
}

static int user_check_name(const char *name, sd_bus_error *error) {
        if (user_name_is_valid(name))
                return 0;
        g_autofree char *q = quote_for_error(name, 80);
        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                 "Invalid user name '%s': does not match ^[a-z_][a-z0-9_.-]{0,63}$", q);
}

/* Apply the a{sv} CHANGES to U within the configured limits, or fail with
 * InvalidArgument. */
static int apply_changes(Daemon *d, GVariant *changes, UserRecord *u, UserField *fields, sd_bus_error *error) {
        g_autofree char *problem = NULL;

        if (!user_record_apply_limited(u, changes, &d->config.user_limits, fields, &problem))
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, problem);
        return 0;
}

/* Checked before the caller is authorized, and applied to the stored user
 * afterwards. */
int user_check_changes(Daemon *d, GVariant *changes, sd_bus_error *error) {
        _cleanup_(user_record_clear) UserRecord scratch = {};
        UserField fields = 0;

        user_record_init(&scratch);
        return apply_changes(d, changes, &scratch, &fields, error);
}

int user_get(Daemon *d, const char *id, const UserRecord **ret, sd_bus_error *error) {
        int r;

        r = user_check_id(id, error);
        if (r < 0)
                return r;
        r = store_user_get(d->store, id, ret);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND, "No user with id '%s'", id);
        if (r < 0)
                return reply_store_error(d, r, error);
        return 0;
}

int user_lookup(Daemon *d, const char *name, const UserRecord **ret, sd_bus_error *error) {
        int r;

        r = user_check_name(name, error);
        if (r < 0)
                return r;
        r = store_user_lookup(d->store, name, ret);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND, "No user named '%s'", name);
        if (r < 0)
                return reply_store_error(d, r, error);
        return 0;
}

int user_new(Daemon *d, GVariant *fields, UserRecord *ret, sd_bus_error *error) {
        UserField given = 0;
        int r;

        user_record_init(ret);
        r = apply_changes(d, fields, ret, &given, error);
        if (r < 0)
                return r;
        if (!(given & USER_FIELD_NAME))
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, "Key 'name' is required to create a user");
        return 0;
}

static int append_user_event(Daemon *d, const char *action, const UserRecord *u) {
        g_autoptr(GVariant) owned = g_variant_ref_sink(vardict_new("action", g_variant_new_string(action),
                                                                   "id", g_variant_new_string(u->id),
                                                                   "tag", g_variant_new_string(u->tag),
                                                                   NULL));

        return daemon_append_event(d, "users", owned, NULL);
}

int user_create(Daemon *d, UserRecord *u, sd_bus_error *error) {
        int r;

        /* user_new() made it: the identity is given here, once. */
        assert(!u->id && !u->tag);
        u->id = uuid_string_new();
        u->tag = uuid_string_new();
        u->created = u->modified = g_get_real_time();
        r = store_user_insert(d->store, u);
        if (r == -EEXIST)
                return sd_bus_error_setf(error, BUS_ERROR_ALREADY_EXISTS, "A user named '%s' already exists", u->name);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = append_user_event(d, "created", u);
        if (r < 0)
                return reply_store_error(d, r, error);
        return 0;
}

/* A copy of the user ID, if its tag is EXPECTED_TAG. */
static int get_for_change(Daemon *d, const char *id, const char *expected_tag, UserRecord *ret, sd_bus_error *error) {
        const UserRecord *u;
        int r;

        r = user_get(d, id, &u, error);
        if (r < 0)
                return r;
        if (strcmp(u->tag, expected_tag) != 0) {
                g_autofree char *q = quote_for_error(expected_tag, 80);
                return sd_bus_error_setf(error, BUS_ERROR_SAVE_CONFLICT,
                                         "User '%s' was changed: expected tag '%s', current tag is '%s'",
                                         id, q, u->tag);
        }
        user_record_copy(ret, u);
        return 0;
}

int user_save(Daemon *d, const char *id, const char *expected_tag, GVariant *changes, UserRecord *ret,
              bool *ret_disabled, sd_bus_error *error) {
        g_autofree char *old_name = NULL;
        UserField fields = 0;
        bool was_enabled;
        int r;

        r = get_for_change(d, id, expected_tag, ret, error);
        if (r < 0)
                return r;
        was_enabled = ret->enabled;
        old_name = g_strdup(ret->name);
        r = apply_changes(d, changes, ret, &fields, error);
        if (r < 0)
                return r;
        /* The unique name index is written only for a new name. */
        if ((fields & USER_FIELD_NAME) && strcmp(old_name, ret->name) == 0)
                fields &= ~USER_FIELD_NAME;

        g_free(ret->tag);
        ret->tag = uuid_string_new();
        ret->modified = g_get_real_time();
        r = store_user_update(d->store, ret, fields);
        if (r == -EEXIST)
                return sd_bus_error_setf(error, BUS_ERROR_ALREADY_EXISTS, "A user named '%s' already exists",
                                         ret->name);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = append_user_event(d, "updated", ret);
        if (r < 0)
                return reply_store_error(d, r, error);
        *ret_disabled = was_enabled && !ret->enabled;
        return 0;
}

int user_delete(Daemon *d, const char *id, const char *expected_tag, sd_bus_error *error) {
        _cleanup_(user_record_clear) UserRecord u = {};
        int r;

        r = get_for_change(d, id, expected_tag, &u, error);
        if (r < 0)
                return r;
        r = store_user_delete(d->store, id);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = append_user_event(d, "deleted", &u);
        if (r < 0)
                return reply_store_error(d, r, error);
        return 0;
}
