/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The scopes of remote peers (peer-scopes.h): [Peers] entries read and
 * checked, a peer's names matched against them, a call's scope. */
#include "config.h"

#include <glib.h>
#include <string.h>

#include "bus-methods.h"
#include "macro.h"
#include "peer-scopes.h"

static const struct {
        const char *name;
        PeerScope scope;
} scope_names[] = {
        { BUS_SCOPE_READ, PEER_SCOPE_READ },
        { "presence",     PEER_SCOPE_PRESENCE },
        { "send",         PEER_SCOPE_SEND },
        { "publish",      PEER_SCOPE_PUBLISH },
        { "users",        PEER_SCOPE_USERS },
};

static PeerScope scope_from_name(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(scope_names); i++)
                if (strcmp(scope_names[i].name, name) == 0)
                        return scope_names[i].scope;
        return 0;
}

bool peer_scopes_parse(const char *list, unsigned *ret, char **ret_reason) {
        g_auto(GStrv) items = g_strsplit(list, ";", -1);
        unsigned scopes = 0;

        for (size_t i = 0; items[i]; i++) {
                const char *item = g_strstrip(items[i]);
                PeerScope s;

                if (item[0] == '\0')
                        continue;       /* "read;" as GKeyFile lists end */
                s = scope_from_name(item);
                if (s == 0) {
                        *ret_reason = g_strdup_printf("unknown scope '%s' (known: read, presence, send, publish, "
                                                      "users; an empty list refuses the peer)", item);
                        return false;
                }
                scopes |= s;
        }
        *ret = scopes;
        return true;
}

const char **peer_scopes_names(unsigned scopes) {
        g_autoptr(GPtrArray) names = g_ptr_array_new();

        for (size_t i = 0; i < ELEMENTSOF(scope_names); i++)
                if (scopes & scope_names[i].scope)
                        g_ptr_array_add(names, (gpointer) scope_names[i].name);
        g_ptr_array_add(names, NULL);
        return (const char **) g_ptr_array_free(g_steal_pointer(&names), FALSE);
}

char *peer_scopes_format(unsigned scopes) {
        g_autofree const char **names = peer_scopes_names(scopes);

        return g_strjoinv(";", (char **) names);
}

/* GKeyFile takes "name[xx]" for a translation of "name": brackets, and
 * the ranges of fnmatch() they would mean, are refused rather than
 * silently read as something else. */
static bool pattern_check(const char *pattern, char **ret_reason) {
        if (pattern[0] == '\0') {
                *ret_reason = g_strdup("empty pattern");
                return false;
        }
        if (!g_utf8_validate(pattern, -1, NULL)) {
                *ret_reason = g_strdup("a pattern must be UTF-8");
                return false;
        }
        if (strpbrk(pattern, "[]\\")) {
                *ret_reason = g_strdup("a pattern takes '*' and '?' only, no brackets or backslashes");
                return false;
        }
        return true;
}

bool peer_rule_check(const char *pattern, const char *scopes, char **ret_reason) {
        unsigned bits;

        return pattern_check(pattern, ret_reason) && peer_scopes_parse(scopes, &bits, ret_reason);
}

/* GLib's matching aborts on text that is not UTF-8: such a pattern or
 * name (a certificate's, from the network) matches nothing. */
static bool pattern_matches(const char *pattern, char *const *names) {
        g_autofree char *p = g_ascii_strdown(pattern, -1);

        if (!g_utf8_validate(p, -1, NULL))
                return false;
        for (size_t i = 0; names && names[i]; i++) {
                g_autofree char *n = g_ascii_strdown(names[i], -1);

                if (g_utf8_validate(n, -1, NULL) && g_pattern_match_simple(p, n))
                        return true;
        }
        return false;
}

bool peer_rules_match(char *const *rules, char *const *names, unsigned *ret_scopes, const char **ret_pattern) {
        *ret_scopes = rules ? 0 : PEER_SCOPE_ALL;
        *ret_pattern = NULL;
        if (!rules)
                return true;
        for (size_t i = 0; rules[i] && rules[i + 1]; i += 2) {
                g_autofree char *reason = NULL;
                unsigned scopes;

                if (!pattern_matches(rules[i], names))
                        continue;
                /* Checked when the file was read; a bad one grants nothing. */
                if (!peer_scopes_parse(rules[i + 1], &scopes, &reason))
                        scopes = 0;
                *ret_scopes = scopes;
                *ret_pattern = rules[i];
                return scopes != 0;
        }
        return false;
}

PeerScope peer_scope_of_call(sd_bus_message *m) {
        const BusChangeMethod *method = bus_change_method_of(m);

        return method ? scope_from_name(method->scope) : PEER_SCOPE_READ;
}
