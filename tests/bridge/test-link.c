/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The bridge's transport (src/bridge/link.c) on loopback, without any bus:
 * a listener and importers in one process on one sd_event, certificates
 * made at test time by tests/common/make-test-certs.sh. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "link.h"

static char *certs;     /* the directory the script filled */

/* One end of a link as the relay would see it. */
typedef struct Side {
        Link *link;
        int fd;                 /* plaintext end from READY, -1 before */
        char *peer;
        char *error;            /* READY with fd < 0 */
        char *closed;           /* CLOSED's reason */
} Side;

typedef struct Env {
        sd_event *event;
        LinkListener *listener;
        int port;
        GPtrArray *accepted;    /* Side*: one per READY on the listener */
        LinkConfig sc;          /* the listener's: certificate "localhost" */
        LinkConfig cc;          /* the importer's: certificate "site1" */
} Env;

/* Run the loop until COND, failing after 20 s. */
#define WAIT_FOR(env, cond)                                                             \
        do {                                                                            \
                gint64 _deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;        \
                while (!(cond)) {                                                       \
                        g_assert_cmpint(g_get_monotonic_time(), <, _deadline);          \
                        g_assert_cmpint(sd_event_run((env)->event, 10000), >=, 0);      \
                }                                                                       \
        } while (0)

static char *cert_path(const char *name) {
        return g_build_filename(certs, name, NULL);
}

static LinkConfig config_for(const char *name) {
        return (LinkConfig) {
                .ca_file = cert_path("ca.pem"),
                .cert_file = g_strdup_printf("%s/%s.pem", certs, name),
                .key_file = g_strdup_printf("%s/%s.key", certs, name),
        };
}

static void config_clear(LinkConfig *c) {
        g_free(c->ca_file);
        g_free(c->cert_file);
        g_free(c->key_file);
        g_strfreev(c->allowed_peers);
}

static Side *side_new(void) {
        Side *s = g_new0(Side, 1);

        s->fd = -1;
        return s;
}

static void side_free(Side *s) {
        link_free(s->link);
        if (s->fd >= 0)
                close(s->fd);
        g_free(s->peer);
        g_free(s->error);
        g_free(s->closed);
        g_free(s);
}

static void on_closed(Link *link, const char *reason, void *userdata) {
        Side *s = userdata;

        g_assert_null(s->closed);       /* once */
        g_assert_nonnull(reason);
        s->closed = g_strdup(reason);
        s->link = NULL;
}

static void on_client_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Side *s = userdata;

        g_assert_true(s->fd < 0 && !s->error);
        if (fd < 0) {
                g_assert_nonnull(error);
                s->error = g_strdup(error);
                s->link = NULL;
                return;
        }
        s->fd = fd;
        s->peer = g_strdup(peer);
}

static void on_listener_ready(Link *link, int fd, const char *peer, const char *error, void *userdata) {
        Env *env = userdata;
        Side *s = side_new();

        g_assert_cmpint(fd, >=, 0);     /* refusals are logged, not reported */
        s->link = link;
        s->fd = fd;
        s->peer = g_strdup(peer);
        link_set_userdata(link, s);
        g_ptr_array_add(env->accepted, s);
}

static void env_setup(Env *env, gconstpointer data) {
        g_assert_cmpint(sd_event_new(&env->event), >=, 0);
        env->accepted = g_ptr_array_new_with_free_func((GDestroyNotify) side_free);
        env->sc = config_for("server");
        env->cc = config_for("site1");
}

static void env_teardown(Env *env, gconstpointer data) {
        g_ptr_array_unref(env->accepted);
        link_listener_free(env->listener);
        /* Let deferred failure reports of freed links run: none may fire. */
        for (int i = 0; i < 5; i++)
                (void) sd_event_run(env->event, 0);
        sd_event_unref(env->event);
        config_clear(&env->sc);
        config_clear(&env->cc);
}

static void env_listen_on(Env *env, bool tls, const char *host, const LinkConfig *config) {
        LinkAddress a = { .tls = tls, .host = (char *) host, .port = 0 };

        g_assert_cmpint(link_listener_new(env->event, &a, -1, config, on_listener_ready, on_closed, env,
                                          &env->listener), ==, 0);
        env->port = link_listener_get_port(env->listener);
        g_assert_cmpint(env->port, >, 0);
}

