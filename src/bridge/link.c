/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The transport under the bridge's relay (DESIGN.md §5): TCP, mutual TLS
 * with GnuTLS, and a pump between the TLS session and one end of a
 * socketpair whose other end sd-bus reads as if it were a local stream.
 *
 * D-Bus has no secure remote transport of its own (NOTES-sd-bus.md, "TCP
 * and authentication"), so every check happens here, before sd-bus sees a
 * byte: a peer that fails is dropped with no D-Bus traffic at all. The
 * pump has a bound per direction, because sd-bus queues without one
 * ("Unbounded queues"): toward the remote peer a full buffer means the peer
 * stopped reading and the link is dropped; toward the local sd-bus a full
 * buffer only stops reading from TCP, so TCP's own flow control pushes
 * back on the peer. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"
#include "frame-limit.h"
#include "link-address.h"
#include "link-tls.h"
#include "link.h"
#include "log.h"
#include "macro.h"

#define DEFAULT_MAX_QUEUED      (8u << 20)
#define DEFAULT_HANDSHAKE_SEC   10u
/* One read at a time. */
#define IO_CHUNK                (64u << 10)
#define ACCEPTS_PER_WAKEUP      16
#define ACCEPT_PAUSE_USEC       (1000u * 1000u)
#define DEFAULT_MAX_HANDSHAKES  64u
#define DEFAULT_MAX_PER_ADDRESS 16u
/* Connections closed to make room are logged once, then counted and
 * summed up at most this often: a flood must not flood the journal. */
#define ROOM_LOG_USEC           (10u * 1000u * 1000u)
/* After this many handshakes at once, give the memory back when the
 * last one is over (glibc keeps freed memory of many small blocks). */
#define TRIM_AFTER_PEAK         32u

static void fd_closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(fd_closep)
#define TAKE_FD(fd)                             \
        ({                                      \
                int _fd_ = (fd);                \
                (fd) = -1;                      \
                _fd_;                           \
        })

/* ---- configuration checks and credentials ------------------------------- */

/* The key must be private to its owner: a key others can read is a key
 * others may already have. Checked before GnuTLS reads it. */
static int check_key_mode(const char *key_file, char **ret_error) {
        struct stat st;

        if (stat(key_file, &st) < 0) {
                int r = -errno;

                *ret_error = g_strdup_printf("cannot read key file %s: %s", key_file, strerror(-r));
                return r;
        }
        if (st.st_mode & (S_IRWXG | S_IRWXO)) {
                *ret_error = g_strdup_printf("key file %s has permissions %04o: it must not be readable by group "
                                             "or others (chmod 600)", key_file, (unsigned) (st.st_mode & 07777));
                return -EPERM;
        }
        return 0;
}

static int load_creds(const LinkConfig *config, LinkTlsCredentials **ret, char **ret_error) {
        int r;

        if (!config->ca_file || !config->cert_file || !config->key_file) {
                *ret_error = g_strdup("tls: needs a CA file, a certificate and a key (tls-ca, tls-cert, tls-key)");
                return -EINVAL;
        }
        r = check_key_mode(config->key_file, ret_error);
        if (r < 0)
                return r;
        return link_tls_credentials_load(config->ca_file, config->cert_file, config->key_file, ret, ret_error);
}

/* What link_check promises; RET_CREDS (may be NULL) gets the loaded
 * credentials of a TLS address. A NULL address means TLS. */
static int prepare(const LinkAddress *a, const LinkConfig *config, LinkTlsCredentials **ret_creds, char **ret_error) {
        LinkTlsCredentials *creds = NULL;
        int r;

        if (a && !a->tls)
                return link_address_check_plaintext(a, config, ret_error);
        r = load_creds(config, &creds, ret_error);
        if (r < 0)
                return r;
        if (ret_creds)
                *ret_creds = creds;
        else
                link_tls_credentials_unref(creds);
        return 0;
}

int link_check(const LinkAddress *address, const LinkConfig *config, char **ret_error) {
        char *error = NULL;
        int r;

        r = prepare(address, config, NULL, &error);
        if (ret_error)
                *ret_error = error;
        else
                g_free(error);
        return r;
}

/* ---- links -------------------------------------------------------------- */

/* The connections of one source address still in their handshake. */
typedef struct AddressSlot {
        char *address;
        GQueue idle, talking;   /* of Link, oldest first: see struct LinkListener */
} AddressSlot;

typedef enum LinkState {
        LINK_CONNECTING,        /* importer: TCP connect in progress */
        LINK_HANDSHAKE,
        LINK_UP,                /* pumping */
        LINK_DONE,              /* torn down; a failure waits to be reported */
} LinkState;

struct Link {
        sd_event *event;
        LinkState state;
        bool server, tls;
        int tcp_fd, local_fd;
        sd_event_source *tcp_source, *local_source, *timer, *defer;
        LinkTls *tls_session;   /* TLS: from the start of the handshake */
        LinkTlsCredentials *creds;

        LinkListener *listener; /* server side, until the handshake is over */
        AddressSlot *slot;      /* with it: the peer's address */
        GList all_node, slot_node; /* in the listener's queues and the slot's */
        bool talking;           /* the peer has sent something: TLS state exists */
        char **allowed_peers;   /* borrowed from the listener, during the handshake */
        char *host;             /* client side: the host dialled, checked against the certificate */
        struct addrinfo *addrs, *next_addr;
        int connect_errno;

        char *peer_addr;        /* "192.0.2.1:5555" */
        char *peer;             /* peer_addr and the certificate's name */
        char *error;            /* why the handshake failed, when we know better than TLS does */
        char *end_reason;       /* set by the pump; the link ends when it returns */
        bool peer_at_fault;     /* it ends because the peer broke a limit or the framing */
        unsigned handshake_sec;

        Buffer to_tcp, to_local;
        FrameLimit from_peer;   /* where the peer's messages end, when limited */
        bool limit_messages;    /* listener side, with a max_message_bytes */
        bool tcp_eof, local_eof;
        /* Worth a read: epoll said so, and no read since came back short.
         * A side already drained is not read again until epoll says so,
         * which saves a failed recv() per side and pass of the pump. */
        bool tcp_readable, local_readable;
        bool send_pending;      /* link_tls_send said AGAIN: it must be called again */
        bool bye_pending;
        bool in_callback, free_requested;

        uint64_t last_receive;  /* CLOCK_MONOTONIC µs of the last bytes from the peer */

        LinkReadyFunc ready;
        LinkClosedFunc closed;
        void *userdata;
};

struct LinkListener {
        sd_event *event;
        int fd;
        bool tls;
        sd_event_source *source, *pause_timer;
        LinkTlsCredentials *creds;
        LinkConfig config;      /* numbers only; allowed_peers is our own copy */
        /* Links in their handshake, oldest first: those whose peer has sent
         * nothing yet (no TLS state allocated), and the others. A known
         * peer sends its ClientHello as soon as it is connected, so under a
         * flood of silent connections it is never among the idle ones that
         * are closed first to make room. */
        GQueue idle, talking;
        GHashTable *addresses;  /* address → AddressSlot */
        unsigned max_handshakes, max_per_address;
        size_t peak;            /* most handshakes at once since the last trim */
        unsigned n_closed;      /* closed to make room, not yet logged */
        uint64_t room_logged;   /* when that was last logged */
        LinkReadyFunc ready;
        LinkClosedFunc closed;
        void *userdata;
};

static void link_pump(Link *link);

/* ---- handshakes in progress, per listener and per address -------------- */

static void address_slot_free(AddressSlot *slot) {
        g_free(slot->address);
        g_free(slot);
}

static size_t queues_length(GQueue *idle, GQueue *talking) {
        return g_queue_get_length(idle) + g_queue_get_length(talking);
}

static void pending_add(LinkListener *l, Link *link, const char *address) {
        AddressSlot *slot = g_hash_table_lookup(l->addresses, address);

        if (!slot) {
                slot = g_new0(AddressSlot, 1);
                slot->address = g_strdup(address);
                g_hash_table_insert(l->addresses, slot->address, slot);
        }
        link->listener = l;
        link->slot = slot;
        link->all_node.data = link->slot_node.data = link;
        g_queue_push_tail_link(&l->idle, &link->all_node);
        g_queue_push_tail_link(&slot->idle, &link->slot_node);
        l->peak = MAX(l->peak, queues_length(&l->idle, &l->talking));
}

/* The peer sent its first bytes: it moves out of the idle queues. */
static void pending_talking(Link *link) {
        if (!link->listener || link->talking)
                return;
        g_queue_unlink(&link->listener->idle, &link->all_node);
        g_queue_unlink(&link->slot->idle, &link->slot_node);
        g_queue_push_tail_link(&link->listener->talking, &link->all_node);
        g_queue_push_tail_link(&link->slot->talking, &link->slot_node);
        link->talking = true;
}

static void pending_remove(Link *link) {
        LinkListener *l = link->listener;
        AddressSlot *slot = link->slot;

        if (!l)
                return;
        g_queue_unlink(link->talking ? &l->talking : &l->idle, &link->all_node);
        g_queue_unlink(link->talking ? &slot->talking : &slot->idle, &link->slot_node);
        if (queues_length(&slot->idle, &slot->talking) == 0)
                g_hash_table_remove(l->addresses, slot->address);
        link->listener = NULL;
        link->slot = NULL;
        /* A burst is over: hand back what its connections took. */
        if (queues_length(&l->idle, &l->talking) == 0 && l->peak >= TRIM_AFTER_PEAK) {
                l->peak = 0;
                (void) malloc_trim(0);
        }
}

static Link *link_new(sd_event *event, const LinkConfig *config, bool server, bool tls) {
        Link *link = g_new0(Link, 1);
        size_t max = config->max_queued_bytes ?: DEFAULT_MAX_QUEUED;

        link->event = sd_event_ref(event);
        link->server = server;
        link->tls = tls;
        link->tcp_fd = link->local_fd = -1;
        link->to_tcp.max = link->to_local.max = max;
        link->handshake_sec = config->handshake_timeout_sec ?: DEFAULT_HANDSHAKE_SEC;
        link->limit_messages = server && config->max_message_bytes > 0;
        frame_limit_init(&link->from_peer, config->max_message_bytes);
        return link;
}

/* Close everything that talks to the outside; the struct stays. */
static void link_disconnect(Link *link) {
        link->state = LINK_DONE;
        link->tcp_source = sd_event_source_disable_unref(link->tcp_source);
        link->local_source = sd_event_source_disable_unref(link->local_source);
        link->timer = sd_event_source_disable_unref(link->timer);
        if (link->tcp_fd >= 0)
                close(link->tcp_fd);
        if (link->local_fd >= 0)
                close(link->local_fd);
        link->tcp_fd = link->local_fd = -1;
        pending_remove(link);
}

static void link_destroy(Link *link) {
        link_disconnect(link);
        link->defer = sd_event_source_disable_unref(link->defer);
        link_tls_free(link->tls_session);
        link_tls_credentials_unref(link->creds);
        if (link->addrs)
                freeaddrinfo(link->addrs);
        buffer_done(&link->to_tcp);
        buffer_done(&link->to_local);
        g_free(link->host);
        g_free(link->peer_addr);
        g_free(link->peer);
        g_free(link->error);
        g_free(link->end_reason);
        sd_event_unref(link->event);
        g_free(link);
}

Link *link_free(Link *link) {
        if (!link)
                return NULL;
        /* From inside READY: finish once the callback returns. */
        if (link->in_callback) {
                link->free_requested = true;
                link_disconnect(link);
                return NULL;
        }
        link_destroy(link);
        return NULL;
}

void link_set_userdata(Link *link, void *userdata) {
        link->userdata = userdata;
}

static void link_set_error(Link *link, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void link_set_error(Link *link, const char *format, ...) {
        va_list ap;

        if (link->error)
                return;         /* the first cause is the one worth telling */
        va_start(ap, format);
        link->error = g_strdup_vprintf(format, ap);
        va_end(ap);
}

static int on_fail_defer(sd_event_source *s, void *userdata) {
        Link *link = userdata;

        link->in_callback = true;
        link->ready(link, -1, link->peer_addr ?: link->host, link->error, link->userdata);
        link_destroy(link);
        return 0;
}

/* Setting up failed (reason in link->error). The listener logs and drops
 * the peer; the importer hears of it through READY, from the event loop
 * (never from inside link_connect, before its caller has the Link). */
static void link_setup_failed(Link *link) {
        const char *error = link->error ?: "unknown error";

        link_disconnect(link);
        if (link->server) {
                log_warning("Refused peer %s: %s", link->peer_addr ?: "?", error);
                link_destroy(link);
                return;
        }
        if (!link->error)
                link->error = g_strdup(error);
        if (sd_event_add_defer(link->event, &link->defer, on_fail_defer, link) < 0)
                log_error("Link to %s: cannot report a failure: %s", link->peer_addr ?: link->host, error);
}

static int on_handshake_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Link *link = userdata;

        link_set_error(link, "%s timed out after %u s",
                       link->state == LINK_CONNECTING ? "connecting" : "TLS handshake", link->handshake_sec);
        link_setup_failed(link);
        return 0;
}

static int link_arm_timeout(Link *link) {
        return sd_event_add_time_relative(link->event, &link->timer, CLOCK_MONOTONIC,
                                          (uint64_t) link->handshake_sec * 1000000u, 0, on_handshake_timeout, link);
}

static int on_tcp_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_local_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* ---- the pump ----------------------------------------------------------- */

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

static uint64_t now_usec_monotonic(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
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
        link->last_receive = now_usec_monotonic();
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
 * side ended. From TLS this drains what GnuTLS holds decrypted, which
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
 * GnuTLS still waits to send it. */
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

static int set_events(sd_event_source *s, uint32_t events) {
        int r;

        /* epoll reports HUP and ERR even with no events asked for: a
         * source with nothing to do is switched off, or it would spin. */
        if (events == 0)
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        r = sd_event_source_set_io_events(s, events);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ON);
        return r;
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
        r = set_events(link->tcp_source, tcp);
        if (r >= 0)
                r = set_events(link->local_source, local);
        return r;
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
                if (r >= 0)
                        return;
                link_end(link, "cannot watch the link: %s", strerror(-r));
        }
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

/* ---- handshake and start ------------------------------------------------ */

/* Sets the socketpair up and hands one end out. */
static void link_start(Link *link) {
        g_autofree char *name = link->tls ? link_tls_peer_name(link->tls_session) : NULL;
        int pair[2], r;

        link->timer = sd_event_source_disable_unref(link->timer);
        link->peer = g_strdup_printf("%s %s", link->peer_addr, name ?: (link->tls ? "(no name)" : "(plaintext)"));
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0) {
                link_set_error(link, "cannot make a socketpair: %m");
                link_setup_failed(link);
                return;
        }
        link->local_fd = pair[0];
        r = sd_event_add_io(link->event, &link->local_source, link->local_fd, EPOLLIN, on_local_io, link);
        if (r < 0) {
                close(pair[1]);
                link_set_error(link, "cannot watch the link: %s", strerror(-r));
                link_setup_failed(link);
                return;
        }
        pending_remove(link);
        link->allowed_peers = NULL;
        link->state = LINK_UP;

        link->in_callback = true;
        link->ready(link, pair[1], link->peer, NULL, link->userdata);
        link->in_callback = false;
        if (link->free_requested) {
                link_destroy(link);
                return;
        }
        /* The peer's first bytes may have come with the handshake's last
         * flight and sit in GnuTLS already, unseen by epoll. */
        link->tcp_readable = link->local_readable = true;
        link_pump(link);
}

