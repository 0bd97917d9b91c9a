/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The TLS under a link, behind an interface small enough that the TLS
 * library is one file (link-tls-gnutls.c) and the rest of the link never
 * sees it. The link owns the socket and the event loop: a LinkTls only
 * runs TLS over the socket it is given, never blocks, and answers in the
 * link's terms (bytes, -EAGAIN, a message naming what went wrong). */

typedef struct LinkTlsCredentials LinkTlsCredentials;
typedef struct LinkTls LinkTls;

/* The CA, our certificate and our key, from PEM files, and the CA's
 * revocation list when CRL_FILE is not NULL (a file that holds no CRL is
 * an error). The caller has already checked that the first three are
 * named and that the key is private to its owner. ALLOWED_PEERS (copied;
 * a listener's only) are the certificate names (CN or DNS SAN) it
 * accepts, NULL for any the CA signed: they belong with the CA and CRL,
 * because a reload replaces all of them at once. Shared, by reference, by
 * a listener and the links it accepted, which may outlive it. */
int link_tls_credentials_load(const char *ca_file, const char *cert_file, const char *key_file,
                              const char *crl_file, char **allowed_peers, LinkTlsCredentials **ret,
                              char **ret_error);
LinkTlsCredentials *link_tls_credentials_ref(LinkTlsCredentials *c);
void link_tls_credentials_unref(LinkTlsCredentials *c);

/* A session over the connected socket FD (which stays the caller's).
 * Server: the client must present a certificate that chains to the CA,
 * fit for TLS client use and, when CREDS have allowed peers, named in
 * them. Client: the server's certificate must chain to the CA and name
 * HOST (a DNS name or an IP address SAN). */
int link_tls_new(LinkTlsCredentials *creds, int fd, bool server, const char *host, LinkTls **ret,
                 char **ret_error);
LinkTls *link_tls_free(LinkTls *t);

/* Move the handshake on: 0 once it is over, -EAGAIN while it waits for
 * the socket (link_tls_wants_write() says which way), or -EIO with
 * *RET_ERROR saying why it failed; the peer has then been sent an alert
 * that tells it why, as far as TLS can. */
int link_tls_handshake(LinkTls *t, char **ret_error);
bool link_tls_wants_write(LinkTls *t);
/* "CN=site1" of the peer's certificate, or NULL. */
char *link_tls_peer_name(LinkTls *t);
/* The names of the peer's certificate: its CN first (when it has one),
 * then its DNS subject alt names; NULL without a certificate. */
char **link_tls_peer_names(LinkTls *t);
/* Whether the peer's certificate, accepted in the handshake, would still
 * be accepted with CREDS (their CA, CRL and allowed peers): 0, or -EPERM with
 * *RET_ERROR saying why not. */
int link_tls_recheck_peer(LinkTls *t, LinkTlsCredentials *creds, char **ret_error);

/* Receive: bytes, 0 at the end of the stream, -EAGAIN when nothing is
 * there now, -EINTR to call again at once (a record was used up and the
 * next may already be decrypted, where epoll cannot see it), or -EIO when
 * the link must end: *RET_ERROR says how ("peer sent alert: …"), or is
 * NULL when the socket under TLS failed, with its errno in *RET_ERRNO. */
ssize_t link_tls_recv(LinkTls *t, void *buf, size_t n, int *ret_errno, char **ret_error);
/* Send: bytes taken (perhaps fewer than N), -EAGAIN, or -EIO as for
 * link_tls_recv. PENDING: the previous call returned -EAGAIN, and some
 * libraries must be called again for the same bytes (GnuTLS has the
 * record already cut and ignores BUF then). */
ssize_t link_tls_send(LinkTls *t, const void *buf, size_t n, bool pending, int *ret_errno, char **ret_error);
/* close_notify, so the peer knows the stream ended here and was not cut:
 * 0 once sent (or past hope), -EAGAIN while it waits for the socket. */
int link_tls_bye(LinkTls *t);