static void env_listen(Env *env, const LinkConfig *config) {
        env_listen_on(env, true, "127.0.0.1", config);
}

static Side *env_connect(Env *env, bool tls, const char *host, const LinkConfig *config) {
        LinkAddress a = { .tls = tls, .host = (char *) host, .port = env->port };
        Side *s = side_new();

        g_assert_cmpint(link_connect(env->event, &a, config, on_client_ready, on_closed, s, &s->link), ==, 0);
        return s;
}

/* link_listener_new's result; a listener made is freed at once. */
static int try_listen(Env *env, const LinkAddress *a, const LinkConfig *config) {
        LinkListener *l = NULL;
        int r = link_listener_new(env->event, a, -1, config, on_listener_ready, on_closed, env, &l);

        link_listener_free(l);
        return r;
}

static int try_connect(Env *env, const LinkAddress *a, const LinkConfig *config) {
        Link *link = NULL;
        int r = link_connect(env->event, a, config, on_client_ready, on_closed, NULL, &link);

        link_free(link);
        return r;
}

/* Connected on both sides. */
static Side *env_connect_ok(Env *env, const char *host, const LinkConfig *config, Side **ret_server) {
        guint before = env->accepted->len;
        Side *c = env_connect(env, true, host, config);

        WAIT_FOR(env, c->error || (c->fd >= 0 && env->accepted->len > before));
        g_assert_null(c->error);
        *ret_server = env->accepted->pdata[before];
        return c;
}

/* The importer learns of a refusal one way or the other: in TLS 1.2 its
 * handshake fails; in TLS 1.3 the server judges the client's certificate
 * after the client has finished, so the link comes up and is closed by
 * the server's alert. Either way the listener never hands out an fd. */
static void assert_refused(Env *env, Side *c) {
        guint before = env->accepted->len;

        WAIT_FOR(env, c->error || c->closed);
        g_assert_cmpuint(env->accepted->len, ==, before);
        g_test_message("refused: %s", c->error ?: c->closed);
}

/* ---- byte streams through a link ---------------------------------------- */

typedef struct Stream {
        int in, out;            /* written into IN, read back from OUT */
        uint8_t *data;
        size_t n, written, read;
} Stream;

static void stream_init(Stream *s, int in, int out, size_t n) {
        *s = (Stream) { .in = in, .out = out, .n = n, .data = g_malloc(n) };
        for (size_t i = 0; i < n; i++)
                s->data[i] = g_random_int() & 0xff;
}

static bool stream_step(Stream *s) {
        uint8_t buf[65536];
        ssize_t k;

        if (s->written < s->n) {
                k = send(s->in, s->data + s->written, MIN(s->n - s->written, (size_t) 262144),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k > 0)
                        s->written += k;
                else
                        g_assert_true(k < 0 && errno == EAGAIN);
        }
        k = recv(s->out, buf, sizeof buf, MSG_DONTWAIT);
        if (k > 0) {
                g_assert_cmpuint(s->read + k, <=, s->n);
                g_assert_cmpmem(buf, k, s->data + s->read, k);
                s->read += k;
        } else
                g_assert_true(k < 0 && errno == EAGAIN);
        return s->read == s->n;
}

/* N random bytes each way at once, checked byte for byte. */
static void transfer_both_ways(Env *env, Side *a, Side *b, size_t n) {
        Stream ab, ba;
        gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
        bool done = false;

        stream_init(&ab, a->fd, b->fd, n);
        stream_init(&ba, b->fd, a->fd, n);
        while (!done) {
                g_assert_cmpint(g_get_monotonic_time(), <, deadline);
                g_assert_null(a->closed);
                g_assert_null(b->closed);
                done = stream_step(&ab);
                done = stream_step(&ba) && done;
                g_assert_cmpint(sd_event_run(env->event, 1000), >=, 0);
        }
        g_free(ab.data);
        g_free(ba.data);
}

/* What the fd reads until it ends: the bytes, and that it did end. */
static GByteArray *read_until_eof(Env *env, int fd) {
        GByteArray *got = g_byte_array_new();
        uint8_t buf[4096];
        ssize_t k = -1;

        WAIT_FOR(env, (k = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) == 0 ||
                      (k > 0 && (g_byte_array_append(got, buf, k), false)) ||
                      (k < 0 && errno != EAGAIN));
        g_assert_cmpint(k, ==, 0);
        return got;
}

