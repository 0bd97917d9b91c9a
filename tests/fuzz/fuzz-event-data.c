/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Event data and topics as Publish sees them (DESIGN.md §3, Events): the
 * input is a topic, a newline, then a serialized GVariant a{sv}. The pair
 * is written into an sd-bus message as a caller would send it
 * (bus_message_append_gvariant), read back the way outpostd reads it
 * (bus_message_read_vardict), checked with the rules of Publish (topic,
 * size), and the data must come back as it went in. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus-gvariant.h"
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
out:
        sd_bus_message_unref(m);
        return 0;
}
