/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <glib.h>
#include <signal.h>
#include <string.h>

#include "bridge-harness.h"
#include "peer-link.h"

static void on_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Dial *d = userdata;

        d->fd = fd;
        d->error = g_strdup(error);
        d->done = true;
        if (fd < 0)
                d->link = NULL;
}

static void on_closed(Link *link, const char *reason, void *userdata) {
        Dial *d = userdata;

        d->link = NULL;
}

void dial_free(Dial *d) {
        if (!d)
                return;
        link_free(d->link);
        g_free(d->error);
        g_free(d);
}

Dial *dial_start(sd_event *event, unsigned port, const char *name) {
        g_autofree char *ca = g_strdup_printf("%s/ca.pem", bridge_test_certs());
        g_autofree char *cert = g_strdup_printf("%s/%s.pem", bridge_test_certs(), name);
        g_autofree char *key = g_strdup_printf("%s/%s.key", bridge_test_certs(), name);
        LinkConfig config = { .ca_file = ca, .cert_file = cert, .key_file = key, .handshake_timeout_sec = 5 };
        LinkAddress address = { .tls = true, .host = (char *) "127.0.0.1", .port = port };
        Dial *d = g_new0(Dial, 1);

        d->fd = -1;
        g_assert_cmpint(link_connect(event, &address, &config, on_ready, on_closed, d, &d->link), >=, 0);
        return d;
}

Dial *dial(sd_event *event, unsigned port, const char *name) {
        gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
        Dial *d = dial_start(event, port, name);

        while (!d->done && g_get_monotonic_time() < deadline)
                sd_event_run(event, 100000);
        g_assert_true(d->done);
        return d;
}

sd_bus *peer_bus(sd_event *event, int fd) {
        sd_bus *bus = NULL;

        g_assert_cmpint(sd_bus_new(&bus), >=, 0);
        g_assert_cmpint(sd_bus_set_fd(bus, fd, fd), >=, 0);
        g_assert_cmpint(sd_bus_set_anonymous(bus, true), >=, 0);
        g_assert_cmpint(sd_bus_start(bus), >=, 0);
        g_assert_cmpint(sd_bus_attach_event(bus, event, 0), >=, 0);
        return bus;
}

void central_start_on(Central *c, TestBus *bus, const char *const *extra) {
        g_autofree char *listen = NULL;

        c->bus = bus;
        test_bus_start_daemon(c->bus, NULL);
        c->port = free_port();
        listen = g_strdup_printf("tls:host=127.0.0.1,port=%u", c->port);
        bridge_process_start(&c->listener, c->bus, listen, NULL, extra);
        g_assert_cmpint(sd_event_new(&c->event), >=, 0);
}

void central_stop(Central *c) {
        bridge_process_stop(&c->listener, SIGTERM);
        g_strfreev(c->listener.argv);
        g_free(c->listener.log_path);
        test_bus_free(c->bus);
        sd_event_unref(c->event);
}

int call_on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Call *c = userdata;

        c->ok = !sd_bus_message_is_method_error(m, NULL);
        if (!c->ok)
                sd_bus_error_copy(&c->error, sd_bus_message_get_error(m));
        c->done = TRUE;
        return 0;
}

void call(sd_event *event, sd_bus *bus, const char *destination, const char *path, const char *iface,
          const char *member, Call *c, const char *types, ...) {
        sd_bus_message *m = NULL;
        va_list ap;

        *c = (Call) { .error = SD_BUS_ERROR_NULL };
        g_assert_cmpint(sd_bus_message_new_method_call(bus, &m, destination, path, iface, member), >=, 0);
        if (types) {
                va_start(ap, types);
                g_assert_cmpint(sd_bus_message_appendv(m, types, ap), >=, 0);
                va_end(ap);
        }
        g_assert_cmpint(sd_bus_call_async(bus, NULL, m, call_on_reply, c, 10 * 1000000ULL), >=, 0);
        sd_bus_message_unref(m);
        while (!c->done)
                g_assert_cmpint(sd_event_run(event, 1000000), >=, 0);
}

void assert_denied(Call *c, const char *mention) {
        g_assert_false(c->ok);
        g_assert_cmpstr(c->error.name, ==, SD_BUS_ERROR_ACCESS_DENIED);
        g_assert_nonnull(strstr(c->error.message, mention));
        sd_bus_error_free(&c->error);
}

sd_bus *connect_as(Central *c, const char *name, Dial **ret) {
        for (int i = 0; i < 100; i++) {
                Dial *d = dial(c->event, c->port, name);

                if (d->fd >= 0) {
                        *ret = d;
                        return peer_bus(c->event, d->fd);
                }
                dial_free(d);
                g_usleep(50000);
        }
        g_error("cannot reach the listener");
}

void assert_refused(Central *c, const char *name) {
        Dial *d = dial(c->event, c->port, name);
        sd_bus *bus = NULL;
        Call r = {};

        if (d->fd < 0) {
                g_assert_nonnull(d->error);
                dial_free(d);
                return;
        }
        g_assert_cmpint(sd_bus_new(&bus), >=, 0);
        g_assert_cmpint(sd_bus_set_fd(bus, d->fd, d->fd), >=, 0);
        g_assert_cmpint(sd_bus_set_anonymous(bus, true), >=, 0);
        if (sd_bus_start(bus) >= 0 && sd_bus_attach_event(bus, c->event, 0) >= 0) {
                sd_bus_message *m = NULL;

                g_assert_cmpint(sd_bus_message_new_method_call(bus, &m, NULL, OUTPOST_ROOT, IFACE_REGISTRY,
                                                               "ListManagers"), >=, 0);
                if (sd_bus_call_async(bus, NULL, m, call_on_reply, &r, 5 * 1000000ULL) >= 0)
                        while (!r.done && sd_event_run(c->event, 1000000) >= 0)
                                ;
                sd_bus_message_unref(m);
                g_assert_false(r.ok);
                sd_bus_error_free(&r.error);
        }
        sd_bus_close_unref(bus);
        dial_free(d);
}