/* ---- tests -------------------------------------------------------------- */

static void test_address_parse(void) {
        static const struct {
                const char *s;
                const char *error;      /* NULL: valid */
        } cases[] = {
                { "tls:host=192.0.2.1,port=7411", NULL },
                { "tcp:port=1,host=localhost", NULL },
                { "tls:host=::1,port=65535", NULL },
                { "tls:host=central.example,port=7411", NULL },
                { "unix:path=/x", "expected tls: or tcp:" },
                { "tls:host=h", "missing port=" },
                { "tls:port=7411", "missing host=" },
                { "tls:host=h,port=0", "bad port '0'" },
                { "tls:host=h,port=65536", "bad port '65536'" },
                { "tls:host=h,port=12x", "bad port '12x'" },
                { "tls:host=h,port=-1", "bad port '-1'" },
                { "tls:host=,port=1", "empty host=" },
                { "tls:host=h,port=1,host=g", "host= given twice" },
                { "tls:host=h,port=1,port=2", "port= given twice" },
                { "tls:host=h,port=1,family=ipv4", "unknown key 'family'" },
                { "tls:host=h,port", "'port' is not key=value" },
                { "", "expected tls: or tcp:" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *error = NULL;
                LinkAddress a = {};
                int r = link_address_parse(cases[i].s, &a, &error);

                if (!cases[i].error) {
                        g_assert_cmpint(r, ==, 0);
                        g_assert_nonnull(a.host);
                        link_address_clear(&a);
                        continue;
                }
                g_assert_cmpint(r, ==, -EINVAL);
                g_assert_nonnull(error);
                if (!strstr(error, cases[i].error))
                        g_error("'%s': error '%s' lacks '%s'", cases[i].s, error, cases[i].error);
        }

        {
                LinkAddress a = {};

                g_assert_cmpint(link_address_parse("tcp:port=7411,host=127.0.0.1", &a, NULL), ==, 0);
                g_assert_false(a.tls);
                g_assert_cmpstr(a.host, ==, "127.0.0.1");
                g_assert_cmpuint(a.port, ==, 7411);
                link_address_clear(&a);
        }
}

static void test_tls_roundtrip(Env *env, gconstpointer data) {
        Side *c, *s;

        env_listen(env, &env->sc);
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        g_assert_nonnull(strstr(c->peer, "CN=localhost"));
        g_assert_nonnull(strstr(s->peer, "CN=site1"));
        g_assert_true(g_str_has_prefix(s->peer, "127.0.0.1:"));

        transfer_both_ways(env, c, s, 5u << 20);

        /* A second link on the same listener is independent. */
        {
                Side *s2, *c2 = env_connect_ok(env, "127.0.0.1", &env->cc, &s2);

                transfer_both_ways(env, c2, s2, 100000);
                side_free(c2);
                WAIT_FOR(env, s2->closed);
        }
        transfer_both_ways(env, c, s, 1000);
        side_free(c);
}

static void test_other_ca_refused(Env *env, gconstpointer data) {
        LinkConfig ic = config_for("intruder");
        Side *c;

        /* Even with its name listed: the CA is checked first. */
        env->sc.allowed_peers = g_strsplit("site1", ",", -1);
        env_listen(env, &env->sc);
        c = env_connect(env, true, "127.0.0.1", &ic);
        assert_refused(env, c);
        side_free(c);
        config_clear(&ic);
}

/* A TLS client with no certificate at all, which link_connect cannot be:
 * plain GnuTLS, blocking, in a thread while the loop runs the listener. */
typedef struct RawClient {
        int port;
        int result;             /* GnuTLS code of the first failure, 0 at EOF, 1 when it was served */
        gint done;
} RawClient;

static gpointer raw_client_thread(gpointer data) {
        RawClient *rc = data;
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(rc->port) };
        struct timeval tv = { .tv_sec = 5 };
        g_autofree char *ca = cert_path("ca.pem");
        gnutls_certificate_credentials_t cred;
        gnutls_session_t session;
        char buf[64];
        int fd, r;

        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), ==, 0);
        g_assert_cmpint(connect(fd, (struct sockaddr *) &sin, sizeof sin), ==, 0);
        g_assert_cmpint(gnutls_certificate_allocate_credentials(&cred), ==, 0);
        g_assert_cmpint(gnutls_certificate_set_x509_trust_file(cred, ca, GNUTLS_X509_FMT_PEM), ==, 1);
        g_assert_cmpint(gnutls_init(&session, GNUTLS_CLIENT), ==, 0);
        g_assert_cmpint(gnutls_set_default_priority(session), ==, 0);
        g_assert_cmpint(gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred), ==, 0);
        gnutls_session_set_verify_cert(session, "localhost", 0);
        gnutls_transport_set_int(session, fd);

        do
                r = gnutls_handshake(session);
        while (r < 0 && !gnutls_error_is_fatal(r) && r != GNUTLS_E_AGAIN);
        if (r >= 0) {
                /* TLS 1.3: the refusal comes after our Finished. */
                (void) gnutls_record_send(session, "AUTH\r\n", 6);
                r = gnutls_record_recv(session, buf, sizeof buf);
                if (r > 0)
                        r = 1;
        }
        rc->result = r;
        gnutls_deinit(session);
        gnutls_certificate_free_credentials(cred);
        close(fd);
        g_atomic_int_set(&rc->done, 1);
        return NULL;
}

