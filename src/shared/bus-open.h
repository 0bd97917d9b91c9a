/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

/* Connect to the bus at ADDRESS when given, else to the session bus when
 * SESSION, else to the system bus, as outpostd's and outpost-bridge's
 * --address=, --session and default say. Logs why it failed. */
int bus_open_as_configured(const char *address, bool session, sd_bus **ret);
