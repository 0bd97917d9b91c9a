/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>

/* Who sent a method call, as the bus daemon saw it when the caller
 * connected: the uid and pid the bus gives (never read from /proc, so an
 * exec after connecting cannot change them), and the systemd unit of that
 * pid (from its cgroup; absent outside systemd). Authorization and the
 * audit trail both need these, so one table asks the bus once per caller
 * and remembers the answer: unique names are never reused on a bus. */

typedef struct BusCaller {
        uid_t uid;
        pid_t pid;
        char *unit;             /* NULL when the caller runs in no unit */
} BusCaller;

typedef struct BusCallers BusCallers;

BusCallers *bus_callers_new(void);
BusCallers *bus_callers_free(BusCallers *c);

/* The credentials of the sender of M. -ENXIO for a message without a
 * sender (one that came over a bridge's link, not from the bus). The
 * result stays valid until the table is freed or emptied by a later
 * call that finds it full. */
int bus_callers_get(BusCallers *c, sd_bus_message *m, const BusCaller **ret);

/* The effective uid of the sender of M, asked of the bus now, for a rare
 * call that keeps no table. */
int bus_sender_euid(sd_bus_message *m, uid_t *ret);
