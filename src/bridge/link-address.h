/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>

#include "link.h"

/* Private to the link: address helpers and the loopback rule of plain
 * TCP (link.h has the parser others use). */

bool sockaddr_is_loopback(const struct sockaddr *sa);
/* An IPv4 or IPv6 literal rather than a name. */
bool host_is_ip_literal(const char *host);
/* "192.0.2.1:5555" or "[2001:db8::1]:5555", for logs. */
char *sockaddr_to_string(const struct sockaddr *sa);

/* A plain tcp: address A is allowed with CONFIG: insecure_plaintext is
 * set and A's host is a loopback literal or "localhost". */
int link_address_check_plaintext(const LinkAddress *a, const LinkConfig *config, char **ret_error);
/* Plain TCP on a listening socket: judge by where the socket really is,
 * which covers names and sockets handed over by systemd alike. */
int link_socket_check_loopback(int fd, char **ret_error);
