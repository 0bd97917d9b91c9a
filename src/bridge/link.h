/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

/* A link between two bridges: a TCP connection, mutually authenticated
 * with X.509 certificates and encrypted with TLS (or, on loopback and only
 * when asked, plain), whose plaintext side is handed to sd-bus as one end
 * of a socketpair. The link pumps bytes between the two, with explicit
 * limits, and reports when either side ends. Everything runs on the
 * sd_event given; nothing blocks except the name lookup in link_connect. */

typedef struct LinkConfig {
        char *ca_file;          /* PEM: the CA that signs peers' certificates */
        char *cert_file;        /* PEM: our certificate */
        char *key_file;         /* PEM: our key; refused when readable by group or others */
        char *crl_file;         /* PEM: the CA's revocation list, or NULL */
        char **allowed_peers;   /* listener only: accepted certificate names (CN or DNS SAN); NULL: any the CA signed */
        bool insecure_plaintext;/* plain TCP, only to or on a loopback address */
        /* Per direction, 0: 8 MiB. Toward the peer: when this much waits
         * and TCP takes nothing more, the peer stopped reading and the link
         * is dropped (bytes in the kernel's socket buffers come on top).
         * Toward sd-bus: reading from TCP pauses until sd-bus catches up. */
        size_t max_queued_bytes;
        /* Listener only: the largest D-Bus message a peer may send, whole.
         * A larger one ends the link as soon as its header arrives ("peer
         * sent a message of N bytes, more than the limit of M"), and so does
         * a stream that is not D-Bus. 0: not checked (a plain byte pipe;
         * sd-bus then takes up to 128 MiB). */
        uint64_t max_message_bytes;
        unsigned handshake_timeout_sec; /* TCP connect + TLS handshake, 0: 10 s */
        /* Listener only: connections accepted and not yet authenticated,
         * in all (0: 64) and from one source address (0: 16). A flood of
         * connections that say nothing cannot keep a known peer out: at the
         * first cap the oldest connection that has sent nothing yet (else
         * the oldest) is closed to make room, and past the second the new
         * connection is closed at once. */
        unsigned max_handshakes;
        unsigned max_handshakes_per_address;
} LinkConfig;

/* A parsed "tls:host=H,port=P" or "tcp:host=H,port=P" address. */
typedef struct LinkAddress {
        bool tls;
        char *host;
        unsigned port;          /* 1-65535 from the parser; a listener also takes 0 (any free port) */
} LinkAddress;

/* On failure *RET_ERROR (when not NULL) is a message naming the bad part,
 * to be freed with free()/g_free(). */
int link_address_parse(const char *s, LinkAddress *ret, char **ret_error);
/* The addresses of a list "A;B;…" (as upstream= takes them), blanks
 * around each dropped; NULL-terminated, never NULL. */
char **link_address_list_split(const char *list);
void link_address_clear(LinkAddress *a);

/* Whether ADDRESS may be used with CONFIG: the plaintext rule (tcp: only
 * with insecure_plaintext and only on loopback) and, for tls:, that the
 * certificate files load and the key is private to its owner. Returns a
 * negative errno and a message (free it) saying what is wrong.
 * link_connect and link_listener_new check the same and log the message;
 * call this at start-up to fail early with the message in hand. */
int link_check(const LinkAddress *address, const LinkConfig *config, char **ret_error);

typedef struct Link Link;

/* Called once the link is up: FD is the plaintext end of a socketpair (the
 * callee owns it; AF_UNIX/SOCK_STREAM, non-blocking, close-on-exec); PEER
 * describes the remote side for logs ("192.0.2.1:5555 CN=site1").
 * Importer side only: called with FD < 0 and ERROR set when connecting,
 * the handshake or the server's certificate failed; the link frees itself
 * after the callback returns (CLOSED is not called).
 * Listener side: a peer that fails to connect or authenticate is logged
 * here (log_warning, with its address) and dropped; READY is not called.
 * READY may call link_free(). */
typedef void (*LinkReadyFunc)(Link *link, int fd, const char *peer, const char *error, void *userdata);
/* Called once when an established link ends, with the reason ("connection
 * closed by peer", "connection closed locally", "TLS error: …", "peer
 * stopped reading: N bytes queued", …). The link is freed after the
 * callback returns: do not call link_free() on it. */
typedef void (*LinkClosedFunc)(Link *link, const char *reason, void *userdata);

/* Importer side: connect to ADDRESS, verify the server's certificate
 * against the CA and the host name dialled. Fails at once (negative errno,
 * message logged) when link_check() does; every later failure comes
 * through READY, never from inside this call. */
int link_connect(sd_event *event, const LinkAddress *address, const LinkConfig *config,
                 LinkReadyFunc ready, LinkClosedFunc closed, void *userdata, Link **ret);

/* Listener side. */
typedef struct LinkListener LinkListener;
/* Listen on ADDRESS, or on an already listening socket FD (socket
 * activation; the listener takes it over) when FD >= 0. READY is called
 * for each authenticated peer, with USERDATA; CLOSED gets whatever
 * link_set_userdata() set since. With FD >= 0, ADDRESS may be NULL or
 * unparsed (host NULL): the link is then TLS; a parsed "tcp:" ADDRESS with
 * FD >= 0 selects plain TCP, subject to the loopback rule checked on the
 * socket's own address. */
int link_listener_new(sd_event *event, const LinkAddress *address, int fd, const LinkConfig *config,
                      LinkReadyFunc ready, LinkClosedFunc closed, void *userdata, LinkListener **ret);
/* Stops listening and drops handshakes in progress; links already handed
 * out through READY live on. */
LinkListener *link_listener_free(LinkListener *l);
/* Read the CA, certificate and key of CONFIG again, for the connections
 * accepted from now on. On failure the listener keeps what it had, and
 * *RET_ERROR (free it) says why. */
int link_listener_reload(LinkListener *l, const LinkConfig *config, char **ret_error);
/* Whether LINK, accepted by L, would still be accepted with what L has
 * now (after link_listener_reload: the CA and CRL read again): 0, or a
 * negative errno and *RET_ERROR (free it) saying why not. */
int link_listener_recheck(LinkListener *l, Link *link, char **ret_error);
/* The local port listened on (useful with port 0), or a negative errno. */
int link_listener_get_port(LinkListener *l);

/* The names of the peer's certificate (CN first, then DNS subject alt
 * names; free with g_strfreev), or NULL on a plaintext link. */
char **link_get_peer_names(Link *link);

/* The peer's address and port ("192.0.2.1:5555"), or NULL before the
 * link knows it. */
const char *link_get_peer_address(Link *link);

/* Bytes waiting in the link to be sent to the peer. */
size_t link_get_queued_bytes(Link *link);

/* When the peer last sent bytes (CLOCK_MONOTONIC µs; 0: never), so that a
 * link busy carrying a large message is not taken for a dead one. */
uint64_t link_get_last_receive(Link *link);

/* From CLOSED: whether the link ended because the peer broke one of its
 * limits (stopped reading, sent too large a message) or sent something
 * that is not D-Bus — worth a warning, where other ends are routine. */
bool link_peer_at_fault(Link *link);

/* Close a link at once (both sides); CLOSED is not called. */
Link *link_free(Link *link);
void link_set_userdata(Link *link, void *userdata);
