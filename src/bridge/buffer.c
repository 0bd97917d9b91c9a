/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <glib.h>
#include <string.h>

#include "buffer.h"

/* Idle buffers larger than this are released, so that a quiet link does
 * not keep the memory of its busiest moment. */
#define BUFFER_KEEP             (256u << 10)

size_t buffer_room(const Buffer *b) {
        return b->len < b->max ? b->max - b->len : 0;
}

/* Slide the data to the front or grow the allocation, never past max. */
size_t buffer_tail(Buffer *b, size_t want, uint8_t **ret) {
        want = MIN(want, buffer_room(b));
        if (want == 0)
                return 0;
        if (b->cap - b->head - b->len < want && b->head > 0) {
                memmove(b->data, b->data + b->head, b->len);
                b->head = 0;
        }
        if (b->cap - b->len < want) {
                size_t cap = MAX(b->cap, (size_t) 4096);

                while (cap < b->len + want)
                        cap *= 2;
                b->cap = MIN(cap, b->max);
                b->data = g_realloc(b->data, b->cap);
        }
        *ret = b->data + b->head + b->len;
        return b->cap - b->head - b->len;
}

void buffer_consume(Buffer *b, size_t n) {
        b->head += n;
        b->len -= n;
        if (b->len > 0)
                return;
        b->head = 0;
        if (b->cap > BUFFER_KEEP) {
                g_free(b->data);
                b->data = NULL;
                b->cap = 0;
        }
}

void buffer_done(Buffer *b) {
        g_free(b->data);
        *b = (Buffer) {};
}
