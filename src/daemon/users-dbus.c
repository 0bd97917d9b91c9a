/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Users manager on the bus: each method read, checked, authorized,
 * carried out by users.c, and answered (DESIGN.md §3, Users). */
#include "config.h"

#include <assert.h>

#include "bus-gvariant.h"
#include "macro.h"
#include "users.h"
#include "validate.h"

static int reply_user(sd_bus_message *m, const UserRecord *u) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = user_record_append(reply, u);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int create_user_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        _cleanup_(user_record_clear) UserRecord u = {};
        g_autoptr(GVariant) fields = NULL;
        int r;

        r = bus_message_read_vardict(m, &fields);
        if (r < 0)
                return r;
        r = user_new(d, fields, &u, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = user_create(d, &u, error);
        if (r < 0) {
                daemon_rollback(d);
                return r;
        }
        r = daemon_reply_after_commit(d, m, NULL, NULL, "ss", u.id, u.tag);
        return r < 0 ? reply_store_error(d, r, error) : r;
}

static int method_create_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return daemon_error_after_batch(userdata, m, error, create_user_call(m, userdata, error));
}

/* GetUser and LookupUser: the user their one argument names, found by FIND. */
static int reply_user_found(sd_bus_message *m, Daemon *d, UserFind find, sd_bus_error *error) {
        const UserRecord *u;
        const char *key;
        int r;

        r = sd_bus_message_read(m, "s", &key);
        if (r < 0)
                return r;
        r = find(d, key, &u, error);
        if (r < 0)
                return r;
        return reply_user(m, u);
}

static int method_get_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return reply_user_found(m, userdata, user_get, error);
}

static int method_lookup_user(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return reply_user_found(m, userdata, user_lookup, error);
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

static int reply_user_list(sd_bus_message *m, GPtrArray *users, bool more) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        /* The store says more only after a full page, and a page is never
         * empty. */
        assert(!more || users->len > 0);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = append_user_list(reply, users);
        if (r < 0)
                return r;
        /* The cursor is the name the page ended with. */
        r = sd_bus_message_append(reply, "s", more ? ((UserRecord *) users->pdata[users->len - 1])->name : "");
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_list_users(sd_bus_message *m, void *userdata, sd_bus_error *error) {
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
        return reply_user_list(m, users, more);
}

static int save_user_call(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Daemon *d = userdata;
        _cleanup_(user_record_clear) UserRecord u = {};
        g_autoptr(GVariant) changes = NULL;
        const char *id, *expected_tag;
        bool disabled = false;
        int r;

        r = sd_bus_message_read(m, "ss", &id, &expected_tag);
        if (r < 0)
                return r;
        r = bus_message_read_vardict(m, &changes);
        if (r < 0)
                return r;
        r = user_check_id(id, error);
        if (r < 0)
                return r;
        r = user_check_changes(d, changes, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = user_save(d, id, expected_tag, changes, &u, &disabled, error);
        if (r < 0) {
                daemon_rollback(d);
                return r;
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
        const char *id, *expected_tag;
        int r;

        r = sd_bus_message_read(m, "ss", &id, &expected_tag);
        if (r < 0)
                return r;
        r = user_check_id(id, error);
        if (r < 0)
                return r;
        r = polkit_authorize_change(d->polkit, m, error);
        if (r != 0)
                return r;

        r = daemon_begin(d);
        if (r < 0)
                return reply_store_error(d, r, error);
        r = user_delete(d, id, expected_tag, error);
        if (r < 0) {
                daemon_rollback(d);
                return r;
        }
        /* The user's holds end at once, before the caller hears back. */
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
