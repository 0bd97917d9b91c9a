/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Users manager: users are data objects, copied by value and stored back
 * with an explicit save against a version tag (DESIGN.md §3, Users). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bus-gvariant.h"
#include "daemon.h"
#include "macro.h"
#include "validate.h"

static int check_user_id(const char *id, sd_bus_error *error) {
        if (uuid_string_is_valid(id))
                return 0;
        g_autofree char *q = quote_for_error(id, 80);
        return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                 "Invalid user id '%s': expected a lower-case UUID", q);
}

static int append_user_event(Daemon *d, const char *action, const UserRecord *u) {
        g_autoptr(GVariant) owned = g_variant_ref_sink(vardict_new("action", g_variant_new_string(action),
                                                                   "id", g_variant_new_string(u->id),
                                                                   "tag", g_variant_new_string(u->tag),
                                                                   NULL));

        return daemon_append_event(d, "users", owned, NULL);
}

static int reply_user(sd_bus_message *m, const UserRecord *u) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = user_record_append(reply, u);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Apply the a{sv} CHANGES to U within the configured limits, or fail with
 * InvalidArgument. */
static int apply_changes(Daemon *d, GVariant *changes, UserRecord *u, UserField *fields, sd_bus_error *error) {
        g_autofree char *problem = NULL;

        if (!user_record_apply_limited(u, changes, &d->config.user_limits, fields, &problem))
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, problem);
        return 0;
}

/* CHANGES are valid whatever user they are applied to: checked before the
 * caller is authorized, and applied to the stored user afterwards. */
static int check_changes(Daemon *d, GVariant *changes, sd_bus_error *error) {
        _cleanup_(user_record_clear) UserRecord scratch = {};
        UserField fields = 0;

        user_record_init(&scratch);
        return apply_changes(d, changes, &scratch, &fields, error);
}

static int create_user_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        _cleanup_(user_record_clear) UserRecord u = {};
        g_autoptr(GVariant) fields_arg = NULL;
        UserField fields = 0;
        int r;

        r = bus_message_read_vardict(m, &fields_arg);
        if (r < 0)
                return r;
        user_record_init(&u);
        r = apply_changes(d, fields_arg, &u, &fields, error);
        if (r < 0)
                return r;
        if (!(fields & USER_FIELD_NAME))
                return sd_bus_error_set(error, BUS_ERROR_INVALID_ARGUMENT, "Key 'name' is required to create a user");
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;

        u.id = uuid_string_new();
        u.tag = uuid_string_new();
        u.created = u.modified = g_get_real_time();

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = store_user_insert(d->store, &u);
        if (r == -EEXIST) {
                daemon_rollback(d);
                return sd_bus_error_setf(error, BUS_ERROR_ALREADY_EXISTS, "A user named '%s' already exists", u.name);
        }
        if (r >= 0)
                r = append_user_event(d, "created", &u);
        if (r >= 0)
                r = daemon_reply_after_commit(d, m, NULL, NULL, "ss", u.id, u.tag);
        if (r < 0) {
                daemon_rollback(d);
                return reply_store_error(d, r, error);
        }
        return r;
}

static int method_create_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, create_user_call(m, userdata, error));
}

static int method_get_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        const UserRecord *u;
        const char *id;
        int r;

        r = sd_bus_message_read(m, "s", &id);
        if (r < 0)
                return r;
        r = check_user_id(id, error);
        if (r < 0)
                return r;
        r = store_user_get(d->store, id, &u);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND, "No user with id '%s'", id);
        if (r < 0)
                return reply_store_error(d, r, error);
        return reply_user(m, u);
}

static int method_lookup_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        const UserRecord *u;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        if (!user_name_is_valid(name)) {
                g_autofree char *q = quote_for_error(name, 80);
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid user name '%s': does not match ^[a-z_][a-z0-9_.-]{0,63}$", q);
        }
        r = store_user_lookup(d->store, name, &u);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND, "No user named '%s'", name);
        if (r < 0)
                return reply_store_error(d, r, error);
        return reply_user(m, u);
}

static int append_user_list(sd_bus_message *reply, GPtrArray *users) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        if (r < 0)
                return r;
        for (guint i = 0; i < users->len; i++) {
                r = user_record_append(reply, users->pdata[i]);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int method_list_users(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GPtrArray) users = g_ptr_array_new_with_free_func((GDestroyNotify) user_record_free);
        Daemon *d = userdata;
        const char *cursor;
        uint32_t limit;
        bool more;
        int r;

        r = sd_bus_message_read(m, "su", &cursor, &limit);
        if (r < 0)
                return r;
        if (limit < 1 || limit > LIST_LIMIT_MAX)
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid limit %u: must be 1-%d", limit, LIST_LIMIT_MAX);
        /* A lowered page size only shortens pages: a client that asks for
         * more, as the contract lets it, still pages through everything. */
        limit = MIN(limit, d->config.max_users_per_page);
        /* The cursor is the name the previous page ended with. */
        if (cursor[0] && !user_name_is_valid(cursor)) {
                g_autofree char *q = quote_for_error(cursor, 80);
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid cursor '%s': pass \"\" or a next_cursor ListUsers returned", q);
        }

        r = store_user_list(d->store, cursor, limit, users, &more);
        if (r < 0)
                return reply_store_error(d, r, error);

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = append_user_list(reply, users);
        if (r >= 0)
                r = sd_bus_message_append(reply, "s",
                                          more ? ((UserRecord *) users->pdata[users->len - 1])->name : "");
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Inside a transaction: a copy of the user ID, if its tag is EXPECTED_TAG. */
static int get_for_change(Daemon *d, const char *id, const char *expected_tag, UserRecord *ret, sd_bus_error *error) {
        const UserRecord *u;
        int r;

        r = store_user_get(d->store, id, &u);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, BUS_ERROR_NOT_FOUND, "No user with id '%s'", id);
        if (r < 0)
                return reply_store_error(d, r, error);
        if (strcmp(u->tag, expected_tag) != 0) {
                g_autofree char *q = quote_for_error(expected_tag, 80);
                return sd_bus_error_setf(error, BUS_ERROR_SAVE_CONFLICT,
                                         "User '%s' was changed: expected tag '%s', current tag is '%s'",
                                         id, q, u->tag);
        }
        user_record_copy(ret, u);
        return 0;
}

