/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The Messages manager's rules (messages.c), for its bus face
 * (messages-dbus.c). The checks set ERROR to what the caller is to be told
 * and return negative errno. */

#include "daemon.h"

int message_check_body(Daemon *d, const char *body, sd_bus_error *error);
/* USER_IDS holds the first of N recipients given (all, when N is allowed). */
int message_check_recipients(Daemon *d, char **user_ids, size_t n, sd_bus_error *error);

/* Who sent a message, as far as the daemon can know. */
typedef struct MessageSender {
        uint32_t uid;           /* the caller's account (a bridge's, for a relayed call) */
        char **peers;           /* the bridge peers it came through, or NULL (SEND_OPTION_RELAYED_BY) */
} MessageSender;

/* Inside an open change: message ID from SENDER, one event per recipient;
 * RET_LAST_SEQ: the seq of the last, which keeps REQUEST_KEY (if not
 * NULL) and ID for a retry (store.h). */
int message_append_events(Daemon *d, char **user_ids, const char *id, const char *body, const MessageSender *sender,
                          const char *request_key, uint64_t *ret_last_seq);
