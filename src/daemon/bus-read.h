/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <systemd/sd-bus.h>

/* Read an array of strings ("as") from M, keeping at most MAX of them
 * (a NULL-terminated array, never NULL, freed with g_strfreev) and counting
 * all in *RET_N. The rest are read past, not kept: a caller that sends a
 * million costs time linear in what it sent and memory bounded by MAX,
 * and the handler still says how many there were. (libsystemd's
 * sd_bus_message_read_strv() appends one by one, quadratic in the count:
 * 100000 strings held the daemon for seconds.) */
int bus_read_strv_bounded(sd_bus_message *m, size_t max, char ***ret, size_t *ret_n);
