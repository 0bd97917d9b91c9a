/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* link-tls.h with GnuTLS: the only file of the bridge that knows it.
 *
 * Every check is made inside the handshake (the client's certificate in
 * the verify callback, the server's against the host dialled), so that a
 * peer refused gets a TLS alert and never a byte of D-Bus. */
#include "config.h"

#include <errno.h>
#include <glib.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <string.h>

#include "link-address.h"
#include "link-tls.h"
#include "macro.h"

/* TLS 1.2 at least; GnuTLS's NORMAL set otherwise. */
#define TLS_PRIORITY            "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* A TLS record holds at most 16 KiB: larger sends are cut here. */
#define SEND_CHUNK              (16u << 10)

struct LinkTlsCredentials {
        unsigned n_ref;
        gnutls_certificate_credentials_t cred;
        char **allowed_peers;   /* server: the names it accepts; NULL: any the CA signed */
};

struct LinkTls {
        gnutls_session_t session;
        LinkTlsCredentials *creds;
        bool server;
        char *host;             /* client: the host dialled, for messages */
        char *error;            /* why the verify callback refused the peer */
};

/* The CRL file must hold a CRL: one that does not parse, or an empty
 * file, would otherwise revoke nothing without a word. */
static int load_crl(gnutls_certificate_credentials_t cred, const char *crl_file, char **ret_error) {
        int n = gnutls_certificate_set_x509_crl_file(cred, crl_file, GNUTLS_X509_FMT_PEM);

        if (n > 0)
                return 0;
        *ret_error = g_strdup_printf("cannot load CRL file %s: %s", crl_file,
                                     n < 0 ? gnutls_strerror(n) : "no CRL in it");
        return -EINVAL;
}

int link_tls_credentials_load(const char *ca_file, const char *cert_file, const char *key_file,
                              const char *crl_file, char **allowed_peers, LinkTlsCredentials **ret,
                              char **ret_error) {
        gnutls_certificate_credentials_t cred = NULL;
        int n, r;

        if (gnutls_certificate_allocate_credentials(&cred) < 0)
                return -ENOMEM;
        n = gnutls_certificate_set_x509_trust_file(cred, ca_file, GNUTLS_X509_FMT_PEM);
        if (n <= 0) {
                *ret_error = g_strdup_printf("cannot load CA file %s: %s", ca_file,
                                             n < 0 ? gnutls_strerror(n) : "no certificate in it");
                gnutls_certificate_free_credentials(cred);
                return -EINVAL;
        }
        r = gnutls_certificate_set_x509_key_file(cred, cert_file, key_file, GNUTLS_X509_FMT_PEM);
        if (r < 0) {
                *ret_error = g_strdup_printf("cannot load certificate %s with key %s: %s", cert_file,
                                             key_file, gnutls_strerror(r));
                gnutls_certificate_free_credentials(cred);
                return -EINVAL;
        }
        if (crl_file) {
                r = load_crl(cred, crl_file, ret_error);
                if (r < 0) {
                        gnutls_certificate_free_credentials(cred);
                        return r;
                }
        }
        *ret = g_new0(LinkTlsCredentials, 1);
        (*ret)->n_ref = 1;
        (*ret)->cred = cred;
        (*ret)->allowed_peers = g_strdupv(allowed_peers);
        return 0;
}

LinkTlsCredentials *link_tls_credentials_ref(LinkTlsCredentials *c) {
        if (c)
                c->n_ref++;
        return c;
}

void link_tls_credentials_unref(LinkTlsCredentials *c) {
        if (!c || --c->n_ref > 0)
                return;
        gnutls_certificate_free_credentials(c->cred);
        g_strfreev(c->allowed_peers);
        g_free(c);
}

/* Like the link's own errors: the first cause is the one worth telling. */
static void tls_set_error(LinkTls *t, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void tls_set_error(LinkTls *t, const char *format, ...) {
        va_list ap;

        if (t->error)
                return;
        va_start(ap, format);
        t->error = g_strdup_vprintf(format, ap);
        va_end(ap);
}

/* The peer's first certificate, or NULL (free with gnutls_x509_crt_deinit). */
static gnutls_x509_crt_t peer_cert(gnutls_session_t session) {
        const gnutls_datum_t *list;
        unsigned n = 0;
        gnutls_x509_crt_t crt;

        list = gnutls_certificate_get_peers(session, &n);
        if (!list || n == 0 || gnutls_x509_crt_init(&crt) < 0)
                return NULL;
        if (gnutls_x509_crt_import(crt, &list[0], GNUTLS_X509_FMT_DER) < 0) {
                gnutls_x509_crt_deinit(crt);
                return NULL;
        }
        return crt;
}

char *link_tls_peer_name(LinkTls *t) {
        gnutls_x509_crt_t crt = peer_cert(t->session);
        char buf[256];
        size_t size = sizeof buf;
        char *name = NULL;

        if (!crt)
                return NULL;
        if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &size) >= 0)
                name = g_strdup_printf("CN=%s", buf);
        gnutls_x509_crt_deinit(crt);
        return name;
}

