/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The validation of user fields (DESIGN.md §3, Users): the fuzz input is a
 * serialized GVariant a{sv}, taken as a caller's changes, in normal form as
 * GDBus or bus_message_read_gvariant() would hand it over. */
#include "config.h"

#include <glib.h>

#include "fuzz.h"
#include "user-record.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autoptr(GBytes) bytes = g_bytes_new(data, size);
        g_autoptr(GVariant) raw = NULL, changes = NULL;
        UserRecord u;
        UserField fields = 0;
        g_autofree char *error = NULL;

        raw = g_variant_ref_sink(g_variant_new_from_bytes(G_VARIANT_TYPE("a{sv}"), bytes, FALSE));
        changes = g_variant_get_normal_form(raw);

        /* As CreateUser does, from a new record; and once more on top,
         * as a SaveUser of the same changes would. */
        user_record_init(&u);
        if (user_record_apply(&u, changes, &fields, &error)) {
                gunichar c;

                g_assert_null(error);
                /* Names shown to people hold nothing invisible. */
                g_assert_cmpint(find_invisible_char(u.display_name, &c), <, 0);
                g_assert_cmpint(find_invisible_char(u.email, &c), <, 0);
                (void) user_record_apply(&u, changes, &fields, &error);
        } else
                g_assert_nonnull(error);
        user_record_clear(&u);
        return 0;
}