static void test_no_client_cert_refused(Env *env, gconstpointer data) {
        RawClient rc = {};
        GThread *t;

        env_listen(env, &env->sc);
        rc.port = env->port;
        t = g_thread_new("raw-client", raw_client_thread, &rc);
        WAIT_FOR(env, g_atomic_int_get(&rc.done));
        g_thread_join(t);
        g_test_message("no certificate: %s", rc.result ? gnutls_strerror(rc.result) : "EOF");
        g_assert_cmpint(rc.result, !=, 1);
        g_assert_cmpint(rc.result, !=, GNUTLS_E_AGAIN);         /* not left hanging either */
        g_assert_cmpuint(env->accepted->len, ==, 0);
}

static void test_allowed_peers(Env *env, gconstpointer data) {
        LinkConfig c2 = config_for("site2");
        Side *c, *s;

        env->sc.allowed_peers = g_strsplit("site1", ",", -1);
        env_listen(env, &env->sc);
        c = env_connect(env, true, "127.0.0.1", &c2);
        assert_refused(env, c);
        side_free(c);

        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        transfer_both_ways(env, c, s, 1000);
        side_free(c);
        config_clear(&c2);
}

static int raw_connect(int port) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        g_assert_cmpint(fd, >=, 0);
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
        g_assert_cmpint(connect(fd, (struct sockaddr *) &sin, sizeof sin), ==, 0);
        g_assert_cmpint(fcntl(fd, F_SETFL, O_NONBLOCK), ==, 0);
        return fd;
}

/* The listener closed FD: EOF or a reset, after whatever it said. */
static void wait_closed_by_listener(Env *env, int fd) {
        char buf[4096];
        ssize_t k;

        WAIT_FOR(env, (k = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) == 0 || (k < 0 && errno != EAGAIN));
}

static void test_garbage_then_good_client(Env *env, gconstpointer data) {
        uint8_t garbage[4096];
        Side *c, *s;
        int fd;

        env_listen(env, &env->sc);
        for (size_t i = 0; i < sizeof garbage; i++)
                garbage[i] = g_random_int() & 0xff;
        fd = raw_connect(env->port);
        g_assert_cmpint(send(fd, garbage, sizeof garbage, MSG_NOSIGNAL), ==, sizeof garbage);
        wait_closed_by_listener(env, fd);
        close(fd);

        /* Something that looks like HTTP, too. */
        fd = raw_connect(env->port);
        g_assert_cmpint(send(fd, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL), ==, 18);
        wait_closed_by_listener(env, fd);
        close(fd);
        g_assert_cmpuint(env->accepted->len, ==, 0);

        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        transfer_both_ways(env, c, s, 1000);
        side_free(c);
}

static void test_handshake_timeout(Env *env, gconstpointer data) {
        gint64 start;
        int fd;

        env->sc.handshake_timeout_sec = 1;
        env_listen(env, &env->sc);
        start = g_get_monotonic_time();
        fd = raw_connect(env->port);
        wait_closed_by_listener(env, fd);
        g_assert_cmpint(g_get_monotonic_time() - start, >=, G_USEC_PER_SEC - 100000);
        g_assert_cmpint(g_get_monotonic_time() - start, <, 5 * G_USEC_PER_SEC);
        close(fd);
}