/* The CN (first) and the DNS SANs of CRT. */
static char **cert_names(gnutls_x509_crt_t crt) {
        g_autoptr(GStrvBuilder) names = g_strv_builder_new();
        char buf[256];
        size_t size = sizeof buf;

        if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &size) >= 0 &&
            strlen(buf) == size)
                g_strv_builder_add(names, buf);
        for (unsigned i = 0;; i++) {
                unsigned critical;
                int type;

                size = sizeof buf;
                type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &size, &critical);
                if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                /* A name with a NUL inside is not the name it looks like. */
                if (type == GNUTLS_SAN_DNSNAME && strlen(buf) == size)
                        g_strv_builder_add(names, buf);
        }
        return g_strv_builder_end(names);
}

char **link_tls_peer_names(LinkTls *t) {
        gnutls_x509_crt_t crt = peer_cert(t->session);
        char **names;

        if (!crt)
                return NULL;
        names = cert_names(crt);
        gnutls_x509_crt_deinit(crt);
        return names;
}

/* The peer's chain as it sent it, at most MAX_CHAIN long; the
 * number imported. */
#define MAX_CHAIN 16
static unsigned peer_chain(gnutls_session_t session, gnutls_x509_crt_t chain[static MAX_CHAIN]) {
        const gnutls_datum_t *list;
        unsigned n = 0, k = 0;

        list = gnutls_certificate_get_peers(session, &n);
        for (unsigned i = 0; list && i < MIN(n, (unsigned) MAX_CHAIN); i++) {
                if (gnutls_x509_crt_init(&chain[k]) < 0)
                        break;
                if (gnutls_x509_crt_import(chain[k], &list[i], GNUTLS_X509_FMT_DER) < 0) {
                        gnutls_x509_crt_deinit(chain[k]);
                        break;
                }
                k++;
        }
        return k;
}

/* Whether the peer's certificate has a name (its CN or one of its DNS
 * SANs) in ALLOWED. */
static bool peer_allowed(LinkTls *t, char **allowed) {
        g_auto(GStrv) names = link_tls_peer_names(t);

        for (size_t i = 0; names && names[i]; i++)
                if (g_strv_contains((const char * const *) allowed, names[i]))
                        return true;
        return false;
}

static int check_allowed_peer(LinkTls *t) {
        g_autofree char *name = NULL;

        if (peer_allowed(t, t->creds->allowed_peers))
                return 0;
        name = link_tls_peer_name(t);
        tls_set_error(t, "certificate %s is not among the allowed peers", name ?: "without a name");
        return -1;
}

