/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Not installed: how OutpostClient makes its OutpostOnlineUsers. */
#pragma once

#include "outpost-online-users.h"

/* Starts following the OnlineUser objects of the service on CONNECTION;
 * the list fills once the object manager has loaded. */
OutpostOnlineUsers *_outpost_online_users_new(GDBusConnection *connection);
