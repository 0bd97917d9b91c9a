/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pump of an established link: bytes between the TCP connection (in
 * TLS records, or plain on loopback) and our end of the socketpair whose
 * other end sd-bus reads as if it were a local stream.
 *
 * It has a bound per direction, because sd-bus queues without one
 * (NOTES-sd-bus.md, "Unbounded queues"): toward the remote peer a full
 * buffer means the peer stopped reading and the link is dropped; toward
 * the local sd-bus a full buffer only stops reading from TCP, so TCP's own
 * flow control pushes back on the peer. On the listener side it also
 * follows the peer's D-Bus framing (frame-limit.c), to refuse a message
 * over the size limit before sd-bus buffers any of it. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link-internal.h"

/* One read at a time. */
#define IO_CHUNK                (64u << 10)

static void link_end(Link *link, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void link_end(Link *link, const char *format, ...) {
        va_list ap;

        if (link->end_reason)
                return;
        va_start(ap, format);
        link->end_reason = g_strdup_vprintf(format, ap);
        va_end(ap);
}

/* TCP went wrong under us: say how, from the socket's own error. */
static void link_end_tcp_errno(Link *link, int err) {
        if (err == 0) {
                socklen_t len = sizeof err;

                (void) getsockopt(link->tcp_fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
        if (IN_SET(err, 0, EPIPE))
                link_end(link, "connection closed by peer");
        else if (err == ECONNRESET)
                link_end(link, "connection reset by peer");
        else
                link_end(link, "connection lost: %s", strerror(err));
}

/* The link's TLS failed (link_tls_recv/link_tls_send): ERROR says how,
 * or is NULL when the socket under it did (ERR). */
static void link_end_tls(Link *link, int err, const char *error) {
        if (error)
                link_end(link, "TLS error: %s", error);
        else
                link_end_tcp_errno(link, err);
}

/* A socket call's result K in the pump's terms: bytes, -EAGAIN when
 * nothing can move now, or -EIO with end_reason set. */
static ssize_t socket_result(Link *link, ssize_t k, bool tcp) {
        if (k >= 0)
                return k;
        if (IN_SET(errno, EAGAIN, EINTR))
                return -EAGAIN;
        if (tcp)
                link_end_tcp_errno(link, errno);
        else
                link_end(link, "connection closed locally");
        return -EIO;
}

/* Read from the TCP side: bytes, 0 at the end, -EAGAIN when nothing is
 * there now, -EINTR to call again, -EIO when the link must end
 * (end_reason set). */
static ssize_t tcp_recv_raw(Link *link, void *buf, size_t n) {
        g_autofree char *error = NULL;
        ssize_t k;
        int err = 0;

        if (!link->tls)
                return socket_result(link, recv(link->tcp_fd, buf, n, MSG_DONTWAIT), true);
        k = link_tls_recv(link->tls_session, buf, n, &err, &error);
        if (k == -EIO)
                link_end_tls(link, err, error);
        return k;
}

/* The same, noting when the peer last sent anything and, on the listener
 * side, refusing a message over the size limit before sd-bus gets to
 * buffer it (it would take up to 128 MiB). */
static ssize_t tcp_recv(Link *link, void *buf, size_t n) {
        g_autofree char *error = NULL;
        ssize_t k = tcp_recv_raw(link, buf, n);

        if (k <= 0)
                return k;
        link->last_receive = link_now_usec();
        if (link->limit_messages && frame_limit_feed(&link->from_peer, buf, k, &error) < 0) {
                link->peer_at_fault = true;
                link_end(link, "peer sent %s", error);
                return -EIO;
        }
        return k;
}

/* Write to the TCP side: bytes taken, -EAGAIN, or -EIO (end_reason set). */
static ssize_t tcp_send(Link *link, const void *buf, size_t n) {
        g_autofree char *error = NULL;
        ssize_t k;
        int err = 0;

        if (!link->tls)
                return socket_result(link, send(link->tcp_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL), true);
        k = link_tls_send(link->tls_session, buf, n, link->send_pending, &err, &error);
        link->send_pending = k == -EAGAIN;
        if (k == -EIO)
                link_end_tls(link, err, error);
        return k;
}

static ssize_t local_recv(Link *link, void *buf, size_t n) {
        return socket_result(link, recv(link->local_fd, buf, n, MSG_DONTWAIT), false);
}

static ssize_t local_send(Link *link, const void *buf, size_t n) {
        return socket_result(link, send(link->local_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL), false);
}

/* READ into B while there is room and READABLE; *EOF once READ says the
 * side ended. From TLS this drains what the library holds decrypted, which
 * epoll cannot see: it reads until AGAIN, or until B is full, when a later
 * pass comes back for the rest. A plain socket is drained once a read
 * comes back short: epoll (level-triggered) tells of anything later. */
static bool pump_in(Link *link, Buffer *b, bool *eof, bool *readable, bool tls,
                    ssize_t (*read)(Link *, void *, size_t)) {
        bool progress = false;
        uint8_t *tail;
        size_t room;
        ssize_t k;

        while (*readable && !*eof && (room = buffer_tail(b, IO_CHUNK, &tail)) > 0) {
                k = read(link, tail, room);
                if (k == -EINTR)
                        continue;
                if (k == -EAGAIN)
                        *readable = false;
                if (k < 0)
                        break;
                if (k == 0)
                        *eof = true;
                b->len += k;
                progress = true;
                if (!tls && (size_t) k < room)
                        *readable = false;
        }
        return progress;
}

/* B out through WRITE, while it takes bytes (or finishes a PENDING one). */
static bool pump_out(Link *link, Buffer *b, const bool *pending, ssize_t (*write)(Link *, const void *, size_t)) {
        bool progress = false;
        ssize_t k;

        while (b->len > 0 || (pending && *pending)) {
                k = write(link, b->data + b->head, b->len);
                if (k < 0)
                        break;
                buffer_consume(b, k);
                progress = true;
        }
        return progress;
}

/* The buffer toward the peer is full and TCP takes nothing: if sd-bus has
 * more to say, the peer stopped reading. Drop it rather than queue
 * without end (and backpressure here would only move the queue into
 * sd-bus, which has no byte limit). */
static void check_peer_reading(Link *link) {
        char c;

        if (!link->local_eof && buffer_room(&link->to_tcp) == 0 &&
            recv(link->local_fd, &c, 1, MSG_DONTWAIT | MSG_PEEK) > 0) {
                link->peer_at_fault = true;
                link_end(link, "peer stopped reading: %zu bytes queued", link->to_tcp.len);
        }
}

/* Our side is done and everything it said has left: close_notify, so the
 * peer knows the stream ended here and was not cut. Returns false while
 * TLS still waits to send it. */
static bool link_say_bye(Link *link) {
        if (!link->tls)
                return true;
        link->bye_pending = link_tls_bye(link->tls_session) == -EAGAIN;
        return !link->bye_pending;
}

/* Whether the link has run its course; sets end_reason when it has. */
static bool link_check_end(Link *link) {
        if (link->end_reason)
                return true;
        /* The peer is gone: hand sd-bus what it sent, then the EOF. */
        if (link->tcp_eof && link->to_local.len == 0) {
                link_end(link, "connection closed by peer");
                return true;
        }
        /* sd-bus is gone: let its last words reach the peer first. */
        if (link->local_eof && link->to_tcp.len == 0 && !link->send_pending && link_say_bye(link)) {
                (void) shutdown(link->tcp_fd, SHUT_WR);
                link_end(link, "connection closed locally");
                return true;
        }
        return false;
}

int link_set_io_events(sd_event_source *s, uint32_t events) {
        int r;

        /* epoll reports HUP and ERR even with no events asked for: a
         * source with nothing to do is switched off, or it would spin. */
        if (events == 0)
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        r = sd_event_source_set_io_events(s, events);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

/* EPOLLOUT only when something waits to go out; no EPOLLIN from TCP while
 * the buffer toward sd-bus is full (that is the backpressure). */
static int link_update_events(Link *link) {
        uint32_t tcp = 0, local = 0;
        int r;

        if (!link->tcp_eof && buffer_room(&link->to_local) > 0)
                tcp |= EPOLLIN;
        if (link->to_tcp.len > 0 || link->send_pending || link->bye_pending)
                tcp |= EPOLLOUT;
        if (!link->local_eof)
                local |= EPOLLIN;
        if (link->to_local.len > 0)
                local |= EPOLLOUT;
        r = link_set_io_events(link->tcp_source, tcp);
        if (r < 0)
                return r;
        return link_set_io_events(link->local_source, local);
}

static void link_finish(Link *link) {
        g_autofree char *reason = TAKE_PTR(link->end_reason);

        link_disconnect(link);
        link->in_callback = true;
        if (link->closed)
                link->closed(link, reason, link->userdata);
        link_destroy(link);
}

static void link_pump(Link *link) {
        bool progress;
        int r;

        do {
                progress = pump_in(link, &link->to_local, &link->tcp_eof, &link->tcp_readable, link->tls, tcp_recv);
                progress = pump_out(link, &link->to_local, NULL, local_send) || progress;
                progress = pump_out(link, &link->to_tcp, &link->send_pending, tcp_send) || progress;
                progress = pump_in(link, &link->to_tcp, &link->local_eof, &link->local_readable, false,
                                   local_recv) || progress;
        } while (progress && !link->end_reason);
        check_peer_reading(link);

        if (!link_check_end(link)) {
                r = link_update_events(link);
                if (r < 0)
                        link_end(link, "cannot watch the link: %s", strerror(-r));
        }
        if (link->end_reason)
                link_finish(link);
}

/* EPOLLHUP and EPOLLERR count as readable: the read says what happened. */
static bool revents_readable(uint32_t revents) {
        return revents & (EPOLLIN | EPOLLHUP | EPOLLERR);
}

static int on_local_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Link *link = userdata;

        if (revents_readable(revents))
                link->local_readable = true;
        link_pump(link);
        return 0;
}

int link_stream_open(Link *link, int *ret_fd) {
        int pair[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0) {
                link_set_error(link, "cannot make a socketpair: %m");
                return -EIO;
        }
        link->local_fd = pair[0];
        r = sd_event_add_io(link->event, &link->local_source, link->local_fd, EPOLLIN, on_local_io, link);
        if (r < 0) {
                close(pair[1]);
                link_set_error(link, "cannot watch the link: %s", strerror(-r));
                return r;
        }
        *ret_fd = pair[1];
        return 0;
}

/* The peer's first bytes may have come with the handshake's last flight
 * and sit in the TLS library already, unseen by epoll. */
void link_stream_begin(Link *link) {
        link->tcp_readable = link->local_readable = true;
        link_pump(link);
}

void link_stream_tcp_event(Link *link, uint32_t revents) {
        if (revents_readable(revents))
                link->tcp_readable = true;
        link_pump(link);
}
