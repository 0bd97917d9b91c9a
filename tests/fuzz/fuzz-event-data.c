/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Event data and topics as Publish sees them (DESIGN.md §3, Events): the
 * input is a topic, a newline, then a serialized GVariant a{sv}. The pair
 * is written into an sd-bus message as a caller would send it
 * (bus_message_append_gvariant), read back the way outpostd reads it
 * (bus_message_read_vardict), checked with the rules of Publish (topic,
 * size, depth), and the data must come back as it went in. What Publish
 * accepts must then go out again, as FetchSince and the Event signal carry
 * it, within the limits that bound those messages. */
#include "config.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus-errors.h"
#include "bus-gvariant.h"
#include "macro.h"
#include "fuzz.h"
#include "validate.h"

/* A connection that is started but never used: enough to make messages. */
static sd_bus *message_factory(void) {
        static sd_bus *bus;
        int fds[2];

        if (bus)
                return bus;
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), ==, 0);
        g_assert_cmpint(sd_bus_new(&bus), >=, 0);
        g_assert_cmpint(sd_bus_set_fd(bus, fds[0], fds[0]), >=, 0);
        g_assert_cmpint(sd_bus_start(bus), >=, 0);
        close(fds[1]);
        return bus;
}

static size_t align8(size_t n) {
        return (n + 7) & ~(size_t) 7;
}

/* The body length of M as GDBus, a marshaller other than ours, lays it
 * out (the header is little-endian: G_DBUS_MESSAGE_BYTE_ORDER_LITTLE_ENDIAN). */
static uint32_t gdbus_body_length(GDBusMessage *message) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GDBusMessage) back = NULL;
        g_autofree guchar *blob = NULL;
        gsize size;
        uint32_t length;

        g_dbus_message_set_byte_order(message, G_DBUS_MESSAGE_BYTE_ORDER_LITTLE_ENDIAN);
        blob = g_dbus_message_to_blob(message, &size, G_DBUS_CAPABILITY_FLAGS_NONE, &error);
        g_assert_no_error(error);
        back = g_dbus_message_new_from_blob(blob, size, G_DBUS_CAPABILITY_FLAGS_NONE, &error);
        g_assert_no_error(error);
        g_assert_true(g_variant_equal(g_dbus_message_get_body(back), g_dbus_message_get_body(message)));
        length = GUINT32_FROM_LE(*(const uint32_t *) (blob + 4));
        return length;
}

/* Data that Publish accepts goes out again: in an Event signal and in a
 * FetchSince reply (two levels deeper), whose sizes are what
 * bus_gvariant_measure() and bus_event_size_bound() say, so that the page
 * cut and the limits bound what the bus gets. */
