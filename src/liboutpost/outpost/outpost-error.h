/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(OUTPOST_INSIDE) && !defined(OUTPOST_COMPILATION)
#error "Only <outpost/outpost.h> can be included directly."
#endif

#include <gio/gio.h>

G_BEGIN_DECLS

/**
 * OUTPOST_ERROR:
 *
 * The error domain of the Outpost service. Every error name under
 * `org.outpost.Outpost1.Error.` that a call returns arrives as a #GError in
 * this domain, so it can be matched with g_error_matches(); the original
 * D-Bus name stays available through g_dbus_error_get_remote_error().
 */
#define OUTPOST_ERROR (outpost_error_quark())

/**
 * OutpostError:
 * @OUTPOST_ERROR_SAVE_CONFLICT: `SaveConflict`: the expected tag is not the current tag of the data object.
 * @OUTPOST_ERROR_NOT_FOUND: `NotFound`: no such user, manager or message recipient.
 * @OUTPOST_ERROR_ALREADY_EXISTS: `AlreadyExists`: the name is taken.
 * @OUTPOST_ERROR_INVALID_ARGUMENT: `InvalidArgument`: a bad key, type or value.
 * @OUTPOST_ERROR_LIMIT_EXCEEDED: `LimitExceeded`: a size or count limit was hit.
 * @OUTPOST_ERROR_DISCONNECTED: `Disconnected`: the service cannot be reached now
 *   (no daemon on the bus, or a bridge whose link is down). Calls through an
 *   #OutpostClient and its proxies also get it where the message bus says
 *   that `org.outpost.Outpost1` has no owner, or that it left the bus before
 *   it replied (see #OutpostClient).
 * @OUTPOST_ERROR_HISTORY_TRUNCATED: `HistoryTruncated`: events the caller has not seen were discarded.
 * @OUTPOST_ERROR_HISTORY_RESET: `HistoryReset`: the event history is not the one the caller knew.
 * @OUTPOST_ERROR_STORE_FULL: `StoreFull`: the disk holding the service's store is
 *   full; the change was not made. Reads are still served, and the same change
 *   can succeed once space is freed.
 *
 * The errors of the Outpost bus contract.
 */
typedef enum {
        OUTPOST_ERROR_SAVE_CONFLICT,
        OUTPOST_ERROR_NOT_FOUND,
        OUTPOST_ERROR_ALREADY_EXISTS,
        OUTPOST_ERROR_INVALID_ARGUMENT,
        OUTPOST_ERROR_LIMIT_EXCEEDED,
        OUTPOST_ERROR_DISCONNECTED,
        OUTPOST_ERROR_HISTORY_TRUNCATED,
        OUTPOST_ERROR_HISTORY_RESET,
        OUTPOST_ERROR_STORE_FULL,
} OutpostError;

GQuark outpost_error_quark(void);

#define OUTPOST_TYPE_ERROR (outpost_error_get_type())
GType outpost_error_get_type(void);

G_END_DECLS
