/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

/* The audit trail of DESIGN.md §5b. Every layer logs each change it
 * carries out or relays, once its result is known, with the caller it
 * knows: the uid, pid and systemd unit of a local caller (from the bus's
 * credentials, never from anything the caller says) and, for a call that
 * came over a link, the certificate name of the peer. Under journald the
 * facts are journal fields, so that `journalctl OUTPOST_RESULT=<tag>` on
 * each machine of a chain finds the change at every hop:
 *
 *   OUTPOST_METHOD=       Users.SaveUser
 *   OUTPOST_SUBJECT=      the call's first string argument, when it has
 *                         one: the user id, the topic, the recipient
 *   OUTPOST_CALLER_UID=   effective uid of the local caller
 *   OUTPOST_CALLER_PID=   its pid
 *   OUTPOST_CALLER_UNIT=  its systemd unit, when it runs in one
 *   OUTPOST_RELAYED_BY=   for a SendWithOptions that names the bridge
 *                         peers it came through, each name, in order, as
 *                         the call says (at central, the listener there
 *                         vouches for the last)
 *   OUTPOST_PEER=         certificate name of the remote peer, if any
 *   OUTPOST_RESULT=       each value of the reply (a tag, an id, a sequence
 *                         number, a generation), one field per value
 *   OUTPOST_ERROR=        the error name, for a change that failed
 *
 * Without journald the same facts are one log line at info level. */

typedef struct Audit Audit;
typedef struct BusCallers BusCallers;

/* The callers' credentials come from CALLERS (src/shared/bus-caller.h),
 * which the audit borrows; NULL for a layer with no local callers to
 * name. */
int audit_new(BusCallers *callers, Audit **ret);
Audit *audit_free(Audit *a);

/* CALL is the change method call; RESULTS the values of its reply as text
 * (NULL-terminated, may be NULL), or ERROR_NAME when it failed. PEER: the
 * certificate name of the link CALL came over, or NULL for a local
 * caller. */
void audit_change(Audit *a, sd_bus_message *call, const char *peer, const char *error_name,
                  char *const *results);
/* The basic values at the top level of a received REPLY, as text, for
 * RESULTS above (free with g_strfreev). */
char **audit_results_of_reply(sd_bus_message *reply);
/* A bridge's hop: when CALL is a change method (src/shared/bus-methods.c),
 * log it with the REPLY that came back from upstream, success or error. */
void audit_relayed_change(Audit *a, sd_bus_message *call, const char *peer, sd_bus_message *reply);
