/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>

/* Conversion between sd-bus messages and GVariant, so that values of any
 * type (a{sv} event data, user fields) can be validated, stored and sent
 * again without knowing their shape in advance. */

/* Read the next complete value of M into a floating-free GVariant.
 * Returns 0 on success, negative errno on failure: -EOPNOTSUPP for unix fds,
 * -ENXIO at the end of the current container. */
int bus_message_read_gvariant(sd_bus_message *m, GVariant **ret);

/* Append V (any D-Bus-compatible GVariant) to M. -EINVAL for GVariant types
 * that D-Bus lacks (maybe types). */
int bus_message_append_gvariant(sd_bus_message *m, GVariant *v);

/* A new floating a{sv} of the KEY, VALUE pairs given (each VALUE consumed
 * if floating, as by g_variant_new_variant()), in that order, ended by a
 * NULL key; at most VARDICT_NEW_MAX pairs. Cheaper than
 * g_variant_new_parsed(), which parses its text at every call. */
#define VARDICT_NEW_MAX 16
GVariant *vardict_new(const char *key, GVariant *value, ...) G_GNUC_NULL_TERMINATED;

/* Read an a{sv} argument. On a type mismatch returns -ENXIO. */
int bus_message_read_vardict(sd_bus_message *m, GVariant **ret);

/* sd_bus_message_read_strv(), but an empty array gives an empty vector
 * rather than NULL. */
int bus_message_read_strv_nonnull(sd_bus_message *m, char ***ret);

/* What a value costs the bus: DEPTH, the containers it nests (arrays,
 * structs, dict entries and variants; an a{sv} holding a number is 3),
 * and BYTES, the room it takes in a D-Bus message from a position aligned
 * to 8 bytes, as event data has in the Event signal and in FetchSince
 * (elsewhere it may take up to 4 bytes more, for padding). */
typedef struct BusSize {
        unsigned depth;
        size_t bytes;
        bool unsupported;       /* holds a type D-Bus lacks (maybe, (), a lone {}) */
} BusSize;
void bus_gvariant_measure(GVariant *v, BusSize *ret);

/* D-Bus allows 64 nested containers in a message, variants included, and
 * dbus-daemon drops a sender that exceeds it. Event data is carried at
 * most 2 levels down (FetchSince's a(tsxa{sv}); the Event signal and the
 * bridges carry it as it is): 32 leaves room to spare. */
#define BUS_EVENT_DATA_DEPTH_MAX 32

/* Whether event data may be stored, so that every message that will carry
 * it can be sent: at most BUS_EVENT_DATA_DEPTH_MAX deep (else
 * InvalidArgument), at most MAX_BYTES serialized as GVariant and on the
 * bus (else LimitExceeded). Returns 0, or a negative errno with ERROR set,
 * naming the limit and the value. */
int bus_check_event_data(GVariant *data, size_t max_bytes, sd_bus_error *error);
/* The same, for DATA already measured as SIZE. */
int bus_check_event_size(GVariant *data, const BusSize *size, size_t max_bytes, sd_bus_error *error);

/* An upper bound of the room one event of FetchSince's a(tsxa{sv}) takes
 * in the reply. */
size_t bus_event_size_bound(const char *topic, const BusSize *data_size);