static void test_server_name_checked(Env *env, gconstpointer data) {
        Side *c, *s;

        /* The certificate names localhost and 127.0.0.1, not 127.0.0.2. */
        env_listen_on(env, true, "127.0.0.2", &env->sc);
        c = env_connect(env, true, "127.0.0.2", &env->cc);
        WAIT_FOR(env, c->error || c->fd >= 0);
        g_assert_nonnull(c->error);
        g_test_message("wrong name: %s", c->error);
        g_assert_nonnull(strstr(c->error, "127.0.0.2"));
        side_free(c);
        g_clear_pointer(&env->listener, link_listener_free);

        /* By name: localhost may be ::1 first, where nobody listens. */
        env_listen(env, &env->sc);
        c = env_connect_ok(env, "localhost", &env->cc, &s);
        g_assert_nonnull(strstr(c->peer, "127.0.0.1:"));
        transfer_both_ways(env, c, s, 1000);
        side_free(c);
}

static void test_key_permissions(Env *env, gconstpointer data) {
        LinkAddress a = { .tls = true, .host = (char *) "127.0.0.1", .port = 0 };
        g_autofree char *key = NULL, *copy = cert_path("open.key"), *error = NULL;

        g_assert_true(g_file_get_contents(env->sc.key_file, &key, NULL, NULL));
        g_assert_true(g_file_set_contents(copy, key, -1, NULL));
        g_assert_cmpint(chmod(copy, 0644), ==, 0);
        g_free(env->sc.key_file);
        env->sc.key_file = g_strdup(copy);

        g_assert_cmpint(link_check(&a, &env->sc, &error), ==, -EPERM);
        g_test_message("%s", error);
        g_assert_nonnull(strstr(error, "permissions 0644"));
        g_assert_nonnull(strstr(error, "open.key"));
        g_assert_cmpint(try_listen(env, &a, &env->sc), ==, -EPERM);
        a.port = 7411;
        g_assert_cmpint(try_connect(env, &a, &env->sc), ==, -EPERM);

        /* Group-readable is refused too; owner-only is fine. */
        g_assert_cmpint(chmod(copy, 0640), ==, 0);
        g_assert_cmpint(link_check(&a, &env->sc, NULL), ==, -EPERM);
        g_assert_cmpint(chmod(copy, 0600), ==, 0);
        g_assert_cmpint(link_check(&a, &env->sc, NULL), ==, 0);
        g_assert_cmpint(g_unlink(copy), ==, 0);
}

static void test_plaintext_rules(Env *env, gconstpointer data) {
        LinkAddress local = { .tls = false, .host = (char *) "127.0.0.1", .port = 7411 };
        LinkAddress remote = { .tls = false, .host = (char *) "192.0.2.1", .port = 7411 };
        g_autofree char *error = NULL;
        Side *c, *s;

        /* Not without the flag. */
        g_assert_cmpint(link_check(&local, &env->sc, &error), ==, -EPERM);
        g_assert_nonnull(strstr(error, "insecure-plaintext"));
        g_assert_cmpint(try_listen(env, &local, &env->sc), ==, -EPERM);
        g_assert_cmpint(try_connect(env, &local, &env->cc), ==, -EPERM);

        /* Not off loopback even with it. */
        env->sc.insecure_plaintext = env->cc.insecure_plaintext = true;
        g_clear_pointer(&error, g_free);
        g_assert_cmpint(link_check(&remote, &env->cc, &error), ==, -EPERM);
        g_assert_nonnull(strstr(error, "loopback"));
        g_assert_cmpint(try_connect(env, &remote, &env->cc), ==, -EPERM);
        remote.host = (char *) "0.0.0.0";
        g_assert_cmpint(try_listen(env, &remote, &env->sc), ==, -EPERM);
        remote.host = (char *) "outpost.example";
        g_assert_cmpint(link_check(&remote, &env->cc, NULL), ==, -EPERM);
        local.host = (char *) "::1";
        g_assert_cmpint(link_check(&local, &env->cc, NULL), ==, 0);
        local.host = (char *) "127.0.0.1";

        /* On loopback with it: works, and carries bytes. */
        env_listen_on(env, false, "127.0.0.1", &env->sc);
        c = env_connect(env, false, "127.0.0.1", &env->cc);
        WAIT_FOR(env, c->error || (c->fd >= 0 && env->accepted->len == 1));
        g_assert_null(c->error);
        s = env->accepted->pdata[0];
        g_assert_nonnull(strstr(s->peer, "plaintext"));
        transfer_both_ways(env, c, s, 1u << 20);
        side_free(c);
        WAIT_FOR(env, s->closed);
}

