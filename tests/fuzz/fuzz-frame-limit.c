/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The listener's reading of a peer's D-Bus framing (src/bridge/frame-limit.c):
 * whatever the bytes and however TCP cuts them, it must come to the same
 * verdict, never let a message over the limit through, and not crash. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

#include "frame-limit.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autofree char *whole_error = NULL, *cut_error = NULL;
        FrameLimit whole, cut;
        size_t chunk, max;
        int r_whole, r_cut = 0;

        if (size < 2)
                return 0;
        /* The first byte picks the limit, the second how the stream is cut. */
        max = 16 + ((size_t) data[0] << 4);
        chunk = 1 + data[1] % 17;
        data += 2;
        size -= 2;

        frame_limit_init(&whole, max);
        frame_limit_init(&cut, max);
        r_whole = frame_limit_feed(&whole, data, size, &whole_error);
        for (size_t off = 0; off < size && r_cut == 0; off += chunk)
                r_cut = frame_limit_feed(&cut, data + off, MIN(chunk, size - off), &cut_error);

        g_assert_cmpint(r_whole, ==, r_cut);
        g_assert_cmpstr(whole_error, ==, cut_error);
        if (r_whole < 0)
                g_assert_true(r_whole == -EMSGSIZE || r_whole == -EBADMSG);
        else {
                g_assert_cmpint(whole.phase, ==, cut.phase);
                g_assert_cmpuint(whole.rest, ==, cut.rest);
                g_assert_cmpuint(whole.rest + 16, <=, max);
        }
        return 0;
}
