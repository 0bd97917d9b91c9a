/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "validate.h"

/* A user as the Users manager stores it: the data object of DESIGN.md §3. */
typedef struct UserRecord {
        char *id;
        char *tag;
        char *name;
        char *display_name;
        char *email;
        bool enabled;
        GVariant *attributes;   /* a{ss}, sorted by key, never NULL once set up */
        int64_t created;
        int64_t modified;
} UserRecord;

typedef enum UserField {
        USER_FIELD_NAME         = 1 << 0,
        USER_FIELD_DISPLAY_NAME = 1 << 1,
        USER_FIELD_EMAIL        = 1 << 2,
        USER_FIELD_ENABLED      = 1 << 3,
        USER_FIELD_ATTRIBUTES   = 1 << 4,
        USER_FIELD_ALL          = (1 << 5) - 1,
} UserField;

/* How large a user's fields may be: the contract's figures, or lower ones
 * from outpostd.conf. */
typedef struct UserLimits {
        unsigned display_name_chars;
        unsigned attributes;
        unsigned attribute_key_bytes;
        unsigned attribute_value_bytes;
} UserLimits;

#define USER_LIMITS_CONTRACT ((UserLimits) {                    \
                .display_name_chars = USER_DISPLAY_NAME_MAX,    \
                .attributes = USER_ATTRIBUTES_MAX,              \
                .attribute_key_bytes = USER_ATTRIBUTE_KEY_MAX,  \
                .attribute_value_bytes = USER_ATTRIBUTE_VALUE_MAX, \
        })

/* A record with the defaults of a new user and no id. */
void user_record_init(UserRecord *u);
void user_record_clear(UserRecord *u);
/* Clears and g_free()s a record of its own allocation, as the store's
 * lists and caches hold them; NULL is ignored. */
void user_record_free(UserRecord *u);
/* DEST (uninitialized or cleared) becomes a deep copy of SRC. */
void user_record_copy(UserRecord *dest, const UserRecord *src);

/* Validate CHANGES (an a{sv}) and apply them to U. On bad input returns
 * false and sets *error to a message naming the key, the problem and the
 * value; U is then in an unspecified state and must not be stored. */
bool user_record_apply(UserRecord *u, GVariant *changes, UserField *ret_fields, char **error);
/* The same within LIMITS rather than the contract's. */
bool user_record_apply_limited(UserRecord *u, GVariant *changes, const UserLimits *limits, UserField *ret_fields,
                               char **error);

/* Append the record to M as the a{sv} of the bus contract (DESIGN.md §3,
 * Users): the one place that defines its keys, types and order. Written
 * straight into the message, without building a GVariant first. */
int user_record_append(sd_bus_message *m, const UserRecord *u);
