/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Private to liboutpost: see outpost-call-filter.c. Not installed, and its
 * names do not start with "outpost_", so they are not exported. */

#include <gio/gio.h>

guint _outpost_call_filter_add(GDBusConnection *connection);
