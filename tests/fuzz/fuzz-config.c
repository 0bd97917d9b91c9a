/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The config file parser (src/shared/config-file.c) on any bytes, through
 * a memfd read by path, with a table of every kind of key; every error
 * must name the file. */
#include "config.h"

#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config-file.h"
#include "fuzz.h"

typedef struct Settings {
        unsigned count;
        unsigned seconds;
        bool enabled;
        char *name;
} Settings;

static const ConfigKey keys[] = {
        { "Events",   "RetentionCount",   CONFIG_UINT,   offsetof(Settings, count),   1, 100000000 },
        { "Events",   "RetentionSeconds", CONFIG_UINT,   offsetof(Settings, seconds), 1, UINT32_MAX },
        { "Bridge",   "session",          CONFIG_BOOL,   offsetof(Settings, enabled), 0, 0 },
        { "Bridge",   "listen",           CONFIG_STRING, offsetof(Settings, name),    0, 0 },
};

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
        } else {
                g_assert_nonnull(error);
                g_assert_true(g_str_has_prefix(error->message, path));
        }
        g_free(s.name);
        close(fd);
        return 0;
}