/* tls: stays TLS when the plaintext flag is set. */
static void test_tls_despite_plaintext_flag(Env *env, gconstpointer data) {
        Side *c, *s;

        env->sc.insecure_plaintext = env->cc.insecure_plaintext = true;
        env_listen(env, &env->sc);
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        g_assert_nonnull(strstr(s->peer, "CN=site1"));
        side_free(c);
}

/* The listener's sd-bus keeps writing to a peer that never reads. */
static void test_slow_reader_dropped(Env *env, gconstpointer data) {
        g_autofree uint8_t *chunk = g_malloc0(65536);
        size_t written = 0;
        Side *c, *s;

        env->sc.max_queued_bytes = env->cc.max_queued_bytes = 64 << 10;
        env_listen(env, &env->sc);
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        /* c->fd is never read; the kernel's buffers take some megabytes
         * before the link's own bound is reached. */
        while (!s->closed) {
                ssize_t k = send(s->fd, chunk, 65536, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (k > 0)
                        written += k;
                g_assert_cmpuint(written, <, 256u << 20);
                g_assert_cmpint(sd_event_run(env->event, 1000), >=, 0);
        }
        g_test_message("dropped after %zu bytes: %s", written, s->closed);
        g_assert_true(g_str_has_prefix(s->closed, "peer stopped reading: "));
        g_assert_nonnull(strstr(s->closed, "bytes queued"));
        /* The importer's link goes on, blocked: its reader never read. */
        g_assert_null(c->closed);
        side_free(c);
}

/* A small bound drops only a peer that stops reading: a busy one that
 * keeps reading gets all its bytes, in both directions. */
static void test_small_queue_busy_reader(Env *env, gconstpointer data) {
        Side *c, *s;

        env->sc.max_queued_bytes = env->cc.max_queued_bytes = 64 << 10;
        env_listen(env, &env->sc);
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        transfer_both_ways(env, c, s, 5u << 20);
        side_free(c);
}

/* A D-Bus message header with no header fields and BODY bytes of body;
 * only the framing matters to the link. */
static void put_header(GByteArray *out, uint32_t body) {
        uint8_t h[16] = { 'l', 1, 0, 1 };

        memcpy(h + 4, &body, 4);        /* 'l': little-endian, as on this machine */
        h[8] = 1;                       /* serial */
        g_assert_cmpint(G_BYTE_ORDER, ==, G_LITTLE_ENDIAN);
        g_byte_array_append(out, h, sizeof h);
}

/* Writes all of DATA to FD, running the loop while the link carries it. */
static void send_all(Env *env, int fd, const GByteArray *data) {
        size_t done = 0;
        ssize_t k;

        WAIT_FOR(env, done == data->len ||
                      ((k = send(fd, data->data + done, data->len - done, MSG_DONTWAIT | MSG_NOSIGNAL)) > 0 &&
                       (done += k, false)));
}

/* Reads N bytes from FD, running the loop meanwhile. */
static void receive_bytes(Env *env, int fd, size_t n) {
        g_autofree uint8_t *buf = g_malloc(n);
        size_t done = 0;
        ssize_t k;

        WAIT_FOR(env, done == n || ((k = recv(fd, buf + done, n - done, MSG_DONTWAIT)) > 0 &&
                                    (done += k, false)));
}

/* Connects a client to a listener limited to 64 KiB messages, sends the
 * SASL exchange and a message of 60 KiB (which arrive), then TAIL: the
 * listener's side of the link must end with a reason containing EXPECT. */
static void assert_stream_refused(Env *env, const GByteArray *tail, const char *expect) {
        static const char auth[] = "\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";
        g_autoptr(GByteArray) first = g_byte_array_new();
        g_autofree uint8_t *body = g_malloc0(60u << 10);
        Side *c, *s;

        env->sc.max_message_bytes = 64u << 10;
        env_listen(env, &env->sc);
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        g_byte_array_append(first, (const uint8_t *) auth, sizeof auth - 1);
        put_header(first, 60u << 10);
        g_byte_array_append(first, body, 60u << 10);
        send_all(env, c->fd, first);
        receive_bytes(env, s->fd, first->len);
        g_assert_null(s->closed);

        send_all(env, c->fd, tail);
        WAIT_FOR(env, s->closed && c->closed);
        g_test_message("listener side: %s", s->closed);
        g_assert_nonnull(strstr(s->closed, expect));
        side_free(c);
}

/* The listener follows the D-Bus framing of what a peer sends: a message
 * over the limit ends the link when its header arrives, before sd-bus
 * would buffer it; so does a stream that is not D-Bus. */
static void test_message_size_limit(Env *env, gconstpointer data) {
        g_autoptr(GByteArray) tail = g_byte_array_new();

        put_header(tail, (64u << 10) - 15);     /* one byte over, with the header */
        assert_stream_refused(env, tail, "peer sent a message of 65537 bytes, more than the limit of 65536");
}

static void test_message_not_dbus(Env *env, gconstpointer data) {
        g_autoptr(GByteArray) tail = g_byte_array_new();

        g_byte_array_append(tail, (const uint8_t *) "GET / HTTP/1.1\r\n\r\n", 18);
        assert_stream_refused(env, tail, "peer sent bytes that are not D-Bus (endianness byte 0x47)");
}

static void test_message_endless_auth(Env *env, gconstpointer data) {
        g_autofree uint8_t *line = g_malloc(20u << 10);
        g_autoptr(GByteArray) stream = g_byte_array_new();
        Side *c, *s;

        memset(line, 'A', 20u << 10);
        env->sc.max_message_bytes = 64u << 10;
        env_listen(env, &env->sc);
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        g_byte_array_append(stream, (const uint8_t *) "", 1);
        g_byte_array_append(stream, line, 20u << 10);
        send_all(env, c->fd, stream);
        WAIT_FOR(env, s->closed);
        g_assert_nonnull(strstr(s->closed, "peer sent an authentication exchange longer than 16384 bytes"));
        side_free(c);
}

/* FROM writes WORDS and closes its plaintext fd: TO reads them, then EOF;
 * the link ends on both sides. */
static void say_and_close(Env *env, Side *from, Side *to, const char *words) {
        g_autoptr(GByteArray) got = NULL;
        size_t n = strlen(words);

        g_assert_cmpint(send(from->fd, words, n, MSG_NOSIGNAL), ==, n);
        close(from->fd);
        from->fd = -1;
        got = read_until_eof(env, to->fd);
        g_assert_cmpmem(got->data, got->len, words, n);
        WAIT_FOR(env, from->closed && to->closed);
        g_assert_cmpstr(from->closed, ==, "connection closed locally");
        g_assert_cmpstr(to->closed, ==, "connection closed by peer");
}

/* Closing the plaintext fd on one side ends the link on both, and what was
 * written just before the close still arrives. */
static void test_close_propagates(Env *env, gconstpointer data) {
        g_autoptr(GByteArray) got = NULL;
        Side *c, *s;

        env_listen(env, &env->sc);

        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        say_and_close(env, c, s, "last words");
        side_free(c);

        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        say_and_close(env, s, c, "bye");
        side_free(c);

        /* link_free: the other side sees the end; no callback here. */
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        c->link = link_free(c->link);
        got = read_until_eof(env, s->fd);
        g_assert_cmpuint(got->len, ==, 0);
        WAIT_FOR(env, s->closed);
        g_assert_null(c->closed);
        side_free(c);
}

/* A socket systemd would pass: already bound and listening; no address. */
static void test_socket_activation(Env *env, gconstpointer data) {
        struct sockaddr_in sin = { .sin_family = AF_INET };
        socklen_t len = sizeof sin;
        LinkListener *l = NULL;
        Side *c, *s;
        int fd;

        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        g_assert_cmpint(bind(fd, (struct sockaddr *) &sin, sizeof sin), ==, 0);

        /* Not listening yet: refused, and the fd is still ours. */
        g_assert_cmpint(link_listener_new(env->event, NULL, fd, &env->sc, on_listener_ready, on_closed, env, &l), <, 0);
        g_assert_cmpint(fcntl(fd, F_GETFD), >=, 0);

        g_assert_cmpint(listen(fd, 16), ==, 0);
        g_assert_cmpint(getsockname(fd, (struct sockaddr *) &sin, &len), ==, 0);
        g_assert_cmpint(link_listener_new(env->event, NULL, fd, &env->sc, on_listener_ready, on_closed, env,
                                          &env->listener), ==, 0);
        env->port = ntohs(sin.sin_port);
        g_assert_cmpint(link_listener_get_port(env->listener), ==, env->port);
        c = env_connect_ok(env, "127.0.0.1", &env->cc, &s);
        g_assert_nonnull(strstr(s->peer, "CN=site1"));
        transfer_both_ways(env, c, s, 1000);
        side_free(c);
}

/* Connection refused, and freeing a link whose failure is not yet told. */
static void test_connect_failures(Env *env, gconstpointer data) {
        Side *c;

        env_listen(env, &env->sc);
        env->listener = link_listener_free(env->listener);     /* the port is closed now */
        c = env_connect(env, true, "127.0.0.1", &env->cc);
        g_assert_null(c->error);        /* never from inside link_connect */
        WAIT_FOR(env, c->error);
        g_test_message("%s", c->error);
        g_assert_nonnull(strstr(c->error, "cannot connect to 127.0.0.1"));
        side_free(c);

        c = env_connect(env, true, "127.0.0.1", &env->cc);
        c->link = link_free(c->link);
        for (int i = 0; i < 20; i++)
                g_assert_cmpint(sd_event_run(env->event, 5000), >=, 0);
        g_assert_null(c->error);
        side_free(c);
}

static void make_certs(void) {
        g_autofree char *script = g_build_filename(SRCDIR, "tests", "common", "make-test-certs.sh", NULL);
        g_autofree char *err = NULL;
        g_autoptr(GError) error = NULL;
        const char *argv[] = { "/bin/sh", script, certs, NULL };
        int status;

        if (!g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, &err, &status, &error))
                g_error("cannot run %s: %s", script, error->message);
        if (!g_spawn_check_wait_status(status, &error))
                g_error("%s failed: %s\n%s", script, error->message, err);
}

