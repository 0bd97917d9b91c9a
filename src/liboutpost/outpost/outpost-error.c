/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OUTPOST_ERROR domain, registered with the D-Bus error names of the
 * contract so that a reply's error maps to it as soon as it arrives. */
#include "config.h"

#include "bus-errors.h"
#include "outpost-error.h"

static const GDBusErrorEntry error_entries[] = {
        { OUTPOST_ERROR_SAVE_CONFLICT, BUS_ERROR_SAVE_CONFLICT },
        { OUTPOST_ERROR_NOT_FOUND, BUS_ERROR_NOT_FOUND },
        { OUTPOST_ERROR_ALREADY_EXISTS, BUS_ERROR_ALREADY_EXISTS },
        { OUTPOST_ERROR_INVALID_ARGUMENT, BUS_ERROR_INVALID_ARGUMENT },
        { OUTPOST_ERROR_LIMIT_EXCEEDED, BUS_ERROR_LIMIT_EXCEEDED },
        { OUTPOST_ERROR_DISCONNECTED, BUS_ERROR_DISCONNECTED },
        { OUTPOST_ERROR_HISTORY_TRUNCATED, BUS_ERROR_HISTORY_TRUNCATED },
        { OUTPOST_ERROR_HISTORY_RESET, BUS_ERROR_HISTORY_RESET },
        { OUTPOST_ERROR_STORE_FULL, BUS_ERROR_STORE_FULL },
};

G_STATIC_ASSERT(G_N_ELEMENTS(error_entries) == OUTPOST_ERROR_STORE_FULL + 1);

/**
 * outpost_error_quark:
 *
 * Returns: the quark of the %OUTPOST_ERROR domain. The first call registers
 *   the domain's D-Bus error names; #OutpostClient does so when its class is
 *   initialized.
 */
GQuark outpost_error_quark(void) {
        static gsize quark = 0;

        g_dbus_error_register_error_domain("outpost-error-quark", &quark, error_entries, G_N_ELEMENTS(error_entries));
        return (GQuark) quark;
}

G_DEFINE_ENUM_TYPE(OutpostError, outpost_error,
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_SAVE_CONFLICT, "save-conflict"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_NOT_FOUND, "not-found"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_ALREADY_EXISTS, "already-exists"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_INVALID_ARGUMENT, "invalid-argument"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_LIMIT_EXCEEDED, "limit-exceeded"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_DISCONNECTED, "disconnected"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_HISTORY_TRUNCATED, "history-truncated"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_HISTORY_RESET, "history-reset"),
                   G_DEFINE_ENUM_VALUE(OUTPOST_ERROR_STORE_FULL, "store-full"))
