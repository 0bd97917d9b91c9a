/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Request ids: a caller that retries a Publish or a Send after an error
 * that left the outcome unknown names both calls with the same id, and
 * the retry gets the first call's result instead of writing again
 * (DESIGN.md §4 rule 5). The store remembers an id with the event that
 * ended its change, for as long as retention keeps that event. */

#include <glib.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

/* Check VALUE, given as WHERE (for the message), as a request id: a string
 * of 1-REQUEST_ID_MAX printable ASCII characters without space. */
int request_id_check(GVariant *value, const char *where, const char **ret, sd_bus_error *error);

/* The key the store keeps for request id ID of the caller UID: ids are
 * the caller's own, so that one local account cannot pre-empt another's
 * changes. Callers behind a bridge share the bridge's account; a relayed
 * Send names the bridge peers it came through (RELAYED_BY, NULL when
 * not relayed), and ids are then the chain's own, so that two machines
 * behind one bridge that pick the same id do not take each other's
 * result. */
char *request_key_new(uid_t uid, const char *const *relayed_by, const char *id);
