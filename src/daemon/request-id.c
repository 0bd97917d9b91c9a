/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bus-errors.h"
#include "request-id.h"
#include "validate.h"

static bool request_id_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > REQUEST_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] <= ' ' || s[i] > '~')
                        return false;
        return true;
}

int request_id_check(GVariant *value, const char *where, const char **ret, sd_bus_error *error) {
        const char *id;

        if (!g_variant_is_of_type(value, G_VARIANT_TYPE_STRING))
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "%s must be a string (type 's'), not of type '%s'", where,
                                         g_variant_get_type_string(value));
        id = g_variant_get_string(value, NULL);
        if (!request_id_is_valid(id)) {
                g_autofree char *q = quote_for_error(id, 80);
                return sd_bus_error_setf(error, BUS_ERROR_INVALID_ARGUMENT,
                                         "Invalid %s '%s': 1-%d printable ASCII characters without space "
                                         "(a UUID, say)", where, q, REQUEST_ID_MAX);
        }
        *ret = id;
        return 0;
}

char *request_key_new(uid_t uid, const char *const *relayed_by, const char *id) {
        g_autofree char *chain = NULL;

        if (!relayed_by)
                return g_strdup_printf("%lu:%s", (unsigned long) uid, id);
        /* Names hold no control characters: the separator cannot be forged,
         * and ids (no space) never read as a chain. */
        chain = g_strjoinv("\x1f", (char **) relayed_by);
        return g_strdup_printf("%lu:%s\x1f:%s", (unsigned long) uid, chain, id);
}
