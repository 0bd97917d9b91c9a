/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A link (link.h) from set-up to end: the checks a configuration must
 * pass, a connected TCP socket through its TLS handshake (link-tls.h),
 * the socketpair handed to sd-bus once the peer is known, and the report
 * of a failure. Beside it: the pump of a link that is up (link-stream.c),
 * dialing (link-dial.c) and listening (link-listen.c); link-internal.h
 * says which file offers what to the others.
 *
 * D-Bus has no secure remote transport of its own (NOTES-sd-bus.md, "TCP
 * and authentication"), so every check happens here, before sd-bus sees a
 * byte: a peer that fails is dropped with no D-Bus traffic at all. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "link-address.h"
#include "link-internal.h"
#include "log.h"

#define DEFAULT_MAX_QUEUED      (8u << 20)
#define DEFAULT_HANDSHAKE_SEC   10u

/* ---- configuration checks and credentials ------------------------------- */

/* The key must be private to its owner: a key others can read is a key
 * others may already have. Checked before the TLS library reads it. */
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

int link_load_credentials(const LinkConfig *config, LinkTlsCredentials **ret, char **ret_error) {
        int r;

        if (!config->ca_file || !config->cert_file || !config->key_file) {
                *ret_error = g_strdup("tls: needs a CA file, a certificate and a key (tls-ca, tls-cert, tls-key)");
                return -EINVAL;
        }
        r = check_key_mode(config->key_file, ret_error);
        if (r < 0)
                return r;
        return link_tls_credentials_load(config->ca_file, config->cert_file, config->key_file, config->crl_file,
                                         config->allowed_peers, ret, ret_error);
}

int link_prepare(const LinkAddress *a, const LinkConfig *config, LinkTlsCredentials **ret_creds, char **ret_error) {
        LinkTlsCredentials *creds = NULL;
        int r;

        if (a && !a->tls)
                return link_address_check_plaintext(a, config, ret_error);
        r = link_load_credentials(config, &creds, ret_error);
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

        r = link_prepare(address, config, NULL, &error);
        if (ret_error)
                *ret_error = error;
        else
                g_free(error);
        return r;
}

/* ---- a link's life ------------------------------------------------------ */

Link *link_new(sd_event *event, const LinkConfig *config, bool server, bool tls) {
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

void link_disconnect(Link *link) {
        link->state = LINK_DONE;
        link->tcp_source = sd_event_source_disable_unref(link->tcp_source);
        link->local_source = sd_event_source_disable_unref(link->local_source);
        link->timer = sd_event_source_disable_unref(link->timer);
        if (link->tcp_fd >= 0)
                close(link->tcp_fd);
        if (link->local_fd >= 0)
                close(link->local_fd);
        link->tcp_fd = link->local_fd = -1;
        link_pending_remove(link);
}

void link_destroy(Link *link) {
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

void link_set_error(Link *link, const char *format, ...) {
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
void link_setup_failed(Link *link) {
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

int link_arm_timeout(Link *link) {
        return sd_event_add_time_relative(link->event, &link->timer, CLOCK_MONOTONIC,
                                          (uint64_t) link->handshake_sec * 1000000u, 0, on_handshake_timeout, link);
}

uint64_t link_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- handshake and start ------------------------------------------------ */

/* Handshake over: the socketpair toward sd-bus, one end handed out. */
static void link_start(Link *link) {
        g_autofree char *name = link->tls ? link_tls_peer_name(link->tls_session) : NULL;
        int fd;

        link->timer = sd_event_source_disable_unref(link->timer);
        link->peer = g_strdup_printf("%s %s", link->peer_addr, name ?: (link->tls ? "(no name)" : "(plaintext)"));
        if (link_stream_open(link, &fd) < 0) {
                link_setup_failed(link);
                return;
        }
        link_pending_remove(link);
        link->state = LINK_UP;

        link->in_callback = true;
        link->ready(link, fd, link->peer, NULL, link->userdata);
        link->in_callback = false;
        if (link->free_requested) {
                link_destroy(link);
                return;
        }
        link_stream_begin(link);
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

void link_handshake(Link *link) {
        g_autofree char *error = NULL;
        int r;

        r = link_tls_handshake(link->tls_session, &error);
        if (r == -EAGAIN) {
                uint32_t events = link_tls_wants_write(link->tls_session) ? EPOLLOUT : EPOLLIN;

                r = link_set_io_events(link->tcp_source, events);
                if (r < 0) {
                        link_set_error(link, "cannot watch the connection: %s", strerror(-r));
                        link_setup_failed(link);
                }
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

int link_new_session(Link *link) {
        g_autofree char *error = NULL;
        int r;

        r = link_tls_new(link->creds, link->tcp_fd, link->server, link->host, &link->tls_session, &error);
        if (r < 0)
                link_set_error(link, "%s", error);
        return r;
}

void link_connected(Link *link) {
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

int link_on_tcp_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
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
                link_stream_tcp_event(link, revents);
                break;
        case LINK_DONE:
                break;
        }
        return 0;
}

bool link_peer_at_fault(Link *link) {
        return link && link->peer_at_fault;
}

uint64_t link_get_last_receive(Link *link) {
        return link ? link->last_receive : 0;
}

const char *link_get_peer_address(Link *link) {
        return link ? link->peer_addr : NULL;
}

size_t link_get_queued_bytes(Link *link) {
        return link ? link->to_tcp.len : 0;
}

char **link_get_peer_names(Link *link) {
        return link && link->tls_session ? link_tls_peer_names(link->tls_session) : NULL;
}
