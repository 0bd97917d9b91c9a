/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Private to the link's files: the Link itself, and what each of them
 * offers the others.
 *
 *   link.c          a link's life: checks, set-up, handshake, start, end
 *   link-stream.c   the pump between TCP (or TLS) and the socketpair
 *   link-dial.c     the importer's side: resolve, connect, one address
 *                   after the other
 *   link-listen.c   the listener's side: accept, the caps on handshakes
 *                   in progress, socket activation
 *   link-address.c  addresses and the loopback rule of plain TCP
 *   link-tls.h      TLS, in one file per library (link-tls-gnutls.c) */

#include <glib.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "buffer.h"
#include "frame-limit.h"
#include "link-tls.h"
#include "link.h"
#include "macro.h"

static inline void fd_closep(int *fd) {
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
        struct AddressSlot *slot; /* with it: the peer's address */
        GList all_node, slot_node; /* in the listener's queues and the slot's */
        bool talking;           /* the peer has sent something: TLS state exists */
        uint64_t accepted;      /* CLOCK_MONOTONIC µs it was accepted at */
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

/* link.c */
uint64_t link_now_usec(void);
/* What link_check promises; RET_CREDS (may be NULL) gets the loaded
 * credentials of a TLS address. A NULL address means TLS. */
int link_prepare(const LinkAddress *a, const LinkConfig *config, LinkTlsCredentials **ret_creds, char **ret_error);
int link_load_credentials(const LinkConfig *config, LinkTlsCredentials **ret, char **ret_error);
Link *link_new(sd_event *event, const LinkConfig *config, bool server, bool tls);
/* Close everything that talks to the outside; the struct stays. */
void link_disconnect(Link *link);
void link_destroy(Link *link);
/* Why setting up failed: the first cause is kept, later ones dropped. */
void link_set_error(Link *link, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Setting up failed (reason in link->error): see link.c. */
void link_setup_failed(Link *link);
/* The bound on connect and handshake together. */
int link_arm_timeout(Link *link);
/* The TLS session of a link in its handshake. */
int link_new_session(Link *link);
/* TCP is connected (either side): TLS handshake, or straight to pumping. */
void link_connected(Link *link);
void link_handshake(Link *link);
/* The TCP socket's handler, whatever the link's state. */
int link_on_tcp_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* link-stream.c */
/* Switch S to watch EVENTS; none switches it off. */
int link_set_io_events(sd_event_source *s, uint32_t events);
/* The socketpair toward sd-bus: our end watched, the other in *RET_FD. */
int link_stream_open(Link *link, int *ret_fd);
/* Pump from both sides, whatever epoll said so far. */
void link_stream_begin(Link *link);
/* TCP is ready for what the link's events asked (REVENTS). */
void link_stream_tcp_event(Link *link, uint32_t revents);

/* link-dial.c */
/* The non-blocking connect finished, well or not. */
void link_connect_done(Link *link);

/* link-listen.c */
/* Listener side: the peer's first bytes are here (0), it has sent none
 * yet (-EAGAIN), or it is gone and so is the link (other errors). */
int link_first_bytes(Link *link);
/* The link's handshake is over, or the link: off the listener's queues. */
void link_pending_remove(Link *link);
