/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The Users manager's state and rules (users.c), for its bus face
 * (users-dbus.c). Each function that can fail sets ERROR to what the
 * caller is to be told and returns negative errno. */

#include "daemon.h"

int user_check_id(const char *id, sd_bus_error *error);
/* CHANGES (a{sv}) are valid whatever user they are applied to. */
int user_check_changes(Daemon *d, GVariant *changes, sd_bus_error *error);

/* The stored user ID or NAME, owned by the store; ID or NAME is checked
 * first. */
typedef int (*UserFind)(Daemon *d, const char *key, const UserRecord **ret, sd_bus_error *error);
int user_get(Daemon *d, const char *id, const UserRecord **ret, sd_bus_error *error);
int user_lookup(Daemon *d, const char *name, const UserRecord **ret, sd_bus_error *error);

/* A user to create from the a{sv} FIELDS, checked but not stored. */
int user_new(Daemon *d, GVariant *fields, UserRecord *ret, sd_bus_error *error);

/* The changes of users, each inside an open change (daemon_begin()): the
 * store written and the event of the users topic appended. SaveUser and
 * DeleteUser name the tag the caller last saw: a user changed since is a
 * SaveConflict. */
/* U gets its id, tag and times here. */
int user_create(Daemon *d, UserRecord *u, sd_bus_error *error);
/* RET: the user as saved; RET_DISABLED: whether the save disabled it. */
int user_save(Daemon *d, const char *id, const char *expected_tag, GVariant *changes, UserRecord *ret,
              bool *ret_disabled, sd_bus_error *error);
int user_delete(Daemon *d, const char *id, const char *expected_tag, sd_bus_error *error);
