/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* liboutpost-1: the GLib client of the Outpost D-Bus service. */

#define OUTPOST_INSIDE
#include <outpost/outpost-generated.h>
#include <outpost/outpost-error.h>
#include <outpost/outpost-online-users.h>
#include <outpost/outpost-client.h>
#undef OUTPOST_INSIDE