int link_tls_recheck_peer(LinkTls *t, LinkTlsCredentials *creds, char **ret_error) {
        gnutls_typed_vdata_st purpose = {
                .type = GNUTLS_DT_KEY_PURPOSE_OID,
                .data = (unsigned char *) (t->server ? GNUTLS_KP_TLS_WWW_CLIENT : GNUTLS_KP_TLS_WWW_SERVER),
        };
        gnutls_x509_crt_t chain[MAX_CHAIN];
        gnutls_x509_trust_list_t trust;
        gnutls_datum_t text = {};
        unsigned n, status = 0;
        int r;

        n = peer_chain(t->session, chain);
        if (n == 0) {
                *ret_error = g_strdup("its certificate cannot be read again");
                return -EPERM;
        }
        gnutls_certificate_get_trust_list(creds->cred, &trust);
        r = gnutls_x509_trust_list_verify_crt2(trust, chain, n, &purpose, 1, 0, &status, NULL);
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(chain[i]);
        if (r < 0) {
                *ret_error = g_strdup_printf("cannot verify its certificate: %s", gnutls_strerror(r));
                return -EPERM;
        }
        if (status != 0) {
                if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >= 0) {
                        *ret_error = g_strdup_printf("its certificate is now refused: %s",
                                                     g_strchomp((char *) text.data));
                        gnutls_free(text.data);
                } else
                        *ret_error = g_strdup("its certificate is now refused");
                return -EPERM;
        }
        if (t->server && creds->allowed_peers && !peer_allowed(t, creds->allowed_peers)) {
                *ret_error = g_strdup("its certificate's names are no longer among the allowed peers");
                return -EPERM;
        }
        return 0;
}

/* Listener: a client certificate that chains to our CA, fit for TLS
 * client use, and (when a list is set) with an allowed name. */
static int verify_client(gnutls_session_t session) {
        LinkTls *t = gnutls_session_get_ptr(session);
        gnutls_typed_vdata_st purpose = {
                .type = GNUTLS_DT_KEY_PURPOSE_OID,
                .data = (unsigned char *) GNUTLS_KP_TLS_WWW_CLIENT,
        };
        gnutls_datum_t text = {};
        unsigned status = 0;
        int r;

        r = gnutls_certificate_verify_peers(session, &purpose, 1, &status);
        if (r < 0) {
                tls_set_error(t, "cannot verify the client certificate: %s", gnutls_strerror(r));
                return -1;
        }
        if (status != 0) {
                g_autofree char *name = link_tls_peer_name(t);

                if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >= 0) {
                        tls_set_error(t, "client certificate refused (%s): %s", name ?: "no name",
                                      g_strchomp((char *) text.data));
                        gnutls_free(text.data);
                } else
                        tls_set_error(t, "client certificate refused (%s)", name ?: "no name");
                return -1;
        }
        return t->creds->allowed_peers ? check_allowed_peer(t) : 0;
}

static void describe_handshake_error(LinkTls *t, int r) {
        gnutls_datum_t text = {};
        unsigned status;

        if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && !t->server) {
                status = gnutls_session_get_verify_cert_status(t->session);
                if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >= 0) {
                        tls_set_error(t, "server certificate refused for %s: %s", t->host,
                                      g_strchomp((char *) text.data));
                        gnutls_free(text.data);
                }
        } else if (IN_SET(r, GNUTLS_E_FATAL_ALERT_RECEIVED, GNUTLS_E_WARNING_ALERT_RECEIVED))
                tls_set_error(t, "TLS handshake failed: peer sent alert: %s",
                              gnutls_alert_get_name(gnutls_alert_get(t->session)));
        tls_set_error(t, "TLS handshake failed: %s", gnutls_strerror(r));
}

static void session_set_peer_checks(LinkTls *t) {
        if (t->server) {
                gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_REQUIRE);
                /* Without our CA's name in the request a client sends the
                 * certificate it has, and a wrong one is refused for what
                 * it is, instead of being withheld ("certificate
                 * required"), which hides the real mistake. */
                gnutls_certificate_send_x509_rdn_sequence(t->session, 1);
                gnutls_session_set_verify_function(t->session, verify_client);
                return;
        }
        gnutls_session_set_verify_cert(t->session, t->host, 0);
        if (!host_is_ip_literal(t->host))
                (void) gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, t->host, strlen(t->host));
}

/* A GnuTLS session for T with our priorities and credentials; a GnuTLS
 * error code. */
static int session_init(LinkTls *t, unsigned flags) {
        const char *err_pos = NULL;
        int r;

        r = gnutls_init(&t->session, flags);
        if (r < 0)
                return r;
        r = gnutls_priority_set_direct(t->session, TLS_PRIORITY, &err_pos);
        if (r < 0)
                return r;
        return gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, t->creds->cred);
}

