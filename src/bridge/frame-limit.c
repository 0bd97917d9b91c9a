/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* See frame-limit.h. The stream is followed, never changed: sd-bus still
 * parses every byte itself, so all this needs to get right is where each
 * message ends. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

#include "frame-limit.h"

void frame_limit_init(FrameLimit *f, uint64_t max_message) {
        *f = (FrameLimit) {
                .phase = FRAME_AUTH_NUL,
                .max_message = MIN(max_message ?: FRAME_MESSAGE_MAX_SPEC, FRAME_MESSAGE_MAX_SPEC),
        };
}

static int fail(char **ret_error, int r, const char *format, ...) G_GNUC_PRINTF(3, 4);
static int fail(char **ret_error, int r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        *ret_error = g_strdup_vprintf(format, ap);
        va_end(ap);
        return r;
}

/* One SASL byte. A line is over at "\n" (sd-bus wants "\r\n"; what it
 * refuses, it refuses itself); the messages start after "BEGIN". */
static int feed_auth_byte(FrameLimit *f, uint8_t c, char **ret_error) {
        if (++f->auth_bytes > FRAME_AUTH_MAX)
                return fail(ret_error, -EMSGSIZE,
                            "an authentication exchange longer than %u bytes", FRAME_AUTH_MAX);
        if (c != '\n') {
                if (f->line_len < sizeof f->line)
                        f->line[f->line_len] = c;
                f->line_len++;
                return 0;
        }
        if (f->line_len == strlen("BEGIN\r") && memcmp(f->line, "BEGIN\r", f->line_len) == 0)
                f->phase = FRAME_HEADER;
        f->line_len = 0;
        return 0;
}

static uint32_t header_u32(const FrameLimit *f, size_t offset) {
        const uint8_t *p = f->header + offset;

        if (f->header[0] == 'l')
                return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
        return (uint32_t) p[3] | (uint32_t) p[2] << 8 | (uint32_t) p[1] << 16 | (uint32_t) p[0] << 24;
}

/* The fixed header is complete: endianness, type, flags, version, body
 * length, serial, length of the header-field array (which is then padded
 * to 8) — so the whole size is known now. */
static int check_header(FrameLimit *f, char **ret_error) {
        uint64_t fields, body, size;

        if (f->header[0] != 'l' && f->header[0] != 'B')
                return fail(ret_error, -EBADMSG, "bytes that are not D-Bus (endianness byte 0x%02x)", f->header[0]);
        if (f->header[3] != 1)
                return fail(ret_error, -EBADMSG, "bytes that are not D-Bus (protocol version %u)", f->header[3]);
        body = header_u32(f, 4);
        fields = header_u32(f, 12);
        size = sizeof f->header + ((fields + 7) & ~UINT64_C(7)) + body;
        if (size > f->max_message)
                return fail(ret_error, -EMSGSIZE,
                            "a message of %" G_GUINT64_FORMAT " bytes, more than the limit of %" G_GUINT64_FORMAT,
                            size, f->max_message);
        f->rest = size - sizeof f->header;
        f->header_len = 0;
        f->phase = f->rest > 0 ? FRAME_REST : FRAME_HEADER;
        return 0;
}

int frame_limit_feed(FrameLimit *f, const uint8_t *p, size_t n, char **ret_error) {
        const uint8_t *end = p + n;
        size_t take;
        int r;

        while (p < end) {
                switch (f->phase) {
                case FRAME_AUTH_NUL:
                        p++;    /* sd-bus checks that it is a NUL */
                        f->phase = FRAME_AUTH_LINE;
                        break;
                case FRAME_AUTH_LINE:
                        r = feed_auth_byte(f, *p++, ret_error);
                        if (r < 0)
                                return r;
                        break;
                case FRAME_HEADER:
                        take = MIN((size_t) (end - p), sizeof f->header - f->header_len);
                        memcpy(f->header + f->header_len, p, take);
                        f->header_len += take;
                        p += take;
                        if (f->header_len == sizeof f->header) {
                                r = check_header(f, ret_error);
                                if (r < 0)
                                        return r;
                        }
                        break;
                case FRAME_REST:
                        take = (size_t) MIN((uint64_t) (end - p), f->rest);
                        f->rest -= take;
                        p += take;
                        if (f->rest == 0)
                                f->phase = FRAME_HEADER;
                        break;
                }
        }
        return 0;
}
