/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a remote peer can send the bridge's listener, after TLS: the input
 * is the byte stream on the plaintext side of the link, handed to an
 * sd-bus server connection set up as the listener sets up its peers
 * (src/bridge/listener.c, peer_setup_remote: anonymous server, no unix
 * fds). Unless the first byte is '!', a valid authentication comes first,
 * so that the fuzzer spends its time on messages. Each message goes
 * through the listener's checks (method calls only, the destination, the
 * object tree, no bus driver interfaces), and a call that passes has its
 * body copied into a new message, as the listener relays it.
 *
 * The importer's measure of a call before it relays one (frame-limit.c,
 * bus_message_measure_call) is checked here against what sd-bus really
 * writes: the call is copied as the importer copies it, sent on the
 * connection, and the bytes that come out must be exactly as many as
 * measured, or a call the upstream would drop the link for could slip
 * through. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge.h"
#include "frame-limit.h"
#include "fuzz.h"
#include "macro.h"

static const char auth[] = "\0AUTH ANONYMOUS\r\nBEGIN\r\n";

static bool interface_is_driver(const char *iface) {
        return iface && (strcmp(iface, "org.freedesktop.DBus") == 0 ||
                         strcmp(iface, "org.freedesktop.DBus.Monitoring") == 0 ||
                         strcmp(iface, "org.freedesktop.DBus.Debug.Stats") == 0);
}

/* Larger messages would not fit in the socket without a reader. */
#define MEASURE_CHECK_MAX (64u << 10)

typedef struct Fuzz {
        int peer_fd;            /* the other end of the connection */
        unsigned n_relayed;
} Fuzz;

static size_t drain(int fd) {
        char buf[4096];
        size_t n = 0;
        ssize_t k;

        while ((k = read(fd, buf, sizeof buf)) > 0)
                n += k;
        return n;
}

/* What the importer measures is what goes out. */
static void check_measure(sd_bus_message *m, Fuzz *f) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        sd_bus *bus = sd_bus_message_get_bus(m);
        MessageMeasure measure;

        if (bus_message_measure_call(m, NULL, &measure) < 0 || measure.size > MEASURE_CHECK_MAX)
                return;
        if (sd_bus_message_new_method_call(bus, &call, NULL, sd_bus_message_get_path(m),
                                           sd_bus_message_get_interface(m), sd_bus_message_get_member(m)) < 0 ||
            sd_bus_message_copy(call, m, true) < 0)
                return;
        (void) sd_bus_message_rewind(m, true);
        (void) drain(f->peer_fd);
        if (sd_bus_send(bus, call, NULL) < 0 || sd_bus_flush(bus) < 0)
                return;
        g_assert_cmpuint(drain(f->peer_fd), ==, measure.size);
        g_assert_cmpuint(measure.depth, <=, 128);       /* sd-bus's own limit */
}

static int on_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *copy = NULL;
        const char *path = sd_bus_message_get_path(m), *iface = sd_bus_message_get_interface(m);
        const char *destination = sd_bus_message_get_destination(m);
        Fuzz *f = userdata;

        if (!sd_bus_message_is_method_call(m, NULL, NULL))
                return 1;
        if (destination && strcmp(destination, OUTPOST_BUS_NAME) != 0) {
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED, "not '%s'", destination);
                return 1;
        }
        if (!object_path_in_tree(path) || interface_is_driver(iface)) {
                (void) sd_bus_reply_method_errorf(m, SD_BUS_ERROR_ACCESS_DENIED, "not '%s'", path ?: "");
                return 1;
        }
        g_assert_true(g_str_has_prefix(path, OUTPOST_ROOT_PATH));
        check_measure(m, f);
        /* The relay: the body copied into a new message (here the reply,
         * since no local bus is at hand), whatever it holds. */
        if (sd_bus_message_new_method_return(m, &copy) >= 0 && sd_bus_message_copy(copy, m, true) >= 0)
                (void) sd_bus_send(NULL, copy, NULL);
        f->n_relayed++;
        return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        sd_bus *server = NULL;
        sd_id128_t id = SD_ID128_MAKE(6f,75,74,70,6f,73,74,2d,66,75,7a,7a,69,6e,67,21);
        Fuzz f = {};
        int fds[2];
        bool raw = size > 0 && data[0] == '!';
        int r;

        if (size > 256 * 1024)
                return 0;
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), ==, 0);
        /* The whole input fits in the socket: no reader needed. */
        (void) setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &(int) { 1024 * 1024 }, sizeof(int));
        if (!raw)
                g_assert_cmpint(write(fds[1], auth, sizeof auth - 1), ==, (ssize_t) sizeof auth - 1);
        if (size > (size_t) raw && write(fds[1], data + raw, size - raw) < 0)
                goto out;
        (void) shutdown(fds[1], SHUT_WR);
        f.peer_fd = fds[1];

        g_assert_cmpint(sd_bus_new(&server), >=, 0);
        g_assert_cmpint(sd_bus_set_fd(server, fds[0], fds[0]), >=, 0);
        g_assert_cmpint(sd_bus_set_server(server, true, id), >=, 0);
        g_assert_cmpint(sd_bus_set_anonymous(server, true), >=, 0);
        g_assert_cmpint(sd_bus_negotiate_fds(server, false), >=, 0);
        g_assert_cmpint(sd_bus_add_filter(server, NULL, on_message, &f), >=, 0);
        if (sd_bus_start(server) < 0)
                goto out;
        /* Until the stream ends, or the connection does; bounded anyway. */
        for (unsigned i = 0; i < 100000; i++) {
                r = sd_bus_process(server, NULL);
                if (r <= 0)
                        break;
        }
out:
        if (server)
                sd_bus_close_unref(server);
        else
                close(fds[0]);
        close(fds[1]);
        return 0;
}
