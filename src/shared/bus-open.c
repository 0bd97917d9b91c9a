/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include "bus-open.h"
#include "log.h"
#include "macro.h"

static int open_address(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, true);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

int bus_open_as_configured(const char *address, bool session, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (address)
                r = open_address(address, &bus);
        else if (session)
                r = sd_bus_open_user(&bus);
        else
                r = sd_bus_open_system(&bus);
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the %s bus%s%s",
                                       address ? "given" : session ? "session" : "system",
                                       address ? " at " : "", address ?: "");
        *ret = TAKE_PTR(bus);
        return 0;
}
