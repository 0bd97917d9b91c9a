/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The listener's side of a link: the listening socket (our own, or one
 * handed over by systemd), accepting, and the bounds that keep a flood of
 * connections from keeping known peers out: how many handshakes may be in
 * progress in all and from one source address, which connection makes
 * room when one more comes, and how many descriptors the process may
 * hold. Once accepted, a connection is a Link like any other (link.c).
 *
 * A flood and a storm are told apart by what the connections do. A
 * flood's connections are silent (or come from one address): when every
 * slot is taken, the oldest connection that has been silent for
 * SILENT_AFTER_USEC is closed to make room, and one address only ever
 * makes room among its own. A storm is many real peers reconnecting at
 * once (after a restart of this listener, say): every slot holds a
 * handshake that is under way or a connection whose ClientHello is still
 * on its way, and closing one would only send a real peer into its
 * backoff. Then nothing is closed: accepting stops until a handshake ends
 * or a connection has been silent long enough, and the next connections
 * wait in the kernel's backlog, their ClientHello with them. The
 * handshake timeout bounds how long a slot can be held. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link-address.h"
#include "link-internal.h"
#include "log.h"

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
/* How long a new connection may take to send its first bytes before it
 * counts as silent and may be closed to make room: a real peer's
 * ClientHello follows its TCP handshake within a round trip. */
#define SILENT_AFTER_USEC       (500u * 1000u)

/* The connections of one source address still in their handshake. */
typedef struct AddressSlot {
        char *address;
        GQueue idle, talking;   /* of Link, oldest first: see struct LinkListener */
} AddressSlot;

struct LinkListener {
        sd_event *event;
        int fd;
        bool tls;
        sd_event_source *source, *pause_timer, *full_timer;
        LinkTlsCredentials *creds;
        LinkConfig config;      /* numbers only: the names it accepts are in creds */
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
        bool full;              /* not accepting: no slot may be given up now */
        uint64_t full_logged;   /* when that was last logged */
        LinkReadyFunc ready;
        LinkClosedFunc closed;
        void *userdata;
};

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

static void accept_again_if_room(LinkListener *l);

void link_pending_remove(Link *link) {
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
        accept_again_if_room(l);
        /* A burst is over: hand back what its connections took. */
        if (queues_length(&l->idle, &l->talking) == 0 && l->peak >= TRIM_AFTER_PEAK) {
                l->peak = 0;
                (void) malloc_trim(0);
        }
}

/* Only now does the link cost a TLS session (tens of KiB): a connection
 * that never says anything costs its socket and its struct Link. */
int link_first_bytes(Link *link) {
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

/* ---- accepting, and making room ---------------------------------------- */

/* Log closing connections to make room once, then at most every
 * ROOM_LOG_USEC with how many since. */
static void note_closed_for_room(LinkListener *l, const char *address) {
        uint64_t now = link_now_usec();

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

/* The new connection's socket and its handshake timeout. */
static int link_watch(Link *link, int fd) {
        int r;

        r = sd_event_add_io(link->event, &link->tcp_source, fd, EPOLLIN, link_on_tcp_io, link);
        if (r < 0)
                return r;
        return link_arm_timeout(link);
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
        link->ready = l->ready;
        link->closed = l->closed;
        link->userdata = l->userdata;
        link->state = LINK_HANDSHAKE;
        link->accepted = link_now_usec();
        pending_add(l, link, address);

        r = link_watch(link, fd);
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
        if (!l->full)
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

/* Every slot is taken, and none by a connection silent for long enough
 * to be closed for room (see the note at the top): the next connection
 * must wait. *RET_SILENT_AT: when the oldest idle one turns silent, or 0. */
static bool must_wait_for_room(LinkListener *l, uint64_t now, uint64_t *ret_silent_at) {
        GList *oldest_idle = g_queue_peek_head_link(&l->idle);
        uint64_t silent_at;

        *ret_silent_at = 0;
        if (queues_length(&l->idle, &l->talking) < l->max_handshakes)
                return false;
        if (!oldest_idle)
                return true;
        silent_at = ((Link *) oldest_idle->data)->accepted + SILENT_AFTER_USEC;
        if (now >= silent_at)
                return false;
        *ret_silent_at = silent_at;
        return true;
}

static void accept_again(LinkListener *l) {
        l->full = false;
        l->full_timer = sd_event_source_disable_unref(l->full_timer);
        if (!l->pause_timer)    /* out of descriptors: that timer turns it on */
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_ON);
}

static int on_silent_enough(sd_event_source *s, uint64_t usec, void *userdata) {
        accept_again(userdata);
        return 0;
}

static void stop_accepting_while_full(LinkListener *l, uint64_t now, uint64_t silent_at) {
        l->full = true;
        (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        if (silent_at && !l->full_timer)
                (void) sd_event_add_time(l->event, &l->full_timer, CLOCK_MONOTONIC, silent_at, 0,
                                         on_silent_enough, l);
        if (l->full_logged != 0 && now - l->full_logged < ROOM_LOG_USEC)
                return;
        log_info("All %u TLS handshake slots are busy (max-handshakes): new connections wait in the backlog "
                 "until one is free", l->max_handshakes);
        l->full_logged = now;
}

static void accept_again_if_room(LinkListener *l) {
        uint64_t silent_at;

        if (l->full && !must_wait_for_room(l, link_now_usec(), &silent_at))
                accept_again(l);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        LinkListener *l = userdata;

        for (unsigned i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
                struct sockaddr_storage ss = {};
                socklen_t len = sizeof ss;
                uint64_t now = link_now_usec(), silent_at;
                int cfd;

                if (must_wait_for_room(l, now, &silent_at)) {
                        stop_accepting_while_full(l, now, silent_at);
                        break;
                }
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

/* ---- the listening socket ---------------------------------------------- */

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

/* The TLS credentials, then the socket: FD (socket activation) or one
 * bound to ADDRESS. */
static int listener_open(LinkListener *l, const LinkAddress *address, const LinkConfig *config, int fd,
                         char **ret_error) {
        int r;

        r = link_prepare(address, config, &l->creds, ret_error);
        if (r < 0)
                return r;
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

        r = listener_open(l, a, config, fd, &error);
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
        r = link_load_credentials(config, &creds, ret_error);
        if (r < 0)
                return r;
        /* Links already up keep what they were accepted with; a handshake
         * begun before this finishes with it too (it holds a reference). */
        link_tls_credentials_unref(l->creds);
        l->creds = creds;
        return 0;
}

int link_listener_recheck(LinkListener *l, Link *link, char **ret_error) {
        if (!l->tls || !link->tls_session)
                return 0;
        return link_tls_recheck_peer(link->tls_session, l->creds, ret_error);
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
        sd_event_source_disable_unref(l->full_timer);
        if (l->fd >= 0)
                close(l->fd);
        link_tls_credentials_unref(l->creds);
        sd_event_unref(l->event);
        g_free(l);
        return NULL;
}
