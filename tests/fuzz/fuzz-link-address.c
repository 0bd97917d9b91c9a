/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The bridge's link addresses (--listen=, --upstream=, "tls:host=H,port=P"),
 * as read from bridge.conf or the command line. */
#include "config.h"

#include <glib.h>
#include <string.h>

#include "fuzz.h"
#include "link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autofree char *s = g_strndup((const char *) data, size);
        g_autofree char *error = NULL;
        LinkAddress a = {};

        if (link_address_parse(s, &a, &error) >= 0) {
                g_assert_null(error);
                g_assert_nonnull(a.host);
                g_assert_cmpuint(a.port, <=, 65535);
        } else
                g_assert_nonnull(error);
        link_address_clear(&a);
        return 0;
}
