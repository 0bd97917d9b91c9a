/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* A byte queue with a hard bound: the link keeps one per direction, and
 * the bound is what turns a slow reader into backpressure or a dropped
 * peer instead of memory without end. Bytes live at data[head, head+len). */
typedef struct Buffer {
        uint8_t *data;
        size_t head, len, cap, max;
} Buffer;

/* How many more bytes fit before the bound. */
size_t buffer_room(const Buffer *b);
/* Contiguous room at the tail for up to WANT bytes, at *RET; returns its
 * size, 0 when the buffer is full. Whoever fills it adds to b->len. */
size_t buffer_tail(Buffer *b, size_t want, uint8_t **ret);
/* N bytes at the head have been sent. */
void buffer_consume(Buffer *b, size_t n);
void buffer_done(Buffer *b);
