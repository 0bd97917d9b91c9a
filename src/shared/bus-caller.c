/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "bus-caller.h"
#include "macro.h"

/* The table is emptied when it grows past this: a caller that is still
 * there is simply asked for again. */
#define BUS_CALLERS_MAX 4096

struct BusCallers {
        GHashTable *by_name;    /* unique name → BusCaller */
};

static void bus_caller_free(BusCaller *c) {
        if (!c)
                return;
        free(c->unit);
        g_free(c);
}

BusCallers *bus_callers_new(void) {
        BusCallers *c = g_new0(BusCallers, 1);

        c->by_name = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) bus_caller_free);
        return c;
}

BusCallers *bus_callers_free(BusCallers *c) {
        if (!c)
                return NULL;
        g_hash_table_destroy(c->by_name);
        g_free(c);
        return NULL;
}

/* One question to the bus for uid and pid; SD_BUS_CREDS_AUGMENT adds only
 * what the bus did not say (the unit, from /proc). A caller gone from
 * /proc by now still has the bus's uid and pid. */
static int query(sd_bus_message *m, BusCaller **ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *unit = NULL;
        BusCaller *c;
        int r;

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID | SD_BUS_CREDS_UNIT |
                                      SD_BUS_CREDS_AUGMENT, &creds);
        if (r < 0)
                r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID, &creds);
        if (r < 0)
                return r;
        c = g_new0(BusCaller, 1);
        r = sd_bus_creds_get_euid(creds, &c->uid);
        if (r < 0) {
                bus_caller_free(c);
                return r;
        }
        (void) sd_bus_creds_get_pid(creds, &c->pid);
        if (sd_bus_creds_get_unit(creds, &unit) >= 0 && unit)
                c->unit = strdup(unit);
        *ret = c;
        return 0;
}

int bus_callers_get(BusCallers *c, sd_bus_message *m, const BusCaller **ret) {
        const char *sender = sd_bus_message_get_sender(m);
        BusCaller *caller;
        int r;

        if (!sender)
                return -ENXIO;
        caller = g_hash_table_lookup(c->by_name, sender);
        if (!caller) {
                r = query(m, &caller);
                if (r < 0)
                        return r;
                if (g_hash_table_size(c->by_name) >= BUS_CALLERS_MAX)
                        g_hash_table_remove_all(c->by_name);
                g_hash_table_insert(c->by_name, g_strdup(sender), caller);
        }
        *ret = caller;
        return 0;
}

int bus_sender_euid(sd_bus_message *m, uid_t *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        int r;

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return r;
        return sd_bus_creds_get_euid(creds, ret);
}
