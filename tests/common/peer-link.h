/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bridge-harness.h"
#include "link.h"

/* A remote peer of a listener as a test sees it: a real TLS link opened
 * with the bridge's link API (certificates of tests/common/make-test-certs.sh)
 * and a raw sd-bus connection over its plaintext end, both on one
 * sd_event of the test. */

/* One dialled link. The link frees itself when it closes, so whether it
 * is still ours to free is tracked here. */
typedef struct Dial {
        Link *link;
        int fd;
        char *error;
        bool done;
} Dial;

/* Dial the listener on PORT of 127.0.0.1 with the certificate NAME; d->fd
 * is the plaintext fd, or -1 with d->error set. */
Dial *dial(sd_event *event, unsigned port, const char *name);
/* The same without waiting: d->done once the event loop got it there. */
Dial *dial_start(sd_event *event, unsigned port, const char *name);
void dial_free(Dial *d);
/* The peer's D-Bus connection over FD (anonymous, as an importer's). */
sd_bus *peer_bus(sd_event *event, int fd);

/* A bus with outpostd and a listening outpost-bridge, and the test's
 * event loop for its peers. */
typedef struct Central {
        TestBus *bus;
        BridgeProcess listener;
        unsigned port;
        sd_event *event;
} Central;

/* Start outpostd on BUS (taken over) and a listener with EXTRA options. */
void central_start_on(Central *c, TestBus *bus, const char *const *extra);
void central_stop(Central *c);

/* One call of a peer and its outcome. */
typedef struct Call {
        sd_bus_error error;
        gboolean done, ok;
} Call;

/* The reply handler of call(), for a Call as USERDATA. */
int call_on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);
/* Call and wait, with the event loop turning the link's pump. */
void call(sd_event *event, sd_bus *bus, const char *destination, const char *path, const char *iface,
          const char *member, Call *c, const char *types, ...);
/* C failed with AccessDenied, its message mentioning MENTION. */
void assert_denied(Call *c, const char *mention);
/* Connect with the certificate NAME, retrying while the listener starts. */
sd_bus *connect_as(Central *c, const char *name, Dial **ret);
/* With TLS 1.3 the client may finish its handshake before the server has
 * judged its certificate; either way no D-Bus call ever gets through. */
void assert_refused(Central *c, const char *name);
