/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

/* A link between two bridges: a TCP connection, mutually authenticated
 * with X.509 certificates and encrypted with TLS (or, on loopback and only
 * when asked, plain), whose plaintext side is handed to sd-bus as one end
 * of a socketpair. The link pumps bytes between the two, with explicit
 * limits, and reports when either side ends. */

typedef struct LinkConfig {
        char *ca_file;          /* PEM: the CA that signs peers' certificates */
        char *cert_file;        /* PEM: our certificate */
        char *key_file;         /* PEM: our key; refused when readable by group or others */
        char **allowed_peers;   /* listener only: accepted certificate names (CN or DNS SAN); NULL: any the CA signed */
        bool insecure_plaintext;/* plain TCP, only to or on a loopback address */
        size_t max_queued_bytes;/* per direction; a peer that does not read past this is dropped */
        unsigned handshake_timeout_sec;
} LinkConfig;

/* A parsed "tls:host=H,port=P" or "tcp:host=H,port=P" address. */
typedef struct LinkAddress {
        bool tls;
        char *host;
        unsigned port;
} LinkAddress;

int link_address_parse(const char *s, LinkAddress *ret, char **ret_error);
void link_address_clear(LinkAddress *a);

typedef struct Link Link;

/* Called once the link is up: FD is the plaintext end of a socketpair (the
 * callee owns it); PEER describes the remote side for logs ("192.0.2.1:5555
 * CN=site1"). Called with FD < 0 and ERROR set when setting up failed. */
typedef void (*LinkReadyFunc)(Link *link, int fd, const char *peer, const char *error, void *userdata);
/* Called once when an established link ends, with the reason. The link is
 * freed after the callback returns. */
typedef void (*LinkClosedFunc)(Link *link, const char *reason, void *userdata);

/* Importer side: connect to ADDRESS, verify the server's certificate
 * against the CA and the host name dialled. */
int link_connect(sd_event *event, const LinkAddress *address, const LinkConfig *config,
                 LinkReadyFunc ready, LinkClosedFunc closed, void *userdata, Link **ret);

/* Listener side. */
typedef struct LinkListener LinkListener;
/* Listen on ADDRESS, or on an already listening socket FD (socket
 * activation) when FD >= 0. READY is called for each authenticated peer. */
int link_listener_new(sd_event *event, const LinkAddress *address, int fd, const LinkConfig *config,
                      LinkReadyFunc ready, LinkClosedFunc closed, void *userdata, LinkListener **ret);
LinkListener *link_listener_free(LinkListener *l);

/* Close a link at once (both sides); CLOSED is not called. */
Link *link_free(Link *link);
void link_set_userdata(Link *link, void *userdata);
