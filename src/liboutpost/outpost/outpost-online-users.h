/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#if !defined(OUTPOST_INSIDE) && !defined(OUTPOST_COMPILATION)
#error "Only <outpost/outpost.h> can be included directly."
#endif

#include <gio/gio.h>
#include <outpost/outpost-generated.h>

G_BEGIN_DECLS

/**
 * OutpostOnlineUsers:
 *
 * The users who are online, as a #GListModel of #OutpostOnlineUser items
 * (the `org.outpost.Outpost1.OnlineUser` objects of the service, with the
 * properties #OutpostOnlineUser:user-id and #OutpostOnlineUser:since),
 * sorted by user id. A GTK list view binds to it directly.
 *
 * It follows the service's object manager: items come and go as users go
 * online and offline, and the list is rebuilt when the service comes back
 * after a restart. Behind a bridge whose link is down it shows the
 * bridge's cached view, and after the link returns only the users who
 * changed come or go. Get it with outpost_client_get_online_users().
 */
#define OUTPOST_TYPE_ONLINE_USERS (outpost_online_users_get_type())
G_DECLARE_FINAL_TYPE(OutpostOnlineUsers, outpost_online_users, OUTPOST, ONLINE_USERS, GObject)

OutpostOnlineUser *outpost_online_users_lookup(OutpostOnlineUsers *self, const char *user_id);
gboolean outpost_online_users_is_loaded(OutpostOnlineUsers *self);

G_END_DECLS
