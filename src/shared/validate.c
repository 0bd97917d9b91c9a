/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <glib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "validate.h"

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool user_name_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > USER_NAME_MAX)
                return false;
        if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_lower_alnum(s[i]) && !strchr("_.-", s[i]))
                        return false;
        return true;
}

bool uuid_string_is_valid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;

                if (dash ? s[i] != '-' : !g_ascii_isxdigit(s[i]) || g_ascii_isupper(s[i]))
                        return false;
        }
        return true;
}

char *uuid_string_new(void) {
        uuid_t u;
        char buf[UUID_STR_LEN];

        uuid_generate_random(u);
        uuid_unparse_lower(u, buf);
        return g_strdup(buf);
}

bool topic_is_valid(const char *s) {
        size_t n = strlen(s);
        bool segment_empty = true;

        if (n == 0 || n > TOPIC_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '/') {
                        if (segment_empty)
                                return false;
                        segment_empty = true;
                } else if (g_ascii_isalnum(s[i]) || strchr("_.-", s[i]))
                        segment_empty = false;
                else
                        return false;
        }
        return !segment_empty;
}

bool topic_is_message(const char *topic) {
        return g_str_has_prefix(topic, MESSAGES_TOPIC_PREFIX);
}

bool topic_prefixes_reach_messages(char **prefixes) {
        if (!prefixes || !prefixes[0])
                return true;
        for (char **p = prefixes; *p; p++)
                /* "m" and "messages" take in messages/..., and so does a
                 * prefix below it, e.g. messages/<user id>. */
                if (g_str_has_prefix(MESSAGES_TOPIC_PREFIX, *p) || topic_is_message(*p))
                        return true;
        return false;
}

glong find_invisible_char(const char *s, gunichar *ret) {
        glong i = 0;

        for (const char *p = s; *p; p = g_utf8_next_char(p), i++) {
                gunichar c = g_utf8_get_char(p);

                switch (g_unichar_type(c)) {
                case G_UNICODE_FORMAT:
                case G_UNICODE_LINE_SEPARATOR:
                case G_UNICODE_PARAGRAPH_SEPARATOR:
                        *ret = c;
                        return i;
                default:
                        break;
                }
        }
        return -1;
}

bool peer_name_is_valid(const char *s) {
        size_t n = strlen(s);
        gunichar c;

        if (n == 0 || n > PEER_NAME_MAX || !g_utf8_validate(s, (gssize) n, NULL))
                return false;
        for (const char *p = s; *p; p = g_utf8_next_char(p))
                if (g_unichar_iscntrl(g_utf8_get_char(p)))
                        return false;
        return find_invisible_char(s, &c) < 0;
}

char *quote_for_error(const char *s, size_t max) {
        if (!g_utf8_validate(s, -1, NULL))
                return g_strdup("(invalid UTF-8)");
        if (g_utf8_strlen(s, -1) <= (glong) max)
                return g_strdup(s);

        g_autofree char *head = g_utf8_substring(s, 0, max);
        return g_strconcat(head, "…", NULL);
}
