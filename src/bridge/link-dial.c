/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The importer's side of a link: resolve the upstream's name, connect to
 * its addresses one after the other, without blocking, under the link's
 * handshake timeout; link.c takes over once TCP is connected. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link-address.h"
#include "link-internal.h"
#include "log.h"

static void link_connect_next(Link *link);

void link_connect_done(Link *link) {
        int err = 0;
        socklen_t len = sizeof err;

        if (getsockopt(link->tcp_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err == 0) {
                link_connected(link);
                return;
        }
        /* This address refused: try the host's next one (localhost is ::1
         * and 127.0.0.1, and a listener may be on only one of them). */
        link->connect_errno = err;
        link->tcp_source = sd_event_source_disable_unref(link->tcp_source);
        close(link->tcp_fd);
        link->tcp_fd = -1;
        link_connect_next(link);
}

/* Start a non-blocking connect to one address; -errno when it fails at
 * once. */
static int link_connect_one(Link *link, const struct addrinfo *ai) {
        _cleanup_close_ int fd = -1;
        int r;

        if (!link->tls && !sockaddr_is_loopback(ai->ai_addr))
                return -EPERM;  /* plain TCP never leaves this machine */
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
                return -errno;
        r = sd_event_add_io(link->event, &link->tcp_source, fd, EPOLLOUT, link_on_tcp_io, link);
        if (r < 0)
                return r;
        g_free(link->peer_addr);
        link->peer_addr = sockaddr_to_string(ai->ai_addr);
        link->tcp_fd = TAKE_FD(fd);
        link->state = LINK_CONNECTING;
        return 0;
}

static void link_connect_next(Link *link) {
        int r;

        while (link->next_addr) {
                const struct addrinfo *ai = link->next_addr;

                link->next_addr = ai->ai_next;
                r = link_connect_one(link, ai);
                if (r == 0)
                        return;         /* connecting */
                link->connect_errno = -r;
        }
        link_set_error(link, "cannot connect to %s: %s", link->host,
                       link->connect_errno == EPERM ? "not a loopback address, and the link is plain TCP"
                                                    : strerror(link->connect_errno ?: EHOSTUNREACH));
        link_setup_failed(link);
}

static void link_resolve(Link *link, unsigned port) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG };
        char service[16];
        int r;

        /* getaddrinfo() blocks. That is fine for a literal or "localhost"
         * (answered without the network) and tolerable for a configured
         * upstream name at connect time; an asynchronous resolver can come
         * when a name server that hangs becomes a real problem. */
        snprintf(service, sizeof service, "%u", port);
        r = getaddrinfo(link->host, service, &hints, &link->addrs);
        if (r != 0) {
                link_set_error(link, "cannot resolve %s: %s", link->host, gai_strerror(r));
                link_setup_failed(link);
                return;
        }
        link->next_addr = link->addrs;
        link_connect_next(link);
}

int link_connect(sd_event *event, const LinkAddress *address, const LinkConfig *config,
                 LinkReadyFunc ready, LinkClosedFunc closed, void *userdata, Link **ret) {
        g_autofree char *error = NULL;
        LinkTlsCredentials *creds = NULL;
        Link *link;
        int r;

        if (!address->host)
                return -EINVAL;
        r = link_prepare(address, config, &creds, &error);
        if (r < 0) {
                log_error("Cannot connect to %s:%u: %s", address->host ?: "?", address->port, error);
                return r;
        }
        link = link_new(event, config, false, address->tls);
        link->creds = creds;
        link->host = g_strdup(address->host);
        link->ready = ready;
        link->closed = closed;
        link->userdata = userdata;
        r = link_arm_timeout(link);
        if (r < 0) {
                link_destroy(link);
                return r;
        }
        link->state = LINK_CONNECTING;
        link_resolve(link, address->port);
        *ret = link;
        return 0;
}