int link_tls_new(LinkTlsCredentials *creds, int fd, bool server, const char *host, LinkTls **ret,
                 char **ret_error) {
        /* No session tickets: a link is long-lived and never resumed. */
        unsigned flags = (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL |
                         GNUTLS_NO_TICKETS;
        LinkTls *t = g_new0(LinkTls, 1);
        int r;

        t->creds = link_tls_credentials_ref(creds);
        t->server = server;
        t->host = g_strdup(host);
        r = session_init(t, flags);
        if (r < 0) {
                *ret_error = g_strdup_printf("cannot set up TLS: %s", gnutls_strerror(r));
                link_tls_free(t);
                return -EIO;
        }
        gnutls_session_set_ptr(t->session, t);
        gnutls_transport_set_int(t->session, fd);
        /* The link's own timer bounds the handshake; GnuTLS must never wait. */
        gnutls_handshake_set_timeout(t->session, GNUTLS_INDEFINITE_TIMEOUT);
        session_set_peer_checks(t);
        *ret = t;
        return 0;
}

LinkTls *link_tls_free(LinkTls *t) {
        if (!t)
                return NULL;
        if (t->session)
                gnutls_deinit(t->session);
        link_tls_credentials_unref(t->creds);
        g_free(t->host);
        g_free(t->error);
        g_free(t);
        return NULL;
}

int link_tls_handshake(LinkTls *t, char **ret_error) {
        int r;

        do
                r = gnutls_handshake(t->session);
        while (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(r));

        if (r == GNUTLS_E_AGAIN)
                return -EAGAIN;
        if (r < 0) {
                describe_handshake_error(t, r);
                *ret_error = TAKE_PTR(t->error);
                (void) gnutls_alert_send_appropriate(t->session, r);
                return -EIO;
        }
        return 0;
}

bool link_tls_wants_write(LinkTls *t) {
        return gnutls_record_get_direction(t->session);
}

/* K from a record call that failed for good; ERR is errno right after it,
 * which is the socket's error when GnuTLS failed to push or pull. */
static ssize_t io_failed(LinkTls *t, ssize_t k, int err, int *ret_errno, char **ret_error) {
        if (IN_SET(k, GNUTLS_E_PUSH_ERROR, GNUTLS_E_PULL_ERROR)) {
                *ret_errno = err;
                *ret_error = NULL;
        } else if (k == GNUTLS_E_FATAL_ALERT_RECEIVED)
                *ret_error = g_strdup_printf("peer sent alert: %s",
                                             gnutls_alert_get_name(gnutls_alert_get(t->session)));
        else
                *ret_error = g_strdup(gnutls_strerror(k));
        return -EIO;
}

ssize_t link_tls_recv(LinkTls *t, void *buf, size_t n, int *ret_errno, char **ret_error) {
        ssize_t k = gnutls_record_recv(t->session, buf, n);
        int err = errno;

        if (k >= 0)
                return k;       /* 0: close_notify */
        /* A peer that closes without close_notify ends the stream just the
         * same: D-Bus frames its own messages, so nothing is misread. */
        if (k == GNUTLS_E_PREMATURE_TERMINATION)
                return 0;
        if (IN_SET(k, GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED))
                return -EAGAIN;
        /* A warning alert or the like: a record was used up, and the next
         * may already sit inside GnuTLS where epoll cannot see it. */
        if (!gnutls_error_is_fatal(k))
                return -EINTR;
        return io_failed(t, k, err, ret_errno, ret_error);
}

/* After AGAIN GnuTLS has the record cut already: it is finished with
 * NULL, 0, never sent again from BUF. */
ssize_t link_tls_send(LinkTls *t, const void *buf, size_t n, bool pending, int *ret_errno, char **ret_error) {
        ssize_t k;
        int err;

        k = pending ? gnutls_record_send(t->session, NULL, 0)
                    : gnutls_record_send(t->session, buf, MIN(n, (size_t) SEND_CHUNK));
        err = errno;
        if (k >= 0)
                return k;
        if (IN_SET(k, GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED))
                return -EAGAIN;
        return io_failed(t, k, err, ret_errno, ret_error);
}

int link_tls_bye(LinkTls *t) {
        int r = gnutls_bye(t->session, GNUTLS_SHUT_WR);

        return IN_SET(r, GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED) ? -EAGAIN : 0;
}