/* The TLS layer has told the peer why (an alert): close without a reset,
 * so that it can read the alert (a close with unread bytes would send an
 * RST that may overtake it). Best effort: nothing here may block. */
static void link_refuse_gently(Link *link) {
        char buf[4096];

        (void) shutdown(link->tcp_fd, SHUT_WR);
        for (int i = 0; i < 16 && recv(link->tcp_fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++)
                ;
}

static void link_handshake(Link *link) {
        g_autofree char *error = NULL;
        int r;

        r = link_tls_handshake(link->tls_session, &error);
        if (r == -EAGAIN) {
                r = set_events(link->tcp_source, link_tls_wants_write(link->tls_session) ? EPOLLOUT : EPOLLIN);
                if (r >= 0)
                        return;
                link_set_error(link, "cannot watch the connection: %s", strerror(-r));
                link_setup_failed(link);
                return;
        }
        if (r < 0) {
                link_set_error(link, "%s", error);
                link_refuse_gently(link);
                link_setup_failed(link);
                return;
        }
        link_start(link);
}

static int link_new_session(Link *link) {
        g_autofree char *error = NULL;
        int r;

        r = link_tls_new(link->creds, link->tcp_fd, link->server, link->host, link->allowed_peers,
                         &link->tls_session, &error);
        if (r < 0)
                link_set_error(link, "%s", error);
        return r;
}

/* TCP is connected (either side): TLS handshake, or straight to pumping. */
static void link_connected(Link *link) {
        int one = 1;

        /* D-Bus is many small messages, each waiting for its answer. */
        (void) setsockopt(link->tcp_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!link->tls) {
                link_start(link);
                return;
        }
        if (link_new_session(link) < 0) {
                link_setup_failed(link);
                return;
        }
        link->state = LINK_HANDSHAKE;
        link_handshake(link);
}

/* Listener: the peer's first bytes are here. Only now does the link cost
 * a TLS session (tens of KiB): a connection that never says anything
 * costs its socket and this struct. */
static int link_first_bytes(Link *link) {
        char c;
        ssize_t k = recv(link->tcp_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

        if (k < 0 && IN_SET(errno, EAGAIN, EINTR))
                return -EAGAIN;
        /* It went away without a word: nothing worth a warning (a flood
         * that ends would otherwise log each of its connections). */
        if (k <= 0) {
                log_debug("Connection from %s closed before it sent anything", link->peer_addr);
                link_disconnect(link);
                link_destroy(link);
                return -ECONNRESET;
        }
        pending_talking(link);
        if (link_new_session(link) < 0) {
                link_setup_failed(link);
                return -EIO;
        }
        return 0;
}

/* ---- importer side ------------------------------------------------------ */

static void link_connect_next(Link *link);

static void link_connect_done(Link *link) {
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

static int on_tcp_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Link *link = userdata;

        switch (link->state) {
        case LINK_CONNECTING:
                link_connect_done(link);
                break;
        case LINK_HANDSHAKE:
                if (link->tls && !link->tls_session && link_first_bytes(link) < 0)
                        break;
                link_handshake(link);
                break;
        case LINK_UP:
                if (revents_readable(revents))
                        link->tcp_readable = true;
                link_pump(link);
                break;
        case LINK_DONE:
                break;
        }
        return 0;
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
        r = sd_event_add_io(link->event, &link->tcp_source, fd, EPOLLOUT, on_tcp_io, link);
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
                if (r >= 0)
                        return;
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
        r = prepare(address, config, &creds, &error);
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

/* ---- listener side ------------------------------------------------------ */

/* Log closing connections to make room once, then at most every
 * ROOM_LOG_USEC with how many since. */
static void note_closed_for_room(LinkListener *l, const char *address) {
        uint64_t now = now_usec_monotonic();

        l->n_closed++;
        if (l->room_logged != 0 && now - l->room_logged < ROOM_LOG_USEC)
                return;
        log_warning("Closed %u connection%s still in the TLS handshake to make room (the latest from %s): "
                    "at most %u from one address (max-connections-per-address) and %u in all (max-handshakes); "
                    "those that sent nothing yet go first",
                    l->n_closed, l->n_closed == 1 ? "" : "s", address, l->max_per_address, l->max_handshakes);
        l->n_closed = 0;
        l->room_logged = now;
}

/* The oldest connection of the two queues that has sent nothing, or else
 * the oldest of all; NULL when both are empty. */
static Link *oldest_pending(GQueue *idle, GQueue *talking) {
        GList *node = g_queue_peek_head_link(idle) ?: g_queue_peek_head_link(talking);

        return node ? node->data : NULL;
}

static void close_for_room(LinkListener *l, Link *link, const char *address) {
        note_closed_for_room(l, address);
        link_disconnect(link);
        link_destroy(link);
}

/* A new connection from ADDRESS is coming: keep the handshakes in
 * progress under both caps. */
static void make_room(LinkListener *l, const char *address) {
        AddressSlot *slot = g_hash_table_lookup(l->addresses, address);
        Link *victim;

        while (slot && queues_length(&slot->idle, &slot->talking) >= l->max_per_address) {
                victim = oldest_pending(&slot->idle, &slot->talking);
                if (queues_length(&slot->idle, &slot->talking) == 1)
                        slot = NULL;    /* freed with its last link */
                close_for_room(l, victim, address);
        }
        while (queues_length(&l->idle, &l->talking) >= l->max_handshakes) {
                victim = oldest_pending(&l->idle, &l->talking);
                close_for_room(l, victim, address);
        }
}

/* What counts as one source address: "192.0.2.1", or an IPv6 /64
 * ("2001:db8::/64"), which one end site usually gets whole and can pick
 * addresses from at will. */
static char *sockaddr_host(const struct sockaddr *sa) {
        char host[INET6_ADDRSTRLEN] = "?";
        struct in6_addr a6;

        if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, host, sizeof host);
        else if (sa->sa_family == AF_INET6) {
                a6 = ((const struct sockaddr_in6 *) sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(&a6)) {
                        inet_ntop(AF_INET6, &a6, host, sizeof host);
                        return g_strdup(host);
                }
                memset(a6.s6_addr + 8, 0, 8);
                inet_ntop(AF_INET6, &a6, host, sizeof host);
                return g_strdup_printf("%s/64", host);
        }
        return g_strdup(host);
}

static void listener_accepted(LinkListener *l, int fd, const struct sockaddr *sa) {
        g_autofree char *address = sockaddr_host(sa);
        Link *link;
        int one = 1;
        int r;

        make_room(l, address);
        link = link_new(l->event, &l->config, true, l->tls);
        link->tcp_fd = fd;
        link->peer_addr = sockaddr_to_string(sa);
        link->creds = link_tls_credentials_ref(l->creds);
        link->allowed_peers = l->config.allowed_peers;
        link->ready = l->ready;
        link->closed = l->closed;
        link->userdata = l->userdata;
        link->state = LINK_HANDSHAKE;
        pending_add(l, link, address);

        r = sd_event_add_io(l->event, &link->tcp_source, fd, EPOLLIN, on_tcp_io, link);
        if (r >= 0)
                r = link_arm_timeout(link);
        if (r < 0) {
                link_set_error(link, "cannot watch the connection: %s", strerror(-r));
                link_setup_failed(link);
                return;
        }
        if (!link->tls) {
                link_connected(link);
                return;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* A known peer's ClientHello is often here already: it starts at
         * once and is not taken for an idle connection. */
        if (link_first_bytes(link) >= 0)
                link_handshake(link);
}

static int on_accept_pause_over(sd_event_source *s, uint64_t usec, void *userdata) {
        LinkListener *l = userdata;

        l->pause_timer = sd_event_source_disable_unref(l->pause_timer);
        (void) sd_event_source_set_enabled(l->source, SD_EVENT_ON);
        return 0;
}

/* Out of file descriptors: the pending connection stays in the backlog
 * and epoll keeps saying so. Pause instead of spinning. */
static void listener_pause(LinkListener *l, int err) {
        log_warning("Cannot accept a connection: %s; pausing for a second", strerror(err));
        (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        if (!l->pause_timer)
                (void) sd_event_add_time_relative(l->event, &l->pause_timer, CLOCK_MONOTONIC, ACCEPT_PAUSE_USEC,
                                                  0, on_accept_pause_over, l);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        LinkListener *l = userdata;

        for (unsigned i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
                struct sockaddr_storage ss = {};
                socklen_t len = sizeof ss;
                int cfd;

                cfd = accept4(l->fd, (struct sockaddr *) &ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd >= 0) {
                        listener_accepted(l, cfd, (struct sockaddr *) &ss);
                        continue;
                }
                if (IN_SET(errno, EMFILE, ENFILE, ENOBUFS, ENOMEM))
                        listener_pause(l, errno);
                else if (!IN_SET(errno, EAGAIN, EINTR, ECONNABORTED, EPROTO))
                        log_warning("Cannot accept a connection: %m");
                break;
        }
        return 0;
}

static int listen_on(const LinkAddress *a, int *ret_fd, char **ret_error) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
        struct addrinfo *addrs = NULL;
        char service[16];
        int r, err = 0;

        snprintf(service, sizeof service, "%u", a->port);
        r = getaddrinfo(a->host, service, &hints, &addrs);
        if (r != 0) {
                *ret_error = g_strdup_printf("cannot resolve %s: %s", a->host, gai_strerror(r));
                return -EADDRNOTAVAIL;
        }
        for (struct addrinfo *ai = addrs; ai; ai = ai->ai_next) {
                _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                int one = 1;

                if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
                    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
                        err = errno;
                        continue;
                }
                *ret_fd = TAKE_FD(fd);
                freeaddrinfo(addrs);
                return 0;
        }
        freeaddrinfo(addrs);
        *ret_error = g_strdup_printf("cannot listen on %s port %u: %s", a->host, a->port, strerror(err));
        return -err;
}

/* A socket from systemd: it must be a listening stream socket, and we
 * need it non-blocking. */
static int adopt_fd(int fd, char **ret_error) {
        int accepting = 0, flags;
        socklen_t len = sizeof accepting;

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting) {
                *ret_error = g_strdup_printf("file descriptor %d is not a listening socket", fd);
                return -ENOTSOCK;
        }
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                int r = -errno;

                *ret_error = g_strdup_printf("cannot set up file descriptor %d: %s", fd, strerror(-r));
                return r;
        }
        return 0;
}

