/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <glib.h>

#include "bus-read.h"
#include "macro.h"

int bus_read_strv_bounded(sd_bus_message *m, size_t max, char ***ret, size_t *ret_n) {
        g_autoptr(GPtrArray) kept = g_ptr_array_new_with_free_func(g_free);
        size_t n = 0;
        int r;

        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "s");
        if (r < 0)
                return r;
        if (r == 0)
                return -ENXIO;
        for (;;) {
                const char *s;

                r = sd_bus_message_read_basic(m, SD_BUS_TYPE_STRING, &s);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n++ < max)
                        g_ptr_array_add(kept, g_strdup(s));
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        g_ptr_array_set_free_func(kept, NULL);
        g_ptr_array_add(kept, NULL);
        *ret = (char **) g_ptr_array_free(g_steal_pointer(&kept), FALSE);
        *ret_n = n;
        return 0;
}