static void remove_tree(const char *dir) {
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *name;

        while (d && (name = g_dir_read_name(d))) {
                g_autofree char *p = g_build_filename(dir, name, NULL);

                g_unlink(p);
        }
        g_rmdir(dir);
}

int main(int argc, char **argv) {
        int r;

        g_test_init(&argc, &argv, NULL);
        signal(SIGPIPE, SIG_IGN);
        certs = g_dir_make_tmp("test-link-XXXXXX", NULL);
        g_assert_nonnull(certs);
        make_certs();

#define ADD(path, test) g_test_add(path, Env, NULL, env_setup, test, env_teardown)
        g_test_add_func("/link/address/parse", test_address_parse);
        ADD("/link/tls/roundtrip", test_tls_roundtrip);
        ADD("/link/tls/other-ca-refused", test_other_ca_refused);
        ADD("/link/tls/no-client-cert-refused", test_no_client_cert_refused);
        ADD("/link/tls/allowed-peers", test_allowed_peers);
        ADD("/link/tls/garbage-then-good-client", test_garbage_then_good_client);
        ADD("/link/tls/handshake-timeout", test_handshake_timeout);
        ADD("/link/tls/server-name-checked", test_server_name_checked);
        ADD("/link/tls/key-permissions", test_key_permissions);
        ADD("/link/tls/despite-plaintext-flag", test_tls_despite_plaintext_flag);
        ADD("/link/tcp/plaintext-rules", test_plaintext_rules);
        ADD("/link/slow-reader-dropped", test_slow_reader_dropped);
        ADD("/link/small-queue-busy-reader", test_small_queue_busy_reader);
        ADD("/link/message/size-limit", test_message_size_limit);
        ADD("/link/message/not-dbus", test_message_not_dbus);
        ADD("/link/message/endless-auth", test_message_endless_auth);
        ADD("/link/close-propagates", test_close_propagates);
        ADD("/link/socket-activation", test_socket_activation);
        ADD("/link/connect-failures", test_connect_failures);
        r = g_test_run();
        remove_tree(certs);
        g_free(certs);
        return r;
}
