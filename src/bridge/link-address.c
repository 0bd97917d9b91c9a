/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Link addresses ("tls:host=H,port=P"), and the rule that keeps plain TCP
 * on this machine: a link without TLS is neither authenticated nor
 * private, so it is allowed only where nobody else can listen. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "link-address.h"

static bool parse_port(const char *s, unsigned *ret) {
        guint64 v;

        if (!g_ascii_string_to_unsigned(s, 10, 1, 65535, &v, NULL))
                return false;
        *ret = v;
        return true;
}

/* One "key=value" of an address; KEY_SEEN guards against repeats. */
static int parse_address_pair(const char *pair, LinkAddress *a, bool *port_seen, char **ret_error) {
        const char *eq = strchr(pair, '=');
        const char *value = eq ? eq + 1 : NULL;
        g_autofree char *key = eq ? g_strndup(pair, eq - pair) : NULL;

        if (!eq) {
                *ret_error = g_strdup_printf("'%s' is not key=value", pair);
                return -EINVAL;
        }
        if (strcmp(key, "host") == 0) {
                if (a->host || *value == '\0') {
                        *ret_error = g_strdup(a->host ? "host= given twice" : "empty host=");
                        return -EINVAL;
                }
                a->host = g_strdup(value);
                return 0;
        }
        if (strcmp(key, "port") == 0) {
                if (*port_seen || !parse_port(value, &a->port)) {
                        *ret_error = *port_seen ? g_strdup("port= given twice")
                                                : g_strdup_printf("bad port '%s': expected 1-65535", value);
                        return -EINVAL;
                }
                *port_seen = true;
                return 0;
        }
        *ret_error = g_strdup_printf("unknown key '%s' (expected host= and port=)", key);
        return -EINVAL;
}

static int parse_address(const char *s, LinkAddress *a, char **ret_error) {
        g_auto(GStrv) pairs = NULL;
        bool port_seen = false;
        int r;

        if (g_str_has_prefix(s, "tls:"))
                a->tls = true;
        else if (!g_str_has_prefix(s, "tcp:")) {
                *ret_error = g_strdup("unknown transport: expected tls: or tcp:");
                return -EINVAL;
        }
        pairs = g_strsplit(s + 4, ",", -1);
        for (char **p = pairs; *p; p++) {
                r = parse_address_pair(*p, a, &port_seen, ret_error);
                if (r < 0)
                        return r;
        }
        if (!a->host || !port_seen) {
                *ret_error = g_strdup(!a->host ? "missing host=" : "missing port=");
                return -EINVAL;
        }
        return 0;
}

char **link_address_list_split(const char *list) {
        g_auto(GStrv) parts = g_strsplit(list ?: "", ";", -1);
        GStrvBuilder *builder = g_strv_builder_new();
        char **ret;

        for (char **p = parts; *p; p++) {
                g_strstrip(*p);
                if (**p)
                        g_strv_builder_add(builder, *p);
        }
        ret = g_strv_builder_end(builder);
        g_strv_builder_unref(builder);
        return ret;
}

int link_address_parse(const char *s, LinkAddress *ret, char **ret_error) {
        LinkAddress a = {};
        char *error = NULL;
        int r;

        r = parse_address(s ?: "", &a, &error);
        if (r < 0) {
                link_address_clear(&a);
                if (ret_error)
                        *ret_error = error;
                else
                        g_free(error);
                return r;
        }
        *ret = a;
        return 0;
}

void link_address_clear(LinkAddress *a) {
        if (!a)
                return;
        g_free(a->host);
        *a = (LinkAddress) {};
}

bool sockaddr_is_loopback(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;

                return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
        }
        return false;
}

/* A loopback literal or "localhost"; other names are not trusted to stay
 * local, whatever they resolve to today. */
static bool host_is_loopback(const char *host) {
        struct sockaddr_in sin = { .sin_family = AF_INET };
        struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

        if (g_ascii_strcasecmp(host, "localhost") == 0)
                return true;
        if (inet_pton(AF_INET, host, &sin.sin_addr) == 1)
                return sockaddr_is_loopback((struct sockaddr *) &sin);
        if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1)
                return sockaddr_is_loopback((struct sockaddr *) &sin6);
        return false;
}

bool host_is_ip_literal(const char *host) {
        struct in6_addr a;

        return inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
}

char *sockaddr_to_string(const struct sockaddr *sa) {
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

                inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
                port = ntohs(in->sin_port);
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
                return g_strdup_printf("[%s]:%u", host, ntohs(in6->sin6_port));
        }
        return g_strdup_printf("%s:%u", host, port);
}

int link_address_check_plaintext(const LinkAddress *a, const LinkConfig *config, char **ret_error) {
        if (!config->insecure_plaintext) {
                *ret_error = g_strdup("plain tcp: links are refused without insecure-plaintext; use tls:");
                return -EPERM;
        }
        if (!a->host || !host_is_loopback(a->host)) {
                *ret_error = g_strdup_printf("plain tcp: is allowed only on loopback (127.0.0.0/8, ::1, localhost), "
                                             "not on %s", a->host ?: "(no host)");
                return -EPERM;
        }
        return 0;
}

int link_socket_check_loopback(int fd, char **ret_error) {
        struct sockaddr_storage ss = {};
        socklen_t len = sizeof ss;

        if (getsockname(fd, (struct sockaddr *) &ss, &len) >= 0 && sockaddr_is_loopback((struct sockaddr *) &ss))
                return 0;
        *ret_error = g_strdup("plain tcp: is allowed only on loopback, and this socket is not");
        return -EPERM;
}
