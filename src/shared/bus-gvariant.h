/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
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