static int save_user(Daemon *d, sd_bus_message *m, const char *id, const char *expected_tag, GVariant *changes,
                     UserRecord *u, bool *ret_disabled, sd_bus_error *error) {
        g_autofree char *old_name = NULL;
        UserField fields = 0;
        bool was_enabled;
        int r;

        r = get_for_change(d, id, expected_tag, u, error);
        if (r < 0)
                return r;
        was_enabled = u->enabled;
        old_name = g_strdup(u->name);
        r = apply_changes(d, changes, u, &fields, error);
        if (r < 0)
                return r;
        /* The unique name index is written only for a new name. */
        if ((fields & USER_FIELD_NAME) && strcmp(old_name, u->name) == 0)
                fields &= ~USER_FIELD_NAME;

        g_free(u->tag);
        u->tag = uuid_string_new();
        u->modified = g_get_real_time();
        r = store_user_update(d->store, u, fields);
        if (r == -EEXIST)
                return sd_bus_error_setf(error, BUS_ERROR_ALREADY_EXISTS, "A user named '%s' already exists", u->name);
        if (r >= 0)
                r = append_user_event(d, "updated", u);
        if (r < 0)
                return reply_store_error(d, r, error);
        *ret_disabled = was_enabled && !u->enabled;
        return 0;
}

static int save_user_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        _cleanup_(user_record_clear) UserRecord u = {};
        g_autoptr(GVariant) changes = NULL;
        const char *id, *expected_tag;
        bool disabled = false;
        int r;

        r = sd_bus_message_read(m, "ss", &id, &expected_tag);
        if (r >= 0)
                r = bus_message_read_vardict(m, &changes);
        if (r < 0)
                return r;
        r = check_user_id(id, error);
        if (r >= 0)
                r = check_changes(d, changes, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = save_user(d, m, id, expected_tag, changes, &u, &disabled, error);
        if (r < 0) {
                daemon_rollback(d);
                return sd_bus_error_is_set(error) ? r : reply_store_error(d, r, error);
        }
        /* A disabled user goes offline at once, before the caller hears back. */
        r = daemon_reply_after_commit(d, m, disabled ? presence_user_gone : NULL, u.id, "s", u.tag);
        return r < 0 ? reply_store_error(d, r, error) : r;
}

static int method_save_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, save_user_call(m, userdata, error));
}

static int delete_user_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        _cleanup_(user_record_clear) UserRecord u = {};
        const char *id, *expected_tag;
        int r;

        r = sd_bus_message_read(m, "ss", &id, &expected_tag);
        if (r < 0)
                return r;
        r = check_user_id(id, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = get_for_change(d, id, expected_tag, &u, error);
        if (r >= 0)
                r = store_user_delete(d->store, id);
        if (r >= 0)
                r = append_user_event(d, "deleted", &u);
        if (r < 0) {
                daemon_rollback(d);
                return sd_bus_error_is_set(error) ? r : reply_store_error(d, r, error);
        }
        r = daemon_reply_after_commit(d, m, presence_user_gone, id, NULL);
        return r < 0 ? reply_store_error(d, r, error) : r;
}

static int method_delete_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, delete_user_call(m, userdata, error));
}

static const sd_bus_vtable users_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("CreateUser",
                                SD_BUS_ARGS("a{sv}", fields),
                                SD_BUS_RESULT("s", id, "s", tag),
                                method_create_user,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetUser",
                                SD_BUS_ARGS("s", id),
                                SD_BUS_RESULT("a{sv}", user),
                                method_get_user,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("LookupUser",
                                SD_BUS_ARGS("s", name),
                                SD_BUS_RESULT("a{sv}", user),
                                method_lookup_user,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListUsers",
                                SD_BUS_ARGS("s", cursor, "u", limit),
                                SD_BUS_RESULT("aa{sv}", users, "s", next_cursor),
                                method_list_users,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SaveUser",
                                SD_BUS_ARGS("s", id, "s", expected_tag, "a{sv}", changes),
                                SD_BUS_RESULT("s", tag),
                                method_save_user,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DeleteUser",
                                SD_BUS_ARGS("s", id, "s", expected_tag),
                                SD_BUS_NO_RESULT,
                                method_delete_user,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

int users_register(Daemon *d) {
        return sd_bus_add_object_vtable(d->bus, NULL, USERS_PATH, USERS_IFACE, users_vtable, d);
}
