/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The config file parser (src/shared/config-file.c) on any bytes, through
 * a memfd read by path, with a table of every kind of key, the bridge's
 * [Peers] rules (src/bridge/peer-scopes.c) among them; every error must
 * name the file, and rules that load must match names without harm. */
#include "config.h"

#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config-file.h"
#include "fuzz.h"
#include "peer-scopes.h"

typedef struct Settings {
        unsigned count;
        unsigned seconds;
        bool enabled;
        char *name;
        char **peers;
} Settings;

static const ConfigKey keys[] = {
        { "Events",   "RetentionCount",   CONFIG_UINT,   offsetof(Settings, count),   1, 100000000 },
        { "Events",   "RetentionSeconds", CONFIG_UINT,   offsetof(Settings, seconds), 1, UINT32_MAX },
        { "Bridge",   "session",          CONFIG_BOOL,   offsetof(Settings, enabled), 0, 0 },
        { "Bridge",   "listen",           CONFIG_STRING, offsetof(Settings, name),    0, 0 },
        { "Peers",    NULL,               CONFIG_ENTRIES, offsetof(Settings, peers),  0, 0, peer_rule_check },
};

/* Rules that loaded: pairs, each of a known scope list, and a match
 * grants only known scopes. */
static void check_rules(char **rules) {
        char *names[] = { "kiosk-1", "shop.example.org", NULL };
        const char *pattern;
        unsigned scopes;

        if (!rules)
                return;
        g_assert_true(g_strv_length(rules) % 2 == 0);
        if (peer_rules_match(rules, names, &scopes, &pattern)) {
                g_assert_nonnull(pattern);
                g_assert_cmpuint(scopes & ~PEER_SCOPE_ALL, ==, 0);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Settings s = { .count = 5 };
        g_autoptr(GError) error = NULL;
        g_autofree char *path = NULL;
        int fd;

        if (size > 1 << 20)
                return 0;
        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, data, size), ==, (ssize_t) size);
        path = g_strdup_printf("/proc/self/fd/%d", fd);

        if (config_file_load(path, keys, G_N_ELEMENTS(keys), &s, &error)) {
                g_assert_null(error);
                g_assert_cmpuint(s.count, >=, 1);
                g_assert_cmpuint(s.count, <=, 100000000);
                check_rules(s.peers);
        } else {
                g_assert_nonnull(error);
                g_assert_true(g_str_has_prefix(error->message, path));
        }
        g_free(s.name);
        g_strfreev(s.peers);
        close(fd);
        return 0;
}
