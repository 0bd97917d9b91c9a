/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* See frame-limit.h. The stream is followed, never changed: sd-bus still
 * parses every byte itself, so all this needs to get right is where each
 * message ends. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

#include "frame-limit.h"
#include "macro.h"

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

/* ---- measuring a call before it is relayed ------------------------------ */

static uint64_t align_to(uint64_t offset, unsigned alignment) {
        return (offset + alignment - 1) & ~((uint64_t) alignment - 1);
}

/* The alignment and size of a fixed-size basic type; 0 for the others. */
static unsigned fixed_size(char type) {
        switch (type) {
        case SD_BUS_TYPE_BYTE:
                return 1;
        case SD_BUS_TYPE_INT16:
        case SD_BUS_TYPE_UINT16:
                return 2;
        case SD_BUS_TYPE_BOOLEAN:
        case SD_BUS_TYPE_INT32:
        case SD_BUS_TYPE_UINT32:
        case SD_BUS_TYPE_UNIX_FD:
                return 4;
        case SD_BUS_TYPE_INT64:
        case SD_BUS_TYPE_UINT64:
        case SD_BUS_TYPE_DOUBLE:
                return 8;
        default:
                return 0;
        }
}

/* Where an array's first element starts: after its length, at the
 * alignment of the element type (padding that is there even when the
 * array is empty). */
static unsigned type_alignment(char type) {
        if (IN_SET(type, SD_BUS_TYPE_STRUCT_BEGIN, SD_BUS_TYPE_DICT_ENTRY_BEGIN))
                return 8;
        if (IN_SET(type, SD_BUS_TYPE_STRING, SD_BUS_TYPE_OBJECT_PATH, SD_BUS_TYPE_ARRAY))
                return 4;
        if (IN_SET(type, SD_BUS_TYPE_SIGNATURE, SD_BUS_TYPE_VARIANT))
                return 1;
        return fixed_size(type) ?: 1;
}

static int measure_values(sd_bus_message *m, unsigned depth, uint64_t *offset, unsigned *max_depth);

static int measure_basic(sd_bus_message *m, char type, uint64_t *offset) {
        union {
                const char *s;
                uint64_t u64;
        } v;
        unsigned size = fixed_size(type);
        int r;

        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        if (size > 0)
                *offset = align_to(*offset, size) + size;
        else if (type == SD_BUS_TYPE_SIGNATURE)
                *offset += 1 + strlen(v.s) + 1;
        else    /* string, object path */
                *offset = align_to(*offset, 4) + 4 + strlen(v.s) + 1;
        return 0;
}

static int measure_container(sd_bus_message *m, char type, const char *contents, unsigned depth,
                             uint64_t *offset, unsigned *max_depth) {
        const void *p;
        size_t n;
        int r;

        *max_depth = MAX(*max_depth, depth + 1);
        if (type == SD_BUS_TYPE_ARRAY) {
                *offset = align_to(align_to(*offset, 4) + 4, type_alignment(contents[0]));
                /* An array of fixed-size values is one block: no walk. */
                if (fixed_size(contents[0]) > 0 && contents[1] == '\0' && contents[0] != SD_BUS_TYPE_UNIX_FD) {
                        r = sd_bus_message_read_array(m, contents[0], &p, &n);
                        if (r < 0)
                                return r;
                        *offset += n;
                        return 0;
                }
        } else if (type == SD_BUS_TYPE_VARIANT)
                *offset += 1 + strlen(contents) + 1;
        else
                *offset = align_to(*offset, 8);
        r = sd_bus_message_enter_container(m, type, contents);
        if (r < 0)
                return r;
        r = measure_values(m, depth + 1, offset, max_depth);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* The values from here to the end of the current container. */
static int measure_values(sd_bus_message *m, unsigned depth, uint64_t *offset, unsigned *max_depth) {
        const char *contents;
        char type;
        int r;

        for (;;) {
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r <= 0)
                        return r;
                if (IN_SET(type, SD_BUS_TYPE_ARRAY, SD_BUS_TYPE_VARIANT, SD_BUS_TYPE_STRUCT, SD_BUS_TYPE_DICT_ENTRY))
                        r = measure_container(m, type, contents, depth, offset, max_depth);
                else
                        r = measure_basic(m, type, offset);
                if (r < 0)
                        return r;
        }
}

/* One header field: a struct (aligned to 8) of its code and a variant of
 * a string, an object path or a signature. */
static uint64_t header_field(uint64_t offset, char type, const char *value) {
        offset = align_to(offset, 8) + 1 + 3;   /* code, then the variant's signature "\1s\0" */
        if (type == SD_BUS_TYPE_SIGNATURE)
                return offset + 1 + strlen(value) + 1;
        return align_to(offset, 4) + 4 + strlen(value) + 1;
}

int bus_message_measure_call(sd_bus_message *m, const char *destination, MessageMeasure *ret) {
        const char *signature = sd_bus_message_get_signature(m, true);
        uint64_t fields = 16, body = 0;
        unsigned depth = 0;
        int r;

        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        r = measure_values(m, 0, &body, &depth);
        (void) sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;

        /* The fixed header ends at 16, where the field array starts. */
        fields = header_field(fields, SD_BUS_TYPE_OBJECT_PATH, sd_bus_message_get_path(m) ?: "");
        fields = header_field(fields, SD_BUS_TYPE_STRING, sd_bus_message_get_member(m) ?: "");
        if (sd_bus_message_get_interface(m))
                fields = header_field(fields, SD_BUS_TYPE_STRING, sd_bus_message_get_interface(m));
        if (destination)
                fields = header_field(fields, SD_BUS_TYPE_STRING, destination);
        if (signature && signature[0])
                fields = header_field(fields, SD_BUS_TYPE_SIGNATURE, signature);
        *ret = (MessageMeasure) {
                .size = align_to(fields, 8) + body,
                .depth = depth,
        };
        return 0;
}
