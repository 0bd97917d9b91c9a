/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* What a listener lets each remote peer do (DESIGN.md §5b). A peer is
 * named by its certificate (CN, DNS subject alt names); the [Peers] group
 * of bridge.conf maps name patterns to scope lists:
 *
 *   [Peers]
 *   kiosk-7=
 *   kiosk-*=read;presence
 *   site-*=read;presence;send;publish;users
 *
 * The first pattern, in the order of the file, that matches one of the
 * peer's names gives its scopes; an empty list refuses the peer as
 * matching no pattern does. Patterns take '*' and '?' and match without
 * regard to case (DNS names have none). The method → scope mapping is
 * src/shared/bus-methods.c. */

typedef enum PeerScope {
        PEER_SCOPE_READ     = 1u << 0,
        PEER_SCOPE_PRESENCE = 1u << 1,
        PEER_SCOPE_SEND     = 1u << 2,
        PEER_SCOPE_PUBLISH  = 1u << 3,
        PEER_SCOPE_USERS    = 1u << 4,
        PEER_SCOPE_ALL      = (1u << 5) - 1,
} PeerScope;

/* "read;presence" → the bits; false with *RET_REASON on an unknown scope. */
bool peer_scopes_parse(const char *list, unsigned *ret, char **ret_reason);
/* The names of the bits, NULL-terminated (an empty array for none); the
 * names are static, free only the array. */
const char **peer_scopes_names(unsigned scopes);
/* The bits as a list: "read;presence", "" for none. */
char *peer_scopes_format(unsigned scopes);
/* One [Peers] entry (the config file's check): a usable pattern and a
 * list of known scopes. */
bool peer_rule_check(const char *pattern, const char *scopes, char **ret_reason);

/* The scopes of a peer named NAMES by RULES (pattern, scopes, … as
 * bridge.conf's [Peers] gave them; NULL when there is no such group: every
 * peer may do everything). Returns true with *RET_SCOPES and *RET_PATTERN
 * (borrowed from RULES; NULL without rules) when a pattern matches and
 * grants something, false when the peer is to be refused. */
bool peer_rules_match(char *const *rules, char *const *names, unsigned *ret_scopes, const char **ret_pattern);

/* The scope the method call M needs: its entry in bus-methods.c, or read.
 * A call without an interface reaches a method of that name on its path
 * all the same, so it needs the scope of any change method so named. */
PeerScope peer_scope_of_call(sd_bus_message *m);
