/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Who holds which user online (DESIGN.md §5, Presence).
 *
 * A user is online while some holder holds it. A holder is whoever the
 * layer that keeps the table knows as one caller: a bus connection for
 * outpostd and the importer, a remote peer for the listener. Each hold
 * may have a ttl; holding again renews it and may change its kind. A
 * holder has at most a given number of holds, so that one caller cannot
 * use up what its layer may hold upstream.
 *
 * The table only counts. What a user's first hold or last release means
 * (an object announced, a call upstream) is the keeper's: add and remove
 * say whether it happened, and a release the keeper did not ask for (a
 * ttl that lapsed, a holder removed) calls its RELEASED function. Expiry
 * looks at the soonest hold only, never at every hold. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct HoldTable HoldTable;

/* USERS (NULL-terminated) lost their last hold, together: by lapses, or
 * by hold_table_remove_holder(). */
typedef void (*HoldReleasedFn)(HoldTable *t, char **users, void *userdata);

int hold_table_new(sd_event *event, HoldReleasedFn released, void *userdata, HoldTable **ret);
HoldTable *hold_table_free(HoldTable *t);

/* HOLDER holds USER for TTL_USEC (0: until removed), or renews its hold.
 * Returns 1 when USER had no hold before, 0 when it had, -EDQUOT when
 * HOLDER does not hold USER yet and already has MAX holds (0: no limit).
 * *RET_ID (if given) names a new hold, for hold_table_remove(); 0 for a
 * renewal. */
int hold_table_add(HoldTable *t, const char *holder, const char *user, uint64_t ttl_usec, unsigned max,
                   uint64_t *ret_id);

/* End HOLDER's hold of USER (only the hold named ID, unless ID is 0).
 * Returns 1 when it was USER's last hold, 0 when others remain, -ENOENT
 * when there was no such hold. RELEASED is not called: the caller acts. */
int hold_table_remove(HoldTable *t, const char *holder, const char *user, uint64_t id);

/* End every hold of HOLDER (it left), calling RELEASED for each user
 * that has no hold left. */
void hold_table_remove_holder(HoldTable *t, const char *holder);

/* End every hold of USER, whoever has it, calling nothing. Returns
 * whether there was any. */
bool hold_table_remove_user(HoldTable *t, const char *user);

/* Forget every hold, calling nothing (the upstream forgot them too). */
void hold_table_clear(HoldTable *t);

unsigned hold_table_count(HoldTable *t, const char *user);
unsigned hold_table_holder_size(HoldTable *t, const char *holder);
unsigned hold_table_n_users(HoldTable *t);
bool hold_table_holds(HoldTable *t, const char *holder, const char *user);

/* FN for each user held by anyone, in no particular order; FN must not
 * change the table. */
void hold_table_foreach_user(HoldTable *t, void (*fn)(const char *user, void *userdata), void *userdata);
