/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* Follows the D-Bus framing of the byte stream a client sends to a
 * server (the SASL exchange up to BEGIN, then messages) without keeping
 * any of it, so that the listener can refuse a message larger than its
 * limit from the fixed header alone, before sd-bus reads and buffers the
 * whole of it. sd-bus itself accepts messages of up to 128 MiB from any
 * connection, and has no per-connection knob (NOTES-sd-bus.md). */

typedef enum FramePhase {
        FRAME_AUTH_NUL,         /* the client's first byte, a NUL */
        FRAME_AUTH_LINE,        /* SASL commands, "\r\n"-terminated, up to BEGIN */
        FRAME_HEADER,           /* the 16 fixed bytes of a message header */
        FRAME_REST,             /* header fields and body of the current message */
} FramePhase;

typedef struct FrameLimit {
        FramePhase phase;
        uint64_t max_message;   /* bytes, whole message */
        uint64_t auth_bytes;    /* seen in the SASL phase so far */
        uint8_t line[8];        /* the start of the current SASL line */
        size_t line_len;        /* its length so far (may exceed sizeof line) */
        uint8_t header[16];
        size_t header_len;
        uint64_t rest;          /* bytes left of the current message */
} FrameLimit;

/* Limits the SASL phase (a few short lines in practice). */
#define FRAME_AUTH_MAX          (16u << 10)
/* The D-Bus specification's maximum message size. */
#define FRAME_MESSAGE_MAX_SPEC  (UINT64_C(128) << 20)

void frame_limit_init(FrameLimit *f, uint64_t max_message);

/* Follow N more bytes of the stream. Returns 0, or -EMSGSIZE (a message
 * over the limit, or a SASL phase over FRAME_AUTH_MAX) or -EBADMSG (not
 * D-Bus framing) with *RET_ERROR set to what was seen, to follow "peer
 * sent " ("a message of N bytes, more than the limit of M"; free it with
 * g_free()). */
int frame_limit_feed(FrameLimit *f, const uint8_t *p, size_t n, char **ret_error);

/* The importer's side of the same limit (DESIGN.md §5): a local call is
 * relayed as a new message, so what the upstream judges is that new
 * message, not the one the local bus delivered. */

/* The D-Bus specification's limit on nested containers (arrays, structs,
 * dict entries and variants together). */
#define BUS_MESSAGE_DEPTH_MAX   64u

typedef struct MessageMeasure {
        uint64_t size;          /* bytes of the whole message on the wire */
        unsigned depth;         /* of its most deeply nested container */
} MessageMeasure;

/* What a method call with M's path, interface, member and body, sent with
 * no sender and to DESTINATION (NULL: none, as on a peer-to-peer link),
 * will measure once sd-bus marshals it (dbus1, either endianness). Reads
 * M's body from the start and leaves it rewound. Returns 0, or a negative
 * errno when M cannot be read. */
int bus_message_measure_call(sd_bus_message *m, const char *destination, MessageMeasure *ret);