static void check_as_returned(sd_bus_message *call, const char *topic, GVariant *data) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        g_autoptr(GDBusMessage) signal = NULL, reply = NULL;
        sd_bus_message *m = NULL;
        size_t topic_room = align8(4 + strlen(topic) + 1);
        BusSize size;

        if (bus_check_event_data(data, EVENT_DATA_SIZE_MAX, &error) < 0) {
                g_assert_true(sd_bus_error_has_names(&error, BUS_ERROR_INVALID_ARGUMENT, BUS_ERROR_LIMIT_EXCEEDED));
                return;
        }
        bus_gvariant_measure(data, &size);
        g_assert_false(size.unsupported);
        g_assert_cmpuint(size.depth, <=, BUS_EVENT_DATA_DEPTH_MAX);
        g_assert_cmpuint(size.bytes, <=, EVENT_DATA_SIZE_MAX);

        /* As outpostd sends them. */
        g_assert_cmpint(sd_bus_message_new_signal(message_factory(), &m, "/org/outpost/Outpost1/events",
                                                  "org.outpost.Outpost1.Events", "Event"), >=, 0);
        g_assert_cmpint(sd_bus_message_append(m, "tsx", (uint64_t) 1, topic, (int64_t) 2), >=, 0);
        g_assert_cmpint(bus_message_append_gvariant(m, data), >=, 0);
        g_assert_cmpint(sd_bus_message_seal(m, 2, 0), >=, 0);
        m = sd_bus_message_unref(m);

        g_assert_cmpint(sd_bus_message_new_method_return(call, &m), >=, 0);
        g_assert_cmpint(sd_bus_message_open_container(m, 'a', "(tsxa{sv})"), >=, 0);
        g_assert_cmpint(sd_bus_message_open_container(m, 'r', "tsxa{sv}"), >=, 0);
        g_assert_cmpint(sd_bus_message_append(m, "tsx", (uint64_t) 1, topic, (int64_t) 2), >=, 0);
        g_assert_cmpint(bus_message_append_gvariant(m, data), >=, 0);
        g_assert_cmpint(sd_bus_message_close_container(m), >=, 0);
        g_assert_cmpint(sd_bus_message_close_container(m), >=, 0);
        g_assert_cmpint(sd_bus_message_append(m, "tb", (uint64_t) 1, 0), >=, 0);
        g_assert_cmpint(sd_bus_message_seal(m, 3, 0), >=, 0);
        m = sd_bus_message_unref(m);

        /* The Event signal's body: t, s, x, then the data, 8-aligned. */
        signal = g_dbus_message_new_signal("/org/outpost/Outpost1/events", "org.outpost.Outpost1.Events", "Event");
        g_dbus_message_set_body(signal, g_variant_new("(tsx@a{sv})", (guint64) 1, topic, (gint64) 2, data));
        g_assert_cmpuint(gdbus_body_length(signal), ==, 8 + topic_room + 8 + size.bytes);

        /* A FetchSince reply of that one event: its array's length and
         * padding, the event, next_after and more. */
        reply = g_dbus_message_new_signal("/org/outpost/Outpost1/events", "org.outpost.Outpost1.Events", "Reply");
        g_dbus_message_set_body(reply, g_variant_new_parsed("([(uint64 1, %s, int64 2, %@a{sv})], uint64 1, false)",
                                                            topic, data));
        g_assert_cmpuint(gdbus_body_length(reply), <=, 8 + bus_event_size_bound(topic, &size) + 7 + 8 + 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nl = memchr(data, '\n', size);
        g_autofree char *topic = NULL;
        g_autoptr(GBytes) bytes = NULL;
        g_autoptr(GVariant) raw = NULL, sent = NULL, received = NULL;
        sd_bus_message *m = NULL;
        const char *read_topic;
        bool valid;
        int r;

        if (!nl)
                return 0;
        topic = g_strndup((const char *) data, nl - data);
        bytes = g_bytes_new(nl + 1, size - (nl + 1 - data));
        raw = g_variant_ref_sink(g_variant_new_from_bytes(G_VARIANT_TYPE("a{sv}"), bytes, FALSE));
        sent = g_variant_get_normal_form(raw);

        valid = topic_is_valid(topic);
        if (valid) {
                size_t n = strlen(topic);
                g_assert_cmpuint(n, >=, 1);
                g_assert_cmpuint(n, <=, TOPIC_MAX);
                g_assert_true(topic[0] != '/' && topic[n - 1] != '/' && !strstr(topic, "//"));
        }
        /* The bus carries only valid UTF-8 without NUL. */
        if (strlen(topic) != (size_t) (nl - data) || !g_utf8_validate(topic, -1, NULL))
                return 0;

        g_assert_cmpint(sd_bus_message_new_method_call(message_factory(), &m, "org.outpost.Outpost1",
                                                       "/org/outpost/Outpost1/events",
                                                       "org.outpost.Outpost1.Events", "Publish"), >=, 0);
        r = sd_bus_message_append(m, "s", topic);
        if (r >= 0)
                r = bus_message_append_gvariant(m, sent);
        if (r < 0)
                goto out;       /* a value the bus cannot carry (maybe types, ...) */
        g_assert_cmpint(sd_bus_message_seal(m, 1, 0), >=, 0);
        g_assert_cmpint(sd_bus_message_rewind(m, true), >=, 0);

        g_assert_cmpint(sd_bus_message_read(m, "s", &read_topic), >=, 0);
        g_assert_cmpstr(read_topic, ==, topic);
        r = bus_message_read_vardict(m, &received);
        g_assert_cmpint(r, >=, 0);
        if (!g_variant_equal(sent, received)) {
                g_autofree char *a = g_variant_print(sent, TRUE), *b = g_variant_print(received, TRUE);
                g_error("event data changed on the bus: %s became %s", a, b);
        }
        /* Publish's size rule (EVENT_DATA_SIZE_MAX, or a lower site limit)
         * judges what outpostd reads: it must be the size the caller
         * serialized, or a caller could not tell in advance what passes. */
        g_assert_cmpuint(g_variant_get_size(received), ==, g_variant_get_size(sent));
        check_as_returned(m, valid ? topic : "t", received);
out:
        sd_bus_message_unref(m);
        return 0;
}