static int listener_open(LinkListener *l, const LinkAddress *address, int fd, char **ret_error) {
        int r;

        if (fd >= 0) {
                r = adopt_fd(fd, ret_error);
                if (r < 0)
                        return r;
                l->fd = fd;
        } else {
                r = listen_on(address, &l->fd, ret_error);
                if (r < 0)
                        return r;
        }
        if (!l->tls) {
                r = link_socket_check_loopback(l->fd, ret_error);
                if (r < 0)
                        return r;
        }
        return sd_event_add_io(l->event, &l->source, l->fd, EPOLLIN, on_accept, l);
}

/* Each connection is a file descriptor: a listener may hold many, and
 * running out of them refuses known peers with everyone else. The soft
 * limit is often far below what the hard limit allows (nothing here uses
 * select(), which cannot take descriptors past 1023). */
static void raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_debug("Cannot raise the limit on open files: %m");
}

int link_listener_new(sd_event *event, const LinkAddress *address, int fd, const LinkConfig *config,
                      LinkReadyFunc ready, LinkClosedFunc closed, void *userdata, LinkListener **ret) {
        /* An unparsed address (socket activation without --listen) is TLS. */
        const LinkAddress *a = address && address->host ? address : NULL;
        g_autofree char *error = NULL;
        LinkListener *l;
        int r;

        if (!a && fd < 0)
                return -EINVAL;
        l = g_new0(LinkListener, 1);
        l->event = sd_event_ref(event);
        l->fd = -1;
        l->tls = !a || a->tls;
        l->config = (LinkConfig) {
                .allowed_peers = g_strdupv(config->allowed_peers),
                .max_queued_bytes = config->max_queued_bytes,
                .max_message_bytes = config->max_message_bytes,
                .handshake_timeout_sec = config->handshake_timeout_sec,
        };
        l->addresses = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) address_slot_free);
        l->max_handshakes = config->max_handshakes ?: DEFAULT_MAX_HANDSHAKES;
        l->max_per_address = config->max_handshakes_per_address ?: DEFAULT_MAX_PER_ADDRESS;
        raise_fd_limit();
        l->ready = ready;
        l->closed = closed;
        l->userdata = userdata;

        r = prepare(a, config, &l->creds, &error);
        if (r >= 0)
                r = listener_open(l, a, fd, &error);
        if (r < 0) {
                log_error("Cannot listen%s%s: %s", a ? " on " : "", a ? a->host : "",
                          error ?: strerror(-r));
                if (l->fd == fd)
                        l->fd = -1;     /* still the caller's */
                link_listener_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

int link_listener_reload(LinkListener *l, const LinkConfig *config, char **ret_error) {
        LinkTlsCredentials *creds = NULL;
        int r;

        if (!l->tls)
                return 0;
        r = load_creds(config, &creds, ret_error);
        if (r < 0)
                return r;
        /* Links already up keep what they were accepted with; a handshake
         * begun before this finishes with it too (it holds a reference). */
        link_tls_credentials_unref(l->creds);
        l->creds = creds;
        return 0;
}

int link_listener_get_port(LinkListener *l) {
        struct sockaddr_storage ss = {};
        socklen_t len = sizeof ss;

        if (getsockname(l->fd, (struct sockaddr *) &ss, &len) < 0)
                return -errno;
        if (ss.ss_family == AF_INET)
                return ntohs(((struct sockaddr_in *) &ss)->sin_port);
        if (ss.ss_family == AF_INET6)
                return ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
        return -EAFNOSUPPORT;
}

LinkListener *link_listener_free(LinkListener *l) {
        Link *link;

        if (!l)
                return NULL;
        while ((link = oldest_pending(&l->idle, &l->talking)))
                link_destroy(link);
        g_hash_table_unref(l->addresses);
        sd_event_source_disable_unref(l->source);
        sd_event_source_disable_unref(l->pause_timer);
        if (l->fd >= 0)
                close(l->fd);
        link_tls_credentials_unref(l->creds);
        g_strfreev(l->config.allowed_peers);
        sd_event_unref(l->event);
        g_free(l);
        return NULL;
}

bool link_peer_at_fault(Link *link) {
        return link && link->peer_at_fault;
}

uint64_t link_get_last_receive(Link *link) {
        return link ? link->last_receive : 0;
}
